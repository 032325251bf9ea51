//! `[recording]`, `[[exporters]]`, and `[audit] checkpoint_events` / `checkpoint_interval`.

use super::{did_you_mean, entry_name, parse_duration, Report, Table};
use crate::trail::*;
use std::collections::HashMap;

const RECORDING_KEYS: &[&str] = &[
    "enabled",
    "retention_days",
    "max_rows",
    "max_bytes_per_statement",
];
const EXPORTER_KEYS: &[&str] = &[
    "name",
    "type",
    "format",
    "batch",
    "path",
    "max_bytes",
    "keep",
    "address",
    "transport",
    "facility",
    "url",
];
const EXPORTER_TYPES: &[&str] = &["file", "stdout", "syslog", "webhook"];

fn positive(r: &mut Report<'_>, t: &Table<'_, '_>, key: &str, max: i64) -> Option<u64> {
    let n = t.integer(r, key)?;
    if n.value < 1 || n.value > max {
        r.error(
            &n.span,
            format!("`{key}` in {} must be between 1 and {max}", t.what),
        );
        return None;
    }
    u64::try_from(n.value).ok()
}

pub(super) fn recording(r: &mut Report<'_>, t: &Table<'_, '_>) -> RecordingSettings {
    t.check_keys(r, RECORDING_KEYS);
    let mut s = RecordingSettings::default();
    if let Some(b) = t.bool(r, "enabled") {
        s.enabled = b;
    }
    if let Some(d) = positive(r, t, "retention_days", 100_000) {
        s.retention_days = u32::try_from(d).ok();
    }
    if let Some(n) = positive(r, t, "max_rows", 100_000_000) {
        s.max_rows = n;
    }
    if let Some(n) = positive(r, t, "max_bytes_per_statement", 1 << 40) {
        s.max_bytes_per_statement = n;
    }
    s
}

/// The checkpoint keys of an `[audit]` table (the other keys are read by `audit`).
pub(super) fn checkpoints(r: &mut Report<'_>, t: Option<&Table<'_, '_>>) -> CheckpointSettings {
    let mut s = CheckpointSettings::default();
    let Some(t) = t else { return s };
    if let Some(n) = positive(r, t, "checkpoint_events", 1 << 40) {
        s.every_events = n;
    }
    if let Some(d) = t.string(r, "checkpoint_interval") {
        match parse_duration(&d.value) {
            Ok(secs) if secs > 0 => s.every_secs = secs,
            Ok(_) => r.error(&d.span, "`checkpoint_interval` must be longer than 0s"),
            Err(e) => r.error(&d.span, format!("`checkpoint_interval`: {e}")),
        }
    }
    s
}

