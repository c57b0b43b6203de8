//! `[listener.tls] acme = { domains, email, directory, directory_ca }`: the validated settings,
//! and where the ACME task keeps its account and the certificates it obtains under
//! `[global] state_dir`.
//!
//! The file names live here, not in `acme`, because two layers need them: the ACME task writes
//! the files, and the listener's TLS settings (built below the task, at every snapshot) read
//! them like any `certs` entry.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// A string value with its location (as `file::Str`; named here so `file` alone imports `acme`).
type Str = Spanned<String>;

/// `acme = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub domains: Option<Vec<Str>>,
    pub email: Option<Str>,
    pub directory: Option<Str>,
    pub directory_ca: Option<Str>,
}

/// One TLS listener's ACME settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AcmeConfig {
    /// The names ordered, all on one certificate (DNS names; no wildcards: HTTP-01 cannot
    /// prove them).
    pub domains: Vec<String>,
    /// The account's contact ("" = none).
    pub email: String,
    /// The CA's directory URL (https).
    pub directory: String,
    /// A CA bundle the directory's own certificate chains to, for private ACME CAs (step-ca,
    /// a test CA); `None` = the system's roots.
    pub directory_ca: Option<PathBuf>,
}

impl AcmeConfig {
    /// The certificate chain and key the ACME task keeps for `listener`.
    pub fn cert_files(&self, state_dir: &Path, listener: &str) -> (PathBuf, PathBuf) {
        let dir = state_dir.join("acme");
        (
            dir.join(format!("{listener}.crt")),
            dir.join(format!("{listener}.key")),
        )
    }

    /// The account credentials for this directory (one account per CA, shared by listeners).
    pub fn account_file(&self, state_dir: &Path) -> PathBuf {
        let id = xxhash_rust::xxh3::xxh3_64(self.directory.as_bytes());
        state_dir
            .join("acme")
            .join(format!("account-{id:016x}.json"))
    }
}

/// A DNS name an ACME CA can issue for by HTTP-01: letters, digits, `-` and `.`, at least one
/// dot, no empty or over-long label, no wildcard.
pub(super) fn domain(s: &str) -> Result<String, String> {
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(format!(
            "{s:?}: wildcard names need a DNS-01 challenge; ACME here answers HTTP-01 only"
        ));
    }
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if labels_ok {
        Ok(name)
    } else {
        Err(format!(
            "{s:?} is not a DNS name (e.g. \"www.example.com\")"
        ))
    }
}

/// The directory URL: `https://` (ACME requires TLS, RFC 8555 section 6.1).
pub(super) fn directory(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .ok_or_else(|| format!("{s:?}: the directory must be an https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{s:?}: the directory URL has no host"));
    }
    Ok(s.to_string())
}

/// `email`: empty, or something with one `@` and no spaces.
pub(super) fn email(s: &str) -> Result<String, String> {
    let ok = s.is_empty()
        || (s.matches('@').count() == 1
            && !s.starts_with('@')
            && !s.ends_with('@')
            && !s.chars().any(|c| c.is_whitespace() || c == ','));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an email address"))
    }
}

/// The span of the whole `acme` table, for "missing" errors.
pub(super) fn span(raw: &Spanned<RawAcme>) -> std::ops::Range<usize> {
    raw.span()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_must_be_names_http01_can_prove() {
        assert_eq!(domain("WWW.Example.com.").as_deref(), Ok("www.example.com"));
        assert!(domain("*.example.com").is_err());
        assert!(domain("localhost").is_err());
        assert!(domain("a..b").is_err());
        assert!(domain("-a.b").is_err());
        assert!(domain("a_b.c").is_err());
    }

    #[test]
    fn the_directory_is_https() {
        assert!(directory("https://acme-v02.api.letsencrypt.org/directory").is_ok());
        assert!(directory("http://acme.example/dir").is_err());
        assert!(directory("https:///dir").is_err());
    }

    #[test]
    fn files_are_per_listener_and_accounts_per_directory() {
        let a = AcmeConfig {
            domains: vec!["a.example.com".into()],
            email: String::new(),
            directory: "https://ca.example/dir".into(),
            directory_ca: None,
        };
        let mut b = a.clone();
        b.directory = "https://other.example/dir".into();
        let dir = Path::new("/state");
        assert_eq!(a.cert_files(dir, "web").0, Path::new("/state/acme/web.crt"));
        assert_ne!(a.account_file(dir), b.account_file(dir));
        assert_eq!(a.account_file(dir), a.account_file(dir));
    }
}
