//! Reads `Settings`, builds the concrete adapters and wires the services. The only module that
//! knows which adapter is in use.

use crate::settings::{QueueKind, Settings};
use anyhow::Context;
use depot_accounts::{AccountService, PasswordHasher, TokenIssuer, TokenSettings};
use depot_api_keys::{ApiKeyService, Verifier};
use depot_core::queue::{MessageConsumer, MessagePublisher, QueueHealth};
use depot_core::secrets::ExposeSecret;
use depot_core::secrets::{
    ChainSecretStore, EnvSecretStore, FileSecretStore, SecretStore, SecretString,
};
use depot_core::{Clock, SystemClock};
use depot_packages::PackageService;
use depot_packages::cache::{Cached, PackageCache};
use depot_packages::executor::{Executor, SimulatedExecutor};
use depot_packages::ports::{OperationRepository, PackageRepository};
use depot_packages::relay::OutboxRelay;
use depot_packages::runner::OperationRunner;
use depot_packages::watch::OperationWatch;
use depot_queue::{InProcessQueue, LapinQueue};
use depot_store::DatabaseConnection;
use depot_store::{SeaOrmAccountRepository, SeaOrmApiKeyRepository, SeaOrmPackageRepository};
use std::sync::Arc;
use tokio::sync::Notify;

/// The concrete adapters behind the ports.
#[derive(Clone)]
pub struct Adapters {
    pub db: DatabaseConnection,
    pub publisher: Arc<dyn MessagePublisher>,
    pub consumer: Arc<dyn MessageConsumer>,
    pub queue_health: Arc<dyn QueueHealth>,
    pub secrets: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<crate::http::metrics::Metrics>,
    /// Set in embedded mode, so shutdown can close it.
    pub in_process_queue: Option<InProcessQueue>,
    /// The package read cache: only when this process is the database's only writer (SQLite
    /// with the in-process queue and the embedded worker) and `packages.read_cache` is on.
    pub package_cache: Option<Arc<PackageCache>>,
    /// Follows operations for this process's event streams; an embedded worker pushes final
    /// states into it.
    pub operation_watch: Arc<OperationWatch>,
    /// The egress policy every outbound client is built with (downloads, OIDC).
    pub egress: crate::http::egress::Egress,
    /// Where artifacts are kept (`[artifacts]`): uploads, downloads and serving share it.
    pub artifacts: Arc<dyn depot_packages::artifacts::ArtifactStore>,
    /// The filesystem adapter's directory (`artifacts.url = file://…`), where the http
    /// executor also keeps its `active/` links; `None` with object storage.
    pub artifacts_dir: Option<std::path::PathBuf>,
}

/// The package and operation ports, through the read cache when there is one.
pub fn package_ports(
    adapters: &Adapters,
) -> (Arc<dyn PackageRepository>, Arc<dyn OperationRepository>) {
    let repo = Arc::new(SeaOrmPackageRepository::new(adapters.db.clone()));
    match &adapters.package_cache {
        Some(cache) => {
            let cached = Arc::new(Cached::new(repo, cache.clone()));
            (cached.clone(), cached)
        }
        None => (repo.clone(), repo),
    }
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
    let single_writer = settings.backend() == depot_store::Backend::Sqlite
        && queue.in_process.is_some()
        && settings.worker.embedded;
    let package_cache = (settings.packages.read_cache && single_writer)
        .then(|| Arc::new(PackageCache::new(10_000, 256)));
    let operation_watch = Arc::new(OperationWatch::new(
        Arc::new(SeaOrmPackageRepository::new(db.clone())),
        std::time::Duration::from_millis(settings.operations.watch_interval_ms),
    ));
    let (artifacts, artifacts_dir) = artifact_store(settings).await?;
    Ok(Adapters {
        artifacts,
        artifacts_dir,
        package_cache,
        operation_watch,
        db,
        publisher: queue.publisher,
        consumer: queue.consumer,
        queue_health: queue.health,
        secrets: secret_store(settings),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(crate::http::metrics::Metrics::new()),
        in_process_queue: queue.in_process,
        egress: egress(settings)?,
    })
}

/// The artifact store `[artifacts]` names: the filesystem (the embedded default) or an
/// S3-compatible bucket (checked to answer before Depot starts), and the filesystem's directory.
pub async fn artifact_store(
    settings: &Settings,
) -> Result<
    (
        Arc<dyn depot_packages::artifacts::ArtifactStore>,
        Option<std::path::PathBuf>,
    ),
    StartupError,
