//! Certificates as config: read by `fulcrum check` (a missing file, a key of another
//! certificate, an expired certificate: errors at the key that named them), replaced on disk
//! under load (a rename as certbot does, a directory symlink swap as Kubernetes does) with no
//! failed request, the new serial served afterwards and open connections continuing; the
//! status JSON lists each listener's certificates; handshakes are counted; and a TLS scan
//! (testssl.sh) finds no old protocol, weak cipher, renegotiation or compression.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::admin::sample;
use crate::support::backend::BackendBuilder;
use crate::support::client::{get as get_path, http1};
use crate::support::proxy::{run_cli, write_file};
use crate::support::tls::{self, connect, served_cert, Ca, Hello, Leaf};
use crate::support::{eventually, require};

/// How long a file change may take to show in new handshakes.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// A config with one TLS listener "web" on port 0 naming `cert` and `key` (relative to the
/// config's folder), the admin API on port 0.
fn toml(cert: &str, key: &str, backend: std::net::SocketAddr) -> String {
    format!(
        "[global]\naccess_log = \"off\"\nworkers = 2\nshutdown_grace = \"2s\"\nadmin = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\
         [listener.tls]\ncerts = [{{ cert = \"{cert}\", key = \"{key}\" }}]\nhsts = \"max-age=600\"\n\n\
         [[pool]]\nname = \"p\"\nbackends = [{{ address = \"{backend}\" }}]\n"
    )
}

