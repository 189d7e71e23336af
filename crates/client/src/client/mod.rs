//! The typed client: one method per endpoint, by area in `packages`, `api_keys` and
//! `accounts`; here the transport, the credentials and the errors.

mod accounts;
mod api_keys;
mod artifacts;
pub use artifacts::{UploadOptions, content_digest};
mod names;
mod packages;

pub use names::name_segment;

use crate::sse;
use crate::wire::*;
use futures::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

/// What the client authenticates with.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    /// `X-API-Key`.
    ApiKey(String),
    /// A user's access token (`Authorization: Bearer`).
    Bearer(String),
    /// The operator's `X-Admin-Secret`.
    AdminSecret(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::ApiKey(_) => "ApiKey(***)",
            Credentials::Bearer(_) => "Bearer(***)",
            Credentials::AdminSecret(_) => "AdminSecret(***)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a problem document; `status` and `headers` are the answer's
    /// (its HTTP status, which the problem's `status` repeats; `Content-Type`, `Retry-After`,
    /// `WWW-Authenticate`, …).
    #[error("{} {}: {}", .problem.status, .problem.code, .problem.detail.as_deref().unwrap_or(""))]
    Api {
        problem: Box<Problem>,
        status: u16,
        headers: Box<header::HeaderMap>,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach Depot: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered something this client cannot read.
    #[error("unexpected answer ({status}): {detail}")]
    Unexpected { status: u16, detail: String },
}

impl Error {
    /// The problem document, when the server sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
        }
    }

    /// The headers of the answer that carried the problem document.
    pub fn headers(&self) -> Option<&header::HeaderMap> {
        match self {
            Error::Api { headers, .. } => Some(headers),
            _ => None,
        }
    }

    /// The problem's status and code, e.g. `(409, "duplicate_package")`.
    pub fn status_and_code(&self) -> Option<(u16, &str)> {
        self.problem().map(|p| (p.status, p.code.as_str()))
    }
}

/// A decoded answer with the headers clients act on.
#[derive(Debug, Clone)]
pub struct Response<T> {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub headers: header::HeaderMap,
    pub body: T,
}

impl<T> Response<T> {
    /// The target of the `Link: <…>; rel="next"` header of a collection page (a path with its
    /// query), to fetch with [`Client::get`]; `None` on the last page.
    pub fn next_link(&self) -> Option<String> {
        self.headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find(|link| {
                link.split(';')
                    .skip(1)
                    .any(|param| param.trim() == "rel=\"next\"")
            })
            .and_then(|link| {
                let target = link.trim().strip_prefix('<')?;
                Some(target[..target.find('>')?].to_owned())
            })
    }
}

/// A typed client of one Depot.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    poll_interval: Duration,
}

fn status_error(status: StatusCode, headers: header::HeaderMap, bytes: &[u8]) -> Error {
    match serde_json::from_slice::<Problem>(bytes) {
        Ok(problem) => Error::Api {
            problem: Box::new(problem),
            status: status.as_u16(),
            headers: Box::new(headers),
        },
        Err(_) => Error::Unexpected {
            status: status.as_u16(),
            detail: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        },
    }
}

impl Client {
    /// A client of the Depot at `base` (e.g. `http://127.0.0.1:8000`), without credentials.
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("depot-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self::with_http(http, base)
    }

