//! The one error type of the harness.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while making, driving or removing a cluster.
///
/// Variants carry the context needed to act on them (which path, which command, which node);
/// the underlying cause, where there is one, is the error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The cluster name is not 1-12 chars of `[a-z0-9-]` starting with a letter.
    #[error("invalid cluster name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The spec asks for something the harness cannot make (e.g. 0 or more than 240 nodes).
    #[error("invalid cluster spec: {reason}")]
    InvalidSpec {
        /// What is wrong with it.
        reason: String,
    },

    /// A node number outside `0..nodes`.
    #[error("cluster {cluster} has no node {node} (it has {nodes} nodes)")]
    NoSuchNode {
        /// The cluster's name.
        cluster: String,
        /// The node asked for.
        node: u32,
        /// How many nodes the cluster has.
        nodes: u32,
    },

    /// A cluster of that name already has a state directory.
    #[error(
        "cluster {name} already exists ({path}): run `bpcluster down --name {name}` or `bpcluster gc --name {name}`"
    )]
    ClusterExists {
        /// The cluster's name.
        name: String,
        /// Its state directory.
        path: PathBuf,
    },

    /// Network namespaces of an earlier cluster of that name are still there.
    #[error("leftovers of an earlier cluster {name} exist ({what}): run `bpcluster gc --name {name}`")]
    Leftovers {
        /// The cluster's name.
        name: String,
        /// What was found.
        what: String,
    },

    /// No state directory for that name.
    #[error("no cluster named {name} (no {path})")]
    NoSuchCluster {
        /// The name asked for.
        name: String,
        /// The state file that is missing.
        path: PathBuf,
    },

    /// Every subnet 10.77.1.0/24 ..= 10.77.254.0/24 is claimed.
    #[error(
        "no free subnet: all of 10.77.1-254.0/24 are claimed in {dir} (stale claims are removed by `bpcluster gc`)"
    )]
    NoFreeSubnet {
        /// The directory holding the claims.
        dir: PathBuf,
    },

    /// A daemon or tool binary is missing from the bin dir.
    #[error("{program} not found in {dir}: build them with cargo build --release (or point BPROC_BIN_DIR at them)")]
    MissingBinary {
        /// The missing program.
        program: String,
        /// Where it was looked for.
        dir: PathBuf,
    },

    /// A file system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A command could not be started at all.
    #[error("cannot run {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },

    /// `state.json` cannot be read or written as JSON.
    #[error("bad cluster state file {path}")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },

    /// `bpstat --json` printed something that is not the expected JSON.
    #[error("cannot parse the output of `bpstat --json`: {output:?}")]
    BpstatFormat {
        /// What it printed (possibly cut).
        output: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },

    /// Sending a signal failed for another reason than "no such process".
    #[error("cannot send signal {signal} to pid {pid}")]
    Signal {
        /// The target.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The cause.
        #[source]
        source: nix::errno::Errno,
    },

    /// A daemon exited while the harness was waiting for it to become ready.
    #[error("{what} exited before the cluster was ready ({status}){logs}")]
    DaemonDied {
        /// Which daemon, e.g. "bpmaster" or "bpslave of node 3".
        what: String,
        /// How it ended, as far as known.
        status: String,
        /// The tails of the relevant logs, starting with a newline (or empty).
        logs: String,
    },

    /// A wait with a deadline ran out.
    #[error("timed out after {waited:.2?} waiting for {what}{logs}")]
    Timeout {
        /// What was awaited, with the last state seen.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// The tails of the relevant logs, starting with a newline (or empty).
        logs: String,
    },

    /// A daemon that should be running is not (e.g. for `kill_slave`).
    #[error("{what} of cluster {cluster} is not running")]
    NotRunning {
        /// The cluster's name.
        cluster: String,
        /// Which daemon, e.g. "the slave of node 2".
        what: String,
    },

    /// A daemon that should be started is already running (e.g. for `start_slave`).
    #[error("{what} of cluster {cluster} is already running (pid {pid})")]
    AlreadyRunning {
        /// The cluster's name.
        cluster: String,
        /// Which daemon, e.g. "the slave of node 2".
        what: String,
        /// Its pid (for a slave, the pid of its `unshare` launcher).
        pid: i32,
    },

    /// `ip netns del` succeeded but the namespaces are still there.
    #[error("network namespaces still present after `ip netns del`: {}", netns.join(" "))]
    NetnsLeft {
        /// The namespaces left.
        netns: Vec<String>,
    },

    /// Teardown finished but could not remove everything.
    #[error("teardown of cluster {name} left: {}", problems.join("; "))]
    Teardown {
        /// The cluster's name.
        name: String,
        /// What was left, one entry per problem.
        problems: Vec<String>,
    },
}

impl HarnessError {
    /// The message of this error and of every error in its `source()` chain, joined by ": ".
    pub fn chain(&self) -> String {
        error_chain(self)
    }

    /// Shorthand for [`HarnessError::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        HarnessError::Io { action, path: path.into(), source }
    }
}

/// The message of `err` and of every error in its `source()` chain, joined by ": ".
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_includes_sources() {
        let err = HarnessError::io("open log", "/x/y.log", io::Error::new(io::ErrorKind::NotFound, "no such file"));
        assert_eq!(err.to_string(), "cannot open log /x/y.log");
        assert_eq!(err.chain(), "cannot open log /x/y.log: no such file");
    }
}
