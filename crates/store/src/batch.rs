//! Group commit for single-row calls: concurrent calls of one kind are coalesced into one batch,
//! run as one statement (or one transaction) instead of one each. Nothing waits for a batch to
//! fill: a call runs at once when the store is idle, and calls that arrive while batches are in
//! flight make up the next one. So a lone request pays no latency, and under load the number of
//! statements (and commits) per request falls as the load rises. A batch the database refuses as
//! a whole is run again call by call ([`each_alone_on_failure`]), so one bad call fails alone.

use depot_core::RepoError;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

/// A call: the question, where to answer, and the caller's span (the batch's trace).
type Call<Q, R> = (Q, oneshot::Sender<R>, tracing::Span);

/// Starts a batcher's task on a runtime and returns where to send it calls.
type Spawn<Q, R> = Box<dyn Fn(&Handle) -> mpsc::UnboundedSender<Call<Q, R>> + Send + Sync>;

pub(crate) struct Batcher<Q, R> {
    spawn: Spawn<Q, R>,
    /// The runtime the task runs on and the task's channel. A task whose channel closed (its
    /// runtime shut down, or it panicked past its loop) is started again on the next call.
    home: Mutex<(Handle, mpsc::UnboundedSender<Call<Q, R>>)>,
}

impl<Q: Send + 'static, R: Send + 'static> Batcher<Q, R> {
    /// Starts the batcher's task on `runtime` (the current one when `None`): give it the
    /// runtime that lives as long as the process, not the one of whichever HTTP worker calls
    /// first, which stops (on SIGTERM, before the others) while other workers still call. `run`
    /// gets a batch of at most `max_batch` calls and answers each, in order; a batch runs
    /// holding one of `slots` (shared by batchers of one kind: at most that many of their
    /// batches run at once).
    ///
    /// The batch runs in a span named `name`, a child of the first caller's span that follows
    /// from the others', so a trace shows the statements that served its request.
    pub(crate) fn start<F, Fut>(
        name: &'static str,
        max_batch: usize,
        slots: Arc<Semaphore>,
        runtime: Option<Handle>,
        run: F,
    ) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let run = Arc::new(run);
        let spawn: Spawn<Q, R> = Box::new(move |runtime: &Handle| {
            let (calls, queue) = mpsc::unbounded_channel::<Call<Q, R>>();
            runtime.spawn(serve(name, max_batch, slots.clone(), run.clone(), queue));
            calls
        });
        let runtime = runtime.unwrap_or_else(Handle::current);
        let calls = spawn(&runtime);
        Self {
            spawn,
            home: Mutex::new((runtime, calls)),
        }
    }

    /// Runs `question` in the next batch. `None` only when the batch's task failed (panicked)
    /// or its runtime shut down while it ran.
    pub(crate) async fn call(&self, question: Q) -> Option<R> {
        let (answer, answered) = oneshot::channel();
        let mut call = (question, answer, tracing::Span::current());
        // Twice at most: the second time on a task started again.
        for _ in 0..2 {
            match self.send(call) {
                Ok(()) => return answered.await.ok(),
                Err(back) => call = back,
            }
        }
        None
    }

    /// Whether its task still takes calls (its runtime runs).
    pub(crate) fn is_running(&self) -> bool {
        !self
            .home
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .is_closed()
    }

    /// Sends `call` to the task, starting it again first when its channel closed: on its home
    /// runtime, or on the caller's when that one has shut down too.
    fn send(&self, call: Call<Q, R>) -> Result<(), Call<Q, R>> {
        let mut home = self.home.lock().unwrap_or_else(|e| e.into_inner());
        if home.1.is_closed() {
            let mut calls = (self.spawn)(&home.0);
            // A runtime that has shut down drops what is spawned on it at once.
            if calls.is_closed()
                && let Ok(current) = Handle::try_current()
            {
                calls = (self.spawn)(&current);
                home.0 = current;
            }
            tracing::warn!("a batcher's task had stopped: started again");
            home.1 = calls;
        }
        home.1.send(call).map_err(|e| e.0)
    }
}

/// A batcher's task: takes the calls as they come and runs them in batches.
async fn serve<Q, R, F, Fut>(
    name: &'static str,
    max_batch: usize,
    slots: Arc<Semaphore>,
    run: Arc<F>,
    mut queue: mpsc::UnboundedReceiver<Call<Q, R>>,
) where
    Q: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<R>> + Send + 'static,
{
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
}

/// The same error for every call of a failed batch.
pub(crate) fn shared(e: &RepoError) -> RepoError {
    match e {
        RepoError::NotFound => RepoError::NotFound,
        RepoError::Unavailable(e) => RepoError::Unavailable(e.to_string().into()),
        RepoError::Unexpected(e) => RepoError::Unexpected(e.to_string().into()),
    }
}

/// One run of a batch: its answers in the calls' order, or the batch's failure.
pub(crate) type BatchRun<'a, R> =
    std::pin::Pin<Box<dyn Future<Output = Result<Vec<R>, RepoError>> + Send + 'a>>;

