//! The generator's wire contract: the query parameters of `GET /api/v1/passwords` (also used by
//! `depot password`), parsed into a validated [`Generation`] with every failing field named.

use crate::generator::PasswordGenerator;
use crate::passphrase::{Passphrase, PassphraseRequest};
use crate::policy::{PasswordPolicy, PasswordRequest};
use crate::{MAX_COUNT, parse_flag};
use depot_core::ValidationError;
use depot_core::error::FieldError;
use rand::{CryptoRng, Rng};

/// Defaults for parameters a request leaves out (from the service's settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub length: usize,
    pub numbers: bool,
    pub lower: bool,
    pub upper: bool,
    pub symbols: bool,
    /// A default custom symbol set; `None` = the 32 ASCII punctuation characters.
    pub symbol_set: Option<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        let r = PasswordRequest::default();
        Self {
            length: r.length,
            numbers: r.numbers,
            lower: r.lower,
            upper: r.upper,
            symbols: r.symbols,
            symbol_set: None,
        }
    }
}

impl Defaults {
    /// Checks that the defaults alone make a valid request (used at start-up).
    pub fn validate(&self) -> Result<(), ValidationError> {
        PasswordPolicy::new(&self.request()).map(|_| ())
    }

    fn request(&self) -> PasswordRequest {
        PasswordRequest {
            length: self.length,
            numbers: self.numbers,
            lower: self.lower,
            upper: self.upper,
            symbols: self.symbols,
            symbol_set: self.symbol_set.clone(),
            ..PasswordRequest::default()
        }
    }
}

const PASSWORD_ONLY: &[&str] = &[
    "password_length",
    "password_numbers",
    "password_lower_case_chars",
    "password_upper_case_chars",
    "password_special_symbols",
    "exclude_ambiguous",
    "exclude",
    "symbols",
    "min_numbers",
    "min_symbols",
];
const PASSPHRASE_ONLY: &[&str] = &["words", "separator", "capitalize", "include_number"];

#[derive(Debug)]
pub enum Mode {
    Password(PasswordGenerator),
    Passphrase(Passphrase),
}

/// A validated generation request.
#[derive(Debug)]
pub struct Generation {
    pub mode: Mode,
    /// `Some` when the client asked for a list.
    pub count: Option<usize>,
}

/// Request parameters; a repeated key's last value wins. A short list beats a map here: requests
/// carry a handful of parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&String> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

struct Parser<'a> {
    params: &'a Params,
    errors: Vec<FieldError>,
}

impl Parser<'_> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.params.get(key) {
            None => default,
            Some(raw) => parse_flag(raw).unwrap_or_else(|| {
                self.fail(key, "must be a boolean (true/false, 1/0, yes/no, on/off)");
                default
            }),
        }
    }

    /// A whole number; `range` bounds it here only where no domain type checks it later.
    fn number(&mut self, key: &str, default: usize, range: (usize, usize)) -> usize {
        let Some(raw) = self.params.get(key) else {
            return default;
        };
        match raw.trim().parse::<i128>() {
            Ok(n) if n >= range.0 as i128 && n <= range.1 as i128 => n as usize,
            Ok(_) if range.1 == usize::MAX => 0, // negative: the domain check reports the range
            Ok(_) => {
                self.fail(key, format!("must be between {} and {}", range.0, range.1));
                default
            }
            Err(_) => {
                self.fail(key, "must be a whole number");
                default
            }
        }
    }
}

