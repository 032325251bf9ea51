use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SessionStart,
    SessionEnd,
    Command,
    CommandResult,
    AuthFailure,
    ConfigLoaded,
    GatewayStart,
    GatewayStop,
    Other,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionStart => "session_start",
            EventKind::SessionEnd => "session_end",
            EventKind::Command => "command",
            EventKind::CommandResult => "command_result",
            EventKind::AuthFailure => "auth_failure",
            EventKind::ConfigLoaded => "config_loaded",
            EventKind::GatewayStart => "gateway_start",
            EventKind::GatewayStop => "gateway_stop",
            EventKind::Other => "other",
        }
    }
}

/// One audit event. Serialized compactly (absent fields are omitted) because one is written
/// per SQL statement on the hot path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix time in microseconds, set by the caller (see [`AuditEvent::now_us`]).
    pub ts_us: i64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Set for kinds `command` and `command_result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandRecord>,
    /// Free-form context: peer address, error, TLS parameters, ... The index reads
    /// `detail.peer` (a string) of `session_start` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    pub fn new(kind: EventKind) -> Self {
        AuditEvent {
            ts_us: Self::now_us(),
            kind,
            session_id: None,
            identity: None,
            connection: None,
            command: None,
            detail: None,
        }
    }

    /// The current wall-clock time in unix microseconds (0 if the clock is before 1970).
    pub fn now_us() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A command (`command` event) or its outcome (`command_result` event); both carry the same
/// `seq` and are joined on (session_id, seq).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Statement number within the session.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Every part's operation, in order, when the command has more than one statement
    /// (`operation` is then the first that writes, else the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    /// The bound parameters of a prepared statement's execution (`$1`, `$2`, …; `null` for
    /// SQL NULL), as the gateway records them: text values cut at 1 KiB, binary ones as hex,
    /// and through the session's masking detectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// `allow`, `deny` or `review`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Values masked in the result (on `command_result`): counts only, never the values.
    #[serde(default, skip_serializing_if = "MaskedCounts::is_empty")]
    pub masked: MaskedCounts,
}

/// How many values of a result were masked, by detector entity (`email`, `credit_card`, ...)
/// and by source column (`payments.card_number`, or `?column` when lineage was unknown).
/// Enough for a review to answer "did this agent ever read a card number?".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedCounts {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub entities: std::collections::BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub columns: std::collections::BTreeMap<String, u64>,
}

impl MaskedCounts {
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.columns.is_empty()
    }

    pub fn add(&mut self, other: &MaskedCounts) {
        for (k, v) in &other.entities {
            *self.entities.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.columns {
            *self.columns.entry(k.clone()).or_default() += v;
        }
    }
}

/// A borrowed [`AuditEvent`] of kind `command` or `command_result`, for the per-statement hot
/// path: it serializes to exactly the bytes an [`AuditEvent`] with the same content would
/// (same field names, order and omissions; see the tests), without cloning the session's id,
/// identity, connection and the statement's text into every event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEventRef<'a> {
    pub ts_us: i64,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandRecordRef<'a>>,
}

/// The borrowed form of [`CommandRecord`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandRecordRef<'a> {
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub params: &'a [Option<String>],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(skip_serializing_if = "masked_is_empty")]
    pub masked: Option<&'a MaskedCounts>,
}

fn masked_is_empty(m: &Option<&MaskedCounts>) -> bool {
    m.is_none_or(|m| m.is_empty())
}

impl<'a> AuditEventRef<'a> {
    pub fn new(kind: EventKind) -> Self {
        AuditEventRef {
            ts_us: AuditEvent::now_us(),
            kind,
            session_id: None,
            identity: None,
            connection: None,
            command: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn owned_and_borrowed(full: bool) -> (AuditEvent, Vec<u8>) {
        let mut masked = MaskedCounts::default();
        if full {
            masked.entities.insert("email".into(), 2);
            masked.columns.insert("users.email".into(), 2);
        }
        let owned = AuditEvent {
            ts_us: 1_700_000_000_123_456,
            kind: EventKind::Command,
            session_id: Some("s-1".into()),
            identity: Some("ann \"the\" agent".into()),
            connection: full.then(|| "prod\n".into()),
            command: Some(CommandRecord {
                seq: 42,
                text: Some("SELECT '\\u{1}é' FROM t WHERE a = $1".into()),
                operation: Some("select".into()),
                operations: if full {
                    vec!["select".into(), "delete".into()]
                } else {
                    vec![]
                },
                params: if full {
                    vec![Some("42".into()), None]
                } else {
                    vec![]
                },
                reads: if full {
                    vec!["public.t".into(), "u".into()]
                } else {
                    vec![]
                },
                writes: if full { vec!["w".into()] } else { vec![] },
                flags: if full {
                    vec!["dynamic_sql".into()]
                } else {
                    vec![]
                },
                decision: Some("allow".into()),
                rule: full.then(|| "r".into()),
                message: full.then(|| "m".into()),
                rows: full.then_some(7),
                error: full.then(|| "42501".into()),
                duration_us: full.then_some(99),
                masked: masked.clone(),
            }),
            detail: None,
        };
        let c = owned.command.as_ref().unwrap();
        let borrowed = AuditEventRef {
            ts_us: owned.ts_us,
            kind: owned.kind,
            session_id: owned.session_id.as_deref(),
            identity: owned.identity.as_deref(),
            connection: owned.connection.as_deref(),
            command: Some(CommandRecordRef {
                seq: c.seq,
                text: c.text.as_deref(),
                operation: c.operation.as_deref(),
                operations: c.operations.iter().map(String::as_str).collect(),
                params: &c.params,
                reads: c.reads.iter().map(String::as_str).collect(),
                writes: c.writes.iter().map(String::as_str).collect(),
                flags: c.flags.iter().map(String::as_str).collect(),
                decision: c.decision.as_deref(),
                rule: c.rule.as_deref(),
                message: c.message.as_deref(),
                rows: c.rows,
                error: c.error.as_deref(),
                duration_us: c.duration_us,
                masked: Some(&c.masked),
            }),
        };
        let bytes = serde_json::to_vec(&borrowed).unwrap();
        (owned, bytes)
    }

    #[test]
    fn borrowed_events_serialize_exactly_like_owned_ones() {
        for full in [false, true] {
            let (owned, borrowed) = owned_and_borrowed(full);
            assert_eq!(
                String::from_utf8(serde_json::to_vec(&owned).unwrap()).unwrap(),
                String::from_utf8(borrowed.clone()).unwrap()
            );
            let back: AuditEvent = serde_json::from_slice(&borrowed).unwrap();
            assert_eq!(back, owned);
        }
    }
}
