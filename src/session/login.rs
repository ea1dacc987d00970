//! The server side of the connection phase: greeting, handshake response,
//! password check (with auth switch when the client chose another plugin),
//! and the exact MySQL wording when access is denied.

use crate::backend::{BackendError, Login, PASSTHROUGH_CAPS, PASSTHROUGH_MARIADB_CAPS};
use crate::config::Config;
use crate::net::ClientAddr;
use crate::protocol::auth::{self, BackendSecret, Secret};
use crate::protocol::handshake::{Greeting, HandshakeResponse, build_auth_switch};
use crate::protocol::messages::{build_err, build_ok};
use crate::protocol::packet::{FrameError, PacketReader, write_packet};
use crate::protocol::status;
use crate::server::{ListenerCtx, Shared, UserSlot};
use crate::tls::ClientStream;
use mysql_common::constants::CapabilityFlags;
use std::time::{Duration, Instant};

/// The server's errors for a database a client may not use (access denied
/// to it, unknown database, a name no database can have).
const ER_DBACCESS_DENIED: u16 = 1044;
const ER_BAD_DB: u16 = 1049;
const ER_WRONG_DB_NAME: u16 = 1102;

/// Largest packet accepted before login completes.
const LOGIN_PACKET_LIMIT: usize = 64 << 10;

/// Collation presented when the primary's is unknown: utf8mb4_general_ci.
const DEFAULT_COLLATION: u8 = 45;

