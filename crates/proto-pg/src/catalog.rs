//! The catalog snapshot column masking follows views through, and the check that keeps it
//! honest.
//!
//! Lineage reads view definitions from a snapshot of the upstream's catalog, taken when a
//! session opens (and shared by the connection's sessions for a minute). DDL run outside
//! airlock, by a DBA or a migration, can change a relation under the snapshot:
//! `CREATE OR REPLACE VIEW v AS SELECT card …` keeps the name, so lineage would go on tracing
//! `v` through its old, clean definition (round-14 review, F1). So with every statement a
//! session under column masking runs, the relay sends a check: the catalog version of each
//! relation the statement names and of each relation those views read, transitively, as the
//! server resolves and plans them at that moment. Its answer arrives before the statement's
//! rows; if any version differs from the snapshot's, those rows are masked as unknown and the
//! relay takes a new snapshot before the next statement.
//!
//! The check reads `pg_class` through SQL, so it sees the catalog as of the transaction's
//! snapshot, while the planner always uses the latest one. Under `REPEATABLE READ` or
//! `SERIALIZABLE` a view replaced after the transaction began would go unseen, so there the
//! check answers "changed" whatever it reads and the rows are masked as unknown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airlock_sql::lineage::{ViewMap, Views};
use bytes::{BufMut, BytesMut};

use crate::codec::{put_cstr, put_message};
use crate::mask::data_row_values;

/// A catalog snapshot as one session's masking uses it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub views: Arc<ViewMap>,
    /// A check found a relation this snapshot knows changed: the relay takes a new snapshot
    /// before the next statement it can (see [`Snapshot::renewed`]).
    pub outdated: Arc<AtomicBool>,
}

impl Snapshot {
    pub fn new(views: Arc<ViewMap>) -> Snapshot {
        Snapshot {
            views,
            outdated: Arc::default(),
        }
    }

    pub fn is_outdated(&self) -> bool {
        self.outdated.load(Ordering::Relaxed)
    }

    /// The snapshot that replaces this one: `fresh` from the catalog, relations this one did
    /// not know still unknown ([`ViewMap::keeping_unknown`]).
    pub fn renewed(&self, fresh: ViewMap) -> Snapshot {
        Snapshot::new(Arc::new(fresh.keeping_unknown(&self.views)))
    }
}

/// How long a connection's snapshot is shared with the sessions that open after it: the
/// checks catch what changes meanwhile, so this only bounds how long a relation created since
/// stays unknown (masked) to new sessions.
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Catalog snapshots per connection, shared by the listener's sessions for [`SNAPSHOT_TTL`].
#[derive(Default)]
pub struct SnapshotCache {
    map: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Arc<ViewMap>)>>,
}

impl SnapshotCache {
    pub fn get(&self, connection: &str) -> Option<Arc<ViewMap>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(connection)
            .filter(|(at, _)| at.elapsed() < SNAPSHOT_TTL)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, connection: &str, views: Arc<ViewMap>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 1024 {
            map.clear();
        }
        map.insert(connection.to_owned(), (std::time::Instant::now(), views));
    }
}

/// The checks of the extended protocol, prepared once per session under these names (and
/// run through a portal of the same name): parsing and planning the check for every statement
/// cost the server more than a primary-key read (issue 17's A/B halved pgbench's throughput
/// under masking). `$1` is the names, as [`check_names_param`] writes them. A client that
/// takes one of these names for its own statement only makes its own statements fail.
pub const CHECK_NAMES: [&str; 2] = ["airlock catalog check", "airlock catalog check views"];

const CHECK_FLAT_SQL: &str = "SELECT c.oid::pg_catalog.text, c.xmin::pg_catalog.text || '/*/*/' || \
     (SELECT pg_catalog.count(*)::pg_catalog.text || ':' || COALESCE(pg_catalog.max(i2.xmin::pg_catalog.text::pg_catalog.int8), 0)::pg_catalog.text FROM pg_catalog.pg_inherits i2 WHERE i2.inhparent = c.oid), \
     pg_catalog.current_setting('transaction_isolation'), \
     c.relnamespace::pg_catalog.regnamespace::pg_catalog.text, c.relname::pg_catalog.text \
     FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY (ARRAY(\
     SELECT pg_catalog.to_regclass(n)::pg_catalog.oid FROM pg_catalog.unnest($1::pg_catalog.text[]) AS n))";

