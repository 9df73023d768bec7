"""The migration watched per minute (docs/VERIFY.md, "Watching the migration"): the ClickHouse
views and reconciliation of tools/rollup/sql/sli_schema.sql and sli.sql, run on chDB by
tools/rollup/sli.py, against the CLI's `sli[]` (tools/cli/src/verify/sli.rs), and the OpenMetrics
the exporter serves.

- A real demo run (half the fleet on Pub/Sub only) with a 3 s Pub/Sub outage, in real time so
  that the breaker opens and locations fall back to MQTT: per minute, pipeline, cfg and route,
  the SQL's completeness (owed, received, unseen, verifier_gap), copies and freshness p50/p99
  equal the CLI's, field for field; then the same run with the last locations of a device gone
  everywhere and one MQTT copy lost in a subscriber gap (so unseen and verifier_gap are not all
  zero).
- The exporter's text parses with prometheus_client's OpenMetrics parser and its Prometheus text
  parser, its counters add up the per-minute rows, and over HTTP it answers each format by the
  Accept header.

Run by ./scripts/test with DUALPUB_BIN pointing at the built `dualpub` CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DUALPUB_BIN", str(ROOT / "target" / "debug" / "dualpub"))
SLI_PY = ROOT / "tools" / "rollup" / "sli.py"
FIELDS = {"minute_ms": "minuteMs", "pipeline": "pipeline", "cfg": "cfg", "route": "route", "owed": "owed",
          "received": "received", "unseen": "unseen", "verifier_gap": "verifierGap", "distinct": "distinct",
          "copies": "copies", "freshness_p50_ms": "freshnessP50Ms", "freshness_p99_ms": "freshnessP99Ms"}


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    d = tmp_path_factory.mktemp("sli-demo")
    capture, reports = d / "capture.jsonl", d / "reports.jsonl"
    cmd = [BIN, "demo", "--devices", "40", "--locations-per-device", "15", "--rollout", "50", "--no-mqtt", "--pubsub-outage-ms", "3000",
           "--round-interval-ms", "400", "--window-secs", "0", "--verify", "--json",
           "--capture", str(capture), "--reports-out", str(reports)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"dualpub demo failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return capture, reports


def by_cli(capture: Path, reports: Path) -> list[dict]:
    done = subprocess.run([BIN, "verify", "--capture", str(capture), "--reports", str(reports), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 3, 4), done.stderr
    return json.loads(done.stdout)["sli"]


def sli(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SLI_PY), *args], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def by_sql(capture: Path, reports: Path) -> list[dict]:
    rows = json.loads(sli("minutes", "--capture", str(capture), "--reports", str(reports), "--json"))
    return [{FIELDS[k]: v for k, v in r.items()} for r in rows]


def test_per_minute_completeness_and_freshness_equal_the_verifiers(outage):
    capture, reports = outage
    cli, sql = by_cli(capture, reports), by_sql(capture, reports)
    assert sql == cli
    assert len(cli) >= 3 and sum(r["owed"] for r in cli) > 0
    fallbacks = [r for r in cli if r["pipeline"] == "mqtt" and r["route"] == "pubsub"]
    assert fallbacks and sum(r["distinct"] for r in fallbacks) > 0, "the outage made fallback copies"
    assert all(r["freshnessP50Ms"] is not None for r in cli if r["copies"])


def test_unseen_and_verifier_gaps_are_counted_alike(outage, tmp_path):
    """The last 4 locations of a route-pubsub device gone everywhere (unseen, owed to Pub/Sub),
    and one MQTT copy of a route-mqtt device lost inside a subscriber gap (the verifier's gap)."""
    capture, reports = outage
    lines = [json.loads(line) for line in capture.read_text().splitlines()]
    located = [(line, json.loads(line["payload"])) for line in lines if "payload" in line]
    cohort = sorted({p["deviceId"] for _, p in located if p["route"] == "pubsub"})
    outside = sorted({p["deviceId"] for _, p in located if p["route"] == "mqtt"})
    last = max(p["seq"] for _, p in located if p["deviceId"] == cohort[0])
    victim = next(line for line, p in located if p["deviceId"] == outside[0] and p["seq"] == 8 and line["pipeline"] == "mqtt")
    at = victim["receivedAtMs"]
    kept = [line for line in lines if line is not victim and not (
        "payload" in line and json.loads(line["payload"])["deviceId"] == cohort[0] and json.loads(line["payload"])["seq"] > last - 4)]
    kept.append({"pipeline": "mqtt", "gap": {"fromMs": at - 100, "toMs": at + 100}})
    edited = tmp_path / "capture.jsonl"
    edited.write_text("".join(json.dumps(line) + "\n" for line in kept))
    cli, sql = by_cli(edited, reports), by_sql(edited, reports)
    assert sql == cli
    # 4 owed to Pub/Sub, and the route-mqtt location, which no pipeline has now either
    assert sum(r["unseen"] for r in cli) == 5
    assert sum(r["verifierGap"] for r in cli if r["pipeline"] == "mqtt") == 1


def test_the_exporter_text_parses_and_adds_up_the_minutes(outage):
    capture, reports = outage
    rows = by_sql(capture, reports)
    now = max(r["minuteMs"] for r in rows) + 3_600_000
    common = ["--capture", str(capture), "--reports", str(reports), "--now-ms", str(now), "--settle-secs", "300"]
    families = {f.name: f for f in openmetrics_families(sli("metrics", *common))}
    owed = {(s.labels["pipeline"], s.labels["cfg"], s.labels["route"]): s.value for s in families["dualpub_sli_owed"].samples}
    assert families["dualpub_sli_owed"].type == "counter"
    for (pipeline, cfg, route), value in owed.items():
        assert value == sum(r["owed"] for r in rows if (r["pipeline"], str(r["cfg"]), r["route"]) == (pipeline, cfg, route))
    assert sum(owed.values()) == sum(r["owed"] for r in rows)
    assert families["dualpub_sli_freshness_p99_seconds"].samples
    text = {f.name: f for f in text_families(sli("metrics", "--text-format", *common))}
    assert text["dualpub_sli_received"].type == "counter"
    assert sum(s.value for s in text["dualpub_sli_received"].samples) == sum(r["received"] for r in rows)


def test_the_exporter_serves_each_format_by_its_accept_header(outage):
    capture, reports = outage
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(SLI_PY), "serve", "--capture", str(capture), "--reports", str(reports),
                               "--port", str(port), "--settle-secs", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in server.stderr.readline()
        deadline = time.monotonic() + 60
        while True:
            try:
                om = urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}), timeout=60)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        body = om.read().decode()
        assert body.endswith("# EOF\n") and [f for f in openmetrics_families(body) if f.name == "dualpub_sli_copies"]
        plain = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60)
        assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert [f for f in text_families(plain.read().decode()) if f.name == "dualpub_sli_copies"]
    finally:
        server.terminate()
        server.wait(timeout=10)
