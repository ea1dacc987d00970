//! The few response packets the proxy builds or decodes itself: OK, ERR
//! and EOF. Everything else is relayed without being decoded.

use super::packet::{Cursor, put_lenenc};
use mysql_common::constants::{CapabilityFlags, StatusFlags};

/// ER_NO_SUCH_TABLE: "Table 'db.t' doesn't exist".
pub const NO_SUCH_TABLE: u16 = 1146;

/// ER_OPTION_PREVENTS_STATEMENT: "The MariaDB server is running with the
/// --read-only option so it cannot execute this statement" (and other
/// options).
pub const OPTION_PREVENTS_STATEMENT: u16 = 1290;

/// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
pub const READ_ONLY_TRANSACTION: u16 = 1792;

/// A decoded OK packet (also the OK that replaces EOF with DEPRECATE_EOF).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ok<'a> {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: &'a [u8],
    /// Raw session-state-change data, when the status says it changed.
    pub session_state: &'a [u8],
    /// Bytes were left after the session-state block: it was not read as
    /// the server meant it, and what it reported (a GTID) is unknown.
    pub unread_state: bool,
}

/// Decodes an OK packet (first byte 0x00 or 0xFE); `caps` are the
/// capabilities negotiated on the connection it came from.
pub fn parse_ok(payload: &[u8], caps: CapabilityFlags) -> Option<Ok<'_>> {
    let mut c = Cursor::new(payload);
    let header = c.u8()?;
    if header != 0x00 && header != 0xFE {
        return None;
    }
    let mut ok = Ok { affected_rows: c.lenenc()?, last_insert_id: c.lenenc()?, ..Ok::default() };
    // A pre-4.1 OK would end here; every server we talk to is 4.1+.
    ok.status = c.u16().unwrap_or(0);
    ok.warnings = c.u16().unwrap_or(0);
    if caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
        if !c.is_empty() {
            ok.info = c.lenenc_bytes()?;
        }
        if ok.status & StatusFlags::SERVER_SESSION_STATE_CHANGED.bits() != 0 && !c.is_empty() {
            ok.session_state = c.lenenc_bytes()?;
            if ok.session_state.is_empty() && !c.is_empty() {
                match padded_session_state(c.rest()) {
                    Some(state) => ok.session_state = state,
                    None => ok.unread_state = true,
                }
            } else {
                ok.unread_state = !c.is_empty();
            }
        }
    } else {
        // Servers write a non-empty info length-encoded; a bare tail (as
        // the protocol's documentation has it) is taken as it is.
        let rest = c.rest();
        let mut lenenc = Cursor::new(rest);
        ok.info = match lenenc.lenenc_bytes() {
            Some(info) if lenenc.is_empty() => info,
            _ => rest,
        };
    }
    Some(ok)
}

/// The session-state block of an OK that MariaDB wrote under a
/// `character_set_database` of two or four bytes per character (ucs2,
/// utf16, utf32): its length comes padded to a character's width with
/// zero bytes in front (`0 22 <22 bytes>` for utf16), which reads as an
/// empty block followed by the real one. `rest`: what follows the first
/// zero; the block when the rest, past at most three more zeros, is
/// exactly one length-encoded block.
fn padded_session_state(rest: &[u8]) -> Option<&[u8]> {
    (0..=3).find_map(|zeros| {
        let tail = rest.get(zeros..)?;
        if rest[..zeros].iter().any(|&b| b != 0) {
            return None;
        }
        let mut block = Cursor::new(tail);
        block.lenenc_bytes().filter(|b| !b.is_empty() && block.is_empty())
    })
}

/// Status flags and warnings of an EOF packet (first byte 0xFE, short).
pub fn parse_eof(payload: &[u8]) -> Option<(u16, u16)> {
    let mut c = Cursor::new(payload);
    if c.u8()? != 0xFE {
        return None;
    }
    let warnings = c.u16().unwrap_or(0);
    let status = c.u16().unwrap_or(0);
    Some((status, warnings))
}

/// Builds an OK packet payload as a server sends it when it has no info
/// message and no session state to report: the same bytes whatever the
/// client's capabilities (with CLIENT_SESSION_TRACK the empty info string
/// is left out, as MariaDB and MySQL servers do).
pub fn build_ok(affected_rows: u64, last_insert_id: u64, status: u16, warnings: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(0x00);
    put_lenenc(&mut out, affected_rows);
    put_lenenc(&mut out, last_insert_id);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&warnings.to_le_bytes());
    out
}

/// Builds an EOF packet payload, or the OK that replaces it when the client
/// negotiated DEPRECATE_EOF.
pub fn build_eof(caps: CapabilityFlags, status: u16, warnings: u16) -> Vec<u8> {
    if caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
        let mut ok = build_ok(0, 0, status, warnings);
        ok[0] = 0xFE;
        ok
    } else {
        let mut out = vec![0xFE];
        out.extend_from_slice(&warnings.to_le_bytes());
        out.extend_from_slice(&status.to_le_bytes());
        out
    }
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err<'a> {
    pub code: u16,
    pub state: &'a [u8],
    pub message: &'a [u8],
}

