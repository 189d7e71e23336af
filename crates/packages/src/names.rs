//! Package names as resources: the name's summary (owner; active, previous and latest version;
//! its versions by precedence), its activation history, rolling back, yanking, and listing the
//! versions of a name by precedence or by a SemVer requirement.

use crate::model::{
    Activation, Operation, OperationKind, Package, PackageStatus, VersionRef, Yank,
};
use crate::ports::{NameRecord, PackageFilter};
use crate::service::{PackageError, PackageService, not_owner, repo};
use crate::version::{Precedence, Requirement};
use depot_core::{Cursor, Page, PageRequest, Permission, Principal, ValidationError};
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

impl PackageService {
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

    /// The version most recently replaced or deactivated (newest history entry first) that is
    /// still Downloaded and not yanked.
    async fn previous(
        &self,
        name: &str,
        versions: &[Package],
        active: Option<&VersionRef>,
    ) -> Result<Option<VersionRef>, PackageError> {
        let usable = |id: Uuid| {
            versions.iter().find(|p| {
                p.id == id
                    && p.status == PackageStatus::Downloaded
                    && p.yanked.is_none()
                    && active.is_none_or(|a| a.id != id)
            })
        };
        let mut page = PageRequest::parse(Some(100), None)?;
        for _ in 0..PREVIOUS_LOOKBACK_PAGES {
            let history = self
                .names
                .history(name, &page)
                .await
                .map_err(|e| repo(e, "no such package name"))?;
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
        assert_eq!(op.package_id, v1.id);
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
}
