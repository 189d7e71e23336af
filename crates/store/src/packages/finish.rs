//! Finishing operations exactly once, with the package's status change.

use super::*;

/// Ends operations exactly once, in one transaction. The operations that succeeded are made
/// final first, conditional on still running: that locks them and says which were. Their
/// packages then move, conditional on their status; an operation whose package moved away
/// meanwhile fails with `invalid_transition` instead. Failures and cancellations follow, one
/// statement each (they are rare). Of several calls for one operation (redeliveries), the
/// first to make it final gets it; the others get `None`, as does any call for an operation
/// that was no longer running.
pub(super) async fn finish_batch(
    db: &DatabaseConnection,
    calls: Vec<FinishCall>,
) -> Vec<Result<Option<Operation>, RepoError>> {
    each_alone_on_failure(
        "finish",
        &calls,
        |calls| {
            Box::pin(async move {
                Ok(finish_batch_inner(db, calls)
                    .await?
                    .into_iter()
                    .map(Ok)
                    .collect())
            })
        },
        Err,
    )
    .await
}

pub(super) async fn finish_batch_inner(
    db: &DatabaseConnection,
    calls: &[FinishCall],
) -> Result<Vec<Option<Operation>>, RepoError> {
    let Some(now) = calls.iter().map(|c| c.now).max() else {
        return Ok(Vec::new());
    };
    let backend = db.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        return finish_batch_postgres(db, calls, now).await;
    }
    let txn = begin_write(db).await.map_err(repo_err)?;
    let mut ending = Ending::default();
    let succeeded = succeeded_ids(calls);
    if !succeeded.is_empty() {
        for m in final_update("succeeded", None, now)
            .col_expr(operation::Column::Progress, Expr::value(100i16))
            .filter(any_of(backend, operation::Column::Id, succeeded))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?
        {
            ending.succeeded(calls, m);
        }
    }
    for kind in OperationKind::ALL {
        let packages: HashMap<Uuid, Uuid> = ending
            .ended
            .values()
            .filter(|m| m.kind == kind.as_str())
            .filter_map(|m| Some((m.package_id?, m.id)))
            .collect();
        if packages.is_empty() {
            continue;
        }
        let (from, to) = kind.transition();
        // One active version per name: activating a version makes the name's active one
        // Downloaded in this transaction (the index refuses two; two activations of one name in
        // one batch fail it, and each is then finished alone, one after the other).
        let mut replaced: HashMap<String, (Uuid, String)> = HashMap::new();
        if kind == OperationKind::Activate {
            let names: Vec<String> = package::Entity::find()
                .select_only()
                .column(package::Column::Name)
                .filter(any_of(
                    backend,
                    package::Column::Id,
                    packages.keys().copied(),
                ))
                .filter(package::Column::Status.eq(from.as_str()))
                .into_tuple()
                .all(&txn)
                .await
                .map_err(repo_err)?;
            if !names.is_empty() {
                for m in package::Entity::update_many()
                    .col_expr(
                        package::Column::Status,
                        Expr::value(PackageStatus::Downloaded.as_str()),
                    )
                    .changed(now)
                    .filter(package::Column::Status.eq(PackageStatus::Active.as_str()))
                    .filter(package::Column::Name.is_in(names))
                    .exec_with_returning(&txn)
                    .await
                    .map_err(repo_err)?
                {
                    replaced.insert(m.name, (m.id, m.version));
                }
            }
        }
        let mut update = package::Entity::update_many();
        if from == PackageStatus::Created {
            // Leaving Created seals the verified fields for good.
            update = update.col_expr(
                package::Column::SealedAt,
                Expr::col(package::Column::SealedAt).if_null(now),
            );
        }
        let moved_rows = update
            .col_expr(package::Column::Status, Expr::value(to.as_str()))
            .changed(now)
            .filter(any_of(
                backend,
                package::Column::Id,
                packages.keys().copied(),
            ))
            .filter(package::Column::Status.eq(from.as_str()))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?;
        let moved: HashSet<Uuid> = moved_rows.iter().map(|m| m.id).collect();
        if kind != OperationKind::Download && !moved_rows.is_empty() {
            let history = moved_rows.into_iter().map(|p| {
                let op = &ending.ended[&packages[&p.id]];
                let this = (p.id, p.version);
                let (from, to) = match kind {
                    OperationKind::Activate => (replaced.remove(&p.name), Some(this)),
                    _ => (Some(this), None),
                };
                activation_row(p.name, from, to, op, now)
            });
            package_activation::Entity::insert_many(history)
                .exec_without_returning(&txn)
                .await
                .map_err(repo_err)?;
        }
        for (package_id, op_id) in packages {
            if moved.contains(&package_id) {
                continue;
            }
            // The package left `from` while its operation ran (nothing in Depot does that
            // while an operation is active; a hand-edited database could).
            let progress = calls[ending.winner[&op_id]].op.progress;
            let error = OperationError {
                code: "invalid_transition".into(),
                detail: format!(
                    "the package was no longer {} when the {} finished",
                    from.as_str(),
                    kind.as_str()
                ),
            };
            let failed = operation::Entity::update_many()
                .col_expr(operation::Column::Status, Expr::value("failed"))
                .col_expr(
                    operation::Column::Progress,
                    Expr::value(i16::from(progress)),
                )
                .col_expr(operation::Column::ErrorCode, Expr::value(Some(error.code)))
                .col_expr(
                    operation::Column::ErrorDetail,
                    Expr::value(Some(error.detail)),
                )
                .filter(operation::Column::Id.eq(op_id))
                .exec_with_returning(&txn)
                .await
                .map_err(repo_err)?;
            if let Some(m) = failed.into_iter().next() {
                ending.ended.insert(op_id, m);
            }
        }
    }
    ending.the_others(&txn, calls, now).await?;
    txn.commit().await.map_err(repo_err)?;
    ending.answers(calls)
}

