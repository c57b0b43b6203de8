//! The one `reload()` behind every trigger (file watcher, SIGHUP, the admin API).
//!
//! Why one function: the contract ("validate completely, then swap; a bad file changes
//! nothing") must hold whatever asked for the reload, so there is exactly one path. It reads the
//! file once (the bytes are hashed for the record), parses and validates it completely, builds
//! the new `Snapshot` off the request path (backend state carried by `(pool, address)`), binds
//! the sockets of added listeners (a bind error is a failed reload, nothing changed yet), stores
//! the snapshot with one `ArcSwap` store, hands the new sockets to the workers, retires removed
//! listeners (their connections drain), and restarts the active checks for the new snapshot.
//!
//! Reloads are serialized by one `Mutex` on this cold path; the request path never sees it.
//! Once shutdown has begun, reloads are ignored.

// The reload Mutex is a cold path (a few reloads a day), never the request path.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::chain::Chain;
use crate::config::{fingerprint, Config, ConfigDiff, ConfigErrors};
use crate::discovery::{self, Discovered, DiscoveryTasks, NameStatus, OnChange};
use crate::health::checker::{self, HealthTasks};
use crate::listener::{BindError, InheritedListener, Sockets};
use crate::snapshot::Live;
use crate::snapshot::Snapshot;
use crate::systemd;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The config file (or a file it names) changed.
    File,
    /// SIGHUP.
    Signal,
    /// `Handle::reload` (the admin API).
    Api,
}

