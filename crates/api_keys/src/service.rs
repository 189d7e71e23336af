//! Key management: create, list, revoke, reactivate, renew, rotate, delete, usage, audit.

use crate::key::PlainKey;
use crate::model::{
    ApiKey, AuditEvent, KeyName, KeyStatus, Lifetime, MAX_GRACE_SECONDS, MAX_RATE_LIMIT,
    UsageRecord, parse_scopes,
};
use crate::ports::{
    ApiKeyRepository, AuditRepository, KeyChange, KeyFilter, KeyWriteError, NewApiKey,
};
use crate::verifier::Verifier;
use chrono::{DateTime, Duration, Utc};
use depot_core::{
    Clock, Page, PageRequest, Permission, Principal, PrincipalKind, RepoError, ValidationError,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// Whether `principal` may hand out a key holding `scopes` (on create, rotate and reactivate):
/// the admin secret grants anything; anyone else only scopes it holds itself, and `users:admin`
/// (which can make administrators) only an administrator user does.
pub fn check_grant(
    principal: &Principal,
    scopes: &BTreeSet<Permission>,
) -> Result<(), ApiKeyError> {
    if principal.kind == PrincipalKind::Admin {
        return Ok(());
    }
    for scope in scopes {
        if !principal.scopes.contains(scope) {
            return Err(ApiKeyError::CannotGrant {
                scope: *scope,
                reason: format!(
                    "a key with `{scope}` can only be issued by a principal holding `{scope}`"
                ),
            });
        }
        if *scope == Permission::UsersAdmin && !matches!(principal.kind, PrincipalKind::User { .. })
        {
            return Err(ApiKeyError::CannotGrant {
                scope: *scope,
                reason: "a key with `users:admin` can only be issued by the admin secret or an \
                         administrator user"
                    .into(),
            });
        }
    }
    Ok(())
}

/// A rotation hands the caller the plaintext of a key in `old`'s lineage, and a lineage owns
/// package names: rotating someone else's key would take over what it owns. Only the admin
/// secret, the lineage itself, or a holder of `packages:admin` (who manages every name anyway)
/// may rotate a key.
fn check_lineage(principal: &Principal, old: &ApiKey) -> Result<(), ApiKeyError> {
    let own = matches!(principal.kind, PrincipalKind::ApiKey { lineage_id, .. } if lineage_id == old.lineage_id);
    if principal.kind == PrincipalKind::Admin || own || principal.has(Permission::PackagesAdmin) {
        Ok(())
    } else {
        Err(ApiKeyError::CannotGrant {
            scope: Permission::PackagesAdmin,
            reason: "rotating another principal's key hands over what its lineage owns: it needs \
                     the admin secret, the key itself, or packages:admin"
                .into(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("no API key with this id")]
    NotFound,
    /// The key's state forbids the action; the message names the current status.
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` names a revision that is no longer current.
    #[error("the key has changed since it was read")]
    PreconditionFailed,
    /// The caller may not grant this scope (see [`check_grant`]).
    #[error("{reason}")]
    CannotGrant {
        scope: depot_core::Permission,
        reason: String,
    },
    #[error("storage failed")]
    Repo(#[source] RepoError),
}

impl From<KeyWriteError> for ApiKeyError {
    fn from(e: KeyWriteError) -> Self {
        match e {
            KeyWriteError::NotFound => ApiKeyError::NotFound,
            KeyWriteError::StaleRevision => ApiKeyError::PreconditionFailed,
            KeyWriteError::Store(e) => e.into(),
        }
    }
}

impl From<RepoError> for ApiKeyError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => ApiKeyError::NotFound,
            other => ApiKeyError::Repo(other),
        }
    }
}

pub use depot_core::audit::Actor;

#[derive(Debug, Clone, Default)]
pub struct CreateKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_days: Option<i64>,
    pub never_expires: Option<bool>,
    pub rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Renewal {
    pub expires_at: Option<DateTime<Utc>>,
    pub days: Option<i64>,
    pub never_expires: Option<bool>,
}

pub struct ApiKeyService {
    repo: Arc<dyn ApiKeyRepository>,
    audit: Arc<dyn AuditRepository>,
    clock: Arc<dyn Clock>,
    verifier: Arc<Verifier>,
    default_lifetime_days: i64,
}

impl ApiKeyService {
    pub fn new(
        repo: Arc<dyn ApiKeyRepository>,
        audit: Arc<dyn AuditRepository>,
        clock: Arc<dyn Clock>,
        verifier: Arc<Verifier>,
        default_lifetime_days: i64,
    ) -> Self {
        Self {
            repo,
            audit,
            clock,
            verifier,
            default_lifetime_days,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn event(
        &self,
        actor: &Actor,
        action: &str,
        target: Option<Uuid>,
        details: serde_json::Value,
    ) -> AuditEvent {
        actor.event(action, target, details, self.clock.now())
    }

    fn new_key(
        &self,
        name: String,
        scopes: std::collections::BTreeSet<depot_core::Permission>,
        rate_limit_per_minute: Option<u32>,
        expires_at: Option<DateTime<Utc>>,
        rotated_from: Option<(Uuid, Uuid)>,
    ) -> (NewApiKey, PlainKey) {
        let plain = PlainKey::generate(&mut rand::rng());
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let key = ApiKey {
            id,
            name,
            prefix: plain.visible_prefix(),
            scopes,
            rate_limit_per_minute,
            created_at: now,
            updated_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            total_uses: 0,
            rotated_from: rotated_from.map(|(from, _)| from),
            lineage_id: rotated_from.map_or(id, |(_, lineage)| lineage),
            revision: 1,
        };
        (
            NewApiKey {
                hash: plain.hash(),
                key,
            },
            plain,
        )
    }

    /// Creates a key; the plaintext is returned this once and never stored.
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        actor: &Actor,
        req: CreateKey,
    ) -> Result<(ApiKey, PlainKey), ApiKeyError> {
        let now = self.clock.now();
        let name = KeyName::parse(&req.name);
        let scopes = parse_scopes(&req.scopes);
        let expiry = Lifetime::from_fields(
            req.expires_at,
            req.expires_in_days,
            req.never_expires,
            "expires_in_days",
        )
        .and_then(|l| l.resolve(now, self.default_lifetime_days, "expires_in_days"));
        let rate = match req.rate_limit_per_minute {
            Some(n) if !(1..=MAX_RATE_LIMIT).contains(&n) => Err(ValidationError::field(
                "rate_limit_per_minute",
                format!("must be between 1 and {MAX_RATE_LIMIT}"),
            )),
            other => Ok(other),
        };
        let errors: Vec<_> = [
            name.as_ref().err(),
            scopes.as_ref().err(),
            expiry.as_ref().err(),
            rate.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .flat_map(|e| e.errors.clone())
        .collect();
        if let Some(e) = ValidationError::from_errors(errors) {
            return Err(e.into());
        }
        let scopes = scopes.expect("checked");
        check_grant(&actor.principal, &scopes)?;
        let (new, plain) = self.new_key(
            name.expect("checked").into_string(),
            scopes,
            rate.expect("checked"),
            expiry.expect("checked"),
            None,
        );
        let audit = self.event(
            actor,
            "api_key.create",
            Some(new.key.id),
            serde_json::json!({"name": new.key.name, "scopes": crate::model::scopes_to_string(&new.key.scopes)}),
        );
        self.repo.insert(&new, &audit).await?;
        Ok((new.key, plain))
    }

    pub async fn get(&self, id: Uuid) -> Result<ApiKey, ApiKeyError> {
        Ok(self.repo.get(id).await?)
    }

    pub async fn list(
        &self,
        filter: &KeyFilter,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, ApiKeyError> {
        Ok(self.repo.list(filter, page, self.clock.now()).await?)
    }

    async fn apply(
        &self,
        actor: &Actor,
        id: Uuid,
        expected_revision: Option<i64>,
        change: KeyChange,
        action: &str,
        details: serde_json::Value,
    ) -> Result<ApiKey, ApiKeyError> {
        let audit = self.event(actor, action, Some(id), details);
        let updated = self
            .repo
            .change(id, &change, expected_revision, self.clock.now(), &audit)
            .await?;
        self.verifier.invalidate(id);
        Ok(updated)
    }

    fn check_revision(key: &ApiKey, expected: Option<i64>) -> Result<(), ApiKeyError> {
        match expected {
            Some(rev) if rev != key.revision => Err(ApiKeyError::PreconditionFailed),
            _ => Ok(()),
        }
    }

    pub async fn revoke(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<i64>,
    ) -> Result<ApiKey, ApiKeyError> {
        let key = self.repo.get(id).await?;
        Self::check_revision(&key, if_match)?;
        if key.revoked_at.is_some() {
            return Err(ApiKeyError::Conflict("the key is already revoked".into()));
        }
        let now = self.clock.now();
        self.apply(
            actor,
            id,
            Some(key.revision),
            KeyChange::Revoke { at: now },
            "api_key.revoke",
            serde_json::json!({}),
        )
        .await
    }

    pub async fn reactivate(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<i64>,
    ) -> Result<ApiKey, ApiKeyError> {
        let key = self.repo.get(id).await?;
        Self::check_revision(&key, if_match)?;
        check_grant(&actor.principal, &key.scopes)?;
        let now = self.clock.now();
        if key.revoked_at.is_none() {
            return Err(ApiKeyError::Conflict(format!(
                "the key is {}, not revoked",
                key.status(now).as_str()
            )));
        }
        self.apply(
            actor,
            id,
            Some(key.revision),
            KeyChange::Reactivate,
            "api_key.reactivate",
            serde_json::json!({}),
        )
        .await
    }

    pub async fn renew(
        &self,
        actor: &Actor,
        id: Uuid,
        renewal: Renewal,
        if_match: Option<i64>,
    ) -> Result<ApiKey, ApiKeyError> {
        let key = self.repo.get(id).await?;
        Self::check_revision(&key, if_match)?;
        // Renewing an expired key gives its scopes back, as reactivating a revoked one does.
        check_grant(&actor.principal, &key.scopes)?;
        let now = self.clock.now();
        let expires_at = Lifetime::from_fields(
            renewal.expires_at,
            renewal.days,
            renewal.never_expires,
            "days",
        )?
        .resolve(now, self.default_lifetime_days, "days")?;
        if key.revoked_at.is_some() {
            return Err(ApiKeyError::Conflict(
                "the key is revoked; reactivate it first".into(),
            ));
        }
        self.apply(
            actor,
            id,
            Some(key.revision),
            KeyChange::Renew { expires_at },
            "api_key.renew",
            serde_json::json!({"expires_at": expires_at}),
        )
        .await
    }

    /// A new key with the same name, scopes, rate limit and lifetime; the old one keeps working
    /// for `grace_seconds` (0 = stops now).
    pub async fn rotate(
        &self,
        actor: &Actor,
        id: Uuid,
        grace_seconds: u64,
        if_match: Option<i64>,
    ) -> Result<(ApiKey, PlainKey), ApiKeyError> {
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(ValidationError::field(
                "grace_seconds",
                format!("must be between 0 and {MAX_GRACE_SECONDS}"),
            )
            .into());
        }
        let old = self.repo.get(id).await?;
        Self::check_revision(&old, if_match)?;
        check_grant(&actor.principal, &old.scopes)?;
        check_lineage(&actor.principal, &old)?;
        let now = self.clock.now();
        match old.status(now) {
            KeyStatus::Active => {}
            other => {
                return Err(ApiKeyError::Conflict(format!(
                    "the key is {}; only active keys rotate",
                    other.as_str()
                )));
            }
        }
        // Keep the remaining lifetime: a key rotated 10 days before expiry expires then too.
        let new_expiry = old.expires_at;
        let (new, plain) = self.new_key(
            old.name.clone(),
            old.scopes.clone(),
            old.rate_limit_per_minute,
            new_expiry,
            Some((old.id, old.lineage_id)),
        );
        let grace_end = now + Duration::seconds(grace_seconds as i64);
        let old_expires_at = Some(old.expires_at.map_or(grace_end, |e| e.min(grace_end)));
        let audit = self.event(
            actor,
            "api_key.rotate",
            Some(old.id),
            serde_json::json!({"new_key_id": new.key.id, "grace_seconds": grace_seconds}),
        );
        self.repo
            .rotate(old.id, old.revision, old_expires_at, &new, now, &audit)
            .await
            .map_err(|e| match e {
                // Changed since the read above: revoked, or rotated by a concurrent request
                // (the If-Match it sent is then stale too).
                KeyWriteError::StaleRevision if if_match.is_some() => {
                    ApiKeyError::PreconditionFailed
                }
                KeyWriteError::StaleRevision => ApiKeyError::Conflict(
                    "the key was changed (rotated or revoked) while it was rotated".into(),
                ),
                other => other.into(),
            })?;
        self.verifier.invalidate(old.id);
        Ok((new.key, plain))
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<i64>,
    ) -> Result<(), ApiKeyError> {
        let key = self.repo.get(id).await?;
        Self::check_revision(&key, if_match)?;
        let audit = self.event(
            actor,
            "api_key.delete",
            Some(id),
            serde_json::json!({"name": key.name}),
        );
        self.repo
            .delete(id, Some(key.revision), self.clock.now(), &audit)
            .await?;
        self.verifier.invalidate(id);
        Ok(())
    }

    pub async fn usage(
        &self,
        id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<UsageRecord>, ApiKeyError> {
        self.repo.get(id).await?;
        Ok(self.repo.usage(id, page).await?)
    }

    pub async fn audit_events(
        &self,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, ApiKeyError> {
        Ok(self.audit.list(action, page).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::InMemoryKeys;
    use depot_core::FixedClock;

    fn service() -> (Arc<InMemoryKeys>, ApiKeyService) {
        let store = Arc::new(InMemoryKeys::default());
        let clock = Arc::new(FixedClock::new(Utc::now()));
        let verifier = Arc::new(Verifier::new(
            store.clone(),
            clock.clone(),
            Default::default(),
        ));
        let svc = ApiKeyService::new(store.clone(), store.clone(), clock, verifier, 15);
        (store, svc)
    }

    fn admin() -> Actor {
        Actor {
            principal: Principal::admin(),
            client_ip: Some("127.0.0.1".into()),
        }
    }

    async fn create(svc: &ApiKeyService) -> ApiKey {
        svc.create(
            &admin(),
            CreateKey {
                name: " ci ".into(),
                scopes: vec!["packages:read".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .0
    }

    #[tokio::test]
    async fn create_validates_every_field_and_audits() {
        let (store, svc) = service();
        let key = create(&svc).await;
        assert_eq!(key.name, "ci");
        assert_eq!(
            key.expires_at,
            Some(svc.now() + Duration::days(15)),
            "the default lifetime"
        );
        let e = svc
            .create(
                &admin(),
                CreateKey {
                    name: "".into(),
                    scopes: vec!["packages:delete".into()],
                    rate_limit_per_minute: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        let ApiKeyError::Validation(v) = e else {
            panic!("{e:?}")
        };
        let fields: Vec<&str> = v.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "scopes[0]", "rate_limit_per_minute"]);
        assert_eq!(store.audit_actions(), ["api_key.create"]);
    }

    fn key_actor(scopes: &[Permission]) -> Actor {
        Actor {
            principal: Principal {
                kind: PrincipalKind::ApiKey {
                    key_id: Uuid::now_v7(),
                    lineage_id: Uuid::now_v7(),
                },
                scopes: scopes.iter().copied().collect(),
            },
            client_ip: None,
        }
    }

    fn request(scopes: &[&str]) -> CreateKey {
        CreateKey {
            name: "minted".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn refused_scope(r: Result<impl std::fmt::Debug, ApiKeyError>) -> Permission {
        match r {
            Err(ApiKeyError::CannotGrant { scope, .. }) => scope,
            other => panic!("expected CannotGrant, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_principal_grants_only_scopes_it_holds_and_users_admin_never_by_key() {
        use Permission::*;
        let (store, svc) = service();
        let key_admin = key_actor(&[ApiKeysAdmin, PackagesRead]);
        // A subset of its own scopes: fine.
        svc.create(&key_admin, request(&["packages:read"]))
            .await
            .unwrap();
        // A scope it lacks, named in the refusal.
        let r = svc
            .create(&key_admin, request(&["packages:read", "packages:write"]))
            .await;
        assert_eq!(refused_scope(r), PackagesWrite);
        // users:admin makes administrators: not from a key, even one holding it.
        let holder = key_actor(&[ApiKeysAdmin, UsersAdmin]);
        let r = svc.create(&holder, request(&["users:admin"])).await;
        assert_eq!(refused_scope(r), UsersAdmin);
        // An administrator user and the admin secret may.
        let admin_user = Actor {
            principal: Principal {
                kind: PrincipalKind::User {
                    user_id: Uuid::now_v7(),
                },
                scopes: Permission::ALL.into_iter().collect(),
            },
            client_ip: None,
        };
        svc.create(&admin_user, request(&["users:admin"]))
            .await
            .unwrap();
        let (strong, _) = svc
            .create(&admin(), request(&["users:admin", "packages:write"]))
            .await
            .unwrap();
        // Rotating or reactivating a key hands out its scopes again: the same rule.
        let r = svc.rotate(&key_admin, strong.id, 0, None).await;
        assert_eq!(refused_scope(r), PackagesWrite);
        svc.revoke(&admin(), strong.id, None).await.unwrap();
        let r = svc.reactivate(&holder, strong.id, None).await;
        assert_eq!(refused_scope(r), PackagesWrite);
        // Nothing was written by the refused calls.
        assert_eq!(
            store.audit_actions(),
            [
                "api_key.create",
                "api_key.create",
                "api_key.create",
                "api_key.revoke"
            ]
        );
    }

    /// From the security review: a key administrator rotated another team's key, got the new
    /// plaintext in that key's lineage, and with it every package name the lineage owns.
    #[tokio::test]
    async fn rotating_another_lineage_needs_the_admin_secret_or_packages_admin() {
        use Permission::*;
        let (_, svc) = service();
        let (victim, _) = svc
            .create(&admin(), request(&["packages:read", "packages:write"]))
            .await
            .unwrap();
        let key_admin = key_actor(&[ApiKeysAdmin, PackagesRead, PackagesWrite]);
        let r = svc.rotate(&key_admin, victim.id, 0, None).await;
        assert_eq!(refused_scope(r), PackagesAdmin);
        let packages_admin = key_actor(&[ApiKeysAdmin, PackagesRead, PackagesWrite, PackagesAdmin]);
        let (next, _) = svc
            .rotate(&packages_admin, victim.id, 60, None)
            .await
            .unwrap();
        assert_eq!(next.lineage_id, victim.lineage_id);
        // A key rotates once: its successor is the one, the old key cannot rotate again.
        assert!(matches!(
            svc.rotate(&admin(), victim.id, 0, None).await,
            Err(ApiKeyError::Conflict(_))
        ));
        svc.rotate(&admin(), next.id, 0, None).await.unwrap();
    }

    /// From the security review: renewing an expired key hands its scopes back, like
    /// reactivating a revoked one, so it needs them too.
    #[tokio::test]
    async fn renewing_a_key_needs_its_scopes() {
        use Permission::*;
        let (_, svc) = service();
        let (strong, _) = svc
            .create(&admin(), request(&["users:admin"]))
            .await
            .unwrap();
        let key_admin = key_actor(&[ApiKeysAdmin, PackagesRead]);
        let renewal = Renewal {
            never_expires: Some(true),
            ..Default::default()
        };
        let r = svc.renew(&key_admin, strong.id, renewal, None).await;
        assert_eq!(refused_scope(r), UsersAdmin);
    }

    #[tokio::test]
    async fn revoke_tells_a_stale_if_match_from_a_state_conflict() {
        let (store, svc) = service();
        let key = create(&svc).await;
        assert!(matches!(
            svc.revoke(&admin(), key.id, Some(key.revision + 1)).await,
            Err(ApiKeyError::PreconditionFailed)
        ));
        // Changed by another request between the read and the write: the port says stale.
        store.revoke_concurrently(key.id);
        assert!(matches!(
            svc.revoke(&admin(), key.id, None).await,
            Err(ApiKeyError::PreconditionFailed)
        ));
        assert!(matches!(
            svc.revoke(&admin(), key.id, None).await,
            Err(ApiKeyError::Conflict(_))
        ));
        let back = svc.reactivate(&admin(), key.id, None).await.unwrap();
        assert!(back.revoked_at.is_none());
        assert!(matches!(
            svc.delete(&admin(), Uuid::now_v7(), None).await,
            Err(ApiKeyError::NotFound)
        ));
    }

    #[tokio::test]
    async fn a_key_revoked_while_it_rotates_is_a_conflict() {
        let (store, svc) = service();
        let key = create(&svc).await;
        store.revoke_concurrently(key.id);
        assert!(matches!(
            svc.rotate(&admin(), key.id, 0, None).await,
            Err(ApiKeyError::Conflict(_))
        ));
        let key = create(&svc).await;
        let (successor, _) = svc.rotate(&admin(), key.id, 60, None).await.unwrap();
        assert_eq!(successor.rotated_from, Some(key.id));
        assert_eq!(successor.scopes, key.scopes);
    }
}
