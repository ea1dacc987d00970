//! The probe of one backend over its own `mysql_async` connection, kept
//! open between probes and opened again after any failure. Connecting and
//! each whole probe are bounded by the settings' timeouts. The statements
//! and the reading of their results are in `sample.rs`.

use super::sample::{
    self, ProbeSample, VariablesQuery, flavor_of, heartbeat_statement, parse_replication,
    parse_unix_micros, parse_variables, replication_statement, variables_statement,
};
use super::types::{Flavor, MonitorSettings};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, SslOpts, Value};
use std::time::{Duration, SystemTime};

/// MySQL/MariaDB `ER_UNKNOWN_SYSTEM_VARIABLE`.
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

/// Server errors that refuse a login for its user, password or host
/// (ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_HOST_NOT_PRIVILEGED,
/// ER_NOT_SUPPORTED_AUTH_MODE, ER_PLUGIN_IS_NOT_LOADED,
/// ER_ACCESS_DENIED_NO_PASSWORD): the server is up, the monitor is
/// misconfigured.
const LOGIN_REFUSED: [u16; 6] = [1044, 1045, 1130, 1251, 1524, 1698];

/// Why a probe failed (the backend counts one failure).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid backend address `{0}` (want host:port)")]
    Address(String),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(#[source] mysql_async::Error),
    #[error(
        "the monitor's login was refused: {0} (check [monitor] user and password, and that \
         the user may connect to this server from the proxy's host)"
    )]
    Login(#[source] mysql_async::Error),
    #[error("probe timed out after {0:?}")]
    QueryTimeout(Duration),
    #[error("probe failed: {0}")]
    Query(#[source] mysql_async::Error),
}

/// Probes one backend; owns its connection.
pub struct Prober {
    address: String,
    opts: Option<Opts>,
    connect_timeout: Duration,
    query_timeout: Duration,
    heartbeat: Option<String>,
    connection: Option<Connection>,
    /// Warnings about optional parts (replication status, heartbeat) are
    /// logged once per connection, not once per probe.
    warned: Warned,
}

/// An open connection and what is known of its server.
struct Connection {
    conn: Conn,
    version: String,
    flavor: Flavor,
    variables: VariablesQuery,
}

#[derive(Default)]
struct Warned {
    replication: bool,
    heartbeat: bool,
}

impl Prober {
    /// A prober for `address` (`host:port`); connects on the first probe.
    /// An invalid address makes every probe fail with
    /// [`ProbeError::Address`].
    pub fn new(address: &str, settings: &MonitorSettings) -> Prober {
        let heartbeat = settings.heartbeat_table.as_deref().and_then(|table| {
            let statement = heartbeat_statement(table);
            if statement.is_none() {
                tracing::warn!(table, "heartbeat table is not db.table: not read");
            }
            statement
        });
        let opts = crate::net::split_address(address).map(|(host, port)| {
            OptsBuilder::default()
                .ip_or_hostname(host)
                .tcp_port(port)
                .user(Some(settings.user.clone()))
                .pass(Some(settings.password.clone()))
                // No socket lookup, no settings query: connect is one
                // handshake and the init below.
                .prefer_socket(false)
                .max_allowed_packet(Some(16 << 20))
                .wait_timeout(Some(28_800))
                .stmt_cache_size(0)
                .tcp_nodelay(true)
                // Heartbeat timestamps are UTC (pt-heartbeat --utc).
                .init(vec!["SET time_zone = '+00:00'"])
                .ssl_opts(settings.tls.as_ref().map(ssl_opts))
                .into()
        });
        Prober {
            address: address.to_string(),
            opts,
            connect_timeout: settings.connect_timeout,
            query_timeout: settings.query_timeout,
            heartbeat,
            connection: None,
            warned: Warned::default(),
        }
    }

    /// One probe: connects if needed, then reads the variables, the
    /// replication status and the heartbeat. Any failure drops the
    /// connection, so the next probe starts afresh.
    pub async fn probe(&mut self) -> Result<ProbeSample, ProbeError> {
        let result = self.probe_inner().await;
        if result.is_err()
            && let Some(connection) = self.connection.take()
        {
            // In the background: a hung server must not delay the
            // report of the failure.
            tokio::spawn(disconnect(connection.conn, self.query_timeout));
        }
        result
    }

    /// Closes the connection (politely, within the query timeout).
    pub async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            disconnect(connection.conn, self.query_timeout).await;
        }
    }

    async fn probe_inner(&mut self) -> Result<ProbeSample, ProbeError> {
        let connection = match self.connection.take() {
            Some(connection) => self.connection.insert(connection),
            None => {
                let connection = self.open().await?;
                self.warned = Warned::default();
                self.connection.insert(connection)
            }
        };
        let timeout = self.query_timeout;
        let queries = run_queries(connection, self.heartbeat.as_deref(), &mut self.warned);
        match tokio::time::timeout(timeout, queries).await {
            Ok(result) => result.map_err(ProbeError::Query),
            Err(_) => Err(ProbeError::QueryTimeout(timeout)),
        }
    }

    async fn open(&self) -> Result<Connection, ProbeError> {
        let opts = self.opts.clone().ok_or_else(|| ProbeError::Address(self.address.clone()))?;
        let connect = async {
            let mut conn = Conn::new(opts).await?;
            let version = conn
                .query_first::<Row, _>("SELECT @@version")
                .await?
                .and_then(first_value)
                .as_ref()
                .and_then(sample::as_text)
                .unwrap_or_default();
            Ok::<_, mysql_async::Error>((conn, version))
        };
        let (conn, version) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| ProbeError::ConnectTimeout(self.connect_timeout))?
            .map_err(|e| match &e {
                mysql_async::Error::Server(refused) if LOGIN_REFUSED.contains(&refused.code) => {
                    ProbeError::Login(e)
                }
                _ => ProbeError::Connect(e),
            })?;
        tracing::debug!(address = %self.address, %version, "monitor connected");
        Ok(Connection {
            conn,
            flavor: flavor_of(&version),
            version,
            variables: VariablesQuery::Full,
        })
    }
}

