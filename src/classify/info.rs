//! The classifier's output: what a statement is, what in it matters for routing, and who
//! decided. Routing reads only these values, never syntax.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// What one statement (or a multi-statement text) is, as far as routing cares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StatementKind {
    /// SELECT, a parenthesised SELECT, a read-only CTE, VALUES, TABLE.
    Select,
    /// SHOW ... (SHOW WARNINGS/ERRORS also set `LAST_STATEMENT_FUNC`).
    Show,
    /// DESC/DESCRIBE/EXPLAIN of a table.
    Describe,
    /// EXPLAIN of a statement, which it does not run; `of_read` when that statement reads.
    /// EXPLAIN ANALYZE and ANALYZE SELECT run it, and get the statement's own kind.
    Explain {
        /// The explained statement is a read.
        of_read: bool,
    },
    /// INSERT, including INSERT ... SELECT and a CTE ending in INSERT.
    Insert,
    /// UPDATE, including a CTE ending in UPDATE.
    Update,
    /// DELETE, including a CTE ending in DELETE.
    Delete,
    /// REPLACE.
    Replace,
    /// LOAD DATA / LOAD XML.
    LoadData,
    /// CREATE/ALTER/DROP/RENAME/TRUNCATE of a non-temporary object.
    Ddl,
    /// CREATE TEMPORARY TABLE.
    CreateTemporaryTable,
    /// DROP TEMPORARY TABLE.
    DropTemporaryTable,
    /// GRANT, REVOKE, CREATE/ALTER/DROP/RENAME USER or ROLE, SET PASSWORD, SET DEFAULT ROLE.
    Grant,
    /// CALL of a stored procedure.
    Call,
    /// DO expr.
    Do,
    /// HANDLER ... OPEN/READ/CLOSE.
    Handler,
    /// `BEGIN [WORK]`, `START TRANSACTION [...]`.
    Begin {
        /// START TRANSACTION READ ONLY.
        read_only: bool,
    },
    /// COMMIT.
    Commit,
    /// ROLLBACK (not to a savepoint).
    Rollback,
    /// SAVEPOINT x.
    Savepoint,
    /// `ROLLBACK [WORK] TO [SAVEPOINT] x`.
    RollbackToSavepoint,
    /// RELEASE SAVEPOINT x.
    ReleaseSavepoint,
    /// SET autocommit to a literal value, as the statement's only assignment.
    SetAutocommit(bool),
    /// `SET [SESSION] TRANSACTION ...`
    SetTransaction,
    /// SET NAMES / SET CHARACTER SET / SET CHARSET.
    SetNames,
    /// Any other SET of session variables (several assignments, sql_mode, @@session.x ...).
    SetSession,
    /// SET of user variables only (SET @x = ...).
    SetUserVar,
    /// SET touching a global variable (GLOBAL, @@global., PERSIST).
    SetGlobal,
    /// USE db.
    Use,
    /// LOCK TABLES.
    LockTables,
    /// UNLOCK TABLES.
    UnlockTables,
    /// SQL PREPARE s FROM ...
    Prepare,
    /// SQL EXECUTE s [USING ...], EXECUTE IMMEDIATE.
    Execute,
    /// DEALLOCATE PREPARE / DROP PREPARE.
    Deallocate,
    /// XA START/END/PREPARE/COMMIT/ROLLBACK/RECOVER.
    Xa,
    /// FLUSH ...
    Flush,
    /// KILL [QUERY|CONNECTION] id.
    Kill,
    /// Recognised, not data access: admin, INSTALL, SHUTDOWN, ANALYZE/OPTIMIZE/CHECK/REPAIR
    /// TABLE, CHANGE MASTER, GET DIAGNOSTICS, ...
    Other,
    /// Could not decide: the proxy sends it to the primary.
    Unknown,
}

impl StatementKind {
    /// True for the kinds that only read data (flags decide whether the read is plain).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            StatementKind::Select
                | StatementKind::Show
                | StatementKind::Describe
                | StatementKind::Explain { of_read: true }
        )
    }
}

