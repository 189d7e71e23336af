//! The accounts room's settings: `[accounts]` and `[oidc]`, each check beside its field.

use crate::settings::SettingsError;
use serde::{Deserialize, Serialize};

/// `[accounts]`. (The component's own `depot_accounts::AccountSettings` is what the service
/// needs of it: see [`AccountsSection::service`].)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSection {
    pub registration_enabled: bool,
    pub password_min_length: usize,
    pub password_max_length: usize,
    pub access_token_minutes: i64,
    pub refresh_token_days: i64,
    pub session_max_days: i64,
    pub token_issuer: String,
    pub token_audience: String,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Password checks at login computed at once.
    pub max_concurrent_hashes: usize,
    /// New passwords (registration, `depot users create`) hashed at once: a budget of their
    /// own, so that a registration flood does not hold logins up.
    pub max_concurrent_registration_hashes: usize,
}

impl AccountsSection {
    /// What the account service takes from this section.
    pub fn service(&self) -> depot_accounts::AccountSettings {
        depot_accounts::AccountSettings {
            registration_enabled: self.registration_enabled,
            password_policy: depot_accounts::PasswordPolicy {
                min_length: self.password_min_length,
                max_length: self.password_max_length,
            },
            refresh_ttl: chrono::Duration::days(self.refresh_token_days),
            session_max: chrono::Duration::days(self.session_max_days),
        }
    }

    /// How many hashes of each kind run at once.
    pub fn hash_budgets(&self) -> depot_accounts::HashBudgets {
        depot_accounts::HashBudgets {
            login: self.max_concurrent_hashes,
            new_passwords: self.max_concurrent_registration_hashes,
        }
    }

    /// The password hasher's cost.
    pub fn argon(&self) -> depot_accounts::ArgonParams {
        depot_accounts::ArgonParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.password_min_length < 8 || self.password_min_length > self.password_max_length {
            return Err(SettingsError::new(
                "accounts.password_min_length",
                "must be at least 8 and at most accounts.password_max_length",
            ));
        }
        if self.password_max_length > 1024 {
            return Err(SettingsError::new(
                "accounts.password_max_length",
                "must be at most 1024",
            ));
        }
        if !(1..=60).contains(&self.access_token_minutes) {
            return Err(SettingsError::new(
                "accounts.access_token_minutes",
                "must be between 1 and 60 (a disabled user keeps a token until it expires)",
            ));
        }
        if !(1..=365).contains(&self.refresh_token_days) {
            return Err(SettingsError::new(
                "accounts.refresh_token_days",
                "must be between 1 and 365",
            ));
        }
        if self.session_max_days < self.refresh_token_days || self.session_max_days > 3650 {
            return Err(SettingsError::new(
                "accounts.session_max_days",
                "must be at least accounts.refresh_token_days and at most 3650",
            ));
        }
        if self.token_issuer.trim().is_empty() || self.token_audience.trim().is_empty() {
            return Err(SettingsError::new(
                "accounts.token_issuer",
                "the token issuer and audience must not be empty",
            ));
        }
        let owasp = depot_accounts::OWASP_PARAMS;
        if self.argon2_memory_kib < owasp.memory_kib || self.argon2_iterations < owasp.iterations {
            return Err(SettingsError::new(
                "accounts.argon2_memory_kib",
                "argon2id must be at least as strong as OWASP's m=19456 KiB, t=2",
            ));
        }
        if self.argon2_parallelism == 0 {
            return Err(SettingsError::new(
                "accounts.argon2_parallelism",
                "must be at least 1",
            ));
        }
        if self.max_concurrent_hashes == 0 {
            return Err(SettingsError::new(
                "accounts.max_concurrent_hashes",
                "must be at least 1",
            ));
        }
        if self.max_concurrent_registration_hashes == 0 {
            return Err(SettingsError::new(
                "accounts.max_concurrent_registration_hashes",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub issuer_url: Option<String>,
    pub client_id: Option<String>,
    pub redirect_url: Option<String>,
    pub scopes: Vec<String>,
    pub cookie_secure: bool,
    pub jwks_refresh_min_seconds: u64,
    pub http_timeout_seconds: u64,
    /// Hosts besides the issuer's own that its `token_endpoint` and `jwks_uri` may be on.
    pub allowed_endpoint_hosts: Vec<String>,
    /// Sign-ins one client address may start in 10 minutes (each keeps a pending login for 10
    /// minutes, so this bounds the pending logins per address and replica); 0 = no limit.
    pub pending_logins_per_address: u32,
}

impl OidcSettings {
    pub fn enabled(&self) -> bool {
        self.issuer_url.is_some()
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(issuer) = &self.issuer_url {
            let url = url::Url::parse(issuer)
                .map_err(|_| SettingsError::new("oidc.issuer_url", "is not a URL"))?;
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                return Err(SettingsError::new(
                    "oidc.issuer_url",
                    "must be https (plain http only for a provider on loopback)",
                ));
            }
            if self.client_id.as_deref().is_none_or(str::is_empty) {
                return Err(SettingsError::new(
                    "oidc.client_id",
                    "is required when oidc.issuer_url is set",
                ));
            }
            match self.redirect_url.as_deref().map(url::Url::parse) {
                Some(Ok(u)) if matches!(u.scheme(), "https" | "http") => {}
                _ => {
                    return Err(SettingsError::new(
                        "oidc.redirect_url",
                        "must be the absolute URL of /api/v1/auth/oidc/callback when oidc.issuer_url is set",
                    ));
                }
            }
        }
        if !(1..=120).contains(&self.http_timeout_seconds) {
            return Err(SettingsError::new(
                "oidc.http_timeout_seconds",
                "must be between 1 and 120",
            ));
        }
        Ok(())
    }
}
