//! fork(2) with a chosen PID: clone3 with `set_tid`, for the slave (a
//! remote process gets its global PID on the node) and the ghost (the ghost
//! of a process forked on a node gets its node PID on the master).

use std::io;

/// The argument block of clone3(2), as the kernel defines it (version 2,
/// with `set_tid`; `cgroup` is left zero).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// fork(2) semantics, but the child gets PID `want` in the caller's PID
/// namespace. Fails with EEXIST when that PID is taken, and EPERM without
/// CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE over the namespace.
///
/// # Safety
/// As after fork(2) in a process that may have threads, and more: the child
/// (return value 0) may only make async-signal-safe calls, and libc believes
/// it is still the parent (cached thread id, thread list), so it must make
/// raw system calls where glibc's wrappers consult that state (setuid and
/// friends) before it execs or `_exit`s.
pub unsafe fn fork_with_pid(want: i32) -> io::Result<i32> {
    let tid: [libc::pid_t; 1] = [want];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: without CLONE_VM, clone3 duplicates the process like fork: the
    // child runs on a copy of this stack; what it may do then is the
    // caller's contract. `args` and `tid` outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}
