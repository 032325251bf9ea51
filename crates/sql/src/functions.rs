//! Which function calls may appear in a read.
//!
//! A function is an arbitrary program: `select f()` can delete rows, terminate backends or
//! write files. We cannot see inside functions, so a call is treated as a possible write unless
//! the function is on [`READ_ONLY_FUNCTIONS`], a list of built-ins that only compute values or
//! read catalogs. The list is deliberately a plain array that reviewers can audit line by line.
//!
//! Names are matched after the parser lower-cased unquoted identifiers. A call qualified with a
//! schema other than `pg_catalog` (`public.lower(x)`) is never on the list: a user-defined
//! function may shadow a built-in name. Limitation: a session that puts another schema before
//! `pg_catalog` in `search_path` and defines e.g. `lower(text)` there can still hide a write
//! behind an allowlisted name; catching that needs the catalog, which the classifier has no
//! access to.

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
    "pg_inheritance_tree", "array_in", "regclass", "regtype", "oid", "pg_stat_get_numscans",
    "pg_stat_get_live_tuples", "pg_stat_get_dead_tuples", "pg_get_replica_identity_index",
    "pg_get_acl", "pg_basetype",
];

/// Functions that execute SQL given to them as text (or open a connection that does).
/// They are never read-only and additionally mark the statement `dynamic_sql`.
pub const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
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
    fn qualification_rules() {
        assert!(is_read_only("lower"));
        assert!(is_read_only("pg_catalog.lower"));
        assert!(!is_read_only("public.lower"));
        assert!(!is_read_only("pg_catalog.x.lower"));
        assert!(runs_sql_text("public.dblink_exec"));
        assert!(!runs_sql_text("lower"));
    }
}
