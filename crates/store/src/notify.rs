//! Operation change notifications on PostgreSQL (`LISTEN`/`NOTIFY`). Whoever ends operations
//! announces their ids, delivered with the commit: the worker's finish batch in its own
//! statement, failures and cancellations just after theirs. Every API process listens and hands
//! them to its operation watch, so an event stream hears of an operation that another process
//! ended at once instead of at the watch's next interval.
//!
//! Best effort by design: a notification lost (the listener reconnecting, a failed announce)
//! costs latency only, because the watch's interval read stays. SQLite has no such channel; its
//! deployments are one process, where the worker tells the watch directly.

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The channel operation ids are announced on.
pub const OPERATIONS_CHANNEL: &str = "depot_operations";

/// The query that announces the ids of `rows` (a relation with an `id` column) in one
/// notification, if there are any. Its payload is the ids joined by commas ([`parse`] reads it):
/// at most 8,000 bytes, so callers announce at most 200 ids at once (37 bytes each; batches are
/// smaller, see `MAX_BATCH`).
pub(crate) fn notify_ids(rows: &str) -> String {
    format!(
        "SELECT pg_notify('{OPERATIONS_CHANNEL}', string_agg(id::text, ',')) FROM {rows} \
         HAVING count(*) > 0"
    )
}

/// Announces that these operations changed, in the background (the caller does not wait).
/// Call after their change committed. Never fails the caller: an error is logged and the
/// watchers' interval read covers it. The finish batch announces in its own statement instead
/// (no extra commit); this is for the rare rest (failures, cancellations).
pub(crate) fn announce_later(db: &DatabaseConnection, ids: Vec<Uuid>) {
    if ids.is_empty() || db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    let db = db.clone();
    tokio::spawn(async move {
        let n = ids.len();
        let sent = db
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                notify_ids("unnest($1::uuid[]) AS t(id)"),
                [ids.into()],
            ))
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, operations = n, "announcing ended operations failed");
        }
    });
}

/// Listens for announced operations and hands each batch of ids to `changed`, until `stop`.
/// Reconnects with backoff when the connection goes. Returns at once on SQLite. Uses a
/// connection of its own (the pool's settings, outside the pool), so it never takes one of the
/// pool's connections away from requests.
pub async fn listen_for_operations(
    db: DatabaseConnection,
    changed: impl Fn(&[Uuid]) + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
) {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    // A pool of one, as `PgListener::connect` makes: the listener reconnects through it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*db.get_postgres_connection_pool().connect_options()).clone());
    let mut backoff = Duration::from_millis(200);
    'connect: loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(OPERATIONS_CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = stop.changed() => break,
            l = listening => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "listening for operation changes failed");
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        loop {
            let next = tokio::select! {
                _ = stop.changed() => break 'connect,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(first)) => {
                    // The connection works: a later failure starts its backoff afresh.
                    backoff = Duration::from_millis(200);
                    let mut ids = parse(first.payload());
                    // Notifications sqlx already buffered join this batch.
                    while let Some(more) = listener.next_buffered() {
                        ids.extend(parse(more.payload()));
                    }
                    changed(&ids);
                }
                // The connection was lost and sqlx opened it again: what was announced in
                // between is lost, and the watch's interval read covers it.
                Ok(None) => {
                    tracing::info!(
                        retry_in_ms = backoff.as_millis() as u64,
                        "the operation listener's connection was lost"
                    );
                    tokio::select! {
                        _ = stop.changed() => break 'connect,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "listening for operation changes stopped; reconnecting");
                    tokio::select! {
                        _ = stop.changed() => break 'connect,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue 'connect;
                }
            }
        }
    }
}

/// The ids of one payload; anything unreadable is skipped (it is only a hint).
fn parse(payload: &str) -> Vec<Uuid> {
    payload
        .split(',')
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_back_to_their_ids_and_garbage_is_skipped() {
        let ids = [Uuid::now_v7(), Uuid::now_v7()];
        let payload = format!("{},{},not-an-id", ids[0], ids[1]);
        assert_eq!(parse(&payload), ids);
        assert!(parse("").is_empty());
    }
}
