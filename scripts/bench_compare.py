"""eenn against PyTorch in one run, on the same networks and shapes: inference at batch 1 and 128 and training
steps at batch 128 (random data, fp32). PyTorch is timed with 1 and 2 threads and its best is used (at batch 1
it is overhead-bound and often faster with one thread); the thread count is printed.

Run: /usr/bin/python3 scripts/bench_compare.py [--seconds S] [--json]   (needs Debian's python3-torch)
"""
import argparse, json, os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

CASES = [("resnet56", (3, 32, 32)), ("vgg16bn", (3, 32, 32)), ("resnet56", (1, 28, 28))]
MODES = [("infer", 1), ("infer", 128), ("train", 128)]


def torch_time(arch, shape, mode, batch, threads, secs):
    import torch
    import torch.nn.functional as F
    from torch_models import ResNet, VGG16BN
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet(9, shape[0], 10) if arch == "resnet56" else VGG16BN(shape[0], shape[1], 10)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    model.train(mode == "train")

    def step():
        if mode == "train":
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= secs and n >= 2:
            return n * batch / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--eenn", default=os.path.join(HERE, "..", "build", "eenn"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    print("timing eenn ...", file=sys.stderr, flush=True)
    out = subprocess.run([a.eenn, "bench", "--json", "--seconds", str(a.seconds)], check=True, capture_output=True,
                         text=True).stdout
    ee = {(r["net"], r["input"], r["mode"], r["batch"]): r for r in json.loads(out)["results"]}
    rows = []
    for arch, shape in CASES:
        sh = "x".join(map(str, shape))
        for mode, batch in MODES:
            best, best_t = 0, 0
            for threads in (1, 2):
                print(f"timing PyTorch {arch} {sh} {mode} batch {batch}, {threads} thread(s) ...", file=sys.stderr,
                      flush=True)
                r = torch_time(arch, shape, mode, batch, threads, a.seconds)
                if r > best:
                    best, best_t = r, threads
            e = ee[(arch, sh, mode, batch)]
            rows.append({"net": arch, "input": sh, "mode": mode, "batch": batch, "eenn_img_s": e["img_per_s"],
                         "eenn_gflops": e["gflops"], "torch_img_s": round(best, 1), "torch_threads": best_t,
                         "ratio": round(e["img_per_s"] / best, 2)})
    if a.json:
        print(json.dumps({"rows": rows}))
        return
    print("| net | input | mode | batch | eenn img/s | eenn GFLOP/s | PyTorch img/s (threads) | eenn / PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['net']} | {r['input']} | {r['mode']} | {r['batch']} | {r['eenn_img_s']:.0f} | {r['eenn_gflops']:.0f} "
              f"| {r['torch_img_s']:.0f} ({r['torch_threads']}) | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
