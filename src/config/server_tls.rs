//! The validated model of TLS termination: `[listener.tls]` and `redirect_https`.
//!
//! Why a file of its own: the certificate files are read by `crate::tls` (at `check`, at start
//! and at every reload), not here, yet a bad certificate must be reported like every other
//! config error, `file:line:col: key: message`. So each named file keeps its [`Origin`], the
//! place in the config file that named it, and `tls` turns what it finds into a
//! [`ConfigError`] there.

use std::path::PathBuf;

use super::{AcmeConfig, ConfigError};

/// Where in the config file a value was written, for errors found after validation (a
/// certificate that is expired, or whose key does not match).
///
/// Not part of the config's meaning: two origins always compare equal, so a config whose only
/// change is where a table sits (lines moved) is the same config.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub file: String,
    /// 1-based; 0 for configs built in code.
    pub line: usize,
    pub col: usize,
    /// The key as messages name it, e.g. `listener "web": tls: certs #1: cert`.
    pub key: String,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl Origin {
    /// An origin for configs built in code (tests, the demo).
    pub fn in_code(key: impl Into<String>) -> Origin {
        Origin {
            file: "(config built in code)".into(),
            line: 0,
            col: 0,
            key: key.into(),
        }
    }

    /// A config error at this origin.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// A file named by the config, with where it was named.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFile {
    /// Resolved against the config file's folder.
    pub path: PathBuf,
    pub origin: Origin,
}

/// One `certs = [{ cert, key }]` entry: a PEM certificate chain (leaf first) and its key.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFiles {
    pub cert: NamedFile,
    pub key: NamedFile,
}

/// `min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// `client_auth`: whether clients present certificates (mTLS), checked against `client_ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// None asked for.
    #[default]
    Off,
    /// Asked for; a client without one is served (`X-Client-Verify: NONE`), one with a
    /// certificate that does not chain to `client_ca` is refused.
    Optional,
    /// A client without a valid certificate fails the handshake.
    Required,
}

/// `[listener.tls]`: the listener terminates TLS (http: HTTPS with ALPN h2 and http/1.1; tcp:
/// the backend gets the plaintext).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// SNI picks among them by their own names (SAN, else CN); the first is the default (a
    /// client without SNI, or a name none has). Never empty unless `acme` is set.
    pub certs: Vec<CertFiles>,
    pub min_version: TlsVersion,
    /// CA bundle client certificates must chain to; set whenever `client_auth` is not off.
    pub client_ca: Option<NamedFile>,
    pub client_auth: ClientAuth,
    /// `Strict-Transport-Security` value set on every response of an http listener.
    pub hsts: Option<String>,
    /// Certificates ordered from an ACME CA for these domains join `certs`.
    pub acme: Option<AcmeConfig>,
    /// Where the ACME task keeps this listener's certificate (under `state_dir`): loaded with
    /// `certs` when it exists. Set with `acme`.
    pub issued: Option<CertFiles>,
}

impl ListenerTls {
    /// Every file it names (the watcher reloads when one changes).
    pub fn files(&self) -> impl Iterator<Item = &NamedFile> {
        self.certs
            .iter()
            .flat_map(|c| [&c.cert, &c.key])
            .chain(self.client_ca.as_ref())
    }

    /// One certificate and key, TLS 1.2+, no client certificates (configs built in code).
    pub fn with_cert(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ListenerTls {
        ListenerTls {
            certs: vec![CertFiles {
                cert: NamedFile {
                    path: cert.into(),
                    origin: Origin::in_code("tls: certs #1: cert"),
                },
                key: NamedFile {
                    path: key.into(),
                    origin: Origin::in_code("tls: certs #1: key"),
                },
            }],
            min_version: TlsVersion::Tls12,
            client_ca: None,
            client_auth: ClientAuth::Off,
            hsts: None,
            acme: None,
            issued: None,
        }
    }
}
