//! The accounts ports: typed outcomes of user writes.

use crate::common::migrated_db;
use chrono::{DateTime, Utc};
use depot_accounts::{
    Email, Identity, InsertUserError, Role, UpdateUserError, User, UserPatch, UserRepository,
};
use depot_api_keys::AuditRepository;
use depot_core::{Actor, AuditEvent, PageRequest, Principal};
use depot_store::{SeaOrmAccountRepository, SeaOrmApiKeyRepository};
use uuid::Uuid;

fn audit(action: &str, target: Uuid) -> AuditEvent {
    let actor = Actor {
        principal: Principal::admin(),
        client_ip: Some("192.0.2.1".into()),
    };
    actor.event(action, Some(target), serde_json::json!({}), Utc::now())
}

fn user(email: &str, role: Role, now: DateTime<Utc>) -> User {
    User {
        id: Uuid::now_v7(),
        email: Email::parse(email).unwrap(),
        password_hash: None,
        role,
        disabled: false,
        created_at: now,
        updated_at: now,
        revision: 1,
    }
}

/// A taken e-mail and a linked identity are told apart by which row the insert refused; a
/// stale revision, a missing user and the last administrator each have their own variant.
#[tokio::test]
async fn user_writes_answer_typed_outcomes() {
    let db = migrated_db().await;
    let repo = SeaOrmAccountRepository::new(db.db.clone());
    let now = Utc::now();
    let identity = Identity {
        issuer: "https://idp.example".into(),
        subject: "alice".into(),
    };
    let admin = user("admin@example.com", Role::Admin, now);
    repo.insert(&admin, Some(&identity)).await.unwrap();
    assert!(matches!(
        repo.insert(&user("Admin@example.com", Role::User, now), None)
            .await,
        Err(InsertUserError::EmailTaken)
    ));
    let bob = user("bob@example.com", Role::User, now);
    assert!(matches!(
        repo.insert(&bob, Some(&identity)).await,
        Err(InsertUserError::IdentityTaken)
    ));
    assert!(
        repo.find_by_email(&bob.email).await.unwrap().is_none(),
        "the refused identity rolled the user back"
    );
    repo.insert(&bob, None).await.unwrap();
    assert!(matches!(
        repo.link_identity(bob.id, &identity, now, &audit("user.link_identity", bob.id))
            .await,
        Err(InsertUserError::IdentityTaken)
    ));

    let demote = UserPatch {
        role: Some(Role::User),
        disabled: None,
    };
    assert!(matches!(
        repo.update(
            admin.id,
            &demote,
            None,
            now,
            &audit("user.update", admin.id)
        )
        .await,
        Err(UpdateUserError::LastAdmin)
    ));
    assert!(matches!(
        repo.update(
            bob.id,
            &demote,
            Some(bob.revision + 1),
            now,
            &audit("user.update", bob.id)
        )
        .await,
        Err(UpdateUserError::StaleRevision)
    ));
    assert!(matches!(
        repo.update(
            Uuid::now_v7(),
            &demote,
            None,
            now,
            &audit("user.update", bob.id)
        )
        .await,
        Err(UpdateUserError::NotFound)
    ));
    let promote = UserPatch {
        role: Some(Role::Admin),
        disabled: None,
    };
    let promoted = repo
        .update(
            bob.id,
            &promote,
            Some(bob.revision),
            now,
            &audit("user.update", bob.id),
        )
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Admin);
    // Now there is another administrator: the first can go.
    let demoted = repo
        .update(
            admin.id,
            &demote,
            None,
            now,
            &audit("user.update", admin.id),
        )
        .await
        .unwrap();
    assert_eq!(demoted.role, Role::User);
}

/// Demoting the last administrator to `reader` is refused like demoting it to `user` (the rule
/// once looked for `user` only), and a user change is in the audit log exactly when it happened.
#[tokio::test]
async fn the_last_administrator_stays_whatever_the_new_role_and_changes_are_audited() {
    let db = migrated_db().await;
    let repo = SeaOrmAccountRepository::new(db.db.clone());
    let audit_log = SeaOrmApiKeyRepository::new(db.db.clone());
    let now = Utc::now();
    let admin = user("root@example.com", Role::Admin, now);
    repo.insert(&admin, None).await.unwrap();
    let to_reader = UserPatch {
        role: Some(Role::Reader),
        disabled: None,
    };
    assert!(matches!(
        repo.update(
            admin.id,
            &to_reader,
            None,
            now,
            &audit("user.update", admin.id)
        )
        .await,
        Err(UpdateUserError::LastAdmin)
    ));
    assert_eq!(repo.get(admin.id).await.unwrap().role, Role::Admin);
    let events = audit_log
        .list(None, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert!(events.items.is_empty(), "a refused change is not audited");

    let carol = user("carol@example.com", Role::User, now);
    repo.insert(&carol, None).await.unwrap();
    let event = audit("user.update", carol.id);
    repo.update(carol.id, &to_reader, None, now, &event)
        .await
        .unwrap();
    let identity = Identity {
        issuer: "https://idp.example".into(),
        subject: "carol".into(),
    };
    let link = audit("user.link_identity", carol.id);
    repo.link_identity(carol.id, &identity, now, &link)
        .await
        .unwrap();
    let events = audit_log
        .list(None, &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    let got: Vec<_> = events
        .items
        .iter()
        .map(|e| (e.id, e.action.as_str(), e.target_id, e.client_ip.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                link.id,
                "user.link_identity",
                Some(carol.id),
                Some("192.0.2.1")
            ),
            (event.id, "user.update", Some(carol.id), Some("192.0.2.1")),
        ]
    );
}
