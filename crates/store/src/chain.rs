//! The chain format shared by the writer, the verifier and the indexer.
//!
//! One line per event: `{"seq":N,"prev":"<hex>","hash":"<hex>","event":{...}}\n` where
//! `hash = sha256(seq as decimal ‖ "\n" ‖ prev ‖ "\n" ‖ exact event JSON bytes)`. Hashing the
//! exact bytes (not a re-serialization) keeps verification independent of serde versions.

use crate::StoreError;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::path::Path;

/// `prev` of the first event.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn chain_hash(seq: u64, prev: &str, event_json: &[u8]) -> String {
    hex::encode(chain_digest(seq, prev, event_json))
}

/// [`chain_hash`] as 64 ASCII hex digits on the stack (no allocation: one per appended event).
pub(crate) fn chain_hex(seq: u64, prev: &str, event_json: &[u8]) -> [u8; 64] {
    let mut hex = [0u8; 64];
    // 32 bytes always fit in 64 hex digits.
    let _ = hex::encode_to_slice(chain_digest(seq, prev, event_json), &mut hex);
    hex
}

/// `seq` as decimal ASCII digits, in a stack buffer; returns the buffer and where they start.
fn decimal(seq: u64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = seq;
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            // `n % 10` is a single decimal digit.
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (digits, start)
}

/// The raw 32 bytes behind [`chain_hash`]; allocation-free because the indexer computes one
/// per event.
pub(crate) fn chain_digest(seq: u64, prev: &str, event_json: &[u8]) -> [u8; 32] {
    let (digits, start) = decimal(seq);
    let mut hasher = Sha256::new();
    hasher.update(digits.get(start..).unwrap_or_default());
    hasher.update(b"\n");
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(event_json);
    hasher.finalize().into()
}

/// One log line, in exactly the form [`split_line`] expects (no `fmt` machinery: one per event).
pub(crate) fn push_line(buf: &mut Vec<u8>, seq: u64, prev: &str, hash: &str, event_json: &[u8]) {
    let (digits, start) = decimal(seq);
    buf.reserve(48 + prev.len() + hash.len() + event_json.len());
    buf.extend_from_slice(b"{\"seq\":");
    buf.extend_from_slice(digits.get(start..).unwrap_or_default());
    buf.extend_from_slice(b",\"prev\":\"");
    buf.extend_from_slice(prev.as_bytes());
    buf.extend_from_slice(b"\",\"hash\":\"");
    buf.extend_from_slice(hash.as_bytes());
    buf.extend_from_slice(b"\",\"event\":");
    buf.extend_from_slice(event_json);
    buf.extend_from_slice(b"}\n");
}

#[derive(Deserialize)]
pub(crate) struct LogLine<'a> {
    pub seq: u64,
    pub prev: &'a str,
    pub hash: &'a str,
    #[serde(borrow)]
    pub event: &'a RawValue,
}

/// Parses one line (without its trailing newline).
pub(crate) fn parse_line(line: &[u8]) -> Result<LogLine<'_>, String> {
    serde_json::from_slice::<LogLine<'_>>(line).map_err(|e| format!("unparsable line: {e}"))
}

/// A line split without a JSON parser, for the indexer: see [`split_line`].
pub(crate) struct SplitLine<'a> {
    pub seq: u64,
    pub prev: &'a str,
    pub hash: &'a str,
    /// Not yet known to be valid JSON: the caller parses it (once, for its own needs) and
    /// falls back to [`parse_line`] if that fails.
    pub event: &'a str,
}

/// Splits a line in exactly the form [`push_line`] writes, or returns `None` (then use
/// [`parse_line`]). If `event` then parses as one JSON object and the link passes
/// [`ChainWalker::check`] (so `prev` and `hash` are 64 hex digits), the line is valid JSON
/// and [`parse_line`] would return the same fields: the prefix admits no alternative
/// spelling (no whitespace, escapes, leading zeros or other keys), and an event starting
/// with `{` and ending with the line's last `}` but one is the whole `event` value.
pub(crate) fn split_line(line: &[u8]) -> Option<SplitLine<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (seq_digits, rest) = rest.split_at_checked(digits)?;
    if seq_digits.is_empty() || (seq_digits.len() > 1 && seq_digits.first() == Some(&b'0')) {
        return None;
    }
    let seq = std::str::from_utf8(seq_digits).ok()?.parse::<u64>().ok()?;
    let rest = rest.strip_prefix(b",\"prev\":\"")?;
    let (prev, rest) = split_hex(rest)?;
    let rest = rest.strip_prefix(b"\",\"hash\":\"")?;
    let (hash, rest) = split_hex(rest)?;
    let event = rest.strip_prefix(b"\",\"event\":")?.strip_suffix(b"}")?;
    if event.first() != Some(&b'{') || event.last() != Some(&b'}') {
        return None;
    }
    Some(SplitLine {
        seq,
        prev,
        hash,
        event: std::str::from_utf8(event).ok()?,
    })
}

