//! Group commit for single-row calls: concurrent calls of one kind are coalesced into one batch,
//! run as one statement (or one transaction) instead of one each. Nothing waits for a batch to
//! fill: a call runs at once when the store is idle, and calls that arrive while batches are in
//! flight make up the next one. So a lone request pays no latency, and under load the number of
//! statements (and commits) per request falls as the load rises.

use depot_core::RepoError;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

/// A call: the question, where to answer, and the caller's span (the batch's trace).
type Call<Q, R> = (Q, oneshot::Sender<R>, tracing::Span);

pub(crate) struct Batcher<Q, R> {
    calls: mpsc::UnboundedSender<Call<Q, R>>,
}

impl<Q: Send + 'static, R: Send + 'static> Batcher<Q, R> {
    /// Starts the batcher's task (on the current tokio runtime). `run` gets a batch of at most
    /// `max_batch` calls and answers each, in order; at most `in_flight` batches run at once.
    ///
    /// The batch runs in a span named `name`, a child of the first caller's span that follows
    /// from the others', so a trace shows the statements that served its request.
    pub(crate) fn start<F, Fut>(
        name: &'static str,
        max_batch: usize,
        in_flight: usize,
        run: F,
    ) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (calls, mut queue) = mpsc::unbounded_channel::<Call<Q, R>>();
        let run = Arc::new(run);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                // Wait for a free slot first: the calls arriving meanwhile join this batch.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match queue.try_recv() {
                        Ok(call) => batch.push(call),
                        Err(_) => break,
                    }
                }
                let run = run.clone();
                tokio::spawn(async move {
                    let mut questions = Vec::with_capacity(batch.len());
                    let mut answers = Vec::with_capacity(batch.len());
                    let span = tracing::info_span!(parent: &batch[0].2, "batch", batch = name, calls = batch.len(), otel.name = name);
                    for (i, (question, answer, caller)) in batch.into_iter().enumerate() {
                        if i > 0 {
                            span.follows_from(&caller);
                        }
                        questions.push(question);
                        answers.push(answer);
                    }
                    let results = run(questions).instrument(span).await;
                    debug_assert_eq!(results.len(), answers.len());
                    for (answer, result) in answers.into_iter().zip(results) {
                        // The caller may have gone (its request was cancelled): nothing to do.
                        let _ = answer.send(result);
                    }
                    drop(slot);
                });
            }
        });
        Self { calls }
    }

    /// Runs `question` in the next batch. `None` only when the batch's task failed (panicked)
    /// or the runtime is shutting down.
    pub(crate) async fn call(&self, question: Q) -> Option<R> {
        let (answer, answered) = oneshot::channel();
        self.calls
            .send((question, answer, tracing::Span::current()))
            .ok()?;
        answered.await.ok()
    }
}

/// The same error for every call of a failed batch.
pub(crate) fn shared(e: &RepoError) -> RepoError {
    match e {
        RepoError::NotFound => RepoError::NotFound,
        RepoError::Conflict(m) => RepoError::Conflict(m.clone()),
        RepoError::Unavailable(e) => RepoError::Unavailable(e.to_string().into()),
        RepoError::Unexpected(e) => RepoError::Unexpected(e.to_string().into()),
    }
}

/// What a caller gets when its batch never answered.
pub(crate) fn lost() -> RepoError {
    RepoError::Unavailable("the batch running this call was lost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[tokio::test]
    async fn a_lone_call_runs_at_once_and_concurrent_calls_share_batches() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start("test", 8, 1, move |qs: Vec<u32>| {
            seen.lock().unwrap().push(qs.len());
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                qs.into_iter().map(|q| q * 2).collect()
            }
        }));
        assert_eq!(batcher.call(21).await, Some(42));
        let calls = (0..20u32).map(|i| {
            let b = batcher.clone();
            tokio::spawn(async move { b.call(i).await })
        });
        let answers: Vec<_> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        assert_eq!(answers, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes[0], 1, "the lone call did not wait for company");
        assert_eq!(sizes.iter().sum::<usize>(), 21);
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
        assert!(sizes.len() < 21, "nothing was batched: {sizes:?}");
    }

    #[tokio::test]
    async fn a_panicking_batch_answers_none_and_later_calls_still_run() {
        let batcher = Batcher::start("test", 4, 1, |qs: Vec<u32>| async move {
            assert!(!qs.contains(&0), "boom");
            qs
        });
        assert_eq!(batcher.call(0).await, None);
        assert_eq!(batcher.call(7).await, Some(7));
    }
}
