#!/usr/bin/env python3
"""Connection scaling of rwsplit: idle connections' memory, and a connect storm.

  bench/connections.py [--idle 10000] [--storm 1000] [--out DIR]
                       [--bin FILE] [--port-base 6464]
  bench/connections.py --address HOST:PORT [--pid PID] ...   (a running proxy)

(a) Idle: opens --idle authenticated client connections through rwsplit and
    holds them all at once (none sends a statement). Reports the proxy's RSS
    (VmRSS in /proc/PID/status) before and after, as KiB per connection
    (target: at most 64), checks that the proxy opened no backend connection
    for them (the count of user app's connections in the processlist of the
    primary and both replicas, before and after), and that every held
    connection still answers COM_PING (which the proxy answers itself).
(b) Storm: --storm clients connect at the same moment (asyncio); each must
    log in and run SELECT 1. Reports errors and the connect latency
    (TCP connect to the end of the login) p50/p99/max.

By default the script starts its own rwsplit (--bin, default $RWSPLIT_BIN or
${CARGO_TARGET_DIR:-target}/release/rwsplit) with a config generated from the
lab's ports (RWSPLIT_LAB_PORT, default 3306, replicas at +1 and +2;
listener on --port-base, admin on --port-base + 1; max_client_connections
20000) and stops it at the end. The open-files limit of this script (and so
of the proxy it starts) is raised to the hard limit. With --address the
proxy is not started; pass --pid for the RSS measurement and --admin for
its /metrics.

RWSPLIT_COMMIT names the commit the binary was built from in the report
(default: this checkout's HEAD, "+dirty" with uncommitted source changes).

Writes DIR/connections-<UTC date>-<host>.md, DIR/connections-latest.md and
DIR/connections-latest.json (bench/report.py adds the latter's PASS/FAIL
lines to its report) and prints the PASS/FAIL lines. Exit status 1 when a
target failed, 2 when the measurement itself could not be made.

A minimal MySQL client is built in (handshake v10, mysql_native_password and
the caching_sha2_password fast path, COM_QUERY, COM_PING, COM_QUIT);
Python 3 standard library only.
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MAX_KIB_PER_CONN = 64

# Client capability flags.
CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_PLUGIN_AUTH_LENENC = 0x200000


class MySQLError(Exception):
    pass


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def native_scramble(password, seed):
    """SHA1(pw) XOR SHA1(seed + SHA1(SHA1(pw)))."""
    if not password:
        return b""
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(h1).digest()
    return xor(h1, hashlib.sha1(seed + h2).digest())


def sha2_scramble(password, seed):
    """caching_sha2 fast path: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + seed)."""
    if not password:
        return b""
    h1 = hashlib.sha256(password).digest()
    h2 = hashlib.sha256(h1).digest()
    return xor(h1, hashlib.sha256(h2 + seed).digest())


def scramble(plugin, password, seed):
    if plugin == "mysql_native_password":
        return native_scramble(password, seed)
    if plugin == "caching_sha2_password":
        return sha2_scramble(password, seed)
    raise MySQLError(f"unsupported auth plugin {plugin!r}")


def lenenc_int(buf, pos):
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    if first == 0xFC:
        return struct.unpack_from("<H", buf, pos + 1)[0], pos + 3
    if first == 0xFD:
        return int.from_bytes(buf[pos + 1:pos + 4], "little"), pos + 4
    return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9


def lenenc_bytes(data):
    n = len(data)
    if n < 0xFB:
        return bytes([n]) + data
    if n < 0x10000:
        return b"\xfc" + struct.pack("<H", n) + data
    return b"\xfd" + n.to_bytes(3, "little") + data


def err_text(pkt):
    code = struct.unpack_from("<H", pkt, 1)[0]
    msg = pkt[3:]
    if msg[:1] == b"#":
        msg = msg[6:]
    return f"ERROR {code}: {msg.decode('utf-8', 'replace')}"


class Conn:
    """One client connection (text protocol only)."""

    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.seq = 0

    async def read(self):
        payload = b""
        while True:
            head = await self.r.readexactly(4)
            n = head[0] | head[1] << 8 | head[2] << 16
            self.seq = (head[3] + 1) & 0xFF
            payload += await self.r.readexactly(n)
            if n < 0xFFFFFF:
                return payload

    def send(self, payload):
        self.w.write(len(payload).to_bytes(3, "little") + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) & 0xFF

    def command(self, payload):
        self.seq = 0
        self.send(payload)

    @classmethod
    async def connect(cls, host, port, user, password, db=None):
        reader, writer = await asyncio.open_connection(host, port)
        c = cls(reader, writer)
        try:
            await c._login(user.encode(), password.encode(), db.encode() if db else None)
        except BaseException:
            writer.close()
            raise
        return c

    async def _login(self, user, password, db):
        hs = await self.read()
        if hs[0] == 0xFF:
            raise MySQLError(err_text(hs))
        if hs[0] != 10:
            raise MySQLError(f"handshake protocol {hs[0]}, expected 10")
        pos = hs.index(b"\0", 1) + 1  # server version
        pos += 4  # connection id
        seed = hs[pos:pos + 8]
        pos += 9  # auth data part 1, filler
        caps = struct.unpack_from("<H", hs, pos)[0]
        pos += 2
        plugin = "mysql_native_password"
        if len(hs) > pos:
            pos += 3  # charset, status
            caps |= struct.unpack_from("<H", hs, pos)[0] << 16
            pos += 2
            auth_len = hs[pos]
            pos += 11  # length, 10 reserved bytes
            if caps & CLIENT_SECURE_CONNECTION:
                n = max(13, auth_len - 8)
                seed += hs[pos:pos + n]
                pos += n
            if caps & CLIENT_PLUGIN_AUTH:
                end = hs.find(b"\0", pos)
                plugin = hs[pos:end if end >= 0 else len(hs)].decode()
        seed = seed[:20]
        need = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
        if caps & need != need:
            raise MySQLError("server lacks CLIENT_PROTOCOL_41 / CLIENT_SECURE_CONNECTION")
        mine = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
                | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH
                | CLIENT_PLUGIN_AUTH_LENENC)
        if db:
            mine |= CLIENT_CONNECT_WITH_DB
        mine &= caps
        auth = scramble(plugin, password, seed)
        resp = struct.pack("<IIB", mine, 1 << 24, 45) + b"\0" * 23 + user + b"\0"
        if mine & CLIENT_PLUGIN_AUTH_LENENC:
            resp += lenenc_bytes(auth)
        else:
            resp += bytes([len(auth)]) + auth
        if mine & CLIENT_CONNECT_WITH_DB:
            resp += db + b"\0"
        if mine & CLIENT_PLUGIN_AUTH:
            resp += plugin.encode() + b"\0"
        self.send(resp)
        await self.w.drain()
        while True:
            pkt = await self.read()
            if pkt[0] == 0x00:
                return
            if pkt[0] == 0xFF:
                raise MySQLError(err_text(pkt))
            if pkt[0] == 0xFE:  # auth switch: plugin name, then its seed
                end = pkt.index(b"\0", 1)
                plugin = pkt[1:end].decode()
                seed = pkt[end + 1:]
                if seed.endswith(b"\0"):
                    seed = seed[:-1]
                self.send(scramble(plugin, password, seed[:20]))
                await self.w.drain()
            elif pkt[0] == 0x01 and plugin == "caching_sha2_password":
                if pkt[1:2] == b"\x03":  # fast auth succeeded; OK follows
                    continue
                raise MySQLError("caching_sha2_password wants the full exchange (TLS or RSA)")
            else:
                raise MySQLError(f"unexpected packet 0x{pkt[0]:02x} during login")

    async def query(self, sql):
        """Rows of a text result set (values as str or None); [] for an OK."""
        self.command(b"\x03" + sql.encode())
        await self.w.drain()
        pkt = await self.read()
        if pkt[0] == 0x00:
            return []
        if pkt[0] == 0xFF:
            raise MySQLError(err_text(pkt))
        ncols, _ = lenenc_int(pkt, 0)
        for _ in range(ncols):
            await self.read()
        pkt = await self.read()
        if not (pkt[0] == 0xFE and len(pkt) < 9):
            raise MySQLError("no EOF after the column definitions")
        rows = []
        while True:
            pkt = await self.read()
            if pkt[0] == 0xFE and len(pkt) < 9:
                return rows
            if pkt[0] == 0xFF:
                raise MySQLError(err_text(pkt))
            row, pos = [], 0
            for _ in range(ncols):
                n, pos = lenenc_int(pkt, pos)
                if n is None:
                    row.append(None)
                else:
                    row.append(pkt[pos:pos + n].decode("utf-8", "replace"))
                    pos += n
            rows.append(row)

    async def ping(self):
        self.command(b"\x0e")
        await self.w.drain()
        pkt = await self.read()
        if pkt[0] != 0x00:
            raise MySQLError(err_text(pkt) if pkt[0] == 0xFF else "bad reply to COM_PING")

    async def close(self):
        try:
            self.command(b"\x01")
            await self.w.drain()
        except OSError:
            pass
        self.w.close()
        try:
            await self.w.wait_closed()
        except OSError:
            pass


# ------------------------------------------------------------------ helpers

def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def nofile_limit(pid):
    try:
        with open(f"/proc/{pid}/limits", encoding="ascii") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def metric(admin, name):
    if not admin:
        return None
    status, body = http_get(f"http://{admin}/metrics")
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def listen_overflows():
    """The kernel's TcpExtListenOverflows (system-wide): SYNs dropped because an
    accept queue was full; each costs its client a retransmission (1 s first)."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            d = dict(zip(names.split()[1:], values.split()[1:]))
            if "ListenOverflows" in d:
                return int(d["ListenOverflows"])
    return None


