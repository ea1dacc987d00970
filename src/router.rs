//! The routing decision as a pure function: a statement's classification,
//! a view of the session's state and the replicas eligible right now go
//! in; a [`Route`] (where, and why) comes out. No sockets, no clocks.
//!
//! The rules, in order: an explicit primary hint; an open transaction
//! (by the server's IN_TRANS flag or autocommit off) stays where it began;
//! LOCK TABLES pins the session; transaction control and anything that is
//! not a plain read go to the primary; reads that ask about the previous
//! statement go where it ran; reads of user variables, of temporary tables,
//! of global settings after the session set one, and reads after the
//! session wrote go to the primary; everything else is
//! a replica read, or the primary when no replica is eligible.

use crate::classify::{Flags, Hint, StatementInfo, StatementKind};

/// Where a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// A replica to be picked among the eligible ones.
    AnyReplica,
    /// This backend (by index), because session state lives there.
    Backend(usize),
}

/// Why; also the label of the routing metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    HintPrimary,
    HintReplica,
    RulePrimary,
    RuleReplica,
    Transaction,
    ReadOnlyTransaction,
    /// A write inside a START TRANSACTION READ ONLY that runs on a
    /// replica: refused as the primary would refuse it (ERROR 1792), not
    /// sent to a server whose own read-only error (1290) would differ.
    WriteInReadOnlyTransaction,
    LockedTables,
    TransactionControl,
    SessionState,
    Write,
    NotPlainRead,
    Unknown,
    LastStatement,
    UserVariables,
    /// A read of a global setting after the session's `SET GLOBAL`.
    GlobalVariables,
    TemporaryTable,
    AfterWrite,
    SqlPrepared,
    Read,
    NoReplica,
    /// A replica hint on a statement that is not a read (ignored, counted).
    HintIgnored,
    /// Read-your-writes sent the read to the primary.
    Consistency,
    /// Session state (a SET, USE, a prepare) set on a replica because the
    /// primary cannot be reached: see [`may_stand_in`].
    PrimaryDown,
}

impl Reason {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HintPrimary => "hint_primary",
            Reason::HintReplica => "hint_replica",
            Reason::RulePrimary => "rule_primary",
            Reason::RuleReplica => "rule_replica",
            Reason::Transaction => "transaction",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::WriteInReadOnlyTransaction => "write_in_read_only_transaction",
            Reason::LockedTables => "locked_tables",
            Reason::TransactionControl => "transaction_control",
            Reason::SessionState => "session_state",
            Reason::Write => "write",
            Reason::NotPlainRead => "not_plain_read",
            Reason::Unknown => "unknown",
            Reason::LastStatement => "last_statement",
            Reason::UserVariables => "user_variables",
            Reason::GlobalVariables => "global_variables",
            Reason::TemporaryTable => "temporary_table",
            Reason::AfterWrite => "after_write",
            Reason::SqlPrepared => "sql_prepared",
            Reason::Read => "read",
            Reason::NoReplica => "no_replica",
            Reason::HintIgnored => "hint_ignored",
            Reason::Consistency => "consistency",
            Reason::PrimaryDown => "primary_down",
        }
    }
}

/// A routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub target: Target,
    pub reason: Reason,
}

impl Route {
    const fn new(target: Target, reason: Reason) -> Route {
        Route { target, reason }
    }
}

/// What the router needs to know about the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionView {
    /// A transaction is open (the server's IN_TRANS flag), or autocommit is
    /// off so every statement belongs to one.
    pub in_transaction: bool,
    /// The backend a START TRANSACTION READ ONLY runs on, while it is open.
    pub read_only_transaction: Option<usize>,
    /// LOCK TABLES is in force.
    pub locked_tables: bool,
    /// The statement touches a temporary table of the session.
    pub touches_temporary_table: bool,
    /// The statement names a table another session holds a `LOCK TABLES
    /// ... WRITE` on: on the primary it waits for the lock, as on a server,
    /// where a replica would show the locking session's work half done.
    pub touches_write_locked_table: bool,
    /// The backend that ran the previous statement.
    pub last_backend: Option<usize>,
    /// The session has written: reads stay on the primary (the simple
    /// read-your-writes rule until GTID consistency replaces it).
    pub wrote: bool,
    /// The session has SQL-level prepared statements (PREPARE ... FROM).
    pub sql_prepared: bool,
    /// The session ran `SET GLOBAL` (on the primary only): its reads of
    /// global settings go there.
    pub set_global: bool,
    /// A one-shot `SET TRANSACTION` (isolation level, access mode) ran on
    /// the primary and no transaction has taken it yet: the next one,
    /// which may be a single read of a table, runs there.
    pub next_transaction_set: bool,
    /// The target of the first configured rule the statement matched;
    /// it acts like a hint written in the statement (a hint wins).
    pub rule: Option<Hint>,
}

