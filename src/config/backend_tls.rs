//! The validated model of how Fulcrum talks to a pool's backends: `[pool] protocol` (HTTP/1.1,
//! h2c, h2 over TLS, or ALPN's choice) and `[pool.tls]` (TLS to the backends).
//!
//! Certificates and keys are read and parsed by validation (so `fulcrum check` fails on an
//! unreadable or malformed file, naming it) and kept here as DER: the snapshot builds the rustls
//! client config from them (`crate::tls::client`) without touching the file system again.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `[pool] protocol`: what is spoken to the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS when `[pool.tls]` is set); the default.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge, in the clear.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`); needs `[pool.tls]`.
    H2,
    /// TLS, and ALPN decides between `h2` and `http/1.1`; needs `[pool.tls]`.
    Auto,
}

impl UpstreamProtocol {
    /// The ALPN protocols offered in the TLS handshake.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => vec![b"h2".to_vec()],
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// `[pool.tls]`: TLS to the pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// `ca`: the CA bundle server certificates must chain to; `None`: the system's roots.
    pub ca: Option<CaBundle>,
    /// `server_name`: SNI and the name verified; `None`: the backend's host (its IP address).
    pub server_name: Option<String>,
    /// `verify = false`: the server certificate is not verified at all (logged loudly).
    pub verify: bool,
    /// `cert` + `key`: the client certificate presented for mTLS.
    pub identity: Option<ClientIdentity>,
}

/// A CA bundle read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

/// A client certificate chain and its key, read from files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
    /// Shared: a private key is not `Clone` (on purpose); the config is.
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl BackendTls {
    /// Verifying against the system's roots, the backend's address as the name, no client
    /// certificate: what an empty `[pool.tls]` means.
    pub fn system() -> Self {
        BackendTls {
            ca: None,
            server_name: None,
            verify: true,
            identity: None,
        }
    }

    /// The files this config was read from (watched for changes with the config).
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.ca.iter().map(|c| &c.path).chain(
            self.identity
                .iter()
                .flat_map(|i| [&i.cert_path, &i.key_path]),
        )
    }
}
