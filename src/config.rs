//! The TOML configuration: typed structs (unknown keys are errors),
//! durations with units, secrets from the file, the environment or a file,
//! and `validate()` whose messages name the file and the key.

use crate::protocol::auth::Secret;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect.
    pub listeners: Vec<ListenerConfig>,
    /// The admin HTTP port.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Users allowed to log in through the proxy.
    pub users: Vec<UserConfig>,
    /// The servers behind the proxy.
    pub backends: Vec<BackendConfig>,
    /// The monitor's login to the backends (health, role, lag probes).
    #[serde(default)]
    pub monitor: Option<MonitorConfig>,
    /// Read-your-writes.
    #[serde(default)]
    pub consistency: ConsistencyConfig,
    /// Replica choice: lag limits and the fallback.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Routing rules, first match wins (like ProxySQL's query rules).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub limits: Limits,
    /// Log format, levels, session lines and the slow-statement log.
    #[serde(default)]
    pub log: LogConfig,
    /// TLS from the proxy to its backends.
    #[serde(default)]
    pub backend_tls: BackendTlsConfig,
    /// Backend connections kept for later sessions.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Reloading when the file changes.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Server version presented to clients when no backend can be reached
    /// to learn the primary's.
    #[serde(default = "default_server_version")]
    pub fallback_server_version: String,
    /// The folder of the config file: relative paths are resolved from it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this config was loaded from (reloads read it again).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_server_version() -> String {
    "5.5.5-10.11.0-MariaDB-rwsplit".into()
}

/// One client listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `host:port` to accept MySQL clients on (this or `socket`).
    #[serde(default)]
    pub address: Option<String>,
    /// A unix socket path to accept local clients on (this or `address`).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from
    /// a load balancer; its source address is the client's. Connections
    /// without one are refused.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// PEM certificate chain: with `tls_key`, clients may use TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not switch to TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// The consistency mode of sessions on this listener (overrides the global one).
    #[serde(default)]
    pub consistency: Option<ConsistencyMode>,
}

impl ListenerConfig {
    /// How the listener is named in messages and logs: its address, or
    /// `unix:PATH`.
    pub fn name(&self) -> String {
        match (&self.address, &self.socket) {
            (Some(a), _) => a.clone(),
            (None, Some(s)) => format!("unix:{}", s.display()),
            (None, None) => "(no address)".into(),
        }
    }

    /// How a rule names this listener: its address, or its socket path.
    pub fn rule_name(&self) -> String {
        match (&self.address, &self.socket) {
            (Some(a), _) => a.clone(),
            (None, Some(s)) => s.display().to_string(),
            (None, None) => String::new(),
        }
    }

    /// The TLS acceptor of this listener, if it has TLS.
    pub fn tls_acceptor(
        &self,
        base_dir: &Path,
    ) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                crate::tls::acceptor(&base_dir.join(cert), &base_dir.join(key)).map(Some)
            }
            (None, None) if self.require_tls => {
                Err("require_tls needs tls_cert and tls_key".into())
            }
            (None, None) => Ok(None),
            _ => Err("tls_cert and tls_key go together".into()),
        }
    }
}

/// The admin HTTP listener.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` of the admin HTTP port.
    pub address: String,
    /// Bearer token required by every request; mandatory when `address`
    /// is not a loopback address.
    #[serde(default)]
    pub token: Option<String>,
    /// Statement shapes kept by `/digests` (beyond: one "other" entry).
    #[serde(default = "default_max_digests")]
    pub max_digests: usize,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("address", &self.address)
            .field("max_digests", &self.max_digests)
            .finish_non_exhaustive()
    }
}

fn default_max_digests() -> usize {
    5000
}

/// A user allowed through the proxy. Exactly one password source.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// The password in clear text.
    #[serde(default)]
    pub password: Option<String>,
    /// A stored hash: `*` + 40 hex (mysql_native_password, as in
    /// mysql.user) or `sha2:` + 64 hex (SHA256(SHA256(password))).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// This user's consistency mode (overrides the listener's and the global one).
    #[serde(default)]
    pub consistency: Option<ConsistencyMode>,
    /// Sessions this user may have open at once (beyond: ERROR 1203).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// This user's statement time limit (overrides `timeouts.max_query_time`).
    #[serde(default, with = "opt_duration")]
    pub max_query_time: Option<Duration>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The role a backend is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

/// One backend server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    /// `host:port`.
    pub address: String,
    pub role: Role,
    /// Relative share of reads among replicas (0: no reads).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Overrides `routing.max_replication_lag` for this backend.
    #[serde(default, with = "opt_duration")]
    pub max_replication_lag: Option<Duration>,
    /// `"active"` (default), `"drain"` (no new reads; running work
    /// finishes) or `"disabled"`. The admin port can change it until the
    /// next reload.
    #[serde(default)]
    pub state: BackendState,
    /// Connections the proxy may hold to this backend at once (client
    /// sessions' connections; the monitor's are not counted). At the cap,
    /// reads go to another replica and the primary's work waits up to
    /// `timeouts.connect`, then gets ERROR 1040.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Removed by a reload: kept (with no reads, never primary) so that
    /// backend positions stay stable for connected sessions.
    #[serde(skip)]
    pub removed: bool,
}

/// Whether a backend takes new reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    #[default]
    Active,
    Drain,
    Disabled,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Drain => "drain",
            BackendState::Disabled => "disabled",
        }
    }
}

fn default_weight() -> u32 {
    1
}

