//! The proxy must be indistinguishable from the server: the same commands
//! sent directly to the primary and through the proxy get byte-identical
//! responses (column definitions, values, warnings, status flags, errors,
//! OK packets), in both EOF modes.

mod common;

use common::*;
use rwsplit::protocol::packet::put_lenenc_str;
use rwsplit::relay::Expect;

/// Setup shared by the tests of this file: a table of every type with
/// awkward values, and a procedure returning several result sets.
async fn setup() -> String {
    let table = unique("types");
    let mut a = admin(PRIMARY).await;
    a.exec("CREATE DATABASE IF NOT EXISTS app").await;
    a.exec("SET SESSION sql_mode = ''").await;
    a.exec(&format!(
        "CREATE TABLE app.{table} (
            id INT PRIMARY KEY,
            ti TINYINT, si SMALLINT UNSIGNED, bi BIGINT, fl FLOAT, db DOUBLE,
            dec1 DECIMAL(20,6), bit8 BIT(8), yr YEAR,
            d DATE, dt DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(4),
            vc VARCHAR(20) CHARACTER SET latin1, ch CHAR(3),
            vb VARBINARY(16), bl BLOB, tx TEXT CHARACTER SET utf8mb4,
            js JSON, en ENUM('a','b'), st SET('x','y')
        )"
    ))
    .await;
    a.exec(&format!(
        "INSERT INTO app.{table} VALUES
         (1, -128, 65535, -9223372036854775808, 1.5, 2.25e300, 12345678901234.123456, b'10100101', 2024,
          '0000-00-00', '0000-00-00 00:00:00', NULL, '-838:59:59.0000',
          'caf\u{e9}', 'ab', x'ff00fe', x'00ff80', 'h\u{e9}llo \u{1F600}', '{{\"a\": [1, 2]}}', 'b', 'x,y'),
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (3, 127, 0, 42, -0.0, 0.1, -0.000001, b'0', 1901,
          '2024-02-29', '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.123', '12:34:56.7891',
          '', '', '', '', '', '[]', 'a', '')"
    ))
    .await;
    a.exec(&format!(
        "CREATE PROCEDURE app.{table}_multi() BEGIN SELECT 1 AS one; SELECT id, vb FROM app.{table} ORDER BY id; SELECT 'x' AS last; END"
    ))
    .await;
    wait_replicas_caught_up().await;
    table
}

/// Runs every command on a direct and a proxied connection and asserts the
/// responses are identical.
async fn assert_same(proxy: &TestProxy, deprecate_eof: bool, commands: &[(Vec<u8>, Expect)]) {
    let mut direct = Raw::app(PRIMARY, deprecate_eof).await;
    let mut proxied = Raw::app(&proxy.addr.to_string(), deprecate_eof).await;
    assert_eq!(direct.conn.caps, proxied.conn.caps, "negotiated capabilities differ");
    for (payload, expect) in commands {
        let want = direct.command(payload, *expect).await;
        let got = proxied.command(payload, *expect).await;
        assert_eq!(
            got,
            want,
            "response differs for {:?} (deprecate_eof={deprecate_eof})",
            String::from_utf8_lossy(payload)
        );
    }
}

fn q(sql: &str) -> (Vec<u8>, Expect) {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    (p, Expect::Result)
}

#[tokio::test]
async fn text_results_are_byte_identical() {
    let table = setup().await;
    let proxy = start_proxy(lab_config("")).await;
    let commands = vec![
        q(&format!("SELECT * FROM {table} ORDER BY id")),
        q(&format!("SELECT id, d, dt, ts, tm FROM {table} WHERE id = 3")),
        q("SELECT 1/0, CAST('abc' AS SIGNED), 'x' + 1"),
        q("SHOW WARNINGS"),
        q("SELECT * FROM no_such_table_here"),
        q("SELEKT 1"),
        q("SELECT 'a' AS first; SELECT 2 AS second; SELECT NULL"),
        q("SELECT 1; SELECT * FROM no_such_table_here; SELECT 3"),
        q("BEGIN"),
        q(&format!("SELECT COUNT(*) FROM {table}")),
        q("SELECT @@in_transaction"),
        q("COMMIT"),
        q("SET autocommit = 0"),
        q("SELECT 1"),
        q("ROLLBACK"),
        q("SET autocommit = 1"),
        q(&format!("CALL {table}_multi()")),
        q(&format!("SHOW COLUMNS FROM {table}")),
        q("SELECT JSON_OBJECT('k', 1.5, 'n', NULL), JSON_ARRAY(), x'00' = 0"),
        q("SELECT CURRENT_USER(), DATABASE(), @@session.autocommit"),
        q("SET @v = 'user var'"),
        q("SELECT @v, @undefined"),
        q("USE app"),
        (format!("\x04{table}\x00").into_bytes(), Expect::FieldList),
        (b"\x02app".to_vec(), Expect::Result),
        (b"\x02no_such_db".to_vec(), Expect::Result),
    ];
    for deprecate_eof in [true, false] {
        assert_same(&proxy, deprecate_eof, &commands).await;
    }
}

/// Clears the "no (good) index used" status bits of OK packets: the two
/// sides write to two different tables, whose statistics may lead the
/// optimizer to different plans; everything else must match.
fn without_index_flags(mut packets: Packets) -> Packets {
    for (_, p) in packets.iter_mut() {
        if p.first() != Some(&0x00) {
            continue;
        }
        let mut at = 1;
        for _ in 0..2 {
            at += rwsplit::protocol::packet::read_lenenc(&p[at..]).map_or(0, |(_, n)| n);
        }
        if let Some(status) = p.get_mut(at) {
            *status &= !0x30;
        }
    }
    packets
}

#[tokio::test]
async fn writes_report_identical_ok_packets() {
    let proxy = start_proxy(lab_config("")).await;
    // Clients with and without session tracking (PHP's mysqlnd has none):
    // the OK's info ("Rows matched: ...") is length-encoded either way.
    for (deprecate_eof, session_track) in [(true, true), (false, true), (true, false)] {
        let mut caps = client_caps(deprecate_eof);
        if !session_track {
            caps.remove(mysql_common::constants::CapabilityFlags::CLIENT_SESSION_TRACK);
        }
        let login = login("app", "app", Some("app"), caps);
        let mut direct = Raw::connect(PRIMARY, &login).await.unwrap();
        let mut proxied = Raw::connect(&proxy.addr.to_string(), &login).await.unwrap();
        let (ta, tb) = (unique("w"), unique("w"));
        for (conn, t) in [(&mut direct, &ta), (&mut proxied, &tb)] {
            conn.exec(&format!(
                "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT UNIQUE, s VARCHAR(5))"
            ))
            .await;
        }
        let statements = [
            "INSERT INTO {t} (v, s) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "INSERT INTO {t} (v, s) VALUES (2, 'x') ON DUPLICATE KEY UPDATE s = 'dup'",
            "UPDATE {t} SET s = 'same' WHERE v >= 1",
            "UPDATE {t} SET s = 'same' WHERE v >= 1",
            "INSERT INTO {t} (v, s) VALUES (9, 'toolongvalue')",
            "INSERT INTO {t} (v, s) VALUES (1, 'dupkey')",
            "INSERT IGNORE INTO {t} (v, s) VALUES (1, 'ign'), (10, 'new')",
            "SELECT LAST_INSERT_ID(), ROW_COUNT()",
            "REPLACE INTO {t} (id, v, s) VALUES (1, 1, 'r')",
            "DELETE FROM {t} WHERE v > 2",
            "BEGIN",
            "INSERT INTO {t} (v) VALUES (100)",
            "ROLLBACK",
            "SELECT COUNT(*) FROM {t}",
        ];
        for s in statements {
            let want = without_index_flags(direct.query(&s.replace("{t}", &ta)).await);
            let got = without_index_flags(proxied.query(&s.replace("{t}", &tb)).await);
            assert_eq!(got, want, "{s} (session_track={session_track})");
        }
        for (conn, t) in [(&mut direct, &ta), (&mut proxied, &tb)] {
            conn.exec(&format!("DROP TABLE {t}")).await;
        }
    }
}

