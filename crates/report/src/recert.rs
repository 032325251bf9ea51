//! Recertification: a reviewer marks each grant `keep` or `revoke` with a comment. Decisions
//! are kept in `data_dir/recertifications.json` (rewritten atomically) and audited by the
//! gateway. Config is the source of truth, so a `revoke` of a config-defined grant comes with
//! the change to make, as a unified diff of the TOML file; airlock never edits the file itself.

use crate::aggregate::standing_via;
use airlock_config::Config;
use airlock_core::IdentityKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const RECERTIFICATIONS_FILE: &str = "recertifications.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Keep,
    Revoke,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "keep" => Some(Verdict::Keep),
            "revoke" => Some(Verdict::Revoke),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Keep => "keep",
            Verdict::Revoke => "revoke",
        }
    }
}

/// One reviewer's decision on one grant (identity × connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recertification {
    pub identity: String,
    pub connection: String,
    pub decision: Verdict,
    pub comment: String,
    pub reviewer: String,
    pub at_us: i64,
    /// How the identity reached the connection when the decision was made.
    pub via: Vec<String>,
    /// For `revoke`: the config change that carries it out, as a unified diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_diff: Option<String>,
    /// What the diff does, or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The audit event that records the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecertError {
    #[error("identity `{0}` is not in the configuration")]
    UnknownIdentity(String),
    #[error("connection `{0}` is not in the configuration")]
    UnknownConnection(String),
    #[error("a recertification needs a comment saying why")]
    NoComment,
    #[error("`{0}` cannot recertify their own access")]
    SelfReview(String),
    #[error("{path} is damaged: {source}")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    decisions: Vec<Recertification>,
}

/// The decisions file. Writers in one process are serialized; the gateway is the only writer.
pub struct RecertStore {
    path: PathBuf,
}

static WRITE_LOCK: Mutex<()> = Mutex::new(());

