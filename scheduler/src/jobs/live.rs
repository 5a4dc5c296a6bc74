//! What this scheduler process holds of the jobs and workflows it runs: their output as it
//! comes ([`LiveOutput`], a bounded tail plus a watch that wakes followers), their stdin until a
//! `PUT .../stdin` takes it, and their cancel switch. Readers on this process follow a
//! [`LiveOutput`]; readers on another process (or after the end) read the stored copy, which
//! the runner refreshes at each heartbeat and writes whole at the end.
//!
//! Flow control: with nobody following, output never waits (the tail lets the oldest bytes go).
//! While a follower is attached (`caas run`, `caas workflow run`), a write waits until every
//! follower is less than the tail's capacity behind, like a program writing to a terminal: the
//! follower gets every byte, memory stays bounded, and the container is slowed by the
//! back-pressure. A follower that goes away stops holding anything up.

use super::output::OutputTail;
use bytes::Bytes;
use caas_deployer::TaskStdin;
use futures::Stream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// One output stream being written: the last bytes kept, and a watch of `(written, done)`.
#[derive(Debug)]
pub struct LiveOutput {
    tail: Mutex<OutputTail>,
    state: watch::Sender<(u64, bool)>,
    /// Where each attached follower is (bytes taken), by follower id.
    followers: Mutex<HashMap<u64, u64>>,
    next_follower: AtomicU64,
    /// Wakes a waiting writer when a follower took bytes or left.
    progress: Notify,
}

/// Removes a follower from its output when its stream is dropped.
struct FollowerGuard {
    out: Arc<LiveOutput>,
    id: u64,
}

impl Drop for FollowerGuard {
    fn drop(&mut self) {
        self.out.followers().remove(&self.id);
        self.out.progress.notify_waiters();
    }
}

impl LiveOutput {
    /// An empty output keeping the last `keep` bytes.
    pub fn new(keep: usize) -> Arc<LiveOutput> {
        LiveOutput::resume(OutputTail::new(keep))
    }

