//! Start latency of one trivial process (local fork+exec+wait, `bpsh 0 true`, ssh with a new
//! connection and through a ControlMaster), fan-out (`bpsh -a true` on 16 and 4 nodes against
//! `bpsh 0 true`), and start latency again on the node that moved the throughput data.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use vm_harness::Cluster;

use super::report::Section;
use super::ssh::Ssh;
use super::stats::{ms, ratio, Samples};
use super::sys::{in_netns, time_run};
use super::Config;

/// Longest a single trivial command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(super) const HEADER: [&str; 8] =
    ["Command", "runs", "median ms", "p10 ms", "p90 ms", "min ms", "max ms", "median / baseline"];

pub(super) fn row(what: &str, s: &Samples, base: &Samples) -> Vec<String> {
    if s.runs() == 0 {
        let mut cells = vec![what.to_owned(), "0".into()];
        cells.resize(HEADER.len(), "–".into());
        return cells;
    }
    vec![
        what.to_owned(),
        s.runs().to_string(),
        ms(s.median()),
        ms(s.percentile(10.0)),
        ms(s.percentile(90.0)),
        ms(s.min()),
        ms(s.max()),
        format!("{:.2}x", ratio(s.median(), base.median())),
    ]
}

fn bpsh(c: &Cluster, nodes: &str) -> Command {
    let mut cmd = c.command("bpsh");
    cmd.args([nodes, "true"]);
    cmd
}

/// Benchmark 1: `true` started locally, by bpsh on node 0, and by ssh on node 0.
pub fn start_latency(c: &Cluster, ssh: &Ssh, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "1. Start latency of one trivial process",
        "`bpsh 0 true` within 4x of local fork+exec+wait, and at least 3x faster than ssh with \
         ControlMaster.",
        &HEADER,
    );
    let started = Instant::now();
    let (mut local, mut bp, mut cm, mut new) = (Samples::new(), Samples::new(), Samples::new(), Samples::new());
    let stride = (cfg.latency / cfg.ssh_new.max(1)).max(1);
    // Everything runs from one thread inside the hub namespace, where ssh reaches the node;
    // the namespace changes nothing for the local fork+exec or for bpsh (a Unix socket path).
    let result = in_netns(c.hub_netns(), || {
        // Warm-up, untimed: page cache, the master's and the slave's first-request paths.
        time_run(&mut Command::new("true"), TIMEOUT)?;
        time_run(&mut bpsh(c, "0"), TIMEOUT)?;
        time_run(&mut ssh.via_master(&["true"]), TIMEOUT)?;
        time_run(&mut ssh.new_conn(&["true"]), TIMEOUT)?;
        for i in 0..cfg.latency {
            local.push(time_run(&mut Command::new("true"), TIMEOUT)?);
            bp.push(time_run(&mut bpsh(c, "0"), TIMEOUT)?);
            cm.push(time_run(&mut ssh.via_master(&["true"]), TIMEOUT)?);
            if i % stride == 0 && new.runs() < cfg.ssh_new {
                new.push(time_run(&mut ssh.new_conn(&["true"]), TIMEOUT)?);
            }
        }
        Ok(())
    });
    sec.row(row("local `true` (fork+exec+wait, in process)", &local, &local));
    sec.row(row("`bpsh 0 true`", &bp, &local));
    sec.row(row("`ssh root@NODE0 true`, new connection", &new, &local));
    sec.row(row("`ssh root@NODE0 true`, ControlMaster", &cm, &local));
    match result {
        Ok(()) => {
            let vs_local = ratio(bp.median(), local.median());
            sec.verdict(
                vs_local <= 4.0,
                format!(
                    "`bpsh 0 true` median {} ms is {vs_local:.2}x local fork+exec+wait ({} ms); target at most 4x.",
                    ms(bp.median()),
                    ms(local.median())
                ),
            );
            let vs_ssh = ratio(cm.median(), bp.median());
            sec.verdict(
                vs_ssh >= 3.0,
                format!(
                    "ssh with ControlMaster ({} ms) takes {vs_ssh:.2}x as long as `bpsh 0 true`; target at least 3x.",
                    ms(cm.median())
                ),
            );
        }
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.note(format!(
        "The cluster has {} namespace nodes; sshd (OpenSSH, ed25519 keys) runs in node 0's network \
         namespace; the ssh client runs in the hub namespace from a thread that joined it with \
         setns, so no `ip netns exec` is in the timed path. sshd sets `SHLVL=1` in its sessions \
         so that root's bash does not source this machine's ~/.bashrc (its `pyenv init` alone \
         costs ~80 ms, which would flatter bpsh). One round = one run of each command; ssh with \
         a new connection runs every {stride}th round.",
        c.nodes()
    ));
    sec.took = started.elapsed();
    sec
}

