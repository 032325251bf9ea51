#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use airlock_core::{Classification, Operation, Statement};
use airlock_sql::classify_pg;

fn one(sql: &str) -> Statement {
    let c = classify_pg(sql);
    assert!(!c.unparsed, "{sql}: {:?}", c.parse_error);
    assert_eq!(c.statements.len(), 1, "{sql}: {c:?}");
    c.statements.into_iter().next().unwrap()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn empty_text_has_no_statements() {
    for sql in ["", ";", " ;; ", "-- just a comment", "/* c */ ;"] {
        let c = classify_pg(sql);
        assert!(!c.unparsed, "{sql}");
        assert!(c.statements.is_empty(), "{sql}: {c:?}");
        assert!(!c.multi_statement);
        assert!(!c.writes_data());
    }
}

#[test]
fn unparseable_text_fails_closed() {
    for sql in [
        "selec 1",
        "drop table",
        "select 'unterminated",
        "select 1\0; drop table x",
    ] {
        let c = classify_pg(sql);
        assert!(c.unparsed, "{sql}");
        assert!(c.parse_error.is_some());
        assert!(c.writes_data() && c.dynamic_sql());
        assert_eq!(c.statements[0].operation, Operation::Unknown);
    }
}

#[test]
fn plain_select_reads_relations_as_written() {
    let s = one(
        r#"SELECT a.x FROM Public.Accounts a JOIN "Mixed"."CaseT" m ON m.id = a.id
           WHERE a.id IN (SELECT id FROM other) AND EXISTS (SELECT 1 FROM deep.nested)"#,
    );
    assert_eq!(s.operation, Operation::Select);
    assert_eq!(
        s.reads,
        strs(&["public.accounts", "Mixed.CaseT", "other", "deep.nested"])
    );
    assert!(s.writes.is_empty());
    assert!(!s.writes_data && !s.dynamic_sql && s.has_where);
}

#[test]
fn cte_names_are_not_relations_but_shadowed_tables_are() {
    let s = one("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent JOIN users USING (id)");
    assert_eq!(s.reads, strs(&["orders", "users"]));
    // non-recursive CTE: the inner `t` is the real table
    let s = one("WITH t AS (SELECT * FROM t) SELECT * FROM t");
    assert_eq!(s.reads, strs(&["t"]));
    // a CTE in a subquery does not hide the outer table of the same name
    let s = one("SELECT * FROM accounts, (WITH accounts AS (SELECT 1) SELECT * FROM accounts) x");
    assert_eq!(s.reads, strs(&["accounts"]));
    let s = one(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 5) SELECT * FROM r",
    );
    assert!(s.reads.is_empty(), "{:?}", s.reads);
}

#[test]
fn select_functions_are_writes_unless_allowlisted() {
    let s = one("SELECT count(*), lower(name), now() FROM t");
    assert!(!s.writes_data);
    assert_eq!(s.functions, strs(&["count", "lower", "now"]));
    let s = one("SELECT pg_terminate_backend(pid) FROM pg_stat_activity");
    assert_eq!(s.operation, Operation::Select);
    assert!(s.writes_data);
    assert!(!s.dynamic_sql);
    let s = one("SELECT * FROM t WHERE x = (SELECT public.lower('a'))");
    assert!(s.writes_data, "schema-qualified non-catalog function");
    let s = one("SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute");
    assert!(!s.writes_data);
    let s = one("SELECT set_config('role', 'admin', false)");
    assert!(s.writes_data);
}

#[test]
fn dynamic_functions() {
    for sql in [
        "SELECT dblink_exec('dbname=x', 'drop table t')",
        "SELECT * FROM dblink('dbname=x', 'select 1') AS t(a int)",
        "SELECT query_to_xml('delete from t returning *', true, false, '')",
    ] {
        let s = one(sql);
        assert!(s.dynamic_sql && s.writes_data, "{sql}");
    }
    let s = one("SELECT lo_import('/etc/passwd')");
    assert!(s.writes_data && !s.dynamic_sql);
}

