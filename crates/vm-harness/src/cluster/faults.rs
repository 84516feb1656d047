//! Fault injection on a [`Cluster`]: kill and restart daemons, cut and restore links.

use std::time::Instant;

use super::{Cluster, FAST_POLL, SLAVE_EXIT_WAIT};
use crate::daemon;
use crate::error::HarnessError;
use crate::netns;
use crate::procfs::ProcRef;
use crate::sys;
use crate::wait::wait_until;

impl Cluster {
    /// Sends `signal` (e.g. `libc::SIGKILL`) to node `node`'s `bpslave` and waits until its
    /// launcher has exited, which happens when bpslave is gone. A signal that does not end
    /// bpslave makes this time out.
    pub fn kill_slave(&self, node: u32, signal: i32) -> Result<(), HarnessError> {
        self.check_node(node)?;
        let pid = self.slave_pid(node).ok_or_else(|| self.not_running(node))?;
        let launcher = self.launcher(node);
        sys::send_signal(pid, signal)?;
        let Some(launcher) = launcher else {
            return Ok(());
        };
        let gone = wait_until(Instant::now() + SLAVE_EXIT_WAIT, FAST_POLL, || {
            self.reap_children();
            (!launcher.is_running()).then_some(())
        });
        gone.ok_or_else(|| HarnessError::Timeout {
            what: format!("the slave of node {node} of cluster {} to exit after signal {signal}", self.state.name),
            waited: SLAVE_EXIT_WAIT,
            logs: daemon::format_logs(&[&self.slave_log(node)]),
        })
    }

    /// Starts node `node`'s slave again (after [`Cluster::kill_slave`] or a crash) and waits
    /// until its `bpslave` process exists; does not wait for the node to be up (use
    /// [`Cluster::wait_node_state`]).
    pub fn start_slave(&mut self, node: u32) -> Result<(), HarnessError> {
        self.check_node(node)?;
        if let Some(launcher) = self.launcher(node) {
            return Err(HarnessError::AlreadyRunning {
                cluster: self.state.name.clone(),
                what: format!("the slave of node {node}"),
                pid: launcher.pid,
            });
        }
        self.reap_children();
        self.spawn_slave(node)?;
        self.save()?;
        let started = wait_until(Instant::now() + SLAVE_EXIT_WAIT, FAST_POLL, || {
            if self.slave_pid(node).is_some() {
                return Some(Ok(()));
            }
            self.launcher_exit(node).map(|status| Err(self.slave_died(node, status)))
        });
        started.unwrap_or_else(|| {
            Err(HarnessError::Timeout {
                what: format!("the launcher of node {node} to start bpslave"),
                waited: SLAVE_EXIT_WAIT,
                logs: daemon::format_logs(&[&self.slave_log(node)]),
            })
        })
    }

    /// Sends `signal` to `bpmaster` and waits until it has exited (for master-restart tests).
    pub fn kill_master(&self, signal: i32) -> Result<(), HarnessError> {
        let master = self.state.master.filter(ProcRef::is_running).ok_or_else(|| HarnessError::NotRunning {
            cluster: self.state.name.clone(),
            what: "the master".to_owned(),
        })?;
        sys::send_signal(master.pid, signal)?;
        let gone = wait_until(Instant::now() + SLAVE_EXIT_WAIT, FAST_POLL, || {
            self.reap_children();
            (!master.is_running()).then_some(())
        });
        gone.ok_or_else(|| HarnessError::Timeout {
            what: format!("the master to exit after signal {signal}"),
            waited: SLAVE_EXIT_WAIT,
            logs: daemon::format_logs(&[&self.master_log()]),
        })
    }

    /// Starts `bpmaster` again (after [`Cluster::kill_master`] or a crash) and waits until its
    /// socket exists; does not wait for nodes (use [`Cluster::wait_node_state`]).
    pub fn start_master(&mut self) -> Result<(), HarnessError> {
        if let Some(pid) = self.master_pid() {
            return Err(HarnessError::AlreadyRunning {
                cluster: self.state.name.clone(),
                what: "the master".to_owned(),
                pid,
            });
        }
        self.reap_children();
        self.start_master_until(Instant::now() + self.up_timeout)
    }

    /// Cuts node `node`'s wire: sets the hub end of its veth down. Packets are dropped, no
    /// connection is reset.
    pub fn cut_link(&self, node: u32) -> Result<(), HarnessError> {
        self.check_node(node)?;
        netns::set_link(&self.state.hub_netns, &netns::hub_veth(node), false)
    }

    /// Restores node `node`'s wire cut by [`Cluster::cut_link`].
    pub fn restore_link(&self, node: u32) -> Result<(), HarnessError> {
        self.check_node(node)?;
        netns::set_link(&self.state.hub_netns, &netns::hub_veth(node), true)
    }
}
