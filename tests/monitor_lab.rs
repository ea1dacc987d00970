//! The monitor against the local MariaDB lab (primary 3306, replicas 3307
//! and 3308). Read-only on the lab's replication state: the only write is
//! a heartbeat table of this test's own in `app`, dropped at the end.
//! Every wait is a bounded poll on the monitor's publications.

use rwsplit::monitor::{
    BackendSpec, BackendState, Exclusion, Flavor, LagSource, Monitor, MonitorSettings,
    PrimaryDetection, Role, Topology, gtid::MariaDbPosition,
};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const PRIMARY: &str = "127.0.0.1:3306";
const REPLICA1: &str = "127.0.0.1:3307";
const REPLICA2: &str = "127.0.0.1:3308";
const HEARTBEAT_TABLE: &str = "app.rwsplit_monitor_test_heartbeat";

fn require_lab() {
    if std::net::TcpStream::connect_timeout(&PRIMARY.parse().unwrap(), Duration::from_secs(1))
        .is_err()
    {
        panic!("the MariaDB lab is not running on {PRIMARY}: start it with integration/lab.sh up");
    }
}

fn lab_specs() -> Vec<BackendSpec> {
    vec![
        BackendSpec::new("primary", PRIMARY, Role::Primary),
        BackendSpec::new("replica1", REPLICA1, Role::Replica),
        BackendSpec::new("replica2", REPLICA2, Role::Replica),
    ]
}

fn settings(interval: Duration) -> MonitorSettings {
    MonitorSettings {
        user: "monitor".into(),
        password: "monitor".into(),
        interval,
        connect_timeout: Duration::from_millis(500),
        query_timeout: Duration::from_millis(500),
        ..MonitorSettings::default()
    }
}

fn backend<'a>(topology: &'a Topology, name: &str) -> &'a BackendState {
    topology.backend(name).unwrap_or_else(|| panic!("no backend {name} in {topology:#?}"))
}

fn position(text: Option<&str>) -> Option<MariaDbPosition> {
    text?.parse().ok()
}

#[tokio::test]
async fn lab_primary_is_writable_and_replicas_are_caught_up_by_gtid() {
    require_lab();
    let interval = Duration::from_millis(500);
    let monitor = Monitor::start(lab_specs(), settings(interval));

    let shaped = |t: &Topology| {
        t.primary == Some(0)
            && !t.writable_conflict
            && t.backends.iter().all(|b| b.healthy && b.flavor == Some(Flavor::MariaDb))
            && t.backends[0].role == Role::Primary
            && t.backends[0].read_only == Some(false)
            && t.backends[1..].iter().all(|b| b.role == Role::Replica && b.read_only == Some(true))
    };
    let topology = monitor
        .wait_for(2 * interval, shaped)
        .await
        .unwrap_or_else(|t| panic!("no lab topology within two intervals: {t:#?}"));
    assert_eq!(backend(&topology, "primary").lag_source, LagSource::None);

    // Other tests may write to the lab meanwhile: a replica may trail the
    // primary for a moment, so poll (bounded) for the caught-up state.
    let caught_up = |t: &Topology| {
        let primary_gtid = position(t.primary_gtid.as_deref());
        shaped(t)
            && primary_gtid.is_some()
            && t.backends[1..].iter().all(|b| {
                b.lag_ms == Some(0)
                    && b.lag_source == LagSource::Gtid
                    && b.eligible
                    && b.effective_weight == 1.0
                    && b.sql_thread_running == Some(true)
                    && b.io_thread_running == Some(true)
                    && position(b.gtid_position.as_deref()) == primary_gtid
            })
    };
    let topology = monitor
        .wait_for(20 * interval, caught_up)
        .await
        .unwrap_or_else(|t| panic!("replicas never caught up by GTID: {t:#?}"));
    assert_eq!(backend(&topology, "primary").gtid_position, topology.primary_gtid);
    monitor.stop().await;
}

