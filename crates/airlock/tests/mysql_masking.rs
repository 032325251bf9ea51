//! Masking of MySQL/MariaDB results with real clients (the `mysql` command-line client for the
//! text protocol, mysql_async for the binary protocol of prepared statements) against the
//! machine's MariaDB through the gateway: a bypass corpus of queries that try to get a masked
//! value out, ERR messages that echo values, and an audit trail with counts but no values.

mod support;

use mysql_async::prelude::*;
use support::*;

/// Values no content detector recognises: only the column rule can mask them.
const CODES: [&str; 3] = ["ZEBRA-4471", "OKAPI-9925", "LLAMA-3310"];
const CARD: &str = "4111111111111111";
const EMAIL: &str = "ada.lovelace@example.com";

struct Fixture {
    gw: Gateway,
    t: String,
    v: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = mysql(
            &["-h127.0.0.1", "-P3306", "-uroot", "-Dtest"],
            &format!(
                "drop view if exists {v}; drop table if exists {t};",
                v = self.v,
                t = self.t
            ),
        );
    }
}

fn fixture(strategy: &str) -> Fixture {
    let t = unique("mask_c");
    let v = format!("{t}_v");
    direct_mysql(&format!(
        "create table {t} (id int primary key, name varchar(40), email varchar(80), \
         secret_code varchar(20) unique, card bigint, note text);
         insert into {t} values
           (1, 'Ada', '{EMAIL}', '{c0}', {CARD}, 'call 555-123-4567 or mail grace@example.org'),
           (2, 'Grace', 'grace@example.org', '{c1}', 5500000000000004, 'nothing here'),
           (3, 'Linus', NULL, '{c2}', 42, NULL);
         create view {v} as select id, secret_code as code, name from {t};",
        c0 = CODES[0],
        c1 = CODES[1],
        c2 = CODES[2]
    ));
    let extra = format!(
        r#"
[[masking]]
name = "customer-pii"
connections = {{ tags = {{ env = "dev" }} }}
columns = ["{t}.secret_code", "*.email"]
detectors = ["email", "credit_card", "phone"]
strategy = "{strategy}"
"#
    );
    Fixture {
        gw: Gateway::start_mysql(&extra),
        t,
        v,
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

fn assert_no_secret(s: &str, query: &str) {
    for code in CODES {
        assert!(!s.contains(code), "`{query}` leaked {code}:\n{s}");
        assert!(
            !s.contains(&hex(code)),
            "`{query}` leaked hex({code}):\n{s}"
        );
        let rev: String = code.chars().rev().collect();
        assert!(!s.contains(&rev), "`{query}` leaked reverse({code}):\n{s}");
        let head = code.split('-').next().unwrap_or(code);
        assert!(!s.contains(head), "`{query}` leaked part of {code}:\n{s}");
    }
    assert!(!s.contains(EMAIL), "`{query}` leaked an email:\n{s}");
    assert!(!s.contains(CARD), "`{query}` leaked a card:\n{s}");
    assert!(
        !s.contains("grace@example.org"),
        "`{query}` leaked an email:\n{s}"
    );
}

/// A masked session's script that ends with `select 'still here' as s`: no secret came out,
/// `refusals` statements were refused as server state masking cannot follow, and the session
/// went on.
fn assert_refused_and_still_serving(s: &str, what: &str, refusals: usize) {
    assert_no_secret(s, what);
    assert_eq!(s.matches("masking cannot follow").count(), refusals, "{s}");
    assert!(s.contains("still here"), "{s}");
}

#[test]
fn bypass_corpus_through_the_mysql_client() {
    let f = fixture("redact");
    let (t, v) = (&f.t, &f.v);
    let corpus = [
        format!("select secret_code from {t}"),
        format!("select secret_code as x from {t}"),
        format!("select c.secret_code from {t} c"),
        format!("select * from {t}"),
        format!("select {t}.* from {t}"),
        format!("select test.{t}.secret_code from test.{t}"),
        format!("select id, concat(secret_code, '') from {t}"),
        format!("select upper(secret_code), lower(secret_code) from {t}"),
        format!("select hex(secret_code), reverse(secret_code) from {t}"),
        format!("select substr(secret_code, 1, 5) a, substr(secret_code, 7) b from {t}"),
        format!("select case when id > 0 then secret_code end from {t}"),
        format!("select coalesce(null, secret_code), ifnull(secret_code, '') from {t}"),
        format!("select cast(secret_code as char), convert(secret_code using utf8mb4) from {t}"),
        format!("select (select secret_code from {t} limit 1) s"),
        format!("select (select max(secret_code) from {t}) s, 1"),
        format!("select x from (select secret_code as x from {t}) d"),
        format!("select x from (select secret_code as x from {t} limit 5) d"),
        format!("select id from (select secret_code as id from {t} group by secret_code) d"),
        format!("select name from (select secret_code as name from {t} order by 1 limit 9) {t}"),
        format!("with q as (select secret_code z from {t}) select z from q"),
        format!("with recursive q as (select secret_code z from {t}) select * from q"),
        format!("select name from {t} union select secret_code from {t}"),
        format!("select secret_code from {t} union all select name from {t}"),
        format!("select code from {v}"),
        format!("select * from {v}"),
        format!("select json_object('k', secret_code) from {t}"),
        format!("select json_arrayagg(secret_code) from {t}"),
        format!("select json_array(secret_code, email) from {t}"),
        format!("select group_concat(secret_code separator '|') from {t}"),
        format!("/*!select secret_code from {t}*/"),
        format!("select /*! secret_code */ from {t}"),
        format!("/*!50001 select secret_code as x */ from {t}"),
        format!("select id, name from {t} where 1=1; select secret_code from {t}"),
        format!("select @v := secret_code from {t}"),
        format!("set @w = (select secret_code from {t} where id = 2)"),
        "select @w, @v".to_string(),
        format!("select secret_code into @z from {t} where id = 3"),
        "select concat(@z, '')".to_string(),
        format!("select email, note from {t}"),
        format!("select concat(email, '!') from {t}"),
        format!("select card, card + 0 from {t}"),
        format!("prepare s from 'select secret_code from {t}'"),
        "execute s".to_string(),
        format!("handler {t} open"),
        format!("handler {t} read first"),
        format!("handler {t} close"),
        format!("select secret_code from {t} for update"),
        format!("select a.secret_code from {t} a join {t} b on a.id = b.id"),
        format!("select a.x from (select secret_code x from {t}) a join {t} b on 1=1"),
    ];
    let mut script = String::new();
    for q in &corpus {
        script.push_str(q);
        script.push_str(";\n");
    }
    let out = f.gw.mysql(&script);
    let s = text(&out);
    assert_no_secret(&s, "the corpus");
    // Something was actually returned (the corpus ran, it was not all refused).
    assert!(s.contains("Ada") && s.contains("Grace"), "{s}");
    assert!(s.contains("[EMAIL]"), "{s}");
    // The note's phone number and email are masked by content detectors, the rest kept.
    assert!(s.contains("call [PHONE] or mail [EMAIL]"), "{s}");
    // Each query separately too, so one leak is pinned to its query.
    for q in &corpus {
        let s = text(&f.gw.mysql(&format!("{q};\n")));
        assert_no_secret(&s, q);
    }
}

#[test]
fn expressions_without_masked_sources_are_not_masked() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "select count(*) as n, upper(name) as u, id * 10 as tens from {t} where id = 1;\n\
         select name, length(name) as len from {t} order by id;\n"
    )));
    assert!(s.contains("n\tu\ttens\n1\tADA\t10"), "{s}");
    assert!(s.contains("Grace\t5"), "{s}");
}

