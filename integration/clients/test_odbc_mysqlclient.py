"""Two client stacks on the MariaDB C connector, through rwsplit, compared
with the same statements straight on the primary: MariaDB's ODBC driver
(through pyodbc; with server-side prepares, its default, and with
NO_PREPARE) and mysqlclient (MySQLdb), also under SQLAlchemy's ORM with a
connection pool shared by threads.

Needs the lab (integration/lab.sh up), a running proxy, Debian's
odbc-mariadb and unixodbc, and pyodbc, mysqlclient and SQLAlchemy from pip
(integration/test.sh installs them):

    RWSPLIT_PORT=6450 python3 -m pytest -q integration/clients/test_odbc_mysqlclient.py

Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
RWSPLIT_PRIMARY_PORT (3306). With RWSPLIT_PORT=3306 every test runs against
the primary on both sides, which checks the tests themselves. Every table is
named with a per-run random suffix and dropped afterwards.
"""

import datetime
import os
import threading
import time
import uuid
from decimal import Decimal

import MySQLdb
import MySQLdb.cursors
import pyodbc
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

HOST = os.environ.get("RWSPLIT_HOST", "127.0.0.1")
PROXY_PORT = int(os.environ.get("RWSPLIT_PORT", "6450"))
PRIMARY_PORT = int(os.environ.get("RWSPLIT_PRIMARY_PORT", "3306"))
RUN = uuid.uuid4().hex[:10]
# OPTION=67108864 lets the ODBC driver send multi-statements.
ODBC_MODES = {"server-side prepares": "", "NO_PREPARE": "NO_PREPARE=1;"}


def odbc(port, extra=""):
    return pyodbc.connect(
        f"DRIVER={{MariaDB Unicode}};SERVER={HOST};PORT={port};DATABASE=app;"
        f"UID=app;PWD=app;OPTION=67108864;{extra}",
        autocommit=True,
        timeout=5,
    )


def mysqlclient(port, **kwargs):
    return MySQLdb.connect(
        host=HOST, port=port, user="app", password="app", database="app",
        charset="utf8mb4", autocommit=True, connect_timeout=5, **kwargs,
    )


@pytest.fixture
def table(request):
    """A unique table name for this test; dropped (on the primary) at the end."""
    name = f"oc_{request.node.name[:24]}_{RUN}".replace("[", "_").replace("]", "_").replace("-", "_")
    name = name.replace(" ", "_")
    yield name
    conn = mysqlclient(PRIMARY_PORT)
    try:
        conn.cursor().execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        conn.close()


def rows(cursor):
    return [tuple(r) for r in cursor.fetchall()]


def served_by_replicas(cursor, n=10):
    """Whether a round of n plain reads all ran on replicas (true when
    checking the checks). Right after the test's writes a replica may
    still be applying them, and reads then rightly go to the primary: up
    to 10 s of rounds until one runs wholly on replicas."""
    if PROXY_PORT == PRIMARY_PORT:
        return True
    deadline = time.monotonic() + 10
    while True:
        ports = set()
        for _ in range(n):
            cursor.execute("SELECT @@port")
            ports.add(cursor.fetchone()[0])
        if PRIMARY_PORT not in ports or time.monotonic() > deadline:
            return PRIMARY_PORT not in ports
        time.sleep(0.2)


