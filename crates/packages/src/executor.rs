//! The work behind an operation, as a port. Adapters: `SimulatedExecutor` (here: a named
//! simulation, the default) and the HTTP executor (in the api crate's adapters, since it needs an
//! HTTP client and the filesystem).

use crate::model::{OperationKind, Package};
use async_trait::async_trait;
use rand::RngExt;
use std::time::Duration;

/// What an executor reports while it works.
#[async_trait]
pub trait Progress: Send + Sync {
    /// Records progress (0–100). Returns `true` when the operation should stop (cancelled).
    async fn report(&self, percent: u8) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Stopped because cancellation was requested.
    #[error("cancelled")]
    Cancelled,
    /// Will not succeed by retrying (bad checksum, 404): the operation fails with this problem.
    #[error("{detail}")]
    Failed { code: String, detail: String },
    /// Might succeed later (network blip): the runner answers `JobError::Retryable`, so the
    /// message is delivered again, up to the attempt limit.
    #[error("{0}")]
    Retryable(String),
}

impl ExecError {
    /// The artifact store could not be read (a retry may find it back).
    pub fn store_unreadable(e: crate::artifacts::ArtifactError) -> Self {
        Self::Retryable(format!("reading the artifact store: {e}"))
    }
}

/// The version of a name that is active now, read when the executor is ready to act on it.
pub type ActiveNow<'a> =
    futures::future::BoxFuture<'a, Result<Option<Package>, depot_core::RepoError>>;

#[async_trait]
pub trait Executor: Send + Sync {
    /// Carries out `kind` on `package`. Must be safe to run again after a crash (idempotent).
    async fn execute(
        &self,
        kind: OperationKind,
        package: &Package,
        progress: &dyn Progress,
    ) -> Result<(), ExecError>;

    /// After an activation or deactivation of `name` ended (committed, whatever its outcome):
    /// makes what the executor keeps of the active version (a link, say) agree with the
    /// database, reading `active` once it holds whatever lock it needs, so that the last of
    /// several concurrent calls reads the last committed state. Executors that keep nothing
    /// have nothing to do.
    async fn sync_active(&self, name: &str, active: ActiveNow<'_>) -> Result<(), ExecError> {
        let _ = (name, active);
        Ok(())
    }
}

/// A stand-in for real work, clearly named as such: waits `duration` in `steps`, reporting
/// progress, and fails a configurable share of operations (`failure_rate`, 0.0–1.0).
#[derive(Debug, Clone)]
pub struct SimulatedExecutor {
    pub duration: Duration,
    pub steps: u32,
    pub failure_rate: f64,
}

#[async_trait]
impl Executor for SimulatedExecutor {
    async fn execute(
        &self,
        kind: OperationKind,
        package: &Package,
        progress: &dyn Progress,
    ) -> Result<(), ExecError> {
        let steps = self.steps.max(1);
        let pause = self.duration / steps;
        for step in 1..=steps {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let percent = (step * 100 / steps) as u8;
            if percent < 100 && progress.report(percent).await {
                return Err(ExecError::Cancelled);
            }
        }
        if self.failure_rate > 0.0 && rand::rng().random_bool(self.failure_rate.clamp(0.0, 1.0)) {
            return Err(ExecError::Failed {
                code: "simulated_failure".into(),
                detail: format!(
                    "the simulated executor failed this {} of {} {} on purpose (failure_rate = {})",
                    kind.as_str(),
                    package.name,
                    package.version,
                    self.failure_rate
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder {
        seen: Mutex<Vec<u8>>,
        cancel_at: Option<u8>,
    }

    #[async_trait]
    impl Progress for Recorder {
        async fn report(&self, percent: u8) -> bool {
            self.seen.lock().unwrap().push(percent);
            self.cancel_at.is_some_and(|c| percent >= c)
        }
    }

    fn package() -> Package {
        Package::created("p".into(), "1".into(), chrono::Utc::now())
    }

    #[tokio::test]
    async fn reports_progress_and_can_be_cancelled_or_fail() {
        let exec = SimulatedExecutor {
            duration: Duration::from_millis(20),
            steps: 4,
            failure_rate: 0.0,
        };
        let rec = Recorder {
            seen: Mutex::new(vec![]),
            cancel_at: None,
        };
        exec.execute(OperationKind::Download, &package(), &rec)
            .await
            .unwrap();
        assert_eq!(*rec.seen.lock().unwrap(), vec![25, 50, 75]);
        let rec = Recorder {
            seen: Mutex::new(vec![]),
            cancel_at: Some(50),
        };
        assert!(matches!(
            exec.execute(OperationKind::Download, &package(), &rec)
                .await,
            Err(ExecError::Cancelled)
        ));
        let failing = SimulatedExecutor {
            failure_rate: 1.0,
            ..exec
        };
        let rec = Recorder {
            seen: Mutex::new(vec![]),
            cancel_at: None,
        };
        assert!(matches!(
            failing
                .execute(OperationKind::Activate, &package(), &rec)
                .await,
            Err(ExecError::Failed { .. })
        ));
    }
}
