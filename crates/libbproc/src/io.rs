//! BProc's io lists: the descriptors a process placed on a node gets instead
//! of the default forwarding (stdio relayed through its ghost). Each entry
//! opens a file on the node, or connects a TCP socket (to the front end for
//! the address 0.0.0.0), and puts it on a chosen descriptor.
//!
//! The `_io` calls ([`rfork_io`], [`vrfork_io`], [`move_io`],
//! [`execmove_io`], [`vexecmove_io`]) move the caller as their plain forms
//! do and set the list up in the copy on the node, as the copy itself,
//! before it returns (or execs the program). The setup cannot undo a move
//! that is done: when it fails (and the entry is not [`IoEntry::delay`]ed),
//! the copy says why on its stderr and ends with status 126.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::BprocError;
use crate::migrate::{self, Forked, VForked};

/// Most entries an io list may have (BProc's `BPROC_IO_MAX_LEN`).
pub const MAX_LEN: usize = 16;

/// The file in which a node's slave names the front end's address (the
/// host of its master link), for sockets to 0.0.0.0.
pub const MASTER_FILE: &str = "/run/bproc/node/master";

/// What an entry puts on its descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoTarget {
    /// `open(path, flags, mode)` on the node.
    File { path: CString, flags: i32, mode: u32 },
    /// A TCP connection to this address; 0.0.0.0 means the front end.
    Socket(SocketAddrV4),
}

/// One descriptor of an io list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoEntry {
    /// The descriptor number in the process.
    pub fd: i32,
    pub target: IoTarget,
    /// Write the process's PID and `fd` (two native ints) to it first, so a
    /// listener can tell the streams apart (`BPROC_IO_SEND_INFO`).
    pub send_info: bool,
    /// A failure to set it up is ignored: the process runs without it
    /// (`BPROC_IO_DELAY`).
    pub delay: bool,
}

/// Where a socket to `addr` goes: 0.0.0.0 is the front end, as this node's
/// slave names it (loopback where no slave does).
fn resolve(addr: SocketAddrV4) -> SocketAddrV4 {
    if !addr.ip().is_unspecified() {
        return addr;
    }
    let front_end = std::fs::read_to_string(MASTER_FILE)
        .ok()
        .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
        .unwrap_or(Ipv4Addr::LOCALHOST);
    SocketAddrV4::new(front_end, addr.port())
}

/// Opens `entry`'s target (close-on-exec; the caller moves it in place).
fn open(entry: &IoEntry) -> Result<OwnedFd, String> {
    match &entry.target {
        IoTarget::File { path, flags, mode } => {
            // SAFETY: open reads a NUL-terminated path; the result is ours.
            let fd = unsafe { libc::open(path.as_ptr(), *flags | libc::O_CLOEXEC, *mode as libc::c_uint) };
            if fd < 0 {
                return Err(format!("{}: {}", path.to_string_lossy(), std::io::Error::last_os_error()));
            }
            // SAFETY: a fresh descriptor nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        IoTarget::Socket(addr) => {
            let to = resolve(*addr);
            std::net::TcpStream::connect(to).map(OwnedFd::from).map_err(|e| format!("connect to {to}: {e}"))
        }
    }
}

