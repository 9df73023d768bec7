//! The async twins of the waiting calls (`open`, `flushAsync`, `awaitDurableAsync`,
//! `refreshConfigAsync`, `shutdownAsync`), awaited on an app runtime of one thread as Kotlin's
//! main dispatcher or a Swift task would: they deliver like the blocking calls, a thousand
//! waiters hold no thread, and a cancelled wait leaves the flush it waited for intact. The
//! tests here count the process's threads, so they take turns.

mod common;

use common::*;
use dualpub::{DualPubError, DualPublisher, FetchResult};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ALONE: Mutex<()> = Mutex::new(());
const WAIT: Duration = Duration::from_secs(20);

/// Threads of this process (Linux), if it can tell.
fn threads() -> Option<usize> {
    footprint().map(|(threads, _, _)| threads)
}

/// Resident memory of this process, kB (Linux).
fn rss_kb() -> Option<u64> {
    footprint().map(|(_, _, resident)| resident / 1024)
}

/// The app's runtime: one thread, like a main dispatcher.
fn app() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

#[test]
fn async_twins_deliver_and_answer_like_the_blocking_calls() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let emu = emulator();
    let id = device("async-twins");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "async-twins"));
    let config = TestDevice::new(&id, &emu).rollout(100.0).config();
    app().block_on(async {
        let p = DualPublisher::open(config, None, None).await.expect("open");
        let ids: Vec<String> = (0..20).map(|n| p.send_location(location(n)).unwrap()).collect();
        assert!(p.await_durable_async(10_000).await.unwrap(), "durable");
        let report = p.flush_async(20_000).await.unwrap();
        assert!(report.completed, "{report:?}");
        assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT));
        assert_eq!(p.refresh_config_async().await.unwrap(), FetchResult::NotConfigured, "no remoteConfigUrl");
        p.clone().shutdown_async().await;
        assert!(matches!(p.flush_async(1_000).await, Err(DualPubError::Closed)));
        assert!(matches!(p.await_durable_async(1_000).await, Err(DualPubError::Closed)));
    });
    // A config the SDK refuses is refused by the async constructor too, typed.
    let bad = TestDevice::new(&device("async-bad"), &emu).with(|c| c.device_id = String::new()).config();
    assert!(matches!(app().block_on(DualPublisher::open(bad, None, None)), Err(DualPubError::InvalidId { .. } | DualPubError::InvalidConfig { .. })));
}

#[test]
fn a_thousand_waiters_hold_no_thread_and_cancelled_waits_leave_the_flush_intact() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let emu = emulator();
    let id = device("async-waiters");
    let sub = mqtt_subscriber(&id);
    let p = TestDevice::new(&id, &emu).start();
    p.set_network_available(false).unwrap();
    let ids: Vec<String> = (0..10).map(|n| p.send_location(location(n)).unwrap()).collect();
    let rt = app();
    // Warm up: the SDK runtime's workers exist before counting.
    rt.block_on(p.await_durable_async(10_000)).unwrap();
    let before = threads();
    // Waits cancelled a millisecond in: the flushes they started go on, the waits end.
    let cancel = |n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                assert!(tokio::time::timeout(Duration::from_millis(1), p.flush_async(60_000)).await.is_err(), "nothing can leave offline");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        })
    };
    cancel(2_000);
    let rss_before = rss_kb();
    cancel(10_000);
    let rss_after = rss_kb();
    eprintln!("10,000 cancelled waits: RSS {rss_before:?} -> {rss_after:?} kB");
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        assert!(b <= a + 1024, "10,000 cancelled waits grew RSS from {a} to {b} kB");
    }
    // A thousand at once, all waiting on one flush each, on one app thread.
    let waiters = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..1_000 {
            let p = p.clone();
            set.spawn(async move { p.flush_async(60_000).await });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let (Some(b), Some(now)) = (before, threads()) {
            assert!(now <= b + 2, "1,000 waiters added {} threads", now - b);
        }
        let started = Instant::now();
        p.set_network_available(true).unwrap();
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            assert!(r.unwrap().unwrap().completed);
            done += 1;
        }
        (done, started.elapsed())
    });
    assert_eq!(waiters.0, 1_000);
    assert!(wait_for_all(&sub.collected, &ids, WAIT), "every location delivered once the network returned");
    p.shutdown();
}

