//! MQTT over rumqttc: QoS 1, retain false, acknowledgement tracked per publish.
//!
//! rumqttc keeps nothing durable, drops queued and in-flight publishes on a clean-session
//! reconnect and reconnects with no backoff (ARCHITECTURE.md, "Why the MQTT task recreates its
//! client"). So this task owns the connection lifecycle: it builds a fresh client and event
//! loop for every connection, sends at most [`WINDOW`] publishes at a time (fewer while the
//! link cuts connections: [`pace::Window`]), maps each `Outgoing::Publish(pkid)` to the row it
//! carried (requests leave the channel in order) and each `PubAck(pkid)` back to that row. When
//! the connection fails, every unacknowledged row goes back to the outbox and the task
//! reconnects after a full-jitter backoff. A connection with no CONNACK or PUBACK for a few
//! round trips (at most 10 s, [`pace::Rtt`]) is given up as stalled, whatever the keep-alive: a
//! black-holed link costs seconds of radio, not minutes. The outbox stays the source of truth.
//! The task connects only while something is owed to MQTT and hangs up after
//! `idleDisconnectSecs` without work. Credentials that change come from the app's
//! [`crate::MqttCredentialProvider`] ([`CredentialCache`]).
//!
//! The bookkeeping of one connection is the [`Session`] state machine, which knows nothing of
//! the network; [`run`] and `connection` feed it rumqttc's events.

use crate::config::SdkConfig;
use crate::error::Error;
use crate::hub::Lane;
use crate::hub::Link;
use crate::outbox::{Row, Transport};
use crate::retry::Backoff;
use crate::tls;
use crate::transport::credentials::CredentialCache;
use crate::transport::pace::{self, Rtt};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Publishes in flight at once on one connection.
pub const WINDOW: usize = 64;

/// Connection attempts in a row without a delivery after which MQTT's circuit counts as open.
const BREAKER_THRESHOLD: u32 = 5;

/// How long `close` waits for the broker to take the DISCONNECT.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// What the MQTT task needs from the app's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// rumqttc's connection options.
    pub options: MqttOptions,
    /// The device's topic.
    pub topic: String,
    /// The device's migration report topic.
    pub report_topic: String,
    /// Hang up after this long without work.
    pub idle_disconnect: Duration,
}

/// Builds the MQTT task's settings from the app's (validated already).
pub(crate) fn settings(config: &SdkConfig) -> Result<Settings, Error> {
    let m = &config.mqtt;
    let url = url::Url::parse(&m.broker_url).map_err(|source| Error::Url { field: "mqtt.brokerUrl", source })?;
    let secure = matches!(url.scheme(), "mqtts" | "ssl");
    let host = url.host_str().ok_or_else(|| Error::setting("mqtt.brokerUrl", "no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port().unwrap_or(if secure { 8883 } else { 1883 });
    let client_id = m.client_id.clone().unwrap_or_else(|| format!("dualpub-{}", config.device_id));
    let keep_alive = Duration::from_secs(m.keep_alive_secs.into());
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(keep_alive);
    o.set_clean_session(true);
    o.set_inflight(WINDOW as u16);
    o.set_request_channel_capacity(WINDOW * 2);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), m.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default());
    }
    if secure {
        let tls = tls::client_config(m.ca_certificates_pem.as_deref(), &[]).map_err(|source| Error::Tls { field: "mqtt.caCertificatesPem", source })?;
        o.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls)));
    }
    Ok(Settings {
        options: o,
        topic: crate::wire::mqtt_topic(&m.topic_template, &config.device_id),
        report_topic: crate::wire::mqtt_topic(crate::telemetry::reports::MQTT_TOPIC_TEMPLATE, &config.device_id),
        idle_disconnect: Duration::from_secs(m.idle_disconnect_secs.into()),
    })
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
    /// The publisher is closing.
    Shutdown,
    /// Nothing was owed for `idleDisconnectSecs`.
    Idle,
    /// The connection failed (the reason is logged).
    Failed(String),
    /// No progress (CONNACK, PUBACK) for the stall limit: a black-holed link.
    Stalled(String),
    /// The broker refused the credentials (CONNACK "bad user name or password" or "not
    /// authorized"): a credential provider is asked again.
    Refused(String),
}

