//! Digit-shaped entities: payment cards, US SSNs, phone numbers, IPv4 addresses and IBANs.
//!
//! All start at a token boundary (the byte before is not a letter or digit) and must end at one.
//! A number glued to a longer numeric thing by `-`, `.` or `/` (a date, a decimal, a UUID
//! group, a version) is not a boundary, which is what keeps look-alikes out.

use crate::bytes::{at, before, contains_ignore_case, is_alnum, is_digit, slice};
use crate::scan::{Found, CARD, IPV4, PHONE, SSN};
use crate::{phone, Detector};

const MAX_GROUPS: usize = 8;
/// Longer digit runs are never one of our entities; parsing stops there.
const MAX_GROUP_LEN: usize = 20;

/// A run of digit groups joined by single separators: `4111 1111 1111 1111`, `555-123-4567`,
/// `192.168.0.1`.
struct Groups {
    start: [usize; MAX_GROUPS],
    len: [u8; MAX_GROUPS],
    /// The separator after each group (0 after the last).
    sep: [u8; MAX_GROUPS],
    count: usize,
}

impl Groups {
    fn parse(v: &[u8], i: usize) -> Groups {
        let mut g = Groups {
            start: [0; MAX_GROUPS],
            len: [0; MAX_GROUPS],
            sep: [0; MAX_GROUPS],
            count: 0,
        };
        let mut p = i;
        for k in 0..MAX_GROUPS {
            let s = p;
            while is_digit(at(v, p)) && p - s <= MAX_GROUP_LEN {
                p += 1;
            }
            set(&mut g.start, k, s);
            set(&mut g.len, k, (p - s) as u8);
            g.count = k + 1;
            let sep = at(v, p);
            if matches!(sep, b' ' | b'-' | b'.') && is_digit(at(v, p + 1)) && k + 1 < MAX_GROUPS {
                set(&mut g.sep, k, sep);
                p += 1;
            } else {
                break;
            }
        }
        g
    }

    fn len(&self, k: usize) -> usize {
        usize::from(self.len.get(k).copied().unwrap_or(0))
    }

    fn sep(&self, k: usize) -> u8 {
        self.sep.get(k).copied().unwrap_or(0)
    }

    fn end(&self, k: usize) -> usize {
        self.start.get(k).copied().unwrap_or(0) + self.len(k)
    }

    fn digits<'v>(&self, v: &'v [u8], k: usize) -> &'v [u8] {
        let s = self.start.get(k).copied().unwrap_or(0);
        slice(v, s, s + self.len(k))
    }

    /// The value of group `k` if it has at most 9 digits.
    fn value(&self, v: &[u8], k: usize) -> Option<u32> {
        let d = self.digits(v, k);
        if d.is_empty() || d.len() > 9 {
            return None;
        }
        Some(d.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')))
    }
}

fn set<T: Copy>(a: &mut [T], k: usize, x: T) {
    if let Some(slot) = a.get_mut(k) {
        *slot = x;
    }
}

/// Not glued to a preceding number by `-`, `.` or `/`.
fn left_ok(v: &[u8], i: usize) -> bool {
    let p = before(v, i);
    let glued = matches!(p, b'-' | b'.' | b'/') && is_digit(before(v, i.saturating_sub(1)));
    !is_alnum(p) && !glued
}

/// Not followed by a letter or digit, nor by one of `glue` and a digit.
fn right_ok(v: &[u8], e: usize, glue: &[u8]) -> bool {
    let n = at(v, e);
    let glued = glue.contains(&n) && is_digit(at(v, e + 1));
    !is_alnum(n) && !glued
}

const GLUE: &[u8] = b"-./";

/// All digit-started entities at a token start `i`.
pub(crate) fn at_digit(enabled: u16, regions: u8, v: &[u8], i: usize) -> Option<Found> {
    if !left_ok(v, i) {
        return None;
    }
    // Fast path for the common case, a lone number (an amount, an id, a year): only a bare card
    // or a bare SSN can be one group, so anything shorter than 9 digits is done.
    let mut run_end = i;
    while is_digit(at(v, run_end)) && run_end - i <= MAX_GROUP_LEN {
        run_end += 1;
    }
    // `/` only groups a phone number (`030/901820`); the card, SSN and IPv4 parsers stop there.
    let grouped =
        matches!(at(v, run_end), b' ' | b'-' | b'.' | b'/') && is_digit(at(v, run_end + 1));
    if !grouped && !(9..=19).contains(&(run_end - i)) {
        return None;
    }
    candidate(enabled, regions, v, i, run_end)
}

