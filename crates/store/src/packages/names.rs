//! The name port: package names, their versions, and their activation history.

use super::*;
use depot_packages::ports::{NameRecord, NameRepository};
use depot_packages::{Activation, VersionRef};

fn record_of(m: package_name::Model) -> Result<NameRecord, RepoError> {
    Ok(NameRecord {
        owner: owner_of(m.owner_kind.as_deref(), m.owner_id)?,
        name: m.name,
        created_at: m.created_at,
    })
}

fn version_ref(id: Option<Uuid>, version: Option<String>) -> Option<VersionRef> {
    Some(VersionRef {
        id: id?,
        version: version.unwrap_or_default(),
    })
}

impl SeaOrmPackageRepository {
    /// At most `limit` packages matching `cond`.
    async fn packages_where(
        &self,
        cond: impl sea_orm::sea_query::IntoCondition,
        limit: u64,
    ) -> Result<Vec<Package>, RepoError> {
        package::Entity::find()
            .filter(cond)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(package_of)
            .collect()
    }
}

#[async_trait]
impl NameRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn name(&self, name: &str) -> Result<Option<NameRecord>, RepoError> {
        package_name::Entity::find_by_id(name.to_owned())
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .map(record_of)
            .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn names(
        &self,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NameRecord>, RepoError> {
        let mut q = package_name::Entity::find();
        if let Some(prefix) = prefix {
            q = q.filter(starts_with(Expr::col(package_name::Column::Name), prefix));
        }
        if let Some(after) = &page.after {
            q = q.filter(package_name::Column::Name.gt(after.key.as_str()));
        }
        let rows = q
            .order_by_asc(package_name::Column::Name)
            .limit(u64::from(page.limit()) + 1)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(rows, page.limit(), |r| {
            Cursor::new(r.name.clone(), Uuid::nil())
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn versions_of(&self, name: &str, limit: u64) -> Result<Vec<Package>, RepoError> {
        self.packages_where(package::Column::Name.eq(name), limit)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn active_version(&self, name: &str) -> Result<Option<Package>, RepoError> {
        let cond = Condition::all()
            .add(package::Column::Name.eq(name))
            .add(package::Column::Status.eq(PackageStatus::Active.as_str()));
        Ok(self.packages_where(cond, 1).await?.pop())
    }

    #[tracing::instrument(skip_all)]
    async fn with_prefix(&self, prefix: &str, limit: u64) -> Result<Vec<Package>, RepoError> {
        self.packages_where(starts_with(Expr::col(package::Column::Name), prefix), limit)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn history(&self, name: &str, page: &PageRequest) -> Result<Page<Activation>, RepoError> {
        let q =
            package_activation::Entity::find().filter(package_activation::Column::Name.eq(name));
        let rows: Vec<Activation> = newest_first(q, package_activation::Column::Id, page)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(|m| Activation {
                id: m.id,
                name: m.name,
                from: version_ref(m.from_package_id, m.from_version),
                to: version_ref(m.to_package_id, m.to_version),
                operation_id: m.operation_id,
                actor: m.actor,
                at: m.at,
            })
            .collect();
        Ok(page_by_id(rows, page, |a| a.id))
    }
}

/// `depot fsck --repair`: packages the database holds as downloaded or active whose artifact is
/// gone return to `created` (they are sealed: a new download verifies the same bytes), an
/// active one with a deactivation in its name's history (by `fsck`). Returns how many.
pub async fn reset_missing_artifacts(
    db: &DatabaseConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, RepoError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let backend = db.get_database_backend();
    let txn = begin_write(db).await.map_err(repo_err)?;
    let before = package::Entity::find()
        .filter(any_of(backend, package::Column::Id, ids.iter().copied()))
        .filter(package::Column::Status.ne(PackageStatus::Created.as_str()))
        .all(&txn)
        .await
        .map_err(repo_err)?;
    if before.is_empty() {
        return Ok(0);
    }
    package::Entity::update_many()
        .col_expr(
            package::Column::Status,
            Expr::value(PackageStatus::Created.as_str()),
        )
        .col_expr(
            package::Column::SignatureVerifiedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .changed(now)
        .filter(any_of(
            backend,
            package::Column::Id,
            before.iter().map(|m| m.id),
        ))
        .exec(&txn)
        .await
        .map_err(repo_err)?;
    let deactivations: Vec<package_activation::ActiveModel> = before
        .iter()
        .filter(|m| m.status == PackageStatus::Active.as_str())
        .map(|m| package_activation::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(m.name.clone()),
            from_package_id: Set(Some(m.id)),
            from_version: Set(Some(m.version.clone())),
            to_package_id: Set(None),
            to_version: Set(None),
            operation_id: Set(None),
            actor: Set(Some("fsck".into())),
            at: Set(now),
        })
        .collect();
    if !deactivations.is_empty() {
        package_activation::Entity::insert_many(deactivations)
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
    }
    txn.commit().await.map_err(repo_err)?;
    Ok(before.len() as u64)
}

impl SeaOrmPackageRepository {
    /// Names with more than `keep` versions holding an artifact (Downloaded or Active) and not
    /// yanked, ascending after `after`, at most `limit`: where a prune keeping `keep` may have
    /// something to take (retention's hourly pass reads the plan of each).
    pub async fn names_holding_more_than(
        &self,
        keep: u32,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<String>, RepoError> {
        let mut q = package::Entity::find()
            .select_only()
            .column(package::Column::Name)
            .filter(package::Column::Status.is_in(["downloaded", "active"]))
            .filter(package::Column::YankedAt.is_null());
        if let Some(after) = after {
            q = q.filter(package::Column::Name.gt(after));
        }
        q.group_by(package::Column::Name)
            .having(Expr::col(package::Column::Id).count().gt(i64::from(keep)))
            .order_by_asc(package::Column::Name)
            .limit(limit)
            .into_tuple::<String>()
            .all(&self.db)
            .await
            .map_err(repo_err)
    }
}
