//! `bpsh NODES cmd args...`: run a program on cluster nodes as if it ran
//! here. For every node, bpsh forks a *ghost* (`bpghost`, with the remote
//! command line as its argv): the ghost's PID is the remote process's global
//! PID, it relays stdio, forwards the signals it gets and dies as the remote
//! process did. bpsh waits for its ghosts like any parent, passes on the
//! signals it receives, stops when they have all stopped after a SIGTSTP,
//! and ends as the worst of them did.

mod args;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};

use libbproc::ghost_spec::{GhostSpec, GHOST_ENV};
use libbproc::wait_status::{end_like, Ended};
use libbproc::{nodeset, BprocError, Client};

use args::{Opts, Parsed};

/// bpsh's own failures (no master, unknown or down node, denied).
const FAIL: i32 = 255;
const STDIN_CHUNK: usize = 128 * 1024;

/// The signals bpsh waits for; all but SIGCHLD are passed on to the ghosts.
const WAITED: [i32; 9] = [
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTSTP,
    libc::SIGCONT,
];

fn main() {
    let opts = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            std::process::exit(0)
        }
        Ok(Parsed::Version) => {
            println!("bpsh (bproc-rs) {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("bpsh: {e}\n{}", args::USAGE);
            std::process::exit(FAIL)
        }
    };
    let ghost = match ghost_program() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bpsh: {e}");
            std::process::exit(FAIL)
        }
    };
    let mut nodes = match select_nodes(&opts) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("bpsh: {e}");
            std::process::exit(FAIL)
        }
    };
    let mask = SignalSet::of(&WAITED);
    mask.block();
    let mut endings = Vec::new();
    if opts.serial {
        nodes.sort_unstable();
        let null = opts.null_stdin || nodes.len() > 1;
        for node in &nodes {
            endings.extend(run_group(&ghost, &[*node], &opts, null, &mask));
        }
    } else {
        endings.extend(run_group(&ghost, &nodes, &opts, opts.null_stdin, &mask));
    }
    end_like(Ended::worst(endings).unwrap_or(Ended::Exited(0)))
}

/// The ghost program (see [`libbproc::migrate::ghost_program`]), which must exist.
fn ghost_program() -> Result<PathBuf, String> {
    let ghost = libbproc::migrate::ghost_program();
    if ghost.exists() {
        Ok(ghost)
    } else {
        Err(format!("{} not found (install bpghost beside bpsh, or set BPROC_GHOST_BIN)", ghost.display()))
    }
}

fn select_nodes(opts: &Opts) -> Result<Vec<u32>, BprocError> {
    if let Some(spec) = &opts.nodes {
        return nodeset::parse(spec);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BprocError::Transport(e.to_string()))?;
    let table = rt.block_on(async { Client::connect().await?.nodes().await })?;
    if opts.all {
        if let Some(n) = table.iter().find(|n| n.state != "up") {
            return Err(BprocError::NodeDown(format!("node {} is {}", n.node, n.state)));
        }
    }
    let up: Vec<u32> = table.iter().filter(|n| n.state == "up").map(|n| n.node).collect();
    if up.is_empty() {
        return Err(BprocError::NodeDown("no node is up".into()));
    }
    Ok(up)
}

/// A set of signals, blocked while bpsh waits for them with sigwaitinfo.
struct SignalSet(libc::sigset_t);

impl SignalSet {
    fn of(signals: &[i32]) -> SignalSet {
        // SAFETY: sigemptyset/sigaddset initialise and fill a set we own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in signals {
                libc::sigaddset(&mut set, *s);
            }
            SignalSet(set)
        }
    }

    fn block(&self) {
        // SAFETY: the set is initialised; the old mask is not needed (our
        // children get an empty mask from std's spawn).
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
    }

    fn wait(&self) -> i32 {
        loop {
            // SAFETY: the set is initialised; no siginfo is asked for.
            let s = unsafe { libc::sigwaitinfo(&self.0, std::ptr::null_mut()) };
            if s > 0 {
                return s;
            }
        }
    }
}

struct Ghost {
    pid: i32,
    stopped: bool,
    ended: Option<Ended>,
}

/// Forks a ghost per node, waits for all of them, and returns how each ended.
fn run_group(ghost: &PathBuf, nodes: &[u32], opts: &Opts, null_stdin: bool, mask: &SignalSet) -> Vec<Ended> {
    // One node: the ghost reads our stdin itself. Several: we copy our
    // stdin to each of them through a pipe.
    let broadcast = !null_stdin && nodes.len() > 1;
    let mut ghosts = Vec::new();
    let mut pipes: Vec<ChildStdin> = Vec::new();
    let mut endings = Vec::new();
    for node in nodes {
        let spec = GhostSpec::start(*node, opts.prefix, null_stdin).encode();
        let mut cmd = Command::new(ghost);
        cmd.arg0(&opts.argv[0]).args(&opts.argv[1..]).env(GHOST_ENV, spec);
        cmd.stdin(if broadcast {
            Stdio::piped()
        } else if null_stdin {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
        match cmd.spawn() {
            Ok(mut child) => {
                if let Some(p) = child.stdin.take() {
                    pipes.push(p);
                }
                ghosts.push(Ghost { pid: child.id() as i32, stopped: false, ended: None });
            }
            Err(e) => {
                eprintln!("bpsh: node {node}: cannot start a ghost: {e}");
                endings.push(Ended::Exited(FAIL));
            }
        }
    }
    if broadcast {
        copy_stdin(pipes);
    }
    let mut stop_pending = false;
    while ghosts.iter().any(|g| g.ended.is_none()) {
        let signo = mask.wait();
        let live = || ghosts.iter().filter(|g| g.ended.is_none());
        match signo {
            libc::SIGCHLD => reap(&mut ghosts),
            libc::SIGTSTP => {
                stop_pending = true;
                live().for_each(|g| signal(g.pid, libc::SIGTSTP));
            }
            other => live().for_each(|g| signal(g.pid, other)),
        }
        if stop_pending && ghosts.iter().filter(|g| g.ended.is_none()).all(|g| g.stopped) {
            stop_pending = false;
            // Every ghost (so every remote process) has stopped: stop too,
            // and when we are continued, continue them.
            // SAFETY: raise takes a plain signal number.
            unsafe { libc::raise(libc::SIGSTOP) };
            ghosts.iter().filter(|g| g.ended.is_none()).for_each(|g| signal(g.pid, libc::SIGCONT));
        }
    }
    endings.extend(ghosts.iter().filter_map(|g| g.ended));
    endings
}

fn signal(pid: i32, signo: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid, signo) };
}

/// Collects every ghost that changed state.
fn reap(ghosts: &mut [Ghost]) {
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid for waitpid to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED) };
        if pid <= 0 {
            return;
        }
        let Some(g) = ghosts.iter_mut().find(|g| g.pid == pid) else { continue };
        if libc::WIFSTOPPED(status) {
            g.stopped = true;
        } else if libc::WIFCONTINUED(status) {
            g.stopped = false;
        } else {
            g.ended = Some(Ended::from_status(status));
        }
    }
}

/// Copies our stdin to every ghost's, on a plain thread; a ghost that has
/// gone is dropped from the copy.
fn copy_stdin(mut pipes: Vec<ChildStdin>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    pipes.retain_mut(|p| p.write_all(&buf[..n]).is_ok());
                    if pipes.is_empty() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    });
}
