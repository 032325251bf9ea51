//! Hostile and broken peers: each gets a clear error, only its session closes, the gateway
//! keeps serving everyone else and keeps its audit trail.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;

fn raw(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the peer closes; returns everything it sent.
fn drain(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

fn password(token: &str) -> Vec<u8> {
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((token.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(token.as_bytes());
    msg.push(0);
    msg
}

/// Logs in as the agent on a raw socket and reads up to ReadyForQuery.
fn logged_in(gw: &Gateway) -> TcpStream {
    let mut s = raw(gw);
    s.write_all(&startup("agent", "pg-local")).unwrap();
    let mut auth = [0u8; 9];
    s.read_exact(&mut auth).unwrap();
    assert_eq!(auth[0], b'R');
    s.write_all(&password(TOKEN)).unwrap();
    // Read messages until ReadyForQuery ('Z').
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        if head[0] == b'Z' {
            return s;
        }
    }
}

fn still_serving(gw: &Gateway) {
    let o = psql(&gw.agent(), "select 'still serving' as s;\n");
    assert!(text(&o).contains("still serving"), "{}", text(&o));
}

#[test]
fn malformed_startup_packets_close_only_that_connection() {
    let mut gw = Gateway::start("");
    // A length of 2^31 - 1 in the startup packet.
    let mut s = raw(&gw);
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("exceeds the gateway limit"),
        "{reply:?}"
    );
    // A negative length.
    let mut s = raw(&gw);
    s.write_all(&[0x80, 0, 0, 0]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("invalid message length"),
        "{reply:?}"
    );
    // A truncated startup packet, then the client goes away.
    let mut s = raw(&gw);
    s.write_all(&[0, 0, 0, 40, 0, 3]).unwrap();
    drop(s);
    // An unsupported protocol version.
    let mut s = raw(&gw);
    s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("unsupported frontend protocol 2.0"),
        "{reply:?}"
    );
    // Parameters that are not NUL-terminated.
    let mut s = raw(&gw);
    s.write_all(&[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'])
        .unwrap();
    drop(drain(s));
    // A replication connection is refused: that protocol carries no SQL to judge.
    let mut s = raw(&gw);
    let mut pkt = startup("agent", "pg-local");
    pkt.truncate(pkt.len() - 1);
    pkt.extend_from_slice(b"replication\0database\0\0");
    let len = (pkt.len() as u32).to_be_bytes();
    pkt[..4].copy_from_slice(&len);
    s.write_all(&pkt).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("replication connections are not supported"),
        "{reply:?}"
    );
    assert!(gw.alive());
    still_serving(&gw);
}

#[test]
fn hostile_messages_after_login_close_only_that_session() {
    let mut gw = Gateway::start("");
    // A message length of 2^31 after login.
    let mut s = logged_in(&gw);
    s.write_all(&[b'Q', 0x80, 0, 0, 0]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("08P01"),
        "{reply:?}"
    );
    // A message just over the gateway limit (64 MiB) is refused before it is buffered.
    let mut s = logged_in(&gw);
    s.write_all(&[b'Q', 0x04, 0, 0, 0x10]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("exceeds the gateway limit"),
        "{reply:?}"
    );
    // An unknown message type.
    let mut s = logged_in(&gw);
    s.write_all(&[b'!', 0, 0, 0, 4]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("unsupported frontend message type"),
        "{reply:?}"
    );
    // A Query whose text is not NUL-terminated.
    let mut s = logged_in(&gw);
    s.write_all(&[b'Q', 0, 0, 0, 8, b's', b'e', b'l', b'e'])
        .unwrap();
    drop(drain(s));
    // A truncated frame, then the client vanishes.
    let mut s = logged_in(&gw);
    s.write_all(&[b'Q', 0, 0, 1, 0, b's']).unwrap();
    drop(s);
    // The FunctionCall message runs a function by OID with no SQL to judge: refused.
    let mut s = logged_in(&gw);
    s.write_all(&[b'F', 0, 0, 0, 14, 0, 0, 0x04, 0x2e, 0, 0, 0, 0, 0, 0])
        .unwrap();
    s.write_all(&[b'X', 0, 0, 0, 4]).unwrap();
    let reply = drain(s);
    assert!(
        String::from_utf8_lossy(&reply).contains("FunctionCall"),
        "{reply:?}"
    );
    assert!(gw.alive());
    still_serving(&gw);
}

#[test]
fn client_vanishing_mid_copy_leaves_no_partial_data() {
    let gw = Gateway::start("");
    let t = unique("copy_t");
    direct(&format!("create table {t} (id int)"));
    let mut s = logged_in(&gw);
    let q = format!("copy {t} from stdin\0");
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((q.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(q.as_bytes());
    s.write_all(&msg).unwrap();
    let mut head = [0u8; 1];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], b'G', "expected CopyInResponse");
    s.write_all(&[b'd', 0, 0, 0, 6, b'1', b'\n']).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(direct(&format!("select count(*) from {t}")), "0");
    direct(&format!("drop table {t}"));
    still_serving(&gw);
}

#[test]
fn upstream_down_gives_a_clear_error() {
    let dead = free_port();
    let upstream = down_connection(dead);
    let gw = Gateway::start_with(&upstream, "", None);
    let o = psql(&gw.conninfo("agent", TOKEN, "pg-down"), "select 1;\n");
    let s = text(&o);
    assert!(
        s.contains("could not open upstream connection `pg-down`"),
        "{s}"
    );
    assert!(!s.contains(TOKEN));
    still_serving(&gw);
}

#[test]
fn upstream_dying_mid_query_closes_only_that_session() {
    let gw = Gateway::start("");
    let victim = std::thread::spawn({
        let conninfo = gw.agent();
        move || psql(&conninfo, "select 'marker-victim', pg_sleep(20);\n")
    });
    // Kill the victim's upstream backend from outside.
    let mut killed = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let n = direct("select count(pg_terminate_backend(pid)) from pg_stat_activity where query like 'select ''marker-victim''%'");
        if n == "1" {
            killed = true;
            break;
        }
    }
    assert!(killed, "victim query never showed up upstream");
    let out = victim.join().unwrap();
    let s = text(&out);
    assert!(
        s.contains("terminating connection") || s.contains("closed"),
        "{s}"
    );
    still_serving(&gw);
}

/// No execution without a record: once the audit log cannot be written, statements are
/// refused and do not reach the upstream. The file-size limit makes writes fail (EFBIG).
#[test]
fn statements_are_refused_when_the_audit_log_cannot_be_written() {
    let gw = Gateway::start_with("", "", Some("trap '' XFSZ; ulimit -f 2048"));
    let t = unique("audit_t");
    direct(&format!("create table {t} (id int)"));
    let mut script = String::new();
    for i in 0..5000 {
        script.push_str(&format!(
            "insert into {t} values ({i}); -- {}\n",
            "x".repeat(100)
        ));
    }
    let out = psql(&gw.agent(), &script);
    let s = text(&out);
    assert!(
        s.contains("audit log cannot be written"),
        "{}",
        &s[s.len().saturating_sub(2000)..]
    );
    // Every row that reached the table has its command event in the log.
    let rows: usize = direct(&format!("select count(*) from {t}"))
        .parse()
        .unwrap();
    assert!(rows < 5000, "all inserts ran although the log was full");
    let log = gw.audit_log();
    let recorded = log.matches(&format!("insert into {t} values")).count();
    assert!(
        recorded >= rows,
        "{rows} rows but only {recorded} audit events"
    );
    direct(&format!("drop table {t}"));
}
