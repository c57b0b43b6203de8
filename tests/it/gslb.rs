//! GeoDNS (`[gslb]`): Fulcrum answers DNS for its zone with the vips of the querier's region.
//!
//! Queriers are loopback addresses in two regions (127.1.0.1 in east = 127.1/16, 127.2.0.1 in
//! west = 127.2/16; 127.0.0.1 is in neither), or any address given as EDNS Client Subnet.
//! Queries are hickory-proto messages sent by hand over UDP and TCP, and `dig` (Debian
//! `bind9-dnsutils`; the test skips without it unless `FULCRUM_TEST_REQUIRE_ALL=1`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fulcrum::config::Config;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::client::{get_once, http1, send};
use crate::support::flip::FlipBackend;
use crate::support::proxy::write_file;
use crate::support::{eventually, require};

const EAST_V4: &[&str] = &["203.0.113.10", "203.0.113.11"];
const EAST_V6: &str = "2001:db8::10";
const WEST_V4: &str = "198.51.100.10";
const WEST_V6: &str = "2001:db8:1::10";
/// Health checks every 100 ms, down after 2 failures.
const INTERVAL_MS: u64 = 100;
const FALL: u64 = 2;
/// How long an answer may take to follow health: fall x interval + 1 s.
const FOLLOW: Duration = Duration::from_millis(FALL * INTERVAL_MS + 1000);

/// The config: pool `web` with one backend per region (health-checked), both regions failing
/// over to each other, a 50/50 split for unknown queriers; `east_vips` replaces east's v4 vips.
fn config_text(east: SocketAddr, west: SocketAddr, east_vips: &[String]) -> String {
    let quoted = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let east_vips = quoted(&[east_vips.to_vec(), vec![EAST_V6.to_string()]].concat());
    format!(
        r#"
[global]
workers = 1
access_log = "off"
shutdown_grace = "1s"
admin = "127.0.0.1:0"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"

[[pool]]
name = "web"
backends = [
  {{ address = "{east}", region = "east" }},
  {{ address = "{west}", region = "west" }},
]
region_split = {{ east = 50, west = 50 }}
[pool.health]
path = "/healthz"
interval = "{INTERVAL_MS}ms"
timeout = "500ms"
fall = {FALL}
rise = 1

[[region]]
name = "east"
cidrs = ["127.1.0.0/16"]
failover = ["west"]
vips = [{east_vips}]

[[region]]
name = "west"
cidrs = ["127.2.0.0/16"]
failover = ["east"]
vips = ["{WEST_V4}", "{WEST_V6}"]

[gslb]
bind = "127.0.0.1:0"
ttl = "5s"
zone = "example.com"
ns = ["ns1.example.com", "ns2.example.com"]
records = [
  {{ name = "www.example.com", pools = ["web"] }},
  {{ name = "api.eu.example.com", pools = ["web"] }},
]
"#
    )
}

/// A running Fulcrum with `[gslb]` and its two backends.
struct Geo {
    /// Dropped with the test: stopped without waiting.
    handle: fulcrum::Handle,
    dns: SocketAddr,
    east: FlipBackend,
    _west: FlipBackend,
}

impl Geo {
    async fn start() -> Geo {
        Geo::start_with(&EAST_V4.iter().map(|s| s.to_string()).collect::<Vec<_>>()).await
    }

    async fn start_with(east_vips: &[String]) -> Geo {
        let east = FlipBackend::start("east").await;
        let west = FlipBackend::start("west").await;
        let text = config_text(east.addr, west.addr, east_vips);
        let handle = start(&text);
        let dns = handle.gslb_addr().expect("gslb address");
        Geo {
            handle,
            dns,
            east,
            _west: west,
        }
    }
}

fn start(text: &str) -> fulcrum::Handle {
    let config = Config::from_toml(text, std::path::Path::new("gslb.toml")).unwrap();
    let options = fulcrum::Options {
        watch_config: false,
        ..Default::default()
    };
    fulcrum::start_with(config, options).unwrap()
}

/// A query for `name`/`rtype`, with an EDNS Client Subnet when `ecs` is given.
fn query(name: &str, rtype: RecordType, ecs: Option<(&str, u8)>) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some((ip, prefix)) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            ip.parse().unwrap(),
            prefix,
            0,
        )));
        m.set_edns(e);
    }
    m
}

