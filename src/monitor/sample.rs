//! What one probe learned, and the pure translation from the values a
//! server returns (any of which may be NULL, missing or odd) into it.
//!
//! `probe.rs` runs the statements built here and hands the rows back here;
//! nothing in this file does I/O, so every server quirk is unit-tested.

use super::types::Flavor;
use mysql_async::Value;
use std::time::SystemTime;

/// One successful probe of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSample {
    /// `@@version`.
    pub server_version: String,
    pub flavor: Flavor,
    /// Refuses writes: `read_only`, `super_read_only` or `innodb_read_only`.
    pub read_only: Option<bool>,
    /// MariaDB `@@global.gtid_binlog_pos`.
    pub gtid_binlog_pos: Option<String>,
    /// MariaDB `@@global.gtid_slave_pos` (what the SQL thread applied).
    pub gtid_slave_pos: Option<String>,
    /// MySQL `@@global.gtid_executed`.
    pub gtid_executed: Option<String>,
    /// None when the server is not a replica or the status was unreadable.
    pub replication: Option<ReplicationStatus>,
    /// `max(ts)` of the heartbeat table, in microseconds since the epoch.
    pub heartbeat_micros: Option<i64>,
    /// When the probe's statements had run (the "now" of the heartbeat).
    pub sampled_at: SystemTime,
    /// When the probe's first statement (the GTID positions) was sent.
    pub started_at: SystemTime,
}

impl ProbeSample {
    /// The GTID position that stands for this server in the given role:
    /// MariaDB's binlog position for a primary and applied position for a
    /// replica; MySQL's `gtid_executed` for either.
    pub fn gtid_position(&self, as_primary: bool) -> Option<&str> {
        match (self.flavor, as_primary) {
            (Flavor::MariaDb, true) => self.gtid_binlog_pos.as_deref(),
            (Flavor::MariaDb, false) => self.gtid_slave_pos.as_deref(),
            (Flavor::MySql, _) => self.gtid_executed.as_deref(),
        }
    }
}

/// `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`, reduced to what matters.
/// With several channels (MySQL multi-source), the worst of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    pub io_running: Option<bool>,
    pub sql_running: Option<bool>,
    /// None when the server printed NULL (SQL thread stopped, or IO thread
    /// stopped with the relay log consumed).
    pub seconds_behind: Option<u64>,
    pub last_sql_error: Option<String>,
    pub last_io_error: Option<String>,
}

/// Which variables statement a connection uses. A server that rejects the
/// full one (an unknown variable on an old or unusual server) gets the
/// basic one from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariablesQuery {
    Full,
    Basic,
}

/// The server family of a `@@version` string.
pub fn flavor_of(version: &str) -> Flavor {
    if version.to_ascii_lowercase().contains("mariadb") { Flavor::MariaDb } else { Flavor::MySql }
}

/// The leading `major.minor.patch` of a version string (`8.0.36-log`,
/// `5.5.5-10.11.6-MariaDB` gives 5.5.5: use [`flavor_of`] first). Missing
/// parts are 0; None when it does not start with a number.
pub fn parse_version(version: &str) -> Option<(u16, u16, u16)> {
    let mut numbers =
        version.trim().split(|c: char| !c.is_ascii_digit()).map(|part| part.parse::<u16>().ok());
    let major = numbers.next().flatten()?;
    let minor = numbers.next().flatten().unwrap_or(0);
    let patch = numbers.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The variables statement for a flavor. Column order is what
/// [`parse_variables`] expects.
pub fn variables_statement(flavor: Flavor, query: VariablesQuery) -> &'static str {
    match (flavor, query) {
        (Flavor::MariaDb, VariablesQuery::Full) => {
            "SELECT @@version, @@read_only, @@innodb_read_only, \
             @@global.gtid_binlog_pos, @@global.gtid_slave_pos"
        }
        (Flavor::MySql, VariablesQuery::Full) => {
            "SELECT @@version, @@read_only, @@innodb_read_only, \
             @@super_read_only, @@global.gtid_executed"
        }
        (_, VariablesQuery::Basic) => "SELECT @@version, @@read_only",
    }
}

