"""asyncmy (an asyncio driver with its own protocol code, in Cython)
through rwsplit, compared with the same statements straight on the
primary; its connection pool reading its own writes from the replicas; and
many coroutines sharing a pool.

Needs the lab (integration/lab.sh up), a running proxy, and `asyncmy` from
pip (integration/test.sh installs it):

    RWSPLIT_PORT=6450 python3 -m pytest -q integration/clients/test_asyncmy.py

Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
RWSPLIT_PRIMARY_PORT (3306). With RWSPLIT_PORT=3306 every test runs against
the primary on both sides, which checks the tests themselves. Every table is
named with a per-run random suffix and dropped afterwards.
"""

import asyncio
import datetime
import os
import uuid
from decimal import Decimal

import asyncmy
import pytest

HOST = os.environ.get("RWSPLIT_HOST", "127.0.0.1")
PROXY_PORT = int(os.environ.get("RWSPLIT_PORT", "6450"))
PRIMARY_PORT = int(os.environ.get("RWSPLIT_PRIMARY_PORT", "3306"))
RUN = uuid.uuid4().hex[:10]
LOGIN = dict(host=HOST, user="app", password="app", database="app", autocommit=True,
             connect_timeout=5)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def connect(port, **kwargs):
    return await asyncmy.connect(port=port, **{**LOGIN, **kwargs})


async def fetch(conn, sql, args=None):
    """(column names, rows) of one statement."""
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        names = [d[0] for d in cur.description] if cur.description else None
        return names, list(await cur.fetchall())


async def server_error(conn, sql):
    """The error code that running sql raises."""
    try:
        await fetch(conn, sql)
    except asyncmy.errors.MySQLError as e:
        return e.args[0]
    pytest.fail(f"{sql} raised no error")


@pytest.fixture
def table(request):
    """A unique table name for this test; dropped (on the primary) at the end."""
    name = f"am_{request.node.name[:24]}_{RUN}"
    yield name

    async def drop():
        conn = await connect(PRIMARY_PORT)
        await fetch(conn, f"DROP TABLE IF EXISTS `{name}`")
        await fetch(conn, f"DROP TABLE IF EXISTS `{name}_d`")
        conn.close()

    run(drop())


async def transcript(port, table):
    """What a typical program sees: types, insert ids and row counts,
    executemany, a rolled back transaction, errors and the session going
    on after them, multiple result sets, a large result, ping."""
    out = []
    conn = await connect(port)
    async with conn.cursor() as cur:
        await cur.execute(
            f"CREATE TABLE `{table}` (id INT PRIMARY KEY AUTO_INCREMENT, s VARCHAR(50), "
            "d DECIMAL(20,6), dt DATETIME(6), b BLOB, j JSON, f DOUBLE, bits BIT(8))"
        )
        rows = [
            ("caf\u00e9 \U0001F600", Decimal("12345678901234.123456"),
             datetime.datetime(2024, 2, 29, 13, 45, 6, 789012), bytes(range(256)),
             '{"a": [1, 2.5, null]}', 1.5e300, 129),
            (None, None, None, None, None, None, None),
            ("", Decimal("-0.000001"), datetime.datetime(1970, 1, 1, 0, 0, 0, 1), b"",
             "[]", -0.0, 0),
        ]
        for r in rows:
            await cur.execute(f"INSERT INTO `{table}` (s, d, dt, b, j, f, bits) "
                              "VALUES (%s, %s, %s, %s, %s, %s, %s)", r)
            out.append(("insert", cur.lastrowid, cur.rowcount))
        n = await cur.executemany(f"INSERT INTO `{table}` (s) VALUES (%s)",
                                  [("m1",), ("m2",), ("m3",)])
        out.append(("executemany", n))
    out.append(await fetch(conn, f"SELECT * FROM `{table}` ORDER BY id"))
    out.append(await fetch(conn, "SELECT LAST_INSERT_ID(), ROW_COUNT()"))
    await conn.begin()
    await fetch(conn, f"UPDATE `{table}` SET s = 'rolled back' WHERE id = 1")
    out.append(await fetch(conn, f"SELECT s FROM `{table}` WHERE id = 1"))
    await conn.rollback()
    out.append(await fetch(conn, f"SELECT s FROM `{table}` WHERE id = 1"))
    out.append(("no table", await server_error(conn, "SELECT * FROM no_such_table_am")))
    out.append(("duplicate", await server_error(conn, f"INSERT INTO `{table}` (id) VALUES (1)")))
    out.append(("syntax", await server_error(conn, "SELEC 1")))
    out.append(await fetch(conn, "SELECT 6 * 7"))
    async with conn.cursor() as cur:
        await cur.execute("SELECT 1 AS a; SELECT 'two' AS b, 3 AS c")
        first = await cur.fetchall()
        more = await cur.nextset()
        out.append(("multi", list(first), more, list(await cur.fetchall())))
    names, big = await fetch(conn, "SELECT seq, REPEAT('x', 200) FROM seq_1_to_30000")
    out.append(("large", names, len(big), big[0], big[-1]))
    await conn.ping()
    out.append(await fetch(conn, "SELECT DATABASE(), @@autocommit"))
    conn.close()
    return out


