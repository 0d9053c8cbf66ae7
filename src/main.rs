//! The `keyport` binary: `serve` runs the daemon, the rest are its client.

use clap::Parser;
use keyport::cli::{self, Cli, Command};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KEYPORT_LOG").unwrap_or_else(|_| "info,cryptoki=off".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve { config } => match keyport::server::serve(config.as_deref()) {
            Ok(()) => 0,
            Err(f) => {
                for l in &f.lines {
                    eprintln!("keyport: {l}");
                }
                f.code
            }
        },
        other => cli::run(other),
    };
    std::process::exit(code);
}
