#!/usr/bin/env python3
"""fio JSON from guest boots -> markdown tables (used by scripts/bench-guest.sh).

    fio-summary.py RUNS_TSV

RUNS_TSV has one line per guest boot, tab-separated:
    backend  round  out_file  guest_rc  backend_cpu_s  own_cpu_pct  other_cpu_pct  accel
out_file is the guest output of tests/vm/fio/guest-fio.sh run with FIO_ARGS=--output-format=json:
fio's JSON document between '@@GUEST ...@@' and '@@FIO <jobfile> rc=N@@'.

Per job and backend: median IOPS [min-max] over the rounds, median clat p50 / p99, and the ratio
to the reference backend (the last one named in the file, normally qsd). Per boot: the
back-end's CPU time divided by the guest I/Os of the boot.
"""
import json
import statistics
import sys


def parse_fio(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    start = text.find("{")
    if start < 0:
        raise ValueError(f"{path}: no fio JSON")
    doc, _ = json.JSONDecoder().raw_decode(text[start:])
    jobs = {}
    for job in doc["jobs"]:
        side = max(("read", "write"), key=lambda s: job[s]["total_ios"])
        d = job[side]
        pct = d["clat_ns"].get("percentile", {})
        jobs[job["jobname"]] = {
            "iops": d["iops"],
            "p50_us": pct.get("50.000000", 0) / 1000.0,
            "p99_us": pct.get("99.000000", 0) / 1000.0,
            "ios": job["read"]["total_ios"] + job["write"]["total_ios"],
        }
    return jobs


def fmt(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def main(tsv):
    runs = []
    for line in open(tsv, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) < 8:
            continue
        run = dict(backend=f[0], round=f[1], out=f[2], rc=f[3], cpu=float(f[4] or 0),
                   own=f[5], other=f[6], accel=f[7], jobs={})
        try:
            run["jobs"] = parse_fio(run["out"])
        except (OSError, ValueError, KeyError) as e:
            run["error"] = str(e)
        runs.append(run)
    backends = list(dict.fromkeys(r["backend"] for r in runs))
    ref = backends[-1]
    jobnames = list(dict.fromkeys(j for r in runs for j in r["jobs"]))
    accels = sorted({r["accel"] for r in runs})

    print(f"Guest: 2 vCPUs, vhost-user-blk-pci num-queues=2, fio libaio direct=1; accel={'/'.join(accels)}; "
          f"{len({r['round'] for r in runs})} round(s), back-ends interleaved. "
          f"Ratios are against {ref}.")
    if "tcg" in accels:
        print("Under TCG the guest's emulated vCPUs are the bottleneck: read only the ratios, not the absolute numbers.")
    print()
    print("| job | back-end | IOPS median [min-max] | clat p50 µs | clat p99 µs | IOPS / " + ref + " | p99 / " + ref + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    med = {}
    for job in jobnames:
        for b in backends:
            vals = [r["jobs"][job] for r in runs if r["backend"] == b and job in r["jobs"]]
            if not vals:
                continue
            iops = [v["iops"] for v in vals]
            med[(job, b)] = dict(iops=statistics.median(iops),
                                 p50=statistics.median(v["p50_us"] for v in vals),
                                 p99=statistics.median(v["p99_us"] for v in vals),
                                 lo=min(iops), hi=max(iops))
        for b in backends:
            m = med.get((job, b))
            if m is None:
                continue
            r = med.get((job, ref))
            ri = f"{m['iops'] / r['iops']:.2f}" if r and r["iops"] else "-"
            rp = f"{m['p99'] / r['p99']:.2f}" if r and r["p99"] else "-"
            print(f"| {job} | {b} | {m['iops']:.0f} [{m['lo']:.0f}-{m['hi']:.0f}] | {fmt(m['p50'])} | "
                  f"{fmt(m['p99'])} | {ri} | {rp} |")
    print()
    print("| back-end | round | guest rc | back-end CPU s (whole boot) | guest I/Os | back-end CPU µs per I/O | "
          "our CPU % of one core | OTHER processes' CPU % of the machine |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        ios = sum(j["ios"] for j in r["jobs"].values())
        per = f"{r['cpu'] * 1e6 / ios:.1f}" if ios else "-"
        note = f" ({r['error']})" if "error" in r else ""
        print(f"| {r['backend']} | {r['round']} | {r['rc']}{note} | {r['cpu']:.1f} | {ios} | {per} | {r['own']} | {r['other']} |")
    print()
    print("OTHER processes' CPU: work on this machine that is not ours (builds, other tests); rounds where it is "
          "high are not comparable. Back-end CPU counts the whole boot (a polling back-end also burns CPU while idle).")
    return 0 if all(r["rc"] == "0" and "error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
