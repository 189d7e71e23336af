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

/// Characters a name may not contain beyond its ends, besides control and format characters:
/// the other default-ignorable code points (shown as nothing: variation selectors, Hangul
/// fillers, Mongolian free variation selectors, combining grapheme joiner), line and paragraph
/// separators, and every space but the ASCII one — `left-pad\u{FE0F}` and `left\u{A0}pad`
/// must not pass for `left-pad` and `left pad`.
pub const INVISIBLE_CHARS: &[(char, char)] = &[
    ('\u{00A0}', '\u{00A0}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180D}'),
    ('\u{180F}', '\u{180F}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{E0100}', '\u{E01EF}'),
];

/// Whether `c` may not appear inside a name: a control, format or other invisible character
/// (see [`FORMAT_CHARS`], [`INVISIBLE_CHARS`]).
pub fn hidden_in_name(c: char) -> bool {
    c.is_control()
        || is_format(c)
        || INVISIBLE_CHARS
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&c))
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
        for c in [
            '\u{FE0F}', '\u{A0}', '\u{3164}', '\u{2028}', '\u{202E}', '\u{7}',
        ] {
            assert!(hidden_in_name(c), "{c:?}");
        }
        for c in ['a', ' ', '漢', '\u{1F600}', '@', '/'] {
            assert!(!hidden_in_name(c), "{c:?}");
        }
    }
}
