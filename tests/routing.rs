//! Every routing rule, observed on the servers: a statement carries a
//! unique tag (or asks `@@server_id`), and the servers' general logs say
//! which one ran it.

mod common;

use common::*;
use rwsplit::relay::Expect;

const PRIMARY_ID: &str = "1";

/// Turns the general log on (to a table) on every lab server.
async fn general_log_on() {
    for addr in [PRIMARY, REPLICA1, REPLICA2] {
        let mut a = admin(addr).await;
        a.exec("SET GLOBAL log_output = 'TABLE'").await;
        a.exec("SET GLOBAL general_log = 1").await;
    }
}

/// The lab servers ("primary", "replica1", "replica2") whose general log
/// holds a statement containing `tag`.
async fn ran_on(tag: &str) -> Vec<&'static str> {
    let (head, tail) = tag.split_at(tag.len() / 2);
    let mut on = Vec::new();
    for (name, addr) in [("primary", PRIMARY), ("replica1", REPLICA1), ("replica2", REPLICA2)] {
        let mut a = admin(addr).await;
        // The tag is split so this query does not match itself.
        let sql = format!(
            "SELECT COUNT(*) FROM mysql.general_log WHERE argument LIKE CONCAT('%', '{head}', '{tail}', '%')"
        );
        if a.scalar(&sql).await.as_deref() != Some("0") {
            on.push(name);
        }
    }
    on
}

async fn proxy() -> TestProxy {
    general_log_on().await;
    start_proxy(lab_config("")).await
}

async fn app(p: &TestProxy) -> Raw {
    Raw::app(&p.addr.to_string(), true).await
}

fn is_replica(server_id: Option<String>) -> bool {
    matches!(server_id.as_deref(), Some("2") | Some("3"))
}

/// Opens a START TRANSACTION READ ONLY and returns the server id of the
/// replica it runs on.
async fn begin_read_only(c: &mut Raw) -> Option<String> {
    c.exec("START TRANSACTION READ ONLY").await;
    let replica = c.scalar("SELECT @@server_id").await;
    assert!(is_replica(replica.clone()), "a read-only transaction on {replica:?}");
    replica
}

#[tokio::test]
async fn autocommit_reads_go_to_replicas() {
    let p = proxy().await;
    let mut c = app(&p).await;
    assert!(is_replica(c.scalar("SELECT @@server_id").await));
    for sql in [
        "SHOW TABLES /*{tag}*/",
        "DESCRIBE mysql.user /*{tag}*/",
        "EXPLAIN SELECT 1 /*{tag}*/",
        "SELECT 1 /*{tag}*/",
    ] {
        let tag = unique("rd");
        c.query(&sql.replace("{tag}", &tag)).await;
        let on = ran_on(&tag).await;
        assert!(on.len() == 1 && on[0].starts_with("replica"), "{sql}: ran on {on:?}");
    }
}

#[tokio::test]
async fn writes_and_side_effects_go_to_the_primary() {
    let p = proxy().await;
    let mut c =
        Raw::connect(&p.addr.to_string(), &login("admin", "admin", Some("app"), client_caps(true)))
            .await
            .unwrap();
    let t = unique("w");
    c.exec(&format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)")).await;
    let statements = [
        format!("INSERT INTO {t} VALUES (1, 1) /*TAG*/"),
        format!("UPDATE {t} SET v = 2 /*TAG*/"),
        format!("REPLACE INTO {t} VALUES (1, 3) /*TAG*/"),
        format!("DELETE FROM {t} WHERE id = 5 /*TAG*/"),
        format!("ALTER TABLE {t} COMMENT 'TAG'"),
        "FLUSH STATUS /*TAG*/".to_string(),
        "GRANT SELECT ON app.* TO 'app'@'%' /*TAG*/".to_string(),
        "XA START 'TAG'; XA END 'TAG'; XA ROLLBACK 'TAG'".to_string(),
        "DO RELEASE_LOCK('TAG')".to_string(),
    ];
    for s in statements {
        let tag = unique("wr");
        c.exec(&s.replace("TAG", &tag)).await;
        assert_eq!(ran_on(&tag).await.first(), Some(&"primary"), "{s}");
    }
    // CALL and LOAD DATA LOCAL INFILE.
    let tag = unique("call");
    c.exec(&format!("CREATE PROCEDURE {tag}() SELECT 1")).await;
    c.exec(&format!("CALL {tag}()")).await;
    assert_eq!(ran_on(&format!("CALL {tag}")).await.first(), Some(&"primary"));
    c.exec(&format!("DROP PROCEDURE {tag}")).await;
    let tag = unique("load");
    c.local_file = b"1\t2\n".to_vec();
    c.exec(&format!("LOAD DATA LOCAL INFILE '{tag}.tsv' INTO TABLE {t}")).await;
    assert_eq!(ran_on(&tag).await, vec!["primary"]);
    c.exec(&format!("DROP TABLE {t}")).await;
}

/// The proxy presents itself as the primary: what only the primary
/// answers for it (its binary log and GTID position, whether it takes
/// writes, whether it replicates) is asked there; other server variables
/// and SHOWs stay on the replicas.
#[tokio::test]
async fn the_primarys_own_state_is_asked_on_the_primary() {
    let p = proxy().await;
    let mut c =
        Raw::connect(&p.addr.to_string(), &login("admin", "admin", Some("app"), client_caps(true)))
            .await
            .unwrap();
    for sql in [
        "SHOW MASTER STATUS /*TAG*/",
        "SHOW BINARY LOGS /*TAG*/",
        "SHOW BINLOG EVENTS LIMIT 1 /*TAG*/",
        "SHOW SLAVE STATUS /*TAG*/",
        "SHOW SLAVE HOSTS /*TAG*/",
        "SELECT @@global.read_only, @@gtid_binlog_pos /*TAG*/",
        "SELECT @@gtid_current_pos /*TAG*/",
        "SHOW GLOBAL VARIABLES LIKE '%read_only' /*TAG*/",
        "SHOW VARIABLES WHERE Variable_name = 'gtid_binlog_pos' /*TAG*/",
        "SHOW FULL PROCESSLIST /*TAG*/",
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST /*TAG*/",
        "SHOW ENGINE INNODB STATUS /*TAG*/",
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX /*TAG*/",
        "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS /*TAG*/",
    ] {
        let tag = unique("ps");
        c.exec(&sql.replace("TAG", &tag)).await;
        assert_eq!(ran_on(&tag).await, vec!["primary"], "{sql}");
    }
    // The writable server answers, as a client connected to it would see.
    assert_eq!(c.scalar("SELECT @@read_only").await.as_deref(), Some("0"));
    let shown = c.query("SHOW VARIABLES LIKE 'read_only'").await;
    let row = &shown[shown.len() - 2].1;
    assert!(row.ends_with(b"\x03OFF"), "read_only as shown: {:?}", String::from_utf8_lossy(row));
    for sql in [
        "SHOW GLOBAL STATUS LIKE 'Uptime' /*TAG*/",
        "SELECT @@server_id /*TAG*/",
        "SHOW VARIABLES LIKE 'max_connections' /*TAG*/",
    ] {
        let tag = unique("rs");
        c.exec(&sql.replace("TAG", &tag)).await;
        let on = ran_on(&tag).await;
        assert!(on.len() == 1 && on[0].starts_with("replica"), "{sql}: ran on {on:?}");
    }
}

/// The text rows of a result, each column a string (None for NULL).
fn text_rows(r: &Packets, deprecate_eof: bool) -> Vec<Vec<Option<String>>> {
    let columns = usize::from(r[0].1[0]);
    let first_row = 1 + columns + usize::from(!deprecate_eof);
    let mut rows = Vec::new();
    for (_, row) in &r[first_row..r.len() - 1] {
        let mut c = rwsplit::protocol::packet::Cursor::new(row);
        let mut values = Vec::new();
        for _ in 0..columns {
            if c.remaining().first() == Some(&0xFB) {
                c.u8();
                values.push(None);
            } else {
                let v = c.lenenc_bytes().expect("a text value");
                values.push(Some(String::from_utf8_lossy(v).into_owned()));
            }
        }
        rows.push(values);
    }
    rows
}

/// SHOW PROCESSLIST through the proxy shows the sessions' connection ids,
/// the ones their clients know and KILL takes, as on a server: a client
/// finds its own row by its statement (PyMySQL's and aiomysql's own tests
/// do), and a privileged user kills it by that id. With and without
/// multiplexing.
#[tokio::test]
async fn the_processlist_shows_the_ids_clients_know_and_kill_takes() {
    for multiplex in [false, true] {
        let p = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        let addr = p.addr.to_string();
        let mut victim = Raw::app(&addr, true).await;
        let own_id = victim.scalar("SELECT CONNECTION_ID()").await.unwrap();
        let shown = victim.query("SHOW FULL PROCESSLIST").await;
        let own_rows: Vec<_> = text_rows(&shown, true)
            .into_iter()
            .filter(|row| row[7].as_deref() == Some("SHOW FULL PROCESSLIST"))
            .collect();
        assert_eq!(own_rows.len(), 1, "multiplex = {multiplex}: {own_rows:?}");
        assert_eq!(own_rows[0][0].as_deref(), Some(own_id.as_str()), "multiplex = {multiplex}");
        // As on the server: another user may not kill it, unless the
        // primary grants it SUPER or CONNECTION ADMIN (admin has all).
        let admin_login = login("admin", "admin", Some("app"), client_caps(true));
        let mut killer = Raw::connect(&addr, &admin_login).await.unwrap();
        let killer_id = killer.scalar("SELECT CONNECTION_ID()").await.unwrap();
        let refused = victim.query(&format!("KILL {killer_id}")).await;
        let refused =
            rwsplit::protocol::messages::parse_err(&refused.last().unwrap().1).map(|e| e.code);
        assert_eq!(refused, Some(1095), "multiplex = {multiplex}: app killed admin's session");
        killer.exec(&format!("KILL {own_id}")).await;
        // The killed session's connection closes.
        read_until_closed(&mut victim.conn.stream, std::time::Duration::from_secs(5)).await;
        let listed = killer.query("SHOW PROCESSLIST").await;
        let ids: Vec<_> = text_rows(&listed, true).into_iter().map(|row| row[0].clone()).collect();
        assert!(!ids.contains(&Some(own_id.clone())), "multiplex = {multiplex}: {ids:?}");
    }
}

