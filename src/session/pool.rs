//! Backend connections shared between client sessions (`[pool]`).
//!
//! Idle connections are kept per worker thread: a connection's socket is
//! registered with the runtime of the thread that opened it, so it only
//! serves sessions running there. What a connection must match to serve a
//! session is its [`Key`] (user, capabilities, collation, TLS); the rest of
//! the session's tracked state (database, recorded SETs) travels with the
//! connection and is brought up to date when a session takes it: nothing
//! to send when it matches, the missing SETs when the connection's are a
//! prefix of the session's, else COM_RESET_CONNECTION and a replay.
//!
//! With `multiplex`, a session gives its connections back after every
//! command unless state that the proxy cannot carry lives on them
//! ([`Binding`]); with only `reuse`, when it ends (reset first). The
//! number of connections to a backend is capped (`BackendSlot`); a
//! statement that finds them all in use waits up to `pool_timeout`.

use super::Session;
use crate::Config;
use crate::backend::{BackendConn, BackendError};
use crate::protocol::status;
use crate::server::BackendSlot;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a connection must match to serve a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The proxy instance (tests run several in one process).
    pub proxy: usize,
    pub backend: usize,
    pub address: Arc<str>,
    pub user: Arc<[u8]>,
    pub collation: u8,
    pub capabilities: u32,
    pub mariadb_caps: u32,
    pub tracks_gtids: bool,
    pub tls: bool,
}

/// Why a session keeps a connection after a command instead of giving it
/// back: state that lives on that connection only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Transaction,
    ReadOnlyTransaction,
    LockedTables,
    TemporaryTables,
    /// SQL-level PREPARE.
    SqlPrepared,
    /// A server-side cursor is open, or long data waits for its execute.
    Cursor,
    /// User variables, user locks (GET_LOCK) and other state the proxy does
    /// not track, or more SETs than it records.
    SessionState,
    /// COM_SET_OPTION turned multi-statements off.
    MultiStatementsOff,
    /// The next statement may ask about this one (warnings, errors,
    /// FOUND_ROWS()): kept until it arrives.
    NextStatement,
}

impl Binding {
    pub const ALL: [Binding; 9] = [
        Binding::Transaction,
        Binding::ReadOnlyTransaction,
        Binding::LockedTables,
        Binding::TemporaryTables,
        Binding::SqlPrepared,
        Binding::Cursor,
        Binding::SessionState,
        Binding::MultiStatementsOff,
        Binding::NextStatement,
    ];

    /// Stable name for metrics and the admin port.
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Transaction => "transaction",
            Binding::ReadOnlyTransaction => "read_only_transaction",
            Binding::LockedTables => "locked_tables",
            Binding::TemporaryTables => "temporary_tables",
            Binding::SqlPrepared => "sql_prepared",
            Binding::Cursor => "cursor",
            Binding::SessionState => "session_state",
            Binding::MultiStatementsOff => "multi_statements_off",
            Binding::NextStatement => "next_statement",
        }
    }
}

/// What decides whether a session keeps its connection to one backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindingInputs {
    pub in_transaction: bool,
    /// This backend holds the open transaction.
    pub transaction_here: bool,
    pub read_only_transaction_here: bool,
    pub is_primary: bool,
    pub locked_tables: bool,
    pub temporary_tables: bool,
    pub sql_prepared: bool,
    pub cursor_here: bool,
    pub pinned_here: bool,
    pub multi_statements_off: bool,
    pub next_statement_here: bool,
}

/// Why the connection must stay with the session, if it must.
pub fn binding(i: &BindingInputs) -> Option<Binding> {
    if i.multi_statements_off {
        return Some(Binding::MultiStatementsOff);
    }
    if i.in_transaction && i.transaction_here {
        return Some(Binding::Transaction);
    }
    if i.read_only_transaction_here {
        return Some(Binding::ReadOnlyTransaction);
    }
    if i.pinned_here {
        return Some(Binding::SessionState);
    }
    if i.cursor_here {
        return Some(Binding::Cursor);
    }
    if i.is_primary {
        if i.locked_tables {
            return Some(Binding::LockedTables);
        }
        if i.temporary_tables {
            return Some(Binding::TemporaryTables);
        }
        if i.sql_prepared {
            return Some(Binding::SqlPrepared);
        }
    }
    i.next_statement_here.then_some(Binding::NextStatement)
}

