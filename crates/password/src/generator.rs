//! Uniform generation over the strings a [`PasswordPolicy`] allows (see the crate docs).

use crate::policy::PasswordPolicy;
use num_bigint::BigUint;
use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng, RngExt};
use std::sync::OnceLock;

/// Below this acceptance probability, rejection sampling is skipped for exact counting.
const MIN_ACCEPTANCE: f64 = 0.05;
/// Rejection draws before falling back to exact counting (P(fallback) ≤ 0.95^200 ≈ 3.5e-5).
const MAX_REJECTION_DRAWS: usize = 200;

/// A generator for one policy. Building it does the (small) counting work once; generating is
/// then cheap, so a request for many passwords pays it once.
#[derive(Debug)]
pub struct PasswordGenerator {
    policy: PasswordPolicy,
    /// The union alphabet, class by class, and where each class starts in it.
    alphabet: Vec<char>,
    class_start: Vec<usize>,
    /// The probability that a uniform string over the alphabet satisfies the minimums.
    acceptance: f64,
    /// Exact counts, built on first need.
    exact: OnceLock<ExactTable>,
}

/// `counts[i][r]` = valid strings of length `r` over classes `i..`; `binomial[r][n]`; `powers[i][n]`.
#[derive(Debug)]
struct ExactTable {
    counts: Vec<Vec<BigUint>>,
    binomial: Vec<Vec<BigUint>>,
    powers: Vec<Vec<BigUint>>,
}

impl PasswordGenerator {
    pub fn new(policy: PasswordPolicy) -> Self {
        let mut alphabet = Vec::with_capacity(policy.alphabet_size());
        let mut class_start = Vec::with_capacity(policy.classes().len());
        for class in policy.classes() {
            class_start.push(alphabet.len());
            alphabet.extend(class.chars.iter().copied());
        }
        let acceptance = acceptance_probability(&policy);
        Self {
            policy,
            alphabet,
            class_start,
            acceptance,
            exact: OnceLock::new(),
        }
    }

    /// True when generation (and the entropy figure) needs no big-integer counting.
    pub fn is_cheap(&self) -> bool {
        self.acceptance >= MIN_ACCEPTANCE
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// log2 of the number of strings this policy allows.
    pub fn entropy_bits(&self) -> f64 {
        let l = self.policy.length() as f64;
        let base = l * (self.alphabet.len() as f64).log2();
        if self.acceptance > 1e-250 {
            base + self.acceptance.log2()
        } else {
            log2_big(&self.exact().counts[0][self.policy.length()])
        }
    }

    /// One password, uniform over the policy's valid strings.
    pub fn generate<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R) -> String {
        if self.acceptance >= MIN_ACCEPTANCE {
            for _ in 0..MAX_REJECTION_DRAWS {
                if let Some(p) = self.try_rejection(rng) {
                    return p;
                }
            }
        }
        self.generate_exact(rng)
    }