/// Why a login ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("access denied for user {user:?}")]
    Denied { user: String },
    #[error("user {user:?} is at its max_connections")]
    UserLimit { user: String },
    #[error("client sent a malformed handshake")]
    Malformed,
    #[error("client asked for {0}, which the proxy does not offer")]
    Unsupported(&'static str),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A logged-in client.
pub struct LoggedIn {
    pub login: Login,
    /// The session's place in its user's connection count.
    pub slot: UserSlot,
    pub user: String,
    pub scramble: [u8; auth::SCRAMBLE_LEN],
    /// The sequence number of the packet that ends the login (OK, or the
    /// error of a database the client may not use): see `Session::welcome`.
    pub reply_seq: u8,
    /// Compression starts after that packet.
    pub compress: bool,
}

/// Builds the greeting presented to a client.
pub fn greeting_for_client(
    primary: Option<&Greeting>,
    config: &Config,
    connection_id: u32,
    scramble: &[u8],
) -> Greeting {
    let (version, caps, collation, mariadb) = match primary {
        Some(g) => (g.server_version.clone(), g.capabilities, g.collation, g.mariadb_caps),
        None => (
            config.fallback_server_version.as_bytes().to_vec(),
            PASSTHROUGH_CAPS & !CapabilityFlags::CLIENT_LONG_PASSWORD,
            DEFAULT_COLLATION,
            PASSTHROUGH_MARIADB_CAPS,
        ),
    };
    // The CLIENT_MYSQL bit tells MariaDB clients whether the extended
    // capabilities are present; mirror the primary.
    let mysql_bit = caps & CapabilityFlags::CLIENT_LONG_PASSWORD;
    Greeting {
        server_version: version,
        connection_id,
        scramble: scramble.to_vec(),
        // Compression is the proxy's own (with the client; backends are
        // never asked for it).
        capabilities: (caps & PASSTHROUGH_CAPS & !CapabilityFlags::CLIENT_LONG_PASSWORD)
            | mysql_bit
            | CapabilityFlags::CLIENT_COMPRESS,
        collation,
        // A session starts as the primary's do: with autocommit unless the
        // server's default (@@global.autocommit) is off, and with
        // NO_BACKSLASH_ESCAPES when its sql_mode has it (a client's
        // escaping, mysql_real_escape_string, depends on it).
        status: primary.map_or(status::AUTOCOMMIT, |g| {
            g.status & (status::AUTOCOMMIT | status::NO_BACKSLASH_ESCAPES)
        }),
        mariadb_caps: mariadb & PASSTHROUGH_MARIADB_CAPS,
        auth_plugin: auth::NATIVE.as_bytes().to_vec(),
    }
}

/// Runs the connection phase on `stream` up to the verdict on the client's
/// credentials. On success the returned login is what backends are logged
/// in with, and the client waits for the packet that ends its login.
pub async fn login(
    stream: &mut ClientStream,
    reader: &mut PacketReader,
    greeting: &Greeting,
    config: &Config,
    peer: ClientAddr,
    listener: &ListenerCtx,
    shared: &Shared,
) -> Result<LoggedIn, LoginError> {
    let mut out = Vec::with_capacity(128);
    greeting.write(&mut out);
    write_packet(stream, 0, &out).await?;

    let mut payload = Vec::new();
    let (first, mut seq) = reader.read_packet(stream, &mut payload, LOGIN_PACKET_LIMIT).await?;
    if first != 1 {
        return Err(LoginError::Malformed);
    }
    if HandshakeResponse::parse_ssl_request(&payload).is_some() {
        let Some(acceptor) = &listener.tls else {
            write_packet(stream, 2, &build_err(1043, "08S01", "Bad handshake")).await?;
            return Err(LoginError::Malformed);
        };
        // Bytes of the TLS handshake may already sit in the buffer.
        let early = reader.buffered().to_vec();
        reader.consume(early.len());
        stream.upgrade(acceptor, early).await?;
        let (first, last) = reader.read_packet(stream, &mut payload, LOGIN_PACKET_LIMIT).await?;
        if first != 2 {
            return Err(LoginError::Malformed);
        }
        seq = last;
    } else if listener.require_tls {
        let msg = "Connections using insecure transport are prohibited while --require_secure_transport=ON.";
        write_packet(stream, seq.wrapping_add(1), &build_err(3159, "HY000", msg)).await?;
        return Err(LoginError::Malformed);
    }
    let response = HandshakeResponse::parse(&payload).ok_or(LoginError::Malformed)?;
    // A client that compresses in a way the greeting did not offer (zstd)
    // would send frames the proxy cannot read: refused before it starts.
    let compress =
        CapabilityFlags::CLIENT_COMPRESS | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM;
    if response.capabilities.intersects(compress & !greeting.capabilities) {
        let msg = "rwsplit compresses with zlib only; connect without zstd compression";
        write_packet(stream, seq.wrapping_add(1), &build_err(1235, "42000", msg)).await?;
        return Err(LoginError::Unsupported("zstd compression"));
    }
    if let Some(charset) = crate::classify::not_a_client_charset(response.collation.into()) {
        let err = charset_refused(charset);
        write_packet(stream, seq.wrapping_add(1), &err).await?;
        return Err(LoginError::Unsupported("a wide character set (ucs2, utf16, utf32)"));
    }
    let caps = (response.capabilities & greeting.capabilities & !CapabilityFlags::CLIENT_SSL)
        | CapabilityFlags::CLIENT_PROTOCOL_41;
    let scramble: [u8; auth::SCRAMBLE_LEN] =
        greeting.scramble.as_slice().try_into().map_err(|_| LoginError::Malformed)?;
    let user = String::from_utf8_lossy(&response.user).into_owned();
    let secret = config.user(&response.user).and_then(|u| u.secret(&config.base_dir).ok());

    let client_plugin = response.auth_plugin.as_deref().unwrap_or(auth::NATIVE.as_bytes());
    let mut next_seq = seq.wrapping_add(1);
    let throttled = wait_out_failed_logins(shared, config, peer).await;
    let verified = match secret {
        None => None,
        Some(secret) => {
            let mut exchange = Exchange { stream, reader, scramble: &scramble, seq: &mut next_seq };
            exchange.authenticate(&secret, client_plugin, &response.auth_response).await?
        }
    };
    let Some(backend_secret) = verified else {
        let msg = denied_message(&user, peer, !response.auth_response.is_empty());
        tracing::warn!(%peer, user = %user, "login failed");
        if let Some(ip) = throttled {
            shared.login_throttle.failed(ip, std::time::Instant::now());
        }
        write_packet(stream, next_seq, &build_err(1045, "28000", &msg)).await?;
        return Err(LoginError::Denied { user });
    };
    if let Some(ip) = throttled {
        shared.login_throttle.succeeded(ip);
    }
    let limit = config.user(&response.user).and_then(|u| u.max_connections);
    let Some(slot) = shared.user_sessions.take(&response.user, limit) else {
        tracing::warn!(%peer, user = %user, "user is at its max_connections");
        let err = build_err(1203, "42000", &user_limit_message(&user));
        write_packet(stream, next_seq, &err).await?;
        return Err(LoginError::UserLimit { user });
    };

    let mariadb_caps = if caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
        0
    } else {
        response.mariadb_caps & greeting.mariadb_caps
    };
    Ok(LoggedIn {
        slot,
        login: Login {
            user: response.user,
            secret: backend_secret,
            database: response.database.filter(|d| !d.is_empty()),
            collation: response.collation,
            capabilities: caps & !CapabilityFlags::CLIENT_COMPRESS,
            mariadb_caps,
            attributes: response.attributes,
            max_packet: response.max_packet,
            track_gtids: true,
        },
        user,
        scramble,
        reply_seq: next_seq,
        compress: caps.contains(CapabilityFlags::CLIENT_COMPRESS),
    })
}

/// The server's error for a client character set no client may use.
pub(super) fn charset_refused(charset: &str) -> Vec<u8> {
    let msg = format!("Variable 'character_set_client' can't be set to the value of '{charset}'");
    build_err(1231, "42000", &msg)
}

