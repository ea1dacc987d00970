//! Connection counts and limits: sessions per user, session connections
//! per backend, and the slow-down of failed logins per client address.

use super::Shared;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One session connection to a backend, counted against the backend's
/// `max_connections` until dropped.
pub struct BackendSlot {
    pub(super) shared: Arc<Shared>,
    pub(super) idx: usize,
    /// The session worker whose share of the pool it counts against.
    pub(super) worker: Option<usize>,
    /// When it was taken, in milliseconds since [`since_start_ms`]'s epoch.
    pub(super) opened_ms: u64,
}

/// Milliseconds since the first call (a monotonic clock for ages).
pub fn since_start_ms() -> u64 {
    ms_since_start(Instant::now())
}

/// `at` in [`since_start_ms`]'s milliseconds (0 before its epoch).
pub fn ms_since_start(at: Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    at.saturating_duration_since(*EPOCH.get_or_init(Instant::now)).as_millis() as u64
}

impl BackendSlot {
    /// The proxy this place belongs to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Commands up to this size are read without asking [`CommandMemory`]:
/// every session may hold one.
pub const SMALL_COMMAND: usize = 1 << 20;

/// The memory clients' large commands hold at once, against
/// `limits.max_command_memory`: without a bound, many clients each sending
/// a command of `max_packet` bytes could exhaust the proxy's memory and
/// end every session.
#[derive(Debug, Default)]
pub struct CommandMemory {
    used: AtomicUsize,
}

impl CommandMemory {
    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize, cap: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= cap)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// What one session's command holds of [`CommandMemory`], given back when
/// it is released or dropped.
#[derive(Debug)]
pub struct CommandReservation {
    memory: Arc<CommandMemory>,
    bytes: usize,
}

impl CommandReservation {
    pub fn new(memory: Arc<CommandMemory>) -> CommandReservation {
        CommandReservation { memory, bytes: 0 }
    }

    /// Whether a command may grow to `len` bytes, taking what it needs
    /// beyond [`SMALL_COMMAND`] and what it already holds; false when that
    /// would take the total over `cap`.
    pub fn admit(&mut self, len: usize, cap: usize) -> bool {
        if len <= SMALL_COMMAND || len <= self.bytes {
            return true;
        }
        if !self.memory.try_take(len - self.bytes, cap) {
            return false;
        }
        self.bytes = len;
        true
    }

