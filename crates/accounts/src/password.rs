//! argon2id password hashing, off the async runtime and bounded in concurrency.
//!
//! Each hash takes ~19 MiB and tens of milliseconds of CPU (OWASP's m=19456 KiB, t=2, p=1), so
//! hashing runs on tokio's blocking pool, and semaphores cap how many run at once: a burst of
//! logins queues instead of exhausting memory. Checking a password at login and hashing a new
//! one (registration, an account created by an operator) have separate budgets: a flood of
//! registrations queues behind its own slots and does not hold logins up.

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
    /// Every hashing slot stayed busy for [`QUEUE_TIMEOUT`]: the server is overloaded.
    #[error("too many password hashes are waiting")]
    Busy,
}

/// How long a hash may wait for a free slot before the request is turned away (503).
pub const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many hashes of each kind run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashBudgets {
    /// Password checks at login.
    pub login: usize,
    /// New passwords hashed (registration, an account created by an operator).
    pub new_passwords: usize,
}

pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// For [`PasswordHasher::verify`].
    login: Arc<Semaphore>,
    /// For [`PasswordHasher::hash`].
    new_passwords: Arc<Semaphore>,
    /// A hash of a random password with the same parameters, verified against when the user is
    /// unknown so that both answers take the same time.
    dummy: OnceLock<String>,
}

impl PasswordHasher {
    pub fn new(params: ArgonParams, budgets: HashBudgets) -> Result<Self, HashError> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Self {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
            login: Arc::new(Semaphore::new(budgets.login.max(1))),
            new_passwords: Arc::new(Semaphore::new(budgets.new_passwords.max(1))),
            dummy: OnceLock::new(),
        })
    }

    /// A slot for one hash. It moves into the blocking task, so it is held exactly as long as
    /// the hash runs, even when the request that asked for it is dropped meanwhile.
    async fn permit(
        budget: &Arc<Semaphore>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, HashError> {
        tokio::time::timeout(QUEUE_TIMEOUT, budget.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Join)
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password` with a fresh salt,
    /// in the new passwords' budget.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let argon = self.argon.clone();
        let password = password.to_owned();
        let permit = Self::permit(&self.new_passwords).await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
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
    /// cannot tell the cases apart by timing. In the login budget.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h.to_owned(),
            None => self.dummy_hash().await?,
        };
        let argon = self.argon.clone();
        let password = password.to_owned();
        let permit = Self::permit(&self.login).await?;
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash)
                .map(|parsed| argon.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        Ok(known && matched)
    }

    async fn dummy_hash(&self) -> Result<String, HashError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let h = self.hash(&crate::tokens::random_token(32)).await?;
        Ok(self.dummy.get_or_init(|| h).clone())
    }

    /// Computes the dummy hash now (at start-up), so the first unknown-user login is not slower.
    pub async fn warm_up(&self) -> Result<(), HashError> {
        self.dummy_hash().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters keep the unit tests fast; the API uses [`OWASP_PARAMS`].
    const FAST: ArgonParams = ArgonParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    fn fast() -> PasswordHasher {
        PasswordHasher::new(
            FAST,
            HashBudgets {
                login: 2,
                new_passwords: 2,
            },
        )
        .unwrap()
    }

    /// The review's finding: 60 concurrent registrations made a real login wait seconds. With
    /// every new-password slot busy, a login's check still runs at once (and the reverse).
    #[tokio::test]
    async fn registrations_and_logins_do_not_wait_for_each_other() {
        let h = PasswordHasher::new(
            FAST,
            HashBudgets {
                login: 1,
                new_passwords: 1,
            },
        )
        .unwrap();
        let stored = h.hash("correct horse battery").await.unwrap();
        let soon = std::time::Duration::from_secs(2);
        let busy = h.new_passwords.clone().try_acquire_owned().unwrap();
        let checked = tokio::time::timeout(soon, h.verify("correct horse battery", Some(&stored)));
        assert!(checked.await.expect("the login was held up").unwrap());
        let queued = tokio::time::timeout(std::time::Duration::from_millis(200), h.hash("x"));
        assert!(
            queued.await.is_err(),
            "a new password waits for its own slots"
        );
        drop(busy);
        let _busy = h.login.clone().try_acquire_owned().unwrap();
        let hashed = tokio::time::timeout(soon, h.hash("correct horse battery"));
        hashed.await.expect("the registration was held up").unwrap();
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let h = fast();
        let a = h.hash("correct horse battery").await.unwrap();
        let b = h.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(h.verify("correct horse battery", Some(&a)).await.unwrap());
        assert!(!h.verify("correct horse batterY", Some(&a)).await.unwrap());
        assert!(
            !h.verify("correct horse battery", Some("not a hash"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = fast();
        assert!(!h.verify("anything at all", None).await.unwrap());
        assert!(h.dummy.get().is_some(), "a dummy hash was computed");
    }

    #[tokio::test]
    async fn owasp_parameters_are_the_ones_encoded() {
        let one = HashBudgets {
            login: 1,
            new_passwords: 1,
        };
        let h = PasswordHasher::new(OWASP_PARAMS, one).unwrap();
        let a = h.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
    }
}
