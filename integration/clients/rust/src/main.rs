//! Rust's mysql_async and sqlx through rwsplit, checked against the same
//! statements straight on the primary.
//!
//! mysql_async runs with its defaults: connected over TCP to a loopback
//! address, it asks the server for `@@socket` and connects again through
//! that unix socket when one is named, so the proxy must not hand it a
//! server's socket. sqlx prepares every statement with arguments on the
//! server and reads rows in the binary protocol, on a pool of connections.
//!
//! Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450),
//! RWSPLIT_PRIMARY_PORT (3306). Each check prints PASS or FAIL; the exit
//! status is 1 when any failed. Tables carry a per-run suffix and are
//! dropped at the end.

use futures_util::TryStreamExt;
use mysql_async::prelude::*;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::{Column, Row, TypeInfo, ValueRef};

struct Checks {
    failed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("PASS {name}");
        } else {
            self.failed += 1;
            println!("FAIL {name}: {detail}");
        }
    }
}

fn env(name: &str, fallback: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| fallback.to_string())
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every row of `table` as mysql_async sees it, in the binary protocol
/// (prepared) and as text.
async fn async_rows(conn: &mut mysql_async::Conn, table: &str) -> Res<(Vec<String>, Vec<String>)> {
    let sql = format!("SELECT * FROM {table} WHERE id > ? ORDER BY id");
    let binary: Vec<mysql_async::Row> = conn.exec(sql, (0,)).await?;
    let text: Vec<mysql_async::Row> =
        conn.query(format!("SELECT * FROM {table} WHERE id > 0 ORDER BY id")).await?;
    let show = |rows: Vec<mysql_async::Row>| -> Vec<String> {
        rows.into_iter().map(|r| format!("{:?}", r.unwrap())).collect()
    };
    Ok((show(binary), show(text)))
}

/// Every row of `table` as sqlx decodes it (binary protocol).
async fn sqlx_rows(pool: &sqlx::MySqlPool, table: &str) -> Res<Vec<String>> {
    let rows = sqlx::query(&format!("SELECT * FROM {table} WHERE id > ? ORDER BY id"))
        .bind(0)
        .fetch_all(pool)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.columns().iter().enumerate() {
            let ty = c.type_info().name();
            let value = if r.try_get_raw(i)?.is_null() {
                "NULL".to_string()
            } else {
                match ty {
                    "INT" | "BIGINT" => r.try_get::<i64, _>(i)?.to_string(),
                    "BIGINT UNSIGNED" => r.try_get::<u64, _>(i)?.to_string(),
                    "DECIMAL" => r.try_get::<rust_decimal::Decimal, _>(i)?.to_string(),
                    "DATETIME" => r.try_get::<chrono::NaiveDateTime, _>(i)?.to_string(),
                    "DATE" => r.try_get::<chrono::NaiveDate, _>(i)?.to_string(),
                    "DOUBLE" => r.try_get::<f64, _>(i)?.to_string(),
                    "BLOB" | "VARBINARY" | "BINARY" => format!("{:?}", r.try_get::<Vec<u8>, _>(i)?),
                    _ => r.try_get::<String, _>(i)?,
                }
            };
            line += &format!("{}:{ty}={value} ", c.name());
        }
        out.push(line);
    }
    Ok(out)
}

