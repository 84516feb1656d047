//! One remote process in the master's process table.

use super::ConnId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    Starting,
    Running,
    Stopped,
}

impl ProcState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Running => "running",
            ProcState::Stopped => "stopped",
        }
    }
}

/// What a client asked to run, in domain terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnSpec {
    pub node: i32,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub umask: u32,
    pub stdin_null: bool,
    /// The global PID asked for (the ghost's own PID), if any.
    pub pid: Option<i32>,
}

#[derive(Clone, Debug)]
pub struct Proc {
    pub node: u32,
    pub conn: ConnId,
    pub node_pid: Option<i32>,
    /// The global PID: its ghost's PID on the master, if it has a ghost.
    pub pid: Option<i32>,
    pub argv: Vec<Vec<u8>>,
    pub state: ProcState,
    /// Its ghost was stopped by SIGSTOP, which we passed on: the stop the
    /// node reports next is that one, and the ghost is already stopped.
    pub ghost_stopped: bool,
    /// The process that forked it on the node (None for what a client asked
    /// for).
    pub parent: Option<super::ProcId>,
    /// Who it runs as (checked against a node's permissions when it moves),
    /// with the PID of the client that asked for it.
    pub cred: super::Cred,
    /// It is being restored on the node behind this link (bproc_move); it
    /// still runs where it was until that node has it.
    pub moving_to: Option<super::ConnId>,
    /// The link it moved away from: the last of its output may still come
    /// from there.
    pub prev_conn: Option<super::ConnId>,
}
