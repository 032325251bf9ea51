//! Masking of backend messages: `DataRow`, `CopyData`, and the text of errors and notices.
//!
//! The plan for a result set comes from two places: the column lineage of the statement
//! (computed from its text when the client sent it) says which columns derive from masked
//! source columns; the `RowDescription` (or the `Bind` result formats) says which values are
//! text and which binary, and of what type. Content detectors then run over every textual value.
//!
//! `RowDescription` is never changed: a value that cannot be masked in place keeps its type by
//! becoming NULL (binary integers, binary values of types we cannot rewrite). Rows with nothing
//! to mask are passed through without copying (the caller keeps the original bytes).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use airlock_gate::masking::SessionMasking;
use airlock_mask::{Masked, WITHHELD_PLACEHOLDER};
use airlock_sql::lineage::{CopyFormat, CopyKind, StatementLineage, DERIVED_MARKER};
use bytes::{BufMut, BytesMut};

const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const BPCHAR: u32 = 1042;
const NAME: u32 = 19;
const JSON: u32 = 114;
const JSONB: u32 = 3802;
const XML: u32 = 142;
const UNKNOWN: u32 = 705;
const INT2: u32 = 21;
const INT4: u32 = 23;
const INT8: u32 = 20;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const NUMERIC: u32 = 1700;
const BYTEA: u32 = 17;

/// One column of a result, as seen by the client.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    pub binary: bool,
}

/// Parses a `RowDescription` body.
pub fn parse_row_description(body: &[u8]) -> Option<Vec<Column>> {
    let mut r = Cursor { b: body, pos: 0 };
    let n = r.u16()?;
    let mut cols = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let name = r.cstr()?;
        r.skip(4 + 2)?;
        let type_oid = r.u32()?;
        r.skip(2 + 4)?;
        let format = r.u16()?;
        cols.push(Column {
            name: String::from_utf8_lossy(name).into_owned(),
            type_oid,
            binary: format == 1,
        });
    }
    Some(cols)
}

/// The masking decisions for one result set.
#[derive(Debug, Clone)]
pub struct RowPlan {
    cols: Vec<ColPlan>,
}

#[derive(Debug, Clone)]
struct ColPlan {
    type_oid: u32,
    binary: bool,
    /// Masked whole because it derives from these column rules (`?unknown`: lineage unknown).
    sources: Option<BTreeSet<String>>,
}

impl RowPlan {
    pub fn new(lineage: Option<&StatementLineage>, cols: &[Column]) -> RowPlan {
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        let masked = match lineage {
            Some(l) => l.masked_columns(&names),
            None => vec![None; cols.len()],
        };
        RowPlan {
            cols: cols
                .iter()
                .zip(masked)
                .map(|(c, sources)| ColPlan {
                    type_oid: c.type_oid,
                    binary: c.binary,
                    sources,
                })
                .collect(),
        }
    }

    /// A COPY out: `n` text fields, no names on the wire.
    pub fn for_copy(lineage: Option<&StatementLineage>, n: usize) -> RowPlan {
        let masked = match lineage {
            Some(l) => l.copy_masked_columns(n),
            None => vec![None; n],
        };
        RowPlan {
            cols: masked
                .into_iter()
                .map(|sources| ColPlan {
                    type_oid: TEXT,
                    binary: false,
                    sources,
                })
                .collect(),
        }
    }
}

/// Counts for one statement's result: the gate's tally, shared with the MySQL adapter.
pub type Counts = airlock_gate::masking::Tally;

enum Value<'a> {
    Same,
    Bytes(Cow<'a, [u8]>),
    Null,
}

/// A `DataRow` whose lengths do not add up: the row cannot be masked, so it is not sent.
#[derive(Debug)]
pub struct MalformedRow;

/// Masks one `DataRow` body. Returns the new body, or `None` when nothing changed.
pub fn mask_data_row(
    m: &SessionMasking,
    plan: &RowPlan,
    body: &[u8],
    counts: &mut Counts,
) -> Result<Option<BytesMut>, MalformedRow> {
    data_row(m, plan, body, counts).ok_or(MalformedRow)
}

