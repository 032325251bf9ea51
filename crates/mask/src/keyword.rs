//! Entities announced by a literal: AWS access key ids (`AKIA`/`ASIA`), PEM private keys
//! (`-----BEGIN `), JWTs (`eyJ`, base64url of `{"`) and secrets after keywords such as
//! `password`, `token`, `api_key`. One Aho-Corasick pass (case-sensitive, so its SIMD prefilter
//! stays on; keyword casings are listed explicitly) finds them all.

use aho_corasick::{AhoCorasick, Input, MatchKind};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::bytes::{at, before, contains_ignore_case, is_alnum, skip_while, slice};
use crate::scan::{Found, Shape, AWS, JWT, PEM, SECRET};
use crate::Detector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AwsKeyId,
    Pem,
    Jwt,
    /// `password = …`, `"api_key": "…"`.
    Assign,
    /// `Bearer …`.
    Bearer,
    /// `Authorization: Basic …`.
    Authorization,
    /// `ghp_…`, `github_pat_…`.
    Github,
}

/// GitHub token prefixes before their `_` (classic personal, OAuth, user-to-server,
/// server-to-server and refresh tokens: 36 letters and digits follow) and the fine-grained
/// personal access token's `github_pat_` (at least 40 of `[A-Za-z0-9_]`). Each is a pattern of
/// the automaton; every pattern weakens its prefilter a little, so vendor formats are added only
/// when common in data.
const GITHUB: &[&[u8; 3]] = &[b"ghp", b"gho", b"ghu", b"ghs", b"ghr"];

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_word_or_dash(b: u8) -> bool {
    is_word(b) || b == b'-'
}

const ASSIGN_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
];

/// Below this length the automaton's SIMD prefilter cannot run (it falls back to Rabin-Karp),
/// so a bigram gate decides first whether any keyword can start in the value at all.
const SHORT_VALUE: usize = 64;

pub(crate) struct Keywords {
    ac: AhoCorasick,
    /// Bit `(a << 8) | b` is set when some pattern starts with the bytes `a b`.
    starts: Vec<u64>,
    /// Whether some pattern starts with this byte.
    first: [bool; 256],
    kinds: Vec<Kind>,
}

impl Keywords {
    pub(crate) fn new() -> Result<Keywords, aho_corasick::BuildError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut kinds = Vec::new();
        let mut add = |p: String, k: Kind| {
            if !patterns.contains(&p) {
                patterns.push(p);
                kinds.push(k);
            }
        };
        add("AKIA".into(), Kind::AwsKeyId);
        add("ASIA".into(), Kind::AwsKeyId);
        add("-----BEGIN ".into(), Kind::Pem);
        add("eyJ".into(), Kind::Jwt);
        // From the prefix's last two letters on (`hp_`, `ub_pat_`): patterns whose third byte
        // is `_` are cheap for the automaton's prefilter, as few bytes of ordinary text are.
        for p in GITHUB {
            add(
                format!("{}_", String::from_utf8_lossy(&p[1..])),
                Kind::Github,
            );
        }
        add("ub_pat_".into(), Kind::Github);
        let casings = |w: &str| {
            let mut cap = w.to_owned();
            if let Some(first) = cap.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            [w.to_owned(), w.to_ascii_uppercase(), cap]
        };
        for w in ASSIGN_WORDS {
            for c in casings(w) {
                add(c, Kind::Assign);
            }
        }
        for camel in ["apiKey", "ApiKey", "accessKey", "AccessKey"] {
            add(camel.into(), Kind::Assign);
        }
        for c in casings("bearer") {
            add(c, Kind::Bearer);
        }
        for c in casings("authorization") {
            add(c, Kind::Authorization);
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&patterns)?;
        let mut starts = vec![0u64; 65536 / 64];
        let mut first = [false; 256];
        for p in &patterns {
            if let [a, b, ..] = p.as_bytes() {
                if let Some(f) = first.get_mut(usize::from(*a)) {
                    *f = true;
                }
                let bit = usize::from(*a) << 8 | usize::from(*b);
                if let Some(word) = starts.get_mut(bit / 64) {
                    *word |= 1 << (bit % 64);
                }
            }
        }
        Ok(Keywords {
            ac,
            starts,
            first,
            kinds,
        })
    }

    pub(crate) fn scan(&self, enabled: u16, v: &[u8], out: &mut Vec<Found>) {
        if v.len() < SHORT_VALUE && !self.may_start(v) {
            return;
        }
        let ac = &self.ac;
        let mut pos = 0;
        while pos < v.len() {
            let Some(m) = ac.find(Input::new(v).range(pos..)) else {
                break;
            };
            let kind = self.kinds.get(m.pattern().as_usize()).copied();
            let found = match kind {
                Some(Kind::AwsKeyId) if enabled & AWS != 0 => aws_key_id(v, m.start()),
                Some(Kind::Pem) if enabled & PEM != 0 => pem(v, m.start(), m.end()),
                Some(Kind::Jwt) if enabled & JWT != 0 => jwt(v, m.start()),
                // The `_` is the pattern's third byte (`hp_`, `ub_pat_`).
                Some(Kind::Github) if enabled & SECRET != 0 => github_token(v, m.start() + 2),
                Some(k @ (Kind::Assign | Kind::Bearer | Kind::Authorization))
                    if enabled & (SECRET | AWS) != 0 =>
                {
                    secret(enabled, v, m.start(), m.end(), k)
                }
                _ => None,
            };
            pos = match found {
                Some(f) => {
                    out.push(f);
                    f.end.max(m.end())
                }
                None => m.end(),
            };
        }
    }
}

