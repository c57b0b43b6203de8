//! Listening sockets: one SO_REUSEPORT socket per listener per worker, and the accept loop.
//!
//! All sockets of a listener are bound before any worker starts, so a bind error stops the
//! start cleanly and a `:0` bind resolves to one port shared by every worker. The kernel
//! spreads new connections over the workers' sockets. `max_connections` is one shared
//! counter per listener; a connection over the limit is closed at once (logged at most once a
//! second, counted in `fulcrum_connections_refused_total{reason="max_connections"}`).
//!
//! [`Sockets`] is the one registry of listening sockets: at start and at every reload it binds
//! a listener's sockets and deals them to the workers over their channels, and it retires a
//! listener a reload removed by setting its `retired` flag: its accept loops stop (closing only
//! that listener's sockets) and its connections finish their in-flight request, then close.
//! Sockets of listeners a reload keeps are never touched.
//!
//! `[listener.limits] connections_per_client` is checked once the client is known (after a
//! PROXY header, if any): a client over its share is closed before anything is served.
//!
//! The loop serves both protocols: each accepted connection goes to `http` or `tcp` by its
//! listener's `protocol` in the current snapshot.
//!
//! # Descriptors
//! Client connections must never take the descriptors the data plane needs to connect
//! upstream: with 20,000 clients and a limit of 20,000, 17,875 requests got 502 ("Too many
//! open files" on connect). At start the soft `RLIMIT_NOFILE` is raised to the hard one (as Go
//! and HAProxy do) and [`descriptor_budget`] keeps [`descriptor_reserve`] of it back for
//! everything else (listening sockets, health checks, DNS, files, the admin server, pooled
//! idle and h2 upstream connections). Each accepted connection is charged what it holds
//! ([`descriptor_cost`]: itself and its upstream connection, like nginx's
//! `worker_connections`; two splice pipes more for tcp); one that would overdraw the budget
//! is closed at accept, logged (at most once a second) and counted in
//! `fulcrum_connections_refused_total{reason="descriptors"}`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::config::{ListenerSlot, Protocol as ListenerProtocol};
use crate::http::{self, Activity, ConnContext, Held};
use crate::http1;
use crate::limits::{ClientConnection, OverLimit};
use crate::metrics;
use crate::proxy_protocol;
use crate::snapshot::{Live, OpenGuard};
use crate::splice::Forwarding;
use crate::tcp;

mod inherit;
pub use inherit::InheritedListener;

/// Pending connections the kernel queues per socket.
const BACKLOG: i32 = 4096;

/// One socket of one listener, handed to a worker.
#[derive(Debug)]
pub struct WorkerSocket {
    /// The listener's slot in the snapshot (`Snapshot::listener`).
    pub slot: ListenerSlot,
    pub socket: std::net::TcpListener,
    pub active: Arc<AtomicUsize>,
    /// Set when a reload removes the listener: stop accepting, drain.
    pub retired: watch::Receiver<bool>,
}

/// Where a worker receives its sockets, at start and whenever a reload adds a listener.
pub type SocketReceiver = mpsc::UnboundedReceiver<WorkerSocket>;

/// A bound `[[listener]]`: its resolved address and one socket per worker.
#[derive(Debug)]
pub struct BoundListener {
    pub name: String,
    pub addr: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
    /// Open connections across all workers, for `max_connections`.
    pub active: Arc<AtomicUsize>,
}

/// A listener whose sockets the workers hold.
#[derive(Debug)]
struct LiveListener {
    slot: ListenerSlot,
    name: String,
    /// Where it actually listens (the real port for a `:0` bind).
    addr: SocketAddr,
    /// `true` stops its accept loops; its connections drain.
    retire: watch::Sender<bool>,
    /// Its open connections (kept by the accept loops), for the admin API and metrics.
    active: Arc<AtomicUsize>,
    /// A duplicate of every socket the workers hold (same kernel socket): what a binary
    /// upgrade hands to the new process. Closed with the listener.
    handover: Vec<std::net::TcpListener>,
}

