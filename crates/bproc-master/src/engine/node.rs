//! One node of the node table: its state, its link, its permissions.

use std::fmt;
use std::time::Instant;

use super::{ConnId, Cred};

/// A node's state, with BProc's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Down,
    Boot,
    Up,
    Error,
    Reboot,
    Halt,
    Pwroff,
}

impl NodeState {
    /// BProc's name for the state, as `bpstat` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Down => "down",
            NodeState::Boot => "boot",
            NodeState::Up => "up",
            NodeState::Error => "error",
            NodeState::Reboot => "reboot",
            NodeState::Halt => "halt",
            NodeState::Pwroff => "pwroff",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The live link of an up node.
#[derive(Clone, Debug)]
pub struct Link {
    pub conn: ConnId,
    pub addr: String,
    pub hostname: String,
    pub last_seen: Instant,
}

/// Who may use a node: an owner, a group and a mode, like a file. The
/// execute bits say who may run processes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Perms {
    /// Whether `cred` may run processes on a node with these permissions.
    /// Root always may; otherwise the owner, group or other execute bit
    /// decides, checked in that order as for a file.
    pub fn may_execute(&self, cred: &Cred) -> bool {
        if cred.uid == 0 {
            return true;
        }
        let bit = if cred.uid == self.uid {
            0o100
        } else if cred.gid == self.gid || cred.groups.contains(&self.gid) {
            0o010
        } else {
            0o001
        };
        self.mode & bit != 0
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub number: u32,
    pub state: NodeState,
    pub link: Option<Link>,
    pub perms: Perms,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32, groups: &[u32]) -> Cred {
        Cred { uid, gid, groups: groups.to_vec(), pid: 1 }
    }

    #[test]
    fn execute_bits_are_checked_like_a_file() {
        let p = Perms { uid: 100, gid: 200, mode: 0o110 };
        assert!(p.may_execute(&cred(0, 0, &[])), "root always may");
        assert!(p.may_execute(&cred(100, 1, &[])), "owner bit");
        assert!(p.may_execute(&cred(5, 200, &[])), "group bit by gid");
        assert!(p.may_execute(&cred(5, 6, &[7, 200])), "group bit by supplementary group");
        assert!(!p.may_execute(&cred(5, 6, &[7])), "other bit is off");
        let owner_off = Perms { uid: 100, gid: 200, mode: 0o011 };
        assert!(!owner_off.may_execute(&cred(100, 200, &[])), "owner class wins even when group allows");
    }
}
