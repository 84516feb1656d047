//! Bringing a [`Cluster`] up (namespaces, master, slaves, readiness) and tearing it down.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{child_pid, describe_exit, lock, Cluster, BPSTAT_POLL, FAST_POLL, MAX_QUOTED_SLAVE_LOGS};
use crate::bpstat;
use crate::daemon::{self, Victim};
use crate::error::HarnessError;
use crate::layout;
use crate::netns;
use crate::procfs::{self, ProcRef};
use crate::subnet;
use crate::wait::wait_until;

impl Cluster {
    /// The steps of [`Cluster::up`] once the name and the subnet are claimed; on error the
    /// caller tears down whatever was made.
    pub(super) fn bring_up(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + self.up_timeout;
        self.save()?;
        netns::create_cluster(&self.state.name, self.state.subnet, self.state.nodes)?;
        self.start_master_until(deadline)?;
        for node in 0..self.state.nodes {
            self.spawn_slave(node)?;
        }
        self.save()?;
        self.wait_all_up(deadline)
    }

    /// Starts bpmaster and waits for its socket.
    pub(super) fn start_master_until(&mut self, deadline: Instant) -> Result<(), HarnessError> {
        // A stale socket from an earlier master would look like readiness.
        match std::fs::remove_file(&self.socket) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(HarnessError::io("remove stale socket", &self.socket, err)),
        }
        let mut cmd = daemon::master_command(
            &self.state.bin_dir,
            &self.state.hub_netns,
            self.state.subnet,
            &self.socket,
            self.state.nodes,
            self.state.node_timeout_ms,
        );
        if let Some(config) = &self.state.master_config {
            cmd.arg("--config").arg(config);
        }
        let child = daemon::spawn_detached(cmd, &self.master_log())?;
        let pid = child_pid(&child);
        self.state.master = Some(ProcRef::of(pid).unwrap_or(ProcRef { pid, start_time: 0 }));
        *lock(&self.master_child) = Some(child);
        self.save()?;
        let start = Instant::now();
        let ready = wait_until(deadline, FAST_POLL, || {
            if self.socket.exists() {
                return Some(Ok(()));
            }
            self.master_exit().map(|status| {
                Err(HarnessError::DaemonDied {
                    what: "bpmaster".to_owned(),
                    status,
                    logs: daemon::format_logs(&[&self.master_log()]),
                })
            })
        });
        ready.unwrap_or_else(|| {
            Err(HarnessError::Timeout {
                what: format!("the master's socket {}", self.socket.display()),
                waited: start.elapsed(),
                logs: daemon::format_logs(&[&self.master_log()]),
            })
        })
    }

    pub(super) fn spawn_slave(&mut self, node: u32) -> Result<(), HarnessError> {
        let netns = self.node_netns(node).ok_or_else(|| self.no_such_node(node))?.to_owned();
        let cmd = daemon::slave_command(&self.state.bin_dir, &netns, self.state.subnet, node);
        let child = daemon::spawn_detached(cmd, &self.slave_log(node))?;
        let pid = child_pid(&child);
        self.state.slaves[node as usize] = Some(ProcRef::of(pid).unwrap_or(ProcRef { pid, start_time: 0 }));
        lock(&self.launcher_children)[node as usize] = Some(child);
        Ok(())
    }

    pub(super) fn wait_all_up(&self, deadline: Instant) -> Result<(), HarnessError> {
        let start = Instant::now();
        let nodes = self.state.nodes;
        let mut last = "no answer from bpstat yet".to_owned();
        let mut not_up: Vec<u32> = (0..nodes).collect();
        let outcome = wait_until(deadline, BPSTAT_POLL, || {
            if let Some(died) = self.check_daemons() {
                return Some(Err(died));
            }
            match self.node_states() {
                Ok(states) => {
                    if bpstat::all_in(&states, nodes, "up") {
                        return Some(Ok(()));
                    }
                    not_up = (0..nodes).filter(|n| !states.iter().any(|(m, s)| m == n && s == "up")).collect();
                    last = bpstat::summary(&states);
                }
                Err(err) => last = err.chain(),
            }
            None
        });
        outcome.unwrap_or_else(|| {
            Err(HarnessError::Timeout {
                what: format!("all {nodes} nodes of cluster {} to be up (last seen: {last})", self.state.name),
                waited: start.elapsed(),
                logs: self.logs_of(&not_up),
            })
        })
    }

    /// An error if the master or a slave launcher exited.
    pub(super) fn check_daemons(&self) -> Option<HarnessError> {
        if let Some(status) = self.master_exit() {
            return Some(HarnessError::DaemonDied {
                what: "bpmaster".to_owned(),
                status,
                logs: daemon::format_logs(&[&self.master_log()]),
            });
        }
        (0..self.state.nodes).find_map(|node| Some(self.slave_died(node, self.launcher_exit(node)?)))
    }

    pub(super) fn slave_died(&self, node: u32, status: String) -> HarnessError {
        HarnessError::DaemonDied {
            what: format!("bpslave of node {node}"),
            status,
            logs: daemon::format_logs(&[&self.slave_log(node), &self.master_log()]),
        }
    }

    /// How the master ended, if it did.
    pub(super) fn master_exit(&self) -> Option<String> {
        if let Some(child) = lock(&self.master_child).as_mut() {
            return child.try_wait().ok().flatten().map(describe_exit);
        }
        match self.state.master {
            Some(master) if !master.is_running() => Some("gone".to_owned()),
            _ => None,
        }
    }

    /// How node `node`'s launcher ended, if it did.
    pub(super) fn launcher_exit(&self, node: u32) -> Option<String> {
        if let Some(Some(child)) = lock(&self.launcher_children).get_mut(node as usize) {
            return child.try_wait().ok().flatten().map(describe_exit);
        }
        match self.state.slaves.get(node as usize).copied().flatten() {
            Some(launcher) if !launcher.is_running() => Some("gone".to_owned()),
            _ => None,
        }
    }

    /// The master's log and those of (at most a few of) `nodes`.
    pub(super) fn logs_of(&self, nodes: &[u32]) -> String {
        let mut paths = vec![self.master_log()];
        paths.extend(nodes.iter().take(MAX_QUOTED_SLAVE_LOGS).map(|&n| self.slave_log(n)));
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        daemon::format_logs(&refs)
    }

    /// Stops the daemons, kills what is left in the namespaces, deletes them (hub last), removes
    /// the state dir and releases the subnet. Goes on after errors; idempotent.
    pub(super) fn teardown(&mut self) -> Result<(), HarnessError> {
        let mut problems = Vec::new();
        let mut victims = Vec::new();
        if let Some(master) = self.state.master.filter(ProcRef::is_running) {
            victims.push(Victim { proc: master, what: "bpmaster".to_owned(), term: true });
        }
        for (node, launcher) in self.state.slaves.iter().enumerate() {
            let Some(launcher) = launcher.filter(ProcRef::is_running) else {
                continue;
            };
            // unshare blocks SIGTERM: bpslave gets it, the launcher only the final SIGKILL.
            victims.extend(procfs::children(launcher.pid).into_iter().filter_map(|pid| {
                Some(Victim { proc: ProcRef::of(pid)?, what: format!("bpslave of node {node}"), term: true })
            }));
            victims.push(Victim { proc: launcher, what: format!("launcher of node {node}"), term: false });
        }
        problems.extend(daemon::stop(&victims, self.stop_grace, &mut || self.reap_children()));

        let ours = netns::list_ours(Some(&self.state.name));
        let pids = netns::pids_in(&ours);
        problems.extend(daemon::kill_pids(&pids, &mut || self.reap_children()));
        if let Err(err) = netns::delete(&ours) {
            problems.push(err.chain());
        }
        if let Err(err) = layout::remove_dir_if_present(&self.state_dir) {
            problems.push(err.chain());
        }
        if let Err(err) = subnet::release(&self.run, self.state.subnet, &self.state.name) {
            problems.push(err.chain());
        }
        self.reap_children();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(HarnessError::Teardown { name: self.state.name.clone(), problems })
        }
    }

    /// Collects the exit status of our own children that have exited, so no zombie stays.
    pub(super) fn reap_children(&self) {
        if let Some(child) = lock(&self.master_child).as_mut() {
            let _ = child.try_wait();
        }
        for child in lock(&self.launcher_children).iter_mut().flatten() {
            let _ = child.try_wait();
        }
    }
}
