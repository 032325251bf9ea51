//! A small lexer with MySQL's own rules, run before the parser.
//!
//! sqlparser's tokenizer is close to MySQL's but not identical, and every difference between
//! what we parse and what the server executes is a potential bypass. So this lexer decides, with
//! the server's rules, the three things that matter for security, and hands sqlparser text in
//! which those questions no longer arise:
//!
//! - **Comments**: `#` and `-- ` (two dashes *followed by whitespace or a control character*)
//!   run to the end of the line; `/* */` does not nest. They are replaced by a space. `--`
//!   not followed by whitespace is two minus signs in MySQL (`1--1` is 2): it is emitted as
//!   `- -` so sqlparser cannot take it for a comment.
//! - **Executable comments**: the server runs `/*! ... */` always, `/*!NNNNN ... */` only when
//!   NNNNN is at most its version, and skips the rest as a plain comment (scanning to the first
//!   `*/` without reading quotes). What the server skips is not SQL to it, so inlining it would
//!   not be "more conservative": a `'` inside a skipped comment opens a string for us and not
//!   for the server (round-7 review, F1). So: `/*!` without a five-digit version is inlined
//!   (1–4 digits are content, as the server reads them); a version below 50700 is inlined, since
//!   every supported server (MySQL 5.7+, MariaDB 10+; the adapter refuses older upstreams) runs
//!   it; a higher or six-digit version, and MariaDB's `/*M!...*/` (a plain comment to MySQL,
//!   version-dependent on MariaDB, which also skips MySQL versions 50700–99999), are refused
//!   (unparsed) because whether they run depends on the server. A `;`, a comment or another
//!   executable comment inside one is refused rather than guessed at.
//! - **Statement boundaries**: a multi-statement `COM_QUERY` is split at top-level `;` here,
//!   outside strings, quoted identifiers and comments, and each piece must parse to exactly one
//!   statement. sqlparser therefore cannot merge or hide statements.
//!
//! Strings use MySQL's default rules (backslash escapes, doubled quotes, `'` and `"` both
//! strings); quoted identifiers use backticks. `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES` would
//! change these rules: statements that try to set them are flagged by the classifier and the
//! adapter checks the upstream's `sql_mode` at session start.

