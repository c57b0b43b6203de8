//! Tests for parsing and validation: each error kind with its location, defaults, a full valid
//! config, that several errors are all reported, and that every file under `config/` validates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    AccessLogTarget, BackendConfig, BalanceKind, Config, ConfigErrors, Global, HeaderMatch,
    ListenerConfig, PoolConfig, RouteConfig,
};

const MINIMAL: &str = r#"
[[listener]]
name = "web"
bind = "0.0.0.0:8080"
pool = "web"

[[pool]]
name = "web"
backends = [{ address = "10.0.0.1:80" }]
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Path::new("fulcrum.toml"))
}

/// The error lines, as `main` prints them.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// Exactly one error, as printed.
fn error(text: &str) -> String {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs[0].clone()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// `MINIMAL` with `extra` appended (new tables or more pools).
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn minimal_gets_documented_defaults() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.global, Global::default());
    assert_eq!(c.source, Some(PathBuf::from("fulcrum.toml")));
    let backend = BackendConfig {
        address: addr("10.0.0.1:80"),
        weight: 1,
        region: None,
    };
    assert_eq!(c.pools, vec![PoolConfig::new("web", vec![backend])]);
    assert_eq!(
        c.listeners,
        vec![ListenerConfig::http("web", addr("0.0.0.0:8080"), "web")]
    );
    assert_eq!(
        c.summary(),
        "1 listener(s), 1 pool(s), 1 backend(s), 0 route(s)"
    );
}

#[test]
fn full_config_is_read_as_written() {
    let text = r#"
[global]
workers = 4
access_log = "/var/log/fulcrum/access.log"
shutdown_grace = "5s"
trusted_proxies = ["10.1.2.3/8", "192.0.2.1", "2001:db8::1"]
client_header_timeout = "250ms"

[[listener]]
name = "web"
bind = "[::]:8443"
protocol = "http"
pool = "web"
max_connections = 10
max_request_body = 1048576

[[listener.route]]
host = "*.Example.COM"
path_prefix = "/api/"
header = { name = "X-Canary", value = "1" }
pool = "static"

[[pool]]
name = "web"
balance = "random_two"
retries = 0
connect_timeout = "2s"
request_timeout = "1m"
idle_timeout = "90s"
backends = [
  { address = "10.0.1.10:8080", weight = 3, region = "us-east" },
  { address = "[2001:db8::10]:8080" },
]

[[pool]]
name = "static"
balance = "least_conn"
backends = [{ address = "10.0.3.10:80" }]
"#;
    let c = parse(text).expect("valid");
    assert_eq!(c.global.workers, 4);
    assert_eq!(
        c.global.access_log,
        AccessLogTarget::File("/var/log/fulcrum/access.log".into())
    );
    assert_eq!(c.global.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.global.client_header_timeout, Duration::from_millis(250));
    let proxies: Vec<String> = c
        .global
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::1/128"]);
    let l = &c.listeners[0];
    assert_eq!(
        (l.bind, l.max_connections, l.max_request_body),
        (addr("[::]:8443"), 10, 1 << 20)
    );
    assert_eq!(
        l.routes,
        vec![RouteConfig {
            host: Some("*.example.com".into()),
            path_prefix: Some("/api/".into()),
            header: Some(HeaderMatch {
                name: "x-canary".into(),
                value: "1".into()
            }),
            pool: "static".into(),
        }]
    );
    let p = &c.pools[0];
    assert_eq!((p.balance, p.retries), (BalanceKind::RandomTwo, 0));
    assert_eq!(
        (p.connect_timeout, p.request_timeout, p.idle_timeout),
        (
            Duration::from_secs(2),
            Duration::from_secs(60),
            Duration::from_secs(90)
        )
    );
    assert_eq!(p.backends[0].weight, 3);
    assert_eq!(p.backends[0].region.as_deref(), Some("us-east"));
    assert_eq!(p.backends[1].address, addr("[2001:db8::10]:8080"));
    assert_eq!(c.pools[1].balance, BalanceKind::LeastConn);
}

#[test]
fn access_log_off() {
    let c = parse(&format!("[global]\naccess_log = \"off\"\n{MINIMAL}")).expect("valid");
    assert_eq!(c.global.access_log, AccessLogTarget::Off);
}

#[test]
fn syntax_error_has_location() {
    assert_eq!(
        error("[global\nworkers = 1\n"),
        "fulcrum.toml:1:8: syntax: unclosed table, expected `]`"
    );
}

#[test]
fn unknown_keys_have_location() {
    let e = error(&format!("{MINIMAL}backup = \"origin\"\n"));
    assert!(
        e.starts_with("fulcrum.toml:10:1: pool: backup: unknown key, expected one of `name`"),
        "{e}"
    );
    let e = error(&with("\n[[region]]\nname = \"us-east\"\n"));
    assert!(
        e.starts_with("fulcrum.toml:11:3: region: unknown key"),
        "{e}"
    );
    let e = error("[global]\nadmin = \"127.0.0.1:9901\"\n");
    assert!(
        e.starts_with("fulcrum.toml:2:1: global: admin: unknown key"),
        "{e}"
    );
    let e =
        error("[[pool]]\nname = \"p\"\nbackends = [{ address = \"10.0.0.1:80\", dns = \"x\" }]\n");
    assert!(
        e.starts_with("fulcrum.toml:3:40: pool: backends: dns: unknown key"),
        "{e}"
    );
}