impl super::Session {
    /// Ends the login with OK, or with the error the server gives a client
    /// that names a database it cannot use (ERROR 1049, unknown database;
    /// ERROR 1044, access denied to it; ERROR 1102, a name too long or
    /// malformed), at login as a server does rather than at the first
    /// statement. The primary decides, on the connection the session would
    /// use there (with multiplexing, one from the pool, given back: usually
    /// already on that database, so no round trip), had without waiting. A
    /// database the user was let use at a login in the last minute is not
    /// checked again (`UsableDatabases`). When the primary is down, or
    /// answers anything else, the login goes on as before. Returns whether
    /// the session goes on.
    pub(super) async fn welcome(&mut self, seq: u8, compress: bool) -> bool {
        if let Some(err) = self.database_refused().await {
            tracing::debug!(id = self.id, "login refused: the client's database");
            let _ = write_packet(&mut self.client, seq, &err).await;
            return false;
        }
        let ok = build_ok(0, 0, self.status, 0);
        if write_packet(&mut self.client, seq, &ok).await.is_err() {
            return false;
        }
        if compress {
            self.client.compress();
        }
        true
    }

    /// The error packet for a database the primary says the session cannot use.
    async fn database_refused(&mut self) -> Option<Vec<u8>> {
        let db = self.login.database.as_ref()?;
        let usable = &self.shared.usable_databases;
        if usable.known(&self.login.user, db, Instant::now()) {
            return None;
        }
        let primary = self.primary();
        let up = self.shared.topology_now().backends.get(primary).is_some_and(|b| b.healthy);
        if !up || self.shared.backoff.is_down(primary) {
            return None;
        }
        // The login does not wait for a connection: with every one in use
        // (or none to be opened now), the first statement finds out.
        let checked = match self.backend_within(primary, Some(Duration::ZERO)).await {
            Ok(_) => self.catch_up(primary).await,
            Err(e) => Err(e),
        };
        if self.view.config.pool.multiplex {
            self.give_back_unbound();
        }
        match checked {
            Ok(()) => {
                let db = self.login.database.as_deref().unwrap_or_default();
                self.shared.usable_databases.usable(&self.login.user, db, Instant::now());
                None
            }
            Err(BackendError::Server {
                code: code @ (ER_DBACCESS_DENIED | ER_BAD_DB | ER_WRONG_DB_NAME),
                state,
                message,
            }) => Some(build_err(code, &state, &message)),
            _ => None,
        }
    }
}

/// An address with failed logins waits before any verdict (a good
/// password is not answered faster than a wrong one). Returns the address
/// when it is subject to the slow-down, to report the verdict on.
pub(super) async fn wait_out_failed_logins(
    shared: &Shared,
    config: &Config,
    peer: ClientAddr,
) -> Option<std::net::IpAddr> {
    let limits = &config.limits;
    let throttled = peer
        .ip()
        .filter(|ip| !ip.is_loopback() || limits.failed_login_delay_loopback)
        .filter(|_| !limits.failed_login_delay.is_zero())?;
    let delay = shared.login_throttle.delay(
        throttled,
        limits.failed_login_delay,
        limits.failed_login_delay_max,
        std::time::Instant::now(),
    );
    if !delay.is_zero() {
        tracing::debug!(%peer, ?delay, "slowing down a login after failed ones");
        tokio::time::sleep(delay).await;
    }
    Some(throttled)
}

/// MySQL's wording for a refused login.
pub fn denied_message(user: &str, peer: ClientAddr, using_password: bool) -> String {
    format!(
        "Access denied for user '{}'@'{}' (using password: {})",
        user,
        peer.host(),
        if using_password { "YES" } else { "NO" }
    )
}

/// MySQL's wording for ER_TOO_MANY_USER_CONNECTIONS.
pub fn user_limit_message(user: &str) -> String {
    format!("User {user} already has more than 'max_user_connections' active connections")
}

/// The password exchange after the handshake response (or after
/// COM_CHANGE_USER).
pub(super) struct Exchange<'a> {
    pub stream: &'a mut ClientStream,
    pub reader: &'a mut PacketReader,
    pub scramble: &'a [u8],
    /// Sequence id of the next packet the proxy sends.
    pub seq: &'a mut u8,
}

