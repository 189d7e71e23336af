//! Health, request ids, CORS. The health answers are read as JSON: they have no wire type (the
//! server's `Liveness` / `Readiness` in api/src/http/health.rs only serialise), and the other
//! tests are about raw headers (`X-Request-Id`, `Origin`).

use crate::helpers::{spawn_app, spawn_app_with_adapters};
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

#[tokio::test]
async fn ready_is_503_with_detail_when_the_queue_is_down() {
    let app = spawn_app_with_adapters(async |settings| {
        let mut adapters = depot_api::bootstrap::build(settings).await.unwrap();
        // Replace the queue's health with a closed in-process queue: "the queue is down".
        let closed = InProcessQueue::new();
        closed.close();
        adapters.queue_health = Arc::new(closed);
        adapters
    })
    .await;
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "down");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["status"], "down");
    assert!(body["checks"]["queue"]["error"].is_string());
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
