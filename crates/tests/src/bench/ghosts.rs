//! Ghosts (issue 4): signal latency through a ghost against a local kill, the memory a ghost
//! costs the master at 1,000 ghosts (unique set size) against a local `sleep`, and the time for
//! 1,000 ghosts to appear and to be reaped against 1,000 local `sleep`.
//!
//! Every process started here is held by a guard that SIGKILLs and reaps it (and its ghost)
//! on every path; every wait has a deadline, and waiting for an event polls with a short
//! interval until that deadline.

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::process::ExitStatusExt;
use vm_harness::Cluster;

use super::latency::{row, HEADER};
use super::report::Section;
use super::stats::{ms, ratio, Samples};
use super::sys::{lossy, wait_with_deadline, Watch};
use super::Config;

/// Longest wait for one handler line, one `bpstat` or one process to exit.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for all the ghosts to appear, or to be reaped.
const CROWD_TIMEOUT: Duration = Duration::from_secs(180);
/// How often to look again while waiting for an event.
const POLL: Duration = Duration::from_millis(10);
/// The bound on the unique set size of one ghost.
const USS_TARGET_KB: u64 = 200;

/// The remote (and local) program of the signal benchmark. It prints its PID, then blocks in a
/// `read` from a FIFO it holds open for reading and writing (so the read never ends, whatever
/// happens to stdin). dash runs a trap as soon as a signal interrupts the `read` (a `sleep`
/// loop would delay it by up to the sleep).
const HANDLER: &str = "exec 3<>\"$1\"; trap 'echo x' USR1; echo $$; while :; do read l <&3; done";

// ---------------------------------------------------------------------------------------------
// /proc probes

fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// The parent of `pid`, from /proc/PID/stat.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// Unique set size in KB: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup.
fn uss_kb(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let mut found = 0;
    let mut sum = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Private_Clean:").or_else(|| line.strip_prefix("Private_Dirty:")) {
            sum += rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()?;
            found += 1;
        }
    }
    (found == 2).then_some(sum)
}

/// Resident set size in KB (VmRSS).
fn rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse().ok())
}

fn open_fds(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Whether `pid` has exec'd the program whose file name is `name`.
fn exe_is(pid: i32, name: &str) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.file_name().is_some_and(|f| f == name))
}

/// The global PIDs of the remote processes the master lists (`bpstat -p --json`), under a
/// deadline; stdout is read while the watchdog guards the process (the list can outgrow a pipe).
fn remote_pids(c: &Cluster) -> Result<Vec<i32>> {
    let mut cmd = c.command("bpstat");
    cmd.args(["-p", "--json"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start bpstat")?;
    let watch = Watch::new(&child, STEP_TIMEOUT);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let read = child.stdout.take().map(|mut s| s.read_to_end(&mut out));
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut err);
    }
    let status = watch.wait(&mut child).context("bpstat -p --json")?;
    if let Some(r) = read {
        r.context("read bpstat's output")?;
    }
    if !status.success() {
        bail!("bpstat -p --json failed ({status}): {}", lossy(&err).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out).context("bpstat -p --json printed no JSON")?;
    let procs = v["processes"].as_array().ok_or_else(|| anyhow!("bpstat -p --json: no \"processes\""))?;
    procs
        .iter()
        .map(|p| p["pid"].as_i64().map(|n| n as i32).ok_or_else(|| anyhow!("a process without \"pid\": {p}")))
        .collect()
}

/// Polls `probe` every [`POLL`] until it gives `Some` or `deadline` passes (an error naming
/// `what` and the last state `probe` described).
fn poll_until<T>(what: &str, deadline: Instant, mut probe: impl FnMut(&mut String) -> Result<Option<T>>) -> Result<T> {
    let mut last = String::new();
    loop {
        if let Some(v) = probe(&mut last)? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what} ({last})");
        }
        std::thread::sleep(POLL);
    }
}

