//! MySQL packet framing and the few payload encodings the gateway reads or writes.
//!
//! A packet on the wire is a 3-byte little-endian payload length, a 1-byte sequence id and the
//! payload. Payloads of 16 MiB − 1 bytes or more are split: every frame of exactly
//! `0xFFFFFF` bytes is followed by another frame (possibly empty) with the next sequence id.
//! Every length is checked; nothing here panics on hostile input.

use bytes::{Buf, BufMut, BytesMut};

/// The largest payload of one frame.
pub const MAX_FRAME: usize = 0xFF_FFFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("packet of {size} bytes exceeds the gateway limit of {limit} bytes ([gateway] max_message_bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("packets out of order: expected sequence id {expected}, got {got}")]
    Sequence { expected: u8, got: u8 },
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
}

pub fn malformed(what: &'static str, why: impl Into<String>) -> FrameError {
    FrameError::Malformed {
        what,
        why: why.into(),
    }
}

/// One logical packet: the payload of all its frames joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the first frame.
    pub seq: u8,
    /// Sequence id of the last frame (the next packet continues from `last_seq + 1`).
    pub last_seq: u8,
    pub payload: BytesMut,
}

/// Reads the header of the frame at the start of `buf`: (payload length, sequence id).
pub fn frame_header(buf: &[u8]) -> Option<(usize, u8)> {
    match buf {
        [a, b, c, seq, ..] => Some((
            usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16,
            *seq,
        )),
        _ => None,
    }
}

/// Takes one complete logical packet off the front of `buf`, or `None` if more bytes are
/// needed. `expected_seq`: the sequence id the first frame must carry (`None`: any).
pub fn split_packet(
    buf: &mut BytesMut,
    max: usize,
    expected_seq: Option<u8>,
) -> Result<Option<Packet>, FrameError> {
    // First pass: find where the packet ends without consuming anything.
    let mut pos = 0usize;
    let mut total = 0usize;
    let mut seq_expected = expected_seq;
    let mut first_seq = None;
    let last_seq;
    loop {
        let Some((len, seq)) = frame_header(buf.get(pos..).unwrap_or_default()) else {
            return Ok(None);
        };
        if let Some(want) = seq_expected {
            if seq != want {
                return Err(FrameError::Sequence {
                    expected: want,
                    got: seq,
                });
            }
        }
        first_seq.get_or_insert(seq);
        total += len;
        if total > max {
            return Err(FrameError::TooLarge {
                size: total,
                limit: max,
            });
        }
        if buf.len() < pos + 4 + len {
            return Ok(None);
        }
        pos += 4 + len;
        seq_expected = Some(seq.wrapping_add(1));
        if len < MAX_FRAME {
            last_seq = seq;
            break;
        }
    }
    let mut payload = BytesMut::with_capacity(total);
    let mut frames = buf.split_to(pos);
    while frames.len() >= 4 {
        let len = frame_header(&frames).map(|(l, _)| l).unwrap_or(0);
        frames.advance(4);
        let take = len.min(frames.len());
        payload.extend_from_slice(frames.get(..take).unwrap_or_default());
        frames.advance(take);
    }
    Ok(Some(Packet {
        seq: first_seq.unwrap_or(0),
        last_seq,
        payload,
    }))
}

/// Writes `payload` as one logical packet starting at sequence id `*seq`; `*seq` is left at
/// the id the next packet must use.
pub fn put_packet(out: &mut BytesMut, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.reserve(4 + n);
        out.put_uint_le(n as u64, 3);
        out.put_u8(*seq);
        *seq = seq.wrapping_add(1);
        out.extend_from_slice(rest.get(..n).unwrap_or_default());
        rest = rest.get(n..).unwrap_or_default();
        if n < MAX_FRAME {
            break;
        }
    }
}

