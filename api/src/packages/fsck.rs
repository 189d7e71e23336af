//! `depot fsck [--repair]`: do the database and the http executor's storage directory agree?
//!
//! Drift it finds (and, only with `--repair`, fixes):
//! - a link in `active/` that is not the link of a name's active version, or points elsewhere
//!   (removed / re-pointed), and an active version without its link (created);
//! - a directory in `packages/` of no package (removed) and partial files not written to for 15 minutes (removed; younger ones are in flight);
//! - a downloaded or active package without its artifact (back to `created`: it is sealed, so
//!   downloading it again verifies the same bytes; an active one is recorded as deactivated).
//!
//! `depot serve` and `depot worker` run the check at start-up, reporting only.

use crate::packages::executor::{link_name, link_target};
use depot_packages::ports::NameRepository;
use depot_packages::{Package, PackageStatus};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// One disagreement between the database and the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A link that is no active version's (stale, or of an older naming).
    StrayLink { link: PathBuf },
    /// The link of a name's active version points elsewhere.
    WrongLink { name: String, link: PathBuf },
    /// A name's active version has no link.
    MissingLink { name: String, id: Uuid },
    /// A package directory of no package.
    OrphanDirectory { dir: PathBuf },
    /// A partial file (download or upload) left behind by a crash.
    PartialFile { file: PathBuf },
    /// A downloaded or active package without its artifact.
    MissingArtifact {
        id: Uuid,
        name: String,
        version: String,
        status: PackageStatus,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::StrayLink { link } => write!(f, "stray link {}", link.display()),
            Drift::WrongLink { name, link } => {
                write!(
                    f,
                    "the link of {name:?} ({}) points elsewhere",
                    link.display()
                )
            }
            Drift::MissingLink { name, id } => {
                write!(f, "{name:?} has an active version ({id}) but no link")
            }
            Drift::OrphanDirectory { dir } => {
                write!(f, "{} belongs to no package", dir.display())
            }
            Drift::PartialFile { file } => write!(
                f,
                "stale partial file {} (an interrupted download or upload)",
                file.display()
            ),
            Drift::MissingArtifact {
                id,
                name,
                version,
                status,
            } => write!(
                f,
                "{name:?} {version} ({id}) is {} but its artifact is missing",
                status.as_str()
            ),
        }
    }
}

/// What a check found, and what it repaired.
#[derive(Debug, Default)]
pub struct Report {
    pub drift: Vec<Drift>,
    pub repaired: usize,
}

async fn entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut rd = match tokio::fs::read_dir(dir).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(e) = rd.next_entry().await? {
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    Ok(out)
}

/// Compares `packages` (every package in the database) with `storage`; with `repair`, fixes
/// the disk, and returns the packages whose artifact is missing for the caller to reset.
///
/// Without `executor_files` (the simulated executor, whose downloads and activations keep no
/// files) only what uploads leave is checked: orphan directories and stale partial files.
pub async fn compare(
    packages: &[Package],
    storage: &Path,
    repair: bool,
    executor_files: bool,
) -> std::io::Result<Report> {
    let mut report = Report::default();
    let by_id: HashMap<Uuid, &Package> = packages.iter().map(|p| (p.id, p)).collect();
    if executor_files {
        links(packages, storage, repair, &mut report).await?;
    }
    artifacts(
        &by_id,
        packages,
        storage,
        repair,
        executor_files,
        &mut report,
    )
    .await?;
    Ok(report)
}

/// The `active/` links against the active versions.
async fn links(
    packages: &[Package],
    storage: &Path,
    repair: bool,
    report: &mut Report,
) -> std::io::Result<()> {
    // Links: the expected ones, by link name.
    let expected: HashMap<String, &Package> = packages
        .iter()
        .filter(|p| p.status == PackageStatus::Active)
        .map(|p| (link_name(&p.name), p))
        .collect();
    let active_dir = storage.join("active");
    let mut seen = HashSet::new();
    for (file, path) in entries(&active_dir).await? {
        match expected.get(&file) {
            Some(p) => {
                seen.insert(file.clone());
                let target = tokio::fs::read_link(&path).await.ok();
                if target.as_deref() != Some(link_target(p.id).as_path()) {
                    report.drift.push(Drift::WrongLink {
                        name: p.name.clone(),
                        link: path.clone(),
                    });
                    if repair {
                        relink(&path, p.id).await?;
                        report.repaired += 1;
                    }
                }
            }
            None => {
                report.drift.push(Drift::StrayLink { link: path.clone() });
                if repair {
                    remove_any(&path).await?;
                    report.repaired += 1;
                }
            }
        }
    }
    for (file, p) in &expected {
        if !seen.contains(file) {
            report.drift.push(Drift::MissingLink {
                name: p.name.clone(),
                id: p.id,
            });
            if repair {
                tokio::fs::create_dir_all(&active_dir).await?;
                relink(&active_dir.join(file), p.id).await?;
                report.repaired += 1;
            }
        }
    }
    Ok(())
}

