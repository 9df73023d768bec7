//! A transport's narrow view of the outbox: take up to a window, acknowledge, put back, fall
//! back to MQTT, dead-letter, wait for work, and its own counters. The transport tasks see
//! nothing else of the publisher.

use crate::hub::Hub;
use crate::outbox::{Row, Transport};
use crate::telemetry::metrics::Metrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What the Pub/Sub task needs to know to decide whether a batch should go now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BatchStatus {
    /// Rows pending (not in flight) that may go now (with an upload window, the open burst's).
    pub pending: usize,
    /// The oldest pending row was accepted before a `flush` that is waiting.
    pub flushing: bool,
    /// The cost of the next batch (at most `max_count` rows).
    pub cost: usize,
    /// When the oldest pending row was accepted.
    pub oldest: Option<Instant>,
}

/// One transport's handle on the outbox.
#[derive(Clone)]
pub(crate) struct Lane {
    t: Transport,
    hub: Arc<Hub>,
}

impl Lane {
    /// The lane of transport `t`.
    pub fn new(hub: Arc<Hub>, t: Transport) -> Self {
        Lane { t, hub }
    }

    /// This lane's counters (and the shared ones it reports to).
    pub fn metrics(&self) -> &Metrics {
        &self.hub.metrics
    }

    /// Logs an event through the publisher's funnel.
    pub fn event(&self, level: log::Level, message: impl FnOnce() -> String) {
        self.hub.event(level, self.t.as_str(), message);
    }

    /// Resolves when there may be new work (or a config change) for this transport.
    pub async fn work_arrives(&self) {
        self.hub.woken(self.t).await;
    }

    /// Whether this transport may start sending now: the network is available and, with an
    /// upload window, a burst is open that it has not failed in.
    pub fn may_send(&self) -> bool {
        self.hub.gate.may_send(self.t)
    }

    /// Whether the app says the network is available.
    pub fn network(&self) -> bool {
        self.hub.gate.network()
    }

    /// Whether sending is grouped in upload bursts (a window above 0).
    pub fn windowed(&self) -> bool {
        self.hub.gate.windowed()
    }

    /// This transport failed in the open upload burst: it waits for the next one.
    pub fn burst_failed(&self) {
        self.hub.burst_failed(self.t);
    }

    /// Rows still owed to this transport (pending or in flight).
    pub fn depth(&self) -> usize {
        self.hub.lock().outbox.depth(self.t)
    }

    /// Takes the oldest pending rows (at most `max_count`, at most `max_bytes` by `cost` of each
    /// payload length, at least one; with an upload window, only the open burst's) and marks
    /// them in flight. Empty while their payloads are being read back from the database: the
    /// lane is woken when they are in memory.
    pub fn take(&self, max_count: usize, max_bytes: usize, cost: impl Fn(usize) -> usize) -> Vec<Row> {
        // The bound is read under the state lock (the lock order is state, then gate), so a
        // burst closing meanwhile cannot let rows accepted after it go.
        let mut st = self.hub.lock();
        let bound = self.hub.gate.send_bound();
        st.outbox.take_up_to(self.t, bound, max_count, max_bytes, cost)
    }

    /// Acknowledges rows, with their acceptance times for the latency histogram.
    pub fn ack(&self, acked: &[(u64, Instant)]) {
        self.hub.ack(self.t, acked);
    }

    /// Puts in-flight rows back in the queue, in acceptance order.
    pub fn release(&self, seqs: &[u64]) {
        if !seqs.is_empty() {
            self.hub.lock().outbox.release(self.t, seqs);
        }
    }

    /// As [`Lane::release`]; and if the config stopped owing this transport while they were in
    /// flight, the other transport takes over whatever would otherwise be owed to nobody.
    pub fn release_or_hand_over(&self, seqs: &[u64]) {
        let mut st = self.hub.lock();
        st.outbox.release(self.t, seqs);
        if !self.hub.owes(self.t, &st.active.decision) {
            let done = st.outbox.stop_owing(self.t);
            self.hub.completed(st, &done);
            self.hub.wake(self.t.other());
        }
    }

    /// Whether the decision in force still sends new work to this transport.
    pub fn owed_by_config(&self) -> bool {
        self.hub.owes(self.t, &self.hub.lock().active.decision)
    }

