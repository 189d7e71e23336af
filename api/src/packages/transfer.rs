//! Artifact bytes over HTTP: `PUT /api/v1/packages/{id}/artifact` streams an upload into the
//! artifact store; `GET`/`HEAD` of it (and of `/api/v1/package-names/{name}/active/artifact`,
//! the channel clients install from) serve the bytes with `Content-Length`, a strong `ETag`
//! (the SHA-256), `Content-Digest`, single byte ranges and conditional requests.

use crate::http::auth::Auth;
use crate::http::collection::if_match;
use crate::http::error::ApiError;
use crate::http::routes::{Access, Route};
use crate::packages::PackagesRoom;
use crate::packages::routes::package_response;
use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use depot_core::{Permission, ValidationError};
use depot_packages::Package;
use depot_packages::artifacts::OpenedArtifact;
use depot_packages::publish::UploadClaims;
use futures::StreamExt;
use uuid::Uuid;

pub fn routes() -> Vec<Route> {
    use Permission::{PackagesRead, PackagesWrite};
    vec![
        Route::new::<__path_upload, _, _>(Access::Scope(PackagesWrite), upload),
        Route::new::<__path_download, _, _>(Access::Scope(PackagesRead), download),
        Route::new::<__path_download_head, _, _>(Access::Scope(PackagesRead), download_head),
        Route::new::<__path_active, _, _>(Access::Scope(PackagesRead), active),
        Route::new::<__path_active_head, _, _>(Access::Scope(PackagesRead), active_head),
    ]
}

/// An artifact's bytes, as the OpenAPI document shows them (`string`, `format: binary`).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

pub const CONTENT_DIGEST: header::HeaderName = header::HeaderName::from_static("content-digest");
pub const REPR_DIGEST: header::HeaderName = header::HeaderName::from_static("repr-digest");

/// Chunks of an upload in flight between the request and the store.
const UPLOAD_QUEUE: usize = 8;

/// The longest an upload's body may send nothing before it counts as incomplete.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The SHA-256 a `Content-Digest` field names (RFC 9530: `sha-256=:<base64>:`, among other
/// algorithms, which are ignored); `None` without a `sha-256` member; 422 naming the header
/// when it is malformed.
pub fn parse_content_digest(value: &str) -> Result<Option<[u8; 32]>, ValidationError> {
    let bad = || {
        ValidationError::field(
            "Content-Digest",
            "must be an RFC 9530 digest such as sha-256=:<base64 of the 32-byte SHA-256>:",
        )
    };
    for member in value.split(',') {
        let Some((algorithm, digest)) = member.trim().split_once('=') else {
            return Err(bad());
        };
        if !algorithm.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        let encoded = digest
            .trim()
            .strip_prefix(':')
            .and_then(|d| d.strip_suffix(':'))
            .ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| bad())?;
        return bytes.try_into().map(Some).map_err(|_| bad());
    }
    Ok(None)
}

fn digest_field(sha256_hex: &str) -> Option<String> {
    let bytes: Vec<u8> = (0..sha256_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(sha256_hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    Some(format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// A `Range` the answer honours: one `bytes` range; anything else (several ranges, another
/// unit, a malformed field) is ignored and the whole artifact is served, as RFC 9110 allows.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsked {
    Whole,
    Part(std::ops::Range<u64>),
    Unsatisfiable,
}

pub fn parse_range(value: &str, size: u64) -> RangeAsked {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &value[6..])
    else {
        return RangeAsked::Whole;
    };
    if spec.contains(',') {
        return RangeAsked::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsked::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    // Digits only; a position past u64 is as far as any end (so a start there is unsatisfiable).
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    match (first.is_empty(), number(first), number(last)) {
        // `-N`: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAsked::Unsatisfiable
            } else {
                RangeAsked::Part(size.saturating_sub(n)..size)
            }
        }
        (false, Some(start), end) if last.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return RangeAsked::Whole;
            }
            if start >= size {
                return RangeAsked::Unsatisfiable;
            }
            let end = end.map_or(size, |e| e.saturating_add(1).min(size));
            RangeAsked::Part(start..end)
        }
        _ => RangeAsked::Whole,
    }
}

