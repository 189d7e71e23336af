//! The worker side: runs one operation per message. Delivery is at-least-once; the state change
//! happens exactly once because finishing is a conditional update on a running operation.

use crate::executor::{ExecError, Executor, Progress};
use crate::model::{Operation, OperationError};
use crate::ports::{ArtifactFiles, Claimed, NameRepository, NoFiles, OperationRepository, Outcome};
use async_trait::async_trait;
use depot_core::queue::JobError;
use depot_core::{Clock, RepoError};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The queue message: which operation to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationMessage {
    pub operation_id: Uuid,
    /// A prune's number of versions to keep (see `PackageService::prune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

/// Who starts retention's prunes (`packages.keep_versions`).
pub const RETENTION_ACTOR: &str = "system:retention";

/// The error of an operation whose worker stopped renewing its lease.
pub fn abandoned() -> OperationError {
    OperationError {
        code: "abandoned".into(),
        detail: "the worker running this operation stopped answering; start it again".into(),
    }
}

fn retryable(e: RepoError) -> JobError {
    JobError::Retryable(e.to_string())
}

pub struct OperationRunner {
    operations: Arc<dyn OperationRepository>,
    executor: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    max_attempts: i32,
    /// Renewed every quarter of this while the executor works (see `OperationRepository::reap`).
    lease: Duration,
    /// Where the active version of a name is read after an activation or deactivation, for
    /// the executor's `sync_active` (none: not synced).
    names: Option<Arc<dyn NameRepository>>,
    /// Where a prune's versions' files go from.
    artifacts: Arc<dyn ArtifactFiles>,
    /// The `keep` of a retention prune whose message lost it (re-queued after a restart).
    keep_versions: u32,
    /// With `packages.require_signatures`: what an activation checks first.
    signatures: Option<SignatureGate>,
}

/// An activation's signature check (`packages.require_signatures`): the package carries a
/// signature by a key trusted for its name, and it verifies against the bytes in storage, read
/// back as they are now (so bytes changed in storage since they were checked are caught).
pub struct SignatureGate {
    pub trust: Arc<crate::signature::Trust>,
    pub artifacts: Arc<dyn crate::artifacts::ArtifactStore>,
    /// Where the outcome is recorded (the package view's `signature.verified_at`).
    pub packages: Arc<dyn crate::ports::PackageRepository>,
}

fn signature_invalid(detail: impl Into<String>) -> ExecError {
    ExecError::Failed {
        code: "signature_invalid".into(),
        detail: detail.into(),
    }
}

impl SignatureGate {
    async fn check(
        &self,
        package: &crate::model::Package,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ExecError> {
        use crate::signature::{Signature, SignatureError};
        if !self.trust.required {
            return Ok(());
        }
        let Some(held) = &package.signature else {
            return Err(signature_invalid(SignatureError::Missing.to_string()));
        };
        let signature =
            Signature::parse(&held.text).map_err(|e| signature_invalid(e.to_string()))?;
        let body = self
            .artifacts
            .open(package.id)
            .await
            .map_err(ExecError::store_unreadable)?
            .ok_or_else(|| ExecError::Failed {
                code: "artifact_missing".into(),
                detail: "the downloaded artifact is not in storage; download it again".into(),
            })?
            .whole()
            .await
            .map_err(ExecError::store_unreadable)?;
        let outcome = self.trust.verify(&package.name, &signature, body).await;
        let verified_at = match &outcome {
            Ok(_) => Some(now),
            Err(SignatureError::Unreadable) => {
                return Err(ExecError::Retryable(
                    "the artifact could not be read back to check its signature".into(),
                ));
            }
            Err(_) => None,
        };
        if let Err(e) = self
            .packages
            .record_verification(package.id, &held.text, verified_at, now)
            .await
        {
            tracing::warn!(error = %e, "recording the signature check failed");
        }
        outcome
            .map(|_| ())
            .map_err(|e| signature_invalid(e.to_string()))
    }
}

/// Writes progress to the operation, at most every 100 ms (and always the first report).
struct DbProgress<'a> {
    runner: &'a OperationRunner,
    id: Uuid,
    last: Mutex<Option<(u8, Instant)>>,
}

#[async_trait]
impl Progress for DbProgress<'_> {
    async fn report(&self, percent: u8) -> bool {
        let percent = percent.min(99);
        {
            let mut last = self.last.lock().expect("progress lock");
            if let Some((p, at)) = *last
                && (p == percent || at.elapsed() < Duration::from_millis(100))
            {
                return false;
            }
            *last = Some((percent, Instant::now()));
        }
        match self
            .runner
            .operations
            .progress(self.id, percent, self.runner.clock.now())
            .await
        {
            Ok(cancel) => cancel,
            Err(e) => {
                tracing::warn!(error = %e, "recording progress failed");
                false
            }
        }
    }
}

