"""int8 inference with early exits, measured (`make bench-int8`; also a section of `make bench`).

- The exit policy: a copy of the SDN calibrated with risk control (`eenn calibrate --risk EPS`, CRC, default 1%:
  the share of test images that the final head gets right and an exit gets wrong at most EPS in expectation),
  unless --risk 0 keeps the SDN's own policy.
- eenn: `eenn quantize` turns the fp32 SDN into an int8 one (its exit policy recalibrated on the int8 network);
  `eenn eval` gives both models' test accuracy with exits; `eenn bench --exits` times each with its exits and its
  backbone alone (dense), at batch 1 and 128.
- The int8 peer: PyTorch's own int8 inference (FX graph-mode post-training quantisation, the `onednn` engine:
  per-channel weights, conv+BN+ReLU and add+ReLU fused) of the same backbone without its ICs, calibrated on the
  same training images, timed at batch 1 and 128 with 1 and 2 threads (its best kept), and its test accuracy.
- Speed: --rounds R (default 5) rounds, the programs alternating; the median of each measurement is reported
  with its range (this shared machine varies by 20-45% between runs).

Run: /usr/bin/python3 scripts/int8_bench.py [--sdn models/resnet56-sdn.eenn] [--rounds 5] [--seconds 2] [--json F]
     /usr/bin/python3 scripts/int8_bench.py --report F   (the tables of an earlier run's --json)
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
T0 = time.time()


def progress(msg):
    print(f"[{time.time() - T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"int8_bench: {' '.join(cmd[:3])} failed: {p.stderr.strip()}")
    return p.stdout


# The PyTorch child: builds the int8 backbone (calibrated on the images in CALIB), then either times it at the
# given batch and thread count or measures its accuracy on the test images.
TORCH_CHILD = r"""
import json, sys, time, numpy as np, torch
sys.path.insert(0, %(here)r)
from eenn_torch import Graph, FinalHead, set_tensors
from int8_bench import strip_ics
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx
sdn, calib, what, batch, threads, secs, test = sys.argv[1:8]
torch.backends.quantized.engine = "onednn"
text, tensors = strip_ics(sdn)
m = FinalHead(set_tensors(Graph(text), tensors)).eval()
xc = torch.from_numpy(np.load(calib))
with torch.no_grad():
    pm = prepare_fx(m, get_default_qconfig_mapping("onednn"), example_inputs=(xc[:1],))
    for i in range(0, len(xc), 100):
        pm(xc[i:i + 100])
    qm = convert_fx(pm)
