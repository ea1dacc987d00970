//! Results the proxy writes itself, for what only it can answer: the
//! connection id the client sees (`SELECT CONNECTION_ID()`, see `kill`),
//! and the TLS and compression of the client's own connection (`SHOW
//! STATUS LIKE 'Ssl_cipher'`, `'Ssl_version'`, `'Compression'`). A server
//! would answer those for the proxy's connection to it: no cipher for a
//! client that is encrypted, or a cipher for one that is not, when
//! `[backend_tls]` is on; compression off for a client that compresses.

use super::{Next, Session, SessionError};
use crate::classify::Backslashes;
use crate::protocol::handshake::mariadb_caps;
use crate::protocol::messages::build_eof;
use crate::protocol::packet::{put_lenenc_str, put_packet};
use mysql_common::constants::CapabilityFlags;
use tokio::io::AsyncWriteExt;

/// One column of a result the proxy writes.
pub(super) struct Column<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub name: &'a str,
    pub org_name: &'a str,
    pub collation: u16,
    pub length: u32,
    pub field_type: u8,
    pub flags: u16,
}

/// Which status variable of the client's own connection a `SHOW STATUS`
/// asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Cipher,
    Version,
    Compression,
}

impl ConnectionStatus {
    fn name(self) -> &'static str {
        match self {
            ConnectionStatus::Cipher => "Ssl_cipher",
            ConnectionStatus::Version => "Ssl_version",
            ConnectionStatus::Compression => "Compression",
        }
    }
}

/// MariaDB's status variables whose names start with "Ssl".
const SSL_STATUS: [&str; 25] = [
    "Ssl_accept_renegotiates",
    "Ssl_accepts",
    "Ssl_callback_cache_hits",
    "Ssl_cipher",
    "Ssl_cipher_list",
    "Ssl_client_connects",
    "Ssl_connect_renegotiates",
    "Ssl_ctx_verify_depth",
    "Ssl_ctx_verify_mode",
    "Ssl_default_timeout",
    "Ssl_finished_accepts",
    "Ssl_finished_connects",
    "Ssl_server_not_after",
    "Ssl_server_not_before",
    "Ssl_session_cache_hits",
    "Ssl_session_cache_misses",
    "Ssl_session_cache_mode",
    "Ssl_session_cache_overflows",
    "Ssl_session_cache_size",
    "Ssl_session_cache_timeouts",
    "Ssl_sessions_reused",
    "Ssl_used_session_cache_entries",
    "Ssl_verify_depth",
    "Ssl_verify_mode",
    "Ssl_version",
];

/// Status variables whose names start with "Compression" (MySQL 8 has
/// the last two).
const COMPRESSION_STATUS: [&str; 3] = ["Compression", "Compression_algorithm", "Compression_level"];

/// Recognises `SHOW [SESSION | LOCAL] STATUS LIKE 'Ssl_cipher'` (or
/// `'Ssl_version'`), the documented way to ask whether a connection is
/// encrypted: a pattern that starts with "Ssl" and matches that one
/// status variable alone (`'Ssl_version%'` too); and `LIKE 'Compression'`,
/// whether it is compressed. Any other SHOW (GLOBAL, a pattern matching
/// more, WHERE) goes to a server as usual.
pub fn parse_show_connection_status(
    sql: &str,
    backslashes: Backslashes,
) -> Option<ConnectionStatus> {
    let pattern = crate::classify::show_status_pattern(sql, backslashes)?;
    let names: &[&str] = if pattern.get(..3)?.eq_ignore_ascii_case("ssl") {
        &SSL_STATUS
    } else if pattern.get(..11).is_some_and(|p| p.eq_ignore_ascii_case("compression")) {
        &COMPRESSION_STATUS
    } else {
        return None;
    };
    let mut matched =
        names.iter().filter(|name| crate::classify::like(pattern.as_bytes(), name.as_bytes()));
    let only = matched.next()?;
    if matched.next().is_some() {
        return None;
    }
    [ConnectionStatus::Cipher, ConnectionStatus::Version, ConnectionStatus::Compression]
        .into_iter()
        .find(|s| s.name() == *only)
}

/// The most bytes one character takes in the character set of collation
/// `id` (a column's declared length is its characters times this).
/// A login names its collation in one byte: ids up to 255.
fn max_bytes_per_char(id: u8) -> u32 {
    match id {
        // utf8mb4, gb18030
        45 | 46 | 224..=247 | 248..=250 | 255 => 4,
        // utf8mb3, ujis, eucjpms
        33 | 76 | 83 | 192..=215 | 223 | 12 | 91 | 97 | 98 => 3,
        // big5, sjis, cp932, euckr, gb2312, gbk
        1 | 84 | 13 | 88 | 95 | 96 | 19 | 85 | 24 | 86 | 28 | 87 => 2,
        _ => 1,
    }
}

