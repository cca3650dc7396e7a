"""The Python binding (python/eenn) against the CLI and against itself: run by tests/run_tests.sh with Debian's
python3-numpy. Prints "test_python: N passed, M failed" like the C tests.

    python3 tests/python/test_binding.py BUILD_DIR"""
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
import eenn  # noqa: E402

DATA = os.environ.get("EENN_DATA", "/usr/share/datasets/fashion-mnist")
MODEL = os.path.join(ROOT, "models", "resnet56-sdn.eenn")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL python: " + what)


# 1. the binding's answers are the CLI's on 1,000 test images: class, exit, confidence
m = eenn.load(MODEL)
test = eenn.Dataset.load(DATA, "test")
check(len(test) == 10000 and test.images.shape[1:] == (1, 28, 28), "test split: %s" % (test.images.shape,))
r = m.infer(test.images[:1000])
out = subprocess.run([os.path.join(BUILD, "eenn"), "infer", MODEL, os.path.join(DATA, "t10k-images-idx3-ubyte.gz"),
                      "--limit", "1000", "--json"], capture_output=True, text=True, check=True).stdout
cli = [json.loads(line) for line in out.splitlines() if line.strip()]
check(len(cli) == 1000, "the CLI answered %d of 1000" % len(cli))
same_class = sum(int(c["class"]) == int(k) for c, k in zip(cli, r["class"]))
same_exit = sum(int(c["exit_index"]) == int(e) for c, e in zip(cli, r["exit"]))
conf_gap = max(abs(c["confidence"] - float(v)) for c, v in zip(cli, r["confidence"]))
check(same_class == 1000 and same_exit == 1000, "binding vs CLI: %d classes, %d exits of 1000 agree" % (same_class,
                                                                                                   same_exit))
check(conf_gap < 1e-4, "binding vs CLI: confidences differ by %g" % conf_gap)
check(abs(r["cost"].mean() - np.mean([c["cost"] for c in cli])) < 1e-3, "binding vs CLI: cost")
acc = (r["class"] == test.labels[:1000]).mean()
check(acc > 0.88, "accuracy with exits on 1000 images: %.3f" % acc)
check(len(set(r["exit"].tolist())) > 2 and r["cost"].mean() < 0.6, "exits really taken: %s" % np.bincount(r["exit"]))

# 2. per-exit logits: the final head's argmax is what q > 1 (no early exit) answers; a threshold of 0 exits at IC 1
L = m.logits(test.images[:64])
check(L.shape == (64, m.heads, m.classes), "logits shape %s" % (L.shape,))
full = m.infer(test.images[:64], q=1.5)
check((full["exit"] == m.heads - 1).all() and (full["class"] == L[:, -1].argmax(1)).all(), "q > 1: the final head")
first = m.infer(test.images[:64], q=0.0)
check((first["exit"] == 0).all() and (first["class"] == L[:, 0].argmax(1)).all(), "q = 0: the first exit")
p = np.exp(L[:, -1] - L[:, -1].max(1, keepdims=True))
check(np.allclose(full["confidence"], (p / p.sum(1, keepdims=True)).max(1), atol=1e-5), "confidence = max softmax")

# 3. errors raise with the library's message
try:
    eenn.load(os.path.join(ROOT, "no-such.eenn"))
    check(False, "loading a missing file raised nothing")
except eenn.Error as e:
    check("no-such.eenn" in str(e), "the error names the file: %s" % e)
try:
    m.infer(np.zeros((2, 3, 32, 32), np.uint8))
    check(False, "a wrong input shape raised nothing")
except eenn.Error as e:
    check("28" in str(e), "wrong shape: %s" % e)
try:
    m.infer(test.images[:2], policy="kind=nonsense")
    check(False, "a bad policy raised nothing")
except eenn.Error as e:
    check("nonsense" in str(e) or "kind" in str(e), "bad policy: %s" % e)

# 4. train from arrays with a progress callback, calibrate, save and load back
rng = np.random.default_rng(3)
n = 512
labels = np.arange(n) % 4
images = rng.integers(0, 60, size=(n, 1, 16, 16)).astype(np.uint8)
for i in range(n):  # the class is the bright quadrant
    q = labels[i]
    images[i, 0, (q // 2) * 8:(q // 2) * 8 + 8, (q % 2) * 8:(q % 2) * 8 + 8] += 150
data = eenn.Dataset(images[:384], labels[:384])
val = eenn.Dataset(images[384:], labels[384:], data.mean[:1], data.std[:1])
net = eenn.build("resnet20", (1, 16, 16), 4, seed=5)
seen = []
eenn.train(net, data, val=val, epochs=6, batch=64, lr=0.05, milestones=(), augment=False,
           progress=seen.append)
check(any(d["epoch_done"] for d in seen) and all(d["loss"] >= 0 for d in seen), "progress: %d calls" % len(seen))
check(seen[-1]["val_acc"] > 0.9, "training from arrays: validation accuracy %.3f" % seen[-1]["val_acc"])
with tempfile.TemporaryDirectory() as t:
    path = os.path.join(t, "q.eenn")
    net.save(path)
    back = eenn.load(path)
    a, b = net.logits(val.images), back.logits(val.images)
    check(np.abs(a - b).max() < 1e-5, "saved and loaded: logits differ by %g" % np.abs(a - b).max())
# calibration on an SDN model, on held-out images: the stored policy is used by infer afterwards
sdn = eenn.load(MODEL)
held = eenn.Dataset(test.images[5000:7000], test.labels[5000:7000], test.mean[:1], test.std[:1], 10)
st = sdn.calibrate(held, max_drop=0.005, per_exit=True)
check(st["cost"] < 1 and "per_exit=1" in sdn.policy, "calibrate: %s" % st)
r2 = sdn.infer(held.images)
check(abs((r2["class"] == held.labels).mean() - st["acc"]) < 1e-9, "infer under the calibrated policy: %.4f vs %.4f"
      % ((r2["class"] == held.labels).mean(), st["acc"]))
try:
    eenn.train(net, data, epochs=1, progress=lambda d: 1 / 0)
    check(False, "an exception in the progress callback was lost")
except ZeroDivisionError:
    check(True, "")

# int8 from Python: quantised on 256 training images, the same answers as `eenn quantize` writes (same calibration
# images: the first 256 of the training set), and close to the float model on 1000 test images
train_ds = eenn.Dataset.load(DATA, "train")
q = eenn.load(MODEL)
q.quantize(train_ds.images[:256])
check(q.int8_layers == 57, "int8 layers: %d" % q.int8_layers)
with tempfile.TemporaryDirectory() as t:
    path = os.path.join(t, "q.eenn")
    subprocess.run([os.path.join(BUILD, "eenn"), "quantize", MODEL, "-o", path, "--calib", "256", "--val", "500"],
                   capture_output=True, check=True)
    a, b = q.logits(test.images[:200]), eenn.load(path).logits(test.images[:200])
    check(np.abs(a - b).max() < 1e-4, "binding vs eenn quantize: int8 logits differ by %g" % np.abs(a - b).max())
fl, ql = m.logits(test.images[:1000])[:, -1].argmax(1), q.logits(test.images[:1000])[:, -1].argmax(1)
check((fl == ql).mean() > 0.98, "int8 and float final answers agree on %.3f of 1000" % (fl == ql).mean())
try:
    q.quantize(train_ds.images[:8], estimator="kl")
    check(False, "a bad estimator raised nothing")
except eenn.Error as e:
    check("estimator" in str(e), "bad estimator: %s" % e)

print("test_python: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
