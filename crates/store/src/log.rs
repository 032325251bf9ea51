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
//!
//! Segments ([`crate::segments`]): with [`SegmentOptions`] set, the writer closes the active
//! file when the next batch would take it past `max_bytes`, or when its first event is older
//! than `max_age`, by renaming it into `<log>.d/` and opening a new, empty active file, all
//! under the writer lock, so the next event simply continues the chain. With `fsync` the closed
//! file is fdatasynced before the rename (cheap: appends already synced it); without, it is
//! synced off the data path before the next checkpoint signs anything in it. A background
//! thread then compresses closed segments (`compress`).

use crate::chain::{chain_hash, chain_hex, parse_line, push_line, GENESIS_PREV};
use crate::segments;
use crate::{AuditEvent, AuditEventRef, EventKind, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

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
    /// When to close the active segment and start a new one.
    pub segments: SegmentOptions,
}

/// Rotation and compression of the trail's segments (`[audit] segment_max_bytes`,
/// `segment_max_age`, `compress`). The default (both limits 0/`None`) never rotates: one file,
/// as before segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Close the active segment before a batch would take it past this many bytes (0: no
    /// size limit). A single batch larger than this still goes into one segment.
    pub max_bytes: u64,
    /// Close the active segment at the first append after its first event is this old.
    pub max_age: Option<Duration>,
    /// Compress closed segments (zstd) on a background thread.
    pub compress: bool,
}

/// What [`AuditLog::apply_retention`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments: usize,
    pub bytes: u64,
    /// The seq range removed.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Chain hash of `last_seq`: the `prev` of the first kept event, so verification of the
    /// rest starts from it.
    pub last_hash: String,
    /// Seq of the `audit_retention` event recording the removal.
    pub event_seq: u64,
    /// Closed segments kept although old enough, because an exporter has not acknowledged
    /// their events yet.
    pub held_for_exporters: usize,
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
    maintainer: Option<JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    fsync: bool,
    seg: SegmentOptions,
    /// The file the syncer fdatasyncs: the active segment, swapped at rotation.
    sync_file: Mutex<Option<Arc<File>>>,
    /// Closed segments not yet fdatasynced (without `fsync`): synced before a checkpoint.
    closed_unsynced: Mutex<Vec<File>>,
    maint: Mutex<Maint>,
    maint_cv: Condvar,
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

#[derive(Default)]
struct Maint {
    /// A segment was closed: compress it.
    pending: bool,
    shutdown: bool,
}

