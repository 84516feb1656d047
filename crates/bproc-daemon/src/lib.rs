//! What the two daemons, bpmaster and bpslave, share.
//!
//! # Layout
//! - [`checkpoint`]: CRIU (where it is, dumping a process, reading its
//!   errors), CRIU's names for a process's files, and images as streams of
//!   chunks.
//! - [`live`]: images that stream to their receiver while CRIU makes them.
//! - [`image`]: rewriting a one-process image for another PID (vrfork).
//! - [`sys`]: process-wide settings a daemon makes at start or after a burst.

pub mod checkpoint;
pub mod image;
pub mod live;
pub mod sys;