#[test]
fn insert_update_delete_merge() {
    let s = one("INSERT INTO audit.log (a) SELECT a FROM src");
    assert_eq!(s.operation, Operation::Insert);
    assert_eq!(s.writes, strs(&["audit.log"]));
    assert_eq!(s.reads, strs(&["src"]));
    assert!(s.writes_data && s.has_where);

    let s = one("UPDATE t SET x = 1");
    assert_eq!((s.operation, s.has_where), (Operation::Update, false));
    let s = one("UPDATE t SET x = u.x FROM u WHERE u.id = t.id");
    assert!(s.has_where);
    assert_eq!(s.writes, strs(&["t"]));
    assert_eq!(s.reads, strs(&["u"]));
    // predicates are not evaluated: WHERE true still counts as a WHERE
    assert!(one("DELETE FROM t WHERE true").has_where);
    assert!(one("DELETE FROM t WHERE 1=1").has_where);
    let s = one("DELETE FROM t");
    assert_eq!((s.operation, s.has_where), (Operation::Delete, false));
    let s = one("DELETE FROM t USING u");
    assert!(!s.has_where);
    let s = one("DELETE FROM t USING u WHERE t.id = u.id");
    assert!(s.has_where);
    assert_eq!(s.reads, strs(&["u"]));

    let s = one("MERGE INTO target t USING source s ON t.id = s.id \
         WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)");
    assert_eq!(s.operation, Operation::Merge);
    assert_eq!(s.writes, strs(&["target"]));
    assert_eq!(s.reads, strs(&["source"]));
    assert!(s.has_where && s.writes_data);
}

#[test]
fn data_modifying_cte_in_select() {
    let s = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d");
    assert_eq!(s.operation, Operation::Delete);
    assert!(s.writes_data);
    assert!(!s.has_where, "the CTE delete is unbounded");
    assert_eq!(s.writes, strs(&["t"]));
    assert!(s.reads.is_empty());
    let s = one("WITH u AS (UPDATE t SET x = 1 WHERE id = 2 RETURNING *) SELECT * FROM u");
    assert!(s.has_where && s.writes_data);
}

#[test]
fn select_into_and_create_table_as() {
    let s = one("SELECT * INTO newt FROM old");
    assert_eq!(s.operation, Operation::Create);
    assert!(s.writes_data);
    assert_eq!(s.writes, strs(&["newt"]));
    assert_eq!(s.reads, strs(&["old"]));
    let s = one("SELECT a INTO newt FROM t UNION SELECT a FROM u");
    assert!(s.writes_data, "INTO in a set operation");
    assert_eq!(s.writes, strs(&["newt"]));
    let s = one("CREATE TABLE copy AS SELECT * FROM src");
    assert_eq!(s.operation, Operation::Create);
    assert_eq!(s.writes, strs(&["copy"]));
    assert_eq!(s.reads, strs(&["src"]));
    let s = one("CREATE TABLE x AS EXECUTE p");
    assert!(s.dynamic_sql && s.writes_data);
}

#[test]
fn ddl() {
    let s = one("DROP TABLE IF EXISTS a, s.b CASCADE");
    assert_eq!(s.operation, Operation::Drop);
    assert_eq!(s.writes, strs(&["a", "s.b"]));
    let s = one("TRUNCATE a, b");
    assert_eq!(s.operation, Operation::Truncate);
    assert_eq!(s.writes, strs(&["a", "b"]));
    let s = one("CREATE TABLE t (id int REFERENCES parent(id))");
    assert_eq!(s.operation, Operation::Create);
    assert_eq!(s.writes, strs(&["t"]));
    assert_eq!(s.reads, strs(&["parent"]));
    let s = one("ALTER TABLE t ADD COLUMN c int");
    assert_eq!(
        (s.operation, s.writes.clone()),
        (Operation::Alter, strs(&["t"]))
    );
    let s = one("CREATE VIEW v AS SELECT * FROM base");
    assert_eq!(s.operation, Operation::Create);
    assert_eq!(
        (s.writes.clone(), s.reads.clone()),
        (strs(&["v"]), strs(&["base"]))
    );
    let s = one("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u");
    assert_eq!(s.operation, Operation::Create);
    assert!(s.writes.contains(&"t".to_string()) && s.writes.contains(&"u".to_string()));
    let s = one("CREATE INDEX i ON t (x)");
    assert_eq!(s.operation, Operation::Create);
    let s = one("DROP FUNCTION f(int)");
    assert_eq!(s.writes, strs(&["f"]));
    assert_eq!(one("CREATE ROLE r").operation, Operation::Create);
    assert_eq!(one("ALTER ROLE r SUPERUSER").operation, Operation::Alter);
    assert_eq!(one("DROP DATABASE d").operation, Operation::Drop);
}