    /// What the config in force says of Pub/Sub requests: the compression it asks for (`None`:
    /// not set) and the attributes every message carries (docs/CONTRACT.md#pubsub-attributes).
    pub fn pubsub_wire(&self) -> (Option<crate::config::PubsubCompression>, Vec<crate::wire::PubsubAttribute>) {
        let st = self.hub.lock();
        let c = &st.active.config;
        (c.pubsub_compression, c.pubsub_attributes.clone().unwrap_or_else(|| crate::wire::DEFAULT_ATTRIBUTES.to_vec()))
    }

    /// Keeps what the Pub/Sub endpoint showed of gzip for the next runs (under `key` in the
    /// `meta` table), and in the metrics.
    pub fn record_gzip(&self, key: String, support: crate::telemetry::metrics::GzipSupport) {
        self.hub.metrics.set_gzip_support(support);
        self.hub.lock().outbox.persist_meta(key, support.code());
    }

    /// Makes MQTT owe `seqs` too, when the config allows fallback; they stay owed here. Returns
    /// how many were newly owed to MQTT (counted as fallbacks and logged).
    pub fn fall_back(&self, seqs: &[u64]) -> u64 {
        let newly = {
            let mut st = self.hub.lock();
            if !st.active.decision.fallback_to_mqtt {
                return 0;
            }
            st.outbox.also_owe(Transport::Mqtt, seqs)
        };
        if newly > 0 {
            self.hub.metrics.fallback(newly);
            self.hub.wake(Transport::Mqtt);
            self.hub.event(log::Level::Info, "fallback", || format!("{newly} location(s) also sent to mqtt"));
        }
        newly
    }

    /// [`Lane::fall_back`] for everything this transport owes.
    pub fn fall_back_all(&self) -> u64 {
        let seqs = self.hub.lock().outbox.owed_seqs(self.t);
        self.fall_back(&seqs)
    }

    /// Moves one in-flight row to the dead-letter list (kept, counted, exportable).
    pub fn dead_letter(&self, seq: u64, why: String) {
        self.hub.metrics.dead_letter();
        self.hub.metrics.failed(self.t, 1);
        let mut st = self.hub.lock();
        let done = st.outbox.dead_letter(self.t, seq, why);
        self.hub.enforce_limits(&mut st);
        self.hub.completed(st, &done);
    }

    /// The migration report waiting for this transport, if it may go now (see
    /// [`Reporter::take`](crate::hub::Reporter::take)); `connected`: this transport's link is up anyway.
    pub fn take_report(&self, connected: bool) -> Option<crate::telemetry::reports::CutReport> {
        self.hub.reporter().take(self.t, connected)
    }

    /// Report `seq` was delivered, or the attempt failed (it waits, and is tried again later).
    pub fn report_settled(&self, seq: u64, delivered: bool) {
        self.hub.reporter().settled(self.t, seq, delivered);
        if !delivered {
            self.event(log::Level::Debug, || format!("migration report {seq} not delivered; kept for later"));
        }
    }

    /// Whether a report waits that [`Lane::take_report`] would hand over without a connection.
    pub fn report_ready(&self) -> bool {
        self.hub.reporter().ready(self.t)
    }

    /// Whether a report for this transport waits or is about to (its commit not yet done).
    pub fn report_coming(&self) -> bool {
        self.hub.reporter().coming(self.t)
    }

    /// Whether the MQTT task has a reason to connect: locations owed that may go now (an upload
    /// burst, the network available), or a migration report that may go without them — one
    /// that may wake the radio by itself, or, with a window, one cut at the end of a burst while
    /// the radio is still on.
    pub fn worth_connecting(&self) -> bool {
        let locations = self.depth() > 0 && self.may_send();
        let report = (self.report_waiting_alone() || (self.windowed() && self.report_ready())) && self.network();
        locations || report
    }

    /// Whether a report waits that may wake the radio by itself.
    pub fn report_waiting_alone(&self) -> bool {
        self.hub.reporter().waiting_alone(self.t)
    }

    /// This transport's breaker opened: the fleet hears of it in a report (rate-limited).
    pub fn breaker_opened(&self) {
        let st = self.hub.lock();
        self.hub.reporter().cut(&st, crate::telemetry::reports::Trigger::Breaker);
    }

    /// Records what the last attempt said of this transport's link (`close` waits briefly for
    /// the last report only over a link not known to be down). A link that comes back is a
    /// sign the phone's network is back: the other transport stops waiting out its backoff.
    pub fn set_link(&self, link: crate::hub::Link) {
        if self.hub.links.set(self.t, link) {
            self.event(log::Level::Debug, || format!("link back; waking {}", self.t.other().as_str()));
            self.hub.rouse(self.t.other());
        }
    }