/// Decides where a statement runs. `replica_available` says whether any
/// replica is eligible now (when none is, reads go to the primary).
pub fn route(info: &StatementInfo, session: &SessionView, replica_available: bool) -> Route {
    use Reason as R;
    use Target as T;
    let (hint, from_rule) = match (info.hint, session.rule) {
        (Some(h), _) => (Some(h), false),
        (None, Some(r)) => (Some(r), true),
        (None, None) => (None, false),
    };
    if hint == Some(Hint::Primary) {
        return Route::new(T::Primary, if from_rule { R::RulePrimary } else { R::HintPrimary });
    }
    if let Some(backend) = session.read_only_transaction {
        // User locks, sequences and replication waits are the primary's and
        // not part of any transaction: a lock taken on the replica would
        // exclude nobody.
        if info.flags.contains(Flags::SIDE_EFFECT_FUNC) && info.kind.is_read() {
            return Route::new(T::Primary, R::NotPlainRead);
        }
        // User variables and temporary tables live on the primary (as
        // outside the transaction); what sets or reads them runs there,
        // outside the transaction's snapshot.
        let user_variables = info.kind == StatementKind::SetUserVar
            || info.flags.intersects(Flags::USER_VAR_READ | Flags::USER_VAR_ASSIGN | Flags::INTO);
        if user_variables {
            return Route::new(T::Primary, R::UserVariables);
        }
        if session.touches_temporary_table {
            return Route::new(T::Primary, R::TemporaryTable);
        }
        let changes_rows = matches!(
            info.kind,
            StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
                | StatementKind::Replace
                | StatementKind::LoadData
        );
        if changes_rows {
            return Route::new(T::Backend(backend), R::WriteInReadOnlyTransaction);
        }
        return Route::new(T::Backend(backend), R::ReadOnlyTransaction);
    }
    if session.in_transaction {
        return Route::new(T::Primary, R::Transaction);
    }
    if session.locked_tables {
        return Route::new(T::Primary, R::LockedTables);
    }
    if session.next_transaction_set && matches!(info.kind, StatementKind::Begin { .. }) {
        return Route::new(T::Primary, R::TransactionControl);
    }
    if let Some(route) = route_by_kind(info, replica_available) {
        return route;
    }
    let plain = info.is_plain_read();
    if !plain {
        let reason = match hint {
            Some(Hint::Replica) => R::HintIgnored,
            _ => R::NotPlainRead,
        };
        return Route::new(T::Primary, reason);
    }
    if info.flags.contains(Flags::LAST_STATEMENT_FUNC) {
        return match session.last_backend {
            Some(b) => Route::new(T::Backend(b), R::LastStatement),
            None => Route::new(T::Primary, R::LastStatement),
        };
    }
    if info.flags.contains(Flags::USER_VAR_READ) {
        return Route::new(T::Primary, R::UserVariables);
    }
    if session.set_global && info.flags.contains(Flags::GLOBAL_READ) {
        return Route::new(T::Primary, R::GlobalVariables);
    }
    if session.next_transaction_set {
        return Route::new(T::Primary, R::Transaction);
    }
    if session.touches_temporary_table {
        return Route::new(T::Primary, R::TemporaryTable);
    }
    if session.touches_write_locked_table {
        return Route::new(T::Primary, R::LockedTables);
    }
    if session.sql_prepared && info.kind == StatementKind::Unknown {
        return Route::new(T::Primary, R::SqlPrepared);
    }
    let hinted = hint == Some(Hint::Replica);
    if session.wrote && !hinted {
        return Route::new(T::Primary, R::AfterWrite);
    }
    if !replica_available {
        return Route::new(T::Primary, R::NoReplica);
    }
    let reason = match (hinted, from_rule) {
        (false, _) => R::Read,
        (true, false) => R::HintReplica,
        (true, true) => R::RuleReplica,
    };
    Route::new(T::AnyReplica, reason)
}

