//! Subnets: cluster IDX uses 10.77.IDX.0/24 (hub .1, node n at .10+n), claimed atomically by
//! creating `subnets/IDX` with `O_CREAT|O_EXCL`.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::layout::RunDir;

/// Most nodes one cluster can have (addresses .10 ..= .249).
pub const MAX_NODES: u32 = 240;

/// The TCP port the master listens on for slaves, on the hub's address.
pub const MASTER_PORT: u16 = 2223;

/// First host byte of node addresses: node n is 10.77.IDX.(10+n).
const FIRST_NODE_HOST: u32 = 10;

/// One cluster's /24 inside 10.77.0.0/16; the index is in 1..=254.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Subnet(u8);

impl Subnet {
    /// The subnet with third byte `index`, if `index` is in 1..=254.
    pub fn new(index: u8) -> Option<Self> {
        (1..=254).contains(&index).then_some(Subnet(index))
    }

    /// The third byte of the addresses.
    pub fn index(self) -> u8 {
        self.0
    }

    /// The hub's (bridge's) address, where the master listens: 10.77.IDX.1.
    pub fn hub_addr(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.0, 1)
    }

    /// The master's TCP endpoint for slaves: 10.77.IDX.1:2223.
    pub fn master_endpoint(self) -> SocketAddrV4 {
        SocketAddrV4::new(self.hub_addr(), MASTER_PORT)
    }

    /// Node `node`'s address, 10.77.IDX.(10+node), if `node < 240`.
    pub fn node_addr(self, node: u32) -> Option<Ipv4Addr> {
        if node >= MAX_NODES {
            return None;
        }
        let host = u8::try_from(FIRST_NODE_HOST + node).ok()?;
        Some(Ipv4Addr::new(10, 77, self.0, host))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "10.77.{}.0/24", self.0)
    }
}

impl TryFrom<u8> for Subnet {
    type Error = String;

    fn try_from(index: u8) -> Result<Self, Self::Error> {
        Subnet::new(index).ok_or_else(|| format!("subnet index {index} is not in 1..=254"))
    }
}

impl From<Subnet> for u8 {
    fn from(subnet: Subnet) -> u8 {
        subnet.0
    }
}

/// Claims the lowest free subnet for `cluster`.
pub(crate) fn claim(run: &RunDir, cluster: &str) -> Result<Subnet, HarnessError> {
    for index in 1..=254u8 {
        let path = claim_file(run, index);
        match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                if let Err(err) = file.write_all(cluster.as_bytes()) {
                    let _ = fs::remove_file(&path);
                    return Err(HarnessError::io("write subnet claim", path, err));
                }
                return Ok(Subnet(index));
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(HarnessError::io("create subnet claim", path, err)),
        }
    }
    Err(HarnessError::NoFreeSubnet { dir: run.subnets_dir() })
}

/// Removes `cluster`'s claim on `subnet`; a claim that is missing or held by another cluster is
/// left alone. Returns whether a claim was removed.
pub(crate) fn release(run: &RunDir, subnet: Subnet, cluster: &str) -> Result<bool, HarnessError> {
    let path = claim_file(run, subnet.0);
    match fs::read_to_string(&path) {
        Ok(owner) if owner.trim() == cluster => match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(HarnessError::io("remove subnet claim", path, err)),
        },
        Ok(_) => Ok(false),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(HarnessError::io("read subnet claim", path, err)),
    }
}

/// A claim file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) path: PathBuf,
    /// The subnet, if the file name is a valid index.
    pub(crate) subnet: Option<Subnet>,
    /// The cluster named inside.
    pub(crate) owner: String,
}

/// Every claim file in `subnets/`, sorted by path.
pub(crate) fn claims(run: &RunDir) -> Vec<Claim> {
    let mut found: Vec<Claim> = fs::read_dir(run.subnets_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            let subnet = entry.file_name().to_str().and_then(|n| n.parse::<u8>().ok()).and_then(Subnet::new);
            let owner = fs::read_to_string(&path).map(|s| s.trim().to_owned()).unwrap_or_default();
            Claim { path, subnet, owner }
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn claim_file(run: &RunDir, index: u8) -> PathBuf {
    run.subnets_dir().join(index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::testdir::TestDir;

    #[test]
    fn addresses() {
        let s = Subnet::new(3).expect("valid");
        assert_eq!(s.to_string(), "10.77.3.0/24");
        assert_eq!(s.hub_addr(), Ipv4Addr::new(10, 77, 3, 1));
        assert_eq!(s.master_endpoint().to_string(), "10.77.3.1:2223");
        assert_eq!(s.node_addr(0), Some(Ipv4Addr::new(10, 77, 3, 10)));
        assert_eq!(s.node_addr(239), Some(Ipv4Addr::new(10, 77, 3, 249)));
        assert_eq!(s.node_addr(240), None);
        assert_eq!(Subnet::new(0), None);
        assert_eq!(Subnet::new(255), None);
        assert!(Subnet::new(254).is_some());
    }

    #[test]
    fn serde_checks_the_range() {
        let s: Subnet = serde_json::from_str("17").expect("parse");
        assert_eq!(s.index(), 17);
        assert_eq!(serde_json::to_string(&s).expect("json"), "17");
        assert!(serde_json::from_str::<Subnet>("0").is_err());
        assert!(serde_json::from_str::<Subnet>("255").is_err());
    }

    #[test]
    fn claims_are_exclusive_and_released_by_their_owner_only() {
        let tmp = TestDir::new("subnet");
        let run = RunDir::new(tmp.path());
        run.ensure().expect("ensure");
        let a = claim(&run, "a").expect("claim a");
        let b = claim(&run, "b").expect("claim b");
        assert_eq!((a.index(), b.index()), (1, 2));
        assert!(!release(&run, a, "b").expect("release by other"));
        let listed = claims(&run);
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].subnet, listed[0].owner.as_str()), (Some(a), "a"));
        assert!(release(&run, a, "a").expect("release"));
        assert!(!release(&run, a, "a").expect("release again"));
        assert_eq!(claim(&run, "c").expect("claim c"), a, "freed index reused");
    }

    #[test]
    fn all_claimed() {
        let tmp = TestDir::new("subnet-full");
        let run = RunDir::new(tmp.path());
        run.ensure().expect("ensure");
        for _ in 1..=254 {
            claim(&run, "x").expect("claim");
        }
        assert!(matches!(claim(&run, "y"), Err(HarnessError::NoFreeSubnet { .. })));
    }
}
