#!/bin/sh
# The portable convolution kernel against the AVX2 one and oneDNN on this machine: ResNet-56 (3x32x32) inference at
# batch 1 and 128 and training at batch 128, 2 threads. The portable kernel is the same direct kernel compiled over
# GCC's generic vectors (what a CPU without AVX2 or NEON gets), from a NO_AVX2=1 build forced with --conv direct.
# ROUNDS (default 5) alternating rounds; the median of each is printed.
# Run: sh scripts/portable-kernel.sh [ROUNDS]
set -e
cd "$(dirname "$0")/.."
R=${1:-5}
make -s all >/dev/null
make -s BUILD=build-generic NO_AVX2=1 build-generic/eenn >/dev/null
out=$(mktemp)
for r in $(seq "$R"); do
    for k in "generic build-generic/eenn direct" "avx2 build/eenn direct" "onednn build/eenn onednn"; do
        set -- $k
        "$2" bench --arch resnet56 --input 3x32x32 --threads 2 --seconds 2 --conv "$3" --json |
            /usr/bin/python3 -c "import json,sys; [print('$1', r['mode'], r['batch'], r['img_per_s']) for r in json.load(sys.stdin)['results']]" >>"$out"
    done
    echo "round $r/$R done" >&2
done
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, mode, batch, v = line.split()
    runs.setdefault((mode, int(batch)), {}).setdefault(k, []).append(float(v))
print("ResNet-56 3x32x32, 2 threads, img/s (median of %d rounds)" % len(next(iter(runs.values()))["avx2"]))
print("| mode | batch | portable (generic vectors) | AVX2 kernel | oneDNN | portable / AVX2 | portable / oneDNN |")
print("|---|---|---|---|---|---|---|")
for (mode, batch), d in sorted(runs.items()):
    m = {k: statistics.median(v) for k, v in d.items()}
    print(f"| {mode} | {batch} | {m['generic']:.0f} | {m['avx2']:.0f} | {m['onednn']:.0f} | "
          f"{m['generic'] / m['avx2']:.2f}x | {m['generic'] / m['onednn']:.2f}x |")
PY
rm -f "$out"
