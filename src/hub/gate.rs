//! The upload window: when the transports may use the network (docs/CONTRACT.md#upload-windows).
//!
//! A phone's radio stays in its high-power state for about ten seconds after any packet, so
//! what costs battery is how often the SDK talks, not how much. With a window of W seconds the
//! transports send nothing on their own: locations wait, durable, until a **burst** opens — W
//! after the first location owed since the last burst, at once for `flush`/`flushNow`, or
//! when the network comes back — and then both transports send, in that one burst, every
//! location accepted before it opened. The burst closes as soon as those are delivered (MQTT
//! hangs up then, so no keep-alive ping falls between bursts; what arrived meanwhile gets the
//! next burst) or every transport still owing something failed in it or sits out. A
//! transport that failed sits out the following bursts for a while (W for its first
//! [`STEADY_FAILURES`] failures in a row, then doubling up to [`OUTAGE_MAX_GAP`], reset by its
//! next delivery or cut short by `Hub::rouse`), so an hour of outage costs it a bounded
//! number of attempts while the other transport keeps its window. While the app says the network
//! is unavailable nothing is attempted at all. A window of 0 keeps sending at once (the
//! transports' own retry backoff applies), only the network switch holds them.
//!
//! **No fleet in step.** Devices that get the same config push or come back from the same
//! outage must not all connect in the same second. Each device has a [`Phase`] in the window,
//! stable and uniform from its device id: a scheduled burst opens at the first moment of the
//! device's phase at least W/2 after the work was owed (so between W/2 and 3W/2 later, W on
//! average), on a grid of wall-clock time that all devices share; a burst for the network's
//! return or a restored backlog opens after the phase's share of min(W, 30 s).
//!
//! The gate is a leaf lock: nothing else is locked while it is held. Decisions that depend on
//! what the outbox owes (settle, fail, tick, open) are taken with the publisher's state lock
//! held, so the look at the outbox and the decision cannot be split by new work.

use crate::outbox::Transport;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The longest a failing transport sits out bursts (an outage costs each transport about
/// 3600 / 300 + 7 attempts an hour).
pub(crate) const OUTAGE_MAX_GAP: Duration = Duration::from_secs(300);

/// Failures in a row after which a transport sits out more than one window: a link black-holed
/// for a minute or two (a tunnel, a lift) is tried at every burst, so its return is noticed
/// within a window; a longer outage backs off.
pub(crate) const STEADY_FAILURES: u32 = 3;

/// A burst with no progress for this long closes (a transport hanging on a dead link).
pub(crate) const BURST_STALL: Duration = Duration::from_secs(30);

/// The longest a burst for the network's return (or a restored backlog) is put off to spread a
/// fleet: the device's phase's share of min(W, this).
pub(crate) const RETURN_SPREAD: Duration = Duration::from_secs(30);

/// Where a device's bursts fall within the window (docs/CONTRACT.md#upload-windows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    /// The device's offset, as a fraction of the window in [0, 1).
    pub fraction: f64,
    /// An instant and the wall-clock time (ms since the epoch) it stands for: the grid is
    /// wall-clock time, shared by every device whose clock is roughly right.
    pub anchor: (Instant, u64),
}

impl Phase {
    /// The phase of `device_id`: a stable, uniform fraction from its hash (salted apart from
    /// the rollout's bucket, so a cohort is not bunched in the window), anchored at now.
    pub fn of_device(device_id: &str) -> Self {
        let bucket = crate::config::rollout::bucket(crate::config::rollout::RolloutAlgorithm::V1, "dualpub-burst-phase", device_id);
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Phase { fraction: f64::from(bucket) / crate::config::rollout::V1_BUCKETS as f64, anchor: (Instant::now(), wall) }
    }

    /// The first instant at or after `from` that falls on this device's phase of `window`.
    pub fn next(&self, from: Instant, window: Duration) -> Instant {
        let w = window.as_millis() as u64;
        if w == 0 {
            return from;
        }
        let wall = self.anchor.1 + from.saturating_duration_since(self.anchor.0).as_millis() as u64;
        let phase = (self.fraction * w as f64) as u64 % w;
        from + Duration::from_millis((phase + w - wall % w) % w)
    }
}

/// What the window task should do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Next {
    /// Nothing is scheduled: wait to be poked.
    Idle,
    /// Something happens at this moment (a burst opens, or a stalled one closes).
    At(Instant),
}

