//! PROXY protocol (the `ppp` crate): read v1/v2 on listeners with `proxy_protocol = true`,
//! and write v2 to backends of pools with `send_proxy = true`.
//!
//! A balancer in front of Fulcrum (an L4 load balancer, a CDN edge) opens the TCP connection, so
//! the peer address is its own; the PROXY header it sends first names the real client. Only a
//! peer inside `trusted_proxies` is read: from any other peer nothing is consumed and the peer
//! is the client (a header it sent anyway reaches the HTTP parser and gets a 400). From a
//! trusted peer the header is required: missing, malformed or slower than
//! `client_header_timeout`, the connection is closed. `LOCAL` (the balancer's own health check)
//! and `UNKNOWN` headers keep the peer address.
//!
//! The header is read exactly, never past its end, so the first request's bytes stay in the
//! socket for the HTTP server: 12 bytes tell the versions apart (v2's binary signature, or
//! `PROXY ` for v1); v2 then gives its length, v1 ends at CRLF within 107 bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{v1, v2, HeaderResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::chain::Chain;
use crate::client_ip;

use crate::snapshot::{ListenerSnapshot, Snapshot};

/// v2's binary signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest header, CRLF included.
const V1_MAX: usize = 107;
/// Larger v2 headers (TLVs) are refused.
const V2_MAX: usize = 4096;

/// Why a trusted peer's connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("reading the PROXY header")]
    Io(#[from] std::io::Error),
    #[error("no PROXY header within the client header timeout")]
    Timeout,
    #[error("not a PROXY header")]
    Missing,
    #[error("PROXY header too long")]
    TooLong,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Whether a new connection from `peer` on `listener` starts with a PROXY header: the
/// listener takes them and the peer is one of `trusted_proxies`.
pub fn expected(listener: &ListenerSnapshot, snapshot: &Snapshot, peer: SocketAddr) -> bool {
    listener.proxy_protocol && client_ip::is_trusted(peer.ip(), &snapshot.trusted_proxies)
}

/// The client address of a new connection: the peer, or, when a PROXY header is
/// [`expected`], the source it names (read within `within`). `None`: the connection must be
/// closed (logged at debug).
pub async fn client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    header: bool,
    within: Duration,
) -> Option<SocketAddr> {
    if !header {
        return Some(peer);
    }
    match read_header(stream, within).await {
        Ok(source) => Some(source.unwrap_or(peer)),
        Err(e) => {
            tracing::debug!(%peer, error = %Chain(&e), "connection closed");
            None
        }
    }
}

/// Reads one PROXY header: the source address, or `None` for `LOCAL` / `UNKNOWN`.
pub async fn read_header(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<Option<SocketAddr>, HeaderError> {
    tokio::time::timeout(within, read(stream))
        .await
        .map_err(|_| HeaderError::Timeout)?
}

async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = vec![0u8; 12];
    stream.read_exact(&mut buf).await?;
    if buf[..] == V2_SIGNATURE {
        buf.resize(16, 0);
        stream.read_exact(&mut buf[12..]).await?;
        let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX {
            return Err(HeaderError::TooLong);
        }
        buf.resize(len, 0);
        stream.read_exact(&mut buf[16..]).await?;
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(HeaderError::TooLong);
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await?;
            buf.push(byte[0]);
        }
    } else {
        return Err(HeaderError::Missing);
    }
    source(&buf)
}

/// The source address of a complete header.
pub fn source(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            _ => None,
        }),
        HeaderResult::V1(Err(e)) => Err(HeaderError::Malformed(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(HeaderError::Malformed(format!("{e:?}"))),
    }
}

/// A PROXY v2 header: `client` connected to us, we connect from `local`. Mixed families are
/// written as IPv6 (an IPv4 address mapped).
pub fn header_v2(client: SocketAddr, local: SocketAddr) -> std::io::Result<Vec<u8>> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    };
    let (src, dst) = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (client, local)
        }
        _ => (v6(client), v6(local)),
    };
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst)).build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_sources() {
        assert_eq!(
            source(b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\r\n").unwrap(),
            Some("198.51.100.7:5555".parse().unwrap())
        );
        assert_eq!(source(b"PROXY UNKNOWN\r\n").unwrap(), None);
        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (
                "[2001:db8::7]:4000".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:80".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert_eq!(
            source(&v2).unwrap(),
            Some("[2001:db8::7]:4000".parse().unwrap())
        );
        assert!(source(b"PROXY TCP4 nonsense\r\n").is_err());
    }

    #[test]
    fn the_v2_header_written_names_the_client() {
        let client = "203.0.113.7:5555".parse().unwrap();
        let local = "127.0.0.1:40000".parse().unwrap();
        let header = header_v2(client, local).unwrap();
        assert_eq!(source(&header).unwrap(), Some(client));
        let mixed = header_v2(client, "[::1]:1".parse().unwrap()).unwrap();
        assert!(mixed.len() > header.len(), "written as IPv6");
        assert_eq!(
            source(&mixed).unwrap(),
            Some("[::ffff:203.0.113.7]:5555".parse().unwrap())
        );
    }
}