/// Every listening socket of the process, and the workers' channels they are dealt over.
///
/// Why one registry: start and reload (and, later, a binary upgrade) must hand sockets to
/// workers the same way, worker `w` taking socket `w` of every listener; two copies of that
/// dealing drift apart.
#[derive(Debug)]
pub struct Sockets {
    workers: Vec<mpsc::UnboundedSender<WorkerSocket>>,
    live: Vec<LiveListener>,
    /// Handed over by the old process and not yet taken by a listener (upgrade only).
    inherited: Vec<InheritedListener>,
}

impl Sockets {
    /// A registry for `workers` workers (one socket of every listener each), and the
    /// receiving end of each worker's channel.
    pub fn new(workers: usize) -> (Sockets, Vec<SocketReceiver>) {
        let (senders, receivers) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let sockets = Sockets {
            workers: senders,
            live: Vec::new(),
            inherited: Vec::new(),
        };
        (sockets, receivers)
    }

    /// Binds the sockets of one listener; nothing is handed out yet. Refused when another
    /// process (another Fulcrum started twice) already listens there, unless it is one of our
    /// own live listeners (a reload that renames a listener keeps its address).
    /// A listener with an inherited socket for its address (or its name, for a `:0` bind on
    /// the same IP) takes those sockets instead (binary upgrade).
    pub fn bind(&mut self, name: &str, addr: SocketAddr) -> Result<BoundListener, BindError> {
        if let Some(bound) = self.take_inherited(name, addr) {
            return Ok(bound);
        }
        let ours = self.live.iter().any(|l| l.addr == addr);
        if !ours {
            check_exclusive(addr).map_err(|source| BindError {
                listener: name.to_string(),
                addr,
                source,
            })?;
        }
        bind(name, addr, self.workers.len())
    }

    /// Whether the listener in `slot` has its sockets with the workers.
    pub fn is_live(&self, slot: ListenerSlot) -> bool {
        self.live.iter().any(|l| l.slot == slot)
    }

    /// Deals a bound listener's sockets to the workers (socket `i` to worker `i`); from now on
    /// it accepts as listener `slot` of the snapshot.
    pub fn deal(&mut self, slot: ListenerSlot, bound: BoundListener) {
        let (retire, retired) = watch::channel(false);
        let handover = bound
            .sockets
            .iter()
            .filter_map(|s| {
                s.try_clone()
                    .inspect_err(|e| tracing::warn!(listener = %bound.name, error = %e, "cannot keep a socket for a binary upgrade"))
                    .ok()
            })
            .collect();
        let workers = self.workers.len().max(1);
        // Inherited sockets may outnumber the workers: some take two.
        for (w, socket) in bound.sockets.into_iter().enumerate() {
            let sent = self.workers.get(w % workers).map(|tx| {
                tx.send(WorkerSocket {
                    slot,
                    socket,
                    active: Arc::clone(&bound.active),
                    retired: retired.clone(),
                })
            });
            if !matches!(sent, Some(Ok(()))) {
                tracing::warn!(listener = %bound.name, worker = w, "worker gone: socket not handed over");
            }
        }
        self.live.push(LiveListener {
            slot,
            name: bound.name,
            addr: bound.addr,
            retire,
            active: bound.active,
            handover,
        });
    }

    /// Retires every listener whose slot `keep` rejects: its accept loops stop, its
    /// connections drain.
    pub fn retire_unless(&mut self, keep: impl Fn(ListenerSlot) -> bool) {
        self.live.retain(|l| {
            let kept = keep(l.slot);
            if !kept {
                l.retire.send_replace(true);
                tracing::info!(listener = %l.name, addr = %l.addr, "listener removed: draining");
            }
            kept
        });
    }

    /// Where listener `name` listens.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.live.iter().find(|l| l.name == name).map(|l| l.addr)
    }

    /// Every live listener: name, bound address, open connections.
    pub fn listeners(&self) -> Vec<(String, SocketAddr, usize)> {
        self.live
            .iter()
            .map(|l| (l.name.clone(), l.addr, l.active.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A listener could not be bound (start or reload).
#[derive(Debug, thiserror::Error)]
#[error("listener \"{listener}\": cannot bind {addr}")]
pub struct BindError {
    pub listener: String,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Binds `count` sockets to `bind` with SO_REUSEPORT (the first resolves a `:0` port).
fn bind(name: &str, bind: SocketAddr, count: usize) -> Result<BoundListener, BindError> {
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

/// Fails when another socket already listens on `addr`. SO_REUSEPORT would let a second
/// process bind the same address and silently take half of its connections; a probe bound
/// without it conflicts with any listening socket there (SO_REUSEADDR only skips
/// connections lingering in TIME_WAIT). Port 0 is always a fresh port.
fn check_exclusive(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(false)?;
    }
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process already listens there (two would split its connections)",
        )),
        other => other,
    }
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

/// Descriptors kept back from client connections for a process limit of `limit`: a tenth,
/// and at least 1,024 (a quarter of a small limit).
pub fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 10).max(1024.min(limit / 4))
}

