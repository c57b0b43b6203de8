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
//! `listener` accepts -> `http` serves the connection (HTTP/1.1 or h2c) -> `http::proxy` loads the
//! snapshot, `route` picks the pool, `balance` picks a backend, the request goes out over the
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

pub mod access_log;
pub mod admin;
pub mod backend;
pub mod balance;
pub mod budget;
pub mod chain;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod demo;
mod error;
pub mod health;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod pool;
pub mod proxy_protocol;
pub mod region;
pub mod reload;
pub mod route;
pub mod select;
pub mod server;
pub mod snapshot;
pub mod splice;
pub mod systemd;
pub mod tcp;
pub mod watch;
pub mod worker;

pub use admin::Extension;
pub use config::Config;
pub use error::Error;
pub use reload::{ReloadError, ReloadResult, Trigger};
pub use server::{start, start_with, Handle, Options};
pub use splice::Forwarding;
pub use worker::Threading;
