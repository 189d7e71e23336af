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
