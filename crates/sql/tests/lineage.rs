//! Column lineage: every way of getting a masked column out must come back masked, and plain
//! columns must stay plain.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_sql::lineage::{lineage, ColumnRule, NoViews, ViewMap, Views};

fn rules() -> Vec<ColumnRule> {
    ["payments.card_number", "*.email", "billing.accounts.iban"]
        .iter()
        .map(|r| ColumnRule::parse(r).unwrap())
        .collect()
}

/// Which result columns are masked, given the names the server would put in RowDescription.
fn masked_with(sql: &str, names: &[&str], views: &dyn Views) -> Vec<bool> {
    let l = lineage(sql, &rules(), views);
    assert_eq!(l.len(), 1, "{sql}");
    l[0].masked_columns(names)
        .into_iter()
        .map(|m| m.is_some())
        .collect()
}

fn masked(sql: &str, names: &[&str]) -> Vec<bool> {
    masked_with(sql, names, &NoViews)
}

#[test]
fn direct_and_aliased_columns() {
    assert_eq!(
        masked(
            "select id, card_number from payments",
            &["id", "card_number"]
        ),
        [false, true]
    );
    assert_eq!(
        masked("select card_number as c from payments", &["c"]),
        [true]
    );
    assert_eq!(
        masked("select p.card_number from payments p", &["card_number"]),
        [true]
    );
    assert_eq!(
        masked("select p.card_number x from public.payments as p", &["x"]),
        [true]
    );
    assert_eq!(
        masked("select \"card_number\" from \"payments\"", &["card_number"]),
        [true]
    );
}

#[test]
fn star_expansion_uses_result_names() {
    assert_eq!(
        masked("select * from payments", &["id", "card_number", "amount"]),
        [false, true, false]
    );
    assert_eq!(
        masked("select p.* from payments p", &["id", "card_number"]),
        [false, true]
    );
    assert_eq!(
        masked(
            "select 1 as one, *, 2 as two from payments",
            &["one", "id", "card_number", "two"]
        ),
        [false, false, true, false]
    );
    assert_eq!(
        masked(
            "select * from customers c join payments p on p.customer_id = c.id",
            &["id", "name", "email", "id", "card_number"]
        ),
        [false, false, true, false, true]
    );
}

#[test]
fn expressions_carry_their_sources() {
    for sql in [
        "select upper(card_number) from payments",
        "select substr(card_number, 1, 4) from payments",
        "select card_number::bigint from payments",
        "select encode(card_number::bytea, 'base64') from payments",
        "select 'x' || card_number || 'y' from payments",
        "select string_agg(card_number, ',') from payments",
        "select json_build_object('c', card_number) from payments",
        "select coalesce(null, card_number) from payments",
        "select case when true then card_number end from payments",
        "select reverse(card_number) from payments p",
        "select array_agg(p.card_number)::text from payments p",
        "select (select card_number from payments limit 1)",
        "select format('%s', card_number) from payments",
        "select md5(card_number) from payments",
        "select lower(email) from customers",
        "select translate(card_number, '0123456789', 'abcdefghij') from payments",
    ] {
        assert_eq!(masked(sql, &["x"]), [true], "{sql}");
    }
}

#[test]
fn whole_row_references() {
    for sql in [
        "select row_to_json(p) from payments p",
        "select to_jsonb(payments) from payments",
        "select p::text from payments p",
        "select row(p.*)::text from payments p",
        "select json_agg(p) from payments p",
        "select hstore(p) from payments p",
    ] {
        assert_eq!(masked(sql, &["x"]), [true], "{sql}");
    }
}

