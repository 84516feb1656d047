//! Placing the calling process on nodes: `rfork` (a copy of the caller on a
//! node, a child in the front end's process tree) and where a process runs.
//!
//! An rfork forks a local child, which waits on a *marker* pipe; the master
//! checkpoints it with CRIU (leaving it running), a slave restores the image
//! under the same PID in its node, with the marker pipe replaced by one that
//! says "N": the copy there returns from [`rfork`] as the child. The copy left
//! here reads "G" and the process id instead, and becomes the process's ghost
//! (it execs the ghost program, keeping its PID and parent).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::client::Client;
use crate::error::BprocError;
use crate::ghost_spec::{GhostSpec, GHOST_ENV};

/// The front end, as a node number.
pub const NODE_MASTER: i32 = -1;
/// The node the caller is on.
pub const NODE_SELF: i32 = -2;
/// No node.
pub const NODE_NONE: i32 = -3;
/// Any node.
pub const NODE_ANY: i32 = -4;

/// The file in which a node's slave publishes the node's number, visible only
/// in that node's mount namespace.
pub const NODE_FILE: &str = "/run/bproc/node/number";
/// The ghost program, unless `BPROC_GHOST_BIN` names another.
pub const DEFAULT_GHOST: &str = "/usr/local/bin/bpghost";

/// Which side of an [`rfork`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The caller; the child runs on the node with this (global) PID.
    Parent { pid: i32 },
    /// The copy on the node.
    Child,
}

/// The node this process runs on, or [`NODE_MASTER`] on the front end.
pub fn currnode() -> i32 {
    std::fs::read_to_string(NODE_FILE).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(NODE_MASTER)
}

/// The ghost program: `BPROC_GHOST_BIN`, else `bpghost` beside the running
/// program (bpsh's case), else [`DEFAULT_GHOST`].
pub fn ghost_program() -> PathBuf {
    if let Some(p) = std::env::var_os("BPROC_GHOST_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe().ok().map(|me| me.with_file_name("bpghost"));
    beside.filter(|g| g.is_file()).unwrap_or_else(|| DEFAULT_GHOST.into())
}

/// Runs `f` with a fresh single-threaded runtime (none survives the call, so
/// a later fork copies no threads). Not for callers inside a tokio runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T, BprocError>>) -> Result<T, BprocError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BprocError::Transport(format!("cannot start a runtime: {e}")))?;
    rt.block_on(f)
}

/// The largest deleted file a checkpoint carries (CRIU's ghost-file limit):
/// CRIU copies a deleted file's content into the image, and refuses larger
/// ones.
const GHOST_LIMIT: u64 = 1 << 20;

/// Whether a checkpoint carries the open file whose `/proc/self/fd` link is
/// `link` (and whose size is `size`) to a node: files and directories by
/// path (a deleted one up to [`GHOST_LIMIT`]), the plain devices
/// (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`),
/// pipes, and the eventfd, signalfd and timerfd kinds. Sockets (their peers
/// stay behind), other devices (terminals stay with the front end's
/// sessions; a node may lack the rest), files of the front end's /proc and
/// /sys (they name its processes and devices), epoll sets (they may watch
/// such sockets), pidfds, inotify, io_uring, BPF and perf objects are not:
/// as BProc dropped every descriptor it could not move, a copy on a node
/// goes on without them.
fn carried(link: &str, size: u64) -> bool {
    if let Some(device) = link.strip_prefix("/dev/") {
        return matches!(device, "null" | "zero" | "full" | "random" | "urandom") || device.starts_with("shm/");
    }
    if link.starts_with("/proc/") || link.starts_with("/sys/") {
        return false;
    }
    if link.starts_with('/') {
        // A memfd travels as one; another deleted file as a copy.
        let deleted = link.ends_with(" (deleted)") && !link.starts_with("/memfd:");
        return !deleted || size <= GHOST_LIMIT;
    }
    link.starts_with("pipe:[")
        || matches!(link, "anon_inode:[eventfd]" | "anon_inode:[signalfd]" | "anon_inode:[timerfd]")
}

/// This process's descriptors above stdio that a checkpoint cannot carry
/// (see [`carried`]), with whether each is close-on-exec.
fn uncarried_fds() -> Vec<(i32, bool)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let fds: Vec<i32> =
        dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok())).collect();
    let mut out = Vec::new();
    for fd in fds {
        // The listing's own descriptor is closed by now, and skipped.
        let Ok(link) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { continue };
        if fd > 2 && !carried(&link.to_string_lossy(), fd_size(fd)) {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            out.push((fd, flags >= 0 && flags & libc::FD_CLOEXEC != 0));
        }
    }
    out
}

/// The size of the file open on `fd` (0 when fstat fails).
fn fd_size(fd: i32) -> u64 {
    // SAFETY: fstat writes only into `st`, a plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `fd` is only read.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        st.st_size as u64
    } else {
        0
    }
}