/// A hash of a session's recorded SETs up to and including `payload`,
/// given the hash of those before it (0 for none).
pub fn chain_hash(previous: u64, payload: &[u8]) -> u64 {
    let mut h = previous ^ 0x9E37_79B9_7F4A_7C15;
    for &b in payload {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    // Never 0, which stands for "no SETs".
    h | 1
}

struct Idle {
    key: Key,
    conn: Box<BackendConn>,
    slot: BackendSlot,
    since: Instant,
}

/// How long closing a pooled connection waits for the server's end to close.
pub(crate) const QUIT_WAIT: Duration = Duration::from_secs(1);

/// Closes a connection whose place another connection may take, freeing
/// the place only once the server has closed its end (or `QUIT_WAIT`
/// passed): the server never counts the two side by side, so it sees no
/// more connections than the cap.
async fn retire(mut conn: Box<BackendConn>, slot: BackendSlot) {
    conn.quit(QUIT_WAIT).await;
    drop((conn, slot));
}

/// What a waiting session is handed.
enum Handoff {
    /// A connection matching its key.
    Conn(Box<BackendConn>, BackendSlot),
    /// A place under the cap came free: it may open a connection.
    Place,
}

/// A session waiting for a connection, first come first served.
struct Pending {
    key: Key,
    without_database: bool,
    tx: tokio::sync::oneshot::Sender<Handoff>,
}

#[derive(Default)]
struct Local {
    idle: Vec<Idle>,
    /// Waiting sessions by (proxy, backend), oldest first.
    waiting: HashMap<(usize, usize), VecDeque<Pending>>,
    sweeping: bool,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::default();
}

fn fits(key: &Key, without_database: bool, other: &Key, conn: &BackendConn) -> bool {
    other == key && (!without_database || !conn.database_selected)
}

fn stats(slot: &BackendSlot, backend: usize) -> Option<&crate::server::PoolBackend> {
    slot.shared().pool.get(backend)
}

/// An idle connection of this thread matching `key` (the one with server
/// thread `prefer`, if idle). `without_database`: the session has no
/// current database, so only a connection that has none either will do.
fn take(
    key: &Key,
    without_database: bool,
    prefer: Option<u32>,
) -> Option<(Box<BackendConn>, BackendSlot)> {
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let ok = |i: &Idle| fits(key, without_database, &i.key, &i.conn);
        let pos = prefer
            .and_then(|t| local.idle.iter().position(|i| i.conn.thread_id == t && ok(i)))
            .or_else(|| local.idle.iter().rposition(ok))?;
        let found = local.idle.swap_remove(pos);
        if let Some(s) = stats(&found.slot, key.backend) {
            s.idle.add(-1);
        }
        Some((found.conn, found.slot))
    })
}

/// Takes one idle connection of this thread to `backend` of `proxy`
/// (whatever its key) out of the pool, to be closed; None if there is none.
fn evict_one(proxy: usize, backend: usize) -> Option<(Box<BackendConn>, BackendSlot)> {
    let evicted = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let pos =
            local.idle.iter().position(|i| i.key.proxy == proxy && i.key.backend == backend)?;
        Some(local.idle.remove(pos))
    })?;
    if let Some(s) = stats(&evicted.slot, backend) {
        s.idle.add(-1);
    }
    Some((evicted.conn, evicted.slot))
}

/// Tells the oldest waiting session of this thread for `backend` of
/// `proxy` that a place came free.
fn wake_for_place(proxy: usize, backend: usize) {
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        if let Some(queue) = local.waiting.get_mut(&(proxy, backend)) {
            while let Some(p) = queue.pop_front() {
                if p.tx.send(Handoff::Place).is_ok() {
                    break;
                }
            }
        }
    });
}

