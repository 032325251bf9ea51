//! What `airlock check` prints. Names where secrets come from, never their values.

use crate::model::*;
use airlock_core::policy::ConnectionMatch;
use std::fmt::Write;

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn selector(m: &Option<ConnectionMatch>) -> String {
    let Some(m) = m else {
        return "all connections".to_string();
    };
    let mut parts = Vec::new();
    if !m.names.is_empty() {
        parts.push(m.names.join(", "));
    }
    if !m.tags.is_empty() {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("tags {}", tags.join(",")));
    }
    format!("connections {}", parts.join(" with "))
}

impl Config {
    /// A human-readable overview: listeners, connections and who may use them, service
    /// accounts, rules, masking policies, warnings and counts.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = self.write_summary(&mut out);
        out
    }

    fn write_summary(&self, out: &mut String) -> std::fmt::Result {
        let g = &self.gateway;
        writeln!(out, "config {}", self.origin)?;
        writeln!(out, "gateway")?;
        writeln!(out, "  data_dir    {}", g.data_dir.display())?;
        writeln!(out, "  api_listen  {}", g.api_listen)?;
        if g.state_url.is_some() {
            writeln!(out, "  state_url   set (value not shown)")?;
        }
        writeln!(out, "  log_format  {}", g.log_format.as_str())?;
        writeln!(
            out,
            "  tokens over plain TCP from non-loopback peers: {}",
            if g.allow_plaintext_tokens {
                "accepted"
            } else {
                "refused"
            }
        )?;
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => writeln!(
                out,
                "tls         cert {} key {}",
                cert.display(),
                key.display()
            )?,
            _ => writeln!(
                out,
                "tls         self-signed certificate generated in {}",
                g.data_dir.display()
            )?,
        }
        writeln!(
            out,
            "audit       {} (fsync {})",
            self.audit.path.display(),
            if self.audit.fsync { "on" } else { "off" }
        )?;
        writeln!(
            out,
            "policy      default {}, default for writes {}",
            self.policy.default_action, self.policy.default_write_action
        )?;

        writeln!(out, "listeners")?;
        let enabled = self.listeners.enabled();
        if enabled.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for (name, addr) in enabled {
            writeln!(out, "  {name:<9} {addr}")?;
        }

        writeln!(out, "service accounts ({})", self.service_accounts.len())?;
        for s in &self.service_accounts {
            writeln!(
                out,
                "  {}{}  groups: {}  token from {}  connections: {}",
                s.name,
                if s.agent { " (agent)" } else { "" },
                list_or(&s.groups, "-"),
                s.token.source,
                s.connections
                    .as_ref()
                    .map(|c| list_or(c, "none"))
                    .unwrap_or_else(|| "as allowed by each connection".to_string())
            )?;
        }

        writeln!(out, "connections ({})", self.connections.len())?;
        for c in &self.connections {
            let mut line = format!(
                "  {}  {}  {}",
                c.name,
                c.kind().as_str(),
                c.target.address()
            );
            if let Some(d) = c.target.database() {
                if let Some(db) = &d.database {
                    let _ = write!(line, "  database {db}");
                }
                if let Some(user) = &d.user {
                    let _ = write!(line, "  user {user}");
                }
                match &d.password {
                    Some(p) => {
                        let _ = write!(line, "  password from {}", p.source);
                    }
                    None => line.push_str("  no password"),
                }
                let _ = write!(line, "  sslmode {}", d.sslmode.as_str());
            }
            if !c.tags.is_empty() {
                let tags: Vec<String> = c.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(line, "  tags {}", tags.join(","));
            }
            writeln!(out, "{line}")?;
            let accounts: Vec<String> = self
                .service_accounts
                .iter()
                .filter(|s| s.limited_to(&c.name) && c.allows(&s.identity()))
                .map(|s| s.name.clone())
                .collect();
            writeln!(
                out,
                "    may use: groups {}; identities {}; service accounts now: {}",
                list_or(&c.allow_groups, "-"),
                list_or(&c.allow_identities, "-"),
                list_or(&accounts, "none")
            )?;
        }

        writeln!(out, "rules ({})", self.rules.len())?;
        for r in &self.rules {
            writeln!(
                out,
                "  {}  {}  when {}",
                r.name,
                r.action,
                rule_condition(r)
            )?;
            if r.action == airlock_core::Action::Review {
                writeln!(
                    out,
                    "    reviewers {}, {} within {}s",
                    r.reviewers.join(", "),
                    plural(r.min_approvals as usize, "approval", "approvals"),
                    r.timeout_secs.unwrap_or(0)
                )?;
            }
        }

        writeln!(out, "masking ({})", self.masking.len())?;
        for m in &self.masking {
            let mut what = Vec::new();
            if !m.columns.is_empty() {
                what.push(format!("columns {}", m.columns.join(", ")));
            }
            let mut detectors: Vec<String> =
                m.detectors.iter().map(|d| d.as_str().to_string()).collect();
            detectors.extend(m.custom.iter().map(|c| format!("{} (custom)", c.name)));
            if !detectors.is_empty() {
                what.push(format!("detectors {}", detectors.join(", ")));
            }
            let mut who = String::from("everyone");
            if !m.identities.is_empty() || !m.groups.is_empty() {
                let mut names = m.identities.clone();
                names.extend(m.groups.iter().map(|g| format!("group {g}")));
                who = names.join(", ");
            }
            if !m.exempt_groups.is_empty() {
                let _ = write!(who, " except groups {}", m.exempt_groups.join(", "));
            }
            writeln!(
                out,
                "  {}  {}  on {} for {}: {}",
                m.name,
                m.strategy.as_str(),
                selector(&m.connections),
                who,
                what.join("; ")
            )?;
        }

        if !self.warnings.is_empty() {
            writeln!(out, "warnings ({})", self.warnings.len())?;
            for w in &self.warnings {
                writeln!(out, "  {w}")?;
            }
        }
        writeln!(
            out,
            "total: {}, {}, {}, {}, {}",
            plural(
                self.service_accounts.len(),
                "service account",
                "service accounts"
            ),
            plural(self.connections.len(), "connection", "connections"),
            plural(self.rules.len(), "rule", "rules"),
            plural(self.masking.len(), "masking policy", "masking policies"),
            plural(self.warnings.len(), "warning", "warnings"),
        )
    }
}

