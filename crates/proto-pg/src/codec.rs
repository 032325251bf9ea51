//! PostgreSQL wire framing: splitting byte streams into messages and building the few
//! messages the gateway itself originates. Everything here works on untrusted bytes and
//! never panics: every length is checked before it is used.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Startup-phase request codes (the "length + code" packets without a type byte).
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;
pub const PROTOCOL_3_0: u32 = 196_608;

/// The largest startup packet we accept. PostgreSQL itself allows 10 000 bytes.
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {0} (must be at least 4)")]
    BadLength(i64),
    #[error("message of {len} bytes exceeds the gateway limit of {limit} bytes ([gateway] max_message_bytes)")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed {what} message: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
}

/// One regular protocol message: type byte and body (without the length word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    pub body: Bytes,
}

/// Takes one complete typed message off the front of `buf`, or `None` if more bytes are needed.
/// `limit` bounds the body length so a hostile peer cannot make us buffer without end.
pub fn split_message(buf: &mut BytesMut, limit: usize) -> Result<Option<Message>, FrameError> {
    let (tag, total) = match header(buf, limit)? {
        None => return Ok(None),
        Some((_, total)) if buf.len() < total => {
            // Grow toward the announced size in steps: a 5-byte header must not make us reserve
            // the whole (up to 64 MiB) body before any of it arrived.
            buf.reserve((total - buf.len()).min(1 << 20));
            return Ok(None);
        }
        Some(found) => found,
    };
    let body_len = total - 5;
    buf.advance(5);
    let body = buf.split_to(body_len).freeze();
    Ok(Some(Message { tag, body }))
}

/// Reports the extent of the next complete message without copying: `(tag, total_len)`.
/// Used by the relay, which forwards most messages untouched.
pub fn peek_message(buf: &[u8], limit: usize) -> Result<Option<(u8, usize)>, FrameError> {
    Ok(header(buf, limit)?.filter(|&(_, total)| buf.len() >= total))
}

/// The tag and total length (header included) announced by the header at the front of `buf`,
/// checked against `limit`; `None` while fewer than 5 bytes are there.
fn header(buf: &[u8], limit: usize) -> Result<Option<(u8, usize)>, FrameError> {
    let Some(&[tag, a, b, c, d]) = buf.get(..5) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    if len < 4 {
        return Err(FrameError::BadLength(len.into()));
    }
    let body_len = (len as usize) - 4;
    if body_len > limit {
        return Err(FrameError::TooLarge {
            len: body_len,
            limit,
        });
    }
    Ok(Some((tag, 5 + body_len)))
}

/// Takes one startup-phase packet (length word includes itself, no type byte).
pub fn split_startup(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let Some(&[a, b, c, d]) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    if len < 8 {
        return Err(FrameError::BadLength(len.into()));
    }
    let len = len as usize;
    if len > MAX_STARTUP_LEN {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_STARTUP_LEN,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len - 4).freeze()))
}

/// A startup packet, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    GssEnc,
    Cancel { pid: u32, key: Vec<u8> },
    Startup { params: Vec<(String, String)> },
    Unsupported { code: u32 },
}

pub fn decode_startup(body: &[u8]) -> Result<StartupPacket, FrameError> {
    let mut r = Reader::new(body, "startup");
    let code = r.u32()?;
    Ok(match code {
        SSL_REQUEST => StartupPacket::Ssl,
        GSSENC_REQUEST => StartupPacket::GssEnc,
        CANCEL_REQUEST => {
            let pid = r.u32()?;
            let key = r.rest().to_vec();
            if key.is_empty() || key.len() > 256 {
                return Err(FrameError::Malformed {
                    what: "CancelRequest",
                    why: "bad key length",
                });
            }
            StartupPacket::Cancel { pid, key }
        }
        PROTOCOL_3_0 => {
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((name.to_owned(), value.to_owned()));
            }
            StartupPacket::Startup { params }
        }
        code => StartupPacket::Unsupported { code },
    })
}

