//! Listening sockets: one SO_REUSEPORT socket per listener per worker, and the accept loop.
//!
//! All sockets of a listener are bound before any worker starts, so a bind error stops the
//! start cleanly and a `:0` bind resolves to one port shared by every worker. The kernel
//! spreads new connections over the workers' sockets. `max_connections` is one shared
//! counter per listener; a connection over the limit is closed at once (counted in the log).
//!
//! A reload adds listeners by binding new sockets and handing them to the running workers, and
//! removes one by setting its `retired` flag: its accept loops stop (closing only that
//! listener's sockets) and its connections finish their in-flight request, then close. Sockets
//! of listeners a reload keeps are never touched.
//!
//! The loop serves both protocols: each accepted connection goes to `http` or `tcp` by its
//! listener's `protocol` in the current snapshot.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Protocol as ListenerProtocol;
use crate::http::{self, ConnContext, FramingFlags};
use crate::proxy_protocol;
use crate::snapshot::Live;
use crate::tcp;
use crate::worker::WorkerSocket;

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
/// A listener could not be bound (start or reload).
#[derive(Debug, thiserror::Error)]
#[error("listener \"{listener}\": cannot bind {addr}: {source}")]
pub struct BindError {
    pub listener: String,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

pub fn bind(name: &str, bind: SocketAddr, count: usize) -> Result<BoundListener, BindError> {
    bind_all(name, bind, count).map_err(|source| BindError {
        listener: name.to_string(),
        addr: bind,
        source,
    })
}

fn bind_all(name: &str, bind: SocketAddr, count: usize) -> io::Result<BoundListener> {
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

/// Decrements the listener's and the process's open-connection counts when the connection ends.
struct ActiveGuard {
    listener: Arc<AtomicUsize>,
    shared: Arc<Live>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::Relaxed);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts on one socket until `shutdown` fires or the listener is retired by a reload; each
/// connection is served by its own task, and is told to finish and close when the loop ends.
pub async fn accept_loop(
    socket: WorkerSocket,
    shared: Arc<Live>,
    mut shutdown: watch::Receiver<bool>,
) {
    let WorkerSocket {
        slot,
        socket,
        active,
        mut retired,
    } = socket;
    // Connections of this socket stop when the loop stops, whichever the reason.
    let (conn_stop, conn_stop_rx) = watch::channel(false);
    accept(
        socket,
        slot,
        active,
        shared,
        &mut shutdown,
        &mut retired,
        conn_stop_rx,
    )
    .await;
    conn_stop.send_replace(true);
}

async fn accept(
    socket: std::net::TcpListener,
    index: usize,
    active: Arc<AtomicUsize>,
    shared: Arc<Live>,
    shutdown: &mut watch::Receiver<bool>,
    retired: &mut watch::Receiver<bool>,
    conn_stop: watch::Receiver<bool>,
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
            gone = retired.wait_for(|gone| *gone) => {
                drop(gone);
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
        let (limit, protocol) = shared
            .snapshot
            .load()
            .listener(index)
            .map_or((usize::MAX, ListenerProtocol::Http), |l| {
                (l.max_connections, l.protocol)
            });
        if active.fetch_add(1, Ordering::Relaxed) >= limit {
            active.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, limit, "max_connections reached: connection closed");
            drop(stream);
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard {
            listener: Arc::clone(&active),
            shared: Arc::clone(&shared),
        };
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&builder);
        let shutdown = conn_stop.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // `proxy_protocol = true`: a trusted peer's PROXY header names the client.
            let Some(peer) = proxy_protocol::client(&mut stream, peer, index, &shared).await else {
                return;
            };
            if protocol == ListenerProtocol::Tcp {
                // Bytes both ways until either side is done; a retired listener's tcp
                // connections run to their end (or shutdown_grace).
                tcp::serve(stream, peer, index, shared).await;
                drop(guard);
                return;
            }
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
