//! `bpcluster`: brings a namespace cluster up (and leaves it running), tears it down, shows it,
//! and cleans up after crashed ones. Needs root.
//!
//! Exit status: 0 on success, 1 on any failure (the error and its causes are printed once, on
//! stderr), 2 on a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vm_harness::{Cluster, ClusterSpec, HarnessError};

/// Bring a BProc cluster of namespace nodes up or down on this machine.
#[derive(Debug, Parser)]
#[command(name = "bpcluster", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring a cluster up and leave it running; the last line printed is
    /// `export BPROC_SOCKET=PATH`, so `eval "$(bpcluster up --nodes 4 | tail -n1)"` works.
    Up {
        /// Number of nodes (1-240).
        #[arg(long)]
        nodes: u32,
        /// Cluster name: 1-12 chars of a-z, 0-9 and '-', starting with a letter.
        #[arg(long, default_value = "default")]
        name: String,
        /// How long a silent node stays up before the master marks it down.
        #[arg(long, default_value_t = ClusterSpec::DEFAULT_NODE_TIMEOUT_MS)]
        node_timeout_ms: u64,
        /// Directory holding bpmaster, bpslave and bpstat [default: $BPROC_BIN_DIR, else the
        /// directory of bpcluster].
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Seconds to wait for every node to be up.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Tear a cluster down: stop its daemons, delete its namespaces and files.
    Down {
        /// Cluster name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List the clusters and the node states of running ones.
    Status {
        /// Only this cluster.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove every leftover of crashed clusters (all clusters, running ones included, unless
    /// --name is given).
    Gc {
        /// Only this cluster's leftovers.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `println!` that ignores a closed stdout (`bpcluster up | head -1` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up { nodes, name, node_timeout_ms, bin_dir, timeout } => {
            up(name, nodes, node_timeout_ms, bin_dir, timeout)
        }
        Cmd::Down { name } => down(&name),
        Cmd::Status { name } => status(name.as_deref()),
        Cmd::Gc { name } => gc(name.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bpcluster: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(name: String, nodes: u32, node_timeout_ms: u64, bin_dir: Option<PathBuf>, timeout: u64) -> Result<()> {
    let mut spec = ClusterSpec::new(name.clone(), nodes);
    spec.node_timeout_ms = node_timeout_ms;
    spec.bin_dir = bin_dir;
    spec.up_timeout = Duration::from_secs(timeout);
    let start = Instant::now();
    let cluster = Cluster::up(spec).with_context(|| format!("cannot bring cluster {name} up"))?.into_detached();
    say!(
        "cluster {}: {} nodes up in {:.2}s (subnet {}, master pid {}, logs in {})",
        cluster.name(),
        cluster.nodes(),
        start.elapsed().as_secs_f64(),
        cluster.subnet(),
        cluster.master_pid().map_or_else(|| "?".to_owned(), |p| p.to_string()),
        cluster.state_dir().display()
    );
    say!("export {}={}", vm_harness::SOCKET_ENV, shell_quote(cluster.socket_path()));
    Ok(())
}

fn down(name: &str) -> Result<()> {
    match Cluster::attach(name) {
        Ok(cluster) => {
            cluster.down().with_context(|| format!("cannot tear cluster {name} down"))?;
            say!("cluster {name}: down");
        }
        Err(HarnessError::NoSuchCluster { .. }) => {
            // Nothing recorded: still remove whatever a crash may have left under that name.
            let removed =
                vm_harness::gc(Some(name)).with_context(|| format!("cannot remove leftovers of cluster {name}"))?;
            if removed.is_empty() {
                say!("cluster {name}: not found, nothing to do");
            } else {
                for line in removed {
                    say!("removed {line}");
                }
            }
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read cluster {name}")),
    }
    Ok(())
}

fn status(name: Option<&str>) -> Result<()> {
    let clusters: Vec<(String, Result<Cluster, HarnessError>)> = match name {
        Some(name) => vec![(name.to_owned(), Cluster::attach(name))],
        None => Cluster::list(),
    };
    if clusters.is_empty() {
        say!("no clusters");
    }
    let mut failed = false;
    for (name, cluster) in clusters {
        let cluster = match cluster {
            Ok(cluster) => cluster,
            Err(err) => {
                say!("{name}: {}", err.chain());
                failed = true;
                continue;
            }
        };
        let master = match cluster.master_pid() {
            Some(pid) => format!("master pid {pid} running"),
            None => "master not running".to_owned(),
        };
        say!(
            "{name}: subnet {}, {} nodes, {master}, socket {}",
            cluster.subnet(),
            cluster.nodes(),
            cluster.socket_path().display()
        );
        if cluster.master_pid().is_none() {
            continue;
        }
        match cluster.node_states() {
            Ok(states) => {
                for (node, state) in states {
                    let addr = cluster.node_addr(node).map_or_else(String::new, |a| a.to_string());
                    let slave =
                        cluster.slave_pid(node).map_or_else(|| "no slave".to_owned(), |p| format!("slave pid {p}"));
                    say!("  node {node:>3}  {state:<8} {addr:<15} {slave}");
                }
            }
            Err(err) => {
                say!("  node states unavailable: {}", err.chain());
                failed = true;
            }
        }
    }
    if failed {
        anyhow::bail!("some clusters could not be read");
    }
    Ok(())
}

fn gc(name: Option<&str>) -> Result<()> {
    let removed = vm_harness::gc(name).context("garbage collection incomplete")?;
    if removed.is_empty() {
        say!("nothing to remove");
    }
    for line in removed {
        say!("removed {line}");
    }
    Ok(())
}

/// `path` as one shell word.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(Path::new("/run/bproc/clusters/a/master.sock")), "/run/bproc/clusters/a/master.sock");
        assert_eq!(shell_quote(Path::new("/tmp/a b/it's")), r"'/tmp/a b/it'\''s'");
    }
}