impl Keywords {
    fn may_start(&self, v: &[u8]) -> bool {
        v.windows(2).any(|w| {
            let (a, b) = match *w {
                [a, b] => (a, b),
                _ => return false,
            };
            // Most bytes (digits, spaces, punctuation) start no keyword: one table lookup.
            if !self.first.get(usize::from(a)).copied().unwrap_or(false) {
                return false;
            }
            let bit = usize::from(a) << 8 | usize::from(b);
            self.starts
                .get(bit / 64)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0)
        })
    }
}

/// `AKIA`/`ASIA` and 16 more of `[A-Z0-9]`, standing alone.
fn aws_key_id(v: &[u8], start: usize) -> Option<Found> {
    if is_alnum(before(v, start)) {
        return None;
    }
    let end = start + 20;
    let body = slice(v, start + 4, end);
    let ok = body.len() == 16
        && body
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && !is_alnum(at(v, end));
    ok.then(|| Found::builtin(start, end, Detector::AwsKey))
}

/// A GitHub token around the `_` at `us` (see [`GITHUB`]), standing alone.
fn github_token(v: &[u8], us: usize) -> Option<Found> {
    let (start, body, allowed, min, max): (usize, usize, fn(u8) -> bool, usize, usize) =
        if us >= 3 && GITHUB.iter().any(|p| slice(v, us - 3, us) == &p[..]) {
            (us - 3, us + 1, is_alnum, 36, 36)
        } else if us >= 6 && slice(v, us - 6, us + 5) == b"github_pat_" {
            (us - 6, us + 5, is_word, 40, 255)
        } else {
            return None;
        };
    if is_word_or_dash(before(v, start)) {
        return None;
    }
    let end = skip_while(v, body, allowed);
    let len = end - body;
    if !(min..=max).contains(&len) || is_word_or_dash(at(v, end)) {
        return None;
    }
    // A placeholder (`ghp_xxxxxxxx…`) is not a credential.
    looks_secret(slice(v, body, end)).then(|| Found::builtin(start, end, Detector::Secret))
}

