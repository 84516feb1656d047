//! Writing remote output here: one writer thread per local stream, so a slow
//! reader of our stdout never stalls signal handling, and an acknowledgement
//! back to the node for every chunk once it is written (that is the flow
//! control of the whole path).

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};

/// Which process and stream a written chunk came from, and how many bytes
/// of the remote stream it accounts for.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub proc: usize,
    pub stream: i32,
    pub bytes: u64,
}

/// Wakes the ghost's poll loop from another thread: a byte into a pipe the
/// loop polls (a full pipe wakes it as well, so a failed write is fine).
#[derive(Clone)]
pub struct Wake(Arc<OwnedFd>);

impl Wake {
    /// A waker and the end to poll (both close-on-exec; the end to poll is
    /// non-blocking, for [`drain`]).
    pub fn pipe() -> std::io::Result<(Wake, OwnedFd)> {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two new descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here alone.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Wake(Arc::new(w)), r))
    }

    pub fn wake(&self) {
        // SAFETY: writes one byte from a local into a descriptor we own.
        unsafe { libc::write(self.0.as_raw_fd(), b"w".as_ptr().cast(), 1) };
    }
}

/// Empties the polled end of a [`Wake`] pipe.
pub fn drain(r: &OwnedFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a local buffer from a non-blocking descriptor we own.
    while unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// The writer thread of one local file descriptor, started on the first
/// chunk (a command with no output starts no thread).
pub struct Writer {
    fd: i32,
    acks: mpsc::Sender<Ack>,
    wake: Wake,
    tx: Option<mpsc::Sender<(Bytes, Ack)>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// A writer for `fd` (1 or 2) that reports written chunks to `acks`,
    /// and wakes the loop by `wake` when it does.
    pub fn new(fd: i32, acks: mpsc::Sender<Ack>, wake: Wake) -> Writer {
        Writer { fd, acks, wake, tx: None, thread: None }
    }

    fn start(&mut self) -> &mpsc::Sender<(Bytes, Ack)> {
        let (fd, acks, wake) = (self.fd, self.acks.clone(), self.wake.clone());
        self.tx.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<(Bytes, Ack)>();
            self.thread = Some(std::thread::spawn(move || {
                // SAFETY: fd 1 or 2 stays open for the life of the process; the
                // ManuallyDrop keeps this File from closing it.
                let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
                let mut broken = false;
                for (data, ack) in rx {
                    if !broken && !data.is_empty() && file.write_all(&data).is_err() {
                        // Our reader went away: keep draining so the node is
                        // never blocked on us.
                        broken = true;
                    }
                    if ack.bytes > 0 && acks.send(ack).is_ok() {
                        wake.wake();
                    }
                }
            }));
            tx
        })
    }

    pub fn write(&mut self, data: Bytes, ack: Ack) {
        let _ = self.start().send((data, ack));
    }

    /// Waits until everything queued has been written.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Longest partial line held back in `-p` mode before it is written anyway.
const MAX_PARTIAL: usize = 64 * 1024;

/// Prefixes each output line with its node number (`-p`).
#[derive(Default)]
pub struct LinePrefixer {
    partial: BytesMut,
}

impl LinePrefixer {
    /// Takes a chunk and returns the complete lines in it, each prefixed.
    pub fn push(&mut self, prefix: &[u8], data: &[u8], eof: bool) -> Bytes {
        self.partial.extend_from_slice(data);
        let mut out = BytesMut::new();
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line = self.partial.split_to(pos + 1);
            out.extend_from_slice(prefix);
            out.extend_from_slice(&line);
        }
        if (eof || self.partial.len() > MAX_PARTIAL) && !self.partial.is_empty() {
            let rest = self.partial.split();
            out.extend_from_slice(prefix);
            out.extend_from_slice(&rest);
            out.extend_from_slice(b"\n");
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_whole_lines_only() {
        let mut p = LinePrefixer::default();
        assert_eq!(&p.push(b"3: ", b"a\nb", false)[..], b"3: a\n");
        assert_eq!(&p.push(b"3: ", b"c\n\n", false)[..], b"3: bc\n3: \n");
        assert_eq!(&p.push(b"3: ", b"tail", true)[..], b"3: tail\n");
        assert_eq!(&p.push(b"3: ", b"", true)[..], b"");
    }
}
