"""eenn, PyTorch and ONNX Runtime in one run, on the same networks, shapes and weights (`make bench`).

- eenn writes the randomly initialised network it times (`eenn bench --save-model`); PyTorch loads those weights
  (scripts/eenn_torch.py) and exports them to ONNX for ONNX Runtime (the CPU library in npm's onnxruntime-node,
  peers/ort_bench.js).
- Dense networks: ResNet-56, VGG-16-BN, WRN-32-4 and MobileNet at 3x32x32, ResNet-56 at 1x28x28; inference at
  batch 1 and 128, training at batch 128 (PyTorch only: ONNX Runtime here is an inference runtime). Each peer runs
  with 1 and 2 threads and its best is kept (the thread count is printed). With --rounds R every measurement is
  repeated R times, the peers alternating, and the median of each is reported (--stat best: the best; this shared
  machine varies by 20-45% and the best of a few runs hides a gap that the medians show).
- GFLOP/s counts true FLOPs (a training step is 3x the forward pass), beside the fp32 GEMM ceiling measured in the
  same run (`eenn bench --gemm`) and the CPU's FMA peak (scripts/roofline.c, which also measures the memory read
  bandwidth); for inference, the roofline rate: what a layer-by-layer fp32 implementation could reach at that peak
  and bandwidth.
- Thread scaling: eenn with 1 and 2 threads.
- Early exits: an SDN on real Fashion-MNIST test images at its calibrated threshold (`eenn bench --exits`), against
  ONNX Runtime running the same backbone without ICs.
- Peak RSS of ResNet-56 inference and training, eenn beside PyTorch, each measured in its own process.

- --train-only: training alone, eenn (2 threads) against PyTorch (its better of 1 and 2 threads), alternating for
  --rounds rounds: many rounds of the one ratio in the time a full run takes.
- --busy-core: instead, ResNet-56 quiet and with one core busy (scripts/bench_busy.py), eenn (its default, 2 and 1
  threads), ONNX Runtime and PyTorch (2 and 1 threads), the median and range of --rounds alternating rounds.

Run: /usr/bin/python3 scripts/bench_compare.py [--seconds S] [--rounds R] [--exits SDN.eenn [--exits-q Q]] [--json FILE]
     /usr/bin/python3 scripts/bench_compare.py --train-only [--cases resnet56:3x32x32] [--rounds R] [--json FILE]
     /usr/bin/python3 scripts/bench_compare.py --busy-core [--rounds R] [--json FILE]
     /usr/bin/python3 scripts/bench_compare.py --report FILE   (the tables of an earlier run's --json)
"""
import argparse, json, math, os, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import bench_busy  # noqa: E402

CASES = [("resnet56", "3x32x32"), ("vgg16bn", "3x32x32"), ("wrn32_4", "3x32x32"), ("mobilenet", "3x32x32"),
         ("resnet56", "1x28x28")]
T0 = time.time()


