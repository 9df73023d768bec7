//! The verifier's findings as a table for people and as one JSON object for tools.

use super::engine::{Cause, Findings, Pipeline, PipelineStep};
use std::fmt::Write;

/// One JSON object (docs/VERIFY.md lists its fields).
pub fn json(f: &Findings) -> String {
    serde_json::to_string(f).unwrap_or_default()
}

fn ms(v: Option<i64>) -> String {
    v.map_or("-".into(), |v| if v.abs() < 10_000 { format!("{v} ms") } else { format!("{:.1} s", v as f64 / 1000.0) })
}

/// An app-provided id as the terminal may show it: control and bidi characters replaced.
fn shown(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c) { '\u{fffd}' } else { c })
        .collect()
}

fn percent(x: f64) -> String {
    format!("{:.4} %", x * 100.0)
}

/// The findings as text: the verdict per rollout step first, then the pipelines, the causes,
/// the worst devices and the first missing locations.
pub fn table(f: &Findings) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "dualpub verify: {}", f.verdict.to_uppercase());
    let _ = writeln!(
        o,
        "  {:>5}  {:>7}  {:>9}  {:>22}  {:>22}  {:>9}  {:>9}  {:>13}  {:>11}  verdict",
        "cfg", "devices", "locations", "mqtt recv/expected", "pubsub recv/expected", "fallbacks", "discrep.", "rate (95% ub)", "min traffic"
    );
    for s in &f.steps {
        let recv = |p: &PipelineStep| format!("{}/{}", p.received, p.expected);
        let _ = writeln!(
            o,
            "  {:>5}  {:>7}  {:>9}  {:>22}  {:>22}  {:>9}  {:>9}  {:>13}  {:>11}  {}",
            s.cfg,
            s.devices,
            s.locations,
            recv(&s.mqtt),
            recv(&s.pubsub),
            s.mqtt.fallbacks,
            s.discrepancies,
            percent(s.rate_bound),
            s.min_trials,
            s.verdict
        );
    }
    for (p, t) in [(Pipeline::Mqtt, &f.mqtt), (Pipeline::Pubsub, &f.pubsub)] {
        let _ = writeln!(
            o,
            "  {:<7} {} messages, {} distinct, {} duplicates, {} malformed; delay p50 {} p95 {} p99 {}; own gaps {}{}",
            p.as_str(),
            t.messages,
            t.distinct,
            t.duplicates,
            t.malformed,
            ms(t.delay_ms.p50),
            ms(t.delay_ms.p95),
            ms(t.delay_ms.p99),
            t.own_gaps.len(),
            if t.settled_copies > 0 {
                format!("; {} copies after settling (docs/VERIFY.md#memory-settling-past-the-watermark)", t.settled_copies)
            } else {
                String::new()
            }
        );
    }
    let mut causes = [0u64; 5];
    for s in &f.steps {
        for (i, c) in Cause::ALL.iter().enumerate() {
            causes[i] += s.causes.get(c).copied().unwrap_or(0);
        }
    }
    let _ = writeln!(
        o,
        "  missing by cause: acked but not received {}, still queued {}, dropped on device {}, verifier gap {}, unexplained {}",
        causes[0], causes[1], causes[2], causes[3], causes[4]
    );
    if !f.worst_devices.is_empty() {
        let worst: Vec<String> = f.worst_devices.iter().take(5).map(|(d, n)| format!("{} ({n})", shown(d))).collect();
        let _ = writeln!(o, "  most missing: {}", worst.join(", "));
    }
    for m in f.missing.iter().take(10) {
        let at = m.pipeline.map_or("both (seq never seen)", |p| p.as_str());
        let _ = writeln!(o, "  missing on {at}: {} seq {} {} ({:?})", shown(&m.device_id), m.seq, shown(&m.event_id), m.cause);
    }
    if f.missing.len() > 10 {
        let _ = writeln!(o, "  … and {} more (--json lists them all)", f.missing.len() - 10);
    }
    for m in f.mismatched.iter().take(10) {
        let copies: Vec<String> = m.copies.iter().map(|c| format!("{} on {} ×{}", c.digest, c.pipeline.as_str(), c.copies)).collect();
        let fields = match &m.fields {
            None => "fields not known (the copies could not be read again)".to_string(),
            Some(f) if f.is_empty() => "no field (only the bytes around the values)".to_string(),
            Some(f) => f.join(", "),
        };
        let _ = writeln!(o, "  bytes differ: {} seq {} {}: {fields}; {}", shown(&m.device_id), m.seq, shown(&m.event_id), copies.join(", "));
    }
    let mismatches: u64 = f.steps.iter().map(|s| s.mismatches).sum();
    if mismatches > 10 {
        let _ = writeln!(o, "  … and {} more locations whose copies differ (--json lists up to 1,000)", mismatches - 10);
    }
    if f.unbounded_count > 0 {
        let examples: Vec<String> = f
            .unbounded
            .iter()
            .take(5)
            .map(|u| format!("{} ({})", shown(&u.device_id), serde_json::to_string(&u.reason).unwrap_or_default().trim_matches('"')))
            .collect();
        let _ = writeln!(
            o,
            "  runs no report bounds (their last locations cannot be checked): {}: {}{}",
            f.unbounded_count,
            examples.join(", "),
            if f.unbounded_count > 5 { ", …" } else { "" }
        );
    }
    o
}
