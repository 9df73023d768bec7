"""`dualpub verify` as SQL (tools/rollup/sql/verify.sql, run by tools/rollup/verify.py on chDB)
against the CLI it reimplements (tools/cli/src/verify/engine.rs).

- A real demo run (60 devices, 25 % rollout, MQTT off, Pub/Sub failing for 2 s): the CLI and the
  SQL read the same capture and reports; every field of every step and the missing list must be
  equal; then the same with losses, copies and a changed payload injected into the capture.
- Synthetic captures, one per case the verifier tells apart (acknowledged but not received,
  still queued, dropped, unexplained, duplicates, fallback copies, routing errors, changed bytes,
  seq gaps, restarts, late copies, two rollout steps): CLI == SQL, and both == the numbers
  written here. Then all of them in one capture.
- A clean run passes with enough traffic and is insufficient without, in both.
- Where they differ: a bare report (not in an envelope) is unreadable to the CLI (a CLI bug,
  recorded as an expected failure).

Run by ./scripts/test with DUALPUB_BIN pointing at the built `dualpub` CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DUALPUB_BIN", str(ROOT / "target" / "debug" / "dualpub"))
sys.path.insert(0, str(ROOT / "tools" / "rollup"))
import verify  # noqa: E402  (tools/rollup/verify.py)

VERIFY_PY = ROOT / "tools" / "rollup" / "verify.py"


# --------------------------------------------------------------------------------------------
# Building captures and reports.
# --------------------------------------------------------------------------------------------


def event_id(n: int) -> str:
    """A UUIDv7-shaped eventId; a larger n sorts (is accepted) later."""
    return f"01936f1e-7c3a-7cc1-9f0a-{n:012x}"


def location(n: int, device: str, seq: int, route: str = "both", cfg: int = 1) -> str:
    return json.dumps({"eventId": event_id(n), "deviceId": device, "latitude": 52.5, "longitude": 13.4,
                       "timestamp": 1_000, "schemaVersion": 2, "seq": seq, "route": route, "cfg": cfg},
                      separators=(",", ":"))


def report(device: str, last_seq: int, depth=(0, 0), dropped: int = 0, dead_letters: int = 0,
           epoch: str = "e1", epoch_start_ms: int = 1, report_seq: int = 1) -> dict:
    """A complete migration report (the fields the rollup checks and those verify reads)."""
    counts = {"acked": 0, "failed": 0, "retries": 0, "breakerOpenings": 0}
    return {
        "report": 1, "reportSeq": report_seq, "epoch": epoch, "epochStartMs": epoch_start_ms,
        "cutAtMs": 10_000 + report_seq, "trigger": "interval", "intervalSecs": 900, "deviceId": device,
        "sdk": "0.1.0", "platform": "linux", "decision": {"cfg": 1, "route": "both"},
        "counters": {"accepted": last_seq, "lastSeq": last_seq, "mqtt": counts, "pubsub": counts,
                     "fallbacks": 0, "dropped": {"outbox_full": dropped} if dropped else {},
                     "deadLetters": dead_letters},
        "gauges": {"mqttDepth": depth[0], "pubsubDepth": depth[1], "mqttBreakerOpen": False,
                   "pubsubBreakerOpen": False},
        "latency": {"mqtt": [0] * 66, "pubsub": [0] * 66},
    }


class Case:
    """A capture and reports being built: `send` one location to the pipelines, `report` one
    report; `expect` the numbers of one step and the missing locations."""

    def __init__(self):
        self.lines: list[dict] = []
        self.reports: list[dict] = []
        self.steps: dict[int, dict] = {}
        self.missing: list[tuple] = []
        self.n = 0

    def send(self, device: str, seq: int, route: str = "both", cfg: int = 1, mqtt=(2_000,), pubsub=(3_000,),
             pubsub_payload: str | None = None) -> str:
        """A location received at each time in `mqtt` and in `pubsub` (empty: never)."""
        self.n += 1
        payload = location(self.n, device, seq, route, cfg)
        for at in mqtt:
            self.lines.append({"pipeline": "mqtt", "topic": f"device/telemetry/{device}", "receivedAtMs": at, "payload": payload})
        for at in pubsub:
            self.lines.append({"pipeline": "pubsub", "attributes": {}, "orderingKey": device, "receivedAtMs": at,
                               "payload": pubsub_payload or payload})
        return event_id(self.n)

    def report(self, *args, envelope: bool = True, **kwargs) -> None:
        r = report(*args, **kwargs)
        self.reports.append({"transport": "mqtt", "receivedAtMs": 20_000, "report": r} if envelope else r)

    def expect(self, cfg: int = 1, **fields) -> None:
        self.steps[cfg] = fields

    def write(self, d: Path) -> tuple[Path, Path]:
        capture, reports = d / "capture.jsonl", d / "reports.jsonl"
        capture.write_text("".join(json.dumps(line) + "\n" for line in self.lines))
        reports.write_text("".join(json.dumps(r) + "\n" for r in self.reports))
        return capture, reports


# --------------------------------------------------------------------------------------------
# Running both and comparing.
# --------------------------------------------------------------------------------------------


def cli(capture: Path, reports: Path) -> dict:
    done = subprocess.run([BIN, "verify", "--capture", str(capture), "--reports", str(reports), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (0, 3, 4), f"dualpub verify failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def missing_key(m: dict) -> tuple:
    return m["deviceId"], m["seq"], m["pipeline"] or "", m["eventId"]


def assert_same(by_cli: dict, by_sql: dict) -> None:
    """Every field the SQL covers is equal (the missing list compared in one order: the CLI
    lists devices by their first line in the capture, the SQL by deviceId)."""
    assert by_sql["steps"] == by_cli["steps"]
    assert sorted(by_sql["missing"], key=missing_key) == sorted(by_cli["missing"], key=missing_key)
    for field in ("duplicated", "late", "verdict", "thresholds"):
        assert by_sql[field] == by_cli[field], field


def both(case: Case, d: Path) -> dict:
    """Runs the CLI and the SQL on the case, asserts they agree, returns the SQL's findings."""
    capture, reports = case.write(d)
    by_sql = verify.verify_files(capture, reports)
    assert_same(cli(capture, reports), by_sql)
    return by_sql


