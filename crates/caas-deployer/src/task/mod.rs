//! Run-to-completion containers ("tasks": a job, a workflow step): create, attach to stdin,
//! stdout and stderr as bounded streams, start, wait for the exit code under a deadline, kill
//! on timeout or cancel, and remove the container at the end whatever happened.
//!
//! The shape follows `tokio::process::Child`: [`Deployer::start_task`] returns a [`Task`]
//! whose `stdin`, `stdout` and `stderr` the caller takes (streams it may move to other tasks,
//! e.g. [`pipe`] one task's stdout into the next one's stdin on another engine), then
//! [`Task::wait`] gives the [`TaskExit`] once the container is gone. A task dropped without
//! `wait` still has its container removed (in a spawned task), so no error path leaks one.
//!
//! ```no_run
//! # async fn run(engine: caas_deployer::Deployer, spec: caas_deployer::TaskSpec) -> caas_deployer::Result<()> {
//! use std::time::Duration;
//! use tokio::io::AsyncReadExt;
//! let mut task = engine.start_task(&spec).await?;
//! let mut stdout = task.stdout.take().expect("taken once");
//! let reader = tokio::spawn(async move {
//!     let mut out = String::new();
//!     stdout.read_to_string(&mut out).await.map(|_| out)
//! });
//! let exit = task.wait(Duration::from_secs(600), std::future::pending()).await?;
//! println!("{:?} exit {:?}: {:?}", exit.end, exit.exit_code, reader.await);
//! # Ok(())
//! # }
//! ```

mod io;
mod spec;

pub use io::{pipe, TaskOutput, TaskStdin, MAX_CHUNK};
pub use spec::TaskSpec;

use crate::deployer::{parse_id, Deployer};
use crate::error::{classify, Error, Op, Result};
use bollard::container::{AttachContainerOptions, CreateContainerOptions, WaitContainerOptions};
use caas_types::ContainerId;
use futures::{FutureExt, StreamExt};
use io::{Cut, INPUT_CHUNKS, OUTPUT_FRAMES};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    /// Its command exited by itself (see the exit code).
    Exited,
    /// Its deadline passed; it was killed.
    TimedOut,
    /// The caller's cancel signal came first; it was killed.
    Cancelled,
}

/// What a finished task leaves: how it ended, its exit code, and whether its container is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    /// How it ended.
    pub end: TaskEnd,
    /// The exit code as the engine recorded it (137 after a kill); `None` when the engine
    /// could not say.
    pub exit_code: Option<i64>,
    /// True when the kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// True when the container was removed; false when the engine refused (it still carries
    /// its labels, for whoever sweeps).
    pub removed: bool,
}

/// A started task. Take the streams (`Option::take`), then [`Task::wait`]. A stream left in
/// its slot when `wait` is called is closed (stdin: end-of-file) or discarded (output).
#[derive(Debug)]
pub struct Task {
    /// The container's stdin, when its spec asked for one.
    pub stdin: Option<TaskStdin>,
    /// The container's stdout.
    pub stdout: Option<TaskOutput>,
    /// The container's stderr.
    pub stderr: Option<TaskOutput>,
    id: ContainerId,
    deployer: Deployer,
    started: Instant,
    cut: Arc<Cut>,
    pump: JoinHandle<()>,
    feed: Option<JoinHandle<()>>,
    /// Set once the container is removed (or its removal was tried) by `wait`.
    settled: bool,
}

/// The attach connection of a container, turned into the task's streams and their workers.
struct Attached {
    stdin: Option<TaskStdin>,
    stdout: TaskOutput,
    stderr: TaskOutput,
    cut: Arc<Cut>,
    pump: JoinHandle<()>,
    feed: Option<JoinHandle<()>>,
}

impl Attached {
    fn abort(&self) {
        self.pump.abort();
        if let Some(f) = &self.feed {
            f.abort();
        }
    }
}

