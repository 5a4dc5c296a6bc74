//! A task's standard streams as bounded byte streams: [`TaskOutput`] (stdout or stderr,
//! `Stream` of `Bytes` and `AsyncRead`), [`TaskStdin`] (`AsyncWrite`, or whole `Bytes` with
//! [`TaskStdin::send`]), [`pipe`] between two tasks, and the two background halves that move
//! bytes between them and the engine's attach connection (`pump` and `feed`).
//!
//! Every buffer is a small bounded queue, so nothing here grows with the amount moved: a reader
//! that stops reading stops the pump, the engine stops reading the container's stdout, and the
//! container's writes block, as in a shell pipe. Output that nobody holds a reader for any more
//! is read and dropped, so it never blocks the container.

use crate::error::{classify, Op};
use bollard::container::LogOutput;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use tracing::debug;

/// Engine frames held per output stream between the attach connection and its reader. The
/// engine copies a container's output 32 KiB at a time, so a stream holds about 256 KiB here.
pub(crate) const OUTPUT_FRAMES: usize = 8;
/// Chunks held between a stdin writer and the attach connection.
pub(crate) const INPUT_CHUNKS: usize = 8;
/// The largest chunk a write hands on; a longer write is taken in parts, so one call cannot
/// buffer a whole body.
pub const MAX_CHUNK: usize = 64 * 1024;

/// The engine's multiplexed output, as bollard hands it over.
pub(crate) type Frames =
    Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
/// The write half of the attach connection.
pub(crate) type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Why a task's output was cut before the engine ended it (timeout, cancel, the task dropped),
/// shared by the task and its outputs: a reader then gets this as an error instead of a clean
/// end of file, so a truncated output is never mistaken for a whole one.
#[derive(Debug, Default)]
pub(crate) struct Cut(OnceLock<String>);

impl Cut {
    /// Records why the output was cut (the first reason wins).
    pub(crate) fn set(&self, reason: &str) {
        let _ = self.0.set(reason.to_owned());
    }
}

/// One output stream of a task (stdout or stderr): a `Stream` of the chunks the container
/// wrote, and an `AsyncRead` of the same bytes. It ends when the container's stream ends; it
/// fails if the engine's connection broke or the task was stopped before its output ended
/// (timed out, cancelled, dropped). Drop it to discard the rest of that stream.
#[derive(Debug)]
pub struct TaskOutput {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    /// The rest of a chunk an `AsyncRead` caller did not take yet.
    pending: Bytes,
    cut: Arc<Cut>,
    ended: bool,
}

impl TaskOutput {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Bytes>>, cut: Arc<Cut>) -> TaskOutput {
        TaskOutput {
            rx,
            pending: Bytes::new(),
            cut,
            ended: false,
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = ready!(self.rx.poll_recv(cx));
        match item {
            Some(Ok(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Some(Err(e)) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.ended = true;
                // Not `Interrupted`: read loops retry that kind and would then see a clean end.
                Poll::Ready(self.cut.0.get().map(|reason| {
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("task output cut: {reason}"),
                    ))
                }))
            }
        }
    }
}

impl Stream for TaskOutput {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            return Poll::Ready(Some(Ok(std::mem::take(&mut this.pending))));
        }
        this.poll_chunk(cx)
    }
}

impl AsyncRead for TaskOutput {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.poll_chunk(cx)) {
                Some(Ok(chunk)) => this.pending = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// A task's stdin (tasks started with [`crate::TaskSpec::stdin`]). Closing it (`shutdown`,
/// [`TaskStdin::close`]) or dropping it ends the container's stdin with end-of-file; so
/// does [`crate::Task::wait`] if it was never taken. Writes wait while the container does not
/// read. A write fails with `BrokenPipe` once the container's stdin is gone (it exited, or the
/// engine's connection broke). `flush` only waits for room in the queue, not for the container.
#[derive(Debug)]
pub struct TaskStdin {
    tx: PollSender<Bytes>,
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the task's stdin is closed (the container exited or its connection broke)",
    )
}

impl TaskStdin {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>) -> TaskStdin {
        TaskStdin {
            tx: PollSender::new(tx),
        }
    }

    /// Sends `data` without copying it (in parts of at most [`MAX_CHUNK`]), waiting for room.
    pub async fn send(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_CHUNK));
            std::future::poll_fn(|cx| self.tx.poll_reserve(cx))
                .await
                .map_err(|_| closed())?;
            self.tx.send_item(chunk).map_err(|_| closed())?;
        }
        Ok(())
    }

    /// Ends the container's stdin (end-of-file after what was sent).
    pub fn close(mut self) {
        self.tx.close();
    }
}

impl AsyncWrite for TaskStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        ready!(this.tx.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_CHUNK);
        this.tx
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tx.close();
        Poll::Ready(Ok(()))
    }
}

