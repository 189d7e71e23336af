//! API keys and the audit log.

use super::*;

impl Client {
    // --- API keys -----------------------------------------------------------------------

    pub async fn create_api_key(&self, k: &CreateApiKeyRequest) -> Result<ApiKeyCreated, Error> {
        self.call(self.json(Method::POST, "/api/v1/api-keys", k))
            .await
    }

    /// [`Client::create_api_key`] with an optional `Idempotency-Key`, answering with the headers
    /// (`Location`). The plaintext key is never replayed: a retry with the same key answers
    /// `409 idempotency_secret_not_replayable`.
    pub async fn create_api_key_with(
        &self,
        k: &CreateApiKeyRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Response<ApiKeyCreated>, Error> {
        let req = self.json(Method::POST, "/api/v1/api-keys", k);
        self.send(Self::idempotency_key(req, idempotency_key)).await
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

    /// A conditional `GET` (`If-None-Match: etag`): `None` when the key still has that ETag
    /// (`304 Not Modified`), else the key as [`Client::get_api_key`] answers it.
    pub async fn get_api_key_if_none_match(
        &self,
        id: Uuid,
        etag: &str,
    ) -> Result<Option<Response<ApiKeyView>>, Error> {
        let path = format!("/api/v1/api-keys/{id}");
        self.get_if_none_match(&path, etag).await
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
        self.api_key_usage_with(id, &[]).await
    }

    /// `GET /api/v1/api-keys/{id}/usage` with filters: `limit`, `cursor`; newest first.
    pub async fn api_key_usage_with(
        &self,
        id: Uuid,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<UsageView>, Error> {
        let path = Self::query(&format!("/api/v1/api-keys/{id}/usage"), query);
        self.call(self.request(Method::GET, &path)).await
    }

    /// `GET /api/v1/audit-events` with filters: `action`, `limit`, `cursor`.
    pub async fn audit_events(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<AuditEventView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/audit-events", query)))
            .await
    }
}
