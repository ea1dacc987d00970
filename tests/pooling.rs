//! Multiplexing against the lab: many sessions on a few backend
//! connections, state that lives on a connection keeps it, nothing of one
//! client's session reaches another, prepared statements and
//! LAST_INSERT_ID() survive the sharing, and a full pool makes statements
//! wait, then fail clearly.

mod common;

use common::*;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};

/// The tests here count the lab's connections: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A multiplexing proxy with `cap` connections per backend, reads on
/// replica1 only (so handoffs there are easy to provoke), eventual reads.
fn pooled(cap: usize, pool_timeout: &str) -> rwsplit::Config {
    let mut config = lab_config(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n[consistency]\nmode = \"eventual\"\n\
         [pool]\nmultiplex = true\nmax_connections_per_backend = {cap}\npool_timeout = \"{pool_timeout}\"\n"
    ));
    config.backends[2].weight = 0;
    config
}

/// Login options of user app through the proxy on `port`.
fn app_opts(port: u16) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("app"))
        .prefer_socket(false)
}

async fn client(proxy: &TestProxy) -> mysql_async::Conn {
    mysql_async::Conn::new(app_opts(proxy.addr.port())).await.expect("login through the proxy")
}

/// GET /pool.
async fn pool_json(proxy: &TestProxy) -> serde_json::Value {
    wait_admin(proxy.admin.expect("admin"), "/pool", Duration::ZERO, |_| true).await
}

/// Waits (bounded) until GET /pool meets `condition`.
async fn wait_pool(proxy: &TestProxy, condition: impl Fn(&serde_json::Value) -> bool) {
    wait_admin(proxy.admin.expect("admin"), "/pool", Duration::from_secs(5), condition).await;
}

/// The proxy's connections to each backend now, from GET /pool.
async fn pool_connections(proxy: &TestProxy) -> Vec<u64> {
    let json = pool_json(proxy).await;
    json["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["connections"].as_u64().unwrap())
        .collect()
}

/// Connections user app holds to each lab server, from the servers'
/// processlists.
async fn app_connections_on_servers() -> Vec<usize> {
    let mut counts = Vec::new();
    for server in [PRIMARY, REPLICA1, REPLICA2] {
        let mut a = admin(server).await;
        let n = a
            .scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            .await
            .unwrap_or_default();
        counts.push(n.parse().unwrap());
    }
    counts
}

#[tokio::test]
async fn many_sessions_share_a_few_connections_per_server() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_share", "id INT AUTO_INCREMENT PRIMARY KEY, s INT").await;
    let proxy = start_proxy(pooled(4, "2s")).await;
    let sessions = 60;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Samples the servers' processlists while the sessions run.
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut most = vec![0; 3];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (m, n) in most.iter_mut().zip(app_connections_on_servers().await) {
                    *m = (*m).max(n);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            most
        })
    };
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let mut c = client(&proxy).await;
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..30 {
                if i % 5 == 0 {
                    c.query_drop(format!("INSERT INTO {table} (s) VALUES ({s})")).await.unwrap();
                } else {
                    let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
                    assert_eq!(one, Some(1));
                }
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.expect("session ran without errors");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = sampler.await.unwrap();
    println!("{sessions} sessions; most app connections seen per server: {most:?}");
    assert!(most.iter().all(|&n| n <= 4), "{most:?}");
    assert!(pool_connections(&proxy).await.iter().all(|&n| n <= 4));
    let rows = admin(PRIMARY).await.scalar(&format!("SELECT COUNT(*) FROM app.{table}")).await;
    assert_eq!(rows.as_deref(), Some(&*(sessions * 6).to_string()));
}

