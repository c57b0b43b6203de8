//! `protocol = "tcp"` listeners: one client connection, one backend connection, bytes both ways.
//!
//! The accept loop hands the connection here; the backend is chosen by the same `select::pick` as HTTP (regions, backup pools,
//! fail-open, every balancer; `consistent_hash` hashes the client IP, validated), connected
//! within `connect_timeout`, and on failure another backend is tried, up to `retries` more.
//! The backend's in-flight guard is held for the connection's life, so `least_conn` balances
//! open connections. Under the pool's `max_connections` the connection also holds one of the
//! backend's slots (`BackendState::take_slot`) for its life: a client that finds the backend
//! full waits in its bounded queue up to `queue_timeout`, then tries the next backend, and is
//! closed when none has room.
//!
//! Forwarding (`crate::splice`) runs both directions in this one task. A client's FIN becomes
//! a shutdown of the backend's write side (and the other way round) while the other direction
//! keeps flowing; the connection ends when both directions are done or either fails. A
//! watchdog closes it after `idle_timeout` without a byte either way, and, for a pool with
//! `on_down = "close"`, once its backend is down for that pool (checked on the same tick, a
//! plain atomic load: clients reconnect and reach a backend that is up, e.g. a new primary).
//!
//! `[[listener.route]] sni = "..."` (TLS passthrough): before picking, the ClientHello is
//! peeked (`crate::sni`, not consumed, within `client_header_timeout`) and its server name
//! picks the pool; a first record that names no server (or is no ClientHello) goes to the
//! listener's own pool, and a client that sends no complete first record in time is closed.
//!
//! `send_proxy = true` starts the backend connection with a PROXY v2 header naming the client
//! (as resolved by the listener's own `proxy_protocol`) and the address it connected to.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backend::{BackendState, Busy, InflightGuard, UpstreamSlot};
use crate::balance::{ip_hash, Affinity, Balancer};
use crate::chain::Chain;
use crate::clock;
use crate::config::{ListenerSlot, OnDown, PoolId};
use crate::health::passive;
use crate::metrics::TcpBytes;
use crate::proxy_protocol;
use crate::select::{self, Tried};
use crate::snapshot::Live;
use crate::snapshot::Snapshot;
use crate::sni::{self, Hello, PeekError};
use crate::splice::{self, Flow, Forwarding};

