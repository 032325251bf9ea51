//! `[[rules]]` as configured → the policy engine's rules.

use airlock_config::Config;
use airlock_core::policy::{PolicySet, Rule, TimeWindow};

pub fn compile_policy(config: &Config) -> PolicySet {
    let rules = config
        .rules
        .iter()
        .map(|r| Rule {
            name: r.name.clone(),
            identities: r.identities.clone(),
            groups: r.groups.clone(),
            agents: r.agents,
            connections: r.connections.clone(),
            operations: r.operations.clone(),
            writes: r.writes,
            objects: r.objects.clone(),
            without_where: r.without_where,
            pattern: r.pattern.clone(),
            hours: r.hours.and_then(|h| {
                let days: Vec<u8> = (1..=7u8).filter(|d| h.days & (1 << (d - 1)) != 0).collect();
                // Config validation already checked the window; a failure here would be a bug,
                // and the rule then matches at all hours (the stricter reading).
                TimeWindow::new(h.start_minute, h.end_minute % 1440, days).ok()
            }),
            action: r.action,
            message: r.message.clone(),
            reviewers: r.reviewers.clone(),
            timeout_secs: r.timeout_secs,
            min_approvals: r.min_approvals,
        })
        .collect();
    PolicySet {
        rules,
        default_action: config.policy.default_action,
        default_write_action: config.policy.default_write_action,
        ..PolicySet::default()
    }
}
