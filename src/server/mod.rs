//! Process-wide state shared by sessions (the config snapshot, what the
//! proxy presents to clients, the session registry for KILL) and the
//! accept loop. `rwsplit::run` serves both `main` and the tests.
//!
//! Inside: `listeners` (client listeners, the accept loop, the session
//! worker threads), `limits` (per-user and per-backend connection counts,
//! the failed-login throttle).

mod limits;
mod listeners;
mod outages;
mod registry;
mod table_locks;
mod watch;

pub use limits::{
    BackendSlot, CommandMemory, CommandReservation, LoginThrottle, PoolBackend, PoolStats,
    SMALL_COMMAND, UsableDatabases, UserSessions, UserSlot, ms_since_start, since_start_ms,
};
pub use listeners::{ListenerCtx, Listeners, SessionWorkers};
pub use registry::{RUNNING, Registry, SessionHandle, Signal};
pub use table_locks::{HeldWriteLocks, WriteLocks};
pub use watch::{fingerprint, watch_files};

use crate::backend;
use crate::classify::Tier2Cache;
use crate::config::Config;
use crate::monitor::{BackendState, Monitor, Topology};
use crate::protocol::handshake::Greeting;
use crate::sharded::Padded;
use crate::telemetry::Telemetry;
use crate::weighting::{InFlight, Picker};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Statement shapes whose parser verdict is kept.
const TIER2_CACHE_ENTRIES: usize = 10_000;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Puts a reloaded config's log level in force.
pub type LogReload = Box<dyn Fn(&Config) -> Result<(), String> + Send + Sync>;

/// Replicas that refused a connection are avoided for a while. This is
/// the stand-in for the monitor's health state: a time per backend, read
/// without locks. The monitor's word is newer when it finds a backend up
/// again ([`Backoff::forgive_recovered`]): the wait ends then.
#[derive(Debug)]
pub struct Backoff {
    epoch: Instant,
    /// Milliseconds since `epoch` until which each backend is avoided.
    until_ms: Vec<AtomicU64>,
}