fn data_row(
    m: &SessionMasking,
    plan: &RowPlan,
    body: &[u8],
    counts: &mut Counts,
) -> Option<Option<BytesMut>> {
    let mut r = Cursor { b: body, pos: 0 };
    let n = r.u16()?;
    let mut out: Option<BytesMut> = None;
    for i in 0..usize::from(n) {
        let field_start = r.pos;
        let len = r.i32()?;
        let value = if len < 0 {
            None
        } else {
            Some(r.take(usize::try_from(len).ok()?)?)
        };
        let masked = match (value, plan.cols.get(i)) {
            (Some(v), Some(col)) => mask_value(m, col, v, counts),
            // More values than described columns: mask them as unknown text.
            (Some(v), None) => mask_value(
                m,
                &ColPlan {
                    type_oid: UNKNOWN,
                    binary: true,
                    sources: Some(BTreeSet::from(["?unknown".to_owned()])),
                },
                v,
                counts,
            ),
            (None, _) => Value::Same,
        };
        match masked {
            Value::Same => {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(body.get(field_start..r.pos)?);
                }
            }
            other => {
                let o = out.get_or_insert_with(|| {
                    let mut o = BytesMut::with_capacity(body.len() + 32);
                    o.extend_from_slice(body.get(..field_start).unwrap_or_default());
                    o
                });
                match other {
                    Value::Null => o.put_i32(-1),
                    Value::Bytes(b) => {
                        o.put_i32(i32::try_from(b.len()).ok()?);
                        o.extend_from_slice(&b);
                    }
                    Value::Same => {}
                }
            }
        }
    }
    if r.pos != body.len() {
        return None;
    }
    Some(out)
}

fn is_textual(oid: u32) -> bool {
    matches!(
        oid,
        TEXT | VARCHAR | BPCHAR | NAME | JSON | JSONB | XML | UNKNOWN
    )
}

fn mask_value<'a>(
    m: &SessionMasking,
    col: &ColPlan,
    v: &'a [u8],
    counts: &mut Counts,
) -> Value<'a> {
    // The bytes that hold text: all of a text-format value; binary text types are their UTF-8
    // bytes, binary jsonb is a version byte and the JSON text.
    let (prefix, text): (&[u8], Option<&'a [u8]>) = if !col.binary {
        (&[], Some(v))
    } else if col.type_oid == JSONB {
        match v.split_first() {
            Some((1, rest)) => (&[1], Some(rest)),
            _ => (&[], None),
        }
    } else if is_textual(col.type_oid) {
        (&[], Some(v))
    } else {
        (&[], None)
    };
    let json = matches!(col.type_oid, JSON | JSONB);

    if let Some(sources) = &col.sources {
        for s in sources.iter().filter(|s| s.as_str() != DERIVED_MARKER) {
            counts.column(s);
        }
        let Some(text) = text else {
            // A binary value of a type we cannot rewrite keeps its type as NULL.
            return Value::Null;
        };
        return match m.mask_column_value(sources, text, &mut counts.entities) {
            None | Some(Masked::Null) => Value::Null,
            Some(other) => {
                let bytes = other.bytes().unwrap_or(WITHHELD_PLACEHOLDER);
                Value::Bytes(Cow::Owned(finish(prefix, bytes, json)))
            }
        };
    }

    if m.content.is_empty() {
        return Value::Same;
    }
    let Some(text) = text else {
        return binary_value(m, col, v, counts);
    };
    if col.type_oid == BYTEA {
        return bytea_text(m, col, text, counts);
    }
    let mut current: Cow<'a, [u8]> = Cow::Borrowed(text);
    let mut changed = false;
    for masker in &m.content {
        let next = match masker.mask_text(&current, &mut counts.entities) {
            Masked::Unchanged(_) => continue,
            Masked::Null => return Value::Null,
            Masked::Withheld => WITHHELD_PLACEHOLDER.to_vec(),
            Masked::Replaced(b) => b.into_owned(),
        };
        current = Cow::Owned(next);
        changed = true;
    }
    if !changed {
        return Value::Same;
    }
    let valid_json = !json || serde_json::from_slice::<serde::de::IgnoredAny>(&current).is_ok();
    if valid_json && prefix.is_empty() {
        return Value::Bytes(current);
    }
    Value::Bytes(Cow::Owned(finish(prefix, &current, !valid_json)))
}

