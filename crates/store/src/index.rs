//! The SQLite index of the audit log: sessions and commands, queryable by the CLI and API.
//!
//! The index is derived data. It is filled in batches by [`Index::catch_up`] (one transaction
//! per batch, never per statement) from the byte offset it stored last time, so the gateway's
//! background indexer and a CLI invocation can both call it; the `IMMEDIATE` transaction
//! serializes them and `INSERT OR IGNORE` on seq makes a repeated event harmless.

use crate::chain::{parse_line, ChainWalker, VerifyReport, GENESIS_PREV};
use crate::{CommandRecord, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    ts_us       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    session_id  TEXT,
    identity    TEXT,
    connection  TEXT,
    hash        TEXT NOT NULL,
    prev        TEXT NOT NULL,
    json        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts_us);
CREATE INDEX IF NOT EXISTS events_session ON events(session_id);
CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,
    identity    TEXT,
    connection  TEXT,
    started_us  INTEGER,
    ended_us    INTEGER,
    peer        TEXT,
    statements  INTEGER NOT NULL DEFAULT 0,
    denied      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions(started_us);
CREATE TABLE IF NOT EXISTS commands (
    session_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    ts_us       INTEGER,
    operation   TEXT,
    reads       TEXT,
    writes      TEXT,
    flags       TEXT,
    decision    TEXT,
    rule        TEXT,
    message     TEXT,
    text        TEXT,
    rows        INTEGER,
    error       TEXT,
    duration_us INTEGER,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS index_state (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    log_offset  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    last_hash   TEXT NOT NULL
);
";

/// A session as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub started_us: Option<i64>,
    pub ended_us: Option<i64>,
    /// `detail.peer` of the `session_start` event.
    pub peer: Option<String>,
    /// Distinct commands (by session seq) that received a decision.
    pub statements: u64,
    pub denied: u64,
}

/// A `command` event joined with its `command_result` (fields absent until indexed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    pub seq: u64,
    pub ts_us: Option<i64>,
    pub operation: Option<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub flags: Vec<String>,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub message: Option<String>,
    pub text: Option<String>,
    pub rows: Option<u64>,
    pub error: Option<String>,
    pub duration_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetail {
    pub session: SessionRow,
    /// In statement order.
    pub commands: Vec<CommandRow>,
}

/// All fields optional; `since_us` keeps sessions that started at or after it. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub since_us: Option<i64>,
    pub limit: Option<usize>,
}

