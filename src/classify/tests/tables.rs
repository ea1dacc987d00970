use super::super::Backslashes;

fn tables(sql: &str) -> Vec<String> {
    super::super::tables(sql, Backslashes::Escape)
}

fn temp_table_name(sql: &str) -> Option<String> {
    super::super::temp_table_name(sql, Backslashes::Escape)
}

#[test]
fn select_tables_are_found_in_order() {
    assert_eq!(
        tables("SELECT * FROM a JOIN b ON a.x = b.x LEFT JOIN c USING (y)"),
        ["a", "b", "c"]
    );
}

#[test]
fn comma_joined_tables_with_aliases_are_found() {
    assert_eq!(tables("SELECT * FROM a x, b AS y, `c` WHERE 1"), ["a", "b", "c"]);
}

#[test]
fn qualified_and_backticked_names_keep_case() {
    assert_eq!(tables("SELECT * FROM `Db`.`My``T` JOIN db2.T2"), ["Db.My`T", "db2.T2"]);
}

#[test]
fn subquery_tables_are_found() {
    assert_eq!(
        tables("SELECT * FROM (SELECT * FROM inner_t) d JOIN e WHERE z IN (SELECT q FROM f)"),
        ["inner_t", "e", "f"]
    );
}

#[test]
fn dml_targets_are_found() {
    assert_eq!(tables("INSERT INTO t (a, b) VALUES (1, 2)"), ["t"]);
    assert_eq!(tables("INSERT INTO t SELECT * FROM s"), ["t", "s"]);
    assert_eq!(tables("UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = 1"), ["t1", "t2"]);
    assert_eq!(tables("DELETE FROM t WHERE id = 1"), ["t"]);
    assert_eq!(tables("REPLACE INTO t VALUES (1)"), ["t"]);
}

#[test]
fn on_duplicate_key_update_is_not_a_table() {
    assert_eq!(tables("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = VALUES(a)"), ["t"]);
}

#[test]
fn ddl_targets_are_found() {
    assert_eq!(tables("DROP TABLE IF EXISTS a, b"), ["a", "b"]);
    assert_eq!(tables("CREATE TABLE t (id INT, KEY k (id)) ENGINE=InnoDB"), ["t"]);
    assert_eq!(tables("CREATE TABLE t LIKE s"), ["t", "s"]);
    assert_eq!(tables("RENAME TABLE a TO b, c TO d"), ["a", "b", "c", "d"]);
    assert_eq!(tables("TRUNCATE TABLE t"), ["t"]);
    assert_eq!(tables("ALTER TABLE t ADD COLUMN c INT"), ["t"]);
}

#[test]
fn lock_tables_names_are_found() {
    assert_eq!(tables("LOCK TABLES t1 READ, t2 AS x WRITE"), ["t1", "t2"]);
}

#[test]
fn function_from_is_not_a_table() {
    assert_eq!(tables("SELECT EXTRACT(YEAR FROM d), TRIM(BOTH 'x' FROM s) FROM t"), ["t"]);
}

#[test]
fn cte_names_are_not_tables() {
    assert_eq!(
        tables("WITH a AS (SELECT * FROM t), b AS (SELECT * FROM a) SELECT * FROM b"),
        ["t"]
    );
}

#[test]
fn into_outfile_is_not_a_table() {
    assert_eq!(tables("SELECT * FROM t INTO OUTFILE '/tmp/x'"), ["t"]);
}

#[test]
fn describe_and_handler_tables_are_found() {
    assert_eq!(tables("DESCRIBE t"), ["t"]);
    assert_eq!(tables("HANDLER t OPEN"), ["t"]);
    assert_eq!(tables("TABLE t"), ["t"]);
}

