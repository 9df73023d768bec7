//! `dualpub verify --mqtt-url … --pubsub-endpoint …`: read both pipelines live for a window, as
//! independent subscribers (an MQTT persistent session on `device/telemetry/+`, a Pub/Sub pull
//! subscription), with the migration reports on their topics, then verify what arrived.

use super::engine::{Findings, Pipeline, Thresholds, Verifier};
use dualpub_testbed::subscribers::{self, Received};
use std::time::{Duration, Instant};

/// Where to read the pipelines from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `mqtt://host:port`.
    pub mqtt_url: String,
    /// The MQTT client id of the persistent session (the broker queues for it between runs).
    pub session: String,
    /// The Pub/Sub REST endpoint.
    pub pubsub_endpoint: String,
    /// The project.
    pub project: String,
    /// The locations topic (the pull subscription is created on it if missing).
    pub topic: String,
    /// The pull subscription's name (its reports subscription is `<name>-reports`).
    pub subscription: String,
    /// How long to read.
    pub window: Duration,
}

/// Subscribes, reads for the window (a progress line on stderr) feeding `v` as messages arrive
/// (so its grace bounds memory), and verifies what arrived. Locations whose copies are still on
/// their way when the window ends count as missing: leave the traffic a margin inside the window.
pub fn read(s: &Sources, v: Verifier) -> Result<Findings, String> {
    let (host, port) = dualpub_testbed::url_host_port(&s.mqtt_url, 1883).map_err(|e| format!("--mqtt-url: {e}"))?;
    let filter = dualpub::wire::DEFAULT_TOPIC_TEMPLATE.replace("{deviceId}", "+");
    let mqtt = subscribers::mqtt_with_session(&host, port, &filter, Some(&s.session)).map_err(|e| format!("MQTT subscription: {e}"))?;
    let pubsub = subscribers::pubsub(&s.pubsub_endpoint, &s.project, &s.topic, &s.subscription).map_err(|e| format!("Pub/Sub subscription: {e}"))?;
    let reports = dualpub_testbed::report_subscribers::ReportSubscribers::start(
        &host,
        port,
        &s.pubsub_endpoint,
        &s.project,
        dualpub::config::DEFAULT_REPORTS_TOPIC,
        &format!("{}-reports", s.subscription),
    )?;
    let start = Instant::now();
    let from_ms = subscribers::now_ms();
    let mut spool = Spool::new()?;
    let mut v = v.with_window(from_ms, from_ms.saturating_add(i64::try_from(s.window.as_millis()).unwrap_or(i64::MAX))).with_source(spool.source()?);
    let mut gaps_fed = 0;
    let mut read = [0usize; 2];
    // A message is stamped before it is stored: one taken now arrived at most this long ago.
    const STAMP_TO_STORE_MS: i64 = 1_000;
    loop {
        let now = subscribers::now_ms();
        // Messages taken first, then the gaps: a gap is recorded before the messages after it
        // arrive, so every gap a message taken here follows is fed before it (the verifier needs
        // gaps before the arrivals after them).
        let taken = [mqtt.collected.take(), pubsub.collected.take()];
        let gaps = mqtt.collected.gaps();
        // The last gap may still be open (its end is now): feed only closed ones, except at the end.
        let closed = gaps.len().saturating_sub(usize::from(mqtt.collected.gap_open()));
        for &(from, to) in &gaps[gaps_fed.min(closed)..closed] {
            v.own_gap(Pipeline::Mqtt, from, to);
        }
        gaps_fed = gaps_fed.max(closed);
        for (i, (pipeline, taken)) in [Pipeline::Mqtt, Pipeline::Pubsub].into_iter().zip(taken).enumerate() {
            let origins = taken.iter().map(|r| spool.write(&r.payload)).collect::<Result<Vec<u64>, String>>()?;
            spool.flush()?;
            for (r, origin) in taken.iter().zip(origins) {
                v.arrival_from(pipeline, r.received_at_ms, &r.payload, origin);
                read[i] += 1;
            }
            v.advance(pipeline, now - STAMP_TO_STORE_MS);
        }
        if start.elapsed() >= s.window {
            break;
        }
        eprint!("\r  reading: mqtt {:>8}  pubsub {:>8}  held {:>8}  {:>4} s left", read[0], read[1], v.held(), (s.window - start.elapsed()).as_secs());
        std::thread::sleep(Duration::from_millis(250).min(s.window.saturating_sub(start.elapsed())));
    }
    eprintln!();
    for &(from, to) in mqtt.collected.gaps().get(gaps_fed..).unwrap_or_default() {
        v.own_gap(Pipeline::Mqtt, from, to);
    }
    for (_, r) in reports.received() {
        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&r.payload) {
            v.report(&doc);
        }
    }
    Ok(v.finish())
}

/// What a live run read, written to a temporary file as it arrives (each message as its length
/// and its bytes), so that the copies of a location whose bytes differ can be read again to name
/// the fields that differ. Disk, not memory: about the size of the messages read.
struct Spool {
    file: std::io::BufWriter<std::fs::File>,
    path: tempfile::TempPath,
    offset: u64,
}

impl Spool {
    fn new() -> Result<Spool, String> {
        let (file, path) = tempfile::NamedTempFile::new().map_err(|e| format!("a temporary file for what is read: {e}"))?.into_parts();
        Ok(Spool { file: std::io::BufWriter::new(file), path, offset: 0 })
    }

    /// Writes one message; its offset.
    fn write(&mut self, bytes: &[u8]) -> Result<u64, String> {
        use std::io::Write;
        let at = self.offset;
        let len = u32::try_from(bytes.len()).map_err(|_| "a message over 4 GiB".to_string())?;
        self.file.write_all(&len.to_le_bytes()).and_then(|()| self.file.write_all(bytes)).map_err(|e| format!("the temporary file: {e}"))?;
        self.offset += 4 + u64::from(len);
        Ok(at)
    }

    /// Makes what was written readable (the verifier may read a message back as it settles).
    fn flush(&mut self) -> Result<(), String> {
        use std::io::Write;
        self.file.flush().map_err(|e| format!("the temporary file: {e}"))
    }

    /// Reads a message back by its offset, once flushed.
    fn source(&self) -> Result<super::engine::Source, String> {
        let path = self.path.to_path_buf();
        Ok(Box::new(move |offset| {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(&path).ok()?;
            f.seek(SeekFrom::Start(offset)).ok()?;
            let mut len = [0u8; 4];
            f.read_exact(&mut len).ok()?;
            let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
            f.read_exact(&mut bytes).ok()?;
            Some(bytes)
        }))
    }
}

/// Verifies what independent subscribers received in `window` (from, to) ms: each pipeline's
/// messages, the MQTT subscriber's own gaps (from, to) ms, and the reports (parsed). Used by
/// `demo --verify`.
pub fn verify_received(
    window: (i64, i64),
    mqtt: &[Received],
    pubsub: &[Received],
    mqtt_gaps: &[(i64, i64)],
    reports: &[serde_json::Value],
    t: Thresholds,
) -> Findings {
    let mut v = Verifier::new(t).with_window(window.0, window.1);
    for (from, to) in mqtt_gaps {
        v.own_gap(Pipeline::Mqtt, *from, *to);
    }
    for (pipeline, received) in [(Pipeline::Mqtt, mqtt), (Pipeline::Pubsub, pubsub)] {
        for r in received {
            v.arrival(pipeline, r.received_at_ms, &r.payload);
        }
    }
    for doc in reports {
        v.report(doc);
    }
    v.finish()
}
