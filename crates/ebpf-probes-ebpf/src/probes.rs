//! The four tracking programs, their maps and the load-time config.
//!
//! Filtering happens here, in the kernel: an event leaves only when its thread group (or, for
//! signals, its target pid) is in `TRACKED`. Keys are thread-group ids (tgid), i.e. process ids in the
//! initial PID namespace; threads never get entries of their own. A key's value is one more than the
//! PID-namespace level whose pids the events carry as `ns_pid`/`ns_other` (read from
//! `group_leader->thread_pid->numbers[level].nr`), and children inherit it.
//!
//! A loader may ask for its own tree (`seed_ns_inum`/`seed_ns_pid` in the config): the first fork of
//! the process with that pid in that PID namespace puts it in `TRACKED` at its own level. A daemon
//! that runs as PID 1 of a namespace node (it cannot know its global pid) tracks all it starts so.
//!
//! Rules:
//! - fork (`sched_process_fork`, raw tracepoint, args `(parent, child)` task pointers): if the
//!   current tgid is tracked and the child leads a new thread group (`child->tgid == child->pid`;
//!   a `CLONE_THREAD` child has the parent's tgid instead), the child's tgid is added to `TRACKED`
//!   and a fork event is sent. It runs in the parent before the child is first woken, so the child is
//!   tracked before it can run, fork or exec. `pid`/`tgid` offsets come from BTF at load time.
//! - exec (`sched_process_exec`): current tgid tracked → exec event with the new `comm`.
//! - exit (`sched_process_exit`): fires for every exiting thread; only when the record's `group_dead`
//!   is set (the last live thread of the group) and the tgid is tracked: exit event with
//!   `current->exit_code` (the wait status) and the tgid is removed from `TRACKED`.
//! - signal (`signal_generate`): the record's target `pid` is tracked → signal event; the sender is
//!   the tgid of the task in whose context the signal was generated.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_get_current_task},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
    Global,
};
use ebpf_probes_common::{
    ProbeConfig, RawEvent, EVENTS_BYTES, KIND_DELIVER, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_SIGNAL,
    TRACKED_MAX_ENTRIES,
};

#[map]
static TRACKED: HashMap<u32, u8> = HashMap::with_max_entries(TRACKED_MAX_ENTRIES, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[no_mangle]
static CONFIG: Global<ProbeConfig> = Global::new(ProbeConfig {
    exit_group_dead: 0,
    signal_sig: 0,
    signal_pid: 0,
    signal_result: 0,
    deliver_sig: 0,
    deliver_handler: 0,
    task_pid: 0,
    task_tgid: 0,
    task_exit_code: 0,
    task_group_leader: 0,
    task_thread_pid: 0,
    pid_level: 0,
    pid_numbers: 0,
    upid_size: 0,
    upid_nr: 0,
    upid_ns: 0,
    pidns_inum: 0,
    seed_ns_inum: 0,
    seed_ns_pid: 0,
    ready: 0,
});

#[inline(always)]
fn is_tracked(tgid: u32) -> bool {
    TRACKED.get_ptr(tgid).is_some()
}

/// The namespace level a tracked tgid reports pids at, if it is tracked.
#[inline(always)]
fn tracked_level(tgid: u32) -> Option<u32> {
    let value = TRACKED.get_ptr(tgid)?;
    // SAFETY: the pointer comes from a successful map lookup and points at the u8 value.
    let value = unsafe { *value };
    Some(u32::from(value).saturating_sub(1))
}

#[inline(always)]
fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send(kind: u32, pid: u32, tid: u32, other: u32, value: i32, aux: i32, ns_pid: u32, ns_other: u32) {
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let event = RawEvent { kind, pid, tid, other, value, aux, comm, ns_pid, ns_other };
    // A full ring buffer drops the event; userspace falls back on reaping (DESIGN.md §3).
    let _ = EVENTS.output::<RawEvent>(&event, 0);
}

/// Reads an `i32` at `base + offset` in kernel memory.
#[inline(always)]
fn read_kernel_i32(base: u64, offset: u32) -> Option<i32> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-checked helper; a bad address
    // returns an error instead of faulting. The offset comes from the running kernel's BTF.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const i32).ok() }
}

