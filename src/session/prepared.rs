//! Server-side prepared statements of one client session: the ids the
//! client sees, mapped to each backend's own ids, with what is needed to
//! prepare the statement again elsewhere (its text) and to execute it on a
//! backend that never saw its parameter types.

use crate::classify::StatementInfo;
use crate::intmap::IntMap;

/// The id MariaDB clients use for "the statement prepared last".
pub const LAST_PREPARED: u32 = u32::MAX;

/// Where a statement is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnBackend {
    pub backend: usize,
    pub id: u32,
    /// The backend has been sent parameter types for this statement.
    pub types_sent: bool,
}

/// One prepared statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The statement as the client sent it (prepared again from this).
    pub sql: std::sync::Arc<[u8]>,
    /// Its text for routing and digests, decoded once.
    pub text: std::sync::Arc<str>,
    /// The session's database when it was prepared: MariaDB runs a
    /// prepared statement in that database, so it is prepared there
    /// elsewhere too.
    pub database: Option<std::sync::Arc<[u8]>>,
    pub info: StatementInfo,
    pub params: u16,
    pub columns: u16,
    pub on: Vec<OnBackend>,
    /// Parameter types from the last execute that sent them.
    pub types: Option<Vec<u8>>,
    /// The backend holding an open cursor of this statement.
    pub cursor_backend: Option<usize>,
    /// Long data was sent (to the primary) for the next execute.
    pub long_data: bool,
}

impl Stmt {
    /// The bytes the proxy keeps for this statement (its text, once when
    /// `sql` and `text` share it, and room for its parameter types),
    /// counted against `limits.max_statement_memory`.
    pub fn kept_bytes(&self) -> usize {
        let sql = self.sql.as_ptr() != self.text.as_ptr();
        self.text.len() + if sql { self.sql.len() } else { 0 } + 2 * usize::from(self.params)
    }

    /// The backend's id for this statement, if prepared there.
    pub fn backend_id(&self, backend: usize) -> Option<u32> {
        self.on.iter().find(|o| o.backend == backend).map(|o| o.id)
    }

    pub fn on_backend(&mut self, backend: usize) -> Option<&mut OnBackend> {
        self.on.iter_mut().find(|o| o.backend == backend)
    }
}

/// All prepared statements of a session.
#[derive(Debug, Default)]
pub struct StmtTable {
    map: IntMap<u32, Stmt>,
    next: u32,
    last: Option<u32>,
    /// A cursor was opened or long data sent since the last look found
    /// none: only then are the statements looked through (the pool asks
    /// after every command).
    maybe_holding: std::sync::atomic::AtomicBool,
    /// Per backend index, the statements mapped there (client ids, each
    /// once): forgetting a backend's mappings, which a pooled connection
    /// does after every command, visits these, not every statement of the
    /// session.
    mapped: Vec<Vec<u32>>,
    /// [`Stmt::kept_bytes`] of all the statements.
    bytes: usize,
}

impl StmtTable {
    /// Registers a statement and returns the id the client will see.
    pub fn insert(&mut self, stmt: Stmt) -> u32 {
        loop {
            self.next = self.next.wrapping_add(1);
            if self.next != 0 && self.next != LAST_PREPARED && !self.map.contains_key(&self.next) {
                break;
            }
        }
        for o in &stmt.on {
            self.note_mapped(o.backend, self.next);
        }
        self.bytes += stmt.kept_bytes();
        self.map.insert(self.next, stmt);
        self.last = Some(self.next);
        self.next
    }

    /// A prepare is starting: "the statement prepared last" names none
    /// until it succeeds (an execute by that id after a failed prepare,
    /// sent right behind it, must not run the statement before).
    pub fn forget_last(&mut self) {
        self.last = None;
    }

    /// Statement `id` is prepared on a backend too: `on`.
    pub fn map_backend(&mut self, id: u32, on: OnBackend) {
        if let Some(s) = self.map.get_mut(&id) {
            s.on.push(on);
            self.note_mapped(on.backend, id);
        }
    }

    fn note_mapped(&mut self, backend: usize, id: u32) {
        if self.mapped.len() <= backend {
            self.mapped.resize_with(backend + 1, Vec::new);
        }
        self.mapped[backend].push(id);
    }

    /// Resolves a client id, including MariaDB's "last prepared" id.
    pub fn resolve(&self, id: u32) -> Option<u32> {
        if id == LAST_PREPARED {
            return self.last;
        }
        self.map.contains_key(&id).then_some(id)
    }

