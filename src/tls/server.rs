//! A listener's TLS: its rustls `ServerConfig`, the cert store SNI picks from, and the
//! handshake the accept loop runs in each connection's task.
//!
//! The store is an `ArcSwap` of the certificate map, read once per handshake: SNI picks the
//! certificate with that exact name, else one whose wildcard covers it, else the listener's
//! first certificate (also for a client that sends no SNI). Built with the snapshot at start
//! and at every reload (so a reload serves new handshakes with the files' new contents while
//! open connections keep theirs); [`CertStore::add`] puts a certificate in at run time (for
//! issued certificates, ACME) without a rebuild.
//!
//! Session resumption: a rotating ticketer and a server session cache, both carried from the
//! listener's previous snapshot, so a reload does not cost every client a full handshake.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::certs::{self, CertInfo, LoadedCert};
use crate::config::{
    ClientAuth, Config, ConfigError, ConfigErrors, ListenerTls, Protocol, TlsVersion,
};

/// Sessions the server cache keeps per listener (TLS 1.2 session ids; about 100 bytes each).
const SESSION_CACHE: usize = 20_000;

/// The certificates SNI picks from.
#[derive(Debug, Default)]
struct Certs {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`: `*.example.com` is under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    infos: Vec<CertInfo>,
}

impl Certs {
    /// Adds `cert` under its names; a name already taken keeps its first certificate.
    fn add(&mut self, cert: &LoadedCert) {
        for name in &cert.info.names {
            let (map, key) = match name.strip_prefix("*.") {
                Some(base) => (&mut self.wildcard, base),
                None => (&mut self.exact, name.as_str()),
            };
            map.entry(key.to_string())
                .or_insert_with(|| Arc::clone(&cert.key));
        }
        if self.default.is_none() {
            self.default = Some(Arc::clone(&cert.key));
        }
        self.infos.push(cert.info.clone());
    }

    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref()).cloned()
    }
}

/// A listener's certificates, swapped whole.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: ArcSwap<Certs>,
}

impl CertStore {
    /// Adds a certificate at run time: handshakes from now on may pick it by its names
    /// (certificates of the config keep theirs).
    pub fn add(&self, cert: &LoadedCert) {
        self.certs.rcu(|old| {
            let mut next = Certs {
                exact: old.exact.clone(),
                wildcard: old.wildcard.clone(),
                default: old.default.clone(),
                infos: old.infos.clone(),
            };
            next.add(cert);
            next
        });
    }

    /// What the status page shows: every certificate, the default first.
    pub fn infos(&self) -> Vec<CertInfo> {
        self.certs.load().infos.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.load().pick(hello.server_name())
    }
}

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
        let store = Arc::new(CertStore {
            certs: ArcSwap::from_pointee(store),
        });
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

/// A verified client certificate, as the backend is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// RFC 4514-style subject, e.g. `CN=alice, O=Example`.
    pub subject: String,
    /// Its subjectAltNames: `DNS:a.example, email:alice@example.com, URI:spiffe://...`.
    pub san: String,
}

impl PeerCert {
    /// The leaf of a client's verified chain (rustls verified it during the handshake).
    pub fn of(chain: Option<&[CertificateDer<'_>]>) -> Option<PeerCert> {
        let leaf = chain?.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let mut san = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => san.push(format!("DNS:{d}")),
                    GeneralName::RFC822Name(m) => san.push(format!("email:{m}")),
                    GeneralName::URI(u) => san.push(format!("URI:{u}")),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a)),
                            16 => <[u8; 16]>::try_from(*b)
                                .ok()
                                .map(|a| std::net::IpAddr::from(a)),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            san.push(format!("IP:{ip}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(PeerCert {
            subject: header_safe(&cert.subject().to_string()),
            san: header_safe(&san.join(", ")),
        })
    }
}

/// Visible ASCII and spaces as they are; anything else (a header cannot carry it) as `\xNN`.
fn header_safe(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}
