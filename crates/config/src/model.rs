//! The validated configuration: what the gateway runs with.

use crate::diag::Diagnostic;
use crate::secret::{Secret, SecretRef};
use airlock_core::policy::ConnectionMatch;
pub use airlock_core::SslMode;
use airlock_core::{Action, ConnectionType, Identity, IdentityKind, Operation};
use regex::Regex;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A whole, validated configuration file. Secrets are already resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (`<embedded>` for the built-in default).
    pub origin: String,
    pub reviews: ReviewSettings,
    pub notifications: Vec<NotificationConfig>,
    pub gateway: GatewayConfig,
    pub listeners: Listeners,
    pub tls: TlsConfig,
    pub audit: AuditConfig,
    pub policy: PolicyDefaults,
    pub service_accounts: Vec<ServiceAccount>,
    pub connections: Vec<Connection>,
    pub rules: Vec<RuleConfig>,
    pub masking: Vec<MaskingPolicy>,
    /// `[recording]`, `[[exporters]]`, audit checkpoints.
    pub trail: crate::trail::TrailConfig,
    /// `[oidc]`, `[[trusted_issuers]]`, `[roles]`.
    pub identity: crate::identity::IdentityConfig,
    /// Problems that do not stop the load (e.g. reviewer groups no service account is in).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    /// Shared state for several replicas. Accepted and stored; the gateway decides whether it
    /// supports it. A secret because such URLs usually embed a password.
    pub state_url: Option<Secret>,
    pub log_format: LogFormat,
    /// Accept tokens over plain TCP from non-loopback peers.
    pub allow_plaintext_tokens: bool,
    /// Values longer than this are withheld by masking instead of scanned.
    pub mask_max_value_bytes: usize,
    /// How long `SIGTERM` waits for sessions to end (clients told, running statements
    /// cancelled, outcomes written) before the gateway exits anyway.
    pub shutdown_grace_secs: u64,
    /// The largest single protocol message (PostgreSQL message, MySQL packet sequence) a
    /// client may send; larger ones end the session with an error naming this key.
    pub max_message_bytes: usize,
    /// Sessions served at once; `None`: what the open-file limit allows (see
    /// `docs/operations.md`). Clients over it are refused at once with a native error.
    pub max_sessions: Option<usize>,
}

/// Default for [`GatewayConfig::max_message_bytes`]: 64 MiB (a query or COPY row that large is
/// already unusual; PostgreSQL's own limit is 1 GiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Below this, ordinary startup and authentication messages would not fit.
pub const MIN_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Default for [`GatewayConfig::shutdown_grace_secs`].
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;

/// Default for [`GatewayConfig::mask_max_value_bytes`]: 16 MiB.
pub const DEFAULT_MASK_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Client-facing listeners; `None` means the protocol is not served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    pub postgres: Option<SocketAddr>,
    pub mysql: Option<SocketAddr>,
    pub ssh: Option<SocketAddr>,
    /// HTTP, Kubernetes and AWS connections.
    pub http: Option<SocketAddr>,
}

impl Listeners {
    /// The listeners of SPEC, used when a config has no `[listeners]` section.
    pub fn spec_defaults() -> Self {
        Listeners {
            postgres: Some(SocketAddr::from(([127, 0, 0, 1], 15432))),
            mysql: Some(SocketAddr::from(([127, 0, 0, 1], 13306))),
            ssh: Some(SocketAddr::from(([127, 0, 0, 1], 12222))),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 17080))),
        }
    }

    /// `(protocol, address)` for every enabled listener, in a fixed order.
    pub fn enabled(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            ("postgres", self.postgres),
            ("mysql", self.mysql),
            ("ssh", self.ssh),
            ("http", self.http),
        ]
        .into_iter()
        .filter_map(|(name, addr)| addr.map(|a| (name, a)))
        .collect()
    }
}

