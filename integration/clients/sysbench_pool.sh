#!/usr/bin/env bash
# Thousands of clients on a few hundred server connections: sysbench
# oltp_read_only --skip_trx=on and a write mix (oltp_update_non_index,
# autocommit) through rwsplit with the shipped config (multiplexing,
# max_connections_per_backend = 100), 2,000 client connections in all.
# Fails on any sysbench error or reconnect, or when a server's processlist
# ever shows more than the cap of connections of user app (sampled every
# 0.2 s on each server while the load runs). Prints the most seen.
#
#   RWSPLIT_PORT=6450 integration/clients/sysbench_pool.sh
#
# Environment: POOL_READERS (1600), POOL_WRITERS (400), SYSBENCH_TIME
# (10 s), POOL_CAP (100, the config's max_connections_per_backend).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=sysbench-pool
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

HOST=127.0.0.1
PROXY_PORT=${RWSPLIT_PORT:-6450}
READERS=${POOL_READERS:-1600}
WRITERS=${POOL_WRITERS:-400}
TIME_S=${SYSBENCH_TIME:-10}
CAP=${POOL_CAP:-100}
COMMON=(--mysql-host="$HOST" --mysql-user=app --mysql-password=app --mysql-db=app --tables=2 --table-size=1000)

# Each sysbench thread holds a socket.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((READERS + WRITERS + 256)) ] \
    || die "open-file limit $(ulimit -n) is too low for $((READERS + WRITERS)) clients"



work=$(mktemp -d)
cleanup() {
    sysbench oltp_read_only "${COMMON[@]}" --mysql-port=3306 cleanup >/dev/null 2>&1 || true
    rm -rf "$work"
}
sysbench oltp_read_only "${COMMON[@]}" --mysql-port=3306 cleanup >/dev/null 2>&1 || true
trap cleanup EXIT
sysbench oltp_read_only "${COMMON[@]}" --mysql-port=3306 prepare >"$work/prepare" 2>&1 \
    || { cat "$work/prepare"; die "prepare failed"; }
lab_wait_replicas

# Most connections of user app seen on each server, sampled until told to stop.
sample() {
    local most=(0 0 0) i port n
    while [ ! -e "$work/stop" ]; do
        i=0
        for port in 3306 3307 3308; do
            n=$(lab_sql "$port" "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            [ "$n" -gt "${most[$i]}" ] && most[$i]=$n
            i=$((i + 1))
        done
        echo "${most[*]}" >"$work/most"
        sleep 0.2
    done
}
sample &
sampler=$!

log "$READERS oltp_read_only and $WRITERS oltp_update_non_index clients through :$PROXY_PORT for ${TIME_S}s"
sysbench oltp_read_only "${COMMON[@]}" --mysql-port="$PROXY_PORT" --skip_trx=on \
    --threads="$READERS" --time="$TIME_S" --report-interval=0 run >"$work/read" 2>&1 &
readers=$!
sysbench oltp_update_non_index "${COMMON[@]}" --mysql-port="$PROXY_PORT" \
    --threads="$WRITERS" --time="$TIME_S" --report-interval=0 run >"$work/write" 2>&1 &
writers=$!
read_rc=0 write_rc=0
wait "$readers" || read_rc=$?
wait "$writers" || write_rc=$?
touch "$work/stop"
wait "$sampler" || true

failed=0
check() {
    local name="$1" rc="$2" out="$3" errors reconnects queries
    errors=$(awk '/ignored errors:/ {print $3; exit}' "$out")
    reconnects=$(awk '/reconnects:/ {print $2; exit}' "$out")
    queries=$(awk '/^ *queries:/ {print $2; exit}' "$out")
    log "$name: rc=$rc queries=${queries:-?} errors=${errors:-?} reconnects=${reconnects:-?}"
    if [ "$rc" -ne 0 ] || grep -q FATAL "$out" || [ "${errors:-x}" != 0 ] || [ "${reconnects:-x}" != 0 ] \
        || [ "${queries:-0}" -eq 0 ]; then
        grep -m5 -E "FATAL|error" "$out" || tail -20 "$out"
        failed=1
    fi
}
check oltp_read_only "$read_rc" "$work/read"
check oltp_update_non_index "$write_rc" "$work/write"

read -r -a most <"$work/most"
log "most connections of user app seen: primary ${most[0]}, replica1 ${most[1]}, replica2 ${most[2]} (cap $CAP)"
for n in "${most[@]}"; do
    [ "$n" -le "$CAP" ] || { log "a server saw more than $CAP connections"; failed=1; }
done
[ "$failed" -eq 0 ]
