//! Behaviour tests for the classifier's public functions, one behaviour per test.

mod backslashes;
mod digest;
mod flags;
mod hints;
mod kinds;
mod lexing;
mod multi;
mod set;
mod tables;
mod tier;

use super::{Flags, StatementKind, classify};

fn kind(sql: &str) -> StatementKind {
    classify(sql).kind
}

fn flags(sql: &str) -> Flags {
    classify(sql).flags
}

fn has(sql: &str, flag: Flags) -> bool {
    classify(sql).flags.contains(flag)
}

fn plain(sql: &str) -> bool {
    classify(sql).is_plain_read()
}
