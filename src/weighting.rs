//! Which replicas may take reads, with what share, and the choice of one
//! replica per read.
//!
//! Pure: [`assess_eligibility`] and [`effective_weight`] turn what the
//! monitor measured into `eligible` / `effective_weight` of a
//! [`BackendState`]. [`Picker`] then chooses among the eligible replicas of
//! a topology snapshot: the one with the fewest requests in flight among
//! those whose smooth weighted round-robin score is within a few reads of
//! the best, so short-term choices follow load and long-run shares follow
//! the weights.

use crate::monitor::{BackendState, Exclusion, Role, Topology, UnknownLag};
use crate::sharded::{Padded, PerWorker};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A replica that was excluded for lag takes reads again only once its lag
/// is below this fraction of `max_lag`.
pub const LAG_RECOVERY_FRACTION: f64 = 0.8;

/// Share of reads of a replica with a known lag:
///
/// ```text
/// effective_weight = weight × (1 − lag / max_lag)    when lag < max_lag
///                  = 0                               when lag ≥ max_lag
/// ```
///
/// So a replica at half the allowed lag gets half its configured share,
/// and one at or beyond `max_lag` gets none. A `max_lag` of zero gives 0.
/// A replica whose lag is unknown is handled by `unknown_lag` instead:
/// `exclude` (default) gives it no reads, `include` gives it its configured
/// weight, unscaled. Once a replica is excluded for lag, it becomes
/// eligible again only when `lag < 0.8 × max_lag` (hysteresis, so a replica
/// hovering around the limit does not flap); its weight is then given by
/// the same formula.
pub fn effective_weight(weight: u32, lag: Duration, max_lag: Duration) -> f64 {
    if lag >= max_lag {
        return 0.0;
    }
    f64::from(weight) * (1.0 - lag.as_secs_f64() / max_lag.as_secs_f64())
}

/// What eligibility depends on, for one backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaView {
    pub healthy: bool,
    pub role: Role,
    /// Writable while another server is the primary.
    pub writable_conflict: bool,
    pub sql_thread_running: Option<bool>,
    /// `Last_SQL_Error` is set.
    pub replication_error: bool,
    /// None when unknown.
    pub lag: Option<Duration>,
    /// Configured weight.
    pub weight: u32,
    /// The backend's own `max_lag`, or the global one.
    pub max_lag: Duration,
    pub unknown_lag: UnknownLag,
    /// The exclusion of the previous publication (for lag hysteresis).
    pub previous: Option<Exclusion>,
}

/// Whether a backend may take reads, and with what weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eligibility {
    pub eligible: bool,
    /// 0 when not eligible.
    pub effective_weight: f64,
    /// Why not; None when eligible.
    pub exclusion: Option<Exclusion>,
}

impl Eligibility {
    fn excluded(reason: Exclusion) -> Eligibility {
        Eligibility { eligible: false, effective_weight: 0.0, exclusion: Some(reason) }
    }

    fn eligible(weight: f64) -> Eligibility {
        Eligibility { eligible: true, effective_weight: weight, exclusion: None }
    }
}

/// Decides eligibility, checking in this order: health, role (the primary
/// is never a read replica here), writable conflict, replication error,
/// SQL thread stopped (both whatever the lag), zero weight, then lag as
/// documented on [`effective_weight`].
pub fn assess_eligibility(view: &ReplicaView) -> Eligibility {
    let reason = if !view.healthy {
        Some(Exclusion::Unhealthy)
    } else if view.role == Role::Primary {
        Some(Exclusion::Primary)
    } else if view.writable_conflict {
        Some(Exclusion::WritableConflict)
    } else if view.replication_error {
        Some(Exclusion::ReplicationError)
    } else if view.sql_thread_running == Some(false) {
        Some(Exclusion::SqlThreadStopped)
    } else if view.weight == 0 {
        Some(Exclusion::ZeroWeight)
    } else {
        None
    };
    if let Some(reason) = reason {
        return Eligibility::excluded(reason);
    }
    let Some(lag) = view.lag else {
        return match view.unknown_lag {
            UnknownLag::Exclude => Eligibility::excluded(Exclusion::LagUnknown),
            UnknownLag::Include => Eligibility::eligible(f64::from(view.weight)),
        };
    };
    let limit = if view.previous == Some(Exclusion::LagTooHigh) {
        view.max_lag.mul_f64(LAG_RECOVERY_FRACTION)
    } else {
        view.max_lag
    };
    let weight = effective_weight(view.weight, lag, view.max_lag);
    if lag >= limit || weight <= 0.0 {
        Eligibility::excluded(Exclusion::LagTooHigh)
    } else {
        Eligibility::eligible(weight)
    }
}