/// A bounds-checked cursor over a message body.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn short(&self) -> FrameError {
        FrameError::Malformed {
            what: self.what,
            why: "message is truncated",
        }
    }

    pub fn u8(&mut self) -> Result<u8, FrameError> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| self.short())?;
        self.buf = rest;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes(b.try_into().map_err(|_| self.short())?))
    }

    pub fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().map_err(|_| self.short())?))
    }

    pub fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(self.u32()? as i32)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A NUL-terminated string as raw bytes (in the session's client encoding).
    pub fn cbytes(&mut self) -> Result<&'a [u8], FrameError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(FrameError::Malformed {
                what: self.what,
                why: "string is not NUL-terminated",
            })?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..).unwrap_or_default();
        Ok(s)
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self) -> Result<&'a str, FrameError> {
        let what = self.what;
        std::str::from_utf8(self.cbytes()?).map_err(|_| FrameError::Malformed {
            what,
            why: "string is not valid UTF-8",
        })
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Builds one typed message into `out`, patching the length afterwards.
pub fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let len_at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - len_at) as u32;
    if let Some(slot) = out.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

pub fn put_cstr(out: &mut BytesMut, s: &str) {
    // An embedded NUL would end the string early and shift every following field; drop them.
    out.extend(s.bytes().filter(|&b| b != 0));
    out.put_u8(0);
}

