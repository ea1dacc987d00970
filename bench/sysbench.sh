#!/usr/bin/env bash
# Side-by-side sysbench harness: rwsplit against haproxy in TCP mode and
# against the replicas directly, on the MariaDB replication lab
# (integration/lab.sh; primary at RWSPLIT_LAB_PORT, default 3306, replicas
# at +1 and +2).
#
#   bench/sysbench.sh [--time S] [--quick] [--threads 4,16,64] [--tests LIST]
#                     [--out DIR] [--bin RWSPLIT] [--port-base N]
#                     [--keep-tables] [--no-report] [--routing TOML]
#
#   --time S        seconds per measured run (default 30)
#   --quick         smoke test: 5 s runs at 16 threads only
#   --threads LIST  comma-separated thread counts (default 4,16,64)
#   --tests LIST    oltp_point_select,oltp_read_only (the default: both)
#   --out DIR       results folder (default bench/results)
#   --bin FILE      the rwsplit binary (default $RWSPLIT_BIN, else
#                   ${CARGO_TARGET_DIR:-target}/release/rwsplit); build it with
#                   cargo build --release first
#   --port-base N   haproxy listens on N, rwsplit on N+1, its admin port on N+2
#                   (default $RWSPLIT_BENCH_PORT or 6460)
#   --keep-tables   leave the sbtest tables in database app at the end
#   --no-report     do not run bench/report.py at the end
#   --routing TOML  lines added to the [routing] table of rwsplit's generated
#                   config, e.g. 'load_band = 1024' (default: none, the
#                   defaults); the report names them
#
# RWSPLIT_COMMIT names the commit the binary was built from in the report
# (default: this checkout's HEAD, "+dirty" with uncommitted source changes).
#
# What it does: prepares 4 sbtest tables of 10,000 rows on the primary (in
# database app), waits until both replicas hold the primary's
# gtid_binlog_pos, starts haproxy (bench/haproxy.cfg) and the rwsplit binary
# (a config generated from the lab ports) once, warms every target up, then
# for each test (oltp_point_select with server-side prepared statements,
# oltp_read_only --skip_trx=on) and thread count runs: the replicas directly
# once (sysbench spreads its connections over both ports), then haproxy,
# rwsplit, rwsplit, haproxy (A B B A, so that drift of a shared machine
# cancels). Each run is one JSON line in DIR/raw/STAMP-HOST.jsonl: QPS, p95,
# errors, reconnects, the proxy's CPU time (utime+stime from /proc/PID/stat)
# per query, the machine's CPU use, and the Com_select counts of the three
# servers (the replica balance under rwsplit). sysbench logs and the proxies'
# logs and configs go to DIR/logs/STAMP. Finally bench/report.py writes
# DIR/<UTC date>-<host>.md and .svg and copies them to latest.md/latest.svg.
#
# Fails (non-zero, with the log) when sysbench fails or a proxy dies.
# haproxy and rwsplit are stopped on exit, however the script ends.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RWSPLIT_LOG_PREFIX=bench
# shellcheck source=integration/lib.sh
. "$ROOT/integration/lib.sh"

export PATH="$PATH:/usr/sbin:/sbin"

HOST=127.0.0.1
PRIMARY_PORT=${RWSPLIT_LAB_PORT:-3306}
REPLICA1_PORT=$((PRIMARY_PORT + 1))
REPLICA2_PORT=$((PRIMARY_PORT + 2))
TABLES=4
TABLE_SIZE=10000
SYNC_TIMEOUT_S=120

TIME_S=30
THREADS_LIST="4,16,64"
TESTS_LIST="oltp_point_select,oltp_read_only"
OUT="$ROOT/bench/results"
BIN=${RWSPLIT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rwsplit}
PORT_BASE=${RWSPLIT_BENCH_PORT:-6460}
KEEP_TABLES=0
ROUTING=
REPORT=1
QUICK=0
time_set=0
threads_set=0

usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --time) TIME_S=${2:?--time needs seconds}; time_set=1; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --threads) THREADS_LIST=${2:?--threads needs a list}; threads_set=1; shift 2 ;;
        --tests) TESTS_LIST=${2:?--tests needs a list}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        --bin) BIN=${2:?--bin needs a file}; shift 2 ;;
        --port-base) PORT_BASE=${2:?--port-base needs a port}; shift 2 ;;
        --keep-tables) KEEP_TABLES=1; shift ;;
        --no-report) REPORT=0; shift ;;
        --routing) ROUTING=${2?--routing needs TOML lines}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