/// The history row of a name's change by `op`: from one version (or none) to another (or none).
fn activation_row(
    name: String,
    from: Option<(Uuid, String)>,
    to: Option<(Uuid, String)>,
    op: &operation::Model,
    now: DateTime<Utc>,
) -> package_activation::ActiveModel {
    let (from_id, from_version) = from.unzip();
    let (to_id, to_version) = to.unzip();
    package_activation::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        from_package_id: Set(from_id),
        from_version: Set(from_version),
        to_package_id: Set(to_id),
        to_version: Set(to_version),
        operation_id: Set(Some(op.id)),
        actor: Set(op.started_by.clone()),
        at: Set(now),
    }
}

/// One active version per name: an activation makes the name's active version Downloaded in
/// the finishing statement (the `active_versions` triggers refuse two active versions of a
/// name; two activations of one name in a batch fail it, and each is then finished alone).
const SWITCH_CTES: &str = "a AS (SELECT p.id, p.name FROM packages p JOIN r ON p.id = r.package_id
                          WHERE r.kind = 'activate' AND p.status = 'downloaded'),
                    d AS (UPDATE packages p SET status = 'downloaded', revision = p.revision + 1,
                          updated_at = $2 FROM a
                          WHERE p.name = a.name AND p.status = 'active' AND p.id <> a.id
                          RETURNING p.id, p.name, p.version),";

/// The name's history: each activation (from the version it replaced) and deactivation. Its id
/// (the history's order) is a UUIDv7 made as the row is written, from `clock_timestamp()` to
/// the microsecond (milliseconds, then the fraction in the 12 bits after the version): a
/// switch that read the name after another one committed has the later id. (Ids made before
/// the statement ran, as they were, could order two switches against their commits: a
/// statement waiting for a connection read the name after a later-made id committed.)
const HISTORY_CTE: &str = "h AS (INSERT INTO package_activations (id, name, from_package_id,
                            from_version, to_package_id, to_version, operation_id, actor, at)
                          SELECT encode(overlay(overlay(uuid_send(gen_random_uuid())
                                    PLACING substring(int8send(floor(c.t * 1000)::bigint) FROM 3) FROM 1 FOR 6)
                                    PLACING int2send((28672 | floor((c.t * 1000 - floor(c.t * 1000)) * 4096)::int)::smallint)
                                    FROM 7 FOR 2), 'hex')::uuid,
                            m.name,
                            CASE WHEN m.kind = 'activate' THEN d.id ELSE m.id END,
                            CASE WHEN m.kind = 'activate' THEN d.version ELSE m.version END,
                            CASE WHEN m.kind = 'activate' THEN m.id END,
                            CASE WHEN m.kind = 'activate' THEN m.version END,
                            m.op_id, m.started_by, $2
                          FROM m LEFT JOIN d ON m.kind = 'activate' AND d.name = m.name
                          -- Per row (it names m), when the row is made.
                          CROSS JOIN LATERAL (SELECT extract(epoch FROM clock_timestamp())::float8 AS t
                                              WHERE m.op_id IS NOT NULL) AS c
                          WHERE m.kind <> 'download'),";

/// `CASE <alias>.kind WHEN 'download' THEN '<status>' ... END`, from the state machine.
pub(super) fn by_kind(alias: &str, status: impl Fn(OperationKind) -> PackageStatus) -> String {
    let arms: String = OperationKind::ALL
        .into_iter()
        .map(|k| format!("WHEN '{}' THEN '{}' ", k.as_str(), status(k).as_str()))
        .collect();
    format!("CASE {alias}.kind {arms}END")
}

