//! The offline subcommands: check, policy test, sessions, audit.

use crate::StateArgs;
use airlock_core::policy::{ConnectionRef, Request};
use airlock_store::{CommandFilter, Index, SessionFilter};
use anyhow::{anyhow, Context};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    match airlock_config::load_file(path) {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", config.summary());
            println!("{}: OK", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            Ok(ExitCode::from(1))
        }
    }
}

/// Exit codes let CI pipelines lint migrations: 0 allow, 3 review, 4 deny.
pub fn policy_test(
    config_path: &Path,
    identity: &str,
    connection: &str,
    sql: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // A dry run needs no secrets: CI pipelines lint migrations without the gateway's tokens.
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = airlock_config::load_str(&text, &config_path.display().to_string(), &NoSecrets)
        .map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let Some(sa) = config.service_account(identity) else {
        let known: Vec<&str> = config
            .service_accounts
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Err(anyhow!(
            "identity `{identity}` not found; known: {}",
            known.join(", ")
        ));
    };
    let Some(conn) = config.connection(connection) else {
        let known: Vec<&str> = config.connections.iter().map(|c| c.name.as_str()).collect();
        return Err(anyhow!(
            "connection `{connection}` not found; known: {}",
            known.join(", ")
        ));
    };
    let identity = sa.identity();
    let may_use = conn.allows(&identity) && sa.limited_to(&conn.name);
    // The connection's own dialect, with the classifier the gateway would use.
    let Some(classifier) = crate::serve::classifiers().get(conn.kind()).cloned() else {
        return Err(anyhow!(
            "connection `{}` is a {} connection, and this build has no classifier for its commands",
            conn.name,
            conn.kind().as_str()
        ));
    };
    let classification = classifier.classify(sql);
    let policy = airlock_gate::compile_policy(&config);
    let (minute_of_day, weekday) = airlock_core::policy::utc_clock(unix_secs());
    let decision = policy.decide(&Request {
        identity: &identity,
        connection: ConnectionRef {
            name: &conn.name,
            tags: Some(&conn.tags),
        },
        classification: &classification,
        text: sql,
        minute_of_day,
        weekday,
    });
    if json {
        let out = serde_json::json!({
            "identity": identity.name,
            "connection": conn.name,
            "may_use_connection": may_use,
            "classification": &*classification,
            "decision": decision,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "identity:   {} ({}, groups: {}{})",
            identity.name,
            identity.kind.as_str(),
            identity.groups.join(", "),
            if identity.agent { ", agent" } else { "" }
        );
        println!(
            "connection: {} (may use: {})",
            conn.name,
            if may_use {
                "yes"
            } else {
                "NO: the session would be refused"
            }
        );
        if classification.unparsed {
            println!(
                "parse:      FAILED ({}); treated as the most dangerous class",
                classification.parse_error.as_deref().unwrap_or("?")
            );
        }
        let flags = classification.flags();
        if !flags.is_empty() {
            println!("flags:      {}", flags.join(", "));
        }
        for (i, s) in classification.statements.iter().enumerate() {
            println!(
                "statement {}: {}{}{} reads [{}] writes [{}]{}",
                i + 1,
                s.operation,
                if s.writes_data { " (writes)" } else { "" },
                if s.dynamic_sql { " (dynamic sql)" } else { "" },
                s.reads.join(", "),
                s.writes.join(", "),
                if s.has_where { "" } else { " without WHERE" }
            );
        }
        println!(
            "matched:    {}",
            if decision.matched.is_empty() {
                "no rule".to_string()
            } else {
                decision.matched.join(", ")
            }
        );
        println!(
            "decision:   {}{}{}",
            decision.action,
            decision
                .rule
                .as_deref()
                .map(|r| format!(" by rule `{r}`"))
                .unwrap_or_else(|| " (default action)".into()),
            decision
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::from(match decision.action {
        airlock_core::Action::Allow => 0,
        airlock_core::Action::Review => 3,
        airlock_core::Action::Deny => 4,
    }))
}

/// Resolves every secret reference to a placeholder, so `policy test` runs without them.
struct NoSecrets;

impl airlock_config::EnvLookup for NoSecrets {
    fn var(&self, name: &str) -> Option<String> {
        // One placeholder per reference: the config check refuses two accounts with one token.
        Some(
            std::env::var(name).unwrap_or_else(|_| format!("unresolved-secret-placeholder-{name}")),
        )
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        Ok(format!("unresolved-secret-placeholder-{}", path.display()))
    }

    fn is_file(&self, path: &Path) -> bool {
        airlock_config::SystemEnv.is_file(path)
    }
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Data dir and audit log path for the offline commands.
fn state_paths(state: &StateArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(dir) = &state.data_dir {
        return Ok((dir.clone(), dir.join("audit.log")));
    }
    if let Some(path) = &state.config {
        // Only the paths: reading the audit trail must not need the gateway's secrets.
        return airlock_config::load_state_locations(path)
            .map_err(|e| anyhow!("invalid configuration:\n{e}"));
    }
    let dir = PathBuf::from("./airlock-data");
    Ok((dir.clone(), dir.join("audit.log")))
}

/// Opens the index and brings it up to date with the log, so listings are never stale.
fn open_index(state: &StateArgs) -> anyhow::Result<Index> {
    let (dir, log) = state_paths(state)?;
    if !log.exists() {
        return Err(anyhow!(
            "no audit log at {}; pass --data-dir or --config of a gateway that has run",
            log.display()
        ));
    }
    let index = Index::open(&dir.join("state.db"), &log)
        .with_context(|| format!("opening {}", dir.join("state.db").display()))?;
    index.catch_up().context("indexing the audit log")?;
    Ok(index)
}

/// Statement facets shared by `sessions list` and `audit search`.
#[derive(clap::Args, Clone, Default)]
pub struct SearchArgs {
    /// Only with a statement of this operation (select, insert, drop, ...).
    #[arg(long)]
    operation: Option<String>,
    /// Only with a statement reading or writing this table (`users` matches `public.users`).
    #[arg(long)]
    object: Option<String>,
    /// Only with a statement decided allow, deny or review.
    #[arg(long)]
    decision: Option<String>,
    /// Only with a statement whose result had values of this masking entity masked.
    #[arg(long)]
    masked: Option<String>,
    /// Only before this time (RFC 3339, or a duration ago like 1h, 7d).
    #[arg(long)]
    until: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub fn sessions_list(
    state: &StateArgs,
    identity: Option<String>,
    connection: Option<String>,
    since: Option<String>,
    limit: usize,
    json: bool,
    search: SearchArgs,
) -> anyhow::Result<ExitCode> {
    let index = open_index(state)?;
    let since_us = since
        .as_deref()
        .map(crate::commands::parse_since)
        .transpose()?;
    let until_us = search.until.as_deref().map(parse_since).transpose()?;
    let rows = index.sessions(SessionFilter {
        identity,
        connection,
        since_us,
        limit: Some(limit),
        until_us,
        operation: search.operation,
        object: search.object,
        decision: search.decision,
        masked: search.masked,
    })?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "identity": r.identity, "connection": r.connection,
                    "started_us": r.started_us, "ended_us": r.ended_us, "peer": r.peer,
                    "statements": r.statements, "denied": r.denied,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<28} {:<20} {:<16} {:<20} {:>6} {:>6}  ended",
        "SESSION", "IDENTITY", "CONNECTION", "STARTED (UTC)", "STMTS", "DENIED"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<28} {:<20} {:<16} {:<20} {:>6} {:>6}  {}",
            r.id,
            r.identity.as_deref().unwrap_or("-"),
            r.connection.as_deref().unwrap_or("-"),
            r.started_us.map(fmt_time).unwrap_or_default(),
            r.statements,
            r.denied,
            r.ended_us.map(fmt_time).unwrap_or_else(|| "open".into())
        )?;
    }
    if rows.is_empty() {
        writeln!(out, "(no sessions)")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sessions_show(state: &StateArgs, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let index = open_index(state)?;
    let Some(d) = index.session(id)? else {
        return Err(anyhow!(
            "session `{id}` not found; list them with `airlock sessions list`"
        ));
    };
    if json {
        let cmds: Vec<serde_json::Value> = d
            .commands
            .iter()
            .map(|c| {
                serde_json::json!({
                    "seq": c.seq, "ts_us": c.ts_us, "text": c.text, "operation": c.operation,
                    "reads": c.reads, "writes": c.writes, "flags": c.flags, "decision": c.decision,
                    "rule": c.rule, "message": c.message, "rows": c.rows, "error": c.error,
                    "duration_us": c.duration_us,
                })
            })
            .collect();
        let s = &d.session;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "id": s.id, "identity": s.identity, "connection": s.connection, "peer": s.peer,
                "started_us": s.started_us, "ended_us": s.ended_us, "statements": s.statements,
                "denied": s.denied, "commands": cmds,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let s = &d.session;
    let mut out = std::io::stdout().lock();
    writeln!(out, "session    {}", s.id)?;
    writeln!(out, "identity   {}", s.identity.as_deref().unwrap_or("-"))?;
    writeln!(out, "connection {}", s.connection.as_deref().unwrap_or("-"))?;
    writeln!(out, "peer       {}", s.peer.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "started    {}",
        s.started_us.map(fmt_time).unwrap_or_default()
    )?;
    writeln!(
        out,
        "ended      {}",
        s.ended_us
            .map(fmt_time)
            .unwrap_or_else(|| "still open".into())
    )?;
    writeln!(out, "statements {} ({} denied)\n", s.statements, s.denied)?;
    for c in &d.commands {
        let outcome = match (&c.error, c.rows) {
            (Some(e), _) => format!("error {e}"),
            (None, Some(r)) => format!("{r} rows"),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "#{:<4} {} {:<8} {:<6}{} {}{}",
            c.seq,
            c.ts_us.map(fmt_time).unwrap_or_default(),
            c.operation.as_deref().unwrap_or("?"),
            c.decision.as_deref().unwrap_or("?"),
            c.rule
                .as_deref()
                .map(|r| format!(" [{r}]"))
                .unwrap_or_default(),
            outcome,
            c.duration_us
                .map(|d| format!(" in {:.3} ms", d as f64 / 1000.0))
                .unwrap_or_default(),
        )?;
        writeln!(
            out,
            "      {}",
            c.text.as_deref().unwrap_or("").replace('\n', "\n      ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify --from/--to/--since/--until`: a part of the trail.
#[derive(Debug, Default)]
pub struct VerifyRange {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl VerifyRange {
    fn is_whole(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.since.is_none() && self.until.is_none()
    }

    /// `(from, to)` seqs; `Ok(None)`: no event in the range.
    fn seqs(&self, log: &Path) -> anyhow::Result<Option<(u64, Option<u64>)>> {
        let mut from = self.from.unwrap_or(1).max(1);
        let mut to = self.to;
        if let Some(since) = &self.since {
            match airlock_store::segments::seq_at_or_after(log, parse_since(since)?)? {
                Some(seq) => from = seq,
                None => return Ok(None),
            }
        }
        if let Some(until) = &self.until {
            if let Some(seq) = airlock_store::segments::seq_at_or_after(log, parse_since(until)?)? {
                match seq.checked_sub(1).filter(|s| *s >= from) {
                    Some(last) => to = Some(to.map_or(last, |t| t.min(last))),
                    None => return Ok(None),
                }
            }
        }
        if to.is_some_and(|t| t < from) {
            return Err(anyhow!("--to must not be before --from"));
        }
        Ok(Some((from, to)))
    }
}

pub fn audit_verify(
    state: &StateArgs,
    public_key: Option<&str>,
    range: VerifyRange,
) -> anyhow::Result<ExitCode> {
    let (dir, log) = state_paths(state)?;
    let pinned = match public_key {
        Some(k) if Path::new(k).is_file() => Some(
            std::fs::read_to_string(k)
                .with_context(|| format!("reading {k}"))?
                .trim()
                .to_string(),
        ),
        Some(k) => Some(k.trim().to_string()),
        None => airlock_store::CheckpointKey::load_public(&dir)?,
    };
    let cps = airlock_store::checkpoints_path(&log);
    if !range.is_whole() {
        return audit_verify_range(&log, &cps, pinned.as_deref(), &range);
    }
    let full = airlock_store::verify_with_checkpoints(&log, &cps, pinned.as_deref())
        .with_context(|| format!("reading {}", log.display()))?;
    let report = &full.chain;
    let mut ok = full.is_ok();
    match &report.first_broken {
        None => println!(
            "audit log {}: {} events in {} segment(s), chain intact (head {})",
            log.display(),
            report.events,
            report.segments,
            report.last_hash
        ),
        Some((seq, why)) => println!("audit log {}: BROKEN at event {seq}: {why}", log.display()),
    }
    if let Some(at) = report.retention_seq {
        println!(
            "retention: events before seq {} were removed; the audit_retention event at seq {at} records the hash the chain continues from",
            report.first_seq
        );
    }
    match (&full.last_checkpoint, &pinned) {
        (Some(cp), _) => println!(
            "checkpoints {}: {} signed checkpoints verified (key {}), last at seq {} ({}); {} event(s) after it not yet signed",
            cps.display(),
            full.checkpoints_ok,
            pinned.as_deref().unwrap_or("named in each checkpoint, none pinned"),
            cp.seq,
            fmt_time(cp.ts_us),
            full.uncovered
        ),
        (None, Some(_)) => println!("checkpoints {}: none yet", cps.display()),
        (None, None) => println!(
            "checkpoints: no signing key in {} and no --public-key; signatures not checked",
            dir.display()
        ),
    }
    if let Some((seq, why)) = &full.first_problem {
        if report.first_broken.as_ref().map(|(s, _)| s) != Some(seq) {
            println!("checkpoints: BROKEN at event {seq}: {why}");
        }
    }
    let db = dir.join("state.db");
    if db.exists() {
        let index = Index::open(&db, &log)?;
        let r = index.verify()?;
        match &r.first_broken {
            None => println!(
                "audit index {}: {} events, chain intact",
                db.display(),
                r.events
            ),
            Some((seq, why)) => {
                ok = false;
                println!("audit index {}: BROKEN at event {seq}: {why}", db.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn audit_verify_range(
    log: &Path,
    cps: &Path,
    pinned: Option<&str>,
    range: &VerifyRange,
) -> anyhow::Result<ExitCode> {
    let Some((from, to)) = range.seqs(log)? else {
        println!("audit log {}: no event in the range", log.display());
        return Ok(ExitCode::SUCCESS);
    };
    let r = airlock_store::verify_range(log, cps, pinned, from, to)
        .with_context(|| format!("reading {}", log.display()))?;
    let chain = &r.chain;
    let end = to.map_or("the head".to_string(), |t| format!("seq {t}"));
    match &chain.first_broken {
        None => println!(
            "audit log {}: events from seq {} to {end}: {} events read ({} segment(s)), chain intact",
            log.display(),
            chain.first_seq,
            chain.events,
            chain.segments
        ),
        Some((seq, why)) => println!("audit log {}: BROKEN at event {seq}: {why}", log.display()),
    }
    match (&r.last_checkpoint, to) {
        (Some(cp), Some(to)) if cp.seq >= to => println!(
            "checkpoints: the range is covered by the signed checkpoint at seq {} ({}){}",
            cp.seq,
            fmt_time(cp.ts_us),
            if pinned.is_some() { "" } else { "; no trusted key, checked against the key it names" }
        ),
        (Some(cp), _) => println!(
            "checkpoints: {} signed checkpoint(s) in the range verified, last at seq {}; {} event(s) after it not yet signed",
            r.checkpoints_ok, cp.seq, r.uncovered
        ),
        (None, _) => println!(
            "checkpoints: no signed checkpoint at or after the range yet: the range chains, but no signature vouches for it"
        ),
    }
    if let Some((seq, why)) = &r.first_problem {
        if chain.first_broken.as_ref().map(|(s, _)| s) != Some(seq) {
            println!("checkpoints: BROKEN at event {seq}: {why}");
        }
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn audit_export(
    state: &StateArgs,
    since: Option<String>,
    format: &str,
) -> anyhow::Result<ExitCode> {
    let Some(format) = airlock_export::Format::parse(format) else {
        return Err(anyhow!("--format {format}: use jsonl or ocsf"));
    };
    let (_, log) = state_paths(state)?;
    if !log.exists() {
        return Err(anyhow!("no audit log at {}", log.display()));
    }
    let since_us = since.as_deref().map(parse_since).transpose()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    airlock_export::export_file(&log, since_us, format, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
pub fn audit_search(
    state: &StateArgs,
    identity: Option<String>,
    connection: Option<String>,
    since: Option<String>,
    limit: usize,
    json: bool,
    search: SearchArgs,
) -> anyhow::Result<ExitCode> {
    let index = open_index(state)?;
    let hits = index.search(&CommandFilter {
        identity,
        connection,
        operation: search.operation,
        object: search.object,
        decision: search.decision,
        masked: search.masked,
        since_us: since.as_deref().map(parse_since).transpose()?,
        until_us: search.until.as_deref().map(parse_since).transpose()?,
        limit: Some(limit),
    })?;
    if json {
        let v: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "session_id": h.session_id, "seq": h.seq, "ts_us": h.ts_us,
                    "identity": h.identity, "connection": h.connection,
                    "operation": h.operation, "decision": h.decision, "text": h.text,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for h in &hits {
        writeln!(
            out,
            "{} {}#{} {} on {} {} {}: {}",
            h.ts_us.map(fmt_time).unwrap_or_default(),
            h.session_id,
            h.seq,
            h.identity.as_deref().unwrap_or("-"),
            h.connection.as_deref().unwrap_or("-"),
            h.operation.as_deref().unwrap_or("?"),
            h.decision.as_deref().unwrap_or("?"),
            h.text.as_deref().unwrap_or("").replace('\n', " ")
        )?;
    }
    if hits.is_empty() {
        writeln!(out, "(no statements)")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sessions_replay(
    state: &StateArgs,
    id: &str,
    speed: Option<f64>,
    step: bool,
    json: bool,
    bare: bool,
) -> anyhow::Result<ExitCode> {
    let (dir, log) = state_paths(state)?;
    // The index knows when the session started, which names the recording's directory.
    let started_us = if log.exists() {
        open_index(state)?
            .session(id)?
            .and_then(|d| d.session.started_us)
    } else {
        None
    };
    let recordings = crate::trail::recordings_dir(&dir);
    let Some(path) = airlock_record::find_recording(&recordings, id, started_us) else {
        return Err(anyhow!(
            "no recording of session `{id}` in {} (recording off, expired, or an unknown id; see `airlock sessions list`)",
            recordings.display()
        ));
    };
    let mut reader = airlock_record::RecordingReader::open(&path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        while let Some(line) = reader.next_line() {
            out.write_all(line)?;
            out.write_all(b"\n")?;
        }
    } else {
        let pace = match (speed, step) {
            (_, true) => airlock_record::Pace::Step,
            (Some(s), false) if s > 0.0 => airlock_record::Pace::Speed(s),
            (Some(_), false) => return Err(anyhow!("--speed must be greater than 0")),
            (None, false) => airlock_record::Pace::Instant,
        };
        let mut renderer =
            airlock_record::Renderer::new(&mut out, airlock_record::ReplayOptions { pace, bare });
        renderer.replay(&mut reader, &mut std::io::stdin().lock())?;
    }
    out.flush()?;
    if let Some(why) = reader.truncated() {
        eprintln!("note: the recording ends early: {why} (the gateway stopped without closing it)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `90s`, `15m`, `2h`, `7d` → seconds.
pub fn parse_duration_secs(s: &str) -> anyhow::Result<u64> {
    let bad = || anyhow!("cannot read duration `{s}`: use e.g. 30m, 1h, 2d");
    let n: u64 = s
        .get(..s.len().saturating_sub(1))
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    let unit = match s.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        Some(b'd') => 86_400,
        _ => return Err(bad()),
    };
    Ok(n * unit)
}

/// `2026-11-23T10:00:00Z`, `2026-11-23`, or a duration ago: `90s`, `15m`, `2h`, `7d` (the
/// spellings `airlock access-review --since` takes too).
pub fn parse_since(s: &str) -> anyhow::Result<i64> {
    Ok(airlock_report::time::parse_time(
        s,
        unix_secs() * 1_000_000,
    )?)
}

pub fn fmt_time(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        let us = parse_since("2026-11-23T10:20:30Z").unwrap();
        assert_eq!(fmt_time(us), "2026-11-23 10:20:30");
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00");
        assert!(parse_since("yesterday").is_err());
        let ago = parse_since("2h").unwrap();
        assert!((unix_secs() * 1_000_000 - ago - 7_200_000_000).abs() < 5_000_000);
    }
}
