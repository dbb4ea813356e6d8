//! Logging setup shared by both binaries: human or JSON lines on stderr, filtered by `RUST_LOG`.
//!
//! Owns only the global subscriber; what is logged, and at which level, is each module's business.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with the current span's fields, for log collectors.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` wins over `default_filter` when it is set and
/// valid; an invalid `RUST_LOG` falls back to `default_filter` and says so once logging works.
/// Calling it again (as tests do) leaves the first subscriber in place.
pub fn init(format: LogFormat, default_filter: &str) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let (filter, rejected) = match from_env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new(default_filter), Some(error)),
        None => (EnvFilter::new(default_filter), None),
    };

    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };

    if installed.is_ok()
        && let Some(error) = rejected
    {
        tracing::warn!(%error, filter = default_filter, "RUST_LOG is not a valid filter; using the default");
    }
}
