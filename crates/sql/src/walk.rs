//! A generic walk over the whole parse tree of one statement.
//!
//! The protobuf tree of PostgreSQL has ~270 node types. A hand-written typed visitor that forgets
//! one field (a subquery in a `CASE` inside a `LATERAL` function argument, ...) would let a
//! function call or a table read slip through unseen, so instead the tree is serialized
//! (`pg_query`'s protobuf types implement `serde::Serialize`) and every value of the resulting
//! JSON tree is visited. Nothing can be skipped by construction; the few node types that matter
//! are recognised by their serde tag (`{"DeleteStmt": {...}}`) or, where the protobuf schema
//! embeds them as typed fields without a tag (`InsertStmt.relation` is a bare `RangeVar`), by
//! their shape.

use airlock_core::Operation;
use serde_json::{Map, Value};

use crate::functions;

/// What the walk found in one statement's tree.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Relations read, with the parser's source location for ordering.
    reads: Vec<(i64, String)>,
    /// Relations in a write-target position.
    writes: Vec<(i64, String)>,
    functions: Vec<(i64, String)>,
    /// Data-modifying statements anywhere in the tree (the root included): the operation and
    /// whether it is bounded by a WHERE.
    pub modifying: Vec<(Operation, bool)>,
    /// `SELECT ... INTO new_table`.
    pub select_into: bool,
    /// A call of a function not known to be read-only.
    pub unknown_function: bool,
    /// A call of a function that runs SQL text.
    pub dynamic_function: bool,
    /// `EXECUTE prepared` nested in another statement (`CREATE TABLE AS EXECUTE`).
    pub execute: bool,
}

impl Scan {
    pub fn reads(&self) -> Vec<String> {
        in_source_order(&self.reads)
    }
    pub fn writes(&self) -> Vec<String> {
        in_source_order(&self.writes)
    }
    pub fn functions(&self) -> Vec<String> {
        in_source_order(&self.functions)
    }
}

fn in_source_order(found: &[(i64, String)]) -> Vec<String> {
    let mut sorted: Vec<&(i64, String)> = found.iter().collect();
    sorted.sort_by_key(|(location, _)| *location);
    let mut names: Vec<String> = Vec::with_capacity(sorted.len());
    for (_, name) in sorted {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Positions (nearest tagged node type, field name) in which a `RangeVar` is the relation the
/// statement writes, creates, alters or locks. Every other `RangeVar` is a read.
const WRITE_TARGETS: &[(&str, &str)] = &[
    ("InsertStmt", "relation"),
    ("UpdateStmt", "relation"),
    ("DeleteStmt", "relation"),
    ("MergeStmt", "relation"),
    // IntoClause.rel of SELECT ... INTO and CREATE TABLE AS (the IntoClause is an untagged field)
    ("SelectStmt", "rel"),
    ("CreateTableAsStmt", "rel"),
    (COPY_FROM, "relation"),
    ("TruncateStmt", "relations"),
    ("LockStmt", "relations"),
    ("GrantStmt", "objects"),
    ("VacuumRelation", "relation"),
    ("ClusterStmt", "relation"),
    ("ReindexStmt", "relation"),
    ("RefreshMatViewStmt", "relation"),
    ("AlterTableStmt", "relation"),
    ("CreateStmt", "relation"),
    ("IndexStmt", "relation"),
    ("ViewStmt", "view"),
    ("RenameStmt", "relation"),
    ("AlterObjectSchemaStmt", "relation"),
    ("AlterOwnerStmt", "relation"),
    ("AlterObjectDependsStmt", "relation"),
    ("RuleStmt", "relation"),
    ("CreateTrigStmt", "relation"),
    ("CreatePolicyStmt", "table"),
    ("AlterPolicyStmt", "table"),
    ("CreateSeqStmt", "sequence"),
    ("AlterSeqStmt", "sequence"),
    ("CompositeTypeStmt", "typevar"),
];

/// Pseudo tag for a `CopyStmt` that copies into its relation.
const COPY_FROM: &str = "CopyStmt(from)";

#[derive(Clone, Copy)]
struct Ctx<'v> {
    /// The nearest enclosing tagged node type.
    tag: &'v str,
    /// The field of that node (or of an untagged struct inside it) holding the current value.
    field: &'v str,
}

pub(crate) fn scan(root: &Value) -> Scan {
    let mut scan = Scan::default();
    let mut cte_scope = Vec::new();
    walk(root, Ctx { tag: "", field: "" }, &mut cte_scope, &mut scan);
    scan
}

fn walk<'v>(value: &'v Value, ctx: Ctx<'v>, cte_scope: &mut Vec<&'v str>, out: &mut Scan) {
    match value {
        Value::Array(items) => {
            for item in items {
                walk(item, ctx, cte_scope, out);
            }
        }
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some((key, inner)) = map.iter().next() {
                    // `Node { node: Option<NodeEnum> }` wrapper: transparent.
                    if key == "node" {
                        return walk(inner, ctx, cte_scope, out);
                    }
                    // Enum variants are the only upper-case keys (struct fields are snake_case).
                    if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                        return visit_tagged(key, inner, ctx, cte_scope, out);
                    }
                }
            }
            visit_struct(map, ctx, ctx.tag, cte_scope, out);
        }
        _ => {}
    }
}

