//! The strategies' output forms.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::scan::Shape;
use crate::Detector;

/// Hex digits of the HMAC kept: 64 bits, plenty to tell values apart, short enough to read.
const HASH_HEX: usize = 16;

/// `credit-card numbers` → `CREDIT_CARD_NUMBERS`.
pub(crate) fn label_for(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn redact(out: &mut Vec<u8>, label: &str) {
    out.push(b'[');
    out.extend_from_slice(label.as_bytes());
    out.push(b']');
}

pub(crate) fn partial(out: &mut Vec<u8>, value: &[u8], shape: Shape, label: &str) {
    match shape {
        Shape::Tag => redact(out, label),
        Shape::Email => partial_email(out, value),
        Shape::KeepLast4 => mask_shape(out, value, keep_from(value)),
        Shape::MaskAll => mask_shape(out, value, usize::MAX),
    }
}

/// Where the visible tail starts: the last four letters-or-digits, only when they are all
/// digits and at least eight such characters precede them in total (a card, a phone, an
/// account number), so names and short values are never half shown.
fn keep_from(value: &[u8]) -> usize {
    let mut seen = 0;
    let mut from = usize::MAX;
    for (i, &b) in value.iter().enumerate().rev() {
        if b.is_ascii_alphanumeric() {
            if seen < 4 {
                if !b.is_ascii_digit() {
                    return usize::MAX;
                }
                from = i;
            }
            seen += 1;
        } else if b >= 0x80 && seen < 4 {
            return usize::MAX;
        }
    }
    if seen >= 8 {
        from
    } else {
        usize::MAX
    }
}

/// Letters and digits become `*` (one per character, also for non-ASCII ones) from the start
/// up to `keep_from`; ASCII punctuation and spaces stay, which is the "shape".
fn mask_shape(out: &mut Vec<u8>, value: &[u8], keep_from: usize) {
    for (i, &b) in value.iter().enumerate() {
        if i >= keep_from {
            out.push(b);
        } else if b.is_ascii_alphanumeric() || (0xC0..).contains(&b) {
            out.push(b'*');
        } else if b < 0x80 {
            out.push(b);
        }
        // UTF-8 continuation bytes (and stray invalid bytes 0x80..0xBF) are dropped: their
        // character was already written as one `*`.
    }
}

/// `john.doe@mail.example.com` → `j****@*****.com`: fixed-width stars so lengths do not show.
fn partial_email(out: &mut Vec<u8>, value: &[u8]) {
    let Some(at) = memchr::memrchr(b'@', value) else {
        mask_shape(out, value, usize::MAX);
        return;
    };
    match value.first() {
        Some(&c) if c.is_ascii_alphanumeric() && at > 0 => out.push(c),
        _ => out.push(b'*'),
    }
    out.extend_from_slice(b"****@*****");
    let domain = value.get(at + 1..).unwrap_or_default();
    if let Some(dot) = memchr::memrchr(b'.', domain) {
        let tld = domain.get(dot..).unwrap_or_default();
        if tld.iter().skip(1).all(u8::is_ascii_alphanumeric) {
            out.extend_from_slice(tld);
        }
    }
}

/// What is hashed, so that formatting does not change the digest: digits of cards, SSNs and
/// phones; upper-case letters and digits of IBANs; lower-cased emails.
fn normalise(detector: Option<Detector>, value: &[u8], buf: &mut Vec<u8>) {
    match detector {
        Some(Detector::CreditCard | Detector::Ssn | Detector::Phone) => {
            buf.extend(value.iter().filter(|b| b.is_ascii_digit()));
        }
        Some(Detector::Iban) => buf.extend(
            value
                .iter()
                .filter(|b| b.is_ascii_alphanumeric())
                .map(u8::to_ascii_uppercase),
        ),
        Some(Detector::Email | Detector::Ipv6) => {
            buf.extend(value.iter().map(u8::to_ascii_lowercase));
        }
        _ => buf.extend_from_slice(value),
    }
}

/// HMAC-SHA256 over the normalised value, as `HASH_HEX` lower-case hex digits.
pub(crate) fn hash(
    out: &mut Vec<u8>,
    key: Option<&Hmac<Sha256>>,
    d: Option<Detector>,
    value: &[u8],
) {
    let Some(key) = key else {
        // Unreachable by construction (a Hash masker always has a key); never emit the value.
        out.extend_from_slice(&[b'0'; HASH_HEX]);
        return;
    };
    let mut mac = key.clone();
    let mut buf = Vec::new();
    let normalised: &[u8] = if matches!(
        d,
        None | Some(
            Detector::Secret
                | Detector::Jwt
                | Detector::PrivateKey
                | Detector::AwsKey
                | Detector::Ipv4
        )
    ) {
        value
    } else {
        normalise(d, value, &mut buf);
        &buf
    };
    mac.update(normalised);
    let digest = mac.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in digest.iter().take(HASH_HEX / 2) {
        out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
        out.push(HEX.get(usize::from(b & 0xF)).copied().unwrap_or(b'0'));
    }
}
