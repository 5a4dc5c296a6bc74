//! `caas`: the command-line client of the admin API.
//!
//! A thin client: every command is one or two admin API calls. Errors print as one line on stderr
//! with a non-zero exit code (2 for usage errors, 1 for everything else); `caas run` and
//! `caas workflow run` exit with their job's or workflow's code (130 after Ctrl-C).

mod app_config;
mod cli;
mod client;
mod commands;
mod config;
mod events;
mod jobs;
mod logs;
mod ndjson;
mod output;
mod schedules;
mod stream;
mod table;
mod top;
mod workflows;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli).await {
        Ok(code) => code,
        // The reader of our output went away (`| head`, `| grep -q`): it has what it wanted.
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            // One clear line: the chain of causes, joined.
            eprintln!("caas: {}", format!("{e:#}").replace('\n', " "));
            1
        }
    };
    // Exit here, not by returning: the runtime's shutdown would wait for a read of standard
    // input still blocked on a thread (`caas run -i` whose job ended before its input did),
    // which nothing can cancel. Everything written is flushed already.
    std::process::exit(i32::from(code))
}
