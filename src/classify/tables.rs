//! Which tables a statement names, for sessions that hold temporary tables (a statement
//! that touches one must run where it lives). This allocates and is off the fast path.
//!
//! Names come from the places a table can stand: after FROM, JOIN, INTO, UPDATE, TABLE,
//! TABLES, LIKE, REFERENCES, USING (multi-table DELETE), TO (RENAME), after DESCRIBE,
//! HANDLER, TRUNCATE, INSERT/REPLACE/DELETE, and in the comma lists that follow. Names are
//! returned as written, case kept (table names are case sensitive on Linux), backticks
//! removed, qualified ones as `db.t`, each once, CTE names left out.
//! Note that MySQL's plain `DROP TABLE t` also drops a temporary table `t`.

use super::lexer::{Backslashes, Lexer, Tok, Token};
use super::words::{self, Kw};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Not in a table position.
    Normal,
    /// A table name may come next.
    Expect,
    /// After a table name: alias, hints, then `,` or JOIN for more.
    AfterName,
    /// After `name.`: the next word completes the last name.
    NamePart,
    /// Inside a call's or column list's parentheses: FROM here is not a table clause.
    Args,
}

struct Finder<'a> {
    sql: &'a str,
    names: Vec<String>,
    ctes: Vec<String>,
    mode: Mode,
    stack: Vec<Mode>,
    lead: Option<Kw>,
    lead_tokens: usize,
    prev: Option<Token>,
    with_depth: Option<usize>,
}

/// The tables `sql` names (all statements), in order of appearance, each once.
pub fn tables(sql: &str, backslashes: Backslashes) -> Vec<String> {
    let mut f = Finder {
        sql,
        names: Vec::new(),
        ctes: Vec::new(),
        mode: Mode::Normal,
        stack: Vec::new(),
        lead: None,
        lead_tokens: 0,
        prev: None,
        with_depth: None,
    };
    let mut lx = Lexer::new(sql, backslashes);
    let mut cur = lx.next();
    while cur.tok != Tok::End {
        let next = lx.next();
        f.token(&cur, &next);
        f.prev = Some(cur);
        cur = next;
    }
    let Finder { names, ctes, .. } = f;
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) && !ctes.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// What one statement does to the session's temporary tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TempTableChange {
    /// `CREATE [OR REPLACE] TEMPORARY TABLE name`.
    Created(String),
    /// `DROP [TEMPORARY] TABLE names`: those that are temporary tables go.
    Dropped(Vec<String>),
}

/// What one statement does to the session's temporary tables, if anything.
pub fn temp_table_change(stmt: &str, backslashes: Backslashes) -> Option<TempTableChange> {
    let mut lx = Lexer::new(stmt, backslashes);
    match lx.next().kw? {
        Kw::CREATE => temp_table_name(stmt, backslashes).map(TempTableChange::Created),
        Kw::DROP => {
            let mut t = lx.next();
            if t.kw == Some(Kw::TEMPORARY) {
                t = lx.next();
            }
            (t.kw == Some(Kw::TABLE)).then(|| TempTableChange::Dropped(tables(stmt, backslashes)))
        }
        _ => None,
    }
}

/// Whether a statement creates or alters a database (`CREATE [OR REPLACE]
/// DATABASE`, `ALTER SCHEMA`...), setting its options: a server connection
/// that selected a database of that name before keeps the options it
/// loaded then (its default character set and collation). Dropping one
/// sets none: a connection left in it fails on what needs it, as it would
/// without the proxy, until one of that name is created.
pub fn sets_database_options(stmt: &str, backslashes: Backslashes) -> bool {
    let mut lx = Lexer::new(stmt, backslashes);
    if !matches!(lx.next().kw, Some(Kw::CREATE | Kw::ALTER)) {
        return false;
    }
    let mut t = lx.next();
    if t.kw == Some(Kw::OR) {
        lx.next();
        t = lx.next();
    }
    matches!(t.kw, Some(Kw::DATABASE | Kw::SCHEMA))
}

/// A lock a statement takes or releases beyond LOCK TABLES, held by the
/// connection that ran it until released there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldLock {
    /// `FLUSH TABLES [t, ...] WITH READ LOCK`, `FLUSH TABLES t FOR EXPORT`:
    /// held until UNLOCK TABLES, as LOCK TABLES is.
    Tables,
    /// MariaDB's `BACKUP STAGE START` and `BACKUP LOCK t`, MySQL's `LOCK
    /// INSTANCE FOR BACKUP` (true); `BACKUP STAGE END`, `BACKUP UNLOCK`,
    /// `UNLOCK INSTANCE` (false).
    Backup(bool),
}

