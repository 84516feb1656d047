//! The few system calls the harness makes itself: sending signals, and `setsid` in a child
//! before exec. The only `unsafe` of the crate lives here.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::HarnessError;

/// Sends `signal` (0 = only probe) to `pid`. Returns `Ok(false)` if there is no such process.
pub(crate) fn send_signal(pid: i32, signal: i32) -> Result<bool, HarnessError> {
    let fail = |source| HarnessError::Signal { pid, signal, source };
    if pid <= 0 {
        // kill(0 or negative) would signal process groups, never what the harness means.
        return Err(fail(Errno::EINVAL));
    }
    let sig = if signal == 0 { None } else { Some(Signal::try_from(signal).map_err(fail)?) };
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(err) => Err(fail(err)),
    }
}

/// [`send_signal`] for cleanup paths: a failure is returned as text instead of an error.
pub(crate) fn signal_quietly(pid: i32, signal: i32) -> Option<String> {
    send_signal(pid, signal).err().map(|e| {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        format!("{e}{cause}")
    })
}

/// Makes the child of `cmd` leader of a new session (and so of a new process group) before it
/// execs, so signals sent to the caller's terminal or group never reach the daemons.
pub(crate) fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // functions may be called; it calls only setsid(2), which is async-signal-safe, allocates
    // nothing and touches no lock. A child of a fork is never a group leader, so setsid succeeds.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        let mut child = Command::new("sleep").arg("10").spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        assert!(send_signal(pid, 0).expect("probe"));
        assert!(send_signal(pid, libc_sigkill()).expect("kill"));
        child.wait().expect("wait");
        assert!(!send_signal(pid, 0).expect("probe gone"));
        assert!(send_signal(0, 9).is_err());
        assert!(send_signal(pid, 1000).is_err());
    }

    #[test]
    fn child_gets_its_own_session() {
        let mut cmd = Command::new("sleep");
        cmd.arg("10");
        new_session(&mut cmd);
        let mut child = cmd.spawn().expect("spawn");
        let pid = child.id().to_string();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after = &stat[stat.rfind(')').expect("comm") + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        child.kill().expect("kill");
        child.wait().expect("wait");
        // fields[2] is the process group, fields[3] the session (fields 5 and 6 of stat).
        assert_eq!((fields[2], fields[3]), (pid.as_str(), pid.as_str()), "{stat}");
    }

    fn libc_sigkill() -> i32 {
        Signal::SIGKILL as i32
    }
}
