//! The master's pure engine: the node table and the process table.
//!
//! Events come in as method calls (a slave attached, a heartbeat, a tick of
//! the clock, a spawn request, a process event); what the runtime must do
//! comes out as [`Effect`]s. No sockets, timers or system calls live here,
//! so every rule is unit-tested without root.

mod node;
mod process;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use node::{Link, Node, NodeState, Perms};
pub use process::{Proc, ProcState, SpawnSpec};

/// Identifies one connection of a slave (a node that reconnects gets a new one).
pub type ConnId = u64;
/// Identifies one remote process for its whole life.
pub type ProcId = u64;

/// Who asked, as the kernel told us (SO_PEERCRED and /proc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub pid: i32,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub nodes: u32,
    pub node_timeout: Duration,
    pub default_perms: Perms,
    /// The front end is a node too (number -1, a PID namespace of its own
    /// on the master's machine), so that processes can move back to it.
    pub front_end: bool,
}

/// The node number of the front end (BProc's `BPROC_NODE_MASTER`).
pub const FRONT_END: i32 = -1;
/// How a slave serving the front end registers (-1 as a u32).
pub const FRONT_END_SLAVE: u32 = u32::MAX;

/// What the runtime must do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Ask the slave on `conn` to start process `id`.
    Spawn { conn: ConnId, id: ProcId, cred: Cred, spec: SpawnSpec },
    /// Deliver a signal to a process on the slave on `conn`.
    Signal { conn: ConnId, id: ProcId, signo: i32 },
    /// The process died with its node: its client sees a death by SIGKILL.
    ProcLost { id: ProcId },
    /// The node a process was moving to is gone: the move failed (the
    /// process runs on where it was).
    MoveAborted { id: ProcId },
    /// Close the link to a slave.
    DropSlave { conn: ConnId, reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpawnError {
    #[error("node {node}: no such node (the cluster has nodes 0-{last})", last = .count.saturating_sub(1))]
    NoSuchNode { node: i32, count: u32 },
    #[error("node {node} is {state}")]
    NodeNotUp { node: u32, state: NodeState },
    #[error("node {node}: permission denied for uid {uid}")]
    PermissionDenied { node: u32, uid: u32 },
    #[error("empty command line")]
    EmptyArgv,
}

/// Why a change of a node's permissions was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PermsError {
    #[error("node {node}: no such node (the cluster has nodes 0-{last})", last = .count.saturating_sub(1))]
    NoSuchNode { node: i32, count: u32 },
    #[error("only root changes a node's permissions (uid {uid} asked)")]
    NotRoot { uid: u32 },
    #[error("mode {mode:o}: a node's mode has only execute bits (0111)")]
    BadMode { mode: u32 },
}

/// A change of a node's permissions: each part that is set replaces the
/// node's (BProc's bproc_chmod, chown and chgrp).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PermsChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoveError {
    #[error("no process {id}")]
    NoSuchProcess { id: ProcId },
    #[error("process {id} is not on the asking node")]
    NotFromItsNode { id: ProcId },
    #[error("process {id} is moving already")]
    AlreadyMoving { id: ProcId },
    #[error(transparent)]
    Spawn(SpawnError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    #[error("node {node} is not in this cluster (it has {count} nodes)")]
    NoSuchNode { node: u32, count: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("unknown connection {conn}")]
    UnknownConn { conn: ConnId },
    #[error("process {id} does not belong to this node's link")]
    NotOurs { id: ProcId },
    #[error("forked process id {id:#x} is outside this link's range or taken")]
    BadForkId { id: ProcId },
}

/// What the runtime does with a process event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventOutcome {
    /// The process is gone from the table.
    pub gone: bool,
    /// Pass the event on to the client (the ghost) of this process: the
    /// process itself, or for a fork its parent, whose ghost forks the
    /// child's.
    pub tell: Option<ProcId>,
}

/// What a process event from a slave means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEventKind {
    Started {
        node_pid: i32,
    },
    ExecFailed,
    Stopped,
    Continued,
    Exited,
    /// Process `parent` forked the event's process, `node_pid` on the node.
    Forked {
        parent: ProcId,
        node_pid: i32,
    },
    /// The process exec'd this command line.
    Execed {
        argv: Vec<Vec<u8>>,
    },
}