/// Sizes in KB and their order statistics (nearest rank).
#[derive(Default)]
struct Kb(Vec<u64>);

impl Kb {
    fn pct(&self, p: f64) -> u64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    fn median(&self) -> u64 {
        self.pct(50.0)
    }

    fn row(&self, what: &str, base: &Kb) -> Vec<String> {
        if self.0.is_empty() {
            let mut cells = vec![what.to_owned(), "0".into()];
            cells.resize(MEM_HEADER.len(), "–".into());
            return cells;
        }
        vec![
            what.to_owned(),
            self.0.len().to_string(),
            self.median().to_string(),
            self.pct(90.0).to_string(),
            self.pct(0.0).to_string(),
            self.pct(100.0).to_string(),
            format!("{:.2}x", self.median() as f64 / base.median().max(1) as f64),
        ]
    }
}

const MEM_HEADER: [&str; 7] =
    ["Process", "count", "median KB", "p90 KB", "min KB", "max KB", "median / local sleep (same measure)"];

// ---------------------------------------------------------------------------------------------
// 6. Signal latency

/// A FIFO in the temporary directory (which the nodes share), removed on drop.
struct Fifo(PathBuf);

impl Fifo {
    fn new() -> Result<Fifo> {
        let path = std::env::temp_dir().join(format!("bproc-bench-{}.fifo", std::process::id()));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", path.display()))?;
        Ok(Fifo(path))
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Lines from a child's stdout, each read under a deadline (poll, then read).
struct Lines {
    out: ChildStdout,
    buf: Vec<u8>,
}

impl Lines {
    fn next(&mut self, deadline: Instant) -> Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(lossy(&line[..i]));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no line within the deadline (have {:?})", lossy(&self.buf));
            }
            let mut pfd = libc::pollfd { fd: self.out.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let wait_ms = left.as_millis().clamp(1, 1000) as i32;
            // SAFETY: one valid pollfd, for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("poll");
            }
            if r == 0 {
                continue;
            }
            // Readable (or hung up): this read does not block.
            let mut chunk = [0u8; 4096];
            match self.out.read(&mut chunk) {
                Ok(0) => bail!("end of output (have {:?})", lossy(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("read"),
            }
        }
    }
}

/// The handler program running, locally or through bpsh: the PID to signal (the shell itself,
/// or its ghost) and its output. Killed and reaped on drop unless [`Handler::finish`] ran.
struct Handler {
    child: Child,
    lines: Lines,
    target: i32,
    done: bool,
}

impl Handler {
    fn start(mut cmd: Command, what: &str) -> Result<Handler> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut h = Handler { child, lines: Lines { out, buf: Vec::new() }, target: 0, done: false };
        let first = h.lines.next(Instant::now() + STEP_TIMEOUT).with_context(|| format!("{what}: its PID"))?;
        h.target = first.trim().parse().with_context(|| format!("{what} printed {first:?}, not its PID"))?;
        Ok(h)
    }

    /// SIGUSR1 to the target, and the time until the handler's line arrives.
    fn ping(&mut self) -> Result<Duration> {
        let start = Instant::now();
        if !kill(self.target, libc::SIGUSR1) {
            bail!("kill -USR1 {}: {}", self.target, std::io::Error::last_os_error());
        }
        let line = self.lines.next(start + STEP_TIMEOUT)?;
        let took = start.elapsed();
        if line != "x" {
            bail!("the handler printed {line:?}, not \"x\"");
        }
        Ok(took)
    }

    /// SIGTERM to the target; the child must die of it.
    fn finish(mut self) -> Result<ExitStatus> {
        self.done = true;
        kill(self.target, libc::SIGTERM);
        wait_with_deadline(&mut self.child, STEP_TIMEOUT)
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let pid = self.child.id() as i32;
        // The ghost, while it is still bpsh's child (so not a reused PID).
        if self.target > 0 && self.target != pid && ppid(self.target) == Some(pid) {
            kill(self.target, libc::SIGKILL);
        }
        kill(pid, libc::SIGKILL);
        let _ = wait_with_deadline(&mut self.child, STEP_TIMEOUT);
    }
}

