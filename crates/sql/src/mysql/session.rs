//! Session state that changes how the server reads later statements (`sql_mode`) or what it lets
//! them do (the transaction access mode), as far as the text of a command can tell.
//!
//! Our lexer knows MySQL's default lexing only. `sql_mode` flags such as `ANSI_QUOTES` (`"` quotes
//! identifiers, so a backslash no longer escapes it) and `NO_BACKSLASH_ESCAPES` (a backslash ends
//! nothing), and MariaDB's combination modes (`ORACLE`, `MSSQL`, `DB2`, `POSTGRESQL`, `MAXDB`,
//! `ANSI`, which include `ANSI_QUOTES` and, for `ORACLE`, switch to another grammar) would make
//! the server split and quote statements differently from us. So the rule is an allow-list:
//! a session may only run with the flags in [`SAFE_SQL_MODES`]. The classifier fails closed on a
//! `SET` that could leave that list, and the adapter reads the effective mode back from the
//! server after every command that [`may_change_sql_mode`] (whatever the rules allowed), closing
//! the session when it is not supported.

use super::classify::bare_words;
use super::lexer::lex;

/// `sql_mode` flags that leave quoting, escapes, comments and statement boundaries as MySQL's
/// defaults (the rules our lexer implements). Everything else, including flags a future server
/// adds, is unsupported (fail closed).
pub const SAFE_SQL_MODES: &[&str] = &[
    "REAL_AS_FLOAT",
    "PIPES_AS_CONCAT",
    "IGNORE_SPACE",
    "IGNORE_BAD_TABLE_OPTIONS",
    "ONLY_FULL_GROUP_BY",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_DIR_IN_CREATE",
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
    "NO_FIELD_OPTIONS",
    "MYSQL323",
    "MYSQL40",
    "NO_AUTO_VALUE_ON_ZERO",
    "STRICT_TRANS_TABLES",
    "STRICT_ALL_TABLES",
    "NO_ZERO_IN_DATE",
    "NO_ZERO_DATE",
    "ALLOW_INVALID_DATES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "TRADITIONAL",
    "NO_AUTO_CREATE_USER",
    "HIGH_NOT_PRECEDENCE",
    "NO_ENGINE_SUBSTITUTION",
    "PAD_CHAR_TO_FULL_LENGTH",
    "EMPTY_STRING_IS_NULL",
    "SIMULTANEOUS_ASSIGNMENT",
    "TIME_ROUND_FRACTIONAL",
    "TIME_TRUNCATE_FRACTIONAL",
];

/// Whether a `sql_mode` value (comma-separated flags, as `@@sql_mode` returns it) leaves lexing
/// as our lexer knows it: every flag is on [`SAFE_SQL_MODES`] (case-insensitive, no spaces: the
/// server does not trim them either). The empty mode is supported.
pub fn sql_mode_is_supported(mode: &str) -> bool {
    mode.split(',')
        .filter(|m| !m.is_empty())
        .all(|m| SAFE_SQL_MODES.iter().any(|s| s.eq_ignore_ascii_case(m)))
}

/// The flags of `mode` that are not supported, upper-cased (for messages).
pub fn unsupported_sql_modes(mode: &str) -> Vec<String> {
    mode.split(',')
        .filter(|m| !m.is_empty())
        .filter(|m| !SAFE_SQL_MODES.iter().any(|s| s.eq_ignore_ascii_case(m)))
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Leading keywords of statements that cannot change the session's `sql_mode` unless their text
/// names it. Stored functions and procedures run under their own saved mode and the server
/// restores the caller's on return, so calls inside these statements do not change it.
const KEEPS_SQL_MODE: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "SHOW",
    "DESCRIBE",
    "DESC",
    "EXPLAIN",
    "START",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "USE",
    "WITH",
    "TABLE",
    "VALUES",
    "HANDLER",
    "SET",
    "PREPARE",
    "DEALLOCATE",
    "DROP",
    "CREATE",
    "ALTER",
    "TRUNCATE",
    "LOCK",
    "UNLOCK",
    "KILL",
    "ANALYZE",
    "CHECK",
    "CHECKSUM",
    "OPTIMIZE",
    "REPAIR",
    "FLUSH",
    "GRANT",
    "REVOKE",
    "LOAD",
    "HELP",
    "DO",
    "RENAME",
];

/// Whether one statement (comments removed, executable comments inlined) may change the
/// session's `sql_mode`: its text names `sql_mode` anywhere (strings and quoted identifiers
/// included), it runs SQL the text does not show (`EXECUTE`, `EXECUTE IMMEDIATE`, `CALL`,
/// compound statements), or it is not a statement known to keep the mode.
pub(crate) fn segment_may_change_sql_mode(segment: &str) -> bool {
    if segment.to_ascii_lowercase().contains("sql_mode") {
        return true;
    }
    let words = bare_words(segment);
    if words
        .iter()
        .any(|w| matches!(w.as_str(), "EXECUTE" | "IMMEDIATE" | "CALL"))
    {
        return true;
    }
    match words.first().map(String::as_str) {
        // `BEGIN [WORK]` starts a transaction; `BEGIN NOT ATOMIC ...` is a compound statement.
        Some("BEGIN") => words.len() > 2 || words.get(1).is_some_and(|w| w != "WORK"),
        Some(w) => !KEEPS_SQL_MODE.contains(&w),
        None => false,
    }
}

/// Whether a command (one or more statements) may change the session's `sql_mode`, so the
/// adapter must read the effective mode back before it lexes the next command. Text our lexer
/// cannot read may do anything.
pub fn may_change_sql_mode(sql: &str) -> bool {
    match lex(sql) {
        Ok(lexed) => lexed
            .segments
            .iter()
            .any(|s| segment_may_change_sql_mode(s)),
        Err(_) => true,
    }
}

