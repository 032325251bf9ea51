//! The benchmark corpus, shared by `benches/mask.rs`, `examples/throughput.rs` and `tests/corpus_precision.rs`: values
//! shaped like query results (names, addresses, order ids, timestamps, amounts, UUIDs, JSON
//! documents, free-text notes) with a few emails, cards, phones and secrets sprinkled in.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, dead_code)]

/// Deterministic xorshift so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.next() % 10) as u8))
            .collect()
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Ken", "Margaret", "José", "Zoë",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Thompson", "Hamilton", "Müller",
];
const STREETS: &[&str] = &[
    "Main Street",
    "Elm Avenue",
    "Baker Street",
    "Rue de Rivoli",
    "Königstraße",
    "Ocean Drive",
];
const CITIES: &[&str] = &[
    "Springfield, IL 62704",
    "London NW1 6XE",
    "Paris 75001",
    "Berlin 10117",
    "Miami, FL 33139",
];
const STATUS: &[&str] = &[
    "pending",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
    "on_hold",
];
const NOTES: &[&str] = &[
    "Customer asked to leave the parcel with the neighbour at number 12.",
    "Delivery attempted at 14:32, nobody home. Rescheduled for 2024-03-18.",
    "Upgraded to express shipping (ticket #48213), refund of 4.99 issued.",
    "Order split into 3 shipments; tracking 1Z999AA10123456784 sent by mail.",
    "Contacted via phone, confirmed address change to apartment 4B.",
];

fn luhn_card(rng: &mut Rng) -> String {
    let mut d: Vec<u8> = b"4".to_vec();
    d.extend(rng.digits(14).bytes());
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
    let s = String::from_utf8(d).unwrap();
    format!("{} {} {} {}", &s[0..4], &s[4..8], &s[8..12], &s[12..16])
}

pub fn corpus() -> Vec<Vec<u8>> {
    labelled_corpus().into_iter().map(|(v, _)| v).collect()
}

/// Each value with whether it is one of the planted sensitive values (the last column of a
/// row); every other value is a look-alike that must come through unchanged.
pub fn labelled_corpus() -> Vec<(Vec<u8>, bool)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut values = Vec::new();
    let mut total = 0;
    while total < 4 << 20 {
        let row: Vec<String> = vec![
            rng.digits(7),
            format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
            format!("{} {}, {}", rng.next() % 500, rng.pick(STREETS), rng.pick(CITIES)),
            format!("ORD-{}-{}", rng.digits(4), rng.digits(6)),
            format!("2024-0{}-1{} 1{}:2{}:3{}.{}+00", 1 + rng.next() % 9, rng.next() % 10, rng.next() % 10, rng.next() % 10, rng.next() % 10, rng.digits(6)),
            format!("{}.{}", rng.next() % 1000, rng.digits(2)),
            rng.pick(STATUS).to_owned(),
            format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rng.next() as u32, rng.next() as u16, rng.next() % 4096, rng.next() % 4096, rng.next() % (1 << 48)),
            format!(
                "{{\"sku\":\"SKU-{}\",\"qty\":{},\"price\":{}.{},\"gift\":false,\"tags\":[\"{}\",\"v2.3.1\"]}}",
                rng.digits(6), rng.next() % 9 + 1, rng.next() % 300, rng.digits(2), rng.pick(STATUS)
            ),
            rng.pick(NOTES).to_owned(),
            match rng.next() % 20 {
                0 => format!("{}.{}@example.com", rng.pick(FIRST).to_lowercase(), rng.pick(LAST).to_lowercase()),
                1 => luhn_card(&mut rng),
                2 => format!("({}) 555-{}", 200 + rng.next() % 700, rng.digits(4)),
                3 => "{\"api_key\":\"sk_9fQ2xL7pZ3mN8vR1tY6wK4\"}".to_owned(),
                _ => String::new(),
            },
        ];
        let last = row.len() - 1;
        for (k, v) in row.into_iter().enumerate() {
            total += v.len();
            values.push((v.into_bytes(), k == last));
        }
    }
    values
}
