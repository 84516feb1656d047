//! The runtime around the engine: sockets, channels, timers.
//!
//! One [`Shared`] state (the engine plus the channels to every slave link and
//! every client stream) sits behind one mutex, held only for a lookup and a
//! non-blocking send. Stdio is relayed without buffering here: both ends keep
//! a credit window, so memory stays bounded per process.

mod client_api;
mod convert;
mod ghost_link;
mod ghost_signals;
pub mod migrate;
mod peer;
mod ratelimit;
mod server;
mod slave_link;
pub mod sys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::v1::{self, master_msg};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tonic::Status;

use crate::engine::{ConnId, Effect, Engine, ProcId};

pub use server::{serve, ServeError};

type SlaveTx = UnboundedSender<Result<v1::MasterMsg, Status>>;
type ClientTx = UnboundedSender<Result<v1::ExecOut, Status>>;

struct SlaveHandle {
    tx: SlaveTx,
    reader: Option<AbortHandle>,
    /// Its image service (HOST:PORT), where other slaves fetch the images
    /// it passes on.
    image_peer: Option<String>,
    /// The same service on a Unix socket, for slaves on this host.
    peer_socket: Option<String>,
}

/// How long a process may wait for a ghost (a forked process whose parent's
/// ghost has not forked one, a ghost re-exec'ing itself) before it is killed.
/// The master's probes usually see the ghost die much sooner.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the ghost of a forked process may take to attach once its
/// parent's ghost (which forks it) is gone.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// The client side of one process: its ghost's stream, or, while it has no
/// ghost, what is held for the next one.
struct ClientHandle {
    /// `None` while no ghost is attached.
    tx: Option<ClientTx>,
    /// Held while no ghost is attached (bounded: output by the node's
    /// credit window, events by what a process can do meanwhile).
    pending: Vec<v1::ExecOut>,
    /// The last message (EXITED) is among `pending`: the handle ends when
    /// it is delivered.
    finished: bool,
    /// Counts attachments, so the end of an old stream is told apart.
    gen: u64,
    /// The ghost's PID once one has attached; a re-exec'd ghost must have it.
    ghost: Option<i32>,
    /// For a forked process with no ghost yet: the uid its ghost must run
    /// as, and the PID of its parent's ghost (which forks it).
    uid: u32,
    parent_ghost: Option<i32>,
    /// While it has no ghost: when it is given up (and killed) if none
    /// has attached.
    attach_by: Option<Instant>,
    /// Stdin bytes sent to the node and not yet acknowledged by it.
    stdin_outstanding: u64,
}

impl ClientHandle {
    fn attached(tx: ClientTx, ghost: Option<i32>, uid: u32) -> Self {
        ClientHandle {
            tx: Some(tx),
            pending: Vec::new(),
            finished: false,
            gen: 1,
            ghost,
            uid,
            parent_ghost: None,
            attach_by: None,
            stdin_outstanding: 0,
        }
    }

    /// An rforked process's handle, waiting for the copy left here (PID
    /// `ghost`) to become its ghost. No deadline yet: the copy can attach
    /// only once the rfork has answered, however long the restore takes
    /// ([`State::attach_from_now`] sets it then).
    fn awaiting(ghost: i32, uid: u32) -> Self {
        Self::not_attached(Some(ghost), uid)
    }

    /// A forked process's handle, waiting for the ghost its parent's ghost forks.
    fn unattached(uid: u32, parent_ghost: Option<i32>, now: Instant) -> Self {
        ClientHandle { parent_ghost, attach_by: Some(now + ATTACH_TIMEOUT), ..Self::not_attached(None, uid) }
    }

    /// A handle that no ghost has attached to yet (and no deadline).
    fn not_attached(ghost: Option<i32>, uid: u32) -> Self {
        ClientHandle {
            tx: None,
            pending: Vec::new(),
            finished: false,
            gen: 0,
            ghost,
            uid,
            parent_ghost: None,
            attach_by: None,
            stdin_outstanding: 0,
        }
    }