impl Backoff {
    fn new(backends: usize) -> Backoff {
        Backoff {
            epoch: Instant::now(),
            until_ms: (0..backends.max(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Avoid `backend` for `for_how_long`.
    pub fn mark_down(&self, backend: usize, for_how_long: Duration) {
        if let Some(slot) = self.until_ms.get(backend) {
            slot.store(self.now_ms() + for_how_long.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Ends the avoidance of every backend `topology` shows healthy that
    /// was not healthy in the previous publication (`was_healthy`, one
    /// entry per backend, updated here): a replica back from an outage
    /// takes reads as soon as the monitor has seen it answer, not
    /// `backend_retry` after the last session failed on it.
    pub fn forgive_recovered(&self, topology: &Topology, was_healthy: &mut Vec<bool>) {
        was_healthy.resize(topology.backends.len(), false);
        for (i, backend) in topology.backends.iter().enumerate() {
            if backend.healthy
                && !was_healthy[i]
                && let Some(slot) = self.until_ms.get(i)
            {
                slot.store(0, Ordering::Relaxed);
            }
            was_healthy[i] = backend.healthy;
        }
    }

    pub fn is_down(&self, backend: usize) -> bool {
        // A backend never avoided costs no clock read (this runs for every
        // replica of every read).
        self.until_ms.get(backend).is_some_and(|slot| {
            let until = slot.load(Ordering::Relaxed);
            if until == 0 {
                return false;
            }
            if until > self.now_ms() {
                return true;
            }
            // Expired: back to the clock-free case.
            let _ = slot.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
            false
        })
    }
}

/// The first connection id the proxy gives its clients. Its ids lie above
/// the servers' thread ids (which count from 1 with every connection a
/// server takes), so that `KILL n` tells them apart: a proxy session's id
/// is the proxy's to kill, and a smaller id, taken from
/// `information_schema.PROCESSLIST`, goes to the primary as the server's.
/// Below `i32::MAX`, for clients that keep the id in a signed int.
pub const FIRST_CONNECTION_ID: u32 = 1_000_000_000;

/// State shared by every session of one proxy instance.
pub struct Shared {
    pub config: ArcSwap<Config>,
    /// Backend health, roles and lag: written by the monitor only.
    pub topology: Arc<ArcSwap<Topology>>,
    /// Kept alive for as long as the proxy runs.
    monitor: Option<Monitor>,
    pub picker: Picker,
    pub telemetry: Telemetry,
    pub digests: crate::digests::Digests,
    /// Per backend index: 0 active, 1 drain, 2 disabled (the file's state,
    /// changed by the admin port until the next reload).
    admin_state: Vec<std::sync::atomic::AtomicU8>,
    /// Client connections open now (logged in or not).
    pub clients: std::sync::atomic::AtomicUsize,
    /// The primary's GTID position as last read for gtid_global, with the
    /// time its read started (see `Session::primary_position`).
    pub global_position: tokio::sync::Mutex<Option<(Instant, String)>>,
    /// Each client's last write, for its next sessions' reads.
    pub recent_writes: crate::recent_writes::RecentWrites,
    /// Statements and errors per backend index, per session worker.
    backend_stats: crate::sharded::PerWorker<Vec<Padded<(AtomicU64, AtomicU64)>>>,
    /// Connections sessions hold to each backend, and a wake-up for a
    /// session waiting for one to close.
    backend_open: Vec<(std::sync::atomic::AtomicUsize, Notify)>,
    /// Backends the monitor found down, for statements waiting on them.
    pub outages: Arc<outages::Outages>,
    /// Statements run through the proxy that created or altered a
    /// database. A server connection keeps the options of its database
    /// (`@@collation_database`, the default character set of the tables
    /// it creates) as they were when it selected it: one that selected it
    /// before the last such statement selects it again before it is used
    /// (`BackendConn::note_database_changes`), as a new connection would.
    pub database_changes: AtomicU64,
    /// `SET GLOBAL` statements run through the proxy (on the primary). A
    /// server connection takes its session variables from the globals
    /// when it opens: a pooled connection to the primary opened before
    /// the last one is closed instead of handed to a session
    /// (`BackendConn::globals_seen`), so that new sessions see the new
    /// values, as on the server.
    pub global_changes: AtomicU64,
    /// Idle, waiting and timed-out counts of the connection pool.
    pub pool: PoolStats,
    /// Parser-tier verdicts by statement digest.
    pub tier2: Tier2Cache,
    pub backoff: Arc<Backoff>,
    /// The primary's greeting, learned once it answers; presented (with the
    /// proxy's own scramble and connection id) to clients.
    pub primary_greeting: ArcSwap<Option<Greeting>>,
    pub registry: Arc<Registry>,
    /// Tables sessions hold a `LOCK TABLES ... WRITE` on.
    pub write_locks: Arc<WriteLocks>,
    pub user_sessions: Arc<UserSessions>,
    pub login_throttle: LoginThrottle,
    pub usable_databases: UsableDatabases,
    /// What clients' large commands hold (`limits.max_command_memory`).
    pub command_memory: Arc<CommandMemory>,
    /// The client listeners in force.
    listeners: Listeners,
    /// How backend connections switch to TLS (from `[backend_tls]`); an
    /// error (a CA file that went missing) refuses backend connections
    /// rather than falling back to plain TCP.
    pub backend_tls: ArcSwap<Result<Option<crate::backend_tls::BackendTls>, String>>,
    /// Where sessions run (set by the binary); without it, on the runtime
    /// that accepted them.
    pub session_workers: std::sync::OnceLock<SessionWorkers>,
    /// Applies a reloaded config's log settings (set by the binary, which
    /// owns the log subscriber).
    pub log_reload: std::sync::OnceLock<LogReload>,
    next_id: AtomicU32,
    /// The fingerprint of the config's files when last loaded (see
    /// `watch_files`).
    files_loaded: AtomicU64,
    /// When the config in force was loaded, and how the last reload went.
    pub reloads: std::sync::Mutex<ReloadStatus>,
}

/// When the config in force was loaded, and how the last reload went
/// (`GET /config`).
#[derive(Debug)]
pub struct ReloadStatus {
    pub in_force_since: Instant,
    /// When the last reload was asked for, and its refusal (None: applied).
    pub last: Option<(Instant, Option<String>)>,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let shared = Self::build(config);
        shared.apply_file_states(&shared.config.load());
        shared
    }

    fn build(config: Config) -> Arc<Shared> {
        let files_loaded = fingerprint(&config);
        let (topology, monitor) = match config.monitor_settings() {
            Some(settings) => {
                let monitor = Monitor::start(config.monitor_specs(), settings);
                (monitor.handle(), Some(monitor))
            }
            None => (Arc::new(ArcSwap::from_pointee(static_topology(&config))), None),
        };
        let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let outages = Arc::new(outages::Outages::new(names.len().max(64)));
        let registry = Arc::new(Registry::default());
        let backoff = Arc::new(Backoff::new(config.backends.len()));
        if let Some(monitor) = &monitor {
            tokio::spawn(outages.clone().follow(
                topology.clone(),
                monitor.subscribe(),
                registry.clone(),
                backoff.clone(),
            ));
        }
        Arc::new(Shared {
            outages,
            pool: PoolStats::new(names.len().max(64)),
            topology,
            monitor,
            picker: Picker::new(),
            telemetry: Telemetry::new(&names),
            admin_state: (0..names.len().max(64))
                .map(|_| std::sync::atomic::AtomicU8::new(0))
                .collect(),
            clients: std::sync::atomic::AtomicUsize::new(0),
            digests: crate::digests::Digests::new(
                config.admin.as_ref().map_or(5000, |a| a.max_digests),
            ),
            global_position: tokio::sync::Mutex::new(None),
            recent_writes: crate::recent_writes::RecentWrites::default(),
            backend_stats: crate::sharded::PerWorker::from_fn(|| {
                (0..names.len().max(64))
                    .map(|_| Padded((AtomicU64::new(0), AtomicU64::new(0))))
                    .collect()
            }),
            backend_open: (0..names.len().max(64))
                .map(|_| (std::sync::atomic::AtomicUsize::new(0), Notify::new()))
                .collect(),
            tier2: Tier2Cache::new(TIER2_CACHE_ENTRIES),
            backoff,
            database_changes: AtomicU64::new(0),
            global_changes: AtomicU64::new(0),
            backend_tls: ArcSwap::from_pointee(config.backend_tls.connector(&config.base_dir)),
            config: ArcSwap::from_pointee(config),
            primary_greeting: ArcSwap::from_pointee(None),
            registry,
            write_locks: Arc::new(WriteLocks::default()),
            user_sessions: Arc::default(),
            login_throttle: LoginThrottle::default(),
            usable_databases: UsableDatabases::default(),
            command_memory: Arc::default(),
            listeners: Listeners::default(),
            log_reload: std::sync::OnceLock::new(),
            session_workers: std::sync::OnceLock::new(),
            next_id: AtomicU32::new(FIRST_CONNECTION_ID),
            files_loaded: AtomicU64::new(files_loaded),
            reloads: std::sync::Mutex::new(ReloadStatus {
                in_force_since: Instant::now(),
                last: None,
            }),
        })
    }

    /// A fresh client-visible connection id (never 0; from
    /// [`FIRST_CONNECTION_ID`] on, wrapping around past `u32::MAX`).
    pub fn next_connection_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Reads the config file again and puts it in force: validated first
    /// (an invalid file changes nothing and its problems are returned),
    /// backend positions kept stable, the monitor and topology updated.
    /// Listeners are opened, closed or given their new options (sessions
    /// they accepted go on); users, backends, weights, rules, timeouts and
    /// consistency settings apply to the next statement. Only the admin
    /// address needs a restart.
    pub fn reload(self: &Arc<Self>) -> Result<(), String> {
        let result = self.reload_file();
        let now = Instant::now();
        let mut status = self.reloads.lock().expect("reload status lock");
        match &result {
            Ok(()) => {
                self.telemetry.reloads_applied.increment(1);
                status.in_force_since = now;
            }
            Err(_) => self.telemetry.reloads_refused.increment(1),
        }
        status.last = Some((now, result.as_ref().err().cloned()));
        result
    }

    fn reload_file(self: &Arc<Self>) -> Result<(), String> {
        let old = self.config.load_full();
        let path = old
            .source
            .clone()
            .ok_or_else(|| "this proxy was not started from a file".to_string())?;
        let new = Config::load(&path).map_err(|e| e.to_string())?.keep_backend_positions(&old);
        // Per-backend counters are sized when the proxy starts; removed
        // backends keep their positions, so positions only grow.
        let room = self.backend_open.len();
        if new.backends.len() > room {
            return Err(format!(
                "{}: the reload needs {} backend positions (removed backends keep theirs) \
                 and this proxy has {room}; restart it to apply this file",
                path.display(),
                new.backends.len()
            ));
        }
        let backend_tls = new.backend_tls.connector(&new.base_dir)?;
        self.listeners.sync(&new, self)?;
        self.backend_tls.store(Arc::new(Ok(backend_tls)));
        if new.admin.as_ref().map(|a| &a.address) != old.admin.as_ref().map(|a| &a.address) {
            tracing::warn!("admin address changes take effect after a restart");
        }
        match (&self.monitor, new.monitor_settings()) {
            (Some(monitor), Some(settings)) => monitor.update(new.monitor_specs(), settings),
            (None, None) => self.topology.store(Arc::new(static_topology(&new))),
            _ => tracing::warn!("adding or removing [monitor] takes effect after a restart"),
        }
        tracing::info!(file = %path.display(), backends = new.backends.len(), "configuration reloaded");
        self.apply_file_states(&new);
        self.files_loaded.store(fingerprint(&new), Ordering::Relaxed);
        if let Some(apply) = self.log_reload.get()
            && let Err(e) = apply(&new)
        {
            tracing::warn!(error = %e, "log level not changed");
        }
        self.config.store(Arc::new(new));
        Ok(())
    }

    /// The monitor, when one is configured.
    pub fn monitor(&self) -> Option<&Monitor> {
        self.monitor.as_ref()
    }

    /// Counts a statement run on backend `idx`, and whether it failed.
    pub fn count_statement(&self, idx: usize, failed: bool) {
        if let Some(Padded((q, e))) = self.backend_stats.local().get(idx) {
            q.fetch_add(1, Ordering::Relaxed);
            if failed {
                e.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The most connections sessions may hold to backend `idx`: its own
    /// `max_connections` and, when multiplexing, the pool's limit.
    pub fn backend_cap(&self, config: &Config, idx: usize) -> Option<usize> {
        let own = config.backends.get(idx).and_then(|b| b.max_connections);
        let pool = config.pool.max_connections_per_backend;
        match (own, config.pool.multiplex && pool > 0) {
            (Some(own), true) => Some(own.min(pool)),
            (None, true) => Some(pool),
            (own, false) => own,
        }
    }

    /// A place for one more connection to backend `idx` now, if its cap
    /// allows. When multiplexing, each session worker has an equal share
    /// of the pool's cap (its connections serve only its sessions).
    pub fn try_backend_slot(self: &Arc<Self>, idx: usize) -> Option<BackendSlot> {
        let (open, _) = self.backend_open.get(idx)?;
        let config = self.config.load();
        let cap = self.backend_cap(&config, idx);
        let share = match (config.pool.multiplex, cap) {
            (true, Some(cap)) => {
                let workers = self.session_workers.get().map_or(1, |w| w.len().max(1));
                let worker = crate::sharded::worker().min(limits::MAX_WORKERS - 1);
                let counted = self.pool.get(idx)?.by_worker.get(worker)?;
                let share = cap.div_ceil(workers);
                counted
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < share).then_some(n + 1)
                    })
                    .ok()?;
                Some(worker)
            }
            _ => None,
        };
        let taken = open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            cap.is_none_or(|cap| n < cap).then_some(n + 1)
        });
        if taken.is_err() {
            // Give the worker's share back.
            if let Some(w) = share
                && let Some(n) = self.pool.get(idx).and_then(|s| s.by_worker.get(w))
            {
                n.fetch_sub(1, Ordering::AcqRel);
            }
            return None;
        }
        Some(self.new_slot(idx, share))
    }

    /// Whether this session worker could open another connection to
    /// backend `idx` were the backend's whole cap not held (by other
    /// workers' connections).
    pub fn blocked_by_other_workers(&self, idx: usize) -> bool {
        let config = self.config.load();
        let Some(cap) = self.backend_cap(&config, idx) else { return false };
        if !config.pool.multiplex || self.backend_connections(idx) < cap {
            return false;
        }
        let workers = self.session_workers.get().map_or(1, |w| w.len().max(1));
        let worker = crate::sharded::worker().min(limits::MAX_WORKERS - 1);
        let mine = self.pool.get(idx).and_then(|s| s.by_worker.get(worker));
        mine.is_some_and(|n| n.load(Ordering::Relaxed) < cap.div_ceil(workers))
    }

    /// Counts a connection taken under backend `idx`'s cap.
    fn new_slot(self: &Arc<Self>, idx: usize, worker: Option<usize>) -> BackendSlot {
        let opened_ms = limits::since_start_ms();
        if let Some(stats) = self.pool.get(idx) {
            stats.opened_ms_sum.fetch_add(opened_ms, Ordering::Relaxed);
        }
        BackendSlot { shared: self.clone(), idx, worker, opened_ms }
    }

    /// The mean age of the connections open to backend `idx`, in seconds.
    pub fn mean_connection_age(&self, idx: usize) -> f64 {
        let open = self.backend_connections(idx) as u64;
        let Some(stats) = self.pool.get(idx) else { return 0.0 };
        if open == 0 {
            return 0.0;
        }
        let sum = stats.opened_ms_sum.load(Ordering::Relaxed);
        (limits::since_start_ms().saturating_sub(sum / open)) as f64 / 1000.0
    }

    /// Woken when a connection to backend `idx` closes.
    pub fn backend_freed(&self, idx: usize) -> Option<&Notify> {
        self.backend_open.get(idx).map(|(_, freed)| freed)
    }

    /// A place for one more connection to backend `idx` under its
    /// `max_connections`, waiting up to `wait` for one to free up.
    pub async fn backend_slot(
        self: &Arc<Self>,
        idx: usize,
        wait: Duration,
    ) -> Result<BackendSlot, crate::backend::BackendError> {
        let Some((_, freed)) = self.backend_open.get(idx) else {
            return Err(crate::backend::BackendError::Protocol(format!("no backend {idx}")));
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let waiting = freed.notified();
            if let Some(slot) = self.try_backend_slot(idx) {
                return Ok(slot);
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                let config = self.config.load();
                let name = config.backends.get(idx).map_or("?", |b| b.name.as_str());
                let cap = self.backend_cap(&config, idx).unwrap_or(0);
                return Err(crate::backend::BackendError::AtCapacity(name.to_string(), cap));
            }
        }
    }

    /// Connections sessions hold to backend `idx` now.
    pub fn backend_connections(&self, idx: usize) -> usize {
        self.backend_open.get(idx).map_or(0, |(n, _)| n.load(Ordering::Relaxed))
    }

    /// (statements, errors) on backend `idx`.
    pub fn backend_counts(&self, idx: usize) -> (u64, u64) {
        self.backend_stats.all().filter_map(|shard| shard.get(idx)).fold(
            (0, 0),
            |(qs, es), Padded((q, e))| {
                (qs + q.load(Ordering::Relaxed), es + e.load(Ordering::Relaxed))
            },
        )
    }

    /// The topology in force: the monitor's latest, or the configured
    /// roles when no monitor is configured.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// The current topology for a moment's use (a statement's routing):
    /// a guard that leaves the shared reference count alone.
    pub fn topology_now(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    /// The primary's backend index: the writable server the monitor
    /// found, or the configured primary.
    pub fn primary_index(&self, config: &Config) -> usize {
        self.topology
            .load()
            .primary
            .filter(|p| *p < config.backends.len())
            .unwrap_or_else(|| config.primary())
    }

    /// Whether any replica can take reads now.
    pub fn replica_available(&self) -> bool {
        let topology = self.topology.load();
        topology.backends.iter().enumerate().any(|(i, b)| {
            b.eligible && b.role == crate::monitor::Role::Replica && self.takes_reads(i)
        })
    }

    /// Not avoided after a refused connection, and not drained or disabled.
    pub fn takes_reads(&self, idx: usize) -> bool {
        !self.backoff.is_down(idx) && self.backend_state(idx) == crate::config::BackendState::Active
    }

    /// A backend's state as set by the file or the admin port.
    pub fn backend_state(&self, idx: usize) -> crate::config::BackendState {
        match self.admin_state.get(idx).map(|s| s.load(Ordering::Relaxed)) {
            Some(1) => crate::config::BackendState::Drain,
            Some(2) => crate::config::BackendState::Disabled,
            _ => crate::config::BackendState::Active,
        }
    }

    /// Sets a backend's state by name (the admin port); false when unknown.
    pub fn set_backend_state(&self, name: &str, state: crate::config::BackendState) -> bool {
        let config = self.config.load();
        let Some(idx) = config.backends.iter().position(|b| b.name == name && !b.removed) else {
            return false;
        };
        self.store_state(idx, state);
        tracing::info!(
            backend = name,
            state = state.as_str(),
            "backend state changed from the admin port"
        );
        true
    }

    fn store_state(&self, idx: usize, state: crate::config::BackendState) {
        let v = match state {
            crate::config::BackendState::Active => 0,
            crate::config::BackendState::Drain => 1,
            crate::config::BackendState::Disabled => 2,
        };
        if let Some(slot) = self.admin_state.get(idx) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// Puts the file's backend states in force (at start and on reload).
    fn apply_file_states(&self, config: &Config) {
        for (i, b) in config.backends.iter().enumerate() {
            self.store_state(i, b.state);
        }
    }

    /// Picks a replica by effective weight among the eligible ones,
    /// skipping `except` (a replica that just failed) and replicas that
    /// refused a connection moments ago.
    pub fn pick_replica(
        &self,
        except: Option<usize>,
        previous: Option<usize>,
        band: f64,
    ) -> Option<(usize, InFlight)> {
        let topology = self.topology.load();
        let usable = |i| Some(i) != except && self.takes_reads(i);
        self.picker.pick(&topology, &usable, previous, band)
    }

    /// Keeps the primary's greeting current from a connection just opened to
    /// it: a new default sql_mode (NO_BACKSLASH_ESCAPES, in the status
    /// flags), a new version after an upgrade, another server after a
    /// failover. Stored only when it differs from the one known.
    pub fn note_primary_greeting(&self, g: &Greeting) {
        let known = self.primary_greeting.load();
        let same = known.as_ref().as_ref().is_some_and(|k| {
            k.status == g.status
                && k.server_version == g.server_version
                && k.capabilities == g.capabilities
                && k.mariadb_caps == g.mariadb_caps
                && k.collation == g.collation
        });
        if !same {
            self.primary_greeting.store(Arc::new(Some(g.clone())));
        }
    }

    /// The primary's greeting, probing the primary when it is not known
    /// yet. While the monitor has found the primary down, a healthy
    /// replica's greeting stands in (the same server version, as a rule),
    /// so that logins are not held up by a primary that does not answer;
    /// the primary's own replaces it once a connection to it opens.
    pub async fn greeting(&self) -> Option<Greeting> {
        if let Some(g) = self.primary_greeting.load().as_ref() {
            return Some(g.clone());
        }
        let config = self.config.load_full();
        let primary = self.primary_index(&config);
        let topology = self.topology.load_full();
        let found_down = |i: usize| {
            topology.backends.get(i).is_some_and(|b| !b.healthy && b.checked_at.is_some())
        };
        let healthy = |i: usize| topology.backends.get(i).is_some_and(|b| b.healthy);
        let asked: Vec<usize> = if found_down(primary) {
            (0..config.backends.len()).filter(|&i| i != primary && healthy(i)).take(1).collect()
        } else {
            vec![primary]
        };
        for i in asked {
            let backend = &config.backends[i];
            match backend::probe_greeting(&backend.address, config.timeouts.connect).await {
                Ok(g) => {
                    self.primary_greeting.store(Arc::new(Some(g.clone())));
                    return Some(g);
                }
                Err(e) => {
                    tracing::warn!(backend = %backend.name, error = %e, "cannot read a greeting");
                }
            }
        }
        None
    }
}

/// Without a monitor: every backend healthy in its configured role,
/// replicas at their configured weight.
fn static_topology(config: &Config) -> Topology {
    let backends = config
        .monitor_specs()
        .iter()
        .map(|spec| {
            use crate::monitor::{Exclusion, Role};
            let mut b = BackendState::unknown(spec);
            b.healthy = true;
            b.exclusion = match (spec.configured_role, spec.weight) {
                (Role::Primary, _) => Some(Exclusion::Primary),
                (Role::Replica, 0) => Some(Exclusion::ZeroWeight),
                (Role::Replica, _) => None,
            };
            b.eligible = b.exclusion.is_none();
            b.effective_weight = if b.eligible { spec.weight as f64 } else { 0.0 };
            b.past_start = true;
            b
        })
        .collect();
    Topology {
        backends,
        primary: Some(config.primary()),
        writable_conflict: false,
        generation: 1,
        primary_gtid: None,
        // Without a monitor nothing reads positions.
        start_barrier: crate::monitor::StartBarrier::Lifted,
    }
}

/// A proxy with its listeners bound and accepting.
pub struct Proxy {
    pub shared: Arc<Shared>,
    admin: Option<(TcpListener, Option<String>)>,
}

impl Proxy {
    /// Binds every configured listener and starts accepting.
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        let admin = match &config.admin {
            Some(a) => Some((TcpListener::bind(&a.address).await?, a.token.clone())),
            None => None,
        };
        let shared = Shared::new(config);
        let config = shared.config.load_full();
        shared
            .listeners
            .sync(&config, &shared)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Proxy { shared, admin })
    }

    /// The admin port's address, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The TCP addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listeners.local_addrs()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let admin = self.admin.map(|(listener, token)| {
            tokio::spawn(crate::admin::serve(listener, self.shared.clone(), token))
        });
        let idle = tokio::spawn(close_idle_clients(self.shared.clone()));
        shutdown.await;
        idle.abort();
        // Stop accepting; idle sessions close now, busy ones after their
        // statement; wait for them up to `timeouts.shutdown`.
        self.shared.listeners.close_all();
        if let Some(admin) = admin {
            admin.abort();
        }
        self.shared.registry.stop_all();
        let deadline = tokio::time::Instant::now() + self.shared.config.load().timeouts.shutdown;
        while !self.shared.registry.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let left = self.shared.registry.len();
        if left > 0 {
            tracing::warn!(
                sessions = left,
                "shutdown timeout reached; closing the remaining sessions"
            );
        }
    }
}

/// Disconnects clients idle longer than `timeouts.client_idle` (read again
/// at each look, so a reload applies), looking a few times per limit.
async fn close_idle_clients(shared: Arc<Shared>) {
    loop {
        let limit = shared.config.load().timeouts.client_idle;
        let every = if limit.is_zero() {
            std::time::Duration::from_secs(1)
        } else {
            (limit / 4)
                .clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(10))
        };
        tokio::time::sleep(every).await;
        if limit.is_zero() {
            continue;
        }
        let now = since_start_ms();
        let limit_ms = limit.as_millis() as u64;
        for (id, handle) in shared.registry.sessions() {
            let Some(idle_ms) = handle.idle_ms(now) else { continue };
            // Both instants are whole milliseconds: more than the limit
            // is at least the limit, never a fraction of a millisecond short.
            if idle_ms > limit_ms && !handle.signal.stopping() {
                tracing::info!(id, idle_ms, "client idle past timeouts.client_idle: disconnected");
                handle.signal.stop();
            }
        }
    }
}

