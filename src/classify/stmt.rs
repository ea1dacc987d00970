//! One statement's scan: keeps its leading tokens for [`super::lead`], watches every token
//! for routing flags (locking reads, function calls, variables, INTO), follows CTEs to the
//! statement they end in, and at the end gives the statement's kind and flags, or says
//! it is unsure (the parser tier then decides).

use super::info::{Flags, StatementKind as K};
use super::lead::{Lead, Shape};
use super::lexer::{Tok, Token};
use super::set::{SetEvent, SetScan};
use super::words::{FuncClass, Kw};

/// One statement's verdict from the lexer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct StmtResult {
    /// `None` when the lexer is unsure.
    pub kind: Option<K>,
    pub flags: Flags,
    /// Byte range of the statement (first to last token).
    pub start: usize,
    pub end: usize,
}

/// The previous significant token, reduced to what the rules look at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Prev {
    tok: Tok,
    kw: Option<Kw>,
}

const NONE: Prev = Prev { tok: Tok::End, kw: None };

/// Open `WITH` lists, by the parenthesis depth they sit at.
struct WithStack {
    depths: [u16; 8],
    len: usize,
    /// A WITH list ended in a data-changing statement.
    write: Option<K>,
    /// A WITH list never reached its statement, or lists nested too deep.
    unresolved: bool,
}

impl WithStack {
    fn new() -> WithStack {
        WithStack { depths: [0; 8], len: 0, write: None, unresolved: false }
    }

    fn top(&self) -> Option<u16> {
        self.len.checked_sub(1).map(|i| self.depths[i])
    }

    fn open(&mut self, depth: u16) {
        if self.len == self.depths.len() {
            self.unresolved = true;
        } else {
            self.depths[self.len] = depth;
            self.len += 1;
        }
    }

    /// True when `kw` at `depth` is the statement a WITH list ends in.
    fn main_keyword(&mut self, kw: Kw, depth: u16) -> bool {
        if self.top() != Some(depth) {
            return false;
        }
        let write = match kw {
            Kw::SELECT | Kw::TABLE | Kw::VALUES => None,
            Kw::UPDATE => Some(K::Update),
            Kw::DELETE => Some(K::Delete),
            Kw::INSERT => Some(K::Insert),
            Kw::REPLACE => Some(K::Replace),
            _ => return false,
        };
        self.len -= 1;
        if self.write.is_none() {
            self.write = write;
        }
        true
    }

    /// A `)` closes `depth`: lists opened there never found their statement.
    fn close(&mut self, depth: u16) {
        while self.top().is_some_and(|d| d >= depth) {
            self.len -= 1;
            self.unresolved = true;
        }
    }
}

/// Scans one statement.
pub(super) struct StmtScan {
    lead: Lead,
    set: Option<SetScan>,
    with: WithStack,
    flags: Flags,
    depth: u16,
    prev: Prev,
    prev2: Prev,
    /// The token before the current (possibly dotted) name began.
    name_ctx: Prev,
    name_ctx_depth: u16,
    into_any: bool,
    into_list: bool,
    /// A data-changing keyword where a read has none.
    suspicious: bool,
    /// DDL, account and INSERT/REPLACE statements go to the primary whatever they call,
    /// and their column types and column lists look like calls: calls are not checked.
    skip_unknown_calls: bool,
    /// The token being fed is the statement's first (after a SET STATEMENT ... FOR too).
    first: bool,
    tokens: u32,
    start: usize,
    end: usize,
}

impl StmtScan {
    pub fn new() -> StmtScan {
        StmtScan {
            lead: Lead::new(),
            set: None,
            with: WithStack::new(),
            flags: Flags::EMPTY,
            depth: 0,
            prev: NONE,
            prev2: NONE,
            name_ctx: NONE,
            name_ctx_depth: 0,
            into_any: false,
            into_list: false,
            suspicious: false,
            skip_unknown_calls: false,
            first: false,
            tokens: 0,
            start: 0,
            end: 0,
        }
    }

    /// True when this statement's `;` must not end it (a compound statement).
    pub fn is_compound(&self, sql: &str) -> bool {
        self.lead.is_compound(sql)
    }

    /// True before the statement's first token.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Feeds one token; `next` is the token after it, `func` the builtin class of a word
    /// followed by `(`.
    pub fn feed(&mut self, sql: &str, t: &Token, next: &Token, func: Option<FuncClass>) {
        if self.tokens == 0 {
            self.start = t.start;
        }
        self.tokens += 1;
        self.end = t.end;
        let first = self.lead.is_empty();
        self.first = first;
        self.enter_name(t);
        self.lead.push(t);
        if first {
            self.on_first(t);
        }
        let set_event = match (&mut self.set, first) {
            (Some(set), false) => set.feed(sql, t, self.depth),
            _ => SetEvent::Nothing,
        };
        self.token(sql, t, next, func, set_event);
        if set_event == SetEvent::Restart {
            self.flags |= Flags::STATEMENT_SETS;
            self.lead.clear();
            self.set = None;
        }
        self.advance(t);
    }

