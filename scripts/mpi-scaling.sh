#!/bin/sh
# Data-parallel training on this machine (docs/cluster.md): the time to sum ResNet-56's and WRN-32-4's gradients
# over 2 ranks (shared memory, then TCP on loopback), ResNet-56 training as 2 ranks x 1 thread against 1 process x
# 2 threads in one run (the same two cores, so near 1.0x is expected: the difference is the overhead), and from
# those the expected speedup on N machines for a given network bandwidth.
#
#   sh scripts/mpi-scaling.sh            (about 6 minutes; both cores must be otherwise idle: check top)
#
# Settings (environment): EENN (build/eenn), SUBSET (6400 training images per run), REPEAT (2), OUT (runs/mpi).
set -e
EENN=${EENN:-build/eenn}
SUBSET=${SUBSET:-6400}
REPEAT=${REPEAT:-3}
OUT=${OUT:-runs/mpi}
mkdir -p "$OUT"
MPIRUN="mpirun -q --oversubscribe --bind-to none"
[ "$(id -u)" -eq 0 ] && MPIRUN="$MPIRUN --allow-run-as-root"

echo "1. summing the gradients over 2 ranks: shared memory, then TCP on loopback"
$MPIRUN -np 2 $EENN bench --allreduce --seconds 5 --json | tee "$OUT/allreduce-shm.json"
$MPIRUN --mca btl tcp,self -np 2 $EENN bench --allreduce --seconds 5 --json | tee "$OUT/allreduce-tcp.json"

echo "2. ResNet-56 training, $SUBSET images of batch 128: 1 process x 2 threads against 2 ranks x 1 thread (and"
echo "   1 process x 1 thread, to see how threads scale), alternating"
T="--arch resnet56 --subset $SUBSET --test-subset 100 --val 0 --epochs 1 --batch 128 --json"
: >"$OUT/train.jsonl"
for r in $(seq 1 "$REPEAT"); do
    $EENN train $T --threads 2 --out "$OUT/one.eenn" --checkpoint "$OUT/one.ckpt" 2>/dev/null |
        sed 's/^{/{"run":"1 process x 2 threads",/' | tee -a "$OUT/train.jsonl"
    $MPIRUN -np 2 $EENN train $T --threads 1 --out "$OUT/two.eenn" --checkpoint "$OUT/two.ckpt" 2>/dev/null |
        sed 's/^{/{"run":"2 ranks x 1 thread",/' | tee -a "$OUT/train.jsonl"
    $EENN train $T --threads 1 --out "$OUT/one1.eenn" --checkpoint "$OUT/one1.ckpt" 2>/dev/null |
        sed 's/^{/{"run":"1 process x 1 thread",/' | tee -a "$OUT/train.jsonl"
done

echo "3. one machine's training step at batch 128 (2 threads), for the scaling model"
for a in resnet56 wrn32_4; do $EENN bench --arch $a --input 3x32x32 --train-only --seconds 10 --threads 2 --json; done |
    tee "$OUT/step.jsonl"

echo "4. the scaling model"
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
shm = json.load(open(out + "/allreduce-shm.json"))["allreduce"]
tcp = json.load(open(out + "/allreduce-tcp.json"))["allreduce"]
runs = [json.loads(l) for l in open(out + "/train.jsonl") if l.strip()]
steps = {}
for l in open(out + "/step.jsonl"):
    r = json.loads(l)["results"][0]
    steps[r["net"]] = r["ms_per_batch"]
def med(name):
    t = sorted(x["train_seconds"] for x in runs if x["run"] == name)
    return t[len(t) // 2], len(t)
(one, k), (two, _), (single, _) = med("1 process x 2 threads"), med("2 ranks x 1 thread"), med("1 process x 1 thread")
ms = sorted(x["parallel"]["allreduce_ms"] for x in runs if "parallel" in x)
print("ResNet-56 training (Fashion-MNIST), medians of %d alternating runs: 1 process x 2 threads %.1f s, 2 ranks x "
      "1 thread %.1f s, 1 process x 1 thread %.1f s" % (k, one, two, single))
print("  2 ranks against 1 process on the same 2 cores: %.2fx; 2 threads against 1: %.2fx; 2 ranks against 1 "
      "thread: %.2fx" % (one / two, single / one, single / two))
print("  the gradient sum inside training: %.2f ms per step (median of the runs' means; it includes waiting for the "
      "slower rank)" % ms[len(ms) // 2])
for a in shm:
    t = [x for x in tcp if x["arch"] == a["arch"]][0]
    print("%s: %.2f MB of gradients summed over 2 ranks: %.3f ms median (shared memory), %.3f ms (TCP on "
          "loopback); one machine's step at batch 128: %.0f ms" % (a["arch"], a["mb"], a["ms_p50"], t["ms_p50"],
                                                                  steps[a["arch"]]))
# Ring allreduce over N machines: each link carries 2 (N - 1) / N of the gradients, in 2 (N - 1) messages of a
# latency alpha each. Weak scaling (batch 128 on every machine) with no overlap of the sum and the backward pass:
# speedup = N * step / (step + allreduce).
alpha = 30e-6
print("\nexpected speedup on N machines (batch 128 per machine, no overlap; alpha = 30 us per message)")
print("| network | link | N = 2 | N = 4 | N = 8 | N = 16 |")
print("|---|---|---|---|---|---|")
for a in shm:
    step = steps[a["arch"]] * 1e-3
    for gbit in (10, 100):
        cells = []
        for n in (2, 4, 8, 16):
            t = 2 * (n - 1) / n * a["mb"] * 1e6 * 8 / (gbit * 1e9) + 2 * (n - 1) * alpha
            cells.append("%.2fx (sum %.1f ms)" % (n * step / (step + t), t * 1e3))
        print("| %s | %d Gbit/s | %s |" % (a["arch"], gbit, " | ".join(cells)))
EOF
