//! The sessions of the proxy, by the connection id their client sees, and
//! how one is told to stop: killed by another session, the proxy shutting
//! down, or the backend its statement waits on found down by the monitor.
//!
//! A session waits on one thing at a time (its client's next command, or a
//! backend's reply), so each session has a single [`Signal`]: whether it
//! must stop, the backend it waits on, and the waker of the task that
//! serves it. Checking it is a lock of the session's own mutex, which no
//! other thread touches unless it wakes the session, rather than a
//! registration in a list shared by
//! every session (as a `Notify` per backend or for shutdown would be).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

/// Whether one session must stop (killed by another session, or the
/// proxy shutting down: either way it ends between commands), and the
/// waker of its task.
#[derive(Debug, Default)]
pub struct Signal {
    stop: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// 1 + the index of the backend whose reply the session waits for; 0
    /// when it waits for none.
    waiting_on: AtomicUsize,
}

impl Signal {
    /// Tells the session to stop and wakes it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Whether the session was told to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Wakes the session's task, which looks again at whatever it waits on.
    pub fn wake(&self) {
        let waker = self.lock().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Makes the task polling now the one that [`Signal::wake`] wakes.
    pub fn register(&self, waker: &Waker) {
        let mut slot = self.lock();
        match slot.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Resolves once the session was told to stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            self.register(cx.waker());
            if self.stopping() { Poll::Ready(()) } else { Poll::Pending }
        })
    }

    /// Notes that the session now waits for a reply of backend `idx`
    /// (None: for no backend), so that an outage of it wakes the session
    /// (see `Outages::watch`, which sets and clears it).
    pub fn wait_on(&self, idx: Option<usize>) {
        self.waiting_on.store(idx.map_or(0, |i| i + 1), Ordering::SeqCst);
    }

    pub(super) fn waits_on(&self, idx: usize) -> bool {
        self.waiting_on.load(Ordering::SeqCst) == idx + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // Only a waker lives behind the lock; a panic elsewhere leaves it usable.
        self.waker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a session publishes about itself so that other sessions can
/// KILL it (its user and the backend threads it has open), and the admin
/// port can list it (its client's address and when it logged in).
#[derive(Debug, Default)]
pub struct SessionHandle {
    pub user: Mutex<Vec<u8>>,
    /// The client's address and the session's start, set once at login.
    pub client: std::sync::OnceLock<(String, std::time::Instant)>,
    /// (backend index, server thread id) of each open backend connection.
    pub threads: Mutex<Vec<(usize, u32)>>,
    /// When the last command ended (or the session logged in), in
    /// [`super::limits::since_start_ms`]'s milliseconds; [`RUNNING`] while
    /// a command runs. See [`SessionHandle::idle_ms`].
    pub idle_since_ms: std::sync::atomic::AtomicU64,
    /// Stops the session: another session killed it or the proxy stops.
    pub signal: Signal,
}

/// [`SessionHandle::idle_since_ms`] while a command runs.
pub const RUNNING: u64 = u64::MAX;

impl SessionHandle {
    /// How long the session has been idle between commands at `now_ms`
    /// ([`super::limits::since_start_ms`]); `None` while a command runs.
    pub fn idle_ms(&self, now_ms: u64) -> Option<u64> {
        let since = self.idle_since_ms.load(std::sync::atomic::Ordering::Relaxed);
        (since != RUNNING).then(|| now_ms.saturating_sub(since))
    }
}

/// Sessions by the connection id their client sees.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<u32, std::sync::Arc<SessionHandle>>,
    /// Set by [`Registry::stop_all`]: a session registered later is told
    /// at once.
    stopping: bool,
}

impl Registry {
    pub fn insert(&self, id: u32, handle: std::sync::Arc<SessionHandle>) {
        let mut inner = self.lock();
        if inner.stopping {
            handle.signal.stop();
        }
        inner.by_id.insert(id, handle);
    }
    pub fn remove(&self, id: u32) {
        self.lock().by_id.remove(&id);
    }
    pub fn get(&self, id: u32) -> Option<std::sync::Arc<SessionHandle>> {
        self.lock().by_id.get(&id).cloned()
    }
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Every session, by id (ascending).
    pub fn sessions(&self) -> Vec<(u32, std::sync::Arc<SessionHandle>)> {
        let mut all: Vec<_> = self.lock().by_id.iter().map(|(id, h)| (*id, h.clone())).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells every session, and every one registered from now on, that
    /// the proxy is stopping.
    pub fn stop_all(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        for handle in inner.by_id.values() {
            handle.signal.stop();
        }
    }

    /// Wakes the sessions waiting for a reply of backend `idx` (after its
    /// outage count went up).
    pub fn wake_waiting_on(&self, idx: usize) {
        for handle in self.lock().by_id.values() {
            if handle.signal.waits_on(idx) {
                handle.signal.wake();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner.lock().expect("registry lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stop_ends_the_wait_whenever_it_came() {
        let signal = Arc::new(Signal::default());
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.stopped().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        signal.stop();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        // Told before the wait: it ends at once.
        tokio::time::timeout(Duration::from_secs(5), signal.stopped()).await.unwrap();
    }

    #[tokio::test]
    async fn stop_all_reaches_sessions_present_and_later() {
        let registry = Registry::default();
        let before = Arc::new(SessionHandle::default());
        registry.insert(1, before.clone());
        registry.stop_all();
        assert!(before.signal.stopping());
        let after = Arc::new(SessionHandle::default());
        registry.insert(2, after.clone());
        assert!(after.signal.stopping());
    }

    #[tokio::test]
    async fn an_outage_wakes_only_sessions_waiting_on_that_backend() {
        let registry = Registry::default();
        let on_one = Arc::new(SessionHandle::default());
        let on_two = Arc::new(SessionHandle::default());
        registry.insert(1, on_one.clone());
        registry.insert(2, on_two.clone());
        on_one.signal.wait_on(Some(1));
        on_two.signal.wait_on(Some(2));
        let count = Arc::new(AtomicUsize::new(0));
        let wait = |handle: Arc<SessionHandle>| {
            let count = count.clone();
            tokio::spawn(async move {
                std::future::poll_fn(|cx| {
                    handle.signal.register(cx.waker());
                    if count.load(Ordering::SeqCst) > 0 { Poll::Ready(()) } else { Poll::Pending }
                })
                .await
            })
        };
        let one = wait(on_one.clone());
        let two = wait(on_two.clone());
        tokio::task::yield_now().await;
        count.store(1, Ordering::SeqCst);
        registry.wake_waiting_on(1);
        tokio::time::timeout(Duration::from_secs(5), one).await.unwrap().unwrap();
        // The other was not woken, though its condition now holds.
        tokio::task::yield_now().await;
        assert!(!two.is_finished());
        registry.wake_waiting_on(2);
        tokio::time::timeout(Duration::from_secs(5), two).await.unwrap().unwrap();
    }
}