impl Deployer {
    /// Creates the container of `spec`, attaches to its streams, then starts it. The image
    /// must be on the engine (pull it first). Fails with nothing left behind: a container whose
    /// attach or start failed is removed. A name in use is [`Error::NameConflict`].
    #[tracing::instrument(skip_all, fields(name = %spec.name, image = %spec.image))]
    pub async fn start_task(&self, spec: &TaskSpec) -> Result<Task> {
        self.on_network(spec.network.as_ref(), || self.create_and_start_task(spec))
            .await
    }

    async fn create_and_start_task(&self, spec: &TaskSpec) -> Result<Task> {
        let docker = self.docker().await?;
        let options = CreateContainerOptions {
            name: spec.name.clone(),
            platform: None,
        };
        let id = match docker
            .create_container(Some(options), spec.to_config())
            .await
        {
            Ok(created) => parse_id(&created.id)?,
            Err(e) => {
                return Err(match classify(Op::Container(&spec.name), e) {
                    Error::ImageNotFound { message, .. } => Error::ImageNotFound {
                        image: spec.image.clone(),
                        message,
                    },
                    other => other,
                })
            }
        };
        // Attached before the start, so not a byte of output is missed.
        let attached = match self.attach(&id, spec.stdin).await {
            Ok(a) => a,
            Err(e) => {
                if let Err(cleanup) = self.remove(&id).await {
                    warn!(%id, error = %cleanup, "could not remove a task whose attach failed");
                }
                return Err(e);
            }
        };
        if let Err(e) = self.start_or_remove(&id, &spec.name).await {
            attached.abort();
            return Err(e);
        }
        info!(%id, "task started");
        Ok(Task::new(self.clone(), id, attached))
    }

    /// Attaches to a task container that is already running (e.g. one a restarted scheduler
    /// adopts): its stdout and stderr from now on, no stdin. The deadline of
    /// [`Task::wait`] counts from this call.
    pub async fn attach_task(&self, id: &ContainerId) -> Result<Task> {
        let attached = self.attach(id, false).await?;
        Ok(Task::new(self.clone(), id.clone(), attached))
    }

    async fn attach(&self, id: &ContainerId, stdin: bool) -> Result<Attached> {
        let options = AttachContainerOptions::<String> {
            stdin: Some(stdin),
            stdout: Some(true),
            stderr: Some(true),
            stream: Some(true),
            logs: Some(false),
            detach_keys: None,
        };
        let conn = self
            .docker()
            .await?
            .attach_container(id.as_str(), Some(options))
            .await
            .map_err(|e| classify(Op::Container(id.as_str()), e))?;
        let cut = Arc::new(Cut::default());
        let (out_tx, out_rx) = mpsc::channel(OUTPUT_FRAMES);
        let (err_tx, err_rx) = mpsc::channel(OUTPUT_FRAMES);
        let pump = tokio::spawn(io::pump(
            conn.output,
            Some(out_tx),
            Some(err_tx),
            id.to_string(),
        ));
        let (stdin, feed) = if stdin {
            let (tx, rx) = mpsc::channel(INPUT_CHUNKS);
            let feed = tokio::spawn(io::feed(rx, conn.input, id.to_string()));
            (Some(TaskStdin::new(tx)), Some(feed))
        } else {
            (None, None)
        };
        Ok(Attached {
            stdin,
            stdout: TaskOutput::new(out_rx, cut.clone()),
            stderr: TaskOutput::new(err_rx, cut.clone()),
            cut,
            pump,
            feed,
        })
    }
}

impl Task {
    fn new(deployer: Deployer, id: ContainerId, a: Attached) -> Task {
        Task {
            stdin: a.stdin,
            stdout: Some(a.stdout),
            stderr: Some(a.stderr),
            id,
            deployer,
            started: Instant::now(),
            cut: a.cut,
            pump: a.pump,
            feed: a.feed,
            settled: false,
        }
    }

