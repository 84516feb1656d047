//! SIGKILL and SIGSTOP of ghosts, and their deaths. A ghost cannot catch
//! those signals, so it cannot forward them: the eBPF probe on
//! `signal_generate` reports them for the ghosts we track, and the master
//! passes them on to the remote processes. A ghost's exit matters when it
//! had detached (to re-exec) or had yet to fork a child's ghost.

use std::sync::Arc;

use ebpf_probes::{Event, Probes};

use super::Shared;

/// Loads the probes and watches ghost signals for the life of the master.
/// Without the probes (no root, no BPF), everything else still works and
/// the error says what is lost.
pub fn start(shared: Arc<Shared>) {
    let mut probes = match Probes::load().and_then(Probes::into_async) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(
                error = %e,
                "eBPF probes not loaded: SIGKILL and SIGSTOP sent to ghosts will not reach remote processes"
            );
            return;
        }
    };
    let _ = shared.ghosts.set(probes.tracker());
    tokio::spawn(async move {
        loop {
            match probes.next_event().await {
                Ok(Event::Signal { target, sender, signo }) => {
                    // A ghost stopping or killing itself (mirroring its
                    // remote process) is not news for the node.
                    if (signo == libc::SIGKILL || signo == libc::SIGSTOP) && sender != target {
                        let mut st = shared.lock();
                        let effect = st.engine.ghost_signaled(target as i32, signo);
                        if effect.is_some() {
                            tracing::debug!(ghost = target, sender, signo, "passing on an uncatchable signal");
                        }
                        st.apply(effect.into_iter().collect());
                    }
                }
                Ok(Event::Exit { pid, .. }) => shared.lock().ghost_exited(pid as i32, std::time::Instant::now()),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "eBPF event stream failed");
                    return;
                }
            }
        }
    });
}
