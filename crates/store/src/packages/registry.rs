//! The package port: register, read, list, update, delete packages.

use super::*;

#[async_trait]
impl PackageRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn insert(&self, p: &Package) -> Result<(), InsertError> {
        self.batches()
            .insert
            .call(p.clone())
            .await
            .unwrap_or_else(|| Err(lost().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn name_owner(&self, name: &str) -> Result<Option<Option<Owner>>, RepoError> {
        package_name::Entity::find_by_id(name.to_owned())
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .map(|m| owner_of(m.owner_kind.as_deref(), m.owner_id))
            .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn get(&self, id: Uuid) -> Result<Package, RepoError> {
        self.batches()
            .get_package
            .call(id)
            .await
            .unwrap_or_else(|| Err(lost()))
    }

    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        filter: &PackageFilter,
        sort: PackageSort,
        page: &PageRequest,
    ) -> Result<Page<Package>, RepoError> {
        let mut q = package::Entity::find();
        if let Some(status) = filter.status {
            q = q.filter(package::Column::Status.eq(status.as_str()));
        }
        if let Some(prefix) = &filter.name_prefix {
            // Exact and case-sensitive on both backends: `LIKE 'p%'` would read `%` and `_` in
            // the prefix as wildcards, and ignore case on SQLite.
            q = q.filter(starts_with(Expr::col(package::Column::Name), prefix));
        }
        q = match (sort, &page.after) {
            (PackageSort::CreatedAt, after) => {
                if let Some(after) = after {
                    q = q.filter(package::Column::Id.lt(after.id));
                }
                q.order_by_desc(package::Column::Id)
            }
            (PackageSort::Name, after) => {
                if let Some(after) = after {
                    q = q.filter(
                        Condition::any()
                            .add(package::Column::Name.gt(after.key.as_str()))
                            .add(
                                Condition::all()
                                    .add(package::Column::Name.eq(after.key.as_str()))
                                    .add(package::Column::Id.gt(after.id)),
                            ),
                    );
                }
                q.order_by_asc(package::Column::Name)
                    .order_by_asc(package::Column::Id)
            }
        };
        let rows = q
            .limit(u64::from(page.limit()) + 1)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(package_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(
            rows,
            page.limit(),
            |p: &Package| match sort {
                PackageSort::CreatedAt => Cursor::new("", p.id),
                PackageSort::Name => Cursor::new(p.name.clone(), p.id),
            },
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        id: Uuid,
        f: &PackageFields,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Package, UpdateError> {
        let mut update = package::Entity::update_many()
            .changed(now)
            .filter(package::Column::Id.eq(id));
        if let Some(rev) = expected_revision {
            update = update.filter(package::Column::Revision.eq(rev));
        }
        // Frozen fields change only on a package never sealed, with no operation under way.
        let frozen = !f.frozen().is_empty();
        if frozen {
            update = update
                .filter(package::Column::SealedAt.is_null())
                .filter(Expr::cust(
                    "NOT EXISTS (SELECT 1 FROM operations o \
                     WHERE o.package_id = packages.id AND o.finished_at IS NULL)",
                ));
        }
        // A rename claims the new name (for `f.owner`) in the same transaction as the update.
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        if frozen && self.db.get_database_backend() == DatabaseBackend::Postgres {
            // A start in flight holds the row FOR KEY SHARE, which an UPDATE does not wait
            // for: without this lock the update's NOT EXISTS would miss the operation the start
            // is committing. FOR UPDATE waits for it; the UPDATE's own snapshot, taken after,
            // then sees the operation. (SQLite's write transaction excludes the start already.)
            package::Entity::find_by_id(id)
                .lock_exclusive()
                .one(&txn)
                .await
                .map_err(repo_err)?;
        }
        if f.name.is_some() || f.version.is_some() {
            let current = package::Entity::find_by_id(id)
                .one(&txn)
                .await
                .map_err(repo_err)?
                .ok_or(UpdateError::NotFound)?;
            let name = f.name.clone().unwrap_or(current.name);
            let version = f.version.clone().unwrap_or(current.version);
            if !retired_among(&txn, std::iter::once((&name, &version)))
                .await?
                .is_empty()
            {
                return Err(UpdateError::Retired);
            }
        }
        if let Some(name) = &f.name {
            let owner = f.owner.flatten();
            let stored = claim_names(&txn, &[(name.as_str(), owner)], now).await?;
            if stored.get(name) != Some(&owner) {
                return Err(UpdateError::NameClaimed);
            }
            let (kind, id) = owner_columns(owner.as_ref());
            update = update
                .col_expr(package::Column::Name, Expr::value(name.clone()))
                .col_expr(package::Column::OwnerKind, Expr::value(kind))
                .col_expr(package::Column::OwnerId, Expr::value(id));
        }
        if let Some(version) = &f.version {
            update = update.col_expr(package::Column::Version, Expr::value(version.clone()));
        }
        if let Some(v) = &f.description {
            update = update.col_expr(package::Column::Description, Expr::value(v.clone()));
        }
        if let Some(v) = &f.source_url {
            update = update.col_expr(package::Column::SourceUrl, Expr::value(v.clone()));
        }
        if let Some(v) = &f.sha256 {
            update = update.col_expr(package::Column::Sha256, Expr::value(v.clone()));
        }
        if let Some(v) = f.size_bytes {
            update = update.col_expr(package::Column::SizeBytes, Expr::value(v));
        }
        if let Some(v) = &f.signature_url {
            update = update.col_expr(package::Column::SignatureUrl, Expr::value(v.clone()));
        }
        // (name, version) is the only unique key an update can change.
        let result = update.exec(&txn).await.map_err(|e| {
            if is_unique_violation(&e) {
                UpdateError::Duplicate
            } else {
                repo_err(e).into()
            }
        })?;
        if result.rows_affected == 0 {
            let Some(row) = package::Entity::find_by_id(id)
                .one(&txn)
                .await
                .map_err(repo_err)?
            else {
                return Err(UpdateError::NotFound);
            };
            if expected_revision.is_some_and(|r| r != row.revision) {
                return Err(UpdateError::StaleRevision);
            }
            if frozen && row.sealed_at.is_some() {
                return Err(UpdateError::Frozen);
            }
            if frozen && let Some(op) = busy_with(&txn, id).await? {
                return Err(UpdateError::Busy(op));
            }
            return Err(UpdateError::StaleRevision);
        }
        txn.commit().await.map_err(repo_err)?;
        PackageRepository::get(self, id).await.map_err(|e| match e {
            RepoError::NotFound => UpdateError::NotFound,
            e => e.into(),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn set_yank(
        &self,
        id: Uuid,
        yank: Option<&depot_packages::model::Yank>,
        now: DateTime<Utc>,
    ) -> Result<Package, RepoError> {
        let result = package::Entity::update_many()
            .col_expr(package::Column::YankedAt, Expr::value(yank.map(|y| y.at)))
            .col_expr(
                package::Column::YankedReason,
                Expr::value(yank.map(|y| y.reason.clone())),
            )
            .changed(now)
            .filter(package::Column::Id.eq(id))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        if result.rows_affected == 0 {
            return Err(RepoError::NotFound);
        }
        PackageRepository::get(self, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn attach_artifact(
        &self,
        id: Uuid,
        expected_revision: i64,
        artifact: &VerifiedArtifact,
        now: DateTime<Utc>,
        place: depot_packages::artifacts::Placement<'_>,
    ) -> Result<Package, AttachError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let (row, status) = held_row(&txn, id, expected_revision).await?;
        if status != PackageStatus::Created {
            return Err(AttachError::WrongStatus(status));
        }
        if row.yanked_at.is_some() {
            return Err(AttachError::Yanked);
        }
        if let Some(op) = busy_with(&txn, id).await? {
            return Err(AttachError::Busy(op));
        }
        let updated = package::Entity::update_many()
            .col_expr(
                package::Column::Status,
                Expr::value(PackageStatus::Downloaded.as_str()),
            )
            .col_expr(
                package::Column::Sha256,
                Expr::value(artifact.sha256.clone()),
            )
            .col_expr(package::Column::SizeBytes, Expr::value(artifact.size))
            .col_expr(
                package::Column::SealedAt,
                Expr::col(package::Column::SealedAt).if_null(now),
            )
            .signed(artifact.signature.as_ref())
            .changed(now)
            .filter(package::Column::Id.eq(id))
            .filter(package::Column::Revision.eq(expected_revision))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?
            .pop()
            .ok_or(AttachError::StaleRevision)?;
        // The bytes go into place while the row is held; a failure rolls the change back.
        place.await.map_err(AttachError::Place)?;
        txn.commit().await.map_err(repo_err)?;
        Ok(package_of(updated)?)
    }

    #[tracing::instrument(skip_all)]
    async fn set_signature(
        &self,
        id: Uuid,
        expected_revision: i64,
        signature: &PackageSignature,
        now: DateTime<Utc>,
    ) -> Result<Package, AttachError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let (_, status) = held_row(&txn, id, expected_revision).await?;
        if status == PackageStatus::Active {
            return Err(AttachError::WrongStatus(status));
        }
        if let Some(op) = busy_with(&txn, id).await? {
            return Err(AttachError::Busy(op));
        }
        let updated = package::Entity::update_many()
            .signed(Some(signature))
            .changed(now)
            .filter(package::Column::Id.eq(id))
            .filter(package::Column::Revision.eq(expected_revision))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?
            .pop()
            .ok_or(AttachError::StaleRevision)?;
        txn.commit().await.map_err(repo_err)?;
        Ok(package_of(updated)?)
    }

    #[tracing::instrument(skip_all)]
    async fn record_verification(
        &self,
        id: Uuid,
        text: &str,
        verified_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        package::Entity::update_many()
            .col_expr(
                package::Column::SignatureVerifiedAt,
                Expr::value(verified_at),
            )
            .changed(now)
            .filter(package::Column::Id.eq(id))
            .filter(package::Column::Signature.eq(text))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn record_artifact(
        &self,
        id: Uuid,
        artifact: &VerifiedArtifact,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut update = package::Entity::update_many()
            .col_expr(
                package::Column::Sha256,
                Expr::col(package::Column::Sha256).if_null(artifact.sha256.clone()),
            )
            .col_expr(
                package::Column::SizeBytes,
                Expr::col(package::Column::SizeBytes).if_null(artifact.size),
            )
            .signed(artifact.signature.as_ref())
            .changed(now)
            .filter(package::Column::Id.eq(id))
            .filter(package::Column::Status.eq(PackageStatus::Created.as_str()));
        if artifact.signature.is_none() {
            // Nothing to write when both were declared.
            update = update.filter(
                Condition::any()
                    .add(package::Column::Sha256.is_null())
                    .add(package::Column::SizeBytes.is_null()),
            );
        }
        update.exec(&self.db).await.map_err(repo_err)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, id: Uuid, expected_revision: Option<i64>) -> Result<(), DeleteError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        if let Some(op) = busy_with(&txn, id).await? {
            return Err(DeleteError::Busy(op));
        }
        let row = package::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?;
        // Never the active version, even one that became active since the caller looked.
        let mut q = package::Entity::delete_many()
            .filter(package::Column::Id.eq(id))
            .filter(package::Column::Status.ne(PackageStatus::Active.as_str()));
        if let Some(rev) = expected_revision {
            q = q.filter(package::Column::Revision.eq(rev));
        }
        let result = q.exec(&txn).await.map_err(repo_err)?;
        // A sealed version is retired with its row: its name and version are never reused.
        if result.rows_affected > 0
            && let Some(row) = row.filter(|r| r.sealed_at.is_some())
        {
            retired_version::Entity::insert(retired_version::ActiveModel {
                name: Set(row.name),
                version: Set(row.version),
                retired_at: Set(Utc::now()),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
        }
        if result.rows_affected == 0 {
            return match package::Entity::find_by_id(id)
                .one(&txn)
                .await
                .map_err(repo_err)?
            {
                Some(r) if r.status == PackageStatus::Active.as_str() => Err(DeleteError::Active),
                Some(_) => Err(DeleteError::StaleRevision),
                None => Err(DeleteError::NotFound),
            };
        }
        Ok(txn.commit().await.map_err(repo_err)?)
    }
}

/// Inserts packages in one statement; a duplicate (name, version), also within the batch, is
/// skipped by the database and answered `Conflict`.
pub(super) async fn insert_batch(
    db: &DatabaseConnection,
    packages: Vec<Package>,
) -> Vec<Result<(), InsertError>> {
    each_alone_on_failure(
        "insert",
        &packages,
        |packages| Box::pin(insert_batch_inner(db, packages)),
        |e| Err(e.into()),
    )
    .await
}

pub(super) async fn insert_batch_inner(
    db: &DatabaseConnection,
    packages: &[Package],
) -> Result<Vec<Result<(), InsertError>>, RepoError> {
    // One insertion order (by the unique key) for every batch: concurrent batches holding the
    // same names wait for each other instead of deadlocking.
    let mut ordered: Vec<&Package> = packages.iter().collect();
    ordered.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let txn = begin_write(db).await.map_err(repo_err)?;
    // The names first: new ones are claimed for their package's owner; a package whose name
    // belongs to another owner is not inserted.
    let claims: Vec<(&str, Option<Owner>)> =
        ordered.iter().map(|p| (p.name.as_str(), p.owner)).collect();
    let now = ordered
        .iter()
        .map(|p| p.created_at)
        .min()
        .unwrap_or_default();
    let owners = claim_names(&txn, &claims, now).await?;
    let retired = retired_among(&txn, ordered.iter().map(|p| (&p.name, &p.version))).await?;
    let (allowed, refused): (Vec<&Package>, Vec<&Package>) = ordered
        .into_iter()
        .partition(|p| owners.get(&p.name) == Some(&p.owner));
    let (allowed, gone): (Vec<&Package>, Vec<&Package>) = allowed
        .into_iter()
        .partition(|p| !retired.contains(&(p.name.clone(), p.version.clone())));
    let refused: HashSet<Uuid> = refused.into_iter().map(|p| p.id).collect();
    let gone: HashSet<Uuid> = gone.into_iter().map(|p| p.id).collect();
    let ids: HashSet<Uuid> = if allowed.is_empty() {
        HashSet::new()
    } else {
        // The (name, version) index is the arbiter (PostgreSQL accepts no deferrable one, such
        // as the one-active-version constraint, and a new package is never active anyway).
        package::Entity::insert_many(allowed.into_iter().map(package_model))
            .on_conflict(
                OnConflict::columns([package::Column::Name, package::Column::Version])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_with_returning_keys(&txn)
            .await
            .map_err(repo_err)?
            .into_iter()
            .collect()
    };
    txn.commit().await.map_err(repo_err)?;
    Ok(packages
        .iter()
        .map(|p| {
            if ids.contains(&p.id) {
                Ok(())
            } else if refused.contains(&p.id) {
                Err(InsertError::NameClaimed)
            } else if gone.contains(&p.id) {
                Err(InsertError::Retired)
            } else {
                // Skipped by `ON CONFLICT DO NOTHING`: (name, version) exists (the id is new).
                Err(InsertError::Duplicate)
            }
        })
        .collect())
}

/// The (name, version) pairs among these that were retired.
pub(super) async fn retired_among<'a, C: ConnectionTrait>(
    txn: &C,
    pairs: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<HashSet<(String, String)>, RepoError> {
    let pairs: Vec<(&String, &String)> = pairs.collect();
    let names: HashSet<&String> = pairs.iter().map(|(n, _)| *n).collect();
    if names.is_empty() {
        return Ok(HashSet::new());
    }
    let found = retired_version::Entity::find()
        .filter(retired_version::Column::Name.is_in(names.into_iter().cloned()))
        .all(txn)
        .await
        .map_err(repo_err)?;
    Ok(found
        .into_iter()
        .map(|m| (m.name, m.version))
        .filter(|pair| pairs.iter().any(|(n, v)| **n == pair.0 && **v == pair.1))
        .collect())
}

/// Registers each new name for its owner (the first claim of a name in `claims` wins) and
/// answers every claimed name's stored owner, which callers compare with what they expected.
pub(super) async fn claim_names<C: ConnectionTrait>(
    txn: &C,
    claims: &[(&str, Option<Owner>)],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Option<Owner>>, RepoError> {
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for (name, owner) in claims {
        if seen.insert(*name) {
            let (owner_kind, owner_id) = owner_columns(owner.as_ref());
            rows.push(package_name::ActiveModel {
                name: Set((*name).to_owned()),
                owner_kind: Set(owner_kind),
                owner_id: Set(owner_id),
                created_at: Set(now),
            });
        }
    }
    package_name::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([package_name::Column::Name])
        .exec_without_returning(txn)
        .await
        .map_err(repo_err)?;
    let names: Vec<String> = seen.into_iter().map(str::to_owned).collect();
    package_name::Entity::find()
        .filter(package_name::Column::Name.is_in(names))
        .all(txn)
        .await
        .map_err(repo_err)?
        .into_iter()
        .map(|m| Ok((m.name, owner_of(m.owner_kind.as_deref(), m.owner_id)?)))
        .collect()
}

pub(super) async fn get_package_batch(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
) -> Vec<Result<Package, RepoError>> {
    let found =
        rows_by_id::<package::Entity>(db, package::Column::Id, ids.iter().copied(), |m| m.id).await;
    answer_each(&ids, found, package_of)
}