@pytest.mark.parametrize("mode", ODBC_MODES)
def test_odbc_types_read_your_writes_and_catalog(mode, table):
    proxy, direct = odbc(PROXY_PORT, ODBC_MODES[mode]), odbc(PRIMARY_PORT, ODBC_MODES[mode])
    cur, dcur = proxy.cursor(), direct.cursor()
    cur.execute(
        f"CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50) CHARACTER SET utf8mb4, "
        "d DECIMAL(12,3), dt DATETIME(3), b VARBINARY(300), f DOUBLE, n INT NULL)"
    )
    for i in range(30):
        cur.execute(
            f"INSERT INTO `{table}` (v, d, dt, b, f, n) VALUES (?, ?, ?, ?, ?, ?)",
            f"\u00e9t\u00e9 {i} \U0001F600", Decimal("1.125") * i,
            datetime.datetime(2024, 2, 29, 3, 4, 5, 123000), bytes(range(i * 8)), i / 3,
            None if i % 2 else i,
        )
        cur.execute("SELECT LAST_INSERT_ID()")
        last = cur.fetchone()[0]
        cur.execute(f"SELECT v FROM `{table}` WHERE id = ?", last)
        assert rows(cur) == [(f"\u00e9t\u00e9 {i} \U0001F600",)], f"insert {i} (id {last}) not read back"
    sql = f"SELECT * FROM `{table}` ORDER BY id"
    cur.execute(sql)
    dcur.execute(sql)
    got, want = rows(cur), rows(dcur)
    assert len(want) == 30 and got == want
    assert [t.table_name for t in cur.tables(table=table)] == [table]
    assert [c.column_name for c in cur.columns(table=table)] == ["id", "v", "d", "dt", "b", "f", "n"]
    assert served_by_replicas(cur)
    proxy.close()
    direct.close()


@pytest.mark.parametrize("mode", ODBC_MODES)
def test_odbc_transactions_errors_and_results(mode, table):
    proxy = odbc(PROXY_PORT, ODBC_MODES[mode])
    cur = proxy.cursor()
    cur.execute(f"CREATE TABLE `{table}` (id INT PRIMARY KEY, v VARCHAR(10))")
    cur.execute(f"INSERT INTO `{table}` VALUES (1, 'one')")
    proxy.autocommit = False
    cur.execute(f"UPDATE `{table}` SET v = 'tx' WHERE id = 1")
    cur.execute(f"SELECT v FROM `{table}` WHERE id = 1")
    inside = cur.fetchone()[0]
    proxy.rollback()
    proxy.autocommit = True
    cur.execute(f"SELECT v FROM `{table}` WHERE id = 1")
    assert (inside, cur.fetchone()[0]) == ("tx", "one")
    with pytest.raises(pyodbc.Error) as info:
        cur.execute(f"INSERT INTO `{table}` VALUES (1, 'dup')")
    assert "1062" in str(info.value)
    with pytest.raises(pyodbc.Error) as info:
        cur.execute(f"SELECT nosuch FROM `{table}`")
    assert "42S22" in str(info.value)
    cur.executemany(f"INSERT INTO `{table}` VALUES (?, ?)", [(i, f"m{i}") for i in range(2, 52)])
    cur.execute(f"SELECT COUNT(*) FROM `{table}`")
    assert cur.fetchone()[0] == 51
    if mode == "NO_PREPARE":
        # Multi-statements go as text only.
        cur.execute(f"SELECT 1; UPDATE `{table}` SET v = 'two' WHERE id = 2; SELECT v FROM `{table}` WHERE id = 2")
        results = [rows(cur)]
        while cur.nextset():
            results.append(rows(cur) if cur.description else cur.rowcount)
        assert results == [[(1,)], 1, [("two",)]]
    # A result left unread, then the next statement on a new cursor.
    cur.execute("SELECT seq FROM seq_1_to_100000")
    assert len(cur.fetchmany(10)) == 10
    cur.close()
    cur = proxy.cursor()
    cur.execute("SELECT 7")
    assert cur.fetchone()[0] == 7
    proxy.close()


