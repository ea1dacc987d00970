"""TLS to clients and caching_sha2_password: runs its own rwsplit binary
with a TLS-only listener and an optional-TLS listener, and checks what a
client sees: TLS negotiated, plain clients refused where TLS is required,
and a user configured only by its SHA-256 hash logging in through the full
caching_sha2 exchange (which needs TLS), and `SHOW STATUS LIKE 'Ssl_cipher'`
answered for the client's own connection (the proxy's connections to the
servers use TLS here whatever the client does)."""

import os
import socket
import subprocess
import tempfile
import time

import pymysql
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("RWSPLIT_BIN", os.path.join(ROOT, "target", "debug", "rwsplit"))
CA = os.path.join(ROOT, "conf", "tls", "ca.pem")
SHA2_USER, SHA2_PASS = "sha2user", "sha2pass"
# SHA256(SHA256('sha2pass')): the proxy never learns the password from its config.
SHA2_HASH = "sha2:" + __import__("hashlib").sha256(
    __import__("hashlib").sha256(SHA2_PASS.encode()).digest()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def proxy():
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="admin", password="admin")
    with admin.cursor() as c:
        c.execute(f"CREATE USER IF NOT EXISTS '{SHA2_USER}'@'%' IDENTIFIED BY '{SHA2_PASS}'")
        c.execute(f"GRANT SELECT ON app.* TO '{SHA2_USER}'@'%'")
    admin.close()
    tls_port, plain_port = free_port(), free_port()
    tmp = tempfile.mkdtemp()
    conf = os.path.join(tmp, "rwsplit.toml")
    with open(conf, "w") as f:
        f.write(f"""
[[listeners]]
address = "127.0.0.1:{tls_port}"
tls_cert = "{ROOT}/conf/tls/server.pem"
tls_key = "{ROOT}/conf/tls/server.key"
require_tls = true
[[listeners]]
address = "127.0.0.1:{plain_port}"
tls_cert = "{ROOT}/conf/tls/server.pem"
tls_key = "{ROOT}/conf/tls/server.key"
[[users]]
name = "app"
password = "app"
[[users]]
name = "{SHA2_USER}"
password_hash = "{SHA2_HASH}"
[[backends]]
name = "primary"
address = "127.0.0.1:3306"
role = "primary"
[backend_tls]
enabled = true
ca = "{CA}"
""")
    proc = subprocess.Popen([BINARY, "--config", conf])
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
            break
        except OSError:
            assert time.time() < deadline, "proxy did not start"
            time.sleep(0.05)
    yield {"tls": tls_port, "plain": plain_port}
    proc.terminate()
    proc.wait(timeout=10)


def connect(port, user="app", password="app", tls=True):
    kwargs = ({"ssl_ca": CA, "ssl_verify_cert": True, "ssl_verify_identity": True} if tls
              else {"ssl_disabled": True})
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=password,
                           database="app", **kwargs)


def test_tls_is_negotiated_and_certificate_verifies(proxy):
    conn = connect(proxy["tls"])
    assert conn._sock.version().startswith("TLS")
    with conn.cursor() as c:
        c.execute("SELECT 'over tls'")
        assert c.fetchone() == ("over tls",)
    conn.close()


def test_plain_client_refused_where_tls_is_required(proxy):
    with pytest.raises(pymysql.err.OperationalError) as e:
        connect(proxy["tls"], tls=False)
    assert e.value.args[0] == 3159


def test_plain_client_allowed_where_tls_is_optional(proxy):
    conn = connect(proxy["plain"], tls=False)
    with conn.cursor() as c:
        c.execute("SELECT 1")
        assert c.fetchone() == (1,)
    conn.close()


def test_hash_only_user_logs_in_with_full_caching_sha2_over_tls(proxy):
    conn = connect(proxy["tls"], user=SHA2_USER, password=SHA2_PASS)
    with conn.cursor() as c:
        c.execute("SELECT CURRENT_USER()")
        assert c.fetchone() == (f"{SHA2_USER}@%",)
    conn.close()


def test_hash_only_user_with_wrong_password_is_refused(proxy):
    with pytest.raises(pymysql.err.OperationalError) as e:
        connect(proxy["tls"], user=SHA2_USER, password="nope")
    assert e.value.args[0] == 1045


def test_hash_only_user_without_tls_is_refused(proxy):
    with pytest.raises(Exception):
        connect(proxy["plain"], user=SHA2_USER, password=SHA2_PASS, tls=False)


def status(conn, name):
    with conn.cursor() as c:
        c.execute(f"SHOW STATUS LIKE '{name}'")
        rows = c.fetchall()
        return rows, c.description


def test_ssl_status_is_the_clients_own_connections(proxy):
    """The documented check of whether a connection is encrypted reads the
    client's connection to the proxy: its cipher and version as the client
    negotiated them, in a result shaped as the server's; nothing for a
    plain client, although the proxy's connection to the server is
    encrypted (the server would answer for that one)."""
    direct = pymysql.connect(host="127.0.0.1", port=3306, user="app", password="app",
                             ssl={"check_hostname": False, "verify_mode": 0})
    tls = connect(proxy["tls"])
    plain = connect(proxy["plain"], tls=False)
    cipher = tls._sock.cipher()[0]
    assert status(tls, "Ssl_cipher")[0] == (("Ssl_cipher", cipher),)
    assert status(tls, "Ssl_version")[0] == (("Ssl_version", tls._sock.version()),)
    # A pattern naming it alone (as aiomysql's test setup checks its TLS).
    assert status(tls, "Ssl_version%")[0] == (("Ssl_version", tls._sock.version()),)
    assert status(plain, "Ssl_cipher")[0] == (("Ssl_cipher", ""),)
    assert status(plain, "Ssl_version")[0] == (("Ssl_version", ""),)
    for name in ["Ssl_cipher", "ssl_version"]:
        assert status(tls, name)[1] == status(direct, name)[1], name
    # Other patterns are the server's.
    rows, _ = status(tls, "Ssl_cipher_list")
    assert rows[0][0] == "Ssl_cipher_list"
    for conn in (direct, tls, plain):
        conn.close()
