//! Cleaning up after crashed clusters ([`gc`]) and finding what is left ([`leftovers`]).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::time::Duration;

use crate::daemon::{self, Victim};
use crate::error::HarnessError;
use crate::layout::{self, RunDir};
use crate::names::{self, NETNS_PREFIX};
use crate::netns;
use crate::procfs::{self, ProcRef};
use crate::state::ClusterState;
use crate::subnet::{self, Subnet};

/// The daemons' `comm`s.
const DAEMON_COMMS: [&str; 2] = ["bpmaster", "bpslave"];

/// Removes every trace of the cluster `name`, or with `None` of every cluster (running ones
/// included): SIGKILLs the daemons recorded in state files or recognised by their command lines
/// and every process in the namespaces, deletes the namespaces (`bp-NAME-*`, or every `bp-*`),
/// the state dirs and the subnet claims. Idempotent; returns one line per thing removed.
pub fn gc(name: Option<&str>) -> Result<Vec<String>, HarnessError> {
    if let Some(name) = name {
        names::validate_name(name)?;
    }
    let run = RunDir::from_env();
    let mut removed = Vec::new();
    let mut problems = Vec::new();
    let clusters: Vec<String> = match name {
        Some(name) => vec![name.to_owned()],
        None => run.cluster_names(),
    };
    let claims: Vec<subnet::Claim> =
        subnet::claims(&run).into_iter().filter(|c| name.is_none_or(|n| c.owner == n)).collect();

    // 1. The daemons: recorded ones, then any other recognised by its command line.
    let mut subnets: HashSet<Subnet> = claims.iter().filter_map(|c| c.subnet).collect();
    let mut victims = Vec::new();
    for cluster in &clusters {
        if let Ok(state) = ClusterState::load(&run, cluster) {
            subnets.insert(state.subnet);
            victims.extend(recorded_daemons(&state));
        }
    }
    let known: HashSet<i32> = victims.iter().map(|v| v.proc.pid).collect();
    victims.extend(stray_daemons(&run, name, &subnets).into_iter().filter(|v| !known.contains(&v.proc.pid)));
    removed.extend(victims.iter().map(|v| format!("process {} ({})", v.proc.pid, v.what)));
    problems.extend(daemon::stop(&victims, Duration::ZERO, &mut || {}));

    // 2. Whatever still runs in the namespaces, then the namespaces, hubs last.
    let ours = netns::list_ours(name);
    let pids = netns::pids_in(&ours);
    removed.extend(pids.iter().map(|(ns, pid)| {
        let comm = procfs::comm(*pid).unwrap_or_default();
        format!("process {pid} ({comm}) in {ns}")
    }));
    problems.extend(daemon::kill_pids(&pids, &mut || {}));
    if let Err(err) = netns::delete(&ours) {
        problems.push(err.chain());
    }
    removed.extend(ours.iter().filter(|ns| !netns::exists(ns)).map(|ns| format!("netns {ns}")));

    // 3. State dirs and subnet claims.
    for cluster in &clusters {
        let dir = run.state_dir(cluster);
        match layout::remove_dir_if_present(&dir) {
            Ok(true) => removed.push(format!("state dir {}", dir.display())),
            Ok(false) => {}
            Err(err) => problems.push(err.chain()),
        }
    }
    for claim in claims {
        match fs::remove_file(&claim.path) {
            Ok(()) => removed.push(format!("subnet claim {} ({})", claim.path.display(), claim.owner)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => problems.push(HarnessError::io("remove", &claim.path, err).chain()),
        }
    }

    if problems.is_empty() {
        Ok(removed)
    } else {
        Err(HarnessError::Teardown { name: name.unwrap_or("(all clusters)").to_owned(), problems })
    }
}

/// The running master, slaves and launchers recorded in a state file.
fn recorded_daemons(state: &ClusterState) -> Vec<Victim> {
    let mut victims = Vec::new();
    let cluster = &state.name;
    if let Some(master) = state.master.filter(ProcRef::is_running) {
        victims.push(victim(master, format!("bpmaster of {cluster}")));
    }
    for (node, launcher) in state.slaves.iter().enumerate() {
        let Some(launcher) = launcher.filter(ProcRef::is_running) else {
            continue;
        };
        victims.extend(
            procfs::children(launcher.pid)
                .into_iter()
                .filter_map(ProcRef::of)
                .map(|p| victim(p, format!("bpslave of {cluster} node {node}"))),
        );
        victims.push(victim(launcher, format!("launcher of {cluster} node {node}")));
    }
    victims
}

/// Daemons the harness started but no state file lists (a crash before it was written):
/// `bpmaster` with `--socket` below our clusters dir (of cluster `name`), `bpslave` and its
/// `unshare` launcher with `--master` on one of `subnets` (with `None`, on any 10.77.x.1:2223).
fn stray_daemons(run: &RunDir, name: Option<&str>, subnets: &HashSet<Subnet>) -> Vec<Victim> {
    let socket_prefix = match name {
        Some(name) => format!("{}/", run.state_dir(name).display()),
        None => format!("{}/", run.clusters_dir().display()),
    };
    let endpoints: HashSet<String> = subnets.iter().map(|s| s.master_endpoint().to_string()).collect();
    let is_ours_master = |endpoint: &str| match name {
        Some(_) => endpoints.contains(endpoint),
        None => endpoint.starts_with("10.77.") && endpoint.ends_with(":2223"),
    };
    let mut victims = Vec::new();
    for pid in procfs::pids() {
        let Some(comm) = procfs::comm(pid) else {
            continue;
        };
        if !matches!(comm.as_str(), "bpmaster" | "bpslave" | "unshare") {
            continue;
        }
        let Some(argv) = procfs::cmdline(pid) else {
            continue;
        };
        let value_of =
            |flag: &str| argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).map(String::as_str);
        let ours = match comm.as_str() {
            "bpmaster" => value_of("--socket").is_some_and(|s| s.starts_with(&socket_prefix)),
            _ => value_of("--master").is_some_and(is_ours_master),
        };
        if ours && procfs::is_running(pid) {
            if let Some(proc) = ProcRef::of(pid) {
                victims.push(victim(proc, format!("stray {comm}")));
            }
        }
    }
    victims
}

fn victim(proc: ProcRef, what: String) -> Victim {
    Victim { proc, what, term: false }
}

/// Everything of the harness still present: every `bp-*` network namespace, every running
/// `bpmaster`/`bpslave` process (by `/proc/*/comm`), every state dir and subnet claim. Empty
/// when all clusters are down; the test suite checks this at its end.
pub fn leftovers() -> Vec<String> {
    let run = RunDir::from_env();
    let mut found: Vec<String> =
        netns::list().into_iter().filter(|ns| ns.starts_with(NETNS_PREFIX)).map(|ns| format!("netns {ns}")).collect();
    for pid in procfs::pids() {
        if let Some(comm) = procfs::comm(pid) {
            if DAEMON_COMMS.contains(&comm.as_str()) && procfs::is_running(pid) {
                found.push(format!("process {pid} ({comm})"));
            }
        }
    }
    found.extend(run.cluster_names().into_iter().map(|name| format!("state dir {}", run.state_dir(&name).display())));
    found.extend(
        subnet::claims(&run)
            .into_iter()
            .map(|claim| format!("subnet claim {} ({})", claim.path.display(), claim.owner)),
    );
    found
}
