//! Logging in through the proxy as clients do: caching_sha2_password's
//! fast path, a user configured only by its native hash, the primary's
//! version in the greeting; and the small session commands.

mod common;

use common::*;
use mysql_common::constants::CapabilityFlags;
use rwsplit::protocol::handshake::{Greeting, HandshakeResponse};
use rwsplit::protocol::packet::{PacketReader, put_packet};
use rwsplit::relay::Expect;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Logs in as `app` with caching_sha2_password's fast path and `password`;
/// returns the stream, its reader, and the proxy's first reply packet.
async fn sha2_fast_login(proxy: &TestProxy, password: &[u8]) -> (TcpStream, PacketReader, Vec<u8>) {
    let answer = |scramble: &[u8]| {
        mysql_common::scramble::scramble_sha256(scramble, password).unwrap().to_vec()
    };
    let (s, reader, _, first) =
        login_with(proxy, CapabilityFlags::empty(), "caching_sha2_password", answer).await;
    (s, reader, first)
}

/// Logs in as `app` with `extra` capabilities, answering the greeting's
/// scramble for `plugin` with `answer`; returns the stream, its reader, the
/// scramble and the proxy's first reply packet.
async fn login_with(
    proxy: &TestProxy,
    extra: CapabilityFlags,
    plugin: &str,
    answer: impl FnOnce(&[u8]) -> Vec<u8>,
) -> (TcpStream, PacketReader, Vec<u8>, Vec<u8>) {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut reader = PacketReader::new();
    let mut packet = Vec::new();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    let greeting = Greeting::parse(&packet).unwrap();
    let response = HandshakeResponse {
        capabilities: client_caps(true) | CapabilityFlags::CLIENT_PLUGIN_AUTH | extra,
        max_packet: 1 << 24,
        collation: 45,
        user: b"app".to_vec(),
        auth_response: answer(&greeting.scramble),
        auth_plugin: Some(plugin.as_bytes().to_vec()),
        // As `Raw::app` logs in (MariaDB's extended type info).
        mariadb_caps: rwsplit::backend::PASSTHROUGH_MARIADB_CAPS,
        ..HandshakeResponse::default()
    };
    let mut body = Vec::new();
    response.write(&mut body);
    let mut out = Vec::new();
    put_packet(&mut out, 1, &body);
    s.write_all(&out).await.unwrap();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    (s, reader, greeting.scramble, packet)
}

#[tokio::test]
async fn caching_sha2_fast_path_client_logs_in_and_reaches_the_backend() {
    let proxy = start_proxy(lab_config("")).await;
    let (mut s, mut reader, first) = sha2_fast_login(&proxy, b"app").await;
    assert_eq!(first, vec![0x01, 0x03], "fast auth success");
    let mut packet = Vec::new();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    assert_eq!(packet[0], 0x00, "then OK");
    // The backend login made from it works too.
    let mut out = Vec::new();
    put_packet(&mut out, 0, b"\x03SELECT CURRENT_USER()");
    s.write_all(&out).await.unwrap();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    assert_eq!(packet, vec![1], "a one-column result set, not an error");
}

#[tokio::test]
async fn wrong_caching_sha2_password_is_refused() {
    let proxy = start_proxy(lab_config("")).await;
    let (_, _, first) = sha2_fast_login(&proxy, b"nope").await;
    let err = rwsplit::protocol::messages::parse_err(&first).expect("an error");
    assert_eq!(err.code, 1045);
}

#[tokio::test]
async fn user_configured_by_native_hash_logs_in_and_reaches_backends() {
    let hash = rwsplit::protocol::auth::native_hash_hex("app");
    let config = lab_config("").clone();
    let mut text_config = rwsplit::Config::parse(&format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[users]]\nname = \"app\"\npassword_hash = \"{hash}\"\n[[backends]]\nname = \"primary\"\naddress = \"{PRIMARY}\"\nrole = \"primary\"\n[[backends]]\nname = \"replica1\"\naddress = \"{REPLICA1}\"\nrole = \"replica\"\n"
    ))
    .unwrap();
    text_config.timeouts = config.timeouts.clone();
    let proxy = start_proxy(text_config).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    // A read (replica) and a write (primary): both backends accept the
    // login the proxy derives from the client's proof.
    assert_eq!(c.scalar("SELECT @@server_id").await.as_deref(), Some("2"));
    assert_eq!(c.scalar("SELECT /* rwsplit:primary */ @@server_id").await.as_deref(), Some("1"));
    let wrong =
        Raw::connect(&proxy.addr.to_string(), &login("app", "nope", None, client_caps(true))).await;
    assert!(wrong.is_err());
}

