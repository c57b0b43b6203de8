//! Tests of the framing tracker: every stream whole, split at every byte, and byte by byte.

#![allow(clippy::unwrap_used)]
use super::*;

/// What a byte stream leaves behind: the flagged index, heads counted, still tracking.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    flagged: Option<u32>,
    heads: u32,
    tracking: bool,
}

fn feed_pieces(pieces: &[&[u8]]) -> Outcome {
    let mut tracker = Tracker::new();
    let mut flagged = None;
    for piece in pieces {
        if !tracker.is_tracking() {
            break;
        }
        if let Some(index) = tracker.feed(piece) {
            assert!(flagged.is_none(), "flagged twice");
            flagged = Some(index);
        }
    }
    Outcome {
        flagged,
        heads: tracker.heads,
        tracking: tracker.is_tracking(),
    }
}

/// Feeds `stream` whole, split at every position, and byte by byte; all must agree.
fn follow(stream: &[u8]) -> Outcome {
    let whole = feed_pieces(&[stream]);
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(feed_pieces(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(feed_pieces(&bytes), whole, "byte by byte");
    whole
}

const GET: &str = "GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\n";
const CLTE: &str = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
const TECL: &str = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

fn concat(parts: &[&str]) -> Vec<u8> {
    parts.concat().into_bytes()
}

#[test]
fn two_gets_are_not_flagged() {
    let out = follow(&concat(&[GET, GET]));
    assert_eq!(
        out,
        Outcome {
            flagged: None,
            heads: 2,
            tracking: true
        }
    );
}

#[test]
fn content_length_body_is_skipped() {
    // The body looks like a CL+TE head; it must be skipped, not parsed.
    let body = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let post = format!(
        "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let out = follow(&concat(&[&post, GET]));
    assert_eq!(
        out,
        Outcome {
            flagged: None,
            heads: 2,
            tracking: true
        }
    );
}

#[test]
fn chunked_body_with_trailer_then_ambiguous_request_is_flagged_at_index_1() {
    let post = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                3\r\nabc\r\n\
                A;name=value\r\n0123456789\r\n\
                1 \r\n\n\r\n\
                0\r\nX-Trailer: 1\r\nContent-Length: 9\r\n\r\n";
    let out = follow(&concat(&[post, CLTE]));
    assert_eq!(
        out,
        Outcome {
            flagged: Some(1),
            heads: 2,
            tracking: false
        }
    );
    // Without the trailer too.
    let post =
        "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    assert_eq!(follow(&concat(&[post, GET, TECL])).flagged, Some(2));
}

#[test]
fn both_header_orders_are_flagged() {
    for stream in [CLTE, TECL] {
        let out = follow(stream.as_bytes());
        assert_eq!(
            out,
            Outcome {
                flagged: Some(0),
                heads: 1,
                tracking: false
            }
        );
    }
    // Any Content-Length value, any case.
    let odd = "POST / HTTP/1.1\r\ncontent-length: x\r\nTRANSFER-ENCODING: chunked\r\n\r\n";
    assert_eq!(follow(odd.as_bytes()).flagged, Some(0));
}

#[test]
fn pipelined_requests_in_one_read() {
    let post = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    let stream = concat(&[GET, post, GET, CLTE]);
    assert_eq!(feed_pieces(&[&stream]).flagged, Some(3));
    assert_eq!(follow(&stream).flagged, Some(3));
}

#[test]
fn h2_preface_stops_tracking() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut stream = preface.to_vec();
    stream.extend_from_slice(CLTE.as_bytes());
    let out = follow(&stream);
    assert_eq!(
        out,
        Outcome {
            flagged: None,
            heads: 0,
            tracking: false
        }
    );
}

#[test]
fn accepted_upgrade_stops_at_the_first_tunnelled_frame() {
    let upgrade =
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let mut stream = upgrade.as_bytes().to_vec();
    stream.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, b'h', b'e', b'l', b'l', b'o']);
    let out = follow(&stream);
    assert_eq!(
        out,
        Outcome {
            flagged: None,
            heads: 1,
            tracking: false
        }
    );
}

#[test]
fn refused_upgrade_keeps_tracking() {
    // hyper keeps the connection when the upgrade is answered without 101.
    let upgrade =
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(follow(&concat(&[upgrade, CLTE])).flagged, Some(1));
    let connect = "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
    assert_eq!(follow(&concat(&[connect, TECL])).flagged, Some(1));
}

#[test]
fn what_hyper_rejects_stops_tracking() {
    let rejected = [
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "\x16\x03\x01\x02\x00",
    ];
    for stream in rejected {
        let out = follow(stream.as_bytes());
        assert!(!out.tracking, "{stream:?}: {out:?}");
        assert_eq!(out.flagged, None, "{stream:?}");
    }
    // Agreeing duplicates are fine.
    let same =
        "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\n\r\n";
    assert_eq!(follow(same.as_bytes()).heads, 2);
}