#[test]
fn duplicate_key_errors_do_not_echo_values() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "insert into {t} (id, secret_code) select 99, secret_code from {t} where id = 1;\n\
         insert into {t} (id, name) values (1, 'dup');\n\
         insert into {t} (id, card) select 98, concat(email, 'x') from {t} where id = 1;\n"
    )));
    // Copies of masked values into a table are refused before the server sees them (session 8):
    // the duplicate that used to echo a secret never happens.
    assert_eq!(
        s.matches("would copy values of masked columns").count(),
        2,
        "{s}"
    );
    assert!(s.contains("ERROR 1062 (23000)"), "{s}");
    // The statement reads masked columns: the whole text is withheld (round 3, F10).
    assert!(s.contains("the text of error 1062 was withheld"), "{s}");
    assert_no_secret(&s, "duplicate key");
    let audit = f.gw.audit_log();
    assert!(audit.contains("?error_detail"), "{audit}");
}

type MaskedRow = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

#[test]
fn prepared_statements_binary_protocol_and_audit_counts() {
    let f = fixture("redact");
    let t = f.t.clone();
    let url = f.gw.url("agent", TOKEN);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts).enable_cleartext_plugin(true);
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let rows: Vec<MaskedRow> = conn
            .exec(
                format!("select id, name, email, secret_code, card, note from {t} where id <= ? order by id"),
                (3,),
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        let (id, name, email, code, card, note) = rows[0].clone();
        assert_eq!(id, 1);
        assert_eq!(name.as_deref(), Some("Ada"));
        assert_eq!(email.as_deref(), Some("[EMAIL]"));
        let code = code.unwrap();
        assert!(!CODES.contains(&code.as_str()), "{code}");
        // A card number in a BIGINT cannot hold a masked string: it becomes NULL.
        assert_eq!(card, None);
        assert_eq!(note.as_deref(), Some("call [PHONE] or mail [EMAIL]"));
        // 42 is no card number: kept, with its type.
        assert_eq!(rows[2].4, Some(42));
        assert_eq!(rows[2].2, None);
        // Expressions over a masked column, binary protocol.
        let rows: Vec<(Option<String>, Option<String>)> = conn
            .exec(
                format!("select x, upper(secret_code) from (select secret_code x, secret_code from {t}) d where ? = 1"),
                (1,),
            )
            .await
            .unwrap();
        for (a, b) in &rows {
            for v in [a, b].into_iter().flatten() {
                assert!(!v.contains("ZEBRA") && !v.contains("OKAPI") && !v.contains("LLAMA"), "{v}");
            }
        }
        // Text protocol through the driver as well.
        let codes: Vec<Option<String>> = conn
            .query(format!("select secret_code from {t} order by id"))
            .await
            .unwrap();
        assert!(codes.iter().flatten().all(|c| !CODES.contains(&c.as_str())), "{codes:?}");
        // A duplicate through a prepared statement: the ERR message is masked too.
        let err = conn
            .exec_drop(
                format!("insert into {t} (id, name) values (?, 'dup')"),
                (1,),
            )
            .await
            .unwrap_err();
        let e = err.to_string();
        assert!(e.contains("1062") && e.contains("withheld") && !e.contains("ZEBRA"), "{e}");
        conn.disconnect().await.unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(600));
    let audit = f.gw.audit_log();
    for code in CODES {
        assert!(
            !audit.contains(code),
            "the audit log holds a value: {audit}"
        );
    }
    assert!(!audit.contains(EMAIL) && !audit.contains(CARD));
    assert!(
        audit.contains(&format!("\"{t}.secret_code\":3")),
        "masked column counts missing: {audit}"
    );
    assert!(audit.contains("\"email\":"), "{audit}");
    assert!(audit.contains("\"credit_card\":"), "{audit}");
    assert!(audit.contains("customer-pii"), "{audit}");
}