/// Properties of a statement that routing must see, as a small bitset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    /// No flag.
    pub const EMPTY: Flags = Flags(0);
    /// FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE, NOWAIT, SKIP LOCKED.
    pub const LOCKING_READ: Flags = Flags(1 << 0);
    /// A function that needs the primary (user locks, sequences, replication waits).
    pub const SIDE_EFFECT_FUNC: Flags = Flags(1 << 1);
    /// Reads the previous statement's results: LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS(),
    /// @@warning_count, @@error_count, @@identity, @@last_insert_id, SHOW WARNINGS/ERRORS,
    /// the optimizer trace, profiles and session status (`Last_query_cost`).
    pub const LAST_STATEMENT_FUNC: Flags = Flags(1 << 2);
    /// SELECT ... INTO @var / OUTFILE / DUMPFILE.
    pub const INTO: Flags = Flags(1 << 3);
    /// A user variable is assigned (`@x :=`, `SET @x =`, `INTO @x`).
    pub const USER_VAR_ASSIGN: Flags = Flags(1 << 4);
    /// A user variable is read (`@x`, not `@@x`).
    pub const USER_VAR_READ: Flags = Flags(1 << 5);
    /// SQL_CALC_FOUND_ROWS.
    pub const SQL_CALC_FOUND_ROWS: Flags = Flags(1 << 6);
    /// A call of a function not known to be a pure builtin (UDF or stored function).
    pub const UNKNOWN_FUNC: Flags = Flags(1 << 7);
    /// `LAST_INSERT_ID(expr)`: sets the session's last insert id to a value
    /// no OK packet reports (in a SELECT).
    pub const SETS_LAST_INSERT_ID: Flags = Flags(1 << 8);
    /// Asks what only the primary answers for the proxy, which presents
    /// itself as the primary: its binary log and GTID position (SHOW
    /// MASTER STATUS, SHOW BINARY LOGS, SHOW BINLOG EVENTS, SHOW SLAVE
    /// HOSTS, `@@gtid_binlog_pos`, `@@gtid_current_pos`), whether it
    /// takes writes (`@@read_only`) or replicates (SHOW SLAVE STATUS);
    /// and its processlist, transactions and locks (SHOW PROCESSLIST, SHOW
    /// ENGINE INNODB STATUS, `information_schema.PROCESSLIST`,
    /// `INNODB_TRX`, `INNODB_LOCK_WAITS`, `METADATA_LOCK_INFO`,
    /// `performance_schema.data_locks`...), where the session's writes and
    /// the locks they wait for are.
    pub const PRIMARY_STATE: Flags = Flags(1 << 9);
    /// Reads the session's last insert id: `LAST_INSERT_ID()`,
    /// `@@identity`, `@@last_insert_id` (also LAST_STATEMENT_FUNC).
    pub const READS_LAST_INSERT_ID: Flags = Flags(1 << 10);
    /// Reads a server variable the proxy answers itself (`@@socket`: see
    /// [`crate::classify::answer_proxy_variables`]).
    pub const PROXY_VARIABLE: Flags = Flags(1 << 11);
    /// A SET of a session variable the server uses up with a later
    /// statement (`insert_id`, `last_insert_id`, `gtid_seq_no`, the random
    /// seeds): replayed on another connection it would apply again.
    pub const ONE_SHOT_SET: Flags = Flags(1 << 12);
    /// `SET STATEMENT var = value ... FOR <stmt>`: variables set for this
    /// statement only (the server reports a session state change for it).
    pub const STATEMENT_SETS: Flags = Flags(1 << 13);
    /// A SET that may turn autocommit off among other assignments: to
    /// 0/OFF/FALSE, or to a value the proxy does not read (an expression,
    /// a variable). `SET autocommit = 0` alone is `SetAutocommit(false)`.
    pub const AUTOCOMMIT_OFF: Flags = Flags(1 << 14);
    /// A SET of session variables beside a global one (`SET @@x = 1,
    /// @@global.y = 2`, a `SetGlobal`): its session part is not replayed
    /// on other connections.
    pub const SESSION_SET_BESIDE_GLOBAL: Flags = Flags(1 << 15);
    /// May read a server's global setting or counter: `@@global.x`, a
    /// variable named without a scope (`@@max_connections` is global
    /// only), SHOW [GLOBAL | SESSION] VARIABLES (which list the global-only
    /// ones too), SHOW GLOBAL STATUS, and the tables of the same. A replica
    /// answers with its own value; a session that ran `SET GLOBAL` (on the
    /// primary, not replicated) reads these on the primary.
    pub const GLOBAL_READ: Flags = Flags(1 << 16);

    const NAMES: [(Flags, &'static str); 17] = [
        (Flags::LOCKING_READ, "LOCKING_READ"),
        (Flags::SIDE_EFFECT_FUNC, "SIDE_EFFECT_FUNC"),
        (Flags::LAST_STATEMENT_FUNC, "LAST_STATEMENT_FUNC"),
        (Flags::INTO, "INTO"),
        (Flags::USER_VAR_ASSIGN, "USER_VAR_ASSIGN"),
        (Flags::USER_VAR_READ, "USER_VAR_READ"),
        (Flags::SQL_CALC_FOUND_ROWS, "SQL_CALC_FOUND_ROWS"),
        (Flags::UNKNOWN_FUNC, "UNKNOWN_FUNC"),
        (Flags::SETS_LAST_INSERT_ID, "SETS_LAST_INSERT_ID"),
        (Flags::PRIMARY_STATE, "PRIMARY_STATE"),
        (Flags::READS_LAST_INSERT_ID, "READS_LAST_INSERT_ID"),
        (Flags::PROXY_VARIABLE, "PROXY_VARIABLE"),
        (Flags::ONE_SHOT_SET, "ONE_SHOT_SET"),
        (Flags::STATEMENT_SETS, "STATEMENT_SETS"),
        (Flags::AUTOCOMMIT_OFF, "AUTOCOMMIT_OFF"),
        (Flags::SESSION_SET_BESIDE_GLOBAL, "SESSION_SET_BESIDE_GLOBAL"),
        (Flags::GLOBAL_READ, "GLOBAL_READ"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every flag in `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any flag in `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// True when no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the flags in `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// A routing hint written in a comment: `/* rwsplit:primary */`, `/* rwsplit:replica */`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Hint {
    /// Run on the primary.
    Primary,
    /// A replica is acceptable (the router still refuses it for writes).
    Replica,
}

/// A consistency hint: `/* rwsplit:consistency=gtid */`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Consistency {
    /// Any replica, however far behind.
    Eventual,
    /// Stay on the server that ran the session's last write.
    Pin,
    /// A replica that holds the session's last GTID.
    Gtid,
    /// A replica that holds the primary's latest GTID.
    GtidGlobal,
}

/// Who decided the kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Tier {
    /// The single-pass lexer.
    Lexer,
    /// The sqlparser tier (or its cached verdict) for at least one statement.
    Parser,
}

