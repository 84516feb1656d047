//! `bproc-bench [--quick] [--out PATH]`: measures bproc-rs against its peers side by side in one
//! run on namespace clusters, and writes a Markdown report (default `docs/BENCHMARKS.md`).
//!
//! What it measures:
//! 1. start latency of one trivial process: local fork+exec+wait of `true`, `bpsh 0 true`, and
//!    `ssh root@NODE0 true` with a new connection and through a ControlMaster;
//! 2. fan-out: `bpsh -a true` on 16 and on 4 nodes against `bpsh 0 true`;
//! 3. stdout throughput: `bpsh 0 head -c SIZE /dev/zero` against ssh and a local pipe;
//! 4. stdin throughput: SIZE bytes into `bpsh 0 wc -c` (and ssh, and a local pipe);
//! 5. `bpsh 0 true` again after node 0 moved that data, against `bpsh 1 true`;
//! 6. signal latency: `kill -USR1` of a ghost until the remote trap has run and its output
//!    arrived, against the same with a local shell (1-node cluster);
//! 7. ghost memory: USS of each of 1,000 ghosts at once (4-node cluster) against local `sleep`;
//! 8. the time for those 1,000 ghosts to appear and to be reaped, against 1,000 local `sleep`;
//! 9. rfork round trip of 1 MB, 100 MB and 1 GiB processes against fork() and CRIU's CLI;
//! 10. vexecmove of `true` to 16 nodes × 1,000 processes, started and reaped.
//!
//! Every figure gives its number of runs, the median and p10/p90 or min/max; each target is
//! reported as PASS or MISS, never failing the run. The run fails (exit 1, after writing the
//! report) only when a benchmark could not be carried out. Clusters and sshd are torn down by
//! guards, also on error or panic. `--quick` uses few runs, 64 MiB and 20 ghosts (the test suite
//! runs it).

#[path = "../bench/mod.rs"]
mod bench;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use vm_harness::{Cluster, ClusterSpec};

use bench::report::{self, Section};
use bench::ssh::{self, Ssh};
use bench::{ghosts, latency, migrate, throughput, Config};

const USAGE: &str = "usage: bproc-bench [--quick] [--out PATH]   (default PATH: docs/BENCHMARKS.md)";

/// A generous node timeout: the throughput runs keep both cores busy.
const NODE_TIMEOUT_MS: u64 = 10_000;

struct Args {
    quick: bool,
    out: PathBuf,
}

fn parse_args(argv: &[String]) -> Result<Option<Args>> {
    let mut args = Args { quick: false, out: PathBuf::from("docs/BENCHMARKS.md") };
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--out" => args.out = it.next().ok_or_else(|| anyhow!("--out needs a path\n{USAGE}"))?.into(),
            "-h" | "--help" => return Ok(None),
            other => match other.strip_prefix("--out=") {
                Some(p) => args.out = p.into(),
                None => bail!("unknown argument {other:?}\n{USAGE}"),
            },
        }
    }
    Ok(Some(args))
}

fn up(nodes: u32) -> Result<Cluster> {
    let mut spec = ClusterSpec::new(vm_harness::unique_name("bench"), nodes);
    spec.node_timeout_ms = NODE_TIMEOUT_MS;
    Cluster::up(spec).map_err(|e| anyhow!("cannot bring up a {nodes}-node cluster: {}", e.chain()))
}

fn progress(what: &str) {
    eprintln!("bproc-bench: {what}");
}

fn run() -> Result<bool> {
    let argv: Vec<String> = std::env::args().collect();
    let Some(args) = parse_args(&argv)? else {
        println!("{USAGE}");
        return Ok(true);
    };
    ssh::check_installed()?;
    let cfg = if args.quick { Config::QUICK } else { Config::FULL };
    // Before any cluster: bpmaster inherits the limit and holds one connection per bpsh.
    let nofile = ghosts::raise_nofile()?;
    let started = Instant::now();
    let mut sections: Vec<Section> = Vec::new();
    {
        progress("bringing up a 4-node cluster and sshd on node 0");
        let small = up(4)?;
        // Declared after the cluster, so dropped (sshd killed) before the cluster goes.
        let ssh = Ssh::start(&small, 0)?;
        progress("start latency");
        sections.push(latency::start_latency(&small, &ssh, &cfg));
        // Fan-out before the transfers: they leave node 0's bpslave bigger and slower to start
        // processes (benchmark 5 shows how much).
        {
            progress("bringing up a 16-node cluster; fan-out");
            let big = up(16)?;
            sections.push(latency::fan_out(&big, &small, &cfg));
        }
        progress("stdout throughput");
        sections.push(throughput::stdout_throughput(&small, &ssh, &cfg));
        progress("stdin throughput");
        sections.push(throughput::stdin_throughput(&small, &ssh, &cfg));
        progress("start latency after the transfers");
        sections.push(latency::after_transfers(&small, &cfg));
    }
    {
        progress("bringing up a 1-node cluster; signal latency");
        let one = up(1)?;
        sections.push(ghosts::signal_latency(&one, &cfg));
    }
    {
        progress(&format!("bringing up a fresh 4-node cluster; {} ghosts at once", cfg.ghosts));
        let four = up(4)?;
        let (mem, times) = ghosts::crowd(&four, &cfg);
        sections.push(mem);
        sections.push(times);
        if let Some(s) = sections.last_mut() {
            s.note(format!(
                "bpmaster holds one connection per bpsh and inherits the bench's limit on open \
                 files: the bench raises its soft limit to the hard limit ({} → {}) before \
                 starting any cluster.",
                nofile.0, nofile.1
            ));
        }
    }
    {
        progress("bringing up a 4-node cluster; rfork round trips");
        let four = up(4)?;
        sections.push(migrate::rfork_round_trip(&four, &cfg));
    }
    {
        progress(&format!("bringing up a {}-node cluster; vexecmove at scale", cfg.vexecmove.0));
        let many = up(cfg.vexecmove.0)?;
        sections.push(migrate::vexecmove_at_scale(&many, &cfg));
        progress("vrfork to several nodes");
        sections.push(migrate::vrfork_tree(&many, cfg.vexecmove.0, &cfg));
    }
    let text = report::render(&argv, args.quick, &sections, started.elapsed());
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("write {}", args.out.display()))?;
    print!("{text}");
    progress(&format!("report written to {}", args.out.display()));
    let failed: Vec<&str> = sections.iter().filter(|s| s.error.is_some()).map(|s| s.title.as_str()).collect();
    if !failed.is_empty() {
        eprintln!("bproc-bench: could not finish: {}", failed.join(", "));
    }
    Ok(failed.is_empty())
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bproc-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
