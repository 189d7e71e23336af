//! The key format: `dpk_` + 43 random base62 characters (256 bits) + a 6-character base62 CRC32
//! of the random part, GitHub-style. The prefix lets secret scanners recognise a leaked key; the
//! checksum rejects a mistyped one before any lookup. Keys are stored only as SHA-256 hashes.

use rand::{CryptoRng, Rng, RngExt};
use sha2::{Digest, Sha256};
use std::fmt;

pub const PREFIX: &str = "dpk_";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry 43·log2(62) ≈ 256.03 bits: at least 32 random bytes.
pub const RANDOM_CHARS: usize = 43;
pub const CHECKSUM_CHARS: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
/// Characters of a key shown in listings (`dpk_` + 4): enough to recognise, useless to an attacker.
pub const VISIBLE_CHARS: usize = PREFIX.len() + 4;

/// A plaintext key. Its `Debug` never shows the secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainKey(String);

/// The SHA-256 of a key: what is stored and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a Depot API key (expected dpk_ followed by {} characters)", RANDOM_CHARS + CHECKSUM_CHARS)]
    Shape,
    #[error("the key's checksum does not match (mistyped or truncated)")]
    Checksum,
}

fn checksum(random: &str) -> String {
    let mut n = crc32fast::hash(random.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

impl PlainKey {
    pub fn generate<R: Rng + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let random: String = (0..RANDOM_CHARS)
            .map(|_| BASE62[rng.random_range(0..62)] as char)
            .collect();
        let check = checksum(&random);
        Self(format!("{PREFIX}{random}{check}"))
    }

    /// Checks shape and checksum; no lookup.
    pub fn parse(raw: &str) -> Result<Self, KeyFormatError> {
        let raw = raw.trim();
        let body = raw.strip_prefix(PREFIX).ok_or(KeyFormatError::Shape)?;
        if body.len() != RANDOM_CHARS + CHECKSUM_CHARS
            || !body.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(KeyFormatError::Shape);
        }
        let (random, check) = body.split_at(RANDOM_CHARS);
        if checksum(random) != check {
            return Err(KeyFormatError::Checksum);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// `dpk_abc1`: what listings show (followed by an ellipsis).
    pub fn visible_prefix(&self) -> String {
        self.0[..VISIBLE_CHARS].to_owned()
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({}…)", self.visible_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        let mut rng = rand::rng();
        let key = PlainKey::generate(&mut rng);
        assert_eq!(key.expose().len(), KEY_LEN);
        assert!(key.expose().starts_with("dpk_"));
        let parsed = PlainKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.hash(), key.hash());
        assert_ne!(PlainKey::generate(&mut rng).hash(), key.hash());
        assert!(!format!("{key:?}").contains(&key.expose()[8..]));
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let key = PlainKey::generate(&mut rand::rng());
        let mut chars: Vec<char> = key.expose().chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(PlainKey::parse(&typo), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        for raw in [
            "",
            "dpk_",
            "abc",
            "dpk_short",
            &format!("xyz_{}", "a".repeat(49)),
            &format!("dpk_{}!", "a".repeat(48)),
        ] {
            assert_eq!(PlainKey::parse(raw), Err(KeyFormatError::Shape), "{raw}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(raw in ".{0,80}") {
            let _ = PlainKey::parse(&raw);
        }

        #[test]
        fn any_single_substitution_is_caught_or_reshaped(pos in 4usize..KEY_LEN, c in "[0-9A-Za-z]") {
            let key = PlainKey::generate(&mut rand::rng());
            let mut chars: Vec<char> = key.expose().chars().collect();
            let new = c.chars().next().unwrap();
            prop_assume!(chars[pos] != new);
            chars[pos] = new;
            let typo: String = chars.into_iter().collect();
            prop_assert!(PlainKey::parse(&typo).is_err());
        }
    }
}
