//! Read-your-writes. After a write the session remembers its GTID; a
//! later read goes to a replica already known to hold it, or waits for it
//! on a replica in the same round trip as the read (the wait and the read
//! pipelined on one connection), and runs on the primary when the wait
//! times out. `pin` keeps reads on the primary for a while instead;
//! `gtid_global` waits for the primary's latest position (causal across
//! sessions and proxy instances); `eventual` does nothing.

use super::{Session, SessionError};
use crate::classify::{Consistency, StatementInfo};
use crate::config::{Config, ConsistencyMode};
use crate::monitor::gtid;
use crate::protocol::command;
use crate::recent_writes::{Carried, ClientWrites};
use crate::relay::{Expect, Outcome};
use crate::weighting::InFlight;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the session remembers of its writes.
#[derive(Debug, Default)]
pub struct WriteMemory {
    /// The mode set for the session (`SET @rwsplit_consistency`), if any.
    pub session_mode: Option<ConsistencyMode>,
    /// The mode from the listener or user.
    pub default_mode: ConsistencyMode,
    /// The GTID of the session's latest write.
    pub gtid: Option<String>,
    /// The session's latest write may have a GTID the primary did not
    /// report (its response ended in an EOF): the next read waits for the
    /// primary's position instead, which then stands in for `gtid`.
    pub gtid_unreported: bool,
    /// When the session last wrote without a known GTID (pin until then +
    /// pin_for), or wrote at all in `pin` mode.
    pub pinned_since: Option<Instant>,
    /// What the client's sessions (this one, those open beside it, those
    /// before it) wrote: see `crate::recent_writes`.
    pub client: Arc<ClientWrites>,
    /// The client's write count this session last took in.
    pub seen: u64,
}

impl WriteMemory {
    /// Takes in the writes of the client's other sessions, if any wrote
    /// since the session last looked.
    fn take_in_client_writes(&mut self) {
        if self.client.version() == self.seen {
            return;
        }
        let (theirs, version) = self.client.snapshot();
        let mut merged = self.as_carried();
        merged.merge(theirs);
        self.gtid = merged.gtid;
        // The session's own unreported write stays unreported.
        self.gtid_unreported |= merged.gtid_unreported;
        self.pinned_since = merged.pinned_since;
        self.seen = version;
    }

    /// The session's writes, as the client's other sessions take them in.
    fn as_carried(&self) -> Carried {
        Carried {
            gtid: self.gtid.clone(),
            gtid_unreported: self.gtid_unreported,
            pinned_since: self.pinned_since,
        }
    }
}

/// Whether every replica, taking reads or not (one out of the rotation
/// may come back), has applied `target`, as the monitor last saw (false
/// when there is none, or a position is not known).
fn applied_everywhere(topology: &crate::monitor::Topology, target: &str) -> bool {
    let mut replicas =
        topology.backends.iter().filter(|b| b.role == crate::monitor::Role::Replica).peekable();
    replicas.peek().is_some()
        && replicas.all(|b| {
            let flavor = b.flavor.unwrap_or(crate::monitor::Flavor::MariaDb);
            b.gtid_position.as_deref().is_some_and(|p| gtid::position_covers(flavor, p, target))
        })
}

/// What a read needs before it may run on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadNeed {
    Nothing,
    /// Only the primary is safe.
    Primary,
    /// A replica that has applied this GTID (or position).
    Gtid(String),
    /// The primary's position right now (gtid_global).
    PrimaryPosition,
}

/// The mode a statement runs under: its hint, else the session's.
pub fn mode_for(info: &StatementInfo, memory: &WriteMemory) -> ConsistencyMode {
    match info.consistency {
        Some(Consistency::Eventual) => ConsistencyMode::Eventual,
        Some(Consistency::Pin) => ConsistencyMode::Pin,
        Some(Consistency::Gtid) => ConsistencyMode::Gtid,
        Some(Consistency::GtidGlobal) => ConsistencyMode::GtidGlobal,
        None => memory.session_mode.unwrap_or(memory.default_mode),
    }
}

/// The mode of a session that set none itself, as `config` says: its
/// user's, else its listener's (by the name rules use), else the global
/// one. Taken again when a reload changes the config and when the
/// session's user changes.
pub fn configured_mode(config: &Config, user: &[u8], listener: &str) -> ConsistencyMode {
    config
        .user(user)
        .and_then(|u| u.consistency)
        .or_else(|| {
            config.listeners.iter().find(|l| l.rule_name() == listener).and_then(|l| l.consistency)
        })
        .unwrap_or(config.consistency.mode)
}

