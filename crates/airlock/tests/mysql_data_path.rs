//! The MySQL/MariaDB data path with real clients: the `mysql` command-line client and the
//! mysql_async driver, against the machine's MariaDB through the gateway.

mod support;

use mysql_async::prelude::*;
use support::*;

const NO_DDL: &str = r#"
[[rules]]
name = "no-destructive-ddl"
connections = { tags = { env = "dev" } }
operations = ["drop", "truncate"]
action = "deny"
message = "Destructive DDL is not allowed"
"#;

#[test]
fn mysql_client_session_is_relayed_classified_and_audited() {
    let gw = Gateway::start_mysql(NO_DDL);
    let t = unique("my_t");
    let script = format!(
        r#"select 40 + 2 as answer;
create table {t} (id int primary key, email varchar(64));
insert into {t} values (1, 'a@example.com'), (2, 'b@example.com');
select email from {t} order by id;
use test
select count(*) as n from {t};
drop table {t};
/*!50001 DROP TABLE {t} */;
truncate table {t};
load data local infile '/etc/passwd' into table {t};
DELIMITER //
select 'multi' as m; drop table {t} //
DELIMITER ;
select 'after denial' as state;
"#
    );
    let out = gw.mysql(&script);
    let s = text(&out);
    assert!(s.contains("42"), "{s}");
    assert!(s.contains("b@example.com"), "{s}");
    assert!(s.contains("ERROR 1142 (42000)"), "{s}");
    assert!(
        s.contains("airlock: Destructive DDL is not allowed (rule `no-destructive-ddl`)"),
        "{s}"
    );
    assert!(s.contains("LOAD DATA LOCAL"), "{s}");
    assert!(
        // The client echoes a failed statement: look for the result, not the text.
        !s.contains("m\nmulti"),
        "the multi-statement with a denied part ran: {s}"
    );
    assert!(s.contains("after denial"), "{s}");
    // None of the denied statements reached the upstream.
    assert_eq!(direct_mysql(&format!("select count(*) from {t}")), "2");
    direct_mysql(&format!("drop table {t}"));
    let audit = gw.audit_log();
    assert!(audit.contains(&format!("insert into {t}")), "{audit}");
    assert!(audit.contains("\"decision\":\"deny\""), "{audit}");
    assert!(audit.contains("\"rule\":\"no-destructive-ddl\""), "{audit}");
    assert!(
        audit.contains("USE `test`"),
        "COM_INIT_DB not audited: {audit}"
    );
}

#[test]
fn bad_token_and_unknown_connection_are_native_errors() {
    let gw = Gateway::start_mysql("");
    let s = text(&gw.mysql_as("agent", "wrong-token", "my-local", "select 1;"));
    assert!(s.contains("ERROR 1045 (28000)"), "{s}");
    let s = text(&gw.mysql_as("agent", TOKEN, "nope", "select 1;"));
    assert!(s.contains("ERROR 1049 (42000)"), "{s}");
    assert!(s.contains("my-local"), "known connections are listed: {s}");
    let s = text(&gw.mysql_as("outsider", OUTSIDER_TOKEN, "my-local", "select 1;"));
    assert!(s.contains("ERROR 1044 (42000)"), "{s}");
    // The upstream credential never reaches the client and the token never reaches the log.
    assert!(!gw.audit_log().contains(TOKEN));
}