    /// The container's id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// Waits for the task to end and removes its container. It ends when its command exits
    /// and its output has reached the readers (or they dropped it), when `timeout` (counted
    /// from the start) passes, or when `cancel` completes (e.g. a `CancellationToken`'s
    /// `cancelled()`; `std::future::pending()` for none); the last two kill it and cut its
    /// output, which readers then see as an error. Output still unread at the deadline of an
    /// exited task is cut the same way, but the task still counts as exited.
    ///
    /// An error means the engine could not say how the task ended (unreachable, or the
    /// container removed behind our back); the container is still removed, in the background.
    pub async fn wait(
        mut self,
        timeout: Duration,
        cancel: impl Future<Output = ()>,
    ) -> Result<TaskExit> {
        // What the caller did not take: stdin ends, outputs are discarded as they come.
        self.stdin.take();
        self.stdout.take();
        self.stderr.take();
        let deadline = self.started + timeout;
        let cancel = cancel.fuse();
        futures::pin_mut!(cancel);

        let exited = exited(self.deployer.clone(), self.id.clone());
        futures::pin_mut!(exited);
        let end = tokio::select! {
            done = &mut exited => {
                done?;
                TaskEnd::Exited
            }
            () = sleep_until(deadline) => TaskEnd::TimedOut,
            () = &mut cancel => TaskEnd::Cancelled,
        };
        if end == TaskEnd::Exited {
            // The engine closes the attach connection once the output is copied; the readers
            // get the rest before the container goes.
            let cut = tokio::select! {
                _ = &mut self.pump => None,
                () = sleep_until(deadline) => Some("its output was not read by the deadline"),
                () = &mut cancel => Some("cancelled"),
            };
            if let Some(reason) = cut {
                self.cut(reason);
            }
        }
        if end != TaskEnd::Exited {
            self.cut(match end {
                TaskEnd::TimedOut => "timed out",
                _ => "cancelled",
            });
            if let Err(e) = self.deployer.kill(&self.id).await {
                warn!(id = %self.id, error = %e, "could not kill a task past its end; removing it");
            }
        }
        let (exit_code, oom_killed) = match self.deployer.inspect(&self.id).await {
            Ok(status) => (status.exit_code, status.oom_killed),
            Err(e) => {
                warn!(id = %self.id, error = %e, "could not read a task's exit code");
                (None, false)
            }
        };
        let removed = match self.deployer.remove(&self.id).await {
            Ok(()) => true,
            Err(e) => {
                warn!(id = %self.id, error = %e, "could not remove a finished task");
                false
            }
        };
        self.settled = true;
        info!(id = %self.id, ?end, ?exit_code, oom_killed, removed, "task finished");
        Ok(TaskExit {
            end,
            exit_code,
            oom_killed,
            removed,
        })
    }

    /// Stops moving output: readers get `reason` as an error after what they already have.
    fn cut(&self, reason: &str) {
        self.cut.set(reason);
        self.pump.abort();
        if let Some(f) = &self.feed {
            f.abort();
        }
    }
}

/// Resolves when the container `id` is not running any more (at once if it already exited).
async fn exited(deployer: Deployer, id: ContainerId) -> Result<()> {
    let docker = deployer.docker().await?;
    let options = WaitContainerOptions {
        condition: "not-running",
    };
    let mut waiting = docker.wait_container(id.as_str(), Some(options));
    match waiting.next().await {
        Some(Ok(_)) => Ok(()),
        // bollard reports a non-zero exit code as an error; it is an exit all the same.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            debug!(%id, code, "task exited non-zero");
            Ok(())
        }
        Some(Err(e)) => Err(classify(Op::Container(id.as_str()), e)),
        None => Err(Error::Unexpected(format!(
            "wait for {id} ended without a status"
        ))),
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Dropped before `wait` finished (an error path, a cancelled caller): the container
        // must not outlive its handle.
        self.cut("the task was dropped");
        let (deployer, id) = (self.deployer.clone(), self.id.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = deployer.remove(&id).await {
                        warn!(%id, error = %e, "could not remove a dropped task's container");
                    }
                });
            }
            Err(_) => warn!(id = %self.id, "no runtime to remove a dropped task's container"),
        }
    }
}
