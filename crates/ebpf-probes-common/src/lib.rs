//! Layouts shared by the BPF probes (`ebpf-probes-ebpf`, built for `bpfel-unknown-none`) and their
//! loader (`ebpf-probes`, built for the host).
//!
//! # Layout
//! One file: the names of the maps, programs and the load-time global, the event kinds, [`RawEvent`]
//! (one ring-buffer record) and [`ProbeConfig`] (offsets the loader computes at load time and hands to
//! the probes). Everything is `#[repr(C)]` and made of fixed-width integers, so both sides agree on
//! the bytes. `pid`, `tid` and `other` are global pids (the initial PID namespace), because one
//! kernel serves every namespace node; `ns_pid` and `ns_other` are the same processes' pids as seen
//! at the PID-namespace level of the tree's root (see [`TRACKED_MAP`]).
#![no_std]

/// BPF hash map `tgid (u32) -> u8`: the thread groups whose events reach userspace. The value is
/// one more than the PID-namespace level whose pids the events report as `ns_pid`/`ns_other`: 1 for
/// a process tracked from userspace (level 0, global pids); for a tree rooted at the loader itself
/// ([`ProbeConfig::seed_ns_inum`]), the loader's own level plus one. Children inherit the value.
pub const TRACKED_MAP: &str = "TRACKED";
/// BPF ring buffer carrying [`RawEvent`] records.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the read-only global holding the [`ProbeConfig`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Capacity of [`TRACKED_MAP`].
pub const TRACKED_MAX_ENTRIES: u32 = 1 << 16;
/// Size of the [`EVENTS_MAP`] ring buffer in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 20;

/// Program names (the probe functions' names) and the tracepoints they attach to.
pub const PROG_FORK: &str = "bproc_fork";
pub const PROG_EXEC: &str = "bproc_exec";
pub const PROG_EXIT: &str = "bproc_exit";
pub const PROG_SIGNAL: &str = "bproc_signal";
pub const PROG_DELIVER: &str = "bproc_deliver";

/// [`RawEvent::kind`]: a tracked thread group created a new process. `pid` is the child's tgid,
/// `tid` the child's pid (equal to it), `other` the forking process's tgid.
pub const KIND_FORK: u32 = 1;
/// [`RawEvent::kind`]: a tracked process called execve. `pid` is its tgid, `tid` the thread that
/// exec'd (after exec it is the leader, so equal to `pid`), `comm` the new command name.
pub const KIND_EXEC: u32 = 2;
/// [`RawEvent::kind`]: the last thread of a tracked thread group exited. `pid` is the tgid, `tid` the
/// last thread, `value` the wait status (`task_struct::exit_code`).
pub const KIND_EXIT: u32 = 3;
/// [`RawEvent::kind`]: a signal was generated for a tracked pid. `pid` is the target, `other` the tgid
/// of the task in whose context it was generated (the sender), `value` the signal number, `aux` the
/// kernel's `TRACE_SIGNAL_*` result.
pub const KIND_SIGNAL: u32 = 4;
/// [`RawEvent::kind`]: a tracked process is about to act on a signal (`signal_deliver`). `pid` is
/// its tgid, `tid` the thread, `value` the signal number, `aux` 1 when the action is the default one
/// (so a stop signal stops it), else 0.
pub const KIND_DELIVER: u32 = 5;

/// One ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// One of the `KIND_*` constants.
    pub kind: u32,
    /// The thread group the event is about (see the `KIND_*` docs).
    pub pid: u32,
    /// The thread the event happened on.
    pub tid: u32,
    /// Parent tgid (fork) or sender tgid (signal); 0 otherwise.
    pub other: u32,
    /// Wait status (exit) or signal number (signal); 0 otherwise.
    pub value: i32,
    /// Extra kind-specific value (signal: delivery result); 0 otherwise.
    pub aux: i32,
    /// `current->comm` at the time of the event, NUL-padded.
    pub comm: [u8; 16],
    /// `pid` as seen in the tracked tree's PID namespace (0 for signals).
    pub ns_pid: u32,
    /// `other` as seen in the tracked tree's PID namespace (fork only; 0 otherwise).
    pub ns_other: u32,
}

/// Size of a [`RawEvent`] in bytes.
pub const RAW_EVENT_SIZE: usize = core::mem::size_of::<RawEvent>();

/// Byte offsets that differ between kernels, computed by the loader at load time (tracepoint record
/// fields from `/sys/kernel/tracing/events/*/*/format`, `task_struct` fields from the kernel's BTF) and
/// written into the probes' read-only global [`CONFIG_GLOBAL`] before they are loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `sched_process_exit` record: `bool group_dead`.
    pub exit_group_dead: u32,
    /// `signal_generate` record: `int sig`.
    pub signal_sig: u32,
    /// `signal_generate` record: `pid_t pid` (the target task).
    pub signal_pid: u32,
    /// `signal_generate` record: `int result`.
    pub signal_result: u32,
    /// `signal_deliver` record: `int sig`.
    pub deliver_sig: u32,
    /// `signal_deliver` record: `unsigned long sa_handler`.
    pub deliver_handler: u32,
    /// `struct task_struct`: `pid_t pid`.
    pub task_pid: u32,
    /// `struct task_struct`: `pid_t tgid`.
    pub task_tgid: u32,
    /// `struct task_struct`: `int exit_code`.
    pub task_exit_code: u32,
    /// `struct task_struct`: `struct task_struct *group_leader`.
    pub task_group_leader: u32,
    /// `struct task_struct`: `struct pid *thread_pid`.
    pub task_thread_pid: u32,
    /// `struct pid`: `unsigned int level`.
    pub pid_level: u32,
    /// `struct pid`: `struct upid numbers[]`.
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`.
    pub upid_size: u32,
    /// `struct upid`: `int nr`.
    pub upid_nr: u32,
    /// `struct upid`: `struct pid_namespace *ns`.
    pub upid_ns: u32,
    /// `struct pid_namespace`: `ns.inum` (the namespace's inode number, as in `/proc/PID/ns/pid`).
    pub pidns_inum: u32,
    /// Track the loader's own tree: the inode number of the loader's PID namespace (0: off). The
    /// first fork of the process whose pid there is [`ProbeConfig::seed_ns_pid`] puts that process
    /// in `TRACKED`, with its own namespace level, so that the loader and all it starts are tracked
    /// and reported with the pids of its namespace.
    pub seed_ns_inum: u32,
    /// The loader's pid in its own PID namespace (see [`ProbeConfig::seed_ns_inum`]).
    pub seed_ns_pid: u32,
    /// Non-zero once the loader has filled this in; the probes do nothing while it is zero.
    pub ready: u32,
}

// SAFETY: ProbeConfig is #[repr(C)], made only of u32 fields (no padding, no pointers), and every bit
// pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeConfig {}

// SAFETY: RawEvent is #[repr(C)], made only of 4-byte integers and a byte array (size 48, no padding,
// no pointers), and every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for RawEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(RAW_EVENT_SIZE, 6 * 4 + 16 + 2 * 4);
        assert_eq!(core::mem::size_of::<ProbeConfig>(), 20 * 4);
    }
}
