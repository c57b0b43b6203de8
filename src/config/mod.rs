//! The validated configuration model: what the rest of Fulcrum consumes.
//!
//! Two types exist on purpose. `file.rs` is a raw serde mirror of the TOML with spans, so every
//! problem can be reported as `file:line:col: key: message`; `validate.rs` turns that mirror into
//! the types below in one place, applying defaults and collecting *all* errors at once. Nothing
//! outside `config/` ever sees the raw form, and nothing here is read on the request path: the
//! snapshot (`crate::snapshot`) compiles this model into request-path structures.

pub mod acme;
pub mod backend_tls;
pub mod diff;
pub mod dns;
mod error;
mod file;
pub(crate) mod files;
pub mod gslb;
mod health;
mod server_tls;
mod validate;

pub use acme::AcmeConfig;
pub use backend_tls::{BackendTls, CaBundle, ClientIdentity, UpstreamProtocol};
pub use diff::{diff, ConfigDiff};
pub use dns::{DnsBackend, DnsSettings, DnsTarget};
pub use error::{ConfigError, ConfigErrors};
pub use gslb::{GslbConfig, GslbRecord};
pub use health::{
    HealthConfig, HealthKind, PassiveConfig, PgRole, PostgresCheck, StatusRanges, MAX_EJECTION,
};
pub use server_tls::{CertFiles, ClientAuth, ListenerTls, NamedFile, Origin, TlsVersion};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

/// xxh3 of a config file's bytes: the fingerprint of a config version.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// A pool's position in `Config::pools`, and in every snapshot built from that config.
/// References between tables (a listener's or route's pool, a pool's backup) are resolved to
/// these during validation, so nothing later looks a pool up by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(u32);

impl PoolId {
    /// The pool at position `index` of `Config::pools` (for configs built in code).
    pub fn new(index: usize) -> PoolId {
        PoolId(u32::try_from(index).unwrap_or(u32::MAX))
    }

    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A backend's position in its pool's `backends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(u32);

impl BackendId {
    pub fn new(index: usize) -> BackendId {
        BackendId(u32::try_from(index).unwrap_or(u32::MAX))
    }

    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A listener's slot in the snapshot: stable across reloads while its name and bind stay the
/// same (assigned by the snapshot, never reused), so a connection finds its own listener
/// after a reload that adds or removes others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerSlot(u32);

impl ListenerSlot {
    pub fn new(index: usize) -> ListenerSlot {
        ListenerSlot(u32::try_from(index).unwrap_or(u32::MAX))
    }

    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A complete, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, for messages; `None` for configs built in code (the demo).
    pub source: Option<PathBuf>,
    /// [`fingerprint`] of the text it was parsed from (`None` for configs built in code): a
    /// reload compares the file with what is running, so an event that changed nothing
    /// reloads nothing.
    pub fingerprint: Option<u64>,
    pub global: Global,
    pub listeners: Vec<ListenerConfig>,
    pub pools: Vec<PoolConfig>,
    /// `[[region]]`, in file order (a region's index is its id in the snapshot).
    pub regions: Vec<RegionConfig>,
    /// `[geo]`.
    pub geo: GeoConfig,
    /// `[gslb]`: the GeoDNS responder, when set.
    pub gslb: Option<GslbConfig>,
}

/// `[[region]]`: which clients belong to a region and where they go when it is down.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionConfig {
    pub name: String,
    /// Client networks of this region (longest prefix wins across all regions).
    pub cidrs: Vec<IpNet>,
    /// ISO 3166-1 alpha-2 codes, upper-cased; used with `[geo] mmdb`.
    pub countries: Vec<String>,
    /// Other regions (validated: defined, not this one), nearest first.
    pub failover: Vec<String>,
}

/// `[geo]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GeoConfig {
    /// A MaxMind-format database (GeoLite2 Country or ip-location-db layout); validated readable.
    pub mmdb: Option<PathBuf>,
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Worker threads; 0 means one per available core (resolved at start, not here).
    pub workers: usize,
    pub access_log: AccessLogTarget,
    /// SIGTERM: stop accepting, let in-flight requests finish for at most this long, exit 0.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// A client that has not sent its whole request header block within this time is closed
    /// (nginx `client_header_timeout`, HAProxy `timeout http-request`): counted from accept for
    /// a connection's first request (HTTP/1 and h2 alike, so a socket that sends nothing or only
    /// part of the h2 preface is closed too), from the first byte of the head for later HTTP/1
    /// requests. Default 10 s.
    pub client_header_timeout: Duration,
    /// A connection with no request in flight (HTTP/1 keep-alive between requests, h2 with no
    /// open stream) is closed after this long (nginx `keepalive_timeout`, HAProxy
    /// `timeout http-keep-alive`). Default 60 s.
    pub client_idle_timeout: Duration,
    /// A write to the client that takes no byte for this long (the client stopped reading)
    /// closes the connection, and drops the upstream connection streaming to it (nginx
    /// `send_timeout`). Default 60 s.
    pub client_send_timeout: Duration,
    /// A request body from which nothing arrives for this long is answered 408 and the
    /// connection closed (nginx `client_body_timeout`); the client's fault, never the
    /// backend's. Default 30 s.
    pub client_body_timeout: Duration,
    /// Admin API, status page and `/metrics`. The file's default is `127.0.0.1:9901`; configs
    /// built in code have none unless they set it.
    pub admin: Option<SocketAddr>,
    /// Bearer token for the admin API, read at start; required when `admin` is not loopback.
    pub admin_token_file: Option<PathBuf>,
    /// Where ACME keeps its account and the certificates it obtained (`acme/` under it),
    /// relative to the config's folder. Default `/var/lib/fulcrum`; used only with `acme`.
    pub state_dir: PathBuf,
    pub access_log_format: AccessLogFormat,
    /// Retired (issue 17): Fulcrum's engine serves every HTTP/1 client. Still accepted so
    /// configs that set it keep loading; `"hyper"` is logged as no longer available.
    pub http1_engine: Option<Http1Engine>,
    /// DNS servers for discovery (`dns`/`srv` backends); empty: the system's resolv.conf.
    pub resolvers: Vec<SocketAddr>,
}

/// `http1_engine` (retired: accepted, no longer selects anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Engine {
    /// hyper's HTTP/1 server, which is gone: logged at start.
    Hyper,
    /// Fulcrum's own engine (`http1`).
    Fulcrum,
}

