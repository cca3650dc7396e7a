#!/usr/bin/env python3
"""Are two classifiers' test accuracies really different? A paired comparison on the same test examples.

    python3 scripts/paired-test.py TEST.tsv A.jsonl B.jsonl [--names A,B] [--boot N] [--json]

TEST.tsv gives the labels (label<TAB>text, docs/format.md); A.jsonl and B.jsonl give each classifier's answers, one
JSON line per test example in the same order with the class in "name" (`eenn infer MODEL TEST.tsv --json`, or
scripts/text-baseline.py --predictions). Prints each accuracy, the difference A - B, its 95% interval from a
paired bootstrap over the test examples (N resamples, default 10,000, fixed seed), and McNemar's exact two-sided
p-value on the examples exactly one of the two gets right. On 1,214 test emails one email is 0.08 points: a
difference of a few emails is usually inside the interval."""
import argparse
import json
import math
import random
import sys


def answers(path, n):
    with open(path) as f:
        rows = [json.loads(l)["name"] for l in f if l.strip()]
    if len(rows) != n:
        sys.exit(f"{path}: {len(rows)} answers for {n} test examples")
    return rows


def mcnemar(b, c):
    """exact two-sided p-value: b and c discordant pairs, Binomial(b + c, 1/2)"""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2 * tail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("test")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--names", default="A,B")
    ap.add_argument("--boot", type=int, default=10000)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    with open(o.test, "rb") as f:
        labels = [line.split(b"\t", 1)[0].decode() for line in f if line.strip()]
    n = len(labels)
    ra = [p == y for p, y in zip(answers(o.a, n), labels)]
    rb = [p == y for p, y in zip(answers(o.b, n), labels)]
    d = [int(x) - int(y) for x, y in zip(ra, rb)]
    rng = random.Random(1221)
    diffs = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(o.boot))
    lo, hi = diffs[int(0.025 * o.boot)], diffs[int(0.975 * o.boot) - 1]
    b = sum(1 for x, y in zip(ra, rb) if x and not y)
    c = sum(1 for x, y in zip(ra, rb) if y and not x)
    na, nb = o.names.split(",", 1)
    res = {"n": n, "acc_" + na: 100 * sum(ra) / n, "acc_" + nb: 100 * sum(rb) / n, "diff": 100 * sum(d) / n,
           "ci95": [100 * lo, 100 * hi], "only_" + na + "_right": b, "only_" + nb + "_right": c,
           "mcnemar_p": mcnemar(b, c)}
    if o.json:
        print(json.dumps(res))
        return
    print(f"{n} test examples: {na} {res['acc_' + na]:.2f}%, {nb} {res['acc_' + nb]:.2f}%; {na} - {nb} = "
          f"{res['diff']:+.2f} points (95% interval {100 * lo:+.2f} to {100 * hi:+.2f}, paired bootstrap); "
          f"only {na} right on {b}, only {nb} right on {c}: McNemar p = {res['mcnemar_p']:.3f}")


if __name__ == "__main__":
    main()
