//! Fault injection for publish requests: scripted statuses, a random failure rate, latency,
//! `Retry-After`, and accept-then-drop-connection (the messages are stored, the response is
//! cut, so the client retries and creates duplicates).

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;

/// What to do to publish requests; also the JSON body of `POST /emulator/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultPlan {
    /// Fail the next requests with these HTTP statuses, one each, then succeed.
    pub fail_next: Vec<u16>,
    /// Fail this fraction (0–1) of requests at random…
    pub fail_rate: f64,
    /// …with one of these statuses (default 503).
    pub fail_statuses: Vec<u16>,
    /// Delay every publish response by this long.
    pub latency_ms: u64,
    /// Store the next N publishes, then drop the connection instead of answering.
    pub drop_after_accept_next: u32,
    /// Send `Retry-After: N` with injected failures.
    pub retry_after_secs: Option<u64>,
    /// Refuse with 400 any message whose data (decoded) contains this text.
    pub reject_data_containing: Option<String>,
}

/// What the emulator does to one publish request.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer normally.
    Serve,
    /// Answer with this status instead of publishing.
    Fail(u16),
    /// Publish, then drop the connection.
    AcceptThenDrop,
}

#[derive(Debug, Default)]
struct Inner {
    plan: FaultPlan,
    fail_next: VecDeque<u16>,
}

/// The live fault settings of an emulator.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the plan.
    pub fn set(&self, plan: FaultPlan) {
        let mut i = self.lock();
        i.fail_next = plan.fail_next.iter().copied().collect();
        i.plan = plan;
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.set(FaultPlan::default());
    }

    /// Fails the next `n` publishes with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut i = self.lock();
        i.fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// The current plan (with what is left of `failNext`).
    pub fn plan(&self) -> FaultPlan {
        let i = self.lock();
        FaultPlan { fail_next: i.fail_next.iter().copied().collect(), ..i.plan.clone() }
    }

    /// Decides the fate of the next publish request.
    pub fn next_action(&self) -> (Action, u64, Option<u64>) {
        let mut i = self.lock();
        let latency = i.plan.latency_ms;
        let retry_after = i.plan.retry_after_secs;
        if let Some(s) = i.fail_next.pop_front() {
            return (Action::Fail(s), latency, retry_after);
        }
        if i.plan.drop_after_accept_next > 0 {
            i.plan.drop_after_accept_next -= 1;
            return (Action::AcceptThenDrop, latency, retry_after);
        }
        if i.plan.fail_rate > 0.0 && rand::rng().random::<f64>() < i.plan.fail_rate {
            let statuses = &i.plan.fail_statuses;
            let s = if statuses.is_empty() { 503 } else { statuses[rand::rng().random_range(0..statuses.len())] };
            return (Action::Fail(s), latency, retry_after);
        }
        (Action::Serve, latency, retry_after)
    }

    /// The poison text, if any.
    pub fn reject_data_containing(&self) -> Option<String> {
        self.lock().plan.reject_data_containing.clone()
    }
}