/// Gives a connection (in a state another session may take) back: to the
/// oldest waiting session of this thread it fits, else, when sessions it
/// does not fit wait, closed to make room for them, else kept idle.
fn give_back(key: Key, conn: Box<BackendConn>, slot: BackendSlot, max_idle: usize) {
    let mut handoff = Some(Handoff::Conn(conn, slot));
    let mut close = None;
    let mut overflow = None;
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        if let Some(queue) = local.waiting.get_mut(&(key.proxy, key.backend)) {
            queue.retain(|p| !p.tx.is_closed());
            let mut i = 0;
            while i < queue.len() {
                let Some(Handoff::Conn(conn, _)) = &handoff else { break };
                if !fits(&queue[i].key, queue[i].without_database, &key, conn) {
                    i += 1;
                    continue;
                }
                let p = queue.remove(i).expect("in range");
                match p.tx.send(handoff.take().expect("still ours")) {
                    Ok(()) => return,
                    Err(back) => handoff = Some(back),
                }
            }
            if !queue.is_empty() {
                // Only sessions it does not fit wait: close it for them.
                close = handoff.take();
                return;
            }
        }
        let Some(Handoff::Conn(conn, slot)) = handoff.take() else { return };
        if max_idle == 0 {
            close = Some(Handoff::Conn(conn, slot));
            return;
        }
        if local.idle.len() >= max_idle {
            let old = local.idle.remove(0);
            if let Some(s) = stats(&old.slot, old.key.backend) {
                s.idle.add(-1);
            }
            overflow = Some(old);
        }
        if let Some(s) = stats(&slot, key.backend) {
            s.idle.add(1);
        }
        local.idle.push(Idle { key: key.clone(), conn, slot, since: Instant::now() });
        if !local.sweeping {
            local.sweeping = true;
            tokio::spawn(sweep());
        }
    });
    let overflow = overflow.map(|old| (old.conn, old.slot));
    let close = match close {
        Some(Handoff::Conn(conn, slot)) => Some((conn, slot)),
        _ => None,
    };
    if let Some((conn, slot)) = overflow {
        tokio::spawn(retire(conn, slot));
    }
    if let Some((conn, slot)) = close {
        tokio::spawn(async move {
            retire(conn, slot).await;
            wake_for_place(key.proxy, key.backend);
        });
    }
}

/// Closes idle connections of this thread that are too old or idle too
/// long; ends when none is left.
async fn sweep() {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (closed, done) = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let now = Instant::now();
            let mut closed = Vec::new();
            // Idle connections per (proxy, backend), for min_idle.
            let mut left: HashMap<(usize, usize), usize> = HashMap::new();
            for idle in &local.idle {
                *left.entry((idle.key.proxy, idle.key.backend)).or_default() += 1;
            }
            // Oldest first, so that min_idle keeps the most recently used.
            local.idle.sort_by_key(|i| i.since);
            // Backends where sessions of other workers starve: one idle
            // connection each is closed for them per round.
            let mut starving: Vec<(usize, usize)> = Vec::new();
            for idle in &local.idle {
                let k = (idle.key.proxy, idle.key.backend);
                let starved =
                    stats(&idle.slot, k.1).is_some_and(|s| s.starved.load(Ordering::Relaxed) > 0);
                let waits_here =
                    local.waiting.get(&k).is_some_and(|q| q.iter().any(|p| !p.tx.is_closed()));
                if starved && !waits_here && !starving.contains(&k) {
                    starving.push(k);
                }
            }
            let mut i = 0;
            while i < local.idle.len() {
                let idle = &local.idle[i];
                let pool = &idle.slot.shared().config.load().pool;
                let k = (idle.key.proxy, idle.key.backend);
                let count = left.get_mut(&k).expect("counted");
                let min = if pool.multiplex { pool.min_idle } else { 0 };
                let wanted = match starving.iter().position(|s| *s == k) {
                    Some(pos) => {
                        starving.swap_remove(pos);
                        true
                    }
                    None => false,
                };
                let stale = wanted
                    || (now.duration_since(idle.since) >= pool.idle_timeout && *count > min)
                    || now.duration_since(idle.conn.opened) >= pool.max_lifetime;
                if stale {
                    *count -= 1;
                }
                if stale {
                    let idle = local.idle.remove(i);
                    if let Some(s) = stats(&idle.slot, idle.key.backend) {
                        s.idle.add(-1);
                    }
                    closed.push(idle);
                } else {
                    i += 1;
                }
            }
            let done = local.idle.is_empty();
            if done {
                local.sweeping = false;
            }
            (closed, done)
        });
        for idle in closed {
            let (proxy, backend) = (idle.key.proxy, idle.key.backend);
            tokio::spawn(async move {
                retire(idle.conn, idle.slot).await;
                wake_for_place(proxy, backend);
            });
        }
        if done {
            return;
        }
    }
}

