//! API keys as the domain sees them.

use chrono::{DateTime, Duration, Utc};
use depot_core::{Permission, ValidationError};
use serde::Serialize;
use std::collections::BTreeSet;
use uuid::Uuid;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_LIFETIME_DAYS: i64 = 3650;
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;

/// A key's name: trimmed, 1–100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ValidationError::field(
                "name",
                format!("must have 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ValidationError::field(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Scopes as stored: `packages:read packages:write` (space-separated, sorted).
pub fn scopes_to_string(scopes: &BTreeSet<Permission>) -> String {
    scopes
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn scopes_from_string(raw: &str) -> BTreeSet<Permission> {
    raw.split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Parses requested scope names, naming the index of every unknown one.
pub fn parse_scopes(raw: &[String]) -> Result<BTreeSet<Permission>, ValidationError> {
    let mut errors: Option<ValidationError> = None;
    let mut scopes = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        match s.parse::<Permission>() {
            Ok(p) => {
                scopes.insert(p);
            }
            Err(_) => {
                let msg = format!(
                    "unknown scope `{s}` (known: {})",
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                );
                match errors.as_mut() {
                    Some(e) => e.push(format!("scopes[{i}]"), msg),
                    None => errors = Some(ValidationError::field(format!("scopes[{i}]"), msg)),
                }
            }
        }
    }
    match errors {
        Some(e) => Err(e),
        None if scopes.is_empty() => Err(ValidationError::field(
            "scopes",
            "must name at least one scope",
        )),
        None => Ok(scopes),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "active" => Ok(Self::Active),
            "revoked" => Ok(Self::Revoked),
            "expired" => Ok(Self::Expired),
            _ => Err(ValidationError::field(
                "status",
                "must be active, revoked or expired",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// A stored key (never its plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// `dpk_abc1`.
    pub prefix: String,
    pub scopes: BTreeSet<Permission>,
    pub rate_limit_per_minute: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub total_uses: i64,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<Uuid>,
    /// The key its rotation chain started from (its own id when never rotated): the chain
    /// owns what any of its keys created.
    pub lineage_id: Uuid,
    /// Incremented on every change; the ETag.
    pub revision: i64,
}

impl ApiKey {
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// When a new key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    Never,
    At(DateTime<Utc>),
    Days(i64),
    /// The configured default.
    Default,
}

impl Lifetime {
    /// Builds a lifetime from the mutually exclusive request fields.
    pub fn from_fields(
        expires_at: Option<DateTime<Utc>>,
        expires_in_days: Option<i64>,
        never_expires: Option<bool>,
        days_field: &str,
    ) -> Result<Self, ValidationError> {
        let given = [
            expires_at.is_some(),
            expires_in_days.is_some(),
            never_expires == Some(true),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given > 1 {
            return Err(ValidationError::field(
                "expires_at",
                format!("give only one of expires_at, {days_field}, never_expires"),
            ));
        }
        Ok(match (expires_at, expires_in_days, never_expires) {
            (Some(at), _, _) => Lifetime::At(at),
            (_, Some(days), _) => Lifetime::Days(days),
            (_, _, Some(true)) => Lifetime::Never,
            _ => Lifetime::Default,
        })
    }

    /// The expiry time, validated against `now`.
    pub fn resolve(
        self,
        now: DateTime<Utc>,
        default_days: i64,
        days_field: &str,
    ) -> Result<Option<DateTime<Utc>>, ValidationError> {
        match self {
            Lifetime::Never => Ok(None),
            Lifetime::At(at) if at <= now => Err(ValidationError::field(
                "expires_at",
                "must be in the future",
            )),
            Lifetime::At(at) if at > now + Duration::days(MAX_LIFETIME_DAYS) => {
                Err(ValidationError::field(
                    "expires_at",
                    format!("must be within {MAX_LIFETIME_DAYS} days"),
                ))
            }
            Lifetime::At(at) => Ok(Some(at)),
            Lifetime::Days(d) if !(1..=MAX_LIFETIME_DAYS).contains(&d) => {
                Err(ValidationError::field(
                    days_field,
                    format!("must be between 1 and {MAX_LIFETIME_DAYS}"),
                ))
            }
            Lifetime::Days(d) => Ok(Some(now + Duration::days(d))),
            Lifetime::Default => Ok(Some(now + Duration::days(default_days))),
        }
    }
}

pub use depot_core::audit::AuditEvent;

/// One authenticated request made with a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub id: Uuid,
    pub key_id: Uuid,
    pub at: DateTime<Utc>,
    pub method: String,
    /// The route template (`/api/v1/packages/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(KeyName::parse("  ci  ").unwrap().as_str(), "ci");
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"x".repeat(101)).is_err());
        assert!(KeyName::parse("a\nb").is_err());
    }

    #[test]
    fn scopes_parse_and_round_trip() {
        let s = parse_scopes(&["packages:read".into(), "packages:write".into()]).unwrap();
        assert_eq!(scopes_from_string(&scopes_to_string(&s)), s);
        let e = parse_scopes(&["packages:read".into(), "root".into()]).unwrap_err();
        assert_eq!(e.errors[0].field, "scopes[1]");
        assert_eq!(parse_scopes(&[]).unwrap_err().errors[0].field, "scopes");
    }

    #[test]
    fn status_follows_revocation_and_expiry() {
        let now = Utc::now();
        let mut k = ApiKey {
            id: Uuid::now_v7(),
            name: "k".into(),
            prefix: "dpk_abcd".into(),
            scopes: BTreeSet::new(),
            rate_limit_per_minute: None,
            created_at: now,
            updated_at: now,
            expires_at: Some(now + Duration::days(1)),
            revoked_at: None,
            last_used_at: None,
            total_uses: 0,
            rotated_from: None,
            lineage_id: Uuid::nil(),
            revision: 1,
        };
        assert_eq!(k.status(now), KeyStatus::Active);
        assert_eq!(k.status(now + Duration::days(2)), KeyStatus::Expired);
        k.revoked_at = Some(now);
        assert_eq!(k.status(now), KeyStatus::Revoked);
        k.expires_at = None;
        k.revoked_at = None;
        assert_eq!(k.status(now + Duration::days(10_000)), KeyStatus::Active);
    }

    #[test]
    fn lifetimes() {
        let now = Utc::now();
        let f = |a, d, n| Lifetime::from_fields(a, d, n, "expires_in_days");
        assert_eq!(f(None, None, None).unwrap(), Lifetime::Default);
        assert!(f(Some(now), Some(3), None).is_err());
        assert_eq!(
            f(None, Some(3), None)
                .unwrap()
                .resolve(now, 15, "expires_in_days")
                .unwrap(),
            Some(now + Duration::days(3))
        );
        assert_eq!(
            Lifetime::Default.resolve(now, 15, "d").unwrap(),
            Some(now + Duration::days(15))
        );
        assert_eq!(Lifetime::Never.resolve(now, 15, "d").unwrap(), None);
        assert!(Lifetime::Days(0).resolve(now, 15, "d").is_err());
        assert!(
            Lifetime::At(now - Duration::seconds(1))
                .resolve(now, 15, "d")
                .is_err()
        );
    }
}
