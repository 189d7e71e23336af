//! Text rules shared by the components' inputs.

/// The Unicode format characters (general category Cf, Unicode 15.1): invisible characters that
/// change how text around them is shown — bidirectional overrides (U+202E turns `gpj.exe` into
/// `exe.jpg`), zero-width joiners and spaces, tags. In a name they make two different names look
/// alike, so names refuse them.
pub const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a format character (see [`FORMAT_CHARS`]).
pub fn is_format(c: char) -> bool {
    FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_characters_are_told_apart() {
        for c in [
            '\u{202E}',
            '\u{200B}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{2066}',
            '\u{E0041}',
            '\u{AD}',
        ] {
            assert!(is_format(c), "{c:?}");
        }
        for c in ['a', 'é', ' ', '-', '\u{3000}', '漢', '\u{1F600}'] {
            assert!(!is_format(c), "{c:?}");
        }
    }
}
