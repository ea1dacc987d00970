//! The PROXY protocol header: `parse_v1` and `parse_v2` on any bytes, and
//! `read` on any stream. None may panic; `read` consumes the header
//! exactly, never a byte of what follows (the client's own bytes), and
//! reports what parsing those bytes reports.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rwsplit::protocol::proxy_header::{parse_v1, parse_v2, read};

/// Version 1 lines are at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// The fixed part of a version 2 header, and how it starts: `read` takes
/// six bytes before it decides which version it has.
const FIXED: usize = 16;
const V2_START: &[u8] = b"\r\n\r\n\0\r";

fuzz_target!(|data: &[u8]| {
    let _ = parse_v1(data);
    if let Some((fixed, body)) = data.split_first_chunk::<FIXED>() {
        let _ = parse_v2(fixed, body);
    }

    let mut stream = data;
    let header = common::ready(read(&mut stream));
    let used = data.len() - stream.len();
    assert!(used <= most_read(data), "read {used} bytes of {data:02x?}");
    if let Ok(header) = header {
        let again = if data.starts_with(b"PROXY ") {
            parse_v1(&data[..used])
        } else {
            let (fixed, body) = data.split_first_chunk::<FIXED>().expect("16 bytes were read");
            parse_v2(fixed, &body[..used - FIXED])
        };
        assert_eq!(again, Ok(header));
    }
});

/// How many bytes a header at the start of `data` may take at most.
fn most_read(data: &[u8]) -> usize {
    if data.starts_with(b"PROXY ") {
        return data.windows(2).position(|w| w == b"\r\n").map_or(V1_MAX, |i| (i + 2).min(V1_MAX));
    }
    if !data.starts_with(V2_START) {
        return V2_START.len();
    }
    match data.get(14..FIXED) {
        Some(&[hi, lo]) => FIXED + usize::from(u16::from_be_bytes([hi, lo])),
        _ => FIXED,
    }
}