#[tokio::test]
async fn greeting_presents_the_primarys_version() {
    let proxy = start_proxy(lab_config("")).await;
    let direct = Raw::app(PRIMARY, true).await;
    let proxied = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(proxied.conn.greeting.server_version, direct.conn.greeting.server_version);
    assert_eq!(proxied.conn.greeting.collation, direct.conn.greeting.collation);
    assert_eq!(proxied.conn.greeting.status & 0x0002, 0x0002, "AUTOCOMMIT in the greeting");
    assert_ne!(proxied.conn.greeting.scramble, direct.conn.greeting.scramble);
}

#[tokio::test]
async fn set_option_toggles_multi_statements_like_the_server() {
    let proxy = start_proxy(lab_config("")).await;
    let mut direct = Raw::app(PRIMARY, true).await;
    let mut proxied = Raw::app(&proxy.addr.to_string(), true).await;
    for payload in [
        vec![0x1B, 1, 0],
        b"\x03SELECT 1; SELECT 2".to_vec(),
        vec![0x1B, 0, 0],
        b"\x03SELECT 1; SELECT 2".to_vec(),
    ] {
        let want = direct.command(&payload, Expect::Result).await;
        let got = proxied.command(&payload, Expect::Result).await;
        assert_eq!(got, want, "{payload:?}");
    }
}

#[tokio::test]
async fn statistics_returns_the_servers_status_line() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let r = c.command(&[0x09], Expect::Single).await;
    assert_eq!(r.len(), 1);
    assert!(String::from_utf8_lossy(&r[0].1).starts_with("Uptime: "), "{:?}", r);
}

/// COM_PROCESS_INFO (mysql_list_processes) gets the primary's processlist,
/// shaped as the server sends it: the same columns as straight to it, and a
/// row for the connection that asked, under the id its client knows.
#[tokio::test]
async fn process_info_returns_the_primarys_processlist() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let mut direct = Raw::app(PRIMARY, true).await;
    let got = c.command(&[0x0A], Expect::Result).await;
    let want = direct.command(&[0x0A], Expect::Result).await;
    let columns = want[0].1[0] as usize;
    assert_eq!(got[0], want[0]);
    assert_eq!(got[1..=columns], want[1..=columns], "column definitions");
    let own_id = c.scalar("SELECT CONNECTION_ID()").await.unwrap();
    let rows: Vec<String> =
        got[columns + 1..].iter().map(|(_, p)| String::from_utf8_lossy(p).into_owned()).collect();
    let own = format!("{}{own_id}\u{3}app", own_id.len() as u8 as char);
    assert!(
        rows.iter().any(|r| r.starts_with(&own) && r.contains("Processlist")),
        "a row for this session's connection to the primary, as {own_id}: {rows:?}"
    );
}

/// Logs in as `app` with its native password and `extra` capabilities.
async fn native_login(
    proxy: &TestProxy,
    extra: CapabilityFlags,
) -> (TcpStream, PacketReader, Vec<u8>, Vec<u8>) {
    let answer = |scramble: &[u8]| {
        mysql_common::scramble::scramble_native(scramble, b"app").unwrap().to_vec()
    };
    login_with(proxy, extra, "mysql_native_password", answer).await
}

