//! Who is calling and what they may do.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A scope a credential can hold. The string form (`packages:read`) is the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "packages:read")]
    PackagesRead,
    #[serde(rename = "packages:write")]
    PackagesWrite,
    /// Manage every package name, whoever owns it.
    #[serde(rename = "packages:admin")]
    PackagesAdmin,
    #[serde(rename = "operations:read")]
    OperationsRead,
    #[serde(rename = "passwords:generate")]
    PasswordsGenerate,
    #[serde(rename = "api_keys:admin")]
    ApiKeysAdmin,
    #[serde(rename = "users:admin")]
    UsersAdmin,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::PackagesRead,
        Permission::PackagesWrite,
        Permission::PackagesAdmin,
        Permission::OperationsRead,
        Permission::PasswordsGenerate,
        Permission::ApiKeysAdmin,
        Permission::UsersAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::PackagesRead => "packages:read",
            Permission::PackagesWrite => "packages:write",
            Permission::PackagesAdmin => "packages:admin",
            Permission::OperationsRead => "operations:read",
            Permission::PasswordsGenerate => "passwords:generate",
            Permission::ApiKeysAdmin => "api_keys:admin",
            Permission::UsersAdmin => "users:admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// The kind of credential behind a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The operator, authenticated with the admin secret.
    Admin,
    /// A client authenticated with an API key. `lineage_id` is the key its rotation chain
    /// started from (its own id when never rotated): what the key owns, the chain owns.
    ApiKey { key_id: Uuid, lineage_id: Uuid },
    /// A user authenticated with an access token.
    User { user_id: Uuid },
    /// Nobody: a public route called without credentials.
    Anonymous,
}

/// Who owns what a principal creates (a package name, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerKind {
    ApiKey,
    User,
    Admin,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::ApiKey => "api_key",
            OwnerKind::User => "user",
            OwnerKind::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [OwnerKind::ApiKey, OwnerKind::User, OwnerKind::Admin]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

/// An owner: a key lineage, a user, or the operator (the admin secret, no id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub kind: OwnerKind,
    pub id: Option<Uuid>,
}

/// The authenticated caller as every protected route sees it, whatever the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub scopes: BTreeSet<Permission>,
}

/// The caller lacks a scope the action needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this action needs the `{required}` scope")]
pub struct Forbidden {
    pub required: Permission,
}

impl Principal {
    pub fn admin() -> Self {
        Self {
            kind: PrincipalKind::Admin,
            scopes: Permission::ALL.into_iter().collect(),
        }
    }

    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            scopes: BTreeSet::new(),
        }
    }

    pub fn has(&self, permission: Permission) -> bool {
        self.scopes.contains(&permission)
    }

    pub fn require(&self, permission: Permission) -> Result<(), Forbidden> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(Forbidden {
                required: permission,
            })
        }
    }

    /// What this principal owns by creating it: a key's lineage, a user, the operator.
    pub fn owner(&self) -> Option<Owner> {
        match &self.kind {
            PrincipalKind::Admin => Some(Owner {
                kind: OwnerKind::Admin,
                id: None,
            }),
            PrincipalKind::ApiKey { lineage_id, .. } => Some(Owner {
                kind: OwnerKind::ApiKey,
                id: Some(*lineage_id),
            }),
            PrincipalKind::User { user_id } => Some(Owner {
                kind: OwnerKind::User,
                id: Some(*user_id),
            }),
            PrincipalKind::Anonymous => None,
        }
    }

    /// Whether this principal manages what `owner` owns: its owner does, and so does a holder
    /// of `admin_scope` (a thing without an owner is for those alone).
    pub fn manages(&self, owner: Option<&Owner>, admin_scope: Permission) -> bool {
        self.has(admin_scope) || owner.is_some_and(|o| self.owner().as_ref() == Some(o))
    }

    /// A short, non-secret description for audit logs: `admin`, `api_key:<id>`, `user:<id>`.
    pub fn actor(&self) -> String {
        match &self.kind {
            PrincipalKind::Admin => "admin".to_owned(),
            PrincipalKind::ApiKey { key_id, .. } => format!("api_key:{key_id}"),
            PrincipalKind::User { user_id } => format!("user:{user_id}"),
            PrincipalKind::Anonymous => "anonymous".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_round_trips_through_its_string_form() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Permission>(&json).unwrap(), p);
        }
        assert!("packages:delete".parse::<Permission>().is_err());
    }

    #[test]
    fn require_checks_scopes() {
        let p = Principal {
            kind: PrincipalKind::ApiKey {
                key_id: Uuid::nil(),
                lineage_id: Uuid::nil(),
            },
            scopes: [Permission::PackagesRead].into_iter().collect(),
        };
        assert!(p.require(Permission::PackagesRead).is_ok());
        assert_eq!(
            p.require(Permission::PackagesWrite),
            Err(Forbidden {
                required: Permission::PackagesWrite
            })
        );
        assert!(Principal::admin().require(Permission::ApiKeysAdmin).is_ok());
        assert!(
            Principal::anonymous()
                .require(Permission::PackagesRead)
                .is_err()
        );
    }
}
