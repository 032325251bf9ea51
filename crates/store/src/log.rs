//! The append-only audit log file.
//!
//! Writers: one `Mutex` orders appends; each append chains its events and hands all their lines
//! to the kernel in a single `write` on an `O_APPEND` descriptor, so a crash can only cut the
//! last line short (repaired on [`AuditLog::open`]). With `fsync` on, a dedicated thread runs
//! `fdatasync` and releases every appender whose seq it covered (group commit).
//!
//! Failure policy: if a write fails after the kernel accepted part of the batch, the file is
//! truncated back to its last complete line. If that truncation or an fsync fails, the log is
//! *poisoned*: every later append returns [`StoreError::Poisoned`] (the gateway then refuses
//! commands) until the log is reopened. A poisoned log never writes again, so it can never
//! append a line after a half line.
//!
//! Only one `AuditLog` (one process) may write a given file at a time.

use crate::chain::{chain_hash, chain_hex, parse_line, push_line, GENESIS_PREV};
use crate::{AuditEvent, AuditEventRef, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a deferred event may wait for a regular append to carry it to the file.
const DEFERRED_MAX_DELAY: Duration = Duration::from_millis(200);
const TAIL_CHUNK: usize = 64 * 1024;
/// A write buffer grown beyond this by one huge batch is released rather than kept.
const KEEP_BUF_CAPACITY: usize = 1 << 20;
/// Initial capacity of one event's JSON: a command event is typically 250-450 bytes.
const EVENT_JSON_CAPACITY: usize = 512;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditOptions {
    /// Group-committed `fdatasync` before `append` returns (SPEC `[audit] fsync`).
    pub fsync: bool,
}

/// What [`AuditLog::open`] removed from the end of the file: a line cut short by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The file length after truncation (the end of the last complete line).
    pub truncated_to: u64,
    pub dropped_bytes: u64,
}

/// Counters since open; `fsyncs` much smaller than `appends` shows group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStats {
    pub events: u64,
    pub writes: u64,
    pub fsyncs: u64,
}

/// Handle to an open audit log; cheap to clone and share between threads. Background threads
/// stop, pending deferred events are written and (with fsync) synced when the last clone drops.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    fsync: bool,
    writer: Mutex<Writer>,
    deferred: Mutex<Deferred>,
    deferred_cv: Condvar,
    sync: Mutex<SyncState>,
    sync_work_cv: Condvar,
    sync_done_cv: Condvar,
    recovered: Option<Recovery>,
    events: AtomicU64,
    writes: AtomicU64,
    fsyncs: AtomicU64,
}

struct Writer {
    file: File,
    /// End of the last complete line; the truncation point if a write fails halfway.
    len: u64,
    last_seq: u64,
    last_hash: String,
    poisoned: Option<String>,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Deferred {
    /// Already serialized, so the flush under the writer lock only hashes and copies.
    events: Vec<Vec<u8>>,
    /// The flusher is already counting down; no need to wake it.
    armed: bool,
    shutdown: bool,
}

struct SyncState {
    written: u64,
    synced: u64,
    failed: Option<String>,
    shutdown: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way
    // that matters more than refusing all further audit writes would, so keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`, truncating a partial last line left by a
    /// crash (reported by [`AuditLog::recovered`] and a `tracing` warning). A complete last
    /// line that does not parse or whose hash does not match is `Err(Corrupt)`: that is not a
    /// crash artifact, and appending after it would hide the damage.
    pub fn open(path: &Path, opts: AuditOptions) -> Result<AuditLog, StoreError> {
        let existed = path.exists();
        let file = crate::private::private(OpenOptions::new().read(true).append(true).create(true))
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        crate::private::tighten(&file, path);
        let meta = file.metadata().map_err(|e| StoreError::io(path, e))?;
        let tail = if meta.is_file() {
            recover_tail(&file, path, meta.len())?
        } else {
            // Devices and pipes (e.g. /dev/full in tests): nothing to recover.
            Tail::empty()
        };
        if let Some(r) = &tail.recovered {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = r.dropped_bytes,
                truncated_to = r.truncated_to,
                "audit log ended with a partial line (crash during a write); truncated it"
            );
        }
        if opts.fsync {
            file.sync_all().map_err(|e| StoreError::io(path, e))?;
            if !existed {
                sync_parent_dir(path);
            }
        }
        let sync_file = if opts.fsync {
            Some(file.try_clone().map_err(|e| StoreError::io(path, e))?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            fsync: opts.fsync,
            writer: Mutex::new(Writer {
                file,
                len: tail.len,
                last_seq: tail.last_seq,
                last_hash: tail.last_hash,
                poisoned: None,
                buf: Vec::with_capacity(4096),
            }),
            deferred: Mutex::new(Deferred::default()),
            deferred_cv: Condvar::new(),
            sync: Mutex::new(SyncState {
                written: tail.last_seq,
                synced: tail.last_seq,
                failed: None,
                shutdown: false,
            }),
            sync_work_cv: Condvar::new(),
            sync_done_cv: Condvar::new(),
            recovered: tail.recovered,
            events: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("audit-flusher".into())
                .spawn(move || shared.run_flusher())
                .map_err(|e| StoreError::io(path, e))?
        };
        let syncer = match sync_file {
            Some(sync_file) => {
                let shared = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("audit-fsync".into())
                        .spawn(move || shared.run_syncer(sync_file))
                        .map_err(|e| StoreError::io(path, e))?,
                )
            }
            None => None,
        };
        Ok(AuditLog {
            inner: Arc::new(Inner {
                shared,
                flusher: Some(flusher),
                syncer,
            }),
        })
    }

