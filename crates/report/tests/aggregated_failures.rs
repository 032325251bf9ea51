//! Failed logins the gateway audited in aggregate (one event per source and window with a
//! count per claimed name) count as many failures as they stand for.

mod common;

use airlock_report::build;
use airlock_store::{AuditEvent, EventKind};
use common::*;

#[test]
fn an_aggregated_auth_failure_counts_each_failure_of_its_window() {
    let config = config();
    let opts = options(&config);
    let mut h = history();
    let before = {
        let r = build(options(&config), h.events.iter().map(|(s, e)| (*s, e)));
        r.identities
            .iter()
            .find(|i| i.name == "etl")
            .map(|i| i.auth_failures)
            .unwrap()
    };
    let mut ev = AuditEvent::new(EventKind::AuthFailure);
    ev.ts_us = NOW_US - 1_000_000;
    ev.detail = Some(serde_json::json!({
        "peer": "10.9.9.9", "aggregated": true, "count": 12,
        "identities": {"etl": 7, "no-such-account": 5},
    }));
    h.events.push((h.events.len() as u64 + 1, ev));
    let r = build(opts, h.events.iter().map(|(s, e)| (*s, e)));
    let etl = r.identities.iter().find(|i| i.name == "etl").unwrap();
    assert_eq!(etl.auth_failures, before + 7);
}
