//! One handler per client command. Each reads `self.cmd` (the command
//! packet's payload), runs it, and leaves the client with exactly the reply
//! the server would have sent.

use super::prepared::{self, Stmt};
use super::{Next, Session, SessionError};
use crate::protocol::command as cmd;
use crate::protocol::handshake::ChangeUser;
use crate::protocol::messages::build_ok;
use crate::protocol::packet::put_packet;
use crate::protocol::{auth, status};
use crate::relay::{Expect, Machine};
use tokio::io::AsyncWriteExt;

/// Replaces "(<backend id>)" by "(<client id>)" in an ERR packet's message.
fn reword_stmt_id(err: &[u8], backend_id: u32, client_id: u32) -> Vec<u8> {
    let Some(e) = crate::protocol::messages::parse_err(err) else {
        return err.to_vec();
    };
    let message = String::from_utf8_lossy(e.message);
    let from = format!("({backend_id})");
    if backend_id == client_id || !message.contains(&from) {
        return err.to_vec();
    }
    let message = message.replacen(&from, &format!("({client_id})"), 1);
    crate::protocol::messages::build_err(e.code, &String::from_utf8_lossy(e.state), &message)
}

/// Packets the proxy reads whole from a backend outside the relay.
const CONTROL_LIMIT: usize = 1 << 24;

impl Session {
    /// Runs the command in `self.cmd`.
    pub(super) async fn dispatch(&mut self) -> Result<Next, SessionError> {
        match self.cmd[0] {
            cmd::QUIT => Ok(Next::Quit),
            cmd::QUERY => self.on_query().await,
            cmd::INIT_DB => self.on_init_db().await,
            cmd::PING => self.on_ping().await,
            cmd::FIELD_LIST => self.simple(Expect::FieldList).await,
            cmd::STATISTICS => self.simple(Expect::Single).await,
            cmd::PROCESS_KILL => self.on_process_kill().await,
            cmd::CHANGE_USER => self.on_change_user().await,
            cmd::RESET_CONNECTION => self.on_reset_connection().await,
            cmd::SET_OPTION => self.on_set_option().await,
            cmd::STMT_PREPARE => self.on_prepare().await,
            cmd::STMT_EXECUTE => self.on_stmt_command(Expect::Result).await,
            cmd::STMT_FETCH => self.on_stmt_command(Expect::Rows).await,
            cmd::STMT_RESET => self.on_stmt_command(Expect::Result).await,
            cmd::STMT_SEND_LONG_DATA => self.on_stmt_no_reply().await,
            cmd::STMT_CLOSE => self.on_stmt_close().await,
            _ => self.reply_err(1047, "08S01", "Unknown command").await,
        }
    }

    /// Forwards the command to the routed backend and relays its reply.
    async fn simple(&mut self, expect: Expect) -> Result<Next, SessionError> {
        let target = self.route();
        self.forward(target, expect).await?;
        Ok(Next::Continue)
    }

    async fn on_query(&mut self) -> Result<Next, SessionError> {
        if let Some(kill) = super::kill::parse_kill(&self.cmd[1..]) {
            return self.on_kill(kill).await;
        }
        self.simple(Expect::Result).await
    }

    async fn on_init_db(&mut self) -> Result<Next, SessionError> {
        let target = self.route();
        let outcome = self.forward(target, Expect::Result).await?;
        if matches!(outcome, Some(o) if o.error.is_none()) {
            self.login.database = Some(self.cmd[1..].to_vec());
        }
        Ok(Next::Continue)
    }

    /// Answered by the proxy itself: it is alive, and an idle client needs
    /// no backend connection for that.
    async fn on_ping(&mut self) -> Result<Next, SessionError> {
        let ok = build_ok(self.caps, 0, 0, self.status, 0);
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
        let target = self.route();
        let outcome = self.forward(target, Expect::Result).await?;
        if matches!(outcome, Some(o) if o.error.is_none()) {
            self.multi_statements_off = off;
            let payload = self.cmd.clone();
            for idx in 0..self.backends.len() {
                if idx == target {
                    continue;
                }
                if let Some(conn) = self.backends[idx].as_mut() {
                    if conn.run_own(&payload).await.is_err() {
                        self.drop_backend(idx);
                    }
                }
            }
        }
        Ok(Next::Continue)
    }

