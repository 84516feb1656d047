//! [`Cluster`]: one running cluster (hub + N namespace nodes + daemons), a guard that tears it
//! down when dropped; and [`ClusterSpec`], what to bring up.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

mod faults;
mod lifecycle;
mod query;

use crate::bins;
use crate::daemon;
use crate::error::{error_chain, HarnessError};
use crate::layout::{self, RunDir};
use crate::names;
use crate::netns;
use crate::procfs::{self, ProcRef};
use crate::state::ClusterState;
use crate::subnet::{self, Subnet, MAX_NODES};

/// Environment variable through which every tool finds the master's socket.
pub const SOCKET_ENV: &str = "BPROC_SOCKET";

/// Poll interval while waiting for the master's socket or a launcher's exit.
const FAST_POLL: Duration = Duration::from_millis(5);

/// Poll interval for `bpstat` (each poll runs the tool).
const BPSTAT_POLL: Duration = Duration::from_millis(10);

/// How long a killed slave's launcher may take to exit, or a started one to fork its bpslave.
const SLAVE_EXIT_WAIT: Duration = Duration::from_secs(10);

/// Most slave logs quoted in one error message.
const MAX_QUOTED_SLAVE_LOGS: usize = 4;

/// What cluster to bring up. Make one with [`ClusterSpec::new`] and change fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Cluster name: 1-12 chars of `[a-z0-9-]` starting with a letter (see [`crate::unique_name`]).
    pub name: String,
    /// Number of nodes, 1..=240.
    pub nodes: u32,
    /// Passed to `bpmaster --node-timeout-ms`: how long a silent node stays up.
    pub node_timeout_ms: u64,
    /// Where `bpmaster`, `bpslave` and `bpstat` are; `None` = [`crate::default_bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// How long `up` waits for the master's socket and then for every node to be up.
    pub up_timeout: Duration,
    /// How long daemons get to exit after SIGTERM before SIGKILL, at teardown.
    pub stop_grace: Duration,
    /// A configuration file for `bpmaster --config` (node permissions, say).
    pub master_config: Option<PathBuf>,
}

impl ClusterSpec {
    /// Default `node_timeout_ms`.
    pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 3000;
    /// Default `up_timeout`.
    pub const DEFAULT_UP_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default `stop_grace`.
    pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(2);

    /// A spec with the defaults: node timeout 3000 ms, default bin dir, 30 s to come up, 2 s
    /// grace at teardown.
    pub fn new(name: impl Into<String>, nodes: u32) -> Self {
        ClusterSpec {
            name: name.into(),
            nodes,
            node_timeout_ms: Self::DEFAULT_NODE_TIMEOUT_MS,
            bin_dir: None,
            up_timeout: Self::DEFAULT_UP_TIMEOUT,
            stop_grace: Self::DEFAULT_STOP_GRACE,
            master_config: None,
        }
    }
}

