//! Extractors whose failures are problem+json answers that name the failing field.
//!
//! actix's own `Json`/`Query` report type errors without the field's path; these use
//! `serde_path_to_error`, so `{"scopes": [1]}` fails with `field: "scopes[0]"`.

use crate::http::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use depot_core::ValidationError;
use futures::future::{LocalBoxFuture, Ready, ready};
use serde::de::DeserializeOwned;

/// Strips serde_json's " at line 1 column 7" suffix, which means nothing to an API client.
fn clean(message: String) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

/// Maps a path such as `.` (the root) to a field name clients understand.
fn field_name(path: String) -> String {
    if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path
    }
}

/// A 415 (with `detail`) when the request names a Content-Type whose essence is none of
/// `accepted` (compared without case); a request that names none passes.
pub fn content_type_in(req: &HttpRequest, accepted: &[&str], detail: &str) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = ct
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if accepted.iter().any(|a| essence.eq_ignore_ascii_case(a)) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            detail: detail.into(),
        })
    }
}

/// A JSON body, deserialised with field-naming errors.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            })
            .unwrap_or(false);
        let limit = req.app_data::<BodyLimit>().map_or(256 * 1024, |l| l.0);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType {
                    detail: "the body must be JSON (Content-Type: application/json)".into(),
                });
            }
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code() == 413 {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::BadRequest {
                        code: "malformed_body",
                        detail: "the request body could not be read".into(),
                    }
                }
            })?;
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(v) => Ok(Json(v)),
                Err(e) => {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    if inner.is_syntax() || inner.is_eof() {
                        Err(ApiError::BadRequest {
                            code: "malformed_json",
                            detail: format!(
                                "the body is not valid JSON: {}",
                                clean(inner.to_string())
                            ),
                        })
                    } else {
                        Err(
                            ValidationError::field(field_name(path), clean(inner.to_string()))
                                .into(),
                        )
                    }
                }
            }
        })
    }
}

/// The configured body limit, registered as app data so extractors can name it in errors.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A query string, deserialised with field-naming errors.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> Query<T> {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." {
                    "query".to_owned()
                } else {
                    path
                };
                ValidationError::field(field, e.into_inner().to_string()).into()
            })
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::parse(req.query_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Q {
        limit: Option<u32>,
        name: Option<String>,
    }

    #[test]
    fn query_errors_name_the_field() {
        let err = Query::<Q>::parse("limit=abc").unwrap_err();
        match err {
            ApiError::Validation(v) => assert_eq!(v.errors[0].field, "limit"),
            other => panic!("{other:?}"),
        }
        assert!(Query::<Q>::parse("limit=5&name=x").is_ok());
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        scopes: Vec<String>,
    }

    async fn json(content_type: &str, body: &'static str) -> Result<Json<Body>, ApiError> {
        let (req, mut payload) = actix_web::test::TestRequest::post()
            .insert_header(("content-type", content_type))
            .set_payload(body)
            .to_http_parts();
        Json::<Body>::from_request(&req, &mut payload).await
    }

    #[actix_web::test]
    async fn json_errors_name_the_field_or_say_malformed() {
        assert!(
            json("application/json", r#"{"name":"a","scopes":["x"]}"#)
                .await
                .is_ok()
        );
        match json("application/json", r#"{"name":"a","scopes":[1]}"#).await {
            Err(ApiError::Validation(v)) => assert_eq!(v.errors[0].field, "scopes[0]"),
            other => panic!("{other:?}"),
        }
        match json("application/json", r#"{"scopes":[]}"#).await {
            Err(ApiError::Validation(v)) => {
                assert_eq!(v.errors[0].field, "body");
                assert!(v.errors[0].message.contains("name"), "{:?}", v.errors);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            json("application/json", r#"{"name":"#).await,
            Err(ApiError::BadRequest {
                code: "malformed_json",
                ..
            })
        ));
        assert!(matches!(
            json("text/plain", r#"{}"#).await,
            Err(ApiError::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn serde_json_positions_are_removed() {
        assert_eq!(
            clean("expected value at line 1 column 2".into()),
            "expected value"
        );
    }
}
