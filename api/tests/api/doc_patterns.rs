//! The document's string patterns say what the server takes: a string the document allows (its
//! `pattern` and `maxLength`) is one the server's own validation accepts, and, for the patterns
//! that describe a rule exactly, a string the server accepts matches the pattern (so a client
//! generated from the document refuses nothing the server would take). `source_url`'s pattern is
//! a documented subset, so only the first direction holds for it.

use depot_api::settings::Settings;
use proptest::prelude::*;
use serde_json::Value;

fn doc() -> Value {
    depot_api::app::openapi(&Settings::defaults())
}

/// What a schema allows of a string: its `pattern`, `maxLength`, and a `not: {pattern}`.
struct Rule {
    re: regex::Regex,
    max: Option<usize>,
    not: Option<regex::Regex>,
}

/// The [`Rule`] of the schema at `pointer` (a property, or a query parameter), and its pattern.
fn rule(doc: &Value, pointer: &str) -> (Rule, String) {
    let schema = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing"));
    let schema = schema.get("schema").unwrap_or(schema);
    let pattern = schema["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} has no pattern: {schema}"));
    let max = schema["maxLength"].as_u64().map(|m| m as usize);
    let not = schema["not"]["pattern"]
        .as_str()
        .map(|p| regex::Regex::new(p).unwrap());
    let re = regex::Regex::new(pattern).unwrap();
    (Rule { re, max, not }, pattern.to_owned())
}

fn query_param(doc: &Value, path: &str, name: &str) -> String {
    let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
    let i = params.iter().position(|p| p["name"] == name).unwrap();
    format!("/paths/{}/get/parameters/{i}", path.replace('/', "~1"))
}

type Check = fn(&str) -> bool;

fn package(field: &str, v: &str) -> bool {
    let mut input = depot_packages::model::PackageInput::default();
    let v = v.to_owned();
    match field {
        "name" => input.name = Some(v),
        "version" => input.version = Some(v),
        "description" => input.description = Some(Some(v)),
        "source_url" => input.source_url = Some(Some(v)),
        "signature_url" => input.signature_url = Some(Some(v)),
        "sha256" => input.sha256 = Some(Some(v)),
        _ => unreachable!(),
    }
    input.validate(false).is_ok()
}

fn generation(pairs: &[(&str, &str)]) -> bool {
    depot_password::Generation::from_pairs(
        pairs.iter().copied(),
        &depot_password::Defaults::default(),
    )
    .is_ok()
}

/// (where, server check, the pattern states the rule exactly)
fn cases(doc: &Value) -> Vec<(String, Check, bool)> {
    let mut out: Vec<(String, Check, bool)> = Vec::new();
    for schema in ["CreatePackageRequest", "PatchPackageRequest"] {
        let p = |f: &str| format!("/components/schemas/{schema}/properties/{f}");
        out.push((p("name"), |v| package("name", v), true));
        out.push((p("version"), |v| package("version", v), true));
        out.push((p("description"), |v| package("description", v), true));
        out.push((p("sha256"), |v| package("sha256", v), true));
        out.push((p("source_url"), |v| package("source_url", v), false));
        out.push((p("signature_url"), |v| package("signature_url", v), false));
    }
    out.push((
        "/components/schemas/YankRequest/properties/reason".into(),
        |v| depot_packages::model::yank_reason(v).is_ok(),
        true,
    ));
    out.push((
        "/components/schemas/CreateApiKeyRequest/allOf/0/properties/name".into(),
        |v| depot_api_keys::model::KeyName::parse(v).is_ok(),
        true,
    ));
    out.push((
        query_param(doc, "/api/v1/passwords", "symbols"),
        |v| generation(&[("symbols", v)]),
        true,
    ));
    out.push((
        query_param(doc, "/api/v1/passwords", "separator"),
        |v| generation(&[("mode", "passphrase"), ("separator", v)]),
        true,
    ));
    out
}

/// Strings heavy in what the rules are about: whitespace, control characters, URL syntax.
fn tricky() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        any::<char>(),
        prop::sample::select(vec![
            ' ',
            '\t',
            '\n',
            '\r',
            '\u{0}',
            '\u{7}',
            '\u{1f}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{a0}',
            '\u{3000}',
            '\u{202e}',
            '\u{fe0f}',
            '\u{3164}',
            '\u{2028}',
            '\u{200b}',
            '\u{e0041}',
            'a',
            'Z',
            '0',
            '9',
            'f',
            ':',
            '/',
            '.',
            '-',
            '@',
            '?',
            '#',
            '!',
            '|',
            '~',
            '%',
            'h',
            't',
            'p',
            's',
        ]),
    ];
    prop::collection::vec(chars, 0..48).prop_map(|v| v.into_iter().collect())
}

fn allowed(rule: &Rule, v: &str) -> bool {
    rule.re.is_match(v)
        && rule.max.is_none_or(|m| v.chars().count() <= m)
        && rule.not.as_ref().is_none_or(|not| !not.is_match(v))
}

#[test]
fn every_documented_pattern_agrees_with_the_server() {
    let doc = doc();
    for (pointer, check, exact) in cases(&doc) {
        let (rule, pattern) = rule(&doc, &pointer);
        // Strings made from the pattern itself: the server takes every one that fits maxLength.
        let unanchored = pattern
            .trim_start_matches('^')
            .trim_end_matches('$')
            .to_owned();
        let from_pattern = proptest::string::string_regex(&unanchored).unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        runner
            .run(&from_pattern, |v| {
                prop_assert!(
                    !allowed(&rule, &v) || check(&v),
                    "{pointer}: the document allows {v:?}, the server refuses it"
                );
                Ok(())
            })
            .unwrap();
        // Strings of any kind: allowed ⇒ accepted, and for exact rules accepted ⇒ allowed.
        runner
            .run(&tricky(), |v| {
                let (ok_doc, ok_server) = (allowed(&rule, &v), check(&v));
                prop_assert!(
                    !ok_doc || ok_server,
                    "{pointer}: the document allows {v:?}, the server refuses it"
                );
                prop_assert!(
                    !exact || !ok_server || ok_doc,
                    "{pointer}: the server takes {v:?}, the document refuses it"
                );
                Ok(())
            })
            .unwrap();
    }
}

#[test]
fn the_documented_source_url_subset_takes_the_usual_urls() {
    let doc = doc();
    let (Rule { re, .. }, _) = rule(
        &doc,
        "/components/schemas/CreatePackageRequest/properties/source_url",
    );
    for url in [
        "https://example.com/a.tgz",
        "http://registry.internal:8080/pkg/left-pad-1.3.0.tgz?sig=abc#x",
        "  HTTPS://Example.COM  ",
    ] {
        assert!(re.is_match(url), "{url}");
        assert!(package("source_url", url), "{url}");
    }
    for url in [
        "",
        "ftp://example.com/a",
        "https://",
        "https://user:pw@example.com/",
    ] {
        assert!(!re.is_match(url), "{url}");
    }
}

/// Names `.` and `..` (however padded) are refused, and the document says so (`not`).
#[test]
fn dot_names_are_refused_and_documented_as_such() {
    let doc = doc();
    let (rule, _) = rule(
        &doc,
        "/components/schemas/CreatePackageRequest/properties/name",
    );
    for name in [".", "..", " . ", "\u{3000}..\t"] {
        assert!(!package("name", name), "{name:?}");
        assert!(!allowed(&rule, name), "{name:?}");
    }
    for name in ["...", ".a", "a.", "a..b"] {
        assert!(package("name", name), "{name:?}");
        assert!(allowed(&rule, name), "{name:?}");
    }
}
