//! The SET statement: which variables it assigns decides its kind.
//!
//! `SET autocommit = 0` alone is `SetAutocommit(false)`; only user variables is
//! `SetUserVar`; any global (GLOBAL, PERSIST, `@@global.`) is `SetGlobal`; NAMES/CHARACTER
//! SET alone is `SetNames`; TRANSACTION is `SetTransaction`; PASSWORD and DEFAULT ROLE are
//! account management (`Grant`); any other mix is `SetSession`. A scope keyword applies to
//! the assignments after it until another one (MySQL's rule). MariaDB's
//! `SET STATEMENT ... FOR <stmt>` takes the kind of `<stmt>`: the scanner restarts there.

use super::info::StatementKind as K;
use super::lexer::{Backslashes, Lexer, Tok, Token};
use super::words::Kw;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Expecting a variable (or a scope keyword, NAMES, TRANSACTION, ...).
    Target,
    /// After the variable's name, expecting `=` or `:=`.
    Name,
    /// Inside the value expression.
    Value,
    /// Ignoring tokens up to the next top-level comma.
    SkipToComma,
    /// Ignoring the rest of the statement.
    SkipToEnd,
    /// Inside `SET STATEMENT var = value, ...` waiting for `FOR`.
    StatementVars,
}

/// What a token meant to the SET scanner, for the flag scanner.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SetEvent {
    Nothing,
    /// The token is a user variable being assigned.
    UserTarget,
    /// `SET STATEMENT ... FOR`: the statement proper starts after this token.
    Restart,
}

/// Scans one SET statement.
#[derive(Clone, Copy)]
pub(super) struct SetScan {
    state: State,
    global_scope: bool,
    assignments: u8,
    users: u8,
    globals: u8,
    names: bool,
    transaction: bool,
    account: bool,
    /// The current assignment is to autocommit.
    on_autocommit: bool,
    value_tokens: u8,
    value_bool: Option<bool>,
    /// The statement's only meaningful assignment so far is autocommit to this value.
    autocommit: Option<bool>,
    autocommit_unclear: bool,
    /// A session variable the server consumes with a later statement is
    /// assigned (see [`ONE_SHOT`]), or `SET TRANSACTION` without a scope
    /// sets the next transaction's characteristics.
    pub one_shot: bool,
    /// A scope keyword (SESSION, GLOBAL...) came before the current target.
    scoped: bool,
}

/// Session variables whose value the server uses up: the next insert takes
/// `insert_id` (and the next transaction `gtid_seq_no`), `last_insert_id`
/// and `identity` hold until the next insert, the random seeds move with
/// each RAND(). Run again on another connection, they would apply twice.
const ONE_SHOT: [&str; 6] =
    ["insert_id", "last_insert_id", "identity", "gtid_seq_no", "rand_seed1", "rand_seed2"];

fn is_one_shot(name: &str) -> bool {
    ONE_SHOT.iter().any(|v| name.eq_ignore_ascii_case(v))
}

/// A `@@scope.` prefix that assigns the global value.
fn is_global_scope(scope: &str) -> bool {
    ["global", "persist", "persist_only"].iter().any(|s| scope.eq_ignore_ascii_case(s))
}

impl SetScan {
    pub fn new() -> SetScan {
        SetScan {
            state: State::Target,
            global_scope: false,
            assignments: 0,
            users: 0,
            globals: 0,
            names: false,
            transaction: false,
            account: false,
            on_autocommit: false,
            value_tokens: 0,
            value_bool: None,
            autocommit: None,
            autocommit_unclear: false,
            one_shot: false,
            scoped: false,
        }
    }

