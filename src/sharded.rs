//! Counters and histograms that every session worker writes without
//! sharing a cache line with the others.
//!
//! A statement used to bump a handful of process-wide atomics (the route
//! counter, the backend's statement count, its latency histogram); with
//! sessions on two cores, each of those lines moved between the cores at
//! every statement. Here each worker writes its own padded shard and
//! readers (the admin port) add the shards up. Side by side on the lab,
//! one worker thread instead of two took about 0.9 µs less user time per
//! point select; with these shards (and the digest table's and the
//! picker's, which use [`PerWorker`] too) the difference is about 0.5 µs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Shards per value. Workers beyond this share shards (still correct,
/// only contended again).
pub const SHARDS: usize = 8;

thread_local! {
    /// The index of the session worker running on this thread (0 on any
    /// other thread).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the session worker this code runs on (0 outside workers).
pub fn worker() -> usize {
    WORKER.get()
}

/// Marks this thread as session worker `index`.
pub fn set_worker(index: usize) {
    WORKER.set(index);
}

/// A value aligned to its own cache lines (128 bytes covers the adjacent
/// line prefetcher too), so two shards never share one. Also for items of
/// a shard's heap memory that its worker writes (a `Vec` of them starts
/// and ends on a line of its own).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One `T` per worker shard. Only the `T`s themselves are padded: heap
/// memory a `T` owns (a `Vec`'s items) is laid out by the allocator, so
/// items a worker writes are [`Padded`] too.
#[derive(Debug)]
pub struct PerWorker<T> {
    shards: Box<[Padded<T>]>,
}

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        PerWorker { shards: (0..SHARDS).map(|_| Padded(T::default())).collect() }
    }
}

impl<T> PerWorker<T> {
    /// Shards made by `make`.
    pub fn from_fn(make: impl Fn() -> T) -> Self {
        PerWorker { shards: (0..SHARDS).map(|_| Padded(make())).collect() }
    }

    /// The shard of the worker this code runs on.
    pub fn local(&self) -> &T {
        &self.shards[worker() % SHARDS].0
    }

    /// Every shard, for adding them up.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }
}

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(PerWorker<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.local().fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.all().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A level that goes up and down (connections idle in the pools): each
/// worker adds to its own shard; a shard may go below zero when a thing
/// counted on one worker is taken on another, and the sum is right.
#[derive(Debug, Default)]
pub struct Gauge(PerWorker<AtomicI64>);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.local().fetch_add(n, Ordering::Relaxed);
    }

    /// The sum over the workers (never below zero).
    pub fn get(&self) -> usize {
        let sum: i64 = self.0.all().map(|c| c.load(Ordering::Relaxed)).sum();
        usize::try_from(sum).unwrap_or(0)
    }
}

/// Upper bounds of the duration buckets, in seconds (a last bucket takes
/// everything above).
pub const DURATION_BOUNDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The bounds in nanoseconds, for comparing without floating point.
const BOUNDS_NS: [u64; 14] = {
    let mut ns = [0u64; 14];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (DURATION_BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

#[derive(Debug, Default)]
struct Buckets {
    /// Samples per bucket (not cumulative); the last is above every bound.
    counts: [AtomicU64; 15],
    sum_ns: AtomicU64,
}

/// A latency histogram with the fixed [`DURATION_BOUNDS`].
#[derive(Debug, Default)]
pub struct Histogram(PerWorker<Buckets>);

/// What a [`Histogram`] holds, added up over the shards.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts: `cumulative[i]` samples were at most
    /// `DURATION_BOUNDS[i]`; the last entry is the total.
    pub cumulative: [u64; 15],
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        let b = self.0.local();
        b.counts[bucket].fetch_add(1, Ordering::Relaxed);
        b.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; 15];
        let mut sum_ns = 0u64;
        for b in self.0.all() {
            for (total, c) in cumulative.iter_mut().zip(&b.counts) {
                *total += c.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(b.sum_ns.load(Ordering::Relaxed));
        }
        for i in 1..cumulative.len() {
            cumulative[i] += cumulative[i - 1];
        }
        HistogramSnapshot { cumulative, sum_seconds: sum_ns as f64 / 1e9 }
    }
}

