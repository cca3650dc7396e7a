#!/bin/sh
# The main job: a Shallow-Deep Network on Fashion-MNIST. Trains ResNet-20 with internal classifiers (SDN
# training: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, lr x0.1 at 35/60/85% of the epochs), picks the
# early-exit threshold on the validation split (at most 1 point below the final classifier), then reports
# per-exit accuracy, exit fractions, average cost and the measured speedup of real early exits.
# Usage: sh scripts/demo.sh            (env: EPOCHS=4 ARCH=resnet20 MODE=sdn; MODE=cnn trains the plain CNN)
set -e
EPOCHS=${EPOCHS:-4}
ARCH=${ARCH:-resnet20}
MODE=${MODE:-sdn}
B=${BUILD:-build}
OUT=runs/$ARCH-$MODE-e$EPOCHS.eenn
mkdir -p runs
"$B/eenn" info --arch "$ARCH" --input 1x28x28 --summary
"$B/eenn" train --mode "$MODE" --arch "$ARCH" --epochs "$EPOCHS" --out "$OUT" --resume
if [ "$MODE" = cnn ]; then
    "$B/eenn" eval "$OUT"
    exit 0
fi
"$B/eenn" calibrate "$OUT" --max-drop 1%
"$B/eenn" eval "$OUT"
"$B/eenn" bench --exits "$OUT"
