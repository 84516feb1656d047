//! rfork's node side: fetch a checkpoint image from the master and restore
//! it with CRIU in this node's PID namespace, its stdio replaced by pipes
//! that the slave relays and its marker pipe by one that says "N" (or what
//! the master says: a vrfork's copy learns its rank there).

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use bproc_daemon::checkpoint;
use proto::v1::{self, slave_link_client::SlaveLinkClient};
use tonic::transport::Channel;

/// A private directory for one image, removed on drop.
pub struct ImageDir(PathBuf);

impl ImageDir {
    pub fn new() -> Result<Self, String> {
        Self::new_in(Path::new(crate::sys::RESTORE_DIR))
    }

    /// A new directory under `base`.
    pub fn new_in(base: &Path) -> Result<Self, String> {
        nix::unistd::mkdtemp(&base.join("image-XXXXXX")).map(ImageDir).map_err(|e| format!("mkdtemp: {e}"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ImageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where an image comes from.
pub struct Source<'a> {
    /// The master, over the link.
    pub master: SlaveLinkClient<Channel>,
    /// The master's Unix socket, when it shares this host.
    pub local: Option<&'a Path>,
    /// A peer slave's ImagePeer service (HOST:PORT); empty: the master.
    pub peer: &'a str,
    /// The same peer's Unix socket, when it shares this host (tried first).
    pub peer_socket: &'a str,
}

/// The ImagePeer service on the Unix socket at `path`.
async fn peer_over_unix(path: &Path) -> Result<v1::image_peer_client::ImagePeerClient<Channel>, String> {
    let channel = libbproc::client::uds_channel(path).await.map_err(|e| e.to_string())?;
    Ok(v1::image_peer_client::ImagePeerClient::new(channel).max_decoding_message_size(proto::MAX_MESSAGE_SIZE))
}

/// Fetches image `name` into `dir` from `source`: a peer (over its Unix
/// socket if it has one here, else over TCP), or the master (over its Unix
/// socket when it shares this host, else over the link); returns the
/// image's size and where it came from.
pub async fn fetch(source: Source<'_>, name: &str, dir: &Path) -> Result<(u64, String), String> {
    let Source { mut master, local, peer, peer_socket } = source;
    let req = v1::FetchImageRequest { image: name.to_string() };
    let near = match (peer, local) {
        ("", Some(path)) => Some(path),
        ("", None) => None,
        _ => Some(Path::new(peer_socket)).filter(|_| !peer_socket.is_empty()),
    };
    let mut answer = None;
    let mut from = if peer.is_empty() { "master".to_string() } else { peer.to_string() };
    if let Some(path) = near {
        match peer_over_unix(path).await {
            Ok(mut client) => {
                answer = Some(client.fetch_image(req.clone()).await);
                from = format!("{from} ({})", path.display());
            }
            // The master's socket must work; a peer's may be gone (TCP next).
            Err(e) if peer.is_empty() => return Err(e),
            Err(e) => tracing::debug!(error = %e, "a peer's Unix socket failed; TCP then"),
        }
    }
    let answer = match answer {
        Some(a) => a,
        None if peer.is_empty() => master.fetch_image(req).await,
        None => {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{peer}"))
                .map_err(|e| format!("bad peer address {peer}: {e}"))?
                .connect_timeout(std::time::Duration::from_secs(2))
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(32 << 20)
                .connect()
                .await
                .map_err(|e| format!("cannot reach the peer {peer}: {e}"))?;
            v1::image_peer_client::ImagePeerClient::new(channel)
                .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
                .fetch_image(req)
                .await
        }
    };
    let mut stream = answer.map_err(|s| s.message().to_string())?.into_inner();
    let mut writer = bproc_daemon::checkpoint::ImageWriter::new(dir);
    while let Some(chunk) = stream.message().await.map_err(|s| s.message().to_string())? {
        writer.write(chunk).await?;
    }
    Ok((writer.finish().await?, from))
}

/// The slave's ends of a restored process's stdio.
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// A copy of `fd` without close-on-exec, for the CRIU child to inherit.
fn inheritable(fd: &OwnedFd) -> Result<OwnedFd, String> {
    // SAFETY: F_DUPFD on an fd we own returns a new fd (or -1), which we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 3) };
    if new < 0 {
        return Err(format!("dup: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `new` is a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Restores the image in `dir` as `req` says. Blocking (CRIU runs as our
/// child); the caller holds the fork lock, since the fds CRIU inherits are
/// not close-on-exec meanwhile.
pub fn restore(req: &v1::RestoreRequest, dir: &Path) -> Result<Stdio, String> {
    // The process's side of each replaced file, and CRIU's name for it.
    let mut inherit: Vec<(OwnedFd, &str)> = Vec::new();
    let mut stdin = None;
    if !req.stdin_key.is_empty() && req.stdin_key != req.stdout_key && req.stdin_key != req.stderr_key {
        let (r, w) = pipe()?;
        inherit.push((inheritable(&r)?, &req.stdin_key));
        stdin = Some(w);
    }
    let (stdout, out_w) = pipe()?;
    if !req.stdout_key.is_empty() {
        inherit.push((inheritable(&out_w)?, &req.stdout_key));
    }
    let (stderr, err_w) = pipe()?;
    if !req.stderr_key.is_empty() && req.stderr_key != req.stdout_key {
        inherit.push((inheritable(&err_w)?, &req.stderr_key));
    }
    drop((out_w, err_w));
    let (marker_r, marker_w) = pipe()?;
    let says: &[u8] = if req.marker.is_empty() { b"N" } else { &req.marker };
    std::fs::File::from(marker_w).write_all(says).map_err(|e| format!("marker: {e}"))?;
    inherit.push((inheritable(&marker_r)?, &req.marker_key));

    let images = checkpoint::open_images_dir(dir)?;
    let mut criu = checkpoint::criu()?;
    criu.set_images_dir_fd(images.as_raw_fd());
    criu.set_rst_sibling(true);
    // Dumped as a "shell job" (it was in its parent's session): it joins ours.
    criu.set_shell_job(true);
    criu.set_log_level(2);
    criu.set_log_file("restore.log".into());
    for (fd, key) in &inherit {
        criu.add_inherit_fd(fd.as_raw_fd() as RawFd, key.to_string()).map_err(|e| e.to_string())?;
    }
    criu.restore().map_err(|e| checkpoint::failure(&images, "restore.log", "criu restore", e))?;
    Ok(Stdio { stdin, stdout, stderr })
}

/// Checkpoints process `pid` of this node into `dir`, leaving it running
/// (it waits on its marker pipe for the verdict). Blocking; the caller holds
/// the fork lock (the image directory's fd is inherited by CRIU).
pub fn dump(pid: i32, dir: &Path) -> Result<(), String> {
    checkpoint::dump(pid, &checkpoint::open_images_dir(dir)?)
}
