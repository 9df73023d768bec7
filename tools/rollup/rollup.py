#!/usr/bin/env python3
"""The fleet rollup of dualpub migration reports (tools/rollup/README.md).

    rollup.py REPORTS.jsonl [--by hour|total] [--format table|json] [--now-ms MS] [--since-ms MS]
    rollup.py --clickhouse 'http://host:8123/?database=x' [REPORTS.jsonl] [...]

Without --clickhouse the reports are loaded into an in-process chDB session (sql/schema.sql)
and sql/rollup.sql runs there. With --clickhouse the same two files run against a ClickHouse
server over its HTTP interface: given REPORTS, the tables are created if missing and the
reports inserted; without, the server is only queried. The rollup covers everything it holds.

REPORTS is JSON lines; blank lines are skipped; every other line is one of:

    {"report":1,"reportSeq":7,...}                                       a bare report
    {"transport":"mqtt","receivedAtMs":1763790901234,"report":{...}}     an envelope: the report as an object
    {"transport":"pubsub","receivedAtMs":1763790901234,"payload":"..."}  an envelope: the report's JSON text

`transport` is "mqtt" or "pubsub" and `receivedAtMs` an integer (ms since the Unix epoch); a
bare report lands with transport "" and receivedAtMs 0. A report object is stored re-encoded
compactly, a payload string and a bare line as they are. A line that is not JSON, not one of
these forms, or a report without the fields the rollup reads (with their types) stops the run
with its line number and exit status 2; nothing is loaded. schemas/migration-report.schema.json
is the full definition of a report; this tool only checks what it needs.

Python 3.11, the standard library and chdb (only without --clickhouse).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

SQL = Path(__file__).resolve().parent / "sql"
HISTOGRAM_COUNTS = 66
LAST_BOUND_MS = 0.5 * 1.25 ** 64  # b(64); count 65 holds everything above it
ROUTES = ("both", "mqtt", "pubsub")
TRANSPORTS = ("mqtt", "pubsub")
# ClickHouse settings every query runs with: 64-bit integers as JSON numbers, inf as "inf".
OUTPUT_SETTINGS = {"output_format_json_quote_64bit_integers": "0", "output_format_json_quote_denormals": "1"}


class InputError(Exception):
    """A reports file that cannot be loaded (the message names the line)."""


class BackendError(Exception):
    """ClickHouse (chDB or a server) refused a statement or could not be reached."""


# --------------------------------------------------------------------------------------------
# Reading the reports file.
# --------------------------------------------------------------------------------------------


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _positive(v) -> bool:
    return _count(v) and v > 0


def _histogram(v) -> bool:
    return isinstance(v, list) and len(v) == HISTOGRAM_COUNTS and all(_count(c) for c in v)


# The fields sql/schema.sql and sql/rollup.sql read, with what each must be.
REQUIRED = [
    (("report",), lambda v: v == 1 and not isinstance(v, bool), "1"),
    (("reportSeq",), _positive, "an integer >= 1"),
    (("epoch",), lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    (("deviceId",), lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    (("cutAtMs",), _positive, "an integer >= 1 (ms)"),
    (("intervalSecs",), _positive, "an integer >= 1"),
    (("sdk",), lambda v: isinstance(v, str), "a string"),
    (("platform",), lambda v: isinstance(v, str), "a string"),
    (("decision", "cfg"), _count, "an integer >= 0"),
    (("decision", "route"), lambda v: v in ROUTES, " or ".join(ROUTES)),
    (("counters", "accepted"), _count, "an integer >= 0"),
    (("counters", "fallbacks"), _count, "an integer >= 0"),
    *[(("counters", t, k), _count, "an integer >= 0") for t in TRANSPORTS for k in ("acked", "failed", "retries")],
    *[(("gauges", f"{t}Depth"), _count, "an integer >= 0") for t in TRANSPORTS],
    *[(("gauges", f"{t}BreakerOpen"), lambda v: isinstance(v, bool), "true or false") for t in TRANSPORTS],
    *[(("latency", t), _histogram, f"an array of {HISTOGRAM_COUNTS} integers >= 0") for t in TRANSPORTS],
]


def report_problem(report) -> str | None:
    """What makes `report` unusable for the rollup (a missing or mistyped field), or None."""
    if not isinstance(report, dict):
        return "the report is not a JSON object"
    for path, ok, want in REQUIRED:
        value = report
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or not ok(value):
            found = "missing" if value is None else f"got {json.dumps(value)[:40]}"
            return f"{'.'.join(path)} must be {want} ({found})"
    return None


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def parse_line(text: str) -> dict:
    """One line of a reports file as a migration_reports_inbox row
    {"transport", "receivedAtMs", "payload"}; raises ValueError saying what is wrong."""
    try:
        doc = _strict_json(text)
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if isinstance(doc.get("report"), dict) or "payload" in doc:
        if doc.get("transport") not in TRANSPORTS:
            raise ValueError(f"envelope: transport must be mqtt or pubsub (got {json.dumps(doc.get('transport'))[:40]})")
        if not _count(doc.get("receivedAtMs")):
            raise ValueError(f"envelope: receivedAtMs must be an integer >= 0 (got {json.dumps(doc.get('receivedAtMs'))[:40]})")
        if "payload" in doc:
            if not isinstance(doc["payload"], str):
                raise ValueError("envelope: payload must be a string holding the report's JSON")
            payload = doc["payload"]
            try:
                report = _strict_json(payload)
            except ValueError as e:
                raise ValueError(f"envelope: payload is not JSON ({e})") from None
        else:
            report = doc["report"]
            payload = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
        transport, received = doc["transport"], doc["receivedAtMs"]
    else:
        report, payload, transport, received = doc, text.strip(), "", 0
    problem = report_problem(report)
    if problem:
        raise ValueError(problem)
    return {"transport": transport, "receivedAtMs": received, "payload": payload}


def read_reports(path: str | Path) -> list[dict]:
    """Every report of a JSON-lines file as migration_reports_inbox rows; raises InputError
    naming the file and line of the first one that is not a report."""
    rows = []
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                    if text.strip():
                        rows.append(parse_line(text))
                except (UnicodeDecodeError, ValueError) as e:
                    raise InputError(f"{path}: line {number}: {e}") from None
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from None
    return rows


# --------------------------------------------------------------------------------------------
# Where the SQL runs.
# --------------------------------------------------------------------------------------------


class Chdb:
    """An in-process chDB session on a database of its own, in memory. (All sessions of a
    process share one embedded server; only the current database is per session.)"""

    def __init__(self):
        try:
            from chdb import session  # imported here: --clickhouse works without chdb installed
        except ImportError:
            raise BackendError("chdb is not installed (scripts/rollup installs it into target/pyenv)") from None
        self._session = session.Session()
        self.database = f"rollup_{uuid.uuid4().hex}"
        for name, value in OUTPUT_SETTINGS.items():
            self.execute(f"SET {name} = {value}")
        self.execute(f"CREATE DATABASE {self.database} ENGINE = Memory")
        self.execute(f"USE {self.database}")

    def close(self) -> None:
        """Drops the session's database and closes the session."""
        self.execute(f"DROP DATABASE IF EXISTS {self.database}")
        self._session.close()

    def execute(self, sql: str, params: dict | None = None, body: str | None = None) -> str:
        """Runs one statement (with `body` as its inline data, after FORMAT) and returns its
        output as JSON lines."""
        text = sql if body is None else f"{sql}\n{body}"
        try:
            return self._session.query(text, "JSONEachRow", params={k: str(v) for k, v in (params or {}).items()}).bytes().decode()
        except Exception as e:  # chdb raises its own error types for SQL errors
            raise BackendError(f"chDB: {e}") from None


