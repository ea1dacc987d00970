# shellcheck shell=bash
# Helpers shared by the integration scripts. Source it; it defines functions
# only and changes no shell options.
#
#   ensure_python_deps            pip-install the Python drivers and pytest when missing
#   ensure_apt PKG...             apt-get install the missing packages (root only)
#   wait_for_port HOST PORT SECS  bounded poll until a TCP port accepts
#   lab_sql PORT SQL              SQL as the lab admin, rows tab-separated
#   lab_wait_replicas             until both lab replicas hold the primary's position

# Prefix for messages from the sourcing script.
: "${RWSPLIT_LOG_PREFIX:=rwsplit}"

log() { printf '%s: %s\n' "$RWSPLIT_LOG_PREFIX" "$*" >&2; }
die() { printf '%s: error: %s\n' "$RWSPLIT_LOG_PREFIX" "$*" >&2; exit 1; }

# Seconds since the epoch with sub-second precision, for deadlines.
now_s() { date +%s.%N; }

# true when $1 (a now_s value) lies in the past.
deadline_passed() { awk -v d="$1" -v n="$(now_s)" 'BEGIN { exit !(n >= d) }'; }

# A deadline $1 seconds from now.
deadline_in() { awk -v s="$1" -v n="$(now_s)" 'BEGIN { printf "%.3f", n + s }'; }

ensure_python_deps() {
    local py="${PYTHON:-python3}"
    # mysqlclient builds against the MariaDB C connector (libmariadb-dev,
    # pkg-config); pyodbc needs unixODBC.
    # mariadb (MariaDB Connector/Python) builds against the same connector.
    # asyncmy: an asyncio driver with its own protocol code (Cython).
    local pkgs=(pymysql mysql-connector-python pytest mysqlclient pyodbc sqlalchemy mariadb asyncmy)
    if "$py" -c 'import pymysql, pytest, mysql.connector, MySQLdb, pyodbc, sqlalchemy, mariadb, asyncmy' >/dev/null 2>&1; then
        return 0
    fi
    log "installing ${pkgs[*]} with pip"
    PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" \
        || die "pip install ${pkgs[*]} failed"
}

_RWSPLIT_APT_UPDATED=${_RWSPLIT_APT_UPDATED:-0}

# Install the packages that are not installed yet. apt-get update runs at most
# once per shell. Service start-up by the packages' scripts is prevented when
# there is no policy-rc.d already (a system MariaDB would take port 3306).
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing packages: ${missing[*]} (run as root, or install them: apt-get install ${missing[*]})"
    fi
    local apt_opts=(-o DPkg::Lock::Timeout=600 -q)
    if [ "$_RWSPLIT_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get "${apt_opts[@]}" update >/dev/null || die "apt-get update failed"
        _RWSPLIT_APT_UPDATED=1
    fi
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    log "apt-get install ${missing[*]}"
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        "${missing[@]}" >/dev/null || rc=$?
    [ "$made_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

# true when something accepts TCP connections on HOST PORT.
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1
}

# Poll until HOST PORT accepts a TCP connection; fail after TIMEOUT_S seconds.
wait_for_port() {
    local host="$1" port="$2" timeout="${3:-30}"
    local deadline
    deadline=$(deadline_in "$timeout")
    until port_open "$host" "$port"; do
        if deadline_passed "$deadline"; then
            log "timed out after ${timeout}s waiting for $host:$port"
            return 1
        fi
        sleep 0.1
    done
}

# lab_sql PORT SQL...: runs SQL as the lab's admin user on 127.0.0.1:PORT,
# printing the rows tab-separated without column names.
lab_sql() {
    local port="$1"; shift
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uadmin -padmin -N -B -e "$*"
}

# lab_wait_replicas: waits (up to 60 s each) until both lab replicas have
# applied what the lab primary has logged so far.
lab_wait_replicas() {
    local pos port
    pos=$(lab_sql 3306 "SELECT @@gtid_binlog_pos")
    for port in 3307 3308; do
        [ "$(lab_sql "$port" "SELECT MASTER_GTID_WAIT('$pos', 60)")" = 0 ] || die "replica :$port did not catch up"
    done
}
