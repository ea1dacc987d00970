//! One handler per client command. Each reads `self.cmd` (the command
//! packet's payload), runs it, and leaves the client with exactly the reply
//! the server would have sent.

use super::login::{Exchange, LoginError};
use super::{Next, Session, SessionError};
use crate::classify::Multibyte;
use crate::protocol::auth;
use crate::protocol::command as cmd;
use crate::protocol::handshake::ChangeUser;
use crate::protocol::messages::build_err;
use crate::protocol::packet::write_packet;
use crate::relay::Expect;

impl Session {
    /// Runs the command in `self.cmd`.
    pub(super) async fn dispatch(&mut self) -> Result<Next, SessionError> {
        self.routing.statement_writes = false;
        self.routing.reads_row_count = false;
        match self.cmd[0] {
            cmd::QUIT => Ok(Next::Quit),
            cmd::QUERY => self.on_query().await,
            cmd::INIT_DB => self.on_init_db().await,
            cmd::PING => self.on_ping().await,
            cmd::FIELD_LIST => self.simple(Expect::FieldList).await,
            cmd::STATISTICS => self.simple(Expect::Single).await,
            // FLUSH and the debug dump: the primary's, answered OK or ERR.
            // The old processlist command (the C API's mysql_list_processes):
            // the primary's, a result set.
            cmd::REFRESH | cmd::DEBUG => self.simple(Expect::Result).await,
            cmd::PROCESS_INFO => {
                self.reads_processlist = true;
                let ran = self.simple(Expect::Result).await;
                self.reads_processlist = false;
                ran
            }
            cmd::PROCESS_KILL => self.on_process_kill().await,
            cmd::CHANGE_USER => self.on_change_user().await,
            cmd::RESET_CONNECTION => self.on_reset_connection().await,
            cmd::SET_OPTION => self.on_set_option().await,
            cmd::STMT_PREPARE => self.on_prepare().await,
            cmd::STMT_EXECUTE => self.on_execute().await,
            cmd::STMT_FETCH => self.on_fetch().await,
            cmd::STMT_RESET => self.on_stmt_reset().await,
            cmd::STMT_SEND_LONG_DATA => self.on_long_data().await,
            cmd::STMT_CLOSE => self.on_stmt_close().await,
            cmd::STMT_BULK_EXECUTE => self.on_bulk_execute().await,
            _ => self.reply_err(1047, "08S01", "Unknown command").await,
        }
    }

    /// Forwards the command to the routed backend and relays its reply.
    async fn simple(&mut self, expect: Expect) -> Result<Next, SessionError> {
        let target = self.primary();
        self.forward(target, expect).await?;
        Ok(Next::Continue)
    }

    async fn on_query(&mut self) -> Result<Next, SessionError> {
        // The statement text, in a buffer the session reuses: no allocation
        // per statement once it has grown.
        let mut sql = std::mem::take(&mut self.sql);
        sql.clear();
        crate::classify::push_text(&self.cmd[1..], self.multibyte, &mut sql);
        let result = self.run_query(&sql).await;
        if sql.capacity() <= 64 << 10 {
            // Keep small buffers; give a huge statement's memory back.
            self.sql = sql;
        }
        result
    }

