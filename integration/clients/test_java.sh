#!/usr/bin/env bash
# MariaDB Connector/J through rwsplit (integration/clients/java/ClientTest.java),
# run as a single-file Java program against Debian's libmariadb-java
# (integration/test.sh installs it and a JRE). Needs the lab
# (integration/lab.sh up) and a running proxy.
#
#   RWSPLIT_PORT=6450 integration/clients/test_java.sh
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306). Exits non-zero when any check fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RWSPLIT_LOG_PREFIX=test_java
# shellcheck source=integration/lib.sh
. "$HERE/../lib.sh"

JAR=/usr/share/java/mariadb-java-client.jar
command -v java >/dev/null || die "java is not installed (apt-get install default-jre-headless)"
[ -f "$JAR" ] || die "Connector/J is not installed (apt-get install libmariadb-java)"
wait_for_port "${RWSPLIT_HOST:-127.0.0.1}" "${RWSPLIT_PORT:-6450}" 5 \
    || die "nothing listens on the proxy (set RWSPLIT_PORT)"

java -cp "$JAR" "$HERE/java/ClientTest.java"
