//! A statement's shape from its first tokens: most kinds are decided by the leading
//! keyword and one or two after it. Kinds that need the whole statement are left as a
//! shape for the scanner to finish: a query (is it a read, or a CTE ending in a write?),
//! an EXPLAIN of a query, a SET (which variables?), or unsure (the parser tier decides).

use super::info::{Flags, StatementKind as K};
use super::lexer::{Backslashes, Lexer, Tok, Token};
use super::words::Kw;

/// How many leading tokens are kept per statement.
pub(super) const LEAD_MAX: usize = 14;

/// A leading token, compact: the scanner keeps up to [`LEAD_MAX`] per statement.
#[derive(Clone, Copy)]
struct LeadTok {
    tok: Tok,
    kw: Option<Kw>,
    start: u32,
    end: u32,
}

impl LeadTok {
    fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start as usize..self.end as usize).unwrap_or("")
    }
}

/// The first tokens of a statement.
pub(super) struct Lead {
    toks: [LeadTok; LEAD_MAX],
    len: usize,
}

/// What the leading tokens say about a statement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Shape {
    /// Decided.
    Fixed(K),
    /// SELECT, VALUES, TABLE, WITH or a parenthesised query: a read unless the scan finds
    /// a CTE ending in a write, or something it cannot place.
    Query,
    /// EXPLAIN of a query: `Explain { of_read }` once the query is resolved.
    ExplainQuery,
    /// SET: the SET scanner decides.
    Set,
    /// A compound statement (BEGIN NOT ATOMIC, IF, a stored program body): Unknown, and its
    /// `;` do not split statements.
    Compound,
    /// The lexer cannot tell: the parser tier decides.
    Unsure,
}

const NO_TOKEN: LeadTok = LeadTok { tok: Tok::End, kw: None, start: 0, end: 0 };

/// Positions past 4 GiB do not fit; such a token's text reads as empty (never a panic).
fn pos(p: usize) -> u32 {
    u32::try_from(p).unwrap_or(u32::MAX)
}

impl Lead {
    pub fn new() -> Lead {
        Lead { toks: [NO_TOKEN; LEAD_MAX], len: 0 }
    }

