"""PyMySQL through rwsplit compared with PyMySQL straight to the primary.

Needs the lab (integration/lab.sh up) and a running proxy:

    RWSPLIT_PORT=6450 python3 -m pytest -q integration/clients/test_pymysql.py

Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
RWSPLIT_PRIMARY_PORT (3306, the primary, for direct comparison). With
RWSPLIT_PORT=3306 every test runs against the primary on both sides, which
checks the tests themselves.

Every table is named with a per-run random suffix and dropped afterwards.
"""

import datetime
import json
import os
import uuid
from decimal import Decimal

import pymysql
import pytest
from pymysql.constants import CLIENT

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
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
        read_timeout=30,
        write_timeout=30,
    )
    params.update(kwargs)
    try:
        return pymysql.connect(**params)
    except pymysql.err.OperationalError as e:
        pytest.fail(f"cannot connect to {HOST}:{port}: {e}")


@pytest.fixture
def proxy():
    conn = connect(PROXY_PORT)
    yield conn
    conn.close()


@pytest.fixture
def direct():
    conn = connect(PRIMARY_PORT)
    yield conn
    conn.close()


@pytest.fixture
def table(request):
    """A unique table name for this test; dropped (on the primary) at the end."""
    name = f"rw_{request.node.name[:20]}_{RUN}".replace("[", "_").replace("]", "_")
    yield name
    conn = connect(PRIMARY_PORT)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        conn.close()


