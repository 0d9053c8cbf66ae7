//! The `keyport` binary: `serve` runs the daemon, the rest are its client.

use clap::Parser;
use keyport::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
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