#[derive(Debug)]
struct State {
    /// `SdkConfig.uploadWindowSecs`: the window unless the config in force sets one.
    default_window: Duration,
    window: Duration,
    /// The transports may use the network: `network_said` and not `paused`.
    network: bool,
    /// What the app said of the network (`setNetworkAvailable`).
    network_said: bool,
    /// The app paused collection (`setCollectionEnabled(false)`).
    paused: bool,
    /// The open burst: when it last made progress.
    open: Option<Instant>,
    /// When the next burst opens, if one is scheduled.
    due: Option<Instant>,
    /// Per transport: it failed in the open burst.
    failed: [bool; 2],
    /// Per transport: attempts in a row that failed (reset by a delivery).
    outage: [u32; 2],
    /// Per transport: it sits out bursts until then (after a failure)…
    sit_out_until: [Option<Instant>; 2],
    /// … counted from its last failure (a new window recomputes the sit-out from it).
    failed_at: [Option<Instant>; 2],
    /// Bursts opened since start (tests read it).
    bursts: u64,
    /// Times the window task woke (tests read it: offline, it must not spin).
    wakeups: u64,
    /// A blocking `flush` waits until then: failures do not end its burst, the transports'
    /// own backoff paces their retries.
    urgent_until: Option<Instant>,
    /// The open burst is for the locations accepted up to this outbox sequence number: it is
    /// over once they are delivered, whatever arrived since (that waits for the next one).
    target: u64,
    /// The device's phase; `None` schedules bursts exactly W after the work (the window's
    /// rules in unit tests, unspread).
    phase: Option<Phase>,
}

impl State {
    /// When a transport that failed at `at` (its `outage`-th failure in a row) stops sitting
    /// out: [`Gate::sit_out`] later; with a phase, W/2 earlier, since the burst it joins opens at
    /// the phase after that (so a sit-out of W is one burst a window, at the device's phase).
    fn sit_out_end(&self, at: Instant, outage: u32) -> Instant {
        let slack = if self.phase.is_some() { self.window / 2 } else { Duration::ZERO };
        at + Gate::sit_out(self.window, outage) - slack
    }

    /// When a burst scheduled for work owed from `now` (or a sit-out ending at `not_before`)
    /// opens: at the device's phase at least W/2 after (exactly W after without a phase).
    fn due_after(&self, now: Instant, not_before: Option<Instant>) -> Instant {
        let lead = if self.phase.is_some() { self.window / 2 } else { self.window };
        self.at_phase(not_before.map_or(now + lead, |u| u.max(now + lead)))
    }

    /// The first moment of the device's phase at or after `t` (`t` itself without a phase).
    fn at_phase(&self, t: Instant) -> Instant {
        self.phase.map_or(t, |p| p.next(t, self.window))
    }

    fn urgent(&self, now: Instant) -> bool {
        self.urgent_until.is_some_and(|u| now < u)
    }

    /// Whether `t` takes part in the open burst: it has not failed in it and is not sitting out.
    fn takes_part(&self, t: Transport, now: Instant) -> bool {
        !self.failed[t.index()] && self.sit_out_until[t.index()].is_none_or(|u| now >= u)
    }
}

/// When the transports may send.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
    /// Wakes the window task (its schedule changed).
    pub changed: Notify,
}

