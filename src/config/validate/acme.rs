//! `[listener.tls] acme` and what it needs of the rest of the file: a plain http listener
//! to answer the CA's HTTP-01 challenges, and `[global] state_dir` for the files.

use std::ops::Range;

use toml::Spanned;

use super::{key, label, regions, Cx};
use crate::config::acme::{self, RawAcme};
use crate::config::file::RawListener;
use crate::config::{AcmeConfig, CertFiles, Global, ListenerConfig, NamedFile, Protocol};

impl Cx<'_> {
    /// One listener's `acme = { ... }`: every key checked, all problems reported.
    pub(super) fn acme(&mut self, raw: &Spanned<RawAcme>, prefix: &str) -> Option<AcmeConfig> {
        let a = raw.get_ref();
        let table: Range<usize> = acme::span(raw);
        let mut ok = true;
        let mut domains = Vec::new();
        match &a.domains {
            Some(list) if !list.is_empty() => {
                for d in list {
                    match self.check_str(d, &key(prefix, "domains"), acme::domain) {
                        Some(name) if !domains.contains(&name) => domains.push(name),
                        Some(_) => {}
                        None => ok = false,
                    }
                }
            }
            _ => {
                let span = a
                    .domains
                    .as_ref()
                    .and_then(|l| l.first())
                    .map_or(table.clone(), |d| d.span());
                self.error(
                    span,
                    &key(prefix, "domains"),
                    "missing (required): the names to order a certificate for",
                );
                ok = false;
            }
        }
        let directory = self.req_str(
            a.directory.as_ref(),
            table,
            &key(prefix, "directory"),
            acme::directory,
        );
        let email = self.opt_str(
            a.email.as_ref(),
            &key(prefix, "email"),
            Some(String::new()),
            |s| acme::email(s).map(Some),
        );
        let directory_ca = a
            .directory_ca
            .as_ref()
            .filter(|v| !v.get_ref().is_empty())
            .map(|v| regions::resolve(self.path, v.get_ref()));
        if let (Some(path), Some(v)) = (&directory_ca, &a.directory_ca) {
            if !path.is_file() {
                self.error(
                    v.span(),
                    &key(prefix, "directory_ca"),
                    format!("{} is not a readable file", path.display()),
                );
                ok = false;
            }
        }
        match (ok, directory, email) {
            (true, Some(directory), Some(email)) => Some(AcmeConfig {
                domains,
                email,
                directory,
                directory_ca,
            }),
            _ => None,
        }
    }

    /// After all listeners: each ACME listener learns where its certificate is kept, and a
    /// file with `acme` must have a plain http listener (the CA connects to port 80 of the
    /// domains; this process answers on every http listener without tls).
    pub(super) fn acme_listeners(
        &mut self,
        raw: &[Spanned<RawListener>],
        listeners: &mut [ListenerConfig],
        global: &Global,
    ) {
        let plain_http = listeners
            .iter()
            .any(|l| l.protocol == Protocol::Http && l.tls.is_none());
        for (i, r) in raw.iter().enumerate() {
            let Some(at) = r
                .get_ref()
                .tls
                .as_ref()
                .and_then(|t| t.get_ref().acme.as_ref())
            else {
                continue;
            };
            let prefix = key(
                &label("listener", r.get_ref().name.as_ref(), i),
                "tls: acme",
            );
            if !plain_http {
                self.error(at.span(), &prefix, "needs a plain http listener (protocol = \"http\", no tls) to answer the CA's HTTP-01 challenges on port 80");
            }
            if global.state_dir.exists() && !global.state_dir.is_dir() {
                self.error(
                    at.span(),
                    &prefix,
                    format!(
                        "[global] state_dir {} is not a directory",
                        global.state_dir.display()
                    ),
                );
            }
        }
        for l in listeners.iter_mut() {
            let name = l.name.clone();
            if let Some(tls) = l.tls.as_mut() {
                if let Some(acme) = &tls.acme {
                    let (cert, key) = acme.cert_files(&global.state_dir, &name);
                    let origin = crate::config::Origin::in_code(format!(
                        "listener {name:?}: tls: acme (issued)"
                    ));
                    tls.issued = Some(CertFiles {
                        cert: NamedFile {
                            path: cert,
                            origin: origin.clone(),
                        },
                        key: NamedFile { path: key, origin },
                    });
                }
            }
        }
    }
}