    /// Feeds a token after the leading SET; `depth` is its parenthesis depth.
    pub fn feed(&mut self, sql: &str, t: &Token, depth: u16) -> SetEvent {
        match self.state {
            State::Target => return self.target(sql, t),
            State::Name => self.name(sql, t),
            State::Value => self.value(sql, t, depth),
            State::SkipToComma if depth == 0 && t.tok == Tok::Comma => self.state = State::Target,
            State::StatementVars if depth == 0 && t.kw == Some(Kw::FOR) => {
                return SetEvent::Restart;
            }
            _ => {}
        }
        SetEvent::Nothing
    }

    fn target(&mut self, sql: &str, t: &Token) -> SetEvent {
        self.state = State::SkipToComma;
        match (t.tok, t.kw) {
            (_, Some(Kw::GLOBAL | Kw::PERSIST | Kw::PERSIST_ONLY)) => self.scope(true),
            (_, Some(Kw::SESSION | Kw::LOCAL)) => self.scope(false),
            (_, Some(Kw::TRANSACTION)) => {
                self.transaction = true;
                self.one_shot |= !self.scoped;
                self.state = State::SkipToEnd;
            }
            (_, Some(Kw::NAMES | Kw::CHARACTER | Kw::CHARSET)) => self.names = true,
            (_, Some(Kw::PASSWORD | Kw::DEFAULT)) => {
                self.account = true;
                self.state = State::SkipToEnd;
            }
            (_, Some(Kw::ROLE)) => self.variable(false, false),
            (_, Some(Kw::STATEMENT)) => self.state = State::StatementVars,
            (Tok::UserVar, _) => {
                self.users = self.users.saturating_add(1);
                self.variable(false, false);
                return SetEvent::UserTarget;
            }
            (Tok::SysVar, _) => self.system_variable(sql, t),
            (Tok::Word | Tok::QuotedIdent, _) => {
                self.one_shot |= !self.global_scope && is_one_shot(t.text(sql).trim_matches('`'));
                let autocommit = t.kw == Some(Kw::AUTOCOMMIT);
                self.variable(self.global_scope, autocommit);
            }
            _ => {}
        }
        SetEvent::Nothing
    }

    fn scope(&mut self, global: bool) {
        self.global_scope = global;
        self.scoped = true;
        self.state = State::Target;
    }

    fn system_variable(&mut self, sql: &str, t: &Token) {
        let (scope, name) = t.sys_var(sql);
        let global = is_global_scope(scope);
        self.one_shot |= !global && is_one_shot(name);
        self.variable(global, name.eq_ignore_ascii_case("autocommit"));
    }

    fn variable(&mut self, global: bool, autocommit: bool) {
        self.assignments = self.assignments.saturating_add(1);
        self.globals = self.globals.saturating_add(u8::from(global));
        self.on_autocommit = autocommit;
        self.value_tokens = 0;
        self.value_bool = None;
        self.state = State::Name;
    }

    fn name(&mut self, sql: &str, t: &Token) {
        if t.is_op(sql, "=") || t.is_op(sql, ":=") {
            self.state = State::Value;
        } else if !matches!(t.tok, Tok::Dot | Tok::Word | Tok::QuotedIdent) {
            self.state = State::SkipToComma;
        }
    }

    fn value(&mut self, sql: &str, t: &Token, depth: u16) {
        if depth == 0 && t.tok == Tok::Comma {
            self.end_value();
            self.state = State::Target;
            return;
        }
        self.value_tokens = self.value_tokens.saturating_add(1);
        if self.value_tokens == 1 {
            self.value_bool = literal_bool(sql, t);
        }
    }

    fn end_value(&mut self) {
        if self.state != State::Value || !self.on_autocommit {
            return;
        }
        match (self.value_tokens, self.value_bool) {
            (1, Some(v)) => self.autocommit = Some(v),
            _ => self.autocommit_unclear = true,
        }
    }

    /// Whether, once the statement has ended, an assignment may turn
    /// autocommit off (see `Flags::AUTOCOMMIT_OFF`).
    pub fn may_turn_autocommit_off(&self) -> bool {
        let mut done = SetScan { ..*self };
        done.end_value();
        done.autocommit == Some(false) || done.autocommit_unclear
    }