/// A cursor over a payload with checked reads.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn err(&self, why: &str) -> FrameError {
        malformed(self.what, why)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.bytes(1)?.first().copied().unwrap_or(0))
    }

    pub fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    pub fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.bytes(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    pub fn uint(&mut self, n: usize) -> Result<u64, FrameError> {
        let b = self.bytes(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A length-encoded integer; `None` for the NULL marker `0xFB`.
    pub fn lenenc(&mut self) -> Result<Option<u64>, FrameError> {
        match self.u8()? {
            0xFB => Ok(None),
            0xFC => self.uint(2).map(Some),
            0xFD => self.uint(3).map(Some),
            0xFE => self.uint(8).map(Some),
            0xFF => Err(self.err("0xFF is not a length-encoded integer")),
            n => Ok(Some(u64::from(n))),
        }
    }

    pub fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>, FrameError> {
        match self.lenenc()? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| self.err("length overflows"))?;
                self.bytes(n).map(Some)
            }
        }
    }

    /// A NUL-terminated string; a missing terminator takes the rest.
    pub fn cstr(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(i) => {
                let (s, tail) = self.buf.split_at(i);
                self.buf = tail.get(1..).unwrap_or_default();
                s
            }
            None => self.rest(),
        }
    }
}

pub fn put_lenenc(out: &mut BytesMut, n: u64) {
    if n < 0xFB {
        out.put_u8(n as u8);
    } else if n <= 0xFFFF {
        out.put_u8(0xFC);
        out.put_u16_le(n as u16);
    } else if n <= 0xFF_FFFF {
        out.put_u8(0xFD);
        out.put_uint_le(n, 3);
    } else {
        out.put_u8(0xFE);
        out.put_u64_le(n);
    }
}

pub fn put_lenenc_bytes(out: &mut BytesMut, b: &[u8]) {
    put_lenenc(out, b.len() as u64);
    out.extend_from_slice(b);
}

// Capability flags (CLIENT_*).
pub const CLIENT_LONG_PASSWORD: u32 = 1;
pub const CLIENT_FOUND_ROWS: u32 = 2;
pub const CLIENT_LONG_FLAG: u32 = 4;
pub const CLIENT_CONNECT_WITH_DB: u32 = 8;
pub const CLIENT_NO_SCHEMA: u32 = 16;
pub const CLIENT_COMPRESS: u32 = 32;
pub const CLIENT_ODBC: u32 = 64;
pub const CLIENT_LOCAL_FILES: u32 = 128;
pub const CLIENT_IGNORE_SPACE: u32 = 256;
pub const CLIENT_PROTOCOL_41: u32 = 512;
pub const CLIENT_INTERACTIVE: u32 = 1024;
pub const CLIENT_SSL: u32 = 2048;
pub const CLIENT_TRANSACTIONS: u32 = 8192;
pub const CLIENT_SECURE_CONNECTION: u32 = 32768;
pub const CLIENT_MULTI_STATEMENTS: u32 = 1 << 16;
pub const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
pub const CLIENT_PS_MULTI_RESULTS: u32 = 1 << 18;
pub const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
pub const CLIENT_SESSION_TRACK: u32 = 1 << 23;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;

/// What the gateway offers clients. Deliberately conservative so that any MySQL ≥ 5.5 or
/// MariaDB upstream supports all of it: no `DEPRECATE_EOF`/`SESSION_TRACK` (result framing
/// stays with EOF packets, which every server speaks), no compression, no `LOCAL_FILES` (the
/// server could ask the client's machine for any file), no query attributes.
pub const GATEWAY_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_NO_SCHEMA
    | CLIENT_ODBC
    | CLIENT_IGNORE_SPACE
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;

/// An ERR packet payload.
pub fn err_payload(code: u16, sqlstate: &str, message: &str) -> BytesMut {
    let mut p = BytesMut::with_capacity(9 + message.len());
    p.put_u8(0xFF);
    p.put_u16_le(code);
    p.put_u8(b'#');
    let state = sqlstate.as_bytes();
    for i in 0..5 {
        p.put_u8(state.get(i).copied().unwrap_or(b'0'));
    }
    p.extend_from_slice(message.as_bytes());
    p
}