/// Runs `work` on `workers` threads at once, each marked as the session
/// worker of its index, and returns what each returned, in index order.
#[cfg(test)]
pub(crate) fn on_workers<T: Send + 'static>(
    workers: usize,
    work: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let work = std::sync::Arc::new(work);
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let work = work.clone();
            std::thread::spawn(move || {
                set_worker(i);
                work(i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("worker thread")).collect()
}

/// Where a value lies: (address, size).
#[cfg(test)]
pub(crate) fn span<T>(value: &T) -> (usize, usize) {
    (value as *const T as usize, std::mem::size_of::<T>())
}

/// Fails unless each span starts a 128-byte line and no line holds spans
/// of two different groups (each group being what one worker writes). The
/// first check holds by layout ([`Padded`]), not by where the allocator
/// happened to put things.
#[cfg(test)]
pub(crate) fn assert_apart(groups: &[Vec<(usize, usize)>]) {
    for &(at, _) in groups.iter().flatten() {
        assert_eq!(at % 128, 0, "not on a line of its own: {at:x}");
    }
    let lines = |g: &Vec<(usize, usize)>| -> std::collections::HashSet<usize> {
        g.iter().flat_map(|&(at, size)| at / 128..=(at + size.max(1) - 1) / 128).collect()
    };
    for (i, a) in groups.iter().enumerate() {
        for b in &groups[i + 1..] {
            assert!(lines(a).is_disjoint(&lines(b)), "shared cache line: {a:x?} and {b:x?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_counts_in_its_own_shard_and_the_counts_add_up() {
        let c = std::sync::Arc::new(Counter::default());
        let counter = c.clone();
        on_workers(SHARDS + 3, move |i| {
            for _ in 0..=i {
                counter.add(1);
            }
        });
        // Worker i added i + 1; workers SHARDS.. share the first shards.
        let shards: Vec<u64> = c.0.all().map(|n| n.load(Ordering::Relaxed)).collect();
        let expected: Vec<u64> = (0..SHARDS)
            .map(|s| (s as u64 + 1) + if s < 3 { (s + SHARDS) as u64 + 1 } else { 0 })
            .collect();
        assert_eq!(shards, expected);
        assert_eq!(c.get(), expected.iter().sum::<u64>());
    }

    #[test]
    fn shards_do_not_share_cache_lines() {
        let c = Counter::default();
        let addrs: Vec<usize> = c.0.all().map(|a| a as *const AtomicU64 as usize).collect();
        assert!(addrs.windows(2).all(|w| w[1] - w[0] >= 128), "{addrs:?}");
    }

    #[test]
    fn a_gauge_adds_up_what_workers_add_and_take_across_shards() {
        let g = std::sync::Arc::new(Gauge::default());
        let gauge = g.clone();
        // Worker 0 counts three in, worker 1 takes two of them out.
        on_workers(2, move |i| gauge.add(if i == 0 { 3 } else { -2 }));
        assert_eq!(g.get(), 1);
        assert_eq!(g.0.all().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>()[..2], [3, -2]);
        g.add(-5);
        assert_eq!(g.get(), 0, "never below zero");
    }

    #[test]
    fn padded_items_of_different_shards_do_not_share_cache_lines() {
        let stats: PerWorker<Vec<Padded<(AtomicU64, AtomicU64)>>> =
            PerWorker::from_fn(|| (0..3).map(|_| Padded(Default::default())).collect());
        let groups: Vec<Vec<_>> = stats.all().map(|v| v.iter().map(span).collect()).collect();
        assert_apart(&groups);
    }

    #[test]
    fn a_sample_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let h = Histogram::default();
        h.record(Duration::from_micros(500)); // exactly the first bound
        h.record(Duration::from_micros(501));
        h.record(Duration::from_millis(7));
        set_worker(3);
        h.record(Duration::from_secs(11)); // above every bound
        set_worker(0);
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[1], 2);
        assert_eq!(s.cumulative[3], 2, "7 ms is above 5 ms");
        assert_eq!(s.cumulative[4], 3);
        assert_eq!(s.cumulative[13], 3);
        assert_eq!(s.cumulative[14], 4);
        assert!((s.sum_seconds - 11.008_001).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
