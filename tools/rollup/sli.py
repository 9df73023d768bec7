#!/usr/bin/env python3
"""The migration watched per minute (docs/VERIFY.md, "Watching the migration"): service level
indicators of both pipelines from ClickHouse, served as OpenMetrics text for Prometheus.

    sli.py minutes --capture C [--reports R] [--json]       the per-minute rows of a capture, on chDB
    sli.py metrics --capture C [--reports R] [--now-ms MS] [--settle-secs S]
                                                             the OpenMetrics text once, for the minutes closed by then
    sli.py serve --capture C [--reports R] [--port P] ...    serve /metrics from chDB (the files loaded at start)
    sli.py serve --clickhouse URL [--port P] ...             serve /metrics from a server's landing tables

The rows: per minute of the locations' own `timestamp`, pipeline, config version and route —
owed, received, unseen, verifier_gap, distinct, copies, freshness p50/p99 (ms), the columns of the
CLI's `sli[]` (tools/cli/src/verify/sli.rs). What arrived comes from the materialized views of
sql/sli_schema.sql over the landing tables; the seqs seen on no pipeline and the verifier's own
gaps come from the reconciliation of sql/verify.sql, run with sql/sli.sql as its final SELECT.

The exporter counts each minute once, when it is closed: `--settle-secs` (default 300) after it
ended, so that late copies are in. Counters (`dualpub_sli_*_total`) add up the closed minutes
since the exporter started (it starts `--lookback-secs` back, default 3600), with their
`pipeline`, `cfg` and `route`; gauges give the last closed minute's freshness and how far the
counters go. Rules on them: tools/rollup/alerts/dualpub-slo.rules.yml.

Python 3.11, the standard library and chdb (only without --clickhouse).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rollup  # noqa: E402  (the backends and the table creation)
import verify  # noqa: E402  (the capture reader, the loading and sql/verify.sql)
from rollup import BackendError, InputError  # noqa: E402

SQL = Path(__file__).resolve().parent / "sql"
MINUTE_MS = 60_000
# verify.sql's final SELECT begins after this line; sli.sql replaces it.
STEPS_MARKER = "-- (the steps: sli.sql puts its own final SELECT here, after the same CTEs)"
COUNTERS = (
    ("owed", "Locations a pipeline owed in the minute: seen on some pipeline with a route that owes it, or seqs seen on none."),
    ("received", "Of the locations owed, those received on the pipeline."),
    ("unseen", "Of the locations owed, seqs seen on no pipeline (gaps and run ends the devices' reports show)."),
    ("verifier_gap", "Of the locations owed and not received, those the verifying subscriber's own disconnection explains."),
    ("distinct", "Distinct locations received on the pipeline, whatever their route (MQTT with route pubsub: fallbacks)."),
    ("copies", "Every copy received on the pipeline (copies - distinct: duplicates)."),
)


def create_tables(backend) -> None:
    """The landing tables (sql/schema.sql) and the views of sql/sli_schema.sql, those missing:
    before anything is inserted, so that the views see every row."""
    rollup.create_tables(backend)
    for statement in rollup.statements((SQL / "sli_schema.sql").read_text(encoding="utf-8")):
        backend.execute(statement)


def query() -> str:
    """sql/verify.sql's CTEs with sql/sli.sql as the final SELECT."""
    head = (SQL / "verify.sql").read_text(encoding="utf-8").split(STEPS_MARKER)[0].rstrip()
    return head + ",\n" + (SQL / "sli.sql").read_text(encoding="utf-8")


