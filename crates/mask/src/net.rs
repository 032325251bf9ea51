//! IPv6 addresses, found from a `:` inside a token of hex digits, colons and dots.

use std::net::Ipv6Addr;

use crate::bytes::{at, before, is_alnum, slice};
use crate::scan::Found;
use crate::Detector;

/// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`
const MAX_TOKEN: usize = 45;

fn is_v6(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// The address in the maximal hex/colon/dot token around `colon`, and where that token ends
/// (so the caller checks each token once). Parsing is `std`'s, so `12:34:56` (a time) or
/// `00:1a:2b:3c:4d:5e` (a MAC address) are rejected; `::` alone is not an address worth masking.
pub(crate) fn ipv6_around(v: &[u8], colon: usize) -> (Option<Found>, usize) {
    // `"key":"value"`, `key: value`: no hex digit or colon on either side.
    if !is_v6(before(v, colon)) && !is_v6(at(v, colon + 1)) {
        return (None, colon + 1);
    }
    let mut start = colon;
    while start > 0 && colon - start <= MAX_TOKEN && is_v6(before(v, start)) {
        start -= 1;
    }
    let mut end = colon;
    while end - start <= MAX_TOKEN && is_v6(at(v, end)) {
        end += 1;
    }
    if end - start > MAX_TOKEN || !right_ok(v, end) {
        return (None, end);
    }
    let token = slice(v, start, end);
    let colons = token.iter().filter(|&&b| b == b':').count();
    // Without `::` an address has exactly 7 colons (6 before an IPv4 tail): this rejects
    // times and MAC addresses before any parsing.
    let compressed = token.windows(2).any(|w| w == b"::");
    if colons < 2 || (!compressed && colons != 7 && colons != 6) {
        return (None, end);
    }
    if let Some(e) = parse_at(v, start, end) {
        return (Some(Found::builtin(start, e, Detector::Ipv6)), end);
    }
    // A token glued to a word (`key:fe80::1` starts at the `e`): retry after each single colon.
    if !is_alnum(before(v, start)) {
        return (None, end);
    }
    let mut s = start;
    while let Some(p) =
        (s..end).find(|&p| at(v, p) == b':' && at(v, p + 1) != b':' && before(v, p) != b':')
    {
        s = p + 1;
        if let Some(e) = parse_at(v, s, end) {
            return (Some(Found::builtin(s, e, Detector::Ipv6)), end);
        }
    }
    (None, end)
}

fn right_ok(v: &[u8], end: usize) -> bool {
    let n = at(v, end);
    !is_alnum(n) && n != b'_'
}

fn parse_at(v: &[u8], start: usize, end: usize) -> Option<usize> {
    let b = before(v, start);
    if is_alnum(b) || b == b'_' {
        return None;
    }
    // A trailing `.` or single `:` belongs to the sentence, not the address.
    let mut e = end;
    while e > start && before(v, e) == b'.' {
        e -= 1;
    }
    if before(v, e) == b':' && before(v, e.saturating_sub(1)) != b':' {
        e -= 1;
    }
    let token = slice(v, start, e);
    if token.iter().filter(|&&b| b == b':').count() < 2 {
        return None;
    }
    let addr: Ipv6Addr = std::str::from_utf8(token).ok()?.parse().ok()?;
    (!addr.is_unspecified()).then_some(e)
}
