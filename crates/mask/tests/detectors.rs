//! Precision tests, one block per detector: positives that must be found (exactly the entity's
//! bytes) and look-alikes that must not be. `precision_summary` at the end counts them per
//! detector and prints the figures
//! (`cargo test -p airlock-mask --test detectors -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::manual_is_multiple_of
)]

use airlock_mask::{CustomPattern, Detector, DetectorOptions, MaskSpec, Masker};

fn masker(d: Detector) -> Masker {
    Masker::new(MaskSpec {
        detectors: vec![d],
        ..MaskSpec::default()
    })
    .unwrap()
}

fn all() -> Masker {
    Masker::new(MaskSpec {
        detectors: Detector::ALL.to_vec(),
        ..MaskSpec::default()
    })
    .unwrap()
}

/// The substrings `m` detects in `text`.
fn found(m: &Masker, text: &str) -> Vec<String> {
    m.detections(text.as_bytes())
        .into_iter()
        .map(|d| text[d.start..d.end].to_owned())
        .collect()
}

/// Each case: (text, the one entity expected inside it).
fn assert_positives(d: Detector, cases: &[(&str, &str)]) {
    let m = masker(d);
    for (text, want) in cases {
        assert_eq!(
            found(&m, text),
            vec![want.to_string()],
            "{d:?} should find {want:?} in {text:?}"
        );
    }
}

fn assert_negatives(d: Detector, cases: &[&str]) {
    let m = masker(d);
    for text in cases {
        assert!(
            found(&m, text).is_empty(),
            "{d:?} must not fire on {text:?}: {:?}",
            found(&m, text)
        );
    }
}

const EMAIL_POS: &[(&str, &str)] = &[
    ("ada@example.com", "ada@example.com"),
    (
        "Contact: John.Doe+news@mail.example.co.uk.",
        "John.Doe+news@mail.example.co.uk",
    ),
    ("{\"email\":\"a@b.co\"}", "a@b.co"),
    (
        "mailto:ops_team@corp-internal.io?subject=x",
        "ops_team@corp-internal.io",
    ),
    (
        "<first.last@xn--bcher-kva.example>",
        "first.last@xn--bcher-kva.example",
    ),
    ("name,ada@example.org,42", "ada@example.org"),
    ("josé.müller@example.com", "josé.müller@example.com"),
    // Issue #14: apostrophes inside the local part, internationalised domains.
    ("o'brien@example.ie", "o'brien@example.ie"),
    (
        "to 'mary.o'hara+news@example.com'.",
        "mary.o'hara+news@example.com",
    ),
    ("name='ada@example.com'", "ada@example.com"),
    ("jürgen@müller.de", "jürgen@müller.de"),
    ("user@例え.jp", "user@例え.jp"),
    ("{\"email\":\"ada@пример.рф\"}", "ada@пример.рф"),
    ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή"),
];
const EMAIL_NEG: &[&str] = &[
    "user@localhost",
    "icon@2x.png",
    "npm install left-pad@1.3.0",
    "@mention in a chat",
    "foo@bar",
    "a@b.c",
    "price: 3 @ 4.99",
    "git@ssh",
    "it's @home",
    "user@host.é",
];

#[test]
fn email() {
    assert_positives(Detector::Email, EMAIL_POS);
    assert_negatives(Detector::Email, EMAIL_NEG);
}

