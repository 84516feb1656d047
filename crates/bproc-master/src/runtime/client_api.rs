//! The `Master` service for clients (bpsh, bpstat, libbproc) on the Unix socket.

use std::sync::Arc;

use proto::v1::{self, exec_in, exec_out, master_msg};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::migrate;
use super::peer::peer_cred;
use super::{ClientHandle, Shared};
use crate::engine::{ConnId, ProcId, SpawnSpec};

pub struct MasterService {
    pub shared: Arc<Shared>,
}

/// Refuses a client whose protocol version differs from ours.
#[allow(clippy::result_large_err)]
pub fn check_client_version(req: Request<()>) -> Result<Request<()>, Status> {
    let v = req
        .metadata()
        .get(proto::VERSION_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "client sent no protocol version; master speaks version {}",
                proto::PROTOCOL_VERSION
            ))
        })?;
    proto::check_version("client", v).map_err(Status::failed_precondition)?;
    Ok(req)
}

#[tonic::async_trait]
impl v1::master_server::Master for MasterService {
    type ExecStream = UnboundedReceiverStream<Result<v1::ExecOut, Status>>;

    #[tracing::instrument(skip_all)]
    async fn exec(&self, req: Request<Streaming<v1::ExecIn>>) -> Result<Response<Self::ExecStream>, Status> {
        let cred = peer_cred(&req)?;
        let mut inbound = req.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("stream ended before start"))?;
        let start = match first.msg {
            Some(exec_in::Msg::Start(start)) => start,
            Some(exec_in::Msg::Attach(attach)) => return self.attach(cred, attach.id, inbound),
            _ => return Err(Status::invalid_argument("the first message of exec must be start or attach")),
        };
        let spec = convert::spec_from_start(start)?;
        let ghost = spec.pid;
        // Only a process may claim its own PID as the global PID.
        if let Some(pid) = spec.pid {
            if pid != cred.pid {
                return Err(Status::permission_denied(format!("pid {pid} is not the caller's (pid {})", cred.pid)));
            }
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let id = {
            let mut st = self.shared.lock();
            let (id, effects) = st.engine.spawn(cred.clone(), spec).map_err(convert::spawn_status)?;
            st.clients.insert(id, ClientHandle::attached(tx, ghost, cred.uid));
            st.busy = true;
            st.apply(effects);
            id
        };
        tracing::debug!(id, uid = cred.uid, pid = cred.pid, "exec");
        if let Some(pid) = ghost {
            self.watch_ghost(pid);
        }
        tokio::spawn(read_client(self.shared.clone(), id, 1, inbound));
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all)]
    async fn rfork(&self, req: Request<v1::RforkRequest>) -> Result<Response<v1::RforkReply>, Status> {
        let cred = peer_cred(&req)?;
        let r = req.into_inner();
        if r.pid <= 1 || r.pid as u32 == std::process::id() {
            return Err(Status::permission_denied(format!("process {} does not move", r.pid)));
        }
        let (ppid, uid) = migrate::owner(r.pid).map_err(Status::invalid_argument)?;
        // The kernel's word: only a process's own parent of the same uid may
        // rfork it; a process moving itself (bproc_move) sends a helper of
        // its own uid.
        let allowed = if r.move_self { uid == cred.uid || cred.uid == 0 } else { ppid == cred.pid && uid == cred.uid };
        if !allowed {
            return Err(Status::permission_denied(format!("process {} is not the caller's to move", r.pid)));
        }
        let child = migrate::inspect(r.pid, r.marker_fd).map_err(Status::invalid_argument)?;
        let spec = SpawnSpec {
            node: r.node,
            argv: child.argv.clone(),
            env: Vec::new(),
            cwd: Vec::new(),
            umask: 0,
            stdin_null: false,
            pid: Some(r.pid),
        };
        let (id, conn) = {
            let mut st = self.shared.lock();
            let (id, conn) = st.engine.migrate(&cred, &spec).map_err(convert::spawn_status)?;
            st.clients.insert(id, ClientHandle::awaiting(r.pid, cred.uid, std::time::Instant::now()));
            st.busy = true;
            (id, conn)
        };
        tracing::debug!(id, pid = r.pid, node = r.node, "rfork");
        match self.bring(id, conn, r.pid, &child).await {
            Ok(_) => {
                self.watch_ghost(r.pid);
                Ok(Response::new(v1::RforkReply { id, pid: r.pid }))
            }
            Err(status) => {
                tracing::warn!(id, pid = r.pid, node = r.node, why = status.message(), "rfork failed");
                let mut st = self.shared.lock();
                st.clients.remove(&id);
                let effect = st.engine.client_gone(id);
                st.apply(effect.into_iter().collect());
                st.engine.forget(id);
                Err(status)
            }
        }
    }

    async fn nodes(&self, _req: Request<v1::NodesRequest>) -> Result<Response<v1::NodesReply>, Status> {
        let st = self.shared.lock();
        let mut counts = vec![0u32; st.engine.nodes().len() + 1];
        for (_, p) in st.engine.processes() {
            if let Some(c) = counts.get_mut(p.node as usize) {
                *c += 1;
            }
        }
        let nodes = st
            .engine
            .nodes()
            .iter()
            .map(|n| v1::NodeInfo {
                node: n.number as i32,
                state: n.state.as_str().to_string(),
                addr: n.link.as_ref().map(|l| l.addr.clone()).unwrap_or_default(),
                mode: n.perms.mode,
                uid: n.perms.uid,
                gid: n.perms.gid,
                hostname: n.link.as_ref().map(|l| l.hostname.clone()).unwrap_or_default(),
                processes: counts[n.number as usize],
            })
            .collect();
        Ok(Response::new(v1::NodesReply { nodes }))
    }

    async fn processes(&self, _req: Request<v1::ProcessesRequest>) -> Result<Response<v1::ProcessesReply>, Status> {
        let st = self.shared.lock();
        let processes = st
            .engine
            .processes()
            .map(|(id, p)| v1::ProcessInfo {
                id: *id,
                node: st.engine.number(p.node),
                node_pid: p.node_pid.unwrap_or(0),
                uid: p.cred.uid,
                argv: p.argv.clone(),
                client_pid: p.cred.pid,
                state: p.state.as_str().to_string(),
                pid: p.pid.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(v1::ProcessesReply { processes }))
    }
}