/// The precise checks, out of line: most calls of [`at_digit`] end in its fast path, which
/// then needs no room for the groups and the detectors' state.
#[inline(never)]
fn candidate(enabled: u16, regions: u8, v: &[u8], i: usize, run_end: usize) -> Option<Found> {
    let g = Groups::parse(v, i);
    if enabled & IPV4 != 0 {
        if let Some(e) = ipv4(v, &g) {
            return Some(Found::builtin(i, e, Detector::Ipv4));
        }
    }
    if enabled & SSN != 0 {
        if let Some(e) = ssn(v, &g, i) {
            return Some(Found::builtin(i, e, Detector::Ssn));
        }
    }
    if enabled & PHONE != 0 {
        if let Some(e) = nanp(v, &g) {
            return Some(Found::builtin(i, e, Detector::Phone));
        }
    }
    if enabled & CARD != 0 && before(v, i) != b'+' {
        if let Some(e) = card(v, &g) {
            return Some(Found::builtin(i, e, Detector::CreditCard));
        }
    }
    if enabled & PHONE != 0 && maybe_national_phone(v, &g, i, run_end) {
        return phone::national(v, i, regions);
    }
    None
}

/// A cheap look at the groups already parsed, so that most grouped numbers (timestamps,
/// decimals) never reach the phone parser: a national number has 9–12 digits and, after its
/// first separator, one kind of separator. `00…` and `0…/…` have their own shapes.
fn maybe_national_phone(v: &[u8], g: &Groups, i: usize, run_end: usize) -> bool {
    if at(v, run_end) == b'/' || (at(v, i) == b'0' && at(v, i + 1) == b'0') {
        return true;
    }
    let digits: usize = (0..g.count).map(|k| g.len(k)).sum();
    (9..=12).contains(&digits) && (2..g.count.saturating_sub(1)).all(|k| g.sep(k) == g.sep(1))
}

/// Four dotted decimal octets, 0–255, no leading zeros, and not a fifth component: `1.2.3.4.5`
/// is a version, not an address.
fn ipv4(v: &[u8], g: &Groups) -> Option<usize> {
    if g.count < 4 || (0..3).any(|k| g.sep(k) != b'.') || g.sep(3) == b'.' {
        return None;
    }
    for k in 0..4 {
        let d = g.digits(v, k);
        if d.is_empty() || d.len() > 3 || (d.len() > 1 && d.first() == Some(&b'0')) {
            return None;
        }
        if g.value(v, k)? > 255 {
            return None;
        }
    }
    let e = g.end(3);
    (right_ok(v, e, b".") && !after_version_word(v, g.start.first().copied().unwrap_or(0)))
        .then_some(e)
}

/// `version 1.2.3.4`, `firmware: 10.0.0.1`, `section 4.2.1.3`: a four-part version or
/// section number, not an address.
fn after_version_word(v: &[u8], i: usize) -> bool {
    let mut p = i;
    while p > 0 && matches!(before(v, p), b' ' | b':' | b'=' | b'\t') && i - p < 3 {
        p -= 1;
    }
    if p == i {
        return false;
    }
    [
        &b"version"[..],
        b"release",
        b"build",
        b"firmware",
        b"ver",
        b"section",
        b"chapter",
        b"clause",
    ]
    .iter()
    .any(|w| {
        p >= w.len()
            && slice(v, p - w.len(), p).eq_ignore_ascii_case(w)
            && !is_alnum(before(v, p - w.len()))
    })
}

/// `AAA-GG-SSSS` with dashes, `AAA GG SSSS` with spaces, or nine bare digits right after
/// `ssn`/`social security`. Issued ranges only: area not 000, 666 or 9xx; group not 00; serial
/// not 0000.
fn ssn(v: &[u8], g: &Groups, i: usize) -> Option<usize> {
    let s = g.sep(0);
    let grouped = g.count >= 3
        && matches!(s, b'-' | b' ')
        && g.sep(1) == s
        && (g.len(0), g.len(1), g.len(2)) == (3, 2, 4)
        // With spaces, not one part of a longer list of numbers: `7 419 14 2628`,
        // `419 14 2628 10`.
        && (s == b'-'
            || (g.sep(2) != b' ' && !(before(v, i) == b' ' && is_digit(before(v, i.saturating_sub(1))))));
    let (area, group, serial, end) = if grouped {
        (g.value(v, 0)?, g.value(v, 1)?, g.value(v, 2)?, g.end(2))
    } else if g.len(0) == 9 && g.sep(0) != b'-' && g.sep(0) != b'.' && ssn_context(v, i) {
        let all = g.value(v, 0)?;
        (all / 1_000_000, all / 10_000 % 100, all % 10_000, g.end(0))
    } else {
        return None;
    };
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    (valid && right_ok(v, end, GLUE)).then_some(end)
}

fn ssn_context(v: &[u8], i: usize) -> bool {
    let window = slice(v, i.saturating_sub(24), i);
    contains_ignore_case(window, b"ssn") || contains_ignore_case(window, b"social sec")
}