    /// One rejection-sampling draw: `None` when it misses a minimum.
    fn try_rejection<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R) -> Option<String> {
        let n = self.alphabet.len();
        let mut counts = [0usize; 4];
        let mut out = String::with_capacity(self.policy.length());
        for _ in 0..self.policy.length() {
            let idx = rng.random_range(0..n);
            let class = self.class_start.partition_point(|&start| start <= idx) - 1;
            counts[class] += 1;
            out.push(self.alphabet[idx]);
        }
        let ok = self
            .policy
            .classes()
            .iter()
            .zip(counts)
            .all(|(spec, count)| count >= spec.min);
        ok.then_some(out)
    }

    fn exact(&self) -> &ExactTable {
        self.exact.get_or_init(|| ExactTable::build(&self.policy))
    }

    /// Exact counting: class counts by their true weights, labels shuffled, characters drawn.
    fn generate_exact<R: Rng + CryptoRng + ?Sized>(&self, rng: &mut R) -> String {
        let table = self.exact();
        let classes = self.policy.classes();
        let k = classes.len();
        let mut remaining = self.policy.length();
        let mut labels = Vec::with_capacity(remaining);
        for (i, spec) in classes.iter().enumerate() {
            let n = if i + 1 == k {
                remaining
            } else {
                let x = random_below(rng, &table.counts[i][remaining]);
                let mut acc = BigUint::ZERO;
                let mut chosen = remaining;
                for n in spec.min..=remaining {
                    acc += table.weight(i, remaining, n);
                    if x < acc {
                        chosen = n;
                        break;
                    }
                }
                chosen
            };
            labels.extend(std::iter::repeat_n(i, n));
            remaining -= n;
        }
        labels.shuffle(rng);
        labels
            .into_iter()
            .map(|i| {
                let chars = &classes[i].chars;
                chars[rng.random_range(0..chars.len())]
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn generate_exact_for_test<R: Rng + CryptoRng>(&self, rng: &mut R) -> String {
        self.generate_exact(rng)
    }

    #[cfg(test)]
    pub(crate) fn generate_rejection_for_test<R: Rng + CryptoRng>(&self, rng: &mut R) -> String {
        loop {
            if let Some(p) = self.try_rejection(rng) {
                return p;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn exact_count(&self) -> BigUint {
        self.exact().counts[0][self.policy.length()].clone()
    }
}

impl ExactTable {
    fn build(policy: &PasswordPolicy) -> Self {
        let l = policy.length();
        let classes = policy.classes();
        let k = classes.len();
        let mut binomial = vec![vec![BigUint::ZERO; l + 1]; l + 1];
        for r in 0..=l {
            binomial[r][0] = BigUint::from(1u8);
            for n in 1..=r {
                binomial[r][n] = &binomial[r - 1][n - 1] + &binomial[r - 1][n];
            }
        }
        let powers: Vec<Vec<BigUint>> = classes
            .iter()
            .map(|c| {
                let s = BigUint::from(c.chars.len());
                let mut p = Vec::with_capacity(l + 1);
                p.push(BigUint::from(1u8));
                for n in 1..=l {
                    let next = &p[n - 1] * &s;
                    p.push(next);
                }
                p
            })
            .collect();
        let mut counts = vec![vec![BigUint::ZERO; l + 1]; k + 1];
        counts[k][0] = BigUint::from(1u8);
        let mut table = Self {
            counts,
            binomial,
            powers,
        };
        for i in (0..k).rev() {
            for r in 0..=l {
                let mut total = BigUint::ZERO;
                for n in classes[i].min..=r {
                    total += table.weight(i, r, n);
                }
                table.counts[i][r] = total;
            }
        }
        table
    }

    /// Valid strings of length `r` over classes `i..` with exactly `n` characters of class `i`.
    fn weight(&self, i: usize, r: usize, n: usize) -> BigUint {
        let rest = &self.counts[i + 1][r - n];
        if rest == &BigUint::ZERO {
            return BigUint::ZERO;
        }
        &self.binomial[r][n] * &self.powers[i][n] * rest
    }
}

/// The probability that `L` characters drawn uniformly from the union alphabet meet every
/// minimum. When every minimum is 1 (the usual request) this is inclusion–exclusion over the
/// classes that could be missing, `Σ_S (−1)^|S| ((N − Σ_{i∈S} s_i)/N)^L` (2^k terms); otherwise,
/// or when that sum is too small to trust in f64, the counting recurrence scaled by N^L.
fn acceptance_probability(policy: &PasswordPolicy) -> f64 {
    let classes = policy.classes();
    if classes.iter().all(|c| c.min == 1) {
        let total = policy.alphabet_size() as f64;
        let l = policy.length() as i32;
        let mut p = 0.0;
        for subset in 0u32..(1 << classes.len()) {
            let missing: usize = classes
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .map(|(_, c)| c.chars.len())
                .sum();
            let term = ((total - missing as f64) / total).powi(l);
            p += if subset.count_ones() % 2 == 0 {
                term
            } else {
                -term
            };
        }
        if p > 1e-9 {
            return p;
        }
    }
    acceptance_by_recurrence(policy)
}

fn acceptance_by_recurrence(policy: &PasswordPolicy) -> f64 {
    let l = policy.length();
    let total = policy.alphabet_size() as f64;
    let classes = policy.classes();
    let k = classes.len();
    // ln C(r, n) via a table of ln(n!).
    let ln_fact: Vec<f64> = std::iter::once(0.0)
        .chain((1..=l).scan(0.0, |acc, n| {
            *acc += (n as f64).ln();
            Some(*acc)
        }))
        .collect();
    let mut next = vec![0.0f64; l + 1];
    next[0] = 1.0;
    for i in (0..k).rev() {
        let q = classes[i].chars.len() as f64 / total;
        let ln_q = q.ln();
        let mut current = vec![0.0f64; l + 1];
        for (r, slot) in current.iter_mut().enumerate() {
            let mut sum = 0.0;
            for n in classes[i].min..=r {
                if next[r - n] == 0.0 {
                    continue;
                }
                let ln_term = ln_fact[r] - ln_fact[n] - ln_fact[r - n] + n as f64 * ln_q;
                sum += ln_term.exp() * next[r - n];
            }
            *slot = sum;
        }
        next = current;
    }
    next[l]
}

/// A uniform integer in `[0, bound)`, by rejection on the bound's bit length (exact).
fn random_below<R: Rng + CryptoRng + ?Sized>(rng: &mut R, bound: &BigUint) -> BigUint {
    debug_assert!(bound > &BigUint::ZERO);
    let bits = bound.bits();
    let bytes = bits.div_ceil(8) as usize;
    let excess = (bytes as u64 * 8 - bits) as u32;
    let mut buf = vec![0u8; bytes];
    loop {
        rng.fill_bytes(&mut buf);
        // Big-endian: clear the bits above the bound's length in the first byte.
        buf[0] &= 0xffu8 >> excess;
        let x = BigUint::from_bytes_be(&buf);
        if &x < bound {
            return x;
        }
    }
}

fn log2_big(n: &BigUint) -> f64 {
    let bits = n.bits();
    if bits <= 64 {
        return (n.iter_u64_digits().next().unwrap_or(0) as f64).log2();
    }
    let shift = bits - 64;
    let top = (n >> shift).iter_u64_digits().next().unwrap_or(0) as f64;
    top.log2() + shift as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DIGITS, PasswordRequest};
    use std::collections::HashMap;

    fn generator(req: PasswordRequest) -> PasswordGenerator {
        PasswordGenerator::new(PasswordPolicy::new(&req).unwrap())
    }

    /// A small policy whose whole valid set can be enumerated: digits {0,1}, symbols {!,@},
    /// length 6, at least one of each → 4^6 − 2·2^6 = 3,968 strings.
    fn tiny() -> PasswordRequest {
        PasswordRequest {
            length: 6,
            numbers: true,
            lower: false,
            upper: false,
            symbols: true,
            exclude: "23456789".into(),
            symbol_set: Some("!@".into()),
            ..Default::default()
        }
    }

    /// Pearson's chi-square statistic of observed counts against a uniform expectation over
    /// `cells` outcomes (cells never seen count as zero).
    fn chi_square(counts: &HashMap<String, usize>, cells: usize, draws: usize) -> f64 {
        let expected = draws as f64 / cells as f64;
        let seen: f64 = counts
            .values()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        let unseen = (cells - counts.len()) as f64 * expected;
        seen + unseen
    }

    /// The statistic must stay below df + 6·sqrt(2·df): a fair generator exceeds it with
    /// probability far below one in a million; the biased "one of each then shuffle" method
    /// lands thousands of points above it (see `the_test_catches_a_biased_generator`).
    fn assert_uniform(counts: &HashMap<String, usize>, cells: usize, draws: usize) {
        let df = (cells - 1) as f64;
        let bound = df + 6.0 * (2.0 * df).sqrt();
        let stat = chi_square(counts, cells, draws);
        assert!(stat < bound, "chi-square {stat:.0} ≥ {bound:.0} (df {df})");
    }

    fn sample(f: impl Fn() -> String, draws: usize) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..draws {
            *counts.entry(f()).or_insert(0) += 1;
        }
        counts
    }

    fn valid_tiny(p: &str) -> bool {
        p.len() == 6
            && p.chars().all(|c| "01!@".contains(c))
            && p.chars().any(|c| "01".contains(c))
            && p.chars().any(|c| "!@".contains(c))
    }

    #[test]
    fn exact_count_matches_inclusion_exclusion() {
        let g = generator(tiny());
        assert_eq!(g.exact_count(), BigUint::from(3968u32));
        assert!((g.entropy_bits() - 3968f64.log2()).abs() < 1e-9);
        // Four default classes, length 16: Σ_S (−1)^|S| (94 − Σ_{i∈S} s_i)^16.
        let g = generator(PasswordRequest::default());
        let sizes = [10i64, 26, 26, 32];
        let mut expected = 0f64;
        for mask in 0..16u32 {
            let removed: i64 = (0..4)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| sizes[i])
                .sum();
            let sign = if mask.count_ones() % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            expected += sign * ((94 - removed) as f64).powi(16);
        }
        assert!((g.entropy_bits() - expected.log2()).abs() < 1e-9);
        assert!((log2_big(&g.exact_count()) - expected.log2()).abs() < 1e-9);
    }

    #[test]
    fn entropy_is_exact_for_extreme_minimums() {
        // Numbers reduced to one digit, 199 of them required: the valid share of the alphabet's
        // strings underflows f64, so entropy comes from the exact count.
        let g = generator(PasswordRequest {
            length: 200,
            exclude: "123456789".into(),
            lower: false,
            upper: false,
            min_numbers: 199,
            ..Default::default()
        });
        // At least 199 zeros and at least one symbol in 200 → exactly one symbol: 200 · 32 strings.
        assert!((g.entropy_bits() - (200.0f64 * 32.0).log2()).abs() < 1e-9);
        let mut rng = rand::rng();
        let p = g.generate(&mut rng);
        assert_eq!(p.chars().filter(|c| *c == '0').count(), 199);
    }

    #[test]
    fn rejection_sampler_is_uniform() {
        let g = generator(tiny());
        let mut rng = rand::rng();
        let draws = 200_000;
        let counts = sample(|| g.generate_rejection_for_test(&mut rand::rng()), draws);
        assert!(counts.keys().all(|p| valid_tiny(p)));
        assert_uniform(&counts, 3968, draws);
        let _ = g.generate(&mut rng);
    }

    #[test]
    fn exact_sampler_is_uniform() {
        let g = generator(tiny());
        let draws = 200_000;
        let counts = sample(|| g.generate_exact_for_test(&mut rand::rng()), draws);
        assert!(counts.keys().all(|p| valid_tiny(p)));
        assert_uniform(&counts, 3968, draws);
    }

    #[test]
    fn exact_sampler_is_uniform_with_minimums() {
        // Length 6 over {0,1} ∪ {!,@} with at least 3 digits and 2 symbols:
        // Σ_{n=3}^{4} C(6,n) 2^n 2^(6−n) = (20 + 15) · 64 = 2,240 strings.
        let req = PasswordRequest {
            min_numbers: 3,
            min_symbols: 2,
            ..tiny()
        };
        let g = generator(req);
        assert_eq!(g.exact_count(), BigUint::from(2240u32));
        let draws = 150_000;
        let counts = sample(|| g.generate(&mut rand::rng()), draws);
        for p in counts.keys() {
            assert!(p.chars().filter(|c| "01".contains(*c)).count() >= 3, "{p}");
            assert!(p.chars().filter(|c| "!@".contains(*c)).count() >= 2, "{p}");
        }
        assert_uniform(&counts, 2240, draws);
    }

    #[test]
    fn the_test_catches_a_biased_generator() {
        // "One of each class, then fill and shuffle" over the tiny policy.
        let draws = 200_000;
        let counts = sample(
            || {
                let mut rng = rand::rng();
                let mut chars = vec![
                    ['0', '1'][rng.random_range(0..2)],
                    ['!', '@'][rng.random_range(0..2)],
                ];
                for _ in 0..4 {
                    chars.push(['0', '1', '!', '@'][rng.random_range(0..4)]);
                }
                chars.shuffle(&mut rng);
                chars.into_iter().collect()
            },
            draws,
        );
        let df = 3967.0f64;
        let stat = chi_square(&counts, 3968, draws);
        assert!(
            stat > df + 6.0 * (2.0 * df).sqrt(),
            "the biased generator passed: {stat:.0}"
        );
    }

    #[test]
    fn every_enabled_class_appears_and_no_disabled_one() {
        let mut rng = rand::rng();
        let g = generator(PasswordRequest {
            length: 6,
            ..Default::default()
        });
        for _ in 0..20_000 {
            let p = g.generate(&mut rng);
            assert_eq!(p.chars().count(), 6);
            assert!(p.chars().any(|c| c.is_ascii_digit()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_lowercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_uppercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_punctuation()), "{p}");
        }
        let g = generator(PasswordRequest {
            symbols: false,
            upper: false,
            ..Default::default()
        });
        for _ in 0..5_000 {
            let p = g.generate(&mut rng);
            assert!(
                p.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
                "{p}"
            );
        }
    }

    #[test]
    fn character_frequencies_are_flat_within_each_class() {
        // Default policy, 40,000 passwords of 16: each of the 10 digits should appear equally
        // often among digits, and likewise for each class.
        let g = generator(PasswordRequest::default());
        let mut rng = rand::rng();
        let mut freq: HashMap<char, usize> = HashMap::new();
        for _ in 0..40_000 {
            for c in g.generate(&mut rng).chars() {
                *freq.entry(c).or_insert(0) += 1;
            }
        }
        for class in g.policy().classes() {
            let total: usize = class
                .chars
                .iter()
                .map(|c| freq.get(c).copied().unwrap_or(0))
                .sum();
            let expected = total as f64 / class.chars.len() as f64;
            let stat: f64 = class
                .chars
                .iter()
                .map(|c| (freq.get(c).copied().unwrap_or(0) as f64 - expected).powi(2) / expected)
                .sum();
            let df = (class.chars.len() - 1) as f64;
            assert!(
                stat < df + 6.0 * (2.0 * df).sqrt(),
                "{:?}: {stat}",
                class.class
            );
        }
        assert_eq!(DIGITS.len(), 10);
    }

    #[test]
    fn both_acceptance_formulas_agree() {
        for req in [
            PasswordRequest::default(),
            PasswordRequest {
                length: 6,
                ..Default::default()
            },
            PasswordRequest {
                length: 200,
                ..Default::default()
            },
            tiny(),
            PasswordRequest {
                symbols: false,
                upper: false,
                ..Default::default()
            },
        ] {
            let policy = PasswordPolicy::new(&req).unwrap();
            let a = acceptance_probability(&policy);
            let b = acceptance_by_recurrence(&policy);
            assert!((a - b).abs() < 1e-12 * b.max(1e-300), "{req:?}: {a} vs {b}");
        }
    }

    #[test]
    fn random_below_stays_below() {
        let mut rng = rand::rng();
        for bound in [1u32, 2, 3, 255, 256, 257, 1000] {
            let b = BigUint::from(bound);
            for _ in 0..200 {
                assert!(random_below(&mut rng, &b) < b);
            }
        }
    }
}