/// Handle to the SQLite index; `Send + Sync`, calls are serialized on one connection.
pub struct Index {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The fields of an event the index needs, read leniently so that an event kind added by a
/// newer gateway is still indexed (as a plain event) rather than stopping the indexer.
#[derive(Deserialize)]
struct IndexedEvent {
    ts_us: i64,
    kind: String,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    connection: Option<String>,
    #[serde(default)]
    command: Option<CommandRecord>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

impl Index {
    /// Opens or creates the index database (WAL mode, 5 s busy timeout).
    pub fn open(db_path: &Path) -> Result<Index, StoreError> {
        let conn = Connection::open(db_path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(db = %db_path.display(), mode, "SQLite refused WAL mode");
        }
        // The log is the durable record; the index can always be rebuilt from it.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                path: db_path.to_path_buf(),
                offset: 0,
                reason: format!(
                    "index schema version {version} is newer than this airlock ({SCHEMA_VERSION})"
                ),
            });
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT OR IGNORE INTO index_state (id, log_offset, last_seq, last_hash) VALUES (0, 0, 0, ?1)",
            params![GENESIS_PREV],
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Index {
            conn: Mutex::new(conn),
            path: db_path.to_path_buf(),
        })
    }

    /// Indexes the complete lines appended to the log since the last call, in one transaction,
    /// and returns how many events were added. Each line must continue the chain already
    /// indexed; at a broken link the events before it are committed and `Err(Chain)` is
    /// returned (the index never contains an event that does not chain). A missing log file
    /// with nothing indexed yet is `Ok(0)`.
    pub fn catch_up(&self, log_path: &Path) -> Result<usize, StoreError> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (offset, last_seq, last_hash): (i64, i64, String) = tx.query_row(
            "SELECT log_offset, last_seq, last_hash FROM index_state WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut offset = u64::try_from(offset).unwrap_or(0);
        let file = match File::open(log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && offset == 0 => return Ok(0),
            Err(e) => return Err(StoreError::io(log_path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(log_path, e))?
            .len();
        if len < offset {
            return Err(StoreError::Corrupt {
                path: log_path.to_path_buf(),
                offset,
                reason: format!(
                    "the log ({len} bytes) is shorter than what is already indexed ({offset} bytes): truncated or replaced"
                ),
            });
        }
        let mut reader = BufReader::with_capacity(1 << 16, file);
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| StoreError::io(log_path, e))?;
        let mut walker = ChainWalker::resume(u64::try_from(last_seq).unwrap_or(0), last_hash);
        let mut added = 0usize;
        let mut broken = None;
        let mut line = Vec::with_capacity(1024);
        {
            let mut writer = IndexWriter::new(&tx)?;
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| StoreError::io(log_path, e))?;
                // No newline: a write in progress (or a crash the next open will repair).
                let Some(body) = line.strip_suffix(b"\n") else {
                    break;
                };
                let parsed = match parse_line(body) {
                    Ok(p) => p,
                    Err(reason) => {
                        broken = Some(StoreError::Chain {
                            seq: walker.next_seq,
                            reason: format!("{reason} (byte {offset} of {})", log_path.display()),
                        });
                        break;
                    }
                };
                let event_json = parsed.event.get();
                if let Err(reason) =
                    walker.check(parsed.seq, parsed.prev, parsed.hash, event_json.as_bytes())
                {
                    broken = Some(StoreError::Chain {
                        seq: parsed.seq,
                        reason,
                    });
                    break;
                }
                if writer.insert(parsed.seq, parsed.prev, parsed.hash, event_json)? {
                    added += 1;
                }
                offset += n as u64;
            }
        }
        tx.execute(
            "UPDATE index_state SET log_offset = ?1, last_seq = ?2, last_hash = ?3 WHERE id = 0",
            params![
                i64::try_from(offset).unwrap_or(i64::MAX),
                i64::try_from(walker.next_seq.saturating_sub(1)).unwrap_or(i64::MAX),
                walker.prev
            ],
        )?;
        tx.commit()?;
        match broken {
            Some(e) => Err(e),
            None => Ok(added),
        }
    }

    /// Seq of the last indexed event.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let conn = lock(&self.conn);
        let seq: i64 =
            conn.query_row("SELECT last_seq FROM index_state WHERE id = 0", [], |r| {
                r.get(0)
            })?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    pub fn sessions(&self, filter: SessionFilter) -> Result<Vec<SessionRow>, StoreError> {
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare_cached(
            "SELECT id, identity, connection, started_us, ended_us, peer, statements, denied
             FROM sessions
             WHERE (?1 IS NULL OR identity = ?1)
               AND (?2 IS NULL OR connection = ?2)
               AND (?3 IS NULL OR started_us >= ?3)
             ORDER BY started_us DESC, id
             LIMIT ?4",
        )?;
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = stmt.query_map(
            params![filter.identity, filter.connection, filter.since_us, limit],
            session_row,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionDetail>, StoreError> {
        let conn = lock(&self.conn);
        let session = conn
            .query_row(
                "SELECT id, identity, connection, started_us, ended_us, peer, statements, denied
                 FROM sessions WHERE id = ?1",
                params![id],
                session_row,
            )
            .optional()?;
        let Some(session) = session else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT seq, ts_us, operation, reads, writes, flags, decision, rule, message, text,
                    rows, error, duration_us
             FROM commands WHERE session_id = ?1 ORDER BY seq",
        )?;
        let commands = stmt
            .query_map(params![id], |r| {
                Ok(CommandRow {
                    seq: get_u64(r, 0)?.unwrap_or(0),
                    ts_us: r.get(1)?,
                    operation: r.get(2)?,
                    reads: json_list(r.get(3)?),
                    writes: json_list(r.get(4)?),
                    flags: json_list(r.get(5)?),
                    decision: r.get(6)?,
                    rule: r.get(7)?,
                    message: r.get(8)?,
                    text: r.get(9)?,
                    rows: get_u64(r, 10)?,
                    error: r.get(11)?,
                    duration_us: get_u64(r, 12)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(SessionDetail { session, commands }))
    }

    /// Walks the chain stored in the `events` table, like [`crate::verify_log`] walks the file:
    /// catches an edited row (hash mismatch) and a deleted row (seq gap), including deletion
    /// of the newest rows (compared with the last seq recorded in `index_state`).
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let conn = lock(&self.conn);
        let (state_seq, state_hash): (i64, String) = conn.query_row(
            "SELECT last_seq, last_hash FROM index_state WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut stmt = conn.prepare("SELECT seq, prev, hash, json FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut walker = ChainWalker::genesis();
        let mut events = 0u64;
        let report = |walker: ChainWalker, events, first_broken| VerifyReport {
            events,
            first_broken,
            last_hash: walker.prev,
            partial_tail_bytes: 0,
        };
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let prev: String = row.get(1)?;
            let hash: String = row.get(2)?;
            let json: String = row.get(3)?;
            let seq = u64::try_from(seq).unwrap_or(0);
            if let Err(reason) = walker.check(seq, &prev, &hash, json.as_bytes()) {
                let at = walker.next_seq;
                return Ok(report(walker, events, Some((at, reason))));
            }
            events += 1;
        }
        let state_seq = u64::try_from(state_seq).unwrap_or(0);
        let last = walker.next_seq.saturating_sub(1);
        if last != state_seq || (state_seq > 0 && walker.prev != state_hash) {
            let reason = format!(
                "index recorded events up to seq {state_seq} but the events table ends at seq {last} (rows deleted)"
            );
            return Ok(report(walker, events, Some((last + 1, reason))));
        }
        Ok(report(walker, events, None))
    }
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        identity: r.get(1)?,
        connection: r.get(2)?,
        started_us: r.get(3)?,
        ended_us: r.get(4)?,
        peer: r.get(5)?,
        statements: get_u64(r, 6)?.unwrap_or(0),
        denied: get_u64(r, 7)?.unwrap_or(0),
    })
}

