//! Session recordings, protocol-neutral: what a session sent, what the gateway decided, and
//! what came back (already masked), replayable statement by statement. Three shapes of
//! session share the format: SQL statements with their results, terminal sessions (timed
//! output and input bytes, convertible to asciicast with [`to_asciicast`]) and
//! request/response exchanges (HTTP, Kubernetes, AWS, MCP).
//!
//! # Files
//!
//! `data_dir/recordings/<yyyy-mm-dd>/<session_id>.alrec.zst` (UTC date of the session start,
//! files 0600, directories 0700). The content is JSON lines ([`Frame`]), compressed in chunks:
//! each chunk is an independent zstd frame (with checksum) appended by one `write`, at least
//! once per `flush_interval`. Concatenated zstd frames are a valid zstd stream, so
//! `zstd -dc FILE` shows the lines; a file cut short by a crash decodes up to its last
//! complete chunk ([`RecordingReader`]).
//!
//! The index of recordings is the audit index's `sessions` table: a session's recording is
//! found from its id and start date ([`find_recording`]), so no second index can disagree
//! with the audit trail.
//!
//! # Data path
//!
//! [`Recorder`] methods copy their arguments into frames and hand them to one writer thread
//! through a bounded queue with `try_send`: they never wait for the disk, and when the queue
//! is full they drop and count frames instead of blocking the relay (the recording then
//! carries a `dropped` frame at the gap).

mod asciicast;
mod format;
mod reader;
mod render;
mod writer;

pub use asciicast::{to_asciicast, AsciicastSummary};
pub use format::{
    decode_bytes, encode_bytes, encode_value, pg_right_aligned, Frame, FORMAT_VERSION,
};
pub use reader::RecordingReader;
pub use render::{Pace, Renderer, ReplayOptions};
pub use writer::{
    FailureHook, Recorder, RecordingConfig, RecordingStats, Recordings, Request, Response,
    SessionMeta,
};

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// File name suffix of a recording.
pub const EXTENSION: &str = "alrec.zst";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid session id `{0}` for a recording file name")]
    BadSessionId(String),
}

impl RecordError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RecordError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Session ids become file names: anything but `[A-Za-z0-9._-]` is replaced so an id can
/// never name a path outside the recordings directory.
fn file_stem(session_id: &str) -> String {
    let s: String = session_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// `dir/<yyyy-mm-dd of ts_us>/<session_id>.alrec.zst`.
pub fn recording_path(dir: &Path, session_id: &str, ts_us: i64) -> PathBuf {
    dir.join(date_of(ts_us))
        .join(format!("{}.{EXTENSION}", file_stem(session_id)))
}

/// The recording of `session_id`, looked up in the directory of its start date first (and
/// the days around it, for a session that started near midnight or a clock step), then in
/// every date directory.
pub fn find_recording(dir: &Path, session_id: &str, started_us: Option<i64>) -> Option<PathBuf> {
    let name = format!("{}.{EXTENSION}", file_stem(session_id));
    if let Some(ts) = started_us {
        for delta in [0i64, -1, 1] {
            let p = dir.join(date_of(ts + delta * 86_400_000_000)).join(&name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut dates: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dates.sort();
    dates
        .into_iter()
        .rev()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

/// What [`remove_older_than`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Date directories removed (`yyyy-mm-dd`).
    pub days: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

/// Deletes recordings of sessions that started more than `days` days before `now_us`
/// (whole date directories). The audit log is not touched: the caller records what was
/// deleted as an audit event. Entries that are not date directories are left alone.
pub fn remove_older_than(
    dir: &Path,
    days: u32,
    now_us: i64,
) -> Result<RetentionReport, RecordError> {
    let cutoff = date_of(now_us - i64::from(days) * 86_400_000_000);
    let mut report = RetentionReport::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(RecordError::io(dir, e)),
    };
    let mut old = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RecordError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `yyyy-mm-dd` sorts as text in date order.
        if is_date(&name) && name < cutoff && entry.path().is_dir() {
            old.push((name, entry.path()));
        }
    }
    old.sort();
    for (name, path) in old {
        for f in std::fs::read_dir(&path).map_err(|e| RecordError::io(&path, e))? {
            let f = f.map_err(|e| RecordError::io(&path, e))?;
            report.files += 1;
            report.bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
        }
        std::fs::remove_dir_all(&path).map_err(|e| RecordError::io(&path, e))?;
        report.days.push(name);
    }
    Ok(report)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// `yyyy-mm-dd` (UTC) of a unix time in microseconds.
pub fn date_of(ts_us: i64) -> String {
    let (y, m, d) = civil_from_days(ts_us.div_euclid(86_400_000_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `yyyy-mm-dd hh:mm:ss.mmm` (UTC).
pub fn fmt_time_us(ts_us: i64) -> String {
    let secs = ts_us.div_euclid(1_000_000);
    let ms = ts_us.rem_euclid(1_000_000) / 1000;
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}.{ms:03}",
        date_of(ts_us),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_file_names() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_795_478_400_000_000), "2026-11-24");
        assert_eq!(fmt_time_us(1_500), "1970-01-01 00:00:00.001");
        assert_eq!(file_stem("../../etc/passwd"), "_.._.._etc_passwd");
        assert_eq!(file_stem(""), "_");
        assert!(is_date("2026-11-24"));
        assert!(!is_date("2026-11-24x"));
        assert!(!is_date("notadate.."));
    }
}
