//! Phone numbers: international (`+…`, `00…`), North American, and national formats.
//!
//! Three kinds of evidence make a run of digit groups a phone number, strongest first:
//!
//! - an international prefix (`+`, or `00` followed by a country code that exists);
//! - a national trunk `0` in a grouped number of plausible length (`06 12 34 56 78`,
//!   `030 901820`, `090-1234-5678`, `(02) 9876 5432`): most of Europe, Japan, Australia,
//!   India and others dial national numbers this way, and ids, dates and amounts rarely look
//!   like it;
//! - for the countries whose national numbers carry no trunk `0` (North America written with
//!   spaces, Spain, Italian and Indian mobiles, Brazil without parentheses), the region listed
//!   in [`crate::DetectorOptions::phone_regions`], or a word such as `phone`/`tel`/`mobile`
//!   shortly before. Without either, `612 34 56 78` could be a number in French thousands
//!   notation and `98765 43210` two counts, so it is left alone.
//!
//! Every form may carry an extension (`x962`, ` ext. 12`, ` extension 123`). A number followed
//! by further digits after a space (`+4930901820 (24/7)`) ends where the phone number can end,
//! instead of being rejected whole.

use crate::bytes::{at, before, is_alnum, is_digit, slice};
use crate::scan::Found;
use crate::Detector;

/// Regions with national formats that need a hint (see the module docs).
pub(crate) const NANP: u8 = 1;
pub(crate) const ES: u8 = 1 << 1;
pub(crate) const IT: u8 = 1 << 2;
pub(crate) const IN: u8 = 1 << 3;
pub(crate) const BR: u8 = 1 << 4;

/// ISO 3166-1 alpha-2 codes (and `XK`, Kosovo), so that a typo (`UK` for `GB`, `SP` for `ES`)
/// is refused at start-up instead of silently doing nothing.
const ISO_3166: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
    BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ \
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS \
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR \
    KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU \
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH \
    TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

/// The region bits `code` (ISO 3166 alpha-2, any case) turns on; `None` when it is not a
/// country code. Regions whose national numbers start with a trunk `0` need no hint and give 0.
pub(crate) fn region_bits(code: &str) -> Option<u8> {
    let upper = code.to_ascii_uppercase();
    if upper.len() != 2 || !ISO_3166.split_ascii_whitespace().any(|c| c == upper) {
        return None;
    }
    Some(match upper.as_str() {
        // The North American Numbering Plan: the US, Canada and the Caribbean members.
        "US" | "CA" | "PR" | "AG" | "AI" | "AS" | "BB" | "BM" | "BS" | "DM" | "DO" | "GD"
        | "GU" | "JM" | "KN" | "KY" | "LC" | "MP" | "MS" | "SX" | "TC" | "TT" | "VC" | "VG"
        | "VI" | "UM" => NANP,
        "ES" => ES,
        "IT" | "SM" | "VA" => IT,
        "IN" => IN,
        "BR" => BR,
        _ => 0,
    })
}

const MAX_GROUPS: usize = 8;
/// No national number has a group longer than this (`0151 23456789`: 8).
const MAX_GROUP: usize = 8;

/// Digit groups from `i`: `030 901820`, `06.12.34.56.78`, `030/901820`. Separators are a
/// single space, `-` or `.`, and `/` after the first group only.
struct Run {
    end: [usize; MAX_GROUPS],
    len: [u8; MAX_GROUPS],
    /// The separator after group k (0 after the last).
    sep: [u8; MAX_GROUPS],
    count: usize,
}

impl Run {
    fn parse(v: &[u8], i: usize) -> Option<Run> {
        let mut r = Run {
            end: [0; MAX_GROUPS],
            len: [0; MAX_GROUPS],
            sep: [0; MAX_GROUPS],
            count: 0,
        };
        let mut p = i;
        for k in 0..MAX_GROUPS {
            let s = p;
            while is_digit(at(v, p)) {
                p += 1;
                if p - s > 12 {
                    return None;
                }
            }
            put(&mut r.end, k, p);
            put(&mut r.len, k, (p - s) as u8);
            r.count = k + 1;
            let sep = at(v, p);
            let ok_sep = matches!(sep, b' ' | b'-' | b'.') || (sep == b'/' && k == 0);
            if ok_sep && is_digit(at(v, p + 1)) {
                if k + 1 == MAX_GROUPS {
                    // More groups than any phone number has.
                    return None;
                }
                put(&mut r.sep, k, sep);
                p += 1;
            } else {
                break;
            }
        }
        Some(r)
    }

