//! The audit trail around the log: signed checkpoints, continuous exporters, the session
//! recording service and its retention. Started by `serve`, each on its own thread, none on
//! the data path.

use airlock_config::{Config, ExporterKind};
use airlock_export::{Destination, ExporterConfig, ExporterHandle, Format};
use airlock_record::{RecordingConfig, Recordings};
use airlock_store::{
    AuditEvent, AuditLog, CheckpointKey, CheckpointOptions, CheckpointerHandle, EventKind,
};
use anyhow::Context;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tracing::{error, info};

/// How often old recordings are looked for.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

pub struct Trail {
    checkpointer: Option<CheckpointerHandle>,
    exporters: Vec<ExporterHandle>,
    /// The recording service; `None` when `[recording] enabled = false`. The PostgreSQL
    /// relay starts one `Recorder` per session from it.
    pub recordings: Option<Recordings>,
    retention: Option<Retention>,
    audit_retention: Option<Retention>,
}

/// The retention thread and the flag that stops it.
type Retention = (Arc<(Mutex<bool>, Condvar)>, std::thread::JoinHandle<()>);

pub fn recordings_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("recordings")
}

pub fn start(config: &Config, audit: &AuditLog) -> anyhow::Result<Trail> {
    let data_dir = &config.gateway.data_dir;
    let key = CheckpointKey::load_or_create(data_dir).context("loading the audit signing key")?;
    info!(public_key = %key.public_hex(), "audit checkpoints are signed with this key (also in data_dir/audit.pub)");
    let cp = &config.trail.checkpoints;
    let checkpointer = airlock_store::spawn_checkpointer(
        audit.clone(),
        key,
        CheckpointOptions {
            every_events: cp.every_events,
            every: Duration::from_secs(cp.every_secs),
        },
    )
    .context("starting the audit checkpointer")?;

    let mut exporters = Vec::new();
    for e in &config.trail.exporters {
        let destination = match &e.kind {
            ExporterKind::File {
                path,
                max_bytes,
                keep,
            } => Destination::File {
                path: path.clone(),
                max_bytes: *max_bytes,
                keep: *keep,
            },
            ExporterKind::Stdout => Destination::Stdout,
            ExporterKind::Syslog {
                address,
                tcp,
                facility,
            } => Destination::Syslog {
                address: address.clone(),
                tcp: *tcp,
                facility: *facility,
            },
            ExporterKind::Webhook { url } => Destination::Webhook { url: url.clone() },
        };
        let mut cfg = ExporterConfig::new(
            &e.name,
            destination,
            &config.audit.path,
            &data_dir.join("export"),
        );
        cfg.format = Format::parse(&e.format).unwrap_or(Format::Jsonl);
        cfg.batch = e.batch;
        exporters.push(
            airlock_export::spawn(cfg)
                .with_context(|| format!("starting the audit exporter `{}`", e.name))?,
        );
    }

    let rec = &config.trail.recording;
    let mut recordings = None;
    let mut retention = None;
    if rec.enabled {
        let dir = recordings_dir(data_dir);
        let mut cfg = RecordingConfig::new(&dir);
        cfg.max_rows = rec.max_rows;
        cfg.max_bytes_per_statement = rec.max_bytes_per_statement;
        // A recording that cannot be written (disk full, out of descriptors) is an audit
        // event: never lost silently.
        let failures = audit.clone();
        let hook: airlock_record::FailureHook = std::sync::Arc::new(move |path, error| {
            let mut ev = airlock_store::AuditEvent::new(airlock_store::EventKind::Other);
            ev.session_id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .map(str::to_owned);
            ev.detail = Some(serde_json::json!({
                "recording_failed": path.display().to_string(),
                "error": error,
            }));
            failures.append_deferred(ev);
        });
        recordings = Some(
            Recordings::start_with_hook(cfg, Some(hook))
                .context("starting the session recording writer")?,
        );
        if let Some(days) = rec.retention_days {
            retention = Some(spawn_retention(dir, days, audit.clone())?);
        }
    }
    let audit_retention = match config.audit.retention_secs {
        Some(secs) => Some(spawn_audit_retention(
            audit.clone(),
            Duration::from_secs(secs),
            data_dir.join("export"),
            config
                .trail
                .exporters
                .iter()
                .map(|e| e.name.clone())
                .collect(),
        )?),
        None => None,
    };
    Ok(Trail {
        checkpointer: Some(checkpointer),
        exporters,
        recordings,
        retention,
        audit_retention,
    })
}

