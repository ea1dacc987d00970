//! Streaming a backend's response to the client byte for byte.
//!
//! [`Machine`] is the pure part: fed one packet at a time (its length and,
//! for small packets, its payload), it knows where the response ends and
//! collects what the session needs (final status flags, warnings, OK
//! fields, session-state data). [`relay`] is the I/O part: it forwards
//! whole runs of buffered frames to the client in one write, streams
//! packets too large to buffer, and hands LOCAL INFILE data from the
//! client to the backend. Column definitions and rows are never decoded.

use crate::protocol::messages;
use crate::protocol::packet::{FrameError, HEADER, MAX_PAYLOAD, PacketReader, parse_header};
use crate::protocol::session_state::{self, ClientView};
use crate::protocol::status;
use mysql_common::constants::CapabilityFlags;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Packets up to this size are buffered whole before they are inspected;
/// larger ones can only be rows and are streamed through in pieces, so a
/// huge row never sits in memory whole.
pub const INSPECT_LIMIT: usize = 1 << 20;
const _: () = assert!(INSPECT_LIMIT < MAX_PAYLOAD, "a continued packet is never inspected whole");

/// What the next packet of a response can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, LOCAL INFILE request, or a result-set header.
    Result,
    ColumnDefs {
        left: u64,
    },
    ColumnsEof,
    Rows,
    /// The rest of a COM_STMT_PREPARE response after its first packet:
    /// parameter and column definitions and their EOFs, only counted.
    Prepare {
        left: u32,
    },
    /// COM_FIELD_LIST: column definitions until EOF or ERR.
    FieldList,
    /// Exactly one packet of any shape (COM_STATISTICS).
    Single,
}

/// How a response ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Status flags of the last OK/EOF (zero when it ended in ERR).
    pub status: u16,
    /// Whether the response carried status flags at all (a prepare
    /// response, COM_STATISTICS or an ERR does not).
    pub has_status: bool,
    pub warnings: u16,
    pub affected_rows: u64,
    /// The id the response's last insert generated (the last non-zero
    /// one of its OKs: after `INSERT ...; DO 1` the session's
    /// `LAST_INSERT_ID()` is the insert's, as the server keeps it).
    pub last_insert_id: u64,
    /// The server error, if the response (or its last part) was an ERR.
    pub error: Option<u16>,
    /// Whether any result set was part of the response.
    pub result_set: bool,
    /// The GTID of the last write the response's OKs reported (MariaDB's
    /// `last_gtid`, MySQL's own GTID); empty if none did. Kept across the
    /// OKs of a multi-statement: a later statement's OK reports its own
    /// changes (a `SET`, a `USE`) and not the earlier write's GTID.
    pub gtid: String,
    /// `character_set_client` as the last OK reporting it said.
    pub character_set_client: Option<Vec<u8>>,
    /// The database the last OK reporting one said the session is in
    /// (`USE` anywhere in a multi-statement).
    pub schema: Option<Vec<u8>>,
    /// The response ended in an EOF packet (a result set for a client
    /// without DEPRECATE_EOF), which carries no session state, or in an OK
    /// whose state block could not be read whole: what the statement
    /// changed there, a write's GTID included, went unreported.
    pub state_unreported: bool,
    /// Rows sent in result sets.
    pub rows: u64,
    /// The statement changed the session's state (any of its OKs carried a
    /// `session_track_state_change` entry), or may have (an EOF flagged a
    /// state change without saying which).
    pub state_changed: bool,
    /// The response was only a server error, and the machine was told to
    /// hold one (`Machine::holding_first_error`): nothing of it reached
    /// the client, and the relay left it unread in the backend's reader.
    pub withheld: bool,
}

impl Outcome {
    /// The GTID the response's last write reported, if any.
    pub fn gtid(&self) -> Option<&str> {
        (!self.gtid.is_empty()).then_some(self.gtid.as_str())
    }

    /// What one OK's session-state block adds to the response's.
    fn note_session_state(&mut self, state: &[u8]) {
        self.state_changed |= session_state::changes_state(state);
        if let Some(gtid) = session_state::gtid(state) {
            self.gtid.clear();
            self.gtid.push_str(gtid);
        }
        if let Some(charset) = session_state::variable(state, b"character_set_client") {
            self.character_set_client = Some(charset.to_vec());
        }
        if let Some(schema) = session_state::schema(state) {
            self.schema = Some(schema.to_vec());
        }
    }
}

/// What the I/O side must do after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    Done,
    /// The server asked for a LOCAL INFILE: relay the client's file.
    LocalInfile,
}

