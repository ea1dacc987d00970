//! Bad input never takes the proxy down: each hostile connection is closed
//! (with an error where the protocol allows one) and other clients keep
//! being served.

mod common;

use common::*;
use rwsplit::protocol::packet::put_packet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads the greeting packet.
async fn read_greeting(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.unwrap();
    let len = header[0] as usize | (header[1] as usize) << 8 | (header[2] as usize) << 16;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    payload
}

async fn assert_still_serving(proxy: &TestProxy) {
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(c.scalar("SELECT 'ok'").await.as_deref(), Some("ok"));
}

/// An ERR packet's code within raw bytes received, if any.
fn err_code(bytes: &[u8]) -> Option<u16> {
    (bytes.len() > 6 && bytes[4] == 0xFF).then(|| u16::from_le_bytes([bytes[5], bytes[6]]))
}

#[tokio::test]
async fn truncated_handshake_is_closed() {
    let proxy = start_proxy(lab_config("")).await;
    for cut in [1usize, 4, 10, 35] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        read_greeting(&mut s).await;
        let mut full = Vec::new();
        put_packet(
            &mut full,
            1,
            &[0x85, 0xa6, 0x0f, 0x00, 0, 0, 0, 1, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        s.write_all(&full[..cut.min(full.len())]).await.unwrap();
        s.shutdown().await.unwrap();
        read_until_closed(&mut s, Duration::from_secs(5)).await;
    }
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn wrong_sequence_id_in_login_is_closed() {
    let proxy = start_proxy(lab_config("")).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    read_greeting(&mut s).await;
    let mut p = Vec::new();
    put_packet(&mut p, 7, &[0u8; 40]);
    s.write_all(&p).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn wrong_sequence_id_after_login_gets_error_1156() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let mut p = Vec::new();
    put_packet(&mut p, 3, b"\x03SELECT 1");
    c.raw_write(&p).await;
    let got = read_until_closed(&mut c.conn.stream, Duration::from_secs(5)).await;
    assert_eq!(err_code(&got), Some(1156));
    assert_still_serving(&proxy).await;
}

/// A COM_CHANGE_USER that cannot be read gets MariaDB's ERROR 1047, and
/// the session goes on as it was: same user, database, user variables.
#[tokio::test]
async fn a_malformed_change_user_gets_error_1047_and_the_session_goes_on() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.exec("SET @kept = 'still here'").await;
    // No user name terminator; a user and a truncated auth response length.
    for bad in [&b"\x11\x00"[..], b"\x11app", b"\x11app\x00\xfc\x10"] {
        let r = c.command(bad, rwsplit::relay::Expect::Result).await;
        assert_eq!(err_code_of(&r[0].1), Some(1047), "{bad:?}");
        assert_eq!(c.scalar("SELECT @kept").await.as_deref(), Some("still here"));
        assert_eq!(c.scalar("SELECT DATABASE()").await.as_deref(), Some("app"));
    }
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn packet_length_lie_is_closed() {
    let proxy = start_proxy(lab_config("")).await;
    // Before login: the header promises 1000 bytes, 10 arrive, then EOF.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    read_greeting(&mut s).await;
    s.write_all(&[0xE8, 0x03, 0x00, 0x01]).await.unwrap();
    s.write_all(&[0u8; 10]).await.unwrap();
    s.shutdown().await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(5)).await;
    // After login: the same lie in a command.
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.raw_write(&[0xE8, 0x03, 0x00, 0x00, 0x03, b'S']).await;
    c.conn.stream.shutdown().await.unwrap();
    read_until_closed(&mut c.conn.stream, Duration::from_secs(5)).await;
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn oversized_command_gets_error_1153() {
    let proxy = start_proxy(lab_config("[limits]\nmax_packet = \"1MiB\"\n")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let mut p = Vec::new();
    put_packet(&mut p, 0, &vec![0x03; 2 << 20]);
    let mut stream = c.conn.stream;
    let writer = tokio::spawn(async move {
        let _ = stream.write_all(&p).await;
        stream
    });
    let mut s = writer.await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert_eq!(err_code(&got), Some(1153));
    c.conn.stream = s;
    assert_still_serving(&proxy).await;
}

/// A deterministic pseudo-random byte stream.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[tokio::test]
async fn hundred_megabytes_of_garbage_are_refused() {
    let proxy = start_proxy(lab_config("")).await;
    let junk = std::sync::Arc::new(garbage(100 << 20, 0x9E3779B97F4A7C15));
    // Before login and after login.
    for after_login in [false, true] {
        let mut s = if after_login {
            match Raw::app(&proxy.addr.to_string(), true).await.conn.stream {
                rwsplit::backend_tls::BackendStream::Tcp(tcp) => tcp,
                _ => unreachable!("the test client does not use TLS"),
            }
        } else {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            read_greeting(&mut s).await;
            s
        };
        let (mut rd, mut wr) = s.split();
        let junk = junk.clone();
        let write = async move {
            let _ = wr.write_all(&junk).await;
        };
        let read = async {
            let mut buf = vec![0u8; 65536];
            loop {
                match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
                    Err(_) => panic!("garbage connection not closed"),
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {}
                }
            }
        };
        tokio::join!(write, read);
        drop(s);
    }
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn silent_client_is_closed_after_handshake_timeout() {
    let proxy = start_proxy(lab_config("[timeouts]\nclient_handshake = \"1s\"\n")).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let started = std::time::Instant::now();
    read_greeting(&mut s).await;
    read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "closed too early");
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_mysql_wording() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    for (user, password) in [("nobody", "x"), ("app", "wrong")] {
        let err = Raw::connect(&addr, &login(user, password, None, client_caps(true)))
            .await
            .err()
            .expect("login refused");
        match err {
            rwsplit::backend::BackendError::Server { code, state, message } => {
                assert_eq!(code, 1045);
                assert_eq!(state, "28000");
                assert_eq!(
                    message,
                    format!("Access denied for user '{user}'@'127.0.0.1' (using password: YES)")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn many_clients_connect_at_once() {
    let proxy = start_proxy(lab_config("")).await;
    let addr = proxy.addr.to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let addr = addr.clone();
        tasks.spawn(async move {
            let mut c = Raw::app(&addr, true).await;
            c.scalar("SELECT 1").await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_get_error_1040() {
    let proxy = start_proxy(lab_config("[limits]\nmax_client_connections = 3\n")).await;
    let addr = proxy.addr.to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Raw::app(&addr, true).await);
    }
    let err = Raw::connect(&addr, &login("app", "app", None, client_caps(true)))
        .await
        .err()
        .expect("refused");
    match err {
        rwsplit::backend::BackendError::Server { code, message, .. } => {
            assert_eq!(code, 1040);
            assert_eq!(message, "Too many connections");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The admitted clients are unaffected, and a slot frees when one leaves.
    assert_eq!(held[0].scalar("SELECT 1").await.as_deref(), Some("1"));
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Raw::connect(&addr, &login("app", "app", None, client_caps(true))).await {
            Ok(mut c) => {
                assert_eq!(c.scalar("SELECT 2").await.as_deref(), Some("2"));
                break;
            }
            Err(_) => {
                assert!(std::time::Instant::now() < deadline, "the freed slot was never reused");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Large commands of all clients share `limits.max_command_memory`: one
/// that would take more than is left gets ERROR 1041 as soon as its header
/// says how large it is (before its bytes are buffered) and its session
/// ends; small commands are not counted; what a command held comes back
/// when it has run, or when its client is gone.
#[tokio::test]
async fn large_commands_beyond_the_shared_memory_cap_get_error_1041() {
    let config = "[admin]\naddress = \"127.0.0.1:0\"\n\
                  [limits]\nmax_packet = \"8MiB\"\nmax_command_memory = \"10MiB\"\n";
    let proxy = start_proxy(lab_config(config)).await;
    let metric = async |name: &str| {
        let (_, body) = http_get(proxy.admin.unwrap(), "/metrics", None).await;
        let line = body.lines().find(|l| l.starts_with(name)).map(str::to_string);
        line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let refused_before = metric("rwsplit_commands_refused_total").await;
    let addr = proxy.addr.to_string();
    let held = || proxy.shared.command_memory.used();
    let wait_held = async |bytes: usize| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while held() != bytes {
            assert!(tokio::time::Instant::now() < deadline, "held {} bytes, not {bytes}", held());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let header = |len: usize| [len as u8, (len >> 8) as u8, (len >> 16) as u8, 0];
    // A client announces a 6 MiB command and sends its first MiB only.
    let big = 6 << 20;
    let mut holder = Raw::app(&addr, true).await;
    let mut start = header(big).to_vec();
    start.push(0x03);
    start.extend_from_slice(&vec![b' '; 1 << 20]);
    holder.conn.stream.write_all(&start).await.unwrap();
    wait_held(big).await;
    // Another 6 MiB command does not fit beside it.
    let mut refused = Raw::app(&addr, true).await;
    refused.conn.stream.write_all(&header(big)).await.unwrap();
    refused.conn.stream.write_all(&[0x03]).await.unwrap();
    let got = read_until_closed(&mut refused.conn.stream, Duration::from_secs(10)).await;
    assert_eq!(err_code(&got), Some(1041), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(held(), big);
    assert_eq!(metric("rwsplit_command_memory_bytes").await, big as f64);
    assert_eq!(metric("rwsplit_commands_refused_total").await - refused_before, 1.0);
    // Small commands are served meanwhile.
    assert_still_serving(&proxy).await;
    // The holder leaves: its 6 MiB come back, and a 6 MiB statement runs.
    drop(holder);
    wait_held(0).await;
    let mut c = Raw::app(&addr, true).await;
    let literal = "x".repeat(big - 100);
    let n = c.scalar(&format!("SELECT LENGTH('{literal}')")).await;
    assert_eq!(n, Some((big - 100).to_string()));
    assert_eq!(held(), 0, "given back once the command has run");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
}

/// A prepared execute is kept as the client sent it while a copy goes to
/// its backend, so a large one holds twice its size: the cap counts both.
/// One whose copy would not fit gets ERROR 1041 and does not run; the
/// session goes on, and all it held comes back.
#[tokio::test]
async fn a_large_execute_counts_twice_against_the_shared_memory_cap() {
    let config = "[limits]\nmax_packet = \"8MiB\"\nmax_command_memory = \"10MiB\"\n";
    let proxy = start_proxy(lab_config(config)).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let r = c.prepare(b"\x16SELECT LENGTH(?)").await;
    assert_eq!(r[0].1[0], 0x00, "{:?}", String::from_utf8_lossy(&r[0].1));
    let id: [u8; 4] = r[0].1[1..5].try_into().unwrap();
    // cmd, id, flags, iterations, null bitmap, types bound: LONG_BLOB, value
    let execute = |len: usize| {
        let mut p = vec![0x17];
        p.extend_from_slice(&id);
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 0xFB, 0]);
        p.push(0xFD);
        p.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        p.extend(std::iter::repeat_n(b'x', len));
        p
    };
    // A binary row: header, null bitmap, the integer (little-endian).
    let length = |r: &Packets| {
        let row = &r[r.len() - 2].1;
        row[2..].iter().rev().fold(0u64, |n, &b| n << 8 | u64::from(b))
    };
    // 4 MiB, held twice: 8 MiB fit.
    let r = c.command(&execute(4 << 20), rwsplit::relay::Expect::Result).await;
    assert_eq!(r[0].1[0], 1, "a result set: {:?}", String::from_utf8_lossy(&r[0].1));
    assert_eq!(length(&r), 4 << 20);
    assert_eq!(proxy.shared.command_memory.used(), 0);
    // 6 MiB is admitted as a command, but twice it is not.
    let r = c.command(&execute(6 << 20), rwsplit::relay::Expect::Result).await;
    assert_eq!(err_code_of(&r[0].1), Some(1041), "{:?}", String::from_utf8_lossy(&r[0].1));
    assert_eq!(proxy.shared.command_memory.used(), 0, "given back");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
}

/// A session keeps the text of its prepared statements and SETs (to run
/// them on other backend connections) only up to
/// `limits.max_statement_memory`: a prepare beyond it gets ERROR 1041 and
/// the session goes on; closing a statement makes room. SETs beyond it
/// are not kept: the session's reads stay on the primary, which has them.
#[tokio::test]
async fn a_sessions_kept_statement_text_is_capped() {
    let config = "[limits]\nmax_statement_memory = \"1MiB\"\n";
    let proxy = start_proxy(lab_config(config)).await;
    let addr = proxy.addr.to_string();
    let padding = "x".repeat(400 << 10);
    let mut c = Raw::app(&addr, true).await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let r = c.prepare(format!("\x16SELECT {n} /* {padding} */").as_bytes()).await;
        assert_eq!(r[0].1[0], 0x00, "{n}: {:?}", String::from_utf8_lossy(&r[0].1));
        ids.push(u32::from_le_bytes(r[0].1[1..5].try_into().unwrap()));
    }
    let r = c.prepare(format!("\x16SELECT 2 /* {padding} */").as_bytes()).await;
    assert_eq!(err_code_of(&r[0].1), Some(1041), "{:?}", String::from_utf8_lossy(&r[0].1));
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
    let mut close = vec![0x19];
    close.extend_from_slice(&ids[0].to_le_bytes());
    c.send_only(&close).await;
    let r = c.prepare(format!("\x16SELECT 2 /* {padding} */").as_bytes()).await;
    assert_eq!(r[0].1[0], 0x00, "{:?}", String::from_utf8_lossy(&r[0].1));
    // SETs: two fit, the third does not.
    let mut s = Raw::app(&addr, true).await;
    for zone in ["+01:00", "+02:00"] {
        s.exec(&format!("SET time_zone = '{zone}' /* {padding} */")).await;
        let on = s.scalar("SELECT @@server_id").await;
        assert_ne!(on.as_deref(), Some("1"), "reads on the replicas while the SETs fit");
    }
    s.exec(&format!("SET time_zone = '+03:00' /* {padding} */")).await;
    for _ in 0..4 {
        let r = s.query("SELECT @@server_id, @@time_zone").await;
        let row = String::from_utf8_lossy(&r[r.len() - 2].1).into_owned();
        assert_eq!(row, "\u{1}1\u{6}+03:00", "reads on the primary, which has every SET");
    }
}

fn err_code_of(payload: &[u8]) -> Option<u16> {
    rwsplit::protocol::messages::parse_err(payload).map(|e| e.code)
}
