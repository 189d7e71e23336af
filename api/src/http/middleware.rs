//! Request ids and the per-request context used by logs and problem documents.
//!
//! `X-Request-Id` is taken from the request when it is a sane token (1–128 characters of
//! `[A-Za-z0-9._:-]`), generated (UUIDv7) otherwise, echoed on the response and recorded on the
//! request span, so every log line of the request carries it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use std::time::Instant;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

#[derive(Debug, Clone)]
struct RouteTemplate(String);

/// The route template the request matches (`/api/v1/packages/{id}`), or `unmatched`.
///
/// actix computes it by walking the whole route map with its pattern matchers, which costs
/// more than the rest of a small request together; the request span, the metrics and the
/// usage log all need it, so it is computed once and kept in the request's extensions. Across
/// requests it is remembered by the path's shape (UUID segments stand for any UUID: no route
/// tells two UUIDs apart), so a process walks the map once per shape; other paths, such as a
/// scan for unknown ones, are remembered only up to [`MAX_SHAPES`] shapes.
pub fn route_template(req: &actix_web::HttpRequest) -> String {
    if let Some(r) = req.extensions().get::<RouteTemplate>() {
        return r.0.clone();
    }
    let shape = path_shape(req.path());
    let known = TEMPLATES
        .read()
        .ok()
        .and_then(|t| t.get(shape.as_ref()).cloned());
    let route = known.unwrap_or_else(|| {
        let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
        if let Ok(mut t) = TEMPLATES.write()
            && t.len() < MAX_SHAPES
        {
            t.insert(shape.into_owned(), route.clone());
        }
        route
    });
    req.extensions_mut().insert(RouteTemplate(route.clone()));
    route
}

const MAX_SHAPES: usize = 1024;

static TEMPLATES: std::sync::LazyLock<
    std::sync::RwLock<std::collections::HashMap<String, String>>,
> = std::sync::LazyLock::new(Default::default);

/// The path with every segment that is a UUID replaced by `{uuid}` (borrowed when there is none).
fn path_shape(path: &str) -> std::borrow::Cow<'_, str> {
    let is_uuid = |s: &str| s.len() == 36 && uuid::Uuid::try_parse(s).is_ok();
    if !path.split('/').any(is_uuid) {
        return std::borrow::Cow::Borrowed(path);
    }
    std::borrow::Cow::Owned(
        path.split('/')
            .map(|s| if is_uuid(s) { "{uuid}" } else { s })
            .collect::<Vec<_>>()
            .join("/"),
    )
}

#[derive(Debug, Clone, Copy)]
struct RequestStart(Instant);

tokio::task_local! {
    static REQUEST_PATH: String;
}

/// The path of the request being handled on this task, for problem documents' `instance`.
pub fn current_path() -> Option<String> {
    REQUEST_PATH.try_with(Clone::clone).ok()
}

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The outermost middleware: assigns the request id and the start time.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(RequestStart(Instant::now()));
    let path = req.path().to_owned();
    let mut res = REQUEST_PATH.scope(path, next.call(req)).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    Ok(res)
}

/// Builds the request span. Deliberately records the path without the query string: a query may
/// carry an API key (`?api_key=`), and nothing secret goes into logs.
pub struct DepotRootSpan;

impl RootSpanBuilder for DepotRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let route = route_template(request.request());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            route = %route,
            path = %request.path(),
            status = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
        );
        // A caller's trace is continued only from the trusted proxies (or from anyone, when
        // configured): others start their own.
        let continues = request
            .app_data::<actix_web::web::Data<crate::http::state::HttpState>>()
            .is_some_and(|state| {
                state.trust_client_traceparent
                    || request.peer_addr().is_some_and(|peer| {
                        state.trusted_proxies.contains(&peer.ip().to_canonical())
                    })
            });
        let headers = if continues {
            crate::http::telemetry::request_trace_headers(request.headers())
        } else {
            depot_core::trace::Headers::new()
        };
        crate::http::telemetry::adopt(&span, &headers);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let _entered = span.enter();
        match outcome {
            Ok(res) => {
                let status = res.status().as_u16();
                span.record("status", status);
                let elapsed_ms = res
                    .request()
                    .extensions()
                    .get::<RequestStart>()
                    .map(|s| s.0.elapsed().as_secs_f64() * 1000.0)
                    .unwrap_or_default();
                if res.status().is_server_error() {
                    tracing::warn!(status, elapsed_ms, "request finished");
                } else {
                    tracing::info!(status, elapsed_ms, "request finished");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "request failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{acceptable, path_shape, route_template};
    use actix_web::test as http;
    use actix_web::{App, HttpRequest, web};

    #[test]
    fn path_shapes_stand_uuids_for_any_uuid() {
        let id = "0193a5f2-7c1e-7a3b-9d2e-1f2a3b4c5d6e";
        assert_eq!(
            path_shape(&format!("/api/v1/packages/{id}/download")),
            "/api/v1/packages/{uuid}/download"
        );
        assert_eq!(path_shape("/api/v1/packages"), "/api/v1/packages");
        assert_eq!(
            path_shape("/api/v1/packages/not-a-uuid"),
            "/api/v1/packages/not-a-uuid"
        );
    }

    /// Remembered templates are the ones actix's route map gives, per route and for unknown
    /// paths, whichever shape was seen first.
    #[actix_web::test]
    async fn route_templates_are_remembered_by_shape() {
        async fn template(req: HttpRequest) -> String {
            route_template(&req)
        }
        let app = http::init_service(
            App::new()
                .route("/t/items/special", web::get().to(template))
                .route("/t/items/{id}", web::get().to(template))
                .route("/t/items/{id}/parts", web::get().to(template))
                .default_service(web::to(template)),
        )
        .await;
        let get = async |path: &str| -> String {
            let req = http::TestRequest::get().uri(path).to_request();
            String::from_utf8(http::call_and_read_body(&app, req).await.to_vec()).unwrap()
        };
        for id in [
            "0193a5f2-7c1e-7a3b-9d2e-1f2a3b4c5d6e",
            "11111111-2222-4333-8444-555555555555",
        ] {
            assert_eq!(get(&format!("/t/items/{id}")).await, "/t/items/{id}");
            assert_eq!(
                get(&format!("/t/items/{id}/parts")).await,
                "/t/items/{id}/parts"
            );
            assert_eq!(get(&format!("/t/nothing/{id}")).await, "unmatched");
        }
        assert_eq!(get("/t/items/special").await, "/t/items/special");
        assert_eq!(get("/t/items/plain").await, "/t/items/{id}");
        assert_eq!(get("/t/elsewhere").await, "unmatched");
    }

    #[test]
    fn request_ids_are_filtered() {
        assert!(acceptable("abc-123_x.y:z"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
