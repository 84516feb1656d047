//! [`Event`]: what the probes report, decoded from [`RawEvent`] ring-buffer records.

use ebpf_probes_common::{RawEvent, KIND_DELIVER, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_SIGNAL, RAW_EVENT_SIZE};

use crate::ProbeError;

/// One event about a tracked process tree. `parent`, `child`, `pid`, `target` and `sender` are
/// thread-group ids in the initial PID namespace (global pids), whatever namespace the process lives
/// in. The `ns_*` fields are the same processes' pids in the namespace of the tree's root: equal to
/// the global ones for a process tracked with [`crate::Probes::track`], the node's own pids for a
/// daemon that loaded [`crate::Probes::load_tracking_self`] as PID 1 of its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A tracked process created a new process (not a thread). The child is already tracked.
    /// `parent` is the process that called fork/clone (for `CLONE_PARENT` that is not the child's
    /// real parent).
    Fork { parent: u32, child: u32, ns_parent: u32, ns_child: u32 },
    /// A tracked process called execve; `comm` is its new command name (at most 15 bytes).
    Exec { pid: u32, ns_pid: u32, comm: String },
    /// The last thread of a tracked process exited. `wait_status` is what `waitpid` will report
    /// (`code << 8` for an exit, the signal number for a death by signal, `| 0x80` with a core dump).
    /// The process is no longer tracked.
    Exit { pid: u32, ns_pid: u32, wait_status: i32 },
    /// A signal was generated for a tracked pid. `sender` is the tgid of the task in whose context
    /// the kernel generated it (the caller of kill(2); for kernel-made signals such as SIGCHLD, the
    /// task that triggered them).
    Signal { target: u32, sender: u32, signo: i32 },
    /// A tracked process is about to act on signal `signo`; `default_action` when that is the
    /// default one (for SIGSTOP, SIGTSTP, SIGTTIN and SIGTTOU: the process stops, unless its process
    /// group is orphaned).
    Deliver { pid: u32, ns_pid: u32, signo: i32, default_action: bool },
}

impl Event {
    /// The process the event is about: the child for a fork, the target for a signal.
    pub fn pid(&self) -> u32 {
        match *self {
            Event::Fork { child, .. } => child,
            Event::Exec { pid, .. } | Event::Exit { pid, .. } | Event::Deliver { pid, .. } => pid,
            Event::Signal { target, .. } => target,
        }
    }

    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProbeError> {
        let raw = parse_raw(bytes)?;
        Ok(match raw.kind {
            KIND_FORK => {
                Event::Fork { parent: raw.other, child: raw.pid, ns_parent: raw.ns_other, ns_child: raw.ns_pid }
            }
            KIND_EXEC => {
                let len = raw.comm.iter().position(|&b| b == 0).unwrap_or(raw.comm.len());
                let comm = String::from_utf8_lossy(&raw.comm[..len]).into_owned();
                Event::Exec { pid: raw.pid, ns_pid: raw.ns_pid, comm }
            }
            KIND_EXIT => Event::Exit { pid: raw.pid, ns_pid: raw.ns_pid, wait_status: raw.value },
            KIND_SIGNAL => Event::Signal { target: raw.pid, sender: raw.other, signo: raw.value },
            KIND_DELIVER => {
                Event::Deliver { pid: raw.pid, ns_pid: raw.ns_pid, signo: raw.value, default_action: raw.aux != 0 }
            }
            other => return Err(ProbeError::BadEvent { reason: format!("unknown kind {other}") }),
        })
    }
}

fn parse_raw(bytes: &[u8]) -> Result<RawEvent, ProbeError> {
    if bytes.len() < RAW_EVENT_SIZE {
        return Err(ProbeError::BadEvent { reason: format!("{} bytes, expected {RAW_EVENT_SIZE}", bytes.len()) });
    }
    let word = |i: usize| {
        let at = i * 4;
        [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
    };
    let mut comm = [0u8; 16];
    comm.copy_from_slice(&bytes[24..40]);
    Ok(RawEvent {
        ns_pid: u32::from_ne_bytes(word(10)),
        ns_other: u32::from_ne_bytes(word(11)),
        kind: u32::from_ne_bytes(word(0)),
        pid: u32::from_ne_bytes(word(1)),
        tid: u32::from_ne_bytes(word(2)),
        other: u32::from_ne_bytes(word(3)),
        value: i32::from_ne_bytes(word(4)),
        aux: i32::from_ne_bytes(word(5)),
        comm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(raw: RawEvent) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [raw.kind, raw.pid, raw.tid, raw.other, raw.value as u32, raw.aux as u32] {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        v.extend_from_slice(&raw.comm);
        v.extend_from_slice(&raw.ns_pid.to_ne_bytes());
        v.extend_from_slice(&raw.ns_other.to_ne_bytes());
        v
    }

    #[test]
    fn decodes_each_kind() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        let exec = RawEvent { kind: KIND_EXEC, pid: 7, tid: 7, comm, ns_pid: 2, ..Default::default() };
        assert_eq!(Event::decode(&bytes(exec)).ok(), Some(Event::Exec { pid: 7, ns_pid: 2, comm: "true".into() }));
        let fork = RawEvent { kind: KIND_FORK, pid: 8, tid: 8, other: 7, ns_pid: 3, ns_other: 2, ..Default::default() };
        let expected = Event::Fork { parent: 7, child: 8, ns_parent: 2, ns_child: 3 };
        assert_eq!(Event::decode(&bytes(fork)).ok(), Some(expected));
        let exit = RawEvent { kind: KIND_EXIT, pid: 8, value: 3 << 8, ns_pid: 3, ..Default::default() };
        assert_eq!(Event::decode(&bytes(exit)).ok(), Some(Event::Exit { pid: 8, ns_pid: 3, wait_status: 768 }));
        let sig = RawEvent { kind: KIND_SIGNAL, pid: 8, other: 1, value: 9, ..Default::default() };
        assert_eq!(Event::decode(&bytes(sig)).ok(), Some(Event::Signal { target: 8, sender: 1, signo: 9 }));
        let deliver = RawEvent { kind: KIND_DELIVER, pid: 8, value: 19, aux: 1, ns_pid: 3, ..Default::default() };
        let expected = Event::Deliver { pid: 8, ns_pid: 3, signo: 19, default_action: true };
        assert_eq!(Event::decode(&bytes(deliver)).ok(), Some(expected));
        assert!(Event::decode(&[0; 8]).is_err());
        assert!(Event::decode(&bytes(RawEvent { kind: 99, ..Default::default() })).is_err());
    }
}