> {
    use crate::packages::settings::ArtifactLocation;
    let fail = |key: &'static str| move |message: String| StartupError { key, message };
    let location = settings
        .artifacts
        .location(&settings.executor)
        .map_err(|e| StartupError {
            key: "artifacts.url",
            message: e.problem,
        })?;
    match location {
        ArtifactLocation::Dir(dir) => {
            let store = crate::packages::artifacts::FsArtifacts::new(&dir)
                .map_err(fail("artifacts.url"))?;
            let dir = store.root().to_owned();
            Ok((Arc::new(store), Some(dir)))
        }
        ArtifactLocation::S3 { bucket, prefix } => {
            let secrets = secret_store(settings);
            let secret = async |name: &str| {
                secrets.get(name).await.map_err(|e| StartupError {
                    key: "artifacts.url",
                    message: format!("reading the secret {name}: {e}"),
                })
            };
            let access_key_id = secret("s3_access_key_id").await?.map(|s| {
                use secrecy::ExposeSecret;
                s.expose_secret().to_owned()
            });
            let secret_access_key = secret("s3_secret_access_key").await?;
            let a = &settings.artifacts;
            let store = crate::packages::s3::S3Artifacts::new(crate::packages::s3::S3Config {
                bucket,
                prefix,
                endpoint: a.s3_endpoint.clone(),
                region: a.s3_region.clone(),
                allow_http: a.s3_allow_http,
                access_key_id,
                secret_access_key,
            })
            .map_err(fail("artifacts.url"))?;
            store.check().await.map_err(fail("artifacts.url"))?;
            Ok((Arc::new(store), None))
        }
    }
}

/// `artifacts.max_bytes` (or its old name), validated at start-up.
pub fn max_artifact_bytes(settings: &Settings) -> u64 {
    settings
        .artifacts
        .max_bytes(&settings.executor)
        .expect("validated with the settings")
}

/// The egress policy from `[egress]`, with the system resolver.
pub fn egress(settings: &Settings) -> Result<crate::http::egress::Egress, StartupError> {
    let policy = settings.egress.policy().map_err(|e| StartupError {
        key: "egress.allowed_networks",
        message: e.problem,
    })?;
    Ok(crate::http::egress::Egress::new(policy))
}

/// The components' services, wired to the adapters.
pub struct Services {
    pub api_keys: Arc<ApiKeyService>,
    pub verifier: Arc<Verifier>,
    pub admin_secret: SecretString,
    pub packages: Arc<PackageService>,
    pub relay: Arc<OutboxRelay>,
    pub accounts: Arc<AccountService>,
    pub pending_logins: Arc<dyn depot_accounts::PendingLoginRepository>,
    pub oidc: Option<Arc<crate::accounts::oidc::OidcClient>>,
}

/// The access-token signer: the secret `jwt_signing_key` (Ed25519, PKCS#8 PEM), or an ephemeral
/// key generated now (tokens then die with the process and other replicas refuse them).
pub async fn token_issuer(
    settings: &Settings,
    secrets: &dyn SecretStore,
) -> Result<TokenIssuer, StartupError> {
    let key_error = |message: String| StartupError {
        key: "secrets.jwt_signing_key",
        message,
    };
    let pem = match secrets.get("jwt_signing_key").await {
        Ok(Some(pem)) => pem.expose_secret().replace("\\n", "\n"),
        Ok(None) => {
            tracing::warn!(
                "no jwt_signing_key is configured: generated an ephemeral signing key. Access \
                 tokens will not survive a restart and other replicas will refuse them \
                 (clients just refresh); configure DEPOT_JWT_SIGNING_KEY for production"
            );
            depot_accounts::tokens::generate_ed25519_pem()
        }
        Err(e) => return Err(key_error(e.to_string())),
    };
    let a = &settings.accounts;
    let issuer = TokenIssuer::from_pem(
        &pem,
        TokenSettings {
            issuer: a.token_issuer.clone(),
            audience: a.token_audience.clone(),
            access_ttl: chrono::Duration::minutes(a.access_token_minutes),
        },
    )
    .map_err(|e| key_error(e.to_string()))?;
    // A key rotation: the previous key's tokens stay valid until they expire.
    let previous_error = |message: String| StartupError {
        key: "secrets.jwt_previous_signing_key",
        message,
    };
    match secrets.get("jwt_previous_signing_key").await {
        Ok(Some(previous)) => issuer
            .with_previous(&previous.expose_secret().replace("\\n", "\n"))
            .map_err(|e| previous_error(e.to_string())),
        Ok(None) => Ok(issuer),
        Err(e) => Err(previous_error(e.to_string())),
    }
}