#[tokio::test]
async fn a_temporary_table_keeps_its_connection_while_other_sessions_churn() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(pooled(5, "2s")).await;
    let mut owner = client(&proxy).await;
    owner.query_drop("CREATE TEMPORARY TABLE pool_tmp (n INT)").await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churned = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut churners = Vec::new();
    for _ in 0..100 {
        let (stop, churned, addr) = (stop.clone(), churned.clone(), proxy.addr.port());
        churners.push(tokio::spawn(async move {
            let opts = app_opts(addr);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
                // None of them sees the owner's temporary table.
                let r = c.query_drop("SELECT COUNT(*) FROM pool_tmp").await;
                assert!(r.is_err(), "another session saw the temporary table");
                let v: Option<i64> = c.query_first("SELECT 2").await.unwrap();
                assert_eq!(v, Some(2));
                c.disconnect().await.unwrap();
                churned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for i in 0..500 {
        owner.query_drop(format!("INSERT INTO pool_tmp VALUES ({i})")).await.unwrap();
        let n: Option<i64> = owner.query_first("SELECT COUNT(*) FROM pool_tmp").await.unwrap();
        assert_eq!(n, Some(i + 1), "the temporary table lost rows");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in churners {
        c.await.expect("churning session failed");
    }
    let churned = churned.load(std::sync::atomic::Ordering::Relaxed);
    println!("1,000 statements on a temporary table while {churned} sessions came and went");
    assert!(churned >= 100, "{churned}");
    assert!(pool_connections(&proxy).await.iter().all(|&n| n <= 5));
}

#[tokio::test]
async fn nothing_of_one_session_reaches_another_on_a_shared_connection() {
    let _serial = SERIAL.lock().await;
    // One connection per backend: every read of either session runs on
    // the same replica1 connection.
    let proxy = start_proxy(pooled(1, "2s")).await;
    let mut a = client(&proxy).await;
    let mut b = client(&proxy).await;
    a.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'").await.unwrap();
    a.query_drop("SET SESSION time_zone = '+05:00'").await.unwrap();
    b.query_drop("SET SESSION time_zone = '-03:00'").await.unwrap();
    let mut threads = std::collections::HashSet::new();
    for _ in 0..50 {
        let (ta, mode, tz): (u64, String, String) = a
            .query_first("SELECT CONNECTION_ID(), @@session.sql_mode, @@session.time_zone")
            .await
            .unwrap()
            .unwrap();
        assert!(mode.contains("ANSI_QUOTES"), "{mode}");
        assert_eq!(tz, "+05:00");
        let (tb, mode, tz): (u64, String, String) = b
            .query_first("SELECT CONNECTION_ID(), @@session.sql_mode, @@session.time_zone")
            .await
            .unwrap()
            .unwrap();
        assert!(!mode.contains("ANSI_QUOTES"), "A's sql_mode reached B: {mode}");
        assert_eq!(tz, "-03:00", "A's time zone reached B");
        threads.insert(ta);
        threads.insert(tb);
    }
    assert_eq!(threads.len(), 1, "the reads did not share one connection: {threads:?}");
    // B's reads took A's connection: it was reset each time.
    let resets =
        proxy.shared.pool.get(1).unwrap().resets.load(std::sync::atomic::Ordering::Relaxed);
    assert!(resets > 0, "{resets}");
}

#[tokio::test]
async fn a_user_variable_pins_its_connection_and_never_reaches_another_session() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(pooled(2, "2s")).await;
    let mut a = client(&proxy).await;
    let mut b = client(&proxy).await;
    a.query_drop("SET @secret = 'only-a'").await.unwrap();
    let a_thread: Option<u64> =
        a.query_first("SELECT /* rwsplit:primary */ CONNECTION_ID()").await.unwrap();
    for _ in 0..20 {
        // B's reads of user variables run on the primary, on the other
        // connection: A's stays with A.
        let (v, t): (Option<String>, u64) =
            b.query_first("SELECT @secret, CONNECTION_ID()").await.unwrap().unwrap();
        assert_eq!(v, None, "A's user variable reached B");
        assert_ne!(Some(t), a_thread);
        let v: Option<Option<String>> = a.query_first("SELECT @secret").await.unwrap();
        assert_eq!(v, Some(Some("only-a".into())), "A lost its user variable");
    }
    // When A ends, its connection is reset and serves B, without A's variable.
    a.disconnect().await.unwrap();
    wait_pool(&proxy, |j| j["backends"][0]["idle"] == 2).await;
    // B holds one of the two connections in a transaction; new sessions
    // get the other. One of them was A's.
    b.query_drop("BEGIN").await.unwrap();
    let b_thread = thread(&mut b).await;
    let v: Option<Option<String>> = b.query_first("SELECT @secret").await.unwrap();
    assert_eq!(v, Some(None), "A's user variable reached B");
    let mut seen = std::collections::HashSet::from([b_thread]);
    for _ in 0..10 {
        let mut c = client(&proxy).await;
        let (v, t): (Option<String>, u64) =
            c.query_first("SELECT @secret, CONNECTION_ID()").await.unwrap().unwrap();
        assert_eq!(v, None, "A's user variable reached another session");
        assert_ne!(t, b_thread);
        seen.insert(t);
        c.disconnect().await.unwrap();
    }
    assert!(seen.contains(&a_thread.unwrap()), "A's connection served nobody: {seen:?}");
    b.query_drop("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn prepared_statements_and_last_insert_id_survive_sharing() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_ps", "id INT AUTO_INCREMENT PRIMARY KEY, s INT").await;
    let proxy = start_proxy(pooled(2, "2s")).await;
    let mut tasks = Vec::new();
    for s in 0..12i64 {
        let mut c = client(&proxy).await;
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            let read = c.prep("SELECT ? + 1, ?").await.unwrap();
            let insert = c.prep(format!("INSERT INTO {table} (s) VALUES (?)")).await.unwrap();
            for i in 0..40i64 {
                let (sum, tag): (i64, String) =
                    c.exec_first(&read, (s * 1000 + i, format!("s{s}"))).await.unwrap().unwrap();
                assert_eq!((sum, tag), (s * 1000 + i + 1, format!("s{s}")));
                if i % 4 == 0 {
                    c.exec_drop(&insert, (s,)).await.unwrap();
                    let id: Option<i64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
                    let id = id.unwrap();
                    assert!(id > 0);
                    // The id is this session's own row.
                    let owner: Option<i64> = c
                        .query_first(format!(
                            "SELECT /* rwsplit:primary */ s FROM {table} WHERE id = {id}"
                        ))
                        .await
                        .unwrap();
                    assert_eq!(owner, Some(s), "LAST_INSERT_ID() came from another session");
                }
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.expect("session failed");
    }
    assert!(pool_connections(&proxy).await.iter().all(|&n| n <= 2));
}

/// A warning stays readable by the next statement when a statement close
/// (no reply) and a ping (answered by the proxy) come between, as on the
/// server: the connection was given back at the close, and SHOW WARNINGS
/// then ran on another one and found none (seen with Connector/Python,
/// whose prepared cursors close when dropped).
#[tokio::test]
async fn warnings_survive_a_statement_close_and_a_ping_while_others_take_connections() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_warn", "c CHAR(3)").await;
    let proxy = start_proxy(pooled(2, "2s")).await;
    let mut a = Raw::app(&proxy.addr.to_string(), true).await;
    for round in 0..5 {
        let mut prepare = vec![0x16];
        prepare.extend_from_slice(b"SELECT /* rwsplit:primary */ 1");
        let prepared = a.prepare(&prepare).await;
        let id = prepared[0].1[1..5].to_vec();
        a.exec(&format!("INSERT IGNORE INTO app.{table} VALUES ('abcdef')")).await;
        let mut close = vec![0x19];
        close.extend_from_slice(&id);
        a.send_only(&close).await;
        a.command(&[0x0E], rwsplit::relay::Expect::Result).await;
        churn(&proxy, 6).await;
        let (packets, _) = a.query_counted("SHOW WARNINGS").await;
        // Column count, 3 columns, one row, EOF/OK: 6 packets for one warning.
        assert_eq!(packets, 6, "round {round}: the insert's warning is gone");
    }
}

/// `SET insert_id` is used up by the next insert: replayed on another
/// connection when the session moved, it gave a later insert the same id
/// again (ERROR 1062). Such a SET keeps its connection instead.
#[tokio::test]
async fn a_set_insert_id_applies_once_when_other_sessions_take_the_connections() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_insert_id", "id INT AUTO_INCREMENT PRIMARY KEY, s INT").await;
    let proxy = start_proxy(pooled(4, "2s")).await;
    let mut a = client(&proxy).await;
    a.query_drop("SET insert_id = 5000").await.unwrap();
    a.query_drop(format!("INSERT INTO {table} (s) VALUES (0)")).await.unwrap();
    assert_eq!(a.last_insert_id(), Some(5000));
    // Other sessions pin connections (user variables) while A is idle.
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut o = client(&proxy).await;
        o.query_drop("SET @mine = 1").await.unwrap();
        others.push(o);
    }
    for i in 1..4 {
        a.query_drop(format!("INSERT INTO {table} (s) VALUES ({i})"))
            .await
            .unwrap_or_else(|e| panic!("insert {i} after SET insert_id: {e}"));
        assert_eq!(a.last_insert_id(), Some(5000 + i));
    }
    // Used up, as the primary says (a replica, where the SET was
    // replayed, still held 5000).
    let left: Option<u64> = a.query_first("SELECT @@session.insert_id").await.unwrap();
    assert_eq!(left, Some(0));
    for o in others {
        o.disconnect().await.unwrap();
    }
}

/// A `SET GLOBAL` through the proxy reaches the sessions that start after
/// it, as on the server: a pooled connection to the primary opened before
/// it holds the old value as its session's, and is not handed out again.
/// With multiplexing and with reuse.
#[tokio::test]
async fn a_set_global_reaches_the_sessions_that_start_after_it() {
    let _serial = SERIAL.lock().await;
    let global = "SELECT @@global.default_week_format";
    let original = admin(PRIMARY).await.scalar(global).await.expect("a value");
    let changed = (original.parse::<u8>().expect("a number") + 1) % 8;
    let on_primary = "SELECT /* rwsplit:primary */ @@session.default_week_format";
    for config in [pooled(4, "2s"), lab_config("[pool]\nreuse = true\n")] {
        let proxy = start_proxy(config).await;
        let mut before = client(&proxy).await;
        let value: Option<String> = before.query_first(on_primary).await.unwrap();
        assert_eq!(value.as_deref(), Some(original.as_str()));
        before.disconnect().await.unwrap();
        let caps = client_caps(true);
        let mut a = Raw::connect(&proxy.addr.to_string(), &login("admin", "admin", None, caps))
            .await
            .unwrap();
        a.exec(&format!("SET GLOBAL default_week_format = {changed}")).await;
        let mut after = client(&proxy).await;
        let value: Option<String> = after.query_first(on_primary).await.unwrap();
        admin(PRIMARY).await.exec(&format!("SET GLOBAL default_week_format = {original}")).await;
        assert_eq!(value, Some(changed.to_string()));
        after.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn a_full_pool_makes_a_statement_wait_then_error_1040() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_full", "id INT").await;
    let proxy = start_proxy(pooled(1, "300ms")).await;
    let mut holder = client(&proxy).await;
    holder.query_drop("BEGIN").await.unwrap();
    holder.query_drop(format!("INSERT INTO {table} VALUES (1)")).await.unwrap();
    let mut waiter = client(&proxy).await;
    let started = Instant::now();
    let err = waiter.query_drop(format!("INSERT INTO {table} VALUES (2)")).await.unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    println!("after {took:?}: {text}");
    assert!(text.contains("1040") && text.contains("pool_timeout"), "{text}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    // Once the transaction ends, its connection serves the other session.
    holder.query_drop("COMMIT").await.unwrap();
    waiter.query_drop(format!("INSERT INTO {table} VALUES (3)")).await.unwrap();
    let json = pool_json(&proxy).await;
    let body = json.to_string();
    assert_eq!(json["backends"][0]["timeouts_total"], 1, "{body}");
    assert_eq!(json["backends"][0]["connections"], 1, "{body}");
    let age = json["backends"][0]["mean_connection_age_s"].as_f64().unwrap();
    assert!((0.2..30.0).contains(&age), "{body}");
    assert!(json["kept_by_reason"]["transaction"].as_u64().unwrap() >= 1, "{body}");
    let rows = admin(PRIMARY)
        .await
        .scalar(&format!("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.{table}"))
        .await;
    assert_eq!(rows.as_deref(), Some("1,3"));
}

/// The server thread of `c`'s primary connection.
async fn thread(c: &mut mysql_async::Conn) -> u64 {
    let sql = "SELECT /* rwsplit:primary */ CONNECTION_ID()";
    c.query_first::<u64, _>(sql).await.unwrap().unwrap()
}

/// Other sessions run statements on the pool meanwhile.
async fn churn(proxy: &TestProxy, sessions: usize) {
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let mut c = client(proxy).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let v: Option<i64> =
                    c.query_first(format!("SELECT /* rwsplit:primary */ {i}")).await.unwrap();
                assert_eq!(v, Some(i as i64));
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.expect("churning session failed");
    }
}

#[tokio::test]
async fn each_kind_of_connection_state_keeps_its_connection() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_state", "id INT").await;
    let proxy = start_proxy(pooled(3, "5s")).await;
    let mut a = client(&proxy).await;
    // An open transaction: its uncommitted row stays visible to it.
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop(format!("INSERT INTO {table} VALUES (1)")).await.unwrap();
    let t = thread(&mut a).await;
    churn(&proxy, 20).await;
    let n: Option<i64> = a.query_first(format!("SELECT COUNT(*) FROM {table}")).await.unwrap();
    assert_eq!(n, Some(1), "the transaction lost its connection");
    assert_eq!(thread(&mut a).await, t);
    a.query_drop("ROLLBACK").await.unwrap();

    // A user lock (GET_LOCK) stays held by the same connection (and
    // keeps it for the rest of the session: another session goes on).
    let mut a = client(&proxy).await;
    let lock = unique("pool_lock");
    a.query_drop(format!("SELECT GET_LOCK('{lock}', 0)")).await.unwrap();
    let t = thread(&mut a).await;
    churn(&proxy, 20).await;
    let holder: Option<u64> =
        a.query_first(format!("SELECT IS_USED_LOCK('{lock}')")).await.unwrap();
    assert_eq!(holder, Some(t), "the user lock moved");
    a.query_drop(format!("SELECT RELEASE_LOCK('{lock}')")).await.unwrap();

    // SQL-level PREPARE: EXECUTE finds the statement.
    let mut a = client(&proxy).await;
    a.query_drop("PREPARE pool_s FROM 'SELECT 40 + 2'").await.unwrap();
    churn(&proxy, 20).await;
    let v: Option<i64> = a.query_first("EXECUTE pool_s").await.unwrap();
    assert_eq!(v, Some(42), "the SQL prepared statement was lost");

    // LOCK TABLES: the locked table stays readable (elsewhere it is not).
    a.query_drop(format!("LOCK TABLES {table} READ")).await.unwrap();
    churn(&proxy, 20).await;
    let n: Option<i64> = a.query_first(format!("SELECT COUNT(*) FROM {table}")).await.unwrap();
    assert_eq!(n, Some(0));
    a.query_drop("UNLOCK TABLES").await.unwrap();

    // SQL_CALC_FOUND_ROWS, then FOUND_ROWS() on the same connection.
    let mut b = client(&proxy).await;
    b.query_drop(format!("INSERT INTO {table} VALUES (1), (2), (3)")).await.unwrap();
    let _: Vec<i64> = b
        .query(format!("SELECT /* rwsplit:primary */ SQL_CALC_FOUND_ROWS id FROM {table} LIMIT 1"))
        .await
        .unwrap();
    let found: Option<i64> = b.query_first("SELECT FOUND_ROWS()").await.unwrap();
    assert_eq!(found, Some(3));

    let json = pool_json(&proxy).await;
    let body = json.to_string();
    for reason in
        ["transaction", "session_state", "sql_prepared", "locked_tables", "next_statement"]
    {
        assert!(json["kept_by_reason"][reason].as_u64().unwrap() > 0, "{reason}: {body}");
    }
    assert!(pool_connections(&proxy).await.iter().all(|&n| n <= 3));
}

/// State a stored procedure leaves in the session (a user variable, a
/// temporary table), which the proxy cannot see in the statement, keeps
/// the connection: the server reports the change (the proxy tracks
/// `session_track_state_change`), so later statements find it, and another
/// session running beside it on the primary never sees it.
#[tokio::test]
async fn a_procedure_that_changes_the_session_keeps_its_connection() {
    let _serial = SERIAL.lock().await;
    let (var_proc, tmp_proc) = (unique("pool_var"), unique("pool_tmp"));
    let mut admin_conn = admin(PRIMARY).await;
    admin_conn
        .exec(&format!("CREATE PROCEDURE app.{var_proc}() BEGIN SET @pool_v = 42; END"))
        .await;
    admin_conn
        .exec(&format!(
            "CREATE PROCEDURE app.{tmp_proc}() BEGIN \
             CREATE TEMPORARY TABLE pool_proc_tmp (n INT); INSERT INTO pool_proc_tmp VALUES (1), (2); END"
        ))
        .await;
    wait_replicas_caught_up().await;
    let proxy = start_proxy(pooled(2, "5s")).await;
    let mut a = client(&proxy).await;
    let mut b = client(&proxy).await;
    a.query_drop(format!("CALL {var_proc}()")).await.unwrap();
    a.query_drop(format!("CALL {tmp_proc}()")).await.unwrap();
    let a_thread = thread(&mut a).await;
    for _ in 0..20 {
        // B runs on the primary too, on the other connection: A's stays
        // with A, and what the procedures left there never reaches B.
        let (v, t): (Option<i64>, u64) =
            b.query_first("SELECT @pool_v, CONNECTION_ID()").await.unwrap().unwrap();
        assert_eq!(v, None, "A's variable reached B");
        assert_ne!(t, a_thread, "B ran on A's connection");
        let r = b.query_drop("SELECT /* rwsplit:primary */ COUNT(*) FROM pool_proc_tmp").await;
        assert!(r.is_err(), "A's temporary table reached B");
        let v: Option<i64> = a.query_first("SELECT @pool_v").await.unwrap();
        assert_eq!(v, Some(42), "the variable the procedure set was lost");
        let n: Option<i64> = a
            .query_first("SELECT /* rwsplit:primary */ COUNT(*) FROM pool_proc_tmp")
            .await
            .unwrap();
        assert_eq!(n, Some(2), "the temporary table the procedure created was lost");
    }
    a.disconnect().await.unwrap();
    b.disconnect().await.unwrap();
    // A procedure that changes nothing in the session leaves the
    // connection to the pool.
    let plain = unique("pool_plain");
    admin_conn.exec(&format!("CREATE PROCEDURE app.{plain}() BEGIN SELECT 1; END")).await;
    wait_replicas_caught_up().await;
    let before = pool_json(&proxy).await["kept_by_reason"]["session_state"].as_u64().unwrap();
    let mut c = client(&proxy).await;
    let _: Vec<i64> = c.query(format!("CALL {plain}()")).await.unwrap();
    // Nor does a statement that sets variables for itself only (the
    // server reports that as a state change too).
    let _: Vec<i64> = c
        .query("SET STATEMENT max_statement_time = 10 FOR SELECT /* rwsplit:primary */ 1")
        .await
        .unwrap();
    churn(&proxy, 5).await;
    let after = pool_json(&proxy).await["kept_by_reason"]["session_state"].as_u64().unwrap();
    assert_eq!(
        after, before,
        "a procedure that changed nothing, or a SET STATEMENT, kept its connection"
    );
    for p in [var_proc, tmp_proc, plain] {
        admin_conn.exec(&format!("DROP PROCEDURE app.{p}")).await;
    }
}

/// `ROW_COUNT()` as a statement of its own reads what the session's
/// previous statement left, though the connection that ran it served
/// another session in between (one connection per server here, so each
/// statement of B runs on the connection A's write ran on).
#[tokio::test]
async fn row_count_reads_the_sessions_previous_statement_on_a_shared_connection() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_rc", "id INT PRIMARY KEY, v INT").await;
    let proxy = start_proxy(pooled(1, "5s")).await;
    let mut a = client(&proxy).await;
    let mut b = client(&proxy).await;
    let steps = [
        (format!("INSERT INTO {table} VALUES (1, 0), (2, 0), (3, 0)"), 3),
        (format!("UPDATE {table} SET v = 1 WHERE id < 3"), 2),
        (format!("UPDATE {table} SET v = 1 WHERE id < 3"), 0),
        (format!("SELECT /* rwsplit:primary */ * FROM {table}"), -1),
        (format!("DELETE FROM {table} WHERE id = 3"), 1),
        (format!("INSERT INTO {table} VALUES (1, 0)"), -1),
    ];
    for (statement, want) in steps {
        let failed = a.query_drop(&statement).await.is_err();
        // B's statements on the primary change what the server's
        // ROW_COUNT() says on that connection. (After an error A keeps
        // its connection until its next command, which may ask about it.)
        if !failed {
            b.query_drop(format!("DELETE FROM {table} WHERE id > 100")).await.unwrap();
            let _: Vec<i64> = b.query("SELECT /* rwsplit:primary */ 7").await.unwrap();
        }
        let got: Option<i64> = a.query_first("SELECT ROW_COUNT()").await.unwrap();
        assert_eq!(got, Some(want), "ROW_COUNT() after {statement}");
    }
    // The column keeps the name the server gives it.
    a.query_drop(format!("UPDATE {table} SET v = 2 WHERE id = 1")).await.unwrap();
    let row: mysql_async::Row = a.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
    assert_eq!(row.columns_ref()[0].name_str(), "ROW_COUNT()");
    assert_eq!(row.get::<i64, _>(0), Some(1));
    // So does an expression that holds the call.
    a.query_drop(format!("UPDATE {table} SET v = 5 WHERE id = 1")).await.unwrap();
    let sql = "SELECT hex(concat(row_count( ))), 10 * ROW_COUNT() AS ten";
    let row: mysql_async::Row = a.query_first(sql).await.unwrap().unwrap();
    let names: Vec<_> = row.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
    assert_eq!(names, ["hex(concat(row_count( )))", "ten"]);
    assert_eq!(row.get::<String, _>(0).as_deref(), Some("31"));
    assert_eq!(row.get::<i64, _>(1), Some(10));
    // Inside one multi-statement command the server answers.
    let mut results =
        a.query_iter(format!("UPDATE {table} SET v = 3; SELECT ROW_COUNT()")).await.unwrap();
    let update: Vec<mysql_async::Row> = results.collect().await.unwrap();
    assert!(update.is_empty());
    let n: Vec<i64> = results.collect().await.unwrap();
    assert_eq!(n, vec![2]);
    drop(results);
    let mut admin_conn = admin(PRIMARY).await;
    admin_conn.exec(&format!("DROP TABLE app.{table}")).await;
}

