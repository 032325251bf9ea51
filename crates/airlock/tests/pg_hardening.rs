//! Attacks on how the gateway reads a PostgreSQL session, through real psql against the
//! machine's PostgreSQL: client encodings in which a statement hides inside a string, settings
//! that would switch them on mid-session, and the read-only defence in depth that catches a write
//! the classifier cannot see.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::{Command, Output, Stdio};
use support::*;

/// psql as the agent with extra environment (e.g. `PGCLIENTENCODING`), `script` as raw bytes.
fn psql_env(gw: &Gateway, env: &[(&str, &str)], script: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("psql");
    cmd.arg(gw.agent())
        .args(["-X", "-v", "ON_ERROR_STOP=0", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("psql is installed");
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&script);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

fn table_with_rows(prefix: &str) -> String {
    let t = unique(prefix);
    direct(&format!(
        "create table {t} (id int); insert into {t} select generate_series(1, 20)"
    ));
    t
}

#[test]
fn client_only_encodings_are_refused_at_startup() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    let t = table_with_rows("enc_start");
    for enc in [
        "SJIS",
        "BIG5",
        "GBK",
        "GB18030",
        "UHC",
        "JOHAB",
        "SHIFT_JIS_2004",
    ] {
        // The classic smuggle: 0x95 0x5C is one SJIS character, so the server sees the string
        // end one quote early and runs the DELETE.
        let mut script = b"SELECT E'\x95\\' ; DELETE FROM ".to_vec();
        script.extend_from_slice(t.as_bytes());
        script.extend_from_slice(b" WHERE id = 10; SELECT 1 --';\n");
        let o = psql_env(&gw, &[("PGCLIENTENCODING", enc)], &script);
        let out = text(&o);
        assert!(
            out.contains("client_encoding") && out.contains("not supported through airlock"),
            "{enc}: {out}"
        );
    }
    assert_eq!(direct(&format!("select count(*) from {t}")), "20");
}

#[test]
fn switching_to_an_unsafe_encoding_mid_session_is_refused() {
    // No rules here: only the encoding guard stands between the client and the server.
    let gw = Gateway::start("");
    let t = table_with_rows("enc_set");
    let o = psql_env(
        &gw,
        &[],
        format!(
            "SET client_encoding = 'SJIS';\n\
             set names 'big5';\n\
             SET client_encoding TO \"GBK\";\n\
             SET U&\"client_encod\\0069ng\" = 'SJIS';\n\
             SELECT set_config('client_encoding', 'SJIS', false);\n\
             SELECT pg_catalog.set_config('client_' || 'encoding', 'UHC', false);\n\
             SELECT set_config('client_encoding', lower('SJIS'), false);\n\
             SET client_encoding = 'SJIS' \\; DELETE FROM {t} WHERE id = 10;\n\
             SHOW client_encoding;\n\
             SET client_encoding = 'LATIN1';\n\
             SHOW client_encoding;\n"
        )
        .as_bytes(),
    );
    let out = text(&o);
    // Each line is refused by the gateway (a computed setting name is refused as whatever it
    // might name, e.g. standard_conforming_strings).
    assert_eq!(
        out.matches("ERROR:  airlock:").count(),
        8,
        "every switch to an unsafe encoding is refused: {out}"
    );
    assert!(out.contains("UTF8") && out.contains("LATIN1"), "{out}");
    assert_eq!(direct(&format!("select count(*) from {t}")), "20");
}

#[test]
fn sessions_in_a_safe_non_utf8_encoding_keep_working() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    // 0xE9 is é in LATIN1 and not valid UTF-8 on its own: the session must not be cut.
    let o = psql_env(
        &gw,
        &[("PGCLIENTENCODING", "LATIN1")],
        b"SELECT 'caf\xe9' AS v, length('caf\xe9') AS n;\nSELECT 'still here' AS after;\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let raw = &o.stdout;
    assert!(
        raw.windows(4).any(|w| w == b"caf\xe9"),
        "{}",
        String::from_utf8_lossy(raw)
    );
    let out = text(&o);
    assert!(out.contains("still here"), "{out}");
    assert!(out.lines().any(|l| l.trim_end().ends_with("| 4")), "{out}");
    // The audit trail holds the statement as text (decoded from LATIN1).
    assert!(gw.audit_log().contains("café"), "{}", gw.audit_log());
    let o = psql_env(
        &gw,
        &[("PGCLIENTENCODING", "WIN1251")],
        b"SELECT '\xcf\xf0\xe8\xe2\xe5\xf2' AS v;\n",
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// A table `t` and a view `t_v` whose definition calls a function that inserts into `t`: to
/// the classifier, `select * from t_v` is a plain SELECT.
fn hidden_write_view(prefix: &str) -> String {
    let t = unique(prefix);
    direct(&format!(
        "create table {t} (id int);
         create function {t}_f() returns int language sql volatile as 'insert into {t} values (1); select 1';
         create view {t}_v as select {t}_f() as one;"
    ));
    t
}

#[test]
fn read_only_sessions_stop_writes_the_classifier_cannot_see() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    let t = hidden_write_view("ro_hidden");
    let o = gw.psql(&format!(
        "show default_transaction_read_only;\nselect * from {t}_v;\nselect count(*) as n from {t};\n"
    ));
    let out = text(&o);
    assert!(out.lines().any(|l| l.trim() == "on"), "{out}");
    assert!(out.contains("read-only transaction"), "{out}");
    assert_eq!(direct(&format!("select count(*) from {t}")), "0");
    // The audit trail says the session was opened read-only.
    let log = gw.audit_log();
    assert!(
        log.lines()
            .any(|l| l.contains("session_start") && l.contains("\"read_only\":true")),
        "{log}"
    );
    // Humans (no blanket deny) are not read-only.
    let human = Gateway::start("");
    let o = human.psql("show default_transaction_read_only;\n");
    assert!(text(&o).lines().any(|l| l.trim() == "off"), "{}", text(&o));
}

#[test]
fn a_configured_read_only_role_is_used_for_read_only_sessions() {
    let role = unique("airlock_ro");
    direct(&format!(
        "create role {role} login; grant select on all tables in schema public to {role}"
    ));
    let upstream = format!(
        r#"
[[connections]]
name = "pg-ro"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "postgres"
readonly_user = "{role}"
sslmode = "disable"
tags = {{ env = "dev" }}
allow_groups = ["ai-agents"]
"#
    );
    let gw = Gateway::start_with(&upstream, READ_ONLY_AGENTS, None);
    let o = psql(
        &gw.conninfo("agent", TOKEN, "pg-ro"),
        "select current_user as who;\n",
    );
    let out = text(&o);
    assert!(out.contains(&role), "{out}");
    let _ = Command::new("psql")
        .args([
            DIRECT,
            "-X",
            "-c",
            &format!("drop owned by {role}; drop role {role}"),
        ])
        .output();
}

#[test]
fn read_only_sessions_refuse_what_would_switch_read_only_off() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    let t = hidden_write_view("ro_toggle");
    let o = gw.psql(&format!(
        "SET default_transaction_read_only = off;\n\
         SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE;\n\
         RESET default_transaction_read_only;\n\
         RESET ALL;\n\
         BEGIN READ WRITE;\n\
         select * from {t}_v;\n\
         ROLLBACK;\n\
         START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE;\n\
         select * from {t}_v;\n\
         ROLLBACK;\n\
         show default_transaction_read_only;\n"
    ));
    let out = text(&o);
    assert!(
        out.matches("could switch the database's read-only mode off")
            .count()
            + out.matches("AI agents are read-only here").count()
            >= 6,
        "{out}"
    );
    assert!(out.lines().any(|l| l.trim() == "on"), "{out}");
    assert_eq!(direct(&format!("select count(*) from {t}")), "0", "{out}");
}

/// A raw StartupMessage with extra parameters (libpq cannot send `search_path` itself): what
/// the gateway answered when it refused the startup, empty when it accepted it.
fn raw_startup(port: u16, params: &[(&str, &str)]) -> String {
    RawPg::connect(port, "agent", TOKEN, "pg-local", params)
        .err()
        .unwrap_or_default()
}

#[test]
fn a_search_path_that_shadows_pg_catalog_is_refused_at_startup() {
    let gw = Gateway::start("");
    let refused = raw_startup(gw.port, &[("search_path", "rt, pg_catalog")]);
    assert!(
        refused.contains("search_path") && refused.contains("pg_catalog first"),
        "{refused}"
    );
    let also = raw_startup(gw.port, &[("client_encoding", "GBK")]);
    assert!(also.contains("not supported through airlock"), "{also}");
    // pg_catalog first, or not listed (then searched first implicitly): fine.
    for ok in ["pg_catalog, rt", "\"$user\", public"] {
        let got = raw_startup(gw.port, &[("search_path", ok)]);
        assert!(!got.contains("search_path `"), "{ok}: {got}");
    }
}

#[test]
fn standard_conforming_strings_cannot_be_switched_off() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    let t = table_with_rows("scs");
    // With the setting off the server reads `\'` as a quote: what airlock parses as a string
    // and a comment would run (found by the outside review).
    let o = gw.psql(&format!(
        "set standard_conforming_strings = off;\n\
         set local standard_conforming_strings to 'false';\n\
         select set_config('standard_conforming_strings', 'off', false);\n\
         select 'x\\' /*', 1; delete from {t} where id <= 5; -- */;\n\
         show standard_conforming_strings;\n"
    ));
    let out = text(&o);
    assert_eq!(
        out.matches("standard_conforming_strings must stay on")
            .count(),
        3,
        "{out}"
    );
    assert!(out.lines().any(|l| l.trim() == "on"), "{out}");
    assert_eq!(direct(&format!("select count(*) from {t}")), "20", "{out}");
}

