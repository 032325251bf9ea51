#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_config::*;
use airlock_core::{Action, ConnectionType, Operation};
use std::path::Path;

const SPEC_EXAMPLE: &str = include_str!("spec_example.toml");
const CLAUDE_TOKEN: &str = "claude-token-0123456789abcdef";
const PG_PASSWORD: &str = "pg-prod-Sup3rSecret!";

fn spec_env() -> StaticEnv {
    StaticEnv::new()
        .with_var("AIRLOCK_TOKEN_CLAUDE", CLAUDE_TOKEN)
        .with_var("PG_PROD_PASSWORD", PG_PASSWORD)
}

fn errors(text: &str, env: &StaticEnv) -> Vec<Diagnostic> {
    match load_str(text, "t.toml", env) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

/// (line, message) pairs, for asserting positions and wording together.
fn lines(diags: &[Diagnostic]) -> Vec<(usize, String)> {
    diags.iter().map(|d| (d.line, d.message.clone())).collect()
}

fn has(diags: &[Diagnostic], line: usize, needle: &str) -> bool {
    diags
        .iter()
        .any(|d| d.line == line && d.message.contains(needle))
}

#[track_caller]
fn assert_has(diags: &[Diagnostic], line: usize, needle: &str) {
    assert!(
        has(diags, line, needle),
        "no diagnostic at line {line} containing {needle:?}; got {:#?}",
        lines(diags)
    );
}

const BASE: &str = r#"
[[service_accounts]]
name = "bot"
groups = ["ai-agents"]
token_env = "BOT_TOKEN"

[[connections]]
name = "pg"
type = "postgres"
address = "127.0.0.1:5432"
tags = { env = "prod" }
allow_groups = ["ai-agents"]
"#;

fn base_env() -> StaticEnv {
    StaticEnv::new().with_var("BOT_TOKEN", "bot-token-0123456789")
}

/// BASE is 12 lines (leading newline included); appended text starts at line 13.
fn with_base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn spec_example_loads() {
    let config = load_str(SPEC_EXAMPLE, "spec.toml", &spec_env()).unwrap();
    assert_eq!(config.gateway.data_dir, Path::new("./airlock-data"));
    assert_eq!(config.gateway.api_listen.to_string(), "127.0.0.1:7700");
    assert_eq!(config.listeners.postgres.unwrap().port(), 15432);
    assert_eq!(config.listeners.mysql.unwrap().port(), 13306);
    assert_eq!(config.listeners.ssh.unwrap().port(), 12222);
    assert_eq!(config.listeners.http.unwrap().port(), 17080);
    assert_eq!(config.audit.path, Path::new("./airlock-data/audit.log"));

    let sa = &config.service_accounts[0];
    assert_eq!(sa.name, "claude-agent");
    assert!(sa.agent);
    assert_eq!(sa.groups, ["ai-agents"]);
    assert_eq!(sa.token.value.expose(), CLAUDE_TOKEN);
    assert_eq!(
        sa.token.source,
        SecretSource::Env("AIRLOCK_TOKEN_CLAUDE".into())
    );

    let pg_conn = config.connection("pg-prod").unwrap();
    assert_eq!(pg_conn.kind(), ConnectionType::Postgres);
    assert_eq!(pg_conn.tags.get("env").map(String::as_str), Some("prod"));
    let pg = pg_conn.target.database().unwrap();
    assert_eq!(pg.database.as_deref(), Some("app"));
    assert_eq!(pg.user.as_deref(), Some("app_rw"));
    assert_eq!(pg.password.as_ref().unwrap().value.expose(), PG_PASSWORD);
    assert_eq!(pg.sslmode, SslMode::Prefer);
    let pg = pg_conn;
    assert!(pg.allows(&sa.identity()));

    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "agents-read-only",
            "no-destructive-ddl",
            "review-unbounded-writes"
        ]
    );
    let read_only = &config.rules[0];
    assert_eq!(read_only.agents, Some(true));
    assert_eq!(read_only.writes, Some(true));
    assert_eq!(read_only.action, Action::Deny);
    let selector = read_only.connections.as_ref().unwrap();
    assert!(selector.names.is_empty());
    assert_eq!(selector.tags.get("env").map(String::as_str), Some("prod"));
    assert!(pg.selected_by(selector));
    assert_eq!(read_only.timeout_secs, None);
    assert_eq!(read_only.line, 28);
    assert_eq!(
        config.rules[1].operations,
        [Operation::Drop, Operation::Truncate]
    );
    let review = &config.rules[2];
    assert_eq!(review.action, Action::Review);
    assert!(review.without_where);
    assert_eq!(review.reviewers, ["dba"]);
    assert_eq!(review.timeout_secs, Some(600));
    assert_eq!(review.min_approvals, 1);

    let mask = &config.masking[0];
    assert_eq!(mask.strategy, MaskStrategy::Partial);
    assert_eq!(mask.columns, ["payments.card_number", "*.email"]);
    assert_eq!(
        mask.detectors,
        [
            Detector::Email,
            Detector::CreditCard,
            Detector::Iban,
            Detector::Ssn,
            Detector::Phone,
            Detector::Secret
        ]
    );

    // Nobody in the config is in `dba`: worth a warning, not an error.
    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    assert_eq!(config.warnings[0].line, 49);
    assert!(config.warnings[0].message.contains("reviewer group `dba`"));
    assert_eq!(
        config
            .service_account_by_token(CLAUDE_TOKEN.as_bytes())
            .unwrap()
            .name,
        "claude-agent"
    );
    assert!(config
        .service_account_by_token(b"claude-token-0123456789abcdeX")
        .is_none());
}