/// A protocol violation by the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected packet from server while reading {0}")]
pub struct Unexpected(pub &'static str);

/// The pure response tracker.
#[derive(Debug)]
pub struct Machine {
    expect: Expect,
    caps: CapabilityFlags,
    /// The previous physical packet was 16 MiB: this one continues it.
    continuation: bool,
    /// When set, OK packets are rewritten for a client that sees less
    /// session-state tracking than the backend connection has.
    client_view: Option<ClientView>,
    /// The replacement for the packet just stepped, if it must change.
    rewrite: Option<Vec<u8>>,
    /// Set when the proxy killed the statement for running too long: the
    /// server's "interrupted" error is then reworded to say why.
    timeout: Option<Arc<QueryTimeout>>,
    /// Whether any packet has been stepped (so may have reached the client).
    started: bool,
    /// The packet being stepped is the response's first.
    first_packet: bool,
    /// A response that is only a server error is withheld from the client
    /// (`Outcome::withheld`): the caller decides what the client gets.
    hold_first_error: bool,
    /// The command asked for a cursor (COM_STMT_EXECUTE with a cursor
    /// flag): a column EOF flagged CURSOR_EXISTS, and no more results,
    /// ends the response. Otherwise rows follow such an EOF all the same:
    /// MariaDB sets the flag on a procedure's result sets while the
    /// procedure has a cursor of its own open (a CALL's result sets are
    /// followed by its OK, so they are flagged MORE_RESULTS_EXISTS as well,
    /// whether or not the execute asked for a cursor).
    cursor: bool,
    /// Processlist rows: their first column, a server thread id, is
    /// rewritten to the proxy session id that thread serves (server
    /// thread, proxy id). Rows are then looked at one by one.
    thread_ids: Option<Vec<(u64, u64)>>,
    /// The relay reads the client while it waits for the backend (see
    /// [`relay`]).
    watch_client: bool,
    pub outcome: Outcome,
}

/// A statement's `max_query_time`, and whether it ran out.
#[derive(Debug)]
pub struct QueryTimeout {
    pub limit: std::time::Duration,
    pub fired: AtomicBool,
}

/// MariaDB's ER_STATEMENT_TIMEOUT, which the proxy's kill is reported as.
pub const STATEMENT_TIMEOUT: u16 = 1969;
/// ER_QUERY_INTERRUPTED: what a server answers a killed statement with.
const QUERY_INTERRUPTED: u16 = 1317;

impl QueryTimeout {
    /// The error a client gets for a statement killed at `limit`.
    pub fn error_packet(&self) -> Vec<u8> {
        let msg = format!(
            "Query execution was interrupted (rwsplit max_query_time of {} exceeded)",
            humantime::format_duration(self.limit)
        );
        messages::build_err(STATEMENT_TIMEOUT, "70100", &msg)
    }
}

impl Machine {
    pub fn new(expect: Expect, caps: CapabilityFlags) -> Self {
        Machine {
            expect,
            caps,
            continuation: false,
            client_view: None,
            rewrite: None,
            timeout: None,
            started: false,
            first_packet: false,
            hold_first_error: false,
            cursor: false,
            thread_ids: None,
            watch_client: false,
            outcome: Outcome::default(),
        }
    }

    /// Has the relay read the client while it waits for the backend, to
    /// notice a client that leaves (see [`relay`]).
    pub fn watching_client(mut self, watch: bool) -> Self {
        self.watch_client = watch;
        self
    }

    /// Rewrites the first column of text rows (a processlist's `Id`) from
    /// server thread ids to the proxy session ids in `ids`.
    pub fn rewriting_thread_ids(mut self, ids: Option<Vec<(u64, u64)>>) -> Self {
        self.thread_ids = ids;
        self
    }

    /// The response is to an execute that asked for a cursor.
    pub fn opening_cursor(mut self, cursor: bool) -> Self {
        self.cursor = cursor;
        self
    }

    /// Withholds a response that is only a server error (see
    /// `Outcome::withheld`).
    pub fn holding_first_error(mut self, hold: bool) -> Self {
        self.hold_first_error = hold;
        self
    }

    /// Rewords the server's error for a statement killed by `timeout`.
    pub fn with_timeout(mut self, timeout: Option<Arc<QueryTimeout>>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether any packet of the response has been seen (and so may have
    /// been passed to the client).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the response, cut off here, could end with an error packet
    /// the client understands: between rows, or between the results of a
    /// multi-result response, never inside a (continued) packet.
    pub fn may_end_with_error(&self) -> bool {
        !self.continuation && matches!(self.expect, Expect::Rows | Expect::Result)
    }

    /// Rewrites OK packets for a client that sees `view` (the backend
    /// connection tracks session state for the proxy's own use).
    pub fn rewriting_for(mut self, view: Option<ClientView>) -> Self {
        if self.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            self.client_view = view;
        }
        self
    }

    /// Whether the next packet is a row (or a result's end).
    pub fn in_rows(&self) -> bool {
        self.expect == Expect::Rows
    }

    /// The replacement payload for the packet just stepped, if any.
    pub fn take_rewrite(&mut self) -> Option<Vec<u8>> {
        self.rewrite.take()
    }

    fn deprecate_eof(&self) -> bool {
        self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
    }

    /// Feeds one physical packet: its payload length and either the whole
    /// payload (when `len <= INSPECT_LIMIT`) or just its first byte.
    pub fn step(&mut self, len: usize, payload: &[u8]) -> Result<Step, Unexpected> {
        self.first_packet = !self.started;
        self.started = true;
        let continued = std::mem::replace(&mut self.continuation, len == MAX_PAYLOAD);
        if continued {
            return Ok(Step::Continue);
        }
        let first = payload.first().copied();
        match self.expect {
            Expect::Result => self.on_result(len, payload),
            Expect::ColumnDefs { left } => {
                if first == Some(0xFF) && len < MAX_PAYLOAD {
                    return Ok(self.on_err(payload));
                }
                self.expect = match (left - 1, self.deprecate_eof()) {
                    (0, false) => Expect::ColumnsEof,
                    (0, true) => Expect::Rows,
                    (left, _) => Expect::ColumnDefs { left },
                };
                Ok(Step::Continue)
            }
            Expect::ColumnsEof => {
                let (status, _) = messages::parse_eof(payload).ok_or(Unexpected("column EOF"))?;
                let opened = status & (status::CURSOR_EXISTS | status::MORE_RESULTS_EXISTS);
                if self.cursor && opened == status::CURSOR_EXISTS {
                    self.outcome.status = status;
                    self.outcome.has_status = true;
                    return Ok(Step::Done);
                }
                self.expect = Expect::Rows;
                Ok(Step::Continue)
            }
            Expect::Rows | Expect::FieldList => match first {
                Some(0xFE) if len < MAX_PAYLOAD => self.on_end(payload),
                Some(0xFF) if len < MAX_PAYLOAD => Ok(self.on_err(payload)),
                Some(_) => {
                    self.outcome.rows += 1;
                    if let Some(ids) = &self.thread_ids {
                        self.rewrite = with_thread_id_rewritten(payload, ids);
                    }
                    Ok(Step::Continue)
                }
                None => Err(Unexpected("row")),
            },
            Expect::Prepare { left } => {
                let left = left.checked_sub(1).ok_or(Unexpected("prepare response"))?;
                self.expect = Expect::Prepare { left };
                Ok(if left == 0 { Step::Done } else { Step::Continue })
            }
            Expect::Single => {
                if first == Some(0xFF) {
                    return Ok(self.on_err(payload));
                }
                Ok(if len == MAX_PAYLOAD { Step::Continue } else { Step::Done })
            }
        }
    }

    /// Passes over the whole row packets at the front of `frames` (raw
    /// frames, headers included) in one tight loop, as [`Machine::step`]
    /// would one by one. Stops before anything else: a packet that may end
    /// the rows (0xFE or 0xFF first), one that is empty, continued, larger
    /// than [`INSPECT_LIMIT`] or not whole in `frames`, and whenever the
    /// machine is not between rows. Returns the bytes passed and the
    /// sequence id of the last row, if any.
    pub fn step_rows(&mut self, frames: &[u8]) -> (usize, Option<u8>) {
        if self.expect != Expect::Rows || self.continuation || self.thread_ids.is_some() {
            return (0, None);
        }
        let mut pos = 0;
        let mut last_seq = None;
        let mut rows = 0;
        while let Some(h) = parse_header(&frames[pos..]) {
            let end = pos + HEADER + h.len;
            // Beyond INSPECT_LIMIT (so also every 16 MiB piece) the
            // packet-by-packet path streams it.
            if h.len == 0 || h.len > INSPECT_LIMIT || end > frames.len() {
                break;
            }
            if matches!(frames[pos + HEADER], 0xFE | 0xFF) {
                break;
            }
            rows += 1;
            last_seq = Some(h.seq);
            pos = end;
        }
        if rows > 0 {
            self.started = true;
            self.outcome.rows += rows;
        }
        (pos, last_seq)
    }

    /// The number of packets that follow a COM_STMT_PREPARE OK.
    pub fn prepare_packets(params: u16, columns: u16, caps: CapabilityFlags) -> u32 {
        let eof = u32::from(!caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
        let part = |n: u16| if n == 0 { 0 } else { u32::from(n) + eof };
        part(params) + part(columns)
    }

    fn on_result(&mut self, len: usize, payload: &[u8]) -> Result<Step, Unexpected> {
        match payload.first() {
            Some(0x00) | Some(0xFE) if len < MAX_PAYLOAD => self.on_end(payload),
            Some(0xFF) => Ok(self.on_err(payload)),
            Some(0xFB) => Ok(Step::LocalInfile),
            Some(_) => {
                let (n, _) = crate::protocol::packet::read_lenenc(payload)
                    .ok_or(Unexpected("column count"))?;
                if n == 0 {
                    return Err(Unexpected("column count"));
                }
                self.outcome.result_set = true;
                self.expect = Expect::ColumnDefs { left: n };
                Ok(Step::Continue)
            }
            None => Err(Unexpected("response")),
        }
    }

    /// An OK or EOF that ends a result or a whole response. Without
    /// DEPRECATE_EOF a 0xFE packet is an EOF; with it, an OK.
    fn on_end(&mut self, payload: &[u8]) -> Result<Step, Unexpected> {
        let o = &mut self.outcome;
        if payload[0] == 0xFE && !self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            let (st, warnings) = messages::parse_eof(payload).ok_or(Unexpected("EOF"))?;
            o.status = st;
            o.has_status = true;
            o.warnings = warnings;
            o.state_unreported = true;
            o.state_changed |= st & status::SESSION_STATE_CHANGED != 0;
        } else {
            let ok = messages::parse_ok(payload, self.caps).ok_or(Unexpected("OK"))?;
            o.status = ok.status;
            o.has_status = true;
            o.warnings = ok.warnings;
            o.affected_rows = ok.affected_rows;
            if ok.last_insert_id != 0 {
                o.last_insert_id = ok.last_insert_id;
            }
            // State the OK's block does not account for (a GTID among
            // it) counts as unreported.
            o.state_unreported = ok.unread_state;
            if !ok.session_state.is_empty() {
                o.note_session_state(ok.session_state);
            }
            if let Some(view) = self.client_view {
                self.rewrite = session_state::rewrite_ok(payload, view);
            }
        }
        o.error = None;
        if o.status & status::MORE_RESULTS_EXISTS != 0 {
            self.expect = Expect::Result;
            return Ok(Step::Continue);
        }
        Ok(Step::Done)
    }

    fn on_err(&mut self, payload: &[u8]) -> Step {
        let code = messages::parse_err(payload).map_or(0, |e| e.code);
        self.outcome.error = Some(code);
        if code == QUERY_INTERRUPTED
            && let Some(t) = self.timeout.as_ref().filter(|t| t.fired.load(Ordering::Relaxed))
        {
            self.rewrite = Some(t.error_packet());
            self.outcome.error = Some(STATEMENT_TIMEOUT);
        } else if self.first_packet && self.hold_first_error {
            self.outcome.withheld = true;
        }
        self.outcome.has_status = false;
        self.outcome.status &= !status::MORE_RESULTS_EXISTS;
        Step::Done
    }
}

/// A text row whose first column is a server thread id found in `ids`,
/// with the proxy session id in its place; `None` to pass it unchanged.
fn with_thread_id_rewritten(row: &[u8], ids: &[(u64, u64)]) -> Option<Vec<u8>> {
    let (len, at) = crate::protocol::packet::read_lenenc(row)?;
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let thread: u64 = std::str::from_utf8(row.get(at..end)?).ok()?.parse().ok()?;
    let (_, id) = ids.iter().find(|(t, _)| *t == thread)?;
    let mut out = Vec::with_capacity(row.len() + 8);
    crate::protocol::packet::put_lenenc_str(&mut out, id.to_string().as_bytes());
    out.extend_from_slice(&row[end..]);
    Some(out)
}

/// How many bytes a client may send ahead (pipelined commands) that a
/// relay still reads while it waits for the backend; past them it stops
/// watching the client until the next command.
const CLIENT_READ_AHEAD: usize = 16 << 10;

/// Why a relay stopped early. The side matters: a backend failure leaves
/// the client session usable, a client failure ends it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("backend connection failed: {0}")]
    Backend(FrameError),
    /// The backend failed before any byte of its reply reached the client:
    /// the command can be retried elsewhere, or answered with an error.
    #[error("backend connection failed before replying: {0}")]
    BackendBeforeReply(FrameError),
    /// The backend failed between two packets of a result the client was
    /// receiving: an error packet with sequence id `next_seq` ends the
    /// response cleanly, and the client's session goes on.
    #[error("backend connection failed during a result: {source}")]
    BackendMidResult { next_seq: u8, source: FrameError },
    #[error("backend protocol error: {0}")]
    Protocol(#[from] Unexpected),
    #[error("client connection failed: {0}")]
    Client(std::io::Error),
    /// The client closed its connection (or its sending half) while the
    /// backend was still to answer.
    #[error("the client left while its statement ran")]
    ClientLeft,
}

/// Streams one response from `backend` to `client` until `machine` says
/// it ended. Buffered frames are forwarded in one write per read from the
/// backend; a packet larger than [`INSPECT_LIMIT`] is streamed in pieces.
/// A LOCAL INFILE request is answered by relaying the client's packets to
/// the backend until the client's empty packet.
///
/// `gone` resolves when the backend is known to be gone (the monitor lost
/// it): waiting for its bytes then ends as if its connection had failed.
/// `at_end` runs once the response's last packet is read, before any of
/// it is written to the client: what it records is in place by the time
/// the client can act on the reply.
///
/// While the backend is still to answer, a machine
/// [`Machine::watching_client`] has the client's connection read too
/// (into `creader`, for the session's next command), so that a client
/// that leaves is noticed at once: the relay ends with
/// [`RelayError::ClientLeft`].
pub async fn relay<B, C, G, E>(
    backend: &mut B,
    breader: &mut PacketReader,
    client: &mut C,
    creader: &mut PacketReader,
    machine: &mut Machine,
    mut gone: std::pin::Pin<&mut G>,
    mut at_end: Option<E>,
) -> Result<(), RelayError>
where
    B: AsyncRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
    G: std::future::Future<Output = ()>,
    E: FnOnce(&Outcome),
{
    // Payload bytes of a large packet still to pass through unread.
    let mut skip = 0usize;
    // Whether any byte of the reply reached the client.
    let mut sent = false;
    // The sequence id of the last packet passed on; after a LOCAL INFILE
    // exchange the client's packets have moved the count on (unknown here).
    let mut last_seq = 0u8;
    let mut infile = false;
    loop {
        let buf = breader.buffered();
        let mut pos = 0usize;
        // Bytes of `buf` already written to the client.
        let mut written = 0usize;
        let mut step = Step::Continue;
        let mut need = 0usize;
        while step == Step::Continue {
            if skip > 0 {
                let n = skip.min(buf.len() - pos);
                pos += n;
                skip -= n;
                if skip > 0 {
                    break;
                }
                continue;
            }
            // Rows, the bulk of a large result, pass in one tight loop.
            let (rows, seq) = machine.step_rows(&buf[pos..]);
            if let Some(seq) = seq {
                pos += rows;
                last_seq = seq;
            }
            let Some(h) = parse_header(&buf[pos..]) else {
                need = pos + HEADER;
                break;
            };
            let avail = buf.len() - pos - HEADER;
            if h.len <= INSPECT_LIMIT {
                if avail < h.len {
                    need = pos + HEADER + h.len;
                    break;
                }
                step = machine.step(h.len, &buf[pos + HEADER..pos + HEADER + h.len])?;
                last_seq = h.seq;
                if step == Step::Done
                    && !machine.outcome.withheld
                    && let Some(at_end) = at_end.take()
                {
                    at_end(&machine.outcome);
                }
                if let Some(payload) = machine.take_rewrite() {
                    sent = true;
                    client.write_all(&buf[written..pos]).await.map_err(RelayError::Client)?;
                    let mut out = Vec::with_capacity(payload.len() + HEADER);
                    crate::protocol::packet::put_header(&mut out, payload.len(), h.seq);
                    out.extend_from_slice(&payload);
                    client.write_all(&out).await.map_err(RelayError::Client)?;
                    written = pos + HEADER + h.len;
                }
                pos += HEADER + h.len;
            } else {
                if avail == 0 {
                    need = pos + HEADER + 1;
                    break;
                }
                step = machine.step(h.len, &buf[pos + HEADER..pos + HEADER + 1])?;
                last_seq = h.seq;
                if step == Step::Done
                    && !machine.outcome.withheld
                    && let Some(at_end) = at_end.take()
                {
                    at_end(&machine.outcome);
                }
                let n = avail.min(h.len);
                pos += HEADER + n;
                skip = h.len - n;
            }
        }
        if machine.outcome.withheld {
            return Ok(());
        }
        if pos > written {
            sent = true;
            client.write_all(&buf[written..pos]).await.map_err(RelayError::Client)?;
        }
        if pos > 0 {
            breader.consume(pos);
            need = need.saturating_sub(pos);
        }
        match step {
            Step::Done => {
                client.flush().await.map_err(RelayError::Client)?;
                return Ok(());
            }
            Step::LocalInfile => {
                sent = true;
                infile = true;
                client.flush().await.map_err(RelayError::Client)?;
                forward_local_infile(client, creader, backend).await?;
            }
            Step::Continue => {
                let read = async {
                    if need > breader.buffered().len() {
                        breader.fill_to(backend, need).await
                    } else {
                        breader.fill(backend).await.map(|_| ())
                    }
                };
                tokio::pin!(read);
                let filled = loop {
                    let watch =
                        machine.watch_client && creader.buffered().len() < CLIENT_READ_AHEAD;
                    tokio::select! {
                        biased;
                        r = &mut read => break r,
                        () = &mut gone => break Err(FrameError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the monitor found the backend down while waiting for its reply",
                        ))),
                        // Bytes the client sent ahead wait in `creader`; the
                        // end of its stream means it left.
                        r = creader.fill(client), if watch => {
                            if r.is_err() {
                                return Err(RelayError::ClientLeft);
                            }
                        }
                    }
                };
                if let Err(e) = filled {
                    return Err(if !sent {
                        RelayError::BackendBeforeReply(e)
                    } else if skip == 0 && !infile && machine.may_end_with_error() {
                        RelayError::BackendMidResult {
                            next_seq: last_seq.wrapping_add(1),
                            source: e,
                        }
                    } else {
                        RelayError::Backend(e)
                    });
                }
            }
        }
    }
}

