//! Session-state-change data in OK packets (CLIENT_SESSION_TRACK): reading
//! the GTID a write produced, and removing what the proxy tracks for
//! itself so the client sees only what it asked for.
//!
//! The block is a sequence of entries `type(1) lenenc(data)`. Type 0
//! (system variables) holds `lenenc(name) lenenc(value)`; MariaDB reports
//! a write's GTID as the variable `last_gtid`. Type 3 (GTIDs, MySQL's
//! `session_track_gtids = OWN_GTID`) holds `spec(1) lenenc(gtid set)`.
//! Type 2 (`session_track_state_change`) says the statement changed the
//! session's state: variables, temporary tables, prepared statements,
//! the database (MariaDB reports it for those changed inside a stored
//! procedure too); the proxy tracks it to keep such a connection with its
//! session.

use super::packet::{Cursor, put_lenenc, put_lenenc_str};
use super::status;
use mysql_common::constants::CapabilityFlags;

pub const TRACK_SYSTEM_VARIABLES: u8 = 0;
pub const TRACK_SCHEMA: u8 = 1;
pub const TRACK_STATE_CHANGE: u8 = 2;
pub const TRACK_GTIDS: u8 = 3;

/// The entries of a session-state block; stops at the first malformed one.
pub fn entries(state: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut c = Cursor::new(state);
    std::iter::from_fn(move || {
        let kind = c.u8()?;
        let data = c.lenenc_bytes()?;
        Some((kind, data))
    })
}

/// The GTID of the write this OK ended, if the block reports one:
/// MariaDB's `last_gtid` variable or MySQL's own GTID set.
pub fn gtid(state: &[u8]) -> Option<&str> {
    let own = entries(state).filter(|(kind, _)| *kind == TRACK_GTIDS).filter_map(|(_, data)| {
        let mut c = Cursor::new(data);
        c.u8();
        c.lenenc_bytes()
    });
    let last_gtid = system_variables(state).filter(|(name, _)| *name == b"last_gtid");
    own.chain(last_gtid.map(|(_, value)| value))
        .filter_map(|v| std::str::from_utf8(v).ok().filter(|s| !s.is_empty()))
        .last()
}

/// The (name, value) pairs of the block's system-variable entries.
fn system_variables(state: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    entries(state).filter(|(kind, _)| *kind == TRACK_SYSTEM_VARIABLES).filter_map(|(_, data)| {
        let mut c = Cursor::new(data);
        Some((c.lenenc_bytes()?, c.lenenc_bytes()?))
    })
}

/// The last value the block reports for the system variable `name`.
pub fn variable<'a>(state: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    system_variables(state).filter(|(n, _)| *n == name).map(|(_, value)| value).last()
}

/// The database the block reports the session changed to (type 1,
/// `session_track_schema`, on by default in MariaDB and MySQL).
pub fn schema(state: &[u8]) -> Option<&[u8]> {
    let names = entries(state).filter(|(kind, _)| *kind == TRACK_SCHEMA);
    names.filter_map(|(_, data)| Cursor::new(data).lenenc_bytes()).last()
}

/// Whether the block reports that the statement changed the session's
/// state (a `session_track_state_change` entry).
pub fn changes_state(state: &[u8]) -> bool {
    entries(state).any(|(kind, _)| kind == TRACK_STATE_CHANGE)
}

/// Removes the proxy's own tracking the client did not ask for (the
/// `last_gtid` variable and GTID entries, unless it wants GTIDs; state
/// change entries, unless it wants those) from a block; returns the
/// entries that remain.
pub fn without_own(state: &[u8], view: ClientView) -> Vec<u8> {
    let mut out = Vec::with_capacity(state.len());
    for (kind, data) in entries(state) {
        let ours = match kind {
            TRACK_SYSTEM_VARIABLES => {
                !view.wants_gtids && Cursor::new(data).lenenc_bytes() == Some(b"last_gtid")
            }
            TRACK_GTIDS => !view.wants_gtids,
            TRACK_STATE_CHANGE => !view.wants_state_change,
            _ => false,
        };
        if !ours {
            out.push(kind);
            put_lenenc_str(&mut out, data);
        }
    }
    out
}

/// What the client may see of the backend's session-state tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView {
    /// The client negotiated CLIENT_SESSION_TRACK.
    pub session_track: bool,
    /// The client asked for GTID tracking itself.
    pub wants_gtids: bool,
    /// The client turned `session_track_state_change` on itself.
    pub wants_state_change: bool,
    /// The server omits an empty info string when no state follows
    /// (MariaDB does; MySQL always writes it): rewritten packets match.
    pub omit_empty_info: bool,
}