/// The current thread group, thread and reporting level, when the probes
/// are configured and the group is tracked.
#[inline(always)]
fn tracked_current(cfg: &ProbeConfig) -> Option<(u32, u32, u32)> {
    if cfg.ready == 0 {
        return None;
    }
    let (tgid, tid) = current();
    tracked_level(tgid).map(|level| (tgid, tid, level))
}

/// Reads a `u64` (a kernel pointer) at `base + offset` in kernel memory.
#[inline(always)]
fn read_kernel_u64(base: u64, offset: u32) -> Option<u64> {
    if base == 0 {
        return None;
    }
    // SAFETY: as in read_kernel_i32: a fault-checked copy, at an offset from this kernel's BTF.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const u64).ok() }
}

/// The `struct pid` of `task`'s thread-group leader: its process id in every namespace.
#[inline(always)]
fn leader_pid(cfg: &ProbeConfig, task: u64) -> Option<u64> {
    let leader = read_kernel_u64(task, cfg.task_group_leader)?;
    read_kernel_u64(leader, cfg.task_thread_pid)
}

/// The address of `pid->numbers[level]`, with `level` capped at the pid's own depth; and that depth.
#[inline(always)]
fn upid_at(cfg: &ProbeConfig, pid: u64, level: u32) -> Option<(u64, u32)> {
    let depth = read_kernel_i32(pid, cfg.pid_level)? as u32;
    let level = if level < depth { level } else { depth };
    Some((pid + u64::from(cfg.pid_numbers) + u64::from(level & 63) * u64::from(cfg.upid_size), depth))
}

/// The process id of `task` in the namespace at `level` (0 when it cannot be read).
#[inline(always)]
fn ns_pid_of(cfg: &ProbeConfig, task: u64, level: u32) -> u32 {
    let Some(pid) = leader_pid(cfg, task) else { return 0 };
    match upid_at(cfg, pid, level) {
        Some((upid, _)) => read_kernel_i32(upid, cfg.upid_nr).unwrap_or(0) as u32,
        None => 0,
    }
}

