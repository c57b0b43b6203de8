//! systemd readiness protocol (`Type=notify`): `READY=1` once listening, `RELOADING=1` with
//! `MONOTONIC_USEC` then `READY=1` around each reload, `STOPPING=1` on shutdown, and `WATCHDOG=1`
//! pings at half of `WATCHDOG_USEC`; around a binary upgrade, `MAINPID=` from the old process
//! and `MAINPID=` + `READY=1` from the new one (`upgrade`). Every call is a no-op without `NOTIFY_SOCKET`, so the
//! library and tests can call them unconditionally; a failed send is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "systemd notify failed");
    }
}

/// Every listener accepts.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Another process is the service's main process from now on (the new process of a binary
/// upgrade; sent by the old main process, so `NotifyAccess=main` accepts it).
pub fn main_pid(pid: u32) {
    send(&[NotifyState::MainPid(pid)]);
}

/// The new process of a binary upgrade is ready and is the main process (accepted from it
/// with `NotifyAccess=all`; the old process's `MAINPID=` covers `main`).
pub fn ready_as_main() {
    send(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
}

/// A reload starts (systemd shows `reloading` until the next `ready`).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload ended; `status` is shown by `systemctl status`.
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown began.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Half the watchdog interval when systemd asked for pings (`WatchdogSec=`).
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Pings the watchdog every `interval` for as long as the runtime runs it.
pub async fn watchdog(interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