/// [`finish_batch`] on PostgreSQL: the succeeded operations in one statement (atomic on its
/// own): lock those still running, move their packages, and make each final: succeeded when
/// its package moved, `invalid_transition` when it had left the expected status.
pub(super) async fn finish_batch_postgres(
    db: &DatabaseConnection,
    calls: &[FinishCall],
    now: DateTime<Utc>,
) -> Result<Vec<Option<Operation>>, RepoError> {
    let mut ending = Ending::default();
    let succeeded = succeeded_ids(calls);
    if !succeeded.is_empty() {
        // Only a batch that activates or deactivates needs the switch and the history: a batch
        // of downloads runs the statement without them.
        let names_change = calls.iter().any(|c| {
            matches!(c.outcome, Outcome::Succeeded) && c.op.kind != OperationKind::Download
        });
        let moved = "o.package_id IN (SELECT id FROM m)";
        let sql = format!(
            r#"WITH r AS (SELECT id, package_id, kind, started_by FROM operations
                          WHERE id = ANY($1) AND status = 'running' ORDER BY id FOR UPDATE),
                    {switch}
                    m AS (UPDATE packages p SET status = {to}, revision = p.revision + 1, updated_at = $2,
                          sealed_at = CASE WHEN p.status = 'created' THEN COALESCE(p.sealed_at, $2) ELSE p.sealed_at END
                          FROM r WHERE p.id = r.package_id AND p.status = {from}
                          RETURNING p.id, p.name, p.version, r.kind, r.id AS op_id, r.started_by),
                    {history}
                    u AS (UPDATE operations o SET
                 status = CASE WHEN {moved} THEN 'succeeded' ELSE 'failed' END,
                 progress = CASE WHEN {moved} THEN 100 ELSE o.progress END,
                 error_code = CASE WHEN {moved} THEN NULL ELSE 'invalid_transition' END,
                 error_detail = CASE WHEN {moved} THEN NULL ELSE 'the package was no longer '
                   || {from_o} || ' when the ' || o.kind || ' finished' END,
                 updated_at = $2, finished_at = $2
               FROM r WHERE o.id = r.id RETURNING o.*),
                    -- Other processes' watches hear of them with this commit (see notify.rs).
                    n AS ({notify})
               SELECT u.* FROM u LEFT JOIN n ON true"#,
            notify = crate::notify::notify_ids("u"),
            switch = if names_change { SWITCH_CTES } else { "" },
            history = if names_change { HISTORY_CTE } else { "" },
            to = by_kind("r", |k| k.transition().1),
            from = by_kind("r", |k| k.transition().0),
            from_o = by_kind("o", |k| k.transition().0),
        );
        let values: Vec<sea_orm::Value> = vec![
            succeeded.into_iter().collect::<Vec<Uuid>>().into(),
            now.into(),
        ];
        let rows = db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(repo_err)?;
        for row in rows {
            let m = operation::Model::from_query_result(&row, "").map_err(repo_err)?;
            ending.succeeded(calls, m);
        }
    }
    let announced: HashSet<Uuid> = ending.ended.keys().copied().collect();
    ending.the_others(db, calls, now).await?;
    // Failures and cancellations (rare) are announced apart, without holding up the answers.
    let others: Vec<Uuid> = ending
        .ended
        .keys()
        .filter(|id| !announced.contains(id))
        .copied()
        .collect();
    crate::notify::announce_later(db, others);
    ending.answers(calls)
}

pub(super) fn succeeded_ids(calls: &[FinishCall]) -> HashSet<Uuid> {
    calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Succeeded))
        .map(|c| c.op.id)
        .collect()
}

/// What a finish batch ended: which call made each operation final, and the operation as it
/// ended.
#[derive(Default)]
pub(super) struct Ending {
    winner: HashMap<Uuid, usize>,
    ended: HashMap<Uuid, operation::Model>,
}

impl Ending {
    /// `m` ended successfully: it is answered to the first call that asked for that.
    fn succeeded(&mut self, calls: &[FinishCall], m: operation::Model) {
        let first = calls
            .iter()
            .position(|c| c.op.id == m.id && matches!(c.outcome, Outcome::Succeeded))
            .expect("a returned operation was asked for");
        self.winner.insert(m.id, first);
        self.ended.insert(m.id, m);
    }

