use super::super::Flags as F;
use super::{flags, has, plain};

/// Whether `sql` asks what only the primary answers (not a plain read).
fn asks_the_primary_state(sql: &str) -> bool {
    has(sql, F::PRIMARY_STATE) && !plain(sql)
}

#[test]
fn select_for_update_is_locking_read() {
    assert!(has("SELECT * FROM t WHERE id = 1 FOR UPDATE", F::LOCKING_READ));
    assert!(!plain("SELECT * FROM t WHERE id = 1 FOR UPDATE"));
}

#[test]
fn select_for_share_is_locking_read() {
    assert!(has("SELECT * FROM t FOR SHARE", F::LOCKING_READ));
}

#[test]
fn lock_in_share_mode_is_locking_read() {
    assert!(has("SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE", F::LOCKING_READ));
}

#[test]
fn skip_locked_and_nowait_are_locking_reads() {
    assert!(has("SELECT * FROM q FOR UPDATE SKIP LOCKED", F::LOCKING_READ));
    assert!(has("SELECT * FROM q FOR UPDATE NOWAIT", F::LOCKING_READ));
}

#[test]
fn locking_read_in_subquery_is_found() {
    assert!(has("SELECT * FROM (SELECT * FROM t FOR UPDATE) d", F::LOCKING_READ));
}

#[test]
fn substring_for_is_not_locking() {
    assert!(plain("SELECT SUBSTRING(name FROM 1 FOR 3) FROM t"));
}

#[test]
fn get_lock_is_side_effect() {
    assert!(has("SELECT GET_LOCK('job', 10)", F::SIDE_EFFECT_FUNC));
    assert!(!plain("SELECT GET_LOCK('job', 10)"));
}

#[test]
fn lock_functions_are_side_effects() {
    for f in ["RELEASE_LOCK('a')", "RELEASE_ALL_LOCKS()", "IS_FREE_LOCK('a')", "IS_USED_LOCK('a')"]
    {
        assert!(has(&format!("SELECT {f}"), F::SIDE_EFFECT_FUNC), "{f}");
    }
}

#[test]
fn sequence_functions_are_side_effects() {
    assert!(has("SELECT NEXTVAL(s)", F::SIDE_EFFECT_FUNC));
    assert!(has("SELECT SETVAL(s, 10)", F::SIDE_EFFECT_FUNC));
    assert!(has("SELECT LASTVAL(s)", F::SIDE_EFFECT_FUNC));
}

#[test]
fn oracle_mode_sequence_access_is_a_side_effect() {
    // sql_mode ORACLE: `s.nextval` takes the sequence's next value.
    assert!(has("SELECT s.nextval FROM DUAL", F::SIDE_EFFECT_FUNC));
    assert!(has("SELECT app.s.NEXTVAL", F::SIDE_EFFECT_FUNC));
    assert!(has("SELECT s.currval FROM DUAL", F::SIDE_EFFECT_FUNC));
    // Not a name after a dot: an ordinary column or alias.
    assert!(plain("SELECT nextval FROM t"));
    assert!(plain("SELECT t.nextvalue, t.currval_x FROM t"));
}

#[test]
fn next_value_for_is_side_effect() {
    assert!(has("SELECT NEXT VALUE FOR s", F::SIDE_EFFECT_FUNC));
    assert!(has("SELECT PREVIOUS VALUE FOR s", F::SIDE_EFFECT_FUNC));
}

#[test]
fn replication_waits_are_side_effects() {
    assert!(has("SELECT MASTER_GTID_WAIT('0-1-100', 1)", F::SIDE_EFFECT_FUNC));
    assert!(has("SELECT MASTER_POS_WAIT('bin.1', 4)", F::SIDE_EFFECT_FUNC));
}

#[test]
fn sleep_is_pure() {
    assert!(plain("SELECT SLEEP(1)"));
}

