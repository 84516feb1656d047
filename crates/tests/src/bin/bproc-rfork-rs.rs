//! The Rust twin of `c/rfork.c` and `c/vector.c`: the same checks through
//! libbproc's Rust API (`libbproc::migrate`), with the same output, so the
//! end-to-end tests run both.
//!
//! Usage: `bproc-rfork-rs rfork NODE FILE [GATE]` (buffer: 64 MB or
//! `RFORK_MB`), `bproc-rfork-rs execmove NODE`, `bproc-rfork-rs vexecmove
//! NODE...`, `bproc-rfork-rs vrfork NODE...`. For the benchmarks:
//! `bproc-rfork-rs bench MB NODE RUNS` (prints the microseconds of each
//! rfork + exit + reap of a process of MB megabytes; NODE -1 is a local
//! fork), `bproc-rfork-rs vbench MB RUNS vrfork|rforks|forks NODE...` (copies
//! on several nodes at once, one after another, or local) and
//! `bproc-rfork-rs hold MB` (says "ready", then waits). `bproc-rfork-rs
//! move-keeps-sockets NODE`: a move that fails keeps the caller's sockets.
//! `bproc-rfork-rs io FILE NODE...`: an rfork to the first node and a
//! vexecmove of `sh` to all, each with an io list that appends its stdout
//! to FILE on its node.

use std::ffi::CString;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;

use libbproc::migrate::{self, Forked, VForked};

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7) + 3) as u8
}

fn strerror(errno: i32) -> String {
    match errno {
        300 => "Invalid node number".into(),
        301 => "Node is down".into(),
        302 => "Move to same node".into(),
        303 => "Slave node died".into(),
        e => std::io::Error::from_raw_os_error(e).to_string().split(" (os error").next().unwrap_or("").to_string(),
    }
}

fn wait(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid on our own child writes only `status`.
    (unsafe { libc::waitpid(pid, &mut status, 0) } == pid).then(|| {
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    })
}

fn rfork(node: i32, file: &str, gate: Option<&str>) -> i32 {
    let mb: usize = std::env::var("RFORK_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let buf: Vec<u8> = (0..mb << 20).map(pattern).collect();
    let mut f = std::fs::File::open(file).expect("open");
    let size = f.metadata().expect("stat").len();
    let mut half = vec![0u8; (size / 2) as usize];
    f.read_exact(&mut half).expect("read");
    let me = std::process::id();
    match migrate::rfork(node) {
        Err(e) => {
            println!("rfork failed: errno {} ({})", e.errno(), strerror(e.errno()));
            3
        }
        Ok(Forked::Child) => {
            for _ in 0..3000 {
                if gate.is_none_or(|g| std::path::Path::new(g).exists()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let intact = buf.iter().enumerate().all(|(i, b)| *b == pattern(i));
            let offset = f.stream_position().expect("seek");
            println!(
                "child: node {} pid {} ppid-was {me} buffer {} offset {offset} of {size}",
                migrate::currnode(),
                std::process::id(),
                if intact { "intact" } else { "CORRUPT" }
            );
            42
        }
        Ok(Forked::Parent { pid }) => {
            println!("parent: child {pid}");
            let code = wait(pid).unwrap_or(-1);
            println!("parent: status exited=1 code={code}");
            0
        }
    }
}

fn cstrings<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<CString> {
    items.into_iter().map(|s| CString::new(s).expect("no NUL")).collect()
}

fn environ() -> Vec<CString> {
    std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            CString::new(e).expect("no NUL")
        })
        .collect()
}

fn report(pids: &[Result<i32, i32>]) {
    for (i, p) in pids.iter().enumerate() {
        match p {
            Ok(_) => println!("pids[{i}] = 0"),
            Err(e) => println!("pids[{i}] = -{e} {}", strerror(*e)),
        }
    }
    for (i, p) in pids.iter().enumerate() {
        if let Ok(pid) = p {
            match wait(*pid) {
                Some(code) => println!("child {i} exit {code}"),
                None => println!("waitpid {pid} failed"),
            }
        }
    }
}

/// `mb` megabytes, every page written.
fn touched(mb: usize) -> Vec<u8> {
    (0..mb << 20).map(pattern).collect()
}

fn bench(mb: usize, node: i32, runs: usize) -> i32 {
    let buf = touched(mb);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        match migrate::rfork(node) {
            // SAFETY: _exit ends the child at once.
            Ok(Forked::Child) => unsafe { libc::_exit(i32::from(buf[buf.len() / 2] != pattern(buf.len() / 2))) },
            Ok(Forked::Parent { pid }) => {
                if wait(pid) != Some(0) {
                    println!("failed: child {pid} did not exit 0");
                    return 1;
                }
            }
            Err(e) => {
                println!("failed: {e}");
                return 1;
            }
        }
        println!("run {}", t.elapsed().as_micros());
    }
    0
}