/// Takes back descriptors `fds` that this process closed, from process
/// `from`, which holds copies of them (a helper forked before the close).
fn take_back(from: i32, fds: &[(i32, bool)]) {
    // SAFETY: pidfd_open, pidfd_getfd, dup3, fcntl and close are plain system
    // calls on descriptor numbers this function owns or restores.
    unsafe {
        let first = libc::syscall(libc::SYS_pidfd_open, from, 0) as i32;
        if first < 0 {
            return;
        }
        // Above every number to restore, so that none lands on it.
        let above = fds.iter().map(|(fd, _)| *fd).max().unwrap_or(0) + 1;
        let pidfd = libc::fcntl(first, libc::F_DUPFD_CLOEXEC, above);
        libc::close(first);
        if pidfd < 0 {
            return;
        }
        for &(fd, cloexec) in fds {
            let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
            if got < 0 {
                continue;
            }
            if got == fd {
                libc::fcntl(fd, libc::F_SETFD, if cloexec { libc::FD_CLOEXEC } else { 0 });
            } else {
                libc::dup3(got, fd, if cloexec { libc::O_CLOEXEC } else { 0 });
                libc::close(got);
            }
        }
        libc::close(pidfd);
    }
}

/// The stdio of a process about to be checkpointed that is not a pipe (a
/// terminal, a file, a socket, /dev/null): it is swapped for pipes first,
/// so that the checkpoint holds only pipes there, which the node replaces
/// by its relays. CRIU could not otherwise restore a terminal that is some
/// session's controlling one, nor a deleted log file, nor a TCP socket. The
/// copy left on the front end takes the originals back from a process that
/// still has them (the rfork caller, or the move's helper) before it
/// becomes the ghost.
#[derive(Clone, Copy, Default)]
struct StdioSwap {
    /// (fd, close-on-exec) of each swapped descriptor; `len` are in use.
    fds: [(i32, bool); 3],
    len: usize,
    /// Stdout and stderr are the same file: they share one pipe (and so one
    /// relay, keeping their order).
    shared_output: bool,
}

impl StdioSwap {
    /// What to swap in this process (nothing if it is not dumpable: then no
    /// other process may take the originals back from it).
    fn plan() -> Self {
        let mut swap = StdioSwap::default();
        // SAFETY: PR_GET_DUMPABLE only reads a flag of this process.
        if unsafe { libc::prctl(libc::PR_GET_DUMPABLE) } != 1 {
            return swap;
        }
        for fd in 0..3 {
            let Ok(link) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { continue };
            if link.to_string_lossy().starts_with("pipe:[") {
                continue;
            }
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            swap.fds[swap.len] = (fd, flags >= 0 && flags & libc::FD_CLOEXEC != 0);
            swap.len += 1;
        }
        let id = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}")).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino(), m.rdev())
            })
        };
        let swapped = |fd: i32| swap.fds[..swap.len].iter().any(|(f, _)| *f == fd);
        swap.shared_output = swapped(1) && swapped(2) && id(1).is_some() && id(1) == id(2);
        swap
    }

    fn fds(&self) -> &[(i32, bool)] {
        &self.fds[..self.len]
    }

    /// Puts pipes in place of the planned descriptors: stdin reads from one
    /// nobody writes, stdout and stderr write into one nobody reads.
    ///
    /// # Safety
    /// Raw system calls only (it may run in the child of a fork).
    unsafe fn apply(&self) {
        let mut out = -1;
        // SAFETY: pipe2, dup2, fcntl and close on descriptors this process owns.
        unsafe {
            for &(fd, cloexec) in self.fds() {
                let mut ends = [-1; 2];
                if fd == 0 {
                    if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                        continue;
                    }
                    libc::dup2(ends[0], 0);
                    libc::close(ends[0]);
                    libc::close(ends[1]);
                } else if out >= 0 && self.shared_output {
                    libc::dup2(out, fd);
                } else {
                    if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                        continue;
                    }
                    libc::dup2(ends[1], fd);
                    libc::close(ends[0]);
                    if out >= 0 {
                        libc::close(out);
                    }
                    out = ends[1];
                }
                if cloexec {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            if out >= 0 {
                libc::close(out);
            }
        }
    }
}

/// Makes sure CRIU can see this process's session leader, which it needs to
/// checkpoint the process. It cannot in session 0: a process whose session
/// leader is outside its PID namespace, or a descendant of an init that never
/// called setsid(2) (some service managers and CI runners start jobs so).
/// Session 0 has no controlling terminal and so no job control to keep, and
/// the process starts a session of its own. Fails (EPERM) only for a process
/// group leader, which setsid(2) refuses.
///
/// # Safety
/// Raw system calls only (it may run in the child of a fork).
unsafe fn lead_a_session_if_in_none() -> Result<(), i32> {
    // SAFETY: getsid and setsid act on this process only.
    unsafe {
        if libc::getsid(0) != 0 || libc::setsid() >= 0 {
            return Ok(());
        }
        Err(*libc::__errno_location())
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), BprocError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| BprocError::System(format!("pipe: {e}")))
}

