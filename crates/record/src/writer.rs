//! The recorder the data path calls, and the one writer thread behind it.
//!
//! Data path side ([`Recorder`]): every method takes `&self`, copies what it is given into
//! frames kept in a small per-session buffer under an uncontended mutex, and hands full
//! buffers to the writer with `try_send` on a bounded channel. It never waits for the disk or
//! the writer: when the channel is full the frames are discarded and counted, and the next
//! batch that gets through starts with a [`Frame::Dropped`] saying how many.
//!
//! Writer side: serializes frames to JSON lines per recording and, at least every
//! `flush_interval` (1 s) or when 256 KiB are pending, compresses them into one independent
//! zstd frame appended to the recording's file with a single `write`. A crash (SIGKILL) so
//! loses at most the last interval; what is in the file always decodes.

use crate::format::{
    body_excerpt, encode_bytes, encode_value, incomplete_utf8_tail, Frame, FORMAT_VERSION,
};
use crate::{now_us, recording_path, RecordError};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Uncompressed bytes pending for one recording before the writer compresses them early.
const CHUNK_BYTES: usize = 256 * 1024;
/// Frames a session buffers before handing them to the writer (also sent at every statement
/// boundary and on [`Recorder::flush`]).
const BATCH_FRAMES: usize = 128;
const BATCH_BYTES: usize = 64 * 1024;
/// A batch older than this is sent with the next call even if small.
const BATCH_AGE: Duration = Duration::from_millis(200);
/// Terminal bytes of one direction are coalesced into one frame until this many are pending
/// (a `cat` of a large file becomes 32 KiB frames, not one frame per `read`)...
const TERM_CHUNK_BYTES: usize = 32 * 1024;
/// ...or until the first of them is this old: below what a replay can show as a pause, and
/// one frame per keystroke echo when a person types.
const TERM_CHUNK_AGE: Duration = Duration::from_millis(20);
/// Header values recorded as `[redacted]` whatever the adapter selects: they carry
/// credentials, and a recording is data at rest.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
    "x-auth-token",
];
/// How often the writer looks at its queue when it is empty.
const POLL: Duration = Duration::from_millis(10);

/// How recordings are written.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// `data_dir/recordings`.
    pub dir: PathBuf,
    /// Rows kept per statement; later rows are counted, not recorded.
    pub max_rows: u64,
    /// Bytes of row values kept per statement.
    pub max_bytes_per_statement: u64,
    /// Bytes of a request or response body kept (the excerpt); the total length is always
    /// recorded.
    pub max_body_excerpt: usize,
    /// Upper bound on what a crash loses.
    pub flush_interval: Duration,
    /// Batches queued for the writer before the data path starts dropping.
    pub queue_batches: usize,
    /// zstd level. 1: measured in the gateway on sysbench `oltp_read_only` sessions (random
    /// 120-character strings, 256 KiB chunks), level 1 cost the recording thread 304 µs per
    /// transaction against 393 µs at level 3 and wrote 11.0 KB against 11.9 KB per transaction
    /// (`bash scripts/bench-mysql.sh --rounds 1 --time 10 --keep`, back to back); on pgbench's
    /// one-number rows 1 is also the faster and smaller (`zstd -b1 -e3`: 812 vs 637 MB/s).
    pub level: i32,
}

impl RecordingConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordingConfig {
            dir: dir.into(),
            max_rows: 1000,
            max_bytes_per_statement: 1 << 20,
            max_body_excerpt: 64 * 1024,
            flush_interval: Duration::from_secs(1),
            queue_batches: 16384,
            level: 1,
        }
    }
}

/// Who and what a recording is about; written as its `start` frame.
#[derive(Debug, Clone, Default)]
pub struct SessionMeta {
    pub session_id: String,
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub protocol: Option<String>,
    pub peer: Option<String>,
}

/// A request of a request/response protocol, for [`Recorder::request`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// `GET`, `POST`; for MCP the JSON-RPC method (`tools/call`).
    pub method: &'a str,
    /// Path and query (`/api/v1/namespaces/x/pods?limit=5`), or the protocol's equivalent
    /// (the AWS action, the MCP tool name).
    pub target: &'a str,
    /// The headers worth keeping, in order; credential headers are redacted here anyway.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, or its first bytes (at least [`Recorder::body_excerpt_cap`] of them when the
    /// adapter streams it, so it need not buffer more); already masked.
    pub body: &'a [u8],
    /// The body's total length if `body` is only its beginning.
    pub body_len: Option<u64>,
    /// The gateway's decision (`allow`, `deny`, `review`) and the rule that made it.
    pub decision: &'a str,
    pub rule: Option<&'a str>,
}