/// Where node `node` (of `nodes`) starts numbering the processes forked on
/// it, so that a forked process's node PID is likely free on the master too
/// (its ghost then gets the same PID): the upper half of the PID space is cut
/// into one range per node, far from where the master's own processes are
/// numbered. 0 (leave the node alone) when `pid_max` leaves no room.
pub fn node_pid_base(node: u32, nodes: u32, pid_max: u32) -> u32 {
    const ROOM: u32 = 1 << 20;
    if pid_max < 2 * ROOM || nodes == 0 || node >= nodes {
        return 0;
    }
    let half = pid_max / 2;
    half + node * (half / nodes)
}

/// Ids of processes forked on the node behind `conn` start here (the slave
/// names them, so that their events need no round trip); ids the master
/// gives out for spawns stay below 2^63.
pub fn fork_id_base(conn: ConnId) -> ProcId {
    (1 << 63) | ((conn & 0x7fff_ffff) << 32)
}

pub struct Engine {
    cfg: EngineConfig,
    nodes: Vec<Node>,
    procs: BTreeMap<ProcId, Proc>,
    next_id: ProcId,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let slots = cfg.nodes + u32::from(cfg.front_end);
        let nodes = (0..slots)
            .map(|number| Node { number, state: NodeState::Down, link: None, perms: cfg.default_perms })
            .collect();
        Engine { cfg, nodes, procs: BTreeMap::new(), next_id: 1 }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The compute nodes (the front end's slot, if any, is not among them).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes[..self.cfg.nodes as usize]
    }

    /// The slot of node number `node`: 0..nodes, or the front end's for -1.
    fn slot(&self, node: i32) -> Option<u32> {
        match node {
            FRONT_END if self.cfg.front_end => Some(self.cfg.nodes),
            n => u32::try_from(n).ok().filter(|n| *n < self.cfg.nodes),
        }
    }

    /// The node number of slot `slot` (-1 for the front end's).
    pub fn number(&self, slot: u32) -> i32 {
        if slot == self.cfg.nodes {
            FRONT_END
        } else {
            slot as i32
        }
    }

    pub fn processes(&self) -> impl Iterator<Item = (&ProcId, &Proc)> {
        self.procs.iter()
    }

    pub fn process(&self, id: ProcId) -> Option<&Proc> {
        self.procs.get(&id)
    }

    /// Sets a node's permissions (from the configuration file).
    pub fn set_perms(&mut self, node: u32, perms: Perms) -> bool {
        match self.nodes.get_mut(node as usize) {
            Some(n) => {
                n.perms = perms;
                true
            }
            None => false,
        }
    }

    /// Changes `node`'s permissions for `cred` (root only, as in BProc);
    /// returns the new ones. Processes already there keep running.
    pub fn change_perms(&mut self, cred: &Cred, node: i32, change: PermsChange) -> Result<Perms, PermsError> {
        let count = self.nodes.len() as u32;
        let n = usize::try_from(node)
            .ok()
            .and_then(|i| self.nodes.get_mut(i))
            .ok_or(PermsError::NoSuchNode { node, count })?;
        if cred.uid != 0 {
            return Err(PermsError::NotRoot { uid: cred.uid });
        }
        if let Some(mode) = change.mode.filter(|m| m & !0o111 != 0) {
            return Err(PermsError::BadMode { mode });
        }
        let p = &mut n.perms;
        *p = Perms {
            mode: change.mode.unwrap_or(p.mode),
            uid: change.uid.unwrap_or(p.uid),
            gid: change.gid.unwrap_or(p.gid),
        };
        Ok(*p)
    }

    /// The connection currently serving `node`, if it is up.
    pub fn conn_of_node(&self, node: u32) -> Option<ConnId> {
        self.nodes.get(node as usize).and_then(|n| n.link.as_ref()).map(|l| l.conn)
    }

    fn node_of_conn(&self, conn: ConnId) -> Option<u32> {
        self.nodes.iter().find(|n| n.link.as_ref().is_some_and(|l| l.conn == conn)).map(|n| n.number)
    }