def check_expected(case: Case, found: dict) -> None:
    """The numbers written in the case: per step, the fields given (`mqtt`/`pubsub` as dicts of
    the counts given), and the missing locations as (device, seq, pipeline, cause)."""
    steps = {s["cfg"]: s for s in found["steps"]}
    assert set(steps) == set(case.steps)
    for cfg, want in case.steps.items():
        for field, value in want.items():
            got = steps[cfg][field]
            if isinstance(value, dict) and field in ("mqtt", "pubsub"):
                got = {k: got[k] for k in value}
            assert got == value, f"cfg {cfg}: {field}"
    got_missing = sorted((m["deviceId"], m["seq"], m["pipeline"], m["cause"]) for m in found["missing"])
    assert got_missing == sorted(case.missing, key=lambda m: (m[0], m[1], m[2] or "")), "missing"


# --------------------------------------------------------------------------------------------
# The cases.
# --------------------------------------------------------------------------------------------


def acked_not_received(c: Case) -> None:
    """Seq 3 never reached Pub/Sub; the report says nothing is pending or dropped."""
    for seq in range(1, 11):
        c.send("acked", seq, pubsub=() if seq == 3 else (3_000,))
    c.report("acked", last_seq=10)
    c.missing += [("acked", 3, "pubsub", "acked_not_received")]
    c.expect(locations=10, devices=1, pubsub=dict(expected=10, received=9, missing=1),
             causes={"acked_not_received": 1}, discrepancies=1, trials=20, verdict="fail")


def still_queued(c: Case) -> None:
    """Seqs 8-10 missing on Pub/Sub, the report holds 2 for Pub/Sub (5 for MQTT): 9 and 10 are
    the newest two, 8 is not."""
    for seq in range(1, 11):
        c.send("queued", seq, pubsub=() if seq >= 8 else (3_000,))
    c.report("queued", last_seq=10, depth=(5, 2))
    c.missing += [("queued", 8, "pubsub", "acked_not_received"), ("queued", 9, "pubsub", "still_queued"),
                  ("queued", 10, "pubsub", "still_queued")]
    c.expect(pubsub=dict(missing=3), causes={"acked_not_received": 1, "still_queued": 2}, discrepancies=1)


