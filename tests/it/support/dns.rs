//! A DNS server for the discovery tests: UDP on 127.0.0.1 port 0, answering A, AAAA and SRV
//! from a table the test changes while Fulcrum runs (hickory-proto encodes and decodes; only
//! the table lookup is here). A name not in the table is NXDOMAIN; `silence` makes it drop
//! every query, as a dead DNS server does, so resolutions time out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// One SRV record: priority, weight, port, target name.
pub type Srv = (u16, u16, u16, &'static str);

#[derive(Default)]
struct Zone {
    hosts: HashMap<String, (Vec<IpAddr>, u32)>,
    srv: HashMap<String, (Vec<Srv>, u32)>,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    silent: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lowercase, without the trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let silent = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (zone, silent, queries) = (zone.clone(), silent.clone(), queries.clone());
            async move {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if silent.load(Ordering::Relaxed) {
                        continue;
                    }
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let reply = answer(&zone.lock().unwrap(), &query);
                    if let Ok(bytes) = reply.to_vec() {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                }
            }
        });
        DnsServer {
            addr,
            zone,
            silent,
            queries,
            task,
        }
    }

    /// `name`'s A and AAAA records (replacing what it had).
    pub fn set_host(&self, name: &str, ips: &[IpAddr], ttl: u32) {
        self.zone
            .lock()
            .unwrap()
            .hosts
            .insert(key(name), (ips.to_vec(), ttl));
    }

    /// `name`'s SRV records (replacing what it had).
    pub fn set_srv(&self, name: &str, records: &[Srv], ttl: u32) {
        self.zone
            .lock()
            .unwrap()
            .srv
            .insert(key(name), (records.to_vec(), ttl));
    }

    /// `true`: every query is dropped unanswered.
    pub fn silence(&self, on: bool) {
        self.silent.store(on, Ordering::Relaxed);
    }

    /// Queries received so far (answered or not).
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

fn answer(zone: &Zone, query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(q.clone());
    let name = key(&q.name.to_ascii());
    let known = zone.hosts.contains_key(&name) || zone.srv.contains_key(&name);
    if !known {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply;
    }
    let owner = q.name.clone();
    match q.query_type {
        RecordType::A | RecordType::AAAA => {
            if let Some((ips, ttl)) = zone.hosts.get(&name) {
                for ip in ips {
                    let data = match (ip, q.query_type) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    reply.add_answer(Record::from_rdata(owner.clone(), *ttl, data));
                }
            }
        }
        RecordType::SRV => {
            if let Some((records, ttl)) = zone.srv.get(&name) {
                for &(priority, weight, port, target) in records {
                    let target = Name::from_ascii(format!("{target}.")).unwrap();
                    let srv = SRV::new(priority, weight, port, target);
                    reply.add_answer(Record::from_rdata(owner.clone(), *ttl, RData::SRV(srv)));
                }
            }
        }
        _ => {}
    }
    reply
}
