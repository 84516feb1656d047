//! Byte credit for one output stream: the reader may hold at most `window`
//! bytes that the far end has not acknowledged yet.

use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct Credit(Arc<Semaphore>);

impl Credit {
    pub fn new(window: usize) -> Self {
        Credit(Arc::new(Semaphore::new(window)))
    }

    /// Waits until `n` bytes may be sent, and takes them.
    pub async fn take(&self, n: usize) {
        if let Ok(permit) = self.0.acquire_many(n as u32).await {
            permit.forget();
        }
    }

    /// Gives back bytes that were taken but not used.
    pub fn give(&self, n: usize) {
        self.0.add_permits(n);
    }

    /// The far end acknowledged `n` bytes.
    pub fn ack(&self, n: u64, window: usize) {
        // Never let a bogus ack grow the window past its size.
        let room = window.saturating_sub(self.0.available_permits());
        self.0.add_permits((n as usize).min(room));
    }

    /// Wakes any waiter for good (the stream is gone).
    pub fn close(&self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_waits_for_acks() {
        let c = Credit::new(10);
        c.take(8).await;
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.take(5).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.ack(100, 10);
        waiter.await.expect("joined");
        c.ack(1000, 10);
        assert_eq!(c.0.available_permits(), 10, "a bogus ack cannot grow the window");
    }
}
