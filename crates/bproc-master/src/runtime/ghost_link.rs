//! The ghosts' plain link (`ghosts.sock`): the `Exec` stream without gRPC
//! (see `proto::frame`), so that a ghost needs neither HTTP/2 nor an async
//! runtime. The master's side is the same `open_exec` as the gRPC call's.

use std::sync::Arc;
use std::time::Duration;

use proto::frame::{self, Frames};
use proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tonic::Status;

use super::client_api::MasterService;
use super::peer::cred_of;
use super::Shared;

/// How long a new link may take to say hello and its first message.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes one read of a link takes at most (one buffer per link, reused).
const READ_SIZE: usize = 16 * 1024;

/// Accepts ghost links until `stop` says so.
pub async fn serve(shared: Arc<Shared>, listener: UnixListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(link(shared.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ghost link: accept failed");
                    // Out of descriptors, say: let some go first.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One ghost's link: hello, first message, then frames both ways until
/// either side is done. A bad link gets an error frame and is closed.
async fn link(shared: Arc<Shared>, stream: UnixStream) {
    let cred = stream
        .peer_cred()
        .map_err(|e| Status::permission_denied(format!("no peer credentials: {e}")))
        .and_then(|c| cred_of(c.uid(), c.gid(), c.pid()));
    let (mut rd, mut wr) = stream.into_split();
    let opened = async {
        let cred = cred?;
        let mut hello = [0u8; frame::HELLO_LEN];
        rd.read_exact(&mut hello).await.map_err(|e| Status::invalid_argument(format!("no hello: {e}")))?;
        frame::check_hello(&hello).map_err(Status::failed_precondition)?;
        let mut frames = Frames::default();
        let mut buf = vec![0u8; READ_SIZE];
        let first = next_frame(&mut rd, &mut frames, &mut buf)
            .await?
            .ok_or_else(|| Status::invalid_argument("stream ended before start"))?;
        Ok::<_, Status>((cred, first, frames, buf))
    };
    let (cred, first, mut frames, mut buf) = match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(status)) => return refuse(&mut wr, &status).await,
        Err(_) => return refuse(&mut wr, &Status::deadline_exceeded("the ghost did not open its link in time")).await,
    };
    // What the ghost sends after its first message goes to the same relay
    // as a gRPC stream's; a frame that does not decode ends it.
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Result<v1::ExecIn, Status>>(64);
    let answers = MasterService { shared }.open_exec(cred, first, tokio_stream::wrappers::ReceiverStream::new(in_rx));
    let mut answers = match answers {
        Ok(rx) => rx,
        Err(status) => return refuse(&mut wr, &status).await,
    };
    tokio::spawn(async move {
        loop {
            match next_frame(&mut rd, &mut frames, &mut buf).await {
                Ok(Some(msg)) => {
                    if in_tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(status) => {
                    let _ = in_tx.send(Err(status)).await;
                    return;
                }
            }
        }
    });
    while let Some(answer) = answers.recv().await {
        let bytes = match answer {
            Ok(msg) => frame::encode(&msg),
            Err(status) => return refuse(&mut wr, &status).await,
        };
        if wr.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads the next frame, through `buf`; `None` at a clean end of the stream.
async fn next_frame(
    rd: &mut tokio::net::unix::OwnedReadHalf,
    frames: &mut Frames,
    buf: &mut [u8],
) -> Result<Option<v1::ExecIn>, Status> {
    loop {
        if let Some(msg) = frames.next_message::<v1::ExecIn>().map_err(|e| Status::invalid_argument(e.to_string()))? {
            return Ok(Some(msg));
        }
        match rd.read(buf).await {
            Ok(0) if frames.pending() == 0 => return Ok(None),
            Ok(0) => return Err(Status::invalid_argument("the link ended inside a frame")),
            Ok(n) => frames.push(&buf[..n]),
            Err(e) => return Err(Status::unavailable(format!("reading the link: {e}"))),
        }
    }
}

/// Ends a link with the master's error.
async fn refuse(wr: &mut tokio::net::unix::OwnedWriteHalf, status: &Status) {
    tracing::debug!(code = ?status.code(), why = status.message(), "ghost link refused or ended");
    let _ = wr.write_all(&frame::error_frame(status.code() as i32, status.message())).await;
    let _ = wr.shutdown().await;
}
