//! Fuzz drivers for the PostgreSQL wire codec of `airlock-proto-pg`.
//!
//! The codec source is compiled in directly rather than through the crate: it needs only
//! `bytes` and `thiserror`, and this keeps fuzz builds from instrumenting the gateway's whole
//! dependency graph (tokio, rustls, the SQL parser...). If `codec.rs` ever starts using other
//! modules of its crate, switch to a path dependency on `airlock-proto-pg`.
//!
//! Besides "never panics", the drivers assert properties whose failure is a real bug: feeding
//! the same bytes in different read sizes gives the same frames, `peek_message` agrees with
//! `split_message`, and decoded startup parameters survive re-encoding.

#[path = "../../crates/proto-pg/src/codec.rs"]
pub mod codec;

use bytes::{Bytes, BytesMut};
use codec::{
    decode_error, decode_startup, peek_message, put_query, put_startup, rows_from_tag,
    split_message, split_startup, FrameError, Message, Reader, StartupPacket,
};

/// Body limit for the relay phase. The gateway uses 64 MiB; a smaller one keeps the
/// executions fast (`split_message` reserves room for a announced body up to the limit) and
/// still lets the fuzzer reach the limit check with short inputs.
pub const RELAY_LIMIT: usize = 1 << 16;
/// The limit `read_password` uses in `lib.rs`.
pub const PASSWORD_LIMIT: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Startup(Bytes),
    Message(Message),
}

#[derive(Debug, PartialEq, Eq)]
struct Framed {
    frames: Vec<Frame>,
    error: Option<FrameError>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    Password,
    Relay,
    Closed,
}

/// Splits a client's byte stream the way the gateway does, arriving `chunk` bytes per read:
/// startup packets until a StartupMessage (SSL/GSS requests are answered and followed by
/// another packet), then the password message, then relay-phase messages.
fn frame_client_stream(data: &[u8], chunk: usize) -> Framed {
    let mut buf = BytesMut::new();
    let mut phase = Phase::Startup;
    let mut frames = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match phase {
                Phase::Closed => {
                    return Framed {
                        frames,
                        error: None,
                    }
                }
                Phase::Startup => match split_startup(&mut buf) {
                    Ok(Some(body)) => {
                        phase = match decode_startup(&body) {
                            Ok(StartupPacket::Ssl | StartupPacket::GssEnc) => Phase::Startup,
                            Ok(StartupPacket::Startup { .. }) => Phase::Password,
                            Ok(_) | Err(_) => Phase::Closed,
                        };
                        frames.push(Frame::Startup(body));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Framed {
                            frames,
                            error: Some(e),
                        }
                    }
                },
                Phase::Password | Phase::Relay => {
                    let limit = if phase == Phase::Password {
                        PASSWORD_LIMIT
                    } else {
                        RELAY_LIMIT
                    };
                    let peeked = peek_message(&buf, limit);
                    let split = split_message(&mut buf, limit);
                    check_peek_matches_split(&peeked, &split);
                    match split {
                        Ok(Some(m)) => {
                            if phase == Phase::Password {
                                phase = if m.tag == b'p' {
                                    Phase::Relay
                                } else {
                                    Phase::Closed
                                };
                            }
                            frames.push(Frame::Message(m));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            return Framed {
                                frames,
                                error: Some(e),
                            }
                        }
                    }
                }
            }
        }
    }
    Framed {
        frames,
        error: None,
    }
}

fn check_peek_matches_split(
    peeked: &Result<Option<(u8, usize)>, FrameError>,
    split: &Result<Option<Message>, FrameError>,
) {
    match (peeked, split) {
        (Ok(Some((tag, total))), Ok(Some(m))) => {
            assert_eq!(*tag, m.tag, "peek and split disagree on the tag");
            assert_eq!(
                *total,
                5 + m.body.len(),
                "peek and split disagree on the length"
            );
        }
        (Ok(None), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "peek and split fail differently"),
        (p, s) => panic!("peek_message gave {p:?} but split_message gave {s:?}"),
    }
}