pub(super) fn exporters(r: &mut Report<'_>, tables: &[Table<'_, '_>]) -> Vec<ExporterSettings> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for t in tables {
        t.check_keys(r, EXPORTER_KEYS);
        let name = entry_name(r, t, "exporter", &mut seen);
        let owner = format!(
            "exporter `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let Some(kind) = t.required_string(r, "type") else {
            continue;
        };
        let format = t
            .string(r, "format")
            .map(|f| f.value)
            .unwrap_or_else(|| "jsonl".into());
        if format != "jsonl" && format != "ocsf" {
            r.error(
                &t.span,
                format!("{owner} format must be \"jsonl\" or \"ocsf\", not \"{format}\""),
            );
        }
        let batch = positive(r, t, "batch", 100_000).unwrap_or(500) as usize;
        let parsed = match kind.value.as_str() {
            "file" => t.path(r, "path").map(|p| ExporterKind::File {
                path: p.value,
                max_bytes: positive(r, t, "max_bytes", 1 << 50).unwrap_or(100 << 20),
                keep: positive(r, t, "keep", 1000).unwrap_or(10) as usize,
            }),
            "stdout" => Some(ExporterKind::Stdout),
            "syslog" => {
                let address = t.required_string(r, "address");
                let transport = t
                    .string(r, "transport")
                    .map(|s| s.value)
                    .unwrap_or_else(|| "udp".into());
                if transport != "udp" && transport != "tcp" {
                    r.error(
                        &t.span,
                        format!(
                            "{owner} transport must be \"udp\" or \"tcp\", not \"{transport}\""
                        ),
                    );
                }
                let facility = match t.integer(r, "facility") {
                    Some(f) if (0..=23).contains(&f.value) => f.value as u8,
                    Some(f) => {
                        r.error(&f.span, format!("{owner} facility must be 0..=23"));
                        13
                    }
                    None => 13,
                };
                address.map(|a| ExporterKind::Syslog {
                    address: a.value,
                    tcp: transport == "tcp",
                    facility,
                })
            }
            "webhook" => {
                let url = t.required_string(r, "url");
                if let Some(u) = &url {
                    if !(u.value.starts_with("http://") || u.value.starts_with("https://")) {
                        r.error(
                            &u.span,
                            format!("{owner} url must start with http:// or https://"),
                        );
                    }
                }
                url.map(|u| ExporterKind::Webhook { url: u.value })
            }
            other => {
                r.error(
                    &kind.span,
                    format!(
                        "{owner} type \"{other}\" is unknown{}; known: {}",
                        did_you_mean(other, EXPORTER_TYPES),
                        EXPORTER_TYPES.join(", ")
                    ),
                );
                None
            }
        };
        if kind.value == "file" && t.get("path").is_none() {
            r.error(&t.span, format!("{owner} of type \"file\" needs `path`"));
        }
        if let (Some(name), Some(kind)) = (name, parsed) {
            out.push(ExporterSettings {
                name,
                kind,
                format,
                batch,
                line: r.position(t.span.start).0,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::trail::*;

    fn load(text: &str) -> Result<crate::Config, String> {
        crate::load_str(text, "test.toml", &crate::SystemEnv).map_err(|e| e.to_string())
    }

    #[test]
    fn recording_exporters_and_checkpoints() {
        let c = load(
            r#"
[audit]
checkpoint_events = 500
checkpoint_interval = "30s"

[recording]
retention_days = 30
max_rows = 200

[[exporters]]
name = "siem"
type = "syslog"
address = "127.0.0.1:514"
transport = "tcp"
format = "ocsf"

[[exporters]]
name = "archive"
type = "file"
path = "/var/log/airlock/audit.jsonl"
max_bytes = 1000000

[[exporters]]
name = "hook"
type = "webhook"
url = "https://siem.example.com/ingest"
batch = 100
"#,
        )
        .unwrap();
        let t = &c.trail;
        assert_eq!(t.checkpoints.every_events, 500);
        assert_eq!(t.checkpoints.every_secs, 30);
        assert_eq!(t.recording.retention_days, Some(30));
        assert_eq!(t.recording.max_rows, 200);
        assert!(t.recording.enabled);
        assert_eq!(t.exporters.len(), 3);
        assert_eq!(
            t.exporters[0].kind,
            ExporterKind::Syslog {
                address: "127.0.0.1:514".into(),
                tcp: true,
                facility: 13
            }
        );
        assert_eq!(t.exporters[0].format, "ocsf");
        assert!(matches!(
            t.exporters[1].kind,
            ExporterKind::File {
                max_bytes: 1000000,
                keep: 10,
                ..
            }
        ));
        assert_eq!(t.exporters[2].batch, 100);
    }

    #[test]
    fn bad_exporters_are_errors_with_lines() {
        let e = load(
            r#"
[[exporters]]
name = "x"
type = "sylog"
address = "a:1"

[[exporters]]
name = "y"
type = "webhook"
url = "ftp://nope"
"#,
        )
        .unwrap_err();
        assert!(e.contains("did you mean") || e.contains("syslog"), "{e}");
        assert!(e.contains("http:// or https://"), "{e}");
        let e = load("[recording]\nmax_rows = 0\n").unwrap_err();
        assert!(e.contains("between 1"), "{e}");
    }
}