impl MasterService {
    /// The caller becomes the ghost of process `id` (see `Attach` in the
    /// protocol); what was held for the process follows at once.
    #[allow(clippy::result_large_err)]
    fn attach(
        &self,
        cred: crate::engine::Cred,
        id: ProcId,
        inbound: Streaming<v1::ExecIn>,
    ) -> Result<Response<<Self as v1::master_server::Master>::ExecStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let gen = {
            let mut st = self.shared.lock();
            let h = st
                .clients
                .get_mut(&id)
                .ok_or_else(|| Status::not_found(format!("no process {id} waits for a ghost")))?;
            h.may_attach(cred.pid, cred.uid).map_err(Status::permission_denied)?;
            h.gen += 1;
            h.ghost = Some(cred.pid);
            h.attach_by = None;
            for msg in h.pending.drain(..) {
                let _ = tx.send(Ok(msg));
            }
            let gen = h.gen;
            if h.finished {
                st.clients.remove(&id);
            } else {
                h.tx = Some(tx);
            }
            st.engine.ghost_attached(id, cred.pid);
            gen
        };
        tracing::debug!(id, pid = cred.pid, "ghost attached");
        self.watch_ghost(cred.pid);
        tokio::spawn(read_client(self.shared.clone(), id, gen, inbound));
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    /// Checkpoints process `pid` and has the slave on `conn` restore it as
    /// process `id`; returns its node PID.
    async fn bring(&self, id: ProcId, conn: ConnId, pid: i32, child: &migrate::Child) -> Result<i32, Status> {
        let dir = migrate::image_dir(id).map_err(Status::internal)?;
        let dumped = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || migrate::dump(pid, &dir)).await
        };
        let result = match dumped {
            Ok(Ok(())) => {
                restore_on(&self.shared, id, conn, pid, child.stdio.clone(), child.marker.clone(), &dir).await
            }
            Ok(Err(why)) => Err(Status::internal(why)),
            Err(e) => Err(Status::internal(e.to_string())),
        };
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        result
    }

    /// The probes report signals to the ghost and its death.
    fn watch_ghost(&self, pid: i32) {
        if let Some(ghosts) = self.shared.ghosts.get() {
            if let Err(e) = ghosts.track(pid as u32) {
                tracing::warn!(pid, error = %e, "cannot watch the ghost's signals");
            }
        }
    }
}

