//! `airlock`: the gateway binary. Parses the command line and wires the crates together;
//! everything that decides or parses lives in the library crates.

mod access_review;
mod client;
mod commands;
mod login;
mod reviews;
mod serve;
mod tokens;
mod trail;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Identity-aware access gateway: parses, decides, masks, records and audits every command",
    long_about = "airlock sits between clients (psql, drivers, AI agents) and your databases and servers.\n\
                  Clients authenticate with an airlock token; airlock holds the real credential, classifies\n\
                  every statement with a real parser, applies rules, and writes a hash-chained audit trail\n\
                  before anything reaches the target."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config it starts on embedded defaults (state in ./airlock-data).
    Serve {
        /// The configuration file (TOML). Reloaded on SIGHUP and when it changes.
        #[arg(long, short, env = "AIRLOCK_CONFIG")]
        config: Option<PathBuf>,
        /// Log format: text or json (overrides [gateway] log_format).
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Validate a configuration file and print what it would load, or the errors with line numbers.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Dry-run commands through classification and rules.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Recorded sessions and their statements.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// The hash-chained audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Log in through the gateway's OIDC provider ([oidc]); stores an airlock access token in
    /// your config dir ($XDG_CONFIG_HOME/airlock/token, mode 0600).
    Login {
        /// The device-authorization flow, for headless machines: approve on another device.
        #[arg(long)]
        device: bool,
        /// Only print the URL; do not start $BROWSER or the desktop's opener.
        #[arg(long, conflicts_with = "device")]
        no_browser: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke the stored access token at the gateway and delete it.
    Logout {
        /// Only delete the stored token, without revoking it (e.g. the gateway is gone).
        #[arg(long)]
        forget: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Open a local port that speaks PostgreSQL and injects your token (`psql -h 127.0.0.1 -p P`).
    Connect {
        connection: String,
        /// The local port (default: a free one, printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[command(flatten)]
        args: client::ClientArgs,
    },
    /// Run one command through the gateway and print the result.
    Exec {
        connection: String,
        command: String,
        #[arg(long, value_enum, default_value = "table")]
        format: client::Format,
        /// Same as --format json: one JSON array of objects per result set.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Same as --format csv.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        args: client::ClientArgs,
    },
    /// Runtime service-account tokens: create, list, revoke, rotate (admin, through the API).
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
    /// Just-in-time reviews: list, show, approve, deny (through the gateway's REST API).
    Reviews {
        #[command(subcommand)]
        command: ReviewsCommand,
    },
    /// Ask for time-bound access to a connection your groups may not use.
    RequestAccess {
        connection: String,
        /// How long the access should last once approved (e.g. 30m, 1h, 1d).
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Why you need it; shown to the reviewers.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The access-review report: what each identity could reach and what it actually did,
    /// with findings; `access-review recertify` records keep/revoke decisions.
    AccessReview(access_review::AccessReviewArgs),
}

/// How the CLI reaches a running gateway's REST API.
#[derive(clap::Args, Clone)]
pub struct ApiArgs {
    /// Base URL of the gateway API (default: from --config's api_listen, else http://127.0.0.1:7700).
    #[arg(long, env = "AIRLOCK_API")]
    api: Option<String>,
    /// Read api_listen from this config.
    #[arg(long, short, env = "AIRLOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Your airlock token.
    #[arg(long, env = "AIRLOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum ReviewsCommand {
    /// Reviews, newest first (default: pending ones).
    List {
        /// pending, approved, denied, expired, executed or all.
        #[arg(long, default_value = "pending")]
        state: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One review in full.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Approve a review (you must be in one of its reviewer groups, and not its requester).
    Approve {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny a review.
    Deny {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Classify a statement and show which rules match and what the gateway would decide.
    Test {
        #[arg(long, short)]
        config: PathBuf,
        /// A service account name from the config.
        #[arg(long)]
        identity: String,
        /// A connection name from the config.
        #[arg(long)]
        connection: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The SQL text (several statements allowed).
        sql: String,
    },
}

/// Where the state lives: from a config file's data_dir, or given directly.
#[derive(clap::Args, Clone)]
pub struct StateArgs {
    /// Read data_dir (and the audit log path) from this config.
    #[arg(long, short, env = "AIRLOCK_CONFIG")]
    config: Option<PathBuf>,
    /// The gateway's data directory (default ./airlock-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// List sessions, newest first.
    List {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        /// Only sessions started after this time (RFC 3339, or a duration ago like 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        search: commands::SearchArgs,
    },
    /// One session: metadata and every statement with its decision and outcome.
    Show {
        id: String,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long)]
        json: bool,
    },
    /// Replay a recorded session as psql showed it, statement by statement with timing.
    Replay {
        id: String,
        #[command(flatten)]
        state: StateArgs,
        /// Wait between statements as the session did, this many times faster (e.g. 1, 10).
        #[arg(long, conflicts_with = "step")]
        speed: Option<f64>,
        /// Wait for Enter before each statement.
        #[arg(long)]
        step: bool,
        /// Print the recording's frames as JSON lines instead.
        #[arg(long)]
        json: bool,
        /// Only what psql printed: no statement headers or timing lines.
        #[arg(long)]
        bare: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of the audit log and its index and check the signed checkpoints;
    /// report the first broken link.
    Verify {
        #[command(flatten)]
        state: StateArgs,
        /// The trusted checkpoint public key (hex, or a file holding it; default:
        /// data_dir/audit.pub).
        #[arg(long)]
        public_key: Option<String>,
        /// Verify only from this event seq on, without reading the trail before it (the
        /// range is proven by the first signed checkpoint at or after its end).
        #[arg(long)]
        from: Option<u64>,
        /// Verify only up to this event seq.
        #[arg(long)]
        to: Option<u64>,
        /// Verify only events from this time on (RFC 3339, or a duration ago like 1h, 7d).
        #[arg(long, conflicts_with = "from")]
        since: Option<String>,
        /// Verify only events before this time (RFC 3339, or a duration ago).
        #[arg(long, conflicts_with = "to")]
        until: Option<String>,
    },
    /// Find statements by identity, connection, operation, table, decision, masked entity, time.
    Search {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        /// Only statements at or after this time (RFC 3339, or a duration ago like 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        search: commands::SearchArgs,
    },
    /// Export audit events as JSON lines.
    Export {
        #[command(flatten)]
        state: StateArgs,
        /// Only events at or after this time (RFC 3339, or a duration ago like 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// jsonl (the log lines as stored, verifiable) or ocsf (one OCSF event per line).
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, log_format } => serve::run(config, log_format),
        Command::Check { config } => commands::check(&config),
        Command::Policy {
            command:
                PolicyCommand::Test {
                    config,
                    identity,
                    connection,
                    json,
                    sql,
                },
        } => commands::policy_test(&config, &identity, &connection, &sql, json),
        Command::Sessions { command } => match command {
            SessionsCommand::List {
                state,
                identity,
                connection,
                since,
                limit,
                json,
                search,
            } => commands::sessions_list(&state, identity, connection, since, limit, json, search),
            SessionsCommand::Show { id, state, json } => commands::sessions_show(&state, &id, json),
            SessionsCommand::Replay {
                id,
                state,
                speed,
                step,
                json,
                bare,
            } => commands::sessions_replay(&state, &id, speed, step, json, bare),
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify {
                state,
                public_key,
                from,
                to,
                since,
                until,
            } => commands::audit_verify(
                &state,
                public_key.as_deref(),
                commands::VerifyRange {
                    from,
                    to,
                    since,
                    until,
                },
            ),
            AuditCommand::Search {
                state,
                identity,
                connection,
                since,
                limit,
                json,
                search,
            } => commands::audit_search(&state, identity, connection, since, limit, json, search),
            AuditCommand::Export {
                state,
                since,
                format,
            } => commands::audit_export(&state, since, &format),
        },
        Command::Login {
            device,
            no_browser,
            api,
        } => login::login(&api, device, no_browser),
        Command::Logout { forget, api } => login::logout(&api, forget),
        Command::Connect {
            connection,
            port,
            args,
        } => client::connect(&connection, port, &args),
        Command::Exec {
            connection,
            command,
            format,
            json,
            csv,
            args,
        } => {
            let format = match (json, csv) {
                (true, _) => client::Format::Json,
                (_, true) => client::Format::Csv,
                _ => format,
            };
            client::exec(&connection, &command, format, &args)
        }
        Command::Tokens { command } => tokens::run(command),
        Command::Reviews { command } => match command {
            ReviewsCommand::List { state, json, api } => reviews::list(&api, &state, json),
            ReviewsCommand::Show { id, api } => reviews::show(&api, &id),
            ReviewsCommand::Approve { id, api } => reviews::decide(&api, &id, "approve"),
            ReviewsCommand::Deny { id, api } => reviews::decide(&api, &id, "deny"),
        },
        Command::RequestAccess {
            connection,
            duration,
            reason,
            api,
        } => reviews::request_access(&api, &connection, &duration, &reason),
        Command::AccessReview(args) => access_review::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
