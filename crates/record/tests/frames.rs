//! Format 2: terminal and request/response frames, reading format 1 recordings, and
//! frames of kinds a reader does not know.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use airlock_record::{
    decode_bytes, to_asciicast, Frame, Pace, Recorder, RecordingConfig, RecordingReader,
    Recordings, Renderer, ReplayOptions, Request, Response, SessionMeta, FORMAT_VERSION,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn render(path: &Path, bare: bool) -> Vec<u8> {
    let reader = RecordingReader::open(path).unwrap();
    let mut r = Renderer::new(
        Vec::new(),
        ReplayOptions {
            pace: Pace::Instant,
            bare,
        },
    );
    r.replay(reader, &mut std::io::empty()).unwrap();
    r.into_inner()
}

fn meta(id: &str, protocol: &str) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        identity: Some("claude-agent".into()),
        connection: Some("box-1".into()),
        protocol: Some(protocol.into()),
        peer: None,
    }
}

/// `tests/fixtures/v1-postgres.alrec.zst` was written by the recorder of format 1 (main at
/// 425850f, before terminal and request frames): it still reads, frame for frame, and
/// replays as psql printed it.
#[test]
fn a_format_1_recording_still_reads_and_replays() {
    let path = fixture("v1-postgres.alrec.zst");
    let mut reader = RecordingReader::open(&path).unwrap();
    let frames: Vec<Frame> = reader.by_ref().collect();
    assert_eq!(reader.version(), Some(1));
    assert_eq!(reader.skipped(), 0);
    assert_eq!(reader.unknown(), 0);
    assert!(reader.truncated().is_none());
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| match f {
            Frame::Start { .. } => "start",
            Frame::Statement { .. } => "statement",
            Frame::Columns { .. } => "columns",
            Frame::Row { .. } => "row",
            Frame::Complete { .. } => "complete",
            Frame::Error { .. } => "error",
            Frame::Notice { .. } => "notice",
            Frame::End { .. } => "end",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start",
            "statement",
            "columns",
            "row",
            "row",
            "row",
            "complete",
            "statement",
            "error",
            "notice",
            "end"
        ]
    );
    assert!(matches!(
        &frames[0],
        Frame::Start { v: 1, session_id, protocol: Some(p), .. } if session_id == "s-v1" && p == "postgres"
    ));
    assert!(matches!(&frames[5], Frame::Row { seq: 1, v } if v[1].as_deref() == Some("\\xff00")));
    assert_eq!(
        String::from_utf8(render(&path, true)).unwrap(),
        " id |  name  \n\
         ----+--------\n\
         \x20 1 | alice\n\
         \x2022 | \n\
         \x20 3 | \\xff00\n\
         (3 rows)\n\
         \n\
         ERROR:  airlock: denied by rule no-destructive-ddl: Destructive DDL is not allowed\n\
         NOTICE:  table \"x\" does not exist, skipping\n"
    );
    let full = String::from_utf8(render(&path, false)).unwrap();
    assert!(full.contains("-- session s-v1 by claude-agent on pg-prod"));
    assert!(full.contains("Time: 0.412 ms"));
    // No terminal frames: an asciicast of it is a header alone.
    let mut cast = Vec::new();
    let summary = to_asciicast(RecordingReader::open(&path).unwrap(), &mut cast).unwrap();
    assert_eq!(summary.events, 0);
    assert_eq!(String::from_utf8(cast).unwrap().lines().count(), 1);
}

fn write_zstd(path: &Path, text: &str) {
    let compressed = zstd::bulk::compress(text.as_bytes(), 1).unwrap();
    std::fs::write(path, compressed).unwrap();
}

