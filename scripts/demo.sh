#!/bin/sh
# The main job: train ResNet-20 on Fashion-MNIST with the SDN recipe (SGD 0.1, momentum 0.9, weight decay 1e-4,
# batch 128, lr x0.1 at 35/60/85% of the epochs), evaluate it, and print the results.
# Usage: sh scripts/demo.sh [EPOCHS] [ARCH]     (defaults: 15 epochs, resnet20; about 15 minutes on 2 cores)
set -e
EPOCHS=${1:-15}
ARCH=${2:-resnet20}
B=${BUILD:-build}
mkdir -p runs
"$B/eenn" info --arch "$ARCH" --input 1x28x28 --summary
"$B/eenn" train --arch "$ARCH" --epochs "$EPOCHS" --out "runs/$ARCH-fmnist.eenn" --resume
"$B/eenn" eval "runs/$ARCH-fmnist.eenn"
