//! The tracing subscriber: pretty lines locally, JSON lines in production. Every line logged
//! inside a request carries its `request_id` (the request span's field).

use crate::settings::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to standard output. `RUST_LOG` overrides `log.level`.
/// Safe to call twice (the second call is ignored), which the tests rely on.
pub fn init(settings: &LogSettings) {
    init_to(settings, false)
}

/// Like [`init`]; `to_stderr` keeps standard output for a command's own output (`depot migrate`).
pub fn init_to(settings: &LogSettings, to_stderr: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if to_stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // Already initialised (tests spawn many apps in one process): keep the first.
    let _ = result;
}
