"""ONNX export with real exits (scripts/eenn_export.py, peers/onnx_exits.js): the ResNet-56 SDN of models/ exported
in segments and run by ONNX Runtime (npm's onnxruntime-node) on 1,000 Fashion-MNIST test images, at batch 1 and at
batch 128 (compacted after every exit), gives eenn's classes and exits, and the answering exit's logits within
1e-4 of eenn's.

    python3 tests/python/test_onnx_export.py BUILD_DIR"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
os.environ["EENN_LIB"] = os.path.join(BUILD, "libeenn.so")
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import eenn  # noqa: E402
from eenn_export import export  # noqa: E402

DATA = os.environ.get("EENN_DATA", "/usr/share/datasets/fashion-mnist")
MODEL = os.path.join(ROOT, "models", "resnet56-sdn.eenn")
N = 1000
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL onnx export: " + what)


if not os.path.isdir(os.path.join(ROOT, "peers", "node_modules", "onnxruntime-node")):
    print("FAIL onnx export: onnxruntime-node is not installed (scripts/setup-debian.sh runs npm install in peers/)")
    print("test_onnx_export: 0 passed, 1 failed")
    sys.exit(1)

m = eenn.load(MODEL)
test = eenn.Dataset.load(DATA, "test")
want = m.infer(test.images[:N])
logits = m.logits(test.images[:N])
with tempfile.TemporaryDirectory() as d:
    man = export(MODEL, d)
    check(len(man["segments"]) == m.heads and os.path.exists(os.path.join(d, "dense.onnx")),
          "%d segments for %d exits" % (len(man["segments"]), m.heads))
    with open(os.path.join(d, "segment1.onnx"), "rb") as f:
        check(b"eenn.policy" in f.read(), "the policy is not in the ONNX metadata")
    for batch in (1, 128):
        out = subprocess.run(["node", os.path.join(ROOT, "peers", "onnx_exits.js"), d,
                              os.path.join(DATA, "t10k-images-idx3-ubyte.gz"), "--limit", str(N), "--batch",
                              str(batch)], capture_output=True, text=True)
        check(out.returncode == 0, "onnx_exits.js at batch %d: %s" % (batch, out.stderr.strip()))
        got = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        check(len(got) == N, "batch %d: %d answers" % (batch, len(got)))
        if len(got) != N:
            continue
        cls = np.array([g["class"] for g in got])
        ex = np.array([g["exit"] for g in got])
        err = max(float(np.abs(np.array(g["logits"]) - logits[i, g["exit"]]).max()) for i, g in enumerate(got))
        check((cls == want["class"]).all(), "batch %d: %d of %d classes agree" % (batch, (cls == want["class"]).sum(), N))
        check((ex == want["exit"]).all(), "batch %d: %d of %d exits agree" % (batch, (ex == want["exit"]).sum(), N))
        check(err < 1e-4, "batch %d: logits differ by %g" % (batch, err))
        print("ONNX Runtime, batch %d: %d/%d classes and exits as eenn, logits within %.1e" % (
            batch, (cls == want["class"]).sum(), N, err))
print("test_onnx_export: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
