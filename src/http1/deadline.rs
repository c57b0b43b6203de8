//! Timeouts that cost nothing when the I/O is ready at once.
//!
//! `tokio::time::timeout` builds a timer entry (a runtime handle clone and a clock read) for
//! every call, even when the wrapped write or read completes on its first poll, as writes to
//! a socket with room and reads of bytes already buffered do. Here the future is polled once
//! first; the timer exists only if it has to wait. The wait it bounds starts at that first
//! poll, a few instructions later than the call.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::error::Elapsed;
use tokio::time::Instant;

/// `fut`'s output, unless it waits longer than `wait`.
pub async fn within<F: Future>(wait: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => tokio::time::timeout(wait, fut).await,
    }
}

/// `fut`'s output, unless it is still waiting at `deadline`.
pub async fn within_at<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => tokio::time::timeout_at(deadline, fut).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ready_future_needs_no_timer_and_a_stuck_one_times_out() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Ok(7));
        let stuck = within(Duration::from_millis(5), std::future::pending::<()>());
        assert!(stuck.await.is_err());
        let at = Instant::now() + Duration::from_millis(5);
        assert!(within_at(at, std::future::pending::<()>()).await.is_err());
        let late = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            3
        };
        assert_eq!(within(Duration::from_secs(30), late).await, Ok(3));
    }
}