/// True when an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 says for it).
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// `If-Range` holds when it names the current strong ETag; a date or another tag does not
/// (the artifact has no modification date to compare), so the whole artifact is served.
fn if_range_holds(req: &HttpRequest, etag: Option<&str>) -> bool {
    match req.headers().get(header::IF_RANGE) {
        None => true,
        Some(v) => etag.is_some_and(|e| v.to_str().is_ok_and(|v| v.trim() == e)),
    }
}

/// A file name for `Content-Disposition` that no client can misread: `name-version`, with
/// anything but `[A-Za-z0-9._+-]` as `_`, and no leading dot; `filename*` keeps the name's other
/// characters (UTF-8, percent-encoded) but never a path separator.
fn disposition(p: &Package) -> String {
    let raw = format!("{}-{}", p.name, p.version);
    let ascii: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ascii = ascii.trim_start_matches('.');
    // The exact name, but never a path: separators become `_`, leading dots go.
    let exact = raw.replace(['/', '\\'], "_");
    let encoded: String = exact
        .trim_start_matches('.')
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{encoded}",
        if ascii.is_empty() { "artifact" } else { ascii }
    )
}

/// The answer to a `GET` (or, with `head`, a `HEAD`) of a package's artifact.
async fn serve(
    req: &HttpRequest,
    package: Package,
    opened: OpenedArtifact,
    head: bool,
) -> Result<HttpResponse, ApiError> {
    let size = opened.size;
    let etag = package.sha256.as_deref().map(|s| format!("\"{s}\""));
    let digest = package.sha256.as_deref().and_then(digest_field);
    let mut builder = HttpResponse::Ok();
    if let Some(etag) = &etag {
        builder.insert_header((header::ETAG, etag.as_str()));
    }
    if let Some(d) = &digest {
        builder.insert_header((REPR_DIGEST, d.as_str()));
    }
    builder.insert_header((header::ACCEPT_RANGES, "bytes"));
    if let Some(etag) = &etag
        && none_match(req, etag)
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag.as_str()))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            .finish());
    }
    // Range is defined for GET only (RFC 9110 §14.2): a HEAD answers as a whole GET would.
    let asked = match req.headers().get(header::RANGE) {
        Some(v) if !head && if_range_holds(req, etag.as_deref()) => {
            parse_range(v.to_str().unwrap_or_default(), size)
        }
        _ => RangeAsked::Whole,
    };
    let range = match asked {
        RangeAsked::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
        RangeAsked::Part(r) if !(r.start == 0 && r.end == size) => Some(r),
        _ => None,
    };
    builder
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, disposition(&package)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    let length = match &range {
        Some(r) => {
            builder.status(actix_web::http::StatusCode::PARTIAL_CONTENT);
            builder.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ));
            r.end - r.start
        }
        None => {
            if let Some(d) = &digest {
                builder.insert_header((CONTENT_DIGEST, d.as_str()));
            }
            size
        }
    };
    if head {
        return Ok(builder.body(SizedStream::new(
            length,
            futures::stream::empty::<Result<web::Bytes, std::io::Error>>(),
        )));
    }
    let body = opened
        .read(range)
        .await
        .map_err(depot_packages::PackageError::Storage)?;
    Ok(builder.body(SizedStream::new(length, body)))
}

