//! The hot path: verifying a presented key without touching the database on every request.
//!
//! * Verified keys are cached in memory (by hash) for `cache_ttl`; unknown hashes for a few
//!   seconds, so a flood of well-formed garbage does not become a flood of queries. Both caches
//!   are bounded ([`MAX_CACHED_KEYS`], [`MAX_CACHED_UNKNOWN`]): random checksum-valid keys cost a
//!   query each at worst (throttled per address by the API), never unbounded memory.
//! * A revoke/delete/rotate evicts the key at once in the process that did it, and every replica
//!   polls the change log every `poll_interval` (default 250 ms) and evicts what changed: the
//!   change reaches every replica in well under a second, whatever the queue or database.
//! * Usage (counts and request records) accumulates in memory and is written in one batch every
//!   `flush_interval`, with atomic increments; a failed flush is merged back, and shutdown
//!   flushes what is left.
//! * The per-key rate limit is a fixed one-minute window per replica.

use crate::key::{KeyHash, PlainKey};
use crate::model::{ApiKey, KeyStatus, UsageRecord};
use crate::ports::{ApiKeyRepository, UsageBatch};
use chrono::{DateTime, Duration, Utc};
use depot_core::{Clock, Principal, PrincipalKind, RepoError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Records kept in memory while the database cannot take them; beyond this the oldest records
/// are dropped (counts are never dropped).
const MAX_PENDING_RECORDS: usize = 100_000;
const NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Verified keys kept in memory at most (the least recently used go first).
pub const MAX_CACHED_KEYS: u64 = 100_000;
/// Unknown key hashes remembered at most.
pub const MAX_CACHED_UNKNOWN: u64 = 10_000;
/// Overlap when polling the change log, for transactions that commit late.
const POLL_OVERLAP: Duration = Duration::seconds(2);

#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub cache_ttl: std::time::Duration,
    pub poll_interval: std::time::Duration,
    pub flush_interval: std::time::Duration,
    pub usage_retention_days: i64,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        Self {
            cache_ttl: std::time::Duration::from_secs(60),
            poll_interval: std::time::Duration::from_millis(250),
            flush_interval: std::time::Duration::from_secs(1),
            usage_retention_days: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the key is not a well-formed Depot API key")]
    Malformed,
    #[error("the key is not valid")]
    Unknown,
    #[error("the key has been revoked")]
    Revoked,
    #[error("the key has expired")]
    Expired,
    #[error("the key's rate limit of {limit} requests per minute is exhausted")]
    RateLimited { limit: u32, retry_after: u64 },
    #[error("keys cannot be verified right now")]
    Unavailable(#[source] RepoError),
}

/// Rate-limit state after a request, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: u32,
    pub remaining: u32,
    pub reset_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct Verified {
    pub key_id: Uuid,
    pub principal: Principal,
    pub rate: Option<RateState>,
}

struct Window {
    minute: i64,
    count: u32,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct VerifierStats {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

pub struct Verifier {
    repo: Arc<dyn ApiKeyRepository>,
    clock: Arc<dyn Clock>,
    settings: VerifierSettings,
    /// Keys found, by hash.
    cache: moka::sync::Cache<KeyHash, ApiKey>,
    /// Hashes no key has, briefly.
    unknown: moka::sync::Cache<KeyHash, ()>,
    windows: Mutex<HashMap<Uuid, Window>>,
    pending: Mutex<UsageBatch>,
    /// Serialises flushes (background loop and shutdown).
    flushing: tokio::sync::Mutex<()>,
    last_poll: Mutex<DateTime<Utc>>,
    pub stats: VerifierStats,
}

impl Verifier {
    pub fn new(
        repo: Arc<dyn ApiKeyRepository>,
        clock: Arc<dyn Clock>,
        settings: VerifierSettings,
    ) -> Self {
        let now = clock.now();
        let cache_ttl = settings.cache_ttl;
        Self {
            repo,
            clock,
            settings,
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_CACHED_KEYS)
                .time_to_live(cache_ttl)
                .support_invalidation_closures()
                .build(),
            unknown: moka::sync::Cache::builder()
                .max_capacity(MAX_CACHED_UNKNOWN)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            windows: Mutex::new(HashMap::new()),
            pending: Mutex::new(UsageBatch::default()),
            flushing: tokio::sync::Mutex::new(()),
            last_poll: Mutex::new(now),
            stats: VerifierStats::default(),
        }
    }

    fn cached(&self, hash: &KeyHash) -> Option<Option<ApiKey>> {
        if let Some(key) = self.cache.get(hash) {
            return Some(Some(key));
        }
        self.unknown.get(hash).map(|()| None)
    }

    /// Checks a presented key: format and checksum first, then the cache, then the database.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, raw: &str) -> Result<Verified, VerifyError> {
        let plain = PlainKey::parse(raw).map_err(|_| VerifyError::Malformed)?;
        let hash = plain.hash();
        let key = match self.cached(&hash) {
            Some(k) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                k
            }
            None => {
                self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                let loaded = self
                    .repo
                    .find_by_hash(&hash)
                    .await
                    .map_err(VerifyError::Unavailable)?;
                match &loaded {
                    Some(key) => self.cache.insert(hash, key.clone()),
                    None => self.unknown.insert(hash, ()),
                }
                loaded
            }
        };
        let key = key.ok_or(VerifyError::Unknown)?;
        let now = self.clock.now();
        match key.status(now) {
            KeyStatus::Revoked => return Err(VerifyError::Revoked),
            KeyStatus::Expired => return Err(VerifyError::Expired),
            KeyStatus::Active => {}
        }
        let rate = match key.rate_limit_per_minute {
            None => None,
            Some(limit) => Some(self.take_rate(key.id, limit, now)?),
        };
        Ok(Verified {
            key_id: key.id,
            principal: Principal {
                kind: PrincipalKind::ApiKey {
                    key_id: key.id,
                    lineage_id: key.lineage_id,
                },
                scopes: key.scopes.clone(),
            },
            rate,
        })
    }

    fn take_rate(
        &self,
        id: Uuid,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<RateState, VerifyError> {
        let ts = now.timestamp();
        let minute = ts.div_euclid(60);
        let reset_seconds = (60 - ts.rem_euclid(60)) as u64;
        let mut windows = self.windows.lock().expect("windows lock");
        let w = windows.entry(id).or_insert(Window { minute, count: 0 });
        if w.minute != minute {
            w.minute = minute;
            w.count = 0;
        }
        if w.count >= limit {
            return Err(VerifyError::RateLimited {
                limit,
                retry_after: reset_seconds,
            });
        }
        w.count += 1;
        Ok(RateState {
            limit,
            remaining: limit - w.count,
            reset_seconds,
        })
    }

    /// Records one request made with a key (written at the next flush).
    pub fn record_use(&self, record: UsageRecord) {
        let mut pending = self.pending.lock().expect("usage lock");
        let entry = pending
            .counts
            .entry(record.key_id)
            .or_insert((0, record.at));
        entry.0 += 1;
        entry.1 = entry.1.max(record.at);
        if pending.records.len() >= MAX_PENDING_RECORDS {
            pending.records.remove(0);
        }
        pending.records.push(record);
    }

    /// Writes pending usage. On failure the batch is merged back, so nothing is lost.
    pub async fn flush(&self) -> Result<(), RepoError> {
        let _guard = self.flushing.lock().await;
        let batch = std::mem::take(&mut *self.pending.lock().expect("usage lock"));
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.repo.record_usage(&batch).await {
            let mut pending = self.pending.lock().expect("usage lock");
            for (id, (n, at)) in batch.counts {
                let entry = pending.counts.entry(id).or_insert((0, at));
                entry.0 += n;
                entry.1 = entry.1.max(at);
            }
            let mut records = batch.records;
            records.append(&mut pending.records);
            let excess = records.len().saturating_sub(MAX_PENDING_RECORDS);
            records.drain(..excess);
            pending.records = records;
            return Err(e);
        }
        Ok(())
    }

    /// Evicts a key from this process's cache (after a change made here).
    pub fn invalidate(&self, key_id: Uuid) {
        // Applied before the next read of any matching entry.
        let _ = self
            .cache
            .invalidate_entries_if(move |_, key| key.id == key_id);
    }

    /// Evicts every key the change log says changed since the last poll.
    pub async fn poll_changes(&self) -> Result<usize, RepoError> {
        let started = self.clock.now();
        let since = *self.last_poll.lock().expect("poll lock") - POLL_OVERLAP;
        let changed = self.repo.changed_since(since).await?;
        for id in &changed {
            self.invalidate(*id);
        }
        *self.last_poll.lock().expect("poll lock") = started;
        Ok(changed.len())
    }

    /// Deletes usage older than the retention and change-log rows older than an hour.
    pub async fn purge(&self) -> Result<u64, RepoError> {
        let now = self.clock.now();
        self.repo
            .purge(
                now - Duration::days(self.settings.usage_retention_days),
                now - Duration::hours(1),
            )
            .await
    }

    /// Runs polling, flushing and hourly purging until `stop` turns true, then flushes.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(self.settings.poll_interval);
        // The first flush is one interval after start (an immediate one has nothing to write,
        // and if it is scheduled late it writes the first requests early).
        let mut flush = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.flush_interval,
            self.settings.flush_interval,
        );
        let mut purge = tokio::time::interval(std::time::Duration::from_secs(3600));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = poll.tick() => {
                    if let Err(e) = self.poll_changes().await {
                        tracing::warn!(error = %e, "polling API-key changes failed");
                    }
                }
                _ = flush.tick() => {
                    if let Err(e) = self.flush().await {
                        tracing::warn!(error = %e, "writing API-key usage failed; kept for the next try");
                    }
                }
                _ = purge.tick() => {
                    match self.purge().await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "purged old API-key usage"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "purging API-key usage failed"),
                    }
                }
            }
        }
        self.final_flush().await;
    }

    /// The last flush, on the way out. It is the last chance for what is pending, so a failure
    /// is tried again: at shutdown a pooled connection can fail once (one opened by an HTTP
    /// worker whose runtime has just stopped), and the pool replaces it on the next try.
    async fn final_flush(&self) {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match self.flush().await {
                Ok(()) => return,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "the final API-key usage flush failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                        .await;
                }
                Err(e) => {
                    let uses: i64 = self
                        .pending
                        .lock()
                        .expect("usage lock")
                        .counts
                        .values()
                        .map(|(n, _)| *n)
                        .sum();
                    tracing::error!(error = %e, uses, "the final API-key usage flush failed; these uses are not counted");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AuditEvent;
    use crate::ports::{KeyChange, KeyFilter, NewApiKey};
    use depot_core::{Page, PageRequest, SystemClock};
    use std::sync::atomic::AtomicU32;

    /// The review's memory growth: 120k random checksum-valid keys grew the process by ~70 MB,
    /// never released. The caches are bounded: well-formed garbage costs a lookup, not memory.
    #[tokio::test]
    async fn unknown_keys_are_remembered_only_up_to_a_bound() {
        let store = Arc::new(crate::fakes::InMemoryKeys::default());
        let verifier = Verifier::new(store, Arc::new(SystemClock), Default::default());
        let mut rng = rand::rng();
        let n = MAX_CACHED_UNKNOWN as usize * 3;
        for _ in 0..n {
            let raw = PlainKey::generate(&mut rng);
            let r = verifier.verify(raw.expose()).await;
            assert!(matches!(r, Err(VerifyError::Unknown)), "{r:?}");
        }
        verifier.unknown.run_pending_tasks();
        assert!(
            verifier.unknown.entry_count() <= MAX_CACHED_UNKNOWN,
            "{} unknown hashes kept",
            verifier.unknown.entry_count()
        );
        // A repeated unknown key within the negative TTL is answered from memory.
        let raw = PlainKey::generate(&mut rng);
        let misses = || verifier.stats.cache_misses.load(Ordering::Relaxed);
        let _ = verifier.verify(raw.expose()).await;
        let before = misses();
        let _ = verifier.verify(raw.expose()).await;
        assert_eq!(misses(), before);
    }

    /// Usage writes fail `failures` times, then are kept; nothing else is called.
    #[derive(Default)]
    struct FlakyUsage {
        failures: AtomicU32,
        attempts: AtomicU32,
        written: Mutex<Vec<UsageBatch>>,
    }

    #[async_trait::async_trait]
    impl ApiKeyRepository for FlakyUsage {
        async fn insert(&self, _: &NewApiKey, _: &AuditEvent) -> Result<(), RepoError> {
            unreachable!()
        }
        async fn get(&self, _: Uuid) -> Result<ApiKey, RepoError> {
            unreachable!()
        }
        async fn find_by_hash(&self, _: &KeyHash) -> Result<Option<ApiKey>, RepoError> {
            unreachable!()
        }
        async fn list(
            &self,
            _: &KeyFilter,
            _: &PageRequest,
            _: DateTime<Utc>,
        ) -> Result<Page<ApiKey>, RepoError> {
            unreachable!()
        }
        async fn change(
            &self,
            _: Uuid,
            _: &KeyChange,
            _: Option<i64>,
            _: DateTime<Utc>,
            _: &AuditEvent,
        ) -> Result<ApiKey, crate::ports::KeyWriteError> {
            unreachable!()
        }
        async fn rotate(
            &self,
            _: Uuid,
            _: i64,
            _: Option<DateTime<Utc>>,
            _: &NewApiKey,
            _: DateTime<Utc>,
            _: &AuditEvent,
        ) -> Result<(), crate::ports::KeyWriteError> {
            unreachable!()
        }
        async fn delete(
            &self,
            _: Uuid,
            _: Option<i64>,
            _: DateTime<Utc>,
            _: &AuditEvent,
        ) -> Result<(), crate::ports::KeyWriteError> {
            unreachable!()
        }
        async fn record_usage(&self, batch: &UsageBatch) -> Result<(), RepoError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(RepoError::Unavailable("connection lost".into()));
            }
            self.written.lock().unwrap().push(UsageBatch {
                counts: batch.counts.clone(),
                records: batch.records.clone(),
            });
            Ok(())
        }
        async fn usage(&self, _: Uuid, _: &PageRequest) -> Result<Page<UsageRecord>, RepoError> {
            unreachable!()
        }
        async fn changed_since(&self, _: DateTime<Utc>) -> Result<Vec<Uuid>, RepoError> {
            Ok(Vec::new())
        }
        async fn purge(&self, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<u64, RepoError> {
            Ok(0)
        }
    }

    /// Records `uses` uses of one key, stops the verifier's loop and returns what reached the
    /// repository and how many writes were tried.
    async fn stop_with_pending(failures: u32, uses: usize) -> (Vec<UsageBatch>, u32) {
        let repo = Arc::new(FlakyUsage {
            failures: AtomicU32::new(failures),
            ..Default::default()
        });
        let settings = VerifierSettings {
            flush_interval: std::time::Duration::from_secs(3600),
            ..Default::default()
        };
        let verifier = Arc::new(Verifier::new(repo.clone(), Arc::new(SystemClock), settings));
        let key_id = Uuid::now_v7();
        for _ in 0..uses {
            verifier.record_use(UsageRecord {
                id: Uuid::now_v7(),
                key_id,
                at: Utc::now(),
                method: "GET".into(),
                route: "/api/v1/auth/whoami".into(),
                status: 200,
                client_ip: None,
                user_agent: None,
            });
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(verifier.run(stopped));
        stop.send(true).unwrap();
        running.await.unwrap();
        let written = std::mem::take(&mut *repo.written.lock().unwrap());
        (written, repo.attempts.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn the_final_flush_tries_again_after_a_failure() {
        let (written, attempts) = stop_with_pending(2, 5).await;
        assert_eq!(attempts, 3);
        assert_eq!(written.len(), 1, "one write, with everything");
        assert_eq!(written[0].records.len(), 5);
        assert_eq!(written[0].counts.values().map(|(n, _)| n).sum::<i64>(), 5);
    }

    #[tokio::test]
    async fn the_final_flush_gives_up_after_three_tries() {
        let (written, attempts) = stop_with_pending(u32::MAX, 5).await;
        assert_eq!(attempts, 3);
        assert!(written.is_empty());
    }

    #[tokio::test]
    async fn the_final_flush_writes_nothing_when_nothing_is_pending() {
        let (written, attempts) = stop_with_pending(0, 0).await;
        assert_eq!((written.len(), attempts), (0, 0));
    }
}
