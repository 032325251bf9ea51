//! The relay between an authenticated client and its upstream.
//!
//! Two tasks per session. `client_to_upstream` reads frontend messages, has every statement
//! judged by the gate, writes the audit records *before* forwarding, and substitutes denied
//! statements. `upstream_to_client` relays backend messages and uses a queue of expected
//! responses (one entry per forwarded frontend message) to know which response belongs to
//! which command: for row counts and errors in the audit trail, and to splice the gateway's
//! own ErrorResponse into the stream at exactly the right place.
//!
//! Denials are substituted, not dropped: a denied statement is replaced by a constant
//! `DO` block that raises on the upstream. That keeps the response order and the upstream's
//! transaction state (`ReadyForQuery` status, aborted transaction blocks) identical to what the
//! client sees, with no bookkeeping of our own. The upstream's error is then replaced by the
//! gateway's ErrorResponse (SQLSTATE 42501, naming the rule), so no text of ours is ever
//! interpolated into SQL.

use crate::catalog::{self, Check, CheckProgress, Snapshot, Verdict, ViewsReader};
use crate::codec::{
    self, peek_message, put_error, put_message, put_query, rows_from_tag, ErrorFields, FrameError,
    Reader,
};
use crate::encoding::{ClientEncoding, SharedEncoding};
use crate::mask::{self, Column, Counts, LineageCache, RowPlan};
use airlock_core::review::Review;
use airlock_core::{Action, Operation};
use airlock_gate::masking::SessionMasking;
use airlock_gate::{heavy, GateError, Judged, SessionGate};
use airlock_record::Recorder;
use airlock_sql::lineage::{CopyFormat, CopyKind, StatementLineage, ViewMap};
use airlock_transport::NetStream;
use bytes::{Buf, BufMut, BytesMut};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

/// The statement every denial is replaced with. Constant: nothing user-controlled is spliced in.
pub const DENY_SQL: &str = "DO $airlock$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'airlock: denied'; END$airlock$";

/// What the upstream owes us for one forwarded frontend message.
#[derive(Debug)]
pub(crate) enum Expect {
    /// A simple `Query`: everything up to and including ReadyForQuery.
    Query(Tracked),
    /// A substituted denial. `extended`: we sent Parse+Bind+Execute, so swallow the
    /// ParseComplete and BindComplete the client never asked for.
    Denied {
        error: ErrorFields,
        extended: bool,
    },
    Parse(Arc<Prepared>),
    /// The portal's "not bound" flag when the gateway tracks the portal.
    Bind(Option<Arc<AtomicBool>>),
    /// `Some`: a statement whose result shape masking needs (filled from the RowDescription).
    DescribeStatement(Option<Arc<Prepared>>),
    DescribePortal(Option<Arc<Prepared>>),
    /// A Describe the gateway added before an Execute so it knows the result's columns: its
    /// answer is not the client's.
    InjectedDescribe(Arc<Prepared>),
    Execute(Tracked),
    Close,
    Sync,
    /// The catalog check sent ahead of a statement under column masking (see [`catalog`]).
    Check(Box<Check>),
    /// A new catalog snapshot the client side waits for.
    Snapshot {
        reader: Box<ViewsReader>,
        reply: tokio::sync::oneshot::Sender<Result<ViewMap, String>>,
    },
}

/// A command whose outcome goes into the audit trail.
#[derive(Debug)]
pub(crate) struct Tracked {
    seq: u64,
    started: Instant,
    rows: Option<u64>,
    /// DataRows sent for it: the row count of an Execute that stopped at its row limit
    /// (PortalSuspended has no count) or resumed a portal.
    data_rows: u64,
    error: Option<String>,
    /// Present when masking applies to the session.
    mask: Option<Box<MaskState>>,
}

/// Masking state of one command's results.
#[derive(Debug)]
pub(crate) struct MaskState {
    /// Per statement of the text; `None` when only content detectors apply.
    lineage: Option<Arc<Vec<StatementLineage>>>,
    /// Index of the statement whose results are arriving (simple Query).
    stmt: usize,
    plan: Option<RowPlan>,
    copy: Option<CopyFormat>,
    counts: Counts,
    /// Extended protocol: the statement executed and the portal's result formats.
    prepared: Option<BoundPortal>,
    /// Set when the catalog check sent ahead of the statement found the catalog differs from
    /// the snapshot its lineage came from: every column is then of unknown origin.
    catalog: Option<Verdict>,
    /// A simple Query sent with the catalog check in front of its text (see
    /// [`MaskCtx::check_query`]): the check's answers come first and are not the client's.
    prefix: Option<Box<Prefix>>,
    /// The length of that prefix once its answers are through (error positions).
    prefix_chars: usize,
}

/// The catalog check put in front of a simple Query's text.
#[derive(Debug)]
pub(crate) struct Prefix {
    check: Check,
    /// CommandCompletes of the prefix still to come (`LOCK`, then the check's `SELECT`).
    completions: u8,
    /// Its length in characters: the client's error positions are shifted back by it.
    chars: usize,
}

/// The lineage of a statement whose catalog changed under it.
static CATALOG_CHANGED: StatementLineage = StatementLineage::Opaque;

/// The statement an Execute runs, the portal's result formats and its "not bound" flag.
type BoundPortal = (Arc<Prepared>, Arc<[i16]>, Arc<AtomicBool>);

impl MaskState {
    fn new(lineage: Option<Arc<Vec<StatementLineage>>>) -> Box<MaskState> {
        Box::new(MaskState {
            lineage,
            stmt: 0,
            plan: None,
            copy: None,
            counts: Counts::default(),
            prepared: None,
            catalog: None,
            prefix: None,
            prefix_chars: 0,
        })
    }

    fn lineage(&self) -> Option<&StatementLineage> {
        if self
            .catalog
            .as_ref()
            .is_some_and(|v| v.load(Ordering::Relaxed))
        {
            return Some(&CATALOG_CHANGED);
        }
        self.lineage.as_ref().and_then(|l| l.get(self.stmt))
    }
}

impl Tracked {
    fn new(seq: u64) -> Self {
        Tracked {
            seq,
            started: Instant::now(),
            rows: None,
            data_rows: 0,
            error: None,
            mask: None,
        }
    }

    fn masked(seq: u64, mask: Option<Box<MaskState>>) -> Self {
        Tracked {
            mask,
            ..Tracked::new(seq)
        }
    }

    fn finish(&mut self, session: &SessionGate, error: Option<String>) {
        let counts = self
            .mask
            .as_mut()
            .map(|m| m.counts.take())
            .unwrap_or_default();
        let rows = if self.data_rows > 0 {
            Some(self.data_rows)
        } else {
            self.rows
        };
        session.record_result_masked(self.seq, rows, error, self.started.elapsed(), counts);
    }

    fn add_rows(&mut self, tag_body: &[u8]) {
        if let Some(n) = rows_from_tag(tag_body) {
            self.rows = Some(self.rows.unwrap_or(0) + n);
        }
    }
}

pub(crate) type Queue = Arc<Mutex<VecDeque<Expect>>>;
pub type ClientWriter = Arc<tokio::sync::Mutex<WriteHalf<NetStream>>>;

impl Prepared {
    /// Whether the server's answer to this Parse is known, given how many Syncs it answered.
    fn settled(&self, syncs_answered: u64) -> bool {
        self.taken.load(Ordering::Relaxed)
            || self.rejected.load(Ordering::Relaxed)
            || syncs_answered > self.batch
    }

    /// The statement's text for the audit event of one of its executions: whole (up to the
    /// gate's 64 KiB) the first time, cut at 1 KiB with its digest after that, so that cheap
    /// re-executions of a long statement do not write it again and again.
    fn audit_text(&self) -> Arc<str> {
        if !self.recorded.swap(true, Ordering::Relaxed) {
            return self.text.clone();
        }
        self.repeat_text
            .get_or_init(|| {
                match airlock_gate::audit_text_within(&self.text, REPEATED_TEXT_BYTES) {
                    Cow::Borrowed(_) => self.text.clone(),
                    Cow::Owned(cut) => Arc::from(cut),
                }
            })
            .clone()
    }
}

/// How much of a prepared statement's text the audit events of its repeated executions carry.
const REPEATED_TEXT_BYTES: usize = 1024;

/// What a prepared statement was judged to be when it was parsed.
pub(crate) struct Prepared {
    /// Its text has been recorded whole once (see [`Prepared::audit_text`]).
    recorded: AtomicBool,
    repeat_text: std::sync::OnceLock<Arc<str>>,
    text: Arc<str>,
    judged: Judged,
    /// Approved in a review: the approval covers one execution, not every Execute of the
    /// prepared statement.
    reviewed: bool,
    executed: AtomicBool,
    /// The server did not take the Parse (set by the upstream task): it refused it (a name that
    /// still exists, after a Close the server skipped) or skipped it (an error earlier in the
    /// pipeline, until Sync). The server then holds an older statement under this name, so a
    /// Bind of it is refused and results are masked as unknown (round-9 review, F1).
    rejected: AtomicBool,
    /// The server answered the Parse with ParseComplete.
    taken: AtomicBool,
    /// Syncs the client had sent before this Parse: once the upstream has answered more than
    /// this many, the Parse is settled (taken or not).
    batch: u64,
    /// Masking: the statement's column lineage, its result columns once described, and
    /// whether a Describe was already sent for it.
    lineage: Option<Arc<Vec<StatementLineage>>>,
    /// The catalog snapshot `lineage` was computed with.
    snapshot: Option<Snapshot>,
    shape: Mutex<Option<Arc<Vec<Column>>>>,
    described: AtomicBool,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

/// A bound portal: its statement and, with masking, the result formats the client asked for.
struct Portal {
    prepared: Arc<Prepared>,
    /// Set by the upstream task when the server refused or skipped the Bind: an older portal
    /// of this name may be what runs, so its rows are masked as unknown.
    not_bound: Arc<AtomicBool>,
    formats: Arc<[i16]>,
    /// The bound parameters as the audit records them (`SessionGate::audit_param`).
    params: Arc<[Option<String>]>,
}

/// Masking context of the client-to-upstream side.
struct MaskCtx {
    masking: Arc<SessionMasking>,
    snapshot: Snapshot,
    lineages: LineageCache,
    /// Which of the session's prepared checks ([`catalog::CHECK_NAMES`]) the server holds.
    prepared_checks: [bool; 2],
    /// Set by the upstream task when a check failed (see [`MaskCtx::forget_prepared_checks`]).
    check_failed: Arc<AtomicBool>,
}

impl MaskCtx {
    fn lineage(&mut self, text: &Arc<str>) -> Option<Arc<Vec<StatementLineage>>> {
        if !self.masking.has_column_rules() {
            return None;
        }
        Some(
            self.lineages
                .get(text, &self.masking, &*self.snapshot.views),
        )
    }

