//! Segments of the audit trail, and the one reader every consumer of the trail goes through.
//!
//! # Layout
//!
//! - The **active segment** is the log path itself (`data_dir/audit.log`): the file every
//!   append goes to, exactly as before segments existed, so an existing deployment needs no
//!   migration (its `audit.log` simply is the active segment) and `tail -f` still works.
//! - **Closed segments** live in `<log>.d/` (`data_dir/audit.log.d/`), named by the seq range
//!   they hold: `<first>-<last>.log` (20 digits each) as rotation leaves them, then
//!   `<first>-<last>.log.zst` once compressed. The names alone tell which segment holds a seq.
//!
//! Rotation ([`crate::AuditLog`], by size and/or age) renames the active file into `<log>.d/`
//! and opens a new, empty `audit.log`; the next event chains to the last of the closed
//! segment exactly as it would have in one file (the chain, seq numbers and checkpoints do
//! not know about segments).
//!
//! # Compressed segments
//!
//! A `.log.zst` file is a sequence of ordinary zstd frames (with content checksums), each
//! holding whole lines, about [`FRAME_RAW_BYTES`] of them, so `zstdcat` prints the segment as
//! it was. After them a zstd *skippable* frame (ignored by `zstd`) holds a seek table: for
//! every frame its compressed length, uncompressed length and first seq, plus the segment's
//! first/last seq and last hash. Readers use it to start at any seq or byte offset by
//! decompressing one frame, not the whole segment. Offsets everywhere (index positions,
//! exporter positions) are offsets in the *uncompressed* segment, so compressing a segment
//! changes nothing for them.
//!
//! Compression writes `<name>.zst.tmp`, fsyncs it, renames it into place and only then removes
//! the plain file; a crash in between leaves both (readers prefer the `.zst`, the next pass
//! removes the plain one) or a stray `.tmp` (removed).

use crate::chain::parse_line;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Uncompressed bytes per zstd frame of a compressed segment: the most a random read (an
/// index lookup, a range verify, an exporter resuming) has to decompress.
pub const FRAME_RAW_BYTES: usize = 1 << 20;
const ZSTD_LEVEL: i32 = 3;
/// A zstd skippable frame magic number (0x184D2A50..=0x184D2A5F are skippable).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5A;
/// The last 4 bytes of a compressed segment, after the seek table's length.
const TRAILER_MAGIC: &[u8; 4] = b"ALSG";
const PLAIN_EXT: &str = ".log";
const ZST_EXT: &str = ".log.zst";
const TMP_EXT: &str = ".tmp";

/// Held while closed segment files are compressed or removed: retention must never delete a
/// plain segment that a compression is about to bring back as `.zst`, and two compressions
/// must not remove each other's temporary files.
static SEGMENT_FILES: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn lock_segment_files() -> std::sync::MutexGuard<'static, ()> {
    SEGMENT_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The directory of closed segments: `<log>.d` next to the log.
pub fn segments_dir(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".d");
    PathBuf::from(p)
}

/// One segment of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Seq of its first event (for the active segment: the seq its first event has or will
    /// have, as far as the closed segments tell).
    pub first_seq: u64,
    /// Seq of its last event; `None` for the active segment, which still grows.
    pub last_seq: Option<u64>,
    pub path: PathBuf,
    pub compressed: bool,
}

impl Segment {
    pub fn is_active(&self) -> bool {
        self.last_seq.is_none()
    }

    fn contains(&self, seq: u64) -> bool {
        seq >= self.first_seq && self.last_seq.is_none_or(|l| seq <= l)
    }
}

fn closed_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}{PLAIN_EXT}")
}

/// `(first, last, compressed)` of a closed segment's file name.
fn parse_name(name: &str) -> Option<(u64, u64, bool)> {
    let (stem, compressed) = match name.strip_suffix(ZST_EXT) {
        Some(stem) => (stem, true),
        None => (name.strip_suffix(PLAIN_EXT)?, false),
    };
    let (first, last) = stem.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(first) || !all_digits(last) {
        return None;
    }
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some((first, last, compressed))
}

/// The closed segments (oldest first) then the active one. A missing directory is no closed
/// segment; the active segment is listed even if its file does not exist yet.
pub fn list(log: &Path) -> Result<Vec<Segment>, StoreError> {
    let mut segments = list_closed(log)?;
    let first_seq = match segments.last().and_then(|s| s.last_seq) {
        Some(last) => last.saturating_add(1),
        // No closed segment: the active file's own first event says where it starts (not 1
        // once retention removed every closed segment).
        None => File::open(log)
            .ok()
            .and_then(|f| {
                let len = f.metadata().ok()?.len();
                first_line(&f, len)
            })
            .and_then(|l| line_seq(&l))
            .unwrap_or(1),
    };
    segments.push(Segment {
        first_seq,
        last_seq: None,
        path: log.to_path_buf(),
        compressed: false,
    });
    Ok(segments)
}

