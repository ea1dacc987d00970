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
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut reader = PacketReader::new();
    let mut packet = Vec::new();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    let greeting = Greeting::parse(&packet).unwrap();
    let response = HandshakeResponse {
        capabilities: client_caps(true) | CapabilityFlags::CLIENT_PLUGIN_AUTH,
        max_packet: 1 << 24,
        collation: 45,
        user: b"app".to_vec(),
        auth_response: mysql_common::scramble::scramble_sha256(&greeting.scramble, password)
            .unwrap()
            .to_vec(),
        auth_plugin: Some(b"caching_sha2_password".to_vec()),
        ..HandshakeResponse::default()
    };
    let mut body = Vec::new();
    response.write(&mut body);
    let mut out = Vec::new();
    put_packet(&mut out, 1, &body);
    s.write_all(&out).await.unwrap();
    reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
    (s, reader, packet)
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

/// Logs in as `app` (native password) with `extra` capabilities; returns
/// the stream, its reader, the greeting's scramble and the first reply.
async fn native_login(
    proxy: &TestProxy,
    extra: CapabilityFlags,
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
        auth_response: mysql_common::scramble::scramble_native(&greeting.scramble, b"app")
            .unwrap()
            .to_vec(),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
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
async fn a_client_that_compresses_unasked_is_refused_with_an_error() {
    let proxy = start_proxy(lab_config("")).await;
    // The greeting does not offer compression...
    let (_, _, _, ok) = native_login(&proxy, CapabilityFlags::empty()).await;
    assert_eq!(ok[0], 0x00, "a plain login works");
    // ...and a client that sets it anyway (it would send compressed
    // frames next) gets a clear error instead of a hang.
    let (_, _, _, first) = native_login(&proxy, CapabilityFlags::CLIENT_COMPRESS).await;
    let err = rwsplit::protocol::messages::parse_err(&first).expect("an error");
    assert_eq!(err.code, 1235);
    assert!(String::from_utf8_lossy(err.message).contains("compress"));
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