    /// A slave registered for `node`. A newer link replaces an older one,
    /// whose processes are then lost.
    pub fn slave_attached(
        &mut self,
        node: u32,
        conn: ConnId,
        addr: String,
        hostname: String,
        now: Instant,
    ) -> Result<Vec<Effect>, AttachError> {
        let count = self.cfg.nodes;
        let node = match node {
            FRONT_END_SLAVE if self.cfg.front_end => count,
            n if n < count => n,
            n => return Err(AttachError::NoSuchNode { node: n, count }),
        };
        let mut effects = Vec::new();
        if let Some(old) = self.conn_of_node(node) {
            effects.extend(self.take_down(node, NodeState::Down));
            effects.push(Effect::DropSlave { conn: old, reason: "replaced by a new link".into() });
        }
        let n = &mut self.nodes[node as usize];
        n.state = NodeState::Up;
        n.link = Some(Link { conn, addr, hostname, last_seen: now });
        Ok(effects)
    }

    /// A slave's link ended. Its node goes down and its processes are lost.
    pub fn slave_detached(&mut self, conn: ConnId) -> Vec<Effect> {
        match self.node_of_conn(conn) {
            Some(node) => self.take_down(node, NodeState::Down),
            None => Vec::new(),
        }
    }

    /// Marks a node with `state`, forgets its link and loses its processes.
    fn take_down(&mut self, node: u32, state: NodeState) -> Vec<Effect> {
        let n = &mut self.nodes[node as usize];
        n.state = state;
        n.link = None;
        let lost: Vec<ProcId> = self.procs.iter().filter(|(_, p)| p.node == node).map(|(id, _)| *id).collect();
        let mut effects: Vec<Effect> = lost
            .into_iter()
            .map(|id| {
                self.procs.remove(&id);
                Effect::ProcLost { id }
            })
            .collect();
        effects.extend(self.abort_moves_to_lost_links());
        effects
    }

    /// Moves whose target link is gone (its node went down) fail.
    fn abort_moves_to_lost_links(&mut self) -> Vec<Effect> {
        let nodes = &self.nodes;
        let mut effects = Vec::new();
        for (id, p) in self.procs.iter_mut() {
            let live = |c: ConnId| nodes.iter().any(|n| n.link.as_ref().is_some_and(|l| l.conn == c));
            if p.moving_to.is_some_and(|c| !live(c)) {
                p.moving_to = None;
                effects.push(Effect::MoveAborted { id: *id });
            }
        }
        effects
    }

    /// Process `id` (on the node whose link has address `from_addr`) asks to
    /// move to `node`: the same checks as a spawn there, for the process's
    /// own credentials. Returns the target's link.
    pub fn begin_move(&mut self, id: ProcId, from_addr: &str, node: i32) -> Result<ConnId, MoveError> {
        let p = self.procs.get(&id).ok_or(MoveError::NoSuchProcess { id })?;
        let src = &self.nodes[p.node as usize];
        if src.link.as_ref().is_none_or(|l| l.addr != from_addr) {
            return Err(MoveError::NotFromItsNode { id });
        }
        if p.moving_to.is_some() {
            return Err(MoveError::AlreadyMoving { id });
        }
        let count = self.cfg.nodes;
        let target = self.slot(node).ok_or(MoveError::Spawn(SpawnError::NoSuchNode { node, count }))?;
        let t = &self.nodes[target as usize];
        let conn = match (&t.link, t.state) {
            (Some(l), NodeState::Up) => l.conn,
            (_, state) => return Err(MoveError::Spawn(SpawnError::NodeNotUp { node: target, state })),
        };
        if !t.perms.may_execute(&p.cred) {
            return Err(MoveError::Spawn(SpawnError::PermissionDenied { node: target, uid: p.cred.uid }));
        }
        if let Some(p) = self.procs.get_mut(&id) {
            p.moving_to = Some(conn);
        }
        Ok(conn)
    }

    /// A move of `id` ended without a restore (an error on the way).
    pub fn end_move(&mut self, id: ProcId) {
        if let Some(p) = self.procs.get_mut(&id) {
            p.moving_to = None;
        }
    }