/// Candidates whose running score is within this many times the total
/// weight of the best one are in the load band, and the one with the fewest
/// requests in flight wins (then the highest score). A replica's score
/// falls by the total weight at each read it takes and rises by its own
/// weight at every read, so a replica can run at most about this many reads
/// ahead of its share before the round robin sends reads elsewhere; the
/// long-run split still follows the weights.
///
/// Why a band and not strict round robin: a read that follows the shortest
/// queue keeps every replica's queue even (a replica that just answered
/// takes the next read), while strict alternation sends half the reads to
/// the busier one. Side by side on the 2-core lab (sysbench
/// `oltp_point_select`, 16 threads, 8 rounds of 10 s against haproxy),
/// the band measured p95 1.15× haproxy's (median of rounds) against 1.35×
/// with near-ties only (5 % of the total weight), and QPS 0.914× against
/// 0.884× (means); later sets on that machine drifted by as much, so the
/// gain is not firmly measured (bench/README.md).
pub const LOAD_BAND: f64 = 4.0;

/// A read may stay on the replica its session used last (see
/// [`Picker::pick`]) while that replica's running score is
/// within this many times the total weight of the best score. A replica's
/// score falls by the total weight at each read it takes and rises by its
/// own weight at every read, so this bounds how far the reads taken can
/// run ahead of a replica's share: about this many reads with two equal
/// replicas, whatever the number of reads; the sessions on a replica that
/// ran ahead move to the one behind until the scores meet again.
pub const AFFINITY_MARGIN: f64 = 32.0;

/// Chooses a replica per read: smooth weighted round-robin (as nginx) over
/// the eligible replicas' effective weights, deterministic for a given
/// sequence of topologies and loads; among the replicas in the
/// [`LOAD_BAND`] of the best score, the one with the fewest requests in
/// flight (counted with [`InFlight`] guards) takes the read.
///
/// State is keyed by backend name, so it survives reloads that reorder
/// backends. One short critical section per pick (a few backends, no
/// allocation once every name has been seen).
///
/// Each session worker has its own scores and in-flight counts (see
/// [`crate::sharded`]): a pick never takes a lock another core holds, and
/// since every worker's own sequence follows the weights, so does their
/// sum. Near-ties go by the worker's own requests in flight.
#[derive(Debug, Default)]
pub struct Picker {
    /// Per worker: one slot per backend, in the topology's order
    /// (re-aligned by name when the topology changes, so scores and
    /// counts carry over).
    shards: PerWorker<Mutex<Vec<(String, Slot)>>>,
}

/// Aligned to its own cache lines: its worker writes it at every pick.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    /// The running score of smooth weighted round-robin.
    current: f64,
    in_flight: Arc<Padded<AtomicU64>>,
}