impl Gate {
    /// A gate with `SdkConfig.uploadWindowSecs`, the config's own window if it sets one, the
    /// network available, bursts at the device's `phase`.
    pub fn new(default_window_secs: u32, config_window_secs: Option<u32>, phase: Option<Phase>) -> Self {
        let default_window = Duration::from_secs(default_window_secs.into());
        let window = config_window_secs.map_or(default_window, |s| Duration::from_secs(s.into()));
        Gate {
            state: Mutex::new(State {
                default_window,
                window,
                network: true,
                network_said: true,
                paused: false,
                open: None,
                due: None,
                failed: [false; 2],
                outage: [0; 2],
                sit_out_until: [None; 2],
                failed_at: [None; 2],
                bursts: 0,
                wakeups: 0,
                urgent_until: None,
                target: 0,
                phase,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The config in force changed: its window (`None`: the app's default). A transport sitting
    /// out bursts after a failure sits out what the new window gives from that failure (a
    /// sit-out begun under an hour's window does not outlast a config that shortens it).
    pub fn set_config_window(&self, secs: Option<u32>) {
        let mut s = self.lock();
        s.window = secs.map_or(s.default_window, |v| Duration::from_secs(v.into()));
        for i in 0..2 {
            if let (Some(_), Some(at)) = (s.sit_out_until[i], s.failed_at[i]) {
                s.sit_out_until[i] = Some(s.sit_out_end(at, s.outage[i]));
            }
        }
        if s.window.is_zero() {
            s.due = None;
        } else if let Some(due) = s.due {
            // A shorter window brings the next burst forward, never later.
            let sooner = s.due_after(Instant::now(), None);
            s.due = Some(due.min(sooner));
        }
        drop(s);
        self.changed.notify_one();
    }

    /// The window in force.
    #[cfg(test)]
    pub fn window(&self) -> Duration {
        self.lock().window
    }

    /// Whether bursts are in use (a window above 0).
    pub fn windowed(&self) -> bool {
        !self.lock().window.is_zero()
    }

    /// Bursts opened since start.
    #[cfg(test)]
    pub fn bursts(&self) -> u64 {
        self.lock().bursts
    }

    /// Whether transport `t` may start sending now.
    pub fn may_send(&self, t: Transport) -> bool {
        self.may_send_at(t, Instant::now())
    }

    /// Whether transport `t` may start sending at `now`.
    pub fn may_send_at(&self, t: Transport, now: Instant) -> bool {
        let s = self.lock();
        s.network && (s.window.is_zero() || s.urgent(now) || (s.open.is_some() && s.takes_part(t, now)))
    }

    /// Whether a burst is open.
    pub fn is_open(&self) -> bool {
        self.lock().open.is_some()
    }

    /// What the app said of the network; returns whether a burst should open now (it came back).
    pub fn set_network(&self, available: bool) -> bool {
        self.switch(|s| s.network_said = available)
    }

    /// The app paused (`true`) or resumed collection: while paused nothing is sent, as without
    /// a network. Returns whether a burst should open now (sending may resume).
    pub fn set_paused(&self, paused: bool) -> bool {
        self.switch(|s| s.paused = paused)
    }

    /// Whether the app says the network is available (paused or not).
    pub fn network_said(&self) -> bool {
        self.lock().network_said
    }

    /// Whether the app paused collection.
    pub fn paused(&self) -> bool {
        self.lock().paused
    }

    /// Applies a change of the app's switches; returns whether the network became usable.
    fn switch(&self, change: impl FnOnce(&mut State)) -> bool {
        let mut s = self.lock();
        let was = s.network;
        change(&mut s);
        s.network = s.network_said && !s.paused;
        if !s.network {
            s.open = None;
        }
        let back = s.network && !was;
        drop(s);
        self.changed.notify_one();
        back
    }

    /// Whether the transports may use the network: the app says it is available and has not
    /// paused collection.
    pub fn network(&self) -> bool {
        self.lock().network
    }

    /// New locations are owed at `now`: schedules a burst a window from now unless one is
    /// open or already scheduled.
    pub fn work_owed(&self, now: Instant) {
        let mut s = self.lock();
        if s.window.is_zero() || s.open.is_some() || s.due.is_some() {
            return;
        }
        s.due = Some(s.due_after(now, None));
        drop(s);
        self.changed.notify_one();
    }

    /// Opens a burst now for a blocking `flush` that waits until `until`: until then a failure
    /// does not end the burst (the transports retry at their own backoff). Returns whether the
    /// transports should be woken.
    pub fn open_urgent(&self, now: Instant, until: Instant, target: u64) -> bool {
        self.lock().urgent_until = Some(until);
        self.open_now(now, target)
    }

    /// A burst is wanted soon for an event a fleet may share (the network back, a restored
    /// backlog): true to open it now (no window); otherwise it is scheduled after the device's
    /// phase's share of min(W, [`RETURN_SPREAD`]), unless one is open or due sooner.
    pub fn open_spread(&self, now: Instant) -> bool {
        let mut s = self.lock();
        if s.window.is_zero() {
            return true;
        }
        let delay = s.phase.map_or(Duration::ZERO, |p| s.window.min(RETURN_SPREAD).mul_f64(p.fraction));
        if s.open.is_none() && s.network {
            s.due = Some(s.due.map_or(now + delay, |d| d.min(now + delay)));
        }
        drop(s);
        self.changed.notify_one();
        false
    }

    /// Opens a burst now (`flush`, `flushNow`, the network back, a due burst) for the locations
    /// accepted up to outbox sequence number `target`; returns whether the transports should be
    /// woken (false while the network is unavailable).
    pub fn open_now(&self, now: Instant, target: u64) -> bool {
        let mut s = self.lock();
        if !s.network {
            return false;
        }
        if s.open.is_none() {
            s.bursts += 1;
            s.failed = [false; 2];
            s.target = target;
        }
        s.target = s.target.max(target);
        s.open = Some(now);
        s.due = None;
        drop(s);
        self.changed.notify_one();
        true
    }

    /// The highest outbox sequence number a transport may take now: the open burst's (a
    /// location accepted after it opened waits for the next one), none with a window and no
    /// burst open (a blocking flush opens one), any without a window.
    pub fn send_bound(&self) -> u64 {
        let s = self.lock();
        match s.open {
            _ if s.window.is_zero() => u64::MAX,
            Some(_) => s.target,
            None => 0,
        }
    }

    /// The outbox sequence number the open burst is for, if one is open.
    #[cfg(test)]
    pub fn burst_target(&self) -> Option<u64> {
        let s = self.lock();
        s.open.map(|_| s.target)
    }

    /// Transport `t` failed in the open burst: it sits out bursts for W after each of its first
    /// [`STEADY_FAILURES`] failures in a row, then 2 W, 4 W … up to [`OUTAGE_MAX_GAP`]; `owed` is what each transport still
    /// owes, `delivered_through` the highest outbox sequence number up to which every location
    /// has left the outbox. Returns whether the burst closed.
    pub fn failed(&self, t: Transport, owed: [bool; 2], delivered_through: u64, now: Instant) -> bool {
        let mut s = self.lock();
        if s.window.is_zero() || s.open.is_none() || s.urgent(now) {
            return false;
        }
        let i = t.index();
        s.failed[i] = true;
        s.outage[i] = s.outage[i].saturating_add(1);
        s.failed_at[i] = Some(now);
        s.sit_out_until[i] = Some(s.sit_out_end(now, s.outage[i]));
        let closed = Self::close_if_done(&mut s, owed, delivered_through, now);
        drop(s);
        self.changed.notify_one();
        closed
    }

    /// Something was acknowledged or stopped being owed; `owed` is what each transport still
    /// owes, `delivered_through` the highest outbox sequence number up to which every location
    /// has left the outbox. Returns whether the burst closed (its locations delivered, or every
    /// transport still owing something failed or sits out).
    ///
    /// Call it with the publisher's state lock still held from the look at the outbox: a
    /// `sendLocation` and a `flush` in between would otherwise add work and widen the burst
    /// that a stale look then closes (the flush waits for the next window).
    pub fn settled(&self, owed: [bool; 2], delivered_through: u64, now: Instant) -> bool {
        let mut s = self.lock();
        if s.open.is_none() {
            return false;
        }
        s.open = Some(now);
        let closed = Self::close_if_done(&mut s, owed, delivered_through, now);
        if closed {
            drop(s);
            self.changed.notify_one();
        }
        closed
    }

    /// Transport `t` delivered: its outage is over.
    pub fn delivered(&self, t: Transport) {
        let mut s = self.lock();
        s.outage[t.index()] = 0;
        s.sit_out_until[t.index()] = None;
        s.failed_at[t.index()] = None;
    }

    /// Transport `t` is told to try again now (see `Hub::rouse`): it stops sitting out bursts;
    /// its failures in a row still count, so a failure now sits out as long as it would have.
    pub fn rouse(&self, t: Transport) {
        let mut s = self.lock();
        s.sit_out_until[t.index()] = None;
        s.failed[t.index()] = false;
        drop(s);
        self.changed.notify_one();
    }

    /// How long a transport sits out after its `outage`-th failure in a row: W for the first
    /// [`STEADY_FAILURES`], then 2 W, 4 W … up to [`OUTAGE_MAX_GAP`], never less than W.
    fn sit_out(window: Duration, outage: u32) -> Duration {
        let doublings = outage.saturating_sub(STEADY_FAILURES).min(16);
        window.saturating_mul(1u32 << doublings).min(OUTAGE_MAX_GAP).max(window)
    }

    fn close_if_done(s: &mut State, owed: [bool; 2], delivered_through: u64, now: Instant) -> bool {
        let urgent = s.urgent(now);
        let done = delivered_through >= s.target || Transport::ALL.iter().all(|t| !owed[t.index()] || (!urgent && !s.takes_part(*t, now)));
        if done {
            Self::close(s, owed, now);
        }
        done
    }

    /// Closes the open burst; what is still owed gets the next one: a window from now, or
    /// when the transport owing it stops sitting out.
    fn close(s: &mut State, owed: [bool; 2], now: Instant) {
        s.open = None;
        s.urgent_until = None;
        s.due = Self::next_due(s, owed, now);
    }

    /// When the next burst should open for what is owed (none: nothing is).
    fn next_due(s: &State, owed: [bool; 2], now: Instant) -> Option<Instant> {
        if s.window.is_zero() {
            return None;
        }
        Transport::ALL.iter().filter(|t| owed[t.index()]).map(|t| s.due_after(now, s.sit_out_until[t.index()])).min()
    }

    /// What the window task waits for: nothing while the network is unavailable (no burst can
    /// open; its return pokes the task and opens one).
    pub fn next(&self) -> Next {
        let s = self.lock();
        if !s.network {
            return Next::Idle;
        }
        match (s.open, s.due) {
            // A blocking flush's burst stays open until its deadline, stalled or not.
            (Some(progress), _) => Next::At((progress + BURST_STALL).max(s.urgent_until.unwrap_or(progress))),
            (None, Some(due)) => Next::At(due),
            (None, None) => Next::Idle,
        }
    }

    /// Counts one wakeup of the window task.
    pub fn woke(&self) {
        self.lock().wakeups += 1;
    }

    /// How many times the window task woke since start.
    #[cfg(test)]
    pub fn wakeups(&self) -> u64 {
        self.lock().wakeups
    }

    /// The window task's tick at `now`: opens a due burst (true: wake the transports) or closes
    /// a stalled one (after a blocking flush's deadline, if one holds it), given what each
    /// transport owes.
    pub fn tick(&self, now: Instant, owed: [bool; 2], target: u64) -> bool {
        let mut s = self.lock();
        match (s.open, s.due) {
            // Stalled: closed, unless a blocking flush holds it open until its deadline (the
            // transports keep retrying at their own backoff meanwhile).
            (Some(progress), _) if now >= progress + BURST_STALL && !s.urgent(now) => {
                Self::close(&mut s, owed, now);
                false
            }
            (None, Some(due)) if now >= due => {
                // Open only for a transport that may take part; otherwise wait for the first
                // one's sit-out to end.
                let ready = Transport::ALL.iter().any(|t| owed[t.index()] && s.sit_out_until[t.index()].is_none_or(|u| now >= u));
                if ready {
                    drop(s);
                    self.open_now(now, target)
                } else {
                    s.due = Transport::ALL.iter().filter(|t| owed[t.index()]).filter_map(|t| s.sit_out_until[t.index()]).map(|u| s.at_phase(u)).min();
                    false
                }
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When Pub/Sub's breaker opens (so MQTT takes over) for a device on Pub/Sub only whose
    /// every publish fails, at window `w`: Pub/Sub tries once a burst, sits out after each
    /// failure; the first burst opens a window after the first location (time 0).
    fn fallback_after(w: Duration) -> Duration {
        let g = Gate::new(w.as_secs() as u32, None, None);
        let mut breaker = crate::transport::breaker::Breaker::pubsub();
        let t0 = Instant::now();
        let mut now = t0;
        g.work_owed(now);
        for _ in 0..20 {
            now = match g.next() {
                Next::At(at) => at,
                Next::Idle => panic!("nothing scheduled"),
            };
            if !g.tick(now, [false, true], 1) {
                continue; // a sit-out's end, or a stalled burst closing
            }
            if breaker.failure(now) {
                return now - t0;
            }
            g.failed(Transport::PubSub, [false, true], 0, now);
        }
        panic!("no fallback after 20 bursts");
    }

    #[test]
    fn with_a_window_fallback_comes_within_two_windows_and_a_minute() {
        for secs in [1u64, 10, 30, 60, 300, 3_600] {
            let w = Duration::from_secs(secs);
            let took = fallback_after(w);
            assert!(took <= 2 * w + Duration::from_secs(60), "window {secs} s: the breaker opened after {took:?}");
        }
        assert_eq!(fallback_after(Duration::from_secs(30)), Duration::from_secs(60), "two failed bursts 30 s apart");
    }

    /// 1,000 devices at 1 Hz, in step under a 300 s window, get a config push that sets 30 s;
    /// each opens the bursts it is scheduled (with its phase, or none), its work owed again a
    /// second after each burst. The bursts opened per second over the 150 s after the push:
    /// (max, mean).
    fn connects_per_second_after_a_push(phased: bool) -> (usize, f64) {
        let t0 = Instant::now();
        let mut per_second = vec![0usize; 150];
        for d in 0..1_000 {
            let phase = phased.then(|| Phase::of_device(&format!("device-{d}")));
            let g = Gate::new(300, None, phase);
            g.work_owed(t0);
            g.set_config_window(Some(30)); // the push, the same moment for the whole fleet
            let push = Instant::now();
            for _ in 0..10 {
                let Next::At(due) = g.next() else { panic!("nothing scheduled") };
                let since = due.saturating_duration_since(push).as_secs() as usize;
                if since >= per_second.len() {
                    break;
                }
                assert!(g.tick(due, BOTH, 1), "the burst opens");
                per_second[since] += 1;
                assert!(g.settled(NONE, 1, due), "delivered at once");
                g.work_owed(due + Duration::from_secs(1));
            }
        }
        let mean = per_second.iter().sum::<usize>() as f64 / per_second.len() as f64;
        (*per_second.iter().max().unwrap(), mean)
    }

    #[test]
    fn a_fleet_pushed_a_config_at_once_does_not_connect_in_step() {
        let (max, mean) = connects_per_second_after_a_push(true);
        println!("phased: max {max}/s, mean {mean:.1}/s, max/mean {:.2}", max as f64 / mean);
        assert!(mean > 25.0, "about one burst per device per window: {mean}");
        assert!(max as f64 <= 2.0 * mean, "phased: max {max}/s against a mean of {mean:.1}/s");
        let (max, mean) = connects_per_second_after_a_push(false);
        println!("in step: max {max}/s, mean {mean:.1}/s, max/mean {:.2}", max as f64 / mean);
        assert!(max as f64 > 10.0 * mean, "without phases the fleet moves in step: max {max}/s, mean {mean:.1}/s");
    }

    #[test]
    fn a_phase_is_stable_uniform_and_on_a_shared_grid() {
        let w = Duration::from_secs(30);
        let a = Phase::of_device("d-1");
        assert_eq!(a.fraction, Phase::of_device("d-1").fraction, "stable");
        let t = a.anchor.0 + Duration::from_millis(12_345);
        let next = a.next(t, w);
        assert!(next >= t && next < t + w);
        assert_eq!(a.next(next, w), next, "a moment on the phase is its own next");
        assert_eq!(a.next(next + Duration::from_millis(1), w), next + w, "then a window later");
        // Two devices anchored at different instants agree on the wall-clock grid.
        let b = Phase { fraction: a.fraction, anchor: (a.anchor.0 + Duration::from_secs(7), a.anchor.1 + 7_000) };
        assert_eq!(b.next(t, w), next);
        let mut deciles = [0; 10];
        (0..10_000).for_each(|i| deciles[(Phase::of_device(&format!("dev-{i}")).fraction * 10.0) as usize] += 1);
        assert!(deciles.iter().all(|&n| (900..=1_100).contains(&n)), "uniform: {deciles:?}");
    }

    #[test]
    fn a_return_burst_waits_for_the_device_s_share_of_the_spread() {
        let t0 = Instant::now();
        let phase = Phase { fraction: 0.5, anchor: (t0, 0) };
        let g = Gate::new(300, None, Some(phase));
        assert!(!g.open_spread(t0), "with a window it is scheduled, not opened");
        assert_eq!(g.next(), Next::At(t0 + Duration::from_secs(15)), "half of min(W, 30 s)");
        let g0 = Gate::new(0, None, Some(phase));
        assert!(g0.open_spread(t0), "without a window, at once");
        let w10 = Gate::new(10, None, Some(phase));
        w10.open_spread(t0);
        assert_eq!(w10.next(), Next::At(t0 + Duration::from_secs(5)), "half of W when W is under 30 s");
    }

    #[test]
    fn a_shorter_window_shortens_a_sit_out_begun_under_a_longer_one() {
        let g = Gate::new(3_600, None, None);
        let t0 = Instant::now();
        assert!(g.open_now(t0, 1));
        g.failed(Transport::PubSub, [false, true], 0, t0);
        assert!(!g.may_send_at(Transport::PubSub, t0 + Duration::from_secs(60)));
        g.set_config_window(Some(30));
        g.open_now(t0 + Duration::from_secs(31), 1);
        assert!(g.may_send_at(Transport::PubSub, t0 + Duration::from_secs(31)), "30 s after the failure, under the new window");
    }

    #[test]
    fn offline_with_a_location_owed_the_window_task_sleeps() {
        // A 1 s window, one location owed, the network gone: once the burst falls due the task
        // must wait for the network's return, not wake again and again.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let hub = crate::hub::test_support::hub_with_window(Default::default(), 1);
        crate::hub::test_support::queue(&hub, 1, true, true);
        hub.gate.set_network(false);
        hub.wake_all();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let task = rt.spawn(crate::publisher::tasks::window(hub.clone(), shutdown));
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(2_500)).await });
        let offline = hub.gate.wakeups();
        assert!(offline <= 5, "{offline} wakeups in 2.5 s offline");
        assert_eq!(hub.gate.bursts(), 0);
        // The network's return opens the burst.
        assert!(hub.gate.set_network(true));
        hub.open_burst(crate::hub::Burst::Now);
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
        assert_eq!(hub.gate.bursts(), 1);
        task.abort();
    }

    const BOTH: [bool; 2] = [true, true];
    const NONE: [bool; 2] = [false, false];

    #[test]
    fn a_window_of_zero_sends_at_once_unless_the_network_is_gone() {
        let g = Gate::new(0, None, None);
        assert!(g.may_send(Transport::Mqtt) && g.may_send(Transport::PubSub));
        g.work_owed(Instant::now());
        assert_eq!(g.next(), Next::Idle, "nothing to schedule");
        g.set_network(false);
        assert!(!g.may_send(Transport::Mqtt) && !g.may_send(Transport::PubSub));
        assert!(g.set_network(true), "back: one burst");
        assert!(g.may_send(Transport::Mqtt));
    }

    #[test]
    fn work_waits_a_window_then_one_burst_takes_both_transports_until_drained() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        g.work_owed(t0);
        assert!(!g.may_send(Transport::Mqtt) && !g.may_send(Transport::PubSub));
        assert_eq!(g.next(), Next::At(t0 + Duration::from_secs(30)));
        g.work_owed(t0 + Duration::from_secs(5));
        assert_eq!(g.next(), Next::At(t0 + Duration::from_secs(30)), "later work rides the same burst");
        assert!(!g.tick(t0 + Duration::from_secs(29), BOTH, 10));
        assert!(g.tick(t0 + Duration::from_secs(30), BOTH, 10));
        assert!(g.may_send(Transport::Mqtt) && g.may_send(Transport::PubSub));
        assert!(!g.settled([true, false], 0, t0 + Duration::from_secs(31)), "MQTT still owes");
        assert!(g.settled(NONE, 0, t0 + Duration::from_secs(31)));
        assert!(!g.is_open() && !g.may_send(Transport::Mqtt));
        assert_eq!((g.next(), g.bursts()), (Next::Idle, 1));
    }

    #[test]
    fn a_burst_is_over_once_its_own_locations_are_delivered_whatever_arrived_since() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        assert!(g.open_now(t0, 40));
        assert_eq!(g.burst_target(), Some(40));
        assert!(!g.settled(BOTH, 39, t0), "locations up to 40 still owed");
        assert!(g.settled(BOTH, 40, t0), "up to 40 delivered: over, though 41.. are owed");
        assert_eq!(g.next(), Next::At(t0 + Duration::from_secs(30)), "they get the next burst");
        assert_eq!(g.burst_target(), None);
    }

    #[test]
    fn a_burst_bounds_what_the_transports_take_to_its_own_locations() {
        let (g, w0) = (Gate::new(30, None, None), Gate::new(0, None, None));
        assert_eq!((g.send_bound(), w0.send_bound()), (0, u64::MAX), "no burst open: nothing with a window");
        assert!(g.open_now(Instant::now(), 7) && w0.open_now(Instant::now(), 7));
        assert_eq!((g.send_bound(), w0.send_bound()), (7, u64::MAX), "window 0 sends whatever is there");
    }

    #[test]
    fn a_due_burst_with_nothing_owed_does_not_open() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        g.work_owed(t0);
        assert!(!g.tick(t0 + Duration::from_secs(30), NONE, 10));
        assert_eq!((g.next(), g.bursts()), (Next::Idle, 0));
    }

    #[test]
    fn a_failing_transport_sits_out_growing_spans_while_the_other_keeps_its_window() {
        let g = Gate::new(30, None, None);
        let mut now = Instant::now();
        let mut gaps = Vec::new();
        for _ in 0..8 {
            assert!(g.open_now(now, 10));
            assert!(g.may_send_at(Transport::PubSub, now));
            assert!(!g.failed(Transport::PubSub, BOTH, 0, now), "MQTT still sends in this burst");
            assert!(!g.may_send_at(Transport::PubSub, now) && g.may_send_at(Transport::Mqtt, now));
            assert!(g.settled([false, true], 0, now), "MQTT drained: closed");
            let Next::At(due) = g.next() else { panic!("no burst scheduled") };
            gaps.push(due.duration_since(now).as_secs());
            now = due;
            assert!(g.tick(now, BOTH, 10) || !g.is_open());
        }
        assert_eq!(gaps, [30, 30, 30, 60, 120, 240, 300, 300], "Pub/Sub's sit-out decides the next burst for what only it owes");
        g.delivered(Transport::PubSub);
        assert!(g.open_now(now, 10));
        assert!(g.settled(NONE, 0, now));
        g.work_owed(now);
        assert_eq!(g.next(), Next::At(now + Duration::from_secs(30)), "back to the window");
    }

    #[test]
    fn with_a_phase_a_failing_transport_tries_once_a_window_at_its_phase() {
        // A black-holed link: every attempt stalls for 10 s. The first three failures in a row
        // are retried at the next phase a window on, so the link's return is seen within W.
        let t0 = Instant::now();
        let phase = Phase { fraction: 0.25, anchor: (t0, 0) };
        let g = Gate::new(30, None, Some(phase));
        let mut attempts = Vec::new();
        let mut now = t0 + Duration::from_millis(7_500); // on the phase (0.25 of 30 s)
        for _ in 0..3 {
            assert!(g.open_now(now, 10));
            attempts.push(now.duration_since(t0).as_secs_f64());
            let failed = now + Duration::from_secs(10);
            g.failed(Transport::Mqtt, [true, false], 0, failed);
            let Next::At(due) = g.next() else { panic!("nothing scheduled") };
            now = due;
            assert!(!g.tick(now - Duration::from_millis(1), [true, false], 10));
        }
        assert_eq!(attempts, [7.5, 37.5, 67.5], "one attempt a window, at the phase");
    }

    #[test]
    fn a_burst_due_while_every_owing_transport_sits_out_waits_for_the_phase_after_the_sit_out() {
        // MQTT (phase 0.25 of 30 s) failed at 7.5 s and sits out until 22.5 s; a spread burst
        // falls due at 17.5 s, while it still sits out: the burst then waits for its phase
        // after the sit-out (37.5 s), not the sit-out's end, W/2 early and off the phase.
        let t0 = Instant::now();
        let g = Gate::new(30, None, Some(Phase { fraction: 0.25, anchor: (t0, 0) }));
        let failed = t0 + Duration::from_millis(7_500);
        assert!(g.open_now(failed, 1));
        g.failed(Transport::Mqtt, [true, false], 0, failed);
        assert!(!g.open_spread(t0 + Duration::from_secs(10)));
        let due = t0 + Duration::from_millis(17_500);
        assert_eq!(g.next(), Next::At(due));
        assert!(!g.tick(due, [true, false], 1), "still sitting out: no burst");
        assert_eq!(g.next(), Next::At(t0 + Duration::from_millis(37_500)), "at the phase");
    }

    #[test]
    fn a_roused_transport_stops_sitting_out_but_its_failures_still_count() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        for i in 0..5 {
            let now = t0 + Duration::from_secs(i);
            assert!(g.open_now(now, 10));
            g.failed(Transport::PubSub, BOTH, 0, now);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert!(g.open_now(t1, 10) && !g.may_send_at(Transport::PubSub, t1), "five failures: it sits out 120 s");
        g.rouse(Transport::PubSub);
        assert!(g.may_send_at(Transport::PubSub, t1), "roused (MQTT's link came back): it joins this burst");
        g.failed(Transport::PubSub, [false, true], 0, t1);
        assert!(!g.may_send_at(Transport::PubSub, t1 + Duration::from_secs(239)), "a sixth failure sits out 240 s, as it would have");
        let t2 = t1 + Duration::from_secs(240);
        assert!(g.open_now(t2, 10) && g.may_send_at(Transport::PubSub, t2));
    }

    #[test]
    fn mqtt_keeps_its_window_while_pubsub_sits_out() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        assert!(g.open_now(t0, 10));
        g.failed(Transport::PubSub, BOTH, 0, t0);
        assert!(g.settled([false, true], 0, t0));
        // New MQTT work: the next burst a window away, Pub/Sub not in it.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(g.next(), Next::At(t1));
        assert!(g.tick(t1, BOTH, 10));
        assert!(g.may_send_at(Transport::Mqtt, t1) && !g.may_send_at(Transport::PubSub, t1 - Duration::from_secs(1)));
        assert!(g.may_send_at(Transport::PubSub, t1), "its sit-out over, it joins the burst");
    }

    #[test]
    fn a_blocking_flush_keeps_its_burst_open_through_failures_until_it_gives_up() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        assert!(g.open_urgent(t0, t0 + Duration::from_secs(3_600), 10));
        assert!(!g.failed(Transport::PubSub, BOTH, 0, t0), "failures do not end a flush's burst");
        assert!(g.may_send(Transport::PubSub), "the transport retries at its own backoff");
        assert!(g.settled(NONE, 0, t0), "drained: closed");
        assert!(!g.may_send(Transport::PubSub), "and the urgency ends with it");
    }

