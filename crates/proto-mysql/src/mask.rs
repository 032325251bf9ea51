//! Masking of MySQL results: text rows (`COM_QUERY`), binary rows (`COM_STMT_EXECUTE`,
//! `COM_STMT_FETCH`) and the message text of ERR packets.
//!
//! Which columns are masked whole comes from three places: the column definitions
//! (`org_table`/`org_name` name the base column behind an alias), the statement's shape
//! ([`airlock_sql::mysql::result_shape`]: whether that metadata can be trusted and what each
//! projection expression references) and the upstream's catalog ([`Catalog`]: which relations
//! are base tables, which views, what a view reads, which tables hold a ruled column). A column
//! whose origin is not established is masked whenever the statement touches a table a column
//! rule names (fail closed). Content detectors then run over every textual value.
//!
//! Column definitions are never changed, so a value keeps its declared type: a masked value of
//! a non-string type (numbers, dates, `DECIMAL`, `BIT`, geometry) becomes NULL.

use crate::codec::{decode_err, err_payload, put_lenenc_bytes, Reader};
use airlock_gate::masking::{Rewrite, SessionMasking, Tally};
use airlock_sql::mysql::{result_shape, Item, ResultKind, ResultShape};
use bytes::{BufMut, BytesMut};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

const UNKNOWN: &str = "?unknown";
/// Views over views are followed this deep before a view counts as reading ruled tables.
const MAX_VIEW_DEPTH: usize = 8;

// Column types (enum_field_types).
const T_DECIMAL: u8 = 0x00;
const T_TINY: u8 = 0x01;
const T_SHORT: u8 = 0x02;
const T_LONG: u8 = 0x03;
const T_FLOAT: u8 = 0x04;
const T_DOUBLE: u8 = 0x05;
const T_NULL: u8 = 0x06;
const T_TIMESTAMP: u8 = 0x07;
const T_LONGLONG: u8 = 0x08;
const T_INT24: u8 = 0x09;
const T_DATE: u8 = 0x0a;
const T_TIME: u8 = 0x0b;
const T_DATETIME: u8 = 0x0c;
const T_YEAR: u8 = 0x0d;
const T_NEWDATE: u8 = 0x0e;
const T_VARCHAR: u8 = 0x0f;
const T_TIMESTAMP2: u8 = 0x11;
const T_DATETIME2: u8 = 0x12;
const T_TIME2: u8 = 0x13;
const T_JSON: u8 = 0xf5;
const T_NEWDECIMAL: u8 = 0xf6;
const T_ENUM: u8 = 0xf7;
const T_SET: u8 = 0xf8;
const T_TINY_BLOB: u8 = 0xf9;
const T_MEDIUM_BLOB: u8 = 0xfa;
const T_LONG_BLOB: u8 = 0xfb;
const T_BLOB: u8 = 0xfc;
const T_VAR_STRING: u8 = 0xfd;
const T_STRING: u8 = 0xfe;
const UNSIGNED_FLAG: u16 = 0x20;

/// A ColumnDefinition41 packet, the parts masking needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnDef {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub ty: u8,
    pub flags: u16,
}