    #[inline]
    pub fn push(&mut self, t: &Token) {
        if self.len < LEAD_MAX {
            self.toks[self.len] =
                LeadTok { tok: t.tok, kw: t.kw, start: pos(t.start), end: pos(t.end) };
            self.len += 1;
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn kw(&self, i: usize) -> Option<Kw> {
        self.toks[..self.len].get(i).and_then(|t| t.kw)
    }

    fn tok(&self, i: usize) -> Tok {
        self.toks[..self.len].get(i).map_or(Tok::End, |t| t.tok)
    }

    fn is(&self, i: usize, kw: Kw) -> bool {
        self.kw(i) == Some(kw)
    }

    fn word_is(&self, sql: &str, i: usize, word: &str) -> bool {
        self.toks[..self.len]
            .get(i)
            .is_some_and(|t| t.tok == Tok::Word && t.text(sql).eq_ignore_ascii_case(word))
    }

    fn op_is(&self, sql: &str, i: usize, op: &str) -> bool {
        self.toks[..self.len].get(i).is_some_and(|t| t.tok == Tok::Op && t.text(sql) == op)
    }

    fn any(&self, from: usize, kw: Kw) -> bool {
        (from..self.len).any(|i| self.is(i, kw))
    }

    /// The shape, with flags the leading tokens alone imply.
    pub fn shape(&self, sql: &str) -> (Shape, Flags) {
        shape_at(self, sql, 0)
    }

    /// True when `;` inside this statement must not split it.
    pub fn is_compound(&self, sql: &str) -> bool {
        match self.kw(0) {
            Some(Kw::CREATE) => {
                let i = skip_create_modifiers(self, sql, 1);
                matches!(self.kw(i), Some(Kw::PROCEDURE | Kw::FUNCTION | Kw::TRIGGER | Kw::EVENT))
            }
            _ => shape_at(self, sql, 0).0 == Shape::Compound,
        }
    }
}

fn fixed(kind: K) -> (Shape, Flags) {
    (Shape::Fixed(kind), Flags::EMPTY)
}

fn shape_at(l: &Lead, sql: &str, i: usize) -> (Shape, Flags) {
    if l.tok(i) == Tok::LParen {
        return paren_shape(l, i);
    }
    if l.tok(i) == Tok::Word && l.kw(i).is_none() && l.op_is(sql, i + 1, ":") {
        // `label: BEGIN ... END` and friends.
        return (Shape::Compound, Flags::EMPTY);
    }
    let Some(kw) = l.kw(i) else {
        return (Shape::Unsure, Flags::EMPTY);
    };
    match kw {
        Kw::SELECT | Kw::VALUES | Kw::TABLE | Kw::WITH => (Shape::Query, Flags::EMPTY),
        Kw::SHOW => show_shape(l, sql, i + 1),
        Kw::DESC | Kw::DESCRIBE | Kw::EXPLAIN => explain_shape(l, sql, i + 1),
        Kw::ANALYZE => analyze_shape(l, sql, i + 1),
        Kw::SET => (Shape::Set, Flags::EMPTY),
        Kw::GET => (Shape::Fixed(K::Other), Flags::LAST_STATEMENT_FUNC),
        _ => (
            data_or_ddl(l, sql, kw, i).map_or_else(|| transaction_or_admin(l, kw, i), Shape::Fixed),
            Flags::EMPTY,
        ),
    }
}

fn paren_shape(l: &Lead, i: usize) -> (Shape, Flags) {
    let mut j = i;
    while l.tok(j) == Tok::LParen {
        j += 1;
    }
    match l.kw(j) {
        Some(Kw::SELECT | Kw::WITH | Kw::VALUES | Kw::TABLE) => (Shape::Query, Flags::EMPTY),
        _ => (Shape::Unsure, Flags::EMPTY),
    }
}

/// DML, DDL and account management, decided by the leading keyword and what follows it.
fn data_or_ddl(l: &Lead, sql: &str, kw: Kw, i: usize) -> Option<K> {
    Some(match kw {
        Kw::INSERT => K::Insert,
        Kw::REPLACE => K::Replace,
        Kw::UPDATE => K::Update,
        Kw::DELETE => K::Delete,
        Kw::LOAD if matches!(l.kw(i + 1), Some(Kw::DATA)) || l.word_is(sql, i + 1, "XML") => {
            K::LoadData
        }
        Kw::CREATE => create_kind(l, sql, i + 1),
        Kw::DROP => drop_kind(l, i + 1),
        Kw::ALTER | Kw::RENAME if matches!(l.kw(i + 1), Some(Kw::USER)) => K::Grant,
        Kw::ALTER | Kw::RENAME | Kw::TRUNCATE => K::Ddl,
        Kw::GRANT | Kw::REVOKE => K::Grant,
        _ => return None,
    })
}

fn skip_create_modifiers(l: &Lead, sql: &str, mut i: usize) -> usize {
    loop {
        if l.is(i, Kw::OR) && l.is(i + 1, Kw::REPLACE) {
            i += 2;
        } else if l.is(i, Kw::DEFINER) {
            i = skip_account(l, sql, i + 2);
        } else if l.is(i, Kw::ALGORITHM)
            || (l.word_is(sql, i, "SQL") && l.word_is(sql, i + 1, "SECURITY"))
        {
            // ALGORITHM = name | SQL SECURITY name
            i += 3;
        } else if l.word_is(sql, i, "AGGREGATE") || l.word_is(sql, i, "ONLINE") {
            i += 1;
        } else {
            return i;
        }
    }
}

/// Skips `name[@host]` or `CURRENT_USER[()]` starting at `i`.
fn skip_account(l: &Lead, sql: &str, i: usize) -> usize {
    let mut i = i + 1;
    if l.op_is(sql, i, "@") {
        i += 2;
    }
    if l.tok(i) == Tok::LParen && l.tok(i + 1) == Tok::RParen {
        i += 2;
    }
    i
}

fn create_kind(l: &Lead, sql: &str, i: usize) -> K {
    let i = skip_create_modifiers(l, sql, i);
    match l.kw(i) {
        Some(Kw::TEMPORARY) => K::CreateTemporaryTable,
        Some(Kw::USER | Kw::ROLE) => K::Grant,
        _ => K::Ddl,
    }
}

fn drop_kind(l: &Lead, i: usize) -> K {
    match l.kw(i) {
        Some(Kw::TEMPORARY) => K::DropTemporaryTable,
        Some(Kw::USER | Kw::ROLE) => K::Grant,
        Some(Kw::PREPARE) => K::Deallocate,
        _ => K::Ddl,
    }
}

/// Transaction control, session and admin statements; Unsure for an unknown keyword.
fn transaction_or_admin(l: &Lead, kw: Kw, i: usize) -> Shape {
    let kind = match kw {
        Kw::BEGIN => return begin_shape(l, i + 1),
        Kw::START if l.is(i + 1, Kw::TRANSACTION) => start_transaction(l, i + 2),
        Kw::COMMIT => K::Commit,
        Kw::ROLLBACK if l.any(i + 1, Kw::TO) => K::RollbackToSavepoint,
        Kw::ROLLBACK => K::Rollback,
        Kw::SAVEPOINT => K::Savepoint,
        Kw::RELEASE if l.is(i + 1, Kw::SAVEPOINT) => K::ReleaseSavepoint,
        Kw::USE => K::Use,
        Kw::LOCK if matches!(l.kw(i + 1), Some(Kw::TABLES | Kw::TABLE)) => K::LockTables,
        Kw::UNLOCK if matches!(l.kw(i + 1), Some(Kw::TABLES | Kw::TABLE)) => K::UnlockTables,
        Kw::PREPARE => K::Prepare,
        Kw::EXECUTE => K::Execute,
        Kw::DEALLOCATE => K::Deallocate,
        Kw::XA => K::Xa,
        Kw::FLUSH => K::Flush,
        Kw::KILL => K::Kill,
        Kw::CALL => K::Call,
        Kw::DO => K::Do,
        Kw::HANDLER => K::Handler,
        Kw::IF | Kw::CASE | Kw::LOOP | Kw::WHILE | Kw::REPEAT | Kw::DECLARE => {
            return Shape::Compound;
        }
        k if is_admin(k) => K::Other,
        _ => return Shape::Unsure,
    };
    Shape::Fixed(kind)
}

fn is_admin(kw: Kw) -> bool {
    matches!(
        kw,
        Kw::OPTIMIZE
            | Kw::CHECK
            | Kw::REPAIR
            | Kw::CHECKSUM
            | Kw::INSTALL
            | Kw::UNINSTALL
            | Kw::SHUTDOWN
            | Kw::RESET
            | Kw::PURGE
            | Kw::CHANGE
            | Kw::STOP
            | Kw::START
            | Kw::RESTART
            | Kw::CLONE
            | Kw::BINLOG
            | Kw::CACHE
            | Kw::HELP
            | Kw::SIGNAL
            | Kw::RESIGNAL
            | Kw::IMPORT
            | Kw::BACKUP
            | Kw::LOAD
            | Kw::LOCK
            | Kw::UNLOCK
            | Kw::RELEASE
    )
}

fn begin_shape(l: &Lead, i: usize) -> Shape {
    let work = usize::from(l.is(i, Kw::WORK));
    match l.tok(i + work) {
        Tok::End => Shape::Fixed(K::Begin { read_only: false }),
        _ => Shape::Compound,
    }
}

fn start_transaction(l: &Lead, i: usize) -> K {
    let read_only = (i..l.len).any(|j| l.is(j, Kw::READ) && l.is(j + 1, Kw::ONLY));
    K::Begin { read_only }
}

fn show_shape(l: &Lead, sql: &str, i: usize) -> (Shape, Flags) {
    let last_statement = match l.kw(i) {
        Some(Kw::WARNINGS | Kw::ERRORS | Kw::PROFILE | Kw::PROFILES) => true,
        Some(Kw::COUNT) => matches!(l.kw(i + 4), Some(Kw::WARNINGS | Kw::ERRORS)),
        _ => shows_session_status(l, sql, i),
    };
    let mut flags = if last_statement { Flags::LAST_STATEMENT_FUNC } else { Flags::EMPTY };
    if shows_global(l, sql, i) {
        flags |= Flags::GLOBAL_READ;
    }
    // SHOW USER_VARIABLES (the user_variables plugin): the session's own.
    if l.word_is(sql, i, "USER_VARIABLES") {
        flags |= Flags::USER_VAR_READ;
    }
    // SHOW ENGINE INNODB STATUS: its transactions, lock waits, deadlocks.
    let engine_status = l.word_is(sql, i, "ENGINE") && l.word_is(sql, i + 2, "STATUS");
    // SHOW EXPLAIN|ANALYZE FOR n: the plan of a statement running on a
    // connection from the processlist, the primary's.
    let running_plan = l.word_is(sql, i, "EXPLAIN") || l.is(i, Kw::ANALYZE);
    if shows_replication_state(l, sql, i)
        || shows_primary_variables(l, sql, i)
        || after_processlist(l, sql, i).is_some()
        || engine_status
        || running_plan
    {
        flags |= Flags::PRIMARY_STATE;
    }
    (Shape::Fixed(K::Show), flags)
}

/// SHOW [GLOBAL | SESSION | LOCAL] VARIABLES (the session's list holds
/// the global-only variables too) and SHOW GLOBAL STATUS at token `i`: the
/// server's settings and counters.
fn shows_global(l: &Lead, sql: &str, i: usize) -> bool {
    let global = l.word_is(sql, i, "GLOBAL");
    let scoped = global || l.word_is(sql, i, "SESSION") || l.word_is(sql, i, "LOCAL");
    let i = if scoped { i + 1 } else { i };
    l.word_is(sql, i, "VARIABLES") || global && l.word_is(sql, i, "STATUS")
}

/// SHOW [SESSION | LOCAL] STATUS at token `i`: the counters of one
/// connection, such as `Last_query_cost` and `Handler_read_key`, which
/// describe the statements that ran there.
fn shows_session_status(l: &Lead, sql: &str, i: usize) -> bool {
    let i = if l.word_is(sql, i, "SESSION") || l.word_is(sql, i, "LOCAL") { i + 1 } else { i };
    l.word_is(sql, i, "STATUS")
}

/// `[FULL] PROCESSLIST` at token `i`: the token after it.
fn after_processlist(l: &Lead, sql: &str, i: usize) -> Option<usize> {
    let i = if l.word_is(sql, i, "FULL") { i + 1 } else { i };
    l.is(i, Kw::PROCESSLIST).then_some(i + 1)
}

/// SHOW [GLOBAL | SESSION | LOCAL] VARIABLES that may list a variable only
/// the primary answers (`read_only`, the GTID positions): all of them, a
/// LIKE pattern matching one, or a WHERE that names one.
fn shows_primary_variables(l: &Lead, sql: &str, i: usize) -> bool {
    let i =
        if ["GLOBAL", "SESSION", "LOCAL"].iter().any(|w| l.word_is(sql, i, w)) { i + 1 } else { i };
    if !l.word_is(sql, i, "VARIABLES") {
        return false;
    }
    let names = super::stmt::PRIMARY_STATE_VARIABLES;
    if l.tok(i + 1) == Tok::End {
        return true;
    }
    if let Some(pattern) = like_pattern(l, sql, i + 1) {
        return names.iter().any(|name| like(pattern.as_bytes(), name.as_bytes()));
    }
    if l.is(i + 1, Kw::WHERE) {
        let rest = sql.get(l.toks[i + 1].end as usize..).unwrap_or("").as_bytes();
        return names
            .iter()
            .any(|name| rest.windows(name.len()).any(|w| w.eq_ignore_ascii_case(name.as_bytes())));
    }
    false
}

/// The pattern of `LIKE '<pattern>'` at token `i`, without its quotes.
fn like_pattern<'a>(l: &Lead, sql: &'a str, i: usize) -> Option<&'a str> {
    if !l.is(i, Kw::LIKE) || l.tok(i + 1) != Tok::Str {
        return None;
    }
    let quoted = l.toks[i + 1].text(sql);
    Some(quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or(""))
}

