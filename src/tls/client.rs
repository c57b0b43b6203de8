//! TLS to the backends (`[pool.tls]`): one rustls `ClientConfig` per pool, built when the
//! snapshot is (never per connection, so its session cache makes reconnects resume), the
//! handshake with ALPN, and [`UpstreamIo`], the stream the upstream HTTP pools and the health
//! checks speak over (plain TCP or TLS).
//!
//! The CA, client certificate and key were read and parsed by config validation; building the
//! config here cannot fail on them. `ca = ""` means the system's roots (rustls-native-certs,
//! loaded once per process). `verify = false` turns verification off entirely: logged as a
//! warning at every build, since it hands the connection to anyone on the path.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{BackendTls, UpstreamProtocol};

/// Sessions remembered per pool for resumption (one per backend is what matters).
const SESSION_CACHE: usize = 1024;

/// Why a TLS connection to a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The backend's certificate did not verify (unknown issuer, wrong name, expired...).
    #[error("certificate verification failed")]
    Verify(#[source] rustls::Error),
    /// The backend refused our client certificate, or the handshake failed otherwise.
    #[error("TLS handshake failed")]
    Handshake(#[source] io::Error),
    /// The pool's client config could not be built (logged when the snapshot was built).
    #[error("no usable TLS client config")]
    Config(#[source] rustls::Error),
}

/// A pool's TLS to its backends.
#[derive(Debug)]
pub struct UpstreamTls {
    /// `Err`: it could not be built (logged at build); every handshake fails with it.
    config: Result<Arc<ClientConfig>, rustls::Error>,
    /// `server_name`; `None`: each backend's own address.
    server_name: Option<ServerName<'static>>,
    /// Tells this pool's connections apart from another pool's to the same address (idle
    /// lists are keyed by it); the same for the same settings, across reloads.
    pub id: u64,
}

/// The process's one crypto provider (see `tls::provider`).
fn provider() -> Arc<CryptoProvider> {
    Arc::clone(super::provider())
}

/// The system's trust roots, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (_, bad) = roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            tracing::error!("no usable system CA certificate: TLS to backends with ca = \"\" will fail to verify");
        } else if bad > 0 {
            tracing::debug!(bad, "system CA certificates skipped");
        }
        Arc::new(roots)
    }))
}

/// Builds pool `pool`'s TLS client config for `protocol` (its ALPN list).
pub fn build(pool: &str, tls: &BackendTls, protocol: UpstreamProtocol) -> Arc<UpstreamTls> {
    if !tls.verify {
        tracing::warn!(
            pool,
            "[pool.tls] verify = false: backend certificates are NOT verified (anyone on the path can impersonate the backends)"
        );
    }
    let config = client_config(tls, protocol).map(Arc::new);
    if let Err(e) = &config {
        // Validation loaded the same files with the same provider: not expected.
        tracing::error!(pool, error = %e, "[pool.tls]: cannot build the TLS client config; connections to this pool fail");
    }
    let server_name = tls
        .server_name
        .as_deref()
        .and_then(|n| ServerName::try_from(n.to_string()).ok());
    let id = crate::config::fingerprint(
        format!(
            "{:?}|{:?}|{}|{:?}|{:?}",
            tls.ca.as_ref().map(|c| &c.path),
            tls.server_name,
            tls.verify,
            tls.identity.as_ref().map(|i| (&i.cert_path, &i.key_path)),
            protocol
        )
        .as_bytes(),
    ) | 1;
    Arc::new(UpstreamTls {
        config,
        server_name,
        id,
    })
}

fn client_config(
    tls: &BackendTls,
    protocol: UpstreamProtocol,
) -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = if tls.verify {
        let roots = match &tls.ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(ca.certs.iter().cloned());
                Arc::new(roots)
            }
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let mut config = match &tls.identity {
        Some(id) => builder.with_client_auth_cert(id.certs.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = protocol.alpn();
    config.resumption = Resumption::in_memory_sessions(SESSION_CACHE);
    Ok(config)
}

impl UpstreamTls {
    /// The name sent as SNI and verified for backend `addr`.
    fn name_for(&self, addr: SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }

    /// The TLS handshake over `tcp`, connected to `addr`.
    pub async fn connect(&self, tcp: TcpStream, addr: SocketAddr) -> Result<UpstreamIo, TlsError> {
        let config = self
            .config
            .as_ref()
            .map_err(|e| TlsError::Config(e.clone()))?;
        let connector = TlsConnector::from(Arc::clone(config));
        match connector.connect(self.name_for(addr), tcp).await {
            Ok(tls) => Ok(UpstreamIo::Tls(Box::new(tls))),
            Err(e) => Err(classify(e)),
        }
    }
}

/// A handshake error, told apart: a certificate that failed verification, or anything else.
fn classify(e: io::Error) -> TlsError {
    let verify = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .filter(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
            )
        })
        .cloned();
    match verify {
        Some(r) => TlsError::Verify(r),
        None => TlsError::Handshake(e),
    }
}

/// `verify = false`: every certificate accepted; the handshake signatures are still checked
/// (the peer holds the key of the certificate it sent, whoever it is).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to a backend: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamIo {
    /// Whether ALPN chose HTTP/2 (`false` on a plain connection).
    pub fn alpn_h2(&self) -> bool {
        match self {
            UpstreamIo::Plain(_) => false,
            UpstreamIo::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
