//! The monitor against real replication faults: lag injected three ways
//! shows up in `/backends` and moves reads away; weights split reads;
//! all replicas lagging sends reads to the primary and back; a killed
//! replica is marked down and rejoins. These tests change the lab, so
//! they run one at a time and undo their change when they end.

mod common;

use common::*;
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const INTERVAL_MS: u64 = 100;

fn monitored(extra: &str) -> rwsplit::Config {
    lab_config(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n[monitor]\nuser = \"monitor\"\npassword = \"monitor\"\ninterval = \"{INTERVAL_MS}ms\"\nfail_after = 2\nrecover_after = 1\n{extra}"
    ))
}

/// Server ids that answered `n` reads from fresh sessions.
async fn read_servers(proxy: &TestProxy, n: usize) -> Vec<String> {
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.scalar("SELECT @@server_id").await.unwrap_or_default());
    }
    out
}

/// Writes a row every 50 ms until dropped, so that lag can build.
fn keep_writing(table: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut a = admin(PRIMARY).await;
        a.exec(&format!("CREATE TABLE IF NOT EXISTS app.{table} (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(3))"))
            .await;
        loop {
            a.exec(&format!("INSERT INTO app.{table} (at) VALUES (NOW(3))")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn replica2(json: &serde_json::Value) -> &serde_json::Value {
    &json[2]
}

/// Stops both replicas' SQL threads once the monitor has seen them
/// eligible (every replica starts unknown, and unknown lag takes no
/// reads: so "not eligible" is then the stop's doing), and waits until it
/// sees neither eligible.
async fn stop_both_replicas(admin_addr: std::net::SocketAddr) {
    both_replicas_eligible(admin_addr).await;
    lab(&["lag", "replica1", "stop"]);
    lab(&["lag", "replica2", "stop"]);
    wait_backends(admin_addr, Duration::from_secs(5), |j| {
        j[1]["eligible"] == false && j[2]["eligible"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sql_thread_is_seen_within_two_intervals_and_avoided() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let proxy = start_proxy(monitored("")).await;
    let admin_addr = proxy.admin.unwrap();
    wait_backends(admin_addr, Duration::from_secs(10), |j| replica2(j)["eligible"] == true).await;
    lab(&["lag", "replica2", "stop"]);
    let stopped = Instant::now();
    let json =
        wait_backends(admin_addr, Duration::from_secs(5), |j| replica2(j)["eligible"] == false)
            .await;
    let seen_after = stopped.elapsed();
    println!("SQL thread stop seen after {seen_after:?}");
    assert!(
        seen_after <= Duration::from_millis(2 * INTERVAL_MS + 500),
        "seen after {seen_after:?}"
    );
    assert_eq!(replica2(&json)["sql_thread_running"], false);
    assert!(
        read_servers(&proxy, 30).await.iter().all(|s| s == "2"),
        "reads avoid the stopped replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_delay_lag_grows_in_milliseconds_and_moves_reads_away() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let proxy = start_proxy(monitored("")).await;
    let admin_addr = proxy.admin.unwrap();
    both_replicas_eligible(admin_addr).await;
    let writer = keep_writing(unique("lagw"));
    lab(&["lag", "replica2", "5"]);
    let json = wait_backends(admin_addr, Duration::from_secs(10), |j| {
        replica2(j)["lag_ms"].as_u64().is_some_and(|l| l >= 1000)
            && replica2(j)["eligible"] == false
    })
    .await;
    println!("replica2 under MASTER_DELAY: {}", replica2(&json));
    assert!(read_servers(&proxy, 30).await.iter().all(|s| s == "2"));
    lab(&["lag", "replica2", "start"]);
    wait_backends(admin_addr, Duration::from_secs(15), |j| replica2(j)["eligible"] == true).await;
    writer.abort();
    assert!(read_servers(&proxy, 30).await.iter().any(|s| s == "3"), "back in rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_lock_on_a_replica_shows_as_lag() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let proxy = start_proxy(monitored("")).await;
    let admin_addr = proxy.admin.unwrap();
    both_replicas_eligible(admin_addr).await;
    let writer = keep_writing(unique("lockw"));
    let mut holder = admin(REPLICA2).await;
    holder.exec("FLUSH TABLES WITH READ LOCK").await;
    let json =
        wait_backends(admin_addr, Duration::from_secs(10), |j| replica2(j)["eligible"] == false)
            .await;
    println!("replica2 with a held lock: {}", replica2(&json));
    assert!(read_servers(&proxy, 30).await.iter().all(|s| s == "2"));
    holder.exec("UNLOCK TABLES").await;
    wait_backends(admin_addr, Duration::from_secs(15), |j| replica2(j)["eligible"] == true).await;
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_one_to_three_split_ten_thousand_reads() {
    let _serial = SERIAL.lock().await;
    let mut config = monitored("");
    config.backends[1].weight = 1;
    config.backends[2].weight = 3;
    let proxy = start_proxy(config).await;
    let admin_addr = proxy.admin.unwrap();
    both_replicas_eligible(admin_addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let addr = proxy.addr.to_string();
        tasks.spawn(async move {
            let mut c = Raw::app(&addr, true).await;
            let mut counts = (0u32, 0u32, 0u32);
            for _ in 0..1000 {
                match c.scalar("SELECT @@server_id").await.as_deref() {
                    Some("2") => counts.0 += 1,
                    Some("3") => counts.1 += 1,
                    _ => counts.2 += 1,
                }
            }
            counts
        });
    }
    let (mut r1, mut r2, mut other) = (0, 0, 0);
    while let Some(c) = tasks.join_next().await {
        let c = c.unwrap();
        r1 += c.0;
        r2 += c.1;
        other += c.2;
    }
    println!("weights 1:3 over 10,000 reads: replica1 {r1}, replica2 {r2}, primary {other}");
    assert_eq!(other, 0);
    let share = r1 as f64 / 10_000.0;
    assert!((share - 0.25).abs() <= 0.25 * 0.05, "replica1 share {share}");
}

/// Reads of `sessions` concurrent sessions, `reads` each: per session,
/// how many ran on replica1, on replica2 (none may run elsewhere), and
/// how many ran on another replica than the session's read before.
async fn per_session_reads(proxy: &TestProxy, sessions: usize, reads: usize) -> Vec<[usize; 3]> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        let addr = proxy.addr.to_string();
        tasks.spawn(async move {
            let mut c = Raw::app(&addr, true).await;
            let mut counts = [0; 3];
            let mut last = None;
            for _ in 0..reads {
                let server = c.scalar("SELECT @@server_id").await;
                match server.as_deref() {
                    Some("2") => counts[0] += 1,
                    Some("3") => counts[1] += 1,
                    other => panic!("a read ran on server {other:?}"),
                }
                if last.is_some() && last != server {
                    counts[2] += 1;
                }
                last = server;
            }
            counts
        });
    }
    let mut all = Vec::new();
    while let Some(c) = tasks.join_next().await {
        all.push(c.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_their_replica_while_the_split_stays_even() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(monitored("[routing]\nreplica_affinity = true\n")).await;
    both_replicas_eligible(proxy.admin.unwrap()).await;
    let sessions = per_session_reads(&proxy, 8, 250).await;
    let sum = |i: usize| sessions.iter().map(|s| s[i]).sum::<usize>();
    let (r1, r2, moved) = (sum(0), sum(1), sum(2));
    println!("8 sessions x 250 reads: replica1 {r1}, replica2 {r2}, moved {moved}; {sessions:?}");
    assert!(r1.abs_diff(r2) <= 100, "the replicas' counts differ by more than 5%");
    assert!(moved <= 100, "more than 5% of the reads moved to another replica");

    // Without affinity (the default), one session's reads alternate.
    let proxy = start_proxy(monitored("")).await;
    both_replicas_eligible(proxy.admin.unwrap()).await;
    let [a, b, moved] = per_session_reads(&proxy, 1, 100).await[0];
    assert!(
        a >= 40 && b >= 40 && moved >= 80,
        "replica_affinity = false spreads each read: {a} / {b}"
    );
}

/// While one session's read is in flight on a replica: that replica's
/// server id, and the server ids another session's next 20 reads ran on.
async fn reads_beside_a_long_read(proxy: &TestProxy) -> (String, Vec<String>) {
    let mut sleeper = Raw::app(&proxy.addr.to_string(), true).await;
    sleeper.send_only(&[b"\x03".as_slice(), b"SELECT SLEEP(5)"].concat()).await;
    let in_flight = |name| proxy.shared.picker.in_flight(name);
    let deadline = Instant::now() + Duration::from_secs(5);
    while in_flight("replica1") + in_flight("replica2") == 0 {
        assert!(Instant::now() < deadline, "the long read never counted as in flight");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The lab's replica1 is server 2, replica2 server 3.
    let busy = if in_flight("replica1") == 1 { "2" } else { "3" }.to_string();
    let servers = read_servers(proxy, 20).await;
    assert_eq!(
        in_flight("replica1") + in_flight("replica2"),
        1,
        "the long read ended before the other session's reads did"
    );
    (busy, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_band_sets_how_long_reads_avoid_a_busy_replica() {
    let _serial = SERIAL.lock().await;
    // A band of 64 reads: every read goes to the idle replica.
    let proxy = start_proxy(monitored("[routing]\nload_band = 64\n")).await;
    both_replicas_eligible(proxy.admin.unwrap()).await;
    let (busy, servers) = reads_beside_a_long_read(&proxy).await;
    assert!(servers.iter().all(|s| *s != busy), "load_band = 64, server {busy} busy: {servers:?}");

    // The default band (4 reads): after a few reads in a row the round
    // robin sends reads to the busy replica too.
    let proxy = start_proxy(monitored("")).await;
    both_replicas_eligible(proxy.admin.unwrap()).await;
    let (busy, servers) = reads_beside_a_long_read(&proxy).await;
    assert!(servers.contains(&busy), "the default band, server {busy} busy: {servers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_replicas_lagging_read_from_the_primary_then_return() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let proxy = start_proxy(monitored("")).await;
    let admin_addr = proxy.admin.unwrap();
    stop_both_replicas(admin_addr).await;
    assert!(
        read_servers(&proxy, 20).await.iter().all(|s| s == "1"),
        "reads fall back to the primary without errors"
    );
    lab(&["lag", "replica1", "start"]);
    lab(&["lag", "replica2", "start"]);
    both_replicas_eligible(admin_addr).await;
    assert!(
        read_servers(&proxy, 20).await.iter().all(|s| s == "2" || s == "3"),
        "reads return to replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_fallback_refuses_reads_when_no_replica_is_eligible() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let proxy = start_proxy(monitored("[routing]\nfallback = \"error\"\n")).await;
    let admin_addr = proxy.admin.unwrap();
    stop_both_replicas(admin_addr).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let r = c.query("SELECT 1").await;
    let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
    assert!(
        String::from_utf8_lossy(err.message).contains("no replica"),
        "{:?}",
        String::from_utf8_lossy(err.message)
    );
    // Writes still work.
    assert_eq!(c.scalar("SELECT /* rwsplit:primary */ @@server_id").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_marked_down_and_rejoins_after_restart() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let proxy = start_proxy(monitored("")).await;
    let admin_addr = proxy.admin.unwrap();
    wait_backends(admin_addr, Duration::from_secs(10), |j| replica2(j)["eligible"] == true).await;
    let pid = lab_pid("replica2");
    // A session with connections open to both replicas before the kill.
    let mut long_lived = Raw::app(&proxy.addr.to_string(), true).await;
    for _ in 0..4 {
        long_lived.scalar("SELECT @@server_id").await;
    }
    signal(pid, "-KILL");
    for i in 0..10 {
        let got = long_lived.scalar("SELECT @@server_id").await;
        assert!(
            matches!(got.as_deref(), Some("1") | Some("2")),
            "read {i} after the kill: {got:?}"
        );
    }
    // Reads keep working while the monitor notices.
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let servers = read_servers(&proxy, 5).await;
        errors += servers.iter().filter(|s| s.is_empty()).count();
        let json = wait_backends(admin_addr, Duration::from_secs(1), |_| true).await;
        if replica2(&json)["healthy"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "replica2 never marked down");
    }
    assert_eq!(errors, 0, "no client errors while the replica was down");
    assert!(read_servers(&proxy, 20).await.iter().all(|s| s == "2"));
    lab(&["up"]);
    wait_backends(admin_addr, Duration::from_secs(20), |j| replica2(j)["eligible"] == true).await;
    // Back in rotation once the monitor sees it (and the short back-off
    // after the refused connections has passed).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_servers(&proxy, 10).await.iter().any(|s| s == "3") {
        assert!(Instant::now() < deadline, "replica2 never came back into rotation");
    }
}

/// A read of a table the replicas do not have yet (created on the primary
/// while their SQL threads are stopped, by another client: the session
/// has nothing to wait for) is answered by the primary: the replica's
/// "doesn't exist" (ERROR 1146) never reaches the client, and the session
/// reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_not_yet_replicated_is_read_on_the_primary() {
    let _serial = SERIAL.lock().await;
    let _restore = RestoreLab;
    let table = unique("not_replicated");
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    lab(&["lag", "replica1", "stop"]);
    lab(&["lag", "replica2", "stop"]);
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE TABLE app.{table} (n INT)")).await;
    a.exec(&format!("INSERT INTO app.{table} VALUES (7)")).await;
    for _ in 0..4 {
        let answer = c.scalar(&format!("SELECT CONCAT_WS(' ', n, @@server_id) FROM {table}")).await;
        assert_eq!(answer, Some("7 1".to_string()));
    }
    assert!(c.scalar("SELECT @@server_id").await.is_some_and(|s| s != "1"));
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// `RESET MASTER` on the primary restarts its GTIDs below what the
/// replicas have applied: by their positions they hold every new write
/// at once (a wait for one returns at once there too), while replication
/// sends them nothing until the primary's numbers catch up. The monitor
/// finds their positions past the primary's, excludes them as a
/// replication error, and reads go to the primary: a write is read back.
/// Before, the read went to a replica, which did not have the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_past_a_reset_primarys_position_take_no_reads() {
    let _serial = SERIAL.lock().await;
    let _rebuilt = LabRebuilt;
    let table = lab_table("after_reset", "n INT").await;
    let proxy = start_proxy(monitored("")).await;
    let admin_addr = proxy.admin.unwrap();
    both_replicas_eligible(admin_addr).await;
    let mut a = admin(PRIMARY).await;
    a.exec("RESET MASTER").await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
    let json = wait_backends(admin_addr, Duration::from_secs(5), |j| {
        j[1]["eligible"] == false && j[2]["eligible"] == false
    })
    .await;
    for replica in [&json[1], &json[2]] {
        assert_eq!(replica["excluded_because"], "replication_error", "{json}");
        let error = replica["replication_error"].as_str().unwrap_or_default();
        assert!(error.contains("past the primary's"), "{json}");
    }
    for n in 2..6 {
        c.exec(&format!("INSERT INTO {table} VALUES ({n})")).await;
        let answer =
            c.scalar(&format!("SELECT CONCAT_WS(' ', COUNT(*), @@server_id) FROM {table}")).await;
        assert_eq!(answer, Some(format!("{n} 1")), "read back after the reset");
    }
}
