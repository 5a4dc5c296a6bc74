//! The bytes of a job or workflow: an answer's body copied to standard output as it comes
//! (bytes, not lines: each chunk written and flushed as it arrives), standard input sent up as
//! a streamed request body, and [`attach`], which does both for a started job or workflow until
//! it ends, or cancels it on Ctrl-C. Shared by `caas run` and `caas workflow run`.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use futures::StreamExt;
use reqwest::{Method, Response};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The exit code after Ctrl-C, as a shell's (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// How often, and how many times, a job or workflow is looked at after its output ended,
/// until its state is final: the output ends when it ends, so this is short.
const FINAL_POLL: Duration = Duration::from_millis(200);
const FINAL_POLLS: u32 = 50;

/// Copies `resp`'s body to standard output chunk by chunk, flushing each, until it ends.
pub async fn copy_to_stdout(resp: Response) -> Result<()> {
    let mut body = resp.bytes_stream();
    let mut stdout = tokio::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the output stream broke off")?;
        stdout.write_all(&chunk).await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// GETs `path` (a text/plain answer: a job's logs, a workflow's output) and prints its body as
/// it comes, until it ends.
pub async fn print_body(client: &Client, path: &str) -> Result<()> {
    copy_to_stdout(client.send(client.request(Method::GET, path)).await?).await
}

/// PUTs standard input to `path` as a streamed body, until its end (which is the end of input
/// for the job); answers once the API took all of it.
pub async fn send_stdin(client: &Client, path: &str) -> Result<()> {
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(tokio::io::stdin()));
    let req = client
        .request(Method::PUT, path)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
    client.send(req).await?;
    Ok(())
}

/// Resolves on Ctrl-C; never, when its handler cannot be installed.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A started job or workflow to attach to.
pub struct Attach<'a> {
    /// Its path (`GET` shows it, `DELETE` cancels it).
    pub resource: &'a str,
    /// The path of its output (`?follow=true`), printed until it ends.
    pub output: &'a str,
    /// The path standard input is PUT to, if it reads it.
    pub stdin: Option<&'a str>,
}

/// How an attached run ended.
#[derive(Debug)]
pub enum Ended<T> {
    /// Its output ended and its state is final: as shown then.
    Finished(T),
    /// Ctrl-C came first; it was cancelled.
    Cancelled,
}

/// Prints the output of `what` as it comes while sending standard input to it (if it reads
/// it), then waits for its state to be final (`is_final`). Ctrl-C (`interrupt`) cancels it
/// (`DELETE`) and says so on stderr.
pub async fn attach<T, F>(
    client: &Client,
    what: Attach<'_>,
    is_final: impl Fn(&T) -> bool,
    interrupt: Pin<&mut F>,
) -> Result<Ended<T>>
where
    T: DeserializeOwned,
    F: Future<Output = ()>,
{
    let work = async {
        follow(client, what.output, what.stdin).await?;
        wait_final(client, what.resource, is_final).await
    };
    tokio::select! {
        done = work => done.map(Ended::Finished),
        () = interrupt => {
            cancel(client, what.resource).await;
            Ok(Ended::Cancelled)
        }
    }
}

/// Cancels `resource` after Ctrl-C and says so on stderr.
pub async fn cancel(client: &Client, resource: &str) {
    if let Err(e) = client.call::<()>(Method::DELETE, resource, None).await {
        eprintln!("caas: cancelling: {}", format!("{e:#}").replace('\n', " "));
    }
    eprintln!("cancelled");
}

/// Prints `output` until it ends, sending standard input to `stdin` meanwhile. A failed upload
/// is said on stderr and does not stop the output: the job sees the end of its input and goes on.
async fn follow(client: &Client, output: &str, stdin: Option<&str>) -> Result<()> {
    let upload = async {
        if let Some(path) = stdin {
            if let Err(e) = send_stdin(client, path).await {
                eprintln!(
                    "caas: standard input not delivered: {}",
                    format!("{e:#}").replace('\n', " ")
                );
            }
        }
        // Done with input; the output decides when this ends.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        printed = print_body(client, output) => printed,
        () = upload => Ok(()),
    }
}

/// GETs `resource` until `is_final` holds (a few seconds at most: its output has ended).
async fn wait_final<T: DeserializeOwned>(
    client: &Client,
    resource: &str,
    is_final: impl Fn(&T) -> bool,
) -> Result<T> {
    for _ in 0..FINAL_POLLS {
        let seen: T = client.get(resource).await?;
        if is_final(&seen) {
            return Ok(seen);
        }
        tokio::time::sleep(FINAL_POLL).await;
    }
    bail!(
        "{resource}: its output ended but it has not finished {} s later",
        (FINAL_POLL * FINAL_POLLS).as_secs()
    )
}
