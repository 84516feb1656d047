//! The BPF object `bproc-probes`. Built for `bpfel-unknown-none` by `ebpf-probes/build.rs`; on any
//! other target it compiles to an empty program so that host workspace builds need no nightly.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
