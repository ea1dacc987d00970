#!/usr/bin/env bash
# The mariadb command-line client through rwsplit, compared byte for byte with
# the same statements run straight against the primary. Needs the lab
# (integration/lab.sh up) and a running proxy.
#
#   RWSPLIT_PORT=6450 integration/clients/test_cli.sh
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306). Exits non-zero when any output differs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=test_cli
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

HOST=${RWSPLIT_HOST:-127.0.0.1}
PROXY_PORT=${RWSPLIT_PORT:-6450}
PRIMARY_PORT=${RWSPLIT_PRIMARY_PORT:-3306}
RUN=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
T_PROXY="cli_${RUN}_p"
T_DIRECT="cli_${RUN}_d"

command -v mariadb >/dev/null || die "the mariadb client is not installed (apt-get install mariadb-client)"
wait_for_port "$HOST" "$PRIMARY_PORT" 5 || die "nothing listens on the primary, $HOST:$PRIMARY_PORT (integration/lab.sh up)"
wait_for_port "$HOST" "$PROXY_PORT" 5 || die "nothing listens on the proxy, $HOST:$PROXY_PORT (set RWSPLIT_PORT)"

TMP=$(mktemp -d)
cleanup() {
    client "$PRIMARY_PORT" -e "DROP VIEW IF EXISTS \`${T_PROXY}_v\`, \`${T_DIRECT}_v\`;
        DROP TABLE IF EXISTS \`$T_PROXY\`, \`$T_DIRECT\`, \`${T_PROXY}_r\`" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

client() {
    local port="$1"; shift
    mariadb --no-defaults --protocol=tcp -h"$HOST" -P"$port" -uapp -papp --connect-timeout=10 \
        --database=app "$@"
}

# dump PORT ARGS...: mariadb-dump of database app (ARGS name the tables).
dump() {
    local port="$1"; shift
    mariadb-dump --no-defaults --protocol=tcp -h"$HOST" -P"$port" -uapp -papp --skip-dump-date app "$@"
}

PASSED=0
FAILED=0

# check NAME MARIADB-ARGS...: run the client through the proxy and directly
# and compare stdout, stderr and exit code. @T@ in an argument stands for a
# table name of each side's own, so that both can run the same DDL.
# --column-type-info prints only with --table (not with --batch).
# With RUN_WITH=dump, mariadb-dump runs instead of mariadb.
check() {
    local name="$1"; shift
    local side port table rc
    for side in proxy direct; do
        if [ "$side" = proxy ]; then port=$PROXY_PORT table=$T_PROXY; else port=$PRIMARY_PORT table=$T_DIRECT; fi
        rc=0
        "${RUN_WITH:-client}" "$port" "${@//@T@/$table}" >"$TMP/$name.$side.out" 2>"$TMP/$name.$side.err" || rc=$?
        echo "exit code $rc" >>"$TMP/$name.$side.err"
        # Column metadata and messages name the table: make the sides alike.
        sed -i "s/$table/@T@/g" "$TMP/$name.$side.out" "$TMP/$name.$side.err"
    done
    if cmp -s "$TMP/$name.proxy.out" "$TMP/$name.direct.out" \
        && cmp -s "$TMP/$name.proxy.err" "$TMP/$name.direct.err"; then
        PASSED=$((PASSED + 1))
        echo "ok    $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL  $name: output through the proxy (port $PROXY_PORT) differs from the primary's (port $PRIMARY_PORT)"
        diff -u --text --label "direct stdout" --label "proxy stdout" "$TMP/$name.direct.out" "$TMP/$name.proxy.out" | head -40 || true
        diff -u --text --label "direct stderr" --label "proxy stderr" "$TMP/$name.direct.err" "$TMP/$name.proxy.err" | head -20 || true
    fi
}

check select_1 --batch -e "SELECT 1"
check select_1_table --table -e "SELECT 1 AS one, NULL AS nothing, 'x' AS s"
check show_databases --batch -e "SHOW DATABASES"
check current_user --batch -e "SELECT DATABASE(), CURRENT_USER(), @@autocommit"
check use_database --batch -e "USE information_schema; SELECT DATABASE(); USE app; SELECT DATABASE()"
check column_metadata --table --column-type-info -e \
    "SELECT CAST(1.5 AS DECIMAL(20,6)) AS d, CAST('2001-02-03 04:05:06.7' AS DATETIME(6)) AS dt, X'FF00FE' AS b"
check table_round_trip --batch --raw -e "
    CREATE TABLE @T@ (id INT PRIMARY KEY, v VARCHAR(20), b VARBINARY(8), d DECIMAL(20,6), t DATETIME(6), n INT);
    INSERT INTO @T@ VALUES (1, 'one', X'FF00FE', 1.5, '2024-02-29 13:45:06.789012', NULL),
                           (2, 'tab\there', X'00', -0.000001, '1970-01-01 00:00:01', 7),
                           (3, 'café \\\\ ok', NULL, NULL, NULL, NULL);
    SELECT * FROM @T@ ORDER BY id;
    UPDATE @T@ SET n = 42 WHERE id = 1;
    SELECT id, n FROM @T@ WHERE n IS NOT NULL ORDER BY id;
    SELECT COUNT(*) FROM @T@;"
check transaction --batch -e "
    CREATE TABLE IF NOT EXISTS @T@ (id INT PRIMARY KEY, v VARCHAR(20), b VARBINARY(8), d DECIMAL(20,6), t DATETIME(6), n INT);
    BEGIN; INSERT INTO @T@ (id, v) VALUES (10, 'rolled back'); SELECT COUNT(*) FROM @T@; ROLLBACK;
    SELECT COUNT(*) FROM @T@;
    START TRANSACTION; INSERT INTO @T@ (id, v) VALUES (11, 'kept'); COMMIT;
    SELECT id, v FROM @T@ WHERE id >= 10;"
check column_metadata_table --table --column-type-info -e "SELECT * FROM @T@ WHERE id = 1"
check warnings --batch --show-warnings -e "SELECT 1/0, CAST('12abc' AS SIGNED)"
check error_missing_table --batch -e "SELECT * FROM no_such_table_$RUN"
check error_syntax --batch -e "SELECT * FROM"
check error_then_continue --batch --force -e "SELECT * FROM no_such_table_$RUN; SELECT 'after'"

# mariadb-dump through the proxy writes what it writes straight from the
# primary (a view and its table; a consistent snapshot; the GTID position).
check create_view --batch -e "CREATE OR REPLACE VIEW @T@_v AS SELECT id, v FROM @T@ WHERE id < 11"
RUN_WITH=dump check dump_tables @T@ @T@_v
RUN_WITH=dump check dump_single_transaction --single-transaction --gtid --master-data=2 @T@
RUN_WITH=dump check dump_rows_as_xml --xml --no-create-info @T@

# A dump read back through the proxy (LOCK TABLES, extended INSERTs, the
# dump's saved and restored session variables) restores every row.
rc=0
{ dump "$PROXY_PORT" "$T_PROXY" | sed "s/\`$T_PROXY\`/\`${T_PROXY}_r\`/g" | client "$PROXY_PORT"; } >"$TMP/restore.out" 2>&1 || rc=$?
sums=$(client "$PRIMARY_PORT" --batch -N -e "CHECKSUM TABLE \`$T_PROXY\`, \`${T_PROXY}_r\` EXTENDED" 2>&1 | cut -f2 | tr '\n' ' ') || rc=$?
read -r sum_source sum_restored _ <<<"$sums"
if [ "$rc" -eq 0 ] && [ -n "$sum_source" ] && [ "$sum_source" = "$sum_restored" ]; then
    PASSED=$((PASSED + 1))
    echo "ok    dump_restored_through_proxy"
else
    FAILED=$((FAILED + 1))
    echo "FAIL  dump_restored_through_proxy: checksums '$sums' (exit $rc)"
    head -20 "$TMP/restore.out"
fi

# What the proxy wrote is on the primary.
rc=0
out=$(client "$PRIMARY_PORT" --batch -N -e "SELECT GROUP_CONCAT(id ORDER BY id) FROM \`$T_PROXY\`" 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && [ "$out" = "1,2,3,11" ]; then
    PASSED=$((PASSED + 1))
    echo "ok    proxy_writes_reach_primary"
else
    FAILED=$((FAILED + 1))
    echo "FAIL  proxy_writes_reach_primary: table $T_PROXY on the primary holds ids '$out' (exit $rc), expected 1,2,3,11"
fi

echo "test_cli: $PASSED passed, $FAILED failed"
if [ "$FAILED" -ne 0 ]; then
    echo "test_cli: the mariadb client sees different output through the proxy" >&2
    exit 1
fi