/// Binary parameter values of every type, with their type codes.
fn binary_params() -> Vec<(u8, u8, Option<Vec<u8>>)> {
    let lenenc = |s: &[u8]| {
        let mut v = Vec::new();
        put_lenenc_str(&mut v, s);
        Some(v)
    };
    vec![
        (0x01, 0x00, Some(vec![0x80])),                      // TINY -128
        (0x02, 0x80, Some(65535u16.to_le_bytes().to_vec())), // SHORT unsigned
        (0x03, 0x00, Some((-7i32).to_le_bytes().to_vec())),  // LONG
        (0x08, 0x80, Some(u64::MAX.to_le_bytes().to_vec())), // LONGLONG unsigned
        (0x04, 0x00, Some(1.5f32.to_le_bytes().to_vec())),   // FLOAT
        (0x05, 0x00, Some(std::f64::consts::PI.to_le_bytes().to_vec())), // DOUBLE
        (0x0A, 0x00, Some(vec![4, 0xE8, 0x07, 2, 29])),      // DATE 2024-02-29
        (0x0C, 0x00, Some(vec![11, 0xE8, 0x07, 2, 29, 23, 59, 59, 0x3F, 0x42, 0x0F, 0])), // DATETIME .999999
        (0x0B, 0x00, Some(vec![12, 1, 1, 0, 0, 0, 2, 3, 4, 0x40, 0x42, 0x0F, 0])), // TIME -1 day 02:03:04.999999?
        (0x07, 0x00, Some(vec![7, 0xE8, 0x07, 1, 1, 0, 0, 1])),                    // TIMESTAMP
        (0xFE, 0x00, lenenc("h\u{e9}llo".as_bytes())),                             // STRING
        (0xFD, 0x00, lenenc(b"")),                       // VAR_STRING empty
        (0xFC, 0x00, lenenc(&[0xFF, 0x00, 0xFE])),       // BLOB non-UTF-8
        (0xF6, 0x00, lenenc(b"-12345678901234.123456")), // NEWDECIMAL
        (0x06, 0x00, None),                              // NULL
    ]
}

fn prepare(sql: &str) -> Vec<u8> {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    p
}

/// Builds COM_STMT_EXECUTE; `with_types` sets new-params-bound.
fn execute(id: u32, flags: u8, params: &[(u8, u8, Option<Vec<u8>>)], with_types: bool) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(flags);
    p.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        let mut bitmap = vec![0u8; params.len().div_ceil(8)];
        for (i, (_, _, v)) in params.iter().enumerate() {
            if v.is_none() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        p.extend_from_slice(&bitmap);
        p.push(u8::from(with_types));
        if with_types {
            for (t, f, _) in params {
                p.extend_from_slice(&[*t, *f]);
            }
        }
        for (_, _, v) in params {
            if let Some(v) = v {
                p.extend_from_slice(v);
            }
        }
    }
    p
}

fn stmt_id(prepare_ok: &[u8]) -> u32 {
    assert_eq!(prepare_ok[0], 0, "prepare failed: {:?}", String::from_utf8_lossy(prepare_ok));
    u32::from_le_bytes(prepare_ok[1..5].try_into().unwrap())
}

/// Masks the statement id of a prepare response so responses compare.
fn mask_id(mut packets: Packets) -> Packets {
    if packets[0].1[0] == 0 {
        packets[0].1[1..5].copy_from_slice(&[0; 4]);
    }
    packets
}

/// An expected response with statement id `from` named as `to` in an
/// error message.
fn same_with_id(mut packets: Packets, from: u32, to: u32) -> Packets {
    if let [(_, p)] = packets.as_mut_slice()
        && p[0] == 0xFF
    {
        let text =
            String::from_utf8_lossy(&p[9..]).replace(&format!("({from})"), &format!("({to})"));
        p.truncate(9);
        p.extend_from_slice(text.as_bytes());
    }
    packets
}

#[tokio::test]
async fn prepared_statements_are_byte_identical() {
    let table = setup().await;
    let proxy = start_proxy(lab_config("")).await;
    let params = binary_params();
    let placeholders = vec!["?"; params.len()].join(", ");
    for deprecate_eof in [true, false] {
        let mut direct = Raw::app(PRIMARY, deprecate_eof).await;
        let mut proxied = Raw::app(&proxy.addr.to_string(), deprecate_eof).await;
        let mut ids = [0u32; 2];
        // Every parameter type, then re-executed without and with new types.
        let sql = format!("SELECT {placeholders}");
        for (i, c) in [&mut direct, &mut proxied].into_iter().enumerate() {
            let r = c.prepare(&prepare(&sql)).await;
            ids[i] = stmt_id(&r[0].1);
        }
        let want = mask_id(direct.prepare(&prepare(&sql)).await);
        let got = mask_id(proxied.prepare(&prepare(&sql)).await);
        assert_eq!(got, want, "prepare response");
        for with_types in [true, false, true] {
            let want =
                direct.command(&execute(ids[0], 0, &params, with_types), Expect::Result).await;
            let got =
                proxied.command(&execute(ids[1], 0, &params, with_types), Expect::Result).await;
            assert_eq!(got, want, "execute with_types={with_types}");
        }
        // New parameter types on re-execution.
        let mut changed = params.clone();
        changed[0] = (0xFE, 0, Some(b"\x03abc".to_vec()));
        let want = direct.command(&execute(ids[0], 0, &changed, true), Expect::Result).await;
        let got = proxied.command(&execute(ids[1], 0, &changed, true), Expect::Result).await;
        assert_eq!(got, want, "execute with new types");

        // Rows of every column type in the binary protocol.
        let sql = format!("SELECT * FROM {table} WHERE id > ? ORDER BY id");
        let one = vec![(0x03u8, 0u8, Some(0i32.to_le_bytes().to_vec()))];
        for (i, c) in [&mut direct, &mut proxied].into_iter().enumerate() {
            let r = c.prepare(&prepare(&sql)).await;
            ids[i] = stmt_id(&r[0].1);
        }
        let want = direct.command(&execute(ids[0], 0, &one, true), Expect::Result).await;
        let got = proxied.command(&execute(ids[1], 0, &one, true), Expect::Result).await;
        assert_eq!(got, want, "binary rows");

        // A cursor, fetched two rows at a time until the last row.
        let want = direct.command(&execute(ids[0], 1, &one, true), Expect::Result).await;
        let got = proxied.command(&execute(ids[1], 1, &one, true), Expect::Result).await;
        assert_eq!(got, want, "execute with cursor");
        for _ in 0..3 {
            let fetch = |id: u32| {
                let mut p = vec![0x1C];
                p.extend_from_slice(&id.to_le_bytes());
                p.extend_from_slice(&2u32.to_le_bytes());
                p
            };
            let want = direct.command(&fetch(ids[0]), Expect::Rows).await;
            let got = proxied.command(&fetch(ids[1]), Expect::Rows).await;
            // Errors name the statement id: each side its own.
            assert_eq!(got, same_with_id(want, ids[0], ids[1]), "fetch");
        }

        // Long data in pieces, then execute; reset; close.
        let sql = "SELECT ?, LENGTH(?)";
        for (i, c) in [&mut direct, &mut proxied].into_iter().enumerate() {
            let r = c.prepare(&prepare(sql)).await;
            ids[i] = stmt_id(&r[0].1);
            for chunk in [&b"\x00\xffpart one "[..], &[0xAB; 100_000][..]] {
                for param in [0u16, 1] {
                    let mut p = vec![0x18];
                    p.extend_from_slice(&ids[i].to_le_bytes());
                    p.extend_from_slice(&param.to_le_bytes());
                    p.extend_from_slice(chunk);
                    c.send_only(&p).await;
                }
            }
        }
        let blobs = vec![(0xFCu8, 0u8, Some(Vec::new())), (0xFC, 0, Some(Vec::new()))];
        let strip_values = |mut p: Vec<u8>| {
            // Long-data parameters send no value in the execute packet.
            p.truncate(p.len() - 2);
            p
        };
        let want =
            direct.command(&strip_values(execute(ids[0], 0, &blobs, true)), Expect::Result).await;
        let got =
            proxied.command(&strip_values(execute(ids[1], 0, &blobs, true)), Expect::Result).await;
        assert_eq!(got, want, "execute after long data");
        let reset = |id: u32| {
            let mut p = vec![0x1A];
            p.extend_from_slice(&id.to_le_bytes());
            p
        };
        assert_eq!(
            proxied.command(&reset(ids[1]), Expect::Result).await,
            direct.command(&reset(ids[0]), Expect::Result).await
        );
        let close = |id: u32| {
            let mut p = vec![0x19];
            p.extend_from_slice(&id.to_le_bytes());
            p
        };
        direct.send_only(&close(ids[0])).await;
        proxied.send_only(&close(ids[1])).await;
        // Executing a closed statement is an error, worded like the server's.
        let want = direct.command(&execute(ids[0], 0, &[], false), Expect::Result).await;
        let got = proxied.command(&execute(ids[1], 0, &[], false), Expect::Result).await;
        assert_eq!(got[0].1[..3], want[0].1[..3], "unknown statement error code");
        // Prepare errors come through unchanged.
        let want = direct.prepare(&prepare("SELECT * FROM nope_nope")).await;
        let got = proxied.prepare(&prepare("SELECT * FROM nope_nope")).await;
        assert_eq!(got, want, "prepare error");
    }
}

