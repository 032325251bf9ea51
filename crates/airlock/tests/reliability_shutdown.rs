//! SIGTERM ends sessions gracefully: no new connections, clients told in their protocol, the
//! running statement stopped upstream (MySQL), `session_end` and `gateway_stop` written, all
//! within `[gateway] shutdown_grace`.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `airlock serve` on `config_text` (written to `dir`), waiting until `port` accepts.
fn serve(dir: &Path, config_text: &str, port: u16) -> Child {
    let config = dir.join("airlock.toml");
    std::fs::write(&config, config_text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("AIRLOCK_TEST_TOKEN", TOKEN)
        .env("AIRLOCK_TEST_OUTSIDER_TOKEN", OUTSIDER_TOKEN)
        .env("AIRLOCK_TEST_DEV_TOKEN", DEV_TOKEN)
        .env("AIRLOCK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_listening(port);
    child
}

fn with_grace(config: String, grace: &str) -> String {
    with_gateway_keys(config, &format!("shutdown_grace = \"{grace}\""))
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Waits up to `limit` for the child to exit; its exit status.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(data: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| l["event"].clone())
        .collect()
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn sigterm_ends_a_running_postgres_session_with_57p01_and_writes_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (port, api_port) = (free_port(), free_port());
    let data = dir.path().join("data");
    let mut gw = serve(
        dir.path(),
        &with_grace(base_config(&data, port, api_port, "", ""), "5s"),
        port,
    );
    let marker = unique("shutdown_pg");
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=agent password={TOKEN} dbname=pg-local sslmode=disable application_name={marker}"
    );
    let client = Command::new("psql")
        .arg(&conninfo)
        .args(["-X", "-c", "select pg_sleep(30)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = format!(
        "select count(*) from pg_stat_activity where application_name = '{marker}' and query like '%pg_sleep%' and state = 'active'"
    );
    wait_until("pg_sleep to run upstream", Duration::from_secs(20), || {
        direct(&running) == "1"
    });

    let started = Instant::now();
    sigterm(&gw);
    let status = wait_exit(&mut gw, Duration::from_secs(5));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    let out = client.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("the gateway is shutting down"),
        "the client is told why: {said}"
    );
    assert!(
        took < Duration::from_secs(3),
        "sessions end at once, not after the grace period: {took:?}"
    );

    let events = events(&data);
    let kinds = kinds(&events);
    let cut = events
        .iter()
        .position(|e| e["detail"]["session_cut"] == "gateway shutting down")
        .unwrap_or_else(|| panic!("no session_cut: {kinds:?}"));
    let end = kinds
        .iter()
        .position(|k| k == "session_end")
        .unwrap_or_else(|| panic!("no session_end: {kinds:?}"));
    let stop = kinds
        .iter()
        .position(|k| k == "gateway_stop")
        .unwrap_or_else(|| panic!("no gateway_stop: {kinds:?}"));
    assert!(cut < end && end < stop, "{kinds:?}");
}

#[test]
fn sigterm_ends_a_running_mysql_statement_upstream_and_tells_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (port, api_port) = (free_port(), free_port());
    let data = dir.path().join("data");
    let mut gw = serve(
        dir.path(),
        &with_grace(mysql_config(&data, port, api_port, ""), "5s"),
        port,
    );
    let marker = unique("shutdown_my");
    let p = format!("-P{port}");
    let pass = format!("-p{TOKEN}");
    let client = Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &p,
            "-uagent",
            &pass,
            "-Dmy-local",
            "--skip-ssl",
            "--batch",
        ])
        .arg("-e")
        .arg(format!("select sleep(30) as {marker}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = format!(
        "select count(*) from information_schema.processlist where info like '%sleep(30) as {marker}%' and info not like '%processlist%'"
    );
    wait_until("sleep to run upstream", Duration::from_secs(20), || {
        direct_mysql(&running) == "1"
    });

    sigterm(&gw);
    let status = wait_exit(&mut gw, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    let out = client.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("the gateway is shutting down"), "{said}");
    // The statement does not go on running upstream.
    wait_until(
        "the upstream statement to end",
        Duration::from_secs(5),
        || direct_mysql(&running) == "0",
    );
    let kinds = kinds(&events(&data));
    let end = kinds.iter().position(|k| k == "session_end");
    let stop = kinds.iter().position(|k| k == "gateway_stop");
    assert!(end.is_some() && end < stop, "{kinds:?}");
}

#[test]
fn the_grace_period_bounds_the_shutdown() {
    // A client stuck in its handshake holds nothing up for longer than the grace period.
    let dir = tempfile::tempdir().unwrap();
    let (port, api_port) = (free_port(), free_port());
    let data = dir.path().join("data");
    let mut gw = serve(
        dir.path(),
        &with_grace(base_config(&data, port, api_port, "", ""), "2s"),
        port,
    );
    // Connected, never sends a startup packet (the handshake timeout is 30 s).
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    sigterm(&gw);
    let status = wait_exit(&mut gw, Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(kinds(&events(&data)).contains(&"gateway_stop".to_owned()));
}
