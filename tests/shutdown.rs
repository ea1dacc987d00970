//! SIGTERM: the proxy stops accepting, lets a running statement finish
//! (within `timeouts.shutdown`), then exits.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_lets_a_running_statement_finish() {
    let port = free_port();
    let path = temp_config(
        "shutdown",
        &format!(
            "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[[users]]\nname = \"app\"\npassword = \"app\"\n[[backends]]\nname = \"primary\"\naddress = \"{PRIMARY}\"\nrole = \"primary\"\n[timeouts]\nshutdown = \"10s\"\n"
        ),
    );
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_binary(&path, &addr).await;
    let mut idle = Raw::app(&addr, true).await;
    let mut busy = Raw::app(&addr, true).await;
    let tag = unique("term");
    let sql = format!("SELECT SLEEP(2), '{tag}'");
    let running = tokio::spawn(async move { busy.query(&sql).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_anywhere(&tag).await == 0 {
        assert!(Instant::now() < deadline, "statement never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let result = running.await.unwrap();
    let row = &result[result.len() - 2].1;
    assert!(
        String::from_utf8_lossy(row).contains(&tag),
        "the running statement finished with its result"
    );
    // The process exits once nothing runs, well within the timeout.
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(8), "proxy did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    // The idle session was closed, and nothing listens any more.
    let mut buf = [0u8; 1];
    let n = tokio::io::AsyncReadExt::read(&mut idle.conn.stream, &mut buf).await;
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}
