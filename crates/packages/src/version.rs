//! Version precedence. Versions that parse as SemVer 2.0 are ordered by SemVer precedence
//! (pre-releases below their release, build metadata ignored); every other version ranks below
//! all of them, and among themselves they are ordered by a numeric-aware comparison (runs of
//! digits compare as numbers: `r9` < `r10`; other runs as text). Ties (equal precedence, e.g.
//! `1.0.0+a` and `1.0.0+b`) fall back to the text itself, so the order is total.

use depot_core::ValidationError;
use std::cmp::Ordering;

/// A version's place in the order: `Ord` is precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precedence {
    semver: Option<semver::Version>,
    raw: String,
}

impl Precedence {
    pub fn of(version: &str) -> Self {
        Self {
            semver: semver::Version::parse(version.trim()).ok(),
            raw: version.to_owned(),
        }
    }

    /// A SemVer version.
    pub fn is_semver(&self) -> bool {
        self.semver.is_some()
    }

    /// A SemVer pre-release (`1.0.0-rc.1`). Non-SemVer versions count as releases.
    pub fn is_prerelease(&self) -> bool {
        self.semver.as_ref().is_some_and(|v| !v.pre.is_empty())
    }
}

impl Ord for Precedence {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.semver, &other.semver) {
            (Some(a), Some(b)) => a.cmp_precedence(b),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => numeric_aware(&self.raw, &other.raw),
        }
        .then_with(|| self.raw.cmp(&other.raw))
    }
}

impl PartialOrd for Precedence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Runs of ASCII digits compare by value (then by length: `01` after `1`), other runs by text.
pub fn numeric_aware(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (ra, rest_a) = run(a);
        let (rb, rest_b) = run(b);
        let digits = |s: &str| s.as_bytes()[0].is_ascii_digit();
        let order = match (digits(ra), digits(rb)) {
            (true, true) => {
                let (ta, tb) = (ra.trim_start_matches('0'), rb.trim_start_matches('0'));
                ta.len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| ra.len().cmp(&rb.len()))
            }
            _ => ra.cmp(rb),
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (rest_a, rest_b);
    }
}

/// The first run of `s` (all digits or no digits) and the rest.
fn run(s: &str) -> (&str, &str) {
    let digit = s.as_bytes()[0].is_ascii_digit();
    let end = s
        .char_indices()
        .find(|(_, c)| c.is_ascii_digit() != digit)
        .map_or(s.len(), |(i, _)| i);
    s.split_at(end)
}

/// A version requirement as cargo reads one (`^1.2`, `~1.2.3`, `>=1, <2`, `*`); a bare `1.2.3`
/// means `^1.2.3`. Only SemVer versions can match one.
#[derive(Debug, Clone)]
pub struct Requirement(semver::VersionReq);

impl Requirement {
    /// 422 naming `field` when `raw` is not a requirement.
    pub fn parse(raw: &str, field: &str) -> Result<Self, ValidationError> {
        semver::VersionReq::parse(raw.trim())
            .map(Self)
            .map_err(|e| ValidationError::field(field, format!("not a version requirement: {e}")))
    }

    pub fn matches(&self, version: &str) -> bool {
        semver::Version::parse(version.trim()).is_ok_and(|v| self.0.matches(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(versions: &[&str]) -> Vec<String> {
        let mut v: Vec<Precedence> = versions.iter().map(|s| Precedence::of(s)).collect();
        v.sort();
        v.into_iter().map(|p| p.raw).collect()
    }

    /// The review's case: 1.10.0 was sorted before 1.9.0 and 1.2.0.
    #[test]
    fn semver_precedence_then_the_others_below_numerically() {
        assert_eq!(
            sorted(&[
                "1.10.0",
                "1.9.0",
                "1.2.0",
                "1.0.0",
                "1.0.0-rc.1",
                "1.0.0-alpha",
                "1.0.0-alpha.beta",
                "2.0.0+build.5",
                "r10",
                "r9",
                "latest",
                "2024.1",
            ]),
            [
                "2024.1",
                "latest",
                "r9",
                "r10",
                "1.0.0-alpha",
                "1.0.0-alpha.beta",
                "1.0.0-rc.1",
                "1.0.0",
                "1.2.0",
                "1.9.0",
                "1.10.0",
                "2.0.0+build.5",
            ]
        );
        assert!(Precedence::of("1.0.0-rc.1").is_prerelease());
        assert!(!Precedence::of("r9").is_prerelease());
    }

    #[test]
    fn requirements_read_as_cargo_reads_them() {
        let req = Requirement::parse("^1.2", "version").unwrap();
        assert!(req.matches("1.2.0") && req.matches("1.9.3"));
        assert!(!req.matches("2.0.0") && !req.matches("1.1.9") && !req.matches("r9"));
        let bare = Requirement::parse("1.2.3", "version").unwrap();
        assert!(bare.matches("1.4.0") && !bare.matches("1.2.2"));
        let e = Requirement::parse("not a req", "version").unwrap_err();
        assert_eq!(e.errors[0].field, "version");
    }

    proptest! {
        /// A total order: antisymmetric and transitive, on arbitrary versions.
        #[test]
        fn the_order_is_total(a in "[0-9a-z.+-]{0,12}", b in "[0-9a-z.+-]{0,12}", c in "[0-9a-z.+-]{0,12}") {
            let (pa, pb, pc) = (Precedence::of(&a), Precedence::of(&b), Precedence::of(&c));
            prop_assert_eq!(pa.cmp(&pb), pb.cmp(&pa).reverse());
            prop_assert_eq!(pa.cmp(&pb) == Ordering::Equal, a == b);
            if pa <= pb && pb <= pc {
                prop_assert!(pa <= pc);
            }
        }
    }
}
