//! Following operations without a query per follower: every event stream (and any other waiter)
//! in a process shares one watch, which reads all followed operations in one query per interval
//! and wakes the followers whose operation changed. A worker in the same process also pushes the
//! final state the moment it writes it, so embedded mode sees no polling delay at all. Writers in
//! other processes are heard through [`OperationWatch::changed`] (fed by the database's change
//! notifications where it has them): the watch reads those operations at once, and the interval
//! read remains for progress and for any notification that was lost.

use crate::model::Operation;
use crate::ports::OperationRepository;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

pub struct OperationWatch {
    operations: Arc<dyn OperationRepository>,
    interval: Duration,
    followed: Mutex<HashMap<Uuid, watch::Sender<Operation>>>,
    wakeup: Notify,
    /// Followed operations another process reported changed, to be read at once.
    due: Mutex<HashSet<Uuid>>,
    nudged: Notify,
}

/// The parts of an operation a follower sees change.
fn state(op: &Operation) -> (crate::OperationStatus, u8, chrono::DateTime<chrono::Utc>) {
    (op.status, op.progress, op.updated_at)
}

impl OperationWatch {
    pub fn new(operations: Arc<dyn OperationRepository>, interval: Duration) -> Self {
        Self {
            operations,
            interval,
            followed: Mutex::new(HashMap::new()),
            wakeup: Notify::new(),
            due: Mutex::new(HashSet::new()),
            nudged: Notify::new(),
        }
    }

    /// These operations changed in another process (committed): the ones followed here are
    /// read at once instead of at the next interval. Cheap for operations nobody follows here.
    pub fn changed(&self, ids: &[Uuid]) {
        let followed = self.followed.lock().expect("watch lock");
        let mut due = self.due.lock().expect("watch lock");
        let before = due.len();
        due.extend(ids.iter().filter(|id| followed.contains_key(id)));
        if due.len() > before {
            self.nudged.notify_one();
        }
    }

    /// Follows an operation from `current` (just read by the caller). The receiver holds the
    /// newest state seen; it closes after the final state, or when the operation is gone.
    pub fn follow(&self, current: Operation) -> watch::Receiver<Operation> {
        if current.status.is_final() {
            // Nothing will change: a closed channel holding the final state.
            return watch::channel(current).1;
        }
        let mut followed = self.followed.lock().expect("watch lock");
        if let Some(tx) = followed.get(&current.id) {
            let rx = tx.subscribe();
            Self::apply(tx, current);
            return rx;
        }
        let (tx, rx) = watch::channel(current.clone());
        followed.insert(current.id, tx);
        drop(followed);
        self.wakeup.notify_one();
        rx
    }

    /// Records a state this process wrote (the embedded worker finishing an operation): the
    /// followers see it at once instead of at the next read.
    pub fn observe(&self, op: &Operation) {
        let mut followed = self.followed.lock().expect("watch lock");
        if let Some(tx) = followed.get(&op.id) {
            Self::apply(tx, op.clone());
            if op.status.is_final() {
                followed.remove(&op.id);
            }
        }
    }

    /// Sends `op` when it is newer than what the followers have; never goes backwards (a read
    /// that raced a pushed final state must not reopen it).
    fn apply(tx: &watch::Sender<Operation>, op: Operation) {
        tx.send_if_modified(|seen| {
            let newer = !seen.status.is_final()
                && state(seen) != state(&op)
                && op.updated_at >= seen.updated_at;
            if newer {
                *seen = op;
            }
            newer
        });
    }

    /// One round: reads every followed operation and wakes the followers of those that changed.
    /// Drops operations nobody follows any more, final ones (after sending them) and deleted
    /// ones (their followers' channels close).
    pub async fn poll_once(&self) -> Result<usize, depot_core::RepoError> {
        let ids: Vec<Uuid> = {
            let mut followed = self.followed.lock().expect("watch lock");
            followed.retain(|_, tx| tx.receiver_count() > 0);
            followed.keys().copied().collect()
        };
        self.read(&ids).await?;
        Ok(ids.len())
    }

    /// Reads these operations and wakes their followers (see [`Self::poll_once`]).
    async fn read(&self, ids: &[Uuid]) -> Result<(), depot_core::RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            for op in self.operations.get_many(chunk).await? {
                found.insert(op.id, op);
            }
        }
        let mut followed = self.followed.lock().expect("watch lock");
        for id in ids {
            match found.remove(id) {
                Some(op) => {
                    let fin = op.status.is_final();
                    if let Some(tx) = followed.get(id) {
                        Self::apply(tx, op);
                    }
                    if fin {
                        followed.remove(id);
                    }
                }
                None => {
                    followed.remove(id);
                }
            }
        }
        Ok(())
    }

    /// Reads the operations reported changed since the last call.
    async fn read_due(&self) {
        let ids: Vec<Uuid> = self.due.lock().expect("watch lock").drain().collect();
        if let Err(e) = self.read(&ids).await {
            // The interval read picks them up.
            tracing::warn!(error = %e, "reading changed operations failed");
        }
    }

    /// Polls every `interval` while anything is followed, and sleeps otherwise, until `stop`;
    /// in between, reads the operations [`Self::changed`] reports.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // When the next full read is due; `None` while nothing is followed.
        let mut next: Option<Instant> = Some(Instant::now());
        loop {
            if next.is_some_and(|at| at <= Instant::now()) {
                next = match self.poll_once().await {
                    Ok(0) => None,
                    Ok(_) => Some(Instant::now() + self.interval),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading followed operations failed");
                        Some(Instant::now() + self.interval * 4)
                    }
                };
            }
            let until_next = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => break,
                _ = until_next => {}
                // A new follower: start polling if idle.
                _ = self.wakeup.notified() => {
                    next.get_or_insert_with(Instant::now);
                }
                _ = self.nudged.notified() => self.read_due().await,
            }
        }
    }
}
