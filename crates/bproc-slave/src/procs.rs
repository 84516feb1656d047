//! The slave's process table: spawning, stdio relay, signals and the exact
//! wait status of every process the master asked for.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use proto::v1::{self, proc_event::Kind, slave_msg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use proto::v1::slave_link_client::SlaveLinkClient;
use tonic::transport::Channel;

use crate::credit::Credit;
use crate::restore;
use crate::sys::{self, ExecPlan, WaitEvent};

/// Largest chunk read from a process's output at once.
const CHUNK: usize = 256 * 1024;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub type Outbox = mpsc::UnboundedSender<v1::SlaveMsg>;

enum StdinCmd {
    Data(Bytes),
    Eof,
}

/// One process, from spawn until its EXITED event is sent. It outlives the
/// process itself: output still in its pipes after it exits is relayed
/// (and acknowledged) through it.
struct Entry {
    /// `None` once the process has been reaped.
    pid: Option<i32>,
    stdin: Option<mpsc::UnboundedSender<StdinCmd>>,
    credits: [Credit; 2],
    exit: Option<oneshot::Sender<i32>>,
    /// The link that asked for the process, which hears about it.
    out: Outbox,
    /// It moved to another node: the end of this copy is not its end.
    moved: bool,
}

/// A process that one of ours forked on the node (seen by the eBPF fork
/// probe). It shares its parent's stdio; we learn of its exec and exit from
/// the probes, since its parent, not we, reaps it.
struct Forked {
    pid: i32,
    out: Outbox,
    /// Its pid outside the node (the probes name signals' targets so).
    host_pid: u32,
    /// Stopped by a stop signal (seen delivered) and not continued since.
    stopped: bool,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Entry>,
    /// Node PID -> id of the processes we spawned (and reap).
    id_of: HashMap<i32, u64>,
    forked: HashMap<u64, Forked>,
    /// Node PID -> id of the forked ones.
    forked_of: HashMap<i32, u64>,
    /// Host PID -> id of the forked ones.
    forked_host: HashMap<u32, u64>,
    /// Ids for forked processes: `fork_base + n` (the master's welcome).
    fork_base: u64,
    fork_next: u32,
    /// The current link's client, for the calls a move makes.
    link_client: Option<SlaveLinkClient<Channel>>,
}

impl Table {
    /// The id and link of the process with node PID `pid`, spawned or forked.
    fn find(&self, pid: i32) -> Option<(u64, &Outbox)> {
        if let Some(id) = self.id_of.get(&pid) {
            return self.by_id.get(id).map(|e| (*id, &e.out));
        }
        let id = self.forked_of.get(&pid)?;
        self.forked.get(id).map(|f| (*id, &f.out))
    }
}

/// Every process this slave runs, whichever link asked for it.
#[derive(Clone)]
pub struct Procs {
    table: Arc<Mutex<Table>>,
    /// Held around every fork of ours: while CRIU restores a process, fds
    /// it must inherit are open without close-on-exec, and no spawned
    /// process may inherit them too.
    fork_lock: Arc<Mutex<()>>,
    /// Output credit per stream, as the master's welcome set it.
    window: Arc<AtomicUsize>,
    /// Images this node passes on to other nodes.
    pub shelf: crate::image_peer::Shelf,
    /// The master's image socket, when it runs on this host.
    image_socket: Arc<Mutex<Option<std::path::PathBuf>>>,
    /// Where this node serves its images to peers on the same host.
    peer_socket: Arc<Mutex<Option<std::path::PathBuf>>>,
}

fn send(out: &Outbox, msg: slave_msg::Msg) {
    let _ = out.send(v1::SlaveMsg { msg: Some(msg) });
}

fn event(out: &Outbox, id: u64, kind: Kind, f: impl FnOnce(&mut v1::ProcEvent)) {
    let mut ev = v1::ProcEvent { id, kind: kind as i32, ..Default::default() };
    f(&mut ev);
    send(out, slave_msg::Msg::Event(ev));
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
}

