//! Typed configuration, layered as described in `config/default.toml`, validated at start-up.
//!
//! A bad value stops the process with one line naming the key ([`SettingsError`]); it never
//! becomes a 500 later.

use config::{Config, Environment, File, FileFormat};
use depot_store::Backend;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

const BUILT_IN: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    pub docs: DocsSettings,
    pub secrets: SecretsSettings,
    pub password: PasswordSettings,
    pub auth: AuthSettings,
    pub api_keys: ApiKeySettings,
    pub executor: ExecutorSettings,
    pub operations: OperationSettings,
    pub accounts: AccountSettings,
    pub oidc: OidcSettings,
    pub packages: PackagesSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesSettings {
    pub read_cache: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
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
    pub max_concurrent_hashes: usize,
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
}

impl OidcSettings {
    pub fn enabled(&self) -> bool {
        self.issuer_url.is_some()
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSettings {
    pub max_attempts: i32,
    pub relay_interval_ms: u64,
    pub retention_hours: i64,
    pub max_event_streams: usize,
    pub watch_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub allow_query_keys: bool,
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
    pub fn verifier(&self) -> depot_api_keys::VerifierSettings {
        depot_api_keys::VerifierSettings {
            cache_ttl: Duration::from_secs(self.cache_ttl_seconds),
            poll_interval: Duration::from_millis(self.change_poll_milliseconds),
            flush_interval: Duration::from_millis(self.usage_flush_milliseconds),
            usage_retention_days: self.usage_retention_days,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub default_length: usize,
    pub numbers: bool,
    pub lower_case_chars: bool,
    pub upper_case_chars: bool,
    pub special_symbols: bool,
    pub symbols: Option<String>,
    pub require_scope: bool,
}

impl PasswordSettings {
    pub fn defaults(&self) -> depot_password::Defaults {
        depot_password::Defaults {
            length: self.default_length,
            numbers: self.numbers,
            lower: self.lower_case_chars,
            upper: self.upper_case_chars,
            symbols: self.special_symbols,
            symbol_set: self.symbols.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub shutdown_grace_seconds: u64,
    pub cors_allowed_origins: Vec<String>,
    pub workers: usize,
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout_seconds: u64,
    pub acquire_timeout_seconds: u64,
    pub auto_migrate: Option<bool>,
    pub log_statements: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    InProcess,
    Rabbitmq,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub kind: Option<QueueKind>,
    pub amqp_url: Option<String>,
    pub prefetch: u16,
    pub queue_prefix: String,
    pub max_deliveries: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub embedded: bool,
    pub concurrency: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocsSettings {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    pub dir: Option<PathBuf>,
}

/// A configuration problem, printed as one line: `configuration error: <key>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {problem}")]
pub struct SettingsError {
    pub key: String,
    pub problem: String,
}

impl SettingsError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Aliases kept for compatibility with conventional and legacy variable names.
const ALIASES: &[(&str, &str)] = &[
    ("PORT", "server.port"),
    ("DATABASE_URL", "database.url"),
    ("AMQP_URL", "queue.amqp_url"),
    // The password generator's original variables.
    ("DEFAULT_PASSWORD_LENGTH", "password.default_length"),
    ("PASSWORD_NUMBERS", "password.numbers"),
    ("PASSWORD_LOWER_CASE_CHARS", "password.lower_case_chars"),
    ("PASSWORD_UPPER_CASE_CHARS", "password.upper_case_chars"),
    ("PASSWORD_SPECIAL_SYMBOLS", "password.special_symbols"),
];

impl Settings {
    /// Loads the layers from the process environment and the working directory.
    pub fn load() -> Result<Self, SettingsError> {
        let env_name = std::env::var("DEPOT_ENV").unwrap_or_else(|_| "local".into());
        let dir = std::env::var("DEPOT_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let mut builder = Config::builder()
            .add_source(File::from_str(BUILT_IN, FileFormat::Toml))
            .add_source(File::with_name(&format!("{dir}/default")).required(false))
            .add_source(File::with_name(&format!("{dir}/{env_name}")).required(false))
            .add_source(
                Environment::with_prefix("DEPOT")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("server.cors_allowed_origins")
                    .with_list_parse_key("server.trusted_proxies")
                    .with_list_parse_key("oidc.scopes"),
            );
        for (var, key) in ALIASES {
            if let Ok(value) = std::env::var(var) {
                builder = builder
                    .set_override(*key, value)
                    .map_err(|e| SettingsError::new(*key, e.to_string()))?;
            }
        }
        Self::from_config(builder.build().map_err(config_error)?)
    }

    /// The built-in defaults only, ignoring files and the environment (used by tests).
    pub fn defaults() -> Self {
        let config = Config::builder()
            .add_source(File::from_str(BUILT_IN, FileFormat::Toml))
            .build()
            .expect("the built-in defaults parse");
        Self::from_config(config).expect("the built-in defaults are valid")
    }

    fn from_config(config: Config) -> Result<Self, SettingsError> {
        let settings: Settings = config.try_deserialize().map_err(config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let s = &self.server;
        if s.host.trim().is_empty() {
            return Err(SettingsError::new("server.host", "must not be empty"));
        }
        if s.body_limit_bytes < 1024 {
            return Err(SettingsError::new(
                "server.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if s.shutdown_grace_seconds > 3600 {
            return Err(SettingsError::new(
                "server.shutdown_grace_seconds",
                "must be at most 3600",
            ));
        }
        for origin in &s.cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(SettingsError::new(
                    "server.cors_allowed_origins",
                    format!("`{origin}` is not an origin (scheme://host[:port]) or \"*\""),
                ));
            }
        }
        for proxy in &self.server.trusted_proxies {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                return Err(SettingsError::new(
                    "server.trusted_proxies",
                    format!("`{proxy}` is not an IP address"),
                ));
            }
        }
        let d = &self.database;
        match Backend::of_url(&d.url) {
            None => {
                return Err(SettingsError::new(
                    "database.url",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
            Some(Backend::Sqlite) if !depot_store::database::is_valid_sqlite_url(&d.url) => {
                return Err(SettingsError::new(
                    "database.url",
                    "is not a valid SQLite URL",
                ));
            }
            _ => {}
        }
        if d.max_connections == 0 {
            return Err(SettingsError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if d.min_connections > d.max_connections {
            return Err(SettingsError::new(
                "database.min_connections",
                "must not exceed database.max_connections",
            ));
        }
        if d.connect_timeout_seconds == 0 || d.acquire_timeout_seconds == 0 {
            return Err(SettingsError::new(
                "database.connect_timeout_seconds",
                "timeouts must be at least 1 second",
            ));
        }
        if self.queue_kind() == QueueKind::Rabbitmq {
            match self.queue.amqp_url.as_deref() {
                Some(u) if u.starts_with("amqp://") || u.starts_with("amqps://") => {}
                Some(_) => {
                    return Err(SettingsError::new(
                        "queue.amqp_url",
                        "must start with amqp:// or amqps://",
                    ));
                }
                None => {
                    return Err(SettingsError::new(
                        "queue.amqp_url",
                        "is required when queue.kind = \"rabbitmq\"",
                    ));
                }
            }
        }
        if self.queue.max_deliveries == 0 {
            return Err(SettingsError::new(
                "queue.max_deliveries",
                "must be at least 1",
            ));
        }
        if self.queue.prefetch == 0 {
            return Err(SettingsError::new("queue.prefetch", "must be at least 1"));
        }
        if self.worker.concurrency == 0 {
            return Err(SettingsError::new(
                "worker.concurrency",
                "must be at least 1",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(SettingsError::new("log.level", e.to_string()));
        }
        if let Some(dir) = &self.secrets.dir
            && !dir.is_dir()
        {
            return Err(SettingsError::new(
                "secrets.dir",
                format!("{} is not a readable directory", dir.display()),
            ));
        }
        let k = &self.api_keys;
        if !(1..=3650).contains(&k.default_lifetime_days) {
            return Err(SettingsError::new(
                "api_keys.default_lifetime_days",
                "must be between 1 and 3650",
            ));
        }
        if !(1..=3650).contains(&k.usage_retention_days) {
            return Err(SettingsError::new(
                "api_keys.usage_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if !(1..=3600).contains(&k.cache_ttl_seconds) {
            return Err(SettingsError::new(
                "api_keys.cache_ttl_seconds",
                "must be between 1 and 3600",
            ));
        }
        if !(50..=1000).contains(&k.change_poll_milliseconds) {
            return Err(SettingsError::new(
                "api_keys.change_poll_milliseconds",
                "must be between 50 and 1000 (revocations must reach every replica within 1 s)",
            ));
        }
        if !(100..=60_000).contains(&k.usage_flush_milliseconds) {
            return Err(SettingsError::new(
                "api_keys.usage_flush_milliseconds",
                "must be between 100 and 60000",
            ));
        }
        let x = &self.executor;
        if !(0.0..=1.0).contains(&x.simulated_failure_rate) {
            return Err(SettingsError::new(
                "executor.simulated_failure_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        if x.simulated_steps == 0 {
            return Err(SettingsError::new(
                "executor.simulated_steps",
                "must be at least 1",
            ));
        }
        if x.max_download_bytes == 0 {
            return Err(SettingsError::new(
                "executor.max_download_bytes",
                "must be at least 1",
            ));
        }
        if x.http_timeout_seconds == 0 {
            return Err(SettingsError::new(
                "executor.http_timeout_seconds",
                "must be at least 1",
            ));
        }
        let o = &self.operations;
        if !(1..=100).contains(&o.max_attempts) {
            return Err(SettingsError::new(
                "operations.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if !(10..=60_000).contains(&o.relay_interval_ms) {
            return Err(SettingsError::new(
                "operations.relay_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        if !(10..=5_000).contains(&o.watch_interval_ms) {
            return Err(SettingsError::new(
                "operations.watch_interval_ms",
                "must be between 10 and 5000",
            ));
        }
        if o.retention_hours < 24 {
            return Err(SettingsError::new(
                "operations.retention_hours",
                "must be at least 24 (operations are kept at least a day)",
            ));
        }
        self.validate_accounts()?;
        if let Err(e) = self.password.defaults().validate() {
            let key = |field: &str| match field {
                "password_length" => "password.default_length",
                "symbols" => "password.symbols",
                _ => "password",
            };
            let first = &e.errors[0];
            let problem = if e.errors.len() > 1 && key(&first.field) == "password" {
                "every character class is disabled (password.numbers, password.lower_case_chars, \
                 password.upper_case_chars, password.special_symbols)"
                    .to_owned()
            } else {
                first.message.clone()
            };
            return Err(SettingsError::new(key(&first.field), problem));
        }
        Ok(())
    }

    fn validate_accounts(&self) -> Result<(), SettingsError> {
        let a = &self.accounts;
        if a.password_min_length < 8 || a.password_min_length > a.password_max_length {
            return Err(SettingsError::new(
                "accounts.password_min_length",
                "must be at least 8 and at most accounts.password_max_length",
            ));
        }
        if a.password_max_length > 1024 {
            return Err(SettingsError::new(
                "accounts.password_max_length",
                "must be at most 1024",
            ));
        }
        if !(1..=60).contains(&a.access_token_minutes) {
            return Err(SettingsError::new(
                "accounts.access_token_minutes",
                "must be between 1 and 60 (a disabled user keeps a token until it expires)",
            ));
        }
        if !(1..=365).contains(&a.refresh_token_days) {
            return Err(SettingsError::new(
                "accounts.refresh_token_days",
                "must be between 1 and 365",
            ));
        }
        if a.session_max_days < a.refresh_token_days || a.session_max_days > 3650 {
            return Err(SettingsError::new(
                "accounts.session_max_days",
                "must be at least accounts.refresh_token_days and at most 3650",
            ));
        }
        if a.token_issuer.trim().is_empty() || a.token_audience.trim().is_empty() {
            return Err(SettingsError::new(
                "accounts.token_issuer",
                "the token issuer and audience must not be empty",
            ));
        }
        let owasp = depot_accounts::OWASP_PARAMS;
        if a.argon2_memory_kib < owasp.memory_kib || a.argon2_iterations < owasp.iterations {
            return Err(SettingsError::new(
                "accounts.argon2_memory_kib",
                "argon2id must be at least as strong as OWASP's m=19456 KiB, t=2",
            ));
        }
        if a.argon2_parallelism == 0 || a.max_concurrent_hashes == 0 {
            return Err(SettingsError::new(
                "accounts.max_concurrent_hashes",
                "argon2_parallelism and max_concurrent_hashes must be at least 1",
            ));
        }
        let o = &self.oidc;
        if let Some(issuer) = &o.issuer_url {
            let url = url::Url::parse(issuer)
                .map_err(|_| SettingsError::new("oidc.issuer_url", "is not a URL"))?;
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                return Err(SettingsError::new(
                    "oidc.issuer_url",
                    "must be https (plain http only for a provider on loopback)",
                ));
            }
            if o.client_id.as_deref().is_none_or(str::is_empty) {
                return Err(SettingsError::new(
                    "oidc.client_id",
                    "is required when oidc.issuer_url is set",
                ));
            }
            match o.redirect_url.as_deref().map(url::Url::parse) {
                Some(Ok(u)) if matches!(u.scheme(), "https" | "http") => {}
                _ => {
                    return Err(SettingsError::new(
                        "oidc.redirect_url",
                        "must be the absolute URL of /api/v1/auth/oidc/callback when oidc.issuer_url is set",
                    ));
                }
            }
        }
        if !(1..=120).contains(&o.http_timeout_seconds) {
            return Err(SettingsError::new(
                "oidc.http_timeout_seconds",
                "must be between 1 and 120",
            ));
        }
        Ok(())
    }

    pub fn queue_kind(&self) -> QueueKind {
        self.queue.kind.unwrap_or(if self.queue.amqp_url.is_some() {
            QueueKind::Rabbitmq
        } else {
            QueueKind::InProcess
        })
    }

    pub fn backend(&self) -> Backend {
        Backend::of_url(&self.database.url).expect("validated")
    }

    pub fn auto_migrate(&self) -> bool {
        self.database
            .auto_migrate
            .unwrap_or(self.backend() == Backend::Sqlite)
    }

    pub fn database_options(&self) -> depot_store::DatabaseOptions {
        let d = &self.database;
        depot_store::DatabaseOptions {
            url: d.url.clone(),
            max_connections: d.max_connections,
            min_connections: d.min_connections,
            connect_timeout: Duration::from_secs(d.connect_timeout_seconds),
            acquire_timeout: Duration::from_secs(d.acquire_timeout_seconds),
            log_statements: d.log_statements,
        }
    }

    /// The effective settings as TOML, with passwords in URLs redacted (for `depot config show`).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = redact_url(&shown.database.url);
        shown.queue.amqp_url = shown.queue.amqp_url.as_deref().map(redact_url);
        let value = serde_json::to_value(&shown).expect("settings serialise");
        let mut out = String::new();
        if let serde_json::Value::Object(sections) = value {
            for (name, section) in sections {
                out.push_str(&format!("[{name}]\n"));
                if let serde_json::Value::Object(fields) = section {
                    for (k, v) in fields {
                        if v.is_null() {
                            out.push_str(&format!("# {k} = (unset)\n"));
                        } else {
                            out.push_str(&format!("{k} = {v}\n"));
                        }
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

/// Turns the config crate's error into `key: problem`.
fn config_error(e: config::ConfigError) -> SettingsError {
    let text = e.to_string();
    // The config crate phrases these as `<problem> for key `<key>`` (sometimes with a source).
    if let Some(idx) = text.find(" for key `") {
        let problem = &text[..idx];
        let rest = &text[idx + " for key `".len()..];
        let key = rest.split('`').next().unwrap_or(rest);
        return SettingsError::new(key, problem);
    }
    if let Some(field) = text
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        return SettingsError::new(field, text.clone());
    }
    SettingsError::new("(settings)", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_are_valid_and_embedded() {
        let s = Settings::defaults();
        assert_eq!(s.server.port, 8000);
        assert_eq!(s.queue_kind(), QueueKind::InProcess);
        assert!(s.auto_migrate());
        assert_eq!(s.backend(), Backend::Sqlite);
    }

    #[test]
    fn amqp_url_selects_rabbitmq_and_postgres_disables_auto_migrate() {
        let mut s = Settings::defaults();
        s.queue.amqp_url = Some("amqp://guest:guest@127.0.0.1:5672/%2f".into());
        s.database.url = "postgres://postgres@127.0.0.1/test".into();
        s.validate().unwrap();
        assert_eq!(s.queue_kind(), QueueKind::Rabbitmq);
        assert!(!s.auto_migrate());
    }

    #[test]
    fn validation_names_the_key() {
        let mut s = Settings::defaults();
        s.queue.kind = Some(QueueKind::Rabbitmq);
        assert_eq!(s.validate().unwrap_err().key, "queue.amqp_url");
        let mut s = Settings::defaults();
        s.database.url = "mysql://x".into();
        assert_eq!(s.validate().unwrap_err().key, "database.url");
        let mut s = Settings::defaults();
        s.log.level = "info,[[[".into();
        assert_eq!(s.validate().unwrap_err().key, "log.level");
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |toml: &str| {
            let c = Config::builder()
                .add_source(File::from_str(BUILT_IN, FileFormat::Toml))
                .add_source(File::from_str(toml, FileFormat::Toml))
                .build()
                .unwrap();
            Settings::from_config(c).unwrap_err()
        };
        let e = bad("[server]\nport = 99999");
        assert_eq!(e.key, "server.port", "{e}");
        let e = bad("[queue]\nkind = \"kafka\"");
        assert_eq!(e.key, "queue.kind", "{e}");
        let e = bad("[server]\nprot = 1");
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    fn invalid_password_defaults_stop_the_service() {
        let mut s = Settings::defaults();
        s.password.default_length = 3;
        let e = s.validate().unwrap_err();
        assert_eq!(e.key, "password.default_length", "{e}");
        let mut s = Settings::defaults();
        s.password.numbers = false;
        s.password.lower_case_chars = false;
        s.password.upper_case_chars = false;
        s.password.special_symbols = false;
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("every character class"), "{e}");
    }

    #[test]
    fn the_env_example_documents_every_setting() {
        let example = include_str!("../../.env.example");
        let value = serde_json::to_value(Settings::defaults()).unwrap();
        for (section, fields) in value.as_object().unwrap() {
            for key in fields.as_object().unwrap().keys() {
                let var = format!("DEPOT__{}__{}=", section.to_uppercase(), key.to_uppercase());
                assert!(example.contains(&var), ".env.example lacks {var}");
            }
        }
        for alias in [
            "PORT=",
            "DATABASE_URL=",
            "AMQP_URL=",
            "DEFAULT_PASSWORD_LENGTH=",
            "DEPOT_ADMIN_SECRET=",
        ] {
            assert!(example.contains(alias), ".env.example lacks {alias}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://user:pw@host:5432/db"),
            "postgres://user:***@host:5432/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
        let mut s = Settings::defaults();
        s.queue.amqp_url = Some("amqp://guest:hunter2@h/%2f".into());
        assert!(!s.to_redacted_toml().contains("hunter2"));
    }
}