/// Benchmark 6: SIGUSR1 to a ghost until the remote trap's output arrives, against SIGUSR1 to
/// the same shell run locally; each after an idle gap and right after the previous signal's
/// output. `c` is a 1-node cluster.
pub fn signal_latency(c: &Cluster, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "6. Signal latency",
        "none in the issue beyond measuring it side by side: `kill -USR1` of a ghost until the \
         remote handler runs, against `kill -USR1` of a local process until its handler runs.",
        &HEADER,
    );
    let started = Instant::now();
    let mut s: [Samples; 4] = Default::default();
    let result = signal_rounds(c, cfg.signal, &mut s);
    let [l_idle, r_idle, l_b2b, r_b2b] = &s;
    let gap = SIGNAL_GAP.as_millis();
    sec.row(row(&format!("local: `kill -USR1 SHELL` → trap output read; {gap} ms idle before"), l_idle, l_idle));
    sec.row(row(
        &format!("`bpsh 0`: `kill -USR1 GHOST` → remote trap output read; {gap} ms idle before"),
        r_idle,
        l_idle,
    ));
    sec.row(row("local, right after the previous signal's output", l_b2b, l_b2b));
    sec.row(row("`bpsh 0`, right after the previous signal's output", r_b2b, l_b2b));
    match result {
        Ok(()) => sec.note(format!(
            "A signal to a ghost takes {} ms to the remote handler's output after {gap} ms idle \
             ({:.1}x local, {} ms), but {} ms when it follows the previous signal's output at \
             once ({:.1}x local).",
            ms(r_idle.median()),
            ratio(r_idle.median(), l_idle.median()),
            ms(l_idle.median()),
            ms(r_b2b.median()),
            ratio(r_b2b.median(), l_b2b.median()),
        )),
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.note(format!(
        "Measured: `sh -c SCRIPT sh FIFO` with SCRIPT = `{HANDLER}`, run locally and as \
         `bpsh 0 sh -c SCRIPT sh FIFO` on a \
         {}-node cluster. The time runs from kill(2) of the shell's PID (for bpsh, the ghost's \
         PID, which the remote shell prints as `$$`) until the bench has read the trap's line \
         `x` from the shell's (or bpsh's) stdout, polled in the same thread; so the remote \
         figure includes the way back (the remote stdout through bpslave, bpmaster and bpsh). \
         The shell waits in a `read` from a FIFO it holds open both ways, which dash interrupts \
         to run the trap at once. One round: {gap} ms idle, then a local and a ghost signal \
         (the \"idle\" rows), then at once another ghost and another local signal; 3 untimed \
         rounds first. Ratios are against the local row of the same kind.",
        c.nodes()
    ));
    sec.took = started.elapsed();
    sec
}

/// Idle time before the first signals of a signal-latency round.
const SIGNAL_GAP: Duration = Duration::from_millis(60);

