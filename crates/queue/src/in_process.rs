//! The in-process queue: named FIFO queues in memory, competing consumers, at-least-once
//! delivery inside one process. An unsettled delivery that is dropped goes back to the front of
//! its queue, as a broker would redeliver it after a consumer crash.
//!
//! Nothing survives a restart: this is the embedded mode's queue. Durable work is protected by the
//! database (outbox) instead.

use async_trait::async_trait;
use depot_core::queue::{
    Delivery, Message, MessageConsumer, MessagePublisher, QueueError, QueueHealth, Subscription,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Default)]
pub struct InProcessQueue {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<String, Arc<NamedQueue>>>,
    closed: AtomicBool,
}

#[derive(Default)]
struct NamedQueue {
    items: Mutex<VecDeque<Entry>>,
    notify: Notify,
    closed: AtomicBool,
}

struct Entry {
    message: Message,
    attempt: u32,
}

impl NamedQueue {
    fn push_back(&self, entry: Entry) {
        self.items.lock().expect("queue lock").push_back(entry);
        self.notify.notify_one();
    }

    fn push_front(&self, entry: Entry) {
        self.items.lock().expect("queue lock").push_front(entry);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Entry> {
        self.items.lock().expect("queue lock").pop_front()
    }
}

impl InProcessQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, name: &str) -> Arc<NamedQueue> {
        let mut queues = self.inner.queues.lock().expect("queues lock");
        queues.entry(name.to_owned()).or_default().clone()
    }

    /// Messages waiting (not delivered) in `queue`.
    pub fn len(&self, queue: &str) -> usize {
        self.queue(queue).items.lock().expect("queue lock").len()
    }

    pub fn is_empty(&self, queue: &str) -> bool {
        self.len(queue) == 0
    }

    /// Stops all subscriptions (they answer `None`) and refuses further publishes.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        for q in self.inner.queues.lock().expect("queues lock").values() {
            q.closed.store(true, Ordering::SeqCst);
            q.notify.notify_waiters();
        }
    }
}

#[async_trait]
impl MessagePublisher for InProcessQueue {
    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        self.queue(queue).push_back(Entry {
            message,
            attempt: 1,
        });
        Ok(())
    }
}

#[async_trait]
impl MessageConsumer for InProcessQueue {
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, QueueError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        Ok(Box::new(InProcessSubscription {
            queue: self.queue(queue),
            permits: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }))
    }
}

#[async_trait]
impl QueueHealth for InProcessQueue {
    async fn check(&self) -> Result<(), QueueError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }
}

struct InProcessSubscription {
    queue: Arc<NamedQueue>,
    permits: Arc<Semaphore>,
}

#[async_trait]
impl Subscription for InProcessSubscription {
    async fn next(&mut self) -> Option<Result<Box<dyn Delivery>, QueueError>> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queue.closed.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(entry) = self.queue.pop() {
                return Some(Ok(Box::new(InProcessDelivery {
                    queue: self.queue.clone(),
                    entry: Some(entry),
                    _permit: permit,
                })));
            }
            notified.await;
        }
    }
}

struct InProcessDelivery {
    queue: Arc<NamedQueue>,
    /// `Some` until settled.
    entry: Option<Entry>,
    _permit: OwnedSemaphorePermit,
}

impl InProcessDelivery {
    fn requeue(&mut self, front: bool) {
        if let Some(mut entry) = self.entry.take() {
            entry.attempt += 1;
            if front {
                self.queue.push_front(entry);
            } else {
                self.queue.push_back(entry);
            }
        }
    }
}

#[async_trait]
impl Delivery for InProcessDelivery {
    fn message(&self) -> &Message {
        &self.entry.as_ref().expect("an unsettled delivery").message
    }

    fn attempt(&self) -> u32 {
        self.entry.as_ref().map_or(0, |e| e.attempt)
    }

    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.entry = None;
        Ok(())
    }

    async fn retry_later(
        mut self: Box<Self>,
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        if let Some(mut entry) = self.entry.take() {
            entry.attempt += 1;
            let queue = self.queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if !queue.closed.load(Ordering::SeqCst) {
                    queue.push_back(entry);
                }
            });
        }
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), QueueError> {
        if requeue {
            self.requeue(false);
        } else if let Some(entry) = self.entry.take() {
            tracing::warn!(
                attempt = entry.attempt,
                "message dropped after a negative acknowledgement (the in-process queue has no dead-letter queue)"
            );
        }
        Ok(())
    }
}

