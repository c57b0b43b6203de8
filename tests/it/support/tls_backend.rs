//! TLS backends (tokio-rustls + hyper) that serve HTTP/1.1 and h2 with certificates of the
//! test CA (`support::tls::Ca`), optionally asking clients for certificates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::tls::{Ca, Leaf};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS backend: answers every request 200 with `x-version` (the HTTP version it saw) and
/// `x-client-cert` (`yes` when the client presented a certificate).
pub struct TlsBackend {
    pub addr: SocketAddr,
    /// TLS connections accepted (handshakes done).
    pub connections: Arc<AtomicUsize>,
    /// Requests whose handler started.
    pub started: Arc<AtomicUsize>,
    /// What each request's body came to, in order: its length, or "broken".
    pub bodies: Arc<Mutex<Vec<String>>>,
}

impl TlsBackend {
    /// `alpn`: the protocols it offers (`["h2", "http/1.1"]`...); `client_ca`: require client
    /// certificates signed by it.
    pub async fn start(server: &Leaf, alpn: &[&str], client_ca: Option<&Ca>) -> TlsBackend {
        let acceptor = acceptor(server, alpn, client_ca);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let started = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (begun, seen) = (Arc::clone(&started), Arc::clone(&bodies));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                let (begun, seen) = (Arc::clone(&begun), Arc::clone(&seen));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (begun, seen) = (Arc::clone(&begun), Arc::clone(&seen));
                        async move {
                            begun.fetch_add(1, Ordering::SeqCst);
                            let version = format!("{:?}", req.version());
                            // What arrived of the body: its length, or "broken".
                            let body = match req.into_body().collect().await {
                                Ok(body) => body.to_bytes().len().to_string(),
                                Err(_) => "broken".to_string(),
                            };
                            seen.lock().unwrap().push(body.clone());
                            let resp = Response::builder()
                                .header("x-version", version)
                                .header("x-body-len", body)
                                .header("x-client-cert", if client_cert { "yes" } else { "no" })
                                .body(Full::new(Bytes::from_static(b"tls ok")))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsBackend {
            addr,
            connections,
            started,
            bodies,
        }
    }
}

/// A TLS acceptor for `server`'s certificate, offering `alpn`, requiring client certificates
/// signed by `client_ca` when given.
fn acceptor(server: &Leaf, alpn: &[&str], client_ca: Option<&Ca>) -> TlsAcceptor {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// A WebSocket echo server over TLS (`wss://`): echoes text and binary messages.
pub async fn start_ws_echo(server: &Leaf) -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let acceptor = acceptor(server, &["http/1.1"], None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
