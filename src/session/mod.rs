//! One client session: login, then one command at a time, each sent to
//! the backend the router picks and its response relayed back raw.
//!
//! Inside: `login` (connection phase), `prepared` (statement id mapping),
//! `kill` (KILL and COM_PROCESS_KILL across sessions), `commands` (the
//! per-command handlers). This file owns the session's state and its loop.

mod answer;
mod commands;
pub mod consistency;
mod kill;
pub mod login;
pub mod pool;
pub mod prepared;
pub mod routing;
mod statements;

use crate::backend::{BackendConn, BackendError, Login};
use crate::config::Config;
use crate::error::{self, ClientReply};
use crate::net::{ClientAddr, Socket};
use crate::protocol::auth;
use crate::protocol::messages::build_err;
use crate::protocol::packet::{FrameError, PacketReader, put_packet};
use crate::protocol::proxy_header;
use crate::protocol::session_state::ClientView;
use crate::protocol::status;
use crate::relay::{self, Expect, Machine, Outcome, RelayError};
use crate::server::{ListenerCtx, SessionHandle, Shared};
use crate::tls::ClientStream;
use mysql_common::constants::CapabilityFlags;
use prepared::StmtTable;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Accepts one client connection: login, then serve it until it quits.
pub async fn serve(
    mut stream: Socket,
    mut peer: ClientAddr,
    listener: ListenerCtx,
    shared: Arc<Shared>,
) {
    use std::sync::atomic::Ordering;
    let open = shared.clients.fetch_add(1, Ordering::Relaxed) + 1;
    let _count = ClientCount(shared.clone());
    let config = shared.config.load_full();
    let limit = config.limits.max_client_connections;
    if open > limit {
        tracing::warn!(%peer, limit, "too many client connections");
        let err = build_err(1040, "08004", "Too many connections");
        let _ = crate::protocol::packet::write_packet(&mut stream, 0, &err).await;
        return;
    }
    if listener.proxy_protocol {
        let header =
            tokio::time::timeout(config.timeouts.client_handshake, proxy_header::read(&mut stream));
        match header.await {
            Ok(Ok(proxy_header::Header::Proxied(client))) => peer = ClientAddr::Tcp(client),
            Ok(Ok(proxy_header::Header::Local)) => {}
            outcome => {
                let reason = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no PROXY protocol header in time".to_string(),
                };
                tracing::warn!(%peer, %reason, "connection refused");
                let err = build_err(1105, "HY000", &format!("rwsplit: {reason}"));
                let _ = crate::protocol::packet::write_packet(&mut stream, 0, &err).await;
                return;
            }
        }
    }
    let id = shared.next_connection_id();
    let primary = shared.greeting().await;
    let scramble = auth::new_scramble();
    let mut greeting = login::greeting_for_client(primary.as_ref(), &config, id, &scramble);
    if listener.tls.is_some() {
        greeting.capabilities |= CapabilityFlags::CLIENT_SSL;
    }
    let mut stream = ClientStream::Plain(stream);
    let mut reader = PacketReader::new();
    let login = tokio::time::timeout(
        config.timeouts.client_handshake,
        login::login(&mut stream, &mut reader, &greeting, &config, peer, &listener, &shared),
    )
    .await;
    let logged_in = match login {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            if matches!(e, login::LoginError::Denied { .. }) {
                shared.telemetry.login_failures.increment(1);
            }
            tracing::debug!(%peer, error = %e, "login ended");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "client did not finish its login in time");
            return;
        }
    };
    let (reply_seq, compress) = (logged_in.reply_seq, logged_in.compress);
    let client_writes = shared.recent_writes.client(&logged_in.login.user, peer.ip());
    let default_mode = consistency::configured_mode(&config, &logged_in.login.user, &listener.name);
    let handle = Arc::new(SessionHandle::default());
    *handle.user.lock().expect("handle lock") = logged_in.login.user.clone();
    let _ = handle.client.set((peer.to_string(), std::time::Instant::now()));
    handle.idle_since_ms.store(crate::server::since_start_ms(), Ordering::Relaxed);
    shared.registry.insert(id, handle.clone());
    shared.telemetry.client_connections.increment(1.0);
    let user = logged_in.user.clone();
    if config.log.sessions {
        tracing::info!(%peer, id, %user, tls = stream.is_tls(), "session started");
    } else {
        tracing::debug!(%peer, id, %user, tls = stream.is_tls(), "session started");
    }
    let multibyte = crate::classify::Multibyte::of_collation(logged_in.login.collation.into());
    let mut session = Session {
        id,
        peer,
        shared: shared.clone(),
        client: stream,
        creader: reader,
        cmd: Vec::with_capacity(256),
        sql: String::new(),
        exec_original: Vec::new(),
        cmd_memory: crate::server::CommandReservation::new(shared.command_memory.clone()),
        exec_long_data: false,
        caps: logged_in.login.capabilities,
        user_slot: logged_in.slot,
        stats: SessionStats::new(),
        between_commands: true,
        last_threads: Vec::new(),
        pool_keys: Vec::new(),
        idle_since: std::time::Instant::now(),
        reads_processlist: false,
        view: View {
            primary: shared.primary_index(&config),
            max_query_time: max_query_time(&config, &logged_in.login.user),
            config: config.clone(),
        },
        login: logged_in.login,
        listener: listener.name.clone(),
        scramble: logged_in.scramble,
        backends: Vec::new(),
        slots: Vec::new(),
        status: greeting.status,
        initial_status: greeting.status,
        multibyte,
        stmts: StmtTable::default(),
        multi_statements_off: false,
        failed_change_users: 0,
        routing: routing::RoutingState::default(),
        client_wants_gtids: false,
        client_wants_state_change: false,
        in_flight: None,
        writes: consistency::WriteMemory {
            default_mode,
            client: client_writes,
            ..consistency::WriteMemory::default()
        },
        handle,
    };
    if session.welcome(reply_seq, compress).await {
        session.run().await;
    }
    session.close_backends().await;
    shared.registry.remove(id);
    shared.telemetry.client_connections.decrement(1.0);
    let st = &session.stats;
    let user = String::from_utf8_lossy(&session.login.user);
    let seconds = st.started.elapsed().as_secs_f64();
    macro_rules! session_ended {
        ($level:ident) => {
            tracing::$level!(
                %peer,
                id,
                %user,
                seconds,
                statements = st.statements,
                on_primary = st.on_primary,
                on_replicas = st.on_replicas,
                errors = st.errors,
                slow = st.slow,
                "session ended"
            )
        };
    }
    if shared.config.load().log.sessions {
        session_ended!(info);
    } else {
        session_ended!(debug);
    }
}