#[test]
fn grant_revoke() {
    let s = one("GRANT SELECT ON accounts TO bob");
    assert_eq!(s.operation, Operation::Grant);
    assert_eq!(s.writes, strs(&["accounts"]));
    assert!(s.writes_data);
    assert_eq!(one("REVOKE ALL ON t FROM bob").operation, Operation::Revoke);
    assert_eq!(one("GRANT admin TO bob").operation, Operation::Grant);
    assert_eq!(one("REVOKE admin FROM bob").operation, Operation::Revoke);
    assert_eq!(
        one("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob").operation,
        Operation::Grant
    );
}

#[test]
fn copy_direction() {
    let s = one("COPY t FROM STDIN");
    assert_eq!(s.operation, Operation::Copy);
    assert!(s.writes_data);
    assert_eq!(s.writes, strs(&["t"]));
    let s = one("COPY t TO STDOUT");
    assert!(!s.writes_data);
    assert_eq!(s.reads, strs(&["t"]));
    let s = one("COPY (SELECT * FROM a JOIN b USING (id)) TO STDOUT");
    assert!(!s.writes_data);
    assert_eq!(s.reads, strs(&["a", "b"]));
    assert!(one("COPY t TO '/tmp/out'").writes_data, "server-side file");
    assert!(one("COPY t TO PROGRAM 'sh'").writes_data);
    assert!(one("COPY (DELETE FROM t RETURNING *) TO STDOUT").writes_data);
}

#[test]
fn explain() {
    // Plain EXPLAIN does not execute the statement: a read of its targets.
    let s = one("EXPLAIN DELETE FROM t");
    assert_eq!(s.operation, Operation::Select);
    assert!(!s.writes_data);
    assert_eq!(s.reads, strs(&["t"]));
    assert!(s.writes.is_empty());
    for sql in [
        "EXPLAIN ANALYZE DELETE FROM t",
        "EXPLAIN (ANALYZE) DELETE FROM t",
        "EXPLAIN (ANALYZE true, BUFFERS) DELETE FROM t",
        "EXPLAIN (ANALYZE off) DELETE FROM t",
        "explain analyze verbose delete from t",
    ] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Delete, "{sql}");
        assert!(s.writes_data && !s.has_where, "{sql}");
        assert_eq!(s.writes, strs(&["t"]));
    }
    let s = one("EXPLAIN ANALYZE SELECT * FROM t");
    assert!(!s.writes_data);
    // functions are still considered: the planner may run them while folding constants
    assert!(one("EXPLAIN SELECT evil()").writes_data);
}

#[test]
fn prepare_execute_do_call() {
    let s = one("PREPARE p AS DELETE FROM t WHERE id = $1");
    assert_eq!(s.operation, Operation::Delete);
    assert!(s.writes_data && s.dynamic_sql && s.has_where);
    let s = one("PREPARE q (int) AS SELECT * FROM t WHERE id = $1");
    assert_eq!(s.operation, Operation::Select);
    assert!(!s.writes_data && s.dynamic_sql);
    let s = one("EXECUTE p(1)");
    assert!(s.writes_data && s.dynamic_sql);
    let s = one("DO $$ BEGIN DELETE FROM t; END $$");
    assert_eq!(s.operation, Operation::Do);
    assert!(s.writes_data && s.dynamic_sql);
    let s = one("CALL myproc(1)");
    assert_eq!(s.operation, Operation::Call);
    assert!(s.writes_data);
    assert_eq!(s.functions, strs(&["myproc"]));
    assert!(!one("DEALLOCATE p").writes_data);
}

