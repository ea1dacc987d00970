use super::super::{Backslashes, classify, normalize};

fn norm(sql: &str) -> String {
    let mut out = String::new();
    normalize(sql, Backslashes::Escape, &mut out);
    out
}

fn hash(text: &str) -> u64 {
    super::super::digest::Hash::of(text)
}

#[test]
fn digest_is_hash_of_normalized_text() {
    for sql in [
        "SELECT c FROM sbtest1 WHERE id=42",
        "select * from t where a in (1,2,3) and b = -1; update t set x='y'",
        "/*!40101 SET NAMES utf8 */",
        "",
    ] {
        assert_eq!(classify(sql).digest, hash(&norm(sql)), "{sql}");
    }
}

#[test]
fn literals_become_placeholders() {
    assert_eq!(
        norm("SELECT 'a', \"b\", 1, 2.5, 0xFF, X'0A', b'1', N'x', ?"),
        "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
    );
}

#[test]
fn whitespace_is_folded() {
    assert_eq!(norm("SELECT   a ,b\n\tFROM  t"), "SELECT a, b FROM t");
}

#[test]
fn keywords_are_uppercased_identifiers_kept() {
    assert_eq!(norm("select Name from Users where ID = 1"), "SELECT Name FROM Users WHERE ID = ?");
}

#[test]
fn builtin_function_names_are_uppercased() {
    assert_eq!(norm("select count(*), concat(a,b) from t"), "SELECT COUNT(*), CONCAT(a, b) FROM t");
}

#[test]
fn in_list_collapses() {
    assert_eq!(norm("SELECT * FROM t WHERE id IN (1, 2, 3)"), "SELECT * FROM t WHERE id IN (...)");
    assert_eq!(norm("SELECT * FROM t WHERE id IN (7)"), "SELECT * FROM t WHERE id IN (...)");
}

#[test]
fn in_lists_of_any_length_share_a_digest() {
    assert_eq!(
        classify("SELECT * FROM t WHERE id IN (1,2)").digest,
        classify("select * from t where id in (5, 6, 7, 8, 9)").digest
    );
}

#[test]
fn in_subquery_is_not_collapsed() {
    assert_eq!(
        norm("SELECT 1 WHERE a IN (SELECT b FROM t)"),
        "SELECT ? WHERE a IN (SELECT b FROM t)"
    );
}

#[test]
fn in_list_with_column_is_kept() {
    assert_eq!(norm("SELECT 1 WHERE a IN (1, b)"), "SELECT ? WHERE a IN (?, b)");
}

#[test]
fn negative_numbers_become_one_placeholder() {
    assert_eq!(
        norm("SELECT * FROM t WHERE a = -1 AND b IN (-2, 3)"),
        "SELECT * FROM t WHERE a = ? AND b IN (...)"
    );
}

#[test]
fn binary_minus_is_kept() {
    assert_eq!(norm("SELECT a - 1 FROM t"), "SELECT a - ? FROM t");
}

#[test]
fn comments_are_dropped_and_executable_comments_opened() {
    assert_eq!(norm("SELECT /* x */ 1 -- y\n"), "SELECT ?");
    assert_eq!(norm("/*!40101 SET NAMES utf8 */"), "SET NAMES utf8");
}

#[test]
fn statements_are_joined_and_trailing_semicolon_dropped() {
    assert_eq!(norm("SELECT 1 ; SELECT 2 ;"), "SELECT ?; SELECT ?");
}

#[test]
fn variables_are_lowercased() {
    assert_eq!(norm("SELECT @X, @@SESSION.Autocommit"), "SELECT @x, @@session.autocommit");
}

#[test]
fn operators_are_normalized_whatever_the_spacing() {
    assert_eq!(norm("SELECT a<=b,c!=d FROM t"), norm("SELECT a <= b , c != d FROM t"));
}

#[test]
fn same_shape_same_digest() {
    assert_eq!(
        classify("SELECT c FROM sbtest1 WHERE id=1").digest,
        classify("select c   from sbtest1 where id = 99999").digest
    );
}

#[test]
fn different_tables_different_digest() {
    assert_ne!(classify("SELECT * FROM a").digest, classify("SELECT * FROM b").digest);
}

#[test]
fn normalize_appends() {
    let mut out = String::from("x: ");
    normalize("SELECT 1", Backslashes::Escape, &mut out);
    assert_eq!(out, "x: SELECT ?");
}

#[test]
fn digest_is_hash_of_normalized_text_for_random_inputs() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let pieces = [
        "SELECT",
        "select",
        "x",
        "`y`",
        "'s'",
        "1",
        "-",
        "+",
        "(",
        ")",
        ",",
        ";",
        ".",
        "IN",
        "in",
        "count",
        "@V",
        "@@Session.X",
        "/*!",
        "*/",
        "-- c\n",
        "?",
        "=",
        "é",
        "\"q\"",
        "0x1F",
        " ",
    ];
    for _ in 0..3000 {
        let mut sql = String::new();
        for _ in 0..(seed % 20) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            sql.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            if seed & 16 == 0 {
                sql.push(' ');
            }
        }
        assert_eq!(classify(&sql).digest, hash(&norm(&sql)), "{sql:?}");
        seed = seed.wrapping_add(1);
    }
}
