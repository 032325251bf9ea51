//! End-to-end delivery against tiny HTTP receivers on 127.0.0.1 built from std::net.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_notify::{
    Notification, Notifier, NotifierOptions, NotifierStats, PayloadFormat, WebhookConfig,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing header {name}: {:?}", self.headers))
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    /// Keep the connection open without answering until the receiver is released.
    Hang,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    released: Mutex<bool>,
    changed: Condvar,
}

/// Accepts connections on its own thread; each connection gets a thread, so one hanging
/// reply does not stop the receiver from recording later requests.
struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// `script(i)` decides the reply to the i-th request (0-based).
    fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let script = Arc::new(script);
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = Arc::clone(&s);
                let script = Arc::clone(&script);
                std::thread::spawn(move || serve(stream, &s, &*script));
            }
        });
        Receiver { addr, shared }
    }

    fn ok() -> Receiver {
        Self::start(|_| Reply::Status(200))
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut reqs = self.shared.requests.lock().unwrap();
        while reqs.len() < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "receiver got {} requests, wanted {n}",
                reqs.len()
            );
            reqs = self
                .shared
                .changed
                .wait_timeout(reqs, deadline - now)
                .unwrap()
                .0;
        }
        reqs.clone()
    }

    fn release(&self) {
        *self.shared.released.lock().unwrap() = true;
        self.shared.changed.notify_all();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.release();
    }
}