/// Kills a statement that ran out of time, from a connection of its own
/// (as the session's user, who may kill its own threads).
async fn kill_query(
    address: String,
    login: Login,
    thread: u32,
    timeout: std::time::Duration,
    tls: Option<crate::backend_tls::BackendTls>,
) {
    let killed = async {
        let mut conn = BackendConn::connect_with(&address, &login, timeout, tls.as_ref()).await?;
        conn.run_own(format!("\x03KILL QUERY {thread}").as_bytes()).await?;
        conn.write_payload(0, &[crate::protocol::command::QUIT]).await?;
        Ok::<_, BackendError>(())
    };
    if let Err(e) = tokio::time::timeout(timeout, killed)
        .await
        .unwrap_or_else(|_| Err(BackendError::ConnectTimeout(address.clone())))
    {
        tracing::warn!(backend = %address, thread, error = %e, "KILL QUERY failed");
    }
}

/// Keeps `Shared::clients` right however a session ends.
struct ClientCount(Arc<Shared>);

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the loop does after a command.
pub(crate) enum Next {
    Continue,
    Quit,
}

/// Why a session must end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("client connection failed: {0}")]
    Client(#[from] std::io::Error),
    #[error("{0}")]
    Fatal(String),
    /// Backend `0` failed before any reply reached the client: the command
    /// may be retried elsewhere, or answered with an error.
    #[error("backend {0} failed before replying")]
    BackendBeforeReply(usize),
}

