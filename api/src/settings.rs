//! Typed configuration, layered as described in `config/default.toml`, validated at start-up.
//!
//! A bad value stops the process with one line naming the key ([`SettingsError`]); it never
//! becomes a 500 later.

use config::{Config, Environment, File, FileFormat};
use depot_store::Backend;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::accounts::settings::{AccountsSection, OidcSettings};
pub use crate::api_keys::settings::{ApiKeySettings, AuthSettings};
pub use crate::packages::settings::{
    ArtifactsSettings, ExecutorKind, ExecutorSettings, OperationSettings, PackagesSettings,
};
pub use crate::passwords::settings::PasswordSettings;

const BUILT_IN: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub egress: EgressSettings,
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
    #[serde(default)]
    pub artifacts: ArtifactsSettings,
    pub operations: OperationSettings,
    pub accounts: AccountsSection,
    pub oidc: OidcSettings,
    pub packages: PackagesSettings,
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
    /// A second listener for operators: `/metrics` and readiness with its errors. Unset keeps
    /// one listener that serves `/metrics` too.
    pub management_port: Option<u16>,
    /// Where the management listener binds (loopback unless set).
    pub management_host: String,
    /// Continue a W3C `traceparent` from any client; when false (the default), only from the
    /// `trusted_proxies` (anyone else starts a trace of their own).
    pub trust_client_traceparent: bool,
}

impl ServerSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.host.trim().is_empty() {
            return Err(SettingsError::new("server.host", "must not be empty"));
        }
        if let Some(port) = self.management_port
            && port != 0
            && port == self.port
        {
            return Err(SettingsError::new(
                "server.management_port",
                "must differ from server.port",
            ));
        }
        if self.body_limit_bytes < 1024 {
            return Err(SettingsError::new(
                "server.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if self.shutdown_grace_seconds > 3600 {
            return Err(SettingsError::new(
                "server.shutdown_grace_seconds",
                "must be at most 3600",
            ));
        }
        for origin in &self.cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(SettingsError::new(
                    "server.cors_allowed_origins",
                    format!("`{origin}` is not an origin (scheme://host[:port]) or \"*\""),
                ));
            }
        }
        for proxy in &self.trusted_proxies {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                return Err(SettingsError::new(
                    "server.trusted_proxies",
                    format!("`{proxy}` is not an IP address"),
                ));
            }
        }
        Ok(())
    }
}

/// `[egress]`: the destinations Depot's outbound calls may reach (see `depot_core::egress`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    /// CIDRs opened despite being non-public (e.g. `10.0.0.0/8` for an internal mirror).
    pub allowed_networks: Vec<String>,
    /// Host names allowed whatever they resolve to.
    pub allowed_hosts: Vec<String>,
}