impl RecertStore {
    pub fn new(data_dir: &Path) -> Self {
        RecertStore {
            path: data_dir.join(RECERTIFICATIONS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every decision, oldest first; none when the file does not exist yet.
    pub fn load(&self) -> Result<Vec<Recertification>, RecertError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<Persisted>(&bytes)
                .map(|p| p.decisions)
                .map_err(|source| RecertError::Damaged {
                    path: self.path.clone(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(RecertError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Adds a decision: the whole file is written to a temporary file, synced and renamed over
    /// the old one, so a crash leaves either the old or the new list, never half of one.
    pub fn append(&self, decision: Recertification) -> Result<(), RecertError> {
        let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut decisions = self.load()?;
        decisions.push(decision);
        let bytes = serde_json::to_vec_pretty(&Persisted { decisions }).unwrap_or_default();
        let tmp = self.path.with_extension("json.tmp");
        let io = |source| RecertError::Io {
            path: self.path.clone(),
            source,
        };
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

/// A reviewer's decision on one grant, before it is validated.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub identity: &'a str,
    pub connection: &'a str,
    pub decision: Verdict,
    pub comment: &'a str,
    pub reviewer: &'a str,
}

/// Validates a decision and, for `revoke`, works out the config change. `config_text` is the
/// current text of the config file (`None` for the embedded default: nothing to diff).
pub fn prepare(
    config: &Config,
    config_text: Option<&str>,
    ask: Ask<'_>,
    now_us: i64,
) -> Result<Recertification, RecertError> {
    let Ask {
        identity,
        connection,
        decision,
        comment,
        reviewer,
    } = ask;
    if comment.trim().is_empty() {
        return Err(RecertError::NoComment);
    }
    if reviewer == identity {
        return Err(RecertError::SelfReview(reviewer.to_owned()));
    }
    let account = config
        .service_account(identity)
        .ok_or_else(|| RecertError::UnknownIdentity(identity.to_owned()))?;
    let conn = config
        .connection(connection)
        .ok_or_else(|| RecertError::UnknownConnection(connection.to_owned()))?;
    let via = standing_via(&account.identity(), Some(account), conn);
    let (config_diff, note) = match decision {
        Verdict::Keep => (None, None),
        Verdict::Revoke => {
            let plan = revoke_plan(config, config_text, identity, connection);
            (plan.diff, Some(plan.note))
        }
    };
    Ok(Recertification {
        identity: identity.to_owned(),
        connection: connection.to_owned(),
        decision,
        comment: comment.trim().to_owned(),
        reviewer: reviewer.to_owned(),
        at_us: now_us,
        via,
        config_diff,
        note,
        audit_seq: None,
    })
}

/// The config change that removes `identity`'s standing access to `connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokePlan {
    pub diff: Option<String>,
    pub note: String,
}

pub fn revoke_plan(
    config: &Config,
    config_text: Option<&str>,
    identity: &str,
    connection: &str,
) -> RevokePlan {
    let none = |note: String| RevokePlan { diff: None, note };
    let (Some(account), Some(conn)) = (
        config.service_account(identity),
        config.connection(connection),
    ) else {
        return none(format!(
            "`{identity}` or `{connection}` is not defined in the config; nothing to change there"
        ));
    };
    let via = standing_via(&account.identity(), Some(account), conn);
    if via.is_empty() {
        return none(format!(
            "`{identity}` cannot reach `{connection}` through the config (any access came from an access review, which ends by itself); nothing to change"
        ));
    }
    let Some(text) = config_text else {
        return none(
            "the gateway runs on the embedded default config; there is no file to change".into(),
        );
    };
    let doc = Doc::new(text);
    let (Some(acct), Some(cblock)) = (
        doc.block(&["[[service_accounts]]", "[[users]]"], identity),
        doc.block(&["[[connections]]"], connection),
    ) else {
        return none(format!(
            "could not find `{identity}` and `{connection}` in {} (changed since it was loaded?); edit it by hand",
            config.origin
        ));
    };
    let label = Path::new(&config.origin)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "airlock.toml".into());
    let mut edits = Vec::new();
    let note;
    if account.kind == IdentityKind::Service && account.connections.is_some() {
        match doc.remove_from_list(acct, "connections", &[connection]) {
            Some(e) => edits.push(e),
            None => {
                return none(
                    "could not find the account's `connections` list; edit it by hand".into(),
                )
            }
        }
        note = format!("removes `{connection}` from `{identity}`'s own `connections` list");
    } else {
        let mut exclusive = Vec::new();
        let mut shared = Vec::new();
        for g in conn
            .allow_groups
            .iter()
            .filter(|g| account.groups.contains(g))
        {
            let others: Vec<&str> = config
                .service_accounts
                .iter()
                .filter(|a| a.name != identity && a.groups.contains(g))
                .map(|a| a.name.as_str())
                .collect();
            if others.is_empty() {
                exclusive.push(g.as_str());
            } else {
                shared.push((g.as_str(), others));
            }
        }
        if !shared.is_empty() && account.kind == IdentityKind::Service {
            // Removing a shared group from allow_groups would cut off its other members too;
            // the account's own `connections` limit revokes exactly this one grant.
            let keep: Vec<String> = config
                .connections
                .iter()
                .filter(|c| {
                    c.name != connection
                        && !standing_via(&account.identity(), Some(account), c).is_empty()
                })
                .map(|c| format!("\"{}\"", c.name))
                .collect();
            edits.push(doc.insert_after_key(
                acct,
                &["groups", "name"],
                &format!("connections = [{}]", keep.join(", ")),
            ));
            let groups: Vec<String> = shared
                .iter()
                .map(|(g, others)| format!("`{g}` (also {})", others.join(", ")))
                .collect();
            note = format!(
                "group {} is shared, so `{identity}` gets its own `connections` limit without `{connection}`",
                groups.join(", ")
            );
        } else {
            let mut parts = Vec::new();
            let mut from_conn: Vec<&str> = exclusive.clone();
            if conn.allow_identities.iter().any(|i| i == identity) {
                if let Some(e) = doc.remove_from_list(cblock, "allow_identities", &[identity]) {
                    edits.push(e);
                }
                parts.push(format!(
                    "removes `{identity}` from `{connection}`'s allow_identities"
                ));
            }
            if !from_conn.is_empty() {
                if let Some(e) = doc.remove_from_list(cblock, "allow_groups", &from_conn) {
                    edits.push(e);
                }
                parts.push(format!(
                    "removes group {} from `{connection}`'s allow_groups (`{identity}` is its only member)",
                    from_conn.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            if !shared.is_empty() {
                from_conn = shared.iter().map(|(g, _)| *g).collect();
                if let Some(e) = doc.remove_from_list(acct, "groups", &from_conn) {
                    edits.push(e);
                }
                let elsewhere: Vec<String> = config
                    .connections
                    .iter()
                    .filter(|c| {
                        c.name != connection
                            && c.allow_groups
                                .iter()
                                .any(|g| from_conn.contains(&g.as_str()))
                    })
                    .map(|c| format!("`{}`", c.name))
                    .collect();
                parts.push(format!(
                    "removes `{identity}` from group {}{}",
                    from_conn
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if elsewhere.is_empty() {
                        String::new()
                    } else {
                        format!(" (this also ends its access to {})", elsewhere.join(", "))
                    }
                ));
            }
            note = parts.join("; ");
        }
    }
    RevokePlan {
        diff: Some(unified_diff(&label, &doc.lines, edits)),
        note,
    }
}

/// Replace lines `start..end` (0-based, end exclusive) with `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    new: Vec<String>,
}

/// Just enough of TOML's layout to find a table by its `name` and edit one array key,
/// keeping every other byte of the file as the user wrote it.
struct Doc<'a> {
    lines: Vec<&'a str>,
    /// (header, first line, end line exclusive, name)
    blocks: Vec<(&'a str, usize, usize, Option<String>)>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut starts = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.trim_start().starts_with('[') {
                starts.push(i);
            }
        }
        let mut blocks = Vec::new();
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(lines.len());
            let header = lines.get(s).map(|l| l.trim()).unwrap_or_default();
            let header = header.split('#').next().unwrap_or_default().trim();
            let name = lines
                .get(s + 1..end)
                .unwrap_or_default()
                .iter()
                .find_map(|l| key_value(l, "name").and_then(|v| strings(v).0.into_iter().next()));
            blocks.push((header, s, end, name));
        }
        Doc { lines, blocks }
    }

    fn block(&self, headers: &[&str], name: &str) -> Option<(usize, usize)> {
        self.blocks
            .iter()
            .find(|(h, _, _, n)| headers.contains(h) && n.as_deref() == Some(name))
            .map(|(_, s, e, _)| (*s, *e))
    }

    /// The lines `key = [...]` spans within a block.
    fn key_span(&self, block: (usize, usize), key: &str) -> Option<(usize, usize)> {
        let (s, e) = block;
        let start = (s + 1..e).find(|&i| {
            self.lines
                .get(i)
                .is_some_and(|l| key_value(l, key).is_some())
        })?;
        let mut end = start;
        while end < e {
            if self
                .lines
                .get(end)
                .is_some_and(|l| l.split('#').next().unwrap_or_default().contains(']'))
            {
                return Some((start, end + 1));
            }
            end += 1;
        }
        None
    }

    fn remove_from_list(&self, block: (usize, usize), key: &str, remove: &[&str]) -> Option<Edit> {
        let (start, end) = self.key_span(block, key)?;
        let joined = self.lines.get(start..end)?.join("\n");
        let first = self.lines.get(start)?;
        let indent = &first[..first.len() - first.trim_start().len()];
        let value = key_value(&joined, key)?;
        let (items, trailing) = strings(value);
        let kept: Vec<String> = items
            .iter()
            .filter(|i| !remove.contains(&i.as_str()))
            .map(|i| format!("\"{i}\""))
            .collect();
        Some(Edit {
            start,
            end,
            new: vec![format!("{indent}{key} = [{}]{trailing}", kept.join(", "))],
        })
    }

    /// A new line after the first of `after` keys found in the block (else after its header).
    fn insert_after_key(&self, block: (usize, usize), after: &[&str], line: &str) -> Edit {
        let at = after
            .iter()
            .find_map(|k| self.key_span(block, k).map(|(_, e)| e))
            .unwrap_or(block.0 + 1);
        Edit {
            start: at,
            end: at,
            new: vec![line.to_owned()],
        }
    }
}

/// The text after `key =` when `line` assigns `key`.
fn key_value<'t>(line: &'t str, key: &str) -> Option<&'t str> {
    let rest = line.trim_start().strip_prefix(key)?;
    let rest = rest.trim_start().strip_prefix('=')?;
    Some(rest.trim_start())
}

/// The quoted strings of an inline array (or a single string), and whatever follows its
/// closing `]` on the line (a comment, kept as it was).
fn strings(value: &str) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut chars = value.char_indices().peekable();
    let mut trailing = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut s = String::new();
                while let Some((_, d)) = chars.next() {
                    if d == c {
                        break;
                    }
                    if d == '\\' && c == '"' {
                        if let Some((_, e)) = chars.next() {
                            s.push(e);
                        }
                        continue;
                    }
                    s.push(d);
                }
                out.push(s);
            }
            ']' => {
                trailing = value.get(i + 1..).unwrap_or_default().to_owned();
                break;
            }
            '#' => break,
            _ => {}
        }
    }
    (out, trailing)
}

