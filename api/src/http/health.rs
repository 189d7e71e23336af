//! `/health/live` (the process is up; never checks dependencies) and `/health/ready` (the
//! database and the queue answer). The public readiness says which check is down but never why
//! (a dependency's error text names hosts, users and versions): that is in the log, and on the
//! management listener's `/health/ready` (`server.management_port`).

use crate::http::state::HttpState;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok` when the process answers.
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    /// `ok` or `down`.
    pub status: &'static str,
    /// Why a check is down: only on the management listener (`server.management_port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every check is, `down` otherwise.
    pub status: &'static str,
    pub checks: BTreeMap<String, CheckResult>,
}

pub fn routes() -> Vec<crate::http::routes::Route> {
    use crate::http::routes::{Access, Route};
    vec![
        Route::new::<__path_live, _, _>(Access::Public, live),
        Route::new::<__path_ready, _, _>(Access::Public, ready),
    ]
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "The process is up", body = Liveness))
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Liveness { status: "ok" })
}

async fn timed<F, E>(check: F) -> CheckResult
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let start = std::time::Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
    let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    };
    if let Some(e) = &error {
        tracing::warn!(error = %e, "readiness check failed");
    }
    CheckResult {
        status: if error.is_none() { "ok" } else { "down" },
        error,
        duration_ms,
    }
}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "The database and the queue answer", body = Readiness),
        (status = 503, description = "A dependency is down; the body says which (not why: see the log, or the management listener)", body = Readiness)
    )
)]
pub async fn ready(state: web::Data<HttpState>) -> HttpResponse {
    readiness(&state, false).await
}

/// The management listener's readiness: with each failing check's error.
pub async fn ready_detailed(state: web::Data<HttpState>) -> HttpResponse {
    readiness(&state, true).await
}

async fn readiness(state: &HttpState, with_errors: bool) -> HttpResponse {
    let (database, queue) = tokio::join!(
        timed(depot_store::ping(&state.db)),
        timed(state.queue_health.check())
    );
    let all_ok = database.error.is_none() && queue.error.is_none();
    let shown = |mut check: CheckResult| {
        if !with_errors {
            check.error = None;
        }
        check
    };
    let (database, queue) = (shown(database), shown(queue));
    let body = Readiness {
        status: if all_ok { "ok" } else { "down" },
        checks: BTreeMap::from([("database".into(), database), ("queue".into(), queue)]),
    };
    let mut res = if all_ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header(("Cache-Control", "no-store")).json(body)
}