    fn on_first(&mut self, t: &Token) {
        self.set = (t.kw == Some(Kw::SET)).then(SetScan::new);
        self.skip_unknown_calls = matches!(
            t.kw,
            Some(
                Kw::CREATE
                    | Kw::ALTER
                    | Kw::DROP
                    | Kw::RENAME
                    | Kw::GRANT
                    | Kw::REVOKE
                    | Kw::INSERT
                    | Kw::REPLACE
            )
        );
    }

    fn token(
        &mut self,
        sql: &str,
        t: &Token,
        next: &Token,
        func: Option<FuncClass>,
        set: SetEvent,
    ) {
        if matches!(t.tok, Tok::Word | Tok::QuotedIdent) && self.prev.tok == Tok::Dot {
            self.dotted_name(t.text(sql).trim_matches('`'));
        }
        match t.tok {
            Tok::LParen => self.depth = self.depth.saturating_add(1),
            Tok::RParen => {
                self.with.close(self.depth);
                self.depth = self.depth.saturating_sub(1);
            }
            Tok::Word => self.word(sql, t, next, func),
            Tok::QuotedIdent if next.tok == Tok::LParen => self.call(sql, t, None),
            // `"f"(`: a function's name under sql_mode ANSI_QUOTES.
            Tok::Str if next.tok == Tok::LParen && t.is_double_quoted(sql) => {
                self.call(sql, t, None);
            }
            Tok::UserVar => self.user_var(sql, next, set),
            Tok::SysVar => {
                let (scope, name) = t.sys_var(sql);
                self.sys_var(scope, name)
            }
            _ => {}
        }
    }

    /// Remembers what came before a name, unless `t` continues a dotted name.
    fn enter_name(&mut self, t: &Token) {
        let continues_name = match t.tok {
            Tok::Dot => matches!(self.prev.tok, Tok::Word | Tok::QuotedIdent),
            Tok::Word | Tok::QuotedIdent => self.prev.tok == Tok::Dot,
            _ => false,
        };
        if !continues_name {
            self.name_ctx = self.prev;
            self.name_ctx_depth = self.depth;
        }
    }

    fn advance(&mut self, t: &Token) {
        let p = Prev { tok: t.tok, kw: t.kw };
        if !matches!(t.tok, Tok::UserVar | Tok::Comma) && t.kw != Some(Kw::INTO) {
            self.into_list = false;
        }
        self.prev2 = self.prev;
        self.prev = p;
    }

    fn word(&mut self, sql: &str, t: &Token, next: &Token, func: Option<FuncClass>) {
        if let Some(kw) = t.kw {
            self.keyword(kw, next);
        }
        if t.after_dot && t.end - t.start == 7 && is_sequence_access(t.text(sql)) {
            self.flags |= Flags::SIDE_EFFECT_FUNC;
        }
        if next.tok == Tok::LParen {
            self.call(sql, t, func);
            if func == Some(FuncClass::LastStatement)
                && t.text(sql).eq_ignore_ascii_case("LAST_INSERT_ID")
            {
                if sql.get(next.end..).unwrap_or("").trim_start().starts_with(')') {
                    self.flags |= Flags::READS_LAST_INSERT_ID;
                } else {
                    self.flags |= Flags::SETS_LAST_INSERT_ID;
                }
            }
        }
    }

    /// `information_schema` tables a name after a dot may be: about the
    /// connection's previous statements (its optimizer trace, its
    /// profiles), read where those ran; the processlist, transactions and
    /// locks, the primary's; the global settings and counters, which a
    /// session that set one reads on the primary; the session's user
    /// variables, which live where it set them.
    fn dotted_name(&mut self, name: &str) {
        if ["OPTIMIZER_TRACE", "PROFILING", "SESSION_STATUS"]
            .iter()
            .any(|t| name.eq_ignore_ascii_case(t))
        {
            self.flags |= Flags::LAST_STATEMENT_FUNC;
        } else if PRIMARY_STATE_TABLES.iter().any(|t| name.eq_ignore_ascii_case(t)) {
            self.flags |= Flags::PRIMARY_STATE;
        } else if ["GLOBAL_VARIABLES", "SESSION_VARIABLES", "GLOBAL_STATUS"]
            .iter()
            .any(|t| name.eq_ignore_ascii_case(t))
        {
            self.flags |= Flags::GLOBAL_READ;
        } else if name.eq_ignore_ascii_case("USER_VARIABLES") {
            self.flags |= Flags::USER_VAR_READ;
        }
    }

