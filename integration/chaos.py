#!/usr/bin/env python3
"""Chaos soak: clients write and read through the proxy while faults hit
the lab, and every answer is checked.

Workers (PyMySQL text, MariaDB Connector/Python text, its "prepared" cursor,
its binary-protocol cursor, and its executemany, which is one bulk execute)
each own rows of a table. They increment a
row and read it straight back (read-your-writes), increment two rows in a
transaction, or just read. For every row the script knows the bounds of its
value: the acknowledged increments (low) and all increments sent, failed
ones included (high). A read below low is a stale read, above high a
phantom; after the run the primary's value must lie within the bounds (no
acknowledged write lost) and the replicas must hold the primary's table.

Faults, one at a time with calm in between, chosen at random: a replica
paused (SIGSTOP), killed (SIGKILL) and restarted, its SQL thread stopped;
the app's connections killed on a replica or the primary; the primary
paused, or killed and restarted; a replica drained, or the configuration
reloaded, through the admin port.

Needs the lab (integration/lab.sh up) and a running proxy on it, with the
admin port:

    python3 integration/chaos.py            # 180 s
    DURATION=60 SEED=7 FAULTS=kill_primary,stop_replica python3 integration/chaos.py

Environment: PORT (6450), ADMIN (6451), DURATION (s), WORKERS (10), SEED,
FAULTS (comma-separated names, see `FAULT_NAMES`), RWSPLIT_LAB_DIR. Exits 1
on any violation. Errors are expected while the primary is down (writes)
and are counted, with one sample each.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import mariadb
import pymysql

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = int(os.environ.get("PORT", "6450"))
ADMIN = int(os.environ.get("ADMIN", "6451"))
DURATION = float(os.environ.get("DURATION", "180"))
WORKERS = int(os.environ.get("WORKERS", "10"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
LAB = os.environ.get("RWSPLIT_LAB_DIR", "/tmp/rwsplit-lab")
FAULT_NAMES = [
    "stop_replica", "kill_replica", "lag_replica", "kill_conns_replica",
    "kill_conns_primary", "stop_primary", "kill_primary", "drain", "reload", "nothing",
]
FAULTS = os.environ.get("FAULTS", ",".join(FAULT_NAMES)).split(",")
REPLICAS = {"replica1": ("node2", 3307), "replica2": ("node3", 3308)}
ROWS_PER_WORKER = 8

rng = random.Random(SEED)
stop = threading.Event()
lock = threading.Lock()
counts = {}
samples = {}
violations = []
# row id -> [low, high]: acknowledged increments, increments sent
bounds = {}
current_fault = ["none"]


def direct(port):
    return pymysql.connect(host="127.0.0.1", port=port, user="admin", password="admin",
                           database="app", autocommit=True, connect_timeout=5, read_timeout=20)


def backends_snapshot():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/backends", timeout=2) as r:
            return [(b["name"], b["healthy"], b["eligible"], b["excluded_because"])
                    for b in json.loads(r.read())]
    except Exception as e:  # the snapshot only illustrates a sample
        return repr(e)


def count(key, error=None):
    with lock:
        counts[key] = counts.get(key, 0) + 1
        if error is not None and key not in samples:
            samples[key] = f"[{current_fault[0]}] {error!r}"[:300] + f" {backends_snapshot()}"


def violation(message):
    with lock:
        violations.append(f"[{current_fault[0]}] {message}")
    print("VIOLATION", current_fault[0], message, flush=True)


def error_key(op, e):
    code = getattr(e, "args", [""])
    code = code[0] if code else ""
    return f"{op}:{type(e).__name__}:{str(code)[:20]}"


class Worker(threading.Thread):
    # mariadb_bulk writes with executemany, a MariaDB bulk execute (one
    # command for all its rows) since the proxy offers bulk operations.
    KINDS = ["pymysql", "mariadb_prepared", "mariadb_binary", "mariadb_text", "mariadb_bulk"]

    def __init__(self, n):
        super().__init__(daemon=True)
        self.n = n
        self.ids = [n * 1000 + k for k in range(ROWS_PER_WORKER)]
        for i in self.ids:
            bounds[i] = [0, 0]
        self.kind = self.KINDS[n % len(self.KINDS)]
        self.rng = random.Random(SEED * 1000 + n)
        self.conn = None

    def connect(self):
        module = pymysql if self.kind == "pymysql" else mariadb
        self.conn = module.connect(host="127.0.0.1", port=PROXY, user="app", password="app",
                                   database="app", autocommit=True, connect_timeout=10,
                                   read_timeout=40, write_timeout=40)

    def query(self, sql, args=()):
        if self.kind == "pymysql":
            cursor = self.conn.cursor()
            sql = sql.replace("?", "%s")
        elif self.kind in ("mariadb_prepared", "mariadb_bulk"):
            cursor = self.conn.cursor(prepared=True)
        elif self.kind == "mariadb_binary":
            cursor = self.conn.cursor(binary=True)
        else:
            cursor = self.conn.cursor()
        cursor.execute(sql, args)
        rows = cursor.fetchall() if cursor.description else None
        cursor.close()
        return rows

    def drop_connection(self):
        try:
            self.conn.close()
        except Exception:
            pass
        self.conn = None

    def update(self, ids):
        sql = "UPDATE chaos_kv SET v = v + 1, s = ? WHERE id = ?"
        if self.kind == "mariadb_bulk":
            cursor = self.conn.cursor()
            cursor.executemany(sql, [(f"w{self.n}", i) for i in ids])
            cursor.close()
        else:
            for i in ids:
                self.query(sql, (f"w{self.n}", i))

    def write(self, ids, in_transaction):
        for i in ids:
            bounds[i][1] += 1
        try:
            if in_transaction:
                self.query("BEGIN")
                self.update(ids)
                self.query("COMMIT")
            else:
                self.update(ids[:1])
            for i in ids:
                bounds[i][0] += 1
            count("write_ok")
        except Exception as e:
            count(error_key("write_error", e), e)
            self.drop_connection()

    def read(self, i):
        if self.conn is None:
            return
        low, high = bounds[i]
        try:
            v = int(self.query("SELECT v FROM chaos_kv WHERE id = ?", (i,))[0][0])
        except Exception as e:
            count(error_key("read_error", e), e)
            self.drop_connection()
            return
        if v < low:
            violation(f"stale read: row {i} = {v}, {low} increments acknowledged ({self.kind})")
        elif v > high:
            violation(f"phantom read: row {i} = {v}, only {high} increments sent ({self.kind})")
        else:
            bounds[i][0] = v
        count("read_ok")

    def run(self):
        while not stop.is_set():
            if self.conn is None:
                try:
                    self.connect()
                except Exception as e:
                    count(error_key("connect_error", e), e)
                    time.sleep(0.2)
                    continue
            op = self.rng.random()
            if op < 0.35:
                i = self.rng.choice(self.ids)
                self.write([i], False)
                self.read(i)
            elif op < 0.45:
                pair = self.rng.sample(self.ids, 2)
                self.write(pair, True)
                self.read(pair[0])
            else:
                self.read(self.rng.choice(self.ids))


def table_digests():
    out = []
    for port in (3306, 3307, 3308):
        c = direct(port)
        cur = c.cursor()
        cur.execute("SELECT COUNT(*), COALESCE(SUM(v), 0), "
                    "COALESCE(SUM(CRC32(CONCAT(id, ':', v, ':', s))), 0) FROM chaos_kv")
        out.append(cur.fetchone())
        c.close()
    return out


def wait_converged(timeout=120):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = table_digests()
            if last[0] == last[1] == last[2]:
                return last[0]
        except Exception as e:
            last = repr(e)
        time.sleep(0.5)
    violation(f"replicas did not converge on the primary's table: {last}")
    return None


def lab(*args):
    subprocess.run([os.path.join(HERE, "lab.sh"), *args], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def pid_of(node):
    with open(os.path.join(LAB, node, "mariadbd.pid")) as f:
        return int(f.read().strip())


def admin_post(path):
    request = urllib.request.Request(f"http://127.0.0.1:{ADMIN}{path}", method="POST", data=b"")
    try:
        urllib.request.urlopen(request, timeout=5).read()
    except Exception as e:
        print("admin", path, e, flush=True)


def kill_app_connections(port):
    try:
        c = direct(port)
        cur = c.cursor()
        cur.execute("SELECT id FROM information_schema.processlist WHERE user = 'app'")
        for (thread,) in cur.fetchall():
            try:
                cur.execute(f"KILL {thread}")
            except Exception:
                pass
        c.close()
    except Exception as e:
        print("kill connections", e, flush=True)


def paused(node, seconds):
    pid = pid_of(node)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def one_fault():
    fault = rng.choice(FAULTS)
    name, (node, port) = rng.choice(list(REPLICAS.items()))
    current_fault[0] = fault if "primary" in fault else f"{fault}:{name}"
    print(time.strftime("%H:%M:%S"), "fault", current_fault[0], flush=True)
    if fault == "stop_replica":
        paused(node, rng.uniform(1, 5))
    elif fault == "kill_replica":
        os.kill(pid_of(node), signal.SIGKILL)
        time.sleep(rng.uniform(1, 4))
        lab("up")
    elif fault == "lag_replica":
        lab("lag", name, "stop")
        time.sleep(rng.uniform(1, 5))
        lab("lag", name, "start")
    elif fault == "kill_conns_replica":
        kill_app_connections(port)
    elif fault == "kill_conns_primary":
        kill_app_connections(3306)
    elif fault == "stop_primary":
        paused("node1", rng.uniform(1, 3))
    elif fault == "kill_primary":
        os.kill(pid_of("node1"), signal.SIGKILL)
        time.sleep(rng.uniform(0.5, 2))
        lab("up")
    elif fault == "reload":
        admin_post("/reload")
    elif fault == "drain":
        admin_post(f"/backends/{name}/drain")
        time.sleep(rng.uniform(1, 3))
        admin_post(f"/backends/{name}/enable")
    time.sleep(rng.uniform(2, 5))
    current_fault[0] = "calm after " + current_fault[0]


def main():
    print("seed", SEED, flush=True)
    c = direct(3306)
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS chaos_kv")
    cur.execute("CREATE TABLE chaos_kv (id INT PRIMARY KEY, v BIGINT NOT NULL, s VARCHAR(64))")
    rows = [(w * 1000 + k, 0, "") for w in range(WORKERS) for k in range(ROWS_PER_WORKER)]
    cur.executemany("INSERT INTO chaos_kv VALUES (%s, %s, %s)", rows)
    c.close()
    wait_converged()
    workers = [Worker(n) for n in range(WORKERS)]
    for w in workers:
        w.start()
    started = time.time()
    while time.time() - started < DURATION:
        one_fault()
    current_fault[0] = "end"
    lab("up")
    stop.set()
    for w in workers:
        w.join(timeout=60)
        if w.is_alive():
            violation(f"worker {w.n} ({w.kind}) still waiting on the proxy 60 s after the end")
    wait_converged()
    c = direct(3306)
    cur = c.cursor()
    cur.execute("SELECT id, v FROM chaos_kv")
    for i, v in cur.fetchall():
        low, high = bounds[i]
        if not low <= v <= high:
            violation(f"row {i} = {v} on the primary, acknowledged {low}, sent {high}")
    cur.execute("DROP TABLE chaos_kv")
    c.close()
    print(json.dumps(dict(sorted(counts.items())), indent=1))
    for key, sample in sorted(samples.items()):
        print(key, "=>", sample)
    print("violations", len(violations))
    for v in violations[:30]:
        print(" ", v)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
