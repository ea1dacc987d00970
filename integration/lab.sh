#!/usr/bin/env bash
# Local MariaDB replication lab: a primary on 127.0.0.1:3306 and two GTID
# replicas on :3307 and :3308, each a mariadbd started by hand (no systemd,
# no Docker) with its datadir under ${RWSPLIT_LAB_DIR:-/tmp/rwsplit-lab}.
# RWSPLIT_LAB_PORT moves the primary (replicas take the next two ports), so a
# second lab (for benchmarks, say) can run beside the test lab.
#
#   lab.sh up                      start (and on first use create) the lab; idempotent
#   lab.sh down [--wipe]           stop all nodes; --wipe also deletes the lab dir
#   lab.sh destroy                 same as down --wipe
#   lab.sh status                  role, state, positions and lag of every node
#   lab.sh lag REPLICA stop|start|SECONDS
#                                  REPLICA is replica1|replica2|3307|3308;
#                                  stop = STOP SLAVE SQL_THREAD, SECONDS = MASTER_DELAY,
#                                  start = undo both
#
# Users (created on the primary only, they replicate): app/app (ALL on app.*,
# REPLICATION CLIENT, SLAVE MONITOR, PROCESS), monitor/monitor, repl/repl,
# admin/admin (ALL WITH GRANT OPTION).
#
# The script itself talks to each node as the invoking OS user over the node's
# unix socket (unix_socket auth, set up by mariadb-install-db), so it works
# before those users exist. It never writes on a replica: a local write there
# would create a GTID of the replica's own and stop strict-mode replication.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=lab
# shellcheck source=integration/lib.sh
. "$HERE/lib.sh"

export PATH="$PATH:/usr/sbin:/sbin"

LAB_DIR=${RWSPLIT_LAB_DIR:-/tmp/rwsplit-lab}
REPO_DIR=$(cd "$HERE/.." && pwd)
NODES=(1 2 3)
REPLICAS=(2 3)
OS_USER=$(id -un)
START_TIMEOUT_S=60
STOP_TIMEOUT_S=60
SYNC_TIMEOUT_S=60

PRIMARY_PORT=${RWSPLIT_LAB_PORT:-3306}
node_port() { echo $((PRIMARY_PORT - 1 + $1)); }
node_dir() { echo "$LAB_DIR/node$1"; }
node_sock() { echo "$LAB_DIR/node$1/mysqld.sock"; }
node_pidfile() { echo "$LAB_DIR/node$1/mariadbd.pid"; }
node_role() { if [ "$1" -eq 1 ]; then echo primary; else echo "replica$(($1 - 1))"; fi; }

# Run SQL on node $1 as the OS user over the socket; rows tab-separated, no header.
sql() {
    local n="$1"; shift
    mariadb --no-defaults --protocol=socket --socket="$(node_sock "$n")" -u "$OS_USER" \
        --connect-timeout=5 -N -B -e "$*"
}

node_alive() {
    mariadb-admin --no-defaults --protocol=socket --socket="$(node_sock "$1")" -u "$OS_USER" \
        --connect-timeout=2 ping >/dev/null 2>&1
}

