//! # bpslave
//!
//! The bproc-rs node daemon. It is PID 1 (or the subreaper) of its node's
//! PID namespace, keeps one link to the master, runs the processes the master
//! asks for with the caller's credentials, relays their stdio, delivers
//! signals and reports their exact wait status.
//!
//! # Layout
//! - [`link`]: one link to the master (register, heartbeat, dispatch).
//! - [`procs`]: the process table: spawn, stdio relay, signals, exits.
//! - [`reaper`]: SIGCHLD-driven reaping of every child and orphan.
//! - [`credit`]: the byte-credit window of an output stream.
//! - [`restore`], [`image_peer`]: rfork's node side (fetch and restore a
//!   checkpoint) and the images passed on to other nodes (vrfork's tree).
//! - [`sys`]: the one seam to the kernel (fork/exec, kill, waitpid, prctl).

pub mod credit;
pub mod image_peer;
pub mod link;
pub mod node_service;
pub mod procs;
pub mod reaper;
pub mod restore;
pub mod sys;
