//! `depot fsck [--repair]`: reports where the database and the http executor's storage
//! directory disagree (see `packages::fsck`), and repairs it only when asked.

use crate::bootstrap;
use crate::settings::{ExecutorKind, Settings};

/// Exit status: 0 when nothing drifts (or everything found was repaired), 1 when drift was
/// found and left.
pub async fn fsck(settings: Settings, repair: bool) -> anyhow::Result<bool> {
    // The simulated executor's downloads and activations keep no files: only what uploads
    // leave is checked then.
    let executor_files = settings.executor.kind == ExecutorKind::Http;
    let db = bootstrap::database_for_migrations(&settings).await?;
    let storage = match settings.artifacts.location(&settings.executor)? {
        crate::packages::settings::ArtifactLocation::Dir(dir) => dir,
        crate::packages::settings::ArtifactLocation::S3 { bucket, .. } => {
            println!(
                "artifacts are in the bucket {bucket}: fsck compares a directory, nothing to check"
            );
            return Ok(true);
        }
    };
    let storage = &storage;
    let report = crate::packages::fsck::check(&db, storage, repair, executor_files).await?;
    for drift in &report.drift {
        println!("{drift}");
    }
    match (report.drift.len(), repair) {
        (0, _) => {
            println!("{}: the database and the disk agree", storage.display());
            Ok(true)
        }
        (n, false) => {
            println!("{n} disagreement(s); `depot fsck --repair` fixes them");
            Ok(false)
        }
        (n, true) => {
            println!("{n} disagreement(s), {} repair(s) made", report.repaired);
            Ok(true)
        }
    }
}
