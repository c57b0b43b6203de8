//! The line writer (plus `request_id::write_lines`) against hyper's path it stands for
//! (`prepare_upstream`, `request_id::apply`, `client_cert` on the map): the same fields
//! (names, and each name's values in order) for every request of a corpus and every
//! combination of options.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Version};

use super::{write_fields, Upstream};
use crate::http::headers::{client_cert, prepare_upstream, Present};
use crate::http::request_id::{self, Ids, RequestId};
use crate::tls::PeerCert;

fn parts(version: Version, fields: &[(&str, &[u8])]) -> Parts {
    let mut req = Request::builder().uri("/x?y=1").version(version);
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        req = req.header(name, HeaderValue::from_bytes(value).unwrap());
    }
    req.body(()).unwrap().into_parts().0
}

/// Fields as a backend compares them: stable-sorted by name, so each name keeps its order.
fn sorted(mut fields: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

fn by_map(mut p: Parts, up: &Upstream<'_>) -> Vec<(String, Vec<u8>)> {
    prepare_upstream(&mut p, up.client, up.proto, up.upgrade, up.body_prefetched);
    request_id::apply(&mut p.headers, up.ids);
    if let Some(cert) = up.cert {
        client_cert(&mut p.headers, cert);
    }
    sorted(
        p.headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
    )
}

fn by_lines(p: &Parts, up: &Upstream<'_>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    write_fields(&mut out, p, up);
    request_id::write_lines(&mut out, up.ids);
    assert!(out.ends_with(b"\r\n"));
    let fields = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = l.strip_suffix(b"\r").expect("CRLF line end");
            let colon = l.iter().position(|&b| b == b':').expect("a colon");
            let name = String::from_utf8(l[..colon].to_vec()).unwrap();
            assert_eq!(name, name.to_ascii_lowercase());
            let value = l[colon + 1..].strip_prefix(b" ").expect("one space");
            (name, value.to_vec())
        })
        .collect();
    sorted(fields)
}

#[test]
fn lines_carry_the_fields_the_map_path_leaves() {
    let corpus: Vec<Vec<(&str, &[u8])>> = vec![
        vec![
            ("host", b"a.example"),
            ("user-agent", b"t"),
            ("accept", b"*/*"),
        ],
        vec![
            ("host", b"a"),
            ("connection", b"keep-alive"),
            ("keep-alive", b"timeout=5"),
        ],
        vec![("host", b"a"), ("connection", b"close")],
        vec![
            ("host", b"a"),
            ("connection", b"x-secret, keep-alive, Traceparent, expect"),
            ("x-secret", b"1"),
            ("x-secret", b"2"),
            (
                "traceparent",
                b"00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
            ),
            ("expect", b"100-continue"),
        ],
        vec![
            ("host", b"a"),
            (
                "connection",
                b"host, x-forwarded-for, via, content-length, x-request-id",
            ),
            ("x-forwarded-for", b"10.0.0.1"),
            ("x-forwarded-for", b" 10.0.0.2 , 10.0.0.3"),
            ("x-forwarded-for", b" "),
            ("via", b"1.0 edge"),
            ("via", b"1.1 other"),
            ("content-length", b"5"),
            ("x-request-id", b"client-id"),
        ],
        vec![
            ("host", b"a"),
            ("te", b"gzip, trailers"),
            ("connection", b"TE"),
            ("trailer", b"x-checksum"),
        ],
        vec![
            ("host", b"a"),
            ("upgrade", b"websocket, h2c"),
            ("connection", b"Upgrade, HTTP2-Settings"),
            ("http2-settings", b"AAMAAABkAAQAAP__"),
            ("sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            ("te", b"trailers"),
        ],
        vec![
            ("host", b"a"),
            ("x-forwarded-host", b"evil"),
            ("x-forwarded-proto", b"https"),
            ("x-client-verify", b"SUCCESS"),
            ("x-client-cert-subject", b"CN=root"),
            ("x-client-cert-san", b"DNS:evil"),
            ("proxy-connection", b"keep-alive"),
            ("proxy-authorization", b"Basic x"),
            ("transfer-encoding", b"chunked"),
        ],
        // No Host (HTTP/1.0): the client's X-Forwarded-Host stays.
        vec![("x-forwarded-host", b"kept"), ("tracestate", b"a=1")],
        vec![
            ("host", b"a"),
            ("via", &[0x80, b'x']),
            ("x-forwarded-for", &[0xff]),
        ],
        vec![
            ("host", b"a"),
            ("cookie", b"a=1"),
            ("cookie", b"b=2"),
            ("expect", b"100-continue"),
        ],
    ];
    let cert = PeerCert {
        subject: "CN=alice, O=Example".into(),
        san: "DNS:a.example".into(),
    };
    let bad_cert = PeerCert {
        subject: "CN=line\nbreak".into(),
        san: String::new(),
    };
    let ids = [
        Ids {
            request_id: RequestId::Generated([b'a'; 32]),
            started: None,
        },
        Ids {
            request_id: RequestId::Kept(HeaderValue::from_static("client-id")),
            started: None,
        },
        Ids {
            request_id: RequestId::Generated([b'b'; 32]),
            started: Some([b'0'; 55]),
        },
    ];
    let clients: [IpAddr; 3] = [
        "192.0.2.7".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "::ffff:10.1.2.3".parse().unwrap(),
    ];
    let mut cases = 0;
    for fields in &corpus {
        for version in [Version::HTTP_10, Version::HTTP_11] {
            for ids in &ids {
                for cert in [None, Some(None), Some(Some(&cert)), Some(Some(&bad_cert))] {
                    for (upgrade, body_prefetched) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        let up = Upstream {
                            client: clients[cases % clients.len()],
                            proto: if cases % 2 == 0 { "http" } else { "https" },
                            upgrade,
                            body_prefetched,
                            ids,
                            cert,
                            present: Present::ALL,
                        };
                        let lines = by_lines(&parts(version, fields), &up);
                        let map = by_map(parts(version, fields), &up);
                        assert_eq!(lines, map, "{fields:?} {version:?} upgrade {upgrade}");
                        // The lookups skipped for names the request lacks change nothing.
                        let p = parts(version, fields);
                        let noted = Upstream {
                            present: Present::scan(&p.headers),
                            ..up
                        };
                        assert_eq!(by_lines(&p, &noted), map, "{fields:?} noted");
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, corpus.len() * 2 * 3 * 4 * 4);
}