/// A procedure's result sets while it has a cursor of its own open: MariaDB
/// flags them CURSOR_EXISTS after their column definitions, rows and all
/// following. Called as text and as a prepared statement (with and without
/// a cursor asked for, which a CALL does not open), in both EOF modes, the
/// proxy relays what the primary sends. Before, it took the flag for a
/// cursor the client had opened, ended the reply there and waited for the
/// client while the client waited for the rows (the `mariadb` client hung
/// on such a CALL).
#[tokio::test]
async fn a_procedures_results_while_it_holds_a_cursor_are_relayed_whole() {
    let table = setup().await;
    let procedure = format!("app.{table}_fetching");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!(
        "CREATE PROCEDURE {procedure}() BEGIN
           DECLARE done INT DEFAULT 0;
           DECLARE v INT;
           DECLARE c CURSOR FOR SELECT id FROM app.{table} ORDER BY id;
           DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
           OPEN c;
           fetching: LOOP
             FETCH c INTO v;
             IF done THEN LEAVE fetching; END IF;
             SELECT v, v * 10 AS tens;
           END LOOP;
           CLOSE c;
         END"
    ))
    .await;
    wait_replicas_caught_up().await;
    let proxy = start_proxy(lab_config("")).await;
    let call = format!("CALL {procedure}()");
    for deprecate_eof in [true, false] {
        let within = std::time::Duration::from_secs(10);
        let mut replies = Vec::new();
        for server in [PRIMARY.to_string(), proxy.addr.to_string()] {
            let mut c = Raw::app(&server, deprecate_eof).await;
            let text = tokio::time::timeout(within, c.query(&call)).await.expect("a whole reply");
            let id = stmt_id(&c.prepare(&prepare(&call)).await[0].1);
            let mut prepared = Vec::new();
            // Without and with a cursor asked for (which a CALL does not open).
            for flags in [0, 1] {
                let run = execute(id, flags, &[], false);
                let reply = tokio::time::timeout(within, c.command(&run, Expect::Result));
                prepared.push(reply.await.expect("a whole reply"));
            }
            let after = c.scalar("SELECT 'still in step'").await;
            replies.push((text, prepared, after));
        }
        assert_eq!(replies[1], replies[0], "deprecate_eof={deprecate_eof}");
        let rows = replies[0].0.iter().filter(|(_, p)| p.starts_with(b"\x011")).count();
        assert_eq!(rows, 1, "the first row's result set is there");
    }
}

#[tokio::test]
async fn packets_over_16_mib_pass_both_ways() {
    let proxy = start_proxy(lab_config("")).await;
    let mut direct = Raw::app(PRIMARY, true).await;
    let mut proxied = Raw::app(&proxy.addr.to_string(), true).await;
    // A 20 MiB value from the server: a row split over two packets.
    let sql = "SELECT REPEAT('a', 20971520) AS big, 'after'";
    assert_eq!(proxied.query(sql).await, direct.query(sql).await);
    // A 17 MiB command from the client.
    let big = format!("SELECT LENGTH('{}') AS n", "b".repeat(17 << 20));
    assert_eq!(proxied.query(&big).await, direct.query(&big).await);
    assert_eq!(proxied.scalar("SELECT 'still in sync'").await.as_deref(), Some("still in sync"));
}

#[tokio::test]
async fn change_user_with_wrong_password_is_refused() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec("SET @before = 1").await;
    let scramble = c.conn.greeting.scramble.clone();
    let mut p = vec![0x11];
    p.extend_from_slice(b"admin\0");
    let resp = mysql_common::scramble::scramble_native(&scramble, b"wrong").unwrap();
    p.push(resp.len() as u8);
    p.extend_from_slice(&resp);
    p.extend_from_slice(b"\0");
    p.extend_from_slice(&45u16.to_le_bytes());
    p.extend_from_slice(b"mysql_native_password\0");
    let r = c.command(&p, Expect::Result).await;
    let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
    assert_eq!(err.code, 1045);
    assert_eq!(
        String::from_utf8_lossy(err.message),
        "Access denied for user 'admin'@'127.0.0.1' (using password: YES)"
    );
    // As on MariaDB, the connection goes on as its user, afresh.
    assert_eq!(c.scalar("SELECT CURRENT_USER()").await.as_deref(), Some("app@%"));
    assert_eq!(c.scalar("SELECT @before").await, None);
}

/// After three refused COM_CHANGE_USERs on one connection, MariaDB answers
/// every further one with ERROR 1047 and changes nothing, the right
/// password too (no password guessing on one connection, MDEV-3915, as
/// mysql-test's change_user_notembedded checks); a success in between does
/// not reset the count. The proxy, which checks the passwords itself,
/// answers the same.
#[tokio::test]
async fn a_change_user_after_three_refused_gets_error_1047() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let scramble = c.conn.greeting.scramble.clone();
    let mut codes = Vec::new();
    for password in ["wrong", "bad", "app", "nope", "app", "app"] {
        let mut p = vec![0x11];
        p.extend_from_slice(b"app\0");
        let resp = mysql_common::scramble::scramble_native(&scramble, password.as_bytes()).unwrap();
        p.push(resp.len() as u8);
        p.extend_from_slice(&resp);
        p.extend_from_slice(b"app\0");
        p.extend_from_slice(&45u16.to_le_bytes());
        p.extend_from_slice(b"mysql_native_password\0");
        c.exec("SET @kept = 'here'").await;
        let r = c.command(&p, Expect::Result).await;
        codes.push(rwsplit::protocol::messages::parse_err(&r[0].1).map_or(0, |e| e.code));
    }
    assert_eq!(codes, [1045, 1045, 0, 1045, 1047, 1047]);
    // The refused one left the session as it was.
    assert_eq!(c.scalar("SELECT @kept").await.as_deref(), Some("here"));
    assert_eq!(c.scalar("SELECT CURRENT_USER()").await.as_deref(), Some("app@%"));
}

