//! The RabbitMQ adapter, on lapin: durable queues, persistent messages, publisher confirms and
//! manual acknowledgements.

use async_trait::async_trait;
use depot_core::queue::{
    Delivery, Message, MessageConsumer, MessagePublisher, QueueError, QueueHealth, Subscription,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Header carrying how many times a message has been tried, for retries that republish.
pub const ATTEMPT_HEADER: &str = "x-depot-attempt";

fn unavailable(e: lapin::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

#[derive(Clone)]
pub struct LapinQueue {
    connection: Arc<Connection>,
    publisher: Arc<Mutex<PublisherState>>,
    /// Prefix for every queue name (tests use a unique one per test).
    prefix: String,
}

struct PublisherState {
    channel: Option<Channel>,
    declared: HashSet<String>,
}

impl LapinQueue {
    /// Connects to `url` (`amqp://user:pass@host:5672/%2f`). `prefix` is prepended to every queue name.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, QueueError> {
        let props = ConnectionProperties::default().with_connection_name("depot".into());
        let connection = Connection::connect(url, props).await.map_err(unavailable)?;
        Ok(Self {
            connection: Arc::new(connection),
            publisher: Arc::new(Mutex::new(PublisherState {
                channel: None,
                declared: HashSet::new(),
            })),
            prefix: prefix.into(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_name(&self, queue: &str) -> String {
        format!("{}{}", self.prefix, queue)
    }

    async fn declare(channel: &Channel, name: &str) -> Result<(), QueueError> {
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Deletes a queue; used by tests to clean up their unique queues.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), QueueError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        channel
            .queue_delete(self.full_name(queue).as_str().into(), Default::default())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self.connection.close(200, "bye".into()).await;
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
        let mut state = self.publisher.lock().await;
        let reusable = state
            .channel
            .as_ref()
            .is_some_and(|c| c.status().connected());
        if !reusable {
            let channel = self
                .connection
                .create_channel()
                .await
                .map_err(unavailable)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            state.channel = Some(channel);
            state.declared.clear();
        }
        let channel = state.channel.clone().expect("set above");
        if !state.declared.contains(&name) {
            Self::declare(&channel, &name).await?;
            state.declared.insert(name.clone());
        }
        // Publish under the lock (ordering), then wait for the confirm outside it.
        let confirm = channel
            .basic_publish(
                "".into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                &message.body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers_to_table(&message.headers)),
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
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        Self::declare(&channel, &name).await?;
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
            _channel: channel,
            consumer,
        }))
    }
}

#[async_trait]
impl QueueHealth for LapinQueue {
    async fn check(&self) -> Result<(), QueueError> {
        if self.connection.status().connected() {
            Ok(())
        } else {
            Err(QueueError::Unavailable(
                "the connection to the broker is closed".into(),
            ))
        }
    }
}

struct LapinSubscription {
    _channel: Channel,
    consumer: lapin::Consumer,
}

#[async_trait]
impl Subscription for LapinSubscription {
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
        })))
    }
}

struct LapinDelivery {
    message: Message,
    attempt: u32,
    acker: lapin::Acker,
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
}