/// Where a rule sends the statements it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleTarget {
    Primary,
    /// A replica, if the statement is a read (writes always go to the primary).
    Replica,
    /// Nowhere: the client gets ERROR 1148 with the rule's `message`.
    Reject,
}

/// A routing rule: conditions on the statement (a regular expression on
/// its digest text, literals as `?`, whitespace and case folded, or on its
/// raw text) and on its session (user, current database, listener), all of
/// those set having to hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Regex matched against the normalized text (see /digests).
    #[serde(default)]
    pub match_digest: Option<String>,
    /// Regex matched against the statement as sent.
    #[serde(default)]
    pub match_pattern: Option<String>,
    /// The session's user (its login name).
    #[serde(default)]
    pub user: Option<String>,
    /// The session's current database.
    #[serde(default)]
    pub database: Option<String>,
    /// The listener the session came in by: its `address`, or its
    /// `socket` path.
    #[serde(default)]
    pub listener: Option<String>,
    pub target: RuleTarget,
    /// With `target = "reject"`: the error message the client gets.
    #[serde(default)]
    pub message: Option<String>,
    /// Compiled at load time.
    #[serde(skip)]
    pub regex: Option<regex::Regex>,
}

/// What a rule may ask of a statement's session.
#[derive(Debug, Clone, Copy)]
pub struct RuleSubject<'a> {
    pub user: &'a [u8],
    pub database: Option<&'a [u8]>,
    pub listener: &'a str,
}

impl RuleConfig {
    fn compile(&mut self) -> Result<(), String> {
        let pattern = match (&self.match_digest, &self.match_pattern) {
            (Some(d), None) => Some(("match_digest", d)),
            (None, Some(p)) => Some(("match_pattern", p)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(
                    "match_pattern: set at most one of match_digest and match_pattern".into()
                );
            }
        };
        let Some((key, source)) = pattern else {
            if self.user.is_none() && self.database.is_none() && self.listener.is_none() {
                return Err("target: a rule needs a condition: match_digest, match_pattern, \
                            user, database or listener"
                    .into());
            }
            return Ok(());
        };
        let re = regex::RegexBuilder::new(source)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("{key}: bad regex: {e}"))?;
        self.regex = Some(re);
        Ok(())
    }

    /// Whether this rule matches a statement (raw text and, lazily, its
    /// normalized text, worked out once for all the rules that ask) of the
    /// session `who`.
    pub fn matches<'d>(
        &self,
        sql: &str,
        who: RuleSubject<'_>,
        digest_text: &dyn Fn() -> &'d str,
    ) -> bool {
        let session_matches = self.user.as_ref().is_none_or(|u| u.as_bytes() == who.user)
            && self.database.as_ref().is_none_or(|d| Some(d.as_bytes()) == who.database)
            && self.listener.as_ref().is_none_or(|l| l == who.listener);
        if !session_matches {
            return false;
        }
        match &self.regex {
            None => true,
            Some(re) if self.match_digest.is_some() => re.is_match(digest_text()),
            Some(re) => re.is_match(sql),
        }
    }
}

/// The monitor's credentials and schedule.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    pub user: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// Time between probes of each backend.
    #[serde(default = "default_monitor_interval", with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_probe_timeout", with = "duration")]
    pub connect_timeout: Duration,
    #[serde(default = "default_probe_timeout", with = "duration")]
    pub query_timeout: Duration,
    /// A backend is down after this many failed probes in a row.
    #[serde(default = "default_fail_after")]
    pub fail_after: u32,
    /// A down backend is up again after this many good probes in a row.
    #[serde(default = "default_recover_after")]
    pub recover_after: u32,
    /// `"read_only"`: the writable server is the primary (follows
    /// failovers); `"static"`: the configured roles.
    #[serde(default)]
    pub primary_detection: PrimaryDetectionConfig,
    /// A pt-heartbeat table (`db.table`, column `ts`, written in UTC).
    #[serde(default)]
    pub heartbeat_table: Option<String>,
    /// `"exclude"`: a replica whose lag is unknown takes no reads;
    /// `"include"`: it takes reads at its full weight.
    #[serde(default)]
    pub unknown_lag: UnknownLagConfig,
}

impl std::fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("user", &self.user)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryDetectionConfig {
    #[default]
    ReadOnly,
    Static,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownLagConfig {
    #[default]
    Exclude,
    Include,
}

/// How a session's reads relate to its own writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyMode {
    /// Plain read/write split: reads may be stale.
    Eventual,
    /// After a write, reads go to the primary for `pin_for`.
    Pin,
    /// After a write, reads go to a replica that has the write's GTID
    /// (waiting for it there, up to `gtid_wait_timeout`), else the primary.
    #[default]
    Gtid,
    /// Every read waits for the primary's latest GTID: causal across
    /// sessions and proxy instances.
    GtidGlobal,
}

impl ConsistencyMode {
    pub fn parse(s: &str) -> Option<ConsistencyMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eventual" => Some(ConsistencyMode::Eventual),
            "pin" => Some(ConsistencyMode::Pin),
            "gtid" => Some(ConsistencyMode::Gtid),
            "gtid_global" => Some(ConsistencyMode::GtidGlobal),
            _ => None,
        }
    }
}

