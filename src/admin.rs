//! The admin HTTP port: `/healthz`, `/readyz`, `/backends` (JSON),
//! `/metrics` (Prometheus text). A deliberately small HTTP/1.1 server: one
//! request per connection, bounded in size and time, loopback by default
//! and behind a bearer token on any other address.

use crate::server::Shared;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head the admin port reads.
const MAX_REQUEST: usize = 16 << 10;
/// A client must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin port until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, token: Option<String>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        // The token in force: a reload may change it (not remove it: a
        // config without [admin] leaves the port as it started).
        let token = shared.config.load().admin.as_ref().map_or(token.clone(), |a| a.token.clone());
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &shared, token.as_deref()))
                    .await;
        });
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub bearer: Option<String>,
}

/// Parses a request head (up to the blank line).
pub fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    let bearer = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        value.trim().strip_prefix("Bearer ").map(|t| t.trim().to_string())
    });
    Some(Request { method, path, bearer })
}

async fn handle(
    mut stream: TcpStream,
    shared: &Arc<Shared>,
    token: Option<&str>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let (status, content_type, body) = match parse_request(&head) {
        None => (400, "text/plain", "bad request\n".to_string()),
        Some(r) if token.is_some() && r.bearer.as_deref() != token => {
            (401, "text/plain", "a bearer token is required\n".to_string())
        }
        Some(r) => respond(&r, shared),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn respond(r: &Request, shared: &Arc<Shared>) -> (u16, &'static str, String) {
    if r.method == "POST" && r.path == "/reload" {
        return match shared.reload() {
            Ok(()) => (200, "text/plain", "reloaded\n".into()),
            Err(e) => {
                tracing::warn!(error = %e, "reload refused; the running configuration stays");
                (400, "text/plain", format!("{e}\n"))
            }
        };
    }
    if r.method == "POST"
        && let Some(rest) = r.path.strip_prefix("/backends/")
    {
        return backend_action(rest, shared);
    }
    if r.method != "GET" {
        return (405, "text/plain", "method not allowed\n".into());
    }
    match r.path.as_str() {
        "/healthz" => (200, "text/plain", "ok\n".into()),
        "/readyz" => {
            let topology = shared.topology();
            let ready =
                topology.primary.and_then(|p| topology.backends.get(p)).is_some_and(|b| b.healthy);
            if ready {
                (200, "text/plain", "ready\n".into())
            } else {
                (503, "text/plain", "primary not reachable\n".into())
            }
        }
        "/backends" => (200, "application/json", backends_json(shared)),
        "/config" => (200, "application/json", config_json(shared)),
        "/pool" => (200, "application/json", pool_json(shared)),
        "/sessions" => (200, "application/json", sessions_json(shared)),
        "/digests" => {
            let body = serde_json::to_string_pretty(&shared.digests.snapshot())
                .unwrap_or_else(|_| "[]".into());
            (200, "application/json", body + "\n")
        }
        "/metrics" => {
            update_gauges(shared);
            (200, "text/plain; version=0.0.4", shared.telemetry.render())
        }
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// `POST /backends/{name}/drain|disable|enable`.
fn backend_action(rest: &str, shared: &Shared) -> (u16, &'static str, String) {
    use crate::config::BackendState as S;
    let Some((name, action)) = rest.rsplit_once('/') else {
        return (404, "text/plain", "not found\n".into());
    };
    let state = match action {
        "drain" => S::Drain,
        "disable" => S::Disabled,
        "enable" => S::Active,
        _ => return (404, "text/plain", "unknown action: use drain, disable or enable\n".into()),
    };
    if shared.set_backend_state(name, state) {
        (200, "text/plain", format!("{name}: {}\n", state.as_str()))
    } else {
        (404, "text/plain", format!("no backend named {name:?}\n"))
    }
}

/// One backend as `/backends` shows it.
#[derive(Serialize)]
struct BackendView<'a> {
    name: &'a str,
    address: &'a str,
    role: &'static str,
    healthy: bool,
    lag_ms: Option<u64>,
    lag_source: &'static str,
    gtid_position: Option<&'a str>,
    weight: u32,
    effective_weight: f64,
    eligible: bool,
    excluded_because: Option<&'static str>,
    /// Sessions avoid it after it refused or broke a connection, until
    /// the monitor finds it up again or `timeouts.backend_retry` passes.
    avoided: bool,
    in_flight: u64,
    queries_total: u64,
    errors_total: u64,
    last_error: Option<&'a str>,
    sql_thread_running: Option<bool>,
    io_thread_running: Option<bool>,
    /// Why replication cannot be trusted: `Last_SQL_Error`, or a position
    /// past the primary's.
    replication_error: Option<&'a str>,
    /// `@@read_only` as probed: two backends with `false` means two
    /// writable servers (writes stay on the previous primary).
    read_only: Option<bool>,
    writable_conflict: bool,
    /// "active", "drain" or "disabled".
    state: &'static str,
    consecutive_failures: u32,
}

fn backends_json(shared: &Shared) -> String {
    let topology = shared.topology();
    let config = shared.config.load();
    let views: Vec<BackendView<'_>> = topology
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (queries, errors) = shared.backend_counts(i);
            BackendView {
                name: &b.name,
                address: &b.address,
                role: if topology.primary == Some(i) { "primary" } else { "replica" },
                healthy: b.healthy,
                lag_ms: b.lag_ms,
                lag_source: lag_source_name(b.lag_source),
                gtid_position: b.gtid_position.as_deref(),
                weight: config.backends.get(i).map_or(0, |c| c.weight),
                effective_weight: b.effective_weight,
                eligible: b.eligible,
                excluded_because: b.exclusion.map(|e| e.as_str()),
                avoided: shared.backoff.is_down(i),
                in_flight: shared.picker.in_flight(&b.name),
                queries_total: queries,
                errors_total: errors,
                last_error: b.last_error.as_deref(),
                sql_thread_running: b.sql_thread_running,
                io_thread_running: b.io_thread_running,
                replication_error: b.replication_error.as_deref(),
                read_only: b.read_only,
                writable_conflict: topology.writable_conflict,
                state: shared.backend_state(i).as_str(),
                consecutive_failures: b.consecutive_failures,
            }
        })
        .collect();
    serde_json::to_string_pretty(&views).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// `GET /sessions`: every logged-in client session, with the backend
/// connections it holds now (the server thread ids, as SHOW PROCESSLIST
/// on that server shows them).
fn sessions_json(shared: &Shared) -> String {
    let config = shared.config.load();
    let sessions: Vec<serde_json::Value> = shared
        .registry
        .sessions()
        .into_iter()
        .map(|(id, h)| {
            let user = String::from_utf8_lossy(&h.user.lock().expect("handle lock")).into_owned();
            let (client, seconds) = h.client.get().map_or((String::new(), 0.0), |(peer, at)| {
                (peer.clone(), at.elapsed().as_secs_f64())
            });
            let backends: Vec<serde_json::Value> = h
                .threads
                .lock()
                .expect("handle lock")
                .iter()
                .map(|(idx, thread)| {
                    let name = config.backends.get(*idx).map_or("?", |b| b.name.as_str());
                    serde_json::json!({ "backend": name, "thread_id": thread })
                })
                .collect();
            let idle = h.idle_ms(crate::server::since_start_ms());
            let running = idle.is_none();
            serde_json::json!({
                "id": id,
                "user": user,
                "client": client,
                "connected_s": (seconds * 10.0).round() / 10.0,
                "running": running,
                "idle_s": idle.map(|ms| (ms as f64 / 100.0).round() / 10.0),
                "backend_connections": backends,
            })
        })
        .collect();
    serde_json::to_string_pretty(&sessions).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// `GET /config`: the file the config in force came from and since when,
/// how often it is watched, and how the last reload went.
fn config_json(shared: &Shared) -> String {
    let config = shared.config.load();
    let seconds = |d: std::time::Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
    let status = shared.reloads.lock().expect("reload status lock");
    let last = status.last.as_ref().map(|(at, refused)| {
        serde_json::json!({
            "s_ago": seconds(at.elapsed()),
            "result": if refused.is_some() { "refused" } else { "applied" },
            "error": refused,
        })
    });
    let body = serde_json::json!({
        "file": config.source.as_ref().map(|p| p.display().to_string()),
        "in_force_s": seconds(status.in_force_since.elapsed()),
        "watch_s": seconds(config.reload.watch),
        "last_reload": last,
    });
    serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// `GET /pool`: per backend, the connections sessions and the pool hold,
/// and why sessions kept connections instead of sharing them.
fn pool_json(shared: &Shared) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let config = shared.config.load();
    let backends: Vec<serde_json::Value> = config
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.removed)
        .map(|(i, b)| {
            let open = shared.backend_connections(i);
            let stats = shared.pool.get(i);
            let get = |f: fn(&crate::server::PoolBackend) -> u64| stats.map_or(0, f);
            let idle = get(|s| s.idle.get() as u64);
            serde_json::json!({
                "name": b.name,
                "connections": open,
                "in_use": (open as u64).saturating_sub(idle),
                "idle": idle,
                "waiting": get(|s| s.waiting.load(Relaxed) as u64),
                "max_connections": shared.backend_cap(&config, i),
                "timeouts_total": get(|s| s.timeouts.load(Relaxed)),
                "handoffs_total": get(|s| s.handoffs.get()),
                "resets_total": get(|s| s.resets.load(Relaxed)),
                "mean_connection_age_s": (shared.mean_connection_age(i) * 10.0).round() / 10.0,
            })
        })
        .collect();
    let bound: serde_json::Map<String, serde_json::Value> = crate::session::pool::Binding::ALL
        .iter()
        .map(|b| (b.as_str().to_string(), shared.pool.bound[*b as usize].load(Relaxed).into()))
        .collect();
    let body = serde_json::json!({
        "multiplex": config.pool.multiplex,
        "reuse": config.pool.keeps_connections(),
        "backends": backends,
        "kept_by_reason": bound,
    });
    serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".into()) + "\n"
}

fn lag_source_name(source: crate::monitor::LagSource) -> &'static str {
    use crate::monitor::LagSource as L;
    match source {
        L::Heartbeat => "heartbeat",
        L::Gtid => "gtid",
        L::SecondsBehindMaster => "seconds_behind_master",
        L::Unknown => "unknown",
        L::None => "none",
    }
}

/// Backend gauges are set from the topology when scraped.
fn update_gauges(shared: &Shared) {
    let topology = shared.topology();
    for b in &topology.backends {
        let name = b.name.clone();
        metrics::gauge!(crate::telemetry::BACKEND_HEALTHY, "backend" => name.clone())
            .set(if b.healthy { 1.0 } else { 0.0 });
        metrics::gauge!(crate::telemetry::BACKEND_EFFECTIVE_WEIGHT, "backend" => name.clone())
            .set(b.effective_weight);
        metrics::gauge!(crate::telemetry::MONITOR_FAILURES, "backend" => name.clone())
            .set(b.consecutive_failures as f64);
        // Unknown lag reads as NaN, not as the last value seen.
        let lag = b.lag_ms.map_or(f64::NAN, |lag| lag as f64);
        metrics::gauge!(crate::telemetry::BACKEND_LAG_MS, "backend" => name).set(lag);
    }
    use std::sync::atomic::Ordering::Relaxed;
    let config = shared.config.load();
    let mut idle_total = 0;
    for (i, b) in config.backends.iter().enumerate() {
        let Some(stats) = shared.pool.get(i) else { continue };
        let idle = stats.idle.get();
        idle_total += idle;
        let in_use = shared.backend_connections(i).saturating_sub(idle);
        let name = b.name.clone();
        metrics::gauge!(crate::telemetry::POOL_CONNECTIONS, "backend" => name.clone(), "state" => "idle")
            .set(idle as f64);
        metrics::gauge!(crate::telemetry::POOL_CONNECTIONS, "backend" => name.clone(), "state" => "in_use")
            .set(in_use as f64);
        metrics::gauge!(crate::telemetry::POOL_WAITING, "backend" => name.clone())
            .set(stats.waiting.load(Relaxed) as f64);
        metrics::counter!(crate::telemetry::POOL_TIMEOUTS, "backend" => name)
            .absolute(stats.timeouts.load(Relaxed));
    }
    shared.telemetry.pool_idle.set(idle_total as f64);
    metrics::gauge!(crate::telemetry::COMMAND_MEMORY).set(shared.command_memory.used() as f64);
    // Over every position, removed backends' included: a counter never
    // goes down.
    let reused = (0..).map_while(|i| shared.pool.get(i)).map(|s| s.handoffs.get()).sum();
    metrics::counter!(crate::telemetry::POOL_REUSED).absolute(reused);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_and_bearer_are_parsed() {
        let r = parse_request(
            "GET /backends?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/backends");
        assert_eq!(r.bearer.as_deref(), Some("s3cret"));
        assert_eq!(parse_request("GET /healthz HTTP/1.1\r\n\r\n").unwrap().bearer, None);
        assert!(parse_request("").is_none());
    }
}