/// Reads compressed frames from `s` until `count` packets have arrived;
/// returns the packets (sequence id, payload) and each frame's sequence id.
async fn compressed_packets(s: &mut TcpStream, count: usize) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let (mut plain, mut frame_seqs, mut packets) = (Vec::new(), Vec::new(), Vec::new());
    while packets.len() < count {
        let mut header = [0u8; 7];
        s.read_exact(&mut header).await.unwrap();
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let unpacked = u32::from_le_bytes([header[4], header[5], header[6], 0]) as usize;
        frame_seqs.push(header[3]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        if unpacked == 0 {
            plain.extend_from_slice(&payload);
        } else {
            let mut out = Vec::with_capacity(unpacked);
            flate2::Decompress::new(true)
                .decompress_vec(&payload, &mut out, flate2::FlushDecompress::Finish)
                .unwrap();
            assert_eq!(out.len(), unpacked, "uncompressed length as announced");
            plain.extend_from_slice(&out);
        }
        while plain.len() >= 4 {
            let n = u32::from_le_bytes([plain[0], plain[1], plain[2], 0]) as usize;
            if plain.len() < 4 + n {
                break;
            }
            packets.push((plain[3], plain[4..4 + n].to_vec()));
            plain.drain(..4 + n);
        }
    }
    assert!(plain.is_empty(), "nothing after the last packet");
    (packets, frame_seqs)
}

/// A command in one stored (uncompressed) frame with sequence id 0.
fn stored_command(command: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    put_packet(&mut packet, 0, command);
    let mut frame = (packet.len() as u32).to_le_bytes()[..3].to_vec();
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&packet);
    frame
}

#[tokio::test]
async fn a_compressing_client_gets_the_servers_packets_in_zlib_frames() {
    let proxy = start_proxy(lab_config("")).await;
    let (mut s, _, _, ok) = native_login(&proxy, CapabilityFlags::CLIENT_COMPRESS).await;
    assert_eq!(ok[0], 0x00, "logged in; frames start after this OK");
    // The same query straight to the primary, without compression.
    let mut direct = Raw::app(PRIMARY, true).await;
    let sql = "SELECT REPEAT('compressible ', 2000) AS s, 42 AS n";
    let want = direct.query(sql).await;
    for round in 0..2 {
        // Each command starts its frames at sequence 0 again.
        let mut command = vec![0x03];
        command.extend_from_slice(sql.as_bytes());
        s.write_all(&stored_command(&command)).await.unwrap();
        let (got, frame_seqs) = compressed_packets(&mut s, want.len()).await;
        assert_eq!(got, want, "round {round}");
        assert_eq!(frame_seqs[0], 1, "replies continue the command's frame sequence");
    }
    // A write and its read-your-writes read, compressed.
    let table = unique("compressed");
    for sql in [
        format!("CREATE TABLE app.{table} (id INT PRIMARY KEY)"),
        format!("INSERT INTO app.{table} VALUES (7)"),
    ] {
        let mut command = vec![0x03];
        command.extend_from_slice(sql.as_bytes());
        s.write_all(&stored_command(&command)).await.unwrap();
        let (got, _) = compressed_packets(&mut s, 1).await;
        assert_eq!(got[0].1[0], 0x00, "{sql}: OK");
    }
    let mut command = b"\x03SELECT id FROM app.".to_vec();
    command.extend_from_slice(table.as_bytes());
    s.write_all(&stored_command(&command)).await.unwrap();
    let (got, _) = compressed_packets(&mut s, 4).await;
    assert_eq!(got[2].1, b"\x017", "the row just written");
    direct.exec(&format!("DROP TABLE app.{table}")).await;
    // The client's own connection is compressed, as the server would say
    // of it (the proxy's connections to the servers are not).
    let status = b"\x03SHOW SESSION STATUS LIKE 'Compression'";
    s.write_all(&stored_command(status)).await.unwrap();
    let (got, _) = compressed_packets(&mut s, 5).await;
    assert_eq!(got[3].1, b"\x0bCompression\x02ON");
    let mut plain = Raw::app(&proxy.addr.to_string(), true).await;
    let plain = plain.query(std::str::from_utf8(&status[1..]).unwrap()).await;
    assert_eq!(plain[3].1, b"\x0bCompression\x03OFF");
}

#[tokio::test]
async fn a_client_asking_for_zstd_is_refused_with_an_error() {
    let proxy = start_proxy(lab_config("")).await;
    let zstd = CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM;
    let (_, _, _, first) = native_login(&proxy, zstd).await;
    let err = rwsplit::protocol::messages::parse_err(&first).expect("an error");
    assert_eq!(err.code, 1235);
    assert!(String::from_utf8_lossy(err.message).contains("zstd"));
}