    fn len(&self, k: usize) -> usize {
        usize::from(self.len.get(k).copied().unwrap_or(0))
    }

    fn sep(&self, k: usize) -> u8 {
        self.sep.get(k).copied().unwrap_or(0)
    }

    fn end(&self, k: usize) -> usize {
        self.end.get(k).copied().unwrap_or(0)
    }

    fn lens(&self) -> [usize; MAX_GROUPS] {
        let mut out = [0; MAX_GROUPS];
        for (o, l) in out.iter_mut().zip(self.len.iter()) {
            *o = usize::from(*l);
        }
        out
    }

    fn digits(&self, groups: usize) -> usize {
        (0..groups).map(|k| self.len(k)).sum()
    }
}

fn put<T: Copy>(a: &mut [T], k: usize, x: T) {
    if let Some(slot) = a.get_mut(k) {
        *slot = x;
    }
}

/// Words that announce a phone number within a few bytes before it.
const CONTEXT: &[&[u8]] = &[
    b"phone",
    b"tel",
    b"mobil",
    b"cell",
    b"fax",
    b"call",
    b"contact",
    b"whatsapp",
    b"handy",
    b"movil",
    b"m\xc3\xb3vil",
    b"t\xc3\xa9l",
    b"portable",
    b"celular",
    b"mob",
    b"ph:",
    b"ph.",
];
const CONTEXT_WINDOW: usize = 32;

fn context(v: &[u8], i: usize) -> bool {
    let window = slice(v, i.saturating_sub(CONTEXT_WINDOW), i);
    // One pass; only bytes that start a keyword look further.
    window.iter().enumerate().any(|(p, b)| {
        let c = b.to_ascii_lowercase();
        matches!(c, b'p' | b't' | b'm' | b'c' | b'f' | b'w' | b'h')
            && CONTEXT.iter().any(|w| {
                w.first() == Some(&c) && slice(window, p, p + w.len()).eq_ignore_ascii_case(w)
            })
    })
}

/// An extension after a number ending at `e` (`x962`, ` x962`, ` ext. 12`, `;ext=12`,
/// ` extension 123`): where it ends, or `e`.
fn extension(v: &[u8], e: usize) -> usize {
    let mut p = e;
    if matches!(at(v, p), b' ' | b',' | b';') {
        p += 1;
        if at(v, p) == b' ' {
            p += 1;
        }
    }
    let word = |p: usize, w: &[u8]| slice(v, p, p + w.len()).eq_ignore_ascii_case(w);
    if word(p, b"extension") {
        p += 9;
    } else if word(p, b"ext") {
        p += 3;
        if matches!(at(v, p), b'.' | b'=' | b':') {
            p += 1;
        }
    } else if matches!(at(v, p), b'x' | b'X' | b'#') {
        p += 1;
    } else {
        return e;
    }
    if at(v, p) == b' ' {
        p += 1;
    }
    let s = p;
    while is_digit(at(v, p)) && p - s < 6 {
        p += 1;
    }
    if p == s || is_alnum(at(v, p)) {
        return e;
    }
    p
}

/// Not followed by a letter or digit, nor by `-`, `.` or `/` and a digit.
fn right_ok(v: &[u8], e: usize) -> bool {
    let n = at(v, e);
    let glued = matches!(n, b'-' | b'.' | b'/') && is_digit(at(v, e + 1));
    !is_alnum(n) && !glued
}

/// The end of a phone number whose digits end at `e`: after its extension, if the boundary
/// there is clean.
pub(crate) fn finish(v: &[u8], e: usize) -> Option<usize> {
    let x = extension(v, e);
    if x > e && right_ok(v, x) {
        return Some(x);
    }
    right_ok(v, e).then_some(e)
}

