//! The admin port: health, readiness, the backends as the monitor sees
//! them, Prometheus metrics, and the bearer token.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn backends_show_roles_health_lag_and_positions() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    let json = wait_backends(admin, Duration::from_secs(10), |j| {
        j.as_array().is_some_and(|a| {
            a.len() == 3
                && a.iter().all(|b| b["healthy"] == true)
                && a[1]["lag_ms"] == 0
                && a[2]["lag_ms"] == 0
        })
    })
    .await;
    let b = json.as_array().unwrap();
    assert_eq!(b[0]["name"], "primary");
    assert_eq!(b[0]["role"], "primary");
    assert_eq!(b[0]["address"], PRIMARY);
    assert_eq!(b[1]["role"], "replica");
    assert_eq!(b[1]["lag_source"], "gtid");
    assert!(b[1]["gtid_position"].as_str().is_some_and(|p| p.starts_with("0-1-")));
    for key in ["weight", "effective_weight", "in_flight", "queries_total", "errors_total"] {
        assert!(b[1].get(key).is_some(), "missing {key}");
    }
}

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    assert_eq!(http_get(admin, "/healthz", None).await.0, 200);
    wait_backends(admin, Duration::from_secs(10), |j| j[0]["healthy"] == true).await;
    assert_eq!(http_get(admin, "/readyz", None).await.0, 200);
    assert_eq!(http_get(admin, "/nope", None).await.0, 404);
}

#[tokio::test]
async fn metrics_count_queries_by_reason() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    wait_backends(admin, Duration::from_secs(10), |j| {
        j[1]["eligible"] == true || j[2]["eligible"] == true
    })
    .await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    c.scalar("SELECT 1").await;
    let (status, body) = http_get(admin, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("rwsplit_queries_total{reason=\"read\"}"), "{body}");
    assert!(body.contains("rwsplit_client_connections"), "{body}");
    assert!(body.contains("rwsplit_backend_lag_ms{backend=\"replica1\"}"), "{body}");
    let json = wait_backends(admin, Duration::from_secs(5), |_| true).await;
    let total: u64 =
        json.as_array().unwrap().iter().map(|b| b["queries_total"].as_u64().unwrap()).sum();
    assert!(total >= 1);
}

#[tokio::test]
async fn token_protects_every_endpoint() {
    let proxy =
        start_proxy(lab_config("[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n")).await;
    let admin = proxy.admin.unwrap();
    assert_eq!(http_get(admin, "/healthz", None).await.0, 401);
    assert_eq!(http_get(admin, "/healthz", Some("wrong")).await.0, 401);
    assert_eq!(http_get(admin, "/healthz", Some("s3cret")).await.0, 200);
}

#[tokio::test]
async fn a_reload_changes_the_token() {
    let text = |token: &str| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\
             [[users]]\nname = \"app\"\npassword = \"app\"\n\
             [[backends]]\nname = \"primary\"\naddress = \"{PRIMARY}\"\nrole = \"primary\"\n"
        )
    };
    let path = temp_config("admin-token", &text("s3cret"));
    let proxy = start_proxy(rwsplit::Config::load(&path).unwrap()).await;
    let admin = proxy.admin.unwrap();
    assert_eq!(http_get(admin, "/healthz", Some("s3cret")).await.0, 200);
    std::fs::write(&path, text("n3w")).unwrap();
    proxy.shared.reload().expect("reload");
    assert_eq!(http_get(admin, "/healthz", Some("s3cret")).await.0, 401, "the old token");
    assert_eq!(http_get(admin, "/healthz", Some("n3w")).await.0, 200);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn non_loopback_admin_without_token_is_refused() {
    let config = rwsplit::Config::parse(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"0.0.0.0:6451\"\n[[users]]\nname = \"a\"\npassword = \"a\"\n[[backends]]\nname = \"p\"\naddress = \"127.0.0.1:3306\"\nrole = \"primary\"\n",
    )
    .unwrap();
    assert!(config.validate().iter().any(|p| p.contains("admin.token")), "{:?}", config.validate());
}

#[tokio::test]
async fn digests_count_statement_shapes() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let tag = unique("dg");
    for i in 0..5 {
        c.scalar(&format!("SELECT {i} AS {tag}")).await;
    }
    let (status, body) = http_get(admin, "/digests", None).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["text"].as_str().is_some_and(|t| t.contains(&tag)))
        .expect("the shape is listed");
    assert_eq!(entry["count"], 5, "{entry}");
    assert_eq!(entry["rows"], 5);
    assert!(entry["text"].as_str().unwrap().contains('?'), "literals are normalized: {entry}");
}

async fn post(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn drain_and_enable_a_replica_at_run_time() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    both_replicas_eligible(admin).await;
    assert_eq!(post(admin, "/backends/replica2/drain").await, 200);
    let json = wait_backends(admin, Duration::from_secs(5), |j| j[2]["state"] == "drain").await;
    assert_eq!(json[1]["state"], "active");
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    for _ in 0..20 {
        assert_eq!(
            c.scalar("SELECT @@server_id").await.as_deref(),
            Some("2"),
            "no reads on a drained replica"
        );
    }
    assert_eq!(post(admin, "/backends/replica2/enable").await, 200);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(c.scalar("SELECT @@server_id").await.unwrap());
    }
    assert!(seen.contains("3"), "enabled again: {seen:?}");
    assert_eq!(post(admin, "/backends/nope/drain").await, 404);
    assert_eq!(post(admin, "/backends/replica1/explode").await, 404);
}