    /// Takes a new catalog snapshot when a check found the current one outdated. Only between
    /// extended-protocol batches: the snapshot query is a simple Query, which would end the
    /// batch's implicit transaction. Meanwhile statements are still checked against the old
    /// snapshot, and masked as unknown where it differs.
    async fn renew_if_outdated(
        &mut self,
        p: &mut Pending,
        upstream: &mut WriteHalf<NetStream>,
        client_writer: &ClientWriter,
        session: &SessionGate,
        queue: &Queue,
    ) -> Result<(), RelayError> {
        if !self.masking.has_column_rules() || !self.snapshot.is_outdated() {
            return Ok(());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        put_query(&mut p.out, catalog::VIEWS_SQL);
        p.expects.push(Expect::Snapshot {
            reader: Box::default(),
            reply,
        });
        p.flush(upstream, client_writer, session, queue).await?;
        match answer.await {
            Ok(Ok(fresh)) => {
                self.snapshot = self.snapshot.renewed(fresh);
                self.lineages = LineageCache::new();
            }
            // Kept outdated (an aborted transaction refuses the query): tried again before the
            // next statement; the checks keep masking what differs.
            Ok(Err(e)) => {
                tracing::debug!(session = %session.id(), error = %e, "catalog snapshot not renewed")
            }
            Err(_) => {
                return Err(RelayError::Upstream(
                    "the upstream connection ended while the catalog was read".into(),
                ))
            }
        }
        Ok(())
    }

    /// The catalog check of a simple Query, put in front of the client's own text so that it
    /// runs in the same implicit transaction: `LOCK TABLE … IN ACCESS SHARE MODE` on the
    /// relations the snapshot knows, then the check. DDL on them (a migration's open
    /// transaction) is waited for before the check reads the catalog, and none can commit
    /// until the client's last statement has run (round-15 review, F1: the check used to run
    /// as a Query of its own, and a statement that waited on a lock, or ran behind a long one
    /// in the same text, was planned with a definition the check never saw). Returns the text
    /// to put in front, or `None` with the verdict set when the rows are masked as unknown
    /// instead: inside an unfinished extended batch, or a multi-statement text with
    /// transaction control (a `COMMIT` in it would release the locks).
    fn check_query(
        snapshot: Option<&Snapshot>,
        state: &mut MaskState,
        judged: &Judged,
        open_batch: bool,
        utf8: bool,
    ) -> Option<String> {
        let (snapshot, lineage) = (snapshot?, state.lineage.as_ref()?);
        let names = names_to_check(lineage, judged)?;
        let verdict = Verdict::default();
        state.catalog = Some(verdict.clone());
        // Several statements in one text: a later one may resolve a name to a relation created
        // while an earlier one ran (in a schema earlier in the search_path, which no lock on the
        // known relation stops; round-16 review, F3), and a COMMIT among them would release the
        // locks. Their rows are masked as unknown.
        let transaction_control = judged.classification.multi_statement;
        let sql = match catalog::check_sql(&names, utf8, &snapshot.views) {
            Some(sql) if !open_batch && !transaction_control => sql,
            _ => {
                verdict.store(true, Ordering::Relaxed);
                return None;
            }
        };
        let (prefix, completions) = match catalog::lock_sql(&names, &snapshot.views) {
            Some(lock) => (format!("{lock}; {sql};\n"), 2),
            None => (format!("{sql};\n"), 1),
        };
        state.prefix = Some(Box::new(Prefix {
            check: Check::new(snapshot.clone(), verdict, false, 0),
            completions,
            chars: prefix.chars().count(),
        }));
        Some(prefix)
    }

    /// The client may have freed the session's prepared checks (`DEALLOCATE`, `DISCARD ALL`, a
    /// Close of their name), or one failed: they are prepared again (after a Close, so an
    /// existing one is no error) before the next check.
    fn forget_prepared_checks(&mut self, text: &[u8]) {
        let frees = |w: &[u8]| text.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w));
        if self.check_failed.swap(false, Ordering::Relaxed)
            || frees(b"deallocate")
            || frees(b"discard")
            || catalog::CHECK_NAMES.iter().any(|n| frees(n.as_bytes()))
        {
            self.prepared_checks = [false; 2];
        }
    }

    /// Sends the catalog check ahead of an Execute under column masking (the session's
    /// prepared check, prepared first when the server may not hold it), and returns its verdict
    /// for the statement's masking state. No check is needed when lineage shows no rows from
    /// relations; where none can be sent (too many names), the verdict is "differs" at once.
    fn check(
        snapshot: Option<&Snapshot>,
        lineage: Option<&Arc<Vec<StatementLineage>>>,
        judged: &Judged,
        p: &mut Pending,
        prepared_checks: &mut [bool; 2],
        check_failed: &Arc<AtomicBool>,
    ) -> Option<Verdict> {
        let (snapshot, lineage) = (snapshot?, lineage?);
        let names = names_to_check(lineage, judged)?;
        let verdict = Verdict::default();
        let Some(param) = catalog::check_names_param(&names) else {
            verdict.store(true, Ordering::Relaxed);
            return Some(verdict);
        };
        let which = usize::from(catalog::over_views(&names, &snapshot.views));
        let prepare = !prepared_checks.get(which).copied().unwrap_or(false);
        let closes = catalog::put_prepared_check(&mut p.out, which, prepare, &param);
        if let Some(held) = prepared_checks.get_mut(which) {
            *held = true;
        }
        p.expects.push(Expect::Check(Box::new(
            Check::new(snapshot.clone(), verdict.clone(), true, closes)
                .reporting_failure(check_failed.clone()),
        )));
        Some(verdict)
    }

    /// Statements masking cannot follow are refused: binary COPY rows cannot be split into
    /// fields; copies of masked columns into tables and code masking cannot see into would
    /// carry values past it (see `StatementLineage::Unmaskable`).
    fn refuse_unmaskable(lineage: &Option<Arc<Vec<StatementLineage>>>, judged: &mut Judged) {
        if judged.decision.action != Action::Allow {
            return;
        }
        let Some(l) = lineage.as_ref() else {
            return;
        };
        if l.iter()
            .any(|s| s.copy_format().is_some_and(|f| f.kind == CopyKind::Binary))
        {
            judged.force_deny("masking applies to this session and binary COPY output cannot be masked; use COPY ... TO STDOUT in text or csv format");
        } else if l.iter().any(|s| {
            s.copy_format()
                .is_some_and(|f| f.kind == CopyKind::Unsplittable)
        }) {
            judged.force_deny("masking applies to this session and COPY output with this QUOTE, ESCAPE or DELIMITER cannot be split into fields reliably; use the defaults (QUOTE and ESCAPE '\"', an ASCII delimiter)");
        } else if let Some(why) = l.iter().find_map(StatementLineage::unmaskable) {
            judged.force_deny(&format!(
                "masking applies to this session and this statement is refused: {why}"
            ));
        }
    }
}

/// The relations a statement whose lineage shows rows names, for the catalog check; `None` when
/// there is nothing to check.
fn names_to_check(lineage: &[StatementLineage], judged: &Judged) -> Option<Vec<String>> {
    if !lineage
        .iter()
        .any(|l| matches!(l, StatementLineage::Rows(_)))
    {
        return None;
    }
    let names = judged.classification.relations();
    (!names.is_empty()).then_some(names)
}

/// Whether a Parse message's parameter types (after the name and text `r` has read) name a
/// type outside PostgreSQL's built-in range (OIDs below 16384, `FirstNormalObjectId`). An
/// unreadable list counts as naming one.
fn names_user_types(r: &mut Reader<'_>) -> bool {
    const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
    let Ok(n) = r.u16() else {
        return false;
    };
    (0..n).any(|_| r.u32().map_or(true, |oid| oid >= FIRST_NORMAL_OBJECT_ID))
}

/// Parameters beyond this many are counted, not recorded, in the audit event.
const AUDIT_MAX_PARAMS: usize = 100;

