//! Wait statuses: describing them, choosing the worst of several, and
//! making the calling process end exactly as a remote one did.

/// How a process ended, decoded from a wait(2) status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled { signo: i32, core: bool },
}

impl Ended {
    pub fn from_status(status: i32) -> Ended {
        if libc::WIFSIGNALED(status) {
            Ended::Signaled { signo: libc::WTERMSIG(status), core: libc::WCOREDUMP(status) }
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// The exit code a shell shows for it (128+N for a signal).
    pub fn shell_code(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled { signo, .. } => 128 + signo,
        }
    }

    /// Ranks endings so that several nodes report their worst: any death by
    /// signal beats any exit code, a higher code beats a lower one.
    fn rank(self) -> (u8, i32) {
        match self {
            Ended::Exited(c) => (0, c),
            Ended::Signaled { signo, .. } => (1, signo),
        }
    }

    pub fn worst(all: impl IntoIterator<Item = Ended>) -> Option<Ended> {
        all.into_iter().max_by_key(|e| e.rank())
    }
}

/// Ends the calling process as `ended` says: exits with the code, or dies of
/// the same signal (with core dumps off, so no core file is left here).
pub fn end_like(ended: Ended) -> ! {
    if let Ended::Signaled { signo, .. } = ended {
        // SAFETY: plain calls on integers and a stack value: turn core dumps
        // off, restore the default action of `signo`, unblock it, raise it.
        unsafe {
            let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            libc::signal(signo, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signo);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signo);
        }
    }
    // Only reached for an exit code, or a signal whose default is not to kill.
    std::process::exit(ended.shell_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_ranks() {
        assert_eq!(Ended::from_status(7 << 8), Ended::Exited(7));
        assert_eq!(Ended::from_status(libc::SIGTERM), Ended::Signaled { signo: 15, core: false });
        assert_eq!(Ended::from_status(libc::SIGSEGV | 0x80), Ended::Signaled { signo: 11, core: true });
        assert_eq!(Ended::Signaled { signo: 15, core: false }.shell_code(), 143);
        let w = Ended::worst([Ended::Exited(0), Ended::Exited(3), Ended::Exited(1)]);
        assert_eq!(w, Some(Ended::Exited(3)));
        let w = Ended::worst([Ended::Exited(255), Ended::Signaled { signo: 9, core: false }]);
        assert_eq!(w, Some(Ended::Signaled { signo: 9, core: false }));
    }
}
