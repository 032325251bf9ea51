//! Streaming reader: one frame at a time, never the whole recording in memory.

use crate::format::Frame;
use crate::RecordError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Longest line accepted; a longer one (damage, or a recording written with huge caps) is
/// skipped rather than read into memory.
const MAX_LINE: usize = 64 << 20;
/// Distinct unknown frame kinds named by [`RecordingReader::unknown_kinds`]; more are only
/// counted (a damaged or hostile file cannot grow the map).
const MAX_UNKNOWN_KINDS: usize = 16;
/// Longest unknown kind name kept.
const MAX_KIND_NAME: usize = 64;

/// Iterates over the frames of a recording. A file cut short (the gateway was killed) yields
/// every complete frame before the cut and then ends; [`truncated`](Self::truncated) says why.
pub struct RecordingReader {
    path: PathBuf,
    lines: BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>,
    buf: Vec<u8>,
    truncated: Option<String>,
    skipped: u64,
    unknown: u64,
    unknown_kinds: BTreeMap<String, u64>,
    version: Option<u32>,
    done: bool,
}

impl RecordingReader {
    pub fn open(path: &Path) -> Result<RecordingReader, RecordError> {
        let file = File::open(path).map_err(|e| RecordError::io(path, e))?;
        let decoder =
            zstd::stream::read::Decoder::new(file).map_err(|e| RecordError::io(path, e))?;
        Ok(RecordingReader {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(64 * 1024, decoder),
            buf: Vec::with_capacity(1024),
            truncated: None,
            skipped: 0,
            unknown: 0,
            unknown_kinds: BTreeMap::new(),
            version: None,
            done: false,
        })
    }

    /// Why reading stopped before a clean end of file (a chunk cut short or damaged), if it
    /// did. Frames before that point were all returned.
    pub fn truncated(&self) -> Option<&str> {
        self.truncated.as_deref()
    }

    /// Lines that were not valid frames (skipped).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Frames of a kind this reader does not know (written by a newer version), skipped by
    /// the iterator.
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    /// The unknown kinds met so far (their `t`) with how many of each; at most 16 kinds.
    pub fn unknown_kinds(&self) -> &BTreeMap<String, u64> {
        &self.unknown_kinds
    }

    /// The format version in the `start` frame, once the iterator has returned it.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next raw JSON line (without newline), for streaming a recording as-is.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match read_line_capped(&mut self.lines, &mut self.buf) {
                Ok(LineRead::Eof) => {
                    self.done = true;
                    if !self.buf.is_empty() {
                        self.truncated = Some("the last frame has no line end".into());
                    }
                    return None;
                }
                Ok(LineRead::TooLong) => {
                    self.skipped += 1;
                    continue;
                }
                Ok(LineRead::Line) => {
                    return self.buf.strip_suffix(b"\n");
                }
                Err(e) => {
                    // The zstd decoder fails on a chunk cut short: everything before it was
                    // returned; what it had decoded of the cut chunk is a partial line.
                    self.done = true;
                    self.truncated = Some(format!(
                        "recording ends in a damaged or incomplete chunk ({e})"
                    ));
                    return None;
                }
            }
        }
    }
}

impl Iterator for RecordingReader {
    type Item = Frame;

    /// The next frame this version knows: lines that are not frames are counted in
    /// [`skipped`](Self::skipped), frames of unknown kinds in [`unknown`](Self::unknown).
    fn next(&mut self) -> Option<Frame> {
        loop {
            let line = self.next_line()?;
            match serde_json::from_slice::<Frame>(line) {
                Ok(Frame::Unknown) => {
                    let kind = serde_json::from_slice::<Kind>(line)
                        .map(|k| k.t)
                        .unwrap_or_default();
                    self.note_unknown(kind);
                }
                Ok(frame) => {
                    if let Frame::Start { v, .. } = &frame {
                        self.version = Some(*v);
                    }
                    return Some(frame);
                }
                Err(_) => self.skipped += 1,
            }
        }
    }
}

impl RecordingReader {
    fn note_unknown(&mut self, mut kind: String) {
        self.unknown += 1;
        if kind.len() > MAX_KIND_NAME {
            let mut end = MAX_KIND_NAME;
            while !kind.is_char_boundary(end) {
                end -= 1;
            }
            kind.truncate(end);
        }
        if let Some(n) = self.unknown_kinds.get_mut(&kind) {
            *n += 1;
        } else if self.unknown_kinds.len() < MAX_UNKNOWN_KINDS {
            self.unknown_kinds.insert(kind, 1);
        }
    }
}

/// Only the tag of a frame, to name an unknown kind.
#[derive(serde::Deserialize)]
struct Kind {
    #[serde(default)]
    t: String,
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (keeping the `\n`) into `buf`; a line beyond [`MAX_LINE`] is consumed and
/// reported as `TooLong` without being kept.
fn read_line_capped<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let mut too_long = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Eof
            });
        }
        let (used, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            if buf.len() + used > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(available.get(..used).unwrap_or_default());
            }
        }
        r.consume(used);
        if found {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}