/// Binary values of non-text types can still carry what the detectors look for: integers and
/// `numeric` hold card and phone numbers, floats phone numbers, `bytea` any bytes, arrays and
/// records embed their elements' text. Numbers are rendered as PostgreSQL prints them and
/// scanned; everything else is scanned as raw bytes. A hit makes the value NULL (its type stays
/// valid); `bytea` gets its masked bytes, which are still a valid `bytea`.
fn binary_value(
    m: &SessionMasking,
    col: &ColPlan,
    v: &[u8],
    counts: &mut Counts,
) -> Value<'static> {
    let rendered: Option<String> = match (col.type_oid, v.len()) {
        (INT8, 8) => <[u8; 8]>::try_from(v)
            .ok()
            .map(|b| i64::from_be_bytes(b).to_string()),
        (INT4, 4) => <[u8; 4]>::try_from(v)
            .ok()
            .map(|b| i32::from_be_bytes(b).to_string()),
        (INT2, 2) => <[u8; 2]>::try_from(v)
            .ok()
            .map(|b| i16::from_be_bytes(b).to_string()),
        (FLOAT8, 8) => <[u8; 8]>::try_from(v)
            .ok()
            .map(|b| f64::from_be_bytes(b).to_string()),
        (FLOAT4, 4) => <[u8; 4]>::try_from(v)
            .ok()
            .map(|b| f32::from_be_bytes(b).to_string()),
        (NUMERIC, _) => numeric_text(v),
        _ => None,
    };
    let scanned: &[u8] = rendered.as_deref().map_or(v, str::as_bytes);
    let mut current: Cow<'_, [u8]> = Cow::Borrowed(scanned);
    let mut changed = false;
    for masker in &m.content {
        match masker.mask_text(&current, &mut counts.entities) {
            Masked::Unchanged(_) => {}
            Masked::Replaced(b) if col.type_oid == BYTEA => {
                current = Cow::Owned(b.into_owned());
                changed = true;
            }
            _ => return Value::Null,
        }
    }
    if changed {
        Value::Bytes(Cow::Owned(current.into_owned()))
    } else {
        Value::Same
    }
}

/// A text-format `bytea` (`\\x` hex, the default output): the detectors see the decoded
/// bytes, and masked bytes go back out as hex.
fn bytea_text(
    m: &SessionMasking,
    col: &ColPlan,
    text: &[u8],
    counts: &mut Counts,
) -> Value<'static> {
    let Some(hex) = text.strip_prefix(b"\\x") else {
        // `bytea_output = escape`: printable bytes stay themselves, so scan the text.
        return binary_value(m, col, text, counts);
    };
    let decoded: Option<Vec<u8>> = hex
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect();
    let Some(decoded) = decoded else {
        return Value::Null;
    };
    match binary_value(m, col, &decoded, counts) {
        Value::Bytes(masked) => {
            let mut out = Vec::with_capacity(2 + masked.len() * 2);
            out.extend_from_slice(b"\\x");
            for b in masked.iter() {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
            Value::Bytes(Cow::Owned(out))
        }
        other => other,
    }
}

/// A binary `numeric` as PostgreSQL prints it (`-1234.50`); `None` for NaN, infinities and
/// malformed input (nothing to scan: the raw bytes are scanned instead).
fn numeric_text(v: &[u8]) -> Option<String> {
    use std::fmt::Write;
    let mut r = Cursor { b: v, pos: 0 };
    let ndigits = usize::from(r.u16()?);
    let weight = i32::from(r.u16()? as i16);
    let sign = r.u16()?;
    let dscale = usize::from(r.u16()?);
    let mut digits = Vec::with_capacity(ndigits.min(1024));
    for _ in 0..ndigits {
        digits.push(r.u16()?);
    }
    let digit = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    match sign {
        0x0000 => {}
        0x4000 => out.push('-'),
        _ => return None,
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let _ = if i == 0 {
                write!(out, "{}", digit(i))
            } else {
                write!(out, "{:04}", digit(i))
            };
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// `bytes` as the value of its column: JSON columns get a JSON string when the masked text is
/// not JSON any more (a redacted number).
fn finish(prefix: &[u8], bytes: &[u8], json_string: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + bytes.len() + 2);
    out.extend_from_slice(prefix);
    if json_string {
        let s = String::from_utf8_lossy(bytes);
        match serde_json::to_vec(&s) {
            Ok(quoted) => out.extend_from_slice(&quoted),
            Err(_) => out.extend_from_slice(b"\"[WITHHELD]\""),
        }
    } else {
        out.extend_from_slice(bytes);
    }
    out
}

/// Masks one `CopyData` message of a text or CSV COPY out (one or more rows).
pub fn mask_copy_data(
    m: &SessionMasking,
    plan: &RowPlan,
    format: CopyFormat,
    body: &[u8],
    counts: &mut Counts,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut changed = false;
    // The server sends exactly one row per CopyData message, so the message is the row: a
    // line break inside a quoted CSV field is data, not the end of a row.
    {
        let (content, nl) = match body.strip_suffix(b"\n") {
            Some(c) => (c, true),
            None => (body, false),
        };
        let fields = match format.kind {
            CopyKind::Csv => split_csv(content, format.delimiter),
            _ => split_copy_text(content, format.delimiter),
        };
        if fields.len() != plan.cols.len() && !plan.cols.is_empty() {
            // A row that does not split into the announced columns is not guessed at.
            counts.column("?copy_row");
            let mut withheld = WITHHELD_PLACEHOLDER.to_vec();
            if nl {
                withheld.push(b'\n');
            }
            return Some(withheld);
        }
        for (i, (field, quoted)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(format.delimiter);
            }
            let is_null = match format.kind {
                CopyKind::Csv => field.is_empty() && !quoted,
                _ => *field == b"\\N",
            };
            let raw: Cow<'_, [u8]> = if *quoted {
                Cow::Owned(unquote_csv(field))
            } else {
                Cow::Borrowed(field)
            };
            let masked = if is_null {
                Value::Same
            } else {
                let col = plan.cols.get(i).cloned().unwrap_or(ColPlan {
                    type_oid: TEXT,
                    binary: false,
                    sources: Some(BTreeSet::from(["?unknown".to_owned()])),
                });
                mask_value(m, &col, &raw, counts)
            };
            match masked {
                Value::Same => {
                    if *quoted {
                        put_csv_quoted(&mut out, &raw);
                    } else {
                        out.extend_from_slice(field);
                    }
                }
                Value::Null => {
                    changed = true;
                    if format.kind != CopyKind::Csv {
                        out.extend_from_slice(b"\\N");
                    }
                }
                Value::Bytes(b) => {
                    changed = true;
                    match format.kind {
                        CopyKind::Csv => put_csv_quoted(&mut out, &b),
                        _ => put_copy_text(&mut out, &b, format.delimiter),
                    }
                }
            }
        }
        if nl {
            out.push(b'\n');
        }
    }
    changed.then_some(out)
}

