//! `caas`: the command-line client of the admin API.
//!
//! A thin client: every command is one or two admin API calls. Errors print as one line on stderr
//! with a non-zero exit code (2 for usage errors, 1 for everything else).

mod app_config;
mod cli;
mod client;
mod commands;
mod config;
mod events;
mod logs;
mod ndjson;
mod output;
mod table;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`| head`, `| grep -q`): it has what it wanted.
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line: the chain of causes, joined.
            eprintln!("caas: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