fn write_pair(dir: &Path, leaf: &Leaf) {
    std::fs::create_dir_all(dir).unwrap();
    // Written beside and renamed over, key first: a reader sees old or new files, whole.
    for (name, text) in [("a.key", &leaf.key_pem), ("a.pem", &leaf.cert_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

async fn served(addr: std::net::SocketAddr, ca: &Ca) -> Option<Vec<u8>> {
    let hello = Hello {
        sni: Some("a.test"),
        ..Hello::default()
    };
    connect(addr, ca, &hello)
        .await
        .ok()
        .map(|c| served_cert(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_replaced_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let backend = BackendBuilder::new("b").start().await;
    // live -> v1 (a directory symlink, swapped whole like a Kubernetes secret volume).
    let v1 = dir.path().join("v1");
    write_pair(&v1, &ca.leaf(&["a.test"], 1));
    std::os::unix::fs::symlink("v1", dir.path().join("live")).unwrap();
    let path = write_file(
        dir.path(),
        "f.toml",
        &toml("live/a.pem", "live/a.key", backend.addr),
    );
    let config = fulcrum::Config::from_file(&path).unwrap();
    let handle = fulcrum::start(config).unwrap();
    let addr = handle.listener_addr("web").unwrap();
    let admin = handle.admin_addr().unwrap();

    // An open HTTP/1.1 keep-alive connection from before the changes.
    let hello = Hello {
        sni: Some("a.test"),
        alpn: &[b"http/1.1"],
        ..Hello::default()
    };
    let open = connect(addr, &ca, &hello).await.unwrap();
    let (mut kept, conn) = hyper::client::conn::http1::handshake(TokioIo::new(open))
        .await
        .unwrap();
    tokio::spawn(conn);
    let one = |s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>| {
        let req = http::Request::get("/")
            .header("host", "a.test")
            .body(Full::default())
            .unwrap();
        s.send_request(req)
    };
    assert_eq!(one(&mut kept).await.unwrap().status(), 200);

    // Load: requests on new connections, one after another, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let config = tls::client_config(&ca, &Hello::default());
        tokio::spawn(async move {
            let connector = tokio_rustls::TlsConnector::from(config);
            while !stop.load(Ordering::Relaxed) {
                let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
                let result = async {
                    let tcp = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| e.to_string())?;
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| e.to_string())?;
                    let reply = tls::try_request(tls, tls::get("a.test", "/")).await?;
                    if reply.status == 200 {
                        Ok(())
                    } else {
                        Err(format!("status {}", reply.status))
                    }
                }
                .await;
                match result {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };

    // certbot-style: new files renamed over the old ones.
    let v2 = ca.leaf(&["a.test"], 2);
    write_pair(&v1, &v2);
    eventually(RELOAD_WAIT, "serial 2 served", || async {
        served(addr, &ca).await == Some(v2.der.clone())
    })
    .await;
    // Kubernetes-style: the directory link swapped atomically.
    let v3 = ca.leaf(&["a.test"], 3);
    write_pair(&dir.path().join("v3"), &v3);
    std::os::unix::fs::symlink("v3", dir.path().join("live.new")).unwrap();
    std::fs::rename(dir.path().join("live.new"), dir.path().join("live")).unwrap();
    eventually(RELOAD_WAIT, "serial 3 served", || async {
        served(addr, &ca).await == Some(v3.der.clone())
    })
    .await;
    eventually(RELOAD_WAIT, "requests during the changes", || async {
        ok.load(Ordering::Relaxed) >= 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");

    // The connection from before still works.
    assert_eq!(one(&mut kept).await.unwrap().status(), 200);

    // A bad replacement (expired) fails the reload and the last good certificate stays.
    write_pair(&dir.path().join("v3"), &ca.expired_leaf(&["a.test"], 4));
    let reloader = handle.reloader();
    let err = tokio::task::spawn_blocking(move || reloader.reload(fulcrum::Trigger::Api))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expired on") && err.contains("f.toml:"),
        "{err}"
    );
    assert_eq!(served(addr, &ca).await, Some(v3.der.clone()));

    // Status JSON: the certificate, its names and expiry; handshakes counted.
    let client = http1();
    let status = get_path(&client, admin, "/api/v1/status").await.body;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let cert = &status["listeners"][0]["tls"]["certs"][0];
    assert_eq!(cert["names"][0], "a.test", "{status}");
    assert_eq!(cert["serial"], "03", "{status}");
    assert!(cert["days_left"].as_i64().unwrap() > 300, "{status}");
    let metrics = get_path(&client, admin, "/metrics").await.body;
    let handshakes = |result| {
        sample(
            &metrics,
            "fulcrum_tls_handshakes_total",
            &[("listener", "web"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert!(handshakes("ok") >= 20.0, "{metrics}");
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}

/// `fulcrum check` reads every certificate: each problem at the key that named the file.
#[test]
fn check_reports_a_missing_file_a_mismatched_key_and_an_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let good = ca.leaf(&["a.test"], 1);
    let other = ca.leaf(&["b.test"], 2);
    let expired = ca.expired_leaf(&["c.test"], 3);
    good.write(dir.path(), "good");
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    expired.write(dir.path(), "expired");
    let listener = |name: &str, port: u16, cert: &str, key: &str| {
        format!(
            "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:{port}\"\npool = \"p\"\n\
             [listener.tls]\ncerts = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n"
        )
    };
    let text = format!(
        "[global]\naccess_log = \"off\"\n{}{}{}\n[[pool]]\nname = \"p\"\nbackends = [{{ address = \"127.0.0.1:9\" }}]\n",
        listener("missing", 1, "nope.pem", "nope.key"),
        listener("mismatch", 2, "good.pem", "other.key"),
        listener("old", 3, "expired.pem", "expired.key"),
    );
    let path = write_file(dir.path(), "f.toml", &text);
    let (status, _, stderr) = run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}: {stderr}"))
            .to_string()
    };
    // The line of each listener's `certs = ...`.
    let at = |file: &str| {
        let n = text.lines().position(|l| l.contains(file)).unwrap() + 1;
        format!("f.toml:{n}:")
    };
    let missing = line("listener \"missing\": tls: certs #1: cert");
    assert!(
        missing.contains(&at("nope.pem"))
            && missing.contains("nope.pem")
            && missing.contains("cannot read"),
        "{missing}"
    );
    let mismatch = line("listener \"mismatch\": tls: certs #1: key");
    assert!(
        mismatch.contains(&at("other.key"))
            && mismatch.contains("other.key")
            && mismatch.contains("does not match"),
        "{mismatch}"
    );
    let old = line("listener \"old\": tls: certs #1: cert");
    assert!(
        old.contains(&at("expired.pem"))
            && old.contains("expired.pem")
            && old.contains("expired on 2020-01-01"),
        "{old}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");

    // Fixed, it passes.
    let fixed = text
        .replace("nope.pem", "good.pem")
        .replace("nope.key", "good.key")
        .replace("other.key", "good.key")
        .replace("expired.pem", "good.pem")
        .replace("expired.key", "good.key");
    let path = write_file(dir.path(), "f.toml", &fixed);
    let (status, stdout, stderr) = run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
}

/// testssl.sh against a TLS listener: protocols, cipher list, renegotiation, compression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_no_old_protocol_weak_cipher_renegotiation_or_compression() {
    let Some(testssl) = require("testssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let backend = BackendBuilder::new("b").start().await;
    write_pair(dir.path(), &ca.leaf(&["a.test"], 1));
    let path = write_file(dir.path(), "f.toml", &toml("a.pem", "a.key", backend.addr));
    let handle = fulcrum::start(fulcrum::Config::from_file(&path).unwrap()).unwrap();
    let addr = handle.listener_addr("web").unwrap();
    let json = dir.path().join("scan.json");
    let out = {
        let json = json.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(testssl)
                .args([
                    "--quiet",
                    "--color",
                    "0",
                    "--warnings",
                    "off",
                    "--fast",
                    "--sneaky",
                ])
                .args(["-p", "-s", "-R", "-C"])
                .arg("--jsonfile")
                .arg(&json)
                .arg(addr.to_string())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let finding = |id: &str| -> String {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["finding"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {id} in the scan: {text}"))
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(
            finding(old).starts_with("not offered"),
            "{old}: {}",
            finding(old)
        );
    }
    assert!(
        finding("TLS1_2").starts_with("offered"),
        "{}",
        finding("TLS1_2")
    );
    assert!(
        finding("TLS1_3").starts_with("offered"),
        "{}",
        finding("TLS1_3")
    );
    for weak in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        assert!(
            finding(weak).starts_with("not offered"),
            "{weak}: {}",
            finding(weak)
        );
    }
    assert!(
        finding("secure_client_renego").contains("not vulnerable"),
        "{}",
        finding("secure_client_renego")
    );
    assert!(
        finding("CRIME_TLS").contains("not vulnerable"),
        "{}",
        finding("CRIME_TLS")
    );
    tokio::task::spawn_blocking(move || handle.shutdown())
        .await
        .unwrap();
}
