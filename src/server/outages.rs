//! Backends the monitor found down while statements waited on them.
//!
//! A statement sent to a server that stops answering (paused, partitioned,
//! out of memory) would wait for ever: the connection stays open, nothing
//! arrives. A read timeout cannot tell that from a long statement, but the
//! monitor can: its probes fail. Every failed probe of a backend that is
//! down counts as an outage event; a statement that sees one while it
//! waits gives up on its connection (a read runs again elsewhere, a write
//! gets "lost connection", its outcome unknown as with any lost
//! connection).
//!
//! A waiting session notes the backend it waits on in its own
//! [`Signal`](super::Signal) before it reads the count; an outage raises
//! the count before it looks for the sessions to wake. With both sides
//! sequentially consistent, either the session sees the new count or the
//! outage sees the session.

use super::{Backoff, Registry, Signal};
use crate::monitor::Topology;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::SystemTime;

/// A session noted as waiting on a backend, until dropped.
struct WaitingOn<'a>(&'a Signal);

impl<'a> WaitingOn<'a> {
    fn new(signal: &'a Signal, backend: usize) -> Self {
        signal.wait_on(Some(backend));
        WaitingOn(signal)
    }
}

impl Drop for WaitingOn<'_> {
    fn drop(&mut self) {
        self.0.wait_on(None);
    }
}

/// Per backend position: failed probes seen while it was down.
pub struct Outages {
    backends: Vec<AtomicU64>,
}

impl Outages {
    pub fn new(positions: usize) -> Outages {
        Outages { backends: (0..positions).map(|_| AtomicU64::new(0)).collect() }
    }

    /// The outage count of `backend` now, to compare with later.
    /// Outages of `backend` recorded so far (0 for a position the proxy
    /// does not track).
    pub fn count(&self, backend: usize) -> u64 {
        self.backends.get(backend).map_or(0, |n| n.load(Ordering::SeqCst))
    }

    /// Resolves once `backend` has an outage event after this call (never
    /// for a position the proxy does not track). While the future lives,
    /// `signal` names `backend` as the one its session waits on, so the
    /// task polling the future (the one `signal` wakes) is woken by an
    /// outage; dropping the future clears that.
    pub fn watch<'a>(
        &'a self,
        backend: usize,
        signal: &'a Signal,
    ) -> impl std::future::Future<Output = ()> + 'a {
        // Noted before the count is read (see the module's note).
        let waiting = WaitingOn::new(signal, backend);
        let mark = self.count(backend);
        async move {
            // Moved whole into the future (a closure using only its field
            // would capture that alone and leave the guard to drop now).
            let waiting = waiting;
            let Some(count) = self.backends.get(backend) else {
                return std::future::pending().await;
            };
            std::future::poll_fn(|cx| {
                waiting.0.register(cx.waker());
                if count.load(Ordering::SeqCst) != mark { Poll::Ready(()) } else { Poll::Pending }
            })
            .await
        }
    }

    /// Records the failed probes that `topology` shows since `seen` (the
    /// probe time last seen per backend, updated here) and returns the
    /// backends that had one, whose waiting statements must be woken.
    pub fn record(&self, topology: &Topology, seen: &mut Vec<Option<SystemTime>>) -> Vec<usize> {
        let mut down = Vec::new();
        seen.resize(topology.backends.len(), None);
        for (i, backend) in topology.backends.iter().enumerate() {
            let new_probe = backend.checked_at.is_some() && backend.checked_at != seen[i];
            seen[i] = backend.checked_at;
            if new_probe
                && !backend.healthy
                && backend.consecutive_failures > 0
                && let Some(count) = self.backends.get(i)
            {
                count.fetch_add(1, Ordering::SeqCst);
                down.push(i);
            }
        }
        down
    }

    /// Follows the monitor's publications until it stops: wakes the
    /// statements waiting on a backend found down, and ends the sessions'
    /// avoidance of a backend found up again.
    pub async fn follow(
        self: std::sync::Arc<Self>,
        topology: std::sync::Arc<arc_swap::ArcSwap<Topology>>,
        mut published: tokio::sync::watch::Receiver<u64>,
        sessions: std::sync::Arc<Registry>,
        backoff: std::sync::Arc<Backoff>,
    ) {
        let (mut seen, mut was_healthy) = (Vec::new(), Vec::new());
        while published.changed().await.is_ok() {
            let topology = topology.load();
            for backend in self.record(&topology, &mut seen) {
                sessions.wake_waiting_on(backend);
            }
            backoff.forgive_recovered(&topology, &mut was_healthy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{BackendSpec, BackendState, Role};
    use std::time::Duration;

    fn state(healthy: bool, failures: u32, at: u64) -> BackendState {
        let spec = BackendSpec::new("r", "127.0.0.1:1", Role::Replica);
        BackendState {
            healthy,
            consecutive_failures: failures,
            checked_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at)),
            ..BackendState::unknown(&spec)
        }
    }

    fn topology(states: Vec<BackendState>) -> Topology {
        Topology { backends: states, ..Topology::default() }
    }

    #[test]
    fn only_new_failed_probes_of_a_down_backend_count() {
        let outages = Outages::new(4);
        let mut seen = Vec::new();
        // Healthy, then one failed probe while still healthy: no outage.
        outages.record(&topology(vec![state(true, 0, 1)]), &mut seen);
        outages.record(&topology(vec![state(true, 1, 2)]), &mut seen);
        assert_eq!(outages.count(0), 0);
        // Down: an outage; the same probe published again is not another.
        outages.record(&topology(vec![state(false, 3, 3)]), &mut seen);
        outages.record(&topology(vec![state(false, 3, 3)]), &mut seen);
        assert_eq!(outages.count(0), 1);
        // Still down at the next probe: another one.
        outages.record(&topology(vec![state(false, 4, 4)]), &mut seen);
        assert_eq!(outages.count(0), 2);
        // Back up (a good probe while recovering is not a failure).
        outages.record(&topology(vec![state(false, 0, 5)]), &mut seen);
        assert_eq!(outages.count(0), 2);
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_an_outage_after_its_wait_began_only() {
        use crate::server::SessionHandle;
        let outages = std::sync::Arc::new(Outages::new(2));
        let sessions = Registry::default();
        let handle = std::sync::Arc::new(SessionHandle::default());
        sessions.insert(1, handle.clone());
        let mut seen = Vec::new();
        assert_eq!(outages.record(&topology(vec![state(false, 3, 1)]), &mut seen), vec![0]);
        // An outage before the wait does not end it.
        let waiting = tokio::spawn({
            let (outages, handle) = (outages.clone(), handle.clone());
            async move { outages.watch(0, &handle.signal).await }
        });
        while !handle.signal.waits_on(0) {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        for backend in outages.record(&topology(vec![state(false, 4, 2)]), &mut seen) {
            sessions.wake_waiting_on(backend);
        }
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        // Once the wait is over the session waits on no backend.
        for backend in outages.record(&topology(vec![state(false, 5, 3)]), &mut seen) {
            sessions.wake_waiting_on(backend);
        }
        assert!(!handle.signal.waits_on(0));
        // One that happened between the call and the first poll is not missed.
        let signal = &handle.signal;
        let wait = outages.watch(0, signal);
        outages.record(&topology(vec![state(false, 6, 4)]), &mut seen);
        tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap();
    }
}