impl OperationRunner {
    pub fn new(
        operations: Arc<dyn OperationRepository>,
        executor: Arc<dyn Executor>,
        clock: Arc<dyn Clock>,
        max_attempts: i32,
    ) -> Self {
        Self {
            operations,
            executor,
            clock,
            max_attempts: max_attempts.max(1),
            lease: Duration::from_secs(300),
            names: None,
            artifacts: Arc::new(NoFiles),
            keep_versions: 0,
            signatures: None,
        }
    }

    /// Activations check signatures through `gate` (when it requires them).
    pub fn with_signatures(mut self, gate: SignatureGate) -> Self {
        self.signatures = Some(gate);
        self
    }

    /// A prune removes the files of the versions it pruned from `artifacts`.
    pub fn with_artifacts(mut self, artifacts: Arc<dyn ArtifactFiles>) -> Self {
        self.artifacts = artifacts;
        self
    }

    /// The `keep` of a retention prune whose message does not say (`packages.keep_versions`;
    /// a client's prune without one fails `prune_interrupted`).
    pub fn with_keep_versions(mut self, keep: u32) -> Self {
        self.keep_versions = keep;
        self
    }

    /// Runs a claimed prune: reads what it takes, moves those versions back to Created as it
    /// succeeds (one transaction), then removes their files.
    async fn prune(
        &self,
        op: &Operation,
        keep: Option<u32>,
        last_delivery: bool,
    ) -> Result<Option<Operation>, JobError> {
        // Only retention's own prunes fall back to the setting: a client's `keep` is its own.
        let retention = op.started_by.as_deref() == Some(RETENTION_ACTOR);
        let keep = keep.or((retention && self.keep_versions > 0).then_some(self.keep_versions));
        let (Some(names), Some(name), Some(keep)) = (&self.names, &op.package_name, keep) else {
            return self
                .finish(
                    op,
                    Outcome::Failed(OperationError {
                        code: "prune_interrupted".into(),
                        detail: "this prune lost what to keep (it was queued again after a \
                                 restart); start it again"
                            .into(),
                    }),
                )
                .await;
        };
        let plan = match crate::names::prune_plan(names.as_ref(), name, keep as usize).await {
            Ok(plan) => plan,
            Err(e) if last_delivery || op.attempts >= self.max_attempts => {
                return self
                    .finish(
                        op,
                        Outcome::Failed(OperationError {
                            code: "attempts_exhausted".into(),
                            detail: format!("gave up after {} attempts: {e}", op.attempts),
                        }),
                    )
                    .await;
            }
            Err(e) => return Err(retryable(e)),
        };
        let ids: Vec<Uuid> = plan.iter().map(|v| v.id).collect();
        match self
            .operations
            .finish_prune(op, &ids, self.clock.now(), self.artifacts.as_ref())
            .await
        {
            Ok(Some((done, pruned))) => {
                tracing::info!(operation_id = %op.id, name = %name, pruned = pruned.len(), keep, "prune finished");
                Ok(Some(done))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(retryable(e)),
        }
    }

    /// After each activation and deactivation, the executor is synced with the name's active
    /// version as `names` reads it.
    pub fn with_names(mut self, names: Arc<dyn NameRepository>) -> Self {
        self.names = Some(names);
        self
    }

    /// Lets the executor catch up with the name's active version (after an activation or a
    /// deactivation, whatever its outcome: a failed one may have touched what it keeps).
    async fn sync_active(&self, name: &str) {
        let Some(names) = &self.names else { return };
        let active = Box::pin(names.active_version(name));
        if let Err(e) = self.executor.sync_active(name, active).await {
            tracing::warn!(error = %e, "syncing the active version on disk failed; `depot fsck --repair` fixes it");
        }
    }

    /// Sets the lease a running operation holds while its executor works.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    async fn finish(
        &self,
        op: &Operation,
        outcome: Outcome,
    ) -> Result<Option<Operation>, JobError> {
        let id = op.id;
        match self.operations.finish(op, &outcome, self.clock.now()).await {
            Ok(Some(op)) => {
                tracing::info!(operation_id = %id, status = op.status.as_str(), "operation finished");
                Ok(Some(op))
            }
            Ok(None) => {
                tracing::info!(operation_id = %id, "operation already finished elsewhere");
                Ok(None)
            }
            Err(e) => Err(retryable(e)),
        }
    }

