//! Fulcrum: a load balancer and reverse proxy.
//!
//! # Glossary
//! - **listener**: an address Fulcrum accepts clients on (`[[listener]]`).
//! - **pool**: a set of backends a listener or route sends to (`[[pool]]`).
//! - **backend**: one server of a pool; its shared state is atomics (`backend::BackendState`).
//! - **snapshot**: the immutable, compiled form of a config that the request path reads through
//!   one `ArcSwap` load (`snapshot::Snapshot`).
//! - **worker**: a thread with its own single-threaded runtime, listening sockets and upstream
//!   connection pool (`worker`).
//!
//! # One HTTP request
//! `listener` accepts (`limits`: a client over `connections_per_client` is closed) -> on a
//! `[listener.tls]` listener, the TLS handshake in the connection's task (`tls`: the
//! snapshot's rustls config, SNI picking the certificate) -> plain HTTP/1.1 on a listener the
//! engine covers: Fulcrum's engine (`http1`: one task drives the client and the pooled upstream
//! connection, calling `http`'s request-path decisions); h2c, TLS and the rest: hyper (`http`:
//! HTTP/1.1, h2c, or either over TLS as ALPN said) -> `http::proxy` loads the snapshot, `limits`
//! answers 429 to a client over its rate, `route` picks the pool, `balance` picks a backend, the request goes out over the
//! worker's pooled connection (`http::client`), a connect failure moves it to another backend,
//! and the response streams back; the access log records it when its last byte has gone.
//!
//! # One TCP connection
//! `listener` accepts on a `protocol = "tcp"` listener -> `tcp` picks a backend through the same
//! `select` (next backend on a connect failure) -> `splice` moves bytes both ways.
//!
//! # One GeoDNS query
//! With `[gslb]`, `gslb` (hickory-server, on the control runtime) reads a query -> loads the
//! snapshot once -> the querier (EDNS Client Subnet, else the source) is placed by `region`
//! -> the first region of its order where every pool of the name has a backend `select`
//! would use -> that region's vips, `AAAA` from its IPv6 ones; at most 3x the query's size
//! over UDP, else TC.
//!
//! # Start and stop
//! `start(Config) -> Handle` binds every listener before anything runs; `Handle::shutdown`
//! stops accepting, lets in-flight requests finish within `shutdown_grace` and returns.
//!
//! # Binary upgrade
//! SIGUSR2 (`Handle::run_until_signal`) -> `upgrade` starts the binary at its path and hands
//! it every listening socket of `listener::Sockets` and the admin socket, and the backends
//! that are down -> the new process (`Inherited::from_env`, `start_inheriting`) listens on
//! them, waits for its first round of checks, answers ready -> the old one stops accepting and
//! drains. `/ready` (`admin`) follows `snapshot::Phase` throughout.

// The public API: `start`, `Handle`, `Options`, `Config` (and the `config` model it is made
// of), `Error`, reload outcomes, health views, and the demo the binary runs. Every other module
// is private, so rustc reports what nothing uses.
pub mod config;
pub mod demo;

mod access_log;
mod acme;
mod acme_state;
mod admin;
mod backend;
mod balance;
mod budget;
mod chain;
mod client_ip;
mod clock;
mod discovery;
mod error;
mod gslb;
mod health;
mod history;
mod http;
mod http1;
mod limits;
mod listener;
mod metrics;
mod pool;
mod proxy_protocol;
mod region;
mod reload;
mod route;
mod select;
mod server;
mod snapshot;
mod sni;
mod splice;
mod systemd;
mod tcp;
mod tls;
mod upgrade;
mod watch;
mod worker;

pub use admin::Extension;
pub use backend::{Condition, StateChange};
pub use config::Config;
pub use error::Error;
pub use health::status::{BackendStatus, PoolStatus};
pub use reload::{ReloadError, ReloadResult, Reloader, Trigger};
pub use server::{check_files, start, start_inheriting, start_with, Handle, Options};
pub use splice::Forwarding;
pub use upgrade::{Inherited, UpgradeError};
pub use worker::Threading;

/// Pieces `benches/` and the integration tests measure or check directly. Not API: no
/// stability promise, kept to what they need.
#[doc(hidden)]
pub mod internals {
    /// The admin handler without a network (`fuzz/`).
    pub use crate::admin::harness::{Harness as AdminHarness, TOKEN as ADMIN_TOKEN};
    pub use crate::admin::{
        HEADER_READ_TIMEOUT as ADMIN_HEADER_READ_TIMEOUT, MAX_CONNECTIONS as ADMIN_MAX_CONNECTIONS,
    };
    pub use crate::backend::{Backend, BackendState, InflightGuard};
    pub use crate::balance::{key_hash, Affinity, Balancer};
    /// The HTTP/1 engine's head parsers and chunked decoder, with invariants (`fuzz/`).
    pub use crate::http1::fuzz::head_and_framing as http1_head_and_framing;
    pub use crate::limits::ClientLimits;
    /// The PROXY header reader's parser (`fuzz/`).
    pub use crate::proxy_protocol::{source as proxy_source, HeaderError as ProxyHeaderError};
    pub use crate::region::Regions;
    pub use crate::route::RouteTable;
    /// The ClientHello reader of TLS passthrough (`fuzz/`).
    pub use crate::sni::{
        parse as sni_parse, Hello as SniHello, Parsed as SniParsed, MAX_RECORD as SNI_MAX_RECORD,
    };
}
