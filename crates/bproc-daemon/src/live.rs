//! *Live* images: a checkpoint that streams to its receiver while CRIU makes
//! it, so the dumping side keeps no copy of the process's memory (an rfork
//! on the master, a move out of a node).
//!
//! The image's `pages-1.img` (where CRIU puts a single process's memory) is
//! a FIFO: CRIU writes the pages into it, and one task reads them into a
//! small bounded channel as chunks of that file; once the dump is done, the
//! other (small) files follow from the directory. With no receiver (or one
//! that went), the task reads and drops the rest, so CRIU never blocks for
//! good.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use proto::v1;

use crate::checkpoint::IMAGE_CHUNK;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// The file CRIU writes a single process's pages to.
pub const PAGES: &str = "pages-1.img";

/// How a dump ended: `None` while it runs.
pub type Dumped = watch::Receiver<Option<Result<(), String>>>;
/// Where the dump's end is told.
pub type DumpEnd = watch::Sender<Option<Result<(), String>>>;

/// A live image of a dump into `dir` that is about to start: its chunks, in
/// the order a receiver writes them (`Err` when the dump failed), and where
/// the dump's end is to be told.
pub fn live_image(dir: &Path) -> std::io::Result<(mpsc::Receiver<Result<v1::ImageChunk, String>>, DumpEnd)> {
    let fifo = dir.join(PAGES);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)?;
    // Read and write: opening never waits for CRIU, and reads never see an
    // end of file before the dump's end is known.
    let reader = tokio::net::unix::pipe::OpenOptions::new().read_write(true).open_receiver(&fifo)?;
    let (tx, rx) = mpsc::channel(4);
    let (end, dumped) = watch::channel(None);
    tokio::spawn(produce(dir.to_path_buf(), reader, tx, dumped));
    Ok((rx, end))
}

/// The pages first, in chunks as CRIU writes them (one chunk at least: the
/// file exists even when empty), until the dump has ended and the FIFO is
/// empty; without a receiver they are dropped, so CRIU goes on. Then, if
/// the dump succeeded, the other files.
async fn produce(
    dir: PathBuf,
    mut fifo: tokio::net::unix::pipe::Receiver,
    tx: mpsc::Sender<Result<v1::ImageChunk, String>>,
    mut dumped: Dumped,
) {
    let mut buf = BytesMut::with_capacity(IMAGE_CHUNK);
    let mut sent = false;
    let mut over = false;
    loop {
        let mut last = false;
        if !over {
            tokio::select! {
                biased;
                read = fifo.read_buf(&mut buf) => {
                    if read.is_err() {
                        return;
                    }
                }
                _ = dumped.wait_for(Option::is_some) => over = true,
            }
        } else {
            // The dump has ended: what is left in the FIFO is all there is.
            last = !matches!(fifo.try_read_buf(&mut buf), Ok(n) if n > 0);
        }
        if buf.len() >= IMAGE_CHUNK || (last && (!buf.is_empty() || !sent)) {
            let data = buf.split().freeze();
            buf.reserve(IMAGE_CHUNK);
            sent = true;
            if !tx.is_closed() {
                let _ = tx.send(Ok(v1::ImageChunk { file: PAGES.into(), data })).await;
            }
        }
        if last {
            break;
        }
    }
    let ended = dumped.borrow().clone();
    match ended {
        Some(Ok(())) => {}
        Some(Err(why)) => {
            let _ = tx.send(Err(format!("the checkpoint failed: {why}"))).await;
            return;
        }
        None => {
            let _ = tx.send(Err("the checkpoint was abandoned".into())).await;
            return;
        }
    }
    // The rest (the FIFO is no regular file: skipped).
    if let Err(e) = crate::checkpoint::stream_image(&dir, &tx, Ok).await {
        let _ = tx.send(Err(format!("reading the image: {e}"))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bproc-live-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[tokio::test]
    async fn pages_written_to_the_fifo_arrive_in_order_and_the_end_follows_the_dump() {
        let d = dir("order");
        let (mut chunks, done) = live_image(&d).expect("live image");
        let path = d.join(PAGES);
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open the fifo");
            for i in 0..3000u32 {
                f.write_all(&[(i % 251) as u8; 1000]).expect("write");
            }
        });
        let mut got = Vec::new();
        let collect = async {
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk.expect("no error");
                assert_eq!(chunk.file, PAGES);
                assert!(chunk.data.len() <= IMAGE_CHUNK);
                got.extend_from_slice(&chunk.data);
            }
        };
        let finish = async {
            tokio::task::spawn_blocking(move || writer.join()).await.expect("join").expect("writer");
            done.send(Some(Ok(()))).expect("send");
        };
        tokio::join!(collect, finish);
        assert_eq!(got.len(), 3_000_000);
        assert!(got.chunks(1000).enumerate().all(|(i, c)| c.iter().all(|b| *b == (i % 251) as u8)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn without_a_fetcher_the_writer_never_blocks() {
        let d = dir("nobody");
        let (chunks, done) = live_image(&d).expect("live image");
        drop(chunks);
        let path = d.join(PAGES);
        let wrote = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open the fifo");
            f.write_all(&vec![7u8; 8 << 20]).is_ok()
        });
        assert!(tokio::time::timeout(std::time::Duration::from_secs(20), wrote)
            .await
            .expect("not blocked")
            .expect("join"));
        done.send(Some(Ok(()))).expect("send");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[tokio::test]
    async fn a_failed_dump_ends_the_image_with_its_error() {
        let d = dir("failed");
        let (mut chunks, done) = live_image(&d).expect("live image");
        done.send(Some(Err("no such process".into()))).expect("send");
        let first = chunks.recv().await.expect("a chunk").expect("the (empty) pages");
        assert_eq!((first.file.as_str(), first.data.len()), (PAGES, 0));
        let err = chunks.recv().await.expect("the error").expect_err("an error");
        assert!(err.contains("no such process"), "{err}");
        assert!(chunks.recv().await.is_none(), "nothing after it");
        let _ = std::fs::remove_dir_all(&d);
    }
}
