//! Startup parameters: which are passed to the upstream as they are, which are settings judged
//! as the `SET` statements they amount to, and which are refused.
//!
//! A startup packet can change server settings before any statement is seen: the `options`
//! parameter carries `-c name=value` switches, and any other parameter the server does not
//! know as a protocol field is a setting too. Dropping them silently breaks clients that rely
//! on them (`PGOPTIONS='-c statement_timeout=…'`, Django's `OPTIONS`); passing them unjudged
//! would let a session start in a state the rules never saw. So each one is judged as the `SET`
//! it is (same rules, same fail-closed checks as in-session statements), recorded, and passed
//! on only when allowed; the session is refused with a clear error otherwise.

use crate::codec::ErrorFields;
use crate::encoding;
use crate::relay::{denial, guard_session};
use airlock_gate::SessionGate;

/// Startup parameters passed on to the upstream as they are. `user` and `database` are
/// replaced by the connection's; `replication` is refused (the replication protocol carries no
/// SQL to judge). These are what drivers send on every connection; the ones that could change
/// how the server reads SQL are checked by [`refuse_startup_params`].
const PASSED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
];

/// Parameters that are protocol fields, not settings.
const PROTOCOL_PARAMS: &[&str] = &["user", "database", "replication", "options"];

/// The startup parameters split into those passed as they are and the settings to judge,
/// `(name, value)` with the name lower-cased as the server folds it.
pub(crate) struct StartupParams {
    pub passed: Vec<(String, String)>,
    pub settings: Vec<(String, String)>,
}

/// Sorts the client's startup parameters. An `options` value the gateway cannot read exactly as
/// the server would is an error (never ignored).
pub(crate) fn sort_params(params: Vec<(String, String)>) -> Result<StartupParams, String> {
    let mut out = StartupParams {
        passed: Vec::new(),
        settings: Vec::new(),
    };
    for (name, value) in params {
        let lower = name.to_ascii_lowercase();
        if lower == "options" {
            out.settings.extend(parse_options(&value)?);
        } else if PROTOCOL_PARAMS.contains(&lower.as_str()) || lower.starts_with("_pq_.") {
            // Protocol fields (handled by the gateway) and protocol extensions (the gateway
            // speaks 3.0 without them) are not settings.
        } else if PASSED_PARAMS.contains(&lower.as_str()) {
            out.passed.push((name, value));
        } else {
            out.settings.push((checked_name(&lower)?, value));
        }
    }
    Ok(out)
}

/// The settings of a startup `options` string, split as the server splits it (`pg_split_opts`:
/// whitespace separates, a backslash makes the next character literal) and read as the server
/// reads its switches. Only `-c name=value` (also `-cname=value`, `--name=value`) is accepted:
/// the other switches of the server's command line are refused rather than guessed at.
pub(crate) fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_arg = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if in_arg {
                args.push(std::mem::take(&mut current));
                in_arg = false;
            }
        } else {
            in_arg = true;
            if c == '\\' {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            } else {
                current.push(c);
            }
        }
    }
    if in_arg {
        args.push(current);
    }
    let mut settings = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let setting = if let Some(rest) = arg.strip_prefix("--") {
            rest.to_owned()
        } else if arg == "-c" {
            args.next()
                .ok_or("the startup options end with `-c` and no name=value")?
        } else if let Some(rest) = arg.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Err(format!(
                "the startup option `{arg}` is not supported through airlock; only `-c name=value` settings are"
            ));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(format!(
                "the startup option `-c {setting}` has no value (use -c name=value)"
            ));
        };
        // The server folds dashes to underscores in switch names (ParseLongOption).
        let name = name.replace('-', "_").to_ascii_lowercase();
        settings.push((checked_name(&name)?, value.to_owned()));
    }
    Ok(settings)
}

/// Settings through which a session's start loads libraries or other code.
const CODE_LOADING_SETTINGS: &[&str] = &[
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
    "dynamic_library_path",
    "jit_provider",
];