torch.set_num_threads(int(threads))
with torch.no_grad():
    if what == "accuracy":
        d = np.load(test)
        x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"]).long()
        right = sum(int((qm(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(x), 500))
        print(json.dumps({"acc": 100.0 * right / len(x)}))
    else:
        b = int(batch)
        x = xc[:b] if b <= len(xc) else xc[:1].repeat(b, 1, 1, 1)
        for _ in range(3):
            qm(x)
        n, t0 = 0, time.perf_counter()
        while True:
            qm(x); n += 1
            dt = time.perf_counter() - t0
            if dt >= float(secs) and n >= 3:
                break
        print(json.dumps({"img_per_s": n * b / dt}))
"""


def strip_ics(sdn):
    """The SDN's backbone alone: its architecture text and tensors without the IC nodes."""
    from eenn_file import read_eenn
    arch, _, tensors = read_eenn(sdn)
    lines = [l for l in arch.splitlines() if " name=ic" not in l]
    return "\n".join(lines), {k: v for k, v in tensors.items() if not k.startswith("ic")}


def idx_images(path):
    import gzip, numpy as np
    with gzip.open(path) as f:
        b = f.read()
    n, h, w = (int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(b, np.uint8, offset=16).reshape(n, 1, h, w)


def idx_labels(path):
    import gzip, numpy as np
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)


def torch_child(sdn, calib, what, batch, threads, secs, test):
    out = run([sys.executable, "-c", TORCH_CHILD % {"here": HERE}, sdn, calib, what, str(batch), str(threads),
               str(secs), test])
    return json.loads(out)


def med(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdn", default=os.path.join(ROOT, "models", "resnet56-sdn.eenn"))
    ap.add_argument("--eenn", default=os.path.join(ROOT, "build", "eenn"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--risk", type=float, default=0.01, help="the risk target of both policies (0: the SDN's own)")
    ap.add_argument("--n", type=int, default=10000, help="test images for the timed early exits")
    ap.add_argument("--json", default=None)
    ap.add_argument("--report", default=None, metavar="FILE")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            report(json.load(f))
        return
    import numpy as np
    from eenn_file import read_eenn
    tmp = tempfile.mkdtemp(prefix="eenn-int8-")
    qmodel = os.path.join(tmp, "int8.eenn")
    if a.risk > 0:
        fp = os.path.join(tmp, "fp32.eenn")
        with open(a.sdn, "rb") as f, open(fp, "wb") as g:
            g.write(f.read())
        progress(f"eenn calibrate --risk {a.risk} (a copy of {a.sdn})")
        run([a.eenn, "calibrate", fp, "--risk", str(a.risk), "--json"])
        a.sdn_label, a.sdn = a.sdn, fp
    else:
        a.sdn_label = a.sdn
    progress(f"eenn quantize {a.sdn} ({a.calib} calibration images)")
    quant = json.loads(run([a.eenn, "quantize", a.sdn, "-o", qmodel, "--calib", str(a.calib), "--json"]))
    acc = {}
    for tag, m in (("fp32", a.sdn), ("int8", qmodel)):
        progress(f"eenn eval {tag}")
        e = json.loads(run([a.eenn, "eval", m, "--json"]))
        acc[tag] = e
    # the peer's data: the same calibration images (the first of the training set) and the test set, normalised
    _, meta, _ = read_eenn(a.sdn)
    data = meta.get("data.dir", "/usr/share/datasets/fashion-mnist")
    mean, std = (float(meta.get(k, d).split(",")[0]) for k, d in (("data.mean", "0"), ("data.std", "1")))
    norm = lambda px: ((px.astype(np.float32) / 255 - mean) / std).astype(np.float32)
    calib = os.path.join(tmp, "calib.npy")
    np.save(calib, norm(idx_images(os.path.join(data, "train-images-idx3-ubyte.gz"))[:a.calib]))
    test = os.path.join(tmp, "test.npz")
    np.savez(test, x=norm(idx_images(os.path.join(data, "t10k-images-idx3-ubyte.gz"))),
             y=idx_labels(os.path.join(data, "t10k-labels-idx1-ubyte.gz")))
    progress("PyTorch int8 (onednn engine): test accuracy")
    torch_acc = torch_child(a.sdn, calib, "accuracy", 0, 2, 0, test)["acc"]
    runs = {k: [] for k in ("fp32_exits_1", "fp32_exits_128", "fp32_dense_1", "fp32_dense_128", "int8_exits_1",
                            "int8_exits_128", "int8_dense_1", "int8_dense_128", "torch_int8_1", "torch_int8_128")}
    for r in range(a.rounds):
        for tag, m in (("fp32", a.sdn), ("int8", qmodel)):
            progress(f"round {r + 1}/{a.rounds}: eenn bench --exits {tag}")
            b = json.loads(run([a.eenn, "bench", "--exits", m, "--n", str(a.n), "--seconds", str(a.seconds), "--json"]))
            for batch in (1, 128):
                runs[f"{tag}_exits_{batch}"].append(b[f"batch{batch}"]["exit_img_s"])
                runs[f"{tag}_dense_{batch}"].append(b[f"batch{batch}"]["cnn_img_s"])
        for batch in (1, 128):
            best = 0
            for t in (1, 2):
                progress(f"round {r + 1}/{a.rounds}: PyTorch int8 batch {batch}, {t} thread(s)")
                best = max(best, torch_child(a.sdn, calib, "time", batch, t, a.seconds, test)["img_per_s"])
            runs[f"torch_int8_{batch}"].append(best)
    res = {"sdn": a.sdn_label, "risk": a.risk, "rounds": a.rounds, "quantize": quant, "torch_int8_acc": torch_acc,
           "eval": {k: {"acc_exits": v["models"][0]["early_exit"]["acc"], "cost": v["models"][0]["early_exit"]["cost"],
                        "policy": v["models"][0]["policy"], "acc_final": v["models"][0]["exits"][-1]["acc"]}
                    for k, v in acc.items()},
           "speed": {k: med(v) for k, v in runs.items()}}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    report(res)


def report(res):
    s = {k: v["median"] for k, v in res["speed"].items()}
    rng = lambda k: f"{res['speed'][k]['min']:.0f}-{res['speed'][k]['max']:.0f}"
    print(f"{res['sdn']}: medians of {res['rounds']} alternating rounds (img/s, range in brackets)")
    print("| | batch 1 | batch 128 |")
    print("|---|---|---|")
    for k, nm in (("fp32_dense", "eenn fp32, backbone alone"), ("fp32_exits", "eenn fp32 with exits"),
                  ("int8_dense", "eenn int8, backbone alone"), ("int8_exits", "eenn int8 with exits"),
                  ("torch_int8", "PyTorch int8 (onednn), backbone alone")):
        print(f"| {nm} | {s[k + '_1']:.0f} ({rng(k + '_1')}) | {s[k + '_128']:.0f} ({rng(k + '_128')}) |")
    for b in (1, 128):
        print(f"batch {b}: int8 exits / fp32 exits {s[f'int8_exits_{b}'] / s[f'fp32_exits_{b}']:.2f}x; "
              f"int8 backbone / fp32 backbone {s[f'int8_dense_{b}'] / s[f'fp32_dense_{b}']:.2f}x; "
              f"eenn int8 exits / PyTorch int8 {s[f'int8_exits_{b}'] / s[f'torch_int8_{b}']:.2f}x; "
              f"eenn int8 backbone / PyTorch int8 {s[f'int8_dense_{b}'] / s[f'torch_int8_{b}']:.2f}x")
    e = res["eval"]
    if res.get("risk"):
        print(f"both policies: risk control at {100 * res['risk']:g}% (CRC), the int8 one recalibrated on the int8 network")
    print(f"test accuracy ({res['sdn']}, Fashion-MNIST test set): eenn fp32 with exits {e['fp32']['acc_exits']:.2f}% at "
          f"{100 * e['fp32']['cost']:.1f}% of the FLOPs ({e['fp32']['policy']}), int8 with exits {e['int8']['acc_exits']:.2f}% "
          f"at {100 * e['int8']['cost']:.1f}% ({e['int8']['policy']}, recalibrated); final head fp32 "
          f"{e['fp32']['acc_final']:.2f}%, int8 {e['int8']['acc_final']:.2f}%, PyTorch int8 {res['torch_int8_acc']:.2f}%")


if __name__ == "__main__":
    main()
