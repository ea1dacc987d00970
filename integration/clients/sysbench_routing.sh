#!/usr/bin/env bash
# Read/write splitting under sysbench, counted on the servers:
#  - oltp_read_only --skip_trx=on through rwsplit: its SELECTs run on the
#    replicas (the primary's statement counters barely move), zero errors;
#  - oltp_read_write (transactions): every statement runs on the primary
#    (the replicas' counters do not move), zero errors.
# Prints the per-server counts and the split between the two replicas.
#
#   RWSPLIT_PORT=6450 integration/clients/sysbench_routing.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=sysbench-routing
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

HOST=127.0.0.1
PROXY_PORT=${RWSPLIT_PORT:-6450}
TIME_S=${SYSBENCH_TIME:-5}
THREADS=${SYSBENCH_THREADS:-8}
COMMON=(--mysql-host="$HOST" --mysql-user=app --mysql-password=app --mysql-db=app --tables=2 --table-size=1000)


# Prepared-statement executions on a server: sysbench runs every query of
# these tests as one (BEGIN/COMMIT aside), while the proxy's monitor only
# sends text queries, so its probes are not counted.
ran() {
    lab_sql "$1" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_STMT_EXECUTE'"
}


# run TEST MAX_ERRORS [ARGS...]: prints the number of queries. Deadlocks are
# "ignored errors" in sysbench: a read-write run may see a few, as it does
# directly on the server.
run() {
    local test="$1" max_errors="$2"; shift 2
    local out
    out=$(mktemp)
    sysbench "$test" "${COMMON[@]}" --mysql-port="$PROXY_PORT" --threads="$THREADS" --time="$TIME_S" \
        --report-interval=0 "$@" run >"$out" 2>&1 || { cat "$out"; die "sysbench $test failed"; }
    grep -q "FATAL" "$out" && { cat "$out"; die "sysbench $test reported FATAL"; }
    local errors
    errors=$(awk '/ignored errors:/ {print $3; exit}' "$out")
    [ "${errors:-x}" -le "$max_errors" ] || { cat "$out"; die "sysbench $test: $errors errors"; }
    log "$test: $errors ignored errors"
    awk '/^ *queries:/ {print $2; exit}' "$out"
    rm -f "$out"
}

trap 'sysbench oltp_read_write "${COMMON[@]}" --mysql-port=3306 cleanup >/dev/null 2>&1 || true' EXIT
sysbench oltp_read_write "${COMMON[@]}" --mysql-port=3306 cleanup >/dev/null 2>&1 || true
sysbench oltp_read_write "${COMMON[@]}" --mysql-port=3306 prepare >/dev/null
lab_wait_replicas

read -r p0 r10 r20 <<<"$(ran 3306) $(ran 3307) $(ran 3308)"
queries=$(run oltp_read_only 0 --skip_trx=on)
read -r p1 r11 r21 <<<"$(ran 3306) $(ran 3307) $(ran 3308)"
dp=$((p1 - p0)); d1=$((r11 - r10)); d2=$((r21 - r20))
log "oltp_read_only --skip_trx=on: $queries queries; primary ran $dp, replica1 $d1, replica2 $d2"
[ $((d1 + d2)) -ge $((queries * 95 / 100)) ] || die "the replicas ran only $((d1 + d2)) of $queries reads"
# (A few first reads may run on the primary while a freshly started
# proxy's monitor has not yet seen the replicas.)
[ "$dp" -le $((THREADS * 2)) ] || die "the primary ran $dp statements of a read-only run"
[ "$d1" -gt 0 ] && [ "$d2" -gt 0 ] || die "one replica got no reads"
diff=$(( (d1 > d2 ? d1 - d2 : d2 - d1) * 1000 / (d1 + d2) ))
log "replica split: $d1 / $d2 (difference $((diff / 10)).$((diff % 10))%)"

read -r p0 r10 r20 <<<"$(ran 3306) $(ran 3307) $(ran 3308)"
queries=$(run oltp_read_write 50)
read -r p1 r11 r21 <<<"$(ran 3306) $(ran 3307) $(ran 3308)"
dp=$((p1 - p0)); d1=$((r11 - r10)); d2=$((r21 - r20))
log "oltp_read_write: $queries queries; primary ran $dp, replica1 $d1, replica2 $d2"
# Replicas apply replicated rows without counting statements (ROW format).
[ $((d1 + d2)) -eq 0 ] || die "replicas ran $((d1 + d2)) statements of a read-write run"
# BEGIN and COMMIT (2 of each transaction's 20 queries) are text queries.
[ "$dp" -ge $((queries * 8 / 10)) ] || die "the primary ran only $dp of $queries statements"
echo "sysbench routing: 2 passed, 0 failed"