    /// Handles one delivery of an operation message. Returns the operation when this delivery
    /// finished it (for metrics), `None` when there was nothing (left) to do. On the message's
    /// `last_delivery` a temporary failure fails the operation instead of asking for a retry
    /// that would never come (the queue dead-letters the message after it).
    #[tracing::instrument(skip_all, fields(operation_id))]
    pub async fn handle(
        &self,
        payload: &[u8],
        last_delivery: bool,
    ) -> Result<Option<Operation>, JobError> {
        let msg: OperationMessage = serde_json::from_slice(payload)
            .map_err(|e| JobError::Permanent(format!("not an operation message: {e}")))?;
        let id = msg.operation_id;
        tracing::Span::current().record("operation_id", tracing::field::display(id));
        // Claiming returns a final operation unchanged, so no separate read is needed first; it
        // reads the package in the same round trip.
        let (op, package) = match self.operations.claim(id, self.clock.now()).await {
            Ok(Claimed { operation, package }) => (operation, package),
            // Deleted with its package: nothing to do.
            Err(RepoError::NotFound) => return Ok(None),
            Err(e) => return Err(retryable(e)),
        };
        if op.status.is_final() {
            // Redelivered after it ended: the worker that ended it may have died before syncing
            // the executor with the name's active version (concurrent activations can leave the
            // executor's link at a loser until then). Sync now.
            if matches!(
                op.kind,
                crate::model::OperationKind::Activate | crate::model::OperationKind::Deactivate
            ) && let Some(name) = &op.package_name
            {
                self.sync_active(name).await;
            }
            return Ok(None);
        }
        if op.cancel_requested {
            return self.finish(&op, Outcome::Cancelled).await;
        }
        if op.attempts > self.max_attempts {
            return self
                .finish(
                    &op,
                    Outcome::Failed(OperationError {
                        code: "attempts_exhausted".into(),
                        detail: format!("gave up after {} attempts", self.max_attempts),
                    }),
                )
                .await;
        }
        if op.kind.on_name() {
            return self.prune(&op, msg.keep, last_delivery).await;
        }
        let package = match package {
            Some(p) => p,
            None => {
                return self
                    .finish(
                        &op,
                        Outcome::Failed(OperationError {
                            code: "package_deleted".into(),
                            detail: "the package no longer exists".into(),
                        }),
                    )
                    .await;
            }
        };
        let progress = DbProgress {
            runner: self,
            id,
            last: Mutex::new(None),
        };
        // The lease is renewed while the executor works, so that the reaper leaves it alone.
        let heartbeat = async {
            let mut beat = tokio::time::interval((self.lease / 4).max(Duration::from_millis(10)));
            beat.tick().await;
            loop {
                beat.tick().await;
                if let Err(e) = self.operations.heartbeat(id, self.clock.now()).await {
                    tracing::warn!(error = %e, "renewing the operation's lease failed");
                }
            }
        };
        let work = async {
            if op.kind == crate::model::OperationKind::Activate
                && let Some(gate) = &self.signatures
            {
                gate.check(&package, self.clock.now()).await?;
            }
            self.executor.execute(op.kind, &package, &progress).await
        };
        let executed = tokio::select! {
            r = work => r,
            never = heartbeat => never,
        };
        let outcome = match executed {
            Ok(()) => Outcome::Succeeded,
            Err(ExecError::Cancelled) => Outcome::Cancelled,
            Err(ExecError::Failed { code, detail }) => {
                Outcome::Failed(OperationError { code, detail })
            }
            Err(ExecError::Retryable(e)) if op.attempts >= self.max_attempts || last_delivery => {
                Outcome::Failed(OperationError {
                    code: "attempts_exhausted".into(),
                    detail: format!("gave up after {} attempts: {e}", op.attempts),
                })
            }
            Err(ExecError::Retryable(e)) => return Err(JobError::Retryable(e)),
        };
        let finished = self.finish(&op, outcome).await;
        if op.kind != crate::model::OperationKind::Download {
            self.sync_active(&package.name).await;
        }
        finished
    }

