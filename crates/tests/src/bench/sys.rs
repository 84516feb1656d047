//! Process plumbing for the benchmarks: timing a command, a watchdog that kills a child past its
//! deadline (timed waits must block, not poll, so the deadline is enforced from outside),
//! running code inside a network namespace, and killing a process tree.

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// How often the watchdog looks at deadlines.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// A child being waited for: its pid, the instant after which the watchdog SIGKILLs it, and
/// whether it did.
struct Watched {
    pid: u32,
    deadline: Instant,
    fired: bool,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
static WATCHDOG: Once = Once::new();

fn watched() -> std::sync::MutexGuard<'static, Vec<Watched>> {
    WATCHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child under the watchdog: killed once `timeout` passes without [`Watch::extender`] being
/// called (or at all, for a plain deadline). Timed waits block instead of polling, so the
/// deadline is enforced from outside.
#[derive(Debug)]
pub struct Watch {
    pid: u32,
    timeout: Duration,
}

impl Watch {
    pub fn new(child: &Child, timeout: Duration) -> Watch {
        WATCHDOG.call_once(|| {
            std::thread::spawn(|| loop {
                std::thread::sleep(WATCH_INTERVAL);
                let now = Instant::now();
                for w in watched().iter_mut().filter(|w| w.deadline <= now && !w.fired) {
                    w.fired = true;
                    // SAFETY: kill takes plain integers; the pid is our child, not yet reaped
                    // (`Watch::wait` unregisters it before reaping it).
                    unsafe { libc::kill(w.pid as i32, libc::SIGKILL) };
                }
            });
        });
        let pid = child.id();
        watched().push(Watched { pid, deadline: Instant::now() + timeout, fired: false });
        Watch { pid, timeout }
    }

    /// A function that restarts the countdown (call it on progress), usable from any thread.
    pub fn extender(&self) -> impl Fn() + Send + 'static {
        let (pid, timeout) = (self.pid, self.timeout);
        move || {
            if let Some(w) = watched().iter_mut().find(|w| w.pid == pid) {
                w.deadline = Instant::now() + timeout;
            }
        }
    }

    /// Waits for `child` (blocking, so the timing is exact). A child the watchdog killed is an
    /// error.
    pub fn wait(self, child: &mut Child) -> Result<ExitStatus> {
        // Wait without reaping, unregister, then reap: the watchdog never sees a reused pid.
        let pid = Pid::from_raw(self.pid as i32);
        loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("waitid for a child"),
                Ok(_) => break,
            }
        }
        let fired = {
            let mut list = watched();
            let fired = list.iter().any(|w| w.pid == self.pid && w.fired);
            list.retain(|w| w.pid != self.pid);
            fired
        };
        let status = child.wait().context("wait for a child")?;
        if fired {
            bail!("made no progress for {:?}: killed ({status})", self.timeout);
        }
        Ok(status)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        watched().retain(|w| w.pid != self.pid);
    }
}

/// Waits for `child`; the watchdog kills it after `timeout`, which is then an error.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    Watch::new(child, timeout).wait(child)
}

/// Runs `cmd` once with stdin, stdout and stderr on /dev/null and returns how long it took from
/// spawn to exit. A failure is run once more with output captured, to quote it.
pub fn time_run(cmd: &mut Command, timeout: Duration) -> Result<Duration> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let status = wait_with_deadline(&mut child, timeout).with_context(|| format!("{cmd:?}"))?;
    let took = start.elapsed();
    if !status.success() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let again = cmd.output().map(|o| format!("stdout {:?}, stderr {:?}", lossy(&o.stdout), lossy(&o.stderr)));
        bail!("{cmd:?} failed ({status}); run again: {}", again.unwrap_or_else(|e| e.to_string()));
    }
    Ok(took)
}

/// Runs `cmd` to completion, output captured, and fails unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    cmd.stdin(Stdio::null());
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, lossy(&out.stderr).trim());
    }
    Ok(lossy(&out.stdout))
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads `r` to its end into a reused buffer, counting bytes (the data is dropped) and calling
/// `progress` after each read.
pub fn drain(mut r: impl Read, progress: impl Fn()) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total += n as u64;
                progress();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Runs `f` on a new thread that first joins the network namespace `/run/netns/NETNS`; every
/// process that thread spawns starts in that namespace (without an `ip netns exec` in between).
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        let thread = s.spawn(|| {
            let ns = File::open(&path).with_context(|| format!("open {path}"))?;
            setns(&ns, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {path}"))?;
            f()
        });
        thread.join().map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            anyhow!("the thread in network namespace {netns} panicked: {msg}")
        })?
    })
}

/// Every descendant of `pid` (children first-level first), from /proc/PID/task/*/children.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// SIGKILLs `pid`'s descendants and then `pid` itself (errors ignored: they may be gone).
pub fn kill_tree(pid: i32) {
    for p in descendants(pid).into_iter().chain([pid]) {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

/// Whether `pid` runs the program whose command name (`/proc/PID/comm`) is `comm`.
pub fn runs(pid: i32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
}

/// Writes `bytes` zero bytes to `w` in 1 MiB chunks, calling `progress` after each.
pub fn write_zeros(mut w: impl Write, bytes: u64, progress: impl Fn()) -> std::io::Result<()> {
    let buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])?;
        left -= n as u64;
        progress();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_kills_a_stalled_child_and_spares_others() {
        let mut slow = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let started = Instant::now();
        let err = wait_with_deadline(&mut slow, Duration::from_millis(200)).expect_err("killed");
        assert!(err.to_string().contains("no progress"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let took = time_run(&mut Command::new("true"), Duration::from_secs(10)).expect("true runs");
        assert!(took < Duration::from_secs(10));
        assert!(time_run(&mut Command::new("false"), Duration::from_secs(10)).is_err());
    }

    #[test]
    fn extender_keeps_a_busy_child_alive() {
        let mut child = Command::new("sleep").arg("0.6").spawn().expect("spawn sleep");
        let watch = Watch::new(&child, Duration::from_millis(400));
        let extend = watch.extender();
        let ticker = std::thread::spawn(move || {
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(100));
                extend();
            }
        });
        assert!(watch.wait(&mut child).expect("not killed").success());
        ticker.join().expect("ticker");
    }
}