def query(conn, sql, args=None):
    """(description, rows) of one statement."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.description, cur.fetchall()


def scalar(conn, sql, args=None):
    return query(conn, sql, args)[1][0][0]


def server_error(conn, sql):
    """The (code, message) that running sql raises."""
    with pytest.raises(pymysql.MySQLError) as info:
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
    return type(info.value), info.value.args


BLOB = bytes(range(256)) * 255 + b"\xff\x00\xfe"  # BLOB holds at most 65535 bytes
ROWS = [
    (
        1,
        b"\xff\x00\xfe",
        BLOB,
        Decimal("12345678901234.123456"),
        datetime.datetime(2024, 2, 29, 13, 45, 6, 789012),
        json.dumps({"a": [1, 2.5, None], "s": "caf\u00e9 \U0001F600"}),
        129,
        "\u00fcml\u00e4ut \U0001F600",
    ),
    (2, None, None, None, None, None, None, None),
    (
        3,
        b"",
        b"\x00",
        Decimal("-0.000001"),
        datetime.datetime(1970, 1, 1, 0, 0, 0, 1),
        "[]",
        0,
        "",
    ),
]


def test_types_round_trip(proxy, direct, table):
    with proxy.cursor() as cur:
        cur.execute(
            f"""CREATE TABLE `{table}` (
                id INT PRIMARY KEY,
                vb VARBINARY(16),
                bl BLOB,
                d DECIMAL(20,6),
                dt DATETIME(6),
                j JSON,
                b BIT(8),
                s VARCHAR(40) CHARACTER SET utf8mb4
            )"""
        )
        n = cur.executemany(
            f"INSERT INTO `{table}` VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", ROWS
        )
        assert n == len(ROWS)

    sql = f"SELECT id, vb, bl, d, dt, j, b, s FROM `{table}` ORDER BY id"
    p_desc, p_rows = query(proxy, sql)
    d_desc, d_rows = query(direct, sql)
    assert p_desc == d_desc
    assert p_rows == d_rows

    r1, r2, r3 = p_rows
    assert r1[1] == b"\xff\x00\xfe"
    assert r1[2] == BLOB
    assert r1[3] == Decimal("12345678901234.123456")
    assert r1[4] == datetime.datetime(2024, 2, 29, 13, 45, 6, 789012)
    assert json.loads(r1[5]) == json.loads(ROWS[0][5])
    assert r1[6] == b"\x81"
    assert r1[7] == ROWS[0][7]
    assert r2 == (2, None, None, None, None, None, None, None)
    assert r3[1] == b"" and r3[2] == b"\x00" and r3[3] == Decimal("-0.000001")
    assert r3[4] == datetime.datetime(1970, 1, 1, 0, 0, 0, 1)
    assert r3[6] == b"\x00"

    # Column metadata the drivers rely on: scale of DECIMAL and DATETIME(6).
    by_name = {col[0]: col for col in p_desc}
    assert by_name["d"][5] == 6
    assert by_name["dt"][5] == 6


def test_expressions_and_literals(proxy, direct):
    sql = (
        "SELECT 1 AS one, NULL AS nothing, 'x' AS s, X'FF00FE' AS raw, "
        "CAST(1.5 AS DECIMAL(10,3)) AS dec3, CAST('2001-02-03 04:05:06.000007' AS DATETIME(6)) AS ts"
    )
    p = query(proxy, sql)
    d = query(direct, sql)
    assert p == d
    assert p[1] == (
        (
            1,
            None,
            "x",
            b"\xff\x00\xfe",
            Decimal("1.500"),
            datetime.datetime(2001, 2, 3, 4, 5, 6, 7),
        ),
    )


def test_large_blob_round_trip(proxy, direct, table):
    big = os.urandom(3 * 1024 * 1024 + 17)
    with proxy.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, b LONGBLOB)")
        cur.execute(f"INSERT INTO `{table}` VALUES (1, %s)", (big,))
    sql = f"SELECT b, LENGTH(b) FROM `{table}` WHERE id = 1"
    assert query(proxy, sql) == query(direct, sql)
    assert query(proxy, sql)[1] == ((big, len(big)),)


def test_transaction_commit_and_rollback(proxy, direct, table):
    with proxy.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=InnoDB")
    conn = connect(PROXY_PORT, autocommit=False)
    try:
        assert conn.get_autocommit() is False
        assert scalar(conn, "SELECT @@autocommit") == 0
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` VALUES (1, 'one')")
            # Own uncommitted write is visible inside the transaction...
            cur.execute(f"SELECT v FROM `{table}` WHERE id = 1")
            assert cur.fetchall() == (("one",),)
        # ...and invisible to others.
        assert scalar(direct, f"SELECT COUNT(*) FROM `{table}`") == 0
        conn.commit()
        assert scalar(direct, f"SELECT COUNT(*) FROM `{table}`") == 1

        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` VALUES (2, 'two')")
            cur.execute(f"UPDATE `{table}` SET v = 'uno' WHERE id = 1")
            cur.execute(f"SELECT id, v FROM `{table}` ORDER BY id")
            assert cur.fetchall() == ((1, "uno"), (2, "two"))
        conn.rollback()
        expected = ((1, "one"),)
        assert query(conn, f"SELECT id, v FROM `{table}` ORDER BY id")[1] == expected
        conn.commit()
        assert query(direct, f"SELECT id, v FROM `{table}` ORDER BY id")[1] == expected
    finally:
        conn.close()

    # An explicit BEGIN with autocommit on.
    proxy.begin()
    with proxy.cursor() as cur:
        cur.execute(f"INSERT INTO `{table}` VALUES (3, 'three')")
    proxy.rollback()
    assert scalar(proxy, f"SELECT COUNT(*) FROM `{table}`") == 1
    proxy.begin()
    with proxy.cursor() as cur:
        cur.execute(f"INSERT INTO `{table}` VALUES (4, 'four')")
    proxy.commit()
    assert scalar(proxy, f"SELECT COUNT(*) FROM `{table}`") == 2
    assert scalar(direct, f"SELECT COUNT(*) FROM `{table}`") == 2


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT * FROM no_such_table_{RUN}",
        "SELECT * FROM",
        f"SELECT no_such_column FROM information_schema.TABLES WHERE 0 -- {RUN}",
        f"INSERT INTO no_such_table_{RUN} VALUES (1)",
    ],
    ids=["missing_table", "syntax", "missing_column", "insert_missing_table"],
)
def test_server_error_is_relayed(proxy, direct, sql):
    p = server_error(proxy, sql)
    d = server_error(direct, sql)
    assert p == d
    # The session is still usable after the error.
    assert scalar(proxy, "SELECT 1") == 1


def test_missing_table_error_code(proxy):
    exc_type, args = server_error(proxy, f"SELECT * FROM no_such_table_{RUN}")
    assert exc_type is pymysql.err.ProgrammingError
    assert args[0] == 1146
    assert f"no_such_table_{RUN}" in args[1]


def test_duplicate_key_error(proxy, direct, table):
    with proxy.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO `{table}` VALUES (1)")
    sql = f"INSERT INTO `{table}` VALUES (1)"
    p = server_error(proxy, sql)
    assert p == server_error(direct, sql)
    assert p[0] is pymysql.err.IntegrityError and p[1][0] == 1062


def test_executemany(proxy, direct, table):
    with proxy.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v VARCHAR(20), n INT)")
        rows = [(i, f"v{i}", i * i) for i in range(200)]
        # INSERT ... VALUES is sent as one multi-row statement.
        assert cur.executemany(f"INSERT INTO `{table}` (id, v, n) VALUES (%s, %s, %s)", rows) == 200
        # Anything else runs once per parameter tuple.
        assert cur.executemany(f"UPDATE `{table}` SET n = n + 1 WHERE id = %s", [(1,), (2,), (3,)]) == 3
    sql = f"SELECT COUNT(*), SUM(n), MAX(v) FROM `{table}`"
    p = query(proxy, sql)
    assert p == query(direct, sql)
    assert p[1] == ((200, sum(i * i for i in range(200)) + 3, "v99"),)


def all_results(conn, sql):
    """Every result of a multi-statement batch: (rowcount, description, rows) each."""
    out = []
    with conn.cursor() as cur:
        cur.execute(sql)
        while True:
            out.append((cur.rowcount, cur.description, cur.fetchall()))
            if not cur.nextset():
                break
    return out


def test_multi_statement_batch(table):
    results = []
    for port in (PROXY_PORT, PRIMARY_PORT):
        conn = connect(port, client_flag=CLIENT.MULTI_STATEMENTS)
        t = f"{table}_{port}"
        try:
            results.append(
                all_results(
                    conn,
                    f"CREATE TABLE `{t}` (id INT PRIMARY KEY, v VARBINARY(8));"
                    f"INSERT INTO `{t}` VALUES (1, X'FF00'), (2, NULL);"
                    f"SELECT id, v FROM `{t}` ORDER BY id;"
                    "SELECT 1 AS one, 'two' AS two;"
                    f"UPDATE `{t}` SET v = 'x' WHERE id = 2;"
                    f"DROP TABLE `{t}`",
                )
            )
            # The connection is in sync afterwards.
            assert scalar(conn, "SELECT 42") == 42
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS `{t}`")
            conn.close()
    p, d = results
    assert p == d
    assert [r[0] for r in p] == [0, 2, 2, 1, 1, 0]
    assert p[2][2] == ((1, b"\xff\x00"), (2, None))
    assert p[3][2] == ((1, "two"),)


def test_multi_statement_error_midway():
    results = []
    for port in (PROXY_PORT, PRIMARY_PORT):
        conn = connect(port, client_flag=CLIENT.MULTI_STATEMENTS)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT 1; SELECT * FROM no_such_table_{RUN}; SELECT 3")
                first = cur.fetchall()
                with pytest.raises(pymysql.MySQLError) as info:
                    cur.nextset()
            # The batch stops at the error; the session goes on.
            assert scalar(conn, "SELECT 4") == 4
            results.append((first, type(info.value), info.value.args))
        finally:
            conn.close()
    assert results[0] == results[1]
    assert results[0][0] == ((1,),)
    assert results[0][2][0] == 1146


def test_warning_count(proxy, direct):
    sql = "SELECT 1/0, CAST('12abc' AS SIGNED)"
    counts = []
    for conn in (proxy, direct):
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
            counts.append(cur.warning_count)
    assert counts[0] == counts[1] >= 1


def test_session_variables_follow_the_session(proxy):
    with proxy.cursor() as cur:
        cur.execute("SET @rwsplit_probe = %s", (RUN,))
        cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
    # Reads may run anywhere; they must still see this session's state.
    for _ in range(5):
        assert scalar(proxy, "SELECT @rwsplit_probe") == RUN
        assert scalar(proxy, "SELECT @@SESSION.sql_mode") == "ANSI_QUOTES"


def test_ping_and_select_db(proxy):
    proxy.ping(reconnect=False)
    proxy.select_db("information_schema")
    assert scalar(proxy, "SELECT DATABASE()") == "information_schema"
    proxy.select_db("app")
    assert scalar(proxy, "SELECT DATABASE()") == "app"
    proxy.ping(reconnect=False)
    assert scalar(proxy, "SELECT 1") == 1
