//! `bpmaster`: the bproc-rs master daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use bproc_master::config::Config;
use bproc_master::engine::{Engine, EngineConfig};
use bproc_master::runtime::{self, RuntimeConfig, Shared};
use clap::Parser;

/// The bproc-rs master: owns the cluster's node and process tables.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file; flags given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Unix socket for clients (bpsh, bpstat, libbproc).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// TCP address on which slaves connect.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Number of nodes in the cluster (0..N-1).
    #[arg(long)]
    nodes: Option<u32>,
    /// How often slaves send a heartbeat.
    #[arg(long)]
    heartbeat_interval_ms: Option<u32>,
    /// A node silent for this long is marked down.
    #[arg(long)]
    node_timeout_ms: Option<u32>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only for a terminal: log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bpmaster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.socket {
        cfg.socket = v;
    }
    if let Some(v) = args.listen {
        cfg.listen = v;
    }
    if let Some(v) = args.nodes {
        cfg.nodes = v;
    }
    if let Some(v) = args.heartbeat_interval_ms {
        cfg.heartbeat_interval_ms = v;
    }
    if let Some(v) = args.node_timeout_ms {
        cfg.node_timeout_ms = v;
    }
    cfg.validate()?;
    runtime::sys::raise_nofile_limit();
    runtime::migrate::remove_stale_images();
    let pid_max = runtime::sys::pid_max();
    if bproc_master::engine::node_pid_base(0, cfg.nodes, pid_max) == 0 {
        tracing::warn!(
            pid_max,
            "kernel.pid_max leaves no room for per-node PID ranges: ghosts of processes forked on nodes \
             will mostly have PIDs other than their node PIDs (raise it: sysctl kernel.pid_max=4194304)"
        );
    }

    let mut engine = Engine::new(EngineConfig {
        nodes: cfg.nodes,
        node_timeout: std::time::Duration::from_millis(cfg.node_timeout_ms.into()),
        default_perms: cfg.default_perms(),
        front_end: cfg.front_end_node,
    });
    for n in 0..cfg.nodes {
        engine.set_perms(n, cfg.perms_of(n));
    }
    let shared = Shared::new(
        engine,
        RuntimeConfig {
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            link_timeout_ms: cfg.node_timeout_ms,
            stdio_window: cfg.stdio_window,
            pid_max,
        },
    );
    // The front end's own node: a slave in a PID namespace of its own, which
    // dies with us.
    let _front_end = if cfg.front_end_node { Some(runtime::sys::start_front_end_slave(cfg.listen)?) } else { None };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async {
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler can be installed at startup");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down");
        };
        runtime::serve(shared, &cfg.socket, cfg.listen, shutdown).await
    })?;
    Ok(())
}