#[test]
fn set_show_and_privileges() {
    let s = one("SET search_path = public");
    assert_eq!(s.operation, Operation::Set);
    assert!(!s.writes_data);
    assert_eq!(one("SHOW search_path").operation, Operation::Show);
    for sql in [
        "SET ROLE admin",
        "set local role admin",
        "SET SESSION AUTHORIZATION bob",
        "RESET ROLE",
        "RESET SESSION AUTHORIZATION",
        "RESET ALL",
    ] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Set, "{sql}");
        assert!(s.writes_data, "{sql}");
    }
    assert!(!one("RESET search_path").writes_data);
}

#[test]
fn transactions() {
    assert_eq!(one("BEGIN").operation, Operation::Begin);
    assert_eq!(
        one("START TRANSACTION READ ONLY").operation,
        Operation::Begin
    );
    assert_eq!(one("COMMIT").operation, Operation::Commit);
    assert_eq!(one("END").operation, Operation::Commit);
    assert_eq!(one("ROLLBACK").operation, Operation::Rollback);
    for sql in ["SAVEPOINT a", "RELEASE a", "ROLLBACK TO a"] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Other, "{sql}");
        assert!(!s.writes_data, "{sql}");
    }
}

#[test]
fn utility_statements() {
    for sql in [
        "VACUUM t",
        "ANALYZE t",
        "CLUSTER t USING i",
        "REINDEX TABLE t",
        "REFRESH MATERIALIZED VIEW mv",
        "COMMENT ON TABLE t IS 'x'",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "NOTIFY chan",
        "CHECKPOINT",
    ] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Other, "{sql}");
        assert!(s.writes_data, "{sql}");
    }
    let lock = one("LOCK TABLE t");
    assert_eq!(lock.operation, Operation::Lock);
    assert!(lock.writes_data);
    assert_eq!(lock.writes, strs(&["t"]));
    assert_eq!(one("COMMENT ON TABLE s.t IS 'x'").writes, strs(&["s.t"]));
    for sql in [
        "LISTEN chan",
        "UNLISTEN *",
        "DISCARD ALL",
        "FETCH 10 FROM c",
        "CLOSE c",
    ] {
        assert!(!one(sql).writes_data, "{sql}");
    }
}

#[test]
fn multi_statement() {
    let c: Classification = classify_pg("select 1; drop table x");
    assert!(c.multi_statement);
    assert_eq!(c.statements.len(), 2);
    assert_eq!(c.primary_operation(), Operation::Drop);
    assert!(c.writes_data());
    let c = classify_pg("begin; delete from t; commit");
    assert_eq!(c.statements.len(), 3);
    assert_eq!(c.primary_operation(), Operation::Delete);
}

#[test]
fn deep_nesting_is_seen() {
    let s = one(
        "SELECT CASE WHEN x > 0 THEN (SELECT max(y) FROM (SELECT y FROM inner_t \
         WHERE z = ANY(ARRAY(SELECT evil() FROM lateral_t))) q) END FROM outer_t",
    );
    assert!(s.writes_data);
    assert!(s.functions.contains(&"evil".to_string()));
    for t in ["inner_t", "lateral_t", "outer_t"] {
        assert!(s.reads.contains(&t.to_string()), "{t} in {:?}", s.reads);
    }
}

#[test]
fn twenty_joins_and_very_deep_nesting() {
    let mut sql = String::from("SELECT 1 FROM t0");
    for i in 1..=20 {
        sql.push_str(&format!(" JOIN t{i} ON t{i}.id = t{}.id", i - 1));
    }
    let s = one(&sql);
    assert_eq!(s.reads.len(), 21);
    assert!(!s.writes_data);

    // Far deeper than any real query: must not crash, and whatever the result it fails closed
    // or sees the write.
    let deep = format!("SELECT {}evil(){}", "(".repeat(5000), ")".repeat(5000));
    let c = classify_pg(&deep);
    assert!(c.writes_data(), "{:?}", c.parse_error);
    let deep_subqueries = format!(
        "SELECT * FROM {}t{}",
        "(SELECT * FROM ".repeat(300),
        ") x".repeat(300)
    );
    let c = classify_pg(&deep_subqueries);
    assert!(c.unparsed || c.reads().any(|r| r == "t"));
}

