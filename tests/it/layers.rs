//! The layering of `src/`: a module imports only from the layers below it.
//!
//! Why a test: an upward import compiles fine, and one is enough to tie the data path to
//! lifecycle, reload and admin again. Every `crate::name` path in the code of `src/` (use lines,
//! inline paths, test modules included; comments are not code) is checked against `LAYERS`;
//! a loop is allowed only inside one module's own folder (`http/`). The table below is the
//! layer order of the design, with the small leaf modules placed where they import.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top. A module may name modules of lower rows only; modules of the same row do
/// not import each other.
const LAYERS: &[&[&str]] = &[
    // `acme_state`: the HTTP-01 answers and certificate status the ACME tasks (high) share
    // with the request path and the admin API (both below them).
    &[
        "config",
        "clock",
        "client_ip",
        "systemd",
        "chain",
        "acme_state",
    ],
    // `tls` reads certificates into rustls configs and builds the pools' client configs: it
    // needs only `config`; pools hold their client config and the snapshot a listener's
    // `ServerTls`, so it sits below `pool`.
    &["backend", "access_log", "splice", "sni", "tls"],
    &["balance", "budget", "route"],
    &["region"],
    &["pool"],
    &["select"],
    &["metrics"],
    // Below `snapshot` (the design lists it beside `health`): a listener's snapshot holds its
    // limiter state, carried across reloads by slot like the tcp byte counts.
    &["limits"],
    &["snapshot"],
    // `history` reads the snapshot's listeners, pools and backends and the metrics registry
    // once a second (started by `server`, read by `admin`): above `snapshot`, and nothing
    // beside it imports it.
    &["health", "proxy_protocol", "history"],
    &["http", "tcp"],
    // Fulcrum's HTTP/1 engine: above `http`, whose request-path decisions (ProxyError,
    // exchange, headers, target, affinity) it calls; h2 and the transitional hyper HTTP/1
    // path stay `http`'s.
    &["http1"],
    &["listener"],
    &["worker"],
    // DNS discovery: the reloader builds every snapshot from the config expanded with the
    // names' answers, and the resolution tasks ask it (through a hook) to rebuild.
    &["discovery"],
    // `gslb` (the GeoDNS responder) beside `reload`, as the design places it: it reads the
    // live snapshot (regions, pools' health through `select`) and serves on the control
    // runtime; nothing of the data path names it.
    &["reload", "upgrade", "gslb"],
    // ACME orders put certificates in service through the reloader.
    &["acme"],
    &["admin", "watch"],
    &["error"],
    &["server", "demo"],
    &["lib"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// The top-level module a file of `src/` belongs to: `http/proxy.rs` -> `http`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a line: what precedes a `//` comment (strings with `//` in them are rare in
/// `src/` and would only hide a path, never invent one).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Every top-level module named by a `crate::` path in `source` (also `crate::{a, b::c}`).
fn named_modules(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // Joined so a `use crate::{` group spanning lines is one piece of text.
    let text: String = source.lines().map(code).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `fulcrum_crate::` or `$crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// Every violation in one file of module `module`: "file -> name (why)".
fn violations(file: &str, module: &str, source: &str) -> Vec<String> {
    let Some(own) = layer(module) else {
        return vec![format!("{file}: module `{module}` has no layer in LAYERS")];
    };
    named_modules(source)
        .into_iter()
        .filter(|name| name != module)
        .filter_map(|name| match layer(&name) {
            // Items of lib.rs itself (`crate::Error`, `crate::start`) are the top layer.
            None if name.chars().next().is_some_and(char::is_uppercase) => Some(format!(
                "{file} -> crate::{name}: names a re-export of lib.rs (the top layer)"
            )),
            None => Some(format!("{file} -> crate::{name}: `{name}` has no layer")),
            Some(l) if l >= own => Some(format!(
                "{file} -> crate::{name}: layer {l} is not below `{module}` (layer {own})"
            )),
            Some(_) => None,
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found the sources in {}", src.display());
    let mut found = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        // The binary is its own crate: `crate::` there is main.rs.
        if relative == Path::new("main.rs") {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        let file = relative.display().to_string();
        found.extend(violations(&file, &module_of(relative), &source));
    }
    assert!(
        found.is_empty(),
        "imports that break the layering (fix the import, or move the type to its owner):\n{}",
        found.join("\n")
    );
}

/// The check itself can fail: an upward import, one hidden in a group, one in a test module,
/// and a module missing from the table are each reported; comments are not.
#[test]
fn the_layer_check_reports_upward_imports() {
    let upward = "use crate::server::Handle;\n";
    assert_eq!(violations("tcp.rs", "tcp", upward).len(), 1);
    let grouped = "use crate::{clock, listener::Sockets};\n";
    assert_eq!(
        violations("http/proxy.rs", "http", grouped),
        vec!["http/proxy.rs -> crate::listener: layer 12 is not below `http` (layer 10)"]
    );
    let in_tests = "#[cfg(test)]\nmod tests {\n    use crate::admin::x;\n}\n";
    assert_eq!(violations("backend.rs", "backend", in_tests).len(), 1);
    let sideways = "use crate::tcp::TcpBytes;\n";
    assert_eq!(violations("http/mod.rs", "http", sideways).len(), 1);
    assert_eq!(violations("new.rs", "new", "").len(), 1);
    let commented = "//! see `crate::server`\nfn f() {} // crate::admin\n";
    assert!(violations("backend.rs", "backend", commented).is_empty());
    let downward = "use crate::{backend::Backend, config};\nlet x = crate::clock::now_ms();\n";
    assert!(violations("pool.rs", "pool", downward).is_empty());
}
