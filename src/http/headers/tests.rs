//! Unit tests of the header rules.
#![allow(clippy::unwrap_used)]

use super::*;
use http::Request;

fn parts(build: http::request::Builder) -> Parts {
    build.body(()).unwrap().into_parts().0
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut p = parts(
        Request::get("/x")
            .header("host", "a.example")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "gzip")
            .header("x-kept", "yes"),
    );
    prepare_upstream(&mut p, "10.1.2.3".parse().unwrap(), "http", false, false);
    for gone in ["connection", "x-secret", "keep-alive", "te"] {
        assert!(!p.headers.contains_key(gone), "{gone} forwarded");
    }
    assert_eq!(p.headers["x-kept"], "yes");
    assert_eq!(p.headers["x-forwarded-for"], "10.1.2.3");
    assert_eq!(p.headers["x-forwarded-host"], "a.example");
    assert_eq!(p.headers["x-forwarded-proto"], "http");
    assert_eq!(p.headers["via"], "1.1 fulcrum");
}

#[test]
fn te_trailers_is_passed_on_and_nothing_else_of_te() {
    let mut p = parts(
        Request::get("/")
            .header("host", "h")
            .header("te", "gzip, trailers")
            .header("connection", "te"),
    );
    prepare_upstream(&mut p, "10.0.0.9".parse().unwrap(), "http", false, false);
    assert_eq!(p.headers["te"], "trailers");
    assert_eq!(p.headers["connection"], "te");
}