/// Statement kinds whose route does not depend on their flags.
fn route_by_kind(info: &StatementInfo, replica_available: bool) -> Option<Route> {
    use Reason as R;
    use StatementKind as K;
    use Target as T;
    let primary = |reason| Some(Route::new(T::Primary, reason));
    match info.kind {
        K::Begin { read_only: true } if replica_available && info.statements == 1 => {
            Some(Route::new(T::AnyReplica, R::ReadOnlyTransaction))
        }
        K::Begin { .. }
        | K::Commit
        | K::Rollback
        | K::Savepoint
        | K::RollbackToSavepoint
        | K::ReleaseSavepoint
        | K::Xa => primary(R::TransactionControl),
        K::SetAutocommit(_)
        | K::SetTransaction
        | K::SetNames
        | K::SetSession
        | K::SetUserVar
        | K::Use
        | K::LockTables
        | K::UnlockTables
        | K::Prepare
        | K::Execute
        | K::Deallocate => primary(R::SessionState),
        K::Insert
        | K::Update
        | K::Delete
        | K::Replace
        | K::LoadData
        | K::Ddl
        | K::CreateTemporaryTable
        | K::DropTemporaryTable
        | K::Grant
        | K::Call
        | K::Do
        | K::Handler
        | K::SetGlobal
        | K::Flush
        | K::Kill
        | K::Other => primary(R::Write),
        K::Unknown => primary(R::Unknown),
        K::Select | K::Show | K::Describe | K::Explain { .. } => None,
    }
}

/// Whether a statement that goes to the primary only because it changes
/// the session's state may run on a replica instead while the primary
/// cannot be reached, so that a client can still log in (many drivers send
/// `SET NAMES` first) and read: SET NAMES, a SET of session variables, USE,
/// alone in its text. Not one that reads or assigns user variables (they
/// live on the primary's connection), calls a function that is not a pure
/// builtin, is used up by the next statement (`insert_id`), or may turn
/// autocommit off (a transaction runs on the primary); `autocommit = 1`
/// may be among the assignments (Connector/J sends it at login): routed
/// here, outside a transaction, autocommit is on already. The caller also
/// rules out a statement that reads a table (a subquery, behind on a
/// replica).
pub fn may_stand_in(info: &StatementInfo) -> bool {
    use StatementKind as K;
    let disqualifying = Flags::USER_VAR_READ
        | Flags::USER_VAR_ASSIGN
        | Flags::INTO
        | Flags::SIDE_EFFECT_FUNC
        | Flags::UNKNOWN_FUNC
        | Flags::ONE_SHOT_SET
        | Flags::LAST_STATEMENT_FUNC
        | Flags::AUTOCOMMIT_OFF;
    info.statements == 1
        && matches!(info.kind, K::SetNames | K::SetSession | K::Use | K::SetAutocommit(true))
        && !info.flags.intersects(disqualifying)
}

/// Whether a statement of this kind commits an open transaction before it
/// runs (MariaDB's implicit commit): DDL, account management, LOCK TABLES,
/// FLUSH, and a BEGIN inside a transaction.
pub fn commits_implicitly(kind: StatementKind) -> bool {
    use StatementKind as K;
    matches!(kind, K::Begin { .. } | K::Ddl | K::Grant | K::LockTables | K::Flush)
}