impl End {
    /// The broker answered CONNECT with `code` (not success): a refusal of the credentials, or
    /// any other refusal, a failure.
    pub fn refused_with(code: ConnectReturnCode) -> End {
        match code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => End::Refused(format!("broker refused the credentials: {code:?}")),
            _ => End::Failed(format!("broker refused the connection: {code:?}")),
        }
    }

    /// Whether the connection broke (failed, stalled or refused), rather than ending on purpose.
    pub fn broke(&self) -> bool {
        matches!(self, End::Failed(_) | End::Stalled(_) | End::Refused(_))
    }
}

/// A publish handed to rumqttc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sent {
    /// The row's sequence number (the `reportSeq` of a report).
    pub seq: u64,
    /// A migration report, not a location.
    pub report: bool,
    /// When the row was accepted (for latency).
    pub accepted_at: Instant,
    /// When it was handed to the client.
    pub handed_at: Instant,
    /// Nothing else was outstanding when it was handed: its PUBACK times a round trip.
    pub lone: bool,
}

/// The bookkeeping of one connection, from CONNECT to its end: the publish window, the pkid →
/// row mapping, what to give back on failure, and when to hang up.
#[derive(Debug)]
pub(crate) struct Session {
    window: usize,
    stall_after: Duration,
    idle_disconnect: Duration,
    started: Instant,
    /// The last CONNACK or PUBACK, or when work was handed to a quiet connection.
    progress: Instant,
    /// Round trips timed on this connection (CONNACK, lone PUBACKs), for the caller's [`Rtt`].
    rtt_samples: Vec<Duration>,
    connected: bool,
    /// Publishes acknowledged on this connection.
    acked: usize,
    idle_since: Option<Instant>,
    /// Handed to the client, waiting for rumqttc to assign a packet id (in send order).
    queued: VecDeque<Sent>,
    /// On the wire, waiting for PUBACK.
    inflight: HashMap<u16, Sent>,
}

impl Session {
    /// A connection begun at `started`, not yet acknowledged by the broker: at most `window`
    /// publishes in flight, given up after `stall_after` without progress.
    pub fn new(window: usize, stall_after: Duration, idle_disconnect: Duration, started: Instant) -> Self {
        Session {
            window,
            stall_after,
            idle_disconnect,
            started,
            progress: started,
            rtt_samples: Vec::new(),
            connected: false,
            acked: 0,
            idle_since: None,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
        }
    }

    /// The broker answered CONNECT at `now`; an error if it refused. CONNECT to CONNACK spans
    /// the TCP, TLS and MQTT handshakes, about three round trips: a third of it is a sample.
    pub fn on_connack(&mut self, code: ConnectReturnCode, now: Instant) -> Result<(), End> {
        if code != ConnectReturnCode::Success {
            return Err(End::refused_with(code));
        }
        self.connected = true;
        self.progress = now;
        self.rtt_samples.push(now.saturating_duration_since(self.started) / 3);
        Ok(())
    }

