//! The ghost's loop: start the remote process with our own PID (or attach
//! to one that exists), relay its stdio, forward the signals we get, mirror
//! its stops, forks and execs, and report how it ended.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc;

use bytes::Bytes;
use libbproc::client;
use libbproc::proto::v1::{self, exec_in, exec_out, proc_event::Kind};
use libbproc::wait_status::Ended;

use crate::link::Link;
use crate::output::{drain, Ack, LinePrefixer, Wake, Writer};
use crate::spec::GhostSpec;

/// A ghost's own failures (no master, unknown or down node, denied), as bpsh reports them.
pub const FAIL: i32 = 255;
/// Stdin bytes in flight before we wait for the node (below the master's
/// smallest window by the two chunks a re-exec may flush at once).
const STDIN_WINDOW: u64 = (1 << 20) - 2 * STDIN_CHUNK as u64;
const STDIN_CHUNK: usize = 128 * 1024;

/// The catchable signals a ghost passes on to its remote process. SIGTSTP
/// and SIGCONT are among them: the remote process stops, then the ghost
/// stops itself (see [`run`]).
const FORWARDED: [i32; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGWINCH,
    libc::SIGTSTP,
    libc::SIGCONT,
];

/// The signals a ghost takes through its signalfd: those it forwards, and
/// SIGCHLD (for the ghosts it forks). They stay blocked for its whole life,
/// and across its re-execs: one that comes while it execs itself waits,
/// pending, for the next ghost.
fn taken() -> impl Iterator<Item = i32> {
    FORWARDED.into_iter().chain([libc::SIGCHLD])
}

/// Blocks [`taken`] signals (and only those: whatever our parent had
/// blocked, the remote process gets on its own) and opens a signalfd for
/// them. Call before any thread starts, so every thread has them blocked.
pub fn take_signals() -> std::io::Result<OwnedFd> {
    let set = sigset(taken());
    // SAFETY: set is a valid, initialised sigset for both calls.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn sigset(signals: impl IntoIterator<Item = i32>) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset adds to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The signals waiting on the signalfd `fd`.
fn read_signals(fd: &OwnedFd) -> Vec<i32> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads into `info`, which is `size` bytes long.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
        if n != size as isize {
            return out;
        }
        out.push(info.ssi_signo as i32);
    }
}

/// How a ghost's run ends.
#[derive(Debug)]
pub enum Outcome {
    /// The remote process ended so: end the same way.
    Ended(Ended),
    /// The remote process exec'd: exec ourselves with its new command line
    /// ([`reexec`]) and attach again. `stdin_done`: our stdin was passed on
    /// to its end (or never read), so the next ghost must not read it.
    /// The signals we forward stay blocked across that exec: one that comes
    /// meanwhile waits in the kernel for the next ghost.
    Reexec { id: u64, argv: Vec<Vec<u8>>, stdin_done: bool },
}

fn bytes_of(argv: &[OsString]) -> Vec<Vec<u8>> {
    argv.iter().map(|a| a.as_bytes().to_vec()).collect()
}