done
if [ "$QUICK" -eq 1 ]; then
    [ "$time_set" -eq 1 ] || TIME_S=5
    [ "$threads_set" -eq 1 ] || THREADS_LIST=16
fi
if ! [[ "$TIME_S" =~ ^[1-9][0-9]*$ ]]; then die "--time: '$TIME_S' is not a positive whole number"; fi
IFS=', ' read -r -a THREADS <<<"$THREADS_LIST"
IFS=', ' read -r -a TESTS <<<"$TESTS_LIST"
[ ${#THREADS[@]} -gt 0 ] || die "--threads: empty list"
for t in "${THREADS[@]}"; do
    if ! [[ "$t" =~ ^[1-9][0-9]*$ ]]; then die "--threads: '$t' is not a positive whole number"; fi
done
for t in "${TESTS[@]}"; do
    case "$t" in
        oltp_point_select | oltp_read_only) ;;
        *) die "--tests: '$t' is not oltp_point_select or oltp_read_only" ;;
    esac
done
HA_PORT=$PORT_BASE
RW_PORT=$((PORT_BASE + 1))
RW_ADMIN_PORT=$((PORT_BASE + 2))

# ---------------------------------------------------------------- checks

for tool in sysbench mariadb haproxy python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x "$BIN" ] || die "no rwsplit binary at $BIN; build it: cargo build --release (or pass --bin FILE)"
for port in "$PRIMARY_PORT" "$REPLICA1_PORT" "$REPLICA2_PORT"; do
    port_open "$HOST" "$port" \
        || die "nothing listens on $HOST:$port; start the lab: RWSPLIT_LAB_PORT=$PRIMARY_PORT integration/lab.sh up"
done
for port in "$HA_PORT" "$RW_PORT" "$RW_ADMIN_PORT"; do
    if port_open "$HOST" "$port"; then
        die "port $port is taken (ss -ltnp 'sport = :$port'); choose others with --port-base"
    fi
done

# ---------------------------------------------------------------- helpers

# sql PORT USER SQL: rows tab-separated, no header.
sql() {
    local port="$1" user="$2"; shift 2
    mariadb --no-defaults --protocol=tcp -h"$HOST" -P"$port" -u"$user" -p"$user" \
        --connect-timeout=10 -N -B -e "$*"
}

# json KEY VALUE ...: one JSON object; numbers stay numbers (not in version,
# commit or host keys), "" is null.
json() {
    python3 -c '
import json, re, sys
a = sys.argv[1:]
def val(k, v):
    if v == "":
        return None
    if k.endswith(("_version", "_commit", "_client", "stamp", "host")):
        return v
    if re.fullmatch(r"-?[0-9]+", v):
        return int(v)
    if re.fullmatch(r"-?[0-9]*\.[0-9]+(e-?[0-9]+)?", v):
        return float(v)
    return v
print(json.dumps({k: val(k, v) for k, v in zip(a[0::2], a[1::2])}))' "$@"
}

# utime + stime of process $1 in clock ticks (fields 14 and 15 of
# /proc/PID/stat; the fields after the command name start at field 3).
proc_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat") || return 1
    stat=${stat##*) }
    local -a f
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}

# "busy total" jiffies of the whole machine from /proc/stat.
host_jiffies() {
    local _cpu user nice system idle iowait irq softirq steal _rest
    read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
    echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# true while process $1 runs (a dead child stays a zombie until reaped).
pid_running() {
    local state
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Com_select of the server on port $1 (prepared and text SELECTs both count).
com_select() {
    sql "$1" monitor "SHOW GLOBAL STATUS LIKE 'Com_select'" | awk '{ print $2 }'
}

# "replica1 replica2" queries_total as rwsplit's /backends reports them.
rw_backend_counts() {
    python3 - "http://$HOST:$RW_ADMIN_PORT/backends" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    b = {x["name"]: x["queries_total"] for x in json.load(r)}
print(b.get("replica1", ""), b.get("replica2", ""))
EOF
}

sb_common() {
    printf '%s\n' --mysql-host="$HOST" --mysql-user=app --mysql-password=app --mysql-db=app \
        --tables="$TABLES" --table-size="$TABLE_SIZE"
}
mapfile -t SB_COMMON < <(sb_common)

test_args() {
    case "$1" in
        oltp_read_only) echo --skip_trx=on ;;
        *) ;;
    esac
}

