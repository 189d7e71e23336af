//! Login throttle states, read and written under a lock.

use super::*;

pub(super) fn state_of(m: &login_throttle::Model) -> ThrottleState {
    ThrottleState {
        failures: m.failures,
        last_failure_at: m.last_failure_at,
        locked_until: m.locked_until,
        last_success_at: m.last_success_at,
    }
}

impl SeaOrmAccountRepository {
    /// In one write transaction: makes sure both rows exist, reads them locked (PostgreSQL
    /// `FOR UPDATE`; SQLite's write transaction is exclusive already), lets `decide` compute the
    /// new states, and stores them.
    async fn with_throttle_rows<T: Send>(
        &self,
        keys: [&[u8; 32]; 2],
        now: DateTime<Utc>,
        decide: impl FnOnce(ThrottleState, ThrottleState) -> (T, Option<[ThrottleState; 2]>) + Send,
    ) -> Result<T, RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        // A fixed order keeps two transactions from locking the rows crosswise.
        let mut ordered = keys;
        ordered.sort();
        for key in ordered {
            login_throttle::Entity::insert(login_throttle::ActiveModel {
                key_hash: Set(key.to_vec()),
                failures: Set(0),
                last_failure_at: Set(now),
                locked_until: Set(None),
                last_success_at: Set(None),
            })
            .on_conflict(
                OnConflict::column(login_throttle::Column::KeyHash)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
        }
        let mut query = login_throttle::Entity::find()
            .filter(login_throttle::Column::KeyHash.is_in(ordered.iter().map(|k| k.to_vec())));
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            query = query.lock_exclusive();
        }
        let rows = query.all(&txn).await.map_err(repo_err)?;
        let find = |key: &[u8; 32]| {
            rows.iter()
                .find(|r| r.key_hash.as_slice() == key.as_slice())
                .map(state_of)
                .unwrap_or_else(|| ThrottleState::fresh(now))
        };
        let (result, store) = decide(find(keys[0]), find(keys[1]));
        if let Some(states) = store {
            for (key, st) in keys.iter().zip(states) {
                login_throttle::Entity::update_many()
                    .col_expr(login_throttle::Column::Failures, Expr::value(st.failures))
                    .col_expr(
                        login_throttle::Column::LastFailureAt,
                        Expr::value(st.last_failure_at),
                    )
                    .col_expr(
                        login_throttle::Column::LockedUntil,
                        Expr::value(st.locked_until),
                    )
                    .col_expr(
                        login_throttle::Column::LastSuccessAt,
                        Expr::value(st.last_success_at),
                    )
                    .filter(login_throttle::Column::KeyHash.eq(key.to_vec()))
                    .exec(&txn)
                    .await
                    .map_err(repo_err)?;
            }
        }
        txn.commit().await.map_err(repo_err)?;
        Ok(result)
    }
}

#[async_trait]
impl ThrottleRepository for SeaOrmAccountRepository {
    async fn attempt(
        &self,
        account: &[u8; 32],
        client: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Decision, RepoError> {
        self.with_throttle_rows([account, client], now, |a, c| {
            let (decision, states) = throttle::attempt(a, c, now);
            (decision, states.map(|(a, c)| [a, c]))
        })
        .await
    }

    async fn succeeded(
        &self,
        account: &[u8; 32],
        client: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.with_throttle_rows([account, client], now, |_, _| {
            let (a, c) = throttle::succeeded(now);
            ((), Some([a, c]))
        })
        .await
    }

    async fn purge(
        &self,
        failures_before: DateTime<Utc>,
        successes_before: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let r = login_throttle::Entity::delete_many()
            .filter(login_throttle::Column::LastFailureAt.lt(failures_before))
            .filter(
                Condition::any()
                    .add(login_throttle::Column::LastSuccessAt.is_null())
                    .add(login_throttle::Column::LastSuccessAt.lt(successes_before)),
            )
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}