impl Generation {
    /// Parses request parameters (last value wins for a repeated key; unknown keys are ignored,
    /// as the original service did).
    pub fn from_pairs<K, V>(
        pairs: impl IntoIterator<Item = (K, V)>,
        defaults: &Defaults,
    ) -> Result<Self, ValidationError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let params = Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        let mut p = Parser {
            params: &params,
            errors: Vec::new(),
        };
        let count = params
            .contains_key("count")
            .then(|| p.number("count", 1, (1, MAX_COUNT)));
        let passphrase = match params.get("mode").map(|m| m.trim().to_ascii_lowercase()) {
            None => false,
            Some(m) if m == "password" => false,
            Some(m) if m == "passphrase" => true,
            Some(_) => {
                p.fail("mode", "must be `password` or `passphrase`");
                false
            }
        };
        let other_mode = if passphrase {
            PASSWORD_ONLY
        } else {
            PASSPHRASE_ONLY
        };
        for key in other_mode {
            if params.contains_key(key) {
                p.fail(
                    key,
                    format!(
                        "does not apply to mode={}",
                        if passphrase { "passphrase" } else { "password" }
                    ),
                );
            }
        }
        let mode = if passphrase {
            let d = PassphraseRequest::default();
            let req = PassphraseRequest {
                words: p.number("words", d.words, (0, usize::MAX)),
                separator: params.get("separator").cloned().unwrap_or(d.separator),
                capitalize: p.flag("capitalize", d.capitalize),
                include_number: p.flag("include_number", d.include_number),
            };
            match Passphrase::new(req) {
                Ok(pp) => Some(Mode::Passphrase(pp)),
                Err(e) => {
                    p.errors.extend(e.errors);
                    None
                }
            }
        } else {
            let d = defaults.request();
            let req = PasswordRequest {
                length: p.number("password_length", d.length, (0, usize::MAX)),
                numbers: p.flag("password_numbers", d.numbers),
                lower: p.flag("password_lower_case_chars", d.lower),
                upper: p.flag("password_upper_case_chars", d.upper),
                symbols: p.flag("password_special_symbols", d.symbols),
                exclude_ambiguous: p.flag("exclude_ambiguous", false),
                exclude: params.get("exclude").cloned().unwrap_or_default(),
                symbol_set: params.get("symbols").cloned().or(d.symbol_set),
                min_numbers: p.number("min_numbers", 0, (0, crate::MAX_LENGTH)),
                min_symbols: p.number("min_symbols", 0, (0, crate::MAX_LENGTH)),
            };
            match PasswordPolicy::new(&req) {
                Ok(policy) => Some(Mode::Password(PasswordGenerator::new(policy))),
                Err(e) => {
                    // A field already reported as malformed is not reported twice.
                    for fe in e.errors {
                        if !p.errors.iter().any(|x| x.field == fe.field) {
                            p.errors.push(fe);
                        }
                    }
                    None
                }
            }
        };
        match (mode, ValidationError::from_errors(p.errors)) {
            (_, Some(e)) => Err(e),
            (Some(mode), None) => Ok(Self { mode, count }),
            (None, None) => unreachable!("a failed mode always records an error"),
        }
    }

    pub fn entropy_bits(&self) -> f64 {
        match &self.mode {
            Mode::Password(g) => g.entropy_bits(),
            Mode::Passphrase(p) => p.entropy_bits(),
        }
    }

    /// False when generation needs the exact-counting tables (big-integer work worth moving off
    /// an async runtime's threads).
    pub fn is_cheap(&self) -> bool {
        match &self.mode {
            Mode::Password(g) => g.is_cheap(),
            Mode::Passphrase(_) => true,
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match &self.mode {
            Mode::Password(_) => "password",
            Mode::Passphrase(_) => "passphrase",
        }
    }

    /// `count` (or one) independent secrets.
    pub fn generate<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R) -> Vec<String> {
        (0..self.count.unwrap_or(1))
            .map(|_| match &self.mode {
                Mode::Password(g) => g.generate(rng),
                Mode::Passphrase(p) => p.generate(rng),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Generation, ValidationError> {
        Generation::from_pairs(pairs.iter().copied(), &Defaults::default())
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<String> {
        parse(pairs)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn the_original_contract() {
        let g = parse(&[
            ("password_length", "16"),
            ("password_numbers", "true"),
            ("password_lower_case_chars", "1"),
            ("password_upper_case_chars", "YES"),
            ("password_special_symbols", "on"),
        ])
        .unwrap();
        let out = g.generate(&mut rand::rng());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].chars().count(), 16);
        assert!(g.count.is_none());
        assert!(parse(&[]).is_ok());
    }

    #[test]
    fn bad_values_name_their_fields() {
        assert_eq!(fields(&[("password_length", "abc")]), ["password_length"]);
        assert_eq!(fields(&[("password_length", "5")]), ["password_length"]);
        assert_eq!(fields(&[("password_length", "-1")]), ["password_length"]);
        assert_eq!(fields(&[("password_length", "201")]), ["password_length"]);
        assert_eq!(
            fields(&[("password_numbers", "maybe")]),
            ["password_numbers"]
        );
        assert_eq!(
            fields(&[
                ("password_length", "x"),
                ("password_numbers", "x"),
                ("count", "0")
            ]),
            ["count", "password_length", "password_numbers"]
        );
        assert_eq!(fields(&[("count", "101")]), ["count"]);
        assert_eq!(fields(&[("mode", "pin")]), ["mode"]);
        assert_eq!(fields(&[("words", "5")]), ["words"]);
        assert_eq!(
            fields(&[("mode", "passphrase"), ("password_length", "20")]),
            ["password_length"]
        );
        assert_eq!(fields(&[("mode", "passphrase"), ("words", "2")]), ["words"]);
    }

    #[test]
    fn every_class_off_names_the_four_flags() {
        let f = fields(&[
            ("password_numbers", "false"),
            ("password_lower_case_chars", "0"),
            ("password_upper_case_chars", "no"),
            ("password_special_symbols", "off"),
        ]);
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn count_and_passphrase() {
        let g = parse(&[("count", "5"), ("password_length", "8")]).unwrap();
        let out = g.generate(&mut rand::rng());
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|p| p.len() == 8));
        let g = parse(&[("mode", "passphrase"), ("words", "4"), ("separator", "_")]).unwrap();
        let out = g.generate(&mut rand::rng());
        assert_eq!(out[0].split('_').count(), 4);
        assert_eq!(g.mode_name(), "passphrase");
    }

    #[test]
    fn defaults_apply_and_validate() {
        let d = Defaults {
            length: 3,
            ..Defaults::default()
        };
        assert!(d.validate().is_err());
        let d = Defaults {
            length: 24,
            symbols: false,
            ..Defaults::default()
        };
        d.validate().unwrap();
        let g = Generation::from_pairs(Vec::<(String, String)>::new(), &d).unwrap();
        let p = &g.generate(&mut rand::rng())[0];
        assert_eq!(p.len(), 24);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
