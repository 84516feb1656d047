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
    // Start from an empty signal mask whatever we inherited (bpsh blocks the
    // signals it waits for): the signals we forward must reach us.
    // SAFETY: an empty set, initialised by sigemptyset, replaces our mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
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
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bpsh: cannot start: {e}");
            std::process::exit(ghost::FAIL)
        }
    };
    let ended = if argv.is_empty() { Ended::Exited(ghost::FAIL) } else { rt.block_on(ghost::run(&spec, argv, env)) };
    drop(rt);
    end_like(ended)
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