impl Trigger {
    /// The lowercase name used in logs and the admin API's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "signal",
            Trigger::Api => "api",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one reload, kept for the admin API (`Handle::last_reload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadResult {
    pub at: SystemTime,
    pub trigger: Trigger,
    pub ok: bool,
    /// A summary on success; every `file:line:col: key: message` on failure.
    pub message: String,
    /// xxh3 of the file's bytes (`None` when it could not be read).
    pub hash: Option<u64>,
    /// Read, parse, validate, build, bind and swap.
    pub took: Duration,
}

/// Why a reload did not happen or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("shutting down: reload ignored")]
    ShuttingDown,
    #[error("the config file has not changed since it was last read")]
    Unchanged,
    #[error("the config was not read from a file: nothing to reload")]
    NoFile,
    #[error("{0}")]
    Config(ConfigErrors),
    #[error(transparent)]
    Bind(#[from] BindError),
}

#[derive(Debug)]
struct State {
    stopping: bool,
    config: Config,
    /// The listening sockets, dealt to the workers.
    sockets: Sockets,
    health: HealthTasks,
    /// One resolution task per `dns`/`srv` backend of `config`.
    discovery: DiscoveryTasks,
    /// Built when a config first names a DNS backend.
    resolver: Option<hickory_resolver::TokioResolver>,
    /// Hash of the file last read (applied or not): the watcher skips unchanged content.
    seen: Option<u64>,
    last: Option<ReloadResult>,
    /// The last [`RECENT_RELOADS`] outcomes, newest last (the status page lists them).
    recent: std::collections::VecDeque<ReloadResult>,
}

/// Reload outcomes kept for the status page.
pub const RECENT_RELOADS: usize = 5;

/// Told the config after each applied reload (the ACME tasks follow the listeners with it).
pub(crate) type OnApplied = Box<dyn Fn(&Config) + Send + Sync>;

/// The [`OnApplied`] hook, set once at start.
#[derive(Default)]
struct Hook(std::sync::OnceLock<OnApplied>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

/// The [`OnChange`] hook, set once when discovery starts.
#[derive(Default)]
struct ChangeHook(std::sync::OnceLock<OnChange>);

impl std::fmt::Debug for ChangeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeHook")
    }
}

/// Owns everything a reload changes; shared by the `Handle` and the triggers.
#[derive(Debug)]
pub struct Reloader {
    shared: Arc<Live>,
    path: Option<PathBuf>,
    control: tokio::runtime::Handle,
    state: Mutex<State>,
    on_applied: Hook,
    /// The last good answer of every DNS name: every snapshot is built from the config
    /// expanded with it.
    discovered: Arc<Discovered>,
    /// How a discovery task asks for a rebuild (set once by [`Reloader::start_discovery`]).
    on_change: ChangeHook,
}

impl Reloader {
    /// `discovered` and `resolver`: what the first snapshot was built with (see
    /// `discovery::first_round`).
    pub(crate) fn new(
        shared: Arc<Live>,
        config: Config,
        sockets: Sockets,
        control: tokio::runtime::Handle,
        (discovered, resolver): (Arc<Discovered>, Option<hickory_resolver::TokioResolver>),
    ) -> Reloader {
        let health = checker::spawn(&shared.snapshot.load(), &control);
        let path = config.source.clone();
        // The file as it was parsed at start: the watcher's first event reloads only if the
        // file (or one it names) changed since.
        let seen = match (config.fingerprint, &path) {
            (Some(hash), Some(path)) => Some(with_named_files(hash, path, &config)),
            _ => None,
        };
        Reloader {
            shared,
            path,
            control,
            state: Mutex::new(State {
                stopping: false,
                config,
                sockets,
                health,
                discovery: DiscoveryTasks::none(),
                resolver,
                seen,
                last: None,
                recent: std::collections::VecDeque::with_capacity(RECENT_RELOADS),
            }),
            on_applied: Hook::default(),
            discovered,
            on_change: ChangeHook::default(),
        }
    }

    /// Starts re-resolving the config's DNS backends; an answer that changes rebuilds the
    /// snapshot through this reloader (held weakly: the tasks never keep it alive).
    pub(crate) fn start_discovery(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let hook: OnChange = Arc::new(move || {
            if let Some(reloader) = weak.upgrade() {
                reloader.rebuild_discovered();
            }
        });
        let _ = self.on_change.0.set(hook);
        let mut state = self.lock();
        let config = state.config.clone();
        self.follow_names(&mut state, &config);
    }

    /// Restarts the resolution tasks when `config`'s names differ from the running ones.
    fn follow_names(&self, state: &mut State, config: &Config) {
        let Some(on_change) = self.on_change.0.get() else {
            return;
        };
        if state.discovery.serve(config) {
            return;
        }
        if state.resolver.is_none() && discovery::any(config) {
            match discovery::resolver(&config.global) {
                Ok(r) => state.resolver = Some(r),
                Err(e) => tracing::error!("DNS backends are not resolved: {e}"),
            }
        }
        state.discovery = match &state.resolver {
            Some(resolver) => {
                discovery::spawn(config, resolver, &self.discovered, &self.control, on_change)
            }
            None => DiscoveryTasks::none(),
        };
    }

    /// A DNS answer changed: the running config is built again with the new addresses.
    /// The same rebuild as [`Reloader::refresh_files`].
    fn rebuild_discovered(&self) {
        match self.refresh_files() {
            Ok(()) | Err(ReloadError::ShuttingDown) => {}
            Err(e) => tracing::error!("rebuild after a DNS change failed: {}", Chain(&e)),
        }
    }

    /// Every DNS name of the running config with its current addresses (the status API).
    pub fn dns_names(&self) -> Vec<NameStatus> {
        let state = self.lock();
        self.discovered.status(&state.config)
    }

    /// Sets the hook told of every applied config (once; a second call is ignored).
    pub(crate) fn on_applied(&self, hook: OnApplied) {
        let _ = self.on_applied.0.set(hook);
    }

    /// Rebuilds the snapshot from the running config, re-reading the files it names: how a
    /// certificate the ACME task wrote is put in service (new handshakes get it, open
    /// connections keep theirs). Not a reload: the config file is not read again and the
    /// last reload's record stays. Blocking.
    pub fn refresh_files(&self) -> Result<(), ReloadError> {
        let mut state = self.lock();
        if state.stopping {
            return Err(ReloadError::ShuttingDown);
        }
        let config = state.config.clone();
        self.apply(&mut state, config).map(|_| ())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic mid-reload leaves the state consistent (the swap is the last step that
        // matters), so a poisoned lock is taken as is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads, validates and applies the config file. Blocking (run it off async threads).
    pub fn reload(&self, trigger: Trigger) -> Result<ReloadResult, ReloadError> {
        self.run(trigger, false)
    }

    /// The watcher's variant: `Err(Unchanged)` when the file's bytes are the ones last read
    /// (a touch, or an event for another file of the directory).
    pub fn reload_if_changed(&self, trigger: Trigger) -> Result<ReloadResult, ReloadError> {
        self.run(trigger, true)
    }

    fn run(&self, trigger: Trigger, skip_same: bool) -> Result<ReloadResult, ReloadError> {
        let mut state = self.lock();
        if state.stopping {
            tracing::info!(%trigger, "reload ignored: shutting down");
            return Err(ReloadError::ShuttingDown);
        }
        let path = self.path.clone().ok_or(ReloadError::NoFile)?;
        let started = Instant::now();
        let bytes = std::fs::read(&path);
        if skip_same {
            if let Err(e) = &bytes {
                // Mid-update (an editor's rename dance) or deleted: keep serving, and let the
                // next event (the file coming back) reload. Not recorded as a failed reload.
                tracing::warn!(path = %path.display(), error = %e, "config file unreadable: not reloaded");
                return Err(ReloadError::Config(ConfigErrors::io(&path, e)));
            }
        }
        let hash = bytes.as_ref().ok().map(|b| fingerprint(b));
        // What the watcher compares: the config's bytes and the other files' size and mtime.
        let seen = hash.map(|h| with_named_files(h, &path, &state.config));
        if skip_same && seen.is_some() && seen == state.seen {
            return Err(ReloadError::Unchanged);
        }
        state.seen = seen;
        systemd::reloading();
        let applied = bytes
            .map_err(|e| ReloadError::Config(ConfigErrors::io(&path, &e)))
            .and_then(|b| parse(&b, &path))
            .and_then(|config| self.apply(&mut state, config));
        let took = started.elapsed();
        let (ok, message) = match &applied {
            Ok(summary) => (true, summary.clone()),
            Err(e) => (false, Chain(e).to_string()),
        };
        let result = ReloadResult {
            at: SystemTime::now(),
            trigger,
            ok,
            message,
            hash,
            took,
        };
        if ok {
            tracing::info!(%trigger, ?took, hash = ?hash, "config reloaded: {}", result.message);
            systemd::reloaded("config reloaded");
        } else {
            tracing::error!(
                %trigger,
                "config reload failed, old config still serving:\n{}",
                result.message
            );
            systemd::reloaded("config reload failed; old config still serving");
        }
        crate::metrics::get()
            .reloads
            .with_label_values(&[if result.ok { "ok" } else { "error" }])
            .inc();
        state.last = Some(result.clone());
        if state.recent.len() == RECENT_RELOADS {
            state.recent.pop_front();
        }
        state.recent.push_back(result.clone());
        match applied {
            Ok(_) => Ok(result),
            Err(e) => Err(e),
        }
    }

    /// Validated config -> running: build, bind added listeners, swap, hand over, retire.
    fn apply(&self, state: &mut State, config: Config) -> Result<String, ReloadError> {
        let old = self.shared.snapshot.load_full();
        // The names' addresses found so far join the pools as ordinary backends.
        let next = Snapshot::build(
            &self.discovered.expand(&config),
            Some(&old),
            self.shared.metrics,
        );

        // Bind every added listener before anything changes: a bind error fails the reload.
        let mut added = Vec::new();
        for l in &next.listeners {
            if !state.sockets.is_live(l.slot) {
                added.push((l.slot, state.sockets.bind(&l.name, l.bind)?));
            }
        }

        let next = Arc::new(next);
        self.shared.snapshot.store(Arc::clone(&next));

        for (slot, bound) in added {
            tracing::info!(listener = %bound.name, addr = %bound.addr, "listener added");
            state.sockets.deal(slot, bound);
        }
        state
            .sockets
            .retire_unless(|slot| next.listener(slot).is_some());

        // The verdicts live in the carried BackendState; the old checks stop when dropped.
        state.health = checker::spawn(&next, &self.control);
        self.follow_names(state, &config);
        if config.global != state.config.global {
            tracing::warn!("[global] changed: it takes effect at the next restart");
        }
        match crate::config::diff::gslb_line(state.config.gslb.as_ref(), config.gslb.as_ref()) {
            Some((line, true)) => tracing::warn!("{line}"),
            Some((line, false)) => tracing::info!("{line}"),
            None => {}
        }
        let summary = config.summary();
        if let Some(hook) = self.on_applied.0.get() {
            hook(&config);
        }
        state.config = config;
        Ok(summary)
    }

    /// What a reload would change, without changing anything (the admin API's dry run):
    /// the file is read and validated like a reload, then compared with the running config.
    pub fn dry_run(&self) -> Result<ConfigDiff, ReloadError> {
        let path = self.path.clone().ok_or(ReloadError::NoFile)?;
        let bytes =
            std::fs::read(&path).map_err(|e| ReloadError::Config(ConfigErrors::io(&path, &e)))?;
        let candidate = parse(&bytes, &path)?;
        Ok(crate::config::diff(&self.lock().config, &candidate))
    }

    /// Stops accepting reloads (a reload in progress finishes first).
    pub(crate) fn begin_shutdown(&self) {
        self.lock().stopping = true;
    }

    /// The last reload's outcome, if any reload ran.
    pub fn last_reload(&self) -> Option<ReloadResult> {
        self.lock().last.clone()
    }

    /// The last few reloads' outcomes, newest first.
    pub fn recent_reloads(&self) -> Vec<ReloadResult> {
        self.lock().recent.iter().rev().cloned().collect()
    }

    /// Where listener `name` listens now.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.lock().sockets.addr(name)
    }

    /// Every live listener: name, bound address, open connections (cold path).
    pub fn listeners(&self) -> Vec<(String, SocketAddr, usize)> {
        self.lock().sockets.listeners()
    }

    /// A duplicate of every listening socket, for the new process of a binary upgrade.
    pub(crate) fn duplicate_sockets(&self) -> std::io::Result<Vec<InheritedListener>> {
        self.lock().sockets.duplicates()
    }

    /// Backends under active checks.
    pub fn health_checks(&self) -> usize {
        self.lock().health.len()
    }

    /// Files whose change triggers a reload (from the running config).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.lock().config.watched_files()
    }

    /// The config file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The runtime reloads and checks run on.
    pub(crate) fn control(&self) -> &tokio::runtime::Handle {
        &self.control
    }
}

/// `hash` combined with the size and mtime of every other file the config names (a GeoIP
/// database is large; its metadata is enough to notice a replacement), and the contents of
/// small ones (certificates and keys: a renewal may rewrite one within the same second, at
/// the same size). Symlinks are followed, so a swapped link (Kubernetes' `..data`) counts.
/// Named files up to this size are hashed whole by [`with_named_files`].
const SMALL_FILE: u64 = 1 << 20;

fn with_named_files(hash: u64, path: &Path, config: &Config) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash.hash(&mut h);
    for file in config
        .watched_files()
        .iter()
        .filter(|f| f.as_path() != path)
    {
        let meta = std::fs::metadata(file).ok();
        meta.as_ref().map(|m| m.len()).hash(&mut h);
        meta.as_ref().and_then(|m| m.modified().ok()).hash(&mut h);
        if meta.is_some_and(|m| m.is_file() && m.len() <= SMALL_FILE) {
            std::fs::read(file)
                .ok()
                .map(|b| fingerprint(&b))
                .hash(&mut h);
        }
    }
    h.finish()
}

fn parse(bytes: &[u8], path: &Path) -> Result<Config, ReloadError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        ReloadError::Config(ConfigErrors::io(path, &io))
    })?;
    let config = Config::from_toml(text, path).map_err(ReloadError::Config)?;
    // The certificates it names, read as the snapshot will read them.
    crate::tls::server::check(&config).map_err(ReloadError::Config)?;
    Ok(config)
}