/// Sends `bytes` over UDP from `from` (port 0) and waits up to `within` for one datagram.
async fn udp_raw(dns: SocketAddr, from: &str, bytes: &[u8], within: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((from.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    socket.send_to(bytes, dns).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(within, socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

/// `m` over UDP from `from`: the answer, decoded.
async fn udp(dns: SocketAddr, from: &str, m: &Message) -> Message {
    let bytes = udp_raw(dns, from, &m.to_vec().unwrap(), Duration::from_secs(5))
        .await
        .expect("a DNS answer over UDP");
    Message::from_vec(&bytes).unwrap()
}

/// `m` over TCP (two-byte length framing) from `from`.
async fn tcp(dns: SocketAddr, from: &str, m: &Message) -> Message {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut stream: TcpStream = socket.connect(dns).await.unwrap();
    let bytes = m.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).await.unwrap();
        body
    })
    .await
    .expect("a DNS answer over TCP");
    Message::from_vec(&answer).unwrap()
}

/// The addresses of the answer section, sorted, as text.
fn addresses(m: &Message) -> Vec<String> {
    let mut out: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn east_v4() -> Vec<String> {
    EAST_V4.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_region_gets_its_vips_a_and_aaaa() {
    let geo = Geo::start().await;
    let east = udp(
        geo.dns,
        "127.1.0.1",
        &query("www.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(east.metadata.response_code, ResponseCode::NoError);
    assert!(east.metadata.authoritative);
    assert_eq!(addresses(&east), east_v4());
    assert!(east.answers.iter().all(|r| r.ttl == 5));
    let west = udp(
        geo.dns,
        "127.2.0.1",
        &query("www.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&west), vec![WEST_V4.to_string()]);
    let aaaa = query("WWW.Example.COM.", RecordType::AAAA, None);
    assert_eq!(
        addresses(&udp(geo.dns, "127.1.0.1", &aaaa).await),
        vec![EAST_V6.to_string()]
    );
    assert_eq!(
        addresses(&udp(geo.dns, "127.2.0.1", &aaaa).await),
        vec![WEST_V6.to_string()]
    );
    // TCP answers the same.
    let over_tcp = tcp(
        geo.dns,
        "127.2.0.1",
        &query("www.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&over_tcp), vec![WEST_V4.to_string()]);
    // Counted by name and answered region.
    let admin = geo.handle.admin_addr().unwrap();
    let metrics = get_once(admin, "/metrics").await.body;
    for region in ["east", "west"] {
        let series =
            format!("fulcrum_gslb_queries_total{{name=\"www.example.com\",region=\"{region}\"}}");
        assert!(metrics.contains(&series), "{series} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subnet_overrides_the_source_and_is_echoed() {
    let geo = Geo::start().await;
    let m = query("www.example.com.", RecordType::A, Some(("127.2.0.0", 24)));
    let answer = udp(geo.dns, "127.1.0.1", &m).await;
    assert_eq!(addresses(&answer), vec![WEST_V4.to_string()]);
    let echoed = answer
        .edns
        .as_ref()
        .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet));
    match echoed {
        Some(EdnsOption::Subnet(s)) => {
            assert_eq!(s.source_prefix(), 24);
            assert_eq!(s.scope_prefix(), 24);
        }
        other => panic!("no client subnet echoed: {other:?}"),
    }
    // Source prefix 0 means "do not use": the source address decides.
    let m = query("www.example.com.", RecordType::A, Some(("0.0.0.0", 0)));
    assert_eq!(addresses(&udp(geo.dns, "127.1.0.1", &m).await), east_v4());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_move_to_the_failover_region_and_back() {
    let geo = Geo::start().await;
    let q = query("www.example.com.", RecordType::A, None);
    assert_eq!(addresses(&udp(geo.dns, "127.1.0.1", &q).await), east_v4());
    geo.east.set_health(503);
    let dns = geo.dns;
    eventually(FOLLOW, "east's answers move to west", || {
        let q = q.clone();
        async move { addresses(&udp(dns, "127.1.0.1", &q).await) == vec![WEST_V4.to_string()] }
    })
    .await;
    // The failover region's own queriers are unaffected.
    assert_eq!(
        addresses(&udp(dns, "127.2.0.1", &q).await),
        vec![WEST_V4.to_string()]
    );
    geo.east.set_health(200);
    eventually(FOLLOW, "east's answers come back", || {
        let q = q.clone();
        async move { addresses(&udp(dns, "127.1.0.1", &q).await) == east_v4() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_soa_ns_nxdomain_refused_and_no_data() {
    let geo = Geo::start().await;
    let dns = geo.dns;
    let soa = ask(dns, "example.com.", RecordType::SOA).await;
    assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
    assert!(soa.metadata.authoritative);
    match soa.answers.first().map(|r| &r.data) {
        Some(RData::SOA(s)) => {
            assert_eq!(s.mname.to_string(), "ns1.example.com.");
            assert_eq!(s.rname.to_string(), "hostmaster.example.com.");
            assert_eq!(s.minimum, 5);
        }
        other => panic!("no SOA: {other:?}"),
    }
    let ns = ask(dns, "example.com.", RecordType::NS).await;
    let mut names: Vec<String> = ns
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.to_string()),
            _ => None,
        })
        .collect();
    names.sort();
    assert_eq!(names, ["ns1.example.com.", "ns2.example.com."]);
    let nx = ask(dns, "nope.example.com.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(matches!(
        nx.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));
    let outside = ask(dns, "www.example.org.", RecordType::A).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    assert!(outside.answers.is_empty());
    let mx = ask(dns, "www.example.com.", RecordType::MX).await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty());
    assert!(matches!(
        mx.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));
    // A name with names below it exists: no data, not NXDOMAIN.
    let between = ask(dns, "eu.example.com.", RecordType::A).await;
    assert_eq!(between.metadata.response_code, ResponseCode::NoError);
    assert!(between.answers.is_empty());
    assert_eq!(
        addresses(&ask(dns, "api.eu.example.com.", RecordType::A).await),
        east_v4()
    );
    // EDNS versions above 0 are not spoken (RFC 6891: BADVERS).
    let mut v1 = query("www.example.com.", RecordType::A, None);
    let mut e = Edns::new();
    e.set_version(1);
    v1.set_edns(e);
    let answer = udp(dns, "127.1.0.1", &v1).await;
    // 16 is BADVERS in an answer with OPT (BADSIG to a decoder that guesses TSIG).
    assert_eq!(u16::from(answer.metadata.response_code), 16);
    assert_eq!(answer.edns.map(|e| e.version()), Some(0));
    assert!(answer.answers.is_empty());
    let apex_a = ask(dns, "example.com.", RecordType::A).await;
    assert_eq!(apex_a.metadata.response_code, ResponseCode::NoError);
    assert!(apex_a.answers.is_empty());
    // A bare 29-byte SOA query may get 87 bytes: the SOA answer does not fit, TC says so.
    let bare = query("example.com.", RecordType::SOA, None)
        .to_vec()
        .unwrap();
    let answer = udp_raw(dns, "127.1.0.1", &bare, Duration::from_secs(5)).await;
    no_amplification(&bare, &answer);
    let answer = Message::from_vec(&answer.unwrap()).unwrap();
    assert!(answer.metadata.truncation || !answer.answers.is_empty());
}

/// `name`/`t` asked from east with EDNS, as resolvers ask: without it a short query may get
/// only 3x its size (an SOA answer needs more, and comes truncated: see the malformed test).
async fn ask(dns: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut m = query(name, t, None);
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    udp(dns, "127.1.0.1", &m).await
}

/// Every answer to `sent` (if any) is at most 3x its size or truncated.
fn no_amplification(sent: &[u8], answer: &Option<Vec<u8>>) {
    if let Some(a) = answer {
        let truncated = a.len() >= 3 && a[2] & 0x02 != 0;
        assert!(
            a.len() <= 3 * sent.len() || truncated,
            "{} bytes answered {} bytes",
            a.len(),
            sent.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_do_no_harm_and_nothing_is_amplified() {
    // East has 60 IPv4 vips: its A answer (~1 KB) is far over 3x a query.
    let many: Vec<String> = (1..=60).map(|i| format!("203.0.113.{i}")).collect();
    let geo = Geo::start_with(&many).await;
    let good = query("www.example.com.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut two_questions = query("www.example.com.", RecordType::A, None);
    two_questions.add_query(Query::query(
        Name::from_ascii("example.com.").unwrap(),
        RecordType::SOA,
    ));
    let mut chaos = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    chaos.set_query_class(DNSClass::CH);
    let mut chaos_msg = Message::query();
    chaos_msg.add_query(chaos);
    let mut response = query("www.example.com.", RecordType::A, None);
    response.metadata.message_type = MessageType::Response;
    let mut update = query("www.example.com.", RecordType::A, None);
    update.metadata.op_code = OpCode::Update;
    let mut huge = good[..12].to_vec();
    huge.extend(std::iter::repeat_n(0xC0u8, 4000));
    // A good query with 9 KB after it: longer than any query is read, so it is cut on
    // receipt and answered FORMERR rather than answered from its first bytes.
    let mut padded = good.clone();
    padded.extend(std::iter::repeat_n(0u8, 9000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("longer than a query is read", padded),
        ("short", vec![1, 2, 3, 4, 5]),
        ("truncated", good[..good.len() - 3].to_vec()),
        ("huge", huge),
        ("two questions", two_questions.to_vec().unwrap()),
        ("chaos class", chaos_msg.to_vec().unwrap()),
        ("a response", response.to_vec().unwrap()),
        ("an update", update.to_vec().unwrap()),
    ];
    for (what, bytes) in &cases {
        let answer = udp_raw(geo.dns, "127.1.0.1", bytes, Duration::from_millis(300)).await;
        no_amplification(bytes, &answer);
        if let Some(a) = &answer {
            let m = Message::from_vec(a).unwrap();
            assert_ne!(m.metadata.response_code, ResponseCode::NoError, "{what}");
            assert!(m.answers.is_empty(), "{what}");
        }
        if *what == "chaos class" {
            let m = Message::from_vec(answer.as_ref().unwrap()).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        }
        if *what == "longer than a query is read" {
            let m = Message::from_vec(answer.as_ref().unwrap()).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
            assert_eq!(m.metadata.id, Message::from_vec(&good).unwrap().metadata.id);
        }
        if *what == "a response" {
            assert!(answer.is_none(), "a response was answered");
        }
    }
    // Still answering; the big answer is cut to an empty TC one over UDP (with and without
    // EDNS), whole over TCP.
    let plain = udp_raw(geo.dns, "127.1.0.1", &good, Duration::from_secs(5)).await;
    no_amplification(&good, &plain);
    let plain = Message::from_vec(&plain.unwrap()).unwrap();
    assert!(plain.metadata.truncation);
    assert!(plain.answers.is_empty());
    let edns = query("www.example.com.", RecordType::A, Some(("127.1.0.0", 24)));
    let edns_bytes = edns.to_vec().unwrap();
    let big = udp_raw(geo.dns, "127.1.0.1", &edns_bytes, Duration::from_secs(5)).await;
    no_amplification(&edns_bytes, &big);
    assert!(
        Message::from_vec(&big.unwrap())
            .unwrap()
            .metadata
            .truncation
    );
    let whole = tcp(
        geo.dns,
        "127.1.0.1",
        &query("www.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(whole.answers.len(), 60);
    assert!(!whole.metadata.truncation);
    // West's small answer is not truncated.
    let west = udp(
        geo.dns,
        "127.2.0.1",
        &query("www.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&west), vec![WEST_V4.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_on_unknown_queriers() {
    let east = FlipBackend::start("east").await;
    let west = FlipBackend::start("west").await;
    let text = config_text(east.addr, west.addr, &east_v4());
    let (one, two) = (start(&text), start(&text));
    let (a, b) = (one.gslb_addr().unwrap(), two.gslb_addr().unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..64u8 {
        let subnet = format!("100.64.{i}.0");
        let q = query("www.example.com.", RecordType::A, Some((&subnet, 24)));
        // 127.0.0.1 is in no region, and neither is the subnet: the split decides.
        let (x, y) = (udp(a, "127.0.0.1", &q).await, udp(b, "127.0.0.1", &q).await);
        assert_eq!(addresses(&x), addresses(&y), "{subnet}");
        // Asked again: the same (a hash of the network, not a turn).
        assert_eq!(addresses(&udp(a, "127.0.0.1", &q).await), addresses(&x));
        seen.insert(addresses(&x));
    }
    assert_eq!(
        seen.len(),
        2,
        "the 50/50 split used one region only: {seen:?}"
    );
}

/// `dig` with `args`, its `+short` output lines sorted.
async fn dig(args: Vec<String>) -> Vec<String> {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("dig")
            .args(&args)
            .args(["+short", "+time=2", "+tries=2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_the_regions() {
    if require("dig").is_none() {
        return;
    }
    let geo = Geo::start().await;
    let at = |from: &str, extra: &[&str]| {
        let mut v = vec![
            "-b".to_string(),
            from.to_string(),
            format!("@{}", geo.dns.ip()),
            "-p".to_string(),
            geo.dns.port().to_string(),
            "www.example.com".to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    assert_eq!(dig(at("127.1.0.1", &[])).await, east_v4());
    assert_eq!(dig(at("127.2.0.1", &[])).await, vec![WEST_V4.to_string()]);
    assert_eq!(
        dig(at("127.1.0.1", &["AAAA"])).await,
        vec![EAST_V6.to_string()]
    );
    assert_eq!(dig(at("127.1.0.1", &["+tcp"])).await, east_v4());
    assert_eq!(
        dig(at("127.1.0.1", &["+subnet=127.2.0.0/24"])).await,
        vec![WEST_V4.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_reload_are_followed() {
    let east = FlipBackend::start("east").await;
    let west = FlipBackend::start("west").await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(east.addr, west.addr, &east_v4());
    let path = write_file(dir.path(), "gslb.toml", &text);
    let options = fulcrum::Options {
        watch_config: false,
        ..Default::default()
    };
    let handle = fulcrum::start_with(Config::from_file(&path).unwrap(), options).unwrap();
    let dns = handle.gslb_addr().unwrap();
    let q = query("www.example.com.", RecordType::A, None);
    assert_eq!(addresses(&udp(dns, "127.1.0.1", &q).await), east_v4());
    // A drained backend takes no new work: east's queriers are sent west at once.
    let admin = handle.admin_addr().unwrap();
    let drain = format!(
        "http://{admin}/api/v1/pools/web/backends/{}/drain",
        east.addr
    );
    let req = http::Request::post(drain)
        .body(http_body_util::Full::default())
        .unwrap();
    let reply = send(&http1(), req).await;
    assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.body);
    assert_eq!(
        addresses(&udp(dns, "127.1.0.1", &q).await),
        vec![WEST_V4.to_string()]
    );
    // A reload's new vips are answered from the next query on.
    std::fs::write(&path, text.replace(WEST_V4, "198.51.100.99")).unwrap();
    tokio::task::block_in_place(|| handle.reload()).unwrap();
    assert_eq!(
        addresses(&udp(dns, "127.2.0.1", &q).await),
        vec!["198.51.100.99".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_port_is_refused() {
    let geo = Geo::start().await;
    let east = FlipBackend::start("east").await;
    let west = FlipBackend::start("west").await;
    let text = config_text(east.addr, west.addr, &east_v4()).replace(
        "bind = \"127.0.0.1:0\"\nttl",
        &format!("bind = \"{}\"\nttl", geo.dns),
    );
    assert!(text.contains(&geo.dns.to_string()));
    let config = Config::from_toml(&text, std::path::Path::new("gslb.toml")).unwrap();
    let err = tokio::task::spawn_blocking(move || fulcrum::start(config).err())
        .await
        .unwrap()
        .expect("a second responder on the same port must not start");
    let chain = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(chain.contains("gslb: cannot bind"), "{chain}");
    assert!(
        chain.contains("another process already answers there"),
        "{chain}"
    );
    // The first one still answers.
    let q = query("www.example.com.", RecordType::A, None);
    assert_eq!(addresses(&udp(geo.dns, "127.1.0.1", &q).await), east_v4());
}
