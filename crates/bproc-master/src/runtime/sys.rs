//! The master's few direct calls into libc.

/// Gives freed heap memory back to the kernel. After a burst of clients
/// (a thousand connections at once) the heap would otherwise stay at its
/// peak for the life of the master.
pub fn trim_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) };
}

/// Raises the soft limit on open files to the hard one: a daemon holds one
/// or two descriptors per process it serves, and 1,024 is far too few.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the plain struct above.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

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
