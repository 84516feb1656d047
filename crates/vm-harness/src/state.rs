//! `state.json`: what `down`, `gc` and `status` need to know about a running cluster, written
//! atomically (temp file + rename) after every change.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::layout::RunDir;
use crate::procfs::ProcRef;
use crate::subnet::Subnet;

/// The persistent description of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClusterState {
    pub(crate) name: String,
    /// Third byte of the cluster's 10.77.IDX.0/24.
    pub(crate) subnet: Subnet,
    pub(crate) nodes: u32,
    pub(crate) node_timeout_ms: u64,
    pub(crate) bin_dir: PathBuf,
    /// Passed to `bpmaster --config` when set.
    #[serde(default)]
    pub(crate) master_config: Option<PathBuf>,
    pub(crate) hub_netns: String,
    pub(crate) node_netns: Vec<String>,
    /// The `bpmaster` process, once started.
    pub(crate) master: Option<ProcRef>,
    /// Per node, the `unshare` process that launched its `bpslave` (whose child that is).
    pub(crate) slaves: Vec<Option<ProcRef>>,
}

impl ClusterState {
    /// Reads `clusters/NAME/state.json`.
    pub(crate) fn load(run: &RunDir, name: &str) -> Result<Self, HarnessError> {
        let path = run.state_file(name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(HarnessError::NoSuchCluster { name: name.to_owned(), path })
            }
            Err(err) => return Err(HarnessError::io("read", path, err)),
        };
        let state: ClusterState =
            serde_json::from_str(&text).map_err(|source| HarnessError::StateFormat { path, source })?;
        Ok(state)
    }

    /// Writes `clusters/NAME/state.json` (the state dir must exist).
    pub(crate) fn save(&self, run: &RunDir) -> Result<(), HarnessError> {
        let path = run.state_file(&self.name);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|source| HarnessError::StateFormat { path: path.clone(), source })?;
        fs::write(&tmp, text + "\n").map_err(|e| HarnessError::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| HarnessError::io("rename into place", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{create_dir_0755, testdir::TestDir};

    fn sample() -> ClusterState {
        ClusterState {
            name: "t1".to_owned(),
            subnet: Subnet::new(4).expect("subnet"),
            nodes: 2,
            node_timeout_ms: 3000,
            bin_dir: PathBuf::from("/target/release"),
            master_config: None,
            hub_netns: "bp-t1-hub".to_owned(),
            node_netns: vec!["bp-t1-0".to_owned(), "bp-t1-1".to_owned()],
            master: Some(ProcRef { pid: 100, start_time: 7 }),
            slaves: vec![Some(ProcRef { pid: 101, start_time: 8 }), None],
        }
    }

    #[test]
    fn round_trip() {
        let tmp = TestDir::new("state");
        let run = RunDir::new(tmp.path());
        run.ensure().expect("ensure");
        create_dir_0755(&run.state_dir("t1")).expect("mkdir");
        let state = sample();
        state.save(&run).expect("save");
        assert_eq!(ClusterState::load(&run, "t1").expect("load"), state);
        let text = fs::read_to_string(run.state_file("t1")).expect("read");
        assert!(text.contains("\"subnet\": 4"), "{text}");
        assert!(text.contains("\"pid\": 101"), "{text}");
        assert!(!run.state_dir("t1").join("state.json.tmp").exists());
    }

    #[test]
    fn missing_and_bad_files() {
        let tmp = TestDir::new("state-bad");
        let run = RunDir::new(tmp.path());
        run.ensure().expect("ensure");
        assert!(matches!(ClusterState::load(&run, "nope"), Err(HarnessError::NoSuchCluster { .. })));
        create_dir_0755(&run.state_dir("bad")).expect("mkdir");
        fs::write(run.state_file("bad"), "{\"name\":").expect("write");
        assert!(matches!(ClusterState::load(&run, "bad"), Err(HarnessError::StateFormat { .. })));
    }
}
