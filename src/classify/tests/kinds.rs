use super::super::StatementKind as K;
use super::{kind, plain};

#[test]
fn point_select_is_plain_read() {
    assert_eq!(kind("SELECT c FROM sbtest1 WHERE id = 1"), K::Select);
    assert!(plain("SELECT c FROM sbtest1 WHERE id = 1"));
}

#[test]
fn lowercase_select_is_select() {
    assert_eq!(kind("select 1"), K::Select);
}

#[test]
fn parenthesised_union_is_select() {
    assert_eq!(kind("(SELECT a FROM t) UNION (SELECT a FROM u) ORDER BY a"), K::Select);
}

#[test]
fn values_statement_is_read() {
    assert!(plain("VALUES ROW(1, 2), ROW(3, 4)"));
}

#[test]
fn table_statement_is_read() {
    assert!(plain("TABLE t ORDER BY a LIMIT 3"));
}

#[test]
fn read_only_cte_is_select() {
    assert_eq!(kind("WITH a AS (SELECT id FROM t) SELECT * FROM a"), K::Select);
}

#[test]
fn recursive_cte_with_column_list_is_plain_read() {
    let sql = "WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 5) SELECT n FROM seq";
    assert!(plain(sql));
}

#[test]
fn cte_ending_in_update_is_update() {
    assert_eq!(
        kind("WITH a AS (SELECT id FROM t) UPDATE u JOIN a USING (id) SET u.x = 1"),
        K::Update
    );
}

#[test]
fn cte_ending_in_delete_is_delete() {
    assert_eq!(
        kind("WITH a AS (SELECT id FROM t) DELETE FROM u WHERE id IN (SELECT id FROM a)"),
        K::Delete
    );
}

#[test]
fn several_ctes_are_followed_to_their_statement() {
    let sql = "WITH a AS (SELECT 1 AS x), b (y) AS (SELECT x FROM a) SELECT y FROM b";
    assert!(plain(sql));
}

#[test]
fn nested_cte_in_subquery_is_read() {
    assert!(plain("SELECT * FROM (WITH a AS (SELECT 1 AS x) SELECT x FROM a) d"));
}

#[test]
fn with_rollup_is_not_a_cte() {
    assert!(plain("SELECT a, SUM(b) FROM t GROUP BY a WITH ROLLUP"));
}

#[test]
fn show_is_show() {
    assert_eq!(kind("SHOW FULL PROCESSLIST"), K::Show);
    assert_eq!(kind("SHOW GLOBAL STATUS LIKE 'Threads%'"), K::Show);
}

#[test]
fn describe_table_is_describe() {
    assert_eq!(kind("DESCRIBE t"), K::Describe);
    assert_eq!(kind("DESC `db`.`t`"), K::Describe);
    assert_eq!(kind("EXPLAIN t"), K::Describe);
}

#[test]
fn explain_of_select_is_explain_of_read() {
    assert_eq!(kind("EXPLAIN FORMAT=JSON SELECT * FROM t"), K::Explain { of_read: true });
    assert!(plain("EXPLAIN SELECT * FROM t"));
}

#[test]
fn explain_of_update_is_not_a_read() {
    assert_eq!(kind("EXPLAIN UPDATE t SET a = 1"), K::Explain { of_read: false });
    assert!(!plain("EXPLAIN UPDATE t SET a = 1"));
}

#[test]
fn explain_analyze_takes_the_statement_kind() {
    assert_eq!(kind("EXPLAIN ANALYZE SELECT * FROM t"), K::Select);
    assert_eq!(kind("EXPLAIN ANALYZE UPDATE t SET a = 1"), K::Update);
}

#[test]
fn mariadb_analyze_statement_runs_it() {
    assert_eq!(kind("ANALYZE FORMAT=JSON DELETE FROM t WHERE a = 1"), K::Delete);
    assert_eq!(kind("ANALYZE SELECT * FROM t"), K::Select);
}

