//! The certificates of one TLS listener, as SNI picks them: the exact name, else a wildcard
//! covering it (`*.example.com` covers `a.example.com`, not `example.com` nor `a.b.example.com`),
//! else the listener's first certificate (also for a client that sends no SNI).
//!
//! Why an `ArcSwap`: each handshake reads the map with one load and no lock, and a certificate
//! can join at run time ([`CertStore::add`]: issued certificates, ACME) without rebuilding the
//! listener's config; a reload builds a new store from the files.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::{CertInfo, LoadedCert};

/// The certificates SNI picks from.
#[derive(Debug, Default, Clone)]
pub struct Certs {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`: `*.example.com` is under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    infos: Vec<CertInfo>,
}

impl Certs {
    /// Adds `cert` under its names; a name already taken keeps its first certificate.
    pub fn add(&mut self, cert: &LoadedCert) {
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
    pub fn new(certs: Certs) -> CertStore {
        CertStore {
            certs: ArcSwap::from_pointee(certs),
        }
    }

    /// Adds a certificate at run time: handshakes from now on may pick it by its names
    /// (certificates of the config keep theirs). For ACME, which is not built yet.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn add(&self, cert: &LoadedCert) {
        self.certs.rcu(|old| {
            let mut next = Certs::clone(old);
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

#[cfg(test)]
mod tests {
    use super::{CertStore, Certs};
    use crate::config::{CertFiles, NamedFile, Origin};
    use crate::tls::certs::{self, LoadedCert};

    /// A self-signed ECDSA P-256 certificate for `names`, loaded as the config would load it.
    fn cert(dir: &std::path::Path, names: &[&str]) -> LoadedCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("key");
        let made = rcgen::CertificateParams::new(names.clone())
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let file = |ext: &str, text: String| {
            let path = dir.join(format!("{}.{ext}", names[0].replace('*', "star")));
            std::fs::write(&path, text).expect("write");
            NamedFile {
                path,
                origin: Origin::in_code("test"),
            }
        };
        let files = CertFiles {
            cert: file("pem", made.pem()),
            key: file("key", key.serialize_pem()),
        };
        certs::load(&files, crate::tls::provider(), certs::now()).expect("load")
    }

    #[test]
    fn exact_then_wildcard_then_the_first_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        let a = cert(dir.path(), &["a.test"]);
        let b = cert(dir.path(), &["*.b.test", "b.test"]);
        let mut certs = Certs::default();
        certs.add(&a);
        certs.add(&b);
        let is = |sni: Option<&str>, want: &LoadedCert| {
            let got = certs.pick(sni).expect("a certificate");
            assert_eq!(got.cert, want.key.cert, "{sni:?}");
        };
        is(Some("a.test"), &a);
        is(Some("A.TEST."), &a);
        is(Some("b.test"), &b);
        is(Some("x.b.test"), &b);
        // A wildcard covers one label only.
        is(Some("y.x.b.test"), &a);
        is(Some("other.test"), &a);
        is(None, &a);
        assert_eq!(certs.infos.len(), 2);
        assert_eq!(certs.infos[1].names, ["*.b.test", "b.test"]);
    }

    #[test]
    fn a_certificate_added_at_run_time_is_picked_by_its_names() {
        let dir = tempfile::tempdir().expect("dir");
        let a = cert(dir.path(), &["a.test"]);
        let issued = cert(dir.path(), &["new.test"]);
        let mut certs = Certs::default();
        certs.add(&a);
        let store = CertStore::new(certs);
        store.add(&issued);
        let now = store.certs.load();
        assert_eq!(
            now.pick(Some("new.test")).expect("cert").cert,
            issued.key.cert
        );
        assert_eq!(
            now.pick(None).expect("cert").cert,
            a.key.cert,
            "the default stays"
        );
        assert_eq!(store.infos().len(), 2);
    }
}