#[test]
fn parameters_of_user_defined_types_are_refused_in_read_only_sessions() {
    let gw = Gateway::start(READ_ONLY_AGENTS);
    let domain = unique("dom");
    direct(&format!(
        "create domain {domain} as text check (value <> 'never')"
    ));
    let oid: u32 = direct(&format!("select '{domain}'::regtype::oid"))
        .parse()
        .unwrap();
    let mut pg = RawPg::connect(gw.port, "agent", TOKEN, "pg-local", &[]).unwrap();
    // Round 4: a parameter typed by OID runs the type's input function and the domain's
    // CHECK, code the statement text does not show.
    let mut parse = vec![0u8];
    parse.extend_from_slice(b"select $1\0");
    parse.extend_from_slice(&1u16.to_be_bytes());
    parse.extend_from_slice(&oid.to_be_bytes());
    pg.send(b'P', &parse);
    pg.send(b'B', &bind_text(&[Some("x")]));
    pg.send(b'E', &[0, 0, 0, 0, 0]);
    pg.send(b'S', &[]);
    let answers = pg.until_ready();
    let text: String = answers
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text.contains("user-defined type"), "{text}");
    // Built-in parameter types are fine.
    let ok = pg.execute_with("select $1::int + 1", &[Some("41")]);
    assert!(ok.iter().any(|(t, _)| *t == b'D'), "{ok:?}");
    direct(&format!("drop domain {domain}"));
}