/// The closed segments, oldest first; where both a plain and a compressed file exist (a
/// compression interrupted after its rename) the compressed one, which is complete.
pub fn list_closed(log: &Path) -> Result<Vec<Segment>, StoreError> {
    let dir = segments_dir(log);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut by_first: std::collections::BTreeMap<u64, Segment> = Default::default();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let name = entry.file_name();
        let Some((first, last, compressed)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let seg = Segment {
            first_seq: first,
            last_seq: Some(last),
            path: entry.path(),
            compressed,
        };
        match by_first.get(&first) {
            Some(existing) if existing.compressed => {}
            _ => {
                by_first.insert(first, seg);
            }
        }
    }
    Ok(by_first.into_values().collect())
}

/// The index in `segments` of the segment that holds `seq` (the first one for seq 0 or a
/// seq before the first kept segment).
pub(crate) fn find(segments: &[Segment], seq: u64) -> usize {
    segments
        .iter()
        .rposition(|s| s.first_seq <= seq)
        .unwrap_or(0)
}

/// The seq of a line, read from its `{"seq":N,` prefix without a JSON parser, else by
/// parsing it.
pub(crate) fn line_seq(line: &[u8]) -> Option<u64> {
    let fast = line.strip_prefix(b"{\"seq\":").and_then(|rest| {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(rest.get(..n)?).ok()?.parse().ok()
    });
    fast.or_else(|| parse_line(line).ok().map(|l| l.seq))
}

// ---------------------------------------------------------------------------------------------
// Compressed segments

/// The seek table of a compressed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekTable {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Chain hash of the last event.
    pub last_hash: String,
    /// Uncompressed length of the segment.
    pub raw_bytes: u64,
    /// Per frame: compressed length, uncompressed length, seq of its first line.
    pub frames: Vec<(u64, u64, u64)>,
}

struct Frame {
    comp_off: u64,
    comp_len: u64,
    raw_off: u64,
    raw_len: u64,
    first_seq: u64,
}

/// An open compressed segment: random access by uncompressed offset or seq.
pub(crate) struct ZstSegment {
    file: File,
    path: PathBuf,
    table: SeekTable,
    frames: Vec<Frame>,
    /// The last frame decompressed (index, bytes): lines are read in order or near it.
    cache: Option<(usize, Vec<u8>)>,
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

impl ZstSegment {
    pub fn open(path: &Path) -> Result<ZstSegment, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        let mut foot = [0u8; 8];
        if len < 16 {
            return Err(corrupt(path, 0, "too short for a compressed segment"));
        }
        file.read_exact_at(&mut foot, len - 8)
            .map_err(|e| StoreError::io(path, e))?;
        let (table_len, magic) = foot.split_at(4);
        if magic != TRAILER_MAGIC {
            return Err(corrupt(
                path,
                len - 4,
                "no seek table at the end (not a compressed airlock segment, or cut short)",
            ));
        }
        let table_len = u64::from(u32::from_le_bytes(table_len.try_into().unwrap_or_default()));
        // Skippable frame header (8) + table + length and magic (8).
        let frame_start = len
            .checked_sub(table_len + 16)
            .ok_or_else(|| corrupt(path, 0, "seek table length beyond the file"))?;
        let mut table = vec![0u8; usize::try_from(table_len).unwrap_or(0)];
        file.read_exact_at(&mut table, frame_start + 8)
            .map_err(|e| StoreError::io(path, e))?;
        let table: SeekTable = serde_json::from_slice(&table)
            .map_err(|e| corrupt(path, frame_start, format!("unreadable seek table: {e}")))?;
        let mut frames = Vec::with_capacity(table.frames.len());
        let (mut comp_off, mut raw_off) = (0u64, 0u64);
        for &(comp_len, raw_len, first_seq) in &table.frames {
            frames.push(Frame {
                comp_off,
                comp_len,
                raw_off,
                raw_len,
                first_seq,
            });
            comp_off = comp_off.saturating_add(comp_len);
            raw_off = raw_off.saturating_add(raw_len);
        }
        if comp_off != frame_start || raw_off != table.raw_bytes {
            return Err(corrupt(
                path,
                frame_start,
                "the seek table does not describe the file's frames",
            ));
        }
        Ok(ZstSegment {
            file,
            path: path.to_path_buf(),
            table,
            frames,
            cache: None,
        })
    }

