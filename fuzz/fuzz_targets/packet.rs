//! The packet decoder: `PacketReader::read_packet` over any byte stream
//! returns exactly the frames a plain reading of the bytes finds, refuses a
//! frame over its limit before buffering it, and holds memory proportional
//! to its limit, never to a length a header announces.
//!
//! Input: a 2-byte little-endian payload limit, then the stream.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rwsplit::protocol::packet::{FrameError, HEADER, INITIAL_BUFFER, PacketReader};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + layout.size());
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the next frame of a stream is, read by hand.
#[derive(Debug, PartialEq)]
enum Frame<'a> {
    Packet { seq: u8, payload: &'a [u8], rest: &'a [u8] },
    TooLarge(usize),
    Closed,
}

fn next_frame(stream: &[u8], limit: usize) -> Frame<'_> {
    let Some((&[a, b, c, seq], body)) = stream.split_first_chunk::<HEADER>() else {
        return Frame::Closed;
    };
    let len = usize::from_le_bytes([a, b, c, 0, 0, 0, 0, 0]);
    if len > limit {
        return Frame::TooLarge(len);
    }
    match body.split_at_checked(len) {
        Some((payload, rest)) => Frame::Packet { seq, payload, rest },
        None => Frame::Closed,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((limit, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    // Below 16 MiB, so a frame is never continued: first and last sequence
    // ids are the frame's own.
    let limit = usize::from(u16::from_le_bytes(*limit));
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));

    let mut reader = PacketReader::new();
    let mut input = stream;
    let mut expected = stream;
    let mut out = Vec::new();
    loop {
        let got = common::ready(reader.read_packet(&mut input, &mut out, limit));
        match (next_frame(expected, limit), got) {
            (Frame::Packet { seq, payload, rest }, Ok((first, last))) => {
                assert_eq!((first, last), (seq, seq));
                assert_eq!(out, payload);
                expected = rest;
            }
            (Frame::TooLarge(len), Err(FrameError::TooLarge(got, l))) => {
                assert_eq!((got, l), (len, limit));
                break;
            }
            (Frame::Closed, Err(FrameError::Closed)) => break,
            (want, got) => panic!("expected {want:?}, the reader returned {got:?}"),
        }
    }

    // Growth by doubling with the old buffer alive while it is copied, plus
    // `out`: a small multiple of limit and chunk. An allocation sized by a
    // header beyond the limit (up to 16 MiB) is far past it.
    let peak = PEAK.with(Cell::get) - base;
    let bound = 8 * (limit + HEADER + INITIAL_BUFFER);
    assert!(peak <= bound, "peak {peak} bytes held with a limit of {limit} (bound {bound})");
});