fn rule_condition(r: &RuleConfig) -> String {
    let mut parts = Vec::new();
    if !r.identities.is_empty() {
        parts.push(format!("identity {}", r.identities.join("|")));
    }
    if !r.groups.is_empty() {
        parts.push(format!("group {}", r.groups.join("|")));
    }
    match r.agents {
        Some(true) => parts.push("agents".to_string()),
        Some(false) => parts.push("non-agents".to_string()),
        None => {}
    }
    if r.connections.is_some() {
        parts.push(selector(&r.connections));
    }
    if !r.operations.is_empty() {
        let ops: Vec<&str> = r.operations.iter().map(|o| o.as_str()).collect();
        parts.push(format!("operation {}", ops.join("|")));
    }
    match r.writes {
        Some(true) => parts.push("writes".to_string()),
        Some(false) => parts.push("read-only".to_string()),
        None => {}
    }
    if !r.objects.is_empty() {
        parts.push(format!("objects {}", r.objects.join("|")));
    }
    if r.without_where {
        parts.push("without WHERE".to_string());
    }
    if let Some(p) = &r.pattern {
        parts.push(format!("text matches /{}/", p.as_str()));
    }
    if let Some(h) = &r.hours {
        parts.push(format!("during {h}"));
    }
    if parts.is_empty() {
        "always".to_string()
    } else {
        parts.join(", ")
    }
}
