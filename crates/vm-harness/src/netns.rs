//! Network namespaces, the hub bridge and the veth links, made with iproute2's `ip` in batch
//! mode (one `ip` for all `netns add`, one for the hub, one per node run in parallel).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::command;
use crate::error::HarnessError;
use crate::names::{self, NetnsRole, NETNS_PREFIX};
use crate::procfs;
use crate::subnet::Subnet;

/// Where `ip netns add` bind-mounts named namespaces.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// The bridge in the hub namespace.
pub(crate) const BRIDGE: &str = "br0";

/// How many `ip -n NODE` run at once.
const PARALLEL_IP: usize = 64;

/// The hub-side end of node `node`'s veth pair.
pub(crate) fn hub_veth(node: u32) -> String {
    format!("v{node}")
}

fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether the named namespace exists.
pub(crate) fn exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Every named network namespace, sorted.
pub(crate) fn list() -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    found.sort();
    found
}

/// The harness namespaces present: those of cluster `cluster` (exactly), or with `None` every
/// namespace whose name starts with `bp-`. Node namespaces come first, hubs last (the order to
/// delete them in).
pub(crate) fn list_ours(cluster: Option<&str>) -> Vec<String> {
    let mut found: Vec<(Option<NetnsRole>, String)> = list()
        .into_iter()
        .filter_map(|ns| {
            let parsed = names::parse_netns(&ns);
            let keep = match cluster {
                Some(wanted) => parsed.is_some_and(|(c, _)| c == wanted),
                None => ns.starts_with(NETNS_PREFIX),
            };
            let role = parsed.map(|(_, role)| role);
            keep.then_some((role, ns))
        })
        .collect();
    // Nodes (and names we cannot parse) before hubs.
    found.sort_by(|a, b| {
        let hub = |r: &Option<NetnsRole>| matches!(r, Some(NetnsRole::Hub));
        (hub(&a.0), &a.0, &a.1).cmp(&(hub(&b.0), &b.0, &b.1))
    });
    found.into_iter().map(|(_, ns)| ns).collect()
}

/// `ip -batch -` with `script` on stdin, inside `netns` when given.
fn ip_batch(netns: Option<&str>, force: bool) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    if force {
        cmd.arg("-force");
    }
    cmd.args(["-batch", "-"]);
    cmd
}

/// The lines of the batch that creates the cluster's namespaces.
pub(crate) fn add_script(cluster: &str, nodes: u32) -> String {
    let mut script = format!("netns add {}\n", names::hub_netns(cluster));
    for node in 0..nodes {
        let _ = writeln!(script, "netns add {}", names::node_netns(cluster, node));
    }
    script
}

/// The batch run in the hub: loopback, the bridge with the hub address, one veth per node whose
/// far end becomes `eth0` of the node's namespace.
pub(crate) fn hub_script(cluster: &str, subnet: Subnet, nodes: u32) -> String {
    let mut script = format!(
        "link set lo up\n\
         link add {BRIDGE} type bridge\n\
         addr add {}/24 dev {BRIDGE}\n\
         link set {BRIDGE} up\n",
        subnet.hub_addr()
    );
    for node in 0..nodes {
        let veth = hub_veth(node);
        let _ = write!(
            script,
            "link add {veth} type veth peer name eth0 netns {}\n\
             link set {veth} master {BRIDGE}\n\
             link set {veth} up\n",
            names::node_netns(cluster, node)
        );
    }
    script
}

/// The batch run in node `node`'s namespace.
pub(crate) fn node_script(subnet: Subnet, node: u32) -> Option<String> {
    Some(format!("link set lo up\naddr add {}/24 dev eth0\nlink set eth0 up\n", subnet.node_addr(node)?))
}

