"""eenn and ONNX Runtime on ResNet-56 (3x32x32), quiet and with one core busy, in one run (docs/benchmarks.md,
"A busy core").

- The busy core: another process at the same priority spinning (`sh -c 'while :; do :; done'`), started before
  each busy measurement and stopped after it.
- eenn: `eenn bench` with threads 0 (its default: the cores other processes leave free), 2 and 1; inference at
  batch 1 and 128, training at batch 128. ONNX Runtime (npm's onnxruntime-node, peers/ort_bench.js) with 2 and
  1 intra-op threads on the same weights (exported through PyTorch, scripts/eenn_torch.py); PyTorch with 2 and
  1 threads on the same weights (inference at batch 1 and 128, an SGD training step at batch 128), each in a
  process of its own.
- Every measurement is repeated --rounds times, the engines alternating; the median and the range are printed.

Run: /usr/bin/python3 scripts/bench_busy.py [--rounds 5] [--seconds 3] [--json FILE]
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def eenn_rates(eenn, threads, secs):
    out = json.loads(sh([eenn, "bench", "--arch", "resnet56", "--input", "3x32x32", "--threads", str(threads),
                         "--seconds", str(secs), "--json"]))
    rows = out["results"] if isinstance(out, dict) and "results" in out else out
    r = {}
    for x in rows:
        key = ("train" if x["mode"] == "train" else "b%d" % x["batch"])
        r[key] = x["img_per_s"]
    return r


def ort_rates(onnx, threads, secs):
    out = sh(["node", os.path.join(ROOT, "peers", "ort_bench.js"), onnx, "3", "32", "32", "1,128", str(threads), str(secs)])
    r = json.loads(out.splitlines()[0])
    return {"b%s" % k: v for k, v in r["img_per_s"].items()}


TORCH = r"""
import sys, time, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
from eenn_torch import load_torch, FinalHead
torch.set_num_threads(int(sys.argv[3])); secs = float(sys.argv[4])
g, _ = load_torch(sys.argv[2]); m = FinalHead(g)
def rate(f, b):
    for _ in range(2): f()
    n, t0 = 0, time.time()
    while time.time() - t0 < secs: f(); n += 1
    return n * b / (time.time() - t0)
m.eval(); out = {}
with torch.no_grad():
    for b in (1, 128):
        x = torch.randn(b, 3, 32, 32); out["b%d" % b] = rate(lambda: m(x), b)
m.train(); opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
def step():
    opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
out["train"] = rate(step, 128)
print(" ".join("%s=%f" % kv for kv in out.items()))
"""


def torch_rates(model, threads, secs):
    out = sh(["/usr/bin/python3", "-c", TORCH, HERE, model, str(threads), str(secs)])
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split())}


def measure(eenn, rounds, seconds, loads=("quiet", "one core busy")):
    """Every engine, quiet and with one core busy, `rounds` alternating rounds: {load: {engine: {key: [img/s]}}}."""
    tmp = tempfile.mkdtemp(prefix="eenn-busy-")
    model, onnx = os.path.join(tmp, "r56.eenn"), os.path.join(tmp, "r56.onnx")
    sh([eenn, "bench", "--arch", "resnet56", "--input", "3x32x32", "--batch", "1", "--no-train", "--seconds", "0.2",
        "--save-model", model])
    import torch
    from eenn_torch import load_torch, FinalHead
    g, _ = load_torch(model)
    torch.onnx.export(FinalHead(g).eval(), torch.zeros(1, 3, 32, 32), onnx, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=13)
    engines = [("eenn, threads 0 (default)", lambda: eenn_rates(eenn, 0, seconds)),
               ("eenn, 2 threads", lambda: eenn_rates(eenn, 2, seconds)),
               ("eenn, 1 thread", lambda: eenn_rates(eenn, 1, seconds)),
               ("ONNX Runtime, 2 threads", lambda: ort_rates(onnx, 2, seconds)),
               ("ONNX Runtime, 1 thread", lambda: ort_rates(onnx, 1, seconds)),
               ("PyTorch, 2 threads", lambda: torch_rates(model, 2, seconds)),
               ("PyTorch, 1 thread", lambda: torch_rates(model, 1, seconds))]
    # stopped by a signal: the finally below still stops the spinning process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    res = {}
    for load in loads:
        for r in range(rounds):
            for name, f in engines:
                spin = subprocess.Popen(["sh", "-c", "while :; do :; done"]) if load != "quiet" else None
                try:
                    rates = f()
                finally:
                    if spin:
                        spin.kill()
                        spin.wait()
                for k, v in rates.items():
                    res.setdefault(load, {}).setdefault(name, {}).setdefault(k, []).append(v)
                print(f"[{load}, round {r + 1}/{rounds}] {name}: " + " ".join(f"{k} {v:.0f}" for k, v in rates.items()),
                      file=sys.stderr, flush=True)
    return res


def report(res):
    rounds = max(len(v) for by in res.values() for ks in by.values() for v in ks.values())
    print(f"ResNet-56 3x32x32, img/s: median of {rounds} alternating rounds (min-max)")
    for load, by in res.items():
        print(f"\n{load}")
        print(f"{'engine':28s} {'batch 1':>20s} {'batch 128':>20s} {'train, batch 128':>20s}")
        for name, ks in by.items():
            cells = []
            for k in ("b1", "b128", "train"):
                v = ks.get(k)
                cells.append(f"{statistics.median(v):7.0f} ({min(v):.0f}-{max(v):.0f})" if v else "-")
            print(f"{name:28s} " + " ".join(f"{c:>20s}" for c in cells))
        d, o = by.get("eenn, threads 0 (default)"), by.get("ONNX Runtime, 2 threads")
        o1 = by.get("ONNX Runtime, 1 thread")
        if d and o and o1:
            cells = []
            for k in ("b1", "b128"):
                best_ort = max(statistics.median(o[k]), statistics.median(o1[k]))
                cells.append(f"{k[1:]}: {statistics.median(d[k]) / best_ort:.2f}x")
            print(f"eenn's default over ONNX Runtime's better thread count (medians): " + ", ".join(
                ("batch " + c) for c in cells))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--eenn", default=os.path.join(ROOT, "build", "eenn"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res = measure(a.eenn, a.rounds, a.seconds)
    report(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
