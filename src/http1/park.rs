//! Idle keep-alive connections off their tasks: a plain HTTP/1 connection that has waited
//! [`PARK_AFTER`] for its next request is handed here and its task ends. What it holds while
//! parked is its socket, its context and its deadline, as an entry in the set one task per
//! accept loop watches ([`start`]), about a tenth of a task with the connection's future in
//! it (nginx keeps an idle connection in a few hundred bytes the same way: a record and its
//! event, no stack).
//!
//! The socket's readiness wakes only its own entry (`FuturesUnordered` gives every entry a
//! waker of its own), which then becomes a connection task again. Deadlines are swept, not
//! timed one by one: an entry past its `client_idle_timeout` is closed by a sweep of the
//! whole set ([`sweep_every`]: a sixteenth of the timeout, 250 ms to 2 s apart); connections are parked only where that lateness is small beside their wait
//! ([`worth_parking`]). On shutdown every
//! parked connection becomes a task again and closes as an idle one does then (FIN, lingering
//! read).
//!
//! The grace before parking keeps busy keep-alive connections on their tasks: parking and
//! waking again cost a spawn, so only connections quiet for a while pay it.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::conn::{self, IdleState};
use crate::http::ConnContext;

/// How long a connection waits for its next request on its own task before it is parked.
/// Short, because every connection quiet for less still holds its whole task: a burst of new
/// connections that then idle peaks at the arrivals of this long on tasks, and the allocator
/// keeps that peak's pages. Long enough that a connection busy at a few requests a second
/// (each one is a spawn when it was parked) stays on its task.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// The shortest wait that is parked: the sweep's lateness is small beside it (a sixteenth),
/// and a short timeout is kept on the task, to the millisecond.
const PARK_MIN_WAIT: Duration = Duration::from_secs(4);

/// How often, at most and at least, the parked set is swept for connections past their
/// deadline (see [`sweep_every`]).
const SWEEP_MIN: Duration = Duration::from_millis(250);
const SWEEP_MAX: Duration = Duration::from_secs(2);

/// How often the set is swept, from the process's `client_idle_timeout`: a sixteenth of it,
/// within [`SWEEP_MIN`]..[`SWEEP_MAX`]. That is how late a parked connection may be
/// closed (at most 1/16 of its wait, 2 s of the default 60 s idle timeout); a sweep visits
/// every parked entry, so its rate bounds what a large idle set costs (at 100,000 parked
/// connections and the default timeouts, 50,000 visits a second).
fn sweep_every(shared: &crate::snapshot::Live) -> Duration {
    (shared.client_idle_timeout / 16).clamp(SWEEP_MIN, SWEEP_MAX)
}

/// Whether a wait of `wait` is worth parking for (see [`PARK_MIN_WAIT`]).
pub fn worth_parking(wait: Duration) -> bool {
    wait >= PARK_MIN_WAIT
}

/// An accept loop's handle on its parked set: cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct Parking {
    tx: mpsc::UnboundedSender<Conn>,
}

/// A parked connection: what it needs to become a task again.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub cx: Arc<ConnContext>,
    /// When its wait for a next request ends (`client_idle_timeout`; it is then closed).
    pub until: Instant,
}

impl Parking {
    /// Parks `conn`; gives it back when the parked set is gone (its accept loop ended), for
    /// the connection to wait on its task.
    pub fn park(&self, conn: Conn) -> Result<(), Conn> {
        self.tx.send(conn).map_err(|e| e.0)
    }
}

/// Starts the parked set of an accept loop on the current runtime: it runs until `shutdown`
/// (the accept loop's signal to its connections) fires.
pub fn start(shutdown: watch::Receiver<bool>) -> Parking {
    let (tx, rx) = mpsc::unbounded_channel();
    let parking = Parking { tx };
    tokio::spawn(watch_parked(rx, parking.clone(), shutdown));
    parking
}

