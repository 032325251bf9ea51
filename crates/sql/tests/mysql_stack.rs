//! Inputs that build deep trees in sqlparser must be refused before they overflow a stack the
//! size of a tokio worker's (2 MiB): the outside review's 10,000-arm `UNION` took the gateway
//! down. Every input here is about 200 KB (well under the classifier's byte bound).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock_sql::mysql::{classify_mysql, result_shape};

/// tokio's default worker stack.
const WORKER_STACK: usize = 2 * 1024 * 1024;
/// About this many bytes per input.
const SIZE: usize = 200_000;

fn repeat_to(head: &str, unit: &str, tail: &str) -> String {
    let n = (SIZE.saturating_sub(head.len() + tail.len()) / unit.len()).max(1);
    format!("{head}{}{tail}", unit.repeat(n))
}

fn nested(open: &str, middle: &str, close: &str) -> String {
    let n = SIZE / (open.len() + close.len());
    format!("{}{middle}{}", open.repeat(n), close.repeat(n))
}

/// Long inputs of every shape that sqlparser turns into a deep (left-nested) tree, or that
/// its recursion limit should stop.
pub fn cases() -> Vec<(&'static str, String)> {
    vec![
        (
            "union all",
            repeat_to("select 1", " union all select 1", ""),
        ),
        ("union", repeat_to("select 1", " union select 1", "")),
        (
            "intersect",
            repeat_to("select 1", " intersect select 1", ""),
        ),
        ("except", repeat_to("select 1", " except select 1", "")),
        ("minus", repeat_to("select 1", " minus select 1", "")),
        (
            "union parenthesised arms",
            repeat_to("(select 1)", " union (select 1)", ""),
        ),
        ("union table", repeat_to("table t", " union table t", "")),
        (
            "union values",
            repeat_to("values (1)", " union values (1)", ""),
        ),
        ("join", repeat_to("select 1 from t", " join t", "")),
        ("join on", repeat_to("select 1 from t", " join t on 1", "")),
        (
            "cross join",
            repeat_to("select 1 from t", " cross join t", ""),
        ),
        (
            "natural join",
            repeat_to("select 1 from t", " natural join t", ""),
        ),
        (
            "straight_join",
            repeat_to("select 1 from t", " straight_join t", ""),
        ),
        (
            "left join using",
            repeat_to("select 1 from t", " left join t using (a)", ""),
        ),
        ("comma join", repeat_to("select 1 from t", ", t", "")),
        (
            "mysql nested join",
            repeat_to("select 1 from t", " join t", &" on 1".repeat(1000)),
        ),
        (
            "nested join parens",
            nested("select 1 from (t join ", "t", ")"),
        ),
        (
            "case when",
            repeat_to("select case", " when 1 then 1", " end"),
        ),
        ("in list", repeat_to("select 1 in (1", ",1", ")")),
        ("function args", repeat_to("select concat(1", ",1", ")")),
        ("select list", repeat_to("select 1", ",1", "")),
        ("values rows", repeat_to("values (1)", ",(1)", "")),
        (
            "insert rows",
            repeat_to("insert into t values (1)", ",(1)", ""),
        ),
        (
            "with ctes",
            repeat_to("with a0 as (select 1)", ", a as (select 1)", " select 1"),
        ),
        (
            "collate",
            repeat_to("select 'a'", " collate utf8mb4_bin", ""),
        ),
        ("adjacent strings", repeat_to("select 'a'", " 'a'", "")),
        ("compound identifier", repeat_to("select a", ".a", "")),
        ("order by list", repeat_to("select 1 order by 1", ",1", "")),
        ("group by list", repeat_to("select 1 group by 1", ",1", "")),
        (
            "nested parens",
            nested("select ", "(", "1)").replace("select (1)", "select 1"),
        ),
        ("nested abs", nested("select abs(", "1", ")")),
        ("nested subquery", nested("select (select ", "1", ")")),
        (
            "nested derived",
            nested("select * from (select * from ", "t", ") x"),
        ),
        (
            "nested case",
            nested("select case when 1 then ", "1", " end"),
        ),
        ("nested cast", nested("select cast(", "1", " as char)")),
        ("nested exists", nested("select exists(select ", "1", ")")),
        (
            "nested in subquery",
            nested("select 1 in (select ", "1", ")"),
        ),
        ("nested row", nested("select row(1, ", "1", ")")),
        (
            "nested union parens",
            nested("(", "select 1", " union select 1)"),
        ),
        ("not chain", repeat_to("select ", "not ", "1")),
        ("bang chain", repeat_to("select ", "!", "1")),
        ("tilde chain", repeat_to("select ", "~", "1")),
        ("binary chain", repeat_to("select ", "binary ", "'a'")),
        ("minus chain", repeat_to("select ", "- ", "1")),
        ("plus chain", repeat_to("select 1", "+1", "")),
        ("and chain", repeat_to("select 1", " and 1", "")),
        ("is null chain", repeat_to("select 1", " is null", "")),
        (
            "between chain",
            repeat_to("select 1", " between 1 and 2", ""),
        ),
        (
            "interval chain",
            repeat_to("select now()", " + interval 1 day", ""),
        ),
        ("json arrow chain", repeat_to("select j", "->'$'", "")),
        ("assign chain", repeat_to("select @a", " := @a", " := 1")),
        (
            "set union",
            repeat_to("set @x = (select 1", " union select 1", ")"),
        ),
        (
            "explain union",
            repeat_to("explain select 1", " union select 1", ""),
        ),
        (
            "create view union",
            repeat_to("create view v as select 1", " union select 1", ""),
        ),
        (
            "insert select union",
            repeat_to("insert into t select 1", " union select 1", ""),
        ),
        (
            "set statement union",
            repeat_to(
                "set statement max_statement_time=1 for select 1",
                " union select 1",
                "",
            ),
        ),
        (
            "prepare union",
            repeat_to("prepare s from 'select 1", " union select 1", "'"),
        ),
        (
            "executable comment union",
            repeat_to("/*! select 1", " union select 1", " */"),
        ),
        ("multi statement", repeat_to("select 1", "; select 1", "")),
        (
            "where in subquery chain",
            repeat_to(
                "select 1 from t where a in (select 1",
                " union select 1",
                ")",
            ),
        ),
        (
            "window list",
            repeat_to("select 1 from t window w0 as ()", ", w as (w0)", ""),
        ),
        (
            "set statement settings",
            repeat_to("set statement max_statement_time=1", "+1", " for select 1"),
        ),
        (
            "join in union arms",
            repeat_to(
                "select 1 from t join t join t",
                " union select 1 from t join t join t",
                "",
            ),
        ),
    ]
}

