//! Tests for the health keys: `backup`, `slow_start`, `fail_open`, `[pool.health]`,
//! `[pool.passive]`: defaults, values read as written, and each error with its location.

use std::time::Duration;

use super::tests::{errors, parse, with, MINIMAL};
use crate::config::{HealthConfig, HealthKind, PassiveConfig, PgRole};

#[test]
fn defaults_without_health_keys() {
    let p = &parse(MINIMAL).expect("valid").pools[0];
    assert_eq!(p.backup, None);
    assert_eq!(p.slow_start, Duration::ZERO);
    assert!(!p.fail_open);
    assert_eq!(p.health, None);
    assert_eq!(p.passive, PassiveConfig::default());
}

#[test]
fn health_keys_read_as_written() {
    let text = with(
        r#"backup = "origin"
slow_start = "30s"
fail_open = true
[pool.health]
kind = "tcp"
send = "INFO replication\r\n"
expect = "role:master"
port = 9000
interval = "250ms"
timeout = "100ms"
rise = 1
fall = 2
[pool.passive]
consecutive_failures = 0
eject_for = "1m"

[[pool]]
name = "origin"
backends = [{ address = "10.0.0.2:80" }]
[pool.health]
expect_status = "200-299,301"
"#,
    );
    let c = parse(&text).expect("valid");
    let p = &c.pools[0];
    assert_eq!(p.backup.map(|b| c.pool_name(b)), Some("origin"));
    assert_eq!(p.slow_start, Duration::from_secs(30));
    assert!(p.fail_open);
    let h = p.health.as_ref().expect("health");
    assert_eq!(h.kind, HealthKind::Tcp);
    assert_eq!(
        (h.send.as_str(), h.expect.as_str()),
        ("INFO replication\r\n", "role:master")
    );
    assert_eq!((h.port, h.rise, h.fall), (9000, 1, 2));
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_millis(250), Duration::from_millis(100))
    );
    assert_eq!(p.passive.consecutive_failures, 0);
    assert_eq!(p.passive.eject_for, Duration::from_secs(60));
    let o = c.pools[1].health.as_ref().expect("health");
    assert_eq!(o.kind, HealthKind::Http);
    assert_eq!(o.path, "/healthz");
    assert_eq!(o.expect_status.0, vec![(200, 299), (301, 301)]);
    assert_eq!(
        (o.interval, o.rise, o.fall),
        (HealthConfig::http().interval, 2, 3)
    );
}

#[test]
fn health_errors_name_their_keys() {
    let text = with(
        r#"backup = "web"
slow_start = "soon"
[pool.health]
kind = "postgrs"
path = "healthz"
expect_status = "500-200"
rise = 0
fall = -1
interval = "0s"
port = 70000
send = "x"
[pool.passive]
consecutive_failures = -2
eject_for = "0s"
"#,
    );
    let errs = errors(&text);
    let expected = [
        "10:10: pool \"web\": backup: must name another pool, not itself",
        "11:14: pool \"web\": slow_start: must be a duration",
        "13:8: pool \"web\": health: kind: must be \"http\", \"tcp\", \"postgres\" or \"grpc\", got \"postgrs\"",
        "14:8: pool \"web\": health: path: must start with \"/\"",
        "15:17: pool \"web\": health: expect_status: range \"500-200\" is empty",
        "16:8: pool \"web\": health: rise: must be > 0",
        "17:8: pool \"web\": health: fall: must be > 0",
        "18:12: pool \"web\": health: interval: must be between 10ms and 1h, got \"0s\"",
        "19:8: pool \"web\": health: port: is too large",
        "20:8: pool \"web\": health: send: only for kind = \"tcp\"",
        "22:24: pool \"web\": passive: consecutive_failures: must be >= 0",
        "23:13: pool \"web\": passive: eject_for: must be > 0",
    ];
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
    for (e, want) in errs.iter().zip(expected) {
        assert!(
            e.starts_with(&format!("fulcrum.toml:{want}")),
            "{e} vs {want}"
        );
    }
}

#[test]
fn backup_must_exist_and_not_loop() {
    let errs = errors(&with("backup = \"nowhere\"\n"));
    assert_eq!(
        errs,
        ["fulcrum.toml:10:10: pool \"web\": backup: no pool named \"nowhere\""]
    );
    let text = with(
        "backup = \"b\"\n[[pool]]\nname = \"b\"\nbackup = \"web\"\nbackends = [{ address = \"10.0.0.2:80\" }]\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].contains("pool \"web\": backup: backup chain from \"b\" loops back"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains("pool \"b\": backup: backup chain from \"web\" loops back"),
        "{errs:#?}"
    );
}

#[test]
fn postgres_keys_read_as_written() {
    let dir = tempfile::tempdir().expect("dir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").expect("write");
    let text = with(&format!(
        "[pool.health]\nkind = \"postgres\"\nrole = \"replica\"\nuser = \"fulcrum\"\ndatabase = \"app\"\npassword_file = {:?}\nmax_lag = \"10s\"\n",
        pw.display().to_string()
    ));
    let c = parse(&text).expect("valid");
    let h = c.pools[0].health.as_ref().expect("health");
    assert_eq!(h.kind, HealthKind::Postgres);
    let pg = h.postgres.as_ref().expect("postgres keys");
    assert_eq!(pg.role, PgRole::Replica);
    assert_eq!((pg.user.as_str(), pg.database.as_str()), ("fulcrum", "app"));
    assert_eq!(pg.password_file.as_deref(), Some(pw.as_path()));
    assert_eq!(pg.max_lag, Some(Duration::from_secs(10)));
}

#[test]
fn postgres_key_errors_name_their_keys() {
    let errs = errors(&with(
        "[pool.health]\nkind = \"postgres\"\nmax_lag = \"soon\"\npassword_file = \"/nonexistent/pw\"\n",
    ));
    let expected = [
        "11:8: pool \"web\": health: role: missing (required for kind = \"postgres\")",
        "11:8: pool \"web\": health: user: missing",
        "12:11: pool \"web\": health: max_lag: must be a duration",
        "13:17: pool \"web\": health: password_file: cannot read /nonexistent/pw",
    ];
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
    for (e, want) in errs.iter().zip(expected) {
        assert!(
            e.starts_with(&format!("fulcrum.toml:{want}")),
            "{e} vs {want}"
        );
    }
    let errs = errors(&with(
        "[pool.health]\nkind = \"postgres\"\nrole = \"leader\"\nuser = \"u\"\n",
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(
            "fulcrum.toml:12:8: pool \"web\": health: role: must be \"primary\" or \"replica\""
        ),
        "{errs:#?}"
    );
    let errs = errors(&with(
        "[pool.health]\nkind = \"postgres\"\nrole = \"primary\"\nuser = \"u\"\nmax_lag = \"1s\"\n",
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("max_lag: only for role = \"replica\""),
        "{errs:#?}"
    );
    let errs = errors(&with("[pool.health]\nkind = \"tcp\"\nrole = \"primary\"\n"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("health: role: only for kind = \"postgres\""),
        "{errs:#?}"
    );
}