    /// Sleeps out a retry backoff of `delay`, ended early by a `Hub::rouse` of this transport
    /// (`flush`, `flushNow`, the network or the other transport's link back). Returns false on
    /// shutdown.
    pub async fn back_off(&self, delay: std::time::Duration, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.hub.rousers.roused(self.t) => {
                self.event(log::Level::Debug, || "backoff cut short".into());
                true
            }
            _ = shutdown.changed() => false,
        }
    }

    /// Where the pending rows stand, for batching.
    pub fn batch_status(&self, max_count: usize, cost: impl Fn(usize) -> usize) -> BatchStatus {
        let st = self.hub.lock();
        let flush_target = self.hub.flush_target.load(Ordering::SeqCst);
        BatchStatus {
            pending: st.outbox.pending_count_up_to(self.t, self.hub.gate.send_bound()),
            flushing: st.outbox.oldest_pending_seq(self.t).is_some_and(|s| s <= flush_target),
            cost: st.outbox.pending_cost(self.t, max_count, cost),
            oldest: st.outbox.oldest_pending(self.t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::test_support::{hub_with_window, queue};

    #[test]
    fn with_a_window_and_no_burst_open_nothing_is_taken() {
        let hub = hub_with_window(Default::default(), 30);
        queue(&hub, 3, true, true);
        let lane = Lane::new(hub.clone(), Transport::Mqtt);
        assert!(lane.take(10, 1 << 20, |n| n).is_empty(), "no burst: nothing may go");
        hub.open_burst(crate::hub::Burst::Now);
        queue(&hub, 2, true, true);
        let taken: Vec<u64> = lane.take(10, 1 << 20, |n| n).iter().map(|r| r.seq).collect();
        assert_eq!(taken, [1, 2, 3], "the burst's locations, not those accepted after it opened");
    }

    /// Runs `lane.back_off(1 h)` and `poke` a moment later; how long the backoff lasted.
    fn backoff_cut_by(lane: &Lane, poke: impl FnOnce()) -> std::time::Duration {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let (_stop, mut shutdown) = tokio::sync::watch::channel(false);
        let sleeping = {
            let lane = lane.clone();
            rt.spawn(async move {
                let t0 = std::time::Instant::now();
                assert!(lane.back_off(std::time::Duration::from_secs(3600), &mut shutdown).await);
                t0.elapsed()
            })
        };
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(50)).await });
        poke();
        rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(5), sleeping).await }).expect("the backoff was not cut short").unwrap()
    }

    #[test]
    fn a_backoff_ends_at_a_flush_and_when_the_other_transport_s_link_comes_back() {
        use crate::hub::Link;
        let hub = hub_with_window(Default::default(), 0);
        let mqtt = Lane::new(hub.clone(), Transport::Mqtt);
        let pubsub = Lane::new(hub.clone(), Transport::PubSub);
        assert!(backoff_cut_by(&mqtt, || hub.open_burst(crate::hub::Burst::Now)) < std::time::Duration::from_secs(5), "flushNow");
        assert!(backoff_cut_by(&pubsub, || hub.open_burst(crate::hub::Burst::Until(Instant::now()))) < std::time::Duration::from_secs(5), "flush");
        pubsub.set_link(Link::Down);
        assert!(backoff_cut_by(&mqtt, || pubsub.set_link(Link::Up)) < std::time::Duration::from_secs(5), "Pub/Sub back");
        mqtt.set_link(Link::Down);
        assert!(backoff_cut_by(&pubsub, || mqtt.set_link(Link::Up)) < std::time::Duration::from_secs(5), "MQTT back");
    }

    #[test]
    fn a_success_that_is_no_return_leaves_the_other_backoff_alone() {
        let hub = hub_with_window(Default::default(), 0);
        let mqtt = Lane::new(hub.clone(), Transport::Mqtt);
        let pubsub = Lane::new(hub.clone(), Transport::PubSub);
        pubsub.set_link(crate::hub::Link::Up);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let (_stop, mut shutdown) = tokio::sync::watch::channel(false);
        let cut = rt.block_on(async {
            let sleep = mqtt.back_off(std::time::Duration::from_secs(3600), &mut shutdown);
            let poke = async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                pubsub.set_link(crate::hub::Link::Up); // up after up: a batch like any other
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            };
            tokio::select! { _ = sleep => true, _ = poke => false }
        });
        assert!(!cut, "a dead broker is not retried after every Pub/Sub batch");
    }
}