/// Counts a waiting session until dropped (and, while it is `starved`,
/// as one that idle connections of other workers keep waiting).
struct Waiting<'a> {
    stats: &'a crate::server::PoolBackend,
    starved: bool,
}

impl<'a> Waiting<'a> {
    fn new(stats: &'a crate::server::PoolBackend) -> Waiting<'a> {
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting { stats, starved: false }
    }

    fn starved(&mut self, starved: bool) {
        if starved != self.starved {
            match starved {
                true => self.stats.starved.fetch_add(1, Ordering::Relaxed),
                false => self.stats.starved.fetch_sub(1, Ordering::Relaxed),
            };
            self.starved = starved;
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.starved(false);
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// What a shared connection to backend `idx` must match for this
    /// session (kept per backend: cloning it allocates nothing).
    fn pool_key(&mut self, idx: usize, address: &str, tls: bool) -> Key {
        let login = &self.login;
        let cached = self.pool_keys.get(idx).and_then(Option::as_ref).filter(|k| {
            &*k.address == address
                && k.tls == tls
                && *k.user == *login.user
                && k.collation == login.collation
                && k.capabilities == login.capabilities.bits()
                && k.mariadb_caps == login.mariadb_caps
                && k.tracks_gtids == login.track_gtids
        });
        if let Some(key) = cached {
            return key.clone();
        }
        let key = Key {
            proxy: Arc::as_ptr(&self.shared) as usize,
            backend: idx,
            address: address.into(),
            user: login.user.as_slice().into(),
            collation: login.collation,
            capabilities: login.capabilities.bits(),
            mariadb_caps: login.mariadb_caps,
            tracks_gtids: login.track_gtids,
            tls,
        };
        if self.pool_keys.len() <= idx {
            self.pool_keys.resize(idx + 1, None);
        }
        self.pool_keys[idx] = Some(key.clone());
        key
    }

    /// A connection to backend `idx` from the pool, or a new one when the
    /// backend's cap allows; else waits (up to `wait`, first come first
    /// served) for one to be given back or closed.
    pub(super) async fn checkout(
        &mut self,
        config: &Config,
        idx: usize,
        address: &str,
        tls: Option<&crate::backend_tls::BackendTls>,
        wait: Duration,
    ) -> Result<Box<BackendConn>, BackendError> {
        let key = self.pool_key(idx, address, tls.is_some());
        let without_database = self.login.database.is_none();
        let prefer = self.last_threads.get(idx).copied().flatten();
        let deadline = tokio::time::Instant::now() + wait;
        let shared = self.shared.clone();
        let Some(stats) = shared.pool.get(idx) else {
            return Err(BackendError::Protocol(format!("no backend {idx}")));
        };
        let mut handed = None;
        let mut counted = None;
        let mut queued: Option<tokio::sync::oneshot::Receiver<Handoff>> = None;
        loop {
            let found = handed.take().or_else(|| take(&key, without_database, prefer));
            if let Some((mut conn, slot)) = found {
                // A server that closed an idle connection (restarted,
                // wait_timeout), or one the monitor found down since the
                // connection was opened, would fail the statement sent on it.
                // One to the primary opened before a SET GLOBAL has the old
                // values.
                let globals = self.shared.global_changes.load(Ordering::Relaxed);
                if conn.opened.elapsed() < config.pool.max_lifetime
                    && conn.outages_seen == self.shared.outages.count(idx)
                    && (idx != self.primary() || conn.globals_seen == globals)
                    && conn.reader.buffered().is_empty()
                    && !conn.stream.heard_from_peer()
                {
                    match self.adopt(idx, &mut conn).await {
                        Ok(()) => {
                            self.hold(idx, conn.thread_id, slot);
                            return Ok(conn);
                        }
                        Err(e) => {
                            tracing::debug!(id = self.id, backend = idx, error = %e, "pooled connection unusable");
                        }
                    }
                }
                drop((conn, slot));
                continue;
            }
            let mut slot = self.shared.try_backend_slot(idx);
            if slot.is_none()
                && let Some((conn, place)) = evict_one(key.proxy, idx)
            {
                // Idle connections of other users hold places: close one.
                retire(conn, place).await;
                slot = self.shared.try_backend_slot(idx);
            }
            if let Some(slot) = slot {
                drop((counted, queued));
                let mut conn = self.connect(idx, address, config.timeouts.connect, tls).await?;
                if config.pool.multiplex {
                    conn.prepared = Some(Default::default());
                }
                self.hold(idx, conn.thread_id, slot);
                return Ok(conn);
            }
            if wait.is_zero() {
                // Nobody waited: no timeout to count.
                return Err(self.pool_timeout(config, idx, wait));
            }
            let blocked = self.shared.blocked_by_other_workers(idx);
            counted.get_or_insert_with(|| Waiting::new(stats)).starved(blocked);
            let rx = queued.get_or_insert_with(|| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                LOCAL.with(|local| {
                    local
                        .borrow_mut()
                        .waiting
                        .entry((key.proxy, idx))
                        .or_default()
                        .push_back(Pending { key: key.clone(), without_database, tx })
                });
                rx
            });
            // Connections closed elsewhere (failures, other threads) free
            // places without a handoff: look again now and then, keeping
            // the place in the queue.
            let retry = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            match tokio::time::timeout_at(retry, rx).await {
                Ok(Ok(Handoff::Conn(conn, slot))) => {
                    queued = None;
                    handed = Some((conn, slot));
                }
                Ok(Ok(Handoff::Place)) | Ok(Err(_)) => queued = None,
                Err(_) if tokio::time::Instant::now() < deadline => {}
                Err(_) => {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(self.pool_timeout(config, idx, wait));
                }
            }
        }
    }

    /// The error of a checkout that had no connection to backend `idx`
    /// within `wait`.
    fn pool_timeout(&self, config: &Config, idx: usize, wait: Duration) -> BackendError {
        let name = config.backends.get(idx).map_or("?", |b| b.name.as_str());
        let cap = self.shared.backend_cap(config, idx).unwrap_or(0);
        BackendError::PoolTimeout { backend: name.to_string(), cap, waited: wait }
    }

    /// Records a connection as this session's (its place, and its server
    /// thread for KILL).
    fn hold(&mut self, idx: usize, thread: u32, slot: BackendSlot) {
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, || None);
        }
        self.slots[idx] = Some(slot);
        self.handle.threads.lock().expect("handle lock").push((idx, thread));
    }