    /// An event from the link a process is moving to: the restore there
    /// (STARTED: the process now belongs to that node and link) or its
    /// failure. `None` when the event is not about a move.
    pub fn move_event(&mut self, conn: ConnId, id: ProcId, kind: &ProcEventKind) -> Option<Result<i32, String>> {
        // Every event of every process comes through here: the map lookup
        // first, the scan of the node table only for a move.
        self.procs.get(&id).filter(|p| p.moving_to == Some(conn))?;
        let node = self.node_of_conn(conn)?;
        let p = self.procs.get_mut(&id)?;
        match kind {
            ProcEventKind::Started { node_pid } => {
                p.moving_to = None;
                p.prev_conn = Some(p.conn);
                p.conn = conn;
                p.node = node;
                p.node_pid = Some(*node_pid);
                Some(Ok(*node_pid))
            }
            ProcEventKind::ExecFailed | ProcEventKind::Exited => {
                p.moving_to = None;
                Some(Err(format!("node {node} could not restore the process")))
            }
            _ => None,
        }
    }

    /// Anything heard from a slave counts as a sign of life.
    pub fn heard_from(&mut self, conn: ConnId, now: Instant) -> bool {
        for n in &mut self.nodes {
            if let Some(link) = n.link.as_mut().filter(|l| l.conn == conn) {
                link.last_seen = now;
                return true;
            }
        }
        false
    }