#[tokio::test]
async fn closed_port_backend_goes_unhealthy_without_affecting_others() {
    require_lab();
    let interval = Duration::from_millis(500);
    let settings = settings(interval);
    let fail_after = settings.fail_after;
    let mut specs = lab_specs();
    specs.push(BackendSpec::new("closed", "127.0.0.1:1", Role::Replica));
    let monitor = Monitor::start(specs, settings);

    let topology = monitor
        .wait_for(interval * (fail_after + 1), |t| {
            let closed = backend(t, "closed");
            closed.consecutive_failures >= fail_after
                && t.backends.iter().filter(|b| b.healthy).count() == 3
        })
        .await
        .unwrap_or_else(|t| panic!("closed port not marked down in time: {t:#?}"));
    let closed = backend(&topology, "closed");
    assert!(!closed.healthy);
    assert!(!closed.eligible);
    assert_eq!(closed.exclusion, Some(Exclusion::Unhealthy));
    assert!(closed.last_error.is_some(), "{closed:#?}");
    assert_eq!(closed.server_version, None);
    assert_eq!(topology.primary, Some(0));
    monitor.stop().await;
}

/// A wrong monitor password: every server answers, refusing the login;
/// each backend's error says so and what to check (the servers are not
/// unreachable, the monitor is misconfigured).
#[tokio::test]
async fn a_refused_monitor_login_is_reported_as_such() {
    require_lab();
    let interval = Duration::from_millis(200);
    let settings = MonitorSettings { password: "not-the-password".into(), ..settings(interval) };
    let monitor = Monitor::start(lab_specs(), settings);
    let topology = monitor
        .wait_for(interval * 10, |t| t.backends.iter().all(|b| b.last_error.is_some()))
        .await
        .unwrap_or_else(|t| panic!("no probe failed: {t:#?}"));
    for b in &topology.backends {
        let error = b.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("the monitor's login was refused"), "{}: {error}", b.name);
        assert!(error.contains("1045"), "{}: {error}", b.name);
        assert!(error.contains("check [monitor] user and password"), "{}: {error}", b.name);
        assert!(!b.healthy && !b.eligible, "{b:#?}");
    }
    monitor.stop().await;
}

#[tokio::test]
async fn healthy_backend_goes_down_after_fail_after_and_recovers_after_recover_after() {
    require_lab();
    let forwarder = Forwarder::start(REPLICA1).await;
    let interval = Duration::from_millis(200);
    let settings = settings(interval);
    let (fail_after, recover_after) = (settings.fail_after, settings.recover_after);
    let specs = vec![
        BackendSpec::new("primary", PRIMARY, Role::Primary),
        BackendSpec::new("replica1", &forwarder.address(), Role::Replica),
    ];
    let monitor = Monitor::start(specs, settings);
    monitor
        .wait_for(10 * interval, |t| backend(t, "replica1").healthy)
        .await
        .unwrap_or_else(|t| panic!("never healthy: {t:#?}"));

    forwarder.set_mode(Mode::Refuse);
    // Every publication seen on the way down: still healthy while fewer
    // than fail_after probes failed.
    let early_down = Cell::new(false);
    let topology = monitor
        .wait_for(interval * (fail_after + 3), |t| {
            let replica = backend(t, "replica1");
            if replica.consecutive_failures > 0 && replica.consecutive_failures < fail_after {
                early_down.set(early_down.get() || !replica.healthy);
            }
            !replica.healthy
        })
        .await
        .unwrap_or_else(|t| panic!("never went down: {t:#?}"));
    assert!(!early_down.get(), "went down before {fail_after} failures");
    assert!(backend(&topology, "replica1").consecutive_failures >= fail_after);
    assert!(backend(&topology, "primary").healthy);

    forwarder.set_mode(Mode::Forward);
    let early_up = Cell::new(false);
    let topology = monitor
        .wait_for(interval * (recover_after + 3), |t| {
            let replica = backend(t, "replica1");
            if replica.consecutive_successes > 0 && replica.consecutive_successes < recover_after {
                early_up.set(early_up.get() || replica.healthy);
            }
            replica.healthy
        })
        .await
        .unwrap_or_else(|t| panic!("never recovered: {t:#?}"));
    assert!(!early_up.get(), "came back before {recover_after} successes");
    let replica = backend(&topology, "replica1");
    assert!(replica.consecutive_successes >= recover_after);
    assert_eq!(replica.last_error, None);
    monitor.stop().await;
}

