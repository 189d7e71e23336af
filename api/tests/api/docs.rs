use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn root_redirects_to_swagger_ui_which_renders_offline() {
    let app = spawn_app().await;
    let res = app.get("/").await;
    assert_eq!(res.status(), 307);
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // The assets are served by us (vendored), not from a CDN.
    let res = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(res.status(), 200);
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
}

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_the_endpoints() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in ["/health/live", "/health/ready"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for (path, method) in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/oidc/callback", "get"),
        ("/api/v1/users/{id}", "patch"),
        ("/.well-known/jwks.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // Both credentials are documented, and protected routes accept either.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    let security = doc["paths"]["/api/v1/packages/{id}"]["get"]["security"]
        .as_array()
        .unwrap();
    assert!(
        security.iter().any(|s| s.get("bearer").is_some()),
        "{security:?}"
    );
    assert!(
        security.iter().any(|s| s.get("api_key").is_some()),
        "{security:?}"
    );
}

#[tokio::test]
async fn docs_can_be_turned_off() {
    let app = spawn_app_with(|s| s.docs.enabled = false).await;
    for path in ["/", "/docs/", "/api/v1/openapi.json"] {
        assert_problem(app.get(path).await, 404, "not_found").await;
    }
}
