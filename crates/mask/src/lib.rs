//! The masking engine: finds sensitive values inside result data and rewrites them before the
//! bytes leave the gateway. Pure (no I/O), compiled once per policy set, shared across sessions.
//!
//! # Use
//!
//! ```
//! use airlock_mask::{Detector, MaskCounts, MaskSpec, Masked, Masker, Strategy};
//!
//! let masker = Masker::new(MaskSpec {
//!     detectors: Detector::ALL.to_vec(),
//!     strategy: Strategy::Redact,
//!     ..MaskSpec::default()
//! })
//! .unwrap();
//! let mut counts = MaskCounts::default();
//! let out = masker.mask_text(b"{\"email\":\"ada@example.com\"}", &mut counts);
//! assert_eq!(out.bytes(), Some(&b"{\"email\":\"[EMAIL]\"}"[..]));
//! assert_eq!(counts.get("email"), 1);
//! ```
//!
//! # How detection stays fast
//!
//! Regexes are never run over every value for the built-in detectors. One pass classifies the
//! bytes eight at a time (SWAR range tests, no unsafe) and only looks closer at a few anchors: the start of a token that
//! begins with a digit (cards, SSNs, phones, IPv4), a letter two bytes before a digit (IBAN, either
//! case), `@` (email), `+` and `(` (phones), `:` inside a hex-and-colon token (IPv6). A second pass,
//! an Aho-Corasick automaton with a SIMD prefilter, finds the literal triggers: `AKIA`/`ASIA`,
//! `-----BEGIN `, `eyJ`, GitHub token prefixes and the secret keywords. Precise checks (Luhn and
//! issuer prefixes, mod-97, SSN ranges, phone country codes and national shapes, JWT header
//! decoding, Shannon entropy) run only around those anchors.
//! Custom regexes are the exception: they run over every value, at the regex engine's speed.
//!
//! A value with nothing to mask returns [`Masked::Unchanged`] without allocating.
//!
//! Throughput (all detectors, the corpus in `benches/common/corpus.rs`): see the masking rows of
//! `docs/benchmarks.md`. `cargo bench -p airlock-mask -- --quick` (wall clock) or, on a busy
//! machine, `cargo run --release -p airlock-mask --example throughput` (CPU time). Recall and
//! false positives on a labelled corpus: `cargo test -p airlock-mask --test recall -- --nocapture`.
//!
//! # Choices worth knowing
//!
//! - SSN: `AAA-GG-SSSS` with dashes or single spaces (not inside a longer list of numbers);
//!   nine bare digits only within 24 bytes after `ssn` / `social sec` (bare nine-digit numbers
//!   are usually ids).
//! - Phone: `+` and `00` international forms (8–15 digits, `00` needs a real country code),
//!   national numbers with a trunk `0` in groups (`06 12 34 56 78`, `030 901820`,
//!   `090-1234-5678`, `(02) 9876 5432`), North American `(555) 123-4567`, `555-123-4567`,
//!   `555.123.4567`, Brazilian `(11) 98765-4321`, each with an optional extension (`x962`,
//!   ` ext. 12`). National formats without a trunk `0` (`612 34 56 78`, `98765 43210`,
//!   `555 234 5678`) need their region in [`DetectorOptions::phone_regions`] or a phone word
//!   (`tel`, `phone`, `mobile`, …) just before; so do bare runs of digits. A run of digit groups
//!   that only starts like a phone number (`0123 4567 8901 2345`) is not one.
//! - IPv4 `1.2.3.4` cannot be told from a four-part version; `v1.2.3.4`, `version 1.2.3.4`,
//!   `section 4.2.1.3` and five-part versions are excluded. IPv6 `a::b` is a valid address and is
//!   masked.
//! - Secrets: the value after `password`/`secret`/`token`/`api_key`/`access_key`
//!   (`:`/`=`), `Bearer`, or `Authorization: <scheme>`; masked when ≥ 8 bytes, not a plain
//!   lower-case word, and Shannon entropy ≥ `min(3.0, 0.85·log2(len))` bits per byte.
//!   GitHub tokens (`ghp_…`, `github_pat_…`) are found without a key name. Passphrases with
//!   spaces are not caught.
//! - IBAN in upper or lower case; emails ASCII-shaped with non-ASCII bytes taken as letters
//!   (internationalised local parts and domains, `.рф`), apostrophes inside the local part.
//!
//! # Fail closed
//!
//! A value longer than [`MaskSpec::max_value_bytes`] is not scanned: [`Masked::Withheld`].
//! When detections overlap, their union is masked. Invalid UTF-8 is treated as opaque bytes;
//! ASCII-shaped entities inside it are still found.

