//! `airlock access-review`: the report, read offline from the audit log and the config (like
//! `airlock sessions`), and `airlock access-review recertify`, which goes through the running
//! gateway's API so the decision is an audit event in its log.

use crate::{ApiArgs, StateArgs};
use airlock_report::recert::RecertStore;
use airlock_report::render::{render, Format};
use airlock_report::{Filter, Options};
use anyhow::{anyhow, Context};
use clap::Subcommand;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AccessReviewArgs {
    #[command(subcommand)]
    command: Option<AccessReviewCommand>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The gateway's config (the grants come from it) and, unless --data-dir, its data_dir.
    #[command(flatten)]
    state: StateArgs,
    /// Start of the period (RFC 3339, a date, or a duration ago like 30d). Default: 30 days ago.
    #[arg(long)]
    since: Option<String>,
    /// End of the period (same forms). Default: now.
    #[arg(long)]
    until: Option<String>,
    /// Only this identity.
    #[arg(long, conflicts_with_all = ["group", "agents"])]
    identity: Option<String>,
    /// Only members of this group.
    #[arg(long, conflicts_with = "agents")]
    group: Option<String>,
    /// Only AI agents.
    #[arg(long)]
    agents: bool,
    /// md, csv, json or html.
    #[arg(long, default_value = "md")]
    format: String,
    /// Write the report to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Report identities with no activity for this many days.
    #[arg(long, default_value_t = 30)]
    inactive_days: u64,
    /// Report tokens older than this many days (the rotation policy).
    #[arg(long, default_value_t = 90)]
    rotation_days: u64,
}

#[derive(Subcommand)]
enum AccessReviewCommand {
    /// Mark a grant keep or revoke, with a comment (through the gateway's API; audited). A
    /// revoke of a grant from the config prints the config change to make.
    Recertify {
        #[arg(long)]
        identity: String,
        #[arg(long)]
        connection: String,
        /// keep or revoke.
        #[arg(long)]
        decision: String,
        /// Why; kept with the decision and in the audit trail.
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Recorded recertification decisions (through the gateway's API).
    Decisions {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn run(args: AccessReviewArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => report(&args.report),
        Some(AccessReviewCommand::Recertify {
            identity,
            connection,
            decision,
            comment,
            api,
        }) => recertify(&api, &identity, &connection, &decision, &comment),
        Some(AccessReviewCommand::Decisions { json, api }) => decisions(&api, json),
    }
}

/// Secrets the report does not need (it never reads a token) resolve to a placeholder, so a
/// reviewer can run it without the gateway's environment. Each placeholder names its source:
/// the config rejects two accounts with the same token.
struct NoSecrets;

impl airlock_config::EnvLookup for NoSecrets {
    fn var(&self, name: &str) -> Option<String> {
        Some(
            std::env::var(name).unwrap_or_else(|_| format!("unresolved-secret-placeholder-{name}")),
        )
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        Ok(std::fs::read_to_string(path)
            .unwrap_or_else(|_| format!("unresolved-secret-placeholder-{}", path.display())))
    }

    fn is_file(&self, path: &Path) -> bool {
        airlock_config::SystemEnv.is_file(path)
    }
}

fn report(a: &ReportArgs) -> anyhow::Result<ExitCode> {
    let format = Format::parse(&a.format)
        .ok_or_else(|| anyhow!("--format {}: use md, csv, json or html", a.format))?;
    let config_path = a.state.config.as_ref().ok_or_else(|| {
        anyhow!("the report needs the gateway's config (who may reach what): pass --config FILE or set AIRLOCK_CONFIG")
    })?;
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = airlock_config::load_str(&text, &config_path.display().to_string(), &NoSecrets)
        .map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let (data_dir, log) = match &a.state.data_dir {
        Some(d) => (d.clone(), d.join("audit.log")),
        None => (config.gateway.data_dir.clone(), config.audit.path.clone()),
    };
    if !log.exists() {
        return Err(anyhow!(
            "no audit log at {}; pass --data-dir or --config of a gateway that has run",
            log.display()
        ));
    }
    let now = airlock_store::AuditEvent::now_us();
    let policy = airlock_gate::compile_policy(&config);
    let mut opts = Options::new(&config, now);
    opts.policy = Some(&policy);
    if let Some(s) = &a.since {
        opts.since_us = airlock_report::time::parse_time(s, now)?;
    }
    if let Some(u) = &a.until {
        opts.until_us = airlock_report::time::parse_time(u, now)?;
    }
    if opts.since_us >= opts.until_us {
        return Err(anyhow!("--since must be before --until"));
    }
    opts.filter = match (&a.identity, &a.group, a.agents) {
        (Some(i), _, _) => Filter::Identity(i.clone()),
        (_, Some(g), _) => Filter::Group(g.clone()),
        (_, _, true) => Filter::Agents,
        _ => Filter::All,
    };
    opts.inactive_days = a.inactive_days;
    opts.rotation_days = a.rotation_days;
    opts.tokens = airlock_report::token_info(&config);
    opts.recertifications = RecertStore::new(&data_dir).load()?;
    let report = airlock_report::generate(opts, &log)?;
    let out = render(&report, format);
    match &a.output {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({} identities, {} findings)",
                path.display(),
                report.identities.len(),
                report.findings.len()
            );
        }
        None => print!("{out}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn recertify(
    args: &ApiArgs,
    identity: &str,
    connection: &str,
    decision: &str,
    comment: &str,
) -> anyhow::Result<ExitCode> {
    if !matches!(decision, "keep" | "revoke") {
        return Err(anyhow!("--decision {decision}: use keep or revoke"));
    }
    let api = crate::reviews::Api::from(args)?;
    let r = api.call(
        "POST",
        "/api/v1/access-review/recertifications",
        Some(serde_json::json!({
            "identity": identity, "connection": connection,
            "decision": decision, "comment": comment,
        })),
    )?;
    println!(
        "recorded: {decision} `{identity}` on `{connection}` (audit #{})",
        r.get("audit_seq").and_then(Value::as_u64).unwrap_or(0)
    );
    if let Some(note) = r.get("note").and_then(Value::as_str) {
        println!("{note}");
    }
    if let Some(diff) = r.get("config_diff").and_then(Value::as_str) {
        println!("\nConfig is the source of truth: apply this change to the config file, then reload the gateway (SIGHUP):\n\n{diff}");
    }
    Ok(ExitCode::SUCCESS)
}

fn decisions(args: &ApiArgs, json: bool) -> anyhow::Result<ExitCode> {
    let api = crate::reviews::Api::from(args)?;
    let list = api.call("GET", "/api/v1/access-review/recertifications", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let items = list.as_array().cloned().unwrap_or_default();
    println!(
        "{:<20} {:<16} {:<16} {:<7} {:<12} COMMENT",
        "WHEN", "IDENTITY", "CONNECTION", "DECISION", "REVIEWER"
    );
    for d in &items {
        println!(
            "{:<20} {:<16} {:<16} {:<7} {:<12} {}",
            airlock_report::time::fmt_time(d.get("at_us").and_then(Value::as_i64).unwrap_or(0)),
            d.get("identity").and_then(Value::as_str).unwrap_or("?"),
            d.get("connection").and_then(Value::as_str).unwrap_or("?"),
            d.get("decision").and_then(Value::as_str).unwrap_or("?"),
            d.get("reviewer").and_then(Value::as_str).unwrap_or("?"),
            d.get("comment").and_then(Value::as_str).unwrap_or("")
        );
    }
    if items.is_empty() {
        println!("(no decisions yet)");
    }
    Ok(ExitCode::SUCCESS)
}