target_ports() {
    case "$1" in
        direct) echo "$REPLICA1_PORT,$REPLICA2_PORT" ;;
        haproxy) echo "$HA_PORT" ;;
        rwsplit) echo "$RW_PORT" ;;
    esac
}

target_pid() {
    case "$1" in
        direct) echo "" ;;
        haproxy) echo "$HA_PID" ;;
        rwsplit) echo "$RW_PID" ;;
    esac
}

target_log() {
    case "$1" in
        haproxy) echo "$LOGDIR/haproxy.log" ;;
        rwsplit) echo "$LOGDIR/rwsplit.log" ;;
        *) echo "" ;;
    esac
}

check_alive() {
    local target="$1" pid log
    pid=$(target_pid "$target")
    [ -n "$pid" ] || return 0
    if ! pid_running "$pid"; then
        log=$(target_log "$target")
        tail -30 "$log" >&2 || true
        die "$target (pid $pid) is no longer running; log: $log"
    fi
}

HA_PID=""
RW_PID=""
TABLES_MADE=0

stop_pid() {
    local pid="$1" name="$2" deadline
    [ -n "$pid" ] || return 0
    pid_running "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(deadline_in 5)
    while ! deadline_passed "$deadline"; do
        pid_running "$pid" || return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not stop within 5s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$RW_PID" rwsplit
    stop_pid "$HA_PID" haproxy
    wait 2>/dev/null || true
    if [ "$TABLES_MADE" -eq 1 ] && [ "$KEEP_TABLES" -eq 0 ]; then
        sysbench oltp_read_only "${SB_COMMON[@]}" --mysql-port="$PRIMARY_PORT" cleanup >/dev/null 2>&1 \
            || log "dropping the sbtest tables on the primary failed"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- set-up

MACHINE=$(hostname -s 2>/dev/null || hostname)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/raw" "$OUT/logs/$STAMP"
OUT=$(cd "$OUT" && pwd)
LOGDIR="$OUT/logs/$STAMP"
RAW="$OUT/raw/$STAMP-$MACHINE.jsonl"
CLK_TCK=$(getconf CLK_TCK)

sql "$PRIMARY_PORT" app "SELECT 1" >/dev/null \
    || die "cannot log in to the primary $HOST:$PRIMARY_PORT as app/app"

# The commit the binary was built from: RWSPLIT_COMMIT when it was built
# elsewhere (from `git archive`, say), else this checkout's HEAD.
git_commit=${RWSPLIT_COMMIT:-}
if [ -z "$git_commit" ]; then
    git_commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        git_commit="$git_commit+dirty"
    fi
fi
json type meta stamp "$STAMP" date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" host "$MACHINE" \
    nproc "$(nproc)" cpu_model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
    kernel "$(uname -sr)" clk_tck "$CLK_TCK" \
    haproxy_version "$(haproxy -v 2>/dev/null | head -1 | sed "s/ - http.*//")" \
    sysbench_version "$(sysbench --version 2>/dev/null | head -1)" \
    mariadb_version "$(sql "$PRIMARY_PORT" app 'SELECT VERSION()')" \
    mariadb_client "$(mariadb --version 2>/dev/null | head -1)" \
    rwsplit_version "$("$BIN" --version 2>/dev/null | head -1)" rwsplit_commit "$git_commit" \
    rwsplit_routing "$ROUTING" rwsplit_bin "$BIN" rwsplit_bin_mtime "$(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)" \
    time_s "$TIME_S" threads "${THREADS[*]}" tests "${TESTS[*]}" tables "$TABLES" table_size "$TABLE_SIZE" \
    primary_port "$PRIMARY_PORT" replica_ports "$REPLICA1_PORT,$REPLICA2_PORT" >"$RAW"
log "raw records: $RAW; logs: $LOGDIR"

log "preparing $TABLES sbtest tables x $TABLE_SIZE rows in database app on the primary :$PRIMARY_PORT"
sysbench oltp_read_only "${SB_COMMON[@]}" --mysql-port="$PRIMARY_PORT" cleanup >/dev/null 2>&1 || true
TABLES_MADE=1
sysbench oltp_read_only "${SB_COMMON[@]}" --mysql-port="$PRIMARY_PORT" prepare >"$LOGDIR/prepare.log" 2>&1 \
    || { tail -20 "$LOGDIR/prepare.log" >&2; die "sysbench prepare failed; log: $LOGDIR/prepare.log"; }
pos=$(sql "$PRIMARY_PORT" app "SELECT @@gtid_binlog_pos")
for port in "$REPLICA1_PORT" "$REPLICA2_PORT"; do
    [ "$(sql "$port" app "SELECT MASTER_GTID_WAIT('$pos', $SYNC_TIMEOUT_S)")" = 0 ] \
        || die "replica :$port did not reach the primary's gtid_binlog_pos $pos within ${SYNC_TIMEOUT_S}s"
done
log "both replicas hold the primary's gtid_binlog_pos $pos"

# haproxy: the template with the lab's addresses.
sed -e "s/@LISTEN@/$HOST:$HA_PORT/" -e "s/@REPLICA1@/$HOST:$REPLICA1_PORT/" \
    -e "s/@REPLICA2@/$HOST:$REPLICA2_PORT/" "$HERE/haproxy.cfg" >"$LOGDIR/haproxy.cfg"
haproxy -c -q -f "$LOGDIR/haproxy.cfg" >"$LOGDIR/haproxy.log" 2>&1 \
    || { cat "$LOGDIR/haproxy.log" >&2; die "haproxy refused $LOGDIR/haproxy.cfg"; }
# Both proxies run in a session of their own (setsid), as the lab's servers
# do: with the kernel's autogroup scheduling every session gets its own CPU
# share, so a proxy competes with the servers, not only with sysbench.
setsid haproxy -f "$LOGDIR/haproxy.cfg" -db >>"$LOGDIR/haproxy.log" 2>&1 </dev/null &
HA_PID=$!
wait_for_port "$HOST" "$HA_PORT" 10 || { cat "$LOGDIR/haproxy.log" >&2; die "haproxy did not listen on :$HA_PORT"; }
[ "$(cat "/proc/$HA_PID/comm" 2>/dev/null)" = haproxy ] || die "pid $HA_PID is not haproxy (setsid forked?)"
log "haproxy (pid $HA_PID) on :$HA_PORT, $(haproxy -v | head -1 | sed "s/ - http.*//")"

# rwsplit: listener, admin port, the lab's three servers, the monitor.
cat >"$LOGDIR/rwsplit.toml" <<EOF
# Generated by bench/sysbench.sh for the lab at :$PRIMARY_PORT.
[[listeners]]
address = "$HOST:$RW_PORT"

[admin]
address = "$HOST:$RW_ADMIN_PORT"

[[users]]
name = "app"
password = "app"

[[backends]]
name = "primary"
address = "$HOST:$PRIMARY_PORT"
role = "primary"

[[backends]]
name = "replica1"
address = "$HOST:$REPLICA1_PORT"
role = "replica"
weight = 1

[[backends]]
name = "replica2"
address = "$HOST:$REPLICA2_PORT"
role = "replica"
weight = 1

[monitor]
user = "monitor"
password = "monitor"

[limits]
max_client_connections = 20000

[routing]
$ROUTING
EOF
"$BIN" check "$LOGDIR/rwsplit.toml" >/dev/null 2>"$LOGDIR/rwsplit-check.log" \
    || { cat "$LOGDIR/rwsplit-check.log" >&2; die "rwsplit check refused the generated config $LOGDIR/rwsplit.toml"; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
setsid "$BIN" --config "$LOGDIR/rwsplit.toml" >"$LOGDIR/rwsplit.log" 2>&1 </dev/null &
RW_PID=$!
wait_for_port "$HOST" "$RW_PORT" 10 || { cat "$LOGDIR/rwsplit.log" >&2; die "rwsplit did not listen on :$RW_PORT"; }
# Reads go to the replicas only once the monitor has seen them: wait for that.
python3 - "http://$HOST:$RW_ADMIN_PORT/backends" <<'EOF' || { tail -20 "$LOGDIR/rwsplit.log" >&2; die "rwsplit's replicas did not become eligible"; }
import json, sys, time, urllib.request
deadline = time.time() + 20
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            b = json.load(r)
        if sum(1 for x in b if x["role"] == "replica" and x["eligible"]) == 2:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("replicas not eligible after 20 s: %s" % b)
    time.sleep(0.2)
EOF
[ "$(cat "/proc/$RW_PID/comm" 2>/dev/null)" = "$(basename "$BIN" | cut -c1-15)" ] \
    || die "pid $RW_PID is not $BIN (setsid forked?)"
log "rwsplit (pid $RW_PID) on :$RW_PORT, admin :$RW_ADMIN_PORT, $("$BIN" --version | head -1), commit $git_commit"

# ---------------------------------------------------------------- runs

SEQ=0

# run TEST THREADS TARGET REP: one measured sysbench run, one JSON line.
run() {
    local test="$1" threads="$2" target="$3" rep="$4"
    local ports pid log t0 t1 h0 h1 s0 s1 rw0 rw1 rc=0
    ports=$(target_ports "$target")
    pid=$(target_pid "$target")
    SEQ=$((SEQ + 1))
    log="$LOGDIR/$(printf '%03d' "$SEQ")-$test-$threads-$target.log"
    check_alive "$target"
    local -a extra
    read -r -a extra <<<"$(test_args "$test")"

    s0="$(com_select "$PRIMARY_PORT") $(com_select "$REPLICA1_PORT") $(com_select "$REPLICA2_PORT")"
    rw0=""
    [ "$target" = rwsplit ] && rw0=$(rw_backend_counts)
    t0=""
    [ -n "$pid" ] && t0=$(proc_ticks "$pid")
    h0=$(host_jiffies)
    local started
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # sysbench stops by itself after --time; the timeout only guards a hang.
    timeout $((TIME_S + 120)) sysbench "$test" "${SB_COMMON[@]}" --mysql-port="$ports" \
        --threads="$threads" --time="$TIME_S" --events=0 --percentile=95 --report-interval=0 \
        --db-ps-mode=auto "${extra[@]}" run >"$log" 2>&1 || rc=$?
    h1=$(host_jiffies)
    t1=""
    [ -n "$pid" ] && t1=$(proc_ticks "$pid" 2>/dev/null || echo "")
    s1="$(com_select "$PRIMARY_PORT") $(com_select "$REPLICA1_PORT") $(com_select "$REPLICA2_PORT")"
    rw1=""
    [ "$target" = rwsplit ] && rw1=$(rw_backend_counts)

    if [ "$rc" -ne 0 ] || grep -q FATAL "$log"; then
        tail -30 "$log" >&2
        check_alive "$target"
        die "sysbench $test, $threads threads, via $target failed (exit status $rc); log: $log"
    fi
    check_alive "$target"

    local queries qps tps p95 avg errors reconnects total
    queries=$(awk '$1 == "queries:" { print $2; exit }' "$log")
    qps=$(awk '$1 == "queries:" { gsub(/\(/, "", $3); print $3; exit }' "$log")
    tps=$(awk '$1 == "transactions:" { gsub(/\(/, "", $3); print $3; exit }' "$log")
    p95=$(awk '/95th percentile:/ { print $3; exit }' "$log")
    avg=$(awk '$1 == "avg:" { print $2; exit }' "$log")
    errors=$(awk '$1 == "ignored" && $2 == "errors:" { print $3; exit }' "$log")
    reconnects=$(awk '$1 == "reconnects:" { print $2; exit }' "$log")
    total=$(awk '/total time:/ { sub(/s$/, "", $3); print $3; exit }' "$log")
    # Threads fairness, "events (avg/stddev): 11575.1250/12807.37": the
    # coefficient of variation of the sysbench threads' event counts.
    local fairness
    fairness=$(awk '$1 == "events" && $2 == "(avg/stddev):" { split($3, a, "/");
        if (a[1] > 0) printf "%.3f", a[2] / a[1]; exit }' "$log")
    if [ -z "$queries" ] || [ "$queries" -eq 0 ]; then
        tail -30 "$log" >&2
        die "sysbench $test via $target ran no queries; log: $log"
    fi

    local ticks="" cpu_us=""
    if [ -n "$t0" ] && [ -n "$t1" ]; then
        ticks=$((t1 - t0))
        cpu_us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v q="$queries" 'BEGIN { printf "%.3f", t / hz * 1e6 / q }')
    fi
    local busy
    busy=$(awk -v a="$h0" -v b="$h1" 'BEGIN { split(a, x, " "); split(b, y, " ");
        d = y[2] - x[2]; if (d > 0) printf "%.1f", 100 * (y[1] - x[1]) / d }')
    local -a c0 c1 r0 r1
    read -r -a c0 <<<"$s0"
    read -r -a c1 <<<"$s1"
    read -r -a r0 <<<"${rw0:-x x}"
    read -r -a r1 <<<"${rw1:-x x}"
    local rw_r1="" rw_r2=""
    if [ -n "$rw0" ] && [ -n "$rw1" ]; then
        rw_r1=$((r1[0] - r0[0]))
        rw_r2=$((r1[1] - r0[1]))
    fi

    json type run seq "$SEQ" test "$test" threads "$threads" target "$target" rep "$rep" \
        started "$started" time_s "$TIME_S" total_time_s "$total" queries "$queries" qps "$qps" tps "$tps" \
        p95_ms "$p95" avg_ms "$avg" errors "$errors" reconnects "$reconnects" \
        proxy_pid "$pid" cpu_ticks "$ticks" clk_tck "$CLK_TCK" cpu_us_per_query "$cpu_us" \
        host_busy_pct "$busy" thread_cv "$fairness" \
        selects_primary "$((c1[0] - c0[0]))" selects_replica1 "$((c1[1] - c0[1]))" \
        selects_replica2 "$((c1[2] - c0[2]))" \
        rwsplit_replica1 "$rw_r1" rwsplit_replica2 "$rw_r2" log "$log" >>"$RAW"

    printf '%-18s %3s thr  %-8s #%s  %10s qps  p95 %7s ms  err %s  reconn %s  cpu %8s us/q  host busy %5s%%  selects p/r1/r2 %s/%s/%s\n' \
        "$test" "$threads" "$target" "$rep" "$qps" "$p95" "$errors" "$reconnects" "${cpu_us:--}" \
        "${busy:--}" "$((c1[0] - c0[0]))" "$((c1[1] - c0[1]))" "$((c1[2] - c0[2]))"
    sleep 1
}

# Warm-up, not recorded: buffer pools, the proxies' first connections.
warm_s=$((TIME_S < 10 ? 3 : 10))
max_threads=$(printf '%s\n' "${THREADS[@]}" | sort -n | tail -1)
for test in "${TESTS[@]}"; do
    for target in direct haproxy rwsplit; do
        read -r -a extra <<<"$(test_args "$test")"
        log "warm-up: $test via $target, ${warm_s}s, $max_threads threads"
        wlog="$LOGDIR/warmup-$test-$target.log"
        timeout $((warm_s + 120)) sysbench "$test" "${SB_COMMON[@]}" --mysql-port="$(target_ports "$target")" \
            --threads="$max_threads" --time="$warm_s" --report-interval=0 "${extra[@]}" run >"$wlog" 2>&1 \
            || { tail -30 "$wlog" >&2; check_alive "$target"; die "warm-up $test via $target failed; log: $wlog"; }
        if grep -q FATAL "$wlog"; then tail -30 "$wlog" >&2; die "warm-up $test via $target failed; log: $wlog"; fi
        check_alive "$target"
    done
done

cells=$((${#TESTS[@]} * ${#THREADS[@]}))
log "measuring: ${#TESTS[@]} test(s) x ${#THREADS[@]} thread count(s), 5 runs of ${TIME_S}s per cell" \
    "(direct, haproxy, rwsplit, rwsplit, haproxy): about $((cells * 5 * (TIME_S + 2) / 60 + 1)) min"
for test in "${TESTS[@]}"; do
    for threads in "${THREADS[@]}"; do
        run "$test" "$threads" direct 1
        run "$test" "$threads" haproxy 1
        run "$test" "$threads" rwsplit 1
        run "$test" "$threads" rwsplit 2
        run "$test" "$threads" haproxy 2
    done
done
log "all runs done; raw records in $RAW"

stop_pid "$RW_PID" rwsplit
stop_pid "$HA_PID" haproxy

if [ "$REPORT" -eq 1 ]; then
    python3 "$HERE/report.py" "$RAW" --out "$OUT"
fi
