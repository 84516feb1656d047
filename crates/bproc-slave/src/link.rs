//! One link to the master: connect, register, heartbeat, and carry out what
//! the master says until the link fails.

use std::time::Duration;

use proto::v1::{self, master_msg, slave_link_client::SlaveLinkClient, slave_msg};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;

use crate::procs::Procs;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to the master at {addr}")]
    Connect { addr: String, source: tonic::transport::Error },
    /// The master refused us for good (for instance a protocol version
    /// mismatch): retrying cannot help.
    #[error("the master refused this slave: {0}")]
    Refused(String),
    #[error("link failed: {0}")]
    Failed(String),
    #[error("no word from the master for {0:?}")]
    Silent(Duration),
}

/// Identity of this slave.
#[derive(Clone, Debug)]
pub struct SlaveId {
    pub master: String,
    pub node: u32,
    pub hostname: String,
    /// The port of this node's ImagePeer service (0: none).
    pub image_port: u16,
}

/// Runs one link until it ends. Returns `Ok` only if `stop` fired.
pub async fn run_link(
    id: &SlaveId,
    procs: &Procs,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let endpoint = Endpoint::from_shared(format!("http://{}", id.master))
        .map_err(|e| LinkError::Refused(format!("bad master address {}: {e}", id.master)))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20);
    let channel = endpoint.connect().await.map_err(|source| LinkError::Connect { addr: id.master.clone(), source })?;
    let mut client = SlaveLinkClient::new(channel)
        .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);

    let (out, out_rx) = mpsc::unbounded_channel::<v1::SlaveMsg>();
    let register = v1::Register {
        protocol_version: proto::PROTOCOL_VERSION,
        node: id.node,
        hostname: id.hostname.clone(),
        software: format!("bpslave {}", env!("CARGO_PKG_VERSION")),
        image_port: id.image_port.into(),
        boot_id: bproc_daemon::sys::boot_id(),
    };
    let _ = out.send(v1::SlaveMsg { msg: Some(slave_msg::Msg::Register(register)) });
    let mut inbound = match client.attach(UnboundedReceiverStream::new(out_rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) => {
            return Err(LinkError::Refused(s.message().to_string()))
        }
        Err(s) => return Err(LinkError::Failed(s.message().to_string())),
    };
    let welcome = match inbound.message().await {
        Ok(Some(v1::MasterMsg { msg: Some(master_msg::Msg::Welcome(w)) })) => w,
        Ok(_) => return Err(LinkError::Failed("the master did not answer with welcome".into())),
        Err(s) if s.code() == tonic::Code::FailedPrecondition || s.code() == tonic::Code::InvalidArgument => {
            return Err(LinkError::Refused(s.message().to_string()))
        }
        Err(s) => return Err(LinkError::Failed(s.message().to_string())),
    };
    procs.set_window(welcome.stdio_window as usize);
    procs.set_fork_base(welcome.fork_id_base);
    procs.set_link_client(client.clone());
    // On the master's own host, images come over its Unix socket.
    let local = !welcome.image_socket.is_empty() && welcome.boot_id == bproc_daemon::sys::boot_id();
    procs.set_image_socket(local.then(|| welcome.image_socket.clone().into()));
    if !welcome.peer_socket.is_empty() {
        procs.serve_peers_on(std::path::Path::new(&welcome.peer_socket));
    }
    if welcome.pid_base > 0 && std::process::id() == 1 {
        if let Err(e) = crate::sys::number_pids_from(welcome.pid_base) {
            tracing::warn!(base = welcome.pid_base, error = %e, "cannot move this node's PID numbering");
        }
    }
    let interval = Duration::from_millis(welcome.heartbeat_interval_ms.max(10).into());
    let silence = Duration::from_millis(welcome.link_timeout_ms.max(100).into());
    tracing::info!(node = id.node, master = %id.master, ?interval, "registered");

    let mut beat = tokio::time::interval(interval);
    let mut seq = 0u64;
    let mut deadline = tokio::time::Instant::now() + silence;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                seq += 1;
                let _ = out.send(v1::SlaveMsg { msg: Some(slave_msg::Msg::Heartbeat(v1::Heartbeat { seq })) });
            }
            _ = tokio::time::sleep_until(deadline) => return Err(LinkError::Silent(silence)),
            _ = stop.wait_for(|s| *s) => return Ok(()),
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => return Err(LinkError::Failed("the master closed the link".into())),
                    Err(s) => return Err(LinkError::Failed(s.message().to_string())),
                };
                deadline = tokio::time::Instant::now() + silence;
                match msg.msg {
                    Some(master_msg::Msg::Spawn(req)) => procs.spawn(req, &out),
                    Some(master_msg::Msg::Input(data)) => procs.stdin(data),
                    Some(master_msg::Msg::OutputAck(ack)) => procs.output_ack(&ack),
                    Some(master_msg::Msg::Signal(sig)) => procs.signal(sig.id, sig.signo),
                    Some(master_msg::Msg::Restore(req)) => procs.restore(req, &out, client.clone()),
                    Some(master_msg::Msg::Heartbeat(_)) => {}
                    Some(master_msg::Msg::Welcome(_)) | None => {
                        tracing::warn!("unexpected message from the master");
                    }
                }
            }
        }
    }
}
