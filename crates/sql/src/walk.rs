//! A generic walk over the whole parse tree of one statement.
//!
//! The protobuf tree of PostgreSQL has ~270 node types. A hand-written typed visitor that forgets
//! one field (a subquery in a `CASE` inside a `LATERAL` function argument, ...) would let a
//! function call or a table read slip through unseen. `pg_query`'s protobuf types implement
//! `serde::Serialize`, so the walk is a [`serde::Serializer`] that the tree serializes itself
//! into: every field of every node is handed to it, nothing can be skipped by construction, and
//! nothing is copied. (An earlier version serialized the tree into a `serde_json::Value` and
//! walked that: a 4 MB `IN (...)` list cost 2.7 GB and 20 s.) The node types that matter are
//! recognised by their struct name (`RangeVar`, `FuncCall`, ...), and the position of a node by
//! the nearest enclosing struct and the field holding it.
//!
//! The walk is streaming, so a property that a struct reveals in a later field is resolved when
//! the struct ends: a `RangeVar`'s name and location, a `FuncCall`'s location, whether an
//! UPDATE/DELETE has a WHERE, and which table names a statement's WITH clause turns into CTE
//! references (the WITH clause of a `SelectStmt` comes after its FROM clause in the protobuf).
//!
//! The walk is bounded: at most [`MAX_NODES`] structs and a nesting depth of [`MAX_DEPTH`]; a
//! bigger tree is an error, which the caller turns into an unparsed (fail-closed) result.

use std::fmt;

use airlock_core::Operation;
use serde::ser::{self, Serialize};

use crate::functions;

/// The most structs one statement's tree may have. Each item of an `IN (...)` list is three
/// (`Node`, `AConst`, `Integer`); text within the token bound (`MAX_CLASSIFIED_TOKENS`) stays
/// far below this, so it is a second line of defence. The walk keeps nothing per struct.
pub(crate) const MAX_NODES: usize = 8_000_000;
/// Deeper than prost's decoder accepts (100 nested messages), so never reached on decoded
/// trees; kept so the recursion is bounded whatever the input.
pub(crate) const MAX_DEPTH: usize = 1_000;

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
    /// A call of a function not known to be read-only, or a user-defined operator or type
    /// (whose functions run without a visible call).
    pub unknown_function: bool,
    /// A call of a function that runs SQL text (or changes how later names resolve).
    pub dynamic_function: bool,
    /// `EXECUTE prepared` nested in another statement (`CREATE TABLE AS EXECUTE`).
    pub execute: bool,
    /// A row-locking clause (`FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`).
    pub locking: bool,
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

/// Positions (enclosing struct, field) in which a `RangeVar` is the relation the statement
/// writes, creates, alters or locks. Every other `RangeVar` is a read.
const WRITE_TARGETS: &[(&str, &str)] = &[
    ("InsertStmt", "relation"),
    ("UpdateStmt", "relation"),
    ("DeleteStmt", "relation"),
    ("MergeStmt", "relation"),
    // SELECT ... INTO and CREATE TABLE AS
    ("IntoClause", "rel"),
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

/// Statement types that can carry a WITH clause: each opens a scope for CTE names.
const CTE_SCOPES: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
];

/// Positions whose `String` nodes spell a dotted name that the walk checks when the struct ends.
const NAME_LISTS: &[(&str, &str)] = &[
    ("FuncCall", "funcname"),
    ("AExpr", "name"),
    ("SubLink", "oper_name"),
    ("SortBy", "use_op"),
    ("TypeName", "names"),
];

/// Walks `root` (a `NodeEnum` or any protobuf node). `copy_from`: the statement is a
/// `COPY ... FROM`, whose relation is written (the `CopyStmt` field saying so comes after the
/// relation, and COPY cannot be nested, so the caller decides).
pub(crate) fn scan<T: Serialize + ?Sized>(root: &T, copy_from: bool) -> Result<Scan, WalkError> {
    let mut walker = Walker {
        out: Scan::default(),
        frames: Vec::new(),
        scopes: Vec::new(),
        nodes: 0,
        copy_from,
    };
    root.serialize(&mut walker)?;
    Ok(walker.out)
}

/// The tree was too big or too deep to walk within the bounds.
#[derive(Debug)]
pub(crate) struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

/// One struct being serialized.
#[derive(Default)]
struct Frame {
    name: &'static str,
    /// The field currently being serialized.
    field: &'static str,
    location: Option<i64>,
    /// Name parts collected from a [`NAME_LISTS`] position.
    parts: Vec<String>,
    /// `where_clause` / `into_clause` was present.
    has_where: bool,
    has_into: bool,
    /// Index into `Scan::modifying` of this UPDATE/DELETE.
    modifying: Option<usize>,
    /// RangeVar parts and whether it sits in a write position.
    catalog: String,
    schema: String,
    relname: String,
    range_var_writes: bool,
}

