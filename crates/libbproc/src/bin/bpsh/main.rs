//! `bpsh NODES cmd args...`: run a program on cluster nodes as if it ran
//! here. stdin, stdout and stderr are forwarded byte for byte, signals sent
//! to bpsh reach the remote processes, and bpsh ends as the remote process
//! did (the worst of several).

mod args;
mod output;

use bytes::Bytes;
use libbproc::proto::v1::{self, exec_in, exec_out, proc_event::Kind};
use libbproc::wait_status::{end_like, Ended};
use libbproc::{client, nodeset, BprocError, Client};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use args::{Opts, Parsed};
use output::{Ack, LinePrefixer, Writer};

/// bpsh's own failures (no master, unknown or down node, denied).
const FAIL: i32 = 255;
/// Stdin bytes in flight to one process before we wait for the node.
const STDIN_WINDOW: u64 = 1 << 20;
const STDIN_CHUNK: usize = 128 * 1024;

fn main() {
    let opts = match args::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            std::process::exit(0)
        }
        Ok(Parsed::Version) => {
            println!("bpsh (bproc-rs) {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("bpsh: {e}\n{}", args::USAGE);
            std::process::exit(FAIL)
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bpsh: cannot start: {e}");
            std::process::exit(FAIL)
        }
    };
    let ended = rt.block_on(run(opts));
    drop(rt);
    end_like(ended)
}

async fn run(opts: Opts) -> Ended {
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
    let nodes = match select_nodes(&client, &opts).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("bpsh: {e}");
            return Ended::Exited(FAIL);
        }
    };
    let mut endings = Vec::new();
    if opts.serial {
        let mut nodes = nodes;
        nodes.sort_unstable();
        let null = opts.null_stdin || nodes.len() > 1;
        for node in &nodes {
            endings.extend(run_group(&client, &[*node], &opts, null, &mut sigs).await);
        }
    } else {
        endings.extend(run_group(&client, &nodes, &opts, opts.null_stdin, &mut sigs).await);
    }
    Ended::worst(endings).unwrap_or(Ended::Exited(0))
}

async fn select_nodes(client: &Client, opts: &Opts) -> Result<Vec<u32>, BprocError> {
    if let Some(spec) = &opts.nodes {
        return nodeset::parse(spec);
    }
    let table = client.nodes().await?;
    if opts.all {
        if let Some(n) = table.iter().find(|n| n.state != "up") {
            return Err(BprocError::NodeDown(format!("node {} is {}", n.node, n.state)));
        }
    }
    let up: Vec<u32> = table.iter().filter(|n| n.state == "up").map(|n| n.node).collect();
    if up.is_empty() {
        return Err(BprocError::NodeDown("no node is up".into()));
    }
    Ok(up)
}

/// The signals bpsh passes on, and job control.
struct Signals {
    forward: Vec<(i32, Signal)>,
    tstp: Signal,
    cont: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        let mut forward = Vec::new();
        for signo in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2] {
            forward.push((signo, signal(SignalKind::from_raw(signo))?));
        }
        Ok(Signals {
            forward,
            tstp: signal(SignalKind::from_raw(libc::SIGTSTP))?,
            cont: signal(SignalKind::from_raw(libc::SIGCONT))?,
        })
    }

    /// The next signal to pass on.
    async fn next(&mut self) -> i32 {
        let forward = std::future::poll_fn(|cx| {
            for (signo, s) in &mut self.forward {
                if s.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*signo);
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            signo = forward => signo,
            _ = self.tstp.recv() => libc::SIGTSTP,
            _ = self.cont.recv() => libc::SIGCONT,
        }
    }
}

/// One remote process of a group.
struct Remote {
    node: u32,
    tx: Option<mpsc::UnboundedSender<v1::ExecIn>>,
    started: bool,
    stopped: bool,
    ended: Option<Ended>,
    stdin_outstanding: u64,
    prefix: Vec<u8>,
    lines: [LinePrefixer; 2],
}

impl Remote {
    fn send(&self, msg: exec_in::Msg) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(v1::ExecIn { msg: Some(msg) });
        }
    }
    fn live(&self) -> bool {
        self.ended.is_none()
    }
}

enum Ev {
    Failed(BprocError),
    Msg(v1::ExecOut),
    Closed(Option<tonic::Status>),
}

