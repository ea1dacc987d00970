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

use crate::monitor::Topology;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::sync::Notify;

/// Per backend position: failed probes seen while it was down, and a
/// wake-up for statements waiting on it.
pub struct Outages {
    backends: Vec<(AtomicU64, Notify)>,
}

impl Outages {
    pub fn new(positions: usize) -> Outages {
        Outages { backends: (0..positions).map(|_| (AtomicU64::new(0), Notify::new())).collect() }
    }

    /// The outage count of `backend` now, to compare with later.
    pub fn mark(&self, backend: usize) -> u64 {
        self.backends.get(backend).map_or(0, |(n, _)| n.load(Ordering::Acquire))
    }

    /// Resolves once `backend` has an outage event after `mark`; never
    /// for a position the proxy does not track.
    pub async fn after(&self, backend: usize, mark: u64) {
        let Some((count, wake)) = self.backends.get(backend) else {
            return std::future::pending().await;
        };
        loop {
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if count.load(Ordering::Acquire) != mark {
                return;
            }
            woken.await;
        }
    }

    /// Records the failed probes that `topology` shows since `seen` (the
    /// probe time last seen per backend, updated here) and wakes the
    /// statements waiting on those backends.
    pub fn record(&self, topology: &Topology, seen: &mut Vec<Option<SystemTime>>) {
        seen.resize(topology.backends.len(), None);
        for (i, backend) in topology.backends.iter().enumerate() {
            let new_probe = backend.checked_at.is_some() && backend.checked_at != seen[i];
            seen[i] = backend.checked_at;
            if new_probe
                && !backend.healthy
                && backend.consecutive_failures > 0
                && let Some((count, wake)) = self.backends.get(i)
            {
                count.fetch_add(1, Ordering::AcqRel);
                wake.notify_waiters();
            }
        }
    }

    /// Follows the monitor's publications until it stops.
    pub async fn follow(
        self: std::sync::Arc<Self>,
        topology: std::sync::Arc<arc_swap::ArcSwap<Topology>>,
        mut published: tokio::sync::watch::Receiver<u64>,
    ) {
        let mut seen = Vec::new();
        while published.changed().await.is_ok() {
            self.record(&topology.load(), &mut seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{BackendSpec, BackendState, Role};
    use std::time::Duration;

    fn state(healthy: bool, failures: u32, at: u64) -> BackendState {
        let spec = BackendSpec {
            name: "r".into(),
            address: "127.0.0.1:1".into(),
            configured_role: Role::Replica,
            weight: 1,
            max_lag: None,
            removed: false,
        };
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
        assert_eq!(outages.mark(0), 0);
        // Down: an outage; the same probe published again is not another.
        outages.record(&topology(vec![state(false, 3, 3)]), &mut seen);
        outages.record(&topology(vec![state(false, 3, 3)]), &mut seen);
        assert_eq!(outages.mark(0), 1);
        // Still down at the next probe: another one.
        outages.record(&topology(vec![state(false, 4, 4)]), &mut seen);
        assert_eq!(outages.mark(0), 2);
        // Back up (a good probe while recovering is not a failure).
        outages.record(&topology(vec![state(false, 0, 5)]), &mut seen);
        assert_eq!(outages.mark(0), 2);
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_an_outage_after_its_mark_only() {
        let outages = std::sync::Arc::new(Outages::new(2));
        let mut seen = Vec::new();
        outages.record(&topology(vec![state(false, 3, 1)]), &mut seen);
        // An outage before the mark does not end the wait.
        let mark = outages.mark(0);
        let waiting = tokio::spawn({
            let outages = outages.clone();
            async move { outages.after(0, mark).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        outages.record(&topology(vec![state(false, 4, 2)]), &mut seen);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        // One that happened between the mark and the wait is not missed.
        let mark = outages.mark(0);
        outages.record(&topology(vec![state(false, 5, 3)]), &mut seen);
        tokio::time::timeout(Duration::from_secs(5), outages.after(0, mark)).await.unwrap();
    }
}
