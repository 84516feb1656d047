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
        self.open_exec(cred, first, inbound).map(|rx| Response::new(UnboundedReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all)]
    async fn rfork(&self, req: Request<v1::RforkRequest>) -> Result<Response<v1::RforkReply>, Status> {
        let cred = peer_cred(&req)?;
        let r = req.into_inner();
        let copy = self.admit(&cred, &r)?;
        let mut in_flight = InFlight::new(self.shared.clone(), &[copy.id]);
        tracing::debug!(id = copy.id, pid = r.pid, node = r.node, "rfork");
        match self.bring(&copy).await {
            Ok(_) => {
                in_flight.restored(copy.id);
                self.watch_ghost(r.pid);
                Ok(Response::new(v1::RforkReply { id: copy.id, pid: r.pid }))
            }
            Err(status) => {
                tracing::warn!(id = copy.id, pid = r.pid, node = r.node, why = status.message(), "rfork failed");
                in_flight.failed(copy.id);
                Err(status)
            }
        }
    }

    async fn set_node_perms(
        &self,
        req: Request<v1::SetNodePermsRequest>,
    ) -> Result<Response<v1::SetNodePermsReply>, Status> {
        use crate::engine::{PermsChange, PermsError};
        let cred = peer_cred(&req)?;
        let r = req.into_inner();
        let change = PermsChange { mode: r.mode, uid: r.uid, gid: r.gid };
        let perms = self.shared.lock().engine.change_perms(&cred, r.node, change).map_err(|e| match e {
            PermsError::NoSuchNode { .. } => Status::not_found(e.to_string()),
            PermsError::NotRoot { .. } | PermsError::BadMode { .. } => Status::permission_denied(e.to_string()),
        })?;
        tracing::info!(
            node = r.node,
            mode = perms.mode,
            uid = perms.uid,
            gid = perms.gid,
            by = cred.pid,
            "node permissions changed"
        );
        Ok(Response::new(v1::SetNodePermsReply {}))
    }

    async fn vrfork(&self, req: Request<v1::VrforkRequest>) -> Result<Response<v1::VrforkReply>, Status> {
        let cred = peer_cred(&req)?;
        let v1::VrforkRequest { copies, ranks } = req.into_inner();
        if copies.is_empty() || copies.len() > MAX_VRFORK {
            return Err(Status::invalid_argument(format!("a vrfork makes 1 to {MAX_VRFORK} copies")));
        }
        if copies.iter().any(|c| c.move_self) {
            return Err(Status::invalid_argument("a vrfork copies the caller's children; move_self is for rfork"));
        }
        let mut seen = std::collections::HashSet::new();
        let admitted: Vec<Result<Copy, Status>> = copies
            .iter()
            .map(|r| match seen.insert(r.pid) {
                true => self.admit(&cred, r),
                false => Err(Status::invalid_argument(format!("process {} is named twice", r.pid))),
            })
            .collect();
        let ids: Vec<ProcId> = admitted.iter().filter_map(|c| c.as_ref().ok().map(|c| c.id)).collect();
        let mut in_flight = InFlight::new(self.shared.clone(), &ids);
        let ranks: Vec<u32> = (0..copies.len()).map(|i| ranks.get(i).copied().unwrap_or(i as u32)).collect();
        let outcome = self.bring_all(&admitted, &ranks).await;
        let mut results = Vec::with_capacity(admitted.len());
        for (copy, result) in admitted.into_iter().zip(outcome) {
            let result = match (copy, result) {
                (Ok(copy), Ok(_)) => {
                    in_flight.restored(copy.id);
                    self.watch_ghost(copy.pid);
                    v1::VrforkResult { id: copy.id, code: 0, message: String::new() }
                }
                (Ok(copy), Err(status)) => {
                    tracing::warn!(id = copy.id, pid = copy.pid, why = status.message(), "vrfork copy failed");
                    in_flight.failed(copy.id);
                    v1::VrforkResult { id: 0, code: status.code() as i32, message: status.message().to_string() }
                }
                (Err(status), _) => {
                    v1::VrforkResult { id: 0, code: status.code() as i32, message: status.message().to_string() }
                }
            };
            results.push(result);
        }
        Ok(Response::new(v1::VrforkReply { results }))
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

/// What a client sends on an `Exec` stream after its first message.
pub(super) trait Inbound:
    futures_core::Stream<Item = Result<v1::ExecIn, Status>> + Unpin + Send + 'static
{
}
impl<S: futures_core::Stream<Item = Result<v1::ExecIn, Status>> + Unpin + Send + 'static> Inbound for S {}

/// The master's side of an `Exec` stream.
pub(super) type ExecAnswers = tokio::sync::mpsc::UnboundedReceiver<Result<v1::ExecOut, Status>>;

impl MasterService {
    /// Opens an `Exec` stream (over gRPC, or a ghost's plain link): `first`
    /// starts a process or attaches a ghost to one; what follows in
    /// `inbound` is relayed; the answer is the stream's other direction.
    #[allow(clippy::result_large_err)]
    pub(super) fn open_exec(
        &self,
        cred: crate::engine::Cred,
        first: v1::ExecIn,
        inbound: impl Inbound,
    ) -> Result<ExecAnswers, Status> {
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
        Ok(rx)
    }

    /// The caller becomes the ghost of process `id` (see `Attach` in the
    /// protocol); what was held for the process follows at once.
    #[allow(clippy::result_large_err)]
    fn attach(&self, cred: crate::engine::Cred, id: ProcId, inbound: impl Inbound) -> Result<ExecAnswers, Status> {
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
        Ok(rx)
    }

    /// Checks that the caller may rfork process `r.pid` to `r.node` (the
    /// kernel's word on parent and owner) and enters it in the process table,
    /// waiting for its ghost.
    #[allow(clippy::result_large_err)]
    fn admit(&self, cred: &crate::engine::Cred, r: &v1::RforkRequest) -> Result<Copy, Status> {
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
        let mut st = self.shared.lock();
        let (id, conn) = st.engine.migrate(cred, &spec).map_err(convert::spawn_status)?;
        st.clients.insert(id, ClientHandle::awaiting(r.pid, cred.uid));
        st.busy = true;
        Ok(Copy { id, conn, pid: r.pid, child })
    }

    /// Checkpoints `copy`'s process and has its node restore it; returns
    /// its node PID. The node fetches the image while it is made: its pages
    /// go from CRIU to the node without a copy here.
    async fn bring(&self, copy: &Copy) -> Result<i32, Status> {
        let dir = migrate::image_dir(copy.id).map_err(Status::internal)?;
        let result = async {
            let (chunks, dumped) =
                bproc_daemon::live::live_image(&dir).map_err(|e| Status::internal(format!("the pages' FIFO: {e}")))?;
            let image = ImageLease::live(&self.shared, chunks);
            let req = restore_request(copy, &copy.child, &image.name);
            let dump = async {
                let result = dump_into(copy.pid, &dir).await;
                let _ = dumped.send(Some(result.clone().map_err(|s| s.message().to_string())));
                result
            };
            let restore = async {
                let result = restore_on(&self.shared, copy.conn, req).await;
                // Whatever the node did: no fetch of the pages from now on.
                drop(image);
                result
            };
            let (dumped, restored) = tokio::join!(dump, restore);
            dumped.and(restored)
        }
        .await;
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        result
    }

    /// A vrfork's copies (`Err`: not admitted): the first admitted one is
    /// checkpointed, and its image restored as each of them, with its own
    /// PID and rank. Nodes with an image service pass the image on in a
    /// binary tree, so the master sends it once: a node's children in the
    /// tree start fetching as soon as it holds the image (IMAGE_HELD), before
    /// its own restore is done; the others (the front end's own node) fetch it
    /// from the master. Each copy's marker says its rank
    /// from `ranks`. Returns a result per copy.
    async fn bring_all(&self, copies: &[Result<Copy, Status>], ranks: &[u32]) -> Vec<Result<i32, Status>> {
        // Each admitted copy's result comes from its restore.
        let mut out: Vec<Result<i32, Status>> = copies
            .iter()
            .map(|c| match c {
                Ok(_) => Err(Status::internal("the copy was not restored")),
                Err(status) => Err(status.clone()),
            })
            .collect();
        let admitted: Vec<(usize, &Copy)> =
            copies.iter().enumerate().filter_map(|(i, c)| c.as_ref().ok().map(|c| (i, c))).collect();
        let Some(&(_, first)) = admitted.first() else { return out };
        let dir = match migrate::image_dir(first.id) {
            Ok(dir) => dir,
            Err(e) => {
                for (i, _) in &admitted {
                    out[*i] = Err(Status::internal(e.clone()));
                }
                return out;
            }
        };
        if let Err(status) = dump_into(first.pid, &dir).await {
            for (i, _) in &admitted {
                out[*i] = Err(status.clone());
            }
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            return out;
        }
        let image = ImageLease::new(&self.shared, &dir);
        // Who can pass the image on (nodes with an image service): the
        // address, and the Unix socket on this host, of each copy's node.
        let peers: Vec<Option<(String, Option<String>)>> = {
            let st = self.shared.lock();
            let peer = |c: &Copy| {
                let h = st.slaves.get(&c.conn)?;
                Some((h.image_peer.clone()?, h.peer_socket.clone()))
            };
            admitted.iter().map(|(_, c)| peer(c)).collect()
        };
        let tree: Vec<usize> = (0..admitted.len()).filter(|k| peers[*k].is_some()).collect();
        let passes = |pos: usize| [2 * pos + 1, 2 * pos + 2].iter().filter(|c| **c < tree.len()).count() as u32;
        let request = |k: usize, source: Option<(String, Option<String>)>, pass_on: u32| {
            let (i, copy) = admitted[k];
            let mut req = restore_request(copy, &first.child, &image.name);
            req.marker = [&b"N"[..], &ranks[i].to_le_bytes()].concat();
            if let Some((addr, socket)) = source {
                req.source = addr;
                // Both on this host: the peer's Unix socket is tried first.
                if peers[k].as_ref().is_some_and(|(_, own)| own.is_some()) {
                    req.source_socket = socket.unwrap_or_default();
                }
            }
            req.pass_on = pass_on;
            (copy.conn, req)
        };
        /// What a copy's node did: it holds the image for its peers, or its
        /// restore ended.
        enum Done {
            Held(usize),
            Restored(usize, Option<usize>, Result<i32, Status>),
        }
        let mut running = tokio::task::JoinSet::new();
        let start = |running: &mut tokio::task::JoinSet<Done>,
                     k: usize,
                     pos: Option<usize>,
                     source: Option<(String, Option<String>)>| {
            let (conn, req) = request(k, source, pos.map_or(0, passes));
            let shared = self.shared.clone();
            if let Some(pos) = pos.filter(|p| passes(*p) > 0) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                shared.lock().held.insert(req.id, tx);
                running.spawn(async move {
                    match rx.await {
                        Ok(()) => Done::Held(pos),
                        // Its restore ended first: that says what to do.
                        Err(_) => Done::Held(usize::MAX),
                    }
                });
            }
            running.spawn(async move {
                let id = req.id;
                let result = restore_on(&shared, conn, req).await;
                shared.lock().held.remove(&id);
                Done::Restored(k, pos, result)
            });
        };
        // A tree position's children start once (when its node holds the
        // image, or from here when its restore failed before that).
        let mut children_started = vec![false; tree.len()];
        // The tree's root and every node outside the tree fetch from here.
        for k in (0..admitted.len()).filter(|k| peers[*k].is_none()) {
            start(&mut running, k, None, None);
        }
        if let Some(&root) = tree.first() {
            start(&mut running, root, Some(0), None);
        }
        while let Some(done) = running.join_next().await {
            let (pos, source) = match done {
                Ok(Done::Held(pos)) if pos < tree.len() => (pos, peers[tree[pos]].clone()),
                Ok(Done::Restored(k, pos, result)) => {
                    let failed = result.is_err();
                    out[admitted[k].0] = result;
                    // Unless they started when it held the image: a node
                    // that failed passes nothing on (its children fetch from
                    // here), one that did not say it held it still has it.
                    match pos {
                        Some(pos) => (pos, if failed { None } else { peers[k].clone() }),
                        None => continue,
                    }
                }
                _ => continue,
            };
            if std::mem::replace(&mut children_started[pos], true) {
                continue;
            }
            for child in [2 * pos + 1, 2 * pos + 2].into_iter().filter(|c| *c < tree.len()) {
                start(&mut running, tree[child], Some(child), source.clone());
            }
        }
        drop(image);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        out
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
async fn read_client(shared: Arc<Shared>, id: ProcId, gen: u64, mut inbound: impl Inbound) {
    let window = shared.cfg.stdio_window;
    // After a detach: the answer stream stays open until the ghost has sent
    // its last acknowledgements and closed its side.
    let mut held = None;
    loop {
        let msg = match std::future::poll_fn(|cx| std::pin::Pin::new(&mut inbound).poll_next(cx)).await {
            Some(Ok(m)) => m,
            None | Some(Err(_)) => break,
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

/// An admitted rfork copy: its process id, node link, PID, and what /proc
/// said of it.
pub(super) struct Copy {
    id: ProcId,
    conn: ConnId,
    pid: i32,
    child: migrate::Child,
}

/// Admitted rfork copies whose call has not answered yet. Restored ones get
/// the usual time for their ghosts to attach, from the answer on; failed
/// ones are taken back; and if the call is dropped first (its client went),
/// so are the rest.
struct InFlight {
    shared: Arc<Shared>,
    ids: Vec<ProcId>,
}

impl InFlight {
    fn new(shared: Arc<Shared>, ids: &[ProcId]) -> Self {
        InFlight { shared, ids: ids.to_vec() }
    }

    fn restored(&mut self, id: ProcId) {
        self.ids.retain(|i| *i != id);
        self.shared.lock().attach_from_now(id);
    }

    fn failed(&mut self, id: ProcId) {
        self.ids.retain(|i| *i != id);
        self.shared.lock().abandon(id);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        for id in self.ids.drain(..) {
            st.abandon(id);
        }
    }
}

/// The most copies one vrfork makes.
const MAX_VRFORK: usize = 4096;

/// Checkpoints process `pid` into `dir` (from a blocking thread).
async fn dump_into(pid: i32, dir: &std::path::Path) -> Result<(), Status> {
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || migrate::dump(pid, &dir)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(Status::internal(why)),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

/// The restore of `copy` from an image of `imaged` (the same process, or
/// the vrfork sibling that was checkpointed: CRIU names its files).
fn restore_request(copy: &Copy, imaged: &migrate::Child, image: &str) -> v1::RestoreRequest {
    let [stdin_key, stdout_key, stderr_key] = imaged.stdio.clone();
    v1::RestoreRequest {
        id: copy.id,
        image: image.to_string(),
        pid: copy.pid,
        stdin_key,
        stdout_key,
        stderr_key,
        marker_key: imaged.marker.clone(),
        ..Default::default()
    }
}

/// A live image's chunks (see [`bproc_daemon::live`]).
pub(super) type LiveChunks = tokio::sync::mpsc::Receiver<Result<v1::ImageChunk, String>>;

/// An image directory that slaves may fetch (FetchImage) under a random
/// name while this lives.
pub(super) struct ImageLease<'a> {
    shared: &'a Shared,
    pub name: String,
}

impl<'a> ImageLease<'a> {
    pub fn new(shared: &'a Shared, dir: &std::path::Path) -> Self {
        Self::of(shared, super::Image::Files(dir.to_path_buf()))
    }

    /// An image whose chunks come as they are made, for one fetch.
    pub fn live(shared: &'a Shared, chunks: LiveChunks) -> Self {
        Self::of(shared, super::Image::Live(Some(chunks)))
    }

    fn of(shared: &'a Shared, image: super::Image) -> Self {
        let name = migrate::random_name();
        shared.lock().images.insert(name.clone(), image);
        ImageLease { shared, name }
    }
}

impl Drop for ImageLease<'_> {
    fn drop(&mut self) {
        self.shared.lock().images.remove(&self.name);
    }
}

/// Has the slave on `conn` restore a process as `req` says; returns its node
/// PID once the slave reports it STARTED.
pub(super) async fn restore_on(shared: &Shared, conn: ConnId, req: v1::RestoreRequest) -> Result<i32, Status> {
    let id = req.id;
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let mut st = shared.lock();
        st.restores.insert(id, tx);
        if !st.send_slave(conn, master_msg::Msg::Restore(req)) {
            st.restores.remove(&id);
            return Err(Status::aborted("the node's link is gone"));
        }
    }
    let answer = tokio::time::timeout(migrate::RESTORE_TIMEOUT, rx).await;
    shared.lock().restores.remove(&id);
    match answer {
        Ok(Ok(Ok(node_pid))) => Ok(node_pid),
        Ok(Ok(Err(why))) => Err(Status::aborted(why)),
        Ok(Err(_)) | Err(_) => Err(Status::aborted("the node did not restore the process in time")),
    }
}