def minutes(backend, minutes_from_ms: int, minutes_to_ms: int, arrivals_from_ms: int, arrivals_to_ms: int,
            margin_ms: int = 600_000, reports_from_ms: int = 0) -> list[dict]:
    """The rows of the minutes [minutes_from_ms, minutes_to_ms), the reconciliation run over the
    locations first received in [arrivals_from_ms, arrivals_to_ms) (a wider window: a minute's
    unseen seqs are found from the runs around them)."""
    params = {"from_ms": arrivals_from_ms, "to_ms": arrivals_to_ms, "margin_ms": margin_ms, "late_ms": 5_000,
              "max_rate_bound": 0.001, "reports_from_ms": reports_from_ms,
              "minutes_from_ms": minutes_from_ms, "minutes_to_ms": minutes_to_ms}
    out = backend.execute(query(), params)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def load_files(backend, capture: str | Path, reports: str | Path | None) -> verify.Capture:
    """Creates the tables and views and loads a capture and reports (as verify.py does)."""
    c = verify.read_capture(capture)
    create_tables(backend)
    verify.load(backend, c, rollup.read_reports(reports) if reports else [], local=True)
    return c


class Exporter:
    """Counters over closed minutes, rendered as OpenMetrics text."""

    def __init__(self, backend, settle_ms: int, lookback_ms: int, context_ms: int, start_ms: int | None = None,
                 arrivals: tuple[int, int] | None = None):
        """`start_ms`: the first minute counted (default: `lookback_ms` before the first scrape);
        `arrivals`: the window of first arrivals the reconciliation reads (default: from
        `context_ms` before the minutes it closes to now; a capture's own window)."""
        self.backend, self.settle_ms, self.lookback_ms, self.context_ms = backend, settle_ms, lookback_ms, context_ms
        self.closed_until: int | None = start_ms
        self.arrivals = arrivals
        self.counters: dict[tuple, int] = {}
        self.freshness: dict[tuple, tuple] = {}
        self.lock = threading.Lock()

    def close_minutes(self, now_ms: int) -> None:
        """Adds every minute that ended `settle_ms` before now and was not counted yet."""
        boundary = (now_ms - self.settle_ms) // MINUTE_MS * MINUTE_MS
        if self.closed_until is None:
            self.closed_until = boundary - self.lookback_ms // MINUTE_MS * MINUTE_MS
        if boundary <= self.closed_until:
            return
        arrivals = self.arrivals or (self.closed_until - self.context_ms, now_ms + 1)
        rows = minutes(self.backend, self.closed_until, boundary, *arrivals)
        for r in rows:
            labels = (r["pipeline"], str(r["cfg"]), r["route"])
            for name, _ in COUNTERS:
                self.counters[(name, labels)] = self.counters.get((name, labels), 0) + r[name]
            if r["copies"]:
                self.freshness[labels] = (r["minute_ms"], r["freshness_p50_ms"], r["freshness_p99_ms"])
        self.closed_until = boundary

    def render(self, now_ms: int, openmetrics: bool = True) -> str:
        """The metrics after closing what is due: OpenMetrics text, or the Prometheus text format
        0.0.4 (counter families named with `_total`, no `# EOF`)."""
        with self.lock:
            self.close_minutes(now_ms)
            out = []
            for name, help_text in COUNTERS:
                family = f"dualpub_sli_{name}" if openmetrics else f"dualpub_sli_{name}_total"
                out += [f"# TYPE {family} counter", f"# HELP {family} {help_text}"]
                for (n, labels), value in sorted(self.counters.items()):
                    if n == name:
                        out.append(f"dualpub_sli_{name}_total{{{_labels(labels)}}} {value}")
            for q in ("p50", "p99"):
                out += [f"# TYPE dualpub_sli_freshness_{q}_seconds gauge",
                        f"# HELP dualpub_sli_freshness_{q}_seconds Arrival minus timestamp of every copy in the last closed minute with copies ({q})."]
                for labels, (_, p50, p99) in sorted(self.freshness.items()):
                    value = p50 if q == "p50" else p99
                    if value is not None:
                        out.append(f"dualpub_sli_freshness_{q}_seconds{{{_labels(labels)}}} {value / 1000}")
            out += ["# TYPE dualpub_sli_closed_through_seconds gauge",
                    "# HELP dualpub_sli_closed_through_seconds The end of the last minute the counters include.",
                    f"dualpub_sli_closed_through_seconds {(self.closed_until or 0) / 1000}"]
            if openmetrics:
                out.append("# EOF")
            return "\n".join(out) + "\n"


