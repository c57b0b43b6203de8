//! Raw TCP backends for the layer-4 proxy: an echo server that passes half-close on, and one
//! that reports the PROXY v2 header it was sent.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A running TCP backend; dropped = stopped (its accept loop is aborted).
#[derive(Debug)]
pub struct TcpBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Echoes every byte; at the client's EOF it shuts its own write side (half-close passed on).
pub async fn echo() -> TcpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(echo_one(stream));
        }
    });
    TcpBackend { addr, task }
}

async fn echo_one(mut stream: TcpStream) {
    let (mut r, mut w) = stream.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// Reads a PROXY v2 header from every connection and sends the source it names (or `None`).
pub async fn proxy_reader() -> (TcpBackend, mpsc::UnboundedReceiver<Option<SocketAddr>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                // Fixed part (16 bytes), then the address block whose length it states.
                let mut head = [0u8; 16];
                if stream.read_exact(&mut head).await.is_err() {
                    let _ = tx.send(None);
                    return;
                }
                let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
                let mut rest = vec![0u8; len];
                let _ = stream.read_exact(&mut rest).await;
                let mut header = head.to_vec();
                header.extend_from_slice(&rest);
                let _ = tx.send(proxy_source(&header));
                echo_one(stream).await;
            });
        }
    });
    (TcpBackend { addr, task }, rx)
}

/// Sends `name` and a newline on every connection, then echoes; `name` tells the test which
/// backend a connection reached.
pub async fn named(name: &'static str) -> TcpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if stream
                    .write_all(format!("{name}\n").as_bytes())
                    .await
                    .is_ok()
                {
                    echo_one(stream).await;
                }
            });
        }
    });
    TcpBackend { addr, task }
}

/// Connects to `addr` and reads the backend's name line; the stream stays open.
pub async fn connect_named(addr: SocketAddr) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut name = Vec::new();
    let mut byte = [0u8; 1];
    while s.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
        name.push(byte[0]);
    }
    (String::from_utf8(name).unwrap(), s)
}

/// The source address a PROXY v2 header names (parsed by `ppp`, as Fulcrum's reader does);
/// `None` for a malformed header or one without addresses.
fn proxy_source(header: &[u8]) -> Option<SocketAddr> {
    match ppp::v2::Header::try_from(header).ok()?.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    }
}
