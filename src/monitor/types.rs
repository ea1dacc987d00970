//! The monitor's inputs (backend specs, settings) and its one output, the
//! [`Topology`] snapshot that the rest of the proxy reads without locks.

use std::time::{Duration, SystemTime};

/// What a backend is: the one that takes writes, or one that may take reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Replica,
}

/// One backend as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    /// Unique name; state is carried across reloads by name.
    pub name: String,
    /// `host:port` (`[v6]:port` for IPv6; port 3306 when omitted).
    pub address: String,
    /// The role from the config: the seed before detection has a result,
    /// and the role itself with [`PrimaryDetection::Static`].
    pub configured_role: Role,
    /// Relative share of reads among replicas.
    pub weight: u32,
    /// Per-backend override of [`MonitorSettings::max_lag`].
    pub max_lag: Option<Duration>,
    /// Removed by a reload and kept only so that backend positions stay
    /// stable: never the primary, whatever the server says.
    pub removed: bool,
}

impl BackendSpec {
    /// A backend in `role` with what a config entry gets by default:
    /// weight 1, the global `max_lag`, not removed.
    pub fn new(name: &str, address: &str, role: Role) -> BackendSpec {
        BackendSpec {
            name: name.into(),
            address: address.into(),
            configured_role: role,
            weight: 1,
            max_lag: None,
            removed: false,
        }
    }
}

/// How the primary is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrimaryDetection {
    /// The one healthy server with `read_only = OFF` is the primary.
    #[default]
    ReadOnly,
    /// The configured roles are taken as they are.
    Static,
}

/// What to do with a replica whose lag cannot be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownLag {
    /// It takes no reads.
    #[default]
    Exclude,
    /// It takes reads with its configured weight, unscaled.
    Include,
}

/// How and how often the monitor probes.
#[derive(Clone, PartialEq)]
pub struct MonitorSettings {
    /// Login of the monitor; needs `REPLICATION CLIENT` and, on MariaDB
    /// 10.5.9+, `SLAVE MONITOR` (for `SHOW SLAVE STATUS`).
    pub user: String,
    pub password: String,
    /// Time between two probes of one backend.
    pub interval: Duration,
    /// Bound on connecting and logging in.
    pub connect_timeout: Duration,
    /// Bound on one whole probe (all its queries).
    pub query_timeout: Duration,
    /// A healthy backend goes down after this many failed probes in a row.
    pub fail_after: u32,
    /// A down backend comes back after this many good probes in a row.
    pub recover_after: u32,
    pub primary_detection: PrimaryDetection,
    /// `db.table` of a pt-heartbeat compatible table (column `ts`, written
    /// in UTC: `pt-heartbeat --utc`). Needs `SELECT` on it.
    pub heartbeat_table: Option<String>,
    pub unknown_lag: UnknownLag,
    /// Replicas at or above this lag take no reads (default for every
    /// backend without its own `max_lag`).
    pub max_lag: Duration,
    /// TLS for the probes' connections: `[backend_tls]`, when enabled.
    pub tls: Option<ProbeTls>,
}

/// How the monitor's connections switch to TLS (as the proxy's own backend
/// connections do, from the same `[backend_tls]` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTls {
    /// The CA file the certificates must chain to (only it: no built-in roots).
    pub ca: Option<std::path::PathBuf>,
    /// Check the certificate and its name; off, any certificate is accepted.
    pub verify: bool,
    /// The name certificates must carry instead of each backend's host.
    pub server_name: Option<String>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            user: String::new(),
            password: String::new(),
            interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
            fail_after: 3,
            recover_after: 2,
            primary_detection: PrimaryDetection::ReadOnly,
            heartbeat_table: None,
            unknown_lag: UnknownLag::Exclude,
            max_lag: Duration::from_secs(1),
            tls: None,
        }
    }
}

impl std::fmt::Debug for MonitorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorSettings")
            .field("user", &self.user)
            .field("interval", &self.interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("fail_after", &self.fail_after)
            .field("recover_after", &self.recover_after)
            .field("primary_detection", &self.primary_detection)
            .field("heartbeat_table", &self.heartbeat_table)
            .field("unknown_lag", &self.unknown_lag)
            .field("max_lag", &self.max_lag)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Where a replica's lag figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagSource {
    /// now − max(ts) of the heartbeat table.
    Heartbeat,
    /// The replica had applied the primary's whole GTID position: lag 0.
    Gtid,
    /// `Seconds_Behind_Master` (whole seconds).
    SecondsBehindMaster,
    /// No source gave a figure.
    Unknown,
    /// Not a replica (the primary): lag does not apply.
    None,
}

/// Server family, from `@@version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// Why a backend takes no reads. Also the label of the metric and the
/// reason shown by the admin port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exclusion {
    /// Down, or not yet probed successfully.
    Unhealthy,
    /// The primary takes reads only when the router sends them there.
    Primary,
    /// Writable while another server is the primary (two writable servers).
    WritableConflict,
    /// Replication SQL thread not running.
    SqlThreadStopped,
    /// Replication stopped on an error (`Last_SQL_Error`).
    ReplicationError,
    /// Lag unknown and `unknown_lag = Exclude`.
    LagUnknown,
    /// Lag at or above `max_lag` (or, once excluded, not yet below 80 % of it).
    LagTooHigh,
    /// Configured weight 0.
    ZeroWeight,
    /// Has not yet applied the primary's position as the proxy first read
    /// it (see [`StartBarrier`]).
    BehindStart,
}

