//! Failed logins never lock out a client presenting a valid token, and they are audited in
//! aggregate: through the real gateway, with raw PostgreSQL startups (many at once, from chosen
//! loopback addresses) and the real psql.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};
use support::*;

/// `threads × each` wrong logins from `source`, several at once, thread `t` claiming
/// `users[t % users.len()]`; their answers.
fn wrong_logins(
    port: u16,
    source: &str,
    users: &[&str],
    threads: usize,
    each: usize,
) -> Vec<String> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let source = source.to_owned();
            let user = users[t % users.len()].to_owned();
            std::thread::spawn(move || {
                (0..each)
                    .map(|i| {
                        try_login(
                            port,
                            &source,
                            &user,
                            &format!("wrong-token-{t}-{i}-0123456789"),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// The `auth_failure` events of the audit log.
fn auth_failures(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.audit_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| l["event"].clone())
        .filter(|e| e["kind"] == "auth_failure")
        .collect()
}

fn count(e: &serde_json::Value) -> u64 {
    e["detail"]["count"].as_u64().unwrap_or(1)
}

#[test]
fn a_valid_token_is_admitted_after_failures_from_its_address_and_against_its_name() {
    let gw = Gateway::start("");
    // 50 wrong tokens from 127.0.0.1, all claiming `agent`: past the per-source (10) and the
    // per-identity (20) limits.
    let answers = wrong_logins(gw.port, "127.0.0.1", &["agent"], 10, 5);
    assert_eq!(answers.len(), 50);
    assert!(
        answers.iter().all(|a| a.contains("28P01")),
        "every wrong token is refused: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.contains("too many failed authentications")),
        "failures past the limit say so: {answers:?}"
    );

    // The right token, from the same address and under the same name, gets in at once (no
    // lockout, no delay).
    let started = Instant::now();
    assert_eq!(try_login(gw.port, "127.0.0.1", "agent", TOKEN), "OK");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the valid login took {took:?}"
    );
    let o = gw.psql("select 'admitted' as s;");
    assert!(text(&o).contains("admitted"), "{}", text(&o));

    // Failures are still throttled: another wrong token from the same address waits out the
    // delay and hears why.
    let started = Instant::now();
    let e = try_login(
        gw.port,
        "127.0.0.1",
        "agent",
        "wrong-token-once-more-0123456789",
    );
    assert!(e.contains("too many failed authentications"), "{e}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "a failure past the limit is delayed ({:?})",
        started.elapsed()
    );
    // Against the name from a fresh address: the identity's limit applies to wrong tokens...
    let e = try_login(
        gw.port,
        "127.0.0.7",
        "agent",
        "wrong-token-elsewhere-0123456789",
    );
    assert!(
        e.contains("too many failed authentications for identity `agent`"),
        "{e}"
    );
    // ...and never to the right one.
    assert_eq!(try_login(gw.port, "127.0.0.8", "agent", TOKEN), "OK");
}

#[test]
fn repeated_failed_logins_are_one_audit_event_per_source_and_window() {
    let gw = Gateway::start("");
    let started = Instant::now();
    // 200 wrong logins from one address, under a few names.
    let answers = wrong_logins(gw.port, "127.0.0.1", &["agent", "nobody"], 40, 5);
    let attack = started.elapsed();
    assert_eq!(answers.len(), 200);
    assert!(answers.iter().all(|a| a.contains("28P01")), "{answers:?}");
    // A success in the middle of it all is its own event.
    let o = gw.psql("select 1;");
    assert!(o.status.success(), "{}", text(&o));

    // The aggregate of a window is written when the window (10 s) ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = auth_failures(&gw);
        if events.iter().map(count).sum::<u64>() >= 200 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let total: u64 = events.iter().map(count).sum();
    assert_eq!(
        total, 200,
        "the counts add up to every failure: {events:#?}"
    );
    // One window per 10 s of attack, each an individual first event and one aggregate.
    let windows = attack.as_secs() / 10 + 1;
    assert!(
        events.len() as u64 <= 2 * windows,
        "{} events for {attack:?} of failures: {events:#?}",
        events.len()
    );
    let first = &events[0];
    assert_eq!(count(first), 1);
    assert!(first["detail"]["reason"].as_str().is_some(), "{first}");
    let aggregate = events
        .iter()
        .find(|e| e["detail"]["aggregated"] == true)
        .expect("an aggregate event");
    assert_eq!(aggregate["detail"]["peer"], "127.0.0.1");
    let names = &aggregate["detail"]["identities"];
    assert!(
        names["agent"].as_u64().unwrap_or(0) + names["nobody"].as_u64().unwrap_or(0)
            == count(aggregate),
        "the claimed names are tallied: {aggregate}"
    );
    assert!(
        gw.audit_log().contains("\"kind\":\"session_start\""),
        "the success is recorded"
    );
}
