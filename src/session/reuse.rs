//! Backend connections kept after their session ends, reset, for the next
//! session of the same user (`[pool] reuse`): a new client then skips the
//! backend's TCP and login round trips.
//!
//! Kept per worker thread: a connection's socket is registered with the
//! runtime of the thread that opened it, so it is only handed to sessions
//! running there. A kept connection is reset with COM_RESET_CONNECTION
//! before it is kept (user variables, temporary tables, session variables,
//! prepared statements, locks and transactions all go) and pinged before
//! it is handed out.

use crate::backend::BackendConn;
use crate::server::BackendSlot;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// What a kept connection must match to serve a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub backend: usize,
    pub address: String,
    pub user: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub collation: u8,
    pub capabilities: u32,
    pub mariadb_caps: u32,
    pub tracks_gtids: bool,
    pub tls: bool,
}

struct Idle {
    key: Key,
    conn: BackendConn,
    slot: BackendSlot,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// A kept connection matching `key` and idle for less than `max_idle`;
/// older ones are closed on the way.
pub fn take(key: &Key, max_idle: Duration) -> Option<(BackendConn, BackendSlot)> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        idle.retain(|i| now.duration_since(i.since) < max_idle);
        let pos = idle.iter().rposition(|i| i.key == *key)?;
        let found = idle.swap_remove(pos);
        Some((found.conn, found.slot))
    })
}

/// Keeps a reset connection for a later session (at most `max` per thread:
/// beyond, the oldest is closed).
pub fn put(key: Key, conn: BackendConn, slot: BackendSlot, max: usize) {
    if max == 0 {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() >= max {
            idle.remove(0);
        }
        idle.push(Idle { key, conn, slot, since: Instant::now() });
    });
}
