#!/usr/bin/env bash
# Rust's mysql_async and sqlx through rwsplit
# (integration/clients/rust/src/main.rs), built with cargo from crates.io
# into their own target directory. Needs the lab (integration/lab.sh up)
# and a running proxy.
#
#   RWSPLIT_PORT=6450 integration/clients/test_rust.sh
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306). Exits non-zero when any check fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=test_rust
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

wait_for_port "${RWSPLIT_HOST:-127.0.0.1}" "${RWSPLIT_PORT:-6450}" 5 \
    || die "nothing listens on the proxy (set RWSPLIT_PORT)"
cd "$HERE/rust"
cargo build --quiet --locked --target-dir "$HERE/../../target/client-rust" \
    || die "the Rust client test did not build"
"$HERE/../../target/client-rust/debug/rwsplit-client-test-rust"
