//! `bpslave`: the bproc-rs node daemon.

use std::time::Duration;

use bproc_slave::link::{run_link, LinkError, SlaveId};
use bproc_slave::procs::Procs;
use bproc_slave::{reaper, sys};
use clap::Parser;

/// The bproc-rs slave: runs the master's processes on this node.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The master's slave port, HOST:PORT.
    #[arg(long)]
    master: String,
    /// This node's number.
    #[arg(long, required_unless_present = "front_end")]
    node: Option<u32>,
    /// Serve the front end's own node (number -1), beside the master.
    #[arg(long, conflicts_with = "node")]
    front_end: bool,
    /// Set this node's hostname (in its own UTS namespace).
    #[arg(long)]
    hostname: Option<String>,
    /// Longest wait between two connection attempts.
    #[arg(long, default_value_t = 2000)]
    max_backoff_ms: u64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only for a terminal: log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bpslave: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bpslave: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(name) = &args.hostname {
        sys::sethostname(name).map_err(|e| anyhow::anyhow!("cannot set hostname {name}: {e}"))?;
    }
    sys::raise_nofile_limit();
    if std::process::id() == 1 {
        // Our processes' session, led from inside the node: CRIU cannot
        // checkpoint a process whose session leader is outside its PID
        // namespace (bproc_move from the node).
        if let Err(e) = nix::unistd::setsid() {
            tracing::warn!(error = %e, "cannot lead a session of our own: bproc_move from this node will fail");
        }
    }
    if let Err(e) = sys::prepare_restore_dir() {
        tracing::warn!(error = %e, dir = sys::RESTORE_DIR, "cannot prepare the restore directory");
    }
    // The front end registers as node -1 (u32::MAX on the wire).
    let node = if args.front_end { u32::MAX } else { args.node.unwrap_or(0) };
    if let Err(e) = sys::publish_node_number(node as i32) {
        tracing::warn!(error = %e, "cannot publish the node number: bproc_currnode() will not know this node");
    } else if let Err(e) = sys::publish_master_host(&args.master) {
        tracing::warn!(error = %e, "cannot publish the front end's address: io lists' sockets to 0.0.0.0 will miss it");
    }
    if std::process::id() != 1 {
        sys::become_subreaper().map_err(|e| anyhow::anyhow!("cannot become a subreaper: {e}"))?;
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let procs = Procs::new(8 << 20);
    // The front end's own node shares the front end's network: it passes
    // no images on (the master never asks it to), so it listens on nothing.
    let image_port = if args.front_end {
        0
    } else {
        match bproc_slave::image_peer::serve(procs.shelf.clone()).await {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve images to peers: vrfork images come from the master");
                0
            }
        }
    };
    let id = SlaveId { master: args.master.clone(), node, hostname, image_port };
    // Before the first fork: the probes track this daemon from its next one.
    match ebpf_probes::Probes::load_tracking_self().and_then(ebpf_probes::Probes::into_async) {
        Ok(mut probes) => {
            let procs = procs.clone();
            tokio::spawn(async move {
                loop {
                    match probes.next_event().await {
                        Ok(event) => procs.on_probe_event(event),
                        Err(e) => {
                            tracing::error!(error = %e, "eBPF event stream failed");
                            return;
                        }
                    }
                }
            });
        }
        Err(e) => tracing::error!(
            error = %e,
            "eBPF probes not loaded: processes forked or exec'd on this node get no ghosts of their own"
        ),
    }
    tokio::spawn({
        let procs = procs.clone();
        async move {
            if let Err(e) = reaper::reap(procs).await {
                tracing::error!(error = %e, "reaper stopped");
            }
        }
    });
    tokio::spawn(bproc_slave::node_service::serve(procs.clone()));
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_tx.send(true);
    });

    let base = Duration::from_millis(50);
    let max = Duration::from_millis(args.max_backoff_ms.max(50));
    let mut backoff = base;
    loop {
        let started = tokio::time::Instant::now();
        let result = run_link(&id, &procs, &mut stop).await;
        procs.kill_all();
        match result {
            Ok(()) => break,
            Err(LinkError::Refused(why)) => anyhow::bail!("the master refused this slave: {why}"),
            Err(e) => tracing::warn!(error = %e, "link down; reconnecting"),
        }
        // A link that lived a while starts the backoff afresh.
        if started.elapsed() > max {
            backoff = base;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(max);
    }
    tracing::info!("stopping");
    if let Some(path) = procs.peer_socket() {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
