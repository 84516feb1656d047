//! rfork's master side: look at the caller's child, checkpoint it with CRIU
//! (left running: the copy here becomes the ghost), and serve the image to
//! the slave that restores it.

use std::path::{Path, PathBuf};

use bproc_daemon::checkpoint;

/// Checkpoint images live here until their node has restored them.
pub const IMAGES_ROOT: &str = "/run/bproc/images";

/// Longest wait for a node to fetch and restore an image.
pub const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// An unguessable name for an image (a slave fetches it by name).
pub fn random_name() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes[..16].copy_from_slice(&t.as_nanos().to_ne_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the master learns of an rfork child before checkpointing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub uid: u32,
    pub ppid: i32,
    pub argv: Vec<Vec<u8>>,
    /// CRIU's names of the files on fds 0, 1 and 2 (empty: fd closed).
    pub stdio: [String; 3],
    pub marker: String,
}

/// The parent and real uid of process `pid`, from /proc (the kernel's word).
pub fn owner(pid: i32) -> Result<(i32, u32), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| format!("no process {pid}"))?;
    let field = |name: &str| -> Option<&str> {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start_matches(':').trim())
    };
    let ppid = field("PPid").and_then(|v| v.parse().ok()).ok_or("no PPid")?;
    let uid = field("Uid").and_then(|v| v.split_whitespace().next()?.parse().ok()).ok_or("no Uid")?;
    Ok((ppid, uid))
}

/// Reads what the master needs of process `pid` from /proc (the kernel's
/// word, not the caller's).
pub fn inspect(pid: i32, marker_fd: i32) -> Result<Child, String> {
    let (ppid, uid) = owner(pid)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
    let mut argv: Vec<Vec<u8>> = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    if argv.last().is_some_and(Vec::is_empty) {
        argv.pop();
    }
    let key = |fd: i32| checkpoint::file_key(pid, fd).0;
    let stdio = [key(0), key(1), key(2)];
    let marker = key(marker_fd);
    if !marker.starts_with("pipe:[") {
        return Err(format!("fd {marker_fd} of process {pid} is not a pipe"));
    }
    Ok(Child { uid, ppid, argv, stdio, marker })
}

/// Checkpoints process `pid` into `dir` and leaves it running. CRIU runs in
/// the process's own mount, network, UTS and IPC namespaces (else it would
/// take them for namespaces of the process's own and try to dump them): it
/// is started from a thread of its own that has entered them first.
pub fn dump(pid: i32, dir: &Path) -> Result<(), String> {
    let images = checkpoint::open_images_dir(dir)?;
    std::thread::Builder::new()
        .name("criu-dump".into())
        .spawn(move || {
            enter_namespaces_of(pid)?;
            checkpoint::dump(pid, &images)
        })
        .map_err(|e| format!("cannot start the dump thread: {e}"))?
        .join()
        .map_err(|_| "the dump thread panicked".to_string())?
}

/// Moves the calling thread into `pid`'s mount, network, UTS and IPC
/// namespaces where they differ from its own. Only for a thread that ends
/// afterwards (it no longer shares the process's view of the system).
fn enter_namespaces_of(pid: i32) -> Result<(), String> {
    use nix::sched::{setns, unshare, CloneFlags};
    use std::os::unix::fs::MetadataExt;
    unshare(CloneFlags::CLONE_FS).map_err(|e| format!("unshare(CLONE_FS): {e}"))?;
    for (name, flag) in [
        ("mnt", CloneFlags::CLONE_NEWNS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("ipc", CloneFlags::CLONE_NEWIPC),
    ] {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino());
        if ino(&theirs).map_err(|e| format!("{theirs}: {e}"))?
            == ino(&format!("/proc/thread-self/ns/{name}")).unwrap_or(0)
        {
            continue;
        }
        let fd = std::fs::File::open(&theirs).map_err(|e| format!("{theirs}: {e}"))?;
        setns(fd, flag).map_err(|e| format!("setns {theirs}: {e}"))?;
    }
    Ok(())
}

/// Removes the image directories of masters that are gone (a crashed
/// master leaves its images behind; the names start with the master's PID).
pub fn remove_stale_images() {
    let Ok(entries) = std::fs::read_dir(IMAGES_ROOT) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner: Option<i32> = name.split_once('-').and_then(|(pid, _)| pid.parse().ok());
        let alive = owner.is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bpmaster")
        });
        if !alive {
            tracing::info!(dir = %entry.path().display(), "removing a checkpoint image a gone master left");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh private directory for one image.
pub fn image_dir(id: u64) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let root = Path::new(IMAGES_ROOT);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| e.to_string())?;
    let dir = root.join(format!("{}-{id}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_of_gone_masters_are_removed() {
        // PID 2^22 + 1 is beyond any pid_max: no master runs there.
        let stale = Path::new(IMAGES_ROOT).join("4194305-7");
        std::fs::create_dir_all(stale.join("inner")).expect("make a stale image");
        remove_stale_images();
        assert!(!stale.exists(), "removed");
    }

    #[test]
    fn inspect_reads_the_kernel_view_of_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // spawn can return before the kernel shows the new command line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seen = loop {
            let seen = inspect(pid, 0).expect("inspect");
            if !seen.argv.is_empty() || std::time::Instant::now() > deadline {
                break seen;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(seen.ppid, std::process::id() as i32);
        assert_eq!(seen.argv, vec![b"sleep".to_vec(), b"100".to_vec()]);
        assert!(seen.stdio[0].starts_with("pipe:["), "{seen:?}");
        assert_eq!(seen.marker, seen.stdio[0]);
        assert!(inspect(pid, 99).is_err(), "fd 99 is not open");
        let _ = child.kill();
        let _ = child.wait();
    }
}