#[tokio::test]
async fn change_user_with_right_password_switches_identity() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT CURRENT_USER()").await.as_deref(), Some("app@%"));
    c.exec("SET @carried = 1").await;
    let scramble = c.conn.greeting.scramble.clone();
    let mut p = vec![0x11];
    p.extend_from_slice(b"admin\0");
    let resp = mysql_common::scramble::scramble_native(&scramble, b"admin").unwrap();
    p.push(resp.len() as u8);
    p.extend_from_slice(&resp);
    p.extend_from_slice(b"app\0");
    p.extend_from_slice(&45u16.to_le_bytes());
    p.extend_from_slice(b"mysql_native_password\0");
    let r = c.command(&p, Expect::Result).await;
    assert_eq!(r[0].1[0], 0x00, "change user OK");
    assert_eq!(c.scalar("SELECT CURRENT_USER()").await.as_deref(), Some("admin@%"));
    assert_eq!(c.scalar("SELECT @carried").await, None);
}

/// A client that set its session's `wait_timeout` and idles past it is
/// disconnected, as the server disconnects its own clients (drivers test
/// their reconnecting so); one that keeps busy, or set it back to
/// DEFAULT, stays. With and without multiplexing.
#[tokio::test]
async fn a_session_idle_past_its_own_wait_timeout_is_disconnected_as_by_the_server() {
    for multiplex in [false, true] {
        let proxy = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        for addr in [PRIMARY.to_string(), proxy.addr.to_string()] {
            let mut c = Raw::app(&addr, true).await;
            c.exec("SET SESSION wait_timeout = 1").await;
            let started = std::time::Instant::now();
            read_until_closed(&mut c.conn.stream, std::time::Duration::from_secs(10)).await;
            let idle = started.elapsed();
            assert!(
                idle >= std::time::Duration::from_millis(900)
                    && idle < std::time::Duration::from_secs(3),
                "{addr}: closed after {idle:?}"
            );
        }
        let addr = proxy.addr.to_string();
        let mut busy = Raw::app(&addr, true).await;
        busy.exec("SET sql_mode = DEFAULT, wait_timeout = 1").await;
        for _ in 0..6 {
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            assert_eq!(busy.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
        }
        let mut back = Raw::app(&addr, true).await;
        back.exec("SET wait_timeout = 1").await;
        back.exec("SET @@session.wait_timeout = DEFAULT").await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(back.scalar("SELECT @@wait_timeout > 1").await.as_deref(), Some("1"));
    }
}

/// `COMMIT RELEASE`, `ROLLBACK RELEASE`, and either under `completion_type
/// = RELEASE`, end the session after their reply, as the server ends its
/// connection, also prepared; `NO RELEASE` keeps it. The committed rows
/// stay committed. With and without multiplexing.
#[tokio::test]
async fn commit_release_ends_the_session_as_on_the_server() {
    let table = lab_table("release", "n INT").await;
    for multiplex in [false, true] {
        let proxy = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        for addr in [PRIMARY.to_string(), proxy.addr.to_string()] {
            let ends = [
                "COMMIT RELEASE",
                "commit work and no chain release",
                "ROLLBACK RELEASE",
                "SET completion_type = 'RELEASE'; COMMIT",
                "SET @@session.completion_type = 2; ROLLBACK",
            ];
            for end in ends {
                let mut c = Raw::app(&addr, true).await;
                let (set, end) = end.rsplit_once("; ").unwrap_or(("", end));
                if !set.is_empty() {
                    c.exec(set).await;
                }
                c.exec("BEGIN").await;
                c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
                c.exec(end).await;
                let closed =
                    read_until_closed(&mut c.conn.stream, std::time::Duration::from_secs(5));
                assert!(closed.await.is_empty(), "{addr}: {end}");
            }
            // Prepared (COM_STMT_PREPARE, COM_STMT_EXECUTE).
            let mut c = Raw::app(&addr, true).await;
            let prepared = c.prepare(&prepare("COMMIT RELEASE")).await;
            let id = stmt_id(&prepared[0].1);
            c.exec("BEGIN").await;
            c.exec(&format!("INSERT INTO {table} VALUES (1)")).await;
            let r = c.command(&execute(id, 0, &[], true), Expect::Result).await;
            assert_eq!(r[0].1[0], 0x00, "{addr}: the execute's OK");
            let closed = read_until_closed(&mut c.conn.stream, std::time::Duration::from_secs(5));
            assert!(closed.await.is_empty(), "{addr}: prepared COMMIT RELEASE");
            let mut kept = Raw::app(&addr, true).await;
            kept.exec("SET completion_type = 2").await;
            kept.exec("COMMIT NO RELEASE").await;
            kept.exec("SET completion_type = 0").await;
            kept.exec("ROLLBACK").await;
            assert_eq!(kept.scalar("SELECT 1").await.as_deref(), Some("1"), "{addr}");
        }
        // Four commits on each side, seen by the client's next session.
        let mut c = Raw::app(&proxy.addr.to_string(), true).await;
        let count = c.scalar(&format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(count, Some((8 * (1 + u8::from(multiplex))).to_string()));
    }
}

#[tokio::test]
async fn reset_connection_clears_user_variables() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec("SET @x = 42").await;
    assert_eq!(c.scalar("SELECT @x").await.as_deref(), Some("42"));
    let r = c.command(&[0x1F], Expect::Result).await;
    assert_eq!(r[0].1[0], 0x00);
    assert_eq!(c.scalar("SELECT @x").await, None);
    assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some("app"));
}

#[tokio::test]
async fn refresh_and_debug_are_answered_as_by_the_server() {
    // As app (no RELOAD, no SUPER), both refused by the server itself.
    let proxy = start_proxy(lab_config("")).await;
    for deprecate_eof in [true, false] {
        assert_same(
            &proxy,
            deprecate_eof,
            &[(vec![0x07, 0x01], Expect::Result), (vec![0x0D], Expect::Result), q("SELECT 1")],
        )
        .await;
    }
}

#[tokio::test]
async fn unknown_command_gets_error_1047() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    for command in [0x00u8, 0x05, 0x08, 0x12, 0x1D, 0x40, 0xFB] {
        let r = c.command(&[command], Expect::Result).await;
        let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
        assert_eq!(err.code, 1047, "command {command:#x}");
    }
    assert_eq!(c.scalar("SELECT 7").await.as_deref(), Some("7"));
}

/// COM_STMT_BULK_EXECUTE (MariaDB) of `INSERT INTO t VALUES (?, ?)` (INT,
/// VARCHAR): one row of parameters per `(a, b)`, a NULL `b` as the NULL
/// indicator; the types are sent when `with_types`.
fn bulk(id: u32, with_types: bool, rows: &[(i32, Option<&str>)]) -> Vec<u8> {
    let mut p = vec![0xFA];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&(if with_types { 128u16 } else { 0 }).to_le_bytes());
    if with_types {
        p.extend_from_slice(&[0x03, 0, 0xFD, 0]);
    }
    for (a, b) in rows {
        p.push(0);
        p.extend_from_slice(&a.to_le_bytes());
        match b {
            Some(b) => {
                p.push(0);
                put_lenenc_str(&mut p, b.as_bytes());
            }
            None => p.push(1),
        }
    }
    p
}

