//! TLS for the tests: a test CA and ECDSA P-256 certificates made by rcgen at test time (never
//! stored in the repo), written into a temp dir; and a rustls client (tokio-rustls) that says
//! which certificate and ALPN protocol it got, with HTTP/1.1 or h2 over it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::client::{Reply, EXCHANGE_LIMIT};

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM, and the certificate's DER (to compare with what a
/// client was served).
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    key_der: Vec<u8>,
}

impl Leaf {
    /// Writes `NAME.pem` (the leaf then the CA: a chain) and `NAME.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/NAME` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.issuer.der().to_vec())
    }

    /// A server certificate for `names` (DNS names; `127.0.0.1` also as an IP SAN so a
    /// client without SNI can verify it), serial `serial`, valid now for a year.
    pub fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        self.leaf_valid(names, serial, None)
    }

    /// [`leaf`](Self::leaf) that expired in 2020.
    pub fn expired_leaf(&self, names: &[&str], serial: u64) -> Leaf {
        self.leaf_valid(names, serial, Some((2019, 2020)))
    }

    fn leaf_valid(&self, names: &[&str], serial: u64, years: Option<(i32, i32)>) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
        params.serial_number = Some(serial.into());
        if let Some((from, to)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        self.sign(params)
    }

    /// A certificate for exactly `names` (DNS names, or IP addresses as IP SANs), as a backend
    /// or a client presents it.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fulcrum test");
        self.sign(params)
    }

    /// A client certificate with subject `CN=cn, O=Fulcrum Tests` and an email SAN.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Fulcrum Tests");
        params.subject_alt_names.push(SanType::Rfc822Name(
            format!("{cn}@example.test").try_into().unwrap(),
        ));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

/// What a TLS client asks for.
#[derive(Clone, Default)]
pub struct Hello<'a> {
    /// `None`: no SNI (the client connects to 127.0.0.1 by address).
    pub sni: Option<&'a str>,
    pub alpn: &'a [&'a [u8]],
    pub client_cert: Option<&'a Leaf>,
    /// Offer TLS 1.2 only.
    pub tls12_only: bool,
}

/// A rustls client config trusting `ca` only.
pub fn client_config(ca: &Ca, hello: &Hello<'_>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if hello.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match hello.client_cert {
        Some(leaf) => {
            let chain = vec![CertificateDer::from(leaf.der.clone())];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = hello.alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects and handshakes: the TLS stream, or the handshake's error.
pub async fn connect(
    addr: SocketAddr,
    ca: &Ca,
    hello: &Hello<'_>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, hello));
    let name = match hello.sni {
        Some(sni) => ServerName::try_from(sni.to_string()).unwrap(),
        None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(EXCHANGE_LIMIT, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The DER of the certificate the server presented.
pub fn served_cert(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The ALPN protocol agreed, as text ("" for none).
pub fn alpn(tls: &TlsStream<TcpStream>) -> String {
    String::from_utf8_lossy(tls.get_ref().1.alpn_protocol().unwrap_or_default()).into_owned()
}

/// One request over `tls`: HTTP/2 when ALPN agreed on h2, else HTTP/1.1.
pub async fn request(tls: TlsStream<TcpStream>, req: Request<Full<Bytes>>) -> Reply {
    try_request(tls, req).await.unwrap()
}

/// [`request`], or what went wrong (a refused client certificate shows here in TLS 1.3).
pub async fn try_request(
    tls: TlsStream<TcpStream>,
    mut req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let exchange = async {
        let h2 = alpn(&tls) == "h2";
        let io = TokioIo::new(tls);
        let resp = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await
        } else {
            // HTTP/1.1 in origin-form; the authority is in Host.
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            *req.uri_mut() = path.parse().unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await
        };
        let resp = resp.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(EXCHANGE_LIMIT, exchange)
        .await
        .map_err(|_| "https exchange took too long".to_string())?
}

/// `GET https://{host}{path}` (the request's authority is `host`).
pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://{host}{path}"))
        .header(http::header::HOST, host)
        .body(Full::default())
        .unwrap()
}
