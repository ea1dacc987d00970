//! The connection-phase packets: the server greeting (protocol 10), the
//! client's handshake response (and its short SSL-request form), the
//! auth-switch request, and COM_CHANGE_USER. Each is parsed from and
//! written to bytes by pure functions so both sides of the proxy use them.

use super::packet::{Cursor, put_lenenc_str};
use mysql_common::constants::CapabilityFlags;

/// MariaDB extended capability bits, carried in the last four bytes of the
/// greeting's filler and of the handshake response's filler when the
/// CLIENT_MYSQL bit (bit 0) is clear.
pub mod mariadb_caps {
    pub const PROGRESS: u32 = 1 << 0;
    pub const COM_MULTI: u32 = 1 << 1;
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    pub const EXTENDED_TYPE_INFO: u32 = 1 << 3;
    pub const CACHE_METADATA: u32 = 1 << 4;
}

/// The server greeting (Protocol::HandshakeV10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: Vec<u8>,
    pub connection_id: u32,
    /// The auth plugin data (scramble), without the trailing NUL.
    pub scramble: Vec<u8>,
    pub capabilities: CapabilityFlags,
    pub collation: u8,
    pub status: u16,
    /// MariaDB extended capabilities (0 for MySQL).
    pub mariadb_caps: u32,
    pub auth_plugin: Vec<u8>,
}

impl Greeting {
    /// Parses a greeting payload; `None` if it is malformed or not
    /// protocol 10.
    pub fn parse(payload: &[u8]) -> Option<Greeting> {
        let mut c = Cursor::new(payload);
        if c.u8()? != 10 {
            return None;
        }
        let server_version = c.null_str().to_vec();
        let connection_id = c.u32()?;
        let mut scramble = c.bytes(8)?.to_vec();
        c.u8()?;
        let caps_lo = c.u16()? as u32;
        let collation = c.u8().unwrap_or(0);
        let status = c.u16().unwrap_or(0);
        let caps_hi = c.u16().unwrap_or(0) as u32;
        let capabilities = CapabilityFlags::from_bits_truncate(caps_lo | caps_hi << 16);
        let auth_len = c.u8().unwrap_or(0) as usize;
        let reserved = c.bytes(10).unwrap_or(&[0; 10]);
        let mariadb_caps = if capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            0
        } else {
            u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]])
        };
        if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let n = auth_len.saturating_sub(8).max(13).min(c.remaining().len());
            let part2 = c.bytes(n)?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            scramble.extend_from_slice(part2);
        }
        let auth_plugin = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
            c.null_str().to_vec()
        } else {
            b"mysql_native_password".to_vec()
        };
        Some(Greeting {
            server_version,
            connection_id,
            scramble,
            capabilities,
            collation,
            status,
            mariadb_caps,
            auth_plugin,
        })
    }

    /// Writes the greeting payload.
    pub fn write(&self, out: &mut Vec<u8>) {
        let caps = self.capabilities.bits();
        out.push(10);
        out.extend_from_slice(&self.server_version);
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        let (part1, part2) = self.scramble.split_at(self.scramble.len().min(8));
        out.extend_from_slice(part1);
        out.push(0);
        out.extend_from_slice(&(caps as u16).to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        out.push((self.scramble.len() + 1) as u8);
        out.extend_from_slice(&[0; 6]);
        if self.capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            out.extend_from_slice(&[0; 4]);
        } else {
            out.extend_from_slice(&self.mariadb_caps.to_le_bytes());
        }
        out.extend_from_slice(part2);
        out.push(0);
        out.extend_from_slice(&self.auth_plugin);
        out.push(0);
    }
}

/// The client's handshake response (Protocol::HandshakeResponse41).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: CapabilityFlags,
    pub max_packet: u32,
    pub collation: u8,
    pub mariadb_caps: u32,
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<Vec<u8>>,
    pub auth_plugin: Option<Vec<u8>>,
    /// Connection attributes as sent: the length-encoded block, without its
    /// own length prefix.
    pub attributes: Option<Vec<u8>>,
}

/// Length of an SSL request: the fixed part of a handshake response.
pub const SSL_REQUEST_LEN: usize = 32;

