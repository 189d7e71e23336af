//! API keys: the `dpk_` format, SHA-256 storage, verification on a cached hot path, management
//! with an audit log, and batched usage recording.

#[cfg(test)]
pub(crate) mod fakes;
pub mod key;
pub mod model;
pub mod ports;
pub mod service;
pub mod verifier;

pub use key::{KeyFormatError, KeyHash, PlainKey};
pub use model::{ApiKey, AuditEvent, KeyStatus, UsageRecord};
pub use ports::{
    ApiKeyRepository, AuditRepository, KeyChange, KeyFilter, KeyWriteError, NewApiKey, UsageBatch,
};
pub use service::{Actor, ApiKeyError, ApiKeyService, CreateKey, Renewal};
pub use verifier::{RateState, Verified, Verifier, VerifierSettings, VerifyError};

/// A strong random secret (256 bits, base62), e.g. for a generated admin secret.
pub fn generate_secret() -> String {
    use rand::RngExt;
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..43)
        .map(|_| BASE62[rng.random_range(0..62)] as char)
        .collect()
}
