//! Pure decisions of the monitor: health with hysteresis, the primary,
//! replication lag, and the whole next [`Topology`] from the last probe of
//! every backend. Time enters only as values (`checked_at`, `sampled_at`).

use super::gtid;
use super::sample::ProbeSample;
use super::types::{
    BackendSpec, BackendState, Exclusion, Flavor, LagSource, MonitorSettings, PrimaryDetection,
    Role, StartBarrier, Topology,
};
use crate::weighting::{ReplicaView, assess_eligibility};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Health after one more probe: `(healthy, consecutive_failures,
/// consecutive_successes)`.
///
/// A healthy backend goes down after `fail_after` failed probes in a row; a
/// down one comes back after `recover_after` good probes in a row. A
/// backend that never had a good probe (new, or its address changed) is
/// unknown, reads as unhealthy, and is healthy from its first good probe.
/// Zero thresholds count as 1.
pub fn next_health(
    prev: &BackendState,
    probe_ok: bool,
    settings: &MonitorSettings,
) -> (bool, u32, u32) {
    let never_up = !prev.healthy && prev.server_version.is_none();
    if probe_ok {
        let successes = prev.consecutive_successes.saturating_add(1);
        let healthy = prev.healthy || never_up || successes >= settings.recover_after.max(1);
        (healthy, 0, successes)
    } else {
        let failures = prev.consecutive_failures.saturating_add(1);
        let healthy = prev.healthy && failures < settings.fail_after.max(1);
        (healthy, failures, 0)
    }
}

/// The state of a backend after one probe, before role, lag and
/// eligibility are decided for the whole topology: health counters, the
/// error, and what the probe saw (kept from earlier probes on a failure).
pub fn apply_probe(
    prev: &BackendState,
    outcome: Result<&ProbeSample, &str>,
    checked_at: SystemTime,
    settings: &MonitorSettings,
) -> BackendState {
    let (healthy, failures, successes) = next_health(prev, outcome.is_ok(), settings);
    let mut next = BackendState {
        healthy,
        consecutive_failures: failures,
        consecutive_successes: successes,
        checked_at: Some(checked_at),
        ..prev.clone()
    };
    match outcome {
        Ok(sample) => {
            next.last_error = None;
            next.server_version = Some(sample.server_version.clone());
            next.flavor = Some(sample.flavor);
            next.read_only = sample.read_only;
            let replication = sample.replication.as_ref();
            next.sql_thread_running = replication.and_then(|r| r.sql_running);
            next.io_thread_running = replication.and_then(|r| r.io_running);
            next.replication_error = replication.and_then(|r| r.last_sql_error.clone());
        }
        Err(error) => next.last_error = Some(error.to_string()),
    }
    next
}

/// Whether one backend may be the primary, as role detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    pub healthy: bool,
    pub read_only: Option<bool>,
    pub configured_role: Role,
}

/// The primary's index and whether two or more healthy servers are
/// writable.
///
/// `Static`: the first backend configured as primary. `ReadOnly`: the one
/// healthy server with `read_only` OFF. With several writable, the previous
/// primary is kept (even if it is not one of them) and the conflict is
/// flagged; with none writable the previous primary is kept (it may be
/// down). Without a previous primary, the configured primary is the seed:
/// chosen when none is writable, or when it is among the writable ones.
pub fn detect_primary(
    backends: &[RoleView],
    previous: Option<usize>,
    detection: PrimaryDetection,
) -> (Option<usize>, bool) {
    let configured = backends.iter().position(|b| b.configured_role == Role::Primary);
    if detection == PrimaryDetection::Static {
        return (configured, false);
    }
    let previous = previous.filter(|&index| index < backends.len());
    let writable: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].healthy && backends[i].read_only == Some(false))
        .collect();
    match writable.as_slice() {
        [only] => (Some(*only), false),
        [] => (previous.or(configured), false),
        several => {
            let seed = configured.filter(|index| several.contains(index));
            (previous.or(seed), true)
        }
    }
}

/// What lag assessment needs to know of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagInputs<'a> {
    pub flavor: Flavor,
    /// The replica's applied position (MariaDB `gtid_slave_pos`, MySQL
    /// `gtid_executed`).
    pub replica_position: Option<&'a str>,
    /// The primary's position (MariaDB `gtid_binlog_pos`, MySQL
    /// `gtid_executed`), as last probed.
    pub primary_position: Option<&'a str>,
    /// From the heartbeat table, see [`heartbeat_lag_ms`].
    pub heartbeat_ms: Option<u64>,
    pub seconds_behind_master: Option<u64>,
}