/// Whether a statement of this kind, once it succeeded, means the session
/// has written (so that later reads see it).
pub fn is_write(info: &StatementInfo) -> bool {
    use StatementKind as K;
    match info.kind {
        // A locking read or a user-variable assignment changes no data;
        // functions with side effects (sequences, UDFs) and INTO may.
        K::Select | K::Show | K::Describe | K::Explain { .. } => {
            info.flags.intersects(Flags::SIDE_EFFECT_FUNC | Flags::UNKNOWN_FUNC | Flags::INTO)
        }
        K::Begin { .. }
        | K::Commit
        | K::Rollback
        | K::Savepoint
        | K::RollbackToSavepoint
        | K::ReleaseSavepoint
        | K::SetAutocommit(_)
        | K::SetTransaction
        | K::SetNames
        | K::SetSession
        | K::SetUserVar
        | K::Use
        | K::Prepare
        | K::Deallocate
        | K::LockTables
        | K::UnlockTables
        | K::Handler
        | K::Kill => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    fn r(sql: &str) -> Route {
        route(&classify(sql), &SessionView::default(), true)
    }

    fn r_in(sql: &str, session: SessionView) -> Route {
        route(&classify(sql), &session, true)
    }

    #[test]
    fn autocommit_select_goes_to_a_replica() {
        assert_eq!(r("SELECT * FROM t WHERE id = 1"), Route::new(Target::AnyReplica, Reason::Read));
        assert_eq!(r("SHOW TABLES").target, Target::AnyReplica);
        assert_eq!(r("DESCRIBE t").target, Target::AnyReplica);
        assert_eq!(r("EXPLAIN SELECT 1").target, Target::AnyReplica);
    }

    #[test]
    fn writes_go_to_the_primary() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "REPLACE INTO t VALUES (1)",
            "CREATE TABLE x (a INT)",
            "GRANT SELECT ON *.* TO u",
            "CALL p()",
            "LOAD DATA LOCAL INFILE 'f' INTO TABLE t",
            "XA START 'x'",
            "FLUSH TABLES",
        ] {
            assert_eq!(r(sql).target, Target::Primary, "{sql}");
        }
    }

    #[test]
    fn locking_reads_go_to_the_primary() {
        for sql in [
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT * FROM t FOR SHARE SKIP LOCKED",
            "SELECT * FROM t FOR UPDATE NOWAIT",
        ] {
            assert_eq!(r(sql).target, Target::Primary, "{sql}");
        }
    }

    #[test]
    fn side_effect_functions_go_to_the_primary() {
        for sql in [
            "SELECT GET_LOCK('a', 1)",
            "SELECT RELEASE_LOCK('a')",
            "SELECT NEXTVAL(s)",
            "SELECT my_udf(1)",
        ] {
            assert_eq!(r(sql).target, Target::Primary, "{sql}");
        }
    }

    #[test]
    fn last_statement_functions_follow_the_previous_statement() {
        let s = SessionView { last_backend: Some(2), ..SessionView::default() };
        for sql in [
            "SELECT LAST_INSERT_ID()",
            "SELECT ROW_COUNT()",
            "SELECT FOUND_ROWS()",
            "SHOW WARNINGS",
            "SELECT @@warning_count",
        ] {
            assert_eq!(
                r_in(sql, s),
                Route::new(Target::Backend(2), Reason::LastStatement),
                "{sql}"
            );
        }
    }

    #[test]
    fn global_settings_are_read_on_the_primary_after_the_session_set_one() {
        let after = SessionView { set_global: true, ..SessionView::default() };
        for sql in [
            "SELECT @@global.max_connections",
            "SELECT @@max_connections",
            "SHOW GLOBAL VARIABLES LIKE 'max_connections'",
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES",
        ] {
            assert_eq!(r(sql), Route::new(Target::AnyReplica, Reason::Read), "{sql}");
            let want = Route::new(Target::Primary, Reason::GlobalVariables);
            assert_eq!(r_in(sql, after), want, "{sql}");
        }
        for sql in ["SELECT @@session.sql_mode", "SELECT @@local.time_zone", "SELECT 1"] {
            assert_eq!(r_in(sql, after), Route::new(Target::AnyReplica, Reason::Read), "{sql}");
        }
    }

    #[test]
    fn a_pending_one_shot_set_transaction_takes_the_next_transaction_to_the_primary() {
        let s = SessionView { next_transaction_set: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT * FROM t", s), Route::new(Target::Primary, Reason::Transaction));
        let begin = r_in("START TRANSACTION READ ONLY", s);
        assert_eq!(begin, Route::new(Target::Primary, Reason::TransactionControl));
        assert_eq!(r("START TRANSACTION READ ONLY").target, Target::AnyReplica);
    }

    #[test]
    fn a_read_of_a_table_another_session_write_locked_waits_on_the_primary() {
        let s = SessionView { touches_write_locked_table: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT * FROM t", s), Route::new(Target::Primary, Reason::LockedTables));
    }

    #[test]
    fn transaction_stays_on_primary_until_it_ends() {
        let s = SessionView { in_transaction: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT 1", s), Route::new(Target::Primary, Reason::Transaction));
        assert_eq!(r("BEGIN").target, Target::Primary);
        assert_eq!(r("COMMIT").target, Target::Primary);
    }

    #[test]
    fn read_only_transaction_runs_on_one_replica() {
        assert_eq!(
            r("START TRANSACTION READ ONLY"),
            Route::new(Target::AnyReplica, Reason::ReadOnlyTransaction)
        );
        let s = SessionView {
            in_transaction: true,
            read_only_transaction: Some(1),
            ..SessionView::default()
        };
        assert_eq!(r_in("SELECT 1", s).target, Target::Backend(1));
        assert_eq!(r_in("COMMIT", s).target, Target::Backend(1));
        // A user lock inside it is the primary's, as outside any transaction.
        assert_eq!(r_in("SELECT GET_LOCK('m', 0)", s).target, Target::Primary);
        assert_eq!(r_in("SELECT RELEASE_LOCK('m')", s).target, Target::Primary);
        assert_eq!(r_in("SELECT NEXTVAL(seq)", s).target, Target::Primary);
        // Writes are refused as the primary would refuse them; a write to
        // a temporary table is allowed in a read-only transaction, on the
        // primary where the table is.
        for write in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "REPLACE INTO t VALUES (1)",
            "LOAD DATA INFILE '/tmp/x' INTO TABLE t",
        ] {
            assert_eq!(r_in(write, s).reason, Reason::WriteInReadOnlyTransaction, "{write}");
        }
        let temp = SessionView { touches_temporary_table: true, ..s };
        assert_eq!(
            r_in("INSERT INTO tmp VALUES (1)", temp),
            Route::new(Target::Primary, Reason::TemporaryTable)
        );
        assert_eq!(r_in("SELECT * FROM tmp", temp).target, Target::Primary);
        assert_eq!(r_in("SELECT * FROM t FOR UPDATE", s).reason, Reason::ReadOnlyTransaction);
        // User variables are the primary's.
        for sql in ["SET @x = 1", "SELECT @x", "SELECT a INTO @x FROM t", "SELECT @x := a FROM t"] {
            assert_eq!(r_in(sql, s), Route::new(Target::Primary, Reason::UserVariables), "{sql}");
        }
    }

    #[test]
    fn implicit_commits_are_known() {
        let commits = |sql| commits_implicitly(classify(sql).kind);
        for sql in [
            "CREATE TABLE t (a INT)",
            "ALTER TABLE t ADD b INT",
            "DROP TABLE t",
            "TRUNCATE t",
            "RENAME TABLE t TO u",
            "GRANT SELECT ON *.* TO u",
            "LOCK TABLES t READ",
            "FLUSH TABLES",
            "BEGIN",
            "START TRANSACTION READ ONLY",
        ] {
            assert!(commits(sql), "{sql}");
        }
        for sql in
            ["CREATE TEMPORARY TABLE t (a INT)", "INSERT INTO t VALUES (1)", "SELECT 1", "COMMIT"]
        {
            assert!(!commits(sql), "{sql}");
        }
    }

    #[test]
    fn locked_tables_pin_the_session_to_the_primary() {
        let s = SessionView { locked_tables: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT 1", s), Route::new(Target::Primary, Reason::LockedTables));
    }

    #[test]
    fn into_and_user_variable_assignment_go_to_the_primary() {
        assert_eq!(r("SELECT a INTO @x FROM t").target, Target::Primary);
        assert_eq!(r("SELECT @x := 1").target, Target::Primary);
        assert_eq!(r("SELECT @x").target, Target::Primary);
    }

    #[test]
    fn hints_force_the_target() {
        assert_eq!(
            r("/* rwsplit:primary */ SELECT 1"),
            Route::new(Target::Primary, Reason::HintPrimary)
        );
        assert_eq!(r("INSERT INTO t VALUES (1) /* rwsplit:replica */").reason, Reason::Write);
        let s = SessionView { wrote: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT 1 /* rwsplit:replica */", s).target, Target::AnyReplica);
    }

    #[test]
    fn rules_act_like_hints_and_never_send_writes_to_replicas() {
        let primary_rule = SessionView { rule: Some(Hint::Primary), ..SessionView::default() };
        assert_eq!(
            r_in("SELECT 1", primary_rule),
            Route::new(Target::Primary, Reason::RulePrimary)
        );
        let replica_rule =
            SessionView { rule: Some(Hint::Replica), wrote: true, ..SessionView::default() };
        assert_eq!(
            r_in("SELECT 1", replica_rule),
            Route::new(Target::AnyReplica, Reason::RuleReplica)
        );
        assert_eq!(r_in("DELETE FROM t", replica_rule).target, Target::Primary);
        // A hint in the statement wins over a rule.
        assert_eq!(
            r_in("SELECT /* rwsplit:primary */ 1", replica_rule).reason,
            Reason::HintPrimary
        );
    }

    #[test]
    fn no_replica_means_primary() {
        assert_eq!(
            route(&classify("SELECT 1"), &SessionView::default(), false),
            Route::new(Target::Primary, Reason::NoReplica)
        );
    }

    #[test]
    fn reads_after_a_write_stay_on_the_primary() {
        let s = SessionView { wrote: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT 1", s), Route::new(Target::Primary, Reason::AfterWrite));
    }

    #[test]
    fn temporary_tables_pin_statements_that_touch_them() {
        let s = SessionView { touches_temporary_table: true, ..SessionView::default() };
        assert_eq!(r_in("SELECT * FROM tmp1", s).reason, Reason::TemporaryTable);
    }

    #[test]
    fn session_state_statements_go_to_the_primary() {
        for sql in [
            "SET NAMES utf8mb4",
            "SET autocommit = 0",
            "USE app",
            "SET @a = 1",
            "PREPARE s FROM 'SELECT 1'",
        ] {
            assert_eq!(r(sql).target, Target::Primary, "{sql}");
        }
    }

    #[test]
    fn multi_statement_with_a_write_goes_to_the_primary() {
        assert_eq!(r("SELECT 1; DELETE FROM t").target, Target::Primary);
        assert_eq!(r("SELECT 1; SELECT 2").target, Target::AnyReplica);
    }

    #[test]
    fn only_plain_session_state_may_run_on_a_replica_while_the_primary_is_down() {
        let may = |sql: &str| may_stand_in(&classify(sql));
        for sql in [
            "SET NAMES utf8mb4",
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'",
            "SET CHARACTER SET utf8",
            "SET SESSION sql_mode = 'STRICT_TRANS_TABLES'",
            "SET @@session.time_zone = '+00:00', NAMES utf8mb4",
            "USE app",
            "SET autocommit = 1",
            "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')",
        ] {
            assert!(may(sql), "{sql}");
        }
        for sql in [
            // User variables live on the primary's connection.
            "SET @x = 1",
            "SET sql_mode = @saved",
            // Used up by the next statement there.
            "SET insert_id = 5",
            // A transaction runs on the primary.
            "SET autocommit = 0",
            "SET sql_mode = '', autocommit = 0",
            "SET sql_mode = '', autocommit = @ac",
            "SET sql_mode = '', autocommit = IF(1, 0, 1)",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET GLOBAL max_connections = 10",
            "SET NAMES utf8mb4; SET @x = 1",
            "SET time_zone = my_func()",
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
        ] {
            assert!(!may(sql), "{sql}");
        }
    }
}
