#!/bin/sh
# EENets at several cost weights lambda on one backbone, drawn beside an SDN's threshold curve.
#
# Two-stage training (the EENets code's --two-stage): every exit's classifier first learns with the plain sum of
# cross-entropies (v0, which does not depend on lambda), then the cost-aware loss v1 takes over. The first stage is
# trained once and every lambda resumes from its checkpoint. Then `eenn compare` puts every EENet (its trained
# rule, confidence above 0.5) and the SDN model in one table and one chart.
#
#   sh scripts/eenet-sweep.sh                       # ResNet-20, 5 linear exits, lambda 0.05 ... 1
#   ARCH=resnet56 SDN=models/resnet56-sdn.eenn sh scripts/eenet-sweep.sh
#
# Settings (environment): ARCH, EXITS, DIST, EPOCHS, STAGE1, LAMBDAS, JOBS (runs at once, one thread each), DATA,
# SDN (the model to compare with), OUT (directory), EENN (the binary).
set -e
EENN=${EENN:-build/eenn}
ARCH=${ARCH:-resnet20}
EXITS=${EXITS:-5}
DIST=${DIST:-linear}
EPOCHS=${EPOCHS:-15}
STAGE1=${STAGE1:-5}
LAMBDAS=${LAMBDAS:-"0.05 0.1 0.25 0.5 1"}
JOBS=${JOBS:-2}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
SDN=${SDN:-models/$ARCH-sdn.eenn}
OUT=${OUT:-results/eenet-sweep-$ARCH}
mkdir -p "$OUT"
common="--mode eenet --arch $ARCH --data $DATA --exits $EXITS --distribution $DIST --loss two-stage --stage1-epochs $STAGE1 --epochs $EPOCHS"

if [ ! -f "$OUT/stage1.ckpt" ]; then
    echo "stage 1: $STAGE1 epochs of v0 (every exit's cross-entropy), shared by every lambda"
    $EENN train $common --lambda 1 --stop-after "$STAGE1" --out "$OUT/stage1.eenn" --checkpoint "$OUT/stage1.ckpt" \
        --threads 0 2>"$OUT/stage1.log"
fi

running=0
for L in $LAMBDAS; do
    if [ ! -f "$OUT/lambda-$L.eenn" ]; then
        [ -f "$OUT/lambda-$L.eenn.ckpt" ] || cp "$OUT/stage1.ckpt" "$OUT/lambda-$L.eenn.ckpt"
        echo "lambda $L: epochs $((STAGE1 + 1)) to $EPOCHS with v1 (log: $OUT/lambda-$L.log)"
        $EENN train $common --lambda "$L" --resume --threads 1 --out "$OUT/lambda-$L.eenn" --json \
            >"$OUT/lambda-$L.json" 2>"$OUT/lambda-$L.log" &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then wait; running=0; fi
    fi
done
wait

models=""
for L in $LAMBDAS; do models="$models $OUT/lambda-$L.eenn"; done
[ -f "$SDN" ] && models="$SDN $models"
$EENN compare $models --data "$DATA" --methods "maxprob,confidence" --chart "$OUT/chart.html" --speed-n 0 \
    | tee "$OUT/compare.txt"
echo "chart: $OUT/chart.html"