async fn mysql_async_checks(c: &mut Checks, proxy: &str, primary: &str, table: &str) -> Res<()> {
    // Defaults, prefer_socket included, as an application would connect.
    let pool = mysql_async::Pool::new(mysql_async::Opts::from_url(proxy)?);
    let mut conn = pool.get_conn().await?;
    let socket: Option<String> = conn.query_first("SELECT @@socket").await?;
    c.check(
        "mysql_async: @@socket names no server socket",
        socket.as_deref() == Some(""),
        format!("{socket:?}"),
    );

    conn.exec_drop(
        format!("INSERT INTO {table} (a, b, c, d, e, k) VALUES (?, ?, ?, ?, ?, ?)"),
        (
            "häagen ✓",
            "123.456",
            "2024-01-02 03:04:05.678901",
            1.5e300,
            vec![0u8, 255, 16],
            u64::MAX,
        ),
    )
    .await?;
    let id = conn.last_insert_id().unwrap_or(0);
    let back: Option<String> =
        conn.exec_first(format!("SELECT a FROM {table} WHERE id = ?"), (id,)).await?;
    c.check(
        "mysql_async: a prepared insert is read back at once",
        back.as_deref() == Some("häagen ✓"),
        format!("id {id}: {back:?}"),
    );

    conn.query_drop("SET @rw_x = 5").await?;
    let before: Option<Option<i64>> = conn.query_first("SELECT @rw_x").await?;
    let reset = conn.reset().await?;
    let after: Option<Option<i64>> = conn.query_first("SELECT @rw_x").await?;
    c.check(
        "mysql_async: reset() clears user variables",
        reset && before == Some(Some(5)) && after == Some(None),
        format!("reset {reset}, before {before:?}, after {after:?}"),
    );
    let written = conn
        .exec_drop(format!("INSERT INTO {table} (a) VALUES (?)"), ("after reset",))
        .await
        .map(|_| conn.last_insert_id());
    c.check(
        "mysql_async: a prepared insert after reset() goes to the primary",
        matches!(written, Ok(Some(_))),
        format!("{written:?}"),
    );

    let mut result = conn.query_iter("SELECT 1; SELECT 2, 3 UNION SELECT 4, 5; DO 1").await?;
    let mut sets = Vec::new();
    loop {
        let rows: Vec<mysql_async::Row> = result.collect().await?;
        sets.push(rows.len());
        if result.is_empty() {
            break;
        }
    }
    drop(result);
    c.check("mysql_async: multi-statement results", sets == [1, 2], format!("{sets:?}"));

    let ours = async_rows(&mut conn, table).await?;
    drop(conn);
    pool.disconnect().await?;
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(primary)?)
        .prefer_socket(false);
    let mut direct = mysql_async::Conn::new(opts).await?;
    let theirs = async_rows(&mut direct, table).await?;
    direct.disconnect().await?;
    c.check(
        "mysql_async: binary and text rows equal the primary's",
        ours == theirs && !ours.0.is_empty(),
        format!("proxy {:?}\nprimary {:?}", ours.0.first(), theirs.0.first()),
    );
    Ok(())
}

