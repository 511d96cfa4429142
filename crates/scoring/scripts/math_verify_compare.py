#!/usr/bin/env python3
"""Grade the labelled answer pairs with Hugging Face Math-Verify and with reprolm's math_equal.

Reports agreement of each grader with the hand labels and with each other, lists every pair where any
of the three differ, and times both graders single-threaded on the same pairs in the same run.

    python3 crates/scoring/scripts/math_verify_compare.py [--pairs FILE] [--wrap boxed|dollars]
        [--seconds S] [--json OUT]

Needs `pip install math-verify` and cargo. Math-Verify gets each answer wrapped as `\\boxed{...}` (or
`$...$`), parsed with its default extraction configs, then `verify(gold, pred)`: the documented use.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
DEFAULT_PAIRS = os.path.join(CRATE, "tests", "data", "math_equivalence.tsv")


def read_pairs(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 3 or fields[0] not in ("Y", "N"):
                sys.exit(f"{path}:{number}: expected `Y|N<TAB>gold<TAB>prediction[<TAB>note]`")
            note = " ".join(fields[3:])
            pairs.append({"line": number, "label": fields[0] == "Y", "gold": fields[1], "pred": fields[2], "note": note})
    return pairs


def ours(pairs_path, seconds):
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "reprolm-scoring", "--example", "grade_corpus", "--",
           pairs_path, "--json", "--seconds", str(seconds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=CRATE).stdout
    return json.loads(out)


def math_verify_grade(pairs, wrap):
    from math_verify import parse, verify

    def wrapped(s):
        return f"\\boxed{{{s}}}" if wrap == "boxed" else f"${s}$"

    verdicts = []
    start = time.perf_counter()
    for p in pairs:
        try:
            gold = parse(wrapped(p["gold"]))
            pred = parse(wrapped(p["pred"]))
            verdicts.append(bool(verify(gold, pred)))
        except Exception as e:  # Math-Verify raises on some inputs despite raise_on_error=False
            verdicts.append(False)
            print(f"math-verify raised on line {p['line']}: {e!r}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    return verdicts, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS)
    ap.add_argument("--wrap", choices=["boxed", "dollars"], default="boxed")
    ap.add_argument("--seconds", type=float, default=2.0, help="time budget for timing ours")
    ap.add_argument("--json", help="write the per-pair results here")
    args = ap.parse_args()

    pairs = read_pairs(args.pairs)
    n = len(pairs)
    import math_verify  # noqa: F401  (fail early with a clear message if missing)
    from importlib.metadata import version

    r = ours(os.path.abspath(args.pairs), args.seconds)
    by_line = {v["line"]: v for v in r["verdicts"]}
    mv, mv_seconds = math_verify_grade(pairs, args.wrap)

    labels = [p["label"] for p in pairs]
    our = [by_line[p["line"]]["equal"] for p in pairs]

    def agree(a, b):
        return sum(x == y for x, y in zip(a, b))

    print(f"pairs: {n} ({sum(labels)} equal, {n - sum(labels)} not) from {os.path.relpath(args.pairs)}")
    print(f"math-verify {version('math-verify')}, answers wrapped as {args.wrap}")
    print()
    print("agreement")
    for name, a, b in [("ours vs labels", our, labels), ("math-verify vs labels", mv, labels), ("ours vs math-verify", our, mv)]:
        k = agree(a, b)
        print(f"  {name:<22} {k}/{n} = {100 * k / n:.2f}%")
    print()
    print("pairs where a grader differs from the label or from the other grader")
    print("  line | label | ours (rule) | math-verify | gold | prediction | note")
    rows = []
    for p, o, m in zip(pairs, our, mv):
        if o != p["label"] or m != p["label"] or o != m:
            rule = by_line[p["line"]]["rule"]
            print(f"  {p['line']} | {'Y' if p['label'] else 'N'} | {'Y' if o else 'N'} ({rule}) | {'Y' if m else 'N'} | "
                  f"{p['gold']} | {p['pred']} | {p['note']}")
            rows.append({**p, "ours": o, "rule": rule, "math_verify": m})
    print()

    ours_rate = r["checks_per_second"]
    mv_rate = n / mv_seconds
    print(f"speed, single-threaded, same {n} pairs, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print(f"  ours         {ours_rate:12.0f} checks/s  ({r['checks']} checks in {r['seconds']:.2f} s, "
          f"{r['checks'] // n} passes)")
    print(f"  math-verify  {mv_rate:12.1f} checks/s  ({n} checks in {mv_seconds:.2f} s, 1 pass)")
    print(f"  ours/math-verify: {ours_rate / mv_rate:.0f}x checks/s (higher is better)")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"pairs": n, "ours_checks_per_second": ours_rate, "math_verify_checks_per_second": mv_rate,
                       "disagreements": rows}, f, indent=1)


if __name__ == "__main__":
    main()