#[test]
fn row_locks_are_lock_operations_that_write() {
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE",
        "SELECT * FROM t FOR SHARE",
        "SELECT * FROM t FOR KEY SHARE",
        "SELECT * FROM t FOR UPDATE NOWAIT",
        "SELECT * FROM t FOR UPDATE SKIP LOCKED",
        "SELECT * FROM t JOIN s USING (id) FOR UPDATE OF t",
        "SELECT * FROM (SELECT * FROM t FOR UPDATE) x",
        "WITH l AS (SELECT * FROM t FOR SHARE) SELECT * FROM l",
        "SELECT * FROM s WHERE id IN (SELECT id FROM t FOR KEY SHARE)",
        "DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t UNION ALL (SELECT * FROM t FOR UPDATE)",
    ] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Lock, "{sql}");
        assert!(s.writes_data, "{sql}");
        assert!(s.reads.contains(&"t".to_string()), "{sql}: {:?}", s.reads);
    }
    // A data-modifying CTE still names the statement.
    let s = one("WITH d AS (DELETE FROM t RETURNING id) SELECT * FROM s FOR UPDATE");
    assert_eq!(s.operation, Operation::Delete);
    // Plain EXPLAIN does not lock rows.
    assert!(!one("EXPLAIN SELECT * FROM t FOR UPDATE").writes_data);
    for sql in ["LOCK t", "LOCK TABLE t IN ACCESS SHARE MODE NOWAIT"] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Lock, "{sql}");
        assert!(s.writes_data);
    }
    // The advisory lock functions are calls of functions not on the allowlist.
    for sql in [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_xact_lock_shared(1, 2)",
        "SELECT pg_try_advisory_lock(1)",
    ] {
        assert!(one(sql).writes_data, "{sql}");
    }
}

#[test]
fn prepared_transactions_write() {
    let s = one("PREPARE TRANSACTION 'gid'");
    assert_eq!(s.operation, Operation::Other);
    assert!(s.writes_data);
    let s = one("COMMIT PREPARED 'gid'");
    assert_eq!(s.operation, Operation::Commit);
    assert!(s.writes_data);
    let s = one("ROLLBACK PREPARED 'gid'");
    assert_eq!(s.operation, Operation::Rollback);
    assert!(s.writes_data);
    for sql in ["COMMIT", "ROLLBACK", "END", "ABORT", "COMMIT AND CHAIN"] {
        assert!(!one(sql).writes_data, "{sql}");
    }
}

#[test]
fn search_path_that_shadows_builtins_is_dynamic() {
    for sql in [
        "SET search_path = rt, pg_catalog",
        "SET search_path TO rt, pg_catalog",
        "SET LOCAL search_path = rt, pg_catalog",
        "SET SESSION search_path = rt, pg_catalog",
        "set search_path = 'rt', 'pg_catalog'",
        "SET \"SEARCH_PATH\" = \"$user\", public, pg_catalog",
        "SET search_path = pg_temp, pg_catalog",
    ] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Set, "{sql}");
        assert!(s.writes_data && s.dynamic_sql, "{sql}");
    }
    for sql in [
        "SET search_path = public",
        "SET search_path = \"$user\", public",
        "SET search_path = pg_catalog, rt",
        "SET search_path TO DEFAULT",
        "RESET search_path",
        "SET search_path = ''",
        // one schema whose name contains a comma: PostgreSQL quotes string values of list
        // settings
        "SET search_path = 'rt, pg_catalog'",
        "SET search_path = 'PG_CATALOG', rt",
        "SET SCHEMA 'rt'",
    ] {
        let s = one(sql);
        assert!(!s.writes_data && !s.dynamic_sql, "{sql}");
    }
    // set_config can set any setting, search_path among them.
    for sql in [
        "SELECT set_config('search_path', 'rt, pg_catalog', false)",
        "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)",
    ] {
        let s = one(sql);
        assert!(s.writes_data && s.dynamic_sql, "{sql}");
    }
}

