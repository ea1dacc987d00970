//! Memory stays flat: a 1 GiB result streams through the proxy binary
//! without growing its resident memory by more than a few MiB, and
//! hostile connections leave nothing behind.

mod common;

use common::*;

/// The proxy binary running with the lab config on a free port.
struct ProxyProcess {
    child: Binary,
    addr: String,
}

async fn spawn_proxy() -> ProxyProcess {
    let port = free_port();
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/rwsplit.toml"))
        .unwrap()
        .replace("127.0.0.1:6450", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:6451", &format!("127.0.0.1:{}", free_port()))
        .replace("\"tls/", concat!("\"", env!("CARGO_MANIFEST_DIR"), "/conf/tls/"));
    let path = temp_config("rwsplit-mem", &config);
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_binary(&path, &addr).await;
    ProxyProcess { child, addr }
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn one_gib_result_streams_with_flat_memory() {
    let proxy = spawn_proxy().await;
    let mut c = Raw::app(&proxy.addr, true).await;
    // Warm up buffers and the runtime with a small result first.
    let (_, bytes) = c.query_counted("SELECT REPEAT('x', 1048576) FROM seq_1_to_8").await;
    assert!(bytes > 8 << 20);
    let before = rss_kib(proxy.child.id());
    let (packets, bytes) = c.query_counted("SELECT REPEAT('x', 1048576) FROM seq_1_to_1024").await;
    let after = rss_kib(proxy.child.id());
    assert!(packets >= 1024 && bytes >= 1 << 30, "got {packets} packets, {bytes} bytes");
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    println!("1 GiB result: RSS {before} KiB -> {after} KiB (+{growth_mib:.1} MiB)");
    assert!(growth_mib < 8.0, "RSS grew by {growth_mib:.1} MiB");
}

#[tokio::test]
async fn repeated_bad_connections_do_not_grow_memory() {
    let proxy = spawn_proxy().await;
    let round = |addr: String| async move {
        for i in 0..50u8 {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            let junk: Vec<u8> = (0..100_000u32).map(|n| (n as u8).wrapping_mul(i | 1)).collect();
            let _ = s.write_all(&junk).await;
            let _ = s.read(&mut buf).await;
        }
        let mut c = Raw::app(&addr, true).await;
        assert_eq!(c.scalar("SELECT 1").await.as_deref(), Some("1"));
    };
    round(proxy.addr.clone()).await;
    let before = rss_kib(proxy.child.id());
    for _ in 0..4 {
        round(proxy.addr.clone()).await;
    }
    let after = rss_kib(proxy.child.id());
    println!("200 bad connections: RSS {before} KiB -> {after} KiB");
    assert!(after.saturating_sub(before) < 4096, "RSS grew from {before} to {after} KiB");
}
