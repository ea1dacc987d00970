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

use super::Session;
use crate::backend::{BackendConn, BackendError};
use crate::server::BackendSlot;
use crate::telemetry::Telemetry;
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
pub fn take(
    key: &Key,
    max_idle: Duration,
    telemetry: &Telemetry,
) -> Option<(BackendConn, BackendSlot)> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        let before = idle.len();
        idle.retain(|i| now.duration_since(i.since) < max_idle);
        telemetry.pool_idle.decrement((before - idle.len()) as f64);
        let pos = idle.iter().rposition(|i| i.key == *key)?;
        let found = idle.swap_remove(pos);
        telemetry.pool_idle.decrement(1.0);
        Some((found.conn, found.slot))
    })
}

/// Keeps a reset connection for a later session (at most `max` per thread:
/// beyond, the oldest is closed).
pub fn put(key: Key, conn: BackendConn, slot: BackendSlot, max: usize, telemetry: &Telemetry) {
    if max == 0 {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() >= max {
            idle.remove(0);
            telemetry.pool_idle.decrement(1.0);
        }
        idle.push(Idle { key, conn, slot, since: Instant::now() });
        telemetry.pool_idle.increment(1.0);
    });
}

impl Session {
    /// What a kept connection to backend `idx` must match for this session.
    fn reuse_key(&self, idx: usize, address: &str, database: Option<Vec<u8>>, tls: bool) -> Key {
        Key {
            backend: idx,
            address: address.to_string(),
            user: self.login.user.clone(),
            database,
            collation: self.login.collation,
            capabilities: self.login.capabilities.bits(),
            mariadb_caps: self.login.mariadb_caps,
            tracks_gtids: self.login.track_gtids,
            tls,
        }
    }

    /// A kept connection for backend `idx`, checked alive (COM_PING).
    pub(super) async fn kept_connection(
        &mut self,
        idx: usize,
        address: &str,
        tls: bool,
    ) -> Option<(BackendConn, crate::server::BackendSlot)> {
        let key = self.reuse_key(idx, address, self.login.database.clone(), tls);
        let config = self.config();
        while let Some((mut conn, slot)) =
            take(&key, config.pool.idle_timeout, &self.shared.telemetry)
        {
            let ping = conn.run_own(&[crate::protocol::command::PING]);
            if matches!(tokio::time::timeout(config.timeouts.connect, ping).await, Ok(Ok(_))) {
                conn.applied_sets = 0;
                self.shared.telemetry.pool_reused.increment(1);
                return Some((conn, slot));
            }
        }
        None
    }

    /// Resets the session's connection to backend `idx` and keeps it for a
    /// later session; false when it cannot be kept (then it is closed).
    pub(super) async fn keep_connection(&mut self, idx: usize) -> bool {
        let (Some(Some(conn)), Some(Some(_))) = (self.backends.get(idx), self.slots.get(idx))
        else {
            return false;
        };
        let config = self.config();
        let Some(address) = config.backends.get(idx).map(|b| b.address.clone()) else {
            return false;
        };
        let key = self.reuse_key(idx, &address, conn.database.clone(), conn.stream.is_tls());
        let conn = self.backends[idx].as_mut().expect("checked above");
        let reset = async {
            conn.run_own(&[crate::protocol::command::RESET_CONNECTION]).await?;
            if conn.tracks_gtids {
                conn.enable_gtid_tracking().await?;
            }
            Ok::<_, BackendError>(())
        };
        if !matches!(tokio::time::timeout(config.timeouts.connect, reset).await, Ok(Ok(()))) {
            return false;
        }
        let conn = self.backends[idx].take().expect("checked above");
        let slot = self.slots[idx].take().expect("checked above");
        let tid = conn.thread_id;
        self.handle.threads.lock().expect("handle lock").retain(|t| *t != (idx, tid));
        self.stmts.forget_backend(idx);
        put(key, conn, slot, config.pool.max_idle, &self.shared.telemetry);
        true
    }
}