struct Writer {
    file: File,
    /// End of the last complete line; the truncation point if a write fails halfway.
    len: u64,
    /// Seq of the active segment's first event (the next seq while it is empty).
    first_seq: u64,
    /// When the active segment's first event was written (µs since the epoch).
    started_us: Option<i64>,
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
        let mut tail = if meta.is_file() {
            recover_tail(&file, path, meta.len())?
        } else {
            // Devices and pipes (e.g. /dev/full in tests): nothing to recover.
            Tail::empty()
        };
        let (first_seq, started_us) = match segments::first_line(&file, tail.len) {
            Some(line) => match first_line_facts(&line) {
                Some(facts) => facts,
                None => {
                    let after_closed = segments::list_closed(path)?
                        .last()
                        .and_then(|s| s.last_seq)
                        .map_or(1, |l| l + 1);
                    (after_closed, None)
                }
            },
            None => {
                // An empty active segment (just rotated, or a crash between the rename and
                // the new file): the chain goes on from the last closed segment.
                if let Some(last) = segments::list_closed(path)?.last() {
                    let (seq, hash) = segments::closed_tail(last)?;
                    tail.last_seq = seq;
                    tail.last_hash = hash;
                }
                (tail.last_seq + 1, None)
            }
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
            Some(Arc::new(
                file.try_clone().map_err(|e| StoreError::io(path, e))?,
            ))
        } else {
            None
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            fsync: opts.fsync,
            seg: opts.segments,
            sync_file: Mutex::new(sync_file.clone()),
            closed_unsynced: Mutex::new(Vec::new()),
            maint: Mutex::new(Maint {
                pending: true,
                shutdown: false,
            }),
            maint_cv: Condvar::new(),
            writer: Mutex::new(Writer {
                file,
                len: tail.len,
                first_seq,
                started_us,
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
            Some(_) => {
                let shared = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("audit-fsync".into())
                        .spawn(move || shared.run_syncer())
                        .map_err(|e| StoreError::io(path, e))?,
                )
            }
            None => None,
        };
        let maintainer = if opts.segments.compress {
            let shared = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name("audit-segments".into())
                    .spawn(move || shared.run_maintainer())
                    .map_err(|e| StoreError::io(path, e))?,
            )
        } else {
            None
        };
        Ok(AuditLog {
            inner: Arc::new(Inner {
                shared,
                flusher: Some(flusher),
                syncer,
                maintainer,
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

    /// The trail's segments, closed ones first (see [`crate::segments`]).
    pub fn segments(&self) -> Result<Vec<segments::Segment>, StoreError> {
        segments::list(self.path())
    }

    /// Closes the active segment now (if it holds any event), as rotation by size or age
    /// would. Returns whether it did.
    pub fn rotate(&self) -> Result<bool, StoreError> {
        let shared = &self.inner.shared;
        // Pending deferred events belong to the segment being closed.
        shared.write_batch(&[])?;
        let mut guard = lock(&shared.writer);
        if let Some(reason) = &guard.poisoned {
            return Err(StoreError::Poisoned(reason.clone()));
        }
        if guard.len == 0 {
            return Ok(false);
        }
        shared.rotate(&mut guard)?;
        Ok(true)
    }

    /// fdatasyncs the segments closed since the last call (only needed without `fsync`, where
    /// rotation leaves that to this): a checkpoint calls it before signing.
    pub(crate) fn sync_closed(&self) -> Result<(), StoreError> {
        let files = std::mem::take(&mut *lock(&self.inner.shared.closed_unsynced));
        for (i, f) in files.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                // Keep the rest (this one included) for the next attempt.
                let mut pending = lock(&self.inner.shared.closed_unsynced);
                pending.extend(files.into_iter().skip(i));
                return Err(StoreError::io(self.path(), e));
            }
        }
        Ok(())
    }

    /// Compresses the closed segments now, on the calling thread (the background thread does
    /// the same after each rotation when `compress` is on). Returns how many it compressed.
    pub fn compress_closed(&self) -> Result<usize, StoreError> {
        segments::compress_closed(self.path(), self.inner.shared.fsync)
    }

    /// Retention: removes the oldest closed segments whose last event was written more than
    /// `max_age` before `now`, and whose events every exporter acknowledged (`acked`: the
    /// smallest acknowledged seq among the configured exporters; `None`: no exporter). Never
    /// the active segment, never a segment after one that must stay (the trail keeps no
    /// holes). The removal is itself an audit event, written *before* anything is deleted:
    /// `detail.audit_retention` names the seq range dropped and the chain hash of its last
    /// event, which is the `prev` of the first kept event, so `airlock audit verify` starts
    /// from there. `Ok(None)`: nothing to remove.
    pub fn apply_retention(
        &self,
        max_age: Duration,
        acked: Option<u64>,
        now: SystemTime,
    ) -> Result<Option<RetentionReport>, StoreError> {
        let _files = segments::lock_segment_files();
        let closed = segments::list_closed(self.path())?;
        let cutoff = now.checked_sub(max_age);
        let mut doomed: Vec<(segments::Segment, u64)> = Vec::new();
        let mut held = 0;
        for seg in &closed {
            let meta = std::fs::metadata(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
            let old = match (cutoff, meta.modified()) {
                (Some(cutoff), Ok(m)) => m <= cutoff,
                _ => false,
            };
            if !old {
                break;
            }
            let last = seg.last_seq.unwrap_or(u64::MAX);
            if held > 0 || acked.is_some_and(|a| last > a) {
                // This one and every later old one wait for the exporters (no holes).
                held += 1;
                continue;
            }
            doomed.push((seg.clone(), meta.len()));
        }
        let (Some((first, _)), Some((last, _))) = (doomed.first(), doomed.last()) else {
            if held > 0 {
                tracing::info!(
                    segments = held,
                    "old audit segments kept until the exporters acknowledge their events"
                );
            }
            return Ok(None);
        };
        let (last_seq, last_hash) = segments::closed_tail(last)?;
        let bytes: u64 = doomed.iter().map(|(_, b)| b).sum();
        let mut ev = AuditEvent::new(EventKind::Other);
        ev.detail = Some(serde_json::json!({ "audit_retention": {
            "first_seq": first.first_seq,
            "last_seq": last_seq,
            "last_hash": last_hash,
            "segments": doomed.len(),
            "bytes": bytes,
            "retention_secs": max_age.as_secs(),
        }}));
        let event_seq = self.append(&[ev])?;
        for (seg, _) in &doomed {
            if let Err(e) = std::fs::remove_file(&seg.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(StoreError::io(&seg.path, e));
                }
            }
        }
        segments::sync_dir(&segments::segments_dir(self.path()));
        Ok(Some(RetentionReport {
            segments: doomed.len(),
            bytes,
            first_seq: first.first_seq,
            last_seq,
            last_hash,
            event_seq,
            held_for_exporters: held,
        }))
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
        lock(&self.shared.maint).shutdown = true;
        self.shared.maint_cv.notify_all();
        if let Some(m) = self.maintainer.take() {
            let _ = m.join();
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
        if w.len > 0 && self.due_for_rotation(w) {
            // Rotation failing is not a reason to refuse the events: they go into the current
            // segment (unless it left the log poisoned).
            if let Err(e) = self.rotate(w) {
                tracing::error!(path = %self.path.display(), error = %e, "cannot close the audit segment; appending to the current one");
                if let Some(reason) = &w.poisoned {
                    return Err(StoreError::Poisoned(reason.clone()));
                }
            }
        }
        match write_all_counted(&mut w.file, &w.buf) {
            Ok(()) => {
                w.len += w.buf.len() as u64;
                w.last_seq = seq;
                w.last_hash = prev;
                if w.started_us.is_none() {
                    w.started_us = Some(AuditEvent::now_us());
                }
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

    fn due_for_rotation(&self, w: &Writer) -> bool {
        let by_size = self.seg.max_bytes > 0 && w.len + w.buf.len() as u64 > self.seg.max_bytes;
        let by_age = match (self.seg.max_age, w.started_us) {
            (Some(max), Some(started)) => {
                let age_us = AuditEvent::now_us().saturating_sub(started);
                u128::try_from(age_us).unwrap_or(0) >= max.as_micros()
            }
            _ => false,
        };
        by_size || by_age
    }

    /// Closes the active segment (holding `first_seq..=last_seq`) and opens a new one. On an
    /// error before the rename nothing changed; after it, the rename is undone if the new file
    /// cannot be created, and the log is poisoned only if that fails too.
    fn rotate(&self, w: &mut Writer) -> Result<(), StoreError> {
        // With `fsync` the file is already (nearly) all synced, so this is cheap, and the fsync
        // thread, which moves to the new file, must not be left owing the old one anything.
        // Without it, syncing up to a segment's worth of dirty pages here would stall every
        // appender: the closed file is synced later, off the data path, before a checkpoint
        // signs anything in it (`sync_closed`).
        if self.fsync {
            if let Err(e) = w.file.sync_data() {
                let reason = format!("fdatasync before closing the segment failed: {e}");
                w.poisoned = Some(reason.clone());
                lock(&self.sync).failed = Some(reason.clone());
                self.sync_done_cv.notify_all();
                return Err(StoreError::Poisoned(reason));
            }
        }
        let closed = segments::close_active(&self.path, w.first_seq, w.last_seq)
            .map_err(|e| StoreError::io(&self.path, e))?;
        let opened =
            crate::private::private(OpenOptions::new().read(true).append(true).create(true))
                .open(&self.path);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                if let Err(back) = std::fs::rename(&closed, &self.path) {
                    let reason = format!(
                        "cannot create a new audit segment ({e}) nor restore the old one ({back})"
                    );
                    w.poisoned = Some(reason.clone());
                    return Err(StoreError::Poisoned(reason));
                }
                return Err(StoreError::io(&self.path, e));
            }
        };
        if self.fsync {
            // Both directory entries (the renamed segment, the new active file) must survive a
            // power loss before events in the new file are acknowledged.
            sync_parent_dir(&self.path);
            if let Some(dir) = closed.parent() {
                segments::sync_dir(dir);
            }
            match file.try_clone() {
                Ok(clone) => *lock(&self.sync_file) = Some(Arc::new(clone)),
                Err(e) => {
                    let reason =
                        format!("cannot share the new audit segment with the fsync thread: {e}");
                    w.poisoned = Some(reason.clone());
                    return Err(StoreError::Poisoned(reason));
                }
            }
            // Everything in the closed file was synced above.
            let mut sync = lock(&self.sync);
            sync.synced = sync.synced.max(w.last_seq);
            sync.written = sync.written.max(w.last_seq);
            drop(sync);
            self.sync_done_cv.notify_all();
        }
        tracing::info!(segment = %closed.display(), first_seq = w.first_seq, last_seq = w.last_seq, bytes = w.len, "closed an audit segment");
        let old = std::mem::replace(&mut w.file, file);
        if !self.fsync {
            lock(&self.closed_unsynced).push(old);
        }
        w.len = 0;
        w.first_seq = w.last_seq + 1;
        w.started_us = None;
        lock(&self.maint).pending = true;
        self.maint_cv.notify_one();
        Ok(())
    }

    fn run_maintainer(&self) {
        loop {
            {
                let mut m = lock(&self.maint);
                while !m.pending && !m.shutdown {
                    m = self
                        .maint_cv
                        .wait(m)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if m.shutdown {
                    return;
                }
                m.pending = false;
            }
            match segments::compress_closed(&self.path, self.fsync) {
                Ok(0) => {}
                Ok(n) => tracing::info!(segments = n, "compressed closed audit segments"),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot compress a closed audit segment; it stays uncompressed")
                }
            }
        }
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

    fn run_syncer(&self) {
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
            // this one fdatasync covers all of them. The file is taken after `target`: a
            // rotation swaps it before writing to the new one (and syncs the old one itself).
            let file = lock(&self.sync_file).clone();
            let result = match file {
                Some(f) => f.sync_data(),
                None => Ok(()),
            };
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

/// Seq and timestamp of a line's event.
fn first_line_facts(line: &[u8]) -> Option<(u64, Option<i64>)> {
    #[derive(serde::Deserialize)]
    struct Ts {
        ts_us: Option<i64>,
    }
    let l = parse_line(line).ok()?;
    let ts = serde_json::from_str::<Ts>(l.event.get())
        .ok()
        .and_then(|t| t.ts_us);
    Some((l.seq, ts))
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
