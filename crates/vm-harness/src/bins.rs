//! Finding the daemon and tool binaries (`bpmaster`, `bpslave`, `bpstat`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// Environment variable naming the directory that holds the binaries.
pub const BIN_DIR_ENV: &str = "BPROC_BIN_DIR";

/// The programs a cluster cannot run without.
pub const REQUIRED_BINARIES: [&str; 3] = ["bpmaster", "bpslave", "bpstat"];

/// The bin dir when none is given: `$BPROC_BIN_DIR`, else the directory of the running executable
/// if it holds `bpmaster`, else that directory's parent (cargo puts test binaries in
/// `target/<profile>/deps/`), else the executable's directory.
pub fn default_bin_dir() -> PathBuf {
    pick_bin_dir(std::env::var_os(BIN_DIR_ENV), std::env::current_exe().ok().as_deref())
}

/// The pure part of [`default_bin_dir`].
pub(crate) fn pick_bin_dir(env: Option<OsString>, exe: Option<&Path>) -> PathBuf {
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let Some(exe_dir) = exe.and_then(Path::parent) else {
        return PathBuf::from(".");
    };
    if exe_dir.join(REQUIRED_BINARIES[0]).is_file() {
        return exe_dir.to_path_buf();
    }
    match exe_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => exe_dir.to_path_buf(),
    }
}

/// The bin dir to use (`explicit`, else [`default_bin_dir`]), made absolute (it is recorded in
/// `state.json` for later use from elsewhere) and checked to hold every required binary.
pub(crate) fn resolve(explicit: Option<&Path>) -> Result<PathBuf, HarnessError> {
    let dir = explicit.map_or_else(default_bin_dir, Path::to_path_buf);
    let dir = std::path::absolute(&dir).map_err(|e| HarnessError::io("resolve", &dir, e))?;
    check(&dir)?;
    Ok(dir)
}

/// Fails with [`HarnessError::MissingBinary`] naming the first required binary not in `dir`.
pub(crate) fn check(dir: &Path) -> Result<(), HarnessError> {
    match REQUIRED_BINARIES.iter().find(|program| !dir.join(program).is_file()) {
        Some(program) => Err(HarnessError::MissingBinary { program: (*program).to_owned(), dir: dir.to_path_buf() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir::TestDir;

    fn touch(path: &Path) {
        std::fs::write(path, b"").expect("touch");
    }

    #[test]
    fn env_wins() {
        assert_eq!(pick_bin_dir(Some("/opt/b".into()), Some(Path::new("/x/y/prog"))), Path::new("/opt/b"));
        // An empty variable counts as unset.
        assert_eq!(pick_bin_dir(Some("".into()), Some(Path::new("/x/y/prog"))), Path::new("/x"));
    }

    #[test]
    fn exe_dir_or_its_parent() {
        let tmp = TestDir::new("bins");
        let release = tmp.path().join("release");
        let deps = release.join("deps");
        std::fs::create_dir_all(&deps).expect("mkdir");
        // A test binary in deps/ finds the daemons one level up.
        assert_eq!(pick_bin_dir(None, Some(&deps.join("e2e-123"))), release);
        // bpcluster beside bpmaster finds its own directory.
        touch(&release.join("bpmaster"));
        assert_eq!(pick_bin_dir(None, Some(&release.join("bpcluster"))), release);
        assert_eq!(pick_bin_dir(None, None), Path::new("."));
    }

    #[test]
    fn check_names_the_missing_binary() {
        let tmp = TestDir::new("bins-check");
        touch(&tmp.path().join("bpmaster"));
        touch(&tmp.path().join("bpstat"));
        let err = check(tmp.path()).expect_err("bpslave missing");
        assert!(matches!(&err, HarnessError::MissingBinary { program, .. } if program == "bpslave"), "{err}");
        assert!(err.to_string().contains("cargo build --release"));
        touch(&tmp.path().join("bpslave"));
        check(tmp.path()).expect("all there");
        assert_eq!(resolve(Some(tmp.path())).expect("resolve"), tmp.path());
        assert!(resolve(Some(Path::new("surely/not/here")))
            .expect_err("missing")
            .to_string()
            .contains(&format!("{}", std::env::current_dir().expect("cwd").display())));
    }
}