async fn sqlx_checks(c: &mut Checks, proxy: &str, primary: &str, table: &str) -> Res<()> {
    let pool = MySqlPoolOptions::new().max_connections(8).connect(proxy).await?;
    // Each task writes and reads back on the connection it holds.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let pool = pool.clone();
        let table = table.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            let mut stale = Vec::new();
            for i in 0..40 {
                let a = format!("t{t}-{i}");
                let done = sqlx::query(&format!(
                    "INSERT INTO {table} (a, b, c, d, e, k) VALUES (?, ?, ?, ?, ?, ?)"
                ))
                .bind(&a)
                .bind(rust_decimal::Decimal::new(123_456, 3))
                .bind(
                    chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
                        .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 678_901)),
                )
                .bind(-2.5f64)
                .bind(vec![1u8, 2, 3])
                .bind(i as u64)
                .execute(&mut *conn)
                .await?;
                let id = done.last_insert_id();
                let got: Option<String> =
                    sqlx::query_scalar(&format!("SELECT a FROM {table} WHERE id = ?"))
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                if got.as_deref() != Some(a.as_str()) {
                    stale.push(format!("{a}: {got:?}"));
                }
            }
            Ok::<_, sqlx::Error>(stale)
        }));
    }
    let mut stale = Vec::new();
    for task in tasks {
        stale.extend(task.await??);
    }
    c.check(
        "sqlx: 320 prepared inserts on 8 connections, each read back at once",
        stale.is_empty(),
        format!("{stale:?}"),
    );

    let mut tx = pool.begin().await?;
    let done =
        sqlx::query(&format!("INSERT INTO {table} (a) VALUES ('in tx')")).execute(&mut *tx).await?;
    let id = done.last_insert_id();
    let inside: Option<String> = sqlx::query_scalar(&format!("SELECT a FROM {table} WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.rollback().await?;
    let after: Option<String> = sqlx::query_scalar(&format!("SELECT a FROM {table} WHERE id = ?"))
        .bind(id)
        .fetch_optional(&pool)
        .await?;
    c.check(
        "sqlx: a transaction sees its insert, and its rollback removes it",
        inside.as_deref() == Some("in tx") && after.is_none(),
        format!("inside {inside:?}, after {after:?}"),
    );

    let dup = sqlx::query(&format!("INSERT INTO {table} (id) VALUES (?)"))
        .bind(id - 1)
        .execute(&pool)
        .await;
    let code =
        dup.err().and_then(|e| e.as_database_error().and_then(|d| d.code().map(|c| c.to_string())));
    let alive: Result<i64, _> = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await;
    c.check(
        "sqlx: a duplicate key is the server's error (23000) and the pool goes on",
        code.as_deref() == Some("23000") && matches!(alive, Ok(1)),
        format!("{code:?}, {alive:?}"),
    );

    let cross = format!("SELECT x.id FROM {table} x, {table} y LIMIT 100000");
    let mut stream = sqlx::query(&cross).fetch(&pool);
    let mut streamed = 0;
    while stream.try_next().await?.is_some() {
        streamed += 1;
    }
    drop(stream);
    c.check("sqlx: a 100,000-row result streamed", streamed == 100_000, streamed);

    let ours = sqlx_rows(&pool, table).await?;
    pool.close().await;
    let direct = MySqlPoolOptions::new().max_connections(1).connect(primary).await?;
    let theirs = sqlx_rows(&direct, table).await?;
    direct.close().await;
    c.check(
        "sqlx: binary rows equal the primary's",
        ours == theirs && ours.len() > 300,
        format!(
            "{} against {} rows; first {:?} / {:?}",
            ours.len(),
            theirs.len(),
            ours.first(),
            theirs.first()
        ),
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let host = env("RWSPLIT_HOST", "127.0.0.1");
    let proxy = format!("mysql://app:app@{host}:{}/app", env("RWSPLIT_PORT", "6450"));
    let primary = format!("mysql://app:app@{host}:{}/app", env("RWSPLIT_PRIMARY_PORT", "3306"));
    let table = format!("rust_t_{}", std::process::id());
    let mut c = Checks { failed: 0 };

    let setup = async {
        let mut conn = mysql_async::Conn::new(
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&primary)?)
                .prefer_socket(false),
        )
        .await?;
        conn.query_drop(format!(
            "CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, a VARCHAR(50), b DECIMAL(10,3), \
             c DATETIME(6), d DOUBLE, e BLOB, k BIGINT UNSIGNED, n DATE NULL)"
        ))
        .await?;
        conn.disconnect().await?;
        Res::Ok(())
    };
    if let Err(e) = setup.await {
        println!("FAIL setup: {e}");
        std::process::exit(1);
    }
    if let Err(e) = mysql_async_checks(&mut c, &proxy, &primary, &table).await {
        c.check("mysql_async checks ran", false, e);
    }
    if let Err(e) = sqlx_checks(&mut c, &proxy, &primary, &table).await {
        c.check("sqlx checks ran", false, e);
    }
    let cleanup = async {
        let mut conn = mysql_async::Conn::new(
            mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&primary)?)
                .prefer_socket(false),
        )
        .await?;
        conn.query_drop(format!("DROP TABLE {table}")).await?;
        conn.disconnect().await?;
        Res::Ok(())
    };
    if let Err(e) = cleanup.await {
        println!("cleanup: {e}");
    }
    if c.failed > 0 {
        println!("{} checks failed", c.failed);
        std::process::exit(1);
    }
}
