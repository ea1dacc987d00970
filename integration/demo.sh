#!/usr/bin/env bash
# Starts the local replication lab if needed, then runs rwsplit in the
# foreground with conf/rwsplit.toml: clients on 127.0.0.1:6450 (user app,
# password app), admin on 127.0.0.1:6451. Ctrl-C stops the proxy; the lab
# keeps running (integration/lab.sh down stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
integration/lab.sh up
cargo build --release --quiet
echo "rwsplit on 127.0.0.1:6450 — try: mariadb -h127.0.0.1 -P6450 -uapp -papp app"
exec ./target/release/rwsplit --config conf/rwsplit.toml