#[test]
fn spec_example_reports_every_missing_secret_with_its_line() {
    let errs = errors(SPEC_EXAMPLE, &StaticEnv::new());
    assert_eq!(
        lines(&errs),
        [
            (
                16,
                "environment variable AIRLOCK_TOKEN_CLAUDE is not set (referenced by service account `claude-agent` token_env)".to_string()
            ),
            (
                24,
                "environment variable PG_PROD_PASSWORD is not set (referenced by connection `pg-prod` password_env)".to_string()
            ),
        ]
    );
    let shown = load_str(SPEC_EXAMPLE, "spec.toml", &StaticEnv::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        shown.lines().next().unwrap(),
        "spec.toml:16:13: environment variable AIRLOCK_TOKEN_CLAUDE is not set (referenced by service account `claude-agent` token_env)"
    );
    assert_eq!(shown.lines().count(), 2);
}

#[test]
fn quickstart_example_loads() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml"),
    )
    .unwrap();
    let env = StaticEnv::new().with_var("AIRLOCK_DEMO_TOKEN", "demo-token-0123456789abcdef");
    let config = load_str(&text, "quickstart.toml", &env).unwrap();
    assert_eq!(config.listeners.enabled().len(), 1);
    assert_eq!(
        config.listeners.postgres.unwrap().to_string(),
        "127.0.0.1:15432"
    );
    let pg = config
        .connection("pg-local")
        .unwrap()
        .target
        .database()
        .unwrap();
    assert!(pg.password.is_none());
    assert_eq!(pg.sslmode, SslMode::Disable);
    assert_eq!(config.service_accounts[0].name, "demo-agent");
    // The demo masks emails and card numbers on pg-local.
    assert_eq!(config.masking.len(), 1);
    assert_eq!(
        config.masking[0].columns,
        ["*.email", "payments.card_number"]
    );
    assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
}

#[test]
fn empty_file_is_the_embedded_default() {
    let loaded = load_str("", "empty.toml", &StaticEnv::new()).unwrap();
    let default = embedded_default();
    assert_eq!(loaded.gateway.data_dir, default.gateway.data_dir);
    assert_eq!(loaded.gateway.api_listen, default.gateway.api_listen);
    assert_eq!(loaded.listeners, default.listeners);
    assert_eq!(loaded.audit, default.audit);
    assert_eq!(loaded.policy, default.policy);
    assert_eq!(default.listeners.enabled().len(), 4);
    assert!(default.connections.is_empty() && default.rules.is_empty());
    assert_eq!(default.gateway.data_dir, Path::new("./airlock-data"));
}