/// Forwards the client's LOCAL INFILE packets (raw, sequence ids kept)
/// until the empty packet that ends the file.
async fn forward_local_infile<B, C>(
    client: &mut C,
    creader: &mut PacketReader,
    backend: &mut B,
) -> Result<(), RelayError>
where
    B: AsyncWrite + Unpin,
    C: AsyncRead + Unpin,
{
    loop {
        creader.fill_to(client, HEADER).await.map_err(client_err)?;
        let h = parse_header(creader.buffered()).expect("header buffered");
        // Stream the packet through in pieces: a file can be large.
        let mut left = HEADER + h.len;
        while left > 0 {
            if creader.buffered().is_empty() {
                creader.fill(client).await.map_err(client_err)?;
            }
            let n = left.min(creader.buffered().len());
            backend
                .write_all(&creader.buffered()[..n])
                .await
                .map_err(|e| RelayError::Backend(e.into()))?;
            creader.consume(n);
            left -= n;
        }
        if h.len == 0 {
            backend.flush().await.map_err(|e| RelayError::Backend(e.into()))?;
            return Ok(());
        }
    }
}

fn client_err(e: FrameError) -> RelayError {
    match e {
        FrameError::Io(e) => RelayError::Client(e),
        other => RelayError::Client(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            other.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{build_eof, build_err, build_ok};

    fn caps(deprecate_eof: bool) -> CapabilityFlags {
        let mut c = CapabilityFlags::CLIENT_PROTOCOL_41;
        if deprecate_eof {
            c |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
        }
        c
    }

    fn feed(m: &mut Machine, packets: &[Vec<u8>]) -> Vec<Step> {
        packets.iter().map(|p| m.step(p.len(), p).unwrap()).collect()
    }

    fn result_set(deprecate_eof: bool, cols: usize, rows: usize, status: u16) -> Vec<Vec<u8>> {
        let c = caps(deprecate_eof);
        let mut v = vec![vec![cols as u8]];
        v.extend((0..cols).map(|_| b"\x03def\x00\x00\x00\x01a\x00\x0c".to_vec()));
        if !deprecate_eof {
            v.push(build_eof(c, 0x22, 0));
        }
        v.extend((0..rows).map(|_| b"\x011".to_vec()));
        v.push(build_eof(c, status, 0));
        v
    }

    #[test]
    fn a_cut_response_may_end_with_an_error_only_between_rows() {
        for deprecate in [false, true] {
            let packets = result_set(deprecate, 2, 3, 0x0002);
            let mut m = Machine::new(Expect::Result, caps(deprecate));
            feed(&mut m, &packets[..2]); // column count, first column
            assert!(!m.may_end_with_error(), "inside the column definitions");
            let header = if deprecate { 3 } else { 4 };
            feed(&mut m, &packets[2..header + 1]); // the rest of the header, one row
            assert!(m.may_end_with_error(), "between rows");
            // The first piece of a 16 MiB row: the row goes on.
            assert_eq!(m.step(MAX_PAYLOAD, b"\xfc").unwrap(), Step::Continue);
            assert!(!m.may_end_with_error(), "inside a continued row");
        }
    }

    #[test]
    fn ok_ends_response_and_keeps_status() {
        let mut m = Machine::new(Expect::Result, caps(false));
        assert_eq!(feed(&mut m, &[build_ok(2, 7, 3, 1)]), vec![Step::Done]);
        assert_eq!(
            (
                m.outcome.status,
                m.outcome.affected_rows,
                m.outcome.last_insert_id,
                m.outcome.warnings
            ),
            (3, 2, 7, 1)
        );
    }

    #[test]
    fn result_set_ends_at_final_eof_in_both_eof_modes() {
        for deprecate in [false, true] {
            let mut m = Machine::new(Expect::Result, caps(deprecate));
            let packets = result_set(deprecate, 2, 3, 0x0003);
            let steps = feed(&mut m, &packets);
            assert_eq!(steps.last(), Some(&Step::Done));
            assert!(steps[..steps.len() - 1].iter().all(|s| *s == Step::Continue));
            assert_eq!(m.outcome.status, 0x0003);
            assert!(m.outcome.result_set);
            // Only an EOF leaves the session state unreported.
            assert_eq!(m.outcome.state_unreported, !deprecate);
        }
    }

    /// An OK payload reporting session state: `entries` as (type, data).
    fn ok_with_state(status: u16, entries: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut state = Vec::new();
        for (kind, data) in entries {
            state.push(*kind);
            crate::protocol::packet::put_lenenc(&mut state, data.len() as u64);
            state.extend_from_slice(data);
        }
        let mut p = vec![0x00, 0x00, 0x00];
        p.extend_from_slice(&(status | 0x4000).to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]); // warnings, empty info
        crate::protocol::packet::put_lenenc(&mut p, state.len() as u64);
        p.extend_from_slice(&state);
        p
    }

    /// A system-variable entry's data: name and value.
    fn variable(name: &str, value: &str) -> (u8, Vec<u8>) {
        let mut data = vec![name.len() as u8];
        data.extend_from_slice(name.as_bytes());
        data.push(value.len() as u8);
        data.extend_from_slice(value.as_bytes());
        (session_state::TRACK_SYSTEM_VARIABLES, data)
    }

    #[test]
    fn a_multi_statements_gtid_outlives_the_later_statements_oks() {
        // `INSERT ...; SET NAMES gbk; USE app2; SET @x = 1`: the write's OK
        // reports its GTID, the next ones other changes.
        let c = caps(true) | CapabilityFlags::CLIENT_SESSION_TRACK;
        let more = status::MORE_RESULTS_EXISTS | 0x0002;
        let change = (session_state::TRACK_STATE_CHANGE, b"1".to_vec());
        let schema = (session_state::TRACK_SCHEMA, b"\x04app2".to_vec());
        let packets = [
            ok_with_state(more, &[variable("last_gtid", "0-1-24")]),
            ok_with_state(more, &[variable("character_set_client", "gbk")]),
            ok_with_state(more, &[schema, change.clone()]),
            ok_with_state(0x0002, &[change]),
        ];
        let mut m = Machine::new(Expect::Result, c);
        assert_eq!(feed(&mut m, &packets).last(), Some(&Step::Done));
        assert_eq!(m.outcome.gtid(), Some("0-1-24"));
        assert_eq!(m.outcome.character_set_client.as_deref(), Some(&b"gbk"[..]));
        assert_eq!(m.outcome.schema.as_deref(), Some(&b"app2"[..]));
        assert!(m.outcome.state_changed);
        // A later write's GTID replaces an earlier one's.
        let mut m = Machine::new(Expect::Result, c);
        feed(
            &mut m,
            &[
                ok_with_state(more, &[variable("last_gtid", "0-1-24")]),
                ok_with_state(0x0002, &[variable("last_gtid", "0-1-25")]),
            ],
        );
        assert_eq!(m.outcome.gtid(), Some("0-1-25"));
        assert_eq!(m.outcome.character_set_client, None);
    }

    #[test]
    fn a_multi_statements_insert_id_outlives_the_later_statements_oks() {
        // `INSERT ...; DO 1`: the server's LAST_INSERT_ID() is the insert's.
        let more = status::MORE_RESULTS_EXISTS | 0x0002;
        let mut m = Machine::new(Expect::Result, caps(true));
        feed(&mut m, &[build_ok(1, 7, more, 0), build_ok(0, 0, 0x0002, 0)]);
        assert_eq!((m.outcome.last_insert_id, m.outcome.affected_rows), (7, 0));
        let mut m = Machine::new(Expect::Result, caps(true));
        feed(&mut m, &[build_ok(1, 7, more, 0), build_ok(1, 8, 0x0002, 0)]);
        assert_eq!(m.outcome.last_insert_id, 8);
    }

    #[test]
    fn an_ok_after_a_result_set_reports_the_session_state_again() {
        let mut m = Machine::new(Expect::Result, caps(false));
        let mut packets = result_set(false, 1, 1, 0x000A);
        packets.push(build_ok(1, 0, 0x0002, 0));
        feed(&mut m, &packets);
        assert!(m.outcome.result_set && !m.outcome.state_unreported);
    }

    #[test]
    fn more_results_flag_continues_to_next_result() {
        let c = caps(true);
        let mut m = Machine::new(Expect::Result, c);
        let mut packets = result_set(true, 1, 1, 0x000A);
        packets.push(build_ok(1, 0, 0x0002, 0));
        let steps = feed(&mut m, &packets);
        assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(m.outcome.status, 2);
    }

    #[test]
    fn error_mid_result_set_ends_response() {
        let mut m = Machine::new(Expect::Result, caps(true));
        let mut packets = result_set(true, 1, 2, 2);
        packets.pop();
        packets.push(build_err(1317, "70100", "Query execution was interrupted"));
        assert_eq!(feed(&mut m, &packets).last(), Some(&Step::Done));
        assert_eq!(m.outcome.error, Some(1317));
    }

    #[test]
    fn local_infile_request_is_reported() {
        let mut m = Machine::new(Expect::Result, caps(true));
        assert_eq!(feed(&mut m, &[b"\xFB/tmp/x.csv".to_vec()]), vec![Step::LocalInfile]);
        assert_eq!(feed(&mut m, &[build_ok(5, 0, 2, 0)]), vec![Step::Done]);
        assert_eq!(m.outcome.affected_rows, 5);
    }

    #[test]
    fn cursor_response_ends_after_column_eof() {
        let c = caps(false);
        let mut m = Machine::new(Expect::Result, c).opening_cursor(true);
        let packets = vec![vec![1u8], b"\x03def".to_vec(), build_eof(c, 0x0042, 0)];
        assert_eq!(feed(&mut m, &packets).last(), Some(&Step::Done));
    }

    /// A procedure with a cursor open sends its SELECTs' result sets with
    /// CURSOR_EXISTS in the column EOF (MariaDB), rows and all.
    #[test]
    fn rows_follow_a_cursor_flag_no_cursor_was_asked_for() {
        let c = caps(false);
        let more = status::MORE_RESULTS_EXISTS | status::CURSOR_EXISTS | status::AUTOCOMMIT;
        let packets = vec![
            vec![1u8],
            b"\x03def".to_vec(),
            build_eof(c, more, 0),
            b"\x011".to_vec(),
            build_eof(c, more, 0),
            build_ok(0, 0, status::AUTOCOMMIT, 0),
        ];
        for cursor_asked in [false, true] {
            let mut m = Machine::new(Expect::Result, c).opening_cursor(cursor_asked);
            let steps = feed(&mut m, &packets);
            assert_eq!(steps[..5], [Step::Continue; 5]);
            assert_eq!(steps[5], Step::Done);
            assert_eq!(m.outcome.rows, 1);
        }
    }

    #[test]
    fn row_starting_with_fe_in_a_16_mib_packet_is_a_row() {
        let mut m = Machine::new(Expect::Rows, caps(true));
        assert_eq!(m.step(MAX_PAYLOAD, &[0xFE]).unwrap(), Step::Continue);
        // The continuation's first byte means nothing.
        assert_eq!(m.step(10, &[0xFE, 0, 0, 0, 0, 0, 0]).unwrap(), Step::Continue);
        assert_eq!(feed(&mut m, &[build_eof(caps(true), 2, 0)]), vec![Step::Done]);
    }

    #[test]
    fn rows_passed_in_one_run_end_where_stepping_them_one_by_one_does() {
        for deprecate in [false, true] {
            let c = caps(deprecate);
            let mut packets = result_set(deprecate, 2, 0, 2);
            let end = packets.pop().expect("the final EOF");
            // Rows of several sizes, one starting with 0xFB (NULL) and one
            // with a 0xFC length, then the end.
            packets.extend([
                b"\x011".to_vec(),
                vec![0xFB, 0x01, b'x'],
                vec![0xFC, 0x02, 0x00, 1, 2],
            ]);
            packets.extend((0..40).map(|i| vec![b'a'; 1 + i * 7]));
            packets.push(end);
            let mut wire = Vec::new();
            for (seq, p) in packets.iter().enumerate() {
                crate::protocol::packet::put_packet(&mut wire, seq as u8, p);
            }

            let mut one_by_one = Machine::new(Expect::Result, c);
            assert_eq!(feed(&mut one_by_one, &packets).last(), Some(&Step::Done));

            // Step the header, then let runs of rows go in one call,
            // whatever the buffer holds: cut it at every length.
            let header_len: usize =
                packets[..packets.len() - 44].iter().map(|p| p.len() + HEADER).sum();
            for cut in header_len..wire.len() {
                let mut m = Machine::new(Expect::Result, c);
                feed(&mut m, &packets[..packets.len() - 44]);
                let (passed, last) = m.step_rows(&wire[header_len..cut]);
                let rows_passed = packets[packets.len() - 44..packets.len() - 1]
                    .iter()
                    .scan(0, |at, p| {
                        *at += p.len() + HEADER;
                        Some(*at)
                    })
                    .take_while(|at| *at <= cut - header_len)
                    .count();
                assert_eq!(m.outcome.rows, rows_passed as u64, "cut at {cut}");
                let expected_at: usize = packets[packets.len() - 44..][..rows_passed]
                    .iter()
                    .map(|p| p.len() + HEADER)
                    .sum();
                assert_eq!(passed, expected_at, "cut at {cut}");
                assert_eq!(last.is_some(), rows_passed > 0);
                // The rest goes packet by packet and ends the same way.
                let rest = &packets[packets.len() - 44 + rows_passed..];
                assert_eq!(feed(&mut m, rest).last(), Some(&Step::Done));
                assert_eq!(m.outcome, one_by_one.outcome, "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_row_run_stops_at_anything_that_is_not_a_plain_row() {
        let c = caps(true);
        for stop in [vec![0xFE, 0, 0, 2, 0, 0, 0], vec![0xFF, 0x10, 0x04, b'#'], vec![]] {
            let mut wire = Vec::new();
            crate::protocol::packet::put_packet(&mut wire, 5, b"\x011");
            crate::protocol::packet::put_packet(&mut wire, 6, &stop);
            let mut m = Machine::new(Expect::Rows, c);
            assert_eq!(m.step_rows(&wire), (6, Some(5)));
            assert_eq!(m.outcome.rows, 1);
        }
        // Not between rows: nothing passes.
        let mut m = Machine::new(Expect::Result, c);
        let mut wire = Vec::new();
        crate::protocol::packet::put_packet(&mut wire, 1, b"\x011");
        assert_eq!(m.step_rows(&wire), (0, None));
        // A 16 MiB piece is left to the packet-by-packet path.
        let mut m = Machine::new(Expect::Rows, c);
        let mut big = vec![0xFF, 0xFF, 0xFF, 1];
        big.push(0x01);
        assert_eq!(m.step_rows(&big), (0, None));
    }

    #[test]
    fn prepare_counts_definitions_and_eofs() {
        assert_eq!(Machine::prepare_packets(2, 3, caps(false)), 7);
        assert_eq!(Machine::prepare_packets(2, 0, caps(false)), 3);
        assert_eq!(Machine::prepare_packets(2, 3, caps(true)), 5);
        assert_eq!(Machine::prepare_packets(0, 0, caps(false)), 0);
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        // A lone 0xFC is a truncated length-encoded column count.
        let mut m = Machine::new(Expect::Result, caps(true));
        assert_eq!(m.step(1, &[0xFC]), Err(Unexpected("column count")));
        // An OK cut after its header.
        let mut m = Machine::new(Expect::Result, caps(true));
        assert_eq!(m.step(1, &[0x00]), Err(Unexpected("OK")));
        let mut m = Machine::new(Expect::ColumnsEof, caps(false));
        assert_eq!(m.step(1, &[0x03]), Err(Unexpected("column EOF")));
        // A prepare response with nothing left to count.
        let mut m = Machine::new(Expect::Prepare { left: 0 }, caps(false));
        assert!(m.step(1, &[0x03]).is_err());
    }

    #[test]
    fn processlist_rows_show_proxy_ids_for_the_proxys_threads() {
        use crate::protocol::packet::put_lenenc_str;
        let row = |id: &str| {
            let mut r = Vec::new();
            for v in [id, "app", "127.0.0.1:5000"] {
                put_lenenc_str(&mut r, v.as_bytes());
            }
            r.push(0xFB); // a NULL db
            r
        };
        let ids = vec![(3548, 7), (12, 1234567)];
        let mut m = Machine::new(Expect::Rows, caps(true)).rewriting_thread_ids(Some(ids));
        assert_eq!(m.step_rows(&[]), (0, None), "rows are looked at one by one");
        assert_eq!(m.step(row("3548").len(), &row("3548")), Ok(Step::Continue));
        assert_eq!(m.take_rewrite(), Some(row("7")));
        assert_eq!(m.step(row("12").len(), &row("12")), Ok(Step::Continue));
        assert_eq!(m.take_rewrite(), Some(row("1234567")));
        // Another connection's thread, and rows that are not ids.
        for other in [row("99"), row("x"), vec![0xFB, 0x01]] {
            assert_eq!(m.step(other.len(), &other), Ok(Step::Continue));
            assert_eq!(m.take_rewrite(), None);
        }
        assert_eq!(m.outcome.rows, 5);
    }

    #[tokio::test]
    async fn relay_forwards_bytes_unchanged() {
        let c = caps(true);
        let mut wire = Vec::new();
        let mut seq = 1u8;
        for p in result_set(true, 3, 50, 2) {
            seq = crate::protocol::packet::put_packet(&mut wire, seq, &p);
        }
        let (mut server_side, mut backend) = tokio::io::duplex(64);
        let (mut client, mut client_peer) = tokio::io::duplex(1 << 20);
        let w = wire.clone();
        let writer = tokio::spawn(async move {
            server_side.write_all(&w).await.unwrap();
            server_side
        });
        let mut m = Machine::new(Expect::Result, c);
        relay(
            &mut backend,
            &mut PacketReader::new(),
            &mut client_peer,
            &mut PacketReader::new(),
            &mut m,
            std::pin::pin!(std::future::pending()),
            None::<fn(&Outcome)>,
        )
        .await
        .unwrap();
        let _keep = writer.await.unwrap();
        drop(client_peer);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got).await.unwrap();
        assert_eq!(got, wire);
    }

    #[test]
    fn only_a_response_that_is_just_an_error_is_withheld() {
        let no_table = build_err(1146, "42S02", "Table 'app.t' doesn't exist");
        let m = |hold| Machine::new(Expect::Result, caps(true)).holding_first_error(hold);
        let mut held = m(true);
        assert_eq!(feed(&mut held, std::slice::from_ref(&no_table)), vec![Step::Done]);
        assert!(held.outcome.withheld);
        assert_eq!(held.outcome.error, Some(1146));
        let mut not_held = m(false);
        feed(&mut not_held, std::slice::from_ref(&no_table));
        assert!(!not_held.outcome.withheld);
        // After a first result (a multi-statement), the error is the
        // client's: part of the reply has reached it.
        let mut later = m(true);
        let mut packets = vec![build_ok(0, 0, status::MORE_RESULTS_EXISTS | 2, 0)];
        packets.push(no_table);
        feed(&mut later, &packets);
        assert!(!later.outcome.withheld);
        // The proxy's own kill is reworded for the client, never held.
        let fired = Arc::new(QueryTimeout {
            limit: std::time::Duration::from_secs(1),
            fired: AtomicBool::new(true),
        });
        let mut killed = m(true).with_timeout(Some(fired));
        feed(&mut killed, &[build_err(QUERY_INTERRUPTED, "70100", "interrupted")]);
        assert!(!killed.outcome.withheld);
        assert_eq!(killed.outcome.error, Some(STATEMENT_TIMEOUT));
    }

    #[tokio::test]
    async fn a_withheld_error_never_reaches_the_client() {
        let mut wire = Vec::new();
        crate::protocol::packet::put_packet(&mut wire, 1, &build_err(1146, "42S02", "no table"));
        let seen = Kept::default();
        let mut m = Machine::new(Expect::Result, caps(true)).holding_first_error(true);
        let breader = relay_to(&wire, 1 << 16, &mut m, &seen, None::<fn(&Outcome)>).await;
        assert!(m.outcome.withheld);
        assert!(seen.lock().unwrap().is_empty(), "the held error reached the client");
        assert_eq!(breader.buffered(), wire, "the error is left for the caller to read");
    }

    type Kept = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

    /// Relays `wire`, which the backend sends `backend_buffer` bytes at a
    /// time, through `m` to a client that keeps what it gets in `seen`;
    /// returns the backend reader as the relay left it.
    async fn relay_to(
        wire: &[u8],
        backend_buffer: usize,
        m: &mut Machine,
        seen: &Kept,
        at_end: Option<impl FnOnce(&Outcome)>,
    ) -> PacketReader {
        let (mut server_side, mut backend) = tokio::io::duplex(backend_buffer);
        let w = wire.to_vec();
        let writer = tokio::spawn(async move {
            server_side.write_all(&w).await.unwrap();
            server_side
        });
        let mut breader = PacketReader::new();
        let pending = std::pin::pin!(std::future::pending());
        let mut client = Seen(seen.clone());
        relay(
            &mut backend,
            &mut breader,
            &mut client,
            &mut PacketReader::new(),
            m,
            pending,
            at_end,
        )
        .await
        .unwrap();
        let _keep = writer.await.unwrap();
        breader
    }

    /// A client connection that keeps what it is sent, in `seen`.
    struct Seen(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl AsyncRead for Seen {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }

    impl AsyncWrite for Seen {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// What the end of a reply records (a write's GTID, for the client's
    /// other connections) is recorded before the reply's last packet
    /// reaches the client, in one read or over several, so a client acting
    /// on the reply at once finds it recorded.
    #[tokio::test]
    async fn the_end_of_a_reply_is_seen_before_the_client_gets_its_last_packet() {
        for (name, packets) in [
            ("an OK", vec![build_ok(1, 0, 2, 0)]),
            ("a result set", result_set(true, 3, 50, 2)),
            ("a result set ending in EOF", result_set(false, 2, 10, 2)),
        ] {
            let deprecate_eof = name != "a result set ending in EOF";
            let mut wire = Vec::new();
            let mut seq = 1u8;
            for p in &packets {
                seq = crate::protocol::packet::put_packet(&mut wire, seq, p);
            }
            let last = packets.last().expect("a packet").len() + HEADER;
            for backend_buffer in [16, 1 << 16] {
                let seen = Kept::default();
                let mut at_end = None;
                let mut m = Machine::new(Expect::Result, caps(deprecate_eof));
                let record = |o: &Outcome| at_end = Some((o.status, seen.lock().unwrap().len()));
                relay_to(&wire, backend_buffer, &mut m, &seen, Some(record)).await;
                let (status, sent_before) = at_end.expect("at_end ran");
                assert_eq!(status, 2, "{name}: the reply's end was parsed");
                assert!(
                    sent_before <= wire.len() - last,
                    "{name}, backend buffer {backend_buffer}: {sent_before} of {} bytes \
                     reached the client before the end was recorded",
                    wire.len()
                );
                assert_eq!(*seen.lock().unwrap(), wire, "{name}: the reply passes unchanged");
            }
        }
    }
}
