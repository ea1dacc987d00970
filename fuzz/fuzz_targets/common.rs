//! What the targets that drive async readers share.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that reads an in-memory stream to its end. A byte slice
/// is always ready, so one poll finishes it; pending would mean the code
/// under test waits for something other than its stream.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a read of an in-memory stream is pending"),
    }
}
