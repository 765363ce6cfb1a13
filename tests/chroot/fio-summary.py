#!/usr/bin/env python3
"""Markdown tables from fio --output-format=json files (fio run by tests/chroot/lib.sh).

    fio-summary.py LABEL=FILE.json [LABEL=FILE.json ...]
        one row per file and direction: IOPS, MiB/s, clat p50 / p99 / mean (us), fio's error code.

    fio-summary.py --bench RUNS_TSV [--ref BACKEND]
        the table of scripts/bench-libblkio.sh. RUNS_TSV has one tab-separated line per fio run:
            backend round job json_file fio_rc daemon_cpu_s window_s machine_busy_s loadavg1
        daemon_cpu_s and machine_busy_s are CPU seconds (user+system) spent inside a wall-clock
        window of window_s seconds taken in fio's steady state (after its ramp). Per backend and
        job: median IOPS [min-max] over the rounds, the ratio of medians to BACKEND (default: the
        qsd back-end with the same kind of bdev: vhostd-file -> qsd-file), median clat p50 / p99, the back-end daemon's
        CPU seconds per million I/Os (daemon_cpu_s / (IOPS * window_s)), fio's own CPU seconds per
        million I/Os (its usr+sys over the job), and the CPU that neither took during the window
        ('others', in % of one CPU), which tells how busy the shared machine was.
"""
import json
import statistics
import sys


def load(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    start = text.find("{")  # fio may print notes before the JSON
    if start < 0:
        raise ValueError(f"{path}: no fio JSON")
    doc, _ = json.JSONDecoder().raw_decode(text[start:])
    return doc


def directions(job):
    for d in ("read", "write"):
        s = job[d]
        if s.get("total_ios") and s.get("runtime"):
            yield d, s


def per_file(args):
    print("| run | dir | IOPS | MiB/s | clat p50 us | clat p99 us | clat mean us | err |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for arg in args:
        label, path = arg.split("=", 1)
        try:
            doc = load(path)
        except (OSError, ValueError) as e:
            print(f"| {label} | - | no result ({e}) | | | | | |")
            continue
        for job in doc["jobs"]:
            for d, s in directions(job):
                c = s["clat_ns"]
                p = c.get("percentile", {})
                print(
                    f"| {label} | {d} | {s['iops']:,.0f} | {s['bw'] / 1024:,.1f} | {p.get('50.000000', 0) / 1000:,.1f} "
                    f"| {p.get('99.000000', 0) / 1000:,.1f} | {c['mean'] / 1000:,.1f} | {job['error']} |"
                )


def run_metrics(row):
    backend, rnd, jobname, path, rc, dcpu, window, busy, load1 = row
    rc, dcpu, window, busy = int(rc), float(dcpu), float(window), float(busy)
    m = {"backend": backend, "job": jobname, "rc": rc, "load1": float(load1)}
    try:
        doc = load(path)
    except (OSError, ValueError):
        m["ok"] = False
        return m
    job = doc["jobs"][0]
    sides = list(directions(job))
    if not sides or job["error"] or rc:
        m["ok"] = False
        m["err"] = job["error"]
        return m
    d, s = max(sides, key=lambda x: x[1]["total_ios"])
    iops = sum(x[1]["iops"] for x in sides)
    pct = s["clat_ns"].get("percentile", {})
    fio_cpu_frac = (job["usr_cpu"] + job["sys_cpu"]) / 100  # fraction of one CPU over the job
    m.update(
        ok=True,
        iops=iops,
        p50=pct.get("50.000000", 0) / 1000,
        p99=pct.get("99.000000", 0) / 1000,
        daemon_cpu_per_mio=dcpu / (iops * window) * 1e6 if window > 0 and iops > 0 else float("nan"),
        fio_cpu_per_mio=fio_cpu_frac / iops * 1e6 if iops > 0 else float("nan"),
        others_pct=max(0.0, (busy - dcpu - fio_cpu_frac * window) / window * 100) if window > 0 else float("nan"),
    )
    return m


def bench(tsv, ref):
    runs = []
    for line in open(tsv, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) == 9 and not line.startswith("#"):
            runs.append(run_metrics(f))
    backends, jobs = [], []
    for r in runs:
        if r["backend"] not in backends:
            backends.append(r["backend"])
        if r["job"] not in jobs:
            jobs.append(r["job"])
    def ref_for(b):  # the qsd run on the same kind of bdev: vhostd-file -> qsd-file
        return ref if ref is not None else "qsd-" + b.split("-", 1)[-1]

    groups = {}
    for r in runs:
        groups.setdefault((r["backend"], r["job"]), []).append(r)

    def med(rs, key):
        return statistics.median(r[key] for r in rs)

    print(
        "| back-end | job | n ok | IOPS median [min-max] | IOPS / qsd | clat p50 us | clat p99 us "
        "| daemon CPU s / M I/O | fio CPU s / M I/O | others' CPU % | load1 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for job in jobs:
        for b in backends:
            ref_ok = [r for r in groups.get((ref_for(b), job), []) if r["ok"]]
            rs = groups.get((b, job), [])
            if not rs:
                continue
            ok = [r for r in rs if r["ok"]]
            bad = len(rs) - len(ok)
            n = f"{len(ok)}" + (f" ({bad} FAILED)" if bad else "")
            if not ok:
                print(f"| {b} | {job} | {n} | - | - | - | - | - | - | - | - |")
                continue
            iops = med(ok, "iops")
            lo, hi = min(r["iops"] for r in ok), max(r["iops"] for r in ok)
            ratio = f"{iops / med(ref_ok, 'iops'):.2f}" if ref_ok and ref_for(b) != b else "-"
            print(
                f"| {b} | {job} | {n} | {iops:,.0f} [{lo:,.0f}-{hi:,.0f}] | {ratio} | {med(ok, 'p50'):,.1f} "
                f"| {med(ok, 'p99'):,.1f} | {med(ok, 'daemon_cpu_per_mio'):,.2f} | {med(ok, 'fio_cpu_per_mio'):,.2f} "
                f"| {med(ok, 'others_pct'):.0f} | {med(ok, 'load1'):.1f} |"
            )
    failed = [r for r in runs if not r["ok"]]
    return 1 if failed or not runs else 0


def main(argv):
    if argv and argv[0] == "--bench":
        ref = None
        if len(argv) >= 4 and argv[2] == "--ref":
            ref = argv[3]
        return bench(argv[1], ref)
    per_file(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
