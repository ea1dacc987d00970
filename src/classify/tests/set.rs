use super::super::StatementKind as K;
use super::super::{Flags, classify};
use super::kind;

#[test]
fn set_autocommit_values_are_read() {
    assert_eq!(kind("SET autocommit=0"), K::SetAutocommit(false));
    assert_eq!(kind("SET autocommit = 1"), K::SetAutocommit(true));
    assert_eq!(kind("SET AUTOCOMMIT=ON"), K::SetAutocommit(true));
    assert_eq!(kind("set autocommit = off"), K::SetAutocommit(false));
    assert_eq!(kind("SET autocommit = 'OFF'"), K::SetAutocommit(false));
}

#[test]
fn set_autocommit_with_scope_is_autocommit() {
    assert_eq!(kind("SET @@autocommit = 0"), K::SetAutocommit(false));
    assert_eq!(kind("SET @@session.autocommit = 1"), K::SetAutocommit(true));
    assert_eq!(kind("SET SESSION autocommit = 0"), K::SetAutocommit(false));
    assert_eq!(kind("SET LOCAL autocommit = 1"), K::SetAutocommit(true));
}

#[test]
fn set_autocommit_to_expression_is_session() {
    assert_eq!(kind("SET autocommit = @saved"), K::SetSession);
    assert_eq!(kind("SET autocommit = DEFAULT"), K::SetSession);
}

#[test]
fn set_autocommit_among_others_is_session() {
    assert_eq!(kind("SET autocommit=1, sql_mode='STRICT_ALL_TABLES'"), K::SetSession);
}

#[test]
fn set_global_is_global() {
    assert_eq!(kind("SET GLOBAL max_connections = 500"), K::SetGlobal);
    assert_eq!(kind("SET @@global.read_only = 1"), K::SetGlobal);
    assert_eq!(kind("SET PERSIST innodb_buffer_pool_size = 1073741824"), K::SetGlobal);
    assert_eq!(kind("SET GLOBAL autocommit = 0"), K::SetGlobal);
}

#[test]
fn global_among_session_assignments_is_global() {
    assert_eq!(kind("SET sql_mode = '', @@global.x = 1"), K::SetGlobal);
}

#[test]
fn session_assignments_beside_a_global_are_flagged() {
    let beside = |sql: &str| classify(sql).flags.contains(Flags::SESSION_SET_BESIDE_GLOBAL);
    for sql in [
        "SET sql_mode = '', @@global.x = 1",
        "SET @@max_join_size = 1000, @@global.max_join_size = 2000",
        "SET GLOBAL a = 1, SESSION b = 2",
        "SET GLOBAL a = 1, @@session.b = 2",
        "SET GLOBAL a = 1, LOCAL b = 2",
        "SET NAMES utf8mb4, GLOBAL a = 1",
    ] {
        assert!(beside(sql), "{sql}");
        assert_eq!(kind(sql), K::SetGlobal, "{sql}");
    }
    for sql in [
        "SET GLOBAL a = 1, b = 2",
        "SET @@global.a = 1, @u = 2",
        "SET GLOBAL max_connections = 500",
        "SET sql_mode = '', time_zone = '+00:00'",
        "SET @a = 1",
    ] {
        assert!(!beside(sql), "{sql}");
    }
}

#[test]
fn hundreds_of_assignments_count_without_overflow() {
    let users: Vec<String> = (0..300).map(|i| format!("@u{i} = {i}")).collect();
    assert_eq!(kind(&format!("SET {}", users.join(", "))), K::SetUserVar);
    let globals: Vec<String> = (0..300).map(|i| format!("@@global.g{i} = {i}")).collect();
    let sql = format!("SET {}, @@session.s = 1", globals.join(", "));
    assert_eq!(kind(&sql), K::SetGlobal);
}

