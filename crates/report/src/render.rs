//! Markdown, CSV, JSON and HTML renderings of a [`Report`]. Output depends only on the report
//! (no clock, no map iteration order), so it can be compared byte for byte.

use crate::model::*;
use crate::time::{fmt_duration, fmt_time};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Csv,
    Json,
    Html,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "md" | "markdown" => Some(Format::Markdown),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "html" => Some(Format::Html),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Markdown => markdown(report),
        Format::Csv => csv(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Html => html(report),
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    // Largest first, then by name, so the objects that matter lead.
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn when(us: Option<i64>) -> String {
    us.map(fmt_time).unwrap_or_else(|| "never".into())
}

fn kind_label(i: &IdentityReport) -> String {
    let kind = match i.kind.as_str() {
        "service" => "service account",
        "human" => "human",
        "workload" => "workload",
        other => other,
    };
    if i.agent {
        format!("{kind}, AI agent")
    } else {
        kind.to_owned()
    }
}

fn evidence_list(ev: &[Evidence], total: u64) -> String {
    let mut s = ev
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if total > ev.len() as u64 {
        let _ = write!(s, " (+{} more)", total - ev.len() as u64);
    }
    s
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// Text inside a Markdown table cell or list item: no line breaks, no column separators.
fn md(s: &str) -> String {
    one_line(s, 200).replace('|', "\\|").replace('`', "'")
}

fn groups(i: &IdentityReport) -> String {
    i.groups
        .iter()
        .map(|g| {
            if g.source == "config" {
                g.group.clone()
            } else {
                format!("{} ({})", g.group, g.source)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn token_line(t: &TokenReport) -> String {
    match (t.last_rotated_us, t.age_days) {
        (Some(at), Some(age)) => format!(
            "{}; last rotated {} ({age} days ago)",
            t.source,
            fmt_time(at)
        ),
        _ => format!(
            "{}; age unknown (only a token file's age can be read)",
            t.source
        ),
    }
}

fn masked_line(m: &airlock_store::MaskedCounts) -> String {
    if m.is_empty() {
        return "none".into();
    }
    let mut parts = Vec::new();
    if !m.entities.is_empty() {
        parts.push(counts(&m.entities));
    }
    if !m.columns.is_empty() {
        parts.push(format!("columns: {}", counts(&m.columns)));
    }
    parts.join("; ")
}

pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Access review\n");
    let _ = writeln!(
        o,
        "- **Period:** {} to {} UTC\n- **Scope:** {}\n- **Generated:** {} UTC from {} audit events ({} in the period; last audit seq {}){}\n- **Config:** {}\n- **Thresholds:** inactive after {} days; tokens rotated every {} days\n",
        fmt_time(r.since_us),
        fmt_time(r.until_us),
        r.scope,
        fmt_time(r.generated_us),
        r.source.events,
        r.source.events_in_period,
        r.source.last_seq,
        if r.source.unreadable_lines > 0 {
            format!("; {} unreadable lines skipped, run `airlock audit verify`", r.source.unreadable_lines)
        } else {
            String::new()
        },
        r.config_origin,
        r.inactive_days,
        r.rotation_days
    );
    let _ = writeln!(
        o,
        "Evidence: `session s-…` opens with `airlock sessions show s-…`; `audit #N` is the event with seq N in the audit log (`airlock audit export`); `config line N` is in the config file.\n"
    );

    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(
        o,
        "| identity | kind | groups | connections used | sessions | commands | denied | last activity | findings |\n| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: |"
    );
    for i in &r.identities {
        let used = i.access.iter().filter(|a| a.sessions > 0).count();
        // Standing grants plus access reviews: what the identity could use in the period.
        let reachable = i
            .access
            .iter()
            .filter(|a| a.standing || !a.access_grants.is_empty())
            .count();
        let findings = r
            .findings
            .iter()
            .filter(|f| f.identity.as_deref() == Some(i.name.as_str()))
            .count();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {used} of {reachable} | {} | {} | {} | {} | {findings} |",
            md(&i.name),
            kind_label(i),
            md(&groups(i)),
            i.sessions,
            i.commands,
            i.denied,
            when(i.last_activity_us)
        );
    }

    let _ = writeln!(o, "\n## Findings\n");
    if r.findings.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(
            o,
            "| # | severity | finding | subject | what | recommendation | evidence |\n| ---: | --- | --- | --- | --- | --- | --- |"
        );
        for (n, f) in r.findings.iter().enumerate() {
            let subject = match (&f.identity, &f.connection, &f.rule) {
                (Some(i), Some(c), _) => format!("{i} on {c}"),
                (Some(i), None, _) => i.clone(),
                (None, _, Some(rule)) => format!("rule {rule}"),
                _ => String::new(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                n + 1,
                f.severity.as_str(),
                f.kind.as_str(),
                md(&subject),
                md(&f.summary),
                md(&f.recommendation),
                evidence_list(&f.evidence, f.evidence_total)
            );
        }
    }

    let _ = writeln!(o, "\n## Identities");
    for i in &r.identities {
        let _ = writeln!(o, "\n### {} ({})\n", md(&i.name), kind_label(i));
        let _ = writeln!(
            o,
            "- Groups: {}",
            if i.groups.is_empty() {
                "none".into()
            } else {
                md(&groups(i))
            }
        );
        let _ = writeln!(o, "- Token: {}", md(&token_line(&i.token)));
        if !i.in_config {
            let _ = writeln!(
                o,
                "- Not in the current config (seen in the audit log only)"
            );
        }
        let _ = writeln!(o, "- Last activity: {}", when(i.last_activity_us));
        if i.auth_failures > 0 {
            let _ = writeln!(
                o,
                "- Failed authentications in the period: {}",
                i.auth_failures
            );
        }
        if i.review_votes > 0 {
            let _ = writeln!(o, "- Review votes cast in the period: {}", i.review_votes);
        }
        if i.access.is_empty() {
            let _ = writeln!(o, "- May reach no connection");
        }
        for a in &i.access {
            let _ = writeln!(
                o,
                "\n#### {} — via {}; writes: {}\n",
                md(&a.connection),
                md(&a.via.join(", ")),
                a.write_access
            );
            if a.sessions == 0
                && a.commands == 0
                && a.denied.is_empty()
                && a.access_grants.is_empty()
                && a.reviews_requested == 0
                && a.refused_sessions == 0
            {
                let _ = writeln!(o, "- No activity in the period");
            } else {
                let denied: u64 = a.denied.iter().map(|d| d.count).sum();
                let _ = writeln!(
                    o,
                    "- Sessions: {}{}; commands run: {} ({} writing); rows returned: {}; failed: {}; denied: {denied}; approved in review: {}",
                    a.sessions,
                    if a.session_evidence.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", evidence_list(&a.session_evidence, a.sessions))
                    },
                    a.commands,
                    a.write_commands,
                    a.rows_returned,
                    a.failed_commands,
                    a.approvals_total
                );
                if a.refused_sessions > 0 {
                    let _ = writeln!(
                        o,
                        "- Sessions refused (not allowed): {}",
                        a.refused_sessions
                    );
                }
                if !a.operations.is_empty() {
                    let _ = writeln!(o, "- Commands by operation: {}", md(&counts(&a.operations)));
                }
                if !a.objects_read.is_empty() {
                    let _ = writeln!(o, "- Objects read: {}", md(&counts(&a.objects_read)));
                }
                if !a.objects_written.is_empty() {
                    let _ = writeln!(o, "- Objects written: {}", md(&counts(&a.objects_written)));
                }
                let _ = writeln!(
                    o,
                    "- Values returned masked: {}{}",
                    md(&masked_line(&a.masked)),
                    if a.masked_evidence.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            evidence_list(&a.masked_evidence, a.masked_evidence.len() as u64)
                        )
                    }
                );
                for d in &a.denied {
                    let _ = writeln!(
                        o,
                        "- Denied {} × by rule `{}`{}: {}",
                        d.count,
                        md(&d.rule),
                        d.message
                            .as_deref()
                            .map(|m| format!(" (\"{}\")", md(&one_line(m, 100))))
                            .unwrap_or_default(),
                        evidence_list(&d.evidence, d.count)
                    );
                }
                for p in &a.approvals {
                    let _ = writeln!(
                        o,
                        "- Approved by {} at {}: `{}` (review {}{}{})",
                        md(&p.approvers.join(", ")),
                        fmt_time(p.approved_us),
                        md(&one_line(p.statement.as_deref().unwrap_or(""), 120)),
                        md(&p.review_id),
                        p.rule
                            .as_deref()
                            .map(|r| format!(", rule {}", md(r)))
                            .unwrap_or_default(),
                        match &p.executed {
                            Some(e) => format!("; ran: `{e}`"),
                            None => "; not run in the period".into(),
                        }
                    );
                }
                if a.approvals_total > a.approvals.len() as u64 {
                    let _ = writeln!(
                        o,
                        "- … and {} more approvals",
                        a.approvals_total - a.approvals.len() as u64
                    );
                }
                if a.reviews_requested > 0 {
                    let _ = writeln!(
                        o,
                        "- Reviews requested: {} ({} denied, {} expired)",
                        a.reviews_requested, a.reviews_denied, a.reviews_expired
                    );
                }
                for g in &a.access_grants {
                    let _ = writeln!(
                        o,
                        "- Access granted by {} at {} for {}{} (`{}`)",
                        md(&g.approvers.join(", ")),
                        fmt_time(g.approved_us),
                        g.duration_secs
                            .map(fmt_duration)
                            .unwrap_or_else(|| "?".into()),
                        g.reason
                            .as_deref()
                            .map(|r| format!(": \"{}\"", md(r)))
                            .unwrap_or_default(),
                        g.evidence
                    );
                }
                let _ = writeln!(o, "- Last activity: {}", when(a.last_activity_us));
            }
            if let Some(rc) = &a.recertification {
                let _ = writeln!(
                    o,
                    "- Recertification: **{}** by {} at {}: \"{}\"",
                    rc.decision.as_str(),
                    md(&rc.reviewer),
                    fmt_time(rc.at_us),
                    md(&rc.comment)
                );
            }
        }
    }

    let _ = writeln!(o, "\n## Rules\n");
    if r.rules.is_empty() {
        let _ = writeln!(o, "No rules configured.");
    } else {
        let _ = writeln!(
            o,
            "| rule | action | commands decided | config line |\n| --- | --- | ---: | ---: |"
        );
        for rule in &r.rules {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                md(&rule.name),
                rule.action,
                rule.commands,
                rule.line
            );
        }
    }
    o
}

