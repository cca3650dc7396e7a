#!/bin/sh
# Reproduces the Shallow-Deep Network measurements of docs/results.md on Fashion-MNIST for one backbone:
# the CNN (reference recipe), IC-only on that CNN (Adam 1e-3, 25 epochs, x0.1 at 15, CNN frozen), SDN training
# from the CNN's initialisation (same seed), calibration at most 1 point below the final classifier, the
# side-by-side table, early exits on the test set, and the measured speedup at batch 1 and 128.
# Usage: sh scripts/reproduce-sdn.sh ARCH [EPOCHS] [IC_EPOCHS] [AUGMENT]
#   resnet56 24 25 flip   (models/resnet56-*; about 4 x 80 min on 2 cores)
#   resnet20 25 25 crop+flip   (models/resnet20-*)
# Every step resumes from its checkpoint, so the script can be stopped and run again.
set -e
ARCH=${1:-resnet20}
EP=${2:-25}
ICE=${3:-25}
AUG=${4:-crop+flip}
B=${BUILD:-build}
R=runs/$ARCH
mkdir -p runs
"$B/eenn" train --arch "$ARCH" --augment "$AUG" --epochs "$EP" --out "$R-cnn.eenn" --resume --json | tee "$R-cnn.json"
"$B/eenn" train --mode ic-only --from "$R-cnn.eenn" --epochs "$ICE" --out "$R-iconly.eenn" --resume --json | tee "$R-iconly.json"
"$B/eenn" train --mode sdn --arch "$ARCH" --augment "$AUG" --epochs "$EP" --out "$R-sdn.eenn" --resume --json | tee "$R-sdn.json"
for m in iconly sdn; do "$B/eenn" calibrate "$R-$m.eenn" --max-drop 1%; done
"$B/eenn" eval "$R-cnn.eenn" "$R-iconly.eenn" "$R-sdn.eenn"
for m in iconly sdn; do
    "$B/eenn" eval "$R-$m.eenn" --sweep
    "$B/eenn" bench --exits "$R-$m.eenn" --n 10000
done