    #[test]
    fn a_blocking_flush_s_burst_outlives_the_stall_rule_until_its_deadline() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(95);
        assert!(g.open_urgent(t0, deadline, 10));
        assert!(!g.failed(Transport::PubSub, BOTH, 0, t0));
        // No progress for 30 s: a plain burst would close; the flush's stays open and urgent.
        assert_eq!(g.next(), Next::At(deadline), "the window task waits for the flush's deadline");
        assert!(!g.tick(t0 + BURST_STALL, BOTH, 10));
        assert!(g.is_open() && g.may_send(Transport::PubSub), "still retrying at its own backoff");
        assert!(!g.tick(t0 + Duration::from_secs(60), BOTH, 10));
        assert!(g.may_send(Transport::Mqtt));
        // The deadline passes with nothing delivered: now the stall rule closes it.
        assert!(!g.tick(deadline, BOTH, 10));
        assert!(!g.is_open() && !g.may_send(Transport::PubSub));
    }

    #[test]
    fn a_stalled_burst_closes_and_the_network_switch_holds_everything() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        assert!(g.open_now(t0, 10));
        assert_eq!(g.next(), Next::At(t0 + BURST_STALL));
        assert!(!g.tick(t0 + BURST_STALL, BOTH, 10));
        assert!(!g.is_open());
        g.set_network(false);
        assert!(!g.open_now(t0 + BURST_STALL, 10), "no burst without a network");
        assert!(!g.may_send(Transport::PubSub));
    }

    #[test]
    fn the_config_window_wins_and_a_shorter_one_brings_the_burst_forward() {
        let g = Gate::new(30, Some(120), None);
        assert_eq!(g.window(), Duration::from_secs(120));
        let t0 = Instant::now();
        g.work_owed(t0);
        g.set_config_window(Some(10));
        let Next::At(due) = g.next() else { panic!() };
        assert!(due <= Instant::now() + Duration::from_secs(10));
        g.set_config_window(None);
        assert_eq!(g.window(), Duration::from_secs(30));
        g.set_config_window(Some(0));
        assert!(!g.windowed() && g.may_send(Transport::Mqtt));
    }

    #[test]
    fn a_look_taken_for_a_narrower_burst_never_closes_one_a_flush_widened() {
        let g = Gate::new(30, None, None);
        let t0 = Instant::now();
        assert!(g.open_now(t0, 5));
        // A flush widens the open burst to the locations up to 10 ...
        assert!(g.open_urgent(t0, t0 + Duration::from_secs(20), 10));
        // ... while an acknowledgement that saw everything up to 5 delivered reports late.
        assert!(!g.settled(BOTH, 5, t0), "locations 6–10 are still owed: the burst stays open");
        assert!(g.may_send(Transport::Mqtt) && g.may_send(Transport::PubSub));
        assert!(g.settled(NONE, 10, t0));
    }
}