pub(crate) struct Session {
    pub id: u32,
    pub peer: ClientAddr,
    pub shared: Arc<Shared>,
    pub client: ClientStream,
    pub creader: PacketReader,
    /// The command being handled (reused between commands, unless large).
    pub cmd: Vec<u8>,
    /// What a large command in `cmd` holds of `limits.max_command_memory`.
    pub cmd_memory: crate::server::CommandReservation,
    /// The text of the COM_QUERY being handled (reused between commands).
    pub sql: String,
    /// A COM_STMT_EXECUTE as the client sent it, while `cmd` is rewritten
    /// for a backend (reused between commands).
    pub exec_original: Vec<u8>,
    /// The execute in `exec_original` took parameters sent as long data,
    /// which it does not carry.
    pub exec_long_data: bool,
    /// Capabilities negotiated with the client.
    pub caps: CapabilityFlags,
    /// How backends are logged in for this session (tracks the database).
    pub login: Login,
    /// The listener the session came in by, as rules name it.
    pub listener: Arc<str>,
    /// The scramble of the greeting (COM_CHANGE_USER answers to it).
    pub scramble: [u8; auth::SCRAMBLE_LEN],
    /// Open backend connections by backend index.
    pub backends: Vec<Option<Box<BackendConn>>>,
    /// Their places under each backend's max_connections.
    pub slots: Vec<Option<crate::server::BackendSlot>>,
    /// Status flags of the last response the client saw.
    pub status: u16,
    /// Those a session starts with (and starts again with after COM_RESET_CONNECTION
    /// or COM_CHANGE_USER): autocommit, and NO_BACKSLASH_ESCAPES when the
    /// primary's greeting has it (the server's default sql_mode).
    pub initial_status: u16,
    /// The client's character set, when its multibyte characters may hold
    /// ASCII bytes (gbk, sjis...): statements are read with it. From the
    /// login's collation, then from what the servers report of
    /// `character_set_client` (session tracking).
    pub multibyte: Option<crate::classify::Multibyte>,
    pub stmts: StmtTable,
    /// COM_SET_OPTION turned multi-statements off.
    pub multi_statements_off: bool,
    /// COM_CHANGE_USERs refused so far; from the third on, MariaDB answers
    /// every further one with ERROR 1047 (no password guessing on one
    /// connection), and so does the proxy.
    pub failed_change_users: u8,
    pub routing: routing::RoutingState,
    /// The client enabled GTID tracking itself, so it sees the GTIDs the
    /// proxy tracks; otherwise they are removed from OK packets.
    pub client_wants_gtids: bool,
    /// The client turned `session_track_state_change` on itself: it sees
    /// the state change entries the proxy's own tracking adds.
    pub client_wants_state_change: bool,
    /// The current read counted as in flight on its replica.
    pub in_flight: Option<crate::weighting::InFlight>,
    /// Read-your-writes: the mode and what the session wrote.
    pub writes: consistency::WriteMemory,
    pub handle: Arc<SessionHandle>,
    /// This session's place in its user's connection count.
    pub user_slot: crate::server::UserSlot,
    /// Counters for the session's end-of-session log line.
    pub stats: SessionStats,
    /// The config and primary this command works with.
    pub view: View,
    /// No command is running: every backend connection is idle (so it
    /// may be kept for a later session when this one ends).
    pub between_commands: bool,
    /// The server thread of the connection last given back to the pool,
    /// per backend: taken again first when still idle.
    pub last_threads: Vec<Option<u32>>,
    /// What this session's shared connections must match, per backend.
    pub pool_keys: Vec<Option<pool::Key>>,
    /// When the previous command ended.
    pub idle_since: std::time::Instant,
    /// The command running is a processlist read (SHOW PROCESSLIST,
    /// COM_PROCESS_INFO): its relay shows proxy session ids for the
    /// threads of the proxy's sessions, the ids their clients know and
    /// KILL takes.
    pub reads_processlist: bool,
}

/// A session idle at least this long has its connections looked at for a
/// close by their server before the next command uses them (a read of the
/// socket: not done between a busy client's back-to-back commands).
const IDLE_CHECK_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// What a command reads of the shared, reloadable state.
pub(crate) struct View {
    pub config: Arc<Config>,
    pub primary: usize,
    /// The session user's statement time limit under `config` (zero: none).
    pub max_query_time: std::time::Duration,
}

/// The error for the proxy's own work on a backend that the monitor found
/// down meanwhile.
fn backend_gone() -> crate::backend::BackendError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the monitor found the backend down while the proxy waited for it",
    )
    .into()
}

/// `user`'s statement time limit: its own, else the global one.
fn max_query_time(config: &Config, user: &[u8]) -> std::time::Duration {
    config.user(user).and_then(|u| u.max_query_time).unwrap_or(config.timeouts.max_query_time)
}

/// What a session did, logged when it ends.
#[derive(Debug)]
pub(crate) struct SessionStats {
    pub started: std::time::Instant,
    pub statements: u64,
    pub on_primary: u64,
    pub on_replicas: u64,
    pub errors: u64,
    pub slow: u64,
}

impl SessionStats {
    fn new() -> SessionStats {
        SessionStats {
            started: std::time::Instant::now(),
            statements: 0,
            on_primary: 0,
            on_replicas: 0,
            errors: 0,
            slow: 0,
        }
    }

    pub fn count(&mut self, on_primary: bool, failed: bool) {
        self.statements += 1;
        if on_primary {
            self.on_primary += 1;
        } else {
            self.on_replicas += 1;
        }
        if failed {
            self.errors += 1;
        }
    }
}