/// `out`: local and ghost after the gap, then local and ghost right after.
fn signal_rounds(c: &Cluster, rounds: usize, out: &mut [Samples; 4]) -> Result<()> {
    let fifo = Fifo::new()?;
    let arg = fifo.0.to_string_lossy().into_owned();
    let mut lcmd = Command::new("sh");
    lcmd.args(["-c", HANDLER, "sh", &arg]);
    let mut l = Handler::start(lcmd, "local sh")?;
    if l.target != l.child.id() as i32 {
        bail!("the local shell printed PID {}, but it is {}", l.target, l.child.id());
    }
    let mut rcmd = c.command("bpsh");
    rcmd.args(["0", "sh", "-c", HANDLER, "sh", &arg]);
    let mut r = Handler::start(rcmd, "bpsh 0 sh")?;
    let bpsh = r.child.id() as i32;
    if ppid(r.target) != Some(bpsh) {
        bail!("the remote shell's PID {} is not a ghost under bpsh {bpsh}", r.target);
    }
    for i in 0..rounds + 3 {
        // A deliberate idle gap (part of what is measured), not a wait for an event.
        std::thread::sleep(SIGNAL_GAP);
        let li = l.ping().context("local")?;
        let ri = r.ping().context("through the ghost")?;
        let rb = r.ping().context("through the ghost")?;
        let lb = l.ping().context("local")?;
        if i >= 3 {
            for (s, d) in out.iter_mut().zip([li, ri, lb, rb]) {
                s.push(d);
            }
        }
    }
    for (h, what) in [(l, "the local shell"), (r, "bpsh")] {
        let status = h.finish().with_context(|| format!("{what} after SIGTERM"))?;
        if status.signal() != Some(libc::SIGTERM) {
            bail!("{what} ended with {status} after SIGTERM, not killed by it");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7 and 8. A crowd of ghosts: memory, appearing, reaping

/// Processes started by one crowd round: SIGKILLed (ghosts first) and reaped on drop.
#[derive(Default)]
struct Crowd {
    children: Vec<Child>,
}

impl Crowd {
    fn pids(&self) -> HashSet<i32> {
        self.children.iter().map(|c| c.id() as i32).collect()
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        // Ghosts still under one of our bpsh (so no reused PIDs): every child's children.
        for c in &self.children {
            for g in super::sys::descendants(c.id() as i32) {
                kill(g, libc::SIGKILL);
            }
        }
        for c in &self.children {
            kill(c.id() as i32, libc::SIGKILL);
        }
        for mut c in self.children.drain(..) {
            let _ = wait_with_deadline(&mut c, STEP_TIMEOUT);
        }
    }
}

/// Resident memory and open files of bpmaster and every bpslave.
#[derive(Default, Clone)]
struct Daemons(Vec<(String, Option<u64>, Option<usize>)>);

impl Daemons {
    fn take(c: &Cluster) -> Daemons {
        let mut v = vec![("bpmaster".to_owned(), c.master_pid())];
        v.extend((0..c.nodes()).map(|n| (format!("bpslave {n}"), c.slave_pid(n))));
        Daemons(v.into_iter().map(|(name, pid)| (name, pid.and_then(rss_kb), pid.and_then(open_fds))).collect())
    }
}

#[derive(Default)]
struct CrowdFigures {
    ghost_uss: Kb,
    bpsh_uss: Kb,
    local_uss: Kb,
    ghost_rss: Kb,
    local_rss: Kb,
    appear: Samples,
    reap: Samples,
    local_appear: Samples,
    local_reap: Samples,
    spawn_loop: Samples,
    /// Ghosts found under our bpsh, per round.
    ghosts_seen: Vec<usize>,
    /// bpsh that died of SIGTERM after their ghost got it, of how many.
    term_ok: usize,
    term_all: usize,
    before: Daemons,
    peak: Daemons,
    /// After each round's crowds were reaped.
    after: Vec<Daemons>,
}

/// Benchmarks 7 and 8: `cfg.ghosts` ghosts at once over every node of `c`, with their memory
/// and the time they take to appear and to be reaped, against as many local `sleep`.
pub fn crowd(c: &Cluster, cfg: &Config) -> (Section, Section) {
    let g = cfg.ghosts;
    let mut mem = Section::new(
        "7. Ghost memory",
        &format!("unique set size (USS) per ghost at most {USS_TARGET_KB} KB with 1,000 ghosts (issue 4)."),
        &MEM_HEADER,
    );
    let mut times = Section::new(
        &format!("8. {g} ghosts appear and are reaped"),
        "none in the issue beyond measuring it side by side: the time for 1,000 ghosts to \
         appear and to be reaped, against as many local processes.",
        &["What", "runs", "median s", "min s", "max s", "median / local"],
    );
    let started = Instant::now();
    let mut f = CrowdFigures::default();
    let result = crowd_rounds(c, cfg, &mut f);
    mem.row(f.ghost_uss.row("ghost (bpghost) of `bpsh N sleep 300`, USS", &f.local_uss));
    mem.row(f.bpsh_uss.row("its `bpsh`, USS", &f.local_uss));
    mem.row(f.local_uss.row("local `sleep 300`, USS", &f.local_uss));
    mem.row(f.ghost_rss.row("ghost, RSS (shared pages counted in full)", &f.local_rss));
    mem.row(f.local_rss.row("local `sleep 300`, RSS", &f.local_rss));
    let secs = |s: &Samples, base: &Samples, what: &str| {
        if s.runs() == 0 {
            return vec![what.to_owned(), "0".into(), "–".into(), "–".into(), "–".into(), "–".into()];
        }
        let s3 = |d: Duration| format!("{:.3}", d.as_secs_f64());
        vec![
            what.to_owned(),
            s.runs().to_string(),
            s3(s.median()),
            s3(s.min()),
            s3(s.max()),
            format!("{:.2}x", ratio(s.median(), base.median())),
        ]
    };
    times.row(secs(
        &f.appear,
        &f.local_appear,
        &format!("appear: start {g} `bpsh N sleep 300` → `bpstat -p` lists {g}"),
    ));
    times.row(secs(&f.local_appear, &f.local_appear, &format!("appear: start {g} local `sleep 300` → all exec'd")));
    times.row(secs(
        &f.reap,
        &f.local_reap,
        &format!("reap: `kill -TERM` each ghost → {g} bpsh reaped, `bpstat -p` empty"),
    ));
    times.row(secs(&f.local_reap, &f.local_reap, &format!("reap: `kill -TERM` each local sleep → {g} reaped")));
    match &result {
        Ok(()) => {
            let med = f.ghost_uss.median();
            mem.verdict(
                med <= USS_TARGET_KB && g >= 1000,
                format!(
                    "ghost USS median {med} KB (p90 {}, max {}) at {g} ghosts; target at most \
                     {USS_TARGET_KB} KB at 1,000 ghosts{}.",
                    f.ghost_uss.pct(90.0),
                    f.ghost_uss.pct(100.0),
                    if g < 1000 { " (quick mode: too few ghosts to judge)" } else { "" }
                ),
            );
            times.note(format!(
                "Every round found {} ghosts under the bpsh processes; {} of {} bpsh died of \
                 SIGTERM after `kill -TERM` of their ghost, as a local parent would see.",
                f.ghosts_seen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                f.term_ok,
                f.term_all
            ));
        }
        Err(e) => {
            mem.error = Some(format!("{e:#}"));
            times.error = Some(format!("{e:#}"));
        }
    }
    mem.note(format!(
        "USS = Private_Clean + Private_Dirty of /proc/PID/smaps_rollup: what the process alone \
         costs, counting none of the pages it shares (the bpghost binary's text, libc). Each \
         round starts {g} `bpsh N sleep 300` at once, N cycling over the {} nodes (one bpsh \
         and one ghost per remote process), waits until `bpstat -p --json` lists {g} and \
         every listed PID is a bpghost under one of those bpsh, then reads every ghost and \
         every bpsh; the local side starts {g} `sleep 300` the same way. Samples pool {} \
         round(s). Per remote process the master machine holds one ghost and, run this way, \
         one bpsh: {} KB of USS together (medians), against {} KB for a local process.",
        c.nodes(),
        cfg.crowd_runs,
        f.ghost_uss.median() + f.bpsh_uss.median(),
        f.local_uss.median()
    ));
    mem.note(daemon_table(&f, g));
    times.note(format!(
        "Appear: from the first spawn until `bpstat -p --json` lists all {g} (polled every \
         {} ms; each poll is one bpstat run); spawning the {g} bpsh alone took {} s (median). \
         Local: from the first spawn until every /proc/PID/exe is `sleep`. Reap: from the first \
         `kill -TERM` until every bpsh has been waited for and `bpstat -p` is empty; local: \
         until every sleep has been waited for. One round = the bproc crowd, then the local \
         one; {} round(s).",
        POLL.as_millis(),
        format_args!("{:.3}", f.spawn_loop.median().as_secs_f64()),
        cfg.crowd_runs
    ));
    times.note("Sections 7 and 8 come from the same rounds (so both give the same time).");
    mem.took = started.elapsed();
    times.took = mem.took;
    (mem, times)
}

fn daemon_table(f: &CrowdFigures, g: usize) -> String {
    let cell = |d: &Daemons, i: usize| {
        d.0.get(i).map_or_else(
            || "?".to_owned(),
            |(_, rss, fds)| {
                format!(
                    "{} KB, {} fds",
                    rss.map_or_else(|| "?".into(), |r| r.to_string()),
                    fds.map_or_else(|| "?".into(), |n| n.to_string())
                )
            },
        )
    };
    let afters: String = (1..=f.after.len()).map(|r| format!(" after round {r} |")).collect();
    let mut t = format!(
        "The daemons' resident memory and open files before the first round, with {g} ghosts \
         (last round), and after each round's ghosts were reaped (growth that stops after the \
         first round is the allocator keeping its high-water mark; growth in every round would \
         be a leak):\n\n| Daemon | before | with {g} ghosts |{afters}\n|---|---|---|{}\n",
        "---|".repeat(f.after.len())
    );
    for (i, (name, _, _)) in f.before.0.iter().enumerate() {
        let after: String = f.after.iter().map(|d| format!(" {} |", cell(d, i))).collect();
        t.push_str(&format!("| {name} | {} | {} |{after}\n", cell(&f.before, i), cell(&f.peak, i)));
    }
    t.pop();
    t
}

fn crowd_rounds(c: &Cluster, cfg: &Config, f: &mut CrowdFigures) -> Result<()> {
    f.before = Daemons::take(c);
    if !remote_pids(c)?.is_empty() {
        bail!("the cluster already has remote processes");
    }
    for round in 0..cfg.crowd_runs {
        let last = round + 1 == cfg.crowd_runs;
        bproc_round(c, cfg.ghosts, last, f).with_context(|| format!("bproc round {}", round + 1))?;
        local_round(cfg.ghosts, f).with_context(|| format!("local round {}", round + 1))?;
        // The master lists nothing any more (checked at the end of the bproc round).
        f.after.push(Daemons::take(c));
    }
    Ok(())
}

fn bproc_round(c: &Cluster, g: usize, last: bool, f: &mut CrowdFigures) -> Result<()> {
    let mut crowd = Crowd::default();
    let start = Instant::now();
    for i in 0..g {
        let node = (i % c.nodes() as usize).to_string();
        let mut cmd = c.command("bpsh");
        cmd.args([node.as_str(), "sleep", "300"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("cannot start bpsh number {} of {g}", i + 1))?;
        crowd.children.push(child);
    }
    f.spawn_loop.push(start.elapsed());
    let deadline = start + CROWD_TIMEOUT;
    let pids = poll_until(&format!("bpstat -p to list {g} processes"), deadline, |last| {
        let pids = remote_pids(c)?;
        *last = format!("{} listed", pids.len());
        Ok((pids.len() >= g).then_some(pids))
    })?;
    f.appear.push(start.elapsed());
    if pids.len() != g {
        bail!("bpstat -p lists {} processes, {g} expected", pids.len());
    }

    // Every listed PID is a bpghost (exec done) under one of our bpsh.
    let ours = crowd.pids();
    poll_until("every listed PID to be a bpghost under our bpsh", Instant::now() + CROWD_TIMEOUT, |last| {
        let bad: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&p| !(ppid(p).is_some_and(|pp| ours.contains(&pp)) && exe_is(p, "bpghost")))
            .collect();
        *last = format!("{} not yet, e.g. {:?}", bad.len(), &bad[..bad.len().min(5)]);
        Ok(bad.is_empty().then_some(()))
    })?;
    f.ghosts_seen.push(pids.len());
    for &p in &pids {
        f.ghost_uss.0.push(uss_kb(p).ok_or_else(|| anyhow!("no smaps_rollup for ghost {p}"))?);
        f.ghost_rss.0.push(rss_kb(p).ok_or_else(|| anyhow!("no VmRSS for ghost {p}"))?);
    }
    for &p in &ours {
        f.bpsh_uss.0.push(uss_kb(p).ok_or_else(|| anyhow!("no smaps_rollup for bpsh {p}"))?);
    }
    if last {
        f.peak = Daemons::take(c);
    }

    // Reap: SIGTERM to every ghost, then wait for every bpsh and for the master to forget them.
    let start = Instant::now();
    let deadline = start + CROWD_TIMEOUT;
    for &p in &pids {
        if !kill(p, libc::SIGTERM) {
            bail!("kill -TERM {p}: {}", std::io::Error::last_os_error());
        }
    }
    while let Some(mut child) = crowd.children.pop() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let status = match wait_with_deadline(&mut child, left) {
            Ok(s) => s,
            Err(e) => {
                crowd.children.push(child);
                return Err(e).context("waiting for a bpsh after kill -TERM of its ghost");
            }
        };
        f.term_all += 1;
        if status.signal() == Some(libc::SIGTERM) {
            f.term_ok += 1;
        }
    }
    poll_until("bpstat -p to list nothing", deadline, |last| {
        let n = remote_pids(c)?.len();
        *last = format!("{n} still listed");
        Ok((n == 0).then_some(()))
    })?;
    f.reap.push(start.elapsed());
    Ok(())
}

fn local_round(g: usize, f: &mut CrowdFigures) -> Result<()> {
    let mut crowd = Crowd::default();
    let start = Instant::now();
    for i in 0..g {
        let child = Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start sleep number {} of {g}", i + 1))?;
        crowd.children.push(child);
    }
    let pids: Vec<i32> = crowd.children.iter().map(|c| c.id() as i32).collect();
    poll_until(&format!("{g} local sleeps to exec"), start + CROWD_TIMEOUT, |last| {
        let n = pids.iter().filter(|&&p| !exe_is(p, "sleep")).count();
        *last = format!("{n} not yet");
        Ok((n == 0).then_some(()))
    })?;
    f.local_appear.push(start.elapsed());
    for &p in &pids {
        f.local_uss.0.push(uss_kb(p).ok_or_else(|| anyhow!("no smaps_rollup for sleep {p}"))?);
        f.local_rss.0.push(rss_kb(p).ok_or_else(|| anyhow!("no VmRSS for sleep {p}"))?);
    }
    let start = Instant::now();
    let deadline = start + CROWD_TIMEOUT;
    for &p in &pids {
        kill(p, libc::SIGTERM);
    }
    while let Some(mut child) = crowd.children.pop() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if let Err(e) = wait_with_deadline(&mut child, left) {
            crowd.children.push(child);
            return Err(e).context("waiting for a local sleep after kill -TERM");
        }
    }
    f.local_reap.push(start.elapsed());
    Ok(())
}

/// Raises this process's soft limit on open files to the hard limit: bpmaster, which the
/// cluster starts from here, holds one connection per bpsh, and 1,000 bpsh at once would not
/// fit in the usual soft limit of 1024. Returns the limits (soft before, soft now).
pub fn raise_nofile() -> Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit RLIMIT_NOFILE")?;
    }
    Ok((soft, hard))
}
