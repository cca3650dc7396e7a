#!/bin/sh
# Installs what eenn needs on a fresh Debian 12 machine: compilers (clang with its sanitizer and libFuzzer
# runtimes), oneDNN, zlib, stb, libmatio (SVHN's .mat files), libcurl and libmicrohttpd (the edge
# client and `eenn serve`), Open MPI (data-parallel training), NumPy and PyTorch (the Python binding's tests and
# the PyTorch import's round trip) and the Fashion-MNIST dataset; Chromium for the test that opens the HTML report
# headless; with the argument `bench`, OpenBLAS for PyTorch too; then ONNX Runtime from npm into peers/ (the ONNX
# export's test, make bench). Runs apt-get as root, or through sudo. Safe to run again.
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev libomp-dev libdnnl-dev zlib1g-dev libstb-dev libmatio-dev libcurl4-openssl-dev libmicrohttpd-dev curl libopenmpi-dev openmpi-bin python3-numpy python3-torch dataset-fashion-mnist chromium"
# `sh scripts/setup-debian.sh bench`: also the peers of `make bench` (PyTorch; ONNX Runtime comes from npm). Debian's
# PyTorch 1.13 runs batch-1 convolutions through its BLAS (thnn_conv2d; oneDNN only from batch 2): with the reference
# libblas3 that is 8-12 img/s for ResNet-56, with OpenBLAS 60-93. The peer gets OpenBLAS, its fair setting.
[ "${1:-}" = bench ] && PKGS="$PKGS libopenblas0-openmp"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# ONNX Runtime (npm's onnxruntime-node, its CPU library in the package) for the ONNX export's test and make bench
if ! command -v npm >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
[ -d "$(dirname "$0")/../peers/node_modules/onnxruntime-node" ] ||
    (cd "$(dirname "$0")/../peers" && npm install --ignore-scripts --no-audit --no-fund >/dev/null)