def test_mysqlclient_text_multi_statements_and_streaming(table):
    proxy, direct = mysqlclient(PROXY_PORT), mysqlclient(PRIMARY_PORT)
    cur, dcur = proxy.cursor(), direct.cursor()
    cur.execute(f"CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50), d DECIMAL(10,2), b BLOB)")
    for i in range(50):
        cur.execute(f"INSERT INTO `{table}` (v, d, b) VALUES (%s, %s, %s)", (f"v{i}", Decimal(i) / 4, bytes(range(256))))
        cur.execute(f"SELECT v FROM `{table}` WHERE id = %s", (cur.lastrowid,))
        assert cur.fetchall() == ((f"v{i}",),), f"insert {i} not read back"
    assert cur.executemany(f"INSERT INTO `{table}` (v) VALUES (%s)", [(f"m{i}",) for i in range(100)]) == 100
    sql = f"SELECT * FROM `{table}` ORDER BY id"
    cur.execute(sql)
    dcur.execute(sql)
    got, want = cur.fetchall(), dcur.fetchall()
    assert len(want) == 150 and got == want
    proxy.query(f"SELECT 1 AS a; UPDATE `{table}` SET v = 'x' WHERE id = 1; SELECT 2 AS b, 3")
    first = proxy.store_result().fetch_row()
    assert proxy.next_result() == 0 and proxy.affected_rows() == 1
    assert proxy.next_result() == 0
    assert (first, proxy.store_result().fetch_row()) == (((1,),), ((2, 3),))
    with pytest.raises(MySQLdb.OperationalError) as info:
        cur.execute(f"SELECT nosuch FROM `{table}`")
    assert info.value.args[0] == 1054
    stream = proxy.cursor(MySQLdb.cursors.SSCursor)
    stream.execute("SELECT seq FROM seq_1_to_300000")
    for n, (seq,) in enumerate(stream, 1):
        assert seq == n
        if n == 500:
            break
    stream.close()
    cur.execute("SELECT 42")
    assert cur.fetchone()[0] == 42
    proxy.ping()
    assert served_by_replicas(cur)
    proxy.close()
    direct.close()


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = f"oc_items_{RUN}"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    qty: Mapped[int]


@pytest.mark.parametrize("driver,isolation", [("mysqldb", None), ("pymysql", None), ("pymysql", "AUTOCOMMIT")])
def test_sqlalchemy_orm_pool_shared_by_threads(driver, isolation):
    """Each thread adds a row, reads it back in a new session (likely on
    another pooled connection), updates it and reads the update. With the
    dialect's default of autocommit off every statement is in a transaction,
    so on the primary: that checks the driver. With AUTOCOMMIT the reads go
    to replicas and must still see the pool's writes; with replication
    healthy a stale read is rare even without read-your-writes across
    connections (this test passed against a build without it), so
    tests/stale_reads.rs, with a replica held 2 s behind, is what checks
    that."""
    options = {"isolation_level": isolation} if isolation else {}
    engine = sa.create_engine(
        f"mysql+{driver}://app:app@{HOST}:{PROXY_PORT}/app", pool_size=4, max_overflow=0, **options
    )
    Base.metadata.create_all(engine)
    errors = []

    def worker(t):
        try:
            for i in range(25):
                with Session(engine) as s:
                    item = Item(name=f"{driver}-{t}-{i}", qty=i)
                    s.add(item)
                    s.commit()
                    item_id = item.id
                with Session(engine) as s:
                    got = s.get(Item, item_id)
                    if got is None or got.qty != i:
                        errors.append(("read back", t, i, got and got.qty))
                        continue
                    got.qty += 100
                    s.commit()
                with engine.connect() as conn:
                    qty = conn.execute(sa.text(f"SELECT qty FROM {Item.__tablename__} WHERE id = :i"), {"i": item_id}).scalar()
                    if qty != i + 100:
                        errors.append(("update", t, i, qty))
        except Exception as e:  # reported, not swallowed
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with engine.connect() as conn:
        count = conn.execute(sa.text(f"SELECT COUNT(*) FROM {Item.__tablename__} WHERE name LIKE :p"), {"p": f"{driver}-%"}).scalar()
        ports = {conn.execute(sa.text("SELECT @@port")).scalar() for _ in range(6)}
    Base.metadata.drop_all(engine)
    engine.dispose()
    assert errors == []
    assert count == 150
    if isolation and PROXY_PORT != PRIMARY_PORT:
        assert PRIMARY_PORT not in ports, f"autocommit reads ran on {ports}"