const CHECK_VIEWS_SQL: &str = "WITH RECURSIVE rels(id) AS (\
     SELECT pg_catalog.to_regclass(n)::pg_catalog.oid FROM pg_catalog.unnest($1::pg_catalog.text[]) AS n \
     UNION \
     SELECT d.refobjid FROM rels JOIN pg_catalog.pg_rewrite r ON r.ev_class = rels.id \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
     AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) \
     SELECT c.oid::pg_catalog.text, \
     c.xmin::pg_catalog.text || '/' || COALESCE(rw.xmin::pg_catalog.text, '') || '/' || \
     (SELECT pg_catalog.max(a.xmin::pg_catalog.text::pg_catalog.int8) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid)::pg_catalog.text || '/' || \
     (SELECT pg_catalog.count(*)::pg_catalog.text || ':' || COALESCE(pg_catalog.max(i2.xmin::pg_catalog.text::pg_catalog.int8), 0)::pg_catalog.text FROM pg_catalog.pg_inherits i2 WHERE i2.inhparent = c.oid), \
     pg_catalog.current_setting('transaction_isolation'), ns.nspname::pg_catalog.text, \
     c.relname::pg_catalog.text \
     FROM rels JOIN pg_catalog.pg_class c ON c.oid = rels.id \
     JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace \
     LEFT JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = c.oid AND rw.rulename = '_RETURN' \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ns.nspname <> 'information_schema'";

/// `text[]` OID, the type of the prepared checks' parameter.
const TEXT_ARRAY_OID: u32 = 1009;

