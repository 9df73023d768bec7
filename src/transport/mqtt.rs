//! MQTT over rumqttc: QoS 1, retain false, acknowledgement tracked per publish.
//!
//! rumqttc keeps nothing durable, drops queued and in-flight publishes on a clean-session
//! reconnect and reconnects with no backoff (GUIDE §5). So this task owns the connection
//! lifecycle: it builds a fresh client and event loop for every connection, sends at most
//! [`WINDOW`] publishes at a time, maps each `Outgoing::Publish(pkid)` to the row it carried
//! (requests leave the channel in order) and each `PubAck(pkid)` back to that row. When the
//! connection fails, every unacknowledged row goes back to the outbox and the task reconnects
//! after a full-jitter backoff. The outbox stays the source of truth. The task connects only
//! while something is owed to MQTT and hangs up after `idleDisconnectSecs` without work.

use crate::config::SdkConfig;
use crate::error::DualPubError;
use crate::outbox::Transport;
use crate::publisher::Shared;
use crate::retry::Backoff;
use crate::transport::sleep_or_shutdown;
use crate::{tls, wire};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Publishes in flight at once on one connection.
pub const WINDOW: usize = 64;

/// Connection attempts in a row without a delivery after which MQTT's circuit counts as open.
const BREAKER_THRESHOLD: u32 = 5;

/// How long `close` waits for the broker to take the DISCONNECT.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);


/// Builds the connection options from the app's settings (validated already).
pub fn options(config: &SdkConfig) -> Result<MqttOptions, DualPubError> {
    let m = &config.mqtt;
    let invalid = |reason: String| DualPubError::InvalidConfig { reason };
    let url = url::Url::parse(&m.broker_url).map_err(|e| invalid(format!("mqtt.brokerUrl: {e}")))?;
    let secure = matches!(url.scheme(), "mqtts" | "ssl");
    let host = url.host_str().ok_or_else(|| invalid("mqtt.brokerUrl: no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port().unwrap_or(if secure { 8883 } else { 1883 });
    let client_id = m.client_id.clone().unwrap_or_else(|| format!("dualpub-{}", config.device_id));
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(m.keep_alive_secs.into()));
    o.set_clean_session(true);
    o.set_inflight(WINDOW as u16);
    o.set_request_channel_capacity(WINDOW * 2);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), m.password.clone().unwrap_or_default());
    }
    if secure {
        let tls = tls::client_config(m.ca_certificates_pem.as_deref(), &[]).map_err(|e| invalid(format!("mqtt: {e}")))?;
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
    }
    Ok(o)
}

/// Why a connection ended.
enum End {
    Shutdown,
    Idle,
    Failed(String),
}

