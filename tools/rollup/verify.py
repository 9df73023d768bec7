#!/usr/bin/env python3
"""`dualpub verify` on ClickHouse (docs/VERIFY.md, "The same check on ClickHouse").

    verify.py --capture CAPTURE.jsonl [--reports REPORTS.jsonl] [--json]
    verify.py --clickhouse 'http://host:8123/?database=x' --from-ms MS --to-ms MS [--json]

Without --clickhouse the capture (`dualpub demo --capture`: JSON lines {"pipeline", "receivedAtMs",
"payload", ...}, `{"pipeline", "gap": {"fromMs", "toMs"}}` for the subscribers' own gaps and
`{"window": {"fromMs", "toMs"}}` for when they read) is loaded into the location landing tables
of an in-process chDB session (sql/schema.sql, through locations_inbox; gaps into
subscriber_gaps) and the reports (bare, or `{"report": ...}` envelopes: rollup.py reads them)
into migration_reports; sql/verify.sql runs there over the capture's window (its window line,
else its first to its last arrival), then sql/verify_mismatches.sql names the copies of the
mismatched locations. With --clickhouse the same SQL runs on a server's tables (files given are
loaded first).

It prints what `dualpub verify` prints for the fields the SQL covers: a table, or with --json
one object with `verdict`, `thresholds`, `steps`, `missing`, `duplicated`, `late`, `mismatched`,
`unbounded` and `unboundedCount` (the CLI's shape; the CLI's totals, delays, timeline and worst
devices are not made). Everything comes from the SQL except each step's 95 % upper bound of its
rate (Clopper-Pearson, the CLI's algorithm, from discrepancies and trials) and the verdicts,
which depend on it. `missing` is ordered by deviceId then seq (the CLI orders devices by their
first line in the capture), `unbounded` by deviceId.

Exit status as the CLI's: 0 pass, 3 fail, 4 too little traffic, 2 unreadable input, 1 the
backend failed. Python 3.11, the standard library and chdb (only without --clickhouse).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rollup  # noqa: E402  (the backends, the table creation and the reports reader)
from rollup import BackendError, InputError  # noqa: E402

SQL = Path(__file__).resolve().parent / "sql" / "verify.sql"
MISMATCHES_SQL = Path(__file__).resolve().parent / "sql" / "verify_mismatches.sql"
# the most mismatched locations named (the CLI's MAX_LISTED_MISMATCHES), and unbounded runs listed
MAX_LISTED = 1_000
CONFIDENCE = 0.95
PIPELINES = ("mqtt", "pubsub")
STEP_COUNTS = ("expected", "received", "missing", "duplicates", "fallbacks", "unexpected", "late")
# the whole time DateTime64(3) holds from the Unix epoch: the default window (a capture line without
# receivedAtMs lands at 0)
ALL_TIME = (0, 10_000_000_000_000)


# --------------------------------------------------------------------------------------------
# The capture file.
# --------------------------------------------------------------------------------------------


class Capture:
    """A capture file read: its messages as locations_inbox rows {"transport", "receivedAtMs",
    "payload"}, its subscriber gaps as subscriber_gaps rows, and the window it was read in."""

    def __init__(self):
        self.rows: list[dict] = []
        self.gaps: list[dict] = []
        self.window: tuple[int, int] | None = None

    def span(self) -> tuple[int, int]:
        """The window to verify: the capture's window line, else its first to its last arrival
        (to + 1: the SQL's window excludes its end), else all time."""
        if self.window:
            return self.window[0], self.window[1] + 1
        if self.rows:
            times = [r["receivedAtMs"] for r in self.rows]
            return min(times), max(times) + 1
        return ALL_TIME


def read_capture(path: str | Path) -> Capture:
    """A capture file's messages, gaps and window. Raises InputError naming the line that is
    none of them."""
    c = Capture()
    try:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                except ValueError as e:
                    raise InputError(f"{path}: line {number}: not JSON ({e})") from None
                if isinstance(line, dict) and isinstance(line.get("window"), dict) and "pipeline" not in line:
                    w = line["window"]
                    c.window = (int(w["fromMs"]), int(w["toMs"]))
                    continue
                pipeline = line.get("pipeline") if isinstance(line, dict) else None
                if pipeline not in PIPELINES:
                    raise InputError(f"{path}: line {number}: pipeline must be mqtt or pubsub")
                if isinstance(line.get("payload"), str):
                    received = line.get("receivedAtMs")
                    c.rows.append({"transport": pipeline, "receivedAtMs": received if isinstance(received, int) else 0,
                                   "payload": line["payload"]})
                elif isinstance(line.get("gap"), dict):
                    c.gaps.append({"pipeline": pipeline, "from_ms": int(line["gap"]["fromMs"]), "to_ms": int(line["gap"]["toMs"])})
                else:
                    raise InputError(f"{path}: line {number}: neither a payload nor a gap")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: a window or gap line without integer fromMs and toMs ({e})") from None
    return c


def load_locations(backend, rows: list[dict], batch: int = 50_000) -> None:
    """Inserts locations_inbox rows (the landing tables keep every copy: duplicates, mismatches
    and first arrivals are what the verifier counts; optimize_on_insert = 0 guards against a
    deduplicating engine someone may have chosen on a server)."""
    for start in range(0, len(rows), batch):
        body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[start:start + batch])
        backend.execute("INSERT INTO locations_inbox SETTINGS optimize_on_insert = 0 FORMAT JSONEachRow", body=body)


