//! The slave's one seam to the kernel: fork/exec with credentials, pipes,
//! signals, reaping. Every `unsafe` block of the slave lives here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Everything a new process needs, prepared before fork so that the child
/// only makes async-signal-safe calls.
#[derive(Debug)]
pub struct ExecPlan {
    /// Paths to try, in order (the PATH search is done by the child, with
    /// the user's own permissions).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: CString,
    pub umask: u32,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub stdin_null: bool,
    /// Create the process with this PID in our PID namespace (clone3's
    /// `set_tid`): the global PID of a remote process. `None` lets the kernel
    /// choose.
    pub pid: Option<i32>,
}

/// The parent's ends of a new process's pipes.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Closed by a successful exec; carries the errno of a failed one.
    pub exec_status: OwnedFd,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Grows a pipe's buffer for bulk stdio; failure only costs speed.
fn grow_pipe(fd: &OwnedFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe we own; no memory is passed.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
}

/// Exit code of a child whose exec failed with `errno`, as a shell gives it.
pub fn exec_failure_code(errno: i32) -> i32 {
    if errno == libc::ENOENT || errno == libc::ENOTDIR {
        127
    } else {
        126
    }
}

/// Forks and execs `plan` in a new process group with the plan's
/// credentials, umask and directory.
pub fn spawn(plan: &ExecPlan) -> io::Result<Child> {
    let (stdin_r, stdin_w) = if plan.stdin_null {
        let null = CString::new("/dev/null").expect("no NUL in a literal");
        // SAFETY: `null` is a valid C string; the result is checked.
        let fd = cvt(unsafe { libc::open(null.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
        // SAFETY: open succeeded, so `fd` is a new descriptor we own.
        (unsafe { OwnedFd::from_raw_fd(fd) }, None)
    } else {
        let (r, w) = pipe()?;
        grow_pipe(&w);
        (r, Some(w))
    };
    let (stdout_r, stdout_w) = pipe()?;
    grow_pipe(&stdout_w);
    let (stderr_r, stderr_w) = pipe()?;
    let (status_r, status_w) = pipe()?;

    let argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let groups: Vec<libc::gid_t> = plan.groups.clone();
    let root = CString::new("/").expect("no NUL in a literal");
    let fds = [stdin_r.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()];
    let status_fd = status_w.as_raw_fd();

    let pid = match plan.pid {
        // SAFETY: fork is called with everything the child needs already
        // allocated; the child below only makes async-signal-safe calls
        // (setpgid, sigprocmask, signal, dup2, setgroups, setres[ug]id, umask,
        // chdir, execve, write, _exit) on memory prepared above, and never
        // returns.
        None => cvt(unsafe { libc::fork() })?,
        // SAFETY: as for fork above; the child path never relies on libc
        // state that a raw clone3 leaves stale (it makes raw system calls).
        Some(want) => unsafe { libbproc::fork::fork_with_pid(want) }?,
    };
    if pid == 0 {
        // SAFETY: we are the child of fork; see above for why these calls are safe.
        unsafe { child(plan, &argv, &envp, &groups, &root, fds, status_fd) }
    }
    drop((stdin_r, stdout_w, stderr_w, status_w));
    Ok(Child { pid, stdin: stdin_w, stdout: stdout_r, stderr: stderr_r, exec_status: status_r })
}

/// The child side of [`spawn`]. Never returns.
///
/// # Safety
/// Must only be called in the child of a fork, with pointers into memory
/// that the parent prepared before forking.
unsafe fn child(
    plan: &ExecPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    groups: &[libc::gid_t],
    root: &CString,
    fds: [libc::c_int; 3],
    status_fd: libc::c_int,
) -> ! {
    // SAFETY: the caller guarantees we are a freshly forked child; all calls
    // are async-signal-safe and use memory that outlives them.
    unsafe {
        let fail = |errno: i32| -> ! {
            let bytes = errno.to_ne_bytes();
            libc::write(status_fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(exec_failure_code(errno))
        };
        libc::setpgid(0, 0);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        for (target, fd) in fds.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(*libc::__errno_location());
            }
        }
        // Nothing but stdio reaches the program (fds the slave inherited
        // would, and CRIU could not checkpoint them on the node). The status
        // pipe stays usable until the exec.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        // Raw system calls, not glibc's wrappers: those make every thread of
        // the process change credentials, and after a raw clone3 glibc
        // still believes in the parent's threads and would wait for them
        // forever. The kernel calls change this (only) thread, which is
        // the whole child.
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0
            || libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0
        {
            fail(*libc::__errno_location());
        }
        libc::umask(plan.umask as libc::mode_t);
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            libc::chdir(root.as_ptr());
        }
        let mut errno = libc::ENOENT;
        for path in &plan.candidates {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = *libc::__errno_location();
            // As execvp: remember a permission problem over "not found".
            if e != libc::ENOENT && e != libc::ENOTDIR && !(errno == libc::EACCES && e != libc::EACCES) {
                errno = e;
            }
        }
        fail(errno)
    }
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) }).map(|_| ())
}

/// What waitpid reported for one child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitEvent {
    pub pid: i32,
    pub status: i32,
}

impl WaitEvent {
    pub fn exited(&self) -> bool {
        libc::WIFEXITED(self.status) || libc::WIFSIGNALED(self.status)
    }
    pub fn stopped(&self) -> bool {
        libc::WIFSTOPPED(self.status)
    }
    pub fn continued(&self) -> bool {
        libc::WIFCONTINUED(self.status)
    }
}