/// Answers a batch with `run`. When the batch fails as a whole (a deadlock, a row the database
/// refuses) and held more than one call, each call is run again alone, so a call that cannot be
/// written fails alone instead of failing its bystanders. `run` is transactional: a failed batch
/// wrote nothing. An outage (`Unavailable`) is answered at once: running each call alone would
/// only wait out the pool's timeout once per call.
pub(crate) async fn each_alone_on_failure<'a, Q, R>(
    name: &'static str,
    calls: &'a [Q],
    run: impl Fn(&'a [Q]) -> BatchRun<'a, R>,
    failed: impl Fn(RepoError) -> R,
) -> Vec<R> {
    let e = match run(calls).await {
        Ok(results) => return results,
        Err(e) => e,
    };
    if calls.len() == 1 || matches!(e, RepoError::Unavailable(_)) {
        return calls.iter().map(|_| failed(shared(&e))).collect();
    }
    tracing::warn!(batch = name, calls = calls.len(), error = %e, "a batch failed; running its calls one by one");
    let mut results = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        match run(std::slice::from_ref(call)).await {
            Ok(mut one) if one.len() == 1 => results.extend(one.pop()),
            Ok(_) => results.push(failed(RepoError::Unexpected(
                "a call run alone did not get one answer".into(),
            ))),
            Err(e @ RepoError::Unavailable(_)) => {
                results.extend(calls[i..].iter().map(|_| failed(shared(&e))));
                break;
            }
            Err(e) => results.push(failed(e)),
        }
    }
    results
}

/// What a caller gets when its batch never answered.
pub(crate) fn lost() -> RepoError {
    RepoError::Unavailable("the batch running this call was lost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_lone_call_runs_at_once_and_concurrent_calls_share_batches() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start(
            "test",
            8,
            Arc::new(Semaphore::new(1)),
            None,
            move |qs: Vec<u32>| {
                seen.lock().unwrap().push(qs.len());
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    qs.into_iter().map(|q| q * 2).collect()
                }
            },
        ));
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

    /// A batch fails when it holds a 0 (a refused row); a 1000 stands for an outage.
    fn refusing_zero<'a>(
        qs: &'a [u32],
        runs: &'a Mutex<Vec<usize>>,
    ) -> BatchRun<'a, Result<u32, RepoError>> {
        Box::pin(async move {
            runs.lock().unwrap().push(qs.len());
            if qs.contains(&0) {
                Err(RepoError::Unexpected("refused".into()))
            } else if qs.contains(&1000) {
                Err(RepoError::Unavailable("down".into()))
            } else {
                Ok(qs.iter().map(|q| Ok(q * 2)).collect())
            }
        })
    }

    #[tokio::test]
    async fn a_failed_batch_runs_its_calls_alone_so_only_the_bad_one_fails() {
        let runs = Mutex::new(Vec::new());
        let answers: Vec<Result<u32, String>> =
            each_alone_on_failure("test", &[1, 0, 3], |qs| refusing_zero(qs, &runs), Err)
                .await
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect();
        assert_eq!(
            answers,
            vec![Ok(2), Err("unexpected store error".into()), Ok(6)]
        );
        assert_eq!(*runs.lock().unwrap(), vec![3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn an_outage_fails_the_batch_without_running_each_call() {
        let runs = Mutex::new(Vec::new());
        let answers =
            each_alone_on_failure("test", &[1, 1000, 3], |qs| refusing_zero(qs, &runs), Err).await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(RepoError::Unavailable(_))))
        );
        assert_eq!(*runs.lock().unwrap(), vec![3]);
        // An outage met while running calls alone answers the rest at once.
        let runs = Mutex::new(Vec::new());
        let answers =
            each_alone_on_failure("test", &[0, 1000, 3], |qs| refusing_zero(qs, &runs), Err).await;
        assert!(matches!(answers[0], Err(RepoError::Unexpected(_))));
        assert!(matches!(answers[1], Err(RepoError::Unavailable(_))));
        assert!(matches!(answers[2], Err(RepoError::Unavailable(_))));
        assert_eq!(*runs.lock().unwrap(), vec![3, 1, 1]);
    }

    #[tokio::test]
    async fn a_panicking_batch_answers_none_and_later_calls_still_run() {
        let batcher = Batcher::start(
            "test",
            4,
            Arc::new(Semaphore::new(1)),
            None,
            |qs: Vec<u32>| async move {
                assert!(!qs.contains(&0), "boom");
                qs
            },
        );
        assert_eq!(batcher.call(0).await, None);
        assert_eq!(batcher.call(7).await, Some(7));
    }
    fn doubling() -> Batcher<u32, u32> {
        Batcher::start(
            "test",
            4,
            Arc::new(Semaphore::new(1)),
            None,
            |qs: Vec<u32>| async move { qs.into_iter().map(|q| q * 2).collect() },
        )
    }

    /// Calls `batcher` on a runtime of its own on another thread, as an HTTP worker does; the
    /// runtime is gone when this returns.
    fn call_from_a_worker(batcher: &Arc<Batcher<u32, u32>>, q: u32) -> Option<u32> {
        let batcher = batcher.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(batcher.call(q))
        })
        .join()
        .unwrap()
    }

    /// The finding: the batchers ran on the runtime of the HTTP worker that called
    /// first, and when it stopped the others' calls were lost.
    #[test]
    fn a_batcher_outlives_the_runtime_of_a_caller() {
        let main = tokio::runtime::Runtime::new().unwrap();
        let batcher = Arc::new(main.block_on(async { doubling() }));
        assert_eq!(call_from_a_worker(&batcher, 1), Some(2));
        assert_eq!(call_from_a_worker(&batcher, 2), Some(4));
        assert_eq!(main.block_on(batcher.call(3)), Some(6));
    }

    #[test]
    fn a_batcher_whose_runtime_shut_down_starts_again_on_the_callers() {
        let first = tokio::runtime::Runtime::new().unwrap();
        let batcher = Arc::new(first.block_on(async { doubling() }));
        assert_eq!(first.block_on(batcher.call(1)), Some(2));
        drop(first);
        assert_eq!(call_from_a_worker(&batcher, 2), Some(4));
        // That worker's runtime is gone too: the next caller's takes the task, and keeps it.
        let other = tokio::runtime::Runtime::new().unwrap();
        assert_eq!(other.block_on(batcher.call(5)), Some(10));
        assert_eq!(other.block_on(batcher.call(6)), Some(12));
    }
}