    /// Appends `events` (after any pending deferred ones) and returns the seq of the last
    /// event written. When this returns `Ok`, the lines are in the file (`write` returned) and,
    /// with `fsync`, on stable storage. On `Err` none of `events` is in the log.
    pub fn append(&self, events: &[AuditEvent]) -> Result<u64, StoreError> {
        self.append_serialized(events)
    }

    /// [`append`](Self::append) for borrowed events (the per-statement hot path): the same
    /// lines, without building owned events first.
    pub fn append_refs(&self, events: &[AuditEventRef<'_>]) -> Result<u64, StoreError> {
        self.append_serialized(events)
    }

    fn append_serialized<T: serde::Serialize>(&self, events: &[T]) -> Result<u64, StoreError> {
        let serialized = events.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
        let shared = &self.inner.shared;
        let seq = shared.write_batch(&serialized)?;
        if shared.fsync {
            shared.wait_synced(seq)?;
        }
        Ok(seq)
    }

    /// Queues an event that need not precede anything (a command's result). It is written
    /// with the next [`append`](Self::append), by the background flusher within about
    /// 200 ms, or by [`flush`](Self::flush) / the drop of the last handle. If writing keeps
    /// failing, queued events stay in memory and are retried.
    pub fn append_deferred(&self, event: AuditEvent) {
        self.defer_serialized(&event, event.kind.as_str());
    }

    /// [`append_deferred`](Self::append_deferred) for a borrowed event.
    pub fn append_deferred_ref(&self, event: &AuditEventRef<'_>) {
        self.defer_serialized(event, event.kind.as_str());
    }

    fn defer_serialized<T: serde::Serialize>(&self, event: &T, kind: &str) {
        let json = match to_json(event) {
            Ok(json) => json,
            Err(e) => {
                // Unreachable for these types (string keys only); never drop silently anyway.
                tracing::error!(error = %e, kind, "cannot serialize audit event");
                return;
            }
        };
        let shared = &self.inner.shared;
        let wake = {
            let mut deferred = lock(&shared.deferred);
            let wake = deferred.events.is_empty() && !deferred.armed;
            deferred.events.push(json);
            wake
        };
        if wake {
            shared.deferred_cv.notify_one();
        }
    }

    /// Writes pending deferred events and, with fsync, waits until everything written so far
    /// is synced. Returns the last seq in the log.
    pub fn flush(&self) -> Result<u64, StoreError> {
        let shared = &self.inner.shared;
        let seq = shared.write_batch(&[])?;
        if shared.fsync {
            shared.wait_synced(seq)?;
        }
        Ok(seq)
    }

    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Seq of the last event written (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner.shared.writer).last_seq
    }

    /// Seq and chain hash of the last event written (`(0, GENESIS_PREV)` for an empty log):
    /// what a signed checkpoint covers.
    pub fn head(&self) -> (u64, String) {
        let w = lock(&self.inner.shared.writer);
        (w.last_seq, w.last_hash.clone())
    }

    /// Set when open truncated a partial last line.
    pub fn recovered(&self) -> Option<&Recovery> {
        self.inner.shared.recovered.as_ref()
    }

