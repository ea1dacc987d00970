//! KILL across the proxy: clients see the proxy's connection ids, so
//! `KILL [QUERY|CONNECTION] n` and COM_PROCESS_KILL are translated to the
//! backend threads of session `n`, run from the killer's own connections.

use super::{Next, Session, SessionError};
use crate::protocol::messages::build_ok;

/// What a KILL statement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// Only the running statement, not the connection.
    pub query_only: bool,
    pub id: u64,
}

/// Recognises `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` (MySQL and
/// MariaDB forms). `KILL QUERY ID`, `KILL USER` and anything else are not
/// connection ids and return `None` (they go to the server as they are).
pub fn parse_kill(sql: &[u8]) -> Option<Kill> {
    let text = std::str::from_utf8(sql).ok()?;
    let mut words = text
        .trim()
        .trim_end_matches(';')
        .split_ascii_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .peekable();
    if words.next()? != "KILL" {
        return None;
    }
    if matches!(words.peek().map(String::as_str), Some("HARD" | "SOFT")) {
        words.next();
    }
    let mut query_only = false;
    match words.peek().map(String::as_str) {
        Some("CONNECTION") => {
            words.next();
        }
        Some("QUERY") => {
            query_only = true;
            words.next();
        }
        _ => {}
    }
    let id = words.next()?.parse().ok()?;
    words.next().is_none().then_some(Kill { query_only, id })
}

impl Session {
    pub(super) async fn on_process_kill(&mut self) -> Result<Next, SessionError> {
        let Some(id) =
            self.cmd.get(1..5).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        else {
            return self.reply_err(1047, "08S01", "Malformed COM_PROCESS_KILL").await;
        };
        self.on_kill(Kill { query_only: false, id: id as u64 }).await
    }

    /// Kills session `kill.id`'s backend work (and the session itself
    /// unless only the query is killed). Only the same user may kill.
    pub(super) async fn on_kill(&mut self, kill: Kill) -> Result<Next, SessionError> {
        let target = u32::try_from(kill.id).ok().and_then(|id| self.shared.registry.get(id));
        let Some(target) = target else {
            return self.reply_err(1094, "HY000", &format!("Unknown thread id: {}", kill.id)).await;
        };
        let owner = target.user.lock().expect("handle lock").clone();
        if owner != self.login.user {
            return self
                .reply_err(1095, "HY000", &format!("You are not owner of thread {}", kill.id))
                .await;
        }
        let threads = target.threads.lock().expect("handle lock").clone();
        let itself = kill.id == self.id as u64;
        let verb = if kill.query_only { "KILL QUERY" } else { "KILL" };
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
        if !kill.query_only {
            target.signal.stop();
        }
        let ok = build_ok(self.caps, 0, 0, self.status, 0);
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
    fn other_kill_statements_are_not_intercepted() {
        assert_eq!(parse_kill(b"KILL QUERY ID 7"), None);
        assert_eq!(parse_kill(b"KILL USER app"), None);
        assert_eq!(parse_kill(b"SELECT 1"), None);
        assert_eq!(parse_kill(b"KILL 5 6"), None);
        assert_eq!(parse_kill(b"KILLER 5"), None);
    }
}
