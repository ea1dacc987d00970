//! The fast path allocates nothing: every corpus statement the lexer decides, and a
//! parser-tier cache hit, are classified under a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rwsplit::classify::{Backslashes, Tier, Tier2Cache, classify, classify_with_cache};

struct Counting;

thread_local! {
    // Per thread, so tests running in parallel do not see each other's allocations.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn lexer_tier_classification_does_not_allocate() {
    let sqls: Vec<String> = include_str!("data/statements.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .map(|s| s.replace("\\n", "\n"))
        .collect();
    let cache = Tier2Cache::new(64);
    let mut checked = 0;
    for sql in &sqls {
        let before = allocations();
        let info = classify(sql);
        let info2 = classify_with_cache(sql, Backslashes::Escape, &cache);
        let after = allocations();
        if info.tier == Tier::Lexer {
            assert_eq!(info, info2);
            assert_eq!(after, before, "allocated while classifying: {sql}");
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} lexer-tier statements");
}

#[test]
fn parser_tier_cache_hit_does_not_allocate() {
    let cache = Tier2Cache::new(64);
    let sql = "WITH a AS (SELECT 1 AS x) (SELECT x FROM a)";
    let first = allocations();
    assert_eq!(classify_with_cache(sql, Backslashes::Escape, &cache).tier, Tier::Parser);
    assert!(allocations() > first, "a parse must allocate, or the counter is not counting");
    let before = allocations();
    let info = classify_with_cache(
        "with a as (select 2 as x) (select x from a)",
        Backslashes::Escape,
        &cache,
    );
    let after = allocations();
    assert_eq!(info.tier, Tier::Parser);
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(after, before);
}
