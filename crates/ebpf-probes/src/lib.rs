//! Loader for bproc's eBPF tracking probes: it follows the process trees a daemon tracks (fork, exec,
//! exit with the exact wait status, signals aimed at them) from inside the kernel.
//!
//! ```no_run
//! # fn main() -> Result<(), ebpf_probes::ProbeError> {
//! let mut probes = ebpf_probes::Probes::load()?; // root: needs CAP_BPF and CAP_PERFMON
//! probes.track(1234)?; // a process; its future children are added in the kernel by the fork probe
//! while let Some(event) = probes.next_event(std::time::Duration::from_secs(1))? {
//!     println!("{event:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! **Pids are global, with namespace twins.** Every pid tracked or reported is a thread-group id as
//! seen from the initial PID namespace. One kernel serves every namespace node on a machine, so the
//! probes see all nodes' processes; each daemon filters to its own by tracking only its own process
//! trees. Events also carry the `ns_*` pids: the same processes as the tree's root numbers them. The
//! master tracks ghosts by global pid ([`Probes::track`]); a slave that is PID 1 of its node cannot
//! know its global pid, so it loads [`Probes::load_tracking_self`] and gets its node's pids.
//!
//! The probes are built from source by this crate's `build.rs` (crate `ebpf-probes-ebpf`, pinned
//! nightly from its `toolchain.txt`, linked by bpf-linker; `bash x.sh setup` installs both). They are
//! tracepoint programs (`sched_process_exec`, `sched_process_exit`, `signal_generate`) plus a raw
//! tracepoint on `sched_process_fork` (it needs the child's `task_struct` to tell a new process from a
//! new thread). Kernel-specific offsets are read at load time: tracepoint record fields from
//! `/sys/kernel/tracing/events/<group>/<event>/format`, `task_struct` fields from
//! `/sys/kernel/btf/vmlinux`; none is hard-coded.
//!
//! # Layout
//! - [`probes`]: [`Probes`] (load and attach, blocking event reads), [`Tracker`] (the `TRACKED` map).
//! - [`async_events`]: [`AsyncProbes`], the same events as a tokio `AsyncFd` stream.
//! - [`event`]: [`Event`], decoded from the ring buffer's raw records.
//! - [`tracefs`]: mounting tracefs when needed and parsing tracepoint format files.
//! - [`btf`]: a small reader of the kernel's BTF, for `task_struct` member offsets.
//! - [`error`]: [`ProbeError`], one variant per step that can fail.

pub mod async_events;
pub mod btf;
pub mod error;
pub mod event;
pub mod probes;
pub mod tracefs;

pub use async_events::AsyncProbes;
pub use error::ProbeError;
pub use event::Event;
pub use probes::{Probes, Tracker};