/// Read-your-writes settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyConfig {
    /// The default mode (users and listeners may override it).
    #[serde(default)]
    pub mode: ConsistencyMode,
    /// How long `pin` keeps reads on the primary after a write: a duration,
    /// or `"session"` for the rest of the session. `gtid` also uses it when
    /// a write's GTID is unknown.
    /// `None` means for the rest of the session.
    #[serde(default = "default_pin_for", with = "pin_for")]
    pub pin_for: Option<Duration>,
    /// The longest a read waits on a replica for a GTID before it runs on
    /// the primary instead.
    #[serde(default = "default_gtid_wait", with = "duration")]
    pub gtid_wait_timeout: Duration,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        ConsistencyConfig {
            mode: ConsistencyMode::default(),
            pin_for: default_pin_for(),
            gtid_wait_timeout: default_gtid_wait(),
        }
    }
}

fn default_pin_for() -> Option<Duration> {
    Some(Duration::from_secs(1))
}

/// Serde adapter for `pin_for`: a duration, or `"session"` (None).
mod pin_for {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "session" {
            return Ok(None);
        }
        humantime::parse_duration(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!("expected a duration or \"session\", got {s:?}: {e}"))
        })
    }
}
fn default_gtid_wait() -> Duration {
    Duration::from_millis(500)
}

/// Where reads go when no replica may take them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    #[default]
    Primary,
    Error,
}

/// Replica choice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// A replica this far behind (or more) takes no reads; below it, its
    /// weight is scaled down by its lag (see the config reference).
    #[serde(default = "default_max_lag", with = "duration")]
    pub max_replication_lag: Duration,
    /// `"primary"`: reads go to the primary when no replica is eligible;
    /// `"error"`: they fail with a clear error.
    #[serde(default)]
    pub fallback: Fallback,
    /// A session's reads stay on the replica it read from last while that
    /// replica has not taken more than its share (by a few dozen reads);
    /// false (the default): every read is spread on its own.
    #[serde(default)]
    pub replica_affinity: bool,
    /// How many reads a replica's count may run ahead of its weighted
    /// share while the replica with the fewest reads in flight takes each
    /// read (see [`crate::weighting::LOAD_BAND`], the default). Wider: reads
    /// follow the replicas' queues more and their weights less closely.
    #[serde(default = "default_load_band")]
    pub load_band: f64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_replication_lag: default_max_lag(),
            fallback: Fallback::default(),
            replica_affinity: false,
            load_band: default_load_band(),
        }
    }
}

fn default_load_band() -> f64 {
    crate::weighting::LOAD_BAND
}

fn default_max_lag() -> Duration {
    Duration::from_secs(1)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_fail_after() -> u32 {
    3
}
fn default_recover_after() -> u32 {
    2
}

impl Config {
    /// The monitor's view of the backends.
    pub fn monitor_specs(&self) -> Vec<crate::monitor::BackendSpec> {
        self.backends
            .iter()
            .map(|b| crate::monitor::BackendSpec {
                name: b.name.clone(),
                address: b.address.clone(),
                configured_role: match b.role {
                    Role::Primary => crate::monitor::Role::Primary,
                    Role::Replica => crate::monitor::Role::Replica,
                },
                weight: b.weight,
                max_lag: b.max_replication_lag,
                removed: b.removed,
            })
            .collect()
    }

    /// The monitor's settings, if a monitor is configured.
    pub fn monitor_settings(&self) -> Option<crate::monitor::MonitorSettings> {
        let m = self.monitor.as_ref()?;
        let password = match (&m.password, &m.password_env) {
            (Some(p), _) => p.clone(),
            (None, Some(var)) => std::env::var(var).unwrap_or_default(),
            (None, None) => String::new(),
        };
        Some(crate::monitor::MonitorSettings {
            user: m.user.clone(),
            password,
            interval: m.interval,
            connect_timeout: m.connect_timeout,
            query_timeout: m.query_timeout,
            fail_after: m.fail_after.max(1),
            recover_after: m.recover_after.max(1),
            primary_detection: match m.primary_detection {
                PrimaryDetectionConfig::ReadOnly => crate::monitor::PrimaryDetection::ReadOnly,
                PrimaryDetectionConfig::Static => crate::monitor::PrimaryDetection::Static,
            },
            heartbeat_table: m.heartbeat_table.clone(),
            unknown_lag: match m.unknown_lag {
                UnknownLagConfig::Exclude => crate::monitor::UnknownLag::Exclude,
                UnknownLagConfig::Include => crate::monitor::UnknownLag::Include,
            },
            max_lag: self.routing.max_replication_lag,
            tls: self.backend_tls.enabled.then(|| crate::monitor::ProbeTls {
                ca: self.backend_tls.ca.as_ref().map(|ca| self.base_dir.join(ca)),
                verify: self.backend_tls.verify,
                server_name: self.backend_tls.server_name.clone(),
            }),
        })
    }
}

fn default_monitor_interval() -> Duration {
    Duration::from_millis(500)
}

/// Timeouts, each a duration with its unit (`"2s"`, `"500ms"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting and logging in to a backend.
    #[serde(default = "default_connect", with = "duration")]
    pub connect: Duration,
    /// A client must finish its login within this time.
    #[serde(default = "default_handshake", with = "duration")]
    pub client_handshake: Duration,
    /// How long a replica that refused a connection is avoided.
    #[serde(default = "default_backoff", with = "duration")]
    pub backend_retry: Duration,
    /// On SIGTERM/SIGINT, how long running statements may finish.
    #[serde(default = "default_shutdown", with = "duration")]
    pub shutdown: Duration,
    /// A statement running longer is killed on its backend (KILL QUERY)
    /// and the client gets ERROR 1969; `"0s"` = no limit.
    #[serde(default, with = "duration")]
    pub max_query_time: Duration,
    /// A client idle longer than this between commands is disconnected, as
    /// a server does past its `wait_timeout` (which no longer reaches
    /// clients of the proxy: their backend connections are the proxy's);
    /// `"0s"` = never.
    #[serde(default, with = "duration")]
    pub client_idle: Duration,
    /// A TCP client whose host stops answering (powered off, cut off the
    /// network) is disconnected about this long after its last
    /// acknowledgement, and the session's open transaction rolled back
    /// with its backend connection: by keepalive probes when the
    /// connection is quiet, by the kernel's user timeout when a reply
    /// waits (so a client that stops reading a reply is disconnected too);
    /// `"0s"` = the system's settings.
    #[serde(default = "default_client_keepalive", with = "duration")]
    pub client_keepalive: Duration,
}