/// What a read needs, from the mode and the session's writes (pure).
pub fn read_need(
    mode: ConsistencyMode,
    memory: &WriteMemory,
    pin_for: Option<Duration>,
    now: Instant,
) -> ReadNeed {
    let pinned = memory
        .pinned_since
        .is_some_and(|since| pin_for.is_none_or(|d| now.duration_since(since) < d));
    match mode {
        ConsistencyMode::Eventual => ReadNeed::Nothing,
        ConsistencyMode::Pin if pinned => ReadNeed::Primary,
        ConsistencyMode::Pin => ReadNeed::Nothing,
        ConsistencyMode::Gtid if pinned => ReadNeed::Primary,
        ConsistencyMode::Gtid if memory.gtid_unreported => ReadNeed::PrimaryPosition,
        ConsistencyMode::Gtid => memory.gtid.clone().map_or(ReadNeed::Nothing, ReadNeed::Gtid),
        ConsistencyMode::GtidGlobal => ReadNeed::PrimaryPosition,
    }
}

/// Only characters that GTIDs and positions use (digits, hex, '-', ':',
/// ',', whitespace): anything else is refused rather than quoted.
pub fn safe_gtid(g: &str) -> Option<&str> {
    let ok = !g.is_empty()
        && g.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '-' | ':' | ',' | ' ' | '\n'));
    ok.then_some(g)
}

/// The wait statement for a replica: returns 0 once the GTID is applied.
/// The timeout is never zero (MySQL would wait forever) nor negative.
pub fn wait_statement(mariadb: bool, gtid: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs_f64().max(0.001);
    if mariadb {
        format!("SELECT MASTER_GTID_WAIT('{gtid}', {secs:.3})")
    } else {
        format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{}', {secs:.3})", gtid.replace('\n', ""))
    }
}

/// What a reply from the primary adds to the session's writes (pure):
/// its GTID, a write that went unreported (its reply ended in an EOF,
/// which carries no session state, or in an error), and a pin (`pin`
/// mode, or a write on a connection that does not report GTIDs). None
/// when the statement wrote nothing reads must follow: not a write
/// (`write`) and no GTID reported (COMMIT and implicit commits report
/// one). `status_before` is the session's status before the reply, which
/// an ERR, carrying none, leaves as it was.
pub fn reply_writes(
    mode: ConsistencyMode,
    write: bool,
    tracked: bool,
    outcome: &Outcome,
    status_before: u16,
    now: Instant,
) -> Option<Carried> {
    let gtid = outcome.gtid();
    if !write && gtid.is_none() {
        return None;
    }
    // Inside a transaction the GTID comes with COMMIT.
    let status = if outcome.has_status { outcome.status } else { status_before };
    let in_transaction = status & crate::protocol::status::IN_TRANS != 0;
    // With tracking on, an autocommit write without a GTID logged nothing;
    // without tracking the write cannot be followed: pin.
    let untracked = gtid.is_none() && !tracked && !in_transaction;
    // A write that failed may still have logged what it did before the
    // error, which reports no GTID: the rows a multi-row INSERT into a
    // non-transactional table (MyISAM, Aria) added before the failing one,
    // the statements a procedure committed before the one that failed.
    let failed = write && outcome.error.is_some();
    Some(Carried {
        gtid: gtid.map(str::to_string),
        gtid_unreported: (outcome.state_unreported || failed) && !in_transaction,
        pinned_since: (mode == ConsistencyMode::Pin || untracked).then_some(now),
    })
}

/// A session's writes as the relay passes them on before the reply
/// reaches the client (see `Session::early_pass_on`).
pub struct EarlyPassOn {
    client: Arc<ClientWrites>,
    mode: ConsistencyMode,
    write: bool,
    tracked: bool,
    unreported_before: bool,
    status_before: u16,
}

impl EarlyPassOn {
    /// Records what the reply that just ended (`outcome`) wrote.
    pub fn record(self, outcome: &Outcome) {
        let now = Instant::now();
        if let Some(mut added) =
            reply_writes(self.mode, self.write, self.tracked, outcome, self.status_before, now)
        {
            added.gtid_unreported |= self.unreported_before;
            self.client.record(added);
        }
    }
}

/// Parses the intercepted `SET @rwsplit_consistency = 'mode'` (read by the
/// classifier's lexer: comments anywhere, as ORMs and tracing libraries
/// add them). Nothing is allocated for any other statement (every `SET
/// @...` of a session is asked). The value of a prepared one may be its
/// parameter, `?`, which fails to parse as a mode; a statement that is
/// more than the assignment (another one after it) is refused with its
/// text from the value on.
pub fn parse_session_mode(sql: &str) -> Option<Result<ConsistencyMode, String>> {
    let value = crate::classify::user_variable_value(
        sql,
        crate::classify::Backslashes::Escape,
        "rwsplit_consistency",
    )?;
    let value = value.unwrap_or_else(|rest| rest).to_ascii_lowercase();
    Some(ConsistencyMode::parse(&value).ok_or(value))
}