/// Turns a spawn request into an exec plan (the PATH search list comes from
/// the caller's own environment, as execvp would do it).
pub fn plan(req: &v1::SpawnRequest) -> Result<ExecPlan, String> {
    let cred = req.cred.as_ref().ok_or("spawn without credentials")?;
    let argv = req.argv.iter().map(|a| cstring(a, "argument")).collect::<Result<Vec<_>, _>>()?;
    let prog = req.argv.first().ok_or("empty command line")?;
    let envp = req.env.iter().map(|e| cstring(e, "environment entry")).collect::<Result<Vec<_>, _>>()?;
    let candidates = if prog.contains(&b'/') {
        vec![cstring(prog, "program")?]
    } else {
        let path = req.env.iter().find_map(|e| e.strip_prefix(b"PATH=")).unwrap_or(DEFAULT_PATH.as_bytes());
        path.split(|b| *b == b':')
            .map(|dir| {
                let dir = if dir.is_empty() { &b"."[..] } else { dir };
                let mut full = dir.to_vec();
                full.push(b'/');
                full.extend_from_slice(prog);
                cstring(&full, "program path")
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(ExecPlan {
        candidates,
        argv,
        envp,
        cwd: cstring(if req.cwd.is_empty() { b"/" } else { &req.cwd }, "directory")?,
        umask: req.umask & 0o777,
        uid: cred.uid,
        gid: cred.gid,
        groups: cred.groups.clone(),
        stdin_null: req.stdin_null,
        pid: (req.pid > 0).then_some(req.pid),
    })
}

impl Procs {
    pub fn new(window: usize) -> Self {
        Procs {
            table: Arc::default(),
            fork_lock: Arc::default(),
            window: Arc::new(AtomicUsize::new(window)),
            shelf: Default::default(),
            image_socket: Arc::default(),
            peer_socket: Arc::default(),
        }
    }

    /// Where images from the master come from: its Unix socket on this host,
    /// or (`None`) the link.
    pub fn set_image_socket(&self, path: Option<std::path::PathBuf>) {
        *self.image_socket.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    /// Serves this node's images to peers on the same host on the Unix
    /// socket `path` (once: a later link names the same path).
    pub fn serve_peers_on(&self, path: &std::path::Path) {
        let mut serving = self.peer_socket.lock().unwrap_or_else(|p| p.into_inner());
        if serving.as_deref() == Some(path) {
            return;
        }
        match crate::image_peer::serve_unix(self.shelf.clone(), path) {
            Ok(()) => *serving = Some(path.to_path_buf()),
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot serve images on a Unix socket"),
        }
    }

    /// The Unix socket this node serves its images on, if any.
    pub fn peer_socket(&self) -> Option<std::path::PathBuf> {
        self.peer_socket.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the output credit of processes started from now on.
    pub fn set_window(&self, window: usize) {
        self.window.store(window.clamp(CHUNK, 1 << 30), Ordering::Relaxed);
    }

    fn window(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current link's client (a move streams its image through it).
    pub fn set_link_client(&self, client: SlaveLinkClient<Channel>) {
        self.lock().link_client = Some(client);
    }

    /// Moves process `pid` of this node (waiting on its marker pipe, fd
    /// `marker_fd`) to `node`: checkpoint it here (left running: the caller's
    /// helper tells it how the move went), stream the image to the master,
    /// which has `node` restore it. On success this copy is marked moved, so
    /// its end is not reported.
    pub async fn move_out(&self, pid: i32, node: i32, marker_fd: i32) -> Result<(), tonic::Status> {
        use tonic::Status;
        let (id, client) = {
            let t = self.lock();
            let id = t
                .find(pid)
                .map(|(id, _)| id)
                .ok_or_else(|| Status::not_found(format!("{pid} is no process of bproc's")))?;
            let client = t.link_client.clone().ok_or_else(|| Status::unavailable("no link to the master"))?;
            (id, client)
        };
        let keys: Vec<String> =
            [0, 1, 2, marker_fd].iter().map(|fd| bproc_daemon::checkpoint::file_key(pid, *fd).0).collect();
        if !keys[3].starts_with("pipe:[") {
            return Err(Status::invalid_argument(format!("fd {marker_fd} of {pid} is not a pipe")));
        }
        // The image streams to the master while CRIU makes it.
        let dir = restore::ImageDir::new().map_err(Status::internal)?;
        let (mut chunks, end) = bproc_daemon::live::live_image(dir.path())
            .map_err(|e| Status::internal(format!("the pages' FIFO: {e}")))?;
        let dump = {
            let (procs, path) = (self.clone(), dir.path().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let _forking = procs.fork_lock.lock().unwrap_or_else(|p| p.into_inner());
                let result = restore::dump(pid, &path);
                let _ = end.send(Some(result.clone()));
                result
            })
        };
        let header = v1::MoveOutHeader {
            id,
            node,
            pid,
            stdin_key: keys[0].clone(),
            stdout_key: keys[1].clone(),
            stderr_key: keys[2].clone(),
            marker_key: keys[3].clone(),
        };
        let (tx, rx) = mpsc::channel(4);
        let first = v1::MoveOutChunk { msg: Some(v1::move_out_chunk::Msg::Header(header)) };
        let _ = tx.send(first).await;
        // A failed dump ends the call (the master's side then fails too);
        // an image that is through ends the stream.
        let (failed_tx, failed) = oneshot::channel::<String>();
        let sender = tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                match chunk {
                    Ok(chunk) => {
                        let msg = v1::MoveOutChunk { msg: Some(v1::move_out_chunk::Msg::Chunk(chunk)) };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(why) => {
                        let _ = failed_tx.send(why);
                        return;
                    }
                }
            }
        });
        let mut client = client;
        let call = client.move_out(tokio_stream::wrappers::ReceiverStream::new(rx));
        let reply = tokio::select! {
            reply = call => reply.map(|_| ()),
            Ok(why) = failed => Err(Status::internal(why)),
        };
        sender.abort();
        // CRIU is done before the image directory goes.
        let dumped = dump.await.map_err(|e| Status::internal(e.to_string()))?;
        drop(dir);
        dumped.map_err(Status::internal)?;
        reply?;
        let mut t = self.lock();
        if let Some(e) = t.by_id.get_mut(&id) {
            e.moved = true;
        }
        if let Some(fid) = t.forked_of.remove(&pid) {
            if let Some(f) = t.forked.remove(&fid) {
                t.forked_host.remove(&f.host_pid);
            }
        }
        tracing::debug!(id, pid, node, "moved away");
        Ok(())
    }

    /// Where the ids of forked processes start on the current link.
    pub fn set_fork_base(&self, base: u64) {
        let mut t = self.lock();
        t.fork_base = base;
        t.fork_next = 0;
    }

    /// What the eBPF probes saw on this node: a process of ours forked
    /// (the child gets an id and the master hears of it), exec'd (the master
    /// hears the new command line) or, if forked, exited. Pids are the
    /// node's own.
    pub fn on_probe_event(&self, seen: ebpf_probes::Event) {
        use ebpf_probes::Event;
        match seen {
            Event::Fork { ns_parent, ns_child, child: host_pid, .. } => {
                let (parent, child) = (ns_parent as i32, ns_child as i32);
                if parent == std::process::id() as i32 || child <= 0 {
                    // Our own spawn: the spawn path knows that child.
                    return;
                }
                let mut t = self.lock();
                let Some((parent_id, out)) = t.find(parent).map(|(id, out)| (id, out.clone())) else { return };
                let id = t.fork_base + u64::from(t.fork_next);
                t.fork_next = t.fork_next.wrapping_add(1);
                t.forked.insert(id, Forked { pid: child, out: out.clone(), host_pid, stopped: false });
                t.forked_of.insert(child, id);
                t.forked_host.insert(host_pid, id);
                drop(t);
                tracing::debug!(id, parent_id, pid = child, "forked");
                event(&out, id, Kind::Forked, |e| {
                    e.parent_id = parent_id;
                    e.node_pid = child;
                });
            }
            Event::Exec { ns_pid, .. } => {
                let pid = ns_pid as i32;
                let Some((id, out)) = self.lock().find(pid).map(|(id, out)| (id, out.clone())) else { return };
                // Gone already (say `exec true`): its exit says the rest.
                let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return };
                let argv: Vec<Vec<u8>> = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
                let argv = match argv.split_last() {
                    Some((last, rest)) if last.is_empty() => rest.to_vec(),
                    _ => argv,
                };
                if !argv.is_empty() {
                    event(&out, id, Kind::Execed, |e| e.argv = argv);
                }
            }
            Event::Exit { ns_pid, wait_status, .. } => {
                let mut t = self.lock();
                let Some(id) = t.forked_of.remove(&(ns_pid as i32)) else { return };
                if let Some(f) = t.forked.remove(&id) {
                    t.forked_host.remove(&f.host_pid);
                    drop(t);
                    event(&f.out, id, Kind::Exited, |e| e.wait_status = wait_status);
                }
            }
            // A forked process's stops and continues (its parent, not we,
            // waits for it): a stop signal acted on by default stops it, a
            // SIGCONT sent to it while stopped continues it.
            Event::Deliver { ns_pid, signo, default_action: true, .. }
                if matches!(signo, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) =>
            {
                let mut t = self.lock();
                let Some(&id) = t.forked_of.get(&(ns_pid as i32)) else { return };
                let Some(f) = t.forked.get_mut(&id).filter(|f| !f.stopped) else { return };
                f.stopped = true;
                let out = f.out.clone();
                drop(t);
                event(&out, id, Kind::Stopped, |e| e.wait_status = (signo << 8) | 0x7f);
            }
            Event::Signal { target, signo: libc::SIGCONT, .. } => {
                let mut t = self.lock();
                let Some(&id) = t.forked_host.get(&target) else { return };
                let Some(f) = t.forked.get_mut(&id).filter(|f| f.stopped) else { return };
                f.stopped = false;
                let out = f.out.clone();
                drop(t);
                event(&out, id, Kind::Continued, |e| e.wait_status = 0xffff);
            }
            Event::Signal { .. } | Event::Deliver { .. } => {}
        }
    }

    /// Starts the process the master asked for and reports on it through `out`.
    pub fn spawn(&self, req: v1::SpawnRequest, out: &Outbox) {
        let id = req.id;
        let mut plan = match plan(&req) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(id, %why, "bad spawn request");
                event(out, id, Kind::ExecFailed, |e| e.errno = libc::EINVAL);
                event(out, id, Kind::Exited, |e| e.wait_status = 126 << 8);
                return;
            }
        };
        let (exit_tx, exit_rx) = oneshot::channel();
        let window = self.window();
        let credits = [Credit::new(window), Credit::new(window)];
        // The table stays locked across fork so the reaper cannot see the
        // child's exit before the child is in the table.
        let child = {
            let mut t = self.lock();
            let _forking = self.fork_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut spawned = sys::spawn(&plan);
            if plan.pid.is_some() && spawned.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EEXIST)) {
                // The global PID is taken on this node: run under another
                // one; the master maps the two.
                plan.pid = None;
                spawned = sys::spawn(&plan);
            }
            let child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    drop(t);
                    tracing::warn!(id, error = %e, "fork failed");
                    event(out, id, Kind::ExecFailed, |ev| ev.errno = e.raw_os_error().unwrap_or(libc::EAGAIN));
                    event(out, id, Kind::Exited, |ev| ev.wait_status = 126 << 8);
                    return;
                }
            };
            t.by_id.insert(
                id,
                Entry {
                    pid: Some(child.pid),
                    stdin: None,
                    credits: credits.clone(),
                    exit: Some(exit_tx),
                    out: out.clone(),
                    moved: false,
                },
            );
            t.id_of.insert(child.pid, id);
            child
        };
        let pid = child.pid;
        tracing::debug!(id, pid, "spawned");
        self.watch(id, pid, child.stdin, child.stdout, child.stderr, Some(child.exec_status), exit_rx, credits, out);
    }

    /// Relays process `id`'s stdio (its credits are already in its table
    /// entry) and reports it STARTED, then EXITED once its output has ended
    /// and the reaper has its status.
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        id: u64,
        pid: i32,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
        exec_status: Option<OwnedFd>,
        exit_rx: oneshot::Receiver<i32>,
        credits: [Credit; 2],
        out: &Outbox,
    ) {
        event(out, id, Kind::Started, |e| e.node_pid = pid);
        if let Some(fd) = stdin {
            let (tx, rx) = mpsc::unbounded_channel();
            if let Some(e) = self.lock().by_id.get_mut(&id) {
                e.stdin = Some(tx);
            }
            tokio::spawn(relay_stdin(id, fd, rx, out.clone()));
        }
        let [c_out, c_err] = credits;
        let stdout = tokio::spawn(relay_output(id, v1::StdStream::Stdout, stdout, c_out, out.clone()));
        let stderr = tokio::spawn(relay_output(id, v1::StdStream::Stderr, stderr, c_err, out.clone()));
        let out = out.clone();
        let procs = self.clone();
        tokio::spawn(async move {
            if let Some(fd) = exec_status {
                if let Some(errno) = read_exec_status(fd).await {
                    event(&out, id, Kind::ExecFailed, |e| e.errno = errno);
                }
            }
            let _ = stdout.await;
            let _ = stderr.await;
            // The reaper always answers (or the table was torn down with the link).
            let status = exit_rx.await.unwrap_or(libc::SIGKILL);
            let (idle, moved) = {
                let mut t = procs.lock();
                let moved = t.by_id.remove(&id).is_some_and(|e| e.moved);
                (t.by_id.is_empty(), moved)
            };
            if idle {
                sys::trim_memory();
            }
            // A copy that moved away ends silently: the process lives on elsewhere.
            if !moved {
                event(&out, id, Kind::Exited, |e| e.wait_status = status);
            }
        });
    }

    /// Restores process `req.id` from the checkpoint image the master names
    /// (rfork): fetch it, restore it with CRIU under its global PID, then
    /// relay and report it like a spawned one.
    pub fn restore(&self, req: v1::RestoreRequest, out: &Outbox, client: SlaveLinkClient<Channel>) {
        let procs = self.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let id = req.id;
            if let Err(why) = procs.restore_one(req, &out, client).await {
                tracing::warn!(id, %why, "restore failed");
                event(&out, id, Kind::ExecFailed, |e| e.errno = libc::EIO);
                event(&out, id, Kind::Exited, |e| e.wait_status = libc::SIGKILL);
            }
        });
    }

    async fn restore_one(
        &self,
        req: v1::RestoreRequest,
        out: &Outbox,
        client: SlaveLinkClient<Channel>,
    ) -> Result<(), String> {
        let (id, pid) = (req.id, req.pid);
        let dir = Arc::new(restore::ImageDir::new()?);
        let local = self.image_socket.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let source = restore::Source {
            master: client,
            local: local.as_deref(),
            peer: &req.source,
            peer_socket: &req.source_socket,
        };
        let (bytes, from) = restore::fetch(source, &req.image, dir.path()).await?;
        // A vrfork sends one child's image for all: this copy's PID is its own.
        let was = bproc_daemon::image::retarget(dir.path(), pid as u32)?;
        tracing::info!(id, pid, was, bytes, from = %from, "image fetched");
        let (exit_tx, exit_rx) = oneshot::channel();
        let window = self.window();
        let credits = [Credit::new(window), Credit::new(window)];
        // In the table first: the restored process may end before CRIU returns.
        {
            let mut t = self.lock();
            if t.id_of.contains_key(&pid) || t.by_id.contains_key(&id) {
                return Err(format!("pid {pid} or process {id} is known here already"));
            }
            let entry = Entry {
                pid: Some(pid),
                stdin: None,
                credits: credits.clone(),
                exit: Some(exit_tx),
                out: out.clone(),
                moved: false,
            };
            t.by_id.insert(id, entry);
            t.id_of.insert(pid, id);
        }
        self.shelf.put(&req.image, dir.clone(), req.pass_on);
        if req.pass_on > 0 {
            // Its peers may fetch it now, while we restore our copy.
            send(out, slave_msg::Msg::ImageHeld(v1::ImageHeld { id }));
        }
        let restored = {
            let (procs, req, path) = (self.clone(), req.clone(), dir.path().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let _forking = procs.fork_lock.lock().unwrap_or_else(|p| p.into_inner());
                restore::restore(&req, &path)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        };
        let stdio = match restored {
            Ok(stdio) => stdio,
            Err(why) => {
                // The image stays on the shelf: peers may be fetching it.
                let mut t = self.lock();
                t.by_id.remove(&id);
                t.id_of.remove(&pid);
                return Err(why);
            }
        };
        tracing::debug!(id, pid, "restored");
        self.watch(id, pid, stdio.stdin, stdio.stdout, stdio.stderr, None, exit_rx, credits, out);
        Ok(())
    }

    /// Passes stdin from the master to process `id`.
    pub fn stdin(&self, data: v1::StdioData) {
        let t = self.lock();
        let Some(tx) = t.by_id.get(&data.id).and_then(|e| e.stdin.as_ref()) else {
            return;
        };
        if !data.data.is_empty() {
            let _ = tx.send(StdinCmd::Data(data.data));
        }
        if data.eof {
            let _ = tx.send(StdinCmd::Eof);
        }
    }

    /// The master has passed on `ack.bytes` of a process's output.
    pub fn output_ack(&self, ack: &v1::StdioAck) {
        let t = self.lock();
        let idx = if ack.stream == v1::StdStream::Stderr as i32 { 1 } else { 0 };
        if let Some(e) = t.by_id.get(&ack.id) {
            e.credits[idx].ack(ack.bytes, self.window());
        }
    }

    /// Delivers a signal to process `id`.
    pub fn signal(&self, id: u64, signo: i32) {
        let pid = {
            let t = self.lock();
            t.by_id.get(&id).and_then(|e| e.pid).or_else(|| t.forked.get(&id).map(|f| f.pid))
        };
        if let Some(pid) = pid {
            if let Err(e) = sys::kill(pid, signo) {
                tracing::debug!(id, pid, signo, error = %e, "kill failed");
            }
        }
    }

    /// A child changed state (from the reaper). Unknown pids are orphans
    /// that we reaped as PID 1 / subreaper; they need nothing more.
    pub fn on_wait(&self, ev: WaitEvent) {
        let mut t = self.lock();
        let Some(id) = t.id_of.get(&ev.pid).copied() else { return };
        if ev.exited() {
            t.id_of.remove(&ev.pid);
        }
        let Some(entry) = t.by_id.get_mut(&id) else { return };
        if ev.exited() {
            entry.pid = None;
            if let Some(tx) = entry.exit.take() {
                let _ = tx.send(ev.status);
            }
        } else if ev.stopped() {
            event(&entry.out, id, Kind::Stopped, |e| e.wait_status = ev.status);
        } else if ev.continued() {
            event(&entry.out, id, Kind::Continued, |e| e.wait_status = ev.status);
        }
    }

    /// Kills every process (the link to the master is gone).
    pub fn kill_all(&self) {
        let mut t = self.lock();
        for f in t.forked.values() {
            let _ = sys::kill(f.pid, libc::SIGKILL);
        }
        t.forked.clear();
        t.forked_of.clear();
        t.forked_host.clear();
        for e in t.by_id.values() {
            if let Some(pid) = e.pid {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            for c in &e.credits {
                c.close();
            }
        }
        if !t.by_id.is_empty() {
            tracing::warn!(count = t.by_id.len(), "killed every process of the lost link");
        }
    }
}

async fn read_exec_status(fd: OwnedFd) -> Option<i32> {
    let mut rx = pipe::Receiver::from_owned_fd(fd).ok()?;
    let mut buf = [0u8; 4];
    match rx.read_exact(&mut buf).await {
        Ok(_) => Some(i32::from_ne_bytes(buf)),
        Err(_) => None,
    }
}

async fn relay_output(id: u64, stream: v1::StdStream, fd: OwnedFd, credit: Credit, out: Outbox) {
    let mut rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(id, error = %e, "cannot watch output pipe");
            return;
        }
    };
    loop {
        credit.take(CHUNK).await;
        let mut buf = BytesMut::with_capacity(CHUNK);
        // A read error ends the stream like EOF does.
        let n = rx.read_buf(&mut buf).await.unwrap_or_default();
        credit.give(CHUNK - n);
        let eof = n == 0;
        send(&out, slave_msg::Msg::Output(v1::StdioData { id, stream: stream as i32, data: buf.freeze(), eof }));
        if eof {
            return;
        }
    }
}