fn visit_tagged<'v>(
    tag: &'v str,
    inner: &'v Value,
    parent: Ctx<'v>,
    cte_scope: &mut Vec<&'v str>,
    out: &mut Scan,
) {
    let Value::Object(map) = inner else {
        return walk(inner, Ctx { tag, field: "" }, cte_scope, out);
    };
    let mut own_tag = tag;
    match tag {
        "InsertStmt" => out.modifying.push((Operation::Insert, true)),
        // MERGE always has its ON join condition, so it is never unbounded in the WHERE sense.
        "MergeStmt" => out.modifying.push((Operation::Merge, true)),
        // Only the presence of a WHERE is checked: `WHERE true` counts, predicates are not
        // evaluated.
        "UpdateStmt" => out
            .modifying
            .push((Operation::Update, present(map, "where_clause"))),
        "DeleteStmt" => out
            .modifying
            .push((Operation::Delete, present(map, "where_clause"))),
        "ExecuteStmt" => out.execute = true,
        "CopyStmt" if map.get("is_from").and_then(Value::as_bool) == Some(true) => {
            own_tag = COPY_FROM
        }
        _ => {}
    }
    visit_struct(map, parent, own_tag, cte_scope, out);
}

fn present(map: &Map<String, Value>, field: &str) -> bool {
    map.get(field).is_some_and(|v| !v.is_null())
}

/// Visits a struct: `parent` is where it sits (decides read vs write for a `RangeVar`),
/// `own_tag` the node type its fields belong to.
fn visit_struct<'v>(
    map: &'v Map<String, Value>,
    parent: Ctx<'v>,
    own_tag: &'v str,
    cte_scope: &mut Vec<&'v str>,
    out: &mut Scan,
) {
    if map.contains_key("relname") && map.contains_key("relpersistence") {
        range_var(map, parent, cte_scope, out);
        return;
    }
    // Also the untagged SelectStmts of UNION/INTERSECT/EXCEPT (`larg`/`rarg`).
    if own_tag == "SelectStmt" && present(map, "into_clause") {
        out.select_into = true;
    }
    let is_func_call = map.contains_key("funcname") && map.contains_key("agg_star");
    if is_func_call {
        func_call(map, out);
    }

    let outer_scope_len = cte_scope.len();
    let with_clause = map.get("with_clause").filter(|w| !w.is_null());
    if let Some(with_clause) = with_clause {
        enter_with_clause(with_clause, own_tag, cte_scope, out);
    }
    for (field, value) in map {
        if (field == "with_clause" && with_clause.is_some())
            || (is_func_call && field == "funcname")
        {
            continue;
        }
        walk(
            value,
            Ctx {
                tag: own_tag,
                field,
            },
            cte_scope,
            out,
        );
    }
    cte_scope.truncate(outer_scope_len);
}

/// Walks the CTE bodies with the names each one can see, then leaves all CTE names in scope
/// for the rest of the statement. A non-recursive CTE body sees only the CTEs before it, so in
/// `WITH t AS (SELECT * FROM t) ...` the inner `t` is the real table and is reported as read.
fn enter_with_clause<'v>(
    with_clause: &'v Value,
    own_tag: &'v str,
    cte_scope: &mut Vec<&'v str>,
    out: &mut Scan,
) {
    let recursive = with_clause.get("recursive").and_then(Value::as_bool) == Some(true);
    let ctes: &[Value] = with_clause
        .get("ctes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<&'v str> = ctes
        .iter()
        .map(|cte| {
            cte.pointer("/node/CommonTableExpr/ctename")
                .and_then(Value::as_str)
                .unwrap_or_default()
        })
        .collect();
    let base = cte_scope.len();
    let ctx = Ctx {
        tag: own_tag,
        field: "with_clause",
    };
    for (i, cte) in ctes.iter().enumerate() {
        let visible = if recursive { names.len() } else { i };
        cte_scope.extend(names.iter().take(visible));
        walk(cte, ctx, cte_scope, out);
        cte_scope.truncate(base);
    }
    cte_scope.extend(names);
}

fn range_var(map: &Map<String, Value>, parent: Ctx<'_>, cte_scope: &[&str], out: &mut Scan) {
    let part = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let (catalog, schema, relname) = (part("catalogname"), part("schemaname"), part("relname"));
    let location = map
        .get("location")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    let name = [catalog, schema, relname]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(".");
    let is_write = WRITE_TARGETS.contains(&(parent.tag, parent.field));
    if is_write {
        out.writes.push((location, name));
    } else if catalog.is_empty() && schema.is_empty() && cte_scope.contains(&relname) {
        // A reference to a CTE, not to a relation.
    } else {
        out.reads.push((location, name));
    }
}

fn func_call(map: &Map<String, Value>, out: &mut Scan) {
    let name = map
        .get("funcname")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .map(|p| {
                    p.pointer("/node/String/sval")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_default();
    let location = map
        .get("location")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    if functions::runs_sql_text(&name) {
        out.dynamic_function = true;
    }
    if !functions::is_read_only(&name) {
        out.unknown_function = true;
    }
    out.functions.push((location, name));
}