    fn keyword(&mut self, kw: Kw, next: &Token) {
        let prev = self.prev.kw;
        match kw {
            Kw::UPDATE | Kw::SHARE if prev == Some(Kw::FOR) => self.flags |= Flags::LOCKING_READ,
            Kw::IN if prev == Some(Kw::LOCK) => self.flags |= Flags::LOCKING_READ,
            Kw::LOCKED if prev == Some(Kw::SKIP) => self.flags |= Flags::LOCKING_READ,
            Kw::NOWAIT => self.flags |= Flags::LOCKING_READ,
            Kw::SQL_CALC_FOUND_ROWS => self.flags |= Flags::SQL_CALC_FOUND_ROWS,
            Kw::FOR
                if prev == Some(Kw::VALUE)
                    && matches!(self.prev2.kw, Some(Kw::NEXT | Kw::PREVIOUS)) =>
            {
                self.flags |= Flags::SIDE_EFFECT_FUNC;
            }
            Kw::INTO => self.into(next),
            Kw::WITH if next.kw != Some(Kw::ROLLUP) => self.with.open(self.depth),
            _ => {}
        }
        if self.with.main_keyword(kw, self.depth) {
            return;
        }
        let writes = matches!(kw, Kw::INSERT | Kw::UPDATE | Kw::DELETE | Kw::REPLACE);
        if writes && prev != Some(Kw::FOR) && next.tok != Tok::LParen && !self.first {
            self.suspicious = true;
        }
    }

    fn into(&mut self, next: &Token) {
        self.into_any = true;
        self.into_list = true;
        let target =
            matches!(next.kw, Some(Kw::OUTFILE | Kw::DUMPFILE)) || next.tok == Tok::UserVar;
        if target {
            self.flags |= Flags::INTO;
        }
    }

    /// `name(`: a call unless the context says it is a table, a CTE or a column list.
    fn call(&mut self, sql: &str, t: &Token, func: Option<FuncClass>) {
        if self.not_a_call(t, sql) {
            return;
        }
        let func = if t.tok == Tok::QuotedIdent || t.after_dot { None } else { func };
        match func {
            Some(FuncClass::Pure) if reads_xpath_user_var(sql, t) => {
                self.flags |= Flags::USER_VAR_READ;
            }
            Some(FuncClass::Pure | FuncClass::NotCall) => {}
            Some(FuncClass::SideEffect) => self.flags |= Flags::SIDE_EFFECT_FUNC,
            Some(FuncClass::LastStatement) => self.flags |= Flags::LAST_STATEMENT_FUNC,
            None if self.skip_unknown_calls => {}
            None => self.flags |= Flags::UNKNOWN_FUNC,
        }
    }

    fn not_a_call(&self, t: &Token, sql: &str) -> bool {
        let by_keyword = matches!(
            self.name_ctx.kw,
            Some(
                Kw::INTO
                    | Kw::TABLE
                    | Kw::AS
                    | Kw::WITH
                    | Kw::RECURSIVE
                    | Kw::CALL
                    | Kw::REFERENCES
                    | Kw::PROCEDURE
                    | Kw::FUNCTION
                    | Kw::VIEW
            )
        );
        let cte_name =
            self.name_ctx.tok == Tok::Comma && self.with.top() == Some(self.name_ctx_depth);
        by_keyword || cte_name || self.contextual_keyword(t, sql)
    }

    /// Non-reserved words that take a parenthesis only in one context: `COLUMNS` after a
    /// JSON_TABLE path string, `ANY`/`SOME` after a comparison (a quantified subquery).
    fn contextual_keyword(&self, t: &Token, sql: &str) -> bool {
        if t.tok != Tok::Word || t.after_dot {
            return false;
        }
        let word = t.text(sql);
        if word.eq_ignore_ascii_case("COLUMNS") {
            self.prev.tok == Tok::Str
        } else if word.eq_ignore_ascii_case("ANY") || word.eq_ignore_ascii_case("SOME") {
            self.prev.tok == Tok::Op
        } else {
            false
        }
    }

    fn user_var(&mut self, sql: &str, next: &Token, set: SetEvent) {
        if set == SetEvent::UserTarget || next.is_op(sql, ":=") || self.into_list {
            self.flags |= Flags::USER_VAR_ASSIGN;
        } else {
            self.flags |= Flags::USER_VAR_READ;
        }
    }

