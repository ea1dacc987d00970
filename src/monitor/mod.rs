//! The backend monitor: probes every backend on its own connection, decides
//! health, role, lag and read eligibility, and publishes the result as one
//! immutable [`Topology`] snapshot in an `ArcSwap` (the monitor is its only
//! writer; readers never lock).
//!
//! Inside:
//! - `types.rs`: the specs and settings it takes, the topology it publishes.
//! - `probe.rs` (I/O): one backend's `mysql_async` connection and queries.
//! - `sample.rs` (pure): server values to a [`ProbeSample`].
//! - `gtid.rs` (pure): MariaDB GTID positions, MySQL GTID sets.
//! - `assess.rs` (pure): health hysteresis, primary detection, lag, and
//!   the next topology from the last probes.
//! - `publisher.rs` (I/O): the probe loops and the publishing task.
//!
//! Read eligibility and replica choice are in `crate::weighting`.

mod assess;
pub mod gtid;
mod probe;
mod publisher;
mod sample;
mod types;

pub use assess::{
    LagInputs, RoleView, Tracked, apply_probe, assess_lag, build_topology, detect_primary,
    heartbeat_lag_ms, next_health,
};
pub use sample::{ProbeSample, ReplicationStatus, flavor_of};
pub use types::{
    BackendSpec, BackendState, Exclusion, Flavor, LagSource, MonitorSettings, PrimaryDetection,
    ProbeTls, Role, StartBarrier, Topology, UnknownLag,
};

use arc_swap::ArcSwap;
use publisher::{Command, Publisher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// The running monitor. Dropping it stops the monitor too (in the
/// background); [`Monitor::stop`] waits until every connection is closed.
pub struct Monitor {
    topology: Arc<ArcSwap<Topology>>,
    generation: watch::Receiver<u64>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Starts probing `specs` every `settings.interval` and publishing.
    /// The first topology (every backend unknown, so unhealthy) is
    /// published before this returns. Must be called inside a Tokio
    /// runtime.
    pub fn start(specs: Vec<BackendSpec>, settings: MonitorSettings) -> Monitor {
        let topology = Arc::new(ArcSwap::from_pointee(Topology::default()));
        let (generation_tx, generation) = watch::channel(0);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let publisher = Publisher::new(specs, settings, topology.clone(), generation_tx);
        let task = tokio::spawn(publisher.run(commands_rx));
        Monitor { topology, generation, commands, task }
    }

    /// The current snapshot, to keep across `.await`s.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// The shared cell the snapshot lives in, for lock-free reads
    /// (`handle.load()`) by the rest of the proxy.
    pub fn handle(&self) -> Arc<ArcSwap<Topology>> {
        self.topology.clone()
    }

    /// The generation of each new publication, published after the
    /// snapshot is stored.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Applies a config reload: backends added, removed, moved or
    /// reweighted, settings changed. Backends are matched by name (names
    /// must be unique). Publishes a new topology at once.
    pub fn update(&self, specs: Vec<BackendSpec>, settings: MonitorSettings) {
        // Fails only once the publisher has stopped; nothing to update then.
        let _ = self.commands.send(Command::Update(specs, Box::new(settings)));
    }

    /// Waits until a published topology satisfies `condition`, checking
    /// the current one first and then each new publication, for at most
    /// `timeout`. On timeout (or if the monitor stopped), the last
    /// topology is the error.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&Topology) -> bool,
    ) -> Result<Arc<Topology>, Arc<Topology>> {
        let now = tokio::time::Instant::now();
        // A timeout too large to add is as good as a year.
        let deadline =
            now.checked_add(timeout).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let mut generation = self.generation.clone();
        loop {
            generation.mark_unchanged();
            let topology = self.topology();
            if condition(&topology) {
                return Ok(topology);
            }
            match tokio::time::timeout_at(deadline, generation.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(self.topology()),
            }
        }
    }

    /// Stops probing, closes every connection and ends the publisher. The
    /// last topology stays readable through earlier [`Monitor::handle`]s.
    pub async fn stop(self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
        let _ = self.task.await;
    }
}