    /// Re-publishes messages for operations left unfinished (embedded mode after a restart,
    /// where the in-process queue did not survive).
    pub async fn unfinished(&self) -> Result<Vec<Uuid>, RepoError> {
        Ok(self
            .operations
            .unfinished()
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::InMemoryPackages;
    use crate::model::{OperationKind, OperationStatus, Package, PackageStatus};
    use crate::ports::{OutboxMessage, PackageRepository};
    use depot_core::FixedClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `transient` runs with a retryable error, then does what `then` says.
    struct Scripted {
        transient: u32,
        runs: AtomicU32,
        then: fn() -> Result<(), ExecError>,
    }

    #[async_trait]
    impl Executor for Scripted {
        async fn execute(
            &self,
            _: OperationKind,
            _: &Package,
            _: &dyn Progress,
        ) -> Result<(), ExecError> {
            if self.runs.fetch_add(1, Ordering::SeqCst) < self.transient {
                return Err(ExecError::Retryable("the remote blinked".into()));
            }
            (self.then)()
        }
    }

    async fn setup(
        transient: u32,
        then: fn() -> Result<(), ExecError>,
    ) -> (Arc<InMemoryPackages>, OperationRunner, Package, Operation) {
        let store = Arc::new(InMemoryPackages::default());
        let now = chrono::Utc::now();
        let package = Package::created("p".into(), "1".into(), now);
        store.insert(&package).await.unwrap();
        let op = Operation::pending(OperationKind::Download, package.id, now);
        let message = outbox(now);
        store.start(&op, &message).await.unwrap();
        let runner = OperationRunner::new(
            store.clone(),
            Arc::new(Scripted {
                transient,
                runs: AtomicU32::new(0),
                then,
            }),
            Arc::new(FixedClock::new(now)),
            3,
        );
        (store, runner, package, op)
    }

    /// The outbox message a start records (the fakes keep it, nothing reads it).
    fn outbox(now: chrono::DateTime<chrono::Utc>) -> OutboxMessage {
        OutboxMessage {
            id: Uuid::now_v7(),
            queue: crate::OPERATIONS_QUEUE.into(),
            payload: vec![],
            created_at: now,
            headers: Default::default(),
        }
    }

    fn message(op: &Operation) -> Vec<u8> {
        serde_json::to_vec(&OperationMessage {
            operation_id: op.id,
            keep: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_success_moves_the_package_once() {
        let (store, runner, package, op) = setup(0, || Ok(())).await;
        let done = runner.handle(&message(&op), false).await.unwrap().unwrap();
        assert_eq!(done.status, OperationStatus::Succeeded);
        assert_eq!(
            PackageRepository::get(store.as_ref(), package.id)
                .await
                .unwrap()
                .status,
            PackageStatus::Downloaded
        );
        // A redelivery finds it final: nothing more happens.
        assert!(runner.handle(&message(&op), false).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_the_attempts_run_out() {
        let (store, runner, package, op) = setup(10, || Ok(())).await;
        for _ in 0..2 {
            assert!(matches!(
                runner.handle(&message(&op), false).await,
                Err(JobError::Retryable(_))
            ));
        }
        let done = runner.handle(&message(&op), false).await.unwrap().unwrap();
        assert_eq!(done.status, OperationStatus::Failed);
        assert_eq!(done.error.unwrap().code, "attempts_exhausted");
        assert_eq!(
            PackageRepository::get(store.as_ref(), package.id)
                .await
                .unwrap()
                .status,
            PackageStatus::Created
        );
    }

    #[tokio::test]
    async fn a_failure_a_cancellation_and_a_bad_message_end_as_they_should() {
        let (_, runner, _, op) = setup(0, || {
            Err(ExecError::Failed {
                code: "checksum_mismatch".into(),
                detail: "no".into(),
            })
        })
        .await;
        let done = runner.handle(&message(&op), false).await.unwrap().unwrap();
        assert_eq!(done.error.unwrap().code, "checksum_mismatch");

        let (store, runner, _, op) = setup(0, || Err(ExecError::Cancelled)).await;
        let done = runner.handle(&message(&op), false).await.unwrap().unwrap();
        assert_eq!(done.status, OperationStatus::Cancelled);
        assert!(store.outbox().len() == 1);

        assert!(matches!(
            runner.handle(b"not json", false).await,
            Err(JobError::Permanent(_))
        ));
    }

    #[tokio::test]
    async fn a_package_that_left_the_expected_status_fails_the_operation() {
        let (store, runner, package, op) = setup(0, || Ok(())).await;
        // Moved behind the lifecycle's back (a hand-edited database).
        store.set_status(package.id, PackageStatus::Active);
        let done = runner.handle(&message(&op), false).await.unwrap().unwrap();
        assert_eq!(done.status, OperationStatus::Failed);
        assert_eq!(done.error.unwrap().code, "invalid_transition");
    }

    /// With operations.max_attempts above queue.max_deliveries the message was dead-lettered
    /// while its operation stayed running forever. On the last delivery a temporary failure
    /// fails the operation.
    #[tokio::test]
    async fn the_last_delivery_fails_the_operation_instead_of_asking_for_a_retry() {
        let (_, runner, _, op) = setup(10, || Ok(())).await;
        assert!(matches!(
            runner.handle(&message(&op), false).await,
            Err(JobError::Retryable(_))
        ));
        let done = runner.handle(&message(&op), true).await.unwrap().unwrap();
        assert_eq!(done.status, OperationStatus::Failed);
        assert_eq!(done.error.unwrap().code, "attempts_exhausted");
    }

    /// A running operation's lease is renewed while its executor works; one whose worker
    /// stopped renewing it is reaped (failed `abandoned`), or cancelled when that was asked.
    #[tokio::test]
    async fn leases_are_renewed_while_working_and_expired_ones_are_reaped() {
        use crate::ports::OperationRepository;
        struct Slow;
        #[async_trait]
        impl Executor for Slow {
            async fn execute(
                &self,
                _: OperationKind,
                _: &Package,
                _: &dyn Progress,
            ) -> Result<(), ExecError> {
                tokio::time::sleep(Duration::from_millis(120)).await;
                Ok(())
            }
        }
        let store = Arc::new(InMemoryPackages::default());
        let now = chrono::Utc::now();
        let package = Package::created("p".into(), "1".into(), now);
        store.insert(&package).await.unwrap();
        let op = Operation::pending(OperationKind::Download, package.id, now);
        let msg = outbox(now);
        store.start(&op, &msg).await.unwrap();
        let clock = Arc::new(depot_core::SystemClock);
        let runner = OperationRunner::new(store.clone(), Arc::new(Slow), clock, 3)
            .with_lease(Duration::from_millis(40));
        let body = message(&op);
        let running = runner.handle(&body, false);
        let watcher = async {
            tokio::time::sleep(Duration::from_millis(90)).await;
            // Renewed within the last lease: not reaped.
            let cutoff = chrono::Utc::now() - chrono::Duration::milliseconds(40);
            store.reap(cutoff, chrono::Utc::now()).await.unwrap()
        };
        let (done, reaped) = tokio::join!(running, watcher);
        assert!(reaped.is_empty(), "{reaped:?}");
        assert_eq!(done.unwrap().unwrap().status, OperationStatus::Succeeded);

        // An operation claimed by a worker that then vanished.
        let other = Package::created("q".into(), "1".into(), now);
        store.insert(&other).await.unwrap();
        let orphan = Operation::pending(OperationKind::Download, other.id, now);
        store.start(&orphan, &msg).await.unwrap();
        store.claim(orphan.id, now).await.unwrap();
        let later = now + chrono::Duration::minutes(10);
        let reaped = store
            .reap(later - chrono::Duration::minutes(5), later)
            .await
            .unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].status, OperationStatus::Failed);
        assert_eq!(reaped[0].error.as_ref().unwrap().code, "abandoned");
    }

    /// The crash test found it: a worker that ended an activation died before syncing its
    /// executor, and the redelivered message found the operation final and did nothing, so the
    /// link stayed at a version that had lost the race. A redelivery of an ended activation now
    /// syncs the name.
    #[tokio::test]
    async fn a_redelivered_ended_activation_syncs_the_executor() {
        use crate::ports::NameRepository;
        #[derive(Default)]
        struct Recording(Mutex<Vec<(String, Option<Uuid>)>>);
        #[async_trait]
        impl Executor for Recording {
            async fn execute(
                &self,
                _: OperationKind,
                _: &Package,
                _: &dyn Progress,
            ) -> Result<(), ExecError> {
                Ok(())
            }
            async fn sync_active(
                &self,
                name: &str,
                active: crate::executor::ActiveNow<'_>,
            ) -> Result<(), ExecError> {
                let active = active.await.unwrap().map(|p| p.id);
                self.0.lock().unwrap().push((name.to_owned(), active));
                Ok(())
            }
        }
        let store = Arc::new(InMemoryPackages::default());
        let now = chrono::Utc::now();
        let package = Package::created("p".into(), "1".into(), now);
        store.insert(&package).await.unwrap();
        store.set_status(package.id, PackageStatus::Downloaded);
        let op = Operation::pending(OperationKind::Activate, package.id, now).on_name("p".into());
        let msg = outbox(now);
        store.start(&op, &msg).await.unwrap();
        let executor = Arc::new(Recording::default());
        let names: Arc<dyn NameRepository> = store.clone();
        let runner = OperationRunner::new(
            store.clone(),
            executor.clone(),
            Arc::new(FixedClock::new(now)),
            3,
        )
        .with_names(names);
        runner.handle(&message(&op), false).await.unwrap().unwrap();
        assert!(runner.handle(&message(&op), false).await.unwrap().is_none());
        let synced = executor.0.lock().unwrap().clone();
        assert_eq!(
            synced,
            [
                ("p".to_owned(), Some(package.id)),
                ("p".to_owned(), Some(package.id))
            ],
            "synced after the run and again on the redelivery"
        );
    }
}