/// The parameters of a Bind message as the audit records them. A Bind the gateway cannot read
/// is recorded as such (the server will refuse it too).
fn bind_params(body: &[u8], session: &SessionGate) -> Arc<[Option<String>]> {
    let read = || -> Option<Vec<Option<String>>> {
        let mut r = Reader::new(body, "Bind");
        r.cstr().ok()?;
        r.cstr().ok()?;
        let nfmt = usize::from(r.u16().ok()?);
        let mut formats = Vec::with_capacity(nfmt.min(AUDIT_MAX_PARAMS));
        for _ in 0..nfmt {
            formats.push(r.u16().ok()?);
        }
        let nparams = usize::from(r.u16().ok()?);
        let mut out = Vec::with_capacity(nparams.min(AUDIT_MAX_PARAMS + 1));
        for i in 0..nparams {
            let len = r.i32().ok()?;
            let value = match usize::try_from(len) {
                Ok(n) => Some(r.take(n).ok()?),
                Err(_) => None,
            };
            if i < AUDIT_MAX_PARAMS {
                // One format code applies to every parameter; none means text.
                let format = match formats.len() {
                    0 => 0,
                    1 => formats.first().copied().unwrap_or(0),
                    _ => formats.get(i).copied().unwrap_or(0),
                };
                out.push(session.audit_param(value, format == 1));
            }
        }
        if nparams > AUDIT_MAX_PARAMS {
            out.push(Some(format!(
                "… {} more parameters",
                nparams - AUDIT_MAX_PARAMS
            )));
        }
        Some(out)
    };
    match read() {
        Some(params) => params.into(),
        None => Arc::from([Some("<unreadable Bind message>".to_owned())]),
    }
}

