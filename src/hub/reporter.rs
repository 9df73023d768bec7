//! The migration reports' handle on the hub: cut a report from the counters and the outbox
//! (under the hub's lock, so both agree), hand it to a transport once its number is on disk,
//! settle it, and tell the schedule what is due. The hub keeps the lock, the wakes and the
//! condvar; the reports' slots and schedule are [`Reports`].

use super::{Hub, State, RADIO_WARM};
use crate::outbox::Transport;
use crate::telemetry::reports::{CutReport, Now, Reports, Tally, Trigger};
use std::sync::MutexGuard;

/// The reports' narrow handle on a hub ([`Hub::reporter`]).
#[derive(Clone, Copy)]
pub(crate) struct Reporter<'a> {
    hub: &'a Hub,
}

impl<'a> Reporter<'a> {
    /// The handle on `hub`'s reports.
    pub(super) fn new(hub: &'a Hub) -> Self {
        Reporter { hub }
    }

    /// Locks the reports' slots and schedule (after the state, if both are needed).
    pub fn slots(&self) -> MutexGuard<'a, Reports> {
        self.hub.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The interval of reports in force and whether reports are on at all (app and config).
    fn interval(&self, st: &State) -> Option<u32> {
        let c = &st.active.config;
        (self.hub.reports_allowed && c.reports_enabled).then_some(c.report_interval_secs)
    }

    /// This run's counters and latency histograms (what the tally persists).
    fn counts(&self, st: &State) -> Now {
        let (mut run, latency) = self.hub.metrics.report_parts();
        run.last_seq = st.last_loc_seq;
        Now { run, latency, ..Now::default() }
    }

    /// The figures of this run a report is cut from: the counts and the gauges.
    fn now(&self, st: &State, interval_secs: u32) -> Now {
        let gauges = st.gauges();
        Now {
            decision: Some(st.active.decision.clone()),
            depth: gauges.depth,
            oldest_seq: Transport::ALL.map(|t| st.outbox.oldest_owed_wire_seq(t).unwrap_or(0)),
            oldest_age_seconds: gauges.oldest_age_seconds,
            breaker_open: Transport::ALL.map(|t| self.hub.metrics.circuit_open(t)),
            interval_secs,
            ..self.counts(st)
        }
    }

    /// Cuts a report for `trigger` if reports are on and the schedule allows it, for every
    /// transport the decision in force sends to (and MQTT while Pub/Sub's breaker has it fall
    /// back). It goes once its number is on disk ([`Reporter::persisted`]). Returns whether
    /// one was cut.
    pub fn cut(&self, st: &State, trigger: Trigger) -> bool {
        let Some(interval) = self.interval(st) else { return false };
        let (now_ms, run_ms) = (self.hub.now_ms(), st.outbox.run_now_ms());
        let mut reports = self.slots();
        // A config change deferred by the once-a-minute rule is cut at the next chance after it.
        let trigger = if trigger != Trigger::Config && reports.config_due(run_ms) { Trigger::Config } else { trigger };
        if !reports.may_cut(trigger, interval, now_ms, run_ms) {
            if trigger == Trigger::Config {
                reports.defer_config();
            }
            return false;
        }
        let d = &st.active.decision;
        let targets = [self.hub.owes(Transport::Mqtt, d), d.pubsub_enabled];
        let now = self.now(st, interval);
        let seq = reports.cut(&self.hub.identity, &now, trigger, targets, now_ms, run_ms);
        drop(reports);
        // A commit persists the new reportSeq (with the counters) and every location accepted
        // before it; the store then says so (Reporter::persisted).
        st.outbox.persist_checkpoint(seq);
        self.hub.event(log::Level::Debug, "report", || format!("report {seq} cut ({})", trigger.as_str()));
        true
    }

    /// When the next silent report is due (device clock, ms), if reports are on.
    pub fn silent_due_ms(&self) -> Option<i64> {
        let st = self.hub.lock();
        let interval = self.interval(&st)?;
        Some(self.slots().silent_due_ms(interval))
    }

    /// How long until a deferred config-change report may be cut, if one waits.
    pub fn config_due_in(&self) -> Option<std::time::Duration> {
        let st = self.hub.lock();
        let due = self.slots().config_due_run_ms()?;
        Some(std::time::Duration::from_millis(due.saturating_sub(st.outbox.run_now_ms()).max(0) as u64))
    }

    /// The tally to persist with a commit. Runs on the `dualpub-store` thread inside the open
    /// SQLite transaction (it takes `state`, then `Reports`; nothing holding `state` waits for
    /// the store).
    pub fn tally(&self) -> Tally {
        let st = self.hub.lock();
        let now = self.counts(&st);
        self.slots().tally(&now)
    }

    /// Reports up to `seq` are on disk: the transports may send them.
    pub fn persisted(&self, seq: u64) {
        if self.slots().persisted(seq) {
            self.hub.wake_all();
        }
    }

    /// Cuts a silent report if one is due (two intervals without location traffic); it may
    /// wake the radio by itself. Returns whether one was cut.
    pub fn tick(&self) -> bool {
        let st = self.hub.lock();
        self.cut(&st, Trigger::Silent)
    }

    /// Whether the report waiting for `t` (if any) may go now: once no location is pending for
    /// `t` (a report never goes ahead of a location), and only if it may wake the radio by itself
    /// or the radio is on anyway (`t` is connected, or a transport delivered within the last 20 s).
    fn may_go(st: &State, reports: &Reports, t: Transport, connected: bool) -> bool {
        st.outbox.pending_count(t) == 0 && (connected || reports.waiting_alone(t) || reports.warm(RADIO_WARM))
    }

    /// The report waiting for `t`, if it may go now (see `report_may_go`); marked in flight.
    pub fn take(&self, t: Transport, connected: bool) -> Option<CutReport> {
        let st = self.hub.lock();
        let mut reports = self.slots();
        if !Self::may_go(&st, &reports, t, connected) {
            return None;
        }
        reports.take(t)
    }

    /// Whether a report waits for `t` that [`Reporter::take`] would hand over now (without
    /// a connection).
    pub fn ready(&self, t: Transport) -> bool {
        let st = self.hub.lock();
        let reports = self.slots();
        reports.waiting(t) && Self::may_go(&st, &reports, t, false)
    }

    /// Whether a report for `t` waits or is about to (see `Reports::coming`).
    pub fn coming(&self, t: Transport) -> bool {
        self.slots().coming(t)
    }

    /// Whether a report waits for `t` that may wake the radio by itself.
    pub fn waiting_alone(&self, t: Transport) -> bool {
        self.slots().waiting_alone(t)
    }

    /// `t` delivered report `seq` (`delivered`), or the attempt failed and it waits again.
    pub fn settled(&self, t: Transport, seq: u64, delivered: bool) {
        self.slots().settled(t, seq, delivered);
        self.hub.progress.notify();
    }
}