impl Session {
    async fn run(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let handle = self.handle.clone();
        loop {
            self.creader.shrink_if_idle();
            let limits = &self.view.config.limits;
            let (limit, cap) = (limits.max_packet, limits.max_command_memory);
            let memory = &mut self.cmd_memory;
            let admit = |len| memory.admit(len, cap);
            // Killed by another session or the proxy stopping: end between
            // commands.
            // The client's own wait_timeout, as the server keeps it.
            let wait_timeout = self.routing.wait_timeout;
            let waited_out = async move {
                match wait_timeout {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            let read = tokio::select! {
                biased;
                _ = handle.signal.stopped() => return,
                r = self.creader.read_packet_admitted(&mut self.client, &mut self.cmd, limit, admit) => r,
                () = waited_out => {
                    tracing::debug!(id = self.id, ?wait_timeout, "client idle past its session's wait_timeout: disconnected");
                    return;
                }
            };
            match read {
                Ok((0, _)) if !self.cmd.is_empty() => {}
                Ok(_) => {
                    let err = build_err(1156, "08S01", "Got packets out of order");
                    let _ = self.write_reply(&err).await;
                    return;
                }
                Err(FrameError::TooLarge(..)) => {
                    let err = build_err(
                        1153,
                        "08S01",
                        "Got a packet bigger than 'max_allowed_packet' bytes",
                    );
                    let _ = self.write_reply(&err).await;
                    return;
                }
                Err(FrameError::NotAdmitted(len)) => {
                    // The rest of the command is not read: the session ends.
                    metrics::counter!(crate::telemetry::COMMANDS_REFUSED).increment(1);
                    tracing::warn!(
                        id = self.id,
                        bytes = len,
                        held = self.shared.command_memory.used(),
                        "a large command refused: limits.max_command_memory is in use"
                    );
                    let message = format!(
                        "Out of memory: a command of {len} bytes does not fit in rwsplit's \
                         limits.max_command_memory ({cap} bytes), held by other clients' \
                         large commands; try again later"
                    );
                    let _ = self.write_reply(&build_err(1041, "HY000", &message)).await;
                    return;
                }
                Err(_) => return,
            }
            handle.idle_since_ms.store(crate::server::RUNNING, Relaxed);
            self.refresh_view();
            if self.idle_since.elapsed() >= IDLE_CHECK_AFTER {
                self.drop_connections_closed_while_idle();
            }
            let multiplex = self.view.config.pool.multiplex;
            if multiplex {
                self.give_back_unasked();
            }
            self.between_commands = false;
            let done = self.dispatch().await;
            // COMMIT RELEASE, as text or prepared: the server closed that
            // connection after its reply, and the session ends as well.
            if let (Ok(_), Some(idx)) = (&done, self.routing.released) {
                self.drop_backend(idx);
                return;
            }
            // Only a command that ran to its end leaves the backend
            // connections with nothing in flight.
            self.between_commands = done.is_ok();
            self.idle_since = std::time::Instant::now();
            // For /sessions and timeouts.client_idle.
            handle.idle_since_ms.store(crate::server::ms_since_start(self.idle_since), Relaxed);
            if multiplex && self.between_commands {
                self.give_back_unbound();
            }
            match done {
                Ok(Next::Continue) => {}
                Ok(Next::Quit) => return,
                Err(SessionError::BackendBeforeReply(idx)) => {
                    // Nothing of the reply was sent: the client gets a clear
                    // error and its session goes on (state on that backend is gone).
                    // A COMMIT or ROLLBACK that failed so ended its transaction
                    // either way: nothing stays "lost" after the error.
                    if self.cmd.first() == Some(&crate::protocol::command::QUERY) {
                        let sql = String::from_utf8_lossy(&self.cmd[1..]);
                        let kind = crate::classify::classify(&sql).kind;
                        if matches!(
                            kind,
                            crate::classify::StatementKind::Commit
                                | crate::classify::StatementKind::Rollback
                        ) {
                            self.routing.transaction_lost = false;
                        }
                    }
                    let e = BackendError::Frame(crate::protocol::packet::FrameError::Io(
                        std::io::Error::other(
                            "connection lost before the reply; the statement may or may not have run",
                        ),
                    ));
                    if self.reply_backend_error(idx, &e).await.is_err() {
                        return;
                    }
                    self.between_commands = true;
                }
                Err(e) => {
                    tracing::debug!(id = self.id, error = %e, "session closed");
                    return;
                }
            }
            self.forget_large_command();
        }
    }

    /// Gives back the memory of a large command once it has run (its
    /// buffers, and its place under `limits.max_command_memory`); small
    /// ones keep their buffers for the next command.
    fn forget_large_command(&mut self) {
        use crate::server::SMALL_COMMAND;
        if self.cmd.capacity() > SMALL_COMMAND {
            self.cmd = Vec::with_capacity(256);
        }
        if self.exec_original.capacity() > SMALL_COMMAND {
            self.exec_original = Vec::new();
        }
        self.cmd_memory.release();
    }

    /// Writes a one-packet reply to the current command (sequence 1).
    pub async fn write_reply(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        put_packet(&mut out, 1, payload);
        self.client.write_all(&out).await?;
        self.client.flush().await
    }

    /// An OK the proxy answers with itself (COM_PING, KILL, ...): of the
    /// last reply's status only the bits that describe the session
    /// ([`status::OF_SESSION`]); it carries no session-state data, and
    /// no more results or cursor follow it.
    pub fn own_ok(&self) -> Vec<u8> {
        crate::protocol::messages::build_ok(0, 0, self.status & status::OF_SESSION, 0)
    }

    /// What a backslash in a string literal is in this session's text, as
    /// the last reply's status flags say (sql_mode NO_BACKSLASH_ESCAPES).
    pub(super) fn backslashes(&self) -> crate::classify::Backslashes {
        if self.status & status::NO_BACKSLASH_ESCAPES != 0 {
            crate::classify::Backslashes::Literal
        } else {
            crate::classify::Backslashes::Escape
        }
    }

    /// Replies with an error.
    pub async fn reply_err(
        &mut self,
        code: u16,
        state: &str,
        message: &str,
    ) -> Result<Next, SessionError> {
        self.write_reply(&build_err(code, state, message)).await?;
        Ok(Next::Continue)
    }

    /// The config in force now.
    pub fn config(&self) -> Arc<Config> {
        self.view.config.clone()
    }

    /// The primary's backend index (commands other than statements run there).
    pub fn primary(&self) -> usize {
        self.view.primary
    }

    /// While a lost transaction is open: answers `kind` (ROLLBACK with OK,
    /// anything else with an error; COMMIT and BEGIN also end it). Returns
    /// false when no transaction is lost.
    pub(crate) async fn answer_lost_transaction(
        &mut self,
        kind: crate::classify::StatementKind,
    ) -> Result<bool, SessionError> {
        use crate::classify::StatementKind;
        if !self.routing.transaction_lost {
            return Ok(false);
        }
        match kind {
            StatementKind::Rollback => {
                self.routing.transaction_lost = false;
                let ok = self.own_ok();
                self.write_reply(&ok).await?;
            }
            _ => {
                if matches!(kind, StatementKind::Commit | StatementKind::Begin { .. }) {
                    self.routing.transaction_lost = false;
                }
                let msg = "rwsplit: the transaction was rolled back because the connection to its \
                           server failed; restart the transaction";
                self.reply_err(1213, "40001", msg).await?;
            }
        }
        Ok(true)
    }

    /// Takes the config and primary in force now, for the next command
    /// (one consistent view per command, read once).
    fn refresh_view(&mut self) {
        // A guard, not a clone: the config's reference count is shared by
        // every session on both cores, and only changes on a reload.
        let current = self.shared.config.load();
        if !Arc::ptr_eq(&current, &self.view.config) {
            let config = arc_swap::Guard::into_inner(current);
            self.view.max_query_time = max_query_time(&config, &self.login.user);
            self.writes.default_mode =
                consistency::configured_mode(&config, &self.login.user, &self.listener);
            self.take_reloaded_password(&config);
            self.view.config = config;
        }
        self.view.primary = self.shared.primary_index(&self.view.config);
    }

    /// A password a reload changed (rotated on the servers as well): the
    /// session's new backend connections log in with it, as its old ones
    /// stay logged in. Only for a password the config holds in clear (a
    /// hash-only user's backend logins come from the client's own proof).
    fn take_reloaded_password(&mut self, config: &Config) {
        if !matches!(self.login.secret, auth::BackendSecret::Plain(_)) {
            return;
        }
        let secret = config.user(&self.login.user).map(|u| u.secret(&config.base_dir));
        if let Some(Ok(auth::Secret::Plain(password))) = secret {
            self.login.secret = auth::BackendSecret::Plain(password);
        }
    }

    /// The session's user changed (COM_CHANGE_USER): its limits and its
    /// consistency mode with it.
    pub(crate) fn user_changed(&mut self) {
        self.view.max_query_time = max_query_time(&self.view.config, &self.login.user);
        self.writes.default_mode =
            consistency::configured_mode(&self.view.config, &self.login.user, &self.listener);
    }

    /// The open connection to backend `idx`, opened (and logged in with the
    /// session's current database) when the session first needs it.
    pub async fn backend(&mut self, idx: usize) -> Result<&mut BackendConn, BackendError> {
        self.backend_within(idx, None).await
    }

    /// As `backend`; `wait` (when given) bounds the wait for a place under
    /// the backend's connection cap instead of the configured one. With
    /// zero, a connection is had now or not at all.
    pub async fn backend_within(
        &mut self,
        idx: usize,
        wait: Option<std::time::Duration>,
    ) -> Result<&mut BackendConn, BackendError> {
        if self.backends.len() <= idx {
            self.backends.resize_with(idx + 1, || None);
        }
        // A connection opened before the monitor last found the backend
        // down talked to a server that is gone: it is replaced, and its
        // failure is not taken for news of the backend's health.
        let outages = self.shared.outages.count(idx);
        if self.backends[idx].as_ref().is_some_and(|c| c.outages_seen != outages) {
            self.drop_backend(idx);
        }
        if self.backends[idx].is_none() {
            let config = self.config();
            let addr = config.backends.get(idx).map(|b| b.address.as_str()).ok_or_else(|| {
                BackendError::Protocol(format!("backend {idx} is not configured"))
            })?;
            let tls = self.shared.backend_tls.load_full();
            let tls = tls.as_ref().as_ref().map_err(|e| BackendError::Tls(e.clone()))?;
            if config.pool.keeps_connections() {
                // Shared connections: waiting for one is bounded by
                // pool_timeout when multiplexing; otherwise as below.
                let wait = wait.unwrap_or(if config.pool.multiplex {
                    config.pool.pool_timeout
                } else if idx == self.primary() {
                    config.timeouts.connect
                } else {
                    std::time::Duration::ZERO
                });
                let conn = self.checkout(&config, idx, addr, tls.as_ref(), wait).await?;
                self.backends[idx] = Some(conn);
                return Ok(self.backends[idx].as_mut().expect("just taken"));
            }
            // At the backend's max_connections, the primary's work waits
            // for a connection to close; a replica read goes elsewhere.
            let wait = wait.unwrap_or(if idx == self.primary() {
                config.timeouts.connect
            } else {
                std::time::Duration::ZERO
            });
            let slot = self.shared.backend_slot(idx, wait).await?;
            let conn = self.connect(idx, addr, config.timeouts.connect, tls.as_ref()).await?;
            self.handle.threads.lock().expect("handle lock").push((idx, conn.thread_id));
            self.backends[idx] = Some(conn);
            if self.slots.len() <= idx {
                self.slots.resize_with(idx + 1, || None);
            }
            self.slots[idx] = Some(slot);
        }
        let changes = self.shared.database_changes.load(std::sync::atomic::Ordering::Relaxed);
        let conn = self.backends[idx].as_mut().expect("just opened");
        conn.note_database_changes(changes);
        Ok(conn)
    }

    /// Opens a connection of this session's login to backend `idx` at
    /// `addr`: it has seen the backend's outages counted so far, keeps the
    /// primary's greeting current (see `Shared::note_primary_greeting`),
    /// has multi-statements off when the client turned them off, and the
    /// session's autocommit (a server whose default is the other one: its
    /// `@@global.autocommit`, or a session that changed its own).
    pub(super) async fn connect(
        &self,
        idx: usize,
        addr: &str,
        timeout: std::time::Duration,
        tls: Option<&crate::backend_tls::BackendTls>,
    ) -> Result<Box<BackendConn>, BackendError> {
        let outages = self.shared.outages.count(idx);
        let database_changes =
            self.shared.database_changes.load(std::sync::atomic::Ordering::Relaxed);
        // Boxed: sessions and the pool hand it on without copying it.
        let mut conn = Box::new(BackendConn::connect_with(addr, &self.login, timeout, tls).await?);
        conn.outages_seen = outages;
        conn.databases_seen = database_changes;
        conn.globals_seen = self.shared.global_changes.load(std::sync::atomic::Ordering::Relaxed);
        if idx == self.primary() {
            self.shared.note_primary_greeting(&conn.greeting);
        }
        if self.multi_statements_off {
            conn.run_own(&[crate::protocol::command::SET_OPTION, 1, 0]).await?;
        }
        self.sync_autocommit(&mut conn).await?;
        Ok(conn)
    }

    /// Drops the connection to backend `idx` (after it failed).
    pub fn drop_backend(&mut self, idx: usize) {
        let in_transaction = self.status & status::IN_TRANS != 0;
        if in_transaction
            && self.backends.get(idx).is_some_and(Option::is_some)
            && idx == self.routing.transaction_backend.unwrap_or(self.view.primary)
        {
            tracing::warn!(
                id = self.id,
                backend = idx,
                "the connection holding a transaction failed; the transaction is lost"
            );
            self.routing.transaction_lost = true;
            self.status &= !(status::IN_TRANS | status::IN_TRANS_READONLY);
        }
        if let Some(slot) = self.backends.get_mut(idx)
            && let Some(conn) = slot.take()
        {
            let tid = conn.thread_id;
            self.handle.threads.lock().expect("handle lock").retain(|t| *t != (idx, tid));
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = None;
        }
        self.stmts.forget_backend(idx);
        if let Some(pinned) = self.routing.pinned.get_mut(idx) {
            *pinned = false;
        }
        if self.routing.next_statement == Some(idx) {
            self.routing.next_statement = None;
        }
    }

    /// Closes every backend connection politely (COM_QUIT).
    pub async fn close_backends(&mut self) {
        let config = self.config();
        for idx in 0..self.backends.len() {
            if config.pool.keeps_connections()
                && self.between_commands
                && !self.multi_statements_off
                && self.keep_connection(idx).await
            {
                continue;
            }
            if let Some(conn) = self.backends[idx].as_mut() {
                // Its place is freed once the server has closed it.
                conn.quit(pool::QUIT_WAIT).await;
            }
            self.drop_backend(idx);
        }
    }

    /// Sends the current command (`self.cmd`) to backend `idx` and relays
    /// its response to the client. A backend failure is reported to the
    /// client as an error; the connection is dropped.
    pub async fn forward(
        &mut self,
        idx: usize,
        expect: Expect,
    ) -> Result<Option<Outcome>, SessionError> {
        self.forward_holding(idx, expect, false).await
    }

    /// `forward`, withholding a reply that is only a server error when
    /// `hold_error` (see `relay_holding`).
    pub async fn forward_holding(
        &mut self,
        idx: usize,
        expect: Expect,
        hold_error: bool,
    ) -> Result<Option<Outcome>, SessionError> {
        if let Err(e) = self.backend(idx).await {
            self.reply_backend_error(idx, &e).await?;
            return Ok(None);
        }
        let conn = self.backends[idx].as_mut().expect("backend open");
        if let Err(e) = conn.write_payload(0, &self.cmd).await {
            crate::telemetry::warn_throttled!(id = self.id, backend = idx, error = %e, "cannot send to backend");
            self.drop_backend(idx);
            return Err(self.broke_before_reply(idx, &e));
        }
        self.relay_holding(idx, expect, hold_error).await
    }

    /// The error for backend `idx`'s connection broken (`e`) before any of
    /// its reply reached the client: the command may run again elsewhere,
    /// or get an error, unless the session was killed (KILL CONNECTION,
    /// which closed its backend connections): then it ends as on the
    /// server, without a reply, the command not run elsewhere.
    pub(super) fn broke_before_reply(&self, idx: usize, e: &dyn std::fmt::Display) -> SessionError {
        if self.handle.signal.stopping() {
            SessionError::Fatal(format!("killed while backend {idx} ran a statement ({e})"))
        } else {
            SessionError::BackendBeforeReply(idx)
        }
    }

    /// Relays a response already requested from backend `idx`.
    pub async fn relay_from(
        &mut self,
        idx: usize,
        expect: Expect,
    ) -> Result<Option<Outcome>, SessionError> {
        self.relay_holding(idx, expect, false).await
    }

    /// `relay_from`; with `hold_error`, a reply that is only a server error
    /// is not passed on: the outcome says `withheld`, and the error packet
    /// waits in the connection's reader for the caller (`take_held_error`).
    pub async fn relay_holding(
        &mut self,
        idx: usize,
        expect: Expect,
        hold_error: bool,
    ) -> Result<Option<Outcome>, SessionError> {
        let conn = self.backends[idx].as_mut().expect("backend open");
        let view = ClientView {
            session_track: self.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK),
            wants_gtids: self.client_wants_gtids,
            wants_state_change: self.client_wants_state_change,
            omit_empty_info: conn.is_mariadb(),
        };
        let limit = self.view.max_query_time;
        let timeout = (!limit.is_zero())
            .then(|| Arc::new(relay::QueryTimeout { limit, fired: Default::default() }));
        let cursor = self.asks_for_cursor();
        let thread_ids = self.reads_processlist.then(|| self.session_threads(idx));
        let conn = self.backends[idx].as_mut().expect("backend open");
        let mut machine = Machine::new(expect, conn.caps)
            .opening_cursor(cursor)
            .rewriting_thread_ids(thread_ids)
            // Not under the compressed protocol: its replies continue the
            // sequence of the client's last frame, which a frame read
            // ahead would move.
            .watching_client(!self.client.is_compressed())
            .rewriting_for(Some(view))
            .with_timeout(timeout.clone())
            .holding_first_error(hold_error);
        let killer = timeout.as_ref().and_then(|_| {
            let config = &self.view.config;
            let address = config.backends.get(idx)?.address.clone();
            let login = Login { track_gtids: false, ..self.login.clone() };
            let tls = self.shared.backend_tls.load().as_ref().clone().ok().flatten();
            Some((address, login, conn.thread_id, config.timeouts.connect, tls))
        });
        let pass_on = self.early_pass_on(idx);
        let conn = self.backends[idx].as_mut().expect("backend open");
        let result = {
            let gone = std::pin::pin!(self.shared.outages.watch(idx, &self.handle.signal));
            let relay = relay::relay(
                &mut conn.stream,
                &mut conn.reader,
                &mut self.client,
                &mut self.creader,
                &mut machine,
                gone,
                pass_on.map(|p| move |outcome: &Outcome| p.record(outcome)),
            );
            match (&timeout, killer) {
                (Some(timeout), Some((address, login, thread, connect, tls))) => {
                    tokio::pin!(relay);
                    tokio::select! {
                        r = &mut relay => Some(r),
                        _ = tokio::time::sleep(timeout.limit) => {
                            timeout.fired.store(true, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(id = self.id, backend = idx, thread, limit = ?timeout.limit,
                                "statement exceeded max_query_time; killing it");
                            tokio::spawn(kill_query(address, login, thread, connect, tls));
                            // The server answers the killed statement with an
                            // error; a server that cannot even do that is given
                            // up on after the kill's own time bound.
                            tokio::time::timeout(connect + std::time::Duration::from_secs(1), relay)
                                .await
                                .ok()
                        }
                    }
                }
                _ => Some(relay.await),
            }
        };
        let Some(result) = result else {
            // The backend did not answer the kill: drop its connection.
            self.drop_backend(idx);
            self.shared.count_statement(idx, true);
            if machine.started() {
                return Err(SessionError::Fatal("backend stopped answering mid-reply".into()));
            }
            let packet = timeout.expect("only a timeout gives up").error_packet();
            self.write_reply(&packet).await?;
            let outcome = Outcome { error: Some(relay::STATEMENT_TIMEOUT), ..Outcome::default() };
            return Ok(Some(outcome));
        };
        match result {
            Ok(()) => {
                let outcome = machine.outcome;
                self.shared.count_statement(idx, outcome.error.is_some());
                // Only responses that carry status flags change what the
                // session knows (a prepare response or an ERR carries none).
                if outcome.has_status {
                    self.status = outcome.status;
                }
                if let Some(conn) = self.backends.get_mut(idx).and_then(Option::as_mut) {
                    conn.note_status(&outcome);
                }
                Ok(Some(outcome))
            }
            Err(RelayError::Client(e)) => Err(SessionError::Client(e)),
            Err(RelayError::ClientLeft) => {
                // Its connection closes at once, as the client's own would
                // have: the server ends the statement where it would for a
                // client of its own (a wait, after its check) and rolls
                // back an open transaction. The session ends, which does
                // the rest of `drop_backend`'s bookkeeping (whose warning
                // of a lost transaction is not this case's).
                self.backends[idx] = None;
                self.shared.count_statement(idx, true);
                Err(SessionError::Fatal("the client left while its statement ran".into()))
            }
            Err(RelayError::BackendMidResult { source, .. }) if self.handle.signal.stopping() => {
                // Killed (KILL CONNECTION): its client loses the connection
                // in the middle of the result, as from the server.
                self.drop_backend(idx);
                self.shared.count_statement(idx, true);
                Err(SessionError::Fatal(format!("killed during a result ({source})")))
            }
            Err(RelayError::BackendMidResult { next_seq, source }) => {
                tracing::warn!(id = self.id, backend = idx, error = %source, "backend failed during a result");
                self.drop_backend(idx);
                self.shared.count_statement(idx, true);
                let name = self.view.config.backends.get(idx).map_or("?", |b| b.name.as_str());
                let msg = format!(
                    "rwsplit: backend {name} failed while sending this result ({source}); \
                     the statement did not complete"
                );
                let mut out = Vec::new();
                put_packet(&mut out, next_seq, &build_err(1105, "HY000", &msg));
                self.client.write_all(&out).await?;
                self.client.flush().await?;
                Ok(Some(Outcome { error: Some(1105), ..Outcome::default() }))
            }
            Err(RelayError::BackendBeforeReply(e)) => {
                if !self.handle.signal.stopping() {
                    crate::telemetry::warn_throttled!(id = self.id, backend = idx, error = %e, "backend failed before replying");
                }
                self.drop_backend(idx);
                Err(self.broke_before_reply(idx, &e))
            }
            Err(e) => {
                tracing::warn!(id = self.id, backend = idx, error = %e, "backend failed during a command");
                self.drop_backend(idx);
                // The response may be half sent: the client's protocol state
                // is unknown, so the only safe reply is to close.
                Err(SessionError::Fatal(e.to_string()))
            }
        }
    }

    /// (server thread, proxy session id) of every session's connection to
    /// backend `idx`.
    fn session_threads(&self, idx: usize) -> Vec<(u64, u64)> {
        let mut ids = Vec::new();
        for (id, handle) in self.shared.registry.sessions() {
            let threads = handle.threads.lock().expect("handle lock");
            let on_idx = threads.iter().filter(|(backend, _)| *backend == idx);
            ids.extend(on_idx.map(|(_, thread)| (u64::from(*thread), u64::from(id))));
        }
        ids
    }

    /// The error packet a held reply left in backend `idx`'s reader (see
    /// `relay_holding`), taken out of it.
    pub(super) async fn take_held_error(&mut self, idx: usize) -> Result<Vec<u8>, SessionError> {
        let conn = self.backends[idx].as_mut().expect("backend open");
        let mut err = Vec::new();
        // Already buffered: an error packet is far below the limit.
        if let Err(e) = conn.reader.read_packet(&mut conn.stream, &mut err, 1 << 24).await {
            self.drop_backend(idx);
            return Err(SessionError::Fatal(format!("backend failed: {e}")));
        }
        Ok(err)
    }

    /// Tells the client why a backend could not serve its command.
    pub async fn reply_backend_error(
        &mut self,
        idx: usize,
        e: &BackendError,
    ) -> Result<Next, SessionError> {
        let config = self.config();
        let name = config.backends.get(idx).map(|b| b.name.as_str()).unwrap_or("?");
        let addr = config.backends.get(idx).map(|b| b.address.as_str()).unwrap_or("?");
        crate::telemetry::warn_throttled!(id = self.id, backend = name, error = %e, "backend unavailable");
        if !matches!(e, BackendError::Server { .. }) {
            self.drop_backend(idx);
        }
        let ClientReply { code, state, message } = error::backend_reply(e, name, addr);
        self.reply_err(code, &state, &message).await
    }
}