/// The TLS options of a probe connection. The CA is the only root, as for
/// the proxy's own backend connections; without `verify`, any certificate
/// for any name is accepted (encrypted, not authenticated).
fn ssl_opts(tls: &super::ProbeTls) -> SslOpts {
    // mysql_async builds its TLS configuration from the process's default
    // crypto provider: the same one the proxy uses (a second install is a
    // no-op error).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = SslOpts::default()
        // (Unverified, the built-in roots only keep mysql_async's verifier
        // builder from refusing an empty set.)
        .with_disable_built_in_roots(tls.verify)
        .with_root_certs(tls.ca.iter().map(|ca| ca.clone().into()).collect())
        .with_danger_accept_invalid_certs(!tls.verify)
        .with_danger_skip_domain_validation(!tls.verify);
    match &tls.server_name {
        Some(name) => opts.with_danger_tls_hostname_override(Some(name.clone())),
        None => opts,
    }
}

async fn disconnect(conn: Conn, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, conn.disconnect()).await;
}

async fn run_queries(
    connection: &mut Connection,
    heartbeat: Option<&str>,
    warned: &mut Warned,
) -> Result<ProbeSample, mysql_async::Error> {
    let started_at = SystemTime::now();
    let variables = read_variables(connection).await?;
    if let Some(version) = &variables.version {
        connection.version.clone_from(version);
        connection.flavor = flavor_of(version);
    }
    let replication = read_replication(connection, warned).await?;
    let heartbeat_micros = match heartbeat {
        Some(statement) => read_heartbeat(connection, statement, warned).await?,
        None => None,
    };
    Ok(ProbeSample {
        server_version: connection.version.clone(),
        flavor: connection.flavor,
        read_only: variables.read_only,
        gtid_binlog_pos: variables.gtid_binlog_pos,
        gtid_slave_pos: variables.gtid_slave_pos,
        gtid_executed: variables.gtid_executed,
        replication,
        heartbeat_micros,
        sampled_at: SystemTime::now(),
        started_at,
    })
}

