//! Packages and their operations (event streams, waiting).

use super::*;

impl Client {
    // --- packages -----------------------------------------------------------------------

    pub async fn create_package(&self, p: &CreatePackageRequest) -> Result<PackageView, Error> {
        self.call(self.json(Method::POST, "/api/v1/packages", p))
            .await
    }

    /// [`Client::create_package`] with an optional `Idempotency-Key` (a UUID: a retry with the
    /// same key and body replays the first answer), answering with the headers (`Location`,
    /// `Idempotent-Replayed: true` on a replay).
    pub async fn create_package_with(
        &self,
        p: &CreatePackageRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Response<PackageView>, Error> {
        let req = self.json(Method::POST, "/api/v1/packages", p);
        self.send(Self::idempotency_key(req, idempotency_key)).await
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

    /// A conditional `GET` (`If-None-Match: etag`): `None` when the package still has that
    /// ETag (`304 Not Modified`), else the package as [`Client::get_package`] answers it.
    pub async fn get_package_if_none_match(
        &self,
        id: Uuid,
        etag: &str,
    ) -> Result<Option<Response<PackageView>>, Error> {
        let path = format!("/api/v1/packages/{id}");
        self.get_if_none_match(&path, etag).await
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

    /// [`Client::start`] with an optional `Idempotency-Key` (a retried start answers the same
    /// operation), answering with the headers (`Location` of the operation, `Retry-After`).
    pub async fn start_with(
        &self,
        id: Uuid,
        kind: OperationKind,
        idempotency_key: Option<&str>,
    ) -> Result<Response<OperationView>, Error> {
        let req = self.request(
            Method::POST,
            &format!("/api/v1/packages/{id}/{}", kind.as_str()),
        );
        self.send(Self::idempotency_key(req, idempotency_key)).await
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
            let headers = res.headers().clone();
            let bytes = res.bytes().await?;
            return Err(status_error(status, headers, &bytes));
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
}
