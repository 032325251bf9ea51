//! Which function calls, operators and types may appear in a read.
//!
//! A function is an arbitrary program: `select f()` can delete rows, terminate backends or
//! write files. We cannot see inside functions, so a call is treated as a possible write unless
//! the function is on [`READ_ONLY_FUNCTIONS`], a list of built-ins that only compute values or
//! read catalogs. The lists here are deliberately plain arrays that reviewers can audit line by
//! line.
//!
//! Names are matched after the parser lower-cased unquoted identifiers. A call qualified with a
//! schema other than `pg_catalog` (`public.lower(x)`) is never on the list: a user-defined
//! function may shadow a built-in name.
//!
//! **Unqualified names and `search_path`.** An unqualified name is trusted to be the built-in
//! only while `pg_catalog` is searched first, which PostgreSQL does implicitly unless
//! `search_path` lists `pg_catalog` after another schema (`SET search_path = rt, pg_catalog`
//! makes `lower('x')` run `rt.lower`). Such a `SET` is classified as dynamic SQL that writes (the
//! most dangerous class: every later unqualified name is untrustworthy), `set_config` is
//! dynamic, and [`search_path_trusts_builtins`] checks the value a session starts with.
//!
//! **Functions that run without a visible call.**
//! - *Casts and type names* (`x::t`, `CAST(x AS t)`, `t 'literal'`, column definition lists):
//!   a type's input function, a domain's CHECK constraints and a user-defined cast run user
//!   code. Any type name not on [`BUILTIN_TYPES`] (unqualified or `pg_catalog.`) counts as a
//!   call of an unknown function. Extension types (`citext`, `hstore`, PostGIS) are therefore
//!   treated as "may write": a false positive, but one the catalog would be needed to avoid.
//! - *Operators*: an operator is a function call. A schema-qualified operator
//!   (`OPERATOR(rt.+)`) other than `pg_catalog`, and any operator symbol that no built-in
//!   operator uses (`===`, `@@@@`), counts as an unknown function call. The standard symbols
//!   on [`BUILTIN_OPERATORS`] are allowed because refusing `a = b` on columns of unknown type
//!   would block ordinary reads. This is sound for every argument-type combination that
//!   `pg_catalog` defines (with `pg_catalog` searched first, an operator of the same name and
//!   argument types in another schema is hidden), and for user-defined *types*, whose values can
//!   only come from a cast (flagged above) or from a column. It is **not** sound against an
//!   operator that someone with CREATE rights already defined in another schema, under a
//!   standard symbol, for a combination `pg_catalog` lacks (`CREATE OPERATOR public.= (text,
//!   int4)` needs no ownership of either type), nor against the support functions of a column
//!   whose type is user-defined (comparison, hashing, output). The same holds for an
//!   allowlisted function name overloaded in another schema for argument types the built-in
//!   does not take. Closing these needs the catalog; run agents with a read-only upstream role
//!   (or the database's read-only mode), under which such a function cannot write.
//! - Views, rules, triggers and column defaults reached by a statement are not visible in its
//!   text at all (same remedy).

