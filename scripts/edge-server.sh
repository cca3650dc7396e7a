#!/bin/sh
# Edge and server (docs/serve.md; docs/results.md, "Edge and server"): the ResNet-56 SDN split after IC 2, on the
# 10,000 Fashion-MNIST test images over loopback: the answers against local inference for each way of sending,
# the bytes per input and the share kept on the device; latency and throughput with 1, 4 and 16 clients for 60 s
# each; the time a slow link adds, computed from the bytes.
#
#   sh scripts/edge-server.sh            (about 6 minutes)
#
# Settings (environment): EENN (build/eenn), MODEL (models/resnet56-sdn.eenn), SPLIT (s1.b8.add), PORT (8093),
# SECONDS_PER_RUN (60), OUT (runs/edge-server).
set -e
EENN=${EENN:-build/eenn}
MODEL=${MODEL:-models/resnet56-sdn.eenn}
SPLIT=${SPLIT:-s1.b8.add}
PORT=${PORT:-8093}
SECS=${SECONDS_PER_RUN:-60}
OUT=${OUT:-runs/edge-server}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
IMG="$DATA/t10k-images-idx3-ubyte.gz"
U="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
$EENN serve "$MODEL" --listen "127.0.0.1:$PORT" 2>"$OUT/serve.log" &
spid=$!
trap 'kill $spid 2>/dev/null' EXIT
sleep 2
echo "1. answers: local inference, then split at $SPLIT with each way of sending"
$EENN infer "$MODEL" "$IMG" --limit 10000 --batch 128 --json >"$OUT/local.jsonl"
for v in "activations fp32" "activations fp16" "activations int8" "inputs fp32" "inputs int8"; do
    set -- $v
    $EENN infer "$MODEL" "$IMG" --limit 10000 --batch 128 --json --split "$SPLIT" --server "$U" --send "$1" \
        --wire "$2" >"$OUT/$1-$2.jsonl" 2>"$OUT/$1-$2.err"
done
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
def load(p):
    r = []
    for l in open(p):
        d = json.loads(l)
        r.append((d["class"], int(re.search(r"label (\d+)", d["input"]).group(1)), d["exit_index"]))
    return r
L = load(f"{out}/local.jsonl")
print(f"{'sent':24s} {'bytes/input':>12s} {'kept here':>10s} {'same answers':>13s} {'same exit':>10s} {'accuracy':>9s}")
print(f"{'nothing (all local)':24s} {0:12d} {'100.0%':>10s} {len(L):13d} {len(L):10d} {100 * sum(a == b for a, b, _ in L) / len(L):8.2f}%")
for v in ("activations-fp32", "activations-fp16", "activations-int8", "inputs-fp32", "inputs-int8"):
    S = load(f"{out}/{v}.jsonl")
    err = open(f"{out}/{v}.err").read()
    b = float(re.search(r"([0-9.]+) bytes per input", err).group(1))
    kept = re.search(r"\(([0-9.]+%)\)", err).group(1)
    same = sum(a[0] == s[0] for a, s in zip(L, S))
    ex = sum(a[2] == s[2] for a, s in zip(L, S))
    print(f"{v.replace('-', ', '):24s} {b:12.0f} {kept:>10s} {same:13d} {ex:10d} {100 * sum(s[0] == s[1] for s in S) / len(S):8.2f}%")
PY
echo "2. latency and throughput: 1, 4 and 16 clients, batch 1, $SECS s each (each client: its own model copy, 1 thread)"
$EENN bench --exits "$MODEL" --split "$SPLIT" --server "$U" --clients 1,4,16 --seconds "$SECS" --json >"$OUT/bench.json"
$EENN bench --exits "$MODEL" --split "$SPLIT" --server "$U" --clients 16 --seconds "$SECS" --send inputs --json >"$OUT/bench-inputs.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for f, what in (("bench.json", "activations, fp32"), ("bench-inputs.json", "inputs, fp32")):
    b = json.load(open(f"{out}/{f}"))
    if f == "bench.json":
        print(f"whole model on the device (1 thread): {b['local']['img_per_s']:.0f} img/s, p50 {b['local']['p50_ms']:.3f} ms, p99 {b['local']['p99_ms']:.3f} ms")
        print(f"{'sent':18s} {'clients':>7s} {'img/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'requests':>9s} {'errors':>7s} {'degraded':>9s}")
    for c in b["clients"]:
        print(f"{what:18s} {c['clients']:7d} {c['img_per_s']:8.0f} {c['p50_ms']:8.3f} {c['p99_ms']:8.3f} {c['requests']:9d} {c['errors']:7d} {c['degraded']:9d}")
PY
echo "3. a slow link: the link time per input, from the bytes (ms; a sent input waits for its own bytes)"
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
b = json.load(open(f"{out}/bench.json"))
rows = [("all inputs to the server (8-bit image)", b["input_bytes_8bit"], 1.0)]
for v in ("activations-fp32", "activations-fp16", "activations-int8", "inputs-fp32", "inputs-int8"):
    err = open(f"{out}/{v}.err").read()
    per = float(re.search(r"([0-9.]+) bytes per input", err).group(1))
    sent = float(re.search(r"(\d+) sent to", err).group(1)) / 10000
    rows.append((f"split, {v.replace('-', ', ')}", per / sent, sent))
print(f"{'sent':40s} {'bytes/sent':>11s} {'sent':>6s} | {'1 Mbit/s: mean':>15s} {'sent input':>11s} | {'10 Mbit/s: mean':>16s} {'sent input':>11s}")
for name, per_sent, share in rows:
    cells = []
    for mbit in (1, 10):
        t = per_sent * 8 / (mbit * 1e6) * 1e3
        cells.append(f"{t * share:15.2f} {t:11.2f}")
    print(f"{name:40s} {per_sent:11.0f} {100 * share:5.1f}% | {cells[0]} | {cells[1]:>28s}")
PY
