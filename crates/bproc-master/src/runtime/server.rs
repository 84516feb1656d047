//! Binds the listeners (clients on a Unix socket, slaves on TCP, images for
//! the slaves on this host on a second Unix socket) and
//! runs the heartbeat clock until asked to stop.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::{image_peer_server::ImagePeerServer, master_server::MasterServer, slave_link_server::SlaveLinkServer};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;

use super::client_api::{check_client_version, MasterService};
use super::slave_link::{LocalImages, SlaveLinkService};
use super::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("another master is already serving {path}")]
    SocketInUse { path: PathBuf },
    #[error("cannot {what} {path}")]
    Socket { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot listen for slaves on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// Window sizes that let one stdio stream run at memory speed.
const STREAM_WINDOW: u32 = 8 << 20;
const CONN_WINDOW: u32 = 32 << 20;

fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::SocketInUse { path: path.into() });
        }
        std::fs::remove_file(path).map_err(|source| ServeError::Socket {
            what: "remove stale",
            path: path.into(),
            source,
        })?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServeError::Socket {
            what: "create the directory of",
            path: path.into(),
            source,
        })?;
    }
    let listener =
        UnixListener::bind(path).map_err(|source| ServeError::Socket { what: "bind", path: path.into(), source })?;
    // Anyone may connect; who they are is decided by SO_PEERCRED per call.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|source| ServeError::Socket {
        what: "chmod",
        path: path.into(),
        source,
    })?;
    Ok(listener)
}

fn server() -> Server {
    Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(1 << 20)
        .tcp_nodelay(true)
}

/// Turns Nagle's algorithm off on every accepted slave link. (The server's
/// own `tcp_nodelay` applies only to sockets it accepts itself.) With it on,
/// a small message sent soon after another waits for the peer's delayed ACK:
/// about 40 ms for a signal or a spawn.
fn nodelay(incoming: TcpListenerStream) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    incoming.map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    shared: Arc<Shared>,
    socket: &Path,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let unix = bind_unix(socket)?;
    // Images for the slaves on this host, beside the clients' socket.
    let image_socket = socket.with_file_name("images.sock");
    let images_unix = bind_unix(&image_socket)?;
    std::fs::set_permissions(&image_socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| ServeError::Socket { what: "chmod", path: image_socket.clone(), source })?;
    let _ = shared.image_socket.set(image_socket.display().to_string());
    // Ghosts, beside the clients' socket and as open (see proto::frame).
    let ghost_socket = socket.with_file_name(proto::frame::GHOST_SOCKET);
    let ghosts_unix = bind_unix(&ghost_socket)?;
    let tcp = TcpListener::bind(listen).await.map_err(|source| ServeError::Listen { addr: listen, source })?;
    tracing::info!(socket = %socket.display(), slaves = %listen, "master serving");

    let master = MasterServer::new(MasterService { shared: shared.clone() })
        .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);
    let master = tonic::service::interceptor::InterceptedService::new(master, check_client_version);
    let slaves = SlaveLinkServer::new(SlaveLinkService { shared: shared.clone() })
        .max_decoding_message_size(proto::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let clients = server()
        .add_service(master)
        .serve_with_incoming_shutdown(UnixListenerStream::new(unix), stopped(stop_rx.clone()));
    let slave_srv = server()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .add_service(slaves)
        .serve_with_incoming_shutdown(nodelay(TcpListenerStream::new(tcp)), stopped(stop_rx.clone()));
    let local_images = server()
        .add_service(
            ImagePeerServer::new(LocalImages { shared: shared.clone() })
                .max_encoding_message_size(proto::MAX_MESSAGE_SIZE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(images_unix), stopped(stop_rx.clone()));
    let ghost_links = super::ghost_link::serve(shared.clone(), ghosts_unix, stop_rx.clone());
    super::ghost_signals::start(shared.clone());
    let ticker = tick(shared.clone(), stop_rx);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (a, b, c, (), ()) = tokio::join!(clients, slave_srv, local_images, ticker, ghost_links);
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_file(&image_socket);
    let _ = std::fs::remove_file(&ghost_socket);
    a?;
    b?;
    c?;
    Ok(())
}

/// The heartbeat clock: nodes silent past the timeout go down.
async fn tick(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_millis(u64::from(shared.cfg.heartbeat_interval_ms.max(10)) / 2);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut st = shared.lock();
        let effects = st.engine.tick(Instant::now());
        st.apply(effects);
        st.sweep_unattached(Instant::now());
        st.trim_when_idle();
    }
}
