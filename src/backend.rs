//! Connections from the proxy to MySQL/MariaDB servers: the client side of
//! the handshake (native and caching_sha2 authentication, auth switch),
//! sending commands, and running the proxy's own small commands whose
//! responses never reach a client.

use crate::backend_tls::{BackendStream, BackendTls};
use crate::protocol::auth::BackendSecret;
use crate::protocol::handshake::{Greeting, HandshakeResponse, mariadb_caps};
use crate::protocol::messages;
use crate::protocol::packet::{Cursor, FrameError, PacketReader, put_packet};
use crate::relay::{self, Expect, Machine, Outcome};
use mysql_common::constants::CapabilityFlags;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest packet the proxy accepts from a backend during the handshake
/// and for its own commands.
const CONTROL_PACKET_LIMIT: usize = 1 << 24;

/// Bytes a backend connection reads at a time: most results arrive in
/// one read (and leave in one write to the client).
const BACKEND_READ_CHUNK: usize = 16 * 1024;

/// Capabilities the proxy can pass through to a backend unchanged.
pub const PASSTHROUGH_CAPS: CapabilityFlags = CapabilityFlags::from_bits_truncate(
    CapabilityFlags::CLIENT_LONG_PASSWORD.bits()
        | CapabilityFlags::CLIENT_FOUND_ROWS.bits()
        | CapabilityFlags::CLIENT_LONG_FLAG.bits()
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB.bits()
        | CapabilityFlags::CLIENT_NO_SCHEMA.bits()
        | CapabilityFlags::CLIENT_ODBC.bits()
        | CapabilityFlags::CLIENT_LOCAL_FILES.bits()
        | CapabilityFlags::CLIENT_IGNORE_SPACE.bits()
        | CapabilityFlags::CLIENT_PROTOCOL_41.bits()
        | CapabilityFlags::CLIENT_INTERACTIVE.bits()
        | CapabilityFlags::CLIENT_IGNORE_SIGPIPE.bits()
        | CapabilityFlags::CLIENT_TRANSACTIONS.bits()
        | CapabilityFlags::CLIENT_RESERVED.bits()
        | CapabilityFlags::CLIENT_SECURE_CONNECTION.bits()
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS.bits()
        | CapabilityFlags::CLIENT_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH.bits()
        | CapabilityFlags::CLIENT_CONNECT_ATTRS.bits()
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.bits()
        | CapabilityFlags::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS.bits()
        | CapabilityFlags::CLIENT_SESSION_TRACK.bits()
        | CapabilityFlags::CLIENT_DEPRECATE_EOF.bits(),
);

/// MariaDB extended capabilities the proxy passes through: extended type
/// info only changes column definitions, which are relayed raw; bulk
/// operations add COM_STMT_BULK_EXECUTE, which runs on the primary.
pub const PASSTHROUGH_MARIADB_CAPS: u32 =
    mariadb_caps::EXTENDED_TYPE_INFO | mariadb_caps::STMT_BULK_OPERATIONS;

/// Errors talking to a backend. `Server` carries the server's own error,
/// which is forwarded to the client with its code and SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    #[error("server error {code} ({state}): {message}")]
    Server { code: u16, state: String, message: String },
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("protocol error from server: {0}")]
    Protocol(String),
    #[error("authentication method {0} is not supported for this login")]
    UnsupportedAuth(String),
    #[error("{0}")]
    Tls(String),
    /// The proxy holds `max_connections` to this backend already.
    #[error("backend {0} is at its max_connections ({1})")]
    AtCapacity(String, usize),
    /// Every pooled connection to the backend stayed in use.
    #[error(
        "no connection to backend {backend} came free within pool_timeout ({waited:?}; {cap} connections in use)"
    )]
    PoolTimeout { backend: String, cap: usize, waited: Duration },
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError::Frame(FrameError::Io(e))
    }
}

impl BackendError {
    fn from_err_packet(payload: &[u8]) -> BackendError {
        match messages::parse_err(payload) {
            Some(e) => BackendError::Server {
                code: e.code,
                state: String::from_utf8_lossy(e.state).into_owned(),
                message: String::from_utf8_lossy(e.message).into_owned(),
            },
            None => BackendError::Protocol("malformed error packet".into()),
        }
    }
}

/// How to log in to a backend: the client's identity and the capabilities
/// it negotiated with the proxy.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: Vec<u8>,
    pub secret: BackendSecret,
    pub database: Option<Vec<u8>>,
    pub collation: u8,
    pub capabilities: CapabilityFlags,
    pub mariadb_caps: u32,
    pub attributes: Option<Vec<u8>>,
    pub max_packet: u32,
    /// Negotiate session tracking and track the GTID of each write, for the
    /// proxy's own use (read-your-writes), whatever the client negotiated.
    pub track_gtids: bool,
}

