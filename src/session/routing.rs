//! The session side of routing: what the session remembers between
//! statements (transactions, locks, temporary tables, SETs to replay, the
//! last backend), turning a [`Route`] into a backend with an open,
//! caught-up connection, and updating that memory after each statement.

use super::consistency::ReadNeed;
use super::{Session, SessionError};
use crate::backend::BackendError;
use crate::classify::{self, StatementInfo, StatementKind};
use crate::protocol::{command, status};
use crate::relay::Outcome;
use crate::router::{self, Route, SessionView, Target};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// The server's "Too many connections" (ER_CON_COUNT_ERROR).
const ER_CON_COUNT: u16 = 1040;

/// Where session state goes while the primary cannot be reached.
pub(super) const STAND_IN: Route =
    Route { target: Target::AnyReplica, reason: router::Reason::PrimaryDown };

/// A failure to reach a backend or to hear from it (not a server's
/// refusal, not the proxy's own connection caps).
pub(super) fn cannot_reach(e: &BackendError) -> bool {
    matches!(
        e,
        BackendError::Connect { .. }
            | BackendError::ConnectTimeout(_)
            | BackendError::Frame(_)
            | BackendError::Protocol(_)
            | BackendError::Tls(_)
    )
}

/// What the session remembers for routing.
#[derive(Debug, Default)]
pub struct RoutingState {
    pub locked_tables: bool,
    /// The tables this session's `LOCK TABLES` locked for writing,
    /// registered for the other sessions while held.
    pub write_locked: Option<crate::server::HeldWriteLocks>,
    /// Temporary tables by name (without database), which live on the primary.
    pub temp_tables: HashSet<String>,
    pub last_backend: Option<usize>,
    /// The session's reads must stay on the primary (bounded SET memory).
    pub wrote: bool,
    pub sql_prepared: bool,
    /// The session ran `SET GLOBAL` (see `SessionView::set_global`).
    pub set_global: bool,
    /// A one-shot `SET TRANSACTION` waits on the primary's connection for
    /// the next transaction (see `SessionView::next_transaction_set`).
    pub next_transaction_set: bool,
    /// The replica running a START TRANSACTION READ ONLY.
    pub read_only_transaction: Option<usize>,
    /// The backend an open transaction runs on.
    pub transaction_backend: Option<usize>,
    /// The connection holding the open transaction failed: the server
    /// rolled it back, so everything until COMMIT or ROLLBACK gets an
    /// error (a COMMIT on a fresh connection would report success for
    /// writes that are gone).
    pub transaction_lost: bool,
    /// SET statements that succeeded on the primary, replayed on other
    /// backends before they run the session's reads.
    pub sets: Vec<RecordedSet>,
    /// `set_hashes[i]` identifies `sets[..=i]` (see `pool::chain_hash`): a
    /// shared connection carries the hash of the SETs it ran.
    pub set_hashes: Vec<u64>,
    /// Per backend: state the proxy does not track (user variables, user
    /// locks...) lives on the session's connection there.
    pub pinned: Vec<bool>,
    /// The backend whose connection the next statement may ask about
    /// (warnings, FOUND_ROWS()...).
    pub next_statement: Option<usize>,
    /// The session's last generated insert id: (backend, server thread
    /// of the connection that has it, id). The id is None after
    /// `SELECT LAST_INSERT_ID(expr)`: only that connection knows it.
    pub last_insert: Option<(usize, u32, Option<u64>)>,
    /// The current statement reads the session's last insert id (the
    /// classifier's `READS_LAST_INSERT_ID`); set for each routed statement.
    pub reads_insert_id: bool,
    /// The current statement writes (the router's `is_write`): its reply
    /// from the primary is a write the session's reads must follow. Set
    /// for each routed statement, false for other commands.
    pub statement_writes: bool,
    /// The current statement reads `ROW_COUNT()` (text only); set for
    /// each routed statement, false for other commands.
    pub reads_row_count: bool,
    /// What `ROW_COUNT()` returns after the session's previous statement:
    /// (backend, server thread of the connection that ran it, value).
    /// None when the proxy cannot tell (a CALL, a failed connection).
    pub last_row_count: Option<(usize, u32, i64)>,
    /// With autocommit off, the backend where a statement may have started
    /// a transaction the server does not flag (a read opens a snapshot
    /// without IN_TRANS), until COMMIT or ROLLBACK.
    pub implicit_transaction: Option<usize>,
    /// The replica the picker gave the session's last read: the next one
    /// stays there while it may (`routing.replica_affinity`).
    pub last_replica: Option<usize>,
    /// A backup lock (BACKUP STAGE, BACKUP LOCK, LOCK INSTANCE FOR
    /// BACKUP) is held on the session's primary connection.
    pub backup_locked: bool,
    /// The session set `optimizer_trace` or `profiling`: each statement
    /// leaves a record on its connection that the next may read.
    pub traces_statements: bool,
    /// The `wait_timeout` the client set for its session: idle longer
    /// between commands, it is disconnected, as by the server.
    pub wait_timeout: Option<std::time::Duration>,
    /// The session's `completion_type` is RELEASE: the server ends the
    /// connection after each COMMIT and ROLLBACK.
    pub completion_release: bool,
    /// The statement that just ran ended its connection on the server (a
    /// COMMIT or ROLLBACK with RELEASE): the session ends after its reply,
    /// as the server's would.
    pub released: Option<usize>,
}

/// A SET that succeeded, kept to run again on the session's other
/// connections.
#[derive(Debug, Clone)]
pub enum RecordedSet {
    /// Sent as text: its COM_QUERY payload.
    Query(Vec<u8>),
    /// Sent as a prepared statement: its text, and the client's
    /// COM_STMT_EXECUTE carrying every parameter with its type. It runs
    /// elsewhere as a statement prepared for the purpose (the execute's
    /// statement id replaced) and closed after.
    Execute { sql: std::sync::Arc<[u8]>, execute: Vec<u8> },
}

impl RecordedSet {
    /// The bytes it keeps, counted against `limits.max_statement_memory`.
    pub fn kept_bytes(&self) -> usize {
        match self {
            RecordedSet::Query(payload) => payload.len(),
            RecordedSet::Execute { sql, execute } => sql.len() + execute.len(),
        }
    }

    /// The hash of the SETs up to this one, given the hash of those
    /// before it.
    fn chain_hash(&self, previous: u64) -> u64 {
        use super::pool::chain_hash;
        match self {
            RecordedSet::Query(payload) => chain_hash(previous, payload),
            // Without the statement id, which differs per connection.
            RecordedSet::Execute { sql, execute } => {
                chain_hash(chain_hash(previous, sql), execute.get(5..).unwrap_or_default())
            }
        }
    }

    /// The statement's text (a COM_QUERY payload starts with its command byte).
    fn text(&self) -> &[u8] {
        match self {
            RecordedSet::Query(payload) => payload.get(1..).unwrap_or_default(),
            RecordedSet::Execute { sql, .. } => sql,
        }
    }
}

impl RoutingState {
    /// The hash of the first `n` recorded SETs (0 for none).
    pub fn hash_of_first(&self, n: usize) -> u64 {
        match n {
            0 => 0,
            n => self.set_hashes.get(n - 1).copied().unwrap_or(u64::MAX),
        }
    }
}

