//! ACME end to end against pebble: a TLS listener with `acme` and no certificate of its own
//! gets one issued over HTTP-01 (answered by Fulcrum's plain http listener), serves it by SNI
//! to a client that verifies it against pebble's root, and renews it before it expires (pebble
//! issues 30-second certificates here), the renewed serial served to new connections.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::support::backend::BackendBuilder;
use crate::support::eventually;
use crate::support::pebble::Pebble;
use crate::support::proxy::{free_addr, write_file, Process};

const DOMAIN: &str = "site.acme.test";

/// The serial of the leaf certificate the listener at `addr` serves for `DOMAIN`, verified
/// against `root`; `None` while no valid certificate is served.
async fn served_serial(addr: std::net::SocketAddr, root: &str) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(cert.ok()?).ok()?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from(DOMAIN).ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    Some(cert.raw_serial().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issues_over_http01_serves_by_sni_and_renews() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_addr();
    let Some(pebble) = Pebble::start(dir.path(), http.port(), Duration::from_secs(30)) else {
        return;
    };
    let backend = BackendBuilder::new("b1").start().await;
    let config = format!(
        r#"
[global]
workers = 1
admin = ""
state_dir = "state"

[[listener]]
name = "plain"
bind = "{http}"
pool = "web"

[[listener]]
name = "site"
bind = "127.0.0.1:0"
pool = "web"
[listener.tls]
acme = {{ domains = ["{DOMAIN}"], email = "ops@fulcrum.test", directory = "{directory}", directory_ca = "{ca}" }}

[[pool]]
name = "web"
backends = [{{ address = "{backend}" }}]
"#,
        directory = pebble.directory,
        ca = pebble.directory_ca.display(),
        backend = backend.addr,
    );
    let path = write_file(dir.path(), "fulcrum.toml", &config);
    let (status, _, stderr) =
        crate::support::proxy::run_cli(&["check", "-c", path.to_str().unwrap()]);
    assert!(status.success(), "check: {stderr}");
    let fulcrum = Process::run(&path);
    let site = fulcrum.addr("site");
    let root = pebble.issuing_root();

    let first = eventually(
        Duration::from_secs(60),
        "an ACME certificate to be served",
        async || served_serial(site, &root).await,
    )
    .await;
    // Stored under state_dir for the next start.
    assert!(dir.path().join("state/acme/site.crt").is_file());
    assert!(dir.path().join("state/acme/site.key").is_file());

    // A 30-second certificate is renewed after two thirds of its life.
    let renewed = eventually(
        Duration::from_secs(60),
        "the renewed certificate",
        async || served_serial(site, &root).await.filter(|s| *s != first),
    )
    .await;
    assert_ne!(renewed, first);
    drop(fulcrum);
}