#[test]
fn the_table_a_show_statement_describes_is_found() {
    for sql in [
        "SHOW CREATE TABLE t",
        "SHOW COLUMNS FROM t",
        "SHOW FULL FIELDS IN t",
        "SHOW FIELDS IN t IN app",
        "SHOW COLUMNS FROM t FROM app LIKE 'a%'",
        "SHOW INDEX FROM t",
        "SHOW INDEXES IN t",
        "SHOW KEYS FROM t IN app",
        "SHOW EXTENDED INDEX IN t",
    ] {
        assert_eq!(tables(sql), ["t"], "{sql}");
    }
    assert!(tables("SHOW TABLES FROM app").is_empty());
    assert!(tables("SHOW TABLE STATUS IN app").is_empty());
    assert!(tables("SHOW TRIGGERS IN app").is_empty());
}

#[test]
fn names_are_reported_once() {
    assert_eq!(tables("SELECT * FROM t JOIN t AS t2; DELETE FROM t"), ["t"]);
}

#[test]
fn create_temporary_table_name_is_found() {
    assert_eq!(temp_table_name("CREATE TEMPORARY TABLE tmp_x (id INT)").as_deref(), Some("tmp_x"));
    assert_eq!(
        temp_table_name("CREATE TEMPORARY TABLE IF NOT EXISTS `db`.`t` AS SELECT 1").as_deref(),
        Some("db.t")
    );
}

#[test]
fn drop_temporary_table_name_is_found() {
    assert_eq!(temp_table_name("DROP TEMPORARY TABLE IF EXISTS tmp_x").as_deref(), Some("tmp_x"));
}

#[test]
fn a_statement_creates_or_drops_temporary_tables() {
    use super::super::{TempTableChange::*, temp_table_change};
    let change = |sql| temp_table_change(sql, Backslashes::Escape);
    assert_eq!(change("CREATE TEMPORARY TABLE a (x INT)"), Some(Created("a".into())));
    assert_eq!(
        change(" /* ; */ CREATE OR REPLACE TEMPORARY TABLE `b` AS SELECT 1"),
        Some(Created("b".into()))
    );
    assert_eq!(
        change("DROP TEMPORARY TABLE a, db.c"),
        Some(Dropped(vec!["a".into(), "db.c".into()]))
    );
    assert_eq!(change("DROP TABLE IF EXISTS d"), Some(Dropped(vec!["d".into()])));
    for sql in ["CREATE TABLE t (a INT)", "DROP VIEW v", "ALTER TABLE t ADD b INT", "SELECT 1"] {
        assert_eq!(change(sql), None, "{sql}");
    }
}

#[test]
fn a_statement_that_sets_a_databases_options_is_told() {
    let sets = |sql| super::super::sets_database_options(sql, Backslashes::Escape);
    for sql in [
        "ALTER DATABASE DEFAULT CHARACTER SET latin2",
        "alter schema app collate utf8mb4_bin",
        "/* m */ CREATE DATABASE IF NOT EXISTS d",
        "CREATE OR REPLACE SCHEMA d CHARACTER SET latin1",
    ] {
        assert!(sets(sql), "{sql}");
    }
    for sql in [
        "DROP DATABASE d",
        "drop schema if exists `d`",
        "CREATE TABLE database_t (a INT)",
        "ALTER TABLE t COMMENT 'DATABASE'",
        "SELECT DATABASE()",
        "SHOW CREATE DATABASE d",
        "CREATE OR REPLACE TABLE t (a INT)",
    ] {
        assert!(!sets(sql), "{sql}");
    }
}

#[test]
fn a_text_is_split_into_its_statements() {
    let sql = "SELECT ';' ; /* a; */ SET a = 1;;  ;/*!40101 SET NAMES utf8 */;\nDO 1 -- ;\n";
    let parts: Vec<&str> = super::super::statements(sql, Backslashes::Escape)
        .into_iter()
        .map(|s| &sql[s.range])
        .collect();
    assert_eq!(
        parts,
        ["SELECT ';' ", " /* a; */ SET a = 1", "/*!40101 SET NAMES utf8 */", "\nDO 1 -- ;\n"]
    );
    assert!(super::super::statements(" ; -- x", Backslashes::Escape).is_empty());
    // A compound statement's own `;`s do not split it (its SETs are not the session's).
    let sql = "SELECT 1; BEGIN NOT ATOMIC SET time_zone = '+01:00'; SELECT 2; END";
    let parts: Vec<&str> = super::super::statements(sql, Backslashes::Escape)
        .into_iter()
        .map(|s| &sql[s.range])
        .collect();
    assert_eq!(parts, ["SELECT 1", " BEGIN NOT ATOMIC SET time_zone = '+01:00'; SELECT 2; END"]);
}

