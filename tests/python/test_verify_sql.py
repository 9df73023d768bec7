"""`dualpub verify` as SQL (tools/rollup/sql/verify.sql, run by tools/rollup/verify.py on chDB)
against the CLI it reimplements (tools/cli/src/verify/engine.rs).

- A real demo run (60 devices, 25 % rollout, MQTT off, Pub/Sub failing for 2 s): the CLI and the
  SQL read the same capture and reports; every field of every step and the missing list must be
  equal; then the same with losses, copies and a changed payload injected into the capture.
- A real demo run with both routes spread over 12 s, edited the way field losses happen: a
  device's last location lost on its only pipeline, a device's last locations lost everywhere
  while its report holds them, a whole device gone, one subscriber gap over a route-both and a
  route-mqtt loss, one flipped byte: CLI == SQL, and each named as it must be.
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
           epoch: str = "e1", epoch_start_ms: int = 1, report_seq: int = 1, oldest=None,
           route: str = "both", cfg: int = 1) -> dict:
    """A complete migration report (the fields the rollup checks and those verify reads);
    `oldest`: (mqttOldestSeq, pubsubOldestSeq), absent as from an SDK without them."""
    counts = {"acked": 0, "failed": 0, "retries": 0, "breakerOpenings": 0}
    gauges = {"mqttDepth": depth[0], "pubsubDepth": depth[1], "mqttBreakerOpen": False, "pubsubBreakerOpen": False}
    if oldest is not None:
        gauges |= {"mqttOldestSeq": oldest[0], "pubsubOldestSeq": oldest[1]}
    return {
        "report": 1, "reportSeq": report_seq, "epoch": epoch, "epochStartMs": epoch_start_ms,
        "cutAtMs": 10_000 + report_seq, "trigger": "interval", "intervalSecs": 900, "deviceId": device,
        "sdk": "0.1.0", "platform": "linux", "decision": {"cfg": cfg, "route": route},
        "counters": {"accepted": last_seq, "lastSeq": last_seq, "mqtt": counts, "pubsub": counts,
                     "fallbacks": 0, "dropped": {"outbox_full": dropped} if dropped else {},
                     "deadLetters": dead_letters},
        "gauges": gauges,
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
             pubsub_payload: str | None = None, seen: bool = True) -> str:
        """A location received at each time in `mqtt` and in `pubsub` (empty: never; `seen`
        False: on neither pipeline, though the device sent it)."""
        self.n += 1
        payload = location(self.n, device, seq, route, cfg)
        if not seen:
            return event_id(self.n)
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

    def gap(self, pipeline: str, from_ms: int, to_ms: int) -> None:
        """The subscriber on `pipeline` was disconnected from `from_ms` to `to_ms`."""
        self.lines.insert(0, {"pipeline": pipeline, "gap": {"fromMs": from_ms, "toMs": to_ms}})

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


def unbounded_key(u: dict) -> tuple:
    return u["deviceId"], u["epoch"] or "", u["reason"]


def assert_same(by_cli: dict, by_sql: dict) -> None:
    """Every field the SQL covers is equal (the missing and unbounded lists compared in one
    order: the CLI lists devices by their first line in the capture, the SQL by deviceId)."""
    assert by_sql["steps"] == by_cli["steps"]
    assert sorted(by_sql["missing"], key=missing_key) == sorted(by_cli["missing"], key=missing_key)
    for field in ("duplicated", "late", "verdict", "thresholds", "mismatched", "unboundedCount"):
        assert by_sql[field] == by_cli[field], field
    assert sorted(by_sql["unbounded"], key=unbounded_key) == sorted(by_cli["unbounded"], key=unbounded_key)


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
    # Neither can be bounded: "silent" sent no report; the old epoch of "stale" has a report cut
    # in the window and no location in it, and nothing says where its window's seqs begin.
    c.unbounded = [("silent", None, "no_report"), ("stale", "e-old", "start_unknown")]


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
    """Seq 2's Pub/Sub copy has other bytes than its MQTT copy (one space more: no field
    differs); seq 3's has another latitude, a number spelled otherwise (the same value) and
    a field of its own."""
    for seq in range(1, 4):
        original = location(c.n + 1, "changed", seq)
        changed = {2: original + " ",
                   3: original.replace('"latitude":52.5', '"latitude":52.6').replace('"longitude":13.4', '"longitude":13.40')
                                .replace("}", ',"x":1}')}
        c.send("changed", seq, pubsub_payload=changed.get(seq))
    c.report("changed", last_seq=3)
    c.expect(mismatches=2, discrepancies=2, causes={}, trials=6)
    c.fields = {2: [], 3: ["latitude", "(other)"]}


def run_ends(c: Case) -> None:
    """Where field losses happen, at the end of a run (the report bounds it): a route-mqtt
    device's last location lost on MQTT, its report saying nothing is owed (acknowledged, not
    received); a device's last 3 lost everywhere, its report holding them on both transports
    from seq 8 (still queued); a device whose Pub/Sub refused everything (the report holds all
    for Pub/Sub) with its last 2 gone from MQTT too (acknowledged by MQTT: a loss)."""
    for seq in range(1, 11):
        c.send("tail", seq, route="mqtt", pubsub=(), seen=seq < 10)
    c.report("tail", last_seq=10, oldest=(0, 0))
    for seq in range(1, 11):
        c.send("held", seq, seen=seq < 8)
    c.report("held", last_seq=10, depth=(3, 3), oldest=(8, 8))
    for seq in range(1, 11):
        c.send("refused", seq, pubsub=(), seen=seq < 9)
    c.report("refused", last_seq=10, depth=(0, 10), oldest=(0, 1))
    c.missing += [("tail", 10, None, "acked_not_received"), ("held", 8, None, "still_queued"),
                  ("held", 9, None, "still_queued"), ("held", 10, None, "still_queued")]
    c.missing += [("refused", s, "pubsub", "still_queued") for s in range(1, 9)]
    c.missing += [("refused", 9, None, "acked_not_received"), ("refused", 10, None, "acked_not_received")]
    c.expect(devices=3, locations=24, unseen=6, causes={"acked_not_received": 3, "still_queued": 11},
             discrepancies=3, trials=24 + 24 - 9 + 6)


def vanished(c: Case) -> None:
    """A device none of whose locations arrived: its first report cut in the window says 2 were
    given out, its newest 6, so 3..6 were owed in it (cfg and route of the report's decision);
    another whose only report cannot say where its window's seqs begin is listed unbounded, as
    a device without reports is (its last locations cannot be checked)."""
    c.report("gone", last_seq=2, report_seq=1, cfg=4, route="mqtt")
    c.report("gone", last_seq=6, report_seq=2, cfg=4, route="mqtt", oldest=(0, 0))
    c.report("unknown", last_seq=6, report_seq=1)
    c.send("reportless", 1)
    c.missing += [("gone", s, None, "acked_not_received") for s in range(3, 7)]
    c.expect(cfg=1, devices=1, locations=1, causes={}, discrepancies=0, trials=2)
    c.expect(cfg=4, devices=1, locations=0, unseen=4, causes={"acked_not_received": 4}, discrepancies=4, trials=4)
    c.unbounded = [("reportless", None, "no_report"), ("unknown", "e1", "start_unknown")]


def stuck_oldest(c: Case) -> None:
    """Seq 3 stuck on MQTT after the route changed to Pub/Sub only (4..10 went there): its
    report owes 1 to MQTT, the oldest being 3: still queued (the newest depth would say 10)."""
    for seq in range(1, 11):
        c.send("stuck", seq, route="both" if seq <= 3 else "pubsub", mqtt=() if seq >= 3 else (2_000,))
    c.report("stuck", last_seq=10, depth=(1, 0), oldest=(3, 0))
    c.missing += [("stuck", 3, "mqtt", "still_queued")]
    c.expect(causes={"still_queued": 1}, discrepancies=0)


def subscriber_gap(c: Case) -> None:
    """The MQTT subscriber was down from 20 s to 21 s: seq 3 of a route-both and of a route-mqtt
    device would have arrived then (2 before, 4 after) and is the verifier's gap on both routes;
    seq 6, lost later, is a loss on both."""
    c.gap("mqtt", 20_000, 21_000)
    times = {1: 10_000, 2: 15_000, 3: 20_500, 4: 25_000, 5: 30_000, 6: 35_000, 7: 40_000}
    for device, route in (("gap-both", "both"), ("gap-mqtt", "mqtt")):
        for seq, at in times.items():
            lost = seq in (3, 6)
            c.send(device, seq, route=route, mqtt=() if lost else (at,), pubsub=(at + 500,) if route == "both" else (),
                   seen=not (lost and route == "mqtt"))
        c.report(device, last_seq=7)
    c.missing += [("gap-both", 3, "mqtt", "verifier_gap"), ("gap-both", 6, "mqtt", "acked_not_received"),
                  ("gap-mqtt", 3, None, "verifier_gap"), ("gap-mqtt", 6, None, "acked_not_received")]
    c.expect(causes={"verifier_gap": 2, "acked_not_received": 2}, discrepancies=2)


def seq_gaps(c: Case) -> None:
    """Seq 4 seen on neither pipeline: acknowledged (nothing pending) for one device; seq 3 still
    queued for another (the newest two of both transports: 3 > 4 - 2); the gap takes the cfg
    and route of the location above it (2), even if the one below is cfg 1."""
    for seq in (1, 2, 3, 5, 6):
        c.send("gappy", seq)
    c.report("gappy", last_seq=6)
    for seq, cfg in ((1, 1), (2, 1), (4, 2)):
        c.send("gappy-queued", seq, cfg=cfg)
    c.report("gappy-queued", last_seq=4, depth=(2, 2))
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
    c.lines.append({"pipeline": "mqtt", "gap": {"fromMs": 1_000_000, "toMs": 1_000_001}})
    c.report("tidy", last_seq=1)
    c.expect(locations=1, devices=1, causes={}, discrepancies=0, trials=2)


CASES = [acked_not_received, still_queued, dropped, unexplained, duplicates, fallbacks, unexpected, mismatch,
         seq_gaps, restarts, late, malformed, run_ends, vanished, stuck_oldest, subscriber_gap]


@pytest.mark.parametrize("build", CASES, ids=[f.__name__ for f in CASES])
def test_each_case_the_cli_and_the_sql_agree_on_the_numbers_written_here(build, tmp_path):
    case = Case()
    build(case)
    found = both(case, tmp_path)
    check_expected(case, found)
    assert found["duplicated"] == getattr(case, "duplicated", {})
    assert found["late"] == getattr(case, "late", {})
    assert {m["seq"]: m["fields"] for m in found["mismatched"]} == getattr(case, "fields", {})
    assert sorted((u["deviceId"], u["epoch"], u["reason"]) for u in found["unbounded"]) == \
        sorted(getattr(case, "unbounded", [(d, None, "no_report") for d in case_devices_without_reports(case)]))


def case_devices_without_reports(case: Case) -> list[str]:
    """The devices of a case that sent locations and no report."""
    reporting = {(r.get("report") if isinstance(r.get("report"), dict) else r)["deviceId"] for r in case.reports}
    sent = set()
    for line in case.lines:
        try:
            sent.add(json.loads(line["payload"])["deviceId"])
        except (KeyError, ValueError):
            pass  # a gap, or a message that is no location
    return sorted(d for d in sent if d not in reporting)


def test_all_cases_in_one_capture(tmp_path):
    """Many devices and two rollout steps at once: the drops, runs and reports of one device
    must not leak into another's."""
    case = Case()
    for build in CASES:
        build(case)
    found = both(case, tmp_path)
    steps = {s["cfg"]: s for s in found["steps"]}
    assert sorted(steps) == [1, 2, 4]
    assert steps[2]["causes"] == {"still_queued": 1} and steps[2]["unseen"] == 1
    causes = {}
    for m in case.missing:
        causes[m[3]] = causes.get(m[3], 0) + 1
    assert {c: sum(s["causes"].get(c, 0) for s in found["steps"]) for c in causes} == causes
    check_expected_missing = sorted((m["deviceId"], m["seq"], m["pipeline"], m["cause"]) for m in found["missing"])
    assert check_expected_missing == sorted(case.missing, key=lambda m: (m[0], m[1], m[2] or ""))
    assert (steps[1]["mismatches"], steps[1]["pubsub"]["unexpected"], steps[1]["mqtt"]["fallbacks"]) == (2, 2, 3)
    assert sorted(u["deviceId"] for u in found["unbounded"]) == ["reportless", "silent", "stale", "unknown"]
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
    by_cli, by_sql = cli(capture, reports), verify.verify_files(capture, reports)
    assert_same(by_cli, by_sql)
    assert len(by_sql["steps"]) >= 1 and sum(s["locations"] for s in by_sql["steps"]) == 600
    # The outage made the Pub/Sub cohort fall back to MQTT: copies the check had to tell apart.
    assert sum(s["mqtt"]["fallbacks"] for s in by_sql["steps"]) > 0, by_sql["steps"]
    assert by_sql["steps"] == summary["verify"]["steps"], "the demo's own verdict"
    assert by_sql["unboundedCount"] == 0, "every device reported: every run is bounded"


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


# --------------------------------------------------------------------------------------------
# A real run edited the way field losses happen.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    """A real demo run, both routes (rollout 50 %), 20 devices × 12 locations one round a second
    in real time, so that a subscriber gap of a second can fall between two of a device's
    locations. Returns the capture lines (parsed), the reports file's lines (parsed) and, per
    device, its route and its locations [(seq, eventId, {pipeline: arrival ms})]."""
    d = tmp_path_factory.mktemp("verify-spread")
    capture, reports = d / "capture.jsonl", d / "reports.jsonl"
    cmd = [BIN, "demo", "--devices", "20", "--locations-per-device", "12", "--rollout", "50", "--round-interval-ms", "1000",
           "--window-secs", "0", "--verify", "--json", "--capture", str(capture), "--reports-out", str(reports)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"dualpub demo failed ({done.returncode}):\n{done.stderr[-4000:]}"
    lines = [json.loads(line) for line in capture.read_text().splitlines()]
    devices: dict[str, dict] = {}
    for line in lines:
        if "payload" not in line:
            continue
        p = json.loads(line["payload"])
        dev = devices.setdefault(p["deviceId"], {"route": p["route"], "locations": {}})
        seen = dev["locations"].setdefault(p["seq"], (p["eventId"], {}))[1]
        seen.setdefault(line["pipeline"], line["receivedAtMs"])
    for dev in devices.values():
        dev["locations"] = sorted((seq, e, at) for seq, (e, at) in dev["locations"].items())
    report_lines = [json.loads(line) for line in reports.read_text().splitlines()]
    return lines, report_lines, devices


def edited(tmp_path: Path, lines: list[dict], report_lines: list[dict], drop=lambda line, p: False,
           gaps=(), change=lambda line: line, report_change=lambda r: r) -> dict:
    """Writes the run with the capture lines for which drop(line, payload) holds left out, gap
    lines added and lines changed, and the reports changed; runs the CLI and the SQL on it,
    asserts they agree and returns the SQL's findings."""
    out = []
    for line in lines:
        if "payload" in line and drop(line, json.loads(line["payload"])):
            continue
        out.append(change(line))
    out += [{"pipeline": "mqtt", "gap": {"fromMs": f, "toMs": t}} for f, t in gaps]
    capture, reports = tmp_path / "capture.jsonl", tmp_path / "reports.jsonl"
    capture.write_text("".join(json.dumps(line) + "\n" for line in out))
    reports.write_text("".join(json.dumps(report_change(r)) + "\n" for r in report_lines))
    by_cli, by_sql = cli(capture, reports), verify.verify_files(capture, reports)
    assert_same(by_cli, by_sql)
    return by_sql


def of_route(devices: dict, route: str) -> list[str]:
    return sorted(d for d, v in devices.items() if v["route"] == route)


def test_the_unedited_spread_run_passes_its_loss_checks(spread, tmp_path):
    lines, report_lines, devices = spread
    found = edited(tmp_path, lines, report_lines)
    assert found["missing"] == [] and found["unboundedCount"] == 0
    assert of_route(devices, "both") and of_route(devices, "mqtt"), "both routes in the run"


def test_a_devices_last_location_lost_on_its_only_pipeline_is_acknowledged_not_received(spread, tmp_path):
    lines, report_lines, devices = spread
    device = of_route(devices, "mqtt")[0]
    last = devices[device]["locations"][-1][0]
    found = edited(tmp_path, lines, report_lines, drop=lambda line, p: p["deviceId"] == device and p["seq"] == last)
    assert [(m["deviceId"], m["seq"], m["pipeline"], m["cause"]) for m in found["missing"]] == [(device, last, None, "acked_not_received")]
    assert found["verdict"] == "fail"


def test_a_devices_last_locations_lost_everywhere_while_its_report_holds_them_are_still_queued(spread, tmp_path):
    lines, report_lines, devices = spread
    device = of_route(devices, "both")[0]
    last = devices[device]["locations"][-1][0]

    def holding(envelope: dict) -> dict:
        r = envelope.get("report", envelope)
        if r["deviceId"] == device:
            r = {**r, "gauges": {**r["gauges"], "mqttDepth": 3, "pubsubDepth": 3, "mqttOldestSeq": last - 2, "pubsubOldestSeq": last - 2}}
        return {**envelope, "report": r} if "report" in envelope else r

    found = edited(tmp_path, lines, report_lines, drop=lambda line, p: p["deviceId"] == device and p["seq"] > last - 3, report_change=holding)
    assert [(m["deviceId"], m["seq"], m["cause"]) for m in found["missing"]] == [(device, s, "still_queued") for s in range(last - 2, last + 1)]
    assert found["verdict"] != "fail"


def test_a_device_whose_every_location_vanished_is_listed(spread, tmp_path):
    lines, report_lines, devices = spread
    device = of_route(devices, "both")[1]
    n = len(devices[device]["locations"])
    found = edited(tmp_path, lines, report_lines, drop=lambda line, p: p["deviceId"] == device)
    assert [(m["deviceId"], m["seq"], m["cause"]) for m in found["missing"]] == [(device, s, "acked_not_received") for s in range(1, n + 1)]
    assert found["verdict"] == "fail"


def test_one_subscriber_gap_excuses_route_both_and_route_mqtt_alike(spread, tmp_path):
    """A gap around round 6 of the MQTT subscriber: the MQTT copy of seq 6 of a route-both and
    of a route-mqtt device removed (as a subscriber that was down would have missed them) are
    the verifier's gap on both routes; seq 11 of each, removed 5 s after the gap, is a loss."""
    lines, report_lines, devices = spread
    both_dev, mqtt_dev = of_route(devices, "both")[0], of_route(devices, "mqtt")[0]
    at = devices[both_dev]["locations"][5][2]["mqtt"]
    gap = (at - 300, at + 300)
    found = edited(tmp_path, lines, report_lines, gaps=[gap],
                   drop=lambda line, p: line["pipeline"] == "mqtt" and p["deviceId"] in (both_dev, mqtt_dev) and p["seq"] in (6, 11))
    causes = sorted((m["deviceId"], m["seq"], m["cause"]) for m in found["missing"])
    assert causes == sorted([(both_dev, 6, "verifier_gap"), (mqtt_dev, 6, "verifier_gap"),
                             (both_dev, 11, "acked_not_received"), (mqtt_dev, 11, "acked_not_received")])


def test_one_flipped_byte_is_named_with_its_event_id_and_field(spread, tmp_path):
    lines, report_lines, devices = spread
    device = of_route(devices, "both")[0]
    seq, event_id, _ = devices[device]["locations"][3]
    target = next(line for line in lines if line.get("pipeline") == "pubsub" and '"eventId":"%s"' % event_id in line.get("payload", ""))
    flipped = target["payload"].replace('"latitude":', '"latitude":9', 1)  # 52.5 → 952.5: one byte more

    def change(line: dict) -> dict:
        return {**line, "payload": flipped} if line is target else line

    found = edited(tmp_path, lines, report_lines, change=change)
    [m] = found["mismatched"]
    assert (m["eventId"], m["deviceId"], m["seq"], m["fields"]) == (event_id, device, seq, ["latitude"])
    assert sorted(c["pipeline"] for c in m["copies"]) == ["mqtt", "pubsub"] and len({c["digest"] for c in m["copies"]}) == 2
    assert found["verdict"] == "fail"
