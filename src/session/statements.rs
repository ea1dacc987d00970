//! Prepared statements across backends: prepared on the primary when the
//! client asks (its reply is the client's), prepared again lazily on a
//! replica the first time an execution is routed there, each execution
//! routed by the statement's kind, parameter types carried to backends
//! that have not seen them, cursors fetched where they were opened.

use super::consistency::ReadNeed;
use super::prepared::{self, OnBackend, Stmt};
use super::routing::{STAND_IN, cannot_reach};
use super::{Next, Session, SessionError};
use crate::backend::BackendError;
use crate::classify::{StatementKind, classify_with_cache};
use crate::protocol::command as cmd;
use crate::protocol::messages::{build_err, parse_err};
use crate::protocol::packet::put_packet;
use crate::relay::{Expect, Machine, Outcome};
use crate::router::{Reason, Route, Target};
use tokio::io::AsyncWriteExt;

/// Packets the proxy reads whole from a backend outside the relay.
const CONTROL_LIMIT: usize = 1 << 24;

/// CURSOR_TYPE_READ_ONLY in COM_STMT_EXECUTE's flags.
const CURSOR_READ_ONLY: u8 = 0x01;

impl Session {
    /// COM_STMT_PREPARE: prepared on the primary; the client gets the
    /// proxy's statement id in place of the backend's.
    pub(super) async fn on_prepare(&mut self) -> Result<Next, SessionError> {
        // As on the server: until this prepare succeeds, no statement is
        // the last prepared.
        self.stmts.forget_last();
        // Each statement's text stays in the proxy (to prepare it again on
        // other backends): a session may hold only so many.
        let limit = self.view.config.limits.max_prepared_statements;
        if self.stmts.len() >= limit {
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {limit}) \
                 (rwsplit limits.max_prepared_statements, per session)"
            );
            return self.reply_err(1461, "42000", &msg).await;
        }
        // And only so many bytes of text (the statement's bytes, twice
        // when its text reads otherwise: see `Stmt::kept_bytes`).
        let cap = self.view.config.limits.max_statement_memory;
        let text = self.cmd.len() - 1;
        let incoming = if self.statement_as_written().is_some() { text } else { 2 * text };
        let kept = self.kept_statement_bytes();
        if kept + incoming > cap {
            let msg = format!(
                "Out of memory: this session's prepared statements and SET statements keep \
                 {kept} bytes of text, and this statement has {text} \
                 (rwsplit limits.max_statement_memory is {cap} bytes, per session)"
            );
            return self.reply_err(1041, "HY000", &msg).await;
        }
        if self.has_refusing_rules() {
            let mut sql = String::new();
            crate::classify::push_text(&self.cmd[1..], self.multibyte, &mut sql);
            if let Some(message) = self.refusing_rule(&sql) {
                return self.refuse_by_rule(&message).await;
            }
        }
        self.rewrite_connection_id_prepare();
        if let Some(text) = self.statement_as_written()
            && text.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"socket"))
        {
            let info = classify_with_cache(text, self.backslashes(), &self.shared.tier2);
            if info.flags.contains(crate::classify::Flags::PROXY_VARIABLE) {
                self.answer_proxy_variables(info.kind);
            }
        }
        let mut first = Vec::new();
        let (target, seq) = match self.prepare_somewhere(&mut first).await {
            Ok(prepared) => prepared,
            Err((idx, e)) => return self.reply_backend_error(idx, &e).await,
        };
        let caps = self.backends[target].as_ref().expect("backend open").caps;
        let mut left = 0;
        let mut pooled = None;
        if first.first() == Some(&0x00) && first.len() >= 12 {
            let backend_id = u32::from_le_bytes([first[1], first[2], first[3], first[4]]);
            let columns = u16::from_le_bytes([first[5], first[6]]);
            let params = u16::from_le_bytes([first[7], first[8]]);
            let mut sql = String::new();
            crate::classify::push_text(&self.cmd[1..], self.multibyte, &mut sql);
            let info = classify_with_cache(&sql, self.backslashes(), &self.shared.tier2);
            let text: std::sync::Arc<str> = sql.into();
            // The text is kept once when it is the statement's bytes.
            let sql = if text.as_bytes() == &self.cmd[1..] {
                std::sync::Arc::<[u8]>::from(text.clone())
            } else {
                self.cmd[1..].into()
            };
            let id = self.stmts.insert(Stmt {
                sql,
                text,
                database: self.login.database.as_deref().map(std::sync::Arc::from),
                info,
                params,
                columns,
                on: vec![OnBackend { backend: target, id: backend_id, types_sent: false }],
                types: None,
                cursor_backend: None,
                long_data: false,
            });
            first[1..5].copy_from_slice(&id.to_le_bytes());
            left = Machine::prepare_packets(params, columns, caps);
            pooled = Some(backend_id);
        }
        let mut out = Vec::with_capacity(first.len() + 4);
        put_packet(&mut out, seq, &first);
        self.client.write_all(&out).await?;
        if left > 0 {
            self.relay_from(target, Expect::Prepare { left }).await?;
        } else {
            self.client.flush().await?;
        }
        // A shared connection's cache owns the statement from now on.
        if let Some(backend_id) = pooled
            && let Some(conn) = self.backends.get_mut(target).and_then(Option::as_mut)
            && conn.prepared.is_some()
        {
            match conn.remember_prepared(&self.cmd[1..], backend_id).await {
                Ok(closed) => {
                    for old in closed {
                        self.stmts.forget_backend_id(target, old);
                    }
                }
                Err(_) => self.drop_backend(target),
            }
        }
        Ok(Next::Continue)
    }

    /// Sends the COM_STMT_PREPARE in `self.cmd` to the primary and reads
    /// the first packet of its reply into `first`: (backend, sequence id).
    /// A replica prepares it instead while the primary cannot be reached
    /// (the statement is prepared again where it runs, the primary
    /// included, as for any other statement); a connection that breaks
    /// before replying is replaced, twice at most (pooled connections the
    /// server ended together, by a KILL sweep or its `wait_timeout`, may be
    /// handed out one after the other). The inner error, for the client:
    /// no backend could be had, or the last one broke too.
    async fn prepare_somewhere(
        &mut self,
        first: &mut Vec<u8>,
    ) -> Result<(usize, u8), (usize, BackendError)> {
        let mut route = self.session_state_route();
        let mut broke = 0;
        loop {
            let target = match self.acquire(route).await {
                Ok(idx) => idx,
                Err((idx, e)) if route.target == Target::Primary && cannot_reach(&e) => {
                    route = STAND_IN;
                    crate::telemetry::warn_throttled!(id = self.id, backend = idx, error = %e, "the primary cannot be reached: a replica prepares the statement");
                    continue;
                }
                Err(failed) => return Err(failed),
            };
            // Bounded by the monitor, as a statement is (see `catch_up`):
            // a server that stops answering counts as a broken connection.
            let (shared, handle) = (self.shared.clone(), self.handle.clone());
            let gone = shared.outages.watch(target, &handle.signal);
            let cmd = &self.cmd;
            let conn = self.backends[target].as_mut().expect("backend open");
            first.clear();
            // A replica standing in for the primary prepares a write too
            // (it runs on the primary once that is back); its read-only
            // transactions would refuse it (ERROR 1792). Its next statement
            // makes them read-only again (`catch_up`).
            let read_write = target != self.view.primary && conn.transactions_read_only;
            let exchange = async {
                if read_write {
                    conn.set_transactions_read_only(false).await?;
                }
                conn.write_payload(0, cmd).await.map_err(|e| BackendError::Frame(e.into()))?;
                conn.reader
                    .read_packet(&mut conn.stream, first, CONTROL_LIMIT)
                    .await
                    .map_err(BackendError::Frame)
            };
            let read = tokio::select! {
                biased;
                r = exchange => r,
                () = gone => Err(super::backend_gone()),
            };
            match read {
                Ok((_, seq)) => return Ok((target, seq)),
                Err(e) => {
                    self.drop_backend(target);
                    broke += 1;
                    if broke == 3 {
                        return Err((target, e));
                    }
                    route = self.session_state_route();
                }
            }
        }
    }

    /// `SELECT CONNECTION_ID()` prepared is prepared as the session's id
    /// under the same column name, so that what it returns is what KILL
    /// takes (as the same statement sent as text).
    fn rewrite_connection_id_prepare(&mut self) {
        if self.cmd.len() >= 96 {
            return;
        }
        let Some(column) = std::str::from_utf8(&self.cmd[1..])
            .ok()
            .and_then(super::kill::parse_select_connection_id)
        else {
            return;
        };
        let sql = format!("SELECT {} AS `{}`", self.id, column.replace('`', "``"));
        self.cmd.truncate(1);
        self.cmd.extend_from_slice(sql.as_bytes());
    }

    /// Writes what the proxy answers itself (`@@socket`) into the text of
    /// the command, a SELECT, before a server sees it.
    pub(super) fn answer_proxy_variables(&mut self, kind: StatementKind) {
        if kind != StatementKind::Select {
            return;
        }
        let backslashes = self.backslashes();
        let answered = self
            .statement_as_written()
            .and_then(|sql| crate::classify::answer_proxy_variables(sql, backslashes));
        if let Some(text) = answered {
            self.cmd.truncate(1);
            self.cmd.extend_from_slice(text.as_bytes());
        }
    }

    /// The statement of the current command (COM_QUERY, COM_STMT_PREPARE)
    /// as a text the proxy may rewrite: its bytes, when they read as the
    /// classifier reads them (UTF-8; in a multibyte character set such as
    /// gbk, ASCII only, since a character's second byte may look like a
    /// quote or a backslash).
    pub(super) fn statement_as_written(&self) -> Option<&str> {
        let text = std::str::from_utf8(self.cmd.get(1..)?).ok()?;
        (self.multibyte.is_none() || text.is_ascii()).then_some(text)
    }

    /// The client's statement id in the current command, resolved.
    fn stmt_id(&self) -> Option<u32> {
        let raw = u32::from_le_bytes(self.cmd.get(1..5)?.try_into().ok()?);
        self.stmts.resolve(raw)
    }

    /// Whether the command executes "the statement prepared last" (the id
    /// a client sends right behind its prepare) without the parameter
    /// types, which the server refuses as malformed: it cannot have any.
    fn last_prepared_untyped(&self, params: u16) -> bool {
        self.cmd.get(1..5) == Some(&prepared::LAST_PREPARED.to_le_bytes()[..])
            && params > 0
            && prepared::execute_types(&self.cmd, params).is_none()
    }

    /// An execute (or batch) is kept as the client sent it while a copy is
    /// rewritten for its backend: a large one holds twice its size, and
    /// `limits.max_command_memory` must admit the copy as it admitted the
    /// command. False: refused with ERROR 1041 (nothing ran; the session
    /// goes on).
    async fn admit_execute_copy(&mut self) -> Result<bool, SessionError> {
        let (len, cap) = (self.cmd.len(), self.view.config.limits.max_command_memory);
        if self.cmd_memory.admit(2 * len, cap) {
            return Ok(true);
        }
        metrics::counter!(crate::telemetry::COMMANDS_REFUSED).increment(1);
        let msg = format!(
            "Out of memory: an execute of {len} bytes is held twice while it runs (as sent and \
             as sent on), which does not fit in rwsplit's limits.max_command_memory ({cap} \
             bytes), held by other clients' large commands; try again later"
        );
        self.reply_err(1041, "HY000", &msg).await?;
        Ok(false)
    }

    async fn malformed(&mut self) -> Result<Next, SessionError> {
        self.reply_err(1835, "HY000", "Malformed communication packet").await
    }

    async fn unknown_stmt(&mut self, name: &str) -> Result<Next, SessionError> {
        let raw =
            self.cmd.get(1..5).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
        let msg = format!("Unknown prepared statement handler ({raw}) given to {name}");
        self.reply_err(1243, "HY000", &msg).await
    }

    /// Makes sure statement `id` is prepared on backend `idx` (opening and
    /// catching up the connection first) and returns the backend's id.
    async fn prepared_on(
        &mut self,
        id: u32,
        idx: usize,
    ) -> Result<u32, crate::backend::BackendError> {
        if let Some(b) = self.stmts.get(id).and_then(|s| s.backend_id(idx)) {
            return Ok(b);
        }
        // Bounded by the monitor, as a statement is (see `catch_up`).
        let (shared, handle) = (self.shared.clone(), self.handle.clone());
        let gone = shared.outages.watch(idx, &handle.signal);
        let done = tokio::select! {
            biased;
            r = self.prepare_on(id, idx) => Some(r),
            () = gone => None,
        };
        done.unwrap_or_else(|| {
            self.drop_backend(idx);
            Err(super::backend_gone())
        })
    }

    /// Prepares statement `id` on backend `idx` (see `prepared_on`).
    async fn prepare_on(
        &mut self,
        id: u32,
        idx: usize,
    ) -> Result<u32, crate::backend::BackendError> {
        let Some(stmt) = self.stmts.get(id) else {
            return Err(crate::backend::BackendError::Protocol(format!("no statement {id}")));
        };
        let (sql, database) = (stmt.sql.clone(), stmt.database.clone());
        let conn = self.backend(idx).await?;
        // Prepared where it was first prepared, even after a USE: the
        // session's database comes back before its next statement
        // (`catch_up`).
        if let Some(db) = &database {
            conn.select_database(db).await?;
        }
        let (backend_id, closed) = conn.prepare_cached(&sql).await?;
        for old in closed {
            self.stmts.forget_backend_id(idx, old);
        }
        self.stmts.map_backend(id, OnBackend { backend: idx, id: backend_id, types_sent: false });
        Ok(backend_id)
    }

    /// COM_STMT_EXECUTE: routed by the statement's kind.
    pub(super) async fn on_execute(&mut self) -> Result<Next, SessionError> {
        let started = std::time::Instant::now();
        let Some(id) = self.stmt_id() else {
            return self.unknown_stmt("mysqld_stmt_execute").await;
        };
        let stmt = self.stmts.get(id).expect("resolved");
        let (info, params, long_data) = (stmt.info, stmt.params, stmt.long_data);
        let sql = stmt.text.clone();
        if self.last_prepared_untyped(params) {
            return self.malformed().await;
        }
        if !self.admit_execute_copy().await? {
            return Ok(Next::Continue);
        }
        self.exec_long_data = long_data;
        self.routing.reads_insert_id =
            info.flags.contains(crate::classify::Flags::READS_LAST_INSERT_ID);
        self.routing.statement_writes = crate::router::is_write(&info);
        // A rule added since the prepare refuses its executions too.
        if let Some(message) = self.refusing_rule(&sql) {
            return self.refuse_by_rule(&message).await;
        }
        if self.answer_lost_transaction(info.kind).await? {
            return Ok(Next::Continue);
        }
        if let Some(types) = prepared::execute_types(&self.cmd, params) {
            let types = types.to_vec();
            self.stmts.get_mut(id).expect("resolved").types = Some(types);
        }
        if info.kind == StatementKind::SetUserVar {
            let types = self.stmts.get(id).and_then(|s| s.types.as_deref());
            let parsed = super::consistency::parse_prepared_session_mode(&sql, &self.cmd, types);
            if self.answer_consistency_set(parsed).await? {
                return Ok(Next::Continue);
            }
        }
        self.end_read_only_transaction_for(&info).await;
        let need = if long_data { ReadNeed::Primary } else { self.need_for(&info, started) };
        let route = if long_data {
            Route { target: Target::Primary, reason: Reason::SessionState }
        } else {
            self.route_statement(&info, &sql, &need).0
        };
        if self.refuse(route).await? {
            return Ok(Next::Continue);
        }
        // The client's execute, kept while `cmd` is rewritten per backend
        // (in a buffer reused from one execute to the next).
        let mut original = std::mem::take(&mut self.exec_original);
        original.clear();
        original.extend_from_slice(&self.cmd);
        let need = self.forget_applied_write(route, need);
        let causal = route.target == Target::AnyReplica
            && matches!(need, ReadNeed::Gtid(_) | ReadNeed::PrimaryPosition);
        let ran = if causal {
            match self.causal_execute(id, need, route, &original).await {
                // The replica failed before replying: the primary, which
                // holds every write, answers instead.
                Err(SessionError::BackendBeforeReply(failed)) if failed != self.primary() => {
                    self.execute_retry(id, failed, None, &original).await
                }
                // The primary's connection broke before replying: once more
                // (see `may_read_again_on_primary`).
                Err(SessionError::BackendBeforeReply(failed))
                    if self.may_read_again_on_primary(Reason::Consistency, failed) =>
                {
                    let route = Route { target: Target::Primary, reason: Reason::Consistency };
                    self.execute_again(id, route, &original).await
                }
                other => other,
            }
        } else {
            match self.acquire(route).await {
                Ok(idx) => match self.execute_on(id, idx, &original).await {
                    // A read whose replica failed before replying runs again
                    // on another replica (prepared there first), or the
                    // primary: the client never knows.
                    Err(SessionError::BackendBeforeReply(failed))
                        if route.target == Target::AnyReplica =>
                    {
                        self.execute_retry(id, failed, Some(route), &original).await
                    }
                    Err(SessionError::BackendBeforeReply(failed))
                        if self.may_read_again_on_primary(route.reason, failed) =>
                    {
                        self.execute_again(id, route, &original).await
                    }
                    other => other,
                },
                Err((idx, e)) => {
                    self.exec_original = original;
                    return self.reply_backend_error(idx, &e).await;
                }
            }
        };
        self.exec_original = original;
        let ran = ran?;
        self.in_flight = None;
        if let Some((idx, outcome)) = ran {
            self.record_statement(&info, &sql, idx, &outcome, started);
            self.after_statement(&info, &sql, idx, &outcome);
        }
        Ok(Next::Continue)
    }

    /// COM_STMT_BULK_EXECUTE (MariaDB): a prepared statement run once for
    /// each row of parameters the command carries (a connector's batch),
    /// on the primary, as the write it is. Answered as the server answers
    /// what it refuses before running anything.
    pub(super) async fn on_bulk_execute(&mut self) -> Result<Next, SessionError> {
        use crate::protocol::handshake::mariadb_caps::STMT_BULK_OPERATIONS;
        let started = std::time::Instant::now();
        // The command, statement id and flags.
        if self.cmd.len() < 7 {
            return self.malformed().await;
        }
        if self.login.mariadb_caps & STMT_BULK_OPERATIONS == 0 {
            let msg = "This command is not supported in the prepared statement protocol yet";
            return self.reply_err(1295, "HY000", msg).await;
        }
        let Some(id) = self.stmt_id() else {
            // The server names the execute here too.
            return self.unknown_stmt("mysqld_stmt_execute").await;
        };
        let stmt = self.stmts.get(id).expect("resolved");
        let (info, params, sql) = (stmt.info, stmt.params, stmt.text.clone());
        if self.last_prepared_untyped(params) {
            return self.malformed().await;
        }
        if !self.admit_execute_copy().await? {
            return Ok(Next::Continue);
        }
        let stmt = self.stmts.get_mut(id).expect("resolved");
        // Types sent here are the statement's from now on, as on the server.
        if let Some(types) = prepared::execute_types(&self.cmd, params) {
            stmt.types = Some(types.to_vec());
        }
        self.routing.statement_writes = true;
        self.routing.reads_insert_id =
            info.flags.contains(crate::classify::Flags::READS_LAST_INSERT_ID);
        if let Some(message) = self.refusing_rule(&sql) {
            return self.refuse_by_rule(&message).await;
        }
        if self.answer_lost_transaction(info.kind).await? {
            return Ok(Next::Continue);
        }
        self.end_read_only_transaction_for(&info).await;
        let route = self.route_statement(&info, &sql, &ReadNeed::Primary).0;
        if self.refuse(route).await? {
            return Ok(Next::Continue);
        }
        // Whatever the statement, a batch of it runs on the primary (in
        // the session's transaction there, if one is open).
        let route = match route.target {
            Target::Primary => route,
            _ => Route { target: Target::Primary, reason: Reason::Write },
        };
        let idx = match self.acquire(route).await {
            Ok(idx) => idx,
            Err((idx, e)) => return self.reply_backend_error(idx, &e).await,
        };
        let mut original = std::mem::take(&mut self.exec_original);
        original.clear();
        original.extend_from_slice(&self.cmd);
        let ran = self.execute_on(id, idx, &original).await;
        self.exec_original = original;
        if let Some((idx, outcome)) = ran? {
            self.record_statement(&info, &sql, idx, &outcome, started);
            self.after_statement(&info, &sql, idx, &outcome);
        }
        Ok(Next::Continue)
    }

    /// The execute that just ran (a SET), as it can run again on another
    /// connection: the statement's text and the client's execute, given
    /// the parameter types the server used if the client left them out.
    /// None when parameters came as long data, outside the execute.
    pub(super) fn replayable_execute(&self) -> Option<super::routing::RecordedSet> {
        let packet = &self.exec_original;
        if self.exec_long_data || packet.len() < 10 {
            return None;
        }
        let raw = u32::from_le_bytes(packet[1..5].try_into().ok()?);
        let stmt = self.stmts.get(self.stmts.resolve(raw)?)?;
        let mut execute = packet.clone();
        if stmt.params > 0 && prepared::execute_types(&execute, stmt.params).is_none() {
            let types = stmt.types.as_deref()?;
            if !prepared::inject_types(&mut execute, stmt.params, types) {
                return None;
            }
        }
        // No cursor where it runs again: nobody fetches from it.
        execute[5] = 0;
        Some(super::routing::RecordedSet::Execute { sql: stmt.sql.clone(), execute })
    }

    /// Runs the execute once more where `route` says, after the
    /// connection it ran on broke before replying (the statement is
    /// prepared again on the connection it gets).
    async fn execute_again(
        &mut self,
        id: u32,
        route: Route,
        original: &[u8],
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        match self.acquire(route).await {
            Ok(idx) => self.execute_on(id, idx, original).await,
            Err((idx, e)) => self.reply_backend_error(idx, &e).await.map(|_| None),
        }
    }

    /// Runs the execute again after backend `failed` broke before replying
    /// (see `backend_for_retry`), preparing the statement where it lands.
    async fn execute_retry(
        &mut self,
        id: u32,
        failed: usize,
        route: Option<Route>,
        original: &[u8],
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        match self.backend_for_retry(failed, route).await {
            Ok(retry) => self.execute_on(id, retry, original).await,
            Err((idx, e)) => self.reply_backend_error(idx, &e).await.map(|_| None),
        }
    }

    /// A prepared read that must see a GTID: on a replica known to hold
    /// it, else after waiting there (the wait pipelined with the execute),
    /// else on the primary.
    async fn causal_execute(
        &mut self,
        id: u32,
        need: ReadNeed,
        route: Route,
        original: &[u8],
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        let primary = self.primary();
        let Ok(target) = self.causal_target(need).await else {
            return self.execute_on(id, primary, original).await;
        };
        let Some(target) = target else {
            // Nothing to wait for (nothing written yet): an ordinary read.
            let idx = match self.acquire(route).await {
                Ok(idx) => idx,
                Err((idx, e)) => {
                    self.reply_backend_error(idx, &e).await?;
                    return Ok(None);
                }
            };
            return self.execute_on(id, idx, original).await;
        };
        let Some((idx, holds, guard)) = self.replica_for_gtid(&target) else {
            return self.execute_on(id, primary, original).await;
        };
        self.in_flight = Some(guard);
        if holds {
            return self.execute_on(id, idx, original).await;
        }
        let prepared = match self.catch_up(idx).await {
            Ok(()) => self.map_execute(id, idx, original).await.ok(),
            Err(e) => {
                self.avoid_replica_for(idx, &e);
                None
            }
        };
        if let Some(backend_id) = prepared {
            let hold = self.holds_replica_errors(idx);
            if let Some(mut outcome) =
                self.waited_forward(idx, &target, Expect::Result, hold).await?
            {
                if outcome.withheld {
                    outcome =
                        self.settle_stmt_error(id, idx, backend_id, outcome.error, true).await?;
                    if outcome.withheld {
                        self.in_flight = None;
                        return self.execute_on(id, primary, original).await;
                    }
                }
                self.after_execute(id, idx);
                return Ok(Some((idx, outcome)));
            }
            self.shared.telemetry.gtid_fallbacks.increment(1);
        }
        self.in_flight = None;
        self.execute_on(id, primary, original).await
    }

    /// Prepares the statement on `idx` if needed and rewrites `self.cmd`
    /// (from `original`) for that backend: its statement id, and the
    /// parameter types if it has not seen them.
    async fn map_execute(
        &mut self,
        id: u32,
        idx: usize,
        original: &[u8],
    ) -> Result<u32, crate::backend::BackendError> {
        let backend_id = self.prepared_on(id, idx).await?;
        self.cmd.clear();
        self.cmd.extend_from_slice(original);
        self.cmd[1..5].copy_from_slice(&backend_id.to_le_bytes());
        let stmt = self.stmts.get_mut(id).expect("resolved");
        let params = stmt.params;
        let sends_types = prepared::execute_types(&self.cmd, params).is_some();
        let on = stmt.on_backend(idx).expect("prepared there");
        if sends_types {
            on.types_sent = true;
        } else if !on.types_sent
            && let Some(types) = &stmt.types
        {
            let injected = prepared::inject_types(&mut self.cmd, params, types);
            stmt.on_backend(idx).expect("prepared there").types_sent = injected;
        }
        Ok(backend_id)
    }

    /// Runs the execute in `original` on backend `idx` (the primary when
    /// the statement cannot be prepared on a replica).
    async fn execute_on(
        &mut self,
        id: u32,
        mut idx: usize,
        original: &[u8],
    ) -> Result<Option<(usize, Outcome)>, SessionError> {
        // On the primary, nothing of the session lives only on the
        // connection (see `binding`): a new one may take over if it breaks.
        let replaceable = idx == self.primary() && self.binding(idx).is_none();
        let backend_id = match self.map_execute(id, idx, original).await {
            Ok(b) => b,
            Err(e) => {
                if idx != self.primary() {
                    crate::telemetry::warn_throttled!(id = self.id, backend = idx, error = %e, "cannot prepare on replica, using the primary");
                    self.in_flight = None;
                    idx = self.primary();
                } else if replaceable
                    && matches!(e, crate::backend::BackendError::Frame(_))
                    && !self.primary_unreachable()
                {
                    // The connection broke while the statement was being
                    // prepared on it (the server closed it an instant
                    // before): the execute was not sent, and a prepare runs
                    // nothing, so both go to a new connection.
                    self.drop_backend(idx);
                } else {
                    self.reply_backend_error(idx, &e).await?;
                    return Ok(None);
                }
                match self.map_execute(id, idx, original).await {
                    Ok(b) => b,
                    Err(e) => {
                        self.reply_backend_error(idx, &e).await?;
                        return Ok(None);
                    }
                }
            }
        };
        // A replica that refuses the read as a write (a view or function
        // that writes) ran nothing there: the primary runs it.
        let refused_elsewhere = self.holds_replica_errors(idx);
        let mut outcome =
            self.forward_stmt(id, idx, backend_id, Expect::Result, refused_elsewhere).await?;
        if outcome.as_ref().is_some_and(|o| o.withheld) {
            self.in_flight = None;
            idx = self.primary();
            outcome = match self.map_execute(id, idx, original).await {
                Ok(b) => self.forward_stmt(id, idx, b, Expect::Result, false).await?,
                Err(e) => {
                    self.reply_backend_error(idx, &e).await?;
                    return Ok(None);
                }
            };
        }
        self.after_execute(id, idx);
        Ok(outcome.map(|o| (idx, o)))
    }

    /// The command is an execute that asks for a cursor: its reply may
    /// end after the column definitions, rows to be fetched.
    pub(super) fn asks_for_cursor(&self) -> bool {
        self.cmd.first() == Some(&cmd::STMT_EXECUTE)
            && self.cmd.get(5).is_some_and(|f| f & CURSOR_READ_ONLY != 0)
    }

    /// Bookkeeping after an execute ran on `idx`.
    fn after_execute(&mut self, id: u32, idx: usize) {
        let cursor = self.asks_for_cursor();
        if let Some(stmt) = self.stmts.get_mut(id) {
            stmt.long_data = false;
        }
        if cursor {
            self.stmts.opened_cursor(id, idx);
        }
    }

    /// COM_STMT_FETCH: on the backend holding the cursor.
    pub(super) async fn on_fetch(&mut self) -> Result<Next, SessionError> {
        let Some(id) = self.stmt_id() else {
            return self.unknown_stmt("mysqld_stmt_fetch").await;
        };
        let idx = self.stmts.get(id).and_then(|s| s.cursor_backend).unwrap_or(self.primary());
        let Some(backend_id) = self.stmts.get(id).and_then(|s| s.backend_id(idx)) else {
            return self.unknown_stmt("mysqld_stmt_fetch").await;
        };
        self.cmd[1..5].copy_from_slice(&backend_id.to_le_bytes());
        self.forward_stmt(id, idx, backend_id, Expect::Rows, false).await?;
        Ok(Next::Continue)
    }

    /// COM_STMT_RESET: resets long data and cursors; answered by the
    /// backend holding the cursor (or the primary), others reset quietly.
    pub(super) async fn on_stmt_reset(&mut self) -> Result<Next, SessionError> {
        let Some(id) = self.stmt_id() else {
            return self.unknown_stmt("mysqld_stmt_reset").await;
        };
        let primary = self.primary();
        let stmt = self.stmts.get_mut(id).expect("resolved");
        let main = stmt.cursor_backend.unwrap_or(primary);
        stmt.long_data = false;
        stmt.cursor_backend = None;
        let others: Vec<OnBackend> =
            stmt.on.iter().copied().filter(|o| o.backend != main).collect();
        for o in others {
            let mut payload = vec![cmd::STMT_RESET];
            payload.extend_from_slice(&o.id.to_le_bytes());
            if let Some(conn) = self.backends.get_mut(o.backend).and_then(Option::as_mut)
                && conn.run_own(&payload).await.is_err()
            {
                self.drop_backend(o.backend);
            }
        }
        // A shared connection given back since has its own id for it.
        let backend_id = match self.prepared_on(id, main).await {
            Ok(b) => b,
            Err(e) => return self.reply_backend_error(main, &e).await,
        };
        self.cmd[1..5].copy_from_slice(&backend_id.to_le_bytes());
        self.forward_stmt(id, main, backend_id, Expect::Result, false).await?;
        Ok(Next::Continue)
    }

    /// COM_STMT_SEND_LONG_DATA: to the primary, where the next execute
    /// will then run; no reply (errors surface at execute).
    pub(super) async fn on_long_data(&mut self) -> Result<Next, SessionError> {
        let Some(id) = self.stmt_id() else {
            return Ok(Next::Continue);
        };
        let primary = self.primary();
        let Ok(backend_id) = self.prepared_on(id, primary).await else {
            return Ok(Next::Continue);
        };
        self.stmts.sent_long_data(id);
        self.cmd[1..5].copy_from_slice(&backend_id.to_le_bytes());
        if let Some(conn) = self.backends.get_mut(primary).and_then(Option::as_mut)
            && conn.write_payload(0, &self.cmd).await.is_err()
        {
            self.drop_backend(primary);
        }
        Ok(Next::Continue)
    }

    /// COM_STMT_CLOSE: closed on every backend that prepared it; no reply.
    pub(super) async fn on_stmt_close(&mut self) -> Result<Next, SessionError> {
        let Some(stmt) = self.stmt_id().and_then(|id| self.stmts.remove(id)) else {
            return Ok(Next::Continue);
        };
        for o in stmt.on {
            let mut payload = vec![cmd::STMT_CLOSE];
            payload.extend_from_slice(&o.id.to_le_bytes());
            // On a shared connection the statement stays in its cache.
            if let Some(conn) = self.backends.get_mut(o.backend).and_then(Option::as_mut)
                && conn.prepared.is_none()
                && conn.write_payload(0, &payload).await.is_err()
            {
                self.drop_backend(o.backend);
            }
        }
        Ok(Next::Continue)
    }

    /// Sends a statement command (id already rewritten) and relays its
    /// reply; an error naming the backend's statement id ("The statement
    /// (7) has no open cursor") is reworded with the id the client knows.
    async fn forward_stmt(
        &mut self,
        client_id: u32,
        backend: usize,
        backend_id: u32,
        expect: Expect,
        refused_elsewhere: bool,
    ) -> Result<Option<Outcome>, SessionError> {
        if let Err(e) = self.backend(backend).await {
            self.reply_backend_error(backend, &e).await?;
            return Ok(None);
        }
        let conn = self.backends[backend].as_mut().expect("backend open");
        if let Err(e) = conn.write_payload(0, &self.cmd).await {
            // Nothing reached the client: the caller may run it elsewhere.
            crate::telemetry::warn_throttled!(id = self.id, backend, error = %e, "cannot send to backend");
            self.drop_backend(backend);
            return Err(self.broke_before_reply(backend, &e));
        }
        // The reply is relayed as any other (bounded by max_query_time and
        // by the monitor); an error alone is held, to name the client's
        // statement id.
        let outcome = match self.relay_holding(backend, expect, true).await? {
            Some(o) if o.withheld => o,
            other => return Ok(other),
        };
        let outcome = self
            .settle_stmt_error(client_id, backend, backend_id, outcome.error, refused_elsewhere)
            .await?;
        Ok(Some(outcome))
    }

    /// A statement command's reply that was only a server error, held back
    /// on `backend` (see `relay_holding`): passed on, naming the client's
    /// statement id (`backend_id` on the server); unless `elsewhere` and the
    /// replica refused the read as a write, which ran nothing there: then
    /// it is dropped, and the outcome says `withheld` for the caller to run
    /// the execute on the primary.
    async fn settle_stmt_error(
        &mut self,
        client_id: u32,
        backend: usize,
        backend_id: u32,
        error: Option<u16>,
        elsewhere: bool,
    ) -> Result<Outcome, SessionError> {
        let err = self.take_held_error(backend).await?;
        if elsewhere && super::routing::refused_as_write(error) {
            return Ok(Outcome { withheld: true, error, ..Outcome::default() });
        }
        self.write_reply(&reword_stmt_id(&err, backend_id, client_id)).await?;
        Ok(Outcome { error, status: self.status, ..Outcome::default() })
    }
}

/// Replaces "(<backend id>)" by "(<client id>)" in an ERR packet's message.
fn reword_stmt_id(err: &[u8], backend_id: u32, client_id: u32) -> Vec<u8> {
    let Some(e) = parse_err(err) else {
        return err.to_vec();
    };
    let message = String::from_utf8_lossy(e.message);
    let from = format!("({backend_id})");
    if backend_id == client_id || !message.contains(&from) {
        return err.to_vec();
    }
    let message = message.replacen(&from, &format!("({client_id})"), 1);
    build_err(e.code, &String::from_utf8_lossy(e.state), &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_the_clients_statement_id() {
        let err = build_err(1421, "HY000", "The statement (17) has no open cursor");
        let r = reword_stmt_id(&err, 17, 2);
        assert_eq!(parse_err(&r).unwrap().message, b"The statement (2) has no open cursor");
        assert_eq!(reword_stmt_id(&err, 5, 2), err);
    }
}