async fn bulk_table() -> String {
    let table = unique("bulk");
    admin(PRIMARY)
        .await
        .exec(&format!("CREATE TABLE app.{table} (a INT PRIMARY KEY, b VARCHAR(10))"))
        .await;
    table
}

/// A MariaDB connector's batch (Connector/J, Node's mariadb, Connector/C
/// and Python's executemany send it when the server offers bulk
/// operations) gets the server's own replies through the proxy: the rows'
/// OK, what the server refuses (malformed, unknown statement, no rows, a
/// flag it does not support, a client that did not ask for bulk), with
/// and without types, by the last-prepared id; and every row lands.
#[tokio::test]
async fn bulk_execute_is_byte_identical() {
    let table = bulk_table().await;
    let proxy = start_proxy(lab_config("")).await;
    let insert = prepare(&format!("INSERT INTO {table} VALUES (?, ?)"));
    let mut sessions = Vec::new();
    for (base, addr) in [(0, PRIMARY.to_string()), (1000, proxy.addr.to_string())] {
        let mut c = Raw::app(&addr, true).await;
        assert_ne!(
            c.conn.greeting.mariadb_caps
                & rwsplit::protocol::handshake::mariadb_caps::STMT_BULK_OPERATIONS,
            0,
            "bulk operations offered by {addr}"
        );
        let id = stmt_id(&c.prepare(&insert).await[0].1);
        let rows = |from: i32| {
            [(base + from, Some("x")), (base + from + 1, None), (base + from + 2, Some("héllo"))]
        };
        let good = bulk(id, true, &rows(1));
        let mut flags64 = bulk(id, true, &rows(20));
        flags64[5] |= 64;
        let commands: Vec<Vec<u8>> = vec![
            vec![0xFA],
            good[..5].to_vec(),
            good[..6].to_vec(),
            bulk(id, true, &[]),
            bulk(999_999, true, &rows(30)),
            good,
            bulk(id, false, &rows(4)),
            bulk(u32::MAX, true, &rows(7)),
            bulk(u32::MAX, false, &rows(10)),
            flags64,
            bulk(id, true, &rows(13))[..14].to_vec(),
            bulk(id, true, &[(base + 1, Some("dup"))]),
        ];
        let mut replies = Vec::new();
        for command in &commands {
            replies.push(c.command(command, Expect::Result).await);
        }
        // A client that did not ask for bulk operations.
        let mut plain = login("app", "app", Some("app"), client_caps(true));
        plain.mariadb_caps = 0;
        let mut c = Raw::connect(&addr, &plain).await.unwrap();
        let id = stmt_id(&c.prepare(&insert).await[0].1);
        replies.push(c.command(&bulk(id, true, &rows(40)), Expect::Result).await);
        sessions.push(replies);
    }
    let (direct, proxied) = (&sessions[0], &sessions[1]);
    for (i, (want, got)) in direct.iter().zip(proxied).enumerate() {
        // The duplicate row names its key, which differs by the base.
        let mut want = want.clone();
        if i == 11 {
            let text = String::from_utf8_lossy(&want[0].1[9..]).replace("'1'", "'1001'");
            want[0].1.truncate(9);
            want[0].1.extend_from_slice(text.as_bytes());
        }
        assert_eq!(got, &want, "reply {i}: {:?}", String::from_utf8_lossy(&got[0].1));
    }
    // The replies are the rows' OKs where the server ran them (by the
    // statement's id, without types after a batch with them, and by the
    // last-prepared id with types; without them that id is refused).
    for i in [5, 6, 7] {
        assert_eq!(proxied[i][0].1[0], 0x00, "bulk {i} ran");
    }
    let mut a = admin(PRIMARY).await;
    let count = |lo: i32, hi: i32| {
        format!("SELECT COUNT(*) FROM app.{table} WHERE a BETWEEN {lo} AND {hi}")
    };
    let direct_rows = a.scalar(&count(0, 999)).await;
    assert_eq!(direct_rows.as_deref(), Some("9"));
    assert_eq!(a.scalar(&count(1000, 1999)).await, direct_rows, "rows through the proxy");
    let nulls = format!("SELECT COUNT(*) FROM app.{table} WHERE a >= 1000 AND b IS NULL");
    assert_eq!(a.scalar(&nulls).await.as_deref(), Some("3"));
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// A batch whose statement must be prepared again on a new connection
/// (its old one was closed by the server, or, multiplexed, is taken by
/// another session) and that leaves out the parameter types, as a
/// connector does after its first batch: the proxy gives the new
/// connection the types the batch before sent (the server would refuse it
/// as "Incorrect arguments" otherwise).
#[tokio::test]
async fn bulk_execute_without_types_on_a_new_connection_gets_the_statements_types() {
    let table = bulk_table().await;
    let user = unique("bulk");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")).await;
    a.exec(&format!("GRANT ALL ON app.* TO '{user}'@'%'")).await;
    for (n, pool) in [(0, ""), (100, "[pool]\nmultiplex = true\n")] {
        let users = format!("[[users]]\nname = \"{user}\"\npassword = \"pw\"\n{pool}");
        let proxy = start_proxy(lab_config(&users)).await;
        let caps = client_caps(true);
        let mut c = Raw::connect(&proxy.addr.to_string(), &login(&user, "pw", Some("app"), caps))
            .await
            .unwrap();
        let id =
            stmt_id(&c.prepare(&prepare(&format!("INSERT INTO {table} VALUES (?, ?)"))).await[0].1);
        let r =
            c.command(&bulk(id, true, &[(n + 1, Some("a")), (n + 2, None)]), Expect::Result).await;
        assert_eq!(r[0].1[0], 0x00, "{}", String::from_utf8_lossy(&r[0].1));
        kill_user_connections(&user, &[PRIMARY]).await;
        let r = c
            .command(&bulk(id, false, &[(n + 3, Some("b")), (n + 4, Some("c"))]), Expect::Result)
            .await;
        assert_eq!(r[0].1[0], 0x00, "pool {pool:?}: {}", String::from_utf8_lossy(&r[0].1));
        let rows = format!(
            "SELECT GROUP_CONCAT(a, '=', IFNULL(b, 'NULL') ORDER BY a) FROM app.{table} WHERE a > {n} AND a < {n} + 100"
        );
        let want = format!("{}=a,{}=NULL,{}=b,{}=c", n + 1, n + 2, n + 3, n + 4);
        assert_eq!(a.scalar(&rows).await, Some(want));
    }
    a.exec(&format!("DROP USER '{user}'@'%'")).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

/// MariaDB connectors send a prepare and, right behind it, an execute of
/// "the statement prepared last" (id 0xFFFFFFFF). When the prepare fails,
/// that id names no statement: the execute gets the server's error, and
/// the statement prepared before it (here a write) does not run again.
#[tokio::test]
async fn an_execute_of_the_last_prepared_after_a_failed_prepare_runs_nothing() {
    let table = unique("lastprep");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE TABLE app.{table} (id INT PRIMARY KEY, n INT)")).await;
    a.exec(&format!("INSERT INTO app.{table} VALUES (1, 0), (2, 0)")).await;
    let proxy = start_proxy(lab_config("")).await;
    for (addr, id) in [(PRIMARY.to_string(), 1), (proxy.addr.to_string(), 2)] {
        let mut c = Raw::app(&addr, true).await;
        let write = prepare(&format!("UPDATE {table} SET n = n + 1 WHERE id = {id}"));
        let write_id = stmt_id(&c.prepare(&write).await[0].1);
        let ran = c.command(&execute(u32::MAX, 0, &[], false), Expect::Result).await;
        assert_eq!(ran[0].1[0], 0x00, "{addr}: the last prepared ran");
        let failed = c.prepare(&prepare("SELEKT nothing")).await;
        assert_eq!(failed[0].1[0], 0xFF, "{addr}: the bad prepare fails");
        let r = c.command(&execute(u32::MAX, 0, &[], false), Expect::Result).await;
        let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
        assert_eq!(err.code, 1243, "{addr}: {}", String::from_utf8_lossy(&r[0].1));
        // By its own id the write still runs.
        let again = c.command(&execute(write_id, 0, &[], false), Expect::Result).await;
        assert_eq!(again[0].1[0], 0x00, "{addr}: the write by its id");
    }
    let both = a.scalar(&format!("SELECT GROUP_CONCAT(n ORDER BY id) FROM app.{table}")).await;
    assert_eq!(both.as_deref(), Some("2,2"), "each write ran twice, not three times");
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test]
async fn kill_query_uses_proxy_connection_ids() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut victim = Raw::app(&addr, true).await;
    // What the session reads from CONNECTION_ID() is what KILL takes.
    let victim_id = victim.scalar("SELECT CONNECTION_ID()").await.expect("an id");
    assert_eq!(victim_id, victim.conn.thread_id.to_string());
    let sleeper = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = victim.query("SELECT SLEEP(20)").await;
        (started.elapsed(), r, victim)
    });
    let mut killer = Raw::app(&addr, true).await;
    // Wait until the statement runs on a server before killing it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running_anywhere("SLEEP(20)").await == 0 {
        assert!(std::time::Instant::now() < deadline, "sleep never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = killer.query(&format!("KILL QUERY {victim_id}")).await;
    assert_eq!(r[0].1, vec![0, 0, 0, 2, 0, 0, 0], "KILL QUERY answered with a server's OK");
    let (elapsed, r, mut victim) = sleeper.await.unwrap();
    assert!(elapsed < std::time::Duration::from_secs(15), "the sleep was interrupted");
    // MariaDB reports an interrupted SLEEP as result 1.
    assert!(!r.is_empty());
    assert_eq!(victim.scalar("SELECT 'alive'").await.as_deref(), Some("alive"));
    let r = killer.query("KILL 4000000000").await;
    let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
    assert_eq!(err.code, 1094);
    // A session that kills its own query kills the KILL itself, as on a server.
    let own = killer.conn.thread_id;
    let r = killer.query(&format!("KILL QUERY {own}")).await;
    let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
    assert_eq!(err.code, 1317);
    assert_eq!(killer.scalar("SELECT 'alive'").await.as_deref(), Some("alive"));
}

