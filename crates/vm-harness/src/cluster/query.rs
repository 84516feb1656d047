//! Queries on a [`Cluster`]: node states through `bpstat`, host pids of node processes.

use std::time::{Duration, Instant};

use super::{Cluster, BPSTAT_POLL};
use crate::bpstat::{self, NodeStatus};
use crate::command;
use crate::daemon;
use crate::error::HarnessError;
use crate::procfs;
use crate::wait::wait_until;

impl Cluster {
    /// Every node as `bpstat --json` reports it.
    pub fn node_status(&self) -> Result<Vec<NodeStatus>, HarnessError> {
        let mut cmd = self.command("bpstat");
        cmd.arg("--json");
        bpstat::parse(&command::run(&mut cmd, None)?)
    }

    /// `(node, state)` of every node, sorted by node, from `bpstat --json`.
    pub fn node_states(&self) -> Result<Vec<(u32, String)>, HarnessError> {
        Ok(bpstat::states(&self.node_status()?))
    }

    /// Polls `bpstat` until node `node` is in `state` (e.g. "down"); returns how long that took.
    pub fn wait_node_state(&self, node: u32, state: &str, timeout: Duration) -> Result<Duration, HarnessError> {
        self.check_node(node)?;
        let start = Instant::now();
        let mut last = "nothing yet".to_owned();
        let reached = wait_until(start + timeout, BPSTAT_POLL, || {
            match self.node_states() {
                Ok(states) => match states.iter().find(|(n, _)| *n == node) {
                    Some((_, s)) if s == state => return Some(start.elapsed()),
                    Some((_, s)) => last = s.clone(),
                    None => last = "not listed".to_owned(),
                },
                Err(err) => last = err.chain(),
            }
            None
        });
        reached.ok_or_else(|| HarnessError::Timeout {
            what: format!("node {node} of cluster {} to be {state} (last seen: {last})", self.state.name),
            waited: timeout,
            logs: daemon::format_logs(&[&self.master_log(), &self.slave_log(node)]),
        })
    }

    /// The host pid of the process whose pid in node `node`'s PID namespace is `node_pid`.
    ///
    /// Scans the `NSpid` lines of `/proc/*/status`: a process in the node's namespace (the one of
    /// its `bpslave`, checked by inode) or in a namespace nested below it (checked by ancestry)
    /// has `node_pid` at the node's level. `None` if the slave or the process is not running.
    pub fn host_pid(&self, node: u32, node_pid: i32) -> Option<i32> {
        let slave = self.slave_pid(node)?;
        let slave_ns = procfs::ns_id(slave, "pid")?;
        let level = procfs::nspid(slave)?.len();
        procfs::pids().into_iter().find(|&pid| {
            let Some(ids) = procfs::nspid(pid) else {
                return false;
            };
            if ids.len() < level || ids[level - 1] != node_pid {
                return false;
            }
            if ids.len() == level {
                procfs::ns_id(pid, "pid") == Some(slave_ns)
            } else {
                descends_from(pid, slave)
            }
        })
    }
}

/// Whether `ancestor` is found walking up from `pid` through parents.
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut current = pid;
    // Bounded: a chain longer than this is not a node's process tree.
    for _ in 0..256 {
        match procfs::stat(current) {
            Some(stat) if stat.ppid == ancestor => return true,
            Some(stat) if stat.ppid > 1 => current = stat.ppid,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn ancestry() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let mut child = Command::new("sleep").arg("5").spawn().expect("spawn");
        let pid = super::super::child_pid(&child);
        assert!(descends_from(pid, me));
        assert!(!descends_from(me, pid));
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}
