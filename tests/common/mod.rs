//! Shared by the integration tests: the lab's addresses, an in-process
//! proxy on port 0, and a raw MySQL client (the proxy's own backend
//! connector) that returns responses as packets for byte comparison.
#![allow(dead_code)]

use mysql_common::constants::CapabilityFlags;
use rwsplit::backend::{BackendConn, Login, PASSTHROUGH_CAPS};
use rwsplit::protocol::auth::BackendSecret;
use rwsplit::protocol::packet::parse_header;
use rwsplit::relay::{Expect, Machine, Step};
use rwsplit::{Config, Proxy};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

pub const PRIMARY: &str = "127.0.0.1:3306";
pub const REPLICA1: &str = "127.0.0.1:3307";
pub const REPLICA2: &str = "127.0.0.1:3308";

/// Fails the test with a clear message when the lab is not up.
pub fn require_lab() {
    if std::net::TcpStream::connect_timeout(&PRIMARY.parse().unwrap(), Duration::from_secs(1))
        .is_err()
    {
        panic!("the MariaDB lab is not running on {PRIMARY}: start it with integration/lab.sh up");
    }
}

/// The lab config with a listener on port 0; `extra` is appended TOML.
pub fn lab_config(extra: &str) -> Config {
    let text = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[[users]]
name = "app"
password = "app"
[[users]]
name = "admin"
password = "admin"
[[backends]]
name = "primary"
address = "{PRIMARY}"
role = "primary"
[[backends]]
name = "replica1"
address = "{REPLICA1}"
role = "replica"
[[backends]]
name = "replica2"
address = "{REPLICA2}"
role = "replica"
{extra}
"#
    );
    let config = Config::parse(&text).expect("test config parses");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

/// A proxy running in this process until dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub shared: std::sync::Arc<rwsplit::Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start_proxy(config: Config) -> TestProxy {
    require_lab();
    let proxy = Proxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addrs()[0];
    let admin = proxy.admin_addr();
    let shared = proxy.shared.clone();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(proxy.run(async {
        let _ = rx.await;
    }));
    TestProxy { addr, admin, shared, stop: Some(tx) }
}

/// Capabilities of a typical modern client (libmysqlclient's set).
pub fn client_caps(deprecate_eof: bool) -> CapabilityFlags {
    let mut caps = CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK;
    if deprecate_eof {
        caps |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
    }
    caps & PASSTHROUGH_CAPS
}

pub fn login(user: &str, password: &str, db: Option<&str>, caps: CapabilityFlags) -> Login {
    Login {
        user: user.as_bytes().to_vec(),
        secret: BackendSecret::Plain(password.to_string()),
        database: db.map(|d| d.as_bytes().to_vec()),
        collation: 45,
        capabilities: caps,
        mariadb_caps: rwsplit::backend::PASSTHROUGH_MARIADB_CAPS,
        attributes: None,
        max_packet: 1 << 30,
        track_gtids: false,
    }
}

/// A raw protocol client: sends command payloads, returns every response
/// packet (sequence id and payload) unparsed.
pub struct Raw {
    pub conn: BackendConn,
    /// What to send when the server asks for a LOCAL INFILE.
    pub local_file: Vec<u8>,
}

pub type Packets = Vec<(u8, Vec<u8>)>;

impl Raw {
    pub async fn connect(addr: &str, login: &Login) -> Result<Raw, rwsplit::backend::BackendError> {
        Ok(Raw {
            conn: BackendConn::connect(addr, login, Duration::from_secs(5)).await?,
            local_file: Vec::new(),
        })
    }

    pub async fn app(addr: &str, deprecate_eof: bool) -> Raw {
        Raw::connect(addr, &login("app", "app", Some("app"), client_caps(deprecate_eof)))
            .await
            .expect("login as app")
    }

    /// Sends one command and reads its whole response.
    pub async fn command(&mut self, payload: &[u8], expect: Expect) -> Packets {
        self.conn.write_payload(0, payload).await.expect("send command");
        // COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: rows come by fetch.
        let cursor = payload.first() == Some(&0x17) && payload.get(5).is_some_and(|f| f & 1 != 0);
        self.read_response_with(expect, true, cursor).await.0
    }