/// A unified diff (3 lines of context) of applying `edits` to `lines`.
fn unified_diff(label: &str, lines: &[&str], mut edits: Vec<Edit>) -> String {
    const CONTEXT: usize = 3;
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = format!("--- a/{label}\n+++ b/{label}\n");
    let mut i = 0;
    let mut delta: isize = 0;
    while i < edits.len() {
        let mut j = i;
        while j + 1 < edits.len()
            && edits.get(j + 1).map(|e| e.start).unwrap_or(0)
                <= edits.get(j).map(|e| e.end).unwrap_or(0) + 2 * CONTEXT
        {
            j += 1;
        }
        let hunk = edits.get(i..=j).unwrap_or_default();
        let (Some(first), Some(last)) = (hunk.first(), hunk.last()) else {
            break;
        };
        let old_start = first.start.saturating_sub(CONTEXT);
        let old_end = (last.end + CONTEXT).min(lines.len());
        let mut body = String::new();
        let mut pos = old_start;
        let mut new_len = 0usize;
        for e in hunk {
            for l in lines.get(pos..e.start).unwrap_or_default() {
                body.push_str(&format!(" {l}\n"));
                new_len += 1;
            }
            for l in lines.get(e.start..e.end).unwrap_or_default() {
                body.push_str(&format!("-{l}\n"));
            }
            for l in &e.new {
                body.push_str(&format!("+{l}\n"));
                new_len += 1;
            }
            pos = e.end;
        }
        for l in lines.get(pos..old_end).unwrap_or_default() {
            body.push_str(&format!(" {l}\n"));
            new_len += 1;
        }
        let old_len = old_end - old_start;
        let new_start = (old_start as isize + delta).max(0) as usize;
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            old_start + 1,
            old_len,
            new_start + 1,
            new_len
        ));
        out.push_str(&body);
        delta += new_len as isize - old_len as isize;
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_config::StaticEnv;

    const TOML: &str = r#"[gateway]
