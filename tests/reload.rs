//! Hot reload: the config file changes while clients keep working; an
//! invalid file is refused and the running config stays; SIGHUP reloads
//! the binary's config.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn config_text(replica2: bool, replica1_weight: u32) -> String {
    let mut t = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[[users]]
name = "app"
password = "app"
[monitor]
user = "monitor"
password = "monitor"
interval = "100ms"
[[backends]]
name = "primary"
address = "{PRIMARY}"
role = "primary"
[[backends]]
name = "replica1"
address = "{REPLICA1}"
role = "replica"
weight = {replica1_weight}
"#
    );
    if replica2 {
        t.push_str(&format!(
            "[[backends]]\nname = \"replica2\"\naddress = \"{REPLICA2}\"\nrole = \"replica\"\n"
        ));
    }
    t
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("rwsplit.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn post_reload(admin: std::net::SocketAddr) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_adds_a_backend_and_changes_weights() {
    let dir = std::env::temp_dir().join(unique("reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = write_config(&dir, &config_text(false, 1));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let admin = proxy.admin.unwrap();
    wait_backends(admin, Duration::from_secs(10), |j| j[1]["eligible"] == true).await;

    // Clients read and write the whole time.
    let table = unique("reload");
    let mut a = admin_conn().await;
    a.exec(&format!("CREATE TABLE app.{table} (id INT AUTO_INCREMENT PRIMARY KEY)")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, on_replica2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (stop, errors, on_replica2, addr, table) = (
            stop.clone(),
            errors.clone(),
            on_replica2.clone(),
            proxy.addr.to_string(),
            table.clone(),
        );
        tasks.spawn(async move {
            let mut c = Raw::app(&addr, true).await;
            c.exec("SET @rwsplit_consistency = 'eventual'").await;
            while !stop.load(Ordering::Relaxed) {
                for sql in
                    [format!("INSERT INTO {table} VALUES (NULL)"), "SELECT @@server_id".to_string()]
                {
                    let r = c.query(&sql).await;
                    if r[0].1[0] == 0xFF {
                        errors.fetch_add(1, Ordering::Relaxed);
                    } else if r.len() > 2 && r[r.len() - 2].1 == b"\x013" {
                        on_replica2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    // Add replica2 and drain replica1 (weight 0).
    write_config(&dir, &config_text(true, 0));
    assert_eq!(post_reload(admin).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_replica2.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "reads never reached the added replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.expect("client loop");
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no client error during the reload");
    let json = wait_backends(admin, Duration::from_secs(5), |j| {
        j.as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    assert_eq!(json[1]["weight"], 0);
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

async fn admin_conn() -> Raw {
    admin(PRIMARY).await
}

#[tokio::test]
async fn invalid_file_is_refused_and_the_running_config_stays() {
    let dir = std::env::temp_dir().join(unique("reload-bad"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = write_config(&dir, &config_text(true, 1));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let admin = proxy.admin.unwrap();
    write_config(
        &dir,
        &config_text(true, 1).replace("role = \"replica\"\nweight", "role = \"primary\"\nweight"),
    );
    let (status, body) = post_reload(admin).await;
    assert_eq!(status, 400);
    assert!(body.contains("rwsplit.toml") && body.contains("exactly one backend"), "{body}");
    write_config(&dir, "this is not toml");
    assert_eq!(post_reload(admin).await.0, 400);
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(proxy.shared.config.load().backends.len(), 3);
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    let (port, admin_port) = (free_port(), free_port());
    // Without watching, only the signal can reload the file.
    let text = |replica2| {
        config_text(replica2, 1).replacen("127.0.0.1:0", &format!("127.0.0.1:{port}"), 1).replacen(
            "127.0.0.1:0",
            &format!("127.0.0.1:{admin_port}"),
            1,
        ) + "[reload]\nwatch = \"0s\"\n"
    };
    let path = temp_config("reload-hup", &text(false));
    let dir = path.parent().unwrap().to_path_buf();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut child = spawn_binary(&path, &admin.to_string()).await;
    write_config(&dir, &text(true));
    std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    wait_backends(admin, Duration::from_secs(10), |j| j.as_array().is_some_and(|a| a.len() == 3))
        .await;
    let _ = child.kill();
    let _ = child.wait();
}

/// The binary's `rwsplit_config_reloads_total` for `result`.
async fn reloads(admin: std::net::SocketAddr, result: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics", None).await;
    let series = format!("rwsplit_config_reloads_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// Waits (bounded) until `rwsplit_config_reloads_total{result}` is `n`.
async fn wait_reloads(admin: std::net::SocketAddr, result: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(admin, result).await != n {
        assert!(Instant::now() < deadline, "{result} reloads never reached {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether app can log in with `password`, waiting (bounded) until
/// the answer is `wanted`.
async fn wait_login(addr: &str, password: &str, wanted: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let caps = client_caps(true);
        let ok = Raw::connect(addr, &login("app", password, Some("app"), caps)).await.is_ok();
        if ok == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "login with {password:?} never became {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal() {
    let (port, admin_port) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{port}");
    let text = |weight| {
        config_text(true, weight)
            .replacen("127.0.0.1:0", &addr, 1)
            .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin_port}"), 1)
            .replacen("password = \"app\"", "password_file = \"app.pw\"", 1)
            + "[reload]\nwatch = \"200ms\"\n"
    };
    let dir = std::env::temp_dir().join(unique("reload-watch"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.pw"), "app\n").unwrap();
    let path = write_config(&dir, &text(1));
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut child = spawn_binary(&path, &admin.to_string()).await;
    wait_login(&addr, "app", true).await;

    // The file is edited: the new weight is in force within a few looks.
    let started = Instant::now();
    write_config(&dir, &text(3));
    wait_backends(admin, Duration::from_secs(10), |j| j[1]["weight"] == 3).await;
    let took = started.elapsed();
    assert_eq!(reloads(admin, "applied").await, 1);

    let status = wait_admin(admin, "/config", Duration::from_secs(1), |_| true).await;
    assert_eq!(status["file"], path.display().to_string());
    assert_eq!(status["watch_s"], 0.2);
    assert_eq!(status["last_reload"]["result"], "applied");

    // An invalid edit is refused once; the running config stays, and the
    // admin port says why.
    write_config(&dir, "[[listeners]]\naddress = ");
    wait_reloads(admin, "refused", 1).await;
    wait_backends(admin, Duration::from_secs(1), |j| j[1]["weight"] == 3).await;
    let status = wait_admin(admin, "/config", Duration::from_secs(1), |_| true).await;
    assert_eq!(status["last_reload"]["result"], "refused");
    let why = status["last_reload"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("TOML parse error at line 2"), "{status}");
    assert!(status["in_force_s"].as_f64() >= status["last_reload"]["s_ago"].as_f64(), "{status}");
    let mut client = Raw::app(&addr, true).await;
    assert_eq!(client.scalar("SELECT 1").await.as_deref(), Some("1"));
    // Not tried again while it stays: the refusal grows older than three
    // looks (a refusal at every look would keep it younger than one).
    wait_admin(admin, "/config", Duration::from_secs(10), |j| {
        j["last_reload"]["s_ago"].as_f64().is_some_and(|s| s >= 0.6)
    })
    .await;
    assert_eq!(reloads(admin, "refused").await, 1);

    // Mended: reloaded again.
    write_config(&dir, &text(5));
    wait_backends(admin, Duration::from_secs(10), |j| j[1]["weight"] == 5).await;
    assert_eq!(reloads(admin, "applied").await, 2);
    assert_eq!(reloads(admin, "refused").await, 1);

    // A file the config names changes: the user's new password is in force.
    std::fs::write(dir.join("app.pw"), "changed\n").unwrap();
    wait_login(&addr, "app", false).await;
    std::fs::write(dir.join("app.pw"), "app\n").unwrap();
    wait_login(&addr, "app", true).await;
    // The session that logged in before goes on.
    assert_eq!(client.scalar("SELECT 2").await.as_deref(), Some("2"));
    eprintln!("an edit was in force after {took:?} (watch = 200ms)");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_reload_beyond_the_backend_positions_sized_at_start_is_refused() {
    let dir = std::env::temp_dir().join(unique("reload-room"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = write_config(&dir, &config_text(true, 1));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let mut text = config_text(true, 1);
    for i in 0..70 {
        text.push_str(&format!(
            "[[backends]]\nname = \"extra{i}\"\naddress = \"127.0.0.1:{}\"\nrole = \"replica\"\nweight = 0\n",
            free_port()
        ));
    }
    write_config(&dir, &text);
    let err = proxy.shared.reload().expect_err("73 positions do not fit in 64");
    assert!(err.contains("restart"), "{err}");
    assert_eq!(proxy.shared.config.load().backends.len(), 3, "the running config stays");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reload that changes the consistency mode reaches sessions already
/// open, as it does their other settings (before, a session kept the mode
/// it logged in with: a pooled application connection never saw it).
#[tokio::test]
async fn a_reloaded_consistency_mode_reaches_open_sessions() {
    let table = unique("reload_mode");
    let mut a = admin_conn().await;
    a.exec(&format!("CREATE TABLE app.{table} (id INT)")).await;
    let dir = std::env::temp_dir().join(unique("reload-mode"));
    std::fs::create_dir_all(&dir).unwrap();
    let text = |mode: &str| {
        config_text(true, 1) + &format!("[consistency]\nmode = \"{mode}\"\npin_for = \"session\"\n")
    };
    let path = write_config(&dir, &text("eventual"));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    all_healthy(&proxy).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let on_primary = |id: Option<String>| id.as_deref() == Some("1");
    c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
    assert!(!on_primary(c.scalar("SELECT @@server_id").await), "eventual: reads stay on replicas");

    write_config(&dir, &text("pin"));
    proxy.shared.reload().expect("reload");
    c.exec(&format!("INSERT INTO {table} VALUES (2)")).await;
    assert!(on_primary(c.scalar("SELECT @@server_id").await), "pin: the read after the write");
    a.exec(&format!("DROP TABLE app.{table}")).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A password rotated on the servers and then in the config by a reload:
/// a session that logged in before opens its next backend connection with
/// the new one (before, with the old one, and the server refused it: under
/// multiplexing, any statement of an old session could fail so).
#[tokio::test]
async fn a_session_opens_new_backend_connections_with_a_rotated_password() {
    let user = unique("rot");
    let mut a = admin_conn().await;
    a.exec(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'one'")).await;
    a.exec(&format!("GRANT ALL ON app.* TO '{user}'@'%'")).await;
    let dir = std::env::temp_dir().join(unique("reload-rotate"));
    std::fs::create_dir_all(&dir).unwrap();
    let text = |password: &str| {
        config_text(true, 1) + &format!("[[users]]\nname = \"{user}\"\npassword = \"{password}\"\n")
    };
    let path = write_config(&dir, &text("one"));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let caps = client_caps(true);
    let mut c = Raw::connect(&proxy.addr.to_string(), &login(&user, "one", Some("app"), caps))
        .await
        .expect("login with the first password");
    assert_eq!(c.scalar("SELECT 1").await.as_deref(), Some("1"));

    a.exec(&format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'two'")).await;
    write_config(&dir, &text("two"));
    proxy.shared.reload().expect("reload");
    // The servers end the session's connections (wait_timeout, a restart):
    // it opens new ones.
    kill_user_connections(&user, &[PRIMARY, REPLICA1, REPLICA2]).await;
    let r = c.query("CREATE TEMPORARY TABLE rotated (id INT)").await;
    assert_eq!(r[0].1[0], 0x00, "{}", String::from_utf8_lossy(&r[0].1));
    assert_eq!(c.scalar("SELECT COUNT(*) FROM rotated").await.as_deref(), Some("0"));
    a.exec(&format!("DROP USER '{user}'@'%'")).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