    /// COM_RESET_CONNECTION resets every backend connection the session
    /// holds and forgets the session's prepared statements.
    async fn on_reset_connection(&mut self) -> Result<Next, SessionError> {
        for idx in 0..self.backends.len() {
            if let Some(conn) = self.backends[idx].as_mut() {
                if conn.run_own(&[cmd::RESET_CONNECTION]).await.is_err() {
                    self.drop_backend(idx);
                }
            }
        }
        self.stmts.clear();
        self.multi_statements_off = false;
        self.status = status::AUTOCOMMIT;
        let ok = build_ok(self.caps, 0, 0, self.status, 0);
        self.write_reply(&ok).await?;
        Ok(Next::Continue)
    }

    /// COM_CHANGE_USER: the proxy checks the new credentials itself (the
    /// response answers the greeting's scramble), then starts the session
    /// afresh: backend connections closed, statements forgotten. A refused
    /// change closes the connection.
    async fn on_change_user(&mut self) -> Result<Next, SessionError> {
        let Some(change) = ChangeUser::parse(&self.cmd[1..], self.caps) else {
            return self
                .reply_err(1047, "08S01", "Malformed COM_CHANGE_USER")
                .await
                .map(|_| Next::Quit);
        };
        let config = self.config();
        let secret = config
            .user(&change.user)
            .and_then(|u| u.secret(&config.base_dir).ok());
        let plugin = change
            .auth_plugin
            .as_deref()
            .unwrap_or(auth::NATIVE.as_bytes());
        let verified = match (&secret, plugin) {
            (Some(s), b"mysql_native_password") => {
                s.verify_native(&self.scramble, &change.auth_response)
            }
            _ => None,
        };
        let user = String::from_utf8_lossy(&change.user).into_owned();
        let Some(backend_secret) = verified else {
            tracing::warn!(peer = %self.peer, user = %user, "COM_CHANGE_USER refused");
            let msg =
                super::login::denied_message(&user, self.peer, !change.auth_response.is_empty());
            self.reply_err(1045, "28000", &msg).await?;
            return Ok(Next::Quit);
        };
        self.close_backends().await;
        self.stmts.clear();
        self.multi_statements_off = false;
        self.login.user = change.user.clone();
        self.login.secret = backend_secret;
        self.login.database = Some(change.database).filter(|d| !d.is_empty());
        if let Some(c) = change.collation {
            self.login.collation = c as u8;
        }
        if change.attributes.is_some() {
            self.login.attributes = change.attributes;
        }
        *self.handle.user.lock().expect("handle lock") = change.user;
        self.status = status::AUTOCOMMIT;
        let ok = build_ok(self.caps, 0, 0, self.status, 0);
        self.write_reply(&ok).await?;
        Ok(Next::Continue)
    }

