//! Email addresses, found from their `@`.

use crate::bytes::{at, before, slice};
use crate::scan::Found;
use crate::Detector;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

/// Bytes from 0x80 up count as letters: internationalised addresses (`josé@…`, RFC 6531)
/// must be masked whole, not from their last accent on.
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-') || b >= 0x80
}

/// Top-level "domains" that are really file extensions: `icon@2x.png` is an asset name.
const FILE_EXTENSIONS: &[&[u8]] = &[
    b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"ico", b"bmp", b"avif",
];

/// The address around the `@` at `at_pos`: a local part of `[A-Za-z0-9._%+-]` and inner
/// apostrophes (no leading or trailing dot), a domain of at least two labels with an alphabetic top-level label of two or
/// more letters (or `xn--` punycode). Non-ASCII bytes are taken as letters in both parts.
pub(crate) fn at_sign(v: &[u8], at_pos: usize) -> Option<Found> {
    let mut start = at_pos;
    while start > 0 && at_pos - start < MAX_LOCAL {
        let b = before(v, start);
        // An apostrophe belongs to the address only between two letters or digits
        // (`o'brien@…`); a quote before it (`'ada@…'`, `name='ada@…`) does not.
        let inner_quote = b == b'\''
            && start >= 2
            && start < at_pos
            && is_word(before(v, start - 1))
            && is_word(at(v, start));
        if !is_local(b) && !inner_quote {
            break;
        }
        start -= 1;
    }
    while at(v, start) == b'.' && start < at_pos {
        start += 1;
    }
    if start == at_pos || before(v, at_pos) == b'.' {
        return None;
    }
    let dom_start = at_pos + 1;
    let mut end = dom_start;
    while end - dom_start < MAX_DOMAIN && is_domain(at(v, end)) {
        end += 1;
    }
    // A sentence may end right after the address.
    while end > dom_start && matches!(before(v, end), b'.' | b'-') {
        end -= 1;
    }
    let domain = slice(v, dom_start, end);
    let mut labels = domain.split(|&b| b == b'.');
    let mut count = 0;
    let mut last: &[u8] = &[];
    for label in labels.by_ref() {
        if label.is_empty()
            || label.len() > 63
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return None;
        }
        count += 1;
        last = label;
    }
    // ASCII letters, punycode, or an internationalised top-level domain (`.рф`, `.中国`,
    // `.δοκιμή`): non-ASCII bytes only, at least two characters.
    let tld_ok = (last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic))
        || (last.len() > 4 && last.starts_with(b"xn--"))
        || (last.len() >= 4 && last.iter().all(|&b| b >= 0x80));
    if count < 2 || !tld_ok {
        return None;
    }
    if FILE_EXTENSIONS
        .iter()
        .any(|ext| last.eq_ignore_ascii_case(ext))
    {
        return None;
    }
    Some(Found::builtin(start, end, Detector::Email))
}
