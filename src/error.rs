//! The one place where a failure becomes the client's reply: server errors
//! keep their code, SQLSTATE and message; the proxy's own failures get
//! server error codes, with the messages MySQL clients know for them.
//!
//! Never a client library's own codes (2000-2999, 5000-5999: "Can't connect"
//! 2003, "Lost connection" 2013): MariaDB Connector/C (3.3.9 and later,
//! under the mariadb CLI, Connector/Python, sysbench and most C-based
//! drivers) takes an error packet carrying one for a forgery and reports
//! ERROR 2027 "Received malformed packet" instead, message lost.

use crate::backend::BackendError;

/// ER_CONNECT_TO_FOREIGN_DATA_SOURCE: the server behind could not be
/// reached; the statement did not run.
pub const BACKEND_UNREACHABLE: u16 = 1429;
/// ER_NET_READ_ERROR (SQLSTATE 08S01, communication link failure): the
/// connection to the server behind broke; a statement sent may have run.
pub const BACKEND_LOST: u16 = 1158;

/// An error reply for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply {
    pub code: u16,
    pub state: String,
    pub message: String,
}

/// The reply for a backend that could not serve a command. The message
/// names the backend and never contains credentials.
pub fn backend_reply(e: &BackendError, name: &str, addr: &str) -> ClientReply {
    match e {
        BackendError::Server { code, state, message } => {
            ClientReply { code: *code, state: state.clone(), message: message.clone() }
        }
        BackendError::Connect { .. } | BackendError::ConnectTimeout(_) => ClientReply {
            code: BACKEND_UNREACHABLE,
            state: "HY000".into(),
            message: format!(
                "Can't connect to MySQL server on '{addr}' (rwsplit backend {name}: {e})"
            ),
        },
        BackendError::UnsupportedAuth(_) => ClientReply {
            code: 1045,
            state: "28000".into(),
            message: format!("rwsplit cannot log in to backend {name}: {e}"),
        },
        BackendError::AtCapacity(..) | BackendError::PoolTimeout { .. } => ClientReply {
            code: 1040,
            state: "08004".into(),
            message: format!("Too many connections (rwsplit: {e})"),
        },
        BackendError::Tls(_) => ClientReply {
            code: BACKEND_UNREACHABLE,
            state: "HY000".into(),
            message: format!("SSL connection error: rwsplit backend {name}: {e}"),
        },
        BackendError::Frame(_) | BackendError::Protocol(_) => ClientReply {
            code: BACKEND_LOST,
            state: "08S01".into(),
            message: format!(
                "Lost connection to MySQL server during query (rwsplit backend {name}: {e})"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_code_and_state() {
        let e = BackendError::Server {
            code: 1049,
            state: "42000".into(),
            message: "Unknown database 'nope'".into(),
        };
        let r = backend_reply(&e, "primary", "127.0.0.1:3306");
        assert_eq!(
            (r.code, r.state.as_str(), r.message.as_str()),
            (1049, "42000", "Unknown database 'nope'")
        );
    }

    #[test]
    fn unreachable_backend_is_a_server_error_naming_it() {
        let e = BackendError::ConnectTimeout("127.0.0.1:3306".into());
        let r = backend_reply(&e, "primary", "127.0.0.1:3306");
        assert_eq!(r.code, BACKEND_UNREACHABLE);
        assert!(r.message.starts_with("Can't connect to MySQL server on '127.0.0.1:3306'"));
        assert!(r.message.contains("primary"));
    }

    /// Codes a MariaDB client library rejects when a server sends them.
    fn client_library_code(code: u16) -> bool {
        (2000..3000).contains(&code) || (5000..6000).contains(&code)
    }

    #[test]
    fn no_failure_of_the_proxy_is_reported_with_a_client_library_code() {
        let failures = [
            BackendError::ConnectTimeout("127.0.0.1:3306".into()),
            BackendError::Tls("handshake".into()),
            BackendError::Protocol("connection closed".into()),
            BackendError::AtCapacity("primary".into(), 10),
            BackendError::UnsupportedAuth("parsec".into()),
        ];
        for e in &failures {
            let r = backend_reply(e, "primary", "127.0.0.1:3306");
            assert!(!client_library_code(r.code), "{e}: {}", r.code);
        }
    }
}
