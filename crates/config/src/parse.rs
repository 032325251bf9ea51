//! From TOML text to a validated [`Config`]: every section is read from the spanned document by
//! hand (not through serde) so that all problems are collected, each with its own position.

use crate::diag::{did_you_mean, ConfigErrors, Diagnostic, Report};
use crate::env::EnvLookup;
use crate::model::*;
use crate::secret::{Secret, SecretRef, SecretSource};
use airlock_core::policy::ConnectionMatch;
use airlock_core::{Action, ConnectionType, IdentityKind, Operation};
use regex::{Regex, RegexBuilder};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

type Value<'i> = Spanned<DeValue<'i>>;

mod identity;
mod trail;

const MIN_TOKEN_CHARS: usize = 16;
const DEFAULT_REVIEW_TIMEOUT_SECS: u64 = 600;
/// Compiled-program budget for user regexes, so a config cannot make the gateway build a
/// pathological automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const TOP_KEYS: &[&str] = &[
    "gateway",
    "listeners",
    "tls",
    "audit",
    "policy",
    "service_accounts",
    "users",
    "connections",
    "rules",
    "masking",
    "reviews",
    "notifications",
    "oidc",
    "trusted_issuers",
    "roles",
    "recording",
    "exporters",
];
const USER_KEYS: &[&str] = &["name", "groups", "token_env", "token_file"];
const REVIEW_KEYS: &[&str] = &["hold", "access_reviewers", "access_timeout"];
const NOTIFICATION_KEYS: &[&str] = &[
    "name",
    "url",
    "secret_env",
    "secret_file",
    "format",
    "events",
];
const NOTIFICATION_EVENTS: &[&str] = &[
    "review_created",
    "review_approved",
    "review_denied",
    "review_expired",
    "command_denied",
];
const GATEWAY_KEYS: &[&str] = &[
    "data_dir",
    "api_listen",
    "state_url",
    "log_format",
    "allow_plaintext_tokens",
    "mask_max_value_bytes",
    "shutdown_grace",
    "max_message_bytes",
    "max_sessions",
];
const LISTENER_KEYS: &[&str] = &["postgres", "mysql", "ssh", "http"];
const TLS_KEYS: &[&str] = &["cert_file", "key_file"];
const AUDIT_KEYS: &[&str] = &[
    "fsync",
    "path",
    "checkpoint_events",
    "checkpoint_interval",
    "segment_max_bytes",
    "segment_max_age",
    "compress",
    "retention",
];
const POLICY_KEYS: &[&str] = &["default_action", "default_write_action"];
const SERVICE_ACCOUNT_KEYS: &[&str] = &[
    "name",
    "groups",
    "agent",
    "token_env",
    "token_file",
    "connections",
];
/// Keys every `[[connections]]` entry may have; each type adds its own ([`Target::keys`]).
const CONNECTION_COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "address",
    "tags",
    "allow_groups",
    "allow_identities",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "identities",
    "groups",
    "agents",
    "connections",
    "operations",
    "writes",
    "objects",
    "without_where",
    "pattern",
    "hours",
    "action",
    "message",
    "reviewers",
    "timeout",
    "min_approvals",
];
const MATCH_KEYS: &[&str] = &["names", "tags"];
const MASKING_KEYS: &[&str] = &[
    "name",
    "connections",
    "identities",
    "groups",
    "exempt_groups",
    "columns",
    "detectors",
    "custom",
    "strategy",
    "phone_regions",
];
const CUSTOM_DETECTOR_KEYS: &[&str] = &["name", "regex"];
const CONNECTION_TYPES: [ConnectionType; 6] = [
    ConnectionType::Postgres,
    ConnectionType::Mysql,
    ConnectionType::Ssh,
    ConnectionType::Http,
    ConnectionType::Kubernetes,
    ConnectionType::Aws,
];
const ACTIONS: [Action; 3] = [Action::Allow, Action::Deny, Action::Review];

/// A value with the byte range it came from.
#[derive(Debug, Clone)]
struct Sp<T> {
    value: T,
    span: Range<usize>,
}

pub(crate) fn load(text: &str, origin: &str, env: &dyn EnvLookup) -> Result<Config, ConfigErrors> {
    let (config, warnings) = parse_with(text, origin, |r, root| build(r, root, origin, env))?;
    let mut config = config;
    config.warnings = warnings;
    Ok(config)
}

/// Only `[gateway]` and `[audit]`, checked as [`load`] checks them: where the gateway keeps its
/// state. Secrets and the other sections are not read, so the read-only commands (`sessions`,
/// `audit`) work for someone who has the config file but not the gateway's credentials.
pub(crate) fn load_state_locations(
    text: &str,
    origin: &str,
) -> Result<(PathBuf, PathBuf), ConfigErrors> {
    let (paths, _) = parse_with(text, origin, |r, root| {
        let gateway = section(r, root, "gateway")
            .map(|t| gateway(r, &t))
            .unwrap_or_else(default_gateway);
        let audit = match section(r, root, "audit") {
            Some(t) => audit(r, &t, &gateway),
            None => default_audit(&gateway),
        };
        (gateway.data_dir, audit.path)
    })?;
    Ok(paths)
}

/// Parses the TOML and runs `read` over its top-level table; the result and the warnings if
/// nothing was reported as an error, else every error in line order.
fn parse_with<T>(
    text: &str,
    origin: &str,
    read: impl FnOnce(&mut Report<'_>, &Table<'_, '_>) -> T,
) -> Result<(T, Vec<Diagnostic>), ConfigErrors> {
    let mut report = Report::new(text, origin);
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // A document that did not parse is only partly there; semantic checks on it would
        // report phantom problems, so syntax errors are all we say.
        for e in &syntax_errors {
            let span = e.span().unwrap_or(0..0);
            report.error(&span, e.message().to_string());
        }
        return Err(sorted(report.errors));
    }
    let root = Table {
        table: doc.get_ref(),
        span: doc.span(),
        what: "the top level".to_string(),
    };
    let value = read(&mut report, &root);
    if report.errors.is_empty() {
        Ok((value, sorted(report.warnings).0))
    } else {
        Err(sorted(report.errors))
    }
}

fn sorted(mut diagnostics: Vec<Diagnostic>) -> ConfigErrors {
    diagnostics.sort_by_key(|d| (d.line, d.column));
    ConfigErrors(diagnostics)
}