#[test]
fn subqueries_ctes_and_set_operations() {
    assert_eq!(
        masked(
            "select s.c from (select card_number as c from payments) s",
            &["c"]
        ),
        [true]
    );
    assert_eq!(
        masked(
            "select * from (select * from payments) s",
            &["id", "card_number"]
        ),
        [false, true]
    );
    assert_eq!(
        masked(
            "with t as (select card_number from payments) select card_number from t",
            &["card_number"]
        ),
        [true]
    );
    assert_eq!(
        masked(
            "with t(c) as (select card_number from payments) select upper(c) from t",
            &["upper"]
        ),
        [true]
    );
    assert_eq!(
        masked(
            "select name from customers union select card_number from payments",
            &["name"]
        ),
        [true]
    );
    assert_eq!(
        masked(
            "select id, name from customers union all select id, email from customers",
            &["id", "name"]
        ),
        [false, true]
    );
    assert_eq!(
        masked(
            "select x from (select card_number from payments) as s(x)",
            &["x"]
        ),
        [true]
    );
    assert_eq!(
        masked(
            "with recursive r as (select card_number as c from payments union all select c from r) select c from r",
            &["c"]
        ),
        [true]
    );
    assert_eq!(
        masked(
            "select * from payments p, lateral (select p.card_number as c) l",
            &["id", "card_number", "c"]
        ),
        [false, true, true]
    );
    assert_eq!(masked("select c from (values ('a')) v(c)", &["c"]), [false]);
}

#[test]
fn column_aliases_on_a_base_table_mask_every_column() {
    assert_eq!(
        masked("select a, b from payments as p(a, b)", &["a", "b"]),
        [true, true]
    );
}

#[test]
fn returning_copy_and_opaque_statements() {
    assert_eq!(
        masked(
            "update payments set amount = 1 where id = 1 returning id, card_number",
            &["id", "card_number"]
        ),
        [false, true]
    );
    assert_eq!(
        masked("delete from payments returning *", &["id", "card_number"]),
        [false, true]
    );
    assert_eq!(
        masked("copy (select card_number from payments) to stdout", &["?"]),
        [true]
    );
    assert_eq!(
        masked("copy payments (id, card_number) to stdout", &["?", "?"]),
        [false, true]
    );
    // Without a column list, COPY out cannot be mapped: every column of a ruled table.
    assert_eq!(
        masked("copy payments to stdout", &["?", "?", "?"]),
        [true, true, true]
    );
    assert_eq!(masked("fetch 10 from c", &["a", "b"]), [true, true]);
    assert_eq!(masked("execute p(1)", &["a"]), [true]);
    assert_eq!(
        masked("explain select card_number from payments", &["QUERY PLAN"]),
        [false]
    );
}

#[test]
fn unknown_lineage_fails_closed_only_near_ruled_tables() {
    // A set-returning function next to a ruled table: unknown, masked.
    assert_eq!(
        masked("select g from payments, generate_series(1, 3) g", &["g"]),
        [true]
    );
    // No ruled table in the statement: unknown lineage passes (content detectors still run).
    assert_eq!(
        masked("select * from generate_series(1, 3) g", &["g"]),
        [false]
    );
    // `*.email` names every table, but only its column.
    assert_eq!(
        masked("select id, total from orders", &["id", "total"]),
        [false, false]
    );
}

#[test]
fn plain_columns_stay_plain() {
    assert_eq!(
        masked(
            "select id, amount, count(*) from payments group by 1, 2",
            &["id", "amount", "count"]
        ),
        [false, false, false]
    );
    assert_eq!(
        masked(
            "select id from payments where card_number like '4%'",
            &["id"]
        ),
        [false]
    );
    assert_eq!(
        masked("select iban from accounts", &["iban"]),
        [true],
        "an unqualified table may resolve to the rule's schema"
    );
    assert_eq!(
        masked("select iban from other.accounts", &["iban"]),
        [false]
    );
}

#[test]
fn views_are_followed() {
    let mut views = ViewMap::default();
    views.insert(
        "public",
        "v_payments",
        "SELECT p.id, upper(p.card_number) AS cn FROM payments p",
    );
    views.insert("public", "v_all", "SELECT * FROM v_payments");
    assert_eq!(
        masked_with("select id, cn from v_payments", &["id", "cn"], &views),
        [false, true]
    );
    assert_eq!(
        masked_with("select * from v_all", &["id", "cn"], &views),
        [false, true]
    );
    assert_eq!(
        masked_with(
            "select row_to_json(v) from v_payments v",
            &["row_to_json"],
            &views
        ),
        [true]
    );
}

#[test]
fn multi_statement_text_gives_one_lineage_per_statement() {
    let l = lineage(
        "select id from payments; select card_number from payments",
        &rules(),
        &NoViews,
    );
    assert_eq!(l.len(), 2);
    assert!(l[0].masked_columns(&["id"])[0].is_none());
    assert!(l[1].masked_columns(&["card_number"])[0].is_some());
}