/// Listener certificate. Both `None`: the gateway generates a self-signed one into `data_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub fsync: bool,
    /// Defaults to `data_dir/audit.log`: the active segment; closed segments go to
    /// `<path>.d/`.
    pub path: PathBuf,
    /// `segment_max_bytes`: close the active segment before it would grow past this (0: no
    /// size limit). Default [`DEFAULT_SEGMENT_MAX_BYTES`].
    pub segment_max_bytes: u64,
    /// `segment_max_age`: close the active segment once its first event is this old.
    pub segment_max_age_secs: Option<u64>,
    /// `compress`: zstd-compress closed segments (default true).
    pub compress: bool,
    /// `retention`: remove closed segments whose last event is older than this, once every
    /// exporter acknowledged them (`None`, the default: keep forever).
    pub retention_secs: Option<u64>,
}

/// 256 MiB: about 330,000 statements per segment at ~800 bytes each.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 << 20;
/// Below this a segment would hold only a handful of events.
pub const MIN_SEGMENT_MAX_BYTES: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyDefaults {
    /// When no rule matches a command.
    pub default_action: Action,
    /// When no rule matches a command that writes or may write.
    pub default_write_action: Action,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        PolicyDefaults {
            default_action: Action::Allow,
            default_write_action: Action::Allow,
        }
    }
}

/// A `[[service_accounts]]` entry, or a `[[users]]` entry (kind `human`): an identity that
/// authenticates with a token from config.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub name: String,
    /// `Service` for `[[service_accounts]]`, `Human` for `[[users]]` (local reviewer and
    /// operator accounts until OIDC login is available).
    pub kind: IdentityKind,
    pub groups: Vec<String>,
    pub agent: bool,
    /// At least 16 characters.
    pub token: SecretRef,
    /// When set, the account may use only these connections (on top of each connection's
    /// `allow_groups` / `allow_identities`).
    pub connections: Option<Vec<String>>,
    pub line: usize,
}

impl ServiceAccount {
    pub fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            kind: self.kind,
            groups: self.groups.clone(),
            agent: self.agent,
        }
    }

    /// Whether the account's own `connections` limit lets it near `connection`.
    pub fn limited_to(&self, connection: &str) -> bool {
        match &self.connections {
            Some(list) => list.iter().any(|c| c == connection),
            None => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    /// What it reaches; the TOML key `type` picks the variant and which keys apply.
    pub target: Target,
    pub tags: BTreeMap<String, String>,
    pub allow_groups: Vec<String>,
    pub allow_identities: Vec<String>,
    pub line: usize,
}

/// A connection's target, by `type`, as warpgate's `TargetOptions`: each type has its own keys
/// (`database`, `user`, `sslmode`, ... only for databases), checked with line numbers.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres(DatabaseTarget),
    Mysql(DatabaseTarget),
    /// The adapters for these are not built yet: the gateway refuses sessions to them
    /// (`GateError::NoClassifier`). They take an address only.
    Ssh(RemoteTarget),
    Http(RemoteTarget),
    Kubernetes(RemoteTarget),
    Aws(RemoteTarget),
}

impl Target {
    pub fn kind(&self) -> ConnectionType {
        match self {
            Target::Postgres(_) => ConnectionType::Postgres,
            Target::Mysql(_) => ConnectionType::Mysql,
            Target::Ssh(_) => ConnectionType::Ssh,
            Target::Http(_) => ConnectionType::Http,
            Target::Kubernetes(_) => ConnectionType::Kubernetes,
            Target::Aws(_) => ConnectionType::Aws,
        }
    }

    pub fn address(&self) -> &str {
        match self {
            Target::Postgres(d) | Target::Mysql(d) => &d.address,
            Target::Ssh(r) | Target::Http(r) | Target::Kubernetes(r) | Target::Aws(r) => &r.address,
        }
    }

    /// The database target of a `postgres` or `mysql` connection.
    pub fn database(&self) -> Option<&DatabaseTarget> {
        match self {
            Target::Postgres(d) | Target::Mysql(d) => Some(d),
            _ => None,
        }
    }

    /// The keys a `[[connections]]` entry of this type may have besides the common ones.
    pub fn keys(kind: ConnectionType) -> &'static [&'static str] {
        match kind {
            ConnectionType::Postgres | ConnectionType::Mysql => DatabaseTarget::KEYS,
            _ => &[],
        }
    }
}

