//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slipstream_config::Config;

use crate::replay::{InputFormat, OutputFormat, ReplayOptions};

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
        /// Once every listener is bound, write their addresses here as JSON
        /// (`{"otlp_grpc": "127.0.0.1:4317", "otlp_http": ..., "admin": ..., "prometheus": ...}`,
        /// the enabled ones), through a temporary file renamed into place: with port 0 in the
        /// config, this says which ports were taken.
        #[arg(long, value_name = "FILE")]
        ready_file: Option<PathBuf>,
    },
    /// Check a configuration file and list every error in it (exit 64 when there are any).
    Validate {
        /// The YAML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also print the configuration with every default filled in (tokens, secrets,
        /// credential headers and URL userinfo shown as `<redacted>`).
        #[arg(long)]
        print: bool,
    },
    /// Print the SLO table of a running slipstream (from its admin API).
    Status {
        /// The admin server (`admin.endpoint`).
        #[arg(
            long,
            value_name = "HOST:PORT",
            default_value = "127.0.0.1:8888",
            env = "SLIPSTREAM_ADMIN"
        )]
        admin: String,
        /// `table` (colour on a terminal) or `json` (the API's answer).
        #[arg(short, long, value_enum, default_value_t = StatusOutput::Table)]
        output: StatusOutput,
    },
    /// Write Prometheus rules or Grafana dashboards for the configured SLOs.
    Generate {
        /// What to write.
        #[command(subcommand)]
        what: Generate,
    },
    /// Backtest: run recorded traces through the SLO pipeline on their own clock and print
    /// the alert events with the times they would have fired, then the SLO table.
    Replay {
        /// The YAML configuration file (its SLOs, catalog and aggregator settings apply).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Recorded traces: OTLP JSON lines (the OTel Collector's file exporter) or
        /// length-prefixed protobuf (4-byte big-endian length, then the request).
        #[arg(short, long, value_name = "FILE")]
        input: PathBuf,
        /// Input framing.
        #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
        format: InputFormat,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Also print the SLO table every this much event time (e.g. `1h`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        every: Option<std::time::Duration>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

/// Output of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    /// A table; coloured when stdout is a terminal.
    Table,
    /// JSON, as `/api/v1/slos` gives it.
    Json,
}

/// What `generate` writes.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Prometheus recording rules (Sloth names) and multi-window multi-burn-rate alerts over
    /// the series slipstream exports.
    PrometheusRules {
        /// The YAML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also resolve the templated SLOs of this service when writing annotations
        /// (repeatable; the rules cover every SLO slipstream exports without it).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Grafana dashboards (JSON): executive, on-call and debug views.
    Grafana {
        /// The YAML configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also list the templated SLOs of this service (repeatable).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Directory the dashboards are written to.
        #[arg(short, long, value_name = "DIR", default_value = ".")]
        output_dir: PathBuf,
    },
}

fn generate(what: Generate) -> anyhow::Result<()> {
    use crate::generate as g;
    match what {
        Generate::PrometheusRules {
            config,
            services,
            output,
        } => {
            let cfg = Config::load(&config)?;
            let rules = g::prometheus_rules(&g::rule_specs(&cfg, &services)?);
            match output {
                Some(p) => std::fs::write(&p, rules)?,
                None => print!("{rules}"),
            }
        }
        Generate::Grafana {
            config,
            services,
            output_dir,
        } => {
            let cfg = Config::load(&config)?;
            std::fs::create_dir_all(&output_dir)?;
            for (name, d) in g::grafana(&g::slos(&cfg, &services)?) {
                let path = output_dir.join(name);
                std::fs::write(&path, serde_json::to_string_pretty(&d)?)?;
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// Writes the bound addresses of `app` to `path` as a JSON object (see `run --ready-file`):
/// first to a temporary file beside it, then renamed, so a reader sees all of it or nothing.
fn write_ready_file(path: &std::path::Path, app: &slipstream_app::app::App) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listeners = [
        ("otlp_grpc", app.grpc_addr),
        ("otlp_http", app.http_addr),
        ("admin", app.admin_addr),
        ("prometheus", app.prometheus_addr),
    ];
    let doc: serde_json::Map<String, serde_json::Value> = listeners
        .into_iter()
        .filter_map(|(name, addr)| Some((name.to_owned(), addr?.to_string().into())))
        .collect();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, serde_json::Value::Object(doc).to_string())
        .with_context(|| format!("cannot write the ready file {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config, print } => match Config::load(&config) {
            Ok(c) => {
                if print {
                    print!("{}", c.to_yaml_redacted());
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
        Command::Status { admin, output } => match crate::status::get(&admin, "/api/v1/slos") {
            Ok(v) => {
                match output {
                    StatusOutput::Json => {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    }
                    StatusOutput::Table => {
                        let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
                        print!("{}", crate::status::table(&v, tty));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("slipstream status: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Generate { what } => match generate(what) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("slipstream generate: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Replay {
            config,
            input,
            format,
            output,
            every,
            quiet,
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            slipstream_app::app::init_logging(&slipstream_config::LogConfig {
                level: "warn,slipstream_step::publish=error".to_owned(),
                ..cfg.log.clone()
            });
            let opts = ReplayOptions {
                config: cfg,
                input,
                format,
                output,
                every,
                progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let out = Box::new(std::io::BufWriter::new(std::io::stdout()));
            match crate::replay::replay(&opts, out) {
                Ok(r) => {
                    let secs = r.elapsed.as_secs_f64().max(1e-9);
                    eprintln!(
                        "replayed {} spans in {} requests in {:.2}s ({:.0} spans/s); {} events; {} invalid records skipped; {} spans ahead of the clock clamped, {} late spans dropped",
                        r.spans,
                        r.requests,
                        secs,
                        r.spans as f64 / secs,
                        r.events.len(),
                        r.invalid,
                        r.clamped_future,
                        r.dropped_late
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("slipstream replay: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, ready_file } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            slipstream_app::app::init_logging(&cfg.log);
            let on_ready = |app: &slipstream_app::app::App| match &ready_file {
                Some(path) => write_ready_file(path, app),
                None => Ok(()),
            };
            match slipstream_app::app::run(cfg, config, on_ready) {
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
