//! A client certificate as the backend is told of it (`X-Client-Cert-Subject`,
//! `X-Client-Cert-San`): the subject and subjectAltNames of the leaf rustls verified against
//! `client_ca`, in text a header can carry.

use rustls_pki_types::CertificateDer;

/// A verified client certificate, as the backend is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// RFC 4514-style subject, e.g. `CN=alice, O=Example`.
    pub subject: String,
    /// Its subjectAltNames: `DNS:a.example, email:alice@example.com, URI:spiffe://...`.
    pub san: String,
}

impl PeerCert {
    /// The leaf of a client's verified chain (rustls verified it during the handshake).
    pub fn of(chain: Option<&[CertificateDer<'_>]>) -> Option<PeerCert> {
        let leaf = chain?.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let mut san = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => san.push(format!("DNS:{d}")),
                    GeneralName::RFC822Name(m) => san.push(format!("email:{m}")),
                    GeneralName::URI(u) => san.push(format!("URI:{u}")),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            san.push(format!("IP:{ip}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(PeerCert {
            subject: header_safe(&cert.subject().to_string()),
            san: header_safe(&san.join(", ")),
        })
    }
}

/// Visible ASCII and spaces as they are; anything else (a header cannot carry it) as `\xNN`.
fn header_safe(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}
