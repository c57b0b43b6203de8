//! Lifecycle: the first snapshot, bound listeners, workers, the control runtime, signals,
//! graceful shutdown. `start` returns a `Handle` once every listener is bound and accepting.
//!
//! What a reload changes (snapshot, listeners, health checks) is owned by `reload::Reloader`;
//! this file starts it, the file watcher and the SIGHUP trigger, and stops reloads before a
//! shutdown begins.
//!
//! A binary upgrade (SIGUSR2, `upgrade`) is a shutdown that waits for a successor first: the
//! old process hands its sockets over and drains once the new one is ready; the new one
//! (started with [`start_inheriting`]) listens on them instead of binding. `Live::phase` is
//! what `/ready` reports through all of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::admin::Extension;
use crate::chain::Chain;
use crate::config::{Config, ListenerSlot};
use crate::error::Error;
use crate::health::{self, status::PoolStatus};
use crate::limits;
use crate::listener::Sockets;
use crate::reload::{ReloadError, ReloadResult, Reloader, Trigger};
use crate::snapshot::{Live, Phase};
use crate::splice::Forwarding;
use crate::systemd;
use crate::upgrade::{Handover, Inherited, Predecessor};

mod signals;
use crate::watch::ConfigWatcher;
use crate::worker::{self, Threading};
use signals::{serving_once_checked, wait_for_signal, Stop};

/// A running Fulcrum. Dropping it shuts it down without waiting.
#[derive(Debug)]
pub struct Handle {
    shared: Arc<Live>,
    /// Listeners, health checks and the last reload result; the one `reload()`.
    reloader: Arc<Reloader>,
    /// Watches the config file's directory; `None` without a file (or when watching failed).
    watcher: Option<ConfigWatcher>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    control: Option<tokio::runtime::Runtime>,
    /// Where the admin server listens (`None`: disabled, or its address was taken).
    admin: Option<SocketAddr>,
    /// Where the GeoDNS responder listens, UDP and TCP (`None`: no `[gslb]` at start).
    gslb: Option<SocketAddr>,
    /// The admin socket (a duplicate), for a binary upgrade.
    admin_socket: Option<(SocketAddr, std::net::TcpListener)>,
    /// The old process of a binary upgrade, told once this one is ready.
    predecessor: Option<Predecessor>,
}

/// How a process runs, beside its config: settings an embedder (or the binary, from its
/// environment, for benchmarks) chooses at start, never read from deep inside a module.
#[derive(Clone)]
pub struct Options {
    /// How the request path is threaded (default: one current-thread runtime per worker).
    pub threading: Threading,
    /// Reload when the config file changes (default); `false`: SIGHUP and the admin API only.
    pub watch_config: bool,
    /// Build the request path's metric handles (default); `false` only to measure their cost.
    pub metrics: bool,
    /// How tcp listeners move bytes (default: `splice(2)` on Linux).
    pub tcp_forwarding: Forwarding,
    /// Endpoints added to the admin API (the demo's kill and revive switches).
    pub admin_extension: Option<Arc<dyn Extension>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threading: Threading::PerCore,
            watch_config: true,
            metrics: true,
            tcp_forwarding: Forwarding::Splice,
            admin_extension: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("threading", &self.threading)
            .field("watch_config", &self.watch_config)
            .field("metrics", &self.metrics)
            .field("tcp_forwarding", &self.tcp_forwarding)
            .field("admin_extension", &self.admin_extension.is_some())
            .finish()
    }
}

/// Reads and checks the files a validated config names that validation does not read: the
/// certificates, keys and client CAs of `[listener.tls]` (unreadable, key not matching, expired,
/// no usable name), each error at the config key that named the file. `fulcrum check`, the
/// start and every reload run it.
pub fn check_files(config: &Config) -> Result<(), crate::config::ConfigErrors> {
    crate::tls::server::check(config)
}

/// Starts Fulcrum with a validated config and the default [`Options`].
pub fn start(config: Config) -> Result<Handle, Error> {
    start_with(config, Options::default())
}

/// Starts Fulcrum with a validated config: binds every listener (errors here are returned,
/// nothing is left running), then starts the workers.
pub fn start_with(config: Config, options: Options) -> Result<Handle, Error> {
    start_inner(config, options, Handover::default())
}

/// Starts the new process of a binary upgrade: like [`start_with`], but listeners whose
/// address the old process had take its sockets instead of binding, the backends it had down
/// start down, and the old process is told when this one is ready (in `run_until_signal`), or
/// why it failed to start (here).
pub fn start_inheriting(
    config: Config,
    options: Options,
    inherited: Inherited,
) -> Result<Handle, Error> {
    let Inherited {
        handover,
        predecessor,
    } = inherited;
    match start_inner(config, options, handover) {
        Ok(mut handle) => {
            handle.predecessor = Some(predecessor);
            Ok(handle)
        }
        Err(e) => {
            predecessor.fail(&Chain(&e).to_string());
            Err(e)
        }
    }
}

