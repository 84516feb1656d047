//! Reading `/proc`: process state, parent, start time, children, namespaces and `NSpid`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A process named by pid and start time, so a recycled pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcRef {
    pub(crate) pid: i32,
    /// Field 22 of `/proc/PID/stat` (clock ticks after boot).
    pub(crate) start_time: u64,
}

impl ProcRef {
    /// The process that has `pid` now, if any.
    pub(crate) fn of(pid: i32) -> Option<Self> {
        stat(pid).map(|s| ProcRef { pid, start_time: s.start_time })
    }

    /// Whether this very process still runs (exists and is not a zombie).
    pub(crate) fn is_running(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start_time == self.start_time && !s.is_dead())
    }
}

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// R, S, D, T, Z, X, ...
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) start_time: u64,
}

impl Stat {
    /// Zombie or dead: it no longer runs, only waits to be reaped.
    pub(crate) fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of the man page; fields[0] is field 3.
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(proc_path(pid, "stat")).ok()?)
}

/// Exists and is not a zombie.
pub(crate) fn is_running(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !s.is_dead())
}

/// The process's `comm` (at most 15 bytes of its program name).
pub(crate) fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(proc_path(pid, "comm")).ok().map(|s| s.trim_end_matches('\n').to_owned())
}

/// The process's argv.
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(proc_path(pid, "cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// Every pid in `/proc` (thread-group leaders only).
pub(crate) fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children of `pid`: from `/proc/PID/task/*/children`, or by scanning `/proc` for the ppid
/// where the kernel lacks that file.
pub(crate) fn children(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut have_file = false;
    for task in fs::read_dir(proc_path(pid, "task")).into_iter().flatten().flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            have_file = true;
            found.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    if !have_file {
        found = pids().into_iter().filter(|&p| stat(p).is_some_and(|s| s.ppid == pid)).collect();
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Parses the `NSpid:` line of `/proc/PID/status`: the pid in every PID namespace the process is
/// in, from the one of this `/proc` down to its own.
pub(crate) fn parse_nspid(status: &str) -> Option<Vec<i32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let pids: Option<Vec<i32>> = line.split_whitespace().map(|p| p.parse().ok()).collect();
    pids.filter(|p| !p.is_empty())
}

pub(crate) fn nspid(pid: i32) -> Option<Vec<i32>> {
    parse_nspid(&fs::read_to_string(proc_path(pid, "status")).ok()?)
}

/// The identity (device, inode) of one of the process's namespaces, `kind` being e.g. "pid" or
/// "net"; comparable with [`file_id`] of a bind-mounted namespace file.
pub(crate) fn ns_id(pid: i32, kind: &str) -> Option<(u64, u64)> {
    let meta = fs::metadata(proc_path(pid, "ns").join(kind)).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The (device, inode) of a file, following symlinks.
pub(crate) fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

fn proc_path(pid: i32, entry: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{entry}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let text = "4061 (a) b) (c) S 1890 4061 1890 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 \
                    123456 5967872 213 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(text).expect("parse");
        assert_eq!(s, Stat { state: 'S', ppid: 1890, start_time: 123_456 });
        assert!(!s.is_dead());
        assert!(parse_stat("12 (x) Z 1").is_none());
    }

    #[test]
    fn nspid_lines() {
        let status = "Name:\tbpslave\nTgid:\t3968\nNSpid:\t3968\t1\nPPid:\t3966\n";
        assert_eq!(parse_nspid(status), Some(vec![3968, 1]));
        assert_eq!(parse_nspid("NSpid:\t42\n"), Some(vec![42]));
        assert_eq!(parse_nspid("NSpid:\t42 x\n"), None);
        assert_eq!(parse_nspid("NSpid:\n"), None);
        assert_eq!(parse_nspid("Name:\tx\n"), None);
    }

    #[test]
    fn this_process() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let r = ProcRef::of(me).expect("self");
        assert!(r.is_running());
        let stale = ProcRef { start_time: r.start_time + 1, ..r };
        assert!(!stale.is_running());
        assert!(pids().contains(&me));
        assert_eq!(nspid(me).and_then(|p| p.first().copied()), Some(me));
        assert!(ns_id(me, "pid").is_some());
        assert!(cmdline(me).is_some_and(|argv| !argv.is_empty()));
        assert!(comm(me).is_some());
    }

    #[test]
    fn children_of_this_process() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid fits");
        let me = i32::try_from(std::process::id()).expect("pid fits");
        assert!(children(me).contains(&pid));
        assert_eq!(stat(pid).map(|s| s.ppid), Some(me));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!is_running(pid));
    }
}
