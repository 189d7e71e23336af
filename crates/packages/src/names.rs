//! Package names as resources: the name's summary (owner; active, previous and latest version;
//! its versions by precedence), its activation history, rolling back, yanking, and listing the
//! versions of a name by precedence or by a SemVer requirement.

use crate::model::{
    Activation, Operation, OperationKind, Package, PackageStatus, VersionRef, Yank,
};
use crate::ports::{NameRecord, NameRepository, PackageFilter, StartError};
use crate::service::{PackageError, PackageService, not_owner, repo};
use crate::version::{Precedence, Requirement};
use depot_core::{Cursor, Page, PageRequest, Permission, Principal, RepoError, ValidationError};
use uuid::Uuid;

/// The most versions read to answer about one name or prefix; past it the caller narrows down.
pub const MAX_VERSIONS: u64 = 10_000;

/// How many history entries are read, at most, to find the previous version.
const PREVIOUS_LOOKBACK_PAGES: usize = 10;

/// What `GET /package-names/{name}` answers.
#[derive(Debug, Clone)]
pub struct NameSummary {
    pub record: NameRecord,
    pub active: Option<VersionRef>,
    /// The version most recently replaced or deactivated that is still Downloaded and not
    /// yanked: what a rollback activates.
    pub previous: Option<VersionRef>,
    /// The highest non-yanked release; a pre-release only when the name has nothing else.
    pub latest: Option<VersionRef>,
    /// Newest first by precedence.
    pub versions: Vec<Package>,
}

/// How a listing of versions is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    Ascending,
    Descending,
}

fn version_ref(p: &Package) -> VersionRef {
    VersionRef {
        id: p.id,
        version: p.version.clone(),
    }
}

/// `versions` newest first by precedence.
fn by_precedence_desc(versions: &mut [Package]) {
    versions.sort_by_cached_key(|p| std::cmp::Reverse((Precedence::of(&p.version), p.id)));
}

/// The highest non-yanked release, else the highest non-yanked pre-release (`versions` newest
/// first).
fn latest_of(versions: &[Package]) -> Option<VersionRef> {
    let candidates = || versions.iter().filter(|p| p.yanked.is_none());
    candidates()
        .find(|p| !Precedence::of(&p.version).is_prerelease())
        .or_else(|| candidates().next())
        .map(version_ref)
}