async fn relay_stdin(id: u64, fd: OwnedFd, mut rx: mpsc::UnboundedReceiver<StdinCmd>, out: Outbox) {
    let mut pipe = pipe::Sender::from_owned_fd(fd).ok();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            StdinCmd::Data(data) => {
                let len = data.len() as u64;
                if let Some(p) = pipe.as_mut() {
                    if p.write_all(&data).await.is_err() {
                        // The process closed its stdin: what follows is dropped.
                        pipe = None;
                    }
                }
                let ack = v1::StdioAck { id, stream: v1::StdStream::Stdin as i32, bytes: len };
                send(&out, slave_msg::Msg::StdinAck(ack));
            }
            StdinCmd::Eof => pipe = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str], env: &[&str]) -> v1::SpawnRequest {
        v1::SpawnRequest {
            id: 1,
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: env.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: b"/tmp".to_vec(),
            umask: 0o7022,
            cred: Some(v1::Credentials { uid: 5, gid: 6, groups: vec![7] }),
            stdin_null: false,
            pid: 4321,
        }
    }

    #[test]
    fn path_search_uses_the_callers_path() {
        let p = plan(&req(&["ls"], &["PATH=/a::/b"])).expect("plan");
        let c: Vec<_> = p.candidates.iter().map(|c| c.to_str().expect("utf8")).collect();
        assert_eq!(c, ["/a/ls", "./ls", "/b/ls"]);
        assert_eq!(p.umask, 0o022);
        assert_eq!((p.uid, p.gid, p.groups.clone()), (5, 6, vec![7]));
        assert_eq!(p.pid, Some(4321), "the global PID is asked of the kernel");
        let p = plan(&req(&["/bin/ls"], &[])).expect("plan");
        assert_eq!(p.candidates.len(), 1);
        assert!(plan(&req(&["x"], &[])).expect("plan").candidates.len() > 3, "default PATH");
        assert!(plan(&v1::SpawnRequest { cred: None, ..req(&["x"], &[]) }).is_err());
    }
}
