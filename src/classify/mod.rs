//! Statement classification: what a statement text is, and what in it matters for routing.
//!
//! Two tiers. A single-pass lexer (`lexer`, `stmt`, `lead`, `set`) decides almost
//! every statement with no allocation and, in the same pass, computes the digest of the
//! normalized text (`digest`). When it is unsure (a CTE it cannot follow, a write keyword
//! where a read has none, a leading word it does not know), the statement goes to
//! `sqlparser` (`tier2`), whose verdict is cached by normalized text in a [`Tier2Cache`]. What
//! neither can decide is [`StatementKind::Unknown`]: the proxy sends it to the primary.
//! Unsure never means read.
//!
//! Inside:
//! - `info`: the output types ([`StatementInfo`], [`StatementKind`], [`Flags`], hints).
//! - `lexer`: tokens, comments, executable comments; `hints`: routing hints in comments.
//! - `words`, `builtins`: keyword and function-name tables (compile-time hashing).
//! - `digest`: the normalized text and its hash.
//! - `scan`: the single pass over a text; `stmt`: one statement's flags and kind;
//!   `lead`: kinds from the leading keywords; `set`: SET statements.
//! - `tier2`: the parser tier and its cache; `tables`: table names for temporary tables.
//! - `charset`: the text read from a statement in the client's character set.
//! - `answers`: server variables the proxy answers itself (`@@socket`), written into the text.

mod answers;
mod builtins;
mod charset;
mod digest;
mod hints;
mod info;
mod lead;
mod lexer;
mod scan;
mod set;
mod stmt;
mod tables;
mod tier2;
mod words;

#[cfg(test)]
mod tests;

pub use answers::{answer_proxy_variables, answer_row_count};
pub use charset::{Multibyte, not_a_client_charset, push_text};
pub use info::{Consistency, Flags, Hint, StatementInfo, StatementKind, Tier};
pub use lead::{is_show_processlist, like, release_clause, show_status_pattern};
pub use lexer::Backslashes;
pub use scan::{Statement, statements};
pub use set::{
    WaitTimeout, completion_release_set, set_keeps_reads_here, user_variable_value,
    wait_timeout_set,
};
pub use tables::{
    HeldLock, TempTableChange, held_lock_change, sets_database_options, tables, temp_table_change,
    temp_table_name, write_locked_tables,
};
pub use tier2::{CacheStats, Tier2Cache};

use digest::{Hash, Normalizer, Text};
use scan::Fold;
use stmt::StmtResult;

/// Classifies a statement text (one or several statements) of a session with
/// backslash escapes, deciding unsure statements with the parser every time.
/// The proxy uses [`classify_with_cache`].
pub fn classify(sql: &str) -> StatementInfo {
    classify_inner(sql, Backslashes::Escape, None)
}

/// Classifies a statement text of a session whose backslashes are
/// `backslashes`; parser-tier verdicts come from and go to `cache`.
pub fn classify_with_cache(
    sql: &str,
    backslashes: Backslashes,
    cache: &Tier2Cache,
) -> StatementInfo {
    classify_inner(sql, backslashes, Some(cache))
}

/// Writes the normalized text of `sql` to `out` (appending): the text whose hash is
/// [`StatementInfo::digest`]. See the `digest` module for the rules.
pub fn normalize(sql: &str, backslashes: Backslashes, out: &mut String) {
    let mut norm = Normalizer::new(Text(out));
    scan::normalize_only(sql, backslashes, &mut norm);
}

fn classify_inner(
    sql: &str,
    backslashes: Backslashes,
    cache: Option<&Tier2Cache>,
) -> StatementInfo {
    let mut norm = Normalizer::new(Hash::new());
    let scanned = scan::scan(sql, backslashes, &mut norm);
    let digest = norm.out.finish();
    let mut fold = Fold::default();
    let mut tier = Tier::Lexer;
    for r in scanned.head() {
        let kind = match r.kind {
            Some(kind) => kind,
            None => {
                tier = Tier::Parser;
                let verdict = parser_tier(statement_text(sql, r), backslashes, cache);
                fold.flags |= verdict.flags;
                verdict.kind
            }
        };
        fold.add(kind, r.flags);
    }
    fold.extend(&scanned.tail);
    StatementInfo {
        kind: fold.kind(),
        flags: fold.flags,
        hint: scanned.hints.hint(),
        consistency: scanned.hints.consistency,
        digest,
        statements: scanned.count,
        tier,
    }
}

fn statement_text<'a>(sql: &'a str, r: &StmtResult) -> &'a str {
    sql.get(r.start..r.end).unwrap_or("")
}

fn parser_tier(stmt: &str, backslashes: Backslashes, cache: Option<&Tier2Cache>) -> tier2::Verdict {
    match cache {
        Some(cache) => cache.get_or_decide(stmt, backslashes),
        None => tier2::decide(&scan::code_text(stmt, backslashes)),
    }
}