# --------------------------------------------------------------------------------------------
# The 95 % upper bound (tools/cli/src/verify/stats.rs, operation for operation).
# --------------------------------------------------------------------------------------------


def _ln_factorial(n: int) -> float:
    if n < 2:
        return 0.0
    if n < 64:
        total = 0.0
        for k in range(2, n + 1):
            total += math.log(k)
        return total
    x = float(n)
    return x * math.log(x) - x + 0.5 * math.log(2.0 * math.pi * x) + 1.0 / (12.0 * x) - 1.0 / (360.0 * (x * x * x))


def _binomial_cdf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log(1.0 - p)
    ln_n = _ln_factorial(n)
    total = 0.0
    for i in range(min(k, n) + 1):
        total += math.exp(ln_n - _ln_factorial(i) - _ln_factorial(n - i) + i * lp + (n - i) * lq)
    return min(total, 1.0)


def upper_bound(x: int, n: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper bound of a rate seen as x events in n trials."""
    if n == 0 or x >= n:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = x / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if _binomial_cdf(x, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------------------------------
# Running the SQL and shaping its rows as the CLI's JSON.
# --------------------------------------------------------------------------------------------


def _rows(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _array_literal(items: list[str]) -> str:
    """A ClickHouse Array(String) parameter value."""
    return "[" + ",".join("'" + i.replace("\\", "\\\\").replace("'", "\\'") + "'" for i in items) + "]"


def run_sql(backend, from_ms: int, to_ms: int, margin_ms: int = 0, late_ms: int = 5_000,
            max_rate_bound: float = 0.001, reports_from_ms: int = ALL_TIME[0]) -> list[dict]:
    """sql/verify.sql's rows (one per cfg), each with `mismatch_details`: verify_mismatches.sql's
    rows for its mismatched eventIds (the first MAX_LISTED of all steps in eventId order)."""
    params = {"from_ms": from_ms, "to_ms": to_ms, "margin_ms": margin_ms, "late_ms": late_ms,
              "max_rate_bound": max_rate_bound, "reports_from_ms": reports_from_ms}
    rows = _rows(backend.execute(SQL.read_text(encoding="utf-8"), params))
    ids = sorted(i for r in rows for i in r["mismatched_ids"])[:MAX_LISTED]
    details = {}
    if ids:
        found = backend.execute(MISMATCHES_SQL.read_text(encoding="utf-8"),
                                {"ids": _array_literal(ids), "from_ms": from_ms, "to_ms": to_ms, "margin_ms": margin_ms})
        details = {d["event_id"]: d for d in _rows(found)}
    for r in rows:
        r["mismatch_details"] = [details[i] for i in r["mismatched_ids"] if i in details]
    return rows


def findings(rows: list[dict], max_acked_not_received: int = 0, max_rate_bound: float = 0.001,
             late_ms: int = 5_000) -> dict:
    """The CLI's JSON (the fields the SQL covers) from verify.sql's rows."""
    steps, missing, mismatched = [], [], []
    unbounded = sorted(u for r in rows for u in r["unbounded"])
    rows = [r for r in rows if r["facts"] > 0]  # a row that only carries unbounded runs is no step
    duplicated = {p: [] for p in PIPELINES}
    late = {p: [] for p in PIPELINES}
    verdict = "pass" if rows else "insufficient"
    for r in rows:
        step = {"cfg": r["cfg"], "devices": r["devices"], "locations": r["locations"]}
        for p in PIPELINES:
            step[p] = {c: r[f"{p}_{c}"] for c in STEP_COUNTS}
        step |= {k: r[k] for k in ("unseen", "mismatches", "causes", "discrepancies", "trials")}
        step["rate"] = float(r["rate"])
        step["rateBound"] = upper_bound(r["discrepancies"], r["trials"])
        step["minTrials"] = r["min_trials"]
        acked = r["causes"].get("acked_not_received", 0)
        if acked > max_acked_not_received or (r["discrepancies"] > 0 and step["rateBound"] > max_rate_bound):
            step["verdict"] = "fail"
        elif step["rateBound"] > max_rate_bound:
            step["verdict"] = "insufficient"
        else:
            step["verdict"] = "pass"
        if "fail" in (verdict, step["verdict"]):
            verdict = "fail"
        elif "insufficient" in (verdict, step["verdict"]):
            verdict = "insufficient"
        steps.append(step)
        for device, seq, _kind, event_id, pipeline, cause in r["missing"]:
            missing.append({"eventId": event_id, "deviceId": device, "seq": seq, "cfg": r["cfg"],
                            "pipeline": pipeline or None, "cause": cause})
        for p in PIPELINES:
            duplicated[p] += r[f"duplicated_{p}"]
            late[p] += r[f"late_{p}_ids"]
        for d in r["mismatch_details"]:
            device, seq, cfg = d["first"]
            mismatched.append({"eventId": d["event_id"], "deviceId": device, "seq": seq, "cfg": cfg,
                               "copies": [{"digest": dg, "pipeline": p, "copies": n} for dg, p, n in d["copies"]],
                               "fields": d["fields"]})
    missing.sort(key=lambda m: (m["deviceId"], m["seq"]))
    mismatched.sort(key=lambda m: m["eventId"])
    return {
        "verdict": verdict,
        "thresholds": {"maxAckedNotReceived": max_acked_not_received, "maxRateBound": max_rate_bound,
                       "confidence": CONFIDENCE, "lateMs": late_ms},
        "steps": steps,
        "missing": missing,
        # as the CLI: a pipeline appears only with at least one eventId, listed in eventId order
        "duplicated": {p: sorted(ids) for p, ids in duplicated.items() if ids},
        "late": {p: sorted(ids) for p, ids in late.items() if ids},
        "mismatched": mismatched[:MAX_LISTED],
        "unbounded": [{"deviceId": d, "epoch": e or None, "reason": reason} for d, e, reason in unbounded[:MAX_LISTED]],
        "unboundedCount": len(unbounded),
    }


def verify_files(capture: str | Path, reports: str | Path | None = None, **thresholds) -> dict:
    """What `verify.py --capture CAPTURE --reports REPORTS --json` prints, as a dict, computed in
    a fresh chDB session (thresholds: max_acked_not_received, max_rate_bound, late_ms)."""
    c = read_capture(capture)
    report_rows = rollup.read_reports(reports) if reports else []
    backend = rollup.Chdb()
    try:
        load(backend, c, report_rows, local=True)
        rows = run_sql(backend, *c.span(), late_ms=thresholds.get("late_ms", 5_000),
                       max_rate_bound=thresholds.get("max_rate_bound", 0.001))
    finally:
        backend.close()
    return findings(rows, **thresholds)


def load(backend, capture: Capture, reports: list[dict], local: bool) -> None:
    """Creates the landing tables (those missing) and loads both files. On a session of its own
    (chDB) the merges of the location tables are stopped first, so that no copy is collapsed
    before the query; a server's tables merge when they will (docs/VERIFY.md says what that
    changes)."""
    rollup.create_tables(backend)
    if local:
        for table in ("locations_mqtt", "locations_pubsub"):
            backend.execute(f"SYSTEM STOP MERGES {table}")
    load_locations(backend, capture.rows)
    if capture.gaps:
        backend.execute("INSERT INTO subscriber_gaps FORMAT JSONEachRow", body="\n".join(json.dumps(g) for g in capture.gaps))
    rollup.load(backend, reports)


# --------------------------------------------------------------------------------------------
# --bench: the query's cost on a synthetic day (docs/VERIFY.md, "Cost at fleet scale").
# --------------------------------------------------------------------------------------------

# One day of `{n}` locations from `{devices}` devices (each location on both pipelines, route
# both): UUIDv7-shaped eventIds in time order, payloads shaped like docs/CONTRACT.md's full
# example with pseudo-random measurements (they compress worse than real tracks); one MQTT copy in
# 1,000 arrives twice, one Pub/Sub copy in 10,000 never arrives.
BENCH_INSERT = """
INSERT INTO {table} (event_id, device_id, company_id, seq, route, cfg, schema_version, timestamp, received_at, payload)
SETTINGS optimize_on_insert = 0
SELECT event_id, device_id, 'c-9', seq, 'both', 42, 2, fromUnixTimestamp64Milli(ts, 'UTC'),
       fromUnixTimestamp64Milli(ts + {delay_ms}, 'UTC'),
       concat('{{"eventId":"', event_id, '","deviceId":"', device_id, '","companyId":"c-9","latitude":',
              toString(round(cityHash64(n, 1) % 180000000 / 1e6 - 90, 6)), ',"longitude":', toString(round(cityHash64(n, 2) % 360000000 / 1e6 - 180, 6)),
              ',"accuracy":', toString(round(cityHash64(n, 3) % 5000 / 100, 1)), ',"speed":', toString(round(cityHash64(n, 4) % 4000 / 100, 2)),
              ',"bearing":', toString(round(cityHash64(n, 5) % 3600 / 10, 1)), ',"altitude":', toString(round(cityHash64(n, 6) % 20000 / 10, 1)),
              ',"timestamp":', toString(ts), ',"battery":', toString(round(cityHash64(n, 7) % 100 / 100, 2)),
              ',"schemaVersion":2,"seq":', toString(seq), ',"route":"both","cfg":42}}')