/// `access_log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// Apache/nginx "combined" plus Fulcrum's fields.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// The admin address a config file gets when it does not name one.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// Layer 4: bytes forwarded both ways to one backend per connection (`crate::tcp`).
    Tcp,
}

/// `on_down` of a tcp pool: what happens to open connections of a backend that goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDown {
    /// They continue (the backend may still serve them).
    #[default]
    Keep,
    /// They are closed, so clients reconnect to a backend that is up (e.g. a new primary).
    Close,
}

/// `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// Default pool; routes take precedence.
    pub pool: PoolId,
    /// Open client connections at most, across all workers.
    pub max_connections: usize,
    /// Request bodies larger than this get 413; 0 means no limit.
    pub max_request_body: u64,
    /// First match wins.
    pub routes: Vec<RouteConfig>,
    /// Connections from `trusted_proxies` start with a PROXY v1/v2 header naming the client.
    pub proxy_protocol: bool,
    /// `[listener.limits]`: per-client request rate and open connections (all off by default).
    pub limits: LimitsConfig,
    /// `[listener.tls]`: TLS terminated here.
    pub tls: Option<ListenerTls>,
    /// A plain http listener that answers every request with 308 to `https://` (same host).
    pub redirect_https: bool,
    /// W3C `traceparent`: always passed through; `Start` also starts a trace for a request
    /// that came without a (valid) one.
    pub trace: TraceMode,
}

/// `trace` of an http listener: what happens to W3C trace context (`traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceMode {
    /// `"pass"`: the client's `traceparent` / `tracestate` go to the backend as sent.
    #[default]
    Pass,
    /// `"start"`: as `Pass`, and a request without a valid `traceparent` gets a new one.
    Start,
}

/// `[listener.limits]`: what one client may do, the client being the resolved address
/// (`trusted_proxies` honoured: the `X-Forwarded-For` client for requests, the PROXY header's
/// source for connections). Every field 0 = off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitsConfig {
    /// Requests per second a client may send (GCRA: one every `1 / requests_per_second` s);
    /// over it the request gets 429 with `Retry-After`. 0 = off.
    pub requests_per_second: u32,
    /// Requests a client may send at once beyond `requests_per_second`: a client that was
    /// quiet may send `requests_per_second + burst` back to back. Needs `requests_per_second`.
    pub burst: u32,
    /// Open connections per client; one over it is closed at accept. 0 = off.
    pub connections_per_client: u32,
}

/// `[[listener.route]]`: every condition that is set must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// tcp listeners: the ClientHello's server name, exact or `*.example.com`, lower-cased (TLS
    /// passthrough); never set together with the HTTP conditions below.
    pub sni: Option<String>,
    /// Exact host (`example.com`) or wildcard (`*.example.com`), lower-cased, without port.
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub header: Option<HeaderMatch>,
    pub pool: PoolId,
}

/// Header condition of a route; the name is lower-cased, the value compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceKind {
    RoundRobin,
    LeastConn,
    RandomTwo,
    /// Same key, same backend, on every instance (`hash_key` says which key).
    ConsistentHash,
    /// A cookie names the backend (`sticky_cookie` says which cookie).
    StickyCookie,
}