/// Reaps one child that changed state, without blocking. `Ok(None)` when
/// there is none (or no children at all).
pub fn wait_any() -> io::Result<Option<WaitEvent>> {
    let mut status = 0;
    // SAFETY: `status` is a valid int for waitpid to write.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED) };
    match pid {
        0 => Ok(None),
        p if p > 0 => Ok(Some(WaitEvent { pid: p, status })),
        _ => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ECHILD) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (when it is
/// not already PID 1 of its namespace).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(|_| ())
}

pub use bproc_daemon::sys::{raise_nofile_limit, trim_memory};

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(|_| ())
}

/// Makes this PID namespace number new processes from `base` up, unless it
/// already does (a reconnect must not rewind it). Only PID 1 of a namespace
/// node does this: elsewhere the namespace is not the node's alone.
pub fn number_pids_from(base: u32) -> io::Result<()> {
    const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    let last: u32 = std::fs::read_to_string(LAST_PID)?.trim().parse().unwrap_or(0);
    if last + 1 >= base {
        return Ok(());
    }
    std::fs::write(LAST_PID, (base - 1).to_string())
}

/// Where processes on a node learn which node they are on
/// (`bproc_currnode`): a file that only the node's mount namespace shows.
pub const NODE_FILE_DIR: &str = "/run/bproc/node";

/// Writes this node's number into [`NODE_FILE_DIR`]`/number`. A slave that
/// is PID 1 of a namespace node shares the host's /run, so it first mounts a
/// small tmpfs there in its own mount namespace.
pub fn publish_node_number(node: i32) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(NODE_FILE_DIR)?;
    if std::process::id() == 1 {
        mount(
            Some("bproc-node"),
            NODE_FILE_DIR,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=64k,mode=0755"),
        )
        .map_err(io::Error::from)?;
    }
    std::fs::write(format!("{NODE_FILE_DIR}/number"), format!("{node}\n"))
}

/// Writes the front end's address as this node reaches it (the host of
/// `master`, HOST:PORT) into [`NODE_FILE_DIR`]`/master`: an io list's socket
/// to 0.0.0.0 goes there.
pub fn publish_master_host(master: &str) -> io::Result<()> {
    let host = master.rsplit_once(':').map_or(master, |(h, _)| h);
    std::fs::write(format!("{NODE_FILE_DIR}/master"), format!("{host}\n"))
}

/// Where a node keeps the checkpoint images it is restoring.
pub const RESTORE_DIR: &str = "/run/bproc/restore";

/// Makes [`RESTORE_DIR`] ready. A slave that is PID 1 of a namespace node
/// mounts a tmpfs there in its own mount namespace, so whatever a killed
/// slave leaves in it goes with the namespace; elsewhere what an earlier
/// slave left is removed.
pub fn prepare_restore_dir() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(RESTORE_DIR)?;
    if std::process::id() == 1 {
        return mount(
            Some("bproc-restore"),
            RESTORE_DIR,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .map_err(io::Error::from);
    }
    for entry in std::fs::read_dir(RESTORE_DIR)?.flatten() {
        let _ = std::fs::remove_dir_all(entry.path());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn plan(argv: &[&str], candidates: &[&str]) -> ExecPlan {
        ExecPlan {
            candidates: candidates.iter().map(|c| CString::new(*c).expect("c")).collect(),
            argv: argv.iter().map(|c| CString::new(*c).expect("c")).collect(),
            envp: vec![CString::new("A=b").expect("c")],
            cwd: CString::new("/nonexistent-dir").expect("c"),
            umask: 0o027,
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            // SAFETY: as above.
            gid: unsafe { libc::getgid() },
            groups: vec![],
            stdin_null: true,
            pid: None,
        }
    }

    fn wait(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: `status` is valid for waitpid to write.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    #[test]
    fn exec_runs_with_env_umask_and_fallback_cwd() {
        let p = plan(&["sh", "-c", "echo $A; umask; pwd"], &["/no/such/sh", "/bin/sh"]);
        let child = spawn(&p).expect("spawn");
        let mut out = String::new();
        std::fs::File::from(child.stdout).read_to_string(&mut out).expect("read");
        let mut st = Vec::new();
        std::fs::File::from(child.exec_status).read_to_end(&mut st).expect("read");
        assert!(st.is_empty(), "exec succeeded");
        assert_eq!(out, "b\n0027\n/\n");
        assert_eq!(wait(child.pid), 0);
    }

    #[test]
    fn child_gets_the_pid_asked_for() {
        // A PID that nobody uses now, high in the range.
        let max: i32 =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("pid_max").trim().parse().expect("int");
        let want = (max / 2..max - 1)
            .rev()
            .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            .expect("a free pid");
        let mut p = plan(&["sh", "-c", "echo $$"], &["/bin/sh"]);
        p.pid = Some(want);
        let child = spawn(&p).expect("spawn with a chosen pid (needs root)");
        assert_eq!(child.pid, want);
        let mut out = String::new();
        std::fs::File::from(child.stdout).read_to_string(&mut out).expect("read");
        assert_eq!(out.trim(), want.to_string(), "getpid() in the child is the pid asked for");
        assert_eq!(wait(child.pid), 0);
        // A taken PID is refused, not silently replaced.
        p.pid = Some(std::process::id() as i32);
        let err = spawn(&p).expect_err("our own pid is taken");
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    }

    #[test]
    fn exec_failure_reports_errno_and_127() {
        let child = spawn(&plan(&["nope"], &["/no/such/file"])).expect("spawn");
        let mut st = Vec::new();
        std::fs::File::from(child.exec_status).read_to_end(&mut st).expect("read");
        assert_eq!(i32::from_ne_bytes(st[..4].try_into().expect("4 bytes")), libc::ENOENT);
        let status = wait(child.pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 127);
        assert_eq!(exec_failure_code(libc::EACCES), 126);
    }
}