    fn frame_at_offset(&self, offset: u64) -> Option<usize> {
        self.frames
            .iter()
            .rposition(|f| f.raw_off <= offset)
            .filter(|&i| {
                self.frames
                    .get(i)
                    .is_some_and(|f| offset < f.raw_off + f.raw_len)
            })
    }

    fn frame_for_seq(&self, seq: u64) -> usize {
        self.frames
            .iter()
            .rposition(|f| f.first_seq <= seq)
            .unwrap_or(0)
    }

    /// Decompresses frame `i` (checked against its checksum and its recorded length).
    fn frame(&mut self, i: usize) -> Result<&[u8], StoreError> {
        if self.cache.as_ref().is_none_or(|(c, _)| *c != i) {
            let f = self
                .frames
                .get(i)
                .ok_or_else(|| corrupt(&self.path, 0, format!("no frame {i}")))?;
            let bytes = decompress_frame(&self.file, &self.path, f)?;
            self.cache = Some((i, bytes));
        }
        Ok(self
            .cache
            .as_ref()
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default())
    }

    /// `len` bytes at uncompressed `offset` (within one frame: lines never straddle frames).
    pub fn read_at(&mut self, offset: u64, len: u64) -> Result<&[u8], StoreError> {
        let path = self.path.clone();
        let i = self.frame_at_offset(offset).ok_or_else(|| {
            corrupt(
                &path,
                offset,
                format!(
                    "byte {offset} is outside the segment ({} bytes)",
                    self.table.raw_bytes
                ),
            )
        })?;
        let raw_off = self.frames.get(i).map_or(0, |f| f.raw_off);
        let frame = self.frame(i)?;
        let start = usize::try_from(offset - raw_off).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        frame
            .get(start..end)
            .ok_or_else(|| corrupt(&path, offset, "the line straddles a frame boundary"))
    }
}

