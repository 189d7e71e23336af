//! Claiming operations for a run: pending (or abandoned running) becomes running.

use super::*;

/// Marks pending (or abandoned running) operations running, counts the attempt and reads their
/// packages: on PostgreSQL in one statement, elsewhere in two. Final operations are read and
/// returned unchanged.
pub(super) async fn claim_batch(
    db: &DatabaseConnection,
    calls: Vec<(Uuid, DateTime<Utc>)>,
) -> Vec<Result<Claimed, RepoError>> {
    // Not run call by call on failure: the claim is one UPDATE, which refuses no single row,
    // and it is not one transaction with the reads after it, so running it again would count
    // an attempt twice.
    match claim_batch_inner(db, &calls).await {
        Ok(found) => calls
            .iter()
            .map(|(id, _)| found.get(id).cloned().ok_or(RepoError::NotFound))
            .collect(),
        Err(e) => all_failed(calls.len(), &e),
    }
}

pub(super) async fn claim_batch_inner(
    db: &DatabaseConnection,
    calls: &[(Uuid, DateTime<Utc>)],
) -> Result<HashMap<Uuid, Claimed>, RepoError> {
    let Some(now) = calls.iter().map(|(_, now)| *now).max() else {
        return Ok(HashMap::new());
    };
    let backend = db.get_database_backend();
    let ids: HashSet<Uuid> = calls.iter().map(|(id, _)| *id).collect();
    let mut claimed: HashMap<Uuid, Claimed> = HashMap::new();
    if backend == DatabaseBackend::Postgres {
        let sql = format!(
            r#"WITH c AS (UPDATE operations SET status = 'running', attempts = attempts + 1,
                 updated_at = $2 WHERE id = ANY($1) AND finished_at IS NULL RETURNING *)
               SELECT {}, {} FROM c LEFT JOIN packages p ON p.id = c.package_id"#,
            prefixed::<operation::Entity>("c", "o_"),
            prefixed::<package::Entity>("p", "p_"),
        );
        let rows = db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [
                    ids.iter().copied().collect::<Vec<Uuid>>().into(),
                    now.into(),
                ],
            ))
            .await
            .map_err(repo_err)?;
        for row in rows {
            let op = operation::Model::from_query_result(&row, "o_").map_err(repo_err)?;
            let package =
                package::Model::from_query_result_optional(&row, "p_").map_err(repo_err)?;
            claimed.insert(op.id, claimed_of(op, package)?);
        }
    } else {
        let ops = operation::Entity::update_many()
            .col_expr(operation::Column::Status, Expr::value("running"))
            .col_expr(
                operation::Column::Attempts,
                Expr::col(operation::Column::Attempts).add(1),
            )
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(any_of(backend, operation::Column::Id, ids.iter().copied()))
            .filter(not_finished())
            .exec_with_returning(db)
            .await
            .map_err(repo_err)?;
        let mut packages = rows_by_id::<package::Entity>(
            db,
            package::Column::Id,
            ops.iter().filter_map(|o| o.package_id),
            |m| m.id,
        )
        .await?;
        for op in ops {
            let package = op.package_id.and_then(|id| packages.remove(&id));
            claimed.insert(op.id, claimed_of(op, package)?);
        }
    }
    // Not claimable: final (returned as they are, without their package) or gone.
    let missing: Vec<Uuid> = ids
        .into_iter()
        .filter(|id| !claimed.contains_key(id))
        .collect();
    for (id, op) in operations_by_id(db, missing).await? {
        claimed.insert(id, claimed_of(op, None)?);
    }
    Ok(claimed)
}
