//! The GeoDNS responder: `[gslb]` makes Fulcrum the authoritative server (UDP and TCP, one
//! address) of one zone, answering each record name with the vips of the region that should
//! serve the querier.
//!
//! Why here, above the data path: the answer is a question about health the proxy already
//! keeps. The querier (the EDNS Client Subnet address when the query carries one, else the
//! resolver's source address) is mapped through the same region table as clients of the proxy
//! (`[[region]]` CIDRs, `[geo] mmdb`), and a region qualifies when every pool of the name has
//! a backend the proxy would use there (`select::has_fresh`); the choice itself is in
//! [`zone`]. Each query loads the live snapshot once, so health changes and reloads are
//! followed (the bind address is read at start only).
//!
//! The DNS wire format (decoding queries, encoding answers) is hickory-proto's and
//! hickory-server's, and so are the TCP server and its framing; UDP datagrams are received and
//! answered by Fulcrum's own loop ([`udp`]: hickory-server's spawns a task and routes each
//! answer through a channel per query, a third of the cost of an answer). This file answers
//! parsed queries:
//! - the apex: SOA and NS; a record name: A from the region's IPv4 vips, AAAA from its IPv6
//!   ones; other types: no data with the SOA in authority (negative TTL = `ttl`);
//! - a name inside the zone that is not a record: NXDOMAIN with the SOA; outside: REFUSED;
//!   a class other than IN: REFUSED; not a query: NOTIMP; not exactly one question: FORMERR;
//! - no amplification: an unauthenticated UDP answer larger than 3x its query (or than the
//!   querier's EDNS buffer, 512 bytes without EDNS) goes out empty with TC set, so the querier
//!   retries over TCP. Packets under 12 bytes and responses get nothing; other undecodable
//!   packets get a bare FORMERR header.

mod udp;
mod zone;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use socket2::{Domain, Protocol as SocketProtocol, Socket, Type};

use crate::snapshot::{Live, Snapshot};
use zone::{Found, Zone};

/// An unauthenticated UDP answer may be at most this many times its query.
const AMPLIFICATION: usize = 3;
/// The EDNS buffer size advertised in answers (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Tries at binding TCP on the port UDP got, when `bind` says port 0.
const PORT_TRIES: usize = 16;

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum GslbError {
    #[error("gslb: cannot bind {proto} {addr}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// Binds UDP and TCP on `bind` (the same port; with port 0, one free for both) and serves on
/// `rt` until it shuts down. Returns the bound address. `upgrade`: this process is the new
/// one of a binary upgrade, whose predecessor still holds the port (see [`bind_both`]).
pub fn start(
    bind: SocketAddr,
    upgrade: bool,
    live: Arc<Live>,
    rt: &tokio::runtime::Handle,
) -> Result<SocketAddr, GslbError> {
    let (udp, tcp) = bind_both(bind, upgrade)?;
    let addr = udp.local_addr().map_err(|source| GslbError::Bind {
        proto: "udp",
        addr: bind,
        source,
    })?;
    let _entered = rt.enter();
    let err = |proto, source| GslbError::Bind {
        proto,
        addr,
        source,
    };
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(|e| err("udp", e))?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| err("tcp", e))?;
    let handler = Arc::new(Handler {
        metrics: live.metrics,
        live,
        zone: ArcSwapOption::empty(),
    });
    rt.spawn(udp::serve(udp, Arc::clone(&handler)));
    let mut server = Server::new(OverTcp(handler));
    server.register_listener(tcp, TCP_IDLE, 64);
    rt.spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!(error = %e, "gslb: the DNS server stopped");
        }
    });
    tracing::info!(%addr, "gslb: answering DNS (udp, tcp)");
    Ok(addr)
}

