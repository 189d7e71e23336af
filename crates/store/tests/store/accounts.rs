//! The accounts ports: typed outcomes of user writes.

use crate::common::migrated_db;
use chrono::{DateTime, Utc};
use depot_accounts::{
    Email, Identity, InsertUserError, Role, UpdateUserError, User, UserPatch, UserRepository,
};
use depot_store::SeaOrmAccountRepository;
use uuid::Uuid;

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
        repo.link_identity(bob.id, &identity, now).await,
        Err(InsertUserError::IdentityTaken)
    ));

    let demote = UserPatch {
        role: Some(Role::User),
        disabled: None,
    };
    assert!(matches!(
        repo.update(admin.id, &demote, None, now).await,
        Err(UpdateUserError::LastAdmin)
    ));
    assert!(matches!(
        repo.update(bob.id, &demote, Some(bob.revision + 1), now)
            .await,
        Err(UpdateUserError::StaleRevision)
    ));
    assert!(matches!(
        repo.update(Uuid::now_v7(), &demote, None, now).await,
        Err(UpdateUserError::NotFound)
    ));
    let promote = UserPatch {
        role: Some(Role::Admin),
        disabled: None,
    };
    let promoted = repo
        .update(bob.id, &promote, Some(bob.revision), now)
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Admin);
    // Now there is another administrator: the first can go.
    let demoted = repo.update(admin.id, &demote, None, now).await.unwrap();
    assert_eq!(demoted.role, Role::User);
}