/// Everything the router needs to know about a statement text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatementInfo {
    /// The kind; for several statements, the first that is not a read, else the first.
    pub kind: StatementKind,
    /// Flags found anywhere in the text (all statements, subqueries included).
    pub flags: Flags,
    /// A primary/replica hint from a comment. Primary wins when both appear.
    pub hint: Option<Hint>,
    /// A consistency hint from a comment; the last one wins.
    pub consistency: Option<Consistency>,
    /// 64-bit hash of the normalized text (see [`super::normalize`]); the parser tier's
    /// cache key.
    pub digest: u64,
    /// Number of non-empty statements in the text.
    pub statements: u16,
    /// Who decided.
    pub tier: Tier,
}

/// Flags that disqualify a read from going to a replica on its own.
const NOT_PLAIN: Flags = Flags(
    Flags::LOCKING_READ.0
        | Flags::SIDE_EFFECT_FUNC.0
        | Flags::INTO.0
        | Flags::USER_VAR_ASSIGN.0
        | Flags::UNKNOWN_FUNC.0
        | Flags::SETS_LAST_INSERT_ID.0
        | Flags::PRIMARY_STATE.0,
);

impl StatementInfo {
    /// A read a replica may answer: Select/Show/Describe/Explain of a read, with none of
    /// LOCKING_READ, SIDE_EFFECT_FUNC, INTO, USER_VAR_ASSIGN, UNKNOWN_FUNC,
    /// SETS_LAST_INSERT_ID, PRIMARY_STATE. For several
    /// statements this holds only if it holds for every one: the kind is then the first
    /// statement that is not a read and the flags are the union, so the same test works.
    /// (LAST_STATEMENT_FUNC and USER_VAR_READ do not disqualify: they say *which* server,
    /// and the router checks them itself.)
    pub fn is_plain_read(&self) -> bool {
        plain_read(self.kind, self.flags)
    }
}

/// The plain-read test for one statement's kind and flags.
pub(super) fn plain_read(kind: StatementKind, flags: Flags) -> bool {
    kind.is_read() && !flags.intersects(NOT_PLAIN)
}
