//! `[pool] protocol` and `[pool.tls]`: the protocol spoken to the backends, and the CA bundle,
//! client certificate and key read and parsed now, so `fulcrum check` names a missing,
//! unreadable or malformed file (and the key that names it) instead of the start failing.
//!
//! Split from `pools.rs` so the pool file stays about pools; it extends the same collector.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::regions::resolve;
use super::{key, Cx};
use crate::config::file::{RawPool, RawPoolTls, Str};
use crate::config::{BackendTls, CaBundle, ClientIdentity, UpstreamProtocol};

/// Certificate and key files larger than this are refused (a bundle of the whole web PKI is
/// about 250 KiB).
const MAX_PEM: u64 = 4 * 1024 * 1024;

impl Cx<'_> {
    /// A pool's `protocol` and `[pool.tls]`, checked together: h2 and auto need TLS, h2c
    /// excludes it.
    pub(super) fn upstream(
        &mut self,
        r: &RawPool,
        prefix: &str,
    ) -> (UpstreamProtocol, Option<BackendTls>) {
        let protocol = self.opt_str(
            r.protocol.as_ref(),
            &key(prefix, "protocol"),
            UpstreamProtocol::Http1,
            protocol,
        );
        let tls = r.tls.as_ref().map(|t| self.pool_tls(t.get_ref(), prefix));
        if let Some(v) = &r.protocol {
            match (protocol, &r.tls) {
                (UpstreamProtocol::H2 | UpstreamProtocol::Auto, None) => self.error(
                    v.span(),
                    &key(prefix, "protocol"),
                    format!("{:?} is HTTP over TLS: it needs a [pool.tls] table", v.get_ref()),
                ),
                (UpstreamProtocol::H2c, Some(t)) => self.error(
                    t.span(),
                    &key(prefix, "tls"),
                    "protocol = \"h2c\" is HTTP/2 in the clear: use \"h2\" (or \"auto\") with [pool.tls]",
                ),
                _ => {}
            }
        }
        (protocol, tls)
    }

    fn pool_tls(&mut self, t: &RawPoolTls, pool: &str) -> BackendTls {
        let prefix = format!("{pool}: tls");
        let k = |field: &str| key(&prefix, field);
        let mut tls = BackendTls::system();
        if let Some(v) = t.ca.as_ref().filter(|v| !v.get_ref().is_empty()) {
            tls.ca = self.ca_bundle(v, &k("ca"));
        }
        if let Some(v) = t.server_name.as_ref().filter(|v| !v.get_ref().is_empty()) {
            match ServerName::try_from(v.get_ref().as_str()) {
                Ok(_) => tls.server_name = Some(v.get_ref().clone()),
                Err(_) => self.error(
                    v.span(),
                    &k("server_name"),
                    format!("{:?} is not a DNS name or IP address", v.get_ref()),
                ),
            }
        }
        if let Some(v) = &t.verify {
            tls.verify = *v.get_ref();
        }
        let cert = t.cert.as_ref().filter(|v| !v.get_ref().is_empty());
        let key_file = t.key.as_ref().filter(|v| !v.get_ref().is_empty());
        match (cert, key_file) {
            (Some(c), Some(kf)) => {
                let certs = self.certs(c, &k("cert"));
                let key = self.private_key(kf, &k("key"));
                if let (Some((cert_path, certs)), Some((key_path, key))) = (certs, key) {
                    tls.identity = Some(ClientIdentity {
                        cert_path,
                        key_path,
                        certs,
                        key: Arc::new(key),
                    });
                }
            }
            (Some(c), None) => self.error(c.span(), &k("key"), "missing: cert needs its key"),
            (None, Some(kf)) => self.error(kf.span(), &k("cert"), "missing: key needs its cert"),
            (None, None) => {}
        }
        tls
    }

    /// `ca`: at least one certificate, each one a valid trust anchor.
    fn ca_bundle(&mut self, v: &Str, k: &str) -> Option<CaBundle> {
        let (path, certs) = self.certs(v, k)?;
        let mut roots = rustls::RootCertStore::empty();
        let (_, bad) = roots.add_parsable_certificates(certs.iter().cloned());
        if bad > 0 || roots.is_empty() {
            self.error(
                v.span(),
                k,
                format!(
                    "{}: {bad} certificate(s) cannot be used as a CA",
                    path.display()
                ),
            );
            return None;
        }
        Some(CaBundle { path, certs })
    }

    /// A PEM file of certificates (at least one).
    fn certs(&mut self, v: &Str, k: &str) -> Option<(PathBuf, Vec<CertificateDer<'static>>)> {
        let path = resolve(self.path, v.get_ref());
        let text = self.pem_file(v, k, &path)?;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&text).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => Some((path, certs)),
            Ok(_) => {
                let msg = format!("{}: no PEM certificate in it", path.display());
                self.error(v.span(), k, msg);
                None
            }
            Err(e) => {
                let msg = format!("{}: bad PEM certificate: {e}", path.display());
                self.error(v.span(), k, msg);
                None
            }
        }
    }

    /// A PEM private key (PKCS#8, PKCS#1 or SEC1) the TLS provider can sign with.
    fn private_key(&mut self, v: &Str, k: &str) -> Option<(PathBuf, PrivateKeyDer<'static>)> {
        let path = resolve(self.path, v.get_ref());
        let text = self.pem_file(v, k, &path)?;
        let problem = match PrivateKeyDer::from_pem_slice(&text) {
            Ok(key) => {
                let provider = rustls::crypto::aws_lc_rs::default_provider();
                match provider.key_provider.load_private_key(key.clone_key()) {
                    Ok(_) => return Some((path, key)),
                    Err(e) => format!("{}: unusable private key: {e}", path.display()),
                }
            }
            Err(e) => format!("{}: no PEM private key in it: {e}", path.display()),
        };
        self.error(v.span(), k, problem);
        None
    }

    fn pem_file(&mut self, v: &Str, k: &str, path: &std::path::Path) -> Option<Vec<u8>> {
        match crate::config::files::read_bounded(path, MAX_PEM) {
            Ok(text) => Some(text),
            Err(e) => {
                self.error(v.span(), k, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }
}

/// `"http1"` | `"h2c"` | `"h2"` | `"auto"`.
fn protocol(text: &str) -> Result<UpstreamProtocol, super::values::Msg> {
    match text {
        "http1" => Ok(UpstreamProtocol::Http1),
        "h2c" => Ok(UpstreamProtocol::H2c),
        "h2" => Ok(UpstreamProtocol::H2),
        "auto" => Ok(UpstreamProtocol::Auto),
        other => Err(format!(
            "must be \"http1\", \"h2c\", \"h2\" or \"auto\", got {other:?}"
        )),
    }
}
