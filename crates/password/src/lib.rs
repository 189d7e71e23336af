//! Depot's password and passphrase generator: pure, synchronous, no I/O.
//!
//! # Uniformity
//! A password request defines a set of valid strings: length `L`, drawn from the enabled character
//! classes, each class present at least its minimum number of times. [`PasswordGenerator`] returns
//! a string drawn **uniformly** from that set, with the thread-local CSPRNG (ChaCha12, seeded and
//! periodically reseeded from the operating system). Two exact methods are combined:
//!
//! 1. *Rejection sampling*: draw `L` characters uniformly from the union alphabet; accept when every
//!    minimum is met. Conditioned on acceptance this is uniform over the valid set. Used when the
//!    acceptance probability is high (the usual case: 16 characters, four classes → ≈ 82 %).
//! 2. *Exact counting*: with `N_i(r)` = the number of valid strings of length `r` over classes
//!    `i..k`, `N_i(r) = Σ_n C(r, n) · s_i^n · N_{i+1}(r − n)` (big integers). Draw each class's count
//!    `n_i` with probability `C(r, n) · s_i^n · N_{i+1}(r − n) / N_i(r)`, shuffle the class labels
//!    uniformly (Fisher–Yates), then draw each position's character uniformly from its class. A
//!    string with class counts `n` is produced with probability
//!    `[L!/Πn_i! · Πs_i^{n_i} / N] · [Πn_i!/L!] · Πs_i^{−n_i} = 1/N`.
//!
//! Rejection sampling gives up after a bounded number of draws and falls back to exact counting;
//! both produce the uniform distribution on the same set, so the mixture is uniform too.
//! "One of each class, then shuffle" is *not* uniform (it over-represents strings with few
//! characters of a class) and is not used.

mod generator;
mod passphrase;
mod policy;
mod request;

pub use generator::PasswordGenerator;
pub use passphrase::{
    DEFAULT_SEPARATOR, DEFAULT_WORDS, MAX_SEPARATOR_CHARS, MAX_WORDS, MIN_WORDS, Passphrase,
    PassphraseRequest, wordlist,
};
pub use policy::{
    AMBIGUOUS, CharClass, DEFAULT_LENGTH, DEFAULT_SYMBOLS, DIGITS, LOWER, MAX_LENGTH, MIN_LENGTH,
    PasswordPolicy, PasswordRequest, UPPER,
};
pub use request::{Defaults, Generation, Mode};

/// The most passwords one request may ask for.
pub const MAX_COUNT: usize = 100;

/// Parses a flag the way the original service's clients send them: true/false, 1/0, yes/no,
/// on/off, in any case.
pub fn parse_flag(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_flag;

    #[test]
    fn flags() {
        for t in ["true", "TRUE", "1", "yes", "On", " on "] {
            assert_eq!(parse_flag(t), Some(true), "{t}");
        }
        for f in ["false", "False", "0", "NO", "off"] {
            assert_eq!(parse_flag(f), Some(false), "{f}");
        }
        for bad in ["", "2", "y", "truth", "nope"] {
            assert_eq!(parse_flag(bad), None, "{bad}");
        }
    }
}
