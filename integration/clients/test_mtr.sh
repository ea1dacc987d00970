#!/usr/bin/env bash
# MariaDB's own regression tests (mysql-test, Debian's mariadb-test-data)
# run twice, straight to the primary and through a proxy, and their output
# compared: what the server's tests print must not change behind rwsplit.
# The tests named here print the same both ways; a test that prints only
# what differs by design (processlists, DEFINER hosts, SET GLOBAL, users
# the proxy does not know, replica statistics) is not among them.
#
# Needs the lab up and target/debug/rwsplit built. The tests log in as root
# over the servers' unix sockets ("localhost"); the proxy takes them on a
# unix socket of its own and logs in to the servers as root@127.0.0.1, which
# this script creates with no password on the loopback lab and drops again.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=integration/lib.sh
. integration/lib.sh

ensure_apt mariadb-test mariadb-test-data
suite=/usr/share/mysql/mysql-test

tests=(
    case comments compare date_formats func_concat func_crypt
    func_hybrid_type func_if func_op func_regexp func_set insert_update
    limit negation_elimination prepare ps_10nestset ps_not_windows row
    strict type_datetime last_value sp-big delete_innodb insert_innodb
    insert_returning_datatypes multi_update_innodb set_operation_oracle
    signal_demo1 signal_demo2 signal_demo3 signal_sqlmode
    sp-anchor-row-type-cursor sp-condition-handler sp-fib sp-group
    # A procedure's result sets while it holds a cursor (rwsplit hung).
    sp-cursor
    # KILL of a session in the middle of a statement.
    lock_kill
    # A SET run by SQL EXECUTE.
    ps_1general
    # sql_mode=ORACLE: PL/SQL blocks, cursors, packages of statements.
    suite/compat/oracle/t/func_decode suite/compat/oracle/t/minus
    suite/compat/oracle/t/misc suite/compat/oracle/t/sp-anonymous
    suite/compat/oracle/t/sp-cursor-decl suite/compat/oracle/t/trigger
    suite/compat/oracle/t/empty_string_literal
    suite/compat/oracle/t/table_value_constr
    # A failed multi-row INSERT into MyISAM keeps its first rows (read
    # back from a replica without them).
    auto_increment_ranges_myisam
    # ROW_COUNT() inside an expression keeps the item's column name.
    ctype_binary
    # SHOW STATUS LIKE 'Last_query_cost' where the last statement ran.
    greedy_optimizer
    # SET optimizer_switch = IFNULL(@user_variable, ...).
    subselect_mat
    # An XPath reading a user variable ($@i).
    xml
    # sql_auto_is_null: WHERE id IS NULL after an INSERT.
    odbc
    # Views taking a sequence's NEXTVAL, read as root (SUPER): refused by
    # the replica connections' read-only transactions, run on the primary.
    suite/sql_sequence/view
    # Dirty reads under READ UNCOMMITTED, which only the primary has.
    suite/innodb/t/innodb-isolation
    # KILL QUERY @id of an id read from CONNECTION_ID(); KILL's forms.
    suite/innodb_fts/t/fts_kill_query kill
    # Reads of a table another session holds LOCK TABLES ... WRITE on.
    suite/parts/t/partition_special_innodb suite/maria/maria-mvcc
    # character_set_database = ucs2: MariaDB pads the OK's session-state
    # block (its GTID was lost, and reads after DDL were stale).
    suite/jp/t/jp_alter_ucs2 suite/jp/t/jp_like_ucs2
    # The user_variables plugin's list of the session's user variables.
    plugin/user_variables/user_variables/basic
    # COMMIT [AND] RELEASE and completion_type = RELEASE end the session.
    suite/sys_vars/t/completion_type_func
    # SET insert_id is used up by the next insert (read back as 0).
    suite/sys_vars/t/insert_id_func
    # A SET GLOBAL reaches the sessions after it (pooled connections).
    suite/binlog/t/binlog_bug23533
)

work=$(mktemp -d)
proxy_pid=
cleanup() {
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
    lab_sql 3306 "DROP USER IF EXISTS root@'127.0.0.1'; SET GLOBAL sql_mode = DEFAULT" || true
    rm -rf "$work"
}
trap cleanup EXIT