/// An OK packet payload (no session state info).
pub fn ok_payload(affected: u64, last_insert_id: u64, status: u16, warnings: u16) -> BytesMut {
    let mut p = BytesMut::with_capacity(16);
    p.put_u8(0x00);
    put_lenenc(&mut p, affected);
    put_lenenc(&mut p, last_insert_id);
    p.put_u16_le(status);
    p.put_u16_le(warnings);
    p
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

pub fn decode_err(payload: &[u8]) -> ErrPacket {
    let mut r = Reader::new(payload, "ERR packet");
    let _ = r.u8();
    let code = r.u16().unwrap_or(0);
    let mut sqlstate = String::new();
    if payload.get(3) == Some(&b'#') {
        let _ = r.u8();
        sqlstate = String::from_utf8_lossy(r.bytes(5).unwrap_or_default()).into_owned();
    }
    ErrPacket {
        code,
        sqlstate,
        message: String::from_utf8_lossy(r.rest()).into_owned(),
    }
}

/// An OK packet's affected rows and status flags (`payload[0] == 0x00` or `0xFE`).
pub fn decode_ok(payload: &[u8]) -> Result<(u64, u16), FrameError> {
    let mut r = Reader::new(payload, "OK packet");
    r.u8()?;
    let affected = r.lenenc()?.unwrap_or(0);
    r.lenenc()?;
    let status = r.u16()?;
    Ok((affected, status))
}

/// An EOF packet: `0xFE` and shorter than 9 bytes. (A row can start with `0xFE` only when its
/// first value is longer than 16 MiB, so it is never that short.)
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFE) && payload.len() < 9
}

/// The status flags of an EOF packet.
pub fn eof_status(payload: &[u8]) -> u16 {
    match payload {
        [0xFE, _, _, a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_small_and_split() {
        for size in [0usize, 1, 100, MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 5] {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut out = BytesMut::new();
            let mut seq = 3;
            put_packet(&mut out, &mut seq, &payload);
            let frames = if size >= MAX_FRAME { 2 } else { 1 };
            assert_eq!(seq, 3 + frames);
            let p = split_packet(&mut out, 64 << 20, Some(3)).unwrap().unwrap();
            assert_eq!(p.payload.len(), size);
            assert_eq!(&p.payload[..], &payload[..]);
            assert_eq!(p.seq, 3);
            assert_eq!(p.last_seq, 3 + frames - 1);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn partial_and_errors() {
        let mut out = BytesMut::new();
        let mut seq = 0;
        put_packet(&mut out, &mut seq, b"\x03select 1");
        let mut part = BytesMut::from(&out[..5]);
        assert_eq!(split_packet(&mut part, 1024, Some(0)), Ok(None));
        let mut wrong = out.clone();
        assert!(matches!(
            split_packet(&mut wrong, 1024, Some(1)),
            Err(FrameError::Sequence { .. })
        ));
        let mut big = out.clone();
        assert!(matches!(
            split_packet(&mut big, 4, Some(0)),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn lenenc_round_trip() {
        for n in [
            0u64,
            250,
            251,
            65535,
            65536,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut b = BytesMut::new();
            put_lenenc(&mut b, n);
            assert_eq!(Reader::new(&b, "x").lenenc().unwrap(), Some(n));
        }
    }

    #[test]
    fn err_and_ok() {
        let e = err_payload(1142, "42000", "denied");
        let d = decode_err(&e);
        assert_eq!(d.code, 1142);
        assert_eq!(d.sqlstate, "42000");
        assert_eq!(d.message, "denied");
        let ok = ok_payload(5, 0, SERVER_MORE_RESULTS_EXISTS, 0);
        assert_eq!(decode_ok(&ok).unwrap(), (5, SERVER_MORE_RESULTS_EXISTS));
    }
}
