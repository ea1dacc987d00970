"""MySQL Connector/Python (its pure-Python protocol code) through rwsplit,
compared with the same calls straight to the primary.

Needs the lab (integration/lab.sh up) and a running proxy:

    RWSPLIT_PORT=6450 python3 -m pytest -q integration/clients/test_connector_python.py

Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
RWSPLIT_PRIMARY_PORT (3306). With RWSPLIT_PORT=3306 every test runs against
the primary on both sides, which checks the tests themselves.
"""

import datetime
import os
import threading
import time
import uuid
from decimal import Decimal

import mysql.connector
import pytest

HOST = os.environ.get("RWSPLIT_HOST", "127.0.0.1")
PROXY_PORT = int(os.environ.get("RWSPLIT_PORT", "6450"))
PRIMARY_PORT = int(os.environ.get("RWSPLIT_PRIMARY_PORT", "3306"))
RUN = uuid.uuid4().hex[:10]


def connect(port, **kwargs):
    params = dict(
        host=HOST,
        port=port,
        user="app",
        password="app",
        database="app",
        autocommit=True,
        use_pure=True,
        connection_timeout=5,
    )
    params.update(kwargs)
    return mysql.connector.connect(**params)


@pytest.fixture
def admin():
    c = connect(PRIMARY_PORT, user="admin", password="admin")
    yield c.cursor()
    c.close()


VALUES = [
    (1, 18446744073709551615, Decimal("-12345678.123456"), 2.5e300, "caf\u00e9 \U0001f600",
     b"\x00\xff\x80", datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 23, 59, 59, 999999),
     datetime.timedelta(hours=-838, minutes=-59, seconds=-59), None),
    (2, 0, Decimal("0.000001"), -0.0, "", b"", datetime.date(1000, 1, 1),
     datetime.datetime(1970, 1, 1, 0, 0, 1), datetime.timedelta(0), '{"a": [1, 2]}'),
]


def typed_round_trip(port, table):
    c = connect(port)
    cur = c.cursor()
    cur.execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, u BIGINT UNSIGNED, d DECIMAL(20,6), f DOUBLE,"
        " s VARCHAR(20) CHARACTER SET utf8mb4, b BLOB, dt DATE, ts DATETIME(6), t TIME, j JSON)"
    )
    ps = c.cursor(prepared=True)
    got = []
    for row in VALUES:
        ps.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        got.append(ps.rowcount)
        # Read-your-writes through a prepared statement, at once.
        ps.execute(f"SELECT * FROM {table} WHERE id = ?", (row[0],))
        got.append(ps.fetchall())
    ps.execute(f"UPDATE {table} SET u = u DIV 2 WHERE id < ?", (10,))
    got.append(ps.rowcount)
    cur.execute(f"DROP TABLE {table}")
    c.close()
    return got


def test_prepared_statements_round_trip_every_type_as_on_the_server():
    table = f"mcp_types_{RUN}"
    want = typed_round_trip(PRIMARY_PORT, table)
    got = typed_round_trip(PROXY_PORT, table)
    assert got == want
    assert want[0] == 1 and want[1][0][0] == 1


def test_a_prepared_statement_runs_in_the_database_it_was_prepared_in(admin):
    other = f"mcp_other_{RUN}"
    table = f"mcp_psdb_{RUN}"
    admin.execute(f"CREATE DATABASE {other}")
    admin.execute(f"GRANT ALL ON {other}.* TO app")
    try:
        results = []
        for port in (PRIMARY_PORT, PROXY_PORT):
            c = connect(port)
            cur = c.cursor()
            for db in ("app", other):
                cur.execute(f"CREATE TABLE {db}.{table} (which VARCHAR(40))")
                cur.execute(f"INSERT INTO {db}.{table} VALUES (%s)", (db,))
            ps = c.cursor(prepared=True)
            sql = f"SELECT which, DATABASE() FROM {table} WHERE 1 = ?"
            ps.execute(sql, (1,))
            before = ps.fetchall()
            cur.execute(f"USE {other}")
            after = []
            for _ in range(4):  # reads spread over the replicas
                ps.execute(sql, (1,))
                after.append(ps.fetchall())
            cur.execute("SELECT DATABASE()")
            now = cur.fetchall()
            for db in ("app", other):
                cur.execute(f"DROP TABLE {db}.{table}")
            c.close()
            results.append((before, after, now))
        assert results[1] == results[0]
        assert results[0][1][0] == [("app", "app")]
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {other}")


