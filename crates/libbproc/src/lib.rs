//! # libbproc
//!
//! The bproc-rs client library: it talks to the master over its Unix socket
//! and backs the user tools `bpsh` and `bpstat`.
//!
//! # Layout
//! - [`client`]: the connection to the master, node and process queries,
//!   exec streams.
//! - [`nodeset`]: node lists such as `0-3,7`.
//! - [`wait_status`]: decoding wait statuses and ending like a remote process.
//! - [`ghost_spec`]: what bpsh tells each ghost it forks.
//! - [`error`]: the [`BprocError`] type.

pub mod client;
pub mod error;
pub mod fork;
pub mod ghost_spec;
pub mod migrate;
pub mod nodeset;
pub mod wait_status;

pub use client::{Client, NodeStatus, ProcessStatus};
pub use error::BprocError;
pub use proto;