    /// The round trips timed since the last call.
    pub fn take_rtt_samples(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.rtt_samples)
    }

    /// Whether nothing is handed over and unacknowledged.
    fn quiet(&self) -> bool {
        self.queued.is_empty() && self.inflight.is_empty()
    }

    /// The in-flight window from now on (it follows how the link has been cutting connections).
    pub fn set_window(&mut self, window: usize) {
        self.window = window;
    }

    /// How many more publishes may be handed over now (none before CONNACK).
    pub fn room(&self) -> usize {
        if self.connected {
            self.window.saturating_sub(self.queued.len() + self.inflight.len())
        } else {
            0
        }
    }

    /// A row was handed to the client at `now`.
    pub fn handed(&mut self, row: &Row, now: Instant) {
        self.hand(Sent { seq: row.seq, report: false, accepted_at: row.accepted_at, handed_at: now, lone: false });
    }

    /// Migration report `seq` was handed to the client at `now`.
    pub fn handed_report(&mut self, seq: u64, now: Instant) {
        self.hand(Sent { seq, report: true, accepted_at: now, handed_at: now, lone: false });
    }

    fn hand(&mut self, mut sent: Sent) {
        if self.quiet() {
            // A quiet connection owes no progress: the stall limit counts from now.
            self.progress = sent.handed_at;
            sent.lone = true;
        }
        self.queued.push_back(sent);
    }

    /// Fills the window from `lane`: `publish` hands one row to the client (false: the client
    /// refused it, and it and the rest go back). Returns how many were handed.
    pub fn fill(&mut self, lane: &Lane, now: Instant, mut publish: impl FnMut(&Row) -> bool) -> usize {
        let room = self.room();
        if room == 0 {
            return 0;
        }
        let rows = lane.take(room, usize::MAX, |len| len);
        let mut handed = 0;
        for (i, row) in rows.iter().enumerate() {
            if !publish(row) {
                lane.release(&rows[i..].iter().map(|r| r.seq).collect::<Vec<_>>());
                break;
            }
            self.handed(row, now);
            handed += 1;
        }
        handed
    }

    /// rumqttc put the oldest handed publish on the wire as `pkid`.
    pub fn on_outgoing_publish(&mut self, pkid: u16) {
        if let Some(sent) = self.queued.pop_front() {
            self.inflight.insert(pkid, sent);
        }
    }

    /// The broker acknowledged `pkid` at `now`: the publish it carried, and whether it is the
    /// first delivery on this connection (which proves the connection and resets the backoff).
    pub fn on_puback(&mut self, pkid: u16, now: Instant) -> Option<(Sent, bool)> {
        let sent = self.inflight.remove(&pkid)?;
        self.progress = now;
        if sent.lone {
            self.rtt_samples.push(now.saturating_duration_since(sent.handed_at));
        }
        self.acked += 1;
        Some((sent, self.acked == 1))
    }

    /// Publishes acknowledged on this connection.
    pub fn acked(&self) -> usize {
        self.acked
    }

    /// Everything not yet acknowledged: rows to go back to the outbox, then reports to wait again.
    pub fn give_back(&mut self) -> (Vec<u64>, Vec<u64>) {
        let (reports, rows): (Vec<Sent>, Vec<Sent>) = self.queued.drain(..).chain(self.inflight.drain().map(|(_, s)| s)).partition(|s| s.report);
        (rows.into_iter().map(|s| s.seq).collect(), reports.into_iter().map(|s| s.seq).collect())
    }

    /// Whether the connection should end at `now`: idle for too long with `owed` rows owed to
    /// MQTT (nothing in flight), at once with nothing in flight when the upload burst is over
    /// (`burst_over`: the next burst reconnects, so no keep-alive ping wakes the radio between
    /// bursts), or no PUBACK for the stall limit while publishes are outstanding.
    pub fn check(&mut self, now: Instant, owed: usize, burst_over: bool) -> Option<End> {
        if !self.connected {
            return None;
        }
        let quiet = self.quiet();
        if quiet && burst_over {
            return Some(End::Idle);
        }
        let idle = quiet && owed == 0;
        self.idle_since = if idle { self.idle_since.or(Some(now)) } else { None };
        if self.idle_since.is_some_and(|t| now.duration_since(t) >= self.idle_disconnect) {
            return Some(End::Idle);
        }
        if !quiet && now.saturating_duration_since(self.progress) >= self.stall_after {
            return Some(End::Stalled(format!("no PUBACK for {} ms", self.stall_after.as_millis())));
        }
        None
    }

    /// The next moment [`Session::check`] may end the connection, if any.
    pub fn deadline(&self) -> Option<Instant> {
        if self.quiet() {
            self.idle_since.map(|t| t + self.idle_disconnect)
        } else {
            Some(self.progress + self.stall_after)
        }
    }
}

