#!/usr/bin/env bash
# What splitting each session's reads over two servers costs the servers and
# the client, with no proxy in between. sysbench runs the statements of
# oltp_read_only --skip_trx=on (bench/split_cost.lua) straight against the
# lab's two replicas, each thread holding a connection to each, and either
# keeps every thread on one of them ("stick", what a balancer of connections
# such as haproxy does) or alternates statement by statement ("alt", what a
# balancer of statements does), optionally in blocks ("block7": 7 statements
# on one, then 7 on the other), or alternates between two connections to its
# one server ("samealt": as many connections as alt, no change of server). Runs are interleaved (stick alt alt stick
# ...) so that drift of a shared machine cancels.
#
#   bench/split_cost.sh [--time S] [--rounds N] [--threads N] [--modes LIST]
#
#   --time S       seconds per run (default 15)
#   --rounds N     rounds of A B B A over the first two modes (default 2);
#                  further modes run once per round, after them
#   --threads N    sysbench threads (default 16)
#   --modes LIST   comma-separated (default stick,alt)
#
# Uses the lab at RWSPLIT_LAB_PORT (default 3306; replicas at +1 and +2)
# with its files under RWSPLIT_LAB_DIR (default /tmp/rwsplit-lab), for the
# servers' pids. Prepares 4 sbtest tables of 10,000 rows in database app when
# they are missing (and drops them at the end). Prints, per run: QPS, p95
# (ms), and the CPU time per query (user + system, µs) of each replica and
# of sysbench; then each mode's means and their ratio to the first mode.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RWSPLIT_LOG_PREFIX=split_cost
# shellcheck source=integration/lib.sh
. "$ROOT/integration/lib.sh"

TIME_S=15
ROUNDS=2
THREADS=16
MODES=stick,alt
while [ $# -gt 0 ]; do
    case "$1" in
        --time) TIME_S="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --modes) MODES="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
IFS=, read -r -a MODE_LIST <<<"$MODES"
[ "${#MODE_LIST[@]}" -ge 2 ] || die "--modes needs at least two modes"

PRIMARY_PORT=${RWSPLIT_LAB_PORT:-3306}
R1=$((PRIMARY_PORT + 1))
R2=$((PRIMARY_PORT + 2))
LAB_DIR=${RWSPLIT_LAB_DIR:-/tmp/rwsplit-lab}
SB=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app --mysql-db=app
    --tables=4 --table-size=10000)
CLK_TCK=$(getconf CLK_TCK)

command -v sysbench >/dev/null || die "sysbench is not installed (apt install sysbench)"
PIDS=()
for node in 2 3; do
    pid=$(cat "$LAB_DIR/node$node/mariadbd.pid" 2>/dev/null) || die "no lab under $LAB_DIR (integration/lab.sh up)"
    [ -d "/proc/$pid" ] || die "replica node$node (pid $pid) is not running"
    PIDS+=("$pid")
done

MADE=0
if [ "$(lab_sql "$PRIMARY_PORT" "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'sbtest4'")" != 1 ]; then
    log "preparing 4 sbtest tables of 10,000 rows in database app"
    sysbench oltp_read_only "${SB[@]}" --mysql-port="$PRIMARY_PORT" prepare >/dev/null
    MADE=1
fi
cleanup() {
    if [ "$MADE" = 1 ]; then
        sysbench oltp_read_only "${SB[@]}" --mysql-port="$PRIMARY_PORT" cleanup >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
pos=$(lab_sql "$PRIMARY_PORT" "SELECT @@gtid_binlog_pos")
for port in "$R1" "$R2"; do
    [ "$(lab_sql "$port" "SELECT MASTER_GTID_WAIT('$pos', 60)")" = 0 ] || die "replica :$port did not catch up"
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# per_query TICKS_BEFORE TICKS_AFTER QUERIES: µs of CPU per query.
per_query() {
    awk -v a="$1" -v b="$2" -v q="$3" -v t="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / q }'
}

# run MODE: one measured run; prints "MODE QPS P95 R1_US R2_US SYSBENCH_US".
run() {
    local mode="$1" a1 a2 b1 b2 out queries qps p95 sb
    a1=$(ticks "${PIDS[0]}"); a2=$(ticks "${PIDS[1]}")
    # sysbench's own CPU time: its parent's children times, after it ends.
    out=$(SPLIT_MODE="$mode" python3 -c '
import os, subprocess, sys
r = subprocess.run(sys.argv[1:])
t = os.times()
print("CPU_S", t.children_user + t.children_system)
sys.exit(r.returncode)' sysbench "$HERE/split_cost.lua" "${SB[@]}" --threads="$THREADS" \
        --time="$TIME_S" --percentile=95 --mysql-port="$R1,$R2" run) \
        || { echo "$out" >&2; die "sysbench failed ($mode)"; }
    b1=$(ticks "${PIDS[0]}"); b2=$(ticks "${PIDS[1]}")
    queries=$(sed -n 's/.*queries: *\([0-9]*\).*/\1/p' <<<"$out" | head -1)
    [ "${queries:-0}" -gt 0 ] || { echo "$out" >&2; die "sysbench ran no queries ($mode)"; }
    qps=$(sed -n 's/.*queries: .*(\([0-9.]*\) per sec.*/\1/p' <<<"$out")
    p95=$(sed -n 's/.*95th percentile: *\([0-9.]*\).*/\1/p' <<<"$out")
    sb=$(awk -v s="$(sed -n 's/^CPU_S //p' <<<"$out")" -v q="$queries" 'BEGIN { printf "%.1f", s * 1e6 / q }')
    echo "$mode $qps $p95 $(per_query "$a1" "$b1" "$queries") $(per_query "$a2" "$b2" "$queries") $sb"
}

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"; cleanup' EXIT
printf '%-8s %10s %8s %12s %12s %12s\n' mode qps p95_ms replica1_us replica2_us sysbench_us
A=${MODE_LIST[0]}
B=${MODE_LIST[1]}
for _ in $(seq "$ROUNDS"); do
    for mode in "$A" "$B" "$B" "$A" "${MODE_LIST[@]:2}"; do
        line=$(run "$mode")
        echo "$line" >>"$RESULTS"
        # shellcheck disable=SC2086
        printf '%-8s %10s %8s %12s %12s %12s\n' $line
    done
done
echo
echo "means (servers = both replicas' CPU per query; ratio to $A):"
awk -v first="$A" '
    { n[$1]++; qps[$1] += $2; p95[$1] += $3; db[$1] += $4 + $5; sb[$1] += $6;
      if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
    END {
        printf "%-8s %10s %8s %12s %12s %8s\n", "mode", "qps", "p95_ms", "servers_us", "sysbench_us", "qps/" first
        for (i = 1; i <= k; i++) {
            m = order[i]
            printf "%-8s %10.0f %8.2f %12.1f %12.1f %8.2f\n", m, qps[m] / n[m], p95[m] / n[m],
                db[m] / n[m], sb[m] / n[m], (qps[m] / n[m]) / (qps[first] / n[first])
        }
    }' "$RESULTS"
