//! Operator details: a private data_dir, a plain-text log when stderr is not a terminal, what
//! the gateway's own log says about failures (rate-limited), upstream errors that name the
//! connection and not the host, and a failed start that leaves no trace.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file and directory under `dir` (not following symlinks).
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn everything_in_data_dir_is_private() {
    // A data_dir an older version left open, with an audit log readable by everyone.
    let gw = Gateway::launch(
        |data, port, api_port| {
            std::fs::create_dir_all(data).unwrap();
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
            let log = data.join("audit.log");
            std::fs::write(&log, "").unwrap();
            std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
            base_config(data, port, api_port, "", "")
        },
        None,
    );
    let o = gw.psql("select 1;");
    assert!(o.status.success(), "{}", text(&o));
    let data = gw.dir.path().join("data");
    // The indexer has written state.db (and its WAL) within a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("state.db-wal").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(mode(&data), 0o700, "data_dir");
    assert_eq!(mode(&data.join("audit.log")), 0o600, "audit.log");
    assert_eq!(mode(&data.join("state.db")), 0o600, "state.db");
    let mut all = Vec::new();
    walk(&data, &mut all);
    assert!(all.len() > 5, "{all:?}");
    let open: Vec<String> = all
        .iter()
        .filter(|p| mode(p) & 0o077 != 0)
        .map(|p| format!("{} {:o}", p.display(), mode(p)))
        .collect();
    assert!(open.is_empty(), "readable by others: {open:#?}");
}

/// `airlock serve` on `config` with stderr to a file and `AIRLOCK_LOG=info`.
fn serve_logging(config: &Path, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("AIRLOCK_TEST_TOKEN", TOKEN)
        .env("AIRLOCK_TEST_OUTSIDER_TOKEN", OUTSIDER_TOKEN)
        .env("AIRLOCK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn airlock")
}

#[test]
fn the_log_is_plain_text_and_says_what_failed_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (port, api_port, dead) = (free_port(), free_port(), free_port());
    let down = down_connection(dead);
    let config = dir.path().join("airlock.toml");
    std::fs::write(
        &config,
        base_config(&dir.path().join("data"), port, api_port, &down, ""),
    )
    .unwrap();
    let log = dir.path().join("airlock.log");
    let mut child = serve_logging(&config, &log);
    wait_listening(port);

    // 12 wrong tokens from one address: one line, not twelve.
    let wrong = format!(
        "host=127.0.0.1 port={port} user=agent password=wrong-0123456789 dbname=pg-local sslmode=disable"
    );
    for _ in 0..12 {
        let o = psql(&wrong, "select 1;");
        assert!(!o.status.success());
    }
    // An upstream that is down, three times: the client hears the connection's name only.
    let conn = format!(
        "host=127.0.0.1 port={port} user=agent password={TOKEN} dbname=pg-down sslmode=disable"
    );
    for _ in 0..3 {
        let o = psql(&conn, "select 1;");
        let t = text(&o);
        assert!(
            t.contains("could not open upstream connection `pg-down`"),
            "{t}"
        );
        assert!(
            !t.contains(&dead.to_string()),
            "the upstream's port leaked: {t}"
        );
        assert!(
            !t.contains("127.0.0.1:"),
            "the upstream's address leaked: {t}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("airlock is serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {text}"
    );
    assert_eq!(
        text.matches("authentication failed").count(),
        1,
        "one line per address and window: {text}"
    );
    assert_eq!(
        text.matches("could not open the upstream connection")
            .count(),
        1,
        "one line per connection and interval: {text}"
    );
    assert!(text.contains("pg-down"), "{text}");
}

#[test]
fn an_upstream_that_is_down_is_named_without_its_address_mysql() {
    let dead = free_port();
    let gw = Gateway::start_mysql(&format!(
        r#"
[[connections]]
name = "my-down"
type = "mysql"
address = "127.0.0.1:{dead}"
database = "test"
user = "root"
sslmode = "disable"
allow_groups = ["ai-agents"]
"#
    ));
    let o = gw.mysql_as("agent", TOKEN, "my-down", "select 1;");
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        !t.contains(&dead.to_string()),
        "the upstream's port leaked: {t}"
    );
    // What the adapter sends the client is also the session's end reason in the audit log.
    let audit = gw.audit_log();
    assert!(
        audit.contains("cannot open connection `my-down`"),
        "{audit}"
    );
    assert!(
        !audit.contains(&dead.to_string()),
        "the upstream's port leaked: {audit}"
    );
}

#[test]
fn a_start_that_cannot_bind_prints_no_token_and_audits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let data = dir.path().join("data");
    let config = dir.path().join("airlock.toml");
    std::fs::write(&config, base_config(&data, port, free_port(), "", "")).unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("AIRLOCK_TEST_TOKEN", TOKEN)
            .env("AIRLOCK_TEST_OUTSIDER_TOKEN", OUTSIDER_TOKEN)
            .env("AIRLOCK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run().wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains(&format!(
            "binding the postgres listener to 127.0.0.1:{port}"
        )),
        "{all}"
    );
    assert!(!all.contains("bootstrap admin token"), "{all}");
    assert!(!data.join("admin-token.sha256").exists());
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap_or_default();
    assert!(
        !audit.contains("gateway_start") && !audit.contains("gateway_stop"),
        "{audit}"
    );

    // Once the port is free, the start succeeds and shows the token (so the check above
    // could have seen one).
    drop(busy);
    let mut child = run();
    wait_listening(port);
    // The socket listens from the first moment; the token is shown before gateway_start.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .contains("gateway_start")
    {
        assert!(Instant::now() < deadline, "no gateway_start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bootstrap admin token"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert_eq!(audit.matches("gateway_start").count(), 1, "{audit}");
}