    pub fn get(&self, id: u32) -> Option<&Stmt> {
        self.map.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Stmt> {
        self.map.get_mut(&id)
    }

    pub fn remove(&mut self, id: u32) -> Option<Stmt> {
        if self.last == Some(id) {
            self.last = None;
        }
        let stmt = self.map.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(stmt.kept_bytes());
        for o in &stmt.on {
            if let Some(list) = self.mapped.get_mut(o.backend) {
                list.retain(|&i| i != id);
            }
        }
        Some(stmt)
    }

    /// Forgets every statement (after COM_RESET_CONNECTION or
    /// COM_CHANGE_USER, which close them on the server too).
    pub fn clear(&mut self) {
        self.bytes = 0;
        self.map.clear();
        self.mapped.clear();
        self.last = None;
    }

    /// Forgets every mapping to `backend` (its connection was lost, or went
    /// back to the pool), and any cursor open there.
    pub fn forget_backend(&mut self, backend: usize) {
        if let Some(list) = self.mapped.get_mut(backend) {
            for id in list.drain(..) {
                if let Some(s) = self.map.get_mut(&id) {
                    s.on.retain(|o| o.backend != backend);
                }
            }
        }
        if self.maybe_holding() {
            for s in self.map.values_mut() {
                if s.cursor_backend == Some(backend) {
                    s.cursor_backend = None;
                }
            }
        }
    }

    /// Forgets where statements were prepared on `backend` with the
    /// server's id `id` (closed there).
    pub fn forget_backend_id(&mut self, backend: usize, id: u32) {
        let Some(list) = self.mapped.get_mut(backend) else { return };
        list.retain(|client_id| {
            let Some(s) = self.map.get_mut(client_id) else { return false };
            s.on.retain(|o| o.backend != backend || o.id != id);
            s.on.iter().any(|o| o.backend == backend)
        });
    }

    /// Whether a statement has an open cursor on `backend`.
    pub fn holds(&self, backend: usize) -> bool {
        self.maybe_holding() && self.map.values().any(|s| s.cursor_backend == Some(backend))
    }

    /// Whether long data waits for a statement's next execute.
    pub fn long_data(&self) -> bool {
        self.maybe_holding() && self.map.values().any(|s| s.long_data)
    }

    /// Statement `id` has an open cursor on `backend` now.
    pub fn opened_cursor(&mut self, id: u32, backend: usize) {
        if let Some(s) = self.map.get_mut(&id) {
            s.cursor_backend = Some(backend);
            self.maybe_holding.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Long data was sent for statement `id`'s next execute.
    pub fn sent_long_data(&mut self, id: u32) {
        if let Some(s) = self.map.get_mut(&id) {
            s.long_data = true;
            self.maybe_holding.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn maybe_holding(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.maybe_holding.load(Relaxed) {
            return false;
        }
        let any = self.map.values().any(|s| s.long_data || s.cursor_backend.is_some());
        self.maybe_holding.store(any, Relaxed);
        any
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// What the statements keep, in bytes (see [`Stmt::kept_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Where the new-params-bound flag sits in a COM_STMT_EXECUTE payload, if
/// the payload is that long.
pub fn execute_types_offset(payload: &[u8], params: u16) -> Option<usize> {
    if params == 0 {
        return None;
    }
    // command(1) stmt_id(4) flags(1) iteration_count(4) null_bitmap
    let offset = 10 + (params as usize).div_ceil(8);
    (payload.len() > offset).then_some(offset)
}

/// COM_STMT_BULK_EXECUTE's flag: parameter types follow the flags.
const BULK_SEND_TYPES: u16 = 128;

/// Where a COM_STMT_BULK_EXECUTE's parameter types start: after the
/// command(1), statement id(4) and flags(2).
const BULK_TYPES_AT: usize = 7;

fn bulk_flags(payload: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(payload.get(5..BULK_TYPES_AT)?.try_into().ok()?))
}

/// The parameter types an execute sent (when its new-params-bound flag is
/// set, or for a bulk execute its send-types flag), for re-use on backends
/// that did not see them.
pub fn execute_types(payload: &[u8], params: u16) -> Option<&[u8]> {
    if payload.first() == Some(&crate::protocol::command::STMT_BULK_EXECUTE) {
        if params == 0 || bulk_flags(payload)? & BULK_SEND_TYPES == 0 {
            return None;
        }
        return payload.get(BULK_TYPES_AT..BULK_TYPES_AT + 2 * params as usize);
    }
    let offset = execute_types_offset(payload, params)?;
    if payload[offset] != 1 {
        return None;
    }
    payload.get(offset + 1..offset + 1 + 2 * params as usize)
}

/// The value of a one-parameter execute's parameter, when it is sent as a
/// string (None when it is NULL, of another type, or cut short). `types`
/// are the types the server has, for an execute that leaves them out.
pub fn only_string_param<'a>(payload: &'a [u8], types: Option<&[u8]>) -> Option<&'a [u8]> {
    let bound_flag = execute_types_offset(payload, 1)?;
    // The null bitmap is the byte before the new-params-bound flag.
    if payload[bound_flag - 1] & 1 != 0 {
        return None;
    }
    let (param_type, value) = match execute_types(payload, 1) {
        Some(sent) => (sent[0], bound_flag + 3),
        None => (*types?.first()?, bound_flag + 1),
    };
    // VARCHAR, JSON, ENUM, SET, the BLOBs, VAR_STRING, STRING.
    if !matches!(param_type, 0x0F | 0xF5 | 0xF7..=0xFE) {
        return None;
    }
    crate::protocol::packet::Cursor::new(payload.get(value..)?).lenenc_bytes()
}

/// Turns an execute without types into one that carries `types`, for a
/// backend that has not seen them. Returns false when the payload is not
/// shaped as expected (then it is sent unchanged).
pub fn inject_types(payload: &mut Vec<u8>, params: u16, types: &[u8]) -> bool {
    if payload.first() == Some(&crate::protocol::command::STMT_BULK_EXECUTE) {
        let Some(flags) = bulk_flags(payload) else {
            return false;
        };
        if params == 0 || flags & BULK_SEND_TYPES != 0 || types.len() != 2 * params as usize {
            return false;
        }
        payload[5..BULK_TYPES_AT].copy_from_slice(&(flags | BULK_SEND_TYPES).to_le_bytes());
        payload.splice(BULK_TYPES_AT..BULK_TYPES_AT, types.iter().copied());
        return true;
    }
    let Some(offset) = execute_types_offset(payload, params) else {
        return false;
    };
    if payload[offset] != 0 || types.len() != 2 * params as usize {
        return false;
    }
    payload[offset] = 1;
    payload.splice(offset + 1..offset + 1, types.iter().copied());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt() -> Stmt {
        Stmt {
            database: None,
            sql: b"SELECT ?".as_slice().into(),
            text: "SELECT ?".into(),
            info: crate::classify::classify("SELECT ?"),
            params: 1,
            columns: 1,
            on: vec![OnBackend { backend: 0, id: 77, types_sent: false }],
            types: None,
            cursor_backend: None,
            long_data: false,
        }
    }

    #[test]
    fn ids_are_fresh_and_last_prepared_resolves() {
        let mut t = StmtTable::default();
        let a = t.insert(stmt());
        let b = t.insert(stmt());
        assert_ne!(a, b);
        assert_eq!(t.resolve(LAST_PREPARED), Some(b));
        assert_eq!(t.get(a).unwrap().backend_id(0), Some(77));
        t.remove(b);
        assert_eq!(t.resolve(LAST_PREPARED), None);
        assert_eq!(t.resolve(b), None);
        let c = t.insert(stmt());
        t.forget_last();
        assert_eq!(t.resolve(LAST_PREPARED), None, "a prepare failed after c's");
        assert_eq!(t.resolve(c), Some(c));
    }

    // cmd, id, flags, iteration, bitmap(1), bound=1, type(2), value
    const BOUND: [u8; 22] = [0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 42, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn execute_types_are_found_after_null_bitmap() {
        assert_eq!(execute_types(&BOUND, 1), Some(&[8u8, 0][..]));
        let mut unbound = BOUND;
        unbound[11] = 0;
        assert_eq!(execute_types(&unbound, 1), None);
        assert_eq!(execute_types(&BOUND[..5], 1), None);
    }

    #[test]
    fn types_are_injected_into_an_execute_without_them() {
        let mut unbound: Vec<u8> = BOUND[..12].to_vec();
        unbound[11] = 0;
        unbound.extend_from_slice(&42u64.to_le_bytes());
        assert!(inject_types(&mut unbound, 1, &[8, 0]));
        assert_eq!(unbound, BOUND.to_vec());
        // Already bound: left alone.
        let mut bound = BOUND.to_vec();
        assert!(!inject_types(&mut bound, 1, &[8, 0]));
    }

    #[test]
    fn bulk_execute_types_follow_the_flags() {
        // cmd, id, flags = send types, types (LONG, VAR_STRING), one row:
        // indicator 0 + LONG 7, indicator 1 (NULL)
        let typed: Vec<u8> = vec![0xFA, 1, 0, 0, 0, 128, 0, 3, 0, 0xFD, 0, 0, 7, 0, 0, 0, 1];
        assert_eq!(execute_types(&typed, 2), Some(&[3u8, 0, 0xFD, 0][..]));
        assert_eq!(execute_types(&typed[..8], 2), None, "types cut short");
        let mut untyped: Vec<u8> = vec![0xFA, 1, 0, 0, 0, 0, 0];
        untyped.extend_from_slice(&typed[11..]);
        assert_eq!(execute_types(&untyped, 2), None);
        assert!(inject_types(&mut untyped, 2, &[3, 0, 0xFD, 0]));
        assert_eq!(untyped, typed);
        // Already typed, or types of the wrong length: left alone.
        let mut again = typed.clone();
        assert!(!inject_types(&mut again, 2, &[3, 0, 0xFD, 0]));
        let mut short: Vec<u8> = vec![0xFA, 1, 0, 0, 0, 0, 0];
        assert!(!inject_types(&mut short, 2, &[3, 0]));
        assert!(!inject_types(&mut vec![0xFA, 1, 0], 1, &[3, 0]));
    }

    #[test]
    fn a_string_parameter_is_read_with_its_type_sent_or_known() {
        // cmd, id, flags, iteration, bitmap(1), bound=1, VAR_STRING, "pin"
        let mut bound = BOUND[..12].to_vec();
        bound.extend_from_slice(&[0xFD, 0, 3, b'p', b'i', b'n']);
        assert_eq!(only_string_param(&bound, None), Some(&b"pin"[..]));
        let mut unbound = BOUND[..12].to_vec();
        unbound[11] = 0;
        unbound.extend_from_slice(&[3, b'p', b'i', b'n']);
        assert_eq!(only_string_param(&unbound, Some(&[0xFE, 0])), Some(&b"pin"[..]));
        assert_eq!(only_string_param(&unbound, None), None, "type unknown");
        // An integer, a NULL, a value cut short.
        assert_eq!(only_string_param(&BOUND, None), None);
        let mut null = bound.clone();
        null[10] = 1;
        assert_eq!(only_string_param(&null, None), None);
        assert_eq!(only_string_param(&bound[..bound.len() - 1], None), None);
    }

    #[test]
    fn cursors_and_long_data_are_seen_until_they_end() {
        let mut t = StmtTable::default();
        let id = t.insert(stmt());
        assert!(!t.holds(1) && !t.long_data());
        t.opened_cursor(id, 1);
        assert!(t.holds(1) && !t.holds(2));
        t.forget_backend(1);
        assert!(!t.holds(1));
        t.sent_long_data(id);
        assert!(t.long_data());
        t.get_mut(id).unwrap().long_data = false;
        assert!(!t.long_data());
    }

    #[test]
    fn lost_backend_is_forgotten() {
        let mut t = StmtTable::default();
        let a = t.insert(stmt());
        t.forget_backend(0);
        assert_eq!(t.get(a).unwrap().backend_id(0), None);
    }

    #[test]
    fn forgetting_a_backend_leaves_the_others_and_finds_every_mapping() {
        let mut t = StmtTable::default();
        let a = t.insert(stmt()); // on backend 0 (id 77)
        let b = t.insert(stmt());
        t.map_backend(a, OnBackend { backend: 2, id: 5, types_sent: true });
        t.map_backend(b, OnBackend { backend: 2, id: 6, types_sent: false });
        t.forget_backend(2);
        assert_eq!(
            (t.get(a).unwrap().backend_id(2), t.get(b).unwrap().backend_id(2)),
            (None, None)
        );
        assert_eq!(t.get(a).unwrap().backend_id(0), Some(77), "other backends kept");
        // Mapped again after the forget (a pooled connection taken again).
        t.map_backend(b, OnBackend { backend: 2, id: 9, types_sent: false });
        t.forget_backend_id(2, 9);
        assert_eq!(t.get(b).unwrap().backend_id(2), None);
        assert!(t.mapped[2].is_empty(), "no mapping left there");
        t.map_backend(b, OnBackend { backend: 2, id: 10, types_sent: false });
        t.forget_backend(2);
        assert_eq!(t.get(b).unwrap().backend_id(2), None);
    }

    #[test]
    fn closed_statements_leave_the_mapped_lists() {
        let mut t = StmtTable::default();
        let kept = t.insert(stmt());
        for i in 0..10_000 {
            let id = t.insert(stmt());
            t.map_backend(id, OnBackend { backend: 1, id: i, types_sent: false });
            t.remove(id);
        }
        assert_eq!((t.mapped[0].as_slice(), t.mapped[1].as_slice()), (&[kept][..], &[][..]));
        t.forget_backend(0);
        assert_eq!(t.get(kept).unwrap().backend_id(0), None);
    }
}
