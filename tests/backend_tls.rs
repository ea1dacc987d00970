//! TLS from the proxy to the backends: encrypted when enabled, the
//! certificate checked against the CA and the host name by default.

mod common;

use common::*;

const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tls/ca.pem");
/// The server answering and its TLS cipher on that connection.
const CIPHER: &str = "SELECT CONCAT(@@server_id, ' ', VARIABLE_VALUE) \
     FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'";

/// The TLS cipher of the backend connection that serves a read (checked to
/// be a replica's), and of the primary's (inside a transaction).
async fn ciphers(c: &mut Raw) -> (String, String) {
    let answer = |s: Option<String>| {
        let s = s.unwrap_or_default();
        let (server, cipher) = s.split_once(' ').unwrap_or((&s, ""));
        (server.to_string(), cipher.trim().to_string())
    };
    // Session status is read where the last statement ran: a read first.
    c.query("SELECT 1").await;
    let (server, read) = answer(c.scalar(CIPHER).await);
    assert!(server == "2" || server == "3", "the read ran on server {server}, not a replica");
    c.exec("BEGIN").await;
    let (server, primary) = answer(c.scalar(CIPHER).await);
    assert_eq!(server, "1", "the statement in the transaction ran on the primary");
    c.exec("COMMIT").await;
    (read, primary)
}

#[tokio::test]
async fn backend_connections_use_verified_tls_when_enabled() {
    let proxy =
        start_proxy(lab_config(&format!("[backend_tls]\nenabled = true\nca = \"{CA}\"\n"))).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let (read, primary) = ciphers(&mut c).await;
    assert!(!read.is_empty(), "the replica connection is not encrypted");
    assert!(!primary.is_empty(), "the primary connection is not encrypted");
    assert_eq!(c.scalar("SELECT 6 * 7").await.as_deref(), Some("42"));
}

#[tokio::test]
async fn without_backend_tls_the_connections_are_plain() {
    let proxy = start_proxy(lab_config("")).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    assert_eq!(ciphers(&mut c).await, (String::new(), String::new()));
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let config =
        format!("[backend_tls]\nenabled = true\nca = \"{CA}\"\nserver_name = \"db.invalid\"\n");
    let proxy = start_proxy(lab_config(&config)).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let r = c.query("SELECT 1").await;
    let e = rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).expect("an error");
    let message = String::from_utf8_lossy(e.message);
    assert_eq!(e.code, rwsplit::error::BACKEND_UNREACHABLE, "{message}");
    assert!(message.contains("certificate"), "{message}");
    // The session goes on (and gets the same error again, not a hang).
    let r = c.query("SELECT 1").await;
    assert!(rwsplit::protocol::messages::parse_err(&r.last().unwrap().1).is_some());
}

#[tokio::test]
async fn verify_off_encrypts_without_checking_the_certificate() {
    let config = "[backend_tls]\nenabled = true\nverify = false\nserver_name = \"db.invalid\"\n";
    let proxy = start_proxy(lab_config(config)).await;
    let mut c = Raw::app(&proxy.addr.to_string(), true).await;
    let (read, primary) = ciphers(&mut c).await;
    assert!(!read.is_empty() && !primary.is_empty());
}

/// The monitor's probes use `[backend_tls]` too: servers that let the
/// monitor's user in only over TLS (`REQUIRE SSL`, as under
/// `require_secure_transport`) are still probed, and healthy.
#[tokio::test]
async fn the_monitor_probes_over_tls_too() {
    on_primary_replicated(&[
        "CREATE USER IF NOT EXISTS 'monitor_tls'@'%' IDENTIFIED BY 'monitor_tls' REQUIRE SSL",
        "GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'monitor_tls'@'%'",
    ])
    .await;
    let monitor = monitored_as("monitor_tls", "monitor_tls");
    for tls in [format!("enabled = true\nca = \"{CA}\""), "enabled = true\nverify = false".into()] {
        let proxy = start_proxy(lab_config(&format!("{monitor}[backend_tls]\n{tls}\n"))).await;
        let j = all_healthy(&proxy).await;
        assert_eq!(j[0]["role"], "primary", "{tls}: {j}");
    }
    // Without TLS the same user is refused, and the monitor sees no backend up.
    let proxy = start_proxy(lab_config(&monitor)).await;
    let admin = proxy.admin.expect("admin port");
    wait_backends(admin, std::time::Duration::from_secs(10), |j| {
        (0..3).all(|i| {
            j[i]["healthy"] == false
                && j[i]["last_error"].as_str().is_some_and(|e| e.contains("Access denied"))
        })
    })
    .await;
}
