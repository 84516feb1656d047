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
}

impl From<tonic::Status> for BprocError {
    fn from(s: tonic::Status) -> Self {
        let msg = s.message().to_string();
        match s.code() {
            tonic::Code::NotFound => BprocError::NoSuchNode(msg),
            tonic::Code::Unavailable if msg.contains("node") => BprocError::NodeDown(msg),
            tonic::Code::PermissionDenied => BprocError::PermissionDenied(msg),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled => {
                BprocError::Transport(msg)
            }
            _ => BprocError::Refused(msg),
        }
    }
}
