//! The master's configuration: flags, optionally on top of a TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::Perms;

/// Where clients look for the master when `BPROC_SOCKET` is not set.
pub const DEFAULT_SOCKET: &str = "/run/bproc/master.sock";
/// Smallest stdio credit window: bpsh keeps up to 1 MiB of stdin in flight.
pub const MIN_STDIO_WINDOW: u64 = 1 << 20;
/// BProc's master port.
pub const DEFAULT_PORT: u16 = 2223;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad configuration file {path}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Per-node settings in the configuration file (`[[node]]` tables).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub number: u32,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Everything the master can be told, each with a default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub socket: PathBuf,
    pub listen: SocketAddr,
    pub nodes: u32,
    pub heartbeat_interval_ms: u32,
    pub node_timeout_ms: u32,
    /// Output and stdin credit per process stream, in bytes.
    pub stdio_window: u64,
    pub default_mode: u32,
    pub default_uid: u32,
    pub default_gid: u32,
    #[serde(rename = "node")]
    pub node_overrides: Vec<NodeConfig>,
    /// Run a slave for the front end (node -1: a PID namespace of its own
    /// here), so that processes can move back to the front end.
    pub front_end_node: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from(DEFAULT_SOCKET),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            nodes: 0,
            heartbeat_interval_ms: 500,
            node_timeout_ms: 3000,
            stdio_window: 8 << 20,
            default_mode: 0o111,
            default_uid: 0,
            default_gid: 0,
            node_overrides: Vec::new(),
            front_end_node: false,
        }
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval_ms == 0 || self.node_timeout_ms <= self.heartbeat_interval_ms {
            return Err(ConfigError::Invalid(format!(
                "node_timeout_ms ({}) must exceed heartbeat_interval_ms ({}), which must be positive",
                self.node_timeout_ms, self.heartbeat_interval_ms
            )));
        }
        if self.default_mode > 0o777 {
            return Err(ConfigError::Invalid(format!("default_mode {:o} is not a permission mode", self.default_mode)));
        }
        if !(MIN_STDIO_WINDOW..=1 << 30).contains(&self.stdio_window) {
            return Err(ConfigError::Invalid("stdio_window must be between 1 MiB and 1 GiB".into()));
        }
        for n in &self.node_overrides {
            if n.number >= self.nodes {
                return Err(ConfigError::Invalid(format!("[[node]] {} is beyond the {} nodes", n.number, self.nodes)));
            }
            if n.mode.is_some_and(|m| m > 0o777) {
                return Err(ConfigError::Invalid(format!("node {}: mode is not a permission mode", n.number)));
            }
        }
        Ok(())
    }

    pub fn default_perms(&self) -> Perms {
        Perms { uid: self.default_uid, gid: self.default_gid, mode: self.default_mode }
    }

    /// The permissions of `node`: its override where given, else the default.
    pub fn perms_of(&self, node: u32) -> Perms {
        let d = self.default_perms();
        match self.node_overrides.iter().find(|n| n.number == node) {
            Some(n) => {
                Perms { uid: n.uid.unwrap_or(d.uid), gid: n.gid.unwrap_or(d.gid), mode: n.mode.unwrap_or(d.mode) }
            }
            None => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_per_node_perms() {
        let cfg: Config =
            toml::from_str("nodes = 4\nnode_timeout_ms = 2000\n[[node]]\nnumber = 2\nmode = 0o110\ngid = 50\n")
                .expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.nodes, 4);
        assert_eq!(cfg.heartbeat_interval_ms, 500);
        assert_eq!(cfg.perms_of(2), Perms { uid: 0, gid: 50, mode: 0o110 });
        assert_eq!(cfg.perms_of(1), Perms { uid: 0, gid: 0, mode: 0o111 });
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(toml::from_str::<Config>("nodes = 4\nbogus = 1\n").is_err(), "unknown key");
        let cfg: Config = toml::from_str("nodes = 2\n[[node]]\nnumber = 5\n").expect("parses");
        assert!(cfg.validate().is_err(), "node out of range");
        let cfg: Config = toml::from_str("heartbeat_interval_ms = 500\nnode_timeout_ms = 100\n").expect("parses");
        assert!(cfg.validate().is_err(), "timeout below heartbeat");
    }
}