    /// Sends COM_STMT_PREPARE and reads the whole prepare response.
    pub async fn prepare(&mut self, payload: &[u8]) -> Packets {
        self.conn.write_payload(0, payload).await.expect("send prepare");
        let mut first = Vec::new();
        let (_, seq) = self
            .conn
            .reader
            .read_packet(&mut self.conn.stream, &mut first, 1 << 24)
            .await
            .expect("prepare response");
        let mut out = vec![(seq, first.clone())];
        if first[0] == 0 {
            let cols = u16::from_le_bytes([first[5], first[6]]);
            let params = u16::from_le_bytes([first[7], first[8]]);
            let left = Machine::prepare_packets(params, cols, self.conn.caps);
            if left > 0 {
                out.extend(self.read_response(Expect::Prepare { left }).await);
            }
        }
        out
    }

    /// Sends a command that has no response.
    pub async fn send_only(&mut self, payload: &[u8]) {
        self.conn.write_payload(0, payload).await.expect("send command");
    }

    /// Sends `sql` as a query without reading its reply.
    pub async fn send_query(&mut self, sql: &str) {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.send_only(&payload).await;
    }

    pub async fn read_response(&mut self, expect: Expect) -> Packets {
        self.read_response_with(expect, true, false).await.0
    }

    /// Runs a query and only counts its response: (packets, payload bytes),
    /// so a huge result needs no memory in the test.
    pub async fn query_counted(&mut self, sql: &str) -> (usize, usize) {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        self.conn.write_payload(0, &p).await.expect("send command");
        let (_, count, bytes) = self.read_response_with(Expect::Result, false, false).await;
        (count, bytes)
    }

    /// Reads a response: the packets (when `keep`), their count and bytes.
    /// `cursor`: the command asked for a cursor.
    async fn read_response_with(
        &mut self,
        expect: Expect,
        keep: bool,
        cursor: bool,
    ) -> (Packets, usize, usize) {
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut machine = Machine::new(expect, self.conn.caps).opening_cursor(cursor);
        let mut out = Vec::new();
        loop {
            // A response that never comes fails the test instead of hanging it.
            let limit = Duration::from_secs(60);
            tokio::time::timeout(limit, self.conn.reader.fill_to(&mut self.conn.stream, 4))
                .await
                .expect("response within 60 s")
                .expect("read header");
            let h = parse_header(self.conn.reader.buffered()).unwrap();
            tokio::time::timeout(limit, self.conn.reader.fill_to(&mut self.conn.stream, 4 + h.len))
                .await
                .expect("response within 60 s")
                .expect("read payload");
            let payload = &self.conn.reader.buffered()[4..4 + h.len];
            let step = machine.step(h.len, payload).expect("valid response");
            count += 1;
            bytes += h.len;
            if keep {
                out.push((h.seq, payload.to_vec()));
            }
            self.conn.reader.consume(4 + h.len);
            self.conn.reader.shrink_if_idle();
            match step {
                Step::Done => return (out, count, bytes),
                Step::Continue => {}
                Step::LocalInfile => {
                    // The file in 1000-byte packets, then the empty packet.
                    let mut seq = h.seq.wrapping_add(1);
                    for chunk in self.local_file.clone().chunks(1000) {
                        self.conn.write_payload(seq, chunk).await.unwrap();
                        seq = seq.wrapping_add(1);
                    }
                    self.conn.write_payload(seq, b"").await.unwrap();
                }
            }
        }
    }

    pub async fn query(&mut self, sql: &str) -> Packets {
        self.query_bytes(sql.as_bytes()).await
    }

    /// COM_QUERY with a text in any character set.
    pub async fn query_bytes(&mut self, sql: &[u8]) -> Packets {
        let mut p = vec![0x03];
        p.extend_from_slice(sql);
        self.command(&p, Expect::Result).await
    }

    /// Runs a statement that must succeed.
    pub async fn exec(&mut self, sql: &str) {
        let r = self.query(sql).await;
        if let Some(e) = rwsplit::protocol::messages::parse_err(&r.last().unwrap().1) {
            panic!("{sql}: error {} {}", e.code, String::from_utf8_lossy(e.message));
        }
    }

    /// First column of the first row of a text result, as a string
    /// (None for NULL).
    pub async fn scalar(&mut self, sql: &str) -> Option<String> {
        self.scalar_bytes(sql.as_bytes()).await
    }