/// What the lexer produced.
#[derive(Debug, Default)]
pub(crate) struct Lexed {
    /// Statement texts, comments removed, executable comments inlined; no empty entries.
    pub segments: Vec<String>,
    /// The text had a comment of any kind (the cache then keys by exact text).
    pub had_comment: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LexError(pub String);

pub(crate) fn lex(sql: &str) -> Result<Lexed, LexError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Lexed::default();
    let mut cur = String::with_capacity(sql.len());
    let mut in_exec = false;
    let mut i = 0usize;
    let at = |k: usize| chars.get(k).copied();
    while let Some(c) = at(i) {
        match c {
            '\'' | '"' | '`' => {
                let end = scan_quoted(&chars, i, c)?;
                cur.extend(chars.get(i..end).unwrap_or_default());
                i = end;
            }
            '#' | '-' if in_exec && (c == '#' || line_comment_at(&chars, i)) => {
                return Err(LexError("a comment inside an executable comment".into()));
            }
            '#' => {
                out.had_comment = true;
                i = skip_line(&chars, i);
                cur.push(' ');
            }
            '-' if at(i + 1) == Some('-') => {
                if line_comment_at(&chars, i) {
                    out.had_comment = true;
                    i = skip_line(&chars, i);
                    cur.push(' ');
                } else {
                    cur.push_str("- ");
                    i += 1;
                }
            }
            '-' => {
                cur.push('-');
                i += 1;
            }
            '/' if at(i + 1) == Some('*') => {
                out.had_comment = true;
                let exec_start = match (at(i + 2), at(i + 3)) {
                    (Some('!'), _) => Some(i + 3),
                    (Some('M'), Some('!')) => {
                        return Err(LexError(
                            "a MariaDB versioned comment `/*M!...*/` (whether it runs depends on the server)".into(),
                        ))
                    }
                    _ => None,
                };
                if let Some(mut k) = exec_start {
                    if in_exec {
                        return Err(LexError("nested executable comment".into()));
                    }
                    let digits = (k..k + 6)
                        .take_while(|&d| at(d).is_some_and(|c| c.is_ascii_digit()))
                        .count();
                    if digits >= 5 {
                        let version: String =
                            chars.get(k..k + 5).unwrap_or_default().iter().collect();
                        if digits == 6 || version.as_str() >= UNIVERSAL_VERSION {
                            return Err(LexError(format!(
                                "a versioned comment `/*!{version}...` that some supported servers skip (only versions below {UNIVERSAL_VERSION} are accepted)"
                            )));
                        }
                        k += 5;
                    }
                    in_exec = true;
                    cur.push(' ');
                    i = k;
                } else {
                    if in_exec {
                        return Err(LexError("a comment inside an executable comment".into()));
                    }
                    let mut k = i + 2;
                    loop {
                        match (at(k), at(k + 1)) {
                            (Some('*'), Some('/')) => break,
                            (Some(_), _) => k += 1,
                            (None, _) => return Err(LexError("unterminated comment".into())),
                        }
                    }
                    cur.push(' ');
                    i = k + 2;
                }
            }
            '*' if in_exec && at(i + 1) == Some('/') => {
                in_exec = false;
                cur.push(' ');
                i += 2;
            }
            ';' => {
                if in_exec {
                    return Err(LexError("`;` inside an executable comment".into()));
                }
                push_segment(&mut out.segments, &mut cur);
                i += 1;
            }
            _ if unicode_blank(c) => {
                return Err(LexError(format!(
                    "a Unicode space or control character (U+{:04X}) outside a string",
                    u32::from(c)
                )));
            }
            _ => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_exec {
        return Err(LexError("unterminated executable comment".into()));
    }
    push_segment(&mut out.segments, &mut cur);
    Ok(out)
}

/// Executable-comment versions below this run on every supported server (MySQL 5.7+, MariaDB
/// 10+); five ASCII digits compare as numbers.
const UNIVERSAL_VERSION: &str = "50700";

/// MySQL: `--` starts a comment only when the next *byte* is a space or control character
/// (`my_isspace || my_iscntrl`, or at the very end, where it makes no difference). Only ASCII
/// counts: in UTF-8 a Unicode space (NBSP, U+2028, U+3000) starts with a lead byte that is
/// neither, so `--<NBSP>` is two minus signs to the server. Reading it as a comment hid the rest
/// of the line from the gateway (round-8 review, F1). The caller refuses a non-ASCII space or
/// control character anywhere outside strings ([`unicode_blank`]), so no other client charset
/// can disagree either.
fn line_comment_at(chars: &[char], i: usize) -> bool {
    chars.get(i) == Some(&'-')
        && chars.get(i + 1) == Some(&'-')
        && chars
            .get(i + 2)
            .is_none_or(|n| n.is_ascii_whitespace() || n.is_ascii_control() || *n == '\u{b}')
}

/// A space or control character outside ASCII: servers read these as identifier bytes, some
/// tokenizers as blanks. Outside strings and quoted identifiers they have no legitimate use, so
/// a statement with one is refused rather than read one way while the server reads another.
fn unicode_blank(c: char) -> bool {
    !c.is_ascii()
        && (c.is_whitespace()
            || c.is_control()
            // Invisible format characters: soft hyphen, zero-width spaces and joiners, BOM.
            || matches!(c, '\u{ad}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

fn push_segment(segments: &mut Vec<String>, cur: &mut String) {
    let trimmed = cur.trim();
    if !trimmed.is_empty() {
        segments.push(trimmed.to_owned());
    }
    cur.clear();
}

fn skip_line(chars: &[char], mut i: usize) -> usize {
    while let Some(&c) = chars.get(i) {
        if c == '\n' {
            break;
        }
        i += 1;
    }
    i
}

/// The index just past the closing quote of the literal or identifier starting at `start`.
fn scan_quoted(chars: &[char], start: usize, quote: char) -> Result<usize, LexError> {
    let mut k = start + 1;
    loop {
        match chars.get(k).copied() {
            None => {
                return Err(LexError(if quote == '`' {
                    "unterminated quoted identifier".into()
                } else {
                    "unterminated string".into()
                }))
            }
            // Backslash escapes exist in strings, not in backtick identifiers.
            Some('\\') if quote != '`' => k += 2,
            Some(c) if c == quote => {
                if chars.get(k + 1) == Some(&quote) {
                    k += 2;
                } else {
                    return Ok(k + 1);
                }
            }
            Some(_) => k += 1,
        }
    }
}

/// MySQL's unescaping of a string literal's body (for `PREPARE s FROM '...'`).
pub(crate) fn unescape(body: &str, quote: char) -> String {
    let mut out = String::with_capacity(body.len());
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('b') => out.push('\u{8}'),
                Some('Z') => out.push('\u{1a}'),
                Some(other) => out.push(other),
                None => {}
            }
        } else if c == quote && it.peek() == Some(&quote) {
            it.next();
            out.push(quote);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(sql: &str) -> Vec<String> {
        lex(sql).map(|l| l.segments).unwrap_or_default()
    }

    #[test]
    fn comments_and_boundaries() {
        assert_eq!(segs("select 1; select 2"), vec!["select 1", "select 2"]);
        assert_eq!(
            segs("select 1 # ; drop table t\n; x"),
            vec!["select 1", "x"]
        );
        assert_eq!(segs("select 1 -- ; drop\n"), vec!["select 1"]);
        assert_eq!(
            segs("select 1--1; drop table t"),
            vec!["select 1- -1", "drop table t"]
        );
        assert_eq!(segs("select ';' ; x"), vec!["select ';'", "x"]);
        assert_eq!(segs(r"select '\';' ; x"), vec![r"select '\';'", "x"]);
        assert_eq!(segs("select `a;b`; x"), vec!["select `a;b`", "x"]);
        assert_eq!(segs("select /* ; */ 1"), vec!["select   1"]);
    }

    #[test]
    fn executable_comments_are_inlined() {
        assert_eq!(segs("select 1 /*!50001 , 2 */"), vec!["select 1   , 2"]);
        assert_eq!(segs("/*! drop table t */"), vec!["drop table t"]);
        assert_eq!(segs("select 1 /*!40101 , 2 */"), vec!["select 1   , 2"]);
        // 1–4 digits are not a version: the server runs them as content.
        assert_eq!(segs("select /*!1 , 2 */"), vec!["select  1 , 2"]);
        // Skipped by some servers: what they skip is not SQL to them (round 7, F1).
        assert!(lex("select 1 /*!99999 , ' */; delete from t; select 2 -- ' */").is_err());
        assert!(lex("select /*!50700 1 */").is_err());
        assert!(lex("select /*!80000 1 */").is_err());
        assert!(lex("select /*!100000 1 */").is_err());
        assert!(lex("/*M!100101 drop table t */").is_err());
        assert!(lex("select 1 /*M! , ' */").is_err());
        assert!(lex("select /*!40101 1 -- x\n */").is_err());
        assert!(lex("select /*!40101 1 # x\n */").is_err());
    }

    /// Round 8 (F1): `--` plus a Unicode space is two minus signs to the server; the gateway
    /// took it for a comment and missed the rest of the line. Unicode blanks outside strings are
    /// refused; inside strings and quoted identifiers they are data.
    #[test]
    fn only_ascii_blanks_start_a_dash_comment() {
        for blank in [
            '\u{a0}', '\u{85}', '\u{200a}', '\u{2028}', '\u{3000}', '\u{feff}',
        ] {
            let sql = format!("select 1 --{blank} from (select 2) x; delete from t");
            assert!(lex(&sql).is_err(), "U+{:04X}", u32::from(blank));
            assert!(lex(&format!("select 1{blank}from t")).is_err());
            assert_eq!(
                segs(&format!("select '{blank}', `a{blank}b`")),
                vec![format!("select '{blank}', `a{blank}b`")]
            );
        }
        assert_eq!(segs("select 1 --\tx\n, 2"), vec!["select 1  \n, 2"]);
        assert_eq!(segs("select 1 --\u{b}x\n, 2"), vec!["select 1  \n, 2"]);
        assert_eq!(segs("select 1 --x"), vec!["select 1 - -x"]);
        assert!(lex("/*! select 1; drop table t */").is_err());
        assert!(lex("/*! select 1").is_err());
        assert!(lex("/* x").is_err());
        assert!(lex("select 'x").is_err());
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape(r"it\'s ''ok''", '\''), "it's 'ok'");
    }
}
