//! The tracing subscriber: pretty lines locally, JSON lines in production. Every line logged
//! inside a request carries its `request_id` (the request span's field).
//!
//! OpenTelemetry: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, spans (requests, database statements, queue publish and consume, operations) are
//! exported over OTLP/HTTP (protobuf; `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` for JSON), the W3C
//! `traceparent` of incoming requests is honoured, operation messages carry it through the
//! outbox and the queue to the worker, and log lines carry `trace_id`. Unset: no exporter, no
//! propagation hooks, nothing to pay.

use crate::settings::{LogFormat, LogSettings};
use depot_core::trace::{Headers, Propagation};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Flushes and stops the span exporter when dropped (at the end of `main`).
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber, writing to standard output. `RUST_LOG` overrides `log.level`.
/// Safe to call twice (the second call is ignored), which the tests rely on.
pub fn init(settings: &LogSettings) {
    drop(init_to(settings, false, None));
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
}

fn tracer_provider(service: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (http/protobuf or http/json)"
            ));
        }
    };
    crate::install_tls_provider();
    // The endpoint, headers and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| e.to_string())?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// Like [`init`]; `to_stderr` keeps standard output for a command's own output (`depot migrate`).
/// `service` (`depot-api`, `depot-worker`) names the process in traces; `None` never exports.
pub fn init_to(settings: &LogSettings, to_stderr: bool, service: Option<&str>) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // sea-orm opens an info span per statement, for the trace exporter; log lines need none of
    // them, and leaving them out of the log filter makes them free when export is off.
    let filter = if filter.to_string().contains("sea_orm") {
        filter
    } else {
        filter.add_directive("sea_orm::database=warn".parse().expect("a valid directive"))
    };
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if to_stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .compact()
            .boxed(),
    };
    let provider = match service {
        Some(service) if otlp_configured() => match tracer_provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("OpenTelemetry export is off: {e}");
                None
            }
        },
        _ => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("depot"))
            .with_filter(EnvFilter::new("info,sqlx=info,sea_orm=info"))
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    // Already initialised (tests spawn many apps in one process): keep the first.
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        depot_core::trace::install(Propagation {
            current: current_context,
            adopt,
        });
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!("exporting traces over OTLP");
    }
    TelemetryGuard(if installed { provider } else { None })
}

struct Carrier<'a>(&'a mut Headers);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct ReadCarrier<'a>(&'a Headers);

impl Extractor for ReadCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

fn current_context() -> Headers {
    let mut headers = Headers::new();
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut Carrier(&mut headers));
    headers
}

/// Makes `span` a child of the remote context in `headers` (when they carry one) and records
/// the resulting trace id in the span's `trace_id` field, for the log lines.
pub fn adopt(span: &tracing::Span, headers: &Headers) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&ReadCarrier(headers));
        let _ = span.set_parent(cx);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
}

/// The W3C trace headers of an HTTP request.
pub fn request_trace_headers(headers: &actix_web::http::header::HeaderMap) -> Headers {
    if !EXPORTING.load(Ordering::Relaxed) {
        return Headers::new();
    }
    ["traceparent", "tracestate"]
        .iter()
        .filter_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*name).to_owned(), v.to_owned()))
        })
        .collect()
}
