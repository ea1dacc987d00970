//! The names the lexer knows when it sees `name(`: pure builtins, functions that need the
//! primary, functions that read the previous statement's results, and keywords that take
//! a parenthesis without being a call.
//!
//! Any other name followed by `(` is an unknown function (a UDF or stored function, which
//! may write) and sets `UNKNOWN_FUNC`.
//!
//! Decisions on the doubtful ones:
//! - **Need the primary** (`SIDE_EFFECT`): the user-lock functions (`GET_LOCK`,
//!   `RELEASE_LOCK`, `RELEASE_ALL_LOCKS`, `IS_FREE_LOCK`, `IS_USED_LOCK`: locks exist only
//!   on the server that took them, and the lock state is the primary's), the sequence
//!   functions (`NEXTVAL`, `SETVAL`, `LASTVAL`, and `NEXT/PREVIOUS VALUE FOR`, detected in
//!   the scanner: they write or read the session's sequence state), and the replication
//!   waits (`MASTER_GTID_WAIT`, `MASTER_POS_WAIT`, `SOURCE_POS_WAIT`,
//!   `WAIT_FOR_EXECUTED_GTID_SET`, `WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS`: a client that
//!   waits on a position means one particular server, which the proxy cannot know).
//! - **Pure** (fine on a replica): `SLEEP` and `BENCHMARK` (they burn time, not state),
//!   `UUID`, `UUID_SHORT` (unique per server id, and replicas have their own), `RAND`,
//!   `NOW`, `SYSDATE`, `CONNECTION_ID`.
//! - **Unknown on purpose**: `LOAD_FILE` (reads a file on whichever server runs it).