/// After a `CALL`, `ROW_COUNT()` (the procedure's last statement's count,
/// which the CALL's reply does not carry) is asked of the connection the
/// CALL ran on: the session keeps it until its next command, which asks.
/// B wants the only primary connection meanwhile and waits for it; before,
/// B took it at once and A's `ROW_COUNT()` read B's statement's -1.
#[tokio::test]
async fn row_count_after_a_call_is_the_procedures() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_rc_call", "id INT PRIMARY KEY, v INT").await;
    let procedure = format!("{table}_bump");
    let mut setup = admin(PRIMARY).await;
    setup.exec(&format!("INSERT INTO app.{table} VALUES (1, 0), (2, 0), (3, 0)")).await;
    setup
        .exec(&format!(
            "CREATE PROCEDURE app.{procedure}() UPDATE app.{table} SET v = v + 1 WHERE id < 3"
        ))
        .await;
    let proxy = start_proxy(pooled(1, "5s")).await;
    let mut a = client(&proxy).await;
    let mut b = client(&proxy).await;
    for round in 0..3 {
        a.query_drop(format!("CALL {procedure}()")).await.unwrap();
        let other = tokio::spawn(async move {
            let _: Vec<i64> = b.query("SELECT /* rwsplit:primary */ 7").await.unwrap();
            b
        });
        // B either waits for the connection A kept, or got it (the bug).
        wait_pool(&proxy, |j| j["backends"][0]["waiting"] == 1 || other.is_finished()).await;
        let got: Option<i64> = a.query_first("SELECT ROW_COUNT()").await.unwrap();
        assert_eq!(got, Some(2), "round {round}: ROW_COUNT() after the CALL");
        b = other.await.unwrap();
    }
    setup.exec(&format!("DROP PROCEDURE app.{procedure}")).await;
    setup.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test]
