//! The `rwsplit` binary: command line, logging, then `rwsplit::run` until
//! SIGINT or SIGTERM.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
rwsplit: a MySQL/MariaDB read/write-splitting proxy

Usage:
  rwsplit --config FILE     run the proxy with FILE
  rwsplit check FILE        validate FILE and exit (non-zero on problems)
  rwsplit --version         print the version
  rwsplit --help            print this help

Logging: the [log] section of FILE; RUST_LOG (for example
RUST_LOG=info,rwsplit::session=debug) overrides its level.
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [flag] if flag == "--version" || flag == "-V" => Ok(Command::Version),
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        [flag, file] if flag == "--config" || flag == "-c" => Ok(Command::Run(file.into())),
        [check, file] if check == "check" => Ok(Command::Check(file.into())),
        [] => Err("missing --config FILE".into()),
        _ => Err(format!("unrecognised arguments: {}", args.join(" "))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rwsplit: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Version => {
            println!("rwsplit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check(file) => match rwsplit::Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(file) => match run(file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rwsplit: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Starts logging as `[log]` says; returns what applies a reloaded level.
fn init_logging(config: &rwsplit::Config) -> rwsplit::server::LogReload {
    use tracing_subscriber::{
        EnvFilter, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt,
    };
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let level = from_env.as_deref().unwrap_or(&config.log.level);
    let filter = EnvFilter::builder().parse_lossy(level);
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log.format {
        rwsplit::config::LogFormat::Text => {
            registry.with(fmt::layer().with_writer(std::io::stderr)).init()
        }
        rwsplit::config::LogFormat::Json => {
            registry.with(fmt::layer().json().with_writer(std::io::stderr)).init()
        }
    }
    Box::new(move |new: &rwsplit::Config| {
        if from_env.is_some() {
            return Ok(());
        }
        let filter = EnvFilter::builder().parse(&new.log.level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn run(file: PathBuf) -> anyhow::Result<()> {
    let config = rwsplit::Config::load(&file)?;
    let log_reload = init_logging(&config);
    raise_file_limit(&config);
    // Accepting, the admin port and the monitor; sessions run on the
    // session workers (one per CPU unless RWSPLIT_WORKER_THREADS says).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Installed before the listeners open, so a SIGHUP sent as soon as
        // the proxy answers reloads it instead of killing it.
        use tokio::signal::unix::{SignalKind, signal};
        let hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let proxy = rwsplit::Proxy::bind(config).await.context("cannot start listeners")?;
        let shared = proxy.shared.clone();
        let _ = shared.log_reload.set(log_reload);
        let workers = std::env::var("RWSPLIT_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let workers = rwsplit::server::SessionWorkers::start(workers)
            .context("cannot start the session worker threads")?;
        let _ = shared.session_workers.set(workers);
        tokio::spawn(rwsplit::server::watch_files(shared.clone()));
        tokio::spawn(reload_on_sighup(hup, shared));
        proxy.run(shutdown_signal(term, int)).await;
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard one (each client takes
/// a descriptor, and one more per backend it uses) and warns when even
/// that is short of `max_client_connections`.
fn raise_file_limit(config: &rwsplit::Config) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return;
        }
    };
    let clients = config.limits.max_client_connections as u64;
    // A client plus its primary and one replica connection, and room for
    // listeners, the monitor and the admin port.
    let wanted = clients.saturating_mul(3).saturating_add(256);
    if limit < wanted {
        tracing::warn!(
            limit,
            max_client_connections = clients,
            wanted,
            "the open-file limit is low for max_client_connections: once it runs out, new \
             clients get ERROR 1040 (raise it with ulimit -n or LimitNOFILE=)"
        );
    } else {
        tracing::debug!(limit, "open-file limit");
    }
}

/// SIGHUP reloads the config file; an invalid file is logged and ignored.
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    shared: std::sync::Arc<rwsplit::Shared>,
) {
    while hup.recv().await.is_some() {
        if let Err(e) = shared.reload() {
            tracing::warn!(error = %e, "reload refused; the running configuration stays");
        }
    }
}

async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
