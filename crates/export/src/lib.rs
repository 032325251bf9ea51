//! Continuous audit export: each exporter follows the audit log file on its own thread and
//! delivers events to one destination (JSON lines file with rotation, stdout, RFC 5424 syslog
//! over UDP or TCP, HTTP(S) webhook), as the log's own JSON lines or as OCSF ([`to_ocsf`]).
//!
//! # Guarantees
//!
//! - **Never blocks the data path.** Exporters only read the log file; they share no lock with
//!   `AuditLog::append`. A destination that is down only makes its exporter fall behind.
//! - **Never loses events; at-least-once.** The exporter's position (byte offset, seq and hash
//!   of the last delivered event) is stored in `data_dir/export/<name>.pos` (atomic replace)
//!   only after the destination took a batch. After a failure the batch is sent again (with
//!   exponential backoff, forever); after a restart the exporter resumes at its position. A
//!   batch delivered but not yet recorded as delivered (crash in between) is sent twice:
//!   receivers dedupe on `seq` (in every payload, and in the syslog structured data).
//! - Syslog has no acknowledgements: a batch counts as delivered when the UDP datagrams were
//!   sent, or when the TCP write returned and the receiver had not closed the connection.
//!   Use the webhook for end-to-end acknowledgement.

mod ocsf;
mod sinks;
mod tail;

pub use ocsf::{to_ocsf, OCSF_VERSION};
pub use tail::{LogRecord, LogTail, Position};

use sinks::{FileSink, Sink, StdoutSink, SyslogSink, WebhookSink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("exporter state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("exporter `{name}`: {reason}")]
    Config { name: String, reason: String },
}

impl ExportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What an exporter sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The audit log lines as stored (`{"seq","prev","hash","event"}`): verifiable downstream.
    Jsonl,
    /// One OCSF event per audit event.
    Ocsf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "jsonl" | "json" => Some(Format::Jsonl),
            "ocsf" => Some(Format::Ocsf),
            _ => None,
        }
    }

    /// Formats one record.
    pub fn render(self, r: &LogRecord) -> String {
        match self {
            Format::Jsonl => r.line.clone(),
            Format::Ocsf => to_ocsf(&r.value).to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    File {
        path: PathBuf,
        /// Rotate before the file would exceed this.
        max_bytes: u64,
        /// Rotated files kept (`path.1` … `path.<keep>`).
        keep: usize,
    },
    Stdout,
    Syslog {
        /// `host:port`.
        address: String,
        tcp: bool,
        /// 13 (log audit) by default.
        facility: u8,
    },
    Webhook {
        url: String,
    },
}

#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// Unique; names the position file.
    pub name: String,
    pub destination: Destination,
    pub format: Format,
    /// Events per delivery.
    pub batch: usize,
    /// The audit log to follow.
    pub log_path: PathBuf,
    /// Where position files live (`data_dir/export`).
    pub state_dir: PathBuf,
    /// How often to look for new events when caught up.
    pub poll: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Connect / request timeout of network destinations.
    pub timeout: Duration,
}

impl ExporterConfig {
    pub fn new(name: &str, destination: Destination, log_path: &Path, state_dir: &Path) -> Self {
        ExporterConfig {
            name: name.to_owned(),
            destination,
            format: Format::Jsonl,
            batch: 500,
            log_path: log_path.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            poll: Duration::from_millis(250),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn position_path(&self) -> PathBuf {
        let safe: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.state_dir.join(format!("{safe}.pos"))
    }
}

/// Counters of one exporter.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Events delivered (with repeats after a failure counted once per delivery).
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    /// Seq of the last acknowledged event.
    pub acked_seq: AtomicU64,
}

/// A running exporter; stops (without losing its position) when shut down or dropped.
pub struct ExporterHandle {
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    stats: Arc<ExportStats>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ExporterHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts an exporter thread. Fails only on a bad configuration or unreadable state.
pub fn spawn(cfg: ExporterConfig) -> Result<ExporterHandle, ExportError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| ExportError::io(&cfg.state_dir, e))?;
    let position = Position::load(&cfg.position_path())?;
    let sink = make_sink(&cfg)?;
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let stats = Arc::new(ExportStats::default());
    stats.acked_seq.store(position.seq, Ordering::Relaxed);
    let thread = {
        let stop = Arc::clone(&stop);
        let stats = Arc::clone(&stats);
        let thread_cfg = cfg.clone();
        std::thread::Builder::new()
            .name(format!("export-{}", cfg.name))
            .spawn(move || run(thread_cfg, position, sink, &stop, &stats))
            .map_err(|e| ExportError::io(&cfg.state_dir, e))?
    };
    Ok(ExporterHandle {
        name: cfg.name,
        stop,
        stats,
        thread: Some(thread),
    })
}

