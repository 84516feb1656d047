//! Reading node states from `bpstat --json`.

use serde::Deserialize;

use crate::error::HarnessError;

/// One node as `bpstat --json` reports it. Fields other than `node` and `state` are optional so
/// the harness keeps working while the tool grows; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeStatus {
    /// The node number (the master, if listed, is -1).
    pub node: i64,
    /// "up", "down", "boot", "error", ...
    pub state: String,
    /// The node's address, e.g. "10.77.1.10".
    #[serde(default)]
    pub addr: Option<String>,
    /// Permission bits like a file's, e.g. "---x--x--x".
    #[serde(default)]
    pub mode: Option<String>,
    /// Owner uid.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Owner gid.
    #[serde(default)]
    pub gid: Option<u32>,
    /// Owner user name.
    #[serde(default)]
    pub user: Option<String>,
    /// Owner group name.
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Deserialize)]
struct BpstatOutput {
    nodes: Vec<NodeStatus>,
}

/// Parses the whole output of `bpstat --json`.
pub(crate) fn parse(output: &str) -> Result<Vec<NodeStatus>, HarnessError> {
    serde_json::from_str::<BpstatOutput>(output)
        .map(|out| out.nodes)
        .map_err(|source| HarnessError::BpstatFormat { output: output.chars().take(400).collect(), source })
}

/// `(node, state)` of the real nodes (node >= 0), sorted by node.
pub(crate) fn states(nodes: &[NodeStatus]) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> =
        nodes.iter().filter_map(|n| Some((u32::try_from(n.node).ok()?, n.state.clone()))).collect();
    out.sort();
    out
}

/// Whether nodes `0..count` are all in `state`.
pub(crate) fn all_in(states: &[(u32, String)], count: u32, state: &str) -> bool {
    (0..count).all(|node| states.iter().any(|(n, s)| *n == node && s == state))
}

/// A short summary for messages: "0 up, 1 boot, 2 down".
pub(crate) fn summary(states: &[(u32, String)]) -> String {
    if states.is_empty() {
        return "no nodes listed".to_owned();
    }
    states.iter().map(|(n, s)| format!("{n} {s}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"nodes":[
        {"node":1,"state":"boot","addr":"10.77.1.11","mode":"---x--x--x","uid":0,"gid":0,"user":"root","group":"root"},
        {"node":0,"state":"up","addr":"10.77.1.10","mode":"---x--x--x","uid":0,"gid":0,"user":"root","group":"root","procs":3},
        {"node":-1,"state":"up"}
    ],"version":2}"#;

    #[test]
    fn parses_and_sorts() {
        let nodes = parse(SAMPLE).expect("parse");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].addr.as_deref(), Some("10.77.1.10"));
        assert_eq!(nodes[1].user.as_deref(), Some("root"));
        let st = states(&nodes);
        assert_eq!(st, [(0, "up".to_owned()), (1, "boot".to_owned())]);
        assert!(all_in(&st, 1, "up"));
        assert!(!all_in(&st, 2, "up"));
        assert!(!all_in(&st, 3, "boot"));
        assert_eq!(summary(&st), "0 up, 1 boot");
    }

    #[test]
    fn bad_output() {
        for text in ["", "nodes", "{\"nodes\":[{\"node\":0}]}", "[]"] {
            assert!(matches!(parse(text), Err(HarnessError::BpstatFormat { .. })), "{text:?}");
        }
    }
}
