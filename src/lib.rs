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
//! `listener` accepts (`limits`: a client over `connections_per_client` is closed) -> HTTP/1.1:
//! Fulcrum's engine (`http1`: one task drives the client and the pooled upstream connection,
//! calling `http`'s request-path decisions); h2c: hyper (`http`) -> `http::proxy` loads the
//! snapshot, `limits`
//! answers 429 to a client over its rate, `route` picks the pool, `balance` picks a backend, the request goes out over the
//! worker's pooled connection (`http::client`), a connect failure moves it to another backend,
//! and the response streams back; the access log records it when its last byte has gone.
//!
//! # One TCP connection
//! `listener` accepts on a `protocol = "tcp"` listener -> `tcp` picks a backend through the same
//! `select` (next backend on a connect failure) -> `splice` moves bytes both ways.
//!
//! # Start and stop
//! `start(Config) -> Handle` binds every listener before anything runs; `Handle::shutdown`
//! stops accepting, lets in-flight requests finish within `shutdown_grace` and returns.

// The public API: `start`, `Handle`, `Options`, `Config` (and the `config` model it is made
// of), `Error`, reload outcomes, health views, and the demo the binary runs. Every other module
// is private, so rustc reports what nothing uses.
pub mod config;
pub mod demo;

mod access_log;
mod admin;
mod backend;
mod balance;
mod budget;
mod chain;
mod client_ip;
mod clock;
mod error;
mod health;
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
mod splice;
mod systemd;
mod tcp;
mod watch;
mod worker;

pub use admin::Extension;
pub use backend::{Condition, StateChange};
pub use config::Config;
pub use error::Error;
pub use health::status::{BackendStatus, PoolStatus};
pub use reload::{ReloadError, ReloadResult, Reloader, Trigger};
pub use server::{start, start_with, Handle, Options};
pub use splice::Forwarding;
pub use worker::Threading;

/// Pieces `benches/` and the integration tests measure or check directly. Not API: no
/// stability promise, kept to what they need.
#[doc(hidden)]
pub mod internals {
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
}