/// Copies `from` (a task's stdout) into `to` (another task's stdin) chunk by chunk without
/// copying bytes, with back-pressure both ways, then closes `to`: a shell's `a | b` between
/// two containers, whichever engines they run on. Returns the bytes moved; fails when `from`
/// fails (its task was stopped: `to` is closed by the drop, the caller decides about `b`) or
/// when `to` stops taking input (`b` exited early: the rest of `a`'s output is then dropped
/// as it comes, where a shell would send `a` a SIGPIPE).
pub async fn pipe(mut from: TaskOutput, mut to: TaskStdin) -> io::Result<u64> {
    let mut moved = 0u64;
    while let Some(chunk) = from.next().await {
        let chunk = chunk?;
        moved += chunk.len() as u64;
        to.send(chunk).await?;
    }
    to.close();
    Ok(moved)
}

/// Moves the engine's frames to the output readers until the engine ends the stream. A reader
/// that went away is skipped from then on; a broken connection is reported to both readers.
pub(crate) async fn pump(
    mut frames: Frames,
    mut stdout: Option<mpsc::Sender<io::Result<Bytes>>>,
    mut stderr: Option<mpsc::Sender<io::Result<Bytes>>>,
    container: String,
) {
    while let Some(frame) = frames.next().await {
        let (reader, chunk) = match frame {
            // Without a TTY the engine tags every frame; an untagged one would be a TTY's.
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                (&mut stdout, message)
            }
            Ok(LogOutput::StdErr { message }) => (&mut stderr, message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                let error = classify(Op::Container(&container), e).to_string();
                debug!(container, %error, "task output: attach connection failed");
                for tx in [stdout, stderr].into_iter().flatten() {
                    let _ = tx.send(Err(io::Error::other(error.clone()))).await;
                }
                return;
            }
        };
        if let Some(tx) = reader {
            if tx.send(Ok(chunk)).await.is_err() {
                *reader = None;
            }
        }
    }
}

/// Moves what the stdin writer sends to the attach connection, then half-closes the
/// connection (the container reads end-of-file) when the writer is closed or dropped. Stops
/// at the first failed write, which closes the writer's queue: its next write fails.
pub(crate) async fn feed(mut rx: mpsc::Receiver<Bytes>, mut input: Input, container: String) {
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = input.write_all(&chunk).await {
            debug!(container, error = %e, "task stdin: write failed");
            return;
        }
    }
    if let Err(e) = input.shutdown().await {
        debug!(container, error = %e, "task stdin: closing failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn an_output_reads_chunks_in_parts_and_ends_cleanly() {
        let (tx, rx) = mpsc::channel(OUTPUT_FRAMES);
        let mut out = TaskOutput::new(rx, Arc::default());
        tx.send(Ok(Bytes::from_static(b"hello ")))
            .await
            .expect("open");
        tx.send(Ok(Bytes::from_static(b"world")))
            .await
            .expect("open");
        drop(tx);
        let mut first = [0u8; 4];
        out.read_exact(&mut first).await.expect("read");
        assert_eq!(&first, b"hell");
        let mut rest = String::new();
        out.read_to_string(&mut rest).await.expect("read");
        assert_eq!(rest, "o world");
    }

    #[tokio::test]
    async fn a_cut_output_fails_instead_of_ending() {
        let (tx, rx) = mpsc::channel(OUTPUT_FRAMES);
        let cut = Arc::new(Cut::default());
        let mut out = TaskOutput::new(rx, cut.clone());
        tx.send(Ok(Bytes::from_static(b"partial")))
            .await
            .expect("open");
        cut.set("timed out");
        drop(tx);
        assert_eq!(
            out.next().await.transpose().expect("a chunk"),
            Some(Bytes::from_static(b"partial"))
        );
        let err = out.next().await.expect("an item").expect_err("cut");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(out.next().await.is_none(), "then the end");
    }

    #[tokio::test]
    async fn stdin_writes_are_bounded_chunks_and_fail_once_the_reader_is_gone() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut stdin = TaskStdin::new(tx);
        let big = vec![7u8; MAX_CHUNK * 2 + 1];
        let n = stdin.write(&big).await.expect("room for one chunk");
        assert_eq!(n, MAX_CHUNK, "one write takes at most one chunk");
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(MAX_CHUNK));
        stdin
            .send(Bytes::from(vec![1u8; 3]))
            .await
            .expect("room again");
        drop(rx);
        let err = stdin.write_all(b"more").await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn pipe_moves_every_chunk_and_closes_the_next_stdin() {
        let (out_tx, out_rx) = mpsc::channel(OUTPUT_FRAMES);
        let (in_tx, mut in_rx) = mpsc::channel(INPUT_CHUNKS);
        let from = TaskOutput::new(out_rx, Arc::default());
        let to = TaskStdin::new(in_tx);
        let writer = tokio::spawn(async move {
            for i in 0..100u8 {
                out_tx
                    .send(Ok(Bytes::from(vec![i; 1000])))
                    .await
                    .expect("open");
            }
        });
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            while let Some(chunk) = in_rx.recv().await {
                got += chunk.len();
            }
            got
        });
        assert_eq!(pipe(from, to).await.expect("piped"), 100_000);
        writer.await.expect("writer");
        assert_eq!(reader.await.expect("reader"), 100_000, "and then closed");
    }
}
