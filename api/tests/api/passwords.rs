use crate::helpers::{TestApp, assert_api_problem, fields, spawn_app, spawn_app_with};
use depot_client::wire::PasswordResponse;
use depot_client::{Error, Response};

/// `GET /api/v1/passwords` with `query` as written (some of them are not what a typed query
/// would send: empty, or percent-encoded by hand).
async fn get(app: &TestApp, query: &str) -> Result<Response<PasswordResponse>, Error> {
    app.depot().get(&format!("/api/v1/passwords{query}")).await
}

/// A generated password, which must answer 200 and not be cached.
async fn ok(app: &TestApp, query: &str) -> PasswordResponse {
    let res = get(app, query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(res.status, 200, "{query}");
    assert_eq!(res.headers["cache-control"], "no-store");
    res.body
}

/// The first answer is read raw as well: without `count` it has no `passwords` member at all
/// (the wire type reads an absent member and a `null` alike).
#[tokio::test]
async fn the_original_contract_works_unchanged() {
    let app = spawn_app().await;
    let res = app
        .depot()
        .request(
            reqwest::Method::GET,
            "/api/v1/passwords?password_length=16&password_numbers=true\
             &password_lower_case_chars=true&password_upper_case_chars=true\
             &password_special_symbols=true",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let text = res.text().await.unwrap();
    assert!(!text.contains("\"passwords\""), "{text}");
    let body: PasswordResponse = serde_json::from_str(&text).unwrap();
    let p = body.password.as_str();
    assert_eq!(p.chars().count(), 16);
    assert!(p.chars().any(|c| c.is_ascii_digit()));
    assert!(p.chars().any(|c| c.is_ascii_lowercase()));
    assert!(p.chars().any(|c| c.is_ascii_uppercase()));
    assert!(p.chars().any(|c| c.is_ascii_punctuation()));
    let bits = body.entropy_bits;
    assert!((104.0..105.0).contains(&bits), "{bits}");
    // Every parameter is optional.
    let body = ok(&app, "").await;
    assert_eq!(body.password.chars().count(), 16);
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
        let p = body.password.as_str();
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
        let problem = assert_api_problem(get(&app, query).await, 422, "validation_failed");
        assert_eq!(fields(&problem), [field], "{query}: {problem:?}");
        assert_eq!(problem.instance.as_deref(), Some("/api/v1/passwords"));
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
    let problem = assert_api_problem(res, 422, "validation_failed");
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
    let list: Vec<&str> = body
        .passwords
        .as_deref()
        .expect("passwords, as count was given")
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(list.len(), 20);
    assert_eq!(body.password, list[0]);
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
    let p = body.password.as_str();
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
    assert_eq!(body.mode, "passphrase");
    let p = body.password.as_str();
    let words: Vec<&str> = p.split(' ').collect();
    assert_eq!(words.len(), 5, "{p}");
    assert!(
        words
            .iter()
            .all(|w| w.chars().next().unwrap().is_ascii_uppercase())
    );
    assert_eq!(p.chars().filter(|c| c.is_ascii_digit()).count(), 1);
    let bits = body.entropy_bits;
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
    let p = ok(&app, "").await.password;
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
    let p = body.password.as_str();
    assert_eq!(p.chars().filter(|c| *c == '0').count(), 199);
    let bits = body.entropy_bits;
    assert!((bits - (200.0f64 * 32.0).log2()).abs() < 0.01, "{bits}");
}

#[tokio::test]
async fn documented_in_openapi() {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::{HttpMethod, Paths};
    /// The parts of the OpenAPI document read here: the paths through utoipa's types, the one
    /// schema through its `example`, read as the wire type (Depot's schemas do not all read back
    /// into utoipa's).
    #[derive(serde::Deserialize)]
    struct Doc {
        paths: Paths,
        components: Components,
    }
    #[derive(serde::Deserialize)]
    struct Components {
        schemas: Schemas,
    }
    #[derive(serde::Deserialize)]
    struct Schemas {
        #[serde(rename = "PasswordResponse")]
        password_response: WithExample,
    }
    #[derive(serde::Deserialize)]
    struct WithExample {
        /// An object, and an answer the endpoint could give.
        example: PasswordResponse,
    }
    let app = spawn_app().await;
    let doc = app
        .depot()
        .get::<Doc>("/api/v1/openapi.json")
        .await
        .unwrap()
        .body;
    let op = doc
        .paths
        .get_path_operation("/api/v1/passwords", HttpMethod::Get)
        .expect("GET /api/v1/passwords");
    let params: Vec<&str> = op
        .parameters
        .iter()
        .flatten()
        .map(|p| match p {
            RefOr::T(p) => p.name.as_str(),
            RefOr::Ref(r) => panic!("a parameter by reference: {}", r.ref_location),
        })
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
    assert!(op.responses.responses.contains_key("422"));
    let example = &doc.components.schemas.password_response.example;
    assert!(!example.password.is_empty(), "{example:?}");
}