/// Makes the hub and node namespaces of a cluster and wires them.
pub(crate) fn create_cluster(cluster: &str, subnet: Subnet, nodes: u32) -> Result<(), HarnessError> {
    command::run(&mut ip_batch(None, false), Some(&add_script(cluster, nodes)))?;
    let hub = names::hub_netns(cluster);
    command::run(&mut ip_batch(Some(&hub), false), Some(&hub_script(cluster, subnet, nodes)))?;
    let all: Vec<u32> = (0..nodes).collect();
    for chunk in all.chunks(PARALLEL_IP) {
        let mut running: Vec<(Child, String)> = Vec::with_capacity(chunk.len());
        let mut first_error = None;
        for &node in chunk {
            let script = node_script(subnet, node)
                .ok_or_else(|| HarnessError::InvalidSpec { reason: format!("node {node} has no address") })?;
            let mut cmd = ip_batch(Some(&names::node_netns(cluster, node)), false);
            match command::spawn_with_input(&mut cmd, Some(&script)) {
                Ok(child) => running.push((child, command::describe(&cmd))),
                Err(err) => {
                    first_error = Some(err);
                    break;
                }
            }
        }
        // Wait for every started one, even after an error, so none is left behind.
        for (child, description) in running {
            if let Err(err) = command::finish(child, description) {
                first_error.get_or_insert(err);
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
    }
    Ok(())
}

/// Sets a link in `netns` up or down.
pub(crate) fn set_link(netns: &str, dev: &str, up: bool) -> Result<(), HarnessError> {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", netns, "link", "set", dev, if up { "up" } else { "down" }]);
    command::run(&mut cmd, None).map(|_| ())
}

/// Deletes the named namespaces (in the order given) that still exist. An error says which
/// could not be deleted.
pub(crate) fn delete(netns: &[String]) -> Result<(), HarnessError> {
    let present: Vec<&String> = netns.iter().filter(|ns| exists(ns)).collect();
    if present.is_empty() {
        return Ok(());
    }
    let script: String = present.iter().map(|ns| format!("netns del {ns}\n")).collect();
    let result = command::run(&mut ip_batch(None, true), Some(&script));
    let left: Vec<&str> = present.iter().filter(|ns| exists(ns)).map(|ns| ns.as_str()).collect();
    match (result, left.is_empty()) {
        (_, true) => Ok(()),
        (Err(err), false) => Err(err),
        (Ok(_), false) => Err(HarnessError::NetnsLeft { netns: left.iter().map(|ns| (*ns).to_owned()).collect() }),
    }
}

/// The processes (by pid) whose network namespace is one of `netns`, like `ip netns pids` but in
/// one pass over `/proc` for all of them.
pub(crate) fn pids_in(netns: &[String]) -> Vec<(String, i32)> {
    let ids: HashMap<(u64, u64), &String> =
        netns.iter().filter_map(|ns| Some((procfs::file_id(&netns_path(ns))?, ns))).collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let mut found: Vec<(String, i32)> = procfs::pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let ns = ids.get(&procfs::ns_id(pid, "net")?)?;
            Some(((*ns).clone(), pid))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts() {
        let subnet = Subnet::new(5).expect("subnet");
        assert_eq!(add_script("c", 2), "netns add bp-c-hub\nnetns add bp-c-0\nnetns add bp-c-1\n");
        let hub = hub_script("c", subnet, 1);
        assert!(hub.contains("addr add 10.77.5.1/24 dev br0\n"), "{hub}");
        assert!(hub.contains("link add v0 type veth peer name eth0 netns bp-c-0\n"), "{hub}");
        assert!(hub.contains("link set v0 master br0\nlink set v0 up\n"), "{hub}");
        assert_eq!(
            node_script(subnet, 3).as_deref(),
            Some("link set lo up\naddr add 10.77.5.13/24 dev eth0\nlink set eth0 up\n")
        );
        assert_eq!(node_script(subnet, 240), None);
    }

    #[test]
    fn nothing_to_delete_is_fine() {
        delete(&["bp-surely-not-there-hub".to_owned()]).expect("delete nothing");
        assert!(pids_in(&["bp-surely-not-there-hub".to_owned()]).is_empty());
    }
}