fn make_sink(cfg: &ExporterConfig) -> Result<Box<dyn Sink>, ExportError> {
    let bad = |reason: String| ExportError::Config {
        name: cfg.name.clone(),
        reason,
    };
    Ok(match &cfg.destination {
        Destination::File {
            path,
            max_bytes,
            keep,
        } => Box::new(FileSink {
            path: path.clone(),
            max_bytes: *max_bytes,
            keep: *keep,
            file: None,
        }),
        Destination::Stdout => Box::new(StdoutSink),
        Destination::Syslog {
            address,
            tcp,
            facility,
        } => {
            if *facility > 23 {
                return Err(bad(format!("syslog facility {facility} is not 0..=23")));
            }
            Box::new(SyslogSink {
                address: address.clone(),
                tcp: *tcp,
                facility: *facility,
                hostname: sinks::hostname(),
                app: "airlock".into(),
                udp: None,
                stream: None,
                timeout: cfg.timeout,
            })
        }
        Destination::Webhook { url } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(format!(
                    "webhook url `{url}` must be http:// or https://"
                )));
            }
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(cfg.timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .user_agent(concat!("airlock-export/", env!("CARGO_PKG_VERSION")))
                .build()
                .into();
            Box::new(WebhookSink {
                url: url.clone(),
                agent,
            })
        }
    })
}

/// Waits up to `d`; true if asked to stop.
fn wait(stop: &(Mutex<bool>, Condvar), d: Duration) -> bool {
    let guard = lock(&stop.0);
    let (guard, _) = stop
        .1
        .wait_timeout_while(guard, d, |s| !*s)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *guard
}

fn run(
    cfg: ExporterConfig,
    mut position: Position,
    mut sink: Box<dyn Sink>,
    stop: &(Mutex<bool>, Condvar),
    stats: &ExportStats,
) {
    let pos_path = cfg.position_path();
    let mut tail = LogTail::new(&cfg.log_path, &position);
    let mut last_error: Option<String> = None;
    let mut names = SessionNames::default();
    loop {
        if *lock(&stop.0) {
            return;
        }
        let batch = match tail.read(cfg.batch.max(1)) {
            Ok(b) => b,
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(&msg) {
                    tracing::error!(exporter = %cfg.name, error = %msg, "cannot read the audit log");
                }
                last_error = Some(msg);
                tail.rewind(&position);
                if wait(stop, cfg.max_backoff.min(Duration::from_secs(5))) {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            if wait(stop, cfg.poll) {
                return;
            }
            continue;
        }
        check_continuity(&cfg.name, &position, &batch);
        let payloads: Vec<String> = batch
            .iter()
            .map(|r| render(cfg.format, r, &mut names))
            .collect();
        let mut attempt = 0u32;
        loop {
            match sink.send(&batch, &payloads) {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::info!(exporter = %cfg.name, attempts = attempt + 1, "audit export delivering again");
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(exporter = %cfg.name, error = %e, attempt, "audit export failed; will retry");
                    }
                    let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
                    let delay = cfg
                        .initial_backoff
                        .saturating_mul(factor)
                        .min(cfg.max_backoff);
                    if wait(stop, delay) {
                        return;
                    }
                }
            }
        }
        let Some(last) = batch.last() else {
            continue;
        };
        position = Position {
            offset: last.end_offset,
            seq: last.seq,
            hash: last.hash.clone(),
        };
        if let Err(e) = position.store(&pos_path) {
            // Delivery happened; failing to remember it only means sending it again later.
            tracing::error!(exporter = %cfg.name, error = %e, "cannot store the export position");
        }
        stats
            .delivered
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.acked_seq.store(last.seq, Ordering::Relaxed);
        last_error = None;
    }
}

/// Warns (does not stop) when the events read do not continue the chain: the SIEM gets what
/// is in the file either way, and `airlock audit verify` says exactly what broke.
fn check_continuity(name: &str, position: &Position, batch: &[LogRecord]) {
    let mut seq = position.seq;
    let mut hash = position.hash.as_str();
    for r in batch {
        let prev = r
            .value
            .get("prev")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let linked = seq == 0 || (r.seq == seq + 1 && (hash.is_empty() || prev == hash));
        if !linked {
            tracing::warn!(
                exporter = name,
                seq = r.seq,
                after = seq,
                "exported audit events do not chain; run `airlock audit verify`"
            );
        }
        seq = r.seq;
        hash = &r.hash;
    }
}

/// Identity and connection of the open sessions seen so far (removed at `session_end`), so
/// that the OCSF form of a `command_result` that names only its session and statement (its
/// command carries the identity and connection) still has its actor and database. JSON lines
/// are exported exactly as stored.
#[derive(Default)]
struct SessionNames(std::collections::HashMap<String, (serde_json::Value, serde_json::Value)>);

