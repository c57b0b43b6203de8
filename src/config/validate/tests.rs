//! Tests for valid configs: defaults, a full config read as written, and every file under
//! `config/`. The shared helpers live here; error cases are in `error_tests.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    AccessLogTarget, BackendConfig, BalanceKind, Config, ConfigErrors, Global, HeaderMatch,
    ListenerConfig, PoolConfig, RouteConfig,
};

pub(super) const MINIMAL: &str = r#"
[[listener]]
name = "web"
bind = "0.0.0.0:8080"
pool = "web"

[[pool]]
name = "web"
backends = [{ address = "10.0.0.1:80" }]
"#;

pub(super) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Path::new("fulcrum.toml"))
}

/// The error lines, as `main` prints them.
pub(super) fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// Exactly one error, as printed.
pub(super) fn error(text: &str) -> String {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs[0].clone()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// `MINIMAL` with `extra` appended (new tables or more pools).
pub(super) fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn minimal_gets_documented_defaults() {
    let c = parse(MINIMAL).expect("valid");
    let file_defaults = Global {
        admin: Some(addr("127.0.0.1:9901")),
        ..Global::default()
    };
    assert_eq!(c.global, file_defaults);
    assert_eq!(c.source, Some(PathBuf::from("fulcrum.toml")));
    let backend = BackendConfig {
        address: addr("10.0.0.1:80"),
        name: None,
        weight: 1,
        region: None,
    };
    assert_eq!(c.pools, vec![PoolConfig::new("web", vec![backend])]);
    assert_eq!(
        c.listeners,
        vec![ListenerConfig::http(
            "web",
            addr("0.0.0.0:8080"),
            crate::config::PoolId::new(0)
        )]
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
access_log = "/tmp/fulcrum-access.log"
shutdown_grace = "5s"
trusted_proxies = ["10.1.2.3/8", "192.0.2.1", "2001:db8::1"]
client_header_timeout = "250ms"
client_idle_timeout = "2m"
client_send_timeout = "90s"
client_body_timeout = "5s"

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
        AccessLogTarget::File("/tmp/fulcrum-access.log".into())
    );
    assert_eq!(c.global.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.global.client_header_timeout, Duration::from_millis(250));
    assert_eq!(c.global.client_idle_timeout, Duration::from_secs(120));
    assert_eq!(c.global.client_send_timeout, Duration::from_secs(90));
    assert_eq!(c.global.client_body_timeout, Duration::from_secs(5));
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
            sni: None,
            host: Some("*.example.com".into()),
            path_prefix: Some("/api/".into()),
            header: Some(HeaderMatch {
                name: "x-canary".into(),
                value: "1".into()
            }),
            pool: c.pool_id("static").expect("pool"),
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
fn ephemeral_binds_do_not_conflict() {
    let text = with("[[listener]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n[[listener]]\nname = \"c\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n");
    assert_eq!(parse(&text).expect("valid").listeners.len(), 3);
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
    assert_eq!(
        names,
        [
            "web",
            "static",
            "cache",
            "sessions",
            "api",
            "grpc",
            "redis-primary",
            "redis-replicas",
            "tls-db",
            "tls-default"
        ]
    );
    // To the backends: TLS with ALPN's choice; gRPC in the clear with its health service.
    assert_eq!(c.pools[4].protocol, crate::config::UpstreamProtocol::Auto);
    let tls = c.pools[4].tls.as_ref().expect("[pool.tls]");
    assert!(tls.verify && tls.ca.is_none() && tls.identity.is_none());
    assert_eq!(c.pools[5].protocol, crate::config::UpstreamProtocol::H2c);
    let grpc = c.pools[5].health.as_ref().expect("grpc health");
    assert_eq!(grpc.kind, crate::config::HealthKind::Grpc);
    assert_eq!(grpc.service, "helloworld.Greeter");
    assert_eq!(c.pools[2].balance, BalanceKind::ConsistentHash);
    assert_eq!(c.pools[3].balance, BalanceKind::StickyCookie);
    // The Redis read/write split: two tcp listeners, reads backed by the primary pool.
    let tcp: Vec<&str> = c
        .listeners
        .iter()
        .filter(|l| l.protocol == crate::config::Protocol::Tcp)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(tcp, ["redis-write", "redis-read", "tls-passthrough"]);
    // TLS passthrough: routes by SNI only.
    let sni: Vec<Option<&str>> = c.listeners[3]
        .routes
        .iter()
        .map(|r| r.sni.as_deref())
        .collect();
    assert_eq!(sni, [Some("db.example.com"), Some("*.example.com")]);
    assert_eq!(
        c.pools[7].backup.map(|b| c.pool_name(b)),
        Some("redis-primary")
    );
    assert_eq!(c.pools[6].on_down, crate::config::OnDown::Close);
    let regions: Vec<Option<&str>> = c.pools[0]
        .backends
        .iter()
        .map(|b| b.region.as_deref())
        .collect();
    assert_eq!(regions, [Some("us-east"), Some("us-west")]);
    let defined: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(defined, ["us-east", "us-west"]);
    assert_eq!(c.regions[0].failover, ["us-west"]);
    assert_eq!(c.pools[0].region_split.len(), 2);
}

#[test]
fn hash_and_sticky_keys() {
    use crate::config::HashKey;
    let pool = |extra: &str| {
        let text = format!(
            "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\npool = \"web\"\n\n[[pool]]\nname = \"web\"\n{extra}\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n"
        );
        parse(&text).expect("valid").pools.remove(0)
    };
    let p = pool("balance = \"consistent_hash\"");
    assert_eq!(
        (p.balance, p.hash_key),
        (BalanceKind::ConsistentHash, HashKey::ClientIp)
    );
    for (key, want) in [
        ("path", HashKey::Path),
        ("client_ip", HashKey::ClientIp),
        (
            "header:X-User-Id",
            HashKey::Header(http::HeaderName::from_static("x-user-id")),
        ),
        ("cookie:session", HashKey::Cookie("session".into())),
    ] {
        let p = pool(&format!(
            "balance = \"consistent_hash\"\nhash_key = \"{key}\""
        ));
        assert_eq!(p.hash_key, want);
    }
    let p = pool("balance = \"sticky_cookie\"");
    assert_eq!(
        (p.balance, p.sticky_cookie.as_str()),
        (BalanceKind::StickyCookie, "FULCRUM_STICKY")
    );
    let p = pool("balance = \"sticky_cookie\"\nsticky_cookie = \"SRV\"");
    assert_eq!(p.sticky_cookie, "SRV");
}

#[test]
fn admin_defaults_and_off() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(
        c.global.admin,
        Some("127.0.0.1:9901".parse().expect("addr"))
    );
    let c = parse(&format!(
        "[global]\nadmin = \"\"\naccess_log_format = \"json\"\n{MINIMAL}"
    ))
    .expect("valid");
    assert_eq!(c.global.admin, None);
    assert_eq!(
        c.global.access_log_format,
        crate::config::AccessLogFormat::Json
    );
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let c = parse(&format!(
        "[global]\nadmin = \"0.0.0.0:9901\"\nadmin_token_file = \"{}\"\n{MINIMAL}",
        token.display()
    ))
    .expect("valid");
    assert_eq!(c.global.admin_token_file, Some(token.clone()));
    // Read at check time: an empty or missing token file fails `check`, not the start.
    std::fs::write(&token, "\n").expect("token");
    let e = errors(&format!(
        "[global]\nadmin_token_file = \"{}\"\n{MINIMAL}",
        token.display()
    ));
    assert!(
        e[0].contains("admin_token_file") && e[0].contains("is empty"),
        "{e:?}"
    );
    let e = errors(&format!(
        "[global]\nadmin_token_file = \"no-such-token\"\n{MINIMAL}"
    ));
    assert!(e[0].contains("cannot read"), "{e:?}");
}

/// Relative paths are the config file's folder's; an access log that cannot be created
/// (a directory, a missing folder) fails `check`.
#[test]
fn file_paths_are_relative_to_the_config_and_checked() {
    let c = parse(&format!("[global]\naccess_log = \"access.log\"\n{MINIMAL}")).expect("valid");
    assert_eq!(
        c.global.access_log,
        AccessLogTarget::File("access.log".into())
    );
    let e = errors(&format!("[global]\naccess_log = \"/tmp\"\n{MINIMAL}"));
    assert!(e[0].contains("/tmp is a directory"), "{e:?}");
    let e = errors(&format!(
        "[global]\naccess_log = \"/no/such/dir/a.log\"\n{MINIMAL}"
    ));
    assert!(e[0].contains("folder /no/such/dir does not exist"), "{e:?}");
}

#[test]
fn backend_names_and_listener_trace() {
    let text = "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\npool = \"web\"\ntrace = \"start\"\n\
        [[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\", name = \"east-a\" }, { address = \"10.0.0.2:80\" }]\n";
    let c = parse(text).expect("valid");
    assert_eq!(c.listeners[0].trace, crate::config::TraceMode::Start);
    assert_eq!(c.pools[0].backends[0].name.as_deref(), Some("east-a"));
    assert_eq!(c.pools[0].backends[1].name, None);
    let twice = text.replace(
        "{ address = \"10.0.0.2:80\" }",
        "{ address = \"10.0.0.2:80\", name = \"east-a\" }",
    );
    let errs = errors(&twice);
    assert!(
        errs.iter()
            .any(|e| e.contains("name: backend name \"east-a\" is used twice in this pool")),
        "{errs:#?}"
    );
    let bad = errors(&text.replace("trace = \"start\"", "trace = \"on\""));
    assert!(
        bad.iter()
            .any(|e| e.contains("trace: must be \"pass\" or \"start\"")),
        "{bad:#?}"
    );
}

/// `http1_engine` is retired but part of the contract: configs that set it, to either
/// value, keep loading (a `"hyper"` one is logged at start, and served by the engine).
#[test]
fn the_retired_http1_engine_key_still_loads() {
    use crate::config::Http1Engine;
    for (value, engine) in [
        ("hyper", Http1Engine::Hyper),
        ("fulcrum", Http1Engine::Fulcrum),
    ] {
        let c = parse(&format!("[global]\nhttp1_engine = \"{value}\"\n{MINIMAL}")).expect("valid");
        assert_eq!(c.global.http1_engine, Some(engine));
    }
    let e = error(&format!("[global]\nhttp1_engine = \"nginx\"\n{MINIMAL}"));
    assert!(e.contains("http1_engine"), "{e}");
}