/// The lock `stmt` takes or releases that LOCK/UNLOCK TABLES do not say
/// (see [`HeldLock`]); None for any other statement.
pub fn held_lock_change(stmt: &str, backslashes: Backslashes) -> Option<HeldLock> {
    let mut lx = Lexer::new(stmt, backslashes);
    let mut words = std::iter::from_fn(|| Some(lx.next()).filter(|t| t.tok != Tok::End))
        .filter(|t| t.tok != Tok::Semi);
    let first = words.next()?;
    let is = |t: &Token, word: &str| t.text(stmt).eq_ignore_ascii_case(word);
    match first.kw {
        Some(Kw::FLUSH) => {
            // The last three words: `WITH READ LOCK`, or `FOR EXPORT`.
            let mut last: [Option<Token>; 3] = [None, None, None];
            for t in words {
                last = [last[1], last[2], Some(t)];
            }
            let word = |i: usize, w: &str| last[i].as_ref().is_some_and(|t| is(t, w));
            let read_lock = word(0, "WITH") && word(1, "READ") && word(2, "LOCK");
            (read_lock || word(1, "FOR") && word(2, "EXPORT")).then_some(HeldLock::Tables)
        }
        Some(Kw::BACKUP) => {
            let second = words.next()?;
            if is(&second, "LOCK") {
                return Some(HeldLock::Backup(true));
            }
            if is(&second, "UNLOCK") {
                return Some(HeldLock::Backup(false));
            }
            let stage = words.next().filter(|_| is(&second, "STAGE"))?;
            let taken = [("START", true), ("END", false)].into_iter().find(|(w, _)| is(&stage, w));
            taken.map(|(_, held)| HeldLock::Backup(held))
        }
        Some(Kw::LOCK | Kw::UNLOCK) => {
            let second = words.next()?;
            is(&second, "INSTANCE").then_some(HeldLock::Backup(first.kw == Some(Kw::LOCK)))
        }
        _ => None,
    }
}

/// The tables a `LOCK TABLE[S]` statement locks for writing (`WRITE`, `LOW_PRIORITY
/// WRITE`, `WRITE CONCURRENT`), unqualified, as written (backticks removed); empty for a
/// statement that locks none (READ locks only, or no LOCK TABLES at all).
pub fn write_locked_tables(sql: &str, backslashes: Backslashes) -> Vec<String> {
    let mut lx = Lexer::new(sql, backslashes);
    let mut tokens = std::iter::from_fn(|| Some(lx.next()).filter(|t| t.tok != Tok::End))
        .take_while(|t| t.tok != Tok::Semi);
    let starts = tokens.next().is_some_and(|t| t.kw == Some(Kw::LOCK))
        && tokens.next().is_some_and(|t| matches!(t.kw, Some(Kw::TABLE | Kw::TABLES)));
    let mut locked = Vec::new();
    if !starts {
        return locked;
    }
    // Each item: `name[.name] [[AS] alias] lock_type`, items split by commas.
    let (mut name, mut after_dot, mut first, mut write) = (None, false, true, false);
    let mut end_item = |name: &mut Option<String>, write: &mut bool| {
        if let Some(name) = name.take().filter(|_| *write) {
            locked.push(name);
        }
        *write = false;
    };
    for t in tokens {
        if t.tok == Tok::Comma {
            end_item(&mut name, &mut write);
            first = true;
            continue;
        }
        if t.tok == Tok::Dot {
            after_dot = true;
            continue;
        }
        if first || after_dot {
            name = unquote(sql, &t);
            (first, after_dot) = (false, false);
        } else if t.kw == Some(Kw::WRITE) {
            write = true;
        }
    }
    end_item(&mut name, &mut write);
    locked
}

