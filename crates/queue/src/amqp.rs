//! The RabbitMQ adapter, on lapin: durable queues, persistent messages, publisher confirms,
//! manual acknowledgements, retries through a delay queue, a dead-letter queue, and reconnection
//! when the broker goes away.
//!
//! For a queue `q` (after the prefix) three queues are declared:
//! * `q`: the work queue; rejected messages (`nack` without requeue) dead-letter to `q.dead`;
//! * `q.retry`: holds a message for its retry delay (per-message expiry), then dead-letters it
//!   back to `q`;
//! * `q.dead`: messages that failed for good, kept for an operator to inspect.

use async_trait::async_trait;
use depot_core::queue::{
    Delivery, Message, MessageConsumer, MessagePublisher, QueueError, QueueHealth, Subscription,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Header carrying how many times a message has been tried.
pub const ATTEMPT_HEADER: &str = "x-depot-attempt";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn unavailable(e: lapin::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

#[derive(Clone)]
pub struct LapinQueue {
    url: Arc<str>,
    /// Prefix for every queue name (tests use a unique one per test).
    prefix: String,
    state: Arc<Mutex<ConnState>>,
}

#[derive(Default)]
struct ConnState {
    connection: Option<Arc<Connection>>,
    /// The confirm-mode channel publishes go through.
    publisher: Option<Channel>,
    declared: HashSet<String>,
}

impl LapinQueue {
    /// Connects to `url` (`amqp://user:pass@host:5672/%2f`). `prefix` is prepended to every queue
    /// name. Fails when the broker cannot be reached now; later outages are survived by
    /// reconnecting.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, QueueError> {
        let queue = Self {
            url: url.into(),
            prefix: prefix.into(),
            state: Arc::new(Mutex::new(ConnState::default())),
        };
        queue.connection().await?;
        Ok(queue)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_name(&self, queue: &str) -> String {
        format!("{}{}", self.prefix, queue)
    }

    /// The live connection, reconnecting when the last one was lost.
    async fn connection(&self) -> Result<Arc<Connection>, QueueError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.connection
            && c.status().connected()
        {
            return Ok(c.clone());
        }
        let props = ConnectionProperties::default().with_connection_name("depot".into());
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, props))
                .await
                .map_err(|_| QueueError::Unavailable("connecting to the broker timed out".into()))?
                .map_err(unavailable)?;
        if state.connection.is_some() {
            tracing::info!("reconnected to the message broker");
        }
        let connection = Arc::new(connection);
        state.connection = Some(connection.clone());
        state.publisher = None;
        state.declared.clear();
        Ok(connection)
    }

    async fn declare_all(channel: &Channel, name: &str) -> Result<(), QueueError> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let dead_letter_to = |target: &str| {
            let mut args = FieldTable::default();
            args.insert(
                ShortString::from("x-dead-letter-exchange"),
                AMQPValue::LongString(LongString::from(String::new())),
            );
            args.insert(
                ShortString::from("x-dead-letter-routing-key"),
                AMQPValue::LongString(LongString::from(target.to_owned())),
            );
            args
        };
        channel
            .queue_declare(
                format!("{name}.dead").as_str().into(),
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        channel
            .queue_declare(
                format!("{name}.retry").as_str().into(),
                durable,
                dead_letter_to(name),
            )
            .await
            .map_err(unavailable)?;
        channel
            .queue_declare(
                name.into(),
                durable,
                dead_letter_to(&format!("{name}.dead")),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Publishes to a full queue name with a confirm; `expiration_ms` for the retry queue.
    async fn publish_raw(
        &self,
        name: &str,
        message: &Message,
        expiration_ms: Option<u64>,
    ) -> Result<(), QueueError> {
        let connection = self.connection().await?;
        let mut state = self.state.lock().await;
        let reusable = state
            .publisher
            .as_ref()
            .is_some_and(|c| c.status().connected());
        if !reusable {
            let channel = connection.create_channel().await.map_err(unavailable)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            state.publisher = Some(channel);
        }
        let channel = state.publisher.clone().expect("set above");
        let base = name
            .trim_end_matches(".retry")
            .trim_end_matches(".dead")
            .to_owned();
        if !state.declared.contains(&base) {
            Self::declare_all(&channel, &base).await?;
            state.declared.insert(base);
        }
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers_to_table(&message.headers));
        if let Some(ms) = expiration_ms {
            props = props.with_expiration(ms.to_string().into());
        }
        // Publish under the lock (ordering), then wait for the confirm outside it.
        let confirm = channel
            .basic_publish(
                "".into(),
                name.into(),
                BasicPublishOptions::default(),
                &message.body,
                props,
            )
            .await
            .map_err(unavailable)?;
        drop(state);
        let confirmation = confirm.await.map_err(unavailable)?;
        if confirmation.is_nack() {
            return Err(QueueError::Rejected);
        }
        Ok(())
    }

    /// Deletes a queue with its retry and dead-letter queues (tests clean up their unique ones).
    pub async fn delete_queue(&self, queue: &str) -> Result<(), QueueError> {
        let channel = self
            .connection()
            .await?
            .create_channel()
            .await
            .map_err(unavailable)?;
        let name = self.full_name(queue);
        for n in [
            name.clone(),
            format!("{name}.retry"),
            format!("{name}.dead"),
        ] {
            channel
                .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Messages waiting in the dead-letter queue of `queue`.
    pub async fn dead_letters(&self, queue: &str) -> Result<u32, QueueError> {
        let channel = self
            .connection()
            .await?
            .create_channel()
            .await
            .map_err(unavailable)?;
        let q = channel
            .queue_declare(
                format!("{}.dead", self.full_name(queue)).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(q.message_count())
    }

    pub async fn close(&self) {
        let connection = self.state.lock().await.connection.take();
        if let Some(c) = connection {
            let _ = c.close(200, "bye".into()).await;
        }
    }
}

fn headers_to_table(headers: &BTreeMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.clone())),
        );
    }
    table
}

