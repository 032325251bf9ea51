//! The chain format shared by the writer, the verifier and the indexer.
//!
//! One line per event: `{"seq":N,"prev":"<hex>","hash":"<hex>","event":{...}}\n` where
//! `hash = sha256(seq as decimal ‖ "\n" ‖ prev ‖ "\n" ‖ exact event JSON bytes)`. Hashing the
//! exact bytes (not a re-serialization) keeps verification independent of serde versions.

use crate::StoreError;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// `prev` of the first event.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn chain_hash(seq: u64, prev: &str, event_json: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(seq.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(event_json);
    hex::encode(hasher.finalize())
}

pub(crate) fn push_line(buf: &mut Vec<u8>, seq: u64, prev: &str, hash: &str, event_json: &[u8]) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(
        buf,
        "{{\"seq\":{seq},\"prev\":\"{prev}\",\"hash\":\"{hash}\",\"event\":"
    );
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
    pub fn check(
        &mut self,
        seq: u64,
        prev: &str,
        hash: &str,
        event_json: &[u8],
    ) -> Result<(), String> {
        if seq != self.next_seq {
            return Err(format!(
                "expected seq {} but found {seq} (deleted, inserted or reordered events)",
                self.next_seq
            ));
        }
        if prev != self.prev {
            return Err(format!(
                "prev {prev} does not match the hash of the previous event {}",
                self.prev
            ));
        }
        let computed = chain_hash(seq, prev, event_json);
        if hash != computed {
            return Err(format!(
                "stored hash {hash} does not match the content (computed {computed}): event edited"
            ));
        }
        self.next_seq = seq.saturating_add(1);
        self.prev = computed;
        Ok(())
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
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Walks the chain of the log file at `path`. I/O errors are `Err`; a broken chain is a
/// report with `first_broken` set.
pub fn verify_log(path: &Path) -> Result<VerifyReport, StoreError> {
    let file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut walker = ChainWalker::genesis();
    let mut events = 0u64;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        let Some(body) = line.strip_suffix(b"\n") else {
            return Ok(VerifyReport {
                events,
                first_broken: None,
                last_hash: walker.prev,
                partial_tail_bytes: n as u64,
            });
        };
        let result = parse_line(body)
            .and_then(|l| walker.check(l.seq, l.prev, l.hash, l.event.get().as_bytes()));
        if let Err(reason) = result {
            return Ok(VerifyReport {
                events,
                first_broken: Some((walker.next_seq, reason)),
                last_hash: walker.prev,
                partial_tail_bytes: 0,
            });
        }
        events += 1;
    }
    Ok(VerifyReport {
        events,
        first_broken: None,
        last_hash: walker.prev,
        partial_tail_bytes: 0,
    })
}
