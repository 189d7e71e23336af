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

/// The route table is the one source of both the served routes and the document: every route
/// of the table is documented once with its access, every documented operation is served (not
/// the unknown-route 404 or a 405), and a protected one refuses a caller without credentials
/// (401) and one without its scope (403 naming a documented scope).
#[tokio::test]
async fn every_route_is_documented_served_and_guarded_as_documented() {
    use std::collections::BTreeSet;
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = depot_api::app::route_table()
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(documented, table, "the document and the route table differ");

    // A key with a scope no business route asks for alone.
    let (_, weak) = app
        .create_key(&["passwords:generate"], serde_json::json!({}))
        .await;
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        let url = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let send = |key: Option<&str>| {
            let mut req = app
                .client
                .request(method.parse().unwrap(), app.url(&url))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(key) = key {
                req = req.header("X-API-Key", key);
            }
            req.send()
        };
        let res = send(None).await.unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("no resource at"),
            "{method} {path} is documented but not served: {status} {body}"
        );
        let security = op["security"].as_array();
        let optional =
            security.is_some_and(|s| s.iter().any(|r| r.as_object().unwrap().is_empty()));
        if let Some(security) = security.filter(|_| !optional) {
            assert_eq!(
                status, 401,
                "{method} {path} served without credentials: {body}"
            );
            let scopes: BTreeSet<String> = security
                .iter()
                .flat_map(|r| r.as_object().unwrap().values())
                .flat_map(|v| v.as_array().unwrap().iter())
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            if !scopes.is_empty() && !scopes.contains("passwords:generate") && method == "HEAD" {
                // A HEAD answer has no body: the status says it.
                let res = send(Some(&weak)).await.unwrap();
                assert_eq!(res.status(), 403, "{method} {path}");
            } else if !scopes.is_empty() && !scopes.contains("passwords:generate") {
                let res = send(Some(&weak)).await.unwrap();
                let p = assert_problem(res, 403, "insufficient_scope").await;
                let detail = p["detail"].as_str().unwrap();
                assert!(
                    scopes.iter().any(|s| detail.contains(s.as_str())),
                    "{method} {path}: {detail} names none of {scopes:?}"
                );
            }
        } else {
            assert_ne!(status, 401, "{method} {path} is documented open: {body}");
        }
    }
}
