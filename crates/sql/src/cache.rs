//! A shared classification cache keyed by literal-normalized text.
//!
//! Workloads repeat the same statement with different constants (pgbench -S sends
//! `SELECT abalance FROM pgbench_accounts WHERE aid = 12345;` with a new number each time) and a
//! full parse costs tens of microseconds. The cache key replaces simple literals by a
//! placeholder so all those texts share one entry.
//!
//! Why this is sound: the classification never depends on a literal's *value*, with one
//! exception handled by not caching: a `SET` (`SET search_path = 'a', 'pg_catalog'` is dynamic,
//! `SET search_path = 'pg_catalog', 'a'` is not). Two texts with the same normalized key have
//! the same tree shape, so if one is a `SET` statement both are, and a classification holding
//! a `set` operation is never stored. Otherwise: Relations,
//! functions, operations and flags come from identifiers, keywords and the tree's shape; the one
//! place a value could matter (`EXPLAIN (ANALYZE off)`) is deliberately classified without
//! looking at the value, and the one place emptiness matters (`COPY t TO ''` parses like
//! `COPY t TO STDOUT`) is handled by keeping `''` in the key. What can depend on a literal is its *token class* (the grammar accepts
//! `FETCH 5` but not `FETCH 'a'` or `FETCH 1.5`), so integers, decimals and strings get distinct
//! placeholders, and integers too long to be sure they fit an int4 (which the lexer would turn
//! into a numeric token) are kept as written. The lexer below is deliberately small: whenever the
//! text contains anything whose lexing is subtle (comments, dollar quoting, backslashes,
//! non-ASCII, prefixed strings like `E'..'`, `U&'..'`, numbers glued to letters) the exact text is
//! the key, which is always sound.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use airlock_core::{Classification, Operation};

use crate::classify_pg;

const SHARDS: usize = 16;
/// Longer texts are classified but not cached: they are rarely repeated and would let a
/// client pin a lot of memory in the cache.
const MAX_CACHED_TEXT: usize = 16 * 1024;

/// Placeholders cannot occur in a normalized key otherwise: normalized keys are built only from
/// ASCII text, and exact keys live in a separate namespace (the first byte).
const INT_PLACEHOLDER: char = '\u{1}';
const DECIMAL_PLACEHOLDER: char = '\u{2}';
const STRING_PLACEHOLDER: char = '\u{3}';
/// Digit runs up to this length always fit an int4, so they lex as integers whatever the value.
const MAX_NORMALIZED_INT_DIGITS: usize = 9;

/// Classifies PostgreSQL text with a bounded cache shared by all sessions.
pub struct PgClassifier {
    shards: Vec<Mutex<HashMap<String, Arc<Classification>>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl airlock_core::Classifier for PgClassifier {
    fn classify(&self, text: &str) -> Arc<Classification> {
        PgClassifier::classify(self, text)
    }
}

impl PgClassifier {
    /// `capacity`: roughly how many distinct normalized statements to keep (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        PgClassifier {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        if self.per_shard == 0 || sql.len() > MAX_CACHED_TEXT {
            return Arc::new(classify_pg(sql));
        }
        let key = cache_key(sql);
        let shard_index = (self.hasher.hash_one(&key) as usize) % SHARDS;
        let Some(shard) = self.shards.get(shard_index) else {
            return Arc::new(classify_pg(sql));
        };
        if let Some(hit) = lock(shard).get(&key) {
            return Arc::clone(hit);
        }
        // Parse outside the lock: other sessions hitting this shard must not wait for it.
        let classified = Arc::new(classify_pg(sql));
        if depends_on_literal_values(&classified) {
            return classified;
        }
        let mut map = lock(shard);
        if map.len() >= self.per_shard {
            // Clearing one shard is crude but O(1) amortized and bounds memory; hot statements
            // come back after one miss.
            map.clear();
        }
        map.insert(key, Arc::clone(&classified));
        classified
    }

    /// Number of cached entries (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether the classification may differ between texts that differ only in literal values (see
