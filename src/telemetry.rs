//! Metric names and descriptions in one place, and the handles the hot
//! path uses: created once per proxy, never looked up per statement. The
//! Prometheus recorder is the process's one global (besides tracing).
//! What every statement counts (its route, its latency) is kept in
//! per-worker shards ([`crate::sharded`]) and added up when scraped.

use crate::router::Reason;
use crate::sharded;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::sync::OnceLock;

pub const QUERIES: &str = "rwsplit_queries_total";
pub const CLIENT_CONNECTIONS: &str = "rwsplit_client_connections";
pub const STATEMENT_SECONDS: &str = "rwsplit_statement_duration_seconds";
pub const BACKEND_LAG_MS: &str = "rwsplit_backend_lag_ms";
pub const BACKEND_HEALTHY: &str = "rwsplit_backend_healthy";
pub const BACKEND_EFFECTIVE_WEIGHT: &str = "rwsplit_backend_effective_weight";
pub const GTID_WAITS: &str = "rwsplit_gtid_waits_total";
pub const GTID_WAIT_SECONDS: &str = "rwsplit_gtid_wait_duration_seconds";
pub const GTID_FALLBACKS: &str = "rwsplit_gtid_fallbacks_total";
pub const LOGIN_FAILURES: &str = "rwsplit_login_failures_total";
pub const SESSION_PINS: &str = "rwsplit_session_pins_total";
pub const MONITOR_FAILURES: &str = "rwsplit_monitor_consecutive_failures";
pub const POOL_IDLE: &str = "rwsplit_pool_idle_connections";
pub const POOL_REUSED: &str = "rwsplit_pool_reused_total";
pub const POOL_BOUND: &str = "rwsplit_pool_bound_total";
pub const POOL_CONNECTIONS: &str = "rwsplit_pool_connections";
pub const POOL_WAITING: &str = "rwsplit_pool_waiting";
pub const POOL_TIMEOUTS: &str = "rwsplit_pool_timeouts_total";
pub const COMMAND_MEMORY: &str = "rwsplit_command_memory_bytes";
pub const COMMANDS_REFUSED: &str = "rwsplit_commands_refused_total";
pub const CONFIG_RELOADS: &str = "rwsplit_config_reloads_total";
pub const RULE_REFUSALS: &str = "rwsplit_rule_refusals_total";

/// How often histogram samples are folded into their summaries.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed on first use).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Fixed buckets: a sample costs a counter, not a sketch update
            // (and histograms aggregate across proxies, summaries do not).
            let handle = PrometheusBuilder::new()
                .set_buckets(&crate::sharded::DURATION_BOUNDS)
                .expect("bucket bounds are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            describe();
            // Histogram samples pile up until they are drained: without
            // this a proxy nobody scrapes would grow by every statement.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("rwsplit-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn the metrics upkeep thread");
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(QUERIES, "Statements routed, by target kind and routing reason");
    metrics::describe_gauge!(CLIENT_CONNECTIONS, "Client connections open now");
    metrics::describe_gauge!(
        BACKEND_LAG_MS,
        "Replication lag of each backend in milliseconds (absent when unknown)"
    );
    metrics::describe_gauge!(BACKEND_HEALTHY, "1 when the monitor sees the backend healthy");
    metrics::describe_gauge!(BACKEND_EFFECTIVE_WEIGHT, "Share of reads after lag scaling");
    metrics::describe_counter!(
        GTID_WAITS,
        "Reads that waited for the session's GTID on a replica, by result"
    );
    metrics::describe_histogram!(
        GTID_WAIT_SECONDS,
        "Time reads spent waiting for a GTID on a replica"
    );
    metrics::describe_counter!(
        GTID_FALLBACKS,
        "Reads sent to the primary because no replica had the session's GTID in time"
    );
    metrics::describe_counter!(LOGIN_FAILURES, "Refused client logins");
    metrics::describe_counter!(
        SESSION_PINS,
        "Writes that pinned their session's reads to the primary (pin mode, or a write whose GTID is unknown)"
    );
    metrics::describe_gauge!(MONITOR_FAILURES, "Failed monitor probes in a row, by backend");
    metrics::describe_gauge!(POOL_IDLE, "Backend connections idle in the pool, all backends");
    metrics::describe_gauge!(
        COMMAND_MEMORY,
        "Bytes clients' large commands hold now, against limits.max_command_memory"
    );
    metrics::describe_counter!(
        COMMANDS_REFUSED,
        "Large commands refused (ERROR 1041) because limits.max_command_memory was in use"
    );
    metrics::describe_counter!(
        RULE_REFUSALS,
        "Statements refused by a rule with target = \"reject\" (ERROR 1148)"
    );
    metrics::describe_counter!(
        CONFIG_RELOADS,
        "Configuration reloads (SIGHUP, POST /reload, changed files), by result (applied, refused)"
    );
    metrics::describe_counter!(
        POOL_REUSED,
        "Backend connections taken from the pool instead of opened"
    );
    metrics::describe_counter!(
        POOL_BOUND,
        "Commands after which a session kept a connection instead of giving it back, by reason"
    );
    metrics::describe_gauge!(
        POOL_CONNECTIONS,
        "Connections the proxy's sessions and pool hold to each backend, by state (in_use, idle)"
    );
    metrics::describe_gauge!(
        POOL_WAITING,
        "Statements waiting for a pooled connection, by backend"
    );
    metrics::describe_counter!(
        POOL_TIMEOUTS,
        "Waits for a pooled connection that ended in an error after pool_timeout, by backend"
    );
}