/// A read after a write goes where its GTID is (not through the picker),
/// and still counts as in flight on that replica while it runs, so the
/// least-busy choices around it see it.
#[tokio::test]
async fn a_read_after_a_write_counts_as_in_flight_on_its_replica() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    both_replicas_eligible(admin).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let t = unique("inflight");
    c.exec(&format!("CREATE TABLE {t} (id INT)")).await;
    c.exec(&format!("INSERT INTO {t} VALUES (1)")).await;
    let read = tokio::spawn(async move {
        let server = c.scalar(&format!("SELECT @@server_id + SLEEP(2) FROM {t}")).await;
        c.exec(&format!("DROP TABLE {t}")).await;
        server
    });
    let in_flight = |j: &serde_json::Value, i: usize| j[i]["in_flight"].as_u64().unwrap_or(0);
    let busy = wait_backends(admin, Duration::from_millis(1500), |j| {
        in_flight(j, 1) + in_flight(j, 2) == 1
    })
    .await;
    let replica = if in_flight(&busy, 1) == 1 { 1 } else { 2 };
    let server = read.await.unwrap();
    // The lab's replica1 has server_id 2, replica2 3.
    assert_eq!(server, Some((replica + 1).to_string()), "counted where it ran: {busy}");
    let idle = wait_backends(admin, Duration::from_secs(5), |_| true).await;
    assert_eq!((0..3).map(|i| in_flight(&idle, i)).sum::<u64>(), 0, "{idle}");
}

/// `GET /sessions` lists each logged-in session: the id its client sees
/// (`SELECT CONNECTION_ID()`), its user and address, whether a command
/// runs or how long it has been idle, and the backend connections it
/// holds, by the server thread ids the servers show.
#[tokio::test]
async fn sessions_lists_clients_and_their_backend_threads() {
    let proxy = start_proxy(lab_config(MONITORED)).await;
    let admin = proxy.admin.unwrap();
    let addr = proxy.addr.to_string();
    let mut a = Raw::app(&addr, true).await;
    let mut b = Raw::app(&addr, true).await;
    let id_of = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).expect("an id");
    let a_id = id_of(a.scalar("SELECT CONNECTION_ID()").await);
    let b_id = id_of(b.scalar("SELECT CONNECTION_ID()").await);
    // Not on its own, CONNECTION_ID() is the backend thread's.
    let res = a.query("SELECT /* rwsplit:primary */ CONNECTION_ID(), 1").await;
    let row = &res[res.len() - 2].1;
    let thread = rwsplit::protocol::packet::Cursor::new(row).lenenc_bytes().unwrap().to_vec();
    let thread: u64 = String::from_utf8(thread).unwrap().parse().unwrap();
    let (status, body) = http_get(admin, "/sessions", None).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sessions = json.as_array().expect("a JSON array");
    let find =
        |id: u64| sessions.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id}: {body}"));
    let (sa, sb) = (find(a_id), find(b_id));
    assert_eq!(sa["user"], "app");
    assert!(sa["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "{sa}");
    assert!(sa["connected_s"].as_f64().is_some(), "{sa}");
    let held = sa["backend_connections"].as_array().unwrap();
    assert!(
        held.iter().any(|c| c["backend"] == "primary" && c["thread_id"] == thread),
        "A ran on primary thread {thread}: {sa}"
    );
    assert_eq!(sb["user"], "app");
    assert_eq!(sb["running"], false, "{sb}");
    assert!(sb["idle_s"].as_f64().is_some_and(|s| s >= 0.0), "{sb}");
    // A session running a statement shows it, and no idle time.
    let mut c = Raw::app(&addr, true).await;
    let c_id = id_of(c.scalar("SELECT CONNECTION_ID()").await);
    let sleeper = tokio::spawn(async move {
        c.scalar("SELECT SLEEP(1.5)").await;
        c
    });
    let running = wait_admin(admin, "/sessions", Duration::from_secs(5), |j| {
        j.as_array().unwrap().iter().any(|s| s["id"] == c_id && s["running"] == true)
    })
    .await;
    let sc = running.as_array().unwrap().iter().find(|s| s["id"] == c_id).unwrap().clone();
    assert!(sc["idle_s"].is_null(), "{sc}");
    let c = sleeper.await.unwrap();
    let after = wait_admin(admin, "/sessions", Duration::from_secs(5), |j| {
        j.as_array().unwrap().iter().any(|s| s["id"] == c_id && s["running"] == false)
    })
    .await;
    let sc = after.as_array().unwrap().iter().find(|s| s["id"] == c_id).unwrap().clone();
    assert!(sc["idle_s"].as_f64().is_some_and(|s| s < 1.0), "idle since its SLEEP ended: {sc}");
    drop(c);
    drop(a);
    // A session that ended is gone from the list.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = http_get(admin, "/sessions", None).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<u64> =
            json.as_array().unwrap().iter().filter_map(|s| s["id"].as_u64()).collect();
        if !ids.contains(&a_id) {
            assert!(ids.contains(&b_id), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A still listed: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
