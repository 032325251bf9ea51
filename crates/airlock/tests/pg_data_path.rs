//! The PostgreSQL data path with real clients: psql, pgbench and tokio-postgres.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::*;
use tokio_postgres::{error::SqlState, NoTls, SimpleQueryMessage};

async fn connect(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .expect("connect through airlock");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

const NO_DDL: &str = r#"
[[rules]]
name = "no-destructive-ddl"
connections = { tags = { env = "dev" } }
operations = ["drop", "truncate"]
action = "deny"
message = "Destructive DDL is not allowed"
"#;

#[test]
fn psql_session_is_relayed_and_audited() {
    let gw = Gateway::start(NO_DDL);
    let t = unique("psql_t");
    let script = format!(
        r#"select 40 + 2 as answer;
begin;
create table {t} (id int primary key, email text);
insert into {t} values (1, 'a@example.com'), (2, 'b@example.com');
\d {t}
copy {t} from stdin;
3	c@example.com
\.
copy {t} to stdout;
select count(*) as n from {t};
commit;
listen chan_{t};
notify chan_{t}, 'hello';
create table if not exists {t} (id int);
do $$ begin raise notice 'hidden'; end $$;
begin;
select 1/0;
select 1;
rollback;
select 'after rollback' as state;
drop table {t};
"#
    );
    let out = psql(&gw.agent(), &script);
    let s = text(&out);
    assert!(s.contains("42"), "{s}");
    assert!(s.contains("Table \"public."), "\\d output missing: {s}");
    assert!(
        s.contains("3\tc@example.com"),
        "COPY TO STDOUT missing: {s}"
    );
    assert!(s.contains(" 3\n"), "count after COPY FROM missing: {s}");
    assert!(
        s.contains("Asynchronous notification \"chan_"),
        "NOTIFY missing: {s}"
    );
    assert!(
        s.contains("already exists, skipping"),
        "notice missing: {s}"
    );
    // A DO block hides SQL in a string: under a rule about DROP it fails closed.
    assert!(!s.contains("hidden"), "DO block ran: {s}");
    assert!(s.contains("division by zero"), "{s}");
    assert!(s.contains("current transaction is aborted"), "{s}");
    assert!(s.contains("after rollback"), "{s}");
    assert!(s.contains("airlock: Destructive DDL is not allowed"), "{s}");
    // The denied DROP never reached the upstream.
    assert_eq!(direct(&format!("select count(*) from {t}")), "3");
    direct(&format!("drop table {t}"));

    // Every statement is in the audit log, and the index shows them.
    let log = gw.audit_log();
    assert!(log.contains("select 40 + 2 as answer"), "{log}");
    assert!(
        log.contains(r#""decision":"deny","rule":"no-destructive-ddl""#),
        "{log}"
    );
    let list = text(&gw.cli(&["sessions", "list"]));
    assert!(
        list.contains("agent") && list.contains("pg-local"),
        "{list}"
    );
    let id = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let show = text(&gw.cli(&["sessions", "show", &id]));
    assert!(show.contains("select 40 + 2 as answer"), "{show}");
    assert!(
        show.contains("deny") && show.contains("[no-destructive-ddl]"),
        "{show}"
    );
    assert!(show.contains("insert") && show.contains("2 rows"), "{show}");
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn wrong_token_unknown_connection_and_foreign_group_are_refused() {
    let gw = Gateway::start("");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cases = [
            (
                gw.conninfo("agent", "wrong-token-0000000000000", "pg-local"),
                SqlState::INVALID_PASSWORD,
                "token is not valid",
            ),
            (
                gw.conninfo("outsider", TOKEN, "pg-local"),
                SqlState::INVALID_PASSWORD,
                "token is not valid",
            ),
            (
                gw.conninfo("agent", TOKEN, "pg-nope"),
                SqlState::INVALID_CATALOG_NAME,
                "known: pg-local",
            ),
            (
                gw.conninfo("outsider", OUTSIDER_TOKEN, "pg-local"),
                SqlState::INSUFFICIENT_PRIVILEGE,
                "may not use connection `pg-local`",
            ),
        ];
        for (conninfo, code, text) in cases {
            let err = tokio_postgres::connect(&conninfo, NoTls)
                .await
                .err()
                .expect("must be refused");
            let db = err
                .as_db_error()
                .unwrap_or_else(|| panic!("{conninfo}: not a server error: {err}"));
            assert_eq!(db.code(), &code, "{conninfo}: {}", db.message());
            assert!(db.message().contains(text), "{conninfo}: {}", db.message());
        }
    });
    // No session was opened for any of them.
    let log = gw.audit_log();
    assert!(!log.contains("session_start"), "{log}");
    assert!(log.contains("auth_failure"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_binary_params_portals_and_denials() {
    let gw = Gateway::start(NO_DDL);
    let client = connect(&gw.agent()).await;
    // Binary parameters and results through named prepared statements, reused.
    let stmt = client
        .prepare("select $1::int4 + 1, $2::text || '!', $3::bytea")
        .await
        .unwrap();
    for i in 0..3i32 {
        let row = client
            .query_one(&stmt, &[&i, &"hi", &vec![0u8, 1, 255]])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        assert_eq!(row.get::<_, String>(1), "hi!");
        assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 1, 255]);
    }
    // Portals with a row limit inside a transaction.
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    let portal = tx.bind("select generate_series(1, 10)", &[]).await.unwrap();
    let first = tx.query_portal(&portal, 4).await.unwrap();
    let rest = tx.query_portal(&portal, 100).await.unwrap();
    assert_eq!((first.len(), rest.len()), (4, 6));
    tx.commit().await.unwrap();

    // A denied statement in the extended protocol: native 42501, the session stays usable.
    let t = unique("ext_t");
    direct(&format!("create table {t} (id int)"));
    let err = client
        .prepare(&format!("drop table {t}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("Destructive DDL"));
    let err = client
        .execute(&format!("truncate {t}"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let row = client
        .query_one("select $1::int8 * 2", &[&21i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);

    // Inside a transaction the denial aborts it upstream too, so client and server agree.
    let tx = client.transaction().await.unwrap();
    tx.execute(&format!("insert into {t} values (1)"), &[])
        .await
        .unwrap();
    let err = tx
        .batch_execute(&format!("drop table {t}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let err = tx.execute("select 1", &[]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(direct(&format!("select count(*) from {t}")), "0");
    direct(&format!("drop table {t}"));

    // Multi-statement simple query with a denied part: nothing of it runs.
    let t2 = unique("multi_t");
    direct(&format!("create table {t2} (id int)"));
    let err = client
        .simple_query(&format!("insert into {t2} values (1); drop table {t2}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    assert_eq!(direct(&format!("select count(*) from {t2}")), "0");
    direct(&format!("drop table {t2}"));
    let msgs = client.simple_query("select 'still here'").await.unwrap();
    assert!(msgs
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("still here"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_upstream_backend() {
    let gw = Gateway::start("");
    let client = connect(&gw.agent()).await;
    let token = client.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.unwrap();
    let err = sleeper.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn pgbench_runs_in_all_three_protocol_modes() {
    let gw = Gateway::start(NO_DDL);
    let o = std::process::Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-i",
            "-s",
            "1",
            "-q",
            "test",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for mode in ["simple", "extended", "prepared"] {
        let o = std::process::Command::new("pgbench")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &gw.port.to_string(),
                "-U",
                "agent",
                "-n",
                "-c",
                "2",
                "-j",
                "2",
                "-t",
                "100",
                "-M",
                mode,
                "pg-local",
            ])
            .env("PGPASSWORD", TOKEN)
            .output()
            .unwrap();
        let s = text(&o);
        assert!(o.status.success(), "pgbench -M {mode}: {s}");
        assert!(
            s.contains("number of transactions actually processed: 200/200"),
            "pgbench -M {mode}: {s}"
        );
        assert!(
            s.contains("number of failed transactions: 0"),
            "pgbench -M {mode}: {s}"
        );
    }
}

#[test]
fn tls_sslmode_require_works() {
    let gw = Gateway::start("");
    let conninfo = format!(
        "host=127.0.0.1 port={} user=agent password={TOKEN} dbname=pg-local sslmode=require",
        gw.port
    );
    let o = psql(&conninfo, "select 'over tls' as t;\n");
    assert!(text(&o).contains("over tls"), "{}", text(&o));
    assert!(gw.dir.path().join("data/tls/gateway-cert.pem").exists());
    // The session was recorded as TLS.
    assert!(gw.audit_log().contains(r#""tls":true"#));
}
