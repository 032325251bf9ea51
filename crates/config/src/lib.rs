//! The airlock configuration: one TOML file, policy as code.
//!
//! [`load_file`] / [`load_str`] turn the file into a validated [`Config`] with every secret
//! resolved, or into [`ConfigErrors`]: all problems found, each with file, line and column.
//! [`embedded_default`] is what `airlock serve` runs with when given no file.
//! Every key is documented in `docs/configuration.md`.

mod diag;
mod env;
mod identity;
mod model;
mod parse;
mod secret;
mod summary;
mod trail;

pub use airlock_core::policy::ConnectionMatch;
pub use diag::{ConfigErrors, Diagnostic};
pub use env::{EnvLookup, StaticEnv, SystemEnv};
pub use identity::{
    ClaimMapping, IdentityConfig, OidcConfig, Roles, TrustedIssuer, FEDERATION_ALGORITHMS,
};
pub use model::{
    AuditConfig, Config, Connection, CustomDetector, DatabaseTarget, Detector, GatewayConfig,
    Hours, Listeners, LogFormat, MaskStrategy, MaskingPolicy, NotificationConfig, PolicyDefaults,
    RemoteTarget, ReviewSettings, RuleConfig, ServiceAccount, SslMode, Target, TlsConfig,
};
pub use secret::{Secret, SecretRef, SecretSource};
pub use trail::{
    CheckpointSettings, ExporterKind, ExporterSettings, RecordingSettings, TrailConfig,
};

use std::path::{Path, PathBuf};

/// Reads and validates a config file, resolving secrets from the real environment and files.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &origin, &SystemEnv),
        Err(e) => Err(unreadable(origin, &e)),
    }
}

fn unreadable(origin: String, e: &std::io::Error) -> ConfigErrors {
    ConfigErrors(vec![Diagnostic {
        file: origin,
        line: 0,
        column: 0,
        message: format!("cannot read the config file: {e}"),
    }])
}

/// `(data_dir, audit log path)` of the config file at `path`, reading only `[gateway]` and
/// `[audit]`: no secret is resolved (for read-only commands run by auditors).
pub fn load_state_locations(path: &Path) -> Result<(PathBuf, PathBuf), ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse::load_state_locations(&text, &origin),
        Err(e) => Err(unreadable(origin, &e)),
    }
}

/// Parses and validates config text. `origin` names it in diagnostics; `env` supplies the
/// environment variables and files that secrets and TLS paths refer to.
pub fn load_str(text: &str, origin: &str, env: &dyn EnvLookup) -> Result<Config, ConfigErrors> {
    parse::load(text, origin, env)
}

/// The configuration of `airlock serve` without `--config`: state in `./airlock-data`, the
/// SPEC's listeners on loopback, no connections, no rules, no masking.
pub fn embedded_default() -> Config {
    let gateway = GatewayConfig {
        data_dir: "./airlock-data".into(),
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 7700)),
        state_url: None,
        log_format: LogFormat::Text,
        allow_plaintext_tokens: false,
        mask_max_value_bytes: model::DEFAULT_MASK_MAX_VALUE_BYTES,
        shutdown_grace_secs: model::DEFAULT_SHUTDOWN_GRACE_SECS,
        max_message_bytes: model::DEFAULT_MAX_MESSAGE_BYTES,
        max_sessions: None,
    };
    let audit = AuditConfig {
        fsync: false,
        path: gateway.data_dir.join("audit.log"),
        segment_max_bytes: model::DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_age_secs: None,
        compress: true,
        retention_secs: None,
    };
    Config {
        origin: "<embedded>".to_string(),
        reviews: ReviewSettings::default(),
        notifications: Vec::new(),
        gateway,
        listeners: Listeners::spec_defaults(),
        tls: TlsConfig::default(),
        audit,
        policy: PolicyDefaults::default(),
        service_accounts: Vec::new(),
        connections: Vec::new(),
        rules: Vec::new(),
        masking: Vec::new(),
        identity: IdentityConfig::default(),
        trail: TrailConfig::default(),
        warnings: Vec::new(),
    }
}
