//! `[listener.tls]` and `redirect_https`: keys, values and how they combine.
//!
//! The files named here are not read: `crate::tls` reads and checks them (unreadable, key not
//! matching, expired, no usable name) the same way at `check`, at start and at every reload,
//! reporting at the [`Origin`] recorded for each.

use std::ops::Range;

use toml::Spanned;

use super::{key, regions, Cx};
use crate::config::file::{RawListener, RawTls, Str};
use crate::config::{CertFiles, ClientAuth, ListenerTls, NamedFile, Origin, Protocol, TlsVersion};

impl Cx<'_> {
    /// Where `span` is, as an [`Origin`] for errors found later.
    fn origin(&self, span: Range<usize>, key: &str) -> Origin {
        let (line, col) = self.line_col(span.start);
        Origin {
            file: self.file.clone(),
            line,
            col,
            key: key.to_string(),
        }
    }

    /// A required file path (non-empty), resolved against the config's folder.
    fn named_file(&mut self, v: Option<&Str>, table: Range<usize>, key: &str) -> Option<NamedFile> {
        let text = self.req_str(v, table, key, |s| {
            if s.is_empty() {
                Err("must name a file".to_string())
            } else {
                Ok(s.to_string())
            }
        })?;
        let span = v.map_or(0..0, |v| v.span());
        Some(NamedFile {
            path: regions::resolve(self.path, &text),
            origin: self.origin(span, key),
        })
    }

    /// `redirect_https` and `[listener.tls]` of one listener.
    pub(super) fn listener_tls(
        &mut self,
        r: &RawListener,
        prefix: &str,
        protocol: Protocol,
    ) -> (Option<ListenerTls>, bool) {
        let redirect = r.redirect_https.as_ref().is_some_and(|v| *v.get_ref());
        if let Some(v) = r.redirect_https.as_ref().filter(|v| *v.get_ref()) {
            if protocol == Protocol::Tcp {
                self.error(
                    v.span(),
                    &key(prefix, "redirect_https"),
                    "only for protocol = \"http\"",
                );
            } else if r.tls.is_some() {
                self.error(
                    v.span(),
                    &key(prefix, "redirect_https"),
                    "a TLS listener would redirect to itself: set it on the plain http listener",
                );
            }
        }
        let tls = r
            .tls
            .as_ref()
            .and_then(|t| self.tls(t, &key(prefix, "tls"), protocol));
        (tls, redirect)
    }

    fn tls(
        &mut self,
        t: &Spanned<RawTls>,
        prefix: &str,
        protocol: Protocol,
    ) -> Option<ListenerTls> {
        let raw = t.get_ref();
        let mut ok = true;
        let mut certs = Vec::new();
        let acme = match &raw.acme {
            None => None,
            Some(a) => {
                let parsed = self.acme(a, &key(prefix, "acme"));
                ok &= parsed.is_some();
                parsed
            }
        };
        match &raw.certs {
            // ACME brings the certificates (the listener serves none until the first is issued).
            None if raw.acme.is_some() => {}
            None => {
                self.error(
                    t.span(),
                    &key(prefix, "certs"),
                    "missing (required): at least one { cert, key }, or acme",
                );
                ok = false;
            }
            Some(list) if list.get_ref().is_empty() => {
                self.error(
                    list.span(),
                    &key(prefix, "certs"),
                    "at least one { cert, key } is required",
                );
                ok = false;
            }
            Some(list) => {
                for (i, c) in list.get_ref().iter().enumerate() {
                    let k = key(prefix, &format!("certs #{}", i + 1));
                    let cert =
                        self.named_file(c.get_ref().cert.as_ref(), c.span(), &key(&k, "cert"));
                    let pkey = self.named_file(c.get_ref().key.as_ref(), c.span(), &key(&k, "key"));
                    match (cert, pkey) {
                        (Some(cert), Some(key)) => certs.push(CertFiles { cert, key }),
                        _ => ok = false,
                    }
                }
            }
        }
        let min_version = self.opt_str(
            raw.min_version.as_ref(),
            &key(prefix, "min_version"),
            TlsVersion::Tls12,
            |s| match s {
                "1.2" => Ok(TlsVersion::Tls12),
                "1.3" => Ok(TlsVersion::Tls13),
                other => Err(format!(
                    "expected \"1.2\" or \"1.3\" (got {other:?}; older versions are not offered)"
                )),
            },
        );
        let client_auth = self.opt_str(
            raw.client_auth.as_ref(),
            &key(prefix, "client_auth"),
            ClientAuth::Off,
            |s| match s {
                "off" => Ok(ClientAuth::Off),
                "optional" => Ok(ClientAuth::Optional),
                "required" => Ok(ClientAuth::Required),
                other => Err(format!(
                    "expected \"off\", \"optional\" or \"required\" (got {other:?})"
                )),
            },
        );
        let ca = raw.client_ca.as_ref().filter(|v| !v.get_ref().is_empty());
        let client_ca = match (ca, client_auth) {
            (Some(v), ClientAuth::Off) => {
                let msg =
                    "has no effect with client_auth = \"off\" (set \"optional\" or \"required\")";
                self.error(v.span(), &key(prefix, "client_ca"), msg);
                None
            }
            (Some(v), _) => self.named_file(Some(v), t.span(), &key(prefix, "client_ca")),
            (None, ClientAuth::Off) => None,
            (None, _) => {
                let span = raw.client_auth.as_ref().map_or(t.span(), |v| v.span());
                self.error(
                    span,
                    &key(prefix, "client_ca"),
                    "missing: client_auth needs the CA bundle client certificates must chain to",
                );
                ok = false;
                None
            }
        };
        let hsts = match raw.hsts.as_ref().filter(|v| !v.get_ref().is_empty()) {
            None => None,
            Some(v) if protocol == Protocol::Tcp => {
                self.error(
                    v.span(),
                    &key(prefix, "hsts"),
                    "only for protocol = \"http\"",
                );
                None
            }
            Some(v) => self.check_str(v, &key(prefix, "hsts"), hsts),
        };
        ok.then_some(ListenerTls {
            certs,
            min_version,
            client_ca,
            client_auth,
            hsts,
            acme,
            issued: None,
        })
    }
}

/// A `Strict-Transport-Security` value: `max-age=N` first (RFC 6797), then optional
/// `includeSubDomains` / `preload`; printable ASCII only (it becomes a header as is).
fn hsts(text: &str) -> Result<String, String> {
    let mut parts = text.split(';').map(str::trim);
    let age = parts
        .next()
        .and_then(|p| p.strip_prefix("max-age="))
        .and_then(|n| n.parse::<u64>().ok());
    if age.is_none() {
        return Err(format!(
            "expected \"max-age=SECONDS\" first, e.g. \"max-age=31536000\" (got {text:?})"
        ));
    }
    for p in parts {
        if !(p.eq_ignore_ascii_case("includeSubDomains") || p.eq_ignore_ascii_case("preload")) {
            return Err(format!(
                "unknown directive {p:?} (max-age, includeSubDomains, preload)"
            ));
        }
    }
    Ok(text.trim().to_string())
}