/// Built-ins that neither change data, session privileges nor files, nor run SQL text.
#[rustfmt::skip]
pub const READ_ONLY_FUNCTIONS: &[&str] = &[
    // aggregates and window functions
    "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or",
    "every", "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg",
    "jsonb_object_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
    "corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "regr_count", "regr_r2",
    "percentile_cont", "percentile_disc", "mode", "rank", "dense_rank", "percent_rank",
    "cume_dist", "row_number", "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    "xmlagg", "any_value", "range_agg", "range_intersect_agg",
    // mathematics
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt", "power", "pow",
    "exp", "ln", "log", "log10", "mod", "div", "pi", "degrees", "radians", "random",
    "random_normal", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
    "greatest", "least", "width_bucket", "gcd", "lcm", "factorial", "scale", "min_scale",
    "trim_scale", "numeric", "int4", "int8", "float8", "text",
    // strings
    "lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length",
    "bit_length", "substr", "substring", "position", "strpos", "trim", "btrim", "ltrim", "rtrim",
    "lpad", "rpad", "replace", "split_part", "concat", "concat_ws", "format", "left", "right",
    "reverse", "repeat", "translate", "md5", "sha224", "sha256", "sha384", "sha512", "encode",
    "decode", "to_hex", "ascii", "chr", "regexp_replace", "regexp_match", "regexp_matches",
    "regexp_split_to_array", "regexp_split_to_table", "regexp_like", "regexp_count",
    "regexp_instr", "regexp_substr", "starts_with", "quote_ident", "quote_literal",
    "quote_nullable", "string_to_array", "array_to_string", "overlay", "normalize",
    "is_normalized", "unistr", "to_char", "to_number", "to_date", "to_timestamp", "textlen",
    "like_escape", "similar_to_escape", "similar_escape", "convert_from", "convert_to",
    "pg_collation_for", "string_to_table",
    // full text search
    "to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery",
    "ts_rank", "ts_rank_cd", "ts_headline", "setweight", "strip", "tsvector_to_array",
    "array_to_tsvector", "numnode", "querytree", "ts_lexize", "ts_debug", "ts_parse",
    "ts_token_type", "get_current_ts_config",
    // date and time
    "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday",
    "date_trunc", "date_part", "extract", "age", "make_date", "make_time", "make_timestamp",
    "make_timestamptz", "make_interval", "justify_days", "justify_hours", "justify_interval",
    "isfinite", "timezone", "date_bin", "overlaps", "date_add", "date_subtract",
    // arrays, ranges, json
    "array_length", "array_lower", "array_upper", "array_dims", "array_ndims", "cardinality",
    "unnest", "array_position", "array_positions", "array_append", "array_prepend", "array_cat",
    "array_remove", "array_replace", "array_fill", "generate_series", "generate_subscripts",
    "lower_inc", "upper_inc", "isempty", "range_merge",
    // range and multirange constructors (built-in subtypes only: a user range type has its
    // own constructor name, which is not on this list)
    "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
    "int4multirange", "int8multirange", "nummultirange", "tsmultirange", "tstzmultirange",
    "datemultirange",
    "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array",
    "json_object", "jsonb_object", "to_json", "to_jsonb", "row_to_json", "array_to_json",
    "json_array_elements", "jsonb_array_elements", "json_array_elements_text",
    "jsonb_array_elements_text", "json_array_length", "jsonb_array_length", "json_each",
    "jsonb_each", "json_each_text", "jsonb_each_text", "json_object_keys", "jsonb_object_keys",
    "json_typeof", "jsonb_typeof", "jsonb_set", "jsonb_insert", "jsonb_pretty",
    "jsonb_strip_nulls", "json_strip_nulls", "jsonb_path_query", "jsonb_path_query_array",
    "jsonb_path_query_first", "jsonb_path_exists", "jsonb_path_match", "json_extract_path",
    "jsonb_extract_path", "json_extract_path_text", "jsonb_extract_path_text",
    "json_populate_record", "jsonb_populate_record", "json_to_record", "jsonb_to_record",
    "json_to_recordset", "jsonb_to_recordset",
    // identifiers, types, misc values
    "gen_random_uuid", "uuidv4", "uuidv7", "pg_typeof", "pg_column_size", "num_nulls",
    "num_nonnulls", "currval", "lastval", "row", "host", "masklen", "network", "family",
    "inet_client_addr", "inet_client_port", "inet_server_addr", "inet_server_port",
    "to_regclass", "to_regtype", "to_regproc", "to_regnamespace", "to_regrole",
    // session and server information
    "version", "current_database", "current_schema", "current_schemas", "current_setting",
    "current_user", "session_user", "pg_backend_pid", "pg_postmaster_start_time",
    "pg_conf_load_time", "pg_is_in_recovery", "pg_current_wal_lsn", "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn", "pg_encoding_to_char", "pg_char_to_encoding",
    "pg_client_encoding", "getdatabaseencoding", "pg_jit_available", "txid_current_if_assigned",
    "pg_current_xact_id_if_assigned", "pg_is_other_temp_schema", "pg_my_temp_schema",
    // snapshots and locks, read only (unlike txid_current / pg_current_xact_id, they do not
    // assign a transaction id)
    "pg_current_snapshot", "pg_snapshot_xmin", "pg_snapshot_xmax", "pg_snapshot_xip",
    "pg_visible_in_snapshot", "txid_current_snapshot", "txid_snapshot_xmin",
    "txid_snapshot_xmax", "txid_snapshot_xip", "txid_visible_in_snapshot", "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids", "pg_sequence_last_value",
    // privileges (read-only checks)
    "has_table_privilege", "has_schema_privilege", "has_database_privilege",
    "has_column_privilege", "has_any_column_privilege", "has_function_privilege",
    "has_sequence_privilege", "has_language_privilege", "has_tablespace_privilege",
    "has_type_privilege", "has_foreign_data_wrapper_privilege", "has_server_privilege",
    "has_parameter_privilege", "pg_has_role", "row_security_active", "makeaclitem", "aclexplode",
    "acldefault",
    // catalog helpers used by psql's \d commands and common GUI tools
    "obj_description", "col_description", "shobj_description", "format_type",
    "pg_get_userbyid", "pg_table_is_visible", "pg_type_is_visible", "pg_function_is_visible",
    "pg_operator_is_visible", "pg_opclass_is_visible", "pg_opfamily_is_visible",
    "pg_collation_is_visible", "pg_conversion_is_visible", "pg_ts_config_is_visible",
    "pg_ts_dict_is_visible", "pg_ts_parser_is_visible", "pg_ts_template_is_visible",
    "pg_statistics_obj_is_visible", "pg_get_expr", "pg_get_constraintdef", "pg_get_indexdef",
    "pg_get_viewdef", "pg_get_triggerdef", "pg_get_ruledef", "pg_get_functiondef",
    "pg_get_function_arguments", "pg_get_function_result",
    "pg_get_function_identity_arguments", "pg_get_function_sqlbody",
    "pg_get_statisticsobjdef", "pg_get_statisticsobjdef_columns",
    "pg_get_statisticsobjdef_expressions", "pg_get_partkeydef",
    "pg_get_partition_constraintdef", "pg_get_serial_sequence", "pg_get_keywords",
    "pg_get_publication_tables", "pg_relation_size", "pg_total_relation_size", "pg_table_size",
    "pg_indexes_size", "pg_size_pretty", "pg_size_bytes", "pg_database_size",
    "pg_tablespace_size", "pg_tablespace_location", "pg_relation_filenode",
    "pg_relation_is_publishable", "pg_options_to_table", "pg_get_object_address",
    "pg_identify_object", "pg_describe_object", "pg_partition_root", "pg_partition_tree",
    "pg_partition_ancestors", "pg_index_column_has_property", "pg_index_has_property",
    "pg_indexam_has_property", "pg_settings_get_flags", "pg_get_catalog_foreign_keys",
    "pg_inheritance_tree", "regclass", "regtype", "oid", "pg_stat_get_numscans",
    "pg_stat_get_live_tuples", "pg_stat_get_dead_tuples", "pg_get_replica_identity_index",
    "pg_get_acl", "pg_basetype",
];

