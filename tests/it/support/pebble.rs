//! Let's Encrypt's test CA, `pebble` (Debian package `pebble`), with its mock DNS server
//! `pebble-challtestsrv` answering every name with 127.0.0.1, so pebble's HTTP-01 validation
//! connects to a Fulcrum http listener on this machine.
//!
//! Both are started on free loopback ports and killed on drop. Pebble's own HTTPS certificate
//! is made here (rcgen) and handed to the ACME client as `directory_ca`; the roots pebble
//! issues under are fetched from its management interface for the test's TLS clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proxy::{accepts, free_addr};
use super::wait::eventually_blocking;

/// A running pebble and its DNS server.
pub struct Pebble {
    pebble: Child,
    dns: Child,
    /// ACME directory URL.
    pub directory: String,
    /// The CA file pebble's HTTPS certificate chains to (for `directory_ca`).
    pub directory_ca: PathBuf,
    management: SocketAddr,
}

impl Pebble {
    /// Starts pebble with certificates valid for `validity`, validating HTTP-01 challenges on
    /// port `http_port` of 127.0.0.1. `None` when pebble is not installed (see `require`).
    pub fn start(dir: &Path, http_port: u16, validity: Duration) -> Option<Pebble> {
        let pebble_bin = super::require("pebble")?;
        let dns_bin = pebble_bin.with_file_name("pebble-challtestsrv");
        let (cert, key, ca) = pebble_tls(dir);
        let listen = free_addr();
        let management = free_addr();
        let dns_addr = free_addr();
        let dns_management = free_addr();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                "tlsPort": free_addr().port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity.as_secs(),
            }
        });
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let dns = Command::new(dns_bin)
            .args(["-dns01", &dns_addr.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &dns_management.to_string()])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pebble = Command::new(pebble_bin)
            .args(["-config", config_path.to_str().unwrap()])
            .args(["-dnsserver", &dns_addr.to_string()])
            // No random validation delays, no rejected nonces: a deterministic CA.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Pebble {
            pebble,
            dns,
            directory: format!("https://{listen}/dir"),
            directory_ca: ca,
            management,
        };
        eventually_blocking(Duration::from_secs(10), "pebble to listen", || {
            (accepts(listen) && accepts(management)).then_some(())
        });
        Some(p)
    }

    /// The PEM of the root pebble issues under (fetched with curl over its management port).
    pub fn issuing_root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&self.directory_ca)
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl roots: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.dns.kill();
        let _ = self.pebble.wait();
        let _ = self.dns.wait();
    }
}

/// A CA and a certificate for 127.0.0.1 / localhost, for pebble's own HTTPS listener.
fn pebble_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble listener test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("pebble-tls.crt"),
        dir.join("pebble-tls.key"),
        dir.join("pebble-ca.crt"),
    );
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    paths
}