#[test]
fn last_insert_id_reads_last_statement() {
    assert!(has("SELECT LAST_INSERT_ID()", F::LAST_STATEMENT_FUNC));
    assert!(has("SELECT ROW_COUNT()", F::LAST_STATEMENT_FUNC));
    assert!(has("SELECT FOUND_ROWS()", F::LAST_STATEMENT_FUNC));
}

#[test]
fn the_optimizer_trace_profiles_and_session_status_read_the_last_statement() {
    for sql in [
        "SELECT * FROM information_schema.optimizer_trace",
        "SELECT trace FROM INFORMATION_SCHEMA.OPTIMIZER_TRACE",
        "select CAST(json_value(json_extract(trace, '$**.chosen_access_method.cost'), '$[0]') \
         as DOUBLE) < 1.0e100 as finite from information_schema.optimizer_trace",
        "SELECT QUERY_ID, SUM(DURATION) FROM information_schema.PROFILING GROUP BY QUERY_ID",
        "SELECT * FROM `information_schema`.`optimizer_trace`",
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'LAST_QUERY_COST'",
        "SHOW STATUS LIKE 'Last_query_cost'",
        "show session status like 'handler_read%'",
        "SHOW LOCAL STATUS",
    ] {
        assert!(has(sql, F::LAST_STATEMENT_FUNC), "{sql}");
        assert!(plain(sql), "{sql}");
    }
    // A column of that name, or the variable, is not the table.
    assert!(!has("SELECT optimizer_trace FROM t", F::LAST_STATEMENT_FUNC));
    assert!(!has("SELECT @@optimizer_trace", F::LAST_STATEMENT_FUNC));
    // The whole server's counters are any server's.
    assert!(!has("SHOW GLOBAL STATUS LIKE 'Com_select'", F::LAST_STATEMENT_FUNC));
    assert!(!has("SELECT * FROM information_schema.GLOBAL_STATUS", F::LAST_STATEMENT_FUNC));
}

#[test]
fn last_statement_read_stays_a_plain_read() {
    assert!(plain("SELECT LAST_INSERT_ID()"));
    assert!(plain("SELECT last_insert_id ( )"));
}

#[test]
fn last_insert_id_with_an_argument_sets_it() {
    assert!(has("SELECT LAST_INSERT_ID(777)", F::SETS_LAST_INSERT_ID));
    assert!(has("select last_insert_id( id + 1 ) from t", F::SETS_LAST_INSERT_ID));
    assert!(!plain("SELECT LAST_INSERT_ID(777)"));
    assert!(!has("SELECT LAST_INSERT_ID()", F::SETS_LAST_INSERT_ID));
    assert!(!has("SELECT LAST_INSERT_ID( ) + 1", F::SETS_LAST_INSERT_ID));
}

#[test]
fn last_statement_system_variables_are_found() {
    for v in [
        "@@warning_count",
        "@@error_count",
        "@@identity",
        "@@last_insert_id",
        "@@SESSION.warning_count",
    ] {
        assert!(has(&format!("SELECT {v}"), F::LAST_STATEMENT_FUNC), "{v}");
    }
}

#[test]
fn other_system_variable_is_not_last_statement() {
    assert_eq!(flags("SELECT @@version, @@session.transaction_isolation"), F::GLOBAL_READ);
    assert!(flags("SELECT @@session.version, @@session.transaction_isolation").is_empty());
}

#[test]
fn show_warnings_reads_last_statement() {
    assert!(has("SHOW WARNINGS", F::LAST_STATEMENT_FUNC));
    assert!(has("SHOW ERRORS LIMIT 5", F::LAST_STATEMENT_FUNC));
    assert!(has("SHOW COUNT(*) WARNINGS", F::LAST_STATEMENT_FUNC));
}

#[test]
fn select_into_user_variable_is_into() {
    assert!(has("SELECT a INTO @x FROM t", F::INTO));
    assert!(has("SELECT a INTO @x FROM t", F::USER_VAR_ASSIGN));
    assert!(!plain("SELECT a INTO @x FROM t"));
}