/// Places `nodes.len()` copies of a process of `mb` megabytes, `runs` times:
/// `way` is `vrfork` (one call), `rforks` (one rfork per node, one after
/// another) or `forks` (local forks). Each copy checks its buffer and exits;
/// a run ends when all are reaped. Prints the microseconds of each run.
fn vbench(mb: usize, runs: usize, way: &str, nodes: &[i32]) -> i32 {
    let buf = touched(mb);
    let check = |buf: &[u8]| i32::from(buf[buf.len() / 2] != pattern(buf.len() / 2));
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let mut pids = Vec::new();
        match way {
            "vrfork" => match migrate::vrfork(nodes) {
                // SAFETY: _exit ends the copy at once.
                Ok(VForked::Child { .. }) => unsafe { libc::_exit(check(&buf)) },
                Ok(VForked::Parent { pids: got }) => pids.extend(got.into_iter().filter_map(Result::ok)),
                Err(e) => {
                    println!("failed: {e}");
                    return 1;
                }
            },
            "rforks" | "forks" => {
                for &node in nodes {
                    let node = if way == "forks" { migrate::NODE_SELF } else { node };
                    match migrate::rfork(node) {
                        // SAFETY: _exit ends the copy at once.
                        Ok(Forked::Child) => unsafe { libc::_exit(check(&buf)) },
                        Ok(Forked::Parent { pid }) => pids.push(pid),
                        Err(e) => {
                            println!("failed: {e}");
                            return 1;
                        }
                    }
                }
            }
            _ => return 2,
        }
        if pids.len() != nodes.len() || !pids.iter().all(|p| wait(*p) == Some(0)) {
            println!("failed: {} of {} copies ran and exited 0", pids.len(), nodes.len());
            return 1;
        }
        println!("run {}", t.elapsed().as_micros());
    }
    0
}