def _labels(labels: tuple) -> str:
    pipeline, cfg, route = labels
    return f'pipeline="{pipeline}",cfg="{cfg}",route="{route}"'


def serve(exporter: Exporter, port: int) -> None:
    """Serves /metrics until interrupted."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (the http.server API)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            openmetrics = "application/openmetrics-text" in self.headers.get("Accept", "")
            try:
                body = exporter.render(int(time.time() * 1000), openmetrics).encode()
            except BackendError as e:
                self.send_error(503, str(e)[:200])
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8" if openmetrics
                             else "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"sli.py: serving http://0.0.0.0:{port}/metrics", file=sys.stderr, flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description="Per-minute SLIs of both pipelines as OpenMetrics (docs/VERIFY.md).")
    parser.add_argument("command", choices=("minutes", "metrics", "serve"))
    parser.add_argument("--capture", metavar="FILE", help="what the pipelines received (dualpub demo --capture), loaded into chDB")
    parser.add_argument("--reports", metavar="FILE", help="the devices' migration reports (dualpub demo --reports-out)")
    parser.add_argument("--clickhouse", metavar="URL", help="a ClickHouse server's HTTP interface instead of chDB")
    parser.add_argument("--json", action="store_true", help="minutes: one JSON array instead of a table")
    parser.add_argument("--now-ms", type=int, help="metrics: the time to close minutes up to (default now)")
    parser.add_argument("--text-format", action="store_true", help="metrics: the Prometheus text format 0.0.4 instead of OpenMetrics")
    parser.add_argument("--settle-secs", type=int, default=300, help="a minute is counted this long after it ended (default 300)")
    parser.add_argument("--lookback-secs", type=int, default=3600, help="the exporter starts this far back (default 3600)")
    parser.add_argument("--context-secs", type=int, default=3600,
                        help="the reconciliation reads locations this far before the minutes it closes (default 3600)")
    parser.add_argument("--port", type=int, default=9464)
    args = parser.parse_args(argv)
    if not args.capture and not args.clickhouse:
        parser.error("--capture or --clickhouse is required")
    try:
        backend = rollup.ClickHouseHttp(args.clickhouse) if args.clickhouse else rollup.Chdb()
    except ValueError as e:
        parser.error(f"--clickhouse: {e}")
    try:
        capture = load_files(backend, args.capture, args.reports) if args.capture else None
        if args.command == "minutes":
            # A capture: every minute its locations' timestamps fall in, reconciled over its window.
            arrivals = capture.span() if capture else (0, int(time.time() * 1000))
            rows = minutes(backend, *verify.ALL_TIME, *arrivals)
            print(json.dumps(rows) if args.json else "\n".join(
                f"{r['minute_ms']} {r['pipeline']:>6} cfg {r['cfg']:>4} {r['route']:>6}: owed {r['owed']} received {r['received']} "
                f"unseen {r['unseen']} gap {r['verifier_gap']} copies {r['copies']} fresh p50 {r['freshness_p50_ms']} p99 {r['freshness_p99_ms']}"
                for r in rows))
            return 0
        lookback = args.lookback_secs * 1000
        # A capture: everything it holds (its fixes may be older than the lookback), over its window.
        start, arrivals = (verify.ALL_TIME[0], capture.span()) if capture else (None, None)
        exporter = Exporter(backend, args.settle_secs * 1000, lookback, args.context_secs * 1000, start_ms=start, arrivals=arrivals)
        if args.command == "metrics":
            print(exporter.render(args.now_ms if args.now_ms is not None else int(time.time() * 1000), not args.text_format), end="")
            return 0
        serve(exporter, args.port)
        return 0
    except InputError as e:
        print(f"sli: {e}", file=sys.stderr)
        return 2
    except BackendError as e:
        print(f"sli: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
