//! Raw serde mirror of the TOML file, with spans.
//!
//! These types say which keys exist and nothing more: every struct denies unknown fields (a typo
//! must not be silently ignored), and every value is wrapped in [`Spanned`] so `validate.rs` can
//! point at the exact line and column of a bad value. Values whose *meaning* can be wrong
//! (durations, addresses, names, enums, integer ranges) are kept as plain strings and `i64`s here
//! so that serde does not stop at the first bad one: validation checks them all and reports every
//! problem at once. Required keys are `Option`s for the same reason; a missing one is reported by
//! validation, pointing at its table. Nothing outside `config/` sees these types.

use serde::Deserialize;
use toml::Spanned;

/// A string value with its location.
pub(super) type Str = Spanned<String>;
/// An integer value with its location; signed so a negative number is a validation error with a
/// clear message rather than a serde type error.
pub(super) type Int = Spanned<i64>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub global: Option<Spanned<RawGlobal>>,
    #[serde(default)]
    pub listener: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub pool: Vec<Spanned<RawPool>>,
    #[serde(default)]
    pub region: Vec<Spanned<RawRegion>>,
    pub geo: Option<Spanned<RawGeo>>,
    pub gslb: Option<Spanned<super::gslb::RawGslb>>,
}

/// `[[region]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegion {
    pub name: Option<Str>,
    pub cidrs: Option<Vec<Str>>,
    pub countries: Option<Vec<Str>>,
    pub failover: Option<Vec<Str>>,
    /// The region's public addresses, for `[gslb]` answers.
    pub vips: Option<Vec<Str>>,
}

/// `[geo]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGeo {
    pub mmdb: Option<Str>,
}

/// `[global]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub workers: Option<Int>,
    pub access_log: Option<Str>,
    pub shutdown_grace: Option<Str>,
    pub trusted_proxies: Option<Vec<Str>>,
    pub client_header_timeout: Option<Str>,
    pub client_idle_timeout: Option<Str>,
    pub client_send_timeout: Option<Str>,
    pub client_body_timeout: Option<Str>,
    pub admin: Option<Str>,
    pub admin_token_file: Option<Str>,
    pub access_log_format: Option<Str>,
    pub state_dir: Option<Str>,
    pub http1_engine: Option<Str>,
    /// DNS servers `"ip:port"` (or `"ip"`) for discovery; empty = /etc/resolv.conf.
    pub resolvers: Option<Vec<Str>>,
}

/// `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub name: Option<Str>,
    pub bind: Option<Str>,
    pub protocol: Option<Str>,
    pub pool: Option<Str>,
    pub max_connections: Option<Int>,
    pub max_request_body: Option<Int>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub redirect_https: Option<Spanned<bool>>,
    pub trace: Option<Str>,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

/// `[listener.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// Spanned as a whole so an empty list can be pointed at.
    pub certs: Option<Spanned<Vec<Spanned<RawCert>>>>,
    pub min_version: Option<Str>,
    pub client_ca: Option<Str>,
    pub client_auth: Option<Str>,
    pub hsts: Option<Str>,
    pub acme: Option<Spanned<super::acme::RawAcme>>,
}

/// One entry of `certs = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    pub cert: Option<Str>,
    pub key: Option<Str>,
}

/// `[listener.limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub requests_per_second: Option<Int>,
    pub burst: Option<Int>,
    pub connections_per_client: Option<Int>,
}

/// `[[listener.route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub sni: Option<Str>,
    pub host: Option<Str>,
    pub path_prefix: Option<Str>,
    pub header: Option<Spanned<RawHeader>>,
    pub pool: Option<Str>,
}

/// `header = { name = "...", value = "..." }` of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    pub name: Option<Str>,
    pub value: Option<Str>,
}

/// `[[pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub name: Option<Str>,
    pub balance: Option<Str>,
    pub retries: Option<Int>,
    pub retry_on: Option<Vec<Str>>,
    pub connect_timeout: Option<Str>,
    pub request_timeout: Option<Str>,
    pub idle_timeout: Option<Str>,
    pub max_connections: Option<Int>,
    pub max_queue: Option<Int>,
    pub queue_timeout: Option<Str>,
    pub hash_key: Option<Str>,
    pub sticky_cookie: Option<Str>,
    /// Spanned as a whole so an empty list can be pointed at.
    pub backends: Option<Spanned<Vec<Spanned<RawBackend>>>>,
    pub backup: Option<Str>,
    pub slow_start: Option<Str>,
    pub fail_open: Option<Spanned<bool>>,
    pub health: Option<Spanned<RawHealth>>,
    pub passive: Option<Spanned<RawPassive>>,
    /// `{ us-east = 70, us-west = 30 }`, in file order.
    pub region_split: Option<Spanned<std::collections::BTreeMap<Str, Int>>>,
    pub send_proxy: Option<Spanned<bool>>,
    pub on_down: Option<Str>,
    /// `"http1"` | `"h2c"` | `"h2"` | `"auto"`.
    pub protocol: Option<Str>,
    pub tls: Option<Spanned<RawPoolTls>>,
    pub dns: Option<Spanned<RawPoolDns>>,
}