/// A running cluster: the hub namespace `bp-NAME-hub` with `bpmaster`, and nodes `bp-NAME-N`
/// each with a `bpslave` in its own PID, mount, UTS, IPC and cgroup namespaces.
///
/// A cluster made by [`Cluster::up`] is torn down when dropped (errors go to stderr); use
/// [`Cluster::down`] to see them, or [`Cluster::into_detached`] to leave it running. One found
/// by [`Cluster::attach`] is left running when dropped.
///
/// All methods take `&self` except the ones that start daemons, so a `&Cluster` can be shared
/// between threads.
pub struct Cluster {
    run: RunDir,
    state: ClusterState,
    state_dir: PathBuf,
    socket: PathBuf,
    /// Our own child handles, to reap them (none for an attached cluster).
    master_child: Mutex<Option<Child>>,
    launcher_children: Mutex<Vec<Option<Child>>>,
    up_timeout: Duration,
    stop_grace: Duration,
    teardown_on_drop: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.state.name)
            .field("nodes", &self.state.nodes)
            .field("subnet", &self.state.subnet)
            .field("socket", &self.socket)
            .field("teardown_on_drop", &self.teardown_on_drop)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Makes the namespaces, starts the master and the slaves, and waits until `bpstat` shows
    /// every node up. On failure everything made so far is removed again, and the error quotes
    /// the tails of the daemons' logs.
    pub fn up(spec: ClusterSpec) -> Result<Cluster, HarnessError> {
        names::validate_name(&spec.name)?;
        if spec.nodes == 0 || spec.nodes > MAX_NODES {
            return Err(HarnessError::InvalidSpec {
                reason: format!("{} nodes asked, 1..={MAX_NODES} possible", spec.nodes),
            });
        }
        let bin_dir = bins::resolve(spec.bin_dir.as_deref())?;
        let run = RunDir::from_env();
        run.ensure()?;
        let state_dir = run.state_dir(&spec.name);
        if state_dir.exists() {
            return Err(HarnessError::ClusterExists { name: spec.name, path: state_dir });
        }
        let stale = netns::list_ours(Some(&spec.name));
        if !stale.is_empty() {
            return Err(HarnessError::Leftovers {
                name: spec.name,
                what: format!("network namespaces {}", stale.join(" ")),
            });
        }
        // Creating the state dir claims the name (two racing `up`s: one wins here).
        match layout::create_dir_0755(&state_dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(HarnessError::ClusterExists { name: spec.name, path: state_dir })
            }
            Err(err) => return Err(HarnessError::io("create directory", state_dir, err)),
        }
        let subnet = match subnet::claim(&run, &spec.name) {
            Ok(subnet) => subnet,
            Err(err) => {
                let _ = layout::remove_dir_if_present(&state_dir);
                return Err(err);
            }
        };
        let state = ClusterState {
            name: spec.name.clone(),
            subnet,
            nodes: spec.nodes,
            node_timeout_ms: spec.node_timeout_ms,
            bin_dir,
            master_config: spec.master_config.clone(),
            hub_netns: names::hub_netns(&spec.name),
            node_netns: (0..spec.nodes).map(|n| names::node_netns(&spec.name, n)).collect(),
            master: None,
            slaves: vec![None; spec.nodes as usize],
        };
        let mut cluster = Cluster::from_state(run, state, spec.up_timeout, spec.stop_grace, true);
        if let Err(err) = cluster.bring_up() {
            cluster.teardown_on_drop = false;
            if let Err(cleanup) = cluster.teardown() {
                eprintln!("vm-harness: after a failed up: {}", cleanup.chain());
            }
            return Err(err);
        }
        Ok(cluster)
    }

    /// The cluster named `name`, as its `state.json` describes it (e.g. one made by
    /// `bpcluster up`). Dropping the result leaves the cluster running; [`Cluster::down`] removes
    /// it.
    pub fn attach(name: &str) -> Result<Cluster, HarnessError> {
        names::validate_name(name)?;
        let run = RunDir::from_env();
        let mut state = ClusterState::load(&run, name)?;
        state.slaves.resize(state.nodes as usize, None);
        Ok(Cluster::from_state(run, state, ClusterSpec::DEFAULT_UP_TIMEOUT, ClusterSpec::DEFAULT_STOP_GRACE, false))
    }

    /// Every cluster that has a state dir, sorted by name, each attached (see
    /// [`Cluster::attach`]) or with the reason it could not be.
    pub fn list() -> Vec<(String, Result<Cluster, HarnessError>)> {
        RunDir::from_env()
            .cluster_names()
            .into_iter()
            .map(|name| {
                let cluster = Cluster::attach(&name);
                (name, cluster)
            })
            .collect()
    }

    fn from_state(
        run: RunDir,
        state: ClusterState,
        up_timeout: Duration,
        stop_grace: Duration,
        teardown_on_drop: bool,
    ) -> Cluster {
        let nodes = state.nodes as usize;
        Cluster {
            state_dir: run.state_dir(&state.name),
            socket: run.socket(&state.name),
            run,
            state,
            master_child: Mutex::new(None),
            launcher_children: Mutex::new((0..nodes).map(|_| None).collect()),
            up_timeout,
            stop_grace,
            teardown_on_drop,
        }
    }

    /// Leaves the cluster running when this value is dropped (for `bpcluster up`).
    #[must_use]
    pub fn into_detached(mut self) -> Cluster {
        self.teardown_on_drop = false;
        self
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The number of nodes.
    pub fn nodes(&self) -> u32 {
        self.state.nodes
    }

    /// The cluster's subnet.
    pub fn subnet(&self) -> Subnet {
        self.state.subnet
    }

    /// The master's endpoint for slaves, 10.77.IDX.1:2223 (inside the hub namespace).
    pub fn master_addr(&self) -> SocketAddrV4 {
        self.state.subnet.master_endpoint()
    }

    /// Node `node`'s address, 10.77.IDX.(10+node), if the node exists.
    pub fn node_addr(&self, node: u32) -> Option<Ipv4Addr> {
        (node < self.state.nodes).then(|| self.state.subnet.node_addr(node)).flatten()
    }

    /// The hub namespace's name, `bp-NAME-hub`.
    pub fn hub_netns(&self) -> &str {
        &self.state.hub_netns
    }

    /// Node `node`'s network namespace, `bp-NAME-N` (for `ip netns exec`).
    pub fn node_netns(&self, node: u32) -> Option<&str> {
        self.state.node_netns.get(node as usize).map(String::as_str)
    }

    /// The master's Unix socket; [`Cluster::command`] passes it as `BPROC_SOCKET`.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `/run/bproc/clusters/NAME` (or below `$BPROC_RUN_DIR`).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The master's log (stdout and stderr).
    pub fn master_log(&self) -> PathBuf {
        self.run.master_log(&self.state.name)
    }

    /// Node `node`'s slave log (stdout and stderr).
    pub fn slave_log(&self, node: u32) -> PathBuf {
        self.run.slave_log(&self.state.name, node)
    }

    /// Where the bproc binaries are.
    pub fn bin_dir(&self) -> &Path {
        &self.state.bin_dir
    }

    /// `BIN/name`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.state.bin_dir.join(name)
    }

    /// A command for `BIN/program` with `BPROC_SOCKET` set to this cluster's socket.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin(program));
        cmd.env(SOCKET_ENV, &self.socket);
        cmd
    }

    /// A command that runs `program` (looked up in `PATH` unless it has a `/`) inside node
    /// `node`'s namespaces, as a child of nothing bproc knows about: `nsenter --target SLAVE
    /// --all -- program`. For setting up and inspecting a node, not for running bproc jobs.
    pub fn node_command(&self, node: u32, program: &str) -> Result<Command, HarnessError> {
        self.check_node(node)?;
        let slave = self.slave_pid(node).ok_or_else(|| self.not_running(node))?;
        let mut cmd = Command::new("nsenter");
        cmd.args(["--target", &slave.to_string(), "--all", "--", program]);
        Ok(cmd)
    }

    /// The host pid of `bpmaster`, if it runs.
    pub fn master_pid(&self) -> Option<i32> {
        self.state.master.filter(ProcRef::is_running).map(|m| m.pid)
    }

    /// The host pid of node `node`'s `bpslave` (PID 1 of the node's PID namespace), if it runs.
    pub fn slave_pid(&self, node: u32) -> Option<i32> {
        let launcher = self.launcher(node)?;
        procfs::children(launcher.pid).into_iter().find(|&pid| procfs::is_running(pid))
    }

    /// The running `unshare` launcher of node `node`'s slave.
    fn launcher(&self, node: u32) -> Option<ProcRef> {
        self.state.slaves.get(node as usize).copied().flatten().filter(ProcRef::is_running)
    }

    /// Tears the cluster down and says what could not be removed, if anything.
    pub fn down(mut self) -> Result<(), HarnessError> {
        self.teardown_on_drop = false;
        self.teardown()
    }

    // ---- small helpers ----

    fn save(&self) -> Result<(), HarnessError> {
        self.state.save(&self.run)
    }

    fn check_node(&self, node: u32) -> Result<(), HarnessError> {
        if node < self.state.nodes {
            Ok(())
        } else {
            Err(self.no_such_node(node))
        }
    }

    fn no_such_node(&self, node: u32) -> HarnessError {
        HarnessError::NoSuchNode { cluster: self.state.name.clone(), node, nodes: self.state.nodes }
    }

    fn not_running(&self, node: u32) -> HarnessError {
        HarnessError::NotRunning { cluster: self.state.name.clone(), what: format!("the slave of node {node}") }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failing test shows the daemons' last words with its own output.
        if std::thread::panicking() && self.teardown_on_drop {
            let logs: Vec<PathBuf> =
                std::iter::once(self.master_log()).chain((0..self.state.nodes).map(|n| self.slave_log(n))).collect();
            eprintln!(
                "vm-harness: the cluster's logs{}",
                daemon::format_logs(&logs.iter().map(PathBuf::as_path).collect::<Vec<_>>())
            );
        }
        if self.teardown_on_drop {
            self.teardown_on_drop = false;
            if let Err(err) = self.teardown() {
                eprintln!("vm-harness: {}", error_chain(&err));
            }
        }
    }
}

/// Locks a mutex, ignoring poisoning (the data is child handles, valid whatever panicked).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn child_pid(child: &Child) -> i32 {
    // Linux pids are at most 2^22.
    i32::try_from(child.id()).unwrap_or(i32::MAX)
}

fn describe_exit(status: ExitStatus) -> String {
    status.to_string()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults() {
        let spec = ClusterSpec::new("t1", 4);
        assert_eq!(spec.name, "t1");
        assert_eq!(spec.nodes, 4);
        assert_eq!(spec.node_timeout_ms, 3000);
        assert_eq!(spec.bin_dir, None);
        assert_eq!(spec.up_timeout, Duration::from_secs(30));
    }

    #[test]
    fn up_rejects_bad_specs_before_touching_anything() {
        for spec in [ClusterSpec::new("Bad", 1), ClusterSpec::new("ok", 0), ClusterSpec::new("ok", MAX_NODES + 1)] {
            let err = Cluster::up(spec).expect_err("must fail");
            assert!(matches!(err, HarnessError::InvalidName { .. } | HarnessError::InvalidSpec { .. }), "{err}");
        }
    }

    #[test]
    fn cluster_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Cluster>();
    }
}
