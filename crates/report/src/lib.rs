//! The access-review report: for each identity (agents first) and a period, the connections it
//! may reach and through what, and what it actually did there: sessions, commands by operation,
//! objects read and written, values returned masked, commands denied (by which rule) and
//! approved (by whom, when), access grants; then findings with evidence (session ids and audit
//! sequence numbers) and recommendations: unused grants, write access used only for reads,
//! inactive identities, stale tokens, agents that were denied or needed reviews, rules that
//! never matched, sensitive tables read unmasked by exempt groups.
//!
//! Pure aggregation: [`Aggregator`] takes the config, the compiled rules, a period, a filter
//! and "now", and one audit event at a time in log order (streamed by [`read_log`]); memory
//! grows with identities × connections, not with events. Renderers: [`render`].
//! Recertification decisions and the config diffs for revokes live in [`recert`].

mod aggregate;
mod model;
pub mod recert;
pub mod render;
pub mod time;

pub use aggregate::{build, Aggregator, Filter, Options, TokenInfo};
pub use model::*;
pub use recert::{RecertError, RecertStore, Recertification, Verdict};

use airlock_config::{Config, SecretSource};
use airlock_core::{Identity, IdentityKind};
use airlock_store::AuditEvent;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One line of the audit log; `prev` and `hash` are not needed here (`airlock audit verify`
/// checks the chain).
#[derive(serde::Deserialize)]
struct LogLine {
    seq: u64,
    event: AuditEvent,
}

/// Streams the audit trail at `path` (every segment, compressed ones included) into `agg`,
/// one line at a time. A missing log is an empty history. Unreadable lines are counted (the
/// report shows how many), not fatal.
pub fn read_log(path: &Path, agg: &mut Aggregator<'_>) -> Result<(), ReportError> {
    let io = |e: airlock_store::StoreError| ReportError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    };
    let mut reader =
        airlock_store::segments::Reader::open(path, airlock_store::segments::Start::Beginning)
            .map_err(io)?;
    while let Some(line) = reader.next_line().map_err(io)? {
        if line.bytes.is_empty() {
            continue;
        }
        match serde_json::from_slice::<LogLine>(line.bytes) {
            Ok(l) => agg.push(l.seq, &l.event),
            Err(_) => agg.unreadable(),
        }
    }
    Ok(())
}

/// Builds the report from the audit log file.
pub fn generate(opts: Options<'_>, log: &Path) -> Result<Report, ReportError> {
    let mut agg = Aggregator::new(opts);
    read_log(log, &mut agg)?;
    Ok(agg.finish())
}

/// What can be known about each account's token without reading it: where it comes from and,
/// for a token file, when it last changed (its modification time). Relative token paths are
/// tried as given, then next to the config file.
pub fn token_info(config: &Config) -> BTreeMap<String, TokenInfo> {
    let config_dir = Path::new(&config.origin).parent().map(Path::to_path_buf);
    config
        .service_accounts
        .iter()
        .map(|sa| {
            let last_rotated_us = match &sa.token.source {
                SecretSource::File(p) => {
                    let candidates = [Some(p.clone()), config_dir.as_ref().map(|d| d.join(p))];
                    candidates
                        .into_iter()
                        .flatten()
                        .find_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_micros()).ok())
                }
                SecretSource::Env(_) => None,
            };
            (
                sa.name.clone(),
                TokenInfo {
                    source: sa.token.source.to_string(),
                    last_rotated_us,
                },
            )
        })
        .collect()
}

/// Whether `who` is a human reviewer: a member of `[reviews] access_reviewers` or of any
/// rule's `reviewers`. The API lets reviewers (and the admin, auditor and reviewer roles) read
/// access reviews and record recertifications; the report shows everyone's activity, so agents
/// and service accounts in a reviewer group still may not.
pub fn is_human_reviewer(who: &Identity, config: &Config) -> bool {
    who.kind == IdentityKind::Human
        && config
            .reviews
            .access_reviewers
            .iter()
            .chain(config.rules.iter().flat_map(|r| r.reviewers.iter()))
            .any(|g| who.in_group(g))
}