/// Binds and serves `config` until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let proxy = Proxy::bind(config).await?;
    proxy.run(shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{BackendSpec, Role};

    fn topology(healthy: &[bool]) -> Topology {
        let backends = healthy
            .iter()
            .map(|&healthy| BackendState {
                healthy,
                ..BackendState::unknown(&BackendSpec::new("r", "127.0.0.1:1", Role::Replica))
            })
            .collect();
        Topology { backends, ..Topology::default() }
    }

    #[test]
    fn a_backend_the_monitor_finds_up_again_is_no_longer_avoided() {
        let backoff = Backoff::new(2);
        let mut was_healthy = Vec::new();
        backoff.forgive_recovered(&topology(&[true, true]), &mut was_healthy);
        backoff.mark_down(0, Duration::from_secs(3600));
        backoff.mark_down(1, Duration::from_secs(3600));
        // Down in the monitor's view, then up again: 0 is forgiven.
        backoff.forgive_recovered(&topology(&[false, true]), &mut was_healthy);
        assert!(backoff.is_down(0) && backoff.is_down(1));
        backoff.forgive_recovered(&topology(&[true, true]), &mut was_healthy);
        assert!(!backoff.is_down(0), "up again after an outage the monitor saw");
        // 1 never left the monitor's healthy set: the session's failure is
        // the newer news, and the wait stands.
        assert!(backoff.is_down(1));
    }

    #[test]
    fn a_later_failure_is_avoided_again_after_the_recovery() {
        let backoff = Backoff::new(1);
        let mut was_healthy = Vec::new();
        backoff.forgive_recovered(&topology(&[false]), &mut was_healthy);
        backoff.forgive_recovered(&topology(&[true]), &mut was_healthy);
        backoff.mark_down(0, Duration::from_secs(3600));
        // Further publications with it still healthy forgive nothing.
        backoff.forgive_recovered(&topology(&[true]), &mut was_healthy);
        assert!(backoff.is_down(0));
    }
}