data_dir = "/tmp/x"

[[service_accounts]]
name = "claude-agent"
groups = ["ai-agents"]
agent = true
token_env = "T1"

[[service_accounts]]
name = "etl"
groups = ["etl", "readers"]
token_env = "T2"

[[service_accounts]]
name = "etl-2"
groups = ["readers"]
token_env = "T3"

[[service_accounts]]
name = "limited"
groups = ["readers"]
connections = ["pg-prod", "pg-reports"]
token_env = "T4"

[[users]]
name = "alice"
groups = ["dba", "readers"]
token_env = "T5"

[[connections]]
name = "pg-prod"
type = "postgres"
address = "127.0.0.1:5432"
allow_groups = ["ai-agents", "dba"] # production
allow_identities = ["etl"]

[[connections]]
name = "pg-reports"
type = "postgres"
address = "127.0.0.1:5432"
allow_groups = [
    "readers",
    "ai-agents",
]
"#;

    fn config() -> Config {
        let env = StaticEnv::new()
            .with_var("T1", "token-one-0123456789")
            .with_var("T2", "token-two-0123456789")
            .with_var("T3", "token-three-0123456789")
            .with_var("T4", "token-four-0123456789")
            .with_var("T5", "token-five-0123456789");
        airlock_config::load_str(TOML, "/etc/airlock/airlock.toml", &env).unwrap()
    }

    #[test]
    fn revoking_an_exclusive_group_removes_it_from_allow_groups() {
        let plan = revoke_plan(&config(), Some(TOML), "claude-agent", "pg-prod");
        let diff = plan.diff.unwrap();
        assert_eq!(
            diff,
            "--- a/airlock.toml\n+++ b/airlock.toml\n@@ -32,7 +32,7 @@\n name = \"pg-prod\"\n type = \"postgres\"\n address = \"127.0.0.1:5432\"\n-allow_groups = [\"ai-agents\", \"dba\"] # production\n+allow_groups = [\"dba\"] # production\n allow_identities = [\"etl\"]\n \n [[connections]]\n"
        );
        assert!(plan.note.contains("only member"), "{}", plan.note);
    }

    #[test]
    fn revoking_a_multiline_list_and_a_direct_grant() {
        let plan = revoke_plan(&config(), Some(TOML), "claude-agent", "pg-reports");
        let diff = plan.diff.unwrap();
        assert!(diff.contains("-allow_groups = [\n-    \"readers\",\n-    \"ai-agents\",\n-]\n+allow_groups = [\"readers\"]\n"), "{diff}");
        let plan = revoke_plan(&config(), Some(TOML), "etl", "pg-prod");
        let diff = plan.diff.unwrap();
        assert!(
            diff.contains("-allow_identities = [\"etl\"]\n+allow_identities = []\n"),
            "{diff}"
        );
    }

    #[test]
    fn a_shared_group_narrows_the_account_instead() {
        // etl reaches pg-reports through `readers`, which etl-2, limited and alice share.
        let plan = revoke_plan(&config(), Some(TOML), "etl", "pg-reports");
        let diff = plan.diff.unwrap();
        assert!(diff.contains("+connections = [\"pg-prod\"]\n"), "{diff}");
        assert!(
            diff.contains(" groups = [\"etl\", \"readers\"]\n+connections"),
            "{diff}"
        );
        assert!(plan.note.contains("shared"), "{}", plan.note);
        // An account with its own list loses the connection from it.
        let plan = revoke_plan(&config(), Some(TOML), "limited", "pg-reports");
        assert!(plan
            .diff
            .unwrap()
            .contains("+connections = [\"pg-prod\"]\n"));
        // A human in a shared group leaves the group, and is told what else that ends.
        let plan = revoke_plan(&config(), Some(TOML), "alice", "pg-reports");
        let diff = plan.diff.unwrap();
        assert!(
            diff.contains("-groups = [\"dba\", \"readers\"]\n+groups = [\"dba\"]\n"),
            "{diff}"
        );
    }

    #[test]
    fn no_diff_when_the_config_does_not_grant_it() {
        let plan = revoke_plan(&config(), Some(TOML), "etl-2", "pg-prod");
        assert!(plan.diff.is_none());
        assert!(plan.note.contains("access review"), "{}", plan.note);
        let plan = revoke_plan(&config(), None, "claude-agent", "pg-prod");
        assert!(plan.diff.is_none());
    }

    #[test]
    fn decisions_are_validated_and_stored_atomically() {
        let c = config();
        assert!(matches!(
            prepare(
                &c,
                Some(TOML),
                Ask {
                    identity: "claude-agent",
                    connection: "pg-prod",
                    decision: Verdict::Keep,
                    comment: " ",
                    reviewer: "alice"
                },
                1
            ),
            Err(RecertError::NoComment)
        ));
        assert!(matches!(
            prepare(
                &c,
                Some(TOML),
                Ask {
                    identity: "alice",
                    connection: "pg-prod",
                    decision: Verdict::Keep,
                    comment: "mine",
                    reviewer: "alice"
                },
                1
            ),
            Err(RecertError::SelfReview(_))
        ));
        assert!(matches!(
            prepare(
                &c,
                Some(TOML),
                Ask {
                    identity: "nobody",
                    connection: "pg-prod",
                    decision: Verdict::Keep,
                    comment: "x",
                    reviewer: "alice"
                },
                1
            ),
            Err(RecertError::UnknownIdentity(_))
        ));
        let keep = prepare(
            &c,
            Some(TOML),
            Ask {
                identity: "etl",
                connection: "pg-prod",
                decision: Verdict::Keep,
                comment: "nightly job",
                reviewer: "alice",
            },
            1,
        )
        .unwrap();
        assert_eq!(keep.via, vec!["allow_identities".to_string()]);
        assert!(keep.config_diff.is_none());
        let revoke = prepare(
            &c,
            Some(TOML),
            Ask {
                identity: "claude-agent",
                connection: "pg-prod",
                decision: Verdict::Revoke,
                comment: "unused",
                reviewer: "alice",
            },
            2,
        )
        .unwrap();
        assert!(revoke.config_diff.is_some());
        let dir = tempfile::tempdir().unwrap();
        let store = RecertStore::new(dir.path());
        assert!(store.load().unwrap().is_empty());
        store.append(keep.clone()).unwrap();
        store.append(revoke.clone()).unwrap();
        assert_eq!(store.load().unwrap(), vec![keep, revoke]);
        assert!(!dir.path().join("recertifications.json.tmp").exists());
        std::fs::write(store.path(), "{not json").unwrap();
        assert!(matches!(store.load(), Err(RecertError::Damaged { .. })));
    }
}