/// What the client connections may be charged under a process limit of `limit` descriptors.
pub fn descriptor_budget(limit: u64) -> usize {
    usize::try_from(limit - descriptor_reserve(limit)).unwrap_or(usize::MAX)
}

/// Descriptors one client connection is charged: its own and the upstream connection it leads
/// to; a tcp connection that splices holds a pipe (two descriptors) per direction as well.
pub fn descriptor_cost(protocol: ListenerProtocol, forwarding: Forwarding) -> usize {
    match protocol {
        ListenerProtocol::Tcp if cfg!(target_os = "linux") && forwarding == Forwarding::Splice => 6,
        ListenerProtocol::Http | ListenerProtocol::Tcp => 2,
    }
}

/// At start: raises the soft `RLIMIT_NOFILE` to the hard limit and returns the client
/// connections' [`descriptor_budget`] under it (`usize::MAX` where no limit is known).
pub fn descriptor_budget_at_start() -> usize {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
            if soft < hard {
                let raised = rustix::process::Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => tracing::info!(
                        from = soft,
                        to = hard,
                        "raised the descriptor limit (RLIMIT_NOFILE) to its hard limit"
                    ),
                    Err(e) => {
                        tracing::warn!(soft, hard, error = %e, "cannot raise the descriptor limit")
                    }
                }
            }
        }
        match getrlimit(Resource::Nofile).current {
            Some(limit) => {
                let budget = descriptor_budget(limit);
                tracing::debug!(limit, budget, "descriptor budget for client connections");
                budget
            }
            None => usize::MAX,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        usize::MAX
    }
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    MaxConnections,
    Descriptors,
}

/// When each refusal was last logged (`clock::now_ms()`): at most one line a second each.
static REFUSAL_LOGGED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// A connection closed at accept: counted, and logged at most once a second per reason.
#[cold]
fn refused(shared: &Live, slot: ListenerSlot, why: Refusal, peer: SocketAddr, limit: usize) {
    let snapshot = shared.snapshot.load();
    let name = snapshot.listener(slot).map_or("-", |l| &*l.name);
    let reason = match why {
        Refusal::MaxConnections => "max_connections",
        Refusal::Descriptors => "descriptors",
    };
    if shared.metrics {
        metrics::get()
            .connections_refused
            .with_label_values(&[name, reason])
            .inc();
    }
    let now = clock::now_ms();
    let logged = &REFUSAL_LOGGED[why as usize];
    let last = logged.load(Ordering::Relaxed);
    if (last != 0 && now.saturating_sub(last) < 1000)
        || logged
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    match why {
        Refusal::MaxConnections => {
            tracing::warn!(listener = name, %peer, limit, "max_connections reached: connection closed (logged once a second; fulcrum_connections_refused_total counts them)");
        }
        Refusal::Descriptors => {
            tracing::warn!(listener = name, %peer, budget = limit, "descriptor budget reached (RLIMIT_NOFILE less the reserve for upstream connections): connection closed (logged once a second; fulcrum_connections_refused_total counts them)");
        }
    }
}

