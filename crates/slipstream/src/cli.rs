//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slipstream_config::Config;

/// Exit code for a bad configuration or command line (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// slipstream: point your OTel SDKs' OTLP exporter here; spans are forwarded untouched and
/// turned into SLIs and error-budget burn-rate alerts on the way.
#[derive(Debug, Parser)]
#[command(name = "slipstream", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector.
    Run {
        /// The YAML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file and list every error in it (exit 64 when there are any).
    Validate {
        /// The YAML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also print the configuration with every default filled in.
        #[arg(long)]
        print: bool,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config, print } => match Config::load(&config) {
            Ok(c) => {
                if print {
                    print!("{}", c.to_yaml());
                } else {
                    println!("{}: ok", config.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            crate::app::init_logging(&cfg.log);
            match crate::app::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("slipstream: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
