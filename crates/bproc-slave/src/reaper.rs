//! Reaps every child that changes state: our processes (whose exact status
//! goes to the master) and orphans re-parented to us as PID 1 or subreaper.

use tokio::signal::unix::{signal, SignalKind};

use crate::procs::Procs;
use crate::sys;

/// Runs forever, reaping on every SIGCHLD.
pub async fn reap(procs: Procs) -> std::io::Result<()> {
    let mut sigchld = signal(SignalKind::child())?;
    loop {
        loop {
            match sys::wait_any() {
                Ok(Some(ev)) => procs.on_wait(ev),
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "waitpid failed");
                    break;
                }
            }
        }
        sigchld.recv().await;
    }
}