/// One authenticated connection to a backend server.
pub struct BackendConn {
    pub stream: BackendStream,
    pub reader: PacketReader,
    /// Capabilities in force on this connection.
    pub caps: CapabilityFlags,
    /// The server's thread id (for KILL).
    pub thread_id: u32,
    pub greeting: Greeting,
    /// The server is MariaDB (its version says so, as the monitor reads
    /// it), kept rather than looked for in the version at every statement.
    mariadb: bool,
    /// Which of the session's recorded SET statements this connection has
    /// run, and its current database: a connection opened or used later
    /// than the session's SETs catches up before its next statement.
    pub applied_sets: usize,
    /// Identifies those SETs (see `RoutingState::sets_hash`): a shared
    /// connection whose SETs are not a prefix of the next session's is
    /// reset first.
    pub sets_hash: u64,
    pub database: Option<Vec<u8>>,
    /// The server may hold a current database for the connection (it was
    /// opened with one or selected one since), also while `database` is
    /// unknown: a connection cannot leave its database, so one without
    /// is only had new, or from a server that says it dropped it.
    pub database_selected: bool,
    /// `Shared::database_changes` when `database` was selected.
    pub databases_seen: u64,
    /// The options of the connection's database may have changed since it
    /// selected it (see `select_database`).
    database_stale: bool,
    /// GTID tracking is on: an OK without a GTID means nothing was logged.
    pub tracks_gtids: bool,
    /// The proxy made the connection's transactions read-only (see
    /// `set_transactions_read_only`).
    pub transactions_read_only: bool,
    /// The connection's autocommit, from the last status flags it sent
    /// (None after a reset, until it says).
    pub autocommit: Option<bool>,
    /// The connection's last status flags said a transaction is open.
    pub in_transaction: bool,
    /// When the connection was opened (for `[pool] max_lifetime`).
    pub opened: std::time::Instant,
    /// Commands of the proxy's own run on it so far (`run_own`): each
    /// leaves the server's ROW_COUNT() at its own value.
    pub own_commands: u64,
    /// When the session holding it last sent a statement to it (see
    /// `Session::drop_if_closed_while_unused`).
    pub last_used: std::time::Instant,
    /// The monitor's count of outages of this backend when the connection
    /// was opened (`Outages::count`): once it moves
    /// on, the server this connection talked to has been found down.
    pub outages_seen: u64,
    /// `Shared::global_changes` when the connection was opened.
    pub globals_seen: u64,
    /// Statements prepared on this connection by text, kept for every
    /// session that uses it (multiplexing); statements not cached are the
    /// session's own.
    pub prepared: Option<PreparedCache>,
    scratch: Vec<u8>,
    /// The buffer a prepared-statement cache lookup builds its key in.
    key_scratch: Vec<u8>,
}

/// Statements prepared on one shared connection: text (with the database
/// and SETs it was prepared under) to the server's id, at most
/// [`PreparedCache::MAX`] and [`PreparedCache::MAX_BYTES`] of text, the
/// least recently used closed first.
#[derive(Debug, Default)]
pub struct PreparedCache {
    by_text: HashMap<Vec<u8>, (u32, u64)>,
    clock: u64,
    /// The texts' bytes.
    bytes: usize,
}

impl PreparedCache {
    pub const MAX: usize = 128;
    /// Texts held at most (beyond one statement): without it, a pool of
    /// connections each caching 128 statements of up to `max_packet`
    /// bytes could hold gigabytes for as long as they live.
    pub const MAX_BYTES: usize = 4 << 20;

    /// The server's id for `sql`, if prepared here.
    pub fn get(&mut self, sql: &[u8]) -> Option<u32> {
        self.clock += 1;
        let clock = self.clock;
        self.by_text.get_mut(sql).map(|(id, used)| {
            *used = clock;
            *id
        })
    }

    /// Records `sql` as prepared with `id`; returns ids to close: one
    /// replaced for the same text, and the least recently used while
    /// over either bound.
    pub fn insert(&mut self, sql: &[u8], id: u32) -> Vec<u32> {
        self.clock += 1;
        let mut close = Vec::new();
        match self.by_text.insert(sql.to_vec(), (id, self.clock)) {
            Some((old, _)) if old != id => close.push(old),
            Some(_) => {}
            None => self.bytes += sql.len(),
        }
        while self.by_text.len() > Self::MAX
            || (self.bytes > Self::MAX_BYTES && self.by_text.len() > 1)
        {
            let Some(oldest) =
                self.by_text.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = self.by_text.remove(&oldest) {
                self.bytes -= oldest.len();
                close.push(old);
            }
        }
        close
    }

    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }
}

/// Reads a server greeting from `addr` without logging in: used to learn
/// the server version and capabilities the proxy presents to clients.
pub async fn probe_greeting(addr: &str, timeout: Duration) -> Result<Greeting, BackendError> {
    let mut stream = connect_tcp(addr, timeout).await?;
    let mut reader = PacketReader::new();
    let mut payload = Vec::new();
    tokio::time::timeout(
        timeout,
        reader.read_packet(&mut stream, &mut payload, CONTROL_PACKET_LIMIT),
    )
    .await
    .map_err(|_| BackendError::ConnectTimeout(addr.to_string()))??;
    if payload.first() == Some(&0xFF) {
        return Err(BackendError::from_err_packet(&payload));
    }
    Greeting::parse(&payload).ok_or_else(|| BackendError::Protocol("malformed greeting".into()))
}

async fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, BackendError> {
    let (host, port) = crate::net::split_address(addr).ok_or_else(|| BackendError::Connect {
        addr: addr.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not host:port"),
    })?;
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| BackendError::ConnectTimeout(addr.to_string()))?
        .map_err(|source| BackendError::Connect { addr: addr.to_string(), source })?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

impl BackendConn {
    /// Connects and logs in over plain TCP, bounded by `timeout` as a whole.
    pub async fn connect(
        addr: &str,
        login: &Login,
        timeout: Duration,
    ) -> Result<BackendConn, BackendError> {
        Self::connect_with(addr, login, timeout, None).await
    }

    /// Connects and logs in, switching to TLS first when `tls` is given.
    pub async fn connect_with(
        addr: &str,
        login: &Login,
        timeout: Duration,
        tls: Option<&BackendTls>,
    ) -> Result<BackendConn, BackendError> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, login, timeout, tls))
            .await
            .map_err(|_| BackendError::ConnectTimeout(addr.to_string()))?
    }

    async fn connect_inner(
        addr: &str,
        login: &Login,
        timeout: Duration,
        tls: Option<&BackendTls>,
    ) -> Result<BackendConn, BackendError> {
        let mut stream = BackendStream::Tcp(connect_tcp(addr, timeout).await?);
        let mut reader = PacketReader::with_capacity(BACKEND_READ_CHUNK);
        let mut payload = Vec::new();
        let (_, seq) = reader.read_packet(&mut stream, &mut payload, CONTROL_PACKET_LIMIT).await?;
        if payload.first() == Some(&0xFF) {
            return Err(BackendError::from_err_packet(&payload));
        }
        let greeting = Greeting::parse(&payload)
            .ok_or_else(|| BackendError::Protocol("malformed greeting".into()))?;
        let caps = negotiate(login, &greeting);
        let mut seq = seq;
        if let Some(tls) = tls {
            if !greeting.capabilities.contains(CapabilityFlags::CLIENT_SSL) {
                return Err(BackendError::Tls(format!("{addr} does not offer TLS")));
            }
            let mut request = Vec::with_capacity(32);
            request.extend_from_slice(&(caps | CapabilityFlags::CLIENT_SSL).bits().to_le_bytes());
            request.extend_from_slice(&login.max_packet.to_le_bytes());
            request.push(login.collation);
            request.extend_from_slice(&[0; 19]);
            let ext = login.mariadb_caps & greeting.mariadb_caps & PASSTHROUGH_MARIADB_CAPS;
            let ext = if caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) { 0 } else { ext };
            request.extend_from_slice(&ext.to_le_bytes());
            seq = seq.wrapping_add(1);
            let mut out = Vec::with_capacity(36);
            put_packet(&mut out, seq, &request);
            stream.write_all(&out).await?;
            stream.flush().await?;
            let tcp = stream.take_tcp().expect("plain before the upgrade");
            stream = tls
                .connect(addr, tcp)
                .await
                .map_err(|e| BackendError::Tls(format!("TLS to {addr} failed: {e}")))?;
        }
        let response_caps = if tls.is_some() { caps | CapabilityFlags::CLIENT_SSL } else { caps };
        let plugin = greeting.auth_plugin.clone();
        let auth_response = auth_response_for(&login.secret, &plugin, &greeting.scramble)?;
        let response = HandshakeResponse {
            capabilities: response_caps,
            max_packet: login.max_packet,
            collation: login.collation,
            mariadb_caps: login.mariadb_caps & greeting.mariadb_caps & PASSTHROUGH_MARIADB_CAPS,
            user: login.user.clone(),
            auth_response,
            database: login.database.clone(),
            auth_plugin: Some(plugin),
            attributes: login.attributes.clone(),
        };
        let mut body = Vec::with_capacity(128);
        response.write(&mut body);
        let autocommit = greeting.status & crate::protocol::status::AUTOCOMMIT != 0;
        let mut conn = BackendConn {
            stream,
            reader,
            caps,
            thread_id: greeting.connection_id,
            mariadb: crate::monitor::flavor_of(&String::from_utf8_lossy(&greeting.server_version))
                == crate::monitor::Flavor::MariaDb,
            greeting,
            applied_sets: 0,
            sets_hash: 0,
            database: login.database.clone(),
            database_selected: login.database.is_some(),
            tracks_gtids: false,
            transactions_read_only: false,
            autocommit: Some(autocommit),
            in_transaction: false,
            opened: std::time::Instant::now(),
            last_used: std::time::Instant::now(),
            own_commands: 0,
            outages_seen: 0,
            globals_seen: 0,
            databases_seen: 0,
            database_stale: false,
            prepared: None,
            scratch: Vec::new(),
            key_scratch: Vec::new(),
        };
        conn.write_payload(seq.wrapping_add(1), &body).await?;
        conn.finish_auth(login).await?;
        if login.track_gtids && conn.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            conn.enable_gtid_tracking().await?;
        }
        Ok(conn)
    }

    /// Follows the server through auth switches and caching_sha2 rounds
    /// until OK or ERR.
    async fn finish_auth(&mut self, login: &Login) -> Result<(), BackendError> {
        let mut plugin = self.greeting.auth_plugin.clone();
        let mut scramble = self.greeting.scramble.clone();
        let mut payload = Vec::new();
        loop {
            let (_, seq) = self
                .reader
                .read_packet(&mut self.stream, &mut payload, CONTROL_PACKET_LIMIT)
                .await?;
            let next = seq.wrapping_add(1);
            match payload.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(BackendError::from_err_packet(&payload)),
                Some(0xFE) => {
                    let mut c = Cursor::new(&payload[1..]);
                    plugin = c.null_str().to_vec();
                    let rest = c.rest();
                    // A scramble ends with a NUL; ed25519's nonce is 32
                    // random bytes, whose last may be 0.
                    scramble = if plugin == crate::protocol::auth::ED25519 {
                        rest.to_vec()
                    } else {
                        rest.strip_suffix(&[0]).unwrap_or(rest).to_vec()
                    };
                    let resp = auth_response_for(&login.secret, &plugin, &scramble)?;
                    self.write_payload(next, &resp).await?;
                }
                Some(0x01) if plugin == b"caching_sha2_password" => match payload.get(1) {
                    Some(0x03) => continue, // fast auth succeeded: OK follows
                    Some(0x04) => self.sha2_full_auth(login, &scramble, next).await?,
                    _ => {
                        return Err(BackendError::Protocol(
                            "unexpected caching_sha2 message".into(),
                        ));
                    }
                },
                _ => {
                    return Err(BackendError::Protocol(
                        "unexpected packet during authentication".into(),
                    ));
                }
            }
        }
    }

    /// The full caching_sha2 exchange without TLS: ask for the server's
    /// RSA public key, send the password XORed with the scramble and
    /// encrypted with RSA-OAEP (SHA-1), as MySQL 8 documents it.
    async fn sha2_full_auth(
        &mut self,
        login: &Login,
        scramble: &[u8],
        seq: u8,
    ) -> Result<(), BackendError> {
        let password = login.secret.cleartext().ok_or_else(|| {
            BackendError::UnsupportedAuth(
                "caching_sha2_password full authentication (the proxy knows only a hash of this password)".into(),
            )
        })?;
        self.write_payload(seq, &[crate::protocol::auth::SHA2_REQUEST_PUBLIC_KEY]).await?;
        let mut key = Vec::new();
        let (_, seq) =
            self.reader.read_packet(&mut self.stream, &mut key, CONTROL_PACKET_LIMIT).await?;
        if key.first() == Some(&0xFF) {
            return Err(BackendError::from_err_packet(&key));
        }
        let pem = key.strip_prefix(&[0x01]).unwrap_or(&key);
        let encrypted = rsa_encrypt_password(pem, password, scramble)?;
        self.write_payload(seq.wrapping_add(1), &encrypted).await?;
        Ok(())
    }

    /// Ends the connection as a client should (COM_QUIT), and waits (at
    /// most `within`) for the server to close it: a place this connection
    /// held under a connection cap is then free on the server's side too,
    /// so that a connection opened in its place is not counted beside it.
    pub async fn quit(&mut self, within: Duration) {
        let closed = async {
            if self.write_payload(0, &[crate::protocol::command::QUIT]).await.is_err() {
                return;
            }
            // Nothing answers a COM_QUIT: reading ends when the server closes.
            let mut packet = Vec::new();
            while self
                .reader
                .read_packet(&mut self.stream, &mut packet, CONTROL_PACKET_LIMIT)
                .await
                .is_ok()
            {}
        };
        let _ = tokio::time::timeout(within, closed).await;
    }

    /// Writes one logical packet starting at `seq`.
    pub async fn write_payload(&mut self, seq: u8, payload: &[u8]) -> std::io::Result<()> {
        self.scratch.clear();
        put_packet(&mut self.scratch, seq, payload);
        self.stream.write_all(&self.scratch).await?;
        self.stream.flush().await
    }

    /// Runs a command of the proxy's own (SET, COM_INIT_DB, KILL ...) and
    /// consumes its whole response. Returns the outcome, or the server's
    /// error as `BackendError::Server`.
    pub async fn run_own(&mut self, payload: &[u8]) -> Result<Outcome, BackendError> {
        self.own_commands = self.own_commands.wrapping_add(1);
        self.write_payload(0, payload).await?;
        self.read_own(Expect::Result).await.map(|(outcome, _)| outcome)
    }

    /// Reads a whole response that no client will see. Returns its outcome
    /// and the first row of its first result set (raw), or the server's
    /// error as `BackendError::Server`.
    pub async fn read_own(
        &mut self,
        expect: Expect,
    ) -> Result<(Outcome, Option<Vec<u8>>), BackendError> {
        let mut machine = Machine::new(expect, self.caps);
        let mut packet = Vec::new();
        let mut first_row = None;
        loop {
            let (_, seq) = self
                .reader
                .read_packet(&mut self.stream, &mut packet, CONTROL_PACKET_LIMIT)
                .await?;
            let before = machine.in_rows();
            let step = machine
                .step(packet.len().min(relay::INSPECT_LIMIT), &packet)
                .map_err(|e| BackendError::Protocol(e.to_string()))?;
            if before && first_row.is_none() && step == relay::Step::Continue {
                first_row = Some(packet.clone());
            }
            if machine.outcome.error.is_some() {
                return Err(BackendError::from_err_packet(&packet));
            }
            match step {
                relay::Step::Done => {
                    self.note_status(&machine.outcome);
                    return Ok((std::mem::take(&mut machine.outcome), first_row));
                }
                relay::Step::Continue => {}
                relay::Step::LocalInfile => {
                    self.write_payload(seq.wrapping_add(1), b"").await?;
                }
            }
        }
    }

    /// Remembers what a response's status flags say of the connection.
    pub fn note_status(&mut self, outcome: &Outcome) {
        if outcome.has_status {
            self.autocommit = Some(outcome.status & crate::protocol::status::AUTOCOMMIT != 0);
            self.in_transaction = outcome.status & crate::protocol::status::IN_TRANS != 0;
        }
    }

    /// Writes two commands in one write (each its own sequence from 0):
    /// the proxy's GTID wait and the client's read, in one round trip.
    pub async fn write_two(&mut self, first: &[u8], second: &[u8]) -> std::io::Result<()> {
        self.scratch.clear();
        put_packet(&mut self.scratch, 0, first);
        put_packet(&mut self.scratch, 0, second);
        self.stream.write_all(&self.scratch).await?;
        self.stream.flush().await
    }

    /// Prepares a statement for the proxy's own use (the client already
    /// has the prepare response from another backend) and consumes the
    /// response. Returns this backend's statement id.
    pub async fn prepare_own(&mut self, sql: &[u8]) -> Result<u32, BackendError> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(crate::protocol::command::STMT_PREPARE);
        payload.extend_from_slice(sql);
        self.write_payload(0, &payload).await?;
        let mut packet = Vec::new();
        self.reader.read_packet(&mut self.stream, &mut packet, CONTROL_PACKET_LIMIT).await?;
        match packet.first() {
            Some(0x00) if packet.len() >= 9 => {}
            Some(0xFF) => return Err(BackendError::from_err_packet(&packet)),
            _ => return Err(BackendError::Protocol("malformed prepare response".into())),
        }
        let id = u32::from_le_bytes([packet[1], packet[2], packet[3], packet[4]]);
        let columns = u16::from_le_bytes([packet[5], packet[6]]);
        let params = u16::from_le_bytes([packet[7], packet[8]]);
        for _ in 0..Machine::prepare_packets(params, columns, self.caps) {
            self.reader.read_packet(&mut self.stream, &mut packet, CONTROL_PACKET_LIMIT).await?;
        }
        Ok(id)
    }

    /// Runs a prepared statement whose reply no client sees: prepares
    /// `sql`, executes it with the parameters of `execute` (a
    /// COM_STMT_EXECUTE payload, its statement id replaced) and closes it.
    pub async fn run_prepared_own(
        &mut self,
        sql: &[u8],
        execute: &[u8],
    ) -> Result<Outcome, BackendError> {
        let id = self.prepare_own(sql).await?.to_le_bytes();
        let mut payload = execute.to_vec();
        if let Some(slot) = payload.get_mut(1..5) {
            slot.copy_from_slice(&id);
        }
        let outcome = self.run_own(&payload).await;
        let close = [crate::protocol::command::STMT_CLOSE, id[0], id[1], id[2], id[3]];
        self.write_payload(0, &close).await?;
        outcome
    }

    /// Prepares `sql` unless this connection's cache has it; statements
    /// the cache replaces or evicts are closed.
    /// Returns the id and the ids closed on the way.
    pub async fn prepare_cached(&mut self, sql: &[u8]) -> Result<(u32, Vec<u32>), BackendError> {
        let mut key = std::mem::take(&mut self.key_scratch);
        self.cache_key(sql, &mut key);
        let found = self.prepared.as_mut().and_then(|c| c.get(&key));
        self.key_scratch = key;
        if let Some(id) = found {
            return Ok((id, Vec::new()));
        }
        let id = self.prepare_own(sql).await?;
        let closed = self.remember_prepared(sql, id).await?;
        Ok((id, closed))
    }

    /// Adds a statement prepared here to the cache (when there is one),
    /// closing what it replaces or evicts; returns the closed ids.
    pub async fn remember_prepared(
        &mut self,
        sql: &[u8],
        id: u32,
    ) -> Result<Vec<u32>, BackendError> {
        if self.prepared.is_none() {
            return Ok(Vec::new());
        }
        let mut key = Vec::new();
        self.cache_key(sql, &mut key);
        let closed = self.prepared.as_mut().expect("checked above").insert(&key, id);
        for old in &closed {
            let mut close = vec![crate::protocol::command::STMT_CLOSE];
            close.extend_from_slice(&old.to_le_bytes());
            self.write_payload(0, &close).await?;
        }
        Ok(closed)
    }

    /// What a statement is cached under: its text means something else in
    /// another database or under other session variables (sql_mode).
    /// (Written into `key`, so that a lookup can reuse one buffer.)
    fn cache_key(&self, sql: &[u8], key: &mut Vec<u8>) {
        let db = self.database.as_deref().unwrap_or_default();
        key.clear();
        key.reserve(sql.len() + db.len() + 9);
        key.extend_from_slice(&self.sets_hash.to_le_bytes());
        key.extend_from_slice(db);
        key.push(0);
        key.extend_from_slice(sql);
    }

    /// Takes the connection's database for unknown (to be selected again
    /// before it is relied on) when a database may have changed its
    /// options since the connection selected it: `changes` is
    /// `Shared::database_changes` now. A server keeps the options it
    /// loaded at the selection, for the connection's life.
    pub fn note_database_changes(&mut self, changes: u64) {
        if self.databases_seen != changes {
            self.databases_seen = changes;
            self.database = None;
            self.database_stale = true;
        }
    }

    /// Makes `db` the connection's database (COM_INIT_DB) unless it is
    /// already. When the database's options may have changed since the
    /// connection selected one (`note_database_changes`), it goes through
    /// information_schema first: a MariaDB connection selecting the
    /// database it is in keeps the options it loaded before.
    pub async fn select_database(&mut self, db: &[u8]) -> Result<(), BackendError> {
        if self.database.as_deref() == Some(db) {
            return Ok(());
        }
        if std::mem::take(&mut self.database_stale) {
            let mut away = vec![crate::protocol::command::INIT_DB];
            away.extend_from_slice(b"information_schema");
            self.run_own(&away).await?;
        }
        let mut payload = vec![crate::protocol::command::INIT_DB];
        payload.extend_from_slice(db);
        self.database_selected = true;
        self.run_own(&payload).await?;
        self.database = Some(db.to_vec());
        Ok(())
    }

    /// COM_RESET_CONNECTION: the server forgets the connection's session
    /// state (variables, temporary tables, prepared statements, locks);
    /// GTID tracking is turned on again.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        self.run_own(&[crate::protocol::command::RESET_CONNECTION]).await?;
        self.applied_sets = 0;
        self.sets_hash = 0;
        self.transactions_read_only = false;
        self.autocommit = None;
        // Whether the current database survives differs between servers:
        // treat it as unknown (a session that has one selects it again).
        self.database = None;
        if let Some(cache) = self.prepared.as_mut() {
            *cache = PreparedCache::default();
        }
        if self.tracks_gtids {
            self.enable_gtid_tracking().await?;
        }
        Ok(())
    }

    /// Whether the server is MariaDB (GTIDs, waits and tracking differ).
    pub fn is_mariadb(&self) -> bool {
        self.mariadb
    }

    /// Makes every OK that ends a write carry its GTID: MariaDB's
    /// `last_gtid` system variable, MySQL's own-GTID tracker; and every OK
    /// say whether the statement changed the session's state
    /// (`session_track_state_change`), which keeps a pooled connection
    /// with its session. The client sees neither unless it asks.
    pub async fn enable_gtid_tracking(&mut self) -> Result<(), BackendError> {
        let sql = if self.is_mariadb() {
            "SET SESSION session_track_system_variables = \
             IF(FIND_IN_SET('last_gtid', @@session.session_track_system_variables) OR @@session.session_track_system_variables = '*', \
             @@session.session_track_system_variables, CONCAT_WS(',', NULLIF(@@session.session_track_system_variables, ''), 'last_gtid')), \
             session_track_state_change = ON"
        } else {
            "SET SESSION session_track_gtids = OWN_GTID, session_track_state_change = ON"
        };
        self.query_own(sql).await?;
        self.tracks_gtids = true;
        Ok(())
    }

    /// Makes every transaction of the connection, autocommit statements
    /// included, read-only (or read-write again): a replica's connection
    /// then refuses a write the proxy took for a read (a view taking a
    /// sequence's NEXTVAL) with ERROR 1792 even for a user whom
    /// `read_only` lets write (SUPER, READ ONLY ADMIN), and the proxy runs
    /// it on the primary instead.
    pub async fn set_transactions_read_only(
        &mut self,
        read_only: bool,
    ) -> Result<(), BackendError> {
        let sql = if read_only {
            "SET SESSION TRANSACTION READ ONLY"
        } else {
            "SET SESSION TRANSACTION READ WRITE"
        };
        self.query_own(sql).await?;
        self.transactions_read_only = read_only;
        Ok(())
    }

    /// Runs a text query of the proxy's own that answers one value: the
    /// first column of its first row (see [`first_text_value`]), None for
    /// NULL or no row. A server error is `Err`, as from [`Self::read_own`].
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, BackendError> {
        self.own_commands = self.own_commands.wrapping_add(1);
        self.write_payload(0, &query_payload(sql)).await?;
        let (_, row) = self.read_own(Expect::Result).await?;
        Ok(row.as_deref().and_then(first_text_value))
    }

    /// Runs a text query of the proxy's own.
    pub async fn query_own(&mut self, sql: &str) -> Result<Outcome, BackendError> {
        self.run_own(&query_payload(sql)).await
    }
}