#[test]
fn unparsable_text_is_opaque() {
    let l = lineage("selec card_number frm payments", &rules(), &NoViews);
    assert_eq!(l.len(), 1);
    assert!(l[0].masked_columns(&["x"])[0].is_some());
}

#[test]
fn copy_formats() {
    use airlock_sql::lineage::CopyKind;
    let f = |sql: &str| lineage(sql, &rules(), &NoViews)[0].copy_format().unwrap();
    assert_eq!(f("copy payments to stdout").kind, CopyKind::Text);
    assert_eq!(f("copy payments to stdout").delimiter, b'\t');
    assert_eq!(f("copy payments to stdout with csv").kind, CopyKind::Csv);
    assert_eq!(
        f("copy payments to stdout (format csv, delimiter '|')").delimiter,
        b'|'
    );
    assert_eq!(
        f("copy payments to stdout (format binary)").kind,
        CopyKind::Binary
    );
    assert_eq!(f("copy payments to stdout binary").kind, CopyKind::Binary);
    // Options the splitter does not follow exactly are refused, not guessed at.
    for sql in [
        r"copy payments to stdout (format csv, escape '\')",
        "copy payments to stdout (format csv, quote '''')",
        "copy payments to stdout (format csv, delimiter '\"', quote '''')",
        r"copy payments to stdout (delimiter '\')",
        "copy payments to stdout (delimiter '|', encoding 'SJIS')",
    ] {
        assert_eq!(f(sql).kind, CopyKind::Unsplittable, "{sql}");
    }
    assert_eq!(
        f("copy payments to stdout (format csv, quote '\"', escape '\"')").kind,
        CopyKind::Csv
    );
}

#[test]
fn copy_of_a_star_query_masks_by_whole_row() {
    let l = lineage(
        "copy (select * from payments) to stdout",
        &rules(),
        &NoViews,
    );
    let m = l[0].copy_masked_columns(3);
    assert!(m.iter().all(|c| c.is_some()), "{m:?}");
    let l = lineage(
        "copy (select * from orders) to stdout",
        &[ColumnRule::parse("payments.card_number").unwrap()],
        &NoViews,
    );
    assert!(l[0].copy_masked_columns(2).iter().all(|c| c.is_none()));
}

/// Round 7, F2: an output column looked up by a name lineage does not know (a name PostgreSQL
/// figures differently, a column a clause adds) must come out masked, never clean.
#[test]
fn recursive_cte_search_and_cycle_columns_carry_the_cte() {
    let cte = "with recursive r(id, card_number) as (select id, card_number from payments \
               union all select id, card_number from r where false)";
    for (tail, names) in [
        (
            "search breadth first by card_number set ord \
             select translate(ord::text, '0123456789', 'abcdefghij') as leaked from r",
            &["leaked"][..],
        ),
        (
            "search depth first by card_number set ord select r.ord from r",
            &["ord"][..],
        ),
        (
            "cycle card_number set is_cycle using path select reverse(path::text) from r",
            &["reverse"][..],
        ),
        (
            "cycle card_number set is_cycle using path select r.path from r",
            &["path"][..],
        ),
    ] {
        let sql = format!("{cte} {tail}");
        assert_eq!(masked(&sql, names), [true], "{sql}");
    }
    let sql = format!("{cte} search breadth first by card_number set ord select * from r");
    assert_eq!(
        masked(&sql, &["id", "card_number", "ord"])[1..],
        [true, true],
        "{sql}"
    );
}

#[test]
fn join_alias_column_lists_are_applied() {
    for (sql, names) in [
        (
            "select c, reverse(c) rc from (payments cross join notes) j(i, c, a)",
            &["c", "rc"][..],
        ),
        (
            "select j.c, translate(j.c, '0123456789', 'abcdefghij') from \
             (payments p cross join notes n) as j(i, c, a)",
            &["c", "translate"][..],
        ),
        (
            "select reverse(k.x) from ((select card_number from payments) a \
             cross join notes) k(x)",
            &["reverse"][..],
        ),
        (
            "select reverse(k.x) from (((select card_number from payments) a \
             cross join notes) j cross join orders) k(x)",
            &["reverse"][..],
        ),
        (
            "select * from (payments cross join notes) j(i, c, a)",
            &["i", "c", "a"][..],
        ),
        (
            "select reverse(u.card_number) from payments p join payments q \
             using (card_number) as u",
            &["reverse"][..],
        ),
    ] {
        assert!(masked(sql, names).iter().all(|m| *m), "{sql}");
    }
}