def test_kill_query_takes_the_id_select_connection_id_gives():
    for prepared in (False, True):
        victim = connect(PROXY_PORT)
        cur = victim.cursor(prepared=prepared)
        cur.execute("SELECT CONNECTION_ID()")
        (victim_id,) = cur.fetchone()
        assert victim_id == victim.connection_id
        killer = connect(PROXY_PORT)

        def kill_soon():
            time.sleep(0.5)
            killer.cursor().execute(f"KILL QUERY {victim_id}")

        t = threading.Thread(target=kill_soon)
        t.start()
        started = time.monotonic()
        sleeper = victim.cursor()
        try:
            # An interrupted SLEEP returns 1, or fails with 1317.
            sleeper.execute("SELECT SLEEP(10)")
            assert sleeper.fetchall() == [(1,)]
        except mysql.connector.Error as e:
            assert e.errno == 1317
        t.join()
        assert time.monotonic() - started < 8, "the sleep was killed"
        check = victim.cursor()
        check.execute("SELECT 'alive'")
        assert check.fetchall() == [("alive",)]
        victim.close()
        killer.close()


def compressed_session(port, table):
    c = connect(port, compress=True)
    cur = c.cursor()
    got = []
    cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, s TEXT)")
    for i in range(50):
        cur.execute(f"INSERT INTO {table} VALUES (%s, REPEAT(%s, %s))", (i, "ab", i * 100))
        cur.execute(f"SELECT id, LENGTH(s) FROM {table} WHERE id = %s", (i,))
        got.append(cur.fetchall())
    ps = c.cursor(prepared=True)
    ps.execute(f"SELECT s FROM {table} WHERE id = ?", (49,))
    got.append(ps.fetchall())
    cur.execute(f"DROP TABLE {table}")
    c.close()
    return got


def test_compression_carries_the_same_results():
    table = f"mcp_zlib_{RUN}"
    want = compressed_session(PRIMARY_PORT, table)
    assert compressed_session(PROXY_PORT, table) == want
    assert want[0] == [(0, 0)] and want[49] == [(49, 9800)]


def test_a_large_result_arrives_whole_compressed():
    # Compared with the server's uncompressed answer: Connector/Python reads
    # a packet's header from one frame, which the proxy's frames (whole
    # packets) always allow and a server's (cut every 16 KiB) do not.
    if PROXY_PORT == PRIMARY_PORT:
        pytest.skip("the server's frames cut packet headers apart")
    sql = "SELECT seq, REPEAT('row', seq % 50) FROM seq_1_to_20000"
    results = []
    for port, compress in ((PRIMARY_PORT, False), (PROXY_PORT, True)):
        c = connect(port, compress=compress)
        cur = c.cursor()
        cur.execute(sql)
        results.append(cur.fetchall())
        c.close()
    assert len(results[0]) == 20000
    assert results[1] == results[0]


def test_transactions_commit_and_roll_back():
    table = f"mcp_tx_{RUN}"
    c = connect(PROXY_PORT, autocommit=False)
    cur = c.cursor()
    cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    cur.execute(f"INSERT INTO {table} VALUES (1)")
    c.commit()
    cur.execute(f"INSERT INTO {table} VALUES (2)")
    cur.execute(f"SELECT COUNT(*) FROM {table}")
    assert cur.fetchall() == [(2,)]
    c.rollback()
    cur.execute(f"SELECT id FROM {table}")
    assert cur.fetchall() == [(1,)]
    c.commit()
    cur.execute(f"DROP TABLE {table}")
    c.close()