/// A prepared `SET @rwsplit_consistency` (drivers that prepare every
/// statement): the mode written in it, or bound to its one parameter as a
/// string in `execute` (`types`: those the server has, for an execute that
/// leaves them out).
pub fn parse_prepared_session_mode(
    sql: &str,
    execute: &[u8],
    types: Option<&[u8]>,
) -> Option<Result<ConsistencyMode, String>> {
    match parse_session_mode(sql)? {
        Err(value) if value == "?" => {
            let bound = super::prepared::only_string_param(execute, types).unwrap_or_default();
            let value = String::from_utf8_lossy(bound).to_ascii_lowercase();
            Some(ConsistencyMode::parse(&value).ok_or(value))
        }
        parsed => Some(parsed),
    }
}

impl Session {
    /// What a read arriving at `now` (the statement's start) must see.
    pub(super) fn need_for(&mut self, info: &StatementInfo, now: Instant) -> ReadNeed {
        let pin_for = self.view.config.consistency.pin_for;
        let mode = mode_for(info, &self.writes);
        if mode != ConsistencyMode::Eventual {
            self.writes.take_in_client_writes();
        }
        read_need(mode, &self.writes, pin_for, now)
    }

    /// A read that needs the session's last write, which every replica has
    /// applied by now (as the monitor saw), needs nothing: the write is
    /// forgotten, and the session's later reads skip the check (a GTID
    /// parsed per replica per read).
    pub(super) fn forget_applied_write(
        &mut self,
        route: crate::router::Route,
        need: ReadNeed,
    ) -> ReadNeed {
        let ReadNeed::Gtid(g) = &need else {
            return need;
        };
        if route.target != crate::router::Target::AnyReplica
            || self.writes.gtid.as_deref() != Some(g.as_str())
            || !applied_everywhere(&self.shared.topology_now(), g)
        {
            return need;
        }
        self.writes.gtid = None;
        ReadNeed::Nothing
    }

    /// Remembers a statement that ran on the primary: what it wrote, if
    /// anything, joins the session's writes.
    pub(super) fn remember_write(&mut self, idx: usize, outcome: &Outcome) {
        let mode = self.writes.session_mode.unwrap_or(self.writes.default_mode);
        let write = self.routing.statement_writes;
        let tracked =
            self.backends.get(idx).and_then(Option::as_ref).is_some_and(|c| c.tracks_gtids);
        let now = Instant::now();
        let Some(added) = reply_writes(mode, write, tracked, outcome, self.status, now) else {
            return;
        };
        if added.pinned_since.is_some() {
            self.writes.pinned_since = added.pinned_since;
            self.shared.telemetry.session_pins.increment(1);
        }
        if added.gtid.is_some() {
            self.writes.gtid = added.gtid;
        }
        self.writes.gtid_unreported |= added.gtid_unreported;
        self.pass_on_writes(mode);
    }