/// 64 bytes, not checked to be hex digits: [`ChainWalker::check`] compares both strings with
/// the hex of a digest, so anything else fails there (callers re-parse a line that fails, for
/// the same error message as [`parse_line`]).
fn split_hex(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (hex, rest) = bytes.split_at_checked(64)?;
    Some((std::str::from_utf8(hex).ok()?, rest))
}

/// Checks that lines continue a chain.
pub(crate) struct ChainWalker {
    pub next_seq: u64,
    pub prev: String,
}

impl ChainWalker {
    pub fn genesis() -> Self {
        Self::resume(0, GENESIS_PREV.to_string())
    }

    pub fn resume(last_seq: u64, last_hash: String) -> Self {
        ChainWalker {
            next_seq: last_seq.saturating_add(1),
            prev: last_hash,
        }
    }

    /// Accepts the next link or says why it does not belong; the walker is unchanged on error.
    /// Returns the event's digest (the binary form of `hash`).
    pub fn check(
        &mut self,
        seq: u64,
        prev: &str,
        hash: &str,
        event_json: &[u8],
    ) -> Result<[u8; 32], String> {
        if prev != self.prev {
            self.expect_seq(seq)?;
            return Err(format!(
                "prev {prev} does not match the hash of the previous event {}",
                self.prev
            ));
        }
        self.check_digest(
            seq,
            event_json,
            |_, hex| hash.as_bytes() == hex,
            || hash.to_string(),
        )
    }

    /// Like [`check`](Self::check) for a link stored without its `prev` (it is the previous
    /// link's hash) and with its hash as 32 raw bytes.
    pub fn check_stored(
        &mut self,
        seq: u64,
        stored: &[u8],
        event_json: &[u8],
    ) -> Result<[u8; 32], String> {
        self.check_digest(
            seq,
            event_json,
            |digest, _| stored == digest.as_slice(),
            || hex::encode(stored),
        )
    }

    fn expect_seq(&self, seq: u64) -> Result<(), String> {
        if seq != self.next_seq {
            return Err(format!(
                "expected seq {} but found {seq} (deleted, inserted or reordered events)",
                self.next_seq
            ));
        }
        Ok(())
    }

    fn check_digest(
        &mut self,
        seq: u64,
        event_json: &[u8],
        matches: impl FnOnce(&[u8; 32], &[u8; 64]) -> bool,
        stored: impl FnOnce() -> String,
    ) -> Result<[u8; 32], String> {
        self.expect_seq(seq)?;
        let digest = chain_digest(seq, &self.prev, event_json);
        let mut hex = [0u8; 64];
        // 32 bytes always fit in 64 hex digits.
        let _ = hex::encode_to_slice(digest, &mut hex);
        if !matches(&digest, &hex) {
            return Err(format!(
                "stored hash {} does not match the content (computed {}): event edited",
                stored(),
                String::from_utf8_lossy(&hex)
            ));
        }
        self.next_seq = seq.saturating_add(1);
        self.prev.clear();
        self.prev
            .push_str(std::str::from_utf8(&hex).unwrap_or_default());
        Ok(digest)
    }
}

/// The outcome of walking a hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events that chained correctly (all of them, or those before the first break).
    pub events: u64,
    /// The seq at which the chain first breaks (for an unparsable line: the seq expected
    /// there) and why. Everything after it is unverified.
    pub first_broken: Option<(u64, String)>,
    /// Hash of the last verified event ([`GENESIS_PREV`] if none). Compare it with an anchor
    /// kept elsewhere (the index, an export) to detect truncation of the tail, which a chain
    /// alone cannot reveal.
    pub last_hash: String,
    /// Bytes after the last newline: a write cut short by a crash (removed on the next
    /// [`crate::AuditLog::open`]), or a write in progress.
    pub partial_tail_bytes: u64,
    /// Seq of the first event walked: 1 for a whole trail; after retention the first kept
    /// event; for a range, where the range starts.
    pub first_seq: u64,
    /// For a trail that starts after seq 1: the seq of the `audit_retention` event that
    /// recorded the removal of everything before it, with the hash the walk started from.
    pub retention_seq: Option<u64>,
    /// Segments the walk read from.
    pub segments: usize,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Walks the chain of the whole trail at `path` (every segment, compressed or not). I/O
