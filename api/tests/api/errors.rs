use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/packages"] {
        let body = assert_problem(app.get(path).await, 404, "not_found").await;
        assert_eq!(body["instance"], path);
    }
}

#[tokio::test]
async fn wrong_methods_are_405_problems_with_allow() {
    let app = spawn_app().await;
    let res = app
        .client
        .delete(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    assert_problem(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_problems() {
    let app = crate::helpers::spawn_app_with(|s| s.server.body_limit_bytes = 4096).await;
    let key = app.writer_key().await;
    let big = serde_json::json!({"name": "x".repeat(10_000), "version": "1"});
    let res = app
        .with_key(reqwest::Method::POST, "/api/v1/packages", &key)
        .json(&big)
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 413, "payload_too_large").await;
    assert!(p["detail"].as_str().unwrap().contains("4096"), "{p}");
}
