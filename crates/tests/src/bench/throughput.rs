//! Stream throughput: SIZE bytes from a remote `head -c SIZE /dev/zero` to the bench over
//! bpsh's stdout, over ssh (ControlMaster) and over a local pipe; and SIZE bytes from the bench
//! into a remote `wc -c` over stdin, whose printed count must equal SIZE.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use vm_harness::Cluster;

use super::report::Section;
use super::ssh::Ssh;
use super::stats::{mb_per_s, Samples};
use super::sys::{drain, in_netns, lossy, write_zeros, Watch};
use super::Config;

/// A transfer that moves no byte for this long counts as hung and is killed.
const STALL: Duration = Duration::from_secs(30);

const HEADER: [&str; 7] = ["Command", "runs", "bytes per run", "median MB/s", "min MB/s", "max MB/s", "median s"];

fn row(what: &str, s: &Samples, size: u64) -> Vec<String> {
    if s.runs() == 0 {
        return vec![what.to_owned(), "0".into(), size.to_string(), "–".into(), "–".into(), "–".into(), "–".into()];
    }
    vec![
        what.to_owned(),
        s.runs().to_string(),
        size.to_string(),
        format!("{:.0}", mb_per_s(size, s.median())),
        format!("{:.0}", mb_per_s(size, s.max())),
        format!("{:.0}", mb_per_s(size, s.min())),
        format!("{:.3}", s.median().as_secs_f64()),
    ]
}

/// Reads a child's stderr on a thread, for error messages.
fn stderr_reader(child: &mut std::process::Child) -> thread::JoinHandle<String> {
    let err = child.stderr.take();
    thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut e) = err {
            let _ = e.read_to_end(&mut s);
        }
        lossy(&s)
    })
}

/// Spawn to exit of `cmd`, whose stdout must carry exactly `size` bytes.
fn time_stdout(cmd: &mut Command, size: u64) -> Result<Duration> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let watch = Watch::new(&child, STALL);
    let err = stderr_reader(&mut child);
    let got = child.stdout.take().map(|o| drain(o, watch.extender()));
    let status = watch.wait(&mut child).with_context(|| format!("{cmd:?}"))?;
    let took = start.elapsed();
    let err = err.join().unwrap_or_default();
    let got = got.transpose().context("read stdout")?;
    if !status.success() || got != Some(size) {
        bail!("{cmd:?}: {status}, {got:?} bytes on stdout, {size} expected; stderr: {}", err.trim());
    }
    Ok(took)
}

/// Spawn to exit of `cmd` (a `wc -c`) fed `size` bytes; its output must be that count.
fn time_stdin(cmd: &mut Command, size: u64) -> Result<Duration> {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let watch = Watch::new(&child, STALL);
    let err = stderr_reader(&mut child);
    let writer = child.stdin.take().map(|stdin| {
        let progress = watch.extender();
        thread::spawn(move || write_zeros(stdin, size, progress))
    });
    let mut out = String::new();
    let read = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
    let status = watch.wait(&mut child).with_context(|| format!("{cmd:?}"))?;
    let took = start.elapsed();
    let wrote = match writer {
        Some(w) => w.join().map_err(|_| anyhow!("the stdin writer panicked"))?,
        None => bail!("no stdin pipe"),
    };
    let err = err.join().unwrap_or_default();
    let count = out.trim().parse::<u64>().ok();
    if !status.success() || count != Some(size) || wrote.is_err() || !matches!(read, Some(Ok(_))) {
        bail!(
            "{cmd:?}: {status}, printed {:?} for {size} bytes sent (write: {wrote:?}, read: {read:?}); \
             stderr: {}",
            out.trim(),
            err.trim()
        );
    }
    Ok(took)
}

/// Benchmark 3: stdout of a remote `head -c SIZE /dev/zero`.
pub fn stdout_throughput(c: &Cluster, ssh: &Ssh, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "3. stdout throughput",
        "`bpsh 0 head -c SIZE /dev/zero` delivers at least 1 GB/s (1000 MB/s) to the reader.",
        &HEADER,
    );
    let started = Instant::now();
    let size = cfg.size.to_string();
    let head = ["head", "-c", size.as_str(), "/dev/zero"];
    let (mut local, mut bp, mut cm) = (Samples::new(), Samples::new(), Samples::new());
    let result = in_netns(c.hub_netns(), || {
        for _ in 0..cfg.throughput {
            local.push(time_stdout(Command::new("head").args(&head[1..]), cfg.size)?);
            bp.push(time_stdout(c.command("bpsh").arg("0").args(head), cfg.size)?);
            cm.push(time_stdout(&mut ssh.via_master(&head), cfg.size)?);
        }
        Ok(())
    });
    sec.row(row("local `head -c SIZE /dev/zero` into a pipe", &local, cfg.size));
    sec.row(row("`bpsh 0 head -c SIZE /dev/zero`", &bp, cfg.size));
    sec.row(row("`ssh root@NODE0 head -c SIZE /dev/zero`, ControlMaster", &cm, cfg.size));
    match result {
        Ok(()) => {
            let rate = mb_per_s(cfg.size, bp.median());
            let vs_ssh = rate / mb_per_s(cfg.size, cm.median());
            sec.verdict(
                rate >= 1000.0,
                format!(
                    "bpsh median {rate:.0} MB/s ({:.0} MiB/s), {vs_ssh:.2}x ssh; target at least 1000 MB/s.",
                    rate * 1e6 / (1u64 << 20) as f64
                ),
            );
        }
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.note(format!(
        "SIZE = {} bytes ({} MiB). Time is from spawn to exit, so it includes the start latency; \
         the bench reads stdout in 1 MiB reads and counts the bytes. A transfer that moves \
         nothing for {} s counts as hung and is killed.",
        cfg.size,
        cfg.size >> 20,
        STALL.as_secs()
    ));
    sec.took = started.elapsed();
    sec
}

/// Benchmark 4: SIZE bytes into a remote `wc -c`.
pub fn stdin_throughput(c: &Cluster, ssh: &Ssh, cfg: &Config) -> Section {
    let mut sec = Section::new(
        "4. stdin throughput",
        "no number in the issue; every byte must arrive (the count `wc -c` prints must equal SIZE).",
        &HEADER,
    );
    let started = Instant::now();
    let (mut local, mut bp, mut cm) = (Samples::new(), Samples::new(), Samples::new());
    let result = in_netns(c.hub_netns(), || {
        for _ in 0..cfg.throughput {
            local.push(time_stdin(Command::new("wc").arg("-c"), cfg.size)?);
            bp.push(time_stdin(c.command("bpsh").args(["0", "wc", "-c"]), cfg.size)?);
            cm.push(time_stdin(&mut ssh.via_master(&["wc", "-c"]), cfg.size)?);
        }
        Ok(())
    });
    sec.row(row("local pipe into `wc -c`", &local, cfg.size));
    sec.row(row("`bpsh 0 wc -c`", &bp, cfg.size));
    sec.row(row("`ssh root@NODE0 wc -c`, ControlMaster", &cm, cfg.size));
    match result {
        Ok(()) => sec.verdict(
            true,
            format!(
                "every run's count was exactly {} bytes; bpsh median {:.0} MB/s, ssh {:.0} MB/s.",
                cfg.size,
                mb_per_s(cfg.size, bp.median()),
                mb_per_s(cfg.size, cm.median())
            ),
        ),
        Err(e) => sec.error = Some(format!("{e:#}")),
    }
    sec.note("The bench writes zeros in 1 MiB writes from a thread and reads the count from stdout.");
    sec.took = started.elapsed();
    sec
}