pub fn parse_column_def(p: &[u8]) -> Option<ColumnDef> {
    let mut r = Reader::new(p, "column definition");
    let mut s = || {
        r.lenenc_bytes()
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let _catalog = s()?;
    let schema = s()?;
    let table = s()?;
    let org_table = s()?;
    let name = s()?;
    let org_name = s()?;
    let _fixed = r.lenenc().ok()?;
    let _charset = r.u16().ok()?;
    let _length = r.u32().ok()?;
    let ty = r.u8().ok()?;
    let flags = r.u16().ok()?;
    Some(ColumnDef {
        schema,
        table,
        org_table,
        name,
        org_name,
        ty,
        flags,
    })
}

fn is_string_type(ty: u8) -> bool {
    matches!(
        ty,
        T_VARCHAR
            | T_VAR_STRING
            | T_STRING
            | T_ENUM
            | T_SET
            | T_TINY_BLOB
            | T_MEDIUM_BLOB
            | T_LONG_BLOB
            | T_BLOB
            | T_JSON
    )
}

/// What the upstream's catalog says about its relations (lower-cased names).
#[derive(Debug, Default)]
pub struct Catalog {
    pub(crate) tables: HashMap<(String, String), TableInfo>,
    pub(crate) by_name: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct TableInfo {
    pub(crate) view: bool,
    /// What the catalog said of it (type and view definition), to tell when it changed: see
    /// [`crate::catalog_check`].
    pub(crate) fingerprint: u64,
    /// Columns of this relation that some rule's column part names.
    ruled_columns: BTreeSet<String>,
    /// For a view: the relations its definition names (`None`: definition not readable).
    pub(crate) reads: Option<BTreeSet<String>>,
}

/// Storage engines whose tables show rows stored elsewhere (lower-cased, as `cell` reads them).
const MIRRORING_ENGINES: &[&str] = &["mrg_myisam", "federated", "connect", "spider"];

/// The catalog query for relations and views; see [`Catalog::from_rows`].
pub const CATALOG_TABLES_SQL: &str =
    "SELECT t.TABLE_SCHEMA, t.TABLE_NAME, t.TABLE_TYPE, v.VIEW_DEFINITION, t.ENGINE \
     FROM information_schema.TABLES t LEFT JOIN information_schema.VIEWS v \
     ON v.TABLE_SCHEMA = t.TABLE_SCHEMA AND v.TABLE_NAME = t.TABLE_NAME \
     WHERE t.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')";

/// The catalog query for the columns the rules name (`None` when no rule names a column).
pub fn catalog_columns_sql(m: &SessionMasking) -> Option<String> {
    let names: BTreeSet<String> = m
        .rules
        .iter()
        .filter_map(|r| r.column_part())
        .map(|c| c.to_lowercase())
        .collect();
    if names.is_empty() {
        return None;
    }
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("'{}'", n.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    Some(format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, LOWER(COLUMN_NAME) FROM information_schema.COLUMNS \
         WHERE LOWER(COLUMN_NAME) IN ({}) \
         AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
        list.join(", ")
    ))
}

type Row = Vec<Option<Vec<u8>>>;

fn cell(row: &Row, i: usize) -> String {
    row.get(i)
        .and_then(|v| v.as_deref())
        .map(|b| String::from_utf8_lossy(b).to_lowercase())
        .unwrap_or_default()
}

impl Catalog {
    /// From the rows of [`CATALOG_TABLES_SQL`] and of [`catalog_columns_sql`].
    pub fn from_rows(tables: &[Row], columns: &[Row]) -> Catalog {
        let mut c = Catalog::default();
        for row in tables {
            let (schema, name) = (cell(row, 0), cell(row, 1));
            if MIRRORING_ENGINES.contains(&cell(row, 4).as_str()) {
                // Its rows are another table's (a MERGE over a ruled table, a FEDERATED or
                // CONNECT table pointing at one) under a name no rule names: it stays out of the
                // catalog, so it counts as unknown and its columns are masked (round-17 review,
                // F2).
                continue;
            }
            let view = cell(row, 2).contains("view");
            let reads = if view {
                row.get(3)
                    .and_then(|v| v.as_deref())
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        let shape = result_shape(&String::from_utf8_lossy(d));
                        (shape.kind != ResultKind::Opaque).then_some(shape.relations)
                    })
                    .unwrap_or(None)
            } else {
                None
            };
            c.by_name
                .entry(name.clone())
                .or_default()
                .push(schema.clone());
            let e = c.tables.entry((schema, name)).or_default();
            e.fingerprint = e
                .fingerprint
                .wrapping_add(crate::catalog_check::fingerprint(
                    view,
                    row.get(3).and_then(|v| v.as_deref()),
                ));
            // Lower-casing can merge a table and a view: the view (less trusted) wins.
            e.view |= view;
            if view {
                e.reads = reads;
            }
        }
        for row in columns {
            if let Some(t) = c.tables.get_mut(&(cell(row, 0), cell(row, 1))) {
                t.ruled_columns.insert(cell(row, 2));
            }
        }
        c
    }

    fn candidates(&self, relation: &str) -> (Option<String>, String, Vec<(String, &TableInfo)>) {
        let (schema, name) = match relation.rsplit_once('.') {
            Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
            None => (None, relation.to_owned()),
        };
        let found = match &schema {
            Some(s) => self
                .tables
                .get(&(s.clone(), name.clone()))
                .map(|t| vec![(s.clone(), t)])
                .unwrap_or_default(),
            None => self
                .by_name
                .get(&name)
                .map(|schemas| {
                    schemas
                        .iter()
                        .filter_map(|s| {
                            self.tables
                                .get(&(s.clone(), name.clone()))
                                .map(|t| (s.clone(), t))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        (schema, name, found)
    }

    /// Whether the catalog has a relation `relation` (as a statement names it) may mean.
    pub fn knows(&self, relation: &str) -> bool {
        !self.candidates(relation).2.is_empty()
    }

    /// A base table the catalog knows (its column metadata is trustworthy).
    pub fn is_base_table(&self, schema: &str, table: &str) -> bool {
        self.tables
            .get(&(schema.to_lowercase(), table.to_lowercase()))
            .is_some_and(|t| !t.view)
    }

    /// Whether `relation` (as a statement names it) may hold a value a column rule names.
    pub fn relation_ruled(&self, m: &SessionMasking, relation: &str, depth: usize) -> bool {
        if depth > MAX_VIEW_DEPTH {
            return true;
        }
        let (schema, table) = match relation.rsplit_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, relation),
        };
        if is_statistics(schema, table) {
            return true;
        }
        let (schema, name, found) = self.candidates(relation);
        if found.is_empty() {
            // The server's own schemas go by name (their value-holding tables are handled
            // above). Anything else missing from the snapshot was created after it — a view a
            // migration made over a ruled table, a temporary copy — and cannot be traced, so it
            // counts as ruled (round-14 review, F2; PostgreSQL does the same).
            return !is_system_schema(schema.as_deref())
                || m.rules
                    .iter()
                    .any(|r| r.names_table(schema.as_deref(), &name));
        }
        found.iter().any(|(s, t)| {
            let own = m.rules.iter().any(|r| {
                r.names_table(Some(s), &name)
                    && r.column_part()
                        .is_none_or(|c| t.ruled_columns.contains(&c.to_lowercase()))
            });
            own || (t.view
                && match &t.reads {
                    None => true,
                    Some(reads) => reads.iter().any(|r| self.relation_ruled(m, r, depth + 1)),
                })
        })
    }

    /// The rules a reference to `column` of `relation` derives from; `None` when it cannot be
    /// told (a view, whose columns are expressions of its definition).
    fn sources(
        &self,
        m: &SessionMasking,
        relation: &str,
        column: &str,
    ) -> Option<BTreeSet<String>> {
        let (schema, name, found) = self.candidates(relation);
        if found.iter().any(|(_, t)| t.view) || is_statistics(schema.as_deref(), &name) {
            return None;
        }
        if found.is_empty() && !is_system_schema(schema.as_deref()) {
            // Created after the snapshot: what its columns hold cannot be told.
            return None;
        }
        let mut out = BTreeSet::new();
        if found.is_empty() {
            for r in &m.rules {
                if r.matches(schema.as_deref(), &name, column) {
                    out.insert(r.text().to_owned());
                }
            }
        }
        for (s, _) in &found {
            for r in &m.rules {
                if r.matches(Some(s), &name, column) {
                    out.insert(r.text().to_owned());
                }
            }
        }
        Some(out)
    }
}

/// A statement's shape resolved against the catalog: computed once per statement text
/// ([`StmtMask::in_session`] adds what the session's user variables hold).
#[derive(Debug)]
pub struct StmtMask {
    shape: ResultShape,
    /// Some relation it names may hold a ruled value (or, after [`StmtMask::in_session`],
    /// some user variable it names may).
    touched: bool,
}

/// Which user variables may hold a value from a masked column: every variable named by a
/// statement that had a masked column (or unknown lineage near a ruled table) in scope, when it
/// ran. Over-approximate on purpose (a variable such a statement only reads is counted too);
/// statements whose text does not show what they assign (`CALL`, `EXECUTE`, unreadable text)
/// count for every variable. A statement reading only clean variables is not masked for them,
/// so `SET @a = 1; SELECT @a` answers 1 in a masked session.
#[derive(Debug, Default)]
pub struct UserVars {
    names: BTreeSet<String>,
    all: bool,
}

impl UserVars {
    /// Whether one of `names` may hold a masked value (`""`: a name not read, may be any).
    pub(crate) fn any_of(&self, names: &BTreeSet<String>) -> bool {
        if names.is_empty() {
            return false;
        }
        self.all
            || names
                .iter()
                .any(|n| self.names.contains(n) || (n.is_empty() && !self.names.is_empty()))
    }

    /// `stmt` is about to run: the variables it names now may hold what it read.
    pub fn ran(&mut self, stmt: &StmtMask) {
        if !stmt.touched {
            return;
        }
        if stmt.shape.kind == ResultKind::Opaque {
            self.all = true;
            return;
        }
        for n in &stmt.shape.variable_names {
            if n.is_empty() {
                self.all = true;
            } else {
                self.names.insert(n.clone());
            }
        }
    }

    /// `COM_RESET_CONNECTION` drops every user variable.
    pub fn clear(&mut self) {
        self.names.clear();
        self.all = false;
    }
}

impl StmtMask {
    pub fn new(m: &SessionMasking, catalog: &Catalog, text: &str) -> StmtMask {
        let shape = result_shape(text);
        let touched = m.has_column_rules()
            && match shape.kind {
                ResultKind::Opaque => true,
                _ => shape.relations.iter().any(|r| {
                    // A CTE's name the catalog does not have is the CTE (its body's relations
                    // are named too), not a relation created since the snapshot.
                    (!shape.ctes.contains(r) || catalog.knows(r)) && catalog.relation_ruled(m, r, 0)
                }),
            };
        StmtMask { shape, touched }
    }

    /// This statement in a session whose user variables are `vars`: touched also when it names
    /// a variable that may hold a masked value.
    pub fn in_session(self: &Arc<StmtMask>, m: &SessionMasking, vars: &UserVars) -> Arc<StmtMask> {
        if self.touched || !m.has_column_rules() || !vars.any_of(&self.shape.variable_names) {
            return self.clone();
        }
        Arc::new(StmtMask {
            shape: self.shape.clone(),
            touched: true,
        })
    }

    /// For results whose statement is not known (e.g. a cursor of a statement prepared before
    /// the plan could be built): every column unknown.
    pub fn opaque(m: &SessionMasking) -> StmtMask {
        StmtMask {
            shape: ResultShape {
                kind: ResultKind::Opaque,
                relations: BTreeSet::new(),
                ctes: BTreeSet::new(),
                items: Vec::new(),
                from: Vec::new(),
                variables: false,
                variable_names: BTreeSet::new(),
                dynamic: false,
                diagnostics: false,
            },
            touched: m.has_column_rules(),
        }
    }

    /// Whether the statement has a masked column, or one of unknown lineage near a ruled
    /// table, in scope: then its error texts may echo masked values ([`mask_err`]).
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// Whether a syntax error (1064) can only quote this statement's own text: it names no
    /// user variable and runs no SQL it does not show (`PREPARE … FROM @v`, `EXECUTE`, `CALL`
    /// may run text built from masked values, and the error would quote it).
    pub fn syntax_errors_quote_own_text(&self) -> bool {
        !self.shape.variables && !self.shape.dynamic
    }

    fn unknown(&self) -> Option<BTreeSet<String>> {
        self.touched.then(|| BTreeSet::from([UNKNOWN.to_owned()]))
    }
}

/// Per-session cache of [`StmtMask`]s by statement text.
#[derive(Default)]
pub struct StmtCache {
    map: HashMap<Arc<str>, Arc<StmtMask>>,
}

const STMT_CACHE_ENTRIES: usize = 512;

impl StmtCache {
    pub fn get(&mut self, m: &SessionMasking, catalog: &Catalog, text: &str) -> Arc<StmtMask> {
        if let Some(s) = self.map.get(text) {
            return s.clone();
        }
        let s = Arc::new(StmtMask::new(m, catalog, text));
        if self.map.len() >= STMT_CACHE_ENTRIES {
            self.map.clear();
        }
        self.map.insert(Arc::from(text), s.clone());
        s
    }
}

/// The masking decisions for one result set.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    cols: Vec<ColPlan>,
}

#[derive(Debug, Clone)]
struct ColPlan {
    ty: u8,
    unsigned: bool,
    /// Masked whole because it derives from these rules (`?unknown`: origin not established).
    sources: Option<BTreeSet<String>>,
    /// The `Message` column of `SHOW WARNINGS` / `SHOW ERRORS`: withheld whole under column
    /// rules (see [`WARNING_WITHHELD`]).
    message: bool,
}

impl Plan {
    pub fn new(m: &SessionMasking, catalog: &Catalog, stmt: &StmtMask, defs: &[ColumnDef]) -> Plan {
        let cols = defs
            .iter()
            .enumerate()
            .map(|(j, d)| ColPlan {
                ty: d.ty,
                unsigned: d.flags & UNSIGNED_FLAG != 0,
                sources: column_sources(m, catalog, stmt, defs.len(), j, d),
                message: stmt.shape.diagnostics
                    && d.org_table.is_empty()
                    && d.name.eq_ignore_ascii_case("message"),
            })
            .collect();
        Plan { cols }
    }

    /// Types only, nothing masked (recorded sessions without masking).
    pub fn bare(defs: &[ColumnDef]) -> Plan {
        Plan {
            cols: defs
                .iter()
                .map(|d| ColPlan {
                    ty: d.ty,
                    unsigned: d.flags & UNSIGNED_FLAG != 0,
                    sources: None,
                    message: false,
                })
                .collect(),
        }
    }

    /// Whether a replay right-aligns this column (numbers, like the mysql client).
    pub fn right_aligned(&self, d: &ColumnDef) -> bool {
        matches!(
            d.ty,
            T_DECIMAL
                | T_NEWDECIMAL
                | T_TINY
                | T_SHORT
                | T_LONG
                | T_INT24
                | T_LONGLONG
                | T_FLOAT
                | T_DOUBLE
                | T_YEAR
        )
    }

    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// Whether any column is masked whole (for tests and logs).
    pub fn masked_columns(&self) -> usize {
        self.cols.iter().filter(|c| c.sources.is_some()).count()
    }
}

fn column_sources(
    m: &SessionMasking,
    catalog: &Catalog,
    stmt: &StmtMask,
    ncols: usize,
    j: usize,
    d: &ColumnDef,
) -> Option<BTreeSet<String>> {
    if !m.has_column_rules() {
        return None;
    }
    let schema = (!d.schema.is_empty()).then_some(d.schema.as_str());
    if !d.org_table.is_empty() && !d.org_name.is_empty() {
        if let Some(rule) = m.rule_for(schema, &d.org_table, &d.org_name) {
            return Some(BTreeSet::from([rule.text().to_owned()]));
        }
    }
    if is_statistics(schema, &d.org_table) {
        // Engine-independent statistics hold min/max values of every column, masked ones too.
        return Some(BTreeSet::from([UNKNOWN.to_owned()]));
    }
    let shape = &stmt.shape;
    match shape.kind {
        ResultKind::Clean => None,
        ResultKind::Opaque | ResultKind::Complex => stmt.unknown(),
        ResultKind::Simple => {
            if !d.org_table.is_empty()
                && !d.org_name.is_empty()
                && catalog.is_base_table(&d.schema, &d.org_table)
            {
                // A direct column of a base table, not named by any rule.
                return None;
            }
            match item_for(&shape.items, ncols, j) {
                Some(Item::Expr {
                    refs,
                    opaque: false,
                }) => {
                    let mut sources = BTreeSet::new();
                    for (qualifier, column) in refs {
                        let relations: Vec<&str> = shape
                            .from
                            .iter()
                            .filter(|f| {
                                qualifier
                                    .as_deref()
                                    .is_none_or(|q| q == f.qualifier || q == f.relation)
                            })
                            .map(|f| f.relation.as_str())
                            .collect();
                        if relations.is_empty() {
                            return stmt.unknown();
                        }
                        for r in relations {
                            match catalog.sources(m, r, column) {
                                Some(s) => sources.extend(s),
                                None => return stmt.unknown(),
                            }
                        }
                    }
                    if !sources.is_empty() {
                        // A direct column of a ruled table was matched above by its column
                        // definition; here the value is an expression over the source
                        // (`SUBSTR(card, 5, 4)`), which `partial`/`hash` must not show.
                        sources.insert(airlock_sql::lineage::DERIVED_MARKER.to_owned());
                    }
                    (!sources.is_empty()).then_some(sources)
                }
                _ => stmt.unknown(),
            }
        }
    }
}

/// The server's own schemas, which the catalog snapshot leaves out.
pub(crate) fn is_system_schema(schema: Option<&str>) -> bool {
    schema.is_some_and(|s| {
        ["mysql", "information_schema", "performance_schema", "sys"]
            .iter()
            .any(|sys| s.trim_matches('`').eq_ignore_ascii_case(sys))
    })
}

/// Tables of sample values of every column: MariaDB's engine-independent statistics
/// (`mysql.column_stats` min/max values) and MySQL 8 histograms, and the performance schema's
/// statement history (past error texts). An unqualified name counts too (after `USE mysql`).
fn is_statistics(schema: Option<&str>, table: &str) -> bool {
    let schema_ok =
        |want: &str| schema.is_none_or(|s| s.trim_matches('`').eq_ignore_ascii_case(want));
    let table = table.trim_matches('`');
    let table_lower = table.to_ascii_lowercase();
    (schema_ok("mysql") && table.eq_ignore_ascii_case("column_stats"))
        || (schema_ok("information_schema") && table.eq_ignore_ascii_case("column_statistics"))
        // Statement history: `MESSAGE_TEXT` keeps past error texts (which echo values) and
        // `SQL_TEXT` the statements of every session.
        || (schema_ok("performance_schema")
            && (table_lower.starts_with("events_statements_")
                || table_lower == "prepared_statements_instances"
                // `PROCESSLIST_INFO`: every session's running statement (round 7, F4).
                || table_lower == "threads"))
        // The sys schema's views over the above (`session`, `statement_analysis`, `x$…`).
        || schema.is_some_and(|s| s.trim_matches('`').eq_ignore_ascii_case("sys"))
}

/// The projection item behind result column `j` of `ncols`, when positions tell it.
fn item_for(items: &[Item], ncols: usize, j: usize) -> Option<&Item> {
    let first = items.iter().position(|i| *i == Item::Wildcard);
    let Some(first) = first else {
        return if ncols == items.len() {
            items.get(j)
        } else {
            None
        };
    };
    let last = items
        .iter()
        .rposition(|i| *i == Item::Wildcard)
        .unwrap_or(first);
    let after = items.len() - last - 1;
    if j < first {
        items.get(j)
    } else if ncols >= after && j >= ncols - after {
        items.get(items.len() - (ncols - j))
    } else {
        None
    }
}

/// A row whose lengths do not add up: it cannot be masked, so it is not sent.
#[derive(Debug)]
pub struct MalformedRow;

/// The rewrite of one value. `text`: the value's bytes are text (every text-protocol value;
/// string and `DECIMAL` values in the binary protocol).
fn mask_value(m: &SessionMasking, col: &ColPlan, v: &[u8], tally: &mut Tally) -> Rewrite {
    let string = is_string_type(col.ty);
    if let Some(sources) = &col.sources {
        if !string {
            for s in sources {
                tally.column(s);
            }
            return Rewrite::Null;
        }
        return match m.mask_whole(sources, v, tally) {
            Rewrite::Bytes(b) if col.ty == T_JSON => Rewrite::Bytes(json_string(b)),
            other => other,
        };
    }
    if col.message && m.has_column_rules() {
        tally.column("?error_detail");
        return Rewrite::Bytes(WARNING_WITHHELD.as_bytes().to_vec());
    }
    if m.content.is_empty() {
        return Rewrite::Same;
    }
    match m.mask_content(v, tally) {
        Rewrite::Same => Rewrite::Same,
        Rewrite::Null => Rewrite::Null,
        Rewrite::Bytes(_) if !string => Rewrite::Null,
        Rewrite::Bytes(b) if col.ty == T_JSON => {
            if serde_json_valid(&b) {
                Rewrite::Bytes(b)
            } else {
                Rewrite::Bytes(json_string(b))
            }
        }
        other => other,
    }
}

/// Binary integers can hold card and phone numbers: decoded and scanned, NULL on a hit.
fn mask_binary_int(m: &SessionMasking, col: &ColPlan, v: &[u8], tally: &mut Tally) -> Rewrite {
    if let Some(sources) = &col.sources {
        for s in sources {
            tally.column(s);
        }
        return Rewrite::Null;
    }
    if m.content.is_empty() {
        return Rewrite::Same;
    }
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    if let (Some(dst), Some(src)) = (b.get_mut(..n), v.get(..n)) {
        dst.copy_from_slice(src);
    }
    let negative = !col.unsigned && v.last().is_some_and(|x| x & 0x80 != 0);
    let digits = if negative {
        // Sign-extend.
        for x in b.iter_mut().skip(n) {
            *x = 0xFF;
        }
        i64::from_le_bytes(b).to_string()
    } else {
        u64::from_le_bytes(b).to_string()
    };
    match m.mask_content(digits.as_bytes(), tally) {
        Rewrite::Same => Rewrite::Same,
        _ => Rewrite::Null,
    }
}

fn serde_json_valid(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

/// A masked value of a JSON column as a JSON string, so the column stays valid JSON.
fn json_string(b: Vec<u8>) -> Vec<u8> {
    if serde_json_valid(&b) {
        return b;
    }
    serde_json::to_vec(&String::from_utf8_lossy(&b)).unwrap_or_else(|_| b"\"[WITHHELD]\"".to_vec())
}

/// Masks a text-protocol row. `Ok(None)`: nothing changed (send the original).
pub fn mask_text_row(
    m: &SessionMasking,
    plan: &Plan,
    p: &[u8],
    tally: &mut Tally,
) -> Result<Option<BytesMut>, MalformedRow> {
    let mut r = Reader::new(p, "text row");
    let mut out: Option<BytesMut> = None;
    for col in &plan.cols {
        let start = p.len() - r.remaining();
        let value = r.lenenc_bytes().map_err(|_| MalformedRow)?;
        let end = p.len() - r.remaining();
        let rewrite = match value {
            None => Rewrite::Same,
            Some(v) => mask_value(m, col, v, tally),
        };
        match rewrite {
            Rewrite::Same => {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(p.get(start..end).ok_or(MalformedRow)?);
                }
            }
            other => {
                let o = out.get_or_insert_with(|| {
                    let mut o = BytesMut::with_capacity(p.len() + 32);
                    o.extend_from_slice(p.get(..start).unwrap_or_default());
                    o
                });
                match other {
                    Rewrite::Null => o.put_u8(0xFB),
                    Rewrite::Bytes(b) => put_lenenc_bytes(o, &b),
                    Rewrite::Same => {}
                }
            }
        }
    }
    if r.remaining() != 0 {
        return Err(MalformedRow);
    }
    Ok(out)
}

/// How a binary-protocol value of type `ty` is laid out.
enum Layout {
    Fixed(usize),
    /// One length byte, then that many bytes (dates and times).
    Short,
    LenEnc,
}

fn layout(ty: u8) -> Layout {
    match ty {
        T_TINY => Layout::Fixed(1),
        T_SHORT | T_YEAR => Layout::Fixed(2),
        T_LONG | T_INT24 | T_FLOAT => Layout::Fixed(4),
        T_LONGLONG | T_DOUBLE => Layout::Fixed(8),
        T_NULL => Layout::Fixed(0),
        T_TIMESTAMP | T_DATE | T_DATETIME | T_NEWDATE | T_TIMESTAMP2 | T_DATETIME2 | T_TIME
        | T_TIME2 => Layout::Short,
        _ => Layout::LenEnc,
    }
}

/// Masks a binary-protocol row (`0x00`, NULL bitmap with an offset of 2, values).
pub fn mask_binary_row(
    m: &SessionMasking,
    plan: &Plan,
    p: &[u8],
    tally: &mut Tally,
) -> Result<Option<BytesMut>, MalformedRow> {
    let n = plan.cols.len();
    let bitmap_len = (n + 9) / 8;
    if p.first() != Some(&0x00) {
        return Err(MalformedRow);
    }
    let bitmap = p.get(1..1 + bitmap_len).ok_or(MalformedRow)?;
    let is_null = |i: usize| {
        let bit = i + 2;
        bitmap
            .get(bit / 8)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    };
    let mut pos = 1 + bitmap_len;
    let mut out: Option<BytesMut> = None;
    for (i, col) in plan.cols.iter().enumerate() {
        if is_null(i) {
            continue;
        }
        let start = pos;
        let rest = p.get(pos..).ok_or(MalformedRow)?;
        let (value, used) = match layout(col.ty) {
            Layout::Fixed(k) => (rest.get(..k).ok_or(MalformedRow)?, k),
            Layout::Short => {
                let k = usize::from(*rest.first().ok_or(MalformedRow)?);
                (rest.get(1..1 + k).ok_or(MalformedRow)?, 1 + k)
            }
            Layout::LenEnc => {
                let mut r = Reader::new(rest, "binary value");
                let v = r
                    .lenenc_bytes()
                    .map_err(|_| MalformedRow)?
                    .ok_or(MalformedRow)?;
                (v, rest.len() - r.remaining())
            }
        };
        pos += used;
        let rewrite = match col.ty {
            T_TINY | T_SHORT | T_YEAR | T_LONG | T_INT24 | T_LONGLONG => {
                mask_binary_int(m, col, value, tally)
            }
            T_FLOAT | T_DOUBLE | T_NULL | T_TIMESTAMP | T_DATE | T_DATETIME | T_NEWDATE
            | T_TIMESTAMP2 | T_DATETIME2 | T_TIME | T_TIME2 => match &col.sources {
                Some(sources) => {
                    for s in sources {
                        tally.column(s);
                    }
                    Rewrite::Null
                }
                None => Rewrite::Same,
            },
            // Strings, JSON, DECIMAL (as text), BIT, geometry and unknown types: lenenc bytes.
            _ => mask_value(m, col, value, tally),
        };
        match rewrite {
            Rewrite::Same => {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(p.get(start..pos).ok_or(MalformedRow)?);
                }
            }
            other => {
                let o = out.get_or_insert_with(|| {
                    let mut o = BytesMut::with_capacity(p.len() + 32);
                    o.extend_from_slice(p.get(..start).unwrap_or_default());
                    o
                });
                match other {
                    Rewrite::Null => {
                        let bit = i + 2;
                        if let Some(b) = o.get_mut(1 + bit / 8) {
                            *b |= 1 << (bit % 8);
                        }
                    }
                    Rewrite::Bytes(b) => put_lenenc_bytes(o, &b),
                    Rewrite::Same => {}
                }
            }
        }
    }
    if pos != p.len() {
        return Err(MalformedRow);
    }
    Ok(out)
}

/// The values of a text row as the recording keeps them (`None` for NULL).
/// Values borrow from the packet (no copy per value).
pub fn text_row_values<'a>(plan: &Plan, p: &'a [u8]) -> Option<Vec<Option<Cow<'a, [u8]>>>> {
    let mut r = Reader::new(p, "text row");
    let mut out = Vec::with_capacity(plan.cols.len());
    for _ in &plan.cols {
        out.push(r.lenenc_bytes().ok()?.map(Cow::Borrowed));
    }
    Some(out)
}