fn serve(stream: TcpStream, shared: &Shared, script: &(dyn Fn(usize) -> Reply + Send + Sync)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let index = {
        let mut reqs = shared.requests.lock().unwrap();
        reqs.push(Request {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        shared.changed.notify_all();
        reqs.len() - 1
    };
    let status = match script(index) {
        Reply::Status(s) => s,
        Reply::Hang => {
            let mut released = shared.released.lock().unwrap();
            while !*released {
                released = shared.changed.wait(released).unwrap();
            }
            200
        }
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

fn hook(name: &str, url: &str) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url: url.into(),
        secret: None,
        format: PayloadFormat::Json,
        events: vec![],
    }
}

fn fast() -> NotifierOptions {
    NotifierOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        ..NotifierOptions::default()
    }
}

fn note(event: &str, i: u32) -> Notification {
    Notification {
        event: event.into(),
        ts_us: 1_700_000_000_000_000 + i64::from(i),
        summary: format!("alice requested review #{i} for DELETE on prod"),
        data: json!({"review_id": format!("r-{i}"), "identity": "alice", "connection": "prod", "min_approvals": 2}),
    }
}

fn wait_stats(
    n: &Notifier,
    timeout: Duration,
    done: impl Fn(&NotifierStats) -> bool,
) -> NotifierStats {
    let deadline = Instant::now() + timeout;
    loop {
        let s = n.stats();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never satisfied: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

#[test]
fn json_delivery_is_signed_with_hmac() {
    let rx = Receiver::ok();
    let mut h = hook("signed", &rx.url());
    h.secret = Some("s3cret-key".into());
    let notifier = Notifier::start_with(vec![h], fast());
    let n = note("review_created", 7);
    notifier.notify(n.clone());

    let req = rx.wait_for(1, Duration::from_secs(5)).remove(0);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook");
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("x-airlock-event"), "review_created");
    assert_eq!(req.header("x-airlock-attempt"), "1");
    assert!(!req.header("x-airlock-delivery").is_empty());
    let ts: u64 = req.header("x-airlock-timestamp").parse().unwrap();
    assert!(ts > 1_600_000_000);

    // Recompute the signature independently of the crate.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-key").unwrap();
    mac.update(&req.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("x-airlock-signature"), expected);
    assert!(airlock_notify::verify_signature(
        b"s3cret-key",
        &req.body,
        req.header("x-airlock-signature")
    ));
    assert!(!airlock_notify::verify_signature(
        b"wrong",
        &req.body,
        req.header("x-airlock-signature")
    ));

    let body = req.json();
    assert_eq!(body["event"], "review_created");
    assert_eq!(body["ts_us"], n.ts_us);
    assert_eq!(body["summary"], n.summary);
    assert_eq!(body["data"], n.data);

    let s = wait_stats(&notifier, Duration::from_secs(5), |s| s.delivered == 1);
    assert_eq!(s.failed_attempts, 0);
    assert_eq!(s.pending, 0);
    assert!(notifier.shutdown(Duration::from_secs(1)));
}

#[test]
fn unsigned_hook_sends_no_signature_and_event_filter_applies() {
    let rx = Receiver::ok();
    let mut h = hook("denials-only", &rx.url());
    h.events = vec!["command_denied".into()];
    let notifier = Notifier::start_with(vec![h], fast());
    notifier.notify(note("review_created", 1));
    notifier.notify(note("command_denied", 2));
    let reqs = rx.wait_for(1, Duration::from_secs(5));
    assert_eq!(reqs[0].header("x-airlock-event"), "command_denied");
    assert!(!reqs[0].headers.contains_key("x-airlock-signature"));
    assert!(notifier.shutdown(Duration::from_secs(2)));
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn slack_format_shape() {
    let rx = Receiver::ok();
    let mut h = hook("slack", &rx.url());
    h.format = PayloadFormat::Slack;
    let notifier = Notifier::start_with(vec![h], fast());
    let n = note("review_approved", 3);
    notifier.notify(n.clone());
    let body = rx.wait_for(1, Duration::from_secs(5))[0].json();

    assert_eq!(body["text"], n.summary);
    assert!(
        body.get("event").is_none(),
        "slack body is not the json format: {body}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert_eq!(blocks[0]["text"]["text"], n.summary);
    let fields: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["fields"].as_array())
        .flatten()
        .map(|f| {
            assert_eq!(f["type"], "mrkdwn");
            f["text"].as_str().unwrap()
        })
        .collect();
    let data = n.data.as_object().unwrap();
    assert_eq!(fields.len(), data.len());
    assert!(fields.contains(&"*review_id*\nr-3"), "{fields:?}");
    assert!(fields.contains(&"*identity*\nalice"), "{fields:?}");
    assert!(fields.contains(&"*min_approvals*\n2"), "{fields:?}");
    let context = blocks.last().unwrap();
    assert_eq!(context["type"], "context");
    assert!(context["elements"][0]["text"]
        .as_str()
        .unwrap()
        .contains("review_approved"));
    notifier.shutdown(Duration::from_secs(1));
}

#[test]
fn retries_after_two_500s_with_same_delivery_id() {
    let rx = Receiver::start(|i| Reply::Status(if i < 2 { 500 } else { 200 }));
    let mut h = hook("flaky", &rx.url());
    h.secret = Some("k".into());
    let options = NotifierOptions {
        initial_backoff: Duration::from_millis(100),
        ..fast()
    };
    let notifier = Notifier::start_with(vec![h], options);
    notifier.notify(note("review_denied", 1));

    let s = wait_stats(&notifier, Duration::from_secs(10), |s| s.delivered == 1);
    assert_eq!(s.failed_attempts, 2);
    assert_eq!(s.abandoned, 0);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    let id = reqs[0].header("x-airlock-delivery");
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.header("x-airlock-delivery"), id);
        assert_eq!(r.header("x-airlock-attempt"), (i + 1).to_string());
        assert_eq!(r.body, reqs[0].body);
        assert_eq!(
            r.header("x-airlock-signature"),
            reqs[0].header("x-airlock-signature")
        );
    }
    // Exponential: ~100 ms then ~200 ms.
    let gap1 = reqs[1].at - reqs[0].at;
    let gap2 = reqs[2].at - reqs[1].at;
    assert!(gap1 >= Duration::from_millis(90), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(190), "{gap2:?}");
    notifier.shutdown(Duration::from_secs(1));
}

#[test]
fn retries_on_429() {
    let rx = Receiver::start(|i| Reply::Status(if i == 0 { 429 } else { 204 }));
    let notifier = Notifier::start_with(vec![hook("limited", &rx.url())], fast());
    notifier.notify(note("review_expired", 1));
    let s = wait_stats(&notifier, Duration::from_secs(5), |s| s.delivered == 1);
    assert_eq!(s.failed_attempts, 1);
    assert_eq!(rx.requests().len(), 2);
    notifier.shutdown(Duration::from_secs(1));
}

#[test]
fn no_retry_on_400() {
    let rx = Receiver::start(|_| Reply::Status(400));
    let notifier = Notifier::start_with(vec![hook("strict", &rx.url())], fast());
    notifier.notify(note("command_denied", 1));
    let s = wait_stats(&notifier, Duration::from_secs(5), |s| s.abandoned == 1);
    assert_eq!(s.failed_attempts, 1);
    assert_eq!(s.delivered, 0);
    // Several backoff periods later there is still only the one attempt.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(notifier.stats().failed_attempts, 1);
    notifier.shutdown(Duration::from_secs(1));
}

#[test]
fn gives_up_after_max_attempts() {
    let rx = Receiver::start(|_| Reply::Status(503));
    let options = NotifierOptions {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        ..fast()
    };
    let notifier = Notifier::start_with(vec![hook("down", &rx.url())], options);
    notifier.notify(note("command_denied", 1));
    let s = wait_stats(&notifier, Duration::from_secs(5), |s| s.abandoned == 1);
    assert_eq!(s.failed_attempts, 4);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.requests().len(), 4);
    notifier.shutdown(Duration::from_secs(1));
}