/// Relays what the client sends for process `id` until the client goes.
/// `gen` tells this stream from a later one of the same process (after the
/// ghost re-exec'd itself).
async fn read_client(shared: Arc<Shared>, id: ProcId, gen: u64, mut inbound: Streaming<v1::ExecIn>) {
    let window = shared.cfg.stdio_window;
    // After a detach: the answer stream stays open until the ghost has sent
    // its last acknowledgements and closed its side.
    let mut held = None;
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => break,
        };
        let mut st = shared.lock();
        let Some(conn) = st.engine.process(id).map(|p| p.conn) else {
            // The process has ended; what the client still sends is moot.
            continue;
        };
        match msg.msg {
            Some(exec_in::Msg::Stdin(mut data)) => {
                data.id = id;
                data.stream = v1::StdStream::Stdin as i32;
                let over = match st.clients.get_mut(&id).filter(|c| c.gen == gen) {
                    Some(c) => {
                        c.stdin_outstanding += data.data.len() as u64;
                        c.stdin_outstanding > window
                    }
                    None => false,
                };
                if over {
                    if let Some(tx) = st.clients.get(&id).and_then(|c| c.tx.as_ref()) {
                        let _ = tx.send(Err(Status::resource_exhausted("stdin sent beyond the credit window")));
                    }
                    break;
                }
                st.send_slave(conn, master_msg::Msg::Input(data));
            }
            Some(exec_in::Msg::Signal(sig)) => {
                if (1..=64).contains(&sig.signo) {
                    let effect = st.engine.signal(id, sig.signo);
                    st.apply(effect.into_iter().collect());
                }
            }
            Some(exec_in::Msg::OutputAck(mut ack)) => {
                ack.id = id;
                st.send_slave(conn, master_msg::Msg::OutputAck(ack));
            }
            Some(exec_in::Msg::Detach(_)) => {
                if let Some(h) = st.clients.get_mut(&id).filter(|h| h.gen == gen) {
                    if let Some(tx) = h.tx.take() {
                        let _ = tx.send(Ok(convert::exec_out(exec_out::Msg::Detached(v1::Detached {}))));
                        held = Some(tx);
                        h.attach_by = Some(std::time::Instant::now() + super::ATTACH_TIMEOUT);
                    }
                }
            }
            Some(exec_in::Msg::Start(_) | exec_in::Msg::Attach(_)) | None => {
                if let Some(tx) = st.clients.get(&id).and_then(|c| c.tx.as_ref()) {
                    let _ = tx.send(Err(Status::invalid_argument("unexpected message after start")));
                }
                break;
            }
        }
    }
    drop(held);
    let mut st = shared.lock();
    // The ghost is gone, unless it detached to re-exec (it attaches again)
    // or a newer stream has taken over.
    if st.clients.get(&id).is_some_and(|h| h.gen == gen && h.tx.is_some()) {
        st.drop_client(id);
    } else if !st.clients.contains_key(&id) {
        let effect = st.engine.client_gone(id);
        st.apply(effect.into_iter().collect());
    }
}

/// Has the slave on `conn` restore the image in `dir` as process `id` with
/// PID `pid`, its files named by `stdio` and `marker` replaced; returns its
/// node PID once the slave reports it STARTED.
pub(super) async fn restore_on(
    shared: &Shared,
    id: ProcId,
    conn: ConnId,
    pid: i32,
    stdio: [String; 3],
    marker: String,
    dir: &std::path::Path,
) -> Result<i32, Status> {
    let image = migrate::random_name();
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let mut st = shared.lock();
        st.restores.insert(id, tx);
        st.images.insert(image.clone(), dir.to_path_buf());
        let [stdin_key, stdout_key, stderr_key] = stdio;
        let req =
            v1::RestoreRequest { id, image: image.clone(), pid, stdin_key, stdout_key, stderr_key, marker_key: marker };
        if !st.send_slave(conn, master_msg::Msg::Restore(req)) {
            st.restores.remove(&id);
            st.images.remove(&image);
            return Err(Status::aborted("the node's link is gone"));
        }
    }
    let answer = tokio::time::timeout(migrate::RESTORE_TIMEOUT, rx).await;
    let mut st = shared.lock();
    st.images.remove(&image);
    st.restores.remove(&id);
    match answer {
        Ok(Ok(Ok(node_pid))) => Ok(node_pid),
        Ok(Ok(Err(why))) => Err(Status::aborted(why)),
        Ok(Err(_)) | Err(_) => Err(Status::aborted("the node did not restore the process in time")),
    }
}