/// A PEM block whose label names a private key, through its `-----END …-----` line. A block
/// cut off before its end line (a truncated value) is masked to the end of the value.
fn pem(v: &[u8], start: usize, label_start: usize) -> Option<Found> {
    let head = slice(v, label_start, label_start + 64);
    let label_len = memchr::memmem::find(head, b"-----")?;
    let label = slice(head, 0, label_len);
    if !label
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
        || !contains_ignore_case(label, b"private key")
    {
        return None;
    }
    let body = label_start + label_len + 5;
    let rest = slice(v, body, v.len());
    let end = match memchr::memmem::find(rest, b"-----END ") {
        Some(e) => {
            let tail_start = body + e + 9;
            let tail = slice(v, tail_start, tail_start + 64);
            match memchr::memmem::find(tail, b"-----") {
                Some(t) => tail_start + t + 5,
                None => v.len(),
            }
        }
        None => v.len(),
    };
    Some(Found::builtin(start, end, Detector::PrivateKey))
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Headers longer than this are not JWT headers.
const MAX_JWT_HEADER: usize = 2048;

/// `header.payload.signature` in base64url, the header decoding to a JSON object with `"alg"`.
fn jwt(v: &[u8], start: usize) -> Option<Found> {
    if is_b64url(before(v, start)) {
        return None;
    }
    let h_end = skip_while(v, start, is_b64url);
    if h_end - start < 10 || h_end - start > MAX_JWT_HEADER || at(v, h_end) != b'.' {
        return None;
    }
    let p_end = skip_while(v, h_end + 1, is_b64url);
    if p_end - (h_end + 1) < 2 || at(v, p_end) != b'.' {
        return None;
    }
    let mut end = skip_while(v, p_end + 1, is_b64url);
    end = skip_while(v, end, |b| b == b'=');
    if is_alnum(at(v, end)) {
        return None;
    }
    let header = B64_LENIENT.decode(slice(v, start, h_end)).ok()?;
    let json = header
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |p| header.get(p..).unwrap_or_default());
    (json.first() == Some(&b'{') && memchr::memmem::find(json, b"\"alg\"").is_some())
        .then(|| Found::builtin(start, end, Detector::Jwt))
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Longest key name around a keyword (`aws_secret_access_key`, `db.password`).
const MAX_IDENT: usize = 64;
/// Secrets are scanned this far; a longer run is cut here (and masked up to here).
const MAX_SECRET: usize = 4096;

/// The value assigned to a key containing a keyword, if it looks like a secret.
fn secret(enabled: u16, v: &[u8], kw_start: usize, kw_end: usize, kind: Kind) -> Option<Found> {
    // The keyword must not run on into another word: `tokenizer`, `secretary` (plural is fine).
    let next = at(v, kw_end);
    let plural = next == b's' && !at(v, kw_end + 1).is_ascii_lowercase();
    if next.is_ascii_lowercase() && !plural {
        return None;
    }
    let ident_end = skip_while(v, kw_end, is_ident);
    if ident_end - kw_end > MAX_IDENT {
        return None;
    }
    let mut ident_start = kw_start;
    while ident_start > 0 && kw_start - ident_start < MAX_IDENT && is_ident(before(v, ident_start))
    {
        ident_start -= 1;
    }
    let mut p = ident_end;
    // The key's closing quote: `"`, `'`, or `\"` inside an escaped JSON string.
    while p < ident_end + 2 && matches!(at(v, p), b'"' | b'\'' | b'\\') {
        p += 1;
    }
    let spaced = skip_while(v, p, |b| b == b' ' || b == b'\t');
    let had_space = spaced > p;
    p = spaced;
    match kind {
        Kind::Bearer => {
            if !had_space {
                return None;
            }
        }
        _ => {
            if !matches!(at(v, p), b':' | b'=') {
                return None;
            }
            p += 1;
            if matches!(at(v, p), b'=' | b'>') {
                p += 1;
            }
            p = skip_while(v, p, |b| b == b' ' || b == b'\t');
        }
    }
    let mut quote = 0u8;
    if at(v, p) == b'\\' && at(v, p + 1) == b'"' {
        quote = b'"';
        p += 2;
    } else if matches!(at(v, p), b'"' | b'\'') {
        quote = at(v, p);
        p += 1;
    }
    if kind == Kind::Authorization {
        // `Authorization: Basic <credentials>`: the scheme is not the secret.
        let word_end = skip_while(v, p, |b| b.is_ascii_alphabetic());
        if word_end > p && at(v, word_end) == b' ' && word_end - p <= 12 {
            p = skip_while(v, word_end, |b| b == b' ');
        }
    }
    let value_start = p;
    let limit = (value_start + MAX_SECRET).min(v.len());
    let mut value_end = value_start;
    while value_end < limit && !ends_value(at(v, value_end)) {
        value_end += 1;
    }
    // A quoted value with whitespace inside is prose, not a credential.
    if quote != 0 && value_end < limit && !matches!(at(v, value_end), b'"' | b'\'' | b'\\') {
        return None;
    }
    let value = slice(v, value_start, value_end);
    if !looks_secret(value) {
        return None;
    }
    let key = slice(v, ident_start, ident_end);
    let aws_secret = value.len() == 40
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'/' || *b == b'+')
        && (contains_ignore_case(key, b"aws")
            || contains_ignore_case(key, b"secretaccess")
            || contains_ignore_case(key, b"secret_access"));
    if aws_secret && enabled & AWS != 0 {
        return Some(Found {
            start: value_start,
            end: value_end,
            entity: crate::scan::Entity::Builtin(Detector::AwsKey),
            shape: Shape::Tag,
        });
    }
    (enabled & SECRET != 0).then(|| Found::builtin(value_start, value_end, Detector::Secret))
}

fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'"' | b'\'' | b',' | b';' | b'&' | b'}' | b']' | b')' | b'<' | b'>' | b'\\' | 0
        )
}

/// Long enough, not a plain lowercase word, and random-looking: Shannon entropy of at least
/// `min(3.0, 0.85 · log2(len))` bits per byte. The length-scaled bar lets 8–12 character
/// passwords through (their ceiling is log2(len)) while rejecting words, dates and
/// placeholders like `********` or `2024-01-01`.
pub(crate) fn looks_secret(value: &[u8]) -> bool {
    if value.len() < 8 {
        return false;
    }
    let not_a_word = value.iter().any(|b| {
        b.is_ascii_digit()
            || b.is_ascii_uppercase()
            || !(b.is_ascii_lowercase() || b"_-.".contains(b))
    });
    not_a_word && entropy(value) >= (0.85 * (value.len() as f64).log2()).min(3.0)
}

pub(crate) fn entropy(value: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in value {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_constant() {
        assert!((entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
        assert!(entropy(b"aaaaaaaa").abs() < 1e-9);
    }

    #[test]
    fn secret_shapes() {
        assert!(looks_secret(b"hunter22"));
        assert!(looks_secret(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
        assert!(!looks_secret(b"********"));
        assert!(!looks_secret(b"2024-01-01"));
        assert!(!looks_secret(b"expired_session"));
        assert!(!looks_secret(b"short1"));
    }
}