/// Waits until one of `fds` is readable (or hung up); says which are.
/// `None` when poll itself fails: then nothing sensible can be waited for.
fn wait<const N: usize>(fds: [i32; N]) -> Option<[bool; N]> {
    let mut polled = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    loop {
        // SAFETY: polled is a valid array of N pollfd for the whole call.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), N as libc::nfds_t, -1) };
        if n > 0 {
            return Some(polled.map(|p| p.revents != 0));
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// Runs the remote process `argv` (or, with `spec.attach`, an existing one)
/// as the ghost of this process and returns how it ended. `signals` is the
/// signalfd of [`take_signals`].
pub fn run(spec: &GhostSpec, argv: Vec<OsString>, env: Vec<(OsString, OsString)>, signals: &OwnedFd) -> Outcome {
    let mut link = match Link::connect() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bpsh: {e}");
            return Outcome::Ended(Ended::Exited(FAIL));
        }
    };
    let first = match spec.attach {
        Some(id) => exec_in::Msg::Attach(v1::Attach { id }),
        None => {
            let mut start = client::start_here(spec.node, &argv, spec.stdin_null);
            start.env = client::env_bytes(env.clone());
            start.pid = std::process::id() as i32;
            exec_in::Msg::Start(start)
        }
    };
    // A link that breaks shows when we next read it.
    let send = |link: &mut Link, msg| {
        let _ = link.send(&v1::ExecIn { msg: Some(msg) });
    };
    send(&mut link, first);
    // What the previous ghost caught while it re-exec'd (one built before
    // signals stayed blocked across re-execs).
    for &signo in &spec.pending {
        send(&mut link, exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo }));
    }
    if spec.attach.is_some() && !spec.forked && spec.stdin_null {
        // The ghost of an rforked process reads no stdin (its parent keeps
        // its own): the process on the node reads EOF.
        send(&mut link, exec_in::Msg::Stdin(v1::StdioData { id: 0, stream: 0, data: Bytes::new(), eof: true }));
    }
    let (waker, woken) = match Wake::pipe() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bpsh: cannot start: {e}");
            return Outcome::Ended(Ended::Exited(FAIL));
        }
    };
    let mut my_id = spec.attach;
    let mut opened = false;
    let mut reexec: Option<Vec<Vec<u8>>> = None;
    let own_argv = bytes_of(&argv);

    let (ack_tx, ack_rx) = mpsc::channel::<Ack>();
    let mut writers = [Writer::new(1, ack_tx.clone(), waker.clone()), Writer::new(2, ack_tx, waker.clone())];
    let mut lines: [LinePrefixer; 2] = Default::default();
    let prefix = format!("{}: ", spec.node).into_bytes();
    let (stdin_tx, stdin_rx) = mpsc::sync_channel::<Option<Bytes>>(1);
    let mut stdin_open = !spec.stdin_null && !spec.forked;
    // Our stdin is passed on to its end (or is not ours to read).
    let mut stdin_done = !stdin_open;
    let mut reader = if stdin_open { read_stdin(stdin_tx, waker) } else { None };
    let mut stdin_outstanding = 0u64;
    let argv0 = argv[0].to_string_lossy().into_owned();
    let lost = |why: String| {
        eprintln!("bpsh: node {}: lost the master{why}", spec.node);
        Outcome::Ended(Ended::Exited(FAIL))
    };

    let ended = 'run: loop {
        // What the threads handed over: written output, read stdin.
        while let Ok(ack) = ack_rx.try_recv() {
            send(&mut link, exec_in::Msg::OutputAck(v1::StdioAck { id: 0, stream: ack.stream, bytes: ack.bytes }));
        }
        while stdin_open && stdin_outstanding < STDIN_WINDOW {
            let Ok(chunk) = stdin_rx.try_recv() else { break };
            let (data, eof) = chunk.map_or((Bytes::new(), true), |d| (d, false));
            stdin_outstanding += data.len() as u64;
            send(&mut link, exec_in::Msg::Stdin(v1::StdioData { id: 0, stream: 0, data, eof }));
            stdin_open = !eof;
            stdin_done |= eof;
        }
        // If poll fails, let the reads find out what is wrong.
        let ready = wait([link.fd(), signals.as_raw_fd(), woken.as_raw_fd()]).unwrap_or([true; 3]);
        if ready[2] {
            drain(&woken);
        }
        if ready[1] {
            for signo in read_signals(signals) {
                if signo == libc::SIGCHLD {
                    reap_children();
                } else {
                    send(&mut link, exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo }));
                }
            }
        }
        if !ready[0] {
            continue;
        }
        match link.read_some() {
            Ok(true) => {}
            Ok(false) => break lost(String::new()),
            Err(e) => break lost(format!(": {e}")),
        }
        loop {
            let msg = match link.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => break 'run lost(format!(": {e}")),
            };
            match msg.msg {
                Some(exec_out::Msg::Error(err)) if !opened => {
                    let node = format!("node {}", spec.node);
                    if err.message.contains(&node) {
                        eprintln!("bpsh: {}", err.message);
                    } else {
                        eprintln!("bpsh: {node}: {}", err.message);
                    }
                    break 'run Outcome::Ended(Ended::Exited(FAIL));
                }
                Some(exec_out::Msg::Error(err)) => break 'run lost(format!(": {}", err.message)),
                _ => opened = true,
            }
            match msg.msg {
                Some(exec_out::Msg::Output(data)) => {
                    let idx = usize::from(data.stream == v1::StdStream::Stderr as i32);
                    let ack = Ack { proc: 0, stream: data.stream, bytes: data.data.len() as u64 };
                    let bytes = if spec.prefix { lines[idx].push(&prefix, &data.data, data.eof) } else { data.data };
                    writers[idx].write(bytes, ack);
                }
                Some(exec_out::Msg::StdinAck(ack)) => stdin_outstanding = stdin_outstanding.saturating_sub(ack.bytes),
                Some(exec_out::Msg::Detached(_)) => match (my_id, reexec.take()) {
                    (Some(id), Some(argv)) => break 'run Outcome::Reexec { id, argv, stdin_done },
                    _ => {
                        eprintln!("bpsh: node {}: the master let go of a ghost that did not ask", spec.node);
                        break 'run Outcome::Ended(Ended::Exited(FAIL));
                    }
                },
                Some(exec_out::Msg::Event(ev)) => match Kind::try_from(ev.kind) {
                    Ok(Kind::Started) => {
                        my_id = Some(ev.id);
                        // What starting took goes back to the system: a
                        // ghost mostly waits, and there may be thousands.
                        // SAFETY: malloc_trim only returns free heap pages.
                        unsafe { libc::malloc_trim(0) };
                    }
                    Ok(Kind::Forked) => {
                        let current = reexec.as_ref().unwrap_or(&own_argv);
                        if let Err(e) = fork_ghost(spec.node, ev.id, ev.node_pid, current, &env) {
                            eprintln!("bpsh: node {}: cannot make the ghost of pid {}: {e}", spec.node, ev.node_pid);
                        }
                    }
                    // Become the new program: detach, let the master
                    // drain what it sent, then exec ourselves.
                    Ok(Kind::Execed) if ev.argv != *reexec.as_ref().unwrap_or(&own_argv) => {
                        if reexec.is_none() {
                            // Stdin read so far goes to the node first;
                            // the next ghost reads the rest.
                            if let Some(r) = reader.take() {
                                for chunk in r.stop(&stdin_rx) {
                                    let (data, eof) = chunk.map_or((Bytes::new(), true), |d| (d, false));
                                    send(&mut link, exec_in::Msg::Stdin(v1::StdioData { id: 0, stream: 0, data, eof }));
                                    stdin_done |= eof;
                                }
                            }
                            stdin_open = false;
                            send(&mut link, exec_in::Msg::Detach(v1::Detach {}));
                        }
                        reexec = Some(ev.argv);
                    }
                    Ok(Kind::ExecFailed) => {
                        let err = std::io::Error::from_raw_os_error(ev.errno);
                        let text = err.to_string();
                        let text = text.split(" (os error").next().unwrap_or(&text);
                        eprintln!("bpsh: node {}: {argv0}: {text}", spec.node);
                    }
                    Ok(Kind::Stopped) => {
                        // Mirror the stop: our parent and `ps` see us
                        // stopped while the remote process is. When we
                        // are continued, so is it.
                        // SAFETY: raise takes a plain signal number.
                        unsafe { libc::raise(libc::SIGSTOP) };
                        send(&mut link, exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo: libc::SIGCONT }));
                    }
                    Ok(Kind::Exited) => {
                        if ev.node_lost {
                            eprintln!("bpsh: node {} went down; its process is lost", spec.node);
                        }
                        break 'run Outcome::Ended(Ended::from_status(ev.wait_status));
                    }
                    _ => {}
                },
                None | Some(exec_out::Msg::Error(_)) => {}
            }
        }
    };
    for w in &mut writers {
        w.finish();
    }
    if let Outcome::Reexec { .. } = &ended {
        // What we wrote is acknowledged before we go, so the node's credit
        // is whole for the next ghost; then our side closes, and the master
        // closes its side once it has read everything. The signals we
        // forward stay blocked, and wait for the next ghost.
        while let Ok(ack) = ack_rx.try_recv() {
            send(&mut link, exec_in::Msg::OutputAck(v1::StdioAck { id: 0, stream: ack.stream, bytes: ack.bytes }));
        }
        link.finish();
    }
    ended
}