#[test]
fn null_strategy_and_exempt_groups() {
    let f = fixture("null");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "select id, secret_code, email from {t} order by id;\n"
    )));
    assert!(s.contains("1\tNULL\tNULL"), "{s}");
    assert_no_secret(&s, "null strategy");
}

#[test]
fn oversized_rows_are_masked_across_16mib_frames() {
    let f = fixture("redact");
    let t = &f.t;
    // A row of more than 16 MiB (two frames) whose masked column is at its end.
    let s = f.gw.mysql_raw(
        &["--max-allowed-packet=64M"],
        &format!(
            "select length(concat(repeat('a', 16777000), note)) as len, \
             concat(repeat('a', 16777000), note) as big, secret_code from {t} where id = 1;\n"
        ),
    );
    let s = text(&s);
    assert!(!s.contains(CODES[0]), "leaked across frames");
    assert!(!s.contains("555-123-4567"), "phone leaked across frames");
    assert!(
        s.contains("[PHONE]") || s.contains("ERROR"),
        "{}",
        &s[..s.len().min(300)]
    );
}

#[test]
fn recordings_hold_masked_rows_and_replay() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "select id, email, secret_code, note from {t} order by id;\n\
         insert into {t} (id, name) values (1, 'dup');\n\
         update {t} set name = 'Ada L.' where id = 1;\n"
    )));
    assert!(s.contains("[EMAIL]"), "{s}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let replay = loop {
        let list = text(&f.gw.cli(&["sessions", "list"]));
        let id = list
            .split_whitespace()
            .find(|w| w.starts_with("s-"))
            .map(str::to_owned);
        if let Some(id) = id {
            let r = text(&f.gw.cli(&["sessions", "replay", &id]));
            if r.contains("rows affected") {
                break r;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no recording: {list}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        replay.contains(&format!("select id, email, secret_code, note from {t}")),
        "{replay}"
    );
    assert!(
        replay.contains("[EMAIL]") && replay.contains("[SECRET_CODE]"),
        "{replay}"
    );
    assert!(replay.contains("call [PHONE] or mail [EMAIL]"), "{replay}");
    assert!(replay.contains("(3 rows)"), "{replay}");
    assert!(
        replay.contains("the text of error 1062 was withheld"),
        "{replay}"
    );
    assert!(replay.contains("OK, 1 rows affected"), "{replay}");
    assert_no_secret(&replay, "the replay");
}

#[test]
fn partial_shows_no_piece_of_a_computed_value_and_statistics_are_masked() {
    let f = fixture("partial");
    let t = &f.t;
    // Under `partial` the plain column keeps its last characters; computed values show nothing.
    let mut script = String::new();
    for n in [1, 4, 7] {
        script.push_str(&format!(
            "select concat('xxxxxxxxxxxx', substr(secret_code, {n}, 4)) as piece from {t};\n"
        ));
    }
    script.push_str(&format!(
        "select ascii(substr(secret_code, 1, 1)) as a from {t};\n"
    ));
    let out = text(&f.gw.mysql(&script));
    for piece in ["ZEBR", "RA-4", "4471", "OKAP", "9925", "LLAM", "3310"] {
        assert!(!out.contains(piece), "`{piece}` leaked:\n{out}");
    }
    assert!(!out.contains("90"), "ascii('Z') leaked:\n{out}");
    // Engine-independent statistics hold min/max values of every column.
    direct_mysql(&format!(
        "analyze table {t} persistent for all; set session use_stat_tables = 'preferably'"
    ));
    let out = text(&f.gw.mysql(&format!(
        "select column_name, min_value, max_value from mysql.column_stats where table_name = '{t}';\n\
         select reverse(min_value), hex(max_value) from mysql.column_stats where table_name = '{t}';\n"
    )));
    assert_no_secret(&out, "mysql.column_stats");
}

/// Outside review, round 3 (F10): error and warning texts that echo a value computed from a
/// masked column (`Unknown locale: '…'`, `Unknown or incorrect time zone: '…'`, cut at 64
/// characters where detectors no longer recognise them, or any text a `SIGNAL` carries). With a
/// masked column in scope the whole ERR text is withheld (code and SQLSTATE kept); SHOW WARNINGS
/// / SHOW ERRORS messages are always withheld under column rules.
#[test]
fn error_and_warning_texts_do_not_echo_masked_values() {
    let f = fixture("partial");
    let t = &f.t;
    let script = format!(
        "set @m = (select concat(secret_code, ' ', replace(email, '@', '(at)')) from {t} where id = 1);\n\
         signal sqlstate '45000' set message_text = @m;\n\
         select format(1, 2, concat('x', substr(secret_code, 1, 5), '_', replace(email, '@', '_at_'))) as f from {t} where id = 1;\n\
         show warnings;\n\
         select cast(secret_code as signed) as n from {t} where id = 2;\n\
         show warnings;\n\
         show errors;\n\
         select 1 as one;\n\
         show warnings;\n\
         get diagnostics condition 1 @g = message_text;\n\
         select @g as g;\n"
    );
    let o = f.gw.mysql(&script);
    let s = text(&o);
    assert_no_secret(&s, "error and warning texts");
    assert!(
        s.contains("ERROR 1644 (45000)") && s.contains("the text of error 1644 was withheld"),
        "{s}"
    );
    assert!(s.contains("Warning\t1649\t[WITHHELD"), "{s}");
    assert!(s.contains("Warning\t1292\t[WITHHELD"), "{s}");
    // A statement with no masked column in scope keeps its error text, and so does a syntax
    // error in the client's own text. SQL built from a variable (whose syntax error would quote
    // it) is not even prepared in a masked session.
    let s = text(&f.gw.mysql(&format!(
        "select airlock_no_such_function_x();\n\
         select secret_code from {t} where id = = 1;\n\
         set @q = (select concat('select 1 = = ', secret_code) from {t} where id = 1);\n\
         prepare s from @q;\n"
    )));
    assert!(
        s.contains("airlock_no_such_function_x does not exist"),
        "{s}"
    );
    assert!(s.contains("near '= 1'"), "{s}");
    assert!(
        s.contains("ERROR 1142") && s.contains("cannot be seen"),
        "{s}"
    );
    assert_no_secret(&s, "syntax errors");
    let audit = f.gw.audit_log();
    assert!(audit.contains("?error_detail"), "{audit}");
}

/// Outside review, round 3 (F5): server-side session state carries values past the masking:
/// a system variable set from a sub-query (`@@timestamp`, then `UNIX_TIMESTAMP()`; a string
/// variable such as `default_master_connection`, also in SHOW VARIABLES), or
/// `LAST_INSERT_ID(expr)`, then `LAST_INSERT_ID()`. In a masked session these are refused;
/// constants are still accepted, and user variables stay masked by lineage.
#[test]
fn session_state_does_not_carry_masked_values() {
    let f = fixture("redact");
    let t = &f.t;
    let script = format!(
        "set @@session.timestamp = (select length(secret_code) * 100000 + id from {t} where id = 1);\n\
         select unix_timestamp() as ts;\n\
         set session default_master_connection = (select concat('x', secret_code, '_', replace(email, '@', '_at_')) from {t} where id = 1);\n\
         select @@default_master_connection as dmc;\n\
         show variables like 'default_master_connection';\n\
         select variable_value from information_schema.session_variables where variable_name = 'default_master_connection';\n\
         set statement lc_time_names = (select secret_code from {t} where id = 1) for select 1;\n\
         set time zone (select secret_code from {t} where id = 1);\n\
         select last_insert_id(card) from {t} where id = 1;\n\
         select 1 from {t} where id = 1 and last_insert_id(card);\n\
         select last_insert_id() as lid, @@last_insert_id as l2, @@identity as l3;\n\
         set @a = (select secret_code from {t} where id = 2);\n\
         select @a as a, concat(@a, '') as b;\n\
         set session time_zone = '+00:00', autocommit = 1;\n\
         set names utf8mb4;\n\
         set session sql_select_limit = 1000;\n\
         select 'constants ok' as c;\n"
    );
    let s = text(&f.gw.mysql(&script));
    assert_no_secret(&s, "session state");
    assert_eq!(s.matches("session state").count(), 6, "{s}");
    assert_eq!(
        s.matches("LAST_INSERT_ID() with an argument").count(),
        2,
        "{s}"
    );
    // Nothing was stored: the timestamp is today's, the id 0.
    assert!(!s.contains("ts\n10000"), "{s}");
    assert!(s.contains("lid\tl2\tl3\n0\t0\t0"), "{s}");
    assert!(s.contains("constants ok"), "{s}");
    assert_eq!(s.matches("ERROR").count(), 6, "{s}");
}

/// Server state that lists values without naming their tables (outside review, round 6): a
/// transformed value in a user variable read back from `information_schema.user_variables` or
/// `SHOW USER_VARIABLES`, locked rows in `SHOW ENGINE INNODB STATUS`. Refused in masked sessions.
#[test]
fn server_state_listing_values_is_refused_in_a_masked_session() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "select @r := reverse(secret_code), @e := replace(email, '@', ' at ') from {t} where id = 1;
         select variable_name, variable_value from information_schema.user_variables;
         show user_variables;
         show engine innodb status;
         select * from information_schema.innodb_trx;
         select 'still here' as s;
"
    )));
    assert_refused_and_still_serving(&s, "server state", 4);
}

