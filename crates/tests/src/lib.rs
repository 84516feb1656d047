//! # End-to-end test support
//!
//! Every end-to-end test brings up its own namespace cluster with
//! [`cluster`], drives it with the real tools (`bpsh`, `bpstat`, a shell)
//! through [`run`] and [`spawn`], and waits for events with deadlines
//! ([`wait_for`]), never with fixed sleeps. The cluster is torn down when
//! its guard drops, also when the test fails.
//!
//! # Layout
//! - this file: cluster guard, command running with deadlines, /proc probes.
//! - `tests/*.rs`: one file per capability.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use vm_harness::{Cluster, ClusterSpec};

/// How long any single command of a test may take before it counts as hung.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// Node timeout of test clusters: short, so node loss is seen quickly.
pub const NODE_TIMEOUT_MS: u64 = 1500;

/// Brings up a fresh cluster of `nodes` nodes for one test.
pub fn cluster(nodes: u32) -> Cluster {
    cluster_with_config(nodes, None)
}

/// A test cluster whose master reads the TOML `config` (node permissions).
pub fn cluster_with_config(nodes: u32, config: Option<&str>) -> Cluster {
    let mut spec = ClusterSpec::new(vm_harness::unique_name("t"), nodes);
    spec.node_timeout_ms = NODE_TIMEOUT_MS;
    if let Some(text) = config {
        let path = std::env::temp_dir().join(format!("{}.toml", spec.name));
        std::fs::write(&path, text).expect("write the master's configuration");
        spec.master_config = Some(path);
    }
    let config_file = spec.master_config.clone();
    let up = Cluster::up(spec);
    // The master has read it (a test that restarts the master passes none).
    if let Some(path) = config_file {
        let _ = std::fs::remove_file(path);
    }
    match up {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot bring up a test cluster (run as root, with iproute2 and util-linux installed, \
             after `cargo build --release --bins`): {}",
            e.chain()
        ),
    }
}

/// Polls `probe` every 10 ms until it gives `Some`, or panics after `timeout`
/// naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    vm_harness::wait_for(timeout, Duration::from_millis(10), probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Runs a command to completion with a deadline; kills it if it hangs.
pub fn run(cmd: &mut Command) -> Output {
    run_with_input(cmd, None)
}

/// Like [`run`], with bytes fed to the command's stdin.
pub fn run_with_input(cmd: &mut Command, input: Option<Vec<u8>>) -> Output {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        })
    });
    let out = collect(&mut child, CMD_TIMEOUT, &format!("{cmd:?}"));
    if let Some(w) = writer {
        let _ = w.join();
    }
    out
}

/// Waits for a spawned child (with piped stdout and stderr) and collects its
/// output; kills it and panics after `timeout`.
pub fn collect(child: &mut Child, timeout: Duration, what: &str) -> Output {
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let status = wait_child(child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not finish within {timeout:?}")
    });
    Output { status, stdout: out.join().expect("reader"), stderr: err.join().expect("reader") }
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    vm_harness::wait_until(deadline, Duration::from_millis(5), || child.try_wait().ok().flatten())
}

/// The one-letter state of a process from /proc/PID/stat (R, S, T, Z, ...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// The remote processes the master knows, from `bpstat -p --json`.
pub fn remote_processes(c: &Cluster) -> Vec<serde_json::Value> {
    let out = run(c.command("bpstat").args(["-p", "--json"]));
    assert!(out.status.success(), "bpstat -p failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpstat -p --json prints JSON");
    v["processes"].as_array().cloned().unwrap_or_default()
}

/// Waits until the master lists a remote process on `node` whose command
/// line starts with `argv0`, and returns its host PID (seen from here).
pub fn wait_remote(c: &Cluster, node: u32, argv0: &str) -> i32 {
    wait_for(&format!("{argv0} to run on node {node}"), Duration::from_secs(20), || {
        remote_processes(c).into_iter().find_map(|p| {
            let same = p["node"].as_u64() == Some(node.into()) && p["argv"][0].as_str() == Some(argv0);
            let npid = p["node_pid"].as_i64().filter(|n| *n > 0)?;
            if same {
                c.host_pid(node, npid as i32)
            } else {
                None
            }
        })
    })
}

/// Text of a byte buffer, for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill takes plain integers.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
}

/// `sh -c script` with the cluster's `BPROC_SOCKET` set (the system shell,
/// not a binary of ours).
pub fn sh(c: &Cluster, script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]).env("BPROC_SOCKET", c.socket_path());
    cmd
}

/// Starts `bpsh args...` in the background with stdin from /dev/null and
/// stdout and stderr piped (for [`collect`]).
pub fn spawn_bpsh(c: &Cluster, args: &[&str]) -> Child {
    c.command("bpsh")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bpsh {args:?}: {e}"))
}

/// Builds the test program `c/NAME.c` into `dir` as a BProc user builds
/// one, `cc NAME.c -lbproc` (libbproc.so and sys/bproc.h are installed by
/// `bash x.sh setup`); returns its path.
pub fn c_program(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("c").join(format!("{name}.c"));
    let out = dir.join(name);
    let cc = Command::new("cc").arg(&src).arg("-o").arg(&out).arg("-lbproc").output().expect("run cc");
    assert!(
        cc.status.success(),
        "cc {name}.c -lbproc failed (libbproc.so and sys/bproc.h are installed by bash x.sh setup): {}",
        text(&cc.stderr)
    );
    out
}