lab_sql 3306 "CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS mtr;
    CREATE PROCEDURE IF NOT EXISTS mtr.add_suppression(pattern VARCHAR(255)) BEGIN END;" \
    || die "cannot create the tests' root login"

cat >"$work/mtr.toml" <<EOF
[[listeners]]
socket = "$work/proxy.sock"
[[users]]
name = "root"
password = ""
[[backends]]
name = "primary"
address = "127.0.0.1:3306"
role = "primary"
[[backends]]
name = "replica1"
address = "127.0.0.1:3307"
role = "replica"
[[backends]]
name = "replica2"
address = "127.0.0.1:3308"
role = "replica"
[monitor]
user = "monitor"
password = "monitor"
[pool]
multiplex = true
[log]
sessions = false
EOF
./target/debug/rwsplit --config "$work/mtr.toml" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do [ -S "$work/proxy.sock" ] && break; sleep 0.1; done
[ -S "$work/proxy.sock" ] || { cat "$work/proxy.log"; die "the proxy did not start"; }

# Runs test $2 (a name in main/, or a path under the suite) against the
# server behind socket $1; its output on stdout.
run_test() {
    local file="main/$2.test"
    [[ "$2" == */* ]] && file="$2.test"
    mkdir -p "$work/var/tmp"
    (cd "$suite" && MYSQL_TEST_DIR="$suite" MYSQLTEST_VARDIR="$work/var" \
        MYSQL_TMP_DIR="$work/var/tmp" timeout 120 mariadb-test --socket="$1" --user=root \
        --database=test --basedir="$suite/" --tmpdir="$work/var/tmp" --logdir="$work/var" \
        --test-file="$file" 2>&1) || echo "exit status $?"
    rm -rf "$work/var"
}
# An EXPLAIN's row estimates (`rows`, `filtered`) come from the statistics
# of the server that ran it, which a replica keeps for itself: masked on
# both sides, as mysql-test's own --replace_column does in many tests.
mask_estimates() {
    awk -F'\t' 'BEGIN { OFS = "\t" }
        $1 == "id" && $2 == "select_type" {
            width = NF; rows = 0; filtered = 0
            for (i = 1; i <= NF; i++) {
                if ($i == "rows") rows = i
                if ($i == "filtered") filtered = i
            }
            print; next
        }
        width && NF == width {
            if (rows) $rows = "#"
            if (filtered) $filtered = "#"
            print; next
        }
        { width = 0; print }'
}

# Each run starts with an empty test database (on every server), and the
# primary's default sql_mode (main.kill sets it to '' and stops before it
# sets it back).
fresh() {
    lab_sql 3306 "SET GLOBAL sql_mode = DEFAULT; DROP DATABASE IF EXISTS test; CREATE DATABASE test;
        DROP DATABASE IF EXISTS mysqltest; DROP DATABASE IF EXISTS mysqltest1;" \
        || die "cannot reset the test database"
}

failed=0
for t in "${tests[@]}"; do
    fresh
    run_test "${RWSPLIT_LAB_DIR:-/tmp/rwsplit-lab}/node1/mysqld.sock" "$t" | mask_estimates >"$work/direct.out"
    fresh
    run_test "$work/proxy.sock" "$t" | mask_estimates >"$work/proxied.out"
    # Two runs that both failed to start would match: the primary's must
    # have run the test (a missing file or a refused login prints a line
    # or two).
    if [ "$(wc -l <"$work/direct.out")" -lt 10 ]; then
        log "mysql-test $t did not run against the primary:"; cat "$work/direct.out"
        failed=$((failed + 1))
        continue
    fi
    if ! diff -u "$work/direct.out" "$work/proxied.out" >"$work/diff"; then
        log "mysql-test $t: the output through the proxy differs from the primary's"
        head -60 "$work/diff"
        failed=$((failed + 1))
    fi
done
if ! kill -0 "$proxy_pid" 2>/dev/null; then
    log "the mysql-test proxy died:"; cat "$work/proxy.log"; failed=$((failed + 1))
fi
log "mysql-test: ${#tests[@]} tests compared, $failed failed (differed, or did not run)"
[ "$failed" -eq 0 ]
