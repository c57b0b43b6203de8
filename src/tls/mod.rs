//! TLS: rustls configs built once per snapshot, off the request path.
//!
//! - `client.rs`: TLS to the backends (`[pool.tls]`): the client config, the connector, and the
//!   upstream stream type (plain or TLS) that the HTTP pools and the health checks share.

pub(crate) mod client;