fn unqualified(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl Session {
    /// The router's view of this session for a statement.
    pub(super) fn view(&self, sql: &str) -> SessionView {
        let r = &self.routing;
        let locks = &self.shared.write_locks;
        let write_locks = locks.any();
        let (mut touches_temporary_table, mut touches_write_locked_table) = (false, false);
        if !r.temp_tables.is_empty() || write_locks {
            for t in classify::tables(sql, self.backslashes()) {
                let name = unqualified(&t);
                touches_temporary_table |= r.temp_tables.contains(name);
                touches_write_locked_table |= write_locks && locks.holds(name);
            }
        }
        SessionView {
            in_transaction: self.status & status::IN_TRANS != 0
                || self.status & status::AUTOCOMMIT == 0,
            read_only_transaction: r.read_only_transaction,
            locked_tables: r.locked_tables,
            touches_temporary_table,
            touches_write_locked_table,
            last_backend: r.last_backend,
            wrote: r.wrote,
            sql_prepared: r.sql_prepared,
            set_global: r.set_global,
            next_transaction_set: r.next_transaction_set,
            rule: self.matching_rule(sql),
        }
    }

    /// The first configured rule that matches `sql` (with its position).
    fn first_rule(&self, sql: &str) -> Option<(usize, &crate::config::RuleConfig)> {
        let config = &self.view.config;
        if config.rules.is_empty() {
            return None;
        }
        // Normalized once, when a digest rule first asks, and lent out.
        let normalized = std::cell::OnceCell::new();
        let digest_text = || -> &str {
            normalized.get_or_init(|| {
                let mut s = String::new();
                classify::normalize(sql, self.backslashes(), &mut s);
                s
            })
        };
        let who = crate::config::RuleSubject {
            user: &self.login.user,
            database: self.login.database.as_deref(),
            listener: &self.listener,
        };
        config.rules.iter().enumerate().find(|(_, r)| r.matches(sql, who, &digest_text))
    }

    /// Where the first configured rule that matches `sql` sends it.
    fn matching_rule(&self, sql: &str) -> Option<crate::classify::Hint> {
        self.first_rule(sql).and_then(|(_, r)| match r.target {
            crate::config::RuleTarget::Primary => Some(crate::classify::Hint::Primary),
            crate::config::RuleTarget::Replica => Some(crate::classify::Hint::Replica),
            // Answered before routing (`refusing_rule`).
            crate::config::RuleTarget::Reject => None,
        })
    }

    /// Answers a statement a rule refuses: ERROR 1148 (42000) with the
    /// rule's message; nothing runs.
    pub(super) async fn refuse_by_rule(
        &mut self,
        message: &str,
    ) -> Result<super::Next, SessionError> {
        self.shared.telemetry.rule_refusals.increment(1);
        self.reply_err(1148, "42000", message).await
    }

    /// Whether any configured rule refuses statements.
    pub(super) fn has_refusing_rules(&self) -> bool {
        self.view.config.rules.iter().any(|r| r.target == crate::config::RuleTarget::Reject)
    }

    /// The message for a statement a `target = "reject"` rule refuses: the
    /// first rule that matches `sql` is one. Checked before anything runs.
    pub(super) fn refusing_rule(&self, sql: &str) -> Option<String> {
        if !self.has_refusing_rules() {
            return None;
        }
        let (i, rule) = self.first_rule(sql)?;
        (rule.target == crate::config::RuleTarget::Reject).then(|| {
            rule.message
                .clone()
                .unwrap_or_else(|| format!("statement refused by rwsplit rules[{i}]"))
        })
    }

    /// Routes a classified statement text; `need` is what read-your-writes
    /// asks of a read. Also says whether it is session state a replica
    /// may run instead of the primary (`stands_in`), for a primary that
    /// fails to run it.
    pub(super) fn route_statement(
        &self,
        info: &StatementInfo,
        sql: &str,
        need: &ReadNeed,
    ) -> (Route, bool) {
        let available = self.shared.replica_available();
        let mut view = self.view(sql);
        view.wrote |= *need == ReadNeed::Primary;
        let route = router::route(info, &view, available);
        if self.stands_in(info, sql, route) {
            (self.session_state_route(), true)
        } else {
            (route, false)
        }
    }

    /// Where session state (a SET, USE, a prepare) goes: the primary, or
    /// a replica while the primary cannot be reached and one can read.
    pub(super) fn session_state_route(&self) -> Route {
        if self.primary_unreachable() && self.shared.replica_available() {
            STAND_IN
        } else {
            Route { target: Target::Primary, reason: router::Reason::SessionState }
        }
    }

    /// Whether `info`, routed to the primary by `route`, may run on a
    /// replica while the primary cannot be reached (`router::may_stand_in`).
    pub(super) fn stands_in(&self, info: &StatementInfo, sql: &str, route: Route) -> bool {
        // Only a subquery reads a table in a SET.
        let reads_tables = || {
            sql.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"select"))
                && !classify::tables(sql, self.backslashes()).is_empty()
        };
        route.reason == router::Reason::SessionState
            && router::may_stand_in(info)
            && !reads_tables()
    }

    /// The monitor does not have the primary up (found down, or not
    /// probed yet), or a session found it refusing connections.
    pub(super) fn primary_unreachable(&self) -> bool {
        let primary = self.primary();
        let up = self.shared.topology_now().backends.get(primary).is_some_and(|b| b.healthy);
        !up || self.shared.backoff.is_down(primary)
    }

    /// Runs the current command (session state: see `stands_in`) on a
    /// replica because the primary, `failed`, could not run it.
    pub(super) async fn forward_on_stand_in(
        &mut self,
        failed: usize,
        expect: crate::relay::Expect,
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        crate::telemetry::warn_throttled!(
            id = self.id,
            backend = failed,
            "the primary cannot be reached: session state set on a replica"
        );
        self.shared.telemetry.route(router::Reason::PrimaryDown);
        match self.acquire(STAND_IN).await {
            Ok(idx) => Ok(self.forward(idx, expect).await?.map(|o| (idx, o))),
            Err((idx, e)) => self.reply_backend_error(idx, &e).await.map(|_| None),
        }
    }

    /// After replica `idx` failed the session with `e`: every session
    /// avoids it for `backend_retry` unless the failure was this session's
    /// own. A server error is the session's (its database, its SETs),
    /// except a server full of connections, which every session would
    /// only add to; so is a wait for the proxy's own cap.
    pub(super) fn avoid_replica_for(&self, idx: usize, e: &BackendError) {
        let sessions_own = match e {
            BackendError::Server { code, .. } => *code != ER_CON_COUNT,
            BackendError::AtCapacity(..) | BackendError::PoolTimeout { .. } => true,
            _ => false,
        };
        if !sessions_own {
            self.shared.backoff.mark_down(idx, self.view.config.timeouts.backend_retry);
        }
    }

    /// Turns a route into a backend index with an open connection that has
    /// caught up with the session's state. A replica that cannot be used is
    /// avoided for a while and another one (or the primary) takes over.
    pub(super) async fn acquire(&mut self, route: Route) -> Result<usize, (usize, BackendError)> {
        let primary = self.primary();
        let mut tried = None;
        loop {
            let idx = match route.target {
                // A transaction finishes where it began, even if a reload
                // or a failover named another primary meanwhile.
                Target::Primary if route.reason == crate::router::Reason::Transaction => {
                    self.routing.transaction_backend.unwrap_or(primary)
                }
                Target::Primary => primary,
                Target::Backend(b) => b,
                Target::AnyReplica => {
                    let previous = self.routing.last_replica;
                    let previous = previous.filter(|_| self.view.config.routing.replica_affinity);
                    let band = self.view.config.routing.load_band;
                    match self.shared.pick_replica(tried, previous, band) {
                        // The read counts as in flight on that replica until the
                        // statement ends (the least busy within the load band).
                        Some((idx, guard)) => {
                            self.in_flight = Some(guard);
                            self.routing.last_replica = Some(idx);
                            idx
                        }
                        None => primary,
                    }
                }
            };
            match self.catch_up(idx).await {
                Ok(()) => return Ok(idx),
                Err(e) if idx != primary && route.target == Target::AnyReplica => {
                    crate::telemetry::warn_throttled!(id = self.id, backend = idx, error = %e, "replica unusable, reading elsewhere");
                    self.avoid_replica_for(idx, &e);
                    self.drop_backend(idx);
                    if tried.is_some() {
                        // Second failure in a row: the primary answers.
                        return self
                            .catch_up(primary)
                            .await
                            .map(|()| primary)
                            .map_err(|e| (primary, e));
                    }
                    tried = Some(idx);
                }
                Err(e) => return Err((idx, e)),
            }
        }
    }

    /// Opens the connection to `idx` if needed and replays what it missed:
    /// the current database and the session's SET statements. That work is
    /// bounded by the monitor as a statement is: once it finds `idx` down,
    /// the work is given up and the connection dropped.
    pub(super) async fn catch_up(&mut self, idx: usize) -> Result<(), BackendError> {
        self.drop_if_closed_while_unused(idx);
        let own_before = self.own_commands_on(idx);
        if self.catch_up_due(idx) {
            let (shared, handle) = (self.shared.clone(), self.handle.clone());
            let gone = shared.outages.watch(idx, &handle.signal);
            let done = tokio::select! {
                biased;
                r = self.catch_up_unwatched(idx) => Some(r),
                () = gone => None,
            };
            match done {
                Some(r) => r?,
                None => {
                    self.drop_backend(idx);
                    return Err(super::backend_gone());
                }
            }
        }
        // The proxy's own commands on the connection (COM_INIT_DB, SETs)
        // leave ROW_COUNT() at their own value.
        let ran_own = own_before != self.own_commands_on(idx);
        self.carry_row_count(idx, ran_own);
        Ok(())
    }

    /// The count of the proxy's own commands run on the session's
    /// connection to `idx` (None without one).
    fn own_commands_on(&self, idx: usize) -> Option<(u32, u64)> {
        let conn = self.backends.get(idx).and_then(Option::as_ref)?;
        Some((conn.thread_id, conn.own_commands))
    }

    /// Whether `catch_up` has anything to send to `idx`.
    fn catch_up_due(&self, idx: usize) -> bool {
        let Some(conn) = self.backends.get(idx).and_then(Option::as_ref) else {
            return true;
        };
        conn.database != self.login.database
            || (conn.database_selected && self.login.database.is_none())
            || conn.databases_seen != self.shared.database_changes.load(Ordering::Relaxed)
            || conn.applied_sets < self.routing.sets.len()
            || (self.routing.reads_insert_id && self.routing.last_insert.is_some())
    }

    async fn catch_up_unwatched(&mut self, idx: usize) -> Result<(), BackendError> {
        let sets_total = self.routing.sets.len();
        // A session without a database (it dropped its own) gets a
        // connection without one, unless state it needs lives on the one
        // it has: a connection cannot leave its database. (Stricter than
        // `drop_if_closed`, which may also drop one kept for questions
        // about the last statement: a closed one has lost its answers.)
        if self.login.database.is_none()
            && self.backends.get(idx).and_then(Option::as_ref).is_some_and(|c| c.database_selected)
            && self.binding(idx).is_none()
        {
            self.drop_backend(idx);
        }
        self.backend(idx).await?;
        let conn = self.backends[idx].as_mut().expect("just opened");
        if let Some(db) = &self.login.database {
            conn.select_database(db).await?;
        }
        // A replayed SET of the transaction access mode may have undone
        // the replica connection's.
        let mut access_mode_replayed = false;
        if conn.applied_sets < sets_total {
            let start = conn.applied_sets;
            let mut retrack = false;
            for i in start..sets_total {
                let set = &self.routing.sets[i];
                let text = String::from_utf8_lossy(set.text());
                retrack |= mentions_session_tracking(&text);
                access_mode_replayed |=
                    mentions(&text, b"transaction") || mentions(&text, b"read_only");
                let hash = self.routing.hash_of_first(i + 1);
                let conn = self.backends[idx].as_mut().expect("open");
                match set {
                    RecordedSet::Query(payload) => conn.run_own(payload).await?,
                    RecordedSet::Execute { sql, execute } => {
                        conn.run_prepared_own(sql, execute).await?
                    }
                };
                conn.applied_sets = i + 1;
                conn.sets_hash = hash;
            }
            if retrack {
                self.backends[idx].as_mut().expect("open").enable_gtid_tracking().await?;
            }
        }
        // A replica's connection takes no writes, whatever the user's
        // privileges; a connection that served a replica serves the
        // primary (after a failover) read-write again.
        let read_only = idx != self.primary();
        let conn = self.backends[idx].as_mut().expect("open");
        if conn.transactions_read_only != read_only || (read_only && access_mode_replayed) {
            conn.set_transactions_read_only(read_only).await?;
        }
        self.carry_last_insert_id(idx).await
    }

    /// A statement reading `ROW_COUNT()` about to run on another connection
    /// than the session's previous statement (given back to the pool in
    /// between, or lost), or on the same one after the proxy ran commands
    /// of its own there (`ran_own`), gets the value that statement left
    /// written in.
    fn carry_row_count(&mut self, idx: usize, ran_own: bool) {
        if !self.routing.reads_row_count || self.cmd.first() != Some(&command::QUERY) {
            return;
        }
        let Some((backend, thread, value)) = self.routing.last_row_count else {
            return;
        };
        let Some(conn) = self.backends.get(idx).and_then(Option::as_ref) else {
            return;
        };
        if backend == idx && conn.thread_id == thread && !ran_own {
            return;
        }
        let backslashes = self.backslashes();
        let answered = self
            .statement_as_written()
            .and_then(|sql| classify::answer_row_count(sql, value, backslashes));
        if let Some(text) = answered {
            self.cmd.truncate(1);
            self.cmd.extend_from_slice(text.as_bytes());
        }
    }

    /// Updates the session's memory after a statement ran on `idx`.
    pub(super) fn after_statement(
        &mut self,
        info: &StatementInfo,
        sql: &str,
        idx: usize,
        outcome: &Outcome,
    ) {
        let primary = self.primary();
        self.routing.last_backend = Some(idx);
        self.routing.transaction_backend = (self.status & status::IN_TRANS != 0
            || self.status & status::AUTOCOMMIT == 0)
            .then_some(idx);
        if self.routing.read_only_transaction == Some(idx) && outcome.status & status::IN_TRANS == 0
        {
            self.routing.read_only_transaction = None;
        }
        if self.routing.next_transaction_set
            && idx == primary
            && takes_next_transaction(info, sql, self.backslashes())
        {
            self.routing.next_transaction_set = false;
        }
        // Any statement on the primary may end a write: COMMIT carries the
        // transaction's GTID, and so does an implicit commit (SET
        // autocommit = 1, DDL).
        self.note_connection_state(info, idx, outcome);
        if let Some(charset) = &outcome.character_set_client {
            self.multibyte = crate::classify::Multibyte::of_charset(charset);
        }
        // The server says which database the session is now in (a `USE`
        // anywhere in a multi-statement, one before a failing statement).
        if let Some(db) = &outcome.schema {
            self.in_database(idx, db.clone());
        }
        let has_gtid = outcome.gtid().is_some();
        if idx == primary && (router::is_write(info) || has_gtid) {
            self.remember_write(idx, outcome);
        }
        // SQL EXECUTE, EXECUTE IMMEDIATE and CALL run a text the proxy did
        // not read: one that changed the session (a SET inside it) left
        // state on this connection that no replica has. (A procedure's OUT
        // parameters, and what it writes, are no state change to MariaDB.)
        let runs_unread_text = matches!(info.kind, StatementKind::Execute | StatementKind::Call);
        if runs_unread_text && outcome.state_changed && outcome.error.is_none() && idx == primary {
            self.keep_reads_on(idx);
        }
        // A write under `SET STATEMENT sql_log_bin = 0 FOR` reaches no
        // replica either.
        if info.flags.contains(crate::classify::Flags::STATEMENT_SETS)
            && idx == primary
            && router::is_write(info)
            && mentions(sql, b"sql_log_bin")
        {
            self.keep_reads_on(idx);
        }
        let schema_reported = outcome.schema.is_some();
        if info.statements > 1 {
            self.follow_multi_statement(idx, sql, schema_reported, outcome.error.is_some());
        } else if outcome.error.is_none() {
            self.follow_statement(idx, info.kind, info.flags, sql, None, schema_reported);
        }
    }

    /// Follows what one statement that succeeded on `idx` changed in the
    /// session. `part`: where it is in the command's text, when it is one
    /// statement of several (a SET is replayed as that part alone).
    fn follow_statement(
        &mut self,
        idx: usize,
        kind: StatementKind,
        flags: crate::classify::Flags,
        sql: &str,
        part: Option<std::ops::Range<usize>>,
        schema_reported: bool,
    ) {
        match kind {
            StatementKind::Begin { read_only: true } if idx != self.primary() => {
                self.routing.read_only_transaction = Some(idx);
            }
            // Starting a transaction releases the session's table locks.
            StatementKind::Begin { .. } => {
                self.routing.locked_tables = false;
                self.routing.write_locked = None;
            }
            // The next transaction's characteristics live on the (pinned)
            // connection that transaction will run on, and nowhere else:
            // the session's next transaction runs there, even a single read.
            StatementKind::SetTransaction
                if flags.contains(crate::classify::Flags::ONE_SHOT_SET) =>
            {
                self.routing.next_transaction_set = true;
            }
            StatementKind::SetSession | StatementKind::SetNames | StatementKind::SetTransaction => {
                // A value read from a user variable, which lives on this
                // connection alone (`SET sql_mode = @saved`), would be
                // another (NULL) where the text ran again: the session's
                // reads stay here instead.
                // So would DEFAULT after the session's SET GLOBAL: the
                // primary's new global, a replica's old one.
                let default_changed = self.routing.set_global && mentions(sql, b"default");
                if flags.contains(crate::classify::Flags::USER_VAR_READ) || default_changed {
                    self.keep_reads_on(idx);
                } else {
                    self.record_set(idx, part);
                }
                if mentions_session_tracking(sql) {
                    self.client_wants_gtids = wants_gtids(sql, self.client_wants_gtids);
                }
                self.routing.traces_statements |= mentions_tracing(sql);
                // A state whose reads only this connection answers
                // (`sql_auto_is_null`, binary logging off, READ UNCOMMITTED).
                if classify::set_keeps_reads_here(sql, self.backslashes()) {
                    self.keep_reads_on(idx);
                }
                if mentions(sql, b"completion_type")
                    && let Some(release) = classify::completion_release_set(sql, self.backslashes())
                {
                    self.routing.completion_release = release;
                }
                if mentions(sql, b"wait_timeout")
                    && let Some(set) = classify::wait_timeout_set(sql, self.backslashes())
                {
                    self.routing.wait_timeout = match set {
                        classify::WaitTimeout::Seconds(s) => {
                            Some(std::time::Duration::from_secs(s))
                        }
                        classify::WaitTimeout::Unknown => None,
                    };
                }
            }
            // A server not tracking the schema: the statement's own text.
            StatementKind::Use if !schema_reported => {
                if let Some(db) = use_database(sql) {
                    self.in_database(idx, db.into_bytes());
                }
            }
            // Its session part is not replayed: the session's reads stay
            // where it ran.
            StatementKind::SetGlobal
                if flags.contains(crate::classify::Flags::SESSION_SET_BESIDE_GLOBAL) =>
            {
                self.note_set_global();
                self.keep_reads_on(idx);
            }
            StatementKind::SetGlobal => self.note_set_global(),
            StatementKind::LockTables => {
                self.routing.locked_tables = true;
                // Another LOCK TABLES releases the locks held before it.
                self.routing.write_locked = None;
                let names = classify::write_locked_tables(sql, self.backslashes());
                if !names.is_empty() {
                    self.routing.write_locked = Some(self.shared.write_locks.hold(names));
                }
            }
            StatementKind::UnlockTables => {
                self.routing.locked_tables = false;
                self.routing.write_locked = None;
            }
            // A FLUSH ... WITH READ LOCK holds its lock as LOCK TABLES does;
            // backup locks have statements of their own to release them.
            StatementKind::Flush | StatementKind::Other => {
                match classify::held_lock_change(sql, self.backslashes()) {
                    Some(classify::HeldLock::Tables) => self.routing.locked_tables = true,
                    Some(classify::HeldLock::Backup(held)) => self.routing.backup_locked = held,
                    None => {}
                }
            }
            StatementKind::Prepare => self.routing.sql_prepared = true,
            StatementKind::Commit | StatementKind::Rollback => {
                let release = classify::release_clause(sql, self.backslashes());
                if release.unwrap_or(self.routing.completion_release) {
                    self.routing.released = Some(idx);
                }
            }
            // Every connection that selected a database before this one
            // selects it again (see `Shared::database_changes`).
            StatementKind::Ddl if classify::sets_database_options(sql, self.backslashes()) => {
                self.shared.database_changes.fetch_add(1, Ordering::Relaxed);
            }
            StatementKind::DropTemporaryTable | StatementKind::Ddl
                if self.routing.temp_tables.is_empty() => {}
            // `DROP TABLE t` drops a temporary t first, as the server does.
            StatementKind::CreateTemporaryTable
            | StatementKind::DropTemporaryTable
            | StatementKind::Ddl => match classify::temp_table_change(sql, self.backslashes()) {
                Some(classify::TempTableChange::Created(name)) => {
                    self.routing.temp_tables.insert(unqualified(&name).to_string());
                }
                Some(classify::TempTableChange::Dropped(names)) => {
                    for name in names {
                        self.routing.temp_tables.remove(unqualified(&name));
                    }
                }
                None => {}
            },
            _ => {}
        }
    }

    /// Follows a multi-statement's changes to the session statement by
    /// statement (`sql`: its text as classified): each SET is recorded on
    /// its own (replaying the whole text elsewhere would run its other
    /// statements again there: an INSERT on a replica, a BEGIN leaving a
    /// transaction open there). When which ones ran is unknown (the text
    /// failed part way: its SETs, its temporary tables), or a SET cannot be
    /// cut out of the command's bytes (a text not read as its bytes), the
    /// session's reads stay on the primary, on this connection.
    fn follow_multi_statement(
        &mut self,
        idx: usize,
        sql: &str,
        schema_reported: bool,
        failed: bool,
    ) {
        // The lexer's verdicts: those it is unsure of are no SET, USE...
        // (and no parser runs for each statement of a long text). A DDL
        // may drop one of the session's temporary tables or set a
        // database's options: `follow_statement` tells.
        let parts: Vec<_> = classify::statements(sql, self.backslashes())
            .into_iter()
            .filter_map(|part| {
                let kind = part.kind?;
                // The server reported the database whatever else failed.
                let followed = kind == StatementKind::Use && schema_reported;
                let may_lock = matches!(kind, StatementKind::Flush | StatementKind::Other);
                (changes_session(kind, part.flags) && !followed
                    || matches!(kind, StatementKind::Ddl | StatementKind::SetGlobal)
                    || may_lock)
                    .then_some((kind, part.flags, part.range))
            })
            .collect();
        if failed {
            // A temporary table it may have dropped is still taken for one:
            // its reads stay on the primary, which is right either way. So
            // are its reads of global settings after a SET GLOBAL.
            if parts.iter().any(|(kind, flags, _)| changes_session(*kind, *flags)) {
                self.keep_reads_on(idx);
            }
            if parts.iter().any(|(kind, ..)| *kind == StatementKind::SetGlobal) {
                self.note_set_global();
            }
            return;
        }
        let is_set = |kind: &StatementKind| {
            matches!(
                kind,
                StatementKind::SetSession | StatementKind::SetNames | StatementKind::SetTransaction
            )
        };
        // The SETs are cut out of the command's bytes by the text's ranges.
        let as_written = self.cmd.get(1..) == Some(sql.as_bytes());
        if !as_written && parts.iter().any(|(kind, ..)| is_set(kind)) {
            self.keep_reads_on(idx);
            return;
        }
        for (kind, flags, range) in parts {
            let part = &sql[range.clone()];
            self.follow_statement(idx, kind, flags, part, Some(range), schema_reported);
        }
    }

    /// The session is now in database `db`, as its connection `idx` is;
    /// in none when `db` is empty (the server reports its current database
    /// dropped so).
    pub(super) fn in_database(&mut self, idx: usize, db: Vec<u8>) {
        let db = Some(db).filter(|db| !db.is_empty());
        if let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut) {
            conn.database = db.clone();
            conn.database_selected = db.is_some();
        }
        self.login.database = db;
    }

    /// Records the current command (a SET that succeeded on `idx`), or
    /// `part` of its text, for replay on the session's other backends.
    fn record_set(&mut self, idx: usize, part: Option<std::ops::Range<usize>>) {
        let set = match (part, self.cmd.first()) {
            (Some(part), _) => self.cmd.get(1 + part.start..1 + part.end).map(|sql| {
                let mut payload = Vec::with_capacity(1 + sql.len());
                payload.push(command::QUERY);
                payload.extend_from_slice(sql);
                RecordedSet::Query(payload)
            }),
            (None, Some(&command::STMT_EXECUTE)) => self.replayable_execute(),
            (None, _) => Some(RecordedSet::Query(self.cmd.clone())),
        };
        let cap = self.view.config.limits.max_statement_memory;
        let fits = |set: &RecordedSet| {
            self.routing.sets.len() < MAX_RECORDED_SETS
                && self.kept_statement_bytes() + set.kept_bytes() <= cap
        };
        let Some(set) = set.filter(fits) else {
            // A session that keeps issuing SETs (or large ones), or one
            // whose parameters came as long data: its reads stay on the
            // primary instead (and its connection there, which alone has
            // the SETs), which also keeps the proxy's memory bounded.
            self.keep_reads_on(idx);
            return;
        };
        let hash = set.chain_hash(self.routing.hash_of_first(self.routing.sets.len()));
        self.routing.sets.push(set);
        self.routing.set_hashes.push(hash);
        let n = self.routing.sets.len();
        if let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut) {
            conn.applied_sets = n;
            conn.sets_hash = hash;
        }
    }

    /// The statement text the session keeps to run again elsewhere: its
    /// prepared statements and recorded SETs.
    pub(super) fn kept_statement_bytes(&self) -> usize {
        let sets: usize = self.routing.sets.iter().map(RecordedSet::kept_bytes).sum();
        self.stmts.bytes() + sets
    }

    /// Session state lives only on connection `idx` (the primary's): the
    /// session's reads stay on the primary, and that connection with it.
    fn keep_reads_on(&mut self, idx: usize) {
        self.routing.wrote = true;
        self.pin(idx);
    }

    /// The session ran `SET GLOBAL`: it reads global values on the
    /// primary from now on, and new sessions get connections opened after
    /// it (see `Shared::global_changes`).
    fn note_set_global(&mut self) {
        self.routing.set_global = true;
        self.shared.global_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets routing memory that a COM_RESET_CONNECTION or
    /// COM_CHANGE_USER ends.
    pub(super) fn reset_routing(&mut self) {
        self.routing = RoutingState::default();
        // The server's tracking is back to its defaults: the client's own
        // asks are gone with the rest of its session state.
        self.client_wants_gtids = false;
        self.client_wants_state_change = false;
        for conn in self.backends.iter_mut().flatten() {
            conn.applied_sets = 0;
            conn.sets_hash = 0;
        }
    }

    /// Keeps the session's connection to `idx` for as long as it lives:
    /// state the proxy cannot carry to another connection is on it.
    pub(super) fn pin(&mut self, idx: usize) {
        let pinned = &mut self.routing.pinned;
        if pinned.len() <= idx {
            pinned.resize(idx + 1, false);
        }
        pinned[idx] = true;
    }

    /// Remembers what a statement that ran on `idx` left on that
    /// connection for the pool: untracked state pins it to the session,
    /// and its results may be asked about by the next statement.
    pub(super) fn note_connection_state(
        &mut self,
        info: &StatementInfo,
        idx: usize,
        outcome: &Outcome,
    ) {
        use crate::classify::Flags;
        let untracked = info.flags.intersects(
            Flags::USER_VAR_ASSIGN
                | Flags::SIDE_EFFECT_FUNC
                | Flags::SETS_LAST_INSERT_ID
                | Flags::ONE_SHOT_SET,
        ) || matches!(
            info.kind,
            StatementKind::SetUserVar
                | StatementKind::Handler
                | StatementKind::Xa
                | StatementKind::Unknown
        ) || (outcome.state_changed
            && !state_followed_by_kind(info.kind)
            // The variables of SET STATEMENT ... FOR last for the statement.
            && !(info.flags.contains(Flags::STATEMENT_SETS) && info.kind != StatementKind::Call));
        if untracked {
            self.pin(idx);
        }
        match info.kind {
            StatementKind::Commit | StatementKind::Rollback | StatementKind::SetAutocommit(_) => {
                self.routing.implicit_transaction = None;
            }
            StatementKind::SetSession
            | StatementKind::SetNames
            | StatementKind::SetTransaction
            | StatementKind::SetUserVar
            | StatementKind::Use
            | StatementKind::Kill => {}
            _ if self.status & crate::protocol::status::AUTOCOMMIT == 0 => {
                self.routing.implicit_transaction = Some(idx);
            }
            _ => {}
        }
        self.routing.last_row_count = match self.backends.get(idx).and_then(Option::as_ref) {
            Some(_) if info.kind == StatementKind::Call => None,
            Some(conn) => Some((idx, conn.thread_id, row_count(outcome))),
            None => None,
        };
        // What a CALL leaves (ROW_COUNT() of the procedure's last
        // statement, its FOUND_ROWS()) is not in its reply: the next
        // statement asks the connection.
        let leaves_results = outcome.warnings > 0
            || outcome.error.is_some()
            || info.flags.contains(Flags::SQL_CALC_FOUND_ROWS)
            || info.kind == StatementKind::Call
            || self.routing.traces_statements;
        self.routing.next_statement = leaves_results.then_some(idx);
        // The last insert id moves with the session instead (see
        // `carry_last_insert_id`): a write need not keep its connection.
        if let Some(conn) = self.backends.get(idx).and_then(Option::as_ref) {
            if outcome.last_insert_id != 0 {
                let id = Some(outcome.last_insert_id);
                self.routing.last_insert = Some((idx, conn.thread_id, id));
            } else if info.flags.contains(Flags::SETS_LAST_INSERT_ID) && outcome.error.is_none() {
                // The value is in the result, not the OK: the connection
                // (pinned above) is asked when another one needs it.
                self.routing.last_insert = Some((idx, conn.thread_id, None));
            }
        }
    }

    /// Before a statement that reads `LAST_INSERT_ID()` runs on a
    /// connection other than the one the session's last insert ran on (on
    /// another backend, or one that served other sessions since), that
    /// connection is given the id (`SELECT LAST_INSERT_ID(n)`).
    async fn carry_last_insert_id(&mut self, idx: usize) -> Result<(), BackendError> {
        let Some((backend, thread, id)) = self.routing.last_insert else {
            return Ok(());
        };
        let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut) else {
            return Ok(());
        };
        // The statement before it may have run elsewhere (a read on a
        // replica), and it is routed after that one: the id is given to
        // whichever connection it lands on. Only a statement that reads
        // the id: the carrying SELECT replaces what FOUND_ROWS(),
        // ROW_COUNT() and SHOW WARNINGS report.
        if (backend == idx && conn.thread_id == thread) || !self.routing.reads_insert_id {
            return Ok(());
        }
        // The connection that has it answers, while the session still
        // holds it: an INSERT that gave the AUTO_INCREMENT column its value
        // reports that value in its OK, yet leaves LAST_INSERT_ID() at the
        // last generated one. Given back to the pool, the OK's is all there
        // is (or, after `SELECT LAST_INSERT_ID(expr)`, nothing).
        let id = match self.last_insert_id_of(backend, thread).await.or(id) {
            Some(id) => id,
            None => return Ok(()),
        };
        let conn = self.backends[idx].as_mut().expect("checked above");
        conn.query_own(&format!("SELECT LAST_INSERT_ID({id})")).await?;
        self.routing.last_insert = Some((idx, conn.thread_id, Some(id)));
        Ok(())
    }

    /// `LAST_INSERT_ID()` of the session's connection to `backend`, if
    /// that is still the connection with server thread `thread`.
    async fn last_insert_id_of(&mut self, backend: usize, thread: u32) -> Option<u64> {
        let conn = self.backends.get_mut(backend)?.as_mut().filter(|c| c.thread_id == thread)?;
        conn.query_value("SELECT LAST_INSERT_ID()").await.ok()??.parse().ok()
    }

    /// Runs a classified COM_QUERY where the router says.
    pub(super) async fn run_routed(
        &mut self,
        info: StatementInfo,
        sql: &str,
    ) -> Result<(), SessionError> {
        let started = std::time::Instant::now();
        self.routing.reads_insert_id =
            info.flags.contains(crate::classify::Flags::READS_LAST_INSERT_ID);
        self.routing.statement_writes = router::is_write(&info);
        self.routing.reads_row_count =
            info.flags.contains(crate::classify::Flags::LAST_STATEMENT_FUNC)
                && sql.as_bytes().windows(9).any(|w| w.eq_ignore_ascii_case(b"row_count"));
        self.end_read_only_transaction_for(&info).await;
        let need = self.need_for(&info, started);
        let (route, stand_in) = self.route_statement(&info, sql, &need);
        self.shared.telemetry.route(route.reason);
        tracing::trace!(id = self.id, reason = route.reason.as_str(), "route");
        if self.refuse(route).await? {
            return Ok(());
        }
        let need = self.forget_applied_write(route, need);
        // The OK of a SET that turns the client's own state change
        // tracking on already reports the change: the client sees it.
        let wanted_state_change = self.client_wants_state_change;
        if info.kind == StatementKind::SetSession && mentions_session_tracking(sql) {
            self.client_wants_state_change = wants_state_change(sql, wanted_state_change);
        }
        let ran = if route.target == Target::AnyReplica
            && matches!(need, ReadNeed::Gtid(_) | ReadNeed::PrimaryPosition)
        {
            match self.causal_read(need, route, crate::relay::Expect::Result).await {
                // The replica failed before replying: the primary, which
                // holds every write, answers instead.
                Err(SessionError::BackendBeforeReply(failed)) if failed != self.primary() => {
                    match self.backend_for_retry(failed, None).await {
                        Ok(primary) => self
                            .forward(primary, crate::relay::Expect::Result)
                            .await?
                            .map(|o| (primary, o)),
                        Err((idx, e)) => {
                            self.reply_backend_error(idx, &e).await?;
                            None
                        }
                    }
                }
                other => other?,
            }
        } else {
            let stand_in = stand_in && route.target == Target::Primary;
            self.plain_forward(route, crate::relay::Expect::Result, stand_in).await?
        };
        self.in_flight = None;
        if ran.as_ref().is_none_or(|(_, o)| o.error.is_some()) {
            self.client_wants_state_change = wanted_state_change;
        }
        if let Some((idx, outcome)) = ran {
            self.record_statement(&info, sql, idx, &outcome, started);
            self.after_statement(&info, sql, idx, &outcome);
            if outcome.error.is_none() && mentions_session_tracking(sql) {
                // The client replaced the tracked variables: track GTIDs again.
                if let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut)
                    && let Err(e) = conn.enable_gtid_tracking().await
                {
                    tracing::warn!(id = self.id, error = %e, "cannot re-enable GTID tracking");
                    self.drop_backend(idx);
                }
            }
        }
        Ok(())
    }

    /// Records a statement's time, digest statistics and route.
    pub(super) fn record_statement(
        &mut self,
        info: &StatementInfo,
        sql: &str,
        idx: usize,
        outcome: &Outcome,
        started: std::time::Instant,
    ) {
        let elapsed = started.elapsed();
        self.shared.telemetry.statement(idx, elapsed);
        let rows = if outcome.result_set { outcome.rows } else { outcome.affected_rows };
        let backslashes = self.backslashes();
        let normalized = || {
            let mut text = String::new();
            crate::classify::normalize(sql, backslashes, &mut text);
            text
        };
        let on_primary = idx == self.primary();
        self.shared.digests.record(
            info.digest,
            normalized,
            elapsed.as_micros() as u64,
            rows,
            on_primary,
        );
        let failed = outcome.error.is_some();
        self.stats.count(on_primary, failed);
        let slow = self.view.config.log.slow_statement;
        if !slow.is_zero() && elapsed >= slow {
            self.stats.slow += 1;
            let backend = self.view.config.backends.get(idx).map_or("?", |b| b.name.as_str());
            tracing::warn!(
                id = self.id,
                user = %String::from_utf8_lossy(&self.login.user),
                backend,
                elapsed_ms = elapsed.as_millis() as u64,
                rows,
                failed,
                statement = %crate::digests::shortened(normalized()),
                "slow statement"
            );
        }
    }

    /// Before a statement that commits implicitly (see
    /// [`router::commits_implicitly`]), ends a read-only transaction held on
    /// a replica as the primary would end it: COMMIT there, so the
    /// statement is routed as outside any transaction (a DDL to the
    /// primary, a new START TRANSACTION where its kind says). A read-only
    /// transaction has nothing to lose, so a replica that fails the COMMIT
    /// is only dropped.
    pub(super) async fn end_read_only_transaction_for(&mut self, info: &StatementInfo) {
        let Some(idx) = self.routing.read_only_transaction else {
            return;
        };
        if !router::commits_implicitly(info.kind) {
            return;
        }
        self.routing.read_only_transaction = None;
        self.routing.transaction_backend = None;
        let committed = match self.backends.get_mut(idx).and_then(Option::as_mut) {
            Some(conn) => conn.query_own("COMMIT").await.ok(),
            None => None,
        };
        match committed {
            Some(outcome) if outcome.has_status => self.status = outcome.status,
            _ => {
                self.status &= !(status::IN_TRANS | status::IN_TRANS_READONLY);
                self.drop_backend(idx);
            }
        }
    }

    /// Answers a statement the route refuses instead of running it: with
    /// `routing.fallback = "error"`, a read that no replica can take; a
    /// write inside a read-only transaction held on a replica (the
    /// primary's ERROR 1792, where the replica would say 1290). Returns
    /// true when it replied so.
    pub(super) async fn refuse(&mut self, route: Route) -> Result<bool, SessionError> {
        match route.reason {
            crate::router::Reason::NoReplica
                if self.view.config.routing.fallback == crate::config::Fallback::Error =>
            {
                let msg =
                    "rwsplit: no replica is eligible for reads (routing.fallback = \"error\")";
                self.reply_err(1105, "HY000", msg).await?;
            }
            crate::router::Reason::WriteInReadOnlyTransaction => {
                let msg = "Cannot execute statement in a READ ONLY transaction";
                self.reply_err(1792, "25006", msg).await?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether a read routed for `reason` whose connection to the primary
    /// (`failed`) broke before any byte of its reply may run once more on
    /// another connection to it: only plain reads outside a transaction
    /// are routed so (running one twice changes nothing), and only while
    /// the primary is not known to be unreachable. That is a connection the
    /// server closed an instant before the read was sent (a KILL, a tool
    /// killing idle connections); a primary that is down gives its error
    /// at once.
    pub(super) fn may_read_again_on_primary(&self, reason: router::Reason, failed: usize) -> bool {
        use router::Reason::{AfterWrite, Consistency, NoReplica};
        failed == self.primary()
            && matches!(reason, AfterWrite | NoReplica | Consistency)
            && !self.primary_unreachable()
    }

    /// Where a read runs again after backend `failed` broke before any byte
    /// of its reply reached the client: `failed` is avoided for a while,
    /// and the read goes to another replica (`route`), or to the primary
    /// when it must see the session's writes (`None`) or no replica is
    /// left. Returns the backend, caught up with the session, or the error
    /// for the client.
    pub(super) async fn backend_for_retry(
        &mut self,
        failed: usize,
        route: Option<Route>,
    ) -> Result<usize, (usize, BackendError)> {
        self.shared.backoff.mark_down(failed, self.view.config.timeouts.backend_retry);
        if let Some(route) = route
            && let Ok(idx) = self.acquire(route).await
        {
            return Ok(idx);
        }
        let primary = self.primary();
        self.catch_up(primary).await.map(|()| primary).map_err(|e| (primary, e))
    }

    /// Whether a read on backend `idx` has a reply that is only a server
    /// error held back to be looked at (`settle_held_error`): on a replica,
    /// outside any transaction, where the read may still run elsewhere.
    pub(super) fn holds_replica_errors(&self, idx: usize) -> bool {
        idx != self.primary()
            && self.status & (status::IN_TRANS | status::AUTOCOMMIT) == status::AUTOCOMMIT
    }

    /// A replica's held error reply: passed on to the client, unless the
    /// table does not exist there (a temporary table a procedure created,
    /// a table whose creation has not reached the replica yet), or the
    /// replica refused the read as a write (a view or a stored function
    /// that writes: a sequence's NEXTVAL in a view), which ran nothing
    /// there: then the primary answers (with its own error if it has one).
    async fn settle_held_error(
        &mut self,
        idx: usize,
        reason: crate::router::Reason,
        expect: crate::relay::Expect,
        mut outcome: Outcome,
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        let err = self.take_held_error(idx).await?;
        outcome.withheld = false;
        let elsewhere = outcome.error == Some(crate::protocol::messages::NO_SUCH_TABLE)
            || refused_as_write(outcome.error);
        if !elsewhere {
            self.write_reply(&err).await?;
            return Ok(Some((idx, outcome)));
        }
        match self.acquire(Route { target: Target::Primary, reason }).await {
            Ok(p) => Ok(self.forward(p, expect).await?.map(|o| (p, o))),
            Err((p, e)) => self.reply_backend_error(p, &e).await.map(|_| None),
        }
    }

    /// Runs `self.cmd` where `route` says, with no consistency wait.
    /// `stand_in`: session state that a replica runs when the primary
    /// cannot (`stands_in`).
    pub(super) async fn plain_forward(
        &mut self,
        route: Route,
        expect: crate::relay::Expect,
        stand_in: bool,
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        let idx = match self.acquire(route).await {
            Ok(idx) => idx,
            Err((idx, e)) if stand_in && cannot_reach(&e) => {
                return self.forward_on_stand_in(idx, expect).await;
            }
            Err((idx, e)) => {
                self.reply_backend_error(idx, &e).await?;
                return Ok(None);
            }
        };
        let hold = route.target == Target::AnyReplica && self.holds_replica_errors(idx);
        match self.forward_holding(idx, expect, hold).await {
            Ok(Some(outcome)) if outcome.withheld => {
                self.settle_held_error(idx, route.reason, expect, outcome).await
            }
            // A read whose replica failed before replying runs again on
            // another replica, or the primary: the client never knows.
            Err(SessionError::BackendBeforeReply(failed)) if route.target == Target::AnyReplica => {
                match self.backend_for_retry(failed, Some(route)).await {
                    Ok(retry) => Ok(self.forward(retry, expect).await?.map(|o| (retry, o))),
                    Err((idx, e)) => self.reply_backend_error(idx, &e).await.map(|_| None),
                }
            }
            // A plain read whose primary connection broke before replying
            // (closed by the server an instant before: a KILL) runs again.
            Err(SessionError::BackendBeforeReply(failed))
                if self.may_read_again_on_primary(route.reason, failed) =>
            {
                match self.acquire(route).await {
                    Ok(idx) => Ok(self.forward(idx, expect).await?.map(|o| (idx, o))),
                    Err((idx, e)) => self.reply_backend_error(idx, &e).await.map(|_| None),
                }
            }
            // A SET or USE changes nothing that a connection which broke
            // before replying kept: a replica takes it.
            Err(SessionError::BackendBeforeReply(failed)) if stand_in => {
                self.forward_on_stand_in(failed, expect).await
            }
            other => Ok(other?.map(|o| (idx, o))),
        }
    }

    /// Runs a read that must see a GTID: on a replica known to hold it,
    /// else after waiting for it on the least lagging replica (one round
    /// trip), else on the primary.
    async fn causal_read(
        &mut self,
        need: ReadNeed,
        route: Route,
        expect: crate::relay::Expect,
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        let primary_route =
            Route { target: Target::Primary, reason: crate::router::Reason::Consistency };
        let Ok(target) = self.causal_target(need).await else {
            return self.plain_forward(primary_route, expect, false).await;
        };
        let Some(target) = target else {
            // No position to wait for: nothing written yet (or unreadable).
            return self.plain_forward(route, expect, false).await;
        };
        let Some((idx, holds, guard)) = self.replica_for_gtid(&target) else {
            return self.plain_forward(primary_route, expect, false).await;
        };
        self.in_flight = Some(guard);
        if let Err(e) = self.catch_up(idx).await {
            crate::telemetry::warn_throttled!(id = self.id, backend = idx, error = %e, "replica unusable for a causal read");
            self.avoid_replica_for(idx, &e);
            self.in_flight = None;
            self.drop_backend(idx);
            return self.plain_forward(primary_route, expect, false).await;
        }
        let hold = self.holds_replica_errors(idx);
        let outcome = if holds {
            self.forward_holding(idx, expect, hold).await?
        } else {
            self.waited_forward(idx, &target, expect, hold).await?
        };
        match outcome {
            Some(outcome) if outcome.withheld => {
                return self.settle_held_error(idx, route.reason, expect, outcome).await;
            }
            Some(outcome) => return Ok(Some((idx, outcome))),
            None if holds => return Ok(None),
            None => {}
        }
        self.in_flight = None;
        self.shared.telemetry.gtid_fallbacks.increment(1);
        self.shared.telemetry.route(crate::router::Reason::Consistency);
        self.plain_forward(primary_route, expect, false).await
    }
}

/// A replica's error for a read it refused as a write (read-only: a view
/// or stored function that writes), having run nothing.
pub(super) fn refused_as_write(error: Option<u16>) -> bool {
    use crate::protocol::messages::{OPTION_PREVENTS_STATEMENT, READ_ONLY_TRANSACTION};
    matches!(error, Some(OPTION_PREVENTS_STATEMENT | READ_ONLY_TRANSACTION))
}

fn mentions_session_tracking(sql: &str) -> bool {
    mentions(sql, b"session_track_")
}

/// Whether a SET's text names the optimizer trace or profiling.
fn mentions_tracing(sql: &str) -> bool {
    mentions(sql, b"optimizer_trace") || mentions(sql, b"profiling")
}

/// Whether a statement takes the characteristics a one-shot `SET
/// TRANSACTION` left for the next transaction: one that starts or ends a
/// transaction, or touches a table (a read of no table, such as `SELECT
/// @@server_id`, starts none and leaves them for the next one).
fn takes_next_transaction(
    info: &StatementInfo,
    sql: &str,
    backslashes: classify::Backslashes,
) -> bool {
    use StatementKind as K;
    match info.kind {
        K::SetSession
        | K::SetNames
        | K::SetTransaction
        | K::SetUserVar
        | K::SetGlobal
        | K::SetAutocommit(_)
        | K::Use
        | K::Kill => false,
        kind if kind.is_read() => !classify::tables(sql, backslashes).is_empty(),
        _ => true,
    }
}

fn mentions(sql: &str, needle: &[u8]) -> bool {
    sql.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// What `ROW_COUNT()` returns after a statement that ended so: the rows
/// its OK reports as affected, -1 after a result set or an error.
fn row_count(outcome: &Outcome) -> i64 {
    if outcome.error.is_some() || outcome.result_set {
        -1
    } else {
        i64::try_from(outcome.affected_rows).unwrap_or(i64::MAX)
    }
}

/// Whether the proxy follows what a statement of this kind changes in
/// the session (SETs, the database, temporary tables, SQL prepared
/// statements, locks, transactions): any other statement the server says
/// changed the session's state (a procedure that sets a variable or
/// creates a temporary table, a function that sets a variable) keeps its
/// connection with the session.
fn state_followed_by_kind(kind: StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::SetAutocommit(_)
            | StatementKind::SetTransaction
            | StatementKind::SetNames
            | StatementKind::SetSession
            | StatementKind::Use
            | StatementKind::CreateTemporaryTable
            | StatementKind::DropTemporaryTable
            | StatementKind::Prepare
            | StatementKind::Deallocate
            | StatementKind::LockTables
            | StatementKind::UnlockTables
            | StatementKind::Begin { .. }
            | StatementKind::Commit
            | StatementKind::Rollback
    )
}

/// Whether a statement of this kind (and these flags) changes the session
/// in a way [`Session::follow_statement`] follows: a SET of session
/// variables beside a global one too, which keeps reads on the primary.
fn changes_session(kind: StatementKind, flags: crate::classify::Flags) -> bool {
    kind == StatementKind::SetGlobal
        && flags.contains(crate::classify::Flags::SESSION_SET_BESIDE_GLOBAL)
        || matches!(
            kind,
            StatementKind::Begin { read_only: true }
                | StatementKind::SetSession
                | StatementKind::SetNames
                | StatementKind::SetTransaction
                | StatementKind::Use
                | StatementKind::LockTables
                | StatementKind::UnlockTables
                | StatementKind::Prepare
                | StatementKind::CreateTemporaryTable
                | StatementKind::DropTemporaryTable
        )
}

/// Whether, after a SET of session tracking, the client asked for its own
/// state change tracking (`session_track_state_change`).
fn wants_state_change(sql: &str, before: bool) -> bool {
    let lower = sql.to_ascii_lowercase();
    let Some(at) = lower.find("session_track_state_change") else {
        return before;
    };
    let value = lower[at + "session_track_state_change".len()..]
        .trim_start()
        .trim_start_matches([':', '='])
        .trim_start();
    !(value.starts_with("off") || value.starts_with('0') || value.starts_with("false"))
}

/// Whether, after a SET of session tracking, the client asked for GTIDs.
fn wants_gtids(sql: &str, before: bool) -> bool {
    let lower = sql.to_ascii_lowercase();
    if lower.contains("session_track_gtids") {
        return !lower.contains("off");
    }
    if lower.contains("session_track_system_variables") {
        return lower.contains("last_gtid") || lower.contains('*');
    }
    before
}

/// SET statements kept per session for replay.
const MAX_RECORDED_SETS: usize = 256;

/// The database named by `USE db` (backticks removed).
pub fn use_database(sql: &str) -> Option<String> {
    let rest = sql.trim_start();
    let (word, rest) = rest.split_at(rest.find(|c: char| c.is_whitespace())?);
    if !word.eq_ignore_ascii_case("USE") {
        return None;
    }
    let name = rest.trim().trim_end_matches(';').trim();
    let name = match name.strip_prefix('`') {
        Some(inner) => inner.strip_suffix('`')?.replace("``", "`"),
        None => name.to_string(),
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_statement_names_its_database() {
        assert_eq!(use_database("USE app").as_deref(), Some("app"));
        assert_eq!(use_database("  use `my db`;").as_deref(), Some("my db"));
        assert_eq!(use_database("USE `a``b`").as_deref(), Some("a`b"));
        assert_eq!(use_database("SELECT 1"), None);
    }

    #[test]
    fn a_client_turns_its_own_state_change_tracking_on_and_off() {
        assert!(mentions_session_tracking("SET SESSION_TRACK_state_change = 1"));
        assert!(!mentions_session_tracking("SET sql_mode = ''"));
        for on in
            ["SET session_track_state_change = ON", "set @@session.SESSION_TRACK_STATE_CHANGE=1"]
        {
            assert!(wants_state_change(on, false), "{on}");
        }
        for off in ["SET session_track_state_change = OFF", "SET session_track_state_change:=0"] {
            assert!(!wants_state_change(off, true), "{off}");
        }
        // Another tracking variable leaves it as it was.
        assert!(wants_state_change("SET session_track_gtids = OFF", true));
        assert!(!wants_state_change("SET session_track_gtids = OWN_GTID", false));
    }
}
