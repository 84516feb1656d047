//! The four tracking programs, their maps and the load-time config.
//!
//! Filtering happens here, in the kernel: an event leaves only when its thread group (or, for
//! signals, its target pid) is in `TRACKED`. Keys are thread-group ids (tgid), i.e. process ids in the
//! initial PID namespace; threads never get entries of their own.
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
    ProbeConfig, RawEvent, EVENTS_BYTES, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_SIGNAL, TRACKED_MAX_ENTRIES,
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
    task_pid: 0,
    task_tgid: 0,
    task_exit_code: 0,
    ready: 0,
});

#[inline(always)]
fn is_tracked(tgid: u32) -> bool {
    TRACKED.get_ptr(tgid).is_some()
}

#[inline(always)]
fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

#[inline(always)]
fn send(kind: u32, pid: u32, tid: u32, other: u32, value: i32, aux: i32) {
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let event = RawEvent { kind, pid, tid, other, value, aux, comm };
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

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn bproc_fork(ctx: RawTracePointContext) -> i32 {
    let cfg = CONFIG.load();
    if cfg.ready == 0 {
        return 0;
    }
    let (parent_tgid, _) = current();
    if !is_tracked(parent_tgid) {
        return 0;
    }
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
    let child = child_tgid as u32;
    // Insert before the event leaves, so a consumer that sees the fork finds the child tracked.
    let _ = TRACKED.insert(child, 1u8, 0);
    send(KIND_FORK, child, child, parent_tgid, 0, 0);
    0
}

#[tracepoint]
pub fn bproc_exec(_ctx: TracePointContext) -> i32 {
    if CONFIG.load().ready == 0 {
        return 0;
    }
    let (tgid, tid) = current();
    if !is_tracked(tgid) {
        return 0;
    }
    send(KIND_EXEC, tgid, tid, 0, 0, 0);
    0
}

#[tracepoint]
pub fn bproc_exit(ctx: TracePointContext) -> i32 {
    let cfg = CONFIG.load();
    if cfg.ready == 0 {
        return 0;
    }
    let (tgid, tid) = current();
    if !is_tracked(tgid) {
        return 0;
    }
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
    let _ = TRACKED.remove(tgid);
    send(KIND_EXIT, tgid, tid, 0, status, 0);
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
    send(KIND_SIGNAL, target, target, sender, sig, result);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}
