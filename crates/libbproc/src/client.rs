//! The connection to the master over its Unix socket.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use proto::v1::{self, master_client::MasterClient};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::BprocError;

/// Where the master listens when `BPROC_SOCKET` is not set.
pub const DEFAULT_SOCKET: &str = "/run/bproc/master.sock";

/// The master's socket: `BPROC_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    std::env::var_os("BPROC_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET.into())
}

type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

#[allow(clippy::result_large_err)]
fn add_version(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    req.metadata_mut().insert(proto::VERSION_METADATA, MetadataValue::from(proto::PROTOCOL_VERSION));
    Ok(req)
}

/// A client of the master. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Client {
    inner: MasterClient<InterceptedService<Channel, Interceptor>>,
}

/// One node as the master sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    pub node: u32,
    pub state: String,
    pub addr: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub processes: u32,
}

/// One remote process as the master sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProcessStatus {
    pub id: u64,
    /// The global PID (the ghost's PID on the master); 0 without a ghost.
    pub pid: i32,
    pub node: u32,
    pub node_pid: i32,
    pub uid: u32,
    pub client_pid: i32,
    pub state: String,
    pub argv: Vec<String>,
}

impl Client {
    /// Connects to the master at [`socket_path`].
    pub async fn connect() -> Result<Client, BprocError> {
        Client::connect_to(&socket_path()).await
    }

    /// Connects to the master at `path`.
    pub async fn connect_to(path: &Path) -> Result<Client, BprocError> {
        let channel = uds_channel(path).await?;
        let inner = MasterClient::with_interceptor(channel, add_version as Interceptor)
            .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);
        Ok(Client { inner })
    }

    /// Changes who may use `node` (root only): each of `mode` (execute
    /// bits only), `uid` and `gid` that is given replaces the node's.
    pub async fn set_node_perms(
        &self,
        node: i32,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), BprocError> {
        self.inner.clone().set_node_perms(v1::SetNodePermsRequest { node, mode, uid, gid }).await?;
        Ok(())
    }

    /// The node table.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, BprocError> {
        let reply = self.inner.clone().nodes(v1::NodesRequest {}).await?.into_inner();
        Ok(reply
            .nodes
            .into_iter()
            .map(|n| NodeStatus {
                node: n.node.max(0) as u32,
                state: n.state,
                addr: n.addr,
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                hostname: n.hostname,
                processes: n.processes,
            })
            .collect())
    }

    /// Every remote process.
    pub async fn processes(&self) -> Result<Vec<ProcessStatus>, BprocError> {
        let reply = self.inner.clone().processes(v1::ProcessesRequest {}).await?.into_inner();
        Ok(reply
            .processes
            .into_iter()
            .map(|p| ProcessStatus {
                id: p.id,
                pid: p.pid,
                node: p.node.max(0) as u32,
                node_pid: p.node_pid,
                uid: p.uid,
                client_pid: p.client_pid,
                state: p.state,
                argv: p.argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect(),
            })
            .collect())
    }

    /// Asks the master to move the caller's child `pid` to `node` (see
    /// [`crate::migrate::rfork`]); returns the process's id.
    pub async fn rfork(&self, node: i32, pid: i32, marker_fd: i32, move_self: bool) -> Result<u64, BprocError> {
        let req = v1::RforkRequest { node, pid, marker_fd, move_self };
        Ok(self.inner.clone().rfork(req).await?.into_inner().id)
    }

    /// Asks the master to rfork the caller's children at once (see
    /// [`crate::migrate::vrfork`]): `copies` are (node, pid, marker fd,
    /// rank); one result per copy, the process's id or why it failed.
    pub async fn vrfork(&self, copies: &[(i32, i32, i32, u32)]) -> Result<Vec<Result<u64, BprocError>>, BprocError> {
        let ranks = copies.iter().map(|c| c.3).collect();
        let copies = copies
            .iter()
            .map(|&(node, pid, marker_fd, _)| v1::RforkRequest { node, pid, marker_fd, move_self: false })
            .collect();
        let reply = self.inner.clone().vrfork(v1::VrforkRequest { copies, ranks }).await?.into_inner();
        Ok(reply
            .results
            .into_iter()
            .map(|r| match r.code {
                0 => Ok(r.id),
                code => Err(BprocError::from(tonic::Status::new(tonic::Code::from(code), r.message))),
            })
            .collect())
    }

    /// Opens an exec stream: the caller feeds `input` (whose first message
    /// must be a start) and reads the process's events and output.
    pub async fn exec(
        &self,
        input: impl tokio_stream::Stream<Item = v1::ExecIn> + Send + 'static,
    ) -> Result<tonic::Streaming<v1::ExecOut>, BprocError> {
        Ok(self.inner.clone().exec(input).await?.into_inner())
    }
}

/// What a process started from here inherits: the caller's environment,
/// directory and umask.
pub fn start_here(node: u32, argv: &[std::ffi::OsString], stdin_null: bool) -> v1::ExecStart {
    let env = env_bytes(std::env::vars_os());
    let cwd = std::env::current_dir().map(|d| d.as_os_str().as_bytes().to_vec()).unwrap_or_else(|_| b"/".to_vec());
    v1::ExecStart {
        node: node as i32,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        cwd,
        umask: current_umask(),
        stdin_null,
        pid: 0,
    }
}

/// Environment entries as `NAME=value` bytes.
pub fn env_bytes(vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Vec<Vec<u8>> {
    vars.into_iter()
        .map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            e
        })
        .collect()
}

/// This process's umask, read without changing it.
pub fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

/// An HTTP/2 channel over the Unix socket at `path` (failing fast and clearly
/// when nobody listens there).
pub async fn uds_channel(path: &Path) -> Result<Channel, BprocError> {
    let unreachable = |source| BprocError::Unreachable { path: path.to_path_buf(), source };
    // Fail fast and clearly when nobody listens there.
    let stream = tokio::net::UnixStream::connect(path).await.map_err(unreachable)?;
    let mut first = Some(stream);
    let path2 = path.to_path_buf();
    let endpoint = Endpoint::from_static("http://bproc.master")
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let ready = first.take();
            let path = path2.clone();
            async move {
                let stream = match ready {
                    Some(s) => s,
                    None => tokio::net::UnixStream::connect(path).await?,
                };
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| unreachable(std::io::Error::other(e)))?;
    Ok(channel)
}

/// Where a node's slave serves that node's processes.
pub const NODE_SOCKET: &str = "/run/bproc/node/slave.sock";

/// Asks this node's slave to move process `pid` (waiting on its marker pipe,
/// fd `marker_fd`) to `node` (see [`crate::migrate::move_to`]).
pub async fn node_move(node: i32, pid: i32, marker_fd: i32) -> Result<(), BprocError> {
    let channel = uds_channel(Path::new(NODE_SOCKET)).await?;
    let mut client = v1::node_client::NodeClient::with_interceptor(channel, add_version as Interceptor);
    client.r#move(v1::MoveRequest { node, pid, marker_fd }).await?;
    Ok(())
}