    /// Brings a connection another session used up to this session's
    /// tracked state: it keeps the SETs it shares with this session (a
    /// prefix of its recorded SETs); otherwise it is reset (the rest is
    /// replayed before its first statement, see `catch_up`).
    async fn adopt(&mut self, idx: usize, conn: &mut BackendConn) -> Result<(), BackendError> {
        let sets = &self.routing;
        let shares_sets = conn.applied_sets <= sets.sets.len()
            && conn.sets_hash == sets.hash_of_first(conn.applied_sets);
        if !shares_sets {
            if let Some(s) = self.shared.pool.get(idx) {
                s.resets.fetch_add(1, Ordering::Relaxed);
            }
            conn.reset().await?;
        }
        // Commands that skip `catch_up` (COM_FIELD_LIST...) still need the
        // session's database.
        conn.note_database_changes(self.shared.database_changes.load(Ordering::Relaxed));
        if let Some(db) = &self.login.database {
            conn.select_database(db).await?;
        }
        self.sync_autocommit(conn).await?;
        if self.multi_statements_off {
            conn.run_own(&[crate::protocol::command::SET_OPTION, 1, 0]).await?;
        }
        if let Some(s) = self.shared.pool.get(idx) {
            s.handoffs.add(1);
        }
        Ok(())
    }

