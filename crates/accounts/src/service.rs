//! Registration, login, refresh-token rotation, logout, user administration and sign-in through
//! an external identity.

use crate::model::{Email, Identity, PasswordPolicy, Role, User};
use crate::password::PasswordHasher;
use crate::ports::{
    InsertUserError, NewRefreshToken, RefreshTokenRepository, Rotation, ThrottleRepository,
    UpdateUserError, UserPatch, UserRepository,
};
use crate::revocations::Revocations;
use crate::throttle::Decision;
use crate::tokens::{self, TokenError, TokenIssuer, TokenPair};
use chrono::{DateTime, Duration, Utc};
use depot_core::{
    Actor, Clock, Page, PageRequest, Principal, PrincipalKind, RepoError, ValidationError,
};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("registration is turned off on this server")]
    RegistrationDisabled,
    /// Unknown e-mail or wrong password: deliberately the same.
    #[error("the e-mail or password is not correct")]
    InvalidCredentials,
    #[error("too many failed logins; try again in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error("this account is disabled")]
    Disabled,
    #[error("the refresh token is not valid")]
    RefreshInvalid,
    #[error("the refresh token was already used; every token of its session is now revoked")]
    RefreshReused,
    #[error("no user with this id")]
    NotFound,
    #[error("a user with this e-mail already exists")]
    EmailTaken,
    #[error("this identity is already linked to another account")]
    IdentityTaken,
    #[error("this is the last enabled administrator; promote another user first")]
    LastAdmin,
    /// Sign-in through a provider found an administrator with the e-mail: never linked.
    #[error(
        "an administrator account with this e-mail exists; administrators are never linked to \
         an external identity automatically"
    )]
    AdminNotLinkable,
    /// Sign-in through a provider found an account with the e-mail, unverified by the provider.
    #[error(
        "an account with this e-mail exists, and the provider has not verified the address; \
         sign in with the password"
    )]
    EmailUnverified,
    #[error("the user has changed since it was read")]
    PreconditionFailed,
    #[error("storage failed")]
    Repo(#[source] RepoError),
    #[error("password hashing failed")]
    Hash(#[from] crate::password::HashError),
}

impl From<InsertUserError> for AccountError {
    fn from(e: InsertUserError) -> Self {
        match e {
            InsertUserError::EmailTaken => AccountError::EmailTaken,
            InsertUserError::IdentityTaken => AccountError::IdentityTaken,
            InsertUserError::Store(e) => e.into(),
        }
    }
}

impl From<UpdateUserError> for AccountError {
    fn from(e: UpdateUserError) -> Self {
        match e {
            UpdateUserError::NotFound => AccountError::NotFound,
            UpdateUserError::StaleRevision => AccountError::PreconditionFailed,
            UpdateUserError::LastAdmin => AccountError::LastAdmin,
            UpdateUserError::Store(e) => e.into(),
        }
    }
}

impl From<RepoError> for AccountError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => AccountError::NotFound,
            other => AccountError::Repo(other),
        }
    }
}

/// What a registration did; the caller is told the same in both cases.
#[derive(Debug)]
pub enum Registration {
    Created(User),
    /// The e-mail (normalised) has an account already: nothing was changed.
    AlreadyRegistered(Email),
}

impl Registration {
    /// The new user, when one was created.
    pub fn created(self) -> Option<User> {
        match self {
            Registration::Created(u) => Some(u),
            Registration::AlreadyRegistered(_) => None,
        }
    }

    /// The e-mail as kept (trimmed, lower-cased), in both cases.
    pub fn email(&self) -> &Email {
        match self {
            Registration::Created(u) => &u.email,
            Registration::AlreadyRegistered(e) => e,
        }
    }
}

pub struct AccountSettings {
    pub registration_enabled: bool,
    pub password_policy: PasswordPolicy,
    /// Each refresh token's lifetime (a session idle longer ends).
    pub refresh_ttl: Duration,
    /// A session's longest life, however often it is refreshed; then the user signs in again.
    pub session_max: Duration,
}

pub struct AccountService {
    users: Arc<dyn UserRepository>,
    refresh: Arc<dyn RefreshTokenRepository>,
    throttle: Arc<dyn ThrottleRepository>,
    hasher: Arc<PasswordHasher>,
    tokens: Arc<TokenIssuer>,
    clock: Arc<dyn Clock>,
    settings: AccountSettings,
    revocations: Arc<Revocations>,
}

