//! The command phase between an authenticated client and its upstream.
//!
//! MySQL is strictly request/response: a client sends one command and reads its whole answer
//! before the next. So one task per session is enough: read a command, have its statement
//! judged by the gate, append the audit record (*before* forwarding), forward it, then relay the
//! upstream's answer frame by frame while following the result-set grammar (to count rows, see
//! errors and know where the answer ends). Frames are written to the client as they arrive,
//! untouched, so large results stream with no copy.
//!
//! Denied statements never reach the upstream: the client gets an ERR packet (1142, SQLSTATE
//! 42000) naming the rule. A multi-statement `COM_QUERY` is judged as one command, so any
//! denied part denies the whole packet.
//!
//! Masking and recording: in a session a `[[masking]]` policy applies to, or one that is
//! recorded, the answer is followed packet by packet instead (`relay_answer` joins frames of
//! packets longer than 16 MiB when it must rewrite them): column definitions give the plan,
//! text and binary rows and ERR messages are rewritten by [`crate::mask`] and re-framed (sequence
//! ids renumbered when a rewritten row needs a different number of frames), and the recorder is
//! fed what the client is sent. A row larger than the packet limit is never forwarded in a masked
//! session: the client gets an ERR instead and the rest of the answer is drained.

use crate::catalog_check::Drift;
use crate::codec::{
    decode_err, decode_ok, eof_status, err_payload, frame_header, is_eof, ok_payload, put_packet,
    split_packet, ErrPacket, FrameError, Reader, MAX_FRAME, SERVER_MORE_RESULTS_EXISTS,
    SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_CURSOR_EXISTS,
};
use crate::mask::{
    mask_binary_row, mask_err, mask_text_row, parse_column_def, Catalog, ColumnDef, Plan,
    StmtCache, StmtMask, UserVars,
};
use crate::upstream::Upstream;
use crate::{KillRegistry, *};
use airlock_core::review::Review;
use airlock_core::Action;
use airlock_gate::masking::{SessionMasking, Tally};
use airlock_gate::{Judged, SessionEnd, SessionGate};
use airlock_record::Recorder;
use airlock_sql::mysql::{
    may_change_sql_mode, may_turn_off_read_only, parse_kill, reads_client_file,
    stores_computed_state, Kill,
};
use airlock_transport::NetStream;
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Masking state of a session a `[[masking]]` policy applies to.
pub struct MaskState {
    pub masking: Arc<SessionMasking>,
    pub catalog: Arc<Catalog>,
    stmts: StmtCache,
    /// Plans of result sets left open as cursors, by statement id (for `COM_STMT_FETCH`).
    cursors: HashMap<u32, Arc<Plan>>,
    /// User variables that may hold masked values.
    vars: UserVars,
}

impl MaskState {
    pub fn new(masking: Arc<SessionMasking>, catalog: Arc<Catalog>) -> MaskState {
        MaskState {
            masking,
            catalog,
            stmts: StmtCache::default(),
            cursors: HashMap::new(),
            vars: UserVars::default(),
        }
    }

    /// A statement whose relations the catalog snapshot cannot vouch for: every column unknown,
    /// and every user variable may now hold a masked value.
    fn opaque_stmt(&mut self) -> Arc<StmtMask> {
        let stmt = Arc::new(StmtMask::opaque(&self.masking));
        self.vars.ran(&stmt);
        stmt
    }

    /// The statement's mask given the session's user variables, for a statement about to run
    /// (the variables it names are marked when it reads masked data).
    fn stmt(&mut self, text: &str) -> Arc<StmtMask> {
        let base = self.stmts.get(&self.masking, &self.catalog, text);
        let stmt = base.in_session(&self.masking, &self.vars);
        self.vars.ran(&stmt);
        stmt
    }
}

/// What one answer is relayed with.
#[derive(Default)]
struct AnswerCtx {
    /// The statement whose result this is (masking).
    stmt: Option<Arc<StmtMask>>,
    /// `COM_STMT_EXECUTE`: its statement id (a cursor's plan is kept under it).
    statement_id: Option<u32>,
    /// `COM_STMT_FETCH`: the plan of the cursor's result set.
    fetch_plan: Option<Arc<Plan>>,
    /// The audit seq, for the recording.
    seq: Option<u64>,
    started: Option<Instant>,
    // Filled while relaying.
    defs: Vec<ColumnDef>,
    plan: Option<Arc<Plan>>,
    tally: Tally,
    /// Rows of the current result set, and how many were recorded.
    set_rows: u64,
    recorded_sets: u32,
    /// The error message the client was sent (masked), for the recording.
    error_message: Option<String>,
}

/// What a prepared statement was judged to be when it was prepared.
struct Prepared {
    text: Arc<str>,
    judged: Judged,
    /// Approved in a review: the approval covers one execution.
    reviewed: bool,
    executed: bool,
}

/// Which grammar the upstream's answer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// COM_QUERY / COM_STMT_EXECUTE: OK, ERR, or result sets (possibly several).
    Results { binary: bool },
    /// COM_STMT_PREPARE: PREPARE_OK, parameter and column definitions.
    Prepare,
    /// COM_STMT_FETCH and COM_FIELD_LIST: packets up to EOF or ERR.
    UntilEof,
    /// One packet: OK, ERR, EOF or a string (COM_PING, COM_STATISTICS, ...).
    Single,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Start,
    Columns(u64),
    ColumnsEof,
    Rows,
    /// PREPARE_OK seen: `params` definitions then EOF, `columns` definitions then EOF.
    Defs {
        left: u64,
        then: u64,
    },
    DefsEof {
        then: u64,
    },
    Done,
}

/// What an answer told us, for the audit trail.
#[derive(Debug, Default)]
struct Outcome {
    rows: u64,
    affected: u64,
    error: Option<ErrPacket>,
    statement_id: Option<u32>,
}

pub struct Relay {
    client: NetStream,
    client_buf: BytesMut,
    /// The audited command whose answer is awaited (sequence number, start): if the client
    /// hangs up or either side fails meanwhile, it is killed upstream and recorded as
    /// interrupted.
    running: Option<(u64, Instant)>,
    up: NetStream,
    up_buf: BytesMut,
    session: Arc<SessionGate>,
    kills: Arc<KillRegistry>,
    max_packet: usize,
    prepared: HashMap<u32, Prepared>,
    mask: Option<MaskState>,
    recorder: Option<Arc<Recorder>>,
    /// The upstream's id for this connection (a session cut mid-statement kills it).
    thread_id: u32,
    /// Rows kept per statement in the recording (decoding stops there).
    record_rows: u64,
    /// The session is read-only upstream (the identity's rules allow no writes): the variable
    /// that reports the transaction access mode (`tx_read_only` or `transaction_read_only`).
    read_only: Option<&'static str>,
}

/// Why the command loop ended: a line for the log and the audit event.
type Reason = String;

enum Flow {
    Continue,
    Close(Reason),
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client hung up while its statement's answer was awaited.
    #[error("client disconnected")]
    ClientGone,
    #[error("upstream protocol error: {0}")]
    Upstream(String),
}