    /// Autocommit is the session's: a connection that last served a
    /// session with the other setting, was reset, or opened with a server
    /// default that differs is told.
    pub(super) async fn sync_autocommit(&self, conn: &mut BackendConn) -> Result<(), BackendError> {
        let autocommit = self.status & status::AUTOCOMMIT != 0;
        if conn.autocommit != Some(autocommit) {
            let sql = if autocommit { "SET autocommit = 1" } else { "SET autocommit = 0" };
            conn.query_own(sql).await?;
            conn.autocommit = Some(autocommit);
        }
        Ok(())
    }

    /// Why the session must keep its connection to backend `idx` after the
    /// current command, if it must.
    pub(super) fn binding(&self, idx: usize) -> Option<Binding> {
        let r = &self.routing;
        let primary = self.primary();
        // Autocommit off is not a transaction by itself: the connection
        // carries the setting to the next session (see `adopt`); a
        // statement under it starts one (the server flags IN_TRANS for
        // writes, not for the snapshot a read opens), ended by COMMIT or
        // ROLLBACK.
        let flagged =
            self.status & status::IN_TRANS != 0 && r.transaction_backend.unwrap_or(primary) == idx;
        let implicit = self.status & status::AUTOCOMMIT == 0 && r.implicit_transaction == Some(idx);
        binding(&BindingInputs {
            in_transaction: flagged || implicit,
            transaction_here: true,
            read_only_transaction_here: r.read_only_transaction == Some(idx),
            is_primary: idx == primary,
            locked_tables: r.locked_tables || r.backup_locked,
            temporary_tables: !r.temp_tables.is_empty(),
            sql_prepared: r.sql_prepared,
            cursor_here: self.stmts.holds(idx) || (idx == primary && self.stmts.long_data()),
            pinned_here: r.pinned.get(idx).copied().unwrap_or(false),
            multi_statements_off: self.multi_statements_off,
            next_statement_here: r.next_statement == Some(idx),
        })
    }

    /// Drops the connections whose server closed them (KILL, wait_timeout,
    /// a restart) or said something unasked while the session was idle,
    /// when nothing of the session lives only there: the next command then
    /// opens a new one and its database, SETs and prepared statements are
    /// carried to it, instead of the command failing with "lost
    /// connection". A connection holding a transaction, user variables,
    /// temporary tables or locks is left for the command to fail on, as
    /// that state is gone.
    pub(super) fn drop_connections_closed_while_idle(&mut self) {
        for idx in 0..self.backends.len() {
            self.drop_if_closed(idx);
        }
    }

    /// `drop_connections_closed_while_idle` for the connection to `idx`
    /// alone, when the session has not used it for a while (the session
    /// itself busy elsewhere meanwhile: a server's wait_timeout counts
    /// each connection's own idle time). Run before each statement on it.
    pub(super) fn drop_if_closed_while_unused(&mut self, idx: usize) {
        let now = std::time::Instant::now();
        let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let unused = now.saturating_duration_since(conn.last_used) >= super::IDLE_CHECK_AFTER;
        conn.last_used = now;
        if unused {
            self.drop_if_closed(idx);
        }
    }