async fn idle_connections_close_after_idle_timeout_down_to_min_idle() {
    let _serial = SERIAL.lock().await;
    let mut config = pooled(4, "2s");
    config.pool.idle_timeout = Duration::from_millis(300);
    config.pool.min_idle = 1;
    let proxy = start_proxy(config).await;
    // Three transactions at once need three primary connections.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut c = client(&proxy).await;
        c.query_drop("BEGIN").await.unwrap();
        sessions.push(c);
    }
    let primary = |idle: u64, open: u64| {
        move |j: &serde_json::Value| {
            j["backends"][0]["idle"] == idle && j["backends"][0]["connections"] == open
        }
    };
    for mut c in sessions {
        c.query_drop("COMMIT").await.unwrap();
        c.disconnect().await.unwrap();
    }
    wait_pool(&proxy, primary(3, 3)).await;
    // Past idle_timeout, all but min_idle close.
    wait_pool(&proxy, primary(1, 1)).await;
    // And the last one stays through more than two idle_timeouts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(primary(1, 1)(&pool_json(&proxy).await), "{}", pool_json(&proxy).await);
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_not_used() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_closed", "id INT").await;
    let proxy = start_proxy(pooled(2, "2s")).await;
    let mut c = client(&proxy).await;
    c.query_drop(format!("INSERT INTO {table} VALUES (1)")).await.unwrap();
    let old = thread(&mut c).await;
    // The server ends the idle pooled connections (as a restart or
    // wait_timeout would).
    kill_app_connections(&[PRIMARY]).await;
    // The next write gets a live connection: no error, nothing lost.
    let mut a = admin(PRIMARY).await;
    c.query_drop(format!("INSERT INTO {table} VALUES (2)"))
        .await
        .expect("write after the server closed the pooled connection");
    assert_ne!(thread(&mut c).await, old);
    let rows = a.scalar(&format!("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.{table}")).await;
    assert_eq!(rows.as_deref(), Some("1,2"));
}