#[tokio::test]
async fn probe_connection_is_kept_open_and_closed_on_stop() {
    require_lab();
    let forwarder = Forwarder::start(REPLICA2).await;
    let interval = Duration::from_millis(100);
    let specs = vec![BackendSpec::new("replica2", &forwarder.address(), Role::Replica)];
    let monitor = Monitor::start(specs, settings(interval));
    monitor
        .wait_for(30 * interval, |t| backend(t, "replica2").consecutive_successes >= 5)
        .await
        .unwrap_or_else(|t| panic!("no five good probes: {t:#?}"));
    assert_eq!(forwarder.accepted(), 1, "one connection for all probes");

    monitor.stop().await;
    wait_until(Duration::from_secs(2), || forwarder.active() == 0).await;
    assert_eq!(forwarder.active(), 0, "connection still open after stop");
}

#[tokio::test]
async fn silent_server_fails_probe_within_connect_timeout() {
    require_lab();
    let forwarder = Forwarder::start(REPLICA2).await;
    forwarder.set_mode(Mode::Silent);
    let interval = Duration::from_millis(100);
    let settings =
        MonitorSettings { connect_timeout: Duration::from_millis(150), ..settings(interval) };
    let specs = vec![BackendSpec::new("silent", &forwarder.address(), Role::Replica)];
    let monitor = Monitor::start(specs, settings);
    let topology = monitor
        .wait_for(Duration::from_secs(2), |t| backend(t, "silent").consecutive_failures >= 2)
        .await
        .unwrap_or_else(|t| panic!("silent server never failed: {t:#?}"));
    let error = backend(&topology, "silent").last_error.clone().unwrap();
    assert!(error.contains("connect timed out"), "{error}");
    monitor.stop().await;
}

#[tokio::test]
async fn update_adds_reweights_and_removes_backends() {
    require_lab();
    let interval = Duration::from_millis(200);
    let settings = settings(interval);
    let monitor =
        Monitor::start(vec![BackendSpec::new("primary", PRIMARY, Role::Primary)], settings.clone());
    monitor
        .wait_for(10 * interval, |t| t.primary == Some(0) && t.backends[0].healthy)
        .await
        .unwrap_or_else(|t| panic!("primary not up: {t:#?}"));

    let mut specs = lab_specs();
    specs[1].weight = 3;
    monitor.update(specs.clone(), settings.clone());
    let topology = monitor
        .wait_for(20 * interval, |t| {
            t.backends.len() == 3 && t.backends[1..].iter().all(|b| b.eligible)
        })
        .await
        .unwrap_or_else(|t| panic!("replicas not added: {t:#?}"));
    assert_eq!(backend(&topology, "replica1").effective_weight, 3.0);
    assert_eq!(topology.primary, Some(0));

    // Reorder and drop replica2: the primary is still found by name.
    let specs = vec![specs[1].clone(), specs[0].clone()];
    monitor.update(specs, settings);
    let topology = monitor
        .wait_for(10 * interval, |t| t.backends.len() == 2)
        .await
        .unwrap_or_else(|t| panic!("replica2 not removed: {t:#?}"));
    assert_eq!(topology.primary, Some(1));
    assert!(topology.backend("replica2").is_none());
    assert!(backend(&topology, "primary").healthy, "state kept across reload");
    monitor.stop().await;
}