fn start_inner(config: Config, options: Options, handover: Handover) -> Result<Handle, Error> {
    // A file was validated already; a config built in code may name a pool it lacks.
    config.check_references()?;
    crate::tls::install_default();
    check_files(&config)?;
    let workers = match config.global.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let shared_rt = options.threading == Threading::Shared;
    // Worker threads: one per core, or one multi-thread runtime on a shared runtime.
    let worker_threads = if shared_rt { 1 } else { workers };

    // Every listener is bound before anything runs: a bind error stops the start cleanly.
    let (mut sockets, receivers) = Sockets::new(worker_threads);
    // Binary upgrade: the old process's sockets, taken by listeners with their address.
    // The new process of a binary upgrade (it inherited sockets): the old one still holds the
    // GeoDNS port, which both answer on until it exits (`gslb::start`).
    let upgrade = !handover.listeners.is_empty() || handover.admin.is_some();
    sockets.inherit(handover.listeners);
    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        bound.push(sockets.bind(&l.name, l.bind)?);
    }
    sockets.drop_unused_inherited();

    // The control runtime: everything off the request path (the access-log writer, health
    // checks, the config watcher, the admin server).
    let control_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fulcrum-control")
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let access_log = AccessLog::start(
        &config.global.access_log,
        config.global.access_log_format,
        control_thread.handle(),
    )
    .map_err(Error::AccessLog)?;

    // Read before anything runs: a missing token file is a start error, not a warning.
    let admin_token = config
        .global
        .admin_token_file
        .as_deref()
        .map(crate::admin::read_token)
        .transpose()?;
    let admin_bind = config.global.admin;
    let gslb_bind = config.gslb.as_ref().map(|g| g.bind);
    // DNS backends resolved once before the first snapshot, so pools start with them.
    let discovered = Arc::new(crate::discovery::Discovered::default());
    let resolver = if crate::discovery::any(&config) {
        let resolver = crate::discovery::resolver(&config.global)?;
        // On the control runtime, waited for from this thread (which may itself be driving
        // a runtime: `start` is called from async code too, so no `block_on` here).
        let (done, wait) = std::sync::mpsc::channel();
        let (c, r, d) = (config.clone(), resolver.clone(), Arc::clone(&discovered));
        control_thread.spawn(async move {
            let _ = done.send(crate::discovery::first_round(&c, &r, &d).await);
        });
        wait.recv().unwrap_or(Ok(()))?;
        Some(resolver)
    } else {
        None
    };
    let mut live = Live::new(
        &discovered.expand(&config),
        options.metrics,
        options.tcp_forwarding,
    );
    // Binary upgrade: what the old process had down gets no traffic before the checks say so.
    health::checker::start_down(&live.snapshot.load(), &handover.down);
    // Client connections leave descriptors for the upstream ones (see `listener`).
    live.descriptor_budget = crate::listener::descriptor_budget_at_start();
    let shared = Arc::new(live);
    let listeners: Vec<(String, SocketAddr)> =
        bound.iter().map(|b| (b.name.clone(), b.addr)).collect();
    // A fresh snapshot's slots are the listeners' positions.
    for (slot, b) in bound.into_iter().enumerate() {
        sockets.deal(ListenerSlot::new(slot), b);
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Active checks follow the snapshot; fresh backends are up until a check says otherwise.
    let acme_wanted = crate::acme::wanted(&config);
    let state_dir = config.global.state_dir.clone();
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&shared),
        config,
        sockets,
        control_thread.handle().clone(),
        (discovered, resolver),
    ));
    reloader.start_discovery();
    // ACME orders run on the control runtime and follow the listeners across reloads.
    crate::acme::start(
        &reloader,
        Arc::clone(&shared.acme),
        (state_dir, &acme_wanted),
        control_thread.handle(),
    );
    // Watching starts before the first connection is accepted, so a client that saw Fulcrum
    // answer and then writes the file is sure to be heard.
    let watch = options.watch_config;
    let watcher = match reloader.path() {
        None => None,
        Some(_) if !watch => None,
        Some(path) => match crate::watch::spawn(Arc::clone(&reloader)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch the config file: reload with SIGHUP");
                None
            }
        },
    };
    let inherited_admin = handover.admin.and_then(|(was, socket)| {
        let same = |addr: SocketAddr| was == addr || (addr.port() == 0 && addr.ip() == was.ip());
        admin_bind.filter(|a| same(*a)).map(|_| socket)
    });
    // The charts' data: sampled once a second here, never on the request path; only when an
    // admin server can show it (nothing else reads it).
    let history = crate::history::History::new();
    if admin_bind.is_some() {
        control_thread.spawn(crate::history::run(
            Arc::clone(&history),
            Arc::clone(&shared),
        ));
    }
    let (admin, admin_socket) = match admin_bind {
        None => (None, None),
        Some(addr) => match crate::admin::start(
            addr,
            inherited_admin,
            admin_token,
            Arc::clone(&shared),
            Arc::clone(&reloader),
            (options.admin_extension.clone(), Arc::clone(&history)),
            control_thread.handle(),
        ) {
            Ok((bound, socket)) => (Some(bound), Some((bound, socket))),
            // Traffic matters more than the admin page: serve without it, loudly.
            Err(e @ crate::admin::AdminError::Bind { .. }) => {
                tracing::error!("{}; serving without the admin API", Chain(&e));
                (None, None)
            }
            Err(e) => return Err(e.into()),
        },
    };
    // GeoDNS on the control runtime: it reads the live snapshot, never the request path's.
    let gslb = gslb_bind
        .map(|bind| crate::gslb::start(bind, upgrade, Arc::clone(&shared), control_thread.handle()))
        .transpose()?;
    if let Some(every) = systemd::watchdog_interval() {
        control_thread.spawn(systemd::watchdog(every));
    }
    control_thread.spawn(sweep_limits(Arc::clone(&shared)));
    control_thread.spawn(serving_once_checked(Arc::clone(&shared)));

    let shared_threads = shared_rt.then_some(workers);
    let mut handles = Vec::with_capacity(receivers.len());
    for (id, rx) in receivers.into_iter().enumerate() {
        let h = worker::spawn(
            id,
            rx,
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
        shared,
        reloader,
        watcher,
        shutdown,
        workers: handles,
        control: Some(control_thread),
        admin,
        gslb,
        admin_socket,
        predecessor: None,
    })
}