fn build(r: &mut Report<'_>, root: &Table<'_, '_>, origin: &str, env: &dyn EnvLookup) -> Config {
    for (key, _) in root.table.iter() {
        if !TOP_KEYS.contains(&key.get_ref().as_ref()) {
            let name = key.get_ref();
            r.error(
                &key.span(),
                format!("unknown section `{name}`{}", did_you_mean(name, TOP_KEYS)),
            );
        }
    }

    let gateway = section(r, root, "gateway")
        .map(|t| gateway(r, &t))
        .unwrap_or_else(default_gateway);
    let listeners = match section(r, root, "listeners") {
        Some(t) => listeners(r, &t),
        None => Listeners::spec_defaults(),
    };
    check_address_reuse(r, root, &gateway, &listeners);
    let tls = section(r, root, "tls")
        .map(|t| tls(r, &t, env))
        .unwrap_or_default();
    let audit = match section(r, root, "audit") {
        Some(t) => audit(r, &t, &gateway),
        None => default_audit(&gateway),
    };
    let policy = section(r, root, "policy")
        .map(|t| policy(r, &t))
        .unwrap_or_default();

    let connection_tables = sections(r, root, "connections");
    let connections = connections(r, &connection_tables, env);
    let account_tables = sections(r, root, "service_accounts");
    // Names of connections that failed validation still count as declared, so references to
    // them do not pile a second, misleading error on the first.
    let declared: Vec<String> = connection_tables.iter().map(|t| t.display_name()).collect();
    let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
    let mut service_accounts = Vec::new();
    accounts(
        r,
        &account_tables,
        &declared,
        env,
        IdentityKind::Service,
        &mut service_accounts,
    );
    let user_tables = sections(r, root, "users");
    accounts(
        r,
        &user_tables,
        &declared,
        env,
        IdentityKind::Human,
        &mut service_accounts,
    );
    let reviews = section(r, root, "reviews")
        .map(|t| review_settings(r, &t))
        .unwrap_or_default();
    let notification_tables = sections(r, root, "notifications");
    let notifications = notifications(r, &notification_tables, env);
    let known = Known {
        connections: &connections,
        declared_connections: &declared,
        service_accounts: &service_accounts,
    };
    let rule_tables = sections(r, root, "rules");
    let rules = rules(r, &rule_tables, &known);
    let masking_tables = sections(r, root, "masking");
    let masking = masking(r, &masking_tables, &known);
    let exporter_tables = sections(r, root, "exporters");
    let trail = crate::trail::TrailConfig {
        recording: section(r, root, "recording")
            .map(|t| trail::recording(r, &t))
            .unwrap_or_default(),
        exporters: trail::exporters(r, &exporter_tables),
        checkpoints: trail::checkpoints(
            r,
            root.get("audit")
                .and_then(|v| Table::new(v, "[audit]"))
                .as_ref(),
        ),
    };
    let issuer_tables = sections(r, root, "trusted_issuers");
    let identity = crate::identity::IdentityConfig {
        oidc: section(r, root, "oidc").and_then(|t| identity::oidc(r, &t, env)),
        trusted_issuers: identity::trusted_issuers(r, &issuer_tables, &known),
        roles: section(r, root, "roles")
            .map(|t| identity::roles(r, &t))
            .unwrap_or_default(),
    };

    Config {
        trail,
        identity,
        origin: origin.to_string(),
        reviews,
        notifications,
        gateway,
        listeners,
        tls,
        audit,
        policy,
        service_accounts,
        connections,
        rules,
        masking,
        warnings: Vec::new(),
    }
}

/// What later sections may refer to.
struct Known<'a> {
    connections: &'a [Connection],
    declared_connections: &'a [&'a str],
    service_accounts: &'a [ServiceAccount],
}

// ---------------------------------------------------------------------------------------------
// Reading spanned tables

/// A TOML table with where it starts and how to name it in messages.
struct Table<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Range<usize>,
    what: String,
}

impl<'t, 'i> Table<'t, 'i> {
    fn new(value: &'t Value<'i>, what: impl Into<String>) -> Option<Self> {
        match value.get_ref() {
            DeValue::Table(table) => Some(Table {
                table,
                span: value.span(),
                what: what.into(),
            }),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// Reports every key not in `allowed`; true when there was none.
    fn check_keys(&self, r: &mut Report<'_>, allowed: &[&str]) -> bool {
        let mut all_known = true;
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            all_known = false;
            let hint = match name {
                "password" if allowed.contains(&"password_env") => {
                    "; secrets are not written in the config: use `password_env = \"VARIABLE\"` or `password_file = \"path\"`".to_string()
                }
                "token" if allowed.contains(&"token_env") => {
                    "; secrets are not written in the config: use `token_env = \"VARIABLE\"` or `token_file = \"path\"`".to_string()
                }
                _ => did_you_mean(name, allowed),
            };
            r.error(
                &key.span(),
                format!("unknown key `{name}` in {}{hint}", self.what),
            );
        }
        all_known
    }

    /// How to name this entry in messages, even when its `name` is invalid or a duplicate.
    fn display_name(&self) -> String {
        match self.get("name").map(|v| v.get_ref()) {
            Some(DeValue::String(s)) => s.to_string(),
            _ => "?".to_string(),
        }
    }

    fn type_error(&self, r: &mut Report<'_>, key: &str, value: &Value<'_>, expected: &str) {
        r.error(
            &value.span(),
            format!(
                "`{key}` in {} must be {expected}, found {}",
                self.what,
                value.get_ref().type_str()
            ),
        );
    }

    fn string(&self, r: &mut Report<'_>, key: &str) -> Option<Sp<String>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Sp {
                value: s.to_string(),
                span: value.span(),
            }),
            _ => {
                self.type_error(r, key, value, "a string");
                None
            }
        }
    }

    /// Reports a missing key at the table header.
    fn required_string(&self, r: &mut Report<'_>, key: &str) -> Option<Sp<String>> {
        if self.get(key).is_none() {
            r.error(
                &self.span,
                format!("{} is missing the required key `{key}`", self.what),
            );
            return None;
        }
        self.string(r, key)
    }

    fn bool(&self, r: &mut Report<'_>, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(r, key, value, "true or false");
                None
            }
        }
    }

    fn integer(&self, r: &mut Report<'_>, key: &str) -> Option<Sp<i64>> {
        let value = self.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match parsed {
            Some(n) => Some(Sp {
                value: n,
                span: value.span(),
            }),
            None => {
                self.type_error(r, key, value, "an integer");
                None
            }
        }
    }

    fn string_list(&self, r: &mut Report<'_>, key: &str) -> Vec<Sp<String>> {
        match self.get(key) {
            Some(value) => string_list(r, value, key, &self.what),
            None => Vec::new(),
        }
    }

    fn plain_list(&self, r: &mut Report<'_>, key: &str) -> Vec<String> {
        let items = self.string_list(r, key);
        for item in &items {
            if item.value.is_empty() {
                r.error(
                    &item.span,
                    format!("`{key}` in {} holds an empty string", self.what),
                );
            }
        }
        items.into_iter().map(|s| s.value).collect()
    }

    fn string_map(&self, r: &mut Report<'_>, key: &str) -> BTreeMap<String, String> {
        match self.get(key) {
            Some(value) => string_map(r, value, key, &self.what),
            None => BTreeMap::new(),
        }
    }

    fn path(&self, r: &mut Report<'_>, key: &str) -> Option<Sp<PathBuf>> {
        let s = self.string(r, key)?;
        if s.value.is_empty() {
            r.error(
                &s.span,
                format!("`{key}` in {} must not be empty", self.what),
            );
            return None;
        }
        Some(Sp {
            value: PathBuf::from(s.value),
            span: s.span,
        })
    }

    /// One of a fixed set of words.
    fn choice<T: Copy>(
        &self,
        r: &mut Report<'_>,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<Sp<T>> {
        let s = self.string(r, key)?;
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == s.value) {
            return Some(Sp {
                value: *v,
                span: s.span,
            });
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        r.error(
            &s.span,
            format!(
                "`{key}` in {} must be one of {}, found \"{}\"{}",
                self.what,
                quoted_list(&names),
                s.value,
                did_you_mean(&s.value, &names)
            ),
        );
        None
    }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn string_list(r: &mut Report<'_>, value: &Value<'_>, key: &str, what: &str) -> Vec<Sp<String>> {
    let DeValue::Array(items) = value.get_ref() else {
        r.error(
            &value.span(),
            format!(
                "`{key}` in {what} must be a list of strings, found {}",
                value.get_ref().type_str()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) => out.push(Sp {
                value: s.to_string(),
                span: item.span(),
            }),
            other => r.error(
                &item.span(),
                format!(
                    "`{key}` in {what} must be a list of strings, found a {} in it",
                    other.type_str()
                ),
            ),
        }
    }
    out
}