#[test]
fn dead_url_does_not_block_good_hook() {
    let good = Receiver::ok();
    // Long backoff keeps the dead hook retrying for the whole test.
    let options = NotifierOptions {
        initial_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(60),
        ..fast()
    };
    let notifier = Notifier::start_with(
        vec![hook("dead", &closed_port_url()), hook("good", &good.url())],
        options,
    );
    for i in 0..5 {
        notifier.notify(note("command_denied", i));
    }
    let reqs = good.wait_for(5, Duration::from_secs(5));
    let summaries: Vec<String> = reqs
        .iter()
        .map(|r| r.json()["summary"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..5).map(|i| note("command_denied", i).summary).collect();
    assert_eq!(summaries, expected, "delivered in order");
    let s = wait_stats(&notifier, Duration::from_secs(5), |s| {
        s.delivered == 5 && s.failed_attempts >= 1
    });
    // The dead hook's first job is waiting to retry; the other four wait behind it.
    assert_eq!(s.pending, 5);
    assert_eq!(s.abandoned, 0);
    // Shutdown does not wait out a 30 s backoff: the dead hook's deliveries are abandoned.
    let started = Instant::now();
    assert!(!notifier.shutdown(Duration::from_millis(200)));
    assert!(started.elapsed() < Duration::from_secs(2));
    let s = notifier.stats();
    assert_eq!(s.delivered, 5);
    assert_eq!(s.abandoned, 5);
    assert_eq!(s.pending, 0);
}

#[test]
fn hanging_hook_does_not_block_good_hook_or_notify() {
    let hanging = Receiver::start(|_| Reply::Hang);
    let good = Receiver::ok();
    let notifier = Notifier::start_with(
        vec![hook("hanging", &hanging.url()), hook("good", &good.url())],
        NotifierOptions {
            total_timeout: Duration::from_secs(60),
            ..fast()
        },
    );
    notifier.notify(note("review_created", 0));
    // The hanging hook's thread is now stuck inside an HTTP request.
    hanging.wait_for(1, Duration::from_secs(5));

    let started = Instant::now();
    for i in 1..=500 {
        notifier.notify(note("review_created", i));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "notify blocked: {elapsed:?}"
    );

    let reqs = good.wait_for(501, Duration::from_secs(30));
    assert_eq!(reqs.len(), 501);
    assert_eq!(
        hanging.requests().len(),
        1,
        "the hanging hook is still on its first request"
    );
    hanging.release();
    wait_stats(&notifier, Duration::from_secs(30), |s| s.delivered == 1_002);
    assert!(notifier.shutdown(Duration::from_secs(5)));
}

#[test]
fn queue_is_bounded_and_drops_oldest() {
    let rx = Receiver::start(|_| Reply::Hang);
    let options = NotifierOptions {
        queue_capacity: 5,
        ..fast()
    };
    let notifier = Notifier::start_with(vec![hook("slow", &rx.url())], options);
    notifier.notify(note("command_denied", 0));
    rx.wait_for(1, Duration::from_secs(5)); // now in flight, not queued

    for i in 1..=20 {
        notifier.notify(note("command_denied", i));
    }
    let s = notifier.stats();
    assert_eq!(s.dropped, 15);
    assert_eq!(s.pending, 6, "5 queued + 1 in flight");

    rx.release();
    let s = wait_stats(&notifier, Duration::from_secs(10), |s| s.delivered == 6);
    assert_eq!(s.pending, 0);
    let got: Vec<i64> = rx
        .requests()
        .iter()
        .map(|r| r.json()["ts_us"].as_i64().unwrap() - 1_700_000_000_000_000)
        .collect();
    assert_eq!(got, [0, 16, 17, 18, 19, 20], "oldest queued were dropped");
    assert!(notifier.shutdown(Duration::from_secs(1)));
}

#[test]
fn shutdown_drains_then_refuses() {
    let rx = Receiver::start(|i| Reply::Status(if i % 2 == 0 { 500 } else { 200 }));
    let notifier = Notifier::start_with(vec![hook("h", &rx.url())], fast());
    let clone = notifier.clone();
    for i in 0..10 {
        clone.notify(note("review_created", i));
    }
    assert!(notifier.shutdown(Duration::from_secs(10)));
    let s = notifier.stats();
    assert_eq!(s.delivered, 10);
    assert_eq!(s.pending, 0);
    clone.notify(note("review_created", 99));
    let s = notifier.stats();
    assert_eq!(s.dropped, 1);
    assert_eq!(s.pending, 0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.requests().len(), 20);
}

#[test]
fn shutdown_respects_timeout_with_hanging_hook() {
    let rx = Receiver::start(|_| Reply::Hang);
    let notifier = Notifier::start_with(vec![hook("hang", &rx.url())], fast());
    notifier.notify(note("review_created", 0));
    notifier.notify(note("review_created", 1));
    rx.wait_for(1, Duration::from_secs(5));
    let started = Instant::now();
    assert!(!notifier.shutdown(Duration::from_millis(300)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn no_hooks_is_a_no_op() {
    let notifier = Notifier::start(vec![]);
    notifier.notify(note("command_denied", 0));
    assert_eq!(notifier.stats(), NotifierStats::default());
    assert!(notifier.shutdown(Duration::from_millis(10)));
}
