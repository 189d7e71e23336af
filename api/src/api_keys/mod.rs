//! The API-keys room: `/api/v1/api-keys` and `/api/v1/audit-events` ([`routes`]).

pub mod routes;
pub mod settings;

use crate::component::{Component, gauge};
use actix_web::web;
use depot_api_keys::{ApiKeyService, Verifier};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// What the key-management handlers share.
pub struct ApiKeysRoom {
    pub api_keys: Arc<ApiKeyService>,
    /// Verifies presented keys (used by `http::auth`); flushes usage in its loop.
    pub verifier: Arc<Verifier>,
}

#[async_trait::async_trait]
impl Component for web::Data<ApiKeysRoom> {
    fn app_data(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.clone());
    }

    /// The verifier's change-log poll and usage flush (which flushes once more on the way out).
    fn loops(&self, stop: watch::Receiver<bool>) -> Vec<BoxFuture<'static, ()>> {
        vec![Box::pin(self.verifier.clone().run(stop))]
    }

    async fn metrics(&self, out: &mut String) {
        let stats = &self.verifier.stats;
        gauge(
            out,
            "depot_api_key_cache_hits_total",
            "Key verifications answered from the cache",
            "counter",
            stats.cache_hits.load(Ordering::Relaxed),
        );
        gauge(
            out,
            "depot_api_key_cache_misses_total",
            "Key verifications that read the database",
            "counter",
            stats.cache_misses.load(Ordering::Relaxed),
        );
    }
}
