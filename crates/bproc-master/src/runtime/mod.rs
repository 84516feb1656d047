//! The runtime around the engine: sockets, channels, timers.
//!
//! One [`Shared`] state (the engine plus the channels to every slave link and
//! every client stream) sits behind one mutex, held only for a lookup and a
//! non-blocking send. Stdio is relayed without buffering here: both ends keep
//! a credit window, so memory stays bounded per process.

mod client_api;
mod convert;
mod ghost_signals;
mod peer;
mod ratelimit;
mod server;
mod slave_link;
pub mod sys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

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
}

struct ClientHandle {
    tx: ClientTx,
    /// Stdin bytes sent to the node and not yet acknowledged by it.
    stdin_outstanding: u64,
}

pub struct State {
    pub engine: Engine,
    slaves: HashMap<ConnId, SlaveHandle>,
    clients: HashMap<ProcId, ClientHandle>,
    next_conn: ConnId,
    /// Clients came since the heap was last trimmed.
    busy: bool,
}

/// Settings the runtime needs besides the engine's.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub heartbeat_interval_ms: u32,
    pub link_timeout_ms: u32,
    pub stdio_window: u64,
}

pub struct Shared {
    state: Mutex<State>,
    pub cfg: RuntimeConfig,
    /// The ghosts whose signals the eBPF probe watches (set once the probes
    /// are loaded).
    ghosts: std::sync::OnceLock<ebpf_probes::Tracker>,
}

impl Shared {
    pub fn new(engine: Engine, cfg: RuntimeConfig) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                engine,
                slaves: HashMap::new(),
                clients: HashMap::new(),
                next_conn: 1,
                busy: false,
            }),
            cfg,
            ghosts: std::sync::OnceLock::new(),
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
                Effect::ProcLost { id } => {
                    if let Some(client) = self.clients.remove(&id) {
                        let _ = client.tx.send(Ok(convert::lost_event(id)));
                    }
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