/// A newer version's frames (kinds this reader does not know, fields it does not know on
/// kinds it knows) are skipped and counted, never an error; a line that is not a frame is
/// counted apart.
#[test]
fn frames_of_unknown_kinds_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.alrec.zst");
    write_zstd(
        &path,
        concat!(
            r#"{"t":"start","v":7,"ts_us":1796481609498301,"session_id":"s-future","protocol":"x11"}"#,
            "\n",
            r#"{"t":"hologram","at_us":5,"shape":{"deep":[1,[2,{"t":"row"}]]}}"#,
            "\n",
            r#"{"t":"statement","seq":1,"ts_us":1796481609498321,"text":"select 1","decision":"allow","colour":"red"}"#,
            "\n",
            r#"{"t":"hologram"}"#,
            "\n",
            "not json at all\n",
            r#"{"t":"quantum_state","seq":1,"ts_us":1}"#,
            "\n",
            r#"{"t":"complete","seq":1,"ts_us":1796481609498333,"tag":"SELECT 1","rows":1,"recorded":0,"duration_us":7}"#,
            "\n",
            r#"{"t":"end","ts_us":1796481609498340,"reason":"closed"}"#,
            "\n",
        ),
    );
    let mut reader = RecordingReader::open(&path).unwrap();
    let frames: Vec<Frame> = reader.by_ref().collect();
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert!(matches!(frames[0], Frame::Start { v: 7, .. }));
    assert!(matches!(&frames[1], Frame::Statement { text, .. } if text == "select 1"));
    assert!(matches!(frames[2], Frame::Complete { seq: 1, .. }));
    assert!(matches!(frames[3], Frame::End { .. }));
    assert_eq!(reader.version(), Some(7));
    assert_eq!(reader.unknown(), 3);
    assert_eq!(reader.skipped(), 1);
    let kinds: Vec<(&str, u64)> = reader
        .unknown_kinds()
        .iter()
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    assert_eq!(kinds, [("hologram", 2), ("quantum_state", 1)]);
    // Replay shows what it knows.
    let out = String::from_utf8(render(&path, false)).unwrap();
    assert!(out.contains("=> select 1"), "{out}");
}

/// The terminal frames of a shell session: sizes, output and input with offsets from the
/// start, bytes that are not UTF-8 kept exactly, and an asciicast v2 conversion.
#[test]
fn a_terminal_session_keeps_its_bytes_and_converts_to_asciicast() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = Recordings::start(RecordingConfig::new(dir.path())).unwrap();
    let rec = Recorder::start(&recordings, meta("t-1", "ssh"));
    let mut shown: Vec<u8> = Vec::new();
    let mut out = |rec: &Recorder, b: &[u8]| {
        rec.terminal_output(b);
        shown.extend_from_slice(b);
    };
    rec.terminal_size(120, 40);
    out(&rec, b"\x1b[1;32muser@box\x1b[0m:~$ ");
    std::thread::sleep(Duration::from_millis(25));
    for key in [b"l", b"s", b"\r"] {
        rec.terminal_input(key);
    }
    out(&rec, b"ls\r\n");
    // A character cut between two writes, and bytes that are not UTF-8 at all.
    out(&rec, "caf\u{e9} \u{20ac}".as_bytes().split_at(7).0);
    std::thread::sleep(Duration::from_millis(25));
    out(&rec, "caf\u{e9} \u{20ac}".as_bytes().split_at(7).1);
    out(&rec, b"\r\n");
    std::thread::sleep(Duration::from_millis(25));
    out(&rec, &[0xff, 0xfe, b'x', 0x80, b'\r', b'\n']);
    rec.terminal_size(100, 30);
    out(&rec, b"bye\r\n");
    let path = rec.path().to_path_buf();
    rec.end("client closed the connection");
    recordings.flush();

    let mut reader = RecordingReader::open(&path).unwrap();
    let frames: Vec<Frame> = reader.by_ref().collect();
    assert_eq!(reader.version(), Some(FORMAT_VERSION));
    assert_eq!(reader.unknown() + reader.skipped(), 0);
    // Every output byte survives, in order.
    let mut recorded = Vec::new();
    let mut typed = Vec::new();
    let mut last_at = 0;
    let mut b64_frames = 0;
    for f in &frames {
        if let Some(at) = f.at_us() {
            assert!(at >= last_at, "terminal offsets never go back");
            last_at = at;
        }
        match f {
            Frame::TermOut { d, b64, .. } => {
                recorded.extend_from_slice(&decode_bytes(d, *b64).unwrap());
                b64_frames += usize::from(*b64);
            }
            Frame::TermIn { d, b64, .. } => {
                typed.extend_from_slice(&decode_bytes(d, *b64).unwrap())
            }
            _ => {}
        }
    }
    assert_eq!(recorded, shown);
    assert_eq!(typed, b"ls\r");
    // Only the frame with the invalid bytes is base64; the cut `€` was carried whole into
    // the next frame.
    assert_eq!(b64_frames, 1, "{frames:?}");
    assert!(frames
        .iter()
        .any(|f| matches!(f, Frame::TermOut { d, b64: false, .. } if d.contains('\u{20ac}'))));
    assert!(matches!(
        frames[1],
        Frame::TermSize {
            cols: 120,
            rows: 40,
            ..
        }
    ));

    // Replay prints the output stream itself.
    assert_eq!(render(&path, true), shown);
    let full = render(&path, false);
    assert!(full.starts_with(b"-- session t-1 by claude-agent on box-1"));

    // asciicast v2: a header, then [t, code, data] with times that never decrease.
    let mut cast = Vec::new();
    let summary = to_asciicast(RecordingReader::open(&path).unwrap(), &mut cast).unwrap();
    let text = String::from_utf8(cast).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 120);
    assert_eq!(header["height"], 40);
    let Frame::Start { ts_us, .. } = &frames[0] else {
        panic!("no start frame")
    };
    assert_eq!(header["timestamp"], ts_us / 1_000_000);
    let mut last_t = 0.0f64;
    let mut output = String::new();
    let mut input = String::new();
    let mut resizes = Vec::new();
    let mut events = 0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let event = event.as_array().unwrap();
        assert_eq!(event.len(), 3, "{line}");
        let t = event[0].as_f64().unwrap();
        assert!(t >= last_t, "{t} after {last_t}");
        last_t = t;
        let data = event[2].as_str().unwrap();
        match event[1].as_str().unwrap() {
            "o" => output.push_str(data),
            "i" => input.push_str(data),
            "r" => resizes.push(data.to_owned()),
            other => panic!("event code {other}"),
        }
        events += 1;
    }
    assert_eq!(events, summary.events);
    assert!(last_t >= 0.075, "the pauses are in the times: {last_t}");
    assert_eq!(output, String::from_utf8_lossy(&shown));
    assert!(output.contains("caf\u{e9} \u{20ac}"));
    assert_eq!(input, "ls\r");
    assert_eq!(resizes, ["100x30"]);
}

