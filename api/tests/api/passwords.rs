use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};
use serde_json::Value;

async fn get(app: &TestApp, query: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/passwords{query}")).await
}

async fn ok(app: &TestApp, query: &str) -> Value {
    let res = get(app, query).await;
    assert_eq!(res.status(), 200, "{query}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_original_contract_works_unchanged() {
    let app = spawn_app().await;
    let body = ok(
        &app,
        "?password_length=16&password_numbers=true&password_lower_case_chars=true\
         &password_upper_case_chars=true&password_special_symbols=true",
    )
    .await;
    let p = body["password"].as_str().unwrap();
    assert_eq!(p.chars().count(), 16);
    assert!(p.chars().any(|c| c.is_ascii_digit()));
    assert!(p.chars().any(|c| c.is_ascii_lowercase()));
    assert!(p.chars().any(|c| c.is_ascii_uppercase()));
    assert!(p.chars().any(|c| c.is_ascii_punctuation()));
    let bits = body["entropy_bits"].as_f64().unwrap();
    assert!((104.0..105.0).contains(&bits), "{bits}");
    assert!(body.get("passwords").is_none());
    // Every parameter is optional.
    let body = ok(&app, "").await;
    assert_eq!(body["password"].as_str().unwrap().chars().count(), 16);
}

#[tokio::test]
async fn booleans_accept_the_usual_spellings_and_classes_are_honoured() {
    let app = spawn_app().await;
    for (t, f) in [("true", "false"), ("1", "0"), ("YES", "no"), ("On", "OFF")] {
        let body = ok(
            &app,
            &format!(
                "?password_length=40&password_numbers={t}&password_lower_case_chars={f}\
                 &password_upper_case_chars={f}&password_special_symbols={f}"
            ),
        )
        .await;
        let p = body["password"].as_str().unwrap();
        assert!(p.chars().all(|c| c.is_ascii_digit()), "{p}");
        assert_eq!(p.len(), 40);
    }
}

#[tokio::test]
async fn bad_input_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    for (query, field) in [
        ("?password_length=5", "password_length"),
        ("?password_length=201", "password_length"),
        ("?password_length=abc", "password_length"),
        ("?password_length=", "password_length"),
        ("?password_length=-3", "password_length"),
        ("?password_numbers=maybe", "password_numbers"),
        ("?count=0", "count"),
        ("?count=101", "count"),
        ("?min_symbols=20&password_length=10", "min_symbols"),
        ("?exclude=0123456789", "exclude"),
        ("?symbols=abc", "symbols"),
        ("?mode=pin", "mode"),
        ("?mode=passphrase&words=2", "words"),
        ("?mode=passphrase&password_length=20", "password_length"),
    ] {
        let problem = assert_problem(get(&app, query).await, 422, "validation_failed").await;
        assert_eq!(fields(&problem), [field], "{query}: {problem}");
        assert_eq!(problem["instance"], "/api/v1/passwords");
    }
}

#[tokio::test]
async fn every_class_disabled_names_the_four_flags() {
    let app = spawn_app().await;
    let res = get(
        &app,
        "?password_numbers=false&password_lower_case_chars=false\
         &password_upper_case_chars=false&password_special_symbols=false",
    )
    .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(
        fields(&problem),
        [
            "password_numbers",
            "password_lower_case_chars",
            "password_upper_case_chars",
            "password_special_symbols"
        ]
    );
}

#[tokio::test]
async fn several_passwords_and_the_extra_rules() {
    let app = spawn_app().await;
    let body = ok(
        &app,
        "?count=20&password_length=12&exclude_ambiguous=true&exclude=xyz",
    )
    .await;
    let list: Vec<&str> = body["passwords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(list.len(), 20);
    assert_eq!(body["password"], list[0]);
    let distinct: std::collections::HashSet<_> = list.iter().collect();
    assert_eq!(distinct.len(), 20);
    for p in &list {
        assert!(!p.chars().any(|c| "Il1|O0xyz".contains(c)), "{p}");
    }
    let body = ok(
        &app,
        "?password_length=10&symbols=%21%40&min_symbols=4&min_numbers=3",
    )
    .await;
    let p = body["password"].as_str().unwrap();
    assert!(p.chars().filter(|c| "!@".contains(*c)).count() >= 4, "{p}");
    assert!(p.chars().filter(|c| c.is_ascii_digit()).count() >= 3, "{p}");
    assert!(
        !p.chars()
            .any(|c| c.is_ascii_punctuation() && !"!@".contains(c)),
        "{p}"
    );
}

#[tokio::test]
async fn passphrases_from_the_eff_list() {
    let app = spawn_app().await;
    let body = ok(
        &app,
        "?mode=passphrase&words=5&separator=%20&capitalize=true&include_number=true",
    )
    .await;
    assert_eq!(body["mode"], "passphrase");
    let p = body["password"].as_str().unwrap();
    let words: Vec<&str> = p.split(' ').collect();
    assert_eq!(words.len(), 5, "{p}");
    assert!(
        words
            .iter()
            .all(|w| w.chars().next().unwrap().is_ascii_uppercase())
    );
    assert_eq!(p.chars().filter(|c| c.is_ascii_digit()).count(), 1);
    let bits = body["entropy_bits"].as_f64().unwrap();
    assert!(
        (bits - (5.0 * 7776f64.log2() + 50f64.log2())).abs() < 0.01,
        "{bits}"
    );
}

#[tokio::test]
async fn defaults_come_from_settings() {
    let app = spawn_app_with(|s| {
        s.password.default_length = 30;
        s.password.special_symbols = false;
    })
    .await;
    let p = ok(&app, "").await["password"].as_str().unwrap().to_owned();
    assert_eq!(p.len(), 30);
    assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
}

#[tokio::test]
async fn extreme_minimums_use_exact_counting_off_the_workers() {
    let app = spawn_app().await;
    let body = ok(
        &app,
        "?password_length=200&exclude=123456789&password_lower_case_chars=0\
         &password_upper_case_chars=0&min_numbers=199",
    )
    .await;
    let p = body["password"].as_str().unwrap();
    assert_eq!(p.chars().filter(|c| *c == '0').count(), 199);
    let bits = body["entropy_bits"].as_f64().unwrap();
    assert!((bits - (200.0f64 * 32.0).log2()).abs() < 0.01, "{bits}");
}

#[tokio::test]
async fn documented_in_openapi() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let op = &doc["paths"]["/api/v1/passwords"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "password_length",
        "password_numbers",
        "password_lower_case_chars",
        "password_upper_case_chars",
        "password_special_symbols",
        "count",
        "mode",
        "words",
    ] {
        assert!(params.contains(&name), "{name} missing from {params:?}");
    }
    assert!(op["responses"]["422"].is_object());
    assert!(doc["components"]["schemas"]["PasswordResponse"]["example"].is_object());
}
