//! The MySQL client/server protocol as the proxy needs it: framing
//! (`packet`), the connection phase (`handshake`), password math (`auth`),
//! and the handful of packets the proxy decodes or builds (`messages`).
//! Result sets are never decoded here; see `relay` for how they stream.

pub mod auth;
pub mod handshake;
pub mod messages;
pub mod packet;
pub mod proxy_header;
pub mod session_state;

/// Command bytes (the first byte of a command packet).
pub mod command {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const REFRESH: u8 = 0x07;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0A;
    pub const PROCESS_KILL: u8 = 0x0C;
    pub const DEBUG: u8 = 0x0D;
    pub const PING: u8 = 0x0E;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1A;
    pub const SET_OPTION: u8 = 0x1B;
    pub const STMT_FETCH: u8 = 0x1C;
    pub const RESET_CONNECTION: u8 = 0x1F;
    /// MariaDB's COM_STMT_BULK_EXECUTE (with the STMT_BULK_OPERATIONS capability).
    pub const STMT_BULK_EXECUTE: u8 = 0xFA;
}

/// Status flag bits the proxy looks at.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;

    /// The bits that describe the session rather than one reply: what an
    /// OK the proxy writes itself may carry over from the last reply.
    pub const OF_SESSION: u16 = IN_TRANS | AUTOCOMMIT | NO_BACKSLASH_ESCAPES | IN_TRANS_READONLY;
}