/// The values of a binary row rendered as text, as the mysql client would show them. Strings
/// borrow from the packet; only numbers and temporal values are rendered into new buffers.
pub fn binary_row_values<'a>(plan: &Plan, p: &'a [u8]) -> Option<Vec<Option<Cow<'a, [u8]>>>> {
    let n = plan.cols.len();
    let bitmap_len = (n + 9) / 8;
    let bitmap = p.get(1..1 + bitmap_len)?;
    let mut pos = 1 + bitmap_len;
    let mut out = Vec::with_capacity(n);
    for (i, col) in plan.cols.iter().enumerate() {
        let bit = i + 2;
        if bitmap
            .get(bit / 8)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        {
            out.push(None);
            continue;
        }
        let rest = p.get(pos..)?;
        let (v, used) = match layout(col.ty) {
            Layout::Fixed(k) => (rest.get(..k)?, k),
            Layout::Short => {
                let k = usize::from(*rest.first()?);
                (rest.get(1..1 + k)?, 1 + k)
            }
            Layout::LenEnc => {
                let mut r = Reader::new(rest, "binary value");
                let v = r.lenenc_bytes().ok()??;
                (v, rest.len() - r.remaining())
            }
        };
        pos += used;
        out.push(Some(match binary_as_text(col, v) {
            Some(text) => Cow::Owned(text),
            None => Cow::Borrowed(v),
        }));
    }
    Some(out)
}