impl EgressSettings {
    pub fn policy(&self) -> Result<depot_core::egress::EgressPolicy, SettingsError> {
        depot_core::egress::EgressPolicy::new(&self.allowed_networks, &self.allowed_hosts)
            .map_err(|e| SettingsError::new("egress.allowed_networks", e.to_string()))
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.policy().map(|_| ())
    }
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

impl DatabaseSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        match Backend::of_url(&self.url) {
            None => {
                return Err(SettingsError::new(
                    "database.url",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
            Some(Backend::Sqlite) if !depot_store::database::is_valid_sqlite_url(&self.url) => {
                return Err(SettingsError::new(
                    "database.url",
                    "is not a valid SQLite URL",
                ));
            }
            _ => {}
        }
        if self.max_connections == 0 {
            return Err(SettingsError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.min_connections > self.max_connections {
            return Err(SettingsError::new(
                "database.min_connections",
                "must not exceed database.max_connections",
            ));
        }
        if self.connect_timeout_seconds == 0 || self.acquire_timeout_seconds == 0 {
            return Err(SettingsError::new(
                "database.connect_timeout_seconds",
                "timeouts must be at least 1 second",
            ));
        }
        Ok(())
    }
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

impl QueueSettings {
    /// `rabbitmq` when an AMQP URL is set, else `in_process`, unless `kind` says.
    pub fn kind(&self) -> QueueKind {
        self.kind.unwrap_or(if self.amqp_url.is_some() {
            QueueKind::Rabbitmq
        } else {
            QueueKind::InProcess
        })
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.kind() == QueueKind::Rabbitmq {
            match self.amqp_url.as_deref() {
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
        if self.max_deliveries == 0 {
            return Err(SettingsError::new(
                "queue.max_deliveries",
                "must be at least 1",
            ));
        }
        if self.prefetch == 0 {
            return Err(SettingsError::new("queue.prefetch", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub embedded: bool,
    pub concurrency: u16,
}

impl WorkerSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.concurrency == 0 {
            return Err(SettingsError::new(
                "worker.concurrency",
                "must be at least 1",
            ));
        }
        Ok(())
    }
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

impl LogSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            return Err(SettingsError::new("log.level", e.to_string()));
        }
        Ok(())
    }
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

impl SecretsSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(dir) = &self.dir
            && !dir.is_dir()
        {
            return Err(SettingsError::new(
                "secrets.dir",
                format!("{} is not a readable directory", dir.display()),
            ));
        }
        Ok(())
    }
}

/// A configuration problem, printed as one line: `configuration error: <key>: <problem>`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
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
                    .with_list_parse_key("egress.allowed_networks")
                    .with_list_parse_key("egress.allowed_hosts")
                    .with_list_parse_key("packages.trusted_keys")
                    .with_list_parse_key("oidc.scopes")
                    .with_list_parse_key("oidc.allowed_endpoint_hosts"),
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
        self.server.validate()?;
        self.egress.validate()?;
        self.database.validate()?;
        self.queue.validate()?;
        self.worker.validate()?;
        self.log.validate()?;
        self.secrets.validate()?;
        self.api_keys.validate()?;
        self.executor.validate()?;
        self.artifacts.validate(&self.executor)?;
        self.packages.validate()?;
        self.operations.validate()?;
        // Each delivery of an operation's message is at most one attempt: with more attempts
        // than deliveries the queue dead-letters the message while the runner still retries.
        if self.operations.max_attempts as u32 > self.queue.max_deliveries {
            return Err(SettingsError::new(
                "operations.max_attempts",
                format!(
                    "must be at most queue.max_deliveries ({}): the queue would drop the \
                     operation's message before its attempts are used up",
                    self.queue.max_deliveries
                ),
            ));
        }
        self.accounts.validate()?;
        self.oidc.validate()?;
        self.password.validate()?;
        Ok(())
    }

    pub fn queue_kind(&self) -> QueueKind {
        self.queue.kind()
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

    /// More attempts than deliveries let the queue drop an operation's message while the
    /// runner still meant to retry it: the operation stayed running for good.
    #[test]
    fn attempts_may_not_outnumber_deliveries() {
        let mut s = Settings::defaults();
        s.operations.max_attempts = 11;
        s.queue.max_deliveries = 10;
        assert_eq!(s.validate().unwrap_err().key, "operations.max_attempts");
        s.queue.max_deliveries = 11;
        s.validate().unwrap();
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
    fn artifacts_are_files_or_a_bucket_and_old_names_still_count() {
        use crate::packages::settings::ArtifactLocation;
        let at = |url: Option<&str>, old_dir: Option<&str>| {
            let mut s = Settings::defaults();
            s.artifacts.url = url.map(str::to_owned);
            s.executor.storage_dir = old_dir.map(std::path::PathBuf::from);
            s.artifacts.location(&s.executor)
        };
        let dir = |d: &str| Ok(ArtifactLocation::Dir(d.into()));
        assert_eq!(at(None, None), dir("data/artifacts"));
        assert_eq!(at(Some("file:///srv/a"), None), dir("/srv/a"));
        assert_eq!(at(Some("file://localhost/srv/a"), None), dir("/srv/a"));
        assert_eq!(at(Some("file://rel/dir"), None), dir("rel/dir"));
        assert_eq!(at(None, Some("/old")), dir("/old"));
        assert_eq!(
            at(Some("s3://my-bucket/some/prefix/"), None),
            Ok(ArtifactLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "some/prefix".into()
            })
        );
        for bad in [Some("s3://Bad_Bucket"), Some("ftp://x"), Some("file://")] {
            assert_eq!(at(bad, None).unwrap_err().key, "artifacts.url", "{bad:?}");
        }
        assert_eq!(
            at(Some("file:///a"), Some("/b")).unwrap_err().key,
            "artifacts.url",
            "both names of one setting"
        );
        let mut s = Settings::defaults();
        s.artifacts.url = Some("s3://bucket".into());
        s.artifacts.s3_endpoint = Some("http://127.0.0.1:9000".into());
        assert_eq!(s.validate().unwrap_err().key, "artifacts.s3_endpoint");
        s.artifacts.s3_allow_http = true;
        s.validate().unwrap();
        let mut s = Settings::defaults();
        s.artifacts.max_bytes = Some(1);
        s.executor.max_download_bytes = Some(2);
        assert_eq!(s.validate().unwrap_err().key, "artifacts.max_bytes");
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
