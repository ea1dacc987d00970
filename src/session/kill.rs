//! KILL across the proxy: clients see the proxy's connection ids, so
//! `KILL [QUERY|CONNECTION] n` and COM_PROCESS_KILL are translated to the
//! backend threads of session `n`, run from the killer's own connections.
//! `SELECT CONNECTION_ID()` answers with that same id (the proxy's), so
//! that what a client reads there is what it can KILL.

use super::{Next, Session, SessionError};

/// What a KILL statement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// Only the running statement, not the connection.
    pub query_only: bool,
    pub id: u64,
}

/// Recognises `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` (MySQL and
/// MariaDB forms) with a number for the id. `KILL QUERY ID`, `KILL USER`,
/// an expression (see [`parse_kill_expression`]) and anything else return
/// `None`.
pub fn parse_kill(sql: &[u8]) -> Option<Kill> {
    let (query_only, operand) = kill_operand(sql)?;
    operand.parse().ok().map(|id| Kill { query_only, id })
}

/// `KILL [HARD|SOFT] [CONNECTION|QUERY] <expr>` whose id is an expression
/// (`KILL @id`, which a client set from `CONNECTION_ID()`): whether only the
/// query is killed, and the expression as written. The server takes the
/// expression's integer value for a connection id, which through the proxy
/// is the proxy's, as in `KILL <number>`. `None` for a number, `KILL
/// USER` and `KILL QUERY ID`, which are no connection ids.
pub fn parse_kill_expression(sql: &[u8]) -> Option<(bool, &str)> {
    let (query_only, operand) = kill_operand(sql)?;
    let not_an_id = operand.parse::<u64>().is_ok()
        || strip_word(operand, "USER").is_some()
        || strip_word(operand, "ID").is_some();
    (!not_an_id).then_some((query_only, operand))
}

/// `SHOW EXPLAIN|ANALYZE [FORMAT=f] FOR <n>` and `EXPLAIN [FORMAT=f] FOR
/// CONNECTION <n>` with a number for the connection id: the text before
/// the id, and the id (the proxy's, when the client read it from the
/// processlist or `CONNECTION_ID()`).
pub fn parse_explain_for(sql: &str) -> Option<(&str, u64)> {
    let text = sql.trim().trim_end_matches(';').trim_end();
    let digits = text.len() - text.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (head, id) = text.split_at(digits);
    let id = id.parse().ok()?;
    let is = |word: Option<&str>, like: &str| word.is_some_and(|w| w.eq_ignore_ascii_case(like));
    let mut from_start = head.split_ascii_whitespace();
    let (first, second) = (from_start.next(), from_start.next());
    let mut from_end = head.split_ascii_whitespace().rev();
    let (last, before_last) = (from_end.next(), from_end.next());
    let shown = is(first, "SHOW") && (is(second, "EXPLAIN") || is(second, "ANALYZE"));
    let explained = is(first, "EXPLAIN") && is(before_last, "FOR") && is(last, "CONNECTION");
    let shown = shown && is(last, "FOR");
    let spaced = head.ends_with(|c: char| c.is_ascii_whitespace());
    ((shown || explained) && spaced).then_some((head, id))
}

/// `KILL [HARD|SOFT] [CONNECTION|QUERY] <operand>`: whether only the query
/// is killed, and the operand as written (without a trailing `;`).
fn kill_operand(sql: &[u8]) -> Option<(bool, &str)> {
    let text = std::str::from_utf8(sql).ok()?;
    let rest = strip_word(text.trim_start(), "KILL")?.trim_start();
    let rest = strip_word(rest, "HARD").or_else(|| strip_word(rest, "SOFT")).unwrap_or(rest);
    let rest = rest.trim_start();
    let (query_only, rest) = match (strip_word(rest, "CONNECTION"), strip_word(rest, "QUERY")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => (false, rest),
    };
    let operand = rest.trim().trim_end_matches(';').trim_end();
    (!operand.is_empty()).then_some((query_only, operand))
}