#[test]
fn select_into_outfile_is_into() {
    assert!(has("SELECT * FROM t INTO OUTFILE '/tmp/t.csv'", F::INTO));
    assert!(has("SELECT * FROM t INTO DUMPFILE '/tmp/t.bin'", F::INTO));
}

#[test]
fn insert_into_is_not_the_into_flag() {
    assert!(!has("INSERT INTO t VALUES (1)", F::INTO));
}

#[test]
fn user_variable_assignment_is_found() {
    assert!(has("SELECT @rownum := @rownum + 1 AS n FROM t", F::USER_VAR_ASSIGN));
    assert!(!plain("SELECT @rownum := @rownum + 1 AS n FROM t"));
}

#[test]
fn user_variable_read_is_found() {
    let f = flags("SELECT * FROM t WHERE id = @id");
    assert!(f.contains(F::USER_VAR_READ));
    assert!(!f.contains(F::USER_VAR_ASSIGN));
    assert!(plain("SELECT * FROM t WHERE id = @id"));
}

#[test]
fn comparison_with_user_variable_is_a_read() {
    assert!(!has("SELECT @a = 1", F::USER_VAR_ASSIGN));
}

#[test]
fn sql_calc_found_rows_is_flagged() {
    assert!(has("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", F::SQL_CALC_FOUND_ROWS));
}

#[test]
fn user_defined_function_is_unknown_func() {
    assert!(has("SELECT my_func(id) FROM t", F::UNKNOWN_FUNC));
    assert!(!plain("SELECT my_func(id) FROM t"));
}

#[test]
fn qualified_stored_function_is_unknown_func() {
    assert!(has("SELECT db.f(1)", F::UNKNOWN_FUNC));
    assert!(has("SELECT `f`(1)", F::UNKNOWN_FUNC));
}

#[test]
fn unknown_function_with_space_before_paren_is_found() {
    assert!(has("SELECT my_func (id) FROM t", F::UNKNOWN_FUNC));
}

#[test]
fn builtin_functions_are_pure() {
    let sql = "SELECT COUNT(*), CONCAT(a, b), IFNULL(c, 0), DATE_FORMAT(NOW(), '%Y'), \
               JSON_EXTRACT(j, '$.a'), CAST(x AS DECIMAL(10, 2)), ROUND(AVG(y), 2) FROM t";
    assert!(plain(sql));
}

#[test]
fn builtin_name_case_is_ignored() {
    assert!(plain("select count(*), coalesce(a, 1) from t"));
}

#[test]
fn keywords_before_parens_are_not_calls() {
    let sql = "SELECT a FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1) AND (b OR c) \
               AND d = ANY (SELECT 1) AND ROW(a, b) = ROW(1, 2)";
    assert!(plain(sql));
}

#[test]
fn cte_column_list_is_not_a_call() {
    assert!(plain("WITH a (x, y) AS (SELECT 1, 2), b (z) AS (SELECT 3) SELECT * FROM a, b"));
}

#[test]
fn derived_table_column_list_is_not_a_call() {
    assert!(plain("SELECT * FROM (SELECT 1, 2) AS d (a, b)"));
}

#[test]
fn window_functions_are_pure() {
    let sql = "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b), \
               SUM(c) OVER w FROM t WINDOW w AS (PARTITION BY a)";
    assert!(plain(sql));
}

#[test]
fn json_table_is_pure() {
    let sql = "SELECT jt.* FROM t, JSON_TABLE(t.doc, '$[*]' COLUMNS (id INT PATH '$.id', \
               name VARCHAR(40) PATH '$.name')) AS jt";
    assert!(plain(sql));
}

#[test]
fn insert_column_list_is_not_a_call() {
    assert!(!has("INSERT INTO t (a, b) VALUES (1, 2)", F::UNKNOWN_FUNC));
    assert!(!has("INSERT INTO db.t(a) VALUES (1)", F::UNKNOWN_FUNC));
}

#[test]
fn ddl_column_types_are_not_calls() {
    assert!(!has("CREATE TABLE t (id INT(11), name VARCHAR(10), KEY k (name))", F::UNKNOWN_FUNC));
}

