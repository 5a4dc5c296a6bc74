//! What this scheduler process holds of the jobs and workflows it runs: their output as it
//! comes ([`LiveOutput`], a bounded tail plus a watch that wakes followers), their stdin until a
//! `PUT .../stdin` takes it, and their cancel switch. Readers on this process follow a
//! [`LiveOutput`]; readers on another process (or after the end) read the stored copy, which
//! the runner refreshes at each heartbeat and writes whole at the end.

use super::output::OutputTail;
use bytes::Bytes;
use caas_deployer::TaskStdin;
use futures::Stream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One output stream being written: the last bytes kept, and a watch of `(written, done)`.
#[derive(Debug)]
pub struct LiveOutput {
    tail: Mutex<OutputTail>,
    state: watch::Sender<(u64, bool)>,
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
        })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, OutputTail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends bytes and wakes the followers.
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
        futures::stream::unfold(
            (self, rx, 0u64, false),
            move |(out, mut rx, offset, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    let (_, done) = *rx.borrow_and_update();
                    let (missing, bytes) = out.tail().since(offset);
                    let next = offset + missing + bytes.len() as u64;
                    if !bytes.is_empty() {
                        let end = !follow;
                        return Some((Ok(Bytes::from(bytes)), (out, rx, next, end)));
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
}
