//! The ghosts' link to the master: length-delimited protobuf messages on a
//! plain Unix stream socket (`ghosts.sock`, beside the clients' socket).
//!
//! A ghost mostly waits, and there may be thousands of them: a gRPC client
//! (HTTP/2, its buffers and its runtime) costs each one more memory than all
//! the rest of it. So a ghost speaks the messages of the `Exec` call
//! ([`v1::ExecIn`] in, [`v1::ExecOut`] out) without gRPC:
//!
//! - the ghost opens with [`hello`]: `BPGH` and its protocol version (u32,
//!   little-endian);
//! - then each message is a frame: its length (u32, little-endian) and its
//!   protobuf encoding, at most [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE);
//! - the master says a refusal or failure with a last [`v1::ExecError`] frame
//!   and closes; a ghost that is done shuts its side down, and the master
//!   closes its own once it has read everything.

use crate::v1;

/// The ghosts' socket's file name, beside the clients' socket.
pub const GHOST_SOCKET: &str = "ghosts.sock";

/// The first bytes of a ghost link.
pub const MAGIC: [u8; 4] = *b"BPGH";
/// Length of [`hello`].
pub const HELLO_LEN: usize = 8;

/// What a ghost sends first.
pub fn hello() -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&crate::PROTOCOL_VERSION.to_le_bytes());
    h
}

/// Checks a ghost's hello: the error says what is wrong.
pub fn check_hello(h: &[u8; HELLO_LEN]) -> Result<(), String> {
    if h[..4] != MAGIC {
        return Err("not a ghost link (bad magic)".into());
    }
    crate::check_version("ghost", u32::from_le_bytes([h[4], h[5], h[6], h[7]]))
}

/// `msg` as one frame.
pub fn encode<M: prost::Message>(msg: &M) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    // Encoding into a Vec cannot run out of room.
    let _ = msg.encode(&mut out);
    out
}

/// The frame that ends a link with the master's error.
pub fn error_frame(code: i32, message: &str) -> Vec<u8> {
    encode(&v1::ExecOut { msg: Some(v1::exec_out::Msg::Error(v1::ExecError { code, message: message.into() })) })
}

/// Why a byte stream is not a stream of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame longer than [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE).
    TooBig(usize),
    /// A frame that is not the message expected.
    Decode(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooBig(n) => {
                write!(f, "a frame of {n} bytes (at most {} allowed)", crate::MAX_MESSAGE_SIZE)
            }
            FrameError::Decode(e) => write!(f, "a frame that does not decode: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Bytes read so far, cut into frames as they complete.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    at: usize,
}

impl Frames {
    /// Adds bytes read from the link.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame as a message, if one has arrived.
    pub fn next_message<M: prost::Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        let rest = &self.buf[self.at..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > crate::MAX_MESSAGE_SIZE {
            return Err(FrameError::TooBig(len));
        }
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let msg = M::decode(&rest[4..4 + len]).map_err(|e| FrameError::Decode(e.to_string()));
        self.at += 4 + len;
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at > 64 * 1024 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        msg.map(Some)
    }

    /// Bytes of an unfinished frame (a link that ends with some lost them).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdin(data: &[u8]) -> v1::ExecIn {
        v1::ExecIn {
            msg: Some(v1::exec_in::Msg::Stdin(v1::StdioData {
                id: 0,
                stream: 0,
                data: data.to_vec().into(),
                eof: false,
            })),
        }
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        let msgs: Vec<v1::ExecIn> = (0..50).map(|i| stdin(&vec![i as u8; i * 37])).collect();
        let bytes: Vec<u8> = msgs.iter().flat_map(encode).collect();
        for step in [1, 3, 7, 100, bytes.len()] {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                frames.push(chunk);
                while let Some(m) = frames.next_message::<v1::ExecIn>().expect("decodes") {
                    got.push(m);
                }
            }
            assert_eq!(got, msgs, "in pieces of {step}");
            assert_eq!(frames.pending(), 0);
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_crash() {
        let mut frames = Frames::default();
        frames.push(&u32::MAX.to_le_bytes());
        assert_eq!(frames.next_message::<v1::ExecIn>(), Err(FrameError::TooBig(u32::MAX as usize)));
        let mut frames = Frames::default();
        frames.push(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(frames.next_message::<v1::ExecIn>(), Err(FrameError::Decode(_))));
        assert!(check_hello(b"HTTP/1.1").is_err());
        let mut old = hello();
        old[4] = 99;
        assert!(check_hello(&old).expect_err("version").contains("version 99"));
        assert!(check_hello(&hello()).is_ok());
    }
}
