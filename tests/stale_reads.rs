//! The stale-read checker: many concurrent sessions each write a fresh
//! value and immediately read it back through the proxy while one replica
//! lags by seconds. `pin`, `gtid` and `gtid_global` must never return a
//! stale value; `eventual` must (proof that the checker sees stale reads).
//! Also writes and reads on two connections of one client (gtid), and a
//! cross-session check across two proxy instances for gtid_global, and
//! reads of another client's writes (monotonic only in gtid_global).
//!
//! These tests change the lab's replication (MASTER_DELAY on replica2), so
//! they run one at a time; the lag is removed when each ends, even on
//! failure. Sizes: RWSPLIT_STALE_PAIRS (default 10,000 per mode).
//! Runnable as a tool: `cargo test --test stale_reads -- --nocapture`.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WORKERS: u64 = 25;

fn pairs() -> u64 {
    std::env::var("RWSPLIT_STALE_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// Makes replica2 lag by `seconds` until dropped.
struct Lag;

impl Lag {
    fn start(seconds: u32) -> Lag {
        lab(&["lag", "replica2", &seconds.to_string()]);
        Lag
    }
}

impl Drop for Lag {
    fn drop(&mut self) {
        lab(&["lag", "replica2", "start"]);
    }
}

/// The lab with a fast monitor, and a lag limit so high that the lagging
/// replica keeps taking reads: only the consistency mode protects them.
fn checker_config(mode: &str) -> rwsplit::Config {
    lab_config(&format!(
        r#"
[monitor]
user = "monitor"
password = "monitor"
interval = "100ms"
unknown_lag = "include"
[routing]
max_replication_lag = "1h"
[consistency]
mode = "{mode}"
gtid_wait_timeout = "300ms"
"#
    ))
}

/// [`checker_config`] where replica2, the one that lags, takes every read
/// (replica1's weight 0).
fn lagging_replica_only(mode: &str) -> rwsplit::Config {
    let mut config = checker_config(mode);
    config.backends[1].weight = 0;
    config
}

/// Results of a run: pairs, stale reads, reads served by replicas, and
/// the read's latency (median and 95th percentile, microseconds).
#[derive(Debug, Default)]
#[allow(dead_code)] // the latencies are reported through Debug
struct Tally {
    pairs: u64,
    stale: u64,
    from_replicas: u64,
    /// Reads answered by replica2, the one that lags.
    from_lagging: u64,
    read_p50_us: u64,
    read_p95_us: u64,
}

fn percentiles(mut micros: Vec<u64>) -> (u64, u64) {
    micros.sort_unstable();
    let at = |q: f64| micros.get(((micros.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0);
    (at(0.5), at(0.95))
}

async fn setup_table() -> String {
    let t = unique("stale");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE TABLE app.{t} (k INT PRIMARY KEY, v BIGINT NOT NULL)")).await;
    let rows: Vec<String> = (0..WORKERS).map(|k| format!("({k}, 0)")).collect();
    a.exec(&format!("INSERT INTO app.{t} VALUES {}", rows.join(","))).await;
    wait_replicas_caught_up().await;
    t
}

/// `WORKERS` sessions write then read `pairs` times in all, each on its own row.
async fn run_pairs(
    writer: std::net::SocketAddr,
    reader: Option<std::net::SocketAddr>,
    table: &str,
    total: u64,
) -> Tally {
    let stale = Arc::new(AtomicU64::new(0));
    let replicas = Arc::new(AtomicU64::new(0));
    let lagging = Arc::new(AtomicU64::new(0));
    let per_worker = total.div_ceil(WORKERS);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..WORKERS {
        let (stale, replicas, lagging, table) =
            (stale.clone(), replicas.clone(), lagging.clone(), table.to_string());
        tasks.spawn(async move {
            let mut latencies: Vec<u64> = Vec::with_capacity(per_worker as usize);
            let mut w = Raw::app(&writer.to_string(), true).await;
            let mut r = match reader {
                Some(addr) => Some(Raw::app(&addr.to_string(), true).await),
                None => None,
            };
            for n in 1..=per_worker {
                let value = k * 1_000_000 + n;
                if n % 2 == 0 {
                    w.exec(&format!("UPDATE {table} SET v = {value} WHERE k = {k}")).await;
                } else {
                    // Half the writes in explicit transactions: the GTID
                    // arrives with COMMIT.
                    w.exec("BEGIN").await;
                    w.exec(&format!("UPDATE {table} SET v = {value} WHERE k = {k}")).await;
                    w.exec("COMMIT").await;
                }
                let conn = r.as_mut().unwrap_or(&mut w);
                let read_started = std::time::Instant::now();
                let res =
                    conn.query(&format!("SELECT v, @@server_id FROM {table} WHERE k = {k}")).await;
                latencies.push(read_started.elapsed().as_micros() as u64);
                let row = &res[res.len() - 2].1;
                let mut c = rwsplit::protocol::packet::Cursor::new(row);
                let got: u64 = String::from_utf8_lossy(c.lenenc_bytes().unwrap()).parse().unwrap();
                let server = String::from_utf8_lossy(c.lenenc_bytes().unwrap()).into_owned();
                if got != value {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
                if server != "1" {
                    replicas.fetch_add(1, Ordering::Relaxed);
                }
                if server == "3" {
                    lagging.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("worker"));
    }
    let (read_p50_us, read_p95_us) = percentiles(all);
    Tally {
        pairs: per_worker * WORKERS,
        stale: stale.load(Ordering::Relaxed),
        from_replicas: replicas.load(Ordering::Relaxed),
        from_lagging: lagging.load(Ordering::Relaxed),
        read_p50_us,
        read_p95_us,
    }
}

async fn check_mode(mode: &str) -> Tally {
    check_config(mode, checker_config(mode), pairs()).await
}

async fn check_config(mode: &str, config: rwsplit::Config, total: u64) -> Tally {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let proxy = start_proxy(config).await;
    // From here on every write reaches replica2 two seconds late.
    let _lag = Lag::start(2);
    let tally = run_pairs(proxy.addr, None, &table, total).await;
    println!("{mode}: {tally:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_mode_shows_stale_reads() {
    let t = check_mode("eventual").await;
    assert!(t.stale > 0, "the checker must see stale reads in eventual mode: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_mode_has_no_stale_reads() {
    let t = check_mode("pin").await;
    assert_eq!(t.stale, 0, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_has_no_stale_reads_and_reads_from_replicas() {
    let t = check_mode("gtid").await;
    assert_eq!(t.stale, 0, "{t:?}");
    assert!(t.from_replicas * 2 > t.pairs, "gtid mode must not degrade into pinning: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_mode_reads_the_lagging_replica() {
    // The lagging replica alone takes reads: eventual mode reads it (and
    // reads stale data), so the gtid test below does meet it.
    let config = lagging_replica_only("eventual");
    let t = check_config("eventual, replica2 only", config, pairs() / 5).await;
    assert!(t.from_lagging * 2 > t.pairs && t.stale > 0, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_with_only_a_lagging_replica_has_no_stale_reads() {
    let config = lagging_replica_only("gtid");
    // Every read waits there for its write's GTID (300 ms at most), then
    // the primary answers: fewer pairs.
    let t = check_config("gtid, replica2 only", config, pairs() / 20).await;
    assert_eq!(t.stale, 0, "{t:?}");
}

/// A client that writes, disconnects and connects again to read (a script
/// running the command-line client once per statement) reads its write in
/// `gtid` mode, while the only replica taking reads lags by 2 s: its new
/// session starts with the causal position of its earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_back_a_write_made_on_an_earlier_connection() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let config = lagging_replica_only("gtid");
    let proxy = start_proxy(config).await;
    let _lag = Lag::start(2);
    let mut stale = Vec::new();
    for n in 1..=20u64 {
        let mut w = Raw::app(&proxy.addr.to_string(), true).await;
        w.exec(&format!("UPDATE {table} SET v = {n} WHERE k = 0")).await;
        drop(w);
        let mut r = Raw::app(&proxy.addr.to_string(), true).await;
        let got = r.scalar(&format!("SELECT v FROM {table} WHERE k = 0")).await;
        if got.as_deref() != Some(n.to_string().as_str()) {
            stale.push((n, got));
        }
    }
    assert!(stale.is_empty(), "stale reads on a new connection: {stale:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A write that fails may have logged part of itself, and its error
/// reports no GTID: a multi-row INSERT into a MyISAM table keeps the rows
/// before the duplicate, and a procedure keeps what its statements
/// committed before the one that failed. The read right after sees them,
/// while the only replica taking reads lags by 2 s (`gtid` mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_back_what_a_failed_write_kept() {
    let _serial = SERIAL.lock().await;
    let t = unique("failed");
    on_primary_replicated(&[
        &format!("CREATE TABLE app.{t}_m (k INT PRIMARY KEY) ENGINE=MyISAM"),
        &format!("CREATE TABLE app.{t}_i (k INT PRIMARY KEY) ENGINE=InnoDB"),
        &format!(
            "CREATE PROCEDURE app.{t}_p(n INT) BEGIN INSERT INTO app.{t}_i VALUES (n); \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'after the insert'; END"
        ),
    ])
    .await;
    let proxy = start_proxy(lagging_replica_only("gtid")).await;
    let _lag = Lag::start(2);
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let error = |r: &Packets| {
        rwsplit::protocol::messages::parse_err(&r.last().expect("a reply").1).map(|e| e.code)
    };
    let mut stale = Vec::new();
    for n in 1..=5 {
        let (a, b) = (2 * n, 2 * n + 1);
        let r = c.query(&format!("INSERT INTO app.{t}_m VALUES ({a}), ({b}), ({a})")).await;
        assert_eq!(error(&r), Some(1062), "the duplicate fails the insert");
        let kept = c.scalar(&format!("SELECT COUNT(*) FROM app.{t}_m WHERE k IN ({a}, {b})")).await;
        if kept.as_deref() != Some("2") {
            stale.push(format!("MyISAM rows {a}, {b}: {kept:?}"));
        }
        let r = c.query(&format!("CALL app.{t}_p({n})")).await;
        assert_eq!(error(&r), Some(1644), "the procedure signals");
        let kept = c.scalar(&format!("SELECT COUNT(*) FROM app.{t}_i WHERE k = {n}")).await;
        if kept.as_deref() != Some("1") {
            stale.push(format!("the procedure's row {n}: {kept:?}"));
        }
    }
    assert!(stale.is_empty(), "reads missed what failed writes kept: {stale:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{t}_m, app.{t}_i")).await;
    a.exec(&format!("DROP PROCEDURE app.{t}_p")).await;
}

/// Under a `character_set_database` of wide characters (utf16, utf32,
/// ucs2) MariaDB pads the length of an OK's session-state block with zero
/// bytes, so the write's GTID read as missing and the next read went to
/// the lagging replica without waiting. Writes are read back there
/// (`gtid` mode, the only replica taking reads 2 s behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_back_writes_under_a_wide_database_charset() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let proxy = start_proxy(lagging_replica_only("gtid")).await;
    let _lag = Lag::start(2);
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let mut stale = Vec::new();
    for (i, charset) in ["utf16", "utf32", "ucs2"].into_iter().enumerate() {
        c.exec(&format!("SET character_set_database = {charset}")).await;
        for n in 1..=3 {
            let k = 1000 + 10 * i + n;
            c.exec(&format!("INSERT INTO app.{table} (k, v) VALUES ({k}, {n})")).await;
            let read = c.scalar(&format!("SELECT COUNT(*) FROM app.{table} WHERE k = {k}")).await;
            if read.as_deref() != Some("1") {
                stale.push(format!("{charset} {k}: {read:?}"));
            }
        }
    }
    assert!(stale.is_empty(), "reads missed the session's writes: {stale:?}");
}

/// The proxy's own queries on a session's connections (the primary's
/// position, a GTID wait) read their answers whatever character set the
/// session asked results in: under `character_set_results = utf16` the
/// writes are read back, twice each, in `gtid` and `gtid_global`. Before,
/// a GTID wait's answer (a zero byte and `0`) read as a timeout, the
/// primary's position as no position at all, and the session forgot its
/// write: its second read came from the replica 2 s behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_writes_when_results_come_in_utf16() {
    let _serial = SERIAL.lock().await;
    let t = unique("utf16res");
    on_primary_replicated(&[&format!("CREATE TABLE app.{t} (k INT PRIMARY KEY)")]).await;
    let mut stale = Vec::new();
    for mode in ["gtid", "gtid_global"] {
        let proxy = start_proxy(lagging_replica_only(mode)).await;
        let _lag = Lag::start(2);
        let mut c = Raw::app(&proxy.addr.to_string(), true).await;
        c.exec("SET character_set_results = utf16").await;
        for n in 1..=3 {
            let (a, b) = (100 * n, 100 * n + 1);
            c.exec(&format!("INSERT INTO app.{t} VALUES ({a}), ({b})")).await;
            for read in 1..=2 {
                let sql = format!("SELECT COUNT(*) FROM app.{t} WHERE k IN ({a}, {b})");
                // utf16: each digit comes as a zero byte and the digit.
                let kept = c.scalar(&sql).await.map(|v| v.replace('\0', ""));
                if kept.as_deref() != Some("2") {
                    stale.push(format!("{mode} {a}, read {read}: {kept:?}"));
                }
            }
            c.exec(&format!("DELETE FROM app.{t} WHERE k IN ({a}, {b})")).await;
        }
    }
    assert!(stale.is_empty(), "reads missed the session's writes: {stale:?}");
    admin(PRIMARY).await.exec(&format!("DROP TABLE app.{t}")).await;
}

/// A MariaDB connector's batch (COM_STMT_BULK_EXECUTE) is a write like any
/// other: the reads right after it see every row, while the only replica
/// taking reads lags by 2 s, in `gtid` and `pin` modes; in `eventual` the same read
/// finds the rows missing (so the check can tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_read_back_like_any_write() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let _lag = Lag::start(2);
    for (mode, base) in [("gtid", 1_000), ("pin", 2_000), ("eventual", 3_000)] {
        let proxy = start_proxy(lagging_replica_only(mode)).await;
        // Reads go to the primary until the monitor has seen replica2.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !proxy.shared.replica_available() {
            assert!(std::time::Instant::now() < deadline, "replica2 never took reads");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut c = Raw::app(&proxy.addr.to_string(), true).await;
        let id = prepare_ok(&mut c, &format!("INSERT INTO {table} VALUES (?, ?)")).await;
        // Three rows (k, v) of two LONGLONGs.
        let mut bulk = vec![0xFA];
        bulk.extend_from_slice(&id.to_le_bytes());
        bulk.extend_from_slice(&128u16.to_le_bytes());
        bulk.extend_from_slice(&[8, 0, 8, 0]);
        for k in base..base + 3i64 {
            for value in [k, k * 10] {
                bulk.push(0);
                bulk.extend_from_slice(&value.to_le_bytes());
            }
        }
        let r = c.command(&bulk, rwsplit::relay::Expect::Result).await;
        assert_eq!(r[0].1[0], 0, "{mode}: batch: {:?}", String::from_utf8_lossy(&r[0].1));
        let read = format!("SELECT COUNT(*) FROM {table} WHERE k >= {base}");
        let seen = c.scalar(&read).await;
        if mode != "eventual" {
            assert_eq!(seen.as_deref(), Some("3"), "{mode}: the read after the batch");
        } else {
            assert_eq!(seen.as_deref(), Some("0"), "eventual: the lagging replica read");
        }
    }
    drop(_lag);
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A write sent in one multi-statement with statements after it that
/// change the session (`SET NAMES`, `USE`, a `SET SESSION`): their OKs
/// report those changes and not the write's GTID, which the reads after
/// it must still wait for (before, they went to the lagging replica
/// without waiting and read the old value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_back_a_write_followed_by_other_statements_in_one_query() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let config = lagging_replica_only("gtid");
    let proxy = start_proxy(config).await;
    let _lag = Lag::start(2);
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let after =
        ["SET NAMES utf8mb4", "USE app", "SET SESSION sql_mode = DEFAULT", "SET autocommit = 1"];
    let mut stale = Vec::new();
    for (n, tail) in after.iter().enumerate() {
        for (m, write) in [
            "UPDATE {t} SET v = {n} WHERE k = 0",
            "BEGIN; UPDATE {t} SET v = {n} WHERE k = 0; COMMIT",
        ]
        .iter()
        .enumerate()
        {
            let value = (n * 2 + m + 1).to_string();
            let write = write.replace("{t}", &table).replace("{n}", &value);
            c.exec(&format!("{write}; {tail}")).await;
            let got = c.scalar(&format!("SELECT v FROM {table} WHERE k = 0")).await;
            if got.as_deref() != Some(value.as_str()) {
                stale.push((write, *tail, got));
            }
        }
    }
    assert!(stale.is_empty(), "stale reads after a multi-statement write: {stale:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A client that wrote through an earlier run of the proxy reads its
/// write through the next one, though the new proxy has no record of it:
/// a replica takes reads only once it has applied the primary's position
/// as the new proxy's monitor first read it. Here the only replica taking
/// reads lags by 2 s (within `max_replication_lag`): before, the read
/// went to it and returned the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_back_a_write_made_through_the_proxy_before_it_restarted() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let config = || {
        let mut config = lagging_replica_only("gtid");
        config.admin = Some(rwsplit::config::AdminConfig {
            address: "127.0.0.1:0".into(),
            token: None,
            max_digests: 100,
        });
        config
    };
    let lag = Lag::start(2);
    let before = start_proxy(config()).await;
    let mut w = Raw::app(&before.addr.to_string(), true).await;
    w.exec(&format!("UPDATE {table} SET v = 7 WHERE k = 0")).await;
    drop((w, before));

    let after = start_proxy(config()).await;
    let admin_port = after.admin.unwrap();
    // Its monitor has read the primary and the lagging replica.
    let probed = |b: &serde_json::Value| {
        b[0]["gtid_position"].is_string() && b[2]["gtid_position"].is_string()
    };
    let backends = wait_backends(admin_port, std::time::Duration::from_secs(10), probed).await;
    let mut r = Raw::app(&after.addr.to_string(), true).await;
    let got =
        r.scalar(&format!("SELECT CONCAT(v, ' on ', @@server_id) FROM {table} WHERE k = 0")).await;
    assert_eq!(got.as_deref(), Some("7 on 1"), "the primary answers, with the write");
    assert_eq!(backends[2]["excluded_because"], "behind_start", "{backends}");

    // Once the replica has applied that position, it takes reads again.
    drop(lag);
    let eligible = |b: &serde_json::Value| b[2]["eligible"] == true;
    wait_backends(admin_port, std::time::Duration::from_secs(10), eligible).await;
    let got =
        r.scalar(&format!("SELECT CONCAT(v, ' on ', @@server_id) FROM {table} WHERE k = 0")).await;
    assert_eq!(got.as_deref(), Some("7 on 3"));
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A client that writes on one connection and reads on another open
/// beside it (a pool) reads its writes in `gtid` mode: its sessions share
/// what it wrote. Each of the 25 workers writes on one connection and
/// reads on a second, all as one client (user app from 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_on_one_connection_what_another_of_the_client_wrote() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let proxy = start_proxy(checker_config("gtid")).await;
    let _lag = Lag::start(2);
    let t = run_pairs(proxy.addr, Some(proxy.addr), &table, pairs() / 5).await;
    println!("gtid, write and read on two connections: {t:?}");
    assert_eq!(t.stale, 0, "{t:?}");
    assert!(t.from_replicas * 2 > t.pairs, "reads must still go to replicas: {t:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_global_mode_has_no_stale_reads() {
    let t = check_mode("gtid_global").await;
    assert_eq!(t.stale, 0, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_global_is_causal_across_proxy_instances() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let writer = start_proxy(checker_config("gtid_global")).await;
    let reader = start_proxy(checker_config("gtid_global")).await;
    let _lag = Lag::start(2);
    let t = run_pairs(writer.addr, Some(reader.addr), &table, pairs() / 5).await;
    println!("cross-instance gtid_global: {t:?}");
    assert_eq!(t.stale, 0, "{t:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// Like `run_pairs`, with the read as a server-side prepared statement.
async fn run_prepared_pairs(proxy: std::net::SocketAddr, table: &str, total: u64) -> Tally {
    let stale = Arc::new(AtomicU64::new(0));
    let replicas = Arc::new(AtomicU64::new(0));
    let lagging = Arc::new(AtomicU64::new(0));
    let per_worker = total.div_ceil(WORKERS);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..WORKERS {
        let (stale, replicas, lagging, table) =
            (stale.clone(), replicas.clone(), lagging.clone(), table.to_string());
        tasks.spawn(async move {
            let mut c = Raw::app(&proxy.to_string(), true).await;
            let mut prep = vec![0x16];
            prep.extend_from_slice(
                format!("SELECT v, @@server_id FROM {table} WHERE k = ?").as_bytes(),
            );
            let r = c.prepare(&prep).await;
            let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
            for n in 1..=per_worker {
                let value = k * 1_000_000 + n;
                c.exec(&format!("UPDATE {table} SET v = {value} WHERE k = {k}")).await;
                let mut e = vec![0x17];
                e.extend_from_slice(&id.to_le_bytes());
                e.push(0);
                e.extend_from_slice(&1u32.to_le_bytes());
                e.push(0);
                e.push(u8::from(n == 1));
                if n == 1 {
                    e.extend_from_slice(&[0x08, 0]);
                }
                e.extend_from_slice(&(k as i64).to_le_bytes());
                let res = c.command(&e, rwsplit::relay::Expect::Result).await;
                let row = &res[res.len() - 2].1;
                // 0x00, null bitmap (1 byte), v (BIGINT), @@server_id (BIGINT UNSIGNED)
                let got = i64::from_le_bytes(row[2..10].try_into().unwrap()) as u64;
                let server = u64::from_le_bytes(row[10..18].try_into().unwrap());
                if got != value {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
                if server != 1 {
                    replicas.fetch_add(1, Ordering::Relaxed);
                }
                if server == 3 {
                    lagging.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("worker");
    }
    Tally {
        pairs: per_worker * WORKERS,
        stale: stale.load(Ordering::Relaxed),
        from_replicas: replicas.load(Ordering::Relaxed),
        from_lagging: lagging.load(Ordering::Relaxed),
        ..Tally::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_prepared_reads_have_no_stale_reads() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let proxy = start_proxy(checker_config("gtid")).await;
    let _lag = Lag::start(2);
    let t = run_prepared_pairs(proxy.addr, &table, pairs() / 2).await;
    println!("gtid, prepared: {t:?}");
    assert_eq!(t.stale, 0, "{t:?}");
    assert!(t.from_replicas * 2 > t.pairs, "prepared reads after writes use replicas: {t:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// Runs a prepared statement without parameters (prepare, execute, close).
/// Prepares `sql` (which must succeed) and returns the statement's id.
async fn prepare_ok(c: &mut Raw, sql: &str) -> u32 {
    let mut prep = vec![0x16];
    prep.extend_from_slice(sql.as_bytes());
    let r = c.prepare(&prep).await;
    assert_eq!(r[0].1[0], 0, "prepare {sql}: {:?}", String::from_utf8_lossy(&r[0].1));
    u32::from_le_bytes(r[0].1[1..5].try_into().unwrap())
}

async fn execute_once(c: &mut Raw, sql: &str) -> Packets {
    let id = prepare_ok(c, sql).await;
    let mut e = vec![0x17];
    e.extend_from_slice(&id.to_le_bytes());
    e.push(0);
    e.extend_from_slice(&1u32.to_le_bytes());
    let res = c.command(&e, rwsplit::relay::Expect::Result).await;
    let mut close = vec![0x19];
    close.extend_from_slice(&id.to_le_bytes());
    c.send_only(&close).await;
    res
}

/// Writes whose response is a result set: `REPLACE ... RETURNING`, a
/// SELECT of a stored function that writes, a multi-statement whose last
/// write returns rows, and the first as a prepared statement, each from a
/// new session followed by a read of the row, with and without
/// DEPRECATE_EOF. Returns the stale reads and the reads replicas answered.
async fn rows_writes_then_reads(
    proxy: std::net::SocketAddr,
    table: &str,
    func: &str,
    base: u64,
) -> (Vec<String>, usize) {
    let mut stale = Vec::new();
    let mut replica_reads = 0;
    for deprecate_eof in [false, true] {
        let k = u64::from(deprecate_eof);
        for round in 1..=3u64 {
            let value = |shape: u64| base + k * 1_000_000 + round * 100 + shape;
            let writes = [
                (
                    "REPLACE ... RETURNING",
                    false,
                    format!("REPLACE INTO {table} VALUES ({k}, {}) RETURNING v", value(1)),
                ),
                (
                    "SELECT of a function that writes",
                    false,
                    format!("SELECT {func}({k}, {})", value(2)),
                ),
                (
                    "a write, then a write that returns rows",
                    false,
                    format!(
                        "UPDATE {table} SET v = 0 WHERE k = {k}; \
                         REPLACE INTO {table} VALUES ({k}, {}) RETURNING v",
                        value(3)
                    ),
                ),
                (
                    "prepared REPLACE ... RETURNING",
                    true,
                    format!("REPLACE INTO {table} VALUES ({k}, {}) RETURNING v", value(4)),
                ),
            ];
            for (shape, (name, prepared, sql)) in writes.iter().enumerate() {
                // A new session each time: no earlier write's GTID to wait for.
                let mut c = Raw::app(&proxy.to_string(), deprecate_eof).await;
                let res =
                    if *prepared { execute_once(&mut c, sql).await } else { c.query(sql).await };
                let last = &res.last().unwrap().1;
                assert_ne!(last[0], 0xFF, "{name}: {}", String::from_utf8_lossy(last));
                let read = format!("SELECT v, @@server_id FROM {table} WHERE k = {k}");
                let res = c.query(&read).await;
                let row = &res[res.len() - 2].1;
                let mut cur = rwsplit::protocol::packet::Cursor::new(row);
                let got = String::from_utf8_lossy(cur.lenenc_bytes().unwrap()).into_owned();
                let server = String::from_utf8_lossy(cur.lenenc_bytes().unwrap()).into_owned();
                if got != value(shape as u64 + 1).to_string() {
                    stale.push(format!("{name} (DEPRECATE_EOF {deprecate_eof}): read {got}"));
                }
                replica_reads += usize::from(server != "1");
            }
        }
    }
    (stale, replica_reads)
}

/// A write that returns rows, for a client without DEPRECATE_EOF, ends in
/// an EOF packet, which carries no session state: the write's GTID never
/// reaches the proxy. The next read must still see the write: with only a
/// lagging replica taking reads it falls back to the primary, and with
/// the replica caught up it is still read there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_reads_back_writes_that_return_rows() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let func = format!("{table}_set");
    admin(PRIMARY)
        .await
        .exec(&format!(
            "CREATE FUNCTION app.{func}(key_ INT, val BIGINT) RETURNS BIGINT \
             DETERMINISTIC MODIFIES SQL DATA \
             BEGIN UPDATE app.{table} SET v = val WHERE k = key_; RETURN val; END"
        ))
        .await;
    wait_replicas_caught_up().await;
    let config = lagging_replica_only("gtid");
    let proxy = start_proxy(config).await;
    {
        let _lag = Lag::start(2);
        let (stale, _) = rows_writes_then_reads(proxy.addr, &table, &func, 0).await;
        assert!(stale.is_empty(), "stale reads, replica2 lagging: {stale:#?}");
    }
    wait_replicas_caught_up().await;
    // ... and the monitor has seen it catch up (Seconds_Behind_Master, as
    // measured during the lag, would send reads to the primary at once).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proxy.shared.topology_now().backends[2].lag_ms.is_none_or(|l| l >= 1000) {
        assert!(std::time::Instant::now() < deadline, "the monitor never saw replica2 catch up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (stale, replica_reads) = rows_writes_then_reads(proxy.addr, &table, &func, 10_000).await;
    assert!(stale.is_empty(), "stale reads, replica2 caught up: {stale:#?}");
    // Waiting for the primary's position instead of pinning: replica2
    // answers most reads once it keeps up (it may miss the 300 ms wait).
    assert!(replica_reads * 2 > 24, "{replica_reads} of 24 reads on replica2");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP FUNCTION app.{func}")).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// `START TRANSACTION READ ONLY` right after a write waits on the replica
/// for the write's GTID, pipelined with the statement itself. When the
/// wait times out the statement runs on the primary instead, but the
/// replica has run it too: that transaction must end there, or the
/// connection keeps a snapshot (later reads on it are stale) and reports
/// a transaction open (the session's next writes follow it there and get
/// ERROR 1290).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_that_fell_back_leaves_no_transaction_on_the_replica() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    for multiplex in [false, true] {
        let mut config = lagging_replica_only("gtid");
        config.pool.multiplex = multiplex;
        let proxy = start_proxy(config).await;
        let mut c = Raw::app(&proxy.addr.to_string(), true).await;
        {
            let _lag = Lag::start(2);
            c.exec(&format!("UPDATE {table} SET v = 1 WHERE k = 0")).await;
            c.exec("START TRANSACTION READ ONLY").await;
            let v = c.scalar(&format!("SELECT v FROM {table} WHERE k = 0")).await;
            assert_eq!(v.as_deref(), Some("1"), "multiplex {multiplex}");
            c.exec("COMMIT").await;
        }
        wait_replicas_caught_up().await;
        for n in 2..=4 {
            let res = c.query(&format!("UPDATE {table} SET v = {n} WHERE k = 0")).await;
            let last = &res.last().unwrap().1;
            assert_ne!(
                last[0],
                0xFF,
                "multiplex {multiplex}, write {n}: {}",
                String::from_utf8_lossy(last)
            );
            wait_replicas_caught_up().await;
            let v = c.scalar(&format!("SELECT v FROM {table} WHERE k = 0")).await;
            assert_eq!(v, Some(n.to_string()), "multiplex {multiplex}, read after write {n}");
        }
    }
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// `rwsplit_gtid_waits_total{result}` as the admin port shows it.
async fn gtid_waits(admin: std::net::SocketAddr, result: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics", None).await;
    let prefix = format!("rwsplit_gtid_waits_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap_or(0.0) as u64)
}

/// The only replica taking reads is 3 s behind and a GTID wait may last
/// 300 ms: once the monitor has measured the lag, a read after a write no
/// longer waits there for a wait that would run out; the primary answers
/// it at once, with the write. Before, each such read waited 300 ms first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_mode_does_not_wait_on_a_replica_further_behind_than_the_wait_may_last() {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let mut config = lab_config(&format!(
        "{MONITORED}[routing]\nmax_replication_lag = \"1h\"\n\
         [consistency]\nmode = \"gtid\"\ngtid_wait_timeout = \"300ms\"\n"
    ));
    config.backends[1].weight = 0;
    let proxy = start_proxy(config).await;
    let admin_addr = proxy.admin.unwrap();
    let _lag = Lag::start(3);
    // Writes make the lag show: replica2 applies each 3 s late (as
    // Seconds_Behind_Master, in whole seconds, which may overstate by one).
    let mut w = Raw::app(&proxy.addr.to_string(), true).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        w.exec(&format!("UPDATE {table} SET v = v + 1 WHERE k = 1")).await;
        let (_, body) = http_get(admin_addr, "/backends", None).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if json[2]["lag_ms"].as_u64().is_some_and(|l| l >= 2000) && json[2]["eligible"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica2's lag never showed: {json}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let skipped_before = gtid_waits(admin_addr, "skipped").await;
    let started = std::time::Instant::now();
    for n in 1..=10u64 {
        w.exec(&format!("UPDATE {table} SET v = {n} WHERE k = 0")).await;
        let got = w
            .scalar(&format!("SELECT CONCAT(v, ' on ', @@server_id) FROM {table} WHERE k = 0"))
            .await;
        assert_eq!(got, Some(format!("{n} on 1")), "the primary answers with the write");
    }
    let took = started.elapsed();
    let skipped = gtid_waits(admin_addr, "skipped").await - skipped_before;
    println!(
        "10 writes and reads with the only replica 3 s behind: {took:?}, {skipped} waits skipped"
    );
    assert!(skipped >= 10, "{skipped} of 10 reads skipped the wait");
    // Ten waits that ran out would take 3 s at least.
    assert!(took < std::time::Duration::from_millis(1500), "{took:?}");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// One client's reads of a row another client keeps updating (straight on
/// the primary, every 5 ms), through a proxy in `mode` with replica2 1 s
/// behind: (reads, reads older than one already read, reads a replica
/// answered).
async fn reads_going_back(mode: &str) -> (u32, u32, u32) {
    let _serial = SERIAL.lock().await;
    let table = setup_table().await;
    let proxy = start_proxy(checker_config(mode)).await;
    let _lag = Lag::start(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, table) = (stop.clone(), table.clone());
        tokio::spawn(async move {
            let mut a = admin(PRIMARY).await;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                a.exec(&format!("UPDATE app.{table} SET v = {n} WHERE k = 0")).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    // Replica2 falls behind as the writes go on.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let (mut reads, mut back, mut from_replicas, mut newest) = (0, 0, 0, 0u64);
    for _ in 0..400 {
        let sql = format!("SELECT CONCAT(v, ' ', @@server_id) FROM {table} WHERE k = 0");
        let row = c.scalar(&sql).await.expect("a row");
        let (v, server) = row.split_once(' ').expect("value and server");
        let v: u64 = v.parse().expect("a value");
        reads += 1;
        if v < newest {
            back += 1;
        }
        if server != "1" {
            from_replicas += 1;
        }
        newest = newest.max(v);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    admin(PRIMARY).await.exec(&format!("DROP TABLE app.{table}")).await;
    (reads, back, from_replicas)
}

/// `gtid` orders a client's reads after its own writes only: its reads of
/// what another client writes alternate between a replica in step and
/// one a second behind, and go back in time (as the README says).
/// `gtid_global` orders every read after the primary's position when it
/// arrived: never older than a read before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_others_writes_go_back_in_time_in_gtid_mode_but_never_in_gtid_global() {
    let (reads, back, _) = reads_going_back("gtid").await;
    println!("gtid: {back} of {reads} reads older than one before");
    assert!(back > 0, "gtid: no read went back in time; the check did not check");
    let (reads, back, from_replicas) = reads_going_back("gtid_global").await;
    println!(
        "gtid_global: {back} of {reads} reads older than one before, {from_replicas} from replicas"
    );
    assert_eq!(back, 0, "gtid_global: {back} of {reads} reads went back in time");
    // Not by reading the primary alone.
    assert!(from_replicas * 2 > reads, "gtid_global: {from_replicas} of {reads} from replicas");
}

/// A write the primary no longer holds (the servers' history was reset, as
/// by RESET MASTER or a rebuilt cluster, while the proxy kept running)
/// costs the client's reads one wait in vain, not one per read: after it,
/// the primary is asked, does not hold the write either, and the write is
/// forgotten. Before, every read of the client waited out the timeout and
/// went to the primary, for as long as the proxy ran (and, while only text
/// reads forgot it, every prepared one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_server_holds_is_waited_for_once_not_by_every_read() {
    let _serial = SERIAL.lock().await;
    let config =
        format!("{MONITORED}[consistency]\nmode = \"gtid\"\ngtid_wait_timeout = \"300ms\"\n");
    let proxy = start_proxy(lab_config(&config)).await;
    all_healthy(&proxy).await;
    // What the client wrote before the history was reset: far past where
    // the servers are now.
    let client = proxy.shared.recent_writes.client(b"app", Some([127, 0, 0, 1].into()));
    client.record(rwsplit::recent_writes::Carried {
        gtid: Some("0-1-4000000000".into()),
        ..Default::default()
    });
    let addr = proxy.addr.to_string();
    let mut c = Raw::app(&addr, true).await;
    // The first read, prepared (as most applications read), waits in vain
    // and the primary answers it.
    let r = execute_once(&mut c, "SELECT @@server_id").await;
    assert_ne!(r[0].1[0], 0xff, "{r:?}");
    let mut on_primary = 0;
    for _ in 0..10 {
        let mut fresh = Raw::app(&addr, true).await;
        for conn in [&mut c, &mut fresh] {
            if conn.scalar("SELECT @@server_id").await.as_deref() == Some("1") {
                on_primary += 1;
            }
        }
    }
    assert_eq!(on_primary, 0, "reads after the first still waited for the lost write");
}