/// Whether the current process is the configured seed; if so it is tracked from now on, and its
/// level is returned.
#[inline(always)]
fn seed_level(cfg: &ProbeConfig, tgid: u32) -> Option<u32> {
    if cfg.seed_ns_inum == 0 {
        return None;
    }
    // SAFETY: bpf_get_current_task has no preconditions; it returns the current task_struct pointer.
    let task = unsafe { bpf_get_current_task() };
    let pid = leader_pid(cfg, task)?;
    let (upid, depth) = upid_at(cfg, pid, 63)?;
    if read_kernel_i32(upid, cfg.upid_nr)? as u32 != cfg.seed_ns_pid {
        return None;
    }
    let ns = read_kernel_u64(upid, cfg.upid_ns)?;
    if read_kernel_i32(ns, cfg.pidns_inum)? as u32 != cfg.seed_ns_inum {
        return None;
    }
    let _ = TRACKED.insert(tgid, (depth + 1) as u8, 0);
    Some(depth)
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn bproc_fork(ctx: RawTracePointContext) -> i32 {
    let cfg = CONFIG.load();
    if cfg.ready == 0 {
        return 0;
    }
    let (parent_tgid, _) = current();
    let Some(level) = tracked_level(parent_tgid).or_else(|| seed_level(&cfg, parent_tgid)) else {
        return 0;
    };
    let child: u64 = ctx.arg(1);
    let (Some(child_pid), Some(child_tgid)) =
        (read_kernel_i32(child, cfg.task_pid), read_kernel_i32(child, cfg.task_tgid))
    else {
        return 0;
    };
    if child_pid != child_tgid {
        // CLONE_THREAD: a new thread of a tracked group, not a new process.
        return 0;
    }
    let ns_child = ns_pid_of(&cfg, child, level);
    // SAFETY: bpf_get_current_task has no preconditions; it returns the current task_struct pointer.
    let ns_parent = ns_pid_of(&cfg, unsafe { bpf_get_current_task() }, level);
    let child = child_tgid as u32;
    // Insert before the event leaves, so a consumer that sees the fork finds the child tracked.
    let _ = TRACKED.insert(child, (level + 1) as u8, 0);
    send(KIND_FORK, child, child, parent_tgid, 0, 0, ns_child, ns_parent);
    0
}

#[tracepoint]
pub fn bproc_exec(_ctx: TracePointContext) -> i32 {
    let cfg = CONFIG.load();
    let Some((tgid, tid, level)) = tracked_current(&cfg) else {
        return 0;
    };
    // SAFETY: bpf_get_current_task has no preconditions; it returns the current task_struct pointer.
    let ns_pid = ns_pid_of(&cfg, unsafe { bpf_get_current_task() }, level);
    send(KIND_EXEC, tgid, tid, 0, 0, 0, ns_pid, 0);
    0
}

#[tracepoint]
pub fn bproc_exit(ctx: TracePointContext) -> i32 {
    let cfg = CONFIG.load();
    let Some((tgid, tid, level)) = tracked_current(&cfg) else {
        return 0;
    };
    // SAFETY: the offset and size of `group_dead` come from this kernel's tracepoint format file,
    // read by the loader; read_at goes through bpf_probe_read.
    let group_dead: u8 = match unsafe { ctx.read_at::<u8>(cfg.exit_group_dead as usize) } {
        Ok(v) => v,
        Err(_) => return 0,
    };
    if group_dead == 0 {
        return 0;
    }
    // SAFETY: bpf_get_current_task has no preconditions; it returns the current task_struct pointer.
    let task = unsafe { bpf_get_current_task() };
    let status = read_kernel_i32(task, cfg.task_exit_code).unwrap_or(-1);
    let ns_pid = ns_pid_of(&cfg, task, level);
    let _ = TRACKED.remove(tgid);
    send(KIND_EXIT, tgid, tid, 0, status, 0, ns_pid, 0);
    0
}

#[tracepoint]
pub fn bproc_signal(ctx: TracePointContext) -> i32 {
    let cfg = CONFIG.load();
    if cfg.ready == 0 {
        return 0;
    }
    // SAFETY: offsets and sizes of `pid`, `sig` and `result` come from this kernel's tracepoint format
    // file, read by the loader; read_at goes through bpf_probe_read.
    let (target, sig, result) = unsafe {
        match (
            ctx.read_at::<i32>(cfg.signal_pid as usize),
            ctx.read_at::<i32>(cfg.signal_sig as usize),
            ctx.read_at::<i32>(cfg.signal_result as usize),
        ) {
            (Ok(t), Ok(s), Ok(r)) => (t as u32, s, r),
            _ => return 0,
        }
    };
    if !is_tracked(target) {
        return 0;
    }
    let (sender, _) = current();
    send(KIND_SIGNAL, target, target, sender, sig, result, 0, 0);
    0
}

#[tracepoint]
pub fn bproc_deliver(ctx: TracePointContext) -> i32 {
    let cfg = CONFIG.load();
    let Some((tgid, tid, level)) = tracked_current(&cfg) else {
        return 0;
    };
    // SAFETY: offsets and sizes of `sig` and `sa_handler` come from this kernel's tracepoint format
    // file, read by the loader; read_at goes through bpf_probe_read.
    let (sig, handler) = unsafe {
        match (ctx.read_at::<i32>(cfg.deliver_sig as usize), ctx.read_at::<u64>(cfg.deliver_handler as usize)) {
            (Ok(s), Ok(h)) => (s, h),
            _ => return 0,
        }
    };
    // SAFETY: bpf_get_current_task has no preconditions; it returns the current task_struct pointer.
    let ns_pid = ns_pid_of(&cfg, unsafe { bpf_get_current_task() }, level);
    // SIG_DFL is 0.
    send(KIND_DELIVER, tgid, tid, 0, sig, i32::from(handler == 0), ns_pid, 0);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}
