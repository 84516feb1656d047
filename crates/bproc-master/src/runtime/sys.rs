//! The master's few direct calls into libc.

pub use bproc_daemon::sys::{raise_nofile_limit, trim_memory};

/// The kernel's `pid_max` (the default, 32768, if it cannot be read).
pub fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32_768)
}

/// Starts the front end's slave (node -1): `bpslave --front-end` beside our
/// own program, as PID 1 of new PID and mount namespaces (`unshare`), killed
/// when we die (parent-death signal). It dials our slave port.
pub fn start_front_end_slave(listen: std::net::SocketAddr) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe()?;
    let slave = me.with_file_name("bpslave");
    let ip = if listen.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { listen.ip() };
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--"])
        .arg(slave)
        .arg("--master")
        .arg(std::net::SocketAddr::new(ip, listen.port()).to_string())
        .arg("--front-end")
        .stdin(std::process::Stdio::null());
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only
    // the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends SIGCONT to process `pid` if /proc says it is stopped (a ghost that
/// mirrors a stop; one that runs is left alone, it would pass the signal on).
pub fn continue_if_stopped(pid: i32) {
    let stopped = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "T")))
        .unwrap_or(false);
    if stopped {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGCONT);
    }
}
