//! The slave's service for its node's own processes (`bproc_move` from a
//! node), on a Unix socket that only the node sees. Callers are identified
//! by the kernel (SO_PEERCRED), never by what they send.

use proto::v1;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use crate::procs::Procs;

/// Where the service listens (on the node's own tmpfs, see
/// [`crate::sys::publish_node_number`]).
pub const SOCKET: &str = "/run/bproc/node/slave.sock";

struct NodeService {
    procs: Procs,
}

/// The real uid of process `pid`, from /proc.
fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

#[tonic::async_trait]
impl v1::node_server::Node for NodeService {
    async fn r#move(&self, req: Request<v1::MoveRequest>) -> Result<Response<v1::MoveReply>, Status> {
        let caller = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
            .ok_or_else(|| Status::permission_denied("no peer credentials on this connection"))?;
        let r = req.into_inner();
        let owner = uid_of(r.pid).ok_or_else(|| Status::not_found(format!("no process {}", r.pid)))?;
        if caller.uid() != 0 && caller.uid() != owner {
            return Err(Status::permission_denied(format!("process {} is not the caller's", r.pid)));
        }
        if let Err(e) = self.procs.move_out(r.pid, r.node, r.marker_fd).await {
            tracing::warn!(pid = r.pid, node = r.node, why = e.message(), "move failed");
            return Err(e);
        }
        Ok(Response::new(v1::MoveReply {}))
    }
}

/// Serves the node's processes until the slave ends.
pub async fn serve(procs: Procs) {
    let _ = std::fs::remove_file(SOCKET);
    let listener = match tokio::net::UnixListener::bind(SOCKET) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, socket = SOCKET, "cannot serve the node's processes: bproc_move from this node fails");
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o666));
    }
    let result = tonic::transport::Server::builder()
        .add_service(v1::node_server::NodeServer::new(NodeService { procs }))
        .serve_with_incoming(UnixListenerStream::new(listener))
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "the node service stopped");
    }
}