    /// Whether the process `peer` (pid, uid as the kernel gave them) may
    /// become this process's ghost.
    fn may_attach(&self, pid: i32, uid: u32) -> Result<(), String> {
        if self.tx.is_some() {
            return Err("the process has a ghost already".into());
        }
        match self.ghost {
            // A ghost that re-exec'd itself: the same process.
            Some(ghost) if ghost == pid => Ok(()),
            Some(ghost) => Err(format!("pid {pid} is not the process's ghost (pid {ghost})")),
            None if uid == self.uid || uid == 0 => Ok(()),
            None => Err(format!("uid {uid} may not be the ghost of a process of uid {}", self.uid)),
        }
    }
}

/// How an rfork's restore on its node went: the node PID, or why not.
type RestoreResult = Result<i32, String>;

pub struct State {
    pub engine: Engine,
    /// rforks waiting for their node to restore the process.
    restores: HashMap<ProcId, tokio::sync::oneshot::Sender<RestoreResult>>,
    /// vrfork copies whose nodes pass the image on: told when the node holds
    /// it (before its restore is done).
    held: HashMap<ProcId, tokio::sync::oneshot::Sender<()>>,
    /// Checkpoint images a slave may fetch, by their (random) names.
    images: HashMap<String, Image>,
    slaves: HashMap<ConnId, SlaveHandle>,
    clients: HashMap<ProcId, ClientHandle>,
    next_conn: ConnId,
    /// Clients came since the heap was last trimmed.
    busy: bool,
}

/// An image that slaves may fetch: files in a directory, or a live one
/// (see [`bproc_daemon::live`]) whose chunks go to its one fetch.
pub enum Image {
    Files(std::path::PathBuf),
    Live(Option<tokio::sync::mpsc::Receiver<Result<v1::ImageChunk, String>>>),
}

/// Settings the runtime needs besides the engine's.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub heartbeat_interval_ms: u32,
    pub link_timeout_ms: u32,
    pub stdio_window: u64,
    /// The kernel's `pid_max`, which the nodes' PID ranges divide.
    pub pid_max: u32,
}

pub struct Shared {
    state: Mutex<State>,
    pub cfg: RuntimeConfig,
    /// The ghosts whose signals the eBPF probe watches (set once the probes
    /// are loaded).
    ghosts: std::sync::OnceLock<ebpf_probes::Tracker>,
    /// Where slaves on this host fetch images (set once it is served).
    image_socket: std::sync::OnceLock<String>,
}