fn binary_as_text(col: &ColPlan, v: &[u8]) -> Option<Vec<u8>> {
    let le = |n: usize| -> Option<[u8; 8]> {
        let mut b = [0u8; 8];
        b.get_mut(..n)?.copy_from_slice(v.get(..n)?);
        Some(b)
    };
    let int = |n: usize| -> Option<String> {
        let mut b = le(n)?;
        if col.unsigned {
            return Some(u64::from_le_bytes(b).to_string());
        }
        if v.get(n - 1).is_some_and(|x| x & 0x80 != 0) {
            for x in b.iter_mut().skip(n) {
                *x = 0xFF;
            }
        }
        Some(i64::from_le_bytes(b).to_string())
    };
    let u16at = |i: usize| -> u16 {
        u16::from_le_bytes([
            v.get(i).copied().unwrap_or(0),
            v.get(i + 1).copied().unwrap_or(0),
        ])
    };
    let at = |i: usize| -> u8 { v.get(i).copied().unwrap_or(0) };
    let text = match col.ty {
        T_TINY => int(1)?,
        T_SHORT | T_YEAR => int(2)?,
        T_LONG | T_INT24 => int(4)?,
        T_LONGLONG => int(8)?,
        T_FLOAT => f32::from_le_bytes(v.try_into().ok()?).to_string(),
        T_DOUBLE => f64::from_le_bytes(v.try_into().ok()?).to_string(),
        T_DATE | T_NEWDATE | T_DATETIME | T_TIMESTAMP | T_DATETIME2 | T_TIMESTAMP2 => {
            let date = format!("{:04}-{:02}-{:02}", u16at(0), at(2), at(3));
            match v.len() {
                0 => "0000-00-00".to_owned(),
                4 if matches!(col.ty, T_DATE | T_NEWDATE) => date,
                4 => format!("{date} 00:00:00"),
                7 => format!("{date} {:02}:{:02}:{:02}", at(4), at(5), at(6)),
                11 => {
                    let us = u32::from_le_bytes([at(7), at(8), at(9), at(10)]);
                    format!("{date} {:02}:{:02}:{:02}.{us:06}", at(4), at(5), at(6))
                }
                _ => return None,
            }
        }
        T_TIME | T_TIME2 => match v.len() {
            0 => "00:00:00".to_owned(),
            8 | 12 => {
                let days = u32::from_le_bytes([at(1), at(2), at(3), at(4)]);
                let sign = if at(0) == 1 { "-" } else { "" };
                let h = days * 24 + u32::from(at(5));
                let base = format!("{sign}{h:02}:{:02}:{:02}", at(6), at(7));
                if v.len() == 12 {
                    let us = u32::from_le_bytes([at(8), at(9), at(10), at(11)]);
                    format!("{base}.{us:06}")
                } else {
                    base
                }
            }
            _ => return None,
        },
        _ => return None,
    };
    Some(text.into_bytes())
}