fn default_client_keepalive() -> Duration {
    Duration::from_secs(120)
}

fn default_shutdown() -> Duration {
    Duration::from_secs(30)
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: default_connect(),
            client_handshake: default_handshake(),
            backend_retry: default_backoff(),
            shutdown: default_shutdown(),
            max_query_time: Duration::ZERO,
            client_idle: Duration::ZERO,
            client_keepalive: default_client_keepalive(),
        }
    }
}

fn default_connect() -> Duration {
    Duration::from_secs(2)
}
fn default_handshake() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff() -> Duration {
    Duration::from_secs(2)
}

/// Reloading without a signal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often the config file and the certificate, key, CA and password
    /// files it names are read for changes; a change that stays the same
    /// for one interval is reloaded as SIGHUP would. `"0s"` = only SIGHUP
    /// and `POST /reload`.
    #[serde(default = "default_watch", with = "duration")]
    pub watch: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig { watch: default_watch() }
    }
}

fn default_watch() -> Duration {
    Duration::from_secs(2)
}

/// Backend connections shared between client sessions (kept per worker
/// thread: a connection serves sessions of the thread that opened it).
///
/// With `multiplex`, a session gives its connections back after every
/// command unless state lives on them (a transaction, temporary tables,
/// locks, user variables, SQL-level prepared statements, open cursors...);
/// with only `reuse`, it gives them back when it ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Share backend connections between sessions statement by statement.
    pub multiplex: bool,
    /// Keep connections (COM_RESET_CONNECTION, then kept) instead of
    /// closing them when a session ends (implied by `multiplex`).
    pub reuse: bool,
    /// With `multiplex`: connections the proxy opens to each backend at
    /// most, idle ones included (a backend's own `max_connections`, when
    /// lower, wins); 0 = no limit.
    pub max_connections_per_backend: usize,
    /// How long a statement waits for a free connection when its backend's
    /// connections are all in use, before ERROR 1040.
    #[serde(with = "duration")]
    pub pool_timeout: Duration,
    /// Idle connections per worker thread at most (the oldest goes first);
    /// with `multiplex`, the per-backend limit bounds them instead.
    pub max_idle: usize,
    /// An idle connection unused this long is closed.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// With `multiplex`: idle connections per backend and worker thread
    /// that `idle_timeout` leaves open (the pool does not shrink below it
    /// once it has grown; connections are opened with a client's login, so
    /// none are opened ahead of clients).
    pub min_idle: usize,
    /// A connection older than this is closed instead of being reused.
    #[serde(with = "duration")]
    pub max_lifetime: Duration,
}

impl PoolConfig {
    /// Whether connections outlive the session that opened them.
    pub fn keeps_connections(&self) -> bool {
        self.reuse || self.multiplex
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            multiplex: false,
            reuse: false,
            max_connections_per_backend: 100,
            pool_timeout: Duration::from_secs(5),
            max_idle: 64,
            idle_timeout: Duration::from_secs(60),
            min_idle: 0,
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

/// TLS from the proxy to the backends: client sessions' connections, and
/// the monitor's probes (as `monitor::ProbeTls`, the monitor's own copy of
/// these settings, so that it does not depend on the config types).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTlsConfig {
    /// Switch every backend connection to TLS (a server that does not
    /// offer it is an error).
    #[serde(default)]
    pub enabled: bool,
    /// PEM file of the CA(s) the backends' certificates must chain to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Verify the certificate and that it names the backend's host (or
    /// `server_name`). On by default; off encrypts without authenticating.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// The name the certificates must carry, instead of each backend's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl BackendTlsConfig {
    /// The connector, when enabled.
    pub fn connector(
        &self,
        base_dir: &Path,
    ) -> Result<Option<crate::backend_tls::BackendTls>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let ca = self.ca.as_ref().map(|ca| base_dir.join(ca));
        crate::backend_tls::BackendTls::new(ca.as_deref(), self.verify, self.server_name.clone())
            .map(Some)
            .map_err(|e| format!("backend_tls.{e}"))
    }
}

/// How the log is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging. `format` and `level` are read at start (RUST_LOG, when set,
/// overrides `level`); the others apply at the next reload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one line per event) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// Levels per module, as tracing's filter directives:
    /// `"info"`, `"info,rwsplit::monitor=debug"`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// One info line per session start and end, with the session's
    /// counters (otherwise those lines are debug).
    #[serde(default = "default_true")]
    pub sessions: bool,
    /// Statements that take at least this long are logged (warn, with
    /// their normalized text); `"0s"` turns the slow-statement log off.
    #[serde(default = "default_slow_statement", with = "duration")]
    pub slow_statement: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_log_level(),
            sessions: true,
            slow_statement: default_slow_statement(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}