def dropped(c: Case) -> None:
    """One drop and one dead letter: the two oldest missing (2 and 5 on Pub/Sub) take them, 7
    (on MQTT) is left acknowledged but not received."""
    for seq in range(1, 11):
        c.send("dropper", seq, mqtt=() if seq == 7 else (2_000,), pubsub=() if seq in (2, 5) else (3_000,))
    c.report("dropper", last_seq=10, dropped=1, dead_letters=1)
    c.missing += [("dropper", 2, "pubsub", "dropped_on_device"), ("dropper", 5, "pubsub", "dropped_on_device"),
                  ("dropper", 7, "mqtt", "acked_not_received")]
    c.expect(mqtt=dict(missing=1), pubsub=dict(missing=2), causes={"dropped_on_device": 2, "acked_not_received": 1})


def unexplained(c: Case) -> None:
    """No report at all; and a report that predates the location. The newest report is the one
    of the latest epoch (by epochStartMs), then the highest reportSeq: an older epoch's report
    9 and the new epoch's report 1 would both cover seq 8, its report 2 does not."""
    for seq in range(1, 6):
        c.send("silent", seq, pubsub=() if seq == 4 else (3_000,))
    for seq in range(1, 11):
        c.send("stale", seq, pubsub=() if seq == 8 else (3_000,))
    c.report("stale", last_seq=10, epoch="e-old", epoch_start_ms=100, report_seq=9)
    c.report("stale", last_seq=6, epoch="e-new", epoch_start_ms=200, report_seq=2)
    c.report("stale", last_seq=10, epoch="e-new", epoch_start_ms=200, report_seq=1)
    c.missing += [("silent", 4, "pubsub", "unexplained"), ("stale", 8, "pubsub", "unexplained")]
    c.expect(devices=2, locations=15, causes={"unexplained": 2}, discrepancies=2)


def duplicates(c: Case) -> None:
    """Every location twice on MQTT, seq 2 three times on Pub/Sub: listed, never an error."""
    ids = [c.send("dups", seq, mqtt=(2_000, 2_500), pubsub=(3_000, 3_100, 3_200) if seq == 2 else (3_000,))
           for seq in range(1, 6)]
    c.report("dups", last_seq=5)
    c.expect(mqtt=dict(expected=5, received=5, duplicates=5), pubsub=dict(duplicates=2), causes={},
             discrepancies=0, trials=10)
    c.duplicated = {"mqtt": ids, "pubsub": [ids[1]]}


def fallbacks(c: Case) -> None:
    """Route pubsub: 2 and 3 also reached MQTT (fallback copies); 5 reached only MQTT and is
    missing on Pub/Sub, still queued there (the report holds 1 for Pub/Sub)."""
    for seq in range(1, 5):
        c.send("fb", seq, route="pubsub", mqtt=(2_000,) if seq in (2, 3) else ())
    c.send("fb", 5, route="pubsub", pubsub=())
    c.report("fb", last_seq=5, depth=(0, 1))
    c.missing += [("fb", 5, "pubsub", "still_queued")]
    c.expect(mqtt=dict(expected=0, received=0, fallbacks=3), pubsub=dict(expected=5, received=4, missing=1),
             causes={"still_queued": 1}, discrepancies=0, trials=5)


def unexpected(c: Case) -> None:
    """Route mqtt on Pub/Sub (outside the cohort): seq 2 on both, seq 4 on Pub/Sub only (and so
    missing on MQTT, where the device still holds it)."""
    for seq in range(1, 4):
        c.send("outside", seq, route="mqtt", pubsub=(3_000,) if seq == 2 else ())
    c.send("outside", 4, route="mqtt", mqtt=())
    c.report("outside", last_seq=4, depth=(1, 0))
    c.missing += [("outside", 4, "mqtt", "still_queued")]
    c.expect(mqtt=dict(expected=4, received=3, missing=1), pubsub=dict(expected=0, unexpected=2),
             causes={"still_queued": 1}, discrepancies=2, trials=4)


def mismatch(c: Case) -> None:
    """Seq 2's Pub/Sub copy has other bytes than its MQTT copy (one space more)."""
    for seq in range(1, 4):
        changed = location(c.n + 1, "changed", seq) + " " if seq == 2 else None
        c.send("changed", seq, pubsub_payload=changed)
    c.report("changed", last_seq=3)
    c.expect(mismatches=1, discrepancies=1, causes={}, trials=6)