/// Runs `argv` on each of `nodes` at once; returns how each ended.
async fn run_group(client: &Client, nodes: &[u32], opts: &Opts, null_stdin: bool, sigs: &mut Signals) -> Vec<Ended> {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(usize, Ev)>();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
    let mut writers = [Writer::new(1, ack_tx.clone()), Writer::new(2, ack_tx)];
    let mut remotes = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let start = client::start_here(*node, &opts.argv, null_stdin);
        let _ = tx.send(v1::ExecIn { msg: Some(exec_in::Msg::Start(start)) });
        remotes.push(Remote {
            node: *node,
            tx: Some(tx),
            started: false,
            stopped: false,
            ended: None,
            stdin_outstanding: 0,
            prefix: format!("{node}: ").into_bytes(),
            lines: Default::default(),
        });
        let client = client.clone();
        let ev_tx = ev_tx.clone();
        tokio::spawn(async move {
            let mut stream = match client.exec(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = ev_tx.send((i, Ev::Failed(e)));
                    return;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(m)) => {
                        if ev_tx.send((i, Ev::Msg(m))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(s) => {
                        let _ = ev_tx.send((i, Ev::Closed(Some(s))));
                        return;
                    }
                }
            }
            let _ = ev_tx.send((i, Ev::Closed(None)));
        });
    }
    drop(ev_tx);

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Bytes>>(1);
    let mut stdin_open = !null_stdin;
    if stdin_open {
        read_stdin(stdin_tx);
    }
    let argv0 = opts.argv[0].to_string_lossy().into_owned();
    let mut stop_pending = false;

    while remotes.iter().any(Remote::live) {
        let stdin_ready = stdin_open && remotes.iter().all(|r| !r.live() || r.stdin_outstanding < STDIN_WINDOW);
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some((i, ev)) = ev else { break };
                handle_event(i, &mut remotes[i], ev, opts.prefix, &mut writers, &argv0);
                if stop_pending && remotes.iter().filter(|r| r.live() && r.started).all(|r| r.stopped) {
                    stop_pending = false;
                    stop_self(&remotes);
                }
            }
            ack = ack_rx.recv() => {
                if let Some(ack) = ack {
                    remotes[ack.proc].send(exec_in::Msg::OutputAck(v1::StdioAck { id: 0, stream: ack.stream, bytes: ack.bytes }));
                }
            }
            chunk = stdin_rx.recv(), if stdin_ready => {
                let (data, eof) = match chunk {
                    Some(Some(d)) => (d, false),
                    _ => (Bytes::new(), true),
                };
                for r in remotes.iter_mut().filter(|r| r.live()) {
                    r.stdin_outstanding += data.len() as u64;
                    r.send(exec_in::Msg::Stdin(v1::StdioData { id: 0, stream: 0, data: data.clone(), eof }));
                }
                if eof {
                    stdin_open = false;
                }
            }
            signo = sigs.next() => {
                if signo == libc::SIGTSTP {
                    stop_pending = true;
                }
                for r in remotes.iter().filter(|r| r.live()) {
                    r.send(exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo }));
                }
            }
        }
    }
    for w in &mut writers {
        w.finish();
    }
    remotes.iter().map(|r| r.ended.unwrap_or(Ended::Exited(FAIL))).collect()
}

fn handle_event(i: usize, r: &mut Remote, ev: Ev, prefix: bool, writers: &mut [Writer; 2], argv0: &str) {
    match ev {
        Ev::Failed(e) => {
            eprintln!("bpsh: {}", with_node(r.node, &e.to_string()));
            r.ended = Some(Ended::Exited(FAIL));
            r.tx = None;
        }
        Ev::Closed(status) => {
            if r.live() {
                let why = status.map(|s| s.message().to_string()).unwrap_or_else(|| "stream ended".into());
                eprintln!("bpsh: node {}: lost the master: {why}", r.node);
                r.ended = Some(Ended::Exited(FAIL));
                r.tx = None;
            }
        }
        Ev::Msg(m) => match m.msg {
            Some(exec_out::Msg::Output(data)) => {
                let idx = if data.stream == v1::StdStream::Stderr as i32 { 1 } else { 0 };
                let ack = Ack { proc: i, stream: data.stream, bytes: data.data.len() as u64 };
                let bytes = if prefix { r.lines[idx].push(&r.prefix, &data.data, data.eof) } else { data.data };
                writers[idx].write(bytes, ack);
            }
            Some(exec_out::Msg::StdinAck(ack)) => {
                r.stdin_outstanding = r.stdin_outstanding.saturating_sub(ack.bytes);
            }
            Some(exec_out::Msg::Event(ev)) => match Kind::try_from(ev.kind) {
                Ok(Kind::Started) => r.started = true,
                Ok(Kind::ExecFailed) => {
                    let err = std::io::Error::from_raw_os_error(ev.errno);
                    eprintln!("bpsh: node {}: {argv0}: {}", r.node, strip_os_error(&err));
                }
                Ok(Kind::Stopped) => r.stopped = true,
                Ok(Kind::Continued) => r.stopped = false,
                Ok(Kind::Exited) => {
                    if ev.node_lost {
                        eprintln!("bpsh: node {} went down; its process is lost", r.node);
                    }
                    r.ended = Some(Ended::from_status(ev.wait_status));
                    r.tx = None;
                }
                _ => {}
            },
            None => {}
        },
    }
}

fn with_node(node: u32, msg: &str) -> String {
    if msg.contains(&format!("node {node}")) {
        msg.to_string()
    } else {
        format!("node {node}: {msg}")
    }
}

fn strip_os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Every remote process has stopped after our SIGTSTP: stop ourselves too,
/// and when we are continued, continue them.
fn stop_self(remotes: &[Remote]) {
    // SAFETY: raise takes a plain signal number.
    unsafe { libc::raise(libc::SIGSTOP) };
    for r in remotes.iter().filter(|r| r.live()) {
        r.send(exec_in::Msg::Signal(v1::SignalRequest { id: 0, signo: libc::SIGCONT }));
    }
}

/// Reads our stdin on a plain thread (a read of a terminal cannot be
/// cancelled, and must not hold up our exit).
fn read_stdin(tx: mpsc::Sender<Option<Bytes>>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; STDIN_CHUNK];
            match stdin.read(&mut buf) {
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