    fn drop_if_closed(&mut self, idx: usize) {
        let closed = self.backends[idx]
            .as_ref()
            .is_some_and(|c| c.reader.buffered().is_empty() && c.stream.heard_from_peer());
        if !closed {
            return;
        }
        let replaceable = matches!(
            self.binding(idx),
            None | Some(Binding::MultiStatementsOff | Binding::NextStatement)
        );
        if replaceable {
            tracing::debug!(
                id = self.id,
                backend = idx,
                "connection closed by its server while idle; replaced"
            );
            self.drop_backend(idx);
        }
    }

    /// Multiplexing, between commands: gives back every connection that
    /// holds no state of this session, counting those kept by reason.
    pub(super) fn give_back_unbound(&mut self) {
        for idx in 0..self.backends.len() {
            if self.backends[idx].is_none() {
                continue;
            }
            match self.binding(idx) {
                Some(reason) => {
                    self.shared.telemetry.pool_bound(reason);
                    self.shared.pool.bound[reason as usize].fetch_add(1, Ordering::Relaxed);
                }
                None => self.give_back(idx),
            }
        }
    }

    /// Multiplexing, as a command arrives: the connection kept for
    /// questions about the previous statement goes back unless this
    /// command may ask them.
    pub(super) fn give_back_unasked(&mut self) {
        let Some(idx) = self.routing.next_statement else {
            return;
        };
        // A statement close (no reply) and a ping (answered by the proxy)
        // leave the server's warnings as they are: the statement after
        // them may still ask.
        let between = [crate::protocol::command::STMT_CLOSE, crate::protocol::command::PING];
        if self.cmd.first().is_some_and(|c| between.contains(c)) {
            return;
        }
        if self.command_asks_about_previous() {
            return;
        }
        self.routing.next_statement = None;
        if self.backends.get(idx).is_some_and(Option::is_some) && self.binding(idx).is_none() {
            self.give_back(idx);
        }
    }

