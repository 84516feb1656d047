//! # libbproc
//!
//! The bproc-rs client library: it talks to the master over its Unix socket,
//! places processes on nodes (rfork, execmove and their vector forms), and
//! backs the user tools `bpsh` and `bpstat` and the C API (`libbproc.so`).
//!
//! ```no_run
//! use libbproc::migrate::{rfork, Forked};
//! match rfork(1)? {
//!     Forked::Child => println!("on node {}", libbproc::migrate::currnode()),
//!     Forked::Parent { pid } => println!("child {pid} runs on node 1"),
//! }
//! # Ok::<(), libbproc::BprocError>(())
//! ```
//!
//! # Layout
//! - [`client`]: the connection to the master, node and process queries,
//!   exec streams, the rfork request.
//! - [`migrate`]: rfork, vrfork, execmove, vexecmove, the node a process is on.
//! - [`io`]: BProc's io lists, the `_io` forms of those calls.
//! - [`fork`]: fork with a chosen PID (clone3 `set_tid`).
//! - [`nodeset`]: node lists such as `0-3,7`.
//! - [`wait_status`]: decoding wait statuses and ending like a remote process.
//! - [`ghost_spec`]: what bpsh tells each ghost it forks.
//! - [`error`]: the [`BprocError`] type.

pub mod client;
pub mod error;
pub mod fork;
pub mod ghost_spec;
pub mod io;
pub mod migrate;
pub mod nodeset;
pub mod wait_status;

pub use client::{Client, NodeStatus, ProcessStatus};
pub use error::BprocError;
pub use proto;