fn default_true() -> bool {
    true
}
fn default_slow_statement() -> Duration {
    Duration::from_secs(1)
}

/// Size limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest command a client may send (like max_allowed_packet).
    #[serde(default = "default_max_packet", with = "size")]
    pub max_packet: usize,
    /// Memory all clients' large commands (over 1 MiB) may hold at once; a
    /// command that would take more ends its session with ERROR 1041.
    #[serde(default = "default_max_command_memory", with = "size")]
    pub max_command_memory: usize,
    /// Client connections beyond this get ERROR 1040 (Too many connections).
    #[serde(default = "default_max_clients")]
    pub max_client_connections: usize,
    /// After a failed login, an address's next password checks wait this
    /// long, doubling with each further failure; `"0s"` turns it off.
    #[serde(default = "default_login_delay", with = "duration")]
    pub failed_login_delay: Duration,
    /// The longest such wait.
    #[serde(default = "default_login_delay_max", with = "duration")]
    pub failed_login_delay_max: Duration,
    /// Loopback clients are slowed down too (they are exempt by default).
    #[serde(default)]
    pub failed_login_delay_loopback: bool,
    /// Prepared statements one session may hold (beyond: ERROR 1461). The
    /// proxy keeps each one's text, so this bounds a session's memory.
    #[serde(default = "default_max_prepared")]
    pub max_prepared_statements: usize,
    /// Bytes of statement text one session keeps to run again on other
    /// backend connections: its prepared statements' and its SETs'.
    /// A prepare beyond it gets ERROR 1041; SETs beyond it keep the
    /// session's reads on the primary.
    #[serde(default = "default_max_statement_memory", with = "size")]
    pub max_statement_memory: usize,
}

fn default_max_statement_memory() -> usize {
    64 << 20
}

fn default_max_prepared() -> usize {
    4096
}

fn default_login_delay() -> Duration {
    Duration::from_millis(200)
}
fn default_login_delay_max() -> Duration {
    Duration::from_secs(5)
}

fn default_max_clients() -> usize {
    10_000
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet: default_max_packet(),
            max_command_memory: default_max_command_memory(),
            max_client_connections: default_max_clients(),
            failed_login_delay: default_login_delay(),
            failed_login_delay_max: default_login_delay_max(),
            failed_login_delay_loopback: false,
            max_prepared_statements: default_max_prepared(),
            max_statement_memory: default_max_statement_memory(),
        }
    }
}

fn default_max_packet() -> usize {
    64 << 20
}