/// Counts, moving itself to each node of `route` in turn (five counts on
/// each), and exits 0 after the last. Each line: count, node, PID.
fn counter(route: &[i32]) -> i32 {
    let mut count = 0u64;
    for &next in route.iter().chain(std::iter::once(&i32::MIN)) {
        for _ in 0..5 {
            count += 1;
            println!("count {count} node {} pid {}", migrate::currnode(), std::process::id());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if next == i32::MIN {
            break;
        }
        if let Err(e) = migrate::move_to(next) {
            println!("move to {next} failed: errno {} ({})", e.errno(), strerror(e.errno()));
            return 3;
        }
    }
    0
}

/// Tries to move to `node` (which must fail) holding a connected socket
/// pair, which a checkpoint cannot carry, and checks the pair still works.
fn move_keeps_sockets(node: i32) -> i32 {
    use std::io::Write;
    let Ok((mut a, mut b)) = std::os::unix::net::UnixStream::pair() else { return 4 };
    match migrate::move_to(node) {
        Ok(()) => {
            println!("moved to {}", migrate::currnode());
            return 3;
        }
        Err(e) => println!("move failed: {}", strerror(e.errno())),
    }
    let mut got = [0u8; 2];
    if a.write_all(b"ok").is_ok() && b.read_exact(&mut got).is_ok() && &got == b"ok" {
        println!("socket still works");
        0
    } else {
        println!("socket lost");
        1
    }
}

/// rfork_io and vexecmove_io with stdout appended to `file` on the node.
fn io_lists(file: &str, nodes: &[i32]) -> i32 {
    use libbproc::io::{IoEntry, IoTarget};
    let list = [IoEntry {
        fd: 1,
        target: IoTarget::File {
            path: CString::new(file).unwrap_or_default(),
            flags: libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
            mode: 0o644,
        },
        send_info: false,
        delay: false,
    }];
    match libbproc::io::rfork_io(nodes[0], &list) {
        Err(e) => {
            println!("rfork_io failed: errno {} ({})", e.errno(), strerror(e.errno()));
            return 3;
        }
        Ok(Forked::Child) => {
            println!("rfork child on node {} pid {}", migrate::currnode(), std::process::id());
            std::process::exit(42)
        }
        Ok(Forked::Parent { pid }) => println!("rfork child {pid} status {:?}", wait(pid)),
    }
    let argv = cstrings(["sh", "-c", "echo rank $BPROC_RANK on $(hostname)"]);
    match libbproc::io::vexecmove_io(nodes, &list, &argv[0], &argv, &environ()) {
        Ok(pids) => {
            for (rank, pid) in pids.iter().enumerate() {
                println!("rank {rank} status {:?}", pid.ok().and_then(wait));
            }
            0
        }
        Err(e) => {
            println!("vexecmove_io failed: {}", strerror(e.errno()));
            3
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: Vec<i32> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let code = match args.first().map(String::as_str) {
        Some("rfork") if args.len() >= 3 => rfork(nodes[0], &args[2], args.get(3).map(String::as_str)),
        Some("bench") if args.len() == 4 => bench(args[1].parse().unwrap_or(1), nodes[1], args[3].parse().unwrap_or(1)),
        Some("hold") if args.len() == 2 => {
            let buf = touched(args[1].parse().unwrap_or(1));
            println!("ready {}", buf.len());
            loop {
                // SAFETY: pause only waits for a signal.
                unsafe { libc::pause() };
            }
        }
        Some("counter") => counter(&nodes),
        Some("vbench") if args.len() > 4 => vbench(
            args[1].parse().unwrap_or(1),
            args[2].parse().unwrap_or(1),
            &args[3],
            &args[4..].iter().filter_map(|a| a.parse().ok()).collect::<Vec<i32>>(),
        ),
        Some("move-keeps-sockets") if nodes.len() == 1 => move_keeps_sockets(nodes[0]),
        Some("io") if args.len() >= 3 => io_lists(&args[1], &nodes),
        Some("vexecmove-true") => {
            let argv = cstrings(["true"]);
            match migrate::vexecmove(&nodes, &argv[0], &argv, &environ()) {
                Ok(pids) => {
                    let started = pids.iter().filter(|p| p.is_ok()).count();
                    let reaped = pids.iter().filter_map(|p| p.ok()).filter(|pid| wait(*pid) == Some(0)).count();
                    println!("reaped {reaped} of {started}");
                    i32::from(started != pids.len())
                }
                Err(e) => {
                    println!("vexecmove failed: {}", strerror(e.errno()));
                    3
                }
            }
        }
        Some("execmove") => {
            println!("caller pid {}", std::process::id());
            let argv = cstrings(["sh", "-c", "echo execmove pid $$ on $(hostname); exit 9"]);
            let e = migrate::execmove(nodes[0], &argv[0], &argv, &environ());
            println!("execmove failed: {}", strerror(e.errno()));
            3
        }
        Some("vexecmove") => {
            let argv =
                cstrings(["sh", "-c", "echo rank $BPROC_RANK on $(hostname); exit $((10 + ${BPROC_RANK#000000}))"]);
            let mut env = environ();
            env.push(CString::new(migrate::RANK_PLACEHOLDER).expect("no NUL"));
            match migrate::vexecmove(&nodes, &argv[0], &argv, &env) {
                Ok(pids) => {
                    report(&pids);
                    0
                }
                Err(e) => {
                    println!("vexecmove failed: {}", strerror(e.errno()));
                    3
                }
            }
        }
        Some("vrfork") => match migrate::vrfork(&nodes) {
            Ok(VForked::Child { rank }) => {
                println!("vrfork child {rank} on node {} pid {}", migrate::currnode(), std::process::id());
                10 + rank as i32
            }
            Ok(VForked::Parent { pids }) => {
                report(&pids);
                0
            }
            Err(e) => {
                println!("vrfork failed: {}", strerror(e.errno()));
                3
            }
        },
        _ => {
            eprintln!(
                "usage: bproc-rfork-rs rfork NODE FILE [GATE] | execmove NODE | vexecmove NODE... | vrfork NODE..."
            );
            2
        }
    };
    std::process::exit(code)
}
