//! Raw file -> validated `Config`, collecting every error.
//!
//! This is the one place that knows the config's rules: defaults, ranges, value syntax and cross
//! references (a route naming a pool that exists, unique names and binds). It never stops at the
//! first problem: an operator fixing a file should see everything wrong with it in one run, each
//! as `file:line:col: key: message`. A bad value is recorded and replaced by its default so the
//! walk can go on; the partially built model is thrown away if anything was recorded.
//!
//! Serde is the exception: a TOML syntax error or a value of the wrong TOML type stops
//! deserialization, so at most one such error is reported (see `file.rs`). Unknown keys are all
//! reported: `file::parse` leaves each one out and reads the file again.

mod acme;
mod backend_tls;
mod dns;
mod gslb;
mod health;
mod listeners;
mod pools;
mod regions;
mod server_tls;
mod values;

#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod region_tests;
#[cfg(test)]
mod sni_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
#[cfg(test)]
mod upstream_tests;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::file::{self, Int, RawGlobal, Str};
use super::{AccessLogTarget, Config, ConfigError, ConfigErrors, Global, DEFAULT_ADMIN};
use values::Msg;

/// Parses and validates `text`; `path` names the file in every message.
pub(super) fn validate(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Cx {
        text,
        file: path.display().to_string(),
        path,
        errors: Vec::new(),
    };
    let parsed = file::parse(text);
    for e in &parsed.unknown_keys {
        cx.toml_error(e);
    }
    let config = match parsed.raw {
        Ok(raw) => {
            let global = raw
                .global
                .as_ref()
                .map(|g| cx.global(g.get_ref()))
                .unwrap_or_else(|| Global {
                    admin: DEFAULT_ADMIN.parse().ok(),
                    ..Global::default()
                });
            let mut pools = cx.pools(&raw.pool);
            let regions = cx.regions(&raw.region);
            cx.region_refs(&raw.pool, &mut pools, &regions);
            let geo = cx.geo(raw.geo.as_ref(), path);
            let gslb = cx.gslb(raw.gslb.as_ref(), &raw.region, &pools, &regions);
            let mut listeners = cx.listeners(&raw.listener, &pools);
            cx.acme_listeners(&raw.listener, &mut listeners, &global);
            for (i, l) in raw.listener.iter().enumerate() {
                if let Some(v) = &l.get_ref().proxy_protocol {
                    if *v.get_ref() && global.trusted_proxies.is_empty() {
                        let k = key(
                            &label("listener", l.get_ref().name.as_ref(), i),
                            "proxy_protocol",
                        );
                        cx.error(
                            v.span(),
                            &k,
                            "PROXY headers are accepted from trusted_proxies only, and [global] trusted_proxies is empty",
                        );
                    }
                }
            }
            Config {
                source: Some(path.to_path_buf()),
                fingerprint: None,
                global,
                listeners,
                pools,
                regions,
                geo,
                gslb,
            }
        }
        Err(e) => {
            cx.toml_error(&e);
            return Err(cx.finish());
        }
    };
    if cx.errors.is_empty() {
        Ok(config)
    } else {
        Err(cx.finish())
    }
}

/// The error collector and the text it points into.
struct Cx<'a> {
    text: &'a str,
    file: String,
    /// The config file, for paths relative to its folder.
    path: &'a Path,
    errors: Vec<ConfigError>,
}

/// `prefix: field`, the shape of every key in a message.
fn key(prefix: &str, field: &str) -> String {
    format!("{prefix}: {field}")
}

