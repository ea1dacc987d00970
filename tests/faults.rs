//! Faults the proxy bounds: statements past `max_query_time` are killed on
//! their backend and reported; a backend paused mid-statement (SIGSTOP,
//! as in a network partition) does not hang the session.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// The tests here pause lab servers and kill app's connections on them:
/// one at a time.
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
    // A global limit of 200 ms; admin's own 300 ms, app's own 1 s.
    let mut config = lab_config("[timeouts]\nmax_query_time = \"200ms\"\n");
    config.users[0].max_query_time = Some(Duration::from_secs(1));
    config.users[1].max_query_time = Some(Duration::from_millis(300));
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();
    let mut admin_user = Raw::connect(&addr, &login("admin", "admin", None, client_caps(false)))
        .await
        .expect("admin logs in");
    let (code, _) = query_error(&mut admin_user, "SELECT SLEEP(10)").await.expect("killed");
    assert_eq!(code, 1969);
    let mut app = Raw::app(&addr, false).await;
    assert_eq!(
        app.scalar("SELECT SLEEP(0.6)").await.as_deref(),
        Some("0"),
        "app's own 1 s limit, not the global 200 ms"
    );
    let (code, _) = query_error(&mut app, "SELECT SLEEP(10)").await.expect("killed at 1 s");
    assert_eq!(code, 1969);
}

/// A mysql_async connection as user app through `proxy` (prepared
/// statements are the driver's).
async fn driver_client(proxy: &TestProxy) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(proxy.addr.port())
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("app"))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("login through the proxy")
}

/// Pauses a lab server until dropped.
struct Paused(i32);

impl Paused {
    fn replica1() -> Paused {
        Paused::node("replica1")
    }

    fn node(name: &str) -> Paused {
        let pid = lab_pid(name);
        signal(pid, "-STOP");
        Paused(pid)
    }
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
    // The session goes on, reading from replica1 again once it is resumed.
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("2"));
}

/// A monitored proxy whose monitor gives up on a server within about a
/// second, without `max_query_time`: what bounds a statement on a paused
/// server is the monitor finding it down.
fn monitored_without_query_limit() -> rwsplit::Config {
    lab_config(
        "[timeouts]\nconnect = \"500ms\"\n[consistency]\nmode = \"eventual\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\
         [monitor]\nuser = \"monitor\"\npassword = \"monitor\"\ninterval = \"100ms\"\n\
         connect_timeout = \"300ms\"\nquery_timeout = \"300ms\"\nfail_after = 2\n",
    )
}

/// A monitored proxy whose reads go to replica1 alone (replica2 has
/// weight 0), every server seen healthy.
async fn monitored_replica1_only() -> TestProxy {
    let mut config = monitored_without_query_limit();
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    all_healthy(&proxy).await;
    proxy
}

#[tokio::test]
async fn a_read_on_a_paused_replica_runs_elsewhere_once_the_monitor_loses_it() {
    let _serial = SERIAL.lock().await;
    let proxy = monitored_replica1_only().await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("2"));
    let started = Instant::now();
    let answered = {
        let _paused = Paused::replica1();
        c.scalar("SELECT @@server_id FROM (SELECT SLEEP(0.2)) AS t").await
    };
    let took = started.elapsed();
    println!("read on a paused replica answered after {took:?}");
    // Nothing of the reply had been sent: it ran again, on the primary
    // (replica2 has weight 0), and the client saw no error.
    assert_eq!(answered.as_deref(), Some("1"));
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
}

/// The same with a prepared statement: its execute on the paused replica
/// is given up once the monitor loses the replica, and runs on the
/// primary (before, the proxy waited for the replica's first byte without
/// watching the monitor, until the replica came back).
#[tokio::test]
async fn a_prepared_read_on_a_paused_replica_runs_elsewhere_once_the_monitor_loses_it() {
    use mysql_async::prelude::Queryable;
    let _serial = SERIAL.lock().await;
    let proxy = monitored_replica1_only().await;
    let mut c = driver_client(&proxy).await;
    let sql = "SELECT @@server_id FROM (SELECT SLEEP(?)) AS t";
    // Prepared on replica1 by its first execute.
    let first: Option<i64> = c.exec_first(sql, (0.0,)).await.unwrap();
    assert_eq!(first, Some(2));
    let started = Instant::now();
    let answered = {
        let _paused = Paused::replica1();
        tokio::time::timeout(Duration::from_secs(10), c.exec_first::<i64, _, _>(sql, (0.2,)))
            .await
            .expect("the execute was not given up while the replica was paused")
    };
    let took = started.elapsed();
    println!("prepared read on a paused replica answered after {took:?}");
    assert_eq!(answered.unwrap(), Some(1));
    let v: Option<i64> = c.exec_first("SELECT ? * 7", (6,)).await.unwrap();
    assert_eq!(v, Some(42));
}

/// The proxy's own work on a paused replica before a read (replaying the
/// session's SETs on its connection there, preparing a statement there) is
/// given up once the monitor loses the replica, and the read runs on the
/// primary; before, the session waited until the replica came back.
#[tokio::test]
async fn replaying_sets_or_preparing_on_a_paused_replica_gives_way_to_the_primary() {
    use mysql_async::prelude::Queryable;
    let _serial = SERIAL.lock().await;
    let proxy = monitored_replica1_only().await;
    let mut c = driver_client(&proxy).await;
    // The session's connection to replica1 is open, then a SET it has not
    // run yet is recorded.
    let on: Option<i64> = c.query_first("SELECT @@server_id").await.unwrap();
    assert_eq!(on, Some(2));
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'").await.unwrap();
    let started = Instant::now();
    let answered = {
        let _paused = Paused::replica1();
        let read = c.query_first::<(i64, String), _>("SELECT @@server_id, @@sql_mode");
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the SET replay was not given up while the replica was paused")
    };
    println!("read after a SET, replica paused: answered after {:?}", started.elapsed());
    assert_eq!(answered.unwrap(), Some((1, "ANSI_QUOTES".to_string())));
    all_healthy(&proxy).await;
    // A statement never executed on replica1: its prepare there.
    let on: Option<i64> = c.query_first("SELECT @@server_id").await.unwrap();
    assert_eq!(on, Some(2), "replica1 takes reads again");
    let started = Instant::now();
    let answered = {
        let _paused = Paused::replica1();
        let read = c.exec_first::<i64, _, _>("SELECT @@server_id + ?", (0,));
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the prepare was not given up while the replica was paused")
    };
    println!("first execute, replica paused: answered after {:?}", started.elapsed());
    assert_eq!(answered.unwrap(), Some(1));
}

/// A read waiting on a lagging replica for the session's write (the GTID
/// wait pipelined with the read), when that replica is paused, is given
/// up once the monitor loses the replica, and the primary answers it with
/// the write; before, the session waited until the replica came back.
#[tokio::test]
async fn a_gtid_wait_on_a_paused_replica_gives_way_to_the_primary() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("gtid_pause", "id INT PRIMARY KEY, v INT").await;
    let mut config = lab_config(
        "[timeouts]\nconnect = \"500ms\"\n\
         [monitor]\nuser = \"monitor\"\npassword = \"monitor\"\ninterval = \"100ms\"\n\
         connect_timeout = \"300ms\"\nquery_timeout = \"300ms\"\nfail_after = 2\n\
         unknown_lag = \"include\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [routing]\nmax_replication_lag = \"1h\"\n\
         [consistency]\nmode = \"gtid\"\ngtid_wait_timeout = \"20s\"\n",
    );
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    all_healthy(&proxy).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("2"));
    lab(&["lag", "replica1", "30"]);
    c.exec(&format!("INSERT INTO {table} VALUES (1, 42)")).await;
    let started = Instant::now();
    let answered = {
        let _paused = Paused::replica1();
        let sql = format!("SELECT CONCAT(v, ' on ', @@server_id) FROM {table} WHERE id = 1");
        tokio::time::timeout(Duration::from_secs(10), c.scalar(&sql)).await
    };
    println!("read waiting for its GTID, replica paused: answered after {:?}", started.elapsed());
    lab(&["lag", "replica1", "start"]);
    let got = answered.expect("the GTID wait was not given up while the replica was paused");
    assert_eq!(got.as_deref(), Some("42 on 1"), "the primary answers, with the write");
    wait_replicas_caught_up().await;
    admin(PRIMARY).await.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test]
async fn a_write_on_a_paused_primary_gets_lost_connection_and_reads_go_on() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("paused_primary", "id INT PRIMARY KEY").await;
    let mut p = admin(PRIMARY).await;
    let proxy = start_proxy(monitored_without_query_limit()).await;
    all_healthy(&proxy).await;
    let addr = proxy.addr.to_string();
    let mut c = Raw::app(&addr, true).await;
    c.exec(&format!("INSERT INTO app.{table} VALUES (1)")).await;
    // The reader below reads eventually consistent: the row is on the
    // replicas before the primary stops.
    wait_replicas_caught_up().await;
    let (outcome, took, count) = {
        let _paused = Paused::node("primary");
        let started = Instant::now();
        let outcome = query_error(&mut c, &format!("INSERT INTO app.{table} VALUES (2)")).await;
        let took = started.elapsed();
        // Reads go on from the replicas while the primary is paused.
        let mut reader = Raw::app(&addr, true).await;
        (outcome, took, reader.scalar(&format!("SELECT COUNT(*) FROM app.{table}")).await)
    };
    println!("write on a paused primary failed after {took:?}: {outcome:?}");
    let (code, message) = outcome.expect("the write fails instead of hanging");
    assert_eq!(code, rwsplit::error::BACKEND_LOST, "{message}");
    assert!(message.contains("primary"), "{message}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(count.as_deref(), Some("1"));
    // Once the primary is back, the same session writes again.
    all_healthy(&proxy).await;
    c.exec(&format!("INSERT INTO app.{table} VALUES (3)")).await;
    assert_eq!(
        p.scalar(&format!("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.{table} WHERE id <> 2"))
            .await
            .as_deref(),
        Some("1,3")
    );
}

