//! Passphrases from the EFF long word list (7,776 words; see data/ATTRIBUTION.md).

use depot_core::ValidationError;
use rand::{CryptoRng, Rng, RngExt};
use std::sync::LazyLock;

pub const MIN_WORDS: usize = 3;
pub const MAX_WORDS: usize = 20;
pub const DEFAULT_WORDS: usize = 6;
pub const DEFAULT_SEPARATOR: &str = "-";
pub const MAX_SEPARATOR_CHARS: usize = 5;

static WORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("../data/eff_large_wordlist.txt")
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect()
});

/// The EFF long word list.
pub fn wordlist() -> &'static [&'static str] {
    &WORDS
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseRequest {
    pub words: usize,
    pub separator: String,
    /// Upper-case the first letter of every word (adds no entropy).
    pub capitalize: bool,
    /// Append one random digit to one randomly chosen word.
    pub include_number: bool,
}

impl Default for PassphraseRequest {
    fn default() -> Self {
        Self {
            words: DEFAULT_WORDS,
            separator: DEFAULT_SEPARATOR.to_owned(),
            capitalize: false,
            include_number: false,
        }
    }
}

/// A validated passphrase request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passphrase {
    req: PassphraseRequest,
}

impl Passphrase {
    pub fn new(req: PassphraseRequest) -> Result<Self, ValidationError> {
        let mut errors = Vec::new();
        if !(MIN_WORDS..=MAX_WORDS).contains(&req.words) {
            errors.push((
                "words",
                format!("must be between {MIN_WORDS} and {MAX_WORDS}"),
            ));
        }
        if req.separator.chars().count() > MAX_SEPARATOR_CHARS {
            errors.push((
                "separator",
                format!("must have at most {MAX_SEPARATOR_CHARS} characters"),
            ));
        } else if req.separator.chars().any(|c| c.is_control()) {
            errors.push(("separator", "must not contain control characters".into()));
        }
        match errors
            .into_iter()
            .fold(None::<ValidationError>, |acc, (f, m)| {
                Some(match acc {
                    None => ValidationError::field(f, m),
                    Some(mut e) => {
                        e.push(f, m);
                        e
                    }
                })
            }) {
            Some(e) => Err(e),
            None => Ok(Self { req }),
        }
    }

    pub fn request(&self) -> &PassphraseRequest {
        &self.req
    }

    /// log2 of the number of possible passphrases: words·log2(7776), plus log2(10·words) for the
    /// digit (which word, which digit). Capitalisation is deterministic and adds nothing.
    pub fn entropy_bits(&self) -> f64 {
        let words = self.req.words as f64;
        let mut bits = words * (wordlist().len() as f64).log2();
        if self.req.include_number {
            bits += (10.0 * words).log2();
        }
        bits
    }

    /// One passphrase: each word drawn uniformly and independently from the list.
    pub fn generate<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R) -> String {
        let list = wordlist();
        let mut words: Vec<String> = (0..self.req.words)
            .map(|_| {
                let w = list[rng.random_range(0..list.len())];
                if self.req.capitalize {
                    let mut chars = w.chars();
                    match chars.next() {
                        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                        None => String::new(),
                    }
                } else {
                    w.to_owned()
                }
            })
            .collect();
        if self.req.include_number {
            let at = rng.random_range(0..words.len());
            let digit = rng.random_range(0..10u8);
            words[at].push(char::from(b'0' + digit));
        }
        words.join(&self.req.separator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_list_is_the_eff_long_list() {
        let list = wordlist();
        assert_eq!(list.len(), 7776);
        let mut sorted = list.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 7776, "distinct");
        assert_eq!(list.first(), Some(&"abacus"));
        assert_eq!(list.last(), Some(&"zoom"));
        assert!(
            list.iter()
                .all(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
    }

    #[test]
    fn entropy() {
        let p = Passphrase::new(PassphraseRequest::default()).unwrap();
        assert!((p.entropy_bits() - 6.0 * 7776f64.log2()).abs() < 1e-9);
        assert!((p.entropy_bits() - 77.55).abs() < 0.01);
        let p = Passphrase::new(PassphraseRequest {
            words: 4,
            include_number: true,
            ..Default::default()
        })
        .unwrap();
        assert!((p.entropy_bits() - (4.0 * 7776f64.log2() + 40f64.log2())).abs() < 1e-9);
    }

    #[test]
    fn shape_capitalisation_and_number() {
        let p = Passphrase::new(PassphraseRequest {
            words: 5,
            separator: " ".into(),
            capitalize: true,
            include_number: true,
        })
        .unwrap();
        let mut rng = rand::rng();
        for _ in 0..500 {
            let s = p.generate(&mut rng);
            let words: Vec<&str> = s.split(' ').collect();
            assert_eq!(words.len(), 5, "{s}");
            assert!(
                words
                    .iter()
                    .all(|w| w.chars().next().unwrap().is_ascii_uppercase()),
                "{s}"
            );
            assert_eq!(s.chars().filter(|c| c.is_ascii_digit()).count(), 1, "{s}");
        }
    }

    #[test]
    fn validation_names_fields() {
        let e = Passphrase::new(PassphraseRequest {
            words: 2,
            separator: "------".into(),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<_> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["words", "separator"]);
        assert!(
            Passphrase::new(PassphraseRequest {
                words: 21,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn words_are_drawn_uniformly() {
        // 3 words × 100,000 passphrases: each first letter's share should match its share of
        // the list (chi-square over the 26 initial letters with df = 25... fewer if absent).
        let p = Passphrase::new(PassphraseRequest {
            words: 3,
            separator: " ".into(),
            ..Default::default()
        })
        .unwrap();
        let list = wordlist();
        let mut expected_share: HashMap<char, f64> = HashMap::new();
        for w in list {
            *expected_share.entry(w.chars().next().unwrap()).or_default() +=
                1.0 / list.len() as f64;
        }
        let mut rng = rand::rng();
        let mut seen: HashMap<char, f64> = HashMap::new();
        let draws = 100_000;
        for _ in 0..draws {
            for w in p.generate(&mut rng).split(' ') {
                *seen.entry(w.chars().next().unwrap()).or_default() += 1.0;
            }
        }
        let n = (draws * 3) as f64;
        let stat: f64 = expected_share
            .iter()
            .map(|(c, share)| {
                let e = share * n;
                (seen.get(c).copied().unwrap_or(0.0) - e).powi(2) / e
            })
            .sum();
        let df = (expected_share.len() - 1) as f64;
        assert!(stat < df + 6.0 * (2.0 * df).sqrt(), "chi-square {stat}");
    }
}
