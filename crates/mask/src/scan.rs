//! The anchor pass: one walk over the bytes with a class table, handing the few interesting
//! positions to the precise detectors.

use crate::bytes::{at, before, is_alnum};
use crate::keyword::Keywords;
use crate::{email, net, numeric, Detector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entity {
    Builtin(Detector),
    Custom(usize),
}

/// What `partial` may keep of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// First character of the local part and the top-level domain.
    Email,
    /// Separators, and the last four characters when they are digits.
    KeepLast4,
    /// Separators only.
    MaskAll,
    /// Nothing: the label.
    Tag,
}

pub(crate) fn shape_of(d: Detector) -> Shape {
    match d {
        Detector::Email => Shape::Email,
        Detector::CreditCard | Detector::Iban | Detector::Ssn | Detector::Phone => Shape::KeepLast4,
        Detector::Ipv4 | Detector::Ipv6 | Detector::AwsKey => Shape::MaskAll,
        Detector::PrivateKey | Detector::Jwt | Detector::Secret => Shape::Tag,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub start: usize,
    pub end: usize,
    pub entity: Entity,
    pub shape: Shape,
}

impl Found {
    pub(crate) fn builtin(start: usize, end: usize, d: Detector) -> Found {
        Found {
            start,
            end,
            entity: Entity::Builtin(d),
            shape: shape_of(d),
        }
    }
}

pub(crate) const EMAIL: u16 = 1 << Detector::Email as u16;
pub(crate) const CARD: u16 = 1 << Detector::CreditCard as u16;
pub(crate) const IBAN: u16 = 1 << Detector::Iban as u16;
pub(crate) const SSN: u16 = 1 << Detector::Ssn as u16;
pub(crate) const PHONE: u16 = 1 << Detector::Phone as u16;
pub(crate) const IPV4: u16 = 1 << Detector::Ipv4 as u16;
pub(crate) const IPV6: u16 = 1 << Detector::Ipv6 as u16;
pub(crate) const AWS: u16 = 1 << Detector::AwsKey as u16;
pub(crate) const PEM: u16 = 1 << Detector::PrivateKey as u16;
pub(crate) const JWT: u16 = 1 << Detector::Jwt as u16;
pub(crate) const SECRET: u16 = 1 << Detector::Secret as u16;

const NUMERIC: u16 = CARD | SSN | PHONE | IPV4;

const C_OTHER: u8 = 0;
const C_DIGIT: u8 = 1;
const C_UPPER: u8 = 2;
const C_LOWER: u8 = 3;
const C_AT: u8 = 4;
const C_COLON: u8 = 5;
const C_PLUS: u8 = 6;
const C_LPAREN: u8 = 7;

// Indices are `0..256` by construction.
#[allow(clippy::indexing_slicing)]
const CLASS: [u8; 256] = {
    let mut t = [C_OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            C_DIGIT
        } else if c.is_ascii_uppercase() {
            C_UPPER
        } else if c.is_ascii_lowercase() {
            C_LOWER
        } else if c == b'@' {
            C_AT
        } else if c == b':' {
            C_COLON
        } else if c == b'+' {
            C_PLUS
        } else if c == b'(' {
            C_LPAREN
        } else {
            C_OTHER
        };
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_range_matches_the_table() {
        for b in 0..=255u8 {
            let x = u64::from(b) << 24 | 0x6161_6161_0061_6161; // surrounded by `a` and NUL
            let hit = between(x, 0x27, 0x2C) | between(x, 0x2F, 0x3B) | between(x, 0x3F, 0x5B) != 0;
            assert_eq!(
                hit,
                matches!(b, 0x28..=0x2B | 0x30..=0x3A | 0x40..=0x5A),
                "{b:#x}"
            );
            assert!(
                !INTERESTING[usize::from(b)] || hit,
                "{b:#x} must stop the skip"
            );
        }
    }

    /// A chunk the skip passes over must hold no interesting byte, whatever its neighbours.
    #[test]
    fn swar_never_skips_an_interesting_byte() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Bias towards the boundaries of the ranges.
            let bytes = state.to_le_bytes().map(|b| {
                if b & 1 == 0 {
                    b
                } else {
                    0x26 + (b >> 2) % 0x38
                }
            });
            let x = u64::from_le_bytes(bytes);
            let hit = between(x, 0x27, 0x2C) | between(x, 0x2F, 0x3B) | between(x, 0x3F, 0x5B) != 0;
            let any = bytes.iter().any(|&b| INTERESTING[usize::from(b)]);
            assert!(hit || !any, "{bytes:?}");
        }
    }
}

#[inline(always)]
fn interesting(b: u8) -> bool {
    INTERESTING.get(usize::from(b)).copied().unwrap_or(false)
}

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS.get(b as usize).copied().unwrap_or(C_OTHER)
}