    /// What the reply now coming from `idx` leaves for the client's other
    /// sessions, recorded by the relay the moment the reply's last packet
    /// is read and before it reaches the client: a read the client sends
    /// on another connection as soon as the write is acknowledged already
    /// follows it. (`remember_write` records it again after the reply, with
    /// the session's own memory.) None: not the primary, or `eventual`.
    pub(super) fn early_pass_on(&self, idx: usize) -> Option<EarlyPassOn> {
        let mode = self.writes.session_mode.unwrap_or(self.writes.default_mode);
        if idx != self.primary() || mode == ConsistencyMode::Eventual {
            return None;
        }
        Some(EarlyPassOn {
            client: self.writes.client.clone(),
            mode,
            write: self.routing.statement_writes,
            tracked: self
                .backends
                .get(idx)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.tracks_gtids),
            unreported_before: self.writes.gtid_unreported,
            status_before: self.status,
        })
    }

    /// Leaves what the session wrote for the client's other sessions (see
    /// `crate::recent_writes`).
    fn pass_on_writes(&self, mode: ConsistencyMode) {
        if mode == ConsistencyMode::Eventual {
            return;
        }
        self.writes.client.record(self.writes.as_carried());
    }

    /// What a causal read waits for: the GTID it needs or the primary's
    /// position (None: nothing written yet, or unreadable). `Err` when
    /// only the primary is safe: the session's last write went unreported
    /// and the primary's position cannot be read.
    pub(super) async fn causal_target(&mut self, need: ReadNeed) -> Result<Option<String>, ()> {
        let unreported = need == ReadNeed::PrimaryPosition && self.writes.gtid_unreported;
        let target = match need {
            ReadNeed::Gtid(g) => Some(g),
            _ => self.primary_position().await,
        }
        .filter(|g| safe_gtid(g).is_some());
        if unreported {
            // Read after the write's reply, the position covers the write:
            // later reads wait for it as for the write's own GTID.
            let pos = target.as_ref().ok_or(())?;
            self.writes.gtid = Some(pos.clone());
            self.writes.gtid_unreported = false;
            self.pass_on_writes(self.writes.session_mode.unwrap_or(self.writes.default_mode));
        }
        Ok(target)
    }

    /// The primary's current GTID position (gtid_global), read on the
    /// session's primary connection. Reads that arrive while another
    /// session's fetch is in flight wait for the next one, which started
    /// after they arrived, so the position covers every write they saw.
    pub(super) async fn primary_position(&mut self) -> Option<String> {
        let arrived = Instant::now();
        let shared = self.shared.clone();
        let mut cache = shared.global_position.lock().await;
        if let Some((started, pos)) = cache.as_ref()
            && *started >= arrived
        {
            return Some(pos.clone());
        }
        let started = Instant::now();
        let primary = self.primary();
        let conn = self.backend(primary).await.ok()?;
        let sql = if conn.is_mariadb() {
            "SELECT @@global.gtid_binlog_pos"
        } else {
            "SELECT @@global.gtid_executed"
        };
        let pos = conn.query_value(sql).await.ok()??;
        *cache = Some((started, pos.clone()));
        Some(pos)
    }

    /// After a read waited for `target` (a write of the session's client)
    /// on a replica in vain (text or prepared: see `waited_forward`): when the primary, asked now, after the write
    /// was acknowledged, does not hold it either, no replica ever will
    /// (the servers' history was reset, as by RESET MASTER or a rebuilt
    /// cluster, or the write was lost with a primary that failed), and
    /// the session and its client stop waiting for it; else every later
    /// read of theirs would wait as long, forever.
    async fn forget_if_unreachable(&mut self, target: &str) {
        let Some(position) = self.primary_position().await else { return };
        let flavor = self
            .shared
            .topology_now()
            .backends
            .get(self.primary())
            .and_then(|b| b.flavor)
            .unwrap_or(crate::monitor::Flavor::MariaDb);
        if gtid::position_covers(flavor, &position, target) {
            return;
        }
        crate::telemetry::warn_throttled!(
            id = self.id,
            gtid = target,
            primary_position = %position,
            "the primary does not hold a write reads were waiting for (history reset or write lost): no longer waited for"
        );
        if self.writes.gtid.as_deref() == Some(target) {
            self.writes.gtid = None;
        }
        self.writes.client.forget(target);
    }

    /// Chooses a replica for a read that needs `target`: one the monitor
    /// already saw holding it (no wait; the least busy of them), else the
    /// least lagging eligible one (wait there, see `replica_to_wait_on`),
    /// and whether it holds it. The read counts as in flight there until
    /// the guard is dropped. `None` (the primary answers) when no replica
    /// is eligible, or when even the least lagging one is further behind
    /// than the wait may last.
    pub(super) fn replica_for_gtid(&self, target: &str) -> Option<(usize, bool, InFlight)> {
        let topology = self.shared.topology_now();
        let backends = &topology.backends;
        let eligible = |i: usize| {
            backends.get(i).is_some_and(|b| {
                b.eligible && b.role == crate::monitor::Role::Replica && self.shared.takes_reads(i)
            })
        };
        let holds = |i: usize| {
            let b = &backends[i];
            let flavor = b.flavor.unwrap_or(crate::monitor::Flavor::MariaDb);
            b.gtid_position.as_deref().is_some_and(|p| gtid::position_covers(flavor, p, target))
        };
        let picker = &self.shared.picker;
        if let Some((i, guard)) = picker.least_busy(&topology, |i| eligible(i) && holds(i)) {
            return Some((i, true, guard));
        }
        let timeout = self.view.config.consistency.gtid_wait_timeout;
        let wait_on = match replica_to_wait_on(backends, eligible, timeout) {
            WaitOn::Replica(i) => i,
            WaitOn::NoReplica => return None,
            WaitOn::AllTooFarBehind => {
                let telemetry = &self.shared.telemetry;
                telemetry.gtid_waits_skipped.increment(1);
                telemetry.gtid_fallbacks.increment(1);
                return None;
            }
        };
        picker.least_busy(&topology, |i| i == wait_on).map(|(i, guard)| (i, false, guard))
    }

    /// Sends the GTID wait and then `self.cmd` to replica `idx` in one
    /// write. When the replica reached the GTID in time, the read's
    /// response is relayed and returned; otherwise it is discarded and
    /// `None` is returned so the caller runs the read on the primary.
    /// `hold_error` as in `relay_holding`.
    pub(super) async fn waited_forward(
        &mut self,
        idx: usize,
        target: &str,
        expect: Expect,
        hold_error: bool,
    ) -> Result<Option<Outcome>, SessionError> {
        let timeout = self.view.config.consistency.gtid_wait_timeout;
        let started = Instant::now();
        let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut) else {
            return Ok(None);
        };
        let mut wait = vec![command::QUERY];
        wait.extend_from_slice(wait_statement(conn.is_mariadb(), target, timeout).as_bytes());
        if conn.write_two(&wait, &self.cmd).await.is_err() {
            self.drop_backend(idx);
            return Ok(None);
        }
        // The wait is bounded by the monitor as a statement is: a replica
        // found down meanwhile is given up on, and the primary answers.
        let (shared, handle) = (self.shared.clone(), self.handle.clone());
        let waited = tokio::select! {
            biased;
            r = conn.read_own(Expect::Result) => Some(r),
            () = shared.outages.watch(idx, &handle.signal) => None,
        };
        let reached = match waited {
            Some(Ok((_, Some(row)))) => first_text_value(&row).as_deref() == Some("0"),
            Some(Ok((_, None))) => false,
            Some(Err(crate::backend::BackendError::Server { .. })) => false,
            Some(Err(_)) | None => {
                self.drop_backend(idx);
                return Ok(None);
            }
        };
        let telemetry = &self.shared.telemetry;
        telemetry.gtid_wait_seconds.record(started.elapsed().as_secs_f64());
        if reached {
            telemetry.gtid_waits_caught_up.increment(1);
            return self.relay_holding(idx, expect, hold_error).await;
        }
        telemetry.gtid_waits_timed_out.increment(1);
        let conn = self.backends[idx].as_mut().expect("open");
        let discard = async {
            match conn.read_own(expect).await {
                // The discarded statement opened a transaction there (START
                // TRANSACTION READ ONLY): its snapshot must not outlive it.
                Ok(_) if conn.in_transaction => conn.query_own("ROLLBACK").await.is_ok(),
                Ok(_) | Err(crate::backend::BackendError::Server { .. }) => true,
                Err(_) => false,
            }
        };
        let usable = tokio::select! {
            biased;
            usable = discard => usable,
            () = shared.outages.watch(idx, &handle.signal) => false,
        };
        if !usable {
            self.drop_backend(idx);
        }
        if self.writes.gtid.as_deref() == Some(target) {
            self.forget_if_unreachable(target).await;
        }
        Ok(None)
    }

    /// Handles `SET @rwsplit_consistency = '...'` (never sent to a
    /// backend). Returns false when the statement is not that.
    pub(super) async fn intercept_consistency_set(
        &mut self,
        sql: &str,
    ) -> Result<bool, SessionError> {
        self.answer_consistency_set(parse_session_mode(sql)).await
    }

    /// Answers an intercepted consistency SET (true), or leaves the
    /// statement to run (false: it is not one).
    pub(super) async fn answer_consistency_set(
        &mut self,
        parsed: Option<Result<ConsistencyMode, String>>,
    ) -> Result<bool, SessionError> {
        match parsed {
            None => Ok(false),
            Some(Ok(mode)) => {
                self.writes.session_mode = Some(mode);
                let ok = self.own_ok();
                self.write_reply(&ok).await?;
                Ok(true)
            }
            Some(Err(value)) => {
                let msg = format!(
                    "Variable 'rwsplit_consistency' can't be set to the value of '{value}'"
                );
                self.reply_err(1231, "42000", &msg).await?;
                Ok(true)
            }
        }
    }
}