#[test]
fn unknown_keys_are_errors_with_suggestions() {
    let text = with_base(
        r#"
[[connections]]
name = "other"
type = "mysql"
adress = "db:3306"
colour = "blue"

[gateway]
data_dri = "x"

[listener]
postgres = "127.0.0.1:1"
"#,
    );
    let errs = errors(&text, &base_env());
    assert_has(
        &errs,
        17,
        "unknown key `adress` in [[connections]]; did you mean `address`?",
    );
    assert_has(&errs, 18, "unknown key `colour` in [[connections]]");
    assert!(!has(&errs, 18, "did you mean"));
    assert_has(
        &errs,
        14,
        "[[connections]] is missing the required key `address`",
    );
    assert_has(
        &errs,
        21,
        "unknown key `data_dri` in [gateway]; did you mean `data_dir`?",
    );
    assert_has(
        &errs,
        23,
        "unknown section `listener`; did you mean `listeners`?",
    );
    assert_eq!(errs.len(), 5, "{:#?}", lines(&errs));
    // Positions are reported in file order.
    let order: Vec<usize> = errs.iter().map(|d| d.line).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[test]
fn inline_secrets_get_a_pointed_hint() {
    let text = with_base(
        r#"
[[connections]]
name = "my"
type = "mysql"
address = "db:3306"
password = "hunter2"
allow_groups = ["x"]
"#,
    );
    let errs = errors(&text, &base_env());
    assert_has(&errs, 18, "use `password_env = \"VARIABLE\"`");
    assert!(!errs.iter().any(|d| d.message.contains("hunter2")));
}

#[test]
fn unknown_keys_in_nested_tables() {
    let text = with_base(
        r#"
[[rules]]
name = "r"
connections = { tag = { env = "prod" } }
action = "deny"

[[masking]]
name = "m"
columns = ["a.b"]
custom = [{ name = "order_id", regexp = "ORD-[0-9]+" }]
"#,
    );
    let errs = errors(&text, &base_env());
    assert_has(
        &errs,
        16,
        "unknown key `tag` in `connections` of rule `r`; did you mean `tags`?",
    );
    assert_has(
        &errs,
        22,
        "unknown key `regexp` in `custom` of masking policy `m`; did you mean `regex`?",
    );
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let text = with_base(
        r#"
[[connections]]
name = "pg"
type = "postgress"
address = "localhost"
sslmode = "strict"
allow_groups = ["x"]

[[rules]]
name = "bad"
connections = ["pg-prd"]
operations = ["select", "dorp"]
pattern = "(unclosed"
hours = "9-17"
action = "review"
timeout = "10 minutes"
min_approvals = 0

[[rules]]
name = "bad"
action = "block"

[[masking]]
name = "m"
detectors = ["emial", "order_id"]
strategy = "scramble"
"#,
    );
    let errs = errors(&text, &base_env());
    let expected: &[(usize, &str)] = &[
        (15, "duplicate connection name `pg` (first defined at line 8)"),
        (16, "`type` in [[connections]] must be one of \"postgres\", \"mysql\", \"ssh\", \"http\", \"kubernetes\", \"aws\", found \"postgress\"; did you mean `postgres`?"),
        (17, "address \"localhost\" of connection `pg`: expected host:port"),
        (18, "`sslmode` in [[connections]] must be one of"),
        (23, "rule `bad` references unknown connection `pg-prd`"),
        (24, "unknown operation \"dorp\" in rule `bad`; did you mean \"drop\"?"),
        (25, "`pattern` of rule `bad` is not a valid regular expression: unclosed group"),
        (26, "`hours` of rule `bad` \"9-17\""),
        (27, "rule `bad` has action = \"review\" but no `reviewers`"),
        (28, "`timeout` of rule `bad` \"10 minutes\""),
        (29, "`min_approvals` of rule `bad` must be at least 1"),
        (32, "duplicate rule name `bad` (first defined at line 22)"),
        (33, "`action` in [[rules]] must be one of \"allow\", \"deny\", \"review\", found \"block\""),
        (37, "unknown detector \"emial\" in masking policy `m`; did you mean \"email\"?"),
        (37, "unknown detector \"order_id\" in masking policy `m`; built-in detectors are"),
        (38, "`strategy` in [[masking]] must be one of \"redact\", \"partial\", \"hash\", \"null\", found \"scramble\""),
    ];
    for (line, needle) in expected {
        assert_has(&errs, *line, needle);
    }
    assert_eq!(errs.len(), expected.len(), "{:#?}", lines(&errs));
}

#[test]
fn service_account_token_problems() {
    let text = r#"
[[service_accounts]]
name = "short"
token_env = "SHORT"

[[service_accounts]]
name = "none"

[[service_accounts]]
name = "both"
token_env = "A"
token_file = "/run/secrets/a"

[[service_accounts]]
name = "from-file"
token_file = "/run/secrets/tok"

[[service_accounts]]
name = "copy"
token_env = "SAME"

[[service_accounts]]
name = "missing-file"
token_file = "/nope"

[[service_accounts]]
name = "bad name!"
token_env = "SAME"
"#;
    let env = StaticEnv::new()
        .with_var("SHORT", "abc")
        .with_var("SAME", "file-token-0123456789")
        .with_file("/run/secrets/tok", "file-token-0123456789\n");
    let errs = errors(text, &env);
    let expected: &[(usize, &str)] = &[
        (4, "the token of service account `short` (from environment variable SHORT) is 3 characters long; tokens must be at least 16 characters"),
        (6, "service account `none` has no token: set `token_env` or `token_file`"),
        (12, "service account `both` sets both `token_env` and `token_file`; keep only one"),
        (20, "service account `copy` has the same token as service account `from-file` (line 14)"),
        (24, "cannot read file /nope (referenced by service account `missing-file` token_file)"),
        (27, "service account name \"bad name!\" may use only letters, digits"),
        (28, "service account `bad name!` has the same token as service account `from-file` (line 14)"),
    ];
    for (line, needle) in expected {
        assert_has(&errs, *line, needle);
    }
    assert_eq!(errs.len(), expected.len(), "{:#?}", lines(&errs));
    assert!(!errs.iter().any(|d| d.message.contains("file-token")));
}

#[test]
fn empty_secrets_and_password_files() {
    let text = r#"
[[connections]]
name = "a"
type = "postgres"
address = "db:5432"
password_env = "EMPTY"
allow_groups = ["x"]

[[connections]]
name = "b"
type = "postgres"
address = "db:5432"
password_file = "/pw"
allow_groups = ["x"]
"#;
    let env = StaticEnv::new()
        .with_var("EMPTY", "")
        .with_file("/pw", "pa ss\r\n");
    let errs = errors(text, &env);
    assert_eq!(
        lines(&errs),
        [(
            6,
            "environment variable EMPTY is empty (referenced by connection `a` password_env)"
                .to_string()
        )]
    );
    let ok = load_str(
        &text.replace("EMPTY\"", "SET\""),
        "t.toml",
        &env.clone().with_var("SET", "pw"),
    )
    .unwrap();
    let b = ok.connection("b").unwrap().target.database().unwrap();
    assert_eq!(b.password.as_ref().unwrap().value.expose(), "pa ss");
}

#[test]
fn gateway_listeners_tls_audit_policy() {
    let text = r#"
[gateway]
data_dir = "/var/lib/airlock"
api_listen = "0.0.0.0:7700"
state_url = "postgres://u:pw@db/airlock"
log_format = "json"
allow_plaintext_tokens = true

[listeners]
postgres = "0.0.0.0:15432"

[tls]
cert_file = "/etc/airlock/cert.pem"
key_file = "/etc/airlock/key.pem"

[audit]
fsync = true

[policy]
default_action = "review"
default_write_action = "deny"
"#;
    let env = StaticEnv::new()
        .with_file("/etc/airlock/cert.pem", "c")
        .with_file("/etc/airlock/key.pem", "k");
    let c = load_str(text, "t.toml", &env).unwrap();
    assert_eq!(c.gateway.log_format, LogFormat::Json);
    assert!(c.gateway.allow_plaintext_tokens);
    assert_eq!(
        c.gateway.state_url.as_ref().unwrap().expose(),
        "postgres://u:pw@db/airlock"
    );
    assert_eq!(c.listeners.enabled().len(), 1);
    assert!(c.listeners.mysql.is_none());
    assert_eq!(c.audit.path, Path::new("/var/lib/airlock/audit.log"));
    assert!(c.audit.fsync);
    assert_eq!(c.policy.default_action, Action::Review);
    assert_eq!(c.policy.default_write_action, Action::Deny);
    assert!(!format!("{c:?}").contains("pw@db"));
    assert!(!c.summary().contains("pw@db"));

    let errs = errors(
        text,
        &StaticEnv::new().with_file("/etc/airlock/cert.pem", "c"),
    );
    assert_eq!(
        lines(&errs),
        [(
            14,
            "file /etc/airlock/key.pem (tls.key_file) does not exist".to_string()
        )]
    );
}

#[test]
fn gateway_value_errors() {
    let text = r#"
[gateway]
api_listen = "localhost:7700"
log_format = "xml"
allow_plaintext_tokens = "yes"

[listeners]
postgres = "127.0.0.1:15432"
mysql = "127.0.0.1:15432"
ssh = 22

[tls]
cert_file = "/c.pem"

[audit]
fsync = 1

[policy]
default_action = "permit"
"#;
    let errs = errors(text, &StaticEnv::new().with_file("/c.pem", "x"));
    let expected: &[(usize, &str)] = &[
        (3, "`api_listen` in [gateway] must be an IP address and port"),
        (4, "`log_format` in [gateway] must be one of \"text\", \"json\", found \"xml\""),
        (5, "`allow_plaintext_tokens` in [gateway] must be true or false, found string"),
        (9, "listeners.mysql uses 127.0.0.1:15432, which listeners.postgres already uses"),
        (10, "`ssh` in [listeners] must be a string, found integer"),
        (13, "`cert_file` is set but `key_file` is not"),
        (16, "`fsync` in [audit] must be true or false, found integer"),
        (19, "`default_action` in [policy] must be one of \"allow\", \"deny\", \"review\", found \"permit\""),
    ];
    for (line, needle) in expected {
        assert_has(&errs, *line, needle);
    }
    assert_eq!(errs.len(), expected.len(), "{:#?}", lines(&errs));
}

#[test]
fn wrong_section_shapes() {
    let text = r#"
gateway = "x"

[connections]
name = "a"
"#;
    let errs = errors(text, &StaticEnv::new());
    assert_has(
        &errs,
        2,
        "`gateway` must be a table: write it as a [gateway] section",
    );
    assert_has(
        &errs,
        4,
        "`connections` must be a list of tables: write each entry as a [[connections]] section",
    );
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors(
        "[gateway]\ndata_dir = \"x\"\napi_listen = \n",
        &StaticEnv::new(),
    );
    assert_eq!(errs[0].line, 3, "{:#?}", lines(&errs));
    let errs = errors(
        "[gateway]\ndata_dir = \"a\"\ndata_dir = \"b\"\n",
        &StaticEnv::new(),
    );
    assert_eq!(errs[0].line, 3, "{:#?}", lines(&errs));
}

#[test]
fn connection_selectors_both_shapes_and_warnings() {
    let text = with_base(
        r#"
[[connections]]
name = "api"
type = "http"
address = "https://api.internal"
tags = { env = "dev", team = "core" }
allow_identities = ["alice"]

[[rules]]
name = "by-name"
connections = ["pg", "api"]
action = "deny"

[[rules]]
name = "by-both"
connections = { names = ["api"], tags = { team = "core" } }
hours = "mon-fri 09:00-18:00"
pattern = "PG_SLEEP"
action = "allow"

[[rules]]
name = "nothing-matches"
connections = { tags = { env = "staging" } }
action = "deny"
reviewers = ["dba"]

[[rules]]
name = "approve"
action = "review"
reviewers = ["ai-agents"]
timeout = "1h30m"
min_approvals = 2
"#,
    );
    let c = load_str(&text, "t.toml", &base_env()).unwrap();
    assert_eq!(
        c.rules[0].connections.as_ref().unwrap().names,
        ["pg", "api"]
    );
    let both = c.rules[1].connections.as_ref().unwrap();
    assert_eq!(both.names, ["api"]);
    assert_eq!(both.tags.get("team").map(String::as_str), Some("core"));
    assert!(c.connection("api").unwrap().selected_by(both));
    assert!(!c.connection("pg").unwrap().selected_by(both));
    assert!(c.rules[1]
        .pattern
        .as_ref()
        .unwrap()
        .is_match("select PG_SLEEP(1)"));
    assert!(c.rules[1]
        .pattern
        .as_ref()
        .unwrap()
        .is_match("select pg_sleep(1)"));
    let hours = c.rules[1].hours.unwrap();
    assert_eq!(hours.weekdays(), [1, 2, 3, 4, 5]);
    assert!(hours.contains(10 * 60, 5) && !hours.contains(10 * 60, 6));
    assert_eq!(c.rules[3].timeout_secs, Some(5400));
    assert_eq!(c.rules[3].min_approvals, 2);
    assert_eq!(
        lines(&c.warnings),
        [
            (35, "no connection matches the `connections` of rule `nothing-matches` (tags env = \"staging\"); it applies to nothing for now".to_string()),
            (37, "`reviewers` of rule `nothing-matches` only applies to action = \"review\"; it is ignored".to_string()),
        ]
    );
}

#[test]
fn service_account_connection_limits() {
    let text = r#"
[[connections]]
name = "pg"
type = "postgres"
address = "db:5432"
allow_groups = ["g"]

[[service_accounts]]
name = "a"
groups = ["g"]
token_env = "T"
connections = ["pg", "pgg"]
"#;
    let errs = errors(text, &StaticEnv::new().with_var("T", "0123456789abcdef"));
    assert_eq!(
        lines(&errs),
        [(
            12,
            "service account `a` is limited to unknown connection `pgg`; did you mean `pg`?"
                .to_string()
        )]
    );
}

#[test]
fn masking_custom_detectors_and_columns() {
    let text = with_base(
        r#"
[[masking]]
name = "orders"
connections = ["pg"]
exempt_groups = ["dba"]
columns = ["public.orders.card", "*.ssn"]
detectors = ["email", "order_id"]
custom = [{ name = "order_id", regex = "ORD-[0-9]{6}" }]

[[masking]]
name = "broken"
columns = ["email", "a.b"]
custom = [{ name = "email", regex = "x" }, { name = "ok", regex = "[" }]

[[masking]]
name = "empty"
"#,
    );
    let errs = errors(&text, &base_env());
    let expected: &[(usize, &str)] = &[
        (24, "column \"email\" of masking policy `broken`: write columns as \"table.column\""),
        (25, "custom detector name \"email\" in masking policy `broken`"),
        (25, "`regex` of custom detector `ok` in masking policy `broken` is not a valid regular expression"),
        (27, "masking policy `empty` masks nothing"),
    ];
    for (line, needle) in expected {
        assert_has(&errs, *line, needle);
    }
    assert_eq!(errs.len(), expected.len(), "{:#?}", lines(&errs));

    let good: String = text.lines().take(21).collect::<Vec<_>>().join("\n");
    let c = load_str(&good, "t.toml", &base_env()).unwrap();
    let m = &c.masking[0];
    assert_eq!(m.detectors, [Detector::Email]);
    assert_eq!(m.custom[0].name, "order_id");
    assert!(m.custom[0].regex.is_match("ORD-123456"));
    assert_eq!(m.strategy, MaskStrategy::Redact);
    assert_eq!(m.exempt_groups, ["dba"]);
    assert_eq!(m.line, 14);
}

#[test]
fn secrets_never_appear_in_debug_or_summary() {
    let config = load_str(SPEC_EXAMPLE, "spec.toml", &spec_env()).unwrap();
    let debug = format!("{config:?}");
    let summary = config.summary();
    for text in [&debug, &summary] {
        assert!(!text.contains(CLAUDE_TOKEN));
        assert!(!text.contains(PG_PASSWORD));
    }
    assert!(debug.contains("<redacted>"));
    let secret = Secret::new("s3cr3t-value");
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(format!("{secret:?}"), "<redacted>");
}

#[test]
fn summary_lists_what_would_load() {
    let config = load_str(SPEC_EXAMPLE, "spec.toml", &spec_env()).unwrap();
    let s = config.summary();
    for needle in [
        "postgres  127.0.0.1:15432",
        "pg-prod  postgres  127.0.0.1:5432  database app  user app_rw  password from environment variable PG_PROD_PASSWORD",
        "may use: groups engineers, ai-agents; identities -; service accounts now: claude-agent",
        "claude-agent (agent)  groups: ai-agents  token from environment variable AIRLOCK_TOKEN_CLAUDE",
        "agents-read-only  deny  when agents, connections tags env=prod, writes",
        "review-unbounded-writes  review  when group engineers, operation update|delete, without WHERE",
        "reviewers dba, 1 approval within 600s",
        "customer-pii  partial  on connections tags env=prod for everyone",
        "total: 1 service account, 1 connection, 3 rules, 1 masking policy, 1 warning",
    ] {
        assert!(s.contains(needle), "summary lacks {needle:?}:\n{s}");
    }
}

#[test]
fn load_file_reports_unreadable_files() {
    let err = load_file(Path::new("/definitely/not/here.toml")).unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err
        .to_string()
        .starts_with("/definitely/not/here.toml: cannot read the config file"));
}

