//! Lifecycle: the first snapshot, bound listeners, workers, the control runtime, signals,
//! graceful shutdown. `start` returns a `Handle` once every listener is bound and accepting.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::error::Error;
use crate::health::{self, checker::HealthTasks, status::PoolStatus};
use crate::listener;
use crate::snapshot::Snapshot;
use crate::worker::{self, WorkerSocket};

/// What every worker shares: the current snapshot and process-wide settings.
#[derive(Debug)]
pub struct Shared {
    /// The one shared value of the request path: read with one load per request.
    pub snapshot: ArcSwap<Snapshot>,
    pub client_header_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Open connections of each listener (shared with the accept loops).
    active: Vec<Arc<AtomicUsize>>,
}

impl Shared {
    /// Open client connections, all listeners together.
    pub fn open_connections(&self) -> usize {
        self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
}

/// A running Fulcrum. Dropping it shuts it down without waiting.
#[derive(Debug)]
pub struct Handle {
    listeners: Vec<(String, SocketAddr)>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    control: Option<tokio::runtime::Runtime>,
    /// Active checks of the current snapshot (a reload replaces them).
    health: HealthTasks,
}

/// How the request path is threaded; see `worker.rs`.
fn shared_runtime() -> bool {
    std::env::var("FULCRUM_RUNTIME").is_ok_and(|v| v == "shared")
}

/// Starts Fulcrum with a validated config: binds every listener (errors here are returned,
/// nothing is left running), then starts the workers.
pub fn start(config: Config) -> Result<Handle, Error> {
    let workers = match config.global.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let shared_rt = shared_runtime();
    let sockets_per_listener = if shared_rt { 1 } else { workers };

    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let b = listener::bind(&l.name, l.bind, sockets_per_listener).map_err(|source| {
            Error::Bind {
                listener: l.name.clone(),
                addr: l.bind,
                source,
            }
        })?;
        bound.push(b);
    }

    // The control runtime: everything off the request path (the access-log writer for now).
    let control_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fulcrum-control")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let access_log = AccessLog::start(&config.global.access_log, control_thread.handle())
        .map_err(Error::AccessLog)?;

    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(Snapshot::build(&config, None)),
        client_header_timeout: config.global.client_header_timeout,
        shutdown_grace: config.global.shutdown_grace,
        active: bound.iter().map(|b| Arc::clone(&b.active)).collect(),
    });
    // Active checks follow the snapshot; fresh backends are up until a check says otherwise.
    let health = health::checker::spawn(&shared.snapshot.load(), control_thread.handle());
    let listeners: Vec<(String, SocketAddr)> =
        bound.iter().map(|b| (b.name.clone(), b.addr)).collect();

    // Deal the sockets out: worker w gets socket w of every listener.
    let mut per_worker: Vec<Vec<WorkerSocket>> =
        (0..sockets_per_listener).map(|_| Vec::new()).collect();
    for (index, b) in bound.into_iter().enumerate() {
        for (w, socket) in b.sockets.into_iter().enumerate() {
            per_worker[w].push(WorkerSocket {
                index,
                socket,
                active: Arc::clone(&b.active),
            });
        }
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared_threads = shared_rt.then_some(workers);
    let mut handles = Vec::with_capacity(per_worker.len());
    for (id, sockets) in per_worker.into_iter().enumerate() {
        let h = worker::spawn(
            id,
            sockets,
            Arc::clone(&shared),
            access_log.clone(),
            shutdown_rx.clone(),
            shared_threads,
        )
        .map_err(Error::Runtime)?;
        handles.push(h);
    }
    tracing::info!(
        workers,
        runtime = if shared_rt { "shared" } else { "per-core" },
        listeners = ?listeners,
        "fulcrum started"
    );
    Ok(Handle {
        listeners,
        shared,
        shutdown,
        workers: handles,
        control: Some(control_thread),
        health,
    })
}

impl Handle {
    /// The bound address of a listener (the real port when the config said `:0`).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// Health of every pool and backend (cold path: tests, the admin API).
    pub fn status(&self) -> Vec<PoolStatus> {
        health::status::of(&self.shared.snapshot.load())
    }

    /// Backends under active checks.
    pub fn health_checks(&self) -> usize {
        self.health.len()
    }

    /// Stops accepting, lets in-flight requests finish (up to `shutdown_grace`), and returns
    /// when every worker has stopped. Blocking.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Blocks until SIGTERM or SIGINT (Ctrl-C), then shuts down gracefully.
    pub fn run_until_signal(self) -> Result<(), Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        rt.block_on(wait_for_signal()).map_err(Error::Runtime)?;
        tracing::info!(grace = ?self.shared.shutdown_grace, "shutting down: no new connections, finishing in-flight requests");
        self.shutdown();
        tracing::info!("stopped");
        Ok(())
    }

    fn stop_and_join(&mut self) {
        let _ = self.shutdown.send(true);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(control) = self.control.take() {
            // Lets the access-log writer flush what it has.
            control.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(control) = self.control.take() {
            control.shutdown_background();
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
