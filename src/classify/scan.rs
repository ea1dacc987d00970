//! The single pass: lexer tokens go to the normalizer (digest) and to the statement
//! scanner at once; `;` outside strings and comments ends a statement (except inside a
//! compound statement). The first [`MAX_TRACKED`] statements are kept one by one so that
//! unsure ones can be resolved by the parser tier; later ones are folded as they come.

use super::digest::{Normalizer, Out};
use super::hints::Hints;
use super::info::{Flags, StatementKind as K};
use super::lexer::{Backslashes, Lexer, Tok, Token};
use super::stmt::{StmtResult, StmtScan};
use super::words::{self, FuncClass};

/// Statements kept one by one for the parser tier.
pub(super) const MAX_TRACKED: usize = 8;

/// Folds statements into one kind and flags: the first kind that is not a read, else the
/// first kind; the union of the flags.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Fold {
    first: Option<K>,
    first_non_read: Option<K>,
    pub flags: Flags,
}

impl Fold {
    pub fn add(&mut self, kind: K, flags: Flags) {
        self.first.get_or_insert(kind);
        if !kind.is_read() && self.first_non_read.is_none() {
            self.first_non_read = Some(kind);
        }
        self.flags |= flags;
    }

    /// Appends a later fold.
    pub fn extend(&mut self, later: &Fold) {
        if let Some(first) = later.first {
            self.first.get_or_insert(first);
        }
        if self.first_non_read.is_none() {
            self.first_non_read = later.first_non_read;
        }
        self.flags |= later.flags;
    }

    pub fn kind(&self) -> K {
        self.first_non_read.or(self.first).unwrap_or(K::Unknown)
    }
}

const NO_RESULT: StmtResult = StmtResult { kind: None, flags: Flags::EMPTY, start: 0, end: 0 };

/// What the pass found.
pub(super) struct Scanned {
    head: [StmtResult; MAX_TRACKED],
    head_len: usize,
    /// Statements after the first `MAX_TRACKED` (unsure ones count as Unknown).
    pub tail: Fold,
    /// Non-empty statements.
    pub count: u16,
    pub hints: Hints,
}

impl Scanned {
    fn new() -> Scanned {
        Scanned {
            head: [NO_RESULT; MAX_TRACKED],
            head_len: 0,
            tail: Fold::default(),
            count: 0,
            hints: Hints::default(),
        }
    }

    /// The first statements, in order.
    pub fn head(&self) -> &[StmtResult] {
        &self.head[..self.head_len]
    }

    fn push(&mut self, r: StmtResult) {
        self.count = self.count.saturating_add(1);
        if self.head_len < MAX_TRACKED {
            self.head[self.head_len] = r;
            self.head_len += 1;
        } else {
            self.tail.add(r.kind.unwrap_or(K::Unknown), r.flags);
        }
    }
}

/// The builtin class of a word that is followed by `(`.
#[inline]
fn func_of(sql: &str, cur: &Token, next: &Token) -> Option<FuncClass> {
    if cur.tok == Tok::Word && next.tok == Tok::LParen && !cur.after_dot {
        words::function(cur.text(sql).as_bytes())
    } else {
        None
    }
}

/// Walks the statements of `sql` as the server splits them: at each `;`
/// outside strings, comments and compound statements, and at the end.
/// `token` sees every token (with the builtin class of a word followed by
/// `(`); `ended` each statement that has a token, with the lexer's verdict
/// and where it is: from the end of the one before (the comments before it
/// included, so an executable `/*!40101 SET ... */` stays whole) to its
/// `;`. Returns the hints the comments held.
#[inline]
fn walk(
    sql: &str,
    backslashes: Backslashes,
    mut token: impl FnMut(&Token, Option<FuncClass>),
    mut ended: impl FnMut(StmtResult, std::ops::Range<usize>),
) -> Hints {
    let mut lx = Lexer::new(sql, backslashes);
    let mut st = StmtScan::new();
    let mut from = 0;
    let mut cur = lx.next();
    loop {
        let next = if cur.tok == Tok::End { cur } else { lx.next() };
        let func = func_of(sql, &cur, &next);
        token(&cur, func);
        match cur.tok {
            Tok::End => {
                if !st.is_empty() {
                    ended(st.finish(sql, lx.broken), from..sql.len());
                }
                return lx.hints;
            }
            Tok::Semi if !st.is_compound(sql) => {
                let to = cur.start.max(from);
                if !st.is_empty() {
                    ended(st.finish(sql, false), from..to);
                }
                from = to + 1;
                st.reset();
            }
            _ => st.feed(sql, &cur, &next, func),
        }
        cur = next;
    }
}

/// Classifies every statement of `sql` and feeds the normalizer, in one pass.
pub(super) fn scan<O: Out>(
    sql: &str,
    backslashes: Backslashes,
    norm: &mut Normalizer<O>,
) -> Scanned {
    let mut out = Scanned::new();
    let hints = walk(sql, backslashes, |t, func| norm.token(sql, t, func), |r, _| out.push(r));
    out.hints = hints;
    out
}

/// One statement of a text, as [`statements`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Where it is, without its `;` and with the comments before it (an
    /// executable `/*!40101 SET ... */` stays whole).
    pub range: std::ops::Range<usize>,
    /// The lexer's kind; `None` when it is unsure (the parser tier would
    /// decide, which this does not run).
    pub kind: Option<K>,
    pub flags: Flags,
}

/// Each statement of a text that has a token, split as [`scan`] splits it.
pub fn statements(sql: &str, backslashes: Backslashes) -> Vec<Statement> {
    let mut found = Vec::new();
    walk(
        sql,
        backslashes,
        |_, _| {},
        |r, range| found.push(Statement { range, kind: r.kind, flags: r.flags }),
    );
    found
}

/// Feeds the normalizer only (for `normalize` and per-statement digests).
pub(super) fn normalize_only<O: Out>(
    sql: &str,
    backslashes: Backslashes,
    norm: &mut Normalizer<O>,
) {
    let mut lx = Lexer::new(sql, backslashes);
    let mut cur = lx.next();
    loop {
        let next = if cur.tok == Tok::End { cur } else { lx.next() };
        norm.token(sql, &cur, func_of(sql, &cur, &next));
        if cur.tok == Tok::End {
            return;
        }
        cur = next;
    }
}

/// The statement's code as the server sees it: comments dropped, executable comments
/// opened, tokens verbatim (for the parser tier, which reads backslashes as
/// escapes: where they are literal, the quoted tokens carry them doubled).
pub(super) fn code_text(sql: &str, backslashes: Backslashes) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut lx = Lexer::new(sql, backslashes);
    let mut last_end = 0;
    loop {
        let t = lx.next();
        if t.tok == Tok::End {
            return out;
        }
        if t.start > last_end && !out.is_empty() {
            out.push(' ');
        }
        let text = t.text(sql);
        if backslashes == Backslashes::Literal && matches!(t.tok, Tok::Str | Tok::UserVar) {
            out.push_str(&text.replace('\\', "\\\\"));
        } else {
            out.push_str(text);
        }
        last_end = t.end;
    }
}
