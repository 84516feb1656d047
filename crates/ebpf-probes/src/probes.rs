//! [`Probes`]: load the embedded BPF object, hand it this kernel's offsets, attach the four programs;
//! then track pids and read events. [`Tracker`] is the shareable handle on the `TRACKED` map.

use std::{
    os::fd::AsFd as _,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use aya::{
    maps::{HashMap, MapData, MapError, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use ebpf_probes_common::{
    ProbeConfig, CONFIG_GLOBAL, EVENTS_MAP, PROG_DELIVER, PROG_EXEC, PROG_EXIT, PROG_FORK, PROG_SIGNAL, TRACKED_MAP,
};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::{btf::Btf, tracefs, AsyncProbes, Event, ProbeError};

/// The caller's PID namespace; its inode number identifies it to the probes.
const SELF_PID_NS: &str = "/proc/self/ns/pid";

/// The BPF object built by `build.rs` from `crates/ebpf-probes-ebpf`.
static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bproc-probes"));

/// The loaded and attached probes. Dropping it detaches them and frees the maps.
pub struct Probes {
    pub(crate) events: RingBuf<MapData>,
    pub(crate) tracker: Tracker,
    // Owns the programs and their links: keeps the probes attached.
    pub(crate) ebpf: Ebpf,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

/// Shared handle on the `TRACKED` map (thread-group ids whose events are reported). Cheap to clone;
/// usable from any thread while another one reads events.
#[derive(Clone)]
pub struct Tracker {
    map: Arc<Mutex<HashMap<MapData, u32, u8>>>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").finish_non_exhaustive()
    }
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, HashMap<MapData, u32, u8>> {
        // The map holds no invariant a panicking holder could break.
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts reporting events of process `pid` (a global tgid) and of every process it forks from
    /// now on. Track a process before it forks or execs anything you want to see.
    pub fn track(&self, pid: u32) -> Result<(), ProbeError> {
        self.lock().insert(pid, 1, 0).map_err(|source| ProbeError::Map { map: TRACKED_MAP, source })
    }

    /// Stops reporting events of `pid` (its descendants stay tracked). Not tracked already is fine.
    pub fn untrack(&self, pid: u32) -> Result<(), ProbeError> {
        match self.lock().remove(&pid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(ProbeError::Map { map: TRACKED_MAP, source }),
        }
    }

    /// Whether `pid` is tracked (it was tracked, or forked by a tracked process, and has not exited).
    pub fn is_tracked(&self, pid: u32) -> Result<bool, ProbeError> {
        match self.lock().get(&pid, 0) {
            Ok(_) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(source) => Err(ProbeError::Map { map: TRACKED_MAP, source }),
        }
    }
}

impl Probes {
    /// Loads the probes and attaches them to `sched_process_fork` (raw tracepoint),
    /// `sched/sched_process_exec`, `sched/sched_process_exit`, `signal/signal_generate` and
    /// `signal/signal_deliver`. Needs
    /// root (CAP_BPF + CAP_PERFMON, and CAP_SYS_ADMIN to mount tracefs if it is not mounted).
    pub fn load() -> Result<Self, ProbeError> {
        Self::load_with(kernel_config()?)
    }

    /// Like [`Probes::load`], and also tracks the calling process and everything it forks from now
    /// on (in the kernel, from its first fork), with events carrying the pids of the caller's own
    /// PID namespace in `ns_*`. For a daemon that is PID 1 of a namespace node: it cannot know its
    /// global pid, so it cannot [`track`](Probes::track) itself.
    pub fn load_tracking_self() -> Result<Self, ProbeError> {
        let mut config = kernel_config()?;
        let ns =
            std::fs::metadata(SELF_PID_NS).map_err(|source| ProbeError::Read { path: SELF_PID_NS.into(), source })?;
        config.seed_ns_inum = std::os::unix::fs::MetadataExt::ino(&ns) as u32;
        config.seed_ns_pid = std::process::id();
        Self::load_with(config)
    }

    fn load_with(config: ProbeConfig) -> Result<Self, ProbeError> {
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .load(PROBE_OBJECT)
            .map_err(|source| ProbeError::Object { source })?;

        let fork: &mut RawTracePoint = program(&mut ebpf, PROG_FORK)?;
        fork.load().map_err(|error| ProbeError::Load { program: PROG_FORK, error })?;
        fork.attach("sched_process_fork")
            .map_err(|error| ProbeError::Attach { tracepoint: "sched_process_fork", error })?;

        for (name, group, event) in [
            (PROG_EXEC, "sched", "sched_process_exec"),
            (PROG_EXIT, "sched", "sched_process_exit"),
            (PROG_SIGNAL, "signal", "signal_generate"),
            (PROG_DELIVER, "signal", "signal_deliver"),
        ] {
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            prog.load().map_err(|error| ProbeError::Load { program: name, error })?;
            prog.attach(group, event).map_err(|error| ProbeError::Attach { tracepoint: event, error })?;
        }

        let tracked = ebpf.take_map(TRACKED_MAP).ok_or(ProbeError::Missing { what: "map", name: TRACKED_MAP })?;
        let tracked = HashMap::try_from(tracked).map_err(|source| ProbeError::Map { map: TRACKED_MAP, source })?;
        let events = ebpf.take_map(EVENTS_MAP).ok_or(ProbeError::Missing { what: "map", name: EVENTS_MAP })?;
        let events = RingBuf::try_from(events).map_err(|source| ProbeError::Map { map: EVENTS_MAP, source })?;
        Ok(Self { events, tracker: Tracker { map: Arc::new(Mutex::new(tracked)) }, ebpf })
    }

    /// A handle on the tracked set, for use from other threads or tasks.
    pub fn tracker(&self) -> Tracker {
        self.tracker.clone()
    }

    /// See [`Tracker::track`].
    pub fn track(&self, pid: u32) -> Result<(), ProbeError> {
        self.tracker.track(pid)
    }

    /// See [`Tracker::untrack`].
    pub fn untrack(&self, pid: u32) -> Result<(), ProbeError> {
        self.tracker.untrack(pid)
    }

    /// See [`Tracker::is_tracked`].
    pub fn is_tracked(&self, pid: u32) -> Result<bool, ProbeError> {
        self.tracker.is_tracked(pid)
    }

    /// The next event, waiting at most `timeout` for one; `None` when none came in time. Events of
    /// one process arrive in the order they happened; events from different CPUs are in ring-buffer
    /// order (the order the probes reserved their records).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, ProbeError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.events.next() {
                return Event::decode(&item).map(Some);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let millis = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
            let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(ProbeError::Poll { source: errno.into() }),
            }
        }
    }

    /// The same probes with an async event stream (needs a tokio runtime with IO enabled).
    pub fn into_async(self) -> Result<AsyncProbes, ProbeError> {
        AsyncProbes::new(self)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(ProbeError::Missing { what: "program", name })?;
    prog.try_into().map_err(|source| ProbeError::ProgramType { program: name, source })
}

/// This kernel's offsets, from tracefs format files and BTF.
pub fn kernel_config() -> Result<ProbeConfig, ProbeError> {
    tracefs::ensure_mounted()?;
    let exit = tracefs::Format::read("sched", "sched_process_exit")?;
    let signal = tracefs::Format::read("signal", "signal_generate")?;
    let deliver = tracefs::Format::read("signal", "signal_deliver")?;
    let btf = Btf::from_kernel()?;
    Ok(ProbeConfig {
        exit_group_dead: exit.offset("group_dead", 1)?,
        signal_sig: signal.offset("sig", 4)?,
        signal_pid: signal.offset("pid", 4)?,
        signal_result: signal.offset("result", 4)?,
        deliver_sig: deliver.offset("sig", 4)?,
        deliver_handler: deliver.offset("sa_handler", 8)?,
        task_pid: btf.member_offset("task_struct", "pid", 4)?,
        task_tgid: btf.member_offset("task_struct", "tgid", 4)?,
        task_exit_code: btf.member_offset("task_struct", "exit_code", 4)?,
        task_group_leader: btf.member_offset("task_struct", "group_leader", 8)?,
        task_thread_pid: btf.member_offset("task_struct", "thread_pid", 8)?,
        pid_level: btf.member_offset("pid", "level", 4)?,
        pid_numbers: btf.member_offset("pid", "numbers", None)?,
        upid_size: btf.struct_size("upid")?,
        upid_nr: btf.member_offset("upid", "nr", 4)?,
        upid_ns: btf.member_offset("upid", "ns", 8)?,
        pidns_inum: btf.member_offset("pid_namespace", "ns", None)? + btf.member_offset("ns_common", "inum", 4)?,
        seed_ns_inum: 0,
        seed_ns_pid: 0,
        ready: 1,
    })
}