/// North American `555-123-4567` / `555.123.4567`, optionally `1-` first. Area code 2–9.
/// Space-separated `555 123 4567` is left out: lists of small numbers look the same.
fn nanp(v: &[u8], g: &Groups) -> Option<usize> {
    let off = usize::from(g.len(0) == 1 && g.digits(v, 0) == b"1" && g.count >= 4);
    let s = g.sep(off);
    if !matches!(s, b'-' | b'.') || g.sep(off + 1) != s || (off == 1 && g.sep(0) != s) {
        return None;
    }
    if (g.len(off), g.len(off + 1), g.len(off + 2)) != (3, 3, 4) {
        return None;
    }
    if !matches!(g.digits(v, off).first(), Some(b'2'..=b'9')) {
        return None;
    }
    // A fourth group joined by the same separator makes it some other number.
    if g.sep(off + 2) == s {
        return None;
    }
    phone::finish(v, g.end(off + 2))
}

/// 13–19 digits, Luhn-valid, with a known issuer prefix. Bare, or grouped by one kind of
/// separator (space or dash) in groups of 3–6 digits. With spaces, a trailing number is
/// tolerated (`4111 1111 1111 1111 2031`): the card is the longest valid prefix of groups.
fn card(v: &[u8], g: &Groups) -> Option<usize> {
    let sep = g.sep(0);
    // How many leading groups share the first separator.
    let mut joined = 1;
    if matches!(sep, b' ' | b'-') {
        while joined < g.count && g.sep(joined - 1) == sep {
            joined += 1;
        }
    }
    let mut buf = [0u8; 19];
    for last in (0..joined).rev() {
        let total: usize = (0..=last).map(|k| g.len(k)).sum();
        if !(13..=19).contains(&total) {
            continue;
        }
        if last > 0 && ((0..last).any(|k| !(3..=6).contains(&g.len(k))) || g.len(last) > 6) {
            continue;
        }
        let end = g.end(last);
        let boundary = if last + 1 == g.count {
            right_ok(v, end, GLUE)
        } else {
            // Followed by another group: only a space may separate a card from the next number.
            g.sep(last) == b' '
        };
        if !boundary {
            continue;
        }
        let mut n = 0;
        for k in 0..=last {
            for &d in g.digits(v, k) {
                set(&mut buf, n, d - b'0');
                n += 1;
            }
        }
        let digits = slice(&buf, 0, n);
        if luhn(digits) && known_issuer(digits) {
            return Some(end);
        }
    }
    None
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &d) in digits.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if k % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
    }
    // `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    let valid = sum % 10 == 0;
    valid
}

/// Issuer (IIN) prefixes of the major networks and their lengths.
fn known_issuer(d: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let len = d.len();
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    // Visa
    (p1 == 4 && matches!(len, 13 | 16 | 19))
        // Mastercard
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16)
        // American Express
        || ((p2 == 34 || p2 == 37) && len == 15)
        // Discover, UnionPay
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || p2 == 62)
            && (16..=19).contains(&len))
        || ((622126..=622925).contains(&p6) && (16..=19).contains(&len))
        // Diners Club
        || (((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
            && (14..=19).contains(&len))
        // JCB
        || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
        // Maestro
        || (matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763)
            && (13..=19).contains(&len))
        // Mir
        || ((2200..=2204).contains(&p4) && (16..=19).contains(&len))
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// An IBAN at `i`: country code, two check digits, the country's length, mod-97 == 1.
/// Compact (`DE89370400440532013000`) or printed in groups of four separated by single spaces,
/// in upper or lower case (`de89 3704 …`: some systems store them lower-cased).
pub(crate) fn iban(v: &[u8], i: usize) -> Option<Found> {
    let (c0, c1) = (
        at(v, i).to_ascii_uppercase(),
        at(v, i + 1).to_ascii_uppercase(),
    );
    if !c0.is_ascii_uppercase()
        || !c1.is_ascii_uppercase()
        || !is_digit(at(v, i + 2))
        || !is_digit(at(v, i + 3))
    {
        return None;
    }
    let want = IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| **cc == [c0, c1])
        .map(|(_, len)| *len)?;
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut p = i;
    while n < want {
        let b = at(v, p);
        if b.is_ascii_alphanumeric() {
            set(&mut chars, n, b.to_ascii_uppercase());
            n += 1;
            p += 1;
        } else if b == b' ' && n % 4 == 0 && n > 0 && is_alnum(at(v, p + 1)) {
            p += 1;
        } else {
            return None;
        }
    }
    if is_alnum(at(v, p)) {
        return None;
    }
    let chars = slice(&chars, 0, n);
    // Rearranged: BBAN, then country code and check digits; letters count as 10..35.
    let mut rem = 0u32;
    for &b in chars.iter().skip(4).chain(chars.iter().take(4)) {
        rem = if b.is_ascii_digit() {
            (rem * 10 + u32::from(b - b'0')) % 97
        } else {
            (rem * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    (rem == 1).then(|| Found::builtin(i, p, Detector::Iban))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("4111111111111111")));
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("4111111111111112")));
    }
}
