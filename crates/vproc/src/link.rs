//! The ghost's end of its link to the master (`proto::frame`): a plain Unix
//! socket, written with blocking writes and read when poll says so.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use libbproc::proto::frame::{self, FrameError, Frames};
use libbproc::proto::v1;

/// The master's socket for ghosts: beside the clients' one.
pub fn ghost_socket() -> PathBuf {
    libbproc::client::socket_path().with_file_name(frame::GHOST_SOCKET)
}

pub struct Link {
    sock: UnixStream,
    frames: Frames,
    /// What each read fills (on the heap, and allocated once: a buffer on
    /// the stack would be zeroed at every call, and the stack pages it
    /// touched would stay with the ghost for good).
    buf: Vec<u8>,
}

/// Bytes one read takes at most.
const READ_SIZE: usize = 16 * 1024;

impl Link {
    /// Connects and says hello.
    pub fn connect() -> Result<Link, String> {
        let path = ghost_socket();
        let mut sock =
            UnixStream::connect(&path).map_err(|e| format!("cannot reach the master at {}: {e}", path.display()))?;
        sock.write_all(&frame::hello()).map_err(|e| format!("cannot reach the master at {}: {e}", path.display()))?;
        Ok(Link { sock, frames: Frames::default(), buf: vec![0; READ_SIZE] })
    }

    /// The descriptor to poll for what the master sends.
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    pub fn send(&mut self, msg: &v1::ExecIn) -> std::io::Result<()> {
        self.sock.write_all(&frame::encode(msg))
    }

    /// Reads what has arrived, without waiting (nothing, if nothing has):
    /// false once the master has closed the link.
    pub fn read_some(&mut self) -> std::io::Result<bool> {
        loop {
            // SAFETY: recv writes at most buf.len() bytes into our buffer.
            let n = unsafe {
                libc::recv(self.sock.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT)
            };
            if n >= 0 {
                self.frames.push(&self.buf[..n as usize]);
                return Ok(n > 0);
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                // Poll was wrong (or someone else read): nothing yet.
                std::io::ErrorKind::WouldBlock => return Ok(true),
                _ => return Err(e),
            }
        }
    }

    /// The next message read whole, if any.
    pub fn next_message(&mut self) -> Result<Option<v1::ExecOut>, FrameError> {
        self.frames.next_message()
    }

    /// Closes our side and reads (and drops) what the master still sends,
    /// until it closes its own.
    pub fn finish(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        while matches!(std::io::Read::read(&mut self.sock, &mut self.buf), Ok(n) if n > 0) {}
    }
}