/// The result formats of a Bind message (after the parameters).
fn bind_result_formats(body: &[u8]) -> Option<Arc<[i16]>> {
    let mut r = Reader::new(body, "Bind");
    r.cstr().ok()?;
    r.cstr().ok()?;
    let nfmt = r.u16().ok()?;
    for _ in 0..nfmt {
        r.u16().ok()?;
    }
    let nparams = r.u16().ok()?;
    for _ in 0..nparams {
        let len = r.i32().ok()?;
        if let Ok(n) = usize::try_from(len) {
            r.take(n).ok()?;
        }
    }
    let nres = r.u16().ok()?;
    let mut formats = Vec::with_capacity(usize::from(nres));
    for _ in 0..nres {
        formats.push(r.u16().ok()? as i16);
    }
    Some(formats.into())
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("client protocol error: {0}")]
    Frame(#[from] FrameError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported frontend message type `{0}`")]
    UnknownMessage(char),
    #[error("{0}")]
    Gate(#[from] GateError),
    #[error("upstream protocol error: {0}")]
    Upstream(String),
}

pub struct Limits {
    pub max_message_bytes: usize,
}

/// What both relay tasks of a session share besides the queue: the recording and the client
/// encoding (the upstream task learns changes, the client task decodes with it).
#[derive(Clone)]
pub(crate) struct Shared {
    pub recorder: Option<Arc<Recorder>>,
    pub encoding: Arc<SharedEncoding>,
    /// How many Syncs the upstream has answered (ReadyForQuery), for [`Prepared::settle`].
    pub syncs: Arc<tokio::sync::watch::Sender<u64>>,
    /// Masking's catalog snapshot when the session opened (column rules only).
    pub views: Option<Arc<ViewMap>>,
}

/// Reads frontend messages until the client leaves. Returns `Ok(())` on a clean Terminate.
pub(crate) async fn client_to_upstream<R: AsyncRead + Unpin>(
    mut client: R,
    mut upstream: WriteHalf<NetStream>,
    client_writer: ClientWriter,
    session: Arc<SessionGate>,
    queue: Queue,
    limits: Limits,
    shared: Shared,
) -> Result<(), RelayError> {
    let Shared {
        recorder,
        encoding,
        syncs,
        views,
    } = shared;
    let mut syncs_sent = 0u64;
    let mut buf = BytesMut::with_capacity(CLIENT_BUF);
    let mut p = Pending {
        recorder,
        ..Pending::default()
    };
    let mut statements: HashMap<String, Arc<Prepared>> = HashMap::new();
    let mut portals: HashMap<String, Portal> = HashMap::new();
    // Names of SQL cursors (`DECLARE c CURSOR …`): the server keeps them as portals an Execute
    // can name, so a portal of that name is never taken for one the gateway saw bound.
    let mut sql_cursors = SqlCursors::default();
    let mut mask = session.masking().cloned().map(|masking| MaskCtx {
        masking,
        snapshot: Snapshot::new(views.unwrap_or_default()),
        lineages: LineageCache::new(),
        prepared_checks: [false; 2],
        check_failed: Arc::default(),
    });
    // The client sent extended-protocol messages since its last Sync (see `MaskCtx::check`).
    let mut open_batch = false;
    loop {
        let n = client.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut terminate = false;
        loop {
            let msg = match codec::split_message(&mut buf, limits.max_message_bytes) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    fatal(&client_writer, &ErrorFields::fatal("08P01", e.to_string())).await;
                    return Err(e.into());
                }
            };
            let enc = encoding.get();
            let utf8 = enc == ClientEncoding::Utf8;
            if let (Some(m), b'Q' | b'P', false) = (mask.as_mut(), msg.tag, open_batch) {
                m.renew_if_outdated(&mut p, &mut upstream, &client_writer, &session, &queue)
                    .await?;
            }
            if let (Some(m), b'Q' | b'P' | b'C' | b'E') = (mask.as_mut(), msg.tag) {
                m.forget_prepared_checks(&msg.body);
            }
            let was_open = open_batch;
            open_batch = match msg.tag {
                b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => true,
                b'S' => false,
                _ => open_batch,
            };
            match msg.tag {
                b'Q' => {
                    let text = read_text(&mut Reader::new(&msg.body, "Query"), enc)?;
                    sql_cursors.note(&text);
                    let (mut judged, _) = p
                        .admit(
                            &text,
                            |_| {},
                            &mut upstream,
                            &client_writer,
                            &session,
                            &queue,
                        )
                        .await?;
                    let text: Arc<str> = Arc::from(text);
                    let mut masked = mask.as_mut().map(|m| {
                        let lineage = m.lineage(&text);
                        MaskCtx::refuse_unmaskable(&lineage, &mut judged);
                        MaskState::new(lineage)
                    });
                    let seq = session.next_seq();
                    if let Some(error) = denial(&session, &judged) {
                        put_query(&mut p.out, DENY_SQL);
                        p.expects.push(Expect::Denied {
                            error,
                            extended: false,
                        });
                    } else {
                        let prefixed = masked.as_mut().and_then(|state| {
                            MaskCtx::check_query(
                                mask.as_ref().map(|m| &m.snapshot),
                                state,
                                &judged,
                                was_open,
                                utf8,
                            )
                        });
                        match prefixed {
                            Some(prefix) => put_message(&mut p.out, b'Q', |o| {
                                o.extend_from_slice(prefix.as_bytes());
                                o.extend_from_slice(&msg.body);
                            }),
                            None => copy_message(&mut p.out, msg.tag, &msg.body),
                        }
                        p.expects.push(Expect::Query(Tracked::masked(seq, masked)));
                    }
                    p.records.push((seq, text, judged));
                }
                b'P' => {
                    let mut r = Reader::new(&msg.body, "Parse");
                    let name = read_text(&mut r, enc)?;
                    let name = &*name;
                    let text = read_text(&mut r, enc)?;
                    let text = &*text;
                    sql_cursors.note(text);
                    let user_types = names_user_types(&mut r);
                    let read_only = session.upstream().read_only;
                    let (mut judged, reviewed) = p
                        .admit(
                            text,
                            |judged| {
                                if user_types && read_only && judged.decision.action != Action::Deny {
                                    // A parameter of a user-defined type runs that type's input
                                    // function and a domain's CHECK: code the text does not
                                    // show, like a cast.
                                    judged.force_deny("this session is read-only (the identity's rules deny every write on this connection), and a parameter of a user-defined type runs code the statement does not show; use built-in parameter types");
                                }
                            },
                            &mut upstream,
                            &client_writer,
                            &session,
                            &queue,
                        )
                        .await?;
                    let lineage = mask.as_mut().and_then(|m| {
                        let lineage = m.lineage(&Arc::from(text));
                        MaskCtx::refuse_unmaskable(&lineage, &mut judged);
                        lineage
                    });
                    if !name.is_empty() && statements.contains_key(name) {
                        // The server refuses to re-Parse an existing named statement (42P05) and
                        // keeps the old one: so does the gateway, or it would judge and mask
                        // later Executes by the new text while the server runs the old.
                        judged.force_deny("a prepared statement of this name already exists");
                        put_deny_extended(&mut p.out);
                        p.expects.push(Expect::Denied {
                            error: ErrorFields::error(
                                "42P05",
                                format!("prepared statement \"{name}\" already exists"),
                            ),
                            extended: true,
                        });
                        p.records
                            .push((session.next_seq(), Arc::from(text), judged));
                    } else if let Some(error) = denial(&session, &judged) {
                        // Parse, bind and run the raising DO block on the unnamed statement; the
                        // upstream then skips everything up to the client's Sync, as it would
                        // after any error.
                        put_deny_extended(&mut p.out);
                        p.expects.push(Expect::Denied {
                            error,
                            extended: true,
                        });
                        // A denial is recorded when it happens, with its own sequence number.
                        p.records
                            .push((session.next_seq(), Arc::from(text), judged));
                        statements.remove(name);
                    } else {
                        let prepared = Arc::new(Prepared {
                            recorded: AtomicBool::new(false),
                            repeat_text: std::sync::OnceLock::new(),
                            text: Arc::from(text),
                            judged,
                            reviewed,
                            executed: AtomicBool::new(false),
                            rejected: AtomicBool::new(false),
                            taken: AtomicBool::new(false),
                            batch: syncs_sent,
                            lineage,
                            snapshot: mask.as_ref().map(|m| m.snapshot.clone()),
                            shape: Mutex::new(None),
                            described: AtomicBool::new(false),
                        });
                        statements.insert(name.to_owned(), prepared.clone());
                        copy_message(&mut p.out, msg.tag, &msg.body);
                        p.expects.push(Expect::Parse(prepared));
                    }
                }
                b'B' => {
                    let mut r = Reader::new(&msg.body, "Bind");
                    let portal = read_text(&mut r, enc)?;
                    let portal = &*portal;
                    let statement = read_text(&mut r, enc)?;
                    let statement = &*statement;
                    // A Parse of this batch that the server refuses or skips leaves it in its
                    // error state until Sync, so it skips this Bind too: only a name defined in
                    // an earlier batch can mean something else to the server.
                    let not_taken = |prep: &Prepared| {
                        prep.batch < syncs_sent && prep.rejected.load(Ordering::Relaxed)
                    };
                    let prepared = match statements.get(statement).cloned() {
                        Some(prep) => {
                            // A statement (re)defined in an earlier batch the upstream has not
                            // answered yet: the server may have skipped that Parse (an error
                            // before it) and still hold the older statement, so wait until it
                            // is known which one the name means (round-9 review, F1).
                            if !prep.settled(*syncs.borrow()) && prep.batch < syncs_sent {
                                p.flush(&mut upstream, &client_writer, &session, &queue)
                                    .await?;
                                let mut answered = syncs.subscribe();
                                let settled = answered.wait_for(|n| prep.settled(*n)).await.is_ok();
                                if !settled {
                                    prep.rejected.store(true, Ordering::Relaxed);
                                }
                            }
                            Some(prep)
                        }
                        None => None,
                    };
                    match prepared {
                        Some(prep) if !sql_cursors.may_be(portal) && !not_taken(&prep) => {
                            let formats = if mask.is_some() {
                                bind_result_formats(&msg.body).unwrap_or_else(|| Arc::from([]))
                            } else {
                                Arc::from([])
                            };
                            let not_bound = Arc::new(AtomicBool::new(false));
                            portals.insert(
                                portal.to_owned(),
                                Portal {
                                    prepared: prep,
                                    not_bound: not_bound.clone(),
                                    formats,
                                    params: bind_params(&msg.body, &session),
                                },
                            );
                            copy_message(&mut p.out, msg.tag, &msg.body);
                            p.expects.push(Expect::Bind(Some(not_bound)));
                        }
                        Some(_) if sql_cursors.may_be(portal) => {
                            portals.remove(portal);
                            copy_message(&mut p.out, msg.tag, &msg.body);
                            p.expects.push(Expect::Bind(None));
                        }
                        // The server does not hold what the gateway judged under this name (it
                        // skipped or refused the Parse), or the gateway never saw it prepared
                        // (a Close the server skipped, SQL `PREPARE`): binding it would run a
                        // statement this Bind was not judged for, so it is refused.
                        other => {
                            let text: Arc<str> = other
                                .as_ref()
                                .map(|prep| prep.text.clone())
                                .unwrap_or_else(|| {
                                    Arc::from(format!(
                                        "<Bind of prepared statement \"{statement}\">"
                                    ))
                                });
                            let mut judged = match &other {
                                Some(prep) => prep.judged.clone(),
                                None => session.judge(&text),
                            };
                            let why = match other {
                                Some(_) => format!("prepared statement \"{statement}\" was not taken by the server (an error earlier in the pipeline skipped its Parse, or the name was in use), so the server may hold a different statement under this name; prepare it again after Sync"),
                                None => format!("prepared statement \"{statement}\" was not prepared through airlock in this session (a SQL PREPARE, or a Close the server skipped); prepare it with Parse"),
                            };
                            judged.force_deny(&why);
                            put_deny_extended(&mut p.out);
                            p.expects.push(Expect::Denied {
                                error: ErrorFields::error("26000", format!("airlock: {why}")),
                                extended: true,
                            });
                            p.records.push((session.next_seq(), text, judged));
                            portals.remove(portal);
                            // The refusal ran on the unnamed statement and portal.
                            statements.remove("");
                            portals.remove("");
                        }
                    }
                }
                b'E' => {
                    let portal = read_text(&mut Reader::new(&msg.body, "Execute"), enc)?;
                    let portal = &*portal;
                    let seq = session.next_seq();
                    // Executing a portal runs the statement it was bound from: that is the
                    // command the audit event is for. A portal we never saw bound (unknown to
                    // the upstream too) gets an event with no text; the upstream will refuse it.
                    if sql_cursors.may_be(portal) {
                        // Its rows come from whatever query a DECLARE gave it: recorded and
                        // masked as an unknown portal (below).
                        portals.remove(portal);
                    }
                    let once_used = portals.get(portal).is_some_and(|p| {
                        p.prepared.reviewed && p.prepared.executed.swap(true, Ordering::Relaxed)
                    });
                    match portals.get(portal) {
                        Some(Portal { prepared: prep, .. }) if once_used => {
                            let mut judged = prep.judged.clone();
                            judged.refused("airlock: the review approved one execution of this prepared statement; prepare it again to ask for another review");
                            let error = denial(&session, &judged)
                                .unwrap_or_else(|| ErrorFields::error("42501", "airlock: denied"));
                            put_deny_extended(&mut p.out);
                            p.expects.push(Expect::Denied {
                                error,
                                extended: true,
                            });
                            p.records.push((seq, prep.text.clone(), judged));
                        }
                        Some(Portal {
                            prepared: prep,
                            formats,
                            params,
                            not_bound,
                        }) => {
                            p.records
                                .push((seq, prep.audit_text(), prep.judged.clone()));
                            if !params.is_empty() {
                                p.params.push((seq, params.clone()));
                            }
                            let mut masked = mask.as_ref().map(|_| {
                                let mut state = MaskState::new(prep.lineage.clone());
                                state.prepared =
                                    Some((prep.clone(), formats.clone(), not_bound.clone()));
                                state
                            });
                            if masked.is_some() && !prep.described.swap(true, Ordering::Relaxed) {
                                // The result's columns must be known before its rows arrive.
                                put_message(&mut p.out, b'D', |o| {
                                    o.put_u8(b'P');
                                    codec::put_cstr(o, portal);
                                });
                                p.expects.push(Expect::InjectedDescribe(prep.clone()));
                            }
                            if let Some(state) = masked.as_mut() {
                                // Right before the Execute: the Bind has planned the statement
                                // and holds its relations' locks, so the catalog the check reads
                                // is the one the rows come from.
                                if let Some(m) = mask.as_mut() {
                                    state.catalog = MaskCtx::check(
                                        prep.snapshot.as_ref(),
                                        prep.lineage.as_ref(),
                                        &prep.judged,
                                        &mut p,
                                        &mut m.prepared_checks,
                                        &m.check_failed,
                                    );
                                }
                            }
                            copy_message(&mut p.out, msg.tag, &msg.body);
                            p.expects
                                .push(Expect::Execute(Tracked::masked(seq, masked)));
                        }
                        None => {
                            // Nothing the gateway judged runs here: a SQL cursor's rows
                            // (DECLARE was judged), or nothing (the server skips or refuses
                            // it). Said so in the audit rather than as an empty statement.
                            let text: Arc<str> = Arc::from(format!(
                                "<Execute of portal \"{portal}\", not bound through airlock>"
                            ));
                            p.records.push((seq, text, session.judge("")));
                            copy_message(&mut p.out, msg.tag, &msg.body);
                            let masked = mask.as_ref().map(|_| {
                                MaskState::new(Some(Arc::new(vec![StatementLineage::Opaque])))
                            });
                            p.expects
                                .push(Expect::Execute(Tracked::masked(seq, masked)));
                        }
                    }
                }
                b'D' => {
                    let mut r = Reader::new(&msg.body, "Describe");
                    let kind = r.u8()?;
                    let name = read_text(&mut r, enc)?;
                    let name = &*name;
                    let prepared = if mask.is_some() {
                        let prep = if kind == b'S' {
                            statements.get(name).cloned()
                        } else {
                            portals.get(name).map(|p| p.prepared.clone())
                        };
                        if let Some(prep) = &prep {
                            prep.described.store(true, Ordering::Relaxed);
                        }
                        prep
                    } else {
                        None
                    };
                    copy_message(&mut p.out, msg.tag, &msg.body);
                    p.expects.push(if kind == b'S' {
                        Expect::DescribeStatement(prepared)
                    } else {
                        Expect::DescribePortal(prepared)
                    });
                }
                b'C' => {
                    let mut r = Reader::new(&msg.body, "Close");
                    let kind = r.u8()?;
                    let name = read_text(&mut r, enc)?;
                    let name = &*name;
                    if kind == b'S' {
                        statements.remove(name);
                    } else {
                        portals.remove(name);
                    }
                    copy_message(&mut p.out, msg.tag, &msg.body);
                    p.expects.push(Expect::Close);
                }
                b'S' => {
                    copy_message(&mut p.out, msg.tag, &msg.body);
                    p.expects.push(Expect::Sync);
                    syncs_sent += 1;
                    // The unnamed portal does not survive the end of the implicit transaction.
                    portals.remove("");
                }
                b'H' | b'd' | b'c' | b'f' => copy_message(&mut p.out, msg.tag, &msg.body),
                b'F' => {
                    // FunctionCall runs a function by OID: no SQL to judge, so it is refused.
                    let seq = session.next_seq();
                    let text = "<FunctionCall protocol message>";
                    let mut judged = session.judge(text);
                    judged.force_deny(
                        "the FunctionCall protocol message is not supported through airlock",
                    );
                    let error = denial(&session, &judged).unwrap_or_else(|| {
                        ErrorFields::error("42501", "airlock: FunctionCall is not supported")
                    });
                    put_query(&mut p.out, DENY_SQL);
                    p.expects.push(Expect::Denied {
                        error,
                        extended: false,
                    });
                    p.records.push((seq, Arc::from(text), judged));
                }
                b'X' => {
                    copy_message(&mut p.out, msg.tag, &msg.body);
                    terminate = true;
                    break;
                }
                other => {
                    let e = RelayError::UnknownMessage(other as char);
                    fatal(&client_writer, &ErrorFields::fatal("08P01", e.to_string())).await;
                    return Err(e);
                }
            }
        }
        p.flush(&mut upstream, &client_writer, &session, &queue)
            .await?;
        release_if_large(&mut buf, CLIENT_BUF);
        release_if_large(&mut p.out, 0);
        if terminate {
            let _ = upstream.shutdown().await;
            return Ok(());
        }
    }
}

