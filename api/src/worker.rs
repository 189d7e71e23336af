//! The worker runtime: consumes queues and hands each delivery to its job handler, with bounded
//! concurrency, until told to stop. Runs inside `depot serve` (embedded mode) or as
//! `depot worker` processes (scaled mode, RabbitMQ).
//!
//! Components register [`JobHandler`]s; the runtime owns settlement: `Ok` acks, a retryable error
//! nacks with requeue, a permanent error nacks without.

use async_trait::async_trait;
use depot_core::queue::{Delivery, Message, MessageConsumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use depot_core::queue::JobError;

#[async_trait]
pub trait JobHandler: Send + Sync {
    /// The queue this handler consumes.
    fn queue(&self) -> &'static str;
    async fn handle(&self, message: &Message, attempt: u32) -> Result<(), JobError>;
}

pub struct Worker {
    consumer: Arc<dyn MessageConsumer>,
    handlers: Vec<Arc<dyn JobHandler>>,
    concurrency: u16,
    prefetch: u16,
    max_deliveries: u32,
    metrics: Option<Arc<crate::http::metrics::Metrics>>,
}

/// Stops a running worker and waits for its in-flight jobs.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl WorkerHandle {
    /// Stops taking new deliveries and waits up to `grace` for in-flight jobs; unfinished ones
    /// are handed back to the queue (their deliveries are dropped unsettled).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("worker jobs still running after the grace period; handing them back");
            self.tasks.abort_all();
        }
    }
}

impl Worker {
    /// `prefetch` is raised to `concurrency` when below it: a consumer never holds more jobs
    /// than it has unacknowledged deliveries, so a smaller prefetch would silently cap the
    /// concurrency asked for.
    pub fn new(consumer: Arc<dyn MessageConsumer>, concurrency: u16, prefetch: u16) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            consumer,
            handlers: Vec::new(),
            concurrency,
            prefetch: prefetch.max(concurrency),
            max_deliveries: 10,
            metrics: None,
        }
    }

    pub fn register(mut self, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.push(handler);
        self
    }

    pub fn handler_count(&self) -> usize {
        self.handlers.len()
    }

    /// Counts job outcomes in these metrics.
    pub fn metrics(mut self, metrics: Arc<crate::http::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Dead-letter a message after this many deliveries.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// Subscribes every handler's queue and consumes in the background. A subscription that
    /// ends (the broker went away) is opened again with backoff until the worker is stopped.
    pub async fn start(self) -> Result<WorkerHandle, depot_core::queue::QueueError> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for handler in self.handlers {
            // Fail fast at start-up when the queue cannot be reached at all.
            let first = self
                .consumer
                .subscribe(handler.queue(), self.prefetch)
                .await?;
            let consumer = self.consumer.clone();
            let permits = Arc::new(Semaphore::new(usize::from(self.concurrency)));
            let mut stopped = stopped.clone();
            let (prefetch, max_deliveries) = (self.prefetch, self.max_deliveries);
            let metrics = self.metrics.clone();
            tasks.spawn(async move {
                let mut jobs = JoinSet::new();
                let mut subscription = Some(first);
                let mut backoff = Duration::from_millis(200);
                'outer: loop {
                    let mut sub = match subscription.take() {
                        Some(s) => s,
                        None => match consumer.subscribe(handler.queue(), prefetch).await {
                            Ok(s) => {
                                tracing::info!(queue = handler.queue(), "subscribed again");
                                backoff = Duration::from_millis(200);
                                s
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, queue = handler.queue(), retry_in_ms = backoff.as_millis() as u64, "subscribing failed");
                                tokio::select! {
                                    _ = stopped.changed() => break 'outer,
                                    _ = tokio::time::sleep(backoff) => {}
                                }
                                backoff = (backoff * 2).min(Duration::from_secs(10));
                                continue;
                            }
                        },
                    };
                    loop {
                        let permit = tokio::select! {
                            _ = stopped.changed() => break 'outer,
                            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'outer },
                        };
                        let delivery = tokio::select! {
                            _ = stopped.changed() => break 'outer,
                            d = sub.next() => d,
                        };
                        let delivery = match delivery {
                            None => {
                                if *stopped.borrow() {
                                    break 'outer;
                                }
                                tracing::warn!(queue = handler.queue(), "the subscription ended; subscribing again");
                                break;
                            }
                            Some(Ok(d)) => d,
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, queue = handler.queue(), "receiving failed; subscribing again");
                                break;
                            }
                        };
                        let handler = handler.clone();
                        let metrics = metrics.clone();
                        if let Some(m) = &metrics {
                            m.queue_consumed.with_label_values(&[handler.queue()]).inc();
                            if delivery.attempt() > 1 {
                                m.queue_redelivered.with_label_values(&[handler.queue()]).inc();
                            }
                        }
                        jobs.spawn(async move {
                            let outcome = run_one(handler.as_ref(), delivery, max_deliveries).await;
                            if let Some(m) = metrics {
                                m.jobs.with_label_values(&[handler.queue(), outcome]).inc();
                            }
                            drop(permit);
                        });
                        while jobs.try_join_next().is_some() {}
                    }
                    tokio::select! {
                        _ = stopped.changed() => break 'outer,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
                // Let in-flight jobs finish; the handle's grace period bounds this.
                while jobs.join_next().await.is_some() {}
            });
        }
        Ok(WorkerHandle { stop, tasks })
    }
}