#[test]
fn function_name_inside_string_is_ignored() {
    assert!(plain("SELECT 'GET_LOCK(1)', \"my_udf(2)\" FROM t"));
}

#[test]
fn match_against_is_pure() {
    assert!(plain("SELECT id FROM t WHERE MATCH (title, body) AGAINST ('x' IN BOOLEAN MODE)"));
}

#[test]
fn udf_named_like_a_non_reserved_keyword_is_unknown_func() {
    for f in ["hash(x)", "list(1)", "value(x)", "columns(x)", "any(x)", "some(x)", "offset(1)"] {
        assert!(has(&format!("SELECT {f} FROM t"), F::UNKNOWN_FUNC), "{f}");
    }
}

#[test]
fn quantified_subquery_is_not_a_call() {
    assert!(plain("SELECT * FROM t WHERE a > ANY (SELECT b FROM u) OR a = SOME (SELECT c FROM v)"));
}

#[test]
fn insert_values_are_not_checked_for_calls() {
    assert!(!has("INSERT INTO t VALUE (1)", F::UNKNOWN_FUNC));
}

#[test]
fn replication_state_shows_need_the_primary() {
    for sql in [
        "SHOW MASTER STATUS",
        "show binlog status",
        "SHOW BINARY LOGS",
        "SHOW MASTER LOGS",
        "SHOW BINLOG EVENTS IN 'mariadb-bin.000001' LIMIT 5",
        "SHOW SLAVE HOSTS",
        "SHOW REPLICA HOSTS",
        "SHOW SLAVE STATUS",
        "SHOW REPLICA STATUS",
        "SHOW ALL SLAVES STATUS",
        "SHOW SLAVE 'conn1' STATUS",
        // The processlist: where the session's writes and their locks are.
        "SHOW PROCESSLIST",
        "show full processlist",
        "SELECT COUNT(*) = 1 FROM information_schema.processlist WHERE state = 'User lock'",
        "SELECT ID FROM INFORMATION_SCHEMA.`PROCESSLIST` WHERE INFO LIKE 'DROP%'",
        // Transactions and locks: the writes' own, on the primary.
        "SHOW ENGINE INNODB STATUS",
        "show engine innodb status",
        "SELECT * FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
        "SELECT * FROM information_schema.innodb_lock_waits",
        "SELECT * FROM INFORMATION_SCHEMA.INNODB_LOCKS",
        "SELECT * FROM information_schema.METADATA_LOCK_INFO",
        "SELECT * FROM performance_schema.data_locks",
        "SELECT * FROM performance_schema.data_lock_waits",
        "SELECT * FROM performance_schema.metadata_locks",
        // The plan of a statement running on a processlist connection.
        "SHOW EXPLAIN FOR 1000000001",
        "show analyze format=json for 12",
        // One-shot values the next write takes on the primary.
        "SELECT @@session.insert_id",
        "SELECT @@gtid_seq_no",
    ] {
        assert!(asks_the_primary_state(sql), "{sql}");
    }
    for sql in [
        "SHOW TABLES",
        "SHOW STATUS",
        "SHOW RELAYLOG EVENTS",
        "SELECT processlist FROM t",
        "SELECT * FROM processlist_copy",
        "SELECT * FROM innodb_trx_archive",
        "SHOW ENGINES",
        "SHOW ENGINE INNODB MUTEX",
    ] {
        assert!(!has(sql, F::PRIMARY_STATE), "{sql}");
        assert!(plain(sql), "{sql}");
    }
}

#[test]
fn position_and_writability_variables_need_the_primary() {
    for sql in [
        "SELECT @@read_only",
        "SELECT @@global.read_only, @@innodb_read_only",
        "SELECT @@GTID_BINLOG_POS",
        "SELECT @@global.gtid_current_pos",
        "SELECT @@global.gtid_executed",
    ] {
        assert!(asks_the_primary_state(sql), "{sql}");
    }
    for sql in ["SELECT @@server_id", "SELECT @@version_comment LIMIT 1", "SELECT @@gtid_slave_pos"]
    {
        assert!(plain(sql), "{sql}");
    }
}