FROM (
    SELECT number AS n, 1763769600000 + intDiv(number * 86400000, {n}) AS ts,
           lower(concat(leftPad(hex(ts), 12, '0'), '-7', leftPad(hex(number % 4096), 3, '0'), '-9',
                        leftPad(hex(intDiv(number, 4096) % 4096), 3, '0'), '-',
                        leftPad(hex(cityHash64(number) % 281474976710656), 12, '0'))) AS event_id,
           concat('device-', leftPad(toString(number % {devices}), 8, '0')) AS device_id,
           intDiv(number, {devices}) + 1 AS seq
    FROM numbers({n})
    WHERE {which}
)
"""


class _StoredChdb(rollup.Chdb):
    """A chDB session on a directory whose database outlives the process (for --bench)."""

    def __init__(self, path: str):
        from chdb import session
        self._session = session.Session(path)
        self.database = "verify_bench"
        for name, value in rollup.OUTPUT_SETTINGS.items():
            self.execute(f"SET {name} = {value}")
        self.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self.execute(f"USE {self.database}")

    def close(self) -> None:
        self._session.close()


def _in_child(work) -> dict:
    """Runs work() in a forked process (chDB is never loaded here) and returns its dict."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            out = json.dumps(work())
        except BaseException as e:  # noqa: BLE001  (reported to the parent)
            out = json.dumps({"error": repr(e)})
        with os.fdopen(write, "w") as w:
            w.write(out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as r:
        out = r.read()
    os.waitpid(pid, 0)
    result = json.loads(out)
    if "error" in result:
        raise BackendError(result["error"])
    return result


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def bench(n: int, devices: int) -> dict:
    """Generates a day of n locations in chDB (one process), then runs verify.sql on it in a
    fresh process: its time, what it read and how much its resident memory grew."""
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as path:
        def generate() -> dict:
            backend = _StoredChdb(path)
            rollup.create_tables(backend)
            for table in ("locations_mqtt", "locations_pubsub"):
                backend.execute(f"SYSTEM STOP MERGES {table}")
            for table, delay_ms, which in (("locations_mqtt", 300, "1"), ("locations_mqtt", 900, "number % 1000 = 3"),
                                           ("locations_pubsub", 1200, "number % 10000 != 7")):
                backend.execute(BENCH_INSERT.format(table=table, delay_ms=delay_ms, which=which, n=n, devices=devices))
            backend.execute(
                "INSERT INTO migration_reports (device_id, epoch, report_seq, epoch_start, cut_at, last_seq, received_at) "
                f"SELECT concat('device-', leftPad(toString(number), 8, '0')), 'e1', 96, now64(3), now64(3), "
                f"intDiv({n} - 1 - number, {devices}) + 1, now64(3) FROM numbers({devices})")
            sizes = backend.execute(
                "SELECT table, column, sum(rows) AS rows, sum(column_data_compressed_bytes) AS compressed, "
                "sum(column_data_uncompressed_bytes) AS uncompressed FROM system.parts_columns "
                "WHERE database = currentDatabase() AND active AND table IN ('locations_mqtt', 'locations_pubsub') "
                "GROUP BY table, column ORDER BY table, column")
            backend.close()
            return {"columns": [json.loads(line) for line in sizes.splitlines() if line.strip()]}

        def query() -> dict:
            backend = _StoredChdb(path)
            before = _rss_kib()
            started = time.monotonic()
            rows = run_sql(backend, *ALL_TIME)
            seconds = time.monotonic() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            backend.close()
            checked = [{k: r[k] for k in ("cfg", "locations", "trials", "discrepancies")} for r in rows]
            return {"seconds": round(seconds, 2), "rss_growth_mib": round((peak - before) / 1024), "steps": checked}

        made = _in_child(generate)
        ran = _in_child(query)
    read = {"event_id", "device_id", "seq", "route", "cfg", "received_at", "payload"}
    copies = sum(c["rows"] for c in made["columns"] if c["column"] == "event_id")
    scanned = [c for c in made["columns"] if c["column"] in read]
    return {
        "locations": n, "devices": devices, "copies": copies,
        # the columns the query reads, per copy: all of them, and the payload alone (hashed)
        "bytes_per_copy_read": {k: round(sum(c[k] for c in scanned) / copies, 1) for k in ("compressed", "uncompressed")},
        "payload_bytes_per_copy": {k: round(sum(c[k] for c in scanned if c["column"] == "payload") / copies, 1)
                                   for k in ("compressed", "uncompressed")},
        **ran,
    }


# --------------------------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------------------------


def format_table(f: dict) -> str:
    """The findings as text, as the CLI's table begins: the verdict per step, the causes, the
    first missing locations."""
    out = [f"dualpub verify (SQL): {f['verdict'].upper()}"]
    head = ("cfg", "devices", "locations", "mqtt recv/expected", "pubsub recv/expected", "fallbacks",
            "unexpected", "unseen", "mismatches", "discrep.", "rate (95% ub)", "min traffic", "verdict")
    widths = (5, 7, 9, 20, 20, 9, 10, 6, 10, 8, 13, 11, 0)
    rows = [[str(s["cfg"]), str(s["devices"]), str(s["locations"]),
             f"{s['mqtt']['received']}/{s['mqtt']['expected']}", f"{s['pubsub']['received']}/{s['pubsub']['expected']}",
             str(s["mqtt"]["fallbacks"]), str(s["pubsub"]["unexpected"]), str(s["unseen"]), str(s["mismatches"]),
             str(s["discrepancies"]), f"{s['rateBound'] * 100:.4f} %", str(s["minTrials"]), s["verdict"]]
            for s in f["steps"]]
    for cells in [list(head)] + rows:
        out.append("  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths)).rstrip())
    causes = {c: sum(s["causes"].get(c, 0) for s in f["steps"])
              for c in ("acked_not_received", "still_queued", "dropped_on_device", "unexplained")}
    out.append("  missing by cause: " + ", ".join(f"{c.replace('_', ' ')} {n}" for c, n in causes.items()))
    for m in f["missing"][:10]:
        where = m["pipeline"] or "both (seq never seen)"
        out.append(f"  missing on {where}: {m['deviceId']} seq {m['seq']} {m['eventId']} ({m['cause']})")
    if len(f["missing"]) > 10:
        out.append(f"  … and {len(f['missing']) - 10} more (--json lists them all)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description="dualpub verify as SQL on ClickHouse (docs/VERIFY.md).")
    parser.add_argument("--capture", metavar="FILE", help="what the pipelines received (dualpub demo --capture)")
    parser.add_argument("--reports", metavar="FILE", help="the devices' migration reports (dualpub demo --reports-out)")
    parser.add_argument("--clickhouse", metavar="URL", help="run on this ClickHouse server's HTTP interface instead of chDB")
    parser.add_argument("--from-ms", type=int, metavar="MS",
                        help="window start: first arrival at or after (default: the capture's window, else all time)")
    parser.add_argument("--to-ms", type=int, metavar="MS", help="window end: first arrival before (default: as --from-ms)")
    parser.add_argument("--margin-ms", type=int, default=600_000, metavar="MS",
                        help="copies are read this far outside the window (default 600000)")
    parser.add_argument("--reports-from-ms", type=int, default=ALL_TIME[0], metavar="MS",
                        help="ignore reports received before (default: all)")
    parser.add_argument("--max-acked-not-received", type=int, default=0)
    parser.add_argument("--max-rate-bound", type=float, default=0.001)
    parser.add_argument("--late-ms", type=int, default=5_000)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--bench", type=int, metavar="LOCATIONS",
                        help="measure the query on a synthetic day of LOCATIONS locations in chDB (no other input)")
    parser.add_argument("--bench-devices", type=int, metavar="N", help="devices of --bench (default LOCATIONS / 300)")
    args = parser.parse_args(argv)
    if args.bench:
        print(json.dumps(bench(args.bench, args.bench_devices or max(1, args.bench // 300))))
        return 0
    if not args.capture and not args.clickhouse:
        parser.error("--capture is required (it is optional only with --clickhouse)")
    if not 0 < args.max_rate_bound < 1:
        parser.error("--max-rate-bound must be in (0, 1)")
    try:
        server = rollup.ClickHouseHttp(args.clickhouse) if args.clickhouse else None
    except ValueError as e:
        parser.error(f"--clickhouse: {e}")
    backend = None
    try:
        capture = read_capture(args.capture) if args.capture else Capture()
        reports = rollup.read_reports(args.reports) if args.reports else []
        backend = server or rollup.Chdb()
        if args.capture or args.reports:  # a server without files is only read
            load(backend, capture, reports, local=server is None)
        span = capture.span()
        from_ms = span[0] if args.from_ms is None else args.from_ms
        to_ms = span[1] if args.to_ms is None else args.to_ms
        rows = run_sql(backend, from_ms, to_ms, args.margin_ms, args.late_ms, args.max_rate_bound, args.reports_from_ms)
    except InputError as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"verify: {e}", file=sys.stderr)
        return 1
    finally:
        if backend is not None and server is None:
            backend.close()
    result = findings(rows, args.max_acked_not_received, args.max_rate_bound, args.late_ms)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_table(result))
    return {"pass": 0, "fail": 3}.get(result["verdict"], 4)


if __name__ == "__main__":
    sys.exit(main())
