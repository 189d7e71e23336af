use crate::helpers::spawn_app;
use crate::helpers::wait_final_json as wait_final;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn metrics_use_route_templates_and_count_the_domain() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    app.get("/health/live").await;
    for i in 0..3 {
        app.get(&format!("/scanner/probe-{i}")).await;
    }
    let p: Value = app
        .with_key(Method::POST, "/api/v1/packages", &key)
        .json(&json!({"name": "m", "version": "1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = p["id"].as_str().unwrap();
    app.get_with_key(&format!("/api/v1/packages/{id}"), &key)
        .await;
    app.get_with_key("/api/v1/auth/whoami", "dpk_not-a-key")
        .await;
    app.client
        .get(app.url("/api/v1/auth/whoami"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    let op: Value = app
        .with_key(
            Method::POST,
            &format!("/api/v1/packages/{id}/download"),
            &key,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    wait_final(&app, &key, op["id"].as_str().unwrap()).await;

    // The worker counts the finished operation just after writing its final status.
    let mut text = String::new();
    for _ in 0..50 {
        let res = app.get("/metrics").await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        text = res.text().await.unwrap();
        if text.contains("depot_operations_finished_total") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for expected in [
        r#"http_requests_total{method="GET",route="/health/live",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 3"#,
        r#"http_requests_total{method="GET",route="/api/v1/packages/{id}",status="200"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/health/live",le="0.005"}"#,
        r#"depot_api_key_verifications_total{result="valid"}"#,
        r#"depot_api_key_verifications_total{result="malformed"} 1"#,
        r#"depot_operations_started_total{kind="download"} 1"#,
        r#"depot_queue_jobs_total{outcome="ack",queue="operations"}"#,
        r#"depot_queue_consumed_total{queue="operations"}"#,
        r#"depot_operations_finished_total{kind="download",status="succeeded"} 1"#,
        r#"depot_operation_duration_seconds_bucket{kind="download",status="succeeded",le="60"} 1"#,
        r#"depot_operation_duration_seconds_count{kind="download",status="succeeded"} 1"#,
        "depot_queue_published_total 1",
        r#"depot_access_token_verifications_total{result="invalid"} 1"#,
        "depot_api_key_cache_hits_total",
        "depot_outbox_backlog 0",
        "depot_db_pool_in_use",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // Raw paths and ids never become label values.
    assert!(!text.contains("probe-"), "{text}");
    assert!(!text.contains(id), "{text}");
}