#[tokio::test]
async fn change_user_answering_for_another_plugin_is_switched_to_native() {
    // libmysqlclient's COM_CHANGE_USER answers for caching_sha2_password
    // with no data and expects an auth switch to the account's plugin.
    let proxy = start_proxy(lab_config("")).await;
    let (mut s, mut reader, scramble, ok) = native_login(&proxy, CapabilityFlags::empty()).await;
    assert_eq!(ok[0], 0x00);
    let mut change = vec![0x11];
    change.extend_from_slice(b"app\0");
    change.push(0); // no auth data
    change.extend_from_slice(b"app\0");
    change.extend_from_slice(&45u16.to_le_bytes());
    change.extend_from_slice(b"caching_sha2_password\0");
    let mut out = Vec::new();
    put_packet(&mut out, 0, &change);
    s.write_all(&out).await.unwrap();
    let mut packet = Vec::new();
    let (_, seq) = reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    assert_eq!(seq, 1);
    assert_eq!(packet[0], 0xFE, "an auth switch request");
    assert!(packet.starts_with(b"\xFEmysql_native_password\0"));
    let switch_scramble = &packet[b"\xFEmysql_native_password\0".len()..];
    let switch_scramble = switch_scramble.strip_suffix(&[0]).unwrap_or(switch_scramble);
    assert_eq!(switch_scramble, scramble.as_slice());
    let answer = mysql_common::scramble::scramble_native(switch_scramble, b"app").unwrap();
    out.clear();
    put_packet(&mut out, 2, &answer);
    s.write_all(&out).await.unwrap();
    let (_, seq) = reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    assert_eq!((seq, packet[0]), (3, 0x00), "OK after the switch, in sequence");
    // The session works afterwards.
    out.clear();
    put_packet(&mut out, 0, b"\x03SELECT CURRENT_USER()");
    s.write_all(&out).await.unwrap();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    assert_eq!(packet, vec![1], "a one-column result set, not an error");
    // A wrong password after the switch is refused, in sequence too.
    let (mut s, mut reader, _, _) = native_login(&proxy, CapabilityFlags::empty()).await;
    out.clear();
    put_packet(&mut out, 0, &change);
    s.write_all(&out).await.unwrap();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    let switch_scramble = &packet[b"\xFEmysql_native_password\0".len()..packet.len() - 1];
    let answer = mysql_common::scramble::scramble_native(switch_scramble, b"wrong").unwrap();
    out.clear();
    put_packet(&mut out, 2, &answer);
    s.write_all(&out).await.unwrap();
    let (_, seq) = reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    assert_eq!(seq, 3);
    assert_eq!(rwsplit::protocol::messages::parse_err(&packet).expect("an error").code, 1045);
}

/// A login naming a database its user cannot use (one that does not exist,
/// one without grants, a name too long for any) is refused at login with
/// the primary's own error, as connecting to the server is, with and
/// without multiplexing; before, the login succeeded and the first
/// statement got the error. A database the user may use logs in on it, and
/// the proxy goes on serving.
#[tokio::test]
async fn a_login_naming_a_database_it_cannot_use_gets_the_servers_error() {
    for extra in ["", "[pool]\nmultiplex = true"] {
        let proxy = start_proxy(lab_config(extra)).await;
        let addr = proxy.addr.to_string();
        let too_long = "x".repeat(100);
        let cases = [
            ("app", "no_such_db_9d1"),
            ("admin", "no_such_db_9d1"),
            ("app", "mysql"),
            ("admin", too_long.as_str()),
        ];
        for (user, db) in cases {
            let named = login(user, user, Some(db), client_caps(true));
            let direct = Raw::connect(PRIMARY, &named).await.err().map(|e| e.to_string());
            assert!(direct.is_some(), "the primary let {user} log in on {db}");
            let proxied = Raw::connect(&addr, &named).await.err().map(|e| e.to_string());
            assert_eq!(proxied, direct, "{user} naming {db} ({extra:?})");
        }
        for _ in 0..3 {
            let mut c = Raw::app(&addr, true).await;
            assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some("app"), "{extra:?}");
        }
    }
}

