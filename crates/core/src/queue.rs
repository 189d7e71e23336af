//! The message-queue ports: publish to a named queue, consume with explicit ack/nack.
//!
//! Delivery is at-least-once: a delivery that is neither acked nor nacked (the consumer crashed or
//! dropped it) goes back to the queue. Consumers must therefore be idempotent.

use async_trait::async_trait;
use std::collections::BTreeMap;

/// A message: an opaque body plus string headers (e.g. `traceparent`, `message_id`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Message {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            headers: BTreeMap::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker cannot be reached or the channel is gone; retrying later may work.
    #[error("the message queue is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (negative publisher confirm).
    #[error("the message queue rejected the message")]
    Rejected,
    /// The queue was closed (shutdown).
    #[error("the queue is closed")]
    Closed,
    #[error("unexpected queue error")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why handling a delivered message failed, and so how the worker settles it: the one retry
/// classification from the executor (whose `Retryable` failures become `Retryable` here) through
/// the job handlers to the worker runtime.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another delivery (the database was busy, the broker or a remote blinked): the
    /// message comes back after a backoff, up to `queue.max_deliveries`.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will never succeed (a malformed message): dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Sends messages. `publish` returns only once the queue has taken responsibility for the message
/// (for a broker: after the publisher confirm).
#[async_trait]
pub trait MessagePublisher: Send + Sync {
    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError>;
}

/// Starts consuming a named queue.
#[async_trait]
pub trait MessageConsumer: Send + Sync {
    /// `prefetch` bounds how many unacknowledged deliveries this subscription holds at once.
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, QueueError>;
}

/// A stream of deliveries from one queue.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; `None` once the queue is closed.
    async fn next(&mut self) -> Option<Result<Box<dyn Delivery>, QueueError>>;
}

/// One delivered message, to be settled exactly once.
#[async_trait]
pub trait Delivery: Send + Sync {
    fn message(&self) -> &Message;
    /// 1 on the first delivery, more on redeliveries (where the adapter can tell).
    fn attempt(&self) -> u32;
    /// The work is done; the message leaves the queue.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// The work failed; `requeue` puts the message back at once, otherwise it is dead-lettered
    /// (where the adapter has a dead-letter queue) or dropped.
    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), QueueError>;
    /// The work failed but may succeed later: deliver the message again after `delay`, with its
    /// attempt count increased, without holding a consumer's slot meanwhile.
    async fn retry_later(self: Box<Self>, delay: std::time::Duration) -> Result<(), QueueError>;
}

/// Readiness of a queue adapter, for `/health/ready`.
#[async_trait]
pub trait QueueHealth: Send + Sync {
    async fn check(&self) -> Result<(), QueueError>;
}