/// What the copy left here needs to become the ghost, made before the fork:
/// the child of a fork may not allocate (another thread may hold malloc's
/// lock), so it only patches the process id into the spec's placeholder.
struct GhostExec {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// `BPROC_GHOST=...` with a placeholder for the id, NUL-terminated.
    spec: Vec<u8>,
    /// Where the placeholder's digits start in `spec`.
    digits: usize,
}

/// Width of the id placeholder: any u64 fits.
const ID_DIGITS: usize = 20;

impl GhostExec {
    fn new(node: i32) -> Result<Self, BprocError> {
        let bad = |what: &str| BprocError::System(format!("{what} contains a NUL byte"));
        let program = CString::new(ghost_program().as_os_str().as_bytes()).map_err(|_| bad("the ghost's path"))?;
        let cmdline = std::fs::read("/proc/self/cmdline").map_err(|e| BprocError::System(e.to_string()))?;
        let mut argv: Vec<CString> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| CString::new(a).map_err(|_| bad("an argument")))
            .collect::<Result<_, _>>()?;
        if argv.is_empty() {
            argv.push(CString::new("rfork").map_err(|_| bad("argv"))?);
        }
        let env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != GHOST_ENV)
            .map(|(k, v)| {
                let mut e = k.as_bytes().to_vec();
                e.push(b'=');
                e.extend_from_slice(v.as_bytes());
                CString::new(e).map_err(|_| bad("the environment"))
            })
            .collect::<Result<_, _>>()?;
        // The ghost relays the node copy's output; it reads no stdin (the
        // parent keeps its own), so the copy gets EOF on a piped stdin.
        let mut ghost = GhostExec { program, argv, env, spec: Vec::new(), digits: 0 };
        ghost.set_spec(GhostSpec::start(node.max(0) as u32, false, true));
        Ok(ghost)
    }

    /// Makes the spec `spec`, attaching to an id written in later.
    fn set_spec(&mut self, spec: GhostSpec) {
        let spec = GhostSpec { attach: Some(0), ..spec };
        let encoded = spec.encode().replace("attach=0", &format!("attach={}", "0".repeat(ID_DIGITS)));
        let text = format!("{GHOST_ENV}={encoded}");
        self.digits = text.find(&"0".repeat(ID_DIGITS)).unwrap_or(0);
        self.spec = text.into_bytes();
        self.spec.push(0);
    }

    /// The ghost relays stdin too (a process that moves itself keeps its
    /// stdin; an rforked child's parent keeps the shared one).
    fn read_stdin(&mut self) {
        if let Some(spec) = std::str::from_utf8(&self.spec[..self.spec.len() - 1])
            .ok()
            .and_then(|t| t.strip_prefix(&format!("{GHOST_ENV}=")))
            .and_then(|t| GhostSpec::decode(t).ok())
        {
            self.set_spec(GhostSpec { stdin_null: false, ..spec });
        }
    }

    /// In the child of fork: write `id` into the placeholder and exec.
    ///
    /// # Safety
    /// Only in the child of fork; allocates nothing.
    unsafe fn exec(&mut self, id: u64) -> ! {
        let mut n = id;
        for i in (0..ID_DIGITS).rev() {
            self.spec[self.digits + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let argv: [*const libc::c_char; 64] = pointers(&self.argv);
        // SAFETY: as our caller promises; `spec` is NUL-terminated.
        unsafe { exec_with(&self.program, &argv, &self.env, self.spec.as_ptr().cast()) }
    }
}

/// Up to 63 argument pointers and a NULL, without allocating.
fn pointers(strings: &[CString]) -> [*const libc::c_char; 64] {
    let mut out = [std::ptr::null(); 64];
    for (slot, s) in out.iter_mut().zip(strings.iter().take(63)) {
        *slot = s.as_ptr();
    }
    out
}

/// execve with an environment of any size, building its pointer array on the
/// stack in fixed pieces (no allocation).
///
/// # Safety
/// As for [`GhostExec::exec`].
unsafe fn exec_with(
    program: &CString,
    argv: &[*const libc::c_char; 64],
    env: &[CString],
    spec: *const libc::c_char,
) -> ! {
    const MAX_ENV: usize = 4096;
    let mut envp = [std::ptr::null::<libc::c_char>(); MAX_ENV + 1];
    // The spec first: it stays whatever else has to go.
    envp[0] = spec;
    for (slot, e) in envp[1..].iter_mut().zip(env.iter().take(MAX_ENV - 1)) {
        *slot = e.as_ptr();
    }
    // SAFETY: NULL-terminated arrays of pointers into live CStrings.
    unsafe {
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        libc::_exit(255)
    }
}

/// Forks the caller onto `node`: returns [`Forked::Parent`] with the child's
/// global PID here, and [`Forked::Child`] in the copy on the node, which has
/// the same PID, memory, open files (offsets included) and signal state; its
/// stdout and stderr reach the caller's through its ghost, a child of the
/// caller. On failure nothing is left: no child, no ghost, no process on the
/// node. Call it from the front end, outside any tokio runtime.
pub fn rfork(node: i32) -> Result<Forked, BprocError> {
    let here = currnode();
    let node = if node == NODE_SELF { here } else { node };
    if node == here {
        return local_fork();
    }
    if here != NODE_MASTER {
        return Err(BprocError::Unsupported("rfork from a node (only the front end migrates processes yet)".into()));
    }
    let waiting = match fork_waiting(node, &[])? {
        Side::Child { .. } => return Ok(Forked::Child),
        Side::Parent(w) => w,
    };
    let verdict = block_on(async {
        let client = Client::connect().await?;
        client.rfork(node, waiting.pid, waiting.marker_fd, false).await
    });
    waiting.finish(verdict).map(|pid| Forked::Parent { pid })
}

/// Forking "onto" the node we are on is a plain fork (as in BProc).
fn local_fork() -> Result<Forked, BprocError> {
    // SAFETY: fork has no preconditions here; the child returns as the child.
    match unsafe { libc::fork() } {
        -1 => Err(BprocError::System(format!("fork: {}", std::io::Error::last_os_error()))),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent { pid }),
    }
}