/// A MariaDB account authenticated with ed25519 (`IDENTIFIED VIA ed25519`,
/// the plugin the lab loads): the proxy logs in to the primary and the
/// replicas for it by signing the server's nonce, with and without
/// multiplexing, many times over (a nonce may end in a zero byte, which is
/// part of it). The client logs in to the proxy as usual. The monitor's
/// user is an ed25519 account as well.
#[tokio::test]
async fn a_mariadb_ed25519_account_is_logged_in_to_every_backend() {
    let loaded =
        "SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'";
    let plugin = admin(PRIMARY).await.scalar(loaded).await;
    assert_eq!(plugin.as_deref(), Some("ACTIVE"), "the lab loads auth_ed25519");
    on_primary_replicated(&[
        "CREATE USER IF NOT EXISTS 'app_ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('app_ed pw')",
        "GRANT ALL ON app.* TO 'app_ed'@'%'",
        "CREATE USER IF NOT EXISTS 'monitor_ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('mon ed')",
        "GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'monitor_ed'@'%'",
    ])
    .await;
    // The monitor logs in with an ed25519 account too.
    let monitored = monitored_as("monitor_ed", "mon ed");
    for extra in ["", "[pool]\nmultiplex = true"] {
        let mut config = lab_config(&format!("{monitored}{extra}"));
        config.users[1].name = "app_ed".into();
        config.users[1].password = Some("app_ed pw".into());
        let proxy = start_proxy(config).await;
        let addr = proxy.addr.to_string();
        all_healthy(&proxy).await;
        let mut servers = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let l = login("app_ed", "app_ed pw", Some("app"), client_caps(true));
            let mut c = Raw::connect(&addr, &l).await.expect("app_ed logs in through the proxy");
            servers.insert(c.scalar("SELECT @@server_id").await.unwrap_or_default());
            c.exec("BEGIN").await;
            servers.insert(c.scalar("SELECT @@server_id").await.unwrap_or_default());
            c.exec("COMMIT").await;
        }
        assert_eq!(servers.into_iter().collect::<Vec<_>>(), ["1", "2", "3"], "{extra:?}");
    }
}

/// ucs2, utf16, utf16le and utf32 cannot be a client's character set: the
/// server refuses a login in one before it checks the password (ERROR
/// 1231), and a COM_CHANGE_USER to one (the session starts afresh, its
/// user kept). The proxy answers both as the primary does. Before, it let
/// the client in, and every statement then failed with that error from
/// the backend it ran on (the `mariadb` client crashed on utf16).
#[tokio::test]
async fn a_wide_character_set_is_refused_at_login_and_change_user_as_by_the_server() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    // ucs2_general_ci, utf16_general_ci, utf16le_general_ci,
    // utf32_general_ci, ucs2_unicode_520_ci.
    for collation in [35, 54, 56, 60, 159] {
        for password in ["app", "wrong"] {
            let mut wide = login("app", password, Some("app"), client_caps(true));
            wide.collation = collation;
            let direct = Raw::connect(PRIMARY, &wide).await.err().map(|e| e.to_string());
            assert!(direct.as_deref().is_some_and(|e| e.contains("1231")), "{direct:?}");
            let proxied = Raw::connect(&addr, &wide).await.err().map(|e| e.to_string());
            assert_eq!(proxied, direct, "collation {collation}, password {password}");
        }
    }
    let mut change = vec![0x11];
    change.extend_from_slice(b"app\0");
    change.push(0); // no auth data: the server answers before it looks
    change.extend_from_slice(b"app\0");
    change.extend_from_slice(&35u16.to_le_bytes());
    change.extend_from_slice(b"mysql_native_password\0");
    let mut replies = Vec::new();
    for server in [PRIMARY, addr.as_str()] {
        let mut c = Raw::app(server, true).await;
        c.exec("SET @kept = 1").await;
        let reply = c.command(&change, Expect::Result).await;
        let after = c.scalar("SELECT CONCAT_WS(' ', CURRENT_USER(), @kept)").await;
        replies.push((reply, after));
    }
    assert_eq!(replies[1], replies[0], "the proxy's COM_CHANGE_USER answer and session after it");
    let err = rwsplit::protocol::messages::parse_err(&replies[0].0[0].1).expect("an error");
    assert_eq!(err.code, 1231);
    assert_eq!(replies[0].1.as_deref(), Some("app@%"), "started afresh as app");
}