    /// COM_STMT_PREPARE: prepared on the routed backend; the client gets
    /// the proxy's statement id in place of the backend's.
    async fn on_prepare(&mut self) -> Result<Next, SessionError> {
        let target = self.route();
        if let Err(e) = self.backend(target).await {
            return self.reply_backend_error(target, &e).await;
        }
        let conn = self.backends[target].as_mut().expect("backend open");
        let caps = conn.caps;
        let mut first = Vec::new();
        let sent = conn.write_payload(0, &self.cmd).await;
        let read = match sent {
            Ok(()) => {
                conn.reader
                    .read_packet(&mut conn.stream, &mut first, CONTROL_LIMIT)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        let seq = match read {
            Ok((_, seq)) => seq,
            Err(e) => {
                self.drop_backend(target);
                return Err(SessionError::Fatal(format!(
                    "backend failed during prepare: {e}"
                )));
            }
        };
        let mut left = 0;
        if first.first() == Some(&0x00) && first.len() >= 12 {
            let backend_id = u32::from_le_bytes([first[1], first[2], first[3], first[4]]);
            let columns = u16::from_le_bytes([first[5], first[6]]);
            let params = u16::from_le_bytes([first[7], first[8]]);
            let id = self.stmts.insert(Stmt {
                sql: self.cmd[1..].to_vec(),
                params,
                columns,
                on: vec![(target, backend_id)],
                types: None,
            });
            first[1..5].copy_from_slice(&id.to_le_bytes());
            left = Machine::prepare_packets(params, columns, caps);
        }
        let mut out = Vec::with_capacity(first.len() + 4);
        put_packet(&mut out, seq, &first);
        self.client.write_all(&out).await?;
        if left > 0 {
            self.relay_from(target, Expect::Prepare { left }).await?;
        } else {
            self.client.flush().await?;
        }
        Ok(Next::Continue)
    }

    /// Resolves the statement id at bytes 1..5 of the command, rewrites it
    /// to the backend's id, and returns (client id, backend index).
    fn map_stmt(&mut self) -> Option<(u32, usize)> {
        let raw = u32::from_le_bytes(self.cmd.get(1..5)?.try_into().ok()?);
        let id = self.stmts.resolve(raw)?;
        let stmt = self.stmts.get(id)?;
        let target = self.route();
        let (backend, backend_id) = match stmt.backend_id(target) {
            Some(b) => (target, b),
            None => *stmt.on.first()?,
        };
        self.cmd[1..5].copy_from_slice(&backend_id.to_le_bytes());
        Some((id, backend))
    }

    /// COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_RESET.
    async fn on_stmt_command(&mut self, expect: Expect) -> Result<Next, SessionError> {
        let command = self.cmd[0];
        let Some((id, backend)) = self.map_stmt() else {
            let raw = self
                .cmd
                .get(1..5)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
            let name = match command {
                cmd::STMT_EXECUTE => "mysqld_stmt_execute",
                cmd::STMT_FETCH => "mysqld_stmt_fetch",
                _ => "mysqld_stmt_reset",
            };
            let msg = format!("Unknown prepared statement handler ({raw}) given to {name}");
            // (The server words it the same way for ids it does not know.)
            return self.reply_err(1243, "HY000", &msg).await;
        };
        if command == cmd::STMT_EXECUTE {
            let params = self.stmts.get(id).map_or(0, |s| s.params);
            if let Some(types) = prepared::execute_types(&self.cmd, params) {
                let types = types.to_vec();
                if let Some(s) = self.stmts.get_mut(id) {
                    s.types = Some(types);
                }
            }
        }
        self.forward_stmt(id, backend, expect).await
    }

    /// Sends a statement command and relays its reply; an error naming the
    /// backend's statement id ("The statement (7) has no open cursor") is
    /// reworded with the id the client knows.
    async fn forward_stmt(
        &mut self,
        client_id: u32,
        backend: usize,
        expect: Expect,
    ) -> Result<Next, SessionError> {
        if let Err(e) = self.backend(backend).await {
            return self.reply_backend_error(backend, &e).await;
        }
        let backend_id = u32::from_le_bytes(self.cmd[1..5].try_into().expect("4 bytes"));
        let conn = self.backends[backend].as_mut().expect("backend open");
        let sent = conn.write_payload(0, &self.cmd).await;
        let peeked = match sent {
            Ok(()) => conn.reader.fill_to(&mut conn.stream, 5).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = peeked {
            self.drop_backend(backend);
            return Err(SessionError::Fatal(format!("backend failed: {e}")));
        }
        if conn.reader.buffered()[4] != 0xFF {
            self.relay_from(backend, expect).await?;
            return Ok(Next::Continue);
        }
        let mut err = Vec::new();
        if let Err(e) = conn
            .reader
            .read_packet(&mut conn.stream, &mut err, CONTROL_LIMIT)
            .await
        {
            self.drop_backend(backend);
            return Err(SessionError::Fatal(format!("backend failed: {e}")));
        }
        let reworded = reword_stmt_id(&err, backend_id, client_id);
        self.write_reply(&reworded).await?;
        Ok(Next::Continue)
    }

    /// COM_STMT_SEND_LONG_DATA: no reply, errors surface at execute.
    async fn on_stmt_no_reply(&mut self) -> Result<Next, SessionError> {
        if let Some((_, backend)) = self.map_stmt() {
            if let Some(conn) = self.backends.get_mut(backend).and_then(Option::as_mut) {
                if conn.write_payload(0, &self.cmd).await.is_err() {
                    self.drop_backend(backend);
                }
            }
        }
        Ok(Next::Continue)
    }

    /// COM_STMT_CLOSE: closed on every backend that prepared it; no reply.
    async fn on_stmt_close(&mut self) -> Result<Next, SessionError> {
        let Some(raw) = self
            .cmd
            .get(1..5)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        else {
            return Ok(Next::Continue);
        };
        let Some(stmt) = self.stmts.resolve(raw).and_then(|id| self.stmts.remove(id)) else {
            return Ok(Next::Continue);
        };
        for (backend, backend_id) in stmt.on {
            let mut payload = vec![cmd::STMT_CLOSE];
            payload.extend_from_slice(&backend_id.to_le_bytes());
            if let Some(conn) = self.backends.get_mut(backend).and_then(Option::as_mut) {
                if conn.write_payload(0, &payload).await.is_err() {
                    self.drop_backend(backend);
                }
            }
        }
        Ok(Next::Continue)
    }
}