/// One request in flight on a backend; dropping it ends the request.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlight {
    counter: Arc<Padded<AtomicU64>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Picker {
    /// A picker with no history: the first picks follow the weights from scratch.
    pub fn new() -> Picker {
        Picker::default()
    }

    /// Of the backends `candidate` accepts (by index into
    /// `topology.backends`), the one with the fewest reads this worker has
    /// in flight (the first on a tie), counted in flight until the returned
    /// guard is dropped: for a read the router sends without a pick
    /// (read-your-writes by GTID), so that the picks around it see it.
    /// None when there is no candidate.
    pub fn least_busy(
        &self,
        topology: &Topology,
        candidate: impl Fn(usize) -> bool,
    ) -> Option<(usize, InFlight)> {
        let mut slots = self.lock();
        align(&mut slots, topology);
        let index = (0..slots.len())
            .filter(|&i| candidate(i))
            .min_by_key(|&i| slots[i].1.in_flight.0.load(Ordering::Relaxed))?;
        let counter = slots[index].1.in_flight.clone();
        counter.0.fetch_add(1, Ordering::Relaxed);
        Some((index, InFlight { counter }))
    }

    /// Requests in flight on the backend called `name`, all workers'
    /// (for the admin port: it takes every worker's lock).
    pub fn in_flight(&self, name: &str) -> u64 {
        self.shards.all().map(|shard| in_flight_in(&lock(shard), name)).sum()
    }

    /// Requests this worker has in flight on the backend called `name`.
    #[cfg(test)]
    fn in_flight_here(&self, name: &str) -> u64 {
        in_flight_in(&self.lock(), name)
    }

    /// This worker's slots.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Slot)>> {
        lock(self.shards.local())
    }

    /// The replica for the next read, among the eligible replicas that
    /// `usable` accepts (the others are no candidates: they neither gain
    /// nor lose score, so a replica that just failed can be skipped);
    /// None when there is none. The read counts as in flight on the chosen
    /// replica until the returned guard is dropped.
    ///
    /// With `previous` (the replica the session read from last, when
    /// `replica_affinity` is on) the read stays there while it is a
    /// candidate whose score is within [`AFFINITY_MARGIN`] of the best:
    /// servers serve a session's statements with less CPU on the connection
    /// and prepared statements that ran its last ones, and the scores still
    /// hold every replica to its share.
    ///
    /// `band` is the load band's width in reads ([`LOAD_BAND`] unless
    /// `routing.load_band` says otherwise): the wider, the more the reads in
    /// flight decide and the further a replica's count may stray from its
    /// share before the round robin's order binds.
    pub fn pick(
        &self,
        topology: &Topology,
        usable: &dyn Fn(usize) -> bool,
        previous: Option<usize>,
        band: f64,
    ) -> Option<(usize, InFlight)> {
        let is_candidate = |index: usize, backend: &BackendState| {
            backend.eligible
                && backend.role == Role::Replica
                && backend.effective_weight.is_finite()
                && backend.effective_weight > 0.0
                && usable(index)
        };
        let mut slots = self.lock();
        align(&mut slots, topology);

        // Pass 1: add each candidate's weight to its score.
        let mut total = 0.0;
        let mut best_score = f64::NEG_INFINITY;
        for (index, backend) in topology.backends.iter().enumerate() {
            let slot = &mut slots[index].1;
            if !is_candidate(index, backend) {
                if !backend.eligible {
                    // Comes back without credit or debt from before.
                    slot.current = 0.0;
                }
                continue;
            }
            slot.current += backend.effective_weight;
            total += backend.effective_weight;
            best_score = best_score.max(slot.current);
        }
        if total <= 0.0 {
            return None;
        }

        // The session's last replica, while it has not run ahead of its share.
        let kept = previous.filter(|&index| {
            topology.backends.get(index).is_some_and(|b| is_candidate(index, b))
                && slots[index].1.current >= best_score - AFFINITY_MARGIN * total
        });

        let index = match kept {
            Some(index) => index,
            // Pass 2: within the load band of the best, fewest in flight,
            // then highest score, then lowest index.
            None => {
                let margin = band * total;
                let mut chosen: Option<(usize, u64, f64)> = None;
                for (index, backend) in topology.backends.iter().enumerate() {
                    if !is_candidate(index, backend) {
                        continue;
                    }
                    let slot = &slots[index].1;
                    if slot.current < best_score - margin {
                        continue;
                    }
                    let load = slot.in_flight.0.load(Ordering::Relaxed);
                    let better = match chosen {
                        None => true,
                        Some((_, best_load, score)) => {
                            load < best_load || (load == best_load && slot.current > score)
                        }
                    };
                    if better {
                        chosen = Some((index, load, slot.current));
                    }
                }
                chosen?.0
            }
        };
        let slot = &mut slots[index].1;
        slot.current -= total;
        slot.in_flight.0.fetch_add(1, Ordering::Relaxed);
        Some((index, InFlight { counter: slot.in_flight.clone() }))
    }
}