#[test]
fn analyze_table_is_other() {
    assert_eq!(kind("ANALYZE TABLE t1, t2"), K::Other);
    assert_eq!(kind("ANALYZE NO_WRITE_TO_BINLOG TABLE t"), K::Other);
}

#[test]
fn explain_for_connection_is_other() {
    assert_eq!(kind("EXPLAIN FOR CONNECTION 42"), K::Other);
}

#[test]
fn dml_kinds_are_recognised() {
    assert_eq!(kind("INSERT INTO t VALUES (1)"), K::Insert);
    assert_eq!(kind("INSERT t SET a = 1"), K::Insert);
    assert_eq!(kind("UPDATE t SET a = 1"), K::Update);
    assert_eq!(kind("DELETE FROM t"), K::Delete);
    assert_eq!(kind("REPLACE INTO t VALUES (1)"), K::Replace);
}

#[test]
fn insert_select_is_insert() {
    assert_eq!(kind("INSERT INTO t SELECT * FROM u"), K::Insert);
}

#[test]
fn load_data_is_load_data() {
    assert_eq!(
        kind("LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t FIELDS TERMINATED BY ','"),
        K::LoadData
    );
    assert_eq!(kind("LOAD XML INFILE 'x.xml' INTO TABLE t"), K::LoadData);
}

#[test]
fn load_index_is_other() {
    assert_eq!(kind("LOAD INDEX INTO CACHE t"), K::Other);
}

#[test]
fn ddl_is_ddl() {
    for sql in [
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "ALTER TABLE t ADD COLUMN b INT",
        "DROP TABLE IF EXISTS t",
        "RENAME TABLE a TO b",
        "TRUNCATE TABLE t",
        "CREATE INDEX i ON t (a)",
        "CREATE OR REPLACE VIEW v AS SELECT 1",
        "CREATE DATABASE d",
    ] {
        assert_eq!(kind(sql), K::Ddl, "{sql}");
    }
}

#[test]
fn create_temporary_table_is_its_own_kind() {
    assert_eq!(kind("CREATE TEMPORARY TABLE tmp (id INT)"), K::CreateTemporaryTable);
    assert_eq!(kind("CREATE OR REPLACE TEMPORARY TABLE tmp AS SELECT 1"), K::CreateTemporaryTable);
}

#[test]
fn drop_temporary_table_is_its_own_kind() {
    assert_eq!(kind("DROP TEMPORARY TABLE IF EXISTS tmp"), K::DropTemporaryTable);
}

#[test]
fn account_management_is_grant() {
    for sql in [
        "GRANT SELECT ON db.* TO 'u'@'%'",
        "REVOKE ALL ON *.* FROM u",
        "CREATE USER 'u'@'localhost' IDENTIFIED BY 'p'",
        "ALTER USER u IDENTIFIED BY 'x'",
        "DROP USER u",
        "RENAME USER a TO b",
        "CREATE ROLE r",
        "SET PASSWORD FOR 'u'@'%' = 'x'",
        "SET DEFAULT ROLE r TO u",
    ] {
        assert_eq!(kind(sql), K::Grant, "{sql}");
    }
}

#[test]
fn stored_program_definition_is_ddl() {
    let sql =
        "CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN SELECT 1; UPDATE t SET a = 1; END";
    let info = super::super::classify(sql);
    assert_eq!(info.kind, K::Ddl);
    assert_eq!(info.statements, 1);
}

#[test]
fn compound_statement_is_unknown() {
    assert_eq!(kind("BEGIN NOT ATOMIC SELECT 1; END"), K::Unknown);
    assert_eq!(kind("IF @x THEN SELECT 1; END IF"), K::Unknown);
}

#[test]
fn call_do_handler_are_recognised() {
    assert_eq!(kind("CALL p(1, @out)"), K::Call);
    assert_eq!(kind("DO SLEEP(1)"), K::Do);
    assert_eq!(kind("HANDLER t READ FIRST"), K::Handler);
}