    /// Whether the statement sets session variables (or NAMES) beside a
    /// global one: a `SetGlobal` whose session part changes the session.
    pub fn sets_session_beside_global(&self) -> bool {
        let sessions = self.assignments.saturating_sub(self.globals).saturating_sub(self.users);
        self.globals > 0 && (sessions > 0 || self.names)
    }

    /// The kind, once the statement has ended.
    pub fn finish(&self) -> K {
        let mut done = SetScan { ..*self };
        done.end_value();
        done.kind()
    }

    fn kind(&self) -> K {
        if self.account {
            K::Grant
        } else if self.transaction {
            if self.global_scope { K::SetGlobal } else { K::SetTransaction }
        } else if self.globals > 0 {
            K::SetGlobal
        } else if let (1, false, Some(v), false) =
            (self.assignments, self.names, self.autocommit, self.autocommit_unclear)
        {
            K::SetAutocommit(v)
        } else if self.assignments > 0 && self.users == self.assignments && !self.names {
            K::SetUserVar
        } else if self.names && self.assignments == 0 {
            K::SetNames
        } else {
            K::SetSession
        }
    }
}

/// 0/1/ON/OFF/TRUE/FALSE, bare or quoted, as autocommit accepts them.
fn literal_bool(sql: &str, t: &Token) -> Option<bool> {
    let text = match t.tok {
        Tok::Num | Tok::Word => t.text(sql),
        Tok::Str => t.text(sql).get(1..t.text(sql).len().saturating_sub(1)).unwrap_or(""),
        _ => return None,
    };
    if ["1", "on", "true"].iter().any(|v| text.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if ["0", "off", "false"].iter().any(|v| text.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

/// The value of `SET @name = value` when the whole text is that one
/// assignment (comments anywhere, `;`s after it), a string unquoted.
/// `Err` with the text from the value on when the statement assigns
/// `@name` but is more than that (another statement, an expression, an
/// unterminated string); `None` for any other statement. Nothing is
/// allocated.
pub fn user_variable_value<'a>(
    sql: &'a str,
    backslashes: Backslashes,
    name: &str,
) -> Option<Result<&'a str, &'a str>> {
    let mut lx = Lexer::new(sql, backslashes);
    if lx.next().kw != Some(Kw::SET) {
        return None;
    }
    let var = lx.next();
    let var_name = var.text(sql).get(1..).unwrap_or("");
    if var.tok != Tok::UserVar || !var_name.eq_ignore_ascii_case(name) {
        return None;
    }
    let assign = lx.next();
    if !assign.is_op(sql, "=") && !assign.is_op(sql, ":=") {
        return None;
    }
    let value = lx.next();
    let from_value = sql.get(value.start..).unwrap_or("").trim_end();
    let text = value.text(sql);
    let quoted = |q: char| text.len() >= 2 && text.starts_with(q) && text.ends_with(q);
    let unquoted = match value.tok {
        Tok::Str if quoted('\'') || quoted('"') => &text[1..text.len() - 1],
        Tok::Word | Tok::Num | Tok::Param => text,
        _ => return Some(Err(from_value)),
    };
    loop {
        let t = lx.next();
        match t.tok {
            Tok::Semi => {}
            Tok::End if !lx.broken => return Some(Ok(unquoted)),
            _ => return Some(Err(from_value)),
        }
    }
}

/// What a SET statement did to the session's `wait_timeout`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitTimeout {
    /// Set to this many seconds (clamped to the server's range, 1 second
    /// to a year, as the server clamps it).
    Seconds(u64),
    /// Set to DEFAULT (the global value), or to something the proxy does
    /// not evaluate (an expression, a variable): no longer known.
    Unknown,
}

/// The session `wait_timeout` a SET statement leaves, from its last
/// assignment to it (`SET wait_timeout = 5`, `SET SESSION wait_timeout =
/// 5, ...`, `SET @@wait_timeout = 5`, `SET @@local.wait_timeout = 5`);
/// `None` when it does not assign the session's (GLOBAL, `SET STATEMENT
/// ... FOR`, another variable).
pub fn wait_timeout_set(sql: &str, backslashes: Backslashes) -> Option<WaitTimeout> {
    const MAX_SECONDS: u64 = 31_536_000;
    let value = session_value_set(sql, backslashes, "wait_timeout")?;
    let seconds = value.filter(|v| v.tok == Tok::Num).and_then(|v| v.text(sql).parse::<u64>().ok());
    Some(seconds.map_or(WaitTimeout::Unknown, |s| WaitTimeout::Seconds(s.clamp(1, MAX_SECONDS))))
}

/// Whether a SET statement leaves the session in a state whose reads only
/// the connection it ran on answers right: `sql_auto_is_null` on (`WHERE
/// id IS NULL` finds the row that connection inserted last), binary
/// logging off (its writes reach no replica), or READ UNCOMMITTED (its
/// reads see other sessions' uncommitted rows, only on the primary). Each
/// variable's value is read only when the text names it.
pub fn set_keeps_reads_here(sql: &str, backslashes: Backslashes) -> bool {
    let names =
        |name: &[u8]| sql.as_bytes().windows(name.len()).any(|w| w.eq_ignore_ascii_case(name));
    (names(b"sql_auto_is_null") && sql_auto_is_null_set(sql, backslashes) == Some(true))
        || (names(b"sql_log_bin") && sql_log_bin_off_set(sql, backslashes) == Some(true))
        || (names(b"isolation") && read_uncommitted_set(sql, backslashes))
}

/// Whether a SET statement turns the session's `sql_auto_is_null` on
/// (`1`, `ON`, `TRUE`, or a value the proxy does not evaluate): then `WHERE
/// id IS NULL` finds the row the connection last inserted. `None` when it
/// does not assign it.
pub(super) fn sql_auto_is_null_set(sql: &str, backslashes: Backslashes) -> Option<bool> {
    let value = session_value_set(sql, backslashes, "sql_auto_is_null")?;
    let off =
        value.is_some_and(|v| v.kw == Some(Kw::DEFAULT) || literal_bool(sql, &v) == Some(false));
    Some(!off)
}

/// Whether a SET statement may turn the session's binary logging off
/// (`sql_log_bin` to 0, OFF, FALSE, or a value the proxy does not
/// evaluate): the session's writes after it reach no replica. `None` when
/// it does not assign it.
pub(super) fn sql_log_bin_off_set(sql: &str, backslashes: Backslashes) -> Option<bool> {
    let value = session_value_set(sql, backslashes, "sql_log_bin")?;
    let on =
        value.is_some_and(|v| v.kw == Some(Kw::DEFAULT) || literal_bool(sql, &v) == Some(true));
    Some(!on)
}

/// Whether a SET statement may leave the session's isolation level at
/// READ UNCOMMITTED, under which a read on the primary sees other
/// sessions' uncommitted rows (a replica holds only what they committed):
/// `SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED`, or
/// `tx_isolation` or `transaction_isolation` set to 'READ-UNCOMMITTED',
/// 0, or a value the proxy does not evaluate. Its caller rules out the
/// one-shot `SET TRANSACTION`, which only the next transaction takes.
pub(super) fn read_uncommitted_set(sql: &str, backslashes: Backslashes) -> bool {
    let mut lx = Lexer::new(sql, backslashes);
    if lx.next().kw != Some(Kw::SET) {
        return false;
    }
    loop {
        let t = lx.next();
        match t.tok {
            Tok::End => break,
            Tok::Word if t.text(sql).eq_ignore_ascii_case("UNCOMMITTED") => return true,
            _ => {}
        }
    }
    ["tx_isolation", "transaction_isolation"].iter().any(|name| {
        session_value_set(sql, backslashes, name).is_some_and(|value| {
            value.is_none_or(|v| {
                value_text(sql, &v)
                    .is_some_and(|t| t.eq_ignore_ascii_case("READ-UNCOMMITTED") || t == "0")
            })
        })
    })
}

/// Whether a SET statement leaves the session's `completion_type` at
/// RELEASE (`2`, `'RELEASE'`), under which the server ends the connection
/// after each COMMIT and ROLLBACK. `None` when it does not assign the
/// session's; a value the proxy does not evaluate (an expression,
/// DEFAULT) counts as another.
pub fn completion_release_set(sql: &str, backslashes: Backslashes) -> Option<bool> {
    let value = session_value_set(sql, backslashes, "completion_type")?;
    Some(value.is_some_and(|v| {
        value_text(sql, &v).is_some_and(|t| t == "2" || t.eq_ignore_ascii_case("RELEASE"))
    }))
}

/// A one-token value's text, a string's without its quotes.
fn value_text<'a>(sql: &'a str, v: &Token) -> Option<&'a str> {
    match v.tok {
        Tok::Str => v.text(sql).get(1..v.text(sql).len().saturating_sub(1)),
        _ => Some(v.text(sql)),
    }
}

