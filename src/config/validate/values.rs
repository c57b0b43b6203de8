//! Parsers for single config values: durations, addresses, CIDRs, hosts, paths, header names and
//! the enum-like strings.
//!
//! Each one takes the raw text and returns the typed value or a short message (`must be > 0`,
//! `not a duration ...`). They know nothing about keys or spans: `validate.rs` attaches those, so
//! every message has the same `file:line:col: key: message` shape and these stay trivially
//! testable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::{
    AccessLogFormat, AccessLogTarget, BalanceKind, HashKey, Http1Engine, OnDown, Protocol, RetryOn,
    TraceMode,
};

/// A message for the user; the caller adds file, line, column and key.
pub(super) type Msg = String;

/// The longest duration any key takes. Every duration is added to an `Instant` somewhere (a
/// deadline); `"18446744073709551615s"` passed `check` and then panicked every connection.
/// Thirty days is far beyond any timeout, grace or interval an operator means.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `"250ms"`, `"2s"`, `"1m"`: humantime syntax, so operators can write what they mean; at
/// most [`MAX_DURATION`].
pub(super) fn duration(text: &str) -> Result<Duration, Msg> {
    if text.trim().is_empty() {
        return Err("must be a duration such as \"250ms\", \"2s\" or \"1m\", got \"\"".into());
    }
    let d = humantime::parse_duration(text).map_err(|e| {
        format!("must be a duration such as \"250ms\", \"2s\" or \"1m\", got {text:?} ({e})")
    })?;
    if d > MAX_DURATION {
        return Err(format!("must be at most 30 days, got {text:?}"));
    }
    Ok(d)
}

/// A health check's `interval`: at least 10 ms (`"1ns"` checked in a busy loop), at most an
/// hour.
pub(super) fn check_interval(text: &str) -> Result<Duration, Msg> {
    duration_in(text, Duration::from_millis(10), Duration::from_secs(3600))
}

/// `shutdown_grace`: at most an hour (systemd and orchestrators give up long before).
pub(super) fn grace(text: &str) -> Result<Duration, Msg> {
    duration_in(text, Duration::ZERO, Duration::from_secs(3600))
}

/// A duration that must be > 0: a zero timeout would fail every request.
pub(super) fn positive_duration(text: &str) -> Result<Duration, Msg> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err("must be > 0".into());
    }
    Ok(d)
}

/// A duration within `min..=max`, said in the message as written by an operator.
pub(super) fn duration_in(text: &str, min: Duration, max: Duration) -> Result<Duration, Msg> {
    let d = duration(text)?;
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}, got {text:?}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// A client-side timeout: at least 100 ms (shorter cuts every real client), at most an hour
/// (longer lets idle sockets pile up as if there were none).
pub(super) fn client_timeout(text: &str) -> Result<Duration, Msg> {
    duration_in(text, Duration::from_millis(100), Duration::from_secs(3600))
}

/// An integer >= 0 that fits the target type.
pub(super) fn non_negative<T: TryFrom<i64>>(value: i64) -> Result<T, Msg> {
    if value < 0 {
        return Err("must be >= 0".into());
    }
    T::try_from(value).map_err(|_| format!("is too large ({value})"))
}

/// An integer > 0 that fits the target type.
pub(super) fn positive<T: TryFrom<i64>>(value: i64) -> Result<T, Msg> {
    if value <= 0 {
        return Err("must be > 0".into());
    }
    T::try_from(value).map_err(|_| format!("is too large ({value})"))
}

/// `[[pool]] max_connections`: per backend; a million is beyond any one backend.
pub(super) const MAX_UPSTREAM_CONNECTIONS: i64 = 1_000_000;
/// `[[pool]] max_queue`: waiters per backend (each a parked request).
pub(super) const MAX_UPSTREAM_QUEUE: i64 = 1_000_000;

/// An integer in `0..=max` that fits the target type.
pub(super) fn at_most<T: TryFrom<i64>>(value: i64, max: i64) -> Result<T, Msg> {
    if !(0..=max).contains(&value) {
        return Err(format!("must be between 0 and {max}, got {value}"));
    }
    T::try_from(value).map_err(|_| format!("is too large ({value})"))
}

/// `[[pool]] queue_timeout`: 0 (no wait: 503 at once when full) up to a minute (a request
/// parked longer has long been given up by its client).
pub(super) fn queue_timeout(text: &str) -> Result<Duration, Msg> {
    duration_in(text, Duration::ZERO, Duration::from_secs(60))
}