/// The response to a request, for [`Recorder::response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Response<'a> {
    /// `200`, `404`, or the protocol's equivalent (MCP `ok`, `error -32601`).
    pub status: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub body_len: Option<u64>,
    /// From the request to the end of the response.
    pub elapsed: Duration,
}

/// Counters over all recordings of a [`Recordings`] service.
#[derive(Debug, Default)]
pub struct RecordingStats {
    pub frames_dropped: AtomicU64,
    pub chunks_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub write_errors: AtomicU64,
}

enum Msg {
    Open {
        id: u64,
        path: PathBuf,
        frame: Frame,
    },
    Frames {
        id: u64,
        batch: Batch,
    },
    Close {
        id: u64,
        batch: Batch,
    },
    Flush(mpsc::Sender<()>),
    Shutdown,
}

/// The recording service: one writer thread for all sessions. Cheap to clone.
#[derive(Clone)]
pub struct Recordings {
    inner: Arc<Service>,
}

struct Service {
    cfg: RecordingConfig,
    tx: SyncSender<Msg>,
    next_id: AtomicU64,
    stats: Arc<RecordingStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called (on the writer thread) when a session's recording cannot be written, with the
/// recording's path and the error: the gateway audits it, so no recording is lost silently.
pub type FailureHook = Arc<dyn Fn(&Path, &str) + Send + Sync>;

impl Recordings {
    /// Starts the writer thread. Creates `cfg.dir` (0700: recordings hold result data).
    pub fn start(cfg: RecordingConfig) -> Result<Recordings, RecordError> {
        Self::start_with_hook(cfg, None)
    }

