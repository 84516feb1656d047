//! Cluster names, the network namespace names derived from them, and unique names for tests.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::HarnessError;
use crate::layout::RunDir;
use crate::netns;

/// Longest cluster name: `bp-NAME-hub` and `bp-NAME-239` stay short.
pub const MAX_NAME_LEN: usize = 12;

/// Every network namespace the harness makes starts with this.
pub(crate) const NETNS_PREFIX: &str = "bp-";

/// Checks a cluster name: 1-12 chars of `[a-z0-9-]`, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), HarnessError> {
    let invalid = |reason| HarnessError::InvalidName { name: name.to_owned(), reason };
    let Some(first) = name.chars().next() else {
        return Err(invalid("it is empty"));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 12 characters"));
    }
    if !first.is_ascii_lowercase() {
        return Err(invalid("it must start with a letter a-z"));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(invalid("only a-z, 0-9 and '-' are allowed"));
    }
    Ok(())
}

/// The hub namespace of a cluster: `bp-NAME-hub`.
pub(crate) fn hub_netns(cluster: &str) -> String {
    format!("{NETNS_PREFIX}{cluster}-hub")
}

/// The namespace of node `node`: `bp-NAME-N`.
pub(crate) fn node_netns(cluster: &str, node: u32) -> String {
    format!("{NETNS_PREFIX}{cluster}-{node}")
}

/// What a harness network namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum NetnsRole {
    /// A node namespace (sorted first: nodes are deleted before the hub).
    Node(u32),
    /// The hub namespace with the bridge and the master.
    Hub,
}

/// Splits `bp-NAME-hub` / `bp-NAME-N` into the cluster name and the role.
///
/// Exact: `bp-t1-x-hub` belongs to cluster `t1-x`, never to `t1`, because node numbers are digits
/// only and the role is always the last `-` component.
pub(crate) fn parse_netns(netns: &str) -> Option<(&str, NetnsRole)> {
    let rest = netns.strip_prefix(NETNS_PREFIX)?;
    let (cluster, role) = rest.rsplit_once('-')?;
    if cluster.is_empty() {
        return None;
    }
    let role = if role == "hub" {
        NetnsRole::Hub
    } else if !role.is_empty() && role.bytes().all(|b| b.is_ascii_digit()) {
        NetnsRole::Node(role.parse().ok()?)
    } else {
        return None;
    };
    Some((cluster, role))
}

/// A short cluster name that no running cluster uses, for tests: the prefix, this process's pid
/// (5 base-36 digits) and a per-process counter, e.g. `t00a3f-0`; at most 12 chars.
///
/// Names are unique among the processes running at the same time; a name whose state directory
/// or hub namespace is still present (a crashed earlier run) is skipped. The prefix is
/// lowercased, stripped of characters that names cannot hold, made to start with a letter and cut
/// to fit.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let run_dir = RunDir::from_env();
    loop {
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = compose_unique(prefix, std::process::id(), counter);
        let taken = run_dir.state_dir(&name).exists() || netns::exists(&hub_netns(&name));
        if !taken {
            return name;
        }
    }
}

/// The pure part of [`unique_name`].
fn compose_unique(prefix: &str, pid: u32, counter: u64) -> String {
    let tail = format!("{:0>5}-{}", base36(u64::from(pid)), base36(counter));
    let mut head: String = prefix
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    if !head.starts_with(|c: char| c.is_ascii_lowercase()) {
        head.insert(0, 't');
    }
    head.truncate(MAX_NAME_LEN.saturating_sub(tail.len()).max(1));
    let mut name = head + &tail;
    // A counter past 36^5 would overflow the length; wrap it instead of producing a bad name.
    name.truncate(MAX_NAME_LEN);
    name
}

/// Lowercase base-36 digits of `n`.
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in ["a", "default", "t1", "abc-def-0123", "x-"] {
            assert!(validate_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn invalid_names() {
        for name in ["", "1abc", "-a", "Abc", "a_b", "a.b", "abcdefghijklm", "a b", "é"] {
            assert!(validate_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn netns_names_round_trip() {
        assert_eq!(hub_netns("t1"), "bp-t1-hub");
        assert_eq!(node_netns("t1", 7), "bp-t1-7");
        assert_eq!(parse_netns("bp-t1-hub"), Some(("t1", NetnsRole::Hub)));
        assert_eq!(parse_netns("bp-t1-12"), Some(("t1", NetnsRole::Node(12))));
        assert_eq!(parse_netns("bp-t1-x-hub"), Some(("t1-x", NetnsRole::Hub)));
        assert_eq!(parse_netns("bp-t1-0-3"), Some(("t1-0", NetnsRole::Node(3))));
    }

    #[test]
    fn foreign_netns_names_are_not_ours() {
        for ns in ["", "bp-", "bp-hub", "bp--hub", "bp-t1-", "bp-t1-x", "xx-t1-hub", "bp-t1-+1"] {
            assert_eq!(parse_netns(ns), None, "{ns:?}");
        }
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(4_194_304), "2hwcg");
    }

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = compose_unique("t", 4_194_304, 0);
        let b = compose_unique("t", 4_194_304, 1);
        assert_eq!(a, "t2hwcg-0");
        assert_ne!(a, b);
        // Different prefixes and pids never meet, thanks to the fixed-width pid.
        assert_ne!(compose_unique("t1", 2, 0), compose_unique("t", 36 + 2, 0));
        for (prefix, pid, counter) in
            [("", 1, 0), ("9lives", 1, 0), ("A Very_Long-Prefix", 123_456, 99), ("t", 1, u64::MAX)]
        {
            let name = compose_unique(prefix, pid, counter);
            assert!(validate_name(&name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn unique_name_is_fresh_each_call() {
        let a = unique_name("u");
        let b = unique_name("u");
        assert_ne!(a, b);
        assert!(validate_name(&a).is_ok());
    }
}
