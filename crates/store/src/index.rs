//! The SQLite index of the audit log: sessions and commands, queryable by the CLI and API.
//!
//! The index is derived data. It is filled in batches by [`Index::catch_up`] (one transaction
//! per batch, never per statement) from the byte offset it stored last time, so the gateway's
//! background indexer and a CLI invocation can both call it; the `IMMEDIATE` transaction
//! serializes them and `INSERT OR IGNORE` on seq makes a repeated event harmless.
//!
//! # Layout (schema version 3)
//!
//! The indexer runs for every statement the gateway forwards, on the cores the database
//! needs, so it stores each event's text exactly once and does as little per event as it can:
//!
//! - `events(seq, hash, pos, len)`: where each event's line is in the log (byte offset and
//!   length without the newline) and its chain hash as 32 raw bytes. The event text is not
//!   copied (version 4): the log holds it, and copying ~400 bytes per event into SQLite was
//!   most of the indexer's work. `prev` is not stored: it is the previous row's hash.
//! - `commands(sid, seq, command, result, decision, text_event)`, `WITHOUT ROWID`, keyed by
//!   session and statement number: one row per statement holding the `events.seq` of its
//!   latest `command` and `command_result` events (and of an earlier command event carrying
//!   the text when a later one has none), not copies of their fields. `decision` is kept (the
//!   latest non-null one) because the session counters depend on it. [`Index::session`]
//!   joins `events` and reads the fields from the JSON; reading a session is rare, indexing
//!   is constant.
//! - Search facets (version 3): `commands.operation` and `commands.ts_us` (of the first
//!   command event), `command_objects(sid, seq, object)` for every table a statement reads or
//!   writes, `command_masked(sid, seq, entity)` for every masking entity in its result. Only
//!   statements that name tables or had values masked add facet rows.
//! - `sessions`: one row per session, addressed by an integer `sid`. `statements` / `denied`
//!   are summed in memory during a batch and written once per session per batch.
//!
//! Reading an event back ([`Index::session`], [`Index::search`]) reads its line from the log
//! at `pos` and checks it against `hash` (recomputed from the line's seq, prev and event): a
//! log edited after indexing shows the command without its details rather than the edited
//! text.
//!
//! Within a batch a command and its result (usually a few events apart) are merged in memory
//! and written as one `commands` row. Only a command logged twice for the same statement
//! (e.g. `review`, then the final decision) reads the existing row back. A line in the exact
//! form the writer produces is split without a JSON parser and its event parsed once, into
//! borrowed strings, for only the fields above; anything else takes the full parser.
//!
//! # Verification
//!
//! [`Index::verify`] recomputes the chain from `events`: each row's hash from its seq, the
//! previous row's hash and the event text of the log line at `pos`. An edited log line, an
//! edited `hash` or a moved `pos` breaks it at that seq,
//! a deleted row leaves a seq gap, deleting the newest rows disagrees with `index_state`.
//! Everything [`Index::session`] shows about a command comes from that verified JSON; only
//! `commands.decision` and the session rows are unverified derived data, as before.
//!
//! # Durability and upgrades
//!
//! The log is the record; this database can be deleted and rebuilt from it at any time. It
//! runs in WAL mode with `synchronous = NORMAL`: commits do not fsync (only checkpoints do),
//! and a power loss can only lose the last batches, which the next catch-up re-reads from
//! the offset stored with them. `synchronous = OFF` was measured to save nothing noticeable
//! per event, and could leave a corrupt file after a power loss, so it is not used. Pages are
//! 16 KiB (fewer pages to allocate, spill, checksum and write per event).
//!
//! An index with an older schema version has its tables dropped when opened (then compacted,
//! moving it to the new page size) and is rebuilt from the log by the next
//! [`Index::catch_up`]; an index with a newer version is refused.

use crate::chain::{parse_line, split_line, ChainWalker, GENESIS_PREV};
use crate::segments::{line_seq, LineAt, Reader, Start};
use crate::{CommandRecord, StoreError, VerifyReport};
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, TransactionBehavior};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

const SCHEMA_VERSION: i64 = 4;

/// Tables of every earlier schema version, dropped before rebuilding.
const DROP_OLD: &str = "
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS commands;
DROP TABLE IF EXISTS index_state;
DROP TABLE IF EXISTS command_objects;
DROP TABLE IF EXISTS command_masked;
";

const SCHEMA: &str = "
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL,
    pos         INTEGER NOT NULL,
    len         INTEGER NOT NULL
);
CREATE TABLE sessions (
    sid         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    identity    TEXT,
    connection  TEXT,
    started_us  INTEGER,
    ended_us    INTEGER,
    peer        TEXT,
    statements  INTEGER NOT NULL DEFAULT 0,
    denied      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_started ON sessions(started_us);
CREATE TABLE commands (
    sid         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    command     INTEGER,
    result      INTEGER,
    decision    TEXT,
    text_event  INTEGER,
    operation   TEXT,
    ts_us       INTEGER,
    PRIMARY KEY (sid, seq)
) WITHOUT ROWID;
CREATE TABLE command_objects (
    sid         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    object      TEXT NOT NULL,
    PRIMARY KEY (sid, seq, object)
) WITHOUT ROWID;
CREATE INDEX command_objects_object ON command_objects(object);
CREATE TABLE command_masked (
    sid         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    entity      TEXT NOT NULL,
    PRIMARY KEY (sid, seq, entity)
) WITHOUT ROWID;
CREATE TABLE index_state (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    log_offset  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    last_hash   TEXT NOT NULL
);
";

/// 16 KiB rather than SQLite's 4 KiB: a quarter of the pages to allocate, spill, checksum
/// and copy per event appended (measured: indexing takes about 20 % less CPU).
const PAGE_SIZE: i64 = 16384;

/// Statements merged in memory before they are written; bounds memory on a full rebuild.
#[cfg(not(test))]
const MAX_PENDING: usize = 8192;
/// Small in unit tests, so that statements straddle flushes.
#[cfg(test)]
const MAX_PENDING: usize = 3;

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

/// All fields optional; `since_us` keeps sessions that started at or after it, `until_us`
/// before it. The command facets (`operation`, `object`, `decision`, `masked`) keep sessions
/// with at least one statement matching all of them. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub since_us: Option<i64>,
    pub limit: Option<usize>,
    pub until_us: Option<i64>,
    /// `select`, `drop`, ...
    pub operation: Option<String>,
    /// A table read or written: `users` also matches `public.users`.
    pub object: Option<String>,
    /// `allow`, `deny` or `review`.
    pub decision: Option<String>,
    /// A masking entity (`email`, `credit_card`, ...) masked in a result.
    pub masked: Option<String>,
}

