//! Access tokens are stateless, so by themselves they stay valid until they expire, even after
//! their user was disabled or lost a role. Every process therefore keeps, for as long as an
//! access token lives, the moment each recently changed user changed, and refuses that user's
//! tokens issued before it: the client refreshes (which checks the account afresh) or signs in
//! again. A change made in this process counts at once; one made in another process arrives with
//! the next poll of the users' change times (every [`POLL_INTERVAL`]).

use crate::ports::UserRepository;
use chrono::{DateTime, Duration, Utc};
use depot_core::{Clock, RepoError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

/// How often each process reads which users changed.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Each poll reads again this far back, for changes whose transactions committed late and for
/// clocks a little apart between processes.
const OVERLAP: Duration = Duration::seconds(5);

pub struct Revocations {
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
    /// An access token's lifetime: older changes concern only expired tokens.
    keep: Duration,
    changed: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    /// Where the next poll starts; the first one reads a whole token lifetime back.
    since: Mutex<Option<DateTime<Utc>>>,
}

impl Revocations {
    pub fn new(users: Arc<dyn UserRepository>, clock: Arc<dyn Clock>, keep: Duration) -> Self {
        Self {
            users,
            clock,
            keep,
            changed: RwLock::new(HashMap::new()),
            since: Mutex::new(None),
        }
    }

    /// The user changed at `at` (role, disabled, sign-in method): tokens issued before are void.
    pub fn note(&self, user: Uuid, at: DateTime<Utc>) {
        let mut changed = self.changed.write().expect("revocations lock");
        let entry = changed.entry(user).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// Whether a token of `user` issued at `issued_at_ms` (milliseconds since the epoch)
    /// predates a change of the user. (Whole seconds, as `iat` has, let a token issued in the
    /// second of a disabling live on: refreshing every second kept one valid.)
    pub fn revokes(&self, user: Uuid, issued_at_ms: i64) -> bool {
        self.changed
            .read()
            .expect("revocations lock")
            .get(&user)
            .is_some_and(|at| issued_at_ms < at.timestamp_millis())
    }

    /// Reads the users changed since the last poll and forgets changes older than a token's
    /// lifetime. Returns how many changes it read.
    pub async fn poll(&self) -> Result<usize, RepoError> {
        let now = self.clock.now();
        let since = self
            .since
            .lock()
            .expect("revocations lock")
            .unwrap_or(now - self.keep);
        let changes = self.users.changed_since(since - OVERLAP).await?;
        for (user, at) in &changes {
            self.note(*user, *at);
        }
        *self.since.lock().expect("revocations lock") = Some(now);
        let horizon = now - self.keep - OVERLAP;
        self.changed
            .write()
            .expect("revocations lock")
            .retain(|_, at| *at > horizon);
        Ok(changes.len())
    }

    /// Polls every [`POLL_INTERVAL`] until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.poll().await {
                        tracing::warn!(error = %e, "reading changed users failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Email, Identity, User};
    use crate::ports::{InsertUserError, UpdateUserError, UserPatch};
    use async_trait::async_trait;
    use chrono::TimeZone;
    use depot_core::{Page, PageRequest};

    /// Answers `changed_since` from a fixed list, honouring `since`.
    struct Changes(Vec<(Uuid, DateTime<Utc>)>);

    #[async_trait]
    impl UserRepository for Changes {
        async fn insert(&self, _: &User, _: Option<&Identity>) -> Result<(), InsertUserError> {
            unreachable!()
        }
        async fn get(&self, _: Uuid) -> Result<User, RepoError> {
            unreachable!()
        }
        async fn find_by_email(&self, _: &Email) -> Result<Option<User>, RepoError> {
            unreachable!()
        }
        async fn find_by_identity(&self, _: &Identity) -> Result<Option<User>, RepoError> {
            unreachable!()
        }
        async fn link_identity(
            &self,
            _: Uuid,
            _: &Identity,
            _: DateTime<Utc>,
            _: &depot_core::AuditEvent,
        ) -> Result<User, InsertUserError> {
            unreachable!()
        }
        async fn list(&self, _: &PageRequest) -> Result<Page<User>, RepoError> {
            unreachable!()
        }
        async fn update(
            &self,
            _: Uuid,
            _: &UserPatch,
            _: Option<i64>,
            _: DateTime<Utc>,
            _: &depot_core::AuditEvent,
        ) -> Result<User, UpdateUserError> {
            unreachable!()
        }
        async fn changed_since(
            &self,
            since: DateTime<Utc>,
        ) -> Result<Vec<(Uuid, DateTime<Utc>)>, RepoError> {
            Ok(self
                .0
                .iter()
                .copied()
                .filter(|(_, at)| *at > since)
                .collect())
        }
    }

    struct At(DateTime<Utc>);
    impl Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn tokens_issued_before_a_change_are_void_to_the_millisecond() {
        let r = Revocations::new(
            Arc::new(Changes(vec![])),
            Arc::new(At(at(0))),
            Duration::minutes(15),
        );
        let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        let change = at(10) + Duration::milliseconds(400);
        r.note(user, change);
        assert!(r.revokes(user, ms(at(9))));
        // The review's dodge: issued in the same second, before the change.
        assert!(
            r.revokes(user, ms(at(10) + Duration::milliseconds(200))),
            "issued in the second of the change, before it"
        );
        assert!(!r.revokes(user, ms(change)), "issued at the change");
        assert!(!r.revokes(user, ms(change + Duration::milliseconds(1))));
        assert!(!r.revokes(other, ms(at(0))), "another user");
        r.note(user, at(5));
        assert!(
            r.revokes(user, ms(at(9))),
            "an older change does not undo a newer"
        );
    }

    #[tokio::test]
    async fn polls_read_changes_made_elsewhere_within_a_token_lifetime() {
        let (recent, old) = (Uuid::now_v7(), Uuid::now_v7());
        let now = at(3600);
        let changes = Changes(vec![
            (recent, now - Duration::minutes(1)),
            (old, now - Duration::hours(1)),
        ]);
        let r = Revocations::new(Arc::new(changes), Arc::new(At(now)), Duration::minutes(15));
        assert_eq!(
            r.poll().await.unwrap(),
            1,
            "the first poll reads one token lifetime back"
        );
        assert!(r.revokes(recent, (now - Duration::minutes(2)).timestamp_millis()));
        assert!(
            !r.revokes(old, (now - Duration::hours(2)).timestamp_millis()),
            "long expired anyway"
        );
    }

    #[tokio::test]
    async fn changes_older_than_a_token_lifetime_are_forgotten() {
        let user = Uuid::now_v7();
        let now = at(3600);
        let r = Revocations::new(
            Arc::new(Changes(vec![])),
            Arc::new(At(now)),
            Duration::minutes(15),
        );
        r.note(user, now - Duration::minutes(30));
        r.poll().await.unwrap();
        assert!(!r.revokes(user, (now - Duration::hours(1)).timestamp_millis()));
        assert!(r.changed.read().unwrap().is_empty());
    }
}
