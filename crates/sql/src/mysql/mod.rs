//! Classification of MySQL/MariaDB statements (sqlparser's MySQL dialect behind a lexer with
//! MySQL's own rules; see [`lexer`] for why).
//!
//! Decisions worth knowing:
//! - Executable comments (`/*! */`, `/*!50001 */`, `/*M! */`) are SQL: their content is
//!   classified whatever the version number says (more text seen can only fail closed).
//! - Multi-statements are split at top-level `;` by our lexer; each piece must parse to exactly
//!   one statement, else the whole command is `unparsed`.
//! - `PREPARE s FROM '...'` is the literal's classification plus `dynamic_sql`; `PREPARE s FROM
//!   @var`, `EXECUTE`, `CALL` and `XA` are opaque (`dynamic_sql`, may write). `HANDLER` reads its
//!   table; `LOAD DATA`/`LOAD XML` is a `copy` that writes; `SELECT ... INTO OUTFILE/DUMPFILE`
//!   writes; `REPLACE` and `INSERT ... ON DUPLICATE KEY UPDATE` are `insert`s.
//! - `SET` of `sql_mode` to anything not provably made of the flags on
//!   [`session::SAFE_SQL_MODES`] (an allow-list: `ORACLE`, `MSSQL`, `ANSI`, `ANSI_QUOTES`,
//!   `NO_BACKSLASH_ESCAPES`, `DEFAULT`, variables, unknown flags are refused), `SET STATEMENT
//!   sql_mode=... FOR`, or of a client character set outside [`classify::SAFE_CHARSETS`], is
//!   `dynamic_sql`: after it the server would lex later statements differently from us. In a
//!   multi-statement, nothing may follow a statement that may change `sql_mode`
//!   ([`session::may_change_sql_mode`]) unless it is such a provably safe `SET`.
//! - Row and table locks (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`, `LOCK TABLES`) are
//!   operation `lock`, which writes.
//! - Names are lower-cased (MySQL table names may be case-sensitive; matching more is the safe
//!   direction). Functions not on [`functions::READ_ONLY_FUNCTIONS`] make a statement a write.

mod classify;
pub mod copies;
pub mod functions;
mod lexer;
pub mod session;
pub mod shape;
pub mod state;

pub use classify::classify_mysql;
pub use copies::{copy_sources, CopySources};
pub use session::{
    may_change_sql_mode, may_turn_off_read_only, sql_mode_is_supported, unsupported_sql_modes,
};
pub use shape::{result_shape, FromRelation, Item, ResultKind, ResultShape};
pub use state::stores_computed_state;

use airlock_core::Classification;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Character-set names whose multi-byte encodings cannot hide a quote or backslash byte.
pub fn is_safe_charset(name: &str) -> bool {
    classify::SAFE_CHARSETS.contains(&name.to_ascii_lowercase().as_str())
}

/// Longer texts are classified but not cached.
const MAX_CACHED_TEXT: usize = 16 * 1024;

/// Classifies MySQL text with a bounded cache shared by all sessions.
pub struct MySqlClassifier {
    map: Mutex<HashMap<String, Arc<Classification>>>,
    capacity: usize,
}

impl airlock_core::Classifier for MySqlClassifier {
    fn classify(&self, text: &str) -> Arc<Classification> {
        MySqlClassifier::classify(self, text)
    }
}