/// The MQTT task: connect when something is owed, publish, track acks, reconnect with backoff.
pub(crate) async fn run(lane: Lane, settings: Settings, mut credentials: Option<CredentialCache>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::mqtt();
    let mut link = LinkView { rtt: Rtt::default(), window: pace::Window::new(WINDOW) };
    loop {
        // Stay off the radio until there is a reason to connect.
        while !lane.worth_connecting() {
            tokio::select! {
                _ = lane.work_arrives() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
        let mut options = settings.options.clone();
        if let Some(cache) = credentials.as_mut() {
            match cache.current().await {
                Ok(c) => {
                    options.set_credentials(c.username, c.password.expose());
                }
                Err(e) => {
                    // No credentials, no connection: back off as after a failed one.
                    let delay = backoff.next_delay();
                    lane.event(log::Level::Warn, || format!("no credentials ({e}); retrying in {} ms", delay.as_millis()));
                    if !lane.back_off(delay, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let (client, mut eventloop) = AsyncClient::new(options, WINDOW * 2);
        // No CONNACK (TCP, TLS and MQTT handshakes) within the stall limit: stalled.
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(link.rtt.stall_after().as_secs_f64().ceil() as u64);
        eventloop.set_network_options(network);
        let (tx, rx) = mpsc::channel(WINDOW * 4);
        let poller = tokio::spawn(poll(eventloop, tx));
        let end = connection(&lane, &settings, &client, rx, &mut shutdown, &mut backoff, &mut link).await;
        match end {
            End::Shutdown | End::Idle => {
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(DISCONNECT_GRACE, poller).await;
                if end == End::Shutdown {
                    return;
                }
                lane.event(log::Level::Debug, || "idle; disconnected".into());
            }
            End::Failed(ref why) | End::Stalled(ref why) | End::Refused(ref why) => {
                poller.abort();
                if matches!(end, End::Refused(_)) {
                    lane.metrics().mqtt_auth_refused();
                    if let Some(cache) = credentials.as_mut() {
                        cache.refused();
                    }
                }
                lane.burst_failed();
                lane.metrics().retry(Transport::Mqtt);
                // The MQTT "breaker" is its reconnect backoff; it reports open after
                // BREAKER_THRESHOLD connections in a row failed to deliver anything.
                if backoff.failures() + 1 == BREAKER_THRESHOLD {
                    lane.metrics().set_circuit_open(Transport::Mqtt, true);
                    lane.metrics().circuit_opened(Transport::Mqtt);
                    lane.breaker_opened();
                }
                let delay = backoff.next_delay();
                lane.event(log::Level::Warn, || format!("connection failed ({why}); retrying in {} ms", delay.as_millis()));
                if !lane.back_off(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// What one connection learns of the link and leaves for the next: its round trip and how many
/// publishes it carries before it is cut.
struct LinkView {
    rtt: Rtt,
    window: pace::Window,
}

/// Drives one event loop, forwarding every event; ends at the first error (a timeout connecting
/// or writing is a stall; a refusing CONNACK, which rumqttc reports as an error rather than an
/// event, is classified like one the session sees).
async fn poll(mut eventloop: EventLoop, tx: mpsc::Sender<Result<Event, End>>) {
    loop {
        let ev = eventloop.poll().await.map_err(|e| match e {
            ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => End::Stalled(e.to_string()),
            ConnectionError::ConnectionRefused(code) => End::refused_with(code),
            e => End::Failed(e.to_string()),
        });
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            return;
        }
    }
}

/// Handles one event of the connection's event loop (`None`: the loop stopped); a location's
/// PUBACK is added to `acks` for the caller to pass on. Returns how the connection ends, if it
/// does.
fn on_event(ev: Option<Result<Event, End>>, session: &mut Session, lane: &Lane, backoff: &mut Backoff, acks: &mut Vec<(u64, Instant)>) -> Option<End> {
    match ev {
        None => return Some(End::Failed("event loop stopped".into())),
        Some(Err(e)) => return Some(e),
        Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
            if let Err(e) = session.on_connack(ack.code, Instant::now()) {
                return Some(e);
            }
            lane.set_link(Link::Up);
            lane.event(log::Level::Info, || "connected".into());
        }
        Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => session.on_outgoing_publish(pkid),
        Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
            if let Some((sent, first)) = session.on_puback(ack.pkid, Instant::now()) {
                if sent.report {
                    lane.report_settled(sent.seq, true);
                } else {
                    acks.push((sent.seq, sent.accepted_at));
                }
                // Only a connection that delivers resets the backoff: one the broker accepts
                // and then drops (a duplicate client id, an ACL) keeps backing off.
                if first {
                    backoff.reset();
                    lane.metrics().set_circuit_open(Transport::Mqtt, false);
                }
            }
        }
        Some(Ok(_)) => {}
    }
    None
}

/// One connection, from CONNECT to failure, idleness or shutdown.
async fn connection(
    lane: &Lane,
    settings: &Settings,
    client: &AsyncClient,
    mut events: mpsc::Receiver<Result<Event, End>>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    link: &mut LinkView,
) -> End {
    let mut session = Session::new(link.window.size(), link.rtt.stall_after(), settings.idle_disconnect, Instant::now());
    // Every row not yet acknowledged goes back to the outbox; a broken connection counts them
    // as failed attempts (and narrows the window), a connection closed on purpose does not.
    let end = |session: &mut Session, link: &mut LinkView, end: End| {
        lane.set_link(if end.broke() { Link::Down } else { Link::Untried });
        let delivered = session.acked();
        let (seqs, reports) = session.give_back();
        if end.broke() {
            link.window.failed(seqs.len() + reports.len(), delivered);
            if !seqs.is_empty() {
                lane.metrics().failed(Transport::Mqtt, seqs.len() as u64);
            }
        }
        if matches!(end, End::Stalled(_)) {
            lane.metrics().stall(Transport::Mqtt);
        }
        lane.release_or_hand_over(&seqs);
        for seq in reports {
            lane.report_settled(seq, false);
        }
        end
    };
    loop {
        let now = Instant::now();
        let may_send = lane.may_send();
        session.set_window(link.window.size());
        if may_send {
            session.fill(lane, now, |row| match client.try_publish(&settings.topic, QoS::AtLeastOnce, false, row.payload.to_vec()) {
                Ok(()) => {
                    lane.metrics().bytes_sent(Transport::Mqtt, row.payload.len() as u64);
                    true
                }
                Err(e) => {
                    lane.event(log::Level::Debug, || format!("the request channel refused a publish: {e}"));
                    false
                }
            });
        }
        // A migration report goes once no location is pending here, in this same connection.
        if session.room() > 0 {
            if let Some(report) = lane.take_report(true) {
                match client.try_publish(&settings.report_topic, QoS::AtLeastOnce, false, report.bytes.to_vec()) {
                    Ok(()) => session.handed_report(report.seq, now),
                    Err(_) => lane.report_settled(report.seq, false),
                }
            }
        }
        // With an upload window, hang up once the burst is over for MQTT: nothing it may send,
        // and no migration report on its way to ride this connection.
        let burst_over = lane.windowed() && (!may_send || lane.depth() == 0) && !lane.report_coming();
        if let Some(e) = session.check(now, lane.depth(), burst_over) {
            return end(&mut session, link, e);
        }
        // Wake for the next idle or acknowledgement deadline, if any; otherwise only for events.
        let deadline = session.deadline();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.recv() => {
                // This event and whatever else has arrived meanwhile (up to a window's worth):
                // their acknowledgements go to the outbox in one call, one lock and one store
                // message for many PUBACKs.
                let mut acks = Vec::new();
                let mut next = Some(ev);
                let mut handled = 0;
                while let Some(ev) = next {
                    let ended = on_event(ev, &mut session, lane, backoff, &mut acks);
                    session.take_rtt_samples().into_iter().for_each(|d| link.rtt.sample(d));
                    if let Some(e) = ended {
                        if !acks.is_empty() {
                            acks.iter().for_each(|_| link.window.acked());
                            lane.ack(&acks);
                        }
                        return end(&mut session, link, e);
                    }
                    handled += 1;
                    next = if handled < WINDOW * 2 { events.try_recv().ok().map(Some) } else { None };
                }
                if !acks.is_empty() {
                    acks.iter().for_each(|_| link.window.acked());
                    lane.ack(&acks);
                }
            }
            _ = lane.work_arrives() => {}
            _ = timer => {}
            _ = shutdown.changed() => return end(&mut session, link, End::Shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::test_support::{hub, queue};
    use crate::MigrationConfig;

    const STALL: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(30);

    fn connected() -> Session {
        let mut s = Session::new(WINDOW, STALL, IDLE, Instant::now());
        s.on_connack(ConnectReturnCode::Success, Instant::now()).unwrap();
        s
    }

    #[test]
    fn an_upload_burst_that_is_over_hangs_up_at_once_once_nothing_is_in_flight() {
        let (h, t0) = (hub(MigrationConfig::default()), Instant::now());
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        queue(&h, 1, true, false);
        let mut s = connected();
        s.fill(&lane, t0, |_| true);
        assert_eq!(s.check(t0, 5, true), None, "a publish in flight holds the connection");
        s.on_outgoing_publish(1);
        s.on_puback(1, Instant::now());
        assert_eq!(s.check(t0, 5, true), Some(End::Idle), "rows left for the next burst do not keep it");
        assert_eq!(connected().check(t0, 0, false), None, "without a window, the idle timer decides");
    }

    #[test]
    fn nothing_is_handed_over_before_the_broker_accepts() {
        let h = hub(MigrationConfig::default());
        queue(&h, 3, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let mut s = Session::new(WINDOW, STALL, IDLE, Instant::now());
        assert_eq!(s.fill(&lane, Instant::now(), |_| true), 0);
        assert_eq!(s.on_connack(ConnectReturnCode::NotAuthorized, Instant::now()), Err(End::Refused("broker refused the credentials: NotAuthorized".into())));
        assert_eq!(
            s.on_connack(ConnectReturnCode::ServiceUnavailable, Instant::now()),
            Err(End::Failed("broker refused the connection: ServiceUnavailable".into()))
        );
        assert_eq!(s.room(), 0);
    }

    #[test]
    fn the_window_fills_to_its_size_and_no_further() {
        let h = hub(MigrationConfig::default());
        queue(&h, 100, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let mut s = connected();
        let mut handed = Vec::new();
        assert_eq!(
            s.fill(&lane, Instant::now(), |r| {
                handed.push(r.seq);
                true
            }),
            WINDOW
        );
        assert_eq!(handed, (1..=WINDOW as u64).collect::<Vec<_>>(), "oldest first");
        assert_eq!(s.room(), 0);
        assert_eq!(s.fill(&lane, Instant::now(), |_| true), 0, "a full window takes nothing");
        assert_eq!(h.lock().outbox.pending_count(Transport::Mqtt), 100 - WINDOW, "the rest stays pending");
    }

    #[test]
    fn a_refused_publish_and_the_rest_go_back_in_order() {
        let h = hub(MigrationConfig::default());
        queue(&h, 5, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let mut s = connected();
        assert_eq!(s.fill(&lane, Instant::now(), |r| r.seq <= 2), 2);
        assert_eq!(h.lock().outbox.oldest_pending_seq(Transport::Mqtt), Some(3));
        assert_eq!(h.lock().outbox.pending_count(Transport::Mqtt), 3);
    }

    #[test]
    fn acks_find_their_row_by_pkid_in_any_order() {
        let h = hub(MigrationConfig::default());
        queue(&h, 3, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let mut s = connected();
        s.fill(&lane, Instant::now(), |_| true);
        for pkid in [7, 8, 9] {
            s.on_outgoing_publish(pkid);
        }
        let (third, first) = s.on_puback(9, Instant::now()).unwrap();
        assert_eq!((third.seq, first), (3, true), "pkid 9 carried the third row; the first delivery on this connection");
        assert_eq!(s.on_puback(7, Instant::now()).map(|(x, f)| (x.seq, f)), Some((1, false)));
        assert_eq!(s.on_puback(7, Instant::now()), None, "a repeated PUBACK acknowledges nothing");
        assert_eq!(s.on_puback(42, Instant::now()), None, "an unknown pkid acknowledges nothing");
        assert_eq!(s.room(), WINDOW - 1);
    }

    #[test]
    fn a_failed_connection_gives_back_everything_unacknowledged() {
        let h = hub(MigrationConfig::default());
        queue(&h, 4, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let mut s = connected();
        s.fill(&lane, Instant::now(), |_| true);
        s.on_outgoing_publish(1);
        s.on_outgoing_publish(2);
        let (acked, _) = s.on_puback(1, Instant::now()).unwrap();
        lane.ack(&[(acked.seq, acked.accepted_at)]);
        s.handed_report(7, Instant::now());
        let (mut back, reports) = s.give_back();
        back.sort();
        assert_eq!(back, vec![2, 3, 4], "in flight (pkid 2) and still queued in the client (3, 4)");
        assert_eq!(reports, vec![7], "a report waits again, apart from the rows");
        lane.release(&back);
        assert_eq!(h.lock().outbox.pending_count(Transport::Mqtt), 3);
        assert_eq!(h.lock().outbox.depth(Transport::Mqtt), 3);
        assert_eq!(s.give_back(), (vec![], vec![]));
    }

    #[test]
    fn an_idle_connection_hangs_up_after_the_grace_period() {
        let mut s = connected();
        let t0 = Instant::now();
        assert_eq!(s.check(t0, 0, false), None, "idle starts now");
        assert_eq!(s.deadline(), Some(t0 + IDLE));
        assert_eq!(s.check(t0 + IDLE - Duration::from_millis(1), 0, false), None);
        assert_eq!(s.check(t0 + IDLE, 0, false), Some(End::Idle));
    }

    #[test]
    fn work_owed_keeps_the_connection_up() {
        let mut s = connected();
        let t0 = Instant::now();
        s.check(t0, 0, false);
        assert_eq!(s.check(t0 + IDLE, 5, false), None, "rows owed to MQTT (pending) are not idleness");
        assert_eq!(s.check(t0 + IDLE * 3, 0, false), None, "idleness starts again from when the work was gone");
        assert_eq!(s.check(t0 + IDLE * 4, 0, false), Some(End::Idle));
    }

    #[test]
    fn a_connection_without_progress_for_the_stall_limit_is_given_up_whatever_the_keep_alive() {
        let h = hub(MigrationConfig::default());
        queue(&h, 3, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let t0 = Instant::now();
        let mut s = Session::new(WINDOW, STALL, IDLE, t0);
        s.on_connack(ConnectReturnCode::Success, t0).unwrap();
        s.fill(&lane, t0, |_| true);
        (1..=3).for_each(|p| s.on_outgoing_publish(p));
        assert_eq!(s.deadline(), Some(t0 + STALL));
        let t1 = t0 + STALL - Duration::from_secs(1);
        assert!(s.on_puback(1, t1).is_some());
        assert_eq!(s.check(t0 + STALL, 0, false), None, "a PUBACK is progress: the limit counts from it");
        assert_eq!(s.deadline(), Some(t1 + STALL));
        assert_eq!(s.check(t1 + STALL, 0, false), Some(End::Stalled("no PUBACK for 10000 ms".into())));
        assert!(End::Stalled(String::new()).broke() && End::Failed(String::new()).broke() && !End::Idle.broke());
    }

    #[test]
    fn a_quiet_connection_owes_no_progress_and_the_round_trip_is_timed() {
        let h = hub(MigrationConfig::default());
        queue(&h, 2, true, false);
        let lane = Lane::new(h.clone(), Transport::Mqtt);
        let t0 = Instant::now();
        let mut s = Session::new(WINDOW, STALL, Duration::from_secs(3600), t0);
        s.on_connack(ConnectReturnCode::Success, t0 + Duration::from_millis(900)).unwrap();
        assert_eq!(s.take_rtt_samples(), [Duration::from_millis(300)], "a third of CONNECT to CONNACK");
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(s.check(t1, 0, false), None, "nothing outstanding: no stall, however long");
        s.fill(&lane, t1, |_| true);
        (1..=2).for_each(|p| s.on_outgoing_publish(p));
        assert_eq!(s.deadline(), Some(t1 + STALL), "the limit counts from when work was handed");
        s.on_puback(1, t1 + Duration::from_millis(250));
        s.on_puback(2, t1 + Duration::from_millis(260));
        assert_eq!(s.take_rtt_samples(), [Duration::from_millis(250)], "only the publish that had the link to itself times a round trip");
    }

    #[test]
    fn settings_come_from_the_app_config() {
        let c = SdkConfig::builder("d-1", "mqtt://127.0.0.1:1884", "p", "/tmp/x")
            .allow_insecure(true)
            .mqtt_keep_alive_secs(10)
            .mqtt_idle_disconnect_secs(7)
            .build()
            .unwrap();
        let s = settings(&c).unwrap();
        assert_eq!(s.topic, "device/telemetry/d-1");
        assert_eq!(s.idle_disconnect, Duration::from_secs(7));
        assert_eq!(s.options.broker_address(), ("127.0.0.1".to_string(), 1884));
        assert_eq!(s.options.client_id(), "dualpub-d-1");
    }
}
