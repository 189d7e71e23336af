//! The API-keys room's settings: `[api_keys]` and `[auth]`, each check beside its field.

use crate::settings::SettingsError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Accept keys in the query string (`?api_key=`).
    pub allow_query_keys: bool,
    /// Failed credential checks (bad admin secret, unknown or malformed key, invalid token) a
    /// client address may make per minute before its checks answer 429; 0 = no limit.
    pub failed_credentials_per_minute: u32,
    /// Requests to login, refresh, logout and the provider callback one client address may make
    /// per minute (each replica counts its own); 0 = no limit.
    pub sign_ins_per_minute: u32,
    /// Registrations one client address may make per hour; 0 = no limit.
    pub registrations_per_hour: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    pub default_lifetime_days: i64,
    pub usage_retention_days: i64,
    pub cache_ttl_seconds: u64,
    pub change_poll_milliseconds: u64,
    pub usage_flush_milliseconds: u64,
}

impl ApiKeySettings {
    /// The verifier's settings, from these.
    pub fn verifier(&self) -> depot_api_keys::VerifierSettings {
        depot_api_keys::VerifierSettings {
            cache_ttl: Duration::from_secs(self.cache_ttl_seconds),
            poll_interval: Duration::from_millis(self.change_poll_milliseconds),
            flush_interval: Duration::from_millis(self.usage_flush_milliseconds),
            usage_retention_days: self.usage_retention_days,
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let within = |key: &str, value: i64, lo: i64, hi: i64, why: &str| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(SettingsError::new(
                    key,
                    format!("must be between {lo} and {hi}{why}"),
                ))
            }
        };
        within(
            "api_keys.default_lifetime_days",
            self.default_lifetime_days,
            1,
            3650,
            "",
        )?;
        within(
            "api_keys.usage_retention_days",
            self.usage_retention_days,
            1,
            3650,
            "",
        )?;
        within(
            "api_keys.cache_ttl_seconds",
            self.cache_ttl_seconds as i64,
            1,
            3600,
            "",
        )?;
        within(
            "api_keys.change_poll_milliseconds",
            self.change_poll_milliseconds as i64,
            50,
            1000,
            " (revocations must reach every replica within 1 s)",
        )?;
        within(
            "api_keys.usage_flush_milliseconds",
            self.usage_flush_milliseconds as i64,
            100,
            60_000,
            "",
        )
    }
}
