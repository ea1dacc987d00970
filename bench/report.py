#!/usr/bin/env python3
"""Report of a bench/sysbench.sh run: markdown tables, an SVG plot, targets.

  bench/report.py [RAW.jsonl] [--out DIR] [--strict]

RAW.jsonl is the file of raw records bench/sysbench.sh wrote (one JSON
object per line: a "meta" record, then one "run" record per sysbench run);
by default the newest DIR/raw/*.jsonl. DIR defaults to bench/results.

Writes DIR/<UTC date>-<host>.md and DIR/<UTC date>-<host>.svg (date and host
of the run), copies them to DIR/latest.md and DIR/latest.svg, and prints the
PASS/FAIL line of every target. With --strict the exit status is 1 when a
target failed or could not be evaluated. When DIR/connections-latest.json
(bench/connections.py) exists, its summary is added to the report.

Python 3 standard library only; the SVG is written by hand.
"""

import argparse
import glob
import json
import os
import shutil
import sys
from collections import defaultdict

TARGETS = ("direct", "haproxy", "rwsplit")
COLOURS = {"direct": "#9e9e9e", "haproxy": "#3b75af", "rwsplit": "#ef8636"}
TARGET_THREADS = 16
MAX_CPU_RATIO = 1.2
MIN_QPS_RATIO = 0.92
MAX_P95_RATIO = 1.1
MAX_REPLICA_DIFF = 0.05