/// A child forked for an rfork, waiting on its marker pipe for the verdict.
struct Waiting {
    pid: i32,
    /// The child's fd of the marker pipe (the master names it to CRIU).
    marker_fd: i32,
    /// Our end of the marker pipe.
    mark: std::fs::File,
    /// Ends (EOF) when the child has exec'd the ghost or ended: until then
    /// it may be taking its stdio back from us.
    settled: std::fs::File,
}

/// Which side of [`fork_waiting`] returned.
enum Side {
    Parent(Waiting),
    /// The copy restored on the node; a vrfork's marker says its rank.
    Child {
        rank: Option<u32>,
    },
}

impl Waiting {
    /// Tells the child the master's verdict: the copy here becomes the ghost
    /// of process `id`, or (on failure) ends, and is reaped. Returns once
    /// the child no longer needs this process's stdio.
    fn finish(self, verdict: Result<u64, BprocError>) -> Result<i32, BprocError> {
        let (result, settled) = self.tell(verdict);
        if let Some(settled) = settled {
            settle(settled);
        }
        result
    }

    /// [`Waiting::finish`] without the wait for the child (see [`settle`]).
    fn tell(mut self, verdict: Result<u64, BprocError>) -> (Result<i32, BprocError>, Option<std::fs::File>) {
        match verdict {
            Ok(id) => {
                let mut msg = [0u8; 9];
                msg[0] = b'G';
                msg[1..].copy_from_slice(&id.to_le_bytes());
                match self.mark.write_all(&msg) {
                    Ok(()) => (Ok(self.pid), Some(self.settled)),
                    Err(e) => (Err(BprocError::System(format!("marker: {e}"))), None),
                }
            }
            Err(e) => {
                let _ = self.mark.write_all(b"F");
                drop(self.mark);
                let mut status = 0;
                // SAFETY: waitpid on our own child writes only `status`.
                unsafe { libc::waitpid(self.pid, &mut status, 0) };
                (Err(e), None)
            }
        }
    }
}

/// Waits until a child told its verdict has exec'd the ghost (or ended).
fn settle(mut settled: std::fs::File) {
    let mut buf = [0u8; 16];
    while settled.read(&mut buf).is_ok_and(|n| n > 0) {}
}

/// Forks a child that waits on a marker pipe: "N" (the copy restored on the
/// node reads it) makes it return [`Side::Child`]; "G" and a process id make
/// it take its stdio back from us and exec the ghost; anything else ends it.
/// The child first closes `close_in_child` (other children's pipes, in a
/// vector call) and the descriptors a checkpoint cannot carry, and swaps
/// its stdio for pipes (see [`StdioSwap`]). Returns once the child is
/// waiting.
fn fork_waiting(node: i32, close_in_child: &[i32]) -> Result<Side, BprocError> {
    let mut ghost = GhostExec::new(node)?;
    let uncarried = uncarried_fds();
    let swap = StdioSwap::plan();
    let (mark_r, mark_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let marker_fd = mark_r.as_raw_fd();
    // SAFETY: the child below only makes raw system calls (close, write,
    // read, pipe2, dup2, pidfd_getfd, execve, _exit) on memory prepared
    // above, or returns as the node's copy once restored (a plain
    // single-threaded copy, as after fork).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(BprocError::System(format!("fork: {}", std::io::Error::last_os_error())));
    }
    if pid == 0 {
        drop((mark_w, ready_r));
        // SAFETY: raw closes, writes and reads on fds we own.
        unsafe {
            for fd in close_in_child.iter().chain(uncarried.iter().map(|(fd, _)| fd)) {
                libc::close(*fd);
            }
            // A child of a fork never leads a process group, so this succeeds.
            let _ = lead_a_session_if_in_none();
            swap.apply();
            // `ready_w` stays open (close-on-exec) until the ghost's exec.
            libc::write(ready_w.as_raw_fd(), b"r".as_ptr().cast(), 1);
            // Whoever writes the verdict closes the pipe after it.
            let mut buf = [0u8; 9];
            let mut got = 0;
            while got < buf.len() {
                let n = libc::read(mark_r.as_raw_fd(), buf.as_mut_ptr().add(got).cast(), buf.len() - got);
                if n <= 0 {
                    break;
                }
                got += n as usize;
            }
            match buf[0] {
                b'N' => {
                    drop((mark_r, ready_w));
                    let rank = (got >= 5).then(|| u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]));
                    return Ok(Side::Child { rank });
                }
                b'G' if got == buf.len() => {
                    take_back(libc::getppid(), swap.fds());
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&buf[1..]);
                    ghost.exec(u64::from_le_bytes(id))
                }
                _ => libc::_exit(0),
            }
        }
    }
    drop((mark_r, ready_w));
    let mut ready = std::fs::File::from(ready_r);
    let _ = ready.read(&mut [0u8; 1]);
    Ok(Side::Parent(Waiting { pid, marker_fd, mark: std::fs::File::from(mark_w), settled: ready }))
}

