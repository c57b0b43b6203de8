//! TLS with rustls: the crypto provider of the process; (in `certs`, `store` and `server`) the
//! certificates of `[listener.tls]` and the server configs built from them; (in `client`) TLS
//! to the backends (`[pool.tls]`): the client config, the connector, and the upstream stream
//! type (plain or TLS) that the HTTP pools and the health checks share.
//!
//! Why one provider chosen here: rustls is built with both aws-lc-rs and ring; the faster one
//! for full handshakes with an ECDSA P-256 certificate (README, "HTTPS": measured by
//! `benches/tls_handshakes.rs`) is installed as the process default at start and passed
//! explicitly to every config built, so no config depends on what was installed first.

pub mod certs;
pub(crate) mod client;
pub mod peer;
pub mod server;
pub mod store;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use peer::PeerCert;
pub use server::{Handshake, ServerTls};

/// The provider every TLS config of the process uses: aws-lc-rs (faster than ring for full
/// ECDSA P-256 handshakes, see README).
pub fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Installs [`provider`] as the process default (for code that builds configs without naming
/// one); a default another part of the process installed first is kept.
pub fn install_default() {
    let _ = CryptoProvider::install_default(CryptoProvider::clone(provider()));
}

/// Session tickets for TLS 1.3 resumption (and 1.2's stateless one): rustls's rotating
/// ticketer (a new key every 6 hours, the previous one still accepted) of [`provider`].
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
}