/// A session killed (KILL CONNECTION) while its result streams loses its
/// connection in the middle of it, as from the server: no error of the
/// proxy's own in place of the rest (which a driver would take for a
/// failed statement on a live connection).
#[tokio::test]
async fn a_session_killed_mid_result_loses_its_connection_as_from_the_server() {
    use tokio::io::AsyncReadExt;
    let p = proxy().await;
    let addr = p.addr.to_string();
    let mut victim = Raw::app(&addr, true).await;
    let id = victim.scalar("SELECT CONNECTION_ID()").await.unwrap();
    victim.send_query("SELECT seq, REPEAT('a', 200) FROM seq_1_to_100000000").await;
    let mut wire = vec![0u8; 1 << 16];
    let n = victim.conn.stream.read(&mut wire).await.unwrap();
    wire.truncate(n);
    let mut killer = Raw::app(&addr, true).await;
    killer.exec(&format!("KILL {id}")).await;
    let stream = &mut victim.conn.stream;
    wire.extend(read_until_closed(stream, std::time::Duration::from_secs(20)).await);
    let mut rest = &wire[..];
    while let Some(h) = rwsplit::protocol::packet::parse_header(rest) {
        let Some(packet) = rest.get(4..4 + h.len) else { break };
        if let Some(e) = rwsplit::protocol::messages::parse_err(packet) {
            assert_ne!(e.code, 1105, "{}", String::from_utf8_lossy(e.message));
        }
        rest = &rest[4 + h.len..];
    }
}

/// A row lock wait is seen through the proxy where it is, on the primary:
/// monitoring that asks for waiting transactions finds them.
#[tokio::test]
async fn a_row_lock_wait_shows_in_innodb_trx() {
    let p = proxy().await;
    let table = lab_table("lockwait", "id INT PRIMARY KEY, v INT").await;
    let mut holder = app(&p).await;
    holder.exec(&format!("INSERT INTO {table} VALUES (1, 0)")).await;
    holder.exec("BEGIN").await;
    holder.exec(&format!("UPDATE {table} SET v = 1 WHERE id = 1")).await;
    let mut waiter = app(&p).await;
    let update = format!("UPDATE {table} SET v = 2 WHERE id = 1");
    let waiting = tokio::spawn(async move { waiter.query(&update).await });
    let mut c = app(&p).await;
    let asked = "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.scalar(asked).await.as_deref() == Some("0") {
        assert!(std::time::Instant::now() < deadline, "the lock wait never showed");
        // InnoDB refreshes its INNODB_TRX snapshot only after 100 ms
        // without a read of it: polling faster would keep the first one.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    holder.exec("COMMIT").await;
    let done = waiting.await.unwrap();
    assert!(rwsplit::protocol::messages::parse_err(&done.last().unwrap().1).is_none());
}

#[tokio::test]
async fn sql_level_prepared_statements_run_on_the_primary() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("PREPARE s FROM 'SELECT @@server_id'").await;
    assert_eq!(c.scalar("EXECUTE s").await.as_deref(), Some(PRIMARY_ID));
    c.exec("DEALLOCATE PREPARE s").await;
}

#[tokio::test]
async fn locking_reads_and_side_effect_functions_go_to_the_primary() {
    let p = proxy().await;
    let mut c = app(&p).await;
    for sql in [
        "SELECT @@server_id FROM DUAL FOR UPDATE",
        "SELECT @@server_id FROM DUAL LOCK IN SHARE MODE",
        "SELECT @@server_id, GET_LOCK('rwsplit_test', 0)",
        "SELECT @@server_id, RELEASE_LOCK('rwsplit_test')",
        "SELECT @@server_id, IS_FREE_LOCK('x')",
    ] {
        assert_eq!(c.scalar(sql).await.as_deref(), Some(PRIMARY_ID), "{sql}");
    }
}

/// With sql_mode NO_BACKSLASH_ESCAPES a backslash is an ordinary character,
/// and the proxy reads the session's statements as its server does: here
/// `'C:\'` ends at its second quote and the locking clause after it counts.
/// Read with backslash escapes, the rest of the line would be one string and
/// the statement a plain read for a replica.
#[tokio::test]
async fn a_session_without_backslash_escapes_is_read_as_its_server_reads_it() {
    let p = proxy().await;
    let mut c = app(&p).await;
    let locking = r"SELECT @@server_id, 'C:\' FROM DUAL FOR UPDATE -- '";
    let lock = r"SELECT @@server_id, 'C:\', GET_LOCK('rwsplit_nbe', 0) -- '";
    c.exec("SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')").await;
    for _ in 0..4 {
        assert_eq!(c.scalar(locking).await.as_deref(), Some(PRIMARY_ID), "{locking}");
        assert_eq!(c.scalar(lock).await.as_deref(), Some(PRIMARY_ID), "{lock}");
        assert_eq!(c.scalar("SELECT RELEASE_LOCK('rwsplit_nbe')").await.as_deref(), Some("1"));
        assert!(is_replica(c.scalar(r"SELECT @@server_id, 'C:\'").await));
    }
    // Back to escapes: the same text is a string and a comment, and the
    // statement a plain read.
    c.exec("SET sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')").await;
    assert!(is_replica(c.scalar(locking).await), "{locking}");
}

/// In gbk (as in big5, sjis, cp932, gb18030) the second byte of a character
/// may be a backslash: `81 5C` is one character, and the quote after it
/// ends the string. The proxy reads the statement in the client's character
/// set (from the login, then from `SET NAMES` as the server reports it), so
/// the locking clause after such a string counts. `E4 B8 AD 5C` is valid
/// UTF-8 (a character and a backslash) but two gbk characters.
#[tokio::test]
async fn statements_are_read_in_the_clients_multibyte_character_set() {
    let p = proxy().await;
    let addr = p.addr.to_string();
    let locking: [&[u8]; 2] = [
        b"SELECT @@server_id, '\x81\x5C' FROM DUAL FOR UPDATE -- '",
        b"SELECT @@server_id, '\xE4\xB8\xAD\x5C' FROM DUAL FOR UPDATE -- '",
    ];
    let read: &[u8] = b"SELECT @@server_id, '\x81\x5C'";
    let check = async |c: &mut Raw| {
        for _ in 0..4 {
            for sql in locking {
                let on = c.scalar_bytes(sql).await;
                assert_eq!(on.as_deref(), Some(PRIMARY_ID), "{}", String::from_utf8_lossy(sql));
            }
            assert!(is_replica(c.scalar_bytes(read).await));
        }
        // A statement the proxy would rewrite (`@@socket`) whose bytes read
        // otherwise as UTF-8 (where the last '@@socket' is outside a
        // string) reaches the server as the client wrote it.
        let sql = b"SELECT '\xE4\xB8\xAD\x5C' AS a, @@socket AS b, '@@socket' AS c";
        let r = c.query_bytes(sql).await;
        let row = &r[r.len() - 2].1;
        assert!(row.ends_with(b"\x08@@socket"), "{:?}", String::from_utf8_lossy(row));
    };
    // gbk_chinese_ci (28) at login.
    let mut at_login = login("app", "app", Some("app"), client_caps(true));
    at_login.collation = 28;
    let mut c = Raw::connect(&addr, &at_login).await.expect("login in gbk");
    check(&mut c).await;
    // utf8mb4 at login, then SET NAMES.
    let mut c = app(&p).await;
    c.exec("SET NAMES gbk").await;
    check(&mut c).await;
    // SET NAMES in a multi-statement whose next statement's OK reports
    // another change (the database) and not the character set.
    let mut c = app(&p).await;
    c.exec("SET NAMES gbk; USE app").await;
    check(&mut c).await;
}

#[tokio::test]
async fn last_insert_id_and_warnings_follow_the_previous_statement() {
    let p = proxy().await;
    let mut c = app(&p).await;
    // A read on a replica with a warning, then SHOW WARNINGS sees it.
    c.query("SELECT CAST('x' AS SIGNED), @@server_id").await;
    let r = c.query("SHOW WARNINGS").await;
    assert!(r.len() > 3, "warnings of the replica read are visible: {r:?}");
    // An insert on the primary, then LAST_INSERT_ID() there.
    let t = unique("li");
    c.exec(&format!("CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY)")).await;
    c.exec(&format!("INSERT INTO {t} VALUES (NULL), (NULL)")).await;
    assert_eq!(c.scalar("SELECT LAST_INSERT_ID()").await.as_deref(), Some("1"));
    assert_eq!(c.scalar("SELECT @@server_id, ROW_COUNT()").await.as_deref(), Some(PRIMARY_ID));
    // Set by SELECT LAST_INSERT_ID(expr): no OK packet reports it, yet it
    // holds after reads on the replicas, as on one server.
    assert_eq!(c.scalar("SELECT LAST_INSERT_ID(777)").await.as_deref(), Some("777"));
    assert_eq!(c.scalar("SELECT LAST_INSERT_ID()").await.as_deref(), Some("777"));
    for _ in 0..4 {
        assert!(is_replica(c.scalar("SELECT @@server_id").await));
        assert_eq!(c.scalar("SELECT LAST_INSERT_ID()").await.as_deref(), Some("777"));
    }
    // An insert in a multi-statement whose last statement generates no id.
    c.exec(&format!("INSERT INTO {t} VALUES (NULL); DO 1")).await;
    for _ in 0..4 {
        assert_eq!(c.scalar("SELECT LAST_INSERT_ID()").await.as_deref(), Some("3"));
        assert!(is_replica(c.scalar("SELECT @@server_id").await));
    }
    // An insert that gives the id itself: its OK reports 100, and
    // LAST_INSERT_ID() stays at the last generated one, as on the server.
    c.exec(&format!("INSERT INTO {t} VALUES (100)")).await;
    for _ in 0..4 {
        assert!(is_replica(c.scalar("SELECT @@server_id").await));
        assert_eq!(c.scalar("SELECT LAST_INSERT_ID()").await.as_deref(), Some("3"));
    }
    c.exec(&format!("DROP TABLE {t}")).await;
}

