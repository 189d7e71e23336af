//! Package names as resources: one active version per name (switching in one operation),
//! the name's summary and history, rollback, yanking, SemVer order and requirements, and names
//! with any valid character in the path.

use crate::helpers::{assert_api_problem, fields, spawn_app, wait_final};
use depot_client::Client;
use depot_client::wire::{
    CreatePackageRequest, OperationKind, OperationStatus, PackageStatus, PackageView,
};
use uuid::Uuid;

use OperationKind::{Activate, Deactivate, Download};

async fn create(depot: &Client, name: &str, version: &str) -> PackageView {
    depot
        .create_package(&CreatePackageRequest::new(name, version))
        .await
        .unwrap_or_else(|e| panic!("creating {name} {version}: {e}"))
}

/// Starts `kind` and waits for it; returns the final status.
async fn run(depot: &Client, id: Uuid, kind: OperationKind) -> OperationStatus {
    let op = depot
        .start(id, kind)
        .await
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    wait_final(depot, op.id).await.status
}

async fn downloaded(depot: &Client, name: &str, version: &str) -> PackageView {
    let p = create(depot, name, version).await;
    assert_eq!(run(depot, p.id, Download).await, OperationStatus::Succeeded);
    p
}

async fn status(depot: &Client, id: Uuid) -> PackageStatus {
    depot.get_package(id).await.unwrap().body.status
}

/// The review: activating 1.0.0 then 2.0.0 left both `active`. Now the second activation
/// switches the name; the summary names the active, previous and latest versions, newest first
/// by precedence; the history says who switched what when; two rollbacks toggle.
#[tokio::test]
async fn activating_another_version_switches_the_name_and_rollbacks_toggle() {
    let app = spawn_app().await;
    let key = app
        .key_with_scopes(&["packages:read", "packages:write", "operations:read"])
        .await;
    let depot = app.depot_with_key(&key.key);
    let v1 = downloaded(&depot, "nginx", "1.9.0").await;
    let v2 = downloaded(&depot, "nginx", "1.10.0").await;
    create(&depot, "nginx", "2.0.0-rc.1").await;
    assert_eq!(
        run(&depot, v1.id, Activate).await,
        OperationStatus::Succeeded
    );
    assert_eq!(
        run(&depot, v2.id, Activate).await,
        OperationStatus::Succeeded
    );
    assert_eq!(status(&depot, v1.id).await, PackageStatus::Downloaded);
    assert_eq!(status(&depot, v2.id).await, PackageStatus::Active);

    let name = depot.package_name("nginx").await.unwrap();
    assert_eq!(name.active.as_ref().map(|a| a.id), Some(v2.id));
    assert_eq!(name.previous.as_ref().map(|a| a.id), Some(v1.id));
    assert_eq!(
        name.latest.as_ref().map(|a| a.version.as_str()),
        Some("1.10.0")
    );
    let versions: Vec<&str> = name.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["2.0.0-rc.1", "1.10.0", "1.9.0"]);
    assert_eq!(name.owner.unwrap().id, Some(key.api_key.id));

    let history = depot.name_history("nginx", &[]).await.unwrap();
    let steps: Vec<_> = history
        .items
        .iter()
        .map(|a| (a.from.as_ref().map(|f| f.id), a.to.as_ref().map(|t| t.id)))
        .collect();
    assert_eq!(steps, [(Some(v1.id), Some(v2.id)), (None, Some(v1.id))]);
    assert_eq!(
        history.items[0].by.as_deref(),
        Some(format!("api_key:{}", key.api_key.id).as_str())
    );

    let op = depot.rollback("nginx").await.unwrap();
    assert_eq!(op.package_id, Some(v1.id));
    assert_eq!(
        wait_final(&depot, op.id).await.status,
        OperationStatus::Succeeded
    );
    let name = depot.package_name("nginx").await.unwrap();
    assert_eq!(name.active.map(|a| a.id), Some(v1.id));
    assert_eq!(
        name.previous.map(|a| a.id),
        Some(v2.id),
        "a second rollback toggles back"
    );

    assert_eq!(
        run(&depot, v1.id, Deactivate).await,
        OperationStatus::Succeeded
    );
    let name = depot.package_name("nginx").await.unwrap();
    assert_eq!(name.active, None, "deactivating leaves the name with none");
    assert_eq!(name.previous.map(|a| a.id), Some(v1.id));

    // Another principal reads, but neither rolls back nor yanks.
    let other = app.depot_with_key(&app.writer_key().await);
    assert_eq!(other.package_name("nginx").await.unwrap().name, "nginx");
    assert_api_problem(other.rollback("nginx").await, 403, "not_owner");
    assert_api_problem(other.yank(v1.id, "mine now").await, 403, "not_owner");
    assert_api_problem(depot.package_name("nope").await, 404, "not_found");
    assert_api_problem(depot.rollback("nope").await, 404, "not_found");
}