/// The value a SET statement's last assignment to session variable `name`
/// gives it: `Some(Some(token))` when it is one token (a number, a word, a
/// string), `Some(None)` for anything longer (an expression, a variable);
/// `None` when it does not assign the session's (GLOBAL, `SET STATEMENT
/// ... FOR`, another variable).
fn session_value_set(sql: &str, backslashes: Backslashes, name: &str) -> Option<Option<Token>> {
    let mut lx = Lexer::new(sql, backslashes);
    if lx.next().kw != Some(Kw::SET) {
        return None;
    }
    let mut found = None;
    let mut global_scope = false;
    let mut depth = 0u16;
    // Starting an assignment: its variable, or a scope keyword.
    let mut at_target = true;
    // Inside the value assigned to `name`: its first token, and whether
    // more followed.
    let mut value: Option<(Token, bool)> = None;
    let mut assigned = false;
    loop {
        let t = lx.next();
        let ends = matches!(t.tok, Tok::End | Tok::Semi) || (depth == 0 && t.tok == Tok::Comma);
        if ends {
            if assigned {
                found = Some(match value {
                    Some((v, false)) if matches!(v.tok, Tok::Num | Tok::Word | Tok::Str) => Some(v),
                    _ => None,
                });
            }
            if t.tok != Tok::Comma {
                return found;
            }
            (at_target, value, assigned) = (true, None, false);
            continue;
        }
        match t.tok {
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if assigned {
            match &mut value {
                None => value = Some((t, false)),
                Some((_, more)) => *more = true,
            }
            continue;
        }
        if !at_target {
            continue;
        }
        at_target = false;
        let ours = match (t.tok, t.kw) {
            (_, Some(Kw::GLOBAL | Kw::PERSIST | Kw::PERSIST_ONLY)) => {
                (global_scope, at_target) = (true, true);
                continue;
            }
            (_, Some(Kw::SESSION | Kw::LOCAL)) => {
                (global_scope, at_target) = (false, true);
                continue;
            }
            (_, Some(Kw::STATEMENT)) => return None,
            (Tok::SysVar, _) => {
                let (scope, var) = t.sys_var(sql);
                !is_global_scope(scope) && var.eq_ignore_ascii_case(name)
            }
            (Tok::Word | Tok::QuotedIdent, _) => {
                !global_scope && t.text(sql).trim_matches('`').eq_ignore_ascii_case(name)
            }
            _ => false,
        };
        if ours {
            let assign = lx.next();
            if !assign.is_op(sql, "=") && !assign.is_op(sql, ":=") {
                return found;
            }
            assigned = true;
        }
    }
}
