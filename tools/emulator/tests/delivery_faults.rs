//! Delivery faults over real HTTP: messages acknowledged normally and then discarded,
//! duplicated or delayed on their way to the subscriptions, each hit in the fault log.

use dualpub_emulator::{EmulatorHandle, EmulatorOptions, FaultLog, FaultPlan, Hit};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOPIC: &str = "projects/p/topics/locations";

/// One HTTP/1.1 request with a JSON body; the status and the JSON answer (`Null` if empty).
fn http(emu: &EmulatorHandle, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let mut s = TcpStream::connect(emu.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        emu.addr(),
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|_| s.write_all(body.as_bytes())).expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status");
    (status, if body.is_empty() { Value::Null } else { serde_json::from_str(body).expect("JSON") })
}

/// An emulator with the topic and the named subscriptions on it.
fn emulator(subs: &[&str]) -> EmulatorHandle {
    let emu = EmulatorHandle::spawn(EmulatorOptions::default()).expect("spawn");
    assert_eq!(http(&emu, "PUT", &format!("/v1/{TOPIC}"), &Value::Null).0, 200);
    for s in subs {
        let (code, _) = http(&emu, "PUT", &format!("/v1/projects/p/subscriptions/{s}"), &json!({"topic": TOPIC}));
        assert_eq!(code, 200);
    }
    emu
}

fn set_plan(emu: &EmulatorHandle, plan: Value) {
    let (code, _) = http(emu, "POST", "/emulator/faults", &plan);
    assert_eq!(code, 200);
}

/// Publishes messages `e{from}..e{to}` (eventId attribute and data) in one request; their ids.
fn publish(emu: &EmulatorHandle, topic: &str, events: std::ops::Range<u32>) -> Vec<String> {
    let messages: Vec<Value> = events.map(|n| json!({"data": "ZGF0YQ==", "attributes": {"eventId": format!("e{n}")}})).collect();
    let (code, body) = http(emu, "POST", &format!("/v1/{topic}:publish"), &json!({"messages": messages}));
    assert_eq!(code, 200, "{body}");
    body["messageIds"].as_array().expect("messageIds").iter().map(|v| v.as_str().expect("id").to_string()).collect()
}

/// One delivery: (eventId, messageId, ackId).
type Delivered = (String, String, String);

/// One pull of up to 1,000 messages, without waiting for any.
fn pull_now(emu: &EmulatorHandle, sub: &str) -> Vec<Delivered> {
    let (code, body) = http(emu, "POST", &format!("/v1/projects/p/subscriptions/{sub}:pull"), &json!({"maxMessages": 1000, "returnImmediately": true}));
    assert_eq!(code, 200, "{body}");
    let received = body["receivedMessages"].as_array().cloned().unwrap_or_default();
    received
        .iter()
        .map(|r| {
            let m = &r["message"];
            let s = |v: &Value| v.as_str().expect("a string").to_string();
            (s(&m["attributes"]["eventId"]), s(&m["messageId"]), s(&r["ackId"]))
        })
        .collect()
}

/// How many times each eventId was delivered.
fn counts(delivered: &[Delivered]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for (e, _, _) in delivered {
        *c.entry(e.clone()).or_default() += 1;
    }
    c
}

fn events(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.event_id.clone().expect("an eventId")).collect()
}