fn table_to_headers(table: Option<&FieldTable>) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    if let Some(table) = table {
        for (k, v) in table.inner() {
            if let AMQPValue::LongString(s) = v {
                headers.insert(
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                );
            }
        }
    }
    headers
}

#[async_trait]
impl MessagePublisher for LapinQueue {
    #[tracing::instrument(skip_all, fields(queue))]
    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        let name = self.full_name(queue);
        let result = self.publish_raw(&name, &message, None).await;
        if let Err(QueueError::Unavailable(_)) = &result {
            // Drop the broken channel so the next publish opens a fresh one.
            self.state.lock().await.publisher = None;
        }
        result
    }
}

#[async_trait]
impl MessageConsumer for LapinQueue {
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, QueueError> {
        let name = self.full_name(queue);
        let channel = self
            .connection()
            .await?
            .create_channel()
            .await
            .map_err(unavailable)?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        Self::declare_all(&channel, &name).await?;
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(Box::new(LapinSubscription {
            queue: self.clone(),
            name,
            _channel: channel,
            consumer,
        }))
    }
}

#[async_trait]
impl QueueHealth for LapinQueue {
    async fn check(&self) -> Result<(), QueueError> {
        self.connection().await.map(|_| ())
    }
}

struct LapinSubscription {
    queue: LapinQueue,
    name: String,
    _channel: Channel,
    consumer: lapin::Consumer,
}

#[async_trait]
impl Subscription for LapinSubscription {
    /// `None` when the channel or connection closed: the caller subscribes again.
    async fn next(&mut self) -> Option<Result<Box<dyn Delivery>, QueueError>> {
        let delivery = match self.consumer.next().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(unavailable(e))),
        };
        let headers = table_to_headers(delivery.properties.headers().as_ref());
        let base: u32 = headers
            .get(ATTEMPT_HEADER)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        let attempt = if delivery.redelivered { base + 1 } else { base };
        Some(Ok(Box::new(LapinDelivery {
            message: Message {
                body: delivery.data,
                headers,
            },
            attempt,
            acker: delivery.acker,
            queue: self.queue.clone(),
            name: self.name.clone(),
        })))
    }
}

struct LapinDelivery {
    message: Message,
    attempt: u32,
    acker: lapin::Acker,
    queue: LapinQueue,
    name: String,
}

#[async_trait]
impl Delivery for LapinDelivery {
    fn message(&self) -> &Message {
        &self.message
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), QueueError> {
        self.acker
            .nack(BasicNackOptions {
                requeue,
                ..BasicNackOptions::default()
            })
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Publishes a copy (attempt + 1) to the retry queue, which returns it after `delay`, then
    /// acknowledges this delivery. If the copy cannot be published the delivery is requeued.
    async fn retry_later(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        let mut copy = self.message.clone();
        copy.headers
            .insert(ATTEMPT_HEADER.into(), (self.attempt + 1).to_string());
        let retry_queue = format!("{}.retry", self.name);
        match self
            .queue
            .publish_raw(&retry_queue, &copy, Some(delay.as_millis().max(1) as u64))
            .await
        {
            Ok(()) => self.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "scheduling a retry failed; requeueing instead");
                self.nack(true).await
            }
        }
    }
}
