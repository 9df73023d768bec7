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
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// Resident memory of this process, kB (Linux).
fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
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