/// Builtins without side effects, plus the type names that appear as `CHAR(10)` in casts.
#[rustfmt::skip]
pub(super) const PURE: &[&str] = &[
    // aggregates and window functions
    "AVG", "BIT_AND", "BIT_OR", "BIT_XOR", "COUNT", "GROUP_CONCAT", "JSON_ARRAYAGG",
    "JSON_OBJECTAGG", "MAX", "MIN", "STD", "STDDEV", "STDDEV_POP", "STDDEV_SAMP", "SUM",
    "VAR_POP", "VAR_SAMP", "VARIANCE", "CUME_DIST", "DENSE_RANK", "FIRST_VALUE", "LAG",
    "LAST_VALUE", "LEAD", "NTH_VALUE", "NTILE", "PERCENT_RANK", "RANK", "ROW_NUMBER",
    "PERCENTILE_CONT", "PERCENTILE_DISC", "MEDIAN", "GROUPING",
    // control flow and comparison
    "IF", "IFNULL", "NULLIF", "COALESCE", "GREATEST", "LEAST", "ISNULL", "NVL", "NVL2",
    "DECODE", "DECODE_ORACLE", "INTERVAL", "STRCMP",
    // casts and type names
    "CAST", "CONVERT", "BINARY", "CHAR", "VARCHAR", "NCHAR", "NVARCHAR", "VARBINARY",
    "DECIMAL", "DEC", "NUMERIC", "FLOAT", "DOUBLE", "REAL", "INT", "INTEGER", "BIGINT",
    "SMALLINT", "TINYINT", "MEDIUMINT", "BIT", "DATETIME", "TIMESTAMP", "TIME", "DATE", "YEAR",
    "TEXT", "BLOB", "ENUM", "SIGNED", "UNSIGNED", "JSON",
    // strings
    "ASCII", "BIN", "BIT_LENGTH", "CHAR_LENGTH", "CHARACTER_LENGTH", "CHR", "CONCAT",
    "CONCAT_WS", "ELT", "EXPORT_SET", "FIELD", "FIND_IN_SET", "FORMAT", "FROM_BASE64", "HEX",
    "INSERT", "INSTR", "LCASE", "LEFT", "LENGTH", "LENGTHB", "LIKE", "LOCATE", "LOWER", "LPAD",
    "LTRIM", "MAKE_SET", "MATCH", "AGAINST", "MID", "OCT", "OCTET_LENGTH", "ORD", "POSITION",
    "QUOTE", "REGEXP_INSTR", "REGEXP_LIKE", "REGEXP_REPLACE", "REGEXP_SUBSTR", "REPEAT",
    "REPLACE", "REVERSE", "RIGHT", "RPAD", "RTRIM", "SOUNDEX", "SPACE", "SUBSTR", "SUBSTRING",
    "SUBSTRING_INDEX", "TO_BASE64", "TRIM", "UCASE", "UNHEX", "UPPER", "WEIGHT_STRING",
    "SFORMAT", "NATURAL_SORT_KEY", "CHARSET", "COERCIBILITY", "COLLATION", "TO_CHAR",
    // numbers
    "ABS", "ACOS", "ASIN", "ATAN", "ATAN2", "CEIL", "CEILING", "CONV", "COS", "COT", "CRC32",
    "DEGREES", "EXP", "FLOOR", "LN", "LOG", "LOG10", "LOG2", "MOD", "PI", "POW", "POWER",
    "RADIANS", "RAND", "ROUND", "SIGN", "SIN", "SQRT", "TAN", "TRUNCATE", "FORMAT_BYTES",
    "FORMAT_PICO_TIME",
    // dates and times
    "ADDDATE", "ADDTIME", "ADD_MONTHS", "CONVERT_TZ", "CURDATE", "CURRENT_DATE",
    "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURTIME", "DATE_ADD", "DATE_FORMAT", "DATE_SUB",
    "DATEDIFF", "DAY", "DAYNAME", "DAYOFMONTH", "DAYOFWEEK", "DAYOFYEAR", "EXTRACT",
    "FROM_DAYS", "FROM_UNIXTIME", "GET_FORMAT", "HOUR", "LAST_DAY", "LOCALTIME",
    "LOCALTIMESTAMP", "MAKEDATE", "MAKETIME", "MICROSECOND", "MINUTE", "MONTH", "MONTHNAME",
    "NOW", "PERIOD_ADD", "PERIOD_DIFF", "QUARTER", "SEC_TO_TIME", "SECOND", "STR_TO_DATE",
    "SUBDATE", "SUBTIME", "SYSDATE", "TIME_FORMAT", "TIME_TO_SEC", "TIMEDIFF", "TIMESTAMPADD",
    "TIMESTAMPDIFF", "TO_DAYS", "TO_SECONDS", "UNIX_TIMESTAMP", "UTC_DATE", "UTC_TIME",
    "UTC_TIMESTAMP", "WEEK", "WEEKDAY", "WEEKOFYEAR", "YEARWEEK",
    // JSON
    "JSON_ARRAY", "JSON_ARRAY_APPEND", "JSON_ARRAY_INSERT", "JSON_CONTAINS",
    "JSON_CONTAINS_PATH", "JSON_DEPTH", "JSON_EXTRACT", "JSON_INSERT", "JSON_KEYS",
    "JSON_LENGTH", "JSON_MERGE", "JSON_MERGE_PATCH", "JSON_MERGE_PRESERVE", "JSON_OBJECT",
    "JSON_OVERLAPS", "JSON_PRETTY", "JSON_QUOTE", "JSON_REMOVE", "JSON_REPLACE",
    "JSON_SCHEMA_VALID", "JSON_SCHEMA_VALIDATION_REPORT", "JSON_SEARCH", "JSON_SET",
    "JSON_STORAGE_FREE", "JSON_STORAGE_SIZE", "JSON_TABLE", "JSON_TYPE", "JSON_UNQUOTE",
    "JSON_VALID", "JSON_VALUE", "JSON_QUERY", "JSON_EXISTS", "JSON_COMPACT", "JSON_DETAILED",
    "JSON_LOOSE", "JSON_NORMALIZE", "JSON_EQUALS", "JSON_ARRAY_INTERSECT",
    "JSON_OBJECT_FILTER_KEYS", "JSON_OBJECT_TO_ARRAY", "MEMBER",
    // hashing, encryption, compression
    "AES_DECRYPT", "AES_ENCRYPT", "COMPRESS", "MD5", "RANDOM_BYTES", "SHA", "SHA1", "SHA2",
    "UNCOMPRESS", "UNCOMPRESSED_LENGTH", "STATEMENT_DIGEST", "STATEMENT_DIGEST_TEXT",
    "VALIDATE_PASSWORD_STRENGTH", "DES_DECRYPT", "DES_ENCRYPT", "ENCRYPT", "OLD_PASSWORD",
    "KDF",
    // information
    "BENCHMARK", "CONNECTION_ID", "CURRENT_ROLE", "CURRENT_USER", "DATABASE", "ICU_VERSION",
    "ROLES_GRAPHML", "SCHEMA", "SESSION_USER", "SYSTEM_USER", "USER", "VERSION",
    // miscellaneous
    "ANY_VALUE", "BIN_TO_UUID", "DEFAULT", "INET_ATON", "INET_NTOA", "INET6_ATON",
    "INET6_NTOA", "IS_IPV4", "IS_IPV4_COMPAT", "IS_IPV4_MAPPED", "IS_IPV6", "IS_UUID",
    "NAME_CONST", "SLEEP", "UUID", "UUID_SHORT", "UUID_TO_BIN", "VALUES", "GTID_SUBSET",
    "GTID_SUBTRACT", "SYS_GUID", "COLUMN_CHECK", "COLUMN_CREATE", "COLUMN_EXISTS",
    "COLUMN_GET", "COLUMN_JSON", "COLUMN_LIST", "COLUMN_ADD", "COLUMN_DELETE", "BIT_COUNT",
    "LAST_INSERT_GTID",
    // spatial
    "POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
    "GEOMETRYCOLLECTION", "ST_AREA", "ST_ASBINARY", "ST_ASGEOJSON", "ST_ASTEXT", "ST_ASWKB",
    "ST_ASWKT", "ST_BUFFER", "ST_CENTROID", "ST_CONTAINS", "ST_CROSSES", "ST_DIFFERENCE",
    "ST_DIMENSION", "ST_DISJOINT", "ST_DISTANCE", "ST_DISTANCE_SPHERE", "ST_ENDPOINT",
    "ST_ENVELOPE", "ST_EQUALS", "ST_GEOMFROMGEOJSON", "ST_GEOMFROMTEXT", "ST_GEOMFROMWKB",
    "ST_GEOMETRYTYPE", "ST_INTERSECTION", "ST_INTERSECTS", "ST_ISEMPTY", "ST_ISVALID",
    "ST_LATITUDE", "ST_LENGTH", "ST_LONGITUDE", "ST_NUMPOINTS", "ST_OVERLAPS", "ST_POINTN",
    "ST_POINTFROMTEXT", "ST_SRID", "ST_STARTPOINT", "ST_SYMDIFFERENCE", "ST_TOUCHES",
    "ST_UNION", "ST_WITHIN", "ST_X", "ST_Y", "MBRCONTAINS", "MBRINTERSECTS", "MBRWITHIN",
];

