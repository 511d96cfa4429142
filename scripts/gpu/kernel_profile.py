#!/usr/bin/env python3
"""GPU time per kernel from an Nsight Compute CSV (`ncu --csv --page raw --metrics
gpu__time_duration.sum --log-file FILE ...`): kernels grouped by name, largest total first.

    python3 scripts/gpu/kernel_profile.py ncu.csv [--json out.json] [--top 25] [--by-grid]

Names lose their parameter lists, so that every launch of one kernel instantiation is one line
(cuBLAS's tile shapes stay apart: they are template arguments). With --by-grid (the CSV must also
hold `launch__grid_size`: `--metrics gpu__time_duration.sum,launch__grid_size`) a kernel's launches
are split by grid size too, which tells one weight shape's GEMM from another's.

With --minus BASE.csv --steps N the kernels of BASE are taken away first and what is left is divided
by N: profile the same command with N more decode steps than BASE (e.g. `bench speed --new-tokens 6`
against `--new-tokens 2`) and the table is the GPU time of ONE decode step, to hold against the
measured wall time of a step.
"""
import argparse
import csv
import json
import re
import sys
from collections import defaultdict


def short(name):
    name = re.sub(r"\((T1::)?Params\)$|\([^()<>]*\)$", "", name.strip())  # parameter list
    return name.replace("void ", "").strip()


def rows(path):
    lines = open(path, errors="replace").read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"{path}: no ncu CSV header (a line starting with \"ID\")")
    reader = csv.DictReader(lines[start:])
    for r in reader:
        v = r.get("gpu__time_duration.sum", "")
        try:
            yield int(r["ID"]), r["Kernel Name"], float(v.replace(",", "")), r.get("launch__grid_size", "")
        except (ValueError, KeyError):
            continue  # the units row, or a line that is not a kernel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--json")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--by-grid", action="store_true", help="split each kernel's launches by grid size")
    ap.add_argument("--minus", help="a profile of the same command with fewer decode steps")
    ap.add_argument("--steps", type=int, default=1, help="how many more decode steps the CSV has than --minus")
    a = ap.parse_args()

    def tally(path):
        launches = sorted(rows(path))
        if not launches:
            sys.exit(f"{path}: no kernel rows")
        if a.by_grid and not any(grid for *_, grid in launches):
            sys.exit(f"{path}: --by-grid needs launch__grid_size in the CSV (ncu --metrics ...,launch__grid_size)")
        total, count = defaultdict(float), defaultdict(int)
        for _, name, ns, grid in launches:
            key = f"{short(name)} (grid {grid})" if a.by_grid else short(name)
            total[key] += ns
            count[key] += 1
        return total, count

    total, count = tally(a.csv)
    if a.minus:
        if a.steps < 1:
            sys.exit("--steps must be at least 1")
        base_total, base_count = tally(a.minus)
        for k in set(total) | set(base_total):
            total[k] = (total[k] - base_total.get(k, 0.0)) / a.steps
            count[k] = (count[k] - base_count.get(k, 0)) / a.steps
        for k in [k for k in total if count[k] == 0 and abs(total[k]) < 1e-9]:
            del total[k], count[k]
    launches = sum(count.values())
    all_ns = sum(total.values())
    table = sorted(total.items(), key=lambda kv: -kv[1])
    what = f"per decode step (the difference of two profiles over {a.steps} steps)" if a.minus else "in all"
    print(f"{launches:g} kernel launches, {all_ns / 1e6:.3f} ms of GPU time {what}\n")
    print("| kernel | launches | total ms | share |")
    print("|---|---|---|---|")
    for name, ns in table[: a.top]:
        print(f"| `{name[:130]}` | {count[name]:g} | {ns / 1e6:.3f} | {100 * ns / all_ns:.1f}% |")
    if a.json:
        json.dump(
            {
                "launches": launches,
                "per_decode_step": bool(a.minus),
                "total_ms": all_ns / 1e6,
                "kernels": [{"name": n, "launches": count[n], "total_ms": ns / 1e6} for n, ns in table],
            },
            open(a.json, "w"),
            indent=1,
        )


if __name__ == "__main__":
    main()
