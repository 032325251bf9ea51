//! `[recording]`, `[[exporters]]` and the checkpoint keys of `[audit]`: what the audit trail
//! does beyond the log itself.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrailConfig {
    pub recording: RecordingSettings,
    pub exporters: Vec<ExporterSettings>,
    pub checkpoints: CheckpointSettings,
}

/// `[recording]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSettings {
    pub enabled: bool,
    /// Recordings of sessions that started more than this many days ago are deleted
    /// (`None`: kept forever). The audit log is never touched by retention.
    pub retention_days: Option<u32>,
    /// Rows kept per statement (the true row count is always recorded).
    pub max_rows: u64,
    pub max_bytes_per_statement: u64,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            enabled: true,
            retention_days: None,
            max_rows: 1000,
            max_bytes_per_statement: 1 << 20,
        }
    }
}

/// Signed checkpoints of the audit chain: `[audit] checkpoint_events`, `checkpoint_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSettings {
    pub every_events: u64,
    pub every_secs: u64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            every_events: 10_000,
            every_secs: 60,
        }
    }
}

/// `[[exporters]]`: a continuous audit exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterSettings {
    pub name: String,
    pub kind: ExporterKind,
    /// `jsonl` (the log lines as stored) or `ocsf`.
    pub format: String,
    /// Events per delivery.
    pub batch: usize,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExporterKind {
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: usize,
    },
    Stdout,
    Syslog {
        address: String,
        tcp: bool,
        facility: u8,
    },
    Webhook {
        url: String,
    },
}