class ClickHouseHttp:
    """A ClickHouse server's HTTP interface, e.g. http://host:8123/?database=x (user and
    password, when needed, as the `user` and `password` query parameters)."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {url}")
        self._base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
        self._query = dict(urllib.parse.parse_qsl(parts.query))
        self._where = parts.netloc

    def execute(self, sql: str, params: dict | None = None, body: str | None = None) -> str:
        """Runs one statement (POST; `body` is the data of an INSERT … FORMAT) and returns its
        output as JSON lines."""
        query = {**self._query, **OUTPUT_SETTINGS, **{f"param_{k}": str(v) for k, v in (params or {}).items()}}
        if body is None:
            query["default_format"] = "JSONEachRow"
            data = sql
        else:
            query["query"] = sql
            data = body
        request = urllib.request.Request(f"{self._base}?{urllib.parse.urlencode(query)}", data=data.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return response.read().decode()
        except urllib.error.HTTPError as e:
            raise BackendError(f"ClickHouse at {self._where}: HTTP {e.code}: {e.read().decode(errors='replace')[:2000].strip()}") from None
        except (urllib.error.URLError, OSError) as e:
            raise BackendError(f"cannot reach ClickHouse at {self._where}: {getattr(e, 'reason', e)}") from None


def statements(sql: str) -> list[str]:
    """The statements of a .sql file, split at semicolons that end a line (comment-only pieces
    dropped)."""
    pieces = re.split(r";[ \t]*$", sql, flags=re.M)
    return [p.strip() for p in pieces if any(line.strip() and not line.strip().startswith("--") for line in p.splitlines())]


def create_tables(backend) -> None:
    """Creates the landing tables and views of sql/schema.sql (those missing)."""
    for statement in statements((SQL / "schema.sql").read_text(encoding="utf-8")):
        backend.execute(statement)


def load(backend, rows: list[dict], batch: int = 50_000) -> None:
    """Inserts migration_reports_inbox rows (from read_reports), `batch` rows per INSERT."""
    for start in range(0, len(rows), batch):
        body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[start:start + batch])
        backend.execute("INSERT INTO migration_reports_inbox FORMAT JSONEachRow", body=body)


def run_rollup(backend, by: str = "total", now_ms: int = 0, since_ms: int = 0) -> list[dict]:
    """Runs sql/rollup.sql and returns its rows (percentiles in ms: float('inf') above the last
    bound, None without samples)."""
    output = backend.execute((SQL / "rollup.sql").read_text(encoding="utf-8"), {"by": by, "now_ms": now_ms, "since_ms": since_ms})
    rows = [json.loads(line) for line in output.splitlines() if line.strip()]
    for row in rows:
        for key, value in row.items():
            if key.endswith("_ms") and isinstance(value, str):
                row[key] = float(value)  # "inf"
    return rows


def rollup_rows(path: str | Path, by: str = "total", now_ms: int = 0, since_ms: int = 0) -> list[dict]:
    """The rollup of one reports file, computed in a fresh chDB session: what
    `rollup.py PATH --format json --by BY` prints, as dicts (without the total the CLI adds
    after hour rows)."""
    rows = read_reports(path)
    backend = Chdb()
    try:
        create_tables(backend)
        load(backend, rows)
        return run_rollup(backend, by, now_ms, since_ms)
    finally:
        backend.close()


# --------------------------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------------------------


def _latency(ms) -> str:
    if ms is None:
        return "-"
    if math.isinf(ms):
        return f">{LAST_BOUND_MS / 1000:.1f}s"
    return f"{ms:.1f}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


def _percent(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _number(x) -> str:
    return "-" if x is None else f"{x:,.1f}" if isinstance(x, float) else f"{x:,}"


def _key(x) -> str:
    return "all" if x is None else str(x)


# (group, header, row key, format) of each table column
TABLE = [
    ("", "hour", "hour", _key), ("", "cfg", "cfg", _key), ("", "route", "route", _key),
    ("", "sdk", "sdk", _key), ("", "platform", "platform", _key),
    ("devices", "reporting", "devices", _number), ("devices", "silent", "silent_devices", _number),
    ("", "accepted", "accepted", _number),
    *[(t, header, key.format(t=t), fmt) for t in TRANSPORTS for header, key, fmt in [
        ("delivered", "delivered_{t}", _number), ("success", "success_{t}", _percent),
        ("retries/1k", "retries_per_1k_{t}", _number), ("p50", "p50_{t}_ms", _latency),
        ("p95", "p95_{t}_ms", _latency), ("p99", "p99_{t}_ms", _latency),
        ("backlog", "backlog_{t}", _number), ("breaker open", "breaker_open_{t}", _number),
    ]],
    ("", "fallback", "fallback_rate", _percent),
    ("", "reports", "reports", _number), ("", "missing", "missing_reports", _number),
]


def format_table(rows: list[dict]) -> str:
    """Rows as a fixed-width text table (a group line over the per-transport columns)."""
    cells = [[fmt(row.get(key)) for _, _, key, fmt in TABLE] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h, _, _) in enumerate(TABLE)]
    groups, i = [], 0
    while i < len(TABLE):
        j = i
        while j < len(TABLE) and TABLE[j][0] == TABLE[i][0]:
            j += 1
        span = sum(widths[i:j]) + 2 * (j - i - 1)
        label = TABLE[i][0]
        groups.append(f" {label} ".center(span, "-") if label else " " * span)
        i = j
    lines = ["  ".join(groups).rstrip(), "  ".join(h.rjust(w) for (_, h, _, _), w in zip(TABLE, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description="Fleet rollup of dualpub migration reports (tools/rollup/README.md).")
    parser.add_argument("reports", nargs="?", help="JSON-lines file of reports or envelopes (optional with --clickhouse)")
    parser.add_argument("--clickhouse", metavar="URL", help="run on this ClickHouse server's HTTP interface instead of chDB")
    parser.add_argument("--by", choices=["hour", "total"], default="hour",
                        help="hour: per cfg x route x SDK x platform x hour, then the fleet total (default); total: the fleet total only")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="table (default) or one JSON object per row")
    parser.add_argument("--now-ms", type=int, default=0, metavar="MS", help="now, for silent devices (default: the newest cutAtMs)")
    parser.add_argument("--since-ms", type=int, default=0, metavar="MS", help="count only intervals that end at or after this time")
    args = parser.parse_args(argv)
    if args.reports is None and not args.clickhouse:
        parser.error("REPORTS is required (it is optional only with --clickhouse)")
    try:
        server = ClickHouseHttp(args.clickhouse) if args.clickhouse else None
    except ValueError as e:
        parser.error(f"--clickhouse: {e}")
    try:
        rows = read_reports(args.reports) if args.reports else []
        backend = server or Chdb()
        if args.reports:  # a server without a file is only read
            create_tables(backend)
            load(backend, rows)
        result = run_rollup(backend, args.by, args.now_ms, args.since_ms)
        if args.by == "hour":
            result += run_rollup(backend, "total", args.now_ms, args.since_ms)
    except InputError as e:
        print(f"rollup: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"rollup: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        for row in result:
            print(json.dumps({k: "inf" if isinstance(v, float) and math.isinf(v) else v for k, v in row.items()}))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