#[tokio::test]
async fn idle_connections_of_one_worker_make_way_for_sessions_of_another() {
    let _serial = SERIAL.lock().await;
    require_lab();
    // Two session workers and one connection to the primary in all: a
    // session of the second worker needs the first worker's idle one gone.
    let port = free_port();
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[[users]]\nname = \"app\"\npassword = \"app\"\n\
         [[backends]]\nname = \"primary\"\naddress = \"{PRIMARY}\"\nrole = \"primary\"\n\
         [pool]\nmultiplex = true\nmax_connections_per_backend = 1\npool_timeout = \"3s\"\n"
    );
    let path = temp_config("rwsplit_pool_workers", &text);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .arg("--config")
        .arg(&path)
        .env("RWSPLIT_WORKER_THREADS", "2")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start rwsplit");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "rwsplit did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sessions are handed to the workers in turn.
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(Raw::app(&addr, true).await);
    }
    for (i, s) in sessions.iter_mut().enumerate() {
        let started = Instant::now();
        assert_eq!(s.scalar(&format!("SELECT {i}")).await.as_deref(), Some(&*i.to_string()));
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    }
    child.kill().await.unwrap();
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn autocommit_off_shares_connections_between_transactions_and_never_leaks() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_ac", "id INT").await;
    let mut check = admin(PRIMARY).await;
    // One primary connection for everyone.
    let proxy = start_proxy(pooled(1, "3s")).await;
    let mut a = client(&proxy).await;
    let mut b = client(&proxy).await;
    // A works as DB-API drivers do (autocommit off), B with autocommit on,
    // both on the same connection in turn.
    a.query_drop("SET autocommit = 0").await.unwrap();
    for i in 0..5 {
        a.query_drop(format!("INSERT INTO {table} VALUES ({})", 100 + i)).await.unwrap();
        a.query_drop("COMMIT").await.unwrap();
        // B's insert commits by itself: visible at once from elsewhere.
        b.query_drop(format!("INSERT INTO {table} VALUES ({i})")).await.unwrap();
        let seen = check.scalar(&format!("SELECT COUNT(*) FROM app.{table} WHERE id = {i}")).await;
        assert_eq!(seen.as_deref(), Some("1"), "B's write was left uncommitted by A's autocommit");
    }
    // A's uncommitted write stays A's until it commits.
    a.query_drop(format!("INSERT INTO {table} VALUES (999)")).await.unwrap();
    let seen = check.scalar(&format!("SELECT COUNT(*) FROM app.{table} WHERE id = 999")).await;
    assert_eq!(seen.as_deref(), Some("0"));
    a.query_drop("ROLLBACK").await.unwrap();
    // A read under autocommit off opens a snapshot (unflagged by the
    // server): the connection stays with A until it commits.
    let kept = |proxy: &TestProxy| {
        proxy.shared.pool.bound[rwsplit::session::pool::Binding::Transaction as usize]
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = kept(&proxy);
    let _: Option<i64> = a.query_first(format!("SELECT COUNT(*) FROM {table}")).await.unwrap();
    assert_eq!(kept(&proxy), before + 1, "the snapshot's connection was given back");
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(kept(&proxy), before + 1);
    let ac: Option<i64> = a.query_first("SELECT /* rwsplit:primary */ @@autocommit").await.unwrap();
    assert_eq!(ac, Some(0));
    a.query_drop("COMMIT").await.unwrap();
    let ac: Option<i64> = b.query_first("SELECT /* rwsplit:primary */ @@autocommit").await.unwrap();
    assert_eq!(ac, Some(1));
    // Ten autocommit-off sessions, one connection: none waits for another
    // session's idle setting, only for transactions.
    let mut tasks = Vec::new();
    for s in 0..10 {
        let mut c = client(&proxy).await;
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            c.query_drop("SET autocommit = 0").await.unwrap();
            for i in 0..5 {
                c.query_drop(format!("INSERT INTO {table} VALUES ({})", 1000 + s * 10 + i))
                    .await
                    .unwrap();
                c.query_drop("COMMIT").await.unwrap();
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.expect("autocommit-off session failed");
    }
    let n = check.scalar(&format!("SELECT COUNT(*) FROM app.{table} WHERE id >= 1000")).await;
    assert_eq!(n.as_deref(), Some("50"));
}

#[tokio::test]
async fn last_insert_id_is_right_after_a_read_on_a_replica_pooled_or_not() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("pool_lii", "id INT AUTO_INCREMENT PRIMARY KEY, v INT").await;
    for config in [pooled(2, "2s"), lab_config("[consistency]\nmode = \"eventual\"\n")] {
        let proxy = start_proxy(config).await;
        let mut c = client(&proxy).await;
        for i in 0..5 {
            c.query_drop(format!("INSERT INTO {table} (v) VALUES ({i})")).await.unwrap();
            let id = c.last_insert_id().unwrap();
            // A read between them runs on a replica, and is the session's
            // last statement when LAST_INSERT_ID() is asked.
            let _: Option<i64> = c.query_first("SELECT 1").await.unwrap();
            let asked: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
            assert_eq!(asked, Some(id), "LAST_INSERT_ID() after a read elsewhere");
        }
    }
}