/// The account service on the database, without the queue (also used by `depot users`).
pub async fn account_service(
    settings: &Settings,
    db: &DatabaseConnection,
    secrets: &dyn SecretStore,
    clock: Arc<dyn Clock>,
) -> Result<AccountService, StartupError> {
    let a = &settings.accounts;
    let hasher = PasswordHasher::new(a.argon(), a.hash_budgets()).map_err(|e| StartupError {
        key: "accounts.argon2_memory_kib",
        message: e.to_string(),
    })?;
    hasher.warm_up().await.map_err(|e| StartupError {
        key: "accounts.argon2_memory_kib",
        message: e.to_string(),
    })?;
    let repo = Arc::new(SeaOrmAccountRepository::new(db.clone()));
    Ok(AccountService::new(
        repo.clone(),
        repo.clone(),
        repo,
        Arc::new(hasher),
        Arc::new(token_issuer(settings, secrets).await?),
        clock,
        a.service(),
    ))
}

async fn oidc_client(
    settings: &Settings,
    secrets: &dyn SecretStore,
    egress: &crate::http::egress::Egress,
) -> Result<Option<Arc<crate::accounts::oidc::OidcClient>>, StartupError> {
    if !settings.oidc.enabled() {
        return Ok(None);
    }
    let secret = secrets
        .get("oidc_client_secret")
        .await
        .map_err(|e| StartupError {
            key: "secrets.oidc_client_secret",
            message: e.to_string(),
        })?;
    crate::accounts::oidc::OidcClient::new(&settings.oidc, secret, egress)
        .map(Arc::new)
        .map(Some)
        .ok_or(StartupError {
            key: "oidc",
            message: "cannot build the HTTP client for the identity provider".into(),
        })
}

/// The executor the configuration names.
pub fn executor(
    settings: &Settings,
    adapters: &Adapters,
) -> Result<Arc<dyn Executor>, StartupError> {
    let x = &settings.executor;
    Ok(match x.kind {
        crate::settings::ExecutorKind::Simulated => Arc::new(SimulatedExecutor {
            duration: std::time::Duration::from_millis(x.simulated_duration_ms),
            steps: x.simulated_steps,
            failure_rate: x.simulated_failure_rate,
        }),
        crate::settings::ExecutorKind::Http => Arc::new(
            crate::packages::executor::HttpExecutor::new(
                crate::packages::executor::Storage {
                    artifacts: adapters.artifacts.clone(),
                    links: adapters.artifacts_dir.clone(),
                    packages: package_ports(adapters).0,
                    trust: trust(settings)?,
                },
                std::time::Duration::from_secs(x.http_timeout_seconds),
                max_artifact_bytes(settings),
                &adapters.egress,
            )
            .map_err(|e| StartupError {
                key: "artifacts.url",
                message: e,
            })?,
        ),
    })
}

/// What a worker runs: operations, through the configured executor.
pub fn operation_runner(
    settings: &Settings,
    adapters: &Adapters,
) -> Result<Arc<OperationRunner>, StartupError> {
    let (_, operations) = package_ports(adapters);
    Ok(Arc::new(
        OperationRunner::new(
            operations,
            executor(settings, adapters)?,
            adapters.clock.clone(),
            settings.operations.max_attempts,
        )
        .with_lease(settings.operations.lease())
        .with_names(Arc::new(SeaOrmPackageRepository::new(adapters.db.clone())))
        .with_artifacts(adapters.artifacts.clone())
        .with_keep_versions(settings.packages.keep_versions)
        .with_signatures(depot_packages::runner::SignatureGate {
            trust: trust(settings)?,
            artifacts: adapters.artifacts.clone(),
            packages: package_ports(adapters).0,
        }),
    ))
}

/// The keys trusted for signatures (`packages.trusted_keys`, `packages.require_signatures`).
pub fn trust(settings: &Settings) -> Result<Arc<depot_packages::signature::Trust>, StartupError> {
    settings
        .packages
        .trust()
        .map(Arc::new)
        .map_err(|e| StartupError {
            key: "packages.trusted_keys",
            message: e.to_string(),
        })
}

