//! Images this slave passes on to other slaves: a vrfork's checkpoint goes
//! from the master to one node, and nodes pass it on to others in a tree
//! (the master's link carries it once). A slave keeps an image on its shelf
//! until as many peers as the master said have fetched it, or for
//! [`SHELF_LIFE`] at most.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::v1;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use crate::restore::ImageDir;

/// The longest an image waits on the shelf for its peers.
pub const SHELF_LIFE: Duration = Duration::from_secs(120);

/// One image and how many fetches it still waits for.
struct Shelved {
    dir: Arc<ImageDir>,
    left: u32,
}

/// The images waiting for peers, by name.
#[derive(Clone, Default)]
pub struct Shelf(Arc<Mutex<HashMap<String, Shelved>>>);

impl Shelf {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shelved>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps image `name` (in `dir`) for `peers` more fetches (a node with
    /// two copies of a vrfork may already keep it).
    pub fn put(&self, name: &str, dir: Arc<ImageDir>, peers: u32) {
        if peers == 0 {
            return;
        }
        self.lock().entry(name.to_string()).or_insert(Shelved { dir, left: 0 }).left += peers;
        let (shelf, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(SHELF_LIFE).await;
            if shelf.lock().remove(&name).is_some() {
                tracing::warn!(image = %name, "no peer fetched the image in time; dropped");
            }
        });
    }

    /// Image `name` for one fetch (the last one takes it off the shelf).
    fn take(&self, name: &str) -> Option<Arc<ImageDir>> {
        let mut shelf = self.lock();
        let entry = shelf.get_mut(name)?;
        entry.left -= 1;
        let dir = entry.dir.clone();
        if entry.left == 0 {
            shelf.remove(name);
        }
        Some(dir)
    }

    /// How many images wait on the shelf.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct ImagePeerService {
    shelf: Shelf,
}

#[tonic::async_trait]
impl v1::image_peer_server::ImagePeer for ImagePeerService {
    type FetchImageStream = ReceiverStream<Result<v1::ImageChunk, Status>>;

    async fn fetch_image(
        &self,
        req: Request<v1::FetchImageRequest>,
    ) -> Result<Response<Self::FetchImageStream>, Status> {
        let name = req.into_inner().image;
        let dir = self.shelf.take(&name).ok_or_else(|| Status::not_found("no such image here"))?;
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let path: PathBuf = dir.path().to_path_buf();
            if let Err(e) = bproc_daemon::checkpoint::stream_image(&path, &tx, Ok).await {
                let _ = tx.send(Err(Status::internal(format!("reading the image: {e}")))).await;
            }
            tracing::debug!(image = %name, "image passed on");
            // `dir` (and, after the last fetch, the image) goes here.
            drop(dir);
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }
}

/// Serves peers of the same host on the Unix socket `path` (root only: the
/// kernel's word).
pub fn serve_unix(shelf: Shelf, path: &std::path::Path) -> std::io::Result<()> {
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    tokio::spawn(run(shelf, tokio_stream::wrappers::UnixListenerStream::new(listener), "Unix socket"));
    Ok(())
}

/// Listens for peers on every address of this node; returns the port.
pub async fn serve(shelf: Shelf) -> std::io::Result<u16> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(run(shelf, TcpListenerStream::new(listener), "TCP"));
    Ok(port)
}

/// Runs the service on the connections `incoming` brings.
async fn run<S, IO, E>(shelf: Shelf, incoming: S, what: &'static str)
where
    S: tokio_stream::Stream<Item = Result<IO, E>>,
    IO: tonic::transport::server::Connected + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = v1::image_peer_server::ImagePeerServer::new(ImagePeerService { shelf })
        .max_encoding_message_size(proto::MAX_MESSAGE_SIZE);
    if let Err(e) = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await {
        tracing::warn!(error = %e, over = what, "the image peer service stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_image_stays_for_as_many_fetches_as_were_announced() {
        let shelf = Shelf::default();
        let dir = Arc::new(ImageDir::new_in(&std::env::temp_dir()).expect("dir"));
        let path = dir.path().to_path_buf();
        shelf.put("a", dir.clone(), 2);
        // A second copy on the same node passes it on once more.
        shelf.put("a", dir, 1);
        assert!(shelf.take("a").is_some() && shelf.take("a").is_some());
        assert_eq!(shelf.len(), 1);
        let last = shelf.take("a").expect("third fetch");
        assert!(shelf.is_empty() && shelf.take("a").is_none(), "gone after the last fetch");
        assert!(path.exists(), "kept while the last fetch streams it");
        drop(last);
        assert!(!path.exists(), "removed after it");
    }
}
