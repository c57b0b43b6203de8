//! The access log: one line per request, formatted and written off the request path.
//!
//! Workers hand a `Record` (owned, cheap clones of the request's parts) to a bounded channel;
//! one writer task on the control runtime formats and writes the lines, batching flushes. A
//! full channel drops the record and counts it instead of slowing requests down. With
//! `access_log = "off"` no sink is installed and the request path builds no record at all.

use std::cell::OnceCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri, Version};
use tokio::sync::mpsc;

use crate::config::{AccessLogFormat, AccessLogTarget};

/// Records waiting for the writer at most; past that they are dropped (and counted).
const CHANNEL_CAPACITY: usize = 65_536;

/// One request, as logged.
#[derive(Debug)]
pub struct Record {
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub listener: Arc<str>,
    pub pool: Option<Arc<str>>,
    pub backend: Option<Arc<str>>,
    /// The client's region (`[[region]]`), when known.
    pub client_region: Option<Arc<str>>,
    /// The region of the backend that served the request, when it has one.
    pub served_region: Option<Arc<str>>,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    /// The `X-Request-Id` sent to the backend (kept from a trusted proxy, or made here).
    pub request_id: Option<HeaderValue>,
}

/// The sending side, cloned into every worker thread.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

thread_local! {
    static SINK: OnceCell<AccessLog> = const { OnceCell::new() };
}

impl AccessLog {
    /// Opens the target and spawns the writer on `control`; `None` when the log is off.
    pub fn start(
        target: &AccessLogTarget,
        format: AccessLogFormat,
        control: &tokio::runtime::Handle,
    ) -> std::io::Result<Option<AccessLog>> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        control.spawn(write_lines(rx, out, format, Arc::clone(&dropped)));
        Ok(Some(AccessLog { tx, dropped }))
    }

    /// Makes this log the current thread's sink (called once by each worker thread).
    pub fn install(self) {
        SINK.with(|sink| {
            let _ = sink.set(self);
        });
    }
}

/// Whether this thread logs requests (so the request path can skip building records).
#[inline]
pub fn enabled() -> bool {
    SINK.with(|sink| sink.get().is_some())
}

/// Queues a record on this thread's sink; never blocks.
pub fn emit(record: Record) {
    SINK.with(|sink| {
        if let Some(log) = sink.get() {
            if log.tx.try_send(record).is_err() {
                log.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

async fn write_lines(
    mut rx: mpsc::Receiver<Record>,
    out: Box<dyn Write + Send>,
    format: AccessLogFormat,
    dropped: Arc<AtomicU64>,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    let mut reported = 0;
    while let Some(record) = rx.recv().await {
        let mut next = Some(record);
        // Drain what is queued, then flush once.
        while let Some(record) = next {
            line.clear();
            match format {
                AccessLogFormat::Combined => format_combined(&record, &mut line),
                AccessLogFormat::Json => format_json(&record, &mut line),
            }
            let _ = out.write_all(line.as_bytes());
            next = rx.try_recv().ok();
        }
        let lost = dropped.load(Ordering::Relaxed);
        if lost != reported {
            tracing::warn!(
                dropped = lost - reported,
                "access log records dropped: writer too slow"
            );
            reported = lost;
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// NCSA combined format, plus the listener, pool, backend, duration, client region, served
/// region and request id:
/// `1.2.3.4 - - [23/Nov/2026:20:10:00 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl/8" web app 10.0.0.1:80 0.002 us-east us-west 5f0c...`
pub fn format_combined(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    let quoted = |v: &Option<HeaderValue>| {
        v.as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .replace('"', "\\\"")
    };
    let _ = writeln!(
        out,
        "{} - - [{}] \"{} {} {:?}\" {} {} \"{}\" \"{}\" {} {} {} {:.3} {} {} {}",
        r.client.to_canonical(),
        clf_time(r.time),
        r.method,
        r.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        r.version,
        r.status,
        r.bytes,
        quoted(&r.referer),
        quoted(&r.user_agent),
        r.listener,
        r.pool.as_deref().unwrap_or("-"),
        r.backend.as_deref().unwrap_or("-"),
        r.duration.as_secs_f64(),
        r.client_region.as_deref().unwrap_or("-"),
        r.served_region.as_deref().unwrap_or("-"),
        r.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
    );
}

/// One JSON object per line, the same fields as `format_combined` under stable names; absent
/// values are `null`. `time` is RFC 3339 (UTC, milliseconds).
pub fn format_json(r: &Record, out: &mut String) {
    let header = |v: &Option<HeaderValue>| {
        v.as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let value = serde_json::json!({
        "time": humantime::format_rfc3339_millis(r.time).to_string(),
        "client": r.client.to_canonical().to_string(),
        "method": r.method.as_str(),
        "uri": r.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "version": format!("{:?}", r.version),
        "status": r.status,
        "bytes": r.bytes,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "referer": header(&r.referer),
        "user_agent": header(&r.user_agent),
        "listener": &*r.listener,
        "pool": r.pool.as_deref(),
        "backend": r.backend.as_deref(),
        "client_region": r.client_region.as_deref(),
        "served_region": r.served_region.as_deref(),
        "request_id": header(&r.request_id),
    });
    out.push_str(&value.to_string());
    out.push('\n');
}

/// `23/Nov/2026:20:10:00 +0000`, from the RFC 3339 form humantime writes.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-23T20:10:00Z
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1);
    format!(
        "{}/{}/{}:{} +0000",
        iso.get(8..10).unwrap_or("01"),
        MONTHS[month.clamp(1, 12) - 1],
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line_has_every_field() {
        let r = Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_464_600), // 2026-11-23T20:10:00Z
            client: "127.0.0.1".parse().expect("ip"),
            method: Method::GET,
            uri: Uri::from_static("/a?b=1"),
            version: Version::HTTP_11,
            status: 200,
            bytes: 12,
            duration: Duration::from_millis(2),
            listener: Arc::from("web"),
            pool: Some(Arc::from("app")),
            backend: Some(Arc::from("10.0.0.1:80")),
            client_region: Some(Arc::from("us-east")),
            served_region: None,
            referer: None,
            user_agent: Some(HeaderValue::from_static("curl/8")),
            request_id: Some(HeaderValue::from_static("0123abcd")),
        };
        let mut line = String::new();
        format_json(&r, &mut line);
        let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        assert_eq!(v["time"], "2026-11-23T20:10:00.000Z");
        assert_eq!(v["uri"], "/a?b=1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["backend"], "10.0.0.1:80");
        assert_eq!(v["served_region"], serde_json::Value::Null);
        assert_eq!(v["user_agent"], "curl/8");
        assert_eq!(v["duration_ms"], 2.0);
        assert_eq!(v["request_id"], "0123abcd");
        let mut line = String::new();
        format_combined(&r, &mut line);
        assert_eq!(
            line,
            "127.0.0.1 - - [23/Nov/2026:20:10:00 +0000] \"GET /a?b=1 HTTP/1.1\" 200 12 \"-\" \"curl/8\" web app 10.0.0.1:80 0.002 us-east - 0123abcd\n"
        );
    }
}
