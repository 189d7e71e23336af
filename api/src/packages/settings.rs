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
    /// Activation refuses an artifact without a signature that verifies by a key trusted for
    /// its name (the operation fails `signature_invalid`).
    #[serde(default)]
    pub require_signatures: bool,
    /// Minisign public keys trusted for signatures: `"<key>"` (every name) or
    /// `"<key> <pattern> …"` (names matching one of the glob patterns, `acme-*`), the key the
    /// base64 line of a `minisign.pub` file.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

impl PackagesSettings {
    /// The trusted keys, parsed, and whether activation requires a signature.
    pub fn trust(&self) -> Result<depot_packages::signature::Trust, SettingsError> {
        let keys = self
            .trusted_keys
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                depot_packages::signature::TrustedKey::parse(entry).map_err(|e| {
                    SettingsError::new("packages.trusted_keys", format!("entry {}: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.key_id() == key.key_id()) {
                return Err(SettingsError::new(
                    "packages.trusted_keys",
                    format!(
                        "entry {}: key {} is listed twice: list it once with all its name patterns",
                        i + 1,
                        key.key_id()
                    ),
                ));
            }
        }
        if self.require_signatures && keys.is_empty() {
            return Err(SettingsError::new(
                "packages.require_signatures",
                "is on but packages.trusted_keys is empty: no activation could succeed",
            ));
        }
        Ok(depot_packages::signature::Trust::new(
            keys,
            self.require_signatures,
        ))
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.trust()?;
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

/// `[artifacts]`: where packages' bytes are kept and how large one may be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsSettings {
    /// `file://<dir>` (a relative dir is read from the working directory) or
    /// `s3://bucket[/prefix]`. Unset: the old name `executor.storage_dir`, else
    /// `data/artifacts`.
    pub url: Option<String>,
    /// The largest artifact, uploaded or downloaded. Unset: the old name
    /// `executor.max_download_bytes`, else 1 GiB.
    pub max_bytes: Option<u64>,
    /// With `s3://`: the S3-compatible server (`https://minio.internal:9000`); unset: AWS.
    /// The keys come from the secret store: `s3_access_key_id`, `s3_secret_access_key`.
    pub s3_endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub s3_region: String,
    /// Allow an `http://` endpoint (a server on loopback or a private network).
    #[serde(default)]
    pub s3_allow_http: bool,
}

impl Default for ArtifactsSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_bytes: None,
            s3_endpoint: None,
            s3_region: default_region(),
            s3_allow_http: false,
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Where artifacts are when nothing says otherwise.
pub const DEFAULT_ARTIFACTS_DIR: &str = "data/artifacts";

/// Where `[artifacts]` puts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl ArtifactsSettings {
    /// Where artifacts are, from `artifacts.url` or its old name.
    pub fn location(&self, executor: &ExecutorSettings) -> Result<ArtifactLocation, SettingsError> {
        if let Some(rest) = self.url.as_deref().and_then(|u| u.strip_prefix("s3://")) {
            if executor.storage_dir.is_some() {
                return Err(SettingsError::new(
                    "artifacts.url",
                    "is set together with its old name executor.storage_dir: keep one",
                ));
            }
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !valid {
                return Err(SettingsError::new(
                    "artifacts.url",
                    format!("`{bucket}` is not an S3 bucket name (3-63 of a-z 0-9 . -)"),
                ));
            }
            if let Some(endpoint) = &self.s3_endpoint {
                let http = endpoint.starts_with("http://");
                if !(http || endpoint.starts_with("https://")) {
                    return Err(SettingsError::new(
                        "artifacts.s3_endpoint",
                        "must be an http:// or https:// URL",
                    ));
                }
                if http && !self.s3_allow_http {
                    return Err(SettingsError::new(
                        "artifacts.s3_endpoint",
                        "is http://: set artifacts.s3_allow_http = true to allow it",
                    ));
                }
            }
            return Ok(ArtifactLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        self.dir(executor).map(ArtifactLocation::Dir)
    }

    /// The artifacts' directory, from a `file://` `artifacts.url` or its old name.
    pub fn dir(&self, executor: &ExecutorSettings) -> Result<PathBuf, SettingsError> {
        match (&self.url, &executor.storage_dir) {
            (Some(_), Some(_)) => Err(SettingsError::new(
                "artifacts.url",
                "is set together with its old name executor.storage_dir: keep one",
            )),
            (Some(url), None) => {
                let dir = url.strip_prefix("file://").ok_or_else(|| {
                    SettingsError::new(
                        "artifacts.url",
                        format!("`{url}` is not file://<directory> or s3://<bucket>[/prefix]"),
                    )
                })?;
                // `file://localhost/x` names `/x`, as RFC 8089 says.
                let dir = dir.strip_prefix("localhost/").map_or(dir, |_| &dir[9..]);
                if dir.is_empty() {
                    return Err(SettingsError::new(
                        "artifacts.url",
                        "names no directory (file:///var/lib/depot/artifacts, or file://data/artifacts relative to the working directory)",
                    ));
                }
                Ok(PathBuf::from(dir))
            }
            (None, Some(dir)) => Ok(dir.clone()),
            (None, None) => Ok(PathBuf::from(DEFAULT_ARTIFACTS_DIR)),
        }
    }

    /// The size cap, from `artifacts.max_bytes` or its old name.
    pub fn max_bytes(&self, executor: &ExecutorSettings) -> Result<u64, SettingsError> {
        let (key, value) = match (self.max_bytes, executor.max_download_bytes) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::new(
                    "artifacts.max_bytes",
                    "is set together with its old name executor.max_download_bytes: keep one",
                ));
            }
            (Some(n), None) => ("artifacts.max_bytes", n),
            (None, Some(n)) => ("executor.max_download_bytes", n),
            (None, None) => return Ok(depot_packages::service::DEFAULT_MAX_ARTIFACT_BYTES),
        };
        if value == 0 {
            return Err(SettingsError::new(key, "must be at least 1"));
        }
        Ok(value)
    }

    pub fn validate(&self, executor: &ExecutorSettings) -> Result<(), SettingsError> {
        self.location(executor)?;
        self.max_bytes(executor)?;
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
    /// The old name of `artifacts.url` (a directory).
    pub storage_dir: Option<PathBuf>,
    pub http_timeout_seconds: u64,
    /// The old name of `artifacts.max_bytes`.
    pub max_download_bytes: Option<u64>,
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
