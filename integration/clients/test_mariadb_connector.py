"""MariaDB Connector/Python (the `mariadb` module, on the MariaDB C
connector, binary protocol for every statement with parameters) through
rwsplit, compared with the same statements straight on the primary; and
its reads going to the replicas while it reads its own writes.

Needs the lab (integration/lab.sh up), a running proxy, and `mariadb` from
pip (integration/test.sh installs it; it builds against libmariadb-dev):

    RWSPLIT_PORT=6450 python3 -m pytest -q integration/clients/test_mariadb_connector.py

Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
RWSPLIT_PRIMARY_PORT (3306). With RWSPLIT_PORT=3306 every test runs against
the primary on both sides, which checks the tests themselves. Every table is
named with a per-run random suffix and dropped afterwards.
"""

import datetime
import os
import time
import uuid
from decimal import Decimal

import mariadb
import pytest

HOST = os.environ.get("RWSPLIT_HOST", "127.0.0.1")
PROXY_PORT = int(os.environ.get("RWSPLIT_PORT", "6450"))
PRIMARY_PORT = int(os.environ.get("RWSPLIT_PRIMARY_PORT", "3306"))
RUN = uuid.uuid4().hex[:10]


def connect(port, **kwargs):
    params = dict(host=HOST, port=port, user="app", password="app", database="app",
                  autocommit=True, connect_timeout=5)
    params.update(kwargs)
    return mariadb.connect(**params)


@pytest.fixture
def table(request):
    """A unique table name for this test; dropped (on the primary) at the end."""
    name = f"mc_{request.node.name[:24]}_{RUN}"
    yield name
    conn = connect(PRIMARY_PORT)
    try:
        conn.cursor().execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        conn.close()


def session_transcript(port, table):
    """What a typical program sees: types through the binary protocol,
    executemany, insert ids and row counts, an unbuffered cursor, a rolled
    back transaction, an error, NULL parameters, COM_RESET_CONNECTION."""
    out = []
    conn = connect(port)
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE `{table}` (id INT PRIMARY KEY AUTO_INCREMENT, s VARCHAR(50), "
        "d DECIMAL(10,3), dt DATETIME(6), b BLOB, j JSON, f DOUBLE)"
    )
    cur.execute(
        f"INSERT INTO `{table}` (s, d, dt, b, j, f) VALUES (?, ?, ?, ?, ?, ?)",
        ("h\u00e9llo \U0001F600", Decimal("1.250"), datetime.datetime(2024, 2, 29, 1, 2, 3, 456789),
         b"\x00\xff\x10", '{"a": [1, 2]}', 1 / 3),
    )
    out.append(("lastrowid", cur.lastrowid))
    cur.executemany(f"INSERT INTO `{table}` (s, d) VALUES (?, ?)",
                    [(f"r{i}", Decimal(i) / 4) for i in range(200)])
    out.append(("executemany rowcount", cur.rowcount))
    cur.execute(f"SELECT id, s, d, dt, b, j, f FROM `{table}` WHERE id = ?", (1,))
    out.append(("row", cur.fetchall()))
    cur.execute(f"SELECT COUNT(*), SUM(d), MAX(s) FROM `{table}`")
    out.append(("aggregate", cur.fetchall()))
    cur.execute(f"UPDATE `{table}` SET s = ? WHERE id > ?", ("updated", 150))
    out.append(("affected", cur.rowcount))
    cur.execute(f"SELECT s, COUNT(*) FROM `{table}` WHERE id > ? GROUP BY s", (150,))
    out.append(("after update", cur.fetchall()))
    unbuffered = conn.cursor(buffered=False)
    unbuffered.execute(f"SELECT id FROM `{table}` WHERE id <= ? ORDER BY id", (100,))
    out.append(("unbuffered", [r[0] for r in unbuffered]))
    unbuffered.close()
    conn.autocommit = False
    cur = conn.cursor()
    cur.execute(f"INSERT INTO `{table}` (s) VALUES ('in a transaction')")
    cur.execute(f"SELECT COUNT(*) FROM `{table}` WHERE s = 'in a transaction'")
    out.append(("inside", cur.fetchall()))
    conn.rollback()
    cur.execute(f"SELECT COUNT(*) FROM `{table}` WHERE s = 'in a transaction'")
    out.append(("rolled back", cur.fetchall()))
    conn.commit()
    conn.autocommit = True
    try:
        cur.execute("SELECT * FROM no_such_table_here_at_all")
    except mariadb.Error as e:
        out.append(("error", e.errno, e.sqlstate))
    cur.execute("SELECT ?, ?, ?, ?", (None, 1.5, "x", b"\x01"))
    out.append(("parameters", cur.fetchall()))
    cur.execute("SET @mc_var = 41")
    conn.reset()
    cur = conn.cursor()
    cur.execute("SELECT DATABASE(), @@autocommit, @mc_var")
    out.append(("after reset", cur.fetchall()))
    conn.close()
    return out


def test_a_session_sees_what_it_sees_on_the_primary(table):
    through_proxy = session_transcript(PROXY_PORT, table)
    straight = session_transcript(PRIMARY_PORT, table + "_d")
    conn = connect(PRIMARY_PORT)
    conn.cursor().execute(f"DROP TABLE IF EXISTS `{table}_d`")
    conn.close()
    assert through_proxy == straight


def test_reads_go_to_replicas_and_read_their_own_writes(table):
    conn = connect(PROXY_PORT)
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v INT)")
    cur.execute(f"INSERT INTO `{table}` VALUES (1, 0)")
    ports = []
    for n in range(1, 101):
        cur.execute(f"UPDATE `{table}` SET v = ? WHERE id = 1", (n,))
        cur.execute(f"SELECT v, @@port FROM `{table}` WHERE id = ?", (1,))
        v, port = cur.fetchone()
        assert v == n, f"read {n} saw {v} (on port {port})"
        ports.append(port)
    print("reads after writes by port:", {p: ports.count(p) for p in set(ports)})
    if PROXY_PORT != PRIMARY_PORT:
        # Read-your-writes (gtid, the default) serves them from replicas.
        assert sum(p != PRIMARY_PORT for p in ports) > 50, "reads after writes left the replicas"
        # Plain reads with nothing newly written run on the replicas; a
        # read right after a write may rightly go to the primary when no
        # replica has the write yet, so a few rounds are allowed.
        deadline = time.monotonic() + 10
        while True:
            seen = set()
            for _ in range(10):
                cur.execute("SELECT @@port")
                seen.add(cur.fetchone()[0])
            if PRIMARY_PORT not in seen or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert PRIMARY_PORT not in seen, f"plain reads ran on {sorted(seen)}"
    conn.close()
