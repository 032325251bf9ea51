//! Bounds-safe byte access: out-of-range reads yield 0, which every detector treats as a
//! boundary, so scanning code needs no explicit length checks.

#[inline(always)]
pub(crate) fn at(v: &[u8], i: usize) -> u8 {
    v.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline(always)]
pub(crate) fn before(v: &[u8], i: usize) -> u8 {
    i.checked_sub(1).map_or(0, |j| at(v, j))
}

/// `v[start..end]` with `end` clamped to the length; empty when `start` is past it.
#[inline(always)]
pub(crate) fn slice(v: &[u8], start: usize, end: usize) -> &[u8] {
    v.get(start..end.min(v.len())).unwrap_or_default()
}

#[inline(always)]
pub(crate) fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

#[inline(always)]
pub(crate) fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Index of the first byte at or after `i` that does not satisfy `pred`.
#[inline(always)]
pub(crate) fn skip_while(v: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while i < v.len() && pred(at(v, i)) {
        i += 1;
    }
    i
}

/// Whether `window` contains `needle`, ASCII case-insensitively (`needle` in lowercase).
pub(crate) fn contains_ignore_case(window: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || window
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