/// A PostgreSQL or MySQL server and the credential airlock holds for it.
#[derive(Debug, Clone)]
pub struct DatabaseTarget {
    /// `host:port`.
    pub address: String,
    /// `None`: the connection's name.
    pub database: Option<String>,
    /// `None`: the type's usual superuser ([`DatabaseTarget::default_user`]).
    pub user: Option<String>,
    /// `None`: no password is sent (trust auth upstream).
    pub password: Option<SecretRef>,
    /// A second upstream role with only read privileges (defence in depth): sessions whose
    /// rules deny every write connect as this role instead of `user`.
    pub readonly_user: Option<String>,
    pub readonly_password: Option<SecretRef>,
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
}

impl DatabaseTarget {
    pub const KEYS: &'static [&'static str] = &[
        "database",
        "user",
        "password_env",
        "password_file",
        "readonly_user",
        "readonly_password_env",
        "readonly_password_file",
        "sslmode",
        "ca_file",
    ];

    /// The upstream user when `user` is not set.
    pub fn default_user(kind: ConnectionType) -> &'static str {
        match kind {
            ConnectionType::Mysql => "root",
            _ => "postgres",
        }
    }
}

/// A server reached by address only (the types whose adapters are not built yet).
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    /// `host:port`, or for http/kubernetes/aws also an `http(s)://` URL.
    pub address: String,
}

impl Connection {
    pub fn kind(&self) -> ConnectionType {
        self.target.kind()
    }

    /// Whether the connection's own allow lists admit `identity` (a service account's
    /// `connections` limit is checked separately with [`ServiceAccount::limited_to`]).
    pub fn allows(&self, identity: &Identity) -> bool {
        self.allow_identities.contains(&identity.name)
            || self.allow_groups.iter().any(|g| identity.in_group(g))
    }

    /// Whether a rule or masking policy's connection selector picks this connection.
    pub fn selected_by(&self, selector: &ConnectionMatch) -> bool {
        selector.matches(&airlock_core::policy::ConnectionRef {
            name: &self.name,
            tags: Some(&self.tags),
        })
    }
}

/// A `[[rules]]` entry, validated. The policy engine compiles these into its own rule type.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub name: String,
    pub identities: Vec<String>,
    pub groups: Vec<String>,
    /// `Some(true)`: only agents; `Some(false)`: only non-agents; `None`: both.
    pub agents: Option<bool>,
    pub connections: Option<ConnectionMatch>,
    pub operations: Vec<Operation>,
    pub writes: Option<bool>,
    /// Globs over `schema.table` / `table`.
    pub objects: Vec<String>,
    pub without_where: bool,
    /// Compiled case-insensitively (as the policy engine matches); `as_str()` is the source.
    pub pattern: Option<Regex>,
    pub hours: Option<Hours>,
    pub action: Action,
    pub message: Option<String>,
    pub reviewers: Vec<String>,
    /// For `review`: seconds before an unanswered review is denied (default 600).
    pub timeout_secs: Option<u64>,
    /// For `review`: approvals needed (default 1).
    pub min_approvals: u32,
    /// Line of the `[[rules]]` header, to point users at the rule that decided.
    pub line: usize,
}

/// A UTC time window, optionally on some weekdays only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Minutes since midnight, inclusive.
    pub start_minute: u16,
    /// Minutes since midnight, exclusive (1440 = midnight). Smaller than `start_minute` when the
    /// window crosses midnight.
    pub end_minute: u16,
    /// Bit `d - 1` set when ISO weekday `d` (1 = Monday) is included; `0x7f` = every day.
    pub days: u8,
}

impl Hours {
    /// Whether the window contains the moment (ISO weekday 1..=7). For windows that cross
    /// midnight the weekday is the one of the moment itself.
    /// The included ISO weekdays (1 = Monday), ascending.
    pub fn weekdays(&self) -> Vec<u8> {
        (1..=7u8)
            .filter(|d| self.days & (1 << (d - 1)) != 0)
            .collect()
    }

