//! What each client last wrote, shared by its sessions.
//!
//! A client expects to read its writes, as it would on one server, whether
//! it writes and reads on one connection, reconnects to read (a shell
//! script running the command-line client once per statement, a web
//! request per connection) or reads on one pooled connection what it wrote
//! on another. Read-your-writes follows a session's own writes; so that it
//! also holds across a client's connections, each write's causal position
//! (its GTID, a pin window, or "wait for the primary's position") is kept
//! here under the client's user and address, and every session of that
//! user from that address, open already or later, reads after it. A
//! session sees at a glance (one atomic load per read) whether another
//! wrote since it last looked.
//!
//! Bounded: at most [`CAPACITY`] clients; when that many are remembered,
//! those with no session open that have not written for [`KEEP`] are
//! forgotten first (a write that old is on every replica eligible for
//! reads, unless `max_replication_lag` allows minutes of lag). A write no
//! server holds any more is forgotten once a read finds that out
//! ([`ClientWrites::forget`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Clients remembered at most.
pub const CAPACITY: usize = 65_536;

/// How long a client with no session open is kept after its last write
/// once the table is full.
pub const KEEP: Duration = Duration::from_secs(60);

/// The causal position a client's writes left (see `WriteMemory`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The GTID (or position) reads must see.
    pub gtid: Option<String>,
    /// A write whose GTID was not reported: reads wait for the primary's
    /// position first.
    pub gtid_unreported: bool,
    /// Reads go to the primary for `pin_for` from then.
    pub pinned_since: Option<Instant>,
}

impl Carried {
    /// Takes in a later write: the later GTID of a domain (whatever order
    /// the two arrive in), the later pin, and an unreported write until a
    /// later GTID (the primary's position read after it) stands for it.
    pub fn merge(&mut self, newer: Carried) {
        self.gtid_unreported =
            newer.gtid_unreported || (self.gtid_unreported && newer.gtid.is_none());
        self.gtid = later(self.gtid.as_deref(), newer.gtid);
        self.pinned_since = self.pinned_since.max(newer.pinned_since);
    }
}

/// A client: its user and address (None: a unix socket, this host).
type Key = (Box<[u8]>, Option<IpAddr>);

/// One client's writes, shared by its sessions.
#[derive(Debug, Default)]
pub struct ClientWrites {
    /// How many writes were recorded: a session compares it with the
    /// count it last took in.
    version: AtomicU64,
    /// The writes, and when the last one was recorded.
    last: Mutex<(Carried, Option<Instant>)>,
}

