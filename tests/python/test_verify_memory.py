"""`dualpub verify` holds bounded memory whatever the capture's shape (docs/VERIFY.md, "Memory:
settling past the watermark"): a capture of 1,000,000 locations on one pipeline only (every
device on route mqtt: a rollout at 0 %, or MQTT alone at the end of the migration), and one whose
delays are spread over 24 hours, each read with `--grace-secs 10` by a process whose peak
resident memory stays under 40 MB (before the pipeline-end watermark and the log-linear delay
buckets: 305 MB and 70 MB).

Run by ./scripts/test with DUALPUB_BIN pointing at the built `dualpub` CLI.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DUALPUB_BIN", str(ROOT / "target" / "debug" / "dualpub"))
LOCATIONS = 1_000_000
DEVICES = 1_000
PEAK_BYTES = 40_000_000


def write_capture(path: Path, shape: str) -> None:
    """LOCATIONS locations of DEVICES devices, 100 a second; `mqtt-only`: route mqtt, MQTT only;
    `spread`: route both, on both pipelines, each fix taken up to 24 h before it arrived."""
    start = 1_796_000_000_000
    rnd = random.Random(7)
    with open(path, "w") as f:
        f.write(json.dumps({"window": {"fromMs": start - 1_000, "toMs": start + LOCATIONS * 10}}) + "\n")
        for i in range(LOCATIONS):
            device, seq, at = i % DEVICES, i // DEVICES + 1, start + i * 10
            taken = at - (rnd.randrange(86_400_000) if shape == "spread" else 1_000)
            accepted = at - 500
            event_id = "%08x-%04x-7cc1-9f0a-%012x" % (accepted >> 16, accepted & 0xFFFF, i)
            route = "mqtt" if shape == "mqtt-only" else "both"
            payload = ('{"eventId":"%s","deviceId":"device-%05d","latitude":52.52,"longitude":13.405,"timestamp":%d,'
                       '"schemaVersion":2,"seq":%d,"route":"%s","cfg":1}') % (event_id, device, taken, seq, route)
            f.write(json.dumps({"pipeline": "mqtt", "receivedAtMs": at, "payload": payload}) + "\n")
            if route == "both":
                f.write(json.dumps({"pipeline": "pubsub", "receivedAtMs": at + 5, "payload": payload}) + "\n")


def peak_of(cmd: list[str]) -> tuple[int, dict]:
    """Runs cmd in a process of its own (through a Python that waits for it) and returns its peak
    resident memory in bytes and its JSON output."""
    probe = ("import json, resource, subprocess, sys\n"
             "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps({'rc': done.returncode, 'out': done.stdout, 'err': done.stderr[-2000:],\n"
             "                  'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    done = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout)
    assert result["rc"] == 0, result["err"]
    return result["peak_kib"] * 1024, json.loads(result["out"])


@pytest.mark.parametrize("shape", ["mqtt-only", "spread"])
def test_a_million_locations_are_verified_in_bounded_memory(shape, tmp_path):
    capture = tmp_path / "capture.jsonl"
    write_capture(capture, shape)
    peak, found = peak_of([BIN, "verify", "--capture", str(capture), "--grace-secs", "10", "--json"])
    assert found["missing"] == [] and sum(s["locations"] for s in found["steps"]) == LOCATIONS
    assert peak <= PEAK_BYTES, f"peak resident memory {peak / 1e6:.1f} MB"
    if shape == "spread":
        # Quantiles from log-linear buckets stay within 1 % of the exact ones (rank rule).
        rnd = random.Random(7)
        delays = sorted(rnd.randrange(86_400_000) for _ in range(LOCATIONS))
        exact_p50 = delays[LOCATIONS // 2 - 1]
        assert abs(found["mqtt"]["delayMs"]["p50"] - exact_p50) <= exact_p50 / 100