/// A replica's lag in milliseconds and where it came from.
///
/// 1. GTID: a replica that has applied the primary's whole position is
///    caught up: lag 0 (`Gtid`). This wins over the heartbeat, whose
///    figure is never below the heartbeat's own write interval. The
///    primary's position is from its last probe, so "caught up" means
///    caught up with the primary as of at most one interval ago.
/// 2. Heartbeat: now − max(ts), in milliseconds (`Heartbeat`).
/// 3. `Seconds_Behind_Master` × 1000 (`SecondsBehindMaster`).
/// 4. Otherwise unknown (`Unknown`, lag None).
pub fn assess_lag(inputs: &LagInputs<'_>) -> (Option<u64>, LagSource) {
    if let (Some(replica), Some(primary)) = (inputs.replica_position, inputs.primary_position)
        && gtid::position_covers(inputs.flavor, replica, primary)
    {
        return (Some(0), LagSource::Gtid);
    }
    if let Some(lag) = inputs.heartbeat_ms {
        return (Some(lag), LagSource::Heartbeat);
    }
    if let Some(seconds) = inputs.seconds_behind_master {
        return (Some(seconds.saturating_mul(1000)), LagSource::SecondsBehindMaster);
    }
    (None, LagSource::Unknown)
}

/// `now − ts` in whole milliseconds, 0 if `ts` is in the future (clock
/// skew between the heartbeat writer and the monitor).
pub fn heartbeat_lag_ms(heartbeat_micros: i64, now: SystemTime) -> u64 {
    let now_micros = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    u64::try_from(now_micros.saturating_sub(heartbeat_micros) / 1000).unwrap_or(0)
}

/// One backend as the publisher tracks it: its config, its state after the
/// last probe ([`apply_probe`]) and the last good probe's sample.
#[derive(Debug, Clone, Copy)]
pub struct Tracked<'a> {
    pub spec: &'a BackendSpec,
    pub state: &'a BackendState,
    pub sample: Option<&'a ProbeSample>,
    /// The primary's GTID position as published when `sample` arrived.
    /// A replica is compared with it rather than with the newest one, so
    /// its lag changes only when the replica itself is probed (not each
    /// time the primary reports a newer position); None falls back to the
    /// newest.
    pub primary_gtid_at_sample: Option<&'a str>,
}

/// The next topology: roles, the primary's GTID, each replica's lag and
/// eligibility, from the tracked backends (in config order) and the
/// previously published topology (for the previous primary and for lag
/// hysteresis, both matched by name).
pub fn build_topology(
    previous: &Topology,
    tracked: &[Tracked<'_>],
    settings: &MonitorSettings,
) -> Topology {
    let views: Vec<RoleView> = tracked
        .iter()
        .map(|t| RoleView {
            // A removed backend takes no part in finding the primary.
            healthy: t.state.healthy && !t.spec.removed,
            read_only: t.state.read_only,
            configured_role: t.spec.configured_role,
        })
        .collect();
    let previous_primary =
        previous.primary_state().and_then(|p| tracked.iter().position(|t| t.spec.name == p.name));
    let (primary, writable_conflict) =
        detect_primary(&views, previous_primary, settings.primary_detection);
    let primary_sample = primary.and_then(|index| tracked[index].sample);
    let primary_gtid = primary_sample.and_then(|s| s.gtid_position(true).map(str::to_string));
    let start_barrier = match &previous.start_barrier {
        StartBarrier::Unknown => match (primary.map(|i| tracked[i]), &primary_gtid) {
            (Some(_), Some(position)) => StartBarrier::At(position.clone()),
            // Probed, and no position: none to wait for.
            (Some(p), None) if p.sample.is_some() => StartBarrier::Lifted,
            // Found down before its position was read.
            (Some(p), None) if p.state.checked_at.is_some() && !p.state.healthy => {
                StartBarrier::Lifted
            }
            (Some(_), None) => StartBarrier::Unknown,
            // No primary to read a position from (replicas only).
            (None, _) => StartBarrier::Lifted,
        },
        known => known.clone(),
    };

    let backends = tracked
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let role = match settings.primary_detection {
                PrimaryDetection::Static => t.spec.configured_role,
                PrimaryDetection::ReadOnly if primary == Some(index) => Role::Primary,
                PrimaryDetection::ReadOnly => Role::Replica,
            };
            let conflict_member = settings.primary_detection == PrimaryDetection::ReadOnly
                && role == Role::Replica
                && t.state.healthy
                && t.state.read_only == Some(false);
            let previous_state = previous.backend(&t.spec.name);
            backend_state(
                t,
                role,
                conflict_member,
                primary_sample,
                &start_barrier,
                previous_state,
                settings,
            )
        })
        .collect();

    Topology {
        backends,
        primary,
        writable_conflict,
        generation: previous.generation.wrapping_add(1),
        primary_gtid,
        start_barrier,
    }
}

