//! The package and operation ports: typed outcomes, batches, the watch.

use crate::common::migrated_db;
use chrono::Utc;
use depot_packages::model::{Operation, OperationKind, OperationStatus, Package, PackageFields};
use depot_packages::ports::{
    CancelError, DeleteError, InsertError, OperationRepository, OutboxMessage, PackageRepository,
    UpdateError,
};
use depot_store::SeaOrmPackageRepository;
use uuid::Uuid;

fn message_for(op: &Operation) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::now_v7(),
        queue: "operations".into(),
        payload: op.id.as_bytes().to_vec(),
        created_at: op.created_at,
        headers: Default::default(),
    }
}

/// Each refusal the package port can answer is its own variant, made from the constraint or the
/// row count: a duplicate name and version, a stale revision, a missing package, a busy one, a
/// finished operation.
#[tokio::test]
async fn package_writes_answer_typed_outcomes() {
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let now = Utc::now();
    let a = Package::created("typed".into(), "1.0".into(), now);
    let b = Package::created("typed".into(), "2.0".into(), now);
    repo.insert(&a).await.unwrap();
    repo.insert(&b).await.unwrap();
    let again = Package::created("typed".into(), "1.0".into(), now);
    assert!(matches!(
        repo.insert(&again).await,
        Err(InsertError::Duplicate)
    ));

    let rename = |version: &str| PackageFields {
        version: Some(version.into()),
        ..Default::default()
    };
    assert!(matches!(
        repo.update(b.id, &rename("1.0"), None, now).await,
        Err(UpdateError::Duplicate)
    ));
    assert!(matches!(
        repo.update(b.id, &rename("3.0"), Some(b.revision + 5), now)
            .await,
        Err(UpdateError::StaleRevision)
    ));
    assert!(matches!(
        repo.update(Uuid::now_v7(), &rename("3.0"), None, now).await,
        Err(UpdateError::NotFound)
    ));
    let updated = repo
        .update(b.id, &rename("3.0"), Some(b.revision), now)
        .await
        .unwrap();
    assert_eq!(
        (updated.version.as_str(), updated.revision),
        ("3.0", b.revision + 1)
    );

    let op = Operation::pending(OperationKind::Download, a.id, now);
    repo.start(&op, &message_for(&op)).await.unwrap();
    match repo.delete(a.id, None).await {
        Err(DeleteError::Busy(busy)) => {
            assert_eq!(busy.id, op.id);
            assert_eq!(busy.kind, OperationKind::Download);
            assert_eq!(busy.status, OperationStatus::Pending);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        repo.delete(b.id, Some(1)).await,
        Err(DeleteError::StaleRevision)
    ));
    assert!(matches!(
        repo.delete(Uuid::now_v7(), None).await,
        Err(DeleteError::NotFound)
    ));
    repo.delete(b.id, Some(updated.revision)).await.unwrap();

    let cancelled = repo
        .request_cancel(op.id, now, now - chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(cancelled.status, OperationStatus::Cancelled);
    assert!(matches!(
        repo.request_cancel(op.id, now, now - chrono::Duration::minutes(5))
            .await,
        Err(CancelError::Finished(OperationStatus::Cancelled))
    ));
    assert!(matches!(
        repo.request_cancel(Uuid::now_v7(), now, now - chrono::Duration::minutes(5))
            .await,
        Err(CancelError::NotFound)
    ));
}

/// A batch the database refuses as a whole is run again call by call: only the call that
/// cannot be written fails, its bystanders in the batch go through.
#[tokio::test]
async fn a_refused_batch_fails_only_the_call_that_caused_it() {
    use depot_packages::model::{Operation, OperationKind, Package};
    use depot_packages::ports::{
        OperationRepository, OutboxMessage, OutboxRepository, PackageRepository, StartError,
    };
    let db = migrated_db().await;
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let now = Utc::now();
    let mut packages = Vec::new();
    for i in 0..6 {
        let p = Package::created(format!("batch-{i}"), "1.0".into(), now);
        repo.insert(&p).await.unwrap();
        packages.push(p);
    }
    // Six downloads started at once (one batch); two carry the same outbox message id, which
    // the outbox's primary key refuses: the batch's transaction fails as a whole.
    let shared_message = Uuid::now_v7();
    let calls: Vec<(Operation, OutboxMessage)> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let op = Operation::pending(OperationKind::Download, p.id, now);
            let message = OutboxMessage {
                id: if i == 1 || i == 4 {
                    shared_message
                } else {
                    Uuid::now_v7()
                },
                queue: "operations".into(),
                payload: op.id.as_bytes().to_vec(),
                created_at: now,
                headers: Default::default(),
            };
            (op, message)
        })
        .collect();
    let results = futures::future::join_all(calls.iter().map(|(op, m)| repo.start(op, m))).await;
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one of the two duplicates fails: {results:?}"
    );
    assert!(failed[0] == 1 || failed[0] == 4, "{results:?}");
    // The duplicate primary key is no outcome a caller must tell apart: a store error.
    assert!(matches!(
        results[failed[0]],
        Err(StartError::Repo(depot_core::RepoError::Unexpected(_)))
    ));
    for (i, (op, _)) in calls.iter().enumerate() {
        let stored = OperationRepository::get(&repo, op.id).await;
        assert_eq!(stored.is_ok(), i != failed[0], "operation {i}: {stored:?}");
    }
    assert_eq!(
        repo.backlog().await.unwrap(),
        5,
        "one outbox message per started operation"
    );
}

