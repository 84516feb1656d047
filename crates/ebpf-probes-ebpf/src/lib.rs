//! Library target of the probe crate; it exists only so that the package has one. The probes are the
//! `bproc-probes` binary (`src/main.rs`, `src/probes.rs`).
//!
//! # Layout
//! - `main.rs`: the BPF object's entry (an empty `main` on the host).
//! - `probes.rs`: maps, the load-time config global and the four tracepoint programs.
#![no_std]
