//! Listening sockets: one SO_REUSEPORT socket per listener per worker, and the accept loop.
//!
//! All sockets of a listener are bound before any worker starts, so a bind error stops the
//! start cleanly and a `:0` bind resolves to one port shared by every worker. The kernel
//! spreads new connections over the workers' sockets. `max_connections` is one shared
//! counter per listener; a connection over the limit is closed at once (counted in the log).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::{self, ConnContext, FramingFlags};
use crate::proxy_protocol;
use crate::server::Shared;

/// Pending connections the kernel queues per socket.
const BACKLOG: i32 = 4096;

/// A bound `[[listener]]`: its resolved address and one socket per worker.
#[derive(Debug)]
pub struct BoundListener {
    pub name: String,
    pub addr: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
    /// Open connections across all workers, for `max_connections`.
    pub active: Arc<AtomicUsize>,
}

/// Binds `count` sockets to `bind` with SO_REUSEPORT (the first resolves a `:0` port).
pub fn bind(name: &str, bind: SocketAddr, count: usize) -> io::Result<BoundListener> {
    let first = bind_one(bind)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_one(addr)?);
    }
    Ok(BoundListener {
        name: name.to_string(),
        addr,
        sockets,
        active: Arc::new(AtomicUsize::new(0)),
    })
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Decrements the listener's open-connection count when the connection ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts on one socket until `shutdown` fires; each connection is served by its own task.
pub async fn accept_loop(
    socket: std::net::TcpListener,
    index: usize,
    active: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listener socket");
            return;
        }
    };
    let builder = Arc::new(http::builder(shared.client_header_timeout));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            stop = shutdown.wait_for(|stop| *stop) => {
                drop(stop);
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let limit = shared.snapshot.load().listeners[index].max_connections;
        if active.fetch_add(1, Ordering::Relaxed) >= limit {
            active.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, limit, "max_connections reached: connection closed");
            drop(stream);
            continue;
        }
        let guard = ActiveGuard(Arc::clone(&active));
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // `proxy_protocol = true`: a trusted peer's PROXY header names the client.
            let Some(peer) = proxy_protocol::client(&mut stream, peer, index, &shared).await else {
                return;
            };
            let cx = Arc::new(ConnContext {
                shared,
                listener: index,
                peer,
                proto: "http",
                framing: Arc::new(FramingFlags::new()),
                requests: AtomicU32::new(0),
            });
            http::serve(&builder, stream, cx, shutdown).await;
            drop(guard);
        });
    }
}