fn decompress_frame(file: &File, path: &Path, f: &Frame) -> Result<Vec<u8>, StoreError> {
    let mut comp = vec![0u8; usize::try_from(f.comp_len).unwrap_or(0)];
    file.read_exact_at(&mut comp, f.comp_off)
        .map_err(|e| StoreError::io(path, e))?;
    let raw_len = usize::try_from(f.raw_len).unwrap_or(0);
    let bytes = zstd::bulk::decompress(&comp, raw_len).map_err(|e| {
        corrupt(
            path,
            f.comp_off,
            format!("frame at byte {} does not decompress: {e}", f.comp_off),
        )
    })?;
    if bytes.len() != raw_len {
        return Err(corrupt(
            path,
            f.comp_off,
            format!(
                "frame at byte {} holds {} bytes, the seek table says {raw_len}",
                f.comp_off,
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Sequential reading of a compressed segment from a frame on.
struct FrameReader {
    seg: ZstSegment,
    next: usize,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for FrameReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            let Some(f) = self.seg.frames.get(self.next) else {
                return Ok(0);
            };
            self.cur = decompress_frame(&self.seg.file, &self.seg.path, f)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.pos = 0;
            self.next += 1;
        }
        let rest = self.cur.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

/// Compresses the closed plain segment `src` into `<src>.zst` (see the module doc) and
/// removes `src`. The compressed file keeps `src`'s modification time (the time of its last
/// event), which retention goes by. Returns the compressed size.
pub fn compress_segment(src: &Path, fsync: bool) -> Result<u64, StoreError> {
    use std::io::Write;
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| corrupt(src, 0, "not a segment file name"))?;
    let (first, last, _) =
        parse_name(name).ok_or_else(|| corrupt(src, 0, "not a segment file name"))?;
    let mut dst_name = name.to_owned();
    dst_name.push_str(".zst");
    let dst = src.with_file_name(&dst_name);
    let tmp = src.with_file_name(format!("{dst_name}{TMP_EXT}"));
    let input = File::open(src).map_err(|e| StoreError::io(src, e))?;
    let mtime = input
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| StoreError::io(src, e))?;
    let mut out = crate::private::private(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
    )
    .open(&tmp)
    .map_err(|e| StoreError::io(&tmp, e))?;
    let mut compressor =
        zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| StoreError::io(&tmp, e))?;
    compressor
        .include_checksum(true)
        .map_err(|e| StoreError::io(&tmp, e))?;
    let mut lines = LineReader::new(input);
    let mut table = SeekTable {
        first_seq: first,
        last_seq: 0,
        last_hash: String::new(),
        raw_bytes: 0,
        frames: Vec::new(),
    };
    let mut chunk: Vec<u8> = Vec::with_capacity(FRAME_RAW_BYTES + 4096);
    let mut chunk_first = 0u64;
    let mut last_line: Vec<u8> = Vec::new();
    let mut comp_total = 0u64;
    let mut flush = |chunk: &mut Vec<u8>,
                     chunk_first: u64,
                     table: &mut SeekTable,
                     out: &mut File|
     -> Result<u64, StoreError> {
        let comp = compressor
            .compress(chunk)
            .map_err(|e| StoreError::io(&tmp, e))?;
        out.write_all(&comp).map_err(|e| StoreError::io(&tmp, e))?;
        table
            .frames
            .push((comp.len() as u64, chunk.len() as u64, chunk_first));
        table.raw_bytes += chunk.len() as u64;
        chunk.clear();
        Ok(comp.len() as u64)
    };
    while let Some(line) = lines.next_line().map_err(|e| StoreError::io(src, e))? {
        if chunk.is_empty() {
            chunk_first = line_seq(line)
                .ok_or_else(|| corrupt(src, table.raw_bytes, "a line without a seq"))?;
        }
        chunk.extend_from_slice(line);
        chunk.push(b'\n');
        last_line.clear();
        last_line.extend_from_slice(line);
        if chunk.len() >= FRAME_RAW_BYTES {
            comp_total += flush(&mut chunk, chunk_first, &mut table, &mut out)?;
        }
    }
    if lines.has_partial() {
        return Err(corrupt(src, 0, "a closed segment ends in a partial line"));
    }
    if !chunk.is_empty() {
        comp_total += flush(&mut chunk, chunk_first, &mut table, &mut out)?;
    }
    let parsed = parse_line(&last_line).map_err(|e| corrupt(src, table.raw_bytes, e))?;
    if parsed.seq != last {
        return Err(corrupt(
            src,
            table.raw_bytes,
            format!(
                "the segment's last event is seq {}, its name says {last}",
                parsed.seq
            ),
        ));
    }
    table.last_seq = parsed.seq;
    table.last_hash = parsed.hash.to_owned();
    let json = serde_json::to_vec(&table)?;
    let json_len =
        u32::try_from(json.len()).map_err(|_| corrupt(src, 0, "seek table too large"))?;
    let mut trailer = Vec::with_capacity(json.len() + 16);
    trailer.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    trailer.extend_from_slice(&(json_len + 8).to_le_bytes());
    trailer.extend_from_slice(&json);
    trailer.extend_from_slice(&json_len.to_le_bytes());
    trailer.extend_from_slice(TRAILER_MAGIC);
    out.write_all(&trailer)
        .map_err(|e| StoreError::io(&tmp, e))?;
    // Always synced: the plain file is removed on the strength of this one.
    out.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    out.set_modified(mtime)
        .map_err(|e| StoreError::io(&tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, &dst).map_err(|e| StoreError::io(&dst, e))?;
    if let Some(dir) = dst.parent() {
        sync_dir(dir);
    }
    std::fs::remove_file(src).map_err(|e| StoreError::io(src, e))?;
    if fsync {
        if let Some(dir) = dst.parent() {
            sync_dir(dir);
        }
    }
    Ok(comp_total + trailer.len() as u64)
}

/// Compresses every closed plain segment of `log`, finishing interrupted runs (a complete
/// `.zst` beside its plain file: the plain one is removed; a stray `.tmp`: removed).
/// Returns how many segments were compressed.
pub fn compress_closed(log: &Path, fsync: bool) -> Result<usize, StoreError> {
    let _files = lock_segment_files();
    let dir = segments_dir(log);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut plain = Vec::new();
    let mut zst = std::collections::BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_EXT) {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        match parse_name(&name) {
            Some((first, _, true)) => {
                zst.insert(first);
            }
            Some((first, _, false)) => plain.push((first, entry.path())),
            None => {}
        }
    }
    plain.sort();
    let mut done = 0;
    for (first, path) in plain {
        if zst.contains(&first) {
            // Interrupted after the rename: the compressed file is complete.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        compress_segment(&path, fsync)?;
        done += 1;
    }
    Ok(done)
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the audit segment directory");
    }
}

/// Renames the active segment `log` (holding seqs `first..=last`) into the segment directory
/// as a closed segment. Returns the new path.
pub(crate) fn close_active(log: &Path, first: u64, last: u64) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = segments_dir(log);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let dst = dir.join(closed_name(first, last));
    std::fs::rename(log, &dst)?;
    Ok(dst)
}

/// Seq, hash and end of the last line of a closed segment, and the ts of its events
/// (first, last) where cheap to know.
pub(crate) fn closed_tail(seg: &Segment) -> Result<(u64, String), StoreError> {
    if seg.compressed {
        let z = ZstSegment::open(&seg.path)?;
        return Ok((z.table.last_seq, z.table.last_hash.clone()));
    }
    let file = File::open(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io(&seg.path, e))?
        .len();
    let line = last_line(&file, len).map_err(|e| StoreError::io(&seg.path, e))?;
    let line = line.ok_or_else(|| corrupt(&seg.path, 0, "an empty closed segment"))?;
    let l = parse_line(&line).map_err(|e| corrupt(&seg.path, 0, e))?;
    Ok((l.seq, l.hash.to_owned()))
}

/// The last complete line of a file (without newline), if any.
fn last_line(file: &File, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut tail: Vec<u8> = Vec::new();
    // Skip the final newline, then collect back to the previous one.
    let mut seen_final = false;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        file.read_exact_at(&mut buf, start)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        if !seen_final {
            match tail.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    tail.truncate(i);
                    seen_final = true;
                }
                None => {
                    end = start;
                    continue;
                }
            }
        }
        if let Some(i) = tail.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(tail.split_off(i + 1)));
        }
        end = start;
    }
    Ok(seen_final.then_some(tail))
}

