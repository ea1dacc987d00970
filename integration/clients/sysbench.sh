#!/usr/bin/env bash
# sysbench oltp_point_select through rwsplit: prepare on the primary, wait for
# the replicas to hold the data, run through the proxy, clean up. Fails when
# sysbench fails, reports errors or reconnects, or ran no query; prints the QPS.
#
#   RWSPLIT_PORT=6450 integration/clients/sysbench.sh
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306), RWSPLIT_REPLICA_PORTS ("3307 3308"),
# SYSBENCH_TIME (10 s), SYSBENCH_THREADS (8), SYSBENCH_PS_MODE (auto:
# server-side prepared statements; "disable" for text protocol).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=sysbench
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

HOST=${RWSPLIT_HOST:-127.0.0.1}
PROXY_PORT=${RWSPLIT_PORT:-6450}
PRIMARY_PORT=${RWSPLIT_PRIMARY_PORT:-3306}
read -r -a REPLICA_PORTS <<<"${RWSPLIT_REPLICA_PORTS:-3307 3308}"
TIME_S=${SYSBENCH_TIME:-10}
THREADS=${SYSBENCH_THREADS:-8}
PS_MODE=${SYSBENCH_PS_MODE:-auto}
SYNC_TIMEOUT_S=60

command -v sysbench >/dev/null || die "sysbench is not installed (apt-get install sysbench)"
command -v mariadb >/dev/null || die "the mariadb client is not installed (apt-get install mariadb-client)"
wait_for_port "$HOST" "$PRIMARY_PORT" 5 || die "nothing listens on the primary, $HOST:$PRIMARY_PORT (integration/lab.sh up)"
wait_for_port "$HOST" "$PROXY_PORT" 5 || die "nothing listens on the proxy, $HOST:$PROXY_PORT (set RWSPLIT_PORT)"

COMMON=(--mysql-user=app --mysql-password=app --mysql-db=app --tables=2 --table-size=1000)
OUT=$(mktemp)

sb() {
    local port="$1"; shift
    sysbench oltp_point_select --mysql-host="$HOST" --mysql-port="$port" "${COMMON[@]}" "$@"
}

sql() {
    local port="$1"; shift
    mariadb --no-defaults --protocol=tcp -h"$HOST" -P"$port" -uapp -papp --connect-timeout=10 -N -B -e "$*"
}

cleanup() {
    sb "$PRIMARY_PORT" cleanup >/dev/null 2>&1 || log "cleanup on the primary failed"
    rm -f "$OUT"
}

# Wait (server side, bounded) until every replica has applied what the
# primary has logged so far. MariaDB: MASTER_GTID_WAIT; MySQL:
# WAIT_FOR_EXECUTED_GTID_SET.
wait_replicas() {
    local pos port res
    if sql "$PRIMARY_PORT" "SELECT VERSION()" | grep -qi mariadb; then
        pos=$(sql "$PRIMARY_PORT" "SELECT @@gtid_binlog_pos")
        for port in "${REPLICA_PORTS[@]}"; do
            res=$(sql "$port" "SELECT MASTER_GTID_WAIT('$pos', $SYNC_TIMEOUT_S)")
            [ "$res" = 0 ] || die "replica :$port did not reach $pos within ${SYNC_TIMEOUT_S}s"
        done
    else
        pos=$(sql "$PRIMARY_PORT" "SELECT @@GLOBAL.gtid_executed" | tr -d '\n')
        for port in "${REPLICA_PORTS[@]}"; do
            res=$(sql "$port" "SELECT WAIT_FOR_EXECUTED_GTID_SET('$pos', $SYNC_TIMEOUT_S)")
            [ "$res" = 0 ] || die "replica :$port did not reach $pos within ${SYNC_TIMEOUT_S}s"
        done
    fi
    log "replicas ${REPLICA_PORTS[*]} hold the primary's position $pos"
}

# Leftovers of an interrupted run would make prepare fail.
sb "$PRIMARY_PORT" cleanup >/dev/null 2>&1 || true
trap cleanup EXIT

log "prepare on the primary :$PRIMARY_PORT"
sb "$PRIMARY_PORT" prepare >"$OUT" 2>&1 || { cat "$OUT" >&2; die "sysbench prepare failed"; }
wait_replicas

log "run through the proxy :$PROXY_PORT for ${TIME_S}s, $THREADS threads, --db-ps-mode=$PS_MODE"
rc=0
# sysbench stops by itself after --time; the timeout only guards a hang.
timeout $((TIME_S + 60)) sysbench oltp_point_select --mysql-host="$HOST" --mysql-port="$PROXY_PORT" \
    "${COMMON[@]}" --threads="$THREADS" --time="$TIME_S" --db-ps-mode="$PS_MODE" \
    --report-interval=0 run >"$OUT" 2>&1 || rc=$?
cat "$OUT"

# "    queries:                             123456 (12345.67 per sec.)"
queries=$(awk '$1 == "queries:" { print $2 }' "$OUT")
qps=$(awk '$1 == "queries:" { gsub(/\(/, "", $3); print $3 }' "$OUT")
errors=$(awk '$1 == "ignored" && $2 == "errors:" { print $3 }' "$OUT")
reconnects=$(awk '$1 == "reconnects:" { print $2 }' "$OUT")

fail=()
[ "$rc" -eq 0 ] || fail+=("sysbench exited with status $rc")
if grep -q 'FATAL' "$OUT"; then fail+=("sysbench reported FATAL errors"); fi
[ -n "$queries" ] && [ "$queries" -gt 0 ] || fail+=("no queries ran")
[ "${errors:-0}" = 0 ] || fail+=("$errors errors")
[ "${reconnects:-0}" = 0 ] || fail+=("$reconnects reconnects")
if [ ${#fail[@]} -gt 0 ]; then
    msg=$(printf '%s; ' "${fail[@]}")
    die "oltp_point_select through the proxy failed: ${msg%; }"
fi
echo "sysbench oltp_point_select through :$PROXY_PORT: ${qps} QPS ($queries queries in ${TIME_S}s, $THREADS threads, errors 0)"
