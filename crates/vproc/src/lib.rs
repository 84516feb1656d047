//! # vproc
//!
//! The virtual process space. A remote process has a *ghost* on the master:
//! a real process, forked by whoever asked for the remote one (bpsh), so its
//! parent, process group, session and terminal are right for free. The
//! ghost's PID is the global PID: the remote process is created on its node
//! with the same PID. The ghost runs with the remote command line (so `ps`
//! shows it), proxies the caller's stdio, forwards the signals it receives,
//! stops when the remote process stops, and dies exactly as it died.
//!
//! # Layout
//! - [`spec`]: what bpsh tells a ghost (node, options), through its environment
//!   (it lives in libbproc, which bpsh is built from).
//! - [`ghost`]: the ghost's loop (plain threads and poll: no async runtime).
//! - [`link`]: its link to the master, without gRPC (see `proto::frame`).
//! - [`output`]: writer threads for remote output, with `-p` line prefixes.
//! - `bin/bpghost.rs`: the ghost program that bpsh execs.

pub mod ghost;
pub mod link;
pub mod output;
pub use libbproc::ghost_spec as spec;
