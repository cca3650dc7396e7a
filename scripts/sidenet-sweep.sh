#!/bin/sh
# SideNet (Morisot) on a frozen CNN, swept over the attachment point (docs/results.md, "SideNet"):
#  1. one SideNet per attachment point (`eenn train --mode sidenet --at NODE`), the CNN frozen;
#  2. one `eenn compare` table of every SideNet beside the IC-only SDN of the same CNN, at 1 point below the
#     final classifier and at 40% of the CNN's FLOPs;
#  3. each SideNet's own calibration error (`eenn analyze`: "each exit's own calibration error").
#
#   sh scripts/sidenet-sweep.sh
#
# Settings (environment): CNN, ICONLY (the IC-only SDN of the same CNN), POINTS (node names), HIDDEN, POOL,
# EPOCHS, JOBS (runs at once, one thread each), SPEED_N (images timed at batch 1 by compare), OUT, EENN.
set -e
EENN=${EENN:-build/eenn}
CNN=${CNN:-models/resnet56-cnn.eenn}
ICONLY=${ICONLY:-models/resnet56-iconly.eenn}
POINTS=${POINTS:-"s1.b8.add s2.b4.add s3.b1.add"}
HIDDEN=${HIDDEN:-256}
POOL=${POOL:-4}
EPOCHS=${EPOCHS:-10}
JOBS=${JOBS:-2}
SPEED_N=${SPEED_N:-500}
OUT=${OUT:-results/sidenet}
mkdir -p "$OUT"

echo "1. SideNets on $CNN at $POINTS"
running=0
for P in $POINTS; do
    if [ ! -f "$OUT/side-$P.eenn" ]; then
        $EENN train --mode sidenet --from "$CNN" --at "$P" --hidden "$HIDDEN" --pool "$POOL" --epochs "$EPOCHS" \
            --threads 1 --out "$OUT/side-$P.eenn" 2>"$OUT/side-$P.log" &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then wait; running=0; fi
    fi
done
wait
models="$ICONLY"
for P in $POINTS; do models="$models $OUT/side-$P.eenn"; done

echo "2. one table: the SideNets beside the IC-only SDN"
$EENN compare $models --methods maxprob --speed-n "$SPEED_N" >"$OUT/compare-1pt.txt"
$EENN compare $models --methods maxprob --budget 40% --speed-n 0 >"$OUT/compare-40.txt"
cat "$OUT/compare-1pt.txt" "$OUT/compare-40.txt"

echo "3. each exit's own calibration error"
for m in $models; do
    printf '%s: ' "$m"
    $EENN analyze "$m" --threads 1 | grep "own calibration error"
done | tee "$OUT/calibration.txt"