/// A new connection of `client` under its listener's `connections_per_client` (the client
/// being the peer, or the source a trusted PROXY header named): `Err` when it already has
/// its share open, and the caller closes this one.
fn admit_client(
    shared: &Live,
    slot: ListenerSlot,
    client: SocketAddr,
) -> Result<Option<ClientConnection>, OverLimit> {
    let snapshot = shared.snapshot.load();
    let Some(listener) = snapshot.listener(slot) else {
        return Ok(None);
    };
    listener.limits.admit(client.ip()).inspect_err(|_| {
        tracing::debug!(%client, listener = %listener.name, "connections_per_client reached: connection closed");
    })
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
    index: ListenerSlot,
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
    let builder = Arc::new(http::builder());
    // Its idle HTTP/1 connections, off their tasks (`http1::park`).
    let parking = http1::park::start(conn_stop.clone());
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
        // The connection's one look at the listener before it is served.
        // Its TLS config too: the handshake runs with the certificates of this snapshot.
        let (limit, protocol, proxy_header, tls) = {
            let snapshot = shared.snapshot.load();
            snapshot.listener(index).map_or(
                (usize::MAX, ListenerProtocol::Http, false, None),
                |l| {
                    let header = proxy_protocol::expected(l, &snapshot, peer);
                    let tls = l.tls.clone();
                    (l.max_connections, l.protocol, header, tls)
                },
            )
        };
        if active.fetch_add(1, Ordering::Relaxed) >= limit {
            active.fetch_sub(1, Ordering::Relaxed);
            drop(stream);
            refused(&shared, index, Refusal::MaxConnections, peer, limit);
            continue;
        }
        let cost = descriptor_cost(protocol, shared.tcp_forwarding);
        let budget = shared.descriptor_budget;
        if shared.descriptors.fetch_add(cost, Ordering::Relaxed) + cost > budget {
            shared.descriptors.fetch_sub(cost, Ordering::Relaxed);
            active.fetch_sub(1, Ordering::Relaxed);
            drop(stream);
            refused(&shared, index, Refusal::Descriptors, peer, budget);
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenGuard::new(Arc::clone(&active), Arc::clone(&shared), cost);
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&builder);
        let parking = parking.clone();
        let shutdown = conn_stop.clone();
        // The client's header timeout runs from here (a PROXY header counts against it).
        let accepted = clock::now_ms();
        tokio::spawn(async move {
            let mut stream = stream;
            // `proxy_protocol = true`: a trusted peer's PROXY header names the client.
            let within = shared.client_header_timeout;
            let Some(peer) = proxy_protocol::client(&mut stream, peer, proxy_header, within).await
            else {
                return;
            };
            // `connections_per_client`: counted while the connection lives (`held`).
            let Ok(per_client) = admit_client(&shared, index, peer) else {
                return;
            };
            let held = Held { open, per_client };
            if let Some(tls) = tls {
                let conn = Conn {
                    shared,
                    index,
                    peer,
                    accepted,
                    held,
                };
                // Boxed: inline, the handshake's and hyper's futures would size every plain
                // connection's task too (idle keep-alive connections included).
                let serve = (protocol, &*builder);
                Box::pin(serve_tls(stream, tls, serve, conn, shutdown)).await;
                return;
            }
            if protocol == ListenerProtocol::Tcp {
                // Bytes both ways until either side is done; a retired listener's tcp
                // connections run to their end (or shutdown_grace).
                // Boxed: inline, the tcp proxy's future would size every HTTP connection's
                // task too (idle keep-alive connections included).
                Box::pin(tcp::serve(stream, peer, index, shared)).await;
                drop(held);
                return;
            }
            let cx = Arc::new(ConnContext {
                shared,
                listener: index,
                peer,
                proto: "http",
                client_cert: None,
                held: Some(held),
            });
            http::tune(&stream);
            // h2c (prior knowledge) is hyper's, boxed: inline, hyper's connection future
            // would size every HTTP/1 connection's task too.
            match http1::speaks_h2(&stream, cx.shared.client_header_timeout).await {
                Some(false) => http1::serve(stream, cx, shutdown, Some(parking)).await,
                Some(true) => {
                    // Its requests in flight and bodies streaming, for its deadlines
                    // (`watchdog`); the engine keeps an HTTP/1 connection's itself.
                    let activity = Arc::new(Activity::new(accepted));
                    let serve = http::serve_io(&builder, stream, cx, activity, shutdown);
                    Box::pin(serve).await;
                }
                None => {}
            }
        });
    }
}

/// An accepted connection, admitted, as its protocol's serve path needs it.
struct Conn {
    shared: Arc<Live>,
    index: ListenerSlot,
    /// The client (after a PROXY header, if any).
    peer: SocketAddr,
    /// `clock::now_ms()` at accept: the header timeout counts from here.
    accepted: u64,
    /// Its counts, released with its context (or its task, on a tcp listener).
    held: Held,
}

