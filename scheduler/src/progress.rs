//! Progress of a deploy, for the NDJSON stream of the admin API and for the log.

use caas_types::api::DeployEvent;
use caas_types::InstanceId;
use tokio::sync::mpsc;

/// Where a deploy reports its steps. Cheap to clone; a silent one only logs.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<DeployEvent>>,
}

impl Progress {
    /// Progress that is only logged.
    pub fn silent() -> Progress {
        Progress { tx: None }
    }

    /// Progress that is also sent to the returned receiver. The receiver sees the channel close
    /// when every clone of this `Progress` is dropped, i.e. when the work is done.
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<DeployEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress { tx: Some(tx) }, rx)
    }

    /// Reports a step.
    pub fn step(&self, instance: Option<&InstanceId>, stage: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(instance = instance.map(|i| i.as_str()), stage, "{message}");
        if let Some(tx) = &self.tx {
            // A client that went away does not stop the deploy.
            let _ = tx.send(DeployEvent::Progress {
                instance: instance.cloned(),
                stage: stage.to_owned(),
                message,
            });
        }
    }
}