/// Functions that execute SQL given to them as text (or open a connection that does), or that
/// change how later SQL resolves (`set_config('search_path', ...)`). They are never read-only
/// and additionally mark the statement `dynamic_sql`.
pub const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
    // changes settings, search_path among them, for the rest of the session
    "set_config",
    // tablefunc and xml2 extensions: run the query text they are given
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
    "xpath_table",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    "dblink_get_result",
    "dblink_connect",
    "dblink_connect_u",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
];

/// Operator names the built-in operators of `pg_catalog` use (`SELECT DISTINCT oprname FROM
/// pg_operator WHERE oprnamespace = 'pg_catalog'::regnamespace`), plus the names the parser
/// gives `BETWEEN` forms (rewritten into `>=`/`<=` by parse analysis). `!=` is lexed as `<>`.
#[rustfmt::skip]
pub const BUILTIN_OPERATORS: &[&str] = &[
    "!!", "!~", "!~*", "!~~", "!~~*", "##", "#", "#-", "#>", "#>>", "%", "&&", "&", "&<", "&<|",
    "&>", "*", "*<", "*<=", "*<>", "*=", "*>", "*>=", "+", "-", "->", "->>", "-|-", "/", "<",
    "<->", "<<", "<<=", "<<|", "<=", "<>", "<@", "<^", "=", ">", ">=", ">>", ">>=", ">^", "?#",
    "?&", "?", "?-", "?-|", "?|", "?||", "@", "@-@", "@>", "@?", "@@", "@@@", "^", "^@", "|&>",
    "|", "|/", "|>>", "||", "||/", "~", "~*", "~<=~", "~<~", "~=", "~>=~", "~>~", "~~", "~~*",
    "BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC", "NOT BETWEEN SYMMETRIC",
];

