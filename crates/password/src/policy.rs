//! What a password request allows, validated: the parse-don't-validate step.

use depot_core::ValidationError;

pub const MIN_LENGTH: usize = 6;
pub const MAX_LENGTH: usize = 200;
pub const DEFAULT_LENGTH: usize = 16;
pub const DIGITS: &str = "0123456789";
pub const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
pub const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// The 32 ASCII punctuation characters.
pub const DEFAULT_SYMBOLS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Characters that are easily confused with one another: I/l/1/|, O/0.
pub const AMBIGUOUS: &str = "Il1|O0";
/// Longest custom symbol set.
pub const MAX_SYMBOLS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CharClass {
    Numbers,
    Lower,
    Upper,
    Symbols,
}

impl CharClass {
    pub const ALL: [CharClass; 4] = [
        CharClass::Numbers,
        CharClass::Lower,
        CharClass::Upper,
        CharClass::Symbols,
    ];

    /// The request field that turns this class on or off.
    pub fn flag(self) -> &'static str {
        match self {
            CharClass::Numbers => "password_numbers",
            CharClass::Lower => "password_lower_case_chars",
            CharClass::Upper => "password_upper_case_chars",
            CharClass::Symbols => "password_special_symbols",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            CharClass::Numbers => "numbers",
            CharClass::Lower => "lower-case letters",
            CharClass::Upper => "upper-case letters",
            CharClass::Symbols => "symbols",
        }
    }
}

/// A password request as a client states it (unvalidated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordRequest {
    pub length: usize,
    pub numbers: bool,
    pub lower: bool,
    pub upper: bool,
    pub symbols: bool,
    pub exclude_ambiguous: bool,
    /// Characters to leave out.
    pub exclude: String,
    /// A custom symbol set replacing [`DEFAULT_SYMBOLS`].
    pub symbol_set: Option<String>,
    pub min_numbers: usize,
    pub min_symbols: usize,
}

impl Default for PasswordRequest {
    fn default() -> Self {
        Self {
            length: DEFAULT_LENGTH,
            numbers: true,
            lower: true,
            upper: true,
            symbols: true,
            exclude_ambiguous: false,
            exclude: String::new(),
            symbol_set: None,
            min_numbers: 0,
            min_symbols: 0,
        }
    }
}

impl PasswordRequest {
    pub fn enabled(&self, class: CharClass) -> bool {
        match class {
            CharClass::Numbers => self.numbers,
            CharClass::Lower => self.lower,
            CharClass::Upper => self.upper,
            CharClass::Symbols => self.symbols,
        }
    }
}

/// One enabled class: its characters (after exclusions) and how many must appear at least.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassSpec {
    pub class: CharClass,
    pub chars: Vec<char>,
    pub min: usize,
}

/// A request that can be satisfied. The only way to get one is [`PasswordPolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    length: usize,
    classes: Vec<ClassSpec>,
}

