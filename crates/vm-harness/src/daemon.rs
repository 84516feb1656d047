//! Starting the daemons detached (own session, stdin from /dev/null, output appended to a log),
//! stopping them (SIGTERM, a grace period, then SIGKILL), and reading their logs' tails.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::command;
use crate::error::HarnessError;
use crate::procfs::ProcRef;
use crate::subnet::Subnet;
use crate::sys;
use crate::wait::wait_until;

/// How often stop loops look again.
const STOP_POLL: Duration = Duration::from_millis(5);

/// How long processes get to vanish after SIGKILL.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(2);

/// Lines of each log quoted in error messages.
const TAIL_LINES: usize = 20;

/// `ip netns exec HUB BIN/bpmaster --listen 10.77.IDX.1:2223 --socket SOCK --nodes N
/// --node-timeout-ms T`.
pub(crate) fn master_command(
    bin_dir: &Path,
    hub_netns: &str,
    subnet: Subnet,
    socket: &Path,
    nodes: u32,
    node_timeout_ms: u64,
) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", hub_netns])
        .arg(bin_dir.join("bpmaster"))
        .arg("--listen")
        .arg(subnet.master_endpoint().to_string())
        .arg("--socket")
        .arg(socket)
        .arg("--nodes")
        .arg(nodes.to_string())
        .arg("--node-timeout-ms")
        .arg(node_timeout_ms.to_string());
    cmd
}

/// `ip netns exec NODE unshare --pid --fork --kill-child --mount --mount-proc --uts --ipc
/// --cgroup -- BIN/bpslave --master 10.77.IDX.1:2223 --node N --hostname nN`.
///
/// The spawned process becomes `unshare` (ip execs it), which stays as the launcher and
/// forks `bpslave` as PID 1 of a new PID namespace; `--kill-child` takes bpslave down with it.
pub(crate) fn slave_command(bin_dir: &Path, node_netns: &str, subnet: Subnet, node: u32) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node_netns, "unshare"])
        .args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--uts", "--ipc", "--cgroup", "--"])
        .arg(bin_dir.join("bpslave"))
        .arg("--master")
        .arg(subnet.master_endpoint().to_string())
        .arg("--node")
        .arg(node.to_string())
        .arg("--hostname")
        .arg(format!("n{node}"));
    cmd
}

/// Starts `cmd` in its own session with stdin from /dev/null and stdout and stderr appended to
/// `log`. The environment (RUST_LOG included) is inherited.
pub(crate) fn spawn_detached(mut cmd: Command, log: &Path) -> Result<Child, HarnessError> {
    let out = open_log(log)?;
    let err = out.try_clone().map_err(|e| HarnessError::io("duplicate the handle of", log, e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    sys::new_session(&mut cmd);
    cmd.spawn().map_err(|source| HarnessError::Spawn { command: command::describe(&cmd), source })
}

fn open_log(path: &Path) -> Result<File, HarnessError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| HarnessError::io("open log", path, e))
}

/// A process to stop.
#[derive(Debug, Clone)]
pub(crate) struct Victim {
    pub(crate) proc: ProcRef,
    /// For messages, e.g. "bpslave of node 2".
    pub(crate) what: String,
    /// Whether it gets SIGTERM first; if not, only the SIGKILL after the grace period (for
    /// launchers, which go when their child goes).
    pub(crate) term: bool,
}

/// Stops `victims`: SIGTERM to those marked so, up to `grace` for all to exit, SIGKILL to the
/// rest, up to [`KILL_WAIT`] more. `reap` is called on every round so the caller can collect its
/// own children's exit statuses. Returns one line per problem (survivors, failed signals).
pub(crate) fn stop(victims: &[Victim], grace: Duration, reap: &mut dyn FnMut()) -> Vec<String> {
    let mut problems = Vec::new();
    for victim in running(victims, reap).into_iter().filter(|v| v.term) {
        problems.extend(sys::signal_quietly(victim.proc.pid, Signal::SIGTERM as i32));
    }
    if all_gone(victims, Instant::now() + grace, reap) {
        return problems;
    }
    for victim in running(victims, reap) {
        problems.extend(sys::signal_quietly(victim.proc.pid, Signal::SIGKILL as i32));
    }
    if !all_gone(victims, Instant::now() + KILL_WAIT, reap) {
        for victim in running(victims, reap) {
            problems.push(format!("{} (pid {}) still runs after SIGKILL", victim.what, victim.proc.pid));
        }
    }
    problems
}

/// The victims still running, after reaping.
fn running<'a>(victims: &'a [Victim], reap: &mut dyn FnMut()) -> Vec<&'a Victim> {
    reap();
    victims.iter().filter(|v| v.proc.is_running()).collect()
}

