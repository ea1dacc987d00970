//! What each client last wrote, carried to its next sessions.
//!
//! A client that writes, disconnects and connects again to read (a shell
//! script running the command-line client once per statement, a web
//! request per connection) expects to read its write, as it would on one
//! server. Read-your-writes follows a session's own writes; so that it also
//! holds across such reconnections, each write's causal position (its GTID,
//! a pin window, or "wait for the primary's position") is kept here under
//! the client's user and address, and a new session of that user from that
//! address starts with it. Sessions open side by side (a pool) learn of each
//! other's writes only when they start: for those, `gtid_global`.
//!
//! Bounded: at most [`CAPACITY`] clients, each remembered for [`KEEP`]
//! (a write that old is on every replica eligible for reads, unless
//! `max_replication_lag` allows minutes of lag).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients remembered at most.
pub const CAPACITY: usize = 65_536;

/// How long a client's last write is remembered.
pub const KEEP: Duration = Duration::from_secs(60);

/// The causal position a session's writes left (see `WriteMemory`).
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

/// A client: its user and address (None: a unix socket, this host).
type Key = (Box<[u8]>, Option<IpAddr>);

struct Entry {
    carried: Carried,
    at: Instant,
}

/// The last writes of recent clients.
#[derive(Default)]
pub struct RecentWrites {
    map: Mutex<HashMap<Key, Entry>>,
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
    /// Remembers what a session of `user` from `ip` has written so far.
    pub fn record(&self, user: &[u8], ip: Option<IpAddr>, carried: Carried) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CAPACITY && !map.contains_key(&(Box::from(user), ip)) {
            map.retain(|_, e| now.duration_since(e.at) < KEEP);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        let entry = map
            .entry((Box::from(user), ip))
            .or_insert_with(|| Entry { carried: Carried::default(), at: now });
        let merged = Carried {
            gtid: later(entry.carried.gtid.as_deref(), carried.gtid),
            gtid_unreported: carried.gtid_unreported,
            pinned_since: entry.carried.pinned_since.max(carried.pinned_since),
        };
        *entry = Entry { carried: merged, at: now };
    }

    /// What earlier sessions of `user` from `ip` wrote, if recent.
    pub fn get(&self, user: &[u8], ip: Option<IpAddr>) -> Option<Carried> {
        let map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.get(&(Box::from(user), ip))?;
        (entry.at.elapsed() < KEEP).then(|| entry.carried.clone())
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
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
    fn a_client_is_its_user_and_address() {
        let recent = RecentWrites::default();
        recent.record(b"app", HOST, gtid("0-1-10"));
        assert_eq!(recent.get(b"app", HOST), Some(gtid("0-1-10")));
        assert_eq!(recent.get(b"other", HOST), None);
        assert_eq!(recent.get(b"app", None), None);
        let elsewhere = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(recent.get(b"app", elsewhere), None);
    }

    #[test]
    fn the_later_gtid_of_a_domain_stays_whatever_the_order_of_records() {
        let recent = RecentWrites::default();
        recent.record(b"app", HOST, gtid("0-1-12"));
        recent.record(b"app", HOST, gtid("0-1-11"));
        assert_eq!(recent.get(b"app", HOST).unwrap().gtid.as_deref(), Some("0-1-12"));
        recent.record(b"app", HOST, gtid("0-1-13"));
        assert_eq!(recent.get(b"app", HOST).unwrap().gtid.as_deref(), Some("0-1-13"));
        // Another domain, or another notation: the newest.
        recent.record(b"app", HOST, gtid("1-1-2"));
        assert_eq!(recent.get(b"app", HOST).unwrap().gtid.as_deref(), Some("1-1-2"));
    }

    #[test]
    fn a_pin_and_an_unreported_write_are_carried() {
        let recent = RecentWrites::default();
        let at = Instant::now();
        recent.record(
            b"app",
            HOST,
            Carried { gtid: None, gtid_unreported: true, pinned_since: Some(at) },
        );
        let got = recent.get(b"app", HOST).unwrap();
        assert!(got.gtid_unreported);
        assert_eq!(got.pinned_since, Some(at));
        // A later record without a pin keeps the pin; without a GTID keeps the GTID.
        recent.record(b"app", HOST, gtid("0-1-5"));
        recent.record(b"app", HOST, Carried::default());
        let got = recent.get(b"app", HOST).unwrap();
        assert_eq!((got.gtid.as_deref(), got.pinned_since), (Some("0-1-5"), Some(at)));
    }

    #[test]
    fn memory_stays_bounded() {
        let recent = RecentWrites::default();
        for i in 0..(CAPACITY + 10) {
            recent.record(format!("u{i}").as_bytes(), HOST, gtid("0-1-1"));
        }
        assert!(recent.len() <= CAPACITY);
        assert!(recent.get(format!("u{}", CAPACITY + 9).as_bytes(), HOST).is_some());
    }
}