#[utoipa::path(put, path = "/api/v1/packages/{id}/artifact", tag = "packages",
    params(("id" = Uuid, Path),
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530 `sha-256=:<base64>:`: checked against the body"),
        ("If-Match" = Option<String>, Header)),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "The artifact's bytes, streamed (never held whole in memory); at most artifacts.max_bytes"),
    responses((status = 200, description = "Stored: the package, now `downloaded`, with the computed sha256 and size_bytes", body = depot_client::wire::PackageView),
        (status = 400, description = "`body_incomplete`: the body ended early; nothing was kept"),
        (status = 403, description = "`not_owner`: the name belongs to another principal"),
        (status = 404, description = "No such package"),
        (status = 409, description = "Not in `created` (`invalid_transition`), `yanked`, an operation under way (`operation_in_progress`), or changed while the body was sent (`package_changed`)"),
        (status = 412, description = "Stale If-Match"),
        (status = 413, description = "Larger than artifacts.max_bytes; nothing was kept"),
        (status = 415, description = "A Content-Type other than application/octet-stream"),
        (status = 422, description = "The bytes are not what the package declares (`size_bytes`, `sha256`) or what `Content-Digest` says, each named; nothing was kept")))]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::http::extract::content_type_in(
        &req,
        &["application/octet-stream"],
        "an artifact is sent as application/octet-stream",
    )?;
    let content_digest = match req.headers().get(CONTENT_DIGEST) {
        None => None,
        Some(v) => parse_content_digest(
            v.to_str()
                .map_err(|_| ValidationError::field("Content-Digest", "must be ASCII"))?,
        )?,
    };
    let claims = UploadClaims {
        content_digest,
        if_match: if_match(&req)?,
    };
    // Refused before a byte of the body is read: who may, which version, and a length that
    // cannot be right.
    let package = state
        .packages
        .check_upload(&auth.0, *id, claims.if_match)
        .await?;
    let limit = state.packages.max_artifact_bytes();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge {
            limit: limit as usize,
        });
    }
    if let (Some(sent), Some(size)) = (declared, package.size_bytes)
        && sent != size as u64
    {
        return Err(ValidationError::field(
            "size_bytes",
            format!("the body is {sent} bytes (Content-Length); the package declares {size}"),
        )
        .into());
    }
    // The request body lives on this worker's thread; the store reads it through a bounded
    // channel (so a slow disk slows the client down, and memory stays a few chunks). A client
    // that sends nothing for UPLOAD_IDLE ends the upload as an incomplete body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(UPLOAD_QUEUE);
    let forward = async move {
        loop {
            let chunk = match tokio::time::timeout(UPLOAD_IDLE, payload.next()).await {
                Ok(Some(chunk)) => chunk.map_err(|e| std::io::Error::other(e.to_string())),
                Ok(None) => break,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no byte for {} s", UPLOAD_IDLE.as_secs()),
                )),
            };
            let stop = chunk.is_err();
            if tx.send(chunk).await.is_err() || stop {
                break;
            }
        }
    };
    let body = tokio_stream_of(rx);
    // The upload decides; the forwarding stops with it (a refused body is not read on).
    let upload = state.packages.upload(&auth.0, *id, body, &claims);
    let package = drive_until(upload, forward).await;
    Ok(package_response(package?))
}

/// Runs `main` and `helper` together until `main` ends (the helper is dropped then, finished
/// or not).
pub(crate) async fn drive_until<T>(
    main: impl std::future::Future<Output = T>,
    helper: impl std::future::Future<Output = ()>,
) -> T {
    let (main, helper) = (std::pin::pin!(main), std::pin::pin!(helper));
    let mut helper = Some(helper);
    let mut main = main;
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(out) = main.as_mut().poll(cx) {
            return std::task::Poll::Ready(out);
        }
        if let Some(h) = helper.as_mut()
            && h.as_mut().poll(cx).is_ready()
        {
            helper = None;
        }
        std::task::Poll::Pending
    })
    .await
}

/// The receiving end of the upload channel as a stream.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<web::Bytes, std::io::Error>>,
) -> depot_packages::artifacts::ByteStream {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[utoipa::path(get, path = "/api/v1/packages/{id}/artifact", tag = "packages",
    params(("id" = Uuid, Path),
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=0-1023`, `bytes=1024-`, `bytes=-512`)"),
        ("If-None-Match" = Option<String>, Header), ("If-Range" = Option<String>, Header)),
    responses((status = 200, description = "The artifact", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Length" = u64), ("ETag" = String, description = "Strong: `\"<sha256>\"`"),
            ("Content-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:` of this answer's bytes (whole answers only)"),
            ("Repr-Digest" = String, description = "The same of the whole artifact"),
            ("Accept-Ranges" = String, description = "`bytes`"), ("Content-Disposition" = String))),
        (status = 206, description = "The asked range", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Range" = String, description = "`bytes <first>-<last>/<size>`"), ("Content-Length" = u64), ("ETag" = String))),
        (status = 304, description = "If-None-Match named the ETag"),
        (status = 404, description = "No such package, or `artifact_missing`: it holds no artifact"),
        (status = 416, description = "`range_not_satisfiable`: the range starts past the end",
            headers(("Content-Range" = String, description = "`bytes */<size>`")))))]
pub async fn download(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (package, opened) = state.packages.artifact(*id).await?;
    serve(&req, package, opened, false).await
}

#[utoipa::path(head, path = "/api/v1/packages/{id}/artifact", tag = "packages",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The headers a GET would send, no body"),
        (status = 404, description = "No such package, or it holds no artifact")))]
pub async fn download_head(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (package, opened) = state.packages.artifact(*id).await?;
    serve(&req, package, opened, true).await
}