#[test]
fn wrong_toml_type_names_key() {
    assert_eq!(
        error("[global]\nworkers = \"four\"\n"),
        "fulcrum.toml:2:11: global: workers: invalid type: string \"four\", expected an integer"
    );
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            "[global]\nshutdown_grace = \"soon\"\n",
            "2:18: global: shutdown_grace: must be a duration",
        ),
        (
            "[global]\nclient_header_timeout = \"0s\"\n",
            "2:25: global: client_header_timeout: must be > 0",
        ),
        (
            "[global]\nworkers = -1\n",
            "2:11: global: workers: must be >= 0",
        ),
        (
            "[global]\naccess_log = \"\"\n",
            "2:14: global: access_log: must be \"stdout\"",
        ),
        (
            "[global]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "2:20: global: trusted_proxies: \"10.0.0.0/33\": must be a CIDR",
        ),
    ];
    for (text, want) in cases {
        let errs = errors(&format!("{text}{MINIMAL}"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with(&format!("fulcrum.toml:{want}")),
            "{errs:#?} vs {want}"
        );
    }
}

#[test]
fn listener_value_errors() {
    let text = r#"[[listener]]
name = "web"
bind = "localhost:80"
protocol = "tcp"
pool = "web"
max_connections = 0
max_request_body = -5

[[pool]]
name = "web"
backends = [{ address = "10.0.0.1:80" }]
"#;
    assert_eq!(
        errors(text),
        [
            "fulcrum.toml:3:8: listener \"web\": bind: must be an address such as \"10.0.0.1:8080\" or \"[::1]:8080\", got \"localhost:80\"",
            "fulcrum.toml:4:12: listener \"web\": protocol: \"tcp\" is not supported yet",
            "fulcrum.toml:6:19: listener \"web\": max_connections: must be > 0",
            "fulcrum.toml:7:20: listener \"web\": max_request_body: must be >= 0",
        ]
    );
}

#[test]
fn pool_value_errors() {
    let text = r#"[[listener]]
name = "web"
bind = "0.0.0.0:80"
pool = "web"

[[pool]]
name = "web"
balance = "consistent_hash"
retries = -1
connect_timeout = "1 parsec"
request_timeout = "0s"
idle_timeout = ""
backends = [
  { address = "10.0.0.1:80", weight = 0 },
  { address = "10.0.0.2", region = "" },
  { address = "10.0.0.3:0" },
  { weight = 2 },
]
"#;
    assert_eq!(
        errors(text),
        [
            "fulcrum.toml:8:11: pool \"web\": balance: \"consistent_hash\" is not supported yet",
            "fulcrum.toml:9:11: pool \"web\": retries: must be >= 0",
            "fulcrum.toml:10:19: pool \"web\": connect_timeout: must be a duration such as \"250ms\", \"2s\" or \"1m\", got \"1 parsec\" (unknown time unit \"parsec\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations))",
            "fulcrum.toml:11:19: pool \"web\": request_timeout: must be > 0",
            "fulcrum.toml:12:16: pool \"web\": idle_timeout: must be a duration such as \"250ms\", \"2s\" or \"1m\", got \"\"",
            "fulcrum.toml:14:39: pool \"web\": backend \"10.0.0.1:80\": weight: must be > 0",
            "fulcrum.toml:15:15: pool \"web\": backend \"10.0.0.2\": address: must be an address such as \"10.0.0.1:8080\" or \"[::1]:8080\", got \"10.0.0.2\"",
            "fulcrum.toml:15:36: pool \"web\": backend \"10.0.0.2\": region: must not be empty",
            "fulcrum.toml:16:15: pool \"web\": backend \"10.0.0.3:0\": address: port must not be 0",
            "fulcrum.toml:17:3: pool \"web\": backend #4: address: missing (required)",
        ]
    );
}

#[test]
fn route_value_errors() {
    let text = r#"[[listener]]
name = "web"
bind = "0.0.0.0:80"
pool = "web"

[[listener.route]]
host = "example.com:8080"
path_prefix = "assets/"
header = { name = "bad header", value = "1" }
pool = "web"

[[listener.route]]
host = "a..b"
header = { name = "x-ok" }
pool = "web"

[[listener.route]]
pool = "web"

[[pool]]
name = "web"
backends = [{ address = "10.0.0.1:80" }]
"#;
    assert_eq!(
        errors(text),
        [
            "fulcrum.toml:7:8: listener \"web\": route #1: host: must be a host name without a port, got \"example.com:8080\"",
            "fulcrum.toml:8:15: listener \"web\": route #1: path_prefix: must start with \"/\", got \"assets/\"",
            "fulcrum.toml:9:19: listener \"web\": route #1: header: name: must be a valid HTTP header name, got \"bad header\"",
            "fulcrum.toml:13:8: listener \"web\": route #2: host: must be a host name such as \"example.com\" or \"*.example.com\", got \"a..b\"",
            "fulcrum.toml:14:10: listener \"web\": route #2: header: value: missing (required)",
            "fulcrum.toml:17:1: listener \"web\": route #3: needs at least one of host, path_prefix, header (it would match every request; use the listener's pool instead)",
        ]
    );
}

