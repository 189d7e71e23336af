//! Artifact bytes: uploads and downloads, streamed.

use super::*;

/// What to send with an upload beside its bytes.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions<'a> {
    /// The body's SHA-256, sent as `Content-Digest: sha-256=:…:` (the server checks it).
    pub sha256: Option<[u8; 32]>,
    /// `If-Match`: the package's ETag as read.
    pub if_match: Option<&'a str>,
    /// `Content-Length`, when the body is a stream of known length.
    pub content_length: Option<u64>,
}

/// An RFC 9530 `Content-Digest` field value for a SHA-256.
pub fn content_digest(sha256: &[u8; 32]) -> String {
    use base64::Engine;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha256)
    )
}

impl Client {
    /// `PUT /api/v1/packages/{id}/artifact`: streams `body` (bytes, a file, any stream) as the
    /// package's artifact; answers with the package, now `downloaded`.
    pub async fn upload_artifact(
        &self,
        id: Uuid,
        body: impl Into<reqwest::Body>,
        options: &UploadOptions<'_>,
    ) -> Result<Response<PackageView>, Error> {
        let mut req = self
            .request(Method::PUT, &format!("/api/v1/packages/{id}/artifact"))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(sha) = &options.sha256 {
            req = req.header("content-digest", content_digest(sha));
        }
        if let Some(n) = options.content_length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        self.send(Self::if_match(req, options.if_match)).await
    }

    /// `PUT /api/v1/packages/{id}/signature`: gives the package a detached minisign signature
    /// (the text of a `.minisig` file); answers with the package.
    pub async fn put_signature(&self, id: Uuid, minisig: &str) -> Result<PackageView, Error> {
        self.call(
            self.request(Method::PUT, &format!("/api/v1/packages/{id}/signature"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(minisig.to_owned()),
        )
        .await
    }

    /// `GET /api/v1/packages/{id}/signature`: the `.minisig` text the package carries.
    pub async fn signature(&self, id: Uuid) -> Result<String, Error> {
        let response = self
            .raw(
                Method::GET,
                &format!("/api/v1/packages/{id}/signature"),
                &[],
            )
            .await?;
        response.text().await.map_err(Error::from)
    }

    /// `GET /api/v1/packages/{id}/artifact` with the caller's `headers` (`Range`, `If-None-Match`,
    /// `If-Range`): the answer with its body unread, to stream ([`reqwest::Response::bytes_stream`])
    /// or read whole. Any 2xx or 304 is returned; other answers are an [`Error::Api`].
    pub async fn artifact(
        &self,
        id: Uuid,
        headers: &[(header::HeaderName, &str)],
    ) -> Result<reqwest::Response, Error> {
        self.raw(
            Method::GET,
            &format!("/api/v1/packages/{id}/artifact"),
            headers,
        )
        .await
    }

    /// `HEAD` of [`Client::artifact`].
    pub async fn artifact_head(
        &self,
        id: Uuid,
        headers: &[(header::HeaderName, &str)],
    ) -> Result<reqwest::Response, Error> {
        self.raw(
            Method::HEAD,
            &format!("/api/v1/packages/{id}/artifact"),
            headers,
        )
        .await
    }

    /// `GET /api/v1/package-names/{name}/active/artifact`: the active version's bytes.
    pub async fn active_artifact(
        &self,
        name: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> Result<reqwest::Response, Error> {
        let path = format!(
            "/api/v1/package-names/{}/active/artifact",
            name_segment(name)
        );
        self.raw(Method::GET, &path, headers).await
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> Result<reqwest::Response, Error> {
        let mut req = self.request(method, path);
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let res = req.send().await?;
        let status = res.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(res);
        }
        let headers = res.headers().clone();
        let bytes = res.bytes().await?;
        Err(status_error(status, headers, &bytes))
    }
}