/// The environment entry BProc fills with a child's rank in vector calls.
pub const RANK_PLACEHOLDER: &[u8] = b"BPROC_RANK=XXXXXXX";

/// `envp` for the child of rank `rank`: BProc's placeholder
/// `BPROC_RANK=XXXXXXX` becomes the rank in seven digits, and without one a
/// `BPROC_RANK` entry is added.
pub fn ranked_env(envp: &[CString], rank: usize) -> Vec<CString> {
    let entry = CString::new(format!("BPROC_RANK={rank:07}")).unwrap_or_default();
    let mut out: Vec<CString> =
        envp.iter().map(|e| if e.as_bytes() == RANK_PLACEHOLDER { entry.clone() } else { e.clone() }).collect();
    if !out.iter().any(|e| e.as_bytes().starts_with(b"BPROC_RANK=")) {
        out.push(entry);
    }
    out
}

/// Checks that the caller may start processes on `node` now (the master
/// checks again): the error BProc gives before any process is made.
fn check_node(nodes: &[crate::NodeStatus], node: i32) -> Result<(), BprocError> {
    let n = usize::try_from(node)
        .ok()
        .and_then(|i| nodes.iter().find(|n| n.node as usize == i))
        .ok_or_else(|| BprocError::NoSuchNode(format!("node {node}: no such node")))?;
    if n.state != "up" {
        return Err(BprocError::NodeDown(format!("node {node} is {}", n.state)));
    }
    Ok(())
}

fn node_table() -> Result<Vec<crate::NodeStatus>, BprocError> {
    block_on(async { Client::connect().await?.nodes().await })
}

/// The ghost's command line and environment for running `cmd argv...` on
/// `node` (the ghost runs its own argv there, so argv[0] becomes `cmd`).
fn execmove_plan(node: i32, cmd: &CString, argv: &[CString], envp: &[CString]) -> (Vec<CString>, Vec<CString>) {
    let mut args = vec![cmd.clone()];
    args.extend(argv.iter().skip(1).cloned());
    let mut env: Vec<CString> =
        envp.iter().filter(|e| !e.as_bytes().starts_with(GHOST_ENV.as_bytes())).cloned().collect();
    let spec = GhostSpec::start(node.max(0) as u32, false, false);
    if let Ok(e) = CString::new(format!("{GHOST_ENV}={}", spec.encode())) {
        env.push(e);
    }
    (args, env)
}

fn exec_ghost(args: &[CString], env: &[CString]) -> BprocError {
    let program = match CString::new(ghost_program().as_os_str().as_bytes()) {
        Ok(p) => p,
        Err(_) => return BprocError::System("the ghost's path contains a NUL byte".into()),
    };
    let argp: Vec<*const libc::c_char> =
        args.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const libc::c_char> =
        env.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    // SAFETY: NULL-terminated arrays of pointers into CStrings that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
    BprocError::System(format!("exec {}: {}", ghost_program().display(), std::io::Error::last_os_error()))
}

/// Replaces the caller by `cmd` (with `argv` and `envp`) running on `node`:
/// the caller becomes the new process's ghost, so its PID and parent stay.
/// Returns only on failure (bad or down node, no ghost program). The
/// program must exist on the node (nothing is copied). `rexec` is the same
/// here: both run the node's copy of the program.
pub fn execmove(node: i32, cmd: &CString, argv: &[CString], envp: &[CString]) -> BprocError {
    if let Err(e) = node_table().and_then(|t| check_node(&t, node)) {
        return e;
    }
    let (args, env) = execmove_plan(node, cmd, argv, envp);
    exec_ghost(&args, &env)
}

/// What a vector call gives the caller: per node, the child's PID or the
/// errno that kept it from starting.
pub type Pids = Vec<Result<i32, i32>>;