#[tokio::test]
async fn heartbeat_table_gives_lag_when_gtid_cannot() {
    require_lab();
    let mut admin = admin_conn().await;
    use mysql_async::prelude::Queryable;
    // A heartbeat written 5 s in the past, in UTC, on the primary; it
    // replicates to the replica like any row.
    admin
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} \
             (server_id INT UNSIGNED PRIMARY KEY, ts VARCHAR(26) NOT NULL)"
        ))
        .await
        .unwrap();
    admin
        .query_drop(format!(
            "REPLACE INTO {HEARTBEAT_TABLE} VALUES (1, DATE_FORMAT(\
             UTC_TIMESTAMP(6) - INTERVAL 5 SECOND, '%Y-%m-%dT%H:%i:%s.%f'))"
        ))
        .await
        .unwrap();

    // No primary configured (static detection): no GTID comparison, so
    // the heartbeat is the best source. The monitor user has no SELECT on
    // `app`; admin reads here.
    let interval = Duration::from_millis(200);
    let settings = MonitorSettings {
        user: "admin".into(),
        password: "admin".into(),
        heartbeat_table: Some(HEARTBEAT_TABLE.into()),
        primary_detection: PrimaryDetection::Static,
        ..settings(interval)
    };
    let monitor = Monitor::start(
        vec![BackendSpec::new("replica1", REPLICA1, Role::Replica)],
        settings.clone(),
    );
    let lagging = monitor
        .wait_for(Duration::from_secs(5), |t| {
            backend(t, "replica1").lag_source == LagSource::Heartbeat
        })
        .await;

    // Within max_lag after a reload: eligible, weight scaled by the lag.
    let relaxed = MonitorSettings { max_lag: Duration::from_secs(20), ..settings };
    monitor.update(vec![BackendSpec::new("replica1", REPLICA1, Role::Replica)], relaxed);
    let eligible =
        monitor.wait_for(Duration::from_secs(5), |t| backend(t, "replica1").eligible).await;
    monitor.stop().await;
    admin.query_drop(format!("DROP TABLE IF EXISTS {HEARTBEAT_TABLE}")).await.unwrap();
    let _ = admin.disconnect().await;

    let lagging = lagging.unwrap_or_else(|t| panic!("no heartbeat lag: {t:#?}"));
    let replica = backend(&lagging, "replica1");
    let lag = replica.lag_ms.unwrap();
    assert!((5_000..8_000).contains(&lag), "lag {lag} ms");
    assert!(!replica.eligible);
    assert_eq!(replica.exclusion, Some(Exclusion::LagTooHigh));
    let eligible = eligible.unwrap_or_else(|t| panic!("never eligible with max_lag 20s: {t:#?}"));
    let replica = backend(&eligible, "replica1");
    let lag = replica.lag_ms.unwrap() as f64 / 1000.0;
    assert!((replica.effective_weight - (1.0 - lag / 20.0)).abs() < 1e-9);
    assert!(replica.effective_weight > 0.5 && replica.effective_weight < 0.76);
}

async fn admin_conn() -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some("admin"))
        .pass(Some("admin"))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("admin login on the primary")
}

async fn wait_until(limit: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the forwarder does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Relay to the target.
    Forward,
    /// Close every open connection and each new one at once.
    Refuse,
    /// Accept and say nothing.
    Silent,
}

/// A TCP relay in front of a lab server that can be switched off, to
/// fail a backend without touching the lab.
struct Forwarder {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    accepted: Arc<AtomicUsize>,
    active: Arc<AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_loop: JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: &'static str) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(Mode::Forward));
        let accepted = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept_loop = tokio::spawn({
            let (mode, accepted, active, connections) =
                (mode.clone(), accepted.clone(), active.clone(), connections.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let current = *mode.lock().unwrap();
                    if current == Mode::Refuse {
                        continue; // dropped: closed at once
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let active = active.clone();
                    let task = tokio::spawn(async move {
                        let _guard = Active::enter(active);
                        if current == Mode::Silent {
                            std::future::pending::<()>().await;
                        }
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            }
        });
        Forwarder { addr, mode, accepted, active, connections, accept_loop }
    }

    fn address(&self) -> String {
        self.addr.to_string()
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            for task in self.connections.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept_loop.abort();
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Counts a relayed connection while it lives.
struct Active(Arc<AtomicUsize>);

impl Active {
    fn enter(counter: Arc<AtomicUsize>) -> Active {
        counter.fetch_add(1, Ordering::SeqCst);
        Active(counter)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