/// Output is coalesced up to 32 KiB or 20 ms a frame, whatever the size of the writes; a
/// character cut by the size limit is carried into the next frame, not made base64.
#[test]
fn terminal_output_is_coalesced_into_bounded_frames() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = Recordings::start(RecordingConfig::new(dir.path())).unwrap();
    let rec = recordings.start_session(meta("t-2", "ssh"));
    let mut shown = Vec::new();
    // 20 000 small writes (a program printing line by line), fast.
    for i in 0..20_000u32 {
        let line = format!("line {i}\r\n");
        rec.terminal_output(line.as_bytes());
        shown.extend_from_slice(line.as_bytes());
    }
    rec.flush();
    // One large write whose 32 KiB boundary falls inside a 3-byte character.
    let mut big = vec![b'a'; 32 * 1024 - 1];
    big.extend_from_slice("\u{20ac}".as_bytes());
    big.extend(std::iter::repeat_n(b'b', 100 * 1024));
    rec.terminal_output(&big);
    shown.extend_from_slice(&big);
    let path = rec.path().to_path_buf();
    drop(rec);
    recordings.flush();

    let frames: Vec<Frame> = RecordingReader::open(&path).unwrap().collect();
    let outs: Vec<(&str, bool)> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::TermOut { d, b64, .. } => Some((d.as_str(), *b64)),
            _ => None,
        })
        .collect();
    let total: usize = outs.iter().map(|(d, _)| d.len()).sum();
    assert_eq!(total, shown.len());
    assert!(outs.iter().all(|(d, b64)| !b64 && d.len() <= 32 * 1024));
    // ~330 KB in 32 KiB frames, plus one per 20 ms the small writes took.
    assert!(outs.len() < 60, "{} frames", outs.len());
    let joined: String = outs.iter().map(|(d, _)| *d).collect();
    assert_eq!(joined.as_bytes(), shown.as_slice());
}