    /// The clock moved: nodes silent for longer than the timeout go down.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let timeout = self.cfg.node_timeout;
        let silent: Vec<(u32, ConnId)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let l = n.link.as_ref()?;
                (now.saturating_duration_since(l.last_seen) > timeout).then_some((n.number, l.conn))
            })
            .collect();
        let mut effects = Vec::new();
        for (node, conn) in silent {
            effects.extend(self.take_down(node, NodeState::Down));
            effects.push(Effect::DropSlave { conn, reason: format!("no heartbeat for {timeout:?}") });
        }
        effects
    }

    /// A client asks for a process. Checks the node and the caller's right
    /// to use it, then hands the request to the node's slave.
    pub fn spawn(&mut self, cred: Cred, spec: SpawnSpec) -> Result<(ProcId, Vec<Effect>), SpawnError> {
        let (id, conn) = self.admit(&cred, &spec)?;
        Ok((id, vec![Effect::Spawn { conn, id, cred, spec }]))
    }

    /// A client moves a process of its own to a node (rfork): the same
    /// checks as [`Engine::spawn`], and the process joins the table, but the
    /// runtime brings it there (checkpoint and restore) instead of a spawn.
    pub fn migrate(&mut self, cred: &Cred, spec: &SpawnSpec) -> Result<(ProcId, ConnId), SpawnError> {
        self.admit(cred, spec)
    }

    /// A process that never made it to its node (its checkpoint failed) is
    /// forgotten.
    pub fn forget(&mut self, id: ProcId) {
        self.procs.remove(&id);
    }

    /// Checks that `cred` may run `spec` and enters it in the table.
    fn admit(&mut self, cred: &Cred, spec: &SpawnSpec) -> Result<(ProcId, ConnId), SpawnError> {
        if spec.argv.is_empty() {
            return Err(SpawnError::EmptyArgv);
        }
        let count = self.cfg.nodes;
        let node = self.slot(spec.node).ok_or(SpawnError::NoSuchNode { node: spec.node, count })?;
        let n = &self.nodes[node as usize];
        let conn = match (&n.link, n.state) {
            (Some(l), NodeState::Up) => l.conn,
            (_, state) => return Err(SpawnError::NodeNotUp { node, state }),
        };
        if !n.perms.may_execute(cred) {
            return Err(SpawnError::PermissionDenied { node, uid: cred.uid });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.procs.insert(
            id,
            Proc {
                node,
                conn,
                node_pid: None,
                pid: spec.pid,
                argv: spec.argv.clone(),
                state: ProcState::Starting,
                ghost_stopped: false,
                parent: None,
                cred: cred.clone(),
                moving_to: None,
                prev_conn: None,
            },
        );
        Ok((id, conn))
    }

    /// Checks that process `id` lives behind `conn` (for routing its stdio).
    pub fn check_owner(&self, conn: ConnId, id: ProcId) -> Result<(), EventError> {
        match self.procs.get(&id) {
            Some(p) if p.conn == conn => Ok(()),
            _ => Err(EventError::NotOurs { id }),
        }
    }

    /// Checks that output or a stdin acknowledgement for `id` may come from
    /// `conn`: its node's link, or the one it just moved away from.
    pub fn check_stdio_owner(&self, conn: ConnId, id: ProcId) -> Result<(), EventError> {
        match self.procs.get(&id) {
            Some(p) if p.conn == conn || p.prev_conn == Some(conn) => Ok(()),
            _ => Err(EventError::NotOurs { id }),
        }
    }

    /// A slave reports a process event.
    pub fn proc_event(&mut self, conn: ConnId, id: ProcId, kind: ProcEventKind) -> Result<EventOutcome, EventError> {
        if self.node_of_conn(conn).is_none() {
            return Err(EventError::UnknownConn { conn });
        }
        if let ProcEventKind::Forked { parent, node_pid } = kind {
            return self.forked(conn, id, parent, node_pid);
        }
        self.check_owner(conn, id)?;
        let tell = Some(id);
        let p = self.procs.get_mut(&id).ok_or(EventError::NotOurs { id })?;
        match kind {
            ProcEventKind::Started { node_pid } => {
                p.node_pid = Some(node_pid);
                p.state = ProcState::Running;
            }
            ProcEventKind::ExecFailed => {}
            ProcEventKind::Stopped => {
                p.state = ProcState::Stopped;
                if std::mem::take(&mut p.ghost_stopped) {
                    return Ok(EventOutcome { gone: false, tell: None });
                }
            }
            ProcEventKind::Continued => p.state = ProcState::Running,
            ProcEventKind::Exited => {
                self.procs.remove(&id);
                return Ok(EventOutcome { gone: true, tell });
            }
            ProcEventKind::Execed { argv } => {
                // The first exec (of what was asked for) changes nothing the
                // ghost shows.
                if argv.is_empty() || p.argv == argv {
                    return Ok(EventOutcome { gone: false, tell: None });
                }
                p.argv = argv;
            }
            ProcEventKind::Forked { .. } => unreachable!("handled above"),
        }
        Ok(EventOutcome { gone: false, tell })
    }

    /// Process `parent` on the node behind `conn` forked process `id`: it
    /// joins the table as a copy of its parent, with no ghost until the
    /// parent's ghost has forked one.
    fn forked(&mut self, conn: ConnId, id: ProcId, parent: ProcId, node_pid: i32) -> Result<EventOutcome, EventError> {
        self.check_owner(conn, parent)?;
        let base = fork_id_base(conn);
        if !(base..base + (1 << 32)).contains(&id) || self.procs.contains_key(&id) || node_pid <= 0 {
            return Err(EventError::BadForkId { id });
        }
        let p = &self.procs[&parent];
        let child = Proc {
            node_pid: Some(node_pid),
            pid: None,
            state: ProcState::Running,
            ghost_stopped: false,
            parent: Some(parent),
            argv: p.argv.clone(),
            moving_to: None,
            prev_conn: None,
            ..p.clone()
        };
        self.procs.insert(id, child);
        Ok(EventOutcome { gone: false, tell: Some(parent) })
    }

    /// Process `id` got its ghost, `pid` on the master.
    pub fn ghost_attached(&mut self, id: ProcId, pid: i32) {
        if let Some(p) = self.procs.get_mut(&id) {
            p.pid = Some(pid);
        }
    }

    /// Someone sent SIGKILL or SIGSTOP to the ghost with global PID `pid`
    /// (the master's signal probe saw it; the ghost cannot catch them):
    /// the remote process gets it too.
    pub fn ghost_signaled(&mut self, pid: i32, signo: i32) -> Option<Effect> {
        let (id, p) = self.procs.iter_mut().find(|(_, p)| p.pid == Some(pid))?;
        if signo == libc::SIGSTOP {
            p.ghost_stopped = true;
        }
        Some(Effect::Signal { conn: p.conn, id: *id, signo })
    }

    /// A client asks to signal its process.
    pub fn signal(&self, id: ProcId, signo: i32) -> Option<Effect> {
        self.procs.get(&id).map(|p| Effect::Signal { conn: p.conn, id, signo })
    }

    /// The client of a process went away before the process ended: the
    /// process is killed so that nothing runs without an owner.
    pub fn client_gone(&self, id: ProcId) -> Option<Effect> {
        let p = self.procs.get(&id)?;
        Some(Effect::Signal { conn: p.conn, id, signo: libc::SIGKILL })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(nodes: u32) -> Engine {
        Engine::new(EngineConfig {
            nodes,
            node_timeout: Duration::from_secs(3),
            default_perms: Perms { uid: 0, gid: 0, mode: 0o111 },
            front_end: false,
        })
    }

    fn root() -> Cred {
        Cred { uid: 0, gid: 0, groups: vec![], pid: 42 }
    }

    fn spec(node: i32) -> SpawnSpec {
        SpawnSpec {
            node,
            argv: vec![b"true".to_vec()],
            env: vec![],
            cwd: b"/".to_vec(),
            umask: 0o022,
            stdin_null: false,
            pid: None,
        }
    }

    #[test]
    fn only_root_changes_a_nodes_permissions_and_only_its_execute_bits() {
        let mut e = engine(2);
        let user = Cred { uid: 1000, gid: 1000, groups: vec![], pid: 9 };
        let chmod = |mode| PermsChange { mode: Some(mode), ..PermsChange::default() };
        assert_eq!(e.change_perms(&user, 0, chmod(0o100)), Err(PermsError::NotRoot { uid: 1000 }));
        assert_eq!(e.change_perms(&root(), 0, chmod(0o644)), Err(PermsError::BadMode { mode: 0o644 }));
        assert_eq!(e.change_perms(&root(), 2, chmod(0o100)), Err(PermsError::NoSuchNode { node: 2, count: 2 }));
        assert_eq!(e.change_perms(&root(), -1, chmod(0o100)), Err(PermsError::NoSuchNode { node: -1, count: 2 }));
        assert_eq!(e.nodes()[0].perms, Perms { uid: 0, gid: 0, mode: 0o111 }, "unchanged by refusals");
        let owner = PermsChange { uid: Some(1000), ..PermsChange::default() };
        assert_eq!(e.change_perms(&root(), 0, owner), Ok(Perms { uid: 1000, gid: 0, mode: 0o111 }));
        assert_eq!(e.change_perms(&root(), 0, chmod(0o100)), Ok(Perms { uid: 1000, gid: 0, mode: 0o100 }));
        // Now only its owner may use it.
        let t0 = Instant::now();
        e.slave_attached(0, 7, "a".into(), "n0".into(), t0).unwrap();
        assert!(e.spawn(user.clone(), spec(0)).is_ok());
        let other = Cred { uid: 1001, gid: 1001, groups: vec![], pid: 10 };
        assert_eq!(e.spawn(other, spec(0)).unwrap_err(), SpawnError::PermissionDenied { node: 0, uid: 1001 });
    }

    #[test]
    fn spawn_checks_node_range_state_and_permission() {
        let mut e = engine(2);
        let t0 = Instant::now();
        assert_eq!(e.spawn(root(), spec(5)).unwrap_err(), SpawnError::NoSuchNode { node: 5, count: 2 });
        assert_eq!(e.spawn(root(), spec(-1)).unwrap_err(), SpawnError::NoSuchNode { node: -1, count: 2 });
        assert_eq!(e.spawn(root(), spec(0)).unwrap_err(), SpawnError::NodeNotUp { node: 0, state: NodeState::Down });
        e.slave_attached(0, 7, "a".into(), "n0".into(), t0).unwrap();
        let (id, fx) = e.spawn(root(), spec(0)).unwrap();
        assert!(matches!(fx.as_slice(), [Effect::Spawn { conn: 7, id: i, .. }] if *i == id));
        e.set_perms(0, Perms { uid: 0, gid: 0, mode: 0o100 });
        let user = Cred { uid: 1000, gid: 1000, groups: vec![], pid: 9 };
        assert_eq!(e.spawn(user, spec(0)).unwrap_err(), SpawnError::PermissionDenied { node: 0, uid: 1000 });
        assert_eq!(
            SpawnError::NoSuchNode { node: 9, count: 4 }.to_string(),
            "node 9: no such node (the cluster has nodes 0-3)"
        );
    }

    #[test]
    fn silent_node_goes_down_and_loses_its_processes() {
        let mut e = engine(2);
        let t0 = Instant::now();
        e.slave_attached(1, 3, "a".into(), "n1".into(), t0).unwrap();
        let (id, _) = e.spawn(root(), spec(1)).unwrap();
        assert!(e.tick(t0 + Duration::from_secs(2)).is_empty());
        assert!(e.heard_from(3, t0 + Duration::from_secs(2)));
        assert!(e.tick(t0 + Duration::from_secs(4)).is_empty(), "heartbeat kept it up");
        let fx = e.tick(t0 + Duration::from_secs(6));
        assert_eq!(fx[0], Effect::ProcLost { id });
        assert!(matches!(fx[1], Effect::DropSlave { conn: 3, .. }));
        assert_eq!(e.nodes()[1].state, NodeState::Down);
        assert!(e.process(id).is_none());
    }

    #[test]
    fn new_link_replaces_old_one() {
        let mut e = engine(1);
        let t0 = Instant::now();
        e.slave_attached(0, 1, "a".into(), "n0".into(), t0).unwrap();
        let (id, _) = e.spawn(root(), spec(0)).unwrap();
        let fx = e.slave_attached(0, 2, "a".into(), "n0".into(), t0).unwrap();
        assert_eq!(fx[0], Effect::ProcLost { id });
        assert!(matches!(fx[1], Effect::DropSlave { conn: 1, .. }));
        assert_eq!(e.conn_of_node(0), Some(2));
        assert!(e.slave_detached(1).is_empty(), "the old link's end changes nothing");
        assert_eq!(e.nodes()[0].state, NodeState::Up);
    }

    #[test]
    fn events_from_the_wrong_link_are_refused() {
        let mut e = engine(2);
        let t0 = Instant::now();
        e.slave_attached(0, 1, "a".into(), "n0".into(), t0).unwrap();
        e.slave_attached(1, 2, "b".into(), "n1".into(), t0).unwrap();
        let (id, _) = e.spawn(root(), spec(0)).unwrap();
        assert_eq!(e.proc_event(2, id, ProcEventKind::Exited), Err(EventError::NotOurs { id }));
        assert_eq!(e.proc_event(9, id, ProcEventKind::Exited), Err(EventError::UnknownConn { conn: 9 }));
        let fwd = EventOutcome { gone: false, tell: Some(id) };
        assert_eq!(e.proc_event(1, id, ProcEventKind::Started { node_pid: 5 }), Ok(fwd));
        assert_eq!(e.process(id).map(|p| p.node_pid), Some(Some(5)));
        assert_eq!(e.proc_event(1, id, ProcEventKind::Exited), Ok(EventOutcome { gone: true, tell: Some(id) }));
        assert!(e.process(id).is_none());
    }

    #[test]
    fn node_pid_ranges_split_the_upper_half() {
        assert_eq!(node_pid_base(0, 4, 32_768), 0, "no room below pid_max 2^21");
        assert_eq!(node_pid_base(0, 4, 4_194_304), 2_097_152);
        assert_eq!(node_pid_base(3, 4, 4_194_304), 2_097_152 + 3 * 524_288);
        assert!(node_pid_base(15, 16, 4_194_304) < 4_194_304 - 131_000);
        assert_eq!(node_pid_base(4, 4, 4_194_304), 0, "no such node");
    }

    #[test]
    fn forks_and_execs_on_the_node_are_checked_and_tracked() {
        let mut e = engine(2);
        let t0 = Instant::now();
        e.slave_attached(0, 1, "a".into(), "n0".into(), t0).unwrap();
        e.slave_attached(1, 2, "b".into(), "n1".into(), t0).unwrap();
        let (sh, _) = e.spawn(root(), SpawnSpec { pid: Some(500), ..spec(0) }).unwrap();
        let child = fork_id_base(1);
        let fork = |parent, node_pid| ProcEventKind::Forked { parent, node_pid };
        // Outside the link's id range, a parent of another link, or a bad pid: refused.
        assert_eq!(e.proc_event(1, 7, fork(sh, 600)), Err(EventError::BadForkId { id: 7 }));
        assert_eq!(e.proc_event(1, fork_id_base(2), fork(sh, 600)), Err(EventError::BadForkId { id: fork_id_base(2) }));
        assert_eq!(e.proc_event(2, fork_id_base(2), fork(sh, 600)), Err(EventError::NotOurs { id: sh }));
        assert_eq!(e.proc_event(1, child, fork(sh, 0)), Err(EventError::BadForkId { id: child }));
        // The parent's ghost hears of it; the child is a copy of its parent with no ghost yet.
        assert_eq!(e.proc_event(1, child, fork(sh, 600)), Ok(EventOutcome { gone: false, tell: Some(sh) }));
        assert_eq!(e.proc_event(1, child, fork(sh, 601)), Err(EventError::BadForkId { id: child }), "taken");
        let p = e.process(child).unwrap();
        assert_eq!((p.parent, p.node_pid, p.pid, p.node), (Some(sh), Some(600), None, 0));
        assert_eq!(p.argv, vec![b"true".to_vec()]);
        e.ghost_attached(child, 700);
        assert_eq!(e.ghost_signaled(700, libc::SIGKILL), Some(Effect::Signal { conn: 1, id: child, signo: 9 }));
        // An exec to the same command line is news to nobody; a new one is.
        let same = ProcEventKind::Execed { argv: vec![b"true".to_vec()] };
        assert_eq!(e.proc_event(1, child, same), Ok(EventOutcome { gone: false, tell: None }));
        let sleep = vec![b"sleep".to_vec(), b"100".to_vec()];
        let new = ProcEventKind::Execed { argv: sleep.clone() };
        assert_eq!(e.proc_event(1, child, new), Ok(EventOutcome { gone: false, tell: Some(child) }));
        assert_eq!(e.process(child).unwrap().argv, sleep);
        // The node going down takes both.
        let lost = e.slave_detached(1);
        assert!(lost.contains(&Effect::ProcLost { id: sh }) && lost.contains(&Effect::ProcLost { id: child }));
    }

    #[test]
    fn sigstop_of_a_ghost_reaches_the_remote_process_once() {
        let mut e = engine(1);
        e.slave_attached(0, 1, "a".into(), "n0".into(), Instant::now()).unwrap();
        let (id, _) = e.spawn(root(), SpawnSpec { pid: Some(777), ..spec(0) }).unwrap();
        assert_eq!(e.ghost_signaled(778, libc::SIGSTOP), None, "not a ghost of ours");
        assert_eq!(e.ghost_signaled(777, libc::SIGSTOP), Some(Effect::Signal { conn: 1, id, signo: libc::SIGSTOP }));
        // The ghost is stopped already: the node's report of the stop is not passed on...
        assert_eq!(e.proc_event(1, id, ProcEventKind::Stopped), Ok(EventOutcome { gone: false, tell: None }));
        // ...but a later stop (say from SIGTSTP the ghost forwarded) is.
        assert_eq!(e.proc_event(1, id, ProcEventKind::Stopped), Ok(EventOutcome { gone: false, tell: Some(id) }));
        assert_eq!(e.ghost_signaled(777, libc::SIGKILL), Some(Effect::Signal { conn: 1, id, signo: libc::SIGKILL }));
    }

    #[test]
    fn a_gone_client_gets_its_process_killed() {
        let mut e = engine(1);
        e.slave_attached(0, 1, "a".into(), "n0".into(), Instant::now()).unwrap();
        let (id, _) = e.spawn(root(), spec(0)).unwrap();
        assert_eq!(e.client_gone(id), Some(Effect::Signal { conn: 1, id, signo: libc::SIGKILL }));
        assert_eq!(e.client_gone(id + 1), None);
    }
}
