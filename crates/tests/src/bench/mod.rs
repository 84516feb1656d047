//! The pieces of `bproc-bench` (see `src/bin/bench.rs`).
//!
//! - `latency`: start latency of one trivial process, and fan-out.
//! - `ghosts`: signal latency through a ghost, ghost memory, 1,000 ghosts appearing and reaped.
//! - `migrate`: rfork round trips of processes of several sizes, against fork() and CRIU's CLI.
//! - `throughput`: stdout and stdin streams through bpsh, ssh and a local pipe.
//! - `ssh`: the sshd on a node and the ssh client commands (the peer compared against).
//! - `report`: the Markdown report.
//! - `stats`: samples and percentiles.
//! - `sys`: timing a command, the watchdog, running in a network namespace, killing a tree.

pub mod ghosts;
pub mod latency;
pub mod migrate;
pub mod report;
pub mod ssh;
pub mod stats;
pub mod sys;
pub mod throughput;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Runs of each start-latency command (and rounds of the interleaved loop).
    pub latency: usize,
    /// Runs of ssh with a new connection (spread over the latency rounds).
    pub ssh_new: usize,
    /// Runs of each fan-out command.
    pub fanout: usize,
    /// Runs of each throughput command.
    pub throughput: usize,
    /// Bytes moved per throughput run.
    pub size: u64,
    /// Signals sent to a ghost (and to a local shell).
    pub signal: usize,
    /// Ghosts (and local processes) at once in the crowd benchmarks.
    pub ghosts: usize,
    /// Rounds of the crowd benchmarks.
    pub crowd_runs: usize,
    /// Process sizes for the rfork round trip, in MiB, with runs of rfork (and of fork) and of
    /// CRIU's CLI.
    pub migrate: &'static [(usize, usize, usize)],
    /// vexecmove at scale: nodes, processes per node.
    pub vexecmove: (u32, usize),
    /// vrfork to several nodes: process size in MiB, rounds.
    pub vrfork: (usize, usize),
}

impl Config {
    /// The full run: a few minutes.
    pub const FULL: Config = Config {
        latency: 200,
        ssh_new: 20,
        fanout: 50,
        throughput: 3,
        size: 1 << 30,
        signal: 200,
        ghosts: 1000,
        crowd_runs: 3,
        migrate: &[(1, 10, 3), (100, 5, 3), (1024, 3, 2)],
        vexecmove: (16, 1000),
        vrfork: (100, 3),
    };
    /// `--quick`: proves the benchmarks work, well under a minute.
    pub const QUICK: Config = Config {
        latency: 20,
        ssh_new: 5,
        fanout: 10,
        throughput: 1,
        size: 64 << 20,
        signal: 20,
        ghosts: 20,
        crowd_runs: 1,
        migrate: &[(1, 3, 1), (16, 2, 1)],
        vexecmove: (4, 10),
        vrfork: (16, 1),
    };
}
