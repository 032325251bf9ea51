//! Reading the audit log from a persisted, acknowledged position.

use crate::ExportError;
use airlock_store::segments::{Reader, Start};
use airlock_store::StoreError;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where an exporter stands: everything up to and including event `seq` (whose chain hash is
/// `hash`, and whose line ends at byte `offset` of the segment holding it) was acknowledged
/// by the destination. Retention of the audit trail never removes a segment holding events
/// after the smallest acknowledged `seq` of the configured exporters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub offset: u64,
    pub seq: u64,
    #[serde(default)]
    pub hash: String,
}

impl Position {
    /// Reads the position file; a missing file is the start of the log.
    pub fn load(path: &Path) -> Result<Position, ExportError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExportError::State {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Position::default()),
            Err(e) => Err(ExportError::io(path, e)),
        }
    }

    /// Replaces the position file atomically (write, fsync, rename), so a crash leaves either
    /// the old or the new position, never a torn one.
    pub fn store(&self, path: &Path) -> Result<(), ExportError> {
        let tmp = path.with_extension("pos.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            serde_json::to_writer(&mut f, self)?;
            f.write_all(b"\n")?;
            f.sync_data()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| ExportError::io(path, e))
    }
}

/// One event as read from the log.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub seq: u64,
    pub hash: String,
    /// The log line exactly as stored (`{"seq","prev","hash","event"}`), without newline.
    pub line: String,
    /// The parsed line.
    pub value: serde_json::Value,
    /// Offset just after this line, in its segment (with `seq`, where to resume).
    pub end_offset: u64,
}

/// Reads complete lines after a position, across the trail's segments (compressed ones
/// included, and following rotations while it tails); a partial last line (a write in
/// progress) is left for the next call.
pub struct LogTail {
    path: PathBuf,
    reader: Option<Reader>,
    position: Position,
}

impl LogTail {
    pub fn new(path: &Path, position: &Position) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            reader: None,
            position: position.clone(),
        }
    }

    /// Where the next read starts.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// Moves back to `position` (after a failed delivery, to send the same events again).
    pub fn rewind(&mut self, position: &Position) {
        self.position = position.clone();
        self.reader = None;
    }

    /// Up to `max` complete records after the current position.
    pub fn read(&mut self, max: usize) -> Result<Vec<LogRecord>, ExportError> {
        let state_err = |e: StoreError| ExportError::State {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        if self.reader.is_none() {
            let start = Start::After {
                seq: self.position.seq,
                offset: self.position.offset,
            };
            self.reader = Some(Reader::open(&self.path, start).map_err(state_err)?);
        }
        let mut out = Vec::new();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(out);
        };
        while out.len() < max {
            let line = match reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    self.reader = None;
                    return Err(ExportError::State {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    });
                }
            };
            let end_offset = line.offset + line.bytes.len() as u64 + 1;
            let text = String::from_utf8_lossy(line.bytes).into_owned();
            let value: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(offset = line.offset, error = %e, "unparsable audit log line exported as-is");
                    serde_json::Value::Null
                }
            };
            let seq = value
                .get("seq")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let hash = value
                .get("hash")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            self.position = Position {
                offset: end_offset,
                seq,
                hash: hash.clone(),
            };
            out.push(LogRecord {
                seq,
                hash,
                line: text,
                value,
                end_offset,
            });
        }
        Ok(out)
    }
}
