//! vm-harness brings up a BProc cluster on one Linux machine: a hub network namespace with a
//! bridge and `bpmaster`, and N namespace nodes, each a network namespace wired to the bridge by a
//! veth pair, running `bpslave` in its own PID, mount, UTS, IPC and cgroup namespaces. The demo,
//! the end-to-end tests and the benchmarks all run on it. It needs root, iproute2's `ip` and
//! util-linux's `unshare` (and `nsenter` for [`Cluster::node_command`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use vm_harness::{Cluster, ClusterSpec};
//!
//! # fn main() -> Result<(), vm_harness::HarnessError> {
//! let cluster = Cluster::up(ClusterSpec::new(vm_harness::unique_name("t"), 4))?;
//! let status = cluster.command("bpsh").args(["0", "true"]).status();
//! cluster.cut_link(2)?;
//! cluster.wait_node_state(2, "down", Duration::from_secs(10))?;
//! cluster.down()?; // or just drop it
//! # let _ = status;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `cluster`: [`Cluster`] and [`ClusterSpec`]: creating, attaching, paths and pids; with
//!   `cluster/lifecycle.rs` (bring-up and teardown), `cluster/faults.rs` (kill or restart a
//!   daemon, cut a link) and `cluster/query.rs` (node states, host pids of node processes).
//! - `gc`: [`gc`] removes what crashed clusters left; [`leftovers`] lists it.
//! - `netns`: the namespaces, bridge and veths, via `ip -batch`; pids in a namespace.
//! - `daemon`: starting daemons detached, stopping them (SIGTERM, grace, SIGKILL), log tails.
//! - `state`: `state.json`, what a cluster is made of, for `down`, `gc` and `status`.
//! - `layout`: the paths below `$BPROC_RUN_DIR` (default `/run/bproc`).
//! - `subnet`: [`Subnet`] addresses and the atomic subnet claims.
//! - `names`: cluster names, namespace names, [`unique_name`].
//! - `bins`: finding `bpmaster`, `bpslave`, `bpstat`.
//! - `bpstat`: parsing `bpstat --json`.
//! - `procfs`: reading `/proc` (state, children, `NSpid`, namespaces).
//! - `command`: running helper commands with useful errors.
//! - `sys`: signals and `setsid`, the crate's only `unsafe`.
//! - `wait`: [`wait_until`], polling with a deadline instead of sleeping.
//! - `error`: [`HarnessError`].
//!
//! The binary `bpcluster` (`src/bin/bpcluster.rs`) is the command-line face: `up`, `down`,
//! `status`, `gc`.

mod bins;
mod bpstat;
mod cluster;
mod command;
mod daemon;
mod error;
mod gc;
mod layout;
mod names;
mod netns;
mod procfs;
mod state;
mod subnet;
mod sys;
mod wait;

pub use bins::{default_bin_dir, BIN_DIR_ENV, REQUIRED_BINARIES};
pub use bpstat::NodeStatus;
pub use cluster::{Cluster, ClusterSpec, SOCKET_ENV};
pub use error::HarnessError;
pub use gc::{gc, leftovers};
pub use layout::{run_dir, DEFAULT_RUN_DIR, RUN_DIR_ENV};
pub use names::{unique_name, validate_name, MAX_NAME_LEN};
pub use subnet::{Subnet, MASTER_PORT, MAX_NODES};
pub use wait::{wait_for, wait_until};
