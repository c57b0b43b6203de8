//! Signals of a running process (`Handle::run_until_signal`): SIGHUP reloads, SIGTERM and
//! SIGINT stop, SIGUSR2 starts a binary upgrade (`upgrade`) and, once the new process is
//! ready, stops this one; and the `Live::phase` steps `/ready` reports (serving once the first
//! round of checks is done, back to serving when an upgrade fails).

use std::sync::Arc;
use std::time::Duration;

use super::Handle;
use crate::chain::Chain;
use crate::health;
use crate::reload::Trigger;
use crate::snapshot::{Live, Phase};
use crate::systemd;
use crate::upgrade::{self, Handover, Predecessor};

/// Why `wait_for_signal` returned.
pub(super) enum Stop {
    /// SIGTERM or SIGINT.
    Signal,
    /// A binary upgrade's new process (this pid) is ready.
    Upgraded(u32),
}

/// Sets `Serving` once every checked backend has had its first check (`/ready`).
pub(super) async fn serving_once_checked(shared: Arc<Live>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !health::checker::first_round_done(&shared.snapshot.load()) {
        tick.tick().await;
    }
    shared.phase.send_if_modified(|p| {
        let starting = *p == Phase::Starting;
        if starting {
            *p = Phase::Serving;
        }
        starting
    });
}

/// Waits for SIGTERM / SIGINT; each SIGHUP meanwhile runs a reload on the control runtime,
/// each SIGUSR2 a binary upgrade. The new process of an upgrade tells its predecessor (and
/// systemd) once it is ready.
#[cfg(unix)]
pub(super) async fn wait_for_signal(
    handle: &Handle,
    predecessor: Option<Predecessor>,
) -> std::io::Result<Stop> {
    use tokio::signal::unix::{signal, SignalKind};
    let reloader = &handle.reloader;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    match predecessor {
        // Only now: systemd may send SIGHUP (ExecReload) as soon as it hears READY=1.
        None => systemd::ready(),
        Some(predecessor) => {
            let mut phase = handle.shared.phase.subscribe();
            tokio::select! {
                _ = phase.wait_for(|p| *p != Phase::Starting) => {}
                // Stopped before ready: the old process sees this one go, and keeps serving.
                _ = term.recv() => return Ok(Stop::Signal),
                _ = int.recv() => return Ok(Stop::Signal),
            }
            systemd::ready_as_main();
            predecessor.ready();
            tracing::info!("binary upgrade: ready; the old process drains");
        }
    }
    let mut upgrading: Option<tokio::sync::oneshot::Receiver<_>> = None;
    loop {
        let outcome = async {
            match upgrading.as_mut() {
                Some(rx) => rx.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => return Ok(Stop::Signal),
            _ = int.recv() => return Ok(Stop::Signal),
            _ = hup.recv() => {
                let r = Arc::clone(reloader);
                // Outcome logged and recorded by reload() itself.
                reloader.control().spawn_blocking(move || r.reload(Trigger::Signal));
            }
            _ = usr2.recv() => {
                if upgrading.is_some() {
                    tracing::warn!("binary upgrade already in progress: SIGUSR2 ignored");
                } else {
                    upgrading = Some(begin_upgrade(handle));
                }
            }
            done = outcome => {
                upgrading = None;
                match done {
                    Ok(Ok(pid)) => return Ok(Stop::Upgraded(pid)),
                    Ok(Err(e)) => {
                        let checked = health::checker::first_round_done(&handle.shared.snapshot.load());
                        let back = if checked { Phase::Serving } else { Phase::Starting };
                        handle.shared.phase.send_replace(back);
                        tracing::error!("{}; this process keeps serving", Chain(&e));
                    }
                    Err(_) => tracing::error!("binary upgrade: lost its thread; this process keeps serving"),
                }
            }
        }
    }
}

/// Starts a binary upgrade on a thread of its own: `/ready` says 503 from now; the receiver
/// gets the new process's pid once it is ready, or why it failed.
fn begin_upgrade(
    handle: &Handle,
) -> tokio::sync::oneshot::Receiver<Result<u32, upgrade::UpgradeError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    handle.shared.phase.send_replace(Phase::Draining);
    tracing::info!("SIGUSR2: binary upgrade: starting the new process");
    let sockets = handle.reloader.duplicate_sockets();
    let admin = handle
        .admin_socket
        .as_ref()
        .map(|(addr, s)| s.try_clone().map(|s| (*addr, s)))
        .transpose();
    let down = health::checker::down_set(&handle.shared.snapshot.load());
    std::thread::spawn(move || {
        let result = match (sockets, admin) {
            (Ok(listeners), Ok(admin)) => upgrade::spawn_successor(Handover {
                listeners,
                admin,
                down,
            }),
            (Err(e), _) | (_, Err(e)) => Err(upgrade::UpgradeError::Channel(e)),
        };
        if let Err(Ok(pid)) = tx.send(result) {
            // This process stopped (SIGTERM) while the new one started: it must not outlive
            // the stop it was asked for.
            tracing::warn!(
                pid,
                "binary upgrade: this process is stopping; stopping the new one too"
            );
            upgrade::terminate(pid);
        }
    });
    rx
}

#[cfg(not(unix))]
pub(super) async fn wait_for_signal(
    _handle: &Handle,
    _predecessor: Option<Predecessor>,
) -> std::io::Result<Stop> {
    systemd::ready();
    tokio::signal::ctrl_c().await?;
    Ok(Stop::Signal)
}