impl HandshakeResponse {
    /// Parses the fixed 32-byte prefix shared with the SSL request.
    fn parse_fixed(c: &mut Cursor<'_>) -> Option<HandshakeResponse> {
        let capabilities = CapabilityFlags::from_bits_truncate(c.u32()?);
        if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
            return None;
        }
        let max_packet = c.u32()?;
        let collation = c.u8()?;
        let filler = c.bytes(23)?;
        let mariadb_caps = if capabilities.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            0
        } else {
            u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]])
        };
        Some(HandshakeResponse {
            capabilities,
            max_packet,
            collation,
            mariadb_caps,
            ..HandshakeResponse::default()
        })
    }

    /// Parses an SSL request (a response cut after the fixed part).
    pub fn parse_ssl_request(payload: &[u8]) -> Option<HandshakeResponse> {
        if payload.len() != SSL_REQUEST_LEN {
            return None;
        }
        let r = Self::parse_fixed(&mut Cursor::new(payload))?;
        r.capabilities.contains(CapabilityFlags::CLIENT_SSL).then_some(r)
    }

    /// Parses a full handshake response. Only protocol 4.1 clients are
    /// accepted (every maintained client is one).
    pub fn parse(payload: &[u8]) -> Option<HandshakeResponse> {
        let mut c = Cursor::new(payload);
        let mut r = Self::parse_fixed(&mut c)?;
        let caps = r.capabilities;
        r.user = c.null_str().to_vec();
        r.auth_response = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            c.lenenc_bytes()?.to_vec()
        } else if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let n = c.u8()? as usize;
            c.bytes(n)?.to_vec()
        } else {
            c.null_str().to_vec()
        };
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) && !c.is_empty() {
            r.database = Some(c.null_str().to_vec());
        }
        if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !c.is_empty() {
            r.auth_plugin = Some(c.null_str().to_vec());
        }
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) && !c.is_empty() {
            r.attributes = Some(c.lenenc_bytes()?.to_vec());
        }
        Some(r)
    }

    /// Writes the response payload (the proxy's login to a backend).
    pub fn write(&self, out: &mut Vec<u8>) {
        let caps = self.capabilities;
        out.extend_from_slice(&caps.bits().to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&[0; 19]);
        if caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD) {
            out.extend_from_slice(&[0; 4]);
        } else {
            out.extend_from_slice(&self.mariadb_caps.to_le_bytes());
        }
        out.extend_from_slice(&self.user);
        out.push(0);
        if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            put_lenenc_str(out, &self.auth_response);
        } else {
            out.push(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) {
            out.extend_from_slice(self.database.as_deref().unwrap_or_default());
            out.push(0);
        }
        if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
            out.extend_from_slice(self.auth_plugin.as_deref().unwrap_or_default());
            out.push(0);
        }
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
            put_lenenc_str(out, self.attributes.as_deref().unwrap_or_default());
        }
    }
}

/// COM_CHANGE_USER as sent by a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Vec<u8>,
    pub collation: Option<u16>,
    pub auth_plugin: Option<Vec<u8>>,
    pub attributes: Option<Vec<u8>>,
}

impl ChangeUser {
    /// Parses the payload after the command byte; `caps` are the client's.
    pub fn parse(body: &[u8], caps: CapabilityFlags) -> Option<ChangeUser> {
        let mut c = Cursor::new(body);
        let mut r = ChangeUser { user: c.null_str().to_vec(), ..ChangeUser::default() };
        r.auth_response = if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let n = c.u8()? as usize;
            c.bytes(n)?.to_vec()
        } else {
            c.null_str().to_vec()
        };
        r.database = c.null_str().to_vec();
        if !c.is_empty() {
            r.collation = c.u16();
        }
        if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !c.is_empty() {
            r.auth_plugin = Some(c.null_str().to_vec());
        }
        if caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) && !c.is_empty() {
            r.attributes = c.lenenc_bytes().map(<[u8]>::to_vec);
        }
        Some(r)
    }
}

/// Builds an auth-switch request payload.
pub fn build_auth_switch(plugin: &str, scramble: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + scramble.len() + 1);
    out.push(0xFE);
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(scramble);
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_greeting(mysql: bool) -> Greeting {
        let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_DEPRECATE_EOF;
        if mysql {
            caps |= CapabilityFlags::CLIENT_LONG_PASSWORD;
        }
        Greeting {
            server_version: b"5.5.5-10.11.6-MariaDB-0+deb12u1-log".to_vec(),
            connection_id: 42,
            scramble: (1..=20).collect(),
            capabilities: caps,
            collation: 45,
            status: 2,
            mariadb_caps: if mysql { 0 } else { mariadb_caps::EXTENDED_TYPE_INFO },
            auth_plugin: b"mysql_native_password".to_vec(),
        }
    }

    #[test]
    fn greeting_round_trips_for_mariadb_and_mysql() {
        for mysql in [false, true] {
            let g = sample_greeting(mysql);
            let mut out = Vec::new();
            g.write(&mut out);
            assert_eq!(Greeting::parse(&out), Some(g));
        }
    }

    #[test]
    fn handshake_response_round_trips() {
        let r = HandshakeResponse {
            capabilities: CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_PLUGIN_AUTH
                | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | CapabilityFlags::CLIENT_CONNECT_WITH_DB
                | CapabilityFlags::CLIENT_CONNECT_ATTRS,
            max_packet: 1 << 24,
            collation: 45,
            mariadb_caps: mariadb_caps::EXTENDED_TYPE_INFO,
            user: b"app".to_vec(),
            auth_response: vec![9; 20],
            database: Some(b"app".to_vec()),
            auth_plugin: Some(b"mysql_native_password".to_vec()),
            attributes: Some(b"\x04_pid\x0212".to_vec()),
        };
        let mut out = Vec::new();
        r.write(&mut out);
        assert_eq!(HandshakeResponse::parse(&out), Some(r));
    }

    #[test]
    fn ssl_request_is_recognised_only_with_ssl_flag() {
        let r = HandshakeResponse {
            capabilities: CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SSL,
            ..HandshakeResponse::default()
        };
        let mut out = Vec::new();
        r.write(&mut out);
        out.truncate(SSL_REQUEST_LEN);
        assert!(HandshakeResponse::parse_ssl_request(&out).is_some());
        out[1] = 0; // clear CLIENT_SSL (0x0800)
        assert!(HandshakeResponse::parse_ssl_request(&out).is_none());
    }

    #[test]
    fn truncated_packets_do_not_parse() {
        let g = sample_greeting(false);
        let mut out = Vec::new();
        g.write(&mut out);
        for n in 0..20 {
            assert!(Greeting::parse(&out[..n]).is_none(), "prefix {n}");
        }
        assert!(HandshakeResponse::parse(&[0x00, 0x02, 0, 0, 1]).is_none());
    }
}
