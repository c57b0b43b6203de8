//! A listener's TLS: its rustls `ServerConfig` (built with the snapshot at start and at every
//! reload, so new handshakes get the files' new contents while open connections keep theirs),
//! and the handshake the accept loop runs in each connection's task.
//!
//! TLS 1.2 and 1.3 only (`min_version` may raise it to 1.3), rustls's default cipher suites
//! (AEAD with forward secrecy only), no renegotiation (rustls has none), ALPN h2 and
//! http/1.1 on http listeners, client certificates checked by webpki against `client_ca`.
//!
//! Session resumption: a rotating ticketer and a server session cache, both carried from the
//! listener's previous snapshot, so a reload does not cost every client a full handshake.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{
    ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::certs;
use super::store::{CertStore, Certs};
use crate::config::{
    ClientAuth, Config, ConfigError, ConfigErrors, ListenerTls, Protocol, TlsVersion,
};

/// Sessions the server cache keeps per listener (TLS 1.2 session ids; about 100 bytes each).
const SESSION_CACHE: usize = 20_000;

/// Session state kept across reloads.
#[derive(Debug, Clone)]
struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

/// One listener's TLS, built with its snapshot.
#[derive(Debug)]
pub struct ServerTls {
    /// What each handshake is run with.
    pub config: Arc<ServerConfig>,
    pub store: Arc<CertStore>,
    /// Whether client certificates are asked for (the request headers say what was found).
    pub client_auth: ClientAuth,
    /// `None` only for [`ServerTls::refusing`].
    resumption: Option<Resumption>,
}

impl ServerTls {
    /// A TLS listener whose files could not be loaded at all: every handshake fails (no
    /// certificate), and nothing is served in plaintext.
    pub fn refusing(protocol: Protocol) -> ServerTls {
        let store = Arc::new(CertStore::default());
        let resolver = Arc::clone(&store) as Arc<dyn ResolvesServerCert>;
        let mut config = ServerConfig::builder_with_provider(Arc::clone(super::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map(|b| {
                b.with_no_client_auth()
                    .with_cert_resolver(Arc::clone(&resolver))
            })
            .unwrap_or_else(|_| {
                ServerConfig::builder()
                    .with_no_client_auth()
                    .with_cert_resolver(resolver)
            });
        if protocol == Protocol::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        ServerTls {
            config: Arc::new(config),
            store,
            client_auth: ClientAuth::Off,
            resumption: None,
        }
    }

    /// Reads `tls`'s files and builds the config; every problem is reported (each at the key
    /// that named the file). `protocol`: http listeners offer ALPN h2 and http/1.1.
    /// `previous`: the same listener's TLS before a reload, whose session state is kept.
    pub fn build(
        tls: &ListenerTls,
        protocol: Protocol,
        previous: Option<&ServerTls>,
    ) -> Result<ServerTls, ConfigErrors> {
        let provider = super::provider();
        let now = certs::now();
        let mut errors = Vec::new();
        let mut store = Certs::default();
        for files in &tls.certs {
            match certs::load(files, provider, now) {
                Ok(cert) => store.add(&cert),
                Err(e) => errors.push(e),
            }
        }
        // ACME's certificate, once issued: Fulcrum's own file, so a bad one is no config
        // error (the task orders a new one); until then the listener has `certs` only.
        if let Some(issued) = tls.issued.as_ref().filter(|f| f.cert.path.exists()) {
            match certs::load(issued, provider, now) {
                Ok(cert) => store.add(&cert),
                Err(e) => tracing::warn!("ACME certificate not used: {e}"),
            }
        }
        let verifier = match (&tls.client_ca, tls.client_auth) {
            (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
                match certs::load_roots(ca) {
                    Ok(roots) => {
                        let builder = WebPkiClientVerifier::builder_with_provider(
                            roots,
                            Arc::clone(provider),
                        );
                        let builder = if tls.client_auth == ClientAuth::Optional {
                            builder.allow_unauthenticated()
                        } else {
                            builder
                        };
                        match builder.build() {
                            Ok(v) => Some(v),
                            Err(e) => {
                                errors.push(ca.origin.error(format!(
                                    "{}: unusable as client CA: {e}",
                                    ca.path.display()
                                )));
                                None
                            }
                        }
                    }
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            }
            _ => None,
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let resumption = match previous.and_then(|p| p.resumption.clone()) {
            Some(r) => r,
            None => Resumption {
                ticketer: super::ticketer().map_err(|e| internal(tls, e))?,
                cache: ServerSessionMemoryCache::new(SESSION_CACHE),
            },
        };
        let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
            .with_protocol_versions(versions)
            .map_err(|e| internal(tls, e))?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let store = Arc::new(CertStore::new(store));
        let mut config =
            builder.with_cert_resolver(Arc::clone(&store) as Arc<dyn ResolvesServerCert>);
        if protocol == Protocol::Http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        config.session_storage = Arc::clone(&resumption.cache);
        config.ticketer = Arc::clone(&resumption.ticketer);
        Ok(ServerTls {
            config: Arc::new(config),
            store,
            client_auth: tls.client_auth,
            resumption: Some(resumption),
        })
    }
}

/// rustls refused a config Fulcrum built (never for a validated file).
fn internal(tls: &ListenerTls, e: rustls::Error) -> ConfigErrors {
    let origin = tls
        .certs
        .first()
        .map(|c| c.cert.origin.clone())
        .unwrap_or_default();
    ConfigErrors(vec![ConfigError {
        key: origin
            .key
            .rsplit_once(": certs")
            .map_or(origin.key.clone(), |(k, _)| k.to_string()),
        ..origin.error(format!("cannot build the TLS config: {e}"))
    }])
}

/// Reads and checks every certificate, key and client CA of `config` (what `fulcrum check`,
/// the start and every reload run before anything changes).
pub fn check(config: &Config) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    for l in &config.listeners {
        if let Some(tls) = &l.tls {
            if let Err(ConfigErrors(e)) = ServerTls::build(tls, l.protocol, None) {
                errors.extend(e);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(ConfigErrors(errors))
    }
}

/// How a handshake ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Handshake {
    #[error("TLS handshake failed")]
    Failed(#[source] io::Error),
    #[error("TLS handshake not done within client_header_timeout")]
    Timeout,
}

/// Runs the server side of a handshake on `stream` within `within`.
pub async fn accept(
    config: Arc<ServerConfig>,
    stream: TcpStream,
    within: Duration,
) -> Result<TlsStream<TcpStream>, Handshake> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(Handshake::Failed(e)),
        Err(_) => Err(Handshake::Timeout),
    }
}
