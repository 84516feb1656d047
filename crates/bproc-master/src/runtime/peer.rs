//! Who is calling: the kernel's word (SO_PEERCRED, /proc), never the client's.

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use crate::engine::Cred;

/// Credentials of the process at the other end of the Unix socket.
pub fn peer_cred<T>(req: &Request<T>) -> Result<Cred, Status> {
    let info = req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
        .ok_or_else(|| Status::permission_denied("no peer credentials on this connection"))?;
    cred_of(info.uid(), info.gid(), info.pid())
}

/// Credentials from the kernel's SO_PEERCRED answer, with the caller's
/// supplementary groups from /proc.
#[allow(clippy::result_large_err)]
pub fn cred_of(uid: u32, gid: u32, pid: Option<i32>) -> Result<Cred, Status> {
    let pid = pid.ok_or_else(|| Status::permission_denied("the kernel gave no peer pid"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Status::permission_denied(format!("cannot read the caller's credentials: {e}")))?;
    let groups =
        parse_groups(&status).ok_or_else(|| Status::permission_denied("caller's /proc status has no Groups line"))?;
    Ok(Cred { uid, gid, groups, pid })
}

/// Supplementary groups from the text of /proc/PID/status.
pub fn parse_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    Some(line.split_whitespace().filter_map(|g| g.parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_line_is_parsed() {
        let s = "Name:\tbash\nUid:\t1\t1\t1\t1\nGroups:\t4 24 1000 \nNSpid:\t5\n";
        assert_eq!(parse_groups(s), Some(vec![4, 24, 1000]));
        assert_eq!(parse_groups("Groups:\t\n"), Some(vec![]));
        assert_eq!(parse_groups("Name: x\n"), None);
    }
}