/// The text a `SHOW WARNINGS` / `SHOW ERRORS` message becomes in a session with column rules.
/// Warnings outlive the statement that raised them (a later `SHOW WARNINGS` reads them) and
/// MySQL's texts echo values in many shapes (`Unknown locale: '…'`, truncated at 64 characters,
/// so content detectors miss them): the message is withheld whatever statement raised it. The
/// level and code stay.
pub const WARNING_WITHHELD: &str =
    "[WITHHELD: warning texts are withheld in sessions with masked columns]";

/// The message an ERR packet gets when its statement had a masked column in scope.
pub fn error_withheld(code: u16) -> String {
    format!(
        "airlock: the text of error {code} was withheld: the statement reads masked columns and MySQL error texts can echo their values"
    )
}

/// `ER_PARSE_ERROR`: "You have an error in your SQL syntax; … near '…'".
const ER_PARSE_ERROR: u16 = 1064;

/// Masks the message of an ERR packet. `own_text`: a syntax error (1064) can only quote the
/// statement's own text ([`StmtMask::syntax_errors_quote_own_text`]), so it keeps its text.
/// `touched`: the statement has a masked column (or one of
/// unknown lineage near a ruled table) in scope, so any message may echo a value derived from
/// it (`Unknown locale: '…'`, `Unknown or incorrect time zone: '…'`, cut at 64 characters where
/// detectors no longer recognise it): the whole text is withheld, code and SQLSTATE kept.
/// Otherwise, with column rules in force, values MySQL echoes (`Duplicate entry '…' for key`,
/// `Incorrect integer value: '…'`) are withheld: the message does not reliably say which column
/// they belong to.
pub fn mask_err(
    m: &SessionMasking,
    p: &[u8],
    touched: bool,
    own_text: bool,
    tally: &mut Tally,
) -> Option<BytesMut> {
    let e = decode_err(p);
    let state = if e.sqlstate.is_empty() {
        "HY000"
    } else {
        e.sqlstate.as_str()
    };
    // A syntax error quotes the client's own statement: nothing of a value in it.
    let own_syntax_error = e.code == ER_PARSE_ERROR && own_text;
    if touched && m.has_column_rules() && !own_syntax_error {
        tally.column("?error_detail");
        return Some(err_payload(e.code, state, &error_withheld(e.code)));
    }
    let mut message = e.message.clone();
    if m.has_column_rules() {
        if let Some(w) = withhold_echoed(&message) {
            tally.column("?error_detail");
            message = w;
        }
    }
    if let Rewrite::Bytes(b) = m.mask_content(message.as_bytes(), tally) {
        message = String::from_utf8_lossy(&b).into_owned();
    }
    if message == e.message {
        return None;
    }
    Some(err_payload(e.code, state, &message))
}