/// `ip:port`, with IPv6 in brackets. Names are not addresses: a name is a `dns` backend (`validate/dns.rs`).
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, Msg> {
    text.parse().map_err(|_| {
        format!("must be an address such as \"10.0.0.1:8080\" or \"[::1]:8080\", got {text:?}")
    })
}

/// A backend address: like [`socket_addr`], but port 0 cannot be connected to; a host name
/// is pointed at the `dns` key that takes one.
pub(super) fn backend_addr(text: &str) -> Result<SocketAddr, Msg> {
    let addr = socket_addr(text).map_err(|m| {
        let named = text.rsplit_once(':').is_some_and(|(host, port)| {
            port.parse::<u16>().is_ok()
                && host.parse::<std::net::IpAddr>().is_err()
                && !host.starts_with('[')
        });
        if named {
            format!("{m} (a host name is resolved by DNS: write {{ dns = {text:?} }})")
        } else {
            m
        }
    })?;
    if addr.port() == 0 {
        return Err("port must not be 0".into());
    }
    Ok(addr)
}

/// A CIDR (`10.0.0.0/8`) or a plain IP (which becomes a /32 or /128). Host bits are cleared so
/// `10.1.2.3/8` means the network `10.0.0.0/8`, which is what was meant.
pub(super) fn cidr(text: &str) -> Result<IpNet, Msg> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("must be a CIDR such as \"10.0.0.0/8\" or an IP, got {text:?}"))
}

/// `"stdout"`, `"off"`, or a file path.
pub(super) fn access_log(text: &str) -> Result<AccessLogTarget, Msg> {
    match text {
        "stdout" => Ok(AccessLogTarget::Stdout),
        "off" => Ok(AccessLogTarget::Off),
        "" => Err("must be \"stdout\", \"off\" or a file path, got \"\"".into()),
        path => Ok(AccessLogTarget::File(PathBuf::from(path))),
    }
}

/// An `ip:port` for the admin server, or `""` for none.
pub(super) fn admin(text: &str) -> Result<Option<SocketAddr>, Msg> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("must be \"ip:port\" or \"\" (off), got {text:?}"))
}

/// `"combined"` or `"json"`.
pub(super) fn access_log_format(text: &str) -> Result<AccessLogFormat, Msg> {
    match text {
        "combined" => Ok(AccessLogFormat::Combined),
        "json" => Ok(AccessLogFormat::Json),
        other => Err(format!("must be \"combined\" or \"json\", got {other:?}")),
    }
}

/// `"hyper"` or `"fulcrum"`.
pub(super) fn http1_engine(text: &str) -> Result<Option<Http1Engine>, Msg> {
    match text {
        "hyper" => Ok(Some(Http1Engine::Hyper)),
        "fulcrum" => Ok(Some(Http1Engine::Fulcrum)),
        other => Err(format!("must be \"hyper\" or \"fulcrum\", got {other:?}")),
    }
}

/// `trace` of a listener: `"pass"` or `"start"`.
pub(super) fn trace(text: &str) -> Result<TraceMode, Msg> {
    match text {
        "pass" => Ok(TraceMode::Pass),
        "start" => Ok(TraceMode::Start),
        other => Err(format!("must be \"pass\" or \"start\", got {other:?}")),
    }
}

/// Only `"http"` today; `"tcp"` is a known future value, so it gets a clearer message.
pub(super) fn protocol(text: &str) -> Result<Protocol, Msg> {
    match text {
        "http" => Ok(Protocol::Http),
        "tcp" => Ok(Protocol::Tcp),
        other => Err(format!("must be \"http\" or \"tcp\", got {other:?}")),
    }
}

/// The balancing algorithm.
pub(super) fn balance(text: &str) -> Result<BalanceKind, Msg> {
    match text {
        "round_robin" => Ok(BalanceKind::RoundRobin),
        "least_conn" => Ok(BalanceKind::LeastConn),
        "random_two" => Ok(BalanceKind::RandomTwo),
        "consistent_hash" => Ok(BalanceKind::ConsistentHash),
        "sticky_cookie" => Ok(BalanceKind::StickyCookie),
        other => Err(format!(
            "must be \"round_robin\", \"least_conn\", \"random_two\", \"consistent_hash\" or \"sticky_cookie\", got {other:?}"
        )),
    }
}