#[test]
fn streams_replay_the_current_value_then_follow_changes_and_end_when_cancelled_or_closed() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let emu = emulator();
    let id = device("async-streams");
    let p = TestDevice::new(&id, &emu).rollout(0.0).start();
    app().block_on(async {
        // The decision: the one in force first, then a change within 100 ms of the apply.
        let decisions = p.decisions().unwrap();
        let first = decisions.next().await.unwrap();
        assert!(first.mqtt_enabled && !first.pubsub_enabled, "{first:?}");
        let waiting = tokio::spawn({
            let decisions = decisions.clone();
            async move { (decisions.next().await, Instant::now()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let applied = Instant::now();
        p.apply_config(rollout_config(2, 100.0)).unwrap();
        let (changed, at) = waiting.await.unwrap();
        assert!(changed.unwrap().pubsub_enabled);
        assert!(at.duration_since(applied) < Duration::from_millis(100), "seen {:?} after the apply", at.duration_since(applied));
        // Cancelled: a pending next() ends at once, and so does every later one.
        let pending = tokio::spawn({
            let decisions = decisions.clone();
            async move { decisions.next().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        decisions.cancel();
        assert_eq!(tokio::time::timeout(Duration::from_millis(100), pending).await.unwrap().unwrap(), None);
        assert_eq!(decisions.next().await, None);

        // The delivery state: pending while offline, 0 on both once flushed.
        p.set_network_available(false).unwrap();
        let states = p.delivery_states().unwrap();
        let ids: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
        let mut s = states.next().await.unwrap();
        while s.pending_mqtt < 5 {
            s = states.next().await.unwrap();
        }
        assert!(!s.network_available && s.collection_enabled && s.pending_pubsub == 5, "{s:?}");
        p.set_network_available(true).unwrap();
        assert!(p.flush_async(20_000).await.unwrap().completed, "{ids:?}");
        while s.pending_mqtt + s.pending_pubsub > 0 {
            s = tokio::time::timeout(WAIT, states.next()).await.expect("a state with nothing pending").unwrap();
        }
        assert!(s.last_ack_mqtt_ms.is_some() && s.last_ack_pubsub_ms.is_some(), "{s:?}");

        // Debug events while debug mode is on.
        let events = p.debug_events().unwrap();
        p.set_debug_mode(true).unwrap();
        p.send_location(location(9)).unwrap();
        let mut e = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap();
        while e.kind != "accepted" {
            e = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap();
        }

        // Closed: every stream ends.
        p.clone().shutdown_async().await;
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), states.next()).await.unwrap(), None);
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), events.next()).await.unwrap(), None);
    });
}

fn rollout_config(version: u64, percentage: f64) -> dualpub::MigrationConfig {
    dualpub::MigrationConfig { version, pubsub_enabled: true, pubsub_percentage: percentage, ..dualpub::MigrationConfig::default() }
}

#[test]
fn a_background_drain_is_bounded_returns_at_once_offline_and_reports_what_left() {
    let _alone = ALONE.lock().unwrap_or_else(|p| p.into_inner());
    let emu = emulator();
    let id = device("async-drain");
    let (mqtt, pubsub) = (mqtt_subscriber(&id), pubsub_subscriber(&emu, "async-drain"));
    let p = TestDevice::new(&id, &emu).rollout(100.0).start();
    p.set_network_available(false).unwrap();
    let ids: Vec<String> = (0..5).map(|n| p.send_location(location(n)).unwrap()).collect();
    app().block_on(async {
        let offline = p.drain_async(30_000).await.unwrap();
        assert!(!offline.completed && !offline.network_available && offline.elapsed_ms < 2_000, "{offline:?}");
        assert_eq!((offline.pending_mqtt, offline.pending_pubsub), (5, 5));
        p.set_network_available(true).unwrap();
        let online = p.drain_async(20_000).await.unwrap();
        assert!(online.completed && online.network_available, "{online:?}");
        assert!(online.delivered_mqtt >= 5 && online.delivered_pubsub >= 5, "{online:?}");
        assert_eq!((online.pending_mqtt, online.pending_pubsub), (0, 0));
    });
    assert!(wait_for_all(&mqtt.collected, &ids, WAIT) && wait_for_all(&pubsub.collected, &ids, WAIT));
}
