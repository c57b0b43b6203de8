//! HTTPS at the edge: `[listener.tls]` with real clients (a rustls client, curl, openssl
//! s_client) and certificates made by rcgen at test time: SNI picks each certificate (exact,
//! wildcard, no SNI = the first), ALPN h2 and http/1.1 both reach the backend, old protocol
//! versions are refused, mTLS (required and optional) tells the backend who the client is,
//! `redirect_https` and `hsts`, and TLS terminated on a tcp listener.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fulcrum::config::{ClientAuth, ListenerConfig, ListenerTls, NamedFile, Origin, TlsVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::backend::{BackendBuilder, TestBackend};
use crate::support::client::{get_once, raw_exchange, status_line};
use crate::support::proxy::{config, listener, pool, Proxy};
use crate::support::tls::{self, alpn, connect, served_cert, Ca, Hello, Leaf};
use crate::support::{require, tcp};

/// A listener "web" with TLS from `certs` (first = default).
pub fn tls_listener(dir: &Path, certs: &[(&str, &Leaf)]) -> ListenerConfig {
    let mut l = listener();
    let mut tls = ListenerTls::with_cert("", "");
    tls.certs.clear();
    for (name, leaf) in certs {
        let (cert, key) = leaf.write(dir, name);
        let mut one = ListenerTls::with_cert(cert, key).certs.remove(0);
        one.cert.origin = Origin::in_code(format!("tls: certs {name}: cert"));
        tls.certs.push(one);
    }
    l.tls = Some(tls);
    l
}

async fn echo_backend() -> TestBackend {
    BackendBuilder::new("b").echo_headers().start().await
}

