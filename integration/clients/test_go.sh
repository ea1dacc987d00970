#!/usr/bin/env bash
# Go's database/sql with go-sql-driver/mysql through rwsplit
# (integration/clients/go/main.go). Uses Debian's golang-go and
# golang-github-go-sql-driver-mysql-dev (integration/test.sh installs them),
# built in GOPATH mode against the driver's source under /usr/share/gocode,
# so nothing is fetched. Needs the lab (integration/lab.sh up) and a
# running proxy.
#
#   RWSPLIT_PORT=6450 integration/clients/test_go.sh
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306). Exits non-zero when any check fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=test_go
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

command -v go >/dev/null || die "go is not installed (apt-get install golang-go)"
[ -d /usr/share/gocode/src/github.com/go-sql-driver/mysql ] \
    || die "the Go MySQL driver is not installed (apt-get install golang-github-go-sql-driver-mysql-dev)"
wait_for_port "${RWSPLIT_HOST:-127.0.0.1}" "${RWSPLIT_PORT:-6450}" 5 \
    || die "nothing listens on the proxy (set RWSPLIT_PORT)"

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$cache" GOFLAGS= \
    go run "$HERE/go/main.go"
