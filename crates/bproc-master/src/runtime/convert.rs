//! Wire types <-> domain types, at the edge. Everything a peer sends is
//! validated here before the engine sees it.

use proto::v1::{self, exec_out, master_msg, proc_event::Kind};
use tonic::Status;

use crate::engine::{Cred, ProcEventKind, ProcId, SpawnError, SpawnSpec};

/// Most arguments plus environment entries one process may get.
const MAX_ARGS: usize = 65_536;

pub fn spec_from_start(start: v1::ExecStart) -> Result<SpawnSpec, Status> {
    if start.argv.is_empty() {
        return Err(Status::invalid_argument("empty command line"));
    }
    if start.argv.len() + start.env.len() > MAX_ARGS {
        return Err(Status::invalid_argument(format!("more than {MAX_ARGS} arguments and environment entries")));
    }
    if start.argv.iter().chain(start.env.iter()).chain(std::iter::once(&start.cwd)).any(|s| s.contains(&0)) {
        return Err(Status::invalid_argument("argument, environment entry or directory contains a NUL byte"));
    }
    if start.umask > 0o777 {
        return Err(Status::invalid_argument(format!("umask {:o} is out of range", start.umask)));
    }
    Ok(SpawnSpec {
        node: start.node,
        argv: start.argv,
        env: start.env,
        cwd: start.cwd,
        umask: start.umask,
        stdin_null: start.stdin_null,
        pid: (start.pid != 0).then_some(start.pid),
    })
}

pub fn spawn_status(err: SpawnError) -> Status {
    let msg = err.to_string();
    match err {
        SpawnError::NoSuchNode { .. } => Status::not_found(msg),
        SpawnError::NodeNotUp { .. } => Status::unavailable(msg),
        SpawnError::PermissionDenied { .. } => Status::permission_denied(msg),
        SpawnError::EmptyArgv => Status::invalid_argument(msg),
    }
}

pub fn spawn_msg(id: ProcId, cred: Cred, spec: SpawnSpec) -> v1::MasterMsg {
    v1::MasterMsg {
        msg: Some(master_msg::Msg::Spawn(v1::SpawnRequest {
            id,
            argv: spec.argv,
            env: spec.env,
            cwd: spec.cwd,
            umask: spec.umask,
            cred: Some(v1::Credentials { uid: cred.uid, gid: cred.gid, groups: cred.groups }),
            stdin_null: spec.stdin_null,
            pid: spec.pid.unwrap_or(0),
        })),
    }
}

pub fn event_kind(ev: &v1::ProcEvent) -> Option<ProcEventKind> {
    match Kind::try_from(ev.kind).ok()? {
        Kind::Unspecified => None,
        Kind::Started => Some(ProcEventKind::Started { node_pid: ev.node_pid }),
        Kind::ExecFailed => Some(ProcEventKind::ExecFailed),
        Kind::Stopped => Some(ProcEventKind::Stopped),
        Kind::Continued => Some(ProcEventKind::Continued),
        Kind::Exited => Some(ProcEventKind::Exited),
        Kind::Forked => Some(ProcEventKind::Forked { parent: ev.parent_id, node_pid: ev.node_pid }),
        Kind::Execed => {
            if ev.argv.len() > MAX_ARGS || ev.argv.iter().any(|a| a.contains(&0)) {
                return None;
            }
            Some(ProcEventKind::Execed { argv: ev.argv.clone() })
        }
    }
}

/// The event a client sees when its process died with its node.
pub fn lost_event(id: ProcId) -> v1::ExecOut {
    v1::ExecOut {
        msg: Some(exec_out::Msg::Event(v1::ProcEvent {
            id,
            kind: Kind::Exited as i32,
            wait_status: libc::SIGKILL,
            node_lost: true,
            ..Default::default()
        })),
    }
}

pub fn master_msg(msg: master_msg::Msg) -> v1::MasterMsg {
    v1::MasterMsg { msg: Some(msg) }
}

pub fn exec_out(msg: exec_out::Msg) -> v1::ExecOut {
    v1::ExecOut { msg: Some(msg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_validated() {
        let ok = v1::ExecStart {
            node: 1,
            argv: vec![b"ls".to_vec()],
            cwd: b"/".to_vec(),
            umask: 0o22,
            ..Default::default()
        };
        assert_eq!(spec_from_start(ok.clone()).expect("valid").node, 1);
        let empty = v1::ExecStart { argv: vec![], ..ok.clone() };
        assert_eq!(spec_from_start(empty).unwrap_err().code(), tonic::Code::InvalidArgument);
        let nul = v1::ExecStart { argv: vec![b"l\0s".to_vec()], ..ok.clone() };
        assert!(spec_from_start(nul).unwrap_err().message().contains("NUL"));
        let mask = v1::ExecStart { umask: 0o7777, ..ok };
        assert!(spec_from_start(mask).is_err());
    }

    #[test]
    fn lost_process_reads_as_sigkill() {
        let Some(exec_out::Msg::Event(ev)) = lost_event(3).msg else { panic!("event") };
        assert_eq!(ev.wait_status, libc::SIGKILL);
        assert!(ev.node_lost);
    }
}