    /// Flags for a system variable, by `name` (its scope left out).
    fn sys_var(&mut self, scope: &str, name: &str) {
        const LAST: [&str; 5] =
            ["warning_count", "error_count", "identity", "last_insert_id", "last_gtid"];
        if LAST.iter().any(|v| name.eq_ignore_ascii_case(v)) {
            self.flags |= Flags::LAST_STATEMENT_FUNC;
        }
        if ["identity", "last_insert_id"].iter().any(|v| name.eq_ignore_ascii_case(v)) {
            self.flags |= Flags::READS_LAST_INSERT_ID;
        }
        if PRIMARY_STATE_VARIABLES.iter().any(|v| name.eq_ignore_ascii_case(v)) {
            self.flags |= Flags::PRIMARY_STATE;
        }
        if super::answers::is_proxy_variable(scope, name) {
            self.flags |= Flags::PROXY_VARIABLE;
        } else if !scope.eq_ignore_ascii_case("session") && !scope.eq_ignore_ascii_case("local") {
            self.flags |= Flags::GLOBAL_READ;
        }
    }

    /// Makes the scanner ready for the next statement, in place.
    pub fn reset(&mut self) {
        *self = StmtScan::new();
    }

    /// The statement's verdict; `broken` when the lexer hit an unterminated construct.
    pub fn finish(&self, sql: &str, broken: bool) -> StmtResult {
        let (shape, lead_flags) = self.lead.shape(sql);
        let mut flags = self.flags | lead_flags;
        let kind = if broken {
            Some(K::Unknown)
        } else {
            match shape {
                Shape::Fixed(kind) => Some(kind),
                Shape::Query => {
                    if self.into_any {
                        flags |= Flags::INTO;
                    }
                    self.query_kind()
                }
                Shape::ExplainQuery => {
                    Some(K::Explain { of_read: self.query_kind() == Some(K::Select) })
                }
                Shape::Set => {
                    if self.set.as_ref().is_some_and(|set| set.one_shot) {
                        flags |= Flags::ONE_SHOT_SET;
                    }
                    if self.set.as_ref().is_some_and(SetScan::may_turn_autocommit_off) {
                        flags |= Flags::AUTOCOMMIT_OFF;
                    }
                    if self.set.as_ref().is_some_and(SetScan::sets_session_beside_global) {
                        flags |= Flags::SESSION_SET_BESIDE_GLOBAL;
                    }
                    Some(self.set.as_ref().map_or(K::SetSession, SetScan::finish))
                }
                Shape::Compound => Some(K::Unknown),
                Shape::Unsure => None,
            }
        };
        StmtResult { kind, flags, start: self.start, end: self.end }
    }

    fn query_kind(&self) -> Option<K> {
        if let Some(write) = self.with.write {
            return Some(write);
        }
        if self.with.unresolved || self.with.len > 0 || self.suspicious {
            return None;
        }
        Some(K::Select)
    }
}

/// `seq.NEXTVAL` and `seq.CURRVAL`: under sql_mode ORACLE a sequence's next
/// value (a write) and this session's last one (known only where it was
/// taken). In other modes a column of that name, which the primary answers
/// just as well.
fn is_sequence_access(word: &str) -> bool {
    word.eq_ignore_ascii_case("NEXTVAL") || word.eq_ignore_ascii_case("CURRVAL")
}

/// Whether `t`, a call of a pure function, is an XML function whose XPath
/// may read a user variable (`ExtractValue(doc, '/a/b[$@i]')`), which
/// lives where the session set it: a `$@` anywhere in the statement.
fn reads_xpath_user_var(sql: &str, t: &Token) -> bool {
    let name = t.text(sql);
    (name.eq_ignore_ascii_case("EXTRACTVALUE") || name.eq_ignore_ascii_case("UPDATEXML"))
        && sql.contains("$@")
}

/// `information_schema` and `performance_schema` tables of the sessions,
/// transactions and locks on a server: the writes and the locks they wait
/// for are on the primary, which the proxy presents itself as.
const PRIMARY_STATE_TABLES: [&str; 8] = [
    "PROCESSLIST",
    "INNODB_TRX",
    "INNODB_LOCKS",
    "INNODB_LOCK_WAITS",
    "METADATA_LOCK_INFO",
    "DATA_LOCKS",
    "DATA_LOCK_WAITS",
    "METADATA_LOCKS",
];

/// System variables only the primary answers for the proxy, which presents
/// itself as the primary (see `Flags::PRIMARY_STATE`).
pub(super) const PRIMARY_STATE_VARIABLES: [&str; 11] = [
    // One-shot values the session's next write takes on the primary: a
    // replica, where the SET is replayed, keeps them.
    "insert_id",
    "gtid_seq_no",
    "read_only",
    "super_read_only",
    "innodb_read_only",
    // A replica's connections are made read-only (see
    // `BackendConn::set_transactions_read_only`).
    "tx_read_only",
    "transaction_read_only",
    "gtid_binlog_pos",
    "gtid_binlog_state",
    "gtid_current_pos",
    "gtid_executed",
];