/// A short description of a command packet (for logs and the fuzz target).
pub fn describe_command(payload: &[u8]) -> &'static str {
    match payload.first() {
        Some(&COM_QUIT) => "COM_QUIT",
        Some(&COM_INIT_DB) => "COM_INIT_DB",
        Some(&COM_QUERY) => "COM_QUERY",
        Some(&COM_FIELD_LIST) => "COM_FIELD_LIST",
        Some(&COM_PING) => "COM_PING",
        Some(&COM_STMT_PREPARE) => "COM_STMT_PREPARE",
        Some(&COM_STMT_EXECUTE) => "COM_STMT_EXECUTE",
        Some(&COM_STMT_CLOSE) => "COM_STMT_CLOSE",
        Some(_) => "other",
        None => "empty",
    }
}

impl Relay {
    pub fn new(
        client: NetStream,
        client_buf: BytesMut,
        up: Upstream,
        session: Arc<SessionGate>,
        kills: Arc<KillRegistry>,
        max_packet: usize,
    ) -> Relay {
        Relay {
            client,
            client_buf,
            running: None,
            thread_id: up.thread_id,
            up: up.stream,
            up_buf: up.leftover,
            session,
            kills,
            max_packet,
            prepared: HashMap::new(),
            mask: None,
            recorder: None,
            record_rows: 0,
            read_only: None,
        }
    }

    /// The upstream session was made read-only ([`crate::upstream::set_read_only_on`]); `var`
    /// reports it. Statements that could turn it off are refused, and it is checked again after
    /// commands that could have changed it.
    pub fn with_read_only(mut self, var: &'static str) -> Relay {
        self.read_only = Some(var);
        self
    }

    /// Results are masked with this state.
    pub fn with_masking(mut self, mask: MaskState) -> Relay {
        self.mask = Some(mask);
        self
    }

    /// Statements and (masked) results are recorded, at most `max_rows` rows per statement.
    pub fn with_recorder(mut self, recorder: Arc<Recorder>, max_rows: u64) -> Relay {
        self.recorder = Some(recorder);
        self.record_rows = max_rows;
        self
    }

