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

/// Issue 14: MariaDB's combination modes turn on ANSI_QUOTES (ORACLE also switches grammars),
/// so `SELECT "\" ; DELETE ...; #"` is one literal to us and three statements to the server.
/// Only an allow-list of flags may be set; the rest (and anything not provably on it) is opaque,
/// and nothing may follow such a SET in the same command.
#[test]
fn combination_sql_modes_are_opaque() {
    for sql in [
        "SET sql_mode='ORACLE'",
        "SET sql_mode='MSSQL'",
        "SET sql_mode='DB2'",
        "SET sql_mode='POSTGRESQL'",
        "SET sql_mode='MAXDB'",
        "SET sql_mode=CONCAT(@@sql_mode, ',ORACLE')",
        "/*!40101 SET sql_mode='ORACLE' */",
        "SET @@session.sql_mode='ORACLE'",
        "SET STATEMENT sql_mode='ORACLE' FOR SELECT 1",
        "SET STATEMENT sql_mode='' FOR SELECT 1",
        "SET sql_mode=DEFAULT",
        "SET sql_mode='ORA' 'CLE'",
        "SET sql_mode=4",
    ] {
        let c = classify_mysql(sql);
        assert!(opaque(&c) && c.writes_data(), "{sql}: {c:?}");
    }
    let attack =
        r#"SET sql_mode='ORACLE'; SELECT 1 AS "\" ; DELETE FROM t WHERE id=1; SELECT 1 #""#;
    let c = classify_mysql(attack);
    assert!(c.unparsed && c.multi_statement, "{c:?}");
    // A provably safe mode may be followed by more statements.
    let c = classify_mysql("SET sql_mode='STRICT_ALL_TABLES'; SELECT 1");
    assert!(!c.unparsed && !c.writes_data(), "{c:?}");
    for sql in [
        "SET sql_mode='TRADITIONAL'",
        "SET sql_mode=''",
        "SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION'))",
    ] {
        let c = classify_mysql(sql);
        assert!(!opaque(&c) && !c.writes_data(), "{sql}: {c:?}");
    }
}

/// Issue 14: row and table locks are one operation, `lock`, which writes.
#[test]
fn locks_are_lock_operations() {
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR UPDATE NOWAIT",
        "SELECT * FROM t FOR UPDATE SKIP LOCKED",
        "SELECT * FROM t WHERE id IN (SELECT id FROM s FOR UPDATE)",
        "LOCK TABLES t READ",
        "LOCK TABLE t WRITE",
        "SET STATEMENT max_statement_time=1 FOR SELECT * FROM t FOR UPDATE",
    ] {
        let c = classify_mysql(sql);
        assert_eq!(c.primary_operation(), Operation::Lock, "{sql}: {c:?}");
        assert!(c.writes_data(), "{sql}");
        assert!(!c.unparsed, "{sql}");
    }
    let c = classify_mysql("SELECT * FROM t LOCK IN SHARE MODE");
    assert_eq!(c.reads().collect::<Vec<_>>(), vec!["t"]);
    let c = classify_mysql("LOCK TABLES t READ, db.s WRITE");
    assert_eq!(c.reads().collect::<Vec<_>>(), vec!["t", "db.s"]);
    // The words inside a string are not a lock.
    let c = classify_mysql("SELECT 'LOCK IN SHARE MODE' FROM t");
    assert_eq!(c.primary_operation(), Operation::Select);
    assert!(!c.writes_data());
}

/// Issue 14: harmless MySQL reads that were refused.
#[test]
fn former_false_positives_are_reads() {
    for sql in [
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        "START TRANSACTION READ ONLY",
        "SET STATEMENT max_statement_time=1 FOR SELECT * FROM t",
        "TABLE t",
        "SELECT a INTO @v FROM t LIMIT 1",
        "SELECT ST_AsText(POINT(1,1))",
        "CHECK TABLE t",
        "CHECKSUM TABLE t",
        "HELP 'x'",
        "SELECT IS_FREE_LOCK('x')",
        "SELECT COLUMN_JSON(COLUMN_CREATE('a', 1))",
        "SELECT EXTRACTVALUE('<a>b</a>', '/a')",
    ] {
        let c = classify_mysql(sql);
        assert!(
            !c.unparsed && !c.writes_data() && !c.dynamic_sql(),
            "{sql}: {c:?}"
        );
    }
    // The inner statement of SET STATEMENT decides, in both directions.
    let c = classify_mysql("SET STATEMENT max_statement_time=1 FOR DELETE FROM t");
    assert_eq!(c.primary_operation(), Operation::Delete);
    assert!(c.writes_data());
    // TABLE t names its table, also inside a set operation (rules and masking see it).
    let c = classify_mysql("TABLE customers");
    assert_eq!(c.reads().collect::<Vec<_>>(), vec!["customers"]);
    let c = classify_mysql("SELECT a FROM s UNION TABLE customers");
    let mut reads: Vec<&str> = c.reads().collect();
    reads.sort();
    assert_eq!(reads, vec!["customers", "s"], "{c:?}");
    let c = classify_mysql("CHECK TABLE t, db.s QUICK");
    assert_eq!(c.reads().collect::<Vec<_>>(), vec!["t", "db.s"]);
    // INTO a file still writes; GET_LOCK still takes a lock.
    assert!(classify_mysql("SELECT a INTO OUTFILE '/tmp/x' FROM t").writes_data());
    assert!(classify_mysql("SELECT GET_LOCK('x', 1)").writes_data());
    assert!(classify_mysql("CHECK TABLE t FOR UPGRADE").writes_data());
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
            "lock" => c.unparsed || (has(Operation::Lock) && c.writes_data()),
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