# true when process $1 exists and is not a zombie (a killed server may stay a
# zombie for a while when nothing reaps it).
pid_running() {
    local state
    state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# The pid of node $1's mariadbd from its pid file, when that process still runs.
node_pid() {
    local f pid
    f=$(node_pidfile "$1")
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && pid_running "$pid" || return 1
    grep -q '^mariadbd\|^mysqld' "/proc/$pid/comm" 2>/dev/null || return 1
    echo "$pid"
}

# SHOW SLAVE STATUS of node $1 into the associative array SS (empty when no
# replication is configured).
declare -A SS=()
read_slave_status() {
    SS=()
    local line key val
    while IFS= read -r line; do
        case "$line" in *'***'*) continue ;; esac
        key=${line%%:*}
        key=${key//[[:space:]]/}
        val=${line#*:}
        val=${val# }
        [ -n "$key" ] && SS[$key]=$val
    done < <(mariadb --no-defaults --protocol=socket --socket="$(node_sock "$1")" -u "$OS_USER" \
        --connect-timeout=5 -E -e 'SHOW SLAVE STATUS')
}

write_config() {
    local n="$1" dir port
    dir=$(node_dir "$n")
    port=$(node_port "$n")
    {
        echo "# Written by integration/lab.sh; rewritten on every 'up'."
        echo "[mariadbd]"
        echo "datadir=$dir/data"
        echo "socket=$dir/mysqld.sock"
        echo "pid_file=$dir/mariadbd.pid"
        echo "log_error=$dir/error.log"
        echo "port=$port"
        echo "bind_address=127.0.0.1"
        echo "skip_name_resolve=1"
        echo "server_id=$n"
        echo "log_bin=mariadb-bin"
        echo "relay_log=relay-bin"
        echo "binlog_format=ROW"
        echo "gtid_strict_mode=1"
        echo "log_slave_updates=1"
        [ "$n" -ne 1 ] && echo "read_only=1"
        echo "character_set_server=utf8mb4"
        echo "collation_server=utf8mb4_general_ci"
        echo "innodb_flush_log_at_trx_commit=2"
        echo "sync_binlog=0"
        echo "innodb_buffer_pool_size=32M"
        echo "innodb_log_file_size=16M"
        echo "key_buffer_size=8M"
        echo "aria_pagecache_buffer_size=8M"
        echo "performance_schema=OFF"
        echo "max_connections=3000"
        echo "max_allowed_packet=256M"
        # TLS with the repo's test certificate (for localhost/127.0.0.1),
        # so backend TLS and its certificate checks can be tested.
        echo "ssl_cert=$REPO_DIR/conf/tls/server.pem"
        echo "ssl_key=$REPO_DIR/conf/tls/server.key"
        echo "ssl_ca=$REPO_DIR/conf/tls/ca.pem"
        echo "log_output=TABLE"
        echo "general_log=0"
        # MariaDB's ed25519 authentication (part of the mariadb-server
        # package), so the proxy's logins to ed25519 accounts are tested.
        if [ -f "$(mariadbd --help --verbose 2>/dev/null | awk '$1 == "plugin-dir" { print $2 }')/auth_ed25519.so" ]; then
            echo "plugin_load_add=auth_ed25519"
        fi
    } >"$dir/my.cnf.new"
    mv "$dir/my.cnf.new" "$dir/my.cnf"
}

ensure_installed() {
    if command -v mariadbd >/dev/null && command -v mariadb >/dev/null \
        && command -v mariadb-install-db >/dev/null; then
        return 0
    fi
    ensure_apt mariadb-server mariadb-client
    command -v mariadbd >/dev/null || die "mariadbd not found after installing mariadb-server"
}

init_datadirs() {
    mkdir -p "$LAB_DIR"
    touch "$LAB_DIR/.rwsplit-lab"
    local n need=0
    for n in "${NODES[@]}"; do
        [ -d "$(node_dir "$n")/data/mysql" ] || need=1
    done
    [ "$need" -eq 1 ] || return 0
    local tpl="$LAB_DIR/template"
    if [ ! -d "$tpl/mysql" ]; then
        log "initialising a datadir template with mariadb-install-db"
        rm -rf "$tpl" "$tpl.tmp"
        local as_user=()
        [ "$(id -u)" -eq 0 ] && as_user=(--user=root)
        mariadb-install-db --no-defaults --datadir="$tpl.tmp" "${as_user[@]}" \
            --auth-root-authentication-method=socket --auth-root-socket-user="$OS_USER" \
            --skip-test-db --skip-name-resolve --innodb-log-file-size=16M --innodb-buffer-pool-size=32M \
            >"$LAB_DIR/install-db.log" 2>&1 \
            || { tail -20 "$LAB_DIR/install-db.log" >&2; die "mariadb-install-db failed (log: $LAB_DIR/install-db.log)"; }
        mv "$tpl.tmp" "$tpl"
    fi
    for n in "${NODES[@]}"; do
        local dir
        dir=$(node_dir "$n")
        if [ ! -d "$dir/data/mysql" ]; then
            mkdir -p "$dir"
            rm -rf "$dir/data"
            cp -a "$tpl" "$dir/data"
        fi
    done
}

start_node() {
    local n="$1" dir port
    dir=$(node_dir "$n")
    port=$(node_port "$n")
    if node_alive "$n" || node_pid "$n" >/dev/null; then
        return 0 # running, or still starting: wait_started handles it
    fi
    if port_open 127.0.0.1 "$port"; then
        die "port $port is taken by a process that is not this lab's node$n (see: ss -ltnp 'sport = :$port')"
    fi
    rm -f "$(node_sock "$n")" "$(node_pidfile "$n")"
    local as_user=()
    [ "$(id -u)" -eq 0 ] && as_user=(--user=root)
    # setsid: the server must outlive this script and its process group.
    setsid mariadbd --defaults-file="$dir/my.cnf" "${as_user[@]}" \
        >>"$dir/mariadbd.out" 2>&1 </dev/null &
    echo $! >"$dir/launcher.pid"
    STARTED+=("$n")
}

wait_started() {
    local n="$1" deadline dir
    dir=$(node_dir "$n")
    deadline=$(deadline_in "$START_TIMEOUT_S")
    until node_alive "$n"; do
        local launcher
        launcher=$(cat "$dir/launcher.pid" 2>/dev/null || true)
        if ! node_pid "$n" >/dev/null && { [ -z "$launcher" ] || ! pid_running "$launcher"; }; then
            tail -20 "$dir/error.log" >&2 2>/dev/null || true
            die "node$n (port $(node_port "$n")) exited during start-up; log: $dir/error.log"
        fi
        if deadline_passed "$deadline"; then
            tail -20 "$dir/error.log" >&2 2>/dev/null || true
            die "node$n did not answer within ${START_TIMEOUT_S}s; log: $dir/error.log"
        fi
        sleep 0.1
    done
}

setup_primary() {
    local have
    have=$(sql 1 "SELECT (SELECT COUNT(*) FROM mysql.global_priv
                          WHERE Host='%' AND User IN ('repl','app','monitor','admin'))
                       + (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='app')")
    [ "$have" = 5 ] && return 0
    log "creating database app and users repl, app, monitor, admin on the primary"
    sql 1 "
        CREATE DATABASE IF NOT EXISTS app;
        CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl';
        GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
        CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
        GRANT ALL PRIVILEGES ON app.* TO 'app'@'%';
        GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'app'@'%';
        CREATE USER IF NOT EXISTS 'monitor'@'%' IDENTIFIED BY 'monitor';
        GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'monitor'@'%';
        CREATE USER IF NOT EXISTS 'admin'@'%' IDENTIFIED BY 'admin';
        GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION;"
}

# Point replica $1 at the primary, or bring an existing set-up back to a
# healthy state (threads running, no configured delay).
setup_replica() {
    local n="$1"
    read_slave_status "$n"
    if [ "${SS[Master_Port]:-}" != "$PRIMARY_PORT" ] || [ "${SS[Master_Host]:-}" != 127.0.0.1 ]; then
        log "node$n: CHANGE MASTER TO the primary (GTID slave_pos); START SLAVE"
        if [ -n "${SS[Master_Host]:-}" ]; then sql "$n" "STOP SLAVE"; fi
        sql "$n" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT,
                MASTER_USER='repl', MASTER_PASSWORD='repl',
                MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_DELAY=0;
            START SLAVE;"
    elif [ "${SS[SQL_Delay]:-0}" != 0 ]; then
        log "node$n: removing MASTER_DELAY=${SS[SQL_Delay]}"
        sql "$n" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE;"
    elif [ "${SS[Slave_IO_Running]:-}" != Yes ] || [ "${SS[Slave_SQL_Running]:-}" != Yes ]; then
        log "node$n: START SLAVE"
        sql "$n" "START SLAVE;"
    fi
}

# Bounded poll until every replica runs both threads and has applied the
# primary's gtid_binlog_pos as read once now.
wait_replicas_synced() {
    local target deadline n ok
    target=$(sql 1 "SELECT @@gtid_binlog_pos")
    deadline=$(deadline_in "$SYNC_TIMEOUT_S")
    while :; do
        ok=1
        for n in "${REPLICAS[@]}"; do
            read_slave_status "$n"
            # An SQL-thread error (for example a GTID of the replica's own,
            # "out-of-order sequence number") or IO error 1236 (the primary
            # lacks the replica's position) will not go away by waiting.
            if [ "${SS[Slave_SQL_Running]:-}" = No ] && [ "${SS[Last_SQL_Errno]:-0}" != 0 ] \
                || [ "${SS[Last_IO_Errno]:-0}" = 1236 ]; then
                cmd_status >&2
                die "replication on node$n is broken; start afresh with: $0 destroy && $0 up"
            fi
            if [ "${SS[Slave_IO_Running]:-}" != Yes ] || [ "${SS[Slave_SQL_Running]:-}" != Yes ]; then
                ok=0
            elif [ -n "$target" ] && [ "$(sql "$n" "SELECT MASTER_GTID_WAIT('$target', 0)")" != 0 ]; then
                ok=0
            fi
        done
        [ "$ok" -eq 1 ] && return 0
        if deadline_passed "$deadline"; then
            for n in "${REPLICAS[@]}"; do
                read_slave_status "$n"
                log "node$n: IO=${SS[Slave_IO_Running]:-} SQL=${SS[Slave_SQL_Running]:-}" \
                    "gtid_slave_pos=$(sql "$n" 'SELECT @@gtid_slave_pos')" \
                    "io_error='${SS[Last_IO_Error]:-}' sql_error='${SS[Last_SQL_Error]:-}'"
            done
            die "replicas did not reach the primary's gtid_binlog_pos '$target' within ${SYNC_TIMEOUT_S}s"
        fi
        sleep 0.2
    done
}

cmd_up() {
    local t0 n
    t0=$(now_s)
    ensure_installed
    init_datadirs
    STARTED=()
    for n in "${NODES[@]}"; do
        write_config "$n"
        start_node "$n"
    done
    for n in "${NODES[@]}"; do
        wait_started "$n"
    done
    [ ${#STARTED[@]} -gt 0 ] && log "started node(s) ${STARTED[*]}"
    setup_primary
    for n in "${REPLICAS[@]}"; do
        setup_replica "$n"
    done
    wait_replicas_synced
    cmd_status
    echo "lab up in $(awk -v a="$t0" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }')s:" \
        "primary 127.0.0.1:$(node_port 1), replicas :$(node_port 2) :$(node_port 3); dir $LAB_DIR;" \
        "users app/app monitor/monitor repl/repl admin/admin; database app"
}

cmd_down() {
    local wipe=0 n pid pids=() deadline
    case "${1:-}" in
        "") ;;
        --wipe) wipe=1 ;;
        *) die "usage: lab.sh down [--wipe]" ;;
    esac
    if [ -d "$LAB_DIR" ]; then
        for n in 3 2 1; do
            if pid=$(node_pid "$n"); then
                kill -TERM "$pid" 2>/dev/null || true
                pids+=("$pid")
            elif node_alive "$n"; then
                # Running without its pid file: ask it over the socket.
                mariadb-admin --no-defaults --protocol=socket --socket="$(node_sock "$n")" \
                    -u "$OS_USER" shutdown >/dev/null 2>&1 || true
            fi
        done
        deadline=$(deadline_in "$STOP_TIMEOUT_S")
        for pid in "${pids[@]}"; do
            while pid_running "$pid"; do
                if deadline_passed "$deadline"; then
                    log "pid $pid still running after ${STOP_TIMEOUT_S}s; killing it"
                    kill -KILL "$pid" 2>/dev/null || true
                    break
                fi
                sleep 0.1
            done
        done
        for n in "${NODES[@]}"; do
            if node_alive "$n"; then die "node$n still answers after shutdown"; fi
        done
        log "stopped (${#pids[@]} running node(s))"
    fi
    if [ "$wipe" -eq 1 ] && [ -e "$LAB_DIR" ]; then
        [ -f "$LAB_DIR/.rwsplit-lab" ] || die "$LAB_DIR has no .rwsplit-lab marker; not deleting it"
        rm -rf -- "$LAB_DIR"
        log "removed $LAB_DIR"
    fi
}

cmd_status() {
    local n fmt='%-6s %-8s %-5s %-5s %-3s %-18s %-18s %-4s %-4s %-7s %s\n'
    # shellcheck disable=SC2059
    printf "$fmt" node role port state ro gtid_binlog_pos gtid_slave_pos io sql behind delay
    for n in "${NODES[@]}"; do
        local role port
        role=$(node_role "$n")
        port=$(node_port "$n")
        if ! node_alive "$n"; then
            # shellcheck disable=SC2059
            printf "$fmt" "node$n" "$role" "$port" down - - - - - - -
            continue
        fi
        local row ro bpos spos
        row=$(sql "$n" "SELECT CONCAT(@@read_only, '|', @@gtid_binlog_pos, '|', @@gtid_slave_pos)")
        IFS='|' read -r ro bpos spos <<<"$row"
        read_slave_status "$n"
        local io=- sqlt=- behind=- delay=-
        if [ -n "${SS[Master_Host]:-}" ]; then
            io=${SS[Slave_IO_Running]:-?}
            sqlt=${SS[Slave_SQL_Running]:-?}
            behind=${SS[Seconds_Behind_Master]:-NULL}
            delay=${SS[SQL_Delay]:-0}
        fi
        # shellcheck disable=SC2059
        printf "$fmt" "node$n" "$role" "$port" up "$ro" "${bpos:--}" "${spos:--}" \
            "$io" "$sqlt" "$behind" "$delay"
        if [ -n "${SS[Last_IO_Error]:-}" ]; then echo "       io error: ${SS[Last_IO_Error]}"; fi
        if [ -n "${SS[Last_SQL_Error]:-}" ]; then echo "       sql error: ${SS[Last_SQL_Error]}"; fi
    done
    return 0
}

cmd_lag() {
    [ $# -eq 2 ] || die "usage: lab.sh lag replica1|replica2|3307|3308 stop|start|SECONDS"
    local n
    case "$1" in
        replica1 | "$(node_port 2)" | node2) n=2 ;;
        replica2 | "$(node_port 3)" | node3) n=3 ;;
        *) die "unknown replica '$1' (use replica1, replica2, 3307 or 3308)" ;;
    esac
    node_alive "$n" || die "node$n (port $(node_port "$n")) is down; run: lab.sh up"
    case "$2" in
        stop)
            sql "$n" "STOP SLAVE SQL_THREAD"
            log "node$n: SQL thread stopped (Seconds_Behind_Master is NULL until 'start')"
            ;;
        start)
            read_slave_status "$n"
            if [ "${SS[SQL_Delay]:-0}" != 0 ]; then
                sql "$n" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE"
            else
                sql "$n" "START SLAVE"
            fi
            log "node$n: replication running, no delay"
            ;;
        *)
            [[ "$2" =~ ^[0-9]+$ ]] || die "lag: '$2' is not stop, start or a whole number of seconds"
            sql "$n" "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=$2; START SLAVE"
            log "node$n: MASTER_DELAY=$2"
            ;;
    esac
}

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    [ $# -gt 0 ] && shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        destroy) cmd_down --wipe ;;
        status) cmd_status ;;
        lag) cmd_lag "$@" ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