/// The SQL cursors a session declared (see `client_to_upstream`).
#[derive(Default)]
struct SqlCursors {
    names: std::collections::HashSet<String>,
    /// A `DECLARE` the gateway could not read: any named portal may be a cursor.
    unknown: bool,
}

impl SqlCursors {
    fn note(&mut self, text: &str) {
        const DECLARE: &[u8] = b"declare";
        if !text
            .as_bytes()
            .windows(DECLARE.len())
            .any(|w| w.eq_ignore_ascii_case(DECLARE))
        {
            return;
        }
        match airlock_sql::pg_declared_cursors(text) {
            Some(names) => self.names.extend(names),
            None => self.unknown = true,
        }
    }

    fn may_be(&self, portal: &str) -> bool {
        !portal.is_empty() && (self.unknown || self.names.contains(portal))
    }
}

/// What one read from the client produced: audit records, expectations and bytes to forward.
#[derive(Default)]
struct Pending {
    recorder: Option<Arc<Recorder>>,
    records: Vec<(u64, Arc<str>, Judged)>,
    /// Bound parameters of the records that have them, by sequence number.
    params: Vec<(u64, Arc<[Option<String>]>)>,
    expects: Vec<Expect>,
    out: BytesMut,
}

impl Pending {
    /// Writes the audit records of what was gathered so far, queues the expectations, and only
    /// then sends the messages upstream. Nothing is sent if the records cannot be written.
    async fn flush(
        &mut self,
        upstream: &mut WriteHalf<NetStream>,
        client_writer: &ClientWriter,
        session: &SessionGate,
        queue: &Queue,
    ) -> Result<(), RelayError> {
        if !self.records.is_empty() {
            let refs: Vec<(u64, &str, &Judged, &[Option<String>])> = self
                .records
                .iter()
                .map(|(seq, text, j)| {
                    let params = self
                        .params
                        .iter()
                        .find(|(s, _)| s == seq)
                        .map_or(&[][..], |(_, p)| &p[..]);
                    (*seq, &**text, j, params)
                })
                .collect();
            if let Err(e) = session.record_with_params(&refs) {
                // No execution without a record: nothing of this batch is forwarded.
                fatal(
                    client_writer,
                    &ErrorFields::fatal("58030", e.to_string())
                        .with_hint("the gateway's audit log cannot be written; ask an operator to check the gateway's disk"),
                )
                .await;
                return Err(e.into());
            }
            if let Some(rec) = &self.recorder {
                for (seq, text, j) in &self.records {
                    rec.statement(
                        *seq,
                        text,
                        j.decision.action.as_str(),
                        j.decision.rule.as_deref(),
                    );
                }
            }
            self.records.clear();
            self.params.clear();
        }
        if !self.expects.is_empty() {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            q.extend(self.expects.drain(..));
        }
        if !self.out.is_empty() {
            upstream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The gate's admission of one statement: a statement a rule sends to review is held
    /// (after forwarding what came before it, and telling the client with a notice) until the
    /// review decides. `extra_guard` adds refusals of this message kind to [`guard_session`].
    async fn admit(
        &mut self,
        text: &str,
        extra_guard: impl FnOnce(&mut Judged),
        upstream: &mut WriteHalf<NetStream>,
        client_writer: &ClientWriter,
        session: &SessionGate,
        queue: &Queue,
    ) -> Result<(Judged, bool), RelayError> {
        let admission = session
            .admit(
                text,
                |judged| {
                    guard_session(session, text, judged);
                    extra_guard(judged);
                },
                async || self.flush(upstream, client_writer, session, queue).await,
                async |review: &Review, hold_secs: u64| {
                    held_notice(client_writer, review, hold_secs).await
                },
            )
            .await?;
        Ok((admission.judged, admission.reviewed))
    }
}

/// Tells the client its statement waits for a review (a NoticeResponse).
async fn held_notice(client: &ClientWriter, review: &Review, hold_secs: u64) {
    let mut out = BytesMut::new();
    codec::put_notice(
        &mut out,
        &ErrorFields {
            severity: "NOTICE",
            code: "01000",
            message: format!(
                "airlock: this statement needs a review (rule `{}`): review id {}; waiting up to {hold_secs}s for a decision",
                review.rule.as_deref().unwrap_or("?"),
                review.id
            ),
            detail: Some(format!("reviewers: members of {}", review.reviewers.join(", "))),
            hint: Some(format!("approve with: airlock reviews approve {}", review.id)),
        },
    );
    let mut w = client.lock().await;
    let _ = w.write_all(&out).await;
    let _ = w.flush().await;
}

/// The checks every statement gets on top of the rules, wherever it comes from (a Query, a
/// Parse, a startup setting): settings that would change how the server reads SQL, and, in a
/// read-only session, anything that could switch the database's read-only mode off.
pub(crate) fn guard_session(session: &SessionGate, text: &str, judged: &mut Judged) {
    if let Some(why) = guard_settings(text, judged) {
        judged.force_deny(&why);
    } else if session.upstream().read_only
        && judged.decision.action != Action::Deny
        && may_touch_read_only(judged)
        && airlock_sql::pg_leaves_read_only(text)
    {
        // Defence in depth holds only while nothing switches the database's read-only mode
        // off (or runs code that could).
        judged.force_deny("this session is read-only (the identity's rules deny every write on this connection), and this statement could switch the database's read-only mode off");
    }
}

/// Settings the gateway's reading of the session depends on: a statement that would switch
/// `client_encoding` to one in which a backslash or quote can hide inside a character (or to a
/// value computed at run time) is refused before it reaches the server. The parse runs only
/// when the text could name such a setting (`U&` identifiers can spell it without the word).
fn guard_settings(text: &str, judged: &Judged) -> Option<String> {
    const HINTS: &[&[u8]] = &[
        b"encoding",
        b"names",
        b"conforming",
        b"set_config",
        b"reset",
        b"u&",
    ];
    let bytes = text.as_bytes();
    let mentions = HINTS
        .iter()
        .any(|h| bytes.windows(h.len()).any(|w| w.eq_ignore_ascii_case(h)));
    if !mentions {
        return None;
    }
    let changes = match airlock_sql::session_settings::pg_setting_changes(text) {
        Ok(c) => c,
        // Unparsed text is already the most dangerous class for the rules; whether it sets
        // client_encoding cannot be known, so it does not reach the server.
        Err(e) => {
            return Some(format!(
                "airlock cannot tell whether this statement changes how the server reads SQL ({e})"
            ))
        }
    };
    // `ParseResult::nodes()` does not visit every node type; the classifier's walk does. When
    // the walk saw a `set_config` call the settings scan may have missed (none found, fewer
    // found than the text spells, or `U&` spellings in play), the statement is refused.
    let calls_set_config = judged
        .classification
        .statements
        .iter()
        .flat_map(|s| s.functions.iter())
        .any(|f| f == "set_config" || f == "pg_catalog.set_config");
    if calls_set_config {
        let found = changes.iter().filter(|c| c.via_set_config).count();
        let spelled = bytes
            .windows(b"set_config".len())
            .filter(|w| w.eq_ignore_ascii_case(b"set_config"))
            .count();
        let unicode = bytes.windows(2).any(|w| w.eq_ignore_ascii_case(b"u&"));
        if found == 0 || spelled > found || unicode {
            return Some(
                "airlock cannot tell which settings this statement's set_config calls change; call set_config with literal arguments on its own".to_owned(),
            );
        }
    }
    for change in changes
        .iter()
        .filter(|c| c.concerns("standard_conforming_strings"))
    {
        use airlock_sql::session_settings::SettingValue as V;
        // The grammar airlock parses with reads `'…\'` as a complete string; with
        // standard_conforming_strings off the server reads `\'` as a quote, so whatever
        // airlock took for a comment or a string would run.
        let on = |v: &str| {
            ["on", "true", "yes", "1"]
                .iter()
                .any(|t| v.trim().eq_ignore_ascii_case(t))
        };
        match &change.value {
            V::Literal(v) if change.name == "standard_conforming_strings" && on(v) => {}
            // RESET returns to the value the session started with, which was checked.
            V::Default => {}
            _ => {
                return Some(
                    "standard_conforming_strings must stay on through airlock: with it off the server reads backslashes in strings differently from airlock".to_owned(),
                )
            }
        }
    }
    for change in changes.iter().filter(|c| c.concerns("client_encoding")) {
        use airlock_sql::session_settings::SettingValue as V;
        match &change.value {
            V::Default => {}
            V::Literal(v) if change.name == "client_encoding" => {
                if let Err(e) = ClientEncoding::check(v) {
                    return Some(e.to_string());
                }
            }
            V::Literal(_) | V::Unknown => {
                return Some(
                    "this statement may set client_encoding to a value airlock cannot check before it runs; set it with a literal (SET client_encoding = 'UTF8')".to_owned(),
                )
            }
        }
    }
    None
}

/// Only settings, transaction control and code (which the rules of a read-only session deny
/// anyway) can switch read-only mode off; plain reads skip the second parse.
fn may_touch_read_only(judged: &Judged) -> bool {
    let c = &judged.classification;
    c.unparsed
        || c.statements.iter().any(|s| {
            s.writes_data
                || s.dynamic_sql
                || matches!(
                    s.operation,
                    Operation::Set
                        | Operation::Begin
                        | Operation::Other
                        | Operation::Do
                        | Operation::Call
                        | Operation::Unknown
                )
        })
}

/// A message string in the session's client encoding, as text for the gate.
fn read_text<'a>(r: &mut Reader<'a>, enc: ClientEncoding) -> Result<Cow<'a, str>, FrameError> {
    let what = r.what();
    let bytes = r.cbytes()?;
    enc.decode(bytes).ok_or(FrameError::Malformed {
        what,
        why: "string is not valid UTF-8 (the session's client_encoding)",
    })
}