fn backend_state(
    tracked: &Tracked<'_>,
    role: Role,
    writable_conflict: bool,
    primary_sample: Option<&ProbeSample>,
    start_barrier: &StartBarrier,
    previous: Option<&BackendState>,
    settings: &MonitorSettings,
) -> BackendState {
    let primary_gtid = primary_sample.and_then(|s| s.gtid_position(true));
    let mut state = tracked.state.clone();
    state.role = role;
    state.gtid_position =
        tracked.sample.and_then(|s| s.gtid_position(role == Role::Primary).map(str::to_string));
    (state.lag_ms, state.lag_source) = match (role, tracked.sample) {
        (Role::Primary, _) => (None, LagSource::None),
        (Role::Replica, None) => (None, LagSource::Unknown),
        (Role::Replica, Some(sample)) => assess_lag(&LagInputs {
            flavor: sample.flavor,
            replica_position: state.gtid_position.as_deref(),
            primary_position: tracked.primary_gtid_at_sample.or(primary_gtid),
            heartbeat_ms: sample.heartbeat_micros.map(|ts| heartbeat_lag_ms(ts, sample.sampled_at)),
            seconds_behind_master: sample.replication.as_ref().and_then(|r| r.seconds_behind),
        }),
    };
    state.ahead_of_primary = role == Role::Replica
        && match ahead_of_primary(tracked.sample, primary_sample) {
            Some(ahead) => ahead,
            None => previous.is_some_and(|p| p.ahead_of_primary),
        };
    if state.ahead_of_primary && state.replication_error.is_none() {
        state.replication_error = Some(format!(
            "applied GTID position {} is past the primary's {}: the primary's GTID history \
             was reset (RESET MASTER?) or this server has transactions of its own",
            state.gtid_position.as_deref().unwrap_or(""),
            primary_gtid.unwrap_or("")
        ));
    }
    let eligibility = assess_eligibility(&ReplicaView {
        healthy: state.healthy,
        role,
        writable_conflict,
        sql_thread_running: state.sql_thread_running,
        replication_error: state.replication_error.is_some(),
        lag: state.lag_ms.map(Duration::from_millis),
        weight: tracked.spec.weight,
        max_lag: tracked.spec.max_lag.unwrap_or(settings.max_lag),
        unknown_lag: settings.unknown_lag,
        previous: previous.and_then(|p| p.exclusion),
    });
    state.past_start = previous.is_some_and(|p| p.past_start)
        || past_start_barrier(&state, tracked.sample, start_barrier);
    if eligibility.eligible && role == Role::Replica && !state.past_start {
        state.eligible = false;
        state.effective_weight = 0.0;
        state.exclusion = Some(Exclusion::BehindStart);
        return state;
    }
    state.eligible = eligibility.eligible;
    state.effective_weight = eligibility.effective_weight;
    state.exclusion = eligibility.exclusion;
    state
}

/// Whether a MariaDB replica's applied position is past its primary's in
/// a domain both name, from a primary reading that started after the
/// replica's had ended (so the primary's position then held all the
/// replica had applied, had their histories been one). None when the two
/// readings cannot be ordered so, or are not MariaDB positions.
fn ahead_of_primary(replica: Option<&ProbeSample>, primary: Option<&ProbeSample>) -> Option<bool> {
    let (replica, primary) = (replica?, primary?);
    if replica.flavor != Flavor::MariaDb
        || primary.flavor != Flavor::MariaDb
        || primary.started_at < replica.sampled_at
    {
        return None;
    }
    let applied: gtid::MariaDbPosition = replica.gtid_slave_pos.as_deref()?.parse().ok()?;
    let logged: gtid::MariaDbPosition = primary.gtid_binlog_pos.as_deref()?.parse().ok()?;
    Some(applied.ahead_of(&logged))
}