/// Statements matching all given fields, newest first ([`Index::search`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub operation: Option<String>,
    pub object: Option<String>,
    pub decision: Option<String>,
    pub masked: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub limit: Option<usize>,
}

/// One statement found by [`Index::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHit {
    pub session_id: String,
    pub seq: u64,
    pub ts_us: Option<i64>,
    pub identity: Option<String>,
    pub connection: Option<String>,
    pub operation: Option<String>,
    pub decision: Option<String>,
    pub text: Option<String>,
}

/// The statement conditions shared by session and statement search; `c` is `commands`,
/// parameters ?10..?13 are operation, object, decision, masked.
const COMMAND_MATCH: &str = "
    (?10 IS NULL OR c.operation = ?10)
    AND (?11 IS NULL OR EXISTS (SELECT 1 FROM command_objects o
          WHERE o.sid = c.sid AND o.seq = c.seq
            AND (o.object = ?11 OR o.object LIKE '%.' || ?11)))
    AND (?12 IS NULL OR c.decision = ?12)
    AND (?13 IS NULL OR EXISTS (SELECT 1 FROM command_masked m
          WHERE m.sid = c.sid AND m.seq = c.seq AND m.entity = ?13))";

/// Handle to the SQLite index; `Send + Sync`, calls are serialized on one connection.
pub struct Index {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The audit log this index describes: read by catch-up, and to read events back.
    log: PathBuf,
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

/// The few fields of an event the indexer needs, borrowed from the line (`Cow` only copies a
/// string containing escapes); everything else, the statement text included, is skipped.
/// Read leniently so that an event kind added by a newer gateway is still indexed (as a
/// plain event) rather than stopping the indexer.
#[derive(Deserialize)]
struct IndexedEvent<'a> {
    ts_us: i64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    identity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    connection: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    command: Option<IndexedCommand<'a>>,
    /// Only read for `session_start`, and only then parsed.
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct IndexedCommand<'a> {
    seq: u64,
    #[serde(borrow, default)]
    decision: Option<Cow<'a, str>>,
    #[serde(default)]
    text: Option<IgnoredAny>,
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reads: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    writes: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    masked: Option<IndexedMasked<'a>>,
}

/// Only the entity names of `masked` (searchable); counts are read from the event itself.
#[derive(Deserialize)]
struct IndexedMasked<'a> {
    #[serde(borrow, default)]
    entities: BTreeMap<Cow<'a, str>, IgnoredAny>,
}

/// What [`Index::session`] reads back from a stored `command` / `command_result` event.
#[derive(Deserialize)]
struct StoredEvent {
    #[serde(default)]
    ts_us: Option<i64>,
    #[serde(default)]
    command: Option<CommandRecord>,
}