#[test]
fn reading_the_last_insert_id_is_told_apart_from_other_last_statement_reads() {
    for sql in ["SELECT LAST_INSERT_ID()", "SELECT @@identity", "SELECT @@session.last_insert_id"] {
        assert!(has(sql, F::READS_LAST_INSERT_ID | F::LAST_STATEMENT_FUNC), "{sql}");
    }
    for sql in
        ["SELECT FOUND_ROWS()", "SELECT ROW_COUNT()", "SHOW WARNINGS", "SELECT LAST_INSERT_ID(5)"]
    {
        assert!(!has(sql, F::READS_LAST_INSERT_ID), "{sql}");
    }
}

#[test]
fn the_socket_variable_is_answered_by_the_proxy_and_stays_a_plain_read() {
    for sql in [
        "SELECT @@socket",
        "SELECT @@max_allowed_packet,@@wait_timeout,@@socket",
        "SELECT @@GLOBAL.socket",
    ] {
        assert!(has(sql, F::PROXY_VARIABLE), "{sql}");
        assert!(plain(sql), "{sql}");
    }
    // The session's socket does not exist: the server's ERROR 1238 says so.
    for sql in [
        "SELECT @@port",
        "SELECT '@@socket'",
        "SELECT socket FROM t",
        "SELECT @@session.socket",
        "SELECT @@LOCAL.socket",
    ] {
        assert!(!has(sql, F::PROXY_VARIABLE), "{sql}");
    }
}

#[test]
fn a_set_of_a_variable_the_server_uses_up_is_told_apart() {
    for sql in [
        "SET insert_id = 100",
        "SET INSERT_ID=5/*!*/",
        "SET @@session.insert_id = 7",
        "SET sql_mode = '', last_insert_id = 9",
        "SET SESSION gtid_seq_no = 100",
        "SET @@rand_seed1 = 1, @@rand_seed2 = 2",
        // The next transaction's characteristics.
        "SET TRANSACTION READ ONLY",
        "set transaction isolation level serializable, read write",
    ] {
        assert!(has(sql, F::ONE_SHOT_SET), "{sql}");
    }
    for sql in [
        "SET SESSION TRANSACTION READ ONLY",
        "SET LOCAL TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET sql_mode = 'ANSI'",
        "SET timestamp = 1000",
        "SET @insert_id = 5",
        "SET time_zone = '+00:00', @x = 1",
        "SELECT @@insert_id",
    ] {
        assert!(!has(sql, F::ONE_SHOT_SET), "{sql}");
    }
}