/// Appends every built-in detection in `v` to `out` (unsorted, possibly overlapping).
pub(crate) fn scan(enabled: u16, keywords: &Keywords, v: &[u8], out: &mut Vec<Found>) {
    if enabled & (NUMERIC | IBAN | EMAIL | IPV6) != 0 {
        anchors(enabled, v, out);
    }
    if enabled & (AWS | PEM | JWT | SECRET) != 0 {
        keywords.scan(enabled, v, out);
    }
}

/// Bytes that can start an anchor; everything else (lower-case letters, spaces, most
/// punctuation, non-ASCII) is skipped by a tight search loop.
#[allow(clippy::indexing_slicing)]
const INTERESTING: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = CLASS[b] != C_OTHER && CLASS[b] != C_LOWER;
        b += 1;
    }
    t
};

fn anchors(enabled: u16, v: &[u8], out: &mut Vec<Found>) {
    let n = v.len();
    let mut i = 0;
    // One IPv6 check per maximal hex-and-colon token, however many colons it has.
    let mut v6_checked_until = 0;
    while i < n {
        i = skip_boring_words(v, i);
        match v
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| interesting(b)))
        {
            Some(off) => i += off,
            None => break,
        }
        let b = at(v, i);
        match class(b) {
            C_DIGIT => {
                if enabled & NUMERIC != 0 && !is_alnum(before(v, i)) {
                    if let Some(f) = numeric::at_digit(enabled, v, i) {
                        out.push(f);
                        i = f.end.max(i + 1);
                        continue;
                    }
                }
                i = skip_alnum(v, i + 1);
            }
            C_UPPER => {
                if enabled & IBAN != 0 && !is_alnum(before(v, i)) {
                    if let Some(f) = numeric::iban(v, i) {
                        out.push(f);
                        i = f.end.max(i + 1);
                        continue;
                    }
                }
                // Usually a capitalised word: its lower-case rest is skipped in bulk, and any
                // digit or capital inside it is not at a token start.
                i += 1;
            }
            C_AT => {
                if enabled & EMAIL != 0 {
                    if let Some(f) = email::at_sign(v, i) {
                        out.push(f);
                        i = f.end.max(i + 1);
                        continue;
                    }
                }
                i += 1;
            }
            C_COLON => {
                if enabled & IPV6 != 0 && i >= v6_checked_until {
                    let (found, token_end) = net::ipv6_around(v, i);
                    v6_checked_until = token_end;
                    if let Some(f) = found {
                        out.push(f);
                        i = f.end.max(i + 1);
                        continue;
                    }
                }
                i += 1;
            }
            C_PLUS => {
                if enabled & PHONE != 0 && !is_alnum(before(v, i)) {
                    if let Some(f) = numeric::e164(v, i) {
                        out.push(f);
                        i = f.end.max(i + 1);
                        continue;
                    }
                }
                i += 1;
            }
            C_LPAREN => {
                if enabled & PHONE != 0 {
                    if let Some(f) = numeric::paren_phone(v, i) {
                        out.push(f);
                        i = f.end.max(i + 1);
                        continue;
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
}

const LANES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes of `x` strictly between `m` and `n` (0 ≤ m < n ≤ 128) get their high bit set; bytes
/// at or above 0x80 never match. (The "hasbetween" bit trick.)
#[inline(always)]
const fn between(x: u64, m: u64, n: u64) -> u64 {
    let low = x & (LANES * 127);
    (LANES * (127 + n)).wrapping_sub(low) & !x & low.wrapping_add(LANES * (127 - m)) & HIGH
}

/// Skips 8-byte chunks holding no byte that can start an anchor (lower-case words, spaces,
/// most punctuation, non-ASCII text). A chunk with one falls through to the byte loop.
#[inline(always)]
fn skip_boring_words(v: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = v.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes);
        // `(` `)` `*` `+`, digits and `:`, `@` and capitals: a superset of INTERESTING.
        if between(x, 0x27, 0x2C) | between(x, 0x2F, 0x3B) | between(x, 0x3F, 0x5B) != 0 {
            break;
        }
        i += 8;
    }
    i
}

#[inline(always)]
fn skip_alnum(v: &[u8], mut i: usize) -> usize {
    while let Some(&b) = v.get(i) {
        if !b.is_ascii_alphanumeric() {
            break;
        }
        i += 1;
    }
    i
}

/// Sorts detections and fuses overlapping ones, so a partly matched value is masked whole.
/// A fused span keeps the entity of its longest part; its partial form falls back to
/// masking everything when the parts disagree.
pub(crate) fn merge(mut found: Vec<Found>) -> Vec<Found> {
    found.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut merged: Vec<Found> = Vec::with_capacity(found.len());
    for f in found {
        match merged.last_mut() {
            Some(last) if f.start < last.end => {
                if f.end > last.end {
                    if f.end - f.start > last.end - last.start {
                        last.entity = f.entity;
                    }
                    last.end = f.end;
                    last.shape = if last.shape == Shape::Tag || f.shape == Shape::Tag {
                        Shape::Tag
                    } else {
                        Shape::MaskAll
                    };
                }
            }
            _ => merged.push(f),
        }
    }
    merged
}
