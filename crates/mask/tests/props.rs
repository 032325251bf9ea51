//! Property tests: masking never panics on arbitrary bytes, and a detected card or email never
//! survives into the output.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::manual_is_multiple_of
)]

use airlock_mask::{
    Detector, DetectorOptions, MaskCounts, MaskSpec, Masked, Masker, Strategy as MaskStrategy,
};
use proptest::prelude::*;

fn masker(strategy: MaskStrategy) -> Masker {
    Masker::new(MaskSpec {
        detectors: Detector::ALL.to_vec(),
        strategy,
        hash_key: vec![7; 32],
        ..MaskSpec::default()
    })
    .unwrap()
}

fn luhn_complete(body: &[u8]) -> Vec<u8> {
    let mut d = body.to_vec();
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &b)| {
            let x = u32::from(b - b'0');
            if k % 2 == 0 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    d.push(b'0' + ((10 - sum % 10) % 10) as u8);
    d
}

/// Filler that cannot glue onto an entity: spaces and punctuation around arbitrary words.
fn filler() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b" ".to_vec()),
            Just(b", ".to_vec()),
            Just(b"\":\"".to_vec()),
            "[a-zA-Z]{1,8}".prop_map(|s| format!(" {s} ").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..6).prop_map(|mut b| {
                b.insert(0, b' ');
                b.push(b' ');
                b
            }),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn output(m: &Masked<'_>) -> Vec<u8> {
    m.bytes().unwrap_or_default().to_vec()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for s in [MaskStrategy::Redact, MaskStrategy::Partial, MaskStrategy::Hash, MaskStrategy::Null] {
            let mut counts = MaskCounts::default();
            let m = masker(s);
            let out = m.mask_text(&bytes, &mut counts);
            if out.is_unchanged() {
                prop_assert_eq!(counts.total(), 0);
            }
        }
    }

    #[test]
    fn never_panics_on_entity_soup(parts in prop::collection::vec(prop_oneof![
        Just(&b"4111"[..]), Just(&b"-"[..]), Just(&b" "[..]), Just(&b"@"[..]), Just(&b"."[..]),
        Just(&b":"[..]), Just(&b"::"[..]), Just(&b"+1"[..]), Just(&b"("[..]), Just(&b")"[..]),
        Just(&b"eyJ"[..]), Just(&b"AKIA"[..]), Just(&b"-----BEGIN "[..]), Just(&b"PRIVATE KEY-----"[..]),
        Just(&b"password="[..]), Just(&b"\""[..]), Just(&b"DE89"[..]), Just(&b"com"[..]),
        Just(&b"\xff"[..]), Just(&b"\\"[..]), Just(&b"ssn "[..]), Just(&b"123"[..]),
    ], 0..40)) {
        let bytes = parts.concat();
        for s in [MaskStrategy::Redact, MaskStrategy::Partial, MaskStrategy::Hash] {
            let mut counts = MaskCounts::default();
            let _ = masker(s).mask_text(&bytes, &mut counts);
        }
    }

    #[test]
    fn never_panics_on_phone_soup(parts in prop::collection::vec(prop_oneof![
        Just(&b"0"[..]), Just(&b"00"[..]), Just(&b"+"[..]), Just(&b"("[..]), Just(&b")"[..]),
        Just(&b" "[..]), Just(&b"-"[..]), Just(&b"/"[..]), Just(&b"."[..]), Just(&b"x"[..]),
        Just(&b" ext. "[..]), Just(&b"12"[..]), Just(&b"345"[..]), Just(&b"6789"[..]),
        Just(&b"tel "[..]), Just(&b"1"[..]), Just(&b"'"[..]), Just(&b"@"[..]), Just(&b"de89"[..]),
        Just(&b"ghp_"[..]), Just(&b"\xc3\xa9"[..]),
    ], 0..48)) {
        let bytes = parts.concat();
        let m = Masker::with_options(
            MaskSpec { detectors: Detector::ALL.to_vec(), strategy: MaskStrategy::Partial, ..MaskSpec::default() },
            DetectorOptions { phone_regions: ["US", "ES", "IT", "IN", "BR"].map(String::from).to_vec() },
        ).unwrap();
        let mut counts = MaskCounts::default();
        let _ = m.mask_text(&bytes, &mut counts);
        for d in m.detections(&bytes) {
            prop_assert!(d.start < d.end && d.end <= bytes.len());
        }
    }

    #[test]
    fn cards_and_emails_never_survive(
        before in filler(),
        after in filler(),
        card_body in "4[0-9]{14}",
        grouped in any::<bool>(),
        local in "[a-z][a-z0-9._]{0,10}[a-z0-9]",
        domain in "[a-z]{1,10}\\.(com|org|io|co\\.uk)",
        strategy in prop_oneof![Just(MaskStrategy::Redact), Just(MaskStrategy::Partial), Just(MaskStrategy::Hash)],
    ) {
        let digits = luhn_complete(card_body.as_bytes());
        let card = if grouped {
            digits.chunks(4).collect::<Vec<_>>().join(&b' ')
        } else {
            digits.clone()
        };
        let email = format!("{local}@{domain}").into_bytes();
        let mut value = before.clone();
        value.extend_from_slice(&card);
        value.extend_from_slice(b" ");
        value.extend_from_slice(&email);
        value.extend_from_slice(&after);
        let m = masker(strategy);
        let mut counts = MaskCounts::default();
        let out = output(&m.mask_text(&value, &mut counts));
        prop_assert!(counts.get("credit_card") + counts.get("email") >= 2 || counts.total() >= 2);
        prop_assert!(!contains(&out, &card), "card survived: {:?}", String::from_utf8_lossy(&out));
        prop_assert!(!contains(&out, &digits), "card digits survived");
        prop_assert!(!contains(&out, &email), "email survived: {:?}", String::from_utf8_lossy(&out));
    }
}