/// A text-format COPY row split at the delimiter; a backslash escapes the next byte (the
/// server writes a delimiter inside a value as `\` + delimiter).
fn split_copy_text(line: &[u8], delim: u8) -> Vec<(&[u8], bool)> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, &b) in line.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == delim {
            fields.push((line.get(start..i).unwrap_or_default(), false));
            start = i + 1;
        }
    }
    fields.push((line.get(start..).unwrap_or_default(), false));
    fields
}

fn split_csv(line: &[u8], delim: u8) -> Vec<(&[u8], bool)> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &b) in line.iter().enumerate() {
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == delim && !in_quotes {
            fields.push(line.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    fields.push(line.get(start..).unwrap_or_default());
    fields
        .into_iter()
        .map(|f| {
            if f.len() >= 2 && f.first() == Some(&b'"') && f.last() == Some(&b'"') {
                (f, true)
            } else {
                (f, false)
            }
        })
        .collect()
}

fn unquote_csv(f: &[u8]) -> Vec<u8> {
    let inner = f.get(1..f.len().saturating_sub(1)).unwrap_or_default();
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter().peekable();
    while let Some(&b) = it.next() {
        if b == b'"' && it.peek() == Some(&&b'"') {
            it.next();
        }
        out.push(b);
    }
    out
}

fn put_csv_quoted(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'"');
    for &b in v {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Masked text never introduces the delimiter or line breaks unescaped.
fn put_copy_text(out: &mut Vec<u8>, v: &[u8], delim: u8) {
    for &b in v {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if b == delim => {
                out.push(b'\\');
                out.push(b);
            }
            b => out.push(b),
        }
    }
}

/// Masks the text fields of an `ErrorResponse` / `NoticeResponse` body (message, detail, hint,
/// context, where). With column rules in force, the values PostgreSQL echoes in details
/// (`Key (email)=(…)`, `Failing row contains (…)`) are withheld whole: they are column values
/// whose columns the message does not reliably name.
/// `strict`: a masked column may be in scope of the statement that failed, so the value parts
/// of the message (quoted text; the whole detail, context and internal query, which echo
/// input unquoted) are withheld whatever the detectors say:
/// `string_agg(translate(card, '0123456789', 'abcdefghij'), ',')::int` would otherwise return
/// every card in `invalid input syntax for type integer: "…"`. A message raised by PL/pgSQL
/// (`RAISE`, its context says so) is user text throughout and is withheld whole.
pub fn mask_error_body(
    m: &SessionMasking,
    body: &[u8],
    counts: &mut Counts,
    strict: bool,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut changed = false;
    let raised = strict && error_field(body, b'W').is_some_and(|w| contains(w, b"at RAISE"));
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = after.iter().position(|&b| b == 0)?;
        let value = after.get(..end)?;
        rest = after.get(end + 1..)?;
        if strict && matches!(field, b'P' | b'p') {
            // The position of an error inside a value computed from a masked column is a
            // number derived from it (`repeat('a', substr(card,1,3)::int)::regtype`): dropped.
            changed = true;
            continue;
        }
        let mut v: Cow<'_, [u8]> = Cow::Borrowed(value);
        if matches!(field, b'M' | b'D' | b'H' | b'W' | b'q') {
            if (raised && matches!(field, b'M' | b'D' | b'H'))
                || (strict && matches!(field, b'D' | b'W' | b'q' | b'H'))
            {
                // Details, contexts and internal queries echo input without quoting it
                // (`Premature end of data in tag a4111…`, `JSON data, line 1: [4111…`).
                v = Cow::Borrowed(WITHHELD_PLACEHOLDER);
            } else if strict {
                // Messages echo values quoted, unquoted (`date field value out of range:
                // 51260181-01-59083013`) and with quotes inside them: only the fixed words
                // before the first colon are kept.
                v = Cow::Owned(withhold_message(&v));
            }
            if v.as_ref() != value {
                counts.column("?error_text");
            }
            if field == b'D' && m.has_column_rules() {
                if let Some(w) = withhold_echoed_values(&v) {
                    v = Cow::Owned(w);
                    *counts
                        .columns
                        .entry("?error_detail".to_owned())
                        .or_default() += 1;
                }
            }
            for masker in &m.content {
                if let Masked::Replaced(b) = masker.mask_text(&v, &mut counts.entities) {
                    v = Cow::Owned(b.into_owned());
                }
            }
        }
        if v.as_ref() != value {
            changed = true;
        }
        out.push(field);
        out.extend(v.iter().filter(|&&b| b != 0));
        out.push(0);
    }
    out.push(0);
    changed.then_some(out)
}

/// `value` through every content detector of the session (a value that cannot be scanned is
/// withheld).
fn detected<'a>(m: &SessionMasking, value: &'a [u8]) -> Cow<'a, [u8]> {
    let mut tally = airlock_gate::masking::Tally::default();
    match m.mask_content(value, &mut tally) {
        airlock_gate::masking::Rewrite::Same => Cow::Borrowed(value),
        airlock_gate::masking::Rewrite::Bytes(b) => Cow::Owned(b),
        airlock_gate::masking::Rewrite::Null => Cow::Borrowed(WITHHELD_PLACEHOLDER),
    }
}

