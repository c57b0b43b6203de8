//! The server name of a TLS ClientHello, peeked from a client connection without consuming it
//! (TLS passthrough: `[[listener.route]] sni` on a tcp listener).
//!
//! Why peek: the connection's bytes go to the backend untouched, the ClientHello included, so
//! the backend terminates TLS itself and its certificate is what the client verifies. The
//! bytes stay in the socket's receive queue and the splice pump forwards them like any other.
//!
//! Bounded: Fulcrum waits for the first TLS record only, at most `MAX_RECORD` bytes (the
//! record header says how long it is), and only until the deadline the caller passes (the
//! listener's `client_header_timeout`). The record is parsed by `tls-parser` (no TLS parsing of
//! our own). A first record that is not a handshake record, does not parse, is not a
//! ClientHello or carries no `server_name` yields [`Hello::Unnamed`]; the caller then uses the
//! listener's default pool. A ClientHello spread over several TLS records (legal, but no common
//! client sends one: even post-quantum key shares fit one record) is `Unnamed` too.
//!
//! Waiting for more bytes without spinning: a peek that finds no new bytes reports
//! `WouldBlock` inside [`TcpStream::async_io`], which clears the socket's readiness race-free
//! (tokio clears it only if no new event arrived since the peek), so the task sleeps until
//! the next segment arrives.

use std::io;
use std::time::Duration;

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, parse_tls_record_header, SNIType,
    TlsExtension, TlsMessage, TlsMessageHandshake, TlsRecordType, MAX_RECORD_LEN,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most bytes peeked: one record header and the longest record `tls-parser` accepts.
pub const MAX_RECORD: usize = 5 + MAX_RECORD_LEN as usize;

/// The content type of a handshake record (RFC 8446 5.1).
const HANDSHAKE: u8 = 22;

/// What the first record of a connection says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello with this `host_name` (as sent; matching ignores case).
    Named(String),
    /// Not a ClientHello, not parseable, or no server name: the listener's default pool.
    Unnamed,
}

/// Why no [`Hello`] could be had: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("no complete first TLS record within {0:?}")]
    Timeout(Duration),
    #[error("the client closed the connection before its first TLS record was complete")]
    Closed,
    #[error("i/o")]
    Io(#[source] io::Error),
}

/// How far `bytes` (the start of a connection) go.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The first record is not complete: this many bytes are needed in all.
    NeedMore(usize),
    Done(Hello),
}

/// Reads the ClientHello's server name from the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parsed {
    // Framing only: a first byte that cannot start a handshake record settles it at once,
    // whatever else the client's first message holds (or how short it is).
    if bytes.first().is_some_and(|&b| b != HANDSHAKE) {
        return Parsed::Done(Hello::Unnamed);
    }
    let header = match parse_tls_record_header(bytes) {
        Ok((_, header)) => header,
        Err(tls_parser::Err::Incomplete(_)) => return Parsed::NeedMore(5),
        Err(_) => return Parsed::Done(Hello::Unnamed),
    };
    if header.record_type != TlsRecordType::Handshake || header.len > MAX_RECORD_LEN {
        return Parsed::Done(Hello::Unnamed);
    }
    let total = 5 + usize::from(header.len);
    if bytes.len() < total {
        return Parsed::NeedMore(total);
    }
    Parsed::Done(server_name(&bytes[..total]).map_or(Hello::Unnamed, Hello::Named))
}

/// The `host_name` of the ClientHello in `record` (one complete record), if any.
fn server_name(record: &[u8]) -> Option<String> {
    let (_, plaintext) = parse_tls_plaintext(record).ok()?;
    let hello = plaintext.msg.iter().find_map(|m| match m {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => Some(hello),
        _ => None,
    })?;
    let (_, extensions) = parse_tls_client_hello_extensions(hello.ext?).ok()?;
    extensions.iter().find_map(|e| match e {
        TlsExtension::SNI(names) => names
            .iter()
            .find(|(kind, _)| *kind == SNIType::HostName)
            .and_then(|(_, name)| std::str::from_utf8(name).ok())
            .map(String::from),
        _ => None,
    })
}

/// Peeks at `stream` until its first TLS record is complete (or is clearly not one), within
/// `within`. Nothing is consumed.
pub async fn peek(stream: &TcpStream, within: Duration) -> Result<Hello, PeekError> {
    tokio::time::timeout(within, peek_unbounded(stream))
        .await
        .map_err(|_| PeekError::Timeout(within))?
}

async fn peek_unbounded(stream: &TcpStream) -> Result<Hello, PeekError> {
    // A second handle on the same socket (same open file, so also non-blocking) for the
    // synchronous peek inside `async_io`; closed when this returns, the socket stays open.
    let raw: std::net::TcpStream = socket2::SockRef::from(stream)
        .try_clone()
        .map_err(PeekError::Io)?
        .into();
    let mut buf = Vec::new();
    let mut have = 0;
    loop {
        let need = match parse(&buf[..have]) {
            Parsed::Done(hello) => return Ok(hello),
            Parsed::NeedMore(need) => need.min(MAX_RECORD),
        };
        buf.resize(need, 0);
        have = stream
            .async_io(Interest::READABLE, || match raw.peek(&mut buf) {
                // No byte since the last look: wait for the next segment.
                Ok(n) if n == have && n != 0 => Err(io::ErrorKind::WouldBlock.into()),
                r => r,
            })
            .await
            .map_err(PeekError::Io)?;
        if have == 0 {
            return Err(PeekError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first flight of a rustls client naming `name`.
    fn client_hello(name: &'static str) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        let Ok(config) = config else {
            panic!("client config");
        };
        let Ok(server) = rustls_pki_types::ServerName::try_from(name) else {
            panic!("name {name}");
        };
        let Ok(mut conn) = rustls::ClientConnection::new(std::sync::Arc::new(config), server)
        else {
            panic!("client");
        };
        let mut out = Vec::new();
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }

    #[test]
    fn a_real_client_hello_names_its_server_and_is_framed() {
        let hello = client_hello("db.example.com");
        assert_eq!(
            parse(&hello),
            Parsed::Done(Hello::Named("db.example.com".into()))
        );
        let total = 5 + usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(total, hello.len());
        for cut in [1, 4, 5, 6, total / 2, total - 1] {
            let want = if cut < 5 { 5 } else { total };
            assert_eq!(parse(&hello[..cut]), Parsed::NeedMore(want), "cut at {cut}");
        }
        // Clients naming an IP address send no server_name.
        assert_eq!(
            parse(&client_hello("127.0.0.1")),
            Parsed::Done(Hello::Unnamed)
        );
    }

    #[test]
    fn not_tls_is_unnamed_at_once() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Done(Hello::Unnamed));
        assert_eq!(parse(b"G"), Parsed::Done(Hello::Unnamed));
        assert_eq!(
            parse(b"\x17\x03\x03\x00\x01x"),
            Parsed::Done(Hello::Unnamed)
        );
        assert_eq!(parse(b"\x16\x03\x01\xff\xff"), Parsed::Done(Hello::Unnamed));
    }

    #[test]
    fn a_partial_record_asks_for_the_rest() {
        assert_eq!(parse(b""), Parsed::NeedMore(5));
        assert_eq!(parse(b"\x16\x03"), Parsed::NeedMore(5));
        assert_eq!(parse(b"\x16\x03\x01\x00\x10abc"), Parsed::NeedMore(21));
        // Complete but not a ClientHello.
        assert_eq!(
            parse(b"\x16\x03\x01\x00\x04\x00\x00\x00\x00"),
            Parsed::Done(Hello::Unnamed)
        );
    }
}
