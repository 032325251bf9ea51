//! Reading the audit log from a persisted, acknowledged position.

use crate::ExportError;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where an exporter stands: everything before `offset` (up to and including event `seq`,
/// whose chain hash is `hash`) was acknowledged by the destination.
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
    /// Offset just after this line.
    pub end_offset: u64,
}

/// Reads complete lines from `offset` on; a partial last line (a write in progress) is left
/// for the next call.
pub struct LogTail {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    offset: u64,
}

impl LogTail {
    pub fn new(path: &Path, offset: u64) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            reader: None,
            offset,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Moves back to `offset` (after a failed delivery, to send the same events again).
    pub fn rewind(&mut self, offset: u64) {
        self.offset = offset;
        self.reader = None;
    }

    /// Up to `max` complete records after the current offset.
    pub fn read(&mut self, max: usize) -> Result<Vec<LogRecord>, ExportError> {
        if self.reader.is_none() {
            let file = match File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(ExportError::io(&self.path, e)),
            };
            let len = file
                .metadata()
                .map_err(|e| ExportError::io(&self.path, e))?
                .len();
            if len < self.offset {
                return Err(ExportError::State {
                    path: self.path.clone(),
                    reason: format!(
                        "the audit log ({len} bytes) is shorter than the exported position ({} bytes): truncated or replaced",
                        self.offset
                    ),
                });
            }
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            reader
                .seek(SeekFrom::Start(self.offset))
                .map_err(|e| ExportError::io(&self.path, e))?;
            self.reader = Some(reader);
        }
        let mut out = Vec::new();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(out);
        };
        let mut line = Vec::new();
        while out.len() < max {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| ExportError::io(&self.path, e))?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                // A line being written: read it again from its start next time.
                self.reader = None;
                break;
            }
            self.offset += n as u64;
            let text =
                String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
            let value: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(offset = self.offset - n as u64, error = %e, "unparsable audit log line exported as-is");
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
            out.push(LogRecord {
                seq,
                hash,
                line: text,
                value,
                end_offset: self.offset,
            });
        }
        Ok(out)
    }
}