/// `hash_key`: `"client_ip"`, `"header:NAME"`, `"cookie:NAME"` or `"path"`.
pub(super) fn hash_key(text: &str) -> Result<HashKey, Msg> {
    let usage = || {
        format!("must be \"client_ip\", \"header:NAME\", \"cookie:NAME\" or \"path\", got {text:?}")
    };
    match text.split_once(':') {
        None if text == "client_ip" => Ok(HashKey::ClientIp),
        None if text == "path" => Ok(HashKey::Path),
        Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("header: must name a valid HTTP header, got {name:?}")),
        Some(("cookie", name)) => cookie_name(name).map(HashKey::Cookie),
        _ => Err(usage()),
    }
}

/// A cookie name: an RFC 6265 token (visible ASCII except separators), non-empty.
pub(super) fn cookie_name(text: &str) -> Result<String, Msg> {
    let separator = |b: u8| b"()<>@,;:\\\"/[]?={} \t".contains(&b);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic() && !separator(b)) {
        return Err(format!(
            "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), got {text:?}"
        ));
    }
    Ok(text.to_string())
}

/// A route host: exact (`example.com`) or a leading wildcard (`*.example.com`), lower-cased
/// because hosts compare case-insensitively. Ports are rejected: routing ignores the port, and
/// accepting one would silently never match.
pub(super) fn host(text: &str) -> Result<String, Msg> {
    let host = text.to_ascii_lowercase();
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.contains(':') {
        return Err(format!("must be a host name without a port, got {text:?}"));
    }
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "must be a host name such as \"example.com\" or \"*.example.com\", got {text:?}"
        ));
    }
    Ok(host)
}

/// A path prefix: must start with `/`, as every request path does (else it would never match).
pub(super) fn path_prefix(text: &str) -> Result<String, Msg> {
    if !text.starts_with('/') {
        return Err(format!("must start with \"/\", got {text:?}"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not contain spaces or control characters, got {text:?}"
        ));
    }
    Ok(text.to_string())
}

/// A header name, lower-cased (HTTP header names are case-insensitive; `http` stores them lower).
pub(super) fn header_name(text: &str) -> Result<String, Msg> {
    http::HeaderName::from_bytes(text.as_bytes())
        .map(|n| n.as_str().to_string())
        .map_err(|_| format!("must be a valid HTTP header name, got {text:?}"))
}

/// A header value: kept as written, but it must be something a request could carry.
pub(super) fn header_value(text: &str) -> Result<String, Msg> {
    http::HeaderValue::from_str(text)
        .map(|_| text.to_string())
        .map_err(|_| format!("must be a valid HTTP header value, got {text:?}"))
}

/// A listener, pool or region name: ASCII letters, digits, `-`, `_` and `.`, non-empty.
///
/// Names appear in logs, metrics labels, error messages, admin URLs and the status page; a
/// charset with no quote, angle bracket, slash, space or control character is inert in every
/// one of them (issue 14: a pool named `x');alert(1);//` ran script on the status page).
pub(super) fn name(text: &str) -> Result<String, Msg> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !text.bytes().all(allowed) {
        return Err(format!(
            "must be ASCII letters, digits, \"-\", \"_\" or \".\", got {text:?}"
        ));
    }
    Ok(text.to_string())
}

/// `on_down` of a tcp pool.
/// One `retry_on` item, applied to `on`.
pub(super) fn retry_on(text: &str) -> Result<fn(&mut RetryOn), Msg> {
    Ok(match text {
        "connect" => |on: &mut RetryOn| on.connect = true,
        "reset" => |on: &mut RetryOn| on.reset = true,
        "502" => |on: &mut RetryOn| on.statuses[0] = true,
        "503" => |on: &mut RetryOn| on.statuses[1] = true,
        "504" => |on: &mut RetryOn| on.statuses[2] = true,
        other => {
            return Err(format!(
                "must be one of \"connect\", \"reset\", \"502\", \"503\", \"504\", got {other:?}"
            ))
        }
    })
}

pub(super) fn on_down(text: &str) -> Result<OnDown, Msg> {
    match text {
        "keep" => Ok(OnDown::Keep),
        "close" => Ok(OnDown::Close),
        other => Err(format!("must be \"keep\" or \"close\", got {other:?}")),
    }
}
