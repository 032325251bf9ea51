//! The MySQL classifier on the statements that matter, and the adversarial corpus.

use airlock_core::{Classification, Operation};
use airlock_sql::mysql::classify_mysql;

fn op(sql: &str) -> Operation {
    classify_mysql(sql).primary_operation()
}

fn opaque(c: &Classification) -> bool {
    c.unparsed
        || c.dynamic_sql()
        || c.statements.iter().any(|s| {
            matches!(
                s.operation,
                Operation::Unknown | Operation::Call | Operation::Do
            )
        })
}

#[test]
fn basic_operations() {
    let c = classify_mysql("SELECT c FROM sbtest1 WHERE id = 5");
    assert_eq!(c.primary_operation(), Operation::Select);
    assert!(!c.writes_data(), "{c:?}");
    assert_eq!(c.reads().collect::<Vec<_>>(), vec!["sbtest1"]);
    assert_eq!(op("INSERT INTO t (a) VALUES (1)"), Operation::Insert);
    assert_eq!(op("REPLACE INTO t (a) VALUES (1)"), Operation::Insert);
    assert_eq!(
        op("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = a + 1"),
        Operation::Insert
    );
    assert_eq!(op("UPDATE t SET a = 1 WHERE id = 2"), Operation::Update);
    assert_eq!(op("DELETE FROM t WHERE id = 2"), Operation::Delete);
    assert_eq!(op("DROP TABLE t"), Operation::Drop);
    assert_eq!(op("TRUNCATE TABLE t"), Operation::Truncate);
    assert_eq!(op("SHOW TABLES"), Operation::Show);
    assert_eq!(op("SHOW ENGINE INNODB STATUS"), Operation::Show);
    assert_eq!(op("DESCRIBE t"), Operation::Show);
    assert_eq!(op("USE test"), Operation::Set);
    assert_eq!(op("BEGIN"), Operation::Begin);
    assert_eq!(op("START TRANSACTION"), Operation::Begin);
    assert_eq!(op("COMMIT"), Operation::Commit);
    assert_eq!(op("SET autocommit = 0"), Operation::Set);
    assert!(!classify_mysql("SET autocommit = 0").writes_data());
    assert!(!classify_mysql("SET NAMES utf8mb4").writes_data());
    let d = classify_mysql("DELETE FROM t");
    assert!(!d.statements[0].has_where);
    assert_eq!(d.writes().collect::<Vec<_>>(), vec!["t"]);
}

#[test]
fn mysql_traps() {
    // Executable comments run.
    let c = classify_mysql("SELECT 1 /*!50001 ; DROP TABLE t */");
    assert!(c.unparsed, "{c:?}");
    let c = classify_mysql("/*!50001 DROP TABLE t */");
    assert_eq!(c.primary_operation(), Operation::Drop);
    let c = classify_mysql("SELECT 1; /*!DROP TABLE t*/");
    assert!(c.multi_statement);
    assert_eq!(c.primary_operation(), Operation::Drop);
    // `--` without a space is two minus signs: the DROP after it runs.
    let c = classify_mysql("SELECT 1--1; DROP TABLE t");
    assert_eq!(c.primary_operation(), Operation::Drop, "{c:?}");
    // `#` is a comment; what follows on the line does not run.
    let c = classify_mysql("SELECT 1 # ; DROP TABLE t");
    assert_eq!(c.primary_operation(), Operation::Select);
    // Backslash escapes keep the string open.
    let c = classify_mysql(r"SELECT 'a\'; DROP TABLE t; -- '");
    assert_eq!(c.primary_operation(), Operation::Select, "{c:?}");
    assert!(!c.multi_statement);
    let c = classify_mysql(r#"SELECT "a\"; DROP TABLE t; -- ""#);
    assert_eq!(c.primary_operation(), Operation::Select, "{c:?}");
    assert!(opaque(&classify_mysql("PREPARE s FROM @sql")));
    let c = classify_mysql("PREPARE s FROM 'DROP TABLE t'");
    assert_eq!(c.primary_operation(), Operation::Drop);
    assert!(c.dynamic_sql());
    assert!(opaque(&classify_mysql("EXECUTE s")));
    assert!(opaque(&classify_mysql("CALL p(1)")));
    assert!(classify_mysql("SELECT * FROM t INTO OUTFILE '/tmp/x'").writes_data());
    assert!(classify_mysql("SELECT load_file('/etc/passwd')").writes_data());
    assert!(classify_mysql("SELECT sleep(10)").writes_data());
    assert!(!classify_mysql("SELECT count(*), max(id) FROM t").writes_data());
    let h = classify_mysql("HANDLER t READ FIRST");
    assert_eq!(h.primary_operation(), Operation::Select);
    assert!(!h.writes_data());
    let l = classify_mysql("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t");
    assert!(l.writes_data());
    assert_eq!(l.writes().collect::<Vec<_>>(), vec!["t"]);
    // Changing how the server lexes later statements is opaque.
    assert!(opaque(&classify_mysql(
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES'"
    )));
    assert!(opaque(&classify_mysql("SET @@session.sql_mode = 'ansi'")));
    assert!(opaque(&classify_mysql(
        "SET sql_mode = CONCAT('NO_BACKSLASH', '_ESCAPES')"
    )));
    assert!(opaque(&classify_mysql("SET sql_mode = @x")));
    assert!(!opaque(&classify_mysql(
        "SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT'))"
    )));
    assert!(!opaque(&classify_mysql(
        "SET sql_mode = 'STRICT_TRANS_TABLES'"
    )));
    assert!(opaque(&classify_mysql("SET NAMES gbk")));
    assert!(opaque(&classify_mysql("SET character_set_client = 'big5'")));
}

#[test]
fn kill_and_set_global_are_writes() {
    assert!(classify_mysql("KILL QUERY 5").writes_data());
    assert!(classify_mysql("SET GLOBAL max_connections = 10").writes_data());
    assert!(classify_mysql("LOCK TABLES t WRITE").writes_data());
}

/// Every line of the MySQL adversarial corpus is classified as expected (or fails closed).
#[test]
fn adversarial_corpus() {
    let corpus = include_str!("corpus/mysql_adversarial.txt");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((expect, sql)) = line.split_once('|') else {
            panic!("bad corpus line: {line}");
        };
        n += 1;
        let sql = sql.replace("{NL}", "\n");
        let c = classify_mysql(&sql);
        let has = |o: Operation| c.statements.iter().any(|s| s.operation == o);
        let ok = match expect {
            "write" => c.writes_data() || c.unparsed,
            "drop" => c.unparsed || (has(Operation::Drop) && c.writes_data()),
            "truncate" => c.unparsed || (has(Operation::Truncate) && c.writes_data()),
            "dynamic" => c.unparsed || (c.writes_data() && c.dynamic_sql()) || opaque(&c),
            "read" => !c.unparsed && !c.writes_data() && !c.dynamic_sql(),
            other => panic!("unknown expectation {other}"),
        };
        if !ok {
            failures.push(format!("{expect}: {sql}\n    -> {c:?}"));
        }
    }
    assert!(n >= 100, "corpus too small: {n}");
    assert!(
        failures.is_empty(),
        "{} of {n} misclassified:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