/// Types of `pg_catalog` whose input, output and cast functions are built-in (base, range and
/// multirange types, `record`, `unknown`). Array types are their element type with `_` in
/// front or `[]` after (the parser keeps the element name and records the bounds).
#[rustfmt::skip]
pub const BUILTIN_TYPES: &[&str] = &[
    "aclitem", "bit", "bool", "box", "bpchar", "bytea", "char", "cid", "cidr", "circle", "date",
    "float4", "float8", "gtsvector", "inet", "int2", "int2vector", "int4", "int8", "interval",
    "json", "jsonb", "jsonpath", "line", "lseg", "macaddr", "macaddr8", "money", "name",
    "numeric", "oid", "oidvector", "path", "pg_lsn", "pg_snapshot", "point", "polygon",
    "refcursor", "regclass", "regcollation", "regconfig", "regdictionary", "regnamespace",
    "regoper", "regoperator", "regproc", "regprocedure", "regrole", "regtype", "text", "tid",
    "time", "timestamp", "timestamptz", "timetz", "tsquery", "tsvector", "txid_snapshot", "uuid",
    "varbit", "varchar", "xid", "xid8", "xml",
    "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
    "int4multirange", "int8multirange", "nummultirange", "tsmultirange", "tstzmultirange",
    "datemultirange",
    "record", "unknown", "cstring", "void",
];

/// Whether an operator name (as the parser spelled it: `["="]`, `["rt", "+"]`) is a built-in
/// one: a name on [`BUILTIN_OPERATORS`], unqualified or qualified with `pg_catalog`.
pub fn is_builtin_operator(parts: &[String]) -> bool {
    match parts {
        [name] => BUILTIN_OPERATORS.contains(&name.as_str()),
        [schema, name] if schema == "pg_catalog" => BUILTIN_OPERATORS.contains(&name.as_str()),
        _ => false,
    }
}

/// Whether a type name (`["text"]`, `["pg_catalog", "int4"]`, `["public", "t"]`) is a
/// built-in type on [`BUILTIN_TYPES`] (or an array of one).
pub fn is_builtin_type(parts: &[String]) -> bool {
    let name = match parts {
        [name] => name,
        [schema, name] if schema == "pg_catalog" => name,
        _ => return false,
    };
    let element = name.strip_prefix('_').unwrap_or(name);
    BUILTIN_TYPES.contains(&element)
}