/// Parse, Bind and Execute of the raising DO block on the unnamed statement and portal.
fn put_deny_extended(out: &mut BytesMut) {
    put_message(out, b'P', |o| {
        o.put_u8(0);
        codec::put_cstr(o, DENY_SQL);
        o.put_u16(0);
    });
    put_message(out, b'B', |o| {
        o.put_u8(0);
        o.put_u8(0);
        o.put_u16(0);
        o.put_u16(0);
        o.put_u16(0);
    });
    put_message(out, b'E', |o| {
        o.put_u8(0);
        o.put_u32(0);
    });
}

fn copy_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(5 + body.len());
    out.put_u8(tag);
    out.put_u32(body.len() as u32 + 4);
    out.extend_from_slice(body);
}

/// The ErrorResponse for a command the gate did not allow, or `None` to forward it.
pub(crate) fn denial(session: &SessionGate, judged: &Judged) -> Option<ErrorFields> {
    let d = &judged.decision;
    match d.action {
        Action::Allow => None,
        Action::Deny => {
            let rule = d.rule.as_deref().unwrap_or("default_action");
            let message = d
                .message
                .clone()
                .unwrap_or_else(|| format!("denied by rule `{rule}`"));
            Some(
                ErrorFields::error("42501", format!("airlock: {message}")).with_detail(format!(
                    "rule `{rule}` denied this statement for identity `{}` on connection `{}`",
                    session.identity().name,
                    session.connection_name()
                )),
            )
        }
        // The gate's admission resolves every review (`SessionGate::admit`), so this is a
        // command that reached the relay unadmitted: refused, never forwarded.
        Action::Review => {
            let rule = d.rule.as_deref().unwrap_or("default_action");
            Some(ErrorFields::error(
                "42501",
                format!("airlock: rule `{rule}` sends this statement to review and it was not held for one; the statement was not run"),
            ))
        }
    }
}

pub async fn fatal(writer: &ClientWriter, f: &ErrorFields) {
    let mut out = BytesMut::new();
    put_error(&mut out, f);
    let mut w = writer.lock().await;
    let _ = w.write_all(&out).await;
    let _ = w.flush().await;
}

enum Step {
    Pass,
    Swallow,
    Replace(ErrorFields),
    /// The message with this body instead (same tag): a masked row, error or notice.
    Rewrite(u8, Vec<u8>),
}

/// Relays backend messages until the upstream closes.
pub(crate) async fn upstream_to_client(
    mut upstream: ReadHalf<NetStream>,
    client: ClientWriter,
    session: Arc<SessionGate>,
    queue: Queue,
    limits: Limits,
    shared: Shared,
) -> Result<(), RelayError> {
    let Shared {
        recorder,
        encoding,
        syncs,
        views: _,
    } = shared;
    let rec = recorder.as_deref();
    let mut buf = BytesMut::with_capacity(UPSTREAM_BUF);
    let mut out = BytesMut::new();
    let masking = session.masking().cloned();
    let masking = masking.as_deref();
    // A DataRow or CopyData larger than the message limit is streamed, never buffered whole:
    // passed through as it comes without masking, withheld (and announced) with masking.
    let mut oversized: Option<Oversized> = None;
    let mut skip: Option<Skip> = None;
    loop {
        let n = upstream.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(o) = oversized.as_mut() {
            let take = o.remaining.min(buf.len());
            if o.pass {
                let mut w = client.lock().await;
                w.write_all(buf.get(..take).unwrap_or_default()).await?;
            }
            buf.advance(take);
            o.remaining -= take;
            if o.remaining > 0 {
                continue;
            }
            oversized = None;
        }
        // Most chunks pass through untouched: then the original bytes are written as they came.
        let mut rewritten = false;
        let mut pos = 0usize;
        let mut too_large = None;
        let mut closing: Option<ErrorFields> = None;
        {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (tag, len) = match peek_message(
                    buf.get(pos..).unwrap_or_default(),
                    limits.max_message_bytes,
                ) {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, .. }) => {
                        too_large = Some(len);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                let body = buf.get(pos + 5..pos + len).unwrap_or_default();
                let step = match tag {
                    // Asynchronous messages belong to no request; a notice may echo values.
                    b'N' => {
                        let step = match masking.and_then(|m| {
                            mask::mask_error_body(
                                m,
                                body,
                                &mut mask::Counts::default(),
                                m.has_column_rules(),
                            )
                        }) {
                            Some(b) => Step::Rewrite(tag, b),
                            None => Step::Pass,
                        };
                        if let Some(r) = rec {
                            let sent = match &step {
                                Step::Rewrite(_, b) => b.as_slice(),
                                _ => body,
                            };
                            r.notice(&codec::decode_error(sent).message);
                        }
                        step
                    }
                    b'S' => match parameter_status(body, &session, &encoding, masking) {
                        Ok(step) => step,
                        Err(f) => {
                            closing = Some(f);
                            break;
                        }
                    },
                    b'A' => masking
                        .and_then(|m| mask::mask_notification(m, body))
                        .map_or(Step::Pass, |b| Step::Rewrite(tag, b)),
                    // Masking a large row is CPU work long enough to stall every other
                    // session on this worker: the runtime moves them elsewhere meanwhile.
                    _ if masking.is_some() && len > HEAVY_MASK_BYTES => heavy(|| {
                        on_response(&mut q, &mut skip, tag, body, &session, masking, rec, &syncs)
                    })?,
                    _ => on_response(&mut q, &mut skip, tag, body, &session, masking, rec, &syncs)?,
                };
                match step {
                    Step::Pass => {
                        if rewritten {
                            out.extend_from_slice(buf.get(pos..pos + len).unwrap_or_default());
                        }
                    }
                    Step::Swallow | Step::Replace(_) | Step::Rewrite(..) => {
                        if !rewritten {
                            rewritten = true;
                            out.clear();
                            out.extend_from_slice(buf.get(..pos).unwrap_or_default());
                        }
                        match step {
                            Step::Replace(f) => put_error(&mut out, &f),
                            Step::Rewrite(tag, body) => copy_message(&mut out, tag, &body),
                            _ => {}
                        }
                    }
                }
                pos += len;
            }
        }
        let mut w = client.lock().await;
        if rewritten {
            w.write_all(&out).await?;
        } else {
            w.write_all(buf.get(..pos).unwrap_or_default()).await?;
        }
        if let Some(f) = closing {
            // What came before the offending message was relayed; nothing after it is.
            drop(w);
            fatal(&client, &f).await;
            return Err(RelayError::Upstream(f.message));
        }
        buf.advance(pos);
        release_if_large(&mut buf, UPSTREAM_BUF);
        if let Some(body_len) = too_large {
            // The header (and, for a DataRow, the column count) is at the front of `buf`.
            let tag = buf.first().copied().unwrap_or(0);
            if !matches!(tag, b'D' | b'd') {
                return Err(FrameError::TooLarge {
                    len: body_len,
                    limit: limits.max_message_bytes,
                }
                .into());
            }
            if tag == b'D' && buf.len() < 7 {
                // Wait for the column count.
                continue;
            }
            let total = 5 + body_len;
            // The catalog's answers to the gateway itself are not the client's to see: an
            // oversized one fails the snapshot or the check instead.
            let internal = {
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                match q.front_mut() {
                    Some(Expect::Snapshot { reader, .. }) => {
                        reader.fail("a catalog row exceeds [gateway] max_message_bytes");
                        true
                    }
                    Some(Expect::Check(c)) => {
                        c.fail();
                        true
                    }
                    _ => false,
                }
            };
            let pass = masking.is_none() && !internal;
            if internal {
            } else if pass {
                let take = total.min(buf.len());
                w.write_all(buf.get(..take).unwrap_or_default()).await?;
            } else {
                let mut replacement = BytesMut::new();
                if tag == b'D' {
                    let ncols = buf
                        .get(5..7)
                        .and_then(|b| b.try_into().ok())
                        .map(u16::from_be_bytes)
                        .unwrap_or(0);
                    put_message(&mut replacement, b'D', |o| {
                        o.put_u16(ncols);
                        for _ in 0..ncols {
                            o.put_i32(-1);
                        }
                    });
                }
                codec::put_notice(
                    &mut replacement,
                    &ErrorFields {
                        severity: "WARNING",
                        code: "01000",
                        message: format!("airlock: a result row exceeds the gateway's limit of {} bytes ([gateway] max_message_bytes) and cannot be masked; its values were withheld (sent as NULL)", limits.max_message_bytes),
                        detail: None,
                        hint: Some("select a shorter part of the value (e.g. with substr) or ask an operator to raise the limit".into()),
                    },
                );
                w.write_all(&replacement).await?;
                tracing::warn!(session = %session.id(), bytes = body_len, "oversized row withheld");
            }
            let take = total.min(buf.len());
            buf.advance(take);
            if total > take {
                oversized = Some(Oversized {
                    remaining: total - take,
                    pass,
                });
            }
        }
        drop(w);
    }
}