#[test]
fn column_names_figured_like_postgres() {
    for sql in [
        "select reverse(s.nullif) from (select nullif(card_number, '') from payments) s",
        "select reverse(s.card_number) from (select card_number collate \"C\" from payments) s",
        "select reverse(s.card_number) from \
         (select case when false then '' else card_number end from payments) s",
        "select s.array::text from \
         (select array(select translate(card_number, '0', 'a') from payments)) s",
        "select s.array::text from (select array[card_number] from payments) s",
        "select s.row::text from (select row(card_number) from payments) s",
        "select s.xmlelement::text from (select xmlelement(name x, card_number) from payments) s",
        "select s.xmlserialize from (select xmlserialize(content \
         xmlelement(name x, card_number) as text) from payments) s",
        "select s.reverse from (select reverse(card_number) collate \"C\" from payments) s",
        "select reverse(s.text) from (select (case when true then card_number end)::text \
         from payments) s",
        "select reverse(s.card_number) from (select (select card_number from payments \
         union select 'x')) s",
        "select reverse(s.json_object::text) from \
         (select json_object('k' : card_number) from payments) s",
        "select reverse(s.json_array::text) from (select json_array(card_number) from payments) s",
        "select reverse(s.json_arrayagg::text) from \
         (select json_arrayagg(card_number) from payments) s",
        // Not a name PostgreSQL would give: an error there, masked here all the same.
        "select reverse(s.no_such_name) from (select card_number || '' from payments) s",
        // Unqualified, with a base table beside the sub-query.
        "select reverse(nullif) from (select nullif(card_number, '') from payments) s, notes",
        "select reverse(\"?column?\") from (select card_number || '' from payments) s, notes",
        // A name lineage cannot figure (the first column behind a star): a base table beside
        // it does not make the lookup clean.
        "select reverse(card_number) from (select (select * from (select card_number \
         from payments) t limit 1)) s, notes",
    ] {
        assert_eq!(masked(sql, &["x"]), [true], "{sql}");
    }
    // Star expansion over such a sub-query: the server's names, not lineage's.
    for sql in [
        "select * from (select reverse(card_number) collate \"C\" from payments) s",
        "select * from (select nullif(card_number, '') from payments) s",
        "select * from (select case when true then '' else card_number end from payments) s",
        "select * from (select array[card_number] from payments) s",
    ] {
        let server_name = ["reverse", "nullif", "card_number", "array"];
        for name in server_name {
            assert_eq!(masked(sql, &[name]), [true], "{sql} as {name}");
        }
    }
}

#[test]
fn known_names_of_other_relations_stay_plain() {
    // Failing closed on an unknown name must not spill onto columns that resolve elsewhere.
    assert_eq!(
        masked(
            "select body from notes n, (select card_number from payments) s",
            &["body"]
        ),
        [false]
    );
    assert_eq!(
        masked(
            "select * from (select card_number from payments) s join notes n on true",
            &["card_number", "id", "body"]
        ),
        [true, false, false]
    );
    // Operators are `?column?` on the server too: no reason to suspect other names.
    assert_eq!(
        masked(
            "select * from notes, (select card_number || '' from payments) s",
            &["id", "body", "?column?"]
        ),
        [false, false, true]
    );
    assert_eq!(
        masked(
            "select s.nullif, s.coalesce from (select nullif(id, 0), coalesce(amount, 0) \
             from payments) s",
            &["nullif", "coalesce"]
        ),
        [false, false]
    );
    assert_eq!(
        masked(
            "select i, a from (payments p cross join notes) j(i)",
            &["i", "a"]
        )[..],
        [true, true],
        "positions under a join alias are unknown without the catalog"
    );
}

