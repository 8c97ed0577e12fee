//! slipstream's configuration: one YAML document.
//!
//! [`Config::load`] reads a file, substitutes `${env:VAR}` references (as the OpenTelemetry
//! Collector does), deserializes with unknown keys refused, and runs [`Config::validate`],
//! which reports every semantic error at once with its field path. Each component's section
//! lives in its own module; defaults are `DEFAULT_*` consts next to the field they fill, and
//! the doc comment on each field is its reference (`docs/configuration.md` is checked
//! against the code by a test).
#![forbid(unsafe_code)]

pub mod admin;
pub mod aggregates;
pub mod aggregator;
mod env;
pub mod exemplars;
pub mod explain;
pub mod exporters;
pub mod forward;
pub mod memory;
pub mod receiver;
pub mod redact;
pub mod slo;
pub mod state;
pub mod tls;
mod units;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use admin::AdminConfig;
pub use aggregator::AggregatorConfig;
pub use env::substitute_env;
pub use exemplars::ExemplarsConfig;
pub use explain::ExplainConfig;
pub use exporters::ExportersConfig;
pub use forward::ForwardConfig;
pub use memory::MemoryConfig;
pub use receiver::ReceiversConfig;
pub use slo::SloConfig;
pub use state::StateConfig;
pub use units::ByteSize;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How slipstream runs: `gateway` (all cores) or `sidecar` (small runtime next to a pod).
    pub mode: Mode,
    /// Logging.
    pub log: LogConfig,
    /// The OTLP receivers (gRPC and HTTP).
    pub receivers: ReceiversConfig,
    /// Forwarding of every accepted request to a downstream OTLP endpoint.
    pub forward: ForwardConfig,
    /// The admin server: health, readiness and self-metrics.
    pub admin: AdminConfig,
    /// Streaming aggregation of spans into per-series SLIs.
    pub aggregator: AggregatorConfig,
    /// SLOs, the service catalog and alerting.
    pub slo: SloConfig,
    /// Where SLI series and burn-rate events are exported.
    pub exporters: ExportersConfig,
    /// Example requests (exemplars) and links to their traces.
    pub exemplars: ExemplarsConfig,
    /// Persistence of the SLO state across restarts.
    pub state: StateConfig,
    /// The memory limit past which new requests are refused.
    pub memory: MemoryConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
}

/// Deployment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// All cores, large buffers.
    #[default]
    Gateway,
    /// Minimal threads and buffers, for running next to every pod.
    Sidecar,
}

/// Default log filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log filter in `tracing` syntax (`info`, `slipstream=debug,warn`). `RUST_LOG`, when set,
    /// takes precedence.
    pub level: String,
    /// Output format: `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Default time allowed to drain the forward queue at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Graceful shutdown settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT the receivers stop accepting and the forward queue is drained for at
    /// most this long; what is still queued then is counted as dropped (`reason="shutdown"`).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: std::time::Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// One problem found in a configuration: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted field path (`receivers.otlp.grpc.endpoint`); empty for the whole document.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Collects validation errors with their paths.
#[derive(Debug, Default)]
pub struct Errors {
    errors: Vec<ConfigError>,
}

impl Errors {
    /// Records an error at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// Records an error when `cond` is false.
    pub fn check(&mut self, cond: bool, path: impl Into<String>, message: impl Into<String>) {
        if !cond {
            self.push(path, message);
        }
    }

    /// The errors collected so far.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.errors
    }
}

