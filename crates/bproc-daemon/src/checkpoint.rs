//! What the daemons share about CRIU checkpoints: how CRIU names a process's
//! open files (for `inherit-fd`), and reading an image directory as a stream
//! of chunks.

use std::path::Path;

use proto::v1;

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
/// to `tx`; the bounded channel paces the reads to the receiver's. Stops
/// quietly when the receiver is gone.
pub async fn stream_image(dir: &Path, tx: &tokio::sync::mpsc::Sender<v1::ImageChunk>) -> std::io::Result<()> {
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
            if tx.send(v1::ImageChunk { file: file.clone(), data: buf.freeze() }).await.is_err() {
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
        if let Some((_, mut file)) = self.current {
            file.flush().await.map_err(|e| e.to_string())?;
        }
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_names_files_as_it_does_in_images() {
        assert_eq!(criu_key("pipe:[1234]", None), "pipe:[1234]");
        assert_eq!(criu_key("socket:[77]", None), "socket:[77]");
        assert_eq!(criu_key("/tmp/out.txt", None), "tmp/out.txt");
        assert_eq!(criu_key("/dev/pts/3", Some((0x8803, 0x18))), "tty[8803:18]");
    }
}