/// Reaps the ghosts we forked for forked remote processes (their remote
/// parent does its own waiting on the node).
fn reap_children() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on any child writes only `status`.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

/// The environment of a ghost: `env` plus its spec.
fn ghost_env(env: &[(OsString, OsString)], spec: &GhostSpec) -> Result<Vec<CString>, String> {
    let mut out = Vec::with_capacity(env.len() + 1);
    for (k, v) in env {
        let mut entry = k.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(v.as_bytes());
        out.push(CString::new(entry).map_err(|_| "environment entry with a NUL byte".to_string())?);
    }
    out.push(CString::new(format!("{}={}", crate::spec::GHOST_ENV, spec.encode())).map_err(|e| e.to_string())?);
    Ok(out)
}

fn cstrings(argv: &[Vec<u8>]) -> Result<Vec<CString>, String> {
    argv.iter().map(|a| CString::new(a.clone()).map_err(|_| "argument with a NUL byte".to_string())).collect()
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// The program every ghost runs: ours, even if its file was replaced since.
const SELF_EXE: &std::ffi::CStr = c"/proc/self/exe";

/// Forks the ghost of process `id`, which a remote process forked on
/// `node` as `node_pid`: a child of ours (as the remote one is of our remote
/// process) that runs the ghost program with our command line and attaches
/// to `id`. It gets PID `node_pid` when we may choose our children's PIDs
/// (CAP_CHECKPOINT_RESTORE) and it is free; otherwise the master maps the two.
fn fork_ghost(node: u32, id: u64, node_pid: i32, argv: &[Vec<u8>], env: &[(OsString, OsString)]) -> Result<(), String> {
    let spec = GhostSpec { attach: Some(id), forked: true, ..GhostSpec::start(node, false, true) };
    let args = cstrings(argv)?;
    let envs = ghost_env(env, &spec)?;
    let (argp, envp) = (pointers(&args), pointers(&envs));
    // SAFETY: everything the child touches is allocated above; it only calls
    // execve and _exit (raw system calls, async-signal-safe), as both fork
    // and fork_with_pid require of a child in a threaded process.
    let pid = unsafe {
        let pid = match libbproc::fork::fork_with_pid(node_pid) {
            Ok(pid) => pid,
            Err(_) => libc::fork(),
        };
        if pid == 0 {
            libc::execve(SELF_EXE.as_ptr(), argp.as_ptr(), envp.as_ptr());
            libc::_exit(FAIL);
        }
        pid
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

/// Replaces this process with a ghost of `id` running `argv` (the remote
/// process exec'd it). Returns only on failure.
pub fn reexec(spec: &GhostSpec, id: u64, argv: &[Vec<u8>], stdin_done: bool, env: &[(OsString, OsString)]) -> String {
    let spec = GhostSpec { attach: Some(id), stdin_null: spec.stdin_null || stdin_done, ..spec.clone() };
    let (args, envs) = match (cstrings(argv), ghost_env(env, &spec)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let (argp, envp) = (pointers(&args), pointers(&envs));
    // SAFETY: argp and envp are NULL-terminated arrays of pointers into
    // CStrings that outlive the call.
    unsafe { libc::execve(SELF_EXE.as_ptr(), argp.as_ptr(), envp.as_ptr()) };
    std::io::Error::last_os_error().to_string()
}

/// Whether we are in the foreground process group of the terminal on fd 0.
fn in_foreground() -> bool {
    // SAFETY: plain calls on fd 0 and our own process group.
    unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// The thread that reads our stdin; see [`read_stdin`].
struct StdinReader {
    /// Writing a byte here tells the thread to stop.
    stop: std::fs::File,
    thread: std::thread::JoinHandle<()>,
}

impl StdinReader {
    /// Stops the thread and waits for it, taking what it passes meanwhile
    /// (it may be blocked handing over a chunk): returns every chunk (None:
    /// EOF) it took from fd 0 that was not received yet. After this it
    /// takes no more.
    fn stop(self, rx: &mpsc::Receiver<Option<Bytes>>) -> Vec<Option<Bytes>> {
        use std::io::Write;
        let mut stop = self.stop;
        let _ = stop.write_all(b"x");
        let mut chunks = Vec::new();
        loop {
            let finished = self.thread.is_finished();
            while let Ok(chunk) = rx.try_recv() {
                chunks.push(chunk);
            }
            if finished {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = self.thread.join();
        chunks
    }
}

/// Waits until fd 0 or `stop` is readable; true for fd 0 (and when poll
/// fails: the read reports what is wrong).
fn wait_readable(stop: i32) -> bool {
    wait([0, stop]).is_none_or(|[_, stopped]| !stopped)
}

/// Reads our stdin on a plain thread (a read of a terminal cannot be
/// cancelled, and must not hold up our exit). It reads only once poll says
/// there is something, so it can be stopped between reads (a ghost about to
/// re-exec must leave the rest of its stdin to the next one).
///
/// On a terminal, a ghost in the background must neither steal the
/// foreground's input nor stop on SIGTTIN before it has passed a SIGCONT on
/// (`bg` would then leave the remote process stopped). So SIGTTIN is
/// ignored, a background read fails with EIO, and we wait until our job is
/// in the foreground again.
fn read_stdin(tx: mpsc::SyncSender<Option<Bytes>>, wake: Wake) -> Option<StdinReader> {
    // SAFETY: isatty only inspects fd 0.
    let tty = unsafe { libc::isatty(0) } == 1;
    if tty {
        // SAFETY: ignoring a signal installs no handler code.
        unsafe { libc::signal(libc::SIGTTIN, libc::SIG_IGN) };
    }
    let mut pipe = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!("bpsh: cannot read stdin: {}", std::io::Error::last_os_error());
        return None;
    }
    // SAFETY: both fds were just created and are owned by these files alone.
    let (stop_r, stop_w) = unsafe { (std::fs::File::from_raw_fd(pipe[0]), std::fs::File::from_raw_fd(pipe[1])) };
    let thread = std::thread::spawn(move || {
        // One buffer for every read, never zeroed, and only what a read
        // gave is copied out: a zeroed chunk would be touched whole (128 KB
        // per ghost, even of one that reads only EOF), and the heap would
        // keep those pages.
        let mut buf: Vec<u8> = Vec::with_capacity(STDIN_CHUNK);
        loop {
            if !wait_readable(stop_r.as_raw_fd()) {
                return;
            }
            buf.clear();
            // SAFETY: read writes at most `capacity` bytes into the vector's
            // spare capacity, and set_len covers exactly what it wrote.
            let read = unsafe {
                let n = libc::read(0, buf.as_mut_ptr().cast(), buf.capacity());
                if n >= 0 {
                    buf.set_len(n as usize);
                    Ok(n as usize)
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            match read {
                Err(e) if tty && e.raw_os_error() == Some(libc::EIO) && !in_foreground() => {
                    // No event says "you are in the foreground now": look
                    // again a little later.
                    while !in_foreground() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
                Ok(n) if n > 0 => {
                    if tx.send(Some(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                    wake.wake();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => {
                    if tx.send(None).is_ok() {
                        wake.wake();
                    }
                    return;
                }
            }
        }
    });
    Some(StdinReader { stop: stop_w, thread })
}
