//! The anchor pass: one walk over the bytes with a class table, handing the few interesting
//! positions to the precise detectors.

use crate::bytes::{at, before, is_alnum};
use crate::keyword::Keywords;
use crate::{email, net, numeric, phone, Detector};

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

#[inline(always)]
fn class(b: u8) -> u8 {
    CLASS.get(b as usize).copied().unwrap_or(C_OTHER)
}

/// Appends every built-in detection in `v` to `out` (unsorted, possibly overlapping).
/// `regions`: the phone region bits of [`phone::region_bits`].
pub(crate) fn scan(enabled: u16, regions: u8, keywords: &Keywords, v: &[u8], out: &mut Vec<Found>) {
    if enabled & (NUMERIC | IBAN | EMAIL | IPV6) != 0 {
        anchors(enabled, regions, v, out);
    }
    if enabled & (AWS | PEM | JWT | SECRET) != 0 {
        keywords.scan(enabled, v, out);
    }
}

/// Lanes 6 and 7 of a chunk, whose third byte lies in the next chunk.
const LAST_TWO_LANES: u64 = 0x8080 << 48;

fn anchors(enabled: u16, regions: u8, v: &[u8], out: &mut Vec<Found>) {
    let n = v.len();
    let mut i = 0;
    // One IPv6 check per maximal hex-and-colon token, however many colons it has.
    let mut v6_checked_until = 0;
    'chunks: while i < n {
        let x = load8(v, i);
        let digit = between(x, 0x2F, 0x3A);
        let upper = between(x, 0x40, 0x5B);
        let lower = between(x, 0x60, 0x7B);
        let alnum = digit | upper | lower;
        let prev_alnum = (alnum << 8) | if is_alnum(before(v, i)) { 0x80 } else { 0 };
        let mut token_start = 0;
        if enabled & NUMERIC != 0 {
            token_start |= digit;
        }
        if enabled & IBAN != 0 {
            // Two letters of either case, then check digits: only letters two bytes before
            // a digit are worth a look (the last two lanes cannot tell yet), which keeps
            // ordinary words out of the IBAN check.
            token_start |= (upper | lower) & ((digit >> 16) | LAST_TWO_LANES);
        }
        let mut special = 0;
        if enabled & EMAIL != 0 {
            special |= between(x, 0x3F, 0x41);
        }
        if enabled & IPV6 != 0 {
            special |= between(x, 0x39, 0x3B);
        }
        if enabled & PHONE != 0 {
            special |= between(x, 0x2A, 0x2C) | between(x, 0x27, 0x29);
        }
        let mut hits = (token_start & !prev_alnum) | special;
        while hits != 0 {
            let p = i + (hits.trailing_zeros() / 8) as usize;
            hits &= hits - 1;
            if p >= n {
                break;
            }
            let found = match class(at(v, p)) {
                C_DIGIT => numeric::at_digit(enabled, regions, v, p),
                C_UPPER | C_LOWER => numeric::iban(v, p),
                C_AT => email::at_sign(v, p),
                C_COLON if p >= v6_checked_until => {
                    let (found, token_end) = net::ipv6_around(v, p);
                    v6_checked_until = token_end;
                    found
                }
                C_PLUS if !is_alnum(before(v, p)) => phone::e164(v, p),
                C_LPAREN => phone::paren(v, p),
                _ => None,
            };
            if let Some(f) = found {
                out.push(f);
                i = f.end.max(p + 1);
                continue 'chunks;
            }
        }
        i += 8;
    }
}

/// Eight bytes from `i`, zero-padded past the end (zero is no anchor and not alphanumeric).
#[inline(always)]
fn load8(v: &[u8], i: usize) -> u64 {
    let mut bytes = [0u8; 8];
    match v.get(i..i + 8) {
        Some(chunk) => bytes.copy_from_slice(chunk),
        None => {
            let rest = v.get(i..).unwrap_or_default();
            for (b, r) in bytes.iter_mut().zip(rest) {
                *b = *r;
            }
        }
    }
    u64::from_le_bytes(bytes)
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

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The SWAR range test must flag exactly the bytes in range, whatever their neighbours:
    /// a byte it misses is an anchor never looked at.
    #[test]
    fn swar_ranges_are_exact_per_byte() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..100_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = state.to_le_bytes();
            // Every byte value appears at every position, next to random neighbours.
            bytes[(round % 8) as usize] = (round / 8 % 256) as u8;
            let x = u64::from_le_bytes(bytes);
            for (m, n) in [
                (0x2F, 0x3A),
                (0x40, 0x5B),
                (0x60, 0x7B),
                (0x3F, 0x41),
                (0x39, 0x3B),
                (0x2A, 0x2C),
                (0x27, 0x29),
            ] {
                let flags = between(x, m, n);
                for (k, &b) in bytes.iter().enumerate() {
                    let flagged = flags >> (8 * k + 7) & 1 == 1;
                    let want = u64::from(b) > m && u64::from(b) < n;
                    assert_eq!(flagged, want, "byte {b:#x} at {k}, range ({m:#x}, {n:#x})");
                }
            }
        }
    }

    #[test]
    fn anchors_across_chunk_boundaries_and_tails() {
        let mut out = Vec::new();
        // Entities straddling 8-byte chunk edges and ending in a short tail.
        let v = b"1234567 ada@example.com x4111111111111111 4111111111111111";
        anchors(EMAIL | CARD, 0, v, &mut out);
        let got: Vec<&[u8]> = out.iter().map(|f| &v[f.start..f.end]).collect();
        assert_eq!(got, vec![&b"ada@example.com"[..], &b"4111111111111111"[..]]);
        assert_eq!(out[1].start, v.len() - 16);
    }
}
