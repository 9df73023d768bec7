//! Independent subscribers: what really reached the MQTT broker and the Pub/Sub topic,
//! counted from the backend side, never from the SDK's own counters.

use base64::Engine;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One message as a backend received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The eventId read from the JSON payload.
    pub event_id: String,
    /// The deviceId read from the JSON payload.
    pub device_id: String,
    /// The exact bytes received.
    pub payload: Vec<u8>,
    /// MQTT topic, or the Pub/Sub ordering key.
    pub topic_or_key: String,
    /// Pub/Sub attributes (empty for MQTT).
    pub attributes: BTreeMap<String, String>,
    /// When the subscriber received it (ms since the Unix epoch).
    pub received_at_ms: i64,
}

/// Now, in ms since the Unix epoch (the clock `Received::received_at_ms` is read from).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parse(payload: Vec<u8>, topic_or_key: String, attributes: BTreeMap<String, String>) -> Received {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Ids {
        event_id: String,
        device_id: String,
    }
    let ids: Ids = serde_json::from_slice(&payload).unwrap_or_default();
    Received { event_id: ids.event_id, device_id: ids.device_id, payload, topic_or_key, attributes, received_at_ms: now_ms() }
}

/// What a subscriber has collected so far.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    messages: Arc<Mutex<Vec<Received>>>,
    /// The subscriber's own disconnections: (from, to) ms, the last one open (`to` 0) while it lasts.
    gaps: Arc<Mutex<Vec<(i64, i64)>>>,
}

impl Collected {
    fn push(&self, r: Received) {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }

    /// The connection dropped now (a gap opens unless one is open).
    fn disconnected(&self) {
        let mut g = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
        if g.last().is_none_or(|(_, to)| *to != 0) {
            g.push((now_ms(), 0));
        }
    }

    /// The subscription is back (an open gap closes).
    fn resubscribed(&self) {
        let mut g = self.gaps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = g.last_mut().filter(|(_, to)| *to == 0) {
            last.1 = now_ms();
        }
    }

    /// The times this subscriber was disconnected, (from, to) ms; a gap still open ends now.
    pub fn gaps(&self) -> Vec<(i64, i64)> {
        let now = now_ms();
        self.gaps.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|&(from, to)| (from, if to == 0 { now } else { to })).collect()
    }

    /// Whether the subscriber is disconnected now (its last gap is still open).
    pub fn gap_open(&self) -> bool {
        self.gaps.lock().unwrap_or_else(|p| p.into_inner()).last().is_some_and(|(_, to)| *to == 0)
    }

    /// Every message received, in arrival order (duplicates included).
    pub fn all(&self) -> Vec<Received> {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes every message received since the last take, in arrival order, leaving none held
    /// (a long-running reader's memory then stays with the reader).
    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Messages received and not taken (duplicates included).
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Count per eventId.
    pub fn by_event(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.all() {
            *m.entry(r.event_id).or_insert(0) += 1;
        }
        m
    }

    /// Waits until `pred` holds or `timeout` passes; returns whether it held.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&Collected) -> bool) -> bool {
        let start = Instant::now();
        loop {
            if pred(self) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A background subscriber; stops on drop.
pub struct Subscriber {
    /// What it received.
    pub collected: Collected,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Subscribes to `filter` (QoS 1) on a plain MQTT broker and returns once the SUBACK came.
pub fn mqtt(host: &str, port: u16, filter: &str) -> std::io::Result<Subscriber> {
    mqtt_with_session(host, port, filter, None)
}

/// Like [`mqtt`]; with `session = Some(client_id)` the subscriber keeps a persistent session
/// (clean session off), so a broker that restarts with persistence queues what arrives while
/// the subscriber reconnects.
pub fn mqtt_with_session(host: &str, port: u16, filter: &str, session: Option<&str>) -> std::io::Result<Subscriber> {
    use rumqttc::{Event, MqttOptions, Packet, QoS};
    let collected = Collected::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let client_id = match session {
        Some(id) => id.to_string(),
        None => format!("testbed-sub-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)),
    };
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(session.is_none());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let filter = filter.to_string();
    let (c, s) = (collected.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("mqtt-subscriber".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
            let mut ready = Some(ready_tx);
            // `poll` is never cancelled mid-packet: the loop runs until the stop flag is seen.
            let receive = async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            c.resubscribed();
                            if let Some(r) = ready.take() {
                                let _ = r.send(Ok(()));
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            c.push(parse(p.payload.to_vec(), p.topic.clone(), BTreeMap::new()));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            c.disconnected();
                            log::debug!("subscriber connection error: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            };
            let stopped = async {
                while !s.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                _ = receive => {}
                _ = stopped => {}
            }
        });
    })?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(Subscriber { collected, stop, thread: Some(thread) }),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => Err(std::io::Error::other("MQTT subscriber got no SUBACK within 10 s")),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PullResponse {
    received_messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ReceivedMessage {
    ack_id: String,
    message: PubsubMessage,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PubsubMessage {
    data: String,
    attributes: BTreeMap<String, String>,
    ordering_key: String,
}

/// Creates a topic on a Pub/Sub endpoint (REST); `Ok` if it already exists.
pub fn create_topic(endpoint: &str, project: &str, topic: &str) -> std::io::Result<()> {
    let url = format!("{endpoint}/v1/projects/{project}/topics/{topic}");
    let resp = blocking(async move { crate::http_client().put(url).json(&serde_json::json!({})).send().await.map(|r| r.status().as_u16()) })?;
    match resp {
        200 | 409 => Ok(()),
        s => Err(std::io::Error::other(format!("creating topic {topic}: HTTP {s}"))),
    }
}

fn blocking<T: Send + 'static>(f: impl std::future::Future<Output = Result<T, reqwest::Error>> + Send + 'static) -> std::io::Result<T> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(f).map_err(std::io::Error::other)
    })
    .join()
    .map_err(|_| std::io::Error::other("request thread panicked"))?
}

/// Creates pull subscription `subscription` on `topic` and pulls (and acknowledges) everything
/// that arrives, in the background.
pub fn pubsub(endpoint: &str, project: &str, topic: &str, subscription: &str) -> std::io::Result<Subscriber> {
    let sub_url = format!("{endpoint}/v1/projects/{project}/subscriptions/{subscription}");
    let body = serde_json::json!({"topic": format!("projects/{project}/topics/{topic}"), "ackDeadlineSeconds": 60});
    let create_url = sub_url.clone();
    let status = blocking(async move { crate::http_client().put(create_url).json(&body).send().await.map(|r| r.status().as_u16()) })?;
    if status != 200 && status != 409 {
        return Err(std::io::Error::other(format!("creating subscription: HTTP {status}")));
    }
    let collected = Collected::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (collected.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("pubsub-subscriber".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let http = crate::http_client();
            let b64 = base64::engine::general_purpose::STANDARD;
            while !s.load(Ordering::SeqCst) {
                let pulled = http.post(format!("{sub_url}:pull")).json(&serde_json::json!({"maxMessages": 1000, "returnImmediately": true})).send().await;
                let resp: PullResponse = match pulled {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => PullResponse::default(),
                };
                if resp.received_messages.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let mut acks = Vec::new();
                for m in resp.received_messages {
                    let payload = b64.decode(m.message.data.as_bytes()).unwrap_or_default();
                    c.push(parse(payload, m.message.ordering_key, m.message.attributes));
                    acks.push(m.ack_id);
                }
                let _ = http.post(format!("{sub_url}:acknowledge")).json(&serde_json::json!({"ackIds": acks})).send().await;
            }
        });
    })?;
    Ok(Subscriber { collected, stop, thread: Some(thread) })
}