/// Racing activations of three versions of one name: exactly one is active at the end, and the
/// history chains (each activation replaced the one before it).
#[tokio::test]
async fn racing_activations_leave_exactly_one_active_version() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let mut ids = vec![];
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        ids.push(downloaded(&depot, "raced", v).await.id);
    }
    let ops = futures::future::join_all(ids.iter().map(|id| depot.start(*id, Activate))).await;
    let ends = futures::future::join_all(
        ops.iter()
            .map(|op| wait_final(&depot, op.as_ref().unwrap().id)),
    )
    .await;
    let succeeded = ends
        .iter()
        .filter(|o| o.status == OperationStatus::Succeeded)
        .count();
    assert!(succeeded >= 1, "{ends:?}");
    let mut active = vec![];
    for id in &ids {
        if status(&depot, *id).await == PackageStatus::Active {
            active.push(*id);
        }
    }
    assert_eq!(active.len(), 1, "{ends:?}");
    let name = depot.package_name("raced").await.unwrap();
    assert_eq!(name.active.map(|a| a.id), Some(active[0]));
    let history = depot.name_history("raced", &[]).await.unwrap();
    assert_eq!(history.items.len(), succeeded);
    assert_eq!(history.items[0].to.as_ref().map(|t| t.id), Some(active[0]));
    for pair in history.items.windows(2) {
        assert_eq!(
            pair[0].from.as_ref().map(|f| f.id),
            pair[1].to.as_ref().map(|t| t.id)
        );
    }
}

/// A yanked version is not downloaded or activated anew (409 `yanked`), is skipped by `latest`
/// and by rollback, and stays readable with its reason; unyanking takes it back.
#[tokio::test]
async fn yanked_versions_stay_readable_and_are_not_installed_anew() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let v1 = downloaded(&depot, "yankee", "1.0.0").await;
    let v2 = downloaded(&depot, "yankee", "1.1.0").await;
    let v3 = create(&depot, "yankee", "1.2.0").await;
    run(&depot, v1.id, Activate).await;
    run(&depot, v2.id, Activate).await;
    let yanked = depot.yank(v1.id, "CVE-2026-1234").await.unwrap();
    assert!(yanked.yanked);
    assert_eq!(yanked.yanked_reason.as_deref(), Some("CVE-2026-1234"));
    assert!(yanked.yanked_at.is_some());
    assert_eq!(
        depot.get_package(v1.id).await.unwrap().body.yanked_reason,
        yanked.yanked_reason
    );
    assert_api_problem(depot.start(v1.id, Activate).await, 409, "yanked");
    assert_api_problem(depot.rollback("yankee").await, 409, "no_previous_version");
    depot.yank(v3.id, "broken build").await.unwrap();
    assert_api_problem(depot.start(v3.id, Download).await, 409, "yanked");
    let name = depot.package_name("yankee").await.unwrap();
    assert_eq!(name.latest.map(|l| l.version), Some("1.1.0".into()));
    assert!(name.versions.iter().find(|v| v.id == v3.id).unwrap().yanked);
    let p = assert_api_problem(depot.yank(v3.id, " ").await, 422, "validation_failed");
    assert_eq!(fields(&p), ["reason"]);

    let back = depot.unyank(v1.id).await.unwrap();
    assert!(!back.yanked && back.yanked_reason.is_none());
    let op = depot.rollback("yankee").await.unwrap();
    assert_eq!(op.package_id, Some(v1.id));
}