    /// [`Recordings::start`], calling `on_failure` for every recording that stops because it
    /// cannot be written.
    pub fn start_with_hook(
        cfg: RecordingConfig,
        on_failure: Option<FailureHook>,
    ) -> Result<Recordings, RecordError> {
        create_private_dir(&cfg.dir)?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue_batches.max(1));
        let stats = Arc::new(RecordingStats::default());
        let thread = {
            let stats = Arc::clone(&stats);
            let thread_cfg = cfg.clone();
            std::thread::Builder::new()
                .name("recording-writer".into())
                .spawn(move || WriterThread::new(thread_cfg, stats, on_failure).run(rx))
                .map_err(|e| RecordError::io(&cfg.dir, e))?
        };
        Ok(Recordings {
            inner: Arc::new(Service {
                cfg,
                tx,
                next_id: AtomicU64::new(1),
                stats,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn config(&self) -> &RecordingConfig {
        &self.inner.cfg
    }

    pub fn stats(&self) -> &RecordingStats {
        &self.inner.stats
    }

    /// Begins the recording of a session (see [`Recorder::start`]).
    pub fn start_session(&self, meta: SessionMeta) -> Recorder {
        Recorder::start(self, meta)
    }

    /// Waits until everything sent so far is in the files (tests, shutdown).
    pub fn flush(&self) {
        let (ack, done) = mpsc::channel();
        if self.inner.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(30));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Blocking is fine here: this is shutdown, not the data path.
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// Per-statement caps and counts.
#[derive(Default)]
struct StatementState {
    seq: u64,
    rows_seen: u64,
    rows_recorded: u64,
    bytes_recorded: u64,
    truncated: bool,
}

/// Frames on their way to the writer. Rows are kept as raw bytes in one buffer (no
/// allocation per value on the data path); the writer turns them into JSON.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    /// Per row: per value `0` (NULL) or `1`, u32 LE length, bytes.
    raw: Vec<u8>,
}

enum Item {
    Frame(Frame),
    /// A row whose values end at `end` in [`Batch::raw`] (they start where the previous
    /// row ended).
    Row {
        seq: u64,
        end: usize,
    },
}

/// Terminal bytes of one direction not yet made into a frame (see [`TERM_CHUNK_BYTES`]).
struct TermChunk {
    input: bool,
    at_us: u64,
    since: Instant,
    data: Vec<u8>,
}

struct Pending {
    frames: Batch,
    term: Option<TermChunk>,
    /// Per direction (output, input): the start of a UTF-8 character cut by a chunk boundary,
    /// put in front of the next chunk of that direction.
    term_carry: [Vec<u8>; 2],
    bytes: usize,
    since: Option<Instant>,
    dropped_unreported: u64,
    stmt: StatementState,
    ended: bool,
}

/// One session's recording. `Send + Sync`: the relay's two tasks may share it in an `Arc`.
/// Methods never block on I/O (see the module docs).
pub struct Recorder {
    svc: Arc<Service>,
    id: u64,
    path: PathBuf,
    pending: Mutex<Pending>,
    dropped: AtomicU64,
    /// The session start on the monotonic clock: terminal frames' `at_us` count from here,
    /// so they never go backwards (asciicast needs increasing times) when the wall clock
    /// steps.
    started: Instant,
}

impl Recorder {
    /// Opens `recordings/<yyyy-mm-dd>/<session_id>.alrec.zst` (UTC date of now) on the writer
    /// thread and records the `start` frame.
    pub fn start(recordings: &Recordings, meta: SessionMeta) -> Recorder {
        let svc = Arc::clone(&recordings.inner);
        let id = svc.next_id.fetch_add(1, Ordering::Relaxed);
        let ts_us = now_us();
        let path = recording_path(&svc.cfg.dir, &meta.session_id, ts_us);
        let frame = Frame::Start {
            v: FORMAT_VERSION,
            ts_us,
            session_id: meta.session_id,
            identity: meta.identity,
            connection: meta.connection,
            protocol: meta.protocol,
            peer: meta.peer,
        };
        let recorder = Recorder {
            svc,
            id,
            path: path.clone(),
            pending: Mutex::new(Pending {
                frames: Batch::default(),
                term: None,
                term_carry: [Vec::new(), Vec::new()],
                bytes: 0,
                since: None,
                dropped_unreported: 0,
                stmt: StatementState::default(),
                ended: false,
            }),
            dropped: AtomicU64::new(0),
            started: Instant::now(),
        };
        if recorder
            .svc
            .tx
            .try_send(Msg::Open { id, path, frame })
            .is_err()
        {
            // Without its Open the writer ignores this recording's frames: count them all.
            recorder.dropped.fetch_add(1, Ordering::Relaxed);
            recorder
                .svc
                .stats
                .frames_dropped
                .fetch_add(1, Ordering::Relaxed);
            lock(&recorder.pending).ended = true;
        }
        recorder
    }

    /// Where this recording is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames discarded because the writer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A statement as the client sent it, with its decision (`allow`, `deny`, `review`) and
    /// rule. Starts a new statement for the row caps.
    pub fn statement(&self, seq: u64, text: &str, decision: &str, rule: Option<&str>) {
        let mut p = lock(&self.pending);
        p.stmt = StatementState {
            seq,
            ..StatementState::default()
        };
        let bytes = text.len();
        self.push(
            &mut p,
            Frame::Statement {
                seq,
                ts_us: now_us(),
                text: text.to_owned(),
                decision: decision.to_owned(),
                rule: rule.map(str::to_owned),
            },
            bytes,
        );
    }

    /// The result's column names.
    pub fn columns(&self, seq: u64, names: &[&str]) {
        self.columns_aligned(seq, names, &[]);
    }

    /// Column names with, per column, whether psql would right-align it (numbers; see
    /// [`crate::pg_right_aligned`]). `right` may be empty.
    pub fn columns_aligned(&self, seq: u64, names: &[&str], right: &[bool]) {
        let mut p = lock(&self.pending);
        // Each result set of a statement (a multi-statement query has several) gets the caps
        // and its own counts.
        p.stmt = StatementState {
            seq,
            ..StatementState::default()
        };
        let bytes = names.iter().map(|n| n.len()).sum();
        let align = right.iter().map(|&r| if r { 'r' } else { 'l' }).collect();
        self.push(
            &mut p,
            Frame::Columns {
                seq,
                names: names.iter().map(|n| (*n).to_owned()).collect(),
                align,
            },
            bytes,
        );
    }

    /// One row of (already masked) text-format values; `None` is SQL NULL. Rows beyond the
    /// caps are counted only.
    pub fn row(&self, seq: u64, values: &[Option<&[u8]>]) {
        let mut p = lock(&self.pending);
        if p.stmt.seq != seq {
            p.stmt = StatementState {
                seq,
                ..StatementState::default()
            };
        }
        p.stmt.rows_seen += 1;
        if p.stmt.truncated {
            return;
        }
        let bytes: usize = values.iter().map(|v| v.map_or(0, <[u8]>::len)).sum();
        let cfg = &self.svc.cfg;
        if p.stmt.rows_recorded >= cfg.max_rows
            || p.stmt.bytes_recorded.saturating_add(bytes as u64) > cfg.max_bytes_per_statement
        {
            p.stmt.truncated = true;
            return;
        }
        p.stmt.rows_recorded += 1;
        p.stmt.bytes_recorded += bytes as u64;
        let raw = &mut p.frames.raw;
        raw.reserve(bytes + 5 * values.len());
        for v in values {
            match v {
                None => raw.push(0),
                Some(b) => {
                    // Caps keep a recorded row far below 4 GiB per value.
                    let b = b.get(..u32::MAX as usize).unwrap_or(b);
                    raw.push(1);
                    raw.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    raw.extend_from_slice(b);
                }
            }
        }
        let end = raw.len();
        self.push_item(&mut p, Item::Row { seq, end }, bytes);
    }

    /// The statement completed with command tag `tag` (`SELECT 3`, `INSERT 0 1`). `rows` is
    /// the true row count if the protocol says it (else the rows seen are used).
    pub fn complete(&self, seq: u64, tag: &str, rows: Option<u64>, duration: Duration) {
        let mut p = lock(&self.pending);
        let (seen, recorded, truncated) = if p.stmt.seq == seq {
            (p.stmt.rows_seen, p.stmt.rows_recorded, p.stmt.truncated)
        } else {
            (0, 0, false)
        };
        let frame = Frame::Complete {
            seq,
            ts_us: now_us(),
            tag: tag.to_owned(),
            rows: rows.unwrap_or(seen).max(seen),
            recorded,
            truncated,
            duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
        };
        self.push(&mut p, frame, tag.len());
        self.send(&mut p);
    }

    /// The statement failed (or was denied) with this error.
    pub fn error(&self, seq: u64, sqlstate: &str, message: &str) {
        self.error_after(seq, sqlstate, message, None);
    }

    /// Like [`error`](Self::error) with the time the statement ran before failing.
    pub fn error_after(&self, seq: u64, sqlstate: &str, message: &str, took: Option<Duration>) {
        let mut p = lock(&self.pending);
        let frame = Frame::Error {
            seq,
            ts_us: now_us(),
            sqlstate: sqlstate.to_owned(),
            message: message.to_owned(),
            duration_us: took.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        };
        self.push(&mut p, frame, message.len());
        self.send(&mut p);
    }

    /// A notice from the server (or the gateway, e.g. "held for review").
    pub fn notice(&self, message: &str) {
        let mut p = lock(&self.pending);
        let frame = Frame::Notice {
            ts_us: now_us(),
            message: message.to_owned(),
        };
        self.push(&mut p, frame, message.len());
    }

    /// The terminal's size in cells: call once when the session gets a terminal (SSH
    /// `pty-req`) and on every resize (`window-change`).
    pub fn terminal_size(&self, cols: u32, rows: u32) {
        let mut p = lock(&self.pending);
        let at_us = self.at_us(Instant::now());
        self.push(&mut p, Frame::TermSize { at_us, cols, rows }, 0);
    }

    /// Bytes the terminal shows (server to client), already masked if masking applies.
    /// Coalesced with the bytes before it into frames of up to 32 KiB or 20 ms.
    pub fn terminal_output(&self, bytes: &[u8]) {
        self.terminal_bytes(false, bytes);
    }

    /// Bytes the client types (client to server). Input includes what a terminal does not
    /// echo (passwords typed at a `sudo` prompt): the adapter decides whether to record it.
    pub fn terminal_input(&self, bytes: &[u8]) {
        self.terminal_bytes(true, bytes);
    }

    fn terminal_bytes(&self, input: bool, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut p = lock(&self.pending);
        if p.ended {
            return;
        }
        let now = Instant::now();
        if let Some(c) = &p.term {
            if c.input != input || now.duration_since(c.since) >= TERM_CHUNK_AGE {
                self.emit_term(&mut p, false);
            }
        }
        while !bytes.is_empty() {
            let chunk = match p.term.take() {
                Some(c) => c,
                None => {
                    let carry = p.term_carry.get_mut(usize::from(input)).map(std::mem::take);
                    let mut data = carry.unwrap_or_default();
                    data.reserve(bytes.len().min(TERM_CHUNK_BYTES));
                    TermChunk {
                        input,
                        at_us: self.at_us(now),
                        since: now,
                        data,
                    }
                }
            };
            let chunk = p.term.insert(chunk);
            let room = TERM_CHUNK_BYTES.saturating_sub(chunk.data.len()).max(1);
            let (head, rest) = bytes.split_at(room.min(bytes.len()));
            chunk.data.extend_from_slice(head);
            bytes = rest;
            if chunk.data.len() >= TERM_CHUNK_BYTES {
                self.emit_term(&mut p, false);
            }
        }
    }

    /// Makes the pending terminal bytes a frame. Unless `last`, a UTF-8 character cut at the
    /// end waits for the rest of it in `term_carry`; with `last` the carried bytes go too.
    fn emit_term(&self, p: &mut Pending, last: bool) {
        if let Some(mut c) = p.term.take() {
            let tail = incomplete_utf8_tail(&c.data);
            if tail > 0 && !last {
                let rest = c.data.split_off(c.data.len() - tail);
                if let Some(carry) = p.term_carry.get_mut(usize::from(c.input)) {
                    *carry = rest;
                }
            }
            self.push_term(p, c.input, c.at_us, c.data);
        }
        if last {
            let at_us = self.at_us(Instant::now());
            for input in [false, true] {
                let carry = p.term_carry.get_mut(usize::from(input)).map(std::mem::take);
                if let Some(data) = carry.filter(|d| !d.is_empty()) {
                    self.push_term(p, input, at_us, data);
                }
            }
        }
    }

    fn push_term(&self, p: &mut Pending, input: bool, at_us: u64, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let bytes = data.len();
        let (d, b64) = encode_bytes(data);
        let frame = if input {
            Frame::TermIn { at_us, d, b64 }
        } else {
            Frame::TermOut { at_us, d, b64 }
        };
        self.enqueue(p, Item::Frame(frame), bytes);
    }

    fn at_us(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.started).as_micros()).unwrap_or(u64::MAX)
    }

    /// Body bytes a [`Request`] or [`Response`] keeps: an adapter that streams a body needs
    /// to hold no more than this for the recording.
    pub fn body_excerpt_cap(&self) -> usize {
        self.svc.cfg.max_body_excerpt
    }

    /// A request (HTTP, Kubernetes, AWS, MCP) with the gateway's decision; `seq` ties it to
    /// its [`response`](Self::response) as it ties a statement to its result.
    pub fn request(&self, seq: u64, req: &Request<'_>) {
        let total = req.body_len.unwrap_or(req.body.len() as u64);
        let (body, body_b64) = body_excerpt(req.body, total, self.svc.cfg.max_body_excerpt);
        let headers = keep_headers(req.headers);
        let bytes = req.target.len() + body.len();
        let frame = Frame::Request {
            seq,
            ts_us: now_us(),
            method: req.method.to_owned(),
            target: req.target.to_owned(),
            headers,
            body,
            body_b64,
            body_len: total,
            decision: req.decision.to_owned(),
            rule: req.rule.map(str::to_owned),
        };
        let mut p = lock(&self.pending);
        self.push(&mut p, frame, bytes);
    }

    /// The response to request `seq`. Hands the buffer to the writer, as the end of a
    /// statement does.
    pub fn response(&self, seq: u64, resp: &Response<'_>) {
        let total = resp.body_len.unwrap_or(resp.body.len() as u64);
        let (body, body_b64) = body_excerpt(resp.body, total, self.svc.cfg.max_body_excerpt);
        let headers = keep_headers(resp.headers);
        let bytes = body.len();
        let frame = Frame::Response {
            seq,
            ts_us: now_us(),
            status: resp.status.to_owned(),
            headers,
            body,
            body_b64,
            body_len: total,
            duration_us: u64::try_from(resp.elapsed.as_micros()).unwrap_or(u64::MAX),
        };
        let mut p = lock(&self.pending);
        self.push(&mut p, frame, bytes);
        self.send(&mut p);
    }

    /// Hands buffered frames to the writer now. Call when the relay goes idle (e.g. after it
    /// wrote a chunk to the client), so a slow result set, or terminal output waiting to be
    /// coalesced, is not held in this buffer.
    pub fn flush(&self) {
        let mut p = lock(&self.pending);
        self.emit_term(&mut p, false);
        self.send(&mut p);
    }

    /// Closes the recording with an `end` frame. Dropping a recorder without calling this
    /// ends it with reason `closed`.
    pub fn end(&self, reason: &str) {
        let mut p = lock(&self.pending);
        if p.ended {
            return;
        }
        self.emit_term(&mut p, true);
        p.ended = true;
        let mut frames = std::mem::take(&mut p.frames);
        if p.dropped_unreported > 0 {
            frames.items.insert(
                0,
                Item::Frame(Frame::Dropped {
                    ts_us: now_us(),
                    frames: p.dropped_unreported,
                }),
            );
            p.dropped_unreported = 0;
        }
        frames.items.push(Item::Frame(Frame::End {
            ts_us: now_us(),
            reason: reason.to_owned(),
        }));
        p.bytes = 0;
        p.since = None;
        let n = frames.items.len() as u64;
        if self
            .svc
            .tx
            .try_send(Msg::Close {
                id: self.id,
                batch: frames,
            })
            .is_err()
        {
            self.count_dropped(n);
        }
    }

    fn push(&self, p: &mut Pending, frame: Frame, bytes: usize) {
        self.push_item(p, Item::Frame(frame), bytes);
    }

    /// Queues a frame after the pending terminal bytes, which happened before it.
    fn push_item(&self, p: &mut Pending, item: Item, bytes: usize) {
        if p.term.is_some() {
            self.emit_term(p, false);
        }
        self.enqueue(p, item, bytes);
    }

    fn enqueue(&self, p: &mut Pending, item: Item, bytes: usize) {
        if p.ended {
            return;
        }
        p.frames.items.push(item);
        p.bytes += bytes + 32;
        let since = *p.since.get_or_insert_with(Instant::now);
        if p.frames.items.len() >= BATCH_FRAMES
            || p.bytes >= BATCH_BYTES
            || since.elapsed() >= BATCH_AGE
        {
            self.send(p);
        }
    }

    fn send(&self, p: &mut Pending) {
        if p.frames.items.is_empty() || p.ended {
            return;
        }
        let mut frames = std::mem::take(&mut p.frames);
        if p.dropped_unreported > 0 {
            frames.items.insert(
                0,
                Item::Frame(Frame::Dropped {
                    ts_us: now_us(),
                    frames: p.dropped_unreported,
                }),
            );
        }
        p.bytes = 0;
        p.since = None;
        let n = frames.items.len() as u64;
        match self.svc.tx.try_send(Msg::Frames {
            id: self.id,
            batch: frames,
        }) {
            Ok(()) => p.dropped_unreported = 0,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                // The Dropped frame we may have prepended is not counted as a lost frame.
                let lost = if p.dropped_unreported > 0 { n - 1 } else { n };
                p.dropped_unreported += lost;
                self.count_dropped(lost);
            }
        }
    }

    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.svc
            .stats
            .frames_dropped
            .fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.end("closed");
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn create_private_dir(dir: &Path) -> Result<(), RecordError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| RecordError::io(dir, e))
}

struct Open {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
    failed: bool,
}

struct WriterThread {
    cfg: RecordingConfig,
    stats: Arc<RecordingStats>,
    on_failure: Option<FailureHook>,
    open: HashMap<u64, Open>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl WriterThread {
    fn new(
        cfg: RecordingConfig,
        stats: Arc<RecordingStats>,
        on_failure: Option<FailureHook>,
    ) -> Self {
        let compressor = match zstd::bulk::Compressor::new(cfg.level) {
            Ok(mut c) => {
                // Lets the reader detect a damaged chunk rather than return wrong data.
                let _ = c.include_checksum(true);
                Some(c)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create the zstd compressor; recordings disabled");
                None
            }
        };
        WriterThread {
            cfg,
            stats,
            on_failure,
            open: HashMap::new(),
            compressor,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_flush = Instant::now() + self.cfg.flush_interval;
        loop {
            // Polled, not blocked in `recv`: a sender then never has a sleeping receiver to
            // wake, so `try_send` on the data path stays a few atomic operations instead of a
            // futex system call (measured: 3.4 µs → see docs/recording.md per statement).
            let msg = match rx.try_recv() {
                Ok(m) => Ok(m),
                Err(TryRecvError::Empty) => {
                    if Instant::now() >= next_flush {
                        self.flush_all();
                        next_flush = Instant::now() + self.cfg.flush_interval;
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Open { id, path, frame }) => {
                    self.open.insert(
                        id,
                        Open {
                            path,
                            file: None,
                            pending: Vec::with_capacity(4096),
                            failed: false,
                        },
                    );
                    self.append(
                        id,
                        &Batch {
                            items: vec![Item::Frame(frame)],
                            raw: Vec::new(),
                        },
                    );
                }
                Ok(Msg::Frames { id, batch }) => self.append(id, &batch),
                Ok(Msg::Close { id, batch }) => {
                    self.append(id, &batch);
                    self.write_chunk(id);
                    self.open.remove(&id);
                }
                Ok(Msg::Flush(ack)) => {
                    self.flush_all();
                    let _ = ack.send(());
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush_all();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_flush {
                self.flush_all();
                next_flush = Instant::now() + self.cfg.flush_interval;
            }
        }
    }

    fn append(&mut self, id: u64, batch: &Batch) {
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        let mut start = 0;
        for item in &batch.items {
            match item {
                Item::Frame(frame) => {
                    if serde_json::to_writer(&mut open.pending, frame).is_ok() {
                        open.pending.push(b'\n');
                    }
                }
                Item::Row { seq, end } => {
                    let row = batch.raw.get(start..*end).unwrap_or_default();
                    write_row(&mut open.pending, *seq, row);
                    start = *end;
                }
            }
        }
        if open.pending.len() >= CHUNK_BYTES {
            self.write_chunk(id);
        }
    }

    fn flush_all(&mut self) {
        let ids: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, o)| !o.pending.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.write_chunk(id);
        }
    }

    /// Compresses what is pending for `id` into one zstd frame and appends it in one write.
    fn write_chunk(&mut self, id: u64) {
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        if open.pending.is_empty() || open.failed {
            open.pending.clear();
            return;
        }
        let Some(compressor) = self.compressor.as_mut() else {
            open.pending.clear();
            return;
        };
        let result = (|| -> std::io::Result<usize> {
            let chunk = compressor.compress(&open.pending)?;
            if open.file.is_none() {
                open.file = Some(open_recording_file(&open.path)?);
            }
            match open.file.as_mut() {
                Some(f) => f.write_all(&chunk)?,
                None => return Err(std::io::Error::other("recording file not open")),
            }
            Ok(chunk.len())
        })();
        open.pending.clear();
        match result {
            Ok(n) => {
                self.stats.chunks_written.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_written
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // A half-written chunk would make the rest of the file undecodable; stop
                // writing this recording rather than append after it.
                open.failed = true;
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %open.path.display(), error = %e, "cannot write the session recording; it stops here");
                if let Some(hook) = &self.on_failure {
                    hook(&open.path, &e.to_string());
                }
            }
        }
    }
}

/// The adapter's headers with credential values replaced (names compared without case).
fn keep_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let secret = CREDENTIAL_HEADERS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name.trim()));
            let value = if secret { "[redacted]" } else { value };
            ((*name).to_owned(), value.to_owned())
        })
        .collect()
}

/// `{"t":"row","seq":N,"v":[...]}` from the raw encoding of [`Batch::raw`]; the same JSON
/// `Frame::Row` serializes to.
fn write_row(out: &mut Vec<u8>, seq: u64, mut raw: &[u8]) {
    let _ = write!(out, "{{\"t\":\"row\",\"seq\":{seq},\"v\":[");
    let mut first = true;
    while let Some((&tag, rest)) = raw.split_first() {
        if !first {
            out.push(b',');
        }
        first = false;
        if tag == 0 {
            out.extend_from_slice(b"null");
            raw = rest;
            continue;
        }
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_le_bytes(*len) as usize;
        let (value, rest) = rest.split_at_checked(len).unwrap_or((rest, &[]));
        let text: std::borrow::Cow<'_, str> = match std::str::from_utf8(value) {
            Ok(s) => s.into(),
            Err(_) => encode_value(value).into(),
        };
        let _ = serde_json::to_writer(&mut *out, &*text);
        raw = rest;
    }
    out.extend_from_slice(b"]}\n");
}

fn open_recording_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}