/// The first column of a text-protocol row, as a string (None for NULL).
/// Where a read waits for its write's GTID.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitOn {
    Replica(usize),
    NoReplica,
    /// Every eligible replica was, when the monitor last looked, further
    /// behind the primary than the wait may last: it would run out.
    AllTooFarBehind,
}

/// The least lagging of the `eligible` replicas, unless it is surely
/// further behind than `timeout`, as the monitor last measured it: a wait
/// there would run out, costing the read `timeout` before the primary
/// answers it, so the primary answers at once. A replica whose lag is
/// unknown (taking reads under `unknown_lag = "include"`) is waited on
/// only when none with a known lag is eligible.
pub fn replica_to_wait_on(
    backends: &[crate::monitor::BackendState],
    eligible: impl Fn(usize) -> bool,
    timeout: Duration,
) -> WaitOn {
    let least_lagging = (0..backends.len())
        .filter(|&i| eligible(i))
        .min_by_key(|&i| backends[i].lag_ms.unwrap_or(u64::MAX));
    match least_lagging {
        None => WaitOn::NoReplica,
        Some(i)
            if least_lag_ms(&backends[i]).is_some_and(|l| u128::from(l) > timeout.as_millis()) =>
        {
            WaitOn::AllTooFarBehind
        }
        Some(i) => WaitOn::Replica(i),
    }
}

/// How far behind a replica surely is. `Seconds_Behind_Master` counts
/// whole seconds between second-resolution timestamps, so 1 may mean a
/// few milliseconds (a write at .999 applied at .001); a heartbeat written
/// once a second (pt-heartbeat's default) reads up to a second old on a
/// replica that has it. Either may overstate by a second.
fn least_lag_ms(b: &crate::monitor::BackendState) -> Option<u64> {
    use crate::monitor::LagSource;
    let lag = b.lag_ms?;
    Some(match b.lag_source {
        LagSource::SecondsBehindMaster | LagSource::Heartbeat => lag.saturating_sub(1000),
        _ => lag,
    })
}

