//! Where a cluster's files live: `$BPROC_RUN_DIR` (default `/run/bproc`) holds `clusters/NAME/`
//! (state.json, logs, the master's socket) and `subnets/IDX` (subnet claims).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// Environment variable that overrides the base directory (for tests).
pub const RUN_DIR_ENV: &str = "BPROC_RUN_DIR";

/// The base directory when [`RUN_DIR_ENV`] is unset.
pub const DEFAULT_RUN_DIR: &str = "/run/bproc";

/// The base directory in force: `$BPROC_RUN_DIR`, else `/run/bproc`.
pub fn run_dir() -> PathBuf {
    RunDir::from_env().root
}

/// The harness's base directory and the paths below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// `$BPROC_RUN_DIR` if set and not empty, else `/run/bproc`.
    pub(crate) fn from_env() -> Self {
        match std::env::var_os(RUN_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::new(dir),
            _ => Self::new(DEFAULT_RUN_DIR),
        }
    }

    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    pub(crate) fn clusters_dir(&self) -> PathBuf {
        self.root.join("clusters")
    }

    pub(crate) fn subnets_dir(&self) -> PathBuf {
        self.root.join("subnets")
    }

    pub(crate) fn state_dir(&self, cluster: &str) -> PathBuf {
        self.clusters_dir().join(cluster)
    }

    pub(crate) fn state_file(&self, cluster: &str) -> PathBuf {
        self.state_dir(cluster).join("state.json")
    }

    pub(crate) fn socket(&self, cluster: &str) -> PathBuf {
        self.state_dir(cluster).join("master.sock")
    }

    pub(crate) fn master_log(&self, cluster: &str) -> PathBuf {
        self.state_dir(cluster).join("master.log")
    }

    pub(crate) fn slave_log(&self, cluster: &str, node: u32) -> PathBuf {
        self.state_dir(cluster).join(format!("slave-{node}.log"))
    }

    /// Creates the base, `clusters/` and `subnets/` directories (mode 0755) where missing.
    pub(crate) fn ensure(&self) -> Result<(), HarnessError> {
        for dir in [self.root.clone(), self.clusters_dir(), self.subnets_dir()] {
            match create_dir_0755(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(HarnessError::io("create directory", dir, err)),
            }
        }
        Ok(())
    }

    /// The names of the clusters that have a state directory.
    pub(crate) fn cluster_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.clusters_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// Creates one directory (its parent must exist) and gives it mode 0755 whatever the umask, so
/// unprivileged users can reach the master's socket inside. `AlreadyExists` is returned as is.
pub(crate) fn create_dir_0755(path: &Path) -> io::Result<()> {
    fs::create_dir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Removes a directory tree; a missing one is not an error. Returns whether it existed.
pub(crate) fn remove_dir_if_present(path: &Path) -> Result<bool, HarnessError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(HarnessError::io("remove directory", path, err)),
    }
}

#[cfg(test)]
pub(crate) mod testdir {
    //! Scratch directories for unit tests (no tempfile crate in the workspace).

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(tag: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("vm-harness-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create test dir");
            TestDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testdir::TestDir;
    use super::*;

    #[test]
    fn paths() {
        let run = RunDir::new("/r");
        assert_eq!(run.state_file("c"), Path::new("/r/clusters/c/state.json"));
        assert_eq!(run.socket("c"), Path::new("/r/clusters/c/master.sock"));
        assert_eq!(run.master_log("c"), Path::new("/r/clusters/c/master.log"));
        assert_eq!(run.slave_log("c", 3), Path::new("/r/clusters/c/slave-3.log"));
        assert_eq!(run.subnets_dir(), Path::new("/r/subnets"));
    }

    #[test]
    fn ensure_makes_world_readable_dirs() {
        let tmp = TestDir::new("layout");
        let run = RunDir::new(tmp.path().join("run"));
        run.ensure().expect("ensure");
        run.ensure().expect("ensure twice");
        for dir in [tmp.path().join("run"), run.clusters_dir(), run.subnets_dir()] {
            let mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o755, "{}", dir.display());
        }
        assert!(run.cluster_names().is_empty());
        create_dir_0755(&run.state_dir("b")).expect("mkdir");
        create_dir_0755(&run.state_dir("a")).expect("mkdir");
        assert_eq!(run.cluster_names(), ["a", "b"]);
        assert!(remove_dir_if_present(&run.state_dir("a")).expect("rm"));
        assert!(!remove_dir_if_present(&run.state_dir("a")).expect("rm again"));
    }
}