/// RFC 4180: quote fields with commas, quotes or line breaks. A leading `=`, `+`, `-` or `@`
/// is prefixed with `'` so a spreadsheet does not run identity or object names as formulas.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn semi(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(";")
}

pub const CSV_HEADER: &str = "record,identity,kind,agent,groups,connection,via,write_access,sessions,commands,write_commands,operations,objects_read,objects_written,rows_returned,masked_entities,masked_columns,denied,denied_by_rule,approved,access_grants,reviews_requested,last_activity,recertification,rule,findings";

/// One row per identity (`record = identity`), per identity × connection (`access`) and per
/// rule (`rule`); `findings` lists `kind: recommendation` for that row's subject.
pub fn csv(r: &Report) -> String {
    let mut o = String::from(CSV_HEADER);
    o.push('\n');
    let findings_for = |identity: Option<&str>, connection: Option<&str>, rule: Option<&str>| {
        r.findings
            .iter()
            .filter(|f| {
                f.identity.as_deref() == identity
                    && f.connection.as_deref() == connection
                    && f.rule.as_deref() == rule
            })
            .map(|f| format!("{}: {}", f.kind.as_str(), f.recommendation))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let row = |o: &mut String, cells: Vec<String>| {
        let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        o.push_str(&line.join(","));
        o.push('\n');
    };
    for i in &r.identities {
        let groups = i
            .groups
            .iter()
            .map(|g| format!("{}={}", g.group, g.source))
            .collect::<Vec<_>>()
            .join(";");
        row(
            &mut o,
            vec![
                "identity".into(),
                i.name.clone(),
                i.kind.clone(),
                i.agent.to_string(),
                groups.clone(),
                String::new(),
                String::new(),
                String::new(),
                i.sessions.to_string(),
                i.commands.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                i.denied.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                i.last_activity_us.map(fmt_time).unwrap_or_default(),
                String::new(),
                String::new(),
                findings_for(Some(&i.name), None, None),
            ],
        );
        for a in &i.access {
            let denied: u64 = a.denied.iter().map(|d| d.count).sum();
            row(
                &mut o,
                vec![
                    "access".into(),
                    i.name.clone(),
                    i.kind.clone(),
                    i.agent.to_string(),
                    groups.clone(),
                    a.connection.clone(),
                    a.via.join(";"),
                    a.write_access.clone(),
                    a.sessions.to_string(),
                    a.commands.to_string(),
                    a.write_commands.to_string(),
                    semi(&a.operations),
                    semi(&a.objects_read),
                    semi(&a.objects_written),
                    a.rows_returned.to_string(),
                    semi(&a.masked.entities),
                    semi(&a.masked.columns),
                    denied.to_string(),
                    a.denied
                        .iter()
                        .map(|d| format!("{}={}", d.rule, d.count))
                        .collect::<Vec<_>>()
                        .join(";"),
                    a.approvals_total.to_string(),
                    a.access_grants.len().to_string(),
                    a.reviews_requested.to_string(),
                    a.last_activity_us.map(fmt_time).unwrap_or_default(),
                    a.recertification
                        .as_ref()
                        .map(|rc| {
                            format!(
                                "{} by {}: {}",
                                rc.decision.as_str(),
                                rc.reviewer,
                                rc.comment
                            )
                        })
                        .unwrap_or_default(),
                    String::new(),
                    findings_for(Some(&i.name), Some(&a.connection), None),
                ],
            );
        }
    }
    for rule in &r.rules {
        let mut cells = vec![String::new(); 26];
        if let Some(c) = cells.get_mut(0) {
            *c = "rule".into();
        }
        if let Some(c) = cells.get_mut(9) {
            *c = rule.commands.to_string();
        }
        if let Some(c) = cells.get_mut(24) {
            *c = rule.name.clone();
        }
        if let Some(c) = cells.get_mut(25) {
            *c = findings_for(None, None, Some(&rule.name));
        }
        row(&mut o, cells);
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A self-contained page (no scripts, no external resources) with the same content as the
/// Markdown: the Markdown tables and lists, escaped.
pub fn html(r: &Report) -> String {
    let mut o = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Access review</title>\n<style>body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}.high{color:#b00020;font-weight:bold}.medium{color:#a15c00}code{background:#f3f3f3}</style>\n</head><body>\n",
    );
    // Rendered from the Markdown line by line: one source of wording for both formats.
    let mut in_table = false;
    let mut in_list = false;
    for line in markdown(r).lines() {
        let close_list = |o: &mut String, in_list: &mut bool| {
            if *in_list {
                o.push_str("</ul>\n");
                *in_list = false;
            }
        };
        if let Some(row) = line.strip_prefix('|') {
            close_list(&mut o, &mut in_list);
            if row.trim_start().starts_with("---") || row.trim_start().starts_with(" ---") {
                continue;
            }
            let cells: Vec<&str> = split_cells(row);
            if !in_table {
                o.push_str("<table>\n<tr>");
                for c in &cells {
                    let _ = write!(o, "<th>{}</th>", inline(c));
                }
                o.push_str("</tr>\n");
                in_table = true;
                continue;
            }
            o.push_str("<tr>");
            for c in &cells {
                let class = match c.trim() {
                    "high" => " class=\"high\"",
                    "medium" => " class=\"medium\"",
                    _ => "",
                };
                let _ = write!(o, "<td{class}>{}</td>", inline(c));
            }
            o.push_str("</tr>\n");
            continue;
        }
        if in_table {
            o.push_str("</table>\n");
            in_table = false;
        }
        if let Some(item) = line.strip_prefix("- ") {
            if !in_list {
                o.push_str("<ul>\n");
                in_list = true;
            }
            let _ = writeln!(o, "<li>{}</li>", inline(item));
            continue;
        }
        close_list(&mut o, &mut in_list);
        for (prefix, tag) in [("#### ", "h4"), ("### ", "h3"), ("## ", "h2"), ("# ", "h1")] {
            if let Some(h) = line.strip_prefix(prefix) {
                let _ = writeln!(o, "<{tag}>{}</{tag}>", inline(h));
                break;
            }
        }
        if !line.starts_with('#') && !line.is_empty() {
            let _ = writeln!(o, "<p>{}</p>", inline(line));
        }
    }
    if in_table {
        o.push_str("</table>\n");
    }
    if in_list {
        o.push_str("</ul>\n");
    }
    o.push_str("</body></html>\n");
    o
}

/// Cells of a Markdown table row (after the leading `|`), honouring `\|`.
fn split_cells(row: &str) -> Vec<&str> {
    let mut cells = Vec::new();
    let mut start = 0;
    let bytes = row.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'|' && (i == 0 || bytes.get(i - 1) != Some(&b'\\')) {
            cells.push(row.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    cells
}

/// Escapes, then turns the Markdown the report uses inline (`code`, **bold**, `\|`) into HTML.
fn inline(s: &str) -> String {
    let s = esc(s.trim()).replace("\\|", "|");
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            let mut bold = false;
            for (j, p) in part.split("**").enumerate() {
                if j > 0 {
                    out.push_str(if bold { "</b>" } else { "<b>" });
                    bold = !bold;
                }
                out.push_str(p);
            }
            if bold {
                out.push_str("</b>");
            }
        }
    }
    out
}
