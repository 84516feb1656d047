//! `bpstat`: the node table as BProc's bpstat shows it, `-p` for remote
//! processes, `--json` for machines.

use clap::Parser;
use libbproc::{nodeset, Client, NodeStatus, ProcessStatus};

/// Show the state of the cluster's nodes (and, with -p, its remote processes).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// List remote processes with their PIDs and nodes.
    #[arg(short = 'p', long = "processes")]
    processes: bool,
    /// One line per node, with address, hostname and process count.
    #[arg(short = 'l', long = "long")]
    long: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only these nodes (e.g. 0-3,7).
    nodes: Option<String>,
}

fn main() {
    // Like any filter's source, bpstat ends quietly when its reader goes
    // (`bpstat -p | grep -q ...`) instead of failing to print.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| {
        eprintln!("bpstat: cannot start: {e}");
        std::process::exit(1)
    });
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("bpstat: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::connect().await?;
    let only = args.nodes.as_deref().map(nodeset::parse).transpose()?;
    let keep = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));
    if args.processes {
        let procs: Vec<ProcessStatus> = client.processes().await?.into_iter().filter(|p| keep(p.node)).collect();
        if args.json {
            println!("{}", serde_json::json!({ "processes": procs }));
        } else {
            // BProc's columns: the global PID and the node; NPID only where
            // the node could not give the process its global PID.
            println!("{:>8} {:>5} {:>8} {:<10} {:<8} COMMAND", "PID", "NODE", "NPID", "USER", "STATE");
            for p in procs {
                let npid = if p.pid == p.node_pid { String::new() } else { p.node_pid.to_string() };
                let pid = if p.pid == 0 { "-".to_string() } else { p.pid.to_string() };
                println!(
                    "{:>8} {:>5} {:>8} {:<10} {:<8} {}",
                    pid,
                    p.node,
                    npid,
                    user_name(p.uid),
                    p.state,
                    p.argv.join(" ")
                );
            }
        }
        return Ok(());
    }
    let nodes: Vec<NodeStatus> = client.nodes().await?.into_iter().filter(|n| keep(n.node)).collect();
    if args.json {
        let rows: Vec<_> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "node": n.node, "state": n.state, "addr": n.addr, "hostname": n.hostname,
                    "mode": mode_string(n.mode), "mode_bits": n.mode,
                    "uid": n.uid, "gid": n.gid, "user": user_name(n.uid), "group": group_name(n.gid),
                    "processes": n.processes,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "nodes": rows }));
    } else if args.long {
        println!(
            "{:<6} {:<8} {:<11} {:<8} {:<8} {:<15} {:<12} PROCS",
            "Node", "Status", "Mode", "User", "Group", "Address", "Hostname"
        );
        for n in &nodes {
            println!(
                "{:<6} {:<8} {:<11} {:<8} {:<8} {:<15} {:<12} {}",
                n.node,
                n.state,
                mode_string(n.mode),
                user_name(n.uid),
                group_name(n.gid),
                n.addr,
                n.hostname,
                n.processes
            );
        }
    } else {
        println!("{:<12} {:<8} {:<11} {:<8} Group", "Node(s)", "Status", "Mode", "User");
        for (list, n) in group_rows(&nodes) {
            println!(
                "{:<12} {:<8} {:<11} {:<8} {}",
                list,
                n.state,
                mode_string(n.mode),
                user_name(n.uid),
                group_name(n.gid)
            );
        }
    }
    Ok(())
}

/// BProc's table: consecutive nodes alike in every column share a line.
fn group_rows(nodes: &[NodeStatus]) -> Vec<(String, &NodeStatus)> {
    let mut rows: Vec<(Vec<u32>, &NodeStatus)> = Vec::new();
    for n in nodes {
        match rows.last_mut() {
            Some((list, first))
                if first.state == n.state
                    && first.mode == n.mode
                    && first.uid == n.uid
                    && first.gid == n.gid
                    && list.last().is_some_and(|l| l + 1 == n.node) =>
            {
                list.push(n.node)
            }
            _ => rows.push((vec![n.node], n)),
        }
    }
    rows.into_iter().map(|(l, n)| (nodeset::format(&l), n)).collect()
}

/// `---x--x--x` for 0o111, as ls shows a file's permission bits.
fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push('-');
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into()).ok().flatten().map(|g| g.name).unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u32, state: &str) -> NodeStatus {
        NodeStatus {
            node: n,
            state: state.into(),
            addr: String::new(),
            mode: 0o111,
            uid: 0,
            gid: 0,
            hostname: String::new(),
            processes: 0,
        }
    }

    #[test]
    fn rows_group_consecutive_alike_nodes() {
        let nodes = [node(0, "up"), node(1, "up"), node(2, "down"), node(3, "up")];
        let rows: Vec<_> = group_rows(&nodes).into_iter().map(|(l, n)| (l, n.state.clone())).collect();
        assert_eq!(rows, [("0-1".into(), "up".to_string()), ("2".into(), "down".into()), ("3".into(), "up".into())]);
        assert_eq!(mode_string(0o111), "---x--x--x");
        assert_eq!(mode_string(0o750), "-rwxr-x---");
    }
}
