#!/usr/bin/env bash
# Runs every test of rwsplit: unit tests, integration tests against the
# local MariaDB replication lab (started here), and real clients (the
# mariadb command-line client, PyMySQL, mysql-connector-python, mysqlclient,
# SQLAlchemy, MariaDB ODBC, MariaDB Connector/Python, asyncmy, three Node.js drivers, PHP, Go, Rust, Ruby, Perl,
# Connector/J, sysbench, MariaDB's own mysql-test) through the proxy binary.
# Installs what it needs (apt packages as root, pip packages).
set -euo pipefail
cd "$(dirname "$0")/.."
RWSPLIT_LOG_PREFIX=test
# shellcheck source=integration/lib.sh
. integration/lib.sh

ensure_apt mariadb-server mariadb-client sysbench python3-pip php-cli php-mysql
# More drivers, all from Debian's packages: Go's go-sql-driver/mysql, Ruby's
# mysql2 (on the MariaDB C connector), MariaDB Connector/J.
ensure_apt golang-go golang-github-go-sql-driver-mysql-dev ruby-mysql2 libmariadb-java
# Perl's DBI drivers, MariaDB's ODBC driver, and what mysqlclient (pip)
# builds against.
ensure_apt libdbd-mysql-perl libdbd-mariadb-perl odbc-mariadb unixodbc libmariadb-dev pkg-config
# ip and ss, for the faults tests' client host in a network namespace.
ensure_apt iproute2
command -v java >/dev/null || ensure_apt default-jre-headless
ensure_python_deps
# Node.js for the mysql2 client test (the machine's own when it has one).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_apt nodejs npm
fi
(cd integration/clients/node && npm ci --silent --no-audit --no-fund) || die "npm ci failed"
integration/lab.sh up

# The routing tests turn the general log on to see where statements ran;
# start each run with it off and empty (never binlogged: replicas must not
# get local GTIDs).
reset_general_logs() {
    local port
    for port in 3306 3307 3308; do
        lab_sql "$port" "SET SESSION sql_log_bin = 0; SET GLOBAL general_log = 0; TRUNCATE mysql.general_log;" \
            || die "cannot reset the general log on :$port"
    done
}
reset_general_logs

log "building"
cargo build --quiet --all-targets
export RWSPLIT_LAB=1

log "cargo deny check bans licenses sources"
if ! command -v cargo-deny >/dev/null; then
    log "installing cargo-deny (a few minutes, once)"
    cargo install --quiet --locked cargo-deny@0.20.2
fi
deny_rc=0
cargo deny --log-level error check bans licenses sources || deny_rc=$?

log "cargo test (unit and integration)"
# A failure is counted at the end; the client tests still run.
cargo_rc=0
cargo test --quiet --no-fail-fast 2>&1 | tee /tmp/rwsplit-cargo-test.log || cargo_rc=$?
reset_general_logs

# Real clients through the proxy binary with the shipped config.
if port_open 127.0.0.1 6450; then
    die "port 6450 is already in use (another rwsplit?); stop it first"
fi
proxy_log=$(mktemp)
./target/debug/rwsplit --config conf/rwsplit.toml >"$proxy_log" 2>&1 &
proxy_pid=$!
trap 'kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true' EXIT
wait_for_port 127.0.0.1 6450 30 || { cat "$proxy_log"; die "proxy did not start"; }
export RWSPLIT_PORT=6450

passed=0 failed=0
run_client_test() {
    local name="$1"; shift
    log "client test: $name"
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAILED: $name"; fi
}
run_client_test "mariadb cli" integration/clients/test_cli.sh
run_client_test "pymysql" python3 -m pytest -q -p no:cacheprovider integration/clients/test_pymysql.py
run_client_test "mysql-connector-python" python3 -m pytest -q -p no:cacheprovider integration/clients/test_connector_python.py
run_client_test "mariadb odbc, mysqlclient and sqlalchemy" python3 -m pytest -q -p no:cacheprovider integration/clients/test_odbc_mysqlclient.py
run_client_test "mariadb connector/python" python3 -m pytest -q -p no:cacheprovider integration/clients/test_mariadb_connector.py
run_client_test "asyncmy (asyncio)" python3 -m pytest -q -p no:cacheprovider integration/clients/test_asyncmy.py
run_client_test "mysql2 (node)" node integration/clients/node/test_mysql2.js
run_client_test "mysql and mariadb (node)" node integration/clients/node/test_drivers.js
run_client_test "go-sql-driver/mysql" integration/clients/test_go.sh
run_client_test "rust mysql_async and sqlx" integration/clients/test_rust.sh
run_client_test "ruby mysql2" ruby integration/clients/test_ruby.rb
run_client_test "perl dbi (DBD::mysql and DBD::MariaDB)" perl integration/clients/test_perl.pl
run_client_test "mariadb connector/j" integration/clients/test_java.sh
run_client_test "php mysqli and PDO (mysqlnd)" php integration/clients/test_php.php
run_client_test "tls and caching_sha2" python3 -m pytest -q -p no:cacheprovider integration/clients/test_tls.py
run_client_test "sysbench oltp_point_select" env SYSBENCH_TIME=5 integration/clients/sysbench.sh
run_client_test "sysbench read/write split" env SYSBENCH_TIME=5 integration/clients/sysbench_routing.sh
run_client_test "sysbench with a replica killed" integration/clients/sysbench_replica_kill.sh
run_client_test "sysbench, 2,000 clients on a pool of 100 per server" integration/clients/sysbench_pool.sh
run_client_test "mariadb mysql-test, through the proxy and straight to the primary" integration/clients/test_mtr.sh

# Coverage-guided fuzzing, bounded (builds the fuzz targets once).
log "cargo fuzz, ${RWSPLIT_FUZZ_SECONDS:-10} s per target"
fuzz_rc=0
RWSPLIT_FUZZ_SECONDS=${RWSPLIT_FUZZ_SECONDS:-10} integration/fuzz.sh || fuzz_rc=$?

if ! kill -0 "$proxy_pid" 2>/dev/null; then
    log "the proxy died during the client tests:"; cat "$proxy_log"; failed=$((failed + 1))
fi
if [ "$cargo_rc" -ne 0 ]; then
    log "cargo test failed"; failed=$((failed + 1))
fi
if [ "$deny_rc" -ne 0 ]; then
    log "cargo deny failed"; failed=$((failed + 1))
fi
if [ "$fuzz_rc" -ne 0 ]; then
    log "cargo fuzz failed"; failed=$((failed + 1))
fi
echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
