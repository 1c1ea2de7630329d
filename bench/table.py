#!/usr/bin/env python3
"""The bench's figures: parse what run.sh recorded and print one markdown table.

    table.py OUT            the table for a whole run (OUT as run.sh printed it)
    table.py --summary RUN  one line for one load run (RUN = OUT/raw/ROUND.LOAD.PROXY)

Per load and proxy: requests/s (WebSocket: echoed messages/s), p50/p99 latency (WebSocket: of
a message's round trip), user and system CPU per request (message) of the edge
and of the gate (utime/stime from /proc/PID/stat, summed over the process and its children,
e.g. nginx's workers), and peak RSS (VmHWM, reset before each load run, summed likewise).
Rates, latencies and CPU are the median over rounds; peak RSS is the largest over rounds.
Every figure is also given as a ratio to the better of nginx and HAProxy.
"""

import os
import re
import statistics
import sys
from pathlib import Path

PROXIES = ["farmgate", "nginx", "haproxy"]
SHOWN = {"farmgate": "farmgate", "nginx": "nginx", "haproxy": "HAProxy"}
LOADS = {
    "keepalive": "keep-alive HTTP/1.1 (wrk -t2 -c64)",
    "handshake": "full TLS handshake per request (wrk -t2 -c64, Connection: close, no resumption)",
    "h2": "HTTP/2 multiplexed (h2load -t2 -c16 -m16)",
    "body1m": "1 MiB response body (wrk -t2 -c16)",
    "ws": "WebSocket echo, 32-byte messages (wsbench, 64 connections)",
    "keepalive-h2up": "keep-alive HTTP/1.1 (wrk -t2 -c64), HTTP/2 to the gate",
    "h2-h2up": "HTTP/2 multiplexed (h2load -t2 -c16 -m16), HTTP/2 to the gate",
    "body1m-h2up": "1 MiB response body (wrk -t2 -c16), HTTP/2 to the gate",
    "ws-h2up": "WebSocket echo, 32-byte messages (wsbench, 64 connections), HTTP/2 to the gate",
}
# What a proxy cannot do: its cells say so instead of a figure.
CANNOT = {(load, "nginx"): "n/a (no HTTP/2 upstreams)" for load in LOADS if load.endswith("-h2up")}
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

# (key, label, higher is better, format)
FIGURES = [
    ("rps", "requests/s", True, "{:,.0f}"),
    ("p50", "p50 latency (ms)", False, "{:.2f}"),
    ("p99", "p99 latency (ms)", False, "{:.2f}"),
    ("edge_user", "edge user CPU (µs/req)", False, "{:.1f}"),
    ("edge_sys", "edge system CPU (µs/req)", False, "{:.1f}"),
    ("gate_user", "gate user CPU (µs/req)", False, "{:.1f}"),
    ("gate_sys", "gate system CPU (µs/req)", False, "{:.1f}"),
    ("both_user", "edge + gate user CPU (µs/req)", False, "{:.1f}"),
    ("edge_cpu", "edge user + system CPU (µs/req)", False, "{:.1f}"),
    ("edge_rss", "edge peak RSS (MiB)", False, "{:.1f}"),
    ("gate_rss", "gate peak RSS (MiB)", False, "{:.1f}"),
]


