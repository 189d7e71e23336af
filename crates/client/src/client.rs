//! The typed client: one method per endpoint.

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
    /// The server answered with a problem document.
    #[error("{} {}: {}", .problem.status, .problem.code, .problem.detail.as_deref().unwrap_or(""))]
    Api { problem: Box<Problem> },
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
            Error::Api { problem } => Some(problem),
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

/// A typed client of one Depot.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    poll_interval: Duration,
}

fn status_error(status: StatusCode, bytes: &[u8]) -> Error {
    match serde_json::from_slice::<Problem>(bytes) {
        Ok(problem) => Error::Api {
            problem: Box::new(problem),
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
        let res = req.send().await?;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await?;
        if !status.is_success() {
            return Err(status_error(status, &bytes));
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

    // --- health -------------------------------------------------------------------------

    /// `GET /health/live`: true when the process answers.
    pub async fn live(&self) -> Result<bool, Error> {
        let res = self.request(Method::GET, "/health/live").send().await?;
        Ok(res.status().is_success())
    }

    // --- packages -----------------------------------------------------------------------

    pub async fn create_package(&self, p: &CreatePackageRequest) -> Result<PackageView, Error> {
        self.call(self.json(Method::POST, "/api/v1/packages", p))
            .await
    }

    /// `GET /api/v1/packages` with filters: `status`, `name` (prefix), `sort`, `limit`, `cursor`.
    pub async fn list_packages(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<PackageView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/packages", query)))
            .await
    }

    pub async fn get_package(&self, id: Uuid) -> Result<Response<PackageView>, Error> {
        self.send(self.request(Method::GET, &format!("/api/v1/packages/{id}")))
            .await
    }

    pub async fn patch_package(
        &self,
        id: Uuid,
        patch: &PatchPackageRequest,
        if_match: Option<&str>,
    ) -> Result<Response<PackageView>, Error> {
        let req = self.json(Method::PATCH, &format!("/api/v1/packages/{id}"), patch);
        self.send(Self::if_match(req, if_match)).await
    }

    pub async fn delete_package(&self, id: Uuid, if_match: Option<&str>) -> Result<(), Error> {
        let req = self.request(Method::DELETE, &format!("/api/v1/packages/{id}"));
        self.call(Self::if_match(req, if_match)).await
    }

    /// Starts a download, activation or deactivation: the operation (`202 Accepted`).
    pub async fn start(&self, id: Uuid, kind: OperationKind) -> Result<OperationView, Error> {
        self.call(self.request(
            Method::POST,
            &format!("/api/v1/packages/{id}/{}", kind.as_str()),
        ))
        .await
    }

    // --- operations ---------------------------------------------------------------------

    pub async fn get_operation(&self, id: Uuid) -> Result<OperationView, Error> {
        self.call(self.request(Method::GET, &format!("/api/v1/operations/{id}")))
            .await
    }

    /// `GET /api/v1/operations` with filters: `package_id`, `status`, `limit`, `cursor`.
    pub async fn list_operations(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<OperationView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/operations", query)))
            .await
    }

    pub async fn cancel_operation(&self, id: Uuid) -> Result<OperationView, Error> {
        self.call(self.request(Method::POST, &format!("/api/v1/operations/{id}/cancel")))
            .await
    }

    /// The operation's event stream: its state at each status or progress change, ending after
    /// the final one.
    pub async fn operation_events(
        &self,
        id: Uuid,
    ) -> Result<impl Stream<Item = Result<OperationView, Error>> + use<>, Error> {
        let res = self
            .request(Method::GET, &format!("/api/v1/operations/{id}/events"))
            .send()
            .await?;
        let status = res.status();
        if !status.is_success() {
            let bytes = res.bytes().await?;
            return Err(status_error(status, &bytes));
        }
        let chunks = res.bytes_stream();
        let state = (
            chunks,
            sse::Parser::new(),
            std::collections::VecDeque::new(),
        );
        Ok(futures::stream::unfold(
            state,
            |(mut chunks, mut parser, mut ready)| async move {
                loop {
                    if let Some(event) = ready.pop_front() {
                        let event: sse::Event = event;
                        if event.event != "operation" {
                            continue;
                        }
                        let op = serde_json::from_str::<OperationView>(&event.data).map_err(|e| {
                            Error::Unexpected {
                                status: 200,
                                detail: e.to_string(),
                            }
                        });
                        return Some((op, (chunks, parser, ready)));
                    }
                    match chunks.next().await {
                        Some(Ok(chunk)) => ready.extend(parser.feed(&chunk)),
                        Some(Err(e)) => return Some((Err(e.into()), (chunks, parser, ready))),
                        None => return None,
                    }
                }
            },
        ))
    }

    /// Waits for an operation to end: follows its event stream, and polls every
    /// [`Client::with_poll_interval`] when the server has none free or the stream breaks off.
    pub async fn wait(&self, id: Uuid) -> Result<OperationView, Error> {
        if let Ok(events) = self.operation_events(id).await {
            let mut events = std::pin::pin!(events);
            while let Some(Ok(op)) = events.next().await {
                if op.status.is_final() {
                    return Ok(op);
                }
            }
        }
        loop {
            let op = self.get_operation(id).await?;
            if op.status.is_final() {
                return Ok(op);
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    // --- API keys -----------------------------------------------------------------------

    pub async fn create_api_key(&self, k: &CreateApiKeyRequest) -> Result<ApiKeyCreated, Error> {
        self.call(self.json(Method::POST, "/api/v1/api-keys", k))
            .await
    }

    /// `GET /api/v1/api-keys` with filters: `status`, `name`, `limit`, `cursor`.
    pub async fn list_api_keys(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<ApiKeyView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/api-keys", query)))
            .await
    }

    pub async fn get_api_key(&self, id: Uuid) -> Result<Response<ApiKeyView>, Error> {
        self.send(self.request(Method::GET, &format!("/api/v1/api-keys/{id}")))
            .await
    }

    async fn key_action<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        id: Uuid,
        action: &str,
        body: Option<&B>,
        if_match: Option<&str>,
    ) -> Result<T, Error> {
        let path = format!("/api/v1/api-keys/{id}/{action}");
        let req = match body {
            Some(b) => self.json(Method::POST, &path, b),
            None => self.request(Method::POST, &path),
        };
        self.call(Self::if_match(req, if_match)).await
    }

    pub async fn revoke_api_key(
        &self,
        id: Uuid,
        if_match: Option<&str>,
    ) -> Result<ApiKeyView, Error> {
        self.key_action::<(), _>(id, "revoke", None, if_match).await
    }

    pub async fn reactivate_api_key(
        &self,
        id: Uuid,
        if_match: Option<&str>,
    ) -> Result<ApiKeyView, Error> {
        self.key_action::<(), _>(id, "reactivate", None, if_match)
            .await
    }

    pub async fn renew_api_key(
        &self,
        id: Uuid,
        renewal: &RenewRequest,
        if_match: Option<&str>,
    ) -> Result<ApiKeyView, Error> {
        self.key_action(id, "renew", Some(renewal), if_match).await
    }

    pub async fn rotate_api_key(
        &self,
        id: Uuid,
        rotation: &RotateRequest,
        if_match: Option<&str>,
    ) -> Result<ApiKeyCreated, Error> {
        self.key_action(id, "rotate", Some(rotation), if_match)
            .await
    }

    pub async fn delete_api_key(&self, id: Uuid, if_match: Option<&str>) -> Result<(), Error> {
        let req = self.request(Method::DELETE, &format!("/api/v1/api-keys/{id}"));
        self.call(Self::if_match(req, if_match)).await
    }

    pub async fn api_key_usage(&self, id: Uuid) -> Result<Collection<UsageView>, Error> {
        self.call(self.request(Method::GET, &format!("/api/v1/api-keys/{id}/usage")))
            .await
    }

    /// `GET /api/v1/audit-events` with filters: `action`, `limit`, `cursor`.
    pub async fn audit_events(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<AuditEventView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/audit-events", query)))
            .await
    }

    // --- accounts -----------------------------------------------------------------------

    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.call(self.request(Method::GET, "/api/v1/auth/whoami"))
            .await
    }

    pub async fn register(&self, credentials: &CredentialsRequest) -> Result<UserView, Error> {
        self.call(self.json(Method::POST, "/api/v1/auth/register", credentials))
            .await
    }

    pub async fn login(&self, credentials: &CredentialsRequest) -> Result<TokenResponse, Error> {
        self.call(self.json(Method::POST, "/api/v1/auth/login", credentials))
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, Error> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        };
        self.call(self.json(Method::POST, "/api/v1/auth/refresh", &body))
            .await
    }

    pub async fn logout(&self, refresh_token: &str) -> Result<(), Error> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        };
        self.call(self.json(Method::POST, "/api/v1/auth/logout", &body))
            .await
    }

    pub async fn me(&self) -> Result<UserView, Error> {
        self.call(self.request(Method::GET, "/api/v1/users/me"))
            .await
    }

    pub async fn list_users(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<UserView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/users", query)))
            .await
    }

    pub async fn get_user(&self, id: Uuid) -> Result<Response<UserView>, Error> {
        self.send(self.request(Method::GET, &format!("/api/v1/users/{id}")))
            .await
    }

    pub async fn patch_user(
        &self,
        id: Uuid,
        patch: &PatchUserRequest,
        if_match: Option<&str>,
    ) -> Result<Response<UserView>, Error> {
        let req = self.json(Method::PATCH, &format!("/api/v1/users/{id}"), patch);
        self.send(Self::if_match(req, if_match)).await
    }

    // --- passwords ----------------------------------------------------------------------

    /// `GET /api/v1/passwords` with the generator's query parameters.
    pub async fn generate_password(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<PasswordResponse, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/passwords", query)))
            .await
    }
}