/// Whether a command could switch a read-only session back to read-write: it names
/// `tx_read_only`/`transaction_read_only` (or any `*read_only*` variable) anywhere, asks for
/// `READ WRITE` (`SET [SESSION] TRANSACTION ... READ WRITE`, `START TRANSACTION READ WRITE`), or
/// runs SQL the text does not show (`PREPARE` from a variable or with such text, `EXECUTE`,
/// `CALL`, compound statements). Text our lexer cannot read may do anything.
pub fn may_turn_off_read_only(sql: &str) -> bool {
    let Ok(lexed) = lex(sql) else {
        return true;
    };
    lexed.segments.iter().any(|segment| {
        let lower = segment.to_ascii_lowercase();
        let words = bare_words(segment);
        // Reading the variable is harmless: SELECT/SHOW cannot assign a system variable.
        let reads_only = matches!(
            words.first().map(String::as_str),
            Some("SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "HELP")
        ) && !words.iter().any(|w| w == "EXECUTE" || w == "IMMEDIATE");
        if lower.contains("read_only") && !reads_only {
            return true;
        }
        let read_write = words
            .windows(2)
            .any(|p| matches!(p, [a, b] if a == "READ" && b == "WRITE"));
        if read_write {
            return true;
        }
        match words.first().map(String::as_str) {
            // The prepared text is SQL too: look at it whole (strings included).
            Some("PREPARE") => {
                lower.contains("write") || !(lower.contains('\'') || lower.contains('"'))
            }
            Some("EXECUTE" | "CALL" | "XA") => true,
            Some("BEGIN") => words.len() > 2 || words.get(1).is_some_and(|w| w != "WORK"),
            _ => words.iter().any(|w| w == "EXECUTE" || w == "IMMEDIATE"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_modes() {
        assert!(sql_mode_is_supported(""));
        assert!(sql_mode_is_supported(
            "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
        ));
        assert!(sql_mode_is_supported("pipes_as_concat"));
        for bad in [
            "ANSI_QUOTES",
            "NO_BACKSLASH_ESCAPES",
            "PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ORACLE,NO_KEY_OPTIONS",
            "ORACLE",
            "MSSQL",
            "ANSI",
            "SOMETHING_NEW",
            " STRICT_TRANS_TABLES",
        ] {
            assert!(!sql_mode_is_supported(bad), "{bad}");
        }
        assert_eq!(
            unsupported_sql_modes("STRICT_TRANS_TABLES,ansi_quotes,ORACLE"),
            vec!["ANSI_QUOTES", "ORACLE"]
        );
    }

    /// No two supported flags joined without a comma spell an unsupported one, so a value built
    /// as `CONCAT(@@sql_mode, 'FLAG')` cannot assemble one from a supported current mode.
    #[test]
    fn supported_flags_do_not_join_into_unsupported_ones() {
        let unsafe_modes = [
            "ANSI",
            "ANSI_QUOTES",
            "NO_BACKSLASH_ESCAPES",
            "ORACLE",
            "MSSQL",
            "DB2",
            "POSTGRESQL",
            "MAXDB",
        ];
        for a in SAFE_SQL_MODES {
            for b in SAFE_SQL_MODES {
                let joined = format!("{a}{b}");
                assert!(!unsafe_modes.contains(&joined.as_str()), "{joined}");
            }
        }
    }

    #[test]
    fn what_may_change_the_mode() {
        for sql in [
            "SET sql_mode = 'ORACLE'",
            "SET @@SESSION.`sql_mode` = ''",
            "/*!40101 SET SQL_MODE='MSSQL' */",
            "SET STATEMENT sql_mode='' FOR SELECT 1",
            "EXECUTE s",
            "EXECUTE IMMEDIATE @q",
            "CALL p()",
            "BEGIN NOT ATOMIC SELECT 1",
            "SELECT 1; EXECUTE s",
            "XA START 'x'",
            "something unknown",
            "SELECT 'unterminated",
        ] {
            assert!(may_change_sql_mode(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SELECT * FROM t WHERE a = 'x'",
            "INSERT INTO t VALUES (1)",
            "SET NAMES utf8mb4",
            "BEGIN",
            "BEGIN WORK",
            "SHOW TABLES",
            "SET autocommit = 0",
        ] {
            assert!(!may_change_sql_mode(sql), "{sql}");
        }
    }

    #[test]
    fn what_may_turn_off_read_only() {
        for sql in [
            "SET SESSION TRANSACTION READ WRITE",
            "SET TRANSACTION READ WRITE",
            "set session transaction isolation level read committed, read write",
            "START TRANSACTION READ WRITE",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE",
            "SET tx_read_only = 0",
            "SET @@session.transaction_read_only = OFF",
            "SET `tx_read_only` = DEFAULT",
            "SET STATEMENT transaction_read_only=0 FOR INSERT INTO t VALUES (1)",
            "/*!SET SESSION TRANSACTION READ/**/WRITE*/",
            "SET SESSION TRANSACTION READ -- x\nWRITE",
            "PREPARE s FROM 'SET SESSION TRANSACTION READ WRITE'",
            "PREPARE s FROM @q",
            "EXECUTE s",
            "CALL p()",
            "SELECT 1; SET SESSION TRANSACTION READ WRITE",
            "SELECT 'unterminated",
        ] {
            assert!(may_turn_off_read_only(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SELECT 'read write' AS x",
            "SELECT @@session.tx_read_only, @@sql_mode",
            "SET SESSION TRANSACTION READ ONLY",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "START TRANSACTION READ ONLY",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "BEGIN",
            "PREPARE s FROM 'SELECT 1'",
        ] {
            assert!(!may_turn_off_read_only(sql), "{sql}");
        }
    }
}