#[test]
fn cross_reference_errors() {
    let text = r#"[[listener]]
name = "web"
bind = "0.0.0.0:80"
pool = "nope"

[[listener.route]]
path_prefix = "/"
pool = "gone"

[[listener]]
name = "web"
bind = "127.0.0.1:80"
pool = "web"

[[listener]]
bind = "127.0.0.1:81"

[[pool]]
name = "web"
backends = [{ address = "10.0.0.1:80" }, { address = "10.0.0.1:80" }]

[[pool]]
name = "web"
backends = []

[[pool]]
name = "empty"
"#;
    assert_eq!(
        errors(text),
        [
            "fulcrum.toml:4:8: listener \"web\": pool: no [[pool]] named \"nope\"",
            "fulcrum.toml:8:8: listener \"web\": route #1: pool: no [[pool]] named \"gone\"",
            "fulcrum.toml:11:8: listener \"web\": name: duplicate listener name (first at line 2)",
            "fulcrum.toml:12:8: listener \"web\": bind: 127.0.0.1:80 conflicts with 0.0.0.0:80 of listener \"web\" (line 3)",
            "fulcrum.toml:15:1: listener #3: name: missing (required)",
            "fulcrum.toml:15:1: listener #3: pool: missing (required)",
            "fulcrum.toml:20:54: pool \"web\": backend \"10.0.0.1:80\": address: duplicate backend address in this pool (first at line 20)",
            "fulcrum.toml:23:8: pool \"web\": name: duplicate pool name (first at line 19)",
            "fulcrum.toml:24:12: pool \"web\": backends: must list at least one backend",
            "fulcrum.toml:26:1: pool \"empty\": backends: missing (required): a pool needs at least one backend",
        ]
    );
}

#[test]
fn ephemeral_binds_do_not_conflict() {
    let text = with("[[listener]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n[[listener]]\nname = \"c\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n");
    assert_eq!(parse(&text).expect("valid").listeners.len(), 3);
}

#[test]
fn no_listener_is_an_error() {
    assert_eq!(
        error("[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n"),
        "fulcrum.toml:1:1: listener: at least one [[listener]] is required"
    );
    assert_eq!(
        error(""),
        "fulcrum.toml:1:1: listener: at least one [[listener]] is required"
    );
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let text = "[global]\nworkers = -2\nshutdown_grace = \"x\"\n\n[[pool]]\nname = \"p\"\nbackends = [{ address = \"1.2.3.4:5\", weight = 0 }]\n";
    let errs = errors(text);
    let keys: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("fulcrum.toml:1:1: listener:"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("fulcrum.toml:2:11: global: workers"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("fulcrum.toml:3:18: global: shutdown_grace"),
        "{errs:#?}"
    );
    assert!(
        errs[3].starts_with("fulcrum.toml:7:47: pool \"p\": backend \"1.2.3.4:5\": weight"),
        "{keys:?}"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = error("[global]\n# é\naccess_log = \"stdout\" # ünïcode\nworkers = \"ü\"\n");
    assert!(e.starts_with("fulcrum.toml:4:11: global: workers"), "{e}");
}

#[test]
fn file_part_is_the_path_as_given() {
    let errs = Config::from_toml("", Path::new("/etc/fulcrum/x.toml")).expect_err("invalid");
    assert!(
        errs.to_string().starts_with("/etc/fulcrum/x.toml:1:1: "),
        "{errs}"
    );
    let errs = Config::from_file(Path::new("/nonexistent/fulcrum.toml")).expect_err("missing");
    assert!(
        errs.to_string()
            .starts_with("/nonexistent/fulcrum.toml:0:0: file: "),
        "{errs}"
    );
}

/// Every shipped example must stay valid as keys evolve.
#[test]
fn every_file_under_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut stack = vec![root];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("config dir readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                if let Err(e) = Config::from_file(&path) {
                    panic!("{} does not validate:\n{e}", path.display());
                }
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 2,
        "expected fulcrum.toml and examples/minimal.toml, found {seen}"
    );
}

#[test]
fn fulcrum_toml_has_the_documented_shape() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fulcrum.toml");
    let c = Config::from_file(&path).expect("valid");
    assert_eq!(c.listeners[0].bind, addr("0.0.0.0:8080"));
    assert_eq!(c.listeners[0].routes.len(), 2);
    let names: Vec<&str> = c.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web", "static"]);
    let regions: Vec<Option<&str>> = c.pools[0]
        .backends
        .iter()
        .map(|b| b.region.as_deref())
        .collect();
    assert_eq!(regions, [Some("us-east"), Some("us-west")]);
}
