use super::super::Flags as F;
use super::super::StatementKind as K;
use super::{has, kind, plain};

#[test]
fn string_containing_keyword_is_ignored() {
    assert!(plain("SELECT * FROM t WHERE note = 'FOR UPDATE; DELETE FROM t'"));
}

#[test]
fn double_quoted_string_containing_keyword_is_ignored() {
    assert!(plain("SELECT * FROM t WHERE note = \"x FOR UPDATE\""));
}

#[test]
fn escaped_quote_does_not_end_string() {
    assert!(plain(r"SELECT * FROM t WHERE a = 'it\'s FOR UPDATE'"));
}

#[test]
fn doubled_quote_does_not_end_string() {
    assert!(plain("SELECT * FROM t WHERE a = 'it''s FOR UPDATE'"));
}

#[test]
fn backtick_identifier_named_like_keyword_is_ignored() {
    assert!(plain("SELECT `update`, `delete` FROM `for`"));
}

#[test]
fn qualified_column_named_like_keyword_is_ignored() {
    assert!(plain("SELECT t.update, t.delete FROM t"));
}

#[test]
fn keyword_in_line_comment_is_ignored() {
    assert!(plain("SELECT 1 -- FOR UPDATE\n"));
    assert!(plain("SELECT 1 # GET_LOCK('x', 1)\n"));
}

#[test]
fn keyword_in_block_comment_is_ignored() {
    assert!(plain("SELECT /* FOR UPDATE */ 1"));
}

#[test]
fn double_dash_without_space_is_not_a_comment() {
    assert_eq!(kind("SELECT 1--1"), K::Select);
    assert!(has("SELECT 1--GET_LOCK('a',1)", F::SIDE_EFFECT_FUNC));
}

#[test]
fn executable_comment_content_is_code() {
    assert!(has("SELECT * FROM t /*!50000 FOR UPDATE */", F::LOCKING_READ));
    assert!(has("SELECT * FROM t /*! FOR UPDATE */", F::LOCKING_READ));
}

#[test]
fn mariadb_executable_comment_content_is_code() {
    assert!(has("SELECT * FROM t /*M!100100 FOR UPDATE */", F::LOCKING_READ));
    assert!(has("SELECT * FROM t /*M! FOR UPDATE */", F::LOCKING_READ));
}

#[test]
fn statement_wholly_in_executable_comment_is_classified() {
    assert_eq!(kind("/*!40101 SET NAMES utf8mb4 */"), K::SetNames);
    assert_eq!(kind("/*!40000 ALTER TABLE `t` DISABLE KEYS */"), K::Ddl);
}

#[test]
fn optimizer_hint_comment_is_a_comment() {
    assert!(plain("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t"));
}

#[test]
fn account_name_is_not_a_user_variable() {
    assert!(!has("GRANT SELECT ON *.* TO 'u'@'localhost'", F::USER_VAR_READ));
}

#[test]
fn newlines_and_tabs_are_whitespace() {
    assert!(plain("SELECT\n\ta\nFROM\r\n\tt\nWHERE id = 1"));
}

#[test]
fn non_ascii_identifiers_are_words() {
    assert!(plain("SELECT prénom FROM clients WHERE ville = 'Zürich'"));
}
