//! A network that misbehaves on purpose: redirects, huge bodies, absurd headers. Each server
//! here is a few lines of raw HTTP on loopback, so the test controls every byte.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A raw HTTP server on loopback: records every request's head and lets `respond` answer it.
struct RawServer {
    port: u16,
    /// Request heads (request line and headers), in arrival order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl RawServer {
    fn start(respond: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, respond) = (requests.clone(), Arc::new(respond));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, respond) = (seen.clone(), respond.clone());
                std::thread::spawn(move || {
                    let mut stream = stream;
                    if let Some(head) = read_request(&mut stream) {
                        seen.lock().unwrap().push(head.clone());
                        respond(&head, &mut stream);
                    }
                });
            }
        });
        RawServer { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Reads one request (head and body); returns the head.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(head)
}

fn answer(stream: &mut TcpStream, status: &str, headers: &str, body: &str) {
    let _ = write!(stream, "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

#[test]
fn a_pubsub_publish_never_follows_a_redirect() {
    let elsewhere = RawServer::start(|_, s| answer(s, "200 OK", "Content-Type: application/json\r\n", r#"{"messageIds":["1"]}"#));
    let target = format!("{}/v1/projects/{PROJECT}/topics/{TOPIC}:publish", elsewhere.url());
    let redirecting = RawServer::start(move |_, s| answer(s, "307 Temporary Redirect", &format!("Location: {target}\r\n"), ""));
    let p = TestDevice::with_endpoint(&device("redirect"), &redirecting.url()).rollout(100.0).start();
    p.send_location(location(1)).unwrap();
    let r = p.flush(3_000).unwrap();
    assert!(!r.completed && r.pending_pubsub == 1, "a redirect is not a delivery: {r:?}");
    assert!(redirecting.count() >= 1);
    assert_eq!(elsewhere.count(), 0, "the locations were re-posted to the redirect's target");
    assert!(p.metrics().unwrap().pubsub.circuit_openings >= 1, "a redirect counts as a configuration error");
}

#[test]
fn a_config_fetch_sends_no_referer_after_a_redirect() {
    let cdn =
        RawServer::start(|_, s| answer(s, "200 OK", "Content-Type: application/json\r\n", r#"{"version": 4, "pubsubEnabled": true, "pubsubPercentage": 100}"#));
    let cdn_url = format!("{}/dualpub.json", cdn.url());
    let origin = RawServer::start(move |_, s| answer(s, "302 Found", &format!("Location: {cdn_url}\r\n"), ""));
    let emu = emulator();
    let url = format!("{}/dualpub.json?key=SECRET-KEY", origin.url());
    let p = TestDevice::new(&device("referer"), &emu).with(|c| c.remote_config_url = Some(url)).start();
    let result = p.refresh_config().unwrap();
    assert!(matches!(result, dualpub::FetchResult::Applied { version: 4 } | dualpub::FetchResult::NotModified), "{result:?}");
    let heads = cdn.requests.lock().unwrap().clone();
    assert!(!heads.is_empty());
    for head in heads {
        assert!(!head.to_ascii_lowercase().contains("\nreferer:"), "the config URL (and its key) leaked as Referer:\n{head}");
        assert!(!head.contains("SECRET-KEY"), "{head}");
    }
}

#[test]
fn a_huge_pubsub_response_is_not_read() {
    // Claims 256 MiB and streams zeros until the client hangs up; records how much got out.
    let written = Arc::new(AtomicU64::new(0));
    let most = written.clone();
    let server = RawServer::start(move |_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 256u64 << 20);
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0u64;
        while sent < 256 << 20 && s.write_all(&chunk).is_ok() {
            sent += chunk.len() as u64;
        }
        most.fetch_max(sent, Ordering::SeqCst);
    });
    let p = TestDevice::with_endpoint(&device("huge-body"), &server.url()).rollout(100.0).start();
    p.send_location(location(1)).unwrap();
    let r = p.flush(3_000).unwrap();
    assert!(!r.completed, "a 256 MiB body is no answer: {r:?}");
    p.shutdown();
    std::thread::sleep(Duration::from_millis(500));
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 16 << 20, "the SDK read {} MiB of a response it should have dropped after 64 KiB", sent >> 20);
    assert!(server.count() >= 1);
}

#[test]
fn an_absurd_retry_after_is_clamped_and_fetching_goes_on() {
    let server = RawServer::start(|_, s| answer(s, "503 Service Unavailable", "Retry-After: 9223372036854775\r\n", ""));
    let emu = emulator();
    let url = format!("{}/dualpub.json", server.url());
    let p = TestDevice::new(&device("retry-after"), &emu).with(|c| c.remote_config_url = Some(url)).start();
    let before = dualpub::clock::now_ms();
    // The start-up fetch and this one: either may be the one that fails; neither may panic.
    let result = p.refresh_config().unwrap();
    assert!(matches!(result, dualpub::FetchResult::Failed { .. } | dualpub::FetchResult::InBackoff { .. }), "{result:?}");
    let status = p.config_status().unwrap();
    let until = status.backoff_until_ms.expect("a failure backs off");
    assert!(until > before && until <= dualpub::clock::now_ms() + 3_600_000 + 1_000, "backoff {} ms: at most the one-hour cap", until - before);
    assert_eq!(p.refresh_config().unwrap(), dualpub::FetchResult::InBackoff { until_ms: until }, "the fetcher is alive and keeps its backoff");
}

#[test]
fn a_hostile_value_in_a_config_yields_a_short_error_and_a_small_report() {
    let emu = emulator();
    let p = TestDevice::new(&device("long-error"), &emu).start();
    let doc = format!(r#"{{"mqttEnabled": "{}"}}"#, "x".repeat(200_000));
    let e = p.apply_config_json(doc).unwrap_err();
    assert!(e.to_string().len() < 1_000, "the error quotes the value: {} bytes", e.to_string().len());
    let overrides = format!(r#"{{"deviceOverrides": {{"d-1": {{"pubsubEnabled": "{}"}}}}}}"#, "y".repeat(200_000));
    p.apply_config_json(overrides).unwrap();
    let report = p.debug_report().unwrap();
    assert!(report.len() < 64 * 1024, "debugReport is {} bytes", report.len());
}