/// The table a CREATE TEMPORARY TABLE or DROP TEMPORARY TABLE statement names (the first
/// one, for a DROP of several).
pub fn temp_table_name(sql: &str, backslashes: Backslashes) -> Option<String> {
    let mut lx = Lexer::new(sql, backslashes);
    let mut words = std::iter::from_fn(|| Some(lx.next()).filter(|t| t.tok != Tok::End));
    let first = words.next()?;
    match first.kw? {
        Kw::CREATE | Kw::DROP => {}
        _ => return None,
    }
    let mut t = words.next()?;
    if t.kw == Some(Kw::OR) {
        words.next()?;
        t = words.next()?;
    }
    if t.kw != Some(Kw::TEMPORARY) || words.next()?.kw != Some(Kw::TABLE) {
        return None;
    }
    let mut t = words.next()?;
    while matches!(t.kw, Some(Kw::IF | Kw::NOT | Kw::EXISTS)) {
        t = words.next()?;
    }
    let mut name = unquote(sql, &t)?;
    if words.next().is_some_and(|d| d.tok == Tok::Dot) {
        let part = words.next().and_then(|p| unquote(sql, &p))?;
        name = format!("{name}.{part}");
    }
    Some(name)
}

/// `JSON_TABLE(` where a table may stand is a table function, not a table.
fn is_function(sql: &str, t: &Token) -> bool {
    t.tok == Tok::Word && words::function(t.text(sql).as_bytes()).is_some()
}

fn unquote(sql: &str, t: &Token) -> Option<String> {
    let text = t.text(sql);
    match t.tok {
        Tok::Word => Some(text.to_string()),
        Tok::QuotedIdent => Some(text.get(1..text.len().saturating_sub(1))?.replace("``", "`")),
        _ if t.is_double_quoted(sql) => {
            Some(text.get(1..text.len().saturating_sub(1))?.replace("\"\"", "\""))
        }
        _ => None,
    }
}