/// Why a configuration could not be loaded: the file and every error in it.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// The file that was read, when there was one.
    pub file: Option<PathBuf>,
    /// Every problem found.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<config>".to_owned());
        let n = self.errors.len();
        write!(f, "{file}: {n} error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {file}: {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads, substitutes, parses and validates the file at `path`, which must be a regular
    /// file (or a link to one) of at most [`MAX_CONFIG_FILE_SIZE`] bytes: a device such as
    /// `/dev/zero`, a pipe or a directory is refused before anything is read.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let fail = |msg: String| LoadError {
            file: Some(path.to_owned()),
            errors: vec![ConfigError::new("", msg)],
        };
        let text = read_capped(path, MAX_CONFIG_FILE_SIZE).map_err(fail)?;
        Self::from_yaml(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Substitutes, parses and validates a YAML document. An environment variable's value is
    /// one scalar: it cannot add keys or items, whatever it holds (see [`substitute_env`]).
    pub fn from_yaml(text: &str) -> Result<Config, LoadError> {
        Self::from_yaml_with_env(text, |k| std::env::var(k).ok())
    }

    /// [`Config::from_yaml`] reading variables from `lookup` instead of the environment.
    pub fn from_yaml_with_env(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, LoadError> {
        let fail = |errors| LoadError { file: None, errors };
        let resolved = env::substitute_values(text, lookup).map_err(fail)?;
        let (text, placeholders) = match resolved {
            env::Resolved::Plain(t) => (t, None),
            env::Resolved::WithValues(t, p) => (t, Some(p)),
        };
        let yaml_error = |e: serde_path_to_error::Error<serde_yaml::Error>| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            fail(vec![ConfigError::new(path, e.into_inner().to_string())])
        };
        // An empty document (or one holding only comments) means "all defaults".
        let config: Config = if text
            .trim()
            .lines()
            .all(|l| l.trim().is_empty() || l.trim().starts_with('#'))
        {
            Config::default()
        } else if let Some(p) = placeholders {
            let tree: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| fail(vec![ConfigError::new("", e.to_string())]))?;
            serde_path_to_error::deserialize(env::fill(tree, &p)).map_err(yaml_error)?
        } else {
            let de = serde_yaml::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de).map_err(yaml_error)?
        };
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(fail(errors))
        }
    }

    /// Checks everything serde cannot: ranges, consistency between sections. Returns every
    /// error found, each with its field path.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Errors::default();
        self.receivers.validate("receivers", &mut errs);
        self.forward.validate("forward", &mut errs);
        self.admin.validate("admin", &mut errs);
        self.aggregator.validate("aggregator", &mut errs);
        self.slo.validate("slo", &mut errs);
        self.exporters.validate("exporters", &mut errs);
        self.exemplars.validate("exemplars", &mut errs);
        self.state.validate("state", &mut errs);
        self.memory.validate("memory", &mut errs);
        errs.check(
            self.aggregator.slot_width <= std::time::Duration::from_secs(60),
            "aggregator.slot_width",
            "the SLO engine needs slots of at most 1m (its windows have 1-minute resolution)",
        );
        errs.check(
            !self.log.level.trim().is_empty(),
            "log.level",
            "expected a log filter such as `info`",
        );
        errs.into_vec()
    }

    /// The document with every default filled in, as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("the config always serializes")
    }

    /// [`Config::to_yaml`] with every secret replaced by `<redacted>`: tokens, secrets,
    /// credential-like header values and URL userinfo (see [`redact`]).
    pub fn to_yaml_redacted(&self) -> String {
        let mut v = serde_yaml::to_value(self).expect("the config always serializes");
        redact::redact_tree(&mut v, None);
        serde_yaml::to_string(&v).expect("a value tree always serializes")
    }
}

/// Largest configuration file [`Config::load`] reads.
pub const MAX_CONFIG_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// The text of the regular file at `path`, refused when it is anything else or larger than
/// `cap` bytes (what is read stops at `cap + 1`).
fn read_capped(path: &Path, cap: u64) -> Result<String, String> {
    use std::io::Read as _;
    let not_regular = |m: &std::fs::Metadata| {
        let t = m.file_type();
        let what = if t.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, pipe or socket)"
        };
        format!("cannot read the file: it is {what}; expected a YAML file")
    };
    let too_large = || format!("cannot read the file: larger than {cap} bytes");
    // Checked before opening: opening a pipe would wait for a writer.
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    if meta.len() > cap {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if buf.len() as u64 > cap {
        return Err(too_large());
    }
    String::from_utf8(buf).map_err(|e| format!("cannot read the file: not UTF-8 text ({e})"))
}

/// Checks that `value` is a `host:port` socket address.
pub fn check_socket_addr(errs: &mut Errors, path: &str, value: &str) {
    if value.parse::<std::net::SocketAddr>().is_err() {
        errs.push(
            path,
            format!("`{value}` is not a socket address (expected host:port, e.g. 0.0.0.0:4317)"),
        );
    }
}

#[cfg(test)]
mod tests;
