//! Benchmark 9: rfork round trip (rfork, the child exits, the parent reaps it) of processes of
//! several sizes, against a local fork() of the same process and against CRIU's own command line
//! (dump, then restore into a new PID namespace), with the image throughput it implies.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vm_harness::Cluster;

use super::report::Section;
use super::stats::{mb_per_s, ms, ratio, Samples};
use super::Config;

const CRIU: &str = "/usr/local/sbin/criu";

/// Runs `bproc-rfork-rs ARGS...` on `c`, which prints `run MICROS` per run; expects `runs`.
fn rfork_rs_runs(c: &Cluster, args: &[String], runs: usize) -> Result<Samples> {
    let out = Command::new(c.bin("bproc-rfork-rs"))
        .args(args)
        .env("BPROC_SOCKET", c.socket_path())
        .env("BPROC_GHOST_BIN", c.bin("bpghost"))
        .stdin(Stdio::null())
        .output()
        .context("run bproc-rfork-rs")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Samples::new();
    for micros in text.lines().filter_map(|l| l.strip_prefix("run ")?.parse::<u64>().ok()) {
        s.push(Duration::from_micros(micros));
    }
    if !out.status.success() || s.runs() != runs {
        bail!("bproc-rfork-rs {}: {text} {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(s)
}

/// `bproc-rfork-rs bench MB NODE RUNS`: rfork round trips of a process of `mb` MiB.
fn helper_runs(c: &Cluster, mb: usize, node: i32, runs: usize) -> Result<Samples> {
    rfork_rs_runs(c, &["bench".into(), mb.to_string(), node.to_string(), runs.to_string()], runs)
}

/// One CRIU command-line round trip: `criu dump` of a process holding `mb` megabytes, then
/// `criu restore` of it into a new PID namespace (ended at once with the namespace).
fn criu_cli_once(c: &Cluster, mb: usize, dir: &Path) -> Result<Duration> {
    let images = dir.join("images");
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir_all(&images)?;
    let log = dir.join("hold.out");
    let mut cmd = Command::new(c.bin("bproc-rfork-rs"));
    cmd.args(["hold", &mb.to_string()]).stdin(Stdio::null()).stdout(std::fs::File::create(&log)?).stderr(Stdio::null());
    // Only stdio, and a session of its own: CRIU's CLI could not dump
    // whatever else the bench inherited (a CI runner's sockets), nor a
    // process in session 0 (a CI runner may start the bench in it).
    // SAFETY: close_range and setsid are plain system calls, safe between
    // fork and exec; a child of a fork never leads a group, so setsid works.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            libc::setsid();
            Ok(())
        });
    }
    let mut hold = cmd.spawn().context("start the process to dump")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log)?.starts_with("ready") {
        if Instant::now() > deadline {
            let _ = hold.kill();
            bail!("the process to dump never got ready");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    let dump = Command::new(CRIU)
        .arg("dump")
        .arg("-t")
        .arg(hold.id().to_string())
        .arg("-D")
        .arg(&images)
        .args(["--shell-job", "-o", "dump.log"])
        .status()?;
    let _ = hold.kill();
    let _ = hold.wait();
    if !dump.success() {
        bail!("criu dump failed (see {})", images.join("dump.log").display());
    }
    let restore = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", CRIU, "restore", "-D"])
        .arg(&images)
        .args(["--shell-job", "-d", "-o", "restore.log"])
        .status()?;
    let took = t.elapsed();
    if !restore.success() {
        bail!("criu restore failed (see {})", images.join("restore.log").display());
    }
    Ok(took)
}

fn criu_cli(c: &Cluster, mb: usize, runs: usize) -> Result<Samples> {
    let dir = std::env::temp_dir().join(format!("bproc-bench-criu-{}", std::process::id()));
    let mut s = Samples::new();
    let result = (0..runs).try_for_each(|_| criu_cli_once(c, mb, &dir).map(|d| s.push(d)));
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| s)
}

fn cell(s: &Samples) -> String {
    format!("{} ms ({} runs, {}-{})", ms(s.median()), s.runs(), ms(s.min()), ms(s.max()))
}