/// Every reason a route can have, for building handles up front.
pub const REASONS: [Reason; 24] = [
    Reason::HintPrimary,
    Reason::HintReplica,
    Reason::RulePrimary,
    Reason::RuleReplica,
    Reason::Transaction,
    Reason::ReadOnlyTransaction,
    Reason::WriteInReadOnlyTransaction,
    Reason::LockedTables,
    Reason::TransactionControl,
    Reason::SessionState,
    Reason::Write,
    Reason::NotPlainRead,
    Reason::Unknown,
    Reason::LastStatement,
    Reason::UserVariables,
    Reason::GlobalVariables,
    Reason::TemporaryTable,
    Reason::AfterWrite,
    Reason::SqlPrepared,
    Reason::Read,
    Reason::NoReplica,
    Reason::HintIgnored,
    Reason::Consistency,
    Reason::PrimaryDown,
];

/// Handles used on the statement path.
pub struct Telemetry {
    pub handle: PrometheusHandle,
    /// Statements by route reason, in [`REASONS`] order.
    routes: Vec<sharded::Counter>,
    pub client_connections: Gauge,
    /// Statement latency per backend index, and the backends' names.
    statement_seconds: Vec<(String, sharded::Histogram)>,
    pub gtid_waits_caught_up: Counter,
    pub gtid_waits_timed_out: Counter,
    /// Reads that needed a GTID no replica was close enough to reach within
    /// the wait timeout: the primary answered without a wait.
    pub gtid_waits_skipped: Counter,
    pub gtid_wait_seconds: Histogram,
    pub gtid_fallbacks: Counter,
    pub login_failures: Counter,
    pub session_pins: Counter,
    pub pool_idle: Gauge,
    pub reloads_applied: Counter,
    pub rule_refusals: Counter,
    pub reloads_refused: Counter,
    /// By [`crate::session::pool::Binding`] in `ALL` order.
    pool_bound: Vec<Counter>,
}

impl Telemetry {
    pub fn new(backend_names: &[String]) -> Telemetry {
        let handle = recorder();
        Telemetry {
            handle,
            routes: REASONS.iter().map(|_| sharded::Counter::default()).collect(),
            client_connections: metrics::gauge!(CLIENT_CONNECTIONS),
            statement_seconds: backend_names
                .iter()
                .map(|n| (n.clone(), sharded::Histogram::default()))
                .collect(),
            gtid_waits_caught_up: metrics::counter!(GTID_WAITS, "result" => "caught_up"),
            gtid_waits_timed_out: metrics::counter!(GTID_WAITS, "result" => "timed_out"),
            gtid_waits_skipped: metrics::counter!(GTID_WAITS, "result" => "skipped"),
            gtid_wait_seconds: metrics::histogram!(GTID_WAIT_SECONDS),
            gtid_fallbacks: metrics::counter!(GTID_FALLBACKS),
            login_failures: metrics::counter!(LOGIN_FAILURES),
            session_pins: metrics::counter!(SESSION_PINS),
            pool_idle: metrics::gauge!(POOL_IDLE),
            reloads_applied: metrics::counter!(CONFIG_RELOADS, "result" => "applied"),
            rule_refusals: metrics::counter!(RULE_REFUSALS),
            reloads_refused: metrics::counter!(CONFIG_RELOADS, "result" => "refused"),
            pool_bound: crate::session::pool::Binding::ALL
                .iter()
                .map(|b| metrics::counter!(POOL_BOUND, "reason" => b.as_str()))
                .collect(),
        }
    }

    /// Counts a routing decision.
    pub fn route(&self, reason: Reason) {
        // REASONS lists the variants in declaration order (checked by a
        // test); a variant missing from it goes uncounted rather than
        // ending the session.
        if let Some(counter) = self.routes.get(reason as usize) {
            counter.add(1);
        }
    }

    /// Statements routed for `reason` so far.
    pub fn routed(&self, reason: Reason) -> u64 {
        self.routes.get(reason as usize).map_or(0, sharded::Counter::get)
    }

    /// Counts a command after which a session kept a connection.
    pub fn pool_bound(&self, reason: crate::session::pool::Binding) {
        self.pool_bound[reason as usize].increment(1);
    }

    /// Records a statement's time on backend `idx`.
    pub fn statement(&self, idx: usize, elapsed: std::time::Duration) {
        if let Some((_, h)) = self.statement_seconds.get(idx) {
            h.record(elapsed);
        }
    }