/// Requests and responses tied by `seq`: headers as selected with credentials redacted,
/// bodies cut to the excerpt cap with their true length, binary bodies as base64; replay
/// prints `> METHOD target` / `< status`.
#[test]
fn exchanges_record_requests_and_responses() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RecordingConfig::new(dir.path());
    cfg.max_body_excerpt = 1000;
    let recordings = Recordings::start(cfg).unwrap();
    let rec = recordings.start_session(meta("h-1", "http"));
    assert_eq!(rec.body_excerpt_cap(), 1000);
    // 999 ASCII bytes then `é`: the cap cuts the character, which is dropped, not base64.
    let mut body = vec![b'x'; 999];
    body.extend_from_slice("\u{e9}tc".as_bytes());
    rec.request(
        1,
        &Request {
            method: "POST",
            target: "/api/v1/namespaces/prod/pods",
            headers: &[
                ("content-type", "application/json"),
                ("Authorization", "Bearer eyJhbGciOi.secret"),
            ],
            body: &body,
            body_len: None,
            decision: "allow",
            rule: None,
        },
    );
    rec.response(
        1,
        &Response {
            status: "201",
            headers: &[("content-type", "application/json"), ("set-cookie", "s=1")],
            body: b"{\"kind\":\"Pod\"}",
            body_len: None,
            elapsed: Duration::from_micros(1234),
        },
    );
    // A binary response streamed by the adapter: it passes the beginning and the total.
    rec.request(
        2,
        &Request {
            method: "GET",
            target: "/bucket/key.bin",
            decision: "allow",
            ..Request::default()
        },
    );
    rec.response(
        2,
        &Response {
            status: "200",
            body: &[0x00, 0xff, 0x10],
            body_len: Some(5_000_000),
            elapsed: Duration::from_millis(40),
            ..Response::default()
        },
    );
    rec.request(
        3,
        &Request {
            method: "DELETE",
            target: "/api/v1/namespaces/prod",
            decision: "deny",
            rule: Some("no-delete-namespace"),
            ..Request::default()
        },
    );
    rec.response(
        3,
        &Response {
            status: "403",
            ..Response::default()
        },
    );
    let path = rec.path().to_path_buf();
    rec.end("closed");
    recordings.flush();

    let frames: Vec<Frame> = RecordingReader::open(&path).unwrap().collect();
    let Some(Frame::Request {
        seq: 1,
        headers,
        body: excerpt,
        body_b64: false,
        body_len: 1003,
        decision,
        ..
    }) = frames.get(1)
    else {
        panic!("{frames:?}")
    };
    assert_eq!(decision, "allow");
    assert_eq!(excerpt.len(), 999);
    assert_eq!(
        headers,
        &[
            ("content-type".to_owned(), "application/json".to_owned()),
            ("Authorization".to_owned(), "[redacted]".to_owned())
        ]
    );
    assert!(matches!(
        frames.get(2),
        Some(Frame::Response { seq: 1, status, body_len: 14, duration_us: 1234, headers, .. })
            if status == "201" && headers[1].1 == "[redacted]"
    ));
    assert!(matches!(
        frames.get(4),
        Some(Frame::Response { seq: 2, body, body_b64: true, body_len: 5_000_000, .. })
            if decode_bytes(body, true).unwrap().as_ref() == [0x00, 0xff, 0x10]
    ));
    assert_eq!(frames.iter().filter(|f| f.seq() == Some(3)).count(), 2);

    let bare = String::from_utf8(render(&path, true)).unwrap();
    assert_eq!(
        bare,
        "> POST /api/v1/namespaces/prod/pods\n< 201\n\
         > GET /bucket/key.bin\n< 200\n\
         > DELETE /api/v1/namespaces/prod\n< 403\n"
    );
    let full = String::from_utf8(render(&path, false)).unwrap();
    for expected in [
        "deny (rule no-delete-namespace)",
        "> Authorization: [redacted]",
        "-- body: 1003 bytes, the first 999 recorded",
        "< content-type: application/json\n< set-cookie: [redacted]\n{\"kind\":\"Pod\"}\nTime: 1.234 ms",
        "-- binary body, 3 bytes recorded\n-- body: 5000000 bytes, the first 3 recorded",
    ] {
        assert!(full.contains(expected), "{expected:?} in\n{full}");
    }
    assert!(!full.contains("secret"));
}

/// The JSON of the new frames, as the format documentation shows it.
#[test]
fn new_frames_serialize_as_documented() {
    let line = |f: &Frame| serde_json::to_string(f).unwrap();
    assert_eq!(
        line(&Frame::TermSize {
            at_us: 0,
            cols: 80,
            rows: 24
        }),
        r#"{"t":"term_size","at_us":0,"cols":80,"rows":24}"#
    );
    assert_eq!(
        line(&Frame::TermOut {
            at_us: 1500,
            d: "$ ".into(),
            b64: false
        }),
        r#"{"t":"term_out","at_us":1500,"d":"$ "}"#
    );
    assert_eq!(
        line(&Frame::TermIn {
            at_us: 2000,
            d: "/w==".into(),
            b64: true
        }),
        r#"{"t":"term_in","at_us":2000,"d":"/w==","b64":true}"#
    );
}