/// `[pool.dns]`: re-resolution of the pool's `dns` and `srv` backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoolDns {
    pub min_ttl: Option<Str>,
    pub max_ttl: Option<Str>,
    pub require: Option<Spanned<bool>>,
}

/// `[pool.tls]`: TLS to the backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoolTls {
    pub ca: Option<Str>,
    pub server_name: Option<Str>,
    pub verify: Option<Spanned<bool>>,
    pub cert: Option<Str>,
    pub key: Option<Str>,
}

/// `[pool.health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub kind: Option<Str>,
    pub path: Option<Str>,
    pub expect_status: Option<Str>,
    pub send: Option<Str>,
    pub expect: Option<Str>,
    pub role: Option<Str>,
    pub user: Option<Str>,
    pub database: Option<Str>,
    pub password_file: Option<Str>,
    pub max_lag: Option<Str>,
    /// grpc: the service name asked about.
    pub service: Option<Str>,
    pub port: Option<Int>,
    pub interval: Option<Str>,
    pub timeout: Option<Str>,
    pub rise: Option<Int>,
    pub fall: Option<Int>,
}

/// `[pool.passive]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    pub consecutive_failures: Option<Int>,
    pub eject_for: Option<Str>,
}

/// One entry of `backends = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub address: Option<Str>,
    /// `"name:port"`: A and AAAA records, re-resolved on their TTL.
    pub dns: Option<Str>,
    /// `"_svc._proto.name"`: SRV records (targets, ports, weights).
    pub srv: Option<Str>,
    pub name: Option<Str>,
    pub weight: Option<Int>,
    pub region: Option<Str>,
}

/// Unknown keys reported from one file at most; past this the next one ends the parse.
const MAX_UNKNOWN_KEYS: usize = 100;

/// What [`parse`] found: every unknown key, and the raw mirror without them.
pub(super) struct Parsed {
    /// One serde "unknown field" error per unknown key, each with the key's span.
    pub unknown_keys: Vec<toml::de::Error>,
    /// The file read with the unknown keys left out; `Err` at a syntax error or a value of the
    /// wrong TOML type (serde cannot continue past it, so this is at most one error).
    pub raw: Result<RawFile, toml::de::Error>,
}

/// Parses the text into the raw mirror, reporting every unknown key at once.
///
/// Serde's `deny_unknown_fields` stops at the first unknown key, so an operator fixing a file
/// with three typos needed three runs. Each unknown key found is left out of the parsed
/// document (found by its span) and the document is read again, until none is left; the text
/// is parsed once.
pub(super) fn parse(text: &str) -> Parsed {
    let mut unknown_keys = Vec::new();
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            return Parsed {
                unknown_keys,
                raw: Err(e),
            }
        }
    };
    loop {
        let e = match RawFile::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Err(e) if is_unknown_key(&e) && unknown_keys.len() < MAX_UNKNOWN_KEYS => e,
            raw => return Parsed { unknown_keys, raw },
        };
        // A key that cannot be found to leave out would be met again: the last error.
        if !e
            .span()
            .is_some_and(|span| remove_key(doc.get_mut(), &span))
        {
            return Parsed {
                unknown_keys,
                raw: Err(e),
            };
        }
        unknown_keys.push(e);
    }
}

/// Whether `e` is serde's "unknown field" error (`deny_unknown_fields`).
fn is_unknown_key(e: &toml::de::Error) -> bool {
    e.message().starts_with("unknown field `")
}

/// Removes the key whose span is `span` from `table` or a table nested in it; whether it did.
fn remove_key(table: &mut toml::de::DeTable<'_>, span: &std::ops::Range<usize>) -> bool {
    if let Some(key) = table.keys().find(|k| k.span() == *span).cloned() {
        table.remove(&key);
        return true;
    }
    table
        .iter_mut()
        .any(|(_, v)| remove_key_in(v.get_mut(), span))
}

fn remove_key_in(value: &mut toml::de::DeValue<'_>, span: &std::ops::Range<usize>) -> bool {
    match value {
        toml::de::DeValue::Table(t) => remove_key(t, span),
        toml::de::DeValue::Array(a) => a.iter_mut().any(|v| remove_key_in(v.get_mut(), span)),
        _ => false,
    }
}
