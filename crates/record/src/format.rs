//! The recording format: one JSON object per line ("frame"), tagged by `t`.
//!
//! Lines are compressed in chunks, each chunk an independent zstd frame appended to the file
//! (see the crate docs), so a file cut short anywhere still decodes up to its last complete
//! chunk and the reader never needs more than one line in memory.

use serde::{Deserialize, Serialize};

/// Version written in the `start` frame; readers accept older versions and skip frame types
/// they do not know.
///
/// - 1: SQL sessions (`statement`, `columns`, `row`, `complete`, `error`, `notice`).
/// - 2: adds terminal frames (`term_size`, `term_out`, `term_in`) and request/response
///   exchanges (`request`, `response`). Nothing of version 1 changed, so a version 1 reader
///   reads a version 2 file as its SQL frames (the new kinds are unknown to it and skipped).
pub const FORMAT_VERSION: u32 = 2;

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Frame {
    /// First frame of every recording.
    Start {
        v: u32,
        ts_us: i64,
        session_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<String>,
        /// `postgres`, `mysql`, `ssh`, `http`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
    /// A command as the client sent it, with the gateway's decision.
    Statement {
        seq: u64,
        ts_us: i64,
        text: String,
        decision: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    /// The result's column names; `align` has one `l` or `r` per column (psql right-aligns
    /// numbers), empty when unknown.
    Columns {
        seq: u64,
        names: Vec<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        align: String,
    },
    /// One result row, values already masked. Text values as strings; bytes that are not
    /// UTF-8 as `\x` followed by hex (psql's bytea notation); SQL NULL as `null`.
    Row {
        seq: u64,
        v: Vec<Option<String>>,
    },
    /// The statement finished. `rows` is the true row count (from the command tag, or rows
    /// seen); `recorded` how many rows this recording holds; `truncated` says a cap cut it.
    Complete {
        seq: u64,
        ts_us: i64,
        tag: String,
        rows: u64,
        recorded: u64,
        #[serde(default, skip_serializing_if = "is_false")]
        truncated: bool,
        duration_us: u64,
    },
    Error {
        seq: u64,
        ts_us: i64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sqlstate: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_us: Option<u64>,
    },
    Notice {
        ts_us: i64,
        message: String,
    },
    /// The data path found the writer's queue full and discarded `frames` frames rather than
    /// wait; the recording has a gap here.
    Dropped {
        ts_us: i64,
        frames: u64,
    },
    /// Last frame of a recording that was closed (absent after a crash).
    End {
        ts_us: i64,
        reason: String,
    },
    /// The terminal's size in character cells: the first one is the initial size (SSH
    /// `pty-req`), later ones are resizes (`window-change`). `at_us` is the offset from the
    /// session start (the `start` frame's `ts_us`), on a monotonic clock.
    TermSize {
        at_us: u64,
        cols: u32,
        rows: u32,
    },
    /// Bytes the terminal showed (server to client), coalesced; `at_us` is when the first of
    /// them was seen. `d` is the bytes as text when they are UTF-8, else base64 with `b64`.
    TermOut {
        at_us: u64,
        d: String,
        #[serde(default, skip_serializing_if = "is_false")]
        b64: bool,
    },
    /// Bytes the client typed (client to server), like [`Frame::TermOut`].
    TermIn {
        at_us: u64,
        d: String,
        #[serde(default, skip_serializing_if = "is_false")]
        b64: bool,
    },
    /// A request of a request/response protocol (HTTP, Kubernetes, AWS, MCP), with the
    /// gateway's decision. `headers` are the ones the adapter chose to keep, in order
    /// (credential headers redacted); `body` is an excerpt of at most the configured cap
    /// (text, or base64 with `body_b64`) of a body `body_len` bytes long.
    Request {
        seq: u64,
        ts_us: i64,
        method: String,
        target: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<(String, String)>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        body: String,
        #[serde(default, skip_serializing_if = "is_false")]
        body_b64: bool,
        #[serde(default)]
        body_len: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        decision: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
    /// The response to request `seq`: `status` as the protocol says it (`200`, `404`; MCP
    /// `ok` or `error -32601`), headers and body as in [`Frame::Request`], and the time from
    /// the request to the end of the response.
    Response {
        seq: u64,
        ts_us: i64,
        status: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<(String, String)>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        body: String,
        #[serde(default, skip_serializing_if = "is_false")]
        body_b64: bool,
        #[serde(default)]
        body_len: u64,
        duration_us: u64,
    },
    /// A frame type written by a newer version.
    #[serde(other)]
    Unknown,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Frame {
    /// The statement a frame belongs to, if any.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Frame::Statement { seq, .. }
            | Frame::Columns { seq, .. }
            | Frame::Row { seq, .. }
            | Frame::Complete { seq, .. }
            | Frame::Error { seq, .. }
            | Frame::Request { seq, .. }
            | Frame::Response { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub fn ts_us(&self) -> Option<i64> {
        match self {
            Frame::Start { ts_us, .. }
            | Frame::Statement { ts_us, .. }
            | Frame::Complete { ts_us, .. }
            | Frame::Error { ts_us, .. }
            | Frame::Notice { ts_us, .. }
            | Frame::Dropped { ts_us, .. }
            | Frame::End { ts_us, .. }
            | Frame::Request { ts_us, .. }
            | Frame::Response { ts_us, .. } => Some(*ts_us),
            _ => None,
        }
    }

    /// Offset from the session start of a terminal frame.
    pub fn at_us(&self) -> Option<u64> {
        match self {
            Frame::TermSize { at_us, .. }
            | Frame::TermOut { at_us, .. }
            | Frame::TermIn { at_us, .. } => Some(*at_us),
            _ => None,
        }
    }
}

/// Bytes as a frame field: the text itself when they are UTF-8 (no copy), else base64 and
/// `true` (the `b64` flag).
pub fn encode_bytes(bytes: Vec<u8>) -> (String, bool) {
    use base64::Engine as _;
    match String::from_utf8(bytes) {
        Ok(s) => (s, false),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            true,
        ),
    }
}

/// The bytes of a field written by [`encode_bytes`]; `None` for base64 that does not decode
/// (a damaged or hand-made recording).
pub fn decode_bytes(d: &str, b64: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
    use base64::Engine as _;
    if b64 {
        base64::engine::general_purpose::STANDARD
            .decode(d)
            .ok()
            .map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(d.as_bytes()))
    }
}

/// The first `cap` bytes of a body `total` bytes long, encoded as [`encode_bytes`] does. A
/// cut through a UTF-8 character drops the partial character, so a text body stays text.
pub(crate) fn body_excerpt(body: &[u8], total: u64, cap: usize) -> (String, bool) {
    let kept = body.get(..cap).unwrap_or(body);
    let cut = (kept.len() as u64) < total;
    let kept = match std::str::from_utf8(kept) {
        Err(e) if cut && e.error_len().is_none() => kept.get(..e.valid_up_to()).unwrap_or(kept),
        _ => kept,
    };
    encode_bytes(kept.to_vec())
}

/// How many bytes at the end of `data` are the start of a UTF-8 character whose remaining
/// bytes have not arrived yet (0 to 3). Only the end is looked at: a terminal chunk boundary
/// then never turns a UTF-8 stream into base64 by splitting a character.
pub(crate) fn incomplete_utf8_tail(data: &[u8]) -> usize {
    for (i, &b) in data.iter().rev().take(4).enumerate() {
        let back = i + 1;
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead byte
        }
        let need = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// A value as recorded: UTF-8 text as is, anything else as `\x<hex>`.
pub fn encode_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let mut s = String::with_capacity(2 + bytes.len() * 2);
            s.push_str("\\x");
            s.push_str(&hex::encode(bytes));
            s
        }
    }
}

/// PostgreSQL type OIDs psql right-aligns (int2/4/8, oid, xid, cid, xid8, float4/8, money,
/// numeric), for [`crate::Recorder::columns_aligned`].
pub fn pg_right_aligned(type_oid: u32) -> bool {
    matches!(
        type_oid,
        20 | 21 | 23 | 26 | 28 | 29 | 700 | 701 | 790 | 1700 | 5069
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_character_is_found_at_the_end_only() {
        let euro = "\u{20ac}".as_bytes(); // e2 82 ac
        assert_eq!(incomplete_utf8_tail(b""), 0);
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail(euro), 0);
        assert_eq!(incomplete_utf8_tail(&euro[..1]), 1);
        assert_eq!(incomplete_utf8_tail(&euro[..2]), 2);
        assert_eq!(incomplete_utf8_tail(&[b'a', 0xf0, 0x9f, 0x98]), 3);
        assert_eq!(incomplete_utf8_tail(&[0xf0, 0x9f, 0x98, 0x80]), 0);
        // Not a character start at all: nothing to wait for.
        assert_eq!(incomplete_utf8_tail(&[b'a', 0xff]), 0);
        assert_eq!(incomplete_utf8_tail(&[0x80, 0x80, 0x80, 0x80]), 0);
    }

    #[test]
    fn excerpts_stay_text_when_the_cap_cuts_a_character_and_binary_is_base64() {
        let body = "ab\u{e9}".as_bytes(); // 61 62 c3 a9
        assert_eq!(body_excerpt(body, 4, 3), ("ab".into(), false));
        assert_eq!(body_excerpt(body, 4, 10), ("ab\u{e9}".into(), false));
        // Not cut: an incomplete end is the body as it is, so base64.
        assert_eq!(body_excerpt(&body[..3], 3, 10), ("YWLD".into(), true));
        let (d, b64) = body_excerpt(&[0, 0xff, 1, 2], 4, 2);
        assert!(b64);
        assert_eq!(decode_bytes(&d, b64).unwrap().as_ref(), [0, 0xff]);
        assert!(decode_bytes("not base64!", true).is_none());
    }
}