/// A user variable is masked only when it may hold a masked value: one set from a constant or
/// an unruled column reads back as it is (`SET @a = 1; SELECT @a` gave NULL in every masked
/// session: a fidelity bug from round 2), one named by a statement that read a masked column,
/// or set where the text does not show it (`EXECUTE`, `CALL`), stays masked.
#[test]
fn clean_user_variables_read_back_in_a_masked_session() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "set @a = 1;\nselect @a as a;\nset @b = 'plain', @n = 40 + 2;\nselect @b as b, @n + 1 as n;\n\
         set @c = (select secret_code from {t} where id = 1);\nselect @c as c;\nselect @a as a2;\n\
         select @a as a3, @c as c3;\nset @d = concat(@c, '');\nselect @d as d;\n\
         prepare s from 'select secret_code into @e from {t} where id = 2';\nexecute s;\n\
         select @e as e;\nselect @a as a4;\n"
    )));
    assert_no_secret(&s, "user variables");
    assert!(s.contains("a\n1\n"), "{s}");
    assert!(s.contains("b\tn\nplain\t43"), "{s}");
    assert!(s.contains("c\n[COLUMN]"), "{s}");
    assert!(s.contains("a2\n1\n"), "{s}");
    // Named together with a masked one: masked with it (a statement is judged whole).
    assert!(s.contains("a3\tc3\nNULL\t[COLUMN]"), "{s}");
    assert!(s.contains("d\n[COLUMN]"), "{s}");
    assert!(s.contains("e\n[COLUMN]"), "{s}");
    // After EXECUTE every variable may hold anything.
    assert!(s.contains("a4\nNULL"), "{s}");
    // Through the binary protocol, with a clean variable.
    let url = f.gw.url("agent", TOKEN);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts).enable_cleartext_plugin(true);
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        conn.query_drop("set @z = 7").await.unwrap();
        let z: Vec<Option<i64>> = conn.exec("select @z + ?", (1,)).await.unwrap();
        assert_eq!(z, vec![Some(8)]);
        conn.disconnect().await.unwrap();
    });
}

