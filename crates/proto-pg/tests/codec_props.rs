//! Property tests for the PostgreSQL wire codec. The codec reads bytes from untrusted clients and
//! upstreams, so beyond "decodes what we encode" these check that no input and no way of
//! splitting it across reads can make it panic, buffer without bound or disagree with itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use airlock_proto_pg::codec::{
    decode_error, decode_startup, peek_message, put_cstr, put_error, put_message, put_query,
    put_startup, rows_from_tag, split_message, split_startup, ErrorFields, FrameError, Message,
    Reader, StartupPacket, CANCEL_REQUEST, MAX_STARTUP_LEN, PROTOCOL_3_0,
};
use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

/// What a decoder loop saw: the messages it produced, the error that stopped it (if any) and
/// the bytes still buffered at the end.
#[derive(Debug, PartialEq, Eq)]
struct Outcome<T> {
    items: Vec<T>,
    error: Option<FrameError>,
    leftover: Vec<u8>,
}

/// Feeds `data` to `split` in the chunks delimited by `cuts`, draining complete items after every
/// chunk the way the relay does after every read.
fn feed<T>(
    data: &[u8],
    cuts: &[usize],
    mut split: impl FnMut(&mut BytesMut) -> Result<Option<T>, FrameError>,
) -> Outcome<T> {
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|c| if data.is_empty() { 0 } else { c % data.len() })
        .collect();
    bounds.push(data.len());
    bounds.sort_unstable();
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut start = 0;
    for end in bounds {
        buf.extend_from_slice(&data[start..end]);
        start = end;
        loop {
            match split(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        items,
                        error: Some(e),
                        leftover: buf.to_vec(),
                    }
                }
            }
        }
    }
    Outcome {
        items,
        error: None,
        leftover: buf.to_vec(),
    }
}

/// Chunked and whole feeding must yield the same items and stop on the same error. What is
/// left buffered after an error differs (the rest of the input had not arrived yet) and does
/// not matter: the connection is closed.
fn assert_same_outcome<T: PartialEq + std::fmt::Debug>(
    chunked: &Outcome<T>,
    whole: &Outcome<T>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(&chunked.items, &whole.items);
    prop_assert_eq!(&chunked.error, &whole.error);
    if whole.error.is_none() {
        prop_assert_eq!(&chunked.leftover, &whole.leftover);
    }
    Ok(())
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_message(&mut out, tag, |o| o.extend_from_slice(body));
    out.to_vec()
}

/// Byte streams that reach past the header check: mostly real frames, interleaved with raw
/// noise and headers carrying arbitrary lengths. Plain random bytes almost always stop at the
/// first length word.
fn frontend_stream() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        4 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(tag, body)| frame(tag, &body)),
        1 => prop::collection::vec(any::<u8>(), 0..16),
        1 => (any::<u8>(), any::<i32>()).prop_map(|(tag, len)| {
            let mut v = vec![tag];
            v.extend_from_slice(&len.to_be_bytes());
            v
        }),
    ];
    prop::collection::vec(segment, 0..12).prop_map(|segs| segs.concat())
}

fn startup_stream() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        3 => prop::collection::vec(("[a-z_]{1,12}", "\\PC{0,16}"), 0..4).prop_map(|params| {
            let params: Vec<(&str, &str)> =
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut out = BytesMut::new();
            put_startup(&mut out, &params);
            out.to_vec()
        }),
        1 => (any::<i32>(), any::<u32>()).prop_map(|(len, code)| {
            let mut v = len.to_be_bytes().to_vec();
            v.extend_from_slice(&code.to_be_bytes());
            v
        }),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop::collection::vec(segment, 0..6).prop_map(|segs| segs.concat())
}

fn limits() -> impl Strategy<Value = usize> {
    prop_oneof![0..=80usize, Just(1 << 20), Just(i32::MAX as usize)]
}

