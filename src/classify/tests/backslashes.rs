//! Sessions whose sql_mode has NO_BACKSLASH_ESCAPES: a backslash in a string is an
//! ordinary character, so a string ends at the first lone quote after it. Read the
//! other way, such a text hides what follows the string inside it.

use super::super::Flags as F;
use super::super::StatementKind as K;
use super::super::{Backslashes, StatementInfo, Tier, Tier2Cache, classify_with_cache};
use super::super::{normalize, tables, temp_table_name};

fn literal(sql: &str) -> StatementInfo {
    classify_with_cache(sql, Backslashes::Literal, &Tier2Cache::new(16))
}

fn escape(sql: &str) -> StatementInfo {
    classify_with_cache(sql, Backslashes::Escape, &Tier2Cache::new(16))
}

#[test]
fn a_locking_read_after_a_string_ending_in_a_backslash_is_seen() {
    let sql = r"SELECT 'C:\', @@server_id FOR UPDATE -- '";
    assert!(literal(sql).flags.contains(F::LOCKING_READ));
    // Read with escapes, the same text is one string and a comment.
    assert!(escape(sql).is_plain_read());
}

#[test]
fn a_side_effect_function_after_such_a_string_is_seen() {
    let sql = r"SELECT 'x\', GET_LOCK('l', 0) -- '";
    assert!(literal(sql).flags.contains(F::SIDE_EFFECT_FUNC));
    assert!(escape(sql).is_plain_read());
}

#[test]
fn a_write_after_such_a_string_in_a_multi_statement_is_seen() {
    let sql = r"SELECT 'a\'; DELETE FROM t; -- '";
    let info = literal(sql);
    assert_eq!(info.statements, 2);
    assert_eq!(info.kind, K::Delete);
    assert_eq!(escape(sql).statements, 1);
}

#[test]
fn a_backslash_before_a_doubled_quote_stays_in_the_string() {
    let info = literal(r"SELECT 'a\''b' FROM t");
    assert!(info.is_plain_read());
    assert_eq!(info.statements, 1);
}

#[test]
fn the_parser_tier_reads_literal_backslashes_too() {
    // This CTE goes to the parser tier, which reads backslashes as escapes:
    // it must be given the string's backslash doubled, or it finds the
    // string unterminated and the statement Unknown.
    let sql = r"WITH a AS (SELECT 'x\' AS s) (SELECT s FROM a)";
    let info = literal(sql);
    assert_eq!(info.tier, Tier::Parser);
    assert_eq!(info.kind, K::Select);
    assert_eq!(escape(sql).kind, K::Unknown);
}

#[test]
fn digests_and_table_names_follow_the_session_s_backslashes() {
    let mut out = String::new();
    normalize(r"SELECT 'a\', b FROM t -- '", Backslashes::Literal, &mut out);
    assert_eq!(out, "SELECT ?, b FROM t");
    assert_eq!(tables(r"SELECT 'a\' FROM t1 -- '", Backslashes::Literal), ["t1"]);
    assert!(tables(r"SELECT 'a\' FROM t1 -- '", Backslashes::Escape).is_empty());
    assert_eq!(
        temp_table_name(r"CREATE TEMPORARY TABLE tmp AS SELECT 'a\' AS s", Backslashes::Literal)
            .as_deref(),
        Some("tmp")
    );
}
