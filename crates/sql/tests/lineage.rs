//! Column lineage: every way of getting a masked column out must come back masked, and plain
//! columns must stay plain.

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