#[test]
fn load_file_reads_real_files_and_env() {
    let dir = std::env::temp_dir().join(format!("airlock-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "file-token-abcdefghijkl\n").unwrap();
    let config_file = dir.join("airlock.toml");
    std::fs::write(
        &config_file,
        format!(
            "[[service_accounts]]\nname = \"a\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let c = load_file(&config_file).unwrap();
    assert_eq!(
        c.service_accounts[0].token.value.expose(),
        "file-token-abcdefghijkl"
    );
    assert_eq!(c.origin, config_file.display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn references_to_an_invalid_connection_do_not_cascade() {
    let text = r#"
[[connections]]
name = "pg"
type = "postgres"
allow_groups = ["g"]

[[rules]]
name = "r"
connections = ["pg"]
action = "deny"
"#;
    let errs = errors(text, &StaticEnv::new());
    assert_eq!(
        lines(&errs),
        [(
            2,
            "[[connections]] is missing the required key `address`".to_string()
        )]
    );
}

#[test]
fn documentation_example_loads() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let config = load_str(&doc[start..end], "configuration.md", &spec_env()).unwrap();
    assert_eq!(config.rules.len(), 2);
    assert_eq!(config.masking.len(), 1);
}

/// Issue 16: a connection's `type` decides which keys it has (the target enum); a database key
/// on an ssh connection is an error on its line, naming what the type takes.
#[test]
fn keys_of_another_connection_type_are_errors_on_their_line() {
    let text = with_base(
        r#"
[[connections]]
name = "box"
type = "ssh"
address = "box.internal:22"
database = "app"
sslmode = "require"
allow_groups = ["engineers"]
"#,
    );
    let errs = errors(&text, &base_env());
    assert_has(
        &errs,
        18,
        "key `database` does not apply to a ssh connection (connection `box` takes \"name\", \"type\", \"address\"",
    );
    assert_has(
        &errs,
        19,
        "key `sslmode` does not apply to a ssh connection",
    );
}