    /// Relays until the client quits or either side fails, or the session's credential or
    /// grant ends; returns why.
    pub async fn run(mut self) -> Reason {
        let session = self.session.clone();
        let ended = session.ended();
        tokio::pin!(ended);
        loop {
            let packet = tokio::select! {
                p = read_client(&mut self.client, &mut self.client_buf, self.max_packet) => p,
                end = &mut ended => return self.cut(end, false).await,
            };
            let packet = match packet {
                Ok(Some(p)) => p,
                Ok(None) => return "client disconnected".into(),
                Err(ClientReadError::Io(e)) => return format!("client side: {e}"),
                Err(ClientReadError::Frame(e)) => {
                    let (code, state) = match e {
                        FrameError::TooLarge { .. } => (1153, "08S01"),
                        FrameError::Sequence { .. } => (1156, "08S01"),
                        FrameError::Malformed { .. } => (1047, "08S01"),
                    };
                    self.send_err(1, code, state, &format!("airlock: {e}"))
                        .await;
                    return format!("client protocol error: {e}");
                }
            };
            let result = tokio::select! {
                r = self.command(packet.payload) => r,
                end = &mut ended => return self.cut(end, true).await,
            };
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close(reason)) => return reason,
                Err(RelayError::ClientGone) => {
                    self.interrupt_running("client disconnected");
                    return "client disconnected".into();
                }
                Err(RelayError::Io(e)) => {
                    self.interrupt_running(&format!("i/o: {e}"));
                    return format!("i/o: {e}");
                }
                Err(e @ RelayError::Upstream(_)) => {
                    self.interrupt_running(&e.to_string());
                    self.send_err(1, 2027, "HY000", &format!("airlock: {e}"))
                        .await;
                    return e.to_string();
                }
            }
        }
    }

    /// The credential or grant ended (already audited by the gate): the client gets ERR 1927
    /// (70100, "connection was killed") and the connection closes. A statement still running
    /// upstream is killed over a separate connection.
    async fn cut(&mut self, end: SessionEnd, busy: bool) -> Reason {
        self.send_err(1, 1927, "70100", &end.message).await;
        let _ = self.client.shutdown().await;
        if busy {
            self.interrupt_running(&end.reason);
        }
        end.reason
    }

    async fn send_err(&mut self, seq: u8, code: u16, state: &str, message: &str) {
        let mut out = BytesMut::new();
        let mut seq = seq;
        put_packet(&mut out, &mut seq, &err_payload(code, state, message));
        let _ = self.client.write_all(&out).await;
        let _ = self.client.flush().await;
    }

    async fn send_ok(&mut self, affected: u64) -> Result<(), RelayError> {
        let mut out = BytesMut::new();
        let mut seq = 1;
        put_packet(
            &mut out,
            &mut seq,
            &ok_payload(affected, 0, SERVER_STATUS_AUTOCOMMIT, 0),
        );
        self.client.write_all(&out).await?;
        Ok(())
    }

    async fn forward(&mut self, payload: &[u8]) -> Result<(), RelayError> {
        let mut out = BytesMut::with_capacity(payload.len() + 8);
        let mut seq = 0;
        put_packet(&mut out, &mut seq, payload);
        self.up.write_all(&out).await?;
        Ok(())
    }

    async fn command(&mut self, payload: BytesMut) -> Result<Flow, RelayError> {
        let Some(&cmd) = payload.first() else {
            self.send_err(1, 1047, "08S01", "airlock: empty command packet")
                .await;
            return Ok(Flow::Close("empty command packet".into()));
        };
        let body = payload.get(1..).unwrap_or_default();
        match cmd {
            COM_QUIT => {
                let _ = self.forward(&payload).await;
                Ok(Flow::Close("client quit".into()))
            }
            COM_QUERY => {
                let text = String::from_utf8_lossy(body).into_owned();
                self.query(&payload, &text).await
            }
            COM_INIT_DB => {
                let db = String::from_utf8_lossy(body);
                let text = format!("USE `{}`", db.replace('`', "``"));
                self.judged_command(&payload, &text, Answer::Single).await
            }
            COM_FIELD_LIST => {
                let table = String::from_utf8_lossy(Reader::new(body, "COM_FIELD_LIST").cstr())
                    .into_owned();
                let text = format!("SHOW COLUMNS FROM `{}`", table.replace('`', "``"));
                self.judged_command(&payload, &text, Answer::UntilEof).await
            }
            COM_PING | COM_STATISTICS | COM_SET_OPTION => {
                self.forward(&payload).await?;
                self.relay_answer(Answer::Single, &mut AnswerCtx::default())
                    .await?;
                Ok(Flow::Continue)
            }
            COM_RESET_CONNECTION => {
                self.forward(&payload).await?;
                self.relay_answer(Answer::Single, &mut AnswerCtx::default())
                    .await?;
                self.prepared.clear();
                if let Some(m) = self.mask.as_mut() {
                    m.vars.clear();
                    m.cursors.clear();
                }
                // The reset restores the global defaults: the read-only mode is applied again
                // and the (global) sql_mode checked before the client's next command.
                if let Some(var) = self.read_only {
                    let applied =
                        crate::upstream::set_read_only_on(&mut self.up, &mut self.up_buf).await;
                    match applied {
                        Ok(v) if v == var => {}
                        Ok(_) => return Ok(self.session_unsafe("the read-only mode changed its variable after COM_RESET_CONNECTION").await),
                        Err(e) => return Ok(self.session_unsafe(&e.to_string()).await),
                    }
                }
                Ok(self.verify_session().await)
            }
            COM_PROCESS_KILL => {
                let id = Reader::new(body, "COM_PROCESS_KILL").u32().unwrap_or(0);
                let text = format!("KILL CONNECTION {id}");
                self.query(&payload, &text).await
            }
            COM_CHANGE_USER => {
                self.send_err(1, 1235, "42000", "airlock: COM_CHANGE_USER is not supported through airlock (a session belongs to one identity); reconnect as the other identity").await;
                Ok(Flow::Close("COM_CHANGE_USER refused".into()))
            }
            COM_STMT_PREPARE => {
                let text = String::from_utf8_lossy(body).into_owned();
                self.prepare(&payload, text).await
            }
            COM_STMT_EXECUTE => self.execute(&payload).await,
            COM_STMT_FETCH => self.fetch(&payload).await,
            COM_STMT_CLOSE => {
                let id = Reader::new(body, "COM_STMT_CLOSE").u32().unwrap_or(0);
                self.prepared.remove(&id);
                self.forward(&payload).await?;
                Ok(Flow::Continue)
            }
            COM_STMT_SEND_LONG_DATA => {
                // Parameter data for a statement judged at prepare time; no answer.
                self.forward(&payload).await?;
                Ok(Flow::Continue)
            }
            COM_STMT_RESET => {
                self.forward(&payload).await?;
                self.relay_answer(Answer::Single, &mut AnswerCtx::default())
                    .await?;
                Ok(Flow::Continue)
            }
            other => {
                // Replication, COM_SHUTDOWN, COM_DEBUG, COM_REFRESH...: no SQL to judge.
                self.send_err(
                    1,
                    1047,
                    "08S01",
                    &format!("airlock: command 0x{other:02x} is not supported through airlock"),
                )
                .await;
                Ok(Flow::Continue)
            }
        }
    }

    /// The gate's admission of one statement with this adapter's guards ([`Self::guard`] for
    /// statements, none for `COM_INIT_DB`/`COM_FIELD_LIST`); one a rule sends to review is held
    /// until a reviewer decides or the hold time passes (MySQL has no notices: the client just
    /// waits).
    async fn admit(&self, text: &str, guarded: bool) -> (Judged, bool) {
        let admission = self
            .session
            .admit(
                text,
                |judged| {
                    if guarded {
                        self.guard(text, judged);
                    }
                },
                async || Ok::<(), std::convert::Infallible>(()),
                async |_review: &Review, _hold: u64| {},
            )
            .await;
        match admission {
            Ok(a) => (a.judged, a.reviewed),
            Err(never) => match never {},
        }
    }

    /// The refusals this adapter adds to the rules, before any review: files read from the
    /// client, statements that could end the read-only mode, computed values stored in
    /// server state or server state listing values in a masked session.
    fn guard(&self, text: &str, judged: &mut Judged) {
        if judged.decision.action != Action::Deny && reads_client_file(text) {
            judged.force_deny("LOAD DATA LOCAL reads files from the client's machine; it is not allowed through airlock");
        }
        self.refuse_read_write(text, judged);
        self.refuse_computed_state(text, judged);
        self.refuse_masked_copies(text, judged);
    }

    /// In a session with column rules, a statement that writes into a table values taken from
    /// masked columns is refused: `CREATE [TEMPORARY] TABLE … AS SELECT` or `INSERT … SELECT`
    /// over a ruled table, an `UPDATE`/`INSERT` whose values name a ruled column, a sub-query
    /// over one, or a user variable that may hold a masked value. The copy would carry the
    /// values where masking cannot follow them; a temporary table even shadows a clean base
    /// table of the same name, which the catalog vouches for (found in session 8). A source
    /// query counts when it reads any ruled relation, whichever columns it copies.
    fn refuse_masked_copies(&self, text: &str, judged: &mut Judged) {
        let Some(m) = self.mask.as_ref() else {
            return;
        };
        if judged.decision.action == Action::Deny || !m.masking.has_column_rules() {
            return;
        }
        // Only statements that write into a table (as the classifier reads them) are taken
        // apart: the parser behind `copy_sources` reads fewer forms than the classifier.
        let writes_rows = judged.classification.statements.iter().any(|s| {
            !s.writes.is_empty()
                && !matches!(
                    s.operation,
                    airlock_core::Operation::Delete
                        | airlock_core::Operation::Drop
                        | airlock_core::Operation::Truncate
                        | airlock_core::Operation::Lock
                )
        });
        if !writes_rows {
            return;
        }
        let Some(sources) = airlock_sql::mysql::copy_sources(text) else {
            return;
        };
        let ruled_column = |c: &String| {
            m.masking
                .rules
                .iter()
                .any(|r| r.column_part().is_none_or(|p| p.eq_ignore_ascii_case(c)))
        };
        let touched = |sql: &str| StmtMask::new(&m.masking, &m.catalog, sql).touched();
        let copies_masked = sources.opaque
            || sources.columns.iter().any(ruled_column)
            || sources.queries.iter().any(|q| touched(q))
            || m.vars.any_of(&sources.variables);
        if copies_masked {
            judged.force_deny("masking applies to this session and this statement would copy values of masked columns into a table, where masking could not follow them; read them with SELECT instead");
        }
    }

    /// Appends the audit record; on failure the client gets an error and nothing is forwarded.
    async fn record(&mut self, seq: u64, text: &str, judged: &Judged) -> Result<(), Flow> {
        if let Err(e) = self.session.record(&[(seq, text, judged)]) {
            self.send_err(
                1,
                1105,
                "HY000",
                &format!("airlock: {e}; ask an operator to check the gateway's disk"),
            )
            .await;
            return Err(Flow::Close(format!("audit log unavailable: {e}")));
        }
        if let Some(rec) = &self.recorder {
            rec.statement(
                seq,
                text,
                judged.decision.action.as_str(),
                judged.decision.rule.as_deref(),
            );
        }
        Ok(())
    }

    async fn deny(&mut self, seq: u64, judged: &Judged) {
        let d = &judged.decision;
        let rule = d.rule.as_deref().unwrap_or("default_action");
        let message = d
            .message
            .clone()
            .unwrap_or_else(|| format!("denied by rule `{rule}`"));
        let message = message
            .strip_prefix("airlock: ")
            .unwrap_or(&message)
            .to_owned();
        let (code, text) = match d.action {
            Action::Review => (
                1142,
                format!("airlock: rule `{rule}` requires a review for this statement; the statement was not run"),
            ),
            _ => (1142, format!("airlock: {message} (rule `{rule}`)")),
        };
        self.send_err(1, code, "42000", &text).await;
        if let Some(rec) = &self.recorder {
            rec.error(seq, "42000", &text);
        }
    }

    async fn query(&mut self, payload: &[u8], text: &str) -> Result<Flow, RelayError> {
        let (mut judged, _) = self.admit(text, true).await;
        let kill = if judged.decision.action == Action::Allow {
            parse_kill(text)
        } else {
            Kill::None
        };
        if kill == Kill::Unsupported {
            judged.force_deny("only `KILL [QUERY|CONNECTION] <id>` with an id from this gateway is supported; other forms could reach other sessions");
        }
        let seq = self.session.next_seq();
        if let Err(flow) = self.record(seq, text, &judged).await {
            return Ok(flow);
        }
        if judged.decision.action != Action::Allow {
            self.deny(seq, &judged).await;
            return Ok(Flow::Continue);
        }
        let started = Instant::now();
        if let Kill::Thread { query_only, id } = kill {
            return self.kill(seq, started, query_only, id).await;
        }
        let vouched = self.revalidate_catalog(&judged.classification).await;
        let mut ctx = self.ctx_for(seq, started, text, vouched);
        self.forward(payload).await?;
        let outcome = self
            .relay_answer(Answer::Results { binary: false }, &mut ctx)
            .await?;
        self.record_answer(seq, started, &outcome, &mut ctx);
        if may_change_session(text, &judged.classification) {
            return Ok(self.verify_session().await);
        }
        Ok(Flow::Continue)
    }

    /// In a read-only session, a statement that could turn the database's read-only mode off
    /// is refused (whatever the rules said): the mode is what makes a write the classifier
    /// missed fail at the database.
    fn refuse_read_write(&self, text: &str, judged: &mut Judged) {
        if self.read_only.is_some()
            && judged.decision.action != Action::Deny
            && may_turn_off_read_only(text)
        {
            judged.force_deny("this session is read-only upstream (the rules allow this identity no writes); statements that could switch it to read-write are not allowed");
        }
    }

    /// In a session with masking, a statement that stores a computed value in server-side
    /// session state (a system variable set from an expression, `LAST_INSERT_ID(expr)`, ...)
    /// is refused: a later statement would read the value back with no masked column in sight
    /// (`SET @@timestamp = (SELECT …card…)`, then `SELECT UNIX_TIMESTAMP()`). See
    /// [`stores_computed_state`].
    fn refuse_computed_state(&self, text: &str, judged: &mut Judged) {
        if self.mask.is_none() || judged.decision.action == Action::Deny {
            return;
        }
        if let Some(why) = stores_computed_state(text) {
            judged.force_deny(&format!(
                "{why}; this session masks data, so a value stored this way could be read back unmasked"
            ));
        } else if let Some(what) =
            reads_server_state(text).or_else(|| airlock_sql::mysql::reaches_row_reports(text))
        {
            judged.force_deny(&format!(
                "{what} shows values from outside this statement's tables, which masking cannot follow; it is not available in a session that masks data"
            ));
        }
    }

    /// Whether the catalog snapshot masking uses still describes the relations a statement
    /// about to run names (see [`crate::catalog_check`]). Asks the upstream; a relation the
    /// snapshot knows that changed makes the session read the catalog again. `false` (mask
    /// every column) when a relation is new, or the check or the new read failed.
    async fn revalidate_catalog(&mut self, c: &airlock_core::Classification) -> bool {
        let Some(m) = self.mask.as_ref() else {
            return true;
        };
        if !m.masking.has_column_rules() {
            return true;
        }
        let relations = c.relations();
        if relations.is_empty() {
            return true;
        }
        let Some(check) = m.catalog.check(&relations) else {
            return false;
        };
        let rows = match crate::upstream::query_rows_on(&mut self.up, &mut self.up_buf, &check.sql)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "catalog check failed; the statement's columns are masked");
                return false;
            }
        };
        match m.catalog.drift(&check, &rows) {
            Drift::Same => true,
            Drift::Unknown => false,
            Drift::Changed => {
                let masking = m.masking.clone();
                let fresh = crate::load_catalog_on(&mut self.up, &mut self.up_buf, &masking).await;
                let Some(m) = self.mask.as_mut() else {
                    return false;
                };
                match fresh {
                    Ok(fresh) => {
                        m.catalog = Arc::new(fresh.keeping_unknown(&m.catalog));
                        m.stmts = StmtCache::default();
                        m.catalog.drift(&check, &rows) == Drift::Same
                    }
                    Err(e) => {
                        warn!(error = %e, "catalog read failed; the statement's columns are masked");
                        false
                    }
                }
            }
        }
    }

    /// After a command that may have changed the session's `sql_mode` (or, in a read-only
    /// session, its access mode): reads both back from the upstream on the same connection (the
    /// client never sees it). A mode our lexer does not support, or a session that is no longer
    /// read-only, ends the session: later statements could not be classified as the server
    /// will run them. Fail closed: a failed check ends it too.
    async fn verify_session(&mut self) -> Flow {
        if let Err(e) = crate::upstream::check_sql_mode_on(&mut self.up, &mut self.up_buf).await {
            return self.session_unsafe(&e.to_string()).await;
        }
        if let Some(var) = self.read_only {
            match crate::upstream::is_read_only_on(&mut self.up, &mut self.up_buf, var).await {
                Ok(true) => {}
                Ok(false) => {
                    return self
                        .session_unsafe("the upstream session is no longer read-only")
                        .await
                }
                Err(e) => return self.session_unsafe(&e.to_string()).await,
            }
        }
        Flow::Continue
    }

    /// Ends the session: the client gets an ERR as the answer to whatever it sends next (it
    /// has already received the answer to the last command), the upstream is closed.
    async fn session_unsafe(&mut self, why: &str) -> Flow {
        let message = format!("airlock: {why}; the session was closed");
        warn!(reason = %why, "session closed: unsafe upstream session state");
        self.send_err(1, 1105, "HY000", &message).await;
        let _ = self.client.shutdown().await;
        let _ = self.forward(&[COM_QUIT]).await;
        Flow::Close(message)
    }

    fn ctx_for(&mut self, seq: u64, started: Instant, text: &str, vouched: bool) -> AnswerCtx {
        AnswerCtx {
            stmt: self.mask.as_mut().map(|m| {
                if vouched {
                    m.stmt(text)
                } else {
                    m.opaque_stmt()
                }
            }),
            seq: Some(seq),
            started: Some(started),
            ..AnswerCtx::default()
        }
    }

    fn record_result(&self, seq: u64, started: Instant, o: &Outcome) {
        self.record_answer(seq, started, o, &mut AnswerCtx::default());
    }

    /// The result event (with masked counts) and the recording's last frame of a statement.
    fn record_answer(&self, seq: u64, started: Instant, o: &Outcome, ctx: &mut AnswerCtx) {
        let rows = if o.rows > 0 { o.rows } else { o.affected };
        self.session.record_result_masked(
            seq,
            Some(rows),
            o.error
                .as_ref()
                .map(|e| format!("{} ({})", e.code, e.sqlstate)),
            started.elapsed(),
            ctx.tally.take(),
        );
        if let Some(rec) = &self.recorder {
            match &o.error {
                Some(e) => {
                    let message = ctx.error_message.as_deref().unwrap_or(&e.message);
                    rec.error_after(seq, &e.sqlstate, message, Some(started.elapsed()));
                }
                None if ctx.recorded_sets == 0 => rec.complete(
                    seq,
                    &format!("OK, {} rows affected", o.affected),
                    Some(o.affected),
                    started.elapsed(),
                ),
                None => {}
            }
        }
    }

    /// `KILL [QUERY] <gateway id>`: on the upstream thread behind that id, over a separate
    /// connection with the held credential of the session it belongs to.
    async fn kill(
        &mut self,
        seq: u64,
        started: Instant,
        query_only: bool,
        id: u64,
    ) -> Result<Flow, RelayError> {
        let target = u32::try_from(id)
            .ok()
            .and_then(|id| self.kills.get(id, &self.session.identity().name));
        let Some(target) = target else {
            let e = ErrPacket {
                code: 1094,
                sqlstate: "HY000".into(),
                message: format!("Unknown thread id: {id}"),
            };
            self.send_err(1, e.code, &e.sqlstate, &e.message).await;
            self.record_result(
                seq,
                started,
                &Outcome {
                    error: Some(e),
                    ..Outcome::default()
                },
            );
            return Ok(Flow::Continue);
        };
        let sql = format!(
            "KILL {}{}",
            if query_only { "QUERY " } else { "" },
            target.thread_id
        );
        match crate::upstream::run_once(&target.upstream, &sql).await {
            Ok(Ok(_)) => {
                self.send_ok(0).await?;
                self.record_result(seq, started, &Outcome::default());
            }
            Ok(Err(e)) => {
                self.send_err(1, e.code, &e.sqlstate, &e.message).await;
                self.record_result(
                    seq,
                    started,
                    &Outcome {
                        error: Some(e),
                        ..Outcome::default()
                    },
                );
            }
            Err(e) => {
                self.send_err(1, 1105, "HY000", &format!("airlock: {e}"))
                    .await;
            }
        }
        Ok(Flow::Continue)
    }

    /// COM_INIT_DB and COM_FIELD_LIST: judged as the SQL they amount to.
    async fn judged_command(
        &mut self,
        payload: &[u8],
        text: &str,
        answer: Answer,
    ) -> Result<Flow, RelayError> {
        let (judged, _) = self.admit(text, false).await;
        let seq = self.session.next_seq();
        if let Err(flow) = self.record(seq, text, &judged).await {
            return Ok(flow);
        }
        if judged.decision.action != Action::Allow {
            self.deny(seq, &judged).await;
            return Ok(Flow::Continue);
        }
        let started = Instant::now();
        let mut ctx = AnswerCtx {
            seq: Some(seq),
            started: Some(started),
            ..AnswerCtx::default()
        };
        self.forward(payload).await?;
        let outcome = self.relay_answer(answer, &mut ctx).await?;
        self.record_answer(seq, started, &outcome, &mut ctx);
        Ok(Flow::Continue)
    }

    /// Judged at prepare time (like PostgreSQL's Parse); recorded at every execute.
    async fn prepare(&mut self, payload: &[u8], text: String) -> Result<Flow, RelayError> {
        let (judged, reviewed) = self.admit(&text, true).await;
        if judged.decision.action != Action::Allow {
            // A denial is recorded when it happens.
            let seq = self.session.next_seq();
            if let Err(flow) = self.record(seq, &text, &judged).await {
                return Ok(flow);
            }
            self.deny(seq, &judged).await;
            return Ok(Flow::Continue);
        }
        self.forward(payload).await?;
        let outcome = self
            .relay_answer(Answer::Prepare, &mut AnswerCtx::default())
            .await?;
        if let Some(id) = outcome.statement_id {
            self.prepared.insert(
                id,
                Prepared {
                    text: Arc::from(text.as_str()),
                    judged,
                    reviewed,
                    executed: false,
                },
            );
        }
        Ok(Flow::Continue)
    }

    async fn execute(&mut self, payload: &[u8]) -> Result<Flow, RelayError> {
        let id = Reader::new(payload.get(1..).unwrap_or_default(), "COM_STMT_EXECUTE")
            .u32()
            .unwrap_or(0);
        let Some(prep) = self.prepared.get_mut(&id) else {
            self.send_err(
                1,
                1243,
                "HY000",
                &format!("Unknown prepared statement handler ({id}) given to mysqld_stmt_execute"),
            )
            .await;
            return Ok(Flow::Continue);
        };
        let mut judged = prep.judged.clone();
        if prep.reviewed && prep.executed {
            judged.refused("airlock: the review approved one execution of this prepared statement; prepare it again to ask for another review");
        }
        prep.executed = true;
        let text = prep.text.clone();
        let seq = self.session.next_seq();
        if let Err(flow) = self.record(seq, &text, &judged).await {
            return Ok(flow);
        }
        if judged.decision.action != Action::Allow {
            self.deny(seq, &judged).await;
            return Ok(Flow::Continue);
        }
        let started = Instant::now();
        // Judged again here: the user variables it reads may have changed since the prepare,
        // and the catalog too.
        let vouched = self.revalidate_catalog(&judged.classification).await;
        let stmt = self.mask.as_mut().map(|m| {
            if vouched {
                m.stmt(&text)
            } else {
                m.opaque_stmt()
            }
        });
        let mut ctx = AnswerCtx {
            stmt,
            statement_id: Some(id),
            seq: Some(seq),
            started: Some(started),
            ..AnswerCtx::default()
        };
        if let Some(m) = self.mask.as_mut() {
            m.cursors.remove(&id);
        }
        self.forward(payload).await?;
        let outcome = self
            .relay_answer(Answer::Results { binary: true }, &mut ctx)
            .await?;
        self.record_answer(seq, started, &outcome, &mut ctx);
        if may_change_session(&text, &judged.classification) {
            return Ok(self.verify_session().await);
        }
        Ok(Flow::Continue)
    }

    /// `COM_STMT_FETCH`: rows of a cursor, in the binary format of the execute's result set.
    async fn fetch(&mut self, payload: &[u8]) -> Result<Flow, RelayError> {
        let id = Reader::new(payload.get(1..).unwrap_or_default(), "COM_STMT_FETCH")
            .u32()
            .unwrap_or(0);
        let mut ctx = AnswerCtx::default();
        if let Some(m) = &self.mask {
            match m.cursors.get(&id) {
                Some(plan) => ctx.fetch_plan = Some(plan.clone()),
                None => {
                    // Without the cursor's column types its rows cannot be decoded, so they
                    // cannot be masked.
                    self.send_err(1, 1105, "HY000", "airlock: this cursor's rows cannot be masked (its result set was not seen by the gateway); execute the statement again").await;
                    return Ok(Flow::Continue);
                }
            }
        }
        self.forward(payload).await?;
        self.relay_answer(Answer::UntilEof, &mut ctx).await?;
        Ok(Flow::Continue)
    }

    /// Relays the upstream's answer to the client until it is complete.
    async fn relay_answer(
        &mut self,
        answer: Answer,
        ctx: &mut AnswerCtx,
    ) -> Result<Outcome, RelayError> {
        self.running = ctx.seq.zip(ctx.started);
        let outcome = self.relay_answer_packets(answer, ctx).await;
        if outcome.is_ok() {
            self.running = None;
        }
        outcome
    }

    async fn relay_answer_packets(
        &mut self,
        answer: Answer,
        ctx: &mut AnswerCtx,
    ) -> Result<Outcome, RelayError> {
        if self.mask.is_some() || self.recorder.is_some() {
            return self.relay_packets(answer, ctx).await;
        }
        let mut outcome = Outcome::default();
        let mut state = match answer {
            Answer::UntilEof => State::Rows,
            _ => State::Start,
        };
        // Continuation frames of a packet longer than 16 MiB carry no type byte.
        let mut continuation = false;
        loop {
            let mut pos = 0usize;
            while !matches!(state, State::Done) {
                let Some((len, _seq)) = frame_header(self.up_buf.get(pos..).unwrap_or_default())
                else {
                    break;
                };
                if self.up_buf.len() < pos + 4 + len {
                    break;
                }
                let first = !continuation;
                continuation = len == MAX_FRAME;
                if first {
                    let frame = self.up_buf.get(pos + 4..pos + 4 + len).unwrap_or_default();
                    state = step(answer, state, frame, len, &mut outcome)?;
                }
                pos += 4 + len;
            }
            if pos > 0 {
                self.client
                    .write_all(self.up_buf.get(..pos).unwrap_or_default())
                    .await?;
                self.up_buf.advance(pos);
            }
            if matches!(state, State::Done) {
                return self.answer_done(outcome);
            }
            self.fill_up_buf().await?;
        }
    }

    fn answer_done(&self, outcome: Outcome) -> Result<Outcome, RelayError> {
        if !self.up_buf.is_empty() {
            return Err(RelayError::Upstream(
                "the upstream sent more than the answer to the command".into(),
            ));
        }
        Ok(outcome)
    }

    async fn fill_up_buf(&mut self) -> Result<(), RelayError> {
        if self.up_buf.capacity() - self.up_buf.len() < 8192 {
            self.up_buf.reserve(64 * 1024);
        }
        loop {
            // While a statement's answer is awaited the client is watched too: one that hangs
            // up gets its statement killed upstream (round-12 review: a query left running
            // after its client left exhausted the server). Bytes it sends meanwhile (pipelined
            // commands) wait in `client_buf`, up to one packet's worth.
            let watch_client = self.running.is_some() && self.client_buf.len() < self.max_packet;
            tokio::select! {
                n = self.up.read_buf(&mut self.up_buf) => {
                    if n? == 0 {
                        return Err(RelayError::Upstream(
                            "the upstream closed the connection".into(),
                        ));
                    }
                    return Ok(());
                }
                n = self.client.read_buf(&mut self.client_buf), if watch_client => {
                    if !matches!(n, Ok(read) if read > 0) {
                        return Err(RelayError::ClientGone);
                    }
                }
            }
        }
    }

    /// The command whose answer was awaited did not finish through the relay: it is killed
    /// upstream (over a separate connection, as `KILL` is) and recorded as interrupted.
    fn interrupt_running(&mut self, why: &str) {
        let Some((seq, started)) = self.running.take() else {
            return;
        };
        self.session.record_result_masked(
            seq,
            None,
            Some(format!("interrupted: {why}")),
            started.elapsed(),
            Default::default(),
        );
        let spec = self.session.upstream().clone();
        let sql = format!("KILL QUERY {}", self.thread_id);
        tokio::spawn(async move {
            let _ = crate::upstream::run_once(&spec, &sql).await;
        });
    }

    /// The answer packet by packet: masking, recording, re-framing.
    async fn relay_packets(
        &mut self,
        answer: Answer,
        ctx: &mut AnswerCtx,
    ) -> Result<Outcome, RelayError> {
        let mut outcome = Outcome::default();
        let mut state = match answer {
            Answer::UntilEof => State::Rows,
            _ => State::Start,
        };
        let mut continuation = false;
        // The state before the packet being read (packets may span reads and frames).
        let mut before = state;
        let mut pending = BytesMut::new();
        let mut out = BytesMut::new();
        let mut out_seq: Option<u8> = None;
        // A packet too large to mask was replaced by an ERR: the rest is drained.
        let mut withheld = false;
        let assemble = self.mask.is_some();
        // Without masking nothing is rewritten: frames go to the client as they arrived,
        // straight from the read buffer (no copy), and packets are only looked at.
        let passthrough = !assemble;
        loop {
            let mut pos = 0usize;
            while !matches!(state, State::Done) {
                let Some((len, seq)) = frame_header(self.up_buf.get(pos..).unwrap_or_default())
                else {
                    break;
                };
                if self.up_buf.len() < pos + 4 + len {
                    break;
                }
                let next_seq = out_seq.get_or_insert(seq);
                let first = !continuation;
                continuation = len == MAX_FRAME;
                let raw = self.up_buf.get(pos..pos + 4 + len).unwrap_or_default();
                let frame = raw.get(4..).unwrap_or_default();
                pos += 4 + len;
                if first {
                    before = state;
                    state = step(answer, state, frame, len, &mut outcome)?;
                }
                if withheld {
                    continue;
                }
                if first && !continuation {
                    let p = Packet {
                        answer,
                        before,
                        after: state,
                        payload: frame,
                        raw: Some((raw, seq)),
                    };
                    let rewritten = packet(
                        self.mask.as_mut(),
                        self.recorder.as_deref(),
                        self.record_rows,
                        &p,
                        ctx,
                    )?;
                    if !passthrough {
                        emit(&mut out, next_seq, &p, rewritten);
                    }
                    continue;
                }
                if passthrough {
                    // Not masked: a packet over 16 MiB passes frame by frame, unrecorded.
                    continue;
                }
                if pending.len() + len > self.max_packet {
                    withheld = true;
                    pending = BytesMut::new();
                    let e = ErrPacket {
                        code: 1153,
                        sqlstate: "08S01".into(),
                        message: format!("airlock: a result packet larger than {} bytes cannot be masked; the rest of the result was withheld", self.max_packet),
                    };
                    put_packet(
                        &mut out,
                        next_seq,
                        &err_payload(e.code, &e.sqlstate, &e.message),
                    );
                    ctx.tally.column("?withheld");
                    outcome.error = Some(e);
                    continue;
                }
                pending.extend_from_slice(frame);
                if !continuation {
                    let whole = std::mem::take(&mut pending);
                    let p = Packet {
                        answer,
                        before,
                        after: state,
                        payload: &whole,
                        raw: None,
                    };
                    let rewritten = packet(
                        self.mask.as_mut(),
                        self.recorder.as_deref(),
                        self.record_rows,
                        &p,
                        ctx,
                    )?;
                    emit(&mut out, next_seq, &p, rewritten);
                }
            }
            if passthrough && pos > 0 {
                self.client
                    .write_all(self.up_buf.get(..pos).unwrap_or_default())
                    .await?;
            }
            self.up_buf.advance(pos);
            if !out.is_empty() {
                self.client.write_all(&out).await?;
                out.clear();
            }
            if matches!(state, State::Done) {
                return self.answer_done(outcome);
            }
            self.fill_up_buf().await?;
        }
    }
}