#[test]
fn set_transaction_is_set_transaction() {
    assert_eq!(kind("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), K::SetTransaction);
    assert_eq!(kind("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"), K::SetTransaction);
    assert_eq!(kind("SET TRANSACTION READ ONLY"), K::SetTransaction);
}

#[test]
fn set_global_transaction_is_global() {
    assert_eq!(kind("SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED"), K::SetGlobal);
}

#[test]
fn set_names_is_set_names() {
    assert_eq!(kind("SET NAMES utf8mb4"), K::SetNames);
    assert_eq!(kind("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"), K::SetNames);
    assert_eq!(kind("SET CHARACTER SET utf8"), K::SetNames);
    assert_eq!(kind("SET CHARSET utf8"), K::SetNames);
}

#[test]
fn set_names_with_other_assignments_is_session() {
    assert_eq!(kind("SET NAMES utf8mb4, time_zone = '+00:00'"), K::SetSession);
}

#[test]
fn set_session_variable_is_session() {
    assert_eq!(kind("SET sql_mode = 'TRADITIONAL'"), K::SetSession);
    assert_eq!(kind("SET SESSION wait_timeout = 28800"), K::SetSession);
    assert_eq!(kind("SET @@session.time_zone = '+00:00'"), K::SetSession);
    assert_eq!(kind("SET @@SQL_SELECT_LIMIT = DEFAULT"), K::SetSession);
}

#[test]
fn set_user_variable_is_user_var() {
    assert_eq!(kind("SET @x = 1"), K::SetUserVar);
    assert_eq!(kind("SET @a := 1, @b = 'x'"), K::SetUserVar);
}

#[test]
fn set_user_variable_flags_assignment_not_read() {
    let f = classify("SET @x = 1").flags;
    assert!(f.contains(Flags::USER_VAR_ASSIGN));
    assert!(!f.contains(Flags::USER_VAR_READ));
}

#[test]
fn set_user_variable_from_another_reads_it() {
    assert!(classify("SET @x = @y + 1").flags.contains(Flags::USER_VAR_READ));
}

#[test]
fn set_value_subquery_commas_do_not_split_assignments() {
    assert_eq!(kind("SET @x = (SELECT COUNT(*) FROM t WHERE a IN (1, 2))"), K::SetUserVar);
}

#[test]
fn set_role_is_session() {
    assert_eq!(kind("SET ROLE ALL"), K::SetSession);
}

#[test]
fn set_statement_for_takes_the_inner_kind() {
    assert_eq!(kind("SET STATEMENT max_statement_time=60 FOR SELECT * FROM t"), K::Select);
    assert_eq!(kind("SET STATEMENT sql_mode='' FOR UPDATE t SET a = 1"), K::Update);
    let info = classify("SET STATEMENT max_statement_time=60 FOR SELECT 1");
    assert!(info.flags.contains(Flags::STATEMENT_SETS));
    assert!(!classify("SET sql_mode = ''").flags.contains(Flags::STATEMENT_SETS));
    assert!(!classify("SELECT 1").flags.contains(Flags::STATEMENT_SETS));
}

#[test]
fn the_sessions_wait_timeout_is_read_from_its_set() {
    use super::super::{Backslashes, WaitTimeout::*, wait_timeout_set};
    let read = |sql| wait_timeout_set(sql, Backslashes::Escape);
    assert_eq!(read("SET wait_timeout = 1"), Some(Seconds(1)));
    assert_eq!(read("set session WAIT_TIMEOUT=60"), Some(Seconds(60)));
    assert_eq!(read("SET @@wait_timeout := 5;"), Some(Seconds(5)));
    assert_eq!(read("SET @@local.wait_timeout = 7 /* c */"), Some(Seconds(7)));
    assert_eq!(read("SET `wait_timeout` = 2"), Some(Seconds(2)));
    assert_eq!(read("SET sql_mode = '', wait_timeout = 3, time_zone = '+00:00'"), Some(Seconds(3)));
    assert_eq!(read("SET wait_timeout = 3, @@session.wait_timeout = 4"), Some(Seconds(4)));
    // The server's range: 0 becomes 1 second (with a warning).
    assert_eq!(read("SET wait_timeout = 0"), Some(Seconds(1)));
    assert_eq!(read("SET wait_timeout = 99999999999"), Some(Seconds(31_536_000)));
    // Values the proxy does not evaluate.
    assert_eq!(read("SET wait_timeout = DEFAULT"), Some(Unknown));
    assert_eq!(read("SET wait_timeout = 60 * 60"), Some(Unknown));
    assert_eq!(read("SET wait_timeout = @saved, net_read_timeout = 5"), Some(Unknown));
    assert_eq!(read("SET wait_timeout = IF(@a, 1, 2), sql_mode = ''"), Some(Unknown));
    // Not the session's.
    assert_eq!(read("SET GLOBAL wait_timeout = 1"), None);
    assert_eq!(read("SET @@global.wait_timeout = 1"), None);
    assert_eq!(read("SET GLOBAL max_connections = 9, wait_timeout = 1"), None);
    assert_eq!(read("SET GLOBAL max_connections = 9, SESSION wait_timeout = 1"), Some(Seconds(1)));
    assert_eq!(read("SET STATEMENT wait_timeout = 1 FOR SELECT 1"), None);
    assert_eq!(read("SET interactive_timeout = 1"), None);
    assert_eq!(read("SET @wait_timeout = 1"), None);
    assert_eq!(read("SET x = IF(@a, wait_timeout, 2)"), None);
    assert_eq!(read("SELECT 1"), None);
}

#[test]
fn sql_auto_is_null_is_read_from_its_set() {
    use super::super::{Backslashes, set::sql_auto_is_null_set};
    let read = |sql| sql_auto_is_null_set(sql, Backslashes::Escape);
    for on in [
        "SET sql_auto_is_null = 1",
        "set @@session.SQL_AUTO_IS_NULL=ON",
        "SET SQL_AUTO_IS_NULL = 'on', sql_mode = ''",
        "SET sql_auto_is_null = true",
        "SET sql_auto_is_null = @saved",
    ] {
        assert_eq!(read(on), Some(true), "{on}");
    }
    for off in [
        "SET SQL_AUTO_IS_NULL = 0",
        "SET sql_auto_is_null = OFF",
        "SET sql_auto_is_null = 'OFF'",
        "SET sql_auto_is_null = false",
        "SET sql_auto_is_null = DEFAULT",
        "SET sql_auto_is_null = 1, sql_auto_is_null = 0",
    ] {
        assert_eq!(read(off), Some(false), "{off}");
    }
    assert_eq!(read("SET GLOBAL sql_auto_is_null = 1"), None);
    assert_eq!(read("SET sql_mode = ''"), None);
}

#[test]
fn read_uncommitted_is_found_in_its_set() {
    use super::super::{Backslashes, set::read_uncommitted_set};
    let read = |sql| read_uncommitted_set(sql, Backslashes::Escape);
    for dirty in [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        "set session transaction read write, isolation level read uncommitted",
        "SET tx_isolation = 'READ-UNCOMMITTED'",
        "SET @@session.transaction_isolation = \"read-uncommitted\", sql_mode = ''",
        "SET transaction_isolation = 0",
        "SET tx_isolation = CONCAT('READ-', 'UNCOMMITTED')",
    ] {
        assert!(read(dirty), "{dirty}");
    }
    for clean in [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET tx_isolation = 'REPEATABLE-READ'",
        "SET transaction_isolation = DEFAULT",
        "SET tx_isolation = 'READ-UNCOMMITTED', tx_isolation = 'SERIALIZABLE'",
        "SET GLOBAL tx_isolation = 'READ-UNCOMMITTED'",
        "SET @level = 'READ-UNCOMMITTED'",
        "SELECT 'UNCOMMITTED'",
    ] {
        assert!(!read(clean), "{clean}");
    }
}

#[test]
fn completion_type_release_is_read_from_its_set() {
    use super::super::{Backslashes, completion_release_set};
    let read = |sql| completion_release_set(sql, Backslashes::Escape);
    for release in [
        "SET completion_type = 2",
        "SET @@session.completion_type = 'RELEASE'",
        "set SESSION completion_type = \"release\", autocommit = 1",
        "SET completion_type = 0, completion_type = 2",
    ] {
        assert_eq!(read(release), Some(true), "{release}");
    }
    for other in [
        "SET completion_type = 0",
        "SET completion_type = 'CHAIN'",
        "SET @@completion_type = 1",
        "SET completion_type = DEFAULT",
        "SET completion_type = 2, completion_type = 'NO_CHAIN'",
    ] {
        assert_eq!(read(other), Some(false), "{other}");
    }
    assert_eq!(read("SET GLOBAL completion_type = 2"), None);
    assert_eq!(read("SET STATEMENT completion_type = 2 FOR COMMIT"), None);
    assert_eq!(read("SET autocommit = 1"), None);
}

#[test]
fn a_transaction_end_s_release_clause_is_read() {
    use super::super::{Backslashes, release_clause};
    let read = |sql| release_clause(sql, Backslashes::Escape);
    assert_eq!(read("COMMIT RELEASE"), Some(true));
    assert_eq!(read("commit work and no chain release"), Some(true));
    assert_eq!(read("ROLLBACK /* x */ RELEASE;"), Some(true));
    assert_eq!(read("COMMIT NO RELEASE"), Some(false));
    assert_eq!(read("ROLLBACK WORK AND CHAIN NO RELEASE"), Some(false));
    assert_eq!(read("COMMIT"), None);
    assert_eq!(read("ROLLBACK AND CHAIN"), None);
    assert_eq!(read("COMMIT -- RELEASE"), None);
}

#[test]
fn binary_logging_turned_off_is_read_from_its_set() {
    use super::super::{Backslashes, set::sql_log_bin_off_set};
    let read = |sql| sql_log_bin_off_set(sql, Backslashes::Escape);
    for off in [
        "SET sql_log_bin = 0",
        "SET SESSION sql_log_bin = OFF",
        "set @@session.SQL_LOG_BIN = 'off', sql_mode = ''",
        "SET sql_log_bin = @saved",
    ] {
        assert_eq!(read(off), Some(true), "{off}");
    }
    for on in ["SET sql_log_bin = 1", "SET @@sql_log_bin = ON", "SET sql_log_bin = DEFAULT"] {
        assert_eq!(read(on), Some(false), "{on}");
    }
    assert_eq!(read("SET sql_mode = ''"), None);
    assert_eq!(read("SET STATEMENT sql_log_bin = 0 FOR INSERT INTO t VALUES (1)"), None);
}

#[test]
fn sets_that_keep_reads_on_their_connection_are_told() {
    use super::super::{Backslashes, set_keeps_reads_here};
    let keeps = |sql| set_keeps_reads_here(sql, Backslashes::Escape);
    for sql in [
        "SET sql_auto_is_null = 1",
        "SET sql_mode = '', sql_log_bin = 0",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        "SET @@session.tx_isolation = 'READ-UNCOMMITTED'",
    ] {
        assert!(keeps(sql), "{sql}");
    }
    for sql in [
        "SET sql_auto_is_null = 0",
        "SET sql_log_bin = 1",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET GLOBAL sql_log_bin = 0",
        "SET NAMES utf8mb4",
    ] {
        assert!(!keeps(sql), "{sql}");
    }
}