/// Round 7, F3: TABLESAMPLE wraps the table's RangeVar; the table must still be seen.
#[test]
fn tablesample_reads_the_table() {
    assert_eq!(
        masked(
            "select id, card_number, reverse(card_number) rc from payments tablesample system(100)",
            &["id", "card_number", "rc"]
        ),
        [false, true, true]
    );
    assert_eq!(
        masked(
            "select p.card_number, translate(p.card_number, '0', 'a') from payments p \
             tablesample bernoulli(100) repeatable (1)",
            &["card_number", "translate"]
        ),
        [true, true]
    );
    assert_eq!(
        masked(
            "select * from payments tablesample system(100)",
            &["id", "card_number"]
        ),
        [false, true]
    );
    assert_eq!(
        masked(
            "select a, b from payments as p(a, b) tablesample system(100)",
            &["a", "b"]
        ),
        [true, true]
    );
    assert_eq!(
        masked(
            "select reverse(x.card_number) from notes n join payments x tablesample \
             system(50) on true",
            &["reverse"]
        ),
        [true]
    );
    // An unknown column beside it is masked: the ruled table is seen.
    assert_eq!(
        masked(
            "select g from payments tablesample system(100), generate_series(1, 2) g",
            &["g"]
        ),
        [true]
    );
}

#[test]
fn other_from_items_carry_their_sources() {
    for (sql, names) in [
        (
            "select x from payments p, lateral rows from (upper(p.card_number)) f(x)",
            &["x"][..],
        ),
        (
            "select f.* from payments p, rows from (upper(p.card_number), \
             generate_series(1, 2)) f",
            &["upper", "generate_series"][..],
        ),
        (
            "select jt.c from payments p, json_table(to_json(p.card_number), '$' \
             columns (c text path '$')) jt",
            &["c"][..],
        ),
        (
            "select x.c from payments p, xmltable('/a' passing xmlelement(name a, \
             p.card_number) columns c text path '.') x",
            &["c"][..],
        ),
        (
            "select reverse(v.c) from payments p, lateral (values (p.card_number)) v(c)",
            &["reverse"][..],
        ),
        (
            "select reverse(v.column1) from payments p, lateral (values (p.card_number)) v",
            &["reverse"][..],
        ),
        (
            "select reverse(s.card_number), s.grouping from (select card_number, \
             grouping(card_number) from payments group by grouping sets ((card_number), ())) s",
            &["reverse", "grouping"][..],
        ),
        (
            "select reverse(l.c) from payments p join lateral (select p.card_number c) l on true",
            &["reverse"][..],
        ),
    ] {
        let m = masked(sql, names);
        assert!(m[0], "{sql}: {m:?}");
    }
}