impl ClientWrites {
    fn lock(&self) -> MutexGuard<'_, (Carried, Option<Instant>)> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what one of the client's sessions has written so far.
    pub fn record(&self, carried: Carried) {
        let mut last = self.lock();
        last.0.merge(carried);
        last.1 = Some(Instant::now());
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Forgets `gtid` as the client's last write, if it still is: no
    /// server holds it any more (see `Session::forget_if_unreachable`).
    pub fn forget(&self, gtid: &str) {
        let mut last = self.lock();
        if last.0.gtid.as_deref() == Some(gtid) {
            last.0.gtid = None;
        }
    }

    /// The number of writes recorded so far.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// What the client's sessions wrote, with the version it includes.
    pub fn snapshot(&self) -> (Carried, u64) {
        let last = self.lock();
        (last.0.clone(), self.version.load(Ordering::Acquire))
    }

    /// Whether the client wrote within `keep` of `now`.
    fn wrote_within(&self, keep: Duration, now: Instant) -> bool {
        self.lock().1.is_some_and(|at| now.duration_since(at) < keep)
    }
}

/// The recent clients' writes.
#[derive(Default)]
pub struct RecentWrites {
    map: Mutex<HashMap<Key, Arc<ClientWrites>>>,
}

/// The later of two causal positions: `newer` unless `older` already
/// covers it (a GTID of the same domain with a higher sequence number).
fn later(older: Option<&str>, newer: Option<String>) -> Option<String> {
    match (older, newer) {
        (Some(old), Some(new)) if covers(old, &new) => Some(old.to_string()),
        (old, None) => old.map(str::to_string),
        (_, new) => new,
    }
}

fn covers(position: &str, target: &str) -> bool {
    crate::monitor::gtid::covers(position, target)
        || crate::monitor::gtid::contains(position, target)
}

impl RecentWrites {
    /// The writes of `user` from `ip`, shared with that client's other
    /// sessions (a session holds it for as long as it lives).
    pub fn client(&self, user: &[u8], ip: Option<IpAddr>) -> Arc<ClientWrites> {
        let key = (Box::from(user), ip);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = map.get(&key) {
            return client.clone();
        }
        if map.len() >= CAPACITY {
            // Forget clients with no session open that have not written
            // lately.
            let now = Instant::now();
            map.retain(|_, c| Arc::strong_count(c) > 1 || c.wrote_within(KEEP, now));
            if map.len() >= CAPACITY {
                map.retain(|_, c| Arc::strong_count(c) > 1);
            }
            if map.len() >= CAPACITY {
                // As many clients connected at once: this one's sessions
                // each follow their own writes only.
                return Arc::default();
            }
        }
        map.entry(key).or_default().clone()
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gtid(g: &str) -> Carried {
        Carried { gtid: Some(g.to_string()), ..Carried::default() }
    }

    const HOST: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn a_forgotten_gtid_is_gone_unless_a_later_write_replaced_it() {
        let writes = RecentWrites::default();
        let client = writes.client(b"app", None);
        client.record(gtid("0-1-90"));
        client.forget("0-1-90");
        assert_eq!(client.snapshot().0.gtid, None);
        client.record(gtid("0-1-3"));
        assert_eq!(client.snapshot().0.gtid.as_deref(), Some("0-1-3"), "a new history's write");
        client.forget("0-1-90");
        assert_eq!(client.snapshot().0.gtid.as_deref(), Some("0-1-3"));
    }

    #[test]
    fn a_client_is_its_user_and_address() {
        let recent = RecentWrites::default();
        let app = recent.client(b"app", HOST);
        app.record(gtid("0-1-10"));
        assert_eq!(recent.client(b"app", HOST).snapshot(), (gtid("0-1-10"), 1));
        assert_eq!(recent.client(b"other", HOST).snapshot(), (Carried::default(), 0));
        assert_eq!(recent.client(b"app", None).version(), 0);
        let elsewhere = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(recent.client(b"app", elsewhere).version(), 0);
    }

    #[test]
    fn sessions_open_at_once_see_each_others_writes() {
        let recent = RecentWrites::default();
        let (a, b) = (recent.client(b"app", HOST), recent.client(b"app", HOST));
        let seen = b.version();
        a.record(gtid("0-1-7"));
        assert_ne!(b.version(), seen, "b sees that a wrote");
        assert_eq!(b.snapshot().0.gtid.as_deref(), Some("0-1-7"));
    }

    #[test]
    fn the_later_gtid_of_a_domain_stays_whatever_the_order_of_records() {
        let recent = RecentWrites::default();
        let app = recent.client(b"app", HOST);
        app.record(gtid("0-1-12"));
        app.record(gtid("0-1-11"));
        assert_eq!(app.snapshot().0.gtid.as_deref(), Some("0-1-12"));
        app.record(gtid("0-1-13"));
        assert_eq!(app.snapshot().0.gtid.as_deref(), Some("0-1-13"));
        // Another domain, or another notation: the newest.
        app.record(gtid("1-1-2"));
        assert_eq!(app.snapshot().0.gtid.as_deref(), Some("1-1-2"));
    }

    #[test]
    fn a_pin_and_an_unreported_write_are_carried() {
        let recent = RecentWrites::default();
        let app = recent.client(b"app", HOST);
        let at = Instant::now();
        app.record(Carried { gtid: None, gtid_unreported: true, pinned_since: Some(at) });
        let (got, _) = app.snapshot();
        assert!(got.gtid_unreported);
        assert_eq!(got.pinned_since, Some(at));
        // Another session's write with nothing to report (an UPDATE that
        // changed no row) leaves the unreported write to be waited for.
        app.record(Carried::default());
        assert!(app.snapshot().0.gtid_unreported);
        // A later record without a pin keeps the pin; without a GTID keeps
        // the GTID; one with a GTID (the position read after the
        // unreported write) stands for the unreported write.
        app.record(gtid("0-1-5"));
        app.record(Carried::default());
        let (got, version) = app.snapshot();
        assert_eq!((got.gtid.as_deref(), got.pinned_since, version), (Some("0-1-5"), Some(at), 4));
        assert!(!got.gtid_unreported);
    }

    #[test]
    fn memory_stays_bounded_and_keeps_clients_with_sessions_open() {
        let recent = RecentWrites::default();
        let open = recent.client(b"open", HOST);
        open.record(gtid("0-1-1"));
        for i in 0..(CAPACITY + 10) {
            recent.client(format!("u{i}").as_bytes(), HOST).record(gtid("0-1-1"));
        }
        assert!(recent.len() <= CAPACITY);
        assert_eq!(recent.client(b"open", HOST).version(), 1, "a client with a session open stays");
    }
}