/// Why a forwarded connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("listener removed")]
    NoListener,
    #[error("no backend available")]
    NoBackend,
    #[error("connect to {0} failed")]
    Connect(SocketAddr, #[source] io::Error),
    #[error("backend {0} at max_connections")]
    Busy(SocketAddr, #[source] Busy),
    #[error("connect to {0} timed out after {1:?}")]
    ConnectTimeout(SocketAddr, Duration),
    #[error("ClientHello")]
    Hello(#[source] PeekError),
    #[error("PROXY header")]
    ProxyHeader(#[source] io::Error),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("backend {0} went down (on_down = \"close\")")]
    BackendDown(SocketAddr),
    #[error("i/o")]
    Io(#[source] io::Error),
}

/// A connected backend and what the connection needs of its pool.
struct Upstream {
    stream: TcpStream,
    addr: SocketAddr,
    state: Arc<BackendState>,
    _inflight: InflightGuard,
    /// Counts this connection toward the backend's `max_connections` until it closes.
    _slot: UpstreamSlot,
    idle_timeout: Duration,
    on_down: OnDown,
}

/// Serves one accepted connection of tcp listener `slot`; `peer` is the client (after the
/// listener's PROXY header, if any).
pub async fn serve(client: TcpStream, peer: SocketAddr, slot: ListenerSlot, shared: Arc<Live>) {
    // One snapshot load per connection, held only until the backend is connected: a
    // long-lived connection must not keep old snapshots alive across reloads.
    let (bytes, connected) = {
        let snapshot = shared.snapshot.load_full();
        let Some(listener) = snapshot.listener(slot) else {
            return;
        };
        let bytes = Arc::clone(&listener.bytes);
        // TLS passthrough: the ClientHello's name picks the pool (bounded wait, see `sni`).
        let pool = if listener.routes.has_sni() {
            match sni::peek(&client, shared.client_header_timeout).await {
                Ok(Hello::Named(name)) => Ok(listener.routes.pick_sni(Some(&name))),
                Ok(Hello::Unnamed) => Ok(listener.routes.pick_sni(None)),
                Err(e) => Err(TcpError::Hello(e)),
            }
        } else {
            Ok(listener.routes.default_pool())
        };
        let connected = match pool {
            Ok(pool) => connect(peer, slot, pool, &snapshot).await,
            Err(e) => Err(e),
        };
        (bytes, connected)
    };
    let result = match connected {
        Ok(upstream) => proxy(client, upstream, &bytes, shared.tcp_forwarding).await,
        Err(e) => Err(e),
    };
    report(peer, result);
}

/// Serves one connection of a tcp listener with `[listener.tls]`: the handshake is done, the
/// backend gets the plaintext. Bytes are copied (splice needs a socket on both ends).
pub async fn serve_tls(
    client: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    slot: ListenerSlot,
    shared: Arc<Live>,
) {
    let (bytes, connected) = {
        let snapshot = shared.snapshot.load_full();
        let Some(listener) = snapshot.listener(slot) else {
            return;
        };
        let bytes = Arc::clone(&listener.bytes);
        // `sni` routes are for passthrough only (`check`): a terminating listener has one pool.
        let pool = listener.routes.default_pool();
        let connected = connect(peer, slot, pool, &snapshot).await;
        (bytes, connected)
    };
    let result = match connected {
        Ok(upstream) => proxy_stream(client, upstream, &bytes).await,
        Err(e) => Err(e),
    };
    report(peer, result);
}

/// [`forward`] for a client stream that is not a plain socket (TLS): the userspace copy, and
/// a shutdown of the write side (TLS: close_notify) for each direction's EOF.
async fn proxy_stream<S>(
    client: S,
    mut upstream: Connected,
    bytes: &TcpBytes,
) -> Result<(), TcpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Some(header) = upstream.proxy_header.take() {
        upstream
            .up
            .stream
            .write_all(&header)
            .await
            .map_err(TcpError::ProxyHeader)?;
    }
    let mut up = upstream.up;
    let last_active = AtomicU64::new(clock::now_ms());
    let to_backend = Flow {
        bytes: &bytes.upstream,
        last_active: &last_active,
    };
    let to_client = Flow {
        bytes: &bytes.downstream,
        last_active: &last_active,
    };
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let watch = Watched::of(&up);
    let (mut back_r, mut back_w) = up.stream.split();
    let outbound = async {
        splice::copy_io(&mut client_r, &mut back_w, &to_backend).await?;
        back_w.shutdown().await
    };
    let inbound = async {
        splice::copy_io(&mut back_r, &mut client_w, &to_client).await?;
        client_w.shutdown().await
    };
    let both = async { tokio::try_join!(outbound, inbound).map(|_| ()) };
    tokio::select! {
        r = both => r.map_err(TcpError::Io),
        e = watchdog(&watch, &last_active) => Err(e),
    }
}

fn report(peer: SocketAddr, result: Result<(), TcpError>) {
    match result {
        Ok(()) => {}
        Err(
            e @ (TcpError::NoBackend
            | TcpError::Busy(..)
            | TcpError::Connect(..)
            | TcpError::ConnectTimeout(..)),
        ) => {
            tracing::warn!(%peer, error = %Chain(&e), "tcp connection refused")
        }
        Err(e) => tracing::debug!(%peer, error = %Chain(&e), "tcp connection closed"),
    }
}

async fn proxy(
    client: TcpStream,
    mut upstream: Connected,
    bytes: &TcpBytes,
    mode: Forwarding,
) -> Result<(), TcpError> {
    if let Some(header) = upstream.proxy_header.take() {
        upstream
            .up
            .stream
            .write_all(&header)
            .await
            .map_err(TcpError::ProxyHeader)?;
    }
    forward(&client, upstream.up, bytes, mode).await
}

struct Connected {
    up: Upstream,
    proxy_header: Option<Vec<u8>>,
}

/// Picks and connects a backend of pool `first` (or its backups), trying others after a
/// failure (up to the pool's `retries`).
async fn connect(
    peer: SocketAddr,
    slot: ListenerSlot,
    first: PoolId,
    snapshot: &Snapshot,
) -> Result<Connected, TcpError> {
    snapshot.listener(slot).ok_or(TcpError::NoListener)?;
    let pool = snapshot.pool(first);
    let affinity = match &pool.balancer {
        Balancer::ConsistentHash(_) => Affinity::Hash(ip_hash(peer.ip())),
        _ => Affinity::None,
    };
    let region = snapshot.regions.lookup(peer.ip());
    let mut tried = Tried::default();
    let mut error = TcpError::NoBackend;
    for _ in 0..=pool.retries {
        let now = clock::now_ms();
        let client = region.map(|id| (&snapshot.regions, id));
        let Some(choice) = select::pick(&snapshot.pools, first, affinity, &tried, now, client)
        else {
            break;
        };
        tried.add(choice);
        let (target, i) = (snapshot.pool(choice.pool), choice.backend);
        let backend = target.backend(i);
        let inflight = backend.state.acquire();
        // At the cap: wait for a slot; none in time is no failure of the backend's.
        let slot = match backend.state.take_slot(target.upstream).await {
            Ok(slot) => slot,
            Err(busy) => {
                tracing::debug!(pool = %target.name, backend = %backend.label, error = %busy, "tcp backend busy");
                error = TcpError::Busy(backend.addr, busy);
                continue;
            }
        };
        let attempt =
            tokio::time::timeout(target.connect_timeout, TcpStream::connect(backend.addr));
        match attempt.await {
            Ok(Ok(stream)) => {
                passive::success(backend, now);
                backend.state.count_connection();
                let _ = stream.set_nodelay(true);
                let proxy_header = if target.send_proxy {
                    let local = stream.local_addr().map_err(TcpError::Io)?;
                    Some(proxy_protocol::header_v2(peer, local).map_err(TcpError::ProxyHeader)?)
                } else {
                    None
                };
                return Ok(Connected {
                    up: Upstream {
                        stream,
                        addr: backend.addr,
                        state: Arc::clone(&backend.state),
                        _inflight: inflight,
                        _slot: slot,
                        idle_timeout: target.idle_timeout,
                        on_down: target.on_down,
                    },
                    proxy_header,
                });
            }
            Ok(Err(e)) => {
                let _ = passive::failure(target, i, clock::now_ms(), &e);
                tracing::debug!(pool = %target.name, backend = %backend.label, error = %e, "tcp connect failed");
                error = TcpError::Connect(backend.addr, e);
            }
            Err(_) => {
                let what = "connect timed out";
                let _ = passive::failure(target, i, clock::now_ms(), &what);
                error = TcpError::ConnectTimeout(backend.addr, target.connect_timeout);
            }
        }
    }
    Err(error)
}

/// Forwards both ways until both directions reach EOF, either fails, the connection is idle
/// for `idle_timeout`, or (with `on_down = "close"`) the backend goes down.
async fn forward(
    client: &TcpStream,
    up: Upstream,
    bytes: &TcpBytes,
    mode: Forwarding,
) -> Result<(), TcpError> {
    let backend = &up.stream;
    let last_active = AtomicU64::new(clock::now_ms());
    let to_backend = Flow {
        bytes: &bytes.upstream,
        last_active: &last_active,
    };
    let to_client = Flow {
        bytes: &bytes.downstream,
        last_active: &last_active,
    };
    let outbound = async {
        splice::pump(client, backend, &to_backend, mode).await?;
        half_close(backend)
    };
    let inbound = async {
        splice::pump(backend, client, &to_client, mode).await?;
        half_close(client)
    };
    let both = async { tokio::try_join!(outbound, inbound).map(|_| ()) };
    let watch = Watched::of(&up);
    tokio::select! {
        r = both => r.map_err(TcpError::Io),
        e = watchdog(&watch, &last_active) => Err(e),
    }
}

/// What the watchdog looks at of a connection's backend.
struct Watched {
    addr: SocketAddr,
    state: Arc<BackendState>,
    idle_timeout: Duration,
    on_down: OnDown,
}

impl Watched {
    fn of(up: &Upstream) -> Watched {
        Watched {
            addr: up.addr,
            state: Arc::clone(&up.state),
            idle_timeout: up.idle_timeout,
            on_down: up.on_down,
        }
    }
}

/// Passes an EOF on: no more bytes will be written to `stream`.
fn half_close(stream: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write) {
        // The peer is gone already: nothing left to tell it.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

/// Ends with the reason once the connection has been silent for `idle_timeout`, or its backend
/// is down under `on_down = "close"`. Ticks at a quarter of the idle timeout, at most 1 s.
async fn watchdog(up: &Watched, last_active: &AtomicU64) -> TcpError {
    let idle_ms = u64::try_from(up.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let tick = (up.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if up.on_down == OnDown::Close && !up.state.is_healthy() {
            return TcpError::BackendDown(up.addr);
        }
        let silent = clock::now_ms().saturating_sub(last_active.load(Ordering::Relaxed));
        if silent >= idle_ms {
            return TcpError::Idle(up.idle_timeout);
        }
    }
}