fn without_nul(s: &str) -> String {
    s.chars().filter(|&c| c != '\0').collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn split_message_chunking_does_not_change_the_outcome(
        data in prop_oneof![frontend_stream(), prop::collection::vec(any::<u8>(), 0..256)],
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        limit in limits(),
    ) {
        let whole = feed(&data, &[], |b| split_message(b, limit));
        let chunked = feed(&data, &cuts, |b| split_message(b, limit));
        assert_same_outcome(&chunked, &whole)?;
        // Every byte is accounted for: consumed as a frame or still buffered, unless an error
        // stopped the loop (the connection is closed then).
        if whole.error.is_none() {
            let consumed: usize = whole.items.iter().map(|m| 5 + m.body.len()).sum();
            prop_assert_eq!(consumed + whole.leftover.len(), data.len());
            prop_assert_eq!(&data[consumed..], &whole.leftover[..]);
        }
        for m in &whole.items {
            prop_assert!(m.body.len() <= limit);
        }
    }

    #[test]
    fn well_formed_messages_survive_any_split(
        msgs in prop::collection::vec(
            prop_oneof![
                (any::<u8>(), prop::collection::vec(any::<u8>(), 0..200))
                    .prop_map(|(tag, body)| (tag, body, None)),
                "\\PC{0,80}".prop_map(|sql| (b'Q', Vec::new(), Some(sql))),
            ],
            0..10,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for (tag, body, sql) in &msgs {
            match sql {
                Some(sql) => {
                    put_query(&mut wire, sql);
                    let mut body = without_nul(sql).into_bytes();
                    body.push(0);
                    expected.push(Message { tag: b'Q', body: body.into() });
                }
                None => {
                    put_message(&mut wire, *tag, |o| o.extend_from_slice(body));
                    expected.push(Message { tag: *tag, body: body.clone().into() });
                }
            }
        }
        let got = feed(&wire, &cuts, |b| split_message(b, 256));
        prop_assert_eq!(got.error, None);
        prop_assert!(got.leftover.is_empty());
        prop_assert_eq!(&got.items, &expected);
        for (m, (_, _, sql)) in got.items.iter().zip(&msgs) {
            if let Some(sql) = sql {
                let text = Reader::new(&m.body, "Query").cstr().unwrap();
                prop_assert_eq!(text, without_nul(sql));
            }
        }
    }

    #[test]
    fn oversized_lengths_are_rejected_from_the_header_alone(
        tag in any::<u8>(),
        limit in 0usize..(1 << 24),
        excess in 1i64..(1 << 30),
    ) {
        let body_len = limit as i64 + excess;
        let len = (body_len + 4).min(i64::from(i32::MAX)) as i32;
        prop_assume!(len as i64 - 4 > limit as i64);
        let mut header = vec![tag];
        header.extend_from_slice(&len.to_be_bytes());
        let mut buf = BytesMut::from(&header[..]);
        let result = split_message(&mut buf, limit);
        prop_assert_eq!(
            result,
            Err(FrameError::TooLarge { len: len as usize - 4, limit })
        );
        // Rejected before any room is made for the claimed body.
        prop_assert!(buf.capacity() < 64, "capacity grew to {}", buf.capacity());
        prop_assert_eq!(
            peek_message(&header, limit),
            Err(FrameError::TooLarge { len: len as usize - 4, limit })
        );
    }

    #[test]
    fn lengths_below_four_are_bad(tag in any::<u8>(), len in prop_oneof![i32::MIN..4, -2..4i32], tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&tail);
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(split_message(&mut buf, 1 << 20), Err(FrameError::BadLength(len.into())));
        prop_assert_eq!(peek_message(&bytes, 1 << 20), Err(FrameError::BadLength(len.into())));
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_accepted(tag in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..300)) {
        let wire = frame(tag, &body);
        let mut buf = BytesMut::from(&wire[..]);
        prop_assert_eq!(
            split_message(&mut buf, body.len()),
            Ok(Some(Message { tag, body: body.clone().into() }))
        );
        prop_assert_eq!(peek_message(&wire, body.len()), Ok(Some((tag, wire.len()))));
    }

    #[test]
    fn partial_frames_wait_without_consuming(
        tag in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 1..300),
        keep in any::<usize>(),
    ) {
        let wire = frame(tag, &body);
        let keep = keep % wire.len();
        let mut buf = BytesMut::from(&wire[..keep]);
        prop_assert_eq!(split_message(&mut buf, 300), Ok(None));
        prop_assert_eq!(&buf[..], &wire[..keep]);
        prop_assert_eq!(peek_message(&wire[..keep], 300), Ok(None));
    }

    #[test]
    fn peek_agrees_with_split(
        data in prop_oneof![frontend_stream(), prop::collection::vec(any::<u8>(), 0..64)],
        limit in limits(),
    ) {
        let peeked = peek_message(&data, limit);
        let mut buf = BytesMut::from(&data[..]);
        let split = split_message(&mut buf, limit);
        match (peeked, split) {
            (Ok(Some((tag, total))), Ok(Some(m))) => {
                prop_assert_eq!(tag, m.tag);
                prop_assert_eq!(total, 5 + m.body.len());
                prop_assert_eq!(&data[5..total], &m.body[..]);
                prop_assert_eq!(&buf[..], &data[total..]);
            }
            (Ok(None), Ok(None)) => prop_assert_eq!(&buf[..], &data[..]),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (p, s) => {
                return Err(TestCaseError::fail(format!("peek {p:?} but split {s:?}")));
            }
        }
    }

    #[test]
    fn split_startup_chunking_does_not_change_the_outcome(
        data in prop_oneof![startup_stream(), prop::collection::vec(any::<u8>(), 0..64)],
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = feed(&data, &[], split_startup);
        let chunked = feed(&data, &cuts, split_startup);
        assert_same_outcome(&chunked, &whole)?;
        if whole.error.is_none() {
            let consumed: usize = whole.items.iter().map(|b| 4 + b.len()).sum();
            prop_assert_eq!(consumed + whole.leftover.len(), data.len());
        }
        for body in &whole.items {
            prop_assert!(body.len() >= 4 && body.len() + 4 <= MAX_STARTUP_LEN);
            let _ = decode_startup(body);
        }
    }

    #[test]
    fn startup_lengths_are_checked(
        len in prop_oneof![
            any::<i32>(),
            -2..24i32,
            (MAX_STARTUP_LEN as i32 - 2)..(MAX_STARTUP_LEN as i32 + 2),
        ],
        tail in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let mut buf = BytesMut::from(&bytes[..]);
        let got = split_startup(&mut buf);
        if len < 8 {
            prop_assert_eq!(got, Err(FrameError::BadLength(len.into())));
        } else if len as usize > MAX_STARTUP_LEN {
            prop_assert_eq!(got, Err(FrameError::TooLarge { len: len as usize, limit: MAX_STARTUP_LEN }));
            prop_assert!(buf.capacity() < 64);
        } else if bytes.len() < len as usize {
            prop_assert_eq!(got, Ok(None));
            prop_assert_eq!(&buf[..], &bytes[..]);
        } else {
            let body = got.unwrap().unwrap();
            prop_assert_eq!(&body[..], &bytes[4..len as usize]);
        }
    }

    #[test]
    fn decode_startup_never_panics(body in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode_startup(&body);
    }

    #[test]
    fn decode_startup_never_panics_on_protocol_3(tail in prop::collection::vec(
        prop_oneof![Just(0u8), Just(b'a'), Just(0xff), any::<u8>()], 0..64,
    )) {
        let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
        body.extend_from_slice(&tail);
        if let Ok(StartupPacket::Startup { params }) = decode_startup(&body) {
            for (name, _) in &params {
                prop_assert!(!name.is_empty());
            }
        }
    }

    #[test]
    fn cancel_requests_need_a_sane_key(pid in any::<u32>(), key in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut body = CANCEL_REQUEST.to_be_bytes().to_vec();
        body.extend_from_slice(&pid.to_be_bytes());
        body.extend_from_slice(&key);
        let got = decode_startup(&body);
        if key.is_empty() || key.len() > 256 {
            prop_assert!(got.is_err());
        } else {
            prop_assert_eq!(got, Ok(StartupPacket::Cancel { pid, key }));
        }
    }

    #[test]
    fn startup_params_round_trip(
        params in prop::collection::vec(("\\PC{1,12}", "\\PC{0,24}"), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        // An empty name ends the list on the wire, so names that are only NULs cannot travel.
        prop_assume!(params.iter().all(|(k, _)| !without_nul(k).is_empty()));
        let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut wire = BytesMut::new();
        put_startup(&mut wire, &borrowed);
        prop_assume!(wire.len() <= MAX_STARTUP_LEN);
        let got = feed(&wire, &cuts, split_startup);
        prop_assert_eq!(got.error, None);
        prop_assert_eq!(got.items.len(), 1);
        let expected: Vec<(String, String)> =
            params.iter().map(|(k, v)| (without_nul(k), without_nul(v))).collect();
        prop_assert_eq!(decode_startup(&got.items[0]), Ok(StartupPacket::Startup { params: expected }));
    }

    #[test]
    fn decode_error_never_panics(body in prop::collection::vec(
        prop_oneof![Just(0u8), Just(b'C'), Just(b'M'), Just(b'S'), Just(b'V'), any::<u8>()], 0..128,
    )) {
        let _ = decode_error(&body);
    }

    #[test]
    fn errors_round_trip(
        message in "\\PC{0,64}",
        hint in proptest::option::of("\\PC{0,32}"),
        detail in proptest::option::of("\\PC{0,32}"),
        fatal in any::<bool>(),
    ) {
        let mut f = if fatal { ErrorFields::fatal("42501", message.clone()) } else { ErrorFields::error("08P01", message.clone()) };
        if let Some(h) = hint { f = f.with_hint(h); }
        if let Some(d) = detail { f = f.with_detail(d); }
        let mut wire = BytesMut::new();
        put_error(&mut wire, &f);
        let m = split_message(&mut wire, 1 << 16).unwrap().unwrap();
        prop_assert_eq!(m.tag, b'E');
        let e = decode_error(&m.body);
        prop_assert_eq!(e.severity, f.severity);
        prop_assert_eq!(e.code, f.code);
        prop_assert_eq!(e.message, without_nul(&message));
    }

    #[test]
    fn rows_from_tag_never_panics(body in prop::collection::vec(
        prop_oneof![Just(b' '), Just(0u8), Just(b'1'), any::<u8>()], 0..48,
    )) {
        let _ = rows_from_tag(&body);
    }

    #[test]
    fn rows_from_tag_reads_the_count(
        command in prop_oneof![Just("INSERT 0"), Just("SELECT"), Just("UPDATE"), Just("DELETE"), Just("COPY"), Just("MERGE")],
        rows in any::<u64>(),
        nul in any::<bool>(),
    ) {
        let mut tag = format!("{command} {rows}").into_bytes();
        if nul { tag.push(0); }
        prop_assert_eq!(rows_from_tag(&tag), Some(rows));
    }

    #[test]
    fn reader_never_over_reads(
        body in prop::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..64),
        ops in prop::collection::vec((0u8..6, any::<usize>()), 0..16),
    ) {
        let mut r = Reader::new(&body, "fuzz");
        let mut consumed = 0usize;
        for (op, n) in ops {
            let before = consumed;
            let took = match op {
                0 => r.u8().map(|_| 1),
                1 => r.u16().map(|_| 2),
                2 => r.u32().map(|_| 4),
                3 => r.i32().map(|_| 4),
                4 => r.take(n % 80).map(<[u8]>::len),
                _ => r.cstr().map(|s| s.len() + 1),
            };
            match took {
                Ok(k) => consumed += k,
                // A failed fixed-width read leaves the cursor alone; cstr may skip a bad string.
                Err(_) if op < 5 => prop_assert_eq!(consumed, before),
                Err(_) => {}
            }
            prop_assert!(consumed <= body.len());
        }
        let rest = r.rest();
        prop_assert!(r.is_empty());
        prop_assert!(rest.len() <= body.len() - consumed);
        if rest.len() == body.len() - consumed {
            prop_assert_eq!(rest, &body[consumed..]);
        }
    }

    #[test]
    fn query_bodies_keep_their_text(sql in "\\PC{0,200}") {
        let mut wire = BytesMut::new();
        put_query(&mut wire, &sql);
        let m = split_message(&mut wire, 1 << 16).unwrap().unwrap();
        let mut r = Reader::new(&m.body, "Query");
        prop_assert_eq!(r.cstr().unwrap(), without_nul(&sql));
        prop_assert!(r.is_empty());
    }

    #[test]
    fn put_cstr_is_always_one_terminated_string(s in ".{0,40}") {
        let mut out = BytesMut::new();
        put_cstr(&mut out, &s);
        out.put_u8(b'x');
        let mut r = Reader::new(&out, "cstr");
        prop_assert_eq!(r.cstr().unwrap(), without_nul(&s));
        prop_assert_eq!(r.rest(), b"x");
    }
}