fn in_flight_in(slots: &[(String, Slot)], name: &str) -> u64 {
    slots
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, slot)| slot.in_flight.0.load(Ordering::Relaxed))
}

fn lock(shard: &Mutex<Vec<(String, Slot)>>) -> std::sync::MutexGuard<'_, Vec<(String, Slot)>> {
    // A panic elsewhere while holding the lock leaves only scores behind;
    // they are still usable.
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes `slots[i]` the slot of `topology.backends[i]`, keeping each
/// backend's slot by name (a no-op when nothing changed).
fn align(slots: &mut Vec<(String, Slot)>, topology: &Topology) {
    let aligned = slots.len() == topology.backends.len()
        && slots.iter().zip(&topology.backends).all(|((name, _), b)| *name == b.name);
    if aligned {
        return;
    }
    let mut old = std::mem::take(slots);
    for backend in &topology.backends {
        let slot = match old.iter().position(|(name, _)| *name == backend.name) {
            Some(pos) => old.swap_remove(pos).1,
            None => Slot::default(),
        };
        slots.push((backend.name.clone(), slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{BackendSpec, LagSource};
    use std::collections::VecDeque;

    const MAX_LAG: Duration = Duration::from_secs(1);

    fn view(lag_ms: Option<u64>, previous: Option<Exclusion>) -> ReplicaView {
        ReplicaView {
            healthy: true,
            role: Role::Replica,
            writable_conflict: false,
            sql_thread_running: Some(true),
            replication_error: false,
            lag: lag_ms.map(Duration::from_millis),
            weight: 10,
            max_lag: MAX_LAG,
            unknown_lag: UnknownLag::Exclude,
            previous,
        }
    }

    fn replica(name: &str, weight: f64) -> BackendState {
        let spec = BackendSpec::new(name, &format!("{name}:3306"), Role::Replica);
        BackendState {
            healthy: true,
            eligible: weight > 0.0,
            effective_weight: weight,
            exclusion: None,
            lag_ms: Some(0),
            lag_source: LagSource::Gtid,
            ..BackendState::unknown(&spec)
        }
    }

    fn topology(weights: &[f64]) -> Topology {
        let mut backends = vec![BackendState {
            role: Role::Primary,
            eligible: false,
            exclusion: Some(Exclusion::Primary),
            ..replica("primary", 0.0)
        }];
        for (i, &weight) in weights.iter().enumerate() {
            backends.push(replica(&format!("r{i}"), weight));
        }
        Topology { backends, primary: Some(0), ..Topology::default() }
    }

    /// A read skipping `except`, its guard kept by the caller.
    fn pick_guarded(
        picker: &Picker,
        topology: &Topology,
        except: Option<usize>,
    ) -> Option<(usize, InFlight)> {
        picker.pick(topology, &|index| Some(index) != except, None, LOAD_BAND)
    }

    /// The replica chosen for a read skipping `except` (the read ends at once).
    fn pick_index(picker: &Picker, topology: &Topology, except: Option<usize>) -> Option<usize> {
        pick_guarded(picker, topology, except).map(|(index, _)| index)
    }

    fn counts(picks: impl Iterator<Item = usize>, len: usize) -> Vec<usize> {
        let mut counts = vec![0; len];
        for index in picks {
            counts[index] += 1;
        }
        counts
    }

    #[test]
    fn each_worker_has_its_own_sequence_and_in_flight_counts_add_up() {
        let topo = Arc::new(topology(&[1.0, 2.0]));
        let fresh = Picker::new();
        let from_scratch: Vec<usize> =
            (0..4).map(|_| pick_index(&fresh, &topo, None).unwrap()).collect();
        let picker = Arc::new(Picker::new());
        let (p, t) = (picker.clone(), topo.clone());
        let workers = crate::sharded::on_workers(2, move |_| {
            // A worker's picks start from scratch whatever the other did,
            // and follow the weights.
            let picks: Vec<usize> =
                (0..301).map(|_| pick_index(&p, &t, None).expect("a replica")).collect();
            assert_eq!(picks[..4], from_scratch[..], "a worker's own sequence");
            // One read left in flight on r1, seen by this worker alone.
            let kept = pick_guarded(&p, &t, Some(1)).expect("r1");
            assert_eq!(kept.0, 2);
            std::mem::forget(kept.1);
            assert_eq!(p.in_flight_here("r1"), 1);
            counts(picks[..300].iter().copied(), 3)
        });
        assert_eq!(workers, vec![vec![0, 100, 200]; 2], "each worker's picks");
        assert_eq!(picker.in_flight("r1"), 2, "both workers' reads in flight");
        assert_eq!(picker.in_flight("r0"), 0);
    }

    // --- effective weight and eligibility ---

    #[test]
    fn effective_weight_scales_linearly_with_lag() {
        assert_eq!(effective_weight(10, Duration::ZERO, MAX_LAG), 10.0);
        assert!((effective_weight(10, Duration::from_millis(250), MAX_LAG) - 7.5).abs() < 1e-9);
        assert_eq!(effective_weight(10, MAX_LAG, MAX_LAG), 0.0);
        assert_eq!(effective_weight(10, Duration::from_secs(5), MAX_LAG), 0.0);
        assert_eq!(effective_weight(10, Duration::ZERO, Duration::ZERO), 0.0);
    }

    #[test]
    fn replica_excluded_at_max_lag() {
        let eligibility = assess_eligibility(&view(Some(1_000), None));
        assert!(!eligibility.eligible);
        assert_eq!(eligibility.exclusion, Some(Exclusion::LagTooHigh));
    }

    #[test]
    fn replica_below_max_lag_is_eligible_with_scaled_weight() {
        let eligibility = assess_eligibility(&view(Some(900), None));
        assert!(eligibility.eligible);
        assert!((eligibility.effective_weight - 1.0).abs() < 1e-9);
    }

    #[test]
    fn replica_excluded_at_max_lag_returns_below_80_percent() {
        let excluded = Some(Exclusion::LagTooHigh);
        assert!(!assess_eligibility(&view(Some(900), excluded)).eligible);
        assert!(!assess_eligibility(&view(Some(800), excluded)).eligible);
        let back = assess_eligibility(&view(Some(799), excluded));
        assert!(back.eligible);
        assert!((back.effective_weight - 2.01).abs() < 1e-9);
    }

    #[test]
    fn unknown_lag_excluded_by_default() {
        let eligibility = assess_eligibility(&view(None, None));
        assert_eq!(eligibility.exclusion, Some(Exclusion::LagUnknown));
    }

    #[test]
    fn unknown_lag_included_keeps_configured_weight() {
        let view = ReplicaView {
            unknown_lag: UnknownLag::Include,
            ..view(None, Some(Exclusion::LagTooHigh))
        };
        assert_eq!(assess_eligibility(&view), Eligibility::eligible(10.0));
    }

    #[test]
    fn sql_thread_stopped_is_ineligible_whatever_the_lag() {
        let view = ReplicaView { sql_thread_running: Some(false), ..view(Some(0), None) };
        assert_eq!(assess_eligibility(&view), Eligibility::excluded(Exclusion::SqlThreadStopped));
    }

    #[test]
    fn replication_error_is_ineligible_whatever_the_lag() {
        let view = ReplicaView { replication_error: true, ..view(Some(0), None) };
        assert_eq!(assess_eligibility(&view), Eligibility::excluded(Exclusion::ReplicationError));
    }

    #[test]
    fn unhealthy_and_primary_and_zero_weight_are_ineligible() {
        let unhealthy = ReplicaView { healthy: false, ..view(Some(0), None) };
        let primary = ReplicaView { role: Role::Primary, ..view(Some(0), None) };
        let zero = ReplicaView { weight: 0, ..view(Some(0), None) };
        assert_eq!(assess_eligibility(&unhealthy).exclusion, Some(Exclusion::Unhealthy));
        assert_eq!(assess_eligibility(&primary).exclusion, Some(Exclusion::Primary));
        assert_eq!(assess_eligibility(&zero).exclusion, Some(Exclusion::ZeroWeight));
    }

    #[test]
    fn unknown_sql_thread_state_does_not_exclude() {
        let view = ReplicaView { sql_thread_running: None, ..view(Some(0), None) };
        assert!(assess_eligibility(&view).eligible);
    }

    // --- picker ---

    #[test]
    fn weights_one_to_three_split_ten_thousand_picks() {
        let topology = topology(&[1.0, 3.0]);
        let picker = Picker::new();
        let picks = (0..10_000).map(|_| pick_index(&picker, &topology, None).unwrap());
        assert_eq!(counts(picks, 3), vec![0, 2_500, 7_500]);
    }

    #[test]
    fn weights_one_to_three_hold_within_five_percent_with_requests_in_flight() {
        let topology = topology(&[1.0, 3.0]);
        let picker = Picker::new();
        // Requests finish out of order: a window of 8 in flight, the one
        // picked 3 picks ago finishing first when it is on replica r1.
        let mut outstanding: VecDeque<(usize, InFlight)> = VecDeque::new();
        let mut counts = vec![0usize; 3];
        for i in 0..10_000 {
            let (index, guard) = pick_guarded(&picker, &topology, None).unwrap();
            counts[index] += 1;
            outstanding.push_back((index, guard));
            if outstanding.len() > 8 {
                let at = if i % 3 == 0 && outstanding[2].0 == 1 { 2 } else { 0 };
                outstanding.remove(at);
            }
        }
        let share = counts[2] as f64 / 10_000.0;
        assert!((share - 0.75).abs() <= 0.75 * 0.05, "counts {counts:?}");
    }

    #[test]
    fn tie_goes_to_fewest_in_flight() {
        let topology = topology(&[1.0, 1.0]);
        let picker = Picker::new();
        let (busy, _guard) = picker.least_busy(&topology, |i| i == 1).unwrap();
        assert_eq!(busy, 1);
        // Both scores tie at the first pick; r0 is busier.
        assert_eq!(pick_index(&picker, &topology, None), Some(2));
    }

    #[test]
    fn reads_follow_the_shorter_queue_until_a_replica_runs_a_band_ahead() {
        for band in [LOAD_BAND, 64.0] {
            let topology = topology(&[1.0, 1.0]);
            let picker = Picker::new();
            // r1 is slow: three of its reads stay in flight throughout.
            let _slow: Vec<InFlight> =
                (0..3).map(|_| picker.least_busy(&topology, |i| i == 2).unwrap().1).collect();
            let picks: Vec<usize> = (0..1_000)
                .map(|_| picker.pick(&topology, &|_| true, None, band).unwrap().0)
                .collect();
            // Strict round robin would alternate; the idle r0 takes reads in
            // a row until it is the band's width ahead of its share...
            let run = picks.iter().take_while(|&&i| i == 1).count();
            assert_eq!(run, band as usize + 1, "band {band}: {:?}", &picks[..10]);
            // ...and no further: over many reads the split still follows
            // the equal weights.
            let counts = counts(picks.into_iter(), 3);
            assert!(counts[1].abs_diff(counts[2]) <= band as usize + 1, "band {band}: {counts:?}");
        }
    }

    #[test]
    fn workers_write_their_scores_and_counts_on_lines_of_their_own() {
        let topo = Arc::new(topology(&[1.0, 1.0]));
        let picker = Arc::new(Picker::new());
        let (p, t) = (picker.clone(), topo.clone());
        crate::sharded::on_workers(2, move |_| pick_index(&p, &t, None));
        let groups: Vec<Vec<_>> = picker
            .shards
            .all()
            .take(2)
            .map(|shard| {
                let slots = lock(shard);
                slots
                    .iter()
                    .flat_map(|(_, slot)| {
                        [crate::sharded::span(slot), crate::sharded::span(&*slot.in_flight)]
                    })
                    .collect()
            })
            .collect();
        crate::sharded::assert_apart(&groups);
    }

    #[test]
    fn least_busy_counts_the_candidate_with_fewest_in_flight() {
        let topology = topology(&[1.0, 1.0, 1.0]);
        let picker = Picker::new();
        let r1_or_r2 = |i: usize| i == 2 || i == 3;
        let (first, a) = picker.least_busy(&topology, r1_or_r2).unwrap();
        assert_eq!(first, 2, "a tie goes to the first candidate");
        let (second, b) = picker.least_busy(&topology, r1_or_r2).unwrap();
        assert_eq!(second, 3, "r1 has a read in flight");
        assert_eq!((picker.in_flight("r1"), picker.in_flight("r2")), (1, 1));
        drop((a, b));
        assert_eq!((picker.in_flight("r1"), picker.in_flight("r2")), (0, 0));
        assert!(picker.least_busy(&topology, |_| false).is_none());
        assert!(picker.least_busy(&topology, |i| i == 9).is_none(), "not a backend");
    }

    #[test]
    fn in_flight_guard_decrements_on_drop() {
        let topology = topology(&[1.0]);
        let picker = Picker::new();
        let (index, guard) = pick_guarded(&picker, &topology, None).unwrap();
        assert_eq!(index, 1);
        assert_eq!(picker.in_flight("r0"), 1);
        drop(guard);
        assert_eq!(picker.in_flight("r0"), 0);
    }

    #[test]
    fn replicas_the_caller_cannot_use_are_no_candidates_and_keep_their_score() {
        let topology = topology(&[1.0, 1.0, 1.0]);
        let picker = Picker::new();
        // Replicas 1 and 2 drained or failed: every read goes to 3.
        for _ in 0..10 {
            let (index, _guard) = picker.pick(&topology, &|i| i == 3, None, LOAD_BAND).unwrap();
            assert_eq!(index, 3);
        }
        // Back to all three: the split is even, not skewed by those picks.
        let mut counts = [0; 4];
        for _ in 0..300 {
            counts[pick_index(&picker, &topology, None).unwrap()] += 1;
        }
        assert_eq!(counts[1..], [100, 100, 100]);
        assert!(picker.pick(&topology, &|_| false, None, LOAD_BAND).is_none());
    }

    /// Sixteen sessions reading at four different rates, each asking to
    /// stay on its last replica: (reads per replica, reads that moved).
    fn sessions_with_affinity(
        picker: &Picker,
        topology: &Topology,
        rounds: usize,
    ) -> (Vec<usize>, usize) {
        let mut last: Vec<Option<usize>> = vec![None; 16];
        let mut counts = vec![0usize; topology.backends.len()];
        let mut moved = 0;
        for _ in 0..rounds {
            for (session, previous) in last.iter_mut().enumerate() {
                for _ in 0..=session % 4 {
                    let (index, _guard) =
                        picker.pick(topology, &|_| true, *previous, LOAD_BAND).unwrap();
                    moved += usize::from(previous.is_some_and(|p| p != index));
                    *previous = Some(index);
                    counts[index] += 1;
                }
            }
        }
        (counts, moved)
    }

    #[test]
    fn sessions_keep_their_replica_and_the_split_follows_the_weights() {
        // 40 reads per round, 100,000 reads in all.
        for weights in [[1.0, 1.0], [1.0, 3.0]] {
            let topology = topology(&weights);
            let picker = Picker::new();
            let (counts, moved) = sessions_with_affinity(&picker, &topology, 2_500);
            let total: f64 = weights.iter().sum();
            for (i, w) in weights.iter().enumerate() {
                let ideal = 100_000.0 * w / total;
                // Within the margin (plus the read that crosses it) of the share.
                let off = (counts[i + 1] as f64 - ideal).abs();
                assert!(off <= AFFINITY_MARGIN + 1.0, "weights {weights:?}: counts {counts:?}");
            }
            // Sessions of different speeds: few reads move (345 and 0 here).
            assert!(moved < 1_000, "weights {weights:?}: {moved} reads moved");
        }
    }

    #[test]
    fn a_kept_replica_that_cannot_be_used_is_left() {
        let mut topology = topology(&[1.0, 1.0]);
        let picker = Picker::new();
        let (index, _) = picker.pick(&topology, &|i| i != 1, Some(1), LOAD_BAND).unwrap();
        assert_eq!(index, 2, "not usable by the caller");
        topology.backends[2].eligible = false;
        let (index, _) = picker.pick(&topology, &|_| true, Some(2), LOAD_BAND).unwrap();
        assert_eq!(index, 1, "no longer eligible");
        let (index, _) = picker.pick(&topology, &|_| true, Some(0), LOAD_BAND).unwrap();
        assert_eq!(index, 1, "the primary is no candidate");
        let (index, _) = picker.pick(&topology, &|_| true, Some(9), LOAD_BAND).unwrap();
        assert_eq!(index, 1, "a position the topology does not have");
    }

    #[test]
    fn without_a_previous_replica_one_session_alternates() {
        let topology = topology(&[1.0, 1.0]);
        let picker = Picker::new();
        let picks: Vec<usize> =
            (0..6).map(|_| picker.pick(&topology, &|_| true, None, LOAD_BAND).unwrap().0).collect();
        assert_eq!(picks, vec![1, 2, 1, 2, 1, 2]);
    }

    #[test]
    fn pick_skips_except() {
        let topology = topology(&[5.0, 1.0]);
        let picker = Picker::new();
        for _ in 0..10 {
            assert_eq!(pick_index(&picker, &topology, Some(1)), Some(2));
        }
    }

    #[test]
    fn no_eligible_replica_picks_none() {
        let picker = Picker::new();
        assert_eq!(pick_index(&picker, &topology(&[]), None), None);
        assert_eq!(pick_index(&picker, &topology(&[0.0, 0.0]), None), None);
        assert_eq!(pick_index(&picker, &topology(&[2.0]), Some(1)), None);
    }

    #[test]
    fn primary_is_never_picked_even_if_marked_eligible() {
        let mut topology = topology(&[]);
        topology.backends[0].eligible = true;
        topology.backends[0].effective_weight = 1.0;
        assert_eq!(pick_index(&Picker::new(), &topology, None), None);
    }

    #[test]
    fn lag_scaled_weights_shift_the_split() {
        // Lag at 3/4 of max_lag: weight 1 × 0.25 against 1 × 1.
        let topology = topology(&[
            effective_weight(1, Duration::from_millis(750), MAX_LAG),
            effective_weight(1, Duration::ZERO, MAX_LAG),
        ]);
        let picker = Picker::new();
        let picks = (0..1_000).map(|_| pick_index(&picker, &topology, None).unwrap());
        assert_eq!(counts(picks, 3), vec![0, 200, 800]);
    }

    #[test]
    fn state_follows_names_across_reorder() {
        let picker = Picker::new();
        let before = topology(&[1.0, 1.0]);
        let first = pick_index(&picker, &before, None).unwrap();
        let mut after = before.clone();
        after.backends.swap(1, 2);
        let second = pick_index(&picker, &after, None).unwrap();
        assert_ne!(before.backends[first].name, after.backends[second].name);
    }

    #[test]
    fn picker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Picker>();
        assert_send_sync::<InFlight>();
    }
}
