#!/usr/bin/env python3
"""Two eenn builds timed against each other on the same machine: for each round and each case the two binaries
run `eenn bench --arch NET --input SHAPE --json` back to back (inference at batch 1 and 128, training at batch
128), the order alternating between rounds, so that the machine's drift cancels in each round's ratio.
Prints img/s per round and the median of the per-round ratios B / A with the smallest and largest ratio (with 5
rounds a 93.8% interval for the median whatever the noise: a sign test).

  scripts/ab_builds.py OLD/eenn NEW/eenn [--cases vgg16bn:3x32x32,mobilenet:3x32x32] [--rounds 5] [--seconds 2]
                       [--json FILE]

A regression check between versions: build the older commit in a git worktree (`git worktree add /tmp/old REV`,
`make -C /tmp/old build/eenn`) and pass both binaries."""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compare import eenn_bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the first (older) eenn binary")
    ap.add_argument("b", help="the second (newer) eenn binary")
    ap.add_argument("--cases", default="vgg16bn:3x32x32,mobilenet:3x32x32,resnet56:1x28x28")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args()
    cases = [c.split(":") for c in args.cases.split(",")]
    if args.rounds < 1 or any(len(c) != 2 for c in cases):
        sys.exit("ab_builds: --rounds must be at least 1 and --cases a list of NET:CxHxW")
    res = {}
    for r in range(args.rounds):
        for net, shape in cases:
            for side in (("a", "b") if r % 2 == 0 else ("b", "a")):
                for (mode, batch), x in eenn_bench(getattr(args, side), net, shape, 0, args.seconds).items():
                    key = "%s %s %s %d" % (net, shape, mode, batch)
                    res.setdefault(key, {"a": [], "b": []})[side].append(x["img_per_s"])
        print("round %d of %d done" % (r + 1, args.rounds), file=sys.stderr, flush=True)
    rows = []
    for key, v in res.items():
        ratios = [b / a for a, b in zip(v["a"], v["b"])]
        row = {"case": key, "a": v["a"], "b": v["b"], "paired_median": statistics.median(ratios),
               "min": min(ratios), "max": max(ratios)}
        rows.append(row)
        net, shape, mode, batch = key.split()
        print("%-10s %-8s %-6s %4s  A %s  B %s  B/A paired median %.3f (%.3f-%.3f)" % (
            net, shape, mode, batch, " ".join("%.0f" % x for x in v["a"]), " ".join("%.0f" % x for x in v["b"]),
            row["paired_median"], row["min"], row["max"]))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"a": args.a, "b": args.b, "rounds": args.rounds, "seconds": args.seconds, "results": rows}, f,
                      indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
