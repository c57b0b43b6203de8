//! `[listener.limits]`: read as written, off by default, and every bad value reported with
//! its `file:line:col: key: message`.

use super::tests::{errors, parse, MINIMAL};
use crate::config::LimitsConfig;

/// A listener "web" (tcp when `tcp`) whose `[listener.limits]` table (line 6 on) is `limits`.
fn with_limits(limits: &str, tcp: bool) -> String {
    let protocol = if tcp { "tcp" } else { "http" };
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"0.0.0.0:8080\"\nprotocol = \"{protocol}\"\npool = \"web\"\n\
         [listener.limits]\n{limits}\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n"
    )
}

#[test]
fn limits_are_read_as_written_and_off_by_default() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.listeners[0].limits, LimitsConfig::default());
    let text = with_limits(
        "requests_per_second = 100\nburst = 50\nconnections_per_client = 20",
        false,
    );
    let c = parse(&text).expect("valid");
    assert_eq!(
        c.listeners[0].limits,
        LimitsConfig {
            requests_per_second: 100,
            burst: 50,
            connections_per_client: 20,
        }
    );
    // A tcp listener limits connections only.
    let c = parse(&with_limits("connections_per_client = 3", true)).expect("valid");
    assert_eq!(c.listeners[0].limits.connections_per_client, 3);
}

#[test]
fn limit_errors_name_their_key() {
    let text = with_limits(
        "requests_per_second = -1\nburst = 1000001\nconnections_per_client = 1.5\n",
        false,
    );
    // A float is a TOML type error: serde stops there, and says so alone.
    assert_eq!(
        errors(&text),
        ["fulcrum.toml:9:26: listener: limits: connections_per_client: invalid type: floating point `1.5`, expected an integer"]
    );
    let text = with_limits(
        "requests_per_second = -1\nburst = 1000001\nconnections_per_client = 2000000\n",
        false,
    );
    assert_eq!(
        errors(&text),
        [
            "fulcrum.toml:7:23: listener \"web\": limits: requests_per_second: must be >= 0",
            "fulcrum.toml:8:9: listener \"web\": limits: burst: must be at most 1000000 (got 1000001)",
            "fulcrum.toml:9:26: listener \"web\": limits: connections_per_client: must be at most 1000000 (got 2000000)",
        ]
    );
}

#[test]
fn burst_needs_a_rate_and_a_tcp_listener_has_no_requests() {
    let burst = "fulcrum.toml:7:9: listener \"web\": limits: burst: needs requests_per_second > 0";
    for limits in ["burst = 5", "requests_per_second = 0\nburst = 5"] {
        let errs = errors(&with_limits(limits, false));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let line = if limits.starts_with("burst") { 7 } else { 8 };
        let want = burst.replace(":7:", &format!(":{line}:"));
        assert!(errs[0].starts_with(&want), "{errs:#?}");
    }
    // Zero is off, whatever the table says.
    assert!(parse(&with_limits("burst = 0", false)).is_ok());
    let errs = errors(&with_limits("requests_per_second = 10", true));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(
            "fulcrum.toml:7:23: listener \"web\": limits: requests_per_second: only for protocol = \"http\""
        ),
        "{errs:#?}"
    );
    let errs = errors(&with_limits("rate = 10", false));
    assert!(
        errs[0].starts_with("fulcrum.toml:7:1: listener: limits: rate: unknown key"),
        "{errs:#?}"
    );
}