def seq_gaps(c: Case) -> None:
    """Seq 4 seen on neither pipeline: acknowledged (nothing pending) for one device, still
    queued for another (pending counts the larger of both depths: 2, so 3 > 4 - 2); the gap
    takes the cfg of the location above it (2), even if the one below is cfg 1."""
    for seq in (1, 2, 3, 5, 6):
        c.send("gappy", seq)
    c.report("gappy", last_seq=6)
    for seq, cfg in ((1, 1), (2, 1), (4, 2)):
        c.send("gappy-queued", seq, cfg=cfg)
    c.report("gappy-queued", last_seq=4, depth=(0, 2))
    c.missing += [("gappy", 4, None, "acked_not_received"), ("gappy-queued", 3, None, "still_queued")]
    c.expect(cfg=1, devices=2, locations=7, unseen=1, causes={"acked_not_received": 1}, discrepancies=1, trials=15)
    c.expect(cfg=2, devices=1, locations=1, unseen=1, causes={"still_queued": 1}, discrepancies=0, trials=3)


def restarts(c: Case) -> None:
    """A new data directory is a new run, not a gap: 7, 8, 10 (9 unseen; nothing below 7 is
    counted), then 1..5, then 2, 3 (a run after a restart counts from 1: 1 unseen). The report
    (lastSeq 3, one drop) does not cover 9; 1 takes the drop."""
    for seq in (7, 8, 10, 1, 2, 3, 4, 5, 2, 3):
        c.send("reinstalled", seq)
    c.report("reinstalled", last_seq=3, dropped=1)
    c.missing += [("reinstalled", 1, None, "dropped_on_device"), ("reinstalled", 9, None, "unexplained")]
    c.expect(locations=10, unseen=2, causes={"dropped_on_device": 1, "unexplained": 1}, discrepancies=1, trials=22)


def late(c: Case) -> None:
    """Seq 2 reached Pub/Sub 7 s after MQTT, seq 3 MQTT 6 s after Pub/Sub, seq 1 within 5 s."""
    a = c.send("slow", 1, mqtt=(2_000,), pubsub=(6_900,))
    b = c.send("slow", 2, mqtt=(2_000,), pubsub=(9_000,))
    d = c.send("slow", 3, mqtt=(9_000,), pubsub=(3_000,))
    assert a  # within the threshold: not listed
    c.report("slow", last_seq=3)
    c.expect(mqtt=dict(late=1), pubsub=dict(late=1), discrepancies=0, causes={})
    c.late = {"mqtt": [d], "pubsub": [b]}


def malformed(c: Case) -> None:
    """Messages that are not version 2 locations are left out; the rest is clean."""
    c.send("tidy", 1)
    c.lines.append({"pipeline": "mqtt", "receivedAtMs": 2_000, "payload": "not json"})
    c.lines.append({"pipeline": "pubsub", "receivedAtMs": 2_000, "payload": json.dumps(
        {"eventId": event_id(999), "deviceId": "tidy", "latitude": 1.0, "longitude": 1.0, "timestamp": 1, "schemaVersion": 1})})
    c.lines.append({"pipeline": "mqtt", "gap": {"fromMs": 1, "toMs": 2}})
    c.report("tidy", last_seq=1)
    c.expect(locations=1, devices=1, causes={}, discrepancies=0, trials=2)


CASES = [acked_not_received, still_queued, dropped, unexplained, duplicates, fallbacks, unexpected, mismatch,
         seq_gaps, restarts, late, malformed]


@pytest.mark.parametrize("build", CASES, ids=[f.__name__ for f in CASES])
def test_each_case_the_cli_and_the_sql_agree_on_the_numbers_written_here(build, tmp_path):
    case = Case()
    build(case)
    found = both(case, tmp_path)
    check_expected(case, found)
    assert found["duplicated"] == getattr(case, "duplicated", {})
    assert found["late"] == getattr(case, "late", {})


def test_all_cases_in_one_capture(tmp_path):
    """Many devices and two rollout steps at once: the drops, runs and reports of one device
    must not leak into another's."""
    case = Case()
    for build in CASES:
        build(case)
    found = both(case, tmp_path)
    steps = {s["cfg"]: s for s in found["steps"]}
    assert sorted(steps) == [1, 2]
    assert steps[2]["causes"] == {"still_queued": 1} and steps[2]["unseen"] == 1
    causes = {}
    for m in case.missing:
        causes[m[3]] = causes.get(m[3], 0) + 1
    assert {c: sum(s["causes"].get(c, 0) for s in found["steps"]) for c in causes} == causes
    assert len(found["missing"]) == len(case.missing) == 15
    assert (steps[1]["mismatches"], steps[1]["pubsub"]["unexpected"], steps[1]["mqtt"]["fallbacks"]) == (1, 2, 3)
    assert found["verdict"] == "fail"