pub fn rfork_round_trip(c: &Cluster, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "9. rfork round trip and image throughput",
        "rfork round trip (rfork, the child exits, the parent reaps it) of 1 MB, 100 MB and 1 GiB \
         processes side by side with a local fork() of the same process and with CRIU's own CLI \
         dump + restore of it; 1 GiB migrated at 1 GB/s or more.",
        &["process", "local fork()", "rfork to node 0", "CRIU CLI dump + restore", "rfork / fork", "rfork throughput"],
    );
    let started = Instant::now();
    let mut biggest = None;
    for &(mb, runs, cli_runs) in cfg.migrate {
        let measured = (|| -> Result<(Samples, Samples, Samples)> {
            Ok((helper_runs(c, mb, -1, runs)?, helper_runs(c, mb, 0, runs)?, criu_cli(c, mb, cli_runs)?))
        })();
        match measured {
            Ok((local, remote, cli)) => {
                let bytes = (mb as u64) << 20;
                let rate = mb_per_s(bytes, remote.median());
                sec.row(vec![
                    format!("{mb} MiB"),
                    cell(&local),
                    cell(&remote),
                    cell(&cli),
                    format!("{:.0}x", ratio(remote.median(), local.median())),
                    format!("{rate:.0} MB/s"),
                ]);
                biggest = Some((mb, rate));
            }
            Err(e) => {
                sec.error = Some(format!("{mb} MiB: {e:#}"));
                break;
            }
        }
    }
    if let Some((mb, rate)) = biggest {
        sec.verdict(
            rate >= 1000.0,
            format!("{mb} MiB migrated (rfork round trip) at {rate:.0} MB/s; target 1,000 MB/s"),
        );
    }
    sec.note(
        "Measured with `bproc-rfork-rs bench MB NODE RUNS` on a 4-node cluster: the process \
         writes every page of its buffer, then each run times rfork(NODE) until waitpid() has the \
         child's exit (NODE -1 is a local fork). The rfork path: CRIU dump on the master, its \
         pages streaming through a FIFO (no copy on the master) to the node's slave while it \
         runs, in 1 MiB chunks over the master's Unix image socket (same host), into the \
         node's tmpfs; then CRIU restore there, and the child's ghost attaches and reports the \
         exit. The CRIU CLI \
         column dumps the same process to tmpfs and restores it into a new PID namespace on the \
         same machine, with no transport. Throughput is the process size over the rfork round \
         trip.",
    );
    sec.took = started.elapsed();
    sec
}

/// `bproc-rfork-rs vexecmove` of `true` to `nodes` nodes × `per_node` processes: started and
/// reaped (wall time of the whole call, reaping included).
fn vexecmove_once(c: &Cluster, nodes: u32, per_node: usize) -> Result<Duration> {
    let mut args = vec!["vexecmove-true".to_string()];
    for _ in 0..per_node {
        args.extend((0..nodes).map(|n| n.to_string()));
    }
    let t = Instant::now();
    let out = Command::new(c.bin("bproc-rfork-rs"))
        .args(&args)
        .env("BPROC_SOCKET", c.socket_path())
        .env("BPROC_GHOST_BIN", c.bin("bpghost"))
        .stdin(Stdio::null())
        .output()
        .context("run bproc-rfork-rs vexecmove-true")?;
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let total = nodes as usize * per_node;
    if !out.status.success() || !text.contains(&format!("reaped {total} of {total}")) {
        bail!("vexecmove of {total}: {}", text.lines().last().unwrap_or_default());
    }
    Ok(took)
}

/// Local equivalent: fork+exec of `true` `count` times at once, then reap all.
fn local_spawn_all(count: usize) -> Result<Duration> {
    let t = Instant::now();
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        children.push(Command::new("true").stdin(Stdio::null()).spawn().context("spawn true")?);
    }
    for mut child in children {
        child.wait()?;
    }
    Ok(t.elapsed())
}

