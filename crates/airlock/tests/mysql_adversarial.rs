//! Bad input on the MySQL listener: malformed and truncated packets, wrong sequence ids, a
//! 16 MiB − 1 query split across frames, a client that vanishes mid-result. Each gets a clear
//! error (or a clean close) for that session only; the gateway keeps serving everyone else.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use airlock_proto_mysql::codec::Packet;
use std::io::{Read, Write};
use support::*;

type Raw = RawMy;

impl Raw {
    fn read_err(&mut self) -> String {
        let p = self.read().expect("an ERR packet");
        assert_eq!(p.payload.first(), Some(&0xFF), "expected ERR, got {p:?}");
        String::from_utf8_lossy(&p.payload[9..]).into_owned()
    }

    fn closed(&mut self) -> bool {
        self.read().is_none()
    }

    /// Reads a complete text result (or OK/ERR) and returns the packets.
    fn query(&mut self, sql: &str) -> Vec<Packet> {
        self.send_query(sql);
        let mut out = Vec::new();
        let mut eofs = 0;
        loop {
            let p = self.read().expect("answer");
            let first = p.payload.first().copied();
            let done = (out.is_empty() && matches!(first, Some(0x00 | 0xFF)))
                || first == Some(0xFF)
                || (first == Some(0xFE) && p.payload.len() < 9 && {
                    eofs += 1;
                    eofs == 2
                });
            out.push(p);
            if done {
                return out;
            }
        }
    }
}

fn still_serving(gw: &Gateway) {
    let s = text(&gw.mysql("select 'still serving' as s;"));
    assert!(s.contains("still serving"), "{s}");
}

#[test]
fn malformed_handshakes_close_only_that_connection() {
    let gw = Gateway::start_mysql("");
    // Garbage instead of a HandshakeResponse.
    let (mut r, _) = Raw::connect(&gw);
    r.send(1, b"\x01\x02");
    assert!(r.read_err().contains("Bad handshake"));
    assert!(r.closed());
    // Wrong sequence id.
    let (mut r, _) = Raw::connect(&gw);
    r.send(7, &[0u8; 40]);
    assert!(r.read_err().contains("out of order"));
    // A length header promising more than the handshake limit.
    let (mut r, _) = Raw::connect(&gw);
    r.s.write_all(&[0xFF, 0xFF, 0xFF, 1]).unwrap();
    assert!(r.read_err().contains("exceeds"));
    // Truncated: half a header, then gone.
    let (mut r, _) = Raw::connect(&gw);
    r.s.write_all(&[0x10, 0x00]).unwrap();
    drop(r);
    still_serving(&gw);
}

#[test]
fn bad_command_packets_are_clear_errors() {
    let gw = Gateway::start_mysql("");
    // Wrong sequence id for a command.
    let mut r = Raw::login(&gw);
    r.send(3, b"\x03select 1");
    assert!(r.read_err().contains("out of order"));
    assert!(r.closed());
    // Empty command packet.
    let mut r = Raw::login(&gw);
    r.send(0, b"");
    assert!(r.read_err().contains("empty command"));
    // Unknown / unsupported command: an error, the session goes on.
    let mut r = Raw::login(&gw);
    r.send(0, b"\x12\x00\x00\x00\x00"); // COM_BINLOG_DUMP
    assert!(r.read_err().contains("not supported"));
    let answer = r.query("select 7");
    assert!(
        answer.iter().any(|p| p.payload.ends_with(b"7")),
        "{answer:?}"
    );
    // COM_STMT_EXECUTE of a statement never prepared.
    r.send(0, b"\x17\x63\x00\x00\x00\x00\x01\x00\x00\x00");
    assert!(r.read_err().contains("Unknown prepared statement"));
    // COM_CHANGE_USER is refused and ends the session.
    r.send(0, b"\x11root\x00\x00");
    assert!(r.read_err().contains("COM_CHANGE_USER"));
    assert!(r.closed());
    // Truncated command: header promises 100 bytes, 3 arrive, client leaves.
    let mut r = Raw::login(&gw);
    r.s.write_all(&[100, 0, 0, 0, 0x03, b's', b'e']).unwrap();
    drop(r);
    still_serving(&gw);
}