/// The first complete line of the active file (up to `len`), if any.
pub(crate) fn first_line(file: &File, len: u64) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut at = 0u64;
    while at < len {
        let n = file.read_at(&mut chunk, at).ok()?;
        if n == 0 {
            return None;
        }
        let got = chunk.get(..n)?;
        if let Some(i) = memchr::memchr(b'\n', got) {
            line.extend_from_slice(got.get(..i)?);
            return Some(line);
        }
        line.extend_from_slice(got);
        at += n as u64;
    }
    None
}

/// The seq of the oldest event still in the trail (`None`: an empty trail).
pub fn first_kept_seq(log: &Path) -> Result<Option<u64>, StoreError> {
    if let Some(s) = list_closed(log)?.first() {
        return Ok(Some(s.first_seq));
    }
    let file = match File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(log, e)),
    };
    let len = file.metadata().map_err(|e| StoreError::io(log, e))?.len();
    Ok(first_line(&file, len).and_then(|l| line_seq(&l)))
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Where a [`Reader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first event of the oldest kept segment.
    Beginning,
    /// The first event with a seq at or after this one.
    Seq(u64),
    /// Just after event `seq`, whose line ends at byte `offset` of its segment (what the
    /// index and exporters persist). `seq` 0 is the beginning.
    After { seq: u64, offset: u64 },
}

/// One line handed out by [`Reader::next_line`].
#[derive(Debug)]
pub struct Line<'a> {
    /// Without its newline.
    pub bytes: &'a [u8],
    /// Where the line starts in its (uncompressed) segment.
    pub offset: u64,
    /// The first seq of the segment holding it: with `offset`, where to find it again.
    pub segment_first_seq: u64,
}

enum Source {
    Plain(File),
    Frames(Box<FrameReader>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Frames(r) => r.read(buf),
        }
    }
}

/// The complete lines of the whole trail, oldest segment first, crossing from each closed
/// segment into the next and ending at the last complete line of the active one. Called again
/// after returning `None`, it picks up lines appended since, and follows a rotation (the file
/// it was reading was closed: it reads it to its end, then the new active segment).
pub struct Reader {
    log: PathBuf,
    segments: Vec<Segment>,
    idx: usize,
    lines: Option<LineReader<Source>>,
    /// Offset in the current segment of the next line.
    offset: u64,
    /// Lines with a smaller seq are skipped.
    skip_before: u64,
}

impl Reader {
    pub fn open(log: &Path, start: Start) -> Result<Reader, StoreError> {
        let segments = list(log)?;
        let (idx, offset, skip_before) = match start {
            Start::Beginning | Start::After { seq: 0, .. } => (0, 0, 0),
            Start::Seq(seq) => (find(&segments, seq), 0, seq),
            Start::After { seq, offset } => {
                let i = find(&segments, seq);
                match segments.get(i) {
                    // A resume point in a segment that retention removed: go on from the
                    // oldest kept one (the caller sees the seq gap).
                    Some(s) if !s.contains(seq) => (i, 0, seq.saturating_add(1)),
                    _ => (i, offset, seq.saturating_add(1)),
                }
            }
        };
        Ok(Reader {
            log: log.to_path_buf(),
            segments,
            idx,
            lines: None,
            offset,
            skip_before,
        })
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The segments as last listed.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Bytes after the last complete line of the active segment, once [`next_line`] returned
    /// `None` (a write in progress, or a line torn by a crash).
    ///
    /// [`next_line`]: Self::next_line
    pub fn partial_bytes(&self) -> u64 {
        match (&self.lines, self.segments.get(self.idx)) {
            (Some(l), Some(s)) if s.is_active() => (l.end - l.start) as u64,
            _ => 0,
        }
    }

    /// Where the next line starts: the first seq of its segment and the offset in it.
    pub fn position(&self) -> (u64, u64) {
        (
            self.segments.get(self.idx).map_or(0, |s| s.first_seq),
            self.offset,
        )
    }

    /// Opens the current segment at `self.offset`; `Ok(false)` if it does not exist (an active
    /// segment not created yet).
    fn open_current(&mut self) -> Result<bool, StoreError> {
        for _ in 0..8 {
            let Some(seg) = self.segments.get(self.idx).cloned() else {
                return Ok(false);
            };
            if seg.compressed {
                let mut z = match ZstSegment::open(&seg.path) {
                    Ok(z) => z,
                    Err(StoreError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        self.relist_keep(seg.first_seq)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let (next, skip) = if self.offset == 0 && self.skip_before > seg.first_seq {
                    let i = z.frame_for_seq(self.skip_before);
                    let raw_off = z.frames.get(i).map_or(0, |f| f.raw_off);
                    self.offset = raw_off;
                    (i, 0)
                } else if self.offset >= z.table.raw_bytes {
                    (z.frames.len(), 0)
                } else {
                    let i = z.frame_at_offset(self.offset).unwrap_or(0);
                    let raw_off = z.frames.get(i).map_or(0, |f| f.raw_off);
                    (i, usize::try_from(self.offset - raw_off).unwrap_or(0))
                };
                z.cache = None;
                let mut reader = FrameReader {
                    seg: z,
                    next,
                    cur: Vec::new(),
                    pos: 0,
                };
                if skip > 0 {
                    // Land inside the frame: decompress it and skip to the offset.
                    let mut sink = vec![0u8; skip];
                    reader
                        .read_exact(&mut sink)
                        .map_err(|e| read_error(&seg.path, self.offset, e))?;
                }
                self.lines = Some(LineReader::new(Source::Frames(Box::new(reader))));
                return Ok(true);
            }
            let file = match File::open(&seg.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if seg.is_active() {
                        return Ok(false);
                    }
                    // Compressed (or removed) since the listing.
                    self.relist_keep(seg.first_seq)?;
                    continue;
                }
                Err(e) => return Err(StoreError::io(&seg.path, e)),
            };
            if seg.is_active() {
                // The active file may have been rotated between the listing and the open: then
                // it is not the segment the listing describes. Only trust an open that no
                // rotation raced with.
                let closed_now = list_closed(&self.log)?;
                let closed_then = self.segments.len().saturating_sub(1);
                if closed_now.len() != closed_then
                    || closed_now.last().map(|s| s.first_seq)
                        != self
                            .segments
                            .get(closed_then.wrapping_sub(1))
                            .map(|s| s.first_seq)
                {
                    self.relist_keep(seg.first_seq)?;
                    continue;
                }
            }
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(&seg.path, e))?
                .len();
            if len < self.offset {
                return Err(corrupt(
                    &seg.path,
                    self.offset,
                    format!(
                        "the segment ({len} bytes) is shorter than the position read up to ({} bytes): truncated or replaced",
                        self.offset
                    ),
                ));
            }
            let mut file = file;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.offset))
                .map_err(|e| StoreError::io(&seg.path, e))?;
            self.lines = Some(LineReader::new(Source::Plain(file)));
            return Ok(true);
        }
        Err(corrupt(
            &self.log,
            0,
            "the audit segments keep changing while being read",
        ))
    }

    /// Lists the segments again and points at the one starting at `first_seq` (or the next
    /// one, if it is gone).
    fn relist_keep(&mut self, first_seq: u64) -> Result<(), StoreError> {
        self.segments = list(&self.log)?;
        self.idx = self
            .segments
            .iter()
            .position(|s| s.first_seq >= first_seq)
            .unwrap_or(self.segments.len().saturating_sub(1));
        if self.segments.get(self.idx).map(|s| s.first_seq) != Some(first_seq) {
            self.offset = 0;
        }
        Ok(())
    }

    /// The next complete line; `None` at the end of what is written so far.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, StoreError> {
        loop {
            if self.lines.is_none() && !self.open_current()? {
                return Ok(None);
            }
            // No per-line copy of the path: this runs for every event the indexer reads.
            let Some(seg) = self.segments.get(self.idx) else {
                return Ok(None);
            };
            let (first_seq, active) = (seg.first_seq, seg.is_active());
            let Some(lines) = self.lines.as_mut() else {
                return Ok(None);
            };
            if active {
                // Look for lines appended since the last end of file.
                lines.eof = false;
            }
            let offset = self.offset;
            let range = lines
                .next_range()
                .map_err(|e| read_error(&seg.path, offset, e))?;
            match range {
                Some((start, end)) => {
                    let offset = self.offset;
                    self.offset += (end - start) as u64 + 1;
                    if self.skip_before > 0 {
                        let seq = lines.buf.get(start..end).and_then(line_seq);
                        if seq.is_some_and(|s| s < self.skip_before) {
                            continue;
                        }
                        // Seqs only grow from here.
                        self.skip_before = 0;
                    }
                    let bytes = self
                        .lines
                        .as_ref()
                        .and_then(|l| l.buf.get(start..end))
                        .unwrap_or_default();
                    return Ok(Some(Line {
                        bytes,
                        offset,
                        segment_first_seq: first_seq,
                    }));
                }
                None if !active => {
                    if lines.has_partial() {
                        return Err(corrupt(
                            &seg.path,
                            self.offset,
                            "a closed segment ends in a partial line",
                        ));
                    }
                    self.idx += 1;
                    self.offset = 0;
                    self.lines = None;
                }
                None => {
                    // The end of the active file. If it was rotated meanwhile, everything
                    // written to it is there now: read on, then move to the next segment.
                    let closed = list_closed(&self.log)?;
                    if closed.iter().any(|s| s.first_seq == first_seq) {
                        let mut relisted = closed;
                        let first = relisted
                            .last()
                            .and_then(|s| s.last_seq)
                            .map_or(1, |l| l.saturating_add(1));
                        relisted.push(Segment {
                            first_seq: first,
                            last_seq: None,
                            path: self.log.clone(),
                            compressed: false,
                        });
                        self.idx = relisted
                            .iter()
                            .position(|s| s.first_seq == first_seq)
                            .unwrap_or(0);
                        self.segments = relisted;
                        continue;
                    }
                    return Ok(None);
                }
            }
        }
    }
}

/// The seq of the first event written at or after `ts_us` (`None`: none is), reading at most
/// the first line of each segment and one segment in full: segments are in time order.
pub fn seq_at_or_after(log: &Path, ts_us: i64) -> Result<Option<u64>, StoreError> {
    #[derive(Deserialize)]
    struct Ts {
        ts_us: i64,
    }
    let ts_of = |line: &[u8]| -> Option<(u64, i64)> {
        let l = parse_line(line).ok()?;
        let t = serde_json::from_str::<Ts>(l.event.get()).ok()?;
        Some((l.seq, t.ts_us))
    };
    let segments = list(log)?;
    // The last segment whose first event is before `ts_us`: the answer is in it or after it.
    let mut start = 0;
    for (i, seg) in segments.iter().enumerate() {
        let mut reader = Reader::open(log, Start::Seq(seg.first_seq))?;
        let first = match reader.next_line()? {
            Some(line) => ts_of(line.bytes),
            None => None,
        };
        match first {
            Some((_, ts)) if ts < ts_us => start = i,
            Some((seq, _)) if i == 0 => return Ok(Some(seq)),
            _ => break,
        }
    }
    let from = segments.get(start).map_or(1, |s| s.first_seq);
    let mut reader = Reader::open(log, Start::Seq(from))?;
    while let Some(line) = reader.next_line()? {
        if let Some((seq, ts)) = ts_of(line.bytes) {
            if ts >= ts_us {
                return Ok(Some(seq));
            }
        }
    }
    Ok(None)
}

/// A read error; data that does not decompress (or fails its checksum) is damage to the
/// trail, reported as such, not an I/O failure.
fn read_error(path: &Path, offset: u64, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        corrupt(path, offset, e.to_string())
    } else {
        StoreError::io(path, e)
    }
}

/// Random access to lines by `(seq, offset, len)`: what the index stores for each event.
pub(crate) struct LineAt {
    log: PathBuf,
    segments: Vec<Segment>,
    open: Option<(u64, OpenSegment)>,
    buf: Vec<u8>,
}

enum OpenSegment {
    Plain(File),
    Zst(Box<ZstSegment>),
}

impl LineAt {
    pub fn new(log: &Path) -> LineAt {
        LineAt {
            log: log.to_path_buf(),
            segments: list(log).unwrap_or_default(),
            open: None,
            buf: Vec::new(),
        }
    }

    fn segment_for(&mut self, seq: u64) -> Result<Segment, String> {
        for attempt in 0..2 {
            let i = find(&self.segments, seq);
            if let Some(s) = self.segments.get(i).filter(|s| s.contains(seq)) {
                let s = s.clone();
                // The listing may be stale (rotated, compressed since): check the file is there.
                if attempt == 1 || s.path.exists() {
                    return Ok(s);
                }
            }
            self.segments = list(&self.log).map_err(|e| e.to_string())?;
            self.open = None;
        }
        Err(format!(
            "event {seq} is in no segment of {} (removed by retention?)",
            self.log.display()
        ))
    }

    /// The line of event `seq` at `pos` (length `len`) of its segment. The position comes
    /// from the index, which may have been edited: it is checked against the segment's
    /// length before anything is allocated for it.
    pub fn line(&mut self, seq: u64, pos: i64, len: i64) -> Result<&[u8], String> {
        let seg = self.segment_for(seq)?;
        if self.open.as_ref().is_none_or(|(f, _)| *f != seg.first_seq) {
            let opened = if seg.compressed {
                OpenSegment::Zst(Box::new(
                    ZstSegment::open(&seg.path).map_err(|e| e.to_string())?,
                ))
            } else {
                OpenSegment::Plain(
                    File::open(&seg.path)
                        .map_err(|e| format!("cannot open {}: {e}", seg.path.display()))?,
                )
            };
            self.open = Some((seg.first_seq, opened));
        }
        let Some((_, open)) = self.open.as_mut() else {
            return Err("no segment open".into());
        };
        let seg_len = match open {
            OpenSegment::Plain(f) => f
                .metadata()
                .map_err(|e| format!("cannot read the log's length: {e}"))?
                .len(),
            OpenSegment::Zst(z) => z.table.raw_bytes,
        };
        let in_file = u64::try_from(pos)
            .ok()
            .zip(u64::try_from(len).ok())
            .filter(|&(p, l)| p.checked_add(l).is_some_and(|end| end <= seg_len));
        let Some((pos, len)) = in_file else {
            return Err(format!(
                "the index places the event at bytes {pos}+{len}, outside the log (its segment has {seg_len} bytes)"
            ));
        };
        match open {
            OpenSegment::Plain(f) => {
                let n = usize::try_from(len).map_err(|_| "event too large to read".to_string())?;
                self.buf.resize(n, 0);
                f.read_exact_at(&mut self.buf, pos).map_err(|e| {
                    format!("cannot read {len} bytes at byte {pos} of the log: {e}")
                })?;
                Ok(&self.buf)
            }
            OpenSegment::Zst(z) => z.read_at(pos, len).map_err(|e| e.to_string()),
        }
    }
}

/// Complete lines of a source read in large chunks and handed out in place (no per-line copy).
pub(crate) struct LineReader<R> {
    source: R,
    pub(crate) buf: Vec<u8>,
    start: usize,
    end: usize,
    pub(crate) eof: bool,
}

impl<R: Read> LineReader<R> {
    const CHUNK: usize = 1 << 20;

    pub fn new(source: R) -> Self {
        LineReader {
            source,
            buf: vec![0; Self::CHUNK],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Bytes after the last complete line (a write in progress, or a torn line).
    pub fn has_partial(&self) -> bool {
        self.end > self.start
    }

    /// The next line without its `\n`; `None` at the end of the complete lines.
    pub fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        Ok(match self.next_range()? {
            Some((s, e)) => self.buf.get(s..e),
            None => None,
        })
    }

    /// [`next_line`](Self::next_line) as a range of `buf`.
    pub fn next_range(&mut self) -> std::io::Result<Option<(usize, usize)>> {
        let mut searched = self.start;
        loop {
            let window = self.buf.get(searched..self.end).unwrap_or_default();
            if let Some(i) = memchr::memchr(b'\n', window) {
                let line_start = self.start;
                let line_end = searched + i;
                self.start = line_end + 1;
                return Ok(Some((line_start, line_end)));
            }
            if self.eof {
                return Ok(None);
            }
            // Keep the partial line, moved to the front, and read after it.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            searched = self.end;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let free = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.source.read(free) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = closed_name(1, 42);
        assert_eq!(parse_name(&n), Some((1, 42, false)));
        assert_eq!(parse_name(&format!("{n}.zst")), Some((1, 42, true)));
        assert_eq!(parse_name("audit.log"), None);
        assert_eq!(parse_name("5-3.log"), None);
        assert_eq!(parse_name(&format!("{n}.zst.tmp")), None);
    }

    #[test]
    fn last_line_finds_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let long = "x".repeat(200_000);
        std::fs::write(&p, format!("a\n{long}\n")).unwrap();
        let f = File::open(&p).unwrap();
        let len = f.metadata().unwrap().len();
        assert_eq!(last_line(&f, len).unwrap().unwrap(), long.as_bytes());
        std::fs::write(&p, "only\n").unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(last_line(&f, 5).unwrap().unwrap(), b"only");
    }
}
