//! `[[pool]] max_connections`, `max_queue`, `queue_timeout`: off by default, read as written,
//! and every bad value reported with its `file:line:col: key: message`.

use std::time::Duration;

use super::tests::{errors, parse, MINIMAL};
use crate::config::PoolConfig;

/// A pool "web" whose lines from line 3 on are `keys`.
fn with_keys(keys: &str) -> String {
    format!(
        "[[pool]]\nname = \"web\"\n{keys}\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n\
         [[listener]]\nname = \"web\"\nbind = \"0.0.0.0:8080\"\npool = \"web\"\n"
    )
}

#[test]
fn off_by_default_and_read_as_written() {
    let c = parse(MINIMAL).expect("valid");
    let d = PoolConfig::new("d", Vec::new());
    assert_eq!(c.pools[0].max_connections, 0);
    assert_eq!(
        (c.pools[0].max_queue, c.pools[0].queue_timeout),
        (d.max_queue, d.queue_timeout)
    );
    assert_eq!(
        (d.max_queue, d.queue_timeout),
        (100, Duration::from_secs(1))
    );
    let text = with_keys("max_connections = 50\nmax_queue = 0\nqueue_timeout = \"250ms\"");
    let p = &parse(&text).expect("valid").pools[0];
    assert_eq!(
        (p.max_connections, p.max_queue, p.queue_timeout),
        (50, 0, Duration::from_millis(250))
    );
    // No wait at all: full is 503 at once.
    let p = &parse(&with_keys("max_connections = 1\nqueue_timeout = \"0s\""))
        .expect("valid")
        .pools[0];
    assert_eq!(p.queue_timeout, Duration::ZERO);
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            "max_connections = -1",
            "3:19: pool \"web\": max_connections: must be between 0 and 1000000, got -1",
        ),
        (
            "max_connections = 1000001",
            "3:19: pool \"web\": max_connections: must be between 0 and 1000000",
        ),
        (
            "max_queue = -3",
            "3:13: pool \"web\": max_queue: must be between 0 and 1000000, got -3",
        ),
        (
            "queue_timeout = \"2m\"",
            "3:17: pool \"web\": queue_timeout: must be between 0s and 1m, got \"2m\"",
        ),
        (
            "queue_timeout = \"soon\"",
            "3:17: pool \"web\": queue_timeout: must be a duration",
        ),
        (
            "max_connections = \"10\"",
            "3:19: pool: max_connections: invalid type",
        ),
    ];
    for (keys, want) in cases {
        let errs = errors(&with_keys(keys));
        assert_eq!(errs.len(), 1, "{keys}: {errs:#?}");
        assert!(
            errs[0].starts_with(&format!("fulcrum.toml:{want}")),
            "{errs:#?} vs {want}"
        );
    }
}

#[test]
fn pool_protocol_and_tls_rules() {
    let base = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n\n[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n";
    let check = |extra: &str| {
        super::validate(&format!("{base}{extra}"), std::path::Path::new("t.toml"))
            .map_err(|e| e.to_string())
    };
    let ok = check("protocol = \"h2c\"\n").expect("h2c");
    assert_eq!(ok.pools[0].protocol, crate::config::UpstreamProtocol::H2c);
    let ok = check("protocol = \"auto\"\n[pool.tls]\nverify = false\n").expect("auto");
    assert!(!ok.pools[0].tls.as_ref().expect("tls").verify);
    let err = check("protocol = \"h3\"\n").expect_err("refused");
    assert!(err.contains("pool \"p\": protocol"), "{err}");
    let err = check("protocol = \"h2c\"\n[pool.tls]\n").expect_err("refused");
    assert!(err.contains("pool \"p\": tls"), "{err}");
    let err = check("[pool.tls]\ncert = \"c.pem\"\n").expect_err("refused");
    assert!(err.contains("cert needs its key"), "{err}");
    let err = check("[pool.health]\nkind = \"grpc\"\n").expect_err("refused");
    assert!(err.contains("grpc checks speak HTTP/2"), "{err}");
    let err = check("protocol = \"h2c\"\n[pool.health]\nkind = \"http\"\nservice = \"x\"\n")
        .expect_err("refused");
    assert!(err.contains("only for kind = \"grpc\""), "{err}");
    let ok = check("protocol = \"h2c\"\n[pool.health]\nkind = \"grpc\"\nservice = \"x\"\n")
        .expect("grpc");
    let h = ok.pools[0].health.as_ref().expect("health");
    assert_eq!(h.service, "x");
    assert!(h.decides_role());
}