/// The COM_QUERY payload of `sql`.
fn query_payload(sql: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(crate::protocol::command::QUERY);
    payload.extend_from_slice(sql.as_bytes());
    payload
}

/// The first column of a text row of the proxy's own query (a number, a
/// GTID position), as ASCII text; None for NULL. The server writes it in
/// the session's `character_set_results`, which under ucs2, utf16 or
/// utf32 pads each character with zero bytes: those are left out.
pub fn first_text_value(row: &[u8]) -> Option<String> {
    if row.first() == Some(&0xFB) {
        return None;
    }
    let mut c = crate::protocol::packet::Cursor::new(row);
    let value = c.lenenc_bytes()?;
    let ascii: Vec<u8> = value.iter().copied().filter(|&b| b != 0).collect();
    Some(String::from_utf8_lossy(&ascii).into_owned())
}

/// Encrypts the NUL-terminated password, XORed with the scramble, with
/// the server's RSA public key (PEM, PKCS#8 or PKCS#1) using OAEP-SHA1.
pub fn rsa_encrypt_password(
    pem: &[u8],
    password: &str,
    scramble: &[u8],
) -> Result<Vec<u8>, BackendError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let text = std::str::from_utf8(pem)
        .map_err(|_| BackendError::Protocol("public key is not PEM text".into()))?;
    let key = rsa::RsaPublicKey::from_public_key_pem(text)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(text))
        .map_err(|e| BackendError::Protocol(format!("cannot read the server's public key: {e}")))?;
    let message = crate::protocol::auth::sha2_obfuscate(password, scramble);
    key.encrypt(&mut rsa::rand_core::OsRng, rsa::Oaep::new::<sha1::Sha1>(), &message)
        .map_err(|e| BackendError::Protocol(format!("RSA encryption failed: {e}")))
}

