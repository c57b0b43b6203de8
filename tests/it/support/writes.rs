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