    /// [`Raw::scalar`] of a text in any character set.
    pub async fn scalar_bytes(&mut self, sql: &[u8]) -> Option<String> {
        let r = self.query_bytes(sql).await;
        let sql = String::from_utf8_lossy(sql);
        if let Some(e) = rwsplit::protocol::messages::parse_err(&r.last().unwrap().1) {
            panic!("{sql}: error {} {}", e.code, String::from_utf8_lossy(e.message));
        }
        let cols = r[0].1[0] as usize;
        let eof = usize::from(!self.conn.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
        let row = &r[1 + cols + eof].1;
        let end_of_rows = row[0] == 0xFE && row.len() < 0xFF_FFFF;
        assert!(!end_of_rows, "{sql}: the result has no row");
        if row[0] == 0xFB {
            return None;
        }
        let mut c = rwsplit::protocol::packet::Cursor::new(row);
        Some(String::from_utf8_lossy(c.lenenc_bytes().unwrap()).into_owned())
    }

    pub async fn raw_write(&mut self, bytes: &[u8]) {
        self.conn.stream.write_all(bytes).await.unwrap();
    }
}

/// Reads until the proxy closes the connection; returns what it sent.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    within: Duration,
) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(s, &mut buf)).await {
            Err(_) => panic!("the proxy did not close the connection within {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// An admin connection straight to one lab server.
pub async fn admin(addr: &str) -> Raw {
    Raw::connect(addr, &login("admin", "admin", None, client_caps(true)))
        .await
        .expect("admin login")
}

/// Runs `statements` on the primary (as admin) and waits until the
/// replicas have applied them.
pub async fn on_primary_replicated(statements: &[&str]) {
    let mut primary = admin(PRIMARY).await;
    for sql in statements {
        primary.exec(sql).await;
    }
    wait_replicas_caught_up().await;
}

/// Creates table `app.<unique name from prefix>` with `columns` on the
/// primary and waits until the replicas have it; returns its name.
pub async fn lab_table(prefix: &str, columns: &str) -> String {
    let table = unique(prefix);
    on_primary_replicated(&[&format!("CREATE TABLE app.{table} ({columns})")]).await;
    table
}

/// Ends every connection of user app on the servers at `addrs` (as KILL,
/// wait_timeout or a restart would) and waits (bounded) until they are gone.
pub async fn kill_app_connections(addrs: &[&str]) {
    kill_user_connections("app", addrs).await;
}

/// As [`kill_app_connections`], for the connections of `user`.
pub async fn kill_user_connections(user: &str, addrs: &[&str]) {
    let of_user = format!("FROM information_schema.PROCESSLIST WHERE USER = '{user}'");
    for addr in addrs {
        let mut a = admin(addr).await;
        let ids = a.scalar(&format!("SELECT GROUP_CONCAT(ID) {of_user}")).await.unwrap_or_default();
        for id in ids.split(',').filter(|id| !id.is_empty()) {
            let _ = a.query(&format!("KILL {id}")).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while a.scalar(&format!("SELECT COUNT(*) {of_user}")).await.as_deref() != Some("0") {
            assert!(std::time::Instant::now() < deadline, "killed connections linger on {addr}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits until both replicas have applied everything the primary has
/// (bounded), so reads routed to them see the setup a test just wrote.
pub async fn wait_replicas_caught_up() {
    let mut p = admin(PRIMARY).await;
    let pos = p.scalar("SELECT @@gtid_binlog_pos").await.unwrap_or_default();
    for replica in [REPLICA1, REPLICA2] {
        let mut r = admin(replica).await;
        let got = r.scalar(&format!("SELECT MASTER_GTID_WAIT('{pos}', 10)")).await;
        assert_eq!(got.as_deref(), Some("0"), "{replica} did not reach {pos}");
    }
}

/// How many statements whose text contains `needle` run now, over the
/// three lab servers.
pub async fn running_anywhere(needle: &str) -> usize {
    let mut n = 0;
    for addr in [PRIMARY, REPLICA1, REPLICA2] {
        let mut a = admin(addr).await;
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{needle}%' AND INFO NOT LIKE '%PROCESSLIST%'"
        );
        n += a.scalar(&sql).await.and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    }
    n
}

/// The lab's monitor and admin settings, as TOML to append to `lab_config`.
pub const MONITORED: &str = r#"
[admin]
address = "127.0.0.1:0"
[monitor]
user = "monitor"
password = "monitor"
interval = "100ms"
"#;

/// [`MONITORED`] with the monitor logging in as `user`.
pub fn monitored_as(user: &str, password: &str) -> String {
    MONITORED
        .replace("user = \"monitor\"", &format!("user = \"{user}\""))
        .replace("password = \"monitor\"", &format!("password = \"{password}\""))
}

/// Waits (bounded) until the monitor sees all three lab servers healthy
/// and every replica with a weight taking reads; returns `/backends` then.
/// Healthy alone is not enough: a replica seen before the monitor's
/// first read of the primary is healthy but `behind_start` until its next
/// probe.
pub async fn all_healthy(proxy: &TestProxy) -> serde_json::Value {
    let admin = proxy.admin.expect("admin port");
    wait_backends(admin, Duration::from_secs(10), |j| {
        (0..3).all(|i| {
            let b = &j[i];
            b["healthy"] == true
                && b["avoided"] == false
                && (b["role"] == "primary"
                    || b["eligible"] == true
                    || b["excluded_because"] == "zero_weight")
        })
    })
    .await
}

/// GET `path` on an HTTP port: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin port");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Waits until the monitor sees both replicas eligible (every backend
/// starts unknown, hence ineligible).
pub async fn both_replicas_eligible(admin: SocketAddr) {
    wait_backends(admin, Duration::from_secs(10), |j| {
        j[1]["eligible"] == true && j[2]["eligible"] == true
    })
    .await;
}

/// Polls `/backends` until `condition` holds (bounded); returns the JSON.
pub async fn wait_backends(
    admin: SocketAddr,
    within: Duration,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_admin(admin, "/backends", within, condition).await
}

/// Polls the admin port's JSON endpoint `path` until `condition` holds
/// (bounded by `within`); returns the JSON that met it.
pub async fn wait_admin(
    admin: SocketAddr,
    path: &str,
    within: Duration,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = http_get(admin, path, None).await;
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        if status == 200 && condition(&json) {
            return json;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{path} never met the condition within {within:?}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `integration/lab.sh` with `args` (lag injection, restarts); fails
/// the test if it fails.
pub fn lab(args: &[&str]) {
    let status =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/integration/lab.sh"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run integration/lab.sh");
    assert!(status.success(), "integration/lab.sh {args:?} failed");
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768 and up): a port the kernel
    // handed out could be taken again as the source port of any outgoing
    // connection before the proxy listens on it. Each call takes the next
    // port of a sequence that starts at a place of its own per process.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}

/// Writes `text` as `rwsplit.toml` in a fresh temporary folder.
pub fn temp_config(prefix: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rwsplit.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The rwsplit binary a test started, killed when dropped: also when the
/// test fails, since a binary left running keeps the test run's output
/// open and the run waits for it.
pub struct Binary(std::process::Child);

impl std::ops::Deref for Binary {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Binary {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the rwsplit binary with `config` and waits (bounded) until
/// `ready` (one of its ports) accepts connections.
pub async fn spawn_binary(config: &std::path::Path, ready: &str) -> Binary {
    require_lab();
    let child = Binary(
        std::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start rwsplit"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(ready).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "rwsplit did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// A unique suffix for table names of one test run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The pid of a lab server: `node` is "primary", "replica1" or "replica2".
pub fn lab_pid(node: &str) -> i32 {
    let n = match node {
        "primary" => 1,
        "replica1" => 2,
        "replica2" => 3,
        other => panic!("no lab node {other}"),
    };
    let dir = std::env::var("RWSPLIT_LAB_DIR").unwrap_or_else(|_| "/tmp/rwsplit-lab".into());
    let pidfile = format!("{dir}/node{n}/mariadbd.pid");
    let text = std::fs::read_to_string(&pidfile).unwrap_or_else(|e| panic!("{pidfile}: {e}"));
    text.trim().parse().unwrap_or_else(|e| panic!("{pidfile}: {e}"))
}

/// Sends a signal (`-KILL`, `-STOP`, `-CONT`) to a process.
pub fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Undoes lab changes when dropped, however the test ends: dead nodes
/// started again, replication running on both replicas with no delay.
pub struct RestoreLab;

impl Drop for RestoreLab {
    fn drop(&mut self) {
        lab(&["up"]);
        lab(&["lag", "replica1", "start"]);
        lab(&["lag", "replica2", "start"]);
    }
}

/// Rebuilds the lab from scratch (its replication was changed).
pub struct LabRebuilt;

impl Drop for LabRebuilt {
    fn drop(&mut self) {
        // No assertion here: a panic while the test is failing would abort
        // the whole test binary; a lab left broken fails the next tests.
        for args in [["destroy"], ["up"]] {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/lab.sh");
            let _ = std::process::Command::new(script)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
