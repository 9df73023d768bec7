#!/usr/bin/env python3
"""Writes docs/PERFORMANCE.md from the outputs `scripts/performance` collected under
target/performance (and the radio harness's target/radio/radio.json): every figure with the
baseline it is compared with, measured in the same run, and each target met or its gap stated.
Nothing here is measured or typed in by hand: a figure that is missing says so."""

import json
import pathlib
import platform
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PERF = ROOT / "target" / "performance"


def read(path):
    p = pathlib.Path(path)
    return p.read_text(encoding="utf-8") if p.exists() else None


def machine():
    cpu = "unknown CPU"
    info = read("/proc/cpuinfo") or ""
    m = re.search(r"model name\s*:\s*(.+)", info)
    if m:
        cpu = m.group(1).strip()
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores ({cpu}), Linux {platform.release()}, commit {commit}{' with uncommitted changes' if dirty else ''}"


def run_of(runs, workload, system):
    return next((r for r in runs if r["workload"] == workload and r["system"] == system), None)


def cost(run, tail=10.0):
    c = next(c for c in run["analysis"]["costs"] if c["tail_s"] == tail)
    return c["promotions"] * run["per_hour"], c["radio_on_s"] * run["per_hour"], c["single_backend_bursts"], c["promotions"]


def bytes_per_location(run):
    b = run["analysis"]["backends"]
    total = sum(v["bytes_up"] + v["bytes_down"] for v in b.values())
    return total / max(run["sent"], 1)


def per_1k(run, value):
    """`value` per 1,000 locations the run sent."""
    return value * 1000 / max(run["sent"], 1)


def tls_cost_cell(run):
    """Mean handshake bytes (client + server first flights) of a run's full and resumed
    handshakes, both backends, and the handshake bytes per burst (T = 10 s)."""
    flights = [run["tls_mqtt"], run["tls_pubsub"]]
    full_n, res_n = sum(f["full"] for f in flights), sum(f["resumed"] for f in flights)
    full_b = sum(f["full_bytes_up"] + f["full_bytes_down"] for f in flights)
    res_b = sum(f["resumed_bytes_up"] + f["resumed_bytes_down"] for f in flights)
    bursts = cost(run)[3]
    mean = lambda b, n: f"{b / n:.0f} B" if n else "none"
    return (f"full handshake {mean(full_b, full_n)} ×{full_n}, resumed {mean(res_b, res_n)} ×{res_n}, "
            f"{(full_b + res_b) / max(bursts, 1):.0f} B of handshakes per burst")


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "n/a"


def verdict(ok):
    return "met" if ok else "**not met**"


MEMORY_CASES = {"send": "sendLocation", "batch": "sendLocations", "restore": "restart"}


def memory_target(mem):
    """The Targets row of the memory harness (`dualpub bench memory`): every case with the
    target's count of locations queued, met only if each is."""
    title = "peak RSS with 100,000 queued ≤ 15 MB above idle"
    rows = [r for r in (mem or {}).get("rows", []) if r["count"] == mem["targetCount"]]
    if not rows:
        return f"| {title} | not measured: target/performance/memory.json is missing | | **not run** |"
    measured = "; ".join(f"{MEMORY_CASES.get(r['case'], r['case'])} {r['peakMinusIdleMb']:.1f} MB ({r['bytesPerLocation']:.0f} B per location)"
                         for r in rows)
    first = rows[0]
    small = next((r for r in mem["rows"] if r["count"] == 1000 and r["case"] == first["case"]), None)
    baseline = f"idle {first['idleMb']:.1f} MB" + (f"; 1,000 queued: {small['peakMinusIdleMb']:.1f} MB above it" if small else "")
    return f"| {title} | {measured} (profile `{mem['profile']}`) | {baseline} | {verdict(all(r['targetMet'] for r in rows))} |"