/// The session's last insert ran on the primary; FOUND_ROWS() and SHOW
/// WARNINGS after a read on a replica answer for that read (the proxy
/// gives a connection the insert id only for a statement that reads it).
#[tokio::test]
async fn found_rows_and_warnings_after_an_insert_answer_for_the_replica_read() {
    let p = proxy().await;
    let mut c = app(&p).await;
    let t = unique("fr");
    c.exec(&format!("CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY)")).await;
    c.exec(&format!("INSERT INTO {t} VALUES (NULL), (NULL), (NULL)")).await;
    wait_replicas_caught_up().await;
    for _ in 0..4 {
        let server =
            c.scalar(&format!("SELECT SQL_CALC_FOUND_ROWS @@server_id FROM {t} LIMIT 1")).await;
        assert!(is_replica(server.clone()), "the read ran on {server:?}");
        assert_eq!(c.scalar("SELECT FOUND_ROWS()").await.as_deref(), Some("3"));
        c.query("SELECT CAST('x' AS SIGNED)").await;
        let warnings = c.query("SHOW WARNINGS").await;
        assert!(warnings.len() > 3, "the replica read's warning: {warnings:?}");
    }
    assert_eq!(c.scalar("SELECT LAST_INSERT_ID()").await.as_deref(), Some("1"));
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn user_variables_are_seen_where_they_were_set() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("SET @greeting = 'hello'").await;
    assert_eq!(c.scalar("SELECT @greeting").await.as_deref(), Some("hello"));
    c.query("SELECT 42 INTO @answer").await;
    assert_eq!(c.scalar("SELECT @answer").await.as_deref(), Some("42"));
    assert_eq!(c.scalar("SELECT @n := 7").await.as_deref(), Some("7"));
    assert_eq!(c.scalar("SELECT @n + 1").await.as_deref(), Some("8"));
    // An XPath reads one as `$@name` inside a string.
    c.exec("SET @i = 2").await;
    let xpath = "SELECT ExtractValue('<a><b>b1</b><b>b2</b></a>', '/a/b[$@i]')";
    for _ in 0..4 {
        assert_eq!(c.scalar(xpath).await.as_deref(), Some("b2"));
    }
    // The user_variables plugin lists the session's variables.
    let listed = "SELECT VARIABLE_VALUE FROM information_schema.USER_VARIABLES \
                  WHERE VARIABLE_NAME = 'greeting'";
    assert_eq!(c.scalar(listed).await.as_deref(), Some("hello"));
    let shown = "SELECT COUNT(*) FROM information_schema.USER_VARIABLES";
    assert_eq!(c.scalar(shown).await.as_deref(), Some("4"));
    // SHOW USER_VARIABLES has no LIKE: its first row is a variable's name.
    assert!(c.scalar("SHOW USER_VARIABLES").await.is_some());
}

#[tokio::test]
async fn explicit_transaction_stays_on_the_primary() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("BEGIN").await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    c.exec("SAVEPOINT s1").await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    c.exec("ROLLBACK TO SAVEPOINT s1").await;
    c.exec("COMMIT").await;
    assert!(is_replica(c.scalar("SELECT @@server_id").await));
    c.exec("START TRANSACTION").await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    c.exec("ROLLBACK").await;
}

#[tokio::test]
async fn autocommit_off_keeps_every_statement_on_the_primary() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("SET autocommit = 0").await;
    for _ in 0..3 {
        assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
        c.exec("COMMIT").await;
    }
    c.exec("SET autocommit = 1").await;
    assert!(is_replica(c.scalar("SELECT @@server_id").await));
}

#[tokio::test]
async fn read_only_transaction_runs_on_one_replica() {
    let p = proxy().await;
    let mut c = app(&p).await;
    let first = begin_read_only(&mut c).await;
    for _ in 0..5 {
        assert_eq!(c.scalar("SELECT @@server_id").await, first);
    }
    // A user lock taken inside it is the primary's: it excludes others.
    let lock = unique("rolock");
    assert_eq!(c.scalar(&format!("SELECT GET_LOCK('{lock}', 0)")).await.as_deref(), Some("1"));
    let mut other = app(&p).await;
    assert_eq!(other.scalar(&format!("SELECT GET_LOCK('{lock}', 0)")).await.as_deref(), Some("0"));
    assert_eq!(c.scalar("SELECT @@server_id").await, first, "still in the transaction");
    c.exec("COMMIT").await;
    assert_eq!(c.scalar(&format!("SELECT RELEASE_LOCK('{lock}')")).await.as_deref(), Some("1"));
    assert_eq!(other.scalar(&format!("SELECT GET_LOCK('{lock}', 0)")).await.as_deref(), Some("1"));
}

#[tokio::test]
async fn write_in_a_read_only_transaction_gets_the_primarys_error() {
    let p = proxy().await;
    let t = lab_table("rotx", "id INT PRIMARY KEY").await;
    let mut c = app(&p).await;
    let replica = begin_read_only(&mut c).await;
    for write in [
        format!("INSERT INTO {t} VALUES (1)"),
        format!("UPDATE {t} SET id = 2"),
        format!("DELETE FROM {t}"),
    ] {
        let reply = c.query(&write).await;
        let err = rwsplit::protocol::messages::parse_err(&reply.last().unwrap().1)
            .unwrap_or_else(|| panic!("{write} succeeded in a read-only transaction"));
        // What the primary answers; the replica itself would say 1290.
        assert_eq!((err.code, err.state), (1792, &b"25006"[..]), "{write}");
    }
    assert_eq!(c.scalar("SELECT @@server_id").await, replica, "still in the transaction");
    c.exec("COMMIT").await;
    c.exec(&format!("INSERT INTO {t} VALUES (1)")).await;
    assert_eq!(c.scalar(&format!("SELECT COUNT(*) FROM {t}")).await.as_deref(), Some("1"));
}

#[tokio::test]
async fn implicit_commit_ends_a_read_only_transaction_as_on_the_primary() {
    let p = proxy().await;
    let t = lab_table("roddl", "id INT PRIMARY KEY").await;
    let mut c = app(&p).await;

    // DDL commits the read-only transaction and runs on the primary.
    begin_read_only(&mut c).await;
    assert_eq!(c.scalar(&format!("SELECT COUNT(*) FROM {t}")).await.as_deref(), Some("0"));
    let t2 = format!("{t}_2");
    c.exec(&format!("CREATE TABLE {t2} (id INT)")).await;
    c.exec(&format!("INSERT INTO {t2} VALUES (1)")).await;
    c.exec(&format!("INSERT INTO {t} VALUES (1)")).await;
    // No read meets the old transaction's snapshot on either replica.
    for _ in 0..10 {
        assert_eq!(c.scalar(&format!("SELECT COUNT(*) FROM {t}")).await.as_deref(), Some("1"));
    }
    c.exec(&format!("DELETE FROM {t}")).await;

    // START TRANSACTION inside it commits it and opens a read-write one,
    // which writes.
    begin_read_only(&mut c).await;
    c.exec("START TRANSACTION").await;
    c.exec(&format!("INSERT INTO {t} VALUES (1)")).await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    c.exec("ROLLBACK").await;
    assert_eq!(c.scalar(&format!("SELECT COUNT(*) FROM {t}")).await.as_deref(), Some("0"));

    // And a new read-only one goes to a replica again.
    c.exec("START TRANSACTION READ ONLY").await;
    begin_read_only(&mut c).await;
    c.exec("COMMIT").await;
    c.exec(&format!("DROP TABLE {t2}")).await;
}

#[tokio::test]
async fn user_variables_and_temporary_tables_carry_into_a_read_only_transaction() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("SET @before = 5").await;
    c.exec("CREATE TEMPORARY TABLE rotmp (id INT)").await;
    let replica = begin_read_only(&mut c).await;
    assert_eq!(c.scalar("SELECT @before").await.as_deref(), Some("5"));
    c.exec("SET @inside = 6").await;
    c.exec("SELECT 7 INTO @into").await;
    c.exec("INSERT INTO rotmp VALUES (1)").await;
    assert_eq!(c.scalar("SELECT COUNT(*) FROM rotmp").await.as_deref(), Some("1"));
    assert_eq!(c.scalar("SELECT @@server_id").await, replica, "still in the transaction");
    c.exec("COMMIT").await;
    assert_eq!(c.scalar("SELECT CONCAT(@inside, @into)").await.as_deref(), Some("67"));
}

#[tokio::test]
async fn lock_tables_pins_the_session_until_unlock() {
    let p = proxy().await;
    let mut c = app(&p).await;
    let t = unique("lk");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE TABLE app.{t} (id INT)")).await;
    c.exec(&format!("LOCK TABLES {t} READ")).await;
    assert_eq!(
        c.scalar(&format!("SELECT @@server_id FROM {t} RIGHT JOIN (SELECT 1) x ON 1"))
            .await
            .as_deref(),
        Some(PRIMARY_ID)
    );
    c.exec("UNLOCK TABLES").await;
    assert!(is_replica(c.scalar("SELECT @@server_id").await));
    a.exec(&format!("DROP TABLE app.{t}")).await;
}