impl Exchange<'_> {
    async fn send(&mut self, payload: &[u8]) -> Result<(), LoginError> {
        write_packet(self.stream, *self.seq, payload).await?;
        Ok(())
    }

    async fn receive(&mut self) -> Result<Vec<u8>, LoginError> {
        let mut p = Vec::new();
        let (_, last) = self.reader.read_packet(self.stream, &mut p, LOGIN_PACKET_LIMIT).await?;
        *self.seq = last.wrapping_add(1);
        Ok(p)
    }

    /// Checks the client's credentials, switching plugin when needed.
    /// Returns what to log in to backends with, or `None` when refused.
    pub(super) async fn authenticate(
        &mut self,
        secret: &Secret,
        client_plugin: &[u8],
        first_response: &[u8],
    ) -> Result<Option<BackendSecret>, LoginError> {
        let mut plugin = std::str::from_utf8(client_plugin).unwrap_or("");
        let mut response = first_response.to_vec();
        // An empty answer for another plugin asks to be switched (as
        // libmysqlclient's COM_CHANGE_USER does, answering for its default
        // plugin before it knows the account's).
        let wants_switch = first_response.is_empty() && plugin != auth::NATIVE;
        if !secret.supports(plugin) || (wants_switch && secret.supports(auth::NATIVE)) {
            plugin = if secret.supports(auth::NATIVE) { auth::NATIVE } else { auth::CACHING_SHA2 };
            self.send(&build_auth_switch(plugin, self.scramble)).await?;
            response = self.receive().await?;
        }
        if plugin == auth::NATIVE {
            return Ok(secret.verify_native(self.scramble, &response));
        }
        if !secret.verify_sha2_fast(self.scramble, &response) {
            return Ok(None);
        }
        if let Secret::Plain(p) = secret {
            self.send(&[0x01, auth::SHA2_FAST_AUTH_OK]).await?;
            *self.seq = self.seq.wrapping_add(1);
            return Ok(Some(BackendSecret::Plain(p.clone())));
        }
        // A hash-only user: the backends need the password itself, which
        // the client only sends in the full exchange, and only over TLS.
        self.send(&[0x01, auth::SHA2_PERFORM_FULL_AUTH]).await?;
        let reply = self.receive().await?;
        if !self.stream.is_tls() {
            // The client asks for an RSA key (or sends an RSA-encrypted
            // password); the proxy has none, so it refuses.
            return Ok(None);
        }
        let password = reply.strip_suffix(&[0]).unwrap_or(&reply);
        if !secret.verify_cleartext(password) {
            return Ok(None);
        }
        Ok(std::str::from_utf8(password).ok().map(|p| BackendSecret::Plain(p.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_message_matches_mysql_wording() {
        let peer = ClientAddr::Tcp("127.0.0.1:5000".parse().unwrap());
        assert_eq!(
            denied_message("app", peer, true),
            "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
        assert!(denied_message("x", peer, false).ends_with("(using password: NO)"));
    }

    #[test]
    fn greeting_mirrors_mariadb_marker_and_drops_unsupported_caps() {
        let config = crate::config::Config::parse(
            "[[listeners]]\naddress='127.0.0.1:0'\n[[users]]\nname='a'\npassword='a'\n[[backends]]\nname='p'\naddress='127.0.0.1:1'\nrole='primary'\n",
        )
        .unwrap();
        let primary = Greeting {
            server_version: b"5.5.5-10.11.6-MariaDB".to_vec(),
            connection_id: 9,
            scramble: vec![1; 20],
            capabilities: PASSTHROUGH_CAPS & !CapabilityFlags::CLIENT_LONG_PASSWORD
                | CapabilityFlags::CLIENT_COMPRESS,
            collation: 8,
            status: 2,
            mariadb_caps: 0x1F,
            auth_plugin: b"mysql_native_password".to_vec(),
        };
        let g = greeting_for_client(Some(&primary), &config, 5, &[2; 20]);
        assert_eq!(g.server_version, primary.server_version);
        assert_eq!(g.connection_id, 5);
        assert_eq!(g.collation, 8);
        assert!(g.capabilities.contains(CapabilityFlags::CLIENT_COMPRESS));
        assert!(!g.capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD));
        assert_eq!(g.mariadb_caps, PASSTHROUGH_MARIADB_CAPS);
        assert_eq!(g.status, status::AUTOCOMMIT);
        // A primary whose default sql_mode has NO_BACKSLASH_ESCAPES: the
        // client is told, as the server would tell it; nothing else of the
        // primary's status is copied.
        let both = status::AUTOCOMMIT | status::NO_BACKSLASH_ESCAPES;
        let nbe = Greeting { status: both | status::IN_TRANS, ..primary.clone() };
        let g = greeting_for_client(Some(&nbe), &config, 5, &[2; 20]);
        assert_eq!(g.status, both);
        // A primary whose sessions start without autocommit
        // (@@global.autocommit = 0): the client's does too.
        let off = Greeting { status: 0, ..primary };
        assert_eq!(greeting_for_client(Some(&off), &config, 5, &[2; 20]).status, 0);
        let g = greeting_for_client(None, &config, 5, &[2; 20]);
        assert_eq!(g.status, status::AUTOCOMMIT);
    }
}