    /// Failures and cancellations (rare: one statement each), for operations no call of this
    /// batch has ended yet.
    async fn the_others(
        &mut self,
        conn: &impl ConnectionTrait,
        calls: &[FinishCall],
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        for (i, c) in calls.iter().enumerate() {
            let (status, error) = match &c.outcome {
                Outcome::Succeeded => continue,
                Outcome::Failed(e) => ("failed", Some(e)),
                Outcome::Cancelled => ("cancelled", None),
            };
            if self.winner.contains_key(&c.op.id) {
                continue;
            }
            if let Some(m) = final_update(status, error, now)
                .filter(operation::Column::Id.eq(c.op.id))
                .exec_with_returning(conn)
                .await
                .map_err(repo_err)?
                .into_iter()
                .next()
            {
                self.winner.insert(m.id, i);
                self.ended.insert(m.id, m);
            }
        }
        Ok(())
    }

    /// Each call's answer: the ended operation for the call that ended it, `None` for the
    /// others.
    fn answers(mut self, calls: &[FinishCall]) -> Result<Vec<Option<Operation>>, RepoError> {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| match self.winner.get(&c.op.id) {
                Some(&w) if w == i => self.ended.remove(&c.op.id).map(operation_of).transpose(),
                _ => Ok(None),
            })
            .collect()
    }
}

/// The update making a running operation final (rows locked by the caller).
pub(super) fn final_update(
    status: &'static str,
    error: Option<&OperationError>,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<operation::Entity> {
    operation::Entity::update_many()
        .col_expr(operation::Column::Status, Expr::value(status))
        .col_expr(
            operation::Column::ErrorCode,
            Expr::value(error.map(|e| e.code.clone())),
        )
        .col_expr(
            operation::Column::ErrorDetail,
            Expr::value(error.map(|e| e.detail.clone())),
        )
        .col_expr(operation::Column::UpdatedAt, Expr::value(now))
        .col_expr(operation::Column::FinishedAt, Expr::value(Some(now)))
        .filter(operation::Column::Status.eq("running"))
}

/// Ends a running prune with success and moves the versions it takes back to Created, in one
/// transaction, removing their files before it commits (see `OperationRepository::finish_prune`).
pub(super) async fn finish_prune(
    db: &DatabaseConnection,
    op: &Operation,
    ids: &[Uuid],
    now: DateTime<Utc>,
    files: &dyn depot_packages::ports::ArtifactFiles,
) -> Result<Option<(Operation, Vec<Uuid>)>, RepoError> {
    let backend = db.get_database_backend();
    let txn = begin_write(db).await.map_err(repo_err)?;
    if backend == DatabaseBackend::Postgres && !ids.is_empty() {
        // A start holds its package KEY SHARE until it commits: this waits for those under way,
        // and holds new ones off until this commits (on SQLite the write transaction already
        // excludes them). The statements after it read what they committed.
        package::Entity::find()
            .select_only()
            .column(package::Column::Id)
            .filter(any_of(backend, package::Column::Id, ids.iter().copied()))
            .lock(LockType::Update)
            .into_tuple::<Uuid>()
            .all(&txn)
            .await
            .map_err(repo_err)?;
    }
    // The operation, conditional on running: that says whether it still was.
    let Some(ended) = final_update("succeeded", None, now)
        .col_expr(operation::Column::Progress, Expr::value(100i16))
        .filter(operation::Column::Id.eq(op.id))
        .exec_with_returning(&txn)
        .await
        .map_err(repo_err)?
        .pop()
    else {
        return Ok(None);
    };
    let pruned: Vec<Uuid> = if ids.is_empty() {
        Vec::new()
    } else {
        // A version with an operation unfinished (an activation started meanwhile) stays.
        let busy = sea_orm::sea_query::Query::select()
            .column(operation::Column::PackageId)
            .from(operation::Entity)
            .and_where(Expr::col(operation::Column::PackageId).is_not_null())
            .and_where(not_finished())
            .to_owned();
        package::Entity::update_many()
            .col_expr(package::Column::Status, Expr::value("created"))
            // Its bytes go: a signature verified against them is no longer verified.
            .col_expr(
                package::Column::SignatureVerifiedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                package::Column::Revision,
                Expr::col(package::Column::Revision).add(1),
            )
            .col_expr(package::Column::UpdatedAt, Expr::value(now))
            .filter(any_of(backend, package::Column::Id, ids.iter().copied()))
            .filter(package::Column::Status.eq("downloaded"))
            .filter(package::Column::YankedAt.is_null())
            .filter(package::Column::Id.not_in_subquery(busy))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    // Their files go while the rows are held: no download or activation of them starts before
    // the commit. (A crash here leaves a Downloaded version without its artifact, which
    // `depot fsck` reports and repairs; a file that cannot be removed stays, logged.)
    for id in &pruned {
        if let Err(e) = files.remove(*id).await {
            tracing::warn!(package_id = %id, error = %e, "removing a pruned version's files failed");
        }
    }
    txn.commit().await.map_err(repo_err)?;
    crate::notify::announce_later(db, vec![op.id]);
    Ok(Some((operation_of(ended)?, pruned)))
}