/// the module documentation): any `SET` statement.
fn depends_on_literal_values(classification: &Classification) -> bool {
    classification
        .statements
        .iter()
        .any(|statement| statement.operation == Operation::Set)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a HashMap of finished values inconsistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `N` + normalized text, or `E` + exact text.
pub(crate) fn cache_key(sql: &str) -> String {
    match normalize(sql) {
        Some(normalized) => {
            let mut key = String::with_capacity(normalized.len() + 1);
            key.push('N');
            key.push_str(&normalized);
            key
        }
        None => {
            let mut key = String::with_capacity(sql.len() + 1);
            key.push('E');
            key.push_str(sql);
            key
        }
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// The text with simple literals replaced, or `None` when the text has anything unusual.
pub(crate) fn normalize(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    if !sql.is_ascii() || bytes.contains(&b'\\') || sql.contains("--") || sql.contains("/*") {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        if b.is_ascii_alphabetic() || b == b'_' {
            i = skip_while(bytes, i, is_ident_byte);
            // E'..', B'..', X'..', N'..', ident"..": prefixed literals or glued tokens.
            if matches!(bytes.get(i), Some(b'\'' | b'"')) {
                return None;
            }
            out.push_str(sql.get(start..i)?);
        } else if b == b'$' {
            // `$1` parameter; anything else is dollar quoting (or junk).
            i = skip_while(bytes, i + 1, |c| c.is_ascii_digit());
            if i == start + 1 || bytes.get(i).is_some_and(|&c| is_ident_byte(c)) {
                return None;
            }
            out.push_str(sql.get(start..i)?);
        } else if b.is_ascii_digit() {
            i = skip_while(bytes, i, |c| c.is_ascii_digit());
            let int_digits = i - start;
            let mut decimal = false;
            if bytes.get(i) == Some(&b'.') && bytes.get(i + 1) != Some(&b'.') {
                decimal = true;
                i = skip_while(bytes, i + 1, |c| c.is_ascii_digit());
            }
            if matches!(bytes.get(i), Some(b'e' | b'E')) {
                decimal = true;
                i += 1;
                if matches!(bytes.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                let exponent_start = i;
                i = skip_while(bytes, i, |c| c.is_ascii_digit());
                if i == exponent_start {
                    return None;
                }
            }
            // `123abc`, `0x1F`, `1_000`, `1.2.3`: leave to the exact key.
            if bytes.get(i).is_some_and(|&c| is_ident_byte(c) || c == b'.') {
                return None;
            }
            if decimal {
                out.push(DECIMAL_PLACEHOLDER);
            } else if int_digits <= MAX_NORMALIZED_INT_DIGITS {
                out.push(INT_PLACEHOLDER);
            } else {
                out.push_str(sql.get(start..i)?);
            }
        } else if b == b'\'' {
            // U&'..' (unicode escapes with a UESCAPE clause) must stay exact.
            if out.ends_with('&') {
                return None;
            }
            i = skip_quoted(bytes, i, b'\'')?;
            // The empty string stays: `COPY t TO ''` has the same tree as `COPY t TO STDOUT`
            // (an empty file name), so emptiness is the one property of a string the
            // classification can see.
            if i == start + 2 {
                out.push_str("''");
            } else {
                out.push(STRING_PLACEHOLDER);
            }
        } else if b == b'"' {
            if out.ends_with('&') {
                return None;
            }
            i = skip_quoted(bytes, i, b'"')?;
            out.push_str(sql.get(start..i)?);
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Some(out)
}

fn skip_while(bytes: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|&c| keep(c)) {
        i += 1;
    }
    i
}

/// Index just past the quoted token starting at `i` (doubled quotes are escapes), or `None` if
/// unterminated.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    i += 1;
    loop {
        match bytes.get(i) {
            None => return None,
            Some(&c) if c == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_key(a: &str, b: &str) -> bool {
        cache_key(a) == cache_key(b)
    }

    #[test]
    fn pgbench_select_shares_one_key() {
        assert!(same_key(
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 7;"
        ));
        assert!(same_key(
            "select * from t where name = 'bob'",
            "select * from t where name = 'it''s'"
        ));
        assert!(same_key("select 1.5", "select 2.75e-3"));
    }

    #[test]
    fn token_classes_stay_apart() {
        assert!(!same_key("fetch 5 from c", "fetch 'a' from c"));
        assert!(!same_key("fetch 5 from c", "fetch 1.5 from c"));
        assert!(!same_key("select 1", "select 12345678901"));
        assert!(!same_key("select * from t1", "select * from t2"));
        assert!(!same_key("select $1", "select $2"));
        assert!(!same_key("copy t to ''", "copy t to 'x'"));
        assert!(!same_key(r#"select "a1""#, r#"select "a2""#));
    }

    #[test]
    fn unusual_text_uses_the_exact_key() {
        for sql in [
            "select 1 -- c",
            "select /* c */ 1",
            "select $$x$$",
            "select $a$x$a$",
            "select E'\\x'",
            "select e'a'",
            "select x'ff'",
            "select U&'d!0061' uescape '!'",
            "select 'é'",
            "select 1abc",
            "select 0x1f",
            "select 1_000",
            "select 'unterminated",
        ] {
            assert!(normalize(sql).is_none(), "{sql} must not be normalized");
            assert!(cache_key(sql).starts_with('E'));
        }
    }

    #[test]
    fn exact_and_normalized_keys_cannot_collide() {
        // The exact text contains the placeholder character itself.
        let exact = format!("select {INT_PLACEHOLDER} é");
        assert_ne!(cache_key(&exact), cache_key("select 1 e"));
        assert!(cache_key(&exact).starts_with('E'));
    }

    #[test]
    fn shareable_between_sessions() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PgClassifier>();
        let classifier = Arc::new(PgClassifier::new(64));
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let classifier = Arc::clone(&classifier);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let c = classifier.classify(&format!("delete from t{n} where id = {i}"));
                        assert!(c.writes_data());
                    }
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().is_ok());
        }
        assert_eq!(classifier.len(), 4);
    }

    #[test]
    fn cache_hits_and_stays_bounded() {
        let classifier = PgClassifier::new(32);
        let first = classifier.classify("select * from a where id = 1");
        let second = classifier.classify("select * from a where id = 2");
        assert!(Arc::ptr_eq(&first, &second));
        for n in 0..500 {
            classifier.classify(&format!("select * from t{n}"));
        }
        assert!(
            classifier.len() <= 32 + SHARDS,
            "{} entries",
            classifier.len()
        );
        let uncached = PgClassifier::new(0);
        uncached.classify("select 1");
        assert!(uncached.is_empty());
    }

    #[test]
    fn set_values_are_not_shared_through_the_cache() {
        let classifier = PgClassifier::new(100);
        // Same normalized key, different meaning.
        assert_eq!(
            cache_key("SET search_path = 'pg_catalog', 'rt'"),
            cache_key("SET search_path = 'rt', 'pg_catalog'")
        );
        let safe = classifier.classify("SET search_path = 'pg_catalog', 'rt'");
        assert!(!safe.dynamic_sql() && !safe.writes_data());
        let unsafe_path = classifier.classify("SET search_path = 'rt', 'pg_catalog'");
        assert!(unsafe_path.dynamic_sql() && unsafe_path.writes_data());
        // And the other way round.
        let classifier = PgClassifier::new(100);
        assert!(classifier
            .classify("SET schema 'rt'; SET search_path = 'rt', 'pg_catalog'")
            .dynamic_sql());
        assert!(!classifier
            .classify("SET schema 'rt'; SET search_path = 'pg_catalog', 'rt'")
            .dynamic_sql());
        assert!(classifier.is_empty());
    }

    #[test]
    fn cached_result_matches_uncached() {
        let classifier = PgClassifier::new(100);
        for sql in [
            "delete from t where id = 1",
            "delete from t where id = 2",
            "explain (analyze 'off') delete from t",
            "explain (analyze 'on') delete from t",
            "select 1; drop table x",
            "copy t to ''",
            "copy t to '/tmp/x'",
        ] {
            assert_eq!(*classifier.classify(sql), classify_pg(sql), "{sql}");
        }
    }
}