def throughput_rows(t):
    """The window-0 throughput and backlog targets from `dualpub bench throughput` (its JSON)."""
    if not t or not t.get("rounds"):
        return ["| window 0 throughput ≥ 0.8 × bare rumqttc + reqwest loops; 10,000 backlog in ≤ 5 s | "
                "(not run: target/performance/throughput.json is missing) | | |"]
    rounds = t["rounds"]
    ratios = ", ".join(f"{r['ratio']:.2f}×" for r in rounds)
    drains = ", ".join(f"{r['backlog']['seconds']:.2f}" for r in rounds)
    requests = sorted({r["backlog"]["pubsub_requests"] for r in rounds})
    floor = t["backlog"] / t["median_bare_per_sec"] if t["median_bare_per_sec"] else float("nan")
    ratio, drain = t["median_ratio"], t["median_backlog_s"]
    return [
        f"| window 0 throughput ≥ 0.8 × bare rumqttc + reqwest loops | {t['median_sdk_per_sec']:,.0f} locations/s, "
        f"**{ratio:.2f}×** (median of {len(rounds)} rounds: {ratios}) | bare loops {t['median_bare_per_sec']:,.0f} locations/s "
        f"| {verdict(ratio >= 0.8)} |",
        f"| a {t['backlog']:,}-location backlog drained in ≤ 5 s | {drain:.2f} s (median; rounds {drains} s; "
        f"{'/'.join(map(str, requests))} Pub/Sub requests) | {floor:.2f} s at the bare loops' rate | "
        f"{verdict(t['backlog'] >= 10_000 and drain <= 5.0)} |",
    ]


def per_location(run, backend, way):
    """Bytes per location one way on one backend's link."""
    return run["analysis"]["backends"][backend][way] / max(run["sent"], 1)


# A fleet device's month: a location a second, 8 hours a day, 22 days.
LOCATIONS_PER_MONTH = 3600 * 8 * 22