/// Recognises `SELECT CONNECTION_ID()`, with an optional alias (`AS x`,
/// `x`, or quoted), and returns the result's column name: the alias, or the
/// call as written (MariaDB names the column so). `None` for any other
/// statement, which goes to a server as usual (there CONNECTION_ID() is
/// the backend connection's id).
pub fn parse_select_connection_id(sql: &str) -> Option<&str> {
    let rest = sql.trim().trim_end_matches(';').trim_end();
    let rest = strip_word(rest, "SELECT")?.trim_start();
    let call_start = rest;
    let after_name = strip_word(rest, "CONNECTION_ID")?.trim_start();
    let after_open = after_name.strip_prefix('(')?.trim_start();
    let after_call = after_open.strip_prefix(')')?;
    let call = &call_start[..call_start.len() - after_call.len()];
    let tail = after_call.trim_start();
    if tail.is_empty() {
        return Some(call);
    }
    let alias = strip_word(tail, "AS").map_or(tail, str::trim_start);
    let quoted = ['`', '"', '\''].into_iter().find_map(|q| {
        let inner = alias.strip_prefix(q)?.strip_suffix(q)?;
        (!inner.is_empty() && !inner.contains(q)).then_some(inner)
    });
    let plain = (!alias.is_empty()
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$'))
    .then_some(alias);
    quoted.or(plain)
}

/// `text` without its leading keyword `word` (any case), when a keyword
/// boundary follows it.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    let boundary = rest.chars().next().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
    (head.eq_ignore_ascii_case(word) && boundary).then_some(rest)
}

impl Session {
    /// Answers `SELECT CONNECTION_ID()` with the session's id, in a result
    /// set shaped like MariaDB's (one INT UNSIGNED NOT NULL column).
    pub(super) async fn answer_connection_id(
        &mut self,
        column: &str,
    ) -> Result<Next, SessionError> {
        let column = super::answer::Column {
            schema: "",
            table: "",
            name: column,
            org_name: "",
            collation: 63, // binary
            length: 10,
            field_type: 0x03, // LONG
            flags: 0x00a1,    // NOT NULL, UNSIGNED, BINARY
        };
        let id = self.id.to_string();
        self.answer_row(&[column], &[id.as_bytes()]).await
    }

    /// The client's command becomes COM_QUERY `sql`: a statement the proxy
    /// wrote in its place, which the relay sends as the client's.
    fn rewrite_query(&mut self, sql: &str) {
        self.cmd.clear();
        self.cmd.push(crate::protocol::command::QUERY);
        self.cmd.extend_from_slice(sql.as_bytes());
    }

    /// `SHOW EXPLAIN FOR n` and its kin (`head` the text before the id):
    /// the primary answers for the connection the processlist shows under
    /// that id, a proxy session's connection to it, or a server thread of
    /// another client.
    pub(super) async fn explain_connection(
        &mut self,
        head: &str,
        id: u64,
    ) -> Result<Next, SessionError> {
        let thread = if self.is_proxy_connection_id(id) {
            let primary = self.primary();
            let target = u32::try_from(id).ok().and_then(|id| self.shared.registry.get(id));
            let threads = target.map(|t| t.threads.lock().expect("handle lock").clone());
            match threads.and_then(|t| t.into_iter().find(|(b, _)| *b == primary)) {
                Some((_, thread)) => u64::from(thread),
                None => {
                    let message = format!("Unknown thread id: {id}");
                    return self.reply_err(1094, "HY000", &message).await;
                }
            }
        } else {
            id
        };
        let sql = format!("{head}{thread}");
        self.rewrite_query(&sql);
        let info =
            crate::classify::classify_with_cache(&sql, self.backslashes(), &self.shared.tier2);
        self.run_routed(info, &sql).await?;
        Ok(Next::Continue)
    }