impl Session {
    /// Writes a result of `columns` and one `row` (its values as text).
    pub(super) async fn answer_row(
        &mut self,
        columns: &[Column<'_>],
        row: &[&[u8]],
    ) -> Result<Next, SessionError> {
        let extended = self.login.mariadb_caps & mariadb_caps::EXTENDED_TYPE_INFO != 0;
        let status = self.status & crate::protocol::status::OF_SESSION;
        let deprecate_eof = self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let mut out = Vec::with_capacity(128);
        let mut seq = put_packet(&mut out, 1, &[columns.len() as u8]);
        for c in columns {
            let mut def = Vec::with_capacity(64);
            for text in ["def", c.schema, c.table, c.table, c.name, c.org_name] {
                put_lenenc_str(&mut def, text.as_bytes());
            }
            if extended {
                put_lenenc_str(&mut def, b"");
            }
            def.push(0x0c);
            def.extend_from_slice(&c.collation.to_le_bytes());
            def.extend_from_slice(&c.length.to_le_bytes());
            def.push(c.field_type);
            def.extend_from_slice(&c.flags.to_le_bytes());
            def.extend_from_slice(&[0, 0, 0]);
            seq = put_packet(&mut out, seq, &def);
        }
        if !deprecate_eof {
            seq = put_packet(&mut out, seq, &build_eof(self.caps, status, 0));
        }
        let mut values = Vec::with_capacity(64);
        for value in row {
            put_lenenc_str(&mut values, value);
        }
        seq = put_packet(&mut out, seq, &values);
        put_packet(&mut out, seq, &build_eof(self.caps, status, 0));
        self.client.write_all(&out).await?;
        self.client.flush().await?;
        Ok(Next::Continue)
    }

    /// Answers `SHOW STATUS LIKE 'Ssl_cipher'` (or `'Ssl_version'`) for
    /// the client's connection to the proxy, in a result shaped like
    /// MariaDB's (two VARCHAR columns of `information_schema`'s
    /// SESSION_STATUS, in the login's collation); empty when it is plain.
    pub(super) async fn answer_connection_status(
        &mut self,
        asked: ConnectionStatus,
    ) -> Result<Next, SessionError> {
        let value = match (self.client.tls_names(), asked) {
            (_, ConnectionStatus::Compression) => {
                if self.client.is_compressed() { "ON" } else { "OFF" }.into()
            }
            (Some((version, _)), ConnectionStatus::Version) => version.into(),
            (Some((_, cipher)), ConnectionStatus::Cipher) => cipher,
            (None, _) => "".into(),
        };
        let per_char = max_bytes_per_char(self.login.collation);
        let collation = u16::from(self.login.collation);
        let column = |name, org_name, chars: u32| Column {
            schema: "information_schema",
            table: "SESSION_STATUS",
            name,
            org_name,
            collation,
            length: chars * per_char,
            field_type: 0xfd, // VAR_STRING
            flags: 0x1001,    // NOT NULL, NO DEFAULT VALUE
        };
        let columns =
            [column("Variable_name", "VARIABLE_NAME", 64), column("Value", "VARIABLE_VALUE", 4096)];
        self.answer_row(&columns, &[asked.name().as_bytes(), value.as_bytes()]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_status_of_the_connections_own_variables_is_recognised() {
        let cases = [
            ("SHOW STATUS LIKE 'Ssl_cipher'", Some(ConnectionStatus::Cipher)),
            ("show session status like 'ssl_cipher';", Some(ConnectionStatus::Cipher)),
            ("SHOW LOCAL STATUS LIKE \"Ssl_version\"", Some(ConnectionStatus::Version)),
            ("  SHOW   STATUS\tLIKE 'SSL_VERSION'  ", Some(ConnectionStatus::Version)),
            ("SHOW GLOBAL STATUS LIKE 'Ssl_cipher'", None),
            ("SHOW STATUS LIKE 'Ssl_version%'", Some(ConnectionStatus::Version)),
            ("SHOW STATUS LIKE 'ssl\\_cipher'", Some(ConnectionStatus::Cipher)),
            ("SHOW STATUS LIKE 'Ssl_cipher%'", None),
            ("SHOW STATUS LIKE '%cipher'", None),
            ("SHOW STATUS LIKE 'Ssl_v%'", None),
            ("SHOW STATUS LIKE 'Ssl_ver'", None),
            ("SHOW STATUS LIKE 'Ssl_verify%'", None),
            ("SHOW STATUS LIKE 'Ssl_cipher_list'", None),
            ("SHOW STATUS LIKE 'Ssl%'", None),
            ("SHOW STATUS WHERE Variable_name = 'Ssl_cipher'", None),
            ("SHOW STATUS", None),
            ("SHOW STATUS LIKE 'Ssl_cipher' OR 1", None),
            (
                "SHOW /* mine */ STATUS LIKE 'Ssl_cipher' -- is it on?",
                Some(ConnectionStatus::Cipher),
            ),
            ("SHOW STATUS LIKE 'Ssl_cipher'; SELECT 1", None),
            ("SELECT 'Ssl_cipher'", None),
            ("SHOW SESSION STATUS LIKE 'Compression'", Some(ConnectionStatus::Compression)),
            ("show status like 'compression';", Some(ConnectionStatus::Compression)),
            ("SHOW STATUS LIKE 'Compression%'", None),
            ("SHOW STATUS LIKE 'Compression_level'", None),
            ("SHOW GLOBAL STATUS LIKE 'Compression'", None),
            ("SHOW STATUS LIKE 'Compress'", None),
        ];
        for (sql, expected) in cases {
            assert_eq!(parse_show_connection_status(sql, Backslashes::Escape), expected, "{sql}");
        }
    }

    #[test]
    fn columns_are_as_long_as_their_character_set_makes_them() {
        assert_eq!(max_bytes_per_char(45), 4); // utf8mb4_general_ci
        assert_eq!(max_bytes_per_char(224), 4); // utf8mb4_unicode_ci
        assert_eq!(max_bytes_per_char(33), 3); // utf8mb3_general_ci
        assert_eq!(max_bytes_per_char(8), 1); // latin1_swedish_ci
        assert_eq!(max_bytes_per_char(63), 1); // binary
        assert_eq!(max_bytes_per_char(28), 2); // gbk_chinese_ci
    }
}