    /// Whether the command that just arrived reads the previous
    /// statement's results, as the classifier sees it (classified here,
    /// before routing, only while a connection is kept for the question).
    fn command_asks_about_previous(&self) -> bool {
        use crate::classify::Flags;
        let info = match self.cmd.first() {
            Some(&crate::protocol::command::QUERY) => {
                let text = String::from_utf8_lossy(&self.cmd[1..]);
                crate::classify::classify_with_cache(&text, self.backslashes(), &self.shared.tier2)
            }
            Some(&crate::protocol::command::STMT_EXECUTE) => {
                let Some(raw) = self.cmd.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
                    return false;
                };
                match self.stmts.resolve(u32::from_le_bytes(raw)).and_then(|id| self.stmts.get(id))
                {
                    Some(stmt) => stmt.info,
                    None => return false,
                }
            }
            _ => return false,
        };
        info.flags.contains(Flags::LAST_STATEMENT_FUNC)
    }

    /// Gives the connection to backend `idx` back to the pool as it is
    /// (its tracked state goes with it).
    pub(super) fn give_back(&mut self, idx: usize) {
        if self.backends.get(idx).and_then(Option::as_ref).is_some_and(|c| c.in_transaction) {
            // A transaction the session does not hold there (it did not
            // see the reply that opened it) goes with the connection,
            // never to another session.
            tracing::warn!(
                id = self.id,
                backend = idx,
                "closing a connection left in a transaction"
            );
            self.drop_backend(idx);
            return;
        }
        let Some(conn) = self.backends.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let tid = conn.thread_id;
        if self.last_threads.len() <= idx {
            self.last_threads.resize(idx + 1, None);
        }
        self.last_threads[idx] = Some(tid);
        self.handle.threads.lock().expect("handle lock").retain(|t| *t != (idx, tid));
        self.stmts.forget_backend(idx);
        if self.routing.next_statement == Some(idx) {
            self.routing.next_statement = None;
        }
        // Another session may insert on it meanwhile: the id is carried
        // to whichever connection the session asks next.
        if let Some((b, _, id)) = self.routing.last_insert
            && b == idx
        {
            self.routing.last_insert = Some((b, 0, id));
        }
        if let Some((b, _, n)) = self.routing.last_row_count
            && b == idx
        {
            self.routing.last_row_count = Some((b, 0, n));
        }
        let config = self.config();
        let Some(backend) = config.backends.get(idx) else {
            return;
        };
        let key = self.pool_key(idx, &backend.address, conn.stream.is_tls());
        let max_idle = if config.pool.multiplex { usize::MAX } else { config.pool.max_idle };
        give_back(key, conn, slot, max_idle);
    }

    /// When the session ends between commands: gives its connection to
    /// backend `idx` back, reset unless it holds only tracked state (when
    /// multiplexing); false when it cannot be kept (then it is closed).
    pub(super) async fn keep_connection(&mut self, idx: usize) -> bool {
        let config = self.config();
        if self.backends.get(idx).is_none_or(Option::is_none) {
            return false;
        }
        let as_is = config.pool.multiplex && self.binding(idx).is_none();
        if !as_is {
            let conn = self.backends[idx].as_mut().expect("checked above");
            let reset = tokio::time::timeout(config.timeouts.connect, conn.reset()).await;
            if !matches!(reset, Ok(Ok(()))) {
                return false;
            }
        }
        self.give_back(idx);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_declaration_order() {
        for (i, b) in Binding::ALL.iter().enumerate() {
            assert_eq!(*b as usize, i, "{b:?}");
        }
    }

    #[test]
    fn state_on_a_connection_keeps_it_by_the_first_reason_that_applies() {
        let none = BindingInputs::default();
        assert_eq!(binding(&none), None);
        let tx = BindingInputs { in_transaction: true, transaction_here: true, ..none };
        assert_eq!(binding(&tx), Some(Binding::Transaction));
        // A transaction elsewhere does not keep this connection.
        assert_eq!(binding(&BindingInputs { transaction_here: false, ..tx }), None);
        // Temporary tables, locks and SQL PREPARE live on the primary only.
        let temp = BindingInputs { temporary_tables: true, ..none };
        assert_eq!(binding(&temp), None);
        assert_eq!(
            binding(&BindingInputs { is_primary: true, ..temp }),
            Some(Binding::TemporaryTables)
        );
        assert_eq!(
            binding(&BindingInputs { is_primary: true, locked_tables: true, ..none }),
            Some(Binding::LockedTables)
        );
        assert_eq!(
            binding(&BindingInputs { is_primary: true, sql_prepared: true, ..none }),
            Some(Binding::SqlPrepared)
        );
        assert_eq!(
            binding(&BindingInputs { pinned_here: true, next_statement_here: true, ..none }),
            Some(Binding::SessionState)
        );
        assert_eq!(
            binding(&BindingInputs { next_statement_here: true, ..none }),
            Some(Binding::NextStatement)
        );
        assert_eq!(
            binding(&BindingInputs { multi_statements_off: true, ..none }),
            Some(Binding::MultiStatementsOff)
        );
        assert_eq!(binding(&BindingInputs { cursor_here: true, ..none }), Some(Binding::Cursor));
    }

    #[test]
    fn set_hashes_tell_prefixes_apart() {
        let a = chain_hash(0, b"SET NAMES utf8mb4");
        let ab = chain_hash(a, b"SET sql_mode = ''");
        assert_ne!(a, 0);
        assert_ne!(a, ab);
        assert_eq!(ab, chain_hash(chain_hash(0, b"SET NAMES utf8mb4"), b"SET sql_mode = ''"));
        assert_ne!(ab, chain_hash(chain_hash(0, b"SET sql_mode = ''"), b"SET NAMES utf8mb4"));
    }
}