/// The package directories: orphans, stale partial files, missing artifacts.
async fn artifacts(
    by_id: &HashMap<Uuid, &Package>,
    packages: &[Package],
    storage: &Path,
    repair: bool,
    executor_files: bool,
    report: &mut Report,
) -> std::io::Result<()> {
    let mut with_artifact = HashSet::new();
    for (file, dir) in entries(&storage.join("packages")).await? {
        let id = file.parse::<Uuid>().ok();
        // A directory written to lately may be a package registered after the list was read
        // (a push registers and uploads within a second): only an old one is an orphan.
        let orphan = id.is_none_or(|id| !by_id.contains_key(&id));
        if orphan && stale(&dir).await {
            report
                .drift
                .push(Drift::OrphanDirectory { dir: dir.clone() });
            if repair {
                remove_any(&dir).await?;
                report.repaired += 1;
            }
            continue;
        }
        if orphan {
            continue;
        }
        for (name, path) in entries(&dir).await? {
            if name == "artifact" {
                with_artifact.extend(id);
            } else if name.starts_with("artifact.part-") && stale(&path).await {
                report.drift.push(Drift::PartialFile { file: path.clone() });
                if repair {
                    remove_any(&path).await?;
                    report.repaired += 1;
                }
            }
        }
    }
    for p in packages.iter().filter(|_| executor_files) {
        if p.status != PackageStatus::Created && !with_artifact.contains(&p.id) {
            report.drift.push(Drift::MissingArtifact {
                id: p.id,
                name: p.name.clone(),
                version: p.version.clone(),
                status: p.status,
            });
        }
    }
    Ok(())
}

/// A partial file not written to for this long was left by a crash; a younger one belongs to
/// an upload or a download in flight (each writes to it as its bytes arrive).
const PARTIAL_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

async fn stale(path: &Path) -> bool {
    match tokio::fs::metadata(path).await.and_then(|m| m.modified()) {
        Ok(modified) => modified.elapsed().is_ok_and(|age| age > PARTIAL_GRACE),
        Err(_) => false,
    }
}

async fn relink(link: &Path, id: Uuid) -> std::io::Result<()> {
    let tmp = link.with_extension(format!("tmp-{}", Uuid::now_v7()));
    tokio::fs::symlink(link_target(id), &tmp).await?;
    tokio::fs::rename(&tmp, link).await
}

async fn remove_any(path: &Path) -> std::io::Result<()> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(_) => Ok(()),
    }
}

/// The whole check against the database: reads every package, compares, and with `repair`
/// also resets the packages whose artifact is missing.
pub async fn check(
    db: &depot_store::DatabaseConnection,
    storage: &Path,
    repair: bool,
    executor_files: bool,
) -> anyhow::Result<Report> {
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let packages = repo.with_prefix("", u64::MAX >> 1).await?;
    let mut report = compare(&packages, storage, repair, executor_files).await?;
    if repair {
        let missing: Vec<Uuid> = report
            .drift
            .iter()
            .filter_map(|d| match d {
                Drift::MissingArtifact { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let reset =
            depot_store::packages::reset_missing_artifacts(db, &missing, chrono::Utc::now())
                .await?;
        report.repaired += reset as usize;
        // The links of versions reset from active go too.
        if reset > 0 {
            let packages = repo.with_prefix("", u64::MAX >> 1).await?;
            report.repaired += compare(&packages, storage, true, executor_files)
                .await?
                .repaired;
        }
    }
    Ok(report)
}