impl Drop for InProcessDelivery {
    fn drop(&mut self) {
        // Neither acked nor nacked: the consumer went away mid-work. Redeliver first.
        self.requeue(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    async fn next(sub: &mut Box<dyn Subscription>) -> Box<dyn Delivery> {
        timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("ok")
    }

    #[tokio::test]
    async fn delivers_in_order_and_ack_removes() {
        let q = InProcessQueue::new();
        let mut sub = q.subscribe("jobs", 10).await.unwrap();
        for i in 0..3u8 {
            q.publish("jobs", Message::new(vec![i])).await.unwrap();
        }
        for i in 0..3u8 {
            let d = next(&mut sub).await;
            assert_eq!(d.message().body, vec![i]);
            assert_eq!(d.attempt(), 1);
            d.ack().await.unwrap();
        }
        assert!(q.is_empty("jobs"));
    }

    #[tokio::test]
    async fn waits_for_messages_published_later() {
        let q = InProcessQueue::new();
        let mut sub = q.subscribe("jobs", 1).await.unwrap();
        let q2 = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            q2.publish("jobs", Message::new("late")).await.unwrap();
        });
        let d = next(&mut sub).await;
        assert_eq!(d.message().body, b"late");
    }

    #[tokio::test]
    async fn nack_requeue_and_drop_redeliver_with_a_higher_attempt() {
        let q = InProcessQueue::new();
        let mut sub = q.subscribe("jobs", 5).await.unwrap();
        q.publish("jobs", Message::new("a")).await.unwrap();
        let d = next(&mut sub).await;
        d.nack(true).await.unwrap();
        let d = next(&mut sub).await;
        assert_eq!(d.attempt(), 2);
        drop(d);
        let d = next(&mut sub).await;
        assert_eq!(d.attempt(), 3);
        d.nack(false).await.unwrap();
        assert!(q.is_empty("jobs"));
    }

    #[tokio::test]
    async fn retry_later_redelivers_after_the_delay() {
        let q = InProcessQueue::new();
        let mut sub = q.subscribe("jobs", 5).await.unwrap();
        q.publish("jobs", Message::new("a")).await.unwrap();
        let d = next(&mut sub).await;
        let started = std::time::Instant::now();
        d.retry_later(Duration::from_millis(100)).await.unwrap();
        let d = next(&mut sub).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(d.attempt(), 2);
        d.ack().await.unwrap();
    }

    #[tokio::test]
    async fn prefetch_bounds_unsettled_deliveries() {
        let q = InProcessQueue::new();
        let mut sub = q.subscribe("jobs", 1).await.unwrap();
        q.publish("jobs", Message::new("a")).await.unwrap();
        q.publish("jobs", Message::new("b")).await.unwrap();
        let first = next(&mut sub).await;
        assert!(
            timeout(Duration::from_millis(100), sub.next())
                .await
                .is_err(),
            "a second delivery while the first is unsettled"
        );
        first.ack().await.unwrap();
        assert_eq!(next(&mut sub).await.message().body, b"b");
    }

    #[tokio::test]
    async fn competing_consumers_share_the_work_exactly_once() {
        let q = InProcessQueue::new();
        let n = 200u32;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let mut sub = q.subscribe("jobs", 2).await.unwrap();
            let seen = seen.clone();
            workers.push(tokio::spawn(async move {
                while let Some(Ok(d)) = sub.next().await {
                    seen.lock().unwrap().push(d.message().body.clone());
                    d.ack().await.unwrap();
                }
            }));
        }
        for i in 0..n {
            q.publish("jobs", Message::new(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        timeout(Duration::from_secs(5), async {
            while seen.lock().unwrap().len() < n as usize {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        q.close();
        for w in workers {
            timeout(Duration::from_secs(2), w).await.unwrap().unwrap();
        }
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), n as usize);
        assert!(q.publish("jobs", Message::new("x")).await.is_err());
        assert!(q.check().await.is_err());
    }
}