/// The replication status statement: `SHOW REPLICA STATUS` on MySQL
/// 8.0.22+ (where `SHOW SLAVE STATUS` is deprecated, and gone in 8.4),
/// `SHOW SLAVE STATUS` everywhere else.
pub fn replication_statement(flavor: Flavor, version: &str) -> &'static str {
    match (flavor, parse_version(version)) {
        (Flavor::MySql, Some(v)) if v >= (8, 0, 22) => "SHOW REPLICA STATUS",
        _ => "SHOW SLAVE STATUS",
    }
}

/// `SELECT UNIX_TIMESTAMP(MAX(ts)) FROM `db`.`table``, or None when the
/// name is not `db.table` made of plain identifier characters (it goes into
/// SQL text). The session's time zone must be UTC.
pub fn heartbeat_statement(table: &str) -> Option<String> {
    let (db, name) = table.trim().split_once('.')?;
    let plain = |ident: &str| {
        !ident.is_empty()
            && ident.len() <= 64
            && ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    (plain(db) && plain(name))
        .then(|| format!("SELECT UNIX_TIMESTAMP(MAX(ts)) FROM `{db}`.`{name}`"))
}

/// The variables of one probe, from the row of [`variables_statement`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    pub version: Option<String>,
    pub read_only: Option<bool>,
    pub gtid_binlog_pos: Option<String>,
    pub gtid_slave_pos: Option<String>,
    pub gtid_executed: Option<String>,
}

/// Reads the row of [`variables_statement`]; missing or NULL columns give
/// None. `read_only` is true if any of the read-only switches is on.
pub fn parse_variables(flavor: Flavor, query: VariablesQuery, row: &[Value]) -> Variables {
    let text = |i: usize| row.get(i).and_then(as_text);
    let flag = |i: usize| row.get(i).and_then(as_bool);
    let read_only_flags = match query {
        VariablesQuery::Full => vec![flag(1), flag(2), flag(3).filter(|_| flavor == Flavor::MySql)],
        VariablesQuery::Basic => vec![flag(1)],
    };
    let read_only =
        if read_only_flags.contains(&Some(true)) { Some(true) } else { read_only_flags[0] };
    let mut variables = Variables { version: text(0), read_only, ..Variables::default() };
    if query == VariablesQuery::Full {
        match flavor {
            Flavor::MariaDb => {
                variables.gtid_binlog_pos = text(3);
                variables.gtid_slave_pos = text(4);
            }
            Flavor::MySql => variables.gtid_executed = text(4),
        }
    }
    variables
}

/// Reads `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` rows, each a list of
/// (column name, value). None for no rows (not a replica). Both the old
/// (`Slave_`, `Master`) and new (`Replica_`, `Source`) column names work.
pub fn parse_replication(rows: &[Vec<(String, Value)>]) -> Option<ReplicationStatus> {
    let channels: Vec<ReplicationStatus> = rows.iter().map(|row| parse_channel(row)).collect();
    let mut worst = channels.first()?.clone();
    for channel in &channels[1..] {
        worst.io_running = all_true(worst.io_running, channel.io_running);
        worst.sql_running = all_true(worst.sql_running, channel.sql_running);
        worst.seconds_behind = match (worst.seconds_behind, channel.seconds_behind) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        worst.last_sql_error = worst.last_sql_error.or(channel.last_sql_error.clone());
        worst.last_io_error = worst.last_io_error.or(channel.last_io_error.clone());
    }
    Some(worst)
}

