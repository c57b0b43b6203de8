//! A steady stream of writes through a role-checked write port, each on its own connection,
//! tallied by outcome: the measure of "no write ever reaches a node of the wrong role".

use std::net::SocketAddr;
use std::time::Duration;

/// What one write got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The write was applied.
    Ok,
    /// A node of the wrong role answered (Redis `READONLY`, PostgreSQL "read-only transaction").
    WrongRole(String),
    /// No node took the connection (none decided yet, or the connection was closed).
    Refused(String),
}

/// The outcomes of one run, in order.
#[derive(Debug, Default)]
pub struct Tally(pub Vec<Outcome>);

impl Tally {
    pub fn wrong_role(&self) -> Vec<&Outcome> {
        self.0
            .iter()
            .filter(|o| matches!(o, Outcome::WrongRole(_)))
            .collect()
    }

    pub fn ok(&self) -> usize {
        self.0.iter().filter(|o| **o == Outcome::Ok).count()
    }
}

/// Starts `write(port, i)` every `every` for `total` (each waited for before the next tick).
pub async fn steady<F>(port: SocketAddr, every: Duration, total: Duration, write: F) -> Tally
where
    F: AsyncFn(SocketAddr, u32) -> Outcome,
{
    let mut tick = tokio::time::interval(every);
    let ticks = u32::try_from(total.as_millis() / every.as_millis().max(1)).unwrap_or(u32::MAX);
    let mut tally = Tally::default();
    for i in 0..ticks {
        tick.tick().await;
        tally.0.push(write(port, i).await);
    }
    tally
}

/// A config with two role-checked tcp write ports: "write" over pool "w" (`first`, the
/// wrong-role node listed first, where round robin starts) and "write2" over pool "w2"
/// (`second`), each pool checked by the `[pool.health]` lines `health`.
pub fn two_write_ports(first: &[SocketAddr], second: &[SocketAddr], health: &str) -> String {
    let pool = |name: &str, nodes: &[SocketAddr]| {
        let items: Vec<String> = nodes
            .iter()
            .map(|a| format!("{{ address = \"{a}\" }}"))
            .collect();
        format!(
            "[[pool]]\nname = \"{name}\"\nbackends = [{}]\n[pool.health]\n{health}",
            items.join(", ")
        )
    };
    format!(
        "[global]\nworkers = 1\naccess_log = \"off\"\nadmin = \"\"\n\
         [[listener]]\nname = \"write\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"w\"\n\
         [[listener]]\nname = \"write2\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"w2\"\n\
         {}{}",
        pool("w", first),
        pool("w2", second)
    )
}

/// Starts Fulcrum on `before` (config text), writes every 20 ms for 3 s through "write"
/// from the first moment it accepts, reloads to `after`, and writes the same way through
/// "write2"; asserts that no write of either phase reached a node of the wrong role, and that
/// at least `min_ok` of each went through.
pub async fn no_wrong_role_at_start_or_after_reload<F>(
    before: &str,
    after: &str,
    min_ok: usize,
    write: F,
) where
    F: AsyncFn(SocketAddr, u32) -> Outcome,
{
    let dir = tempfile::tempdir().unwrap();
    let path = super::proxy::write_file(dir.path(), "fulcrum.toml", before);
    let mut handle = fulcrum::start(fulcrum::Config::from_file(&path).unwrap()).unwrap();
    handle.stop_watching();
    let every = Duration::from_millis(20);
    let total = Duration::from_secs(3);
    let check = |phase: &str, tally: &Tally| {
        let wrong = tally.wrong_role();
        eprintln!(
            "{phase}: {} ok, {} wrong role of {}",
            tally.ok(),
            wrong.len(),
            tally.0.len()
        );
        assert_eq!(wrong, Vec::<&Outcome>::new(), "{phase}");
        assert!(
            tally.ok() >= min_ok,
            "{phase}: too few went through: {:?}",
            tally.0
        );
    };
    let write1 = handle.listener_addr("write").unwrap();
    check("at start", &steady(write1, every, total, &write).await);

    super::proxy::write_file(dir.path(), "fulcrum.toml", after);
    let reloader = handle.reloader();
    tokio::task::spawn_blocking(move || reloader.reload(fulcrum::Trigger::Api))
        .await
        .unwrap()
        .unwrap();
    let write2 = handle.listener_addr("write2").unwrap();
    check(
        "after the reload",
        &steady(write2, every, total, &write).await,
    );
    drop(handle);
}