def progress(msg):
    print(f"[{time.time() - T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Runs a command; returns (stdout, None)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    out, err = p.communicate()
    if p.returncode:
        raise SystemExit(f"bench_compare: {' '.join(cmd[:3])} failed: {err.strip()}")
    return out, None


def run_rss(cmd):
    """Runs a command alone and returns (stdout, peak RSS in MB from wait4's rusage). Linux carries a parent's
    peak over fork and exec into this number, so the children also report their own VmHWM, which is used."""
    with tempfile.TemporaryFile(mode="w+") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            raise SystemExit(f"bench_compare: {' '.join(cmd[:4])} failed")
        f.seek(0)
        return f.read(), ru.ru_maxrss / 1024


# ---------------------------------------------------------------- PyTorch (in a child process, for clean RSS)
TORCH_CHILD = r"""
import sys, json, time, torch, torch.nn.functional as F
sys.path.insert(0, %(here)r)
from eenn_torch import load_torch, FinalHead
path, mode, batch, threads, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(threads)
g, _ = load_torch(path)
m = FinalHead(g)
shape = [int(v) for v in sys.argv[6].split("x")]
x = torch.randn(batch, *shape)
y = torch.randint(0, 10, (batch,))
opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
m.train(mode == "train")
def step():
    if mode == "train":
        opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
    else:
        with torch.no_grad(): m(x)
for _ in range(2): step()
n, t0 = 0, time.perf_counter()
while True:
    step(); n += 1
    dt = time.perf_counter() - t0
    if dt >= secs and n >= 2: break
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"img_per_s": n * batch / dt, "peak_rss_mb": float(hwm.split()[1]) / 1024}))
"""


def torch_time(model, shape, mode, batch, threads, secs):
    out, rss = run_rss([sys.executable, "-c", TORCH_CHILD % {"here": HERE}, model, mode, str(batch), str(threads),
                        str(secs), shape])
    r = json.loads(out)
    return r["img_per_s"], r["peak_rss_mb"]


def export_onnx(model, shape, path):
    import torch
    from eenn_torch import load_torch, FinalHead
    g, _ = load_torch(model)
    m = FinalHead(g).eval()
    c, h, w = (int(v) for v in shape.split("x"))
    torch.onnx.export(m, torch.zeros(1, c, h, w), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=13)


def ort_time(onnx, shape, batches, threads, secs):
    c, h, w = shape.split("x")
    out, rss = run_rss(["node", os.path.join(ROOT, "peers", "ort_bench.js"), onnx, c, h, w,
                        ",".join(map(str, batches)), str(threads), str(secs)])
    r = json.loads(out)
    return {int(k): v for k, v in r["img_per_s"].items()}, rss


def ort_best(onnx, shape, secs):
    """ONNX Runtime at batch 1 and 128, best of 1 and 2 threads: {batch: (img/s, threads)}."""
    best = {}
    for t in (1, 2):
        progress(f"ONNX Runtime {os.path.basename(onnx)}, {t} thread(s)")
        r, _ = ort_time(onnx, shape, [1, 128], t, secs)
        for b, v in r.items():
            if v > best.get(b, (0, 0))[0]:
                best[b] = (v, t)
    return best


def ensure_ort():
    if os.path.isdir(os.path.join(ROOT, "peers", "node_modules", "onnxruntime-node")):
        return
    progress("installing onnxruntime-node into peers/ (npm install --ignore-scripts) ...")
    subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=os.path.join(ROOT, "peers"),
                   check=True, stdout=subprocess.DEVNULL)


def eenn_bench(eenn, arch, shape, threads, secs, save=None, extra=()):
    cmd = [eenn, "bench", "--arch", arch, "--input", shape, "--threads", str(threads), "--seconds", str(secs),
           "--json", *extra]
    if save:
        cmd += ["--save-model", save]
    out, _ = run(cmd)
    return {(r["mode"], r["batch"]): r for r in json.loads(out)["results"]}


def roofline_img_s(eenn, arch, shape, batch, roof):
    """The inference rate of a layer-by-layer fp32 implementation that computes at the 2-thread FMA peak and reads
    each layer's weights from memory once per batch, both measured in this run: batch / sum over layers of
    max(batch * FLOPs / peak, weight bytes / read bandwidth). Activations are taken to stay in cache."""
    out, _ = run([eenn, "info", "--arch", arch, "--input", shape, "--json"])
    peak, bw = roof["gflops"]["2"] * 1e9, roof["read_gbs"]["2"] * 1e9
    t = sum(max(batch * l["flops"] / peak, 4 * l["params"] / bw) for l in json.loads(out)["layers"])
    return batch / t


def strip_ics(sdn):
    """The SDN's backbone alone: its architecture text and tensors without the IC nodes."""
    from eenn_file import read_eenn
    arch, _, tensors = read_eenn(sdn)
    lines = [l for l in arch.splitlines() if not (" name=ic" in l)]
    return "\n".join(lines), {k: v for k, v in tensors.items() if not k.startswith("ic")}


def export_stripped_onnx(sdn, shape, path):
    import torch
    from eenn_torch import Graph, FinalHead, set_tensors
    text, tensors = strip_ics(sdn)
    g = set_tensors(Graph(text), tensors)
    c, h, w = (int(v) for v in shape.split("x"))
    torch.onnx.export(FinalHead(g).eval(), torch.zeros(1, c, h, w), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=13)