/// Server state that shows values of masked columns without naming their tables (outside
/// review, round 6): user variables listed with their values (`information_schema.
/// user_variables`, `SHOW USER_VARIABLES`: a variable assigned a transformed card number reads
/// back there, past the lineage that masks `SELECT @v`), and InnoDB's lock and transaction
/// reports (`SHOW ENGINE INNODB STATUS` dumps locked rows in hex; `innodb_locks`, `data_locks`
/// list locked key values; `innodb_trx` other sessions' statements), and the process list. Matched on the lower-cased
/// text, so every spelling (and a mention in a string) counts: refused in masked sessions.
fn reads_server_state(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("user_variables") {
        return Some("the list of user variables");
    }
    // Round 7 (F4): other sessions' running statements with their literals (the held
    // credential is shared by every identity of the connection): `SHOW [FULL] PROCESSLIST`,
    // `information_schema.processlist`, `performance_schema.processlist`, `sys.processlist`,
    // `threads.processlist_info`.
    if lower.contains("processlist") {
        return Some("the process list (other sessions' statements)");
    }
    if ["innodb_lock", "innodb_trx", "data_lock"]
        .iter()
        .any(|t| lower.contains(t))
    {
        return Some("the InnoDB lock and transaction tables");
    }
    let engine_status = lower.contains("show")
        && lower.contains("status")
        && (lower.contains("engine") || lower.contains("innodb"));
    engine_status.then_some("SHOW ENGINE ... STATUS")
}