/// Waits until no victim runs; false on timeout.
fn all_gone(victims: &[Victim], deadline: Instant, reap: &mut dyn FnMut()) -> bool {
    wait_until(deadline, STOP_POLL, || running(victims, reap).is_empty().then_some(())).is_some()
}

/// SIGKILLs plain pids (found in namespaces) and waits up to [`KILL_WAIT`] for them to go.
/// Returns one line per problem.
pub(crate) fn kill_pids(pids: &[(String, i32)], reap: &mut dyn FnMut()) -> Vec<String> {
    let victims: Vec<Victim> = pids
        .iter()
        .filter_map(|(ns, pid)| {
            Some(Victim { proc: ProcRef::of(*pid)?, what: format!("process in {ns}"), term: false })
        })
        .collect();
    stop(&victims, Duration::ZERO, reap)
}

/// The last lines of a log, or a note that it cannot be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if tail.is_empty() {
                "(empty)".to_owned()
            } else {
                tail.join("\n")
            }
        }
        Err(err) => format!("(cannot read: {err})"),
    }
}

/// The tails of several logs, each under a header, starting with a newline; for error messages.
pub(crate) fn format_logs(logs: &[&Path]) -> String {
    let mut out = String::new();
    for path in logs {
        if !fs::exists(path).unwrap_or(false) {
            continue;
        }
        out.push_str(&format!(
            "\n--- {} (last {TAIL_LINES} lines) ---\n{}",
            path.display(),
            log_tail(path, TAIL_LINES)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir::TestDir;

    #[test]
    fn commands() {
        let subnet = Subnet::new(2).expect("subnet");
        let m = master_command(
            Path::new("/b"),
            "bp-c-hub",
            subnet,
            Path::new("/run/bproc/clusters/c/master.sock"),
            4,
            3000,
        );
        assert_eq!(
            command::describe(&m),
            "ip netns exec bp-c-hub /b/bpmaster --listen 10.77.2.1:2223 \
             --socket /run/bproc/clusters/c/master.sock --nodes 4 --node-timeout-ms 3000"
        );
        let s = slave_command(Path::new("/b"), "bp-c-3", subnet, 3);
        assert_eq!(
            command::describe(&s),
            "ip netns exec bp-c-3 unshare --pid --fork --kill-child --mount --mount-proc --uts \
             --ipc --cgroup -- /b/bpslave --master 10.77.2.1:2223 --node 3 --hostname n3"
        );
    }

    #[test]
    fn detached_output_goes_to_the_log() {
        let tmp = TestDir::new("daemon");
        let log = tmp.path().join("x.log");
        fs::write(&log, "before\n").expect("write");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; read x || echo eof"]);
        let mut child = spawn_detached(cmd, &log).expect("spawn");
        assert!(child.wait().expect("wait").success());
        assert_eq!(log_tail(&log, 10), "before\nout\nerr\neof");
        assert_eq!(log_tail(&log, 2), "err\neof");
        assert!(format_logs(&[&log]).contains("x.log (last 20 lines) ---\nbefore"));
        assert!(format_logs(&[&tmp.path().join("none.log")]).is_empty());
    }

    #[test]
    fn stop_escalates_to_sigkill() {
        // A shell that ignores SIGTERM must still be gone after the grace period.
        let mut child =
            Command::new("sh").args(["-c", "trap '' TERM; while :; do sleep 0.05; done"]).spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        // Wait until the shell ignores SIGTERM (bit 15-1 of SigIgn) before stopping it.
        let ignores_term = || {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
            (mask & (1 << (Signal::SIGTERM as i32 - 1)) != 0).then_some(())
        };
        wait_until(Instant::now() + Duration::from_secs(5), STOP_POLL, ignores_term).expect("sh sets its trap");
        let victim = Victim { proc: ProcRef::of(pid).expect("running"), what: "stubborn sh".to_owned(), term: true };
        let start = Instant::now();
        let problems = stop(&[victim], Duration::from_millis(100), &mut || {
            let _ = child.try_wait();
        });
        assert!(problems.is_empty(), "{problems:?}");
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(!crate::procfs::is_running(pid));
    }

    #[test]
    fn stop_is_quick_when_sigterm_works() {
        let mut child = Command::new("sleep").arg("10").spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        let victim = Victim { proc: ProcRef::of(pid).expect("running"), what: "sleep".to_owned(), term: true };
        let start = Instant::now();
        let problems = stop(&[victim], Duration::from_secs(5), &mut || {
            let _ = child.try_wait();
        });
        assert!(problems.is_empty(), "{problems:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
