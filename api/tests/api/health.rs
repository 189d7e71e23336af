//! Health, request ids, CORS. The health answers are read as JSON: they have no wire type (the
//! server's `Liveness` / `Readiness` in api/src/http/health.rs only serialise), and the other
//! tests are about raw headers (`X-Request-Id`, `Origin`).

use crate::helpers::{spawn_app, spawn_app_with_settings_and_adapters};
use depot_queue::InProcessQueue;
use std::sync::Arc;

#[tokio::test]
async fn live_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/health/live").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_checks_database_and_queue() {
    let app = spawn_app().await;
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["status"], "ok");
}

/// An app whose queue is down (a closed in-process queue answers its health check), with
/// `customize`d settings.
async fn app_with_the_queue_down(
    customize: impl FnOnce(&mut depot_api::settings::Settings),
) -> crate::helpers::TestApp {
    spawn_app_with_settings_and_adapters(customize, async |settings| {
        let mut adapters = depot_api::bootstrap::build(settings).await.unwrap();
        let closed = InProcessQueue::new();
        closed.close();
        adapters.queue_health = Arc::new(closed);
        adapters
    })
    .await
}

/// The review: readiness returned the dependencies' error text to anyone. The public answer
/// says which check is down, never why.
#[tokio::test]
async fn ready_is_503_naming_the_failed_check_without_its_error() {
    let app = app_with_the_queue_down(|_| {}).await;
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "down");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["status"], "down");
    assert!(body["checks"]["queue"].get("error").is_none(), "{body}");
    // Without a management listener, /metrics stays on the one listener.
    assert_eq!(app.get("/metrics").await.status(), 200);
}

/// With `server.management_port`, metrics and the readiness details are served there only.
#[tokio::test]
async fn the_management_listener_has_the_metrics_and_the_details() {
    let app = app_with_the_queue_down(|s| s.server.management_port = Some(0)).await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    let res = app.get("/health/ready").await;
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["checks"]["queue"].get("error").is_none(), "{body}");

    let management = app
        .management_address
        .clone()
        .expect("a management listener");
    let get = |path: &str| app.client.get(format!("{management}{path}")).send();
    let res = get("/metrics").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("depot_"));
    let res = get("/health/ready").await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["checks"]["queue"]["error"].is_string(), "{body}");
    assert_eq!(get("/health/live").await.unwrap().status(), 200);
    assert_eq!(get("/api/v1/packages").await.unwrap().status(), 404);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("X-Request-Id", "client-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-id-123");

    let res = app.get("/health/live").await;
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    // An id that could inject into logs is replaced, not echoed.
    let res = app
        .client
        .get(app.url("/health/live"))
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.server.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let allowed = app
        .client
        .get(app.url("/health/live"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = app
        .client
        .get(app.url("/health/live"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