    /// Why the log refuses appends, if it does.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.inner.shared.writer).poisoned.clone()
    }

    pub fn stats(&self) -> AuditStats {
        let shared = &self.inner.shared;
        AuditStats {
            events: shared.events.load(Ordering::Relaxed),
            writes: shared.writes.load(Ordering::Relaxed),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.inner.shared.path)
            .field("fsync", &self.inner.shared.fsync)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        lock(&self.shared.deferred).shutdown = true;
        self.shared.deferred_cv.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        lock(&self.shared.sync).shutdown = true;
        self.shared.sync_work_cv.notify_all();
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
    }
}

impl Shared {
    /// Chains pending deferred events then `own`, writes them in one `write`, returns the last
    /// seq in the log.
    fn write_batch(&self, own: &[Vec<u8>]) -> Result<u64, StoreError> {
        let mut guard = lock(&self.writer);
        let w = &mut *guard;
        if let Some(reason) = &w.poisoned {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        let deferred = std::mem::take(&mut lock(&self.deferred).events);
        if deferred.is_empty() && own.is_empty() {
            return Ok(w.last_seq);
        }
        if w.buf.capacity() > KEEP_BUF_CAPACITY {
            w.buf = Vec::with_capacity(4096);
        }
        w.buf.clear();
        let mut seq = w.last_seq;
        let mut prev = w.last_hash.clone();
        for json in deferred.iter().chain(own) {
            seq += 1;
            let hex = chain_hex(seq, &prev, json);
            // Hex digits are ASCII.
            let hash = std::str::from_utf8(&hex).unwrap_or_default();
            push_line(&mut w.buf, seq, &prev, hash, json);
            prev.clear();
            prev.push_str(hash);
        }
        let count = deferred.len() + own.len();
        match write_all_counted(&mut w.file, &w.buf) {
            Ok(()) => {
                w.len += w.buf.len() as u64;
                w.last_seq = seq;
                w.last_hash = prev;
            }
            Err((written, e)) => {
                if !deferred.is_empty() {
                    let mut queue = lock(&self.deferred);
                    let newer = std::mem::replace(&mut queue.events, deferred);
                    queue.events.extend(newer);
                }
                if written > 0 {
                    if let Err(te) = w.file.set_len(w.len) {
                        let reason = format!(
                            "write failed after {written} bytes ({e}) and truncating back failed ({te})"
                        );
                        tracing::error!(path = %self.path.display(), "{reason}; audit log poisoned");
                        w.poisoned = Some(reason);
                    }
                }
                return Err(StoreError::io(&self.path, e));
            }
        }
        drop(guard);
        self.events.fetch_add(count as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        if self.fsync {
            let mut sync = lock(&self.sync);
            if sync.written < seq {
                sync.written = seq;
                self.sync_work_cv.notify_one();
            }
        }
        Ok(seq)
    }

    fn wait_synced(&self, seq: u64) -> Result<(), StoreError> {
        let mut sync = lock(&self.sync);
        if sync.written < seq {
            sync.written = seq;
            self.sync_work_cv.notify_one();
        }
        while sync.synced < seq {
            if let Some(reason) = &sync.failed {
                return Err(StoreError::Poisoned(reason.clone()));
            }
            sync = self
                .sync_done_cv
                .wait(sync)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        Ok(())
    }

    fn run_syncer(&self, file: File) {
        loop {
            let target = {
                let mut sync = lock(&self.sync);
                while sync.written <= sync.synced && !sync.shutdown && sync.failed.is_none() {
                    sync = self
                        .sync_work_cv
                        .wait(sync)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if sync.written <= sync.synced || sync.failed.is_some() {
                    return;
                }
                sync.written
            };
            // Every line up to `target` was fully written before `written` reached it, so
            // this one fdatasync covers all of them.
            let result = file.sync_data();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            let failure = {
                let mut sync = lock(&self.sync);
                match result {
                    Ok(()) => sync.synced = sync.synced.max(target),
                    // After a failed fsync the kernel may have dropped the dirty pages, so a
                    // retry could falsely succeed: stop claiming durability altogether.
                    Err(e) => sync.failed = Some(format!("fdatasync failed: {e}")),
                }
                sync.failed.clone()
            };
            self.sync_done_cv.notify_all();
            if let Some(reason) = failure {
                tracing::error!(path = %self.path.display(), "{reason}; audit log poisoned");
                lock(&self.writer).poisoned = Some(reason);
                return;
            }
        }
    }

    fn run_flusher(&self) {
        let mut failing = false;
        loop {
            {
                let mut deferred = lock(&self.deferred);
                while deferred.events.is_empty() && !deferred.shutdown {
                    deferred = self
                        .deferred_cv
                        .wait(deferred)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if deferred.shutdown {
                    break;
                }
                // Give a regular append the chance to carry these events for free.
                deferred.armed = true;
                let (mut deferred, _) = self
                    .deferred_cv
                    .wait_timeout_while(deferred, DEFERRED_MAX_DELAY, |d| !d.shutdown)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                deferred.armed = false;
            }
            match self.write_batch(&[]) {
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot write deferred audit events; will retry");
                    }
                    failing = true;
                }
            }
        }
        if let Err(e) = self.write_batch(&[]) {
            let pending = lock(&self.deferred).events.len();
            tracing::error!(path = %self.path.display(), error = %e, pending, "deferred audit events lost at close");
        }
    }
}

/// An event's JSON, serialized into a buffer sized for a typical command event so that it is
/// not regrown several times on the hot path.
fn to_json<T: serde::Serialize>(event: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut json = Vec::with_capacity(EVENT_JSON_CAPACITY);
    serde_json::to_writer(&mut json, event)?;
    Ok(json)
}

/// Writes `buf` with as few `write` calls as the kernel allows (one for a regular file),
/// reporting how much was written if it fails.
fn write_all_counted(file: &mut File, buf: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut written = 0;
    while let Some(rest) = buf.get(written..).filter(|r| !r.is_empty()) {
        match file.write(rest) {
            Ok(0) => {
                return Err((
                    written,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "write returned 0"),
                ))
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Makes the new file's directory entry durable; not possible on every platform.
    if let Err(e) = File::open(parent).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %parent.display(), error = %e, "cannot fsync the audit log's directory");
    }
}

struct Tail {
    len: u64,
    last_seq: u64,
    last_hash: String,
    recovered: Option<Recovery>,
}

impl Tail {
    fn empty() -> Self {
        Tail {
            len: 0,
            last_seq: 0,
            last_hash: GENESIS_PREV.to_string(),
            recovered: None,
        }
    }
}

/// Finds the last complete line, truncating anything after it.
fn recover_tail(file: &File, path: &Path, len: u64) -> Result<Tail, StoreError> {
    let io_err = |e| StoreError::io(path, e);
    let mut tail = Tail::empty();
    if len == 0 {
        return Ok(tail);
    }
    let last_newline = rfind_newline(file, len).map_err(io_err)?;
    let complete_end = last_newline.map_or(0, |p| p + 1);
    if complete_end < len {
        file.set_len(complete_end).map_err(io_err)?;
        tail.recovered = Some(Recovery {
            truncated_to: complete_end,
            dropped_bytes: len - complete_end,
        });
    }
    tail.len = complete_end;
    let Some(line_end) = last_newline else {
        return Ok(tail);
    };
    let line_start = rfind_newline(file, line_end)
        .map_err(io_err)?
        .map_or(0, |p| p + 1);
    let line_len = usize::try_from(line_end - line_start).map_err(|_| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: line_start,
        reason: "last line too long".into(),
    })?;
    let mut line = vec![0u8; line_len];
    let mut reader = file;
    reader.seek(SeekFrom::Start(line_start)).map_err(io_err)?;
    reader.read_exact(&mut line).map_err(io_err)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: line_start,
        reason,
    };
    let parsed = parse_line(&line).map_err(corrupt)?;
    let event = parsed.event.get().as_bytes();
    if chain_hash(parsed.seq, parsed.prev, event) != parsed.hash {
        return Err(corrupt(format!(
            "last event (seq {}) does not match its hash",
            parsed.seq
        )));
    }
    tail.last_seq = parsed.seq;
    tail.last_hash = parsed.hash.to_string();
    Ok(tail)
}

/// Offset of the last `\n` strictly before `before`.
fn rfind_newline(file: &File, before: u64) -> std::io::Result<Option<u64>> {
    let mut reader = file;
    let mut end = before;
    let mut chunk = vec![0u8; TAIL_CHUNK];
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK as u64);
        let n = (end - start) as usize;
        let window = chunk.get_mut(..n).unwrap_or_default();
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(window)?;
        if let Some(i) = window.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}
