"""Checks tests/vectors/bucketing.json: up to date with its generator, and sane.

Run with `python3 -m pytest tests/python/test_vectors.py` (stdlib only apart from pytest).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
GENERATOR = VECTORS_DIR / "generate_bucketing.py"
VECTORS = VECTORS_DIR / "bucketing.json"
PERCENTAGE_KEYS = ["0", "0.01", "1", "25", "50", "99.99", "100"]


def load() -> dict:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def by_key(doc: dict) -> dict[tuple[str, str, str], dict]:
    return {(v["algorithm"], v["salt"], v["deviceId"]): v for v in doc["vectors"]}


def test_committed_json_matches_generator():
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_shape_and_ranges():
    doc = load()
    assert [json.dumps(p) for p in doc["percentages"]] == PERCENTAGE_KEYS
    vectors = doc["vectors"]
    assert len(vectors) >= 240
    assert {v["algorithm"] for v in vectors} == {"v1", "crc32"}
    assert {"pubsub-migration", "other-salt", "pubsub-migration-2"} <= {v["salt"] for v in vectors}
    assert len(by_key(doc)) == len(vectors), "duplicate (algorithm, salt, deviceId)"
    for v in vectors:
        assert list(v["pubsub"]) == PERCENTAGE_KEYS, v
        if v["algorithm"] == "v1":
            assert 0 <= v["bucket"] < 10_000, v
        else:
            assert 0 <= v["bucket"] < 100, v


def test_known_values():
    k = by_key(load())
    assert k[("v1", "pubsub-migration", "d-1")]["bucket"] == 648
    assert k[("v1", "pubsub-migration", "demo-device-0")]["bucket"] == 8856
    assert k[("crc32", "pubsub-migration", "d-1")]["bucket"] == 43


def test_upper_and_lower_uuids_share_the_v1_bucket():
    k = by_key(load())
    pairs = 0
    for (alg, salt, device_id), v in k.items():
        if alg != "v1" or device_id.count("-") != 4 or device_id != device_id.lower():
            continue
        upper = k.get(("v1", salt, device_id.upper()))
        if upper is not None and upper["deviceId"] != device_id:
            assert upper["bucket"] == v["bucket"], (device_id, salt)
            assert upper["pubsub"] == v["pubsub"], (device_id, salt)
            pairs += 1
    assert pairs >= 10


def test_padding_and_case_share_the_v1_bucket_but_not_crc32():
    k = by_key(load())
    plain = k[("v1", "pubsub-migration", "d-1")]["bucket"]
    for variant in ["D-1", " d-1", "d-1\t", "\t d-1 \t", "\n d-1\r\n", "\x0cd-1\x0c"]:
        assert k[("v1", "pubsub-migration", variant)]["bucket"] == plain, repr(variant)
    # Vertical tab is not ASCII whitespace in Rust's sense: not trimmed.
    assert k[("v1", "pubsub-migration", "\x0bd-1")]["bucket"] != plain
    # crc32 hashes the raw bytes.
    assert k[("crc32", "pubsub-migration", "D-1")]["bucket"] != k[("crc32", "pubsub-migration", "d-1")]["bucket"]


def test_crc32_ignores_the_salt():
    vectors = [v for v in load()["vectors"] if v["algorithm"] == "crc32"]
    buckets: dict[str, set[int]] = {}
    for v in vectors:
        buckets.setdefault(v["deviceId"], set()).add(v["bucket"])
    assert any(len([x for x in vectors if x["deviceId"] == d]) > 1 for d in buckets)
    assert all(len(b) == 1 for b in buckets.values())


def test_boundaries_are_covered():
    doc = load()
    v1 = {v["bucket"] for v in doc["vectors"] if v["algorithm"] == "v1" and v["salt"] == "pubsub-migration"}
    assert {0, 1, 99, 100, 2499, 2500, 4999, 5000, 9998, 9999} <= v1
    crc = {v["bucket"] for v in doc["vectors"] if v["algorithm"] == "crc32"}
    assert {0, 1, 99} <= crc


def test_unicode_and_long_ids_present():
    ids = {v["deviceId"] for v in load()["vectors"]}
    assert "Gerät-7" in ids
    assert any(len(i.encode("utf-8")) == 128 for i in ids)


if __name__ == "__main__":
    # Without pytest: run every test function directly.
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print(f"ok {name}")