/// Whether unqualified names still resolve to `pg_catalog`'s built-ins under a `search_path`
/// whose elements (schema names, already unquoted) are `elements`: true when `pg_catalog` is
/// not listed (PostgreSQL then searches it first, implicitly) or is listed first.
pub fn search_path_elements_trust_builtins<S: AsRef<str>>(elements: &[S]) -> bool {
    match elements.iter().position(|e| e.as_ref() == "pg_catalog") {
        None | Some(0) => true,
        Some(_) => false,
    }
}

/// Whether a `search_path` value as given in a libpq startup parameter or `SHOW search_path`
/// (`"rt, pg_catalog"`, `"\"$user\", public"`) keeps built-in names trustworthy (see
/// [`search_path_elements_trust_builtins`]). The value is split like PostgreSQL splits list
/// settings: commas, optional whitespace, double-quoted names with `""` escapes, unquoted names
/// lower-cased. A value that does not split cleanly fails closed (false).
pub fn search_path_trusts_builtins(value: &str) -> bool {
    match split_identifier_list(value) {
        Some(elements) => search_path_elements_trust_builtins(&elements),
        None => false,
    }
}

/// PostgreSQL's `SplitIdentifierString` with `,` as the separator; `None` where it fails.
fn split_identifier_list(value: &str) -> Option<Vec<String>> {
    let mut elements = Vec::new();
    let mut chars = value.chars().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
    };
    skip_space(&mut chars);
    if chars.peek().is_none() {
        // An empty value: no schemas at all.
        return Some(elements);
    }
    loop {
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    '"' => break,
                    c => name.push(c),
                }
            }
            if name.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() || c == '"' {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
            if name.is_empty() {
                return None;
            }
        }
        elements.push(name);
        skip_space(&mut chars);
        match chars.next() {
            None => return Some(elements),
            Some(',') => skip_space(&mut chars),
            Some(_) => return None,
        }
    }
}

/// The unqualified name when the call may resolve to a built-in (`f` or `pg_catalog.f`).
fn builtin_name(qualified: &str) -> Option<&str> {
    match qualified.split_once('.') {
        None => Some(qualified),
        Some(("pg_catalog", rest)) if !rest.contains('.') => Some(rest),
        Some(_) => None,
    }
}

/// Whether calling `qualified` (as the parser spelled it) is known not to write.
pub fn is_read_only(qualified: &str) -> bool {
    builtin_name(qualified).is_some_and(|name| READ_ONLY_FUNCTIONS.contains(&name))
}

