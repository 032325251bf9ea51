//! Reviews over MySQL: no notices exist, so a held statement waits; approved in time it runs,
//! otherwise the client gets an ERR naming the review id, and a re-run after approval executes.

mod support;

use support::*;

fn config(hold: &str) -> String {
    format!(
        r#"
[[users]]
name = "alice"
groups = ["dba"]
token_env = "AIRLOCK_TEST_ALICE_TOKEN"

[reviews]
hold = "{hold}"

[[rules]]
name = "review-unbounded-writes"
agents = true
operations = ["update", "delete"]
without_where = true
action = "review"
reviewers = ["dba"]
timeout = "10m"
"#
    )
}

#[test]
fn held_delete_runs_when_approved_while_waiting() {
    let gw = Gateway::start_mysql(&config("30s"));
    let t = unique("my_review");
    direct_mysql(&format!(
        "create table {t} (id int); insert into {t} values (1), (2)"
    ));
    let client = std::thread::spawn({
        let port = gw.port;
        let t = t.clone();
        move || {
            mysql(
                &[
                    "-h127.0.0.1",
                    &format!("-P{port}"),
                    "-uagent",
                    &format!("-p{TOKEN}"),
                    "-Dmy-local",
                    "--batch",
                ],
                &format!("delete from {t};\nselect 'done' as d;\n"),
            )
        }
    });
    let id = gw.pending_review();
    assert_eq!(
        direct_mysql(&format!("select count(*) from {t}")),
        "2",
        "ran while held"
    );
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "approve", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&client.join().unwrap());
    assert!(s.contains("done"), "{s}");
    assert_eq!(direct_mysql(&format!("select count(*) from {t}")), "0");
    direct_mysql(&format!("drop table {t}"));
}

#[test]
fn held_delete_times_out_with_the_review_id_and_runs_on_rerun_after_approval() {
    let gw = Gateway::start_mysql(&config("1s"));
    let t = unique("my_review");
    direct_mysql(&format!(
        "create table {t} (id int); insert into {t} values (1), (2)"
    ));
    let s = text(&gw.mysql(&format!("delete from {t};\n")));
    assert!(
        s.contains("ERROR 1142 (42000)") && s.contains("pending approval, review id r-"),
        "{s}"
    );
    let id = gw.pending_review();
    assert!(s.contains(&id), "{s}");
    assert_eq!(direct_mysql(&format!("select count(*) from {t}")), "2");
    let o = gw.api_cli(ALICE_TOKEN, &["reviews", "approve", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&gw.mysql(&format!("delete from {t};\nselect 'rerun' as r;\n")));
    assert!(s.contains("rerun") && !s.contains("ERROR"), "{s}");
    assert_eq!(direct_mysql(&format!("select count(*) from {t}")), "0");
    direct_mysql(&format!("drop table {t}"));
}
