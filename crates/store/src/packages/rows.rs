//! Rows ↔ domain values, and reading rows by id.

use super::*;

pub(super) fn package_of(m: package::Model) -> Result<Package, RepoError> {
    Ok(Package {
        status: PackageStatus::parse(&m.status)
            .ok_or_else(|| unexpected(format!("unknown package status `{}`", m.status)))?,
        id: m.id,
        name: m.name,
        version: m.version,
        description: m.description,
        source_url: m.source_url,
        sha256: m.sha256,
        size_bytes: m.size_bytes,
        owner: owner_of(m.owner_kind.as_deref(), m.owner_id)?,
        sealed_at: m.sealed_at,
        yanked: m.yanked_at.map(|at| depot_packages::model::Yank {
            reason: m.yanked_reason.unwrap_or_default(),
            at,
        }),
        signature: m
            .signature
            .map(|text| depot_packages::model::PackageSignature {
                text,
                verified_at: m.signature_verified_at,
            }),
        signature_url: m.signature_url,
        created_at: m.created_at,
        updated_at: m.updated_at,
        revision: m.revision,
    })
}

pub(super) fn owner_of(kind: Option<&str>, id: Option<Uuid>) -> Result<Option<Owner>, RepoError> {
    kind.map(|k| {
        Ok(Owner {
            kind: OwnerKind::parse(k)
                .ok_or_else(|| unexpected(format!("unknown owner kind `{k}`")))?,
            id,
        })
    })
    .transpose()
}

/// The owner's columns: (kind, id).
pub(super) fn owner_columns(owner: Option<&Owner>) -> (Option<String>, Option<Uuid>) {
    (
        owner.map(|o| o.kind.as_str().to_owned()),
        owner.and_then(|o| o.id),
    )
}

pub(super) fn operation_of(m: operation::Model) -> Result<Operation, RepoError> {
    Ok(Operation {
        kind: OperationKind::parse(&m.kind)
            .ok_or_else(|| unexpected(format!("unknown operation kind `{}`", m.kind)))?,
        status: OperationStatus::parse(&m.status)
            .ok_or_else(|| unexpected(format!("unknown operation status `{}`", m.status)))?,
        id: m.id,
        package_id: m.package_id,
        progress: u8::try_from(m.progress.clamp(0, 100)).unwrap_or(0),
        error: m.error_code.map(|code| OperationError {
            code,
            detail: m.error_detail.unwrap_or_default(),
        }),
        cancel_requested: m.cancel_requested,
        attempts: m.attempts,
        created_at: m.created_at,
        updated_at: m.updated_at,
        finished_at: m.finished_at,
        started_by: m.started_by,
        package_name: m.package_name,
    })
}

/// Answers every call of a batch with the batch's error.
pub(super) fn all_failed<T>(n: usize, e: &RepoError) -> Vec<Result<T, RepoError>> {
    (0..n).map(|_| Err(shared(e))).collect()
}

pub(super) fn package_model(p: &Package) -> package::ActiveModel {
    package::ActiveModel {
        id: Set(p.id),
        name: Set(p.name.clone()),
        version: Set(p.version.clone()),
        status: Set(p.status.as_str().to_owned()),
        description: Set(p.description.clone()),
        source_url: Set(p.source_url.clone()),
        sha256: Set(p.sha256.clone()),
        size_bytes: Set(p.size_bytes),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
        revision: Set(p.revision),
        owner_kind: Set(owner_columns(p.owner.as_ref()).0),
        owner_id: Set(p.owner.and_then(|o| o.id)),
        sealed_at: Set(p.sealed_at),
        yanked_at: Set(p.yanked.as_ref().map(|y| y.at)),
        yanked_reason: Set(p.yanked.as_ref().map(|y| y.reason.clone())),
        signature: Set(p.signature.as_ref().map(|s| s.text.clone())),
        signature_verified_at: Set(p.signature.as_ref().and_then(|s| s.verified_at)),
        signature_url: Set(p.signature_url.clone()),
    }
}

/// Each asked id's row, converted; `NotFound` for an id with none.
pub(super) fn answer_each<M: Clone, T>(
    ids: &[Uuid],
    found: Result<HashMap<Uuid, M>, RepoError>,
    convert: fn(M) -> Result<T, RepoError>,
) -> Vec<Result<T, RepoError>> {
    match found {
        Ok(found) => ids
            .iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .ok_or(RepoError::NotFound)
                    .and_then(convert)
            })
            .collect(),
        Err(e) => all_failed(ids.len(), &e),
    }
}

/// The rows of `E` with these ids (one statement), by id.
pub(super) async fn rows_by_id<E: EntityTrait>(
    db: &impl ConnectionTrait,
    column: E::Column,
    ids: impl IntoIterator<Item = Uuid>,
    id_of: impl Fn(&E::Model) -> Uuid,
) -> Result<HashMap<Uuid, E::Model>, RepoError> {
    let ids: HashSet<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(E::find()
        .filter(any_of(db.get_database_backend(), column, ids))
        .all(db)
        .await
        .map_err(repo_err)?
        .into_iter()
        .map(|m| (id_of(&m), m))
        .collect())
}

pub(super) async fn operations_by_id(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, operation::Model>, RepoError> {
    rows_by_id::<operation::Entity>(db, operation::Column::Id, ids, |m| m.id).await
}

pub(super) fn claimed_of(
    op: operation::Model,
    package: Option<package::Model>,
) -> Result<Claimed, RepoError> {
    Ok(Claimed {
        operation: operation_of(op)?,
        package: package.map(package_of).transpose()?,
    })
}

/// `alias.col AS "prefixcol"` for every column of `E`, for reading a joined row with
/// `FromQueryResult::from_query_result(row, prefix)`.
pub(super) fn prefixed<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    use sea_orm::{IdenStatic, Iterable};
    E::Column::iter()
        .map(|c| format!(r#"{alias}."{0}" AS "{prefix}{0}""#, c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `substr(column, 1, n) = prefix`: literal and case-sensitive on both backends.
pub(super) fn starts_with(
    column: impl sea_orm::IntoSimpleExpr,
    prefix: &str,
) -> sea_orm::sea_query::SimpleExpr {
    let head = Func::cust("substr")
        .arg(column.into_simple_expr())
        .arg(1)
        .arg(prefix.chars().count() as i32);
    Expr::expr(head).eq(prefix)
}

/// An update of packages that counts as a change of each row: its revision and `updated_at`.
pub(super) trait Changed {
    fn changed(self, now: DateTime<Utc>) -> Self;
    /// Sets the signature's columns when there is one (nothing otherwise).
    fn signed(self, signature: Option<&PackageSignature>) -> Self;
}

impl Changed for sea_orm::UpdateMany<package::Entity> {
    fn changed(self, now: DateTime<Utc>) -> Self {
        self.col_expr(
            package::Column::Revision,
            Expr::col(package::Column::Revision).add(1),
        )
        .col_expr(package::Column::UpdatedAt, Expr::value(now))
    }

    fn signed(self, signature: Option<&PackageSignature>) -> Self {
        match signature {
            Some(s) => self
                .col_expr(package::Column::Signature, Expr::value(s.text.clone()))
                .col_expr(
                    package::Column::SignatureVerifiedAt,
                    Expr::value(s.verified_at),
                ),
            None => self,
        }
    }
}