/// Whether a replica has applied the start barrier's position, or has no
/// position to compare with it.
fn past_start_barrier(
    state: &BackendState,
    sample: Option<&ProbeSample>,
    barrier: &StartBarrier,
) -> bool {
    match (barrier, &state.gtid_position) {
        (StartBarrier::Lifted, _) => true,
        (StartBarrier::Unknown, _) => false,
        (StartBarrier::At(start), Some(applied)) => {
            let flavor = sample.map_or(Flavor::MariaDb, |s| s.flavor);
            gtid::position_covers(flavor, applied, start)
        }
        // Probed, and replicating without GTID positions.
        (StartBarrier::At(_), None) => sample.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Exclusion;
    use crate::monitor::sample::ReplicationStatus;

    fn settings() -> MonitorSettings {
        MonitorSettings::default()
    }

    fn spec(name: &str, role: Role) -> BackendSpec {
        BackendSpec::new(name, &format!("{name}:3306"), role)
    }

    /// A state after `n` good probes (healthy, version known).
    fn up(spec: &BackendSpec) -> BackendState {
        BackendState {
            healthy: true,
            server_version: Some("10.11.19-MariaDB".into()),
            consecutive_successes: 5,
            ..BackendState::unknown(spec)
        }
    }

    fn sample(read_only: bool, binlog: &str, slave: &str) -> ProbeSample {
        ProbeSample {
            server_version: "10.11.19-MariaDB".into(),
            flavor: Flavor::MariaDb,
            read_only: Some(read_only),
            gtid_binlog_pos: Some(binlog.into()),
            gtid_slave_pos: Some(slave.into()),
            gtid_executed: None,
            replication: None,
            heartbeat_micros: None,
            sampled_at: UNIX_EPOCH + Duration::from_secs(1_000),
            started_at: UNIX_EPOCH + Duration::from_secs(1_000),
        }
    }

    fn replica_sample(slave: &str, seconds_behind: Option<u64>, sql: bool) -> ProbeSample {
        ProbeSample {
            replication: Some(ReplicationStatus {
                io_running: Some(true),
                sql_running: Some(sql),
                seconds_behind,
                last_sql_error: None,
                last_io_error: None,
            }),
            ..sample(true, slave, slave)
        }
    }

    fn roles(list: &[(bool, Option<bool>, Role)]) -> Vec<RoleView> {
        list.iter()
            .map(|&(healthy, read_only, configured_role)| RoleView {
                healthy,
                read_only,
                configured_role,
            })
            .collect()
    }

    // --- health ---

    #[test]
    fn new_backend_is_unhealthy_until_first_success() {
        let spec = spec("a", Role::Replica);
        let fresh = BackendState::unknown(&spec);
        assert!(!fresh.healthy);
        assert_eq!(next_health(&fresh, true, &settings()), (true, 0, 1));
    }

    #[test]
    fn new_backend_failing_first_is_healthy_on_first_success() {
        let spec = spec("a", Role::Replica);
        let mut state = BackendState::unknown(&spec);
        (state.healthy, state.consecutive_failures, state.consecutive_successes) =
            next_health(&state, false, &settings());
        assert!(!state.healthy);
        assert!(next_health(&state, true, &settings()).0);
    }

    #[test]
    fn healthy_backend_goes_down_after_fail_after_failures() {
        let spec = spec("a", Role::Replica);
        let mut state = up(&spec);
        for expected in [true, true, false] {
            (state.healthy, state.consecutive_failures, state.consecutive_successes) =
                next_health(&state, false, &settings());
            assert_eq!(state.healthy, expected, "after {} failures", state.consecutive_failures);
        }
    }

    #[test]
    fn success_resets_failure_count() {
        let spec = spec("a", Role::Replica);
        let state = BackendState { consecutive_failures: 2, ..up(&spec) };
        assert_eq!(next_health(&state, true, &settings()), (true, 0, 6));
    }

    #[test]
    fn down_backend_recovers_after_recover_after_successes() {
        let spec = spec("a", Role::Replica);
        let mut state = BackendState {
            healthy: false,
            consecutive_failures: 4,
            consecutive_successes: 0,
            ..up(&spec)
        };
        for expected in [false, true] {
            (state.healthy, state.consecutive_failures, state.consecutive_successes) =
                next_health(&state, true, &settings());
            assert_eq!(state.healthy, expected);
        }
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let spec = spec("a", Role::Replica);
        let settings = MonitorSettings { fail_after: 0, recover_after: 0, ..settings() };
        assert!(!next_health(&up(&spec), false, &settings).0);
        let down = BackendState { healthy: false, ..up(&spec) };
        assert!(next_health(&down, true, &settings).0);
    }

    #[test]
    fn failed_probe_keeps_last_observations_and_records_error() {
        let spec = spec("a", Role::Replica);
        let good = sample(true, "0-1-5", "0-1-5");
        let at = UNIX_EPOCH + Duration::from_secs(5);
        let state = apply_probe(&BackendState::unknown(&spec), Ok(&good), at, &settings());
        let state = apply_probe(&state, Err("connection refused"), at, &settings());
        assert_eq!(state.read_only, Some(true));
        assert!(state.healthy);
        assert_eq!(state.last_error.as_deref(), Some("connection refused"));
        assert_eq!(state.consecutive_failures, 1);
    }

    // --- role ---

    #[test]
    fn single_writable_server_is_primary() {
        let views = roles(&[(true, Some(true), Role::Primary), (true, Some(false), Role::Replica)]);
        assert_eq!(detect_primary(&views, Some(0), PrimaryDetection::ReadOnly), (Some(1), false));
    }

    #[test]
    fn two_writable_servers_keep_previous_primary() {
        let views = roles(&[
            (true, Some(false), Role::Primary),
            (true, Some(false), Role::Replica),
            (true, Some(true), Role::Replica),
        ]);
        assert_eq!(detect_primary(&views, Some(1), PrimaryDetection::ReadOnly), (Some(1), true));
    }

    #[test]
    fn two_writable_servers_without_previous_seed_configured_primary() {
        let views =
            roles(&[(true, Some(false), Role::Replica), (true, Some(false), Role::Primary)]);
        assert_eq!(detect_primary(&views, None, PrimaryDetection::ReadOnly), (Some(1), true));
    }

    #[test]
    fn no_writable_server_keeps_previous_primary() {
        let views =
            roles(&[(false, Some(false), Role::Primary), (true, Some(true), Role::Replica)]);
        assert_eq!(detect_primary(&views, Some(0), PrimaryDetection::ReadOnly), (Some(0), false));
    }

    #[test]
    fn unhealthy_writable_server_is_not_a_candidate() {
        let views =
            roles(&[(false, Some(false), Role::Primary), (true, Some(false), Role::Replica)]);
        assert_eq!(detect_primary(&views, Some(0), PrimaryDetection::ReadOnly), (Some(1), false));
    }

    #[test]
    fn unknown_read_only_is_not_writable() {
        let views = roles(&[(true, None, Role::Replica), (true, Some(true), Role::Replica)]);
        assert_eq!(detect_primary(&views, None, PrimaryDetection::ReadOnly), (None, false));
    }

    #[test]
    fn static_detection_uses_configured_primary() {
        let views =
            roles(&[(true, Some(false), Role::Replica), (false, Some(true), Role::Primary)]);
        assert_eq!(detect_primary(&views, Some(0), PrimaryDetection::Static), (Some(1), false));
    }

    #[test]
    fn stale_previous_index_is_ignored() {
        let views = roles(&[(true, Some(true), Role::Replica)]);
        assert_eq!(detect_primary(&views, Some(7), PrimaryDetection::ReadOnly), (None, false));
    }

    // --- lag ---

    fn lag_inputs<'a>(replica: Option<&'a str>, primary: Option<&'a str>) -> LagInputs<'a> {
        LagInputs {
            flavor: Flavor::MariaDb,
            replica_position: replica,
            primary_position: primary,
            heartbeat_ms: None,
            seconds_behind_master: None,
        }
    }

    #[test]
    fn replica_covering_primary_gtid_has_zero_lag() {
        let inputs = LagInputs {
            seconds_behind_master: Some(3),
            heartbeat_ms: Some(700),
            ..lag_inputs(Some("0-1-10"), Some("0-1-10"))
        };
        assert_eq!(assess_lag(&inputs), (Some(0), LagSource::Gtid));
    }

    #[test]
    fn heartbeat_wins_over_seconds_behind_master() {
        let inputs = LagInputs {
            seconds_behind_master: Some(3),
            heartbeat_ms: Some(2_450),
            ..lag_inputs(Some("0-1-9"), Some("0-1-10"))
        };
        assert_eq!(assess_lag(&inputs), (Some(2_450), LagSource::Heartbeat));
    }

    #[test]
    fn behind_replica_uses_seconds_behind_master() {
        let inputs = LagInputs {
            seconds_behind_master: Some(3),
            ..lag_inputs(Some("0-1-9"), Some("0-1-10"))
        };
        assert_eq!(assess_lag(&inputs), (Some(3_000), LagSource::SecondsBehindMaster));
    }

    #[test]
    fn null_seconds_behind_master_is_unknown_lag() {
        let inputs = lag_inputs(Some("0-1-9"), Some("0-1-10"));
        assert_eq!(assess_lag(&inputs), (None, LagSource::Unknown));
    }

    #[test]
    fn unknown_primary_position_skips_gtid() {
        let inputs =
            LagInputs { seconds_behind_master: Some(0), ..lag_inputs(Some("0-1-9"), None) };
        assert_eq!(assess_lag(&inputs), (Some(0), LagSource::SecondsBehindMaster));
    }

    #[test]
    fn mysql_gtid_set_containing_primary_set_has_zero_lag() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let replica = format!("{uuid}:1-100");
        let primary = format!("{uuid}:1-90");
        let inputs =
            LagInputs { flavor: Flavor::MySql, ..lag_inputs(Some(&replica), Some(&primary)) };
        assert_eq!(assess_lag(&inputs), (Some(0), LagSource::Gtid));
    }

    #[test]
    fn heartbeat_lag_is_now_minus_ts_in_ms() {
        let now = UNIX_EPOCH + Duration::from_micros(1_700_000_002_500_900);
        assert_eq!(heartbeat_lag_ms(1_700_000_000_000_000, now), 2_500);
    }

    #[test]
    fn heartbeat_in_the_future_is_zero_lag() {
        let now = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(heartbeat_lag_ms(20_000_000, now), 0);
        assert!(heartbeat_lag_ms(i64::MIN, now) > 0, "garbage saturates, no panic");
    }

    // --- whole topology ---

    /// Three backends after good probes; tests change a sample or the
    /// health, and `build` derives the states through [`apply_probe`].
    struct Lab {
        specs: Vec<BackendSpec>,
        healthy: Vec<bool>,
        samples: Vec<ProbeSample>,
        reference: Vec<Option<&'static str>>,
    }

    impl Lab {
        fn new() -> Lab {
            let specs = vec![
                spec("p", Role::Primary),
                spec("r1", Role::Replica),
                spec("r2", Role::Replica),
            ];
            Lab {
                specs,
                healthy: vec![true; 3],
                reference: vec![None; 3],
                samples: vec![
                    sample(false, "0-1-10", ""),
                    replica_sample("0-1-10", Some(0), true),
                    replica_sample("0-1-8", Some(2), true),
                ],
            }
        }

        fn build(&self, previous: &Topology, settings: &MonitorSettings) -> Topology {
            let at = UNIX_EPOCH + Duration::from_secs(1_000);
            let states: Vec<BackendState> = (0..self.specs.len())
                .map(|i| {
                    let state =
                        apply_probe(&up(&self.specs[i]), Ok(&self.samples[i]), at, settings);
                    BackendState { healthy: self.healthy[i], ..state }
                })
                .collect();
            let tracked: Vec<Tracked> = (0..self.specs.len())
                .map(|i| Tracked {
                    spec: &self.specs[i],
                    state: &states[i],
                    sample: Some(&self.samples[i]),
                    primary_gtid_at_sample: self.reference[i],
                })
                .collect();
            build_topology(previous, &tracked, settings)
        }
    }

    #[test]
    fn topology_marks_writable_primary_and_replica_lag() {
        let lab = Lab::new();
        let topology = lab.build(&Topology::default(), &settings());
        assert_eq!(topology.primary, Some(0));
        assert_eq!(topology.primary_gtid.as_deref(), Some("0-1-10"));
        assert_eq!(topology.generation, 1);
        let [p, r1, r2] = &topology.backends[..] else { panic!() };
        assert_eq!((p.role, p.lag_source, p.eligible), (Role::Primary, LagSource::None, false));
        assert_eq!(p.exclusion, Some(Exclusion::Primary));
        assert_eq!(p.gtid_position.as_deref(), Some("0-1-10"));
        assert_eq!((r1.lag_ms, r1.lag_source), (Some(0), LagSource::Gtid));
        assert!(r1.eligible);
        assert_eq!(r1.effective_weight, 1.0);
        assert_eq!((r2.lag_ms, r2.lag_source), (Some(2_000), LagSource::SecondsBehindMaster));
        assert_eq!(r2.exclusion, Some(Exclusion::LagTooHigh));
    }

    #[test]
    fn sql_thread_stopped_is_ineligible() {
        let mut lab = Lab::new();
        lab.samples[1] = replica_sample("0-1-10", Some(0), false);
        let topology = lab.build(&Topology::default(), &settings());
        let r1 = &topology.backends[1];
        assert_eq!(r1.lag_ms, Some(0));
        assert!(!r1.eligible);
        assert_eq!(r1.exclusion, Some(Exclusion::SqlThreadStopped));
    }

    #[test]
    fn replication_error_is_ineligible() {
        let mut lab = Lab::new();
        if let Some(replication) = &mut lab.samples[1].replication {
            replication.sql_running = Some(false);
            replication.last_sql_error = Some("Duplicate entry '1'".into());
        }
        let topology = lab.build(&Topology::default(), &settings());
        assert_eq!(topology.backends[1].exclusion, Some(Exclusion::ReplicationError));
    }

    #[test]
    fn promoted_replica_becomes_primary_and_old_primary_a_replica() {
        let mut lab = Lab::new();
        let before = lab.build(&Topology::default(), &settings());
        lab.samples[0] = replica_sample("0-1-10", Some(0), true);
        lab.samples[1] = sample(false, "0-1-11", "0-1-10");
        let after = lab.build(&before, &settings());
        assert_eq!(after.primary, Some(1));
        assert_eq!(after.backends[0].role, Role::Replica);
        assert_eq!(after.primary_gtid.as_deref(), Some("0-1-11"));
    }

    #[test]
    fn writable_replica_in_conflict_takes_no_reads() {
        let mut lab = Lab::new();
        let before = lab.build(&Topology::default(), &settings());
        lab.samples[1].read_only = Some(false);
        let after = lab.build(&before, &settings());
        assert_eq!(after.primary, Some(0));
        assert!(after.writable_conflict);
        assert_eq!(after.backends[1].exclusion, Some(Exclusion::WritableConflict));
    }

    #[test]
    fn a_removed_backend_is_never_the_primary() {
        // The old primary, removed by a reload, is still writable; the
        // promoted replica is the primary, with no writable conflict.
        let mut lab = Lab::new();
        lab.specs[0].removed = true;
        lab.specs[0].configured_role = Role::Replica;
        lab.samples[1] = sample(false, "0-1-11", "0-1-10");
        let topology = lab.build(&Topology::default(), &settings());
        assert_eq!(topology.primary, Some(1));
        assert!(!topology.writable_conflict);
        assert!(!topology.backends[0].eligible);
    }

    #[test]
    fn previous_primary_is_matched_by_name_after_reorder() {
        let mut lab = Lab::new();
        let before = lab.build(&Topology::default(), &settings());
        lab.specs.swap(0, 2);
        lab.healthy.swap(0, 2);
        lab.samples.swap(0, 2);
        lab.samples[2].read_only = Some(true); // none writable now: keep "p"
        let after = lab.build(&before, &settings());
        assert_eq!(after.primary, Some(2));
        assert_eq!(after.backends[2].name, "p");
    }

    #[test]
    fn replica_is_compared_with_primary_position_known_when_it_was_probed() {
        let mut lab = Lab::new();
        lab.samples[0].gtid_binlog_pos = Some("0-1-12".into()); // primary moved on since
        lab.reference[1] = Some("0-1-10");
        let topology = lab.build(&Topology::default(), &settings());
        let r1 = &topology.backends[1];
        assert_eq!((r1.lag_ms, r1.lag_source), (Some(0), LagSource::Gtid));
        assert_eq!(topology.primary_gtid.as_deref(), Some("0-1-12"));
    }

    #[test]
    fn replica_without_reference_is_compared_with_newest_primary_position() {
        let mut lab = Lab::new();
        lab.samples[0].gtid_binlog_pos = Some("0-1-12".into());
        let topology = lab.build(&Topology::default(), &settings());
        let r1 = &topology.backends[1];
        assert_eq!((r1.lag_ms, r1.lag_source), (Some(0), LagSource::SecondsBehindMaster));
    }

    #[test]
    fn unhealthy_replica_is_ineligible() {
        let mut lab = Lab::new();
        lab.healthy[1] = false;
        let topology = lab.build(&Topology::default(), &settings());
        assert_eq!(topology.backends[1].exclusion, Some(Exclusion::Unhealthy));
        assert_eq!(topology.backends[1].effective_weight, 0.0);
    }

    #[test]
    fn per_backend_max_lag_overrides_global() {
        let mut lab = Lab::new();
        lab.specs[2].max_lag = Some(Duration::from_secs(4));
        let running = Topology { start_barrier: StartBarrier::Lifted, ..Topology::default() };
        let topology = lab.build(&running, &settings());
        let r2 = &topology.backends[2];
        assert!(r2.eligible);
        assert!((r2.effective_weight - 0.5).abs() < 1e-9);
    }

    // --- the start barrier ---

    /// r2 two transactions behind and 0.5 s late: within a 4 s limit.
    fn lab_with_r2_slightly_behind() -> Lab {
        let mut lab = Lab::new();
        lab.specs[2].max_lag = Some(Duration::from_secs(4));
        lab
    }

    #[test]
    fn a_replica_behind_the_primarys_first_position_takes_no_reads_until_past_it() {
        let mut lab = lab_with_r2_slightly_behind();
        let first = lab.build(&Topology::default(), &settings());
        assert_eq!(first.start_barrier, StartBarrier::At("0-1-10".into()));
        assert!(first.backends[1].eligible, "r1 has the primary's position");
        assert_eq!(first.backends[2].exclusion, Some(Exclusion::BehindStart));
        assert_eq!(first.backends[2].effective_weight, 0.0);
        // r2 applies it; the primary moves on, r2 behind again: it stays in.
        lab.samples[2] = replica_sample("0-1-10", Some(0), true);
        let second = lab.build(&first, &settings());
        assert!(second.backends[2].eligible);
        lab.samples[0] = sample(false, "0-1-20", "");
        lab.samples[2] = replica_sample("0-1-12", Some(2), true);
        let third = lab.build(&second, &settings());
        assert_eq!(third.start_barrier, StartBarrier::At("0-1-10".into()));
        assert!(third.backends[2].eligible, "past the barrier once is enough");
    }

    /// The first topology, from `states`, with no good probe of the
    /// primary yet (the replicas' samples from `lab`).
    fn first_topology_without_primary_sample(lab: &Lab, states: &[BackendState]) -> Topology {
        let tracked: Vec<Tracked> = (0..3)
            .map(|i| Tracked {
                spec: &lab.specs[i],
                state: &states[i],
                sample: (i > 0).then_some(&lab.samples[i]),
                primary_gtid_at_sample: None,
            })
            .collect();
        build_topology(&Topology::default(), &tracked, &settings())
    }

    #[test]
    fn replicas_wait_for_the_primarys_first_probe() {
        let lab = lab_with_r2_slightly_behind();
        let states: Vec<BackendState> = lab.specs.iter().map(up).collect();
        let topology = first_topology_without_primary_sample(&lab, &states);
        assert_eq!(topology.start_barrier, StartBarrier::Unknown);
        assert_eq!(topology.backends[1].exclusion, Some(Exclusion::BehindStart));
    }

    #[test]
    fn a_primary_found_down_before_its_first_probe_lifts_the_barrier() {
        let lab = lab_with_r2_slightly_behind();
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let down = apply_probe(
            &BackendState::unknown(&lab.specs[0]),
            Err("connection refused"),
            at,
            &settings(),
        );
        let states = [down, up(&lab.specs[1]), up(&lab.specs[2])];
        let topology = first_topology_without_primary_sample(&lab, &states);
        assert_eq!(topology.start_barrier, StartBarrier::Lifted);
        assert!(topology.backends[1].eligible && topology.backends[2].eligible);
    }

    #[test]
    fn a_replica_past_the_primarys_position_read_after_it_is_excluded() {
        let mut lab = Lab::new();
        // The primary's history restarted (RESET MASTER): it logs 0-1-3
        // now, read after the replicas had applied up to 0-1-10.
        lab.samples[0].gtid_binlog_pos = Some("0-1-3".into());
        let topology = lab.build(&Topology::default(), &settings());
        let r1 = &topology.backends[1];
        assert!(r1.ahead_of_primary);
        assert!(!r1.eligible);
        assert_eq!(r1.exclusion, Some(Exclusion::ReplicationError));
        assert!(r1.replication_error.as_deref().is_some_and(|e| e.contains("RESET MASTER")));
        // r2 (0-1-8) is past it too.
        assert!(topology.backends[2].ahead_of_primary);

        // A primary reading that started before the replica's ended
        // cannot order them: the verdict stands until one can.
        lab.samples[0].started_at = UNIX_EPOCH + Duration::from_secs(999);
        let next = lab.build(&topology, &settings());
        assert!(next.backends[1].ahead_of_primary, "kept");
        let fresh = lab.build(&Topology::default(), &settings());
        assert!(!fresh.backends[1].ahead_of_primary, "nothing to keep");

        // Once a later primary reading is not behind, it takes reads again.
        lab.samples[0].started_at = UNIX_EPOCH + Duration::from_secs(1_000);
        lab.samples[0].gtid_binlog_pos = Some("0-1-10".into());
        let healed = lab.build(&next, &settings());
        assert!(!healed.backends[1].ahead_of_primary);
        assert!(healed.backends[1].eligible);
    }

    #[test]
    fn domains_only_one_side_names_and_other_flavors_are_not_compared() {
        let mut lab = Lab::new();
        lab.samples[0].gtid_binlog_pos = Some("0-1-10".into());
        lab.samples[1].gtid_slave_pos = Some("0-1-10,7-9-500".into());
        let topology = lab.build(&Topology::default(), &settings());
        assert!(!topology.backends[1].ahead_of_primary);
        assert!(topology.backends[1].eligible);
        let replica = replica_sample("0-1-10", Some(0), true);
        let primary = ProbeSample { flavor: Flavor::MySql, ..sample(false, "0-1-1", "") };
        assert_eq!(ahead_of_primary(Some(&replica), Some(&primary)), None);
        let primary = sample(false, "0-1-1", "");
        assert_eq!(ahead_of_primary(Some(&replica), Some(&primary)), Some(true));
        assert_eq!(ahead_of_primary(None, Some(&primary)), None);
    }
}