/// Outside review, round 7 (F4): the process list shows the running statements of every
/// session of the held credential (shared by all identities of the connection), literals
/// included. In a masked session it is refused, and `performance_schema.threads` (its
/// `PROCESSLIST_INFO`) and the sys schema are masked like statistics.
#[test]
fn other_sessions_statements_do_not_come_out_of_a_masked_session() {
    let f = fixture("redact");
    let code = CODES[0];
    let mut other = std::process::Command::new("mysql")
        .args(["-h127.0.0.1", "-P3306", "-uroot", "test", "-e"])
        .arg(format!("select sleep(6), '{code}' as c"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        direct_mysql(&format!(
            "select count(*) from information_schema.processlist where info like '%{code}%' and id <> connection_id()"
        ))
        .trim()
            == "1"
    });
    assert!(running, "the other session never showed up");
    let s = text(&f.gw.mysql(
        "select reverse(info) from information_schema.processlist;
         show full processlist;
         select reverse(processlist_info) as i from performance_schema.threads;
         select * from performance_schema.threads;
         select 'still here' as s;
",
    ));
    let _ = other.kill();
    let _ = other.wait();
    // All three name the process list (`processlist_info` too): refused.
    assert_refused_and_still_serving(&s, "process list", 3);
}

/// Outside review, round 9 (F2–F4): MariaDB prints the values of the rows a statement reads
/// in its query plans (`EXPLAIN FORMAT=JSON` substitutes const-table rows into conditions) and
/// in the optimizer trace, where no column rule reaches; and a UTF-16 result character set hid
/// every value from the content detectors. All refused in a masked session.
#[test]
fn plans_traces_and_unreadable_result_charsets_are_refused_in_a_masked_session() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "set optimizer_trace='enabled=on';
         explain format=json select * from {t} where id = 1;
         analyze format=json select * from {t} where id = 1;
         select hex(trace) from information_schema.optimizer_trace;
         set character_set_results = utf16;
         set statement character_set_results = utf32 for select note from {t} where id = 1;
         describe {t};
         set character_set_results = NULL;
         select 'still here' as s;