impl Cx<'_> {
    /// Records one problem at the start of `span`.
    fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, col) = self.line_col(span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// All recorded errors, in file order (the order an operator reads and fixes them).
    fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.col));
        ConfigErrors(self.errors)
    }

    /// 1-based line and column (in characters) of a byte offset; never panics on odd offsets.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let bytes = self.text.as_bytes();
        let before = &bytes[..offset.min(bytes.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        // Count UTF-8 lead bytes only, so a multi-byte character is one column.
        let col = before[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1;
        (line, col)
    }

    /// Checks a string value; on error records it and returns `None`.
    fn check_str<T>(
        &mut self,
        v: &Str,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, Msg>,
    ) -> Option<T> {
        f(v.get_ref())
            .map_err(|m| self.error(v.span(), key, m))
            .ok()
    }

    /// Checks an integer value; on error records it and returns `None`.
    fn check_int<T>(
        &mut self,
        v: &Int,
        key: &str,
        f: impl FnOnce(i64) -> Result<T, Msg>,
    ) -> Option<T> {
        f(*v.get_ref())
            .map_err(|m| self.error(v.span(), key, m))
            .ok()
    }

    /// An optional string key: its checked value, or `default` when absent or bad.
    fn opt_str<T>(
        &mut self,
        v: Option<&Str>,
        key: &str,
        default: T,
        f: impl FnOnce(&str) -> Result<T, Msg>,
    ) -> T {
        v.and_then(|v| self.check_str(v, key, f)).unwrap_or(default)
    }

    /// An optional integer key: its checked value, or `default` when absent or bad.
    fn opt_int<T>(
        &mut self,
        v: Option<&Int>,
        key: &str,
        default: T,
        f: impl FnOnce(i64) -> Result<T, Msg>,
    ) -> T {
        v.and_then(|v| self.check_int(v, key, f)).unwrap_or(default)
    }

    /// An optional string key without a default: `Ok(None)` when absent, `Err` when bad.
    fn maybe_str<T>(
        &mut self,
        v: Option<&Str>,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, Msg>,
    ) -> Result<Option<T>, ()> {
        match v {
            None => Ok(None),
            Some(v) => self.check_str(v, key, f).map(Some).ok_or(()),
        }
    }

    /// A required string key: checked, or `None` with "missing" recorded at its table.
    fn req_str<T>(
        &mut self,
        v: Option<&Str>,
        table: Range<usize>,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, Msg>,
    ) -> Option<T> {
        match v {
            Some(v) => self.check_str(v, key, f),
            None => {
                self.error(table, key, "missing (required)");
                None
            }
        }
    }

    /// `[global]`.
    fn global(&mut self, g: &RawGlobal) -> Global {
        let d = Global::default();
        let trusted_proxies = g
            .trusted_proxies
            .iter()
            .flatten()
            .filter_map(|p| {
                self.check_str(
                    p,
                    &format!("global: trusted_proxies: {:?}", p.get_ref()),
                    values::cidr,
                )
            })
            .collect();
        let global = Global {
            workers: self.opt_int(
                g.workers.as_ref(),
                "global: workers",
                d.workers,
                values::non_negative,
            ),
            access_log: self.access_log(g.access_log.as_ref(), d.access_log),
            shutdown_grace: self.opt_str(
                g.shutdown_grace.as_ref(),
                "global: shutdown_grace",
                d.shutdown_grace,
                values::grace,
            ),
            trusted_proxies,
            client_header_timeout: self.opt_str(
                g.client_header_timeout.as_ref(),
                "global: client_header_timeout",
                d.client_header_timeout,
                values::client_timeout,
            ),
            client_idle_timeout: self.opt_str(
                g.client_idle_timeout.as_ref(),
                "global: client_idle_timeout",
                d.client_idle_timeout,
                values::client_timeout,
            ),
            client_send_timeout: self.opt_str(
                g.client_send_timeout.as_ref(),
                "global: client_send_timeout",
                d.client_send_timeout,
                values::client_timeout,
            ),
            client_body_timeout: self.opt_str(
                g.client_body_timeout.as_ref(),
                "global: client_body_timeout",
                d.client_body_timeout,
                values::client_timeout,
            ),
            admin: self.opt_str(
                g.admin.as_ref(),
                "global: admin",
                DEFAULT_ADMIN.parse().ok(),
                values::admin,
            ),
            admin_token_file: self.token_file(g.admin_token_file.as_ref()),
            state_dir: g
                .state_dir
                .as_ref()
                .filter(|v| !v.get_ref().is_empty())
                .map_or(d.state_dir.clone(), |v| {
                    regions::resolve(self.path, v.get_ref())
                }),
            access_log_format: self.opt_str(
                g.access_log_format.as_ref(),
                "global: access_log_format",
                d.access_log_format,
                values::access_log_format,
            ),
            http1_engine: self.opt_str(
                g.http1_engine.as_ref(),
                "global: http1_engine",
                d.http1_engine,
                values::http1_engine,
            ),
            resolvers: self.resolvers(g.resolvers.as_ref()),
        };
        if let (Some(addr), None) = (global.admin, &global.admin_token_file) {
            if !addr.ip().is_loopback() {
                let span = g.admin.as_ref().map_or(0..0, |a| a.span());
                self.error(
                    span,
                    "global: admin",
                    format!("{addr} is not loopback: set admin_token_file (a bearer token) or bind 127.0.0.1"),
                );
            }
        }
        global
    }

    /// `admin_token_file`, relative to the config's folder: read now, as at start, so a
    /// missing, unreadable or empty token file fails `check`, not the start.
    fn token_file(&mut self, v: Option<&Str>) -> Option<PathBuf> {
        let v = v.filter(|v| !v.get_ref().is_empty())?;
        let path = regions::resolve(self.path, v.get_ref());
        let problem = match super::files::read_bounded(&path, 64 * 1024) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                match text.lines().next().map(str::trim) {
                    Some(token) if !token.is_empty() => return Some(path),
                    _ => format!("{} is empty (the token is its first line)", path.display()),
                }
            }
            Err(e) => format!("cannot read {}: {e}", path.display()),
        };
        self.error(v.span(), "global: admin_token_file", problem);
        None
    }

    /// `access_log`; a file is relative to the config's folder and must be creatable there
    /// (not a directory, its folder existing), checked now rather than failing the start.
    fn access_log(&mut self, v: Option<&Str>, default: AccessLogTarget) -> AccessLogTarget {
        let Some(v) = v else { return default };
        let key = "global: access_log";
        let Some(target) = self.check_str(v, key, values::access_log) else {
            return default;
        };
        let AccessLogTarget::File(file) = target else {
            return target;
        };
        let path = regions::resolve(self.path, &file.to_string_lossy());
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
        if path.is_dir() {
            self.error(v.span(), key, format!("{} is a directory", path.display()));
            default
        } else if folder.is_some_and(|f| !f.is_dir()) {
            let folder = folder.map(|f| f.display().to_string()).unwrap_or_default();
            self.error(v.span(), key, format!("folder {folder} does not exist"));
            default
        } else {
            AccessLogTarget::File(path)
        }
    }

    /// Records `value` as seen at `span`; reports a duplicate (with the first one's line).
    fn unique<T: Eq + std::hash::Hash>(
        &mut self,
        seen: &mut HashMap<T, usize>,
        value: T,
        span: Range<usize>,
        key: &str,
        what: &str,
    ) -> bool {
        // `seen` keeps offsets: turning one into a line scans the text, so only an error does
        // it (per item it made a 10,000-backend file take seconds to validate).
        if let Some(&first) = seen.get(&value) {
            let first = self.line_col(first).0;
            self.error(
                span,
                key,
                format!("duplicate {what} (first at line {first})"),
            );
            return false;
        }
        seen.insert(value, span.start);
        true
    }

    /// Converts a serde error: syntax, unknown key, or wrong TOML type.
    fn toml_error(&mut self, e: &toml::de::Error) {
        let path = toml_key_path(e);
        let raw = e.message();
        let (key, message) = match raw
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
        {
            Some((field, rest)) => {
                let key = if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}: {field}")
                };
                (key, format!("unknown key{rest}"))
            }
            None if path.is_empty() => ("syntax".to_string(), raw.to_string()),
            None => (path, friendly_type_names(raw)),
        };
        self.error(e.span().unwrap_or(0..0), &key, message);
    }
}

/// `pool "web"` when the table has a name, else `pool #2` (1-based), for message keys.
fn label(what: &str, name: Option<&Str>, index: usize) -> String {
    match name {
        Some(n) => format!("{what} {:?}", n.get_ref()),
        None => format!("{what} #{}", index + 1),
    }
}

/// The TOML key path of a serde error (`pool: backends: weight`), or `""` at the top level.
/// `toml` only exposes it through `Display` without input, as a trailing ``in `a.b` `` line.
fn toml_key_path(e: &toml::de::Error) -> String {
    let mut e = e.clone();
    e.set_input(None);
    e.to_string()
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|l| l.strip_suffix('`')))
        .map(|p| p.replace('.', ": "))
        .unwrap_or_default()
}

/// Serde's type names (`i64`, `a sequence`, `struct RawPool`) say little to an operator and
/// leak internal names; use TOML's words.
fn friendly_type_names(message: &str) -> String {
    let message = match message.find("expected struct ") {
        Some(i) => format!("{}expected a table", &message[..i]),
        None => message.to_string(),
    };
    message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
}
