//! Listener and operations options: a unix-socket listener, the PROXY
//! protocol, per-user connection limits, listeners changed by a reload,
//! and the session and slow-statement log lines of the binary.

mod common;

use common::*;
use rwsplit::backend::BackendError;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn expect_server_error(result: Result<Raw, BackendError>) -> (u16, String) {
    match result {
        Err(BackendError::Server { code, message, .. }) => (code, message),
        Err(e) => panic!("expected a server error, got {e}"),
        Ok(_) => panic!("expected a server error, the login succeeded"),
    }
}

/// Runs the mariadb command-line client with `args`; (exit ok, stdout, stderr).
async fn mariadb_cli(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("mariadb")
        .arg("--no-defaults")
        .args(args)
        .output()
        .await
        .expect("run the mariadb client");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[tokio::test]
async fn unix_socket_listener_serves_local_clients() {
    let dir = std::env::temp_dir().join(unique("rwsplit_sock"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("rwsplit.sock");
    let extra = format!("[[listeners]]\nsocket = \"{}\"\n", socket.display());
    let proxy = start_proxy(lab_config(&extra)).await;
    let path = socket.to_str().unwrap();
    let base = ["--protocol=socket", "--socket", path, "-N", "-B"];

    let mut args = base.to_vec();
    args.extend(["-uapp", "-papp", "app", "-e", "SELECT 6 * 7; SELECT @@read_only"]);
    let (ok, out, err) = mariadb_cli(&args).await;
    assert!(ok, "mariadb over the unix socket failed: {err}");
    assert_eq!(out.lines().next(), Some("42"), "{out}");

    // Refused logins name the client as MySQL does for local sockets.
    let mut args = base.to_vec();
    args.extend(["-uapp", "-pwrong", "-e", "SELECT 1"]);
    let (ok, _, err) = mariadb_cli(&args).await;
    assert!(!ok);
    assert!(err.contains("Access denied for user 'app'@'localhost'"), "{err}");

    drop(proxy);
    // The socket file goes with the proxy.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while socket.exists() {
        assert!(std::time::Instant::now() < deadline, "socket file left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in load balancer: accepts on a port of its own, and for each
/// connection sends `header` to `upstream` and then relays both ways.
async fn balancer(upstream: std::net::SocketAddr, header: Vec<u8>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let header = header.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                server.write_all(&header).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

fn proxy_v2_ipv4(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&3306u16.to_be_bytes());
    h
}

#[tokio::test]
async fn proxy_protocol_keeps_the_client_address() {
    let mut config = lab_config("[timeouts]\nclient_handshake = \"1s\"\n");
    config.listeners[0].proxy_protocol = true;
    let proxy = start_proxy(config).await;

    for (header, client_ip) in [
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 6450\r\n".to_vec(), "192.0.2.7"),
        (proxy_v2_ipv4([198, 51, 100, 23], 40001), "198.51.100.23"),
    ] {
        let front = balancer(proxy.addr, header).await.to_string();
        let mut app = Raw::app(&front, true).await;
        assert_eq!(app.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
        let wrong = login("app", "wrong", None, client_caps(true));
        let (code, message) = expect_server_error(Raw::connect(&front, &wrong).await);
        assert_eq!(code, 1045);
        assert!(message.contains(&format!("'app'@'{client_ip}'")), "{message}");
    }

    // A client that reaches the listener without a header is refused,
    // both one that talks first and one that waits for the greeting.
    let mut direct = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    direct.write_all(b"\x01\0\0\0\x01").await.unwrap();
    let mut reply = Vec::new();
    direct.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply.get(4), Some(&0xFF), "{reply:?}");
    assert!(String::from_utf8_lossy(&reply).contains("PROXY protocol header"), "{reply:?}");
    let app = login("app", "app", None, client_caps(true));
    let (code, message) = expect_server_error(Raw::connect(&proxy.addr.to_string(), &app).await);
    assert_eq!(code, 1105);
    assert!(message.contains("PROXY protocol header"), "{message}");
}

#[tokio::test]
async fn per_user_connection_limit() {
    let mut config = lab_config("");
    config.users[0].max_connections = Some(2);
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();
    let first = Raw::app(&addr, true).await;
    let mut second = Raw::app(&addr, false).await;
    let (code, message) = expect_server_error(
        Raw::connect(&addr, &login("app", "app", None, client_caps(true))).await,
    );
    assert_eq!(code, 1203);
    assert!(message.contains("max_user_connections"), "{message}");
    // Other users are not limited by app's sessions.
    let mut admin_user = Raw::connect(&addr, &login("admin", "admin", None, client_caps(true)))
        .await
        .expect("admin logs in");
    assert_eq!(admin_user.scalar("SELECT 1").await.as_deref(), Some("1"));
    // A session that ends gives its place back.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match Raw::connect(&addr, &login("app", "app", None, client_caps(true))).await {
            Ok(raw) => break raw,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no place freed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(third.scalar("SELECT 2").await.as_deref(), Some("2"));
    assert_eq!(second.scalar("SELECT 3").await.as_deref(), Some("3"));
    assert_eq!(proxy.shared.user_sessions.count(b"app"), 2);
}

fn listeners_config(ports: &[u16], admin: u16) -> String {
    let mut text = String::new();
    for p in ports {
        text.push_str(&format!("[[listeners]]\naddress = \"127.0.0.1:{p}\"\n"));
    }
    text.push_str(&format!(
        r#"[admin]
address = "127.0.0.1:{admin}"
[[users]]
name = "app"
password = "app"
[[backends]]
name = "primary"
address = "{PRIMARY}"
role = "primary"
[[backends]]
name = "replica1"
address = "{REPLICA1}"
role = "replica"
"#
    ));
    text
}

#[tokio::test]
async fn reload_opens_and_closes_listeners() {
    let (a, b, admin) = (free_port(), free_port(), free_port());
    let path = temp_config("rwsplit_listeners", &listeners_config(&[a], admin));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let addr_a = format!("127.0.0.1:{a}");
    let addr_b = format!("127.0.0.1:{b}");
    let mut on_a = Raw::app(&addr_a, true).await;

    std::fs::write(&path, listeners_config(&[b], admin)).unwrap();
    proxy.shared.reload().expect("reload");
    // The new listener takes clients; the old one takes no new ones, and
    // the session it accepted goes on.
    let mut on_b = Raw::app(&addr_b, true).await;
    assert_eq!(on_b.scalar("SELECT 1").await.as_deref(), Some("1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&addr_a).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "{addr_a} still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(on_a.scalar("SELECT 2").await.as_deref(), Some("2"));

    // A listener that cannot be opened refuses the whole reload.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    std::fs::write(&path, listeners_config(&[b, taken_port], admin)).unwrap();
    let err = proxy.shared.reload().expect_err("a taken port refuses the reload");
    assert!(err.contains(&format!("127.0.0.1:{taken_port}")), "{err}");
    assert_eq!(Raw::app(&addr_b, true).await.scalar("SELECT 3").await.as_deref(), Some("3"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// Starts the binary with `[log]` settings and RUST_LOG unset, capturing
/// its log (stderr).
async fn spawn_logging(config: &std::path::Path, ready: &str) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start rwsplit");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(ready).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "rwsplit did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

#[tokio::test]
async fn json_log_has_session_lines_and_slow_statements() {
    require_lab();
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "{}[log]\nformat = \"json\"\nlevel = \"info\"\nslow_statement = \"150ms\"\n",
        listeners_config(&[port], admin)
    );
    let path = temp_config("rwsplit_log", &text);
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_logging(&path, &addr).await;
    let mut app = Raw::app(&addr, true).await;
    app.scalar("SELECT 1").await;
    // A long statement: its log line shows the first 1024 bytes.
    let columns: Vec<String> = (0..400).map(|i| format!("{i} AS column_{i}")).collect();
    app.scalar(&format!("SELECT SLEEP(0.3), {}", columns.join(", "))).await;
    app.conn.write_payload(0, &[0x01]).await.unwrap(); // COM_QUIT
    drop(app);

    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr);
    let mut events: Vec<serde_json::Value> = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap() == 0 {
                return;
            }
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let ended = event["fields"]["message"] == "session ended";
            events.push(event);
            if ended {
                return;
            }
        }
    })
    .await;
    child.kill().await.unwrap();
    assert!(found.is_ok(), "no session-ended line: {events:?}");
    let message = |m: &str| events.iter().find(|e| e["fields"]["message"] == m).cloned();
    let started = message("session started").expect("a session-started line");
    assert_eq!(started["fields"]["user"], "app");
    let slow = message("slow statement").expect("a slow-statement line");
    assert_eq!(slow["level"], "WARN");
    let statement = slow["fields"]["statement"].as_str().unwrap().to_ascii_uppercase();
    assert!(statement.contains("SLEEP"), "{slow}");
    assert!(statement.len() <= 1024 + 3 && statement.ends_with("..."), "{slow}");
    // The whole statement is timed: SLEEP(0.3), less the few milliseconds
    // by which the server's own clock may end it early (CI saw 299).
    assert!(slow["fields"]["elapsed_ms"].as_u64().unwrap() >= 280, "{slow}");
    let ended = message("session ended").unwrap();
    assert_eq!(ended["fields"]["statements"], 2, "{ended}");
    assert_eq!(ended["fields"]["slow"], 1, "{ended}");
    assert_eq!(ended["fields"]["errors"], 0, "{ended}");
    assert_eq!(
        ended["fields"]["on_primary"].as_u64().unwrap()
            + ended["fields"]["on_replicas"].as_u64().unwrap(),
        2
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn reload_adds_and_removes_users() {
    let (port, admin) = (free_port(), free_port());
    let with_admin_user = |yes: bool| {
        let text = listeners_config(&[port], admin);
        if yes {
            format!("{text}[[users]]\nname = \"admin\"\npassword = \"admin\"\n")
        } else {
            text
        }
    };
    let path = temp_config("rwsplit_users", &with_admin_user(false));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let addr = proxy.addr.to_string();
    let admin_login = login("admin", "admin", None, client_caps(true));
    let (code, _) = expect_server_error(Raw::connect(&addr, &admin_login).await);
    assert_eq!(code, 1045, "admin is not a user yet");

    std::fs::write(&path, with_admin_user(true)).unwrap();
    proxy.shared.reload().expect("reload");
    let mut admin_session = Raw::connect(&addr, &admin_login).await.expect("a new user logs in");
    assert_eq!(admin_session.scalar("SELECT 1").await.as_deref(), Some("1"));

    std::fs::write(&path, with_admin_user(false)).unwrap();
    proxy.shared.reload().expect("reload");
    let (code, _) = expect_server_error(Raw::connect(&addr, &admin_login).await);
    assert_eq!(code, 1045, "a removed user opens no new session");
    // The session it already had is not cut.
    assert_eq!(admin_session.scalar("SELECT 2").await.as_deref(), Some("2"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn repeated_failed_logins_from_one_address_are_slowed_down() {
    let mut config =
        lab_config("[limits]\nfailed_login_delay = \"300ms\"\nfailed_login_delay_max = \"2s\"\n");
    config.listeners[0].proxy_protocol = true;
    let proxy = start_proxy(config).await;
    let guesser = balancer(proxy.addr, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 6450\r\n".to_vec())
        .await
        .to_string();
    let other = balancer(proxy.addr, b"PROXY TCP4 198.51.100.1 127.0.0.1 40000 6450\r\n".to_vec())
        .await
        .to_string();
    let wrong = login("app", "wrong", None, client_caps(true));
    let timed_failure = |addr: String| {
        let wrong = wrong.clone();
        async move {
            let started = std::time::Instant::now();
            let (code, _) = expect_server_error(Raw::connect(&addr, &wrong).await);
            assert_eq!(code, 1045);
            started.elapsed()
        }
    };
    timed_failure(guesser.clone()).await;
    assert!(timed_failure(guesser.clone()).await >= Duration::from_millis(300));
    assert!(timed_failure(guesser.clone()).await >= Duration::from_millis(600));

    // The guesser's next check waits 1.2 s; another address logs in and
    // works meanwhile.
    let slow = tokio::spawn(timed_failure(guesser.clone()));
    let mut app = Raw::app(&other, true).await;
    assert_eq!(app.scalar("SELECT 1").await.as_deref(), Some("1"));
    assert!(!slow.is_finished(), "the other address was not held up behind the guesser");
    assert!(slow.await.unwrap() >= Duration::from_millis(1200));

    // The right password is not answered sooner than a wrong one; once in,
    // the address is forgiven.
    let started = std::time::Instant::now();
    Raw::app(&guesser, true).await;
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    let started = std::time::Instant::now();
    Raw::app(&guesser, true).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn loopback_clients_are_not_slowed_down_by_default() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let started = std::time::Instant::now();
    for _ in 0..4 {
        let (code, _) = expect_server_error(
            Raw::connect(&addr, &login("app", "x", None, client_caps(true))).await,
        );
        assert_eq!(code, 1045);
    }
    // With the default 200 ms doubling delay these would take 1.4 s.
    assert!(started.elapsed() < Duration::from_millis(1200), "{:?}", started.elapsed());
}

#[tokio::test]
async fn backend_max_connections_caps_what_sessions_hold() {
    // The primary takes two session connections; replica1 one, and
    // replica2 no reads, so a read that finds replica1 full goes to the
    // primary.
    let mut config =
        lab_config("[timeouts]\nconnect = \"500ms\"\n[consistency]\nmode = \"eventual\"\n");
    config.backends[0].max_connections = Some(2);
    config.backends[1].max_connections = Some(1);
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();

    let mut a = Raw::app(&addr, true).await;
    let mut b = Raw::app(&addr, true).await;
    assert_eq!(a.scalar("SELECT @@server_id").await.as_deref(), Some("2"), "a reads on replica1");
    assert_eq!(
        b.scalar("SELECT @@server_id").await.as_deref(),
        Some("1"),
        "replica1 is full: b's read goes to the primary, without an error"
    );
    assert_eq!(proxy.shared.backend_connections(1), 1);

    // a and b hold the primary's two places; c's write waits, then fails.
    a.exec("BEGIN").await;
    a.scalar("SELECT @@server_id FOR UPDATE").await;
    assert_eq!(proxy.shared.backend_connections(0), 2);
    let mut c = Raw::app(&addr, true).await;
    let started = std::time::Instant::now();
    let r = c.query("SELECT @@server_id FOR UPDATE").await;
    let e = rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).expect("an error");
    assert_eq!(e.code, 1040, "{}", String::from_utf8_lossy(e.message));
    assert!(String::from_utf8_lossy(e.message).contains("max_connections"));
    assert!(started.elapsed() >= Duration::from_millis(500));

    // A place freed while c waits is taken.
    let waiting = tokio::spawn(async move {
        let got = c.scalar("SELECT @@server_id FOR UPDATE").await;
        (c, got)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.exec("COMMIT").await;
    drop(a);
    let (_c, got) = waiting.await.unwrap();
    assert_eq!(got.as_deref(), Some("1"));
    assert!(proxy.shared.backend_connections(0) <= 2);
}

#[tokio::test]
async fn a_session_holds_at_most_max_prepared_statements() {
    let mut config = lab_config("");
    config.limits.max_prepared_statements = 3;
    let proxy = start_proxy(config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = c.prepare(format!("\x16SELECT {i} + ?").as_bytes()).await;
        assert_eq!(r[0].1[0], 0x00, "statement {i} is prepared");
        ids.push(r[0].1[1..5].to_vec());
    }
    let r = c.prepare(b"\x16SELECT 4 + ?").await;
    let e = rwsplit::protocol::messages::parse_err(&r[0].1).expect("the fourth is refused");
    assert_eq!(e.code, 1461, "{}", String::from_utf8_lossy(e.message));
    // Closing one makes room; the session is otherwise unaffected.
    c.send_only(&[&[0x19u8][..], &ids[0]].concat()).await;
    let r = c.prepare(b"\x16SELECT 5 + ?").await;
    assert_eq!(r[0].1[0], 0x00, "room again after COM_STMT_CLOSE");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
}

/// The backend thread a session's primary statements run on.
async fn primary_thread(c: &mut Raw) -> String {
    c.exec("BEGIN").await;
    // (On its own, SELECT CONNECTION_ID() is the proxy's session id.)
    let id = c.scalar("SELECT CONNECTION_ID() FROM DUAL").await.unwrap();
    c.exec("COMMIT").await;
    id
}

/// A proxy keeping connections for later sessions, all statements on the
/// primary (so each session has one connection to look at).
async fn primary_only_with_reuse() -> TestProxy {
    let mut config = lab_config("[pool]\nreuse = true\n[admin]\naddress = \"127.0.0.1:0\"\n");
    config.backends[1].weight = 0;
    config.backends[2].weight = 0;
    start_proxy(config).await
}

#[tokio::test]
async fn kept_connections_serve_the_next_session_with_nothing_left_of_the_last() {
    let proxy = primary_only_with_reuse().await;
    let addr = proxy.addr.to_string();

    let mut a = Raw::app(&addr, true).await;
    let thread = primary_thread(&mut a).await;
    a.exec("SET @leak = 42").await;
    a.exec("SET SESSION sql_mode = 'ANSI_QUOTES'").await;
    a.exec("CREATE TEMPORARY TABLE leak_tmp (x INT)").await;
    a.exec("BEGIN").await;
    a.exec("SELECT GET_LOCK('rwsplit_leak', 0)").await;
    a.conn.write_payload(0, &[0x01]).await.unwrap(); // COM_QUIT
    drop(a);

    // The next session of the same user gets that connection, reset.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut b = loop {
        let mut b = Raw::app(&addr, true).await;
        if primary_thread(&mut b).await == thread {
            break b;
        }
        assert!(std::time::Instant::now() < deadline, "the connection was not kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(b.scalar("SELECT @leak").await, None, "user variable leaked");
    let mode = b.scalar("SELECT @@session.sql_mode").await.unwrap_or_default();
    assert!(!mode.contains("ANSI_QUOTES"), "session variable leaked: {mode}");
    let r = b.query("SELECT COUNT(*) FROM leak_tmp").await;
    assert!(
        rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).is_some(),
        "temp table leaked"
    );
    assert_eq!(
        b.scalar("SELECT IS_FREE_LOCK('rwsplit_leak')").await.as_deref(),
        Some("1"),
        "lock leaked"
    );
    assert_eq!(b.scalar("SELECT DATABASE()").await.as_deref(), Some("app"));
    let (_, metrics) = http_get(proxy.admin.expect("admin port"), "/metrics", None).await;
    let reused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rwsplit_pool_reused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(reused >= 1.0, "reuse not counted: {metrics}");

    // A session in another database gets it too, and sees its own
    // database; so does a session with none.
    b.exec("USE information_schema").await;
    b.conn.write_payload(0, &[0x01]).await.unwrap();
    drop(b);
    wait_sessions_ended(&proxy).await;
    let mut c = Raw::app(&addr, true).await;
    assert_eq!(primary_thread(&mut c).await, thread, "the kept connection is handed on");
    assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some("app"));
    c.exec("USE information_schema").await;
    c.conn.write_payload(0, &[0x01]).await.unwrap();
    drop(c);
    wait_sessions_ended(&proxy).await;
    let no_database = login("app", "app", None, client_caps(true));
    let mut d = Raw::connect(&addr, &no_database).await.unwrap();
    let d_thread = primary_thread(&mut d).await;
    assert_eq!(d.scalar("SELECT DATABASE()").await, None, "database leaked (thread {d_thread})");
}

/// Waits (bounded) until the proxy has no session left.
async fn wait_sessions_ended(proxy: &TestProxy) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy.shared.registry.is_empty() {
        assert!(std::time::Instant::now() < deadline, "a session did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn without_reuse_every_session_has_its_own_connection() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut a = Raw::app(&addr, true).await;
    let first = primary_thread(&mut a).await;
    a.conn.write_payload(0, &[0x01]).await.unwrap();
    drop(a);
    wait_sessions_ended(&proxy).await;
    let mut b = Raw::app(&addr, true).await;
    assert_ne!(primary_thread(&mut b).await, first);
}

#[tokio::test]
async fn a_session_that_ends_mid_result_does_not_hand_on_its_connection() {
    let proxy = primary_only_with_reuse().await;
    let addr = proxy.addr.to_string();
    for _ in 0..3 {
        // The client goes away while a large result streams to it.
        let mut a = Raw::app(&addr, true).await;
        let a_thread = primary_thread(&mut a).await;
        a.conn
            .write_payload(0, b"\x03SELECT seq, REPEAT('x', 2000) FROM seq_1_to_200000")
            .await
            .unwrap();
        let mut first = Vec::new();
        a.conn.reader.read_packet(&mut a.conn.stream, &mut first, 1 << 24).await.unwrap();
        drop(a);
        wait_sessions_ended(&proxy).await;
        let mut b = Raw::app(&addr, true).await;
        assert_ne!(primary_thread(&mut b).await, a_thread, "a busy connection was handed on");
        // Later sessions get working connections.
        assert_eq!(b.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
        assert_eq!(b.scalar("SELECT COUNT(*) FROM seq_1_to_10").await.as_deref(), Some("10"));
    }
}

#[tokio::test]
async fn out_of_file_descriptors_clients_get_error_1040_and_the_proxy_recovers() {
    require_lab();
    let (port, admin) = (free_port(), free_port());
    let text =
        format!("{}[log]\nformat = \"json\"\nlevel = \"warn\"\n", listeners_config(&[port], admin));
    let path = temp_config("rwsplit_nofile", &text);
    let addr = format!("127.0.0.1:{port}");
    // 64 descriptors, hard limit too: the proxy cannot raise it.
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_rwsplit"))
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start rwsplit");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "rwsplit did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = || login("app", "app", None, client_caps(true));
    let mut held = Vec::new();
    let refused = loop {
        match Raw::connect(&addr, &app()).await {
            Ok(raw) => held.push(raw),
            Err(e) => break e.to_string(),
        }
        assert!(held.len() < 100, "100 clients in under a 64-descriptor limit");
    };
    println!("{} clients held, then: {refused}", held.len());
    assert!(refused.contains("1040") && refused.contains("file descriptors"), "{refused}");
    // Clients that leave make room: the next one logs in and is served
    // (a backend connection takes a descriptor too).
    held.truncate(held.len().saturating_sub(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut next = loop {
        match Raw::connect(&addr, &app()).await {
            Ok(raw) => break raw,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no room freed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(next.scalar("SELECT 7").await.as_deref(), Some("7"));
    assert_eq!(held[0].scalar("SELECT 8").await.as_deref(), Some("8"));
    drop((held, next));

    child.kill().await.unwrap();
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut log)
        .await
        .unwrap();
    assert!(log.contains("open-file limit is low"), "{log}");
    assert!(log.contains("out of file descriptors"), "{log}");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// `timeouts.client_idle`: a client idle between commands longer than
/// that is disconnected (as a server does past `wait_timeout`), not
/// sooner; a statement running longer than it is not cut, and its client
/// goes on while it keeps sending commands.
#[tokio::test]
async fn clients_idle_past_client_idle_are_disconnected() {
    let limit = Duration::from_millis(400);
    let proxy = start_proxy(lab_config("[timeouts]\nclient_idle = \"400ms\"\n")).await;
    let addr = proxy.addr.to_string();
    let mut busy = Raw::app(&addr, true).await;
    let keeps_busy = tokio::spawn(async move {
        // Longer than the limit, but running: not idle.
        assert_eq!(busy.scalar("SELECT SLEEP(0.8)").await.as_deref(), Some("0"));
        for _ in 0..8 {
            assert_eq!(busy.scalar("SELECT 1").await.as_deref(), Some("1"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut idle = Raw::app(&addr, true).await;
    assert_eq!(idle.scalar("SELECT 1").await.as_deref(), Some("1"));
    let last_command = std::time::Instant::now();
    // The idle one is closed: its socket reads the end, after the limit.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.conn.stream.read(&mut byte)).await;
    let closed_after = last_command.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the idle client is still connected: {read:?}");
    assert!(closed_after >= limit, "closed {closed_after:?} after its last command");
    keeps_busy.await.unwrap();
    // A new client is served as usual.
    assert_eq!(Raw::app(&addr, true).await.scalar("SELECT 2").await.as_deref(), Some("2"));
}