    pub fn contains(&self, minute_of_day: u16, weekday: u8) -> bool {
        let day_ok = (1..=7).contains(&weekday) && self.days & (1 << (weekday - 1)) != 0;
        let time_ok = if self.start_minute <= self.end_minute {
            minute_of_day >= self.start_minute && minute_of_day < self.end_minute
        } else {
            minute_of_day >= self.start_minute || minute_of_day < self.end_minute
        };
        day_ok && time_ok
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        if self.days != 0x7f {
            let days: Vec<&str> = NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| self.days & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            write!(f, "{} ", days.join(","))?;
        }
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02} UTC",
            self.start_minute / 60,
            self.start_minute % 60,
            self.end_minute / 60,
            self.end_minute % 60
        )
    }
}

/// A `[[masking]]` entry, validated.
#[derive(Debug, Clone)]
pub struct MaskingPolicy {
    pub name: String,
    pub connections: Option<ConnectionMatch>,
    /// Empty identities and groups: applies to everyone (minus `exempt_groups`).
    pub identities: Vec<String>,
    pub groups: Vec<String>,
    pub exempt_groups: Vec<String>,
    /// `table.column`, `schema.table.column`; `*` matches any one part.
    pub columns: Vec<String>,
    pub detectors: Vec<Detector>,
    /// Always active for this policy.
    pub custom: Vec<CustomDetector>,
    pub strategy: MaskStrategy,
    /// ISO 3166 codes whose national phone formats the data holds (`["ES", "IT"]`): the phone
    /// detector then also finds numbers written without a prefix or trunk `0`.
    pub phone_regions: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    Email,
    CreditCard,
    Iban,
    Ssn,
    Phone,
    Ipv4,
    Ipv6,
    AwsKey,
    PrivateKey,
    Jwt,
    Secret,
}

impl Detector {
    pub const ALL: [Detector; 11] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::Ssn,
        Detector::Phone,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::AwsKey,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::Secret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::AwsKey => "aws_key",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::Secret => "secret",
        }
    }

    pub fn parse(s: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct CustomDetector {
    pub name: String,
    pub regex: Regex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskStrategy {
    #[default]
    Redact,
    Partial,
    Hash,
    Null,
}

impl MaskStrategy {
    pub const ALL: [MaskStrategy; 4] = [
        MaskStrategy::Redact,
        MaskStrategy::Partial,
        MaskStrategy::Hash,
        MaskStrategy::Null,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MaskStrategy::Redact => "redact",
            MaskStrategy::Partial => "partial",
            MaskStrategy::Hash => "hash",
            MaskStrategy::Null => "null",
        }
    }

    pub fn parse(s: &str) -> Option<MaskStrategy> {
        MaskStrategy::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl Config {
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    pub fn service_account(&self, name: &str) -> Option<&ServiceAccount> {
        self.service_accounts.iter().find(|s| s.name == name)
    }

    /// The service account whose token this is. Every account is compared, in constant time
    /// each, so timing does not tell which account nearly matched.
    pub fn service_account_by_token(&self, token: &[u8]) -> Option<&ServiceAccount> {
        let mut found = None;
        for account in &self.service_accounts {
            if account.token.value.matches(token) && found.is_none() {
                found = Some(account);
            }
        }
        found
    }
}

/// `[reviews]`: how just-in-time reviews behave in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSettings {
    /// How long a session holds a statement that needs a review before it answers
    /// "pending approval, id X" (the review itself stays open until its rule's timeout).
    pub hold_secs: u64,
    /// Groups whose members decide access requests (`airlock request-access`).
    pub access_reviewers: Vec<String>,
    /// How long an access request waits for a decision.
    pub access_timeout_secs: u64,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings {
            hold_secs: 30,
            access_reviewers: Vec::new(),
            access_timeout_secs: 3600,
        }
    }
}

/// `[[notifications]]`: an outgoing webhook.
#[derive(Debug, Clone)]
pub struct NotificationConfig {
    pub name: String,
    pub url: String,
    /// HMAC-SHA256 key for the `X-Airlock-Signature` header.
    pub secret: Option<SecretRef>,
    /// `json` or `slack`.
    pub format: String,
    /// Event names; empty = all.
    pub events: Vec<String>,
    pub line: usize,
}
