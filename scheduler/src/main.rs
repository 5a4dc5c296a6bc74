//! The `caas-scheduler` binary: parses configuration and runs the scheduler.

use clap::Parser;

/// caas-scheduler
#[derive(Debug, Parser)]
#[command(version, about)]
struct Config {}

fn main() -> anyhow::Result<()> {
    let _config = Config::parse();
    Ok(())
}