/// The CTE names of one statement and the unqualified relation names read inside it that may
/// turn out to be references to them.
#[derive(Default)]
struct Scope {
    names: Vec<String>,
    recursive: bool,
    /// While walking the body of CTE number `i` of this statement's WITH clause.
    current_cte: Option<usize>,
    pending: Vec<Pending>,
}

struct Pending {
    location: i64,
    name: String,
    /// Read inside the body of this scope's CTE number `i` (which sees only the CTEs before
    /// it unless the WITH is RECURSIVE).
    cte_body: Option<usize>,
}

struct Walker {
    out: Scan,
    frames: Vec<Frame>,
    scopes: Vec<Scope>,
    nodes: usize,
    copy_from: bool,
}

impl Walker {
    /// The innermost struct that is not the transparent `Node { node }` wrapper, below the top
    /// `skip` frames.
    fn enclosing(&self, skip: usize) -> Option<&Frame> {
        self.frames
            .iter()
            .rev()
            .skip(skip)
            .find(|frame| frame.name != "Node")
    }

    fn enclosing_mut(&mut self, skip: usize) -> Option<&mut Frame> {
        self.frames
            .iter_mut()
            .rev()
            .skip(skip)
            .find(|frame| frame.name != "Node")
    }

    fn top(&self) -> Option<(&'static str, &'static str)> {
        self.frames.last().map(|f| (f.name, f.field))
    }

