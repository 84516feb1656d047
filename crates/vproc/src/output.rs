//! Writing remote output here: one writer thread per local stream, so a slow
//! reader of our stdout never stalls signal handling, and an acknowledgement
//! back to the node for every chunk once it is written (that is the flow
//! control of the whole path).

use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::mpsc as smpsc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Which process and stream a written chunk came from, and how many bytes
/// of the remote stream it accounts for.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub proc: usize,
    pub stream: i32,
    pub bytes: u64,
}

/// The writer thread of one local file descriptor, started on the first
/// chunk (a command with no output starts no thread).
pub struct Writer {
    fd: i32,
    acks: mpsc::UnboundedSender<Ack>,
    tx: Option<smpsc::Sender<(Bytes, Ack)>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// A writer for `fd` (1 or 2) that reports written chunks to `acks`.
    pub fn new(fd: i32, acks: mpsc::UnboundedSender<Ack>) -> Writer {
        Writer { fd, acks, tx: None, thread: None }
    }

    fn start(&mut self) -> &smpsc::Sender<(Bytes, Ack)> {
        let (fd, acks) = (self.fd, self.acks.clone());
        self.tx.get_or_insert_with(|| {
            let (tx, rx) = smpsc::channel::<(Bytes, Ack)>();
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
                    if ack.bytes > 0 {
                        let _ = acks.send(ack);
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