fn all_true(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn parse_channel(row: &[(String, Value)]) -> ReplicationStatus {
    let column = |names: &[&str]| {
        row.iter()
            .find(|(name, _)| names.iter().any(|want| name.eq_ignore_ascii_case(want)))
            .map(|(_, value)| value)
    };
    // Only "Yes" is running: "No", "Connecting" and "Preparing" are not.
    let running = |names: &[&str]| {
        column(names).and_then(as_text).map(|text| text.trim().eq_ignore_ascii_case("yes"))
    };
    let error = |names: &[&str]| {
        column(names)
            .and_then(as_text)
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    ReplicationStatus {
        io_running: running(&["Slave_IO_Running", "Replica_IO_Running"]),
        sql_running: running(&["Slave_SQL_Running", "Replica_SQL_Running"]),
        seconds_behind: column(&["Seconds_Behind_Master", "Seconds_Behind_Source"])
            .and_then(as_u64),
        last_sql_error: error(&["Last_SQL_Error"]),
        last_io_error: error(&["Last_IO_Error"]),
    }
}

/// `UNIX_TIMESTAMP(...)` as microseconds: text like `1700000000.123456`
/// (or an integer). None for NULL, negative or unreadable values.
pub fn parse_unix_micros(value: &Value) -> Option<i64> {
    match value {
        Value::Int(seconds) if *seconds >= 0 => seconds.checked_mul(1_000_000),
        Value::UInt(seconds) => i64::try_from(*seconds).ok()?.checked_mul(1_000_000),
        Value::Double(seconds) if seconds.is_finite() && *seconds >= 0.0 => {
            Some((seconds * 1e6) as i64)
        }
        Value::Bytes(_) => {
            let text = as_text(value)?;
            let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
            if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let mut micros: String = fraction.chars().take(6).collect();
            while micros.len() < 6 {
                micros.push('0');
            }
            whole
                .parse::<i64>()
                .ok()?
                .checked_mul(1_000_000)?
                .checked_add(micros.parse::<i64>().ok()?)
        }
        _ => None,
    }
}

/// A value as text; None for NULL and for temporal values.
pub fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(n) => Some(n.to_string()),
        Value::Double(n) => Some(n.to_string()),
        Value::NULL | Value::Date(..) | Value::Time(..) => None,
    }
}

/// A switch: 1/0, ON/OFF, YES/NO, TRUE/FALSE; None for anything else.
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Int(n) => Some(*n != 0),
        Value::UInt(n) => Some(*n != 0),
        _ => match as_text(value)?.trim().to_ascii_uppercase().as_str() {
            "1" | "ON" | "YES" | "TRUE" => Some(true),
            "0" | "OFF" | "NO" | "FALSE" => Some(false),
            _ => None,
        },
    }
}

