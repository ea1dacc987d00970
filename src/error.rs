//! The one place where a failure becomes the client's reply: server errors
//! keep their code, SQLSTATE and message; the proxy's own failures get the
//! codes MySQL clients already know for them.

use crate::backend::BackendError;

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
            code: 2003,
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
            code: 2026,
            state: "HY000".into(),
            message: format!("SSL connection error: rwsplit backend {name}: {e}"),
        },
        BackendError::Frame(_) | BackendError::Protocol(_) => ClientReply {
            code: 2013,
            state: "HY000".into(),
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
    fn unreachable_backend_is_error_2003_naming_it() {
        let e = BackendError::ConnectTimeout("127.0.0.1:3306".into());
        let r = backend_reply(&e, "primary", "127.0.0.1:3306");
        assert_eq!(r.code, 2003);
        assert!(r.message.contains("primary"));
    }
}
