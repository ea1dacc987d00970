//! Relaying a large result costs no allocation per row and holds memory
//! flat: a million-row result set goes through `relay` from an in-memory
//! backend to a counting client under a counting global allocator.

#[path = "common/mem.rs"]
mod mem;

use mysql_common::constants::CapabilityFlags;
use rwsplit::protocol::packet::PacketReader;
use rwsplit::relay::{Expect, Machine, relay};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, so tests running in parallel do not see each other's allocations.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + layout.size() as i64);
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as i64));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROWS: usize = 1_000_000;

fn relay_million_rows(deprecate_eof: bool) {
    let data = mem::result_set(ROWS, 32, deprecate_eof);
    let total = data.len() as u64;
    let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_TRANSACTIONS;
    if deprecate_eof {
        caps |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut backend = mem::Replay::new(data);
    let mut client = mem::Counter::default();
    let (mut breader, mut creader) = (PacketReader::new(), PacketReader::new());
    let mut machine = Machine::new(Expect::Result, caps);

    let allocations_before = ALLOCATIONS.with(Cell::get);
    assert!(allocations_before > 0, "the counting allocator sees the set-up's allocations");
    let live_before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live_before));
    runtime
        .block_on(relay(
            &mut backend,
            &mut breader,
            &mut client,
            &mut creader,
            &mut machine,
            std::pin::pin!(std::future::pending()),
            None::<fn(&rwsplit::relay::Outcome)>,
        ))
        .expect("relay");
    let allocations = ALLOCATIONS.with(Cell::get) - allocations_before;
    let peak_growth = PEAK.with(Cell::get) - live_before;

    assert_eq!(machine.outcome.rows, ROWS as u64);
    assert_eq!(client.bytes, total, "every byte reaches the client");
    assert!(allocations <= 64, "{allocations} allocations for {ROWS} rows");
    assert!(peak_growth < 1 << 20, "memory grew by {peak_growth} bytes at peak");
    eprintln!(
        "deprecate_eof={deprecate_eof}: {ROWS} rows, {total} bytes in {} writes; \
         {allocations} allocations, peak growth {peak_growth} bytes",
        client.writes
    );
}

#[test]
fn a_million_rows_relay_without_allocation_per_row() {
    relay_million_rows(true);
}

#[test]
fn a_million_rows_relay_without_allocation_per_row_with_eof_packets() {
    relay_million_rows(false);
}
