//! Errors of the client library.

use std::path::PathBuf;

/// Why a libbproc call failed. A request the master refused is told apart
/// from a master that cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum BprocError {
    #[error("cannot reach the master at {path}: {source}")]
    Unreachable { path: PathBuf, source: std::io::Error },
    #[error("lost the connection to the master: {0}")]
    Transport(String),
    #[error("{0}")]
    NoSuchNode(String),
    #[error("{0}")]
    NodeDown(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("the master refused the request: {0}")]
    Refused(String),
    #[error("bad node list {spec:?}: {why}")]
    BadNodeList { spec: String, why: String },
    #[error("moving the process failed: {0}")]
    Migration(String),
    #[error("{0}")]
    System(String),
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl Clone for BprocError {
    fn clone(&self) -> Self {
        use BprocError::*;
        match self {
            Unreachable { path, source } => {
                Unreachable { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Transport(m) => Transport(m.clone()),
            NoSuchNode(m) => NoSuchNode(m.clone()),
            NodeDown(m) => NodeDown(m.clone()),
            PermissionDenied(m) => PermissionDenied(m.clone()),
            Refused(m) => Refused(m.clone()),
            BadNodeList { spec, why } => BadNodeList { spec: spec.clone(), why: why.clone() },
            Migration(m) => Migration(m.clone()),
            System(m) => System(m.clone()),
            Unsupported(m) => Unsupported(m.clone()),
        }
    }
}

/// BProc's own errno values (its `BE_*` codes), for the C API.
pub mod errno {
    /// No such node.
    pub const BE_INVALIDNODE: i32 = 300;
    /// The node is down.
    pub const BE_NODEDOWN: i32 = 301;
    /// Moving to the node the process is on.
    pub const BE_SAMENODE: i32 = 302;
    /// The node failed during the operation.
    pub const BE_SLAVEDIED: i32 = 303;
    /// No such process.
    pub const BE_INVALIDPROC: i32 = 304;
}

impl BprocError {
    /// The errno a C caller sees for this error (BProc's codes where BProc
    /// has one).
    pub fn errno(&self) -> i32 {
        match self {
            BprocError::NoSuchNode(_) => errno::BE_INVALIDNODE,
            BprocError::NodeDown(_) => errno::BE_NODEDOWN,
            BprocError::PermissionDenied(_) => libc::EPERM,
            BprocError::Migration(_) => errno::BE_SLAVEDIED,
            BprocError::Unreachable { .. } => libc::ECONNREFUSED,
            BprocError::Unsupported(_) => libc::ENOSYS,
            BprocError::BadNodeList { .. } | BprocError::Refused(_) => libc::EINVAL,
            BprocError::Transport(_) | BprocError::System(_) => libc::EIO,
        }
    }
}

impl From<tonic::Status> for BprocError {
    fn from(s: tonic::Status) -> Self {
        let msg = s.message().to_string();
        match s.code() {
            tonic::Code::NotFound => BprocError::NoSuchNode(msg),
            tonic::Code::Unavailable if msg.contains("node") => BprocError::NodeDown(msg),
            tonic::Code::PermissionDenied => BprocError::PermissionDenied(msg),
            tonic::Code::Aborted => BprocError::Migration(msg),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled => {
                BprocError::Transport(msg)
            }
            _ => BprocError::Refused(msg),
        }
    }
}
