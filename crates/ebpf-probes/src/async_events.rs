//! [`AsyncProbes`]: the probes with their ring buffer registered in tokio (`AsyncFd`), for the
//! daemons.

use aya::maps::{MapData, RingBuf};
use aya::Ebpf;
use tokio::io::{unix::AsyncFd, Interest};

use crate::{Event, ProbeError, Probes, Tracker};

/// Loaded probes whose events are awaited instead of polled. Dropping it detaches the probes.
pub struct AsyncProbes {
    events: AsyncFd<RingBuf<MapData>>,
    tracker: Tracker,
    _ebpf: Ebpf,
}

impl std::fmt::Debug for AsyncProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProbes").finish_non_exhaustive()
    }
}

impl AsyncProbes {
    /// Panics outside a tokio runtime with IO enabled (as tokio's `AsyncFd` does).
    pub(crate) fn new(probes: Probes) -> Result<Self, ProbeError> {
        let Probes { events, tracker, ebpf } = probes;
        // SAFETY: the RingBuf owns its map fd (an OwnedFd inside MapData) and is moved into the
        // AsyncFd, which owns it from here on; nothing else can close it, and as_raw_fd() always
        // returns that same fd until the AsyncFd is dropped.
        let events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|err| ProbeError::Poll { source: err.into() })?;
        Ok(Self { events, tracker, _ebpf: ebpf })
    }

    /// A handle on the tracked set (track/untrack/is_tracked), usable from other tasks.
    pub fn tracker(&self) -> Tracker {
        self.tracker.clone()
    }

    /// Waits for the next event. Cancel-safe: an event is taken from the ring only when returned.
    pub async fn next_event(&mut self) -> Result<Event, ProbeError> {
        loop {
            let mut guard = self.events.readable_mut().await.map_err(|source| ProbeError::Poll { source })?;
            if let Some(item) = guard.get_inner_mut().next() {
                return Event::decode(&item);
            }
            // Drained: only now may readiness be cleared, or a wakeup could be lost.
            guard.clear_ready();
        }
    }
}