/// UDP and TCP sockets on one address, non-blocking.
///
/// A fixed port is bound with SO_REUSEPORT, so the new process of a binary upgrade can bind
/// it while the old one still answers (both answer alike until the old one exits); and, as
/// for listeners, a fresh start first probes without it, so a second Fulcrum on the same port
/// is refused rather than silently given half of the queries. Port 0 binds plainly: a free
/// port for UDP, then TCP on the same number (another free one when TCP's is taken).
fn bind_both(
    bind: SocketAddr,
    upgrade: bool,
) -> Result<(std::net::UdpSocket, std::net::TcpListener), GslbError> {
    let shared = bind.port() != 0;
    let at = |proto, addr| {
        move |source| GslbError::Bind {
            proto,
            addr,
            source,
        }
    };
    if shared && !upgrade {
        probe(Type::DGRAM, bind).map_err(at("udp", bind))?;
        probe(Type::STREAM, bind).map_err(at("tcp", bind))?;
    }
    let mut last = None;
    for _ in 0..PORT_TRIES {
        let udp = socket(Type::DGRAM, bind, shared).map_err(at("udp", bind))?;
        let port = udp
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(bind.port(), |a| a.port());
        let tcp_addr = SocketAddr::new(bind.ip(), port);
        match socket(Type::STREAM, tcp_addr, shared).and_then(|s| s.listen(1024).map(|()| s)) {
            Ok(tcp) => return Ok((udp.into(), tcp.into())),
            // Port 0: UDP's free port may be taken for TCP; take another.
            Err(e) if !shared && e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(at("tcp", tcp_addr)(e)),
        }
    }
    Err(at("tcp", bind)(last.unwrap_or_else(|| {
        io::Error::from(io::ErrorKind::AddrInUse)
    })))
}

/// A non-blocking socket of `kind` bound to `addr` (SO_REUSEPORT when `shared`).
fn socket(kind: Type, addr: SocketAddr, shared: bool) -> io::Result<Socket> {
    let proto = if kind == Type::DGRAM {
        SocketProtocol::UDP
    } else {
        SocketProtocol::TCP
    };
    let socket = Socket::new(Domain::for_address(addr), kind, Some(proto))?;
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    if shared {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Fails when another socket is bound to `addr` (a probe without SO_REUSEPORT conflicts with
/// any, SO_REUSEADDR only skips TCP connections in TIME_WAIT).
fn probe(kind: Type, addr: SocketAddr) -> io::Result<()> {
    match socket(kind, addr, false) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process already answers there (two would split its queries)",
        )),
        other => other.map(drop),
    }
}

/// Answers queries from the zone of the live snapshot.
struct Handler {
    live: Arc<Live>,
    /// The zone of the last snapshot seen (rebuilt when the snapshot changes).
    zone: ArcSwapOption<Zone>,
    metrics: bool,
}

impl Handler {
    /// The zone of `snap` (`None`: it has no `[gslb]`), built when `snap` is new.
    fn zone(&self, snap: &Arc<Snapshot>) -> Option<Arc<Zone>> {
        if let Some(z) = self.zone.load_full() {
            if z.is_of(snap) {
                return Some(z);
            }
        }
        let z = Zone::build(snap, self.metrics).map(Arc::new);
        self.zone.store(z.clone());
        z
    }
}

/// What goes in a response besides the header.
struct Reply<'z> {
    code: ResponseCode,
    authoritative: bool,
    answers: &'z [Record],
    soa: &'z [Record],
}

impl<'z> Reply<'z> {
    fn code(code: ResponseCode) -> Reply<'z> {
        Reply {
            code,
            authoritative: false,
            answers: &[],
            soa: &[],
        }
    }

    /// An authoritative answer (NOERROR) of `answers`; none: no data, the SOA in authority.
    fn data(zone: &'z Zone, answers: &'z [Record]) -> Reply<'z> {
        Reply {
            code: ResponseCode::NoError,
            authoritative: true,
            answers,
            soa: if answers.is_empty() {
                std::slice::from_ref(&zone.soa)
            } else {
                &[]
            },
        }
    }
}

