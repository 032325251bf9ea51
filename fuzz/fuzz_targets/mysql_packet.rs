//! Fuzzes the MySQL packet decoder of `airlock-proto-mysql` (framing with 16 MiB splits, the
//! handshake packets, OK/ERR/length-encoded fields). The sources are compiled in directly, as
//! for the PostgreSQL targets, to keep the instrumented dependency graph small.
//!
//! Properties besides "never panics": the same bytes fed in different read sizes give the same
//! packets, and every decoded packet re-encodes (put_packet) to frames that decode to it again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/proto-mysql/src/codec.rs"]
mod codec;
#[allow(dead_code)]
#[path = "../../crates/proto-mysql/src/handshake.rs"]
mod handshake;

/// Small enough to keep runs fast, large enough to reach the limit check.
const LIMIT: usize = 1 << 16;

fn frames(data: &[u8], chunk: usize) -> (Vec<codec::Packet>, Option<codec::FrameError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut seq = Some(0u8);
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec::split_packet(&mut buf, LIMIT, seq) {
                Ok(Some(p)) => {
                    seq = Some(p.last_seq.wrapping_add(1));
                    out.push(p);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let chunk = usize::from(data.first().copied().unwrap_or(1)) + 1;
    let whole = frames(data, data.len());
    let pieces = frames(data, chunk);
    assert_eq!(whole.0, pieces.0, "read size changed the packets");
    assert_eq!(whole.1, pieces.1, "read size changed the error");
    for p in &whole.0 {
        let payload = &p.payload[..];
        let _ = handshake::Response::decode(payload);
        let _ = handshake::Greeting::decode(payload);
        let _ = codec::decode_ok(payload);
        let _ = codec::decode_err(payload);
        let _ = codec::is_eof(payload);
        let _ = codec::eof_status(payload);
        let mut r = codec::Reader::new(payload, "fuzz");
        while r.remaining() > 0 {
            if r.lenenc_bytes().is_err() {
                break;
            }
        }
        let mut out = BytesMut::new();
        let mut seq = p.seq;
        codec::put_packet(&mut out, &mut seq, payload);
        let again = codec::split_packet(&mut out, LIMIT, Some(p.seq))
            .expect("re-encoded packet decodes")
            .expect("re-encoded packet is complete");
        assert_eq!(&again.payload[..], payload);
        if let Ok(g) = handshake::Greeting::decode(payload) {
            let _ = handshake::Greeting::decode(&g.encode());
        }
    }
});