def monthly_data(radio):
    """Megabytes per device per month in each rollout state, from the 1 Hz runs' wire bytes (TLS,
    both ways) per location on each transport: MQTT only, both, Pub/Sub only. The two transports
    use separate connections, so a state's bytes are its transports' bytes of the same run."""
    lines = ["## Data per device per month\n",
             f"At a location a second, 8 hours a day, 22 days a month ({LOCATIONS_PER_MONTH:,} locations), from the 1 Hz "
             "runs above: every byte of TCP payload both ways (TLS records: handshakes, session tickets, application data; not "
             "TCP/IP headers or ACKs), per "
             "location on each transport, times the month's locations. MB = 10^6 bytes. Beside them, what each system "
             "handed its transports (MQTT payloads, Pub/Sub request bodies as sent, every attempt; in brackets the "
             "Pub/Sub bodies before gzip, docs/CONTRACT.md#compression): the rest is protocol and TLS.\n",
             "| system | app-layer B per location sent, MQTT / Pub/Sub (before gzip) | on the wire, MQTT | on the wire, Pub/Sub | MQTT only, MB/month | both, MB/month | Pub/Sub only, MB/month |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("dualpub-w30", "dualpub-w0", "peer"):
        run = run_of(radio, "1hz", name)
        if not run:
            continue
        m = per_location(run, "mqtt", "bytes_up") + per_location(run, "mqtt", "bytes_down")
        p = per_location(run, "pubsub", "bytes_up") + per_location(run, "pubsub", "bytes_down")
        mb = lambda b: f"{b * LOCATIONS_PER_MONTH / 1e6:.0f}"
        d, n = run.get("device") or {}, max(run["sent"], 1)
        app = (f"{d['mqttBytesSent'] / n:.0f} / {d['pubsubBytesSent'] / n:.0f}"
               if "mqttBytesSent" in d and "pubsubBytesSent" in d else "-")
        if "pubsubUncompressedBytes" in d:
            app += f" ({d['pubsubUncompressedBytes'] / n:.0f})"
        lines.append(f"| {name} | {app} | {m:.0f} | {p:.0f} | {mb(m)} | {mb(m + p)} | {mb(p)} |")
    lines.append("")
    return lines


def gaps(w30, peer, tput, kotlin, outage=None):
    """The targets not met, each with the cause measured in this run."""
    lines = ["## Targets not met: the causes measured in this run\n"]
    f = (outage or {}).get("outage") or {}
    n = f.get("backlog_pubsub_requests")
    if n is not None and n > 4:
        sent = f["backlog_pubsub"]["sent"]
        lines.append(f"- **Backlog requests.** {n} Pub/Sub requests carried the {sent:,}-location backlog after the outage, "
                     "where 4 would have at most 1,000 messages each. Requests are paced to the link "
                     "(docs/CONTRACT.md#stalls-and-slow-links): with no answer yet, the first carries 40 KiB (about 60 "
                     "locations) so that a slow link is not sent a batch that times out whole; its answer measures the link "
                     "and the next ones carry full batches of 1,000. A burst's target and the locations accepted meanwhile "
                     "account for the rest. The price of not resending everything on a 16 KB/s link (docs/NETWORK.md).")
    if w30 and peer and bytes_per_location(w30) > 0.5 * bytes_per_location(peer):
        m_up, ps_up, ps_down = (per_location(w30, "mqtt", "bytes_up"), per_location(w30, "pubsub", "bytes_up"), per_location(w30, "pubsub", "bytes_down"))
        pm_up, pps_up, pps_down = (per_location(peer, "mqtt", "bytes_up"), per_location(peer, "pubsub", "bytes_up"), per_location(peer, "pubsub", "bytes_down"))
        hs = sum(w30[k]["full_bytes_up"] + w30[k]["full_bytes_down"] + w30[k]["resumed_bytes_up"] + w30[k]["resumed_bytes_down"]
                 for k in ("tls_mqtt", "tls_pubsub") if k in w30) / max(w30["sent"], 1)
        lines.append(f"- **Bytes per location.** Over TLS, at 1 Hz with the window the SDK sends {m_up:.0f} B per location up on MQTT (one "
                     f"QoS 1 PUBLISH per location: the wire JSON, its topic and header, in TLS records; and a resumed TLS handshake "
                     f"per burst, {hs:.0f} B per location of both backends' handshake flights) and {ps_up:.0f} B up / {ps_down:.0f} B down on "
                     f"Pub/Sub (the same JSON base64-encoded, a third larger, with its attributes; one request per burst); the peer "
                     f"{pm_up:.0f} B on MQTT and {pps_up:.0f} B up / {pps_down:.0f} B down on Pub/Sub (a request per location). The "
                     f"window already removed the per-request HTTP bytes ({pps_down - ps_down:.0f} B down per location); what is left "
                     "is each location's JSON carried twice, base64 on one side, which only a wire-contract change (compressed or "
                     "binary payloads, several locations per MQTT message) could halve (docs/CONTRACT.md).")
    rounds = (tput or {}).get("rounds") or []
    if rounds and not tput.get("ratio_met"):
        def cpu_us(side, keys):
            values = sorted(sum(r[side]["cpu"][k] for k in keys) * 1000.0 / r[side]["locations"] for r in rounds)
            return values[len(values) // 2]
        sdk, bare = cpu_us("sdk", ("caller", "sdk", "store")), cpu_us("bare", ("bare",))
        store, backends = cpu_us("sdk", ("store",)), cpu_us("sdk", ("backends", "subscribers"))
        lines.append(f"- **Window-0 throughput.** The SDK spends {sdk:.0f} µs of CPU per location (median of the rounds; "
                     f"{store:.0f} µs of it on the store thread) against the bare loops' {bare:.0f} µs: it persists every location "
                     "and every change of its state (an INSERT, then an UPDATE and a DELETE as the acknowledgements come, and the "
                     "reports' tally with each commit), where the loops keep nothing. On two cores that mosquitto, the emulator and "
                     f"the subscribers already fill ({backends:.0f} µs per location in the SDK's rounds), that CPU is time.")
    if kotlin:
        shape = re.search(r"`BenchObject\.echoId\(location\): String`[^\n]*?\|\s*([0-9.]+)×\s*\|\s*$", kotlin, re.M)
        real = re.search(r"\*\*sendLocation p50 / floor p50 = ([0-9.]+)×\*\*", kotlin)
        versus = re.search(r"same-shape no-op `BenchObject\.echoId`: p50 ([0-9.]+)×", kotlin)
        if shape and real and float(real.group(1)) > 1.2:
            lines.append(f"- **Kotlin call cost.** A no-op with sendLocation's exact shape (a method on an object: the handle "
                         f"cloned, the record passed, a String or an error returned) already costs {float(shape.group(1)):.2f}× the "
                         "floor of an empty function taking the record, with nothing done: JNA's extra calls and buffers for the "
                         f"handle, the returned string and the error status. The real call is {float(real.group(1)):.2f}× the floor"
                         + (f", {float(versus.group(1)):.2f}× that no-op" if versus else "")
                         + ". Reaching 1.2× needs a different exported shape (docs/FFI-BENCH.md).")
    if len(lines) == 1:
        lines.append("Every target is met.")
    lines.append("")
    return lines


def main():
    out = []
    radio = json.loads(read(ROOT / "target" / "radio" / "radio.json") or "[]")
    w30, w0, peer = "dualpub-w30", "dualpub-w0", "peer"
    out.append("# Performance\n")
    out.append("Generated by `./scripts/performance` (it runs every measurement below and rewrites this file "
               "with `scripts/performance.py`; nothing in it is typed in by hand). Machine: " + machine() + ". "
               "The machine is shared and noisy: compare ratios taken in the same run, not absolute figures "
               "across runs.\n")
    out.append("Time in the radio figures is scaled ×30 (docs/RADIO.md: what is scaled, what is not, and what the "
               "scaling distorts); `dualpub-w30` is the SDK with a 30 s upload window, `dualpub-w0` the SDK sending "
               "at once, `peer` the seed design (tools/peer).\n")

    # Headline.
    out.append("## Radio: promotions and radio-on time per hour (tail T = 10 s)\n")
    out.append("| workload | dualpub-w30 promotions | peer promotions | dualpub-w0 promotions | dualpub-w30 radio-on s | peer radio-on s | dualpub-w0 radio-on s | w30 / peer radio-on |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for wl in ("1hz", "0.2hz", "1/30hz", "outage"):
        rows = [run_of(radio, wl, s) for s in (w30, peer, w0)]
        if not all(rows):
            out.append(f"| {wl} | (not run) | | | | | | |")
            continue
        c = [cost(r) for r in rows]
        out.append(f"| {wl} | {c[0][0]:.0f} | {c[1][0]:.0f} | {c[2][0]:.0f} | {c[0][1]:.0f} | {c[1][1]:.0f} | {c[2][1]:.0f} | {ratio(c[0][1], c[1][1])} |")
    out.append("")

    # Targets.
    out.append("## Targets\n")
    out.append("| target | measured | baseline, same run | |")
    out.append("|---|---|---|---|")
    a, p, z = run_of(radio, "1hz", w30), run_of(radio, "1hz", peer), run_of(radio, "1hz", w0)
    if a and p and z:
        pa, pp = cost(a), cost(p)
        out.append(f"| promotions ≤ 121 / h (1 Hz) | {pa[0]:.0f} | peer {pp[0]:.0f}, window 0 {cost(z)[0]:.0f} | {verdict(pa[0] <= 121)} |")
        out.append(f"| radio-on ≤ 1,350 s / h (1 Hz) | {pa[1]:.0f} | peer {pp[1]:.0f}, window 0 {cost(z)[1]:.0f} | {verdict(pa[1] <= 1350)} |")
        share = pa[2] / pa[3] if pa[3] else 0.0
        out.append(f"| bursts carrying one transport ≤ 1 % | {pa[2]} of {pa[3]} ({share:.1%}) | peer {pp[2]} of {pp[3]} | {verdict(share <= 0.01)} |")
        req = per_1k(a, a["pubsub_requests"])
        out.append(f"| Pub/Sub requests ≤ 34 per 1,000 locations | {req:.1f} | peer {per_1k(p, p['pubsub_requests']):.0f} | {verdict(req <= 34)} |")
        conns = a["analysis"]["backends"]["mqtt"]["connections"] * a["per_hour"]
        out.append(f"| MQTT connections ≤ 1 / h, or the energy case for connect-per-burst | {conns:.0f} / h (one per burst: ARCHITECTURE.md, \"Why MQTT connects per burst\") | peer {p['analysis']['backends']['mqtt']['connections'] * p['per_hour']:.0f} / h | connect-per-burst, by design |")
        ba, bp = bytes_per_location(a), bytes_per_location(p)
        out.append(f"| bytes per location ≤ 0.5 × peer | {ba:.0f} B | peer {bp:.0f} B ({ratio(ba, bp)}) | {verdict(ba <= 0.5 * bp)} |")
        pa_up, pp_up = per_location(a, "pubsub", "bytes_up"), per_location(p, "pubsub", "bytes_up")
        out.append(f"| Pub/Sub ≤ 200 B up per location (1 Hz) | {pa_up:.0f} B | peer {pp_up:.0f} B ({ratio(pa_up, pp_up)}) | {verdict(pa_up <= 200)} |")
        ca, cp = per_1k(a, a["cpu_ms"]), per_1k(p, p["cpu_ms"])
        out.append(f"| CPU per 1,000 locations ≤ 0.5 × peer | {ca:.0f} ms | peer {cp:.0f} ms ({ratio(ca, cp)}) | {verdict(ca <= 0.5 * cp)} |")
        if a.get("fsyncs") is not None:
            fs = per_1k(a, a["fsyncs"])
            out.append(f"| fsyncs ≤ 20 per 1,000 locations | {fs:.1f} | window 0 {per_1k(z, z['fsyncs']):.1f} | {verdict(fs <= 20)} |")
    if a and a.get("tls_mqtt"):
        t = a["tls_mqtt"]
        n = t["full"] + t["resumed"]
        share = t["resumed"] / (n - 1) if n > 1 else 0.0
        out.append(f"| ≥ 90 % of burst reconnects resume their TLS session (MQTT, mosquitto, 1 Hz) | {t['resumed']} of {n - 1} reconnects ({share:.0%}) | {tls_cost_cell(a)}; peer: {tls_cost_cell(p) if p else 'not run'} | {verdict(n > 1 and share >= 0.9)} |")
    o = run_of(radio, "outage", w30)
    if o and o.get("outage"):
        f = o["outage"]
        attempts = max(f["attempts_mqtt"], f["attempts_pubsub"])
        out.append(f"| an hour down: ≤ 20 attempts per transport | MQTT {f['attempts_mqtt']}, Pub/Sub {f['attempts_pubsub']} (the SDK's own backoffs are not scaled: docs/RADIO.md) | peer: see the outage rows below | {verdict(attempts <= 20)} |")
        n = f.get("backlog_pubsub_requests")
        sent = f['backlog_pubsub']['sent']
        carried = f"{n} Pub/Sub requests from the restore until the last arrived" if n is not None else "they never all arrived on Pub/Sub"
        out.append(f"| the {sent:,}-location backlog leaves in one burst, ≤ 4 Pub/Sub requests | MQTT {f['backlog_mqtt']['delivered']}/{f['backlog_mqtt']['sent']}, Pub/Sub {f['backlog_pubsub']['delivered']}/{sent} delivered; {carried} | | {verdict(n is not None and n <= 4 and f['backlog_mqtt']['delivered'] == f['backlog_mqtt']['sent'])} |")
    kb = read(PERF / "kotlin-bench.md")
    if kb:
        m = re.search(r"\*\*sendLocation p50 / floor p50 = ([0-9.]+)×\*\*", kb)
        if m:
            r = float(m.group(1))
            out.append(f"| Kotlin `sendLocation` p50 ≤ 1.2 × an empty exported call | {r:.2f}× | the floor in the same JVM run (docs/FFI-BENCH.md: why) | {verdict(r <= 1.2)} |")
    size = read(PERF / "size.txt")
    if size:
        m = re.search(r"libdualpub\.so: ([0-9]+) bytes", size)
        if m:
            b = int(m.group(1))
            out.append(f"| stripped library ≤ 4 MB (4,000,000 bytes) | {b:,} bytes | | {verdict(b <= 4_000_000)} |")
    out.append(memory_target(json.loads(read(PERF / "memory.json") or "null")))
    out.extend(throughput_rows(json.loads(read(PERF / "throughput.json") or "null")))
    out.append("")
    out.extend(gaps(a, p, json.loads(read(PERF / "throughput.json") or "null"), read(PERF / "kotlin-bench.md"), run_of(radio, "outage", w30)))

    out.extend(monthly_data(radio))

    # Details.
    for title, name in (("Radio: every figure", ROOT / "target" / "radio" / "radio.md"),
                        ("Memory: an offline device with its backlog queued", PERF / "memory.md"),
                        ("Window-0 throughput and the backlog drain (dualpub bench throughput)", PERF / "throughput.md"),
                        ("Kotlin call cost", PERF / "kotlin-bench.md"),
                        ("Library size", PERF / "size.txt"),
                        ("Rust: sendLocation and the durable rate (cargo bench --bench send_location)", PERF / "send_location.txt"),
                        ("Pub/Sub bodies: what gzip costs and saves (cargo bench --bench gzip)", PERF / "gzip.md")):
        text = read(name)
        out.append(f"## {title}\n")
        if text is None:
            out.append(f"(not run: {name.relative_to(ROOT)} is missing)\n")
        elif name.suffix == ".md":
            out.append(text.strip() + "\n")
        else:
            out.append("```\n" + text.strip() + "\n```\n")
    (ROOT / "docs" / "PERFORMANCE.md").write_text("\n".join(out), encoding="utf-8")
    print("wrote docs/PERFORMANCE.md")


if __name__ == "__main__":
    sys.exit(main())
