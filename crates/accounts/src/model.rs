//! Users, roles and the validated inputs of the accounts component.

use chrono::{DateTime, Utc};
use depot_core::{Permission, ValidationError};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// What a user may do. Roles map to scopes; tokens carry both and are checked against the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including managing API keys and users.
    Admin,
    /// Packages (creating and managing its own), operations and password generation; no
    /// administration.
    User,
    /// Reading packages and operations, generating passwords: what a self-registered or
    /// OIDC-created account gets until an administrator grants more.
    Reader,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::User, Role::Reader];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Reader => "reader",
        }
    }

    pub fn scopes(self) -> BTreeSet<Permission> {
        match self {
            Role::Admin => Permission::ALL.into_iter().collect(),
            Role::User => [
                Permission::PackagesRead,
                Permission::PackagesWrite,
                Permission::OperationsRead,
                Permission::PasswordsGenerate,
            ]
            .into_iter()
            .collect(),
            Role::Reader => [
                Permission::PackagesRead,
                Permission::OperationsRead,
                Permission::PasswordsGenerate,
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ValidationError::field("role", "must be `admin`, `user` or `reader`"))
    }
}

/// An e-mail address, trimmed and lower-cased (addresses compare case-insensitively here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = |m: &str| ValidationError::field("email", m);
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(invalid("must be at most 254 characters"));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(invalid("is not an e-mail address (no @)"));
        };
        let ok_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty()
            || local.len() > 64
            || !ok_domain
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("is not an e-mail address"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Length limits of local passwords (settings). Passwords are never truncated or altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 128,
        }
    }
}

impl PasswordPolicy {
    /// Counts characters, not bytes.
    pub fn check(&self, password: &str) -> Result<(), ValidationError> {
        let n = password.chars().count();
        if n < self.min_length || n > self.max_length {
            return Err(ValidationError::field(
                "password",
                format!(
                    "must be {}–{} characters long",
                    self.min_length, self.max_length
                ),
            ));
        }
        if password.trim().is_empty() {
            return Err(ValidationError::field(
                "password",
                "must not be only whitespace",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: Email,
    /// PHC string of the argon2id hash; `None` for accounts that only sign in through OIDC.
    pub password_hash: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revision: i64,
}

/// A link between a user and an identity at an external OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_scopes() {
        assert_eq!(Role::Admin.scopes().len(), Permission::ALL.len());
        let user = Role::User.scopes();
        assert!(user.contains(&Permission::PackagesWrite));
        assert!(!user.contains(&Permission::ApiKeysAdmin));
        assert!(!user.contains(&Permission::UsersAdmin));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@example.com",
            "alice@exa mple.com",
            "alice@.example.com",
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.errors[0].field, "email", "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn password_policy_counts_characters_and_never_truncates() {
        let p = PasswordPolicy::default();
        assert!(p.check("short").is_err());
        assert!(p.check("exactly12chr").is_ok());
        assert!(p.check(&"ü".repeat(12)).is_ok(), "12 characters, 24 bytes");
        assert!(p.check(&"x".repeat(128)).is_ok());
        assert!(p.check(&"x".repeat(129)).is_err());
        assert!(p.check(&" ".repeat(12)).is_err());
    }
}