/// The review: 1.10.0 sorted before 1.9.0 before 1.2.0. `sort=version` orders by SemVer
/// precedence (non-SemVer versions below), `-version` reverses, `version=` filters by a
/// requirement as cargo reads one.
#[tokio::test]
async fn versions_sort_by_precedence_and_filter_by_requirement() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    for v in [
        "1.10.0",
        "1.2.0",
        "1.9.0",
        "2.0.0-beta.2",
        "2.0.0",
        "r9",
        "r10",
    ] {
        create(&depot, "semver", v).await;
    }
    create(&depot, "semverish", "9.9.9").await;
    let q = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (*k, Some(v.to_string())))
            .collect()
    };
    let versions = |page: depot_client::wire::Collection<PackageView>| -> Vec<String> {
        page.items
            .into_iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect()
    };
    let up = depot
        .list_packages(&q(&[
            ("name", "semver"),
            ("sort", "version"),
            ("limit", "200"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        versions(up),
        [
            "semver r9",
            "semver r10",
            "semver 1.2.0",
            "semver 1.9.0",
            "semver 1.10.0",
            "semver 2.0.0-beta.2",
            "semver 2.0.0",
            "semverish 9.9.9"
        ]
    );
    let down = depot
        .list_packages(&q(&[
            ("name", "semver"),
            ("sort", "-version"),
            ("limit", "3"),
        ]))
        .await
        .unwrap();
    let cursor = down.next_cursor.clone().expect("a next page");
    assert_eq!(
        versions(down),
        ["semverish 9.9.9", "semver 2.0.0", "semver 2.0.0-beta.2"]
    );
    let next = depot
        .list_packages(&q(&[
            ("name", "semver"),
            ("sort", "-version"),
            ("limit", "3"),
            ("cursor", &cursor),
        ]))
        .await
        .unwrap();
    assert_eq!(
        versions(next),
        ["semver 1.10.0", "semver 1.9.0", "semver 1.2.0"]
    );
    let matching = depot
        .list_packages(&q(&[
            ("name", "semver"),
            ("version", "^1.2"),
            ("sort", "version"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        versions(matching),
        ["semver 1.2.0", "semver 1.9.0", "semver 1.10.0"]
    );
    let bare = depot
        .list_packages(&q(&[("name", "semver"), ("version", "1.9")]))
        .await
        .unwrap();
    assert_eq!(versions(bare), ["semver 1.10.0", "semver 1.9.0"]);
    let p = assert_api_problem(
        depot
            .list_packages(&q(&[("name", "semver"), ("version", "not a requirement")]))
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&p), ["version"]);
    let p = assert_api_problem(
        depot.list_packages(&q(&[("sort", "version")])).await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&p), ["name"]);
}

/// Names with any valid character work in the path, percent-encoded; `.` and `..` (which URL
/// libraries collapse) are refused at creation.
#[tokio::test]
async fn any_valid_name_is_addressable_and_dot_names_are_refused() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    for name in [
        "a/b",
        "with space",
        "100%",
        "q?x#y",
        "пакет",
        "..a",
        "a+b&c=d",
    ] {
        let p = create(&depot, name, "1.0.0").await;
        let summary = depot
            .package_name(name)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(summary.name, name);
        assert_eq!(summary.versions[0].id, p.id);
        assert!(
            depot
                .name_history(name, &[])
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
    for name in [".", "..", " .. "] {
        let p = assert_api_problem(
            depot
                .create_package(&CreatePackageRequest::new(name, "1"))
                .await,
            422,
            "validation_failed",
        );
        assert_eq!(fields(&p), ["name"], "{name:?}");
    }
    let names = depot
        .list_package_names(&[("prefix", Some("a".into()))])
        .await
        .unwrap();
    let listed: Vec<&str> = names.items.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(listed, ["a+b&c=d", "a/b"]);
}

/// Retention (issue 16, item 6): a dry run says what a prune takes and changes nothing; the
/// prune is a name-level operation (no package) that returns the Downloaded versions past the
/// newest ones to Created, leaving the active, the previous and yanked versions alone; without
/// `keep` while `packages.keep_versions` is 0 it is a 422 naming `keep`; one at a time per name
/// is not checked here (the store's and the service's tests do).
#[tokio::test]
async fn a_prune_drops_the_oldest_downloaded_versions_and_a_dry_run_only_says_so() {
    let app = spawn_app().await;
    let key = app
        .key_with_scopes(&["packages:read", "packages:write", "operations:read"])
        .await;
    let depot = app.depot_with_key(&key.key);
    let mut v = vec![];
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"] {
        v.push(downloaded(&depot, "kept", version).await);
    }
    assert_eq!(
        run(&depot, v[1].id, Activate).await,
        OperationStatus::Succeeded
    );
    assert_eq!(
        run(&depot, v[2].id, Activate).await,
        OperationStatus::Succeeded
    );
    depot.yank(v[0].id, "broken").await.unwrap();

    assert_api_problem(
        depot.prune_plan("kept", None).await,
        422,
        "validation_failed",
    );
    let plan = depot.prune_plan("kept", Some(2)).await.unwrap();
    assert_eq!(plan.keep, 2);
    // Holding an artifact, newest first: 1.5.0, 1.4.0 (kept), 1.3.0, 1.2.0 (active),
    // 1.1.0 (previous); 1.0.0 is yanked.
    let going: Vec<&str> = plan.versions.iter().map(|p| p.version.as_str()).collect();
    assert_eq!(going, ["1.3.0"]);
    assert_eq!(status(&depot, v[3].id).await, PackageStatus::Downloaded);

    let op = depot.prune("kept", Some(2)).await.unwrap();
    assert_eq!(op.kind, OperationKind::Prune);
    assert_eq!(op.package_id, None);
    assert_eq!(op.package_name.as_deref(), Some("kept"));
    assert_eq!(
        wait_final(&depot, op.id).await.status,
        OperationStatus::Succeeded
    );
    let mut statuses = vec![];
    for p in &v {
        statuses.push(status(&depot, p.id).await);
    }
    use PackageStatus::{Active, Created, Downloaded};
    assert_eq!(
        statuses,
        [
            Downloaded, Downloaded, Active, Created, Downloaded, Downloaded
        ]
    );
    // It can be downloaded again (a sealed version's bytes are checked against its sha256).
    assert_eq!(
        run(&depot, v[3].id, Download).await,
        OperationStatus::Succeeded
    );

    let stranger = app.depot_with_key(
        &app.key_with_scopes(&["packages:read", "packages:write"])
            .await
            .key,
    );
    assert_api_problem(stranger.prune("kept", Some(1)).await, 403, "not_owner");
    assert_api_problem(depot.prune("nowhere", Some(1)).await, 404, "not_found");
}
