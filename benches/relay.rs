//! Relay benchmarks: the per-command cost of relaying a small result
//! (sysbench's point select: one row), and the per-row cost of a large
//! result, each beside a plain byte copy of the same response (what a
//! relay that understands nothing would do) in the same run.
//!
//! Run: `cargo bench --bench relay -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/common/mem.rs"]
mod mem;

use criterion::{Criterion, Throughput};
use mysql_common::constants::CapabilityFlags;
use rwsplit::protocol::packet::PacketReader;
use rwsplit::relay::{Expect, Machine, relay};
use std::hint::black_box;

const CAPS: CapabilityFlags = CapabilityFlags::CLIENT_PROTOCOL_41
    .union(CapabilityFlags::CLIENT_TRANSACTIONS)
    .union(CapabilityFlags::CLIENT_DEPRECATE_EOF);

struct Bench {
    runtime: tokio::runtime::Runtime,
    backend: mem::Replay,
    client: mem::Counter,
    breader: PacketReader,
    creader: PacketReader,
}

impl Bench {
    fn new(response: Vec<u8>) -> Bench {
        Bench {
            runtime: tokio::runtime::Builder::new_current_thread().build().unwrap(),
            backend: mem::Replay::new(response),
            client: mem::Counter::default(),
            breader: PacketReader::new(),
            creader: PacketReader::new(),
        }
    }

    /// Relays the whole response once, as the proxy does.
    fn relay(&mut self) -> u64 {
        self.backend.pos = 0;
        let mut machine = Machine::new(Expect::Result, CAPS);
        let b = &mut *self;
        b.runtime
            .block_on(relay(
                &mut b.backend,
                &mut b.breader,
                &mut b.client,
                &mut b.creader,
                &mut machine,
                std::pin::pin!(std::future::pending()),
                None::<fn(&rwsplit::relay::Outcome)>,
            ))
            .expect("relay");
        machine.outcome.rows
    }

    /// Copies the response's bytes to the client without looking at them.
    fn copy(&mut self) -> u64 {
        self.backend.pos = 0;
        let b = &mut *self;
        b.runtime.block_on(tokio::io::copy(&mut b.backend, &mut b.client)).expect("copy")
    }
}

fn benches(c: &mut Criterion) {
    let mut small = Bench::new(mem::result_set(1, 120, true));
    let mut group = c.benchmark_group("small result (1 row, point select)");
    group.bench_function("relay", |b| b.iter(|| black_box(small.relay())));
    group.bench_function("byte copy", |b| b.iter(|| black_box(small.copy())));
    group.finish();

    const ROWS: usize = 10_000;
    let mut large = Bench::new(mem::result_set(ROWS, 100, true));
    let mut group = c.benchmark_group("large result (10,000 rows of 100 bytes)");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("relay", |b| b.iter(|| black_box(large.relay())));
    group.bench_function("byte copy", |b| b.iter(|| black_box(large.copy())));
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