/// `SHOW EXPLAIN FOR n` and `EXPLAIN FOR CONNECTION n` take the ids the
/// processlist shows: a proxy session's is its connection to the primary,
/// where the plan of its running statement is. Before, the statement went
/// to a replica with the proxy's id (ERROR 1094 Unknown thread id).
#[tokio::test]
async fn explain_for_connection_uses_proxy_connection_ids() {
    let table = lab_table("plan", "n INT").await;
    on_primary_replicated(&[&format!("INSERT INTO app.{table} VALUES (1)")]).await;
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut asker = Raw::app(&addr, true).await;
    for ask in ["SHOW EXPLAIN FOR", "EXPLAIN FORMAT=JSON FOR CONNECTION"] {
        let mut runner = Raw::app(&addr, true).await;
        let runner_id = runner.scalar("SELECT CONNECTION_ID()").await.expect("an id");
        let long = format!("SELECT /* rwsplit:primary */ SLEEP(2), '{ask}' FROM {table}");
        let running = tokio::spawn(async move { runner.query(&long).await });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while running_anywhere(ask).await == 0 {
            assert!(std::time::Instant::now() < deadline, "the statement never started");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The server answers once the statement looks at the ask (here
        // when its SLEEP ends).
        let sql = format!("{ask} {runner_id}");
        let r = asker.query(&sql).await;
        let err = rwsplit::protocol::messages::parse_err(&r[0].1);
        let err = err.map(|e| (e.code, String::from_utf8_lossy(e.message).into_owned()));
        assert!(err.is_none(), "{sql}: {err:?}");
        let bytes: Vec<u8> = r.iter().flat_map(|p| p.1.clone()).collect();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(&table), "{sql}: the plan names the table: {text}");
        running.await.unwrap();
    }
    let r = asker.query("SHOW EXPLAIN FOR 1999999999").await;
    let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
    assert_eq!(err.code, 1094);
}

/// `KILL @id` (an expression, as a client that kept `CONNECTION_ID()` in
/// a user variable writes it) takes the proxy's ids too. Before, it went
/// to the primary as it was, where the id named another server thread or
/// none. With and without multiplexing.
#[tokio::test]
async fn kill_of_an_expression_uses_proxy_connection_ids() {
    for extra in ["", "[pool]\nmultiplex = true"] {
        let proxy = start_proxy(lab_config(extra)).await;
        let addr = proxy.addr.to_string();
        let mut victim = Raw::app(&addr, true).await;
        let victim_id = victim.scalar("SELECT CONNECTION_ID()").await.expect("an id");
        let sleeper = tokio::spawn(async move {
            let started = std::time::Instant::now();
            victim.query("SELECT SLEEP(20) AS by_expression").await;
            started.elapsed()
        });
        let mut killer = Raw::app(&addr, true).await;
        killer.exec(&format!("SET @victim = {victim_id}")).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while running_anywhere("by_expression").await == 0 {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let r = killer.query("KILL QUERY @victim").await;
        assert!(rwsplit::protocol::messages::parse_err(&r[0].1).is_none(), "KILL QUERY failed");
        let elapsed = sleeper.await.unwrap();
        assert!(elapsed < std::time::Duration::from_secs(15), "the sleep was not interrupted");
        for (sql, id) in [("KILL @unset", "0"), ("KILL (@victim + 4000000000)", "")] {
            let r = killer.query(sql).await;
            let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
            assert_eq!(err.code, 1094, "{sql}");
            let message = String::from_utf8_lossy(err.message).into_owned();
            assert!(message.starts_with("Unknown thread id: "), "{sql}: {message}");
            assert!(id.is_empty() || message.ends_with(id), "{sql}: {message}");
        }
        assert_eq!(killer.scalar("SELECT 'alive'").await.as_deref(), Some("alive"));
    }
}

/// The proxy's connection ids lie above the servers' thread ids, so a
/// `KILL` of an id read from `information_schema.PROCESSLIST` (a server
/// thread's, here a client connected straight to the primary) is the
/// primary's to carry out, by number, by a user variable holding it, or
/// by COM_PROCESS_KILL (which ends the connection).
#[tokio::test]
async fn kill_of_a_server_thread_id_goes_to_the_primary() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut killer = Raw::app(&addr, true).await;
    let own: u64 = killer.scalar("SELECT CONNECTION_ID()").await.unwrap().parse().unwrap();
    assert!(own >= 1_000_000_000, "the proxy's ids lie above the servers': {own}");
    for (marker, kill) in [
        ("by_number", "KILL QUERY {id}"),
        ("by_variable", "KILL QUERY @server_thread"),
        ("by_command", ""),
    ] {
        let mut victim = Raw::app(PRIMARY, true).await;
        let started = std::time::Instant::now();
        // A killed connection ends the victim's read with a panic there.
        let sleeper = tokio::spawn(async move {
            victim.query(&format!("SELECT SLEEP(20) AS {marker}")).await;
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while running_anywhere(marker).await == 0 {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let find =
            format!("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS {marker}'");
        let id = killer.scalar(&find).await.expect("the server thread");
        killer.exec(&format!("SET @server_thread = {id}")).await;
        let r = if kill.is_empty() {
            // COM_PROCESS_KILL, as mysql_kill() sends it.
            let mut payload = vec![0x0c];
            payload.extend_from_slice(&id.parse::<u32>().unwrap().to_le_bytes());
            killer.command(&payload, Expect::Result).await
        } else {
            killer.query(&kill.replace("{id}", &id)).await
        };
        assert!(rwsplit::protocol::messages::parse_err(&r[0].1).is_none(), "{marker} failed");
        let _ = sleeper.await;
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "{marker}: it went on");
    }
}

#[tokio::test]
async fn select_connection_id_is_shaped_like_the_servers() {
    let proxy = start_proxy(lab_config("")).await;
    for deprecate_eof in [true, false] {
        let mut direct = Raw::app(PRIMARY, deprecate_eof).await;
        let mut proxied = Raw::app(&proxy.addr.to_string(), deprecate_eof).await;
        for sql in ["SELECT CONNECTION_ID()", "select connection_id() AS cid"] {
            let want = direct.query(sql).await;
            let got = proxied.query(sql).await;
            assert_eq!(got.len(), want.len(), "{sql}: packets");
            for (i, ((gs, g), (ws, w))) in got.iter().zip(&want).enumerate() {
                assert_eq!(gs, ws, "{sql}: sequence id of packet {i}");
                let row = i == if deprecate_eof { 2 } else { 3 };
                if !row {
                    assert_eq!(g, w, "{sql}: packet {i} (deprecate_eof={deprecate_eof})");
                }
            }
            let mut id = Vec::new();
            put_lenenc_str(&mut id, proxied.conn.thread_id.to_string().as_bytes());
            assert_eq!(got[if deprecate_eof { 2 } else { 3 }].1, id, "{sql}: the session's id");
        }
    }
}

#[tokio::test]
async fn the_proxys_own_oks_are_the_servers_bytes() {
    // COM_PING is answered by the proxy; after statements whose OKs carried
    // session-state changes its OK must still be what the server sends.
    let proxy = start_proxy(lab_config("")).await;
    for deprecate_eof in [true, false] {
        let mut direct = Raw::app(PRIMARY, deprecate_eof).await;
        let mut proxied = Raw::app(&proxy.addr.to_string(), deprecate_eof).await;
        for sql in [
            "SET autocommit = 0",
            "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
            "SET autocommit = 1",
            "SET SESSION sql_mode = DEFAULT",
        ] {
            direct.exec(sql).await;
            proxied.exec(sql).await;
            let want = direct.command(&[0x0E], Expect::Result).await;
            let got = proxied.command(&[0x0E], Expect::Result).await;
            assert_eq!(got, want, "COM_PING after {sql} (deprecate_eof={deprecate_eof})");
        }
    }
}

#[tokio::test]
async fn a_prepared_statement_keeps_the_database_it_was_prepared_in() {
    let proxy = start_proxy(lab_config("")).await;
    let table = unique("psdb");
    let other = unique("psother");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE TABLE app.{table} (id INT PRIMARY KEY)")).await;
    a.exec(&format!("INSERT INTO app.{table} VALUES (1), (2)")).await;
    a.exec(&format!("CREATE DATABASE {other}")).await;
    a.exec(&format!("GRANT ALL ON {other}.* TO app")).await;
    a.exec(&format!("CREATE TABLE {other}.{table} (id INT PRIMARY KEY)")).await;
    a.exec(&format!("INSERT INTO {other}.{table} VALUES (1), (2), (3)")).await;
    wait_replicas_caught_up().await;
    // Prepared in app, executed after USE of a database with a table of
    // the same name: the server runs it in app (the read goes to a
    // replica, where the proxy prepares it on first use).
    let sql = format!("SELECT DATABASE(), COUNT(*) FROM {table}");
    let mut responses = Vec::new();
    for addr in [PRIMARY.to_string(), proxy.addr.to_string()] {
        let mut c = Raw::app(&addr, true).await;
        let id = stmt_id(&c.prepare(&prepare(&sql)).await[0].1);
        c.exec(&format!("USE {other}")).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            let mut r = c.command(&execute(id, 0, &[], false), Expect::Result).await;
            // The server's last packet may report the schema it switched
            // to and back while executing; the columns and rows must match.
            let (_, end) = r.pop().expect("a response");
            assert_eq!(end[0], 0xFE, "the result ends in EOF/OK, not an error");
            got.push(r);
        }
        assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some(other.as_str()));
        responses.push(got);
    }
    assert!(responses[0][0].iter().any(|(_, p)| p.windows(3).any(|w| w == b"app")));
    assert_eq!(responses[1], responses[0], "through the proxy as on the server");
    a.exec(&format!("DROP DATABASE {other}")).await;
    a.exec(&format!("DROP TABLE app.{table}")).await;
}

#[tokio::test]
async fn kill_connection_closes_the_other_session() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut victim = Raw::app(&addr, true).await;
    victim.exec("SELECT 1").await;
    let mut killer = Raw::app(&addr, true).await;
    let r = killer.query(&format!("KILL {}", victim.conn.thread_id)).await;
    assert_eq!(r[0].1[0], 0x00);
    // The victim's next read sees the connection closed.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut victim.conn.stream, &mut buf),
    )
    .await
    .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));
}