/// Rewrites an OK packet (0x00 or the 0xFE that replaces EOF) received on a
/// connection with CLIENT_SESSION_TRACK for a client that sees `view`.
/// Returns `None` when the packet can be relayed unchanged.
pub fn rewrite_ok(payload: &[u8], view: ClientView) -> Option<Vec<u8>> {
    let ok = super::messages::parse_ok(payload, CapabilityFlags::CLIENT_SESSION_TRACK)?;
    let has_state = ok.status & status::SESSION_STATE_CHANGED != 0;
    let ours = |s: &[u8]| {
        (!view.wants_gtids && gtid(s).is_some()) || (!view.wants_state_change && changes_state(s))
    };
    if view.session_track && (!has_state || !ours(ok.session_state)) {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len());
    out.push(payload[0]);
    put_lenenc(&mut out, ok.affected_rows);
    put_lenenc(&mut out, ok.last_insert_id);
    let kept = if view.session_track && has_state {
        without_own(ok.session_state, view)
    } else {
        Vec::new()
    };
    let mut st = ok.status;
    if kept.is_empty() {
        st &= !status::SESSION_STATE_CHANGED;
    }
    out.extend_from_slice(&st.to_le_bytes());
    out.extend_from_slice(&ok.warnings.to_le_bytes());
    if view.session_track {
        if !(kept.is_empty() && ok.info.is_empty() && view.omit_empty_info) {
            put_lenenc_str(&mut out, ok.info);
        }
        if !kept.is_empty() {
            put_lenenc_str(&mut out, &kept);
        }
    } else if !ok.info.is_empty() {
        // Servers write the info length-encoded whatever the client
        // negotiated (mysqlnd and libmariadb read it so).
        put_lenenc_str(&mut out, ok.info);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OK from mariadb-notes: one row, insert id 15, last_gtid 0-1-24.
    const MARIADB_OK: &[u8] =
        b"\x00\x01\x0f\x02\x40\x00\x00\x00\x13\x00\x11\x09last_gtid\x060-1-24";

    fn ok_with(entries: &[(u8, Vec<u8>)], info: &[u8]) -> Vec<u8> {
        let mut state = Vec::new();
        for (k, d) in entries {
            state.push(*k);
            put_lenenc_str(&mut state, d);
        }
        let mut p = vec![0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00];
        put_lenenc_str(&mut p, info);
        put_lenenc_str(&mut p, &state);
        p
    }

    fn sysvar(name: &[u8], value: &[u8]) -> (u8, Vec<u8>) {
        let mut d = Vec::new();
        put_lenenc_str(&mut d, name);
        put_lenenc_str(&mut d, value);
        (TRACK_SYSTEM_VARIABLES, d)
    }

    #[test]
    fn mariadb_last_gtid_is_read() {
        let ok =
            super::super::messages::parse_ok(MARIADB_OK, CapabilityFlags::CLIENT_SESSION_TRACK)
                .unwrap();
        assert_eq!(gtid(ok.session_state), Some("0-1-24"));
    }

    #[test]
    fn a_system_variable_is_read_by_name() {
        let p = ok_with(
            &[sysvar(b"character_set_client", b"gbk"), sysvar(b"last_gtid", b"0-1-3")],
            b"",
        );
        let ok =
            super::super::messages::parse_ok(&p, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        assert_eq!(variable(ok.session_state, b"character_set_client"), Some(&b"gbk"[..]));
        assert_eq!(variable(ok.session_state, b"time_zone"), None);
    }

    #[test]
    fn mysql_own_gtid_is_read() {
        let mut d = vec![0u8];
        put_lenenc_str(&mut d, b"3E11FA47-71CA-11E1-9E33-C80AA9429562:23");
        let p = ok_with(&[(TRACK_GTIDS, d)], b"");
        let ok =
            super::super::messages::parse_ok(&p, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        assert_eq!(gtid(ok.session_state), Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:23"));
    }

    #[test]
    fn client_without_session_track_gets_a_plain_ok() {
        let view = ClientView {
            session_track: false,
            wants_gtids: false,
            wants_state_change: false,
            omit_empty_info: true,
        };
        let out = rewrite_ok(MARIADB_OK, view).unwrap();
        assert_eq!(out, vec![0x00, 0x01, 0x0f, 0x02, 0x00, 0x00, 0x00]);
        // Info text survives, length-encoded as a server writes it.
        let p = ok_with(&[sysvar(b"last_gtid", b"0-1-9")], b"Rows matched: 1");
        let out = rewrite_ok(&p, view).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x02\x00\x00\x00\x0fRows matched: 1");
        let ok = super::super::messages::parse_ok(&out, CapabilityFlags::empty()).unwrap();
        assert_eq!(ok.info, b"Rows matched: 1");
    }

    #[test]
    fn other_tracked_variables_are_kept_for_a_tracking_client() {
        let view = ClientView {
            session_track: true,
            wants_gtids: false,
            wants_state_change: false,
            omit_empty_info: true,
        };
        let p = ok_with(&[sysvar(b"autocommit", b"ON"), sysvar(b"last_gtid", b"0-1-9")], b"");
        let out = rewrite_ok(&p, view).unwrap();
        let ok =
            super::super::messages::parse_ok(&out, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        assert_eq!(gtid(ok.session_state), None);
        let names: Vec<_> = entries(ok.session_state).map(|(k, _)| k).collect();
        assert_eq!(names, vec![TRACK_SYSTEM_VARIABLES]);
        assert!(ok.status & status::SESSION_STATE_CHANGED != 0);
    }

    #[test]
    fn state_holding_only_the_gtid_disappears_with_its_flag() {
        let view = ClientView {
            session_track: true,
            wants_gtids: false,
            wants_state_change: false,
            omit_empty_info: true,
        };
        let out = rewrite_ok(MARIADB_OK, view).unwrap();
        assert_eq!(out, b"\x00\x01\x0f\x02\x00\x00\x00", "as MariaDB sends an OK without state");
        let ok =
            super::super::messages::parse_ok(&out, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        assert_eq!(ok.status & status::SESSION_STATE_CHANGED, 0);
        assert!(ok.session_state.is_empty());
        assert_eq!((ok.affected_rows, ok.last_insert_id), (1, 15));
    }

    #[test]
    fn tracking_client_that_asked_for_gtids_sees_them_unchanged() {
        let view = ClientView {
            session_track: true,
            wants_gtids: true,
            wants_state_change: false,
            omit_empty_info: true,
        };
        assert_eq!(rewrite_ok(MARIADB_OK, view), None);
    }

    /// The entry MariaDB adds with `session_track_state_change = ON`.
    fn state_change() -> (u8, Vec<u8>) {
        (TRACK_STATE_CHANGE, b"\x011".to_vec())
    }

    #[test]
    fn the_proxys_state_change_tracking_is_seen_only_by_a_client_that_asked_for_it() {
        let view = ClientView {
            session_track: true,
            wants_gtids: false,
            wants_state_change: false,
            omit_empty_info: true,
        };
        // A SET: the entry goes, and the flag with it.
        let p = ok_with(&[state_change()], b"");
        let ok =
            super::super::messages::parse_ok(&p, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        assert!(changes_state(ok.session_state));
        let out = rewrite_ok(&p, view).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x02\x00\x00\x00", "as MariaDB sends an OK without state");
        // A client's own tracked variable stays beside it.
        let p = ok_with(&[sysvar(b"autocommit", b"ON"), state_change()], b"");
        let out = rewrite_ok(&p, view).unwrap();
        let ok =
            super::super::messages::parse_ok(&out, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        let kinds: Vec<_> = entries(ok.session_state).map(|(k, _)| k).collect();
        assert_eq!(kinds, vec![TRACK_SYSTEM_VARIABLES]);
        // A client that turned it on sees it unchanged.
        let wants = ClientView { wants_state_change: true, ..view };
        assert_eq!(rewrite_ok(&ok_with(&[state_change()], b""), wants), None);
        // Both the GTID and the state change go for a client that asked
        // for neither; only the GTID for one that asked for state changes.
        let p = ok_with(&[sysvar(b"last_gtid", b"0-1-9"), state_change()], b"");
        assert_eq!(rewrite_ok(&p, view).unwrap(), b"\x00\x00\x00\x02\x00\x00\x00");
        let out = rewrite_ok(&p, wants).unwrap();
        let ok =
            super::super::messages::parse_ok(&out, CapabilityFlags::CLIENT_SESSION_TRACK).unwrap();
        assert!(changes_state(ok.session_state) && gtid(ok.session_state).is_none());
    }

    #[test]
    fn malformed_state_never_panics() {
        for n in 0..MARIADB_OK.len() {
            let _ = rewrite_ok(
                &MARIADB_OK[..n],
                ClientView {
                    session_track: false,
                    wants_gtids: false,
                    wants_state_change: false,
                    omit_empty_info: false,
                },
            );
            let _ = gtid(&MARIADB_OK[n..]);
            let view = ClientView {
                session_track: true,
                wants_gtids: false,
                wants_state_change: false,
                omit_empty_info: false,
            };
            let _ = without_own(&MARIADB_OK[n..], view);
            let _ = changes_state(&MARIADB_OK[n..]);
        }
    }
}
