"""The fleet rollup over a real demo run: 200 devices at a 25 % rollout through the real SDK, with
Pub/Sub failing for the first seconds (breakers open, locations fall back to MQTT). The reports
the demo's independent subscribers received are rolled up on chDB (tools/rollup), and every
figure must equal what the devices' own `metrics()` say (`dualpub demo --metrics-out`), and the
merged-histogram percentiles must match the percentiles of the raw per-location latencies within
one bucket width (docs/CONTRACT.md#latency-buckets). Every report must pass its JSON Schema.

Run by ./scripts/test with DUALPUB_BIN pointing at the built `dualpub` CLI.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DUALPUB_BIN", str(ROOT / "target" / "debug" / "dualpub"))
sys.path.insert(0, str(ROOT / "tools" / "rollup"))
import rollup  # noqa: E402

BUCKET_GROWTH = 1.25  # b(i) = 0.5 ms × 1.25^i: one bucket is at most 25 % wide


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("rollup-demo")
    reports, metrics = d / "reports.jsonl", d / "metrics.jsonl"
    cmd = [BIN, "demo", "--devices", "200", "--locations-per-device", "10", "--rollout", "25",
           "--pubsub-outage-ms", "3000", "--reports-out", str(reports), "--metrics-out", str(metrics), "--json",
           # Real time: with an upload window a 3 s outage sees no attempt fail (CONTRACT.md, Upload windows).
           "--window-secs", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"dualpub demo failed ({done.returncode}):\n{done.stderr[-4000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    devices = [json.loads(line) for line in metrics.read_text().splitlines()]
    envelopes = [json.loads(line) for line in reports.read_text().splitlines()]
    return summary, devices, envelopes, reports


def raw_quantile(samples: list[float], q: float) -> float:
    """The q quantile of raw values by the histograms' rank rule: the ceil(q × n)-th smallest."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_every_device_reported_and_every_report_passes_its_schema(run):
    summary, devices, envelopes, _ = run
    assert summary["lost"] == 0 and summary["reports"]["devices_with_last"] == 200, summary
    schema = json.loads((ROOT / "schemas" / "migration-report.schema.json").read_text())
    validator = Draft202012Validator(schema)
    for i, e in enumerate(envelopes):
        errors = [err.message for err in validator.iter_errors(e["report"])]
        assert errors == [], f"report {i}: {errors}"
        assert len(json.dumps(e["report"], separators=(",", ":")).encode()) <= 4096
    reporting = {e["report"]["deviceId"] for e in envelopes}
    assert reporting == {d["deviceId"] for d in devices}
    triggers = {e["report"]["trigger"] for e in envelopes}
    # A breaker report needs 300 s since the last report, so only devices whose breaker opened
    # before their first acknowledgement send one here (tests/migration_reports.rs checks it).
    assert {"interval", "shutdown"} <= triggers <= {"interval", "shutdown", "breaker"}, triggers
    on_pubsub = {e["report"]["deviceId"] for e in envelopes if e["transport"] == "pubsub"}
    assert on_pubsub == set(summary["pubsub_devices"]), "reports on Pub/Sub come from the Pub/Sub cohort only"


def test_the_rollup_equals_the_devices_own_metrics(run):
    summary, devices, _, reports = run
    [total] = rollup.rollup_rows(reports, by="total")
    expect = {
        "devices": len(devices),
        "accepted": sum(d["accepted"] for d in devices),
        "delivered_mqtt": sum(d["mqtt"]["acked"] for d in devices),
        "delivered_pubsub": sum(d["pubsub"]["acked"] for d in devices),
        "failed_mqtt": sum(d["mqtt"]["failed"] for d in devices),
        "failed_pubsub": sum(d["pubsub"]["failed"] for d in devices),
        "retries_mqtt": sum(d["mqtt"]["retries"] for d in devices),
        "retries_pubsub": sum(d["pubsub"]["retries"] for d in devices),
        "fallbacks": sum(d["fallbacks"] for d in devices),
    }
    got = {k: total[k] for k in expect}
    assert got == expect
    # The outage really happened: Pub/Sub failed and retried, and its breakers opened.
    assert expect["failed_pubsub"] > 0 and expect["retries_pubsub"] > 0, expect
    assert summary["circuit_openings"] > 0
    assert total["accepted"] == 2000 and total["delivered_mqtt"] == 2000
    assert total["delivered_pubsub"] == len(summary["pubsub_devices"]) * 10


@pytest.mark.parametrize("transport", ["mqtt", "pubsub"])
def test_merged_percentiles_match_the_raw_latencies_within_one_bucket(run, transport):
    _, devices, _, reports = run
    [total] = rollup.rollup_rows(reports, by="total")
    raw = [ms for d in devices for ms in d["latencyMs"][transport]]
    assert len(raw) == total[f"delivered_{transport}"], "one latency per acknowledgement"
    for q in (50, 99):
        merged = total[f"p{q}_{transport}_ms"]
        truth = raw_quantile(raw, q / 100)
        # The merged value is the upper bound of the bucket holding the true percentile.
        assert truth <= merged <= truth * BUCKET_GROWTH + 1e-9, f"p{q} {transport}: merged {merged} ms, raw {truth} ms"


def test_the_demo_prints_the_rollup_table(run, tmp_path):
    _, _, _, reports = run
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "rollup" / "rollup.py"), str(reports), "--by", "total"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "delivered" in out.stdout.lower() and "2000" in out.stdout.replace(",", ""), out.stdout