/// A non-negative integer; None for NULL, negatives and anything else.
pub fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::UInt(n) => Some(*n),
        _ => as_text(value)?.trim().parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    fn status_row(columns: &[(&str, Value)]) -> Vec<(String, Value)> {
        columns.iter().map(|(name, value)| (name.to_string(), value.clone())).collect()
    }

    #[test]
    fn flavor_is_mariadb_when_version_says_so() {
        assert_eq!(flavor_of("10.11.19-MariaDB-0+deb12u1-log"), Flavor::MariaDb);
        assert_eq!(flavor_of("5.5.5-10.6.1-mariadb"), Flavor::MariaDb);
        assert_eq!(flavor_of("8.0.36"), Flavor::MySql);
        assert_eq!(flavor_of(""), Flavor::MySql);
    }

    #[test]
    fn version_parse_tolerates_suffixes_and_garbage() {
        assert_eq!(parse_version("8.0.36-0ubuntu0.22.04.1"), Some((8, 0, 36)));
        assert_eq!(parse_version("8.4"), Some((8, 4, 0)));
        assert_eq!(parse_version("9"), Some((9, 0, 0)));
        assert_eq!(parse_version("banana"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("99999.1.1"), None);
    }

    #[test]
    fn mysql_8_0_22_and_later_use_show_replica_status() {
        assert_eq!(replication_statement(Flavor::MySql, "8.0.22"), "SHOW REPLICA STATUS");
        assert_eq!(replication_statement(Flavor::MySql, "8.4.0"), "SHOW REPLICA STATUS");
        assert_eq!(replication_statement(Flavor::MySql, "8.0.21"), "SHOW SLAVE STATUS");
        assert_eq!(replication_statement(Flavor::MySql, "weird"), "SHOW SLAVE STATUS");
        assert_eq!(replication_statement(Flavor::MariaDb, "11.4.2-MariaDB"), "SHOW SLAVE STATUS");
    }

    #[test]
    fn heartbeat_statement_quotes_plain_names_and_rejects_others() {
        assert_eq!(
            heartbeat_statement("percona.heartbeat").as_deref(),
            Some("SELECT UNIX_TIMESTAMP(MAX(ts)) FROM `percona`.`heartbeat`")
        );
        for bad in ["heartbeat", "a.b.c", "a.`b`", "a.b; DROP TABLE x", ".b", "a."] {
            assert_eq!(heartbeat_statement(bad), None, "{bad}");
        }
    }

    #[test]
    fn mariadb_variables_parse() {
        let row = [
            bytes("10.11.19-MariaDB-log"),
            bytes("1"),
            bytes("0"),
            bytes("0-1-501"),
            bytes("0-1-500"),
        ];
        let variables = parse_variables(Flavor::MariaDb, VariablesQuery::Full, &row);
        assert_eq!(variables.version.as_deref(), Some("10.11.19-MariaDB-log"));
        assert_eq!(variables.read_only, Some(true));
        assert_eq!(variables.gtid_binlog_pos.as_deref(), Some("0-1-501"));
        assert_eq!(variables.gtid_slave_pos.as_deref(), Some("0-1-500"));
        assert_eq!(variables.gtid_executed, None);
    }

    #[test]
    fn innodb_read_only_makes_server_read_only() {
        let row = [bytes("10.11"), bytes("0"), bytes("1"), bytes(""), bytes("")];
        let variables = parse_variables(Flavor::MariaDb, VariablesQuery::Full, &row);
        assert_eq!(variables.read_only, Some(true));
    }

    #[test]
    fn mysql_super_read_only_makes_server_read_only() {
        let row = [bytes("8.0.36"), Value::Int(0), Value::Int(0), Value::Int(1), bytes("uuid:1-5")];
        let variables = parse_variables(Flavor::MySql, VariablesQuery::Full, &row);
        assert_eq!(variables.read_only, Some(true));
        assert_eq!(variables.gtid_executed.as_deref(), Some("uuid:1-5"));
    }

    #[test]
    fn variables_with_nulls_and_missing_columns_are_unknown() {
        let row = [Value::NULL, Value::NULL];
        let variables = parse_variables(Flavor::MariaDb, VariablesQuery::Full, &row);
        assert_eq!(variables, Variables::default());
        let variables = parse_variables(Flavor::MySql, VariablesQuery::Basic, &[]);
        assert_eq!(variables, Variables::default());
    }

    #[test]
    fn writable_server_reads_as_not_read_only() {
        let row = [bytes("10.11"), bytes("OFF"), Value::NULL, Value::NULL, Value::NULL];
        let variables = parse_variables(Flavor::MariaDb, VariablesQuery::Full, &row);
        assert_eq!(variables.read_only, Some(false));
    }

    #[test]
    fn slave_status_parses_running_lag_and_errors() {
        let row = status_row(&[
            ("Slave_IO_Running", bytes("Yes")),
            ("Slave_SQL_Running", bytes("No")),
            ("Seconds_Behind_Master", Value::NULL),
            ("Last_SQL_Error", bytes("Duplicate entry")),
            ("Last_IO_Error", bytes("")),
        ]);
        let status = parse_replication(&[row]).unwrap();
        assert_eq!(status.io_running, Some(true));
        assert_eq!(status.sql_running, Some(false));
        assert_eq!(status.seconds_behind, None);
        assert_eq!(status.last_sql_error.as_deref(), Some("Duplicate entry"));
        assert_eq!(status.last_io_error, None);
    }

    #[test]
    fn replica_status_uses_new_column_names() {
        let row = status_row(&[
            ("Replica_IO_Running", bytes("Connecting")),
            ("Replica_SQL_Running", bytes("Yes")),
            ("Seconds_Behind_Source", bytes("7")),
        ]);
        let status = parse_replication(&[row]).unwrap();
        assert_eq!(status.io_running, Some(false));
        assert_eq!(status.sql_running, Some(true));
        assert_eq!(status.seconds_behind, Some(7));
    }

    #[test]
    fn no_slave_status_rows_means_not_a_replica() {
        assert_eq!(parse_replication(&[]), None);
    }

    #[test]
    fn slave_status_missing_columns_are_unknown() {
        let status = parse_replication(&[status_row(&[("Other", bytes("x"))])]).unwrap();
        assert_eq!(status, ReplicationStatus::default());
    }

    #[test]
    fn multi_channel_status_takes_the_worst_channel() {
        let a = status_row(&[
            ("Replica_SQL_Running", bytes("Yes")),
            ("Seconds_Behind_Source", bytes("3")),
        ]);
        let b = status_row(&[
            ("Replica_SQL_Running", bytes("No")),
            ("Seconds_Behind_Source", bytes("9")),
        ]);
        let status = parse_replication(&[a, b]).unwrap();
        assert_eq!(status.sql_running, Some(false));
        assert_eq!(status.seconds_behind, Some(9));
    }

    #[test]
    fn unix_timestamp_text_parses_to_micros() {
        assert_eq!(parse_unix_micros(&bytes("1700000000.123456")), Some(1_700_000_000_123_456));
        assert_eq!(parse_unix_micros(&bytes("1700000000.5")), Some(1_700_000_000_500_000));
        assert_eq!(parse_unix_micros(&bytes("1700000000")), Some(1_700_000_000_000_000));
        assert_eq!(parse_unix_micros(&Value::Int(2)), Some(2_000_000));
    }

    #[test]
    fn unix_timestamp_garbage_is_none() {
        for value in [
            Value::NULL,
            bytes(""),
            bytes("-5.0"),
            bytes("1.2.3"),
            bytes("abc"),
            bytes("99999999999999999999"),
            Value::Int(-1),
            Value::Double(f64::NAN),
        ] {
            assert_eq!(parse_unix_micros(&value), None, "{value:?}");
        }
    }

    #[test]
    fn odd_values_in_any_column_never_panic() {
        let odd = [
            Value::NULL,
            bytes(""),
            bytes("\u{0}\u{ffff}"),
            Value::Bytes(vec![0xff; 3]),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(f32::NAN),
            Value::Double(f64::INFINITY),
            Value::Double(1e300),
            Value::Date(0, 0, 0, 0, 0, 0, 0),
            Value::Time(true, u32::MAX, 0, 0, 0, 0),
        ];
        for value in &odd {
            for width in 0..6 {
                let row = vec![value.clone(); width];
                for flavor in [Flavor::MariaDb, Flavor::MySql] {
                    for query in [VariablesQuery::Full, VariablesQuery::Basic] {
                        let _ = parse_variables(flavor, query, &row);
                    }
                }
            }
            let status = status_row(&[
                ("Slave_IO_Running", value.clone()),
                ("Slave_SQL_Running", value.clone()),
                ("Seconds_Behind_Master", value.clone()),
                ("Last_SQL_Error", value.clone()),
            ]);
            let _ = parse_replication(&[status.clone(), status]);
            let _ = parse_unix_micros(value);
            if let Some(text) = as_text(value) {
                let _ = (flavor_of(&text), parse_version(&text));
                let _ = replication_statement(Flavor::MySql, &text);
            }
        }
    }

    #[test]
    fn switches_and_numbers_parse_leniently() {
        assert_eq!(as_bool(&bytes("ON")), Some(true));
        assert_eq!(as_bool(&bytes("off")), Some(false));
        assert_eq!(as_bool(&bytes("maybe")), None);
        assert_eq!(as_bool(&Value::NULL), None);
        assert_eq!(as_u64(&bytes(" 12 ")), Some(12));
        assert_eq!(as_u64(&bytes("-1")), None);
        assert_eq!(as_u64(&Value::Int(-1)), None);
        assert_eq!(as_text(&Value::Bytes(vec![0xff, b'a'])).as_deref(), Some("\u{fffd}a"));
    }
}