    pub(super) async fn run_query(&mut self, sql: &str) -> Result<Next, SessionError> {
        use crate::classify::StatementKind;
        if let Some(message) = self.refusing_rule(sql) {
            return self.refuse_by_rule(&message).await;
        }
        let info =
            crate::classify::classify_with_cache(sql, self.backslashes(), &self.shared.tier2);
        if self.answer_lost_transaction(info.kind).await? {
            return Ok(Next::Continue);
        }
        match info.kind {
            StatementKind::Kill => {
                let kill = match super::kill::parse_kill(sql.as_bytes()) {
                    Some(kill) => Some(kill),
                    None => match super::kill::parse_kill_expression(sql.as_bytes()) {
                        Some((query_only, expression)) => self
                            .kill_expression_value(expression)
                            .await
                            .map(|id| super::kill::Kill { query_only, id }),
                        None => None,
                    },
                };
                // Another id is a server thread's (from
                // information_schema.PROCESSLIST): the primary kills it.
                if let Some(kill) = kill.filter(|kill| self.is_proxy_connection_id(kill.id)) {
                    return self.on_kill(kill).await;
                }
            }
            StatementKind::SetUserVar if self.intercept_consistency_set(sql).await? => {
                return Ok(Next::Continue);
            }
            StatementKind::Select if sql.len() < 96 => {
                if let Some(column) = super::kill::parse_select_connection_id(sql) {
                    return self.answer_connection_id(column).await;
                }
            }
            StatementKind::Show if sql.len() < 64 => {
                let asked = super::answer::parse_show_connection_status(sql, self.backslashes());
                if let Some(asked) = asked {
                    return self.answer_connection_status(asked).await;
                }
            }
            _ => {}
        }
        // SHOW EXPLAIN FOR n (Show), EXPLAIN FOR CONNECTION n (Other).
        if matches!(info.kind, StatementKind::Show | StatementKind::Other)
            && let Some((head, id)) = super::kill::parse_explain_for(sql)
        {
            return self.explain_connection(head, id).await;
        }
        if info.flags.contains(crate::classify::Flags::PROXY_VARIABLE) {
            self.answer_proxy_variables(info.kind);
        }
        self.reads_processlist = info.kind == StatementKind::Show
            && info.flags.contains(crate::classify::Flags::PRIMARY_STATE)
            && crate::classify::is_show_processlist(sql, self.backslashes());
        let ran = self.run_routed(info, sql).await;
        self.reads_processlist = false;
        ran?;
        Ok(Next::Continue)
    }

    /// COM_INIT_DB: on the primary, or a replica while the primary cannot
    /// be reached (as `USE`).
    async fn on_init_db(&mut self) -> Result<Next, SessionError> {
        let route = self.session_state_route();
        let ran = self.plain_forward(route, Expect::Result, true).await?;
        if let Some((idx, outcome)) = ran
            && outcome.error.is_none()
        {
            self.in_database(idx, self.cmd[1..].to_vec());
        }
        Ok(Next::Continue)
    }

    /// Answered by the proxy itself: it is alive, and an idle client needs
    /// no backend connection for that.
    async fn on_ping(&mut self) -> Result<Next, SessionError> {
        let ok = self.own_ok();
        self.write_reply(&ok).await?;
        Ok(Next::Continue)
    }

    /// COM_SET_OPTION changes multi-statement support: applied to every
    /// open backend connection and remembered for those opened later.
    async fn on_set_option(&mut self) -> Result<Next, SessionError> {
        let off = match self.cmd.get(1..3) {
            Some([0, 0]) => false,
            Some([1, 0]) => true,
            _ => return self.reply_err(1047, "08S01", "Unknown command").await,
        };
        let target = self.primary();
        let outcome = self.forward(target, Expect::Result).await?;
        if matches!(outcome, Some(o) if o.error.is_none()) {
            self.multi_statements_off = off;
            let payload = self.cmd.clone();
            for idx in 0..self.backends.len() {
                if idx == target {
                    continue;
                }
                if let Some(conn) = self.backends[idx].as_mut()
                    && conn.run_own(&payload).await.is_err()
                {
                    self.drop_backend(idx);
                }
            }
        }
        Ok(Next::Continue)
    }

    /// COM_RESET_CONNECTION resets every backend connection the session
    /// holds and forgets the session's prepared statements.
    async fn on_reset_connection(&mut self) -> Result<Next, SessionError> {
        for idx in 0..self.backends.len() {
            // Reset, with GTID tracking turned on again (the reset turned
            // it off, and read-your-writes needs it).
            if let Some(conn) = self.backends[idx].as_mut()
                && conn.reset().await.is_err()
            {
                self.drop_backend(idx);
            }
        }
        self.start_afresh();
        let ok = self.own_ok();
        self.write_reply(&ok).await?;
        Ok(Next::Continue)
    }

    /// What COM_RESET_CONNECTION and COM_CHANGE_USER forget of the session
    /// besides its backend connections: prepared statements, routing
    /// memory, options and status flags, and the character set it switched
    /// to (back to the login's, as MariaDB does).
    fn start_afresh(&mut self) {
        self.stmts.clear();
        self.reset_routing();
        self.multi_statements_off = false;
        self.status = self.initial_status;
        self.multibyte = Multibyte::of_collation(self.login.collation.into());
    }