/// The rest of an oversized message still to come from the upstream.
struct Oversized {
    remaining: usize,
    pass: bool,
}

/// A `ParameterStatus` from the upstream. The gateway follows `client_encoding` (to read the
/// client's next messages) and closes the session when a setting it relies on was changed
/// behind its back: an encoding in which statements hide (only reachable through code the
/// classifier cannot see), or read-only mode switched off in a session opened read-only.
/// Under masking the value goes through the detectors (`set_config('application_name', …)`
/// would otherwise carry a masked value out).
fn parameter_status(
    body: &[u8],
    session: &SessionGate,
    encoding: &SharedEncoding,
    masking: Option<&SessionMasking>,
) -> Result<Step, ErrorFields> {
    let mut r = Reader::new(body, "ParameterStatus");
    let (Ok(name), Ok(value)) = (r.cbytes(), r.cbytes()) else {
        return Err(ErrorFields::fatal(
            "08P01",
            "airlock: malformed ParameterStatus from the upstream",
        ));
    };
    let name = String::from_utf8_lossy(name);
    let value_text = String::from_utf8_lossy(value);
    if name.eq_ignore_ascii_case("client_encoding") {
        match ClientEncoding::parse(&value_text) {
            Ok(e) => encoding.set(e),
            Err(e) => {
                return Err(ErrorFields::fatal(
                    "57P01",
                    format!("airlock: the session's {e}; the session is closed"),
                ))
            }
        }
    }
    if name.eq_ignore_ascii_case("standard_conforming_strings")
        && !value_text.eq_ignore_ascii_case("on")
    {
        return Err(ErrorFields::fatal(
            "57P01",
            "airlock: standard_conforming_strings was switched off, so the server would read strings differently from airlock; the session is closed",
        ));
    }
    if session.upstream().read_only
        && name.eq_ignore_ascii_case("default_transaction_read_only")
        && !value_text.eq_ignore_ascii_case("on")
    {
        return Err(ErrorFields::fatal(
            "57P01",
            "airlock: this session is read-only and default_transaction_read_only was switched off; the session is closed",
        ));
    }
    Ok(masking
        .and_then(|m| mask::mask_parameter_value(m, &name, value))
        .map_or(Step::Pass, |b| Step::Rewrite(b'S', b)))
}

/// Starting sizes of a session's read buffers (client side, upstream side). They grow for a
/// larger message and are given back once empty (see [`release_if_large`]), so an idle session
/// holds these and not the largest message it ever moved.
const CLIENT_BUF: usize = 2 * 1024;
const UPSTREAM_BUF: usize = 8 * 1024;

/// An empty buffer that grew past 64 KiB (a large row, a big COPY) goes back to its starting
/// size: memory per idle session stays small whatever the session did before.
fn release_if_large(buf: &mut BytesMut, start: usize) {
    if buf.is_empty() && buf.capacity() > 64 * 1024 {
        *buf = BytesMut::with_capacity(start);
    }
}

/// Messages larger than this are masked off the async worker (see [`heavy`]): 32 KiB of text
/// through every detector is already long enough to hold up other sessions when rows come
/// one after another.
const HEAVY_MASK_BYTES: usize = 32 * 1024;

/// Matches one backend message to the request it answers.
#[allow(clippy::too_many_arguments)]
fn on_response(
    q: &mut VecDeque<Expect>,
    skip: &mut Option<Skip>,
    tag: u8,
    body: &[u8],
    session: &SessionGate,
    masking: Option<&SessionMasking>,
    rec: Option<&Recorder>,
    syncs: &tokio::sync::watch::Sender<u64>,
) -> Result<Step, RelayError> {
    skip_to_sync(q, skip, session);
    let Some(front) = q.front_mut() else {
        // Nothing outstanding (e.g. a FATAL error when the server shuts down): pass it on.
        return Ok(match tag {
            b'E' => untracked_error(body, masking),
            _ => Step::Pass,
        });
    };
    let mut done = false;
    let mut failed = false;
    let mut snapshot = None;
    let step = match front {
        Expect::Query(t) if tag != b'Z' && t.mask.as_ref().is_some_and(|m| m.prefix.is_some()) => {
            match on_prefix(t, tag, body, masking) {
                Some(step) => step,
                None => Step::Swallow,
            }
        }
        Expect::Query(t) => {
            let step = match tag {
                b'C' | b'I' => {
                    t.add_rows(body);
                    if let Some(m) = t.mask.as_mut() {
                        m.stmt += 1;
                        m.plan = None;
                        m.copy = None;
                    }
                    Step::Pass
                }
                b'E' => {
                    t.error = Some(codec::decode_error(body).code);
                    let chars = t.mask.as_ref().map_or(0, |m| m.prefix_chars);
                    if chars > 0 {
                        // Positions count from the start of the text the server got, which had
                        // the catalog check in front.
                        let shifted = codec::shift_error_position(body, chars);
                        match masked_error(t, &shifted, masking) {
                            Step::Pass => Step::Rewrite(b'E', shifted),
                            step => step,
                        }
                    } else {
                        masked_error(t, body, masking)
                    }
                }
                b'Z' => {
                    let error = t.error.take();
                    t.finish(session, error);
                    done = true;
                    Step::Pass
                }
                _ => mask_result(t, tag, body, masking)?,
            };
            record_frame(rec, t, tag, body, &step);
            step
        }
        Expect::Denied { error, extended } => match tag {
            b'1' | b'2' if *extended => Step::Swallow,
            b'E' => {
                let f = error.clone();
                if *extended {
                    done = true;
                    failed = true;
                }
                Step::Replace(f)
            }
            b'Z' if !*extended => {
                done = true;
                Step::Pass
            }
            _ => Step::Pass,
        },
        Expect::Parse(prep) => {
            if tag == b'E' {
                prep.rejected.store(true, Ordering::Relaxed);
            } else if tag == b'1' {
                prep.taken.store(true, Ordering::Relaxed);
            }
            match simple_completion(tag, b'1', &mut done, &mut failed) {
                Step::Pass if tag == b'E' => untracked_error(body, masking),
                step => step,
            }
        }
        Expect::Bind(not_bound) if tag == b'E' => {
            if let Some(flag) = not_bound {
                flag.store(true, Ordering::Relaxed);
            }
            done = true;
            failed = true;
            untracked_error(body, masking)
        }
        Expect::Close if tag == b'E' => {
            done = true;
            failed = true;
            untracked_error(body, masking)
        }
        Expect::Bind(_) => simple_completion(tag, b'2', &mut done, &mut failed),
        Expect::Close => simple_completion(tag, b'3', &mut done, &mut failed),
        Expect::DescribeStatement(prep) | Expect::DescribePortal(prep) => match tag {
            b'T' | b'n' => {
                if let (Some(prep), b'T') = (prep, tag) {
                    remember_shape(prep, body);
                }
                done = true;
                Step::Pass
            }
            b'E' => {
                done = true;
                failed = true;
                untracked_error(body, masking)
            }
            _ => Step::Pass,
        },
        Expect::InjectedDescribe(prep) => match tag {
            b'T' | b'n' => {
                if tag == b'T' {
                    remember_shape(prep, body);
                }
                done = true;
                Step::Swallow
            }
            b'E' => {
                done = true;
                failed = true;
                untracked_error(body, masking)
            }
            _ => Step::Pass,
        },
        Expect::Execute(t) => {
            let step = match tag {
                b'C' => {
                    t.add_rows(body);
                    t.finish(session, None);
                    done = true;
                    Step::Pass
                }
                b'I' | b's' => {
                    t.finish(session, None);
                    done = true;
                    Step::Pass
                }
                b'E' => {
                    let code = codec::decode_error(body).code;
                    t.finish(session, Some(code));
                    done = true;
                    failed = true;
                    masked_error(t, body, masking)
                }
                b'D' => {
                    t.data_rows += 1;
                    mask_result(t, tag, body, masking)?
                }
                _ => mask_result(t, tag, body, masking)?,
            };
            record_frame(rec, t, tag, body, &step);
            step
        }
        Expect::Sync => {
            if tag == b'Z' {
                done = true;
                syncs.send_modify(|n| *n += 1);
            }
            Step::Pass
        }
        Expect::Check(c) => match c.on_message(tag, body) {
            CheckProgress::Pending => Step::Swallow,
            CheckProgress::Done => {
                done = true;
                Step::Swallow
            }
            CheckProgress::Failed => {
                done = true;
                failed = true;
                untracked_error(body, masking)
            }
        },
        Expect::Snapshot { reader, .. } => {
            snapshot = reader.on_message(tag, body);
            done = snapshot.is_some();
            Step::Swallow
        }
    };
    if done {
        if let (Some(Expect::Snapshot { reply, .. }), Some(answer)) = (q.pop_front(), snapshot) {
            // The client side may have gone; then nobody waits for it.
            let _ = reply.send(answer);
        }
    }
    if failed {
        // After an error in the extended protocol the server discards messages until Sync,
        // including ones the client sends after the error arrived (not queued yet).
        let code = (tag == b'E').then(|| codec::decode_error(body).code);
        *skip = Some(Skip {
            code: code.unwrap_or_else(|| "XX000".to_owned()),
            first: true,
        });
        skip_to_sync(q, skip, session);
    }
    Ok(step)
}