/// The names lineage gives unnamed columns are PostgreSQL's (FigureColname): a clean column
/// looked up under the server's name stays clean (a wrong name would fail closed, masked).
#[test]
fn figured_names_match_the_server() {
    for (expr, name) in [
        ("id", "id"),
        ("p.id", "id"),
        ("upper(name)", "upper"),
        ("pg_catalog.upper(name)", "upper"),
        ("nullif(id, 0)", "nullif"),
        ("id collate \"C\"", "id"),
        ("id::text", "id"),
        ("'x'::text", "text"),
        ("1::int", "int4"),
        ("case when id > 0 then 1 else id end", "id"),
        ("case when id > 0 then id end", "case"),
        ("case when id > 0 then id else 1 end", "case"),
        ("(case when id > 0 then id end)::text", "text"),
        ("array[id]", "array"),
        ("array(select 1)", "array"),
        ("exists(select 1)", "exists"),
        ("(select 1 as one)", "one"),
        ("(select id from notes union select 2)", "id"),
        ("(values (1))", "column1"),
        ("row(id)", "row"),
        ("(id, id)", "row"),
        ("coalesce(id, 0)", "coalesce"),
        ("greatest(id, 0)", "greatest"),
        ("least(id, 0)", "least"),
        ("current_date", "current_date"),
        ("current_timestamp(2)", "current_timestamp"),
        ("localtimestamp", "localtimestamp"),
        ("current_user", "current_user"),
        ("session_user", "session_user"),
        ("current_schema", "current_schema"),
        ("xmlelement(name x, id)", "xmlelement"),
        ("xmlforest(id)", "xmlforest"),
        ("xmlconcat('<a/>'::xml)", "xmlconcat"),
        ("xmlparse(content '<a/>')", "xmlparse"),
        ("xmlpi(name php)", "xmlpi"),
        ("xmlroot('<a/>'::xml, version '1.0')", "xmlroot"),
        ("xmlserialize(content '<a/>'::xml as text)", "xmlserialize"),
        ("grouping(id)", "grouping"),
        ("(array[id])[1]", "array"),
        ("(row(id, 1)).f1", "f1"),
        ("json('{}')", "json"),
        ("json_scalar(id)", "json_scalar"),
        ("json_serialize('{}'::json)", "json_serialize"),
        ("json_object('k' : id)", "json_object"),
        ("json_array(id)", "json_array"),
        ("json_array(select 1)", "json_array"),
        ("json_objectagg('k' : id)", "json_objectagg"),
        ("json_arrayagg(id)", "json_arrayagg"),
        ("json_exists('{}'::jsonb, '$')", "json_exists"),
        ("json_query('{}'::jsonb, '$')", "json_query"),
        ("json_value('{}'::jsonb, '$')", "json_value"),
    ] {
        let sql = format!("select s.\"{name}\" from (select {expr} from payments p) s");
        assert_eq!(masked(&sql, &[name]), [false], "{sql}");
        // The same column under a wrong name fails closed.
        let sql = format!("select s.wrong from (select {expr} from payments p) s");
        assert_eq!(masked(&sql, &["wrong"]), [true], "{sql}");
    }
}

/// The round 7 reproductions as sent (policy `customers.card`, `customers.email`,
/// `customers.iban`): every column comes out masked.
#[test]
fn round7_reproductions_are_masked() {
    let rules: Vec<ColumnRule> = ["customers.card", "customers.email", "customers.iban"]
        .iter()
        .map(|r| ColumnRule::parse(r).unwrap())
        .collect();
    let check = |sql: &str, names: &[&str]| {
        let l = lineage(sql, &rules, &NoViews);
        let m = l[0].masked_columns(names);
        assert!(m.iter().all(Option::is_some), "{sql}: {m:?}");
    };
    check(
        "with recursive r(id, card, email, iban) as (select id, card, email, iban from customers \
         union all select id, card, email, iban from r where false) search breadth first by card, \
         email, iban set ord select translate(ord::text, '0123456789@.', 'abcdefghij#!') as leaked \
         from r",
        &["leaked"],
    );
    check(
        "with recursive r(id, card) as (select id, card from customers union all select id, card \
         from r where false) cycle card set is_cycle using path select reverse(path::text) from r",
        &["reverse"],
    );
    check(
        "select e, c, reverse(c) rc, replace(e,'@',' at ') e2, \
         translate(ib,'0123456789','abcdefghij') from (customers c1 cross join notes) j(i,n,e,c,ib)",
        &["e", "c", "rc", "e2", "translate"],
    );
    check(
        "select reverse(s.nullif) as card_rev from (select nullif(card,'') from customers) s",
        &["card_rev"],
    );
    check(
        "select reverse(s.card) from (select card collate \"C\" from customers) s limit 1",
        &["reverse"],
    );
    check(
        "select reverse(s.card) from (select case when false then '' else card end from \
         customers) s limit 1",
        &["reverse"],
    );
    check(
        "select * from (select reverse(card) collate \"C\" from customers) s limit 1",
        &["reverse"],
    );
    check(
        "select s.array::text as a from (select array(select \
         translate(iban,'0123456789','abcdefghij') from customers)) s",
        &["a"],
    );
    for inner in ["array[card]", "row(card)", "xmlelement(name x, card)"] {
        let name = inner.split(['[', '(']).next().unwrap();
        check(
            &format!("select reverse(s.{name}::text) from (select {inner} from customers) s"),
            &["reverse"],
        );
    }
    let sql = "select id, card, email, iban, reverse(card) rc, \
               translate(iban,'0123456789','abcdefghij') ti from customers tablesample system(100)";
    let m = lineage(sql, &rules, &NoViews)[0]
        .masked_columns(&["id", "card", "email", "iban", "rc", "ti"])
        .iter()
        .map(Option::is_some)
        .collect::<Vec<_>>();
    assert_eq!(m, [false, true, true, true, true, true], "{sql}");
}