    /// COM_CHANGE_USER: the proxy checks the new credentials itself (the
    /// response answers the greeting's scramble), then starts the session
    /// afresh: backend connections closed, statements forgotten. A refused
    /// change leaves the session with its user, as MariaDB does. One the
    /// proxy cannot read gets MariaDB's answer to it (ERROR 1047 Unknown
    /// command) and changes nothing: the session goes on as it was; so
    /// does every one after three were refused, as on MariaDB.
    async fn on_change_user(&mut self) -> Result<Next, SessionError> {
        const MAX_FAILED_CHANGE_USERS: u8 = 3;
        let parsed = ChangeUser::parse(&self.cmd[1..], self.caps);
        let Some(change) = parsed.filter(|_| self.failed_change_users < MAX_FAILED_CHANGE_USERS)
        else {
            return self.reply_err(1047, "08S01", "Unknown command").await.map(|_| Next::Continue);
        };
        // A character set no client may use is refused before the
        // password is checked; the session starts afresh, its user kept.
        if let Some(charset) = change.collation.and_then(crate::classify::not_a_client_charset) {
            self.close_backends().await;
            self.start_afresh();
            self.write_reply(&super::login::charset_refused(charset)).await?;
            return Ok(Next::Continue);
        }
        let config = self.config();
        let secret = config.user(&change.user).and_then(|u| u.secret(&config.base_dir).ok());
        let plugin = change.auth_plugin.as_deref().unwrap_or(auth::NATIVE.as_bytes());
        // The reply (and an auth switch before it, when the client answered
        // for a plugin the proxy does not check) follows the command's
        // sequence ids, as at login.
        let mut seq = 1u8;
        let throttled =
            super::login::wait_out_failed_logins(&self.shared, &config, self.peer).await;
        let verified = match &secret {
            None => None,
            Some(secret) => {
                let mut exchange = Exchange {
                    stream: &mut self.client,
                    reader: &mut self.creader,
                    scramble: &self.scramble,
                    seq: &mut seq,
                };
                match exchange.authenticate(secret, plugin, &change.auth_response).await {
                    Ok(verified) => verified,
                    Err(LoginError::Io(e)) => return Err(SessionError::Client(e)),
                    Err(e) => {
                        tracing::warn!(peer = %self.peer, error = %e, "COM_CHANGE_USER failed");
                        return Ok(Next::Quit);
                    }
                }
            }
        };
        // As on MariaDB, the session starts afresh whether or not the
        // change is accepted; a refused one keeps the user it had.
        self.close_backends().await;
        self.start_afresh();
        let user = String::from_utf8_lossy(&change.user).into_owned();
        let Some(backend_secret) = verified else {
            tracing::warn!(peer = %self.peer, user = %user, "COM_CHANGE_USER refused");
            self.failed_change_users = self.failed_change_users.saturating_add(1);
            if let Some(ip) = throttled {
                self.shared.login_throttle.failed(ip, std::time::Instant::now());
            }
            let msg =
                super::login::denied_message(&user, self.peer, !change.auth_response.is_empty());
            write_packet(&mut self.client, seq, &build_err(1045, "28000", &msg)).await?;
            return Ok(Next::Continue);
        };
        if let Some(ip) = throttled {
            self.shared.login_throttle.succeeded(ip);
        }
        let limit = config.user(&change.user).and_then(|u| u.max_connections);
        if change.user != self.login.user {
            let Some(slot) = self.shared.user_sessions.take(&change.user, limit) else {
                let msg = super::login::user_limit_message(&user);
                write_packet(&mut self.client, seq, &build_err(1203, "42000", &msg)).await?;
                return Ok(Next::Continue);
            };
            self.user_slot = slot;
        }
        if change.user != self.login.user {
            // Read-your-writes follows the new user's writes from now on.
            self.writes.client = self.shared.recent_writes.client(&change.user, self.peer.ip());
            self.writes.seen = 0;
        }
        self.login.user = change.user.clone();
        self.login.secret = backend_secret;
        self.login.database = Some(change.database).filter(|d| !d.is_empty());
        if let Some(c) = change.collation {
            self.login.collation = c as u8;
            self.multibyte = Multibyte::of_collation(c);
        }
        if change.attributes.is_some() {
            self.login.attributes = change.attributes;
        }
        *self.handle.user.lock().expect("handle lock") = change.user;
        self.user_changed();
        let ok = self.own_ok();
        write_packet(&mut self.client, seq, &ok).await?;
        Ok(Next::Continue)
    }
}