    /// Whether the primary grants this session's user a privilege to kill
    /// other users' threads (SUPER, CONNECTION ADMIN).
    async fn may_kill_others(&mut self) -> bool {
        let primary = self.primary();
        let Ok(conn) = self.backend(primary).await else {
            return false;
        };
        let asked = "SELECT 1 FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE \
                     IN ('SUPER', 'CONNECTION ADMIN', 'CONNECTION_ADMIN') LIMIT 1";
        conn.query_own(asked).await.is_ok_and(|outcome| outcome.rows > 0)
    }

    pub(super) async fn on_process_kill(&mut self) -> Result<Next, SessionError> {
        let Some(id) =
            self.cmd.get(1..5).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        else {
            return self.reply_err(1047, "08S01", "Malformed COM_PROCESS_KILL").await;
        };
        if !self.is_proxy_connection_id(id.into()) {
            // A server thread's id: the primary kills it, as `KILL n`.
            let sql = format!("KILL {id}");
            self.rewrite_query(&sql);
            return self.run_query(&sql).await;
        }
        self.on_kill(Kill { query_only: false, id: id as u64 }).await
    }

    /// Whether `id` names one of the proxy's sessions, or lies where the
    /// proxy gives its ids (see `FIRST_CONNECTION_ID`): a KILL of it is
    /// the proxy's to answer, and of any other id the primary's.
    pub(super) fn is_proxy_connection_id(&self, id: u64) -> bool {
        id >= u64::from(crate::server::FIRST_CONNECTION_ID)
            || u32::try_from(id).is_ok_and(|id| self.shared.registry.get(id).is_some())
    }

