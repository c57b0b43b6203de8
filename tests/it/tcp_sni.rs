//! TLS passthrough by SNI (`[[listener.route]] sni` on a tcp listener): the ClientHello's
//! server name picks the pool, and the bytes reach the backend untouched, so the client
//! completes a TLS handshake with the backend itself and verifies the backend's certificate.
//!
//! Three TLS backends, each with its own self-signed certificate (rcgen, made here): A for
//! `a.test`, B for `b.test` and `*.wild.test` names, C (the listener's default pool) for
//! `unknown.test` and 127.0.0.1. Each client trusts only the certificate of the backend it
//! expects, so a completed handshake proves where it went. C also answers plain text, to show
//! where a connection that is not TLS goes.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum::config::{ListenerConfig, PoolId, RouteConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::proxy::{any_port, config, pool, Proxy};

/// The listener's `client_header_timeout` here: long enough for a loaded machine to send a
/// ClientHello, short enough to wait for in a test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A backend that answers one line with `TAG:line`: over TLS (its own certificate for
/// `names`) when the client starts with a TLS record, in plain text otherwise. Returns its
/// address and certificate.
async fn backend(tag: &'static str, names: &[&str]) -> (SocketAddr, CertificateDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if stream.peek(&mut first).await.unwrap_or(0) == 0 {
                    return;
                }
                if first[0] == 0x16 {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tag, tls).await;
                    }
                } else {
                    answer(tag, stream).await;
                }
            });
        }
    });
    (addr, cert)
}

/// Reads up to the first newline and answers `TAG:line`.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(tag: &str, mut s: S) {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte).await {
            Ok(1) => line.push(byte[0]),
            _ => return,
        }
    }
    let reply = format!("{tag}:{}", String::from_utf8_lossy(&line));
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Connects to `proxy` as a TLS client naming `name` (a DNS name: sent as SNI; an IP
/// address: no SNI) and trusting only `trust`; sends one line and returns the reply, or the
/// handshake's error. With `split`, the ClientHello goes out in two TCP segments that far
/// apart. Blocking rustls over a std socket (run off the runtime): it lets the test write the
/// ClientHello itself.
async fn ask(
    proxy: SocketAddr,
    name: &'static str,
    trust: &CertificateDer<'static>,
    split: Option<Duration>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio::task::spawn_blocking(move || {
        let server = ServerName::try_from(name).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(client), server).unwrap();
        let mut sock = std::net::TcpStream::connect(proxy).unwrap();
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        if let Some(pause) = split {
            let mut hello = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut hello).unwrap();
            }
            let (head, rest) = hello.split_at(hello.len() / 3);
            sock.write_all(head).unwrap();
            std::thread::sleep(pause);
            sock.write_all(rest).unwrap();
        }
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"hi\n").map_err(|e| e.to_string())?;
        let mut reply = String::new();
        tls.read_to_string(&mut reply).map_err(|e| e.to_string())?;
        Ok(reply)
    })
    .await
    .unwrap()
}

struct Setup {
    proxy: Proxy,
    a: CertificateDer<'static>,
    b: CertificateDer<'static>,
    c: CertificateDer<'static>,
}

async fn setup() -> Setup {
    let (a_addr, a) = backend("A", &["a.test"]).await;
    let (b_addr, b) = backend("B", &["b.test", "x.wild.test"]).await;
    let (c_addr, c) = backend("C", &["unknown.test", "127.0.0.1"]).await;
    let sni = |name: &str, pool: usize| RouteConfig {
        sni: Some(name.into()),
        host: None,
        path_prefix: None,
        header: None,
        pool: PoolId::new(pool),
    };
    let mut listener = ListenerConfig::tcp("sni", any_port(), PoolId::new(2));
    listener.routes = vec![sni("a.test", 0), sni("b.test", 1), sni("*.wild.test", 1)];
    let mut c_config = config(
        listener,
        vec![
            pool("a", &[a_addr]),
            pool("b", &[b_addr]),
            pool("c", &[c_addr]),
        ],
    );
    c_config.global.client_header_timeout = HEADER_TIMEOUT;
    Setup {
        proxy: Proxy::start(c_config),
        a,
        b,
        c,
    }
}

#[tokio::test]
async fn server_name_picks_the_backend_and_its_certificate_verifies() {
    let s = setup().await;
    let addr = s.proxy.addr;
    assert_eq!(ask(addr, "a.test", &s.a, None).await.unwrap(), "A:hi\n");
    assert_eq!(ask(addr, "b.test", &s.b, None).await.unwrap(), "B:hi\n");
    // `*.wild.test` routes to B as well.
    assert_eq!(
        ask(addr, "x.wild.test", &s.b, None).await.unwrap(),
        "B:hi\n"
    );
    // The name picks the backend: trusting A's certificate while naming b.test fails.
    assert!(ask(addr, "b.test", &s.a, None).await.is_err());
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn unknown_missing_or_no_server_name_goes_to_the_default_pool() {
    let s = setup().await;
    let addr = s.proxy.addr;
    assert_eq!(
        ask(addr, "unknown.test", &s.c, None).await.unwrap(),
        "C:hi\n"
    );
    // An IP address as the name: rustls sends no SNI at all.
    assert_eq!(ask(addr, "127.0.0.1", &s.c, None).await.unwrap(), "C:hi\n");
    // Not TLS at all: passed to the default pool as it is.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"hello, not tls\n").await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), plain.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, "C:hello, not tls\n");
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_hello_in_two_segments_still_routes() {
    let s = setup().await;
    let pause = Some(Duration::from_millis(150));
    let addr = s.proxy.addr;
    assert_eq!(ask(addr, "a.test", &s.a, pause).await.unwrap(), "A:hi\n");
    assert_eq!(ask(addr, "b.test", &s.b, pause).await.unwrap(), "B:hi\n");
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_client_header_timeout() {
    let s = setup().await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(s.proxy.addr).await.unwrap();
    // And one that sends half a record header, then nothing.
    let mut partial = TcpStream::connect(s.proxy.addr).await.unwrap();
    partial.write_all(b"\x16\x03\x01").await.unwrap();
    for stream in [&mut silent, &mut partial] {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("closed by the proxy");
        // EOF (or a reset): nothing was ever forwarded back.
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {waited:?}"
    );
    s.proxy.shutdown().await;
}
