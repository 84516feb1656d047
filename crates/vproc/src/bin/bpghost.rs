//! `bpghost`: the ghost of one remote process. bpsh forks and execs it with
//! the remote command line as its own argv (so `ps` shows the remote
//! command) and a [`vproc::spec::GhostSpec`] in `BPROC_GHOST`. Not meant to
//! be run by hand.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use libbproc::wait_status::{end_like, Ended};
use vproc::ghost;
use vproc::spec::{GhostSpec, GHOST_ENV};

fn main() {
    // First of all, before any thread: the signals we forward (and SIGCHLD)
    // are blocked and come through a signalfd. Any that came before (while
    // bpsh set us up, or while the previous ghost re-exec'd itself) wait,
    // pending, for the loop.
    let signals = match ghost::take_signals() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("bpsh: cannot handle signals: {e}");
            std::process::exit(ghost::FAIL)
        }
    };
    // One malloc arena: the threads a ghost may start (stdin, output) move
    // little, and each arena of their own would stay with the ghost. And a
    // fixed mmap threshold: big buffers (stdin chunks, output frames) go
    // back to the system when freed, instead of raising the threshold and
    // staying in the heap for good.
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
    keep_privilege_only_for_a_root_master();
    let spec = match std::env::var(GHOST_ENV).map_err(|e| e.to_string()).and_then(|s| GhostSpec::decode(&s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bpghost: run by bpsh only ({GHOST_ENV}: {e})");
            std::process::exit(ghost::FAIL)
        }
    };
    let argv: Vec<_> = std::env::args_os().collect();
    let env: Vec<_> = std::env::vars_os().filter(|(k, _)| k != GHOST_ENV).collect();
    if let Some(first) = argv.first() {
        set_comm(first.as_bytes());
    }
    let outcome = if argv.is_empty() {
        ghost::Outcome::Ended(Ended::Exited(ghost::FAIL))
    } else {
        ghost::run(&spec, argv, env.clone(), &signals)
    };
    match outcome {
        ghost::Outcome::Ended(ended) => end_like(ended),
        ghost::Outcome::Reexec { id, argv, stdin_done } => {
            // What this ghost was handed to pass on, it has passed on.
            let spec = GhostSpec { pending: Vec::new(), ..spec };
            let why = ghost::reexec(&spec, id, &argv, stdin_done, &env);
            eprintln!("bpsh: cannot re-exec the ghost: {why}");
            std::process::exit(ghost::FAIL)
        }
    }
}

/// Our comm (what `ps -o comm` shows) becomes the remote program's name.
fn set_comm(argv0: &[u8]) {
    let base = argv0.rsplit(|b| *b == b'/').next().unwrap_or(argv0);
    let name: Vec<u8> = base.iter().copied().filter(|b| *b != 0).take(15).collect();
    if let Ok(c) = CString::new(name) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr(), 0, 0, 0) };
    }
}

/// The ghost program may carry the file capability CAP_CHECKPOINT_RESTORE
/// (`x.sh` sets it), only so that the ghost of a process forked on a node
/// can get that process's node PID (clone3 `set_tid`), and only on the word
/// of the master. A socket that root does not own is not the master's: then
/// every capability is dropped before anything else happens.
fn keep_privilege_only_for_a_root_master() {
    use std::os::unix::fs::MetadataExt;
    let root_master = std::fs::metadata(libbproc::client::socket_path()).is_ok_and(|m| m.uid() == 0);
    if root_master {
        return;
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: VERSION_3, pid: 0 };
    let none = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset reads a version-3 header and two data words, both
    // valid for the call; clearing our own capabilities needs no privilege.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, none.as_ptr()) };
    if r != 0 {
        eprintln!("bpghost: cannot drop capabilities: {}", std::io::Error::last_os_error());
        std::process::exit(ghost::FAIL);
    }
}
