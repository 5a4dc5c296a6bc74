//! `caas`: the command-line client of the admin API.

use clap::Parser;

/// caas: push, deploy and reach containers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Admin API URL.
    #[arg(long, env = "CAAS_API", default_value = "http://127.0.0.1:7070")]
    api: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!("caas: admin API at {}", cli.api);
    Ok(())
}