impl Shared {
    pub fn new(engine: Engine, cfg: RuntimeConfig) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                engine,
                restores: HashMap::new(),
                held: HashMap::new(),
                images: HashMap::new(),
                slaves: HashMap::new(),
                clients: HashMap::new(),
                next_conn: 1,
                busy: false,
            }),
            cfg,
            ghosts: std::sync::OnceLock::new(),
            image_socket: std::sync::OnceLock::new(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still the
        // best we have, so keep serving rather than cascade the panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Trims the heap once the last client of a burst has gone.
    pub fn trim_when_idle(&mut self) {
        if self.busy && self.clients.is_empty() {
            self.busy = false;
            sys::trim_memory();
        }
    }

    /// Passes `msg` to process `id`'s ghost, or holds it until one attaches.
    /// `last` (the process's EXITED) ends the handle once delivered.
    fn tell(&mut self, id: ProcId, msg: v1::ExecOut, last: bool) {
        let Some(h) = self.clients.get_mut(&id) else { return };
        match &h.tx {
            Some(tx) => {
                let _ = tx.send(Ok(msg));
                if last {
                    self.clients.remove(&id);
                }
            }
            None => {
                h.pending.push(msg);
                h.finished |= last;
            }
        }
    }

    /// The node answered (or could not answer) the restore of process `id`.
    fn restored(&mut self, id: ProcId, result: RestoreResult) {
        if let Some(waiter) = self.restores.remove(&id) {
            let _ = waiter.send(result);
        }
    }

    /// The ghost with PID `pid` died (the master's probe saw it). A process
    /// waiting for that ghost to come back (re-exec) will not get one: it is
    /// killed. The ghosts of processes its process forked may have been
    /// forked already and be on their way: they get a short grace.
    fn ghost_exited(&mut self, pid: i32, now: Instant) {
        let mut gone = Vec::new();
        for (id, h) in self.clients.iter_mut().filter(|(_, h)| h.tx.is_none()) {
            if h.ghost == Some(pid) {
                gone.push(*id);
            } else if h.ghost.is_none() && h.parent_ghost == Some(pid) {
                let grace = now + ORPHAN_GRACE;
                h.attach_by = Some(h.attach_by.map_or(grace, |t| t.min(grace)));
            }
        }
        for id in gone {
            tracing::debug!(id, ghost = pid, "the process's ghost is gone");
            self.drop_client(id);
        }
    }

    /// Kills processes that waited too long for a ghost.
    fn sweep_unattached(&mut self, now: Instant) {
        let stale: Vec<ProcId> = self
            .clients
            .iter()
            .filter(|(_, h)| h.tx.is_none() && h.attach_by.is_some_and(|t| now > t))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            tracing::warn!(id, "no ghost came for the process; killing it");
            self.drop_client(id);
        }
    }

    /// The rfork of process `id` has answered: its ghost has the usual time
    /// to attach from now on.
    fn attach_from_now(&mut self, id: ProcId) {
        if let Some(h) = self.clients.get_mut(&id).filter(|h| h.tx.is_none()) {
            h.attach_by = Some(Instant::now() + ATTACH_TIMEOUT);
        }
    }

    /// Takes back an rforked process that was not restored (or whose rfork
    /// was given up): no handle, no process, nothing on its node.
    fn abandon(&mut self, id: ProcId) {
        self.clients.remove(&id);
        let effect = self.engine.client_gone(id);
        self.apply(effect.into_iter().collect());
        self.engine.forget(id);
    }

    /// The process's ghost is gone for good: forget the handle and kill the
    /// process so that nothing runs without an owner.
    fn drop_client(&mut self, id: ProcId) {
        self.clients.remove(&id);
        let effect = self.engine.client_gone(id);
        self.apply(effect.into_iter().collect());
    }

    fn send_slave(&self, conn: ConnId, msg: master_msg::Msg) -> bool {
        self.slaves.get(&conn).is_some_and(|s| s.tx.send(Ok(convert::master_msg(msg))).is_ok())
    }

    /// Carries out what the engine decided.
    pub fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Spawn { conn, id, cred, spec } => {
                    let msg = convert::spawn_msg(id, cred, spec);
                    let sent = self.slaves.get(&conn).is_some_and(|s| s.tx.send(Ok(msg)).is_ok());
                    if !sent {
                        tracing::warn!(conn, id, "spawn for a link that is gone");
                    }
                }
                Effect::Signal { conn, id, signo } => {
                    self.send_slave(conn, master_msg::Msg::Signal(v1::SignalRequest { id, signo }));
                }
                Effect::MoveAborted { id } => self.restored(id, Err("the node it moved to was lost".into())),
                Effect::ProcLost { id } => {
                    self.restored(id, Err("the node was lost".into()));
                    self.tell(id, convert::lost_event(id), true);
                }
                Effect::DropSlave { conn, reason } => {
                    if let Some(slave) = self.slaves.remove(&conn) {
                        tracing::warn!(conn, %reason, "dropping slave link");
                        let _ = slave.tx.send(Err(Status::unavailable(reason)));
                        if let Some(reader) = slave.reader {
                            reader.abort();
                        }
                    }
                }
            }
        }
    }
}
