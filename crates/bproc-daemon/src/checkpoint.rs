//! CRIU checkpoints as both daemons use them: where CRIU is, dumping a
//! process (left running: it waits on a marker pipe for the verdict), the
//! errors of a failed run, how CRIU names a process's open files (for
//! `inherit-fd`), and image directories as streams of chunks.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use proto::v1;

/// Where CRIU is, unless `BPROC_CRIU` says otherwise (`x.sh` builds it there).
pub const DEFAULT_CRIU: &str = "/usr/local/sbin/criu";

/// A CRIU to drive through its RPC (swrk) mode.
pub fn criu() -> Result<rust_criu::Criu, String> {
    let path = std::env::var("BPROC_CRIU").unwrap_or_else(|_| DEFAULT_CRIU.to_string());
    rust_criu::Criu::new_with_criu_path(path).map_err(|e| e.to_string())
}

/// An image directory's fd for CRIU, which inherits it: not close-on-exec,
/// so the caller must keep other forks from inheriting it too.
pub fn open_images_dir(dir: &Path) -> Result<OwnedFd, String> {
    nix::fcntl::open(dir, nix::fcntl::OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("open {}: {e}", dir.display()))
}

/// Why CRIU failed: `what`, CRIU's own error, and the error lines of its log
/// `log` in the image directory `images` (found through the fd, whatever
/// mount namespace the caller is in).
pub fn failure(images: &OwnedFd, log: &str, what: &str, error: impl std::fmt::Display) -> String {
    let text = std::fs::read_to_string(format!("/proc/self/fd/{}/{log}", images.as_raw_fd())).unwrap_or_default();
    // Root here lacks CAP_SYS_RESOURCE: CRIU always complains about that one.
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE")).collect();
    format!("{what} failed: {error}: {}", errors.join("; "))
}

/// Checkpoints process `pid` into the image directory `images`, leaving it
/// running. It is dumped as a "shell job": it shares its parent's session
/// and process group, which stay here (where it is restored it joins the
/// restorer's). Blocking.
pub fn dump(pid: i32, images: &OwnedFd) -> Result<(), String> {
    let mut criu = criu()?;
    criu.set_pid(pid);
    criu.set_images_dir_fd(images.as_raw_fd());
    criu.set_leave_running(true);
    criu.set_shell_job(true);
    // Stdio may be a socket whose peer stays here (a service's journal):
    // it is dumped as external, and the restore hands in a relay instead
    // (libbproc closed the process's other sockets before the dump).
    for fd in 0..=2 {
        let (key, _) = file_key(pid, fd);
        if let Some(ino) = key.strip_prefix("socket:[").and_then(|k| k.strip_suffix(']')) {
            criu.add_external(format!("unix[{ino}]"));
        }
    }
    criu.set_log_level(2);
    criu.set_log_file("dump.log".into());
    criu.dump().map_err(|e| failure(images, "dump.log", &format!("criu dump of {pid}"), e))
}

/// Image files travel in chunks of this size.
pub const IMAGE_CHUNK: usize = 1 << 20;

/// CRIU's name for an open file, from its /proc/PID/fd link: pipes and
/// sockets by inode (`pipe:[123]`), files by their path without the leading
/// slash, a terminal as `tty[rdev:dev]`.
pub fn criu_key(link: &str, tty_ids: Option<(u64, u64)>) -> String {
    if let Some((rdev, dev)) = tty_ids {
        return format!("tty[{rdev:x}:{dev:x}]");
    }
    match link.strip_prefix('/') {
        Some(path) => path.to_string(),
        None => link.to_string(),
    }
}

/// A terminal's (rdev, dev), if `path` is one.
fn tty_ids(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    let major = (m.rdev() >> 8) & 0xfff;
    // Terminals: the pty slaves (136-143), the consoles and serial lines (4, 5).
    let tty = m.file_type().is_char_device() && (matches!(major, 4 | 5) || (136..=143).contains(&major));
    tty.then(|| (m.rdev(), m.dev()))
}

/// CRIU's name for fd `fd` of process `pid` (empty when it is closed), and
/// whether it is a terminal.
pub fn file_key(pid: i32, fd: i32) -> (String, bool) {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let Ok(link) = std::fs::read_link(&path) else { return (String::new(), false) };
    let tty = tty_ids(&path);
    (criu_key(&link.to_string_lossy(), tty), tty.is_some())
}

