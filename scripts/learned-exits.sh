#!/bin/sh
# Learned exit decisions against thresholds on one backbone (docs/results.md, "Learned exit decisions"):
#  1. Bolukbasi et al.'s gates on the ResNet-56 SDN: the lambda curve, then one `eenn compare` table at matched
#     accuracy (1 point below the final classifier) and at matched cost (40% of the CNN);
#  2. JEI-DNN on the frozen ResNet-56 CNN at several lambdas, in the same table, with calibration error and
#     conformal coverage from `eenn eval`;
#  3. network selection: a small CNN, ResNet-20 and ResNet-56 in one cascade, against ResNet-56 alone.
#
#   sh scripts/learned-exits.sh
#
# Settings (environment): SDN, CNN (the frozen CNN for JEI-DNN), JEI_LAMBDAS, SMALL_CNN, MID_CNN, JOBS (runs at
# once, one thread each), SPEED_N (images timed at batch 1 by compare), OUT, EENN.
set -e
EENN=${EENN:-build/eenn}
SDN=${SDN:-models/resnet56-sdn.eenn}
CNN=${CNN:-models/resnet56-cnn.eenn}
MID_CNN=${MID_CNN:-models/resnet20-cnn.eenn}
JEI_LAMBDAS=${JEI_LAMBDAS:-"0.02 0.1 0.7"}
JOBS=${JOBS:-2}
SPEED_N=${SPEED_N:-500}
OUT=${OUT:-results/learned-exits}
mkdir -p "$OUT"

echo "1. Bolukbasi gates on $SDN: the lambda curve"
$EENN policy "$SDN" --lambda 0,0.001,0.003,0.01,0.02,0.03,0.05,0.1,0.2,0.5 >"$OUT/bolukbasi-curve.txt"
cat "$OUT/bolukbasi-curve.txt"

echo "2. JEI-DNN on $CNN at lambda $JEI_LAMBDAS"
running=0
for L in $JEI_LAMBDAS; do
    if [ ! -f "$OUT/jei-$L.eenn" ]; then
        $EENN train --mode jei --from "$CNN" --lambda "$L" --threads 1 --out "$OUT/jei-$L.eenn" 2>"$OUT/jei-$L.log" &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then wait; running=0; fi
    fi
done
wait
models="$SDN"
for L in $JEI_LAMBDAS; do
    models="$models $OUT/jei-$L.eenn"
    $EENN eval "$OUT/jei-$L.eenn" --json >"$OUT/jei-$L-eval.json"
done
$EENN eval "$SDN" --json >"$OUT/sdn-eval.json"
echo "   one table: matched accuracy (1 point below the final classifier), then matched cost (40%)"
# shellcheck disable=SC2086
$EENN compare $models --methods "maxprob,maxprob per-exit,bolukbasi,jei" --speed-n "$SPEED_N" \
    >"$OUT/compare-drop.txt"
# shellcheck disable=SC2086
$EENN compare $models --methods "maxprob,maxprob per-exit,bolukbasi,jei" --budget 40% --speed-n "$SPEED_N" \
    >"$OUT/compare-budget.txt"
cat "$OUT/compare-drop.txt" "$OUT/compare-budget.txt"

echo "3. network selection: small CNN, $MID_CNN, $CNN"
SMALL=${SMALL_CNN:-$OUT/small-cnn.eenn}
[ -f "$SMALL" ] || $EENN train --arch-file examples/small-cnn.txt --epochs 20 --out "$SMALL" 2>"$OUT/small-cnn.log"
$EENN cascade "$SMALL" "$MID_CNN" "$CNN" -o "$OUT/cascade.eenn" --max-drop 1% | tee "$OUT/cascade.txt"
$EENN compare "$OUT/cascade.eenn" --methods "maxprob,bolukbasi" --speed-n "$SPEED_N" | tee "$OUT/cascade-compare.txt"