#[test]
fn ordinary_table_has_no_temp_name() {
    assert_eq!(temp_table_name("CREATE TABLE t (id INT)"), None);
    assert_eq!(temp_table_name("DROP TABLE t"), None);
    assert_eq!(temp_table_name("SELECT 1"), None);
}

#[test]
fn double_quoted_names_are_names_where_a_name_is_expected() {
    // sql_mode ANSI_QUOTES: "x" is an identifier.
    assert_eq!(tables(r#"SELECT * FROM "tmp" JOIN "s"."t" ON 1 WHERE a = "tmp2""#), ["tmp", "s.t"]);
    assert_eq!(
        temp_table_name(r#"CREATE TEMPORARY TABLE "my""tmp" (a INT)"#).as_deref(),
        Some("my\"tmp")
    );
    assert_eq!(temp_table_name(r#"DROP TEMPORARY TABLE IF EXISTS "tmp""#).as_deref(), Some("tmp"));
    assert!(tables(r#"SELECT "tmp" FROM DUAL"#).is_empty());
}

#[test]
fn locks_held_beyond_lock_tables() {
    use super::super::{HeldLock, held_lock_change};
    let change = |sql| held_lock_change(sql, Backslashes::Escape);
    for sql in [
        "FLUSH TABLES WITH READ LOCK",
        "flush tables t1, `db`.t2 with read lock;",
        "FLUSH /* c */ TABLE t1 WITH READ LOCK",
        "FLUSH TABLES t1 FOR EXPORT",
    ] {
        assert_eq!(change(sql), Some(HeldLock::Tables), "{sql}");
    }
    for sql in ["BACKUP STAGE START", "backup lock db.t", "LOCK INSTANCE FOR BACKUP"] {
        assert_eq!(change(sql), Some(HeldLock::Backup(true)), "{sql}");
    }
    for sql in ["BACKUP STAGE END", "BACKUP UNLOCK", "UNLOCK INSTANCE"] {
        assert_eq!(change(sql), Some(HeldLock::Backup(false)), "{sql}");
    }
    for sql in [
        "FLUSH TABLES",
        "FLUSH TABLES t1",
        "FLUSH LOGS",
        "FLUSH PRIVILEGES",
        "BACKUP STAGE FLUSH",
        "BACKUP STAGE BLOCK_COMMIT",
        "LOCK TABLES t1 READ",
        "UNLOCK TABLES",
        "SELECT 'WITH READ LOCK'",
        "FLUSH",
        "BACKUP",
    ] {
        assert_eq!(change(sql), None, "{sql}");
    }
}

#[test]
fn write_locked_tables_are_read_from_lock_tables() {
    use super::super::{Backslashes, write_locked_tables};
    let locked = |sql| write_locked_tables(sql, Backslashes::Escape);
    assert_eq!(locked("LOCK TABLES t WRITE"), ["t"]);
    assert_eq!(
        locked(
            "lock table app.t1 AS a write, `t 2` READ, t3 LOW_PRIORITY WRITE, t4 WRITE CONCURRENT;"
        ),
        ["t1", "t3", "t4"]
    );
    assert_eq!(locked("LOCK TABLES t1 READ, t2 READ LOCAL"), Vec::<String>::new());
    assert_eq!(locked("LOCK TABLES `w`.`x` t WRITE"), ["x"]);
    assert_eq!(locked("UNLOCK TABLES"), Vec::<String>::new());
    assert_eq!(locked("SELECT * FROM t FOR UPDATE"), Vec::<String>::new());
    assert_eq!(locked("LOCK INSTANCE FOR BACKUP"), Vec::<String>::new());
}