/// Deletes expired recordings now and then every hour, recording each deletion as an audit
/// event (the log itself is never shortened, so the chain stays whole).
fn spawn_retention(
    dir: std::path::PathBuf,
    days: u32,
    audit: AuditLog,
) -> anyhow::Result<Retention> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("recording-retention".into())
        .spawn(move || loop {
            match airlock_record::remove_older_than(&dir, days, AuditEvent::now_us()) {
                Ok(report) if !report.days.is_empty() => {
                    let mut ev = AuditEvent::new(EventKind::Other);
                    ev.detail = Some(serde_json::json!({"recording_retention": {
                        "retention_days": days, "deleted_days": report.days,
                        "files": report.files, "bytes": report.bytes,
                    }}));
                    if let Err(e) = audit.append(&[ev]) {
                        error!(error = %e, "cannot audit the deletion of expired recordings");
                    }
                    info!(files = report.files, "deleted expired session recordings");
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "recording retention failed; will retry"),
            }
            let (flag, cv) = &*thread_stop;
            let guard = flag
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (guard, _) = cv
                .wait_timeout_while(guard, RETENTION_EVERY, |s| !*s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *guard {
                return;
            }
        })
        .context("starting recording retention")?;
    Ok((stop, thread))
}

/// How often closed audit segments are checked against `[audit] retention`.
const AUDIT_RETENTION_EVERY: Duration = Duration::from_secs(600);

/// Removes closed audit segments older than `max_age` that every exporter acknowledged, now
/// and then every ten minutes; each removal is an `audit_retention` event (written by
/// `AuditLog::apply_retention` before it deletes anything).
fn spawn_audit_retention(
    audit: AuditLog,
    max_age: Duration,
    export_dir: std::path::PathBuf,
    exporters: Vec<String>,
) -> anyhow::Result<Retention> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("audit-retention".into())
        .spawn(move || loop {
            // No exporter: nothing to wait for. An unreadable position: remove nothing.
            let acked = if exporters.is_empty() {
                Ok(None)
            } else {
                airlock_export::min_acknowledged(&export_dir, &exporters)
                    .map(|m| Some(m.unwrap_or(0)))
            };
            match acked {
                Ok(acked) => {
                    match audit.apply_retention(max_age, acked, std::time::SystemTime::now()) {
                        Ok(Some(r)) => info!(
                            segments = r.segments,
                            bytes = r.bytes,
                            first_seq = r.first_seq,
                            last_seq = r.last_seq,
                            event = r.event_seq,
                            "removed audit segments past [audit] retention"
                        ),
                        Ok(None) => {}
                        Err(e) => error!(error = %e, "audit retention failed; will retry"),
                    }
                }
                Err(e) => error!(error = %e, "cannot read the exporters' positions; audit retention skipped"),
            }
            let (flag, cv) = &*thread_stop;
            let guard = flag
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (guard, _) = cv
                .wait_timeout_while(guard, AUDIT_RETENTION_EVERY, |s| !*s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *guard {
                return;
            }
        })
        .context("starting audit retention")?;
    Ok((stop, thread))
}

impl Trail {
    /// Final checkpoint, then stops everything (exporters keep their positions).
    pub fn shutdown(mut self) {
        if let Some(r) = self.recordings.take() {
            r.flush();
        }
        if let Some(cp) = self.checkpointer.take() {
            cp.shutdown();
        }
        for e in self.exporters.drain(..) {
            e.shutdown();
        }
        for (stop, thread) in [self.retention.take(), self.audit_retention.take()]
            .into_iter()
            .flatten()
        {
            *stop
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            stop.1.notify_all();
            let _ = thread.join();
        }
    }
}
