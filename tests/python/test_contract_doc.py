"""docs/CONTRACT.md stays true and reachable.

- The bucketing worked examples are recomputed here (hashlib, zlib: independent of the SDK),
  checked against tests/vectors/bucketing.json and against the SDK itself (`dualpub bucket`).
- Every link to a CONTRACT.md section, from anywhere in the repository, names a heading that exists.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DUALPUB_BIN", str(ROOT / "target" / "debug" / "dualpub"))
CONTRACT = ROOT / "docs" / "CONTRACT.md"
VECTORS = ROOT / "tests" / "vectors" / "bucketing.json"

# --------------------------------------------------------------------------------------------
# Bucketing examples.
# --------------------------------------------------------------------------------------------

ASCII_WHITESPACE = " \t\n\x0c\r"  # Rust's char::is_ascii_whitespace (not U+000B)


def normalize(device_id: str) -> str:
    trimmed = device_id.strip(ASCII_WHITESPACE)
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in trimmed)


def threshold(percentage: float) -> int:
    x = percentage * 100
    t = math.floor(abs(x) + 0.5)
    return max(0, min(10_000, t if x >= 0 else -t))


def example_rows(algorithm: str) -> list[list[str]]:
    """The table after `<!-- bucketing-examples: ALGORITHM -->`, one list of cells per row."""
    text = CONTRACT.read_text(encoding="utf-8")
    m = re.search(r"<!-- bucketing-examples: " + algorithm + r" -->\n((?:\|.*\n)+)", text)
    assert m, f"docs/CONTRACT.md has no {algorithm} examples"
    lines = m.group(1).strip().splitlines()[2:]  # header and separator
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]


def code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def ids(cell: str) -> str:
    return json.loads(code(cell))  # ids are written as JSON strings


def vectors() -> dict:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    return {(v["algorithm"], v["salt"], v["deviceId"]): v for v in doc["vectors"]}


def in_out(on: bool) -> str:
    return "in" if on else "out"


def v1_examples() -> list[tuple[str, str, int, bool, bool]]:
    """(salt, device id, bucket, in at 25 %, in at 50 %) of every v1 row, each cell checked."""
    out = []
    rows = example_rows("v1")
    assert len(rows) >= 3
    for salt_cell, id_cell, norm_cell, prefix, as_u64, bucket, at25, at50 in rows:
        salt, device_id = ids(salt_cell), ids(id_cell)
        n = normalize(device_id)
        digest = hashlib.sha256((salt + ":" + n).encode("utf-8")).digest()
        value = int.from_bytes(digest[:8], "big")
        b = value % 10_000
        row = (salt, device_id)
        assert ids(norm_cell) == n, row
        assert code(prefix) == digest[:8].hex(), row
        assert int(as_u64) == value, row
        assert int(bucket) == b, row
        assert at25 == in_out(b < threshold(25)) and at50 == in_out(b < threshold(50)), row
        out.append((salt, device_id, b, b < threshold(25), b < threshold(50)))
    return out


def crc32_examples() -> list[tuple[str, int, bool, bool]]:
    out = []
    rows = example_rows("crc32")
    assert len(rows) >= 3
    for id_cell, bytes_cell, crc_cell, bucket, at25, at50 in rows:
        device_id = ids(id_cell)
        raw = device_id.encode("utf-8")
        crc = zlib.crc32(raw) & 0xFFFFFFFF
        b = crc % 100
        if bytes_cell.startswith("`"):
            assert code(bytes_cell) == raw.hex(), device_id
        assert crc_cell == f"`0x{crc:08x}` = {crc}", device_id
        assert int(bucket) == b, device_id
        assert at25 == in_out(b * 100 < threshold(25)) and at50 == in_out(b * 100 < threshold(50)), device_id
        out.append((device_id, b, b * 100 < threshold(25), b * 100 < threshold(50)))
    return out


def test_worked_examples_are_right_and_agree_with_the_vectors():
    k = vectors()
    for salt, device_id, b, on25, on50 in v1_examples():
        v = k[("v1", salt, device_id)]
        assert (v["bucket"], v["pubsub"]["25"], v["pubsub"]["50"]) == (b, on25, on50), (salt, device_id)
    for device_id, b, on25, on50 in crc32_examples():
        matching = [v for (alg, _, d), v in k.items() if alg == "crc32" and d == device_id]
        assert matching, device_id
        for v in matching:
            assert (v["bucket"], v["pubsub"]["25"], v["pubsub"]["50"]) == (b, on25, on50), device_id


def sdk_bucket(device_id: str, salt: str, algorithm: str, percentage: float) -> dict:
    out = subprocess.run(
        [BIN, "bucket", "--device-id", device_id, "--salt", salt, "--algorithm", algorithm,
         "--percentage", str(percentage)],
        capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_worked_examples_agree_with_the_sdk():
    for salt, device_id, b, on25, _ in v1_examples():
        assert sdk_bucket(device_id, salt, "v1", 25) == {"bucket": b, "pubsub": on25}, (salt, device_id)
    for device_id, b, _, on50 in crc32_examples():
        assert sdk_bucket(device_id, "ignored", "crc32", 50) == {"bucket": b, "pubsub": on50}, device_id
    # The 25.5 % of the config example: threshold 2550.
    assert sdk_bucket("d-1", "pubsub-migration", "v1", 25.5) == {"bucket": 648, "pubsub": True}


# --------------------------------------------------------------------------------------------
# Links.
# --------------------------------------------------------------------------------------------


def slugs(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    out: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"#{1,6} (.*)", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_links_to_contract_sections_resolve():
    contract = slugs(CONTRACT)
    readme = slugs(ROOT / "README.md")
    for anchor in ["wire-format", "eventid-and-deduplication", "mqtt", "pubsub", "pubsub-attributes", "validation",
                   "migration-config", "decision", "bucketing", "v1", "crc32", "metrics", "delivery-guarantees"]:
        assert anchor in contract, anchor
    broken = []
    # Inside CONTRACT.md.
    text = CONTRACT.read_text(encoding="utf-8")
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        if anchor not in contract:
            broken.append(f"docs/CONTRACT.md: #{anchor}")
    for anchor in re.findall(r"\]\(\.\./README\.md#([^)]+)\)", text):
        if anchor not in readme:
            broken.append(f"docs/CONTRACT.md: README.md#{anchor}")
    # From everywhere else (docs, code comments, scripts, generated bindings).
    skip = {"target", ".git", "node_modules", "build", ".gradle", "__pycache__"}
    paths = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]  # never walk build output
        paths += [Path(folder) / f for f in files]
    for path in paths:
        if path.suffix not in {".md", ".rs", ".kt", ".kts", ".swift", ".py", ".sh", ".json", ".toml", ""}:
            continue
        try:
            body = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for anchor in re.findall(r"CONTRACT\.md#([A-Za-z0-9_\-]+)", body):
            if anchor not in contract:
                broken.append(f"{path.relative_to(ROOT)}: CONTRACT.md#{anchor}")
    assert not broken, "links to missing sections:\n" + "\n".join(broken)