impl Exclusion {
    /// Stable lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::Unhealthy => "unhealthy",
            Exclusion::Primary => "primary",
            Exclusion::WritableConflict => "writable_conflict",
            Exclusion::SqlThreadStopped => "sql_thread_stopped",
            Exclusion::ReplicationError => "replication_error",
            Exclusion::LagUnknown => "lag_unknown",
            Exclusion::LagTooHigh => "lag_too_high",
            Exclusion::ZeroWeight => "zero_weight",
            Exclusion::BehindStart => "behind_start",
        }
    }
}

/// What the monitor knows of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendState {
    pub name: String,
    pub address: String,
    /// Up for routing (after hysteresis; false until the first good probe).
    pub healthy: bool,
    /// Detected (or, with static detection, configured) role.
    pub role: Role,
    /// True if the server refuses writes (`read_only`, `super_read_only` or
    /// `innodb_read_only`); None until known.
    pub read_only: Option<bool>,
    /// Replication lag in milliseconds; None for the primary or when unknown.
    pub lag_ms: Option<u64>,
    pub lag_source: LagSource,
    /// MariaDB: `gtid_binlog_pos` of the primary, `gtid_slave_pos` (applied)
    /// of a replica. MySQL: `gtid_executed`.
    pub gtid_position: Option<String>,
    /// None when the server reports no replication (or it could not be read).
    pub sql_thread_running: Option<bool>,
    pub io_thread_running: Option<bool>,
    /// `Last_SQL_Error`, when not empty.
    pub replication_error: Option<String>,
    /// The last probe failure, kept until a probe succeeds.
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// When the last probe (good or bad) finished.
    pub checked_at: Option<SystemTime>,
    /// `@@version` as the server prints it.
    pub server_version: Option<String>,
    pub flavor: Option<Flavor>,
    /// May take reads now (a replica, healthy, replicating, lag within bounds).
    pub eligible: bool,
    /// Share of reads: see [`crate::weighting::effective_weight`]; 0 when
    /// not eligible.
    pub effective_weight: f64,
    /// Why it is not eligible; None when eligible.
    pub exclusion: Option<Exclusion>,
    /// A replica that has applied the [`StartBarrier`]'s position (or
    /// has none to compare); it stays so.
    pub past_start: bool,
    /// A replica whose applied GTID position was found past the primary's
    /// in a domain both have, read after it (the primary's GTID history
    /// was reset, `RESET MASTER`; or the replica holds transactions of its
    /// own there): its position no longer says what it has applied, so it
    /// is excluded as a replication error until a later reading is not
    /// ahead.
    pub ahead_of_primary: bool,
}

impl BackendState {
    /// The state of a backend that has not been probed yet.
    pub fn unknown(spec: &BackendSpec) -> BackendState {
        BackendState {
            name: spec.name.clone(),
            address: spec.address.clone(),
            healthy: false,
            role: spec.configured_role,
            read_only: None,
            lag_ms: None,
            lag_source: LagSource::Unknown,
            gtid_position: None,
            sql_thread_running: None,
            io_thread_running: None,
            replication_error: None,
            last_error: None,
            consecutive_failures: 0,
            consecutive_successes: 0,
            checked_at: None,
            server_version: None,
            flavor: None,
            eligible: false,
            effective_weight: 0.0,
            exclusion: Some(Exclusion::Unhealthy),
            past_start: false,
            ahead_of_primary: false,
        }
    }
}

/// One consistent view of all backends, swapped whole by the monitor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Topology {
    /// In the order of the configured backends.
    pub backends: Vec<BackendState>,
    /// Index into `backends` of the primary (which may be unhealthy).
    pub primary: Option<usize>,
    /// More than one healthy server is writable; the previous primary kept.
    pub writable_conflict: bool,
    /// Incremented by every publication.
    pub generation: u64,
    /// The primary's GTID position as last probed.
    pub primary_gtid: Option<String>,
    pub start_barrier: StartBarrier,
}

/// The record of each client's writes that read-your-writes follows lives
/// in the proxy's memory: a client that wrote through an earlier run of
/// the proxy (restarted since) and reads now has no record. Its write is in
/// the primary's position as this proxy's monitor first reads it, so a
/// replica takes reads only once it has applied that position: the
/// client reads its write after the restart too. Healthy replicas are
/// past it at their first probe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartBarrier {
    /// The primary's position is not known yet: replicas wait.
    #[default]
    Unknown,
    /// The primary's position when first read.
    At(String),
    /// No barrier: the primary was found down before its position could
    /// be read (replicas serve what they have), or it reports none.
    Lifted,
}

impl Topology {
    /// Index of the backend called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|backend| backend.name == name)
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendState> {
        self.backends.iter().find(|backend| backend.name == name)
    }

    /// The primary's state, if there is a primary.
    pub fn primary_state(&self) -> Option<&BackendState> {
        self.primary.and_then(|index| self.backends.get(index))
    }
}
