//! Accounts: users with argon2id passwords, roles mapped to scopes, short-lived JWT access tokens
//! (EdDSA), opaque refresh tokens that rotate on every use (stored as hashes; reuse revokes the
//! family), per-account login throttling, and sign-in through an external OpenID Connect
//! provider.

#[cfg(test)]
pub(crate) mod fakes;
pub mod model;
pub mod oidc;
pub mod password;
pub mod ports;
pub mod revocations;
pub mod service;
pub mod throttle;
pub mod tokens;

pub use model::{Email, Identity, PasswordPolicy, Role, User};
pub use password::{ArgonParams, HashBudgets, OWASP_PARAMS, PasswordHasher};
pub use ports::{
    InsertUserError, NewRefreshToken, PendingLogin, PendingLoginRepository, RefreshTokenRepository,
    Rotation, ThrottleRepository, UpdateUserError, UserPatch, UserRepository,
};
pub use service::{AccountError, AccountService, AccountSettings, Registration};
pub use tokens::{TokenError, TokenIssuer, TokenPair, TokenSettings};