def test_a_bare_report_is_read_as_an_envelope_is(tmp_path):
    """docs/VERIFY.md: reports one per line, bare or in envelopes. The SQL (rollup.py's reader)
    reads a bare report; the CLI counts it as unreadable and calls its device's missing
    locations unexplained."""
    case = Case()
    dropped(case)
    case.reports = [r["report"] for r in case.reports]  # the same reports, bare
    by_sql = verify.verify_files(*case.write(tmp_path))
    check_expected(case, by_sql)
    assert_same(cli(tmp_path / "capture.jsonl", tmp_path / "reports.jsonl"), by_sql)


def test_a_clean_run_passes_with_enough_traffic_and_is_insufficient_without(tmp_path):
    big, small = Case(), Case()
    for seq in range(1, 801):
        big.send("d-1", seq)
        big.send("d-2", seq)
    big.report("d-1", last_seq=800)
    big.report("d-2", last_seq=800)
    (tmp_path / "big").mkdir()
    found = both(big, tmp_path / "big")
    [step] = found["steps"]
    assert (step["trials"], step["discrepancies"], step["verdict"], found["verdict"]) == (3_200, 0, "pass", "pass")
    assert step["rateBound"] < 0.001 and step["minTrials"] == 2_995
    for seq in range(1, 101):
        small.send("d-1", seq)
    (tmp_path / "small").mkdir()
    assert both(small, tmp_path / "small")["verdict"] == "insufficient"


def test_the_bound_is_the_clis():
    """stats.rs's published values and rule of three, from the Python port."""
    assert abs(verify.upper_bound(0, 3_000) - 0.000998) < 1e-5
    assert verify.upper_bound(0, 2_995) <= 0.001 < verify.upper_bound(0, 2_994)
    assert abs(verify.upper_bound(1, 100) - 0.0466) < 5e-4
    assert abs(verify.upper_bound(10, 1_000) - 0.01679) < 2e-4
    assert verify.upper_bound(0, 0) == 1.0


