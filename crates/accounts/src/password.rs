//! argon2id password hashing, off the async runtime and bounded in concurrency.
//!
//! Each hash takes ~19 MiB and tens of milliseconds of CPU (OWASP's m=19456 KiB, t=2, p=1), so
//! hashing runs on tokio's blocking pool, and a semaphore caps how many run at once: a burst of
//! logins queues instead of exhausting memory.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
pub const OWASP_PARAMS: ArgonParams = ArgonParams {
    memory_kib: 19_456,
    iterations: 2,
    parallelism: 1,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgonParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters are invalid: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed")]
    Join,
}

pub struct PasswordHasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password with the same parameters, verified against when the user is
    /// unknown so that both answers take the same time.
    dummy: OnceLock<String>,
}

impl PasswordHasher {
    pub fn new(params: ArgonParams, max_concurrent: usize) -> Result<Self, HashError> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Self {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy: OnceLock::new(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password` with a fresh salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let argon = self.argon.clone();
        let password = password.to_owned();
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Join)?;
        tokio::task::spawn_blocking(move || {
            argon
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Hash(e.to_string()))
        })
        .await
        .map_err(|_| HashError::Join)?
    }

    /// True when `password` matches `hash`. With `hash = None` (unknown user, or an account
    /// without a password) a dummy hash is verified instead and the answer is false: the caller
    /// cannot tell the cases apart by timing.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h.to_owned(),
            None => match self.dummy_hash().await {
                Some(h) => h,
                None => return false,
            },
        };
        let argon = self.argon.clone();
        let password = password.to_owned();
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| argon.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        known && matched
    }

    async fn dummy_hash(&self) -> Option<String> {
        if let Some(h) = self.dummy.get() {
            return Some(h.clone());
        }
        let h = self.hash(&crate::tokens::random_token(32)).await.ok()?;
        Some(self.dummy.get_or_init(|| h).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters keep the unit tests fast; the API uses [`OWASP_PARAMS`].
    fn fast() -> PasswordHasher {
        PasswordHasher::new(
            ArgonParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let h = fast();
        let a = h.hash("correct horse battery").await.unwrap();
        let b = h.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(h.verify("correct horse battery", Some(&a)).await);
        assert!(!h.verify("correct horse batterY", Some(&a)).await);
        assert!(!h.verify("correct horse battery", Some("not a hash")).await);
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = fast();
        assert!(!h.verify("anything at all", None).await);
        assert!(h.dummy.get().is_some(), "a dummy hash was computed");
    }

    #[tokio::test]
    async fn owasp_parameters_are_the_ones_encoded() {
        let h = PasswordHasher::new(OWASP_PARAMS, 1).unwrap();
        let a = h.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
    }
}