    /// The connection id a KILL's expression gives (`@id`), evaluated on
    /// the session's primary connection, where its user variables are, as
    /// the server takes it: an integer, 0 for NULL or a string that is no
    /// number. `None` when the expression cannot be evaluated there (the
    /// KILL then goes to the primary as it is, for the server's error).
    pub(super) async fn kill_expression_value(&mut self, expression: &str) -> Option<u64> {
        let primary = self.primary();
        let conn = self.backend(primary).await.ok()?;
        let sql = format!("SELECT CAST(({expression}) AS UNSIGNED)");
        let value = conn.query_value(&sql).await.ok()?;
        Some(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Kills session `kill.id`'s backend work (and the session itself
    /// unless only the query is killed). The same user may kill, and, as
    /// on the server, a user the primary grants SUPER or CONNECTION ADMIN.
    pub(super) async fn on_kill(&mut self, kill: Kill) -> Result<Next, SessionError> {
        let target = u32::try_from(kill.id).ok().and_then(|id| self.shared.registry.get(id));
        let Some(target) = target else {
            return self.reply_err(1094, "HY000", &format!("Unknown thread id: {}", kill.id)).await;
        };
        let owner = target.user.lock().expect("handle lock").clone();
        if owner != self.login.user && !self.may_kill_others().await {
            return self
                .reply_err(1095, "HY000", &format!("You are not owner of thread {}", kill.id))
                .await;
        }
        let threads = target.threads.lock().expect("handle lock").clone();
        let itself = kill.id == self.id as u64;
        let verb = if kill.query_only { "KILL QUERY" } else { "KILL" };
        if !kill.query_only && !itself {
            // Told before its backend threads die, so that the statement
            // they were running ends the session rather than running again
            // on another backend.
            target.signal.stop();
        }
        for (backend, thread) in threads {
            if itself {
                // Nothing of ours runs while we run KILL; our own backend
                // connections close with the session below.
                continue;
            }
            match self.backend(backend).await {
                Ok(conn) => {
                    if let Err(e) = conn.query_own(&format!("{verb} {thread}")).await {
                        // The thread may have ended on its own meanwhile.
                        tracing::debug!(thread, error = %e, "backend KILL failed");
                    }
                }
                Err(e) => tracing::warn!(backend, error = %e, "cannot reach backend to KILL"),
            }
        }
        if itself && !kill.query_only {
            self.reply_err(1927, "70100", "Connection was killed").await?;
            return Ok(Next::Quit);
        }
        if itself {
            // The statement killed is this KILL itself, as on a server.
            return self.reply_err(1317, "70100", "Query execution was interrupted").await;
        }
        let ok = self.own_ok();
        self.write_reply(&ok).await?;
        Ok(Next::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms_are_recognised() {
        assert_eq!(parse_kill(b"KILL 5"), Some(Kill { query_only: false, id: 5 }));
        assert_eq!(parse_kill(b"kill query 7;"), Some(Kill { query_only: true, id: 7 }));
        assert_eq!(
            parse_kill(b" KILL HARD CONNECTION 9 "),
            Some(Kill { query_only: false, id: 9 })
        );
    }

    #[test]
    fn select_connection_id_is_recognised_with_its_column_name() {
        let name = parse_select_connection_id;
        assert_eq!(name("SELECT CONNECTION_ID()"), Some("CONNECTION_ID()"));
        assert_eq!(name("  select connection_id ( ) ; "), Some("connection_id ( )"));
        assert_eq!(name("SELECT CONNECTION_ID() AS cid"), Some("cid"));
        assert_eq!(name("select connection_id() `my id`"), Some("my id"));
        assert_eq!(name("SELECT CONNECTION_ID() as 'x'"), Some("x"));
        assert_eq!(name("SELECT CONNECTION_ID() + 1"), None);
        assert_eq!(name("SELECT CONNECTION_ID(), 2"), None);
        assert_eq!(name("SELECT CONNECTION_IDX()"), None);
        assert_eq!(name("SELECTCONNECTION_ID()"), None);
        assert_eq!(name("SELECT 1"), None);
        assert_eq!(name("SELECT CONNECTION_ID() FROM t"), None);
    }

    #[test]
    fn a_plan_of_another_connection_is_recognised() {
        let read = parse_explain_for;
        assert_eq!(read("SHOW EXPLAIN FOR 1000000001"), Some(("SHOW EXPLAIN FOR ", 1000000001)));
        assert_eq!(
            read("show analyze format=json for 7;"),
            Some(("show analyze format=json for ", 7))
        );
        assert_eq!(
            read(" EXPLAIN FORMAT = JSON FOR CONNECTION 12 "),
            Some(("EXPLAIN FORMAT = JSON FOR CONNECTION ", 12))
        );
        assert_eq!(read("EXPLAIN FOR CONNECTION 3"), Some(("EXPLAIN FOR CONNECTION ", 3)));
        assert_eq!(read("SHOW EXPLAIN FOR @id"), None);
        assert_eq!(read("SHOW EXPLAIN FOR1"), None);
        assert_eq!(read("EXPLAIN SELECT 1"), None);
        assert_eq!(read("SHOW TABLES FOR 1"), None);
        assert_eq!(read("EXPLAIN FOR 1"), None);
        assert_eq!(read("1"), None);
    }

    #[test]
    fn a_kill_of_an_expression_is_told_apart() {
        assert_eq!(parse_kill_expression(b"KILL @id"), Some((false, "@id")));
        assert_eq!(parse_kill_expression(b"kill query @id ;"), Some((true, "@id")));
        assert_eq!(
            parse_kill_expression(b"KILL SOFT CONNECTION (@a + 1)"),
            Some((false, "(@a + 1)"))
        );
        assert_eq!(parse_kill(b"KILL @id"), None);
        for sql in [&b"KILL 5"[..], b"KILL QUERY ID 7", b"KILL USER app", b"KILL", b"SELECT @id"] {
            assert_eq!(parse_kill_expression(sql), None, "{}", String::from_utf8_lossy(sql));
        }
    }

    #[test]
    fn other_kill_statements_are_not_intercepted() {
        assert_eq!(parse_kill(b"KILL QUERY ID 7"), None);
        assert_eq!(parse_kill(b"KILL USER app"), None);
        assert_eq!(parse_kill(b"SELECT 1"), None);
        assert_eq!(parse_kill(b"KILL 5 6"), None);
        assert_eq!(parse_kill(b"KILLER 5"), None);
    }
}
