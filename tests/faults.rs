//! Faults the proxy bounds: statements past `max_query_time` are killed on
//! their backend and reported; a backend paused mid-statement (SIGSTOP,
//! as in a network partition) does not hang the session.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// The tests here pause lab servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The first error a query gets, as (code, message).
async fn query_error(c: &mut Raw, sql: &str) -> Option<(u16, String)> {
    let r = c.query(sql).await;
    let e = rwsplit::protocol::messages::parse_err(&r.last()?.1)?;
    Some((e.code, String::from_utf8_lossy(e.message).into_owned()))
}

/// Waits (bounded) until no server runs a statement containing `needle`.
async fn wait_not_running(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_anywhere(needle).await > 0 {
        assert!(Instant::now() < deadline, "{needle} still runs on a server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn max_query_time_kills_the_statement_and_the_session_goes_on() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(lab_config("[timeouts]\nmax_query_time = \"400ms\"\n")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let started = Instant::now();
    let tag = unique("mqt");
    let (code, message) = query_error(&mut c, &format!("SELECT SLEEP(20) AS {tag}"))
        .await
        .expect("the slow statement fails");
    let took = started.elapsed();
    assert_eq!(code, 1969, "{message}");
    assert!(message.contains("max_query_time"), "{message}");
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(5), "{took:?}");
    wait_not_running(&tag).await;
    // The session, and its backend connection, still work.
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
    // A statement within the limit is untouched.
    assert_eq!(c.scalar("SELECT SLEEP(0.1)").await.as_deref(), Some("0"));
}

#[tokio::test]
async fn max_query_time_per_user_overrides_the_global_one() {
    let _serial = SERIAL.lock().await;
    let mut config = lab_config("");
    config.users[1].max_query_time = Some(Duration::from_millis(300));
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();
    let mut admin_user = Raw::connect(&addr, &login("admin", "admin", None, client_caps(false)))
        .await
        .expect("admin logs in");
    let (code, _) = query_error(&mut admin_user, "SELECT SLEEP(10)").await.expect("killed");
    assert_eq!(code, 1969);
    let mut app = Raw::app(&addr, false).await;
    assert_eq!(app.scalar("SELECT SLEEP(0.6)").await.as_deref(), Some("0"), "app has no limit");
}

/// Pauses a lab server until dropped.
struct Paused(i32);

impl Paused {
    fn replica1() -> Paused {
        let pidfile = format!(
            "{}/node2/mariadbd.pid",
            std::env::var("RWSPLIT_LAB_DIR").unwrap_or_else(|_| "/tmp/rwsplit-lab".into())
        );
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        signal(pid, "-STOP");
        Paused(pid)
    }
}

fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

#[tokio::test]
async fn a_paused_replica_does_not_hang_the_session() {
    let _serial = SERIAL.lock().await;
    // Reads go to replica1 only, which is paused during the read.
    let config = lab_config(
        "[timeouts]\nmax_query_time = \"500ms\"\nconnect = \"500ms\"\n[consistency]\nmode = \"eventual\"\n",
    );
    let mut config = config;
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("2"));
    let started = Instant::now();
    let outcome = {
        let _paused = Paused::replica1();
        query_error(&mut c, "SELECT @@server_id, SLEEP(0.1)").await
    };
    let took = started.elapsed();
    let (code, message) = outcome.expect("the read fails instead of hanging");
    assert_eq!(code, 1969, "{message}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // The session goes on; the replica answers again once resumed.
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
}