/// The MQTT task: connect when something is owed, publish, track acks, reconnect with backoff.
pub(crate) async fn run(shared: Arc<Shared>, options: MqttOptions, mut shutdown: watch::Receiver<bool>) {
    let topic = wire::mqtt_topic(&shared.settings.mqtt.topic_template, &shared.settings.device_id);
    let mut backoff = Backoff::mqtt();
    loop {
        // Stay off the radio until there is something to send.
        while shared.lock().outbox.depth(Transport::Mqtt) == 0 {
            tokio::select! {
                _ = shared.wake_mqtt.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
        let (client, eventloop) = AsyncClient::new(options.clone(), WINDOW * 2);
        let (tx, rx) = mpsc::channel(WINDOW * 4);
        let poller = tokio::spawn(poll(eventloop, tx));
        let end = session(&shared, &client, &topic, rx, &mut shutdown, &mut backoff).await;
        match end {
            End::Shutdown | End::Idle => {
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(DISCONNECT_GRACE, poller).await;
                if matches!(end, End::Shutdown) {
                    return;
                }
                shared.event(log::Level::Debug, "mqtt", || "idle; disconnected".into());
            }
            End::Failed(why) => {
                poller.abort();
                shared.metrics.retry(Transport::Mqtt);
                // The MQTT "breaker" is its reconnect backoff; it reports open after
                // BREAKER_THRESHOLD connections in a row failed to deliver anything.
                if backoff.attempt() + 1 == BREAKER_THRESHOLD {
                    shared.metrics.set_circuit_open(Transport::Mqtt, true);
                    shared.metrics.circuit_opened(Transport::Mqtt);
                }
                let delay = backoff.next_delay();
                shared.event(log::Level::Warn, "mqtt", || format!("connection failed ({why}); retrying in {} ms", delay.as_millis()));
                if !sleep_or_shutdown(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Drives one event loop, forwarding every event; ends at the first error.
async fn poll(mut eventloop: EventLoop, tx: mpsc::Sender<Result<Event, String>>) {
    loop {
        let ev = eventloop.poll().await.map_err(|e| e.to_string());
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            return;
        }
    }
}

/// A publish handed to rumqttc.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    accepted_at: Instant,
    handed_at: Instant,
}

/// One connection, from CONNECT to failure, idleness or shutdown.
async fn session(
    shared: &Shared,
    client: &AsyncClient,
    topic: &str,
    mut events: mpsc::Receiver<Result<Event, String>>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> End {
    let keep_alive = Duration::from_secs(shared.settings.mqtt.keep_alive_secs.into());
    // A broker that keeps the connection alive but never acknowledges must not stall MQTT.
    let ack_timeout = (keep_alive * 2).max(Duration::from_secs(30));
    let idle_disconnect = Duration::from_secs(shared.settings.mqtt.idle_disconnect_secs.into());
    let mut connected = false;
    let mut acked_in_session = false;
    let mut idle_since: Option<Instant> = None;
    // Handed to the client, waiting for rumqttc to assign a packet id (in send order).
    let mut queued: VecDeque<Sent> = VecDeque::new();
    // On the wire, waiting for PUBACK.
    let mut inflight: HashMap<u16, Sent> = HashMap::new();
    // Every row not yet acknowledged goes back to the outbox; `failed` counts them as failed
    // attempts (a broken connection), not when the connection is closed on purpose.
    let give_back = |queued: &mut VecDeque<Sent>, inflight: &mut HashMap<u16, Sent>, failed: bool| {
        let seqs: Vec<u64> = queued.drain(..).chain(inflight.drain().map(|(_, s)| s)).map(|s| s.seq).collect();
        if !seqs.is_empty() {
            if failed {
                shared.metrics.failed(Transport::Mqtt, seqs.len() as u64);
            }
            shared.lock().outbox.release(Transport::Mqtt, &seqs);
        }
    };
    loop {
        let now = Instant::now();
        if connected {
            let room = WINDOW.saturating_sub(queued.len() + inflight.len());
            if room > 0 {
                let rows = shared.lock().outbox.take(Transport::Mqtt, room, usize::MAX, |r| r.payload.len());
                let mut rows = rows.into_iter();
                while let Some(row) = rows.next() {
                    match client.try_publish(topic, QoS::AtLeastOnce, false, row.payload.to_vec()) {
                        Ok(()) => {
                            shared.metrics.bytes_sent(Transport::Mqtt, row.payload.len() as u64);
                            queued.push_back(Sent { seq: row.seq, accepted_at: row.accepted_at, handed_at: now });
                        }
                        Err(e) => {
                            let mut back: Vec<u64> = vec![row.seq];
                            back.extend(rows.map(|r| r.seq));
                            shared.lock().outbox.release(Transport::Mqtt, &back);
                            log::debug!("dualpub mqtt request channel refused a publish: {e}");
                            break;
                        }
                    }
                }
            }
            // Nothing owed and nothing in flight: hang up after a grace period (radio off).
            let idle = queued.is_empty() && inflight.is_empty() && shared.lock().outbox.depth(Transport::Mqtt) == 0;
            idle_since = if idle { idle_since.or(Some(now)) } else { None };
            if idle_since.is_some_and(|t| now.duration_since(t) >= idle_disconnect) {
                return End::Idle;
            }
            let oldest = queued.iter().chain(inflight.values()).map(|s| s.handed_at).min();
            if oldest.is_some_and(|t| now.duration_since(t) >= ack_timeout) {
                give_back(&mut queued, &mut inflight, true);
                return End::Failed(format!("no PUBACK within {} s", ack_timeout.as_secs()));
            }
        }
        // Wake for the next idle or acknowledgement deadline, if any; otherwise only for events.
        let deadline = idle_since
            .map(|t| t + idle_disconnect)
            .or_else(|| queued.iter().chain(inflight.values()).map(|s| s.handed_at + ack_timeout).min());
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => match ev {
                None => {
                    give_back(&mut queued, &mut inflight, true);
                    return End::Failed("event loop stopped".into());
                }
                Some(Err(e)) => {
                    give_back(&mut queued, &mut inflight, true);
                    return End::Failed(e);
                }
                Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    if ack.code != ConnectReturnCode::Success {
                        give_back(&mut queued, &mut inflight, true);
                        return End::Failed(format!("broker refused the connection: {:?}", ack.code));
                    }
                    connected = true;
                    shared.event(log::Level::Info, "mqtt", || "connected".into());
                }
                Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(sent) = queued.pop_front() {
                        inflight.insert(pkid, sent);
                    }
                }
                Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    if let Some(sent) = inflight.remove(&ack.pkid) {
                        shared.ack(Transport::Mqtt, &[(sent.seq, sent.accepted_at)]);
                        // Only a connection that delivers resets the backoff: one the broker
                        // accepts and then drops (a duplicate client id, an ACL) keeps backing off.
                        if !acked_in_session {
                            acked_in_session = true;
                            backoff.reset();
                            shared.metrics.set_circuit_open(Transport::Mqtt, false);
                        }
                    }
                }
                Some(Ok(_)) => {}
            },
            _ = shared.wake_mqtt.notified() => {}
            _ = timer => {}
            _ = shutdown.changed() => {
                give_back(&mut queued, &mut inflight, false);
                return End::Shutdown;
            }
        }
    }
}