const CARD_POS: &[(&str, &str)] = &[
    ("4111111111111111", "4111111111111111"),
    ("card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
    ("5500-0000-0000-0004", "5500-0000-0000-0004"),
    ("amex: 3782 822463 10005", "3782 822463 10005"),
    ("{\"pan\":\"6011111111111117\"}", "6011111111111117"),
    ("2223000048400011", "2223000048400011"),
    ("jcb 3530111333300000.", "3530111333300000"),
    ("42,4111111111111111,paid", "4111111111111111"),
    ("4111 1111 1111 1111 2031", "4111 1111 1111 1111"),
];
const CARD_NEG: &[&str] = &[
    // Same digits, Luhn broken.
    "4111111111111112",
    "5500 0000 0000 0005",
    // Luhn-valid but no known issuer prefix.
    "1234567812345670",
    // Order ids, tracking numbers, timestamps, UUIDs.
    "order 1000000000000009",
    "1Z999AA10123456784",
    "1700000000000",
    "550e8400-e29b-41d4-a716-446655440000",
    "2024-01-15T10:30:00.4111111111111111Z",
    // Too long to be a card.
    "41111111111111111111111",
    // Glued to a decimal or a longer number.
    "3.4111111111111111",
    "12-4111111111111111",
    // An E.164 phone number with a Visa-like start.
    "+4111111111111",
];

#[test]
fn credit_card() {
    assert_positives(Detector::CreditCard, CARD_POS);
    assert_negatives(Detector::CreditCard, CARD_NEG);
}

#[test]
fn random_16_digit_numbers_failing_luhn_are_not_cards() {
    let m = masker(Detector::CreditCard);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut tested = 0;
    while tested < 2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let s = format!("4{:015}", state % 1_000_000_000_000_000);
        let digits: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(k, &d)| {
                if k % 2 == 1 {
                    if d * 2 > 9 {
                        d * 2 - 9
                    } else {
                        d * 2
                    }
                } else {
                    d
                }
            })
            .sum();
        if sum % 10 == 0 {
            continue;
        }
        tested += 1;
        assert!(found(&m, &s).is_empty(), "{s} fails Luhn");
    }
}

const IBAN_POS: &[(&str, &str)] = &[
    ("DE89370400440532013000", "DE89370400440532013000"),
    (
        "pay to GB82 WEST 1234 5698 7654 32 today",
        "GB82 WEST 1234 5698 7654 32",
    ),
    (
        "{\"iban\":\"FR1420041010050500013M02606\"}",
        "FR1420041010050500013M02606",
    ),
    ("NL91ABNA0417164300", "NL91ABNA0417164300"),
    // Lower case, as some systems store them (issue #14).
    ("de89370400440532013000", "de89370400440532013000"),
    (
        "iban: gb82 west 1234 5698 7654 32.",
        "gb82 west 1234 5698 7654 32",
    ),
];
const IBAN_NEG: &[&str] = &[
    // Check digits wrong.
    "DE88370400440532013000",
    "GB83 WEST 1234 5698 7654 32",
    // Wrong length for the country.
    "DE8937040044053201300",
    "DE893704004405320130001",
    // Unknown country, lower case with wrong check digits, glued to a word.
    "ZZ89370400440532013000",
    "de88370400440532013000",
    "xde89370400440532013000",
    "XDE89370400440532013000",
    "SKU-DE12 box",
];

#[test]
fn iban() {
    assert_positives(Detector::Iban, IBAN_POS);
    assert_negatives(Detector::Iban, IBAN_NEG);
}

const SSN_POS: &[(&str, &str)] = &[
    ("123-45-6789", "123-45-6789"),
    ("ssn: 078-05-1120.", "078-05-1120"),
    ("SSN 219099999", "219099999"),
    ("{\"social_security\":\"219-09-9999\"}", "219-09-9999"),
    // Issue #14: space-separated.
    ("419 14 2628", "419 14 2628"),
    ("SSN: 078 05 1120.", "078 05 1120"),
];
const SSN_NEG: &[&str] = &[
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",
    "123-45-0000",
    // Nine bare digits without context: an order id, not an SSN.
    "order 219099999",
    "2024-45-6789-1",
    "12-123-45-6789",
    "phone 555-123-4567",
    "666 12 3456",
    // Part of a longer list of numbers.
    "7 419 14 2628",
    "419 14 2628 10",
];

#[test]
fn ssn() {
    assert_positives(Detector::Ssn, SSN_POS);
    assert_negatives(Detector::Ssn, SSN_NEG);
}