    /// The Prometheus text of every metric: the recorder's, and the
    /// sharded ones added up.
    pub fn render(&self) -> String {
        for (reason, counter) in REASONS.iter().zip(&self.routes) {
            metrics::counter!(QUERIES, "reason" => reason.as_str()).absolute(counter.get());
        }
        let mut out = self.handle.render();
        render_histogram(
            &mut out,
            STATEMENT_SECONDS,
            "Time from a statement's arrival to its last response byte, by backend",
            self.statement_seconds.iter().map(|(name, h)| (name.as_str(), h.snapshot())),
        );
        out
    }
}

/// Appends one histogram family with a `backend` label in the Prometheus
/// text format.
fn render_histogram<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (&'a str, sharded::HistogramSnapshot)>,
) {
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (backend, s) in series {
        let backend = backend.replace('\\', "\\\\").replace('"', "\\\"");
        for (bound, count) in sharded::DURATION_BOUNDS.iter().zip(&s.cumulative) {
            let _ = writeln!(out, "{name}_bucket{{backend=\"{backend}\",le=\"{bound}\"}} {count}");
        }
        let total = s.cumulative[s.cumulative.len() - 1];
        let _ = writeln!(out, "{name}_bucket{{backend=\"{backend}\",le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{{backend=\"{backend}\"}} {}", s.sum_seconds);
        let _ = writeln!(out, "{name}_count{{backend=\"{backend}\"}} {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_latency_renders_as_a_prometheus_histogram() {
        let t = Telemetry::new(&["replica\"1".to_string()]);
        t.statement(0, std::time::Duration::from_micros(700));
        t.statement(0, std::time::Duration::from_millis(30));
        t.statement(5, std::time::Duration::from_millis(1)); // no such backend
        t.route(Reason::Read);
        let text = t.render();
        let series = |suffix: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{STATEMENT_SECONDS}{suffix}")))
                .map(|l| l.rsplit_once(' ').unwrap().1.to_string())
        };
        assert!(text.contains(&format!("# TYPE {STATEMENT_SECONDS} histogram")));
        assert_eq!(series(r#"_bucket{backend="replica\"1",le="0.0005"}"#).as_deref(), Some("0"));
        assert_eq!(series(r#"_bucket{backend="replica\"1",le="0.001"}"#).as_deref(), Some("1"));
        assert_eq!(series(r#"_bucket{backend="replica\"1",le="0.05"}"#).as_deref(), Some("2"));
        assert_eq!(series(r#"_bucket{backend="replica\"1",le="+Inf"}"#).as_deref(), Some("2"));
        assert_eq!(series(r#"_count{backend="replica\"1"}"#).as_deref(), Some("2"));
        let sum: f64 = series(r#"_sum{backend="replica\"1"}"#).unwrap().parse().unwrap();
        assert!((sum - 0.0307).abs() < 1e-9, "{sum}");
        assert_eq!(t.routed(Reason::Read), 1);
    }

    #[test]
    fn reasons_are_listed_in_declaration_order() {
        for (i, r) in REASONS.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }
}

/// Lets a warning that every statement may repeat during an outage (a
/// backend refusing connections, say) through once a second per call
/// site: a thousand clients must not write a thousand log lines a second.
/// The next line let through says how many were left out.
pub struct Throttle {
    /// Milliseconds (see [`crate::server::ms_since_start`]) before which
    /// lines are left out.
    quiet_until_ms: std::sync::atomic::AtomicU64,
    left_out: std::sync::atomic::AtomicU64,
}

impl Throttle {
    const INTERVAL_MS: u64 = 1000;

    pub const fn new() -> Throttle {
        Throttle {
            quiet_until_ms: std::sync::atomic::AtomicU64::new(0),
            left_out: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Some(lines left out since the last one) when a line may be written
    /// now, None when it is to be left out.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(crate::server::ms_since_start(std::time::Instant::now()))
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let until = self.quiet_until_ms.load(Relaxed);
        let next = now_ms + Self::INTERVAL_MS;
        if now_ms >= until
            && self.quiet_until_ms.compare_exchange(until, next, Relaxed, Relaxed).is_ok()
        {
            return Some(self.left_out.swap(0, Relaxed));
        }
        self.left_out.fetch_add(1, Relaxed);
        None
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::Throttle;

    #[test]
    fn one_line_a_second_and_the_count_of_those_left_out() {
        let t = Throttle::new();
        assert_eq!(t.admit_at(5_000), Some(0));
        assert_eq!(t.admit_at(5_001), None);
        assert_eq!(t.admit_at(5_999), None);
        assert_eq!(t.admit_at(6_000), Some(2));
        assert_eq!(t.admit_at(9_000), Some(0));
    }
}

/// `tracing::warn!` through a [`Throttle`] of the call site's own; the
/// line carries `left_out`, the lines the throttle kept back before it.
macro_rules! warn_throttled {
    ($($arg:tt)+) => {{
        static THROTTLE: $crate::telemetry::Throttle = $crate::telemetry::Throttle::new();
        if let Some(left_out) = THROTTLE.admit() {
            tracing::warn!(left_out, $($arg)+);
        }
    }};
}
pub(crate) use warn_throttled;