/// Benchmark 2: `bpsh -a true` on `big` (16 nodes) and `small` (4 nodes) against `bpsh 0 true`.
pub fn fan_out(big: &Cluster, small: &Cluster, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "2. Fan-out",
        &format!("`bpsh -a true` on {} nodes within 3x of `bpsh 0 true` on the same cluster.", big.nodes()),
        &HEADER,
    );
    let started = Instant::now();
    let (mut one, mut all, mut four) = (Samples::new(), Samples::new(), Samples::new());
    let (mut local1, mut local_n) = (Samples::new(), Samples::new());
    let result = fan_out_runs(big, small, cfg, [&mut one, &mut all, &mut four, &mut local1, &mut local_n]);
    sec.row(row(&format!("`bpsh 0 true` ({}-node cluster)", big.nodes()), &one, &one));
    sec.row(row(&format!("`bpsh -a true` ({} nodes)", small.nodes()), &four, &one));
    sec.row(row(&format!("`bpsh -a true` ({} nodes)", big.nodes()), &all, &one));
    sec.row(row("reference: local `true`, 1 spawned and waited", &local1, &local1));
    sec.row(row(
        &format!("reference: local `true`, {} spawned at once, then all waited", big.nodes()),
        &local_n,
        &local1,
    ));
    match result {
        Ok(()) => {
            let r = ratio(all.median(), one.median());
            sec.verdict(
                r <= 3.0,
                format!(
                    "`bpsh -a true` on {} nodes: median {} ms, {r:.2}x one node ({} ms); target at most 3x.",
                    big.nodes(),
                    ms(all.median()),
                    ms(one.median())
                ),
            );
        }
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.note(format!(
        "Baseline is `bpsh 0 true` on the {}-node cluster; the {}-node cluster is a separate \
         cluster up at the same time. All rows run interleaved. All nodes share this machine's \
         {} cores, so the remote processes of `bpsh -a` cannot all run at once as they would \
         on a real cluster: the local reference rows show what starting {} processes at once \
         costs here against one, with no bproc involved (their ratio column is against the \
         1-process reference).",
        big.nodes(),
        small.nodes(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        big.nodes()
    ));
    sec.took = started.elapsed();
    sec
}

/// The fan-out rounds: `bpsh 0 true` on `big`, `bpsh -a true` on `big`, then on `small`.
fn fan_out_runs(big: &Cluster, small: &Cluster, cfg: &Config, out: [&mut Samples; 5]) -> Result<()> {
    let [one, all, four, local1, local_n] = out;
    for cmd in [bpsh(big, "0"), bpsh(big, "-a"), bpsh(small, "-a")].iter_mut() {
        time_run(cmd, TIMEOUT)?;
    }
    for _ in 0..cfg.fanout {
        one.push(time_run(&mut bpsh(big, "0"), TIMEOUT)?);
        all.push(time_run(&mut bpsh(big, "-a"), TIMEOUT)?);
        four.push(time_run(&mut bpsh(small, "-a"), TIMEOUT)?);
        local1.push(time_parallel_true(1)?);
        local_n.push(time_parallel_true(big.nodes())?);
    }
    Ok(())
}

/// Spawns `n` local `true` at once, then waits for all: what this machine's cores can do.
fn time_parallel_true(n: u32) -> Result<Duration> {
    let start = Instant::now();
    let children = (0..n)
        .map(|_| Command::new("true").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn())
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot start `true`")?;
    for mut child in children {
        let status = child.wait().context("wait for `true`")?;
        if !status.success() {
            bail!("`true` failed: {status}");
        }
    }
    Ok(start.elapsed())
}

/// Benchmark 5: `bpsh 0 true` after node 0 moved the throughput benchmarks' data, against
/// `bpsh 1 true` on a node of the same cluster that moved none; with the slaves' resident memory.
pub fn after_transfers(c: &Cluster, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "5. Start latency after the transfers",
        "none in the issue; a node that has moved data should start processes as fast as one \
         that has not.",
        &HEADER,
    );
    let started = Instant::now();
    let (mut busy, mut idle) = (Samples::new(), Samples::new());
    let result = two_nodes(c, cfg.fanout, &mut idle, &mut busy);
    sec.row(row("`bpsh 1 true` (node 1 moved no data)", &idle, &idle));
    sec.row(row("`bpsh 0 true` (node 0 moved the benchmarks 3 and 4 data)", &busy, &idle));
    if let Err(e) = result {
        sec.error = Some(format!("{e:#}"));
    }
    let rss = |n: u32| {
        c.slave_pid(n)
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned())))
            .unwrap_or_else(|| "?".into())
    };
    sec.note(format!("Resident memory of the bpslave of node 0: {}, of node 1: {}. Runs interleaved.", rss(0), rss(1)));
    sec.took = started.elapsed();
    sec
}

/// Interleaved runs of `bpsh 1 true` and `bpsh 0 true`, after one untimed run of each.
fn two_nodes(c: &Cluster, runs: usize, one: &mut Samples, zero: &mut Samples) -> Result<()> {
    time_run(&mut bpsh(c, "0"), TIMEOUT)?;
    time_run(&mut bpsh(c, "1"), TIMEOUT)?;
    for _ in 0..runs {
        one.push(time_run(&mut bpsh(c, "1"), TIMEOUT)?);
        zero.push(time_run(&mut bpsh(c, "0"), TIMEOUT)?);
    }
    Ok(())
}
