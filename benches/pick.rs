//! The replica choice every read makes (`Picker::pick`): ns per pick for
//! a primary and two replicas (the lab's shape) and for a primary and
//! eight replicas.
//!
//! Run: `cargo bench --bench pick -- --warm-up-time 1 --measurement-time 3`

use criterion::Criterion;
use rwsplit::monitor::{BackendSpec, BackendState, Exclusion, LagSource, Role, Topology};
use rwsplit::weighting::{LOAD_BAND, Picker};
use std::hint::black_box;

fn backend(name: &str, role: Role) -> BackendState {
    let spec = BackendSpec::new(name, &format!("{name}:3306"), role);
    let replica = role == Role::Replica;
    BackendState {
        healthy: true,
        eligible: replica,
        effective_weight: if replica { 1.0 } else { 0.0 },
        exclusion: (!replica).then_some(Exclusion::Primary),
        lag_ms: Some(0),
        lag_source: LagSource::Gtid,
        role,
        ..BackendState::unknown(&spec)
    }
}

fn topology(replicas: usize) -> Topology {
    let mut backends = vec![backend("primary", Role::Primary)];
    backends.extend((0..replicas).map(|i| backend(&format!("replica{}", i + 1), Role::Replica)));
    Topology { backends, primary: Some(0), ..Topology::default() }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    for replicas in [2, 8] {
        let topology = topology(replicas);
        let picker = Picker::new();
        let usable = |i: usize| black_box(i) != usize::MAX;
        c.bench_function(&format!("pick among {replicas} replicas"), |b| {
            b.iter(|| {
                picker.pick(black_box(&topology), &usable, None, LOAD_BAND).map(|(i, _guard)| i)
            })
        });
    }
    c.final_summary();
}