#[test]
fn transaction_control_is_recognised() {
    assert_eq!(kind("BEGIN"), K::Begin { read_only: false });
    assert_eq!(kind("BEGIN WORK"), K::Begin { read_only: false });
    assert_eq!(kind("START TRANSACTION"), K::Begin { read_only: false });
    assert_eq!(kind("COMMIT"), K::Commit);
    assert_eq!(kind("COMMIT WORK AND NO CHAIN"), K::Commit);
    assert_eq!(kind("ROLLBACK"), K::Rollback);
}

#[test]
fn start_transaction_read_only_is_read_only_begin() {
    assert_eq!(kind("START TRANSACTION READ ONLY"), K::Begin { read_only: true });
    assert_eq!(
        kind("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"),
        K::Begin { read_only: true }
    );
    assert_eq!(kind("START TRANSACTION READ WRITE"), K::Begin { read_only: false });
}

#[test]
fn savepoints_are_recognised() {
    assert_eq!(kind("SAVEPOINT s1"), K::Savepoint);
    assert_eq!(kind("ROLLBACK TO SAVEPOINT s1"), K::RollbackToSavepoint);
    assert_eq!(kind("ROLLBACK WORK TO s1"), K::RollbackToSavepoint);
    assert_eq!(kind("RELEASE SAVEPOINT s1"), K::ReleaseSavepoint);
}

#[test]
fn session_statements_are_recognised() {
    assert_eq!(kind("USE db"), K::Use);
    assert_eq!(kind("LOCK TABLES t READ, u WRITE"), K::LockTables);
    assert_eq!(kind("UNLOCK TABLES"), K::UnlockTables);
    assert_eq!(kind("PREPARE s FROM 'SELECT ?'"), K::Prepare);
    assert_eq!(kind("EXECUTE s USING @a"), K::Execute);
    assert_eq!(kind("DEALLOCATE PREPARE s"), K::Deallocate);
    assert_eq!(kind("DROP PREPARE s"), K::Deallocate);
}

#[test]
fn xa_flush_kill_are_recognised() {
    assert_eq!(kind("XA START 'x'"), K::Xa);
    assert_eq!(kind("FLUSH TABLES WITH READ LOCK"), K::Flush);
    assert_eq!(kind("KILL QUERY 12"), K::Kill);
}

#[test]
fn admin_statements_are_other() {
    for sql in [
        "OPTIMIZE TABLE t",
        "CHECK TABLE t",
        "REPAIR TABLE t",
        "CHANGE MASTER TO MASTER_HOST='x'",
        "STOP SLAVE",
        "START SLAVE",
        "SHUTDOWN",
        "INSTALL PLUGIN x SONAME 'x.so'",
        "PURGE BINARY LOGS TO 'mysql-bin.000010'",
        "RESET MASTER",
        "LOCK INSTANCE FOR BACKUP",
    ] {
        assert_eq!(kind(sql), K::Other, "{sql}");
    }
}

#[test]
fn get_diagnostics_is_other_reading_last_statement() {
    let info = super::super::classify("GET DIAGNOSTICS @n = NUMBER");
    assert_eq!(info.kind, K::Other);
    assert!(info.flags.contains(super::super::Flags::LAST_STATEMENT_FUNC));
}

#[test]
fn empty_text_is_unknown_with_no_statement() {
    let info = super::super::classify("  /* nothing */ ; ");
    assert_eq!(info.kind, K::Unknown);
    assert_eq!(info.statements, 0);
    assert!(!info.is_plain_read());
}

#[test]
fn unknown_leading_word_is_unknown() {
    assert_eq!(kind("FROBNICATE the widget"), K::Unknown);
}

#[test]
fn unterminated_string_is_unknown() {
    assert_eq!(kind("SELECT 'abc"), K::Unknown);
    assert!(!plain("SELECT 'abc"));
}

#[test]
fn unterminated_comment_is_unknown() {
    assert_eq!(kind("SELECT 1 /* abc"), K::Unknown);
}