#[test]
fn oversized_head_stops_tracking() {
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(MAX_HEAD + 10, b'a');
    for pieces in [vec![&head[..]], head.chunks(1000).collect()] {
        let out = feed_pieces(&pieces);
        assert!(!out.tracking);
    }
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert!(!feed_pieces(&[head.as_bytes()]).tracking);
}

#[test]
fn split_head_buffer_is_released_when_large() {
    let mut tracker = Tracker::new();
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(10_000, b'a');
    tracker.feed(&head);
    assert!(!tracker.buf.is_empty());
    tracker.feed(b"\r\n\r\n");
    assert_eq!((tracker.buf.capacity(), tracker.heads), (0, 1));
}

#[tokio::test]
async fn the_wrapper_flags_what_it_reads() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (client, server) = tokio::io::duplex(64);
    let flags = Arc::new(FramingFlags::new());
    let mut io = FramingIo::new(server, Arc::clone(&flags));
    let stream = concat(&[GET, CLTE]);
    let writer = tokio::spawn(async move {
        let mut client = client;
        for piece in stream.chunks(7) {
            client.write_all(piece).await.unwrap();
        }
    });
    let mut read = Vec::new();
    let mut buf = [0u8; 13];
    loop {
        let n = io.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buf[..n]);
    }
    writer.await.unwrap();
    assert_eq!(read, concat(&[GET, CLTE]), "bytes pass through unchanged");
    assert!(!flags.is_ambiguous(0));
    assert!(flags.is_ambiguous(1));
    assert!(!flags.is_ambiguous(2));
    assert!(!flags.is_ambiguous(u32::MAX));
}

/// A partial head of `MAX_HEAD` bytes stops tracking; whether its request line ended decides
/// between 414 and hyper's 431. Whole, in pieces, and after empty lines (which httparse skips).
#[test]
fn a_request_line_that_fills_the_head_limit_is_told_from_a_header_block() {
    let mut line = b"GET /".to_vec();
    line.resize(MAX_HEAD + 10, b'a');
    let mut after_empty = b"\r\n\r\nGET /".to_vec();
    after_empty.resize(MAX_HEAD, b'a');
    let mut header = b"GET / HTTP/1.1\r\nX: ".to_vec();
    header.resize(MAX_HEAD, b'a');
    for (stream, too_long) in [(&line, true), (&after_empty, true), (&header, false)] {
        let pieces: Vec<Vec<&[u8]>> = vec![
            vec![&stream[..]],
            stream.chunks(1000).collect(),
            vec![&stream[..MAX_HEAD - 1], &stream[MAX_HEAD - 1..]],
        ];
        for pieces in pieces {
            let mut tracker = Tracker::new();
            for piece in &pieces {
                tracker.feed(piece);
            }
            assert!(!tracker.is_tracking());
            assert_eq!(tracker.request_line_too_long(), too_long);
        }
    }
    // One byte short of the limit: still waiting for the rest.
    let mut tracker = Tracker::new();
    tracker.feed(&line[..MAX_HEAD - 1]);
    assert!(tracker.is_tracking() && !tracker.request_line_too_long());
}

/// hyper's automatic 431 goes out as 414 after an over-long request line (through a pipe small
/// enough to split the rewritten line), and unchanged otherwise.
#[tokio::test]
async fn the_wrapper_turns_hypers_431_into_414_after_an_over_long_request_line() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HYPER: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
    for (request_line_too_long, want) in [
        (
            true,
            &b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n"[..],
        ),
        (false, HYPER),
    ] {
        let (client, server) = tokio::io::duplex(16);
        let mut io = FramingIo::new(server, Arc::new(FramingFlags::new()));
        let mut head = match request_line_too_long {
            true => b"GET /".to_vec(),
            false => b"GET / HTTP/1.1\r\nX: ".to_vec(),
        };
        head.resize(MAX_HEAD, b'a');
        let proxy = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut read = 0;
            while read < MAX_HEAD {
                read += io.read(&mut buf).await.unwrap();
            }
            io.write_all(HYPER).await.unwrap();
            io.shutdown().await.unwrap();
        });
        let (mut rx, mut tx) = tokio::io::split(client);
        let writer = tokio::spawn(async move { tx.write_all(&head).await.unwrap() });
        let mut response = Vec::new();
        rx.read_to_end(&mut response).await.unwrap();
        writer.await.unwrap();
        proxy.await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&response),
            String::from_utf8_lossy(want)
        );
    }
}
