//! `[[listener.route]] sni`: read on tcp listeners (TLS passthrough), rejected on http
//! listeners, and a tcp listener's route needs it and takes no HTTP condition.

use super::tests::{errors, parse};

/// A listener "web" of `protocol` (line 1), then `routes` from line 6, and pools "web", "db".
fn with_routes(protocol: &str, routes: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:8443\"\nprotocol = \"{protocol}\"\npool = \"web\"\n\
         {routes}\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"10.0.0.1:443\" }}]\n\
         [[pool]]\nname = \"db\"\nbackends = [{{ address = \"10.0.0.2:443\" }}]\n"
    )
}

#[test]
fn sni_routes_on_a_tcp_listener() {
    let text = with_routes(
        "tcp",
        "[[listener.route]]\nsni = \"DB.example.com\"\npool = \"db\"\n\
         [[listener.route]]\nsni = \"*.example.com\"\npool = \"web\"\n",
    );
    let c = parse(&text).expect("valid");
    let routes = &c.listeners[0].routes;
    let db = c.pool_id("db").expect("pool");
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].sni.as_deref(), Some("db.example.com"));
    assert_eq!(routes[0].pool, db);
    assert_eq!(routes[1].sni.as_deref(), Some("*.example.com"));
    assert!(routes.iter().all(|r| r.host.is_none()));
}

#[test]
fn sni_only_on_tcp_and_only_sni_there() {
    assert_eq!(
        errors(&with_routes(
            "http",
            "[[listener.route]]\nsni = \"db.example.com\"\npool = \"db\"\n"
        )),
        ["fulcrum.toml:7:7: listener \"web\": route #1: sni: only for protocol = \"tcp\" listeners without tls (TLS passthrough); an http listener routes by host"]
    );
    assert_eq!(
        errors(&with_routes(
            "tcp",
            "[[listener.route]]\nhost = \"db.example.com\"\npool = \"db\"\n\
             [[listener.route]]\nsni = \"a..b\"\npath_prefix = \"/x\"\npool = \"db\"\n"
        )),
        [
            "fulcrum.toml:6:1: listener \"web\": route #1: a tcp listener's route needs sni (the ClientHello's server name; host, path_prefix and header need protocol = \"http\")",
            "fulcrum.toml:7:8: listener \"web\": route #1: host: only for protocol = \"http\" (a tcp listener's routes match sni)",
            "fulcrum.toml:10:7: listener \"web\": route #2: sni: must be a host name such as \"example.com\" or \"*.example.com\", got \"a..b\"",
            "fulcrum.toml:11:15: listener \"web\": route #2: path_prefix: only for protocol = \"http\" (a tcp listener's routes match sni)",
        ]
    );
}

#[test]
fn an_sni_routes_pool_follows_the_tcp_rules() {
    let text = with_routes(
        "tcp",
        "[[listener.route]]\nsni = \"db.example.com\"\npool = \"db\"\n",
    )
    .replace(
        "name = \"db\"\n",
        "name = \"db\"\nbalance = \"sticky_cookie\"\n",
    );
    assert_eq!(
        errors(&text),
        ["fulcrum.toml:8:8: listener \"web\": route #1: pool: pool \"db\": balance = \"sticky_cookie\" needs HTTP"]
    );
}

#[test]
fn sni_routes_are_refused_on_a_tcp_listener_that_terminates_tls() {
    let text = with_routes(
        "tcp",
        "tls = { certs = [{ cert = \"site.pem\", key = \"site.key\" }] }\n\
         [[listener.route]]\nsni = \"db.example.com\"\npool = \"db\"\n",
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.starts_with(
            "fulcrum.toml:8:7: listener \"web\": route #1: sni: only for tcp listeners without tls"
        )),
        "{errs:?}"
    );
}