fn default_max_command_memory() -> usize {
    1 << 30
}

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError { file: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut config = Config::parse(&text).map_err(err)?;
        config.compile_rules().map_err(err)?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.source = Some(path.to_path_buf());
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(err(problems.join("; ")));
        }
        Ok(config)
    }

    /// The files a load of this config reads: the config file itself and
    /// the certificate, key, CA and password files it names.
    pub fn files_read(&self) -> Vec<PathBuf> {
        let named = self
            .listeners
            .iter()
            .flat_map(|l| [&l.tls_cert, &l.tls_key])
            .chain(self.users.iter().map(|u| &u.password_file))
            .chain([&self.backend_tls.ca])
            .flatten()
            .map(|f| self.base_dir.join(f));
        self.source.iter().cloned().chain(named).collect()
    }

    /// Parses TOML text (no validation; rules compiled).
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        config.compile_rules()?;
        Ok(config)
    }

    fn compile_rules(&mut self) -> Result<(), String> {
        for (i, rule) in self.rules.iter_mut().enumerate() {
            rule.compile().map_err(|e| format!("rules[{i}].{e}"))?;
        }
        Ok(())
    }

    /// Every problem found, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listeners.is_empty() {
            problems.push("listeners: at least one listener is required".to_string());
        }
        let keepalive = self.timeouts.client_keepalive;
        if !keepalive.is_zero() && keepalive < Duration::from_secs(2) {
            problems.push(format!(
                "timeouts.client_keepalive: {} is too short; \"0s\" (off) or at least 2s",
                humantime::format_duration(keepalive)
            ));
        }
        let watch = self.reload.watch;
        if !watch.is_zero() && watch < Duration::from_millis(100) {
            problems.push(format!(
                "reload.watch: {} is too short; \"0s\" (off) or at least 100ms",
                humantime::format_duration(watch)
            ));
        }
        let mut seen = HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if l.address.is_some() == l.socket.is_some() {
                problems.push(format!("listeners[{i}]: set exactly one of address and socket"));
            } else if !seen.insert(l.name()) {
                let key = if l.address.is_some() { "address" } else { "socket" };
                problems.push(format!("listeners[{i}].{key}: duplicate listener {}", l.name()));
            }
            if let Err(e) = l.tls_acceptor(&self.base_dir) {
                problems.push(format!("listeners[{i}]: {e}"));
            }
        }
        if let Some(a) = &self.admin {
            let loopback = a
                .address
                .parse::<std::net::SocketAddr>()
                .map(|s| s.ip().is_loopback())
                .unwrap_or(a.address.starts_with("localhost:"));
            if !loopback && a.token.as_deref().unwrap_or("").is_empty() {
                problems.push(format!(
                    "admin.token: required because admin.address {} is not a loopback address",
                    a.address
                ));
            }
        }
        if let Some(m) = &self.monitor {
            match (&m.password, &m.password_env) {
                (Some(_), Some(_)) => problems
                    .push("monitor: set one of password and password_env, not both".to_string()),
                (None, Some(var)) if std::env::var(var).is_err() => problems
                    .push(format!("monitor.password_env: environment variable {var} is not set")),
                _ => {}
            }
        }
        let band = self.routing.load_band;
        if !(band.is_finite() && band >= 0.0) {
            problems.push(format!(
                "routing.load_band: expected a number of reads, 0 or more, got {band}"
            ));
        }
        let primaries = self.backends.iter().filter(|b| b.role == Role::Primary).count();
        if primaries != 1 {
            problems.push(format!(
                "backends: exactly one backend needs role = \"primary\", found {primaries}"
            ));
        }
        let mut names = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            if !names.insert(&b.name) {
                problems.push(format!("backends[{i}].name: duplicate backend name {:?}", b.name));
            }
            if crate::net::split_address(&b.address).is_none() {
                problems.push(format!(
                    "backends[{i}].address: expected host:port, got {:?}",
                    b.address
                ));
            }
        }
        if let Err(e) = self.backend_tls.connector(&self.base_dir) {
            problems.push(e);
        }
        if self.limits.max_command_memory < self.limits.max_packet {
            problems.push(format!(
                "limits.max_command_memory: {} bytes is less than limits.max_packet ({} bytes): \
                 a command of the largest size could never be read",
                self.limits.max_command_memory, self.limits.max_packet
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            problems.push(format!("log.level: {e}"));
        }
        let mut users = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if !users.insert(&u.name) {
                problems.push(format!("users[{i}].name: duplicate user {:?}", u.name));
            }
            if let Err(e) = u.secret(&self.base_dir) {
                problems.push(format!("users[{i}] ({}): {e}", u.name));
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.message.is_some() && r.target != RuleTarget::Reject {
                problems.push(format!(
                    "rules[{i}].message: only a rule with target = \"reject\" has one"
                ));
            }
            if let Some(u) = &r.user
                && !self.users.iter().any(|x| x.name == *u)
            {
                problems.push(format!("rules[{i}].user: no user {u:?} in [[users]]"));
            }
            if let Some(l) = &r.listener
                && !self.listeners.iter().any(|x| x.rule_name() == *l)
            {
                problems.push(format!(
                    "rules[{i}].listener: no listener {l:?} (an address or socket in [[listeners]])"
                ));
            }
        }
        problems
    }

    /// The primary backend's index.
    pub fn primary(&self) -> usize {
        self.backends.iter().position(|b| b.role == Role::Primary && !b.removed).unwrap_or(0)
    }

    /// Keeps the backend positions of `old` in this (reloaded) config:
    /// backends that stay keep their index, new ones are appended, and
    /// removed ones remain as tombstones (no reads, never primary), so the
    /// connections sessions hold stay indexed correctly.
    pub fn keep_backend_positions(mut self, old: &Config) -> Config {
        let mut rest = std::mem::take(&mut self.backends);
        let mut merged = Vec::with_capacity(old.backends.len() + rest.len());
        for o in &old.backends {
            match rest.iter().position(|n| n.name == o.name) {
                Some(pos) => merged.push(rest.remove(pos)),
                None => merged.push(BackendConfig {
                    role: Role::Replica,
                    weight: 0,
                    removed: true,
                    ..o.clone()
                }),
            }
        }
        merged.extend(rest);
        self.backends = merged;
        self
    }

    /// Looks up a user by name.
    pub fn user(&self, name: &[u8]) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }
}

impl UserConfig {
    /// The user's secret from whichever source is configured.
    pub fn secret(&self, base_dir: &Path) -> Result<Secret, String> {
        let sources = [
            self.password.is_some(),
            self.password_hash.is_some(),
            self.password_env.is_some(),
            self.password_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(
                "set exactly one of password, password_hash, password_env, password_file".into()
            );
        }
        if let Some(p) = &self.password {
            return Ok(Secret::Plain(p.clone()));
        }
        if let Some(h) = &self.password_hash {
            return Secret::parse_hash(h).ok_or_else(|| {
                "password_hash: expected '*' + 40 hex digits or 'sha2:' + 64 hex digits".to_string()
            });
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(Secret::Plain)
                .map_err(|_| format!("password_env: environment variable {var} is not set"));
        }
        let file = base_dir.join(self.password_file.as_ref().expect("one source is set"));
        std::fs::read_to_string(&file)
            .map(|s| Secret::Plain(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("password_file: cannot read {}: {e}", file.display()))
    }
}

/// Keys whose values are secrets: never repeated in a message.
const SECRET_KEYS: [&str; 3] = ["password", "password_hash", "token"];

/// A TOML error as a line: where and what, without the offending line
/// itself (which toml's own message repeats), since that line may hold a
/// password; on a line setting a secret key, without the message either
/// (it may quote the value).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(start) = e.span().map(|s| s.start) else {
        return format!("TOML parse error: {}", e.message().trim_end());
    };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text.split('=').next().unwrap_or("").trim().trim_matches('"');
    let message = if SECRET_KEYS.contains(&key) {
        format!("the value of {key} is not valid here (not shown: it is a secret)")
    } else {
        e.message().trim_end().to_string()
    };
    format!("TOML parse error at line {line}, column {column}: {message}")
}

/// Serde adapter for durations written with units.
mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// Serde adapter for optional durations.
mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            humantime::parse_duration(&s)
                .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
        })
        .transpose()
    }
}