fn run(sql: String) -> String {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let t = std::time::Instant::now();
            let c = classify_mysql(&sql);
            let shape = result_shape(&sql);
            format!(
                "unparsed={} kind={:?} {:?} {:?}",
                c.unparsed,
                shape.kind,
                c.parse_error
                    .as_deref()
                    .map(|e| e.chars().take(80).collect::<String>()),
                t.elapsed()
            )
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Every case, each on a fresh 2 MiB thread: an overflow aborts the test binary (the test fails).
#[test]
fn deep_inputs_do_not_overflow_a_worker_stack() {
    for (name, sql) in cases() {
        let len = sql.len();
        let out = run(sql);
        assert!(!out.is_empty(), "{name} ({len} bytes)");
    }
}

/// The bounds together: an expression at the operator limit whose innermost operand is a
/// sub-query at the set-operation limit whose arms are joins at the join limit, all without
/// `ON` (the recursive form). It must be classified (not refused) and fit on a worker stack.
#[test]
fn the_bounds_together_fit_on_a_worker_stack() {
    use airlock_sql::mysql::{MAX_JOINS, MAX_OPERATOR_CHAIN, MAX_SET_OPERATIONS};
    // Left-nested trees are deepest at their first operand: the sub-query comes first, its
    // first arm holds the joins.
    let first_arm = format!("select 1 from t{}", " join t".repeat(MAX_JOINS));
    let arms = format!(
        "{first_arm}{}",
        " union all select 1".repeat(MAX_SET_OPERATIONS)
    );
    let sql = format!(
        "select (select count(*) from ({arms}) d){}",
        "+1".repeat(MAX_OPERATOR_CHAIN - 1)
    );
    let out = run(sql);
    assert!(out.starts_with("unparsed=false"), "{out}");
    // One more of each is refused.
    for over in [
        format!("select {}1", "1+".repeat(MAX_OPERATOR_CHAIN + 1)),
        vec!["select 1"; MAX_SET_OPERATIONS + 2].join(" union "),
        format!("select 1 from t{}", " join t".repeat(MAX_JOINS + 1)),
        format!(
            "select 1 from t{}",
            " straight_join t".repeat(MAX_JOINS + 1)
        ),
        vec!["select 1"; MAX_SET_OPERATIONS + 2].join(" intersect "),
        vec!["select 1"; MAX_SET_OPERATIONS + 2].join(" except "),
    ] {
        let c = classify_mysql(&over);
        assert!(c.unparsed, "{}: {c:?}", &over[..60]);
    }
    // Words inside strings do not count.
    let c = classify_mysql(&format!("select '{}'", " union join".repeat(5_000)));
    assert!(!c.unparsed, "{c:?}");
}

/// One case by name (`CASE=...`): a probe for measuring, run in its own process since an
/// overflow aborts it.
#[test]
#[ignore]
fn probe() {
    let want = std::env::var("CASE").unwrap_or_default();
    for (name, sql) in cases() {
        if name == want {
            println!("PROBE {name} ({} bytes): {}", sql.len(), run(sql));
        }
    }
}

/// The text of the file `SQLFILE` (measuring).
#[test]
#[ignore]
fn probe_file() {
    let sql = std::fs::read_to_string(std::env::var("SQLFILE").unwrap()).unwrap();
    println!("PROBE ({} bytes): {}", sql.len(), run(sql));
}