/// Builtins that need the primary (see the module docs for why each group).
#[rustfmt::skip]
pub(super) const SIDE_EFFECT: &[&str] = &[
    "GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS", "IS_FREE_LOCK", "IS_USED_LOCK", "NEXTVAL",
    "SETVAL", "LASTVAL", "MASTER_GTID_WAIT", "MASTER_POS_WAIT", "SOURCE_POS_WAIT",
    "WAIT_FOR_EXECUTED_GTID_SET", "WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
];

/// Builtins that read what the session's previous statement left behind: they must run on
/// the server that ran that statement.
pub(super) const LAST_STATEMENT: &[&str] = &["LAST_INSERT_ID", "ROW_COUNT", "FOUND_ROWS"];

/// Reserved words that may be followed by `(` without calling anything. Only reserved
/// words: a non-reserved one could name a UDF. (`COLUMNS` in JSON_TABLE and `ANY`/`SOME`
/// before a subquery are non-reserved and decided by their context in the scanner;
/// DDL and INSERT column lists are not checked at all.)
#[rustfmt::skip]
pub(super) const NOT_CALLS: &[&str] = &[
    "ALL", "AND", "AS", "BETWEEN", "BY", "CASE", "CROSS", "DISTINCT", "DISTINCTROW", "DIV",
    "ELSE", "EXCEPT", "EXISTS", "FOR", "FORCE", "FROM", "GROUP", "HAVING", "IGNORE", "IN",
    "INDEX", "INNER", "INTERSECT", "INTO", "IS", "JOIN", "KEY", "LATERAL", "NATURAL", "NOT",
    "OF", "ON", "OR", "ORDER", "OUTER", "OVER", "PARTITION", "RECURSIVE", "REGEXP", "RLIKE",
    "ROW", "SELECT", "SET", "STRAIGHT_JOIN", "TABLE", "THEN", "UNION", "USE", "USING", "WHEN",
    "WHERE", "WINDOW", "WITH", "XOR",
];
