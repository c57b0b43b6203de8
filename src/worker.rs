//! Worker threads: each runs a current-thread tokio runtime with its own listening sockets and
//! its own upstream connection pool, so nothing on the request path crosses threads except the
//! shared atomics of backend state.
//!
//! [`Threading::Shared`] (the binary's `FULCRUM_RUNTIME=shared`) runs the same accept loops on one
//! multi-thread runtime instead; it exists to measure the two models against each other
//! (README, performance).
//!
//! A worker receives its listening sockets over its channel from `listener::Sockets`, at start
//! and whenever a reload adds a listener, so every listener accepts on every worker.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::listener::{self, SocketReceiver, WorkerSocket};
use crate::snapshot::Live;

/// How the request path is threaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threading {
    /// One current-thread runtime per worker thread, each with its own sockets (the default:
    /// nothing on the request path crosses threads).
    #[default]
    PerCore,
    /// One multi-thread runtime for all workers, to measure the two models against each other.
    Shared,
}

/// Starts worker `id` on its own thread, accepting on the sockets it receives; it returns once
/// shut down and drained. `shared_threads`:
/// `Some(n)` runs it on one multi-thread runtime of `n` threads instead of a current-thread one.
pub fn spawn(
    id: usize,
    sockets: SocketReceiver,
    shared: Arc<Live>,
    access_log: Option<AccessLog>,
    shutdown: watch::Receiver<bool>,
    shared_threads: Option<usize>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("fulcrum-w{id}"))
        .spawn(move || {
            let runtime = if let Some(threads) = shared_threads {
                let log = access_log.clone();
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .on_thread_start(move || {
                        if let Some(log) = &log {
                            log.clone().install();
                        }
                    })
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            };
            let runtime = match runtime {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "cannot start worker runtime");
                    return;
                }
            };
            if let Some(log) = access_log {
                log.install();
            }
            runtime.block_on(run(sockets, shared, shutdown));
        })
}

async fn run(mut sockets: SocketReceiver, shared: Arc<Live>, mut shutdown: watch::Receiver<bool>) {
    let grace = shared.shutdown_grace;
    let (drained_tx, mut drained) = watch::channel(());
    let loops_shutdown = shutdown.clone();
    let start = |s: WorkerSocket| {
        let shared = Arc::clone(&shared);
        let shutdown = loops_shutdown.clone();
        let drained_tx = drained_tx.clone();
        tokio::spawn(async move {
            listener::accept_loop(s, shared, shutdown).await;
            drop(drained_tx);
        });
    };
    let mut open = true;
    loop {
        tokio::select! {
            s = sockets.recv(), if open => match s {
                Some(s) => start(s),
                None => open = false,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    // Accept loops stop at once; connections finish their in-flight request, then close.
    drop(drained_tx);
    let _ = drained.changed().await;
    wait_for_connections(&shared, grace).await;
}

/// Waits until no connection of this process is open, or `grace` has passed.
async fn wait_for_connections(shared: &Live, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while shared.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tick.tick().await;
    }
}