#[utoipa::path(get, path = "/api/v1/package-names/{name}/active/artifact", tag = "package-names",
    params(("name" = String, Path, description = "The package name, percent-encoded"),
        ("Range" = Option<String>, Header), ("If-None-Match" = Option<String>, Header), ("If-Range" = Option<String>, Header)),
    responses((status = 200, description = "The active version's artifact, as GET /packages/{id}/artifact serves it", content_type = "application/octet-stream", body = Binary,
            headers(("Content-Length" = u64), ("ETag" = String, description = "Strong: `\"<sha256>\"`"),
            ("Content-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:` of this answer's bytes (whole answers only)"),
            ("Repr-Digest" = String, description = "The same of the whole artifact"),
            ("Accept-Ranges" = String, description = "`bytes`"), ("Content-Disposition" = String), ("Cache-Control" = String, description = "`no-cache`: the active version changes"), ("Content-Location" = String, description = "The version's own artifact"))),
        (status = 206, description = "The asked range", content_type = "application/octet-stream", body = Binary),
        (status = 304, description = "If-None-Match named the ETag"),
        (status = 404, description = "No version of the name is active, or it holds no artifact"),
        (status = 416, description = "The range starts past the end")))]
pub async fn active(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    active_answer(&req, &state, &name, false).await
}

#[utoipa::path(head, path = "/api/v1/package-names/{name}/active/artifact", tag = "package-names",
    params(("name" = String, Path, description = "The package name, percent-encoded")),
    responses((status = 200, description = "The headers a GET would send, no body"),
        (status = 404, description = "No version of the name is active, or it holds no artifact")))]
pub async fn active_head(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    active_answer(&req, &state, &name, true).await
}

async fn active_answer(
    req: &HttpRequest,
    state: &PackagesRoom,
    name: &str,
    head: bool,
) -> Result<HttpResponse, ApiError> {
    let (package, opened) = state.packages.active_artifact(name).await?;
    let id = package.id;
    let mut answer = serve(req, package, opened, head).await?;
    let headers = answer.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/packages/{id}/artifact")) {
        headers.insert(header::CONTENT_LOCATION, v);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        use RangeAsked::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Part(90..100));
        assert_eq!(parse_range("bytes=90-1000", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Part(90..100));
        assert_eq!(parse_range("bytes=-1000", 100), Part(0..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("Bytes=0-9", 100), Part(0..10));
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=5-99999999999999999999999", 100),
            Part(5..100)
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999999", 100),
            Part(0..100)
        );
        // Ignored: the whole artifact is served.
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(ignored, 100), Whole, "{ignored}");
        }
    }

    #[test]
    fn content_digests_are_read_as_rfc_9530_says() {
        let sha = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(sha);
        assert_eq!(
            parse_content_digest(&format!("sha-256=:{b64}:")).unwrap(),
            Some(sha)
        );
        assert_eq!(
            parse_content_digest(&format!("sha-512=:AAAA:, SHA-256=:{b64}:")).unwrap(),
            Some(sha)
        );
        assert_eq!(parse_content_digest("sha-512=:AAAA:").unwrap(), None);
        for bad in ["sha-256=AAAA", "sha-256=:AAAA:", "garbage", "sha-256=:!!:"] {
            let e = parse_content_digest(bad).unwrap_err();
            assert_eq!(e.errors[0].field, "Content-Digest", "{bad}");
        }
        let hex = "00".repeat(31) + "ff";
        assert_eq!(
            digest_field(&hex).unwrap(),
            format!(
                "sha-256=:{}:",
                base64::engine::general_purpose::STANDARD.encode({
                    let mut b = [0u8; 32];
                    b[31] = 0xff;
                    b
                })
            )
        );
    }

    #[test]
    fn file_names_in_content_disposition_cannot_be_misread() {
        let p = |name: &str| Package::created(name.into(), "1.0".into(), chrono::Utc::now());
        assert_eq!(
            disposition(&p("left-pad")),
            "attachment; filename=\"left-pad-1.0\"; filename*=UTF-8''left-pad-1.0"
        );
        assert_eq!(
            disposition(&p("../\"x\";\r\nevil")),
            "attachment; filename=\"__x____evil-1.0\"; filename*=UTF-8''_%22x%22%3B%0D%0Aevil-1.0"
        );
    }
}
