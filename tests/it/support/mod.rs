//! Shared test machinery: backends, Fulcrum launchers, clients, bounded waits, and the check
//! for programs some tests need.

pub mod backend;
pub mod browser;
pub mod client;
pub mod dns;
pub mod external;
pub mod flip;
pub mod logged;
pub mod pebble;
pub mod postgres;
pub mod proxy;
pub mod redis;
pub mod tcp;
pub mod tls;
pub mod tls_backend;
pub mod wait;
pub mod writes;

pub use external::require;
pub use wait::{eventually, eventually_blocking};