/// Outside review, round 16 (F2): a database or role default `search_path` that searches a
/// user schema before `pg_catalog` let a DBA's function shadow a built-in (`upper`) the
/// classifier and lineage take for what it is. Such a session is refused at open, saying why.
#[test]
fn a_default_search_path_before_pg_catalog_refuses_the_session() {
    let role = unique("airlock_sp_role");
    direct(&format!(
        "create role {role} login; alter role {role} set search_path = public, pg_catalog;
         grant connect on database test to {role}"
    ));
    let extra = format!(
        r#"
[[connections]]
name = "pg-shadowed"
type = "postgres"
address = "127.0.0.1:5432"
database = "test"
user = "{role}"
sslmode = "disable"
allow_groups = ["ai-agents"]
"#
    );
    let gw = Gateway::start(&extra);
    let o = psql(
        &gw.conninfo("agent", TOKEN, "pg-shadowed"),
        "select 1 as reached;\n",
    );
    let out = text(&o);
    let _ = std::process::Command::new("psql")
        .args([DIRECT, "-X", "-c", &format!("drop role {role}")])
        .output();
    assert!(!out.contains("reached"), "{out}");
    assert!(
        out.contains("searches schema `public` before pg_catalog"),
        "{out}"
    );
    // The usual default passes.
    assert!(text(&gw.psql("select 1 as reached;\n")).contains("reached"));
}

/// Outside review, round 18 (F1, F2): startup settings are passed on as startup parameters,
/// where `database` and `replication` are the connection itself: `-c database=postgres` in
/// `options` reached another database, `-c replication=database` opened a walsender. Both are
/// refused, through the real psql.
#[test]
fn connection_parameters_and_code_loading_settings_in_startup_options_are_refused() {
    let gw = Gateway::start("");
    for (options, why) in [
        ("-c database=postgres", "connection parameter"),
        ("-c replication=database", "connection parameter"),
        ("--database=postgres", "connection parameter"),
        // Round 19 (F1): a library loaded at session start runs inside the server.
        ("-c session_preload_libraries=auto_explain", "load code"),
        ("-c local_preload_libraries=x", "load code"),
    ] {
        let conninfo = format!("{} options='{options}'", gw.agent());
        let out = text(&psql(&conninfo, "select current_database() as db;\n"));
        assert!(
            !out.contains("postgres\n") && !out.contains("(1 row)"),
            "{options}: {out}"
        );
        assert!(out.contains(why), "{options}: {out}");
    }
    // A plain setting still passes.
    let conninfo = format!("{} options='-c statement_timeout=5000'", gw.agent());
    let out = text(&psql(&conninfo, "select current_database() as db;\n"));
    assert!(out.contains("test"), "{out}");
}