#[tokio::test]
async fn session_settings_apply_to_replica_reads() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("SET time_zone = '+05:30'").await;
    c.exec("SET SESSION sql_mode = 'ANSI_QUOTES'").await;
    c.exec("SET NAMES latin1").await;
    for _ in 0..4 {
        // Several reads, so both replicas serve some.
        assert!(is_replica(c.scalar("SELECT @@server_id").await));
        assert_eq!(c.scalar("SELECT @@time_zone").await.as_deref(), Some("+05:30"));
        assert_eq!(c.scalar("SELECT @@sql_mode").await.as_deref(), Some("ANSI_QUOTES"));
        assert_eq!(c.scalar("SELECT @@character_set_client").await.as_deref(), Some("latin1"));
    }
    c.exec("USE information_schema").await;
    for _ in 0..4 {
        assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some("information_schema"));
    }
    // A database changed anywhere in a multi-statement, also with a
    // comment after the name, and before a failing statement.
    for (sql, db) in [
        ("SELECT 1; USE information_schema", "information_schema"),
        ("USE information_schema; USE app", "app"),
        ("USE information_schema /* tables of tables */", "information_schema"),
        ("USE information_schema; SELECT * FROM no_such_table_anywhere", "information_schema"),
    ] {
        c.query("USE app").await;
        c.query(sql).await;
        for _ in 0..4 {
            assert!(is_replica(c.scalar("SELECT @@server_id").await), "{sql}");
            assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some(db), "{sql}");
        }
    }
    // A failing SET fails for the client and is not replayed.
    let r = c.query("SET SESSION sql_mode = 'NO_SUCH_MODE'").await;
    assert_eq!(r[0].1[0], 0xFF);
    assert_eq!(c.scalar("SELECT @@sql_mode").await.as_deref(), Some("ANSI_QUOTES"));
}

/// SETs inside a multi-statement reach the replicas' connections, each
/// alone: replaying the whole text there would run its other statements
/// again (a BEGIN left a transaction open on the replica; an INSERT would
/// have been tried there).
#[tokio::test]
async fn sets_in_a_multi_statement_apply_to_replica_reads_alone() {
    let p = proxy().await;
    let t = lab_table("multi_set", "id INT").await;
    let cases = [
        (format!("INSERT INTO {t} VALUES (1); SET time_zone = '+01:00'"), "+01:00"),
        (format!("SET time_zone = '+02:00'; INSERT INTO {t} VALUES (2)"), "+02:00"),
        ("SET time_zone = '+03:00'; BEGIN".to_string(), "+03:00"),
        ("USE app; SET time_zone = '+04:00'".to_string(), "+04:00"),
        ("/*!40101 SET time_zone = '+05:00' */; SELECT 1".to_string(), "+05:00"),
    ];
    for (sql, zone) in cases {
        let mut c = app(&p).await;
        c.query(&sql).await;
        c.query("COMMIT").await;
        for _ in 0..4 {
            let r = c.query("SELECT @@server_id, @@time_zone, @@in_transaction").await;
            let row = String::from_utf8_lossy(&r[r.len() - 2].1).into_owned();
            assert!(row.contains(zone) && row.ends_with("\x010"), "{sql}: {row:?}");
            assert!(!row.starts_with("\x011"), "{sql}: read on the primary: {row:?}");
        }
    }
    // Failing part way: which SETs ran is unknown, so the session's reads
    // stay where they ran.
    let mut c = app(&p).await;
    c.query("SET time_zone = '+06:00'; SELECT * FROM nowhere; SET time_zone = '+07:00'").await;
    for _ in 0..4 {
        assert_eq!(c.scalar("SELECT @@time_zone").await.as_deref(), Some("+06:00"));
    }
    let mut a = admin(PRIMARY).await;
    assert_eq!(a.scalar(&format!("SELECT COUNT(*) FROM app.{t}")).await.as_deref(), Some("2"));
    a.exec(&format!("DROP TABLE app.{t}")).await;
}

/// COM_STMT_EXECUTE of statement `id` with one parameter (its binary
/// value), its type sent or left to what the server saw before.
fn execute_one(id: u32, param_type: u8, value: &[u8], with_types: bool) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0); // null bitmap
    p.push(u8::from(with_types));
    if with_types {
        p.extend_from_slice(&[param_type, 0]);
    }
    p.extend_from_slice(value);
    p
}

/// A short string as a binary protocol value (VAR_STRING).
fn short_string(value: &str) -> Vec<u8> {
    let mut v = vec![value.len() as u8];
    v.extend_from_slice(value.as_bytes());
    v
}

#[tokio::test]
async fn prepared_session_settings_apply_to_replica_reads() {
    // Drivers that prepare every statement (Perl's DBI with server-side
    // prepares, PDO without emulation) send their SETs as COM_STMT_EXECUTE.
    general_log_on().await;
    for multiplex in [false, true] {
        let p = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        let mut c = app(&p).await;
        let r = c.prepare(b"\x16SET time_zone = ?").await;
        let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
        // The second execute leaves the parameter's type out, as clients
        // may: the replicas still get it.
        for (value, with_types) in [("+01:00", true), ("+05:30", false)] {
            let execute = execute_one(id, 0xFD, &short_string(value), with_types);
            let r = c.command(&execute, Expect::Result).await;
            assert_eq!(r[0].1[0], 0x00, "SET failed: {:?}", String::from_utf8_lossy(&r[0].1));
        }
        let r = c.prepare(b"\x16SET SESSION sql_mode = 'ANSI_QUOTES'").await;
        let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
        let mut e = vec![0x17];
        e.extend_from_slice(&id.to_le_bytes());
        e.push(0);
        e.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(c.command(&e, Expect::Result).await[0].1[0], 0x00);
        let mut servers = std::collections::HashSet::new();
        for i in 0..6 {
            let got = c.scalar("SELECT CONCAT_WS(' ', @@server_id, @@time_zone, @@sql_mode)").await;
            let got = got.unwrap_or_default();
            let (server, settings) = got.split_once(' ').unwrap_or_default();
            assert!(
                is_replica(Some(server.into())),
                "multiplex {multiplex}, read {i} on server {got}"
            );
            assert_eq!(settings, "+05:30 ANSI_QUOTES", "multiplex {multiplex}, read {i}");
            servers.insert(server.to_string());
        }
        assert_eq!(servers.len(), 2, "multiplex {multiplex}: reads on both replicas");
    }
}