# --------------------------------------------------------------------------------------------
# A real demo run.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify-demo")
    capture, reports = d / "capture.jsonl", d / "reports.jsonl"
    cmd = [BIN, "demo", "--devices", "60", "--locations-per-device", "10", "--rollout", "25", "--no-mqtt",
           "--pubsub-outage-ms", "2000", "--verify", "--json", "--capture", str(capture), "--reports-out", str(reports),
           # Real time: with an upload window the breaker counts one attempt per burst and a 2 s
           # outage makes no fallback copies (CONTRACT.md, Upload windows).
           "--window-secs", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode in (0, 3), f"dualpub demo failed ({done.returncode}):\n{done.stderr[-4000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, capture, reports


def test_a_real_demo_run_gives_the_same_steps_and_missing_list(demo, tmp_path):
    summary, capture, reports = demo
    # The SQL knows nothing of the verifying subscriber's own disconnections (gap lines): the
    # CLI reads the capture without them, so that both see the same (the demo's own verdict
    # had them).
    lines = capture.read_text().splitlines()
    gapless = tmp_path / "capture-without-gaps.jsonl"
    gapless.write_text("".join(line + "\n" for line in lines if "gap" not in json.loads(line)))
    by_cli, by_sql = cli(gapless, reports), verify.verify_files(capture, reports)
    assert_same(by_cli, by_sql)
    assert len(by_sql["steps"]) >= 1 and sum(s["locations"] for s in by_sql["steps"]) == 600
    # The outage made the Pub/Sub cohort fall back to MQTT: copies the check had to tell apart.
    assert sum(s["mqtt"]["fallbacks"] for s in by_sql["steps"]) > 0, by_sql["steps"]
    if not any("gap" in json.loads(line) for line in lines):
        assert by_sql["steps"] == summary["verify"]["steps"], "the demo's own verdict"


def test_the_real_run_with_losses_injected_gives_the_same_steps_and_missing_list(demo, tmp_path):
    """The demo's capture with its real reports, damaged: every 7th Pub/Sub copy gone, every
    11th message twice, one Pub/Sub payload changed, and every copy of a few locations gone
    (seq values seen on neither pipeline). The real reports (real lastSeq, depths and drops)
    say why."""
    _, capture, reports = demo
    lines = [json.loads(line) for line in capture.read_text().splitlines()]
    messages = [m for m in lines if "payload" in m]
    gone = {json.loads(m["payload"])["eventId"] for m in messages[5::97]}
    damaged, pubsub_seen = [], 0
    for i, m in enumerate(messages):
        if json.loads(m["payload"])["eventId"] in gone:
            continue
        if m["pipeline"] == "pubsub":
            pubsub_seen += 1
            if pubsub_seen % 7 == 0:
                continue
            if pubsub_seen == 1:  # its MQTT copy keeps the original bytes
                m = {**m, "payload": m["payload"].replace('"latitude":', '"latitude": ')}
        damaged += [m, m] if i % 11 == 0 else [m]
    path = tmp_path / "damaged.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in damaged))
    by_cli, by_sql = cli(path, reports), verify.verify_files(path, reports)
    assert_same(by_cli, by_sql)
    steps = by_sql["steps"]
    assert sum(s["unseen"] for s in steps) > 0 and sum(s["pubsub"]["missing"] for s in steps) > 0, steps
    assert sum(s["mqtt"]["duplicates"] for s in steps) > 0 and sum(s["mismatches"] for s in steps) == 1
    assert by_sql["verdict"] == "fail"
    assert len(by_sql["missing"]) == sum(s["unseen"] + s["mqtt"]["missing"] + s["pubsub"]["missing"] for s in steps)


def test_the_command_line_prints_the_table_and_the_clis_exit_code(demo):
    _, capture, reports = demo
    by_cli = subprocess.run([BIN, "verify", "--capture", str(capture), "--reports", str(reports)],
                            capture_output=True, text=True, timeout=120, check=False)
    done = subprocess.run([sys.executable, str(VERIFY_PY), "--capture", str(capture), "--reports", str(reports)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == by_cli.returncode, done.stderr
    verdict = by_cli.stdout.splitlines()[0].split(": ")[1]
    assert done.stdout.splitlines()[0] == f"dualpub verify (SQL): {verdict}"
    as_json = subprocess.run([sys.executable, str(VERIFY_PY), "--capture", str(capture), "--reports", str(reports), "--json"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert json.loads(as_json.stdout)["verdict"] == verdict.lower()


def test_a_line_that_is_neither_a_message_nor_a_gap_stops_the_run(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pipeline":"mqtt","receivedAtMs":1,"payload":"{}"}\n{"pipeline":"mqtt"}\n')
    done = subprocess.run([sys.executable, str(VERIFY_PY), "--capture", str(bad)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2 and "line 2: neither a payload nor a gap" in done.stderr, done.stderr


def test_a_selftest_run_gives_the_same_numbers(tmp_path):
    """The selftest's faults on a real run (Pub/Sub acknowledges and then discards 37, delivers
    50 twice, holds 20 back): the SQL names the same 37 as the CLI, with the same counts."""
    capture, reports = tmp_path / "capture.jsonl", tmp_path / "reports.jsonl"
    faults = {"faultTopic": "location-updates", "discardAfterAckNext": 37, "duplicateNext": 50, "delayNext": 20, "delayMs": 6000}
    cmd = [BIN, "demo", "--devices", "40", "--locations-per-device", "50", "--rollout", "100", "--verify", "--json",
           "--capture", str(capture), "--reports-out", str(reports), "--pubsub-faults", json.dumps(faults)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 3, f"the demo's verdict must fail ({done.returncode}):\n{done.stderr[-4000:]}"
    injected = json.loads(done.stdout.strip().splitlines()[-1])["injected"]
    by_cli = cli(capture, reports)
    by_sql = verify.verify_files(capture, reports)
    assert_same(by_cli, by_sql)
    named = {m["eventId"] for m in by_sql["missing"] if m["cause"] == "acked_not_received" and m["pipeline"] == "pubsub"}
    assert named == {h["eventId"] for h in injected["discarded"]} and len(named) == 37
    assert set(by_sql["duplicated"]["pubsub"]) == {h["eventId"] for h in injected["duplicated"]}