def to_ms(text):
    """wrk's '812.00us', '2.45ms', '1.20s' in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unreadable duration {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def parse_wrk(text):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "requests": requests, "p50": p50, "p99": p99, "errors": errors}


def parse_wsbench(text):
    m = re.search(
        r"wsbench: \d+ connections \((\d+) failed\), \d+-byte messages, [\d.]+ s: (\d+) messages, "
        r"([\d.]+) messages/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms, (\d+) errors",
        text,
    )
    failed, messages, rate, p50, p99, errors = m.groups()
    return {
        "rps": float(rate),
        "requests": int(messages),
        "p50": float(p50),
        "p99": float(p99),
        "errors": int(failed) + int(errors),
    }


def parse_h2load(text, log):
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    requests, failed, errored = int(m.group(2)), int(m.group(4)), int(m.group(5))
    codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    errors = failed + errored + (int(codes.group(1)) + int(codes.group(2)) if codes else 0)
    durations = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.count("\t") >= 2)
    if not durations:
        raise ValueError(f"{log}: no requests logged")
    pick = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))] / 1000
    return {"rps": rps, "requests": requests, "p50": pick(0.50), "p99": pick(0.99), "errors": errors}


def read_proc(path):
    """{pid: (utime ticks, stime ticks, VmHWM KiB)}"""
    out = {}
    for line in path.read_text().splitlines():
        pid, user, system, hwm = line.split()
        out[pid] = (int(user), int(system), int(hwm or 0))
    return out


def cpu_and_rss(run, role):
    before = read_proc(Path(f"{run}.{role}.before"))
    after = read_proc(Path(f"{run}.{role}.after"))
    user = sum(after[p][0] - before[p][0] for p in after if p in before)
    system = sum(after[p][1] - before[p][1] for p in after if p in before)
    rss = sum(v[2] for v in after.values())
    return user * TICK_US, system * TICK_US, rss / 1024


def one_run(run):
    """Every figure of one load run (run = OUT/raw/ROUND.LOAD.PROXY)."""
    text = Path(f"{run}.load").read_text()
    load = Path(run).name.split(".")[1].removesuffix("-h2up")
    if load in ("keepalive", "handshake", "body1m"):
        r = parse_wrk(text)
    elif load == "ws":
        r = parse_wsbench(text)
    else:
        r = parse_h2load(text, Path(f"{run}.load.log"))
    n = max(r["requests"], 1)
    eu, es, r["edge_rss"] = cpu_and_rss(run, "edge")
    gu, gs, r["gate_rss"] = cpu_and_rss(run, "gate")
    r.update(edge_user=eu / n, edge_sys=es / n, gate_user=gu / n, gate_sys=gs / n)
    r["both_user"] = r["edge_user"] + r["gate_user"]
    r["edge_cpu"] = r["edge_user"] + r["edge_sys"]
    return r


def summary(run):
    r = one_run(run)
    errors = f", {r['errors']} errors" if r["errors"] else ""
    unit = "msg" if Path(run).name.split(".")[1].startswith("ws") else "req"
    return (
        f"{r['rps']:,.0f} {unit}/s, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
        f"user µs/{unit} edge {r['edge_user']:.1f} gate {r['gate_user']:.1f}, "
        f"sys µs/{unit} edge {r['edge_sys']:.1f} gate {r['gate_sys']:.1f}{errors}"
    )


def table(out):
    runs = {}
    for load_file in sorted((out / "raw").glob("*.*.*.load")):
        _, load, proxy = load_file.name.removesuffix(".load").split(".")
        try:
            runs.setdefault((load, proxy), []).append(one_run(str(load_file).removesuffix(".load")))
        except (AttributeError, ValueError, FileNotFoundError, KeyError) as e:
            print(f"skipped {load_file}: {e}", file=sys.stderr)
    proxies = [p for p in PROXIES if any(k[1] == p for k in runs)]
    lines = []
    machine = out / "machine.txt"
    if machine.exists():
        lines += ["```", machine.read_text().rstrip(), "```", ""]
    lines.append("| load | figure | " + " | ".join(SHOWN[p] for p in proxies) + " |")
    lines.append("|---|---|" + "---:|" * len(proxies))
    for load, title in LOADS.items():
        if not any(k[0] == load for k in runs):
            continue
        for key, label, higher, fmt in FIGURES:
            if load.startswith("ws"):
                label = label.replace("requests/s", "messages/s").replace("/req)", "/msg)")
                label = label.replace(" latency", " round trip")
            values = {}
            for p in proxies:
                rs = runs.get((load, p), [])
                if rs:
                    xs = [r[key] for r in rs]
                    values[p] = max(xs) if key.endswith("_rss") else statistics.median(xs)
            others = [values[p] for p in ("nginx", "haproxy") if p in values]
            best = (max if higher else min)(others) if others else None
            cells = []
            for p in proxies:
                if p not in values:
                    cells.append(CANNOT.get((load, p), "–"))
                    continue
                cell = fmt.format(values[p])
                if best:
                    cell += f" ({values[p] / best:.2f}×)"
                cells.append(cell)
            lines.append(f"| {title} | {label} | " + " | ".join(cells) + " |")
    errors = {k: sum(r["errors"] for r in v) for k, v in runs.items() if any(r["errors"] for r in v)}
    lines.append("")
    lines.append(
        "Medians over rounds; peak RSS is the largest over rounds of the high-water mark, reset "
        "before each load run (so it starts from what the process still holds from earlier "
        "loads), summed over a proxy's processes (nginx: master and workers). In brackets the "
        "ratio to the better of nginx and HAProxy (for requests/s higher is better, for "
        "everything else lower). The WebSocket rows count echoed messages and their round "
        "trips. The rows marked \"HTTP/2 to the gate\" go through a second edge whose upstream "
        "speaks HTTP/2 to the same gate (farmgate `protocol = \"h2\"`, HAProxy `proto h2`); "
        "nginx cannot proxy to an HTTP/2 upstream."
    )
    if errors:
        lines.append("Errors (non-2xx, socket errors, failed requests): " +
                     ", ".join(f"{l} {SHOWN[p]} {n}" for (l, p), n in sorted(errors.items())))
    return "\n".join(lines)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--summary":
        print(summary(sys.argv[2]))
    elif len(sys.argv) == 2:
        print(table(Path(sys.argv[1])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
