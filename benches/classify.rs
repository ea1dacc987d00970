//! Classifier benchmarks over the statement corpus.
//!
//! Before criterion runs, prints per-statement numbers criterion does not give: the median
//! (and p90, max) of each fast-path statement's own time, the share of statements the
//! parser tier decides, and what the tier-2 cache saves. Then criterion measures the whole
//! fast-path corpus, a sysbench point select, and the parser tier cold and cached.
//!
//! Run: `cargo bench --bench classify -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rwsplit::classify::{Backslashes, Tier, Tier2Cache, classify, classify_with_cache};

fn corpus() -> Vec<String> {
    include_str!("../tests/data/statements.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .map(|s| s.replace("\\n", "\n"))
        .collect()
}

/// Nanoseconds per call of `f`: the best of 7 batches of `reps` calls (the least disturbed).
fn ns_per_call(reps: u32, mut f: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(reps)
        })
        .fold(f64::INFINITY, f64::min)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(all: &[String], fast: &[&String], slow: &[&String]) {
    let mut timed: Vec<(f64, &String)> = fast
        .iter()
        .map(|sql| {
            (
                ns_per_call(2000, || {
                    black_box(classify(black_box(sql)));
                }),
                *sql,
            )
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ns: Vec<f64> = timed.iter().map(|t| t.0).collect();
    let mean = ns.iter().sum::<f64>() / ns.len() as f64;
    println!("== classify, per statement, fast path (lexer tier), {} statements", ns.len());
    println!(
        "   median {:.0} ns   mean {:.0} ns   p90 {:.0} ns   max {:.0} ns",
        percentile(&ns, 0.5),
        mean,
        percentile(&ns, 0.9),
        percentile(&ns, 1.0)
    );
    for (t, sql) in timed.iter().rev().take(3) {
        let short: String = sql.chars().take(70).collect();
        println!("   slow: {t:>6.0} ns  ({} bytes) {short}", sql.len());
    }
    println!(
        "== parser tier: {} of {} statements ({:.1}%)",
        slow.len(),
        all.len(),
        100.0 * slow.len() as f64 / all.len() as f64
    );
    let cache = Tier2Cache::new(1024);
    for sql in slow {
        let cold = ns_per_call(20, || {
            black_box(classify(black_box(sql)));
        });
        classify_with_cache(sql, Backslashes::Escape, &cache);
        let warm = ns_per_call(2000, || {
            black_box(classify_with_cache(black_box(sql), Backslashes::Escape, &cache));
        });
        let short: String = sql.chars().take(60).collect();
        println!("   parse every time {cold:>8.0} ns   cached {warm:>5.0} ns   {short}");
    }
    let s = cache.stats();
    println!("   cache: {} hits, {} misses, {} entries", s.hits, s.misses, s.entries);
}

fn main() {
    let all = corpus();
    let (fast, slow): (Vec<&String>, Vec<&String>) =
        all.iter().partition(|sql| classify(sql).tier == Tier::Lexer);
    report(&all, &fast, &slow);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("corpus");
    g.throughput(Throughput::Elements(fast.len() as u64));
    g.bench_function("classify_fast_path_all", |b| {
        b.iter(|| {
            for sql in &fast {
                black_box(classify(black_box(sql)));
            }
        })
    });
    g.finish();
    c.bench_function("classify_sysbench_point_select", |b| {
        b.iter(|| classify(black_box("SELECT c FROM sbtest1 WHERE id=5012")))
    });
    if let Some(sql) = slow.first() {
        c.bench_function("classify_parser_tier_uncached", |b| b.iter(|| classify(black_box(sql))));
        let cache = Tier2Cache::new(1024);
        c.bench_function("classify_parser_tier_cached", |b| {
            b.iter(|| classify_with_cache(black_box(sql), Backslashes::Escape, &cache))
        });
    }
    c.final_summary();
}