/// Whether `qualified` runs SQL text. Matched by the last name part: `public.dblink` is the
/// dblink extension installed in `public`, not a different function.
pub fn runs_sql_text(qualified: &str) -> bool {
    let name = qualified.rsplit('.').next().unwrap_or(qualified);
    DYNAMIC_SQL_FUNCTIONS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_do_not_overlap() {
        for f in DYNAMIC_SQL_FUNCTIONS {
            assert!(!READ_ONLY_FUNCTIONS.contains(f), "{f} is on both lists");
        }
    }

    #[test]
    fn dangerous_builtins_are_not_read_only() {
        for f in [
            "set_config",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_reload_conf",
            "lo_import",
            "lo_export",
            "lo_unlink",
            "pg_read_file",
            "pg_ls_dir",
            "nextval",
            "setval",
            "pg_advisory_lock",
            "pg_sleep",
            "pg_notify",
            "pg_rotate_logfile",
            "txid_current",
        ] {
            assert!(!is_read_only(f), "{f} must not be read-only");
        }
    }

    #[test]
    fn sql_running_and_side_effect_builtins_are_not_read_only() {
        for f in DYNAMIC_SQL_FUNCTIONS {
            assert!(!is_read_only(f), "{f}");
            assert!(runs_sql_text(f), "{f}");
        }
        for f in [
            "query_to_xml",
            "query_to_xml_and_xmlschema",
            "cursor_to_xml",
            "table_to_xml",
            "table_to_xml_and_xmlschema",
            "database_to_xml",
            "schema_to_xml",
            "ts_stat",
            "xpath_table",
            "dblink",
            "dblink_exec",
            "set_config",
        ] {
            assert!(runs_sql_text(f), "{f} must be dynamic");
        }
        for f in [
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "pg_stat_file",
            "lo_import",
            "lo_export",
            "lo_create",
            "lo_open",
            "lo_put",
            "lo_get",
            "lo_from_bytea",
            "lo_truncate",
            "pg_notify",
            "pg_advisory_lock",
            "pg_advisory_xact_lock",
            "pg_advisory_lock_shared",
            "pg_try_advisory_lock",
            "pg_advisory_unlock_all",
            "nextval",
            "setval",
            "array_in",
            "record_in",
            "pg_current_xact_id",
            "pg_logical_slot_get_changes",
            "pg_create_logical_replication_slot",
            "pg_switch_wal",
            "pg_promote",
            "pg_import_system_collations",
        ] {
            assert!(!is_read_only(f), "{f} must not be read-only");
        }
    }

    #[test]
    fn false_positive_builtins_are_read_only() {
        for f in [
            "int4range",
            "int8range",
            "numrange",
            "tsrange",
            "tstzrange",
            "daterange",
            "int4multirange",
            "datemultirange",
            "pg_current_snapshot",
            "pg_blocking_pids",
            "pg_sequence_last_value",
        ] {
            assert!(is_read_only(f), "{f}");
        }
    }

    #[test]
    fn operators_and_types() {
        let v = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert!(is_builtin_operator(&v(&["="])));
        assert!(is_builtin_operator(&v(&["pg_catalog", "||"])));
        assert!(is_builtin_operator(&v(&["BETWEEN"])));
        assert!(!is_builtin_operator(&v(&["rt", "+"])));
        assert!(!is_builtin_operator(&v(&["public", "="])));
        assert!(!is_builtin_operator(&v(&["==="])));
        assert!(!is_builtin_operator(&v(&["pg_catalog", "==="])));
        assert!(is_builtin_type(&v(&["text"])));
        assert!(is_builtin_type(&v(&["pg_catalog", "int4"])));
        assert!(is_builtin_type(&v(&["_int4"])));
        assert!(is_builtin_type(&v(&["int4range"])));
        assert!(!is_builtin_type(&v(&["public", "text"])));
        assert!(!is_builtin_type(&v(&["citext"])));
        assert!(!is_builtin_type(&v(&["_citext"])));
        assert!(!is_builtin_type(&v(&["Text"])));
        assert!(!is_builtin_type(&v(&[])));
    }

    #[test]
    fn search_path_values() {
        for trusted in [
            "",
            "public",
            "\"$user\", public",
            "pg_catalog",
            "pg_catalog, rt",
            "PG_CATALOG, rt",
            "  pg_catalog ,rt  ",
            "rt",
            "rt, public",
            "\"PG_CATALOG\", rt",
            "\"pg_catalog, x\"",
            "\"a\"\"b\", pg_catalog_x",
        ] {
            assert!(search_path_trusts_builtins(trusted), "{trusted:?}");
        }
        for untrusted in [
            "rt, pg_catalog",
            "rt,pg_catalog",
            "\"$user\", public, pg_catalog",
            "rt, PG_CATALOG",
            "rt, \"pg_catalog\"",
            "pg_temp, pg_catalog",
            // does not split: fails closed
            "rt,, pg_catalog",
            "\"unterminated, pg_catalog",
            "rt pg_catalog",
            "\"\", pg_catalog",
        ] {
            assert!(!search_path_trusts_builtins(untrusted), "{untrusted:?}");
        }
    }

    #[test]
    fn qualification_rules() {
        assert!(is_read_only("lower"));
        assert!(is_read_only("pg_catalog.lower"));
        assert!(!is_read_only("public.lower"));
        assert!(!is_read_only("pg_catalog.x.lower"));
        assert!(runs_sql_text("public.dblink_exec"));
        assert!(!runs_sql_text("lower"));
    }
}
