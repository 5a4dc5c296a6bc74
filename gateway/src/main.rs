//! The `caas-gateway` binary: parses configuration and runs the gateway.

use clap::Parser;

/// caas-gateway
#[derive(Debug, Parser)]
#[command(version, about)]
struct Config {}

fn main() -> anyhow::Result<()> {
    let _config = Config::parse();
    Ok(())
}