impl SessionNames {
    /// Notes what `r` says about its session; for a `command_result` without identity or
    /// connection, the record's value with them filled in from its session.
    fn fill(&mut self, r: &LogRecord) -> Option<serde_json::Value> {
        let ev = r.value.get("event")?;
        let sid = ev.get("session_id")?.as_str()?;
        match ev.get("kind")?.as_str()? {
            "session_start" | "command" => {
                if let (Some(i), Some(c)) = (ev.get("identity"), ev.get("connection")) {
                    if !self.0.contains_key(sid) {
                        self.0.insert(sid.to_owned(), (i.clone(), c.clone()));
                    }
                }
                None
            }
            "session_end" => {
                self.0.remove(sid);
                None
            }
            "command_result" if ev.get("identity").is_none() || ev.get("connection").is_none() => {
                let (i, c) = self.0.get(sid)?;
                let mut v = r.value.clone();
                let e = v.get_mut("event")?.as_object_mut()?;
                e.entry("identity").or_insert_with(|| i.clone());
                e.entry("connection").or_insert_with(|| c.clone());
                Some(v)
            }
            _ => None,
        }
    }
}

fn render(format: Format, r: &LogRecord, names: &mut SessionNames) -> String {
    let filled = names.fill(r);
    match (format, filled) {
        (Format::Ocsf, Some(v)) => to_ocsf(&v).to_string(),
        _ => format.render(r),
    }
}

/// The smallest seq every exporter in `names` acknowledged (from their position files in
/// `state_dir`; an exporter that never delivered counts as 0): what audit retention may
/// remove up to. `None` when there is no exporter.
pub fn min_acknowledged(state_dir: &Path, names: &[String]) -> Result<Option<u64>, ExportError> {
    let mut min: Option<u64> = None;
    for name in names {
        let cfg = ExporterConfig::new(name, Destination::Stdout, Path::new(""), state_dir);
        let seq = Position::load(&cfg.position_path())?.seq;
        min = Some(min.map_or(seq, |m| m.min(seq)));
    }
    Ok(min)
}

/// Exports every event of `log_path` at or after `since_us` to `out` (the CLI's
/// `airlock audit export`), streaming.
pub fn export_file(
    log_path: &Path,
    since_us: Option<i64>,
    format: Format,
    out: &mut dyn std::io::Write,
) -> Result<u64, ExportError> {
    let mut tail = LogTail::new(log_path, &Position::default());
    let mut names = SessionNames::default();
    let mut n = 0;
    loop {
        let batch = tail.read(1000)?;
        if batch.is_empty() {
            return Ok(n);
        }
        for r in &batch {
            let ts = r
                .value
                .pointer("/event/ts_us")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            if since_us.is_some_and(|s| ts < s) {
                continue;
            }
            writeln!(out, "{}", render(format, r, &mut names))
                .map_err(|e| ExportError::io(log_path, e))?;
            n += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: u64, event: serde_json::Value) -> LogRecord {
        let value = json!({"seq": seq, "prev": "00", "hash": "ab", "event": event});
        LogRecord {
            seq,
            hash: "ab".into(),
            line: value.to_string(),
            value,
            end_offset: 0,
        }
    }

    #[test]
    fn retention_may_remove_up_to_what_every_exporter_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(min_acknowledged(dir.path(), &[]).unwrap(), None);
        let names = vec!["siem".to_string(), "web hook".to_string()];
        // Neither delivered anything yet.
        assert_eq!(min_acknowledged(dir.path(), &names).unwrap(), Some(0));
        for (name, seq) in [("siem", 120), ("web hook", 75)] {
            let cfg = ExporterConfig::new(name, Destination::Stdout, Path::new(""), dir.path());
            Position {
                offset: 0,
                seq,
                hash: String::new(),
            }
            .store(&cfg.position_path())
            .unwrap();
        }
        assert_eq!(min_acknowledged(dir.path(), &names).unwrap(), Some(75));
    }

    #[test]
    fn a_result_naming_only_its_session_gets_the_sessions_actor_in_ocsf() {
        let mut names = SessionNames::default();
        let cmd = record(
            1,
            json!({"ts_us": 1, "kind": "command", "session_id": "s-1", "identity": "claude-agent",
                   "connection": "pg-prod", "command": {"seq": 1, "text": "select 1"}}),
        );
        let res = record(
            2,
            json!({"ts_us": 2, "kind": "command_result", "session_id": "s-1",
                   "command": {"seq": 1, "rows": 1}}),
        );
        render(Format::Ocsf, &cmd, &mut names);
        let ocsf: serde_json::Value =
            serde_json::from_str(&render(Format::Ocsf, &res, &mut names)).unwrap();
        let full: serde_json::Value = serde_json::from_str(&render(
            Format::Ocsf,
            &record(
                2,
                json!({"ts_us": 2, "kind": "command_result", "session_id": "s-1",
                       "identity": "claude-agent", "connection": "pg-prod",
                       "command": {"seq": 1, "rows": 1}}),
            ),
            &mut SessionNames::default(),
        ))
        .unwrap();
        assert_eq!(ocsf, full);
        // JSON lines stay exactly as stored.
        assert_eq!(render(Format::Jsonl, &res, &mut names), res.line);
    }
}