/// The fields of an ErrorResponse / NoticeResponse that the gateway originates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ErrorFields {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        ErrorFields {
            severity: "ERROR",
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        ErrorFields {
            severity: "FATAL",
            ..ErrorFields::error(code, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

fn put_fields(out: &mut BytesMut, f: &ErrorFields) {
    out.put_u8(b'S');
    put_cstr(out, f.severity);
    out.put_u8(b'V');
    put_cstr(out, f.severity);
    out.put_u8(b'C');
    put_cstr(out, f.code);
    out.put_u8(b'M');
    put_cstr(out, &f.message);
    if let Some(d) = &f.detail {
        out.put_u8(b'D');
        put_cstr(out, d);
    }
    if let Some(h) = &f.hint {
        out.put_u8(b'H');
        put_cstr(out, h);
    }
    out.put_u8(0);
}

pub fn put_error(out: &mut BytesMut, f: &ErrorFields) {
    put_message(out, b'E', |o| put_fields(o, f));
}

pub fn put_notice(out: &mut BytesMut, f: &ErrorFields) {
    put_message(out, b'N', |o| put_fields(o, f));
}

pub fn put_ready(out: &mut BytesMut, status: u8) {
    put_message(out, b'Z', |o| o.put_u8(status));
}

pub fn put_auth_request(out: &mut BytesMut, code: u32, extra: &[u8]) {
    put_message(out, b'R', |o| {
        o.put_u32(code);
        o.extend_from_slice(extra);
    });
}

pub fn put_backend_key(out: &mut BytesMut, pid: u32, key: u32) {
    put_message(out, b'K', |o| {
        o.put_u32(pid);
        o.put_u32(key);
    });
}

pub fn put_query(out: &mut BytesMut, sql: &str) {
    put_message(out, b'Q', |o| put_cstr(o, sql));
}

pub fn put_startup(out: &mut BytesMut, params: &[(&str, &str)]) {
    let len_at = out.len();
    out.put_u32(0);
    out.put_u32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.put_u8(0);
    let len = (out.len() - len_at) as u32;
    if let Some(slot) = out.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Parsed fields of an ErrorResponse / NoticeResponse from the upstream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// An ErrorResponse body with its statement position (`P`, 1-based, in characters) moved back
/// by `chars`; dropped when it falls inside the first `chars` characters.
pub fn shift_error_position(body: &[u8], chars: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut r = Reader::new(body, "ErrorResponse");
    while let Ok(field) = r.u8() {
        if field == 0 {
            break;
        }
        let Ok(value) = r.cbytes() else { break };
        if field == b'P' {
            let moved = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .and_then(|p| p.checked_sub(chars))
                .filter(|p| *p > 0);
            if let Some(p) = moved {
                out.push(b'P');
                out.extend_from_slice(p.to_string().as_bytes());
                out.push(0);
            }
            continue;
        }
        out.push(field);
        out.extend_from_slice(value);
        out.push(0);
    }
    out.push(0);
    out
}

pub fn decode_error(body: &[u8]) -> ServerError {
    let mut err = ServerError::default();
    let mut r = Reader::new(body, "ErrorResponse");
    while let Ok(field) = r.u8() {
        if field == 0 {
            break;
        }
        let Ok(value) = r.cstr() else { break };
        match field {
            b'V' => err.severity = value.to_owned(),
            b'S' if err.severity.is_empty() => err.severity = value.to_owned(),
            b'C' => err.code = value.to_owned(),
            b'M' => err.message = value.to_owned(),
            _ => {}
        }
    }
    err
}

/// Rows affected from a CommandComplete tag such as `INSERT 0 5`, `SELECT 3`, `UPDATE 2`.
pub fn rows_from_tag(body: &[u8]) -> Option<u64> {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    let last = tag.rsplit(|&b| b == b' ').next()?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages_across_reads() {
        let mut out = BytesMut::new();
        put_query(&mut out, "select 1");
        let full = out.clone();
        let mut buf = BytesMut::from(&full[..3]);
        assert_eq!(split_message(&mut buf, 1024).unwrap(), None);
        buf.extend_from_slice(&full[3..]);
        let m = split_message(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(m.tag, b'Q');
        assert_eq!(&m.body[..], b"select 1\0");
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_hostile_lengths() {
        let mut buf = BytesMut::from(&[b'Q', 0x80, 0, 0, 0][..]);
        assert!(matches!(
            split_message(&mut buf, 1 << 20),
            Err(FrameError::BadLength(_))
        ));
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            split_message(&mut buf, 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(split_message(&mut buf, 1 << 20).is_err());
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(split_startup(&mut buf).is_err());
    }

    #[test]
    fn decodes_startup_params() {
        let mut out = BytesMut::new();
        put_startup(&mut out, &[("user", "a"), ("database", "pg-local")]);
        let body = split_startup(&mut out).unwrap().unwrap();
        let StartupPacket::Startup { params } = decode_startup(&body).unwrap() else {
            panic!("not a startup packet")
        };
        assert_eq!(params[1], ("database".into(), "pg-local".into()));
    }

    #[test]
    fn truncated_startup_is_an_error() {
        let body = [0, 3, 0, 0, b'u', b's'];
        assert!(decode_startup(&body).is_err());
    }

    #[test]
    fn tags_give_row_counts() {
        assert_eq!(rows_from_tag(b"INSERT 0 5\0"), Some(5));
        assert_eq!(rows_from_tag(b"SELECT 12\0"), Some(12));
        assert_eq!(rows_from_tag(b"BEGIN\0"), None);
    }

    #[test]
    fn error_round_trip() {
        let mut out = BytesMut::new();
        put_error(&mut out, &ErrorFields::error("42501", "denied\0x"));
        let m = split_message(&mut out, 1024).unwrap().unwrap();
        let e = decode_error(&m.body);
        assert_eq!(e.code, "42501");
        assert_eq!(e.message, "deniedx");
    }

    #[test]
    fn error_positions_move_back_by_the_prefix_or_go() {
        let body = b"SERROR\0C42703\0Mcolumn does not exist\0P57\0\0";
        let moved = shift_error_position(body, 40);
        assert_eq!(
            &moved[..],
            &b"SERROR\0C42703\0Mcolumn does not exist\0P17\0\0"[..]
        );
        let dropped = shift_error_position(body, 57);
        assert_eq!(
            &dropped[..],
            &b"SERROR\0C42703\0Mcolumn does not exist\0\0"[..]
        );
        assert_eq!(decode_error(&dropped).code, "42703");
    }
}
