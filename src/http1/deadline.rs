//! Timeouts at the engine's cost: none for I/O that is ready at once, and no timer-wheel
//! insertion and removal per wait for the waits every exchange has.
//!
//! `tokio::time::timeout` builds a timer entry (a runtime handle clone and a clock read) for
//! every call, even when the wrapped write or read completes on its first poll, as writes to
//! a socket with room and reads of bytes already buffered do. [`within`] polls the future
//! once first; the timer exists only if it has to wait. The wait it bounds starts at that
//! first poll, a few instructions later than the call.
//!
//! The two waits of every keep-alive exchange (the client's next request, the backend's
//! response head) always wait, so each is bounded by a timer kept for the connection's life
//! ([`kept`]): moving a registered timer's deadline later is one atomic compare-exchange in
//! tokio (the wheel re-files the entry only when its old deadline comes round), where a
//! timer per wait is filed into the wheel and taken out again under the driver's lock each
//! time. A kept timer that fires while nobody waits on it wakes its last waiter once, for
//! nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// A bounded wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

#[derive(Debug, Clone, Copy)]
enum Bound {
    After(Duration),
    At(Instant),
}

pin_project! {
    /// [`within`]'s and [`within_at`]'s future: the I/O, and a timer made on its first wait.
    /// Written out rather than an `async fn`, whose state would hold the wrapped future
    /// twice (the argument, and the pinned copy it polls).
    #[must_use = "futures do nothing unless polled"]
    pub struct Within<F> {
        #[pin]
        fut: F,
        bound: Bound,
        #[pin]
        timer: Option<Sleep>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if this.timer.is_none() {
            let deadline = match *this.bound {
                Bound::After(wait) => Instant::now() + wait,
                Bound::At(deadline) => deadline,
            };
            this.timer.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.timer.as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| Err(TimedOut)),
            None => Poll::Pending,
        }
    }
}

/// `fut`'s output, unless it waits longer than `wait`.
pub fn within<F: Future>(wait: Duration, fut: F) -> Within<F> {
    Within {
        fut,
        bound: Bound::After(wait),
        timer: None,
    }
}

/// `fut`'s output, unless it is still waiting at `deadline`.
pub fn within_at<F: Future>(deadline: Instant, fut: F) -> Within<F> {
    Within {
        fut,
        bound: Bound::At(deadline),
        timer: None,
    }
}

pin_project! {
    /// [`kept`]'s future.
    #[must_use = "futures do nothing unless polled"]
    pub struct Kept<'t, F> {
        #[pin]
        fut: F,
        timer: Pin<&'t mut Sleep>,
    }
}

impl<F: Future> Future for Kept<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        this.timer.as_mut().poll(cx).map(|()| None)
    }
}

/// `fut`'s output, unless it is still waiting at `until` (`None`), on `timer`: a timer the
/// caller keeps across waits, moved to `until` here. The caller gives the deadline from a
/// clock reading it has (one per exchange), not one taken here.
pub fn kept<F: Future>(mut timer: Pin<&mut Sleep>, until: Instant, fut: F) -> Kept<'_, F> {
    timer.as_mut().reset(until);
    Kept { fut, timer }
}

/// A timer for [`kept`], boxed so that what owns it can move (a pooled connection).
pub fn new_timer() -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep_until(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ready_future_is_answered_and_a_stuck_one_times_out() {
        // Ready at once: answered even with no time at all to wait.
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Ok(7));
        assert_eq!(
            within(Duration::from_millis(5), std::future::pending::<()>()).await,
            Err(TimedOut)
        );
        let at = Instant::now() + Duration::from_millis(5);
        assert!(within_at(at, std::future::pending::<()>()).await.is_err());
        let late = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            3
        };
        assert_eq!(within(Duration::from_secs(30), late).await, Ok(3));
    }

    #[tokio::test]
    async fn a_kept_timer_bounds_each_wait_from_its_own_start() {
        let mut timer = new_timer();
        for _ in 0..3 {
            let ready = kept(
                timer.as_mut(),
                Instant::now() + Duration::from_secs(30),
                async { 1 },
            );
            assert_eq!(ready.await, Some(1));
        }
        // The deadline moved back (30 s, then 5 ms): the wait still ends at 5 ms.
        let stuck = kept(
            timer.as_mut(),
            Instant::now() + Duration::from_millis(5),
            std::future::pending::<()>(),
        );
        assert_eq!(stuck.await, None);
        // And after firing, the same timer bounds the next wait again.
        let late = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            2
        };
        assert_eq!(
            kept(
                timer.as_mut(),
                Instant::now() + Duration::from_secs(30),
                late
            )
            .await,
            Some(2)
        );
        let stuck = kept(
            timer.as_mut(),
            Instant::now() + Duration::from_millis(5),
            std::future::pending::<()>(),
        );
        assert_eq!(stuck.await, None);
    }
}