/// The reply to `request`'s one question.
fn reply<'z>(
    zone: Option<&'z Zone>,
    snap: &Snapshot,
    request: &Request,
    querier: IpAddr,
) -> Reply<'z> {
    let Some(zone) = zone else {
        return Reply::code(ResponseCode::Refused);
    };
    if request.metadata.op_code != OpCode::Query {
        return Reply::code(ResponseCode::NotImp);
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Reply::code(ResponseCode::BADVERS);
    }
    let Ok(info) = request.request_info() else {
        return Reply::code(ResponseCode::FormErr);
    };
    let q = info.query;
    if q.query_class() != DNSClass::IN {
        return Reply::code(ResponseCode::Refused);
    }
    let qtype = q.query_type();
    let answers = match zone.find(q.name()) {
        Found::Outside => return Reply::code(ResponseCode::Refused),
        Found::Missing => {
            return Reply {
                code: ResponseCode::NXDomain,
                authoritative: true,
                answers: &[],
                soa: std::slice::from_ref(&zone.soa),
            }
        }
        Found::Apex(_) if qtype == RecordType::SOA => {
            return Reply::data(zone, std::slice::from_ref(&zone.soa))
        }
        Found::Apex(_) if qtype == RecordType::NS => return Reply::data(zone, &zone.ns),
        Found::Apex(None) | Found::Empty => return Reply::data(zone, &[]),
        Found::Apex(Some(a)) | Found::Name(a) => a,
    };
    let v6 = match qtype {
        RecordType::A => false,
        RecordType::AAAA => true,
        _ => return Reply::data(zone, &[]),
    };
    let region = zone.region_for(snap, answers, querier, crate::clock::now_ms());
    answers.count(region);
    Reply::data(zone, answers.records(region, v6))
}

/// The querier: the EDNS Client Subnet address when given (source prefix > 0), else the
/// packet's source; and the subnet to echo.
fn querier(request: &Request) -> (IpAddr, Option<ClientSubnet>) {
    let ecs = request
        .edns
        .as_ref()
        .and_then(|e| match e.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(*s),
            _ => None,
        });
    match ecs {
        Some(s) if s.source_prefix() > 0 => (s.addr(), Some(s)),
        _ => (request.src().ip(), ecs),
    }
}

/// An upper bound of the wire size of `records` without name compression (`usize::MAX` for
/// a type this zone does not make).
fn wire_bound(records: &[Record]) -> usize {
    let name = |n: &hickory_server::proto::rr::Name| n.len() + 1;
    records
        .iter()
        .map(|r| {
            let data = match &r.data {
                RData::A(_) => 4,
                RData::AAAA(_) => 16,
                RData::NS(ns) => name(&ns.0),
                RData::SOA(soa) => name(&soa.mname) + name(&soa.rname) + 20,
                _ => return usize::MAX,
            };
            // Name, type, class, TTL, rdata length, rdata.
            name(&r.name) + 10 + data
        })
        .fold(0, usize::saturating_add)
}

/// The largest UDP answer this query may get.
fn udp_limit(request: &Request) -> usize {
    let buffer = request
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload().max(512)));
    buffer.min(request.as_slice().len().saturating_mul(AMPLIFICATION))
}

/// A response to send: its header and OPT, and its records, borrowed from the zone they were
/// chosen from. Both transports build it alike ([`Handler::answer`]); UDP emits it itself
/// ([`udp`]), TCP hands it to hickory-server.
struct Answer<'z> {
    meta: Metadata,
    edns: Option<Edns>,
    answers: &'z [Record],
    soa: &'z [Record],
}

/// The response message of an [`Answer`], as hickory-server encodes it.
type Response<'q, 'z> = MessageResponse<
    'q,
    'z,
    std::slice::Iter<'z, Record>,
    std::iter::Empty<&'z Record>,
    std::slice::Iter<'z, Record>,
    std::iter::Empty<&'z Record>,
>;