fn string_map(
    r: &mut Report<'_>,
    value: &Value<'_>,
    key: &str,
    what: &str,
) -> BTreeMap<String, String> {
    let DeValue::Table(table) = value.get_ref() else {
        r.error(
            &value.span(),
            format!(
                "`{key}` in {what} must be a table of strings like {{ env = \"prod\" }}, found {}",
                value.get_ref().type_str()
            ),
        );
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (k, v) in table.iter() {
        match v.get_ref() {
            DeValue::String(s) => {
                out.insert(k.get_ref().to_string(), s.to_string());
            }
            other => r.error(
                &v.span(),
                format!(
                    "`{key}.{}` in {what} must be a string, found {}",
                    k.get_ref(),
                    other.type_str()
                ),
            ),
        }
    }
    out
}

/// `[name]`: a single table.
fn section<'t, 'i>(r: &mut Report<'_>, root: &Table<'t, 'i>, name: &str) -> Option<Table<'t, 'i>> {
    let value = root.get(name)?;
    let table = Table::new(value, format!("[{name}]"));
    if table.is_none() {
        r.error(
            &value.span(),
            format!("`{name}` must be a table: write it as a [{name}] section"),
        );
    }
    table
}

/// `[[name]]`: an array of tables.
fn sections<'t, 'i>(r: &mut Report<'_>, root: &Table<'t, 'i>, name: &str) -> Vec<Table<'t, 'i>> {
    let Some(value) = root.get(name) else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        r.error(
            &value.span(),
            format!("`{name}` must be a list of tables: write each entry as a [[{name}]] section"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match Table::new(item, format!("[[{name}]]")) {
            Some(t) => out.push(t),
            None => r.error(
                &item.span(),
                format!(
                    "each entry of `{name}` must be a table, found {}",
                    item.get_ref().type_str()
                ),
            ),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// [gateway], [listeners], [tls], [audit], [policy]

fn default_gateway() -> GatewayConfig {
    GatewayConfig {
        data_dir: PathBuf::from("./airlock-data"),
        api_listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
        state_url: None,
        log_format: LogFormat::Text,
        allow_plaintext_tokens: false,
        mask_max_value_bytes: DEFAULT_MASK_MAX_VALUE_BYTES,
        shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        max_sessions: None,
    }
}

fn default_audit(gateway: &GatewayConfig) -> AuditConfig {
    AuditConfig {
        fsync: false,
        path: gateway.data_dir.join("audit.log"),
        segment_max_bytes: crate::model::DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_age_secs: None,
        compress: true,
        retention_secs: None,
    }
}

fn socket_addr(r: &mut Report<'_>, t: &Table<'_, '_>, key: &str) -> Option<Sp<SocketAddr>> {
    let s = t.string(r, key)?;
    match s.value.parse::<SocketAddr>() {
        Ok(addr) => Some(Sp {
            value: addr,
            span: s.span,
        }),
        Err(_) => {
            r.error(
                &s.span,
                format!(
                    "`{key}` in {} must be an IP address and port like \"127.0.0.1:15432\" or \"[::1]:15432\", found \"{}\"",
                    t.what, s.value
                ),
            );
            None
        }
    }
}

fn gateway(r: &mut Report<'_>, t: &Table<'_, '_>) -> GatewayConfig {
    t.check_keys(r, GATEWAY_KEYS);
    let mut g = default_gateway();
    if let Some(dir) = t.path(r, "data_dir") {
        g.data_dir = dir.value;
    }
    if let Some(addr) = socket_addr(r, t, "api_listen") {
        g.api_listen = addr.value;
    }
    if let Some(url) = t.string(r, "state_url") {
        g.state_url = Some(Secret::new(url.value));
    }
    if let Some(format) = t.choice(
        r,
        "log_format",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
    ) {
        g.log_format = format.value;
    }
    if let Some(b) = t.bool(r, "allow_plaintext_tokens") {
        g.allow_plaintext_tokens = b;
    }
    if let Some(n) = t.integer(r, "mask_max_value_bytes") {
        match usize::try_from(n.value) {
            Ok(v) if v > 0 => g.mask_max_value_bytes = v,
            _ => r.error(
                &n.span,
                format!(
                    "`mask_max_value_bytes` in [gateway] must be a positive number of bytes, found {}",
                    n.value
                ),
            ),
        }
    }
    if let Some(n) = t.integer(r, "max_message_bytes") {
        match usize::try_from(n.value) {
            Ok(v) if v >= MIN_MAX_MESSAGE_BYTES => g.max_message_bytes = v,
            _ => r.error(
                &n.span,
                format!(
                    "`max_message_bytes` in [gateway] must be at least {MIN_MAX_MESSAGE_BYTES} bytes, found {}",
                    n.value
                ),
            ),
        }
    }
    if let Some(n) = t.integer(r, "max_sessions") {
        match usize::try_from(n.value) {
            Ok(v) if v > 0 => g.max_sessions = Some(v),
            _ => r.error(
                &n.span,
                format!(
                    "`max_sessions` in [gateway] must be a positive number of sessions, found {}",
                    n.value
                ),
            ),
        }
    }
    if let Some(s) = t.string(r, "shutdown_grace") {
        match parse_duration(&s.value) {
            Ok(secs) => g.shutdown_grace_secs = secs,
            Err(e) => r.error(
                &s.span,
                format!("[gateway] shutdown_grace: {e}; write e.g. \"10s\" or \"1m\""),
            ),
        }
    }
    g
}

fn listeners(r: &mut Report<'_>, t: &Table<'_, '_>) -> Listeners {
    t.check_keys(r, LISTENER_KEYS);
    Listeners {
        postgres: socket_addr(r, t, "postgres").map(|a| a.value),
        mysql: socket_addr(r, t, "mysql").map(|a| a.value),
        ssh: socket_addr(r, t, "ssh").map(|a| a.value),
        http: socket_addr(r, t, "http").map(|a| a.value),
    }
}

/// Two listeners on one address would make the second bind fail at start-up; say it now.
fn check_address_reuse(
    r: &mut Report<'_>,
    root: &Table<'_, '_>,
    gateway: &GatewayConfig,
    listeners: &Listeners,
) {
    let span_of = |section: &str, key: &str| -> Range<usize> {
        root.get(section)
            .and_then(|v| Table::new(v, ""))
            .and_then(|t| t.get(key).map(|v| v.span()))
            .unwrap_or(0..0)
    };
    let mut seen: Vec<(String, SocketAddr)> =
        vec![("gateway.api_listen".to_string(), gateway.api_listen)];
    for (name, addr) in listeners.enabled() {
        if let Some((other, _)) = seen.iter().find(|(_, a)| *a == addr) {
            let message = format!("listeners.{name} uses {addr}, which {other} already uses");
            r.error(&span_of("listeners", name), message);
        }
        seen.push((format!("listeners.{name}"), addr));
    }
}

fn tls(r: &mut Report<'_>, t: &Table<'_, '_>, env: &dyn EnvLookup) -> TlsConfig {
    t.check_keys(r, TLS_KEYS);
    let cert = t.path(r, "cert_file");
    let key = t.path(r, "key_file");
    for (present, missing, other) in [
        (&cert, "key_file", "cert_file"),
        (&key, "cert_file", "key_file"),
    ] {
        if let Some(p) = present {
            if t.get(missing).is_none() {
                r.error(
                    &p.span,
                    format!("`{other}` is set but `{missing}` is not: set both, or neither to let the gateway generate a self-signed certificate in data_dir"),
                );
            }
            if !env.is_file(&p.value) {
                r.error(
                    &p.span,
                    format!("file {} (tls.{other}) does not exist", p.value.display()),
                );
            }
        }
    }
    TlsConfig {
        cert_file: cert.map(|c| c.value),
        key_file: key.map(|k| k.value),
    }
}

fn audit(r: &mut Report<'_>, t: &Table<'_, '_>, gateway: &GatewayConfig) -> AuditConfig {
    t.check_keys(r, AUDIT_KEYS);
    let mut a = default_audit(gateway);
    if let Some(fsync) = t.bool(r, "fsync") {
        a.fsync = fsync;
    }
    if let Some(path) = t.path(r, "path") {
        a.path = path.value;
    }
    if let Some(value) = t.get("segment_max_bytes") {
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| "must not be negative".to_string()),
            DeValue::String(s) => parse_size(s),
            _ => Err("must be a number of bytes or a size like \"256MiB\"".to_string()),
        };
        match parsed {
            Ok(n) if n == 0 || n >= crate::model::MIN_SEGMENT_MAX_BYTES => a.segment_max_bytes = n,
            Ok(n) => r.error(
                &value.span(),
                format!(
                    "[audit] segment_max_bytes: {n} is too small (at least {} bytes, or 0 for no size limit)",
                    crate::model::MIN_SEGMENT_MAX_BYTES
                ),
            ),
            Err(e) => r.error(&value.span(), format!("[audit] segment_max_bytes: {e}")),
        }
    }
    if let Some(s) = t.string(r, "segment_max_age") {
        match parse_duration(&s.value) {
            Ok(secs) => a.segment_max_age_secs = Some(secs),
            Err(e) => r.error(
                &s.span,
                format!("[audit] segment_max_age: {e}; write e.g. \"1d\" or \"12h\""),
            ),
        }
    }
    if let Some(c) = t.bool(r, "compress") {
        a.compress = c;
    }
    if let Some(s) = t.string(r, "retention") {
        if s.value.trim() == "forever" {
            a.retention_secs = None;
        } else {
            match parse_duration(&s.value) {
                Ok(secs) => a.retention_secs = Some(secs),
                Err(e) => r.error(
                    &s.span,
                    format!(
                        "[audit] retention: {e}; write e.g. \"400d\", or \"forever\" (the default)"
                    ),
                ),
            }
        }
    }
    a
}

/// "256MiB", "64KiB", "1GiB", "4096": bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a size (write e.g. \"256MiB\")"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn action_options() -> Vec<(&'static str, Action)> {
    ACTIONS.iter().map(|a| (a.as_str(), *a)).collect()
}

fn policy(r: &mut Report<'_>, t: &Table<'_, '_>) -> PolicyDefaults {
    t.check_keys(r, POLICY_KEYS);
    let options = action_options();
    let mut p = PolicyDefaults::default();
    if let Some(a) = t.choice(r, "default_action", &options) {
        p.default_action = a.value;
    }
    if let Some(a) = t.choice(r, "default_write_action", &options) {
        p.default_write_action = a.value;
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Names, secrets

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Reads `name`, checks its characters and that it is unique within its kind.
fn entry_name(
    r: &mut Report<'_>,
    t: &Table<'_, '_>,
    kind: &str,
    seen: &mut HashMap<String, usize>,
) -> Option<String> {
    let name = t.required_string(r, "name")?;
    if !valid_name(&name.value) {
        r.error(
            &name.span,
            format!(
                "{kind} name \"{}\" may use only letters, digits, `_`, `.` and `-`",
                name.value
            ),
        );
        return None;
    }
    let line = r.position(name.span.start).0;
    if let Some(first) = seen.get(&name.value) {
        r.error(
            &name.span,
            format!(
                "duplicate {kind} name `{}` (first defined at line {first})",
                name.value
            ),
        );
        return None;
    }
    seen.insert(name.value.clone(), line);
    Some(name.value)
}

/// Reads `<prefix>_env` / `<prefix>_file` and resolves the secret they point at.
/// `Ok(None)`: neither key is present.
fn secret(
    r: &mut Report<'_>,
    t: &Table<'_, '_>,
    prefix: &str,
    owner: &str,
    env: &dyn EnvLookup,
) -> Result<Option<SecretRef>, ()> {
    let env_key = format!("{prefix}_env");
    let file_key = format!("{prefix}_file");
    let from_env = t.string(r, &env_key);
    let from_file = t.string(r, &file_key);
    let (source, key, span) = match (from_env, from_file) {
        (Some(_), Some(f)) => {
            r.error(
                &f.span,
                format!("{owner} sets both `{env_key}` and `{file_key}`; keep only one"),
            );
            return Err(());
        }
        (Some(e), None) => (SecretSource::Env(e.value), env_key, e.span),
        (None, Some(f)) => (SecretSource::File(PathBuf::from(f.value)), file_key, f.span),
        (None, None) => {
            let present = t.get(&env_key).is_some() || t.get(&file_key).is_some();
            return if present { Err(()) } else { Ok(None) };
        }
    };
    let raw = match &source {
        SecretSource::Env(name) => {
            if name.is_empty() {
                r.error(&span, format!("`{key}` of {owner} names no variable"));
                return Err(());
            }
            match env.var(name) {
                Some(v) => v,
                None => {
                    r.error(
                        &span,
                        format!(
                            "environment variable {name} is not set (referenced by {owner} {key})"
                        ),
                    );
                    return Err(());
                }
            }
        }
        SecretSource::File(path) => match env.read_file(path) {
            // Files written by editors and `echo` end in a newline that is not part of the secret.
            Ok(content) => content.trim_end_matches(['\n', '\r']).to_string(),
            Err(e) => {
                r.error(
                    &span,
                    format!(
                        "cannot read file {} (referenced by {owner} {key}): {e}",
                        path.display()
                    ),
                );
                return Err(());
            }
        },
    };
    if raw.is_empty() {
        r.error(
            &span,
            format!("{source} is empty (referenced by {owner} {key})"),
        );
        return Err(());
    }
    Ok(Some(SecretRef {
        source,
        value: Secret::new(raw),
    }))
}

// ---------------------------------------------------------------------------------------------
// [[connections]]

fn connections(
    r: &mut Report<'_>,
    tables: &[Table<'_, '_>],
    env: &dyn EnvLookup,
) -> Vec<Connection> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    let type_options: Vec<(&str, ConnectionType)> =
        CONNECTION_TYPES.iter().map(|t| (t.as_str(), *t)).collect();
    let sslmodes: Vec<(&str, SslMode)> = SslMode::ALL.iter().map(|m| (m.as_str(), *m)).collect();
    let all_keys: Vec<&str> = CONNECTION_COMMON_KEYS
        .iter()
        .chain(DatabaseTarget::KEYS)
        .copied()
        .collect();
    for t in tables {
        t.check_keys(r, &all_keys);
        let name = entry_name(r, t, "connection", &mut seen);
        let owner = format!(
            "connection `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let kind = match t.get("type") {
            Some(_) => t.choice(r, "type", &type_options),
            None => {
                r.error(
                    &t.span,
                    format!(
                        "{} is missing the required key `type` (one of {})",
                        t.what,
                        quoted_list(&type_options.iter().map(|(n, _)| *n).collect::<Vec<_>>())
                    ),
                );
                None
            }
        };
        if let Some(kind) = &kind {
            // A key of another type: `database` on an ssh connection says the entry is not what
            // its author thinks.
            let own = Target::keys(kind.value);
            for (key, _) in t.table.iter() {
                let key_name: &str = key.get_ref();
                if all_keys.contains(&key_name)
                    && !CONNECTION_COMMON_KEYS.contains(&key_name)
                    && !own.contains(&key_name)
                {
                    let takes: Vec<&str> =
                        CONNECTION_COMMON_KEYS.iter().chain(own).copied().collect();
                    r.error(
                        &key.span(),
                        format!(
                            "key `{key_name}` does not apply to a {} connection ({owner} takes {})",
                            kind.value.as_str(),
                            quoted_list(&takes)
                        ),
                    );
                }
            }
        }
        let address = t.required_string(r, "address");
        if let Some(address) = &address {
            if let Err(problem) = check_address(kind.as_ref().map(|k| k.value), &address.value) {
                r.error(
                    &address.span,
                    format!("address \"{}\" of {owner}: {problem}", address.value),
                );
            }
        }
        let database = t.string(r, "database").map(|s| s.value);
        let user = t.string(r, "user").map(|s| s.value);
        let password = secret(r, t, "password", &owner, env);
        let readonly_user = t.string(r, "readonly_user");
        let readonly_password = secret(r, t, "readonly_password", &owner, env);
        if let (None, Ok(Some(_))) = (&readonly_user, &readonly_password) {
            r.error(
                &t.span,
                format!("{owner} sets a `readonly_password_*` without `readonly_user`"),
            );
        }
        let tags = t.string_map(r, "tags");
        let allow_groups = t.plain_list(r, "allow_groups");
        let allow_identities = t.plain_list(r, "allow_identities");
        let sslmode = t.choice(r, "sslmode", &sslmodes).map(|m| m.value);
        let ca_file = t.path(r, "ca_file");
        if let Some(ca) = &ca_file {
            if !env.is_file(&ca.value) {
                r.error(
                    &ca.span,
                    format!(
                        "file {} (ca_file of {owner}) does not exist",
                        ca.value.display()
                    ),
                );
            }
        }
        if allow_groups.is_empty() && allow_identities.is_empty() {
            r.warn(
                &t.span,
                format!("{owner} has no `allow_groups` or `allow_identities`: nobody may use it"),
            );
        }
        let (Some(name), Some(kind), Some(address), Ok(password), Ok(readonly_password)) =
            (name, kind, address, password, readonly_password)
        else {
            continue;
        };
        let database = || DatabaseTarget {
            address: address.value.clone(),
            database,
            user,
            password,
            readonly_user: readonly_user.map(|u| u.value),
            readonly_password,
            sslmode: sslmode.unwrap_or_default(),
            ca_file: ca_file.map(|c| c.value),
        };
        let remote = || RemoteTarget {
            address: address.value.clone(),
        };
        let target = match kind.value {
            ConnectionType::Postgres => Target::Postgres(database()),
            ConnectionType::Mysql => Target::Mysql(database()),
            ConnectionType::Ssh => Target::Ssh(remote()),
            ConnectionType::Http => Target::Http(remote()),
            ConnectionType::Kubernetes => Target::Kubernetes(remote()),
            ConnectionType::Aws => Target::Aws(remote()),
        };
        out.push(Connection {
            name,
            target,
            tags,
            allow_groups,
            allow_identities,
            line: r.position(t.span.start).0,
        });
    }
    out
}

/// `host:port` (IPv6 in brackets); HTTP-like targets may also be given as a URL.
/// With the type unknown (itself an error reported elsewhere) URLs are let through.
fn check_address(kind: Option<ConnectionType>, address: &str) -> Result<(), String> {
    let http_like = match kind {
        Some(ConnectionType::Http | ConnectionType::Kubernetes | ConnectionType::Aws) | None => {
            true
        }
        Some(ConnectionType::Postgres | ConnectionType::Mysql | ConnectionType::Ssh) => false,
    };
    if let Some(rest) = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
    {
        if !http_like {
            return Err(format!(
                "a {} connection takes host:port, not a URL",
                kind.map(|k| k.as_str()).unwrap_or("")
            ));
        }
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        return if host.is_empty() {
            Err("the URL has no host".to_string())
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected host:port, e.g. \"db.internal:5432\"".to_string());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("\"{port}\" is not a port number (1-65535)")),
    }
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("write IPv6 addresses in brackets, e.g. \"[::1]:5432\"".to_string());
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("the host contains a space or `/`".to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// [[service_accounts]]

/// `[[service_accounts]]` (kind service) and `[[users]]` (kind human) into one list, so names
/// and tokens are unique across both.
fn accounts(
    r: &mut Report<'_>,
    tables: &[Table<'_, '_>],
    connection_names: &[&str],
    env: &dyn EnvLookup,
    kind: IdentityKind,
    out: &mut Vec<ServiceAccount>,
) {
    let mut seen: HashMap<String, usize> = out.iter().map(|a| (a.name.clone(), a.line)).collect();
    let (keys, noun) = match kind {
        IdentityKind::Human => (USER_KEYS, "user"),
        _ => (SERVICE_ACCOUNT_KEYS, "service account"),
    };
    for t in tables {
        t.check_keys(r, keys);
        let name = entry_name(r, t, noun, &mut seen);
        let owner = format!(
            "{noun} `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let groups = t.plain_list(r, "groups");
        let agent = t.bool(r, "agent").unwrap_or(false);
        let limit = t.get("connections").map(|_| {
            let names = t.string_list(r, "connections");
            for n in &names {
                if !connection_names.contains(&n.value.as_str()) {
                    r.error(
                        &n.span,
                        format!(
                            "{owner} is limited to unknown connection `{}`{}",
                            n.value,
                            did_you_mean(&n.value, connection_names)
                        ),
                    );
                }
            }
            names.into_iter().map(|n| n.value).collect::<Vec<_>>()
        });
        let token = match secret(r, t, "token", &owner, env) {
            Ok(Some(token)) => Some(token),
            Ok(None) => {
                r.error(
                    &t.span,
                    format!("{owner} has no token: set `token_env` or `token_file`"),
                );
                None
            }
            Err(()) => None,
        };
        let token = token.map(|mut token| {
            // Surrounding whitespace in a token is always a copy-paste accident.
            token.value = Secret::new(token.value.expose().trim());
            token
        });
        let token_span = t
            .get("token_env")
            .or_else(|| t.get("token_file"))
            .map(|v| v.span())
            .unwrap_or_else(|| t.span.clone());
        let token = token.filter(|token| {
            let chars = token.value.len();
            if chars < MIN_TOKEN_CHARS {
                r.error(
                    &token_span,
                    format!(
                        "the token of {owner} (from {}) is {chars} characters long; tokens must be at least {MIN_TOKEN_CHARS} characters (generate one with `openssl rand -hex 32`)",
                        token.source
                    ),
                );
                return false;
            }
            true
        });
        let token = token.filter(|token| {
            match out.iter().find(|other| other.token.value == token.value) {
                Some(other) => {
                    r.error(
                        &token_span,
                        format!(
                            "{owner} has the same token as service account `{}` (line {}); every account needs its own",
                            other.name, other.line
                        ),
                    );
                    false
                }
                None => true,
            }
        });
        let (Some(name), Some(token)) = (name, token) else {
            continue;
        };
        out.push(ServiceAccount {
            name,
            kind,
            groups,
            agent,
            token,
            connections: limit,
            line: r.position(t.span.start).0,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// [reviews], [[notifications]]

fn review_settings(r: &mut Report<'_>, t: &Table<'_, '_>) -> ReviewSettings {
    t.check_keys(r, REVIEW_KEYS);
    let mut settings = ReviewSettings::default();
    if let Some(hold) = t.string(r, "hold") {
        match parse_duration(&hold.value) {
            Ok(secs) => settings.hold_secs = secs,
            Err(e) => r.error(&hold.span, format!("[reviews] hold: {e}")),
        }
    }
    if let Some(t2) = t.string(r, "access_timeout") {
        match parse_duration(&t2.value) {
            Ok(secs) => settings.access_timeout_secs = secs,
            Err(e) => r.error(&t2.span, format!("[reviews] access_timeout: {e}")),
        }
    }
    settings.access_reviewers = t.plain_list(r, "access_reviewers");
    settings
}

fn notifications(
    r: &mut Report<'_>,
    tables: &[Table<'_, '_>],
    env: &dyn EnvLookup,
) -> Vec<NotificationConfig> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for t in tables {
        t.check_keys(r, NOTIFICATION_KEYS);
        let name = entry_name(r, t, "notification", &mut seen);
        let owner = format!(
            "notification `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let url = t.required_string(r, "url");
        if let Some(u) = &url {
            if !(u.value.starts_with("http://") || u.value.starts_with("https://")) {
                r.error(
                    &u.span,
                    format!("{owner} url must start with http:// or https://"),
                );
            }
        }
        let secret = secret(r, t, "secret", &owner, env).unwrap_or(None);
        let format = t
            .string(r, "format")
            .map(|f| f.value)
            .unwrap_or_else(|| "json".into());
        if format != "json" && format != "slack" {
            r.error(
                &t.span,
                format!("{owner} format must be \"json\" or \"slack\", not \"{format}\""),
            );
        }
        let events = t.string_list(r, "events");
        for e in &events {
            if !NOTIFICATION_EVENTS.contains(&e.value.as_str()) {
                r.error(
                    &e.span,
                    format!(
                        "unknown event \"{}\" in {owner}{}; known: {}",
                        e.value,
                        did_you_mean(&e.value, NOTIFICATION_EVENTS),
                        NOTIFICATION_EVENTS.join(", ")
                    ),
                );
            }
        }
        if let (Some(name), Some(url)) = (name, url) {
            out.push(NotificationConfig {
                name,
                url: url.value,
                secret,
                format,
                events: events.into_iter().map(|e| e.value).collect(),
                line: r.position(t.span.start).0,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Connection selectors shared by rules and masking

fn connection_match(
    r: &mut Report<'_>,
    value: &Value<'_>,
    owner: &str,
    known: &Known<'_>,
) -> Option<ConnectionMatch> {
    let names = known.declared_connections;
    let mut selector = ConnectionMatch::default();
    let name_items;
    match value.get_ref() {
        DeValue::Array(_) => {
            name_items = string_list(r, value, "connections", owner);
            if name_items.is_empty() {
                r.error(
                    &value.span(),
                    format!("`connections` of {owner} is an empty list: it would match nothing; remove it to match every connection"),
                );
                return None;
            }
        }
        DeValue::Table(_) => {
            let t = Table::new(value, format!("`connections` of {owner}"))?;
            let all_known = t.check_keys(r, MATCH_KEYS);
            name_items = t.string_list(r, "names");
            selector.tags = t.string_map(r, "tags");
            if !all_known {
                return None;
            }
            if name_items.is_empty() && selector.tags.is_empty() {
                r.error(
                    &value.span(),
                    format!("`connections` of {owner} selects nothing: give `names = [...]` and/or `tags = {{ ... }}`"),
                );
                return None;
            }
        }
        other => {
            r.error(
                &value.span(),
                format!(
                    "`connections` of {owner} must be a list of connection names or a table like {{ tags = {{ env = \"prod\" }} }}, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    }
    let mut ok = true;
    for n in &name_items {
        if !names.contains(&n.value.as_str()) {
            ok = false;
            r.error(
                &n.span,
                format!(
                    "{owner} references unknown connection `{}`{}",
                    n.value,
                    did_you_mean(&n.value, names)
                ),
            );
        }
    }
    selector.names = name_items.into_iter().map(|n| n.value).collect();
    if ok
        && !selector.tags.is_empty()
        && !known.connections.iter().any(|c| c.selected_by(&selector))
    {
        let tags: Vec<String> = selector
            .tags
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        r.warn(
            &value.span(),
            format!(
                "no connection matches the `connections` of {owner} (tags {}); it applies to nothing for now",
                tags.join(", ")
            ),
        );
    }
    ok.then_some(selector)
}

// ---------------------------------------------------------------------------------------------
// [[rules]]

fn rules(r: &mut Report<'_>, tables: &[Table<'_, '_>], known: &Known<'_>) -> Vec<RuleConfig> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    let operation_names: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
    let action_options = action_options();
    for t in tables {
        t.check_keys(r, RULE_KEYS);
        let name = entry_name(r, t, "rule", &mut seen);
        let owner = format!(
            "rule `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let mut valid = name.is_some();

        let identities = t.plain_list(r, "identities");
        let groups = t.plain_list(r, "groups");
        let agents = t.bool(r, "agents");
        let connections = match t.get("connections") {
            Some(v) => {
                let m = connection_match(r, v, &owner, known);
                valid &= m.is_some();
                m
            }
            None => None,
        };
        let mut operations = Vec::new();
        for op in t.string_list(r, "operations") {
            match Operation::parse(&op.value) {
                Some(o) => operations.push(o),
                None => {
                    valid = false;
                    r.error(
                        &op.span,
                        format!(
                            "unknown operation \"{}\" in {owner}{}",
                            op.value,
                            match crate::diag::suggest(&op.value, &operation_names) {
                                Some(s) => format!("; did you mean \"{s}\"?"),
                                None => format!("; operations are: {}", operation_names.join(" ")),
                            }
                        ),
                    );
                }
            }
        }
        let writes = t.bool(r, "writes");
        let objects = t.plain_list(r, "objects");
        let without_where = t.bool(r, "without_where").unwrap_or(false);
        let pattern = t
            .string(r, "pattern")
            .and_then(|p| compile_regex(r, &p, &format!("`pattern` of {owner}"), true));
        valid &= t.get("pattern").is_none() || pattern.is_some();
        let hours = t.string(r, "hours").and_then(|h| match parse_hours(&h.value) {
            Ok(hours) => Some(hours),
            Err(problem) => {
                r.error(
                    &h.span,
                    format!("`hours` of {owner} \"{}\": {problem}; write e.g. \"09:00-18:00\" or \"mon-fri 09:00-18:00\" (UTC)", h.value),
                );
                None
            }
        });
        valid &= t.get("hours").is_none() || hours.is_some();
        let action = if t.get("action").is_some() {
            t.choice(r, "action", &action_options)
        } else {
            r.error(
                &t.span,
                format!("{owner} is missing the required key `action` (\"allow\", \"deny\" or \"review\")"),
            );
            None
        };
        let message = t.string(r, "message").map(|m| m.value);
        let reviewers = t.plain_list(r, "reviewers");
        let timeout = t.string(r, "timeout").and_then(|s| match parse_duration(&s.value) {
            Ok(secs) => Some(secs),
            Err(problem) => {
                r.error(
                    &s.span,
                    format!("`timeout` of {owner} \"{}\": {problem}; write e.g. \"30s\", \"10m\" or \"1h\"", s.value),
                );
                None
            }
        });
        valid &= t.get("timeout").is_none() || timeout.is_some();
        let min_approvals =
            t.integer(r, "min_approvals")
                .and_then(|n| match u32::try_from(n.value) {
                    Ok(v) if v >= 1 => Some(v),
                    _ => {
                        r.error(
                            &n.span,
                            format!("`min_approvals` of {owner} must be at least 1"),
                        );
                        None
                    }
                });
        valid &= t.get("min_approvals").is_none() || min_approvals.is_some();

        let Some(action) = action else {
            continue;
        };
        let is_review = action.value == Action::Review;
        if is_review {
            if reviewers.is_empty() {
                valid = false;
                r.error(
                    &action.span,
                    format!("{owner} has action = \"review\" but no `reviewers`: name the groups whose members may approve"),
                );
            }
            for group in &reviewers {
                let anyone = known
                    .service_accounts
                    .iter()
                    .any(|s| s.groups.iter().any(|g| g == group));
                if !anyone {
                    let span = t
                        .get("reviewers")
                        .map(|v| v.span())
                        .unwrap_or(t.span.clone());
                    r.warn(
                        &span,
                        format!("no identity in this config is in reviewer group `{group}` of {owner}; make sure people log in (OIDC) with that group, or reviews cannot be approved"),
                    );
                }
            }
        } else {
            for key in ["reviewers", "timeout", "min_approvals"] {
                if let Some(v) = t.get(key) {
                    r.warn(
                        &v.span(),
                        format!(
                            "`{key}` of {owner} only applies to action = \"review\"; it is ignored"
                        ),
                    );
                }
            }
        }
        if !valid {
            continue;
        }
        let Some(name) = name else { continue };
        out.push(RuleConfig {
            name,
            identities,
            groups,
            agents,
            connections,
            operations,
            writes,
            objects,
            without_where,
            pattern,
            hours,
            action: action.value,
            message,
            reviewers,
            timeout_secs: if is_review {
                Some(timeout.unwrap_or(DEFAULT_REVIEW_TIMEOUT_SECS))
            } else {
                None
            },
            min_approvals: min_approvals.unwrap_or(1),
            line: r.position(t.span.start).0,
        });
    }
    out
}

fn compile_regex(
    r: &mut Report<'_>,
    source: &Sp<String>,
    what: &str,
    case_insensitive: bool,
) -> Option<Regex> {
    match RegexBuilder::new(&source.value)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            // The regex crate's message spans several lines with a caret diagram; its last line
            // says what is wrong.
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            r.error(
                &source.span,
                format!("{what} is not a valid regular expression: {reason}"),
            );
            None
        }
    }
}

/// "10m", "30s", "1h", "1h30m": seconds, greater than zero.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            c if c.is_whitespace() => {
                return Err("no spaces allowed".to_string());
            }
            _ => return Err(format!("unknown unit `{c}` (use s, m, h or d)")),
        };
        if digits.is_empty() {
            return Err(format!("a number must come before `{c}`"));
        }
        let n: u64 = digits.parse().map_err(|_| "number too large".to_string())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration too large".to_string())?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err("a unit must follow the number (s, m, h or d)".to_string());
    }
    if total == 0 {
        return Err("must be longer than zero".to_string());
    }
    Ok(total)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// "09:00-18:00" or "mon-fri 09:00-18:00" (days: names, ranges, commas; ranges may wrap).
pub(crate) fn parse_hours(text: &str) -> Result<Hours, String> {
    let text = text.trim();
    let (days_text, time_text) = match text.split_once(char::is_whitespace) {
        Some((d, t)) => (Some(d), t.trim()),
        None => (None, text),
    };
    let days = match days_text {
        Some(d) => parse_days(d)?,
        None => 0x7f,
    };
    let (start, end) = time_text
        .split_once('-')
        .ok_or_else(|| "expected a range HH:MM-HH:MM".to_string())?;
    let start_minute = parse_clock(start)?;
    let end_minute = parse_clock(end)?;
    if start_minute >= 24 * 60 {
        return Err("the window cannot start at 24:00".to_string());
    }
    if start_minute == end_minute {
        return Err("the window is empty (start equals end)".to_string());
    }
    Ok(Hours {
        start_minute,
        end_minute,
        days,
    })
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let text = text.trim();
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("\"{text}\" is not a time HH:MM"))?;
    let h: u16 = h
        .parse()
        .map_err(|_| format!("\"{text}\" is not a time HH:MM"))?;
    let m: u16 = m
        .parse()
        .map_err(|_| format!("\"{text}\" is not a time HH:MM"))?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("\"{text}\" is not a time of day (00:00-24:00)"));
    }
    Ok(h * 60 + m)
}

fn day_index(name: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|d| *d == name.trim().to_ascii_lowercase())
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| format!("\"{name}\" is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

fn parse_days(text: &str) -> Result<u8, String> {
    let mut mask = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (mut day, to) = (day_index(from)?, day_index(to)?);
                loop {
                    mask |= 1 << day;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            None => mask |= 1 << day_index(part)?,
        }
    }
    Ok(mask)
}

// ---------------------------------------------------------------------------------------------
// [[masking]]

fn masking(r: &mut Report<'_>, tables: &[Table<'_, '_>], known: &Known<'_>) -> Vec<MaskingPolicy> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    let strategies: Vec<(&str, MaskStrategy)> =
        MaskStrategy::ALL.iter().map(|s| (s.as_str(), *s)).collect();
    for t in tables {
        t.check_keys(r, MASKING_KEYS);
        let name = entry_name(r, t, "masking policy", &mut seen);
        let owner = format!(
            "masking policy `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let mut valid = name.is_some();
        let connections = match t.get("connections") {
            Some(v) => {
                let m = connection_match(r, v, &owner, known);
                valid &= m.is_some();
                m
            }
            None => None,
        };
        let identities = t.plain_list(r, "identities");
        let groups = t.plain_list(r, "groups");
        let exempt_groups = t.plain_list(r, "exempt_groups");
        let mut columns = Vec::new();
        for c in t.string_list(r, "columns") {
            match check_column(&c.value) {
                Ok(()) => columns.push(c.value),
                Err(problem) => {
                    valid = false;
                    r.error(
                        &c.span,
                        format!("column \"{}\" of {owner}: {problem}", c.value),
                    );
                }
            }
        }
        let custom = custom_detectors(r, t, &owner, &mut valid);
        let custom_names: Vec<&str> = custom.iter().map(|c| c.name.as_str()).collect();
        let mut detectors = Vec::new();
        for d in t.string_list(r, "detectors") {
            if let Some(det) = Detector::parse(&d.value) {
                if !detectors.contains(&det) {
                    detectors.push(det);
                }
            } else if !custom_names.contains(&d.value.as_str()) {
                valid = false;
                let mut candidates: Vec<&str> = Detector::ALL.iter().map(|d| d.as_str()).collect();
                candidates.extend(custom_names.iter().copied());
                r.error(
                    &d.span,
                    format!(
                        "unknown detector \"{}\" in {owner}{}",
                        d.value,
                        match crate::diag::suggest(&d.value, &candidates) {
                            Some(s) => format!("; did you mean \"{s}\"?"),
                            None => format!(
                                "; built-in detectors are {}, or define your own with custom = [{{ name = \"...\", regex = \"...\" }}]",
                                candidates.join(", ")
                            ),
                        }
                    ),
                );
            }
        }
        let strategy = t.choice(r, "strategy", &strategies).map(|s| s.value);
        valid &= t.get("strategy").is_none() || strategy.is_some();
        let mut phone_regions = Vec::new();
        for code in t.string_list(r, "phone_regions") {
            if code.value.len() == 2 && code.value.chars().all(|c| c.is_ascii_alphabetic()) {
                phone_regions.push(code.value.to_ascii_uppercase());
            } else {
                valid = false;
                r.error(
                    &code.span,
                    format!(
                        "phone region \"{}\" of {owner} is not an ISO 3166 country code (two letters, e.g. \"DE\", \"US\")",
                        code.value
                    ),
                );
            }
        }
        if columns.is_empty() && detectors.is_empty() && custom.is_empty() && valid {
            valid = false;
            r.error(
                &t.span,
                format!("{owner} masks nothing: set `columns`, `detectors` or `custom`"),
            );
        }
        if !valid {
            continue;
        }
        let Some(name) = name else { continue };
        out.push(MaskingPolicy {
            name,
            connections,
            identities,
            groups,
            exempt_groups,
            columns,
            detectors,
            custom,
            strategy: strategy.unwrap_or_default(),
            phone_regions,
            line: r.position(t.span.start).0,
        });
    }
    out
}

fn custom_detectors(
    r: &mut Report<'_>,
    t: &Table<'_, '_>,
    owner: &str,
    valid: &mut bool,
) -> Vec<CustomDetector> {
    let Some(value) = t.get("custom") else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        *valid = false;
        t.type_error(
            r,
            "custom",
            value,
            "a list like [{ name = \"order_id\", regex = \"ORD-[0-9]+\" }]",
        );
        return Vec::new();
    };
    let mut out: Vec<CustomDetector> = Vec::new();
    for item in items.iter() {
        let Some(entry) = Table::new(item, format!("`custom` of {owner}")) else {
            *valid = false;
            r.error(
                &item.span(),
                format!("each entry of `custom` in {owner} must be a table {{ name = \"...\", regex = \"...\" }}"),
            );
            continue;
        };
        entry.check_keys(r, CUSTOM_DETECTOR_KEYS);
        let name = entry.required_string(r, "name");
        let regex = entry.required_string(r, "regex");
        let (Some(name), Some(regex)) = (name, regex) else {
            *valid = false;
            continue;
        };
        if !valid_name(&name.value) || Detector::parse(&name.value).is_some() {
            *valid = false;
            r.error(
                &name.span,
                format!("custom detector name \"{}\" in {owner} must use only letters, digits, `_`, `.`, `-` and not be a built-in detector name", name.value),
            );
            continue;
        }
        if out.iter().any(|c| c.name == name.value) {
            *valid = false;
            r.error(
                &name.span,
                format!("duplicate custom detector `{}` in {owner}", name.value),
            );
            continue;
        }
        let Some(compiled) = compile_regex(
            r,
            &regex,
            &format!("`regex` of custom detector `{}` in {owner}", name.value),
            false,
        ) else {
            *valid = false;
            continue;
        };
        out.push(CustomDetector {
            name: name.value,
            regex: compiled,
        });
    }
    out
}

/// `table.column` or `schema.table.column`; `*` stands for any one part.
fn check_column(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split('.').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(
            "write columns as \"table.column\", \"schema.table.column\" or \"*.column\""
                .to_string(),
        );
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err("a part of the name is empty".to_string());
    }
    if parts
        .iter()
        .any(|p| *p != "*" && p.chars().any(|c| c.is_whitespace() || c == '*'))
    {
        return Err("each part is a name or `*` alone".to_string());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn hours_windows() {
        let h = parse_hours("mon-fri 09:00-18:00").unwrap();
        assert_eq!(
            (h.start_minute, h.end_minute, h.days),
            (540, 1080, 0b0011111)
        );
        assert!(h.contains(9 * 60, 1));
        assert!(!h.contains(18 * 60, 1));
        assert!(!h.contains(10 * 60, 6));
        let night = parse_hours("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60, 7) && night.contains(60, 3));
        assert!(!night.contains(12 * 60, 3));
        assert_eq!(parse_hours("fri-mon 00:00-24:00").unwrap().days, 0b1110001);
        assert_eq!(
            parse_hours("sat,sun 08:00-09:00").unwrap().to_string(),
            "sat,sun 08:00-09:00 UTC"
        );
        assert!(parse_hours("09:00-09:00").is_err());
        assert!(parse_hours("25:00-26:00").is_err());
        assert!(parse_hours("someday 09:00-10:00").is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_address(Some(ConnectionType::Postgres), "db.internal:5432").is_ok());
        assert!(check_address(Some(ConnectionType::Postgres), "[::1]:5432").is_ok());
        assert!(check_address(Some(ConnectionType::Postgres), "::1:5432").is_err());
        assert!(check_address(Some(ConnectionType::Postgres), "db.internal").is_err());
        assert!(check_address(Some(ConnectionType::Postgres), "db:0").is_err());
        assert!(check_address(Some(ConnectionType::Postgres), "https://db:5432").is_err());
        assert!(check_address(Some(ConnectionType::Http), "https://api.internal/v1").is_ok());
    }

    #[test]
    fn columns() {
        assert!(check_column("payments.card_number").is_ok());
        assert!(check_column("*.email").is_ok());
        assert!(check_column("public.users.email").is_ok());
        assert!(check_column("email").is_err());
        assert!(check_column("a..b").is_err());
        assert!(check_column("a.em*").is_err());
    }
}
