//! Properties of the packet codec on arbitrary input: never panics, chunking does not change
//! the result, encoding round-trips.

use airlock_proto_mysql::codec::{put_packet, split_packet, FrameError, Packet};
use bytes::BytesMut;
use proptest::prelude::*;

fn decode(data: &[u8], chunk: usize, max: usize) -> (Vec<Packet>, Option<FrameError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut seq = Some(0u8);
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match split_packet(&mut buf, max, seq) {
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

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_is_invisible(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..64,
    ) {
        let whole = decode(&data, data.len(), 1024);
        let pieces = decode(&data, chunk, 1024);
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn packets_round_trip(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
        chunk in 1usize..97,
    ) {
        let mut wire = BytesMut::new();
        let mut seq = 0u8;
        for p in &payloads {
            put_packet(&mut wire, &mut seq, p);
        }
        let (got, err) = decode(&wire, chunk, 1 << 20);
        prop_assert!(err.is_none());
        let got: Vec<Vec<u8>> = got.into_iter().map(|p| p.payload.to_vec()).collect();
        prop_assert_eq!(got, payloads);
    }
}

#[test]
fn a_16_mib_minus_1_payload_is_two_frames_and_round_trips() {
    let payload = vec![7u8; 0xFF_FFFF];
    let mut wire = BytesMut::new();
    let mut seq = 0u8;
    put_packet(&mut wire, &mut seq, &payload);
    assert_eq!(seq, 2, "a full frame is followed by an empty one");
    assert_eq!(wire.len(), 0xFF_FFFF + 8);
    let (got, err) = decode(&wire, 1 << 16, 64 << 20);
    assert!(err.is_none());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.len(), 0xFF_FFFF);
    // With a smaller limit the same bytes are refused, not buffered without bound.
    let (_, err) = decode(&wire, 1 << 16, 1 << 20);
    assert!(matches!(err, Some(FrameError::TooLarge { .. })));
}
