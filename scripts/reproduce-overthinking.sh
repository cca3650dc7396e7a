#!/bin/sh
# Reproduces the overthinking measurements of docs/results.md: the analysis and HTML report of the Fashion-MNIST
# ResNet-56 IC-only SDN (from scripts/reproduce-sdn.sh resnet56 24 25 flip), and the backdoor study on ResNet-20: a CNN
# trained with a 4x4 trigger in 10% of the training images (relabelled class 0), ICs trained IC-only on clean
# data, then analysed on clean and triggered test images. About 40 minutes on 2 cores after the ResNet-56 runs.
set -e
B=${BUILD:-build}
mkdir -p runs
"$B/eenn" analyze runs/resnet56-iconly.eenn --json >runs/resnet56-iconly-analysis.json
"$B/eenn" analyze runs/resnet56-iconly.eenn | tee runs/resnet56-iconly-analysis.txt
"$B/eenn" report runs/resnet56-iconly.eenn -o runs/resnet56-iconly-report.html
"$B/eenn" train --arch resnet20 --augment flip --epochs 15 --trigger 4 --target 0 --poison 0.1 \
    --out runs/resnet20-backdoor-cnn.eenn --resume --json
"$B/eenn" train --mode ic-only --from runs/resnet20-backdoor-cnn.eenn --out runs/resnet20-backdoor-iconly.eenn --resume --json
"$B/eenn" calibrate runs/resnet20-backdoor-iconly.eenn --max-drop 1%
"$B/eenn" analyze runs/resnet20-backdoor-iconly.eenn | tee runs/resnet20-backdoor-analysis.txt
"$B/eenn" report runs/resnet20-backdoor-iconly.eenn -o runs/resnet20-backdoor-report.html