/// Runs `cmd` on every node of `nodes` as a child of the caller (each with
/// `BPROC_RANK` = its index, see [`ranked_env`]). Returns, per node, the
/// child's PID or the errno why not; a down or unknown node does not keep
/// the others from running.
pub fn vexecmove(nodes: &[i32], cmd: &CString, argv: &[CString], envp: &[CString]) -> Result<Pids, BprocError> {
    let table = node_table()?;
    let mut pids = Vec::with_capacity(nodes.len());
    for (rank, &node) in nodes.iter().enumerate() {
        if let Err(e) = check_node(&table, node) {
            pids.push(Err(e.errno()));
            continue;
        }
        let (args, env) = execmove_plan(node, cmd, argv, &ranked_env(envp, rank));
        let program = CString::new(ghost_program().as_os_str().as_bytes())
            .map_err(|_| BprocError::System("the ghost's path contains a NUL byte".into()))?;
        let argp: Vec<*const libc::c_char> =
            args.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp_ptrs: Vec<*const libc::c_char> =
            env.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        // SAFETY: the child only calls execve and _exit on memory prepared above.
        match unsafe { libc::fork() } {
            -1 => pids.push(Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN))),
            0 => {
                // SAFETY: as above; NULL-terminated arrays into live CStrings.
                unsafe {
                    libc::execve(program.as_ptr(), argp.as_ptr(), envp_ptrs.as_ptr());
                    libc::_exit(255)
                }
            }
            pid => pids.push(Ok(pid)),
        }
    }
    Ok(pids)
}

/// Which side of a [`vrfork`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VForked {
    /// The caller, with per node the child's PID or the errno why not.
    Parent { pids: Pids },
    /// The copy on `nodes[rank]`.
    Child { rank: usize },
}

/// Forks the caller onto every node of `nodes` (see [`rfork`]); a node that
/// cannot take a copy gets its errno and the others still run. Each copy
/// learns its index in `nodes`.
pub fn vrfork(nodes: &[i32]) -> Result<VForked, BprocError> {
    let here = currnode();
    let mut pids: Pids = vec![Err(libc::EAGAIN); nodes.len()];
    // First every child, each waiting on its marker; then the master is
    // asked for all of them at once (it checkpoints them side by side).
    let mut waiting: Vec<(usize, i32, Waiting)> = Vec::new();
    for (rank, &node) in nodes.iter().enumerate() {
        let node = if node == NODE_SELF { here } else { node };
        if node == here {
            match local_fork()? {
                Forked::Child => return Ok(VForked::Child { rank }),
                Forked::Parent { pid } => pids[rank] = Ok(pid),
            }
            continue;
        }
        if here != NODE_MASTER {
            pids[rank] = Err(libc::ENOSYS);
            continue;
        }
        let others: Vec<i32> =
            waiting.iter().flat_map(|(_, _, w)| [w.mark.as_raw_fd(), w.settled.as_raw_fd()]).collect();
        match fork_waiting(node, &others) {
            // The copy restored on a node may be another sibling's image:
            // the marker says which rank it is.
            Ok(Side::Child { rank: said }) => return Ok(VForked::Child { rank: said.map_or(rank, |r| r as usize) }),
            Ok(Side::Parent(w)) => waiting.push((rank, node, w)),
            Err(e) => pids[rank] = Err(e.errno()),
        }
    }
    // (node, pid, marker fd, rank): the master checkpoints one child and
    // restores it as each; the marker tells each copy its rank.
    let copies: Vec<(i32, i32, i32, u32)> =
        waiting.iter().map(|(r, n, w)| (*n, w.pid, w.marker_fd, *r as u32)).collect();
    let verdicts: Vec<Result<u64, BprocError>> = match block_on(async {
        if copies.is_empty() {
            return Ok(Vec::new());
        }
        Client::connect().await?.vrfork(&copies).await
    }) {
        Ok(v) if v.len() == copies.len() => v,
        Ok(_) => copies.iter().map(|_| Err(BprocError::Transport("the master's answer lacks copies".into()))).collect(),
        Err(e) => copies.iter().map(|_| Err(e.clone())).collect(),
    };
    // Every child hears its verdict before any is waited for.
    let mut settling = Vec::new();
    for ((rank, _, w), verdict) in waiting.into_iter().zip(verdicts) {
        let (result, settled) = w.tell(verdict);
        pids[rank] = result.map_err(|e| e.errno());
        settling.extend(settled);
    }
    settling.into_iter().for_each(settle);
    Ok(VForked::Parent { pids })
}