fn opts(gw: &Gateway, user: &str, token: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(gw.port)
        .user(Some(user))
        .pass(Some(token))
        .db_name(Some("my-local"))
        .enable_cleartext_plugin(true)
        .prefer_socket(false)
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_driver_text_binary_multi_statement_and_denials() {
    let gw = Gateway::start_mysql(NO_DDL);
    let t = unique("my_drv");
    let mut conn = mysql_async::Conn::new(opts(&gw, "agent", TOKEN))
        .await
        .expect("connect through airlock");
    conn.query_drop(format!(
        "create table {t} (id int primary key, name varchar(32), score double, at datetime)"
    ))
    .await
    .unwrap();
    // Prepared statements: COM_STMT_PREPARE / EXECUTE / CLOSE with binary rows.
    let stmt = conn
        .prep(format!("insert into {t} values (?, ?, ?, now())"))
        .await
        .unwrap();
    for i in 1..=50 {
        conn.exec_drop(&stmt, (i, format!("n{i}"), i as f64 / 2.0))
            .await
            .unwrap();
    }
    conn.close(stmt).await.unwrap();
    let rows: Vec<(i32, String, f64)> = conn
        .exec(
            format!("select id, name, score from {t} where id <= ? order by id"),
            (3,),
        )
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, "n1".into(), 0.5),
            (2, "n2".into(), 1.0),
            (3, "n3".into(), 1.5)
        ]
    );
    // Text protocol, multi-statement with several result sets.
    let mut result = conn
        .query_iter(format!("select count(*) from {t}; select max(id) from {t}"))
        .await
        .unwrap();
    let first: Vec<i64> = result.collect().await.unwrap();
    let second: Vec<i64> = result.collect().await.unwrap();
    drop(result);
    assert_eq!((first, second), (vec![50], vec![50]));
    // A multi-statement with a denied part is denied whole: the update does not run.
    let err = conn
        .query_drop(format!("update {t} set score = 0; drop table {t}"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("1142") && msg.contains("no-destructive-ddl"),
        "{msg}"
    );
    let zero: Option<i64> = conn
        .query_first(format!("select count(*) from {t} where score = 0"))
        .await
        .unwrap();
    assert_eq!(zero, Some(0));
    // A denied prepared statement is refused at prepare time.
    let err = conn.prep(format!("drop table {t}")).await.unwrap_err();
    assert!(err.to_string().contains("1142"), "{err}");
    // The session survives the denials; ping and reset work.
    conn.ping().await.unwrap();
    conn.reset().await.unwrap();
    let n: Option<i64> = conn
        .query_first(format!("select count(*) from {t}"))
        .await
        .unwrap();
    assert_eq!(n, Some(50));
    conn.query_drop(format!("create table {t}_x (a int)"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    direct_mysql(&format!("drop table {t}; drop table {t}_x"));
    let audit = gw.audit_log();
    // 50 executions of the prepared insert are 50 audit records.
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"kind\":\"command\"")
                && l.contains(&format!("insert into {t} values (?")))
            .count(),
        50,
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_reaches_the_right_upstream_thread() {
    let gw = Gateway::start_mysql("");
    let mut busy = mysql_async::Conn::new(opts(&gw, "agent", TOKEN))
        .await
        .unwrap();
    let mut killer = mysql_async::Conn::new(opts(&gw, "agent", TOKEN))
        .await
        .unwrap();
    let mut other = mysql_async::Conn::new(opts(&gw, "dev", DEV_TOKEN))
        .await
        .unwrap();
    let gateway_id = busy.id();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = busy.query_first("select sleep(20)").await;
        (r, busy)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Another identity cannot see (or kill) this session.
    let err = other
        .query_drop(format!("KILL QUERY {gateway_id}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1094"), "{err}");
    killer
        .query_drop(format!("KILL QUERY {gateway_id}"))
        .await
        .expect("kill through airlock");
    let (r, mut busy) = sleeper.await.unwrap();
    // Interrupted: SLEEP() returns 1, or MariaDB reports 1317 "Query execution was interrupted".
    match r {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert!(e.to_string().contains("1317"), "{e}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The killed query's connection is still usable; the killer's and the other's too.
    let one: Option<i64> = busy.query_first("select 1").await.unwrap();
    assert_eq!(one, Some(1));
    let two: Option<i64> = other.query_first("select 2").await.unwrap();
    assert_eq!(two, Some(2));
}

#[test]
fn policy_test_uses_the_mysql_classifier_for_mysql_connections() {
    let gw = Gateway::start_mysql(NO_DDL);
    // An executable comment is SQL to MySQL (a DROP here) but only a comment to PostgreSQL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "test", "--config"])
        .arg(&gw.config)
        .args([
            "--identity",
            "agent",
            "--connection",
            "my-local",
            "/*!50001 DROP TABLE `t` */",
        ])
        .output()
        .unwrap();
    let s = text(&out);
    assert_eq!(out.status.code(), Some(4), "{s}");
    assert!(s.contains("statement 1: drop"), "{s}");
    assert!(s.contains("no-destructive-ddl"), "{s}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "test", "--config"])
        .arg(&gw.config)
        .args(["--identity", "agent", "--connection", "my-local"])
        .arg("select `email` from customers # a MySQL comment")
        .output()
        .unwrap();
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("statement 1: select reads [customers]"), "{s}");
}