/// Decodes an ERR packet (first byte 0xFF).
pub fn parse_err(payload: &[u8]) -> Option<Err<'_>> {
    let mut c = Cursor::new(payload);
    if c.u8()? != 0xFF {
        return None;
    }
    let code = c.u16()?;
    let mut state: &[u8] = b"HY000";
    if c.remaining().first() == Some(&b'#') {
        c.u8();
        state = c.bytes(5)?;
    }
    Some(Err { code, state, message: c.rest() })
}

/// Builds an ERR packet payload.
pub fn build_err(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + message.len());
    out.push(0xFF);
    out.extend_from_slice(&code.to_le_bytes());
    out.push(b'#');
    let state = state.as_bytes();
    out.extend_from_slice(&state[..state.len().min(5)]);
    out.extend(std::iter::repeat_n(b'0', 5usize.saturating_sub(state.len())));
    out.extend_from_slice(message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_with_session_track_yields_state_bytes() {
        // From mariadb-notes: an OK carrying last_gtid.
        let mut p = vec![0x00, 0x01, 0x0f, 0x02, 0x40, 0x00, 0x00, 0x00];
        p.push(0x13);
        p.extend_from_slice(&[0x00, 0x11, 0x09]);
        p.extend_from_slice(b"last_gtid");
        p.push(0x06);
        p.extend_from_slice(b"0-1-24");
        let caps = CapabilityFlags::CLIENT_SESSION_TRACK | CapabilityFlags::CLIENT_PROTOCOL_41;
        let ok = parse_ok(&p, caps).unwrap();
        assert_eq!(ok.affected_rows, 1);
        assert_eq!(ok.last_insert_id, 15);
        assert_eq!(ok.status, 0x4002);
        assert!(ok.session_state.ends_with(b"0-1-24"));
    }

    /// Under `character_set_database = utf16` (utf32) MariaDB pads the
    /// block's length with one (three) zero bytes: bytes seen on the lab.
    #[test]
    fn a_session_state_length_padded_to_a_wide_character_is_read() {
        let caps = CapabilityFlags::CLIENT_SESSION_TRACK | CapabilityFlags::CLIENT_PROTOCOL_41;
        let mut block = vec![0x00, 0x14, 0x09];
        block.extend_from_slice(b"last_gtid");
        block.push(0x09);
        block.extend_from_slice(b"0-1-54186");
        for padding in [0, 1, 3] {
            let mut p = vec![0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00];
            p.extend(std::iter::repeat_n(0x00, padding));
            p.push(block.len() as u8);
            p.extend_from_slice(&block);
            let ok = parse_ok(&p, caps).unwrap();
            assert_eq!(ok.session_state, &block[..], "{padding} zeros");
            assert_eq!(crate::protocol::session_state::gtid(ok.session_state), Some("0-1-54186"));
        }
        // Not a padded block: a zero-length block and a stray byte, which
        // leave the state unknown.
        let p = [0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00, 0x00, 0x07];
        let ok = parse_ok(&p, caps).unwrap();
        assert!(ok.session_state.is_empty() && ok.unread_state);
        let mut p = vec![0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x00, block.len() as u8];
        p.extend_from_slice(&block);
        assert!(!parse_ok(&p, caps).unwrap().unread_state);
        p.push(0x01);
        assert!(parse_ok(&p, caps).unwrap().unread_state);
    }

    #[test]
    fn ok_without_session_track_reads_the_info_length_encoded_or_as_the_tail() {
        let p = build_ok(3, 0, 2, 1);
        let mut p2 = p.clone();
        p2.push(15);
        p2.extend_from_slice(b"Rows matched: 3");
        let ok = parse_ok(&p2, CapabilityFlags::empty()).unwrap();
        assert_eq!((ok.affected_rows, ok.status, ok.warnings), (3, 2, 1));
        assert_eq!(ok.info, b"Rows matched: 3");
        let mut p3 = p.clone();
        p3.extend_from_slice(b"Rows matched: 3");
        assert_eq!(parse_ok(&p3, CapabilityFlags::empty()).unwrap().info, b"Rows matched: 3");
    }

    #[test]
    fn err_round_trips() {
        let p = build_err(1045, "28000", "Access denied");
        let e = parse_err(&p).unwrap();
        assert_eq!(e.code, 1045);
        assert_eq!(e.state, b"28000");
        assert_eq!(e.message, b"Access denied");
    }

    #[test]
    fn eof_is_ok_with_deprecate_eof() {
        let p = build_eof(CapabilityFlags::CLIENT_DEPRECATE_EOF, 0x22, 0);
        assert_eq!(p[0], 0xFE);
        let ok = parse_ok(&p, CapabilityFlags::CLIENT_DEPRECATE_EOF).unwrap();
        assert_eq!(ok.status, 0x22);
        let p = build_eof(CapabilityFlags::empty(), 0x22, 4);
        assert_eq!(parse_eof(&p), Some((0x22, 4)));
    }
}
