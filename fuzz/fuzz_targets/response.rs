//! The response tracker: `relay::Machine` fed any packet sequence, and the
//! OK, ERR and EOF decoders on every packet. None may panic; what a decoder
//! returns lies inside its packet; a result row is counted at most once per
//! packet; an OK rewritten for the client parses with the client's
//! capabilities, keeps its counters and carries no GTID the client did not
//! ask for; a rewritten ERR is the statement-timeout error.
//!
//! Input: byte 0 picks the state the response starts in and byte 1 the
//! length of a column-definition or prepare run; bytes 2..6 are the
//! connection's capabilities (little endian); byte 6 bit 0 rewrites for a
//! client view, bits 1, 2, 3 are that view's `session_track`, `wants_gtids`
//! and `omit_empty_info`, bit 4 marks the statement as timed out. Then the
//! packets as on the wire: a 3-byte length, a sequence id, the payload. A
//! length over `INSPECT_LIMIT` is a large packet of which only the first
//! byte follows, which is all the relay passes the machine of one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;
use rwsplit::protocol::messages::{parse_eof, parse_err, parse_ok};
use rwsplit::protocol::session_state::{self, ClientView};
use rwsplit::protocol::status;
use rwsplit::relay::{Expect, INSPECT_LIMIT, Machine, QueryTimeout, STATEMENT_TIMEOUT, Step};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const HEADER: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Some((&[state, run, c0, c1, c2, c3, flags], packets)) = data.split_first_chunk::<7>()
    else {
        return;
    };
    let caps = CapabilityFlags::from_bits_truncate(u32::from_le_bytes([c0, c1, c2, c3]));
    let view = ClientView {
        session_track: flags & 2 != 0,
        wants_gtids: flags & 4 != 0,
        wants_state_change: flags & 32 != 0,
        omit_empty_info: flags & 8 != 0,
    };
    let timeout = Arc::new(QueryTimeout {
        limit: Duration::from_secs(30),
        fired: AtomicBool::new(flags & 16 != 0),
    });
    let mut machine = Machine::new(expect(state, run), caps)
        .with_timeout(Some(timeout))
        .rewriting_for((flags & 1 != 0).then_some(view));

    let mut rest = packets;
    let mut stepped = 0u64;
    while let Some((len, payload, next)) = next_packet(rest) {
        rest = next;
        check_decoders(payload, caps);
        let step = machine.step(len, payload);
        stepped += 1;
        if let Some(rewritten) = machine.take_rewrite() {
            check_rewrite(payload, &rewritten, caps, view);
        }
        assert!(machine.outcome.rows <= stepped);
        assert!(machine.started());
        let _ = (machine.may_end_with_error(), machine.in_rows());
        if step != Ok(Step::Continue) {
            break;
        }
    }
});

/// The states a response can start in. Runs are at least one long: the
/// machine enters a column-definition run from a nonzero column count and
/// the session a prepare run from a nonzero packet count.
fn expect(state: u8, run: u8) -> Expect {
    match state % 7 {
        0 => Expect::Result,
        1 => Expect::Rows,
        2 => Expect::FieldList,
        3 => Expect::Single,
        4 => Expect::Prepare { left: u32::from(run) + 1 },
        5 => Expect::ColumnDefs { left: u64::from(run) + 1 },
        _ => Expect::ColumnsEof,
    }
}

/// The next packet's length, what the machine is shown of it, and the rest.
fn next_packet(stream: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let (&[a, b, c, _seq], body) = stream.split_first_chunk::<HEADER>()?;
    let len = usize::from_le_bytes([a, b, c, 0, 0, 0, 0, 0]);
    let shown = if len > INSPECT_LIMIT { 1 } else { len };
    let (payload, rest) = body.split_at_checked(shown)?;
    Some((len, payload, rest))
}

fn check_decoders(payload: &[u8], caps: CapabilityFlags) {
    for caps in [caps, CapabilityFlags::empty(), CapabilityFlags::CLIENT_SESSION_TRACK] {
        if let Some(ok) = parse_ok(payload, caps) {
            assert!(ok.info.len() + ok.session_state.len() < payload.len());
        }
    }
    if let Some(err) = parse_err(payload) {
        // The state is the packet's or the default HY000.
        assert_eq!(err.state.len(), 5);
        assert!(err.message.len() < payload.len());
    }
    if parse_eof(payload).is_some() {
        assert_eq!(payload[0], 0xFE);
    }
}

fn check_rewrite(payload: &[u8], rewritten: &[u8], caps: CapabilityFlags, view: ClientView) {
    if payload[0] == 0xFF {
        let err = parse_err(rewritten).expect("the timeout error parses");
        assert_eq!(err.code, STATEMENT_TIMEOUT);
        return;
    }
    let ok = parse_ok(payload, caps).expect("only an OK that parsed is rewritten");
    let client_caps = if view.session_track {
        CapabilityFlags::CLIENT_SESSION_TRACK
    } else {
        CapabilityFlags::empty()
    };
    let Some(new) = parse_ok(rewritten, client_caps) else {
        panic!("rewritten OK {rewritten:02x?} does not parse for a client with {client_caps:?}");
    };
    assert_eq!(
        (new.affected_rows, new.last_insert_id, new.warnings),
        (ok.affected_rows, ok.last_insert_id, ok.warnings)
    );
    let changed = status::SESSION_STATE_CHANGED;
    assert_eq!(new.status | changed, ok.status | changed);
    if !view.wants_gtids {
        assert_eq!(session_state::gtid(new.session_state), None, "a GTID reached the client");
    }
}