impl Index {
    /// Opens or creates the index database (WAL mode, 5 s busy timeout) of the audit log at
    /// `log_path`. An index written by an older version is emptied, to be rebuilt from the log
    /// by the next catch-up.
    pub fn open(db_path: &Path, log_path: &Path) -> Result<Index, StoreError> {
        // SQLite creates its WAL and shared-memory files with the database file's mode, so a
        // database created 0600 here keeps all three private.
        match crate::private::private(std::fs::OpenOptions::new().write(true).create_new(true))
            .open(db_path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                crate::private::tighten_path(db_path)
            }
            Err(e) => return Err(StoreError::io(db_path, e)),
        }
        for side in ["-wal", "-shm"] {
            let mut p = db_path.as_os_str().to_owned();
            p.push(side);
            crate::private::tighten_path(Path::new(&p));
        }
        let mut conn = Connection::open(db_path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // Only takes effect on a new, empty file (before WAL mode is set).
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(db = %db_path.display(), mode, "SQLite refused WAL mode");
        }
        // The log is the durable record; the index can always be rebuilt from it.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let too_new = |version: i64| StoreError::Corrupt {
            path: db_path.to_path_buf(),
            offset: 0,
            reason: format!(
                "index schema version {version} is newer than this airlock ({SCHEMA_VERSION})"
            ),
        };
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(too_new(version));
        }
        if version < SCHEMA_VERSION {
            // Another process may be doing the same: decide again under the write lock.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > SCHEMA_VERSION {
                return Err(too_new(version));
            }
            let rebuild = version < SCHEMA_VERSION;
            if rebuild {
                if version > 0 {
                    tracing::info!(db = %db_path.display(), from = version, to = SCHEMA_VERSION, "audit index schema changed; rebuilding it from the log");
                }
                tx.execute_batch(DROP_OLD)?;
                tx.execute_batch(SCHEMA)?;
                tx.execute(
                    "INSERT INTO index_state (id, log_offset, last_seq, last_hash) VALUES (0, 0, 0, ?1)",
                    params![GENESIS_PREV],
                )?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            tx.commit()?;
            if rebuild && version > 0 {
                compact(&conn, db_path);
            }
        }
        Ok(Index {
            conn: Mutex::new(conn),
            path: db_path.to_path_buf(),
            log: log_path.to_path_buf(),
        })
    }

    /// Indexes the complete lines appended to the log since the last call, in one transaction,
    /// and returns how many events were added. Each line must continue the chain already
    /// indexed; at a broken link the events before it are committed and `Err(Chain)` is
    /// returned (the index never contains an event that does not chain). A missing log file
    /// with nothing indexed yet is `Ok(0)`.
    pub fn catch_up(&self) -> Result<usize, StoreError> {
        let log_path = self.log.as_path();
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (offset, last_seq, last_hash): (i64, i64, String) = tx.query_row(
            "SELECT log_offset, last_seq, last_hash FROM index_state WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let offset = u64::try_from(offset).unwrap_or(0);
        let last_seq = u64::try_from(last_seq).unwrap_or(0);
        // Events removed by retention leave the index too: it can no longer show them, and
        // `verify` would find them missing from the log.
        let first_kept = crate::segments::first_kept_seq(log_path)?;
        if let Some(first_kept) = first_kept.filter(|&f| f > 1) {
            prune_before(&tx, first_kept)?;
        }
        let mut reader = Reader::open(
            log_path,
            Start::After {
                seq: last_seq,
                offset,
            },
        )?;
        let mut walker = ChainWalker::resume(last_seq, last_hash);
        let mut end_offset = offset;
        let mut added = 0usize;
        let mut broken = None;
        let mut first = true;
        {
            let mut writer = IndexWriter::new(&tx, log_path)?;
            // No newline at the end: a write in progress (or a crash the next open will repair).
            loop {
                let line = match reader.next_line() {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e @ StoreError::Corrupt { .. }) => {
                        broken = Some(StoreError::Chain {
                            seq: walker.next_seq,
                            reason: e.to_string(),
                        });
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let (line_offset, line) = (line.offset, line.bytes);
                let line_len = line.len();
                if first {
                    first = false;
                    // Everything up to the first kept event was removed by retention before it
                    // was indexed: start again from the first kept event (the log's verify
                    // checks the retention record that vouches for its `prev`).
                    let seq = line_seq(line).unwrap_or(0);
                    if seq > walker.next_seq && Some(seq) == first_kept {
                        if let Ok(l) = parse_line(line) {
                            walker = ChainWalker::resume(seq - 1, l.prev.to_string());
                        }
                    }
                }
                // The common case parses the event JSON once, for the fields the index needs;
                // anything unusual, or a link that does not check, goes through the full
                // parser as `verify_log` does (and so fails with the same message).
                let fast = fast_link(line).and_then(|link| {
                    let digest = walker
                        .check(link.seq, link.prev, link.hash, link.json.as_bytes())
                        .ok()?;
                    Some((link, digest))
                });
                let (link, digest) = match fast {
                    Some(checked) => checked,
                    None => {
                        let link = match full_link(line) {
                            Ok(link) => link,
                            Err(reason) => {
                                broken = Some(StoreError::Chain {
                                    seq: walker.next_seq,
                                    reason: format!(
                                        "{reason} (byte {line_offset} of a segment of {})",
                                        log_path.display()
                                    ),
                                });
                                break;
                            }
                        };
                        match walker.check(link.seq, link.prev, link.hash, link.json.as_bytes()) {
                            Ok(digest) => (link, digest),
                            Err(reason) => {
                                broken = Some(StoreError::Chain {
                                    seq: link.seq,
                                    reason,
                                });
                                break;
                            }
                        }
                    }
                };
                let Link { seq, event, .. } = link;
                if writer.insert(seq, &digest, (line_offset, line_len), event.as_ref())? {
                    added += 1;
                }
                end_offset = line_offset + line_len as u64 + 1;
            }
            writer.finish()?;
        }
        tx.execute(
            "UPDATE index_state SET log_offset = ?1, last_seq = ?2, last_hash = ?3 WHERE id = 0",
            params![
                i64::try_from(end_offset).unwrap_or(i64::MAX),
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
        let facets = filter.operation.is_some()
            || filter.object.is_some()
            || filter.decision.is_some()
            || filter.masked.is_some();
        let sql = format!(
            "SELECT id, identity, connection, started_us, ended_us, peer, statements, denied
             FROM sessions s
             WHERE (?1 IS NULL OR identity = ?1)
               AND (?2 IS NULL OR connection = ?2)
               AND (?3 IS NULL OR started_us >= ?3)
               AND (?5 IS NULL OR started_us < ?5)
               AND (?14 = 0 OR EXISTS (SELECT 1 FROM commands c WHERE c.sid = s.sid AND {COMMAND_MATCH}))
             ORDER BY started_us DESC, id
             LIMIT ?4"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = stmt.query_map(
            rusqlite::named_params! {
                "?1": filter.identity, "?2": filter.connection, "?3": filter.since_us,
                "?4": limit, "?5": filter.until_us,
                "?10": filter.operation, "?11": filter.object, "?12": filter.decision,
                "?13": filter.masked, "?14": i64::from(facets),
            },
            session_row,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Statements matching every field of `filter`, newest first.
    pub fn search(&self, filter: &CommandFilter) -> Result<Vec<CommandHit>, StoreError> {
        let conn = lock(&self.conn);
        let sql = format!(
            "SELECT s.id, c.seq, c.ts_us, s.identity, s.connection, c.operation, c.decision,
                    ce.seq, ce.pos, ce.len, ce.hash, te.seq, te.pos, te.len, te.hash
             FROM commands c
             JOIN sessions s ON s.sid = c.sid
             LEFT JOIN events ce ON ce.seq = c.command
             LEFT JOIN events te ON te.seq = c.text_event
             WHERE (?1 IS NULL OR s.identity = ?1)
               AND (?2 IS NULL OR s.connection = ?2)
               AND (?3 IS NULL OR c.ts_us >= ?3)
               AND (?5 IS NULL OR c.ts_us < ?5)
               AND {COMMAND_MATCH}
             ORDER BY c.ts_us DESC, s.id, c.seq
             LIMIT ?4"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut lines = LogLines::open(&self.log);
        let rows = stmt.query_map(
            rusqlite::named_params! {
                "?1": filter.identity, "?2": filter.connection, "?3": filter.since_us,
                "?4": limit, "?5": filter.until_us,
                "?10": filter.operation, "?11": filter.object, "?12": filter.decision,
                "?13": filter.masked,
            },
            |r| {
                let command = lines.stored_event(r, 7)?;
                let text_event = lines.stored_event(r, 11)?;
                let text = command
                    .and_then(|e| e.command)
                    .and_then(|c| c.text)
                    .or_else(|| text_event.and_then(|e| e.command).and_then(|c| c.text));
                Ok(CommandHit {
                    session_id: r.get(0)?,
                    seq: get_u64(r, 1)?.unwrap_or(0),
                    ts_us: r.get(2)?,
                    identity: r.get(3)?,
                    connection: r.get(4)?,
                    operation: r.get(5)?,
                    decision: r.get(6)?,
                    text,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionDetail>, StoreError> {
        let conn = lock(&self.conn);
        let session = conn
            .query_row(
                "SELECT id, identity, connection, started_us, ended_us, peer, statements, denied,
                        sid
                 FROM sessions WHERE id = ?1",
                params![id],
                |r| Ok((session_row(r)?, r.get::<_, i64>(8)?)),
            )
            .optional()?;
        let Some((session, sid)) = session else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT c.seq, c.decision, ce.seq, ce.pos, ce.len, ce.hash,
                    re.seq, re.pos, re.len, re.hash, te.seq, te.pos, te.len, te.hash
             FROM commands c
             LEFT JOIN events ce ON ce.seq = c.command
             LEFT JOIN events re ON re.seq = c.result
             LEFT JOIN events te ON te.seq = c.text_event
             WHERE c.sid = ?1 ORDER BY c.seq",
        )?;
        let mut lines = LogLines::open(&self.log);
        let commands = stmt
            .query_map(params![sid], |r| {
                let seq = get_u64(r, 0)?.unwrap_or(0);
                let decision: Option<String> = r.get(1)?;
                let command = lines.stored_event(r, 2)?;
                let result = lines.stored_event(r, 6)?;
                let text_event = lines.stored_event(r, 10)?;
                let (ts_us, cmd) = command.map_or((None, None), |e| (e.ts_us, e.command));
                let cmd = cmd.unwrap_or_default();
                let res = result.and_then(|e| e.command).unwrap_or_default();
                Ok(CommandRow {
                    seq,
                    ts_us,
                    operation: cmd.operation,
                    reads: cmd.reads,
                    writes: cmd.writes,
                    flags: cmd.flags,
                    decision,
                    rule: cmd.rule,
                    message: cmd.message,
                    text: cmd
                        .text
                        .or_else(|| text_event.and_then(|e| e.command).and_then(|c| c.text)),
                    rows: res.rows,
                    error: res.error,
                    duration_us: res.duration_us,
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
        let mut stmt = conn.prepare("SELECT seq, hash, pos, len FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut lines = LogLines::open(&self.log);
        let mut walker = ChainWalker::genesis();
        let mut events = 0u64;
        let mut first_seq = 1;
        let report = |walker: ChainWalker, events, first_broken, first_seq| VerifyReport {
            events,
            first_broken,
            last_hash: walker.prev,
            partial_tail_bytes: 0,
            first_seq,
            retention_seq: None,
            segments: 0,
        };
        while let Some(row) = rows.next()? {
            let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
            // Typed access would fail the whole verification on a row edited to another type;
            // reading the bytes makes that an ordinary mismatch at this seq instead.
            let hash = value_bytes(row.get_ref(1)?);
            // The position read leniently too: a non-integer reads as outside the log.
            let at = |i| row.get::<_, i64>(i).unwrap_or(-1);
            let is_first = events == 0;
            let located = lines.line(seq, at(2), at(3)).and_then(|line| {
                let l = parse_line(line)?;
                if l.seq != seq {
                    return Err(format!(
                        "the log line at the indexed position holds seq {}",
                        l.seq
                    ));
                }
                if is_first && seq > 1 {
                    // The trail starts after retention removed its beginning: the log's own
                    // verification checks what vouches for this `prev`.
                    walker = ChainWalker::resume(seq - 1, l.prev.to_string());
                    first_seq = seq;
                }
                walker.check_stored(seq, hash, l.event.get().as_bytes())
            });
            if let Err(reason) = located {
                let at = walker.next_seq;
                return Ok(report(walker, events, Some((at, reason)), first_seq));
            }
            events += 1;
        }
        let state_seq = u64::try_from(state_seq).unwrap_or(0);
        let last = walker.next_seq.saturating_sub(1);
        if last != state_seq || (state_seq > 0 && walker.prev != state_hash) {
            let reason = format!(
                "index recorded events up to seq {state_seq} but the events table ends at seq {last} (rows deleted)"
            );
            return Ok(report(walker, events, Some((last + 1, reason)), first_seq));
        }
        Ok(report(walker, events, None, first_seq))
    }
}

/// Gives back the space of dropped tables (the old layout was twice as large) and moves the
/// file to [`PAGE_SIZE`], which needs it out of WAL mode for a moment. Best effort: with
/// another connection open the mode cannot change and only the space is reclaimed.
fn compact(conn: &Connection, db_path: &Path) {
    let result = (|| -> rusqlite::Result<()> {
        let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("delete") {
            conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        }
        conn.execute_batch("VACUUM")
    })();
    if let Err(e) = result {
        tracing::warn!(db = %db_path.display(), error = %e, "could not compact the rebuilt audit index");
    }
    if let Err(e) = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
        tracing::warn!(db = %db_path.display(), error = %e, "could not return the audit index to WAL mode");
    }
}

fn value_bytes(v: rusqlite::types::ValueRef<'_>) -> &[u8] {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => b,
        ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => &[],
    }
}

/// Reads indexed events back from the trail by the position stored with them.
struct LogLines {
    at: LineAt,
}

impl LogLines {
    fn open(log: &Path) -> Self {
        LogLines {
            at: LineAt::new(log),
        }
    }

    /// The line (without newline) the index places at `pos` of the segment holding `seq`.
    fn line(&mut self, seq: u64, pos: i64, len: i64) -> Result<&[u8], String> {
        self.at.line(seq, pos, len)
    }

    /// The event whose `(seq, pos, len, hash)` are the columns from `col` on, if its line
    /// still says what was indexed; `None` for NULL columns (no such event) and for a line
    /// that was edited or cannot be read (logged as a warning: `audit verify` says more).
    fn stored_event(
        &mut self,
        r: &rusqlite::Row<'_>,
        col: usize,
    ) -> rusqlite::Result<Option<StoredEvent>> {
        let (Some(seq), Some(pos), Some(len)) = (
            get_u64(r, col)?,
            r.get::<_, Option<i64>>(col + 1)?,
            r.get::<_, Option<i64>>(col + 2)?,
        ) else {
            return Ok(None);
        };
        let hash = value_bytes(r.get_ref(col + 3)?).to_vec();
        match self.event_json(seq, pos, len, &hash) {
            Ok(json) => Ok(serde_json::from_str(json).ok()),
            Err(reason) => {
                tracing::warn!(
                    reason,
                    "audit event not shown: the log no longer matches the index"
                );
                Ok(None)
            }
        }
    }

    /// The event JSON of the line at `pos`, checked against the indexed `hash`.
    fn event_json(&mut self, seq: u64, pos: i64, len: i64, hash: &[u8]) -> Result<&str, String> {
        let line = self.line(seq, pos, len)?;
        let l = parse_line(line)?;
        let json = l.event.get();
        if crate::chain::chain_digest(l.seq, l.prev, json.as_bytes()).as_slice() != hash {
            return Err(format!(
                "event {} at byte {pos} of its segment was edited",
                l.seq
            ));
        }
        Ok(json)
    }
}

/// Removes what the index holds about events before `first_kept` (removed by retention).
/// Session rows stay, with their counters; their statements' details are gone with the log.
fn prune_before(tx: &Connection, first_kept: u64) -> Result<(), StoreError> {
    let k = to_i64(first_kept);
    let oldest: Option<i64> = tx.query_row("SELECT min(seq) FROM events", [], |r| r.get(0))?;
    if oldest.is_none_or(|o| o >= k) {
        return Ok(());
    }
    tx.execute("DELETE FROM events WHERE seq < ?1", params![k])?;
    tx.execute(
        "DELETE FROM commands WHERE coalesce(command, result) < ?1 AND coalesce(result, command) < ?1",
        params![k],
    )?;
    tx.execute(
        "UPDATE commands SET text_event = NULL WHERE text_event < ?1",
        params![k],
    )?;
    tx.execute_batch(
        "DELETE FROM command_objects WHERE NOT EXISTS
           (SELECT 1 FROM commands c WHERE c.sid = command_objects.sid AND c.seq = command_objects.seq);
         DELETE FROM command_masked WHERE NOT EXISTS
           (SELECT 1 FROM commands c WHERE c.sid = command_masked.sid AND c.seq = command_masked.seq);",
    )?;
    Ok(())
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

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One line of the log, with the fields of its event the index needs if they could be read.
struct Link<'a> {
    seq: u64,
    prev: &'a str,
    hash: &'a str,
    json: &'a str,
    event: Option<IndexedEvent<'a>>,
}

/// A line as the log writer writes it, with an event the index understands; `None` for
/// anything else.
fn fast_link(line: &[u8]) -> Option<Link<'_>> {
    let l = split_line(line)?;
    let event = serde_json::from_str::<IndexedEvent<'_>>(l.event).ok()?;
    Some(Link {
        seq: l.seq,
        prev: l.prev,
        hash: l.hash,
        json: l.event,
        event: Some(event),
    })
}

fn full_link(line: &[u8]) -> Result<Link<'_>, String> {
    let l = parse_line(line)?;
    let json = l.event.get();
    let event = match serde_json::from_str::<IndexedEvent<'_>>(json) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(seq = l.seq, error = %e, "audit event not understood; indexed without details");
            None
        }
    };
    Ok(Link {
        seq: l.seq,
        prev: l.prev,
        hash: l.hash,
        json,
        event,
    })
}

/// A session as far as the current batch knows it.
struct SessionRef {
    sid: i64,
    has_identity: bool,
    has_connection: bool,
}

/// A statement's events seen in this batch, not yet written.
#[derive(Default)]
struct PendingCommand {
    command: Option<i64>,
    decision: Option<String>,
    has_text: bool,
    result: Option<i64>,
    operation: Option<String>,
    ts_us: Option<i64>,
    /// Tables read or written, and masked entities: search facets.
    objects: Vec<String>,
    masked: Vec<String>,
}

/// Applies events to the tables within one transaction. Holds its statements for the whole
/// batch: looking them up in the statement cache per event is measurable.
struct IndexWriter<'c> {
    conn: &'c Connection,
    insert_event: CachedStatement<'c>,
    sessions: HashMap<String, SessionRef>,
    pending: BTreeMap<(i64, u64), PendingCommand>,
    /// Per sid: statements and denied to add.
    counts: HashMap<i64, (i64, i64)>,
    /// To read back an earlier event (rare: a command logged twice).
    lines: LogLines,
}

impl<'c> IndexWriter<'c> {
    fn new(conn: &'c Connection, log: &Path) -> Result<Self, StoreError> {
        Ok(IndexWriter {
            conn,
            insert_event: conn.prepare_cached(
                "INSERT OR IGNORE INTO events (seq, hash, pos, len) VALUES (?1, ?2, ?3, ?4)",
            )?,
            sessions: HashMap::new(),
            pending: BTreeMap::new(),
            counts: HashMap::new(),
            lines: LogLines::open(log),
        })
    }

    /// Stores where the event's line is (`(pos, len)` in the log) and applies what it says
    /// (`event`, if it could be read). Returns false if it was already indexed.
    fn insert(
        &mut self,
        seq: u64,
        digest: &[u8; 32],
        (pos, len): (u64, usize),
        event: Option<&IndexedEvent<'_>>,
    ) -> Result<bool, StoreError> {
        let seq_i = to_i64(seq);
        if self.insert_event.execute(params![
            seq_i,
            &digest[..],
            to_i64(pos),
            to_i64(len as u64)
        ])? == 0
        {
            return Ok(false);
        }
        if let Some(event) = event {
            self.apply(seq_i, event)?;
        }
        Ok(true)
    }

    fn apply(&mut self, event_seq: i64, ev: &IndexedEvent<'_>) -> Result<(), StoreError> {
        let Some(session_id) = ev.session_id.as_deref() else {
            return Ok(());
        };
        let identity = ev.identity.as_deref();
        let connection = ev.connection.as_deref();
        match &*ev.kind {
            "session_start" => {
                let peer = ev
                    .detail
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d.get()).ok())
                    .and_then(|d| match d.get("peer")? {
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    });
                let sid = self.session(session_id, identity, connection, false)?;
                self.conn
                    .prepare_cached(
                        "UPDATE sessions SET
                           identity = coalesce(?2, identity),
                           connection = coalesce(?3, connection),
                           started_us = ?4,
                           peer = coalesce(?5, peer)
                         WHERE sid = ?1",
                    )?
                    .execute(params![sid, identity, connection, ev.ts_us, peer])?;
                if let Some(s) = self.sessions.get_mut(session_id) {
                    s.has_identity |= identity.is_some();
                    s.has_connection |= connection.is_some();
                }
            }
            "session_end" => {
                let sid = self.session(session_id, identity, connection, false)?;
                self.conn
                    .prepare_cached("UPDATE sessions SET ended_us = ?2 WHERE sid = ?1")?
                    .execute(params![sid, ev.ts_us])?;
            }
            "command" => {
                let Some(cmd) = &ev.command else {
                    return Ok(());
                };
                let sid = self.session(session_id, identity, connection, true)?;
                let key = (sid, cmd.seq);
                if self.pending.get(&key).is_some_and(|p| p.command.is_some()) {
                    // Logged again: merge with the stored row, which needs the first one written.
                    if let Some(first) = self.pending.remove(&key) {
                        self.write(key, first)?;
                    }
                }
                let p = self.pending.entry(key).or_default();
                p.command = Some(event_seq);
                p.decision = cmd.decision.as_deref().map(str::to_owned);
                p.has_text = cmd.text.is_some();
                if let Some(op) = cmd.operation.as_deref() {
                    p.operation = Some(op.to_owned());
                }
                p.ts_us.get_or_insert(ev.ts_us);
                for o in cmd.reads.iter().chain(&cmd.writes) {
                    if !p.objects.iter().any(|x| x == o) {
                        p.objects.push(o.to_string());
                    }
                }
            }
            "command_result" => {
                let Some(cmd) = &ev.command else {
                    return Ok(());
                };
                let sid = self.session(session_id, identity, connection, false)?;
                let p = self.pending.entry((sid, cmd.seq)).or_default();
                p.result = Some(event_seq);
                if let Some(m) = &cmd.masked {
                    p.masked.extend(m.entities.keys().map(|k| k.to_string()));
                }
            }
            _ => {}
        }
        if self.pending.len() >= MAX_PENDING {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// The sid of a session, creating its row if needed; `fill` sets identity and connection
    /// where they are still unknown.
    fn session(
        &mut self,
        id: &str,
        identity: Option<&str>,
        connection: Option<&str>,
        fill: bool,
    ) -> Result<i64, StoreError> {
        if !self.sessions.contains_key(id) {
            let existing = self
                .conn
                .prepare_cached(
                    "SELECT sid, identity IS NOT NULL, connection IS NOT NULL
                     FROM sessions WHERE id = ?1",
                )?
                .query_row(params![id], |r| {
                    Ok(SessionRef {
                        sid: r.get(0)?,
                        has_identity: r.get(1)?,
                        has_connection: r.get(2)?,
                    })
                })
                .optional()?;
            let session = match existing {
                Some(s) => s,
                None => {
                    self.conn
                        .prepare_cached(
                            "INSERT INTO sessions (id, identity, connection) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![id, identity, connection])?;
                    SessionRef {
                        sid: self.conn.last_insert_rowid(),
                        has_identity: identity.is_some(),
                        has_connection: connection.is_some(),
                    }
                }
            };
            self.sessions.insert(id.to_owned(), session);
        }
        let Some(session) = self.sessions.get_mut(id) else {
            return Err(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows));
        };
        let fill_identity = fill && !session.has_identity && identity.is_some();
        let fill_connection = fill && !session.has_connection && connection.is_some();
        if fill_identity || fill_connection {
            session.has_identity |= identity.is_some();
            session.has_connection |= connection.is_some();
            self.conn
                .prepare_cached(
                    "UPDATE sessions SET identity = coalesce(identity, ?2),
                                         connection = coalesce(connection, ?3)
                     WHERE sid = ?1",
                )?
                .execute(params![session.sid, identity, connection])?;
        }
        Ok(session.sid)
    }

    /// Writes one statement. A new statement is one insert; only a command logged again
    /// reads the stored row to merge with it and correct the session's counters.
    fn write(&mut self, (sid, seq): (i64, u64), p: PendingCommand) -> Result<(), StoreError> {
        let seq_i = to_i64(seq);
        self.write_facets(sid, seq_i, &p)?;
        let Some(command) = p.command else {
            self.conn
                .prepare_cached(
                    "INSERT INTO commands (sid, seq, result) VALUES (?1, ?2, ?3)
                     ON CONFLICT (sid, seq) DO UPDATE SET result = excluded.result",
                )?
                .execute(params![sid, seq_i, p.result])?;
            return Ok(());
        };
        let is_deny = |d: Option<&str>| i64::from(d == Some("deny"));
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO commands (sid, seq, command, result, decision, operation, ts_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (sid, seq) DO NOTHING",
            )?
            .execute(params![
                sid,
                seq_i,
                command,
                p.result,
                p.decision,
                p.operation,
                p.ts_us
            ])?;
        let (new_statement, denied) = if inserted == 1 {
            (
                i64::from(p.decision.is_some()),
                is_deny(p.decision.as_deref()),
            )
        } else {
            let (old_command, old_result, old_decision, old_text_event): (
                Option<i64>,
                Option<i64>,
                Option<String>,
                Option<i64>,
            ) = self
                .conn
                .prepare_cached(
                    "SELECT command, result, decision, text_event FROM commands
                     WHERE sid = ?1 AND seq = ?2",
                )?
                .query_row(params![sid, seq_i], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
            let text_event = if p.has_text {
                None
            } else if old_text_event.is_some() {
                old_text_event
            } else {
                match old_command {
                    Some(old) if self.event_has_text(old)? => Some(old),
                    _ => None,
                }
            };
            let decision = p.decision.or(old_decision.clone());
            self.conn
                .prepare_cached(
                    "UPDATE commands SET command = ?3, result = ?4, decision = ?5, text_event = ?6,
                                         operation = coalesce(?7, operation),
                                         ts_us = coalesce(ts_us, ?8)
                     WHERE sid = ?1 AND seq = ?2",
                )?
                .execute(params![
                    sid,
                    seq_i,
                    command,
                    p.result.or(old_result),
                    decision,
                    text_event,
                    p.operation,
                    p.ts_us
                ])?;
            (
                i64::from(old_decision.is_none() && decision.is_some()),
                is_deny(decision.as_deref()) - is_deny(old_decision.as_deref()),
            )
        };
        if new_statement != 0 || denied != 0 {
            let c = self.counts.entry(sid).or_default();
            c.0 += new_statement;
            c.1 += denied;
        }
        Ok(())
    }

    /// Search facets: rare (only statements naming tables or with masked values) and
    /// idempotent, so a repeated event is harmless.
    fn write_facets(&self, sid: i64, seq: i64, p: &PendingCommand) -> Result<(), StoreError> {
        if !p.objects.is_empty() {
            let mut stmt = self.conn.prepare_cached(
                "INSERT OR IGNORE INTO command_objects (sid, seq, object) VALUES (?1, ?2, ?3)",
            )?;
            for o in &p.objects {
                stmt.execute(params![sid, seq, o])?;
            }
        }
        if !p.masked.is_empty() {
            let mut stmt = self.conn.prepare_cached(
                "INSERT OR IGNORE INTO command_masked (sid, seq, entity) VALUES (?1, ?2, ?3)",
            )?;
            for m in &p.masked {
                stmt.execute(params![sid, seq, m])?;
            }
        }
        Ok(())
    }

    fn event_has_text(&mut self, event_seq: i64) -> Result<bool, StoreError> {
        let at: Option<(i64, i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT pos, len, hash FROM events WHERE seq = ?1")?
            .query_row(params![event_seq], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((pos, len, hash)) = at else {
            return Ok(false);
        };
        let seq = u64::try_from(event_seq).unwrap_or(0);
        Ok(self.lines.event_json(seq, pos, len, &hash).is_ok_and(|j| {
            serde_json::from_str::<IndexedEvent<'_>>(j)
                .ok()
                .and_then(|e| e.command)
                .is_some_and(|c| c.text.is_some())
        }))
    }

    fn flush_pending(&mut self) -> Result<(), StoreError> {
        // In key order: B-tree inserts into the same pages in a row.
        for (key, p) in std::mem::take(&mut self.pending) {
            self.write(key, p)?;
        }
        Ok(())
    }

    /// Writes everything merged in memory; call before committing.
    fn finish(mut self) -> Result<(), StoreError> {
        self.flush_pending()?;
        let mut update = self.conn.prepare_cached(
            "UPDATE sessions SET statements = statements + ?2, denied = max(denied + ?3, 0)
             WHERE sid = ?1",
        )?;
        for (sid, (statements, denied)) in &self.counts {
            update.execute(params![sid, statements, denied])?;
        }
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
    let index = Index::open(db_path, log_path)?;
    let log_path = log_path.to_path_buf();
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || {
            let mut last_error: Option<String> = None;
            loop {
                match index.catch_up() {
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
            if let Err(e) = index.catch_up() {
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::chain::{chain_hash, push_line};
    use crate::{AuditEvent, AuditLog, AuditOptions, EventKind};

    /// What the index must show, computed naively from the events (the v1 semantics).
    #[derive(Default)]
    struct Model {
        sessions: BTreeMap<String, (u64, u64)>,
        commands: BTreeMap<(String, u64), CommandRow>,
    }

    impl Model {
        fn apply(&mut self, ev: &AuditEvent) {
            let (Some(sid), Some(cmd)) = (&ev.session_id, &ev.command) else {
                return;
            };
            let row = self
                .commands
                .entry((sid.clone(), cmd.seq))
                .or_insert_with(|| CommandRow {
                    seq: cmd.seq,
                    ts_us: None,
                    operation: None,
                    reads: vec![],
                    writes: vec![],
                    flags: vec![],
                    decision: None,
                    rule: None,
                    message: None,
                    text: None,
                    rows: None,
                    error: None,
                    duration_us: None,
                });
            match ev.kind {
                EventKind::Command => {
                    let before = row.decision.clone();
                    row.ts_us = Some(ev.ts_us);
                    row.operation = cmd.operation.clone();
                    row.reads = cmd.reads.clone();
                    row.writes = cmd.writes.clone();
                    row.flags = cmd.flags.clone();
                    row.rule = cmd.rule.clone();
                    row.message = cmd.message.clone();
                    row.decision = cmd.decision.clone().or(before.clone());
                    row.text = cmd.text.clone().or(row.text.take());
                    let counts = self.sessions.entry(sid.clone()).or_default();
                    if before.is_none() && row.decision.is_some() {
                        counts.0 += 1;
                    }
                    let deny = |d: &Option<String>| u64::from(d.as_deref() == Some("deny"));
                    counts.1 = counts.1 + deny(&row.decision) - deny(&before);
                }
                EventKind::CommandResult => {
                    row.rows = cmd.rows;
                    row.error = cmd.error.clone();
                    row.duration_us = cmd.duration_us;
                }
                _ => {}
            }
        }
    }

    fn workload() -> Vec<AuditEvent> {
        let mut events = vec![];
        let sessions = ["s-a", "s-b", "s-c"];
        for (i, s) in sessions.iter().enumerate() {
            events.push(AuditEvent {
                session_id: Some((*s).into()),
                identity: Some(format!("user{i}")),
                connection: Some("pg".into()),
                detail: Some(serde_json::json!({"peer": format!("10.0.0.{i}:5000")})),
                ..AuditEvent::new(EventKind::SessionStart)
            });
        }
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut open: Vec<(usize, u64)> = vec![];
        let mut seqs = [0u64; 3];
        for _ in 0..120 {
            let s = next(3) as usize;
            match next(10) {
                0..=4 => {
                    seqs[s] += 1;
                    let decision = ["allow", "deny", "review"][next(3) as usize];
                    events.push(AuditEvent {
                        session_id: Some(sessions[s].into()),
                        identity: Some(format!("user{s}")),
                        command: Some(CommandRecord {
                            seq: seqs[s],
                            text: Some(format!("select \"q\" from t where id = {}", seqs[s])),
                            operation: Some("select".into()),
                            reads: vec!["public.t".into()],
                            decision: Some(decision.into()),
                            rule: (decision != "allow").then(|| "r1".into()),
                            ..Default::default()
                        }),
                        ..AuditEvent::new(EventKind::Command)
                    });
                    open.push((s, seqs[s]));
                }
                5..=7 if !open.is_empty() => {
                    let (s, seq) = open.remove(next(open.len() as u64) as usize);
                    events.push(AuditEvent {
                        session_id: Some(sessions[s].into()),
                        command: Some(CommandRecord {
                            seq,
                            rows: Some(next(100)),
                            error: (next(4) == 0).then(|| "boom".into()),
                            duration_us: Some(next(1000)),
                            ..Default::default()
                        }),
                        ..AuditEvent::new(EventKind::CommandResult)
                    });
                }
                8 if seqs[s] > 0 => {
                    // The statement decided again (a review's outcome), text not repeated.
                    let seq = 1 + next(seqs[s]);
                    events.push(AuditEvent {
                        session_id: Some(sessions[s].into()),
                        command: Some(CommandRecord {
                            seq,
                            operation: Some("select".into()),
                            decision: (next(3) != 0)
                                .then(|| ["allow", "deny"][next(2) as usize].into()),
                            message: Some("approved by bob".into()),
                            ..Default::default()
                        }),
                        ..AuditEvent::new(EventKind::Command)
                    });
                }
                _ => events.push(AuditEvent::new(EventKind::Other)),
            }
        }
        events
    }

    fn assert_matches(index: &Index, events: &[AuditEvent]) {
        let mut model = Model::default();
        for ev in events {
            model.apply(ev);
        }
        for (sid, (statements, denied)) in &model.sessions {
            let detail = index.session(sid).unwrap().unwrap();
            assert_eq!(
                (detail.session.statements, detail.session.denied),
                (*statements, *denied),
                "counters of {sid}"
            );
            let expected: Vec<&CommandRow> = model
                .commands
                .iter()
                .filter(|((s, _), _)| s == sid)
                .map(|(_, row)| row)
                .collect();
            assert_eq!(detail.commands.iter().collect::<Vec<_>>(), expected);
        }
        assert!(index.verify().unwrap().is_ok());
    }

    #[test]
    fn batched_and_incremental_indexing_match_a_naive_model() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("audit.log");
        let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
        let events = workload();
        let step_by_step = Index::open(&dir.path().join("steps.db"), &log_path).unwrap();
        for (i, chunk) in events.chunks(7).enumerate() {
            log.append(chunk).unwrap();
            if i % 2 == 0 {
                step_by_step.catch_up().unwrap();
            }
        }
        step_by_step.catch_up().unwrap();
        let at_once = Index::open(&dir.path().join("once.db"), &log_path).unwrap();
        assert_eq!(at_once.catch_up().unwrap(), events.len());
        assert_matches(&at_once, &events);
        assert_matches(&step_by_step, &events);
        let re_decided = events
            .iter()
            .filter(|e| {
                e.command
                    .as_ref()
                    .is_some_and(|c| c.text.is_none() && c.decision.is_some())
            })
            .count();
        assert!(re_decided > 3, "the workload must exercise the merge path");
        let s = at_once.session("s-b").unwrap().unwrap();
        assert_eq!(s.session.identity.as_deref(), Some("user1"));
        assert_eq!(s.session.peer.as_deref(), Some("10.0.0.1:5000"));
    }

    /// Lines not in the writer's exact form (whitespace, extra keys) take the full parser and
    /// index the same; an event that is not JSON the index understands is still stored.
    #[test]
    fn unusual_lines_are_indexed_like_verify_log_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("audit.log");
        let command = AuditEvent {
            session_id: Some("s1".into()),
            command: Some(CommandRecord {
                seq: 1,
                text: Some("select 1".into()),
                decision: Some("deny".into()),
                ..Default::default()
            }),
            ..AuditEvent::new(EventKind::Command)
        };
        let events = [
            serde_json::to_string(&command).unwrap(),
            r#"{"kind":"from_the_future","ts_us":"not a number"}"#.to_string(),
            r#"{"ts_us":5,"kind":"command_result","session_id":"s1","command":{"seq":1,"rows":3}}"#
                .to_string(),
        ];
        let mut text = Vec::new();
        let mut prev = GENESIS_PREV.to_string();
        for (i, json) in events.iter().enumerate() {
            let seq = i as u64 + 1;
            let hash = chain_hash(seq, &prev, json.as_bytes());
            match i {
                0 => push_line(&mut text, seq, &prev, &hash, json.as_bytes()),
                1 => text.extend_from_slice(
                    format!("{{ \"seq\": {seq}, \"prev\": \"{prev}\", \"hash\": \"{hash}\", \"event\": {json} }}\n").as_bytes(),
                ),
                _ => text.extend_from_slice(
                    format!("{{\"seq\":{seq},\"prev\":\"{prev}\",\"hash\":\"{hash}\",\"event\":{json},\"note\":1}}\n").as_bytes(),
                ),
            }
            prev = hash;
        }
        std::fs::write(&log_path, text).unwrap();
        assert!(crate::verify_log(&log_path).unwrap().is_ok());
        let index = Index::open(&dir.path().join("index.db"), &log_path).unwrap();
        assert_eq!(index.catch_up().unwrap(), 3);
        let s1 = index.session("s1").unwrap().unwrap();
        assert_eq!((s1.session.statements, s1.session.denied), (1, 1));
        assert_eq!(s1.commands[0].rows, Some(3));
        assert_eq!(s1.commands[0].text.as_deref(), Some("select 1"));
        let report = index.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.last_hash, prev);
    }

    #[test]
    fn an_edited_hash_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("audit.log");
        let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
        log.append(&workload()[..10]).unwrap();
        let db = dir.path().join("index.db");
        let index = Index::open(&db, &log_path).unwrap();
        index.catch_up().unwrap();
        let conn = Connection::open(&db).unwrap();
        conn.execute("UPDATE events SET hash = zeroblob(32) WHERE seq = 6", [])
            .unwrap();
        let (seq, reason) = index.verify().unwrap().first_broken.unwrap();
        assert_eq!(seq, 6);
        assert!(reason.contains("edited"), "{reason}");
    }

    #[test]
    fn an_index_with_the_old_schema_is_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("audit.log");
        let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
        let events = workload();
        log.append(&events).unwrap();
        let db = dir.path().join("index.db");
        {
            let old = Connection::open(&db).unwrap();
            old.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE events (seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL,
                     kind TEXT NOT NULL, session_id TEXT, identity TEXT, connection TEXT,
                     hash TEXT NOT NULL, prev TEXT NOT NULL, json TEXT NOT NULL);
                 CREATE INDEX events_ts ON events(ts_us);
                 CREATE TABLE sessions (id TEXT PRIMARY KEY, statements INTEGER);
                 CREATE TABLE commands (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
                     text TEXT, PRIMARY KEY (session_id, seq));
                 CREATE TABLE index_state (id INTEGER PRIMARY KEY CHECK (id = 0),
                     log_offset INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                     last_hash TEXT NOT NULL);
                 INSERT INTO index_state VALUES (0, 123, 1, 'abc');
                 INSERT INTO sessions VALUES ('stale', 9);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let index = Index::open(&db, &log_path).unwrap();
        assert_eq!(index.last_seq().unwrap(), 0);
        assert!(index.session("stale").unwrap().is_none());
        assert_eq!(index.catch_up().unwrap(), events.len());
        assert_matches(&index, &events);
        let conn = Connection::open(&db).unwrap();
        let (version, page_size): (i64, i64) = conn
            .query_row(
                "SELECT user_version, page_size FROM pragma_user_version, pragma_page_size",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, page_size), (SCHEMA_VERSION, PAGE_SIZE));

        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(index);
        assert!(matches!(
            Index::open(&db, &log_path),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
