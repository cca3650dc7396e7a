#!/bin/sh
# Trains the CNN backbones on Fashion-MNIST and times eenn beside its peers. Long: about 2 hours on 2 cores.
#   1. parameters and FLOPs of the SDN backbones (CIFAR variants)
#   2. ResNet-56 and ResNet-20 trained on Fashion-MNIST with the reference recipe (SGD 0.1, momentum 0.9,
#      weight decay 1e-4, batch 128, lr x0.1 at 35/60/85% of the epochs), test accuracy and wall-clock time
#   3. eenn beside PyTorch in one run (make bench)
# Usage: sh scripts/train-backbones.sh [EPOCHS_R56] [EPOCHS_R20]    (defaults 20 and 20)
set -e
B=${BUILD:-build}
E56=${1:-20}
E20=${2:-20}
mkdir -p runs
for a in resnet56 vgg16bn wrn32_4 mobilenet; do "$B/eenn" info --arch "$a" --summary; done
for spec in "resnet56 $E56" "resnet20 $E20"; do
    set -- $spec
    t0=$(date +%s)
    "$B/eenn" train --arch "$1" --epochs "$2" --out "runs/$1-cnn-e$2.eenn" --resume --json | tee "runs/$1-cnn-e$2.json"
    echo "$1: $(( $(date +%s) - t0 )) s wall-clock"
done
/usr/bin/python3 scripts/bench_compare.py
