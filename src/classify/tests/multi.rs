use super::super::StatementKind as K;
use super::super::{Flags, classify};

#[test]
fn statements_are_counted() {
    assert_eq!(classify("SELECT 1; SELECT 2; SELECT 3").statements, 3);
}

#[test]
fn trailing_semicolon_adds_no_statement() {
    assert_eq!(classify("SELECT 1;").statements, 1);
    assert_eq!(classify("SELECT 1; ;  ").statements, 1);
}

#[test]
fn semicolon_in_string_does_not_split() {
    assert_eq!(classify("SELECT 'a;b'; SELECT \"c;d\"").statements, 2);
}

#[test]
fn semicolon_in_comment_does_not_split() {
    assert_eq!(classify("SELECT 1 /* ; */ -- ;\n").statements, 1);
}

#[test]
fn all_reads_are_a_plain_read() {
    let info = classify("SELECT 1; SELECT a FROM t; SHOW WARNINGS");
    assert_eq!(info.kind, K::Select);
    assert!(info.is_plain_read());
}

#[test]
fn one_write_makes_the_text_a_write() {
    let info = classify("SELECT 1; UPDATE t SET a = 1; SELECT 2");
    assert_eq!(info.kind, K::Update);
    assert!(!info.is_plain_read());
}

#[test]
fn first_non_read_kind_wins() {
    assert_eq!(
        classify("SET autocommit=0; INSERT INTO t VALUES (1)").kind,
        K::SetAutocommit(false)
    );
}

#[test]
fn flags_of_later_statements_count() {
    let info = classify("SELECT 1; SELECT * FROM t FOR UPDATE");
    assert!(info.flags.contains(Flags::LOCKING_READ));
    assert!(!info.is_plain_read());
}

#[test]
fn many_statements_are_all_seen() {
    let mut sql = "SELECT 1;".repeat(20);
    sql.push_str("DELETE FROM t");
    let info = classify(&sql);
    assert_eq!(info.statements, 21);
    assert_eq!(info.kind, K::Delete);
}

#[test]
fn mysqldump_header_lines_are_session_sets() {
    let sql = "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n\
               /*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;";
    let info = classify(sql);
    assert_eq!(info.statements, 3);
    assert_eq!(info.kind, K::SetUserVar);
}