fn get_u64(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    Ok(r.get::<_, Option<i64>>(idx)?
        .map(|v| u64::try_from(v).unwrap_or(0)))
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn json_list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn list_json(list: &[String]) -> Option<String> {
    if list.is_empty() {
        None
    } else {
        serde_json::to_string(list).ok()
    }
}

/// Applies events to the tables within one transaction.
struct IndexWriter<'c> {
    conn: &'c Connection,
}

impl<'c> IndexWriter<'c> {
    fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        Ok(IndexWriter { conn })
    }

    /// Returns false if the event was already indexed.
    fn insert(&mut self, seq: u64, prev: &str, hash: &str, json: &str) -> Result<bool, StoreError> {
        let event = match serde_json::from_str::<IndexedEvent>(json) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(seq, error = %e, "audit event not understood; indexed without details");
                None
            }
        };
        let seq_i = i64::try_from(seq).unwrap_or(i64::MAX);
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO events (seq, ts_us, kind, session_id, identity, connection, hash, prev, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                seq_i,
                event.as_ref().map_or(0, |e| e.ts_us),
                event.as_ref().map_or("unparsed", |e| e.kind.as_str()),
                event.as_ref().and_then(|e| e.session_id.as_deref()),
                event.as_ref().and_then(|e| e.identity.as_deref()),
                event.as_ref().and_then(|e| e.connection.as_deref()),
                hash,
                prev,
                json,
            ])?;
        if inserted == 0 {
            return Ok(false);
        }
        if let Some(event) = event {
            self.apply(&event)?;
        }
        Ok(true)
    }

    fn apply(&mut self, ev: &IndexedEvent) -> Result<(), StoreError> {
        let Some(session_id) = ev.session_id.as_deref() else {
            return Ok(());
        };
        match ev.kind.as_str() {
            "session_start" => {
                let peer = ev
                    .detail
                    .as_ref()
                    .and_then(|d| d.get("peer"))
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                self.conn
                    .prepare_cached(
                        "INSERT INTO sessions (id, identity, connection, started_us, peer)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (id) DO UPDATE SET
                           identity = coalesce(excluded.identity, identity),
                           connection = coalesce(excluded.connection, connection),
                           started_us = excluded.started_us,
                           peer = coalesce(excluded.peer, peer)",
                    )?
                    .execute(params![
                        session_id,
                        ev.identity,
                        ev.connection,
                        ev.ts_us,
                        peer
                    ])?;
            }
            "session_end" => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO sessions (id, identity, connection, ended_us)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (id) DO UPDATE SET ended_us = excluded.ended_us",
                    )?
                    .execute(params![session_id, ev.identity, ev.connection, ev.ts_us])?;
            }
            "command" => {
                let Some(cmd) = &ev.command else {
                    return Ok(());
                };
                self.apply_command(session_id, ev, cmd)?;
            }
            "command_result" => {
                let Some(cmd) = &ev.command else {
                    return Ok(());
                };
                self.conn
                    .prepare_cached(
                        "INSERT INTO commands (session_id, seq, rows, error, duration_us)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (session_id, seq) DO UPDATE SET
                           rows = excluded.rows, error = excluded.error,
                           duration_us = excluded.duration_us",
                    )?
                    .execute(params![
                        session_id,
                        to_i64(Some(cmd.seq)),
                        to_i64(cmd.rows),
                        cmd.error,
                        to_i64(cmd.duration_us)
                    ])?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A command may be logged more than once for the same session seq (e.g. `review`, then
    /// the final decision); the session counts each statement once, by its latest decision.
    fn apply_command(
        &mut self,
        session_id: &str,
        ev: &IndexedEvent,
        cmd: &CommandRecord,
    ) -> Result<(), StoreError> {
        let cmd_seq = to_i64(Some(cmd.seq));
        let previous: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT decision FROM commands WHERE session_id = ?1 AND seq = ?2")?
            .query_row(params![session_id, cmd_seq], |r| r.get(0))
            .optional()?;
        let previous = previous.flatten();
        let is_deny = |d: Option<&str>| i64::from(d == Some("deny"));
        let new_statement = i64::from(previous.is_none() && cmd.decision.is_some());
        let denied_delta = is_deny(cmd.decision.as_deref()) - is_deny(previous.as_deref());
        self.conn
            .prepare_cached(
                "INSERT INTO commands (session_id, seq, ts_us, operation, reads, writes, flags,
                                       decision, rule, message, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (session_id, seq) DO UPDATE SET
                   ts_us = excluded.ts_us, operation = excluded.operation,
                   reads = excluded.reads, writes = excluded.writes, flags = excluded.flags,
                   decision = coalesce(excluded.decision, decision), rule = excluded.rule,
                   message = excluded.message, text = coalesce(excluded.text, text)",
            )?
            .execute(params![
                session_id,
                cmd_seq,
                ev.ts_us,
                cmd.operation,
                list_json(&cmd.reads),
                list_json(&cmd.writes),
                list_json(&cmd.flags),
                cmd.decision,
                cmd.rule,
                cmd.message,
                cmd.text
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (id, identity, connection, statements, denied)
                 VALUES (?1, ?2, ?3, ?4, max(?5, 0))
                 ON CONFLICT (id) DO UPDATE SET
                   identity = coalesce(identity, excluded.identity),
                   connection = coalesce(connection, excluded.connection),
                   statements = statements + ?4,
                   denied = max(denied + ?5, 0)",
            )?
            .execute(params![
                session_id,
                ev.identity,
                ev.connection,
                new_statement,
                denied_delta
            ])?;
        Ok(())
    }
}

/// Runs [`Index::catch_up`] every `interval` on a background thread until the handle is shut
/// down or dropped (which performs a last catch-up). Errors are logged and retried.
pub fn spawn_indexer(
    log_path: &Path,
    db_path: &Path,
    interval: Duration,
) -> Result<IndexerHandle, StoreError> {
    let index = Index::open(db_path)?;
    let log_path = log_path.to_path_buf();
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || {
            let mut last_error: Option<String> = None;
            loop {
                match index.catch_up(&log_path) {
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(events = n, "audit index caught up");
                        }
                        last_error = None;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        if last_error.as_deref() != Some(msg.as_str()) {
                            tracing::warn!(log = %log_path.display(), error = %msg, "audit indexing failed; will retry");
                        }
                        last_error = Some(msg);
                    }
                }
                let (flag, cv) = &*thread_stop;
                let stopped = lock(flag);
                let (stopped, _) = cv
                    .wait_timeout_while(stopped, interval, |s| !*s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *stopped {
                    break;
                }
            }
            if let Err(e) = index.catch_up(&log_path) {
                tracing::warn!(log = %log_path.display(), error = %e, "final audit indexing failed");
            }
        })
        .map_err(|e| StoreError::io(db_path, e))?;
    Ok(IndexerHandle {
        stop,
        thread: Some(thread),
    })
}

/// Stops the background indexer when dropped or shut down.
pub struct IndexerHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl IndexerHandle {
    /// Stops the indexer after a final catch-up and waits for it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let (flag, cv) = &*self.stop;
        *lock(flag) = true;
        cv.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for IndexerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