/// `hash_key` of a `consistent_hash` pool: what part of the request is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address (the TCP peer).
    ClientIp,
    /// `header:NAME`: the value of that request header (the first one, when repeated).
    Header(http::HeaderName),
    /// `cookie:NAME`: the value of that cookie.
    Cookie(String),
    /// The request path, without the query.
    Path,
}

/// `retry_on`: which failures send a request on to another backend (never one already
/// tried for it). The list in the file replaces the default `["connect", "reset"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// `"connect"`: the connection to the backend failed or timed out; nothing was sent, so
    /// any request may go elsewhere.
    pub connect: bool,
    /// `"reset"`: the backend closed or reset before any response byte; only idempotent
    /// requests without a body.
    pub reset: bool,
    /// `"502"`, `"503"`, `"504"`: the backend answered that status; only idempotent requests
    /// without a body. Indexed by `code - 502`.
    pub statuses: [bool; 3],
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            connect: true,
            reset: true,
            statuses: [false; 3],
        }
    }
}

impl RetryOn {
    /// Nothing retried (the start of a list read from a file).
    pub fn none() -> Self {
        RetryOn {
            connect: false,
            reset: false,
            statuses: [false; 3],
        }
    }

    /// Whether a response with `code` is retried.
    #[inline]
    pub fn status(&self, code: u16) -> bool {
        code.checked_sub(502)
            .and_then(|i| self.statuses.get(usize::from(i)))
            .copied()
            .unwrap_or(false)
    }
}

/// `[[pool]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub balance: BalanceKind,
    /// Other backends tried after a connect failure or a safe retryable error.
    pub retries: u32,
    /// Which failures are retried (`retry_on`).
    pub retry_on: RetryOn,
    pub connect_timeout: Duration,
    /// From the request sent to the response head received; past it the client gets 504.
    pub request_timeout: Duration,
    /// Pooled upstream connections idle longer than this are closed.
    pub idle_timeout: Duration,
    /// Open upstream connections per backend, across all workers; 0 = no cap.
    pub max_connections: u32,
    /// Requests (or tcp connections) waiting per backend for a free connection when it is at
    /// `max_connections`; past it: 503 at once (tcp: the next backend, else closed).
    pub max_queue: u32,
    /// How long one waits for a free connection before 503.
    pub queue_timeout: Duration,
    /// `consistent_hash` only: the request's key. Default `ClientIp`.
    pub hash_key: HashKey,
    /// `sticky_cookie` only: the cookie's name. Default `FULCRUM_STICKY`.
    pub sticky_cookie: String,
    /// Backends with literal addresses.
    pub backends: Vec<BackendConfig>,
    /// Backends given by DNS names: their addresses join `backends` in every snapshot, as
    /// `crate::discovery` finds them.
    pub names: Vec<DnsBackend>,
    /// `[pool.dns]`.
    pub dns: DnsSettings,
    /// Pool that serves when no backend here is available (validated: another pool, no cycle).
    pub backup: Option<PoolId>,
    /// A backend that comes back (or is added) ramps to its full share over this time.
    pub slow_start: Duration,
    /// Every backend down and nothing in the backup chain: use them all anyway.
    pub fail_open: bool,
    /// `[pool.health]`; `None`: backends are assumed up.
    pub health: Option<HealthConfig>,
    /// `[pool.passive]`; always on with its defaults unless `consecutive_failures = 0`.
    pub passive: PassiveConfig,
    /// Clients of unknown region are spread over these regions by weight (names validated).
    pub region_split: Vec<(String, u32)>,
    /// tcp pools: a PROXY v2 header naming the client starts every backend connection.
    pub send_proxy: bool,
    /// tcp pools: close open connections of a backend once it is down for this pool.
    pub on_down: OnDown,
    /// `protocol`: HTTP/1.1, h2c, h2 (TLS) or auto (TLS, ALPN decides) to the backends.
    pub protocol: UpstreamProtocol,
    /// `[pool.tls]`: TLS to the backends (requests and health checks); `None`: plain TCP.
    pub tls: Option<BackendTls>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: SocketAddr,
    /// What the status page and the history show (the address when `None`); unique in the
    /// pool. Metrics and the admin API keep naming the backend by its address.
    pub name: Option<String>,
    /// > 0.
    pub weight: u32,
    pub region: Option<String>,
}