    /// The same, over a `reqwest::Client` of the caller's (timeouts, pools, proxies).
    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            credentials: Credentials::None,
            poll_interval: Duration::from_millis(200),
        }
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    pub fn with_api_key(self, key: impl Into<String>) -> Self {
        self.with_credentials(Credentials::ApiKey(key.into()))
    }

    pub fn with_bearer(self, token: impl Into<String>) -> Self {
        self.with_credentials(Credentials::Bearer(token.into()))
    }

    pub fn with_admin_secret(self, secret: impl Into<String>) -> Self {
        self.with_credentials(Credentials::AdminSecret(secret.into()))
    }

    /// How often [`Client::wait`] polls when the server has no event stream free.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` with this client's credentials, for what the typed methods do not
    /// cover (custom headers, malformed bodies in tests).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.credentials {
            Credentials::None => req,
            Credentials::ApiKey(k) => req.header("X-API-Key", k),
            Credentials::Bearer(t) => req.bearer_auth(t),
            Credentials::AdminSecret(s) => req.header("X-Admin-Secret", s),
        }
    }

    /// Sends `req` and decodes a 2xx answer as `T`; any other answer is an [`Error::Api`].
    pub async fn send<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<Response<T>, Error> {
        Self::decode(req.send().await?).await
    }

    /// Decodes an answer as [`Client::send`] does.
    async fn decode<T: DeserializeOwned>(res: reqwest::Response) -> Result<Response<T>, Error> {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await?;
        if !status.is_success() {
            return Err(status_error(status, headers, &bytes));
        }
        // A 204 (or an empty 2xx) decodes as JSON `null`, which `()` accepts.
        let body = if bytes.is_empty() {
            serde_json::from_slice(b"null")
        } else {
            serde_json::from_slice(&bytes)
        }
        .map_err(|e| Error::Unexpected {
            status: status.as_u16(),
            detail: e.to_string(),
        })?;
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Response {
            status: status.as_u16(),
            etag: text(header::ETAG),
            location: text(header::LOCATION),
            body,
            headers,
        })
    }

    /// `GET` of any path, decoded as `T` with the answer's headers: for paths the API handed
    /// out (a [`Response::next_link`], a `Location`) and reads whose headers matter.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Response<T>, Error> {
        self.send(self.request(Method::GET, path)).await
    }

    /// A conditional `GET` of `path`: `None` on `304 Not Modified`.
    async fn get_if_none_match<T: DeserializeOwned>(
        &self,
        path: &str,
        etag: &str,
    ) -> Result<Option<Response<T>>, Error> {
        let res = self
            .request(Method::GET, path)
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await?;
        if res.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        Self::decode(res).await.map(Some)
    }

    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, Error> {
        Ok(self.send(req).await?.body)
    }

    fn json<B: Serialize + ?Sized>(&self, method: Method, path: &str, body: &B) -> RequestBuilder {
        self.request(method, path).json(body)
    }

    fn if_match(req: RequestBuilder, etag: Option<&str>) -> RequestBuilder {
        match etag {
            Some(tag) => req.header(header::IF_MATCH, tag),
            None => req,
        }
    }

    fn idempotency_key(req: RequestBuilder, key: Option<&str>) -> RequestBuilder {
        match key {
            Some(key) => req.header("Idempotency-Key", key),
            None => req,
        }
    }

    fn query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                pairs
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v))),
            )
            .finish();
        if qs.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{qs}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_links(links: &[&str]) -> Response<()> {
        let mut headers = header::HeaderMap::new();
        for l in links {
            headers.append(header::LINK, l.parse().unwrap());
        }
        Response {
            status: 200,
            etag: None,
            location: None,
            headers,
            body: (),
        }
    }

    #[test]
    fn next_link_is_the_rel_next_target() {
        let next = "</api/v1/packages?limit=1&cursor=abc>; rel=\"next\"";
        assert_eq!(
            with_links(&[next]).next_link().as_deref(),
            Some("/api/v1/packages?limit=1&cursor=abc")
        );
        let both = "</a?page=1>; rel=\"prev\", </a?page=3>; rel=\"next\"";
        assert_eq!(
            with_links(&[both]).next_link().as_deref(),
            Some("/a?page=3")
        );
        assert_eq!(
            with_links(&["</a>; rel=\"prev\"", "</b>; rel=\"next\""])
                .next_link()
                .as_deref(),
            Some("/b")
        );
        assert_eq!(with_links(&["</a?page=1>; rel=\"prev\""]).next_link(), None);
        assert_eq!(with_links(&[]).next_link(), None);
    }
}
