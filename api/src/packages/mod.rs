//! The packages room: `/api/v1/packages` and `/api/v1/operations` ([`routes`]), artifact
//! uploads and downloads ([`transfer`]) through the artifact store ([`artifacts`]), the `http`
//! executor that fetches artifacts ([`executor`]), the worker's job ([`jobs`]).

pub mod artifacts;
pub mod executor;
mod file_body;
pub mod fsck;
pub mod jobs;
pub mod names;
pub mod routes;
pub mod s3;
pub mod settings;
pub mod signatures;
pub mod streams;
pub mod transfer;

use crate::component::{Component, gauge};
use crate::http::collection::RenderCache;
use crate::http::metrics::Metrics;
use actix_web::web;
use depot_packages::PackageService;
use depot_packages::cache::PackageCache;
use depot_packages::relay::OutboxRelay;
use depot_packages::watch::OperationWatch;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// What the packages handlers share.
pub struct PackagesRoom {
    pub packages: Arc<PackageService>,
    pub metrics: Arc<Metrics>,
    /// The outbox relay, run by every API process.
    pub relay: Arc<OutboxRelay>,
    /// Only in the embedded topology (see `depot_packages::cache`).
    pub package_cache: Option<Arc<PackageCache>>,
    /// Rendered package list pages (only with the package cache, whose generation they follow).
    pub package_lists: RenderCache,
    /// Slots for Server-Sent Event streams.
    pub event_streams: Arc<streams::EventStreamSlots>,
    /// What the event streams follow operations through (one query for all of them).
    pub operation_watch: Arc<OperationWatch>,
}

#[async_trait::async_trait]
impl Component for web::Data<PackagesRoom> {
    fn app_data(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.clone());
    }

    fn loops(&self, stop: watch::Receiver<bool>) -> Vec<BoxFuture<'static, ()>> {
        vec![
            Box::pin(self.relay.clone().run(stop.clone())),
            Box::pin(self.operation_watch.clone().run(stop)),
        ]
    }

    async fn metrics(&self, out: &mut String) {
        gauge(
            out,
            "depot_queue_published_total",
            "Messages the outbox relay published and the broker confirmed",
            "counter",
            self.relay.published(),
        );
        if let Some(cache) = &self.package_cache {
            gauge(
                out,
                "depot_package_cache_hits_total",
                "Package reads answered from memory (embedded topology)",
                "counter",
                cache.hits.load(Ordering::Relaxed),
            );
            gauge(
                out,
                "depot_package_cache_misses_total",
                "Package reads that went to the database",
                "counter",
                cache.misses.load(Ordering::Relaxed),
            );
        }
        if let Ok(n) = self.relay.backlog().await {
            gauge(
                out,
                "depot_outbox_backlog",
                "Operation messages not yet published",
                "gauge",
                n,
            );
        }
    }
}