/// A database's options (its default character set) changed through the
/// proxy reach every pooled connection that had selected it, as they
/// would a new connection: a server connection keeps the options it loaded
/// when it selected its database, so a connection another session left
/// there would otherwise create tables in the old character set. The
/// ALTERs alone, and each as one statement of a multi-statement.
#[tokio::test]
async fn a_pooled_connection_sees_a_database_altered_on_another() {
    let _serial = SERIAL.lock().await;
    for after in ["", "; DO 1"] {
        let db = unique("pool_alterdb");
        let mut a = admin(PRIMARY).await;
        a.exec(&format!("CREATE DATABASE {db} CHARACTER SET utf8mb4")).await;
        a.exec(&format!("GRANT ALL ON {db}.* TO app")).await;
        let proxy = start_proxy(pooled(2, "5s")).await;
        let addr = proxy.addr.to_string();
        let session = || async {
            let login = login("app", "app", Some(&db), client_caps(true));
            Raw::connect(&addr, &login).await.expect("login through the proxy")
        };
        // (backend thread, collation of its database) of the connection a
        // statement runs on.
        const ASKED: &str = "CONCAT(CONNECTION_ID(), ' ', @@collation_database)";
        let on_connection = |answer: Option<String>| {
            let answer = answer.expect("an answer");
            let (thread, collation) = answer.split_once(' ').expect("thread and collation");
            (thread.to_string(), collation.to_string())
        };
        // Session x holds one of the two connections in a transaction while
        // session y alters the database to latin2 on the other, y's.
        let mut x = session().await;
        x.exec("BEGIN").await;
        let (x_thread, _) = on_connection(x.scalar(&format!("SELECT {ASKED}")).await);
        let mut y = session().await;
        y.exec(&format!("ALTER DATABASE DEFAULT CHARACTER SET latin2{after}")).await;
        // x alters it back to utf8mb4 on its own connection, then gives it up.
        x.exec(&format!("ALTER DATABASE DEFAULT CHARACTER SET utf8mb4{after}")).await;
        drop((x, y));
        // The connection y used, reached by holding the other in a transaction.
        let mut holder = session().await;
        holder.exec("BEGIN").await;
        let (held, collation) = on_connection(holder.scalar(&format!("SELECT {ASKED}")).await);
        let (other, collation) = if held == x_thread {
            let mut z = session().await;
            on_connection(z.scalar(&format!("SELECT /* rwsplit:primary */ {ASKED}")).await)
        } else {
            (held, collation)
        };
        assert_ne!(other, x_thread, "the test did not reach the connection y altered on");
        assert_eq!(collation, "utf8mb4_general_ci", "{after:?}: {other} kept the old options");
        holder.exec("ROLLBACK").await;
        a.exec(&format!("DROP DATABASE {db}")).await;
    }
}

