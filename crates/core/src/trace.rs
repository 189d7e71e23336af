//! Trace-context propagation across the queue, without tying the components to a tracing
//! backend. The API container installs the hooks when OpenTelemetry export is on; otherwise
//! they are absent and both calls cost nothing.
//!
//! - [`current`]: the context of the current span as carrier headers (W3C `traceparent`,
//!   `tracestate`), stored with an outbox message so the worker continues the request's trace.
//! - [`adopt`]: makes a span a child of the context those headers carry.

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub type Headers = BTreeMap<String, String>;

#[derive(Clone, Copy)]
pub struct Propagation {
    pub current: fn() -> Headers,
    pub adopt: fn(&tracing::Span, &Headers),
}

static HOOKS: OnceLock<Propagation> = OnceLock::new();

/// Installs the hooks (once per process; later calls are ignored).
pub fn install(p: Propagation) {
    let _ = HOOKS.set(p);
}

/// The current span's context as headers; empty when propagation is off.
pub fn current() -> Headers {
    HOOKS.get().map(|h| (h.current)()).unwrap_or_default()
}

/// Makes `span` a child of the context in `headers` (no-op when propagation is off or the
/// headers carry none).
pub fn adopt(span: &tracing::Span, headers: &Headers) {
    if let Some(h) = HOOKS.get() {
        (h.adopt)(span, headers);
    }
}
