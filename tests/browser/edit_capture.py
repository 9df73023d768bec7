#!/usr/bin/env python3
"""Edits a demo's capture and reports the way field losses look, for the HTML report's browser
check (scripts/test): one Pub/Sub copy with a flipped byte in its latitude, the last location of
one device gone from every pipeline, and every report of another device lost.

    edit_capture.py CAPTURE.jsonl REPORTS.jsonl OUT_DIR      writes OUT_DIR/capture.jsonl and reports.jsonl
"""

import json
import sys
from pathlib import Path


def main(capture: str, reports: str, out: str) -> None:
    lines = [json.loads(line) for line in Path(capture).read_text().splitlines()]
    located = [(i, json.loads(line["payload"])) for i, line in enumerate(lines) if "payload" in line]
    devices = sorted({p["deviceId"] for _, p in located})
    # A flipped byte: the first Pub/Sub copy's latitude gains a digit.
    first_pubsub = next(i for i, _ in located if lines[i]["pipeline"] == "pubsub")
    lines[first_pubsub] = {**lines[first_pubsub], "payload": lines[first_pubsub]["payload"].replace('"latitude":', '"latitude":1', 1)}
    # The last location of a device, gone everywhere.
    tail_device = devices[0]
    last = max(p["seq"] for _, p in located if p["deviceId"] == tail_device)
    gone = {i for i, p in located if p["deviceId"] == tail_device and p["seq"] == last}
    # Every report of another device, lost.
    unreported = devices[1]
    kept_reports = [r for r in (json.loads(line) for line in Path(reports).read_text().splitlines())
                    if r.get("report", r)["deviceId"] != unreported]
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "capture.jsonl").write_text("".join(json.dumps(line) + "\n" for i, line in enumerate(lines) if i not in gone))
    Path(out, "reports.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept_reports))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