/// The leading tokens of a whole statement short enough to fit them
/// (comments skipped); None for a longer one.
fn whole_lead(sql: &str, backslashes: Backslashes) -> Option<Lead> {
    let mut l = Lead::new();
    let mut lx = Lexer::new(sql, backslashes);
    loop {
        let t = lx.next();
        if t.tok == Tok::End {
            return Some(l);
        }
        if l.len == LEAD_MAX {
            return None;
        }
        l.push(&t);
    }
}

/// Nothing but a `;` from token `i` on.
fn ends_at(l: &Lead, i: usize) -> bool {
    l.tok(i) == Tok::End || (l.tok(i) == Tok::Semi && l.tok(i + 1) == Tok::End)
}

/// The pattern of `SHOW [SESSION | LOCAL] STATUS LIKE '<pattern>'` with
/// nothing after it but a `;` (comments anywhere), as the classifier reads
/// it; None for any other statement (GLOBAL, WHERE, a multi-statement).
pub fn show_status_pattern(sql: &str, backslashes: Backslashes) -> Option<&str> {
    let l = whole_lead(sql, backslashes)?;
    if !l.is(0, Kw::SHOW) {
        return None;
    }
    let i = if l.word_is(sql, 1, "SESSION") || l.word_is(sql, 1, "LOCAL") { 2 } else { 1 };
    let pattern = l.word_is(sql, i, "STATUS").then(|| like_pattern(&l, sql, i + 1))??;
    ends_at(&l, i + 3).then_some(pattern)
}