/// Both values, or every failing field of either.
fn both<T, U>(
    a: Result<T, ValidationError>,
    b: Result<U, ValidationError>,
) -> Result<(T, U), ValidationError> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(mut a), Err(b)) => {
            a.errors.extend(b.errors);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// The two throttle keys of a login attempt: the e-mail, and the e-mail from this client.
fn throttle_keys(email: &Email, client_ip: Option<&str>) -> [[u8; 32]; 2] {
    [
        tokens::sha256(&format!("login:{email}")),
        tokens::sha256(&format!("login:{email}|{}", client_ip.unwrap_or("-"))),
    ]
}

impl AccountService {
    pub fn new(
        users: Arc<dyn UserRepository>,
        refresh: Arc<dyn RefreshTokenRepository>,
        throttle: Arc<dyn ThrottleRepository>,
        hasher: Arc<PasswordHasher>,
        tokens: Arc<TokenIssuer>,
        clock: Arc<dyn Clock>,
        settings: AccountSettings,
    ) -> Self {
        let revocations = Arc::new(Revocations::new(
            users.clone(),
            clock.clone(),
            tokens.access_ttl(),
        ));
        Self {
            users,
            refresh,
            throttle,
            hasher,
            tokens,
            clock,
            settings,
            revocations,
        }
    }

    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// What keeps this process's view of changed users fresh: run it in the background.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revocations.clone()
    }

    /// The principal an access token stands for, unless its user changed (disabled, role,
    /// sign-in method) after it was issued.
    pub fn authenticate(&self, access_token: &str) -> Result<Principal, TokenError> {
        let (principal, issued_at) = self.tokens.verify_issued(access_token, self.clock.now())?;
        if let PrincipalKind::User { user_id } = principal.kind
            && self.revocations.revokes(user_id, issued_at)
        {
            return Err(TokenError::Revoked);
        }
        Ok(principal)
    }

    fn parse_credentials(email: &str, password: &str) -> Result<Email, ValidationError> {
        let password = if password.is_empty() {
            Err(ValidationError::field("password", "must not be empty"))
        } else {
            Ok(())
        };
        both(Email::parse(email), password).map(|(email, ())| email)
    }

    /// Creates a user with a local password. Used by registration (role `user`) and by the
    /// command line (any role).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<User, AccountError> {
        let (email, ()) = both(
            Email::parse(email),
            self.settings.password_policy.check(password),
        )?;
        let hash = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let user = User {
            id: Uuid::now_v7(),
            email,
            password_hash: Some(hash),
            role,
            disabled: false,
            created_at: now,
            updated_at: now,
            revision: 1,
        };
        self.users.insert(&user, None).await?;
        tracing::info!(user_id = %user.id, role = %role, "user created");
        Ok(user)
    }

    /// Self-registration. A taken e-mail is not an error the caller sees: the route answers it
    /// exactly as a new account (the same status and body, and the same work, a password hash
    /// and an insert, so the same time), and nothing about the existing account changes. Who
    /// registered an address they do not own learns no more than a failed login tells.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Registration, AccountError> {
        if !self.settings.registration_enabled {
            return Err(AccountError::RegistrationDisabled);
        }
        // Least privilege: a self-registered account reads until an administrator grants more.
        match self.create_user(email, password, Role::Reader).await {
            Ok(user) => Ok(Registration::Created(user)),
            Err(AccountError::EmailTaken) => {
                tracing::info!(
                    "a registration named an e-mail that has an account; nothing changed"
                );
                // It parsed, or the insert would not have found it taken.
                Ok(Registration::AlreadyRegistered(Email::parse(email)?))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<&str>,
    ) -> Result<(User, TokenPair), AccountError> {
        let email = Self::parse_credentials(email, password)?;
        let now = self.clock.now();
        let [account_key, client_key] = throttle_keys(&email, client_ip);
        // Counted before the password is checked, atomically: parallel guesses each count.
        if let Decision::Refuse { retry_after } = self
            .throttle
            .attempt(&account_key, &client_key, now)
            .await?
        {
            return Err(AccountError::Throttled { retry_after });
        }
        let user = self.users.find_by_email(&email).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let ok = self.hasher.verify(password, hash).await?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(AccountError::InvalidCredentials);
        };
        self.throttle
            .succeeded(&account_key, &client_key, now)
            .await?;
        if user.disabled {
            return Err(AccountError::Disabled);
        }
        let pair = self.start_session(&user, now).await?;
        Ok((user, pair))
    }

    /// Issues an access token and the first refresh token of a new family.
    async fn start_session(
        &self,
        user: &User,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AccountError> {
        let (raw, record) = self.new_refresh(Uuid::now_v7(), user.id, now);
        self.refresh.insert(&record).await?;
        Ok(self.pair(user, raw, now))
    }

    fn new_refresh(
        &self,
        family_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> (String, NewRefreshToken) {
        let raw = tokens::new_refresh_token();
        let record = NewRefreshToken {
            id: Uuid::now_v7(),
            family_id,
            user_id,
            hash: tokens::sha256(&raw),
            created_at: now,
            expires_at: now + self.settings.refresh_ttl,
            family_expires_at: now + self.settings.session_max,
        };
        (raw, record)
    }

    fn pair(&self, user: &User, refresh_token: String, now: DateTime<Utc>) -> TokenPair {
        TokenPair {
            access_token: self.tokens.issue(user.id, user.role, now),
            token_type: "Bearer",
            expires_in: self.tokens.access_ttl().num_seconds(),
            refresh_token,
        }
    }

    fn refresh_hash(raw: &str) -> Result<[u8; 32], AccountError> {
        if raw.is_empty() {
            return Err(ValidationError::field("refresh_token", "must not be empty").into());
        }
        if !raw.starts_with(tokens::REFRESH_PREFIX) || raw.len() > 200 {
            return Err(AccountError::RefreshInvalid);
        }
        Ok(tokens::sha256(raw))
    }

    /// Rotation: the presented token is used up and a new one of the same family is returned.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AccountError> {
        let hash = Self::refresh_hash(refresh_token)?;
        let now = self.clock.now();
        let (raw, next) = self.new_refresh(Uuid::nil(), Uuid::nil(), now);
        match self.refresh.rotate(&hash, &next, now).await? {
            Rotation::Rotated(user) => Ok(self.pair(&user, raw, now)),
            Rotation::Reused => {
                tracing::warn!("a used refresh token was presented again; its family is revoked");
                Err(AccountError::RefreshReused)
            }
            Rotation::Invalid => Err(AccountError::RefreshInvalid),
            Rotation::UserDisabled => Err(AccountError::Disabled),
        }
    }

    /// Revokes the session (token family) of the presented refresh token.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AccountError> {
        let hash = Self::refresh_hash(refresh_token)?;
        if self.refresh.revoke_family(&hash, self.clock.now()).await? {
            Ok(())
        } else {
            Err(AccountError::RefreshInvalid)
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<User, AccountError> {
        Ok(self.users.get(id).await?)
    }

    pub async fn list(&self, page: &PageRequest) -> Result<Page<User>, AccountError> {
        Ok(self.users.list(page).await?)
    }

    /// An administrator changes a user's role or disables/enables it (recorded in the audit
    /// log as `user.update`, with what was asked). The last enabled administrator cannot be
    /// demoted or disabled.
    pub async fn update(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: UserPatch,
        expected_revision: Option<i64>,
    ) -> Result<User, AccountError> {
        if patch == UserPatch::default() {
            return Err(ValidationError::field("body", "give `role` and/or `disabled`").into());
        }
        let now = self.clock.now();
        let mut details = serde_json::Map::new();
        if let Some(role) = patch.role {
            details.insert("role".into(), role.as_str().into());
        }
        if let Some(disabled) = patch.disabled {
            details.insert("disabled".into(), disabled.into());
        }
        let audit = actor.event("user.update", Some(id), details.into(), now);
        // The repository checks existence, the revision and the last administrator in the
        // update's own transaction: no read before it.
        let updated = self
            .users
            .update(id, &patch, expected_revision, now, &audit)
            .await?;
        // Unless it is now an enabled administrator (its older tokens cannot say more), its
        // access tokens issued before are void: at once here, within a poll elsewhere.
        if updated.role != Role::Admin || updated.disabled {
            self.revocations.note(id, updated.updated_at);
        }
        tracing::info!(user_id = %id, role = %updated.role, disabled = updated.disabled, "user updated");
        Ok(updated)
    }

    /// Sign-in through an external OpenID Connect provider, after its ID token was verified:
    /// the account linked to (`issuer`, `subject`); else the account with the same, verified,
    /// e-mail (linked now, recorded in the audit log as `user.link_identity` by that user from
    /// `client_ip`); else a new `reader` account without a local password.
    pub async fn sign_in_external(
        &self,
        identity: Identity,
        email: Option<&str>,
        email_verified: bool,
        client_ip: Option<String>,
    ) -> Result<(User, TokenPair), AccountError> {
        let now = self.clock.now();
        let user = match self.users.find_by_identity(&identity).await? {
            Some(u) => u,
            None => {
                let email = email.map(Email::parse).transpose().map_err(|_| {
                    AccountError::Validation(ValidationError::field(
                        "id_token.email",
                        "the provider's e-mail address is not valid",
                    ))
                })?;
                let Some(email) = email else {
                    return Err(ValidationError::field(
                        "id_token.email",
                        "the provider did not share an e-mail address (request the `email` scope)",
                    )
                    .into());
                };
                match self.users.find_by_email(&email).await? {
                    Some(existing) if existing.role == Role::Admin => {
                        return Err(AccountError::AdminNotLinkable);
                    }
                    Some(existing) if email_verified => {
                        let actor = Actor {
                            principal: Principal {
                                kind: PrincipalKind::User {
                                    user_id: existing.id,
                                },
                                scopes: existing.role.scopes(),
                            },
                            client_ip,
                        };
                        let audit = actor.event(
                            "user.link_identity",
                            Some(existing.id),
                            serde_json::json!({"issuer": identity.issuer, "password_removed": true}),
                            now,
                        );
                        let linked = self
                            .users
                            .link_identity(existing.id, &identity, now, &audit)
                            .await?;
                        self.revocations.note(linked.id, linked.updated_at);
                        tracing::info!(user_id = %existing.id, issuer = %identity.issuer, "external identity linked by verified e-mail; local password removed");
                        linked
                    }
                    Some(_) => return Err(AccountError::EmailUnverified),
                    None => {
                        let user = User {
                            id: Uuid::now_v7(),
                            email,
                            password_hash: None,
                            // As a self-registered account: reading only, until granted more.
                            role: Role::Reader,
                            disabled: false,
                            created_at: now,
                            updated_at: now,
                            revision: 1,
                        };
                        self.users.insert(&user, Some(&identity)).await?;
                        tracing::info!(user_id = %user.id, issuer = %identity.issuer, "user created from an external identity");
                        user
                    }
                }
            }
        };
        if user.disabled {
            return Err(AccountError::Disabled);
        }
        let pair = self.start_session(&user, now).await?;
        Ok((user, pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::InMemoryAccounts;
    use crate::password::ArgonParams;
    use crate::tokens::TokenSettings;
    use depot_core::FixedClock;

    fn service() -> AccountService {
        service_at(Arc::new(FixedClock::new(Utc::now())))
    }

    fn service_at(clock: Arc<FixedClock>) -> AccountService {
        service_with(clock, Arc::new(InMemoryAccounts::default()))
    }

    fn service_with(clock: Arc<FixedClock>, store: Arc<InMemoryAccounts>) -> AccountService {
        // Cheap hashing: the rules are under test here, not argon2's cost.
        let hasher = PasswordHasher::new(
            ArgonParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            crate::password::HashBudgets {
                login: 4,
                new_passwords: 4,
            },
        )
        .unwrap();
        let tokens = TokenIssuer::from_pem(
            &tokens::generate_ed25519_pem(),
            TokenSettings {
                issuer: "depot-test".into(),
                audience: "depot-test".into(),
                access_ttl: Duration::minutes(15),
            },
        )
        .unwrap();
        AccountService::new(
            store.clone(),
            store.clone(),
            store,
            Arc::new(hasher),
            Arc::new(tokens),
            clock,
            AccountSettings {
                registration_enabled: true,
                password_policy: PasswordPolicy {
                    min_length: 12,
                    max_length: 128,
                },
                refresh_ttl: Duration::days(14),
                session_max: Duration::days(30),
            },
        )
    }

    const PASSWORD: &str = "correct horse battery staple";

    fn admin_actor() -> Actor {
        Actor {
            principal: Principal::admin(),
            client_ip: None,
        }
    }

    #[tokio::test]
    async fn a_taken_email_changes_nothing_and_is_not_an_error() {
        let svc = service();
        let u = svc
            .register("Alice@Example.com", PASSWORD)
            .await
            .unwrap()
            .created()
            .unwrap();
        assert_eq!(
            (u.email.as_str(), u.role),
            // Self-registered accounts read until an administrator grants more.
            ("alice@example.com", Role::Reader)
        );
        let other = "another password, somebody else's";
        assert!(matches!(
            svc.register("alice@example.com", other).await,
            Ok(Registration::AlreadyRegistered(_))
        ));
        svc.login("alice@example.com", PASSWORD, None)
            .await
            .unwrap();
        assert!(matches!(
            svc.login("alice@example.com", other, None).await,
            Err(AccountError::InvalidCredentials)
        ));
        // The command line is an operator's: it is told.
        assert!(matches!(
            svc.create_user("alice@example.com", PASSWORD, Role::User)
                .await,
            Err(AccountError::EmailTaken)
        ));
        assert!(matches!(
            svc.register("bob@example.com", "short").await,
            Err(AccountError::Validation(_))
        ));
    }

    #[tokio::test]
    async fn the_last_administrator_stays_and_a_stale_revision_is_a_failed_precondition() {
        let svc = service();
        let admin = svc
            .create_user("root@example.com", PASSWORD, Role::Admin)
            .await
            .unwrap();
        let demote = UserPatch {
            role: Some(Role::User),
            disabled: None,
        };
        assert!(matches!(
            svc.update(&admin_actor(), admin.id, demote.clone(), None)
                .await,
            Err(AccountError::LastAdmin)
        ));
        assert!(matches!(
            svc.update(
                &admin_actor(),
                admin.id,
                demote.clone(),
                Some(admin.revision + 1)
            )
            .await,
            Err(AccountError::PreconditionFailed)
        ));
        assert!(matches!(
            svc.update(&admin_actor(), Uuid::now_v7(), demote.clone(), None)
                .await,
            Err(AccountError::NotFound)
        ));
        assert!(matches!(
            svc.update(&admin_actor(), admin.id, UserPatch::default(), None)
                .await,
            Err(AccountError::Validation(_))
        ));
    }

    #[tokio::test]
    async fn login_refresh_rotation_and_reuse() {
        let clock = Arc::new(FixedClock::new(Utc::now()));
        let svc = service_at(clock.clone());
        let user = svc
            .register("carol@example.com", PASSWORD)
            .await
            .unwrap()
            .created()
            .unwrap();
        assert!(matches!(
            svc.login("carol@example.com", "wrong password!!", None)
                .await,
            Err(AccountError::InvalidCredentials)
        ));
        assert!(matches!(
            svc.login("nobody@example.com", PASSWORD, None).await,
            Err(AccountError::InvalidCredentials)
        ));
        let (_, pair) = svc
            .login("carol@example.com", PASSWORD, Some("127.0.0.1"))
            .await
            .unwrap();
        let principal = svc.authenticate(&pair.access_token).unwrap();
        assert_eq!(principal.kind, PrincipalKind::User { user_id: user.id });
        let next = svc.refresh(&pair.refresh_token).await.unwrap();
        assert!(matches!(
            svc.refresh(&pair.refresh_token).await,
            Err(AccountError::RefreshReused)
        ));
        // The reuse revoked the family: the rotated token is dead too.
        assert!(matches!(
            svc.refresh(&next.refresh_token).await,
            Err(AccountError::RefreshReused)
        ));
        // A change voids the tokens issued before it, to the millisecond.
        clock.advance(Duration::milliseconds(1));
        svc.update(
            &admin_actor(),
            user.id,
            UserPatch {
                role: None,
                disabled: Some(true),
            },
            None,
        )
        .await
        .unwrap();
        assert!(matches!(
            svc.login("carol@example.com", PASSWORD, None).await,
            Err(AccountError::Disabled)
        ));
        assert!(matches!(
            svc.authenticate(&pair.access_token),
            Err(TokenError::Revoked)
        ));
    }

    /// Role changes, disabling and identity linking are in the audit log; a refused change is
    /// not.
    #[tokio::test]
    async fn user_changes_and_identity_links_are_audited() {
        let store = Arc::new(InMemoryAccounts::default());
        let svc = service_with(Arc::new(FixedClock::new(Utc::now())), store.clone());
        let root = svc
            .create_user("root@example.com", PASSWORD, Role::Admin)
            .await
            .unwrap();
        let dave = svc
            .create_user("dave@example.com", PASSWORD, Role::User)
            .await
            .unwrap();
        let to_reader = UserPatch {
            role: Some(Role::Reader),
            disabled: None,
        };
        assert!(matches!(
            svc.update(&admin_actor(), root.id, to_reader.clone(), None)
                .await,
            Err(AccountError::LastAdmin)
        ));
        svc.update(&admin_actor(), dave.id, to_reader, None)
            .await
            .unwrap();
        let identity = Identity {
            issuer: "https://idp.example".into(),
            subject: "dave".into(),
        };
        svc.sign_in_external(identity, Some("dave@example.com"), true, None)
            .await
            .unwrap();
        assert_eq!(store.audit_actions(), ["user.update", "user.link_identity"]);
    }
}
