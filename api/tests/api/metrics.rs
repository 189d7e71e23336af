use crate::helpers::{spawn_app, wait_final};
use depot_client::wire::{CreatePackageRequest, OperationKind};

#[tokio::test]
async fn metrics_use_route_templates_and_count_the_domain() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    app.get("/health/live").await;
    for i in 0..3 {
        app.get(&format!("/scanner/probe-{i}")).await;
    }
    let depot = app.depot_with_key(&key);
    let p = depot
        .create_package(&CreatePackageRequest::new("m", "1"))
        .await
        .unwrap();
    depot.get_package(p.id).await.unwrap();
    // Refused credentials, counted as such: a malformed key and an invalid access token.
    let _ = app.depot_with_key("dpk_not-a-key").whoami().await;
    let _ = app.depot_with_token("not-a-token").whoami().await;
    let op = depot.start(p.id, OperationKind::Download).await.unwrap();
    wait_final(&depot, op.id).await;

    // The worker counts the finished operation just after writing its final status. The
    // metrics are Prometheus text, not JSON: read raw.
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
    assert!(!text.contains(&p.id.to_string()), "{text}");
}