    /// Gives back what the last command held (nothing to touch, shared
    /// between sessions, after a small one).
    pub fn release(&mut self) {
        if self.bytes > 0 {
            self.memory.give(std::mem::take(&mut self.bytes));
        }
    }
}

impl Drop for CommandReservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// Session workers whose pool shares are counted (beyond, they share the
/// last count).
pub const MAX_WORKERS: usize = 64;

/// Per backend position: what the connection pool is doing.
#[derive(Debug)]
pub struct PoolStats {
    backends: Vec<PoolBackend>,
    /// Commands after which a session kept a connection, by reason (in
    /// `Binding::ALL` order).
    pub bound: Vec<AtomicU64>,
}

#[derive(Debug)]
pub struct PoolBackend {
    /// Connections idle in the pools of every worker thread.
    pub idle: crate::sharded::Gauge,
    /// Statements waiting for a connection.
    pub waiting: AtomicUsize,
    /// Of those, the ones whose worker could open one were the backend's
    /// whole cap not held (idle connections of other workers are then
    /// closed for them).
    pub starved: AtomicUsize,
    /// Waits that ended in ERROR 1040 after `pool_timeout`.
    pub timeouts: AtomicU64,
    /// Connections handed from one session to another (what
    /// `rwsplit_pool_reused_total` adds up over the backends).
    pub handoffs: crate::sharded::Counter,
    /// Connections open per session worker (each worker has its own pool,
    /// and its share of the backend's cap).
    pub by_worker: Vec<AtomicUsize>,
    /// The sum of the open connections' opening times (see
    /// [`since_start_ms`]), for their mean age.
    pub opened_ms_sum: AtomicU64,
    /// Handoffs that had to reset the connection (another session's
    /// state on it) rather than send nothing or a few SETs.
    pub resets: AtomicU64,
}

impl PoolStats {
    pub fn new(positions: usize) -> PoolStats {
        PoolStats {
            backends: (0..positions)
                .map(|_| PoolBackend {
                    idle: Default::default(),
                    waiting: AtomicUsize::new(0),
                    starved: AtomicUsize::new(0),
                    timeouts: AtomicU64::new(0),
                    handoffs: Default::default(),
                    by_worker: (0..MAX_WORKERS).map(|_| AtomicUsize::new(0)).collect(),
                    resets: AtomicU64::new(0),
                    opened_ms_sum: AtomicU64::new(0),
                })
                .collect(),
            bound: crate::session::pool::Binding::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn get(&self, backend: usize) -> Option<&PoolBackend> {
        self.backends.get(backend)
    }
}

impl Drop for BackendSlot {
    fn drop(&mut self) {
        if let Some((open, freed)) = self.shared.backend_open.get(self.idx) {
            open.fetch_sub(1, Ordering::AcqRel);
            freed.notify_one();
        }
        if let Some(stats) = self.shared.pool.get(self.idx) {
            stats.opened_ms_sum.fetch_sub(self.opened_ms, Ordering::Relaxed);
            if let Some(n) = self.worker.and_then(|w| stats.by_worker.get(w)) {
                n.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// Open sessions per user, for per-user connection limits.
#[derive(Debug, Default)]
pub struct UserSessions {
    counts: Mutex<HashMap<Vec<u8>, usize>>,
}

impl UserSessions {
    /// A session slot for `user`, unless it already has `limit` sessions.
    pub fn take(self: &Arc<Self>, user: &[u8], limit: Option<usize>) -> Option<UserSlot> {
        let mut counts = self.counts.lock().expect("user sessions lock");
        let count = counts.entry(user.to_vec()).or_insert(0);
        if limit.is_some_and(|limit| *count >= limit) {
            return None;
        }
        *count += 1;
        Some(UserSlot { sessions: self.clone(), user: user.to_vec() })
    }

    /// Sessions `user` has open now.
    pub fn count(&self, user: &[u8]) -> usize {
        self.counts.lock().expect("user sessions lock").get(user).copied().unwrap_or(0)
    }
}

/// One session's place in its user's count, given back on drop.
#[derive(Debug)]
pub struct UserSlot {
    sessions: Arc<UserSessions>,
    user: Vec<u8>,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = self.sessions.counts.lock().expect("user sessions lock");
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

/// Slows down password guessing: each address's failed logins in a row
/// make its next password checks wait longer (doubling from `base` up to
/// `max`), so one guesser is slowed while other clients are not. A good
/// login, or `FORGET_AFTER` without failures, clears the address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<std::net::IpAddr, (u32, Instant)>>,
}

/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at most (oldest dropped first beyond it).
const THROTTLE_ENTRIES: usize = 100_000;

impl LoginThrottle {
    /// How long `ip`'s next password check waits.
    pub fn delay(
        &self,
        ip: std::net::IpAddr,
        base: Duration,
        max: Duration,
        now: Instant,
    ) -> Duration {
        let failures = self.failures.lock().expect("throttle lock");
        match failures.get(&ip) {
            Some((n, last)) if now.duration_since(*last) < FORGET_AFTER && *n > 0 => {
                base.saturating_mul(1u32 << (n - 1).min(20)).min(max)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, ip: std::net::IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("throttle lock");
        if failures.len() >= THROTTLE_ENTRIES {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if failures.len() >= THROTTLE_ENTRIES
                && let Some(oldest) = failures.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }

    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.failures.lock().expect("throttle lock").remove(&ip);
    }
}

/// The databases each user was recently let use at login (see
/// `Session::welcome`): a login naming one of them is not checked again
/// for `USABLE_FOR`, so a connection storm costs the primary one check per
/// user and database. A database dropped or a grant revoked within that
/// time is found by the session's first statement, as without the check.
#[derive(Debug, Default)]
pub struct UsableDatabases {
    seen: Mutex<HashMap<UserDatabase, Instant>>,
}

/// A user name and a database name, as the client sent them.
type UserDatabase = (Vec<u8>, Vec<u8>);

/// How long a database found usable at a login stays so for later logins.
const USABLE_FOR: Duration = Duration::from_secs(60);
/// Pairs remembered at most (the expired ones go first beyond it).
const USABLE_ENTRIES: usize = 10_000;

impl UsableDatabases {
    /// Whether `user` was let use `db` within `USABLE_FOR` before `now`.
    pub fn known(&self, user: &[u8], db: &[u8], now: Instant) -> bool {
        let seen = self.seen.lock().expect("databases lock");
        let key = (user.to_vec(), db.to_vec());
        seen.get(&key).is_some_and(|at| now.duration_since(*at) < USABLE_FOR)
    }

    /// `user` was let use `db` at `now`.
    pub fn usable(&self, user: &[u8], db: &[u8], now: Instant) {
        let mut seen = self.seen.lock().expect("databases lock");
        if seen.len() >= USABLE_ENTRIES {
            seen.retain(|_, at| now.duration_since(*at) < USABLE_FOR);
            if seen.len() >= USABLE_ENTRIES {
                seen.clear();
            }
        }
        seen.insert((user.to_vec(), db.to_vec()), now);
    }
}

#[cfg(test)]
mod command_memory_tests {
    use super::*;

    #[test]
    fn large_commands_share_the_cap_and_give_it_back() {
        let memory = Arc::new(CommandMemory::default());
        let cap = 10 << 20;
        let (mut a, mut b) =
            (CommandReservation::new(memory.clone()), CommandReservation::new(memory.clone()));
        // Small commands never count.
        assert!(a.admit(SMALL_COMMAND, cap));
        assert_eq!(memory.used(), 0);
        // A command growing packet by packet takes only what it adds.
        assert!(a.admit(4 << 20, cap));
        assert!(a.admit(6 << 20, cap));
        assert_eq!(memory.used(), 6 << 20);
        assert!(!b.admit(5 << 20, cap), "6 + 5 MiB is over the 10 MiB cap");
        assert_eq!(memory.used(), 6 << 20);
        assert!(b.admit(4 << 20, cap));
        a.release();
        assert_eq!(memory.used(), 4 << 20);
        drop(b);
        assert_eq!(memory.used(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_database_is_known_per_user_for_a_while() {
        let d = UsableDatabases::default();
        let now = Instant::now();
        assert!(!d.known(b"app", b"app", now));
        d.usable(b"app", b"app", now);
        assert!(d.known(b"app", b"app", now + Duration::from_secs(1)));
        assert!(!d.known(b"other", b"app", now), "per user");
        assert!(!d.known(b"app", b"app2", now), "per database");
        assert!(!d.known(b"app", b"app", now + USABLE_FOR), "forgotten");
        for i in 0..USABLE_ENTRIES + 5 {
            d.usable(b"app", format!("db{i}").as_bytes(), now);
        }
        assert!(d.seen.lock().unwrap().len() <= USABLE_ENTRIES, "bounded");
    }

    #[test]
    fn failed_logins_double_the_delay_up_to_the_cap_and_a_good_one_clears_it() {
        let t = LoginThrottle::default();
        let (ip, other) = ("192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap());
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(700));
        let now = Instant::now();
        assert_eq!(t.delay(ip, base, max, now), Duration::ZERO);
        let delays: Vec<u128> = (0..5)
            .map(|_| {
                t.failed(ip, now);
                t.delay(ip, base, max, now).as_millis()
            })
            .collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(
            t.delay(other, base, max, now),
            Duration::ZERO,
            "other addresses are not slowed"
        );
        assert_eq!(t.delay(ip, base, max, now + FORGET_AFTER), Duration::ZERO, "forgotten");
        t.succeeded(ip);
        assert_eq!(t.delay(ip, base, max, now), Duration::ZERO);
    }
}
