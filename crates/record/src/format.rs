//! The recording format: one JSON object per line ("frame"), tagged by `t`.
//!
//! Lines are compressed in chunks, each chunk an independent zstd frame appended to the file
//! (see the crate docs), so a file cut short anywhere still decodes up to its last complete
//! chunk and the reader never needs more than one line in memory.

use serde::{Deserialize, Serialize};

/// Version written in the `start` frame; readers accept older versions and skip frame types
/// they do not know.
pub const FORMAT_VERSION: u32 = 1;

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
            | Frame::Error { seq, .. } => Some(*seq),
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
            | Frame::End { ts_us, .. } => Some(*ts_us),
            _ => None,
        }
    }
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