/// The parked set's task: takes in parked connections, turns the ones whose socket is ready
/// back into tasks, closes the ones past their deadline, and on shutdown hands every one back
/// to a task (which closes it as shutdown closes an idle connection).
async fn watch_parked(
    mut rx: mpsc::UnboundedReceiver<Conn>,
    parking: Parking,
    shutdown: watch::Receiver<bool>,
) {
    let mut parked: FuturesUnordered<Parked> = FuturesUnordered::new();
    let mut stop = pin!(conn::stopping(shutdown.clone()));
    let mut sweep = pin!(tokio::time::sleep_until(Instant::now()));
    // The earliest deadline the sweep timer is set for; `None`: not set.
    let mut sweep_at: Option<Instant> = None;
    let mut every = SWEEP_MIN;
    let resume = |conn: Conn| {
        conn.cx.shared.parked.fetch_sub(1, Ordering::Relaxed);
        let state = IdleState {
            stream: conn.stream,
            cx: conn.cx,
            shutdown: shutdown.clone(),
            parking: Some(parking.clone()),
        };
        tokio::spawn(conn::resume(state, conn.until));
    };
    loop {
        tokio::select! {
            biased;
            () = stop.as_mut() => break,
            // A ready connection first: its client waits; a parking one does not.
            Some(woke) = parked.next(), if !parked.is_empty() => {
                if let Some(conn) = woke {
                    resume(conn);
                }
            }
            got = rx.recv() => {
                // The loop holds a sender itself: the channel never closes under it.
                let Some(conn) = got else { break };
                conn.cx.shared.parked.fetch_add(1, Ordering::Relaxed);
                every = sweep_every(&conn.cx.shared);
                if sweep_at.is_none_or(|at| conn.until < at) {
                    let at = conn.until.max(Instant::now() + every);
                    sweep.as_mut().reset(at);
                    sweep_at = Some(at);
                }
                parked.push(Parked::new(conn));
            }
            () = sweep.as_mut(), if sweep_at.is_some() => {
                let now = Instant::now();
                let mut next: Option<Instant> = None;
                for entry in parked.iter_mut() {
                    match entry.until() {
                        Some(until) if until <= now => entry.expire(),
                        Some(until) => next = Some(next.map_or(until, |n| n.min(until))),
                        None => {}
                    }
                }
                sweep_at = next.map(|at| at.max(now + every));
                if let Some(at) = sweep_at {
                    sweep.as_mut().reset(at);
                }
            }
        }
    }
    // Shutdown: each parked connection closes on a task of its own (lingering, as an idle
    // connection on its task does); the entries' wakers go with the set.
    for entry in parked.iter_mut() {
        if let Some(conn) = entry.conn.take() {
            resume(conn);
        }
    }
}

/// One entry of the parked set: resolves when its socket is readable (`Some`: the
/// connection, for a task again) or once it was closed by a sweep (`None`).
struct Parked {
    conn: Option<Conn>,
    /// The entry's own waker, for a sweep to have its closing seen.
    waker: Option<Waker>,
}

impl Parked {
    fn new(conn: Conn) -> Self {
        Parked {
            conn: Some(conn),
            waker: None,
        }
    }

    fn until(&self) -> Option<Instant> {
        self.conn.as_ref().map(|c| c.until)
    }

    /// Closes the connection (its deadline passed) and has the entry leave the set.
    fn expire(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.cx.shared.parked.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Future for Parked {
    type Output = Option<Conn>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(conn) = &this.conn else {
            return Poll::Ready(None);
        };
        match conn.stream.poll_read_ready(cx) {
            // Readable, closed by the client, or failed: its task reads and finds out which.
            Poll::Ready(_) => Poll::Ready(this.conn.take()),
            Poll::Pending => {
                if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    this.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parked connection costs beside its socket's registration and its context: its
    /// entry (printed; `FuturesUnordered` adds its links, about 60 bytes, around it).
    #[test]
    fn a_parked_entry_is_small() {
        let size = std::mem::size_of::<Parked>();
        println!("parked HTTP/1 connection entry: {size} bytes");
        assert!(size <= 96, "{size} bytes");
    }

    #[test]
    fn sweeps_follow_the_idle_timeout_within_bounds() {
        let live = |idle: &str| {
            let toml = format!(
                "[global]\nclient_idle_timeout = \"{idle}\"\n[[listener]]\nname = \"l\"\n\
                 bind = \"127.0.0.1:0\"\npool = \"p\"\n[[pool]]\nname = \"p\"\n\
                 backends = [{{ address = \"127.0.0.1:1\" }}]\n"
            );
            let config = crate::config::Config::from_toml(&toml, std::path::Path::new("t.toml"))
                .expect("config");
            crate::snapshot::Live::new(&config, false, crate::splice::Forwarding::Copy)
        };
        // A sixteenth of the timeout, 250 ms to 2 s.
        assert_eq!(sweep_every(&live("8s")), Duration::from_millis(500));
        assert_eq!(sweep_every(&live("4s")), SWEEP_MIN);
        assert_eq!(sweep_every(&live("60s")), SWEEP_MAX);
    }

    #[test]
    fn only_waits_well_past_the_grace_are_parked() {
        assert!(!worth_parking(Duration::from_millis(500)));
        assert!(!worth_parking(Duration::from_secs(2)));
        assert!(worth_parking(Duration::from_secs(10)));
        assert!(worth_parking(Duration::from_secs(60)));
    }
}