/// While the primary is down, clients still log in, set their session up
/// and read: many drivers send a SET right after logging in (PyMySQL
/// `SET NAMES`, Connector/J `set autocommit=1, sql_mode = ...`), and
/// before, that SET went to the primary and failed, so they could not
/// even connect. A replica runs such session state
/// meanwhile (SET, USE, COM_INIT_DB, COM_STMT_PREPARE), and the primary
/// gets it once it is back. A proxy started while the primary is down
/// does not hold logins up probing it.
#[tokio::test]
async fn clients_log_in_and_read_while_the_primary_is_down() {
    use mysql_async::prelude::Queryable;
    let _serial = SERIAL.lock().await;
    // A connect timeout a login would clearly show if it waited for one.
    let config = || {
        let mut config = monitored_without_query_limit();
        config.timeouts.connect = Duration::from_secs(3);
        config
    };
    let proxy = start_proxy(config()).await;
    all_healthy(&proxy).await;
    let addr = proxy.addr.to_string();
    let table = lab_table("down_prepared", "id INT PRIMARY KEY").await;
    let mut insert_id = [0u8; 4];
    let mut kept = Raw::app(&addr, true).await;
    kept.exec("SELECT 1").await;
    // Probed and found down (before its first probe a backend is not
    // healthy either).
    let primary_down =
        |b: &serde_json::Value| b[0]["healthy"] == false && b[0]["last_error"].is_string();
    {
        let _paused = Paused::node("primary");
        wait_backends(proxy.admin.unwrap(), Duration::from_secs(10), primary_down).await;
        let started = Instant::now();
        let mut c = Raw::app(&addr, true).await;
        c.exec("SET NAMES utf8mb4").await;
        // What MariaDB Connector/J sends at login.
        c.exec("set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')").await;
        c.exec("USE app").await;
        let r = c.command(b"\x02app", rwsplit::relay::Expect::Result).await;
        assert_eq!(r.last().unwrap().1[0], 0, "COM_INIT_DB: {r:?}");
        c.exec("SET SESSION group_concat_max_len = 777").await;
        assert_eq!(c.scalar("SELECT @@group_concat_max_len").await.as_deref(), Some("777"));
        let server = c.scalar("SELECT @@server_id").await;
        assert!(matches!(server.as_deref(), Some("2" | "3")), "{server:?}");
        // A session that held a connection to the primary when it stopped.
        kept.exec("SET SESSION group_concat_max_len = 778").await;
        assert_eq!(kept.scalar("SELECT @@group_concat_max_len").await.as_deref(), Some("778"));
        // A write prepared now (on a replica) runs on the primary later.
        let r = kept.prepare(format!("\x16INSERT INTO app.{table} VALUES (5)").as_bytes()).await;
        assert_eq!(r[0].1[0], 0, "prepared while the primary is down: {r:?}");
        insert_id.copy_from_slice(&r[0].1[1..5]);
        // Prepared statements: prepared on a replica.
        let mut d = driver_client(&proxy).await;
        let v: Option<i64> = d.exec_first("SELECT ? * 7", (6,)).await.unwrap();
        assert_eq!(v, Some(42));
        let took = started.elapsed();
        println!("login, session state and reads with the primary down: {took:?}");
        assert!(took < Duration::from_secs(2), "no wait for the primary: {took:?}");

        // A proxy started now: its logins do not wait out a connect to
        // the primary to learn its greeting.
        let late = start_proxy(config()).await;
        wait_backends(late.admin.unwrap(), Duration::from_secs(10), primary_down).await;
        let started = Instant::now();
        let mut c = Raw::app(&late.addr.to_string(), true).await;
        c.exec("SET NAMES utf8mb4").await;
        let took = started.elapsed();
        println!("login to a proxy started with the primary down: {took:?}");
        assert!(took < Duration::from_secs(2), "login while the primary is down: {took:?}");
    }
    all_healthy(&proxy).await;
    // What was set while the primary was down holds there now.
    let on_primary =
        "SELECT /* rwsplit:primary */ CONCAT(@@server_id, ' ', @@group_concat_max_len)";
    assert_eq!(kept.scalar(on_primary).await.as_deref(), Some("1 778"));
    let mut execute = vec![0x17];
    execute.extend_from_slice(&insert_id);
    execute.extend_from_slice(&[0, 1, 0, 0, 0]);
    let r = kept.command(&execute, rwsplit::relay::Expect::Result).await;
    assert_eq!(r.last().unwrap().1[0], 0, "the prepared write runs on the primary: {r:?}");
    let mut p = admin(PRIMARY).await;
    assert_eq!(p.scalar(&format!("SELECT COUNT(*) FROM app.{table}")).await.as_deref(), Some("1"));
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

/// The columns of a table [`writer`] writes to.
const WRITTEN_COLUMNS: &str = "id INT AUTO_INCREMENT PRIMARY KEY, n BIGINT NOT NULL";

/// What the writers were told, for the lost/duplicated-writes check.
#[derive(Default)]
struct Told {
    /// Autocommit inserts acknowledged with OK.
    acked: Vec<i64>,
    /// Two-row transactions whose COMMIT was acknowledged.
    committed: Vec<i64>,
    /// Statements that got an error (during the outage).
    errors: u64,
    /// The slowest error reply.
    slowest_error: Duration,
}

impl Told {
    /// Acknowledged autocommit inserts and transactions.
    fn acks(&self) -> usize {
        self.acked.len() + self.committed.len()
    }

    /// Checks what the writer was told against `table` as the server at
    /// `addr` holds it: acknowledged rows missing, rows there twice, and
    /// transactions there by half.
    async fn check(&self, addr: &str, table: &str) -> Checked {
        let rows = admin(addr).await.query(&format!("SELECT n FROM {table}")).await;
        let mut present = std::collections::HashMap::<i64, u32>::new();
        for (_, payload) in &rows[2..rows.len() - 1] {
            let mut cur = rwsplit::protocol::packet::Cursor::new(payload);
            let n: i64 = String::from_utf8_lossy(cur.lenenc_bytes().unwrap()).parse().unwrap();
            *present.entry(n).or_default() += 1;
        }
        let both_rows = self.committed.iter().flat_map(|&i| [i, -i]);
        let acknowledged = self.acked.iter().copied().chain(both_rows);
        Checked {
            lost: acknowledged.filter(|n| !present.contains_key(n)).collect(),
            duplicated: present.iter().filter(|(_, c)| **c > 1).map(|(n, _)| *n).collect(),
            half: present
                .keys()
                .filter(|n| *n % 2 != 0 && !present.contains_key(&-*n))
                .copied()
                .collect(),
        }
    }
}

/// What [`Told::check`] found.
struct Checked {
    lost: Vec<i64>,
    duplicated: Vec<i64>,
    half: Vec<i64>,
}

impl Checked {
    fn assert_none(&self) {
        assert!(self.lost.is_empty(), "acknowledged but missing: {:?}", self.lost);
        assert!(self.duplicated.is_empty(), "duplicated: {:?}", self.duplicated);
        assert!(self.half.is_empty(), "half-committed transactions: {:?}", self.half);
    }
}

/// Waits until the writer has been told `n` acknowledgements (30 s at most).
async fn wait_acks(told: &std::sync::Mutex<Told>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while told.lock().unwrap().acks() < n {
        assert!(Instant::now() < deadline, "writes did not reach {n} acknowledgements");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connect_app(addr: &str) -> Raw {
    Raw::app(addr, true).await
}

/// Runs `sql`; Ok(true) on OK, Ok(false) on a server error, Err on a lost
/// connection.
async fn run(c: &mut Raw, sql: &str) -> Result<bool, ()> {
    let payload = [&[0x03u8][..], sql.as_bytes()].concat();
    match c.conn.run_own(&payload).await {
        Ok(_) => Ok(true),
        Err(rwsplit::backend::BackendError::Server { .. }) => Ok(false),
        Err(_) => Err(()),
    }
}

/// Writes numbered rows until `stop`, recording what it was told.
async fn writer(
    addr: String,
    table: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    told: std::sync::Arc<std::sync::Mutex<Told>>,
) {
    use std::sync::atomic::Ordering;
    let mut c = connect_app(&addr).await;
    let mut i: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let started = Instant::now();
        // Even numbers: an autocommit insert; odd: a two-row transaction
        // (i and -i) that must be all or nothing.
        let result = if i % 2 == 0 {
            run(&mut c, &format!("INSERT INTO {table} (n) VALUES ({i})")).await
        } else {
            let mut ok = run(&mut c, "BEGIN").await;
            for n in [i, -i] {
                if ok == Ok(true) {
                    ok = run(&mut c, &format!("INSERT INTO {table} (n) VALUES ({n})")).await;
                }
            }
            if ok == Ok(true) {
                ok = run(&mut c, "COMMIT").await;
            } else if ok == Ok(false) {
                let _ = run(&mut c, "ROLLBACK").await;
            }
            ok
        };
        {
            let mut t = told.lock().unwrap();
            match result {
                Ok(true) if i % 2 == 0 => t.acked.push(i),
                Ok(true) => t.committed.push(i),
                Ok(false) | Err(()) => {
                    t.errors += 1;
                    t.slowest_error = t.slowest_error.max(started.elapsed());
                }
            }
        }
        if result.is_err() {
            c = connect_app(&addr).await;
        }
        if result != Ok(true) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn primary_killed_and_restarted_loses_no_acknowledged_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _serial = SERIAL.lock().await;
    let table = lab_table("primary_kill", WRITTEN_COLUMNS).await;
    let config = lab_config("[consistency]\nmode = \"eventual\"\n[timeouts]\nconnect = \"1s\"\n");
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let told = Arc::new(std::sync::Mutex::new(Told::default()));
    let writer =
        tokio::spawn(writer(addr.clone(), format!("app.{table}"), stop.clone(), told.clone()));
    let (reads, read_errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (stop, reads, read_errors, addr) =
            (stop.clone(), reads.clone(), read_errors.clone(), addr.clone());
        let sql = format!("SELECT COUNT(*) FROM app.{table}");
        tokio::spawn(async move {
            let mut c = connect_app(&addr).await;
            while !stop.load(Ordering::Relaxed) {
                match run(&mut c, &sql).await {
                    Ok(true) => reads.fetch_add(1, Ordering::Relaxed),
                    _ => read_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    wait_acks(&told, 100).await;

    // The primary crashes; writes fail for a while, reads go on.
    signal(lab_pid("primary"), "-KILL");
    let down_at = Instant::now();
    let reads_before = reads.load(Ordering::Relaxed);
    let errors_before = told.lock().unwrap().errors;
    let deadline = Instant::now() + Duration::from_secs(10);
    while told.lock().unwrap().errors < errors_before + 5 {
        assert!(Instant::now() < deadline, "writes kept succeeding with the primary down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reads_while_down = reads.load(Ordering::Relaxed) - reads_before;
    // It comes back; writes resume through the same proxy.
    lab(&["up"]);
    let acked_before_restart = told.lock().unwrap().acks();
    wait_acks(&told, acked_before_restart + 100).await;
    let outage = down_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    reader.await.unwrap();

    // Compare the primary's table with what the writers were told.
    let t = std::mem::take(&mut *told.lock().unwrap());
    let checked = t.check(PRIMARY, &format!("app.{table}")).await;
    eprintln!(
        "primary kill: {} autocommit writes and {} transactions acknowledged, {} errors \
         (slowest {:?}), {reads_while_down} reads during the outage and {} read errors, \
         outage {outage:?}; lost {}, duplicated {}, half transactions {}",
        t.acked.len(),
        t.committed.len(),
        t.errors,
        t.slowest_error,
        read_errors.load(Ordering::Relaxed),
        checked.lost.len(),
        checked.duplicated.len(),
        checked.half.len()
    );
    checked.assert_none();
    assert!(t.slowest_error < Duration::from_secs(3), "a write error took {:?}", t.slowest_error);
    assert!(reads_while_down > 0, "no read was served while the primary was down");
    assert_eq!(read_errors.load(Ordering::Relaxed), 0, "reads failed");
    wait_replicas_caught_up().await;
    admin(PRIMARY).await.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test]
async fn a_replica_killed_under_read_load_costs_no_read() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _serial = SERIAL.lock().await;
    // Sessions that fail on the killed replica avoid it for
    // `backend_retry`; made far longer than the test so that only the
    // monitor's finding it up again can bring it back.
    let config = lab_config(&format!(
        "{MONITORED}[consistency]\nmode = \"eventual\"\n[timeouts]\nbackend_retry = \"600s\"\n"
    ));
    let proxy = start_proxy(config).await;
    let addr = proxy.addr.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (stop, reads, errors, addr) =
            (stop.clone(), reads.clone(), errors.clone(), addr.clone());
        readers.push(tokio::spawn(async move {
            let mut c = connect_app(&addr).await;
            while !stop.load(Ordering::Relaxed) {
                match run(&mut c, "SELECT COUNT(*) FROM information_schema.SCHEMATA").await {
                    Ok(true) => reads.fetch_add(1, Ordering::Relaxed),
                    Ok(false) => errors.fetch_add(1, Ordering::Relaxed),
                    Err(()) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        c = connect_app(&addr).await;
                        0
                    }
                };
            }
        }));
    }
    let wait_reads = |n: u64| {
        let reads = reads.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while reads.load(Ordering::Relaxed) < n {
                assert!(Instant::now() < deadline, "reads stalled below {n}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_reads(200).await;
    let (before_kill, _) = proxy.shared.backend_counts(1);
    assert!(before_kill > 0, "replica1 took no reads before it was killed");
    signal(lab_pid("replica1"), "-KILL");
    let at_kill = reads.load(Ordering::Relaxed);
    wait_reads(at_kill + 300).await;
    let admin_addr = proxy.admin.unwrap();
    wait_backends(admin_addr, Duration::from_secs(20), |j| j[1]["healthy"] == false).await;
    lab(&["up"]);
    // Healthy is not enough to take reads: its lag must be known again.
    wait_backends(admin_addr, Duration::from_secs(20), |j| {
        j.as_array().is_some_and(|a| a.iter().all(|b| b["healthy"] == true))
            && j[1]["eligible"] == true
    })
    .await;
    // Back in the monitor's view, it takes reads again: counted from here,
    // since reads in flight at the kill raised its count after `before_kill`.
    let (at_restart, _) = proxy.shared.backend_counts(1);
    wait_backends(admin_addr, Duration::from_secs(20), |j| {
        j[1]["queries_total"].as_u64().is_some_and(|n| n > at_restart)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let (queries, _) = proxy.shared.backend_counts(1);
    eprintln!(
        "replica kill: {} reads, {} errors; replica1 ran {queries} statements",
        reads.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0, "reads failed while a replica was killed");
    wait_replicas_caught_up().await;
}

#[tokio::test]
async fn a_replica_that_dies_while_a_read_waits_for_its_gtid_hands_the_read_to_the_primary() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("causal_kill", "id INT PRIMARY KEY, v INT").await;
    let mut p = admin(PRIMARY).await;
    // Reads go to replica1, which applies the session's write 3 s late
    // (MASTER_DELAY), so a read waits there for the write's GTID.
    let mut config = lab_config(&format!(
        "{MONITORED}[consistency]\nmode = \"gtid\"\ngtid_wait_timeout = \"5s\"\n[routing]\nmax_replication_lag = \"30s\"\n"
    ));
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    // The monitor's first view: replica1 known and taking reads.
    wait_backends(proxy.admin.unwrap(), Duration::from_secs(10), |j| {
        j.as_array()
            .is_some_and(|a| a.iter().any(|b| b["name"] == "replica1" && b["eligible"] == true))
    })
    .await;
    let _restore = RestoreLab;
    lab(&["lag", "replica1", "3"]);
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec(&format!("INSERT INTO app.{table} VALUES (1, 42)")).await;

    let killer = tokio::spawn(async {
        // Once the read is waiting on replica1, replica1 dies.
        let deadline = Instant::now() + Duration::from_secs(5);
        while running_on(REPLICA1, "MASTER_GTID_WAIT").await == 0 {
            assert!(Instant::now() < deadline, "the read never waited on replica1");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        signal(lab_pid("replica1"), "-KILL");
    });
    let started = Instant::now();
    for (sql, expected) in [(format!("SELECT v FROM app.{table} WHERE id = 1"), "42")] {
        assert_eq!(c.scalar(&sql).await.as_deref(), Some(expected), "read its own write");
    }
    killer.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(_restore);
    wait_replicas_caught_up().await;
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

/// Statements containing `needle` running on one server now.
async fn running_on(addr: &str, needle: &str) -> usize {
    let mut a = admin(addr).await;
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{needle}%' AND INFO NOT LIKE '%PROCESSLIST%'"
    );
    a.scalar(&sql).await.and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_transaction_whose_primary_dies_is_never_reported_committed() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("lost_trx", "id INT PRIMARY KEY").await;
    let proxy = start_proxy(lab_config("[timeouts]\nconnect = \"1s\"\n")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec("BEGIN").await;
    c.exec(&format!("INSERT INTO app.{table} VALUES (1)")).await;

    // The primary crashes and comes back while the transaction is open.
    signal(lab_pid("primary"), "-KILL");
    lab(&["up"]);

    // The client carries on as if nothing happened: the insert fails (its
    // connection is gone), and so must the COMMIT: on a fresh connection
    // it would "succeed" with the first insert lost.
    let insert = query_error(&mut c, &format!("INSERT INTO app.{table} VALUES (2)")).await;
    assert!(insert.is_some(), "the insert on the dead connection fails");
    let (code, message) = query_error(&mut c, "COMMIT").await.expect("COMMIT must fail");
    assert_eq!(code, 1213, "{message}");
    assert!(message.contains("rolled back"), "{message}");

    // The session is usable again, in autocommit.
    c.exec(&format!("INSERT INTO app.{table} VALUES (3)")).await;
    let mut p = admin(PRIMARY).await;
    let ids = p.scalar(&format!("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.{table}")).await;
    assert_eq!(ids.as_deref(), Some("3"), "only the write acknowledged as committed is there");

    // ROLLBACK after a loss is answered OK.
    c.exec("BEGIN").await;
    c.exec(&format!("INSERT INTO app.{table} VALUES (4)")).await;
    signal(lab_pid("primary"), "-KILL");
    lab(&["up"]);
    assert!(query_error(&mut c, "SELECT 1 FOR UPDATE").await.is_some());
    assert_eq!(query_error(&mut c, "ROLLBACK").await, None, "ROLLBACK is fine");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
    wait_replicas_caught_up().await;
    let mut p = admin(PRIMARY).await;
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

/// Without multiplexing a session holds its own connections: when their
/// servers end them while the session idles, the next statements run on
/// new connections with the session's database and SETs, with no error.
/// A connection holding state that lives only there (a user variable) is
/// not replaced silently: the statement on it fails, and the session goes on.
#[tokio::test]
async fn connections_their_servers_closed_while_the_session_idled_are_replaced() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("idle_closed", "id INT PRIMARY KEY").await;
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec("SET SESSION sql_mode = 'ANSI_QUOTES'").await;
    c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
    for _ in 0..4 {
        assert_eq!(c.scalar("SELECT @@sql_mode").await.as_deref(), Some("ANSI_QUOTES"));
    }
    kill_app_connections(&[PRIMARY, REPLICA1, REPLICA2]).await;
    c.exec(&format!("INSERT INTO {table} VALUES (2)")).await;
    for _ in 0..4 {
        assert_eq!(c.scalar("SELECT @@sql_mode").await.as_deref(), Some("ANSI_QUOTES"));
    }
    let ids = c.scalar(&format!("SELECT GROUP_CONCAT(id ORDER BY id) FROM {table}")).await;
    assert_eq!(ids.as_deref(), Some("1,2"));

    c.exec("SET @mine = 1").await;
    kill_app_connections(&[PRIMARY, REPLICA1, REPLICA2]).await;
    assert!(query_error(&mut c, "SELECT @mine").await.is_some(), "the user variable is gone");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
    let mut p = admin(PRIMARY).await;
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

/// `SET TRANSACTION` without a scope applies to the next transaction only:
/// once that transaction is over, a connection the session opens later
/// (here after the server ended the first one) does not get it.
#[tokio::test]
async fn a_set_transaction_for_the_next_transaction_is_not_run_again_on_a_new_connection() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("next_tx", "id INT PRIMARY KEY").await;
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec("SET TRANSACTION READ ONLY").await;
    c.exec("BEGIN").await;
    let refused = query_error(&mut c, &format!("INSERT INTO {table} VALUES (1)")).await;
    assert_eq!(refused.map(|e| e.0), Some(1792), "the next transaction is read-only");
    c.exec("COMMIT").await;
    kill_app_connections(&[PRIMARY]).await;
    // The connection the SET ran on is gone: its session may be told so
    // once, then goes on.
    if query_error(&mut c, "BEGIN").await.is_some() {
        c.exec("BEGIN").await;
    }
    let error = query_error(&mut c, &format!("INSERT INTO {table} VALUES (2)")).await;
    assert_eq!(error, None, "a later transaction is read-write");
    c.exec("COMMIT").await;
    let mut p = admin(PRIMARY).await;
    assert_eq!(p.scalar(&format!("SELECT COUNT(*) FROM app.{table}")).await.as_deref(), Some("1"));
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test]
async fn a_replica_that_dies_mid_result_ends_it_with_an_error_and_the_session_goes_on() {
    let _serial = SERIAL.lock().await;
    // Reads on replica1 only; a result long enough to be cut.
    let mut config = lab_config("[consistency]\nmode = \"eventual\"\n");
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    let _restore = RestoreLab;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let killer = tokio::spawn(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while running_on(REPLICA1, "seq_1_to_").await == 0 {
            assert!(Instant::now() < deadline, "the long read never ran on replica1");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Rows have been flowing for a while (about one per millisecond).
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(lab_pid("replica1"), "-KILL");
    });
    let r = c.query("SELECT seq, REPEAT('x', 2000), SLEEP(0.001) FROM seq_1_to_5000").await;
    killer.await.unwrap();
    let last = &r.last().unwrap().1;
    let e = rwsplit::protocol::messages::parse_err(last).expect("the result ends with an error");
    let message = String::from_utf8_lossy(e.message).into_owned();
    assert!(r.len() > 10, "some rows arrived first ({} packets)", r.len());
    assert_eq!(e.code, 1105, "{message}");
    assert!(message.contains("replica1"), "{message}");
    // Same connection, next statement.
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
    drop(_restore);
    wait_replicas_caught_up().await;
}

/// A server that closes every connection at once (as a dying server's
/// port does): its address and how many connections it was asked for.
async fn closing_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, asked)
}

/// A read after a write (`gtid`) that finds its replica unusable is
/// answered by the primary, and every session then avoids that replica
/// for `backend_retry`, as for any other read. Before, each such read
/// tried the replica again (a chaos run logged 7,161 failed connects to
/// killed replicas before the monitor found them down, ~1.5 s each).
#[tokio::test]
async fn reads_after_writes_avoid_a_replica_that_cannot_be_reached() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("causal_dead_replica", "id INT PRIMARY KEY").await;
    let (dead, asked) = closing_server().await;
    // No monitor: nothing else finds the replica down.
    let mut config = lab_config("[timeouts]\nbackend_retry = \"30s\"\n");
    config.backends[1].address = dead;
    let proxy = start_proxy(config).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(Raw::app(&proxy.addr.to_string(), true).await);
    }
    for round in 0..5 {
        for (n, c) in sessions.iter_mut().enumerate() {
            let id = round * 10 + n;
            c.exec(&format!("INSERT INTO app.{table} VALUES ({id})")).await;
            let sql = format!(
                "SELECT CONCAT(COUNT(*), ' on ', @@server_id) FROM app.{table} WHERE id = {id}"
            );
            let got = c.scalar(&sql).await.unwrap();
            assert!(got == "1 on 1" || got == "1 on 3", "{got}");
        }
    }
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    println!("connections asked of the unreachable replica for 20 reads after writes: {asked}");
    assert_eq!(asked, 1, "the unreachable replica is avoided after its first failure");

    // The same with prepared statements (COM_STMT_EXECUTE).
    let (dead, asked) = closing_server().await;
    let mut config = lab_config("[timeouts]\nbackend_retry = \"30s\"\n");
    config.backends[1].address = dead;
    let proxy = start_proxy(config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    for id in 100..110 {
        c.exec(&format!("INSERT INTO app.{table} VALUES ({id})")).await;
        let mut prepare = vec![0x16];
        prepare.extend_from_slice(
            format!(
                "SELECT CONCAT(COUNT(*), ' on ', @@server_id) FROM app.{table} WHERE id = {id}"
            )
            .as_bytes(),
        );
        let r = c.prepare(&prepare).await;
        assert_eq!(r[0].1[0], 0, "prepared");
        let mut execute = vec![0x17];
        execute.extend_from_slice(&r[0].1[1..5]);
        execute.extend_from_slice(&[0, 1, 0, 0, 0]);
        let r = c.command(&execute, rwsplit::relay::Expect::Result).await;
        assert!(rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).is_none(), "{r:?}");
    }
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    println!("the same, prepared, 10 reads after writes: {asked}");
    assert_eq!(asked, 1, "prepared: the unreachable replica is avoided after its first failure");
    admin(PRIMARY).await.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A server that accepts TCP connections and never says anything.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_backend_that_accepts_but_never_answers_is_bounded_by_the_connect_timeout() {
    let (silent, task) = silent_server().await;
    // A silent replica: the read goes elsewhere once its connect times out.
    let mut config =
        lab_config("[timeouts]\nconnect = \"300ms\"\n[consistency]\nmode = \"eventual\"\n");
    config.backends[1].address = silent.clone();
    config.backends[2].weight = 0;
    let proxy = start_proxy(config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let started = Instant::now();
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("1"), "the primary answers");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    // A silent primary: the write fails within the connect timeout, and the
    // session still reads from the replicas.
    let mut config =
        lab_config("[timeouts]\nconnect = \"300ms\"\n[consistency]\nmode = \"eventual\"\n");
    config.backends[0].address = silent;
    let proxy = start_proxy(config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let started = Instant::now();
    let (code, message) =
        query_error(&mut c, "CREATE TEMPORARY TABLE t (id INT)").await.expect("fails");
    assert_eq!(code, rwsplit::error::BACKEND_UNREACHABLE, "{message}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // A client on MariaDB Connector/C reads the error as sent (it turns a
    // client library's code in an error packet into "malformed packet").
    let port = proxy.addr.port().to_string();
    let cli = tokio::process::Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", "-P", &port, "-uapp", "-papp", "app"])
        .args(["-e", "CREATE TEMPORARY TABLE t (id INT)"])
        .output()
        .await
        .expect("run the mariadb client");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("ERROR 1429 (HY000)"), "{stderr}");
    assert!(stderr.contains("Can't connect to MySQL server on"), "{stderr}");
    let id = c.scalar("SELECT @@server_id").await;
    assert!(matches!(id.as_deref(), Some("2" | "3")), "{id:?}");
    task.abort();
}

/// `max_query_time` bounds a prepared statement (COM_STMT_EXECUTE) too,
/// from the moment it is sent: before, the proxy waited for the first
/// bytes of the reply before starting the clock.
#[tokio::test]
async fn max_query_time_kills_a_prepared_statement() {
    use mysql_async::prelude::Queryable;
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(lab_config("[timeouts]\nmax_query_time = \"400ms\"\n")).await;
    let mut c = driver_client(&proxy).await;
    let tag = unique("mqtp");
    let started = Instant::now();
    let r = c.exec_first::<i64, _, _>(format!("SELECT SLEEP(?) AS {tag}"), (20,)).await;
    let took = started.elapsed();
    match r {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1969, "{}", e.message),
        other => panic!("the slow prepared statement must fail with 1969: {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "{took:?}");
    wait_not_running(&tag).await;
    let v: Option<i64> = c.exec_first("SELECT ? * 7", (6,)).await.unwrap();
    assert_eq!(v, Some(42));
}

/// Waits (bounded) until a server runs a statement containing `needle`.
async fn wait_running(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_anywhere(needle).await == 0 {
        assert!(Instant::now() < deadline, "{needle} never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that closes its connection while its statement runs: the
/// proxy closes the statement's connection at once, so that the server
/// does what it does when its own client goes. It ends a wait (a long
/// SLEEP on a replica, a lock wait on the primary, which then no longer
/// stands in line for the lock). With and without multiplexing.
#[tokio::test]
async fn a_client_that_leaves_mid_statement_ends_its_statement() {
    let _serial = SERIAL.lock().await;
    for multiplex in [false, true] {
        let proxy = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        let addr = proxy.addr.to_string();
        let tag = unique("left");
        let mut reader = Raw::app(&addr, true).await;
        reader.send_query(&format!("SELECT SLEEP(30) AS {tag}")).await;
        wait_running(&tag).await;
        drop(reader);
        wait_not_running(&tag).await;

        let lock = unique("leftlock");
        let mut holder = admin(PRIMARY).await;
        holder.exec(&format!("DO GET_LOCK('{lock}', 30)")).await;
        let mut waiter = Raw::app(&addr, true).await;
        waiter.send_query(&format!("SELECT GET_LOCK('{lock}', 30)")).await;
        wait_running(&lock).await;
        // Half closed: the client sends no more, which is leaving too.
        tokio::io::AsyncWriteExt::shutdown(&mut waiter.conn.stream).await.unwrap();
        wait_not_running(&lock).await;
        drop(waiter);
        // Nobody else holds or waits for the lock once it is released.
        holder.exec("DO RELEASE_ALL_LOCKS()").await;
        let mut next = Raw::app(&addr, true).await;
        assert_eq!(
            next.scalar(&format!("SELECT GET_LOCK('{lock}', 0)")).await.as_deref(),
            Some("1"),
            "multiplex = {multiplex}"
        );
        assert_eq!(next.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
    }
}

/// Commands a client sends ahead, while its statement runs, are each
/// answered in order. A write whose client leaves before its reply
/// finishes, as it does on the server: the connection closed under it
/// ends a wait only when the server checks (about once a second), after
/// this write's half-second sleep.
#[tokio::test]
async fn commands_sent_ahead_are_answered_and_a_write_whose_client_left_finishes() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut c = Raw::app(&addr, true).await;
    let mut wire = Vec::new();
    let statements = ["SELECT SLEEP(0.3)", "SELECT 2, 2", "SELECT 3, 3, 3"];
    for sql in statements {
        rwsplit::protocol::packet::put_packet(&mut wire, 0, &[b"\x03", sql.as_bytes()].concat());
    }
    c.raw_write(&wire).await;
    for columns in 1..=statements.len() {
        let r = c.read_response(rwsplit::relay::Expect::Result).await;
        assert_eq!(usize::from(r[0].1[0]), columns, "replies out of order: {r:?}");
    }
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));

    // Straight to the primary, then through the proxy: the same outcome.
    for target in [PRIMARY, addr.as_str()] {
        let table = lab_table("leftwrite", "v INT").await;
        let tag = unique("leftwrite");
        let mut writer = Raw::app(target, true).await;
        writer.send_query(&format!("INSERT INTO app.{table} SELECT SLEEP(0.5) /* {tag} */")).await;
        wait_running(&tag).await;
        drop(writer);
        wait_not_running(&tag).await;
        let mut primary = admin(PRIMARY).await;
        let rows = primary.scalar(&format!("SELECT COUNT(*) FROM app.{table}")).await;
        assert_eq!(rows.as_deref(), Some("1"), "through {target}: the write did not finish");
    }
}

/// Sets `@@global.read_only` on a lab server (as the lab's admin user).
fn set_read_only(port: u16, on: bool) {
    set_global(port, &format!("read_only = {}", if on { "ON" } else { "OFF" }));
}

/// Runs `SET GLOBAL {assignment}` on the lab server at `port`.
fn set_global(port: u16, assignment: &str) {
    on_server(port, &format!("SET GLOBAL {assignment}"));
}

/// Runs `sql` as the lab's admin on the server at `port` (with the
/// command-line client, so that a drop guard can call it).
fn on_server(port: u16, sql: &str) {
    let status = std::process::Command::new("mariadb")
        .args(["--no-defaults", "--protocol=tcp", "-h127.0.0.1", "-uadmin", "-padmin"])
        .arg(format!("-P{port}"))
        .arg(format!("--execute={sql}"))
        .status()
        .expect("run the mariadb client");
    assert!(status.success(), "{sql} on :{port}");
}

/// A failover as a failover tool makes it once the primary has died:
/// replica1 promoted (replication stopped and forgotten, read_only off),
/// replica2 re-pointed to it. Through the same proxy, writes and
/// transactions resume on replica1 once the monitor names it primary,
/// with no acknowledged write lost, duplicated or half committed; a
/// client then reads its writes. The lab is rebuilt afterwards.
#[tokio::test]
async fn a_replica_promoted_after_the_primary_died_takes_the_writes() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let _serial = SERIAL.lock().await;
    let table = lab_table("failover", WRITTEN_COLUMNS).await;
    let _rebuilt = LabRebuilt;
    let proxy =
        start_proxy(lab_config(&format!("{MONITORED}[timeouts]\nconnect = \"1s\"\n"))).await;
    let admin_port = proxy.admin.expect("admin port");
    all_healthy(&proxy).await;
    let addr = proxy.addr.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let told = Arc::new(std::sync::Mutex::new(Told::default()));
    let writer =
        tokio::spawn(writer(addr.clone(), format!("app.{table}"), stop.clone(), told.clone()));
    wait_acks(&told, 50).await;

    signal(lab_pid("primary"), "-KILL");
    let died = Instant::now();
    on_server(3307, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
    on_server(
        3308,
        "STOP SLAVE; CHANGE MASTER TO master_host = '127.0.0.1', master_port = 3307, \
         master_user = 'repl', master_password = 'repl', master_use_gtid = slave_pos; START SLAVE",
    );
    wait_backends(admin_port, Duration::from_secs(10), |j| j[1]["role"] == "primary").await;
    let acked_before = told.lock().unwrap().acks();
    wait_acks(&told, acked_before + 50).await;
    let resumed = died.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();

    // What the writer was told against the new primary's table.
    let t = std::mem::take(&mut *told.lock().unwrap());
    let checked = t.check(REPLICA1, &format!("app.{table}")).await;
    eprintln!(
        "failover: {} autocommit writes and {} transactions acknowledged, {} errors, writes \
         resumed {resumed:?} after the primary died; lost {}, duplicated {}, half {}",
        t.acked.len(),
        t.committed.len(),
        t.errors,
        checked.lost.len(),
        checked.duplicated.len(),
        checked.half.len()
    );
    checked.assert_none();
    // A client reads its writes (replica2 now replicates from replica1).
    let mut c = Raw::app(&addr, true).await;
    for n in 1..=10 {
        c.exec(&format!("INSERT INTO app.{table} (n) VALUES ({})", 1_000_000 + n)).await;
        let sql =
            format!("SELECT COUNT(*), @@server_id FROM app.{table} WHERE n = {}", 1_000_000 + n);
        let r = c.query(&sql).await;
        let row = String::from_utf8_lossy(&r[r.len() - 2].1).into_owned();
        assert!(row.starts_with("\u{1}1"), "read {n} after its write on the new primary: {row:?}");
    }
}

/// Puts the lab's roles back: the primary writable, replica1 read-only.
struct PrimaryRestored;

impl Drop for PrimaryRestored {
    fn drop(&mut self) {
        set_read_only(3307, true);
        set_read_only(3306, false);
    }
}

/// The server id that runs a session's primary work (a transaction).
async fn primary_work_server(c: &mut Raw) -> Option<String> {
    c.exec("BEGIN").await;
    let id = c.scalar("SELECT @@server_id").await;
    c.exec("COMMIT").await;
    id
}

/// An external switchover, as failover tools make it (the primary made
/// read-only, a replica made writable), moves the primary's work to the
/// newly writable server once the monitor sees it, in a running session
/// and in a new one, while reads go on; undone, the work moves back. Only
/// `read_only` flips (nothing is written on a replica: the primary work
/// here is a transaction's read), so replication is left as it was.
#[tokio::test]
async fn primary_work_follows_the_writable_server_after_an_external_switchover() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin_port = proxy.admin.expect("admin port");
    all_healthy(&proxy).await;
    let addr = proxy.addr.to_string();
    let mut running = Raw::app(&addr, true).await;
    assert_eq!(primary_work_server(&mut running).await.as_deref(), Some("1"));
    let _restore = PrimaryRestored;
    set_read_only(3306, true);
    set_read_only(3307, false);
    let switched = Instant::now();
    wait_backends(admin_port, Duration::from_secs(10), |j| {
        j[1]["role"] == "primary" && j[0]["role"] != "primary"
    })
    .await;
    println!("the monitor saw the switchover after {:?}", switched.elapsed());
    assert_eq!(primary_work_server(&mut running).await.as_deref(), Some("2"), "running session");
    let mut fresh = Raw::app(&addr, true).await;
    assert_eq!(primary_work_server(&mut fresh).await.as_deref(), Some("2"), "new session");
    assert_eq!(fresh.scalar("SELECT @@server_id").await.as_deref(), Some("3"), "reads go on");
    drop(_restore);
    wait_backends(admin_port, Duration::from_secs(10), |j| j[0]["role"] == "primary").await;
    assert_eq!(primary_work_server(&mut running).await.as_deref(), Some("1"), "switched back");
}

/// A global setting on every lab server for one test (as the servers'
/// configuration would have it), put back when dropped however the test
/// ends.
struct OnEveryServer {
    restore: &'static str,
}

impl OnEveryServer {
    fn set(assignment: &str, restore: &'static str) -> OnEveryServer {
        for port in [3306, 3307, 3308] {
            set_global(port, assignment);
        }
        OnEveryServer { restore }
    }
}

/// NO_BACKSLASH_ESCAPES into and out of a server's default sql_mode.
const NBE_ON: &str = "sql_mode = CONCAT(@@global.sql_mode, ',NO_BACKSLASH_ESCAPES')";
const NBE_OFF: &str = "sql_mode = REPLACE(@@global.sql_mode, 'NO_BACKSLASH_ESCAPES', '')";

impl Drop for OnEveryServer {
    fn drop(&mut self) {
        for port in [3306, 3307, 3308] {
            set_global(port, self.restore);
        }
    }
}

/// Servers whose default sql_mode has NO_BACKSLASH_ESCAPES (set in their
/// configuration, as a user would): the proxy's greeting says so, as the
/// server's would (a client's escaping of strings depends on it), and the
/// session's first statement is already read as its server reads it: after
/// `'C:\'` the locking clause counts and takes the statement to the primary.
#[tokio::test]
async fn servers_without_backslash_escapes_by_default_are_read_that_way_from_the_login() {
    let _serial = SERIAL.lock().await;
    let _nbe = OnEveryServer::set(NBE_ON, NBE_OFF);
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let nbe = rwsplit::protocol::status::NO_BACKSLASH_ESCAPES;
    assert_ne!(
        c.conn.greeting.status & nbe,
        0,
        "the greeting's status: {:#x}",
        c.conn.greeting.status
    );
    let locking = r"SELECT @@server_id, 'C:\' FROM DUAL FOR UPDATE -- '";
    assert_eq!(c.scalar(locking).await.as_deref(), Some("1"), "{locking}");
    let r = c.query(r"SELECT 'C:\', @@server_id").await;
    let row = r.iter().rev().nth(1).expect("a row");
    assert!(String::from_utf8_lossy(&row.1).contains(r"C:\"), "{r:?}");
    // And a plain read still goes to a replica.
    let id = c.scalar(r"SELECT @@server_id, 'C:\'").await;
    assert!(matches!(id.as_deref(), Some("2" | "3")), "{id:?}");
}

/// The default sql_mode changed while the proxy runs: the greeting it
/// learned at start is replaced from the next connection it opens to the
/// primary, so clients logging in after that are told about
/// NO_BACKSLASH_ESCAPES.
#[tokio::test]
async fn a_new_default_sql_mode_reaches_the_greeting_with_the_next_primary_connection() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let nbe = rwsplit::protocol::status::NO_BACKSLASH_ESCAPES;
    let before = Raw::app(&addr, true).await;
    assert_eq!(before.conn.greeting.status & nbe, 0);
    let _nbe = OnEveryServer::set(NBE_ON, NBE_OFF);
    // Still the greeting learned at start, until a primary connection opens.
    let mut c = Raw::app(&addr, true).await;
    assert_eq!(c.conn.greeting.status & nbe, 0);
    c.exec("BEGIN").await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("1"));
    c.exec("COMMIT").await;
    let after = Raw::app(&addr, true).await;
    assert_ne!(after.conn.greeting.status & nbe, 0, "{:#x}", after.conn.greeting.status);
}

/// A network namespace joined to this one by a veth link, its own host on
/// the network: 10.231.7.2, seeing this one as 10.231.7.1. Removed on drop.
struct NetHost {
    name: String,
}

const HOST_SIDE: &str = "10.231.7.1";
const NS_SIDE: &str = "10.231.7.2";

impl NetHost {
    fn new() -> NetHost {
        let name = "rwsplit-faults".to_string();
        // Left by an earlier run that was killed.
        let _ = ip(&["netns", "del", &name], false);
        let _ = ip(&["link", "del", "rwsfault0"], false);
        ip(&["netns", "add", &name], true);
        let host = NetHost { name };
        ip(&["link", "add", "rwsfault0", "type", "veth", "peer", "name", "rwsfault1"], true);
        ip(&["link", "set", "rwsfault1", "netns", &host.name], true);
        ip(&["addr", "add", &format!("{HOST_SIDE}/30"), "dev", "rwsfault0"], true);
        ip(&["link", "set", "rwsfault0", "up"], true);
        host.ip(&["addr", "add", &format!("{NS_SIDE}/30"), "dev", "rwsfault1"]);
        host.ip(&["link", "set", "rwsfault1", "up"]);
        host.ip(&["link", "set", "lo", "up"]);
        host
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all, true);
    }

    /// The host's cable is pulled: nothing it sent or was sent gets
    /// through, and no reset tells its peers.
    fn cut_off(&self) {
        self.ip(&["link", "set", "rwsfault1", "down"]);
    }

    /// Runs `program` on the host, its stdin and stdout pipes.
    fn spawn(&self, program: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(program)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run a program in the network namespace")
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name], false);
    }
}

fn ip(args: &[&str], must: bool) -> bool {
    let out = std::process::Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success() || !must,
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out.status.success()
}

/// Whether row `id` of `table` is locked by another transaction, asked
/// on the primary without waiting.
async fn row_locked(p: &mut Raw, table: &str, id: u32) -> bool {
    p.exec("BEGIN").await;
    let r =
        query_error(p, &format!("SELECT id FROM app.{table} WHERE id = {id} FOR UPDATE NOWAIT"))
            .await;
    p.exec("ROLLBACK").await;
    match r {
        None => false,
        Some((1205, _)) => true,
        Some(other) => panic!("asking for the row lock: {other:?}"),
    }
}

/// A client on `host` in the middle of a transaction that updated row 1
/// of `table` through `proxy`, the row locked on the primary.
struct Vanishing {
    _client: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Vanishing {
    async fn start(host: &NetHost, proxy: &TestProxy, p: &mut Raw, table: &str) -> Vanishing {
        use tokio::io::AsyncBufReadExt;
        let port = proxy.addr.port().to_string();
        let mut client = host.spawn(&[
            "mariadb",
            "--host",
            HOST_SIDE,
            "--port",
            &port,
            "--user",
            "app",
            "--password=app",
            "--database",
            "app",
            "--batch",
            "--skip-column-names",
            "--unbuffered",
        ]);
        let stdin = client.stdin.take().expect("client stdin");
        let stdout = tokio::io::BufReader::new(client.stdout.take().expect("client stdout"));
        let mut v = Vanishing { _client: client, stdin, stdout: stdout.lines() };
        v.send(&format!("BEGIN;\nUPDATE {table} SET v = 1 WHERE id = 1;\nSELECT 'updated';")).await;
        let said = tokio::time::timeout(Duration::from_secs(10), v.stdout.next_line()).await;
        let said = said.expect("the client answers").expect("read the client's output");
        assert_eq!(said.as_deref(), Some("updated"));
        assert!(row_locked(p, table, 1).await, "the client's UPDATE holds the row lock");
        v
    }

    async fn send(&mut self, statements: &str) {
        use tokio::io::AsyncWriteExt;
        let text = format!("{statements}\n");
        self.stdin.write_all(text.as_bytes()).await.expect("write to the client");
        self.stdin.flush().await.expect("flush the client's stdin");
    }
}

/// Cuts `host` off and waits (bounded) until the primary no longer holds
/// the row lock of the vanished client's transaction, which it must have
/// rolled back; returns how long that took.
async fn cut_off_and_wait_released(host: &NetHost, p: &mut Raw, table: &str) -> Duration {
    host.cut_off();
    let cut = Instant::now();
    while row_locked(p, table, 1).await {
        assert!(
            cut.elapsed() < Duration::from_secs(20),
            "the vanished client's lock is still held after {:?}",
            cut.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = cut.elapsed();
    let v = p.scalar(&format!("SELECT v FROM app.{table} WHERE id = 1")).await;
    assert_eq!(v.as_deref(), Some("0"), "the unfinished transaction is rolled back");
    took
}

/// Bytes the proxy sent on its connections from `port` that the peer has
/// not acknowledged yet (the send queue `ss` shows).
fn unacknowledged_bytes(port: u16) -> u64 {
    let filter = format!("( sport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", "established", &filter])
        .output()
        .expect("run ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() > 0, "ss lists no connection from port {port}");
    let queues = text.lines().map(|l| l.split_whitespace().nth(1).and_then(|q| q.parse().ok()));
    queues.map(|q: Option<u64>| q.expect("ss prints the send queue")).sum()
}

/// A lab table with row (1, 0), a host to vanish from, and a proxy
/// listening where that host reaches it, with `client_keepalive = 3s`.
async fn vanishing_setup(prefix: &str) -> (String, Raw, NetHost, TestProxy) {
    let table = lab_table(prefix, "id INT PRIMARY KEY, v INT").await;
    let mut p = admin(PRIMARY).await;
    p.exec(&format!("INSERT INTO app.{table} VALUES (1, 0)")).await;
    let host = NetHost::new();
    let mut config = lab_config("[timeouts]\nclient_keepalive = \"3s\"\n");
    config.listeners[0].address = Some(format!("{HOST_SIDE}:0"));
    let proxy = start_proxy(config).await;
    (table, p, host, proxy)
}

/// A client host that vanishes (its link cut, so no FIN or RST reaches
/// the proxy) while its session is idle in a transaction: the proxy's
/// keepalive probes go unanswered, the session ends, and the transaction
/// is rolled back on the primary, freeing its row lock for everyone else.
/// Without them the proxy would hold the lock until the client came back.
#[tokio::test]
async fn a_client_host_that_vanishes_while_idle_in_a_transaction_has_its_locks_released() {
    let _serial = SERIAL.lock().await;
    let (table, mut p, host, proxy) = vanishing_setup("vanished_idle").await;
    let _client = Vanishing::start(&host, &proxy, &mut p, &table).await;
    // The client acknowledged all the proxy sent: the connection is quiet,
    // and only keepalive probes can tell a gone host from an idle one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while unacknowledged_bytes(proxy.addr.port()) != 0 {
        assert!(Instant::now() < deadline, "the client never acknowledged the proxy's replies");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = cut_off_and_wait_released(&host, &mut p, &table).await;
    println!("idle vanished client's lock released {took:?} after its link was cut");
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

/// The same when the client vanishes while a statement of its transaction
/// runs: the proxy's reply then waits unacknowledged, which no keepalive
/// probe covers; the kernel's user timeout ends it.
#[tokio::test]
async fn a_client_host_that_vanishes_while_its_statement_runs_has_its_locks_released() {
    let _serial = SERIAL.lock().await;
    let (table, mut p, host, proxy) = vanishing_setup("vanished_busy").await;
    let mut client = Vanishing::start(&host, &proxy, &mut p, &table).await;
    let tag = unique("vanishing");
    client.send(&format!("SELECT SLEEP(1) AS {tag}, REPEAT('x', 100000);")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_anywhere(&tag).await == 0 {
        assert!(Instant::now() < deadline, "the client's SELECT SLEEP(1) never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = cut_off_and_wait_released(&host, &mut p, &table).await;
    println!("busy vanished client's lock released {took:?} after its link was cut");
    p.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A lab server's `max_connections`, lowered until restored.
///
/// All its own queries go over one admin connection opened before the
/// server filled up: a new one could be refused too, as MariaDB counts a
/// refused login's connection until that thread has cleaned up, past the
/// one extra place it keeps for an admin.
struct MaxConnections {
    port: &'static str,
    before: String,
    admin: Raw,
    restored: bool,
}

impl MaxConnections {
    /// Lowers it to MariaDB's least (10) and fills the server with app
    /// connections, held in `fill`, until it refuses one.
    async fn fill(addr: &str, port: &'static str, fill: &mut Vec<Raw>) -> MaxConnections {
        let mut admin = admin(addr).await;
        let before = admin.scalar("SELECT @@max_connections").await.expect("max_connections");
        admin.exec("SET GLOBAL max_connections = 10").await;
        let mut full = MaxConnections { port, before, admin, restored: false };
        let refused_before = full.refused_logins().await;
        let app = login("app", "app", Some("app"), client_caps(true));
        while let Ok(c) = Raw::connect(addr, &app).await {
            fill.push(c);
            assert!(fill.len() <= 10, "{addr} takes connections past max_connections");
        }
        // The login that found it full is counted once its thread has
        // cleaned up, after the client had the error: wait for it, or a
        // later count would take it for a refusal of the proxy's.
        let deadline = Instant::now() + Duration::from_secs(5);
        while full.refused_logins().await == refused_before {
            assert!(Instant::now() < deadline, "the refused login was never counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        full
    }

    /// Logins the server refused (among them each "Too many connections").
    async fn refused_logins(&mut self) -> u64 {
        let sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                   WHERE VARIABLE_NAME = 'ABORTED_CONNECTS'";
        self.admin.scalar(sql).await.and_then(|v| v.parse().ok()).expect("status counter")
    }

    async fn restore(mut self) {
        self.admin.exec(&format!("SET GLOBAL max_connections = {}", self.before)).await;
        self.restored = true;
    }
}

impl Drop for MaxConnections {
    /// A failing test's server gets its limit back all the same.
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        let set = format!("SET GLOBAL max_connections = {}", self.before);
        let _ = std::process::Command::new("mariadb")
            .args(["--host=127.0.0.1", "--port", self.port, "--user=admin", "--password=admin"])
            .args(["--execute", &set])
            .status();
    }
}

/// A replica that refuses connections with "Too many connections" is
/// avoided for `backend_retry` by every session, as one that refuses TCP
/// is: reads go elsewhere without error, and the full server is not asked
/// again for a connection by each read of each session. With and without
/// multiplexing.
#[tokio::test]
async fn a_replica_full_of_connections_is_avoided_by_every_session() {
    let _serial = SERIAL.lock().await;
    for multiplex in [false, true] {
        let config = lab_config(&format!(
            "[consistency]\nmode = \"eventual\"\n[timeouts]\nbackend_retry = \"1h\"\n\
             [pool]\nmultiplex = {multiplex}\n[admin]\naddress = \"127.0.0.1:0\"\n"
        ));
        let proxy = start_proxy(config).await;
        let addr = proxy.addr.to_string();
        let mut filler = Vec::new();
        let mut full = MaxConnections::fill(REPLICA1, "3307", &mut filler).await;
        let refused_before = full.refused_logins().await;
        let mut sessions = Vec::new();
        for _ in 0..8 {
            sessions.push(Raw::app(&addr, true).await);
        }
        let mut served = std::collections::HashMap::new();
        for _ in 0..10 {
            for c in sessions.iter_mut() {
                let server = c.scalar("SELECT @@server_id").await.expect("a read is answered");
                *served.entry(server).or_insert(0) += 1;
            }
        }
        let refused = full.refused_logins().await - refused_before;
        // The admin port says which replica the sessions avoid.
        let (_, body) = http_get(proxy.admin.expect("admin port"), "/backends", None).await;
        let backends: serde_json::Value = serde_json::from_str(&body).unwrap();
        let avoided: Vec<_> = (0..3).map(|i| backends[i]["avoided"].clone()).collect();
        assert_eq!(avoided, [false, true, false], "{backends}");
        full.restore().await;
        drop(filler);
        println!(
            "multiplex {multiplex}: reads by server_id {served:?}, replica1 refused {refused}"
        );
        assert_eq!(served.values().sum::<u32>(), 80, "{served:?}");
        assert_eq!(served.get("2"), None, "replica1 cannot have served a read: {served:?}");
        assert!(refused >= 1, "replica1 was never asked: the test did not test");
        assert!(refused <= 2, "replica1 was asked {refused} times after refusing");
    }
}

/// Session state sent to a primary that refuses connections before
/// anything noticed it (no monitor, no earlier failure) runs on a replica
/// instead: the SET succeeds, and the session's reads see it.
#[tokio::test]
async fn a_set_whose_primary_refuses_the_connection_runs_on_a_replica() {
    let _serial = SERIAL.lock().await;
    let refusing = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut config = lab_config("[timeouts]\nbackend_retry = \"30s\"\n");
    config.backends[0].address = refusing;
    let proxy = start_proxy(config).await;
    // No database at login: nothing asks the primary before the SET.
    let app = login("app", "app", None, client_caps(true));
    let mut c = Raw::connect(&proxy.addr.to_string(), &app).await.expect("login");
    let error = query_error(&mut c, "SET SESSION sql_mode = 'ANSI_QUOTES'").await;
    assert_eq!(error, None, "the SET failed");
    let read = c.scalar("SELECT CONCAT(@@server_id, ' ', @@sql_mode)").await;
    let read = read.expect("a read is answered");
    assert!(read == "2 ANSI_QUOTES" || read == "3 ANSI_QUOTES", "{read}");
}

/// A SET sent on the session's connection to a primary that then stops
/// answering (paused) is given up once the monitor finds the primary
/// down, and a replica runs it: the client gets its OK, and its reads see
/// the setting.
#[tokio::test]
async fn a_set_on_a_primary_that_stops_answering_runs_on_a_replica() {
    let _serial = SERIAL.lock().await;
    let proxy = start_proxy(monitored_without_query_limit()).await;
    all_healthy(&proxy).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    // The session holds a connection to the primary.
    assert_eq!(c.scalar("SELECT /* rwsplit:primary */ @@server_id").await.as_deref(), Some("1"));
    let started = Instant::now();
    let error = {
        let _paused = Paused::node("primary");
        query_error(&mut c, "SET SESSION sql_mode = 'ANSI_QUOTES'").await
    };
    let took = started.elapsed();
    println!("SET on a paused primary answered after {took:?}");
    assert_eq!(error, None, "the SET failed");
    assert!(took < Duration::from_secs(6), "{took:?}");
    let read = c.scalar("SELECT CONCAT(@@server_id, ' ', @@sql_mode)").await;
    let read = read.expect("a read is answered");
    assert!(read == "2 ANSI_QUOTES" || read == "3 ANSI_QUOTES", "{read}");
    all_healthy(&proxy).await;
}

/// The same for a COM_STMT_PREPARE: its connection to the primary is
/// given up once the monitor finds the primary down, and a replica
/// prepares it; the client gets the statement. Before, the prepare waited
/// for the primary to answer, however long it was paused.
#[tokio::test]
async fn a_prepare_on_a_primary_that_stops_answering_is_prepared_on_a_replica() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("paused_prepare", "id INT PRIMARY KEY").await;
    let proxy = start_proxy(monitored_without_query_limit()).await;
    all_healthy(&proxy).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT /* rwsplit:primary */ @@server_id").await.as_deref(), Some("1"));
    let started = Instant::now();
    let r = {
        let _paused = Paused::node("primary");
        let prepare = format!("\x16INSERT INTO app.{table} VALUES (?)");
        tokio::time::timeout(Duration::from_secs(10), c.prepare(prepare.as_bytes()))
            .await
            .expect("the prepare was not given up while the primary was paused")
    };
    println!("prepare on a paused primary answered after {:?}", started.elapsed());
    assert_eq!(r[0].1[0], 0, "prepared: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    all_healthy(&proxy).await;
    admin(PRIMARY).await.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A TCP relay to the lab's primary that closes, when told, the next
/// connection that sends anything, without passing it on: as a server
/// closes a connection an instant before a statement arrives (a KILL, a
/// tool killing idle connections) while the proxy is already sending.
struct CuttingRelay {
    addr: String,
    cut_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingRelay {
    async fn start() -> CuttingRelay {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let relay = CuttingRelay { addr, cut_next: Default::default(), cuts: Default::default() };
        let (cut_next, cuts) = (relay.cut_next.clone(), relay.cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (cut_next, cuts) = (cut_next.clone(), cuts.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(PRIMARY).await else { return };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    });
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if cut_next.swap(false, SeqCst) {
                            cuts.fetch_add(1, SeqCst);
                            break;
                        }
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                });
            }
        });
        relay
    }

    /// The next connection that sends something is closed instead.
    fn cut_next(&self) {
        self.cut_next.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A plain read whose primary connection is closed as it is sent runs once
/// more on a new connection, text or prepared, and the client sees only
/// its answer; a write in the same spot gets ERROR 1158 and is not sent
/// again (the proxy cannot know whether it ran). Before, the read got
/// ERROR 1158 too (a KILL sweep on the primary's connections under chaos
/// load gave such errors).
#[tokio::test]
async fn a_read_whose_primary_connection_closes_as_it_is_sent_runs_again_a_write_does_not() {
    let _serial = SERIAL.lock().await;
    let table = lab_table("cut_primary", "id INT PRIMARY KEY").await;
    let relay = CuttingRelay::start().await;
    // The primary only, behind the relay: reads go there for want of a replica.
    let config = rwsplit::Config::parse(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[users]]\nname = \"app\"\npassword = \"app\"\n\
         [[backends]]\nname = \"primary\"\naddress = \"{}\"\nrole = \"primary\"\n",
        relay.addr
    ))
    .unwrap();
    let proxy = start_proxy(config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT 1").await.as_deref(), Some("1"));
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT 3");
    let r = c.prepare(&prep).await;
    let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());

    relay.cut_next();
    assert_eq!(c.scalar("SELECT 2").await.as_deref(), Some("2"), "the read ran again");
    assert_eq!(relay.cuts(), 1);

    // The new connection has not prepared the statement: the cut meets
    // the prepare the proxy sends before the execute, then the execute
    // itself.
    let mut execute = vec![0x17];
    execute.extend_from_slice(&id.to_le_bytes());
    execute.push(0);
    execute.extend_from_slice(&1u32.to_le_bytes());
    for cuts in [2, 3] {
        relay.cut_next();
        let r = c.command(&execute, rwsplit::relay::Expect::Result).await;
        assert_ne!(r[0].1[0], 0xff, "the prepared read ran again: {:?}", r[0]);
        assert!(r.len() > 2, "a result set");
        assert_eq!(relay.cuts(), cuts);
    }

    relay.cut_next();
    let r = c.query(&format!("INSERT INTO app.{table} VALUES (1)")).await;
    let code = (r[0].1[0] == 0xff).then(|| u16::from_le_bytes([r[0].1[1], r[0].1[2]]));
    assert_eq!(code, Some(1158), "a write is not sent again");
    assert_eq!(relay.cuts(), 4);
    let mut a = admin(PRIMARY).await;
    let rows = a.scalar(&format!("SELECT COUNT(*) FROM app.{table}")).await;
    assert_eq!(rows.as_deref(), Some("0"), "the cut write never reached the server");
    // The session goes on.
    assert_eq!(c.scalar("SELECT 4").await.as_deref(), Some("4"));
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// Servers whose sessions start without autocommit: a client of the proxy
/// starts without it too, as it would on the server. Its writes wait for
/// COMMIT (a ROLLBACK undoes them) and its reads stay on the primary, in
/// its transaction; after `SET autocommit = 1` reads go to the replicas,
/// where no transaction stays open (each read sees the session's latest
/// write), with and without multiplexing. Before, the proxy started every
/// session with autocommit on: with multiplexing its connections were set
/// so and a write the client rolled back was committed; without, the
/// replicas' connections kept the servers' default, a read left a
/// transaction open there, and the next write went to that replica (ERROR
/// 1290, read-only).
#[tokio::test]
async fn servers_whose_sessions_start_without_autocommit_are_served_as_they_serve() {
    let _serial = SERIAL.lock().await;
    let _off = OnEveryServer::set("autocommit = 0", "autocommit = 1");
    let table = format!("app.{}", unique("noac"));
    let mut primary = admin(PRIMARY).await;
    // Its counts see what others committed.
    primary.exec("SET autocommit = 1").await;
    primary.exec(&format!("CREATE TABLE {table} (n INT)")).await;
    for extra in ["", "[pool]\nmultiplex = true"] {
        primary.exec(&format!("TRUNCATE {table}")).await;
        let proxy = start_proxy(lab_config(extra)).await;
        let addr = proxy.addr.to_string();
        let direct = Raw::app(PRIMARY, true).await;
        let mut c = Raw::app(&addr, true).await;
        assert_eq!(c.conn.autocommit, Some(false), "the greeting says autocommit is off");
        assert_eq!(c.conn.autocommit, direct.conn.autocommit);
        assert_eq!(c.scalar("SELECT @@autocommit").await.as_deref(), Some("0"), "{extra:?}");
        let count = format!("SELECT COUNT(*), @@server_id FROM {table}");
        c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
        assert_eq!(c.scalar(&count).await.as_deref(), Some("1"), "its transaction sees it");
        c.exec("ROLLBACK").await;
        assert_eq!(primary.scalar(&count).await.as_deref(), Some("0"), "rolled back {extra:?}");
        c.exec(&format!("INSERT INTO {table} VALUES (2)")).await;
        c.exec("COMMIT").await;
        assert_eq!(primary.scalar(&count).await.as_deref(), Some("1"), "committed {extra:?}");
        c.exec("SET autocommit = 1").await;
        let mut on_replicas = 0;
        for n in 3..=8 {
            c.exec(&format!("INSERT INTO {table} VALUES ({n})")).await;
            let sql = format!(
                "SELECT CONCAT(COUNT(*), ' ', @@in_transaction, ' ', @@server_id) FROM {table}"
            );
            let answer = c.scalar(&sql).await.expect("a row");
            let (seen, rest) = answer.split_once(' ').expect("three values");
            let (in_transaction, server) = rest.split_once(' ').expect("three values");
            assert_eq!(seen, (n - 1).to_string(), "the latest write is seen: {answer} {extra:?}");
            assert_eq!(in_transaction, "0", "no transaction left open: {answer} {extra:?}");
            on_replicas += usize::from(server != "1");
        }
        assert!(on_replicas > 0, "reads with autocommit on reach the replicas ({extra:?})");
    }
}

/// A server's wait_timeout counts each connection's own idle time: the
/// session's connection to the primary, unused while the session reads on
/// a replica for longer than that, is closed by the primary. The next
/// write runs on a new connection (the session's SETs carried to it)
/// instead of failing with ERROR 1158, with and without multiplexing.
#[tokio::test]
async fn a_write_after_the_primary_timed_out_its_idle_connection_runs_on_a_new_one() {
    // No replica paused by another test meanwhile: the read must run on one.
    let _serial = SERIAL.lock().await;
    let table = lab_table("idled", "n INT").await;
    for multiplex in [false, true] {
        let proxy = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        let mut c = Raw::app(&proxy.addr.to_string(), true).await;
        // On every connection of the session: the primary's ends 1 s after
        // its last statement.
        c.exec("SET SESSION wait_timeout = 1, time_zone = '+04:00'").await;
        c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
        let read = format!("SELECT @@server_id + SLEEP(2) FROM {table} LIMIT 1");
        let server = c.scalar(&read).await;
        assert!(matches!(server.as_deref(), Some("2" | "3")), "read on a replica: {server:?}");
        let r = c.query(&format!("INSERT INTO {table} VALUES (2)")).await;
        assert_eq!(r[0].1[0], 0x00, "multiplex {multiplex}: {}", String::from_utf8_lossy(&r[0].1));
        let check = format!(
            "SELECT CONCAT_WS(' ', COUNT(*), @@time_zone, @@server_id) FROM {table} FOR UPDATE"
        );
        let on_primary = c.scalar(&check).await;
        assert_eq!(on_primary.as_deref(), Some("2 +04:00 1"), "multiplex {multiplex}");
        c.exec(&format!("DELETE FROM {table}")).await;
    }
}