/// Decodes a frontend message body the way the relay (and the PostgreSQL protocol) reads it.
fn decode_frontend(m: &Message) -> Result<(), FrameError> {
    let mut r = Reader::new(&m.body, "fuzz");
    match m.tag {
        b'p' | b'f' => {
            r.cstr()?;
        }
        b'Q' => {
            let text = r.cstr()?;
            // What the relay forwards or logs must be the text the client sent.
            let mut out = BytesMut::new();
            put_query(&mut out, text);
            let again = split_message(&mut out, usize::MAX)?.expect("a whole frame was built");
            assert_eq!(Reader::new(&again.body, "Query").cstr()?, text);
        }
        b'P' => {
            r.cstr()?;
            r.cstr()?;
            for _ in 0..r.u16()? {
                r.u32()?;
            }
        }
        b'B' => {
            r.cstr()?;
            r.cstr()?;
            for _ in 0..r.u16()? {
                r.u16()?;
            }
            for _ in 0..r.u16()? {
                let len = r.i32()?;
                // -1 is NULL; other negative lengths are invalid and are skipped here as
                // the upstream would reject them.
                if let Ok(len) = usize::try_from(len) {
                    r.take(len)?;
                }
            }
            for _ in 0..r.u16()? {
                r.u16()?;
            }
        }
        b'E' => {
            r.cstr()?;
            r.i32()?;
        }
        b'D' | b'C' => {
            r.u8()?;
            r.cstr()?;
        }
        b'F' => {
            r.u32()?;
            for _ in 0..r.u16()? {
                r.u16()?;
            }
        }
        _ => {
            r.rest();
        }
    }
    Ok(())
}

/// Target `pg_frontend_stream`: a whole client connection, as bytes.
pub fn frontend_stream(data: &[u8]) {
    let whole = frame_client_stream(data, data.len());
    // The last byte picks a read size, so the fuzzer explores both framing and splitting.
    let chunk = data.last().map_or(1, |&b| usize::from(b % 17) + 1);
    let chunked = frame_client_stream(data, chunk);
    assert_eq!(whole, chunked, "read size {chunk} changed the framing");

    for frame in &whole.frames {
        if let Frame::Message(m) = frame {
            let _ = decode_frontend(m);
            // The same bodies also arrive from the upstream side, as ErrorResponse and
            // CommandComplete.
            let _ = decode_error(&m.body);
            let _ = rows_from_tag(&m.body);
        }
    }
}

/// Target `pg_startup`: one startup packet body, or a sequence of length-prefixed packets.
pub fn startup(data: &[u8]) {
    check_startup_body(data);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(body)) = split_startup(&mut buf) {
        assert!(
            body.len() >= 4,
            "split_startup returned a {}-byte body",
            body.len()
        );
        check_startup_body(&body);
    }
}

fn check_startup_body(body: &[u8]) {
    match decode_startup(body) {
        Ok(StartupPacket::Startup { params }) => {
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| {
                    assert!(!k.is_empty(), "empty parameter name decoded");
                    (k.as_str(), v.as_str())
                })
                .collect();
            let mut out = BytesMut::new();
            put_startup(&mut out, &pairs);
            if out.len() > codec::MAX_STARTUP_LEN {
                // Only reachable for bodies that did not come through split_startup.
                return;
            }
            let again = split_startup(&mut out)
                .expect("re-encoded startup packet is valid")
                .expect("re-encoded startup packet is whole");
            assert_eq!(
                decode_startup(&again),
                Ok(StartupPacket::Startup { params }),
                "startup parameters changed on re-encoding"
            );
        }
        Ok(StartupPacket::Cancel { key, .. }) => {
            assert!(
                !key.is_empty() && key.len() <= 256,
                "cancel key of {} bytes",
                key.len()
            );
        }
        Ok(_) | Err(_) => {}
    }
}