impl Finder<'_> {
    fn token(&mut self, t: &Token, next: &Token) {
        if self.lead.is_none() && self.lead_tokens == 0 {
            self.lead = t.kw;
        }
        self.lead_tokens += 1;
        match t.tok {
            Tok::Semi => self.end_statement(),
            Tok::LParen => self.open(),
            Tok::RParen => self.close(),
            Tok::Comma => self.comma(),
            Tok::Dot if self.mode == Mode::AfterName && self.prev_is_name() => {
                self.mode = Mode::NamePart;
            }
            Tok::Word | Tok::QuotedIdent => self.word(t, next),
            Tok::Str if t.is_double_quoted(self.sql) => self.word(t, next),
            _ => {}
        }
    }

    fn end_statement(&mut self) {
        self.mode = Mode::Normal;
        self.stack.clear();
        self.lead = None;
        self.lead_tokens = 0;
        self.with_depth = None;
    }

    fn prev_is_name(&self) -> bool {
        self.prev.is_some_and(|p| {
            matches!(p.tok, Tok::Word | Tok::QuotedIdent) || p.is_double_quoted(self.sql)
        })
    }

    fn open(&mut self) {
        let after_name = self.prev.is_some_and(|p| {
            p.tok == Tok::QuotedIdent || (p.tok == Tok::Word && !p.kw.is_some_and(Kw::is_reserved))
        });
        self.stack.push(self.mode);
        self.mode = match self.mode {
            Mode::Expect => Mode::Expect,
            _ if after_name => Mode::Args,
            _ => Mode::Normal,
        };
    }

    fn close(&mut self) {
        let depth = self.stack.len();
        if self.with_depth.is_some_and(|d| d > depth) {
            self.with_depth = None;
        }
        self.mode = match self.stack.pop() {
            Some(Mode::Expect) => Mode::AfterName,
            Some(m) => m,
            None => Mode::Normal,
        };
    }

    fn comma(&mut self) {
        if self.mode == Mode::AfterName {
            let single = matches!(self.lead, Some(Kw::CREATE | Kw::ALTER | Kw::HANDLER));
            self.mode = if single { Mode::Normal } else { Mode::Expect };
        }
    }

    fn word(&mut self, t: &Token, next: &Token) {
        if self.is_cte_name(t) {
            if let Some(n) = unquote(self.sql, t) {
                self.ctes.push(n);
            }
            return;
        }
        match self.mode {
            Mode::Expect => self.expect(t, next),
            Mode::NamePart => {
                if let (Some(part), Some(last)) = (unquote(self.sql, t), self.names.last_mut()) {
                    last.push('.');
                    last.push_str(&part);
                }
                self.mode = Mode::AfterName;
            }
            Mode::AfterName => self.after_name(t, next),
            Mode::Normal => self.normal(t, next),
            Mode::Args => {}
        }
    }

    fn is_cte_name(&mut self, t: &Token) -> bool {
        let depth = self.stack.len();
        let Some(prev) = self.prev else { return false };
        if prev.kw == Some(Kw::WITH) && t.kw != Some(Kw::ROLLUP) || prev.kw == Some(Kw::RECURSIVE) {
            self.with_depth = Some(depth);
            return t.kw != Some(Kw::RECURSIVE);
        }
        if self.with_depth == Some(depth)
            && matches!(t.kw, Some(Kw::SELECT | Kw::UPDATE | Kw::DELETE | Kw::INSERT | Kw::REPLACE))
        {
            self.with_depth = None;
        }
        prev.tok == Tok::Comma && self.with_depth == Some(depth)
    }

    fn expect(&mut self, t: &Token, next: &Token) {
        match t.kw {
            Some(Kw::TABLE | Kw::INTO | Kw::FROM | Kw::IF | Kw::NOT | Kw::EXISTS)
            | Some(Kw::LOW_PRIORITY | Kw::DELAYED | Kw::HIGH_PRIORITY | Kw::IGNORE | Kw::QUICK)
            | Some(Kw::LATERAL | Kw::ONLY | Kw::TEMPORARY) => {}
            Some(Kw::DUAL) => self.mode = Mode::AfterName,
            Some(kw) if kw.is_reserved() => {
                self.mode = Mode::Normal;
                self.normal(t, next);
            }
            _ if next.tok == Tok::LParen && is_function(self.sql, t) => self.mode = Mode::AfterName,
            _ => {
                if let Some(n) = unquote(self.sql, t) {
                    self.names.push(n);
                }
                self.mode = Mode::AfterName;
            }
        }
    }

    fn after_name(&mut self, t: &Token, next: &Token) {
        match t.kw {
            Some(Kw::JOIN | Kw::STRAIGHT_JOIN | Kw::TO | Kw::LIKE) => self.mode = Mode::Expect,
            Some(
                Kw::AS | Kw::USE | Kw::FORCE | Kw::IGNORE | Kw::INDEX | Kw::KEY | Kw::PARTITION,
            )
            | Some(Kw::FOR | Kw::READ | Kw::WRITE | Kw::LOCAL | Kw::LOW_PRIORITY)
            | Some(Kw::LEFT | Kw::RIGHT | Kw::INNER | Kw::OUTER | Kw::CROSS | Kw::NATURAL) => {}
            Some(kw) if kw.is_reserved() => {
                self.mode = Mode::Normal;
                self.normal(t, next);
            }
            _ => {}
        }
    }

    fn normal(&mut self, t: &Token, next: &Token) {
        let Some(kw) = t.kw else { return };
        let prev_kw = self.prev.and_then(|p| p.kw);
        let lead = self.lead;
        let first = self.lead_tokens == 1;
        let expect = match kw {
            // `SHOW COLUMNS FROM t [FROM db]`, also with IN.
            Kw::FROM | Kw::IN if lead == Some(Kw::SHOW) => matches!(
                prev_kw,
                Some(Kw::COLUMNS | Kw::FIELDS | Kw::INDEX | Kw::INDEXES | Kw::KEY | Kw::KEYS)
            ),
            Kw::FROM => !matches!(lead, Some(Kw::REVOKE | Kw::PREPARE)),
            Kw::JOIN | Kw::STRAIGHT_JOIN | Kw::REFERENCES => true,
            Kw::INTO => {
                !matches!(next.kw, Some(Kw::OUTFILE | Kw::DUMPFILE)) && next.tok != Tok::UserVar
            }
            Kw::UPDATE => {
                !matches!(prev_kw, Some(Kw::FOR | Kw::KEY | Kw::ON)) && lead != Some(Kw::GRANT)
            }
            Kw::TABLE => lead != Some(Kw::SHOW) || prev_kw == Some(Kw::CREATE),
            Kw::TABLES => matches!(lead, Some(Kw::LOCK | Kw::FLUSH)),
            Kw::USING => lead == Some(Kw::DELETE) && next.tok != Tok::LParen,
            Kw::TO => matches!(lead, Some(Kw::RENAME | Kw::ALTER)),
            Kw::DESCRIBE | Kw::DESC | Kw::EXPLAIN | Kw::HANDLER | Kw::TRUNCATE => first,
            Kw::INSERT | Kw::REPLACE | Kw::DELETE => first,
            _ => false,
        };
        if expect {
            self.mode = Mode::Expect;
        }
    }
}
