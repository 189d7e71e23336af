//! The packages room's settings: `[packages]`, `[executor]`, `[operations]`, each check beside
//! the field it checks.

use crate::settings::SettingsError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesSettings {
    /// The in-memory read cache (only in the embedded topology, where it cannot go stale).
    pub read_cache: bool,
    /// Retention: how many of a name's newest versions holding an artifact keep it (the active
    /// one counted among them; the previous one keeps it wherever it ranks; yanked ones are
    /// left alone). 0 keeps all. An hourly
    /// pass prunes the names past it; `POST /package-names/{name}/prune` prunes one now.
    pub keep_versions: u32,
}

impl PackagesSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.keep_versions > depot_packages::names::MAX_KEEP {
            return Err(SettingsError::new(
                "packages.keep_versions",
                format!(
                    "must be from 0 (keep all) to {}",
                    depot_packages::names::MAX_KEEP
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    Simulated,
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    pub kind: ExecutorKind,
    pub simulated_duration_ms: u64,
    pub simulated_steps: u32,
    pub simulated_failure_rate: f64,
    pub storage_dir: PathBuf,
    pub http_timeout_seconds: u64,
    pub max_download_bytes: u64,
}

impl ExecutorSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(0.0..=1.0).contains(&self.simulated_failure_rate) {
            return Err(SettingsError::new(
                "executor.simulated_failure_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.simulated_steps == 0 {
            return Err(SettingsError::new(
                "executor.simulated_steps",
                "must be at least 1",
            ));
        }
        if self.max_download_bytes == 0 {
            return Err(SettingsError::new(
                "executor.max_download_bytes",
                "must be at least 1",
            ));
        }
        if self.http_timeout_seconds == 0 {
            return Err(SettingsError::new(
                "executor.http_timeout_seconds",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSettings {
    pub max_attempts: i32,
    pub relay_interval_ms: u64,
    pub retention_hours: i64,
    pub max_event_streams: usize,
    /// Of those, how many one principal may hold.
    pub max_event_streams_per_principal: usize,
    /// A stream's longest life; then it ends (an EventSource reconnects by itself).
    pub max_event_stream_seconds: u64,
    pub watch_interval_ms: u64,
    /// A running operation whose worker has not renewed it for this long is abandoned: the
    /// reaper fails it, and a cancel ends it at once.
    pub lease_seconds: u64,
}

impl OperationSettings {
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=86_400).contains(&self.lease_seconds) {
            return Err(SettingsError::new(
                "operations.lease_seconds",
                "must be between 1 and 86400",
            ));
        }
        if self.max_event_streams_per_principal == 0 {
            return Err(SettingsError::new(
                "operations.max_event_streams_per_principal",
                "must be at least 1 (set operations.max_event_streams = 0 to turn streams off)",
            ));
        }
        if !(1..=86_400).contains(&self.max_event_stream_seconds) {
            return Err(SettingsError::new(
                "operations.max_event_stream_seconds",
                "must be between 1 and 86400",
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(SettingsError::new(
                "operations.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if !(10..=60_000).contains(&self.relay_interval_ms) {
            return Err(SettingsError::new(
                "operations.relay_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        if !(10..=5_000).contains(&self.watch_interval_ms) {
            return Err(SettingsError::new(
                "operations.watch_interval_ms",
                "must be between 10 and 5000",
            ));
        }
        if self.retention_hours < 24 {
            return Err(SettingsError::new(
                "operations.retention_hours",
                "must be at least 24 (operations are kept at least a day)",
            ));
        }
        Ok(())
    }
}