/// The admin secret from the secret store; when none is configured, a strong one is generated
/// and printed once to standard error (never to the structured log).
/// The shortest admin secret Depot starts with: the operator's credential must not be guessable
/// (`a` used to work).
pub const MIN_ADMIN_SECRET_CHARS: usize = 32;

pub async fn admin_secret(secrets: &dyn SecretStore) -> Result<SecretString, StartupError> {
    match secrets.get("admin_secret").await {
        Ok(Some(secret)) if secret.expose_secret().chars().count() < MIN_ADMIN_SECRET_CHARS => {
            Err(StartupError {
                key: "secrets.admin_secret",
                message: format!(
                    "the admin secret (DEPOT_ADMIN_SECRET, or the file admin_secret in \
                     secrets.dir) must have at least {MIN_ADMIN_SECRET_CHARS} characters; \
                     generate one with `openssl rand -base64 32`"
                ),
            })
        }
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => {
            let generated = depot_api_keys::generate_secret();
            eprintln!(
                "WARNING: no admin secret is configured (DEPOT_ADMIN_SECRET, or the file admin_secret \
                 in secrets.dir). Generated one for this process only:\n\n    {generated}\n\n\
                 Configure a permanent one before relying on it."
            );
            Ok(SecretString::from(generated))
        }
        Err(e) => Err(StartupError {
            key: "secrets",
            message: e.to_string(),
        }),
    }
}

pub async fn services(settings: &Settings, adapters: &Adapters) -> Result<Services, StartupError> {
    let repo = Arc::new(SeaOrmApiKeyRepository::new(adapters.db.clone()));
    let verifier = Arc::new(Verifier::new(
        repo.clone(),
        adapters.clock.clone(),
        settings.api_keys.verifier(),
    ));
    let api_keys = Arc::new(ApiKeyService::new(
        repo.clone(),
        repo,
        adapters.clock.clone(),
        verifier.clone(),
        settings.api_keys.default_lifetime_days,
    ));
    let packages_repo = Arc::new(SeaOrmPackageRepository::new(adapters.db.clone()));
    let wakeup = Arc::new(Notify::new());
    let (package_port, operation_port) = package_ports(adapters);
    let packages = Arc::new(
        PackageService::new(
            package_port,
            operation_port,
            packages_repo.clone(),
            adapters.clock.clone(),
            wakeup.clone(),
        )
        .with_lease(
            chrono::Duration::from_std(settings.operations.lease())
                .unwrap_or(depot_packages::service::DEFAULT_LEASE),
        )
        .with_artifacts(adapters.artifacts.clone(), max_artifact_bytes(settings))
        .with_keep_versions(settings.packages.keep_versions)
        .with_trust(trust(settings)?),
    );
    let relay = Arc::new(OutboxRelay::new(
        packages_repo,
        adapters.publisher.clone(),
        adapters.clock.clone(),
        wakeup,
        std::time::Duration::from_millis(settings.operations.relay_interval_ms),
    ));
    let accounts = Arc::new(
        account_service(
            settings,
            &adapters.db,
            adapters.secrets.as_ref(),
            adapters.clock.clone(),
        )
        .await?,
    );
    Ok(Services {
        api_keys,
        verifier,
        admin_secret: admin_secret(adapters.secrets.as_ref()).await?,
        packages,
        relay,
        accounts,
        pending_logins: Arc::new(SeaOrmAccountRepository::new(adapters.db.clone())),
        oidc: oidc_client(settings, adapters.secrets.as_ref(), &adapters.egress).await?,
    })
}

/// Used by `depot migrate`: only the database, no queue.
pub async fn database_for_migrations(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect_database(settings).await.context("connecting")
}

/// At start-up, with the http executor: reports (never repairs) where the database and the
/// storage directory disagree, as `depot fsck` would.
pub fn report_drift(settings: &Settings, adapters: &Adapters) {
    let executor_files = settings.executor.kind == crate::settings::ExecutorKind::Http;
    // (Object storage is not checked: fsck compares a directory.)
    let Some(storage) = adapters.artifacts_dir.clone() else {
        return;
    };
    let db = adapters.db.clone();
    tokio::spawn(async move {
        match crate::packages::fsck::check(&db, &storage, false, executor_files).await {
            Ok(report) if report.drift.is_empty() => {}
            Ok(report) => {
                for drift in report.drift.iter().take(20) {
                    tracing::warn!(%drift, "the database and the disk disagree");
                }
                tracing::warn!(
                    disagreements = report.drift.len(),
                    "run `depot fsck` to see them all, `depot fsck --repair` to fix them"
                );
            }
            Err(e) => tracing::warn!(error = %e, "checking the storage directory failed"),
        }
    });
}