/// A TLS listener's connection: the handshake (within what is left of
/// `client_header_timeout`, in the connection's own task), then HTTPS through the same serve
/// path as plaintext (hyper picks h2 or HTTP/1.1 as ALPN said), or, on a tcp listener, the
/// plaintext forwarded to the backend.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    tls: Arc<crate::snapshot::ListenerTls>,
    (protocol, builder): (
        ListenerProtocol,
        &hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    ),
    conn: Conn,
    shutdown: watch::Receiver<bool>,
) {
    let Conn {
        shared,
        index,
        peer,
        accepted,
        held,
    } = conn;
    http::tune(&stream);
    let spent = std::time::Duration::from_millis(clock::now_ms().saturating_sub(accepted));
    let within = shared.client_header_timeout.saturating_sub(spent);
    let config = Arc::clone(&tls.server.config);
    let count = |c: &Option<prometheus::IntCounter>| {
        if let Some(c) = c {
            c.inc();
        }
    };
    let stream = match crate::tls::server::accept(config, stream, within).await {
        Ok(stream) => {
            count(&tls.handshakes.ok);
            stream
        }
        Err(e) => {
            let c = match e {
                crate::tls::Handshake::Timeout => &tls.handshakes.timeout,
                crate::tls::Handshake::Failed(_) => &tls.handshakes.error,
            };
            count(c);
            tracing::debug!(%peer, error = %crate::chain::Chain(&e), "TLS handshake failed");
            return;
        }
    };
    if protocol == ListenerProtocol::Tcp {
        tcp::serve_tls(stream, peer, index, shared).await;
        drop(held);
        return;
    }
    let client_cert = (tls.server.client_auth != crate::config::ClientAuth::Off)
        .then(|| crate::tls::PeerCert::of(stream.get_ref().1.peer_certificates()).map(Box::new));
    drop(tls);
    let cx = Arc::new(ConnContext {
        shared,
        listener: index,
        peer,
        proto: "https",
        client_cert,
        held: Some(held),
    });
    // ALPN h2 is hyper's; HTTP/1.1 (or no ALPN) is the engine's.
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if !h2 {
        http1::serve(stream, cx, shutdown, None).await;
    } else {
        let activity = Arc::new(Activity::new(accepted));
        http::serve_io(builder, stream, cx, activity, shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{descriptor_budget, descriptor_cost, descriptor_reserve};
    use crate::config::Protocol;
    use crate::splice::Forwarding;

    #[test]
    fn a_tenth_of_the_descriptors_and_at_least_1024_are_kept_for_upstream() {
        // systemd's LimitNOFILE of the packaged unit, a raised shell limit, the report's
        // 20,000, the common default soft limit, and absurdly small ones.
        assert_eq!(descriptor_reserve(1_048_576), 104_857);
        assert_eq!(descriptor_reserve(65_536), 6_553);
        assert_eq!(descriptor_reserve(20_000), 2_000);
        assert_eq!(descriptor_reserve(8_192), 1_024);
        assert_eq!(descriptor_reserve(1_024), 256);
        assert_eq!(descriptor_reserve(16), 4);
        assert_eq!(descriptor_reserve(0), 0);
        assert_eq!(descriptor_budget(20_000), 18_000);
        assert_eq!(descriptor_budget(1_024), 768);
    }

    /// Under the report's limit of 20,000, 20,000 HTTP clients no longer fit: 9,000 are
    /// accepted, each with a descriptor left for its upstream connection and 2,000 to spare.
    #[test]
    fn each_client_connection_is_charged_its_upstream_descriptor() {
        let http = descriptor_cost(Protocol::Http, Forwarding::Splice);
        assert_eq!(http, 2);
        assert_eq!(descriptor_budget(20_000) / http, 9_000);
        assert_eq!(descriptor_cost(Protocol::Tcp, Forwarding::Copy), 2);
        let spliced = if cfg!(target_os = "linux") { 6 } else { 2 };
        assert_eq!(descriptor_cost(Protocol::Tcp, Forwarding::Splice), spliced);
    }
}