/// Round-10 review: names are resolved as PostgreSQL resolves them, or masked where the
/// gateway cannot know. F1: two schemas with a view `contacts`, one over payments: which one
/// an unqualified name means depends on the search_path, so it is masked whole. F2: `ledger`
/// and `"Ledger"` are two relations. F3: a user view named `pg_…` is not the catalog's.
#[test]
fn unqualified_names_resolve_as_the_server_does_or_are_masked() {
    let mut views = ViewMap::default();
    views.insert_table("public", "payments");
    views.insert("public", "contacts", "SELECT 1 AS id, 'x'::text AS cn");
    views.insert(
        "app",
        "contacts",
        "SELECT id, card_number AS cn FROM payments",
    );
    views.insert("public", "ledger", "SELECT 1 AS id, 'x'::text AS cn");
    views.insert(
        "public",
        "Ledger",
        "SELECT id, card_number AS cn FROM payments",
    );
    views.insert(
        "public",
        "pg_cards",
        "SELECT id, card_number AS cn FROM payments",
    );
    views.insert_table("pg_catalog", "pg_class");
    views.insert_table("pg_catalog", "pg_stats");
    views.mark_complete();
    let m = |sql: &str| masked_with(sql, &["id", "cn"], &views);
    // F1: either schema's view may run.
    assert_eq!(
        m("select id, reverse(cn) as cn from contacts"),
        [true, true]
    );
    assert_eq!(m("select id, cn from public.contacts"), [false, false]);
    assert_eq!(
        m("select id, reverse(cn) as cn from app.contacts"),
        [false, true]
    );
    // F2: the exact spelling decides.
    assert_eq!(m("select id, cn from ledger"), [false, false]);
    assert_eq!(
        m("select id, reverse(cn) as cn from \"Ledger\""),
        [false, true]
    );
    // F3: a user relation named pg_… is followed like any other.
    assert_eq!(
        m("select id, reverse(cn) as cn from pg_cards"),
        [false, true]
    );
    // A pg_… name the snapshot does not have at all is new (created after it): masked.
    assert_eq!(m("select id, cn from pg_cards_new"), [true, true]);
}

/// Round-11 review (F1): a ruled table read only inside a sub-query of WHERE, HAVING, ORDER BY,
/// GROUP BY, LIMIT or a JOIN's ON condition: no output column derives from it, but an error
/// message can carry its values (`(select string_agg(card…) from payments)::int`), so the
/// statement counts as having a masked column in scope and its errors are withheld.
#[test]
fn ruled_tables_in_any_clause_put_masked_values_in_reach_of_errors() {
    for sql in [
        "select 1 where (select string_agg(card_number, ',') from payments)::int > 0",
        "select 1 from customers c group by (select max(card_number) from payments)::int",
        "select 1 having (select max(card_number) from payments)::int > 0",
        "select id from customers order by (select max(card_number) from payments)::int",
        "select 1 limit (select max(card_number) from payments)::int",
        "select 1 from customers a join customers b on (select max(card_number) from payments)::int = 1",
        "select coalesce(1, (select max(card_number) from payments)::int)",
        "select 1 where exists (select 1 from public.payments p where p.card_number::int = 0)",
    ] {
        let l = lineage(sql, &rules(), &NoViews);
        assert!(l.iter().all(|s| s.errors_may_echo_masked()), "{sql}");
    }
    // `*.email` names every table; with only `payments.card_number`, other tables stay plain.
    let cards = [ColumnRule::parse("payments.card_number").unwrap()];
    let l = lineage(
        "select 1 where (select count(*) from customers) > 0",
        &cards,
        &NoViews,
    );
    assert!(
        !l.iter().any(|s| s.errors_may_echo_masked()),
        "unruled tables stay plain: {l:?}"
    );
    let l = lineage(
        "select 1 where (select max(card_number) from payments)::int > 0",
        &cards,
        &NoViews,
    );
    assert!(l.iter().all(|s| s.errors_may_echo_masked()));
}
