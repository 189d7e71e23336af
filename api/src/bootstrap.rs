//! Reads `Settings`, builds the concrete adapters and wires the services. The only module that
//! knows which adapter is in use.

use crate::settings::{QueueKind, Settings};
use anyhow::Context;
use depot_core::queue::{MessageConsumer, MessagePublisher, QueueHealth};
use depot_core::secrets::{ChainSecretStore, EnvSecretStore, FileSecretStore, SecretStore};
use depot_queue::{InProcessQueue, LapinQueue};
use depot_store::DatabaseConnection;
use std::sync::Arc;

/// The concrete adapters behind the ports.
#[derive(Clone)]
pub struct Adapters {
    pub db: DatabaseConnection,
    pub publisher: Arc<dyn MessagePublisher>,
    pub consumer: Arc<dyn MessageConsumer>,
    pub queue_health: Arc<dyn QueueHealth>,
    pub secrets: Arc<dyn SecretStore>,
    /// Set in embedded mode, so shutdown can close it.
    pub in_process_queue: Option<InProcessQueue>,
}

/// A start-up failure, with the settings key it concerns. Printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct StartupError {
    pub key: &'static str,
    pub message: String,
}

pub fn secret_store(settings: &Settings) -> Arc<dyn SecretStore> {
    let mut stores: Vec<Box<dyn SecretStore>> = vec![Box::new(EnvSecretStore::default())];
    if let Some(dir) = &settings.secrets.dir {
        stores.push(Box::new(FileSecretStore::new(dir)));
    }
    Arc::new(ChainSecretStore::new(stores))
}

pub async fn connect_database(settings: &Settings) -> Result<DatabaseConnection, StartupError> {
    depot_store::connect(&settings.database_options())
        .await
        .map_err(|e| StartupError {
            key: "database.url",
            message: format!(
                "cannot open the database ({}): {e}",
                crate::settings::redact_url(&settings.database.url)
            ),
        })
}

/// One queue adapter seen through its three ports.
struct QueuePorts {
    publisher: Arc<dyn MessagePublisher>,
    consumer: Arc<dyn MessageConsumer>,
    health: Arc<dyn QueueHealth>,
    in_process: Option<InProcessQueue>,
}

impl QueuePorts {
    fn of<Q>(q: Q, in_process: Option<InProcessQueue>) -> Self
    where
        Q: MessagePublisher + MessageConsumer + QueueHealth + Clone + 'static,
    {
        Self {
            publisher: Arc::new(q.clone()),
            consumer: Arc::new(q.clone()),
            health: Arc::new(q),
            in_process,
        }
    }
}

pub async fn build(settings: &Settings) -> Result<Adapters, StartupError> {
    let db = connect_database(settings).await?;
    if settings.auto_migrate() {
        depot_store::migrate_up(&db)
            .await
            .map_err(|e| StartupError {
                key: "database.auto_migrate",
                message: format!("migrating the database failed: {e}"),
            })?;
    }
    let queue = match settings.queue_kind() {
        QueueKind::InProcess => {
            let q = InProcessQueue::new();
            QueuePorts::of(q.clone(), Some(q))
        }
        QueueKind::Rabbitmq => {
            let url = settings.queue.amqp_url.as_deref().unwrap_or_default();
            let q = LapinQueue::connect(url, settings.queue.queue_prefix.clone())
                .await
                .map_err(|e| StartupError {
                    key: "queue.amqp_url",
                    message: format!(
                        "cannot connect to the broker ({}): {e}",
                        crate::settings::redact_url(url)
                    ),
                })?;
            QueuePorts::of(q, None)
        }
    };
    Ok(Adapters {
        db,
        publisher: queue.publisher,
        consumer: queue.consumer,
        queue_health: queue.health,
        secrets: secret_store(settings),
        in_process_queue: queue.in_process,
    })
}

/// Used by `depot migrate`: only the database, no queue.
pub async fn database_for_migrations(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect_database(settings).await.context("connecting")
}
