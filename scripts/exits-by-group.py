#!/usr/bin/env python3
"""How each group of a text dataset exits (docs/results.md, "Text"): runs `eenn infer MODEL DIR/test.tsv --json`
and joins its lines with DIR/test.groups (one group a line, as scripts/spamassassin-to-tsv.py writes them).

    python3 scripts/exits-by-group.py MODEL DIR [--eenn build/eenn] [--q X] [--json]

--q X: one shared max-softmax threshold instead of the model's calibrated policy (eenn infer --q).

Prints, per group: the examples, the accuracy, the share answered at each exit and the average cost."""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dir")
    ap.add_argument("--eenn", default="build/eenn")
    ap.add_argument("--q")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with open(f"{a.dir}/test.groups") as f:
        groups = [g.strip() for g in f if g.strip()]
    with open(f"{a.dir}/test.tsv", "rb") as f:
        labels = [line.split(b"\t", 1)[0].decode() for line in f if line.strip()]
    cmd = [a.eenn, "infer", a.model, f"{a.dir}/test.tsv", "--json"] + (["--q", a.q] if a.q else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    rows = [json.loads(l) for l in out]
    if not (len(rows) == len(groups) == len(labels)):
        sys.exit(f"{len(rows)} answers, {len(groups)} groups, {len(labels)} labels: the files do not match")
    exits = sorted({r["exit_index"] for r in rows})
    names = {r["exit_index"]: r["exit"] for r in rows}
    stats = {}
    for r, g, y in zip(rows, groups, labels):
        s = stats.setdefault(g, {"n": 0, "right": 0, "cost": 0.0, "exits": {}})
        s["n"] += 1
        s["right"] += r.get("name") == y
        s["cost"] += r["cost"]
        s["exits"][r["exit_index"]] = s["exits"].get(r["exit_index"], 0) + 1
    if a.json:
        print(json.dumps({g: {"n": s["n"], "acc": 100 * s["right"] / s["n"], "cost": s["cost"] / s["n"],
                              "exits": {names[e]: s["exits"].get(e, 0) / s["n"] for e in exits}}
                          for g, s in sorted(stats.items())}))
        return
    print("group        examples  accuracy    cost | answered at " + " ".join(f"{names[e]:>6}" for e in exits))
    for g, s in sorted(stats.items()):
        print(f"{g:<12} {s['n']:8d}  {100 * s['right'] / s['n']:7.2f}%  {100 * s['cost'] / s['n']:5.1f}% |             " +
              " ".join(f"{100 * s['exits'].get(e, 0) / s['n']:5.1f}%" for e in exits))


if __name__ == "__main__":
    main()