/// `Duplicate entry 'x' for key 'k'` → `Duplicate entry '[WITHHELD]' for key 'k'`; likewise
/// `value: '…'` and `entry '…'` in other messages (`Incorrect integer value: '…' for column`).
pub fn withhold_echoed(message: &str) -> Option<String> {
    let mut out = message.to_owned();
    let mut changed = false;
    for marker in ["entry '", "value: '", "value '"] {
        let Some(i) = out.find(marker) else {
            continue;
        };
        let start = i + marker.len();
        let tail = out.get(start..)?;
        // The value may itself contain quotes: it ends at the last `' for ` (or the last
        // quote when the message has no such suffix).
        let end = tail
            .rfind("' for ")
            .or_else(|| tail.rfind("' at "))
            .or_else(|| tail.rfind('\''))
            .map(|e| start + e);
        let Some(end) = end else {
            continue;
        };
        if out.get(start..end) == Some("[WITHHELD]") {
            continue;
        }
        out.replace_range(start..end, "[WITHHELD]");
        changed = true;
    }
    changed.then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values() {
        assert_eq!(
            withhold_echoed("Duplicate entry 'a@b.c' for key 'email'").unwrap(),
            "Duplicate entry '[WITHHELD]' for key 'email'"
        );
        assert_eq!(
            withhold_echoed("Duplicate entry 'it's' for key 't.email'").unwrap(),
            "Duplicate entry '[WITHHELD]' for key 't.email'"
        );
        assert_eq!(
            withhold_echoed("Incorrect integer value: 'x@y.z' for column `test`.`t`.`id` at row 1")
                .unwrap(),
            "Incorrect integer value: '[WITHHELD]' for column `test`.`t`.`id` at row 1"
        );
        assert_eq!(
            withhold_echoed("Truncated incorrect DOUBLE value: '4111'").unwrap(),
            "Truncated incorrect DOUBLE value: '[WITHHELD]'"
        );
        assert!(withhold_echoed("Table 'x' doesn't exist").is_none());
    }

    #[test]
    fn columns_behind_wildcards() {
        let e = Item::Expr {
            refs: vec![],
            opaque: false,
        };
        let items = vec![e.clone(), Item::Wildcard, e.clone()];
        assert_eq!(item_for(&items, 5, 0), Some(&e));
        assert_eq!(item_for(&items, 5, 1), None);
        assert_eq!(item_for(&items, 5, 3), None);
        assert_eq!(item_for(&items, 5, 4), Some(&e));
        assert_eq!(item_for(std::slice::from_ref(&e), 2, 0), None);
    }
}