/// A table read lock taken by FLUSH TABLES ... WITH READ LOCK (and a
/// backup lock, BACKUP LOCK) stays with the connection that took it, as
/// LOCK TABLES does: while it is held no other session gets that
/// connection (there another session's write went through the lock, or
/// failed with "conflicting read lock"), and the session's UNLOCK runs
/// there and releases it (on another connection it released nothing and
/// writes stayed blocked).
#[tokio::test]
async fn a_flush_with_read_lock_keeps_its_connection_until_unlocked() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("flushlock", "n INT").await;
    let config = lab_config("[pool]\nmultiplex = true\n");
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();
    let admin_session = || async {
        let login = login("admin", "admin", Some("app"), client_caps(true));
        Raw::connect(&addr, &login).await.expect("admin through the proxy")
    };
    // What each lock holds off: writes; DDL (a backup lock lets rows change).
    let insert = format!("INSERT INTO {table} VALUES (1)");
    let alter = format!("ALTER TABLE {table} COMMENT 'altered'");
    for (lock, unlock, blocked) in [
        (format!("FLUSH TABLES {table} WITH READ LOCK"), "UNLOCK TABLES", &insert),
        (format!("BACKUP LOCK app.{table}"), "BACKUP UNLOCK", &alter),
    ] {
        let mut holder = admin_session().await;
        holder.exec(&lock).await;
        // Sessions on every worker: none may get the holder's connection.
        let mut others = Vec::new();
        for _ in 0..4 {
            let mut other = admin_session().await;
            other.exec("SET SESSION lock_wait_timeout = 1").await;
            others.push(other);
        }
        for other in &mut others {
            let r = other.query(blocked).await;
            let err = rwsplit::protocol::messages::parse_err(&r[0].1).map(|e| e.code);
            assert_eq!(err, Some(1205), "{lock}: {blocked} waits for the lock");
        }
        holder.exec(unlock).await;
        for other in &mut others {
            other.exec(blocked).await;
        }
    }
}