#[test]
fn a_query_of_16_mib_minus_1_split_across_frames() {
    let gw = Gateway::start_mysql("");
    let mut r = Raw::login(&gw);
    // COM_QUERY payload of exactly 0xFFFFFF bytes: one full frame and an empty one.
    let prefix = b"\x03select length('";
    let suffix = b"') as n";
    let total = 0xFF_FFFF;
    let mut payload = Vec::with_capacity(total);
    payload.extend_from_slice(prefix);
    payload.resize(total - suffix.len(), b'x');
    payload.extend_from_slice(suffix);
    assert_eq!(payload.len(), 0xFF_FFFF);
    r.send(0, &payload);
    let answer = r.query_answer();
    let last = answer.last().unwrap();
    // Either the row (MariaDB's max_allowed_packet allows it) or the server's own ERR: a clear
    // answer, and the session goes on.
    let expected = (total - prefix.len() - suffix.len()).to_string();
    assert!(
        answer
            .iter()
            .any(|p| p.payload.ends_with(expected.as_bytes()))
            || last.payload.first() == Some(&0xFF),
        "{:?}",
        answer.iter().map(|p| p.payload.len()).collect::<Vec<_>>()
    );
    let answer = r.query("select 8");
    assert!(answer.iter().any(|p| p.payload.ends_with(b"8")));
    assert!(gw.audit_log().contains("select length('xxxx"));
}

impl Raw {
    fn query_answer(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        let mut eofs = 0;
        loop {
            let p = self.read().expect("answer");
            let first = p.payload.first().copied();
            let done = (out.is_empty() && matches!(first, Some(0x00 | 0xFF)))
                || first == Some(0xFF)
                || (first == Some(0xFE) && p.payload.len() < 9 && {
                    eofs += 1;
                    eofs == 2
                });
            out.push(p);
            if done {
                return out;
            }
        }
    }
}

#[test]
fn a_client_that_vanishes_mid_result_ends_only_its_session() {
    let gw = Gateway::start_mysql("");
    let mut other = Raw::login(&gw);
    for _ in 0..3 {
        let mut r = Raw::login(&gw);
        let mut payload = vec![0x03];
        payload.extend_from_slice(b"select repeat('x', 1000) from seq_1_to_200000");
        r.send(0, &payload);
        let mut chunk = [0u8; 1024];
        let _ = r.s.read(&mut chunk);
        drop(r);
    }
    let answer = other.query("select 9");
    assert!(answer.iter().any(|p| p.payload.ends_with(b"9")));
    still_serving(&gw);
}

#[test]
fn long_operator_chains_are_refused_not_a_crash() {
    // Found by the outside review: 35,000 chained `+` overflowed a worker's stack and took the
    // whole gateway down (round 2); then 10,000 `UNION ALL` arms (190 KB) did (round 3).
    let mut gw = Gateway::start_mysql(READ_ONLY_AGENTS);
    for op in ["+", " and "] {
        let chain = vec!["1"; 40_000].join(op);
        let out = text(&gw.mysql(&format!("select {chain};\n")));
        assert!(!out.is_empty());
    }
    let chains = [
        ("union all", vec!["select 1"; 10_001].join(" union all ")),
        ("union all", vec!["select 1"; 40_001].join(" union all ")),
        // Round 5: forwarded as a read, this chain took MariaDB itself down.
        (
            "in (subquery)",
            format!("select 1{}", " in (select 1)".repeat(20_000)),
        ),
        ("intersect", vec!["select 1"; 10_001].join(" intersect ")),
        ("except", vec!["select 1"; 10_001].join(" except ")),
        (
            "union in set",
            format!("set @x = ({})", vec!["select 1"; 10_001].join(" union ")),
        ),
        (
            "join",
            format!("select 1 from dual{}", " join dual".repeat(5_000)),
        ),
        (
            "natural join",
            format!("select 1 from dual{}", " natural join dual".repeat(10_000)),
        ),
    ];
    for (name, sql) in &chains {
        let out = text(&gw.mysql(&format!("{sql};\n")));
        assert!(gw.alive(), "the gateway died on a {name} chain");
        assert!(
            out.contains("ERROR 1142"),
            "{name}: {}",
            &out[..out.len().min(300)]
        );
    }
    // Within the bounds, a union is classified and runs.
    let arms = vec!["select 1 as n"; 900].join(" union all ");
    let out = text(&gw.mysql(&format!("select count(*) as c from ({arms}) d;\n")));
    assert!(out.contains("c\n900"), "{out}");
    still_serving(&gw);
}
