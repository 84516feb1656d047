//! Process-wide settings of a daemon.

/// Gives freed heap memory back to the kernel. After a burst of clients
/// (a thousand connections at once) the heap would otherwise stay at its
/// peak for the life of the daemon.
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

/// This kernel's boot id: two processes with the same one share a host.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}
