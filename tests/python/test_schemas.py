"""The JSON Schemas under schemas/ against what the SDK really emits and what docs/CONTRACT.md shows.

- Real output: `dualpub demo --capture FILE` records every message the independent subscribers
  received (MQTT and Pub/Sub); every payload must pass the location schema and every Pub/Sub
  attribute map the attributes schema, with the attributes agreeing with their payload.
- The examples in docs/CONTRACT.md are read out of the markdown (so the document and this test
  cannot drift) and validated; the full location example must be the byte-for-byte expectation
  of the SDK's own unit test in src/wire.rs.
- Migration config documents: the CONTRACT.md example, every config document written in the
  repository's tests and READMEs, and documents the SDK refuses (which the schema must refuse too).

Run by ./scripts/test with DUALPUB_BIN pointing at the built `dualpub` CLI.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DUALPUB_BIN", str(ROOT / "target" / "debug" / "dualpub"))
CONTRACT = ROOT / "docs" / "CONTRACT.md"
SCHEMAS = ROOT / "schemas"

# The order in which the SDK writes the fields of a version 1 message (docs/CONTRACT.md#location-fields).
WIRE_ORDER = [
    "eventId", "deviceId", "companyId", "latitude", "longitude", "accuracy", "speed", "bearing",
    "altitude", "timestamp", "battery", "schemaVersion", "seq", "route", "cfg",
]
ATTRIBUTES = {"deviceId", "eventId", "timestamp", "priority", "schemaVersion", "sdk", "companyId"}
# What every message carries when the config names no list (src/config/pubsub_wire.rs).
DEFAULT_ATTRIBUTES = {"deviceId", "eventId", "companyId"}
CONFIG_KEYS = {
    "version", "mqttEnabled", "pubsubEnabled", "pubsubPercentage", "fallbackToMqtt", "debugMode",
    "emergencyMode", "rollout", "deviceOverrides", "companyOverrides", "pubsub",
}


def strict_loads(text: str):
    """json.loads as the SDK parses: no NaN/Infinity, no number too large for a double, no key
    repeated within an object. Keeps key order."""

    def constant(name):
        raise ValueError(f"{name} is not JSON")

    def number(s):
        f = float(s)
        if not math.isfinite(f):
            raise ValueError(f"{s} does not fit a double")
        return f

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    return json.loads(text, parse_constant=constant, parse_float=number, object_pairs_hook=pairs)


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


LOCATION = validator("location.v2.schema.json")
LOCATION_V1 = validator("location.v1.schema.json")
ATTRS = validator("pubsub-attributes.schema.json")
CONFIG = validator("migration-config.schema.json")


def problems(v: Draft202012Validator, doc) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in v.iter_errors(doc))


def contract_example(name: str) -> str:
    """The fenced block that follows `<!-- contract-example: NAME -->` in docs/CONTRACT.md."""
    text = CONTRACT.read_text(encoding="utf-8")
    found = re.findall(r"<!-- contract-example: " + re.escape(name) + r" -->\n```json\n(.*?)\n```", text, re.S)
    assert len(found) == 1, f"docs/CONTRACT.md: expected one example {name!r}, found {len(found)}"
    return found[0]


def assert_wire_order(doc: dict, where: str):
    keys = list(doc)
    unknown = [k for k in keys if k not in WIRE_ORDER]
    assert not unknown, f"{where}: fields not documented in docs/CONTRACT.md#location-fields: {unknown}"
    assert keys == [k for k in WIRE_ORDER if k in doc], f"{where}: field order {keys}"


# --------------------------------------------------------------------------------------------
# Real SDK output.
# --------------------------------------------------------------------------------------------


def test_every_message_the_sdk_sends_matches_the_schemas(tmp_path):
    capture = tmp_path / "capture.jsonl"
    run = subprocess.run(
        [BIN, "demo", "--devices", "3", "--locations-per-device", "4", "--rollout", "100", "--capture", str(capture)],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"dualpub demo failed ({run.returncode}):\n{run.stderr[-4000:]}"
    lines = [json.loads(line) for line in capture.read_text(encoding="utf-8").splitlines() if line.strip()]
    # The window line (when the subscribers read) and gap lines (their own disconnections)
    # carry no message.
    records = [r for r in lines if "gap" not in r and "window" not in r]
    [window] = [r["window"] for r in lines if "window" in r]
    assert 0 < window["fromMs"] <= min(r["receivedAtMs"] for r in records) <= max(r["receivedAtMs"] for r in records) <= window["toMs"]
    assert all(isinstance(r.get("receivedAtMs"), int) and r["receivedAtMs"] > 0 for r in records), "every message has its arrival time"
    assert records, "the capture file is empty"

    # eventId -> payload bytes, per pipeline; a redelivery must carry the same bytes.
    seen: dict[str, dict[str, str]] = {"mqtt": {}, "pubsub": {}}
    for i, r in enumerate(records):
        pipeline = r.get("pipeline")
        assert pipeline in seen, f"record {i}: unknown pipeline {pipeline!r}"
        payload = strict_loads(r["payload"])
        where = f"record {i} ({pipeline})"
        assert problems(LOCATION, payload) == [], f"{where}: {problems(LOCATION, payload)}\n{r['payload']}"
        assert payload["schemaVersion"] == 2, where
        assert problems(LOCATION_V1, payload) == [], f"{where}: a version 1 consumer refuses it"
        assert_wire_order(payload, where)
        if pipeline == "mqtt":
            assert r["topic"] == f"device/telemetry/{payload['deviceId']}", where
        else:
            attrs = r["attributes"]
            assert problems(ATTRS, attrs) == [], f"{where}: {problems(ATTRS, attrs)}\n{attrs}"
            # The demo's config names no attribute list: the default.
            assert set(attrs) == DEFAULT_ATTRIBUTES & ({"deviceId", "eventId"} | ({"companyId"} if "companyId" in payload else set())), where
            assert attrs["eventId"] == payload["eventId"], where
            assert attrs["deviceId"] == payload["deviceId"], where
            assert attrs.get("companyId") == payload.get("companyId"), where
            assert r.get("orderingKey") == payload["deviceId"], where
        previous = seen[pipeline].setdefault(payload["eventId"], r["payload"])
        assert previous == r["payload"], f"{where}: a redelivery of {payload['eventId']} changed its bytes"

    assert seen["mqtt"] and seen["pubsub"], f"both pipelines must appear: {[(k, len(v)) for k, v in seen.items()]}"
    # seq per device is 1..N without gaps on MQTT (a clean run at 100 %: every location reaches it).
    seqs: dict[str, set[int]] = {}
    for text in seen["mqtt"].values():
        doc = json.loads(text)
        seqs.setdefault(doc["deviceId"], set()).add(doc["seq"])
    assert seqs and all(s == set(range(1, 5)) for s in seqs.values()), seqs
    # At 100 % every location goes to both transports, with the same bytes.
    assert len(seen["mqtt"]) == 12 and set(seen["mqtt"]) == set(seen["pubsub"]), \
        (len(seen["mqtt"]), len(seen["pubsub"]))
    for event_id, payload in seen["mqtt"].items():
        assert seen["pubsub"][event_id] == payload, f"{event_id}: MQTT and Pub/Sub bytes differ"
    devices = sorted(strict_loads(p)["deviceId"] for p in seen["mqtt"].values())
    assert devices == sorted([f"demo-device-{d}" for d in range(3)] * 4), devices


# --------------------------------------------------------------------------------------------
# The examples in docs/CONTRACT.md.
# --------------------------------------------------------------------------------------------


def test_the_contract_location_examples_match_the_schema_and_the_sdk_test():
    full = contract_example("location-v2-full")
    minimal = contract_example("location-v2-minimal")
    for name, text in [("full", full), ("minimal", minimal)]:
        doc = strict_loads(text)
        assert problems(LOCATION, doc) == [], (name, problems(LOCATION, doc))
        assert_wire_order(doc, f"CONTRACT.md {name} example")
        assert "\n" not in text and ": " not in text and ", " not in text, f"{name}: the SDK writes no whitespace"
    assert set(strict_loads(full)) == set(WIRE_ORDER), "the full example sets every field"
    # The SDK's own byte-for-byte expectation (src/wire.rs) is the full example.
    wire_rs = (ROOT / "src" / "wire.rs").read_text(encoding="utf-8")
    expected = re.findall(r'r#"(\{"eventId".*?)"#', wire_rs)
    assert full in expected, f"docs/CONTRACT.md's full example is not among src/wire.rs's expected payloads: {expected}"
    for text in expected:
        assert_wire_order(strict_loads(text), "src/wire.rs")


def test_the_contract_pubsub_request_example():
    body = strict_loads(contract_example("pubsub-publish-request"))
    [message] = body["messages"]
    assert base64.b64decode(message["data"], validate=True).decode("utf-8") == contract_example("location-v2-full")
    payload = strict_loads(contract_example("location-v2-full"))
    attrs = message["attributes"]
    assert problems(ATTRS, attrs) == [], problems(ATTRS, attrs)
    assert set(attrs) == DEFAULT_ATTRIBUTES
    assert attrs["eventId"] == payload["eventId"] and attrs["deviceId"] == payload["deviceId"]
    assert attrs["companyId"] == payload["companyId"]
    assert message["orderingKey"] == payload["deviceId"]
    # The SDK writes attributes in key order (a BTreeMap).
    assert list(attrs) == sorted(attrs)


def test_attribute_maps_the_sdk_never_sends_are_refused():
    good = strict_loads(contract_example("pubsub-publish-request"))["messages"][0]["attributes"]
    for change in [
        {"timestamp": 1763790000000}, {"timestamp": "0"}, {"timestamp": "-5"}, {"priority": "high"},
        {"schemaVersion": "0"}, {"sdk": "other/1.0.0"}, {"eventId": "not-a-uuid"},
        {"eventId": "01936F1E-7C3A-7CC1-9F0A-3B2F6C1D2E4F"}, {"deviceId": "a/b"}, {"companyId": ""},
    ]:
        assert problems(ATTRS, {**good, **change}), f"accepted {change}"
    for missing in ["deviceId", "eventId"]:
        assert problems(ATTRS, {k: v for k, v in good.items() if k != missing}), f"accepted without {missing}"


def test_payloads_the_sdk_never_sends_are_refused():
    good = strict_loads(contract_example("location-v2-full"))
    for change in [
        {"latitude": 90.0001}, {"longitude": -180.5}, {"accuracy": -1.0}, {"speed": -0.1}, {"bearing": 360.0},
        {"battery": 1.5}, {"timestamp": 0}, {"timestamp": 1.5}, {"schemaVersion": 0}, {"latitude": None},
        {"deviceId": "a/b"}, {"deviceId": "a+b"}, {"deviceId": "a#"}, {"deviceId": "a\nb"}, {"deviceId": "x" * 129},
        {"eventId": "e"}, {"eventId": "01936f1e-7c3a-4cc1-9f0a-3b2f6c1d2e4f"}, {"route": "elsewhere"}, {"seq": -1},
    ]:
        assert problems(LOCATION, {**good, **change}), f"accepted {change}"
    for missing in ["eventId", "deviceId", "latitude", "longitude", "timestamp", "schemaVersion"]:
        assert problems(LOCATION, {k: v for k, v in good.items() if k != missing}), f"accepted without {missing}"
    for missing in ["seq", "route", "cfg"]:
        assert problems(LOCATION, {k: v for k, v in good.items() if k != missing}), f"version 2 accepted without {missing}"
    assert problems(LOCATION, {**good, "seq": 0}), "seq starts at 1"
    # A version 1 consumer's schema takes version 2 messages, and version 1 messages still.
    assert problems(LOCATION_V1, good) == []
    v1 = {k: v for k, v in good.items() if k not in ("seq", "route", "cfg")}
    assert problems(LOCATION_V1, {**v1, "schemaVersion": 1}) == []


# --------------------------------------------------------------------------------------------
# Migration config documents.
# --------------------------------------------------------------------------------------------

# Documents the SDK refuses whole (tests/hostile_configs.rs, tests/compression.rs, src/config tests); the schema
# must refuse each of them too.
SDK_REFUSES = [
    '{"pubsubPercentage": 101}', '{"pubsubPercentage": 250}', '{"version": 8, "pubsubPercentage": 250}',
    '{"version": 9, "pubsubPercentage": 250}', '{"version": 6, "pubsubPercentage": 101}',
    '{"pubsubPercentage": 100.01}', '{"pubsubPercentage": -1}', '{"pubsubPercentage": -0.5}',
    '{"pubsubPercentage": "50"}', '{"pubsubPercentage": [50]}', '{"pubsubPercentage": {}}',
    '{"version": -1}', '{"version": 1.5}', '{"version": "7"}', '{"version": 1e30}', '{"version": 18446744073709551616}',
    '{"mqttEnabled": "true"}', '{"mqttEnabled": "yes"}', '{"mqttEnabled": 1}', '{"pubsubEnabled": "null"}',
    '{"fallbackToMqtt": "no"}', '{"emergencyMode": 0}', '{"debugMode": []}',
    '{"rollout": []}', '{"rollout": "v1"}', '{"rollout": {"algorithm": "md5"}}', '{"rollout": {"algorithm": "V1"}}',
    '{"rollout": {"algorithm": 1}}', '{"rollout": {"salt": ""}}', '{"rollout": {"salt": 5}}',
    '{"rollout": {"salt": "' + "x" * 257 + '"}}',
    '{"deviceOverrides": []}', '{"deviceOverrides": "d-1"}', '{"companyOverrides": 7}',
    "[]", "[{}]", "null", "true", "42", '"config"',
    '{"pubsub": {"compression": "br"}}', '{"pubsub": {"compression": "GZIP"}}', '{"pubsub": {"attributes": ["deviceId"]}}',
    '{"pubsub": {"attributes": ["eventId", "deviceId", "colour"]}}', '{"pubsub": {"attributes": "deviceId,eventId"}}',
]

# Documents the SDK applies after skipping an invalid override or ignoring a forbidden key
# (tests/hostile_configs.rs, tests/config_fetch.rs): the schema refuses them on purpose
# (docs/CONTRACT.md#json-schemas).
SDK_DEFUSES = [
    '{"version": 5, "deviceOverrides": {"a/b": {"pubsubEnabled": true}, "ok": {"pubsubEnabled": true}}}',
    '{"version": 5, "deviceOverrides": {"x": {"pubsubEnabled": "yes"}}}',
    '{"version": 5, "deviceOverrides": {"x": {"pubsubPercentage": 500}}}',
    '{"version": 5, "deviceOverrides": {"x": []}}',
    '{"version": 5, "companyOverrides": {"": {"pubsubEnabled": true}}}',
    '{"version": 5, "companyOverrides": {"c#1": {"pubsubEnabled": true}}}',
    '{"version": 5, "brokerUrl": "mqtt://attacker.example:1883"}',
    '{"version": 5, "pubsubEndpoint": "https://attacker.example"}',
    '{"version": 5, "password": "x", "username": "y", "token": "z"}',
    '{"version": 5, "dataDir": "/sdcard/steal"}',
    '{"version": 5, "mqtt": {"brokerUrl": "mqtt://evil"}, "pubsub": {"endpoint": "http://evil"}}',
    '{"version": 5, "allowInsecure": true}',
    '{"version": 7, "pubsubEnabled": true, "pubsubPercentage": 0, "pubsubEndpoint": "https://evil.example"}',
    '{"version": 3, "pubsub": {"compression": "none", "attributes": ["eventId", "deviceId", "sdk"], "endpoint": "https://evil"}}',
]


def canonical(doc) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


def test_the_contract_config_example_is_valid():
    doc = strict_loads(contract_example("migration-config"))
    assert problems(CONFIG, doc) == [], problems(CONFIG, doc)
    assert set(doc) == CONFIG_KEYS, "the example sets every field"


def test_documents_the_sdk_refuses_are_refused_by_the_schema():
    for text in SDK_REFUSES:
        assert problems(CONFIG, strict_loads(text)), f"the schema accepts {text[:80]}, which the SDK refuses"
    # Not JSON, refused by the SDK's parser. A lenient parser (Python's json.loads) turns them into
    # floats: the schema refuses the infinities by range, but no JSON Schema keyword can refuse NaN
    # (docs/CONTRACT.md#json-schemas), so validate what a strict parser produced.
    for value in [float("inf"), float("-inf")]:
        assert problems(CONFIG, {"pubsubPercentage": value}), value
    for text in ['{"pubsubPercentage": NaN}', '{"pubsubPercentage": Infinity}', '{"pubsubPercentage": 1e999}',
                 '{"version": 1, "version": 2}']:
        with pytest.raises(ValueError):
            strict_loads(text)


def test_documents_the_sdk_defuses_are_refused_by_the_schema():
    for text in SDK_DEFUSES:
        assert problems(CONFIG, strict_loads(text)), f"the schema accepts {text}"


def config_documents_in_the_repository() -> list[tuple[str, str]]:
    """(where, text) of every JSON object written as a raw string in the repository's tests and
    READMEs that sets a migration config field."""
    patterns = {
        ".rs": [r'r#"(.*?)"#'],
        ".kt": [r'"""(.*?)"""'],
        ".swift": [r'#"(.*?)"#'],
        ".md": [r'r#"(.*?)"#', r"```json\n(.*?)\n```"],
    }
    files = [
        *ROOT.glob("tests/*.rs"), *ROOT.glob("tools/cli/tests/*.rs"), *ROOT.glob("bindings/kotlin/src/test/**/*.kt"),
        *ROOT.glob("ios/Tests/**/*.swift"), ROOT / "README.md", *ROOT.glob("docs/*.md"),
    ]
    out = []
    for f in sorted(files):
        text = f.read_text(encoding="utf-8")
        for pattern in patterns[f.suffix]:
            for m in re.finditer(pattern, text, re.S):
                try:
                    doc = strict_loads(m.group(1))
                except ValueError:
                    continue  # not a complete document (a template, or malformed on purpose)
                if isinstance(doc, dict) and CONFIG_KEYS & doc.keys():
                    line = text.count("\n", 0, m.start()) + 1
                    out.append((f"{f.relative_to(ROOT)}:{line}", m.group(1)))
    return out


def test_config_documents_in_the_repository_match_the_schema():
    refused_on_purpose = {canonical(strict_loads(t)) for t in SDK_REFUSES + SDK_DEFUSES}
    found = config_documents_in_the_repository()
    valid = 0
    for where, text in found:
        doc = strict_loads(text)
        errors = problems(CONFIG, doc)
        if errors:
            assert canonical(doc) in refused_on_purpose, (
                f"{where}: the schema refuses {text!r}: {errors}. If the SDK accepts this document, "
                "fix schemas/migration-config.schema.json; if it refuses or defuses it, list it in "
                "SDK_REFUSES or SDK_DEFUSES here.")
        else:
            valid += 1
    # The corpus is real: the tests apply or serve dozens of valid documents.
    assert valid >= 20, f"only {valid} valid config documents found in {len(found)}"
