//! The `SlaveLink` service: one long-lived stream per slave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{self, exec_out, master_msg, slave_msg};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::ratelimit::RateLimit;
use super::{ClientHandle, Shared, SlaveHandle};
use crate::engine::{fork_id_base, node_pid_base, ConnId, MoveError, ProcEventKind};

static BAD_SLAVE_MSG: RateLimit = RateLimit::new(5);

/// How long a new link may take to say who it is.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SlaveLinkService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl v1::slave_link_server::SlaveLink for SlaveLinkService {
    type AttachStream = UnboundedReceiverStream<Result<v1::MasterMsg, Status>>;
    type FetchImageStream = ImageStream;

    async fn move_out(&self, req: Request<Streaming<v1::MoveOutChunk>>) -> Result<Response<v1::MoveOutReply>, Status> {
        let from = req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        let mut inbound = req.into_inner();
        let Some(v1::MoveOutChunk { msg: Some(v1::move_out_chunk::Msg::Header(h)) }) = inbound.message().await? else {
            return Err(Status::invalid_argument("a move starts with its header"));
        };
        let id = h.id;
        let conn = self.shared.lock().engine.begin_move(id, &from, h.node).map_err(|e| match e {
            MoveError::Spawn(s) => convert::spawn_status(s),
            other => Status::permission_denied(other.to_string()),
        })?;
        // The image goes from the moving process's node to the target node
        // as it comes, with no copy here.
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        let relay = tokio::spawn(relay_image(inbound, tx));
        let result = async {
            let image = super::client_api::ImageLease::live(&self.shared, chunks);
            let req = v1::RestoreRequest {
                id,
                image: image.name.clone(),
                pid: h.pid,
                stdin_key: h.stdin_key.clone(),
                stdout_key: h.stdout_key.clone(),
                stderr_key: h.stderr_key.clone(),
                marker_key: h.marker_key.clone(),
                ..Default::default()
            };
            super::client_api::restore_on(&self.shared, conn, req).await
        }
        .await;
        // The relay ends once the image is through, or its fetch has gone.
        relay.abort();
        self.shared.lock().engine.end_move(id);
        let node_pid = result?;
        tracing::debug!(id, node = h.node, node_pid, "moved");
        Ok(Response::new(v1::MoveOutReply { node_pid }))
    }

    async fn fetch_image(
        &self,
        req: Request<v1::FetchImageRequest>,
    ) -> Result<Response<Self::FetchImageStream>, Status> {
        serve_image(&self.shared, req.into_inner().image).map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(peer = ?req.remote_addr()))]
    async fn attach(&self, req: Request<Streaming<v1::SlaveMsg>>) -> Result<Response<Self::AttachStream>, Status> {
        let addr = req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no register message within 5 s"))??
            .ok_or_else(|| Status::invalid_argument("link closed before register"))?;
        let Some(slave_msg::Msg::Register(reg)) = first.msg else {
            return Err(Status::invalid_argument("the first message on a slave link must be register"));
        };
        proto::check_version("slave", reg.protocol_version).map_err(Status::failed_precondition)?;
        let hostname: String = reg.hostname.chars().take(64).collect();

        // A slave on this host serves its images to the others here on a Unix
        // socket beside ours (not the front end's own node: it is no source).
        let boot_id = bproc_daemon::sys::boot_id();
        let local = !reg.boot_id.is_empty() && reg.boot_id == boot_id && reg.node != u32::MAX;
        let peer_socket = self
            .shared
            .image_socket
            .get()
            .filter(|_| local)
            .and_then(|s| std::path::Path::new(s).parent().map(|d| d.join(format!("peer-{}.sock", reg.node))))
            .map(|p| p.display().to_string());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = {
            let mut st = self.shared.lock();
            let conn = st.next_conn;
            st.next_conn += 1;
            let welcome = v1::Welcome {
                protocol_version: proto::PROTOCOL_VERSION,
                heartbeat_interval_ms: self.shared.cfg.heartbeat_interval_ms,
                link_timeout_ms: self.shared.cfg.link_timeout_ms,
                stdio_window: self.shared.cfg.stdio_window,
                fork_id_base: fork_id_base(conn),
                pid_base: node_pid_base(reg.node, st.engine.config().nodes, self.shared.cfg.pid_max),
                image_socket: self.shared.image_socket.get().cloned().unwrap_or_default(),
                boot_id: boot_id.clone(),
                peer_socket: peer_socket.clone().unwrap_or_default(),
            };
            let _ = tx.send(Ok(convert::master_msg(master_msg::Msg::Welcome(welcome))));
            let effects = st
                .engine
                .slave_attached(reg.node, conn, addr.clone(), hostname, Instant::now())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            // Peers reach its image service on the address it came from.
            let image_peer =
                (reg.image_port != 0 && reg.node != u32::MAX).then(|| format!("{addr}:{}", reg.image_port));
            st.slaves.insert(conn, SlaveHandle { tx, reader: None, image_peer, peer_socket });
            st.apply(effects);
            conn
        };
        tracing::info!(node = reg.node, conn, %addr, "node up");
        let task = tokio::spawn(read_slave(self.shared.clone(), conn, reg.node, inbound));
        if let Some(h) = self.shared.lock().slaves.get_mut(&conn) {
            h.reader = Some(task.abort_handle());
        }
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

async fn read_slave(shared: Arc<Shared>, conn: ConnId, node: u32, mut inbound: Streaming<v1::SlaveMsg>) {
    let end = loop {
        match inbound.message().await {
            Ok(Some(msg)) => {
                if let Err(why) = handle(&shared, conn, msg) {
                    if BAD_SLAVE_MSG.allow() {
                        tracing::warn!(node, conn, %why, "ignoring a bad message from a slave");
                    }
                }
            }
            Ok(None) => break "link closed".to_string(),
            Err(e) => break format!("link failed: {}", e.message()),
        }
    };
    let mut st = shared.lock();
    if st.slaves.remove(&conn).is_some() {
        tracing::warn!(node, conn, %end, "node down");
    }
    let effects = st.engine.slave_detached(conn);
    st.apply(effects);
}

fn handle(shared: &Shared, conn: ConnId, msg: v1::SlaveMsg) -> Result<(), String> {
    let mut st = shared.lock();
    if !st.engine.heard_from(conn, Instant::now()) {
        return Err("message on a link that is no longer current".into());
    }
    match msg.msg {
        Some(slave_msg::Msg::Heartbeat(hb)) => {
            st.send_slave(conn, master_msg::Msg::Heartbeat(hb));
        }
        Some(slave_msg::Msg::Event(ev)) => {
            let kind = convert::event_kind(&ev).ok_or("process event of unknown kind, or with a bad command line")?;
            // The node a process moves to restored it (or could not).
            if let Some(result) = st.engine.move_event(conn, ev.id, &kind) {
                st.restored(ev.id, result);
                return Ok(());
            }
            let forked = matches!(kind, ProcEventKind::Forked { .. });
            let continued = matches!(kind, ProcEventKind::Continued);
            // What an rfork waiting for this process learns from the event.
            let restore = match kind {
                ProcEventKind::Started { node_pid } => Some(Ok(node_pid)),
                ProcEventKind::ExecFailed => Some(Err(format!("restore failed (errno {})", ev.errno))),
                ProcEventKind::Exited => Some(Err("the process ended before it was restored".into())),
                _ => None,
            };
            let outcome = st.engine.proc_event(conn, ev.id, kind).map_err(|e| e.to_string())?;
            if let Some(result) = restore {
                st.restored(ev.id, result);
            }
            let id = ev.id;
            if forked {
                // The child waits for the ghost its parent's ghost forks.
                let (uid, parent_ghost) = match st.engine.process(id) {
                    Some(p) => (p.cred.uid, p.parent.and_then(|parent| st.engine.process(parent)).and_then(|p| p.pid)),
                    None => (0, None),
                };
                st.clients.insert(id, ClientHandle::unattached(uid, parent_ghost, Instant::now()));
            }
            if continued {
                // Continued on its node (not through its ghost): the ghost,
                // stopped as its process was, goes on too.
                if let Some(ghost) = st.clients.get(&id).and_then(|h| h.ghost) {
                    super::sys::continue_if_stopped(ghost);
                }
            }
            if let Some(target) = outcome.tell {
                st.tell(target, convert::exec_out(exec_out::Msg::Event(ev)), outcome.gone && target == id);
            } else if outcome.gone {
                st.clients.remove(&id);
            }
        }
        Some(slave_msg::Msg::Output(data)) => {
            st.engine.check_stdio_owner(conn, data.id).map_err(|e| e.to_string())?;
            if data.stream == v1::StdStream::Stdin as i32 {
                return Err("output on the stdin stream".into());
            }
            if st.clients.contains_key(&data.id) {
                let id = data.id;
                st.tell(id, convert::exec_out(exec_out::Msg::Output(data)), false);
            } else {
                // Nobody reads it any more: grant the credit back so the
                // node drains the process's output.
                let ack = v1::StdioAck { id: data.id, stream: data.stream, bytes: data.data.len() as u64 };
                st.send_slave(conn, master_msg::Msg::OutputAck(ack));
            }
        }
        Some(slave_msg::Msg::StdinAck(ack)) => {
            st.engine.check_stdio_owner(conn, ack.id).map_err(|e| e.to_string())?;
            if let Some(client) = st.clients.get_mut(&ack.id) {
                client.stdin_outstanding = client.stdin_outstanding.saturating_sub(ack.bytes);
                let id = ack.id;
                st.tell(id, convert::exec_out(exec_out::Msg::StdinAck(ack)), false);
            }
        }
        Some(slave_msg::Msg::ImageHeld(held)) => {
            st.engine.check_stdio_owner(conn, held.id).map_err(|e| e.to_string())?;
            if let Some(tx) = st.held.remove(&held.id) {
                let _ = tx.send(());
            }
        }
        Some(slave_msg::Msg::Register(_)) => return Err("second register on one link".into()),
        None => return Err("empty message".into()),
    }
    Ok(())
}

/// Passes a moving process's image from the MoveOut stream to its fetch: a
/// bad or broken stream reaches the fetch as an error.
async fn relay_image(
    mut inbound: Streaming<v1::MoveOutChunk>,
    tx: tokio::sync::mpsc::Sender<Result<v1::ImageChunk, String>>,
) {
    loop {
        let next = match inbound.message().await {
            Ok(Some(v1::MoveOutChunk { msg: Some(v1::move_out_chunk::Msg::Chunk(chunk)) })) => Ok(chunk),
            Ok(Some(_)) => Err("a second header in the image".to_string()),
            Ok(None) => return,
            Err(s) => Err(format!("receiving the image: {}", s.message())),
        };
        let failed = next.is_err();
        if tx.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// What a slave fetching an image receives.
pub(super) type ImageStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::ImageChunk, Status>> + Send>>;

/// Streams image `name` to a slave: a live image's chunks as they are made
/// (straight from their channel), or an image's files.
pub(super) fn serve_image(shared: &Shared, name: String) -> Result<ImageStream, Status> {
    use tokio_stream::StreamExt;
    let dir = {
        let mut st = shared.lock();
        match st.images.get_mut(&name).ok_or_else(|| Status::not_found("no such image"))? {
            super::Image::Files(dir) => dir.clone(),
            super::Image::Live(chunks) => {
                let chunks =
                    chunks.take().ok_or_else(|| Status::failed_precondition("the image is being fetched already"))?;
                let stream = tokio_stream::wrappers::ReceiverStream::new(chunks).map(|c| c.map_err(Status::aborted));
                return Ok(Box::pin(stream));
            }
        }
    };
    let (tx, out) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = bproc_daemon::checkpoint::stream_image(&dir, &tx, Ok).await {
            let _ = tx.send(Err(Status::internal(format!("reading the image: {e}")))).await;
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out)))
}

/// The master's images for slaves on its own host, on a Unix socket (root
/// only: the kernel's word, SO_PEERCRED).
pub struct LocalImages {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl v1::image_peer_server::ImagePeer for LocalImages {
    type FetchImageStream = ImageStream;

    async fn fetch_image(
        &self,
        req: Request<v1::FetchImageRequest>,
    ) -> Result<Response<Self::FetchImageStream>, Status> {
        let cred = super::peer::peer_cred(&req)?;
        if cred.uid != 0 {
            return Err(Status::permission_denied("images are for slaves (root) only"));
        }
        serve_image(&self.shared, req.into_inner().image).map(Response::new)
    }
}