def memory(eenn, tmp, res):
    """Peak RSS of ResNet-56 inference (batch 1, 128) and training (batch 128), eenn and PyTorch, each run alone."""
    progress("peak RSS: ResNet-56 3x32x32, each run in its own process")
    model = os.path.join(tmp, "resnet56-3x32x32.eenn")
    if not os.path.exists(model):  # not among the cases: write the same randomly initialised net for PyTorch
        run([eenn, "bench", "--arch", "resnet56", "--input", "3x32x32", "--save-model", model, "--seconds", "0.1",
             "--batch", "1", "--no-train", "--json"])
    for mode, batch, extra in (("infer", 1, ["--batch", "1", "--no-train"]), ("infer", 128, ["--batch", "128", "--no-train"]),
                               ("train", 128, ["--train-only"])):
        out, rss = run_rss([eenn, "bench", "--arch", "resnet56", "--input", "3x32x32", "--seconds", "1", "--json", *extra])
        r = [x for x in json.loads(out)["results"] if x["mode"] == mode][0]
        _, trss = torch_time(model, "3x32x32", mode, batch, 2, 1)
        res["memory"].append({"mode": mode, "batch": batch, "eenn_mb": r["peak_rss_mb"], "eenn_anon_mb": r["rss_anon_mb"],
                              "activation_mb": r["activation_mb"],
                              "bound_mb": 2 * (r["weights_mb"] + r["largest_pair_mb"]), "torch_mb": trss})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--eenn", default=os.path.join(ROOT, "build", "eenn"))
    ap.add_argument("--exits", default=None, help="a calibrated SDN (default: models/resnet56-sdn.eenn)")
    ap.add_argument("--json", default=None, help="also write every number to this file")
    ap.add_argument("--cases", default=None, help="comma-separated arch:CxHxW subset")
    ap.add_argument("--exits-q", type=float, default=None,
                    help="the early-exit threshold (default: the one calibrated and stored in the model)")
    ap.add_argument("--exits-n", type=int, default=10000, help="test images for the early-exit measurement")
    ap.add_argument("--rounds", type=int, default=1,
                    help="dense networks: eenn, ONNX Runtime and PyTorch alternate this many times")
    ap.add_argument("--stat", choices=("median", "best"), default="median",
                    help="with --rounds: report the median (default) or the best of the rounds")
    ap.add_argument("--busy-core", action="store_true",
                    help="instead: ResNet-56 quiet and with one core busy, eenn, ONNX Runtime and PyTorch, medians "
                         "and spread of --rounds alternating rounds (default 5; scripts/bench_busy.py)")
    ap.add_argument("--replicas", default="auto",
                    help="eenn's 2-thread training as `eenn train --replicas auto|N` runs it (N copies of the network, "
                         "one core each; default auto, as `eenn train` chooses)")
    ap.add_argument("--train-only", action="store_true",
                    help="training only: eenn (2 threads) and PyTorch alternating, no inference, exits or memory")
    ap.add_argument("--report", default=None, metavar="FILE", help="print the tables of an earlier run's --json file")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            r = json.load(f)
        (bench_busy.report if "quiet" in r else report)(r)
        return
    if a.busy_core:
        ensure_ort()
        r = bench_busy.measure(a.eenn, a.rounds if a.rounds > 1 else 5, a.seconds)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=1)
        bench_busy.report(r)
        return
    secs = a.seconds
    if not a.train_only:
        ensure_ort()
    tmp = tempfile.mkdtemp(prefix="eenn-bench-")
    cases = CASES if not a.cases else [tuple(c.split(":")) for c in a.cases.split(",")]
    res = {"seconds": secs, "dense": [], "scaling": [], "exits": None, "memory": []}
    used = {}  # the replicas eenn's 2-thread training ran with, per case
    info = open("/proc/cpuinfo").read()
    model = [l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")]
    avx512 = " avx512f" in info
    res["cpu"] = f"{model[0] if model else 'unknown'}, {os.cpu_count()} cores, AVX-512 {'yes' if avx512 else 'no'}"
    res["conv_kernel"] = "oneDNN (AVX-512 brgconv)" if avx512 else "eenn's direct AVX2 kernel (oneDNN has no brgconv without AVX-512)"

    progress("roofline: the FMA peak and the memory read bandwidth, 1 and 2 threads (scripts/roofline.c)")
    roof_bin = os.path.join(tmp, "roofline")
    run(["cc", "-O2", "-pthread", os.path.join(HERE, "roofline.c"), "-o", roof_bin])
    res["roofline"] = json.loads(run([roof_bin])[0])

    progress("GEMM ceiling (oneDNN sgemm 1024^3), 1 and 2 threads")
    ceiling = {}
    for t in (1, 2):
        out, _ = run([a.eenn, "bench", "--gemm", "--threads", str(t), "--seconds", str(secs), "--json"])
        ceiling[t] = json.loads(out)["gflops"]
    res["gemm_gflops"] = ceiling

    def pick(vals):
        vals = sorted(vals)
        if a.stat == "best":
            return vals[-1]
        n = len(vals)
        return vals[n // 2] if n % 2 else 0.5 * (vals[n // 2 - 1] + vals[n // 2])

    for arch, shape in cases:
        model = os.path.join(tmp, f"{arch}-{shape}.eenn")
        onnx = os.path.join(tmp, f"{arch}-{shape}.onnx")
        # noisy machines: every measurement (eenn with 2 and 1 threads, ONNX Runtime, PyTorch) is repeated in each
        # round, the peers alternating; each round keeps a peer's better thread count, and the median (or the best)
        # over the rounds is reported
        e2, e1, ort, tor = {}, {}, {}, {}
        modes = (("train", 128),) if a.train_only else (("infer", 1), ("infer", 128), ("train", 128))
        for rnd in range(a.rounds):
            tag = f"round {rnd + 1}/{a.rounds}: " if a.rounds > 1 else ""
            progress(f"{tag}eenn {arch} {shape}, 2 threads")
            rep = ["--replicas", str(a.replicas)] + (["--train-only"] if a.train_only else [])
            for k, v in eenn_bench(a.eenn, arch, shape, 2, secs, save=model if rnd == 0 else None, extra=rep).items():
                e2.setdefault(k, []).append(v)
            if not a.train_only:
                progress(f"{tag}eenn {arch} {shape}, 1 thread")
                for k, v in eenn_bench(a.eenn, arch, shape, 1, secs).items():
                    e1.setdefault(k, []).append(v["img_per_s"])
                if rnd == 0:
                    progress(f"export {arch} {shape} to ONNX")
                    export_onnx(model, shape, onnx)
                for b, v in ort_best(onnx, shape, secs).items():
                    ort.setdefault(b, []).append(v)
            for mode, batch in modes:
                best = (0, 0)
                for t in (1, 2):
                    progress(f"{tag}PyTorch {arch} {shape} {mode} batch {batch}, {t} thread(s)")
                    v, _ = torch_time(model, shape, mode, batch, t, secs)
                    best = max(best, (v, t))
                tor.setdefault((mode, batch), []).append(best)
        used[f"{arch} {shape}"] = e2[("train", 128)][0].get("replicas", 1)
        for mode, batch in modes:
            tv = tor[(mode, batch)]
            img = pick([r["img_per_s"] for r in e2[(mode, batch)]])
            gflops = img * e2[(mode, batch)][0]["gflops"] / e2[(mode, batch)][0]["img_per_s"]
            tmed = pick([v for v, _ in tv])
            row = {"net": arch, "input": shape, "mode": mode, "batch": batch, "eenn_img_s": img,
                   "eenn_gflops": gflops, "ceiling_pct": 100 * gflops / ceiling[2],
                   "eenn_rounds": [r["img_per_s"] for r in e2[(mode, batch)]],
                   "torch_img_s": tmed, "torch_threads": max(tv)[1], "torch_rounds": [v for v, _ in tv],
                   "ort_img_s": pick([v for v, _ in ort[batch]]) if mode == "infer" else None,
                   "ort_threads": max(ort[batch])[1] if mode == "infer" else None,
                   "ort_rounds": [v for v, _ in ort[batch]] if mode == "infer" else None}
            row["fma_pct"] = 100 * gflops / res["roofline"]["gflops"]["2"]
            row["roofline_img_s"] = roofline_img_s(a.eenn, arch, shape, batch, res["roofline"]) if mode == "infer" else None
            res["dense"].append(row)
            if e1:
                res["scaling"].append({"net": arch, "input": shape, "mode": mode, "batch": batch,
                                       "eenn_1t": pick(e1[(mode, batch)]), "eenn_2t": img})

    sdn = a.exits or os.path.join(ROOT, "models", "resnet56-sdn.eenn")
    if os.path.exists(sdn) and not a.train_only:
        progress(f"early exits of {sdn} on Fashion-MNIST test images")
        qarg = ["--q", str(a.exits_q)] if a.exits_q is not None else []
        out, _ = run([a.eenn, "bench", "--exits", sdn, "--n", str(a.exits_n), "--json", "--threads", "2", *qarg])
        ex = json.loads(out)
        from eenn_file import read_eenn
        arch_text, _, _ = read_eenn(sdn)
        inp = [l for l in arch_text.splitlines() if l.startswith("input")][0]
        kv = dict(p.split("=") for p in inp.split()[1:])
        shape = f"{kv['c']}x{kv['h']}x{kv['w']}"
        onnx = os.path.join(tmp, "exits-cnn.onnx")
        export_stripped_onnx(sdn, shape, onnx)
        ort = {b: v for b, (v, _) in ort_best(onnx, shape, secs).items()}
        res["exits"] = {"model": sdn, "eenn": ex, "ort_img_s": ort}

    if not a.train_only:
        memory(a.eenn, tmp, res)

    res["rounds"] = a.rounds
    res["train_only"] = a.train_only
    res["replicas"] = a.replicas
    res["replicas_used"] = used
    res["stat"] = a.stat
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    report(res)


def sign_interval(n):
    """The distribution-free interval for a median from n independent values: the k-th smallest to the k-th
    largest, k as large as keeps its confidence at 95% or more (k = 1, the range, below 9 values), and that
    confidence in percent."""
    def tail(k):  # P(Binomial(n, 1/2) <= k - 1)
        return sum(math.comb(n, i) for i in range(k)) / 2 ** n
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * tail(k + 1) >= 0.95:
        k += 1
    return k, 100 * (1 - 2 * tail(k))


def ordinal(k):
    return f"{k}{'st' if k == 1 else 'nd' if k == 2 else 'rd' if k == 3 else 'th'}"


def report(res):
    """Prints the tables of one run (also from its --json file: --report FILE)."""
    ceiling = {int(k): v for k, v in res["gemm_gflops"].items()}
    print(f"CPU: {res['cpu']}; eenn's inference convolutions: {res['conv_kernel']}")
    if res.get("rounds", 1) > 1:
        stat = res.get("stat", "best")  # runs saved before --stat existed kept the best
        if res.get("train_only"):
            print(f"Training only: {stat} of {res['rounds']} alternating rounds of eenn (2 threads) and PyTorch (its "
                  f"better thread count in each round)")
        else:
            print(f"Dense networks: {stat} of {res['rounds']} alternating rounds of eenn (1 and 2 threads), ONNX "
                  f"Runtime and PyTorch (each peer's better thread count in each round)")
    if res.get("replicas_used"):
        print(f"eenn's 2-thread training as `eenn train --replicas {res['replicas']}` runs it: "
              + ", ".join(f"{k} {v} {'replicas (one core each)' if v > 1 else 'copy'}"
                          for k, v in res["replicas_used"].items()))
    elif str(res.get("replicas", 1)) not in ("1", "auto"):
        print(f"eenn's 2-thread training: {res['replicas']} replicas of the network, one core each "
              f"(`eenn train --replicas {res['replicas']}`)")
    print(f"GEMM ceiling (oneDNN sgemm, fp32): {ceiling[1]:.0f} GFLOP/s on 1 thread, {ceiling[2]:.0f} on 2")
    rf = res["roofline"]
    print(f"Roofline (scripts/roofline.c): fp32 FMA peak {rf['gflops']['1']:.0f} GFLOP/s on 1 thread, "
          f"{rf['gflops']['2']:.0f} on 2; memory read {rf['read_gbs']['1']:.1f} GB/s on 1 thread, "
          f"{rf['read_gbs']['2']:.1f} on 2. Roofline img/s: a layer-by-layer fp32 implementation at that peak, "
          f"reading each layer's weights from memory once per batch\n")
    print("| net | input | mode | batch | eenn img/s | GFLOP/s | % of GEMM ceiling | % of FMA peak | roofline img/s | "
          "PyTorch img/s (threads) | ONNX Runtime img/s (threads) | eenn / PyTorch | eenn / ONNX Runtime |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res["dense"]:
        ort = f"{r['ort_img_s']:.0f} ({r['ort_threads']})" if r["ort_img_s"] else "-"
        ratio = f"{r['eenn_img_s'] / r['ort_img_s']:.2f}x" if r["ort_img_s"] else "-"
        roof = f"{r['roofline_img_s']:.0f}" if r["roofline_img_s"] else "-"
        print(f"| {r['net']} | {r['input']} | {r['mode']} | {r['batch']} | {r['eenn_img_s']:.0f} | {r['eenn_gflops']:.0f} | "
              f"{r['ceiling_pct']:.0f}% | {r['fma_pct']:.0f}% | {roof} | {r['torch_img_s']:.0f} ({r['torch_threads']}) | {ort} | "
              f"{r['eenn_img_s'] / r['torch_img_s']:.2f}x | {ratio} |")
    if any(r.get("eenn_rounds") for r in res["dense"]):
        print("\nEvery round (img/s; eenn with 2 threads, each peer with its better thread count):\n")
        print("| net | input | mode | batch | eenn | ONNX Runtime | PyTorch |")
        print("|---|---|---|---|---|---|---|")
        fmt = lambda v: " ".join(f"{x:.0f}" for x in v) if v else "-"
        for r in res["dense"]:
            print(f"| {r['net']} | {r['input']} | {r['mode']} | {r['batch']} | {fmt(r['eenn_rounds'])} | "
                  f"{fmt(r['ort_rounds'])} | {fmt(r['torch_rounds'])} |")
        paired = [(r, p) for r in res["dense"] for p in ("torch", "ort")
                  if r.get("eenn_rounds") and r.get(p + "_rounds") and len(r[p + "_rounds"]) == len(r["eenn_rounds"])]
        if paired:
            n = len(paired[0][0]["eenn_rounds"])
            k, conf = sign_interval(n)
            span = "their smallest to largest" if k == 1 else f"their {ordinal(k)} smallest to {ordinal(k)} largest"
            print(f"\nPaired ratios: eenn / peer within each round (the runs of one round are back to back, so they "
                  f"share the machine's state), their median, and {span}: an interval that holds the median ratio "
                  f"with {conf:.1f}% confidence whatever the noise's distribution (sign test, {n} rounds).\n")
            print("| net | input | mode | batch | peer | ratio per round | median | interval |")
            print("|---|---|---|---|---|---|---|---|")
            for r, p in paired:
                q = sorted(e / t for e, t in zip(r["eenn_rounds"], r[p + "_rounds"]))
                per = " ".join(f"{e / t:.2f}" for e, t in zip(r["eenn_rounds"], r[p + "_rounds"]))
                print(f"| {r['net']} | {r['input']} | {r['mode']} | {r['batch']} | "
                      f"{'PyTorch' if p == 'torch' else 'ONNX Runtime'} | {per} | {statistics.median(q):.2f}x | "
                      f"{q[k - 1]:.2f}-{q[n - k]:.2f}x |")
    if res["scaling"]:
        print("\nThread scaling (eenn img/s):\n\n| net | input | mode | batch | 1 thread | 2 threads | speedup |")
        print("|---|---|---|---|---|---|---|")
    for r in res["scaling"]:
        print(f"| {r['net']} | {r['input']} | {r['mode']} | {r['batch']} | {r['eenn_1t']:.0f} | {r['eenn_2t']:.0f} | "
              f"{r['eenn_2t'] / r['eenn_1t']:.2f}x |")
    if res["exits"]:
        ex, ort = res["exits"]["eenn"], {int(k): v for k, v in res["exits"]["ort_img_s"].items()}
        print(f"\nEarly exits: {res['exits']['model']} at q = {ex['q']:.4g} on {ex['images']} Fashion-MNIST test images: "
              f"accuracy {ex['acc_exits']:.2f}% against {ex['acc_cnn']:.2f}% for the same network without exits (a drop of "
              f"{ex['acc_cnn'] - ex['acc_exits']:.2f} points), {ex['flops_speedup']:.2f}x fewer FLOPs\n")
        print("| batch | eenn exits img/s | eenn dense img/s | ONNX Runtime dense img/s | exits / ONNX Runtime |")
        print("|---|---|---|---|---|")
        for b, key in ((1, "batch1"), (128, "batch128")):
            r = ex[key]
            print(f"| {b} | {r['exit_img_s']:.0f} | {r['cnn_img_s']:.0f} | {ort[b]:.0f} | {r['exit_img_s'] / ort[b]:.2f}x |")
    if not res["memory"]:
        return
    print("\nMemory, ResNet-56 3x32x32 (MB). Peak RSS of the whole process, each run alone; eenn's allocated part "
          "(RssAnon: without the shared library code) and its activation buffers; bound = 2 x (weights + the largest "
          "input+output pair of a layer):\n")
    print("| mode | batch | eenn peak RSS | eenn allocated | eenn activations | bound | PyTorch peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in res["memory"]:
        bound = f"{r['bound_mb']:.1f}" if r["mode"] == "infer" else "-"
        print(f"| {r['mode']} | {r['batch']} | {r['eenn_mb']:.1f} | {r['eenn_anon_mb']:.1f} | {r['activation_mb']:.1f} | "
              f"{bound} | {r['torch_mb']:.0f} |")


if __name__ == "__main__":
    main()