"
    )));
    assert_refused_and_still_serving(&s, "plans and traces", 6);
    assert!(
        s.contains("secret_code"),
        "DESCRIBE of a table still lists its columns: {s}"
    );
}

/// Outside review, round 13 (F1): a user variable read with a quoted name (`` @`c` ``) looked
/// like a column to the gateway, so a transformed masked value stored in it came back in clear.
#[test]
fn a_user_variable_read_by_a_quoted_name_stays_masked() {
    let f = fixture("redact");
    let t = &f.t;
    let s = text(&f.gw.mysql(&format!(
        "select reverse(secret_code), hex(secret_code) into @c, @h from {t} where id = 1;
         select @`c` as c, @`h` as h;
         select @'c' as c2;
         select 'still here' as s;
"
    )));
    assert_no_secret(&s, "quoted user variables");
    assert!(s.contains("still here"), "{s}");
}

/// Outside review, round 14 (F2): a view a migration creates after the session's catalog
/// snapshot counted as a clean table, so a transformed masked column came out through it until
/// the snapshot was refreshed. A relation missing from the snapshot now counts as ruled, and
/// its columns as unknown.
#[test]
fn a_view_created_after_the_catalog_snapshot_is_masked() {
    let f = fixture("redact");
    let t = f.t.clone();
    let v = format!("{t}_late");
    let url = f.gw.url("agent", TOKEN);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out: Vec<Option<String>> = rt.block_on(async {
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts).enable_cleartext_plugin(true);
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        // The session's catalog snapshot is taken; then a view appears behind its back.
        let _: Vec<Option<String>> = conn
            .query(format!("select name from {t} where id = 1"))
            .await
            .unwrap();
        direct_mysql(&format!(
            "create view {v} as select id, secret_code as c from {t}"
        ));
        conn.query(format!("select reverse(c) from {v} order by id"))
            .await
            .unwrap()
    });
    direct_mysql(&format!("drop view {v}"));
    let joined = format!("{out:?}");
    assert_no_secret(&joined, "a view created after the snapshot");
    assert_eq!(out.len(), 3, "{joined}");
}