impl Config {
    /// Reads, parses and validates a config file; every problem is reported, each with
    /// `file:line:col: key: message`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::io(path, &e))?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` names it in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut config = validate::validate(text, path)?;
        config.fingerprint = Some(fingerprint(text.as_bytes()));
        Ok(config)
    }

    /// The name of pool `id` (`"?"` for an id this config does not have).
    pub fn pool_name(&self, id: PoolId) -> &str {
        self.pools.get(id.index()).map_or("?", |p| p.name.as_str())
    }

    /// The pool named `name`, for configs built in code.
    pub fn pool_id(&self, name: &str) -> Option<PoolId> {
        self.pools
            .iter()
            .position(|p| p.name == name)
            .map(PoolId::new)
    }

    /// Every pool id names a pool of this config. Always true of a validated file; checked at
    /// start for configs built in code, so a bad id is an error, never a wrong pool.
    pub fn check_references(&self) -> Result<(), ConfigErrors> {
        let n = self.pools.len();
        let bad = |what: String| ConfigError {
            file: self.source.as_ref().map_or_else(
                || "(config built in code)".into(),
                |p| p.display().to_string(),
            ),
            line: 0,
            col: 0,
            key: what,
            message: format!("names a pool that does not exist ({n} pool(s))"),
        };
        let mut errors = Vec::new();
        for l in &self.listeners {
            if l.pool.index() >= n {
                errors.push(bad(format!("listener \"{}\": pool", l.name)));
            }
            for r in &l.routes {
                if r.pool.index() >= n {
                    errors.push(bad(format!("listener \"{}\": route: pool", l.name)));
                }
            }
        }
        for p in &self.pools {
            if p.backup.is_some_and(|b| b.index() >= n) {
                errors.push(bad(format!("pool \"{}\": backup", p.name)));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Files whose change should trigger a reload: the config itself and the files it names
    /// (`[geo] mmdb`, the certificates, keys and client CAs of `[listener.tls]`).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let tls = self
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref())
            .flat_map(|t| t.files().map(|f| &f.path));
        self.source
            .iter()
            .chain(self.geo.mmdb.as_ref())
            .chain(tls)
            .chain(
                self.pools
                    .iter()
                    .filter_map(|p| p.tls.as_ref())
                    .flat_map(BackendTls::files),
            )
            .cloned()
            .collect()
    }

    /// One line for `fulcrum check`: `2 listeners, 3 pools, 7 backends, 4 routes`.
    pub fn summary(&self) -> String {
        let backends: usize = self.pools.iter().map(|p| p.backends.len()).sum();
        let routes: usize = self.listeners.iter().map(|l| l.routes.len()).sum();
        let names: usize = self.pools.iter().map(|p| p.names.len()).sum();
        let mut summary = format!(
            "{} listener(s), {} pool(s), {} backend(s), {} route(s)",
            self.listeners.len(),
            self.pools.len(),
            backends,
            routes
        );
        // DNS backends are resolved at run, never by `check`: counted apart.
        if names > 0 {
            summary.push_str(&format!(", {names} DNS name(s)"));
        }
        summary
    }
}

/// `[global] state_dir`'s default (systemd's `StateDirectory=fulcrum`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fulcrum";

impl Default for Global {
    fn default() -> Self {
        Global {
            workers: 0,
            access_log: AccessLogTarget::Stdout,
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            client_header_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(60),
            client_send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(30),
            admin: None,
            admin_token_file: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            access_log_format: AccessLogFormat::Combined,
            http1_engine: None,
            resolvers: Vec::new(),
        }
    }
}

impl PoolConfig {
    /// A pool with the documented defaults, for configs built in code.
    pub fn new(name: impl Into<String>, backends: Vec<BackendConfig>) -> Self {
        PoolConfig {
            name: name.into(),
            balance: BalanceKind::RoundRobin,
            retries: 2,
            retry_on: RetryOn::default(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 0,
            max_queue: 100,
            queue_timeout: Duration::from_secs(1),
            hash_key: HashKey::ClientIp,
            sticky_cookie: "FULCRUM_STICKY".to_string(),
            backends,
            names: Vec::new(),
            dns: DnsSettings::default(),
            backup: None,
            slow_start: Duration::ZERO,
            fail_open: false,
            health: None,
            passive: PassiveConfig::default(),
            region_split: Vec::new(),
            send_proxy: false,
            on_down: OnDown::Keep,
            protocol: UpstreamProtocol::Http1,
            tls: None,
        }
    }
}

impl ListenerConfig {
    /// An HTTP listener with the documented defaults, for configs built in code.
    pub fn http(name: impl Into<String>, bind: SocketAddr, pool: PoolId) -> Self {
        ListenerConfig {
            name: name.into(),
            bind,
            protocol: Protocol::Http,
            pool,
            max_connections: 100_000,
            max_request_body: 0,
            routes: Vec::new(),
            proxy_protocol: false,
            limits: LimitsConfig::default(),
            tls: None,
            redirect_https: false,
            trace: TraceMode::Pass,
        }
    }

    /// A TCP listener with the documented defaults, for configs built in code.
    pub fn tcp(name: impl Into<String>, bind: SocketAddr, pool: PoolId) -> Self {
        ListenerConfig {
            protocol: Protocol::Tcp,
            ..ListenerConfig::http(name, bind, pool)
        }
    }
}
