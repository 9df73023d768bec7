"""The fleet rollup of migration reports (tools/rollup/) against a fleet simulated here.

- schemas/migration-report.schema.json: the example in docs/CONTRACT.md and every simulated
  report pass; reports the SDK must never send are refused.
- A small simulator runs a fleet interval by interval and writes what every device would report
  (cumulative counters and histograms), keeping the ground truth on the side: what happened in
  each interval, and the raw latency samples. It adds two config versions, a data wipe (new
  epoch), a lost report, copies on both transports and redeliveries, silent devices. Every figure
  of sql/rollup.sql (run in chDB) is compared with the same figure computed from the ground
  truth in plain Python, which never looks at the reports' counters.
- The CLI: its table, its JSON, and its errors for lines that are not reports.

Run by ./scripts/test (chdb and jsonschema come from tests/python/requirements.txt).
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "rollup"))
import rollup  # noqa: E402  (tools/rollup/rollup.py)
from rollup import rollup_rows  # noqa: E402  (reusable by later tests: rollup_rows(path, by="total"|"hour"))

CLI = ROOT / "tools" / "rollup" / "rollup.py"
SCHEMA = json.loads((ROOT / "schemas" / "migration-report.schema.json").read_text(encoding="utf-8"))
Draft202012Validator.check_schema(SCHEMA)
REPORT = Draft202012Validator(SCHEMA)

BOUNDS = [0.5 * 1.25**i for i in range(65)]  # b(0) ... b(64) in ms; count 65 is everything above
INTERVAL_S = 900
T0 = 1763769600000  # 2025-11-22 00:00 UTC
TRANSPORTS = ("mqtt", "pubsub")
KEYS = ("hour", "cfg", "route", "sdk", "platform")


def problems(doc) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in REPORT.iter_errors(doc))


def contract_example(name: str) -> str:
    """The fenced block that follows `<!-- contract-example: NAME -->` in docs/CONTRACT.md."""
    text = (ROOT / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- contract-example: " + re.escape(name) + r" -->\n```json\n(.*?)\n```", text, re.S)
    assert len(found) == 1, f"docs/CONTRACT.md: expected one example {name!r}, found {len(found)}"
    return found[0]


def write_jsonl(path: Path, docs) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The simulator.
# --------------------------------------------------------------------------------------------


def latency_index(ms: float) -> int:
    """The histogram count a latency goes to: the first i with ms <= b(i), 65 above b(64)."""
    return next((i for i, b in enumerate(BOUNDS) if ms <= b), 65)


@dataclass
class Interval:
    """Ground truth: what one device did between two report cuts."""
    device: str
    epoch: str
    seq: int  # the reportSeq of the report cut at its end
    counts: Counter = field(default_factory=Counter)
    samples: dict = field(default_factory=lambda: {t: [] for t in TRANSPORTS})


class Device:
    """One phone: cumulative counters per epoch, as the SDK keeps them."""

    def __init__(self, rng: random.Random, number: int, platform: str, sdk: str):
        self.rng, self.id, self.platform, self.sdk = rng, f"dev-{number}", platform, sdk
        self.new_epoch(T0 - 3_600_000)

    def new_epoch(self, at_ms: int):
        """A new install or cleared data: report numbers, seq and every counter start again."""
        ms, r = f"{at_ms:012x}", f"{self.rng.getrandbits(72):018x}"
        self.epoch = f"{ms[:8]}-{ms[8:]}-7{r[:3]}-{'89ab'[self.rng.randrange(4)]}{r[3:6]}-{r[6:]}"  # UUIDv7
        self.epoch_start, self.report_seq, self.last_seq = at_ms, 0, 0
        self.totals = Counter()
        self.histograms = {t: [0] * 66 for t in TRANSPORTS}

    def live(self, decision: dict) -> Interval:
        """Accepts and delivers locations under `decision` until the next cut."""
        rng, route = self.rng, decision["route"]
        iv = Interval(self.id, self.epoch, self.report_seq + 1)
        for _ in range(rng.randint(5, 40)):
            iv.counts["accepted"] += 1
            owed = {"both": ["mqtt", "pubsub"], "mqtt": ["mqtt"], "pubsub": ["pubsub"]}[route]
            for t in list(owed):
                failures = rng.choice([0] * 12 + [1, 1, 2, 3])
                iv.counts[f"failed_{t}"] += failures
                iv.counts[f"retries_{t}"] += rng.choice([0, failures, failures])
                if t == "pubsub" and failures >= 2 and route == "pubsub":
                    iv.counts["fallbacks"] += 1  # newly owed to MQTT
                    owed.append("mqtt")
            for t in owed:
                iv.counts[f"acked_{t}"] += 1
                ms = rng.lognormvariate(math.log(40 if t == "mqtt" else 180), 0.6)
                if rng.random() < 0.01:
                    ms *= 40
                iv.samples[t].append(ms)
        return iv

    def cut(self, at_ms: int, trigger: str, decision: dict, iv: Interval) -> dict:
        """Adds the interval to the cumulative counters and returns the report cut now."""
        self.report_seq += 1
        assert iv.seq == self.report_seq
        self.totals.update(iv.counts)
        for t in TRANSPORTS:
            for ms in iv.samples[t]:
                self.histograms[t][latency_index(ms)] += 1
        first = self.last_seq + 1
        self.last_seq += iv.counts["accepted"]
        tot, rng = self.totals, self.rng
        bucket_start = (at_ms - 1) // 600_000 * 600_000
        return {
            "report": 1, "reportSeq": self.report_seq, "epoch": self.epoch, "epochStartMs": self.epoch_start,
            "cutAtMs": at_ms, "trigger": trigger, "intervalSecs": INTERVAL_S, "deviceId": self.id, "companyId": "c-9",
            "sdk": self.sdk, "platform": self.platform, "appVersion": "3.2.1",
            "decision": {**decision, "fallbackToMqtt": True},
            "counters": {
                "accepted": tot["accepted"], "lastSeq": self.last_seq, "rejected": {"invalid_latitude": 1},
                **{t: {"acked": tot[f"acked_{t}"], "failed": tot[f"failed_{t}"], "retries": tot[f"retries_{t}"],
                       "breakerOpenings": 0} for t in TRANSPORTS},
                "fallbacks": tot["fallbacks"], "dual": {"both": 0, "mqttOnly": 0, "pubsubOnly": 0}, "dropped": {},
                "deadLetters": 0, "configFetches": {"applied": 1},
            },
            "gauges": {"mqttDepth": rng.randint(0, 30), "pubsubDepth": rng.randint(0, 30),
                       "oldestPendingAgeS": round(rng.random() * 60, 1),
                       "mqttBreakerOpen": rng.random() < 0.2, "pubsubBreakerOpen": rng.random() < 0.3},
            "latency": {t: list(self.histograms[t]) for t in TRANSPORTS},
            "buckets": [[bucket_start, iv.counts["accepted"], iv.counts["acked_mqtt"], iv.counts["acked_pubsub"],
                         first if iv.counts["accepted"] else 0, self.last_seq if iv.counts["accepted"] else 0]],
            "bucketsCut": 0,
        }


def decision_for(number: int, cfg: int) -> dict:
    """cfg 41: MQTT only (device 7 on Pub/Sub only by an override); cfg 42: devices 0-3 on both."""
    if number == 7:
        return {"cfg": cfg, "bucket": 7000 + number, "reason": "device_override", "route": "pubsub"}
    if cfg == 42 and number < 4:
        return {"cfg": cfg, "bucket": 100 * number, "reason": "rollout_in", "route": "both"}
    return {"cfg": cfg, "bucket": 5000 + number, "reason": "disabled" if cfg == 41 else "rollout_out", "route": "mqtt"}


@dataclass
class Fleet:
    reports: list  # every report cut (dicts), delivered or not
    delivered: list  # (report, transport, receivedAtMs) copies that arrived, duplicates included
    intervals: list  # ground truth, one per report cut
    lost: set  # (device, epoch, reportSeq) of reports that never arrived


def simulate(seed: int = 7, intervals: int = 24) -> Fleet:
    """Eight devices for `intervals` (at least 8) report intervals from T0. The config goes from
    version 41 to 42 mid-run (each device cuts a `config` report first); dev-2 has its data wiped
    after a shutdown report a third of the way (new epoch); dev-1's report 5 is lost; dev-5 stops
    reporting a quarter of the way (silent), dev-6 two intervals before the end (exactly 2
    intervals before the last cut: not yet silent). Reports go out on the transports their
    route uses, some twice."""
    rng = random.Random(seed)
    devices = [Device(rng, n, ["android", "ios"][n % 2], ["dualpub/0.1.0", "dualpub/0.2.0"][n // 4]) for n in range(8)]
    switch_ms = T0 + (intervals // 2) * INTERVAL_S * 1000 + 450_000
    wipe = (2, intervals // 3)
    reports, ivs = [], []
    for d, n in zip(devices, range(8)):
        stop = {5: intervals // 4, 6: intervals - 2}.get(n, intervals)
        for k in range(1, stop + 1):
            at = T0 + k * INTERVAL_S * 1000
            if at - INTERVAL_S * 1000 < switch_ms < at:  # the config changes within this interval
                iv = d.live(decision_for(n, 41))
                ivs.append(iv)
                reports.append(d.cut(switch_ms, "config", decision_for(n, 41), iv))
            cfg = 41 if at < switch_ms else 42
            iv = d.live(decision_for(n, cfg))
            ivs.append(iv)
            reports.append(d.cut(at, "shutdown" if (n, k) == wipe else "interval", decision_for(n, cfg), iv))
            if (n, k) == wipe:
                d.new_epoch(at + 60_000)
    lost = {(r["deviceId"], r["epoch"], r["reportSeq"]) for r in reports if r["deviceId"] == "dev-1" and r["reportSeq"] == 5}
    delivered = []
    for i, r in enumerate(reports):
        if (r["deviceId"], r["epoch"], r["reportSeq"]) in lost:
            continue
        transports = {"both": TRANSPORTS, "mqtt": ("mqtt",), "pubsub": ("pubsub",)}[r["decision"]["route"]]
        for j, t in enumerate(transports):
            delivered.append((r, t, r["cutAtMs"] + 500 + j))
        if i % 5 == 0:
            delivered.append((r, transports[0], r["cutAtMs"] + 90_000))  # a redelivery
    return Fleet(reports, delivered, ivs, lost)


def envelopes(copies) -> list[dict]:
    return [{"transport": t, "receivedAtMs": at, "report": r} for r, t, at in copies]


# --------------------------------------------------------------------------------------------
# The ground truth, in plain Python.
# --------------------------------------------------------------------------------------------


def hour_of(ms: int) -> str:
    return datetime.fromtimestamp(ms // 3_600_000 * 3600, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def group_of(report: dict, by: str) -> tuple:
    if by == "total":
        return (None,) * 5
    return (hour_of(report["cutAtMs"]), report["decision"]["cfg"], report["decision"]["route"], report["sdk"], report["platform"])


def nearest_rank(samples: list[float], pct: int) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(pct * len(ordered) / 100)) - 1]


def truth(fleet: Fleet, by: str, now_ms: int | None = None, since_ms: int = 0) -> dict[tuple, dict]:
    """Every rollup figure per group, from what happened (intervals, samples, which reports were
    lost, each device's last delivered report), never from the reports' counters."""
    arrived = {(r["deviceId"], r["epoch"], r["reportSeq"]): r for r, _, _ in fleet.delivered}
    now_ms = now_ms or max(r["cutAtMs"] for r in arrived.values())
    arrived = {k: r for k, r in arrived.items() if r["cutAtMs"] <= now_ms}

    def closing(device, epoch, seq):
        """The report whose delta carries what happened before report `seq` was cut."""
        later = [r for (d, e, s), r in arrived.items() if d == device and e == epoch and s >= seq]
        return min(later, key=lambda r: r["reportSeq"]) if later else None

    groups = defaultdict(lambda: {"devices": set(), "reports": 0, "missing": 0, "counts": Counter(),
                                  "samples": {t: [] for t in TRANSPORTS}, "silent": 0, "backlog": Counter(), "open": Counter()})
    for iv in fleet.intervals:
        end = closing(iv.device, iv.epoch, iv.seq)
        if end is None or end["cutAtMs"] < since_ms:
            continue
        g = groups[group_of(end, by)]
        g["counts"].update(iv.counts)
        for t in TRANSPORTS:
            g["samples"][t] += iv.samples[t]
        if (iv.device, iv.epoch, iv.seq) in fleet.lost:
            g["missing"] += 1
        else:
            g["reports"] += 1
            g["devices"].add(iv.device)
    newest = {}
    for r in arrived.values():
        if r["deviceId"] not in newest or r["cutAtMs"] > newest[r["deviceId"]]["cutAtMs"]:
            newest[r["deviceId"]] = r
    for r in newest.values():
        g = groups[group_of(r, by)]
        g["silent"] += r["cutAtMs"] < now_ms - 2 * r["intervalSecs"] * 1000
        for t in TRANSPORTS:
            g["backlog"][t] += r["gauges"][f"{t}Depth"]
            g["open"][t] += r["gauges"][f"{t}BreakerOpen"]
    out = {}
    for key, g in groups.items():
        c = g["counts"]
        row = {"devices": len(g["devices"]), "reports": g["reports"], "missing_reports": g["missing"],
               "silent_devices": g["silent"], "accepted": c["accepted"], "fallbacks": c["fallbacks"],
               "fallback_rate": c["fallbacks"] / c["accepted"] if c["accepted"] else None}
        for t in TRANSPORTS:
            acked, failed, retries = c[f"acked_{t}"], c[f"failed_{t}"], c[f"retries_{t}"]
            row |= {f"delivered_{t}": acked, f"failed_{t}": failed, f"retries_{t}": retries,
                    f"success_{t}": acked / (acked + failed) if acked + failed else None,
                    f"retries_per_1k_{t}": 1000 * retries / acked if acked else None,
                    f"backlog_{t}": g["backlog"][t], f"breaker_open_{t}": g["open"][t]}
            row[f"samples_{t}"] = g["samples"][t]
        out[key] = row
    return out


def check_against_truth(rows: list[dict], expected: dict[tuple, dict]):
    got = {tuple(r[k] for k in KEYS): r for r in rows}
    assert set(got) == set(expected), f"groups: rollup {sorted(got, key=str)} vs truth {sorted(expected, key=str)}"
    for key, want in expected.items():
        row = got[key]
        assert row["counter_regressions"] == 0, key
        for name, value in want.items():
            if name.startswith("samples_"):
                continue
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, rel=1e-12), (key, name, row[name], value)
            else:
                assert row[name] == value, (key, name, row[name], value)
        for t in TRANSPORTS:
            samples = want[f"samples_{t}"]
            for pct in (50, 95, 99):
                reported = row[f"p{pct}_{t}_ms"]
                if not samples:
                    assert reported is None, (key, t, pct)
                    continue
                exact = nearest_rank(samples, pct)
                index = latency_index(exact)
                # the bound of the bucket the true percentile fell in: at most one bucket above it
                assert reported == (math.inf if index == 65 else pytest.approx(BOUNDS[index], rel=1e-12)), (key, t, pct, reported, exact)
                assert exact <= reported < 1.25 * exact or index == 65, (key, t, pct, reported, exact)


# --------------------------------------------------------------------------------------------
# The schema.
# --------------------------------------------------------------------------------------------


def test_the_contract_example_and_every_simulated_report_match_the_schema():
    example = json.loads(contract_example("migration-report"))
    assert problems(example) == [], problems(example)
    assert len(contract_example("migration-report").encode()) <= 4096
    for r in simulate().reports:
        assert problems(r) == [], (r["deviceId"], r["reportSeq"], problems(r))


def test_reports_the_sdk_never_sends_are_refused_by_the_schema():
    good = json.loads(contract_example("migration-report"))

    def changed(path: str, value):
        doc = json.loads(json.dumps(good))
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return doc

    bad = [
        ("report", 2), ("reportSeq", 0), ("epoch", "01936f1e-0000-4000-8000-000000000001"), ("cutAtMs", 1.5),
        ("trigger", "timer"), ("intervalSecs", 60), ("deviceId", "a/b"), ("sdk", "other/1.0"), ("platform", "Android"),
        ("osVersion", "14 beta"), ("decision.route", "both,mqtt"), ("decision.reason", "rollout"),
        ("decision.bucket", 10000), ("decision.extra", 1), ("counters.accepted", -1), ("counters.mqtt.acked", "5"),
        ("counters.rejected.invalid_latitude", -2), ("counters.pubsub.extra", 0), ("gauges.mqttBreakerOpen", 1),
        ("latency.mqtt", [0] * 65), ("latency.pubsub", [0] * 67), ("latency.mqtt", [0] * 65 + [-1]),
        ("buckets", [[1763790000000, 1, 1, 1, 1]]), ("buckets", [[1763790000001, 1, 1, 1, 1, 1]]),
        ("buckets", [[1763790000000, 1, 1, 1, 1, 1, 1]]), ("unknownField", True),
        ("counters", KeyError), ("latency", KeyError), ("decision.cfg", KeyError), ("gauges.pubsubDepth", KeyError),
        ("gauges.mqttOldestSeq", -1), ("gauges.pubsubOldestSeq", 1.5), ("gauges.pubsubOldestSeq", "7"),
    ]
    for path, value in bad:
        assert problems(changed(path, value)), f"the schema accepts {path} = {value!r}"
    # The reason maps take any reason the SDK adds later.
    assert problems(changed("counters.dropped", {"a_new_reason": 3})) == []
    assert problems(changed("counters.configFetches", {"failed": 2, "later_result": 1})) == []
    assert problems(changed("companyId", KeyError)) == []
    # Reports of SDK versions before the oldest-seq gauges stay valid.
    older = changed("gauges.mqttOldestSeq", KeyError)
    del older["gauges"]["pubsubOldestSeq"]
    assert problems(older) == []


# --------------------------------------------------------------------------------------------
# The rollup against the simulator.
# --------------------------------------------------------------------------------------------


def load_fleet(tmp_path: Path, fleet: Fleet) -> rollup.Chdb:
    """The fleet in a chDB session, MQTT copies and Pub/Sub copies in two inserts (two parts
    that no merge has collapsed yet)."""
    backend = rollup.Chdb()
    rollup.create_tables(backend)
    for t in TRANSPORTS:
        path = write_jsonl(tmp_path / f"{t}.jsonl", envelopes(c for c in fleet.delivered if c[1] == t))
        rollup.load(backend, rollup.read_reports(path))
    return backend


def test_the_simulated_fleet_is_what_the_rollup_must_cope_with():
    fleet = simulate()
    keys = [(r["deviceId"], r["epoch"], r["reportSeq"]) for r, _, _ in fleet.delivered]
    assert len(keys) > len(set(keys)), "copies of one report"
    assert {t for _, t, _ in fleet.delivered} == set(TRANSPORTS)
    assert len({r["epoch"] for r in fleet.reports if r["deviceId"] == "dev-2"}) == 2, "a wiped device starts a new epoch"
    assert {r["decision"]["cfg"] for r in fleet.reports} == {41, 42}
    assert {r["trigger"] for r in fleet.reports} >= {"interval", "config", "shutdown"}
    assert len(fleet.lost) == 1
    assert sum(iv.counts["fallbacks"] for iv in fleet.intervals) > 0
    samples = [ms for iv in fleet.intervals for t in TRANSPORTS for ms in iv.samples[t]]
    assert max(samples) > 1000 and min(samples) < 20, "latencies across many buckets"


def test_every_figure_per_hour_and_in_total_matches_the_ground_truth(tmp_path):
    fleet = simulate()
    backend = load_fleet(tmp_path, fleet)
    stored = json.loads(backend.execute("SELECT count() AS n, uniqExact(device_id, epoch, report_seq) AS u FROM migration_reports"))
    assert stored["n"] > stored["u"], f"duplicates must still be in the table to prove the query dedupes: {stored}"

    for by in ("hour", "total"):
        check_against_truth(rollup.run_rollup(backend, by), truth(fleet, by))
    [total] = rollup.run_rollup(backend, "total")
    assert total["devices"] == 8 and total["silent_devices"] == 1, total  # dev-5; dev-6 is exactly at 2 intervals
    assert total["missing_reports"] == 1 and total["fallbacks"] > 0
    hours = rollup.run_rollup(backend, "hour")
    assert {r["cfg"] for r in hours} == {41, 42} and {r["route"] for r in hours} == {"both", "mqtt", "pubsub"}
    for name in ("accepted", "delivered_mqtt", "delivered_pubsub", "failed_pubsub", "retries_mqtt", "fallbacks", "backlog_pubsub"):
        assert sum(r[name] for r in hours) == total[name], name


def test_now_and_since_move_the_window(tmp_path):
    fleet = simulate()
    backend = load_fleet(tmp_path, fleet)
    now = T0 + 14 * INTERVAL_S * 1000
    since = T0 + 10 * INTERVAL_S * 1000
    for by in ("hour", "total"):
        check_against_truth(rollup.run_rollup(backend, by, now_ms=now, since_ms=since), truth(fleet, by, now_ms=now, since_ms=since))
    [late] = rollup.run_rollup(backend, "total", now_ms=T0 + 40 * INTERVAL_S * 1000)
    assert late["silent_devices"] == 8


def test_one_file_through_rollup_rows_and_the_cli_json(tmp_path):
    fleet = simulate(seed=11, intervals=8)
    path = write_jsonl(tmp_path / "reports.jsonl", envelopes(fleet.delivered))
    check_against_truth(rollup_rows(path, by="total"), truth(fleet, "total"))
    check_against_truth(rollup_rows(path, by="hour"), truth(fleet, "hour"))
    run = subprocess.run([sys.executable, str(CLI), str(path), "--format", "json", "--by", "hour"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    printed = [json.loads(line) for line in run.stdout.splitlines()]
    expected = rollup_rows(path, by="hour") + rollup_rows(path, by="total")
    assert printed == [{k: "inf" if v == math.inf else v for k, v in row.items()} for row in expected]


def test_the_contract_example_rolls_up_to_its_hand_computed_figures(tmp_path):
    example = contract_example("migration-report")
    path = tmp_path / "one.jsonl"
    # the same report as a bare line, as an envelope with a payload string, and as one with an object
    path.write_text("\n".join([
        example,
        json.dumps({"transport": "pubsub", "receivedAtMs": 1763790901000, "payload": example}),
        json.dumps({"transport": "mqtt", "receivedAtMs": 1763790902000, "report": json.loads(example)}),
    ]) + "\n", encoding="utf-8")
    [row] = rollup_rows(path)
    assert row["devices"] == 1 and row["reports"] == 1 and row["missing_reports"] == 6  # reportSeq 7: 1-6 not here
    assert (row["accepted"], row["delivered_mqtt"], row["delivered_pubsub"], row["fallbacks"]) == (1200, 1150, 1140, 0)
    assert row["success_mqtt"] == pytest.approx(1150 / 1153) and row["success_pubsub"] == pytest.approx(1140 / 1180)
    assert row["retries_per_1k_pubsub"] == pytest.approx(6000 / 1140) and row["fallback_rate"] == 0
    # mqtt: 1100 at b(20), 40 at b(21), 10 at b(22); ranks 575, 1093, 1139
    assert (row["p50_mqtt_ms"], row["p95_mqtt_ms"], row["p99_mqtt_ms"]) == pytest.approx((BOUNDS[20], BOUNDS[20], BOUNDS[21]))
    # pubsub: 1000 at b(26), 100 at b(27), 40 at b(28); ranks 570, 1083, 1129
    assert (row["p50_pubsub_ms"], row["p95_pubsub_ms"], row["p99_pubsub_ms"]) == pytest.approx((BOUNDS[26], BOUNDS[27], BOUNDS[28]))
    assert (row["backlog_mqtt"], row["backlog_pubsub"], row["breaker_open_mqtt"], row["breaker_open_pubsub"]) == (50, 50, 0, 1)


def report(seq: int, cut_ms: int, acked: int, mqtt_histogram: list[int], epoch="01936f1e-0000-7000-8000-000000000001") -> dict:
    """A report of device d-1 (contract example shape) with the given MQTT figures."""
    doc = json.loads(contract_example("migration-report"))
    doc |= {"reportSeq": seq, "cutAtMs": cut_ms, "epoch": epoch}
    doc["counters"]["mqtt"]["acked"] = acked
    doc["latency"]["mqtt"] = mqtt_histogram
    return doc


def test_overflow_percentiles_are_infinite_and_a_counter_that_goes_back_counts_nothing(tmp_path):
    slow = [0] * 66
    slow[10], slow[65] = 98, 2  # 2 % above b(64): p99 is the overflow
    path = write_jsonl(tmp_path / "r.jsonl", [report(1, T0, 100, slow)])
    [row] = rollup_rows(path)
    assert row["p50_mqtt_ms"] == pytest.approx(BOUNDS[10]) and row["p95_mqtt_ms"] == pytest.approx(BOUNDS[10])
    assert row["p99_mqtt_ms"] == math.inf
    # acked 100 -> 90 (the SDK must never send that): 0 for that interval, and counted
    later = slow[:]
    later[10] = 90
    path = write_jsonl(tmp_path / "r2.jsonl", [report(1, T0, 100, slow), report(2, T0 + 900_000, 90, later)])
    [row] = rollup_rows(path)
    assert row["delivered_mqtt"] == 100 and row["counter_regressions"] == 1
    assert row["p99_mqtt_ms"] == math.inf  # the histogram delta of report 2 is all zeros
    table = subprocess.run([sys.executable, str(CLI), str(path), "--by", "total"], capture_output=True, text=True, timeout=120, check=False)
    assert table.returncode == 0, table.stderr
    assert f">{BOUNDS[64] / 1000:.1f}s" in table.stdout


# --------------------------------------------------------------------------------------------
# The command line.
# --------------------------------------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_table(tmp_path):
    fleet = simulate(seed=3, intervals=8)
    path = write_jsonl(tmp_path / "reports.jsonl", envelopes(fleet.delivered))
    run = run_cli(path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.search(r"-+ devices -+", lines[0]) and re.search(r"-+ mqtt -+", lines[0]) and re.search(r"-+ pubsub -+", lines[0])
    header = lines[1].split()
    for name in ["hour", "cfg", "route", "sdk", "platform", "reporting", "silent", "accepted", "delivered", "success",
                 "retries/1k", "p50", "p95", "p99", "backlog", "fallback", "reports", "missing"]:
        assert name in header, name
    rows = lines[2:]
    hours = rollup_rows(path, by="hour")
    [total] = rollup_rows(path, by="total")
    assert len(rows) == len(hours) + 1
    assert all(len(line) == len(lines[1]) for line in rows), "fixed width"
    # the last line is the fleet total: "all" in every key column, then its figures
    cells = rows[-1].split()
    assert cells[:5] == ["all"] * 5
    assert cells[5:8] == [f"{total['devices']:,}", f"{total['silent_devices']:,}", f"{total['accepted']:,}"]
    assert cells[8:10] == [f"{total['delivered_mqtt']:,}", f"{100 * total['success_mqtt']:.2f}%"]
    first = rows[0].split()  # the hour cell holds a space: date, time, cfg, route, ...
    assert first[:2] == hours[0]["hour"].split() and first[2] == str(hours[0]["cfg"])


def test_the_cli_names_the_line_that_is_not_a_report(tmp_path):
    good = contract_example("migration-report")
    doc = json.loads(good)
    short = json.loads(good)
    short["latency"]["pubsub"] = [0] * 65
    for line, message in [
        ('{"report":1,"reportSeq"', "line 3: not JSON"),
        ("[1, 2]", "line 3: not a JSON object"),
        (json.dumps(short), "line 3: latency.pubsub must be an array of 66 integers >= 0"),
        (json.dumps({k: v for k, v in doc.items() if k != "epoch"}), "line 3: epoch must be a non-empty string (missing)"),
        (json.dumps({"transport": "kafka", "receivedAtMs": 1, "report": doc}), "line 3: envelope: transport must be mqtt or pubsub"),
        (json.dumps({"transport": "mqtt", "receivedAtMs": "soon", "report": doc}), "line 3: envelope: receivedAtMs must be"),
        (json.dumps({"transport": "mqtt", "receivedAtMs": 1, "payload": "{nope"}), "line 3: envelope: payload is not JSON"),
        ('{"report":1,"x":NaN}', "line 3: not JSON"),
    ]:
        path = tmp_path / "bad.jsonl"
        path.write_text(f"{good}\n\n{line}\n{good}\n", encoding="utf-8")
        run = run_cli(path)
        assert run.returncode == 2, (line, run.returncode, run.stdout, run.stderr)
        assert message in run.stderr, (line, run.stderr)
        assert "Traceback" not in run.stderr and run.stdout == "", run.stderr
    (tmp_path / "latin1.jsonl").write_bytes(good.encode() + b"\n\xff\n")
    run = run_cli(tmp_path / "latin1.jsonl")
    assert run.returncode == 2 and "line 2:" in run.stderr and "Traceback" not in run.stderr, run.stderr
    run = run_cli(tmp_path / "does-not-exist.jsonl")
    assert run.returncode == 2 and "does-not-exist.jsonl" in run.stderr and "Traceback" not in run.stderr, run.stderr
    run = run_cli()
    assert run.returncode == 2 and "REPORTS is required" in run.stderr


def test_the_cluster_ddl_parses_and_keeps_the_single_server_tables():
    def objects(sql: str) -> dict[str, str]:
        """name -> statement, formatted by ClickHouse's own parser (a syntax error fails here)."""
        out = {}
        for statement in rollup.statements(sql):
            escaped = statement.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")  # a parameter is TSV-escaped
            formatted = json.loads(backend.execute("SELECT formatQuery({q:String}) AS f", {"q": escaped}))["f"]
            out[re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", formatted).group(1)] = formatted
        return out

    backend = rollup.Chdb()
    try:
        single = objects((rollup.SQL / "schema.sql").read_text(encoding="utf-8"))
        cluster_md = (rollup.SQL / "cluster.md").read_text(encoding="utf-8")
        cluster = objects("\n".join(re.findall(r"```sql\n(.*?)```", cluster_md, re.S)))
    finally:
        backend.close()
    assert set(cluster) == set(single) | {f"{name}_local" for name in single if not name.endswith("_mv")}
    for name, statement in single.items():
        local = cluster[name if name.endswith("_mv") else f"{name}_local"]
        assert "ON CLUSTER `{cluster}`" in local, name
        # the columns (tables) or the whole SELECT (views) are those of schema.sql
        same = local.replace(" ON CLUSTER `{cluster}`", "").replace("_local", "")
        assert same.split("ENGINE")[0] == statement.split("ENGINE")[0], f"cluster.md differs from schema.sql for {name}"
        if not name.endswith("_mv"):
            assert "ENGINE = Distributed('{cluster}'" in cluster[name], name
