//! Tests for every kind of config error: its `file:line:col: key: message` line, and that all of
//! them are reported at once, in file order.

use super::tests::{error, errors, parse, with, MINIMAL};

#[test]
fn syntax_error_has_location() {
    assert_eq!(
        error("[global\nworkers = 1\n"),
        "fulcrum.toml:1:8: syntax: unclosed table, expected `]`"
    );
}

#[test]
fn unknown_keys_have_location() {
    let e = error(&format!("{MINIMAL}retry_when = \"5xx\"\n"));
    assert!(
        e.starts_with("fulcrum.toml:10:1: pool: retry_when: unknown key, expected one of `name`"),
        "{e}"
    );
    let e = error(&format!("{MINIMAL}retry_on = [\"connect\", \"5xx\"]\n"));
    assert!(
        e.starts_with("fulcrum.toml:10:24: pool \"web\": retry_on: must be one of"),
        "{e}"
    );
    let e = error(&with("\n[[region]]\nname = \"us-east\"\nzone = 1\n"));
    assert!(
        e.starts_with("fulcrum.toml:13:1: region: zone: unknown key"),
        "{e}"
    );
    let e = error(&format!("[global]\nadmins = \"127.0.0.1:9901\"\n{MINIMAL}"));
    assert!(
        e.starts_with("fulcrum.toml:2:1: global: admins: unknown key"),
        "{e}"
    );
    // The file is still validated: no listener is reported too.
    let e =
        errors("[[pool]]\nname = \"p\"\nbackends = [{ address = \"10.0.0.1:80\", dnz = \"x\" }]\n");
    assert!(
        e[1].starts_with("fulcrum.toml:3:40: pool: backends: dnz: unknown key"),
        "{e:#?}"
    );
}

/// Serde stops at the first unknown key; every one is reported, in file order, and the rest of
/// the file is still validated.
#[test]
fn every_unknown_key_is_reported_with_the_other_errors() {
    let text = "[global]\nworkerz = 2\n\n\
        [[listener]]\nname = \"web\"\nbind = \"0.0.0.0:8080\"\npool = \"web\"\nport = 1\n\n\
        [[pool]]\nname = \"web\"\nretries = -1\n\
        backends = [{ address = \"10.0.0.1:80\", wieght = 2 }]\n\
        [pool.health]\nintervall = \"1s\"\n";
    let errs = errors(text);
    let keys: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": unknown key").next().unwrap_or(e))
        .collect();
    assert_eq!(
        keys[..],
        [
            "fulcrum.toml:2:1: global: workerz",
            "fulcrum.toml:8:1: listener: port",
            "fulcrum.toml:12:11: pool \"web\": retries: must be >= 0",
            "fulcrum.toml:13:40: pool: backends: wieght",
            "fulcrum.toml:15:1: pool: health: intervall",
        ],
        "{errs:#?}"
    );
}