/// Sends every file of the image in `dir` (an empty file as one empty chunk)
/// to `tx`, each chunk wrapped by `wrap` in the receiver's message; the
/// bounded channel paces the reads to the receiver's. Stops quietly when the
/// receiver is gone.
pub async fn stream_image<T>(
    dir: &Path,
    tx: &tokio::sync::mpsc::Sender<T>,
    wrap: impl Fn(v1::ImageChunk) -> T,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".log") || !entry.file_type().await?.is_file() {
            continue;
        }
        let mut f = tokio::fs::File::open(entry.path()).await?;
        let mut first = true;
        loop {
            let mut buf = bytes::BytesMut::with_capacity(IMAGE_CHUNK);
            while buf.len() < IMAGE_CHUNK {
                if f.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            if buf.is_empty() && !first {
                break;
            }
            first = false;
            let full = buf.len() == IMAGE_CHUNK;
            if tx.send(wrap(v1::ImageChunk { file: file.clone(), data: buf.freeze() })).await.is_err() {
                return Ok(());
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// Writes an image's chunks into a directory, file by file, refusing any
/// name that is not a plain file name (a peer names the files).
pub struct ImageWriter {
    dir: std::path::PathBuf,
    current: Option<(String, tokio::fs::File)>,
    bytes: u64,
}

impl ImageWriter {
    pub fn new(dir: &Path) -> Self {
        ImageWriter { dir: dir.to_path_buf(), current: None, bytes: 0 }
    }

    /// Appends `chunk` to its file (creating it: a file may not come twice).
    pub async fn write(&mut self, chunk: v1::ImageChunk) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let plain = !chunk.file.is_empty() && !chunk.file.contains('/') && !chunk.file.starts_with('.');
        if !plain {
            return Err(format!("bad image file name {:?}", chunk.file));
        }
        if self.current.as_ref().is_none_or(|(f, _)| *f != chunk.file) {
            // The file before is whole on disk before we go on: a tokio file
            // dropped with a write in flight finishes it later, in the
            // background, and a reader of the image (CRIU, or a peer this
            // node passes it on to) could find that file short.
            if let Some((name, mut done)) = self.current.take() {
                done.flush().await.map_err(|e| format!("{name}: {e}"))?;
            }
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.dir.join(&chunk.file))
                .await
                .map_err(|e| format!("{}: {e}", chunk.file))?;
            self.current = Some((chunk.file.clone(), file));
        }
        if let Some((_, file)) = self.current.as_mut() {
            file.write_all(&chunk.data).await.map_err(|e| e.to_string())?;
        }
        self.bytes += chunk.data.len() as u64;
        Ok(())
    }

    /// Flushes the last file; returns the bytes written.
    pub async fn finish(self) -> Result<u64, String> {
        use tokio::io::AsyncWriteExt;
        if let Some((name, mut file)) = self.current {
            file.flush().await.map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_an_image_is_whole_once_it_is_written() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let tmp = tempfile::tempdir().expect("dir");
        let dir = tmp.path();
        // Big files (one write each, of tokio's largest) before small ones.
        let sizes = [2 << 20, 7, 2 << 20, 0, 2 << 20, 5, 123_456];
        let bytes = rt.block_on(async {
            let mut w = ImageWriter::new(dir);
            for (i, size) in sizes.iter().enumerate() {
                let data = bytes::Bytes::from(vec![i as u8 + 1; *size]);
                w.write(v1::ImageChunk { file: format!("f{i}.img"), data }).await.expect("write");
                // The file before is whole as soon as the next one begins.
                if i > 0 {
                    let len = std::fs::metadata(dir.join(format!("f{}.img", i - 1))).expect("file").len();
                    assert_eq!(len, sizes[i - 1] as u64, "f{}.img", i - 1);
                }
            }
            w.finish().await.expect("finish")
        });
        assert_eq!(bytes, sizes.iter().sum::<usize>() as u64);
        let last = std::fs::metadata(dir.join("f6.img")).expect("file").len();
        assert_eq!(last, 123_456);
    }

    #[test]
    fn criu_names_files_as_it_does_in_images() {
        assert_eq!(criu_key("pipe:[1234]", None), "pipe:[1234]");
        assert_eq!(criu_key("socket:[77]", None), "socket:[77]");
        assert_eq!(criu_key("/tmp/out.txt", None), "tmp/out.txt");
        assert_eq!(criu_key("/dev/pts/3", Some((0x8803, 0x18))), "tty[8803:18]");
    }
}