/// The version most recently replaced or deactivated (newest history entry first) that is
/// still Downloaded and not yanked.
async fn previous_of(
    names: &dyn NameRepository,
    name: &str,
    versions: &[Package],
    active: Option<&VersionRef>,
) -> Result<Option<VersionRef>, RepoError> {
    let usable = |id: Uuid| {
        versions.iter().find(|p| {
            p.id == id
                && p.status == PackageStatus::Downloaded
                && p.yanked.is_none()
                && active.is_none_or(|a| a.id != id)
        })
    };
    let mut page = PageRequest::parse(Some(100), None).expect("a valid page");
    for _ in 0..PREVIOUS_LOOKBACK_PAGES {
        let history = names.history(name, &page).await?;
        for entry in &history.items {
            if let Some(p) = entry.from.as_ref().and_then(|f| usable(f.id)) {
                return Ok(Some(version_ref(p)));
            }
        }
        match history.next_cursor {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    Ok(None)
}

/// What a prune keeping `keep` versions takes from a name whose versions are `versions`
/// (newest first by precedence): its Downloaded versions past the `keep` newest that hold an
/// artifact (Downloaded or Active, yanked ones not counted), except the active version, the
/// previous one (what a rollback activates) and yanked ones, which are left as they are.
pub fn to_prune(
    versions: &[Package],
    previous: Option<&VersionRef>,
    keep: usize,
) -> Vec<VersionRef> {
    let holding = |p: &&Package| {
        matches!(p.status, PackageStatus::Downloaded | PackageStatus::Active) && p.yanked.is_none()
    };
    versions
        .iter()
        .filter(holding)
        .skip(keep)
        .filter(|p| p.status == PackageStatus::Downloaded && previous.is_none_or(|v| v.id != p.id))
        .map(version_ref)
        .collect()
}

/// What a prune of `name` keeping `keep` versions takes now (see [`to_prune`]).
pub async fn prune_plan(
    names: &dyn NameRepository,
    name: &str,
    keep: usize,
) -> Result<Vec<VersionRef>, RepoError> {
    let mut versions = names.versions_of(name, MAX_VERSIONS + 1).await?;
    if versions.len() as u64 > MAX_VERSIONS {
        // A prune reads at most this many. From a subset it takes less, never more: a version
        // among the name's newest is among any subset's newest.
        versions.truncate(MAX_VERSIONS as usize);
    }
    by_precedence_desc(&mut versions);
    let active = versions
        .iter()
        .find(|p| p.status == PackageStatus::Active)
        .map(version_ref);
    let previous = previous_of(names, name, &versions, active.as_ref()).await?;
    Ok(to_prune(&versions, previous.as_ref(), keep))
}

/// A prune of `name` keeping `keep` versions, started by `actor`, and the queue message that
/// runs it (recorded together by `OperationRepository::start_on_name`).
pub fn prune_operation(
    name: &str,
    keep: u32,
    actor: String,
    now: chrono::DateTime<chrono::Utc>,
) -> (Operation, crate::ports::OutboxMessage) {
    let operation =
        Operation::pending_on_name(OperationKind::Prune, name.to_owned(), now).started_by(actor);
    let message = crate::service::queued(&operation, Some(keep));
    (operation, message)
}

/// What `POST /package-names/{name}/prune` did: with `dry_run`, the plan; else the operation.
#[derive(Debug, Clone)]
pub enum Prune {
    Plan {
        keep: u32,
        versions: Vec<VersionRef>,
    },
    Started(Operation),
}

/// The most versions a prune may be asked to keep.
pub const MAX_KEEP: u32 = MAX_VERSIONS as u32;

impl PackageService {
    /// Prunes the name's versions past the `keep` newest (`packages.keep_versions` when not
    /// given), as an operation, or says what that would take (`dry_run`). For the name's owner
    /// and `packages:admin`.
    pub async fn prune(
        &self,
        principal: &Principal,
        name: &str,
        keep: Option<u32>,
        dry_run: bool,
    ) -> Result<Prune, PackageError> {
        let record = self.record(name).await?;
        if !principal.manages(record.owner.as_ref(), Permission::PackagesAdmin) {
            return Err(not_owner(name));
        }
        let keep = match keep.or((self.keep_versions > 0).then_some(self.keep_versions)) {
            Some(k) if (1..=MAX_KEEP).contains(&k) => k,
            Some(_) => {
                return Err(ValidationError::field(
                    "keep",
                    format!("must be from 1 to {MAX_KEEP}"),
                )
                .into());
            }
            None => {
                return Err(ValidationError::field(
                    "keep",
                    "retention is off (packages.keep_versions is 0): say how many versions to keep",
                )
                .into());
            }
        };
        if dry_run {
            let versions = prune_plan(self.names.as_ref(), name, keep as usize)
                .await
                .map_err(|e| repo(e, "no such package name"))?;
            return Ok(Prune::Plan { keep, versions });
        }
        self.start_prune(name, keep, principal.actor())
            .await
            .map(Prune::Started)
    }

    /// Starts a prune of `name` keeping `keep` versions, recorded as started by `actor`.
    pub async fn start_prune(
        &self,
        name: &str,
        keep: u32,
        actor: String,
    ) -> Result<Operation, PackageError> {
        let (operation, message) = prune_operation(name, keep, actor, self.clock.now());
        self.operations
            .start_on_name(&operation, &message)
            .await
            .map_err(|e| match e {
                StartError::Busy(other) => PackageError::Conflict {
                    code: "operation_in_progress",
                    detail: format!("prune {other} of this name is already pending or running"),
                },
                StartError::NotFound => PackageError::NotFound("no such package name"),
                StartError::Repo(r) => PackageError::Repo(r),
                e => PackageError::Repo(RepoError::Unexpected(e.to_string().into())),
            })?;
        self.relay_wakeup.notify_one();
        Ok(operation)
    }

    async fn versions_of(&self, name: &str) -> Result<Vec<Package>, PackageError> {
        let versions = self
            .names
            .versions_of(name, MAX_VERSIONS + 1)
            .await
            .map_err(|e| repo(e, "no such package name"))?;
        if versions.len() as u64 > MAX_VERSIONS {
            return Err(ValidationError::field(
                "name",
                format!("this name has more than {MAX_VERSIONS} versions; list them with GET /api/v1/packages?name="),
            )
            .into());
        }
        Ok(versions)
    }

    async fn record(&self, name: &str) -> Result<NameRecord, PackageError> {
        self.names
            .name(name)
            .await
            .map_err(|e| repo(e, "no such package name"))?
            .ok_or(PackageError::NotFound("no such package name"))
    }

    /// The name's summary; 404 for a name never registered.
    pub async fn name(&self, name: &str) -> Result<NameSummary, PackageError> {
        let record = self.record(name).await?;
        self.summary(record).await
    }

    /// The summary of the name `record` names.
    async fn summary(&self, record: NameRecord) -> Result<NameSummary, PackageError> {
        let name = record.name.as_str();
        let mut versions = self.versions_of(name).await?;
        by_precedence_desc(&mut versions);
        let active = versions
            .iter()
            .find(|p| p.status == PackageStatus::Active)
            .map(version_ref);
        let previous = self.previous(name, &versions, active.as_ref()).await?;
        let latest = latest_of(&versions);
        Ok(NameSummary {
            record,
            active,
            previous,
            latest,
            versions,
        })
    }

    async fn previous(
        &self,
        name: &str,
        versions: &[Package],
        active: Option<&VersionRef>,
    ) -> Result<Option<VersionRef>, PackageError> {
        previous_of(self.names.as_ref(), name, versions, active)
            .await
            .map_err(|e| repo(e, "no such package name"))
    }

    /// Names ascending; `prefix` literal.
    pub async fn names(
        &self,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NameRecord>, PackageError> {
        self.names
            .names(prefix, page)
            .await
            .map_err(|e| repo(e, "no such package name"))
    }

    /// The name's activations and deactivations, newest first; 404 for a name never registered.
    pub async fn history(
        &self,
        name: &str,
        page: &PageRequest,
    ) -> Result<Page<Activation>, PackageError> {
        self.record(name).await?;
        self.names
            .history(name, page)
            .await
            .map_err(|e| repo(e, "no such package name"))
    }

    /// Activates the name's previous version (an operation); 409 `no_previous_version` when
    /// there is none. For the name's owner and `packages:admin`.
    pub async fn rollback(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Operation, PackageError> {
        let record = self.record(name).await?;
        if !principal.manages(record.owner.as_ref(), Permission::PackagesAdmin) {
            return Err(not_owner(name));
        }
        let summary = self.summary(record).await?;
        let Some(previous) = summary.previous else {
            return Err(PackageError::Conflict {
                code: "no_previous_version",
                detail: format!(
                    "{name} has no previous version to roll back to (one that was active, is \
                     still downloaded and is not yanked)"
                ),
            });
        };
        self.start(principal, previous.id, OperationKind::Activate)
            .await
    }

    /// Yanks a version (`Some(reason)`) or takes the yank back (`None`). For the name's owner
    /// and `packages:admin`.
    pub async fn set_yank(
        &self,
        principal: &Principal,
        id: Uuid,
        reason: Option<&str>,
    ) -> Result<Package, PackageError> {
        let package = self.get(id).await?;
        if !principal.manages(package.owner.as_ref(), Permission::PackagesAdmin) {
            return Err(not_owner(&package.name));
        }
        let now = self.clock.now();
        let yank = match reason {
            Some(reason) => {
                let reason = crate::model::yank_reason(reason)?;
                Some(Yank { reason, at: now })
            }
            None => None,
        };
        self.packages
            .set_yank(id, yank.as_ref(), now)
            .await
            .map_err(|e| repo(e, "no package with this id"))
    }

    /// The packages under `filter`'s name prefix (required), of `requirement` when given,
    /// ordered by version precedence.
    pub async fn list_by_version(
        &self,
        filter: &PackageFilter,
        requirement: Option<&Requirement>,
        order: VersionOrder,
        page: &PageRequest,
    ) -> Result<Page<Package>, PackageError> {
        let Some(prefix) = filter.name_prefix.as_deref() else {
            return Err(ValidationError::field(
                "name",
                "sorting or filtering by version needs a name (prefix)",
            )
            .into());
        };
        let mut rows = self
            .names
            .with_prefix(prefix, MAX_VERSIONS + 1)
            .await
            .map_err(|e| repo(e, "no such package"))?;
        if rows.len() as u64 > MAX_VERSIONS {
            return Err(ValidationError::field(
                "name",
                format!("more than {MAX_VERSIONS} packages start with this name: narrow it down"),
            )
            .into());
        }
        rows.retain(|p| {
            filter.status.is_none_or(|s| p.status == s)
                && requirement.is_none_or(|r| r.matches(&p.version))
        });
        let key = |p: &Package| (p.name.clone(), Precedence::of(&p.version), p.id);
        rows.sort_by_cached_key(key);
        if order == VersionOrder::Descending {
            rows.reverse();
        }
        // The cursor is the last row seen: its name and id (the id finds the row's version).
        if let Some(after) = &page.after {
            let at = rows
                .iter()
                .position(|p| p.id == after.id && p.name == after.key)
                .ok_or_else(|| ValidationError::field("cursor", "the cursor's row is gone"))?;
            rows.drain(..=at);
        }
        rows.truncate(page.limit() as usize + 1);
        Ok(Page::from_overfetch(rows, page.limit(), |p| {
            Cursor::new(p.name.clone(), p.id)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::InMemoryPackages;
    use crate::model::PackageInput;
    use crate::ports::{OperationRepository, Outcome};

    use crate::fakes::service;

    async fn version(svc: &PackageService, store: &InMemoryPackages, v: &str) -> Package {
        let p = svc
            .create(
                &Principal::admin(),
                PackageInput {
                    name: Some("nginx".into()),
                    version: Some(v.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        store.set_status(p.id, PackageStatus::Downloaded);
        p
    }

    /// Runs `kind` on `p` to success through the ports, as a worker would.
    async fn run(svc: &PackageService, store: &InMemoryPackages, p: &Package, kind: OperationKind) {
        let op = svc.start(&Principal::admin(), p.id, kind).await.unwrap();
        let claimed = store.claim(op.id, chrono::Utc::now()).await.unwrap();
        store
            .finish(&claimed.operation, &Outcome::Succeeded, chrono::Utc::now())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn one_active_per_name_and_rollbacks_toggle() {
        let (store, svc) = service();
        let v1 = version(&svc, &store, "1.9.0").await;
        let v2 = version(&svc, &store, "1.10.0").await;
        let _rc = version(&svc, &store, "2.0.0-rc.1").await;
        run(&svc, &store, &v1, OperationKind::Activate).await;
        run(&svc, &store, &v2, OperationKind::Activate).await;
        let s = svc.name("nginx").await.unwrap();
        assert_eq!(s.active.as_ref().map(|a| a.id), Some(v2.id));
        assert_eq!(
            svc.get(v1.id).await.unwrap().status,
            PackageStatus::Downloaded
        );
        assert_eq!(s.previous.as_ref().map(|a| a.id), Some(v1.id));
        assert_eq!(
            s.latest.as_ref().map(|a| a.version.as_str()),
            Some("1.10.0")
        );
        let order: Vec<&str> = s.versions.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(order, ["2.0.0-rc.1", "1.10.0", "1.9.0"]);

        let op = svc.rollback(&Principal::admin(), "nginx").await.unwrap();
        assert_eq!(op.package_id, Some(v1.id));
        let claimed = store.claim(op.id, chrono::Utc::now()).await.unwrap();
        store
            .finish(&claimed.operation, &Outcome::Succeeded, chrono::Utc::now())
            .await
            .unwrap();
        let s = svc.name("nginx").await.unwrap();
        assert_eq!(s.active.map(|a| a.id), Some(v1.id));
        assert_eq!(
            s.previous.map(|a| a.id),
            Some(v2.id),
            "two rollbacks toggle"
        );

        let history = svc
            .history("nginx", &PageRequest::parse(None, None).unwrap())
            .await
            .unwrap();
        let steps: Vec<_> = history
            .items
            .iter()
            .map(|a| (a.from.as_ref().map(|f| f.id), a.to.as_ref().map(|t| t.id)))
            .collect();
        assert_eq!(
            steps,
            [
                (Some(v2.id), Some(v1.id)),
                (Some(v1.id), Some(v2.id)),
                (None, Some(v1.id))
            ]
        );
    }

    #[tokio::test]
    async fn yanked_versions_are_skipped_and_not_activated_anew() {
        let (store, svc) = service();
        let v1 = version(&svc, &store, "1.0.0").await;
        let v2 = version(&svc, &store, "1.1.0").await;
        run(&svc, &store, &v1, OperationKind::Activate).await;
        run(&svc, &store, &v2, OperationKind::Activate).await;
        let yanked = svc
            .set_yank(&Principal::admin(), v1.id, Some("CVE-2026-0001"))
            .await
            .unwrap();
        assert_eq!(yanked.yanked.unwrap().reason, "CVE-2026-0001");
        let s = svc.name("nginx").await.unwrap();
        assert_eq!(s.previous, None, "a yanked version is not rolled back to");
        assert!(matches!(
            svc.rollback(&Principal::admin(), "nginx").await,
            Err(PackageError::Conflict {
                code: "no_previous_version",
                ..
            })
        ));
        assert!(matches!(
            svc.start(&Principal::admin(), v1.id, OperationKind::Activate)
                .await,
            Err(PackageError::Conflict { code: "yanked", .. })
        ));
        let v3 = version(&svc, &store, "1.2.0").await;
        svc.set_yank(&Principal::admin(), v3.id, Some("broken build"))
            .await
            .unwrap();
        let s = svc.name("nginx").await.unwrap();
        assert_eq!(s.latest.map(|l| l.version), Some("1.1.0".into()));
        assert!(matches!(
            svc.set_yank(&Principal::admin(), v3.id, Some("  ")).await,
            Err(PackageError::Validation(_))
        ));
        svc.set_yank(&Principal::admin(), v1.id, None)
            .await
            .unwrap();
        assert_eq!(
            svc.name("nginx").await.unwrap().previous.map(|p| p.id),
            Some(v1.id)
        );
    }

    #[tokio::test]
    async fn a_prerelease_is_latest_only_when_nothing_else_exists() {
        let (store, svc) = service();
        version(&svc, &store, "2.0.0-rc.1").await;
        let s = svc.name("nginx").await.unwrap();
        assert_eq!(s.latest.map(|l| l.version), Some("2.0.0-rc.1".into()));
        version(&svc, &store, "1.0.0").await;
        let s = svc.name("nginx").await.unwrap();
        assert_eq!(s.latest.map(|l| l.version), Some("1.0.0".into()));
    }
    /// A runner over `store` whose executor does nothing (a prune needs none).
    fn runner(store: &std::sync::Arc<InMemoryPackages>) -> crate::runner::OperationRunner {
        crate::runner::OperationRunner::new(
            store.clone(),
            std::sync::Arc::new(crate::executor::SimulatedExecutor {
                duration: std::time::Duration::ZERO,
                steps: 1,
                failure_rate: 0.0,
            }),
            std::sync::Arc::new(depot_core::clock::SystemClock),
            3,
        )
        .with_names(store.clone())
    }

    /// Keeps the files a prune removes.
    #[derive(Default)]
    struct Removed(std::sync::Mutex<Vec<Uuid>>);

    #[async_trait::async_trait]
    impl crate::ports::ArtifactFiles for Removed {
        async fn remove(&self, id: Uuid) -> Result<(), RepoError> {
            self.0.lock().unwrap().push(id);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_prune_keeps_the_newest_the_active_the_previous_and_yanked_versions() {
        let (store, svc) = service();
        let mut v = Vec::new();
        for number in [
            "1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0", "2.1.0",
        ] {
            v.push(version(&svc, &store, number).await);
        }
        // 1.1.0 was active before 1.2.0 (so it is the previous version), 1.0.0 is yanked,
        // 2.1.0 was never downloaded.
        run(&svc, &store, &v[1], OperationKind::Activate).await;
        run(&svc, &store, &v[2], OperationKind::Activate).await;
        svc.set_yank(&Principal::admin(), v[0].id, Some("CVE"))
            .await
            .unwrap();
        store.set_status(v[6].id, PackageStatus::Created);
        let plan = match svc
            .prune(&Principal::admin(), "nginx", Some(2), true)
            .await
            .unwrap()
        {
            Prune::Plan { keep, versions } => {
                assert_eq!(keep, 2);
                versions
            }
            other => panic!("{other:?}"),
        };
        // Holding an artifact, newest first: 2.0.0, 1.4.0 (kept), 1.3.0, 1.2.0 (active),
        // 1.1.0 (previous): only 1.3.0 goes.
        let versions: Vec<&str> = plan.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(versions, ["1.3.0"]);
        assert_eq!(
            svc.get(v[3].id).await.unwrap().status,
            PackageStatus::Downloaded,
            "a dry run changes nothing"
        );

        // Retention off and no `keep`: 422 naming it; a stranger: 403.
        assert!(matches!(
            svc.prune(&Principal::admin(), "nginx", None, true).await,
            Err(PackageError::Validation(e)) if e.errors[0].field == "keep"
        ));
        assert!(matches!(
            svc.prune(&Principal::admin(), "nginx", Some(0), true).await,
            Err(PackageError::Validation(e)) if e.errors[0].field == "keep"
        ));

        let op = match svc
            .prune(&Principal::admin(), "nginx", Some(2), false)
            .await
            .unwrap()
        {
            Prune::Started(op) => op,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (op.kind, op.package_id, op.package_name.as_deref()),
            (OperationKind::Prune, None, Some("nginx"))
        );
        assert!(
            matches!(
                svc.prune(&Principal::admin(), "nginx", Some(2), false)
                    .await,
                Err(PackageError::Conflict {
                    code: "operation_in_progress",
                    ..
                })
            ),
            "one prune of a name at a time"
        );
        let removed = std::sync::Arc::new(Removed::default());
        let runner = runner(&store).with_artifacts(removed.clone());
        let payload = serde_json::to_vec(&crate::runner::OperationMessage {
            operation_id: op.id,
            keep: Some(2),
        })
        .unwrap();
        let done = runner.handle(&payload, false).await.unwrap().unwrap();
        assert_eq!(done.status, crate::model::OperationStatus::Succeeded);
        assert_eq!(*removed.0.lock().unwrap(), [v[3].id]);
        let statuses: Vec<PackageStatus> =
            futures::future::join_all(v.iter().map(|p| svc.get(p.id)))
                .await
                .into_iter()
                .map(|p| p.unwrap().status)
                .collect();
        use PackageStatus::*;
        assert_eq!(
            statuses,
            [
                Downloaded, Downloaded, Active, Created, Downloaded, Downloaded, Created
            ]
        );
        assert!(
            svc.get(v[0].id).await.unwrap().yanked.is_some(),
            "the yanked one's record stays"
        );
    }
    /// The review: a prune queued again after a restart (its message lost `keep`) kept the
    /// server's number, not the client's. Only retention's own prunes fall back to it now.
    #[tokio::test]
    async fn a_prune_that_lost_its_keep_falls_back_only_when_retention_started_it() {
        let (store, svc) = service();
        version(&svc, &store, "1.0.0").await;
        let runner = runner(&store).with_keep_versions(5);
        for (actor, want) in [
            ("api_key:someone", crate::model::OperationStatus::Failed),
            (
                crate::runner::RETENTION_ACTOR,
                crate::model::OperationStatus::Succeeded,
            ),
        ] {
            let op = svc.start_prune("nginx", 1, actor.into()).await.unwrap();
            let lost = serde_json::to_vec(&crate::runner::OperationMessage {
                operation_id: op.id,
                keep: None,
            })
            .unwrap();
            let done = runner.handle(&lost, false).await.unwrap().unwrap();
            assert_eq!(done.status, want, "{actor}");
            if want == crate::model::OperationStatus::Failed {
                assert_eq!(done.error.unwrap().code, "prune_interrupted");
            }
        }
    }
}