/// Moves the caller to `node` (BProc's `bproc_move`): it goes on there with
/// the same PID, memory, open files and ghost; on the front end its ghost
/// stays its stand-in. Returns `Ok` on the new node; on failure the caller
/// goes on where it was. Moving to the node it is on succeeds at once.
///
/// The caller waits on a marker pipe while a helper (forked twice, so not a
/// child of the caller, and so not in its checkpoint) asks for the move:
/// the master for a process on the front end, the node's slave otherwise.
/// The copy the move leaves behind reads the verdict: on the front end it
/// becomes the ghost, on a node it ends without a trace.
pub fn move_to(node: i32) -> Result<(), BprocError> {
    let here = currnode();
    let node = if node == NODE_SELF { here } else { node };
    if node == here {
        return Ok(());
    }
    // SAFETY: raw getsid and setsid on this process.
    if let Err(errno) = unsafe { lead_a_session_if_in_none() } {
        return Err(BprocError::PermissionDenied(format!(
            "this process is in session 0 (its session leader is outside its PID namespace), which CRIU cannot \
             checkpoint, and it leads a process group, so it cannot start a session of its own (errno {errno})"
        )));
    }
    let mut ghost = GhostExec::new(node)?;
    ghost.read_stdin();
    // A process a slave runs (on a node, or on the front end's own node)
    // asks that slave; a plain process of the front end asks the master.
    let managed = std::path::Path::new(crate::client::NODE_SOCKET).exists();
    let (mark_r, mark_w) = pipe()?;
    let marker_fd = mark_r.as_raw_fd();
    // The helper keeps copies of what the checkpoint cannot carry, and of
    // the stdio swapped for pipes, until the caller has taken them back (or
    // `back` closes); it asks for the move once `go` closes, when the caller
    // has put them away.
    let (back_r, back_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let uncarried = uncarried_fds();
    let swap = StdioSwap::plan();
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: the helper child forks again and exits; the grandchild talks
    // to the master or the slave on a runtime of its own (a fresh process
    // with one thread) and exits with _exit.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(BprocError::System(format!("fork: {}", std::io::Error::last_os_error())));
    }
    if helper == 0 {
        drop((mark_r, back_w, go_w));
        // SAFETY: as above.
        unsafe {
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            let mut byte = 0u8;
            while libc::read(go_r.as_raw_fd(), (&raw mut byte).cast(), 1) > 0 {}
            let verdict = block_on(async {
                if managed {
                    crate::client::node_move(node, me, marker_fd).await.map(|()| None)
                } else {
                    let client = Client::connect().await?;
                    client.rfork(node, me, marker_fd, true).await.map(Some)
                }
            });
            // "G" id pid, "F" errno pid, or "X".
            let mut msg = [0u8; 13];
            let len = match verdict {
                Ok(Some(id)) => {
                    msg[0] = b'G';
                    msg[1..9].copy_from_slice(&id.to_le_bytes());
                    msg[9..13].copy_from_slice(&libc::getpid().to_le_bytes());
                    13
                }
                Ok(None) => {
                    msg[0] = b'X';
                    1
                }
                Err(e) => {
                    msg[0] = b'F';
                    msg[1..5].copy_from_slice(&e.errno().to_le_bytes());
                    msg[5..9].copy_from_slice(&libc::getpid().to_le_bytes());
                    9
                }
            };
            libc::write(mark_w.as_raw_fd(), msg.as_ptr().cast(), len);
            if matches!(msg[0], b'G' | b'F') {
                // The caller takes its descriptors back, then closes `back`.
                while libc::read(back_r.as_raw_fd(), (&raw mut byte).cast(), 1) > 0 {}
            }
            libc::_exit(0)
        }
    }
    drop((mark_w, back_r, go_r));
    for (fd, _) in &uncarried {
        // SAFETY: closes a descriptor this process has; the helper has a copy.
        unsafe { libc::close(*fd) };
    }
    // SAFETY: swaps this process's own stdio; the helper has the originals.
    unsafe { swap.apply() };
    drop(go_w);
    let mut status = 0;
    // SAFETY: the helper is our child; waitpid writes only `status`.
    unsafe { libc::waitpid(helper, &mut status, 0) };
    let mut msg = [0u8; 13];
    let mut got = 0;
    while got < msg.len() {
        // SAFETY: reads into our own buffer from our own fd.
        let n = unsafe { libc::read(mark_r.as_raw_fd(), msg.as_mut_ptr().add(got).cast(), msg.len() - got) };
        if n <= 0 {
            break;
        }
        got += n as usize;
        // The helper keeps the pipe open after "G" and "F" (until `back` closes).
        let whole = match msg[0] {
            b'G' => 13,
            b'F' => 9,
            _ => 1,
        };
        if got >= whole {
            break;
        }
    }
    drop(mark_r);
    let word = |at: usize| i32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    match (msg[0], got) {
        (b'N', _) => Ok(()),
        // The copy left on a node: the process goes on elsewhere.
        // SAFETY: _exit ends this copy at once, as the slave expects.
        (b'X', _) => unsafe { libc::_exit(0) },
        (b'G', 13) => {
            take_back(word(9), swap.fds());
            drop(back_w);
            // SAFETY: exec replaces this copy with its ghost (it allocates nothing).
            unsafe { ghost.exec(u64::from_le_bytes(msg[1..9].try_into().unwrap_or_default())) }
        }
        (b'F', 9) => {
            let errno = word(1);
            take_back(word(5), &uncarried);
            take_back(word(5), swap.fds());
            drop(back_w);
            Err(match errno {
                crate::error::errno::BE_INVALIDNODE => BprocError::NoSuchNode(format!("node {node}: no such node")),
                crate::error::errno::BE_NODEDOWN => BprocError::NodeDown(format!("node {node} is down")),
                libc::EPERM => BprocError::PermissionDenied(format!("node {node}: permission denied")),
                _ => BprocError::Migration(format!("moving to node {node} failed (errno {errno})")),
            })
        }
        _ => Err(BprocError::Migration("the move's helper gave no answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, IntoRawFd};

    #[test]
    fn files_and_pipes_are_carried_and_sockets_and_terminals_are_not() {
        let big = 2 * GHOST_LIMIT;
        for link in
            ["/etc/services", "/tmp/x (deleted)", "/dev/null", "/dev/shm/x", "pipe:[12]", "anon_inode:[eventfd]"]
        {
            assert!(carried(link, 100), "{link}");
        }
        // A big file by path, or a big memfd, still goes; a big deleted file does not.
        assert!(carried("/var/big", big) && carried("/memfd:buf (deleted)", big));
        for link in [
            "socket:[12]",
            "/dev/pts/3",
            "/dev/tty",
            "/dev/kvm",
            "anon_inode:[eventpoll]",
            "anon_inode:[pidfd]",
            "/proc/77/status",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ] {
            assert!(!carried(link, 100), "{link}");
        }
        assert!(!carried("/tmp/log (deleted)", big));
    }

    #[test]
    fn a_closed_socket_is_listed_and_taken_back_from_a_process_that_holds_a_copy() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let file = std::fs::File::open("/etc/passwd").expect("open");
        let listed = uncarried_fds();
        let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
        assert!(listed.contains(&(a_fd, true)) && listed.contains(&(b_fd, true)), "{listed:?}");
        assert!(!listed.iter().any(|(fd, _)| *fd == file.as_raw_fd()), "{listed:?}");
        // A child holds a copy while this process closes its own
        // (descriptors reach a child only without close-on-exec).
        // SAFETY: clears FD_CLOEXEC on a descriptor we own.
        unsafe { libc::fcntl(a_fd, libc::F_SETFD, 0) };
        let mut holder = std::process::Command::new("sleep").arg("100").spawn().expect("holder");
        let a_raw = a.into_raw_fd();
        // SAFETY: closes our own descriptor (the holder has a copy).
        unsafe { libc::close(a_raw) };
        take_back(holder.id() as i32, &[(a_raw, true)]);
        // SAFETY: the descriptor is ours again; F_GETFD reads its flags.
        let flags = unsafe { libc::fcntl(a_raw, libc::F_GETFD) };
        assert_eq!(flags, libc::FD_CLOEXEC, "taken back, close-on-exec as before");
        // SAFETY: a_raw is open and ours again.
        let mut a = unsafe { std::os::unix::net::UnixStream::from_raw_fd(a_raw) };
        a.write_all(b"x").expect("the socket works");
        let mut got = [0u8; 1];
        (&b).read_exact(&mut got).expect("read");
        assert_eq!(&got, b"x");
        let _ = holder.kill();
        let _ = holder.wait();
    }

    /// Runs `body` as PID 1 of a new PID namespace, whose session leader
    /// (this test's) is outside it, so its session ID there is 0; returns
    /// its exit code.
    fn in_session_zero(body: fn() -> i32) -> i32 {
        // SAFETY: the child makes raw system calls and calls `body`, which
        // makes raw system calls, and ends with _exit.
        unsafe {
            let child = libc::fork();
            assert!(child >= 0, "fork");
            if child == 0 {
                if libc::unshare(libc::CLONE_NEWPID) != 0 {
                    libc::_exit(90);
                }
                let inner = libc::fork();
                if inner == 0 {
                    if libc::getsid(0) != 0 {
                        libc::_exit(91);
                    }
                    libc::_exit(body());
                }
                let mut status = 0;
                libc::waitpid(inner, &mut status, 0);
                libc::_exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 92 });
            }
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            assert!(libc::WIFEXITED(status), "status {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }

    #[test]
    fn a_process_in_session_zero_leads_a_session_of_its_own_unless_it_leads_a_group() {
        // CRIU refuses session 0: "A session leader of ... is outside of its pid namespace".
        let leads = in_session_zero(|| {
            // SAFETY: raw calls on this process.
            unsafe {
                match lead_a_session_if_in_none() {
                    Ok(()) if libc::getsid(0) == libc::getpid() => 0,
                    _ => 1,
                }
            }
        });
        assert_eq!(leads, 0, "90: unshare failed (not root?); 91: the session was not 0; 1: no session");
        let group_leader = in_session_zero(|| {
            // SAFETY: raw calls on this process.
            unsafe {
                libc::setpgid(0, 0);
                match lead_a_session_if_in_none() {
                    Err(libc::EPERM) if libc::getsid(0) == 0 => 0,
                    _ => 1,
                }
            }
        });
        assert_eq!(group_leader, 0, "a group leader cannot start a session: EPERM");
    }
}
