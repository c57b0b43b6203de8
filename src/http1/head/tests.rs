//! The head parser and the framing decision: what is refused, and how bodies are framed.

#![allow(clippy::unwrap_used)]

use http::Method;

use super::*;

fn framing(head: &str) -> Result<Framing, HeadError> {
    parse_request(head.as_bytes()).map(|h| h.framing)
}

#[test]
fn framing_is_decided_from_the_raw_head() {
    let ok = [
        ("GET / HTTP/1.1\r\nHost: h\r\n\r\n", Framing::None),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            Framing::None,
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
        ),
        (
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            Framing::Chunked,
        ),
    ];
    for (head, want) in ok {
        assert_eq!(framing(head), Ok(want), "{head:?}");
    }
}

#[test]
fn ambiguous_heads_are_refused() {
    for head in [
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        // obs-fold
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n",
        // bare LF
        "GET / HTTP/1.1\nHost: h\n\n",
        "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n",
        // space before the colon
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    ] {
        assert!(
            matches!(framing(head), Err(HeadError::Invalid(_) | HeadError::TooLarge)),
            "{head:?}: {:?}",
            framing(head)
        );
    }
}

#[test]
fn limits_tell_414_from_431_and_partial_heads_wait() {
    assert_eq!(
        framing("GET / HTTP/1.1\r\nHost: h\r\n"),
        Err(HeadError::Partial)
    );
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(framing(&line), Err(HeadError::LineTooLong));
    let block = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(framing(&block), Err(HeadError::TooLarge));
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    let close = |h: &str| parse_request(h.as_bytes()).unwrap().close;
    assert!(!close("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert!(close(
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n"
    ));
    assert!(close("GET / HTTP/1.0\r\n\r\n"));
    assert!(!close("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn responses_without_a_body_and_close_delimited_ones() {
    let resp = |h: &str, m: &Method| parse_response(h.as_bytes(), m).unwrap();
    let cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(resp(cl, &Method::GET).framing, Framing::Length(5));
    assert_eq!(resp(cl, &Method::HEAD).framing, Framing::None);
    let none = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(resp(none, &Method::GET).framing, Framing::None);
    let r304 = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(resp(r304, &Method::GET).framing, Framing::None);
    let eof = resp("HTTP/1.1 200 OK\r\n\r\n", &Method::GET);
    assert_eq!((eof.framing, eof.close), (Framing::Close, true));
    let ten = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &Method::GET);
    assert!(ten.close);
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        &Method::GET
    )
    .is_err());
}

#[test]
fn response_fields_are_passed_on_as_lines_without_hop_by_hop_ones() {
    let resp = |h: &str| parse_response(h.as_bytes(), &Method::GET);
    let r = resp(concat!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive, X-Secret\r\n",
        "Keep-Alive: timeout=5\r\nX-Secret: 1\r\nContent-Length: 2\r\n",
        "Strict-Transport-Security: max-age=1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    ))
    .unwrap();
    // The backend's own lines, its case kept, in runs around what is dropped.
    assert_eq!(
        std::str::from_utf8(&r.fields).unwrap(),
        concat!(
            "Server: nginx\r\nContent-Length: 2\r\n",
            "Strict-Transport-Security: max-age=1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        )
    );
    assert!(r.sts && !r.offers_upgrade);
    let mut out = Vec::new();
    write_fields_without_sts(&mut out, &r.fields);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "Server: nginx\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    );
    // `Connection` cannot remove the framing; a field named like its `close` option stays.
    let keep = resp("HTTP/1.1 200 OK\r\nConnection: content-length, close\r\nClose: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(keep.fields, b"Close: x\r\nContent-Length: 0\r\n");
    // Lines go as they came (spacing too); dropped ones first, last and in between.
    let spaced = resp(concat!(
        "HTTP/1.1 200 OK\r\nKeep-Alive: 1\r\nA:b\r\nB:   c  \r\nTE: x\r\n",
        "Content-Length: 0\r\nUpgrade: y\r\n\r\n"
    ))
    .unwrap();
    assert_eq!(spaced.fields, b"A:b\r\nB:   c  \r\nContent-Length: 0\r\n");
    let none = resp("HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert!(none.fields.is_empty());
    // A 101 keeps the protocol it switches to.
    let up = resp(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .unwrap();
    assert!(up.offers_upgrade);
    assert_eq!(up.fields, b"upgrade: websocket\r\nconnection: upgrade\r\n");
    // A value with a control byte is refused, as `HeaderValue` refuses it.
    assert!(resp("HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n").is_err());
}

/// A backend speaking another protocol is told apart from one speaking HTTP/1 badly: the
/// first is retried like a reset, the second is a 502 of its own.
#[test]
fn a_response_that_is_not_http1_is_told_apart_from_a_malformed_one() {
    let get = &Method::GET;
    // An h2 server's first frame (SETTINGS), as an h2-only backend answers an HTTP/1 request.
    let frames = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
    assert_eq!(parse_response(frames, get).err(), Some(HeadError::NotHttp1));
    // A frame that happens to hold a lone LF byte is still another protocol, not a bare LF.
    let with_lf = b"\x00\x00\x0a\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
    assert_eq!(
        parse_response(with_lf, get).err(),
        Some(HeadError::NotHttp1)
    );
    assert_eq!(
        parse_response(b"SSH-2.0-OpenSSH_9.2\r\n", get).err(),
        Some(HeadError::NotHttp1)
    );
    assert_eq!(
        parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n", get).err(),
        Some(HeadError::NotHttp1)
    );
    assert!(matches!(
        parse_response(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", get),
        Err(HeadError::Invalid(_))
    ));
    // Incomplete but HTTP/1 so far: read more.
    assert_eq!(
        parse_response(b"HTTP/1.", get).err(),
        Some(HeadError::Partial)
    );
}

/// What the parser notes as present is what the map holds (a lookup it lets the request path
/// skip could only have found nothing), and every tracked name is noted in any case.
#[test]
fn the_fields_noted_present_are_the_maps() {
    use crate::http::headers::Present;
    let heads = [
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nCONNECTION: te\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\nx-forwarded-for: ::1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.0\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
    ];
    let mut all = Present::NONE;
    for head in heads {
        let parsed = parse_request(head.as_bytes()).unwrap();
        assert_eq!(
            parsed.present,
            Present::scan(&parsed.parts.headers),
            "{head:?}"
        );
        all = all | parsed.present;
    }
    for name in [
        Present::CONNECTION,
        Present::TE,
        Present::UPGRADE,
        Present::X_FORWARDED_FOR,
        Present::CONTENT_LENGTH,
        Present::TRANSFER_ENCODING,
        Present::EXPECT,
    ] {
        assert!(all.has(name), "{name:?} never noted");
    }
    let plain = parse_request(heads[0].as_bytes()).unwrap().present;
    assert_eq!(plain, Present::NONE);
}
