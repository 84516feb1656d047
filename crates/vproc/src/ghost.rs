//! The ghost's loop: start the remote process with our own PID, relay its
//! stdio, forward the signals we get, mirror its stops, and report how it
//! ended.

use std::ffi::OsString;

use bytes::Bytes;
use libbproc::proto::v1::{self, exec_in, exec_out, proc_event::Kind};
use libbproc::wait_status::Ended;
use libbproc::{client, Client};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::output::{Ack, LinePrefixer, Writer};
use crate::spec::GhostSpec;

/// A ghost's own failures (no master, unknown or down node, denied), as bpsh reports them.
pub const FAIL: i32 = 255;
/// Stdin bytes in flight before we wait for the node.
const STDIN_WINDOW: u64 = 1 << 20;
const STDIN_CHUNK: usize = 128 * 1024;

/// The catchable signals a ghost passes on to its remote process. SIGTSTP
/// and SIGCONT are among them: the remote process stops, then the ghost
/// stops itself (see [`run`]).
const FORWARDED: [i32; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGWINCH,
    libc::SIGTSTP,
    libc::SIGCONT,
];

struct Signals(Vec<(i32, Signal)>);

impl Signals {
    fn new() -> std::io::Result<Signals> {
        FORWARDED
            .iter()
            .map(|s| Ok((*s, signal(SignalKind::from_raw(*s))?)))
            .collect::<std::io::Result<_>>()
            .map(Signals)
    }

    async fn next(&mut self) -> i32 {
        std::future::poll_fn(|cx| {
            for (signo, s) in &mut self.0 {
                if s.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*signo);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Runs the remote process `argv` as the ghost of this process and returns
/// how it ended.
pub async fn run(spec: &GhostSpec, argv: Vec<OsString>, env: Vec<(OsString, OsString)>) -> Ended {
    let mut sigs = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bpsh: cannot handle signals: {e}");
            return Ended::Exited(FAIL);
        }
    };
    let client = match Client::connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bpsh: {e}");
            return Ended::Exited(FAIL);
        }
    };
    let mut start = client::start_here(spec.node, &argv, spec.stdin_null);
    start.env = client::env_bytes(env);
    start.pid = std::process::id() as i32;
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(v1::ExecIn { msg: Some(exec_in::Msg::Start(start)) });
    let send = |msg| {
        let _ = tx.send(v1::ExecIn { msg: Some(msg) });
    };
    let mut stream = match client.exec(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            let node = format!("node {}", spec.node);
            if msg.contains(&node) {
                eprintln!("bpsh: {msg}");
            } else {
                eprintln!("bpsh: {node}: {msg}");
            }
            return Ended::Exited(FAIL);
        }
    };

    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
    let mut writers = [Writer::new(1, ack_tx.clone()), Writer::new(2, ack_tx)];
    let mut lines: [LinePrefixer; 2] = Default::default();
    let prefix = format!("{}: ", spec.node).into_bytes();
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Bytes>>(1);
    let mut stdin_open = !spec.stdin_null;
    if stdin_open {
        read_stdin(stdin_tx);
    }
    let mut stdin_outstanding = 0u64;
    let argv0 = argv[0].to_string_lossy().into_owned();

    let ended = loop {
        tokio::select! {
            msg = stream.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        eprintln!("bpsh: node {}: lost the master", spec.node);
                        break Ended::Exited(FAIL);
                    }
                    Err(s) => {
                        eprintln!("bpsh: node {}: lost the master: {}", spec.node, s.message());
                        break Ended::Exited(FAIL);
                    }
                };
                match msg.msg {
                    Some(exec_out::Msg::Output(data)) => {
                        let idx = usize::from(data.stream == v1::StdStream::Stderr as i32);
                        let ack = Ack { proc: 0, stream: data.stream, bytes: data.data.len() as u64 };
                        let bytes = if spec.prefix { lines[idx].push(&prefix, &data.data, data.eof) } else { data.data };
                        writers[idx].write(bytes, ack);
                    }
                    Some(exec_out::Msg::StdinAck(ack)) => stdin_outstanding = stdin_outstanding.saturating_sub(ack.bytes),
                    Some(exec_out::Msg::Event(ev)) => match Kind::try_from(ev.kind) {
                        Ok(Kind::ExecFailed) => {
                            let err = std::io::Error::from_raw_os_error(ev.errno);
                            let text = err.to_string();
                            let text = text.split(" (os error").next().unwrap_or(&text);
                            eprintln!("bpsh: node {}: {argv0}: {text}", spec.node);
                        }
                        Ok(Kind::Stopped) => {
                            // Mirror the stop: our parent and `ps` see us
                            // stopped while the remote process is. When we
                            // are continued, so is it.
                            // SAFETY: raise takes a plain signal number.
                            unsafe { libc::raise(libc::SIGSTOP) };
                            send(exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo: libc::SIGCONT }));
                        }
                        Ok(Kind::Exited) => {
                            if ev.node_lost {
                                eprintln!("bpsh: node {} went down; its process is lost", spec.node);
                            }
                            break Ended::from_status(ev.wait_status);
                        }
                        _ => {}
                    },
                    None => {}
                }
            }
            ack = ack_rx.recv() => {
                if let Some(ack) = ack {
                    send(exec_in::Msg::OutputAck(v1::StdioAck { id: 0, stream: ack.stream, bytes: ack.bytes }));
                }
            }
            chunk = stdin_rx.recv(), if stdin_open && stdin_outstanding < STDIN_WINDOW => {
                let (data, eof) = match chunk {
                    Some(Some(d)) => (d, false),
                    _ => (Bytes::new(), true),
                };
                stdin_outstanding += data.len() as u64;
                send(exec_in::Msg::Stdin(v1::StdioData { id: 0, stream: 0, data, eof }));
                stdin_open = !eof;
            }
            signo = sigs.next() => {
                send(exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo }));
            }
        }
    };
    for w in &mut writers {
        w.finish();
    }
    ended
}

/// Whether we are in the foreground process group of the terminal on fd 0.
fn in_foreground() -> bool {
    // SAFETY: plain calls on fd 0 and our own process group.
    unsafe { libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Reads our stdin on a plain thread (a read of a terminal cannot be
/// cancelled, and must not hold up our exit).
///
/// On a terminal, a ghost in the background must neither steal the
/// foreground's input nor stop on SIGTTIN before it has passed a SIGCONT on
/// (`bg` would then leave the remote process stopped). So SIGTTIN is
/// ignored, a background read fails with EIO, and we wait until our job is
/// in the foreground again.
fn read_stdin(tx: mpsc::Sender<Option<Bytes>>) {
    // SAFETY: isatty only inspects fd 0.
    let tty = unsafe { libc::isatty(0) } == 1;
    if tty {
        // SAFETY: ignoring a signal installs no handler code.
        unsafe { libc::signal(libc::SIGTTIN, libc::SIG_IGN) };
    }
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; STDIN_CHUNK];
            match stdin.read(&mut buf) {
                Err(e) if tty && e.raw_os_error() == Some(libc::EIO) && !in_foreground() => {
                    // No event says "you are in the foreground now": look
                    // again a little later.
                    while !in_foreground() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
                Ok(n) if n > 0 => {
                    buf.truncate(n);
                    if tx.blocking_send(Some(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => {
                    let _ = tx.blocking_send(None);
                    return;
                }
            }
        }
    });
}