#[test]
fn a_function_called_by_its_double_quoted_name_is_unknown() {
    // sql_mode ANSI_QUOTES: "f" is an identifier, and "f"(1) a call.
    assert!(has(r#"SELECT "my_func"(1)"#, F::UNKNOWN_FUNC));
    assert!(has(r#"SELECT "app"."my_func"(1) FROM t"#, F::UNKNOWN_FUNC));
    assert!(plain(r#"SELECT "my_func", 'x' FROM t"#));
}

/// Reads that may show a server's own global values, which a replica
/// answers with its own (a session that set one reads them on the
/// primary); still plain reads.
#[test]
fn global_settings_and_counters_are_flagged() {
    for sql in [
        "SELECT @@global.max_connections",
        "SELECT @@GLOBAL.sql_mode, @@SESSION.sql_mode",
        "SELECT 1 FROM t WHERE @@global.event_scheduler = 'ON'",
        "SHOW GLOBAL VARIABLES WHERE Variable_name = 'version'",
        "show global variables like 'max_conn%'",
        "SHOW GLOBAL STATUS LIKE 'Threads_connected'",
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = 'X'",
        "SELECT * FROM performance_schema.global_status",
        "SELECT @@max_connections",
        "SELECT @@server_id, @@hostname",
        "SHOW VARIABLES LIKE 'max_connections'",
        "SHOW SESSION VARIABLES LIKE 'max%'",
        "SELECT * FROM information_schema.SESSION_VARIABLES",
    ] {
        assert!(has(sql, F::GLOBAL_READ), "{sql}");
        assert!(plain(sql), "{sql}");
    }
    // Session values named as such, the session's counters, the proxy's
    // own answer.
    for sql in [
        "SELECT @@session.sql_mode, @@local.time_zone",
        "SHOW SESSION STATUS LIKE 'Bytes%'",
        "SHOW STATUS",
        "SELECT * FROM information_schema.SESSION_STATUS",
        "SELECT global_variables FROM t",
        "SELECT * FROM global_status_archive",
        "SELECT @@GLOBAL.socket",
    ] {
        assert!(!has(sql, F::GLOBAL_READ), "{sql}");
    }
}

/// The user_variables plugin's table and SHOW list the session's user
/// variables, which live on the connection that set them.
#[test]
fn listing_user_variables_reads_them() {
    for sql in [
        "SELECT * FROM information_schema.USER_VARIABLES ORDER BY VARIABLE_NAME",
        "select count(*) from INFORMATION_SCHEMA.user_variables",
        "SELECT * FROM `information_schema`.`USER_VARIABLES`",
        "SHOW USER_VARIABLES",
        "show user_variables like 'a%'",
    ] {
        assert!(has(sql, F::USER_VAR_READ), "{sql}");
    }
    for sql in ["SELECT user_variables FROM t", "SHOW VARIABLES"] {
        assert!(!has(sql, F::USER_VAR_READ), "{sql}");
    }
}

#[test]
fn show_variables_that_may_list_writability_or_positions_need_the_primary() {
    for sql in [
        "SHOW VARIABLES LIKE 'read_only'",
        "SHOW GLOBAL VARIABLES LIKE '%read\\_only'",
        "show session variables like 'GTID%'",
        "SHOW VARIABLES LIKE 'innodb_read_onl_'",
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_id', 'read_only')",
        "SHOW VARIABLES",
    ] {
        assert!(asks_the_primary_state(sql), "{sql}");
    }
    for sql in [
        "SHOW VARIABLES LIKE 'max_connections'",
        "SHOW VARIABLES LIKE 'read%size'",
        "SHOW GLOBAL VARIABLES WHERE Variable_name = 'version'",
        "SHOW VARIABLES LIKE 'gtid_slave_pos'",
    ] {
        assert!(plain(sql), "{sql}");
    }
    // A pattern of many wildcards is matched in linear time.
    let sql = format!("SHOW VARIABLES LIKE '{}x'", "%".repeat(5000));
    assert!(plain(&sql));
}

#[test]
fn show_processlist_alone_is_recognised() {
    use super::super::{Backslashes, is_show_processlist};
    let is = |sql| is_show_processlist(sql, Backslashes::Escape);
    assert!(is("SHOW PROCESSLIST"));
    assert!(is("show full processlist;"));
    assert!(is("/* c */ SHOW FULL PROCESSLIST /* d */ ;"));
    assert!(!is("SHOW PROCESSLIST; SELECT 1"));
    assert!(!is("SHOW ENGINE INNODB STATUS"));
    assert!(!is("SELECT * FROM information_schema.PROCESSLIST"));
    assert!(!is("SHOW FULL"));
}

#[test]
fn an_xpath_that_reads_a_user_variable_reads_it() {
    let sql = "select ExtractValue('<a><b>b1</b><b>b2</b></a>','/a/b[$@i]')";
    assert!(has(sql, F::USER_VAR_READ));
    assert!(has("SELECT UpdateXML(doc, '/a[$@x]', '<c/>') FROM t", F::USER_VAR_READ));
    // Without one it is a pure function.
    assert!(plain("SELECT ExtractValue(doc, '/a/b[1]') FROM t"));
    assert!(plain("SELECT ExtractValue(doc, '/a/b[$i]') FROM t"));
}