/// Ends the running operations whose worker stopped renewing their lease (died, or lost its
/// message): failed `abandoned`, or cancelled when that was asked. Runs in every `depot serve`,
/// every half lease (at most every minute); ending an operation twice is impossible, so several
/// reapers do no harm.
pub async fn reaper(
    settings: Settings,
    adapters: Adapters,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (_, operations) = package_ports(&adapters);
    let lease = settings.operations.lease();
    let every = (lease / 2).min(std::time::Duration::from_secs(60));
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let now = adapters.clock.now();
        match operations.reap(now - lease, now).await {
            Ok(reaped) => {
                for op in &reaped {
                    tracing::warn!(operation_id = %op.id, status = op.status.as_str(), "an abandoned operation was ended");
                    adapters.operation_watch.observe(op);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reaping abandoned operations failed"),
        }
    }
}

/// Hourly housekeeping: finished operations past `operations.retention_hours`, expired
/// idempotency keys, expired refresh tokens and login throttles. Runs until `stop`.
pub async fn maintenance(
    settings: Settings,
    adapters: Adapters,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use depot_core::idempotency::IdempotencyStore;
    use depot_packages::ports::OperationRepository;
    let packages = SeaOrmPackageRepository::new(adapters.db.clone());
    let idempotency = depot_store::SeaOrmIdempotencyStore::new(adapters.db.clone());
    let accounts = SeaOrmAccountRepository::new(adapters.db.clone());
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let now = adapters.clock.now();
        let retention = chrono::Duration::hours(settings.operations.retention_hours);
        let results = [
            ("operations", packages.purge_finished(now - retention).await),
            ("idempotency keys", idempotency.purge(now).await),
            (
                "refresh tokens and login throttles",
                accounts.purge_expired_state(now).await,
            ),
        ];
        for (what, result) in results {
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, what, "purged"),
                Err(e) => tracing::warn!(error = %e, what, "purging failed"),
            }
        }
        if settings.packages.keep_versions > 0 {
            match prune_past_retention(&packages, settings.packages.keep_versions, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(names = n, "retention: prunes started"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    }
}

/// Retention's pass: starts a prune (keeping `keep`) of each name that has something to
/// prune; returns how many started. A name with a prune under way (another replica's) is
/// skipped.
pub async fn prune_past_retention(
    packages: &SeaOrmPackageRepository,
    keep: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, depot_core::RepoError> {
    use depot_packages::ports::{OperationRepository, StartError};
    let mut started = 0;
    let mut after: Option<String> = None;
    loop {
        let names = packages
            .names_holding_more_than(keep, after.as_deref(), 500)
            .await?;
        let Some(last) = names.last().cloned() else {
            return Ok(started);
        };
        for name in names {
            if depot_packages::names::prune_plan(packages, &name, keep as usize)
                .await?
                .is_empty()
            {
                continue;
            }
            let (op, message) = depot_packages::names::prune_operation(
                &name,
                keep,
                depot_packages::runner::RETENTION_ACTOR.into(),
                now,
            );
            match packages.start_on_name(&op, &message).await {
                Ok(()) => started += 1,
                Err(StartError::Busy(_) | StartError::NotFound) => {}
                Err(StartError::Repo(e)) => return Err(e),
                Err(e) => return Err(depot_core::RepoError::Unexpected(e.to_string().into())),
            }
        }
        after = Some(last);
    }
}

#[cfg(test)]
mod admin_secret_tests {
    use super::*;

    /// The review's finding: the admin secret accepted any length (`a` worked).
    #[tokio::test]
    async fn a_short_admin_secret_stops_the_service_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = depot_core::secrets::FileSecretStore::new(dir.path());
        std::fs::write(dir.path().join("admin_secret"), "a").unwrap();
        let e = admin_secret(&store).await.unwrap_err();
        assert_eq!(e.key, "secrets.admin_secret");
        assert!(e.message.contains("32"), "{}", e.message);
        std::fs::write(dir.path().join("admin_secret"), "x".repeat(32)).unwrap();
        assert!(admin_secret(&store).await.is_ok());
    }
}