#[test]
fn wrong_toml_type_names_key() {
    assert_eq!(
        error("[global]\nworkers = \"four\"\n"),
        "fulcrum.toml:2:11: global: workers: invalid type: string \"four\", expected an integer"
    );
    assert_eq!(
        error("[global]\ntrusted_proxies = \"10.0.0.0/8\"\n"),
        "fulcrum.toml:2:19: global: trusted_proxies: invalid type: string \"10.0.0.0/8\", expected an array"
    );
    assert_eq!(
        error("global = 1\n"),
        "fulcrum.toml:1:10: global: invalid type: integer `1`, expected a table"
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
            "2:25: global: client_header_timeout: must be between 100ms and 1h, got \"0s\"",
        ),
        (
            "[global]\nclient_header_timeout = \"18446744073709551615s\"\n",
            "2:25: global: client_header_timeout: must be at most 30 days",
        ),
        (
            "[global]\nshutdown_grace = \"2h\"\n",
            "2:18: global: shutdown_grace: must be between 0s and 1h",
        ),
        (
            "[[listener]]\nname = \"x\"\nbind = \"127.0.0.1:1\"\npool = \"web\"\n[[pool]]\nname = \"y\"\nconnect_timeout = \"40days\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n",
            "7:19: pool \"y\": connect_timeout: must be at most 30 days",
        ),
        (
            "[global]\nworkers = -1\n",
            "2:11: global: workers: must be >= 0",
        ),
        (
            "[global]\nadmin = \"0.0.0.0:9901\"\n",
            "2:9: global: admin: 0.0.0.0:9901 is not loopback: set admin_token_file",
        ),
        (
            "[global]\nadmin = \"nowhere\"\n",
            "2:9: global: admin: must be \"ip:port\"",
        ),
        (
            "[global]\naccess_log_format = \"xml\"\n",
            "2:21: global: access_log_format: must be \"combined\" or \"json\"",
        ),
        (
            "[global]\naccess_log = \"\"\n",
            "2:14: global: access_log: must be \"stdout\"",
        ),
        (
            "[global]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "2:20: global: trusted_proxies: \"10.0.0.0/33\": must be a CIDR",
        ),
        (
            "[global]\nclient_idle_timeout = \"1ms\"\n",
            "2:23: global: client_idle_timeout: must be between 100ms and 1h, got \"1ms\"",
        ),
        (
            "[global]\nclient_idle_timeout = \"18446744073709551615s\"\n",
            "2:23: global: client_idle_timeout: must be at most 30 days",
        ),
        (
            "[global]\nclient_idle_timeout = \"later\"\n",
            "2:23: global: client_idle_timeout: must be a duration",
        ),
        (
            "[global]\nclient_send_timeout = \"50ms\"\n",
            "2:23: global: client_send_timeout: must be between 100ms and 1h, got \"50ms\"",
        ),
        (
            "[global]\nclient_send_timeout = \"2h\"\n",
            "2:23: global: client_send_timeout: must be between 100ms and 1h, got \"2h\"",
        ),
        (
            "[global]\nclient_body_timeout = \"0s\"\n",
            "2:23: global: client_body_timeout: must be between 100ms and 1h",
        ),
        (
            "[global]\nclient_body_timeout = \"2h\"\n",
            "2:23: global: client_body_timeout: must be between 100ms and 1h, got \"2h\"",
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
protocol = "udp"
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
            "fulcrum.toml:4:12: listener \"web\": protocol: must be \"http\" or \"tcp\", got \"udp\"",
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
balance = "maglev"
hash_key = "header:"
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
            "fulcrum.toml:8:11: pool \"web\": balance: must be \"round_robin\", \"least_conn\", \"random_two\", \"consistent_hash\" or \"sticky_cookie\", got \"maglev\"",
            "fulcrum.toml:9:12: pool \"web\": hash_key: header: must name a valid HTTP header, got \"\"",
            "fulcrum.toml:10:11: pool \"web\": retries: must be >= 0",
            "fulcrum.toml:11:19: pool \"web\": connect_timeout: must be a duration such as \"250ms\", \"2s\" or \"1m\", got \"1 parsec\" (unknown time unit \"parsec\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations))",
            "fulcrum.toml:12:19: pool \"web\": request_timeout: must be > 0",
            "fulcrum.toml:13:16: pool \"web\": idle_timeout: must be a duration such as \"250ms\", \"2s\" or \"1m\", got \"\"",
            "fulcrum.toml:15:39: pool \"web\": backend \"10.0.0.1:80\": weight: must be > 0",
            "fulcrum.toml:16:15: pool \"web\": backend \"10.0.0.2\": address: must be an address such as \"10.0.0.1:8080\" or \"[::1]:8080\", got \"10.0.0.2\"",
            "fulcrum.toml:16:36: pool \"web\": backend \"10.0.0.2\": region: must not be empty",
            "fulcrum.toml:17:15: pool \"web\": backend \"10.0.0.3:0\": address: port must not be 0",
            "fulcrum.toml:18:3: pool \"web\": backend #4: address: missing (required)",
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
    let at: Vec<String> = errors(text)
        .iter()
        .map(|e| e.split(": ").take(3).collect::<Vec<_>>().join(": "))
        .collect();
    assert_eq!(
        at,
        [
            "fulcrum.toml:1:1: listener: at least one [[listener]] is required",
            "fulcrum.toml:2:11: global: workers",
            "fulcrum.toml:3:18: global: shutdown_grace",
            "fulcrum.toml:7:47: pool \"p\": backend \"1.2.3.4:5\"",
        ]
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = error("[global]\n# é\naccess_log = \"stdout\" # ünïcode\nworkers = \"ü\"\n");
    assert!(e.starts_with("fulcrum.toml:4:11: global: workers"), "{e}");
}

#[test]
fn hash_and_sticky_key_errors() {
    let pool = |extra: &str| {
        format!(
            "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:80\"\npool = \"web\"\n\n[[pool]]\nname = \"web\"\n{extra}\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n"
        )
    };
    assert_eq!(
        error(&pool("balance = \"consistent_hash\"\nhash_key = \"query\"")),
        "fulcrum.toml:9:12: pool \"web\": hash_key: must be \"client_ip\", \"header:NAME\", \"cookie:NAME\" or \"path\", got \"query\""
    );
    assert_eq!(
        error(&pool("balance = \"consistent_hash\"\nhash_key = \"cookie:a b\"")),
        "fulcrum.toml:9:12: pool \"web\": hash_key: must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), got \"a b\""
    );
    assert_eq!(
        error(&pool("balance = \"sticky_cookie\"\nsticky_cookie = \"a;b\"")),
        "fulcrum.toml:9:17: pool \"web\": sticky_cookie: must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), got \"a;b\""
    );
    // A key the chosen balancer ignores (round robin by default).
    assert_eq!(
        error(&pool("hash_key = \"path\"")),
        "fulcrum.toml:8:12: pool \"web\": hash_key: only used with balance = \"consistent_hash\""
    );
    assert_eq!(
        error(&pool("balance = \"consistent_hash\"\nsticky_cookie = \"SID\"")),
        "fulcrum.toml:9:17: pool \"web\": sticky_cookie: only used with balance = \"sticky_cookie\""
    );
}

/// Names are shown on the status page, in metrics labels and in logs: a narrow charset keeps
/// every one of them inert there (issue 14: a pool named `x');alert(1);//` ran script).
#[test]
fn names_are_letters_digits_dash_underscore_and_dot() {
    let text = r#"[[listener]]
name = "web<1>"
bind = "0.0.0.0:8080"
pool = "x');alert(document.domain);//"

[[pool]]
name = "x');alert(document.domain);//"
backends = [{ address = "10.0.0.1:80", region = "a'b" }]
"#;
    let usage = "must be ASCII letters, digits, \"-\", \"_\" or \".\"";
    assert_eq!(
        errors(text),
        [
            format!("fulcrum.toml:2:8: listener \"web<1>\": name: {usage}, got \"web<1>\""),
            format!("fulcrum.toml:4:8: listener \"web<1>\": pool: {usage}, got \"x');alert(document.domain);//\""),
            format!("fulcrum.toml:7:8: pool \"x');alert(document.domain);//\": name: {usage}, got \"x');alert(document.domain);//\""),
            format!("fulcrum.toml:8:49: pool \"x');alert(document.domain);//\": backend \"10.0.0.1:80\": region: {usage}, got \"a'b\""),
        ]
    );
    let e = error(&with("\n[[region]]\nname = \"zone/1\"\n"));
    assert_eq!(
        e,
        format!("fulcrum.toml:12:8: region \"zone/1\": name: {usage}, got \"zone/1\"")
    );
    // What the charset allows passes.
    parse(&with("\n[[region]]\nname = \"eu-west_2.a\"\n")).expect("valid");
}