impl PasswordPolicy {
    /// Validates a request, naming every failing field.
    pub fn new(req: &PasswordRequest) -> Result<Self, ValidationError> {
        let mut errors: Option<ValidationError> = None;
        let mut fail = |field: &str, message: String| match errors.as_mut() {
            Some(e) => e.push(field, message),
            None => errors = Some(ValidationError::field(field, message)),
        };
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&req.length) {
            fail(
                "password_length",
                format!("must be between {MIN_LENGTH} and {MAX_LENGTH}"),
            );
        }
        if CharClass::ALL.iter().all(|c| !req.enabled(*c)) {
            for class in CharClass::ALL {
                fail(
                    class.flag(),
                    "at least one character class must be enabled".into(),
                );
            }
        }
        let symbols: String = match &req.symbol_set {
            Some(set) => {
                if set.is_empty() || set.chars().count() > MAX_SYMBOLS {
                    fail(
                        "symbols",
                        format!("must have 1 to {MAX_SYMBOLS} characters"),
                    );
                } else if let Some(bad) = set
                    .chars()
                    .find(|c| !c.is_ascii_graphic() || c.is_ascii_alphanumeric())
                {
                    fail(
                        "symbols",
                        format!("{bad:?} is not an ASCII punctuation character"),
                    );
                }
                set.clone()
            }
            None => DEFAULT_SYMBOLS.to_owned(),
        };
        if req.min_numbers > 0 && !req.numbers {
            fail(
                "min_numbers",
                "requires password_numbers to be enabled".into(),
            );
        }
        if req.min_symbols > 0 && !req.symbols {
            fail(
                "min_symbols",
                "requires password_special_symbols to be enabled".into(),
            );
        }
        // Every class is ASCII (custom symbols are checked above), so an ASCII table is enough;
        // excluding a non-ASCII character changes nothing.
        let mut excluded = [false; 128];
        let ambiguous = if req.exclude_ambiguous { AMBIGUOUS } else { "" };
        for c in req.exclude.chars().chain(ambiguous.chars()) {
            if c.is_ascii() {
                excluded[c as usize] = true;
            }
        }
        let mut classes = Vec::new();
        for class in CharClass::ALL.into_iter().filter(|c| req.enabled(*c)) {
            let source = match class {
                CharClass::Numbers => DIGITS,
                CharClass::Lower => LOWER,
                CharClass::Upper => UPPER,
                CharClass::Symbols => symbols.as_str(),
            };
            let mut seen = [false; 128];
            let mut chars: Vec<char> = source
                .chars()
                .filter(|c| {
                    c.is_ascii()
                        && !excluded[*c as usize]
                        && !std::mem::replace(&mut seen[*c as usize], true)
                })
                .collect();
            chars.sort_unstable();
            if chars.is_empty() {
                fail(
                    if req.exclude.is_empty() {
                        "exclude_ambiguous"
                    } else {
                        "exclude"
                    },
                    format!("leaves no {} to choose from", class.describe()),
                );
            }
            let min = match class {
                CharClass::Numbers => req.min_numbers.max(1),
                CharClass::Symbols => req.min_symbols.max(1),
                _ => 1,
            };
            classes.push(ClassSpec { class, chars, min });
        }
        let required: usize = classes.iter().map(|c| c.min).sum();
        if (MIN_LENGTH..=MAX_LENGTH).contains(&req.length) && required > req.length {
            let field = if req.min_symbols > req.min_numbers {
                "min_symbols"
            } else {
                "min_numbers"
            };
            fail(
                field,
                format!(
                    "the minimums need {required} characters but password_length is {}",
                    req.length
                ),
            );
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(Self {
                length: req.length,
                classes,
            }),
        }
    }

    pub fn length(&self) -> usize {
        self.length
    }

    pub fn classes(&self) -> &[ClassSpec] {
        &self.classes
    }

    /// All characters a password may contain.
    pub fn alphabet_size(&self) -> usize {
        self.classes.iter().map(|c| c.chars.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: ValidationError) -> Vec<String> {
        e.errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let p = PasswordPolicy::new(&PasswordRequest::default()).unwrap();
        assert_eq!(p.length(), 16);
        assert_eq!(p.alphabet_size(), 10 + 26 + 26 + 32);
        assert_eq!(DEFAULT_SYMBOLS.len(), 32);
        assert!(DEFAULT_SYMBOLS.chars().all(|c| c.is_ascii_punctuation()));
    }

    #[test]
    fn length_bounds() {
        for (len, ok) in [(5, false), (6, true), (200, true), (201, false), (0, false)] {
            let r = PasswordRequest {
                length: len,
                ..Default::default()
            };
            assert_eq!(PasswordPolicy::new(&r).is_ok(), ok, "{len}");
        }
    }

    #[test]
    fn no_class_names_all_four_flags() {
        let r = PasswordRequest {
            numbers: false,
            lower: false,
            upper: false,
            symbols: false,
            ..Default::default()
        };
        assert_eq!(
            fields(PasswordPolicy::new(&r).unwrap_err()),
            [
                "password_numbers",
                "password_lower_case_chars",
                "password_upper_case_chars",
                "password_special_symbols"
            ]
        );
    }

    #[test]
    fn exclusions_and_custom_symbols() {
        let r = PasswordRequest {
            exclude_ambiguous: true,
            exclude: "abc".into(),
            symbol_set: Some("!@#!".into()),
            ..Default::default()
        };
        let p = PasswordPolicy::new(&r).unwrap();
        let all: String = p.classes().iter().flat_map(|c| c.chars.iter()).collect();
        for gone in "Il1|O0abc".chars() {
            assert!(!all.contains(gone), "{gone}");
        }
        assert_eq!(p.classes()[3].chars, vec!['!', '#', '@']);
        let r = PasswordRequest {
            exclude: DIGITS.into(),
            ..Default::default()
        };
        assert_eq!(fields(PasswordPolicy::new(&r).unwrap_err()), ["exclude"]);
        let r = PasswordRequest {
            symbol_set: Some("ab".into()),
            ..Default::default()
        };
        assert_eq!(fields(PasswordPolicy::new(&r).unwrap_err()), ["symbols"]);
    }

    #[test]
    fn minimums_must_fit_and_need_their_class() {
        let r = PasswordRequest {
            length: 8,
            min_numbers: 4,
            min_symbols: 3,
            ..Default::default()
        };
        // 4 + 3 + 1 + 1 = 9 > 8
        assert_eq!(
            fields(PasswordPolicy::new(&r).unwrap_err()),
            ["min_numbers"]
        );
        let r = PasswordRequest {
            length: 8,
            min_numbers: 4,
            min_symbols: 2,
            ..Default::default()
        };
        assert!(PasswordPolicy::new(&r).is_ok());
        let r = PasswordRequest {
            numbers: false,
            min_numbers: 2,
            ..Default::default()
        };
        assert_eq!(
            fields(PasswordPolicy::new(&r).unwrap_err()),
            ["min_numbers"]
        );
    }
}