impl Handle {
    /// The bound address of a listener (the real port when the config said `:0`).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.reloader.listener_addr(name)
    }

    /// Where the admin API listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Where the GeoDNS responder answers (UDP and TCP; the real port when `bind` said `:0`).
    pub fn gslb_addr(&self) -> Option<SocketAddr> {
        self.gslb
    }

    /// Reloads the config file now (the admin API's trigger). Blocking: from async code, call
    /// it in `spawn_blocking`. A bad file changes nothing and is returned (and kept as
    /// `last_reload`); during shutdown the reload is ignored.
    pub fn reload(&self) -> Result<ReloadResult, ReloadError> {
        self.reloader.reload(Trigger::Api)
    }

    /// The outcome of the last reload (any trigger), if one ran.
    pub fn last_reload(&self) -> Option<ReloadResult> {
        self.reloader.last_reload()
    }

    /// Stops the file watcher, for embedders (and tests) that reload only through `reload()`.
    pub fn stop_watching(&mut self) {
        self.watcher = None;
    }

    /// The reloader, for triggers that outlive a borrow of the handle (the admin server).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// Of the open client connections, the idle HTTP/1 ones parked off their tasks (they
    /// have been quiet for `http1::park::PARK_AFTER`).
    pub fn parked_connections(&self) -> usize {
        self.shared.parked_connections()
    }

    /// Health of every pool and backend (cold path: tests, the admin API).
    pub fn status(&self) -> Vec<PoolStatus> {
        health::status::of(&self.shared.snapshot.load())
    }

    /// Backends under active checks.
    pub fn health_checks(&self) -> usize {
        self.reloader.health_checks()
    }

    /// Stops accepting, lets in-flight requests finish (up to `shutdown_grace`), and returns
    /// when every worker has stopped. Blocking.
    pub fn shutdown(mut self) {
        self.stop_and_join(false);
    }

    /// Tells systemd it is ready, reloads on SIGHUP, upgrades on SIGUSR2, and blocks until
    /// SIGTERM or SIGINT (Ctrl-C) or a successful upgrade, then shuts down gracefully.
    pub fn run_until_signal(mut self) -> Result<(), Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let predecessor = self.predecessor.take();
        let stop = rt
            .block_on(wait_for_signal(&self, predecessor))
            .map_err(Error::Runtime)?;
        let grace = self.shared.shutdown_grace;
        let upgraded = match stop {
            Stop::Signal => {
                tracing::info!(
                    ?grace,
                    "shutting down: no new connections, finishing in-flight requests"
                );
                false
            }
            Stop::Upgraded(pid) => {
                tracing::info!(pid, ?grace, "binary upgrade: the new process serves; draining: no new connections, finishing in-flight requests");
                systemd::main_pid(pid);
                self.shared.phase.send_replace(Phase::HandedOver);
                true
            }
        };
        self.stop_and_join(upgraded);
        tracing::info!("stopped");
        Ok(())
    }

    fn stop_and_join(&mut self, upgraded: bool) {
        // `/ready` says 503 from here while in-flight work finishes.
        self.shared.phase.send_if_modified(|p| {
            let was = *p;
            if was != Phase::HandedOver {
                *p = Phase::Draining;
            }
            *p != was
        });
        // A reload in progress finishes; later ones are ignored.
        self.reloader.begin_shutdown();
        self.watcher = None;
        // After an upgrade the service goes on (the new process is its main PID).
        if !upgraded {
            systemd::stopping();
        }
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
        self.reloader.begin_shutdown();
        let _ = self.shutdown.send(true);
        if let Some(control) = self.control.take() {
            control.shutdown_background();
        }
    }
}

/// Every `limits::SWEEP_EVERY`, forgets the clients of every listener's `[listener.limits]`
/// whose state is back to fresh: what bounds the limiter's memory (see `limits`).
async fn sweep_limits(shared: Arc<Live>) {
    let mut every = tokio::time::interval(limits::SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for listener in &shared.snapshot.load().listeners {
            listener.limits.sweep();
        }
    }
}