/// The names as an array literal of quoted identifiers (`{"\"public\".\"v\""}`), for the
/// prepared check's parameter. `None` when they are too many.
pub fn check_names_param(names: &[String]) -> Option<String> {
    if names.len() > MAX_CHECKED_NAMES {
        return None;
    }
    let elements: Vec<String> = names
        .iter()
        .map(|n| {
            let ident = quoted_identifier(n);
            format!("\"{}\"", ident.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect();
    Some(format!("{{{}}}", elements.join(",")))
}

/// `schema.name` (or `catalog.schema.name`, or `name`) as the classifier reports it, written
/// as quoted identifiers (the last two parts), so that to_regclass reads it as the classifier did.
fn quoted_identifier(n: &str) -> String {
    let parts: Vec<&str> = n.split('.').collect();
    let start = parts.len().saturating_sub(2);
    parts
        .get(start..)
        .unwrap_or_default()
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether the check must follow views: the snapshot knows one of the names as a view.
pub fn over_views(names: &[String], views: &ViewMap) -> bool {
    names.iter().any(|n| {
        let parts: Vec<&str> = n.split('.').collect();
        let start = parts.len().saturating_sub(2);
        match parts.get(start..).unwrap_or_default() {
            [schema, name] => views.may_be_view(Some(schema), name),
            [name] => views.may_be_view(None, name),
            _ => true,
        }
    })
}

/// Puts the extended-protocol check ahead of the client's Execute: the session's prepared
/// check `which` (0 flat, 1 over views), prepared first when `prepare` (after a Close of the
/// name, which a client's `DEALLOCATE` may have freed or not), run through its portal and the
/// portal closed. An error in it (an aborted transaction) makes the server skip the client's
/// Execute as well. Returns how many CloseCompletes end its answer.
pub fn put_prepared_check(out: &mut BytesMut, which: usize, prepare: bool, param: &str) -> u8 {
    let name = CHECK_NAMES.get(which).copied().unwrap_or(CHECK_NAMES[0]);
    let sql = if which == 1 {
        CHECK_VIEWS_SQL
    } else {
        CHECK_FLAT_SQL
    };
    if prepare {
        put_message(out, b'C', |o| {
            o.put_u8(b'S');
            put_cstr(o, name);
        });
        put_message(out, b'P', |o| {
            put_cstr(o, name);
            put_cstr(o, sql);
            o.put_u16(1);
            o.put_u32(TEXT_ARRAY_OID);
        });
    }
    put_message(out, b'B', |o| {
        put_cstr(o, name);
        put_cstr(o, name);
        o.put_u16(0);
        o.put_u16(1);
        let bytes = param.as_bytes();
        o.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
        o.extend_from_slice(bytes);
        o.put_u16(0);
    });
    put_message(out, b'E', |o| {
        put_cstr(o, name);
        o.put_i32(0);
    });
    put_message(out, b'C', |o| {
        o.put_u8(b'P');
        put_cstr(o, name);
    });
    if prepare {
        2
    } else {
        1
    }
}

/// The answer the relay owes itself for one check: every message of it is swallowed.
#[derive(Debug)]
pub struct Check {
    snapshot: Snapshot,
    verdict: Verdict,
    extended: bool,
    /// Extended protocol: CloseCompletes still to come.
    closes_left: u8,
    /// Set when the check failed: the server may no longer hold the prepared checks (they are
    /// prepared again before the next one).
    failed: Option<Arc<AtomicBool>>,
}

/// The outcome of a statement's check, shared with the statement's masking state: set when
/// the catalog differs from the snapshot its lineage was computed with (or cannot be known to
/// be the same), so its rows are masked as unknown.
pub type Verdict = Arc<AtomicBool>;

/// Where a check is after one backend message.
pub enum CheckProgress {
    Pending,
    Done,
    /// An error inside an extended-protocol batch: the server now skips to the client's Sync,
    /// the client's statement included, so the error is the client's to see.
    Failed,
}

impl Check {
    /// `closes`: the CloseCompletes that end an extended-protocol check's answer.
    pub fn new(snapshot: Snapshot, verdict: Verdict, extended: bool, closes: u8) -> Check {
        Check {
            snapshot,
            verdict,
            extended,
            closes_left: closes,
            failed: None,
        }
    }

    /// Tells `flag` when the check fails.
    pub fn reporting_failure(mut self, flag: Arc<AtomicBool>) -> Check {
        self.failed = Some(flag);
        self
    }

    /// Part of the answer cannot be read: the statement's rows are masked as unknown.
    pub fn fail(&mut self) {
        self.verdict.store(true, Ordering::Relaxed);
    }

    pub fn on_message(&mut self, tag: u8, body: &[u8]) -> CheckProgress {
        match tag {
            b'D' => {
                match check_row(body, &self.snapshot.views) {
                    RowVerdict::Same => {}
                    RowVerdict::Differs => self.verdict.store(true, Ordering::Relaxed),
                    RowVerdict::Changed => {
                        self.verdict.store(true, Ordering::Relaxed);
                        self.snapshot.outdated.store(true, Ordering::Relaxed);
                    }
                }
                CheckProgress::Pending
            }
            b'E' => {
                self.verdict.store(true, Ordering::Relaxed);
                if let Some(flag) = &self.failed {
                    flag.store(true, Ordering::Relaxed);
                }
                if self.extended {
                    CheckProgress::Failed
                } else {
                    CheckProgress::Pending
                }
            }
            b'Z' if !self.extended => CheckProgress::Done,
            b'3' if self.extended => {
                self.closes_left = self.closes_left.saturating_sub(1);
                if self.closes_left == 0 {
                    CheckProgress::Done
                } else {
                    CheckProgress::Pending
                }
            }
            _ => CheckProgress::Pending,
        }
    }
}

/// What one row of the check says about one relation.
#[derive(Debug, PartialEq, Eq)]
enum RowVerdict {
    Same,
    /// Not known to be the same (a relation created after the snapshot, a transaction that is
    /// not READ COMMITTED, a malformed row): this statement's rows are masked as unknown.
    Differs,
    /// A relation the snapshot knows has changed: masked, and the snapshot is outdated.
    Changed,
}

/// Every relation lineage may meet outside the system schemas, the definition of views and
/// materialized views (tables have none), and each relation's catalog version. Relations
/// missing from this snapshot were created later and are masked
/// ([`airlock_sql::lineage::Views::knows_relation`]). `pg_catalog`'s own relations are listed
/// without definitions, so lineage knows which unqualified names are the catalog's (a user
/// view named `pg_…` is not). The version is `class/rule/attributes/inheritance`: the `xmin` of
/// the relation's `pg_class` row and of its view rule (`CREATE OR REPLACE VIEW` writes both),
/// the newest `xmin` of its `pg_attribute` rows (`ALTER VIEW … RENAME COLUMN` writes only
/// those; round-17 review, F3) and its children in `pg_inherits` with their newest `xmin` (a
/// ruled table attached under a parent that already had children; round-17 review, F4). A relation with inheritance parents (a
/// partition, a child table) comes once per parent, so column rules follow it to its
/// relatives (round-16 review, F1).
pub const VIEWS_SQL: &str = "SELECT n.nspname::text, c.relname::text, \
     CASE WHEN c.relkind IN ('v', 'm') AND n.nspname <> 'pg_catalog' \
     THEN pg_catalog.pg_get_viewdef(c.oid) END, \
     c.oid::pg_catalog.text, \
     c.xmin::pg_catalog.text || '/' || COALESCE(rw.xmin::pg_catalog.text, '') || '/' || \
     (SELECT pg_catalog.max(a.xmin::pg_catalog.text::pg_catalog.int8) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid)::pg_catalog.text || '/' || \
     (SELECT pg_catalog.count(*)::pg_catalog.text || ':' || COALESCE(pg_catalog.max(i2.xmin::pg_catalog.text::pg_catalog.int8), 0)::pg_catalog.text FROM pg_catalog.pg_inherits i2 WHERE i2.inhparent = c.oid), \
     c.relkind::pg_catalog.text, pn.nspname::pg_catalog.text, p.relname::pg_catalog.text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = c.oid AND rw.rulename = '_RETURN' \
     LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid \
     LEFT JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
     LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_toast'";

/// Reads the answer to [`VIEWS_SQL`], one backend message at a time.
#[derive(Debug, Default)]
pub struct ViewsReader {
    views: ViewMap,
    error: Option<String>,
}

impl ViewsReader {
    /// Takes one message of the answer. At ReadyForQuery the snapshot is done: `Some`.
    pub fn on_message(&mut self, tag: u8, body: &[u8]) -> Option<Result<ViewMap, String>> {
        match tag {
            b'D' if self.error.is_none() => {
                if let Err(e) = self.row(body) {
                    self.error = Some(e.to_owned());
                }
                None
            }
            b'E' => {
                self.error
                    .get_or_insert(crate::codec::decode_error(body).message);
                None
            }
            b'Z' => Some(match self.error.take() {
                Some(e) => Err(e),
                None => {
                    let mut views = std::mem::take(&mut self.views);
                    views.mark_complete();
                    Ok(views)
                }
            }),
            _ => None,
        }
    }

    /// The answer cannot be read whole: the snapshot is not taken.
    pub fn fail(&mut self, why: &str) {
        self.error.get_or_insert_with(|| why.to_owned());
    }

    fn row(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let values = data_row_values(body).ok_or("truncated row from pg_class")?;
        let text = |i: usize| -> Option<String> {
            values
                .get(i)
                .copied()
                .flatten()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        if values.len() != 8 {
            return Err("unexpected row shape from pg_class");
        }
        let (Some(schema), Some(name), Some(id), Some(version)) =
            (text(0), text(1), text(3), text(4))
        else {
            return Err("unexpected row from pg_class");
        };
        match (text(2), text(5).as_deref()) {
            (Some(def), _) => self.views.insert(&schema, &name, &def),
            // A foreign table's rows come from elsewhere (postgres_fdw over a ruled table under
            // another name): lineage cannot tell what its columns hold, so it stays out of the
            // relations the snapshot knows and its columns are masked as unknown (round-17
            // review, F1). Its version is kept, so the check does not keep renewing.
            (None, Some("f")) => {}
            (None, _) => self.views.insert_table(&schema, &name),
        }
        if text(5).as_deref() == Some("m") {
            self.views.insert_matview(&schema, &name);
        }
        if let (Some(parent_schema), Some(parent)) = (text(6), text(7)) {
            self.views
                .insert_parent(&schema, &name, &parent_schema, &parent);
        }
        let id: u32 = id.parse().map_err(|_| "unexpected oid from pg_class")?;
        self.views
            .insert_version(id, &format!("{schema}.{name}"), &version);
        Ok(())
    }
}

/// Reads the upstream's catalog snapshot. Must run while the upstream is idle (after
/// authentication, before relaying); leaves it idle again.
pub async fn fetch_views(stream: &mut airlock_transport::NetStream) -> Result<ViewMap, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = BytesMut::new();
    crate::codec::put_query(&mut out, VIEWS_SQL);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut reader = ViewsReader::default();
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        match crate::codec::split_message(&mut buf, 64 * 1024 * 1024) {
            Ok(Some(msg)) => {
                if let Some(done) = reader.on_message(msg.tag, &msg.body) {
                    return done;
                }
            }
            Ok(None) => {
                if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("the upstream closed the connection".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The schema searched first for functions and operators in the upstream session, as its
/// defaults set it (a database's or role's `search_path` may put a user schema before
/// `pg_catalog`, where a DBA's `upper` would shadow the built-in the classifier and lineage take
/// it for; round-16 review, F2). Run while the upstream is idle, like [`fetch_views`].
pub async fn first_schema(stream: &mut airlock_transport::NetStream) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = BytesMut::new();
    crate::codec::put_query(
        &mut out,
        "SELECT (pg_catalog.current_schemas(true))[1]::pg_catalog.text",
    );
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut value = None;
    let mut error = None;
    loop {
        match crate::codec::split_message(&mut buf, 1024 * 1024) {
            Ok(Some(msg)) => match msg.tag {
                b'D' => {
                    value = data_row_values(&msg.body)
                        .and_then(|v| v.first().copied().flatten())
                        .map(|b| String::from_utf8_lossy(b).into_owned());
                }
                b'E' => error = Some(crate::codec::decode_error(&msg.body).message),
                b'Z' => {
                    return match (error, value) {
                        (Some(e), _) => Err(e),
                        (None, Some(v)) => Ok(v),
                        (None, None) => Err("no answer".into()),
                    }
                }
                _ => {}
            },
            Ok(None) => {
                if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("the upstream closed the connection".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// More relation names than this in one statement are not checked one by one: its rows are
/// masked as unknown instead (a bound on the check's size, like the classifier's on text).
const MAX_CHECKED_NAMES: usize = 4096;

/// The check query for a statement naming these relations (`schema.name` or `name`, as the
/// classifier reports them: lower-cased unless quoted): the catalog version of each relation
/// they resolve to now under the session's search_path, with the transaction's isolation
/// level. When the snapshot knows one of the names as a view, the check also covers every
/// relation those views read (through `pg_depend` from their rules, transitively: a view read
/// by a view can be replaced without touching the outer one). A statement over tables only gets
/// the flat form, about as cheap for the server as a primary-key read; the recursive one costs
/// several times that, and only statements over views pay it. `None` when the names cannot be
/// put in the session's client encoding (not UTF-8 and not ASCII) or are too many: the caller
/// then masks the rows as unknown.
pub fn check_sql(names: &[String], utf8: bool, views: &ViewMap) -> Option<String> {
    if !utf8 && names.iter().any(|n| !n.is_ascii()) {
        return None;
    }
    // The prepared checks' text with their parameter written in: one definition for both
    // protocols. `standard_conforming_strings` is on in every session airlock relays, so
    // backslashes in the literal are the array literal's own.
    let param = check_names_param(names)?;
    let sql = if over_views(names, views) {
        CHECK_VIEWS_SQL
    } else {
        CHECK_FLAT_SQL
    };
    Some(sql.replace("$1", &format!("'{}'", param.replace('\'', "''"))))
}

/// `LOCK TABLE … IN ACCESS SHARE MODE` on the named relations the snapshot knows (outside
/// `pg_catalog`, whose relations change only with an upgrade), for the simple-protocol check:
/// the lock waits out DDL in progress on them and keeps new DDL out until the client's text has
/// run. A relation the snapshot does not know is masked anyway and may not exist yet (created
/// earlier in the same text), so it is not locked. On a view the lock also takes the relations
/// it reads, recursively. `None` when no name qualifies.
pub fn lock_sql(names: &[String], views: &ViewMap) -> Option<String> {
    let mut targets: Vec<String> = Vec::new();
    for n in names {
        let parts: Vec<&str> = n.split('.').collect();
        let start = parts.len().saturating_sub(2);
        let kept = parts.get(start..).unwrap_or_default();
        let known = match kept {
            // `LOCK TABLE` refuses materialized views (round-16 review, F4); one can only be
            // dropped and created again, which gives it a new id the check sees.
            [schema, name] if views.may_be_matview(Some(schema), name) => false,
            [name] if views.may_be_matview(None, name) => false,
            [schema, name] => {
                *schema != "pg_catalog" && views.knows_relation(Some(schema), name) == Some(true)
            }
            [name] => matches!(
                views.resolves(name),
                airlock_sql::lineage::Resolution::User
                    | airlock_sql::lineage::Resolution::Ambiguous
            ),
            _ => false,
        };
        if known {
            let target = quoted_identifier(n);
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    (!targets.is_empty()).then(|| format!("LOCK TABLE {} IN ACCESS SHARE MODE", targets.join(", ")))
}

fn check_row(body: &[u8], views: &ViewMap) -> RowVerdict {
    let Some(values) = data_row_values(body) else {
        return RowVerdict::Differs;
    };
    let text = |i: usize| values.get(i).copied().flatten();
    let (Some(id), Some(version), Some(isolation), Some(schema), Some(name)) =
        (text(0), text(1), text(2), text(3), text(4))
    else {
        return RowVerdict::Differs;
    };
    if isolation != b"read committed" {
        return RowVerdict::Differs;
    }
    let Some(id) = std::str::from_utf8(id)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return RowVerdict::Differs;
    };
    // Versions are `class/rule/attributes/inheritance` (see [`VIEWS_SQL`]); the flat check
    // leaves out the parts only views have (`*`).
    let same = |v: &str| {
        let now: Vec<&[u8]> = version.split(|b| *b == b'/').collect();
        let then: Vec<&str> = v.split('/').collect();
        now.len() == then.len()
            && now
                .iter()
                .zip(&then)
                .all(|(n, t)| *n == b"*" || *n == t.as_bytes())
    };
    // The flat check names the schema as `regnamespace` prints it (quoted when it must be).
    let schema_now = String::from_utf8_lossy(schema);
    let schema_now = match schema_now
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
    {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => schema_now.into_owned(),
    };
    let qualified_now = format!("{schema_now}.{}", String::from_utf8_lossy(name));
    match views.version_entry(id) {
        // Same row version, but under another name: renamed or swapped with another relation
        // (two schemas renamed into each other's names; round-17 review, F5).
        Some((q, _)) if q != qualified_now => RowVerdict::Changed,
        Some((_, v)) if same(v) => RowVerdict::Same,
        Some(_) => RowVerdict::Changed,
        None => {
            // A new id under a name the snapshot knows (dropped and created again) is a change
            // a new snapshot can follow; a new name stays unknown whatever the snapshot.
            let schema = String::from_utf8_lossy(schema);
            let name = String::from_utf8_lossy(name);
            if views.knows_relation(Some(&schema), &name) == Some(true) {
                RowVerdict::Changed
            } else {
                RowVerdict::Differs
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_identifiers_inside_literals() {
        let tables = ViewMap::default();
        let sql = check_sql(
            &[
                "public.v".to_owned(),
                "Ledger".to_owned(),
                "it's".to_owned(),
                "a\"b".to_owned(),
            ],
            true,
            &tables,
        )
        .unwrap_or_default();
        for quoted in [
            r#"\"public\".\"v\""#,
            r#"\"Ledger\""#,
            r#"\"it''s\""#,
            r#"\"a\"\"b\""#,
        ] {
            assert!(sql.contains(quoted), "{quoted} in {sql}");
        }
        assert!(!sql.contains("$1"), "{sql}");
        assert!(!sql.contains("RECURSIVE"), "tables only: the flat check");
        let mut views = ViewMap::default();
        views.insert("public", "v", "SELECT 1");
        let sql = check_sql(&["v".to_owned()], true, &views).unwrap_or_default();
        assert!(sql.contains("RECURSIVE"), "over a view: what it reads too");
        assert_eq!(check_sql(&["café".to_owned()], false, &tables), None);
        assert!(check_sql(&["café".to_owned()], true, &tables).is_some());
    }

    #[test]
    fn the_prepared_checks_parameter_is_an_array_of_quoted_identifiers() {
        let param = check_names_param(&["public.v".to_owned(), "a\"b\\c".to_owned()]);
        assert_eq!(
            param.as_deref(),
            Some(r#"{"\"public\".\"v\"","\"a\"\"b\\c\""}"#)
        );
    }

    fn row(values: &[&[u8]]) -> Vec<u8> {
        let mut body = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            body.extend_from_slice(&(v.len() as i32).to_be_bytes());
            body.extend_from_slice(v);
        }
        body
    }

    #[test]
    fn a_version_the_snapshot_does_not_have_is_a_change() {
        let mut views = ViewMap::default();
        views.insert_table("public", "v");
        views.insert_version(16392, "public.v", "728/728/700/0:0");
        views.mark_complete();
        let rc: &[u8] = b"read committed";
        let check = |v: &[u8], schema: &[u8], id: &[u8]| {
            check_row(&row(&[id, v, rc, schema, b"v"]), &views)
        };
        // (version, schema, id, verdict, what)
        type Case = (
            &'static [u8],
            &'static [u8],
            &'static [u8],
            RowVerdict,
            &'static str,
        );
        let cases: [Case; 9] = [
            (
                b"728/728/700/0:0",
                b"public",
                b"16392",
                RowVerdict::Same,
                "unchanged",
            ),
            (
                b"728/*/*/0:0",
                b"public",
                b"16392",
                RowVerdict::Same,
                "flat",
            ),
            (
                b"729/*/*/0:0",
                b"public",
                b"16392",
                RowVerdict::Changed,
                "flat, class row",
            ),
            (
                b"729/729/700/0:0",
                b"public",
                b"16392",
                RowVerdict::Changed,
                "view replaced",
            ),
            (
                b"728/728/731/0:0",
                b"public",
                b"16392",
                RowVerdict::Changed,
                "a column renamed",
            ),
            (
                b"728/*/*/1:732",
                b"public",
                b"16392",
                RowVerdict::Changed,
                "a child attached",
            ),
            (
                b"728/728/700/0:0",
                b"other",
                b"16392",
                RowVerdict::Changed,
                "another name",
            ),
            (
                b"800/800/800/0:0",
                b"public",
                b"16400",
                RowVerdict::Changed,
                "re-created",
            ),
            (
                b"800///0:0",
                b"other",
                b"16401",
                RowVerdict::Differs,
                "a new relation",
            ),
        ];
        for (version, schema, id, verdict, what) in cases {
            assert_eq!(check(version, schema, id), verdict, "{what}");
        }
        let rr = row(&[
            b"16392",
            b"728/728/700/0:0",
            b"repeatable read",
            b"public",
            b"v",
        ]);
        assert_eq!(check_row(&rr, &views), RowVerdict::Differs);
        assert_eq!(check_row(b"\x00", &views), RowVerdict::Differs);
    }
}