/// Sets `list` up in this process: every target is opened first (a failure
/// leaves stdio as it was, to say why); then stdio (the default forwarding)
/// is closed and each target put on its descriptor, not close-on-exec.
pub fn set_up(list: &[IoEntry]) -> Result<(), BprocError> {
    let mut opened: Vec<(&IoEntry, OwnedFd)> = Vec::new();
    for entry in list {
        if entry.fd < 0 {
            return Err(BprocError::Refused(format!("io entry for fd {}", entry.fd)));
        }
        match open(entry) {
            Ok(fd) => opened.push((entry, fd)),
            Err(_) if entry.delay => {}
            Err(why) => return Err(BprocError::System(format!("io setup of fd {}: {why}", entry.fd))),
        }
    }
    // Out of the way of the numbers the entries take.
    let top = list.iter().map(|e| e.fd).max().unwrap_or(2).max(2) + 1;
    let mut moved = Vec::with_capacity(opened.len());
    for (entry, fd) in opened {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own gives a new one we own.
        let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
        if high < 0 {
            return Err(BprocError::System(format!(
                "io setup of fd {}: {}",
                entry.fd,
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `high` is fresh and ours.
        moved.push((entry, unsafe { OwnedFd::from_raw_fd(high) }));
    }
    for fd in 0..=2 {
        // SAFETY: closing our own stdio (the relay pipes), as BProc's io list replaces them.
        unsafe { libc::close(fd) };
    }
    for (entry, fd) in moved {
        // SAFETY: dup2 onto the entry's number; the new descriptor is not close-on-exec.
        if unsafe { libc::dup2(fd.as_raw_fd(), entry.fd) } < 0 {
            if entry.delay {
                continue;
            }
            return Err(BprocError::System(format!(
                "io setup of fd {}: {}",
                entry.fd,
                std::io::Error::last_os_error()
            )));
        }
        if entry.send_info {
            let mut info = [0u8; 8];
            // SAFETY: getpid has no preconditions.
            info[..4].copy_from_slice(&unsafe { libc::getpid() }.to_ne_bytes());
            info[4..].copy_from_slice(&entry.fd.to_ne_bytes());
            // SAFETY: writes our own buffer to a descriptor we own.
            let n = unsafe { libc::write(entry.fd, info.as_ptr().cast(), info.len()) };
            if n != info.len() as isize && !entry.delay {
                return Err(BprocError::System(format!("io setup of fd {}: the pid and fd did not go", entry.fd)));
            }
        }
    }
    Ok(())
}

/// In a copy that just arrived: sets `list` up, or says why not and ends
/// (status 126).
fn arrived(list: &[IoEntry]) {
    if let Err(e) = set_up(list) {
        eprintln!("bproc: {e}");
        std::process::exit(126);
    }
}

/// [`migrate::rfork`], the copy on the node set up by `list`.
pub fn rfork_io(node: i32, list: &[IoEntry]) -> Result<Forked, BprocError> {
    let forked = migrate::rfork(node)?;
    if forked == Forked::Child {
        arrived(list);
    }
    Ok(forked)
}

/// [`migrate::vrfork`], each copy set up by `list`.
pub fn vrfork_io(nodes: &[i32], list: &[IoEntry]) -> Result<VForked, BprocError> {
    let forked = migrate::vrfork(nodes)?;
    if matches!(forked, VForked::Child { .. }) {
        arrived(list);
    }
    Ok(forked)
}

/// [`migrate::move_to`], then `list` set up where the process arrived.
pub fn move_io(node: i32, list: &[IoEntry]) -> Result<(), BprocError> {
    migrate::move_to(node)?;
    arrived(list);
    Ok(())
}

/// Execs `cmd` (searched in PATH) here; ends with status 127 when it cannot.
fn exec_here(cmd: &CString, argv: &[CString], envp: &[CString]) -> ! {
    let args: Vec<*const libc::c_char> =
        argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let env: Vec<*const libc::c_char> =
        envp.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    // SAFETY: NULL-terminated arrays of pointers into CStrings that outlive the call.
    unsafe { libc::execvpe(cmd.as_ptr(), args.as_ptr(), env.as_ptr()) };
    eprintln!(
        "bproc: {}: {}",
        std::ffi::OsStr::from_bytes(cmd.as_bytes()).to_string_lossy(),
        std::io::Error::last_os_error()
    );
    std::process::exit(127)
}

/// [`migrate::execmove`] with an io list: the caller moves to `node`
/// (a checkpoint, unlike the plain call, which starts the program there
/// afresh), sets `list` up there and execs `cmd`. Returns only on failure
/// to move.
pub fn execmove_io(node: i32, list: &[IoEntry], cmd: &CString, argv: &[CString], envp: &[CString]) -> BprocError {
    if let Err(e) = migrate::move_to(node) {
        return e;
    }
    arrived(list);
    exec_here(cmd, argv, envp)
}

/// [`migrate::vexecmove`] with an io list: a copy of the caller on each
/// node (a vrfork) sets `list` up and execs `cmd` with its `BPROC_RANK`.
pub fn vexecmove_io(
    nodes: &[i32],
    list: &[IoEntry],
    cmd: &CString,
    argv: &[CString],
    envp: &[CString],
) -> Result<migrate::Pids, BprocError> {
    match migrate::vrfork(nodes)? {
        VForked::Parent { pids } => Ok(pids),
        VForked::Child { rank } => {
            arrived(list);
            exec_here(cmd, argv, &migrate::ranked_env(envp, rank))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_list_opens_files_and_sockets_onto_their_numbers_with_the_pid_first() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
        let port = listener.local_addr().expect("addr").port();
        let list = vec![
            IoEntry {
                fd: 1,
                target: IoTarget::File {
                    path: CString::new(path.as_os_str().as_bytes()).expect("path"),
                    flags: libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                    mode: 0o644,
                },
                send_info: false,
                delay: false,
            },
            IoEntry {
                fd: 5,
                target: IoTarget::Socket(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
                send_info: true,
                delay: false,
            },
            IoEntry {
                fd: 61,
                target: IoTarget::File { path: c"/nonexistent/x".into(), flags: libc::O_RDONLY, mode: 0 },
                send_info: false,
                delay: true,
            },
        ];
        // In a child: the setup closes stdio.
        // SAFETY: the child only runs the setup, writes and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: the delayed entry's number starts closed, whatever the test runner left there.
            unsafe { libc::close(61) };
            let code = match set_up(&list) {
                // SAFETY: writes to descriptors the setup made.
                Ok(()) => unsafe {
                    libc::write(1, b"to the file\n".as_ptr().cast(), 12);
                    libc::write(5, b"to the socket".as_ptr().cast(), 13);
                    let delayed = libc::fcntl(61, libc::F_GETFD);
                    if delayed < 0 {
                        0
                    } else {
                        3
                    }
                },
                Err(_) => 2,
            };
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) };
        }
        // The child connects (0.0.0.0 is loopback here), unless its setup
        // failed: then it has ended, and its status says so below.
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    let mut status = 0;
                    // SAFETY: polls our own child; writes only `status`.
                    if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                        panic!("the child ended without connecting: status {status:#x}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("no connection: {e}"),
            }
        };
        conn.set_nonblocking(false).expect("blocking");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
        assert_eq!(&got[..4], &pid.to_ne_bytes(), "the pid first");
        assert_eq!(&got[4..8], &5i32.to_ne_bytes(), "then the fd");
        assert_eq!(&got[8..], b"to the socket");
        assert_eq!(std::fs::read_to_string(&path).expect("the file"), "to the file\n");
    }

    #[test]
    fn a_failed_entry_leaves_stdio_alone_and_says_which() {
        let list = [IoEntry {
            fd: 1,
            target: IoTarget::File { path: c"/nonexistent/x".into(), flags: libc::O_RDONLY, mode: 0 },
            send_info: false,
            delay: false,
        }];
        let err = set_up(&list).expect_err("no such file");
        assert!(err.to_string().contains("io setup of fd 1: /nonexistent/x"), "{err}");
        // SAFETY: F_GETFD only reads flags of our own stdout.
        assert!(unsafe { libc::fcntl(1, libc::F_GETFD) } >= 0, "stdout still open");
    }
}