const PHONE_POS: &[(&str, &str)] = &[
    ("(555) 123-4567", "(555) 123-4567"),
    ("call 555-123-4567 now", "555-123-4567"),
    ("555.123.4567", "555.123.4567"),
    ("1-800-555-0199", "1-800-555-0199"),
    ("+1 (555) 123-4567", "+1 (555) 123-4567"),
    ("+44 20 7946 0958", "+44 20 7946 0958"),
    ("{\"phone\":\"+4915123456789\"}", "+4915123456789"),
    ("tel:+33.1.23.45.67.89", "+33.1.23.45.67.89"),
    // Issue #14: national formats with a trunk 0, the 00 prefix, extensions, and a number
    // followed by more digits in parentheses.
    ("06 12 34 56 78", "06 12 34 56 78"),
    ("030 901820", "030 901820"),
    ("090-1234-5678", "090-1234-5678"),
    ("Berlin 030/901820", "030/901820"),
    ("(02) 9876 5432", "(02) 9876 5432"),
    ("(0116) 496 0123", "(0116) 496 0123"),
    ("(11) 98765-4321", "(11) 98765-4321"),
    ("call 0033 6 12 34 56 78.", "0033 6 12 34 56 78"),
    ("0049301234567", "0049301234567"),
    ("001-555-123-4567", "001-555-123-4567"),
    ("555-123-4567x962", "555-123-4567x962"),
    ("(555) 123-4567 ext. 12, thanks", "(555) 123-4567 ext. 12"),
    ("+44 20 7946 0958 x123", "+44 20 7946 0958 x123"),
    ("Support line +4930901820 (24/7)", "+4930901820"),
    ("+44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    ("Tel: 1 (555) 123-4567", "1 (555) 123-4567"),
    ("(+33) 6 12 34 56 78", "(+33) 6 12 34 56 78"),
    // A bare national number after a phone word.
    ("Tél. : 0612345678", "0612345678"),
    ("{\"mobile\":\"07700900123\"}", "07700900123"),
    ("phone: 5551234567", "5551234567"),
];
const PHONE_NEG: &[&str] = &[
    // Plain long numbers: order ids, epoch times.
    "5551234567",
    "order 123456789012",
    "1700000000",
    // Dates, times, versions, IPs, SSNs.
    "2024-01-15",
    "2024-01-15 10:30:00+00:00",
    "v1.2.3",
    "192.168.100.200",
    "123-45-6789",
    // Area code cannot start with 0 or 1; too few digits after `+`; math.
    "155-123-4567",
    "+1234567",
    "2+2=4",
    "+0000",
    // Part of a longer dashed number.
    "555-123-4567-89",
    // Phone-shaped starts of longer runs: account, tracking, failed IBAN and card numbers.
    "0123 4567 8901 2345",
    "tracking 0034 0434 1610 9401 5902",
    "DE88 3704 0044 0532 0130 00",
    "4261 0582 9765 8748",
    // Ids, dates, ISBNs, zero-padded numbers.
    "ORD-0355-198191",
    "01.02.2024",
    "05-06-2024 10:30",
    "0-306-40615-2",
    "ref 00123456789",
    "id=0000012345",
    "Invoice 0001234567 of 2024-02-01",
    // National formats without a trunk 0 need a region or a phone word.
    "612 34 56 78",
    "98765 43210",
    "order 0612345678",
];

#[test]
fn phone() {
    assert_positives(Detector::Phone, PHONE_POS);
    assert_negatives(Detector::Phone, PHONE_NEG);
}

const IPV4_POS: &[(&str, &str)] = &[
    ("10.0.0.1", "10.0.0.1"),
    ("from 192.168.1.254:5432 at", "192.168.1.254"),
    ("subnet 172.16.0.0/12", "172.16.0.0"),
    ("{\"ip\":\"8.8.8.8\"}", "8.8.8.8"),
    ("host 255.255.255.255.", "255.255.255.255"),
];
const IPV4_NEG: &[&str] = &[
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "v1.2.3.4",
    "01.02.03.04",
    "2024.01.15",
    "3.14159",
    "10.0.0.1a",
    // Versions and section numbers named as such.
    "version 1.2.3.4",
    "Firmware: 10.0.0.1",
    "section 4.2.1.3",
];

#[test]
fn phone_regions_add_national_formats_without_trunk_zero() {
    let with = |regions: &[&str]| {
        Masker::with_options(
            MaskSpec {
                detectors: vec![Detector::Phone],
                ..MaskSpec::default()
            },
            DetectorOptions {
                phone_regions: regions.iter().map(|r| r.to_string()).collect(),
            },
        )
    };
    let cases = [
        ("ES", "612 34 56 78"),
        ("ES", "91 123 45 67"),
        ("IT", "333 123 4567"),
        ("IN", "98765 43210"),
        ("BR", "11 98765-4321"),
        ("US", "555 234 5678"),
        ("ca", "555 234 5678"),
    ];
    let none = with(&[]).unwrap();
    for (region, text) in cases {
        let m = with(&[region]).unwrap();
        assert_eq!(found(&m, text), vec![text.to_owned()], "{region}: {text}");
        assert!(found(&none, text).is_empty(), "{text} without a region");
    }
    // Spain's numbers are 9 digits in groups of 2 or 3; a French thousands-grouped amount
    // of other shape and an SSN-shaped 3-2-4 are not Spanish phone numbers.
    let es = with(&["ES"]).unwrap();
    assert!(found(&es, "612 34 5678").is_empty());
    assert!(found(&es, "1 234 567").is_empty());
    // Unknown or misspelt region codes are refused, not ignored.
    for bad in ["UK", "SP", "USA", "", "1A"] {
        assert!(with(&[bad]).is_err(), "{bad:?}");
    }
    assert!(with(&["FR", "DE", "GB", "JP"]).is_ok());
}

const GITHUB_TOKEN: &str = "ghp_R8x2Lq9ZtW4mN7vB3kJ6pS1dF5gH0yC2aE8u";

#[test]
fn github_tokens() {
    let fine_grained =
        "github_pat_11ABCDEFG0a1B2c3D4e5F6_g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6a7B8c9D0e1F2g3H4i5";
    assert_positives(
        Detector::Secret,
        &[
            (GITHUB_TOKEN, GITHUB_TOKEN),
            (&format!("GH={GITHUB_TOKEN};"), GITHUB_TOKEN),
            (&format!("token leaked: {fine_grained}"), fine_grained),
        ],
    );
    assert_negatives(
        Detector::Secret,
        &[
            "ghp_short",
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            &format!("x{GITHUB_TOKEN}"),
            &format!("{GITHUB_TOKEN}9"),
            "the ghost of ghp_ past",
        ],
    );
}

#[test]
fn ipv4() {
    assert_positives(Detector::Ipv4, IPV4_POS);
    assert_negatives(Detector::Ipv4, IPV4_NEG);
}

const IPV6_POS: &[(&str, &str)] = &[
    ("2001:db8::1", "2001:db8::1"),
    ("fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
    (
        "[2001:db8:85a3::8a2e:370:7334]:443",
        "2001:db8:85a3::8a2e:370:7334",
    ),
    ("addr=::ffff:192.0.2.128.", "::ffff:192.0.2.128"),
    ("{\"ip\":\"::1\"}", "::1"),
    ("key:fe80::1", "fe80::1"),
];
const IPV6_NEG: &[&str] = &[
    "12:34:56",
    "2024-01-15T10:30:00Z",
    "00:1a:2b:3c:4d:5e",
    "std::vector",
    "::",
    "{\"a\":\"b\",\"c\":\"d\"}",
];

#[test]
fn ipv6() {
    assert_positives(Detector::Ipv6, IPV6_POS);
    assert_negatives(Detector::Ipv6, IPV6_NEG);
}

const AWS_POS: &[(&str, &str)] = &[
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("key=ASIAY34FZKBOKMUTVV7A;", "ASIAY34FZKBOKMUTVV7A"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "{\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"}",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
];
const AWS_NEG: &[&str] = &[
    "ASIA PACIFIC REGION",
    "AKIAIOSFODNN7EXAMPL",
    "AKIAIOSFODNN7EXAMPLE1",
    "XAKIAIOSFODNN7EXAMPLE",
    "akiaiosfodnn7example",
    // 40 hex chars (a git sha) without an AWS key name.
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
];

#[test]
fn aws_key() {
    assert_positives(Detector::AwsKey, AWS_POS);
    assert_negatives(Detector::AwsKey, AWS_NEG);
}

const PEM_NEG: &[&str] = &[
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    "-----BEGIN private key",
    "----- BEGIN NOTES -----",
];

const PEM_KEY: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq1\nq9Zx==\n-----END RSA PRIVATE KEY-----";

#[test]
fn private_key() {
    let m = masker(Detector::PrivateKey);
    let text = format!("config:\n{PEM_KEY}\nrest");
    assert_eq!(found(&m, &text), vec![PEM_KEY.to_owned()]);
    // JSON-escaped, OpenSSH flavour.
    let json = "{\"private_key\":\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNz\\n-----END OPENSSH PRIVATE KEY-----\\n\"}";
    assert_eq!(
        found(&m, json),
        vec![
            "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNz\\n-----END OPENSSH PRIVATE KEY-----"
                .to_owned()
        ]
    );
    // Truncated: masked to the end of the value.
    let cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    assert_eq!(found(&m, cut), vec![cut.to_owned()]);
    assert_negatives(Detector::PrivateKey, PEM_NEG);
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

const JWT_NEG: &[&str] = &[
    // Header decodes to JSON without "alg".
    "eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.c2ln",
    // Two parts only; not base64 of JSON.
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
    "eyJ0000000000.abc.def",
    "eyJust a word",
];

#[test]
fn jwt() {
    assert_positives(
        Detector::Jwt,
        &[
            (JWT, JWT),
            (&format!("Authorization: Bearer {JWT}\r\n"), JWT),
            (&format!("{{\"id_token\":\"{JWT}\"}}"), JWT),
        ],
    );
    assert_negatives(Detector::Jwt, JWT_NEG);
    assert_negatives(Detector::Jwt, &[&format!("x{JWT}")]);
}

const SECRET_POS: &[(&str, &str)] = &[
    ("password=Tr0ub4dor3x", "Tr0ub4dor3x"),
    (
        "{\"api_key\":\"sk_9fQ2xL7pZ3mN8vR1tY6wK4\"}",
        "sk_9fQ2xL7pZ3mN8vR1tY6wK4",
    ),
    ("DB_PASSWORD: 'hunter22'", "hunter22"),
    (
        "clientSecret = \"Zm9vYmFyYmF6cXV4MTIz\"",
        "Zm9vYmFyYmF6cXV4MTIz",
    ),
    (
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "dXNlcjpwYXNzd29yZA==",
    ),
    (
        "curl -H 'Bearer 8f2a9c1e7b4d3f60a5e9' x",
        "8f2a9c1e7b4d3f60a5e9",
    ),
    (
        "https://x.io/cb?access_token=AbC123xYz789QwE&state=1",
        "AbC123xYz789QwE",
    ),
    (
        "{\\\"token\\\":\\\"Q7d9Kf2Lm8Np4Rs6\\\"}",
        "Q7d9Kf2Lm8Np4Rs6",
    ),
];
const SECRET_NEG: &[&str] = &[
    "password: ********",
    "password_changed_at: 2024-01-01 10:00:00",
    "token: expired",
    "the secret ingredient is love",
    "tokenizer=whitespace_split_v2",
    "secretary: Jane Doe",
    "{\"password\": null}",
    "{\"password\":\"correct horse battery staple\"}",
    "reset token was sent",
];

#[test]
fn secret() {
    assert_positives(Detector::Secret, SECRET_POS);
    assert_negatives(Detector::Secret, SECRET_NEG);
}

#[test]
fn custom_regex() {
    let m = Masker::new(MaskSpec {
        custom: vec![CustomPattern {
            name: "employee_id".into(),
            regex: r"\bEMP-\d{6}\b".into(),
        }],
        ..MaskSpec::default()
    })
    .unwrap();
    assert_eq!(
        found(&m, "owner EMP-004211, EMP-12"),
        vec!["EMP-004211".to_owned()]
    );
    assert_eq!(m.detections(b"EMP-004211")[0].entity, "employee_id");
}

#[test]
fn invalid_utf8_is_scanned_as_bytes() {
    let m = all();
    let mut v = b"\xff\xfe ada@example.com \xc3\x28 4111111111111111 \x80".to_vec();
    v.extend_from_slice(b"\xf0\x9f\x98");
    let d = m.detections(&v);
    let got: Vec<&[u8]> = d.iter().map(|d| &v[d.start..d.end]).collect();
    assert_eq!(got, vec![&b"ada@example.com"[..], &b"4111111111111111"[..]]);
}

/// Every labelled case against the detector it belongs to, plus every case against every
/// other detector (cross-fire). Prints recall and precision per detector.
#[test]
fn precision_summary() {
    let pem = format!("key {PEM_KEY}");
    let jwt_text = format!("token {JWT}");
    let sets: Vec<(Detector, Vec<(String, bool)>)> = vec![
        (Detector::Email, labelled(EMAIL_POS, EMAIL_NEG)),
        (Detector::CreditCard, labelled(CARD_POS, CARD_NEG)),
        (Detector::Iban, labelled(IBAN_POS, IBAN_NEG)),
        (Detector::Ssn, labelled(SSN_POS, SSN_NEG)),
        (Detector::Phone, labelled(PHONE_POS, PHONE_NEG)),
        (Detector::Ipv4, labelled(IPV4_POS, IPV4_NEG)),
        (Detector::Ipv6, labelled(IPV6_POS, IPV6_NEG)),
        (Detector::AwsKey, labelled(AWS_POS, AWS_NEG)),
        (
            Detector::PrivateKey,
            with_negatives(vec![(pem, true)], PEM_NEG),
        ),
        (
            Detector::Jwt,
            with_negatives(vec![(jwt_text, true)], JWT_NEG),
        ),
        (Detector::Secret, labelled(SECRET_POS, SECRET_NEG)),
    ];
    let mut report = String::new();
    for (d, cases) in &sets {
        let m = masker(*d);
        let (mut tp, mut fp, mut fneg, mut tn) = (0, 0, 0, 0);
        for (text, positive) in cases {
            let hit = !m.detections(text.as_bytes()).is_empty();
            match (positive, hit) {
                (true, true) => tp += 1,
                (true, false) => fneg += 1,
                (false, true) => fp += 1,
                (false, false) => tn += 1,
            }
        }
        report += &format!(
            "{:<12} positives {tp}/{} found, look-alikes {tn}/{} rejected\n",
            d.as_str(),
            tp + fneg,
            fp + tn
        );
        assert_eq!((fp, fneg), (0, 0), "{d:?}");
    }
    println!("{report}");
}

fn labelled(pos: &[(&str, &str)], neg: &[&str]) -> Vec<(String, bool)> {
    pos.iter()
        .map(|(t, _)| (t.to_string(), true))
        .chain(neg.iter().map(|t| (t.to_string(), false)))
        .collect()
}

fn with_negatives(mut cases: Vec<(String, bool)>, neg: &[&str]) -> Vec<(String, bool)> {
    cases.extend(neg.iter().map(|t| (t.to_string(), false)));
    cases
}
