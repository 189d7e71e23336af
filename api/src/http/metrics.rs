//! Prometheus metrics at `/metrics` (text format).
//!
//! HTTP metrics are labelled by the **route template** (`/api/v1/packages/{id}`), never the raw
//! path; requests that match no route share the label `unmatched`, so scanners cannot create
//! series. Domain figures (key verifications, cache hits, jobs, outbox backlog, database pool)
//! come from counters kept here and from the components' own statistics, read at scrape time.

use crate::component::gauge;
use crate::http::state::HttpState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::time::Instant;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub key_verifications: IntCounterVec,
    pub token_verifications: IntCounterVec,
    pub logins: IntCounterVec,
    pub jobs: IntCounterVec,
    pub operations_started: IntCounterVec,
    pub operations_finished: IntCounterVec,
    pub operation_duration: HistogramVec,
    pub queue_consumed: IntCounterVec,
    pub queue_redelivered: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request duration by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let key_verifications = IntCounterVec::new(
            Opts::new(
                "depot_api_key_verifications_total",
                "API-key verifications by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let token_verifications = IntCounterVec::new(
            Opts::new(
                "depot_access_token_verifications_total",
                "Bearer access-token verifications by result (valid, expired, invalid)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new(
                "depot_logins_total",
                "Sign-ins by method (password, refresh, oidc) and result",
            ),
            &["method", "result"],
        )
        .expect("valid metric");
        let jobs = IntCounterVec::new(
            Opts::new(
                "depot_queue_jobs_total",
                "Deliveries handled by workers, by queue and outcome (ack, retry, dead_letter)",
            ),
            &["queue", "outcome"],
        )
        .expect("valid metric");
        let operations_started = IntCounterVec::new(
            Opts::new(
                "depot_operations_started_total",
                "Package operations accepted, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let operations_finished = IntCounterVec::new(
            Opts::new(
                "depot_operations_finished_total",
                "Package operations finished, by kind and final status",
            ),
            &["kind", "status"],
        )
        .expect("valid metric");
        let operation_duration = HistogramVec::new(
            HistogramOpts::new(
                "depot_operation_duration_seconds",
                "Time from accepting an operation to its final status, by kind and final status",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
            &["kind", "status"],
        )
        .expect("valid metric");
        let queue_consumed = IntCounterVec::new(
            Opts::new(
                "depot_queue_consumed_total",
                "Deliveries received by workers, by queue",
            ),
            &["queue"],
        )
        .expect("valid metric");
        let queue_redelivered = IntCounterVec::new(
            Opts::new(
                "depot_queue_redelivered_total",
                "Deliveries that were not the message's first (retries, crashed workers), by queue",
            ),
            &["queue"],
        )
        .expect("valid metric");
        for c in [
            &http_requests,
            &operations_finished,
            &queue_consumed,
            &queue_redelivered,
            &key_verifications,
            &token_verifications,
            &logins,
            &jobs,
            &operations_started,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for h in [&http_duration, &operation_duration] {
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            key_verifications,
            token_verifications,
            logins,
            jobs,
            operations_started,
            operations_finished,
            operation_duration,
            queue_consumed,
            queue_redelivered,
        }
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Records every request by method, route template and status.
pub async fn record_http(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let state = req.app_data::<web::Data<HttpState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = crate::http::middleware::route_template(res.request());
        let method = res.request().method().as_str().to_owned();
        let status = res.status().as_u16().to_string();
        state
            .metrics
            .http_requests
            .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
            .inc();
        state
            .metrics
            .http_duration
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(start.elapsed().as_secs_f64());
    }
    Ok(res)
}

pub async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    let mut out = state.metrics.render();
    for component in &state.components {
        component.metrics(&mut out).await;
    }
    let (size, idle) = match state.db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let p = state.db.get_postgres_connection_pool();
            (p.size(), p.num_idle() as u32)
        }
        _ => {
            let p = state.db.get_sqlite_connection_pool();
            (p.size(), p.num_idle() as u32)
        }
    };
    gauge(
        &mut out,
        "depot_db_pool_connections",
        "Open database connections",
        "gauge",
        size,
    );
    gauge(
        &mut out,
        "depot_db_pool_in_use",
        "Database connections in use",
        "gauge",
        size.saturating_sub(idle),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}