/// A setting name as it may appear unquoted in `SET name TO …`: the gateway builds that text
/// to judge it, so anything else is refused rather than quoted.
fn checked_name(name: &str) -> Result<String, String> {
    // Settings are passed on as startup parameters, where these names are not settings but the
    // connection itself: `-c database=other` reached another database of the server, and
    // `-c replication=database` opened a walsender (round-18 review, F1 and F2).
    if PROTOCOL_PARAMS.contains(&name) || name.starts_with("_pq_") {
        return Err(format!(
            "`{name}` is a connection parameter, not a setting: it cannot be given in the startup options through airlock (the connection decides the database, user and protocol)"
        ));
    }
    // Settings that make the server load a library when the session starts run that code
    // inside the server (with a superuser credential, any file the agent names; round-19
    // review, F1).
    if CODE_LOADING_SETTINGS.contains(&name) {
        return Err(format!(
            "the startup setting `{name}` makes the server load code; airlock refuses it"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if first_ok
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        && !name.ends_with('.')
        && !name.contains("..")
    {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "the startup setting name `{name}` is not a plain setting name; airlock refuses it"
        ))
    }
}

/// The `SET` statement a startup setting amounts to, as the gateway judges and records it.
pub(crate) fn as_set_statement(name: &str, value: &str) -> String {
    // standard_conforming_strings is on in every session airlock serves, so doubling quotes
    // is the whole of quoting.
    format!("SET {name} TO '{}'", value.replace('\'', "''"))
}

/// Judges each startup setting as the `SET` statement it amounts to, with the same rules and
/// fail-closed checks as a `SET` in the session, and records them all before the upstream is
/// opened (no execution without a record). Returns the audit sequence numbers of the settings,
/// whose outcomes the caller records once the upstream has answered; or the FATAL error that
/// refuses the session. A setting a rule sends to review refuses the session too: a startup
/// packet cannot wait for a reviewer (run the `SET` in the session instead).
pub(crate) fn judge_settings(
    session: &SessionGate,
    settings: &[(String, String)],
) -> Result<Vec<u64>, ErrorFields> {
    let mut records = Vec::with_capacity(settings.len());
    let mut refusal = None;
    for (name, value) in settings {
        let text = as_set_statement(name, value);
        let judged = session.admit_now(
            &text,
            |judged| guard_session(session, &text, judged),
            "this setting needs a review, and a startup packet cannot wait for one; connect without it and run the SET in the session",
        );
        if refusal.is_none() {
            refusal = denial(session, &judged).map(|e| ErrorFields {
                severity: "FATAL",
                hint: Some(format!(
                    "the setting came from the startup packet (`options` or a parameter): `{text}`"
                )),
                ..e
            });
        }
        records.push((session.next_seq(), text, judged));
    }
    let refs: Vec<(u64, &str, &airlock_gate::Judged)> = records
        .iter()
        .map(|(seq, text, judged)| (*seq, text.as_str(), judged))
        .collect();
    if let Err(e) = session.record(&refs) {
        return Err(ErrorFields::fatal("58030", e.to_string()));
    }
    match refusal {
        Some(f) => Err(f),
        None => Ok(records.iter().map(|(seq, _, _)| *seq).collect()),
    }
}

/// Startup parameters that would make the server read statements differently from the
/// gateway: a client encoding that is not ASCII-safe, a `search_path` that lets another schema
/// shadow built-in names.
pub(crate) fn refuse_startup_params(params: &[(String, String)]) -> Option<ErrorFields> {
    for (name, value) in params {
        if name.eq_ignore_ascii_case("client_encoding") {
            if let Err(e) = encoding::ClientEncoding::check(value) {
                return Some(ErrorFields::fatal("22023", format!("airlock: {e}")));
            }
        }
        if name.eq_ignore_ascii_case("search_path")
            && !airlock_sql::search_path_trusts_builtins(value)
        {
            // Another schema before pg_catalog could shadow `lower()` with a function that
            // writes, behind a name the classifier trusts.
            return Some(ErrorFields::fatal(
                "22023",
                format!("airlock: search_path `{value}` lists pg_catalog after another schema, so built-in function names could resolve to other functions; put pg_catalog first or leave it out"),
            ));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn settings_that_load_code_are_refused() {
        for bad in [
            "-c session_preload_libraries=auto_explain",
            "-c local-preload-libraries=x",
            "--dynamic_library_path=/tmp",
            "-c jit_provider=x",
        ] {
            let err = parse_options(bad).unwrap_err();
            assert!(err.contains("load code"), "{bad}: {err}");
        }
        let direct = sort_params(vec![("session_preload_libraries".into(), "x".into())]);
        assert!(direct.is_err());
    }

    #[test]
    fn connection_parameters_inside_options_are_refused() {
        for bad in [
            "-c database=postgres",
            "-c replication=database",
            "-c replication=true",
            "-c user=postgres",
            "-c options=-cwork_mem=1",
            "-c _pq_.x=1",
            "--database=postgres",
        ] {
            let err = parse_options(bad).unwrap_err();
            assert!(err.contains("connection parameter"), "{bad}: {err}");
        }
    }

    #[test]
    fn options_are_split_as_the_server_splits_them() {
        assert_eq!(
            parse_options("-c search_path=s  -cstatement_timeout=1234 --lock-timeout=5s").unwrap(),
            pairs(&[
                ("search_path", "s"),
                ("statement_timeout", "1234"),
                ("lock_timeout", "5s")
            ])
        );
        assert_eq!(
            parse_options(r"-c application_name=a\ b\\c").unwrap(),
            pairs(&[("application_name", r"a b\c")])
        );
        assert_eq!(
            parse_options("-c x.y=1=2").unwrap(),
            pairs(&[("x.y", "1=2")])
        );
        assert!(parse_options("").unwrap().is_empty());
    }

    #[test]
    fn other_switches_and_odd_names_are_refused() {
        for bad in [
            "-e",
            "-d 5",
            "-c",
            "-c novalue",
            "-c 'a'=1",
            "-c a;b=1",
            "-c a..b=1",
            "-c 1a=1",
            "-F",
        ] {
            assert!(parse_options(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params_are_sorted_into_passed_settings_and_protocol_fields() {
        let sorted = sort_params(pairs(&[
            ("user", "agent"),
            ("database", "pg"),
            ("application_name", "psql"),
            ("options", "-c work_mem=64kB"),
            ("statement_timeout", "10s"),
            ("_pq_.something", "x"),
        ]))
        .unwrap();
        assert_eq!(sorted.passed, pairs(&[("application_name", "psql")]));
        assert_eq!(
            sorted.settings,
            pairs(&[("work_mem", "64kB"), ("statement_timeout", "10s")])
        );
    }

    #[test]
    fn set_statements_quote_the_value() {
        assert_eq!(
            as_set_statement("application_name", "it's"),
            "SET application_name TO 'it''s'"
        );
    }
}
