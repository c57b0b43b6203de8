//! Bounded waits for a condition the test cannot be told about: a probe is run until it
//! answers "ready", with a short pause between tries, and the test fails with a message naming
//! what it waited for when the time is up.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// First pause between two probes; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// A probe's answer: `true`, `Some(v)` or `Ok(v)` end the wait with their value; `false`,
/// `None` or `Err(state)` mean "not yet" (an `Err`'s state is reported if time runs out).
pub trait Outcome {
    type Value;
    fn ready(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

fn timed_out(what: &str, within: Duration, last: Option<String>) -> ! {
    match last {
        Some(last) => panic!("timed out after {within:?} waiting for {what} (last: {last})"),
        None => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// Runs `probe` until it is ready and returns its value; panics naming `what` once `within`
/// has passed (a probe still running then is abandoned). Call it as
/// `eventually(WAIT, "b marked down", || async { ... })`, or with `async || { ... }` when the
/// probe borrows something mutably (a client connection).
pub async fn eventually<R: Outcome>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> R,
) -> R::Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(answer) => match answer.ready() {
                Ok(value) => return value,
                Err(state) => last = state.or(last),
            },
            Err(_) => timed_out(what, within, last),
        }
        if tokio::time::Instant::now() >= deadline {
            timed_out(what, within, last);
        }
        tokio::time::sleep(pause.min(deadline - tokio::time::Instant::now())).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// [`eventually`] for code outside a runtime (a probe that blocks is not interrupted).
pub fn eventually_blocking<R: Outcome>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> R,
) -> R::Value {
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    let mut last = None;
    loop {
        match probe().ready() {
            Ok(value) => return value,
            Err(state) => last = state.or(last),
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out(what, within, last);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
