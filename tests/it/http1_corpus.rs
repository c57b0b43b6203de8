//! Issue 17's corpus: requests (valid, odd and malformed, the smuggling corpus included) sent
//! through Fulcrum's HTTP/1 engine must reach the backend as the requests of
//! `http1_corpus.expected` (method, target, header fields, body and its framing), and the
//! clients must get its statuses, in its order. It began as the differential test against
//! hyper's HTTP/1 path: the file holds what both did (they agreed but on
//! [`KNOWN_DIFFERENCES`]), so the corpus keeps that reference now hyper's path is gone.
//!
//! The backend parses what it receives itself (httparse plus a plain chunked decoder) and
//! records a normalised form: header names lowercased and sorted, the body decoded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::backend::find;
use crate::support::proxy::{config, listener, pool, Proxy};

/// What the backend saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    chunked: bool,
    body: Vec<u8>,
}

/// A backend recording every request it parses; answers each `200` with a small body.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, Arc::clone(&all)));
            }
        });
        Recorder {
            addr,
            seen,
            _task: task,
        }
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn fill(stream: &mut TcpStream, data: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 8192];
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            data.extend_from_slice(&buf[..n]);
            true
        }
    }
}

async fn record(mut stream: TcpStream, all: Arc<Mutex<Vec<Seen>>>) {
    let mut data = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = find(&data, b"\r\n\r\n") {
                break end + 4;
            }
            if !fill(&mut stream, &mut data).await {
                return;
            }
        };
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut slots);
        if !matches!(req.parse(&data[..end]), Ok(httparse::Status::Complete(_))) {
            all.lock().unwrap().push(Seen {
                line: format!("UNPARSEABLE {:?}", String::from_utf8_lossy(&data[..end])),
                headers: Vec::new(),
                chunked: false,
                body: Vec::new(),
            });
            return;
        }
        let line = format!(
            "{} {} HTTP/1.{}",
            req.method.unwrap_or(""),
            req.path.unwrap_or(""),
            req.version.unwrap_or(9)
        );
        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        headers.sort();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        data.drain(..end);
        let mut body = Vec::new();
        if chunked {
            loop {
                let Some(eol) = find(&data, b"\r\n") else {
                    if !fill(&mut stream, &mut data).await {
                        return;
                    }
                    continue;
                };
                let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
                let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
                let size = usize::from_str_radix(&size_text, 16).unwrap_or(0);
                while data.len() < eol + 2 + size + 2 {
                    if !fill(&mut stream, &mut data).await {
                        return;
                    }
                }
                if size == 0 {
                    // Trailers (none expected from either proxy) up to the empty line.
                    while find(&data[eol..], b"\r\n\r\n").is_none() {
                        if !fill(&mut stream, &mut data).await {
                            return;
                        }
                    }
                    let at = eol + find(&data[eol..], b"\r\n\r\n").unwrap() + 4;
                    data.drain(..at);
                    break;
                }
                body.extend_from_slice(&data[eol + 2..eol + 2 + size]);
                data.drain(..eol + 2 + size + 2);
            }
        } else {
            while data.len() < length {
                if !fill(&mut stream, &mut data).await {
                    return;
                }
            }
            body = data.drain(..length).collect();
        }
        // Framing headers are compared through `chunked` and the body.
        headers.retain(|(n, _)| n != "content-length" && n != "transfer-encoding");
        // Each engine generates its own request ids: compared by shape, not value.
        for (n, v) in &mut headers {
            if n == "x-request-id" && v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                *v = "<generated>".to_string();
            }
        }
        all.lock().unwrap().push(Seen {
            line,
            headers,
            chunked,
            body,
        });
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Sends `bytes` and collects the status lines the proxy answers until it closes or goes
/// quiet.
async fn statuses(addr: SocketAddr, bytes: &[u8]) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n @ 1..)) =
        tokio::time::timeout(Duration::from_millis(400), stream.read(&mut buf)).await
    {
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .split("\r\n")
        .filter(|l| l.starts_with("HTTP/1."))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

const CORPUS: &[(&str, &str)] = &[
    ("get", "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-two: two words \r\n\r\n"),
    ("head", "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("http/1.0", "GET /ten HTTP/1.0\r\nHost: h\r\n\r\n"),
    ("http/1.0 without host", "GET /ten HTTP/1.0\r\n\r\n"),
    ("lowercase method", "get /lower HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("absolute-form", "GET http://h.example/abs?q HTTP/1.1\r\nHost: other\r\n\r\n"),
    ("options asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("post content-length", "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
    ("post zero length", "POST /zero HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
    ("same content-length twice", "POST /cl2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("chunked", "POST /ch HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("chunked with extensions", "POST /ext HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n"),
    ("chunked with trailers", "POST /tr HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"),
    ("chunked upper-case hex", "POST /hex HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"),
    ("expect 100-continue", "POST /exp HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"),
    ("pipelined", "GET /p1 HTTP/1.1\r\nHost: h\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\n\r\nPOST /p3 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"),
    ("connection close", "GET /close HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("hop-by-hop named by connection", "GET /hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\n\r\n"),
    ("te trailers", "GET /te HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n"),
    ("x-forwarded-for appended", "GET /xff HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\n\r\n"),
    ("via appended", "GET /via HTTP/1.1\r\nHost: h\r\nVia: 1.1 other\r\n\r\n"),
    ("h2c upgrade dropped", "GET /h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
    ("empty header value", "GET /empty HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n"),
    ("repeated header", "GET /rep HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n"),
    // Malformed: refused alike, nothing upstream.
    ("conflicting content-length", "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("content-length and chunked", "POST /clte HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("chunked and content-length", "POST /tecl HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("bad chunk size", "POST /chunk HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("negative chunk size", "POST /neg HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    ("chunk size overflow", "POST /ovf HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("chunk size with bare LF", "POST /lf HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    ("plus content-length", "POST /plus HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello"),
    ("hex content-length", "POST /hexcl HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello"),
    ("transfer-encoding not chunked", "POST /gzip HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
    ("chunked not last", "POST /notlast HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("obs-fold", "GET /fold HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n"),
    ("bare LF head", "GET /bare HTTP/1.1\nHost: h\n\n"),
    ("space before colon", "GET /sp HTTP/1.1\r\nHost: h\r\nX-Sp : 1\r\n\r\n"),
    ("two Host headers", "GET /hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("missing Host", "GET /nohost HTTP/1.1\r\n\r\n"),
    ("a bare word target", "GET echo HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("authority-form for GET", "GET h.example:80 HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("asterisk-form for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("a scheme other than http(s)", "GET ftp://h.example/x HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("userinfo in the target", "GET http://user@h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n"),
    ("connect", "CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n"),
    ("http/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
    ("nul in a header", "GET /nul HTTP/1.1\r\nHost: h\r\nX-Nul: a\0b\r\n\r\n"),
];

/// Cases where the engine differed from hyper's path on purpose, when both were there (the
/// expected file holds the engine's outcome). An entry is (case, why).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "expect 100-continue",
        "the body came with the head: the engine sends no 100 (RFC 9110 10.1.1 allows \
         omitting it once body bytes arrived; nginx does the same), hyper sends one",
    ),
    (
        "bare LF head",
        "hyper accepts LF-only line ends and forwards; the engine refuses them with 400 \
         (issue 17: a peer that reads CRLF only sees another message)",
    ),
];

/// One case's outcome as the expected file writes it: the statuses the client got, then
/// each request the backend saw (its line, framing, body and sorted header fields).
fn describe(case: &str, statuses: &[String], seen: &[Seen]) -> String {
    let mut out = format!("## {case}\nstatuses: {statuses:?}\n");
    for s in seen {
        out.push_str(&format!(
            "backend: {} chunked={} body={:?}\n",
            s.line,
            s.chunked,
            String::from_utf8_lossy(&s.body)
        ));
        for (name, value) in &s.headers {
            out.push_str(&format!("  {name}: {value:?}\n"));
        }
    }
    out
}

/// The file the corpus's outcomes are compared with. It was written while both engines were
/// there, from outcomes they agreed on (but the cases of `KNOWN_DIFFERENCES`, where it holds
/// the engine's); `FULCRUM_BLESS=1` writes it again from what the engine does now (review
/// the diff: every changed line is a change in what clients or backends see).
const EXPECTED: &str = "tests/it/http1_corpus.expected";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_forwards_the_corpus_as_expected() {
    // Every known difference is a case of the corpus.
    for (case, _) in KNOWN_DIFFERENCES {
        assert!(CORPUS.iter().any(|(c, _)| c == case), "{case}");
    }
    let recorder = Recorder::start().await;
    let proxy = Proxy::start(config(listener(), vec![pool("p", &[recorder.addr])]));
    let mut got = String::new();
    for (case, request) in CORPUS {
        let statuses = statuses(proxy.addr, request.as_bytes()).await;
        got.push_str(&describe(case, &statuses, &recorder.take()));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTED);
    if std::env::var_os("FULCRUM_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    let differing: Vec<&str> = got
        .split("## ")
        .zip(expected.split("## "))
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.lines().next().unwrap_or(""))
        .collect();
    assert!(
        got == expected,
        "cases differing from {EXPECTED}: {differing:?}\n--- now:\n{got}"
    );
}
