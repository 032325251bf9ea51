//! Session capacity (issue 15, item 4): the open-file soft limit is raised at start, the
//! capacity it allows is reported, and clients over it are refused at once with their
//! protocol's own "too many connections" error instead of hanging.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The listener accepts (its socket is bound first) a moment before `gateway_start` is written.
fn gateway_start_detail(gw: &Gateway) -> serde_json::Value {
    wait_until("gateway_start", 10, || {
        audit_events(gw)
            .into_iter()
            .find(|e| e["kind"] == "gateway_start")
            .map(|e| e["detail"].clone())
    })
}

#[test]
fn the_soft_open_file_limit_is_raised_and_the_capacity_follows_the_limit() {
    // Soft limit 200, hard limit left as it is: the gateway raises the soft one.
    let raised = Gateway::start_with("", "", Some("ulimit -S -n 200"));
    let detail = gateway_start_detail(&raised);
    assert!(
        detail["open_file_limit"].as_u64().unwrap_or(0) > 200,
        "{detail}"
    );
    // Both limits at 200: (200 - 128 reserved) / 3 descriptors per session.
    let capped = Gateway::start_with("", "", Some("ulimit -n 200"));
    let detail = gateway_start_detail(&capped);
    assert_eq!(detail["open_file_limit"], 200, "{detail}");
    assert_eq!(detail["max_sessions"], 24, "{detail}");
}

#[test]
fn clients_over_capacity_are_refused_at_once_in_their_protocol() {
    let gw = Gateway::launch(
        |data, port, api_port| {
            with_gateway_keys(
                base_config(data, port, api_port, "", ""),
                "max_sessions = 2",
            )
        },
        None,
    );
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            Command::new("psql")
                .arg(gw.agent())
                .args(["-X", "-c", "select pg_sleep(4)"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_events(&gw)
        .iter()
        .filter(|e| e["kind"] == "session_start")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the two sessions never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let out = text(&gw.psql("select 1;"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once"
    );
    assert!(out.contains("maximum of 2 sessions"), "{out}");
    for mut s in sleepers {
        s.wait().unwrap();
    }
    // Places come back when sessions end.
    let out = text(&gw.psql("select 'after' as again;"));
    assert!(out.contains("after"), "{out}");
}

#[test]
fn a_recording_that_cannot_be_written_is_an_audit_event() {
    let gw = Gateway::start("");
    // Today's recording directory is a file: the recording cannot be created.
    let today = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    let today = String::from_utf8_lossy(&today.stdout).trim().to_owned();
    let recordings = gw.dir.path().join("data").join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    std::fs::write(recordings.join(&today), b"in the way").unwrap();
    let o = gw.psql("select 'recorded?' as q;");
    assert!(text(&o).contains("recorded?"), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let failed = audit_events(&gw)
            .into_iter()
            .find(|e| !e["detail"]["recording_failed"].is_null());
        if let Some(e) = failed {
            assert!(
                e["session_id"].as_str().unwrap_or("").starts_with("s-"),
                "{e}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recording_failed event:\n{}",
            gw.audit_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sockets_that_never_finish_their_handshake_cannot_fill_the_capacity() {
    let gw = Gateway::start("");
    // Round 4: idle sockets from one address held every place. Now one address may hold 64
    // handshakes; the 65th connection from it is refused, others are not affected.
    let idle: Vec<_> = (0..64)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let out = text(&gw.psql("select 1;"));
    assert!(out.contains("still in their handshake"), "{out}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = text(&gw.psql("select 'served' as again;"));
        if out.contains("served") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