/// Outside review, round 14 (F1, the MySQL side the reviewer did not test): a view replaced
/// outside airlock (`CREATE OR REPLACE VIEW`) after the session's catalog snapshot must not be
/// traced through its old, clean definition.
#[test]
fn a_view_replaced_after_the_catalog_snapshot_is_not_traced_through_its_old_definition() {
    let f = fixture("redact");
    let t = f.t.clone();
    let v = format!("{t}_swap");
    let plain = format!("{t}_plain");
    // MySQL lineage masks every column of a view over a ruled table: the view starts over a
    // table no rule names, so that its first answer is clean.
    direct_mysql(&format!(
        "create table {plain} (id int primary key, c varchar(20));
         insert into {plain} values (1, 'abc'), (2, 'def'), (3, 'ghi');
         create or replace view {v} as select id, c from {plain}"
    ));
    let url = f.gw.url("agent", TOKEN);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (before, after): (Vec<Option<String>>, Vec<Option<String>>) = rt.block_on(async {
        let opts = mysql_async::Opts::from_url(&url).unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts).enable_cleartext_plugin(true);
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let before = conn
            .query(format!("select reverse(c) from {v} order by id"))
            .await
            .unwrap();
        direct_mysql(&format!(
            "create or replace view {v} as select id, secret_code as c from {t}"
        ));
        let after: Vec<Option<String>> = conn
            .query(format!("select reverse(c) from {v} order by id"))
            .await
            .unwrap();
        // Back to clean: the session read the catalog again, so the view is clean again.
        direct_mysql(&format!(
            "create or replace view {v} as select id, c from {plain}"
        ));
        let again: Vec<Option<String>> = conn
            .query(format!("select reverse(c) from {v} order by id"))
            .await
            .unwrap();
        assert_eq!(
            again, before,
            "clean again after the catalog was read again"
        );
        (before, after)
    });
    direct_mysql(&format!("drop view {v}; drop table {plain}"));
    assert_eq!(
        before,
        ["cba", "fed", "ihg"].map(|v| Some(v.to_owned())),
        "the clean view reads clean"
    );
    let joined = format!("{after:?}");
    assert_no_secret(&joined, "a view replaced after the snapshot");
    assert_eq!(after.len(), 3, "{joined}");
}