/// An operation another process ended reaches the watch's followers as soon as it is reported
/// changed, not at the watch's next interval read (an hour away here).
#[tokio::test]
async fn a_watch_reads_an_operation_reported_changed_at_once() {
    use depot_packages::model::{Operation, OperationKind, OperationStatus, Package};
    use depot_packages::ports::{OperationRepository, OutboxMessage, Outcome, PackageRepository};
    use depot_packages::watch::OperationWatch;
    use std::sync::Arc;
    let db = migrated_db().await;
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let now = Utc::now();
    let package = Package::created("watched".into(), "1.0".into(), now);
    repo.insert(&package).await.unwrap();
    let op = Operation::pending(OperationKind::Download, package.id, now);
    let message = OutboxMessage {
        id: Uuid::now_v7(),
        queue: "operations".into(),
        payload: op.id.as_bytes().to_vec(),
        created_at: now,
        headers: Default::default(),
    };
    repo.start(&op, &message).await.unwrap();

    let watch = Arc::new(OperationWatch::new(
        Arc::new(depot_store::SeaOrmPackageRepository::new(db.clone())),
        std::time::Duration::from_secs(3600),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(watch.clone().run(stopped));
    let mut rx = watch.follow(op.clone());
    // Let the watch make its first read (the operation is still pending).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let claimed = repo.claim(op.id, Utc::now()).await.unwrap();
    repo.finish(&claimed.operation, &Outcome::Succeeded, Utc::now())
        .await
        .unwrap()
        .expect("this call ends it");
    watch.changed(&[op.id, Uuid::now_v7()]);
    let seen = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        rx.wait_for(|o| o.status == OperationStatus::Succeeded),
    )
    .await;
    assert!(
        matches!(seen, Ok(Ok(_))),
        "the follower did not see the operation succeed"
    );
    let _ = stop.send(true);
    running.await.unwrap();
}

fn owned(name: &str, version: &str, owner: Option<depot_core::Owner>) -> Package {
    Package {
        owner,
        ..Package::created(name.into(), version.into(), Utc::now())
    }
}

fn key_owner() -> Option<depot_core::Owner> {
    Some(depot_core::Owner {
        kind: depot_core::OwnerKind::ApiKey,
        id: Some(Uuid::now_v7()),
    })
}

/// A name is claimed by its first version's owner, atomically with the insert: concurrent
/// first versions of one name by two owners leave one owner, and the other's insert is refused
/// (`NameClaimed`), also within one batch; a rename claims its new name the same way.
#[tokio::test]
async fn a_name_is_claimed_once_by_its_first_owner() {
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    assert_eq!(repo.name_owner("claimed").await.unwrap(), None);
    let (alice, mallory) = (key_owner(), key_owner());
    // Racing, and therefore batched together or not: exactly one owner wins.
    let (first, second) = (owned("claimed", "1", alice), owned("claimed", "2", mallory));
    let (a, m) = tokio::join!(repo.insert(&first), repo.insert(&second));
    let winner = match (&a, &m) {
        (Ok(()), Err(InsertError::NameClaimed)) => alice,
        (Err(InsertError::NameClaimed), Ok(())) => mallory,
        other => panic!("one claim must win: {other:?}"),
    };
    assert_eq!(repo.name_owner("claimed").await.unwrap(), Some(winner));
    // The owner's next versions go in; read back, a package carries its owner.
    let next = owned("claimed", "3", winner);
    repo.insert(&next).await.unwrap();
    assert_eq!(
        PackageRepository::get(&repo, next.id).await.unwrap().owner,
        winner
    );
    // A rename into a claimed name needs its owner; into a new name, it claims it.
    let other = owned("elsewhere", "1", mallory);
    repo.insert(&other).await.unwrap();
    let into = |name: &str, owner| PackageFields {
        name: Some(name.into()),
        owner: Some(owner),
        ..Default::default()
    };
    let loser = if winner == alice { mallory } else { alice };
    assert!(matches!(
        repo.update(other.id, &into("claimed", loser), None, Utc::now())
            .await,
        Err(UpdateError::NameClaimed)
    ));
    let moved = repo
        .update(other.id, &into("fresh-name", mallory), None, Utc::now())
        .await
        .unwrap();
    assert_eq!(moved.owner, mallory);
    assert_eq!(repo.name_owner("fresh-name").await.unwrap(), Some(mallory));
}

/// The name-prefix filter matches the prefix exactly: `%` and `_` are characters, not
/// wildcards, and case counts, on both backends.
#[tokio::test]
async fn the_name_prefix_is_literal_and_case_sensitive() {
    use depot_core::PageRequest;
    use depot_packages::ports::{PackageFilter, PackageSort};
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    for name in ["a_b", "axb", "A_b", "100%", "100x", "ü-tool", "üx"] {
        repo.insert(&Package::created(name.into(), "1".into(), Utc::now()))
            .await
            .unwrap();
    }
    let names = async |prefix: &str| -> Vec<String> {
        let filter = PackageFilter {
            name_prefix: Some(prefix.into()),
            ..Default::default()
        };
        let page = PackageRepository::list(
            &repo,
            &filter,
            PackageSort::Name,
            &PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
        page.items.into_iter().map(|p| p.name).collect()
    };
    assert_eq!(names("a_").await, ["a_b"]);
    assert_eq!(names("100%").await, ["100%"]);
    assert_eq!(names("A").await, ["A_b"]);
    assert_eq!(names("a").await, ["a_b", "axb"]);
    assert_eq!(names("ü-").await, ["ü-tool"]);
}

/// Once a package first leaves Created its verified fields freeze (`Frozen`); before, they
/// cannot change while an operation is under way (`Busy`): a download verifies what it read
/// when it started. The description stays free.
#[tokio::test]
async fn verified_fields_freeze_when_a_package_leaves_created() {
    use depot_packages::ports::Outcome;
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let now = Utc::now();
    let p = Package::created("sealed".into(), "1".into(), now);
    repo.insert(&p).await.unwrap();
    let sha = |h: &str| PackageFields {
        sha256: Some(Some(h.repeat(64))),
        ..Default::default()
    };
    repo.update(p.id, &sha("a"), None, now).await.unwrap();
    let op = Operation::pending(OperationKind::Download, p.id, now);
    repo.start(&op, &message_for(&op)).await.unwrap();
    assert!(matches!(
        repo.update(p.id, &sha("b"), None, now).await,
        Err(UpdateError::Busy(b)) if b.id == op.id
    ));
    let described = PackageFields {
        description: Some(Some("still editable".into())),
        ..Default::default()
    };
    repo.update(p.id, &described, None, now).await.unwrap();
    let claimed = repo.claim(op.id, now).await.unwrap().operation;
    repo.finish(&claimed, &Outcome::Succeeded, now)
        .await
        .unwrap();
    let sealed = PackageRepository::get(&repo, p.id).await.unwrap();
    assert!(sealed.sealed_at.is_some(), "{sealed:?}");
    assert_eq!(sealed.sha256, Some("a".repeat(64)));
    assert!(matches!(
        repo.update(p.id, &sha("c"), None, now).await,
        Err(UpdateError::Frozen)
    ));
    repo.update(p.id, &described, None, now).await.unwrap();
}

/// From the security review: deleting a sealed version and registering it again swapped the
/// artifact behind `name@version`. A deleted sealed version is retired; an unsealed one is not.
#[tokio::test]
async fn a_deleted_sealed_version_is_retired_for_good() {
    use depot_packages::ports::Outcome;
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let now = Utc::now();
    let sealed = Package::created("retire".into(), "1".into(), now);
    repo.insert(&sealed).await.unwrap();
    let op = Operation::pending(OperationKind::Download, sealed.id, now);
    repo.start(&op, &message_for(&op)).await.unwrap();
    let claimed = repo.claim(op.id, now).await.unwrap().operation;
    repo.finish(&claimed, &Outcome::Succeeded, now)
        .await
        .unwrap();
    repo.delete(sealed.id, None).await.unwrap();
    assert!(matches!(
        repo.insert(&Package::created("retire".into(), "1".into(), now))
            .await,
        Err(InsertError::Retired)
    ));
    // Nor by renaming another package onto it.
    let other = Package::created("retire".into(), "2".into(), now);
    repo.insert(&other).await.unwrap();
    let onto = PackageFields {
        version: Some("1".into()),
        ..Default::default()
    };
    assert!(matches!(
        repo.update(other.id, &onto, None, now).await,
        Err(UpdateError::Retired)
    ));
    // A version never downloaded leaves nothing behind.
    repo.delete(other.id, None).await.unwrap();
    repo.insert(&Package::created("retire".into(), "2".into(), now))
        .await
        .unwrap();
}

/// Runs `kind` on `p` to success: start, claim, finish (as a worker does).
async fn run_to_success(
    repo: &SeaOrmPackageRepository,
    p: &Package,
    kind: OperationKind,
) -> Operation {
    use depot_packages::ports::Outcome;
    let op = Operation::pending(kind, p.id, Utc::now()).started_by("admin".into());
    repo.start(&op, &message_for(&op)).await.unwrap();
    let claimed = repo.claim(op.id, Utc::now()).await.unwrap().operation;
    repo.finish(&claimed, &Outcome::Succeeded, Utc::now())
        .await
        .unwrap()
        .expect("this call finished it")
}

/// One active version per name: activating another version switches the name in the
/// activation's transaction (the old one becomes Downloaded) and records it; racing
/// activations of three versions leave exactly one active; the database itself refuses a
/// second active version; deactivating leaves none.
#[tokio::test]
async fn a_name_has_one_active_version_and_its_history_says_when() {
    use depot_packages::model::PackageStatus::{Active, Downloaded};
    use depot_packages::ports::{NameRepository, Outcome};
    use sea_orm::ConnectionTrait;
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let mut versions = vec![];
    for v in ["1.0.0", "2.0.0", "3.0.0", "4.0.0"] {
        let p = Package::created("nginx".into(), v.into(), Utc::now());
        repo.insert(&p).await.unwrap();
        run_to_success(&repo, &p, OperationKind::Download).await;
        versions.push(p);
    }
    let status = async |p: &Package| PackageRepository::get(&repo, p.id).await.unwrap().status;
    let first = run_to_success(&repo, &versions[0], OperationKind::Activate).await;
    assert_eq!(first.status, OperationStatus::Succeeded);
    let second = run_to_success(&repo, &versions[1], OperationKind::Activate).await;
    assert_eq!(second.status, OperationStatus::Succeeded);
    assert_eq!(
        (status(&versions[0]).await, status(&versions[1]).await),
        (Downloaded, Active)
    );

    // Three activations claimed at once and finished in one burst (one batch, or several).
    let mut claimed = vec![];
    for p in &versions[1..] {
        let p = if p.id == versions[1].id {
            &versions[0]
        } else {
            p
        };
        let op = Operation::pending(OperationKind::Activate, p.id, Utc::now());
        repo.start(&op, &message_for(&op)).await.unwrap();
        claimed.push(repo.claim(op.id, Utc::now()).await.unwrap().operation);
    }
    let finished = futures::future::join_all(
        claimed
            .iter()
            .map(|op| repo.finish(op, &Outcome::Succeeded, Utc::now())),
    )
    .await;
    let succeeded = finished
        .iter()
        .filter(|r| matches!(r, Ok(Some(op)) if op.status == OperationStatus::Succeeded))
        .count();
    assert!(succeeded >= 1, "{finished:?}");
    let mut active = 0;
    for p in &versions {
        if status(p).await == Active {
            active += 1;
        }
    }
    assert_eq!(active, 1, "exactly one active version: {finished:?}");

    let bypass = db
        .execute_unprepared(&format!(
            "UPDATE packages SET status = 'active' WHERE name = 'nginx' AND status = 'downloaded' AND id = '{}'",
            versions.iter().find(|p| p.id != versions[1].id).unwrap().id
        ))
        .await;
    // Either that version was the active one already (no row), or the database refused.
    if let Ok(r) = &bypass {
        assert_eq!(
            r.rows_affected(),
            0,
            "the database let a second version be active"
        );
    }

    let history = repo
        .history(
            "nginx",
            &depot_core::PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(history.items.len(), 2 + succeeded);
    let oldest = history.items.last().unwrap();
    assert_eq!(
        (
            oldest.from.as_ref(),
            oldest.to.as_ref().map(|t| t.id),
            oldest.actor.as_deref()
        ),
        (None, Some(versions[0].id), Some("admin"))
    );
    let switch = &history.items[history.items.len() - 2];
    assert_eq!(
        (
            switch.from.as_ref().map(|f| f.id),
            switch.to.as_ref().map(|t| t.id)
        ),
        (Some(versions[0].id), Some(versions[1].id))
    );
    assert_eq!(switch.operation_id, Some(second.id));
    // Each later activation replaced the one active before it.
    for pair in history.items.windows(2) {
        assert_eq!(
            pair[0].from.as_ref().map(|f| f.id),
            pair[1].to.as_ref().map(|t| t.id),
            "{history:?}"
        );
    }

    let now_active = versions
        .iter()
        .find(|p| p.id == history.items[0].to.as_ref().unwrap().id)
        .unwrap();
    run_to_success(&repo, now_active, OperationKind::Deactivate).await;
    for p in &versions {
        assert_eq!(status(p).await, Downloaded);
    }
    let history = repo
        .history(
            "nginx",
            &depot_core::PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            history.items[0].from.as_ref().map(|f| f.id),
            history.items[0].to.as_ref()
        ),
        (Some(now_active.id), None)
    );
}

/// An operation whose worker died, or whose message was lost, stayed `running` for good: the
/// package locked, cancel doing nothing. A heartbeat renews the lease; the reaper ends those
/// whose lease ran out (failed `abandoned`, or cancelled when that was asked); cancelling one
/// whose lease ran out ends it at once.
#[tokio::test]
async fn abandoned_operations_are_reaped_and_cancel_ends_them() {
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let t0 = Utc::now() - chrono::Duration::hours(1);
    let lease = chrono::Duration::minutes(5);
    let mut ops = vec![];
    for name in ["reaped", "renewed", "cancel-asked", "cancelled-late"] {
        let p = Package::created(name.into(), "1".into(), t0);
        repo.insert(&p).await.unwrap();
        let op = Operation::pending(OperationKind::Download, p.id, t0);
        repo.start(&op, &message_for(&op)).await.unwrap();
        repo.claim(op.id, t0).await.unwrap();
        ops.push(op);
    }
    let now = t0 + chrono::Duration::minutes(10);
    assert!(!repo.heartbeat(ops[1].id, now).await.unwrap());
    repo.request_cancel(ops[2].id, t0, t0 - lease)
        .await
        .unwrap();
    let reaped = repo.reap(now - lease, now).await.unwrap();
    let mut got: Vec<(Uuid, OperationStatus, Option<String>)> = reaped
        .into_iter()
        .map(|o| (o.id, o.status, o.error.map(|e| e.code)))
        .collect();
    got.sort_by_key(|g| g.0);
    let mut want = vec![
        (
            ops[0].id,
            OperationStatus::Failed,
            Some("abandoned".to_owned()),
        ),
        (ops[2].id, OperationStatus::Cancelled, None),
        (
            ops[3].id,
            OperationStatus::Failed,
            Some("abandoned".to_owned()),
        ),
    ];
    want.sort_by_key(|w| w.0);
    assert_eq!(got, want);
    let renewed = OperationRepository::get(&repo, ops[1].id).await.unwrap();
    assert_eq!(renewed.status, OperationStatus::Running);

    // The renewed one's worker dies too: a cancel after its lease ends it at once.
    let later = now + chrono::Duration::minutes(6);
    let cancelled = repo
        .request_cancel(ops[1].id, later, later - lease)
        .await
        .unwrap();
    assert_eq!(cancelled.status, OperationStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
}

/// The finding: the batchers ran on the runtime of whichever HTTP worker called first;
/// when that worker stopped (SIGTERM stops them one by one), the other workers' calls got 503
/// "the batch running this call was lost", and so would a restarted worker's. Here each worker
/// is a current-thread runtime on its own thread, as actix-web runs them, and the first one is
/// gone before the next one calls.
#[test]
fn the_batches_outlive_the_http_worker_that_called_first() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let (db, repo) = main.block_on(async {
        let db = migrated_db().await;
        let repo = SeaOrmPackageRepository::new(db.db.clone());
        (db, repo)
    });
    let worker = |repo: SeaOrmPackageRepository, package: Package| {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                repo.insert(&package).await.map_err(|e| e.to_string())?;
                PackageRepository::get(&repo, package.id)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join()
        .unwrap()
    };
    let now = Utc::now();
    for version in ["1", "2", "3"] {
        let package = Package::created("workers".into(), version.into(), now);
        let got = worker(repo.clone(), package.clone());
        assert_eq!(got.map(|p| p.id), Ok(package.id), "worker for {version}");
    }
    // And the process's own runtime (the embedded worker's) still has its batches.
    let package = Package::created("workers".into(), "4".into(), now);
    main.block_on(async {
        repo.insert(&package).await.unwrap();
        assert_eq!(
            PackageRepository::get(&repo, package.id).await.unwrap().id,
            package.id
        );
    });
    main.block_on(async move { drop(db) });
}

/// A prune is a name-level operation (no package): one unfinished per name, for a registered
/// name only; its end moves the versions it takes back to Created in its own transaction,
/// except one that is no longer Downloaded, is yanked or has an operation under way.
#[tokio::test]
async fn a_prune_starts_once_per_name_and_moves_only_idle_downloaded_versions() {
    use depot_packages::model::PackageStatus::{Active, Created, Downloaded};
    use depot_packages::model::Yank;
    use depot_packages::ports::StartError;
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let mut v = vec![];
    for version in ["1", "2", "3", "4", "5"] {
        let p = Package::created("pruned".into(), version.into(), Utc::now());
        repo.insert(&p).await.unwrap();
        run_to_success(&repo, &p, OperationKind::Download).await;
        v.push(p);
    }
    run_to_success(&repo, &v[4], OperationKind::Activate).await;
    repo.set_yank(
        v[1].id,
        Some(&Yank {
            reason: "bad".into(),
            at: Utc::now(),
        }),
        Utc::now(),
    )
    .await
    .unwrap();
    // An activation of 3 under way.
    let busy = Operation::pending(OperationKind::Activate, v[2].id, Utc::now());
    repo.start(&busy, &message_for(&busy)).await.unwrap();

    let nowhere = Operation::pending_on_name(OperationKind::Prune, "nowhere".into(), Utc::now());
    assert!(matches!(
        repo.start_on_name(&nowhere, &message_for(&nowhere)).await,
        Err(StartError::NotFound)
    ));
    let prune = Operation::pending_on_name(OperationKind::Prune, "pruned".into(), Utc::now());
    repo.start_on_name(&prune, &message_for(&prune))
        .await
        .unwrap();
    let again = Operation::pending_on_name(OperationKind::Prune, "pruned".into(), Utc::now());
    match repo.start_on_name(&again, &message_for(&again)).await {
        Err(StartError::Busy(id)) => assert_eq!(id, prune.id),
        other => panic!("{other:?}"),
    }
    let claimed = repo.claim(prune.id, Utc::now()).await.unwrap();
    assert_eq!(claimed.operation.package_id, None);
    assert!(claimed.package.is_none());
    let ids: Vec<Uuid> = v.iter().map(|p| p.id).collect();
    let removed = Removed::default();
    let (done, pruned) = repo
        .finish_prune(&claimed.operation, &ids, Utc::now(), &removed)
        .await
        .unwrap()
        .expect("it was running");
    assert_eq!(done.status, OperationStatus::Succeeded);
    let mut pruned = pruned;
    pruned.sort();
    assert_eq!(pruned, [v[0].id, v[3].id]);
    let mut files = removed.0.lock().unwrap().clone();
    files.sort();
    assert_eq!(files, pruned, "the files of exactly those that moved");
    let mut statuses = vec![];
    for p in &v {
        statuses.push(PackageRepository::get(&repo, p.id).await.unwrap().status);
    }
    assert_eq!(statuses, [Created, Downloaded, Downloaded, Created, Active]);
    // Ended once: a second end is nobody's.
    assert!(
        repo.finish_prune(&claimed.operation, &ids, Utc::now(), &removed)
            .await
            .unwrap()
            .is_none()
    );
    // The name is free for the next prune, and the listing shows it with no package.
    let next = Operation::pending_on_name(OperationKind::Prune, "pruned".into(), Utc::now());
    repo.start_on_name(&next, &message_for(&next))
        .await
        .unwrap();
    assert_eq!(
        OperationRepository::get(&repo, next.id)
            .await
            .unwrap()
            .package_id,
        None
    );
}

/// Records the files a prune removes.
#[derive(Default)]
struct Removed(std::sync::Mutex<Vec<Uuid>>);

#[async_trait::async_trait]
impl depot_packages::ports::ArtifactFiles for Removed {
    async fn remove(&self, id: Uuid) -> Result<(), depot_core::RepoError> {
        self.0.lock().unwrap().push(id);
        Ok(())
    }
}

/// A signature is kept with its verification time, refused on the active version and while an
/// operation runs, and a recorded verification applies only to the signature it checked.
#[tokio::test]
async fn a_signature_is_kept_and_its_verification_recorded_for_that_signature_only() {
    use depot_packages::model::PackageSignature;
    use depot_packages::ports::AttachError;
    let db = migrated_db().await;
    let repo = SeaOrmPackageRepository::new(db.db.clone());
    let now = Utc::now();
    let p = Package {
        signature_url: Some("https://example.com/p.tgz.minisig".into()),
        ..Package::created("signed".into(), "1.0".into(), now)
    };
    repo.insert(&p).await.unwrap();
    assert_eq!(
        PackageRepository::get(&repo, p.id)
            .await
            .unwrap()
            .signature_url
            .as_deref(),
        Some("https://example.com/p.tgz.minisig")
    );
    let sig = PackageSignature {
        text: "first".into(),
        verified_at: None,
    };
    assert!(matches!(
        repo.set_signature(p.id, p.revision + 1, &sig, now).await,
        Err(AttachError::StaleRevision)
    ));
    let signed = repo
        .set_signature(p.id, p.revision, &sig, now)
        .await
        .unwrap();
    assert_eq!(signed.signature.as_ref(), Some(&sig));
    assert_eq!(signed.revision, p.revision + 1);
    // A check of another text (replaced meanwhile) records nothing.
    let at = now + chrono::Duration::seconds(1);
    repo.record_verification(p.id, "other", Some(at), at)
        .await
        .unwrap();
    assert_eq!(
        PackageRepository::get(&repo, p.id).await.unwrap().signature,
        Some(sig.clone())
    );
    repo.record_verification(p.id, "first", Some(at), at)
        .await
        .unwrap();
    let verified = PackageRepository::get(&repo, p.id)
        .await
        .unwrap()
        .signature
        .unwrap();
    assert_eq!(
        verified.verified_at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis())
    );
    // Busy while an operation is pending.
    let op = Operation::pending(OperationKind::Download, p.id, now);
    repo.start(&op, &message_for(&op)).await.unwrap();
    let current = PackageRepository::get(&repo, p.id).await.unwrap();
    assert!(matches!(
        repo.set_signature(p.id, current.revision, &sig, now).await,
        Err(AttachError::Busy(_))
    ));
}