/// A `NotificationResponse` (pid, channel, payload): payloads are written by any session of
/// the database, so under column masking they are withheld (a trigger may copy a masked column
/// into them); otherwise the detectors run over them. `None`: unchanged.
pub fn mask_notification(m: &SessionMasking, body: &[u8]) -> Option<Vec<u8>> {
    let mut r = Cursor { b: body, pos: 0 };
    let head = r.take(4)?;
    let channel = r.cstr()?;
    let payload = r.cstr()?;
    let masked = if m.has_column_rules() && !payload.is_empty() {
        Cow::Borrowed(WITHHELD_PLACEHOLDER)
    } else {
        detected(m, payload)
    };
    if masked.as_ref() == payload {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(head);
    out.extend_from_slice(channel);
    out.push(0);
    out.extend(masked.iter().filter(|&&b| b != 0));
    out.push(0);
    Some(out)
}

/// A `ParameterStatus` value: `application_name` can be set to anything, including a masked
/// value (`set_config('application_name', card, false)`), so under column masking a change of
/// it is withheld; every value goes through the detectors. `None`: unchanged.
pub fn mask_parameter_value(m: &SessionMasking, name: &str, value: &[u8]) -> Option<Vec<u8>> {
    let masked: Cow<'_, [u8]> =
        if m.has_column_rules() && name.eq_ignore_ascii_case("application_name") {
            Cow::Borrowed(WITHHELD_PLACEHOLDER)
        } else {
            detected(m, value)
        };
    if masked.as_ref() == value {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + masked.len() + 2);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend(masked.iter().filter(|&&b| b != 0));
    out.push(0);
    Some(out)
}

/// One field of an ErrorResponse/NoticeResponse body.
fn error_field(body: &[u8], wanted: u8) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = after.iter().position(|&b| b == 0)?;
        if field == wanted {
            return after.get(..end);
        }
        rest = after.get(end + 1..)?;
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A message with a masked column in scope: PostgreSQL echoes values in messages quoted
/// (`invalid input syntax for type integer: "…"`), unquoted (`date field value out of range:
/// 51260181-01-59083013`, `chr()`), and a value may carry its own quotes, so no scan of the text
/// can tell value from wording. What is kept is the leading run of plain words (letters and
/// spaces: PostgreSQL's fixed wording, `duplicate key value violates unique constraint`); the
/// rest, from the first other character on, is withheld. The SQLSTATE stays, so clients still
/// see what kind of error it was.
fn withhold_message(text: &[u8]) -> Vec<u8> {
    let words = text
        .iter()
        .take(100)
        .take_while(|&&b| b.is_ascii_alphabetic() || b == b' ')
        .count();
    let prefix = text.get(..words).unwrap_or_default().trim_ascii_end();
    let mut out = Vec::with_capacity(prefix.len() + WITHHELD_PLACEHOLDER.len() + 2);
    out.extend_from_slice(prefix);
    match text.get(words) {
        // Plain words throughout: nothing to withhold.
        None if words == text.len() => return text.to_vec(),
        Some(b':') => out.extend_from_slice(b": "),
        _ if !prefix.is_empty() => out.push(b' '),
        _ => {}
    }
    out.extend_from_slice(WITHHELD_PLACEHOLDER);
    out
}

/// `Key (a, b)=(1, x) already exists.` → `Key (a, b)=([WITHHELD]) already exists.`;
/// `Failing row contains (…).` likewise.
fn withhold_echoed_values(detail: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(detail).ok()?;
    let (open, close) = if let Some(i) = text.find(")=(") {
        let start = i + 3;
        let end = text.rfind(')').filter(|&e| e >= start)?;
        (start, end)
    } else if let Some(i) = text.find("contains (") {
        let start = i + "contains (".len();
        let end = text.rfind(')').filter(|&e| e >= start)?;
        (start, end)
    } else {
        return None;
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(text.get(..open)?);
    out.push_str("[WITHHELD]");
    out.push_str(text.get(close..)?);
    Some(out.into_bytes())
}

/// Lineage per statement text, cached per session (a session repeats its statements).
pub struct LineageCache {
    map: std::collections::HashMap<Arc<str>, Arc<Vec<StatementLineage>>>,
}

const LINEAGE_CACHE_ENTRIES: usize = 512;

impl LineageCache {
    pub fn new() -> Self {
        LineageCache {
            map: std::collections::HashMap::new(),
        }
    }

    pub fn get(
        &mut self,
        text: &Arc<str>,
        m: &SessionMasking,
        views: &dyn airlock_sql::lineage::Views,
    ) -> Arc<Vec<StatementLineage>> {
        if let Some(l) = self.map.get(text) {
            return l.clone();
        }
        let l = Arc::new(airlock_sql::lineage::lineage(text, &m.rules, views));
        if self.map.len() >= LINEAGE_CACHE_ENTRIES {
            self.map.clear();
        }
        self.map.insert(text.clone(), l.clone());
        l
    }
}

impl Default for LineageCache {
    fn default() -> Self {
        Self::new()
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)?.try_into().ok().map(i32::from_be_bytes)
    }
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.pos..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        let s = rest.get(..end)?;
        self.pos += end + 1;
        Some(s)
    }
}

/// The values of a `DataRow` body (`None` for NULL), or `None` if it is malformed.
pub fn data_row_values(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut r = Cursor { b: body, pos: 0 };
    let n = r.u16()?;
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let len = r.i32()?;
        out.push(match usize::try_from(len) {
            Ok(l) => Some(r.take(l)?),
            Err(_) => None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> String {
        String::from_utf8(withhold_message(text.as_bytes())).unwrap_or_default()
    }

    #[test]
    fn messages_keep_only_their_leading_plain_words() {
        assert_eq!(
            w("date field value out of range: 51260181-01-59083013"),
            "date field value out of range: [WITHHELD]"
        );
        assert_eq!(
            w("invalid input syntax for type integer: \"x\"51260181\"y\""),
            "invalid input syntax for type integer: [WITHHELD]"
        );
        assert_eq!(
            w("duplicate key value violates unique constraint \"c_email_key\""),
            "duplicate key value violates unique constraint [WITHHELD]"
        );
        assert_eq!(w("division by zero"), "division by zero");
        assert_eq!(w("4111 is not a valid month"), "[WITHHELD]");
    }
}