def load(path):
    meta, runs = {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            if rec.get("type") == "meta":
                meta = rec
            elif rec.get("type") == "run":
                runs.append(rec)
    return meta, runs


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def aggregate(runs):
    """(test, threads, target) -> summary of its runs."""
    groups = defaultdict(list)
    for r in runs:
        groups[(r["test"], r["threads"], r["target"])].append(r)
    out = {}
    for key, rs in groups.items():
        qps = [r["qps"] for r in rs]
        with_cpu = [r for r in rs if r.get("cpu_ticks") is not None]
        cpu_us = None
        if with_cpu:
            ticks = sum(r["cpu_ticks"] for r in with_cpu)
            queries = sum(r["queries"] for r in with_cpu)
            hz = with_cpu[0]["clk_tck"]
            cpu_us = ticks / hz * 1e6 / queries if queries else None
        out[key] = {
            "runs": len(rs),
            "qps": mean(qps),
            "qps_min": min(qps),
            "qps_max": max(qps),
            "p95": mean([r["p95_ms"] for r in rs]),
            "errors": sum(r.get("errors") or 0 for r in rs),
            "reconnects": sum(r.get("reconnects") or 0 for r in rs),
            "cpu_us": cpu_us,
            "busy": mean([r.get("host_busy_pct") for r in rs]),
            "r1_share": share(sum(r.get("selects_replica1") or 0 for r in rs),
                              sum(r.get("selects_replica2") or 0 for r in rs)),
            "thread_cv": mean([r.get("thread_cv") for r in rs]),
        }
    return out


def share(a, b):
    return a / (a + b) if a + b > 0 else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(x, digits=0, none="–"):
    if x is None:
        return none
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def pct(x):
    return "–" if x is None else f"{100 * x:.0f} %"


def cells(agg):
    tests = sorted({k[0] for k in agg}, key=lambda t: (t != "oltp_point_select", t))
    return [(t, th) for t in tests for th in sorted({k[1] for k in agg if k[0] == t})]


def evaluate(agg, runs):
    """[(name, verdict, detail)], verdict PASS, FAIL or SKIP."""
    results = []
    tests = sorted({k[0] for k in agg})
    for test in ("oltp_point_select", "oltp_read_only"):
        h = agg.get((test, TARGET_THREADS, "haproxy"))
        r = agg.get((test, TARGET_THREADS, "rwsplit"))
        checks = [
            ("CPU per query", "cpu_us", "<=", MAX_CPU_RATIO, "µs/query"),
            ("throughput", "qps", ">=", MIN_QPS_RATIO, "QPS"),
            ("p95 latency", "p95", "<=", MAX_P95_RATIO, "ms"),
        ]
        for label, field, op, limit, unit in checks:
            name = f"{test} {TARGET_THREADS} threads: rwsplit {label} {op} {limit} x haproxy's"
            if test not in tests or h is None or r is None:
                results.append((name, "SKIP", f"not measured at {TARGET_THREADS} threads"))
                continue
            q = ratio(r[field], h[field])
            if q is None:
                results.append((name, "SKIP", "no data"))
                continue
            ok = q <= limit if op == "<=" else q >= limit
            digits = 3 if field == "p95" else (2 if field == "cpu_us" else 0)
            detail = (f"{q:.3f} ({fmt(r[field], digits)} vs {fmt(h[field], digits)} {unit})")
            results.append((name, "PASS" if ok else "FAIL", detail))

    name = (f"replica balance under rwsplit, oltp_read_only {TARGET_THREADS} threads: "
            f"counts differ by <= {MAX_REPLICA_DIFF:.0%}")
    bal = [r for r in runs if r["target"] == "rwsplit" and r["test"] == "oltp_read_only"
           and r["threads"] == TARGET_THREADS]
    if not bal:
        results.append((name, "SKIP", f"oltp_read_only not measured at {TARGET_THREADS} threads"))
    else:
        a = sum(r["selects_replica1"] for r in bal)
        b = sum(r["selects_replica2"] for r in bal)
        diff = abs(a - b) / max(a, b) if max(a, b) else 1.0
        verdict = "PASS" if max(a, b) and diff <= MAX_REPLICA_DIFF else "FAIL"
        results.append((name, verdict,
                        f"replica1 {a:,} / replica2 {b:,} Com_select, difference {diff:.2%} "
                        f"of the larger"))

    name = "no errors or reconnects through rwsplit"
    rw = [r for r in runs if r["target"] == "rwsplit"]
    if not rw:
        results.append((name, "SKIP", "no rwsplit runs"))
    else:
        e = sum(r.get("errors") or 0 for r in rw)
        c = sum(r.get("reconnects") or 0 for r in rw)
        results.append((name, "PASS" if e == 0 and c == 0 else "FAIL",
                        f"{e} errors, {c} reconnects in {len(rw)} runs"))
    return results


# ------------------------------------------------------------------ SVG

def nice_max(v):
    """An axis maximum >= v: five steps of 1, 2, 2.5 or 5 x 10^k. Returns (max, step)."""
    if not v or v <= 0:
        return 1.0, 0.2
    raw = v / 5
    mag = 1.0
    while mag * 10 <= raw:
        mag *= 10
    while mag > raw:
        mag /= 10
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if step * 5 >= v:
            return step * 5, step
    return 50 * mag, 10 * mag


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def short(v):
    """A bar's value label."""
    if v is None:
        return ""
    if v >= 100000:
        return f"{v / 1000:.0f}k"
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def tick(v):
    """An axis label: 0, 0.05, 2.5, 40, 12.5k."""
    v = round(v, 9)
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def svg(agg, meta):
    """Grouped bars: one row of panels per test (QPS, p95, proxy CPU per
    query), in each panel one group per thread count, one bar per target."""
    tests = []
    for t, _ in cells(agg):
        if t not in tests:
            tests.append(t)
    metrics = [
        ("queries/s", "qps", TARGETS),
        ("p95 latency, ms", "p95", TARGETS),
        ("proxy CPU per query, µs", "cpu_us", ("haproxy", "rwsplit")),
    ]
    bar_w, gap = 20, 18
    group_w = 3 * bar_w + gap
    n_threads = max(len([c for c in cells(agg) if c[0] == t]) for t in tests)
    axis_w, pad = 46, 24
    pw = max(230, axis_w + n_threads * group_w + 10)
    ph, head = 170, 92
    row_h = ph + 90
    width = len(metrics) * (pw + pad) + pad
    height = head + len(tests) * row_h + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    out.append(f'<text x="{pad}" y="22" font-size="14" font-weight="bold">'
               f'rwsplit, haproxy (TCP) and the replicas directly: sysbench</text>')
    sub = (f"{meta.get('date', '?')}, host {meta.get('host', '?')}, {meta.get('nproc', '?')} CPUs, "
           f"{meta.get('time_s', '?')} s per run, rwsplit {meta.get('rwsplit_commit', '?')}; "
           f"means of the runs (direct 1, proxies 2 each)")
    out.append(f'<text x="{pad}" y="40" fill="#444">{esc(sub)}</text>')
    lx = pad
    for t in TARGETS:
        out.append(f'<rect x="{lx}" y="50" width="12" height="12" fill="{COLOURS[t]}"/>')
        out.append(f'<text x="{lx + 16}" y="60">{t}</text>')
        lx += 80
    out.append(f'<text x="{lx}" y="60" fill="#555">direct = sysbench on both replica ports, '
               f'no proxy (no proxy CPU)</text>')

    for ri, test in enumerate(tests):
        threads = [th for t, th in cells(agg) if t == test]
        y_top = head + ri * row_h
        label = test + (" (--skip_trx=on)" if test == "oltp_read_only" else " (prepared statements)")
        out.append(f'<text x="{pad}" y="{y_top + 4}" font-size="13" font-weight="bold">'
                   f'{esc(label)}</text>')
        for mi, (title, field, targets) in enumerate(metrics):
            x0 = pad + mi * (pw + pad)
            vmax = max((agg[(test, th, tg)][field] or 0 for th in threads for tg in targets
                        if (test, th, tg) in agg), default=0)
            axis_max, step = nice_max(vmax * 1.1 if vmax else 1)
            base = y_top + 36 + ph
            scale = ph / axis_max
            out.append(f'<text x="{x0 + axis_w}" y="{y_top + 24}" font-weight="bold">'
                       f'{esc(title)}</text>')
            k = 0
            while k * step <= axis_max * (1 + 1e-9):
                y = base - k * step * scale
                out.append(f'<line x1="{x0 + axis_w}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" '
                           f'stroke="#e3e3e3"/>')
                out.append(f'<text x="{x0 + axis_w - 5}" y="{y + 4:.1f}" text-anchor="end">'
                           f'{esc(tick(k * step))}</text>')
                k += 1
            for gi, th in enumerate(threads):
                gx = x0 + axis_w + gap / 2 + gi * group_w
                for bi, tg in enumerate(TARGETS):
                    a = agg.get((test, th, tg))
                    v = a[field] if a else None
                    if tg not in targets or v is None:
                        continue
                    x = gx + bi * bar_w
                    h = v * scale
                    out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w - 3}" '
                               f'height="{h:.1f}" fill="{COLOURS[tg]}"><title>'
                               f'{esc(f"{test}, {th} threads, {tg}: {v:.3f}")}</title></rect>')
                    out.append(f'<text x="{x + (bar_w - 3) / 2:.1f}" y="{base - h - 3:.1f}" '
                               f'font-size="8" text-anchor="middle">{esc(short(v))}</text>')
                out.append(f'<text x="{gx + 1.5 * bar_w:.1f}" y="{base + 14}" text-anchor="middle">'
                           f'{th} threads</text>')
            out.append(f'<line x1="{x0 + axis_w}" y1="{base}" x2="{x0 + pw}" y2="{base}" '
                       f'stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ markdown

def connections_section(out_dir):
    path = os.path.join(out_dir, "connections-latest.json")
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
    except (OSError, json.JSONDecodeError):
        return []
    lines = ["## Connections (bench/connections.py)", "",
             f"Measured {c.get('date', '?')} on {c.get('host', '?')} (a separate run; "
             f"details in `connections-latest.md`).", ""]
    for name, verdict, detail in c.get("targets", []):
        lines.append(f"- **{verdict}** {name}: {detail}")
    lines.append("")
    return lines


def markdown(meta, runs, agg, results, svg_name, raw_path, out_dir):
    L = []
    L.append(f"# rwsplit side-by-side benchmark, {meta.get('date', '?')}")
    L.append("")
    L.append(f"Raw records: `{os.path.relpath(raw_path, out_dir)}`; plot: [{svg_name}]({svg_name}).")
    L.append("")
    L.append("## Machine")
    L.append("")
    rows = [
        ("host", meta.get("host")),
        ("CPUs (nproc)", meta.get("nproc")),
        ("CPU model", meta.get("cpu_model")),
        ("kernel", meta.get("kernel")),
        ("date (UTC)", meta.get("date")),
        ("haproxy", meta.get("haproxy_version")),
        ("sysbench", meta.get("sysbench_version")),
        ("MariaDB server", meta.get("mariadb_version")),
        ("mariadb client", meta.get("mariadb_client")),
        ("rwsplit", f"{meta.get('rwsplit_version')}, git {meta.get('rwsplit_commit')} "
                    f"(binary built {meta.get('rwsplit_bin_mtime')})"),
        ("rwsplit [routing]", meta.get("rwsplit_routing") or "the defaults"),
        ("workload", f"{meta.get('tables')} tables x {meta.get('table_size')} rows, "
                     f"{meta.get('time_s')} s per run, threads {meta.get('threads')}"),
    ]
    L.append("| | |")
    L.append("| --- | --- |")
    for k, v in rows:
        L.append(f"| {k} | {esc(v) if v is not None else '?'} |")
    L.append("")
    L.append("Everything runs on this one machine: sysbench, the proxy and the three "
             "MariaDB servers share its CPUs. Each (test, threads) cell runs the replicas "
             "directly once, then haproxy, rwsplit, rwsplit, haproxy (A B B A). QPS and p95 "
             "are means of the runs; proxy CPU is the proxy process's utime+stime "
             "(/proc/PID/stat) over the runs divided by the queries sysbench reported; host "
             "busy is the whole machine's CPU use during the runs. Replica1 share is "
             "replica1's part of the SELECTs the two replicas ran (Com_select); thread CV is "
             "the spread of sysbench's per-thread event counts (stddev / mean; near 0 when "
             "every thread made the same progress). haproxy and the direct run balance "
             "connections, rwsplit balances statements: when one replica is slower, "
             "connection balancing lets the faster one take more of the work (a high thread "
             "CV and a share far from 50 % show it). sysbench prints p95 in steps of "
             "0.01 ms, so p95 ratios below 1 ms are coarse.")
    L.append("")
    tests = []
    for t, _ in cells(agg):
        if t not in tests:
            tests.append(t)
    for test in tests:
        L.append(f"## {test}" + (" (--skip_trx=on)" if test == "oltp_read_only" else
                                 " (server-side prepared statements)"))
        L.append("")
        L.append("| threads | target | runs | QPS | QPS min–max | p95 ms | errors | reconnects "
                 "| proxy CPU µs/query | host busy % | replica1 share | thread CV |")
        L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for t, th in cells(agg):
            if t != test:
                continue
            for tg in TARGETS:
                a = agg.get((t, th, tg))
                if not a:
                    continue
                L.append(f"| {th} | {tg} | {a['runs']} | {fmt(a['qps'])} | "
                         f"{fmt(a['qps_min'])}–{fmt(a['qps_max'])} | {fmt(a['p95'], 2)} | "
                         f"{a['errors']} | {a['reconnects']} | {fmt(a['cpu_us'], 2)} | "
                         f"{fmt(a['busy'], 1)} | {pct(a['r1_share'])} | {fmt(a['thread_cv'], 2)} |")
        L.append("")
        L.append("| threads | rwsplit/haproxy QPS | rwsplit/haproxy p95 | rwsplit/haproxy CPU per query "
                 "| rwsplit/direct QPS | haproxy/direct QPS |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for t, th in cells(agg):
            if t != test:
                continue
            g = {tg: agg.get((t, th, tg)) for tg in TARGETS}

            def r(a, b, f):
                if not g[a] or not g[b]:
                    return "–"
                q = ratio(g[a][f], g[b][f])
                return "–" if q is None else f"{q:.3f}"
            L.append(f"| {th} | {r('rwsplit', 'haproxy', 'qps')} | {r('rwsplit', 'haproxy', 'p95')} "
                     f"| {r('rwsplit', 'haproxy', 'cpu_us')} | {r('rwsplit', 'direct', 'qps')} "
                     f"| {r('haproxy', 'direct', 'qps')} |")
        L.append("")

    L.append("## Targets")
    L.append("")
    L.append(f"At {TARGET_THREADS} threads on both tests: rwsplit's CPU per query at most "
             f"{MAX_CPU_RATIO} x haproxy's, throughput at least {MIN_QPS_RATIO} x haproxy's, p95 "
             f"at most {MAX_P95_RATIO} x haproxy's; under rwsplit's oltp_read_only the two "
             f"replicas' Com_select counts differ by at most {MAX_REPLICA_DIFF:.0%} of the larger.")
    L.append("")
    L.append("```")
    for name, verdict, detail in results:
        L.append(f"{verdict} {name}: {detail}")
    L.append("```")
    L.append("")
    L.extend(connections_section(out_dir))

    L.append("## Runs in order")
    L.append("")
    L.append("Com_select deltas per server (primary / replica1 / replica2) during each run; "
             "rwsplit's own per-replica counts from its admin `/backends` in brackets.")
    L.append("")
    L.append("| # | started (UTC) | test | threads | target | QPS | p95 ms | errors | reconnects "
             "| proxy CPU µs/query | host busy % | Com_select p / r1 / r2 |")
    L.append("| ---: | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in runs:
        sel = f"{r.get('selects_primary')} / {r.get('selects_replica1')} / {r.get('selects_replica2')}"
        if r.get("rwsplit_replica1") is not None:
            sel += f" [{r['rwsplit_replica1']} / {r['rwsplit_replica2']}]"
        L.append(f"| {r['seq']} | {r.get('started', '')} | {r['test']} | {r['threads']} | {r['target']} "
                 f"| {fmt(r['qps'])} | {fmt(r['p95_ms'], 2)} | {r.get('errors')} | {r.get('reconnects')} "
                 f"| {fmt(r.get('cpu_us_per_query'), 2)} | {fmt(r.get('host_busy_pct'), 1)} | {sel} |")
    L.append("")
    return "\n".join(L)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw", nargs="?", help="raw records (JSON lines) from bench/sysbench.sh")
    ap.add_argument("--out", default=os.path.join(here, "results"), help="results folder")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every target passed")
    args = ap.parse_args()

    out_dir = os.path.abspath(args.out)
    raw = args.raw
    if raw is None:
        found = sorted(glob.glob(os.path.join(out_dir, "raw", "*.jsonl")), key=os.path.getmtime)
        if not found:
            sys.exit(f"no raw records in {out_dir}/raw; run bench/sysbench.sh first")
        raw = found[-1]
    raw = os.path.abspath(raw)
    meta, runs = load(raw)
    if not runs:
        sys.exit(f"{raw}: no run records")
    agg = aggregate(runs)
    results = evaluate(agg, runs)

    date = (meta.get("date") or "unknown")[:10]
    stem = f"{date}-{meta.get('host', 'unknown')}"
    os.makedirs(out_dir, exist_ok=True)
    md_path = os.path.join(out_dir, stem + ".md")
    svg_path = os.path.join(out_dir, stem + ".svg")
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write(svg(agg, meta))
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(markdown(meta, runs, agg, results, os.path.basename(svg_path), raw, out_dir))
    # latest.md names the dated SVG; point it at latest.svg instead.
    with open(md_path, encoding="utf-8") as f:
        text = f.read()
    name = os.path.basename(svg_path)
    with open(os.path.join(out_dir, "latest.md"), "w", encoding="utf-8") as f:
        f.write(text.replace(f"[{name}]({name})", "[latest.svg](latest.svg)"))
    shutil.copyfile(svg_path, os.path.join(out_dir, "latest.svg"))

    for name, verdict, detail in results:
        print(f"{verdict} {name}: {detail}")
    print(f"report: {md_path} (and latest.md), plot: {svg_path} (and latest.svg)")
    if args.strict and any(v != "PASS" for _, v, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
