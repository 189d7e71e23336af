//! The outbox relay: publishes operation messages recorded by the API and removes them from the
//! outbox only after the queue confirmed them. Any number of replicas may run it (leases keep them apart).

use crate::ports::OutboxRepository;
use depot_core::queue::{Message, MessagePublisher};
use depot_core::{Clock, RepoError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

pub struct OutboxRelay {
    outbox: Arc<dyn OutboxRepository>,
    publisher: Arc<dyn MessagePublisher>,
    clock: Arc<dyn Clock>,
    wakeup: Arc<Notify>,
    interval: Duration,
    batch: u64,
    published: AtomicU64,
}

impl OutboxRelay {
    pub fn new(
        outbox: Arc<dyn OutboxRepository>,
        publisher: Arc<dyn MessagePublisher>,
        clock: Arc<dyn Clock>,
        wakeup: Arc<Notify>,
        interval: Duration,
    ) -> Self {
        Self {
            outbox,
            publisher,
            clock,
            wakeup,
            interval,
            batch: 200,
            published: AtomicU64::new(0),
        }
    }

    /// Messages this relay has published (confirmed by the queue) since start-up.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Publishes one batch; returns how many messages were sent. Stops at the first publish that
    /// fails (the broker is down): the rest stay in the outbox for the next round.
    pub async fn relay_once(&self) -> Result<usize, RepoError> {
        let leased = self
            .outbox
            .lease(self.batch, self.clock.now(), chrono::Duration::seconds(30))
            .await?;
        if leased.is_empty() {
            return Ok(0);
        }
        let results = futures::future::join_all(leased.iter().map(|m| {
            let mut message = Message::new(m.payload.clone());
            message.headers = m.headers.clone();
            let message = message.with_header("message_id", m.id.to_string());
            let span = tracing::info_span!(
                "publish",
                queue = %m.queue,
                message_id = %m.id,
                trace_id = tracing::field::Empty,
                otel.kind = "producer",
            );
            depot_core::trace::adopt(&span, &m.headers);
            self.publisher.publish(&m.queue, message).instrument(span)
        }))
        .await;
        let mut sent = Vec::with_capacity(leased.len());
        let mut unsent = Vec::new();
        let mut failure = None;
        for (m, r) in leased.iter().zip(results) {
            match r {
                Ok(()) => sent.push(m.id),
                Err(e) => {
                    unsent.push(m.id);
                    failure = Some(e);
                }
            }
        }
        self.published
            .fetch_add(sent.len() as u64, Ordering::Relaxed);
        self.outbox.remove_sent(&sent).await?;
        self.outbox.release(&unsent).await?;
        if let Some(e) = failure {
            tracing::warn!(error = %e, unsent = leased.len() - sent.len(), "publishing from the outbox failed; will retry");
        }
        Ok(sent.len())
    }

    /// Relays until `stop`, waking on new operations and every `interval` (other replicas'
    /// messages, messages left by a failed publish).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.interval;
        loop {
            match self.relay_once().await {
                Ok(n) if n as u64 >= self.batch => continue,
                Ok(_) => backoff = self.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "the outbox relay could not read the outbox");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    pub async fn backlog(&self) -> Result<u64, RepoError> {
        self.outbox.backlog().await
    }
}
