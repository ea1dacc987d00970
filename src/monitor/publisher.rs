//! The monitor's tasks: one probe loop per backend, and the publisher that
//! folds their reports into the next [`Topology`] and swaps it in. The
//! publisher is the only writer of the topology; it also applies config
//! updates (starting and stopping probe loops) and shuts everything down.

use super::assess::{Tracked, apply_probe, build_topology};
use super::probe::Prober;
use super::sample::ProbeSample;
use super::types::{BackendSpec, BackendState, MonitorSettings, Topology};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Requests from the [`super::Monitor`] handle.
pub(super) enum Command {
    Update(Vec<BackendSpec>, Box<MonitorSettings>),
    Stop(oneshot::Sender<()>),
}

/// One probe's result, from a probe loop to the publisher.
struct Report {
    /// Which probe loop sent it (stale loops' reports are ignored).
    loop_id: u64,
    outcome: Result<ProbeSample, String>,
    checked_at: SystemTime,
}

/// A running probe loop: dropping `stop` ends it.
struct ProbeLoop {
    id: u64,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

/// One backend as the publisher tracks it.
struct Backend {
    spec: BackendSpec,
    /// Health and observations after its last probe.
    state: BackendState,
    /// The last good probe.
    sample: Option<ProbeSample>,
    /// The published primary GTID when `sample` arrived.
    primary_gtid_at_sample: Option<String>,
    probe: ProbeLoop,
}

pub(super) struct Publisher {
    settings: MonitorSettings,
    backends: Vec<Backend>,
    topology: Arc<ArcSwap<Topology>>,
    generation: watch::Sender<u64>,
    reports_tx: mpsc::Sender<Report>,
    reports_rx: mpsc::Receiver<Report>,
    next_loop_id: u64,
}

impl Publisher {
    /// Starts the probe loops of `specs` and publishes the first topology
    /// (every backend unknown). Must run inside a Tokio runtime.
    pub(super) fn new(
        specs: Vec<BackendSpec>,
        settings: MonitorSettings,
        topology: Arc<ArcSwap<Topology>>,
        generation: watch::Sender<u64>,
    ) -> Publisher {
        let (reports_tx, reports_rx) = mpsc::channel(64);
        let mut publisher = Publisher {
            settings: settings.clone(),
            backends: Vec::new(),
            topology,
            generation,
            reports_tx,
            reports_rx,
            next_loop_id: 0,
        };
        publisher.apply_update(specs, settings);
        publisher.publish();
        publisher
    }

