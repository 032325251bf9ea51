//! Strategies, JSON, size limits, counts and the column path.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::manual_is_multiple_of
)]

use std::borrow::Cow;

use airlock_mask::{
    ColumnEntity, CustomPattern, Detector, MaskCounts, MaskError, MaskSpec, Masked, Masker,
    Strategy,
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn masker(strategy: Strategy) -> Masker {
    Masker::new(MaskSpec {
        detectors: Detector::ALL.to_vec(),
        strategy,
        hash_key: KEY.to_vec(),
        ..MaskSpec::default()
    })
    .unwrap()
}

fn text(m: &Masker, v: &str) -> String {
    let mut counts = MaskCounts::default();
    match m.mask_text(v.as_bytes(), &mut counts) {
        Masked::Unchanged(b) => String::from_utf8(b.to_vec()).unwrap(),
        Masked::Replaced(b) => String::from_utf8(b.into_owned()).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn redact_labels_each_entity() {
    let m = masker(Strategy::Redact);
    assert_eq!(
        text(
            &m,
            "ada@example.com paid with 4111 1111 1111 1111 from 10.0.0.1"
        ),
        "[EMAIL] paid with [CARD] from [IPV4]"
    );
    assert_eq!(
        text(&m, "ssn 123-45-6789, call (555) 123-4567"),
        "ssn [SSN], call [PHONE]"
    );
}

#[test]
fn json_values_are_masked_inside() {
    let m = masker(Strategy::Redact);
    assert_eq!(text(&m, r#"{"email":"a@b.co"}"#), r#"{"email":"[EMAIL]"}"#);
    assert_eq!(
        text(
            &m,
            r#"{"user":{"contact":["x@y.org",{"iban":"DE89370400440532013000"}]},"password":"s3cr3t-Pa55w0rd"}"#
        ),
        r#"{"user":{"contact":["[EMAIL]",{"iban":"[IBAN]"}]},"password":"[SECRET]"}"#
    );
}

#[test]
fn partial_keeps_shape_and_last_four_digits() {
    let m = masker(Strategy::Partial);
    assert_eq!(text(&m, "4111-1111-1111-1111"), "****-****-****-1111");
    assert_eq!(
        text(&m, "card 5500 0000 0000 0004."),
        "card **** **** **** 0004."
    );
    assert_eq!(text(&m, "john@example.com"), "j****@*****.com");
    assert_eq!(
        text(&m, "Mail: first.last@mail.example.co.uk"),
        "Mail: f****@*****.uk"
    );
    assert_eq!(text(&m, "123-45-6789"), "***-**-6789");
    assert_eq!(text(&m, "(555) 123-4567"), "(***) ***-4567");
    assert_eq!(text(&m, "10.20.30.40"), "**.**.**.**");
    // No safe partial form for secrets: the label.
    assert_eq!(text(&m, "password=Zx9!qW3#rT"), "password=[SECRET]");
}

#[test]
fn hash_is_keyed_stable_and_format_independent() {
    let m = masker(Strategy::Hash);
    let a = text(&m, "card 4111 1111 1111 1111");
    let b = text(&m, "4111-1111-1111-1111");
    assert!(a.starts_with("card [CARD:") && a.ends_with(']'), "{a}");
    // Same card, different formatting: same digest.
    assert_eq!(&a[5..], b);
    assert_eq!(b.len(), "[CARD:]".len() + 16);
    assert!(b[6..22].bytes().all(|c| c.is_ascii_hexdigit()));
    // Emails hash case-insensitively.
    assert_eq!(text(&m, "Ada@Example.com"), text(&m, "ada@example.com"));
    // Another key, another digest.
    let other = Masker::new(MaskSpec {
        detectors: vec![Detector::CreditCard],
        strategy: Strategy::Hash,
        hash_key: b"another key, 32 bytes long......".to_vec(),
        ..MaskSpec::default()
    })
    .unwrap();
    assert_ne!(text(&other, "4111-1111-1111-1111"), b);
    // The column form is the bare digest of the same value.
    let mut counts = MaskCounts::default();
    let col = ColumnEntity::new("credit_card");
    let bare = m.mask_column(b"4111111111111111", &col, &mut counts);
    assert_eq!(bare.bytes().unwrap(), &b.as_bytes()[6..22]);
}

#[test]
fn hash_needs_a_real_key() {
    let err = Masker::new(MaskSpec {
        strategy: Strategy::Hash,
        hash_key: b"short".to_vec(),
        ..MaskSpec::default()
    })
    .unwrap_err();
    assert!(matches!(err, MaskError::HashKeyTooShort));
}

#[test]
fn null_turns_the_value_into_null_only_when_something_is_found() {
    let m = masker(Strategy::Null);
    let mut counts = MaskCounts::default();
    assert_eq!(
        m.mask_text(b"reach me at a@b.co", &mut counts),
        Masked::Null
    );
    assert_eq!(
        m.mask_text(b"nothing here", &mut counts),
        Masked::Unchanged(&b"nothing here"[..])
    );
    assert_eq!(counts.get("email"), 1);
    assert_eq!(
        m.mask_column(b"x", &ColumnEntity::new("name"), &mut counts),
        Masked::Null
    );
}

#[test]
fn unchanged_values_are_borrowed() {
    let m = masker(Strategy::Redact);
    let v = b"Order ORD-2024-000123 shipped 2024-03-18T10:30:00Z, total 42.50 EUR, v1.2.3";
    let mut counts = MaskCounts::default();
    match m.mask_text(v, &mut counts) {
        Masked::Unchanged(out) => assert!(std::ptr::eq(out, &v[..])),
        other => panic!("{other:?}"),
    }
    assert!(counts.is_empty());
}

#[test]
fn oversize_values_are_withheld() {
    let m = Masker::new(MaskSpec {
        detectors: vec![Detector::Email],
        max_value_bytes: 16,
        ..MaskSpec::default()
    })
    .unwrap();
    let mut counts = MaskCounts::default();
    assert_eq!(
        m.mask_text(b"a@b.co", &mut counts),
        Masked::Replaced(Cow::Owned(b"[EMAIL]".to_vec()))
    );
    assert_eq!(
        m.mask_text(b"no entity but seventeen", &mut counts),
        Masked::Withheld
    );
    assert_eq!(counts.withheld(), 1);
    assert_eq!(
        Masked::Withheld.bytes(),
        Some(airlock_mask::WITHHELD_PLACEHOLDER)
    );
}

#[test]
fn counts_per_entity_and_merge() {
    let m = Masker::new(MaskSpec {
        detectors: Detector::ALL.to_vec(),
        custom: vec![CustomPattern {
            name: "ticket".into(),
            regex: r"TCK-\d+".into(),
        }],
        ..MaskSpec::default()
    })
    .unwrap();
    let mut counts = MaskCounts::default();
    m.mask_text(b"a@b.co, c@d.org, TCK-77, 4111111111111111", &mut counts);
    assert_eq!(counts.get("email"), 2);
    assert_eq!(counts.get("credit_card"), 1);
    assert_eq!(counts.get("ticket"), 1);
    let mut total = MaskCounts::default();
    total.merge(&counts);
    total.merge(&counts);
    assert_eq!(total.get("email"), 4);
    let listed: Vec<(&str, u64)> = total.iter().collect();
    assert_eq!(
        listed,
        vec![("email", 4), ("credit_card", 2), ("ticket", 2)]
    );
}

#[test]
fn overlapping_detections_are_masked_as_one() {
    let m = masker(Strategy::Redact);
    // A card number as the local part of an email: one span, nothing left over.
    assert_eq!(text(&m, "4111111111111111@example.com"), "[EMAIL]");
    // A JWT after `Bearer`: both the JWT and the secret detector fire on the same bytes.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2J5dGVz";
    let out = text(&m, &format!("Authorization: Bearer {jwt}"));
    assert!(!out.contains("eyJ"), "{out}");
}

#[test]
fn column_masking() {
    let mut counts = MaskCounts::default();
    let email = ColumnEntity::new("email");
    let name = ColumnEntity::new("full name");
    let redact = masker(Strategy::Redact);
    let out = redact.mask_column(b"ada@example.com", &email, &mut counts);
    assert!(matches!(out, Masked::Replaced(Cow::Borrowed(b"[EMAIL]"))));
    assert_eq!(
        redact
            .mask_column(b"Ada Lovelace", &name, &mut counts)
            .bytes(),
        Some(&b"[FULL_NAME]"[..])
    );
    let partial = masker(Strategy::Partial);
    assert_eq!(
        partial
            .mask_column(b"ada@example.com", &email, &mut counts)
            .bytes(),
        Some(&b"a****@*****.com"[..])
    );
    // Names are never half shown; non-ASCII letters become one star each.
    assert_eq!(
        partial
            .mask_column("José Müller".as_bytes(), &name, &mut counts)
            .bytes(),
        Some(&b"**** ******"[..])
    );
    assert_eq!(
        partial
            .mask_column(
                b"ACC 0001 2345 6789",
                &ColumnEntity::new("account"),
                &mut counts
            )
            .bytes(),
        Some(&b"*** **** **** 6789"[..])
    );
    assert_eq!(counts.get("email"), 2);
    assert_eq!(counts.get("full name"), 2);
}

#[test]
fn bad_specs_are_errors() {
    let bad_regex = Masker::new(MaskSpec {
        custom: vec![CustomPattern {
            name: "x".into(),
            regex: "(".into(),
        }],
        ..MaskSpec::default()
    });
    assert!(matches!(bad_regex, Err(MaskError::InvalidRegex { .. })));
    let clash = Masker::new(MaskSpec {
        custom: vec![CustomPattern {
            name: "email".into(),
            regex: "x".into(),
        }],
        ..MaskSpec::default()
    });
    assert!(matches!(clash, Err(MaskError::BadCustomName(_))));
    let zero = Masker::new(MaskSpec {
        max_value_bytes: 0,
        ..MaskSpec::default()
    });
    assert!(matches!(zero, Err(MaskError::ZeroMaxValueBytes)));
}

#[test]
fn names_round_trip() {
    for d in Detector::ALL {
        assert_eq!(Detector::parse(d.as_str()), Some(d));
    }
    for s in Strategy::ALL {
        assert_eq!(Strategy::parse(s.as_str()), Some(s));
    }
    assert_eq!(Strategy::parse("format-preserving"), None);
}