#[test]
fn casts_to_types_that_are_not_builtin_may_write() {
    for sql in [
        "SELECT 'x'::rt.mytype",
        "SELECT CAST('x' AS rt.mytype)",
        "SELECT rt.mytype 'x'",
        "SELECT '1'::citext",
        "SELECT '1'::public.text",
        "SELECT ARRAY['a']::mytype[]",
        "SELECT * FROM json_to_record('{}') AS x(a rt.t)",
        "SELECT 1::\"Int4\"",
    ] {
        let s = one(sql);
        assert!(s.writes_data, "{sql}");
        assert!(
            s.functions.iter().any(|f| f.starts_with("CAST(")),
            "{sql}: {:?}",
            s.functions
        );
    }
    for sql in [
        "SELECT '1'::int, 1::bigint, 1::smallint, 1::real, 1::double precision, 1::numeric(5,2)",
        "SELECT 'x'::text, 'x'::varchar(3), 'x'::char(2), 'x'::\"char\", 'x'::name, 'x'::bpchar",
        "SELECT date '2024-01-01', time '10:00', timestamptz '2024-01-01', interval '1' day",
        "SELECT '{}'::int[], '{}'::_int4, '{}'::text[][]",
        "SELECT 't'::regclass, 'int4'::regtype, 'lower'::regproc, 'x'::pg_catalog.text",
        "SELECT '{}'::jsonb, '{}'::json, '1'::uuid, '1.1.1.1'::inet, 'a'::bytea, true::bool",
        "SELECT '[1,2)'::int4range, '{}'::int4multirange, 'a'::tsvector, 'a'::tsquery",
        "SELECT CAST(x AS bit varying(3)), x::bit(1), x::money, x::xml FROM t",
        "SELECT * FROM json_to_record('{}') AS x(a int, b text)",
    ] {
        let s = one(sql);
        assert!(!s.writes_data, "{sql}: {:?}", s.functions);
    }
}

#[test]
fn operators_that_are_not_builtin_may_write() {
    for sql in [
        "SELECT 1 OPERATOR(rt.+) 1",
        "SELECT * FROM t WHERE a OPERATOR(public.=) b",
        "SELECT a === b FROM t",
        "SELECT * FROM t ORDER BY a USING OPERATOR(rt.<)",
        "SELECT * FROM t WHERE a OPERATOR(rt.=) ANY (SELECT b FROM s)",
        "SELECT * FROM t WHERE a OPERATOR(rt.=) ALL (ARRAY[1])",
        "SELECT @@@@ a FROM t",
    ] {
        let s = one(sql);
        assert!(s.writes_data, "{sql}");
        assert!(
            s.functions.iter().any(|f| f.starts_with("OPERATOR(")),
            "{sql}: {:?}",
            s.functions
        );
    }
    for sql in [
        "SELECT * FROM t WHERE a = b AND c <> d AND e != f AND g < h AND i >= j",
        "SELECT a + b - c * d / e % f, a || b, -a, |/ a, @ a FROM t",
        "SELECT 1 OPERATOR(pg_catalog.+) 2",
        "SELECT * FROM t WHERE a LIKE 'x' OR a NOT LIKE 'y' OR a ILIKE 'z' OR a SIMILAR TO 'w'",
        "SELECT * FROM t WHERE a BETWEEN 1 AND 2 OR a NOT BETWEEN SYMMETRIC 2 AND 1",
        "SELECT * FROM t WHERE a IS DISTINCT FROM b OR a IS NOT DISTINCT FROM c",
        "SELECT NULLIF(a, b), a IN (1, 2), a NOT IN (3) FROM t",
        "SELECT * FROM t WHERE a = ANY (SELECT b FROM s) AND c > ALL (ARRAY[1])",
        "SELECT * FROM t ORDER BY a USING <, b USING >",
        "SELECT doc -> 'a', doc ->> 'b', doc #> '{a}', doc @> '{}', doc ? 'k', doc ?| ARRAY['a'] FROM t",
        "SELECT * FROM t WHERE tsv @@ to_tsquery('a') AND r && int4range(1, 2) AND a ~ 'x' AND a !~* 'y'",
        "SELECT EXISTS (SELECT 1 FROM s), ARRAY(SELECT 1) FROM t WHERE NOT a AND (b OR c)",
    ] {
        let s = one(sql);
        assert!(!s.writes_data, "{sql}: {:?}", s.functions);
    }
}