/// The server is discarding extended-protocol messages until the client's next Sync: the
/// error that started it, and whether an Execute has been given that error yet.
pub(crate) struct Skip {
    code: String,
    first: bool,
}

/// Drops the expectations of messages the server discards after an error, up to the next
/// Sync (or simple Query, which the server answers normally). An Execute it discards was
/// recorded as a command: it gets its outcome too, the error that stopped the pipeline (the
/// first one, often the Execute of the statement whose Parse or Bind failed, gets that error
/// as its own).
fn skip_to_sync(q: &mut VecDeque<Expect>, skip: &mut Option<Skip>, session: &SessionGate) {
    let Some(s) = skip.as_mut() else { return };
    while let Some(e) = q.front() {
        // (Catalog checks of simple Queries travel inside the Query itself.)
        if matches!(e, Expect::Sync | Expect::Query(_) | Expect::Snapshot { .. }) {
            *skip = None;
            return;
        }
        match q.pop_front() {
            Some(Expect::Execute(mut t)) => {
                let error = if s.first {
                    s.code.clone()
                } else {
                    format!("not run: {} earlier in the pipeline", s.code)
                };
                s.first = false;
                t.finish(session, Some(error));
            }
            // Skipped by the server: the names keep what they held before (round 9, F1).
            Some(Expect::Parse(prep)) => prep.rejected.store(true, Ordering::Relaxed),
            Some(Expect::Bind(Some(not_bound))) => not_bound.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
}

/// Records an outcome for every command still waiting for one when a session ends (the client
/// hung up mid-result, the session was cut, the gateway shut down): no `command` is left
/// without a `command_result`. Returns whether any was outstanding (then a statement may still
/// be running upstream).
pub(crate) fn abandon_outstanding(queue: &Queue, session: &SessionGate, reason: &str) -> bool {
    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
    let mut any = false;
    for e in q.drain(..) {
        if let Expect::Query(mut t) | Expect::Execute(mut t) = e {
            any = true;
            t.finish(session, Some(format!("interrupted: {reason}")));
        }
    }
    any
}

/// Records what the client is sent for a command (after masking: a rewritten body replaces
/// the upstream's).
fn record_frame(rec: Option<&Recorder>, t: &Tracked, tag: u8, body: &[u8], step: &Step) {
    let Some(rec) = rec else { return };
    let sent = match step {
        Step::Rewrite(_, b) => b.as_slice(),
        Step::Swallow | Step::Replace(_) => return,
        Step::Pass => body,
    };
    match tag {
        b'T' => {
            if let Some(cols) = mask::parse_row_description(sent) {
                let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
                let right: Vec<bool> = cols
                    .iter()
                    .map(|c| airlock_record::pg_right_aligned(c.type_oid))
                    .collect();
                rec.columns_aligned(t.seq, &names, &right);
            }
        }
        b'D' => {
            if let Some(values) = mask::data_row_values(sent) {
                rec.row(t.seq, &values);
            }
        }
        b'C' => {
            let tag_text = String::from_utf8_lossy(sent.strip_suffix(&[0]).unwrap_or(sent));
            rec.complete(t.seq, &tag_text, rows_from_tag(sent), t.started.elapsed());
        }
        b'E' => {
            let e = codec::decode_error(sent);
            rec.error_after(t.seq, &e.code, &e.message, Some(t.started.elapsed()));
        }
        _ => {}
    }
}

fn remember_shape(prep: &Prepared, body: &[u8]) {
    if let Some(cols) = mask::parse_row_description(body) {
        *prep.shape.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cols));
    }
}

/// One backend message while a simple Query's catalog-check prefix is answered: `None` to
/// swallow it (the check's), `Some` for what the client gets. An error there aborted the whole
/// text (a relation the snapshot knew is gone, an aborted transaction): it is the client's
/// answer, without a position (it would point into the prefix).
fn on_prefix(
    t: &mut Tracked,
    tag: u8,
    body: &[u8],
    masking: Option<&SessionMasking>,
) -> Option<Step> {
    let state = t.mask.as_mut()?;
    let prefix = state.prefix.as_mut()?;
    match tag {
        b'C' => {
            prefix.completions = prefix.completions.saturating_sub(1);
            if prefix.completions == 0 {
                state.prefix_chars = prefix.chars;
                state.prefix = None;
            }
            None
        }
        b'E' => {
            prefix.check.fail();
            state.prefix = None;
            t.error = Some(codec::decode_error(body).code);
            let unpositioned = codec::shift_error_position(body, usize::MAX);
            Some(match masked_error(t, &unpositioned, masking) {
                Step::Pass => Step::Rewrite(b'E', unpositioned),
                step => step,
            })
        }
        _ => {
            let _ = prefix.check.on_message(tag, body);
            None
        }
    }
}

fn masked_error(t: &mut Tracked, body: &[u8], masking: Option<&SessionMasking>) -> Step {
    match (masking, t.mask.as_mut()) {
        (Some(m), Some(state)) => {
            // A masked column is in scope unless the failing statement's lineage says it
            // touches no ruled table.
            let strict = m.has_column_rules()
                && state
                    .lineage()
                    .is_none_or(StatementLineage::errors_may_echo_masked);
            error_step(m, body, &mut state.counts, strict)
        }
        (Some(m), None) => error_step(m, body, &mut mask::Counts::default(), m.has_column_rules()),
        _ => Step::Pass,
    }
}

/// An error outside a tracked command's results (Parse, Bind, Describe, none outstanding):
/// masked strictly, since which columns were in scope is not known here.
fn untracked_error(body: &[u8], masking: Option<&SessionMasking>) -> Step {
    match masking {
        Some(m) => error_step(m, body, &mut mask::Counts::default(), m.has_column_rules()),
        None => Step::Pass,
    }
}

fn error_step(m: &SessionMasking, body: &[u8], counts: &mut mask::Counts, strict: bool) -> Step {
    match mask::mask_error_body(m, body, counts, strict) {
        Some(b) => Step::Rewrite(b'E', b),
        None => Step::Pass,
    }
}

/// RowDescription, DataRow, CopyOutResponse and CopyData of a command whose results are masked.
fn mask_result(
    t: &mut Tracked,
    tag: u8,
    body: &[u8],
    masking: Option<&SessionMasking>,
) -> Result<Step, RelayError> {
    let (Some(m), Some(state)) = (masking, t.mask.as_mut()) else {
        return Ok(Step::Pass);
    };
    match tag {
        b'T' => {
            let cols = mask::parse_row_description(body).unwrap_or_default();
            state.plan = Some(RowPlan::new(state.lineage(), &cols));
            Ok(Step::Pass)
        }
        b'D' => {
            if state.plan.is_none() {
                state.plan = Some(execute_plan(state));
            }
            let Some(plan) = state.plan.as_ref() else {
                return Ok(Step::Pass);
            };
            match mask::mask_data_row(m, plan, body, &mut state.counts) {
                Ok(Some(new)) => Ok(Step::Rewrite(b'D', new.to_vec())),
                Ok(None) => Ok(Step::Pass),
                Err(_) => Err(RelayError::Upstream(
                    "a DataRow from the upstream is malformed; it cannot be masked".into(),
                )),
            }
        }
        b'H' => {
            let n = body
                .get(1..3)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_be_bytes)
                .unwrap_or(0);
            let lineage = state.lineage();
            let copy = lineage.and_then(|l| l.copy_format()).unwrap_or(CopyFormat {
                kind: CopyKind::Text,
                delimiter: b'\t',
            });
            let plan = RowPlan::for_copy(lineage, usize::from(n));
            state.copy = Some(copy);
            state.plan = Some(plan);
            Ok(Step::Pass)
        }
        b'd' => {
            let (Some(plan), Some(format)) = (state.plan.as_ref(), state.copy) else {
                return Ok(Step::Pass);
            };
            Ok(
                match mask::mask_copy_data(m, plan, format, body, &mut state.counts) {
                    Some(new) => Step::Rewrite(b'd', new),
                    None => Step::Pass,
                },
            )
        }
        _ => Ok(Step::Pass),
    }
}

/// The plan for rows of an Execute: the statement's described columns with the portal's result
/// formats. Without a description every value is treated as unknown (masked).
fn execute_plan(state: &MaskState) -> RowPlan {
    let Some((prep, formats, not_bound)) = state.prepared.as_ref() else {
        return RowPlan::new(Some(&StatementLineage::Opaque), &[]);
    };
    let shape = prep.shape.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(shape) = shape else {
        return RowPlan::new(Some(&StatementLineage::Opaque), &[]);
    };
    let rejected = prep.rejected.load(Ordering::Relaxed) || not_bound.load(Ordering::Relaxed);
    let cols: Vec<Column> = shape
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let format = match formats.len() {
                0 => 0,
                1 => formats.first().copied().unwrap_or(0),
                _ => formats.get(i).copied().unwrap_or(0),
            };
            Column {
                binary: format == 1,
                ..c.clone()
            }
        })
        .collect();
    if rejected {
        return RowPlan::new(Some(&StatementLineage::Opaque), &cols);
    }
    RowPlan::new(state.lineage(), &cols)
}

fn simple_completion(tag: u8, ok: u8, done: &mut bool, failed: &mut bool) -> Step {
    if tag == ok {
        *done = true;
    } else if tag == b'E' {
        *done = true;
        *failed = true;
    }
    Step::Pass
}