/// The variables row; falls back to the basic statement for good when the
/// server does not know one of the full statement's variables.
async fn read_variables(
    connection: &mut Connection,
) -> Result<sample::Variables, mysql_async::Error> {
    loop {
        let statement = variables_statement(connection.flavor, connection.variables);
        match connection.conn.query_first::<Row, _>(statement).await {
            Ok(row) => {
                let values = row.map(row_values).unwrap_or_default();
                return Ok(parse_variables(connection.flavor, connection.variables, &values));
            }
            Err(mysql_async::Error::Server(error))
                if error.code == ER_UNKNOWN_SYSTEM_VARIABLE
                    && connection.variables == VariablesQuery::Full =>
            {
                tracing::warn!(version = %connection.version, %error,
                    "server lacks a probed variable: no GTID or read-only detail from it");
                connection.variables = VariablesQuery::Basic;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Replication status; None (not a failure) when the server refuses the
/// statement, for example without the `SLAVE MONITOR` privilege.
async fn read_replication(
    connection: &mut Connection,
    warned: &mut Warned,
) -> Result<Option<sample::ReplicationStatus>, mysql_async::Error> {
    let statement = replication_statement(connection.flavor, &connection.version);
    match connection.conn.query::<Row, _>(statement).await {
        Ok(rows) => {
            let rows: Vec<Vec<(String, Value)>> = rows.into_iter().map(named_values).collect();
            Ok(parse_replication(&rows))
        }
        Err(mysql_async::Error::Server(error)) => {
            if !std::mem::replace(&mut warned.replication, true) {
                tracing::warn!(statement, %error, "replication status unreadable");
            }
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Heartbeat `max(ts)`; None (not a failure) when the table is missing,
/// empty or unreadable.
async fn read_heartbeat(
    connection: &mut Connection,
    statement: &str,
    warned: &mut Warned,
) -> Result<Option<i64>, mysql_async::Error> {
    match connection.conn.query_first::<Row, _>(statement).await {
        Ok(row) => Ok(row.and_then(first_value).as_ref().and_then(parse_unix_micros)),
        Err(mysql_async::Error::Server(error)) => {
            if !std::mem::replace(&mut warned.heartbeat, true) {
                tracing::warn!(statement, %error, "heartbeat table unreadable");
            }
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// A row's values; a value that is somehow absent reads as NULL.
fn row_values(row: Row) -> Vec<Value> {
    row.unwrap_raw().into_iter().map(|value| value.unwrap_or(Value::NULL)).collect()
}

fn first_value(row: Row) -> Option<Value> {
    row_values(row).into_iter().next()
}

fn named_values(row: Row) -> Vec<(String, Value)> {
    let names: Vec<String> =
        row.columns_ref().iter().map(|column| column.name_str().into_owned()).collect();
    names.into_iter().zip(row_values(row)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(crate::net::split_address("127.0.0.1:3307"), Some(("127.0.0.1".into(), 3307)));
        assert_eq!(crate::net::split_address("db.example"), Some(("db.example".into(), 3306)));
        assert_eq!(crate::net::split_address("[::1]:3308"), Some(("::1".into(), 3308)));
        assert_eq!(crate::net::split_address("[::1]"), Some(("::1".into(), 3306)));
        assert_eq!(crate::net::split_address("::1"), Some(("::1".into(), 3306)));
    }

    #[test]
    fn bad_addresses_are_rejected() {
        for bad in ["", ":3306", "host:", "host:99999", "host:x", "[::1", "[]:1", "[::1]x"] {
            assert_eq!(crate::net::split_address(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn invalid_address_fails_every_probe() {
        let mut prober = Prober::new("host:notaport", &MonitorSettings::default());
        assert!(matches!(prober.probe().await, Err(ProbeError::Address(_))));
    }
}
