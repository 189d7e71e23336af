//! Starting operations: the state machine check, the operation and its outbox message, in
//! one transaction per batch.

use super::*;

/// Starts operations in one transaction: reads their packages, checks each against the state
/// machine, inserts the operations (the one-active-per-package index skips a busy package's,
/// also a second one for the same package within the batch) and the outbox messages of those
/// inserted.
pub(super) async fn start_batch(
    db: &DatabaseConnection,
    calls: Vec<(Operation, OutboxMessage)>,
) -> Vec<Result<(), StartError>> {
    each_alone_on_failure(
        "start",
        &calls,
        |calls| Box::pin(start_batch_inner(db, calls)),
        |e| Err(StartError::Repo(e)),
    )
    .await
}

pub(super) async fn start_batch_inner(
    db: &DatabaseConnection,
    calls: &[(Operation, OutboxMessage)],
) -> Result<Vec<Result<(), StartError>>, RepoError> {
    let txn = begin_write(db).await.map_err(repo_err)?;
    let package_ids: HashSet<Uuid> = calls.iter().filter_map(|(op, _)| op.package_id).collect();
    let mut packages = package::Entity::find()
        .select_only()
        .column(package::Column::Id)
        .column(package::Column::Status)
        .column(package::Column::YankedAt)
        .filter(any_of(
            db.get_database_backend(),
            package::Column::Id,
            package_ids,
        ));
    if db.get_database_backend() == DatabaseBackend::Postgres {
        // A package deleted between this read and the inserts would fail the operations'
        // foreign key, and with it every start in the batch. KEY SHARE holds deletions off
        // until the commit (a deletion that came first makes the package missing here) and
        // does not stop status changes. (On SQLite the transaction already excludes writers.)
        packages = packages.lock(LockType::KeyShare);
    }
    let statuses: HashMap<Uuid, (String, bool)> = packages
        .into_tuple::<(Uuid, String, Option<DateTime<Utc>>)>()
        .all(&txn)
        .await
        .map_err(repo_err)?
        .into_iter()
        .map(|(id, status, yanked_at)| (id, (status, yanked_at.is_some())))
        .collect();
    let mut results: Vec<Option<Result<(), StartError>>> = Vec::with_capacity(calls.len());
    for (op, _) in calls {
        // (A name-level operation has no package: it is started by `start_on_name`.)
        let checked = match op.package_id.and_then(|id| statuses.get(&id)) {
            None => Some(Err(StartError::NotFound)),
            // A yanked version is not downloaded or activated anew (deactivating it is fine).
            Some((_, true)) if op.kind != OperationKind::Deactivate => {
                Some(Err(StartError::Yanked))
            }
            Some((status, _)) => match PackageStatus::parse(status) {
                None => Some(Err(StartError::Repo(unexpected(format!(
                    "unknown package status `{status}`"
                ))))),
                Some(status) => op
                    .kind
                    .check(status)
                    .err()
                    .map(|e| Err(StartError::WrongStatus(e))),
            },
        };
        results.push(checked);
    }
    let mut candidates: Vec<&Operation> = calls
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|((op, _), _)| op)
        .collect();
    // Rows are inserted in this order, each taking the one-active-per-package index entry of its
    // package: one order for every batch, so two batches with the same packages wait for each
    // other instead of deadlocking.
    candidates.sort_by_key(|op| op.package_id);
    let inserted: HashSet<Uuid> = if candidates.is_empty() {
        HashSet::new()
    } else {
        operation::Entity::insert_many(candidates.iter().map(|op| operation_row(op)))
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_with_returning_keys(&txn)
            .await
            .map_err(repo_err)?
            .into_iter()
            .collect()
    };
    let messages: Vec<&OutboxMessage> = calls
        .iter()
        .filter(|(op, _)| inserted.contains(&op.id))
        .map(|(_, m)| m)
        .collect();
    if !messages.is_empty() {
        outbox::Entity::insert_many(messages.iter().map(|m| outbox_row(m)))
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
    }
    txn.commit().await.map_err(repo_err)?;
    // Those skipped by the index: name the operation in progress (best effort, after commit).
    let busy_packages: Vec<Uuid> = calls
        .iter()
        .zip(&results)
        .filter(|((op, _), r)| r.is_none() && !inserted.contains(&op.id))
        .filter_map(|((op, _), _)| op.package_id)
        .collect();
    let busy: HashMap<Uuid, Uuid> = if busy_packages.is_empty() {
        HashMap::new()
    } else {
        operation::Entity::find()
            .select_only()
            .column(operation::Column::PackageId)
            .column(operation::Column::Id)
            .filter(any_of(
                db.get_database_backend(),
                operation::Column::PackageId,
                busy_packages,
            ))
            .filter(not_finished())
            .into_tuple::<(Uuid, Uuid)>()
            .all(db)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    Ok(calls
        .iter()
        .zip(results)
        .map(|((op, _), r)| match r {
            Some(r) => r,
            None if inserted.contains(&op.id) => Ok(()),
            None => Err(StartError::Busy(
                op.package_id
                    .and_then(|id| busy.get(&id).copied())
                    .unwrap_or(Uuid::nil()),
            )),
        })
        .collect())
}

