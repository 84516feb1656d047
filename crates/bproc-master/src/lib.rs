//! # bpmaster
//!
//! The bproc-rs master daemon: it owns the node table and the process table
//! of the whole cluster, serves clients on a Unix socket (identified by
//! SO_PEERCRED) and slaves on TCP, and routes spawns, stdio, signals and
//! exit statuses between them.
//!
//! # Layout
//! - [`engine`]: the pure engine (node table, process table, permissions):
//!   events in, effects out; no I/O.
//! - [`runtime`]: the tonic services, the shared state around the engine,
//!   the heartbeat clock and the listeners.
//! - [`config`]: flags and the optional TOML configuration file.

pub mod config;
pub mod engine;
pub mod runtime;
