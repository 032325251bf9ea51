//! The offline commands, as a user runs them.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

fn airlock(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env_remove("AIRLOCK_DEMO_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn quickstart() -> String {
    format!(
        "{}/../../examples/quickstart.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn check_reports_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[listeners]\npostgres = \"127.0.0.1:99999\"\n\n[[connections]]\nname = \"pg\"\ntype = \"postgres\"\nadress = \"x:1\"\n\n[[rules]]\nname = \"r\"\noperations = [\"dropp\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let (code, out) = airlock(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.toml:2:12:"), "{out}");
    assert!(
        out.contains(
            "bad.toml:7:1: unknown key `adress` in [[connections]]; did you mean `address`?"
        ),
        "{out}"
    );
    assert!(
        out.contains("bad.toml:11:15:") && out.contains("did you mean \"drop\""),
        "{out}"
    );
}

#[test]
fn check_names_missing_secrets() {
    let (code, out) = airlock(&["check", "--config", &quickstart()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("environment variable AIRLOCK_DEMO_TOKEN is not set"),
        "{out}"
    );
}

#[test]
fn policy_test_explains_the_decision_and_sets_the_exit_code() {
    let q = quickstart();
    let base = [
        "policy",
        "test",
        "--config",
        q.as_str(),
        "--identity",
        "demo-agent",
        "--connection",
        "pg-local",
    ];
    let (code, out) = airlock(&[&base[..], &["select 1; DROP/**/TABLE users"]].concat());
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("flags:      multi_statement"), "{out}");
    assert!(
        out.contains("statement 2: drop (writes) reads [] writes [users]"),
        "{out}"
    );
    assert!(
        out.contains("decision:   deny by rule `no-destructive-ddl`"),
        "{out}"
    );

    let (code, out) =
        airlock(&[&base[..], &["--json", "select * from orders where id = 1"]].concat());
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["action"], "allow");
    assert_eq!(v["classification"]["statements"][0]["reads"][0], "orders");

    let (code, out) = airlock(
        &[
            &base[..],
            &["do $$ begin execute 'drop table users'; end $$"],
        ]
        .concat(),
    );
    assert_eq!(code, 4, "a DO block must fail closed: {out}");

    let (code, out) = airlock(&[
        "policy",
        "test",
        "--config",
        &q,
        "--identity",
        "nobody",
        "--connection",
        "pg-local",
        "select 1",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("identity `nobody` not found; known: demo-agent"),
        "{out}"
    );
}

#[test]
fn login_without_a_gateway_says_how_to_point_at_one() {
    let (code, out) = airlock(&["login", "--api", "http://127.0.0.1:9"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("cannot reach the airlock API"), "{out}");
    assert!(out.contains("set --api or AIRLOCK_API"), "{out}");
}

/// Reading the audit trail with the gateway's config needs only its paths, not its secrets: an
/// auditor has the file but not the agents' tokens.
#[test]
fn read_only_commands_take_a_config_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("audit.log"), "").unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ndata_dir = \"{}\"\n\n[[service_accounts]]\nname = \"agent\"\ntoken_env = \"AIRLOCK_TEST_UNSET_TOKEN\"\n",
            data.display()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let (code, out) = airlock(&["sessions", "list", "--config", config]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("AIRLOCK_TEST_UNSET_TOKEN"), "{out}");
    let (code, out) = airlock(&["audit", "verify", "--config", config]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 events, chain intact"), "{out}");
    // Serving still needs every secret.
    let (code, out) = airlock(&["check", "--config", config]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("AIRLOCK_TEST_UNSET_TOKEN is not set"), "{out}");
    // The paths part is still validated, with its line.
    std::fs::write(&path, "[gateway]\ndata_dirr = \"x\"\n").unwrap();
    let (code, out) = airlock(&["sessions", "list", "--config", config]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("gateway.toml:2:1: unknown key `data_dirr`"),
        "{out}"
    );
}

/// Issue 16: a connection selector means the same in rules as in masking and the report: every
/// listed tag *and* one of the names. Rules once took "name *or* tags", so an allow rule meant
/// for `a` opened `b`, tagged the same.
#[test]
fn a_rule_for_one_named_connection_does_not_open_another_with_the_same_tags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.toml");
    let mut config = String::from(
        r#"
[gateway]
data_dir = "./data"

[listeners]
postgres = "127.0.0.1:15432"

[policy]
default_action = "deny"

[[service_accounts]]
name = "ci"
groups = ["ci"]
token_env = "AIRLOCK_CLI_TEST_TOKEN"

[[rules]]
name = "only-a"
connections = { names = ["a"], tags = { team = "core" } }
action = "allow"
"#,
    );
    for name in ["a", "b"] {
        config.push_str(&format!(
            "\n[[connections]]\nname = \"{name}\"\ntype = \"postgres\"\naddress = \"127.0.0.1:5432\"\ntags = {{ team = \"core\" }}\nallow_groups = [\"ci\"]\n"
        ));
    }
    std::fs::write(&path, config).unwrap();
    let p = path.to_str().unwrap();
    let decide = |conn: &str| {
        airlock(&[
            "policy",
            "test",
            "--config",
            p,
            "--identity",
            "ci",
            "--connection",
            conn,
            "select 1",
        ])
    };
    let (code, out) = decide("a");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("allow by rule `only-a`"), "{out}");
    let (code, out) = decide("b");
    assert_eq!(code, 4, "the rule names `a` only: {out}");
}
