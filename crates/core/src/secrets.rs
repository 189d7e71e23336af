//! The secrets port and its two adapters: environment variables and a directory of files
//! (Docker/Kubernetes style `/run/secrets/<name>`).
//!
//! Secret values are [`SecretString`]s: they never appear in `Debug` output or logs.

use async_trait::async_trait;
pub use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{name}` could not be read: {source}")]
    Unreadable {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret `{name}` is empty")]
    Empty { name: String },
}

/// Where named secrets come from. Names are lower snake case (`admin_secret`, `jwt_signing_key`).
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret, or `None` when this store does not hold it.
    async fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError>;
}

/// Reads `name` from the environment variable `<PREFIX><NAME>`, e.g. `DEPOT_ADMIN_SECRET`.
#[derive(Debug, Clone)]
pub struct EnvSecretStore {
    prefix: String,
}

impl EnvSecretStore {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn var_name(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name.to_ascii_uppercase())
    }
}

impl Default for EnvSecretStore {
    fn default() -> Self {
        Self::new("DEPOT_")
    }
}

#[async_trait]
impl SecretStore for EnvSecretStore {
    async fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
        match std::env::var(self.var_name(name)) {
            Ok(v) if v.is_empty() => Err(SecretError::Empty { name: name.into() }),
            Ok(v) => Ok(Some(SecretString::from(v))),
            Err(_) => Ok(None),
        }
    }
}

/// Reads `name` from the file `<dir>/<name>`; a trailing newline is dropped.
#[derive(Debug, Clone)]
pub struct FileSecretStore {
    dir: PathBuf,
}

impl FileSecretStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl SecretStore for FileSecretStore {
    async fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Ok(None);
        }
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(v) => {
                let v = v.trim_end_matches(['\n', '\r']);
                if v.is_empty() {
                    Err(SecretError::Empty { name: name.into() })
                } else {
                    Ok(Some(SecretString::from(v.to_owned())))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::Unreadable {
                name: name.into(),
                source,
            }),
        }
    }
}

/// Asks each store in turn; the first that holds the secret wins.
pub struct ChainSecretStore {
    stores: Vec<Box<dyn SecretStore>>,
}

impl ChainSecretStore {
    pub fn new(stores: Vec<Box<dyn SecretStore>>) -> Self {
        Self { stores }
    }
}

#[async_trait]
impl SecretStore for ChainSecretStore {
    async fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
        for store in &self.stores {
            if let Some(v) = store.get(name).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// Compares two secrets in time independent of where they differ (via `subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_reads_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin_secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let store = FileSecretStore::new(dir.path());
        let v = store.get("admin_secret").await.unwrap().unwrap();
        assert_eq!(v.expose_secret(), "s3cret");
        assert!(store.get("missing").await.unwrap().is_none());
        assert!(matches!(
            store.get("empty").await,
            Err(SecretError::Empty { .. })
        ));
        assert!(store.get("../etc/passwd").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn chain_prefers_the_first_store() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("x"), "from-b").unwrap();
        std::fs::write(b.path().join("y"), "only-b").unwrap();
        std::fs::write(a.path().join("x"), "from-a").unwrap();
        let chain = ChainSecretStore::new(vec![
            Box::new(FileSecretStore::new(a.path())),
            Box::new(FileSecretStore::new(b.path())),
        ]);
        assert_eq!(
            chain.get("x").await.unwrap().unwrap().expose_secret(),
            "from-a"
        );
        assert_eq!(
            chain.get("y").await.unwrap().unwrap().expose_secret(),
            "only-b"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = SecretString::from("hunter2".to_owned());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