def test_a_session_sees_what_it_sees_on_the_primary(table):
    through_proxy = run(transcript(PROXY_PORT, table))
    straight = run(transcript(PRIMARY_PORT, table + "_d"))
    assert through_proxy == straight
    rows = through_proxy[4][1]
    assert rows[0][1:] == ("caf\u00e9 \U0001F600", Decimal("12345678901234.123456"),
                           datetime.datetime(2024, 2, 29, 13, 45, 6, 789012),
                           bytes(range(256)), '{"a": [1, 2.5, null]}', 1.5e300, b"\x81")
    assert through_proxy[6][1] == [("rolled back",)]
    assert through_proxy[7][1] == [("caf\u00e9 \U0001F600",)]
    assert [e[1] for e in through_proxy[8:11]] == [1146, 1062, 1064]
    assert through_proxy[13][2] == 30000


def test_a_pool_reads_its_own_writes_from_the_replicas(table):
    """Each write on one pooled connection is read back on another,
    acquired at the same time: the same client as far as the proxy can
    tell, so read-your-writes (gtid, the default) holds across them."""

    async def go():
        pool = await asyncmy.create_pool(port=PROXY_PORT, minsize=2, maxsize=2, **LOGIN)
        async with pool.acquire() as writer, pool.acquire() as reader:
            await fetch(writer, f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v INT)")
            await fetch(writer, f"INSERT INTO `{table}` VALUES (1, 0)")
            ports = []
            for n in range(1, 101):
                await fetch(writer, f"UPDATE `{table}` SET v = %s WHERE id = 1", (n,))
                _, rows = await fetch(reader, f"SELECT v, @@port FROM `{table}` WHERE id = 1")
                v, port = rows[0]
                assert v == n, f"read {n} saw {v} (on port {port})"
                ports.append(port)
        pool.close()
        await pool.wait_closed()
        return ports

    ports = run(go())
    print("reads after writes by port:", {p: ports.count(p) for p in set(ports)})
    if PROXY_PORT != PRIMARY_PORT:
        assert sum(p != PRIMARY_PORT for p in ports) > 50, "reads after writes left the replicas"


def test_many_coroutines_share_a_pool_and_each_gets_its_own_answer():
    async def go():
        pool = await asyncmy.create_pool(port=PROXY_PORT, minsize=1, maxsize=8, **LOGIN)

        async def one(i):
            async with pool.acquire() as conn:
                _, rows = await fetch(conn, "SELECT %s, SLEEP(0.001)", (f"coroutine {i}",))
                return rows[0][0]

        answers = await asyncio.gather(*(one(i) for i in range(400)))
        pool.close()
        await pool.wait_closed()
        return answers

    assert run(go()) == [f"coroutine {i}" for i in range(400)]


def test_a_transaction_reads_its_own_uncommitted_rows(table):
    async def go():
        conn = await connect(PROXY_PORT, autocommit=False)
        await fetch(conn, f"CREATE TABLE `{table}` (id INT PRIMARY KEY)")
        await fetch(conn, f"INSERT INTO `{table}` VALUES (1), (2)")
        inside = await fetch(conn, f"SELECT COUNT(*) FROM `{table}`")
        other = await connect(PROXY_PORT)
        outside = await fetch(other, f"SELECT COUNT(*) FROM `{table}`")
        await conn.commit()
        after = await fetch(conn, f"SELECT COUNT(*) FROM `{table}`")
        conn.close()
        other.close()
        return inside[1], outside[1], after[1]

    inside, outside, after = run(go())
    assert inside == [(2,)]
    assert outside == [(0,)], "another session saw uncommitted rows"
    assert after == [(2,)]