/// errors are `Err`; a broken chain, an undecodable compressed frame, or a trail that starts
/// after seq 1 without an `audit_retention` event vouching for the start are a report with
/// `first_broken` set.
pub fn verify_log(path: &Path) -> Result<VerifyReport, StoreError> {
    walk_log(path, &mut |_, _| {})
}

/// [`verify_log`], calling `on_event(seq, hash)` for every event that chains.
pub(crate) fn walk_log(
    path: &Path,
    on_event: &mut dyn FnMut(u64, &str),
) -> Result<VerifyReport, StoreError> {
    walk(path, Span::default(), on_event)
}

/// Which part of the trail to walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    /// Start at this seq, taking its `prev` on trust (a signed checkpoint after it, or the
    /// previous segment, vouches for it); `None`: the whole trail.
    pub from: Option<u64>,
    /// Stop after this seq; `None`: the end of the trail.
    pub to: Option<u64>,
}

/// What `audit_retention` says was removed.
#[derive(Deserialize)]
struct RetentionDetail {
    detail: RetentionInner,
}
#[derive(Deserialize)]
struct RetentionInner {
    audit_retention: RetentionFacts,
}
#[derive(Deserialize)]
struct RetentionFacts {
    last_seq: u64,
    last_hash: String,
}

pub(crate) fn walk(
    path: &Path,
    span: Span,
    on_event: &mut dyn FnMut(u64, &str),
) -> Result<VerifyReport, StoreError> {
    use crate::segments::{Reader, Start};
    let start = span.from.map_or(Start::Beginning, Start::Seq);
    let mut reader = Reader::open(path, start)?;
    let mut walker = ChainWalker::genesis();
    let mut report = VerifyReport {
        events: 0,
        first_broken: None,
        last_hash: GENESIS_PREV.to_string(),
        partial_tail_bytes: 0,
        first_seq: span.from.unwrap_or(1),
        retention_seq: None,
        segments: 0,
    };
    // The trail's start when it is not seq 1: (seq before it, hash) to be vouched for.
    let mut anchor: Option<(u64, String)> = None;
    let mut first = true;
    let mut segment = None;
    loop {
        let line = match reader.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(StoreError::Corrupt { path, reason, .. }) => {
                report.first_broken =
                    Some((walker.next_seq, format!("{}: {reason}", path.display())));
                break;
            }
            Err(e) => return Err(e),
        };
        if segment != Some(line.segment_first_seq) {
            segment = Some(line.segment_first_seq);
            report.segments += 1;
        }
        let body = line.bytes;
        let parsed = parse_line(body);
        if first {
            first = false;
            if let Ok(l) = &parsed {
                if span.from.is_some() || l.seq > 1 {
                    walker = ChainWalker::resume(l.seq.saturating_sub(1), l.prev.to_string());
                    report.first_seq = l.seq;
                    if span.from.is_none() {
                        anchor = Some((l.seq - 1, l.prev.to_string()));
                    }
                }
            }
        }
        let result = parsed.and_then(|l| {
            let event = l.event.get().as_bytes();
            walker.check(l.seq, l.prev, l.hash, event)?;
            if let Some((seq, hash)) = &anchor {
                if report.retention_seq.is_none()
                    && memchr::memmem::find(event, b"\"audit_retention\"").is_some()
                {
                    if let Ok(r) = serde_json::from_slice::<RetentionDetail>(event) {
                        let r = r.detail.audit_retention;
                        if r.last_seq == *seq && r.last_hash == *hash {
                            report.retention_seq = Some(l.seq);
                        }
                    }
                }
            }
            Ok(l.seq)
        });
        match result {
            Ok(seq) => {
                on_event(seq, &walker.prev);
                report.events += 1;
                if span.to.is_some_and(|to| seq >= to) {
                    break;
                }
            }
            Err(reason) => {
                report.first_broken = Some((walker.next_seq, reason));
                break;
            }
        }
    }
    report.partial_tail_bytes = if report.first_broken.is_none() && span.to.is_none() {
        reader.partial_bytes()
    } else {
        0
    };
    report.last_hash = walker.prev;
    if report.first_broken.is_none() {
        if let Some((seq, _)) = anchor.filter(|_| report.retention_seq.is_none()) {
            report.first_broken = Some((
                seq + 1,
                format!(
                    "the trail starts at seq {} but no audit_retention event records the removal of the events before it: segments deleted outside retention",
                    seq + 1
                ),
            ));
        }
    }
    Ok(report)
}