/// Delay before a failed job goes back to the queue: 200 ms, doubling per attempt, at most 10 s.
fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6).saturating_sub(1)))
        .min(Duration::from_secs(10))
}

/// Handles and settles one delivery; returns the outcome's metric label.
async fn run_one(
    handler: &dyn JobHandler,
    delivery: Box<dyn Delivery>,
    max_deliveries: u32,
) -> &'static str {
    let attempt = delivery.attempt();
    let span = tracing::info_span!(
        "consume",
        queue = handler.queue(),
        attempt,
        trace_id = tracing::field::Empty,
        otel.name = %format!("consume {}", handler.queue()),
        otel.kind = "consumer",
    );
    crate::http::telemetry::adopt(&span, &delivery.message().headers);
    let outcome = handler
        .handle(delivery.message(), attempt)
        .instrument(span)
        .await;
    let label = match &outcome {
        Ok(()) => "ack",
        Err(JobError::Retryable(_)) if attempt < max_deliveries => "retry",
        Err(_) => "dead_letter",
    };
    let settled = match outcome {
        Ok(()) => delivery.ack().await,
        Err(JobError::Retryable(e)) if attempt >= max_deliveries => {
            tracing::error!(error = %e, attempt, queue = handler.queue(), "job failed on its last allowed delivery; dead-lettering it");
            delivery.nack(false).await
        }
        Err(JobError::Retryable(e)) => {
            let wait = retry_backoff(attempt);
            tracing::warn!(error = %e, attempt, retry_in_ms = wait.as_millis() as u64, queue = handler.queue(), "job failed; it will be retried");
            delivery.retry_later(wait).await
        }
        Err(JobError::Permanent(e)) => {
            tracing::error!(error = %e, attempt, queue = handler.queue(), "job failed permanently");
            delivery.nack(false).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "settling a delivery failed; the broker will redeliver it");
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;
    use depot_core::queue::MessagePublisher;
    use depot_queue::InProcessQueue;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Flaky {
        calls: AtomicU32,
    }

    #[async_trait]
    impl JobHandler for Flaky {
        fn queue(&self) -> &'static str {
            "test.jobs"
        }
        async fn handle(&self, message: &Message, attempt: u32) -> Result<(), JobError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match (message.body.as_slice(), attempt) {
                (b"retry", 1) => Err(JobError::Retryable("first try fails".into())),
                (b"bad", _) => Err(JobError::Permanent("never".into())),
                _ => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn acks_retries_and_drops() {
        let q = InProcessQueue::new();
        let handler = Arc::new(Flaky {
            calls: AtomicU32::new(0),
        });
        let worker = Worker::new(Arc::new(q.clone()), 2, 4).register(handler.clone());
        let handle = worker.start().await.unwrap();
        for body in ["ok", "retry", "bad"] {
            q.publish("test.jobs", Message::new(body)).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), async {
            while handler.calls.load(Ordering::SeqCst) < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("ok once, retry twice, bad once");
        handle.shutdown(Duration::from_secs(2)).await;
        assert!(q.is_empty("test.jobs"));
        assert_eq!(handler.calls.load(Ordering::SeqCst), 4);
    }

    /// Holds every job until `parties` jobs run at once.
    struct Gate {
        parties: tokio::sync::Barrier,
        passed: AtomicU32,
    }

    #[async_trait]
    impl JobHandler for Gate {
        fn queue(&self) -> &'static str {
            "test.gate"
        }
        async fn handle(&self, _: &Message, _: u32) -> Result<(), JobError> {
            self.parties.wait().await;
            self.passed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_prefetch_below_the_concurrency_does_not_cap_it() {
        let q = InProcessQueue::new();
        let gate = Arc::new(Gate {
            parties: tokio::sync::Barrier::new(8),
            passed: AtomicU32::new(0),
        });
        let handle = Worker::new(Arc::new(q.clone()), 8, 2)
            .register(gate.clone())
            .start()
            .await
            .unwrap();
        for _ in 0..8 {
            q.publish("test.gate", Message::new("job")).await.unwrap();
        }
        let all_at_once = tokio::time::timeout(Duration::from_secs(5), async {
            while gate.passed.load(Ordering::SeqCst) < 8 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        handle.shutdown(Duration::from_millis(200)).await;
        assert!(
            all_at_once.is_ok(),
            "8 jobs never ran at once with a prefetch of 2"
        );
    }
}