    fn begin_struct(&mut self, name: &'static str) -> Result<(), WalkError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(WalkError(format!(
                "statement too large to classify: over {MAX_NODES} parse tree nodes"
            )));
        }
        if self.frames.len() >= MAX_DEPTH {
            return Err(WalkError(format!(
                "statement nested too deeply to classify: over {MAX_DEPTH} levels"
            )));
        }
        let mut frame = Frame {
            name,
            ..Frame::default()
        };
        match name {
            "RangeVar" => {
                let position = self.enclosing(0).map(|f| (f.name, f.field));
                frame.range_var_writes = position.is_some_and(|position| {
                    WRITE_TARGETS.contains(&position)
                        || (self.copy_from && position == ("CopyStmt", "relation"))
                });
            }
            "InsertStmt" => self.out.modifying.push((Operation::Insert, true)),
            // MERGE always has its ON join condition, so it is never unbounded in the WHERE
            // sense.
            "MergeStmt" => self.out.modifying.push((Operation::Merge, true)),
            // Bounded or not is known when the struct ends.
            "UpdateStmt" => {
                frame.modifying = Some(self.out.modifying.len());
                self.out.modifying.push((Operation::Update, false));
            }
            "DeleteStmt" => {
                frame.modifying = Some(self.out.modifying.len());
                self.out.modifying.push((Operation::Delete, false));
            }
            "ExecuteStmt" => self.out.execute = true,
            "LockingClause" => self.out.locking = true,
            "CommonTableExpr" => {
                if let Some(scope) = self.scopes.last_mut() {
                    scope.current_cte = Some(scope.names.len());
                }
            }
            _ => {}
        }
        if CTE_SCOPES.contains(&name) {
            self.scopes.push(Scope::default());
        }
        self.frames.push(frame);
        Ok(())
    }

    fn end_struct(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        let location = frame.location.unwrap_or(i64::MAX);
        let (name, has_into) = (frame.name, frame.has_into);
        match name {
            "RangeVar" => self.range_var(frame, location),
            "UpdateStmt" | "DeleteStmt" => {
                if let Some(entry) = frame.modifying.and_then(|i| self.out.modifying.get_mut(i)) {
                    // Only the presence of a WHERE is checked: `WHERE true` counts, predicates
                    // are not evaluated.
                    entry.1 = frame.has_where;
                }
            }
            "FuncCall" => {
                let name = frame.parts.join(".");
                if functions::runs_sql_text(&name) {
                    self.out.dynamic_function = true;
                }
                if !functions::is_read_only(&name) {
                    self.out.unknown_function = true;
                }
                self.out.functions.push((location, name));
            }
            // An empty name: EXISTS/ARRAY sublinks, ORDER BY without USING, AND/OR/NOT.
            "AExpr" | "SubLink" | "SortBy"
                if !frame.parts.is_empty() && !functions::is_builtin_operator(&frame.parts) =>
            {
                self.out.unknown_function = true;
                self.out
                    .functions
                    .push((location, format!("OPERATOR({})", frame.parts.join("."))));
            }
            "TypeName" if !functions::is_builtin_type(&frame.parts) => {
                self.out.unknown_function = true;
                self.out
                    .functions
                    .push((location, format!("CAST({})", frame.parts.join("."))));
            }
            "CommonTableExpr" => {
                if let Some(scope) = self.scopes.last_mut() {
                    scope.current_cte = None;
                }
            }
            _ => {}
        }
        if name == "SelectStmt" && has_into {
            self.out.select_into = true;
        }
        if CTE_SCOPES.contains(&name) {
            if let Some(scope) = self.scopes.pop() {
                self.close_scope(scope);
            }
        }
    }

    fn range_var(&mut self, frame: Frame, location: i64) {
        let qualified = !frame.catalog.is_empty() || !frame.schema.is_empty();
        let name = [
            frame.catalog.as_str(),
            frame.schema.as_str(),
            frame.relname.as_str(),
        ]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(".");
        if frame.range_var_writes {
            self.out.writes.push((location, name));
        } else if qualified {
            self.out.reads.push((location, name));
        } else {
            self.pend(location, name);
        }
    }

    /// An unqualified read: a CTE reference if an enclosing statement's WITH clause (which may
    /// not have been walked yet) names it, else a relation.
    fn pend(&mut self, location: i64, name: String) {
        match self.scopes.last_mut() {
            Some(scope) => scope.pending.push(Pending {
                location,
                name,
                cte_body: scope.current_cte,
            }),
            None => self.out.reads.push((location, name)),
        }
    }

    /// A statement ended: its CTE names are all known, so its pending reads are resolved or
    /// handed to the enclosing statement.
    fn close_scope(&mut self, scope: Scope) {
        for pending in scope.pending {
            let visible = match pending.cte_body {
                // A non-recursive CTE body sees only the CTEs before it, so in
                // `WITH t AS (SELECT * FROM t) ...` the inner `t` is the real table.
                Some(index) if !scope.recursive => scope.names.get(..index).unwrap_or_default(),
                _ => scope.names.as_slice(),
            };
            if !visible.contains(&pending.name) {
                self.pend(pending.location, pending.name);
            }
        }
    }

    fn string(&mut self, value: &str) {
        match self.top() {
            Some(("String", "sval")) => {
                // The list this `String` node is an item of.
                if let Some(list) = self.enclosing_mut(1) {
                    if NAME_LISTS.contains(&(list.name, list.field)) {
                        list.parts.push(value.to_owned());
                    }
                }
            }
            Some(("RangeVar", field)) => {
                if let Some(frame) = self.frames.last_mut() {
                    match field {
                        "catalogname" => frame.catalog = value.to_owned(),
                        "schemaname" => frame.schema = value.to_owned(),
                        "relname" => frame.relname = value.to_owned(),
                        _ => {}
                    }
                }
            }
            Some(("CommonTableExpr", "ctename")) => {
                if let Some(scope) = self.scopes.last_mut() {
                    scope.names.push(value.to_owned());
                }
            }
            _ => {}
        }
    }

    fn integer(&mut self, value: i64) {
        if let Some(frame) = self.frames.last_mut() {
            if frame.field == "location" {
                frame.location = Some(value);
            }
        }
    }

    fn boolean(&mut self, value: bool) {
        if self.top() == Some(("WithClause", "recursive")) {
            if let Some(scope) = self.scopes.last_mut() {
                scope.recursive = value;
            }
        }
    }

    /// `Some(..)` of an optional field.
    fn present(&mut self) {
        if let Some(frame) = self.frames.last_mut() {
            match frame.field {
                "where_clause" => frame.has_where = true,
                "into_clause" => frame.has_into = true,
                _ => {}
            }
        }
    }
}

impl ser::Serializer for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), WalkError> {
        self.boolean(v);
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), WalkError> {
        self.integer(i64::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), WalkError> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), WalkError> {
        self.string(v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), WalkError> {
        self.present();
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self)
    }
    /// `NodeEnum::SelectStmt(..)` and the other oneofs: the struct inside names itself.
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, WalkError> {
        self.begin_struct(name)?;
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        self.begin_struct(variant)?;
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), WalkError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        if let Some(frame) = self.frames.last_mut() {
            frame.field = key;
        }
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        self.end_struct();
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Walker {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        if let Some(frame) = self.frames.last_mut() {
            frame.field = key;
        }
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        self.end_struct();
        Ok(())
    }
}