pub use crate::backend::first_text_value;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::status;

    #[test]
    fn own_query_values_are_read_in_any_result_character_set() {
        let row = |value: &[u8]| {
            let mut row = vec![value.len() as u8];
            row.extend_from_slice(value);
            row
        };
        assert_eq!(first_text_value(&row(b"0-1-7")).as_deref(), Some("0-1-7"));
        assert_eq!(first_text_value(&row(b"\x00-\x001")).as_deref(), Some("-1"), "utf16");
        assert_eq!(first_text_value(&row(b"\x00\x00\x000")).as_deref(), Some("0"), "utf32");
        assert_eq!(first_text_value(&row(b"0\x00")).as_deref(), Some("0"), "utf16le");
        assert_eq!(first_text_value(&[0xFB]), None);
    }

    fn memory(gtid: Option<&str>, pinned: Option<Instant>) -> WriteMemory {
        WriteMemory {
            gtid: gtid.map(str::to_string),
            pinned_since: pinned,
            ..WriteMemory::default()
        }
    }

    #[test]
    fn a_sessions_mode_is_its_users_else_its_listeners_else_the_global_one() {
        let config = Config::parse(
            "[[listeners]]\naddress = \"127.0.0.1:1\"\nconsistency = \"pin\"\n\
             [[listeners]]\naddress = \"127.0.0.1:2\"\n\
             [[users]]\nname = \"app\"\npassword = \"a\"\n\
             [[users]]\nname = \"report\"\npassword = \"r\"\nconsistency = \"eventual\"\n\
             [[backends]]\nname = \"p\"\naddress = \"127.0.0.1:3\"\nrole = \"primary\"\n\
             [consistency]\nmode = \"gtid_global\"\n",
        )
        .unwrap();
        let mode = |user: &str, listener: &str| configured_mode(&config, user.as_bytes(), listener);
        assert_eq!(mode("report", "127.0.0.1:1"), ConsistencyMode::Eventual);
        assert_eq!(mode("app", "127.0.0.1:1"), ConsistencyMode::Pin);
        assert_eq!(mode("app", "127.0.0.1:2"), ConsistencyMode::GtidGlobal);
        assert_eq!(mode("app", "a listener a reload removed"), ConsistencyMode::GtidGlobal);
    }

    #[test]
    fn gtid_mode_reads_need_the_last_write_gtid() {
        let now = Instant::now();
        let m = memory(Some("0-1-24"), None);
        assert_eq!(
            read_need(ConsistencyMode::Gtid, &m, Some(Duration::from_secs(1)), now),
            ReadNeed::Gtid("0-1-24".into())
        );
        assert_eq!(
            read_need(ConsistencyMode::Gtid, &memory(None, None), None, now),
            ReadNeed::Nothing
        );
    }

    #[test]
    fn an_unreported_gtid_makes_the_read_wait_for_the_primarys_position() {
        let now = Instant::now();
        for gtid in [None, Some("0-1-24")] {
            let m = WriteMemory { gtid_unreported: true, ..memory(gtid, None) };
            assert_eq!(read_need(ConsistencyMode::Gtid, &m, None, now), ReadNeed::PrimaryPosition);
            assert_eq!(read_need(ConsistencyMode::Eventual, &m, None, now), ReadNeed::Nothing);
        }
    }

    #[test]
    fn a_reply_from_the_primary_adds_its_gtid_an_unreported_write_or_a_pin() {
        use ConsistencyMode::{Gtid, Pin};
        let now = Instant::now();
        let ok = |gtid: &str, status: u16| Outcome {
            status,
            has_status: true,
            gtid: gtid.into(),
            ..Outcome::default()
        };
        let writes = |mode, write, tracked, outcome: &Outcome| {
            reply_writes(mode, write, tracked, outcome, status::AUTOCOMMIT, now)
        };
        let reported = ok("0-1-24", 2);
        let added = writes(Gtid, true, true, &reported).expect("a write");
        assert_eq!(added, Carried { gtid: Some("0-1-24".into()), ..Carried::default() });
        // COMMIT is no write, but its GTID is.
        assert!(writes(Gtid, false, true, &reported).is_some());
        // A read adds nothing; nor does a write inside a transaction.
        assert_eq!(writes(Gtid, false, true, &ok("", 2)), None);
        assert_eq!(writes(Gtid, true, true, &ok("", 3)), Some(Carried::default()));
        // Untracked, the write is followed by pinning; in pin mode always.
        let untracked = writes(Gtid, true, false, &ok("", 2)).expect("a write");
        assert_eq!(untracked.pinned_since, Some(now));
        let pinned = writes(Pin, true, true, &reported).expect("a write");
        assert_eq!(pinned.pinned_since, Some(now));
        // A write whose reply ended in an EOF: its GTID went unreported.
        let eof = Outcome { state_unreported: true, ..ok("", 2) };
        assert!(writes(Gtid, true, true, &eof).expect("a write").gtid_unreported);
    }

    #[test]
    fn a_failed_write_outside_a_transaction_may_have_logged_part_of_itself() {
        let now = Instant::now();
        let err = Outcome { error: Some(1062), ..Outcome::default() };
        let failed = |status_before| {
            reply_writes(ConsistencyMode::Gtid, true, true, &err, status_before, now)
                .expect("a write")
        };
        assert!(failed(status::AUTOCOMMIT).gtid_unreported);
        // Inside a transaction its COMMIT reports what it kept.
        assert!(!failed(status::AUTOCOMMIT | status::IN_TRANS).gtid_unreported);
        // A failed read is no write.
        assert_eq!(
            reply_writes(ConsistencyMode::Gtid, false, true, &err, status::AUTOCOMMIT, now),
            None
        );
        // A multi-statement whose first write was reported and whose
        // second failed: the failed one may have logged after that GTID.
        let second_failed = Outcome { error: Some(1062), ..ok_gtid("0-1-7") };
        let added = reply_writes(
            ConsistencyMode::Gtid,
            true,
            true,
            &second_failed,
            status::AUTOCOMMIT,
            now,
        )
        .expect("a write");
        assert_eq!(added.gtid.as_deref(), Some("0-1-7"));
        assert!(added.gtid_unreported);
    }

    fn ok_gtid(gtid: &str) -> Outcome {
        Outcome {
            status: status::AUTOCOMMIT,
            has_status: true,
            gtid: gtid.into(),
            ..Outcome::default()
        }
    }

    #[test]
    fn pin_mode_pins_for_pin_for_only() {
        let since = Instant::now();
        let m = memory(None, Some(since));
        let d = Some(Duration::from_millis(100));
        assert_eq!(read_need(ConsistencyMode::Pin, &m, d, since), ReadNeed::Primary);
        assert_eq!(
            read_need(ConsistencyMode::Pin, &m, d, since + Duration::from_millis(150)),
            ReadNeed::Nothing
        );
        assert_eq!(
            read_need(ConsistencyMode::Pin, &m, None, since + Duration::from_secs(3600)),
            ReadNeed::Primary
        );
    }

    #[test]
    fn eventual_never_constrains_and_global_always_asks_the_primary() {
        let m = memory(Some("0-1-5"), Some(Instant::now()));
        assert_eq!(
            read_need(ConsistencyMode::Eventual, &m, None, Instant::now()),
            ReadNeed::Nothing
        );
        assert_eq!(
            read_need(ConsistencyMode::GtidGlobal, &m, None, Instant::now()),
            ReadNeed::PrimaryPosition
        );
    }

    #[test]
    fn wait_statements_never_wait_forever() {
        assert_eq!(
            wait_statement(true, "0-1-5", Duration::ZERO),
            "SELECT MASTER_GTID_WAIT('0-1-5', 0.001)"
        );
        assert_eq!(
            wait_statement(false, "u:1-5", Duration::from_millis(250)),
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('u:1-5', 0.250)"
        );
    }

    #[test]
    fn only_gtid_characters_are_accepted() {
        assert_eq!(safe_gtid("0-1-24,1-2-3"), Some("0-1-24,1-2-3"));
        assert_eq!(
            safe_gtid("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"),
            Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5")
        );
        assert_eq!(safe_gtid("0-1-1'); DROP TABLE t; --"), None);
        assert_eq!(safe_gtid(""), None);
    }

    #[test]
    fn session_mode_statement_is_recognised() {
        assert_eq!(
            parse_session_mode("SET @rwsplit_consistency = 'pin'"),
            Some(Ok(ConsistencyMode::Pin))
        );
        assert_eq!(
            parse_session_mode("set @RWSPLIT_CONSISTENCY:='gtid_global';"),
            Some(Ok(ConsistencyMode::GtidGlobal))
        );
        assert_eq!(
            parse_session_mode("SET @rwsplit_consistency = 'nope'"),
            Some(Err("nope".into()))
        );
        assert_eq!(parse_session_mode("SET @other = 'pin'"), None);
        assert_eq!(parse_session_mode("SE"), None);
        // Comments around the words, as ORMs add them.
        for sql in [
            "/* controller:orders */ SET @rwsplit_consistency = 'pin' /*traceparent='00-ab'*/",
            "SET /* a */ @rwsplit_consistency /* b */ := /* c */ \"pin\" -- d",
            "# note\nSET @rwsplit_consistency='pin';  ; /* e */",
            "SET @rwsplit_consistency = 'pin' --\tf",
        ] {
            assert_eq!(parse_session_mode(sql), Some(Ok(ConsistencyMode::Pin)), "{sql}");
        }
        // Another statement after it: the value is not read as a mode.
        assert_eq!(
            parse_session_mode("SET @rwsplit_consistency = 'pin'; SELECT 1"),
            Some(Err("'pin'; select 1".into()))
        );
        assert_eq!(parse_session_mode("SET @rwsplit_consistency = ?"), Some(Err("?".into())));
        assert_eq!(parse_session_mode("SET @rwsplit_consistency = 'pin"), Some(Err("'pin".into())));
    }

    #[test]
    fn a_prepared_session_mode_is_written_in_or_bound() {
        // COM_STMT_EXECUTE: id 1, no flags, 1 iteration, null bitmap,
        // types sent (VAR_STRING), "GTID".
        let execute = [0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0xFD, 0, 4, b'G', b'T', b'I', b'D'];
        let bound = "SET @rwsplit_consistency = ?";
        assert_eq!(
            parse_prepared_session_mode(bound, &execute, None),
            Some(Ok(ConsistencyMode::Gtid))
        );
        let written = "SET @rwsplit_consistency = 'eventual'";
        assert_eq!(
            parse_prepared_session_mode(written, &execute[..10], None),
            Some(Ok(ConsistencyMode::Eventual))
        );
        let mut sometimes = execute[..14].to_vec();
        sometimes.extend_from_slice(b"\x09sometimes");
        assert_eq!(
            parse_prepared_session_mode(bound, &sometimes, None),
            Some(Err("sometimes".into()))
        );
        assert_eq!(parse_prepared_session_mode("SET @x = ?", &execute, None), None);
    }

    #[test]
    fn hint_overrides_the_session_mode() {
        let info = crate::classify::classify("SELECT 1 /* rwsplit:consistency=eventual */");
        let m = WriteMemory { session_mode: Some(ConsistencyMode::Pin), ..WriteMemory::default() };
        assert_eq!(mode_for(&info, &m), ConsistencyMode::Eventual);
        assert_eq!(mode_for(&crate::classify::classify("SELECT 1"), &m), ConsistencyMode::Pin);
    }

    use crate::monitor::{BackendSpec, BackendState, LagSource, Role, Topology};

    fn topology(servers: &[(Role, Option<&str>)]) -> Topology {
        let backends = servers
            .iter()
            .map(|(role, position)| BackendState {
                gtid_position: position.map(str::to_string),
                ..BackendState::unknown(&BackendSpec::new("b", "127.0.0.1:1", *role))
            })
            .collect();
        Topology { backends, ..Topology::default() }
    }

    #[test]
    fn a_write_is_applied_everywhere_when_every_replica_holds_it() {
        let both = topology(&[
            (Role::Primary, Some("0-1-12")),
            (Role::Replica, Some("0-1-12")),
            (Role::Replica, Some("0-1-15")),
        ]);
        assert!(applied_everywhere(&both, "0-1-12"));
        assert!(!applied_everywhere(&both, "0-1-13"), "one replica is behind");
    }

    #[test]
    fn an_unknown_position_or_no_replica_is_not_everywhere() {
        let unknown = topology(&[(Role::Primary, None), (Role::Replica, None)]);
        assert!(!applied_everywhere(&unknown, "0-1-1"));
        let none = topology(&[(Role::Primary, Some("0-1-9"))]);
        assert!(!applied_everywhere(&none, "0-1-1"));
    }

    fn lagging(lags: &[Option<u64>]) -> Vec<BackendState> {
        lags.iter()
            .map(|lag| BackendState {
                lag_ms: *lag,
                ..BackendState::unknown(&BackendSpec::new("r", "127.0.0.1:1", Role::Replica))
            })
            .collect()
    }

    #[test]
    fn a_read_waits_on_the_least_lagging_replica_unless_the_wait_would_run_out() {
        let timeout = Duration::from_millis(500);
        let all = |_: usize| true;
        let backends = lagging(&[Some(900), Some(120), None]);
        assert_eq!(replica_to_wait_on(&backends, all, timeout), WaitOn::Replica(1));
        assert_eq!(
            replica_to_wait_on(&backends, |i| i != 1, timeout),
            WaitOn::AllTooFarBehind,
            "the least lagging of the others is 900 ms behind: the primary answers at once"
        );
        assert_eq!(
            replica_to_wait_on(&backends, |i| i == 2, timeout),
            WaitOn::Replica(2),
            "an unknown lag may be small"
        );
        assert_eq!(replica_to_wait_on(&lagging(&[Some(500)]), all, timeout), WaitOn::Replica(0));
        assert_eq!(replica_to_wait_on(&backends, |_| false, timeout), WaitOn::NoReplica);
    }

    #[test]
    fn a_lag_in_whole_seconds_counts_as_a_second_less() {
        let timeout = Duration::from_millis(300);
        let behind = |ms, source| {
            let mut b = lagging(&[Some(ms)]);
            b[0].lag_source = source;
            replica_to_wait_on(&b, |_| true, timeout)
        };
        // Seconds_Behind_Master 1: maybe milliseconds behind; wait there.
        assert_eq!(behind(1000, LagSource::SecondsBehindMaster), WaitOn::Replica(0));
        assert_eq!(behind(2000, LagSource::SecondsBehindMaster), WaitOn::AllTooFarBehind);
        assert_eq!(behind(1200, LagSource::Heartbeat), WaitOn::Replica(0));
        assert_eq!(behind(1400, LagSource::Heartbeat), WaitOn::AllTooFarBehind);
        assert_eq!(behind(1000, LagSource::Unknown), WaitOn::AllTooFarBehind);
    }
}