pub fn vexecmove_at_scale(c: &Cluster, cfg: &Config) -> Section {
    let (nodes, per_node) = cfg.vexecmove;
    let total = nodes as usize * per_node;
    let mut sec = Section::new(
        "10. vexecmove at scale",
        "vexecmove of `true` to 16 nodes with 1,000 processes each: 16,000 processes started and \
         reaped in under 3.3 s (BProc's figure for 15,000 on 125 nodes).",
        &["what", "runs", "median", "min-max"],
    );
    let started = Instant::now();
    let mut remote = Samples::new();
    let mut local = Samples::new();
    let result = (0..cfg.crowd_runs).try_for_each(|_| -> Result<()> {
        remote.push(vexecmove_once(c, nodes, per_node)?);
        local.push(local_spawn_all(total)?);
        Ok(())
    });
    for (what, s) in [
        (format!("`bproc_vexecmove` of `true`, {nodes} nodes × {per_node}, started and reaped"), &remote),
        (format!("local: {total} × fork+exec of `true` at once, then reaped"), &local),
    ] {
        if s.runs() > 0 {
            sec.row(vec![
                what,
                s.runs().to_string(),
                format!("{} ms", ms(s.median())),
                format!("{}-{} ms", ms(s.min()), ms(s.max())),
            ]);
        }
    }
    match result {
        Ok(()) => {
            let full = nodes == 16 && per_node == 1000;
            let secs = remote.median().as_secs_f64();
            sec.verdict(
                full && secs < 3.3,
                format!(
                    "{total} processes on {nodes} nodes in {secs:.2} s{}",
                    if full { "" } else { " (a reduced run)" }
                ),
            );
            sec.note(format!(
                "One process (`bproc-rfork-rs vexecmove-true`) calls libbproc's vexecmove with the \
                 node list repeated {per_node} times, then waits for every child. Each child execs \
                 a ghost that starts `true` on its node with the child's PID, relays its end and \
                 exits with its status; so every process costs a ghost on the front end, a \
                 connection to the master and a spawn on the node. {:.1}x the local figure.",
                ratio(remote.median(), local.median())
            ));
        }
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.took = started.elapsed();
    sec
}

/// `bproc-rfork-rs vbench MB RUNS WAY NODE...`.
fn vbench_runs(c: &Cluster, mb: usize, runs: usize, way: &str, nodes: &[u32]) -> Result<Samples> {
    let mut args = vec!["vbench".to_string(), mb.to_string(), runs.to_string(), way.to_string()];
    args.extend(nodes.iter().map(u32::to_string));
    rfork_rs_runs(c, &args, runs)
}

/// vrfork (one checkpoint, passed on from node to node) against one rfork
/// per node and against local forks, on up to 8 nodes of `c` (`nodes` up).
pub fn vrfork_tree(c: &Cluster, nodes: u32, cfg: &Config) -> Section {
    let (mb, runs) = cfg.vrfork;
    let targets: Vec<u32> = (0..nodes.min(8)).collect();
    let n = targets.len();
    let mut sec = Section::new(
        "11. vrfork to several nodes",
        "none set by the issue; shown: vrfork sends the image once from the front end and nodes \
         pass it on in a tree (BProc's vrfork), so a copy on every node costs one checkpoint and \
         about log2(nodes) transfers in a row, not a checkpoint and a transfer per node.",
        &["way", "runs", "median", "min-max", "per copy", "vs vrfork"],
    );
    let started = Instant::now();
    let mut measured = vec![Samples::new(), Samples::new(), Samples::new()];
    let ways = ["vrfork", "rforks", "forks"];
    // Interleaved: one run of each way per round.
    let result = (0..runs).try_for_each(|_| -> Result<()> {
        for (way, s) in ways.iter().zip(measured.iter_mut()) {
            s.push(vbench_runs(c, mb, 1, way, &targets)?.median());
        }
        Ok(())
    });
    let labels = [
        format!("`bproc_vrfork` to {n} nodes"),
        format!("{n} × `bproc_rfork`, one node after another"),
        format!("{n} × local fork()"),
    ];
    let base = measured[0].median();
    for (label, s) in labels.iter().zip(&measured) {
        if s.runs() > 0 {
            sec.row(vec![
                label.clone(),
                s.runs().to_string(),
                format!("{} ms", ms(s.median())),
                format!("{}-{} ms", ms(s.min()), ms(s.max())),
                format!("{} ms", ms(s.median() / n as u32)),
                format!("{:.2}x", ratio(s.median(), base)),
            ]);
        }
    }
    match result {
        Ok(()) => {
            sec.note(format!(
                "A process of {mb} MiB (every page written) places a copy on each of {n} nodes; each \
                 copy checks its buffer and exits; a run ends when the caller has reaped them all. \
                 `bproc-rfork-rs vbench` does it one of three ways, interleaved round by round. \
                 {n} rforks one after another take {:.1}x as long as one vrfork.",
                ratio(measured[1].median(), base)
            ));
        }
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.took = started.elapsed();
    sec
}