    /// An output continuing `tail` (an adopted job's stored output).
    pub fn resume(tail: OutputTail) -> Arc<LiveOutput> {
        let written = tail.written();
        Arc::new(LiveOutput {
            tail: Mutex::new(tail),
            state: watch::Sender::new((written, false)),
            followers: Mutex::new(HashMap::new()),
            next_follower: AtomicU64::new(0),
            progress: Notify::new(),
        })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, OutputTail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn followers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.followers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `len` more bytes can be written without an attached follower falling more than
    /// the tail's capacity behind.
    fn room_for(&self, len: usize) -> bool {
        let Some(slowest) = self.followers().values().min().copied() else {
            return true;
        };
        let (written, capacity) = {
            let tail = self.tail();
            (tail.written(), tail.capacity())
        };
        written + len as u64 - slowest.min(written) <= capacity.max(len) as u64
    }

    /// Appends bytes once every attached follower has room for them (at once when none is
    /// attached), and wakes the followers.
    pub async fn write(&self, data: &[u8]) {
        loop {
            let progressed = self.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.room_for(data.len()) {
                break;
            }
            progressed.await;
        }
        self.push(data);
    }

    /// Appends bytes at once (followers that fall behind the capacity skip) and wakes the
    /// followers.
    pub fn push(&self, data: &[u8]) {
        let written = {
            let mut tail = self.tail();
            tail.push(data);
            tail.written()
        };
        self.state.send_modify(|s| s.0 = written);
    }

    /// Marks the end: followers finish once they have everything.
    pub fn finish(&self) {
        self.state.send_modify(|s| s.1 = true);
    }

    /// The bytes kept and how many were written in all (for the stored copy).
    pub fn snapshot(&self) -> (Vec<u8>, u64) {
        let tail = self.tail();
        (tail.to_vec(), tail.written())
    }

    /// Bytes written in all so far.
    pub fn written(&self) -> u64 {
        self.state.borrow().0
    }

    /// The output from the start (what is still kept) to now, then, with `follow`, what comes
    /// until the end. Memory stays bounded: a slow reader skips what the tail let go.
    pub fn follow(self: Arc<Self>, follow: bool) -> impl Stream<Item = std::io::Result<Bytes>> {
        let rx = self.state.subscribe();
        // A follower holds writers back from the first byte it has not read (the oldest kept).
        let guard = follow.then(|| {
            let id = self.next_follower.fetch_add(1, Ordering::Relaxed);
            let from = self.tail().dropped();
            self.followers().insert(id, from);
            FollowerGuard {
                out: self.clone(),
                id,
            }
        });
        futures::stream::unfold(
            (self, rx, 0u64, false, guard),
            move |(out, mut rx, offset, ended, guard)| async move {
                if ended {
                    return None;
                }
                loop {
                    let (_, done) = *rx.borrow_and_update();
                    let (missing, bytes) = out.tail().since(offset);
                    let next = offset + missing + bytes.len() as u64;
                    if !bytes.is_empty() {
                        if let Some(g) = &guard {
                            out.followers().insert(g.id, next);
                            out.progress.notify_waiters();
                        }
                        let end = !follow;
                        return Some((Ok(Bytes::from(bytes)), (out, rx, next, end, guard)));
                    }
                    if done || !follow {
                        return None;
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
    }
}

/// A job (or workflow) this process runs.
#[derive(Debug)]
pub struct LiveJob {
    /// Its output (a job: stdout and stderr as written; a workflow: the last step's stdout).
    pub output: Arc<LiveOutput>,
    /// Per step of a workflow, its stderr.
    pub step_logs: Vec<Arc<LiveOutput>>,
    /// Its stdin until a `PUT .../stdin` takes it.
    pub stdin: Mutex<Option<TaskStdin>>,
    /// Cancels it.
    pub cancel: CancellationToken,
}

impl LiveJob {
    /// A live job keeping `keep` bytes of output, with `stdin` for a `PUT` to take.
    pub fn new(output: Arc<LiveOutput>, stdin: Option<TaskStdin>) -> Arc<LiveJob> {
        Arc::new(LiveJob {
            output,
            step_logs: Vec::new(),
            stdin: Mutex::new(stdin),
            cancel: CancellationToken::new(),
        })
    }

    /// Hands it the stdin of its started container.
    pub fn set_stdin(&self, stdin: Option<TaskStdin>) {
        *self.stdin.lock().unwrap_or_else(|p| p.into_inner()) = stdin;
    }

    /// Takes its stdin (once).
    pub fn take_stdin(&self) -> Option<TaskStdin> {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Waits until its output is finished (the job ended and was recorded).
    pub async fn ended(&self) {
        let mut rx = self.output.state.subscribe();
        // An error means the sender is gone, which only happens once the job is over.
        let _ = rx.wait_for(|s| s.1).await;
    }
}

/// The jobs and workflows this process runs, by kind and database id.
#[derive(Debug, Default)]
pub struct Live {
    map: Mutex<HashMap<(Kind, i64), Arc<LiveJob>>>,
}

/// Which table an id is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A job (one-off or a schedule's run).
    Job,
    /// A workflow.
    Workflow,
}

impl Live {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Kind, i64), Arc<LiveJob>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one this process now runs.
    pub fn insert(&self, kind: Kind, id: i64, job: Arc<LiveJob>) {
        self.map().insert((kind, id), job);
    }

    /// The one with this id, if this process runs it.
    pub fn get(&self, kind: Kind, id: i64) -> Option<Arc<LiveJob>> {
        self.map().get(&(kind, id)).cloned()
    }

    /// Forgets one that ended.
    pub fn remove(&self, kind: Kind, id: i64) {
        self.map().remove(&(kind, id));
    }

    /// How many this process runs.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when this process runs none.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_follower_gets_everything_then_ends_with_the_output() {
        let out = LiveOutput::new(1024);
        out.push(b"one ");
        let follower = tokio::spawn({
            let out = out.clone();
            async move {
                let parts: Vec<_> = out.follow(true).collect().await;
                parts
                    .into_iter()
                    .map(|p| p.unwrap())
                    .fold(Vec::new(), |mut acc, b| {
                        acc.extend_from_slice(&b);
                        acc
                    })
            }
        });
        tokio::task::yield_now().await;
        out.push(b"two ");
        out.push(b"three");
        out.finish();
        assert_eq!(follower.await.unwrap(), b"one two three".to_vec());
        let once: Vec<_> = out.clone().follow(false).collect().await;
        assert_eq!(once.len(), 1);
        assert_eq!(out.snapshot(), (b"one two three".to_vec(), 13));
    }

    #[tokio::test]
    async fn an_attached_follower_holds_writers_back_and_gets_every_byte() {
        let out = LiveOutput::new(8);
        // Nobody follows: writes never wait, the tail lets old bytes go.
        out.write(b"0123456789").await;
        assert_eq!(out.snapshot().0, b"23456789".to_vec());
        let mut follower = Box::pin(out.clone().follow(true));
        let first = follower.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"23456789");
        // 8 more fit; the 9th waits until the follower reads.
        out.write(b"abcdefgh").await;
        let blocked = tokio::spawn({
            let out = out.clone();
            async move { out.write(b"X").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !blocked.is_finished(),
            "a write past the follower's room waits"
        );
        assert_eq!(&follower.next().await.unwrap().unwrap()[..], b"abcdefgh");
        blocked.await.unwrap();
        // A follower that leaves holds nothing up.
        drop(follower);
        for _ in 0..4 {
            out.write(b"0123456789").await;
        }
        out.finish();
        assert_eq!(out.written(), 10 + 8 + 1 + 40);
    }
}
