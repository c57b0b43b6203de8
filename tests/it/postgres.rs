//! Read/write split in front of a real PostgreSQL primary and streaming replica, with
//! `kind = "postgres"` checks: writes through the write port, reads through the read port, a
//! replica whose replay is paused dropped from the read pool past `max_lag`, and after a
//! promotion with the old primary stopped, writes reach the new primary.

use std::time::{Duration, Instant};

use fulcrum::config::{
    HealthConfig, HealthKind, ListenerConfig, OnDown, PgRole, PoolConfig, PoolId, PostgresCheck,
};

use crate::support::postgres::{execute, in_recovery, session, PgDir, Postgres};
use crate::support::proxy::{any_port, config, pool};
use crate::support::{eventually, require};

const INTERVAL: Duration = Duration::from_millis(200);
const FALL: u32 = 2;

fn role_pool(
    name: &str,
    nodes: &[&Postgres],
    role: PgRole,
    max_lag: Option<Duration>,
) -> PoolConfig {
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let mut p = pool(name, &addrs);
    let mut health = HealthConfig::tcp();
    health.kind = HealthKind::Postgres;
    health.postgres = Some(PostgresCheck {
        role,
        user: "postgres".into(),
        database: "postgres".into(),
        password_file: None,
        max_lag,
    });
    health.interval = INTERVAL;
    health.timeout = Duration::from_millis(500);
    health.fall = FALL;
    health.rise = 1;
    p.health = Some(health);
    p.on_down = OnDown::Close;
    p
}

/// Polls until `f` yields `want`, or panics after `within`; returns how long it took.
async fn until<F, Fut, T>(within: Duration, what: &str, want: T, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let started = Instant::now();
    eventually(within, what, || {
        let got = f();
        let want = &want;
        async move {
            let got = got.await;
            if got == *want {
                Ok(())
            } else {
                Err(got)
            }
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test]
async fn write_and_read_ports_follow_roles_lag_and_promotion() {
    if require("postgresql").is_none() {
        return;
    }
    let dir = PgDir::new();
    let mut primary = Postgres::primary(&dir, "primary");
    let replica = Postgres::replica(&dir, "replica", &primary);

    let mut cfg = config(
        ListenerConfig::tcp("write", any_port(), PoolId::new(0)),
        vec![
            role_pool("write", &[&primary, &replica], PgRole::Primary, None),
            role_pool(
                "read",
                &[&primary, &replica],
                PgRole::Replica,
                Some(Duration::from_secs(1)),
            ),
        ],
    );
    cfg.pools[1].backup = Some(PoolId::new(0));
    cfg.listeners
        .push(ListenerConfig::tcp("read", any_port(), PoolId::new(1)));
    cfg.global.admin = Some(any_port());
    let handle = fulcrum::start(cfg).unwrap();
    let write = handle.listener_addr("write").unwrap();
    let read = handle.listener_addr("read").unwrap();
    let settled = |h: &fulcrum::Handle| {
        let s = h.status();
        let up = |pool: usize, i: usize| s[pool].backends[i].healthy;
        up(0, 0) && !up(0, 1) && !up(1, 0) && up(1, 1)
    };
    eventually(
        Duration::from_secs(5),
        "the pools to settle on roles",
        || async {
            if settled(&handle) {
                Ok(())
            } else {
                Err(handle.status())
            }
        },
    )
    .await;

    // The status API shows each node by the role its check saw, in both pools.
    let admin = handle.admin_addr().unwrap();
    let status = crate::admin::get(
        &crate::support::client::http1(),
        format!("http://{admin}/api/v1/status"),
    )
    .await;
    let doc: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let roles = |pool: usize| -> Vec<serde_json::Value> {
        doc["pools"][pool]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["role"].clone())
            .collect()
    };
    assert_eq!(doc["pools"][0]["role"], "primary");
    assert_eq!(doc["pools"][1]["role"], "replica");
    assert_eq!(roles(0), vec!["primary", "replica"], "{doc}");
    assert_eq!(roles(1), vec!["primary", "replica"], "{doc}");

    // INSERT through the write port, SELECT through the read port (a replica).
    execute(write, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert_eq!(in_recovery(write).await, Some(false));
    assert_eq!(in_recovery(read).await, Some(true));
    let count = || async {
        let c = session(read).await?;
        let row = c.query_one("SELECT count(*) FROM t", &[]).await.ok()?;
        row.try_get::<_, i64>(0).ok()
    };
    until(Duration::from_secs(5), "replicated row", Some(1), count).await;

    // Replay paused while the primary takes writes: past max_lag the replica leaves the read
    // pool and reads go to the primary through the backup pool.
    execute(replica.addr, "SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let paused = Instant::now();
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            let _ = execute(write, &format!("INSERT INTO t VALUES ({i})")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    until(
        Duration::from_secs(6),
        "read port off the lagging replica",
        Some(false),
        || in_recovery(read),
    )
    .await;
    let took = paused.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "dropped after {took:?}, before max_lag"
    );
    writer.abort();
    execute(replica.addr, "SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    until(
        Duration::from_secs(5),
        "replica back in the read pool",
        Some(true),
        || in_recovery(read),
    )
    .await;

    // Promotion: the replica is promoted and the old primary stopped; writes follow.
    replica.promote();
    primary.stop();
    let promoted = Instant::now();
    let limit = INTERVAL * FALL + Duration::from_secs(1);
    until(limit * 3, "write on the new primary", Ok(()), || {
        execute(write, "INSERT INTO t VALUES (99)")
    })
    .await;
    let took = promoted.elapsed();
    assert!(
        took <= limit,
        "writes reached the new primary after {took:?} (limit {limit:?})"
    );
    assert_eq!(in_recovery(replica.addr).await, Some(false));
    drop(handle);
}

/// A role-checked write port sends no INSERT to the replica, from the first moment it accepts
/// and after a reload that adds the replica to a write pool. The replica is listed first,
/// where round robin starts.
#[tokio::test]
async fn no_insert_reaches_the_replica_at_start_or_after_a_reload() {
    use crate::support::writes::{
        no_wrong_role_at_start_or_after_reload, two_write_ports, Outcome,
    };
    if require("postgresql").is_none() {
        return;
    }
    let dir = PgDir::new();
    let primary = Postgres::primary(&dir, "primary");
    let replica = Postgres::replica(&dir, "replica", &primary);
    execute(primary.addr, "CREATE TABLE w (i int)")
        .await
        .unwrap();
    let health = "kind = \"postgres\"\nrole = \"primary\"\nuser = \"postgres\"\n\
                  database = \"postgres\"\ninterval = \"2s\"\ntimeout = \"1s\"\nrise = 1\nfall = 2\n";
    let nodes = [replica.addr, primary.addr];
    let before = two_write_ports(&nodes, &[primary.addr], health);
    let after = two_write_ports(&nodes, &nodes, health);
    // Each INSERT on its own session, waited for before the next.
    let insert =
        async |port, i: u32| match execute(port, &format!("INSERT INTO w VALUES ({i})")).await {
            Ok(()) => Outcome::Ok,
            Err(e) if e.contains("read-only transaction") => Outcome::WrongRole(e),
            Err(e) => Outcome::Refused(e),
        };
    no_wrong_role_at_start_or_after_reload(&before, &after, 50, insert).await;
}
