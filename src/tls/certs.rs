//! Certificate files: a PEM chain and its key read into a rustls `CertifiedKey`, with what
//! the cert store, `check` and the status page need to know of it (names, expiry, serial).
//!
//! Why checked here and not at the first handshake: a certificate that cannot serve (file
//! unreadable, key of another certificate, expired, no DNS name to be picked by) is a config
//! error, reported by `fulcrum check`, at start and by a reload (which then changes nothing),
//! at the place in the config file that named it (`config::Origin`).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::files::read_bounded;
use crate::config::{CertFiles, ConfigError, NamedFile};

/// The largest certificate, key or CA file read (a chain is a few KiB; a CA bundle some 200).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// What is known of one loaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names SNI picks it by (lower case; `*.example.com` for a wildcard): the SAN's DNS
    /// names, else the subject's CN.
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Hex, as `openssl x509 -serial` prints it (upper case, no colons).
    pub serial: String,
    pub subject: String,
    /// The certificate file.
    pub file: String,
}

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Reads a cert/key pair and checks it can serve at `now` (unix seconds).
pub fn load(
    files: &CertFiles,
    provider: &CryptoProvider,
    now: i64,
) -> Result<LoadedCert, ConfigError> {
    let chain = read_chain(&files.cert)?;
    let Some(leaf) = chain.first() else {
        return Err(at(
            &files.cert,
            "no certificate (PEM \"CERTIFICATE\" block) in it",
        ));
    };
    let info = describe(leaf, &files.cert)?;
    if info.not_after < now {
        return Err(at(
            &files.cert,
            format!(
                "expired on {} (serial {})",
                date(info.not_after),
                info.serial
            ),
        ));
    }
    if info.names.is_empty() {
        return Err(at(
            &files.cert,
            "no usable name: neither a DNS subjectAltName nor a CN that is a host name",
        ));
    }
    let key_bytes = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        at(
            &files.key,
            format!("no private key (PEM \"PRIVATE KEY\" block): {e}"),
        )
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        let what = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!(
                    "does not match the certificate {}",
                    files.cert.path.display()
                )
            }
            other => format!("unusable key: {other}"),
        };
        at(&files.key, what)
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
    })
}

/// Reads a CA bundle into a client-certificate verifier's roots.
pub fn load_roots(file: &NamedFile) -> Result<Arc<RootCertStore>, ConfigError> {
    let mut roots = RootCertStore::empty();
    for der in read_chain(file)? {
        roots
            .add(der)
            .map_err(|e| at(file, format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(at(file, "no certificate (PEM \"CERTIFICATE\" block) in it"));
    }
    Ok(Arc::new(roots))
}

fn read(file: &NamedFile) -> Result<Vec<u8>, ConfigError> {
    read_bounded(&file.path, MAX_PEM_BYTES)
        .map_err(|e| at(file, format!("cannot read {}: {e}", file.path.display())))
}

fn read_chain(file: &NamedFile) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(file)?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| at(file, format!("bad PEM: {e}")))
}

/// An error at the key that named `file`, naming the file.
fn at(file: &NamedFile, message: impl Into<String>) -> ConfigError {
    let message = message.into();
    let path = file.path.display().to_string();
    if message.contains(&path) {
        file.origin.error(message)
    } else {
        file.origin.error(format!("{path}: {message}"))
    }
}

/// Names, validity and serial of a DER certificate.
pub fn describe(der: &CertificateDer<'_>, file: &NamedFile) -> Result<CertInfo, ConfigError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| at(file, format!("not an X.509 certificate: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    names.retain(|n| is_host_name(n));
    names.dedup();
    Ok(CertInfo {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert
            .tbs_certificate
            .raw_serial_as_string()
            .replace(':', "")
            .to_ascii_uppercase(),
        subject: cert.subject().to_string(),
        file: file.path.display().to_string(),
    })
}

/// A DNS name a certificate can be picked by: labels of letters, digits, `-` (and `_`), the
/// first one maybe `*`.
fn is_host_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `2026-12-02 03:55:00 UTC` for a unix time.
pub fn date(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::is_host_name;

    #[test]
    fn host_names_and_wildcards() {
        assert!(is_host_name("example.com"));
        assert!(is_host_name("*.example.com"));
        assert!(is_host_name("localhost"));
        assert!(!is_host_name("*"));
        assert!(!is_host_name("a..b"));
        assert!(!is_host_name("foo bar"));
        assert!(!is_host_name("a.*.b"));
    }
}
