//! Full TLS handshakes per second with aws-lc-rs and with ring, the two crypto providers rustls
//! is built with: the README's figures, and the reason `tls::provider` picks the one it picks.
//!
//! A rustls client and server in this one thread, their bytes passed in memory (no sockets,
//! no runtime: only the handshake's CPU), an ECDSA P-256 certificate made by rcgen, no
//! resumption (every handshake is full), TLS 1.3 and TLS 1.2, each with the provider's default
//! key exchange (X25519). Printed per provider and version: handshakes per second of the pair,
//! and of the server's share alone (the time spent in the server's calls), which is what a
//! listener pays. Providers and versions take turns for `ROUNDS` rounds of one second; the
//! best round is printed (on a shared machine the best is the least disturbed), with the
//! median beside it.
//!
//! ```sh
//! cargo bench --bench tls_handshakes          # about 40 s
//! ```
//!
//! Under `cargo test --benches` (no `--bench` argument) it only says how to run it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, RootCertStore, ServerConnection};

/// How long each measurement runs.
const RUN: Duration = Duration::from_secs(1);
/// Rounds; each provider and version once per round.
const ROUNDS: usize = 9;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "tls_handshakes: a measurement, not a test; run `cargo bench --bench tls_handshakes`"
        );
        return;
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bench.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = CertificateDer::from(cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(key.serialize_der());
    println!("full handshakes, ECDSA P-256, X25519, no resumption; best (median) of {ROUNDS} rounds of {RUN:?}, one thread");
    println!("provider   version  pairs/s        server-only/s");
    let providers = [
        (
            "aws-lc-rs",
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        ),
        ("ring", Arc::new(rustls::crypto::ring::default_provider())),
    ];
    let versions = [
        ("TLS1.3", &rustls::version::TLS13),
        ("TLS1.2", &rustls::version::TLS12),
    ];
    let mut results = vec![Vec::new(); providers.len() * versions.len()];
    for _ in 0..ROUNDS {
        for (p, (_, provider)) in providers.iter().enumerate() {
            for (v, (_, version)) in versions.iter().enumerate() {
                results[p * versions.len() + v].push(measure(provider, version, &cert, &key));
            }
        }
    }
    for (p, (name, _)) in providers.iter().enumerate() {
        for (v, (label, _)) in versions.iter().enumerate() {
            let runs = &results[p * versions.len() + v];
            let (best_pair, median_pair) = best_and_median(runs.iter().map(|r| r.0));
            let (best_server, median_server) = best_and_median(runs.iter().map(|r| r.1));
            println!(
                "{name:<10} {label:<8} {best_pair:>6.0} ({median_pair:>5.0})  {best_server:>6.0} ({median_server:>5.0})"
            );
        }
    }
}

fn best_and_median(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() - 1], v[v.len() / 2])
}

/// (handshakes per second of client and server together, per second of server time).
fn measure(
    provider: &Arc<CryptoProvider>,
    version: &'static rustls::SupportedProtocolVersion,
    cert: &CertificateDer<'static>,
    key: &PrivatePkcs8KeyDer<'static>,
) -> (f64, f64) {
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key()))
        .unwrap();
    let server = Arc::new(server);
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let name = ServerName::try_from("bench.test").unwrap();

    let started = Instant::now();
    let mut server_time = Duration::ZERO;
    let mut count = 0u64;
    while started.elapsed() < RUN {
        let mut c = ClientConnection::new(Arc::clone(&client), name.clone()).unwrap();
        let mut s = ServerConnection::new(Arc::clone(&server)).unwrap();
        handshake(&mut c, &mut s, &mut server_time);
        count += 1;
    }
    let total = started.elapsed().as_secs_f64();
    (
        count as f64 / total,
        count as f64 / server_time.as_secs_f64(),
    )
}

/// Passes bytes both ways until neither side is handshaking; the server's calls are timed.
fn handshake(c: &mut ClientConnection, s: &mut ServerConnection, server_time: &mut Duration) {
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            let t = Instant::now();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            *server_time += t.elapsed();
        }
        buf.clear();
        let t = Instant::now();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        *server_time += t.elapsed();
        if !buf.is_empty() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
        }
    }
}