/// KILL of a session in the middle of a read: its statement stops where it
/// ran and the session closes at once, as on the server (the client sees
/// its connection closed), with and without multiplexing. Before, the
/// killed read failed on its replica and the proxy ran it again on the
/// primary, to the end (a 5 s SLEEP answered after 5 s), before closing.
#[tokio::test]
async fn kill_connection_stops_the_running_statement_and_closes_at_once() {
    for extra in ["", "[pool]\nmultiplex = true"] {
        let proxy = start_proxy(lab_config(extra)).await;
        let addr = proxy.addr.to_string();
        let mut victim = Raw::app(&addr, true).await;
        let tag = unique("killed_read");
        let id = victim.scalar("SELECT CONNECTION_ID()").await.expect("an id");
        victim.send_only(format!("\x03SELECT SLEEP(5) AS {tag}").as_bytes()).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while running_anywhere(&tag).await == 0 {
            assert!(std::time::Instant::now() < deadline, "the read never started");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut killer = Raw::app(&addr, true).await;
        let killed_at = std::time::Instant::now();
        killer.exec(&format!("KILL {id}")).await;
        let mut buf = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut victim.conn.stream, &mut buf);
        let n = tokio::time::timeout(std::time::Duration::from_secs(4), read).await;
        assert!(matches!(n, Ok(Ok(0) | Err(_))), "closed without a reply ({extra:?}): {n:?}");
        let closed_after = killed_at.elapsed();
        assert!(closed_after < std::time::Duration::from_secs(2), "{closed_after:?} ({extra:?})");
        // The killed thread leaves the processlist within moments; a read
        // run again elsewhere would stay there for its 5 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while running_anywhere(&tag).await > 0 {
            assert!(std::time::Instant::now() < deadline, "the read still runs ({extra:?})");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn load_data_local_infile_is_relayed() {
    let proxy = start_proxy(lab_config("")).await;
    let mut direct = Raw::app(PRIMARY, true).await;
    let mut proxied = Raw::app(&proxy.addr.to_string(), true).await;
    let file: Vec<u8> = (0..5000).flat_map(|i| format!("{i}\trow {i}\n").into_bytes()).collect();
    let (ta, tb) = (unique("load"), unique("load"));
    for (c, t) in [(&mut direct, &ta), (&mut proxied, &tb)] {
        c.local_file = file.clone();
        c.exec(&format!("CREATE TABLE {t} (id INT PRIMARY KEY, s VARCHAR(20))")).await;
    }
    let want = direct.query(&format!("LOAD DATA LOCAL INFILE 'rows.tsv' INTO TABLE {ta}")).await;
    let got = proxied.query(&format!("LOAD DATA LOCAL INFILE 'rows.tsv' INTO TABLE {tb}")).await;
    assert_eq!(got, want);
    assert_eq!(
        proxied.scalar(&format!("SELECT COUNT(*) FROM {tb}")).await.as_deref(),
        Some("5000")
    );
    for (c, t) in [(&mut direct, &ta), (&mut proxied, &tb)] {
        c.exec(&format!("DROP TABLE {t}")).await;
    }
}

/// Server connections of `user`, over the three lab servers.
async fn connections_of(user: &str) -> usize {
    let mut n = 0;
    for addr in [PRIMARY, REPLICA1, REPLICA2] {
        let mut a = admin(addr).await;
        let sql =
            format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'");
        n += a.scalar(&sql).await.and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    }
    n
}

#[tokio::test]
async fn idle_client_holds_no_backend_connection() {
    let user = format!("lazy{}", std::process::id());
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY 'pw'")).await;
    wait_replicas_caught_up().await;
    let proxy =
        start_proxy(lab_config(&format!("[[users]]\nname = \"{user}\"\npassword = \"pw\"\n")))
            .await;
    let mut c = Raw::connect(&proxy.addr.to_string(), &login(&user, "pw", None, client_caps(true)))
        .await
        .unwrap();
    // Ping is answered by the proxy itself.
    let r = c.command(&[0x0E], Expect::Result).await;
    assert_eq!(r[0].1[0], 0x00, "ping answered");
    assert_eq!(connections_of(&user).await, 0, "an idle client opened a backend connection");
    assert_eq!(c.scalar("SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(connections_of(&user).await, 1, "the first statement opens one backend connection");
    drop(c);
    a.exec(&format!("DROP USER '{user}'@'%'")).await;
}

/// Statements that change the session's state (a SET, the database, a
/// temporary table, a user variable, a procedure that sets one, a SQL
/// prepared statement) get the OK packets the server sends: the proxy's
/// own state change tracking (`session_track_state_change`) stays out of
/// sight, unless the client turns that tracking on itself; then it sees
/// the entries as from the server, and not after it turns it off.
#[tokio::test]
async fn session_state_changes_report_the_servers_ok_packets() {
    let proc = unique("state_proc");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("CREATE PROCEDURE app.{proc}() BEGIN SET @tr_v = 7; END")).await;
    wait_replicas_caught_up().await;
    let proxy = start_proxy(lab_config("")).await;
    let changes = [
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES'",
        "USE app",
        "CREATE TEMPORARY TABLE tr_tmp (n INT)",
        "INSERT INTO tr_tmp VALUES (1)",
        "SET @tr_u = 1",
        "CALL {proc}()",
        "PREPARE tr_s FROM 'SELECT 1'",
        "DEALLOCATE PREPARE tr_s",
        "DROP TEMPORARY TABLE tr_tmp",
    ];
    let mut script: Vec<String> = changes.iter().map(|s| s.replace("{proc}", &proc)).collect();
    script.push("SET SESSION session_track_state_change = ON".into());
    script.extend(changes.iter().map(|s| s.replace("{proc}", &proc)));
    script.push("SET SESSION session_track_state_change = OFF".into());
    script.extend(changes.iter().map(|s| s.replace("{proc}", &proc)));
    for deprecate_eof in [true, false] {
        let commands: Vec<_> = script.iter().map(|s| q(s)).collect();
        assert_same(&proxy, deprecate_eof, &commands).await;
    }
    a.exec(&format!("DROP PROCEDURE app.{proc}")).await;
}

/// A session that drops its own database is in none, as on the server: its
/// reads (still on the replicas) see no database, on connections without
/// one, and a `USE` of the database created again works (it got ERROR 1046
/// from a connection the proxy tried to select the dropped one's empty
/// name on). With and without multiplexing.
#[tokio::test]
async fn a_session_that_drops_its_database_is_in_none() {
    let db = unique("dropself");
    let mut a = admin(PRIMARY).await;
    a.exec(&format!("GRANT ALL ON {db}.* TO app")).await;
    for multiplex in [false, true] {
        let proxy = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        let mut c = Raw::app(&proxy.addr.to_string(), true).await;
        for round in 0..2 {
            let at = format!("multiplex {multiplex}, round {round}");
            c.exec(&format!("CREATE DATABASE {db}")).await;
            c.exec(&format!("USE {db}")).await;
            c.exec("CREATE TABLE t (a INT)").await;
            wait_replicas_caught_up().await;
            for _ in 0..4 {
                let here = c.scalar("SELECT CONCAT_WS(' ', DATABASE(), COUNT(*)) FROM t").await;
                assert_eq!(here.as_deref(), Some(&*format!("{db} 0")), "{at}");
            }
            c.exec(&format!("DROP DATABASE {db}")).await;
            wait_replicas_caught_up().await;
            let mut servers = std::collections::HashSet::new();
            for _ in 0..6 {
                let r = c.query("SELECT @@server_id, DATABASE()").await;
                // One row: the id (one digit), then NULL.
                let row = &r[r.len() - 2].1;
                let server = char::from(row[1]);
                assert_eq!(row[2..], [0xFB], "{at}: no database, read on server {server}");
                servers.insert(server);
            }
            assert!(!servers.contains(&'1'), "{at}: the reads stay on the replicas: {servers:?}");
            let r = c.query("SHOW TABLES").await;
            let err = rwsplit::protocol::messages::parse_err(&r[0].1).expect("an error");
            assert_eq!(err.code, 1046, "{at}: SHOW TABLES without a database");
        }
    }
    a.exec(&format!("DROP DATABASE IF EXISTS {db}")).await;
}

/// `ROW_COUNT()` read right after a write is that write's count, also when
/// another session's ALTER DATABASE meanwhile made the proxy select the
/// database again on the connection first (its COM_INIT_DB left
/// ROW_COUNT() at 0 there), with and without multiplexing; the value the
/// proxy carries comes in the function's own column (BIGINT, 21 digits).
#[tokio::test]
async fn row_count_survives_the_proxys_own_commands_before_it() {
    let table = lab_table("rowcount", "n INT").await;
    for multiplex in [false, true] {
        let proxy = start_proxy(lab_config(&format!("[pool]\nmultiplex = {multiplex}\n"))).await;
        let mut a = Raw::app(&proxy.addr.to_string(), true).await;
        let mut b = Raw::app(&proxy.addr.to_string(), true).await;
        a.exec(&format!("INSERT INTO {table} VALUES (1), (2), (3)")).await;
        b.exec("ALTER DATABASE app COMMENT 'altered by another session'").await;
        let got = a.query("SELECT ROW_COUNT()").await;
        // Straight to the primary: the same column, the same row.
        let mut direct = Raw::app(PRIMARY, true).await;
        direct.exec(&format!("INSERT INTO {table} VALUES (4), (5), (6)")).await;
        let want = direct.query("SELECT ROW_COUNT()").await;
        assert_eq!(got, want, "multiplex {multiplex}");
        assert_eq!(want[2].1, b"\x013", "three rows inserted");
    }
}