/// Whether a command that ran may have changed the session's `sql_mode` or access mode, so the
/// relay must read them back ([`Relay::verify_session`]). Statements the classifier parsed as
/// plain reads, writes, DDL, locks or transaction control cannot (stored routines they call run
/// under their own saved mode, restored on return); for the rest the text decides
/// ([`may_change_sql_mode`]), which also keeps the common path free of a second lexing pass.
fn may_change_session(text: &str, c: &airlock_core::Classification) -> bool {
    use airlock_core::Operation as Op;
    let plain = !c.unparsed
        && c.statements.iter().all(|s| {
            !s.dynamic_sql
                && !matches!(
                    s.operation,
                    Op::Set | Op::Call | Op::Do | Op::Other | Op::Unknown
                )
        });
    !plain && may_change_sql_mode(text)
}

/// One complete packet of an answer: followed, recorded, and rewritten where masking says so
/// (the rewritten payload is returned; see [`emit`]).
fn packet(
    mut mask: Option<&mut MaskState>,
    recorder: Option<&Recorder>,
    record_rows: u64,
    p: &Packet<'_>,
    ctx: &mut AnswerCtx,
) -> Result<Option<BytesMut>, RelayError> {
    let first = p.payload.first().copied();
    let short = p.payload.len() < MAX_FRAME;
    let mut rewritten: Option<BytesMut> = None;
    let kind = match (p.answer, p.before) {
        (_, State::Columns(_) | State::Defs { .. }) => Kind::Definition,
        (_, State::ColumnsEof | State::DefsEof { .. }) => Kind::Eof,
        (_, State::Start | State::Rows) | (Answer::Single | Answer::UntilEof, _)
            if first == Some(0xFF) =>
        {
            Kind::Err
        }
        (Answer::Results { .. }, State::Start) if first != Some(0x00) => Kind::ColumnCount,
        (Answer::Results { .. } | Answer::UntilEof, State::Rows)
            if short && crate::codec::is_eof(p.payload) =>
        {
            Kind::Eof
        }
        (Answer::Results { binary }, State::Rows) => Kind::Row { binary },
        (Answer::UntilEof, _) if ctx.fetch_plan.is_some() => Kind::Row { binary: true },
        _ => Kind::Other,
    };
    match kind {
        Kind::ColumnCount => {
            ctx.defs.clear();
            ctx.plan = None;
            ctx.set_rows = 0;
        }
        Kind::Definition => {
            if matches!(p.answer, Answer::Results { .. }) {
                ctx.defs.push(parse_column_def(p.payload).ok_or_else(|| {
                    RelayError::Upstream("a column definition that cannot be parsed".into())
                })?);
            }
        }
        Kind::Eof if matches!(p.before, State::ColumnsEof) => {
            let plan = Arc::new(match &mask {
                Some(m) => {
                    let stmt = ctx
                        .stmt
                        .clone()
                        .unwrap_or_else(|| Arc::new(StmtMask::opaque(&m.masking)));
                    Plan::new(&m.masking, &m.catalog, &stmt, &ctx.defs)
                }
                None => Plan::bare(&ctx.defs),
            });
            if let (Some(m), Some(id), State::Done) =
                (mask.as_deref_mut(), ctx.statement_id, p.after)
            {
                // The result stays open as a cursor: COM_STMT_FETCH reads it later.
                m.cursors.insert(id, plan.clone());
            }
            if let (Some(rec), Some(seq)) = (&recorder, ctx.seq) {
                let names: Vec<&str> = ctx.defs.iter().map(|d| d.name.as_str()).collect();
                let right: Vec<bool> = ctx.defs.iter().map(|d| plan.right_aligned(d)).collect();
                rec.columns_aligned(seq, &names, &right);
            }
            ctx.plan = Some(plan);
        }
        Kind::Eof => {
            if let (Some(rec), Some(seq), Some(_)) = (&recorder, ctx.seq, &ctx.plan) {
                if matches!(p.answer, Answer::Results { .. }) {
                    let took = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
                    rec.complete(seq, "SELECT", Some(ctx.set_rows), took);
                    ctx.recorded_sets += 1;
                }
            }
        }
        Kind::Err => {
            if let Some(m) = &mask {
                // A cursor's rows (COM_STMT_FETCH) come from a statement not at hand here.
                let touched = match &ctx.stmt {
                    Some(stmt) => stmt.touched(),
                    None => ctx.fetch_plan.is_some(),
                };
                let own_text = ctx
                    .stmt
                    .as_ref()
                    .is_some_and(|s| s.syntax_errors_quote_own_text());
                rewritten = mask_err(&m.masking, p.payload, touched, own_text, &mut ctx.tally);
            }
            let sent = rewritten.as_deref().unwrap_or(p.payload);
            ctx.error_message = Some(crate::codec::decode_err(sent).message);
        }
        Kind::Row { binary } => {
            let plan = if binary && matches!(p.answer, Answer::UntilEof) {
                ctx.fetch_plan.clone()
            } else {
                ctx.plan.clone()
            };
            if let (Some(m), Some(plan)) = (&mask, &plan) {
                let r = if binary {
                    mask_binary_row(&m.masking, plan, p.payload, &mut ctx.tally)
                } else {
                    mask_text_row(&m.masking, plan, p.payload, &mut ctx.tally)
                };
                rewritten = r.map_err(|_| {
                    RelayError::Upstream(
                        "a result row that cannot be parsed cannot be masked".into(),
                    )
                })?;
            } else if mask.is_some() {
                return Err(RelayError::Upstream(
                    "a result row without column definitions cannot be masked".into(),
                ));
            }
            ctx.set_rows += 1;
            if let (Some(rec), Some(seq), Some(plan)) = (&recorder, ctx.seq, &plan) {
                if ctx.set_rows <= record_rows {
                    let sent = rewritten.as_deref().unwrap_or(p.payload);
                    let values = if binary {
                        crate::mask::binary_row_values(plan, sent)
                    } else {
                        crate::mask::text_row_values(plan, sent)
                    };
                    if let Some(values) = values {
                        let refs: Vec<Option<&[u8]>> =
                            values.iter().map(|v| v.as_deref()).collect();
                        rec.row(seq, &refs);
                    }
                } else {
                    rec.row(seq, &[]);
                }
            }
        }
        Kind::Other => {}
    }
    Ok(rewritten)
}