fn served_log(emu: &EmulatorHandle) -> FaultLog {
    let (code, body) = http(emu, "GET", "/emulator/faults/log", &Value::Null);
    assert_eq!(code, 200);
    serde_json::from_value(body).expect("a FaultLog")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

#[test]
fn discarded_messages_are_acknowledged_but_reach_no_subscription() {
    let emu = emulator(&["sub-a", "sub-b"]);
    set_plan(&emu, json!({"discardAfterAckNext": 3}));
    let before = now_ms();
    let ids = publish(&emu, TOPIC, 0..10);
    assert_eq!(ids.len(), 10);
    assert_eq!(emu.emulator().stats().published_messages, 10);

    let log = emu.emulator().fault_log();
    assert_eq!(events(&log.discarded), ["e0", "e1", "e2"]);
    assert_eq!(log.discarded.iter().map(|h| h.message_id.clone()).collect::<Vec<_>>(), ids[..3]);
    assert!(log.discarded.iter().all(|h| h.topic == TOPIC && (before..=now_ms()).contains(&h.published_at_ms)));
    assert!(log.duplicated.is_empty() && log.delayed.is_empty());
    assert_eq!(served_log(&emu), log);
    assert_eq!(emu.emulator().faults().plan().discard_after_ack_next, 0);

    for sub in ["sub-a", "sub-b"] {
        let got = pull_now(&emu, sub);
        let expected: BTreeMap<String, usize> = (3..10).map(|n| (format!("e{n}"), 1)).collect();
        assert_eq!(counts(&got), expected, "subscription {sub}");
    }
}

#[test]
fn a_location_by_device_and_seq_is_acknowledged_but_reaches_no_subscription() {
    use base64::Engine;
    let emu = emulator(&["sub-a"]);
    set_plan(&emu, json!({"discardAfterAckWhere": [{"deviceId": "d-2", "seq": 3}, {"deviceId": "d-9", "seq": 1}]}));
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let messages: Vec<Value> = [("d-1", 3), ("d-2", 2), ("d-2", 3), ("d-2", 3)]
        .iter()
        .enumerate()
        .map(|(i, (d, seq))| json!({"data": b64(format!(r#"{{"deviceId":"{d}","seq":{seq},"eventId":"x"}}"#)), "attributes": {"eventId": format!("e{i}")}}))
        .collect();
    let (code, body) = http(&emu, "POST", &format!("/v1/{TOPIC}:publish"), &json!({"messages": messages}));
    assert_eq!((code, body["messageIds"].as_array().map(Vec::len)), (200, Some(4)), "acknowledged, all four");
    let log = emu.emulator().fault_log();
    assert_eq!(events(&log.discarded), ["e2"], "the first match only: each entry once");
    assert_eq!(log.discarded[0].location.as_ref().map(|l| (l.device_id.as_str(), l.seq)), Some(("d-2", 3)));
    let got: Vec<String> = pull_now(&emu, "sub-a").into_iter().map(|(e, _, _)| e).collect();
    assert_eq!(got, ["e0", "e1", "e3"]);
    assert_eq!(emu.emulator().faults().plan().discard_after_ack_where.len(), 1, "d-9's entry is left");
}

#[test]
fn duplicated_messages_are_delivered_twice_with_one_message_id() {
    let emu = emulator(&["sub-a", "sub-b"]);
    set_plan(&emu, json!({"duplicateNext": 2}));
    // One message, then four: the count runs across requests, in publish order.
    let mut ids = publish(&emu, TOPIC, 0..1);
    ids.extend(publish(&emu, TOPIC, 1..5));

    let log = emu.emulator().fault_log();
    assert_eq!(events(&log.duplicated), ["e0", "e1"]);
    assert_eq!(log.duplicated.iter().map(|h| h.message_id.clone()).collect::<Vec<_>>(), ids[..2]);
    assert!(log.discarded.is_empty() && log.delayed.is_empty());

    for sub in ["sub-a", "sub-b"] {
        let got = pull_now(&emu, sub);
        let c = counts(&got);
        assert_eq!(c.values().copied().collect::<Vec<_>>(), [2, 2, 1, 1, 1], "subscription {sub}: {c:?}");
        for hit in &log.duplicated {
            let copies: Vec<&Delivered> = got.iter().filter(|d| Some(&d.0) == hit.event_id.as_ref()).collect();
            assert!(copies.iter().all(|d| d.1 == hit.message_id), "both copies carry the published messageId");
            assert_ne!(copies[0].2, copies[1].2, "two deliveries, two ackIds");
        }
        let ack_ids: Vec<String> = got.iter().map(|d| d.2.clone()).collect();
        let (code, _) = http(&emu, "POST", &format!("/v1/projects/p/subscriptions/{sub}:acknowledge"), &json!({"ackIds": ack_ids}));
        assert_eq!(code, 200);
        assert!(pull_now(&emu, sub).is_empty(), "nothing left once both copies are acked");
    }
}

#[test]
fn delayed_messages_are_pulled_only_after_the_delay() {
    let emu = emulator(&["sub-a"]);
    let delay_ms = 1500;
    set_plan(&emu, json!({"delayNext": 2, "delayMs": delay_ms}));
    publish(&emu, TOPIC, 0..5);
    let log = emu.emulator().fault_log();
    assert_eq!(events(&log.delayed), ["e0", "e1"]);
    assert!(log.discarded.is_empty() && log.duplicated.is_empty());

    let first = pull_now(&emu, "sub-a");
    assert_eq!(counts(&first).into_keys().collect::<Vec<_>>(), ["e2", "e3", "e4"]);
    assert!(now_ms() < log.delayed[0].published_at_ms + delay_ms, "the first pull came before the delay was over");
    assert!(pull_now(&emu, "sub-a").is_empty());

    let start = Instant::now();
    let mut later = Vec::new();
    while later.len() < 2 && start.elapsed() < Duration::from_secs(10) {
        // A waiting pull (up to 2 s) sees the delayed messages when they become visible.
        let (_, body) = http(&emu, "POST", "/v1/projects/p/subscriptions/sub-a:pull", &json!({"maxMessages": 10}));
        let got = body["receivedMessages"].as_array().cloned().unwrap_or_default();
        let pulled_at = now_ms();
        for r in got {
            let hit = log.delayed.iter().find(|h| h.message_id == r["message"]["messageId"]).expect("only the delayed messages are left");
            assert!(pulled_at >= hit.published_at_ms + delay_ms, "pulled {} ms after publish", pulled_at - hit.published_at_ms);
            later.push(hit.event_id.clone());
        }
    }
    assert_eq!(later, [Some("e0".to_string()), Some("e1".to_string())]);
}

#[test]
fn faults_take_turns_and_respect_the_topic_and_failed_requests() {
    let emu = emulator(&["sub-a"]);
    let other = "projects/p/topics/other";
    assert_eq!(http(&emu, "PUT", &format!("/v1/{other}"), &Value::Null).0, 200);
    set_plan(
        &emu,
        json!({"faultTopic": "locations", "discardAfterAckNext": 1, "duplicateNext": 1, "delayNext": 1, "delayMs": 60_000,
               "failNext": [503], "rejectDataContaining": "poison"}),
    );
    // A failed request publishes nothing, so it consumes nothing.
    let (code, _) = http(&emu, "POST", &format!("/v1/{TOPIC}:publish"), &json!({"messages": [{"data": "ZGF0YQ=="}]}));
    assert_eq!(code, 503);
    let poison = json!({"messages": [{"data": "ZGF0YQ==", "attributes": {"eventId": "x"}}, {"data": "cG9pc29u"}]});
    assert_eq!(http(&emu, "POST", &format!("/v1/{TOPIC}:publish"), &poison).0, 400);
    // Another topic is untouched.
    publish(&emu, other, 100..103);
    assert_eq!(emu.emulator().fault_log(), FaultLog::default());

    publish(&emu, TOPIC, 0..5);
    let log = emu.emulator().fault_log();
    assert_eq!((events(&log.discarded), events(&log.duplicated), events(&log.delayed)), (vec!["e0".into()], vec!["e1".into()], vec!["e2".into()]));
    let expected: BTreeMap<String, usize> = [("e1", 2), ("e3", 1), ("e4", 1)].into_iter().map(|(e, n)| (e.to_string(), n)).collect();
    assert_eq!(counts(&pull_now(&emu, "sub-a")), expected);
}

#[test]
fn the_log_survives_new_plans_until_deleted() {
    let emu = emulator(&["sub-a"]);
    emu.emulator().faults().set(FaultPlan { discard_after_ack_next: 1, ..FaultPlan::default() });
    publish(&emu, TOPIC, 0..2);
    set_plan(&emu, json!({"duplicateNext": 1}));
    publish(&emu, TOPIC, 2..3);
    emu.emulator().faults().clear();
    let log = served_log(&emu);
    assert_eq!((events(&log.discarded), events(&log.duplicated)), (vec!["e0".into()], vec!["e2".into()]));

    let (code, _) = http(&emu, "DELETE", "/emulator/faults/log", &Value::Null);
    assert_eq!(code, 200);
    assert_eq!(served_log(&emu), FaultLog::default());
    assert_eq!(emu.emulator().fault_log(), FaultLog::default());
}