/// Serde adapter for sizes written with units (`"16MiB"`, `"512KiB"`, `"1GB"`).
mod size {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_size(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid size {s:?}")))
    }
}

/// Parses a size with an optional unit: B, KiB, MiB, GiB, KB, MB, GB.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[listeners]]
        address = "127.0.0.1:6450"
        [[users]]
        name = "app"
        password = "app"
        [[backends]]
        name = "primary"
        address = "127.0.0.1:3306"
        role = "primary"
    "#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert!(c.validate().is_empty());
        assert_eq!(c.timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.limits.max_packet, 64 << 20);
        assert_eq!(c.backends[0].weight, 1);
    }

    #[test]
    fn a_pool_section_keeps_the_defaults_of_keys_it_leaves_out() {
        let c =
            Config::parse(&format!("{MINIMAL}\n[pool]\nmultiplex = true\nidle_timeout = \"5s\"\n"))
                .unwrap();
        assert!(c.pool.multiplex && c.pool.keeps_connections());
        assert_eq!(c.pool.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.pool.max_connections_per_backend, 100);
        assert_eq!(c.pool.pool_timeout, Duration::from_secs(5));
        assert_eq!(c.pool.max_lifetime, Duration::from_secs(3600));
        let err = Config::parse(&format!("{MINIMAL}\n[pool]\nmultiplx = true\n")).unwrap_err();
        assert!(err.contains("multiplx"), "{err}");
    }

    #[test]
    fn command_memory_must_hold_the_largest_command() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.limits.max_command_memory, 1 << 30);
        let text = format!(
            "{MINIMAL}\n[limits]\nmax_packet = \"64MiB\"\nmax_command_memory = \"32MiB\"\n"
        );
        let problems = Config::parse(&text).unwrap().validate();
        assert!(problems.iter().any(|p| p.contains("limits.max_command_memory")), "{problems:?}");
    }

    #[test]
    fn client_keepalive_is_off_or_at_least_two_seconds() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.timeouts.client_keepalive, Duration::from_secs(120));
        let with = |value: &str| {
            let text = format!("{MINIMAL}\n[timeouts]\nclient_keepalive = \"{value}\"\n");
            Config::parse(&text).unwrap().validate()
        };
        assert!(with("0s").is_empty(), "{:?}", with("0s"));
        assert!(with("2s").is_empty(), "{:?}", with("2s"));
        let problems = with("500ms");
        assert!(problems.iter().any(|p| p.contains("timeouts.client_keepalive")), "{problems:?}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = Config::parse(&format!("{MINIMAL}\n[timeouts]\nconect = \"1s\"\n")).unwrap_err();
        assert!(err.contains("conect"), "{err}");
    }

    #[test]
    fn durations_and_sizes_need_units() {
        let c = Config::parse(&format!(
            "{MINIMAL}\n[timeouts]\nconnect = \"250ms\"\n[limits]\nmax_packet = \"16MiB\"\n"
        ))
        .unwrap();
        assert_eq!(c.timeouts.connect, Duration::from_millis(250));
        assert_eq!(c.limits.max_packet, 16 << 20);
        assert!(Config::parse(&format!("{MINIMAL}\n[timeouts]\nconnect = \"fast\"\n")).is_err());
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1 parsec"), None);
    }

    #[test]
    fn parse_errors_say_where_but_never_repeat_a_secret() {
        for (text, line) in [
            ("[[users]]\nname = \"a\"\npassword = \"s3cret-one\n", 3),
            ("[[users]]\nname = \"a\"\npassword = 12345678 9\n", 3),
            ("[admin]\naddress = \"127.0.0.1:1\"\ntoken = s3cret-one\n", 3),
        ] {
            let err = Config::parse(&format!("{MINIMAL}\n{text}")).unwrap_err();
            let line = MINIMAL.lines().count() + line;
            assert!(err.starts_with(&format!("TOML parse error at line {line}, ")), "{err}");
            assert!(!err.contains("s3cret") && !err.contains("12345678"), "{err}");
        }
        let err = Config::parse(&format!("{MINIMAL}\n[timeouts]\nconect = \"2s\"\n")).unwrap_err();
        assert!(err.contains("unknown field `conect`"), "other messages stay: {err}");
    }

    #[test]
    fn bad_rule_regex_is_reported_with_its_key() {
        let err = Config::parse(&format!(
            "{MINIMAL}\n[[rules]]\nmatch_digest = \"(\"\ntarget = \"primary\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("rules[0].match_digest: bad regex"), "{err}");
    }

    #[test]
    fn rule_matches_digest_or_raw_text() {
        let c = Config::parse(&format!(
            "{MINIMAL}\n[[rules]]\nmatch_digest = \"^select \\\\* from reports\"\ntarget = \"primary\"\n[[rules]]\nmatch_pattern = \"/\\\\* batch \\\\*/\"\ntarget = \"replica\"\n"
        ))
        .unwrap();
        let digest = || "select * from reports where id = ?";
        let who = RuleSubject { user: b"app", database: None, listener: "127.0.0.1:6450" };
        assert!(c.rules[0].matches("SELECT * FROM reports WHERE id = 5", who, &digest));
        assert!(c.rules[1].matches("SELECT 1 /* batch */", who, &|| ""));
        assert!(!c.rules[1].matches("SELECT 1", who, &|| ""));
    }

    #[test]
    fn rule_conditions_on_the_session_must_all_hold() {
        let c = Config::parse(&format!(
            "{MINIMAL}\n[[users]]\nname = \"report\"\npassword = \"r\"\n\
             [[listeners]]\nsocket = \"/run/rw.sock\"\n\
             [[rules]]\nuser = \"report\"\ntarget = \"replica\"\n\
             [[rules]]\nlistener = \"/run/rw.sock\"\ndatabase = \"billing\"\n\
             match_pattern = \"^select\"\ntarget = \"primary\"\n"
        ))
        .unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let none = &|| "";
        let app =
            RuleSubject { user: b"app", database: Some(b"billing"), listener: "127.0.0.1:6450" };
        let report = RuleSubject { user: b"report", ..app };
        assert!(
            c.rules[0].matches("UPDATE t SET a = 1", report, none),
            "no pattern: any statement"
        );
        assert!(!c.rules[0].matches("SELECT 1", app, none));
        let local = RuleSubject { listener: "/run/rw.sock", ..app };
        assert!(c.rules[1].matches("SELECT 1", local, none));
        assert!(!c.rules[1].matches("SELECT 1", app, none), "another listener");
        assert!(!c.rules[1].matches("SELECT 1", RuleSubject { database: None, ..local }, none));
        assert!(!c.rules[1].matches(
            "SELECT 1",
            RuleSubject { database: Some(b"bill"), ..local },
            none
        ));
        assert!(!c.rules[1].matches("DELETE FROM t", local, none), "the pattern too");
    }

    #[test]
    fn rules_without_a_condition_or_naming_nothing_configured_are_refused() {
        let err =
            Config::parse(&format!("{MINIMAL}\n[[rules]]\ntarget = \"primary\"\n")).unwrap_err();
        assert!(err.contains("rules[0].target: a rule needs a condition"), "{err}");
        let err = Config::parse(&format!(
            "{MINIMAL}\n[[rules]]\nmatch_digest = \"a\"\nmatch_pattern = \"b\"\ntarget = \"primary\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("rules[0].match_pattern: set at most one"), "{err}");
        let c = Config::parse(&format!(
            "{MINIMAL}\n[[rules]]\nuser = \"nobody\"\ntarget = \"primary\"\n\
             [[rules]]\nlistener = \"127.0.0.1:9\"\ntarget = \"primary\"\n"
        ))
        .unwrap();
        let problems = c.validate().join("; ");
        assert!(problems.contains("rules[0].user: no user \"nobody\""), "{problems}");
        assert!(problems.contains("rules[1].listener: no listener \"127.0.0.1:9\""), "{problems}");
        let c = Config::parse(&format!(
            "{MINIMAL}\n[[rules]]\nuser = \"app\"\ntarget = \"primary\"\nmessage = \"no\"\n\
             [[rules]]\nmatch_pattern = \"x\"\ntarget = \"reject\"\nmessage = \"no\"\n"
        ))
        .unwrap();
        let messages = c.validate();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with("rules[0].message: only a rule with target"),
            "{messages:?}"
        );
    }

    #[test]
    fn reload_keeps_backend_positions_and_tombstones_removed_ones() {
        let two = format!(
            "{MINIMAL}\n[[backends]]\nname = \"r1\"\naddress = \"127.0.0.1:3307\"\nrole = \"replica\"\n"
        );
        let old = Config::parse(&two).unwrap();
        let new = Config::parse(&format!(
            "{}\n[[backends]]\nname = \"r2\"\naddress = \"127.0.0.1:3308\"\nrole = \"replica\"\n",
            MINIMAL.replace("name = \"primary\"", "name = \"p2\"")
        ))
        .unwrap()
        .keep_backend_positions(&old);
        let names: Vec<_> = new.backends.iter().map(|b| (b.name.as_str(), b.removed)).collect();
        assert_eq!(names, vec![("primary", true), ("r1", true), ("p2", false), ("r2", false)]);
        assert_eq!(new.primary(), 2);
        assert_eq!(new.backends[0].weight, 0);
    }

    #[test]
    fn load_band_defaults_to_the_builtin_band_and_must_be_a_count() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.routing.load_band, crate::weighting::LOAD_BAND);
        let c = Config::parse(&format!("{MINIMAL}\n[routing]\nload_band = 64\n")).unwrap();
        assert_eq!(c.routing.load_band, 64.0);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let c = Config::parse(&format!("{MINIMAL}\n[routing]\nload_band = -1\n")).unwrap();
        assert!(c.validate().iter().any(|p| p.contains("routing.load_band")), "{:?}", c.validate());
    }

    #[test]
    fn two_primaries_are_reported() {
        let text = format!(
            "{MINIMAL}\n[[backends]]\nname = \"b\"\naddress = \"127.0.0.1:3307\"\nrole = \"primary\"\n"
        );
        let problems = Config::parse(&text).unwrap().validate();
        assert!(problems.iter().any(|p| p.contains("exactly one backend")), "{problems:?}");
    }

    #[test]
    fn user_needs_exactly_one_password_source() {
        let text =
            MINIMAL.replace("password = \"app\"", "password = \"app\"\npassword_env = \"X\"");
        let problems = Config::parse(&text).unwrap().validate();
        assert!(problems.iter().any(|p| p.contains("exactly one of password")), "{problems:?}");
    }

    #[test]
    fn bad_password_hash_is_reported() {
        let text = MINIMAL.replace("password = \"app\"", "password_hash = \"*1234\"");
        let problems = Config::parse(&text).unwrap().validate();
        assert!(problems.iter().any(|p| p.contains("password_hash")), "{problems:?}");
    }
}