#[test]
fn former_false_positives_are_reads() {
    for sql in [
        "SELECT int4range(1, 10), int8range(1, 2), numrange(1, 2), tsrange(now()::timestamp, null)",
        "SELECT tstzrange(now(), now()), daterange(current_date, null, '[]')",
        "SELECT datemultirange(daterange(current_date, null))",
        "SELECT pg_current_snapshot(), pg_snapshot_xmin(pg_current_snapshot())",
        "SELECT pg_blocking_pids(pid) FROM pg_stat_activity",
        "SELECT pg_sequence_last_value('s'::regclass)",
    ] {
        let s = one(sql);
        assert!(!s.writes_data && !s.dynamic_sql, "{sql}: {:?}", s.functions);
    }
}

#[test]
fn builtins_running_sql_text_are_dynamic() {
    for sql in [
        "SELECT query_to_xml('delete from t returning 1', true, false, '')",
        "SELECT query_to_xml_and_xmlschema('select 1', true, false, '')",
        "SELECT cursor_to_xml('c', 1, true, false, '')",
        "SELECT table_to_xml('t', true, false, '')",
        "SELECT table_to_xml_and_xmlschema('t', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT * FROM ts_stat('select v from t')",
        "SELECT * FROM xpath_table('k', 'd', 't', '/a', 'true') AS x(k int, a text)",
        "SELECT * FROM dblink('dbname=x', 'delete from t') AS x(a int)",
        "SELECT dblink_exec('delete from t')",
    ] {
        let s = one(sql);
        assert!(s.writes_data && s.dynamic_sql, "{sql}");
    }
}

#[test]
fn cte_scoping_survives_the_streaming_walk() {
    // The WITH clause of a SelectStmt comes after its FROM clause in the tree: the CTE name is
    // only known after the read was seen.
    let s = one("WITH x AS (SELECT * FROM a), y AS (SELECT * FROM x) SELECT * FROM y, b");
    assert_eq!(s.reads, strs(&["a", "b"]));
    // Non-recursive: a CTE body does not see later CTEs nor itself.
    let s = one("WITH x AS (SELECT * FROM y), y AS (SELECT 1) SELECT * FROM x");
    assert_eq!(s.reads, strs(&["y"]));
    // Recursive: it does.
    let s = one("WITH RECURSIVE x AS (SELECT * FROM y), y AS (SELECT * FROM x) SELECT * FROM x");
    assert!(s.reads.is_empty(), "{:?}", s.reads);
    // Inner scopes do not leak out; outer scopes reach in.
    let s = one(
        "WITH o AS (SELECT 1) SELECT * FROM (WITH i AS (SELECT * FROM o) SELECT * FROM i) q, i",
    );
    assert_eq!(s.reads, strs(&["i"]));
    // A qualified name is never a CTE.
    let s = one("WITH t AS (SELECT 1) SELECT * FROM public.t, t");
    assert_eq!(s.reads, strs(&["public.t"]));
    // CTE of an INSERT ... SELECT and a write target of the same name as a CTE.
    let s = one("WITH src AS (SELECT * FROM staging) INSERT INTO src SELECT * FROM src");
    assert_eq!(s.writes, strs(&["src"]));
    assert_eq!(s.reads, strs(&["staging"]));
    // UPDATE with and without WHERE, in CTEs.
    let s = one("WITH u AS (UPDATE t SET a = 1 WHERE id = 1 RETURNING *) DELETE FROM s");
    assert!(!s.has_where);
    let s = one("WITH u AS (UPDATE t SET a = 1 RETURNING *) DELETE FROM s WHERE true");
    assert!(!s.has_where);
    let s = one("WITH u AS (UPDATE t SET a = 1 WHERE x RETURNING *) DELETE FROM s WHERE true");
    assert!(s.has_where);
}

#[test]
fn set_constraints_names_constraints_not_relations() {
    for sql in [
        "SET CONSTRAINTS \"fk_orders\" IMMEDIATE",
        "SET CONSTRAINTS s.fk_a, fk_b DEFERRED",
    ] {
        let s = one(sql);
        assert_eq!(s.operation, Operation::Other, "{sql}");
        assert!(s.reads.is_empty(), "{sql}: {:?}", s.reads);
        assert!(!s.writes_data, "{sql}");
    }
}