    /// Serves reports and commands until stopped or until the handle is gone.
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Update(specs, settings)) => {
                        self.apply_update(specs, *settings);
                        self.publish();
                    }
                    Some(Command::Stop(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                Some(report) = self.reports_rx.recv() => {
                    self.apply_report(report);
                    // Reports that arrived meanwhile go into the same
                    // publication.
                    while let Ok(report) = self.reports_rx.try_recv() {
                        self.apply_report(report);
                    }
                    self.publish();
                }
            }
        }
    }

    fn apply_report(&mut self, report: Report) {
        let Some(backend) =
            self.backends.iter_mut().find(|backend| backend.probe.id == report.loop_id)
        else {
            return; // from a loop stopped by an update
        };
        let outcome = report.outcome.as_ref().map_err(String::as_str);
        let next = apply_probe(&backend.state, outcome, report.checked_at, &self.settings);
        // A backend the monitor never reached (from the start, or added by
        // a reload) has no change of health to report: its first failure
        // is said once, with its cause.
        let first_failure = !backend.state.healthy
            && backend.state.server_version.is_none()
            && backend.state.consecutive_failures == 0
            && !next.healthy;
        if next.healthy != backend.state.healthy || first_failure {
            if next.healthy {
                tracing::info!(backend = %backend.spec.name, "backend up");
            } else {
                tracing::warn!(backend = %backend.spec.name, error = ?next.last_error, "backend down");
            }
        }
        backend.state = next;
        if let Ok(sample) = report.outcome {
            backend.sample = Some(sample);
            backend.primary_gtid_at_sample = self.topology.load().primary_gtid.clone();
        }
    }

    fn publish(&mut self) {
        let previous = self.topology.load_full();
        let tracked: Vec<Tracked<'_>> = self
            .backends
            .iter()
            .map(|backend| Tracked {
                spec: &backend.spec,
                state: &backend.state,
                sample: backend.sample.as_ref(),
                primary_gtid_at_sample: backend.primary_gtid_at_sample.as_deref(),
            })
            .collect();
        let next = build_topology(&previous, &tracked, &self.settings);
        log_changes(&previous, &next);
        let generation = next.generation;
        self.topology.store(Arc::new(next));
        self.generation.send_replace(generation);
    }

    /// Takes the new backend list and settings: keeps the state of
    /// backends whose name stays, restarts a probe loop when its address or
    /// the probe settings changed (forgetting the state if the address
    /// changed), starts loops for new backends and stops removed ones.
    fn apply_update(&mut self, specs: Vec<BackendSpec>, settings: MonitorSettings) {
        let restart_all = probe_settings_changed(&self.settings, &settings);
        self.settings = settings;
        let mut old: HashMap<String, Backend> =
            self.backends.drain(..).map(|backend| (backend.spec.name.clone(), backend)).collect();
        for spec in specs {
            let backend = match old.remove(&spec.name) {
                Some(mut backend) => {
                    let moved = backend.spec.address != spec.address;
                    if moved {
                        backend.state = BackendState::unknown(&spec);
                        backend.sample = None;
                        backend.primary_gtid_at_sample = None;
                    }
                    if moved || restart_all {
                        let probe = self.start_loop(&spec.address);
                        stop_loop(std::mem::replace(&mut backend.probe, probe));
                    }
                    backend.spec = spec;
                    backend
                }
                None => Backend {
                    probe: self.start_loop(&spec.address),
                    state: BackendState::unknown(&spec),
                    sample: None,
                    primary_gtid_at_sample: None,
                    spec,
                },
            };
            self.backends.push(backend);
        }
        for (_, removed) in old {
            stop_loop(removed.probe);
        }
    }

    fn start_loop(&mut self, address: &str) -> ProbeLoop {
        self.next_loop_id += 1;
        let id = self.next_loop_id;
        let (stop, stopped) = oneshot::channel();
        let prober = Prober::new(address, &self.settings);
        let handle = tokio::spawn(probe_loop(
            id,
            prober,
            self.settings.interval,
            self.reports_tx.clone(),
            stopped,
        ));
        ProbeLoop { id, stop, handle }
    }

    /// Stops every probe loop, giving each a moment to close its
    /// connection politely.
    async fn shutdown(&mut self) {
        let grace = self.settings.query_timeout.saturating_add(Duration::from_millis(100));
        let handles: Vec<JoinHandle<()>> = self
            .backends
            .drain(..)
            .map(|backend| {
                drop(backend.probe.stop);
                backend.probe.handle
            })
            .collect();
        for handle in handles {
            let abort = handle.abort_handle();
            if tokio::time::timeout(grace, handle).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Settings that the probe loops hold: a change restarts them.
fn probe_settings_changed(old: &MonitorSettings, new: &MonitorSettings) -> bool {
    old.user != new.user
        || old.password != new.password
        || old.interval != new.interval
        || old.connect_timeout != new.connect_timeout
        || old.query_timeout != new.query_timeout
        || old.heartbeat_table != new.heartbeat_table
        || old.tls != new.tls
}

/// Detached: the loop closes its connection and ends by itself.
fn stop_loop(probe: ProbeLoop) {
    drop(probe.stop);
}

/// Probes every `interval` until `stop` fires (or its sender is dropped)
/// or the publisher is gone.
async fn probe_loop(
    id: u64,
    mut prober: Prober,
    interval: Duration,
    reports: mpsc::Sender<Report>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let outcome = tokio::select! {
            _ = &mut stop => break,
            outcome = prober.probe() => outcome.map_err(|error| error.to_string()),
        };
        let report = Report { loop_id: id, outcome, checked_at: SystemTime::now() };
        if reports.send(report).await.is_err() {
            break;
        }
    }
    prober.close().await;
}

/// Logs role changes, conflicts and changes of eligibility.
fn log_changes(previous: &Topology, next: &Topology) {
    let name = |topology: &Topology| topology.primary_state().map(|p| p.name.clone());
    if name(previous) != name(next) {
        tracing::warn!(from = ?name(previous), to = ?name(next), "primary changed");
    }
    if next.writable_conflict && !previous.writable_conflict {
        tracing::error!(primary = ?name(next), "more than one writable server");
    }
    for backend in &next.backends {
        let before = previous.backend(&backend.name).and_then(|b| b.exclusion);
        if before != backend.exclusion {
            tracing::info!(
                backend = %backend.name,
                from = before.map_or("eligible", |e| e.as_str()),
                to = backend.exclusion.map_or("eligible", |e| e.as_str()),
                lag_ms = ?backend.lag_ms,
                "read eligibility changed"
            );
        }
    }
}