#[test]
fn the_trailer_declaration_reaches_the_client() {
    let mut h = HeaderMap::new();
    h.insert(header::TRAILER, HeaderValue::from_static("grpc-status"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    prepare_response(&mut h, false);
    assert_eq!(h[header::TRAILER], "grpc-status");
    assert!(!h.contains_key(header::TRANSFER_ENCODING));
}

#[test]
fn several_forwarded_for_lines_are_one_list() {
    let mut p = parts(
        Request::get("/")
            .header("host", "h")
            .header("x-forwarded-for", "1.1.1.1, 2.2.2.2")
            .header("x-forwarded-for", "3.3.3.3"),
    );
    prepare_upstream(&mut p, "10.0.0.9".parse().unwrap(), "http", false, false);
    assert_eq!(p.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(
        p.headers["x-forwarded-for"],
        "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"
    );
}

#[test]
fn forwarded_for_is_appended() {
    let mut p = parts(
        Request::get("/")
            .header("host", "h")
            .header("x-forwarded-for", "1.1.1.1"),
    );
    prepare_upstream(
        &mut p,
        "::ffff:10.0.0.9".parse().unwrap(),
        "http",
        false,
        false,
    );
    assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 10.0.0.9");
}

#[test]
fn h2_authority_becomes_host_and_origin_form() {
    let mut p = parts(Request::get("http://svc.example/p?q=1").version(Version::HTTP_2));
    prepare_upstream(&mut p, "127.0.0.1".parse().unwrap(), "http", false, false);
    assert_eq!(p.headers["host"], "svc.example");
    assert_eq!(p.uri, "/p?q=1");
    assert_eq!(p.version, Version::HTTP_11);
    assert_eq!(p.headers["via"], "2 fulcrum");
}

#[test]
fn upgrade_handshake_is_kept() {
    let mut p = parts(
        Request::get("/ws")
            .header("host", "h")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket"),
    );
    assert!(is_upgrade(&p, Present::ALL));
    prepare_upstream(&mut p, "127.0.0.1".parse().unwrap(), "http", true, false);
    assert_eq!(p.headers["upgrade"], "websocket");
    assert_eq!(p.headers["connection"], "upgrade");
}

#[test]
fn ambiguous_framing_is_refused() {
    let p = parts(
        Request::post("/")
            .header("host", "h")
            .header("content-length", "3")
            .header("transfer-encoding", "chunked"),
    );
    assert!(matches!(
        check_request(&p, Present::ALL),
        Err(ProxyError::BadRequest(_))
    ));
    let p = parts(
        Request::post("/")
            .header("host", "h")
            .header("content-length", "3")
            .header("content-length", "4"),
    );
    assert!(check_request(&p, Present::ALL).is_err());
    let p = parts(Request::get("/"));
    assert!(
        check_request(&p, Present::ALL).is_err(),
        "HTTP/1.1 without Host"
    );
}

#[test]
fn connection_cannot_name_host_framing_or_forwarding_headers() {
    let mut p = parts(
        Request::post("/")
            .header("host", "app.example")
            .header(
                "connection",
                "Host, content-length, X-Forwarded-For, x-forwarded-host, via, x-gone",
            )
            .header("content-length", "2")
            .header("x-forwarded-for", "1.1.1.1")
            .header("via", "1.1 edge")
            .header("x-gone", "1"),
    );
    prepare_upstream(&mut p, "10.0.0.9".parse().unwrap(), "http", false, false);
    assert_eq!(p.headers["host"], "app.example");
    assert_eq!(p.headers["content-length"], "2");
    assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 10.0.0.9");
    assert_eq!(p.headers["x-forwarded-host"], "app.example");
    assert_eq!(p.headers["via"], "1.1 edge, 1.1 fulcrum");
    assert!(!p.headers.contains_key("x-gone"));

    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("content-length"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
    prepare_response(&mut h, false);
    assert_eq!(h[header::CONTENT_LENGTH], "3");
}

#[test]
fn only_websocket_upgrades_pass() {
    let h2c = |upgrade: &'static str| {
        parts(
            Request::get("/")
                .header("host", "h")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", upgrade)
                .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        )
    };
    let mut p = h2c("h2c");
    assert!(!is_upgrade(&p, Present::ALL));
    prepare_upstream(&mut p, "127.0.0.1".parse().unwrap(), "http", false, false);
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert!(!p.headers.contains_key(gone), "{gone}: {:?}", p.headers);
    }
    // A list that offers WebSocket among others: only WebSocket is offered upstream.
    let mut p = h2c("h2c, WebSocket");
    assert!(is_upgrade(&p, Present::ALL));
    prepare_upstream(&mut p, "127.0.0.1".parse().unwrap(), "http", true, false);
    assert_eq!(p.headers["upgrade"], "websocket");
    assert_eq!(p.headers["connection"], "upgrade");
    assert!(!p.headers.contains_key("http2-settings"));
}

#[test]
fn a_response_framed_two_ways_or_switching_unasked_is_refused() {
    let head = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    };
    let ok = StatusCode::OK;
    let both = head(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
    assert!(matches!(
        check_response(ok, &both, false),
        Err(ProxyError::BadResponse(_))
    ));
    assert!(check_response(ok, &head(&[("transfer-encoding", "chunked")]), false).is_ok());
    assert!(check_response(ok, &head(&[("content-length", "5")]), false).is_ok());

    let switching = StatusCode::SWITCHING_PROTOCOLS;
    let ws = head(&[("upgrade", "websocket"), ("connection", "upgrade")]);
    let h2c = head(&[("upgrade", "h2c"), ("connection", "upgrade")]);
    assert!(check_response(switching, &ws, true).is_ok());
    assert!(check_response(switching, &ws, false).is_err(), "not asked");
    assert!(
        check_response(switching, &h2c, true).is_err(),
        "not offered"
    );
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    let mut checked = 0;
    for a in (0..=255u8)
        .step_by(7)
        .chain([0, 9, 10, 99, 100, 199, 200, 255])
    {
        for b in [0u8, 1, 10, 100, 255] {
            let ip = IpAddr::from([a, b, 255 - a, a / 3]);
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
            checked += 1;
        }
    }
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let mut out = Vec::new();
    push_ip(&mut out, v6);
    assert_eq!(out, b"2001:db8::1");
    assert!(checked > 100);
}

/// The line path's classification agrees with the map path's hop-by-hop list, in any case,
/// and tells the fields the engine acts on apart from look-alikes of the same length.
#[test]
fn field_kinds_agree_with_the_hop_by_hop_list() {
    let mut hop: Vec<String> = HOP_BY_HOP.iter().map(|h| h.as_str().to_owned()).collect();
    hop.push(PROXY_CONNECTION.as_str().to_owned());
    for name in &hop {
        for spelled in [name.to_string(), name.to_ascii_uppercase()] {
            assert!(Field::of(&spelled).is_hop_by_hop(), "{spelled}");
        }
    }
    let others = [
        "host",
        "content-type",
        "Content-Location",
        "x-connection",
        "connectio",
        "trailer",
        "ta",
        "upgrades",
        "keep-alivf",
        "proxy-authenticatf",
        "strict-transport-securitx",
        "x-forwarded-for",
        "",
    ];
    for name in others {
        assert!(!Field::of(name).is_hop_by_hop(), "{name}");
    }
    assert_eq!(Field::of("Content-Length"), Field::ContentLength);
    assert_eq!(Field::of("TRANSFER-ENCODING"), Field::TransferEncoding);
    assert_eq!(Field::of("Connection"), Field::Connection);
    assert_eq!(Field::of("upgrade"), Field::Upgrade);
    assert_eq!(
        Field::of("Strict-Transport-Security"),
        Field::StrictTransportSecurity
    );
    assert_eq!(Field::of("http2-settings"), Field::HopByHop);
    assert_eq!(Field::of("Content-Lengti"), Field::Other);
}