def delta(a, b):
    return None if a is None or b is None else b - a


def listen_backlog(port):
    """The accept-queue length of the socket listening on `port` (ss's Send-Q)."""
    try:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=5).stdout.split()
        return int(out[2]) if len(out) >= 3 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def port_free(host, port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) != 0


async def app_backend_connections(host, ports):
    """Connections of user app in each server's processlist (seen as monitor)."""
    out = {}
    for name, port in ports.items():
        c = await Conn.connect(host, port, "monitor", "monitor")
        rows = await c.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
        await c.close()
        out[name] = int(rows[0][0])
    return out


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ------------------------------------------------------------------ the proxy

class Proxy:
    """The rwsplit binary started with a generated lab config."""

    def __init__(self, binary, listen_port, admin_port, lab_port, workdir):
        self.address = f"127.0.0.1:{listen_port}"
        self.admin = f"127.0.0.1:{admin_port}"
        self.config = os.path.join(workdir, "rwsplit.toml")
        self.log = os.path.join(workdir, "rwsplit.log")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f"""# Generated by bench/connections.py.
[[listeners]]
address = "{self.address}"

[admin]
address = "{self.admin}"

[[users]]
name = "app"
password = "app"

[[backends]]
name = "primary"
address = "127.0.0.1:{lab_port}"
role = "primary"

[[backends]]
name = "replica1"
address = "127.0.0.1:{lab_port + 1}"
role = "replica"
weight = 1

[[backends]]
name = "replica2"
address = "127.0.0.1:{lab_port + 2}"
role = "replica"
weight = 1

[monitor]
user = "monitor"
password = "monitor"

[limits]
max_client_connections = 20000
""")
        check = subprocess.run([binary, "check", self.config], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"rwsplit check refused {self.config}:\n{check.stderr}")
        self.logf = open(self.log, "w", encoding="utf-8")
        # The open-files limit raised in this process is inherited.
        self.proc = subprocess.Popen([binary, "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rwsplit exited with status {self.proc.returncode}: "
                                   f"{self.tail()}")
            status, body = http_get(f"http://{self.admin}/backends")
            if status == 200:
                b = json.loads(body)
                if sum(1 for x in b if x["role"] == "replica" and x["eligible"]) == 2:
                    break
            if time.time() > deadline:
                raise RuntimeError("rwsplit's replicas did not become eligible within 20 s")
            time.sleep(0.2)

    def tail(self, n=20):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


# ------------------------------------------------------------------ phases

async def bounded(n, limit, make):
    """Runs make(i) for i in range(n), at most `limit` at a time; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(i):
        async with sem:
            return await make(i)
    return await asyncio.gather(*(one(i) for i in range(n)))


def short_error(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection closed by the proxy"
    return f"{type(e).__name__}: {e}"


def count_errors(errors):
    counts = {}
    for e in errors:
        counts[e] = counts.get(e, 0) + 1
    return counts


async def idle_phase(args, host, port, pid, admin, backends):
    res = {"connections": args.idle}
    # Warm-up: a few hundred logins and logouts, so that one-time growth of
    # the proxy's allocator and runtime is not counted per connection.
    async def login_logout(_):
        c = await asyncio.wait_for(Conn.connect(host, port, "app", "app", "app"), args.timeout)
        await c.close()
    await bounded(200, 50, login_logout)
    await asyncio.sleep(1)

    res["backend_before"] = await app_backend_connections(host, backends)
    res["client_metric_before"] = metric(admin, "rwsplit_client_connections")
    res["rss_before_kib"] = rss_kib(pid) if pid else None
    print(f"idle: proxy RSS {res['rss_before_kib']} KiB before; user app's backend connections "
          f"{res['backend_before']}; opening {args.idle} connections ({args.concurrency} at a time)",
          flush=True)

    conns, errors, lat = [], [], []
    ov0 = listen_overflows()
    t0 = time.monotonic()

    async def open_one(_):
        s = time.monotonic()
        try:
            c = await asyncio.wait_for(Conn.connect(host, port, "app", "app", "app"), args.timeout)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            errors.append(short_error(e))
            return
        lat.append(time.monotonic() - s)
        conns.append(c)
    await bounded(args.idle, args.concurrency, open_one)
    res["open_seconds"] = time.monotonic() - t0
    res["opened"] = len(conns)
    res["open_errors"] = count_errors(errors)
    res["open_p50_ms"] = percentile(lat, 50) * 1000 if lat else None
    res["open_p99_ms"] = percentile(lat, 99) * 1000 if lat else None
    res["open_max_ms"] = max(lat) * 1000 if lat else None
    res["open_slower_than_1s"] = sum(1 for x in lat if x >= 1)
    res["listen_overflows"] = delta(ov0, listen_overflows())
    print(f"idle: {len(conns)} open in {res['open_seconds']:.1f} s, {len(errors)} errors "
          f"{res['open_errors'] or ''}".rstrip() + f"; holding them {args.hold} s", flush=True)

    await asyncio.sleep(args.hold)
    res["rss_after_kib"] = rss_kib(pid) if pid else None
    res["client_metric_held"] = metric(admin, "rwsplit_client_connections")
    res["backend_held"] = await app_backend_connections(host, backends)

    # Every held connection must still be alive: COM_PING, answered by the proxy.
    ping_errors = []

    async def ping(i):
        try:
            await asyncio.wait_for(conns[i].ping(), args.timeout)
        except Exception as e:  # noqa: BLE001
            ping_errors.append(short_error(e))
    await bounded(len(conns), args.concurrency, ping)
    res["ping_errors"] = count_errors(ping_errors)
    res["backend_after_ping"] = await app_backend_connections(host, backends)
    res["rss_after_ping_kib"] = rss_kib(pid) if pid else None

    await bounded(len(conns), args.concurrency, lambda i: conns[i].close())
    await asyncio.sleep(2)
    res["rss_after_close_kib"] = rss_kib(pid) if pid else None
    res["client_metric_after_close"] = metric(admin, "rwsplit_client_connections")

    # A second round of as many connections: the RSS should stay near the
    # first round's peak (memory reused, nothing kept per closed session).
    again, errors2 = [], []

    async def open_again(_):
        try:
            again.append(await asyncio.wait_for(Conn.connect(host, port, "app", "app", "app"),
                                                args.timeout))
        except Exception as e:  # noqa: BLE001
            errors2.append(short_error(e))
    await bounded(args.idle, args.concurrency, open_again)
    await asyncio.sleep(args.hold)
    res["round2_opened"] = len(again)
    res["round2_errors"] = count_errors(errors2)
    res["rss_round2_kib"] = rss_kib(pid) if pid else None
    await bounded(len(again), args.concurrency, lambda i: again[i].close())
    await asyncio.sleep(1)
    if pid and res["rss_after_kib"] is not None and conns:
        res["kib_per_connection"] = (res["rss_after_kib"] - res["rss_before_kib"]) / len(conns)
    else:
        res["kib_per_connection"] = None
    print(f"idle: RSS {res['rss_after_kib']} KiB held, {res['rss_after_ping_kib']} KiB after the pings, "
          f"{res['rss_after_close_kib']} KiB after closing, {res['rss_round2_kib']} KiB holding "
          f"{res['round2_opened']} again; backend connections held "
          f"{res['backend_held']}, after pings {res['backend_after_ping']}; ping errors "
          f"{sum(res['ping_errors'].values())}", flush=True)
    return res


async def storm_phase(args, host, port):
    n = args.storm
    start = asyncio.Event()
    done = asyncio.Event()
    finished = [0]
    lat, q_lat, errors, conns = [], [], [], []

    async def client(_):
        await start.wait()
        s = time.monotonic()
        c = None
        try:
            c = await asyncio.wait_for(Conn.connect(host, port, "app", "app", "app"), args.timeout)
            t = time.monotonic()
            lat.append(t - s)
            rows = await asyncio.wait_for(c.query("SELECT 1"), args.timeout)
            if rows != [["1"]]:
                raise MySQLError(f"SELECT 1 returned {rows!r}")
            q_lat.append(time.monotonic() - t)
            conns.append(c)
        except Exception as e:  # noqa: BLE001
            errors.append(short_error(e))
            if c is not None:
                c.w.close()
        finished[0] += 1
        if finished[0] == n:
            done.set()
        # Hold the connection until every client is through, so that all of
        # them are really open at once.
        await done.wait()

    tasks = [asyncio.create_task(client(i)) for i in range(n)]
    await asyncio.sleep(0.5)  # every task waits on the event
    ov0 = listen_overflows()
    t0 = time.monotonic()
    start.set()
    await done.wait()
    wall = time.monotonic() - t0
    overflows = delta(ov0, listen_overflows())
    await asyncio.gather(*tasks)
    await bounded(len(conns), 200, lambda i: conns[i].close())
    res = {
        "clients": n,
        "ok": len(conns),
        "errors": count_errors(errors),
        "wall_seconds": wall,
        "connect_p50_ms": percentile(lat, 50) * 1000 if lat else None,
        "connect_p99_ms": percentile(lat, 99) * 1000 if lat else None,
        "connect_max_ms": max(lat) * 1000 if lat else None,
        "select_p50_ms": percentile(q_lat, 50) * 1000 if q_lat else None,
        "select_p99_ms": percentile(q_lat, 99) * 1000 if q_lat else None,
        "connect_slower_than_1s": sum(1 for x in lat if x >= 1),
        "listen_overflows": overflows,
        "listen_backlog": listen_backlog(port),
    }
    print(f"storm on :{port}: {res['ok']} of {n} logged in and ran SELECT 1 in {wall:.2f} s; "
          f"accept queue {res['listen_backlog']}, listen overflows {overflows}; errors "
          f"{sum(res['errors'].values())} {res['errors'] or ''}".rstrip(), flush=True)
    return res


def targets(idle, storm):
    t = []
    if idle:
        name = f"{idle['connections']:,} idle connections: proxy RSS <= {MAX_KIB_PER_CONN} KiB per connection"
        k = idle.get("kib_per_connection")
        if k is None:
            t.append((name, "SKIP", "no proxy pid to measure"))
        else:
            t.append((name, "PASS" if k <= MAX_KIB_PER_CONN else "FAIL",
                      f"{k:.1f} KiB ({idle['rss_before_kib']:,} -> {idle['rss_after_kib']:,} KiB "
                      f"for {idle['opened']:,} connections)"))
        n_err = sum(idle["open_errors"].values()) + sum(idle["ping_errors"].values())
        t.append((f"{idle['connections']:,} idle connections: all log in and answer COM_PING",
                  "PASS" if n_err == 0 and idle["opened"] == idle["connections"] else "FAIL",
                  f"{idle['opened']:,} opened, open errors {idle['open_errors'] or 0}, "
                  f"ping errors {idle['ping_errors'] or 0}"))
        b0, b1, b2 = idle["backend_before"], idle["backend_held"], idle["backend_after_ping"]
        grew = {k: (b1[k] - b0[k], b2[k] - b0[k]) for k in b0}
        ok = all(a <= 0 and b <= 0 for a, b in grew.values())
        t.append((f"{idle['connections']:,} idle connections: no backend connections opened for them",
                  "PASS" if ok else "FAIL",
                  "user app's connections per server before / held / after pings: "
                  + ", ".join(f"{k} {b0[k]}/{b1[k]}/{b2[k]}" for k in b0)))
    if storm:
        n_err = sum(storm["errors"].values())
        t.append((f"{storm['clients']:,} clients at once: all log in and run SELECT 1",
                  "PASS" if n_err == 0 and storm["ok"] == storm["clients"] else "FAIL",
                  f"{storm['ok']:,} ok, {n_err} errors{' ' + str(storm['errors']) if n_err else ''}; connect p50 "
                  f"{fmt_ms(storm['connect_p50_ms'])}, p99 {fmt_ms(storm['connect_p99_ms'])}, "
                  f"max {fmt_ms(storm['connect_max_ms'])}"))
    return t


def fmt_ms(v):
    return "–" if v is None else f"{v:.1f} ms"


def write_report(out_dir, summary):
    date = summary["date"][:10]
    stem = f"connections-{date}-{summary['host']}"
    L = [f"# rwsplit connection scaling, {summary['date']}", "",
         f"Host {summary['host']} ({summary['nproc']} CPUs, {summary['cpu_model']}, "
         f"{summary['kernel']}); {summary['rwsplit_version']}, git {summary['rwsplit_commit']}; "
         f"proxy at {summary['address']}, pid {summary['pid']}, accept queue (listen backlog) "
         f"{summary.get('listen_backlog')}, its open-files limit "
         f"{summary['proxy_nofile']}; this script's limit {summary['client_nofile']}.", ""]
    idle, storm = summary.get("idle"), summary.get("storm")
    if idle:
        L += ["## Idle connections", "",
              "| | |", "| --- | --- |",
              f"| connections held at once | {idle['opened']:,} of {idle['connections']:,} |",
              f"| opened in | {idle['open_seconds']:.1f} s ({summary.get('concurrency')} logins in flight; "
              f"login p50 {fmt_ms(idle['open_p50_ms'])}, p99 {fmt_ms(idle['open_p99_ms'])}, "
              f"max {fmt_ms(idle['open_max_ms'])}; {idle['open_slower_than_1s']} took 1 s or more) |",
              f"| listen queue overflows meanwhile (kernel, system-wide) | {idle['listen_overflows']} |",
              f"| proxy RSS before (after 200 warm-up logins) | {fmt_int(idle['rss_before_kib'])} KiB |",
              f"| proxy RSS holding them | {fmt_int(idle['rss_after_kib'])} KiB |",
              f"| proxy RSS after a COM_PING on each | {fmt_int(idle['rss_after_ping_kib'])} KiB |",
              f"| proxy RSS after closing them | {fmt_int(idle['rss_after_close_kib'])} KiB |",
              f"| proxy RSS holding {idle['round2_opened']:,} new ones (second round) | "
              f"{fmt_int(idle['rss_round2_kib'])} KiB (errors {idle['round2_errors'] or 0}) |",
              f"| per connection | {fmt_kib(idle['kib_per_connection'])} |",
              f"| rwsplit_client_connections before / held / after closing | "
              f"{fmt_int(idle['client_metric_before'])} / {fmt_int(idle['client_metric_held'])} / "
              f"{fmt_int(idle['client_metric_after_close'])} |",
              f"| user app's backend connections before | {per_server(idle['backend_before'])} |",
              f"| ... while held | {per_server(idle['backend_held'])} |",
              f"| ... after the pings | {per_server(idle['backend_after_ping'])} |",
              f"| open errors | {idle['open_errors'] or 0} |",
              f"| ping errors | {idle['ping_errors'] or 0} |", ""]
    if storm:
        L += ["## Connect storm", "",
              "| | |", "| --- | --- |",
              f"| clients started at once | {storm['clients']:,} |",
              f"| logged in and ran SELECT 1 | {storm['ok']:,} |",
              f"| errors | {storm['errors'] or 0} |",
              f"| all done after | {storm['wall_seconds']:.2f} s |",
              f"| connect + login latency p50 / p99 / max | {fmt_ms(storm['connect_p50_ms'])} / "
              f"{fmt_ms(storm['connect_p99_ms'])} / {fmt_ms(storm['connect_max_ms'])} |",
              f"| SELECT 1 latency p50 / p99 | {fmt_ms(storm['select_p50_ms'])} / "
              f"{fmt_ms(storm['select_p99_ms'])} |",
              f"| logins that took 1 s or more | {storm['connect_slower_than_1s']} |",
              f"| the proxy's accept queue (listen backlog) | {storm['listen_backlog']} |",
              f"| listen queue overflows meanwhile (kernel, system-wide) | {storm['listen_overflows']} |",
              ""]
        ref = summary.get("storm_direct")
        if ref:
            L += ["The same storm straight at replica1 (no proxy), for reference: "
                  f"{ref['ok']:,} of {ref['clients']:,} ok, errors {ref['errors'] or 0}, all done after "
                  f"{ref['wall_seconds']:.2f} s, connect + login p50 / p99 / max "
                  f"{fmt_ms(ref['connect_p50_ms'])} / {fmt_ms(ref['connect_p99_ms'])} / "
                  f"{fmt_ms(ref['connect_max_ms'])}, SELECT 1 p50 / p99 {fmt_ms(ref['select_p50_ms'])} / "
                  f"{fmt_ms(ref['select_p99_ms'])}.", ""]
        L += ["The latencies are measured by this script's single-threaded asyncio client, "
              "which handles all the clients itself: they include its own queueing, which "
              "the no-proxy reference shows.", ""]
    L += ["## Targets", "", "```"]
    L += [f"{v} {n}: {d}" for n, v, d in summary["targets"]]
    L += ["```", ""]
    text = "\n".join(L)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, stem + ".md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    shutil.copyfile(path, os.path.join(out_dir, "connections-latest.md"))
    with open(os.path.join(out_dir, "connections-latest.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return path


def per_server(d):
    return ", ".join(f"{k} {v}" for k, v in d.items())


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt_kib(v):
    return "–" if v is None else f"{v:.1f} KiB"


def machine(binary):
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = os.environ.get("RWSPLIT_COMMIT")
    if not commit:
        commit = run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"]) or "unknown"
        if run(["git", "-C", root, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]):
            commit += "+dirty"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname().split(".")[0],
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": " ".join(os.uname()[i] for i in (0, 2)),
        "rwsplit_version": (run([binary, "--version"]) if binary else "") or "?",
        "rwsplit_commit": commit,
    }


async def main_async(args, host, port, pid, admin, backends):
    idle = storm = reference = None
    if args.idle > 0:
        idle = await idle_phase(args, host, port, pid, admin, backends)
    if args.storm > 0:
        storm = await storm_phase(args, host, port)
        if not args.no_reference:
            # The same storm straight at replica1: what this client and
            # machine give without the proxy.
            print("storm reference: the same clients straight to replica1, no proxy", flush=True)
            reference = await storm_phase(args, "127.0.0.1", backends["replica1"])
    return idle, storm, reference


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    default_bin = os.environ.get("RWSPLIT_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target"), "release", "rwsplit")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections to hold (0: skip)")
    ap.add_argument("--storm", type=int, default=1000, help="clients connecting at once (0: skip)")
    ap.add_argument("--hold", type=float, default=3, help="seconds to hold the idle connections")
    ap.add_argument("--concurrency", type=int, default=200,
                    help="logins in flight while opening the idle connections")
    ap.add_argument("--timeout", type=float, default=30, help="seconds per login or statement")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the storm straight at replica1 (the no-proxy reference)")
    ap.add_argument("--bin", default=default_bin, help="the rwsplit binary to start")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("RWSPLIT_CONN_PORT", 6464)),
                    help="listener port of the started proxy; admin on the next one")
    ap.add_argument("--address", help="HOST:PORT of a running proxy (not started then)")
    ap.add_argument("--pid", type=int, help="pid of the running proxy (for RSS)")
    ap.add_argument("--admin", help="HOST:PORT of the running proxy's admin port")
    ap.add_argument("--out", default=os.path.join(here, "results"), help="results folder")
    args = ap.parse_args()

    lab_port = int(os.environ.get("RWSPLIT_LAB_PORT", "3306"))
    backends = {"primary": lab_port, "replica1": lab_port + 1, "replica2": lab_port + 2}
    nofile = raise_nofile()
    if args.idle + 100 > nofile:
        sys.exit(f"open-files limit {nofile} is too low for {args.idle} connections")

    proxy = None
    workdir = tempfile.mkdtemp(prefix="rwsplit-conn-")
    try:
        if args.address:
            host, port = args.address.rsplit(":", 1)
            port, pid, admin = int(port), args.pid, args.admin
        else:
            if not os.access(args.bin, os.X_OK):
                sys.exit(f"no rwsplit binary at {args.bin}; build it (cargo build --release) or pass --bin")
            for p in (args.port_base, args.port_base + 1):
                if not port_free("127.0.0.1", p):
                    sys.exit(f"port {p} is taken; choose others with --port-base")
            proxy = Proxy(args.bin, args.port_base, args.port_base + 1, lab_port, workdir)
            host, port, pid, admin = "127.0.0.1", args.port_base, proxy.pid, proxy.admin
            print(f"started rwsplit pid {pid} on {proxy.address} (admin {admin}); "
                  f"its open-files limit {nofile_limit(pid)}", flush=True)
        summary = machine(args.bin if not args.address else None)
        summary.update({"address": f"{host}:{port}", "pid": pid, "concurrency": args.concurrency,
                        "listen_backlog": listen_backlog(port), "proxy_nofile": nofile_limit(pid) if pid else None,
                        "client_nofile": nofile})
        try:
            idle, storm, reference = asyncio.run(main_async(args, host, port, pid, admin, backends))
        except Exception as e:  # noqa: BLE001
            if proxy and not proxy.alive():
                print(f"rwsplit died (status {proxy.proc.returncode}); log tail:\n{proxy.tail()}",
                      file=sys.stderr)
            print(f"measurement failed: {short_error(e)}", file=sys.stderr)
            sys.exit(2)
        if proxy and not proxy.alive():
            print(f"rwsplit exited during the run (status {proxy.proc.returncode}); log tail:\n"
                  f"{proxy.tail()}", file=sys.stderr)
        summary["idle"], summary["storm"], summary["storm_direct"] = idle, storm, reference
        summary["targets"] = targets(idle, storm)
        path = write_report(os.path.abspath(args.out), summary)
        for name, verdict, detail in summary["targets"]:
            print(f"{verdict} {name}: {detail}")
        print(f"report: {path} (and connections-latest.md, connections-latest.json)")
        failed = any(v == "FAIL" for _, v, _ in summary["targets"])
        if proxy and not proxy.alive():
            failed = True
    finally:
        if proxy:
            proxy.stop()
            log_copy = os.path.join(os.path.abspath(args.out), "logs", "connections-rwsplit.log")
            os.makedirs(os.path.dirname(log_copy), exist_ok=True)
            shutil.copyfile(proxy.log, log_copy)
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