fn start(l: ListenerConfig, backend: &TestBackend) -> Proxy {
    Proxy::start(config(l, vec![pool("p", &[backend.addr])]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_exact_the_wildcard_and_without_sni_the_first_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["a.test"], 1);
    let b = ca.leaf(&["b.test", "*.b.test"], 2);
    let backend = echo_backend().await;
    let proxy = start(tls_listener(dir.path(), &[("a", &a), ("b", &b)]), &backend);
    for (sni, want, which) in [
        (Some("a.test"), &a, "exact a.test"),
        (Some("b.test"), &b, "exact b.test"),
        (Some("x.b.test"), &b, "wildcard *.b.test"),
        (None, &a, "no SNI: the first"),
    ] {
        let hello = Hello {
            sni,
            ..Hello::default()
        };
        let conn = connect(proxy.addr, &ca, &hello).await.unwrap();
        assert_eq!(served_cert(&conn), want.der, "{which}");
        let reply = tls::request(conn, tls::get(sni.unwrap_or("127.0.0.1"), "/")).await;
        assert_eq!(reply.status, 200, "{which}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_and_http11_are_both_served_through_to_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["a.test"], 1);
    let backend = echo_backend().await;
    let proxy = start(tls_listener(dir.path(), &[("a", &a)]), &backend);
    for (offer, want, version) in [
        (&[&b"h2"[..], b"http/1.1"][..], "h2", http::Version::HTTP_2),
        (&[&b"http/1.1"[..]][..], "http/1.1", http::Version::HTTP_11),
        (&[][..], "", http::Version::HTTP_11),
    ] {
        let hello = Hello {
            sni: Some("a.test"),
            alpn: offer,
            ..Hello::default()
        };
        let conn = connect(proxy.addr, &ca, &hello).await.unwrap();
        assert_eq!(alpn(&conn), want);
        let reply = tls::request(conn, tls::get("a.test", "/x")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.version, version);
        assert!(
            reply.body.contains("x-forwarded-proto: https"),
            "{}",
            reply.body
        );
    }
    assert_eq!(backend.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_https_over_h2_and_http11() {
    let Some(curl) = require("curl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let a = ca.leaf(&["a.test"], 1);
    let backend = echo_backend().await;
    let proxy = start(tls_listener(dir.path(), &[("a", &a)]), &backend);
    let port = proxy.addr.port();
    for (flag, want) in [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")] {
        let out = tokio::task::spawn_blocking({
            let (curl, ca_file) = (curl.clone(), ca_file.clone());
            move || {
                Command::new(curl)
                    .args(["-sS", "-i", "--max-time", "10", flag, "--cacert"])
                    .arg(ca_file)
                    .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
                    .arg(format!("https://a.test:{port}/hello"))
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(want),
            "{flag}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `openssl s_client` with `args`: whether the handshake completed (it printed a session
/// with a cipher), and its output.
fn s_client(openssl: &Path, addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new(openssl)
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "a.test",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let done = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
    (done, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused_and_min_version_1_3_refuses_1_2() {
    let Some(openssl) = require("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["a.test"], 1);
    let backend = echo_backend().await;
    let proxy = start(tls_listener(dir.path(), &[("a", &a)]), &backend);
    let addr = proxy.addr;
    let o = openssl.clone();
    let (v12, v11) = tokio::task::spawn_blocking(move || {
        // Security level 0: OpenSSL itself would not offer TLS 1.1 otherwise.
        let v11 = s_client(&o, addr, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        (s_client(&o, addr, &["-tls1_2"]), v11)
    })
    .await
    .unwrap();
    assert!(v12.0, "TLS 1.2 is served: {}", v12.1);
    assert!(!v11.0, "TLS 1.1 must be refused: {}", v11.1);
    assert!(
        v11.1.contains("alert") || v11.1.contains("error"),
        "{}",
        v11.1
    );

    // min_version = "1.3": a TLS 1.2-only client is refused (rustls and openssl).
    let mut l = tls_listener(dir.path(), &[("a", &a)]);
    l.tls.as_mut().unwrap().min_version = TlsVersion::Tls13;
    let strict = start(l, &backend);
    let only12 = Hello {
        sni: Some("a.test"),
        tls12_only: true,
        ..Hello::default()
    };
    assert!(connect(strict.addr, &ca, &only12).await.is_err());
    let modern = Hello {
        sni: Some("a.test"),
        ..Hello::default()
    };
    let conn = connect(strict.addr, &ca, &modern).await.unwrap();
    assert_eq!(
        conn.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let addr = strict.addr;
    let (done, text) = tokio::task::spawn_blocking(move || s_client(&openssl, addr, &["-tls1_2"]))
        .await
        .unwrap();
    assert!(
        !done,
        "TLS 1.2 must be refused under min_version 1.3: {text}"
    );
}

/// A listener with client certificates checked against `ca`.
fn mtls_listener(dir: &Path, ca: &Ca, leaf: &Leaf, auth: ClientAuth) -> ListenerConfig {
    let mut l = tls_listener(dir, &[("a", leaf)]);
    let t = l.tls.as_mut().unwrap();
    t.client_auth = auth;
    t.client_ca = Some(NamedFile {
        path: ca.write(dir, "clients.pem"),
        origin: Origin::in_code("tls: client_ca"),
    });
    l
}

fn with_forged_headers(
    mut req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let h = req.headers_mut();
    h.insert("x-client-verify", "SUCCESS".parse().unwrap());
    h.insert("x-client-cert-subject", "CN=admin".parse().unwrap());
    h.insert("x-client-cert-san", "DNS:forged".parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_refuses_clients_without_a_certificate_and_names_those_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let clients = Ca::new("Client CA");
    let a = ca.leaf(&["a.test"], 1);
    let alice = clients.client("alice");
    let stranger = Ca::new("Other CA").client("mallory");
    let backend = echo_backend().await;
    let proxy = start(
        mtls_listener(dir.path(), &clients, &a, ClientAuth::Required),
        &backend,
    );

    // No certificate: refused (TLS 1.3 reports it at the first read).
    let bare = Hello {
        sni: Some("a.test"),
        ..Hello::default()
    };
    if let Ok(conn) = connect(proxy.addr, &ca, &bare).await {
        assert!(tls::try_request(conn, tls::get("a.test", "/"))
            .await
            .is_err());
    }
    // A certificate of another CA: refused as well.
    let wrong = Hello {
        sni: Some("a.test"),
        client_cert: Some(&stranger),
        ..Hello::default()
    };
    if let Ok(conn) = connect(proxy.addr, &ca, &wrong).await {
        assert!(tls::try_request(conn, tls::get("a.test", "/"))
            .await
            .is_err());
    }
    assert_eq!(backend.count(), 0, "nothing reached the backend");

    // Alice's: served, and the backend learns who she is; forged headers are replaced.
    for alpn in [&[&b"h2"[..]][..], &[&b"http/1.1"[..]][..]] {
        let good = Hello {
            sni: Some("a.test"),
            client_cert: Some(&alice),
            alpn,
            ..Hello::default()
        };
        let conn = connect(proxy.addr, &ca, &good).await.unwrap();
        let reply = tls::request(conn, with_forged_headers(tls::get("a.test", "/"))).await;
        assert_eq!(reply.status, 200);
        let seen = backend.requests().pop().unwrap().headers;
        assert_eq!(seen["x-client-verify"], "SUCCESS");
        let subject = seen["x-client-cert-subject"].to_str().unwrap();
        assert!(
            subject.contains("CN=alice") && subject.contains("O=Fulcrum Tests"),
            "{subject}"
        );
        assert_eq!(seen["x-client-cert-san"], "email:alice@example.test");
        assert_eq!(seen.get_all("x-client-cert-subject").iter().count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_optional_serves_both_and_client_headers_are_stripped_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let clients = Ca::new("Client CA");
    let a = ca.leaf(&["a.test"], 1);
    let bob = clients.client("bob");
    let backend = echo_backend().await;
    let proxy = start(
        mtls_listener(dir.path(), &clients, &a, ClientAuth::Optional),
        &backend,
    );

    let bare = Hello {
        sni: Some("a.test"),
        ..Hello::default()
    };
    let conn = connect(proxy.addr, &ca, &bare).await.unwrap();
    let reply = tls::request(conn, with_forged_headers(tls::get("a.test", "/"))).await;
    assert_eq!(reply.status, 200);
    let seen = backend.requests().pop().unwrap().headers;
    assert_eq!(seen["x-client-verify"], "NONE");
    assert!(seen.get("x-client-cert-subject").is_none());
    assert!(seen.get("x-client-cert-san").is_none());

    let with = Hello {
        sni: Some("a.test"),
        client_cert: Some(&bob),
        ..Hello::default()
    };
    let conn = connect(proxy.addr, &ca, &with).await.unwrap();
    assert_eq!(
        tls::request(conn, tls::get("a.test", "/")).await.status,
        200
    );
    let seen = backend.requests().pop().unwrap().headers;
    assert_eq!(seen["x-client-verify"], "SUCCESS");
    assert!(seen["x-client-cert-subject"]
        .to_str()
        .unwrap()
        .contains("CN=bob"));

    // A plain listener never passes a client's own X-Client-* on.
    let plain = start(listener(), &backend);
    let raw = raw_exchange(
        plain.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Client-Verify: SUCCESS\r\nX-Client-Cert-Subject: CN=root\r\nX-Client-Cert-San: DNS:x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_line(&raw), "HTTP/1.1 200 OK");
    let seen = backend.requests().pop().unwrap().headers;
    for h in [
        "x-client-verify",
        "x-client-cert-subject",
        "x-client-cert-san",
    ] {
        assert!(seen.get(h).is_none(), "{h} passed on");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_answers_308_to_the_same_host_and_hsts_is_set_on_https() {
    let backend = echo_backend().await;
    let mut l = listener();
    l.redirect_https = true;
    let plain = start(l, &backend);
    let raw = raw_exchange(
        plain.addr,
        b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: www.example.test:8080\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        status_line(&raw),
        "HTTP/1.1 308 Permanent Redirect",
        "{raw}"
    );
    assert!(
        raw.to_ascii_lowercase()
            .contains("location: https://www.example.test/a/b?x=1&y=2\r\n"),
        "{raw}"
    );
    // Absolute-form: the target's authority is the host; userinfo tricks are refused.
    let raw = raw_exchange(
        plain.addr,
        b"GET http://other.test//evil.test/p HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        raw.to_ascii_lowercase()
            .contains("location: https://other.test//evil.test/p\r\n"),
        "{raw}"
    );
    let raw = raw_exchange(
        plain.addr,
        b"GET / HTTP/1.1\r\nHost: a.test@evil.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_line(&raw), "HTTP/1.1 400 Bad Request", "{raw}");
    assert_eq!(backend.count(), 0, "a redirect sends nothing upstream");

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["a.test"], 1);
    let mut l = tls_listener(dir.path(), &[("a", &a)]);
    l.tls.as_mut().unwrap().hsts = Some("max-age=31536000; includeSubDomains".into());
    let secure = start(l, &backend);
    for alpn in [&[&b"h2"[..]][..], &[&b"http/1.1"[..]][..]] {
        let hello = Hello {
            sni: Some("a.test"),
            alpn,
            ..Hello::default()
        };
        let conn = connect(secure.addr, &ca, &hello).await.unwrap();
        let reply = tls::request(conn, tls::get("a.test", "/")).await;
        assert_eq!(
            reply.headers["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
    }
    // Not on plain HTTP.
    assert!(get_once(plain.addr, "/")
        .await
        .headers
        .get("strict-transport-security")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_listener_terminates_tls_and_forwards_the_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["db.test"], 1);
    let echo = tcp::echo().await;
    let mut l = tls_listener(dir.path(), &[("a", &a)]);
    l.protocol = fulcrum::config::Protocol::Tcp;
    let proxy = Proxy::start(config(l, vec![pool("p", &[echo.addr])]));
    let hello = Hello {
        sni: Some("db.test"),
        ..Hello::default()
    };
    let mut conn = connect(proxy.addr, &ca, &hello).await.unwrap();
    assert_eq!(alpn(&conn), "", "no ALPN on a tcp listener");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    conn.write_all(&payload).await.unwrap();
    conn.flush().await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, payload);
    // The client's close_notify reaches the backend as EOF; its EOF comes back.
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sticky_cookie_is_secure_on_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["a.test"], 1);
    let backend = echo_backend().await;
    let sticky = |l: ListenerConfig| {
        let mut p = pool("p", &[backend.addr]);
        p.balance = fulcrum::config::BalanceKind::StickyCookie;
        Proxy::start(config(l, vec![p]))
    };
    let secure = sticky(tls_listener(dir.path(), &[("a", &a)]));
    let hello = Hello {
        sni: Some("a.test"),
        ..Hello::default()
    };
    let conn = connect(secure.addr, &ca, &hello).await.unwrap();
    let reply = tls::request(conn, tls::get("a.test", "/")).await;
    let cookie = reply.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let plain = sticky(listener());
    let reply = get_once(plain.addr, "/").await;
    let cookie = reply.headers["set-cookie"].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_resumes_its_session_in_tls_1_3_and_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.leaf(&["a.test"], 1);
    let backend = echo_backend().await;
    let proxy = start(tls_listener(dir.path(), &[("a", &a)]), &backend);
    for tls12_only in [false, true] {
        let hello = Hello {
            sni: Some("a.test"),
            tls12_only,
            ..Hello::default()
        };
        // One client config: its session store keeps what the server handed out.
        let connector = tokio_rustls::TlsConnector::from(tls::client_config(&ca, &hello));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
            let conn = connector.connect(name, tcp).await.unwrap();
            kinds.push(conn.get_ref().1.handshake_kind());
            // The request's reply carries the TLS 1.3 tickets with it.
            assert_eq!(
                tls::request(conn, tls::get("a.test", "/")).await.status,
                200
            );
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ],
            "tls12_only = {tls12_only}"
        );
    }
}