impl<'z> Answer<'z> {
    /// The message for `request` (whose question section it repeats).
    fn response<'q>(&'q self, request: &'q Request) -> Response<'q, 'z> {
        let mut b = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &self.edns {
            b.edns(e);
        }
        b.build(
            self.meta,
            self.answers.iter(),
            std::iter::empty(),
            self.soa.iter(),
            std::iter::empty(),
        )
    }

    /// Over UDP, the answer goes out empty with TC set when it would exceed what the querier
    /// may get ([`udp_limit`]), so it retries over TCP.
    fn fit_udp(&mut self, request: &Request) {
        let limit = udp_limit(request);
        // The query (header, question, OPT at least as large as ours) and the records'
        // uncompressed sizes: when that fits, the answer does; else encode to know.
        let bound = request
            .as_slice()
            .len()
            .saturating_add(wire_bound(self.answers))
            .saturating_add(wire_bound(self.soa));
        let fits = bound <= limit || {
            let limit = u16::try_from(limit).unwrap_or(u16::MAX);
            let mut scratch = Vec::with_capacity(usize::from(limit));
            let mut encoder = BinEncoder::new(&mut scratch);
            encoder.set_max_size(limit);
            self.response(request)
                .destructive_emit(&mut encoder)
                .is_ok_and(|info| !info.truncation)
        };
        if !fits {
            self.meta.truncation = true;
            (self.answers, self.soa) = (&[], &[]);
        }
    }
}

impl Handler {
    /// The answer to `request` from `zone` (the zone of `snap`, the snapshot loaded once for
    /// this query).
    fn answer<'z>(&self, zone: Option<&'z Zone>, snap: &Snapshot, request: &Request) -> Answer<'z> {
        let (who, ecs) = querier(request);
        let plan = reply(zone, snap, request, who);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = plan.authoritative;
        meta.response_code = plan.code;
        // RFC 6891: an OPT in the query gets one in the answer; RFC 7871: the subnet echoed,
        // scope = the source prefix (the answer was chosen for exactly that network).
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            if let Some(s) = ecs {
                let scope = s.source_prefix();
                e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                    s.addr(),
                    s.source_prefix(),
                    scope,
                )));
            }
            e
        });
        let mut answer = Answer {
            meta,
            edns,
            answers: plan.answers,
            soa: plan.soa,
        };
        if request.protocol() == Protocol::Udp {
            answer.fit_udp(request);
        }
        answer
    }
}

/// DNS over TCP: hickory-server's connections and framing, answered by the same [`Handler`].
struct OverTcp(Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for OverTcp {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let handler = &self.0;
        // One snapshot load per query; the guard is gone before the first await.
        let snap = handler.live.snapshot.load();
        let zone = handler.zone(&snap);
        let answer = handler.answer(zone.as_deref(), &snap, request);
        drop(snap);
        match response_handle
            .send_response(answer.response(request))
            .await
        {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "gslb: cannot send an answer");
                let mut meta = answer.meta;
                meta.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: meta,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA};
    use hickory_server::proto::rr::Name;
    use hickory_server::proto::serialize::binary::BinEncodable;

    use super::*;

    #[test]
    fn the_wire_bound_is_never_below_the_encoding() {
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let records = [
            Record::from_rdata(
                n("www.example.com."),
                30,
                RData::A(A([192, 0, 2, 1].into())),
            ),
            Record::from_rdata(
                n("a.b.example.com."),
                30,
                RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
            ),
            Record::from_rdata(n("example.com."), 30, RData::NS(NS(n("ns1.example.com.")))),
            Record::from_rdata(
                n("example.com."),
                30,
                RData::SOA(SOA::new(
                    n("ns1.example.com."),
                    n("hostmaster.example.com."),
                    1,
                    3600,
                    600,
                    86_400,
                    30,
                )),
            ),
        ];
        for r in &records {
            let encoded = r.to_bytes().unwrap().len();
            let bound = wire_bound(std::slice::from_ref(r));
            assert!(bound >= encoded, "{r}: {bound} < {encoded}");
        }
        assert!(wire_bound(&records) >= records.iter().map(|r| r.to_bytes().unwrap().len()).sum());
    }
}