/// Appends a packet to `out`: as received when it is unchanged and its sequence id still fits,
/// else re-framed.
fn emit(out: &mut BytesMut, out_seq: &mut u8, p: &Packet<'_>, rewritten: Option<BytesMut>) {
    match (rewritten, p.raw) {
        (Some(new), _) => put_packet(out, out_seq, &new),
        (None, Some((raw, seq))) if seq == *out_seq => {
            out.extend_from_slice(raw);
            *out_seq = seq.wrapping_add(1);
        }
        (None, _) => put_packet(out, out_seq, p.payload),
    }
}

/// A complete packet of an answer and where it stands in the grammar.
struct Packet<'a> {
    answer: Answer,
    before: State,
    after: State,
    payload: &'a [u8],
    /// The frame as received (header included) with its sequence id, when it is one frame.
    raw: Option<(&'a [u8], u8)>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    ColumnCount,
    Definition,
    Eof,
    Err,
    Row { binary: bool },
    Other,
}

/// One step of the answer grammar, on the first frame of a packet.
fn step(
    answer: Answer,
    state: State,
    p: &[u8],
    frame_len: usize,
    o: &mut Outcome,
) -> Result<State, RelayError> {
    let short = frame_len < MAX_FRAME;
    let first = p.first().copied();
    let bad = |what: &str| RelayError::Upstream(format!("unexpected {what}"));
    Ok(match (answer, state) {
        (_, State::Done) => State::Done,
        (Answer::Single, _) => {
            if first == Some(0xFF) {
                o.error = Some(decode_err(p));
            }
            State::Done
        }
        (Answer::Results { binary }, State::Start) => match first {
            Some(0x00) if short => {
                let (affected, status) =
                    decode_ok(p).map_err(|e| RelayError::Upstream(e.to_string()))?;
                o.affected += affected;
                if status & SERVER_MORE_RESULTS_EXISTS != 0 {
                    State::Start
                } else {
                    State::Done
                }
            }
            Some(0xFF) => {
                o.error = Some(decode_err(p));
                State::Done
            }
            Some(0xFB) => {
                // LOCAL INFILE request: never negotiated, so a server asking for a client file
                // is misbehaving. The session ends rather than answer it.
                return Err(bad(
                    "LOCAL INFILE request (airlock never allows client files)",
                ));
            }
            Some(_) => {
                let n = Reader::new(p, "column count")
                    .lenenc()
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                if n == 0 {
                    return Err(bad("column count"));
                }
                let _ = binary;
                State::Columns(n)
            }
            None => return Err(bad("empty packet")),
        },
        (Answer::Results { .. } | Answer::Prepare, State::Columns(n)) => {
            if n <= 1 {
                State::ColumnsEof
            } else {
                State::Columns(n - 1)
            }
        }
        (Answer::Results { binary }, State::ColumnsEof) => {
            if !is_eof(p) {
                return Err(bad("packet after the column definitions"));
            }
            let status = eof_status(p);
            if binary && status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                State::Done
            } else {
                State::Rows
            }
        }
        (Answer::Results { .. }, State::Rows) => {
            if short && is_eof(p) {
                if eof_status(p) & SERVER_MORE_RESULTS_EXISTS != 0 {
                    State::Start
                } else {
                    State::Done
                }
            } else if first == Some(0xFF) {
                o.error = Some(decode_err(p));
                State::Done
            } else {
                o.rows += 1;
                State::Rows
            }
        }
        (Answer::UntilEof, _) => {
            if short && is_eof(p) {
                State::Done
            } else if first == Some(0xFF) {
                o.error = Some(decode_err(p));
                State::Done
            } else {
                o.rows += 1;
                State::Rows
            }
        }
        (Answer::Prepare, State::Start) => match first {
            Some(0xFF) => {
                o.error = Some(decode_err(p));
                State::Done
            }
            Some(0x00) => {
                let mut r = Reader::new(p, "PREPARE_OK");
                let _ = r.u8();
                let id = r.u32().map_err(|e| RelayError::Upstream(e.to_string()))?;
                let columns = u64::from(r.u16().map_err(|e| RelayError::Upstream(e.to_string()))?);
                let params = u64::from(r.u16().map_err(|e| RelayError::Upstream(e.to_string()))?);
                o.statement_id = Some(id);
                next_defs(params, columns)
            }
            _ => return Err(bad("answer to COM_STMT_PREPARE")),
        },
        (Answer::Prepare, State::Defs { left, then }) => {
            if left <= 1 {
                State::DefsEof { then }
            } else {
                State::Defs {
                    left: left - 1,
                    then,
                }
            }
        }
        (Answer::Prepare, State::DefsEof { then }) => {
            if !is_eof(p) {
                return Err(bad("packet after the definitions"));
            }
            next_defs(then, 0)
        }
        (_, s) => return Err(bad(&format!("packet in state {s:?}"))),
    })
}

fn next_defs(first: u64, then: u64) -> State {
    if first > 0 {
        State::Defs { left: first, then }
    } else if then > 0 {
        State::Defs {
            left: then,
            then: 0,
        }
    } else {
        State::Done
    }
}

enum ClientReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

/// The next command packet (sequence id 0), or `None` when the client closed the connection.
async fn read_client(
    client: &mut NetStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<crate::codec::Packet>, ClientReadError> {
    loop {
        match split_packet(buf, max, Some(0)) {
            Ok(Some(p)) => return Ok(Some(p)),
            Ok(None) => {}
            Err(e) => return Err(ClientReadError::Frame(e)),
        }
        match client.read_buf(buf).await {
            Ok(0) => {
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ClientReadError::Frame(crate::codec::malformed(
                        "packet",
                        "the client closed the connection in the middle of a packet",
                    )))
                }
            }
            Ok(_) => {}
            Err(e) => return Err(ClientReadError::Io(e)),
        }
    }
}