/// The capabilities for a backend login: what the client negotiated with
/// the proxy, limited to what the server offers.
fn negotiate(login: &Login, greeting: &Greeting) -> CapabilityFlags {
    let mut caps = login.capabilities & PASSTHROUGH_CAPS & greeting.capabilities;
    caps |= CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SECURE_CONNECTION;
    if login.track_gtids {
        caps |= greeting.capabilities & CapabilityFlags::CLIENT_SESSION_TRACK;
    }
    caps |= greeting.capabilities & CapabilityFlags::CLIENT_PLUGIN_AUTH;
    if login.database.is_some() {
        caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    } else {
        caps &= !CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    }
    if login.attributes.is_none() {
        caps &= !CapabilityFlags::CLIENT_CONNECT_ATTRS;
    }
    caps
}

fn auth_response_for(
    secret: &BackendSecret,
    plugin: &[u8],
    scramble: &[u8],
) -> Result<Vec<u8>, BackendError> {
    secret
        .response(plugin, scramble)
        .ok_or_else(|| BackendError::UnsupportedAuth(String::from_utf8_lossy(plugin).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_cache_is_bounded_in_count_and_in_bytes() {
        let mut cache = PreparedCache::default();
        let mut closed = Vec::new();
        for id in 0..200u32 {
            closed.extend(cache.insert(format!("SELECT {id}").as_bytes(), id));
        }
        assert_eq!(cache.len(), PreparedCache::MAX);
        assert_eq!(closed, (0..72).collect::<Vec<_>>(), "the least recently used first");
        // Large texts: the oldest go until the rest fit, the newest stays.
        let big = vec![b'x'; PreparedCache::MAX_BYTES / 3];
        let mut closed = Vec::new();
        for id in 1000..1005u32 {
            let mut sql = big.clone();
            sql.extend_from_slice(id.to_string().as_bytes());
            closed.extend(cache.insert(&sql, id));
        }
        assert!(cache.bytes <= PreparedCache::MAX_BYTES, "{}", cache.bytes);
        assert!(cache.get(&[big.as_slice(), b"1004"].concat()) == Some(1004));
        assert!(closed.contains(&1000) && closed.contains(&1001) && !closed.contains(&1004));
        // One text over the bound alone is kept.
        let huge = vec![b'y'; PreparedCache::MAX_BYTES + 1];
        cache.insert(&huge, 7);
        assert_eq!((cache.len(), cache.get(&huge)), (1, Some(7)));
        // The same text again replaces its id and counts once.
        assert_eq!(cache.insert(&huge, 8), vec![7]);
        assert_eq!(cache.bytes, huge.len());
    }

    fn greeting(caps: CapabilityFlags) -> Greeting {
        Greeting {
            server_version: b"8.4.0".to_vec(),
            connection_id: 7,
            scramble: vec![1; 20],
            capabilities: caps,
            collation: 255,
            status: 2,
            mariadb_caps: 0,
            auth_plugin: b"caching_sha2_password".to_vec(),
        }
    }

    fn login(caps: CapabilityFlags) -> Login {
        Login {
            user: b"app".to_vec(),
            secret: BackendSecret::Plain("app".into()),
            database: None,
            collation: 45,
            capabilities: caps,
            mariadb_caps: 0,
            attributes: None,
            max_packet: 1 << 24,
            track_gtids: false,
        }
    }

    #[test]
    fn negotiation_keeps_client_semantics_flags() {
        let server =
            PASSTHROUGH_CAPS | CapabilityFlags::CLIENT_SSL | CapabilityFlags::CLIENT_COMPRESS;
        let client = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_FOUND_ROWS
            | CapabilityFlags::CLIENT_COMPRESS;
        let caps = negotiate(&login(client), &greeting(server));
        assert!(caps.contains(CapabilityFlags::CLIENT_FOUND_ROWS));
        assert!(!caps.contains(CapabilityFlags::CLIENT_COMPRESS));
        assert!(!caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF));
        assert!(!caps.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB));
        let client = client | CapabilityFlags::CLIENT_DEPRECATE_EOF;
        assert!(
            negotiate(&login(client), &greeting(server))
                .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
        );
    }

    use crate::protocol::packet::put_packet;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const SCRAMBLE: &[u8; 20] = b"0123456789abcdefghij";

    /// A fake MySQL 8 server that speaks caching_sha2_password as the
    /// protocol documentation describes it. `full` asks for the full
    /// exchange (RSA, no TLS); otherwise the fast path succeeds.
    async fn fake_mysql8(full: bool) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let g = Greeting {
                server_version: b"8.4.0".to_vec(),
                connection_id: 9,
                scramble: SCRAMBLE.to_vec(),
                capabilities: PASSTHROUGH_CAPS | CapabilityFlags::CLIENT_LONG_PASSWORD,
                collation: 255,
                status: 2,
                mariadb_caps: 0,
                auth_plugin: b"caching_sha2_password".to_vec(),
            };
            let mut out = Vec::new();
            let mut p = Vec::new();
            g.write(&mut p);
            put_packet(&mut out, 0, &p);
            s.write_all(&out).await.unwrap();
            let mut reader = PacketReader::new();
            let mut packet = Vec::new();
            reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
            let response = HandshakeResponse::parse(&packet).unwrap();
            let expected = mysql_common::scramble::scramble_sha256(SCRAMBLE, b"app").unwrap();
            assert_eq!(response.auth_response, expected.to_vec(), "fast-path scramble");
            let mut out = Vec::new();
            if !full {
                put_packet(&mut out, 2, &[0x01, 0x03]);
                put_packet(&mut out, 3, &[0x00, 0, 0, 2, 0, 0, 0]);
                s.write_all(&out).await.unwrap();
                return Vec::new();
            }
            put_packet(&mut out, 2, &[0x01, 0x04]);
            s.write_all(&out).await.unwrap();
            let (_, seq) = reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
            assert_eq!((seq, packet.as_slice()), (3, &[0x02][..]), "public key request");
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
            let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
                &rsa::RsaPublicKey::from(&private),
                rsa::pkcs8::LineEnding::LF,
            )
            .unwrap();
            let mut key = vec![0x01];
            key.extend_from_slice(pem.as_bytes());
            let mut out = Vec::new();
            put_packet(&mut out, 4, &key);
            s.write_all(&out).await.unwrap();
            let (_, seq) = reader.read_packet(&mut s, &mut packet, 1 << 16).await.unwrap();
            assert_eq!(seq, 5);
            let plain = private.decrypt(rsa::Oaep::new::<sha1::Sha1>(), &packet).unwrap();
            let mut out = Vec::new();
            put_packet(&mut out, 6, &[0x00, 0, 0, 2, 0, 0, 0]);
            s.write_all(&out).await.unwrap();
            plain
        });
        (addr, task)
    }

    #[tokio::test]
    async fn caching_sha2_fast_path_logs_in() {
        let (addr, server) = fake_mysql8(false).await;
        let conn = BackendConn::connect(&addr, &login(PASSTHROUGH_CAPS), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(conn.thread_id, 9);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn caching_sha2_full_auth_sends_rsa_encrypted_password() {
        let (addr, server) = fake_mysql8(true).await;
        BackendConn::connect(&addr, &login(PASSTHROUGH_CAPS), Duration::from_secs(5))
            .await
            .unwrap();
        let plain = server.await.unwrap();
        // password + NUL, XORed with the scramble.
        let expected: Vec<u8> =
            b"app\0".iter().zip(SCRAMBLE.iter().cycle()).map(|(a, b)| a ^ b).collect();
        assert_eq!(plain, expected);
    }

    #[tokio::test]
    async fn caching_sha2_full_auth_without_cleartext_is_refused_clearly() {
        let (addr, _server) = fake_mysql8(true).await;
        let mut l = login(PASSTHROUGH_CAPS);
        l.secret = BackendSecret::NativeStage1([1; 20]);
        // The fast path cannot even start without the password.
        let err = BackendConn::connect(&addr, &l, Duration::from_secs(5)).await.err().unwrap();
        assert!(matches!(err, BackendError::UnsupportedAuth(_)), "{err}");
    }

    #[test]
    fn caching_sha2_fast_response_matches_documented_formula() {
        // XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)), nonce)), 32 bytes.
        let r = auth_response_for(
            &BackendSecret::Plain("app".into()),
            b"caching_sha2_password",
            &[1; 20],
        )
        .unwrap();
        assert_eq!(r.len(), 32);
        let stage1 = BackendSecret::NativeStage1([0; 20]);
        assert!(auth_response_for(&stage1, b"caching_sha2_password", &[1; 20]).is_err());
    }
}