impl MySqlClassifier {
    pub fn new(capacity: usize) -> Self {
        MySqlClassifier {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        if self.capacity == 0 || sql.len() > MAX_CACHED_TEXT {
            return Arc::new(classify_mysql(sql));
        }
        let key = cache_key(sql);
        if let Some(hit) = self.lock().get(&key) {
            return Arc::clone(hit);
        }
        let c = Arc::new(classify_mysql(sql));
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, Arc::clone(&c));
        c
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Classification>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `N` + text with integer literals replaced, or `E` + exact text.
///
/// Sound because no classification depends on an integer's value: relations, functions and
/// operations come from identifiers and keywords. Strings are kept (their content matters for
/// `PREPARE ... FROM '...'` and `SET sql_mode = '...'`), and any text with a comment is keyed
/// exactly (executable comments carry version digits).
pub(crate) fn cache_key(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 1);
    out.push('N');
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '@';
    while let Some(&c) = chars.get(i) {
        match c {
            '\'' | '"' | '`' => {
                let start = i;
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return exact(sql),
                        Some('\\') if c != '`' => i += 2,
                        Some(&q) if q == c => {
                            if chars.get(i + 1) == Some(&c) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
                out.extend(chars.get(start..i).unwrap_or_default());
            }
            '#' => return exact(sql),
            '-' if chars.get(i + 1) == Some(&'-') => return exact(sql),
            '/' if chars.get(i + 1) == Some(&'*') => return exact(sql),
            d if d.is_ascii_digit() => {
                let start = i;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                let before = start
                    .checked_sub(1)
                    .and_then(|b| chars.get(b))
                    .is_some_and(|&b| ident(b));
                let after = chars.get(i).is_some_and(|&a| ident(a));
                if before || after {
                    out.extend(chars.get(start..i).unwrap_or_default());
                } else {
                    out.push('\u{1}');
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn exact(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 1);
    out.push('E');
    out.push_str(sql);
    out
}

/// Result character sets the content detectors can read (ASCII-compatible), and the values
/// that leave results unconverted (drivers send `SET character_set_results = NULL`).
const READABLE_RESULT_CHARSETS: &[&str] = &[
    "utf8", "utf8mb3", "utf8mb4", "latin1", "ascii", "binary", "null", "default",
];

/// In a masked session, the server-side reports that print values of the rows a statement
/// touched, outside any result column lineage can follow (round-9 review): a query plan
/// (`EXPLAIN`/`DESCRIBE` of a statement, `ANALYZE` of a statement, `SHOW EXPLAIN|ANALYZE`,
/// `EXPLAIN FOR CONNECTION`: MariaDB substitutes const-table row values into printed
/// conditions, and `SHOW WARNINGS` after an `EXPLAIN` gives the rewritten query), the optimizer
/// trace (`optimizer_trace`: the same values), and result character sets the detectors cannot
/// read (`character_set_results = utf16|utf32|ucs2` hides every value from them). Returns what
/// the statement reaches, or `None`. Text the lexer cannot read counts as reaching them.
pub fn reaches_row_reports(sql: &str) -> Option<&'static str> {
    let Ok(lexed) = lexer::lex(sql) else {
        return Some("text the gateway cannot read");
    };
    for segment in &lexed.segments {
        let words = classify::bare_words(segment);
        let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        if words.iter().any(|w| w == "OPTIMIZER_TRACE") {
            return Some("the optimizer trace");
        }
        let plan = match word(0) {
            "EXPLAIN" => true,
            "SHOW" => matches!(word(1), "EXPLAIN" | "ANALYZE"),
            // `DESCRIBE t` lists a table's columns; `DESCRIBE SELECT …` is an EXPLAIN.
            "DESCRIBE" | "DESC" => is_statement_word(word(1)),
            // `ANALYZE TABLE t` updates statistics; `ANALYZE SELECT …` runs and explains.
            "ANALYZE" => !matches!(word(1), "TABLE" | "TABLES" | "LOCAL" | "NO_WRITE_TO_BINLOG"),
            _ => false,
        };
        if plan {
            return Some("a query plan (it prints values of the rows it reads)");
        }
        if let Some(at) = words.iter().position(|w| w == "CHARACTER_SET_RESULTS") {
            let value = words.get(at + 1).map(|w| w.to_ascii_lowercase());
            let readable = value
                .as_deref()
                .is_some_and(|v| READABLE_RESULT_CHARSETS.contains(&v))
                && words
                    .iter()
                    .filter(|w| *w == "CHARACTER_SET_RESULTS")
                    .count()
                    == 1;
            if !readable {
                return Some("a result character set the content detectors cannot read");
            }
        }
    }
    None
}

fn is_statement_word(w: &str) -> bool {
    matches!(
        w,
        "SELECT"
            | "WITH"
            | "INSERT"
            | "UPDATE"
            | "DELETE"
            | "REPLACE"
            | "TABLE"
            | "VALUES"
            | "FORMAT"
            | "EXTENDED"
            | "PARTITIONS"
            | "FOR"
            | "ANALYZE"
    )
}

/// Whether the text contains `LOAD DATA LOCAL` / `LOAD XML LOCAL`: the server would ask the
/// *client* for a file from the client's machine.
pub fn reads_client_file(sql: &str) -> bool {
    let Ok(lexed) = lexer::lex(sql) else {
        return false;
    };
    lexed.segments.iter().any(|s| {
        let lower = s.to_ascii_lowercase();
        let mut words = lower.split_whitespace();
        words.next() == Some("load") && words.take(3).any(|w| w == "local")
    })
}

/// A `KILL` statement as the gateway must map it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Not a KILL statement.
    None,
    /// `KILL [CONNECTION | QUERY] <id>`: `id` is the connection id the client saw.
    Thread { query_only: bool, id: u64 },
    /// `KILL USER ...`, `KILL QUERY ID ...`, KILL in a multi-statement: ids the client cannot
    /// know through the gateway, or that reach other sessions.
    Unsupported,
}

pub fn parse_kill(sql: &str) -> Kill {
    let Ok(lexed) = lexer::lex(sql) else {
        return Kill::None;
    };
    let kills = lexed
        .segments
        .iter()
        .filter(|s| {
            s.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("kill"))
        })
        .count();
    if kills == 0 {
        return Kill::None;
    }
    if kills > 1 || lexed.segments.len() > 1 {
        return Kill::Unsupported;
    }
    let Some(seg) = lexed.segments.first() else {
        return Kill::None;
    };
    let words: Vec<String> = seg
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let mut i = 1;
    if matches!(words.get(i).map(String::as_str), Some("hard" | "soft")) {
        i += 1;
    }
    let mut query_only = false;
    match words.get(i).map(String::as_str) {
        Some("query") => {
            query_only = true;
            i += 1;
        }
        Some("connection") => i += 1,
        _ => {}
    }
    match (words.get(i), words.get(i + 1)) {
        (Some(id), None) => match id.parse::<u64>() {
            Ok(id) => Kill::Thread { query_only, id },
            Err(_) => Kill::Unsupported,
        },
        _ => Kill::Unsupported,
    }
}

/// Most binary operators one statement may chain before it is refused unparsed. sqlparser
/// parses `1+1+…+1` without recursion but builds a tree as deep as the chain, and walking or
/// dropping a tree of ~35,000 levels overflowed a worker's stack and took the gateway down.
pub const MAX_OPERATOR_CHAIN: usize = 5_000;

/// Most set operations (`UNION`, `INTERSECT`, `EXCEPT`, `MINUS`) one statement may have. They
/// build a left-nested tree like operators, with larger frames per level: 10,000 arms (190 KB)
/// overflowed a 2 MiB worker stack and aborted the gateway (outside review, round 3); in a debug
/// build ~6,500 arms overflow a bare 2 MiB thread. 1,000 leaves room for the other bounds.
pub const MAX_SET_OPERATIONS: usize = 1_000;

/// Most `JOIN`s one statement may have. A `JOIN` without `ON`/`USING` makes sqlparser recurse
/// to look for a nested join's condition, about 7 KB of stack per level in a debug build (300
/// overflow a 2 MiB thread). MySQL and MariaDB refuse more than 61 tables in one join anyway.
pub const MAX_JOINS: usize = 64;

/// Whether `segment` is small enough to parse: within the classifier's byte bound, with at
/// most [`MAX_OPERATOR_CHAIN`] operators, [`MAX_SET_OPERATIONS`] set operations and
/// [`MAX_JOINS`] joins outside quotes (a quote-aware count: text in string literals and quoted
/// identifiers does not count). Every other shape of a ~200 KB input is either flat in
/// sqlparser's tree (lists: `IN`, arguments, `CASE WHEN`, `VALUES` rows) or nested through its
/// recursion limit (parentheses, sub-queries, function calls, prefix operators):
/// `tests/mysql_stack.rs` runs each on a 2 MiB stack.
pub(crate) fn check_parse_bounds(segment: &str) -> Result<(), String> {
    if segment.len() > crate::MAX_CLASSIFIED_BYTES {
        return Err(format!(
            "statement text of {} bytes is over the classifier's limit of {} bytes",
            segment.len(),
            crate::MAX_CLASSIFIED_BYTES
        ));
    }
    let bytes = segment.as_bytes();
    let mut operators = 0usize;
    let mut set_operations = 0usize;
    let mut joins = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match quote {
            Some(q) => {
                if b == b'\\' && q != b'`' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' | b'`' => quote = Some(b),
                b'+' | b'-' | b'*' | b'/' | b'%' | b'&' | b'|' | b'^' | b'=' | b'<' | b'>' => {
                    operators += 1
                }
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                    let start = i;
                    while bytes
                        .get(i + 1)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$')
                    {
                        i += 1;
                    }
                    let word = bytes.get(start..=i).unwrap_or_default();
                    if [
                        &b"and"[..],
                        b"or",
                        b"xor",
                        b"div",
                        b"mod",
                        b"like",
                        b"regexp",
                        b"rlike",
                        b"is",
                        // `x IN (subquery) IN (subquery) …` chains 20,000 deep took the
                        // database itself down (outside review, round 5).
                        b"in",
                        b"between",
                        b"sounds",
                    ]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                    {
                        operators += 1;
                    } else if [&b"union"[..], b"intersect", b"except", b"minus"]
                        .iter()
                        .any(|k| word.eq_ignore_ascii_case(k))
                    {
                        set_operations += 1;
                    } else if word.eq_ignore_ascii_case(b"join")
                        || word.eq_ignore_ascii_case(b"straight_join")
                    {
                        joins += 1;
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    if operators > MAX_OPERATOR_CHAIN {
        return Err(format!(
            "statement with {operators} operators is over the classifier's limit of {MAX_OPERATOR_CHAIN}"
        ));
    }
    if set_operations > MAX_SET_OPERATIONS {
        return Err(format!(
            "statement with {set_operations} set operations (UNION, INTERSECT, EXCEPT) is over the classifier's limit of {MAX_SET_OPERATIONS}"
        ));
    }
    if joins > MAX_JOINS {
        return Err(format!(
            "statement with {joins} joins is over the classifier's limit of {MAX_JOINS}"
        ));
    }
    Ok(())
}

/// `TABLE t [ORDER BY …] [LIMIT …]` is `SELECT * FROM t …` (MySQL 8, MariaDB 10.11 does not know
/// it); sqlparser does not parse it as a statement of its own, so it is rewritten before parsing.
pub(crate) fn table_statement_as_select(segment: &str) -> Option<String> {
    let trimmed = segment.trim_start();
    let keyword = trimmed.get(..5)?;
    let rest = trimmed.get(5..)?;
    if !keyword.eq_ignore_ascii_case("table") || !rest.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    Some(format!("SELECT * FROM{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys() {
        assert_eq!(cache_key("select 1"), cache_key("select 22"));
        assert_ne!(cache_key("select t1"), cache_key("select t2"));
        assert_ne!(cache_key("select 'a'"), cache_key("select 'b'"));
        assert!(cache_key("select 1 /*!5 x */").starts_with('E'));
        assert_ne!(cache_key("select 1e5"), cache_key("select 1e6"));
    }

    #[test]
    fn kills() {
        assert_eq!(
            parse_kill("KILL QUERY 17"),
            Kill::Thread {
                query_only: true,
                id: 17
            }
        );
        assert_eq!(
            parse_kill("kill 5;"),
            Kill::Thread {
                query_only: false,
                id: 5
            }
        );
        assert_eq!(parse_kill("KILL USER bob"), Kill::Unsupported);
        assert_eq!(parse_kill("select 1; kill 3"), Kill::Unsupported);
        assert_eq!(parse_kill("select 'kill 3'"), Kill::None);
        assert_eq!(
            parse_kill("/*!kill 3*/"),
            Kill::Thread {
                query_only: false,
                id: 3
            }
        );
    }

    #[test]
    fn local_infile() {
        assert!(reads_client_file(
            "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"
        ));
        assert!(reads_client_file(
            "/*! load data local infile 'x' into table t */"
        ));
        assert!(!reads_client_file("LOAD DATA INFILE 'x' INTO TABLE t"));
    }
}

#[cfg(test)]
mod row_report_tests {
    use super::reaches_row_reports;

    #[test]
    fn plans_traces_and_unreadable_result_charsets_are_found() {
        for sql in [
            "explain format=json select * from customers where id = 1",
            "EXPLAIN select 1",
            "explain extended select * from c",
            "describe select * from customers",
            "desc format=json select 1",
            "analyze select * from customers",
            "analyze format=json select 1",
            "show explain for 12",
            "show analyze for 12",
            "set optimizer_trace='enabled=on'",
            "select trace from information_schema.OPTIMIZER_TRACE",
            "set statement optimizer_trace='enabled=on' for select 1",
            "set character_set_results = utf16",
            "SET @@session.character_set_results = 'utf32'",
            "set character_set_results = @cs",
            "set statement character_set_results=ucs2 for select body from notes",
            "set character_set_results = utf8mb4, character_set_results = utf16",
            "select 1; explain select 2",
        ] {
            assert!(reaches_row_reports(sql).is_some(), "{sql}");
        }
        for sql in [
            "select 'explain' as e, 'optimizer_trace' as t",
            "describe customers",
            "desc customers email",
            "analyze table customers",
            "select * from t order by a desc",
            "select a from t group by a desc with rollup",
            "SET character_set_results = NULL",
            "set character_set_results = utf8mb4",
            "SET NAMES utf8mb4",
        ] {
            assert_eq!(reaches_row_reports(sql), None, "{sql}");
        }
    }
}