#[tokio::test]
async fn temporary_tables_are_read_where_they_live() {
    let p = proxy().await;
    let mut c = app(&p).await;
    c.exec("CREATE TEMPORARY TABLE tmp_routing (id INT)").await;
    c.exec("INSERT INTO tmp_routing VALUES (1), (2)").await;
    for _ in 0..4 {
        assert_eq!(c.scalar("SELECT COUNT(*) FROM tmp_routing").await.as_deref(), Some("2"));
        // Described, in each way SHOW names a table: on the primary only
        // (a replica would answer that it does not exist, and be retried).
        for show in ["SHOW FIELDS IN tmp_routing IN app", "SHOW KEYS IN tmp_routing"] {
            let tag = unique("show");
            let r = c.query(&format!("{show} /*{tag}*/")).await;
            let error = rwsplit::protocol::messages::parse_err(&r.last().unwrap().1);
            assert_eq!(error, None, "{show}");
            assert_eq!(ran_on(&tag).await, vec!["primary"], "{show}");
        }
    }
    c.exec("DROP TEMPORARY TABLE tmp_routing").await;
    // Under sql_mode ANSI_QUOTES a double-quoted name is an identifier. The
    // temporary table hides a table of the same name, empty, which the
    // replicas have too: read there, the count would be 0.
    let shadowed = lab_table("shadowed", "id INT").await;
    c.exec("SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')").await;
    c.exec(&format!(r#"CREATE TEMPORARY TABLE "{shadowed}" (id INT)"#)).await;
    c.exec(&format!(r#"INSERT INTO "{shadowed}" VALUES (1), (2), (3)"#)).await;
    for _ in 0..4 {
        let n = c.scalar(&format!(r#"SELECT COUNT(*) FROM "{shadowed}""#)).await;
        assert_eq!(n.as_deref(), Some("3"));
    }
    c.exec(&format!(r#"DROP TEMPORARY TABLE "{shadowed}""#)).await;
    let n = c.scalar(&format!(r#"SELECT COUNT(*) FROM "{shadowed}""#)).await;
    assert_eq!(n.as_deref(), Some("0"));
    // Created and dropped by any statement of a multi-statement, also
    // one that then fails.
    let mut c = app(&p).await;
    let t = &shadowed;
    for (sql, rows) in [
        (
            format!(
                "SELECT 1; CREATE TEMPORARY TABLE {t} (id INT); INSERT INTO {t} VALUES (1), (2)"
            ),
            2,
        ),
        (format!("DO 1; DROP TEMPORARY TABLE {t}"), 0),
        (
            format!(
                "CREATE TEMPORARY TABLE {t} (id INT); INSERT INTO {t} VALUES (1); SELECT * FROM nowhere"
            ),
            1,
        ),
    ] {
        c.query(&sql).await;
        for _ in 0..4 {
            let n = c.scalar(&format!("SELECT COUNT(*) FROM {t}")).await;
            assert_eq!(n.as_deref(), Some(rows.to_string().as_str()), "{sql}");
        }
    }
    c.exec(&format!("DROP TABLE {t}")).await;
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn reads_after_a_write_see_it_and_still_use_replicas() {
    let p = proxy().await;
    let mut c = app(&p).await;
    let t = unique("aw");
    c.exec(&format!("CREATE TABLE {t} (id INT)")).await;
    for i in 0..20 {
        c.exec(&format!("INSERT INTO {t} VALUES ({i})")).await;
        let got = c.scalar(&format!("SELECT @@server_id, (SELECT MAX(id) FROM {t})")).await;
        assert!(is_replica(got), "gtid mode reads from replicas after a write");
        let r = c.query(&format!("SELECT MAX(id) FROM {t}")).await;
        assert_eq!(
            r[r.len() - 2].1,
            format!("\x01{i}")
                .into_bytes()
                .get(..)
                .map(|_| {
                    let mut v = vec![i.to_string().len() as u8];
                    v.extend_from_slice(i.to_string().as_bytes());
                    v
                })
                .unwrap(),
            "read {i} sees its write"
        );
    }
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn pin_mode_keeps_reads_after_a_write_on_the_primary() {
    let p = proxy().await;
    let mut c = app(&p).await;
    // With comments around it, as ORMs and tracing libraries add them.
    c.exec("/* app:orders */ SET @rwsplit_consistency = 'pin' /*traceparent='00-4bf9'*/").await;
    let t = unique("pin");
    c.exec(&format!("CREATE TABLE {t} (id INT)")).await;
    c.exec(&format!("INSERT INTO {t} VALUES (7)")).await;
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    let r = c.query("SET @rwsplit_consistency = 'sometimes'").await;
    assert_eq!(r[0].1[0], 0xFF, "an unknown mode is refused");
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn the_consistency_mode_is_set_by_a_prepared_statement_too() {
    // Drivers that prepare every statement send the SET as an execute,
    // the mode written in or bound to a parameter.
    let p = proxy().await;
    let t = unique("pinprep");
    for (text, value) in
        [("SET @rwsplit_consistency = 'pin'", None), ("SET @rwsplit_consistency = ?", Some("PIN"))]
    {
        let mut c = app(&p).await;
        let mut prep = vec![0x16];
        prep.extend_from_slice(text.as_bytes());
        let r = c.prepare(&prep).await;
        let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
        let execute = match value {
            Some(v) => execute_one(id, 0xFD, &short_string(v), true),
            // No parameters: the execute ends after its iteration count.
            None => execute_one(id, 0, &[], false)[..10].to_vec(),
        };
        let r = c.command(&execute, Expect::Result).await;
        assert_eq!(r[0].1[0], 0x00, "{text}: {:?}", String::from_utf8_lossy(&r[0].1));
        c.exec(&format!("CREATE TABLE IF NOT EXISTS {t} (id INT)")).await;
        c.exec(&format!("INSERT INTO {t} VALUES (7)")).await;
        assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID), "{text}");
        if value.is_some() {
            let bad = execute_one(id, 0xFD, &short_string("sometimes"), true);
            let r = c.command(&bad, Expect::Result).await;
            assert_eq!(r[0].1[0], 0xFF, "an unknown mode is refused");
        }
    }
    let mut c = app(&p).await;
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn hints_force_the_target() {
    let p = proxy().await;
    let mut c = app(&p).await;
    assert_eq!(
        c.scalar("SELECT /* rwsplit:primary */ @@server_id").await.as_deref(),
        Some(PRIMARY_ID)
    );
    let tag = unique("hint");
    let t = unique("h");
    c.exec(&format!("CREATE TABLE {t} (id INT)")).await;
    c.exec(&format!("INSERT /* rwsplit:replica */ INTO {t} VALUES (1) /*{tag}*/")).await;
    assert_eq!(ran_on(&tag).await, vec!["primary"], "a replica hint on a write is ignored");
    assert!(is_replica(c.scalar("SELECT /* rwsplit:replica */ @@server_id").await));
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn no_reachable_replica_means_reads_on_the_primary() {
    // Both replicas at ports where nothing listens.
    let mut config = lab_config("");
    config.backends[1].address = "127.0.0.1:1".into();
    config.backends[2].address = "127.0.0.1:2".into();
    let p = start_proxy(config).await;
    let mut c = app(&p).await;
    for _ in 0..5 {
        assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    }
}

#[tokio::test]
async fn prepared_reads_run_on_replicas_and_writes_on_the_primary() {
    let p = proxy().await;
    let mut c = app(&p).await;
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT @@server_id, ?");
    let r = c.prepare(&prep).await;
    let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
    let exec = |with_types: bool| execute_one(id, 0x08, &5i64.to_le_bytes(), with_types);
    // First with types, then without: each replica gets the types it needs.
    let mut servers = std::collections::HashSet::new();
    for i in 0..6 {
        let r = c.command(&exec(i == 0), Expect::Result).await;
        assert_ne!(r[0].1[0], 0xFF, "execute {i} failed: {:?}", String::from_utf8_lossy(&r[0].1));
        // Binary row: 0x00, null bitmap (1 byte), @@server_id and the
        // parameter, both 8-byte integers.
        let row = &r[r.len() - 2].1;
        let server = u64::from_le_bytes(row[2..10].try_into().unwrap());
        let param = i64::from_le_bytes(row[10..18].try_into().unwrap());
        assert_eq!(param, 5, "execute {i}: the parameter (and its type) reached the backend");
        servers.insert(server);
    }
    assert_eq!(servers, [2, 3].into_iter().collect(), "prepared reads ran on both replicas");
    let t = unique("pw");
    c.exec(&format!("CREATE TABLE {t} (id INT)")).await;
    let mut prep = vec![0x16];
    prep.extend_from_slice(format!("INSERT INTO {t} VALUES (1)").as_bytes());
    let r = c.prepare(&prep).await;
    let wid = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
    let mut e = vec![0x17];
    e.extend_from_slice(&wid.to_le_bytes());
    e.push(0);
    e.extend_from_slice(&1u32.to_le_bytes());
    let r = c.command(&e, Expect::Result).await;
    assert_eq!(r[0].1[0], 0x00);
    let mut a = admin(PRIMARY).await;
    assert_eq!(a.scalar(&format!("SELECT COUNT(*) FROM app.{t}")).await.as_deref(), Some("1"));
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn configured_rules_route_like_hints() {
    let p = start_proxy(lab_config(
        r#"
[[rules]]
match_pattern = "from_rule_to_primary"
target = "primary"
[[rules]]
match_digest = "^select @@server_id, \\? as always_replica$"
target = "replica"
"#,
    ))
    .await;
    let mut c = app(&p).await;
    c.exec("SET @rwsplit_consistency = 'pin'").await;
    assert_eq!(
        c.scalar("SELECT @@server_id, 'from_rule_to_primary'").await.as_deref(),
        Some(PRIMARY_ID)
    );
    let t = unique("rule");
    c.exec(&format!("CREATE TABLE {t} (id INT)")).await;
    // After a write reads stay on the primary, except what a rule sends away.
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some(PRIMARY_ID));
    assert!(is_replica(c.scalar("SELECT @@server_id, 42 AS always_replica").await));
    c.exec(&format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn rules_choose_by_listener_user_and_database() {
    const SERVER: &str = "SELECT @@server_id";
    let port = free_port();
    let second = format!("127.0.0.1:{port}");
    let p = start_proxy(lab_config(&format!(
        r#"
[[listeners]]
address = "{second}"
[[rules]]
listener = "{second}"
target = "primary"
[[rules]]
user = "admin"
match_digest = "^select @@server_id$"
target = "primary"
[[rules]]
database = "information_schema"
target = "primary"
"#
    )))
    .await;
    // The first listener: reads on the replicas.
    let mut c = app(&p).await;
    assert!(is_replica(c.scalar(SERVER).await));
    // The second: every statement on the primary, as on a read-write port.
    let mut on_second = Raw::app(&second, true).await;
    assert_eq!(on_second.scalar(SERVER).await.as_deref(), Some(PRIMARY_ID));
    // A user's statements of one shape.
    let caps = client_caps(true);
    let mut a =
        Raw::connect(&p.addr.to_string(), &login("admin", "admin", None, caps)).await.unwrap();
    assert_eq!(a.scalar(SERVER).await.as_deref(), Some(PRIMARY_ID));
    assert!(is_replica(a.scalar("SELECT @@server_id, 1").await), "another shape");
    // The session's current database.
    c.exec("USE information_schema").await;
    assert_eq!(c.scalar(SERVER).await.as_deref(), Some(PRIMARY_ID));
    c.exec("USE app").await;
    assert!(is_replica(c.scalar(SERVER).await));
}

/// The error code and message of a response's first packet, if an error.
fn error_of(packets: &Packets) -> Option<(u16, String)> {
    let p = &packets.first()?.1;
    (p.first() == Some(&0xff))
        .then(|| (u16::from_le_bytes([p[1], p[2]]), String::from_utf8_lossy(&p[9..]).into_owned()))
}

#[tokio::test]
async fn a_reject_rule_refuses_statements_prepares_and_executions_and_the_session_goes_on() {
    let rules = |with_reject: bool| {
        let mut r = String::from(
            "[[rules]]\nmatch_pattern = \"forbidden_but_first\"\ntarget = \"primary\"\n",
        );
        if with_reject {
            r.push_str(
                "[[rules]]\nmatch_pattern = \"forbidden\"\ntarget = \"reject\"\n\
                 message = \"not during the incident\"\n",
            );
        }
        r
    };
    let text = |with_reject| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[users]]\nname = \"app\"\npassword = \"app\"\n\
             [[backends]]\nname = \"primary\"\naddress = \"{PRIMARY}\"\nrole = \"primary\"\n\
             [[backends]]\nname = \"replica1\"\naddress = \"{REPLICA1}\"\nrole = \"replica\"\n{}",
            rules(with_reject)
        )
    };
    let path = temp_config("reject-rule", &text(false));
    let p = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let mut c = app(&p).await;
    // Prepared before the rule exists.
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT 'forbidden', ?");
    let r = c.prepare(&prep).await;
    let early = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
    std::fs::write(&path, text(true)).unwrap();
    p.shared.reload().expect("reload");

    let r = c.query("SELECT 'forbidden'").await;
    assert_eq!(error_of(&r), Some((1148, "not during the incident".to_string())));
    let r = c.prepare(&prep).await;
    assert_eq!(error_of(&r).map(|e| e.0), Some(1148), "a prepare is refused");
    let r = c.command(&execute_one(early, 0xfd, &short_string("x"), true), Expect::Result).await;
    assert_eq!(error_of(&r).map(|e| e.0), Some(1148), "so are executions prepared before");
    // Rules are tried in order: an earlier match wins.
    assert_eq!(
        c.scalar("SELECT @@server_id, 'forbidden_but_first'").await.as_deref(),
        Some(PRIMARY_ID)
    );
    // The session goes on, its other statements untouched.
    assert_eq!(c.scalar("SELECT 'allowed'").await.as_deref(), Some("allowed"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// A temporary table a procedure created, which the proxy cannot see in
/// the CALL, is read on the primary: the server reports the CALL changed
/// the session, and the session's reads stay there from then on, also
/// after a write. A table that exists nowhere gets the primary's error.
/// With and without multiplexing. (A table a replica does not have yet
/// is read on the primary too: `lag a_table_not_yet_replicated_is_read_on_the_primary`.)
#[tokio::test]
async fn a_table_a_replica_does_not_have_is_read_on_the_primary() {
    let proc = unique("mk_tmp");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!(
        "CREATE PROCEDURE app.{proc}() BEGIN \
         CREATE TEMPORARY TABLE proc_tmp (n INT); INSERT INTO proc_tmp VALUES (1), (2), (3); END"
    ))
    .await;
    let written = unique("written");
    a.exec(&format!("CREATE TABLE app.{written} (n INT)")).await;
    wait_replicas_caught_up().await;
    general_log_on().await;
    for multiplex in [false, true] {
        let config = lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"));
        let p = start_proxy(config).await;
        let mut c = app(&p).await;
        c.exec(&format!("CALL {proc}()")).await;
        let tag = unique("tmpread");
        let n = c.scalar(&format!("SELECT COUNT(*) FROM proc_tmp /*{tag}*/")).await;
        assert_eq!(n.as_deref(), Some("3"), "multiplex={multiplex}");
        let on = ran_on(&tag).await;
        assert!(on.contains(&"primary"), "multiplex={multiplex}: ran on {on:?}");
        // Also right after a write.
        for _ in 0..3 {
            c.exec(&format!("INSERT INTO {written} VALUES (1)")).await;
            let n = c.scalar("SELECT COUNT(*) FROM proc_tmp").await;
            assert_eq!(n.as_deref(), Some("3"), "multiplex={multiplex}, after a write");
        }
        // A table that exists nowhere: the primary's error, and the
        // session goes on.
        let r = c.query("SELECT * FROM app.no_such_table_anywhere").await;
        let last = &r.last().unwrap().1;
        let e = rwsplit::protocol::messages::parse_err(last).expect("an error");
        assert_eq!(e.code, 1146);
        assert_eq!(
            String::from_utf8_lossy(e.message),
            "Table 'app.no_such_table_anywhere' doesn't exist"
        );
        let server = c.scalar("SELECT @@server_id").await;
        assert_eq!(server.as_deref(), Some(PRIMARY_ID), "multiplex={multiplex}");
    }
    a.exec(&format!("DROP PROCEDURE app.{proc}")).await;
    a.exec(&format!("DROP TABLE app.{written}")).await;
}

/// A SET run by SQL EXECUTE, EXECUTE IMMEDIATE or inside a procedure
/// (CALL) changes the session where it runs (the primary), in a text the
/// proxy does not read as a SET: the session's reads then stay on the
/// primary, where that state is, with and without multiplexing. An EXECUTE
/// or a procedure that changes nothing of the session (an INSERT), and a
/// procedure whose OUT parameter sets a user variable, leave reads on the
/// replicas. Before, `SELECT 1 / 3` after a prepared `SET
/// div_precision_increment = 8` (or a CALL of a procedure that sets it) ran
/// on a replica without it: 0.3333 instead of 0.33333333. (A procedure's
/// own sql_mode is put back when it returns: not one to test with.)
#[tokio::test]
async fn a_set_run_by_sql_execute_or_a_procedure_keeps_the_sessions_reads_where_it_ran() {
    let table = lab_table("executed", "n INT").await;
    let inserts = unique("inserts");
    let sets_precision = unique("sets_precision");
    let out_param = unique("out_param");
    on_primary_replicated(&[
        &format!("CREATE PROCEDURE app.{inserts}() INSERT INTO app.{table} VALUES (2)"),
        &format!(
            "CREATE PROCEDURE app.{sets_precision}() BEGIN \
             INSERT INTO app.{table} VALUES (3); SET div_precision_increment = 8; END"
        ),
        &format!(
            "CREATE PROCEDURE app.{out_param}(OUT n INT) SELECT COUNT(*) INTO n FROM app.{table}"
        ),
    ])
    .await;
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        let addr = p.addr.to_string();
        let mut c = Raw::app(&addr, true).await;
        c.exec(&format!("PREPARE ins FROM 'INSERT INTO {table} VALUES (1)'")).await;
        c.exec("EXECUTE ins").await;
        assert!(is_replica(c.scalar("SELECT @@server_id").await), "an INSERT changes no state");
        // Neither does a procedure that inserts, nor one whose OUT
        // parameter sets a user variable (read on the primary anyway: the
        // server reports no state change for it).
        c.exec(&format!("CALL {inserts}()")).await;
        assert!(is_replica(c.scalar("SELECT @@server_id").await), "CALL {inserts} ({extra:?})");
        c.exec(&format!("CALL {out_param}(@n)")).await;
        assert!(is_replica(c.scalar("SELECT @@server_id").await), "CALL {out_param} ({extra:?})");
        assert!(c.scalar("SELECT @n").await.is_some(), "the OUT parameter ({extra:?})");
        let divide = "SELECT CONCAT_WS(' ', 1 / 3, @@server_id)";
        let call = format!("CALL {sets_precision}()");
        for set in [
            "PREPARE s FROM 'SET div_precision_increment = 8'; EXECUTE s",
            "EXECUTE IMMEDIATE 'SET div_precision_increment = 8'",
            &call,
        ] {
            let mut c = Raw::app(&addr, true).await;
            for statement in set.split("; ") {
                c.exec(statement).await;
            }
            for _ in 0..4 {
                let answer = c.scalar(divide).await.expect("a value");
                assert_eq!(answer, format!("0.33333333 {PRIMARY_ID}"), "after {set:?} ({extra:?})");
            }
        }
    }
}

/// A read that writes where the proxy cannot see it (a view that takes a
/// sequence's next value): a replica refuses it as a write (read-only;
/// nothing ran there), and the primary answers instead, the client never
/// knowing, as text and as a prepared statement. Before, the client got
/// the replica's ERROR 1290. A user whom `read_only` lets write (SUPER,
/// here admin) gets the same: the proxy's replica connections take no
/// writes (ERROR 1792). Before, the view took the replica's own sequence
/// value, and the replica's local write stopped its replication at the
/// primary's next one.
#[tokio::test]
async fn a_read_a_replica_refuses_as_a_write_runs_on_the_primary() {
    let sequence = unique("seq");
    let view = format!("{sequence}_next");
    on_primary_replicated(&[
        &format!("CREATE SEQUENCE app.{sequence}"),
        &format!("CREATE VIEW app.{view} AS SELECT NEXTVAL(app.{sequence}) AS n"),
    ])
    .await;
    let configs = ["", "[pool]\nmultiplex = true"];
    for (extra, user) in configs.iter().flat_map(|c| [(*c, "app"), (*c, "admin")]) {
        let p = start_proxy(lab_config(extra)).await;
        let caps = client_caps(true);
        let mut c =
            Raw::connect(&p.addr.to_string(), &login(user, user, Some("app"), caps)).await.unwrap();
        if user == "admin" {
            // The session's own access mode, replayed on the replicas'
            // connections (open already), does not make them take writes.
            let mut replicas = std::collections::HashSet::new();
            while replicas.len() < 2 {
                let server = c.scalar("SELECT @@server_id").await;
                assert!(is_replica(server.clone()));
                replicas.insert(server);
            }
            c.exec("SET SESSION TRANSACTION READ WRITE").await;
            assert_eq!(c.scalar("SELECT @@tx_read_only").await.as_deref(), Some("0"));
        }
        let mut last = 0u64;
        for _ in 0..4 {
            let answer =
                c.scalar(&format!("SELECT CONCAT_WS(' ', n, @@server_id) FROM {view}")).await;
            let answer = answer.expect("a value");
            let (n, server) = answer.split_once(' ').expect("two values");
            let n: u64 = n.parse().expect("a number");
            assert!(n > last, "the sequence moves on: {answer} after {last} ({extra:?})");
            assert_eq!(server, PRIMARY_ID, "{answer} ({extra:?})");
            last = n;
        }
        // Prepared, the same (the execute runs again on the primary).
        let mut prep = vec![0x16];
        prep.extend_from_slice(
            format!("SELECT CONCAT_WS(' ', n, @@server_id) FROM {view}").as_bytes(),
        );
        let r = c.prepare(&prep).await;
        assert_eq!(r[0].1[0], 0x00, "prepared: {:?}", String::from_utf8_lossy(&r[0].1));
        let id = u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
        let mut execute = vec![0x17];
        execute.extend_from_slice(&id.to_le_bytes());
        execute.push(0);
        execute.extend_from_slice(&1u32.to_le_bytes());
        for i in 0..8 {
            if i == 4 {
                // Without a wait for the session's writes (another path).
                c.exec("SET @rwsplit_consistency = 'eventual'").await;
            }
            let r = c.command(&execute, Expect::Result).await;
            assert_ne!(r[0].1[0], 0xFF, "{:?} ({extra:?})", String::from_utf8_lossy(&r[0].1));
            // Binary row: 0x00, the null bitmap, then the string.
            let row = &r[r.len() - 2].1;
            let answer = String::from_utf8_lossy(&row[3..3 + usize::from(row[2])]).into_owned();
            let (n, server) = answer.split_once(' ').expect("two values");
            let n: u64 = n.parse().expect("a number");
            assert!(n > last, "prepared: {answer} after {last} ({extra:?})");
            assert_eq!(server, PRIMARY_ID, "prepared: {answer} ({extra:?})");
            last = n;
        }
        // Plain reads still go to the replicas.
        assert!(is_replica(c.scalar("SELECT @@server_id").await));
    }
}

/// A SET that assigns session variables beside a global one runs on the
/// primary, and its session part is not replayed elsewhere: the
/// session's reads then stay on the primary, alone or in a multi-statement,
/// with and without multiplexing. Before, `SELECT 1 / 3` after `SET
/// div_precision_increment = 8, @@global.x = ...` ran on a replica
/// without it (0.3333).
#[tokio::test]
async fn a_set_of_session_variables_beside_a_global_keeps_reads_on_the_primary() {
    let keep_global = "@@global.div_precision_increment = @@global.div_precision_increment";
    let divide = "SELECT CONCAT_WS(' ', 1 / 3, @@server_id)";
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        for set in [
            format!("SET div_precision_increment = 8, {keep_global}"),
            format!("DO 1; SET {keep_global}, SESSION div_precision_increment = 8"),
        ] {
            let caps = client_caps(true);
            let mut a = Raw::connect(&p.addr.to_string(), &login("admin", "admin", None, caps))
                .await
                .unwrap();
            assert!(is_replica(a.scalar("SELECT @@server_id").await), "reads start on replicas");
            a.exec(&set).await;
            for _ in 0..4 {
                let answer = a.scalar(divide).await.expect("a value");
                assert_eq!(answer, format!("0.33333333 {PRIMARY_ID}"), "after {set:?} ({extra:?})");
            }
        }
    }
}

/// A SET whose value reads a user variable (`SET optimizer_switch =
/// IFNULL(@saved, ...)`, the restore idiom `SET sql_mode = @old`) is not
/// replayed as text on a replica, where the variable is NULL: the
/// session's reads stay on the primary, where it ran, and see the value
/// it set, with and without multiplexing. Before, replica reads saw the
/// IFNULL default (mysql-test subselect_mat).
#[tokio::test]
async fn a_set_whose_value_reads_a_user_variable_keeps_reads_on_the_primary() {
    let read = "SELECT CONCAT_WS(' ', LOCATE('semijoin=off', @@optimizer_switch) > 0, \
                LOCATE('ANSI_QUOTES', @@sql_mode) > 0, @@server_id)";
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        for (sets, want) in [
            (
                [
                    "SET @saved = 'semijoin=off'",
                    "SET optimizer_switch = IFNULL(@saved, 'semijoin=on')",
                ],
                "1 0",
            ),
            (["SET @old_mode = 'ANSI_QUOTES'", "SET SESSION sql_mode = @old_mode"], "0 1"),
        ] {
            let mut a = app(&p).await;
            assert!(is_replica(a.scalar("SELECT @@server_id").await), "reads start on replicas");
            for set in sets {
                a.exec(set).await;
            }
            for _ in 0..4 {
                let got = a.scalar(read).await.expect("a value");
                assert_eq!(got, format!("{want} {PRIMARY_ID}"), "after {sets:?} ({extra:?})");
            }
        }
    }
}

/// `SET GLOBAL` runs on the primary only and is not replicated: the
/// session that ran it reads its global values back there (by
/// `@@global.x`, `@@x` and the GLOBAL_VARIABLES table), while reads of
/// them start on a replica. With and without multiplexing.
#[tokio::test]
async fn a_session_reads_back_the_global_value_it_set() {
    let original = admin(PRIMARY).await.scalar("SELECT @@global.delayed_insert_limit").await;
    let original = original.expect("a value");
    let set = original.parse::<u64>().expect("a number") + 4321;
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        let caps = client_caps(true);
        let mut a = Raw::connect(&p.addr.to_string(), &login("admin", "admin", Some("app"), caps))
            .await
            .unwrap();
        let read = "SELECT CONCAT_WS(' ', @@global.delayed_insert_limit, @@server_id)";
        let first = a.scalar(read).await.expect("a value");
        assert_eq!(first.split_once(' ').map(|(v, _)| v), Some(original.as_str()));
        assert!(is_replica(first.split_once(' ').map(|(_, id)| id.to_string())), "{first}");
        a.exec(&format!("SET GLOBAL delayed_insert_limit = {set}")).await;
        for _ in 0..4 {
            for sql in [
                "SELECT @@global.delayed_insert_limit",
                "SELECT @@delayed_insert_limit",
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES \
                 WHERE VARIABLE_NAME = 'DELAYED_INSERT_LIMIT'",
            ] {
                assert_eq!(a.scalar(sql).await, Some(set.to_string()), "{sql} ({extra:?})");
            }
        }
        admin(PRIMARY).await.exec(&format!("SET GLOBAL delayed_insert_limit = {original}")).await;
        // A session variable set to DEFAULT takes the new global, which
        // only the primary has.
        let week = admin(PRIMARY).await.scalar("SELECT @@global.default_week_format").await;
        let week = week.expect("a value");
        let changed = (week.parse::<u8>().expect("a number") + 1) % 8;
        a.exec(&format!("SET GLOBAL default_week_format = {changed}")).await;
        a.exec("SET SESSION default_week_format = DEFAULT").await;
        let session = a.scalar("SELECT @@session.default_week_format").await;
        admin(PRIMARY).await.exec(&format!("SET GLOBAL default_week_format = {week}")).await;
        assert_eq!(session, Some(changed.to_string()), "{extra:?}");
    }
}

/// A session that turns its binary logging off (`sql_log_bin = 0`, for the
/// session or `SET STATEMENT ... FOR` one write) writes rows no replica
/// will ever have: its reads after that run on the primary and see them.
/// With and without multiplexing.
#[tokio::test]
async fn writes_kept_out_of_the_binary_log_are_read_back() {
    let table = lab_table("nolog", "n INT").await;
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        let caps = client_caps(true);
        for turn_off in ["SET sql_log_bin = 0; ", "SET STATEMENT sql_log_bin = 0 FOR "] {
            let mut a =
                Raw::connect(&p.addr.to_string(), &login("admin", "admin", Some("app"), caps))
                    .await
                    .unwrap();
            let count = format!("SELECT COUNT(*) FROM app.{table}");
            let before = admin(PRIMARY).await.scalar(&count).await;
            let before: u64 = before.expect("a count").parse().expect("a number");
            a.exec(&format!("{turn_off}INSERT INTO {table} VALUES (1)")).await;
            for _ in 0..4 {
                let count = a.scalar(&format!("SELECT COUNT(*) FROM {table}")).await;
                assert_eq!(count, Some((before + 1).to_string()), "{turn_off} ({extra:?})");
            }
        }
    }
    on_primary_replicated(&[&format!("DROP TABLE app.{table}")]).await;
}

/// Under READ UNCOMMITTED a session sees rows another session has not
/// committed yet (watching a long load's progress), which only the
/// primary has: a session that sets it reads there, in both ways of
/// setting it, with and without multiplexing.
#[tokio::test]
async fn read_uncommitted_sees_another_session_s_uncommitted_rows() {
    let table = lab_table("dirty", "id INT PRIMARY KEY").await;
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        let mut writer = app(&p).await;
        writer.exec("BEGIN").await;
        writer.exec(&format!("INSERT INTO {table} VALUES (1), (2), (3)")).await;
        for set in [
            "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
            "SET tx_isolation = 'READ-UNCOMMITTED'",
        ] {
            let mut watcher = app(&p).await;
            let count = format!("SELECT COUNT(*) FROM {table}");
            assert_eq!(watcher.scalar(&count).await.as_deref(), Some("0"), "committed: none");
            watcher.exec(set).await;
            for _ in 0..4 {
                let got = watcher.scalar(&count).await;
                assert_eq!(got.as_deref(), Some("3"), "after {set} ({extra:?})");
            }
        }
        writer.exec("ROLLBACK").await;
    }
}

/// A one-shot `SET TRANSACTION` (no SESSION) applies to the session's next
/// transaction, which may be a single read of a table: that read runs on
/// the primary connection where the SET waits, and uses it up there, as on
/// the server. Before, the read ran on a replica and the primary's next
/// transaction (an INSERT) took `READ ONLY` and failed. Each sequence is
/// checked against the same one run straight on the primary.
#[tokio::test]
async fn a_one_shot_set_transaction_is_taken_by_the_next_transaction() {
    let table = lab_table("oneshot", "id INT").await;
    let sequences = [
        vec![
            "SET TRANSACTION READ ONLY".to_string(),
            format!("SELECT COUNT(*) FROM {table} WHERE id < 0"),
            format!("INSERT INTO {table} VALUES (1)"),
        ],
        // A read of no table starts no transaction: the INSERT takes it.
        vec![
            "SET TRANSACTION READ ONLY".to_string(),
            "SELECT 1".to_string(),
            format!("INSERT INTO {table} VALUES (2)"),
        ],
    ];
    async fn outcomes(c: &mut Raw, sequence: &[String]) -> Vec<Option<u16>> {
        let mut out = Vec::new();
        for sql in sequence {
            let r = c.query(sql).await;
            out.push(rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).map(|e| e.code));
        }
        out
    }
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        for sequence in &sequences {
            let mut direct =
                Raw::connect(PRIMARY, &login("app", "app", Some("app"), client_caps(true)))
                    .await
                    .unwrap();
            let want = outcomes(&mut direct, sequence).await;
            let mut a = app(&p).await;
            assert!(is_replica(a.scalar("SELECT @@server_id").await), "reads start on replicas");
            let got = outcomes(&mut a, sequence).await;
            assert_eq!(got, want, "{sequence:?} ({extra:?})");
        }
        // The one-shot isolation level is the next read's.
        let mut writer = app(&p).await;
        writer.exec("BEGIN").await;
        writer.exec(&format!("INSERT INTO {table} VALUES (-1)")).await;
        let mut reader = app(&p).await;
        reader.exec("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED").await;
        let dirty = reader.scalar(&format!("SELECT COUNT(*) FROM {table} WHERE id < 0")).await;
        assert_eq!(dirty.as_deref(), Some("1"), "the uncommitted row ({extra:?})");
        writer.exec("ROLLBACK").await;
    }
}

/// While a session holds `LOCK TABLES t WRITE`, another session's read of
/// `t` waits on the primary, as on a server (here it times out, with the
/// server's ERROR 1205), instead of reading a replica that shows the
/// locking session's work half done. A READ lock, UNLOCK TABLES and the
/// locking session's end leave reads on the replicas. With and without
/// multiplexing.
#[tokio::test]
async fn a_read_of_a_write_locked_table_waits_for_the_lock() {
    let table = lab_table("locked", "id INT").await;
    let other = lab_table("unlocked", "id INT").await;
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        let mut reader = app(&p).await;
        reader.exec("SET SESSION lock_wait_timeout = 1").await;
        let on_replica =
            |sql: String| format!("SELECT @@server_id FROM (SELECT COUNT(*) FROM {sql}) AS c");
        let read = on_replica(table.clone());
        let mut locker = app(&p).await;
        locker.exec(&format!("LOCK TABLES {table} READ")).await;
        assert!(is_replica(reader.scalar(&read).await), "a READ lock blocks no read");
        locker.exec(&format!("LOCK TABLES {table} WRITE, {other} READ")).await;
        locker.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
        let r = reader.query(&read).await;
        let error = rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).map(|e| e.code);
        assert_eq!(error, Some(1205), "the read waits for the lock ({extra:?})");
        assert!(is_replica(reader.scalar(&on_replica(other.clone())).await), "not locked WRITE");
        locker.exec("UNLOCK TABLES").await;
        assert!(is_replica(reader.scalar(&read).await), "after UNLOCK TABLES ({extra:?})");
        // START TRANSACTION releases the table locks too, as on a server.
        locker.exec(&format!("LOCK TABLES {table} WRITE")).await;
        locker.exec("START TRANSACTION").await;
        assert!(is_replica(reader.scalar(&read).await), "after START TRANSACTION ({extra:?})");
        locker.exec("COMMIT").await;
        locker.exec(&format!("LOCK TABLES {table} WRITE")).await;
        drop(locker);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while p.shared.write_locks.any() {
            assert!(std::time::Instant::now() < deadline, "the lock outlived its session");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(is_replica(reader.scalar(&read).await), "after the session ended ({extra:?})");
    }
}

/// With `sql_auto_is_null` on (ODBC programs), `WHERE id IS NULL` right
/// after an INSERT finds the row the connection inserted: the session's
/// reads stay on the primary connection that inserted it, with and
/// without multiplexing. Setting it off leaves reads on the replicas.
#[tokio::test]
async fn sql_auto_is_null_finds_the_row_just_inserted() {
    let table = lab_table("autonull", "id INT AUTO_INCREMENT PRIMARY KEY, b INT").await;
    for extra in ["", "[pool]\nmultiplex = true"] {
        let p = start_proxy(lab_config(extra)).await;
        let mut off = app(&p).await;
        off.exec("SET SQL_AUTO_IS_NULL = 0").await;
        assert!(is_replica(off.scalar("SELECT @@server_id").await), "off: reads on replicas");
        let mut a = app(&p).await;
        a.exec("SET @@session.sql_auto_is_null = 1").await;
        for b in 1..=3 {
            a.exec(&format!("INSERT INTO {table} (b) VALUES ({b})")).await;
            let sql = format!("SELECT b FROM {table} WHERE id IS NULL");
            let got = a.scalar(&sql).await;
            assert_eq!(got, Some(b.to_string()), "the row just inserted ({extra:?})");
        }
    }
}

/// The optimizer trace (and the profiles) of a session's last statement
/// live on the connection that ran it: reading
/// `information_schema.OPTIMIZER_TRACE` goes there, as SHOW WARNINGS does,
/// and with multiplexing a session that turned tracing on keeps that
/// connection until its next command. Reads are spread over both
/// replicas (and pooled connections), so without that the trace read often
/// lands where another statement (or none) was traced.
#[tokio::test]
async fn the_optimizer_trace_is_read_where_the_last_statement_ran() {
    let table = lab_table("traced", "a INT PRIMARY KEY, b INT, KEY (b)").await;
    for multiplex in [false, true] {
        // Multiplexed: one connection per replica and worker, all reads on
        // replica1, so that other sessions' reads between the traced
        // statement and the trace read take the connection unless it is kept.
        // (Their reads wait for it briefly while it is kept.)
        let pool = "max_connections_per_backend = 1\npool_timeout = \"50ms\"\n\
                    [consistency]\nmode = \"eventual\"";
        let mut config = lab_config(&format!("[pool]\nmultiplex = {multiplex}\n{pool}\n"));
        config.backends[2].weight = u32::from(!multiplex);
        let p = start_proxy(config).await;
        let mut c = app(&p).await;
        // Sessions on every worker the proxy runs.
        let mut others = Vec::new();
        for _ in 0..4 {
            others.push(app(&p).await);
        }
        c.exec("SET optimizer_trace = 'enabled=on'").await;
        let mut servers = std::collections::HashSet::new();
        for i in 0..12 {
            let traced = format!("SELECT DISTINCT a, {i} FROM {table} WHERE a IN (1, 2)");
            c.query(&traced).await;
            for other in &mut others {
                other.query(&format!("SELECT {i} FROM {table}")).await;
            }
            let query = c.scalar("SELECT QUERY FROM information_schema.OPTIMIZER_TRACE").await;
            let at = format!("multiplex {multiplex}, read {i}");
            assert_eq!(query.as_deref(), Some(&*traced), "{at}: the trace of the last statement");
            servers.insert(c.scalar("SELECT @@server_id").await);
        }
        assert!(servers.iter().all(|s| is_replica(s.clone())), "reads on replicas: {servers:?}");
    }
}

/// A session's status counters describe the statements that ran on its
/// connection: `SHOW STATUS LIKE 'Last_query_cost'` goes where the last
/// statement ran and reports its cost, as straight to a server. (So do
/// reads of `information_schema.SESSION_STATUS`.) Spread over the
/// replicas, it read another connection's counter.
#[tokio::test]
async fn session_status_is_read_where_the_last_statement_ran() {
    let table = lab_table("cost", "a INT PRIMARY KEY, b INT, KEY (b)").await;
    on_primary_replicated(&[&format!(
        "INSERT INTO app.{table} SELECT seq, seq % 7 FROM app.seq_1_to_200"
    )])
    .await;
    let light = format!("SELECT COUNT(*) FROM app.{table} WHERE b = 3");
    let heavy = format!("SELECT COUNT(*) FROM app.{table} x JOIN app.{table} y ON x.b < y.b");
    let status = "SHOW STATUS LIKE 'Last_query_cost'";
    // Straight to the primary: the light read's cost there.
    let mut direct = admin(PRIMARY).await;
    direct.query(&heavy).await;
    direct.query(&light).await;
    let want = last_query_cost(direct.query(status).await);
    direct.query(&heavy).await;
    assert_ne!(last_query_cost(direct.query(status).await), want, "the two reads' costs differ");
    let p = proxy().await;
    let mut c = app(&p).await;
    for i in 0..6 {
        // The heavy read on both replicas, the light one on the primary.
        for _ in 0..4 {
            c.query(&heavy).await;
        }
        c.query(&format!("/* rwsplit:primary */ {light}")).await;
        let got = last_query_cost(c.query(status).await);
        assert_eq!(got, want, "round {i}: the cost of the light read on the primary");
    }
}

/// The value (the second column) of a one-row status result.
fn last_query_cost(packets: Packets) -> String {
    let rows = text_rows(&packets, true);
    assert_eq!(rows.len(), 1, "one row: {rows:?}");
    rows[0][1].clone().expect("a value")
}

/// A statement waiting on the primary (for a user lock here; a metadata
/// lock, a row lock) shows in the processlist read through the proxy, as
/// tools and tests that wait for a state there expect: processlist reads
/// go to the primary.
#[tokio::test]
async fn a_statement_waiting_on_the_primary_shows_in_the_processlist() {
    let p = proxy().await;
    let lock = unique("plock");
    let mut holder = admin(PRIMARY).await;
    holder.exec(&format!("DO GET_LOCK('{lock}', 30)")).await;
    let mut waiter = app(&p).await;
    let waited = format!("SELECT GET_LOCK('{lock}', 10)");
    let waiting = tokio::spawn(async move { waiter.scalar(&waited).await });
    let mut c = app(&p).await;
    let lock_name = lock.clone();
    let asked = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE STATE = 'User lock' AND INFO LIKE '%{lock_name}%'"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if c.scalar(&asked).await.as_deref() != Some("0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the waiting GET_LOCK never showed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    holder.exec("DO RELEASE_ALL_LOCKS()").await;
    assert_eq!(waiting.await.unwrap().as_deref(), Some("1"));
}