mod bytes;
mod email;
mod keyword;
mod net;
mod numeric;
mod phone;
mod render;
mod scan;

use std::borrow::Cow;

use hmac::{Hmac, KeyInit};
use sha2::Sha256;

use crate::scan::{Entity, Found, Shape};

/// Default for [`MaskSpec::max_value_bytes`].
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Shortest HMAC key accepted for [`Strategy::Hash`].
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// What an adapter may send in place of a [`Masked::Withheld`] value when it cannot send an
/// error instead.
pub const WITHHELD_PLACEHOLDER: &[u8] = b"[WITHHELD]";

/// A built-in content detector. Names mirror the config's `detectors = [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Email,
    CreditCard,
    Iban,
    Ssn,
    Phone,
    Ipv4,
    Ipv6,
    AwsKey,
    PrivateKey,
    Jwt,
    Secret,
}

impl Detector {
    pub const ALL: [Detector; 11] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::Ssn,
        Detector::Phone,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::AwsKey,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::Secret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::AwsKey => "aws_key",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::Secret => "secret",
        }
    }

    pub fn parse(s: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The label used by `redact` (`[EMAIL]`) and `hash` (`[EMAIL:…]`).
    pub fn label(self) -> &'static str {
        match self {
            Detector::Email => "EMAIL",
            Detector::CreditCard => "CARD",
            Detector::Iban => "IBAN",
            Detector::Ssn => "SSN",
            Detector::Phone => "PHONE",
            Detector::Ipv4 => "IPV4",
            Detector::Ipv6 => "IPV6",
            Detector::AwsKey => "AWS_KEY",
            Detector::PrivateKey => "PRIVATE_KEY",
            Detector::Jwt => "JWT",
            Detector::Secret => "SECRET",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn bit(self) -> u16 {
        1 << self.index()
    }
}

/// How a detected value is rewritten. Names mirror the config's `strategy = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `[EMAIL]`, `[CARD]`, … per entity.
    #[default]
    Redact,
    /// Keeps the shape: `****-****-****-9012`, `j****@*****.com`. Secrets, JWTs and private keys
    /// have no safe partial form and are redacted.
    Partial,
    /// Keyed HMAC-SHA256, 16 hex digits: the same input always gives the same output, so masked
    /// values can still be grouped and correlated.
    Hash,
    /// The whole value becomes SQL NULL ([`Masked::Null`]).
    Null,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Redact,
        Strategy::Partial,
        Strategy::Hash,
        Strategy::Null,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Redact => "redact",
            Strategy::Partial => "partial",
            Strategy::Hash => "hash",
            Strategy::Null => "null",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A user-defined detector: every match of `regex` is masked and counted under `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomPattern {
    pub name: String,
    pub regex: String,
}

/// Everything a [`Masker`] is compiled from.
#[derive(Debug, Clone)]
pub struct MaskSpec {
    pub detectors: Vec<Detector>,
    pub custom: Vec<CustomPattern>,
    pub strategy: Strategy,
    /// HMAC key for [`Strategy::Hash`]; at least [`MIN_HASH_KEY_BYTES`]. Ignored otherwise.
    pub hash_key: Vec<u8>,
    /// Larger values are withheld by [`Masker::mask_text`] instead of scanned.
    pub max_value_bytes: usize,
}

impl Default for MaskSpec {
    fn default() -> Self {
        MaskSpec {
            detectors: Vec::new(),
            custom: Vec::new(),
            strategy: Strategy::Redact,
            hash_key: Vec::new(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Options of the built-in detectors beyond which ones run. Kept out of [`MaskSpec`] so that
/// code building a `MaskSpec` literal keeps compiling as options are added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectorOptions {
    /// ISO 3166 alpha-2 codes (`"US"`, `"ES"`, …) of the countries whose national phone
    /// formats appear in the data. Numbers with an international prefix (`+`, `00`), a trunk
    /// `0` (`06 12 34 56 78`, `030 901820`), North American dashes, dots or parentheses, and
    /// Brazilian `(11) 98765-4321` are found without it. It adds the national formats that
    /// look like ordinary numbers without a hint: `US`/`CA` (and the other NANP members)
    /// `555 123 4567`; `ES` `612 34 56 78`; `IT` `333 123 4567`; `IN` `98765 43210`; `BR`
    /// `11 98765-4321`. Other valid codes are accepted and change nothing.
    pub phone_regions: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("custom detector {name:?}: invalid regex: {source}")]
    InvalidRegex {
        name: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("custom detector name {0:?} is empty or clashes with a built-in detector")]
    BadCustomName(String),
    #[error("duplicate custom detector name {0:?}")]
    DuplicateCustomName(String),
    #[error("the hash strategy needs a key of at least {MIN_HASH_KEY_BYTES} bytes")]
    HashKeyTooShort,
    #[error("max_value_bytes must be greater than zero")]
    ZeroMaxValueBytes,
    #[error("phone region {0:?} is not an ISO 3166 alpha-2 country code")]
    BadPhoneRegion(String),
    #[error("building the keyword automaton failed: {0}")]
    Internal(String),
}

/// The result of masking one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Masked<'a> {
    /// Nothing to mask: the input itself.
    Unchanged(&'a [u8]),
    /// The value to send instead (borrowed when it is a fixed label, e.g. column `redact`).
    Replaced(Cow<'a, [u8]>),
    /// Send SQL NULL instead of the value ([`Strategy::Null`]).
    Null,
    /// The value could not be inspected (too large): send an error or [`WITHHELD_PLACEHOLDER`],
    /// never the value.
    Withheld,
}

impl Masked<'_> {
    /// The bytes to send: `None` for SQL NULL, the placeholder for a withheld value.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Masked::Unchanged(v) => Some(v),
            Masked::Replaced(v) => Some(v),
            Masked::Null => None,
            Masked::Withheld => Some(WITHHELD_PLACEHOLDER),
        }
    }

    pub fn is_unchanged(&self) -> bool {
        matches!(self, Masked::Unchanged(_))
    }
}

/// How many values were masked per entity (`email`, `credit_card`, a custom or column entity
/// name), for the audit trail and the access review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskCounts {
    builtin: [u64; 11],
    named: Vec<(Box<str>, u64)>,
    withheld: u64,
}

impl MaskCounts {
    /// Masked occurrences of `entity` (a detector name, custom name or column entity).
    pub fn get(&self, entity: &str) -> u64 {
        match Detector::parse(entity) {
            Some(d) => self.builtin.get(d.index()).copied().unwrap_or(0),
            None => self
                .named
                .iter()
                .find(|(n, _)| &**n == entity)
                .map_or(0, |(_, c)| *c),
        }
    }

    /// Values withheld because they could not be inspected.
    pub fn withheld(&self) -> u64 {
        self.withheld
    }

    /// All masked occurrences (withheld values not included).
    pub fn total(&self) -> u64 {
        self.builtin.iter().sum::<u64>() + self.named.iter().map(|(_, c)| c).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0 && self.withheld == 0
    }

    /// Non-zero counts, built-in entities first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        Detector::ALL
            .iter()
            .zip(self.builtin.iter())
            .filter(|(_, c)| **c > 0)
            .map(|(d, c)| (d.as_str(), *c))
            .chain(
                self.named
                    .iter()
                    .filter(|(_, c)| *c > 0)
                    .map(|(n, c)| (&**n, *c)),
            )
    }

    pub fn merge(&mut self, other: &MaskCounts) {
        for (mine, theirs) in self.builtin.iter_mut().zip(other.builtin.iter()) {
            *mine += theirs;
        }
        for (name, c) in &other.named {
            self.add_named(name, *c);
        }
        self.withheld += other.withheld;
    }

    pub fn clear(&mut self) {
        *self = MaskCounts::default();
    }

    fn add_builtin(&mut self, d: Detector) {
        if let Some(c) = self.builtin.get_mut(d.index()) {
            *c += 1;
        }
    }

    fn add_named(&mut self, name: &str, n: u64) {
        match self.named.iter_mut().find(|(have, _)| &**have == name) {
            Some((_, c)) => *c += n,
            None => self.named.push((name.into(), n)),
        }
    }
}

/// One detected entity: `value[start..end]` is a `entity` (detector or custom name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub start: usize,
    pub end: usize,
    pub entity: String,
}

/// A column covered by a column rule, resolved once (e.g. per result set) so that masking each
/// of its values is a copy of a prepared label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnEntity {
    name: String,
    builtin: Option<Detector>,
    redacted: Vec<u8>,
}

impl ColumnEntity {
    /// `entity` names what the column holds: a detector name (`email`, `credit_card`, …, which
    /// picks that entity's partial form and hash normalisation) or any other name (`name`).
    pub fn new(entity: &str) -> ColumnEntity {
        let builtin = Detector::parse(entity);
        let label = match builtin {
            Some(d) => d.label().to_owned(),
            None => render::label_for(entity),
        };
        ColumnEntity {
            name: entity.to_owned(),
            builtin,
            redacted: format!("[{label}]").into_bytes(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The column's redaction label (`[CARD]`), whatever the policy's strategy: for values
    /// computed from a masked column, where a partial or hashed form would leak the source.
    pub fn redacted(&self) -> &[u8] {
        &self.redacted
    }
}

struct Custom {
    name: String,
    label: String,
    regex: regex::bytes::Regex,
}

/// A compiled masking policy. `Send + Sync`: build once, share across sessions.
pub struct Masker {
    enabled: u16,
    /// Phone region bits (`phone::region_bits`).
    regions: u8,
    strategy: Strategy,
    max_value_bytes: usize,
    keywords: keyword::Keywords,
    custom: Vec<Custom>,
    hmac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("detectors", &self.detectors())
            .field(
                "custom",
                &self.custom.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .field("strategy", &self.strategy)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

/// Compiled custom regexes are capped so a config cannot make the gateway build huge automata.
const CUSTOM_REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Masker {
    pub fn new(spec: MaskSpec) -> Result<Masker, MaskError> {
        Masker::with_options(spec, DetectorOptions::default())
    }

    /// [`Masker::new`] with detector options (phone regions).
    pub fn with_options(spec: MaskSpec, options: DetectorOptions) -> Result<Masker, MaskError> {
        let mut regions = 0u8;
        for r in &options.phone_regions {
            regions |= phone::region_bits(r).ok_or_else(|| MaskError::BadPhoneRegion(r.clone()))?;
        }
        if spec.max_value_bytes == 0 {
            return Err(MaskError::ZeroMaxValueBytes);
        }
        let hmac = match spec.strategy {
            Strategy::Hash => {
                if spec.hash_key.len() < MIN_HASH_KEY_BYTES {
                    return Err(MaskError::HashKeyTooShort);
                }
                Some(
                    Hmac::<Sha256>::new_from_slice(&spec.hash_key)
                        .map_err(|_| MaskError::HashKeyTooShort)?,
                )
            }
            _ => None,
        };
        let mut custom: Vec<Custom> = Vec::with_capacity(spec.custom.len());
        for c in spec.custom {
            if c.name.is_empty() || Detector::parse(&c.name).is_some() {
                return Err(MaskError::BadCustomName(c.name));
            }
            if custom.iter().any(|have| have.name == c.name) {
                return Err(MaskError::DuplicateCustomName(c.name));
            }
            let regex = regex::bytes::RegexBuilder::new(&c.regex)
                .size_limit(CUSTOM_REGEX_SIZE_LIMIT)
                .dfa_size_limit(CUSTOM_REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| MaskError::InvalidRegex {
                    name: c.name.clone(),
                    source: Box::new(e),
                })?;
            custom.push(Custom {
                label: render::label_for(&c.name),
                name: c.name,
                regex,
            });
        }
        let enabled = spec.detectors.iter().fold(0u16, |acc, d| acc | d.bit());
        Ok(Masker {
            enabled,
            regions,
            strategy: spec.strategy,
            max_value_bytes: spec.max_value_bytes,
            keywords: keyword::Keywords::new().map_err(|e| MaskError::Internal(e.to_string()))?,
            custom,
            hmac,
        })
    }

    pub fn detectors(&self) -> Vec<Detector> {
        Detector::ALL
            .into_iter()
            .filter(|d| self.enabled & d.bit() != 0)
            .collect()
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Where the detectors fire in `value` (merged, in order), without masking anything: for
    /// dry runs (`airlock policy test`) and explanations. Ignores `max_value_bytes`.
    pub fn detections(&self, value: &[u8]) -> Vec<Detection> {
        self.find(value)
            .into_iter()
            .map(|f| Detection {
                start: f.start,
                end: f.end,
                entity: match f.entity {
                    Entity::Builtin(d) => d.as_str().to_owned(),
                    Entity::Custom(i) => self
                        .custom
                        .get(i)
                        .map_or_else(String::new, |c| c.name.clone()),
                },
            })
            .collect()
    }

    /// Merged detections; allocates nothing when there are none.
    fn find(&self, value: &[u8]) -> Vec<Found> {
        let mut found: Vec<Found> = Vec::new();
        scan::scan(
            self.enabled,
            self.regions,
            &self.keywords,
            value,
            &mut found,
        );
        for (idx, c) in self.custom.iter().enumerate() {
            let entity = Entity::Custom(idx);
            for m in c.regex.find_iter(value) {
                if !m.is_empty() {
                    found.push(Found {
                        start: m.start(),
                        end: m.end(),
                        entity,
                        shape: Shape::KeepLast4,
                    });
                }
            }
        }
        if found.len() > 1 {
            found = scan::merge(found);
        }
        found
    }

    /// Content masking of one value (a text-format column value, JSON, or any text): every
    /// detected entity is rewritten by the strategy, the rest is copied as is. With
    /// [`Strategy::Null`] any detection turns the whole value into NULL.
    pub fn mask_text<'a>(&self, value: &'a [u8], counts: &mut MaskCounts) -> Masked<'a> {
        if value.len() > self.max_value_bytes {
            counts.withheld += 1;
            return Masked::Withheld;
        }
        let spans = self.find(value);
        if spans.is_empty() {
            return Masked::Unchanged(value);
        }
        for f in &spans {
            match f.entity {
                Entity::Builtin(d) => counts.add_builtin(d),
                Entity::Custom(i) => {
                    if let Some(c) = self.custom.get(i) {
                        counts.add_named(&c.name, 1);
                    }
                }
            }
        }
        if self.strategy == Strategy::Null {
            return Masked::Null;
        }
        let mut out = Vec::with_capacity(value.len() + 16 * spans.len());
        let mut pos = 0;
        for f in &spans {
            out.extend_from_slice(value.get(pos..f.start).unwrap_or_default());
            let matched = value.get(f.start..f.end).unwrap_or_default();
            let label = match f.entity {
                Entity::Builtin(d) => d.label(),
                Entity::Custom(i) => self.custom.get(i).map_or("CUSTOM", |c| &c.label),
            };
            let detector = match f.entity {
                Entity::Builtin(d) => Some(d),
                Entity::Custom(_) => None,
            };
            match self.strategy {
                Strategy::Redact | Strategy::Null => render::redact(&mut out, label),
                Strategy::Partial => render::partial(&mut out, matched, f.shape, label),
                Strategy::Hash => {
                    out.push(b'[');
                    out.extend_from_slice(label.as_bytes());
                    out.push(b':');
                    render::hash(&mut out, self.hmac.as_ref(), detector, matched);
                    out.push(b']');
                }
            }
            pos = f.end;
        }
        out.extend_from_slice(value.get(pos..).unwrap_or_default());
        Masked::Replaced(Cow::Owned(out))
    }

    /// Masking of a whole value because its column is covered by a column rule. Nothing is
    /// inspected, so no size limit applies; `redact` borrows the column's prepared label.
    /// `hash` renders bare hex (the same digits a content match of the same value shows inside
    /// `[LABEL:…]`), so masked columns can still be grouped and joined client-side.
    pub fn mask_column<'a>(
        &self,
        value: &'a [u8],
        column: &'a ColumnEntity,
        counts: &mut MaskCounts,
    ) -> Masked<'a> {
        match column.builtin {
            Some(d) => counts.add_builtin(d),
            None => counts.add_named(&column.name, 1),
        }
        match self.strategy {
            Strategy::Null => Masked::Null,
            Strategy::Redact => Masked::Replaced(Cow::Borrowed(&column.redacted)),
            Strategy::Partial => {
                let shape = match column.builtin {
                    Some(Detector::Email) if memchr::memchr(b'@', value).is_some() => Shape::Email,
                    Some(d) => scan::shape_of(d),
                    None => Shape::KeepLast4,
                };
                let label = column.builtin.map_or("CUSTOM", Detector::label);
                let mut out = Vec::with_capacity(value.len());
                if shape == Shape::Tag {
                    out.extend_from_slice(&column.redacted);
                } else {
                    render::partial(&mut out, value, shape, label);
                }
                Masked::Replaced(Cow::Owned(out))
            }
            Strategy::Hash => {
                let mut out = Vec::with_capacity(16);
                render::hash(&mut out, self.hmac.as_ref(), column.builtin, value);
                Masked::Replaced(Cow::Owned(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Masker>();
    }
}
