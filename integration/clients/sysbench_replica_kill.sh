#!/usr/bin/env bash
# A replica killed and restarted under sysbench oltp_read_only --skip_trx=on
# through rwsplit: reads keep succeeding. replica1's server is killed with
# SIGKILL a few seconds into the run and started again (integration/lab.sh
# up) a few seconds later; sysbench must finish with zero errors, no
# reconnects, and the replicas together must have served the reads.
#
#   RWSPLIT_PORT=6450 integration/clients/sysbench_replica_kill.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=sysbench-kill
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

HOST=127.0.0.1
PROXY_PORT=${RWSPLIT_PORT:-6450}
TIME_S=${SYSBENCH_TIME:-12}
THREADS=${SYSBENCH_THREADS:-8}
LAB_DIR=${RWSPLIT_LAB_DIR:-/tmp/rwsplit-lab}
COMMON=(--mysql-host="$HOST" --mysql-user=app --mysql-password=app --mysql-db=app --tables=2 --table-size=1000)



cleanup() {
    "$HERE/../lab.sh" up >/dev/null 2>&1 || log "lab.sh up failed after the run"
    sysbench oltp_read_only "${COMMON[@]}" --mysql-port=3306 cleanup >/dev/null 2>&1 || true
    rm -f "${out:-}"
}
trap cleanup EXIT
sysbench oltp_read_only "${COMMON[@]}" --mysql-port=3306 cleanup >/dev/null 2>&1 || true
sysbench oltp_read_only "${COMMON[@]}" --mysql-port=3306 prepare >/dev/null
lab_wait_replicas

out=$(mktemp)
sysbench oltp_read_only "${COMMON[@]}" --mysql-port="$PROXY_PORT" --threads="$THREADS" \
    --time="$TIME_S" --skip_trx=on --report-interval=1 run >"$out" 2>&1 &
bench=$!
sleep 3
pid=$(cat "$LAB_DIR/node2/mariadbd.pid")
log "killing replica1 (pid $pid) with SIGKILL"
kill -KILL "$pid"
sleep 3
log "starting replica1 again"
"$HERE/../lab.sh" up >/dev/null
rc=0
wait "$bench" || rc=$?
[ "$rc" -eq 0 ] || { cat "$out"; die "sysbench exited with status $rc"; }
grep -q "FATAL" "$out" && { cat "$out"; die "sysbench reported FATAL"; }
queries=$(awk '/^ *queries:/ {print $2; exit}' "$out")
errors=$(awk '/ignored errors:/ {print $3; exit}' "$out")
reconnects=$(awk '/reconnects:/ {print $2; exit}' "$out")
log "oltp_read_only --skip_trx=on, replica1 killed at 3 s and restarted at 6 s: $queries queries, $errors errors, $reconnects reconnects"
[ "${errors:-x}" = 0 ] && [ "${reconnects:-x}" = 0 ] || { cat "$out"; die "reads failed while a replica was killed"; }
[ "${queries:-0}" -gt 0 ] || die "no queries ran"
