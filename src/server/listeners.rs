//! Client listeners (TCP or unix socket, reloadable), the accept loop,
//! and the worker threads sessions run on.

use super::Shared;
use crate::config::{Config, ListenerConfig};
use crate::net;
use crate::protocol::messages::build_err;
use crate::session;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Threads that run client sessions, each with a single-threaded runtime:
/// a session's socket readiness, timers and wake-ups stay on the thread
/// it was handed to, so a statement costs no cross-thread wake-up (one
/// event loop per core, as haproxy runs). Accepting, the admin port and
/// the monitor stay on the main runtime.
pub struct SessionWorkers {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
}

impl SessionWorkers {
    /// Starts `n` worker threads (at least one).
    pub fn start(n: usize) -> std::io::Result<SessionWorkers> {
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            std::thread::Builder::new().name(format!("rwsplit-worker-{i}")).spawn(move || {
                crate::sharded::set_worker(i);
                runtime.block_on(std::future::pending::<()>())
            })?;
        }
        Ok(SessionWorkers { handles, next: std::sync::atomic::AtomicUsize::new(0) })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The next worker, round robin.
    fn pick(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

/// What a session needs to know about the listener that accepted it.
#[derive(Clone)]
pub struct ListenerCtx {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub require_tls: bool,
    pub consistency: Option<crate::config::ConsistencyMode>,
    /// Connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// How rules name this listener (`ListenerConfig::rule_name`).
    pub name: Arc<str>,
}

impl ListenerCtx {
    fn from_config(l: &ListenerConfig, base_dir: &std::path::Path) -> Result<ListenerCtx, String> {
        Ok(ListenerCtx {
            tls: l.tls_acceptor(base_dir).map_err(|e| format!("listener {}: {e}", l.name()))?,
            require_tls: l.require_tls,
            consistency: l.consistency,
            proxy_protocol: l.proxy_protocol,
            name: l.rule_name().into(),
        })
    }
}

/// One client listener that is accepting: its options (swapped by a
/// reload) and its accept task.
struct OpenListener {
    name: String,
    ctx: Arc<ArcSwap<ListenerCtx>>,
    local: Option<SocketAddr>,
    task: tokio::task::AbortHandle,
}

/// The client listeners in force, in config order. A reload opens the
/// new ones, closes the removed ones (their sessions go on) and gives
/// kept ones their new options (TLS files are read again).
#[derive(Default)]
pub struct Listeners {
    open: Mutex<Vec<OpenListener>>,
}

impl Listeners {
    /// Makes the open listeners those of `config`. Everything that can
    /// fail (TLS files, binding) is done before anything changes, so an
    /// error leaves the listeners as they were.
    pub(super) fn sync(&self, config: &Config, shared: &Arc<Shared>) -> Result<(), String> {
        let mut open = self.open.lock().expect("listeners lock");
        let mut ctxs = Vec::new();
        let mut bound = Vec::new();
        for l in &config.listeners {
            let name = l.name();
            ctxs.push(ListenerCtx::from_config(l, &config.base_dir)?);
            if !open.iter().any(|o| o.name == name) {
                let listener = match (&l.address, &l.socket) {
                    (Some(address), _) => net::Listener::bind_tcp(address),
                    (None, Some(path)) => net::Listener::bind_unix(&config.base_dir.join(path)),
                    (None, None) => return Err(format!("listener {name}: no address")),
                }
                .map_err(|e| format!("cannot listen on {name}: {e}"))?;
                bound.push((name, listener));
            }
        }
        let mut kept = Vec::with_capacity(config.listeners.len());
        for (l, ctx) in config.listeners.iter().zip(ctxs) {
            let name = l.name();
            if let Some(pos) = open.iter().position(|o| o.name == name) {
                let existing = open.remove(pos);
                existing.ctx.store(Arc::new(ctx));
                kept.push(existing);
                continue;
            }
            let pos = bound.iter().position(|(n, _)| *n == name).expect("bound above");
            let (name, listener) = bound.remove(pos);
            let local = listener.local_addr();
            let ctx = Arc::new(ArcSwap::from_pointee(ctx));
            let task = tokio::spawn(accept_loop(listener, ctx.clone(), shared.clone()));
            tracing::info!(listener = %name, "listening for MySQL clients");
            kept.push(OpenListener { name, ctx, local, task: task.abort_handle() });
        }
        for gone in open.drain(..) {
            tracing::info!(listener = %gone.name, "listener closed");
            gone.task.abort();
        }
        *open = kept;
        Ok(())
    }

    pub(super) fn close_all(&self) {
        for l in self.open.lock().expect("listeners lock").drain(..) {
            l.task.abort();
        }
    }

    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.open.lock().expect("listeners lock").iter().filter_map(|l| l.local).collect()
    }
}

async fn accept_loop(listener: net::Listener, ctx: Arc<ArcSwap<ListenerCtx>>, shared: Arc<Shared>) {
    // Kept open to be given up when descriptors run out (see below).
    let mut spare = std::fs::File::open("/dev/null").ok();
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let keepalive = shared.config.load().timeouts.client_keepalive;
                if let Err(e) = socket.keep_alive(keepalive) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP keepalive");
                }
                let ctx = ListenerCtx::clone(&ctx.load());
                let Some(workers) = shared.session_workers.get() else {
                    tokio::spawn(session::serve(socket, peer, ctx, shared.clone()));
                    continue;
                };
                let socket = match socket.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot hand a connection over");
                        continue;
                    }
                };
                let shared = shared.clone();
                workers.pick().spawn(async move {
                    match net::Socket::from_std(socket) {
                        Ok(socket) => session::serve(socket, peer, ctx, shared).await,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "cannot take a connection over")
                        }
                    }
                });
            }
            Err(e) if out_of_descriptors(&e) => {
                // The client waits in the backlog with no answer: free the
                // spare descriptor to take it and tell it why.
                tracing::error!(listener = %listener, error = %e,
                    "out of file descriptors; refusing a client with ERROR 1040");
                drop(spare.take());
                if let Ok((mut socket, peer)) = listener.accept().await {
                    let err = build_err(
                        1040,
                        "08004",
                        "Too many connections (rwsplit is out of file descriptors)",
                    );
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(1),
                        crate::protocol::packet::write_packet(&mut socket, 0, &err),
                    )
                    .await;
                    tracing::debug!(%peer, "refused");
                }
                spare = std::fs::File::open("/dev/null").ok();
                if spare.is_none() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            Err(e) => {
                // Say so and back off briefly instead of spinning.
                tracing::error!(listener = %listener, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// EMFILE or ENFILE: the process or the system has no descriptor left.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}