/// Not glued to a preceding number or word by punctuation: dates, times, decimals
/// (`2024-01-15`, `10:30`), ids (`ORD-0355-198191`, `SKU_0612345678`).
fn left_ok(v: &[u8], i: usize) -> bool {
    let p = before(v, i);
    let glued = matches!(p, b'-' | b'.' | b'/' | b':' | b',' | b'_' | b'#')
        && is_alnum(before(v, i.saturating_sub(1)));
    !is_alnum(p) && p != b'_' && !glued
}

/// Country codes: one digit (1, 7), two digits (listed), or three digits whose first two are
/// not a two-digit code (zones 2, 3, 4, 5, 6, 8, 9 hold all of them). Returns its length.
fn country_code(d: &[u8]) -> Option<usize> {
    let digit = |k: usize| d.get(k).map(|b| b.wrapping_sub(b'0'));
    let (a, b) = (digit(0)?, digit(1)?);
    if a == 1 || a == 7 {
        return Some(1);
    }
    let two = a * 10 + b;
    const TWO: &[u8] = &[
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    if TWO.contains(&two) {
        return Some(2);
    }
    (a >= 2 && digit(2).is_some()).then_some(3)
}

/// `+` and an international number: country code and subscriber number, 8–15 digits, with
/// ` -.()` separators (up to two bytes: `) `), then an optional extension. When the digits run
/// on into something that is not a phone number (`+4930901820 (24/7)`, too many digits), the
/// number ends at the last group after which it could end.
pub(crate) fn e164(v: &[u8], plus: usize) -> Option<Found> {
    if !matches!(at(v, plus + 1), b'1'..=b'9') || is_digit(before(v, plus)) {
        return None;
    }
    let end = intl_body(v, plus + 1, false)?;
    // `(+33) 6 12 34 56 78`: the parenthesis belongs to the number.
    let start = if before(v, plus) == b'(' {
        plus - 1
    } else {
        plus
    };
    Some(Found::builtin(start, end, Detector::Phone))
}

/// `00` and an international number (`0033 6 12 34 56 78`, `0049301234567`,
/// `001-555-123-4567`), at a token start `i`.
fn intl00(v: &[u8], i: usize) -> Option<usize> {
    if !matches!(at(v, i + 2), b'1'..=b'9') {
        return None;
    }
    intl_body(v, i + 2, true)
}

/// The international number whose country code starts at `cc`; where it ends.
fn intl_body(v: &[u8], cc: usize, strict: bool) -> Option<usize> {
    const MAX_ENDS: usize = 12;
    // Group ends, the digit count up to each, and whether ` (` follows it.
    let mut ends = [(0usize, 0usize, false); MAX_ENDS];
    let mut n_ends = 0;
    let mut p = cc;
    let mut digits = 0;
    let mut grouped = false;
    loop {
        let s = p;
        while is_digit(at(v, p)) && digits + (p - s) <= 16 {
            p += 1;
        }
        digits += p - s;
        let mut q = p;
        while q < p + 2 && matches!(at(v, q), b' ' | b'-' | b'.' | b'(' | b')') {
            q += 1;
        }
        put(
            &mut ends,
            n_ends,
            (p, digits, q == p + 2 && at(v, p + 1) == b'('),
        );
        n_ends += 1;
        if digits > 15 || n_ends >= MAX_ENDS || q == p || !is_digit(at(v, q)) {
            break;
        }
        grouped = true;
        p = q;
    }
    let all = slice(v, cc, p);
    let mut ds = [0u8; 16];
    let mut n = 0;
    for &b in all.iter().filter(|b| b.is_ascii_digit()) {
        put(&mut ds, n, b);
        n += 1;
    }
    let ds = slice(&ds, 0, n);
    let cc_len = if strict { country_code(ds)? } else { 1 };
    // With `00`, a bare run of digits is also what a zero-padded id looks like: ask for more.
    let min = if strict && !grouped { 10 } else { 8 };
    for k in (0..n_ends).rev() {
        let (e, d, paren_after) = ends.get(k).copied().unwrap_or_default();
        if !(min..=15).contains(&d) {
            continue;
        }
        // North American numbers have exactly ten digits after the `1`.
        if strict && ds.first() == Some(&b'1') && cc_len == 1 && d != 11 {
            continue;
        }
        // Cutting a number short is only safe where what follows is plainly something else
        // (` (24/7)`); after a lone space more digits are more of the same number, or an
        // account or tracking number that merely starts like one.
        if k + 1 < n_ends && !paren_after {
            continue;
        }
        if let Some(end) = finish(v, e) {
            return Some(end);
        }
    }
    None
}

/// `(555) 123-4567` (North American), `(02) 9876 5432` / `(030) 901820` / `(0116) 496 0123`
/// (a trunk `0` inside the parentheses), `(11) 98765-4321` (Brazil).
pub(crate) fn paren(v: &[u8], open: usize) -> Option<Found> {
    let one = before(v, open) == b'1' && !is_alnum(before(v, open.saturating_sub(1)));
    if is_alnum(before(v, open)) && !one {
        return None;
    }
    let mut p = open + 1;
    while is_digit(at(v, p)) && p - open <= 6 {
        p += 1;
    }
    let inner = slice(v, open + 1, p);
    if !(2..=5).contains(&inner.len()) || at(v, p) != b')' {
        return None;
    }
    p += 1;
    if at(v, p) == b' ' {
        p += 1;
    }
    if !is_digit(at(v, p)) {
        return None;
    }
    let run = Run::parse(v, p)?;
    let first = inner.first().copied().unwrap_or(0);
    let second = inner.get(1).copied().unwrap_or(0);
    let k = run.count;
    let all = run.lens();
    let lens = all.get(..k).unwrap_or_default();
    // After the parenthesis: spaces, dashes or dots, one kind (`(03) 1234-5678`).
    let seps_ok = (0..k.saturating_sub(1))
        .all(|j| matches!(run.sep(j), b' ' | b'-' | b'.') && run.sep(j) == run.sep(0));
    let total = inner.len() + run.digits(k);
    let ok = match (inner.len(), first) {
        // North American: (NXX) NXX-XXXX.
        (3, b'2'..=b'9') => lens == [3, 4] || lens == [7],
        // A trunk `0`: the national rule.
        (_, b'0') => second != b'0' && (9..=12).contains(&total) && lens.iter().all(|&l| l >= 2),
        // Brazil: (AA) NNNN-NNNN or (AA) 9NNNN-NNNN.
        (2, b'1'..=b'9') => second != b'0' && matches!(lens, [4 | 5, 4]),
        _ => false,
    };
    if !ok || !seps_ok || lens.iter().any(|&l| l > MAX_GROUP) {
        return None;
    }
    // North American trunk `1` before the parenthesis: `1 (555) 123-4567`, `1(555)…`.
    let nanp = inner.len() == 3 && first != b'0';
    let spaced_one = open >= 2
        && matches!(at(v, open - 1), b' ' | b'-' | b'.')
        && at(v, open - 2) == b'1'
        && !is_alnum(before(v, open - 2));
    let start = if nanp && one {
        open - 1
    } else if nanp && spaced_one {
        open - 2
    } else {
        open
    };
    finish(v, run.end(k - 1)).map(|e| Found::builtin(start, e, Detector::Phone))
}

/// A national number at a token start `i`: `00`-international, trunk-`0` national, the
/// hinted regions' formats, or any plausible number after a phone word. `regions` holds the
/// region bits of [`region_bits`].
pub(crate) fn national(v: &[u8], i: usize, regions: u8) -> Option<Found> {
    // Not the tail of a longer run of numbers: `DE88 3704 0044 0532 …` (an IBAN that failed
    // its check), `4261 0582 9765 8748` (a card number that failed Luhn).
    if !left_ok(v, i) || (before(v, i) == b' ' && is_digit(before(v, i.saturating_sub(1)))) {
        return None;
    }
    let d0 = at(v, i);
    let d1 = at(v, i + 1);
    if d0 == b'0' && d1 == b'0' {
        return intl00(v, i).map(|e| Found::builtin(i, e, Detector::Phone));
    }
    // The whole run or nothing: a phone-shaped start of a longer run of groups is an account
    // or tracking number (`0123 4567 8901 2345`), not a phone number.
    let run = Run::parse(v, i)?;
    let k = run.count;
    // After the first separator (which may be `/` or differ: `030/90 18 20`), one kind.
    if (2..k.saturating_sub(1)).any(|j| run.sep(j) != run.sep(1)) {
        return None;
    }
    let all = run.lens();
    let lens = all.get(..k).unwrap_or_default();
    let digits = run.digits(k);
    if !(9..=12).contains(&digits) {
        return None;
    }
    let ok = if k == 1 {
        // A bare run of digits is an id until a phone word says otherwise.
        context(v, i)
    } else if lens.iter().any(|&l| !(2..=MAX_GROUP).contains(&l)) {
        false
    } else if d0 == b'0' {
        true
    } else {
        hinted(lens, digits, d0, at(v, run.end(0) + 1), regions) || context(v, i)
    };
    if !ok {
        return None;
    }
    finish(v, run.end(k - 1)).map(|e| Found::builtin(i, e, Detector::Phone))
}

/// The national formats without a trunk `0` of the hinted regions (`lens`: the digit groups,
/// `d0`: the first digit, `second`: the first digit of the second group).
fn hinted(lens: &[usize], digits: usize, d0: u8, second: u8, regions: u8) -> bool {
    let last = lens.last().copied().unwrap_or(0);
    (regions & NANP != 0
        && lens == [3, 3, 4]
        && matches!(d0, b'2'..=b'9')
        && matches!(second, b'2'..=b'9'))
        // Spain: 612 34 56 78, 612 345 678, 91 123 45 67 (groups of 2 or 3).
        || (regions & ES != 0
            && digits == 9
            && matches!(d0, b'6'..=b'9')
            && lens.iter().all(|&l| l <= 3))
        || (regions & IT != 0 && digits == 10 && d0 == b'3' && lens.first() == Some(&3))
        || (regions & IN != 0 && digits == 10 && matches!(d0, b'6'..=b'9') && last >= 4)
        || (regions & BR != 0
            && (10..=11).contains(&digits)
            && lens.first() == Some(&2)
            && last == 4)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nat(s: &str, regions: u8) -> Option<&str> {
        national(s.as_bytes(), 0, regions).map(|f| &s[f.start..f.end])
    }

    #[test]
    fn trunk_forms_and_cuts() {
        assert_eq!(nat("06 12 34 56 78", 0), Some("06 12 34 56 78"));
        assert_eq!(nat("030 901820", 0), Some("030 901820"));
        assert_eq!(nat("090-1234-5678", 0), Some("090-1234-5678"));
        assert_eq!(nat("030/901820", 0), Some("030/901820"));
        assert_eq!(nat("0044 20 7946 0958", 0), Some("0044 20 7946 0958"));
        assert_eq!(nat("06 12 34 56 78 2024", 0), None);
        assert_eq!(nat("0123 4567 8901 2345", 0), None);
        assert_eq!(nat("01.02.2024", 0), None);
        assert_eq!(nat("0-306-40615-2", 0), None);
        assert_eq!(nat("0012345678", 0), None);
        assert_eq!(nat("612 34 56 78", 0), None);
        assert_eq!(nat("612 34 56 78", ES), Some("612 34 56 78"));
    }

    #[test]
    fn extensions() {
        assert_eq!(finish(b"x962", 0), Some(4));
        assert_eq!(finish(b" ext. 12 ok", 0), Some(8));
        assert_eq!(finish(b" extra", 0), Some(0));
        assert_eq!(finish(b"x962b", 0), None);
    }

    #[test]
    fn region_codes() {
        assert_eq!(ISO_3166.split_ascii_whitespace().count(), 250);
        assert_eq!(region_bits("es"), Some(ES));
        assert_eq!(region_bits("CA"), Some(NANP));
        assert_eq!(region_bits("FR"), Some(0));
        assert_eq!(region_bits("UK"), None);
        assert_eq!(region_bits("USA"), None);
        assert_eq!(region_bits(""), None);
    }

    #[test]
    fn country_codes() {
        assert_eq!(country_code(b"33612"), Some(2));
        assert_eq!(country_code(b"1555"), Some(1));
        assert_eq!(country_code(b"35312"), Some(3));
        assert_eq!(country_code(b"42"), None);
    }
}