/// A temporary table shadows a base table of the same name for the session: one filled from a
/// masked column, under the name of a clean table the catalog knows, must not pass for that
/// table.
#[test]
fn a_temporary_table_shadowing_a_clean_table_is_not_taken_for_it() {
    let f = fixture("redact");
    let t = f.t.clone();
    let plain = format!("{t}_shadowed");
    direct_mysql(&format!(
        "create table {plain} (id int primary key, c varchar(40));
         insert into {plain} values (1, 'abc')"
    ));
    let o = f.gw.mysql(&format!(
        "create temporary table {plain} as select id, secret_code as c from {t};\n\
         select reverse(c), hex(c) from {plain};\n\
         create temporary table {plain}_2 as select id, secret_code as c from {t};\n\
         select reverse(c) from {plain}_2;\n\
         select 'still here' as s;\n"
    ));
    direct_mysql(&format!("drop table {plain}"));
    let out = text(&o);
    assert_no_secret(&out, "temporary tables");
    assert_eq!(
        out.matches("would copy values of masked columns").count(),
        2,
        "{out}"
    );
    assert!(out.contains("still here") || out.contains("ERROR"), "{out}");
}

/// Outside review, round 15 (F2): a CTE's name counted as a relation created after the
/// catalog snapshot, so every column of `WITH c AS (SELECT 1) SELECT * FROM c` was masked. A
/// CTE over a ruled table stays masked.
#[test]
fn cte_names_are_not_unknown_relations() {
    let f = fixture("redact");
    let t = &f.t;
    let o = f.gw.mysql(&format!(
        "with c as (select 41 + 1 as answer) select * from c;\n\
         with c as (select secret_code from {t}) select reverse(secret_code) as r from c;\n"
    ));
    let out = text(&o);
    assert!(out.contains("answer\n42"), "{out}");
    assert_no_secret(&out, "a CTE over a ruled table");
}

/// Outside review, round 17 (F2): a MERGE table over a ruled table, under another name, counted
/// as a clean table. Tables of engines that show another table's rows (MERGE, FEDERATED,
/// CONNECT, SPIDER) are left out of the catalog, so their columns are masked as unknown.
#[test]
fn merge_tables_over_a_ruled_table_are_masked() {
    let f = fixture("redact");
    let t = f.t.clone();
    let merged = format!("{t}_mrg");
    direct_mysql(&format!(
        "alter table {t} engine=MyISAM;
         create table {merged} (id int, name varchar(40), email varchar(80), secret_code varchar(20), card bigint, note text) engine=MRG_MyISAM union=({t})"
    ));
    let o = f.gw.mysql(&format!(
        "select reverse(secret_code), hex(secret_code) from {merged};\nselect 'still here' as s;\n"
    ));
    direct_mysql(&format!("drop table {merged}"));
    let out = text(&o);
    assert_no_secret(&out, "a MERGE table");
    assert!(out.contains("still here"), "{out}");
}