/// The `RELEASE` clause of a COMMIT or ROLLBACK: `Some(true)` for
/// RELEASE (the server ends the connection after its reply), `Some(false)`
/// for NO RELEASE, `None` without one (the session's `completion_type`
/// decides).
pub fn release_clause(sql: &str, backslashes: Backslashes) -> Option<bool> {
    let mut lx = Lexer::new(sql, backslashes);
    let mut after_no = false;
    loop {
        let t = lx.next();
        if matches!(t.tok, Tok::End | Tok::Semi) {
            return None;
        }
        if t.kw == Some(Kw::RELEASE) {
            return Some(!after_no);
        }
        after_no = t.tok == Tok::Word && t.text(sql).eq_ignore_ascii_case("NO");
    }
}

/// Whether the statement is `SHOW [FULL] PROCESSLIST` alone (comments
/// anywhere, a `;` after it).
pub fn is_show_processlist(sql: &str, backslashes: Backslashes) -> bool {
    whole_lead(sql, backslashes).is_some_and(|l| {
        l.is(0, Kw::SHOW) && after_processlist(&l, sql, 1).is_some_and(|end| ends_at(&l, end))
    })
}

/// Whether `name` matches the SQL LIKE `pattern` (`%`, `_`, `\\` escapes;
/// ASCII case folded, as for variable names). Linear backtracking to the
/// last `%` only, so no pattern a client writes costs more than
/// pattern × name steps.
pub fn like(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // After the last `%`: where the pattern resumes, and the name position
    // it was last tried from.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'%') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'_') => Some(1),
            Some(b'\\') if p + 1 < pattern.len() => {
                pattern[p + 1].eq_ignore_ascii_case(&name[n]).then_some(2)
            }
            Some(c) => c.eq_ignore_ascii_case(&name[n]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                p += len;
                n += 1;
            }
            (None, Some((resume, tried))) => {
                p = resume;
                n = tried + 1;
                star = Some((resume, tried + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'%')
}

/// SHOW MASTER/BINLOG STATUS, SHOW BINARY/MASTER LOGS, SHOW BINLOG EVENTS,
/// SHOW SLAVE/REPLICA HOSTS, SHOW REPLICAS (the same list), SHOW [ALL]
/// SLAVE/REPLICA [name] STATUS, from the word after SHOW.
fn shows_replication_state(l: &Lead, sql: &str, i: usize) -> bool {
    let word = |j: usize, w: &str| l.word_is(sql, j, w);
    let replica = |j: usize| ["SLAVE", "SLAVES", "REPLICA", "REPLICAS"].iter().any(|w| word(j, w));
    if word(i, "MASTER") || word(i, "BINLOG") {
        return word(i + 1, "STATUS") || word(i + 1, "LOGS") || word(i + 1, "EVENTS");
    }
    if word(i, "BINARY") {
        return word(i + 1, "LOGS");
    }
    if word(i, "REPLICAS") && l.tok(i + 1) == Tok::End {
        return true;
    }
    let i = if word(i, "ALL") { i + 1 } else { i };
    replica(i)
        && (word(i + 1, "HOSTS")
            || word(i + 1, "STATUS")
            || (l.tok(i + 1) != Tok::End && word(i + 2, "STATUS")))
}

/// Skips EXPLAIN/ANALYZE options; returns where the statement starts and whether it runs.
fn explain_options(l: &Lead, sql: &str, mut i: usize) -> (usize, bool) {
    let mut analyze = false;
    loop {
        match l.kw(i) {
            Some(Kw::EXTENDED | Kw::PARTITIONS) => i += 1,
            Some(Kw::ANALYZE) => {
                analyze = true;
                i += 1;
            }
            Some(Kw::FORMAT) => i += 3,
            _ if l.word_is(sql, i, "VERBOSE") => i += 1,
            _ => return (i, analyze),
        }
    }
}

fn explain_shape(l: &Lead, sql: &str, i: usize) -> (Shape, Flags) {
    let (j, analyze) = explain_options(l, sql, i);
    if analyze {
        return runs_statement(l, sql, j);
    }
    let shape = match (l.kw(j), l.tok(j)) {
        (Some(Kw::SELECT | Kw::WITH | Kw::VALUES | Kw::TABLE), _) | (None, Tok::LParen) => {
            Shape::ExplainQuery
        }
        (Some(Kw::INSERT | Kw::REPLACE | Kw::UPDATE | Kw::DELETE), _) => {
            Shape::Fixed(K::Explain { of_read: false })
        }
        (Some(Kw::FOR), _) => Shape::Fixed(K::Other),
        (_, Tok::Word | Tok::QuotedIdent) if j == i => Shape::Fixed(K::Describe),
        _ => Shape::Fixed(K::Unknown),
    };
    (shape, Flags::EMPTY)
}

fn analyze_shape(l: &Lead, sql: &str, i: usize) -> (Shape, Flags) {
    match l.kw(i) {
        Some(Kw::TABLE | Kw::NO_WRITE_TO_BINLOG | Kw::LOCAL) => fixed(K::Other),
        _ => {
            let (j, _) = explain_options(l, sql, i);
            runs_statement(l, sql, j)
        }
    }
}

/// EXPLAIN ANALYZE / ANALYZE <stmt> run the statement: they take its shape.
fn runs_statement(l: &Lead, sql: &str, j: usize) -> (Shape, Flags) {
    match l.kw(j) {
        Some(Kw::SELECT | Kw::WITH | Kw::VALUES | Kw::TABLE)
        | Some(Kw::INSERT | Kw::REPLACE | Kw::UPDATE | Kw::DELETE) => shape_at(l, sql, j),
        None if l.tok(j) == Tok::LParen => shape_at(l, sql, j),
        _ => fixed(K::Unknown),
    }
}