fn operation_row(op: &Operation) -> operation::ActiveModel {
    operation::ActiveModel {
        id: Set(op.id),
        kind: Set(op.kind.as_str().to_owned()),
        package_id: Set(op.package_id),
        status: Set(op.status.as_str().to_owned()),
        progress: Set(i16::from(op.progress)),
        error_code: Set(None),
        error_detail: Set(None),
        cancel_requested: Set(false),
        attempts: Set(0),
        created_at: Set(op.created_at),
        updated_at: Set(op.updated_at),
        finished_at: Set(None),
        started_by: Set(op.started_by.clone()),
        package_name: Set(op.package_name.clone()),
    }
}

fn outbox_row(m: &OutboxMessage) -> outbox::ActiveModel {
    outbox::ActiveModel {
        id: Set(m.id),
        queue: Set(m.queue.clone()),
        payload: Set(m.payload.clone()),
        created_at: Set(m.created_at),
        locked_until: Set(None),
        headers: Set((!m.headers.is_empty())
            .then(|| serde_json::to_string(&m.headers).expect("headers serialise"))),
    }
}

/// Starts a name-level operation and its outbox message in one transaction; the
/// one-unfinished-prune-per-name index refuses a second.
pub(super) async fn start_on_name(
    db: &DatabaseConnection,
    op: &Operation,
    message: &OutboxMessage,
) -> Result<(), StartError> {
    let name = op.package_name.as_deref().ok_or(StartError::NotFound)?;
    let txn = begin_write(db)
        .await
        .map_err(repo_err)
        .map_err(StartError::Repo)?;
    let known = package_name::Entity::find_by_id(name.to_owned())
        .one(&txn)
        .await
        .map_err(|e| StartError::Repo(repo_err(e)))?;
    if known.is_none() {
        return Err(StartError::NotFound);
    }
    match operation::Entity::insert(operation_row(op))
        .exec_without_returning(&txn)
        .await
    {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            drop(txn);
            let busy = operation::Entity::find()
                .select_only()
                .column(operation::Column::Id)
                .filter(operation::Column::PackageName.eq(name))
                .filter(operation::Column::Kind.eq(op.kind.as_str()))
                .filter(not_finished())
                .into_tuple::<Uuid>()
                .one(db)
                .await
                .ok()
                .flatten();
            return Err(StartError::Busy(busy.unwrap_or(Uuid::nil())));
        }
        Err(e) => return Err(StartError::Repo(repo_err(e))),
    }
    outbox::Entity::insert(outbox_row(message))
        .exec_without_returning(&txn)
        .await
        .map_err(|e| StartError::Repo(repo_err(e)))?;
    txn.commit()
        .await
        .map_err(|e| StartError::Repo(repo_err(e)))
}
