"""Converts a PyTorch state_dict of the SDN reference code's networks (ResNet-56, VGG-16-BN, WRN-32-4, MobileNet; the
CNNs or the SDNs, internal classifiers included) into an eenn model file; scripts/eenn_torch.py goes the other way.

    /usr/bin/python3 scripts/torch_to_eenn.py STATE.pth --arch resnet56|vgg16bn|wrn32_4|mobilenet [--input 3x32x32]
        [--classes 10]
        [--mean 0.4914,0.4822,0.4465 --std 0.247,0.243,0.261] -o MODEL.eenn

The reference names its modules by position: `init_conv` (the stem), `layers.I` for the I-th block (the rule of
each network is in its function below), `layers.I.output` for an internal classifier after block I (its pooling
mix `alpha` and its `linear` layer) and `end_layers` for the head. Each block with an `output` gets an eenn
internal classifier reading what the reference's reads: a residual block's sum before its ReLU (ResNet, WRN), a
VGG block's output after its pooling, a MobileNet block's output. Every tensor of the eenn network must be filled, and every tensor of the
file used, or the conversion stops with the names that do not match. `num_batches_tracked` is dropped.

--mean and --std (per channel, in units of pixel/255) are recorded in the model for `eenn infer` and `eval`; the
reference normalises CIFAR-10 with these values. Needs python/eenn (libeenn.so: build eenn first) and PyTorch.
"""
import argparse
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import eenn  # noqa: E402

ARCHS = ("resnet56", "resnet20", "resnet110", "vgg16bn", "wrn32_4", "mobilenet")


def _refuse(k, arch):
    raise SystemExit("torch_to_eenn: '%s' is not a key of the reference %s" % (k, arch))


def resnet_rule(k, n):
    """ResNet: init_conv, layers.I (layers.0: conv-bn-relu-conv-bn, layers.1: the shortcut), end_layers.2"""
    m = re.fullmatch(r"init_conv\.(0|1)\.(\w+)", k)
    if m:
        return "stem.%s.%s" % ("conv" if m.group(1) == "0" else "bn", m.group(2))
    m = re.fullmatch(r"end_layers\.2\.(weight|bias)", k)
    if m:
        return "fc." + m.group(1)
    m = re.fullmatch(r"layers\.(\d+)\.(.*)", k)
    if not m or int(m.group(1)) >= 3 * n:
        return None
    i, rest = int(m.group(1)), m.group(2)
    pre = "s%d.b%d." % (i // n + 1, i % n + 1)
    conv = {"0": "1.conv", "1": "1.bn", "3": "2.conv", "4": "2.bn"}
    m = re.fullmatch(r"layers\.0\.(\d)\.(\w+)", rest)
    if m and m.group(1) in conv:
        return pre + conv[m.group(1)] + "." + m.group(2)
    m = re.fullmatch(r"layers\.1\.(0|1)\.(\w+)", rest)
    if m:
        return pre + ("sc.conv." if m.group(1) == "0" else "sc.bn.") + m.group(2)
    return ic_key(rest, pre + "add")


def wrn_rule(k, n=5):
    """WRN: init_conv (a biased conv), layers.I (layers.0: bn-relu-conv-dropout-bn-relu-conv, layers.1: a 1x1
    conv shortcut), end_layers.0 (bn) and .4 (linear)"""
    m = re.fullmatch(r"init_conv\.(weight|bias)", k)
    if m:
        return "stem." + m.group(1)
    m = re.fullmatch(r"end_layers\.(0|4)\.(\w+)", k)
    if m:
        return ("head.bn." if m.group(1) == "0" else "fc.") + m.group(2)
    m = re.fullmatch(r"layers\.(\d+)\.(.*)", k)
    if not m or int(m.group(1)) >= 3 * n:
        return None
    i, rest = int(m.group(1)), m.group(2)
    pre = "s%d.b%d." % (i // n + 1, i % n + 1)
    body = {"0": "bn1", "2": "conv1", "4": "bn2", "6": "conv2"}
    m = re.fullmatch(r"layers\.0\.(\d)\.(\w+)", rest)
    if m and m.group(1) in body:
        return pre + body[m.group(1)] + "." + m.group(2)
    m = re.fullmatch(r"layers\.1\.0\.(\w+)", rest)
    if m:
        return pre + "sc." + m.group(1)
    return ic_key(rest, pre + "add")


def vgg_rule(k, model):
    """VGG-16-BN: layers.0-12 (conv-bn-relu[-maxpool]), layers.13 (flatten-linear-relu-dropout), end_layers.0 and .2
    (linear, dropout, linear)"""
    m = re.fullmatch(r"end_layers\.(0|2)\.(weight|bias)", k)
    if m:
        return ("fc2." if m.group(1) == "0" else "fc.") + m.group(2)
    m = re.fullmatch(r"layers\.13\.layers\.1\.(weight|bias)", k)
    if m:
        return "fc1." + m.group(1)
    m = re.fullmatch(r"layers\.(\d+)\.(.*)", k)
    if not m or int(m.group(1)) > 12:
        return None
    b, rest = "b%d" % (int(m.group(1)) + 1), m.group(2)
    m = re.fullmatch(r"layers\.(0|1)\.(\w+)", rest)
    if m:
        return b + (".conv." if m.group(1) == "0" else ".bn.") + m.group(2)
    # an IC reads the block's output: after its pooling, if it pools
    return ic_key(rest, b + ".pool" if model.node_index(b + ".pool") >= 0 else b + ".relu")


def mobilenet_rule(k):
    """MobileNet: init_conv, layers.I (depthwise conv-bn-relu, pointwise conv-bn-relu), end_layers.2"""
    m = re.fullmatch(r"init_conv\.(0|1)\.(\w+)", k)
    if m:
        return "stem.%s.%s" % ("conv" if m.group(1) == "0" else "bn", m.group(2))
    m = re.fullmatch(r"end_layers\.2\.(weight|bias)", k)
    if m:
        return "fc." + m.group(1)
    m = re.fullmatch(r"layers\.(\d+)\.(.*)", k)
    if not m or int(m.group(1)) > 12:
        return None
    b, rest = "b%d." % (int(m.group(1)) + 1), m.group(2)
    body = {"0": "dw.conv", "1": "dw.bn", "3": "pw.conv", "4": "pw.bn"}
    m = re.fullmatch(r"layers\.(\d)\.(\w+)", rest)
    if m and m.group(1) in body:
        return b + body[m.group(1)] + "." + m.group(2)
    return ic_key(rest, b + "pw.relu")


def ic_key(rest, node):
    """An internal classifier's tensor (`output.alpha`, `output.linear.*`): (the node it reads, which tensor)"""
    m = re.fullmatch(r"output\.(alpha|linear\.weight|linear\.bias)", rest)
    return (node, m.group(1)) if m else None


def convert(state, arch, shape, classes, mean=None, std=None):
    """An eenn Model holding the reference state_dict's weights."""
    state = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state.items()
             if not k.endswith("num_batches_tracked")}
    if arch not in ARCHS:
        raise SystemExit("torch_to_eenn: --arch %s: this converter knows %s" % (arch, ", ".join(ARCHS)))
    model = eenn.build(arch, shape, classes)
    rule = {"resnet56": lambda k: resnet_rule(k, 9), "resnet20": lambda k: resnet_rule(k, 3),
            "resnet110": lambda k: resnet_rule(k, 18), "wrn32_4": wrn_rule, "mobilenet": mobilenet_rule,
            "vgg16bn": lambda k: vgg_rule(k, model)}[arch]
    names = {}
    for k in state:
        n = rule(k)
        if n is None:
            _refuse(k, arch)
        names[k] = n
    ics = sorted({n[0] for n in names.values() if isinstance(n, tuple)}, key=model.node_index)
    if ics:
        model = model.attach_ics(ics)  # numbered in network order, as eenn numbers them
    ic_of = {node: "ic%d" % (i + 1) for i, node in enumerate(ics)}
    tensors = model.tensors()
    filled = set()
    for k, v in state.items():
        n = names[k]
        if isinstance(n, tuple):  # an internal classifier's tensor
            node, what = n
            n = ic_of[node] + (".pool.alpha" if what == "alpha" else ".fc." + what.split(".")[1])
        if n not in tensors:
            raise SystemExit("torch_to_eenn: '%s' (from '%s') is not in eenn's %s" % (n, k, arch))
        t = tensors[n]
        if t.size != v.size:
            raise SystemExit("torch_to_eenn: '%s' has %s, eenn's '%s' %s" % (k, v.shape, n, t.shape))
        t[...] = v.reshape(t.shape)
        filled.add(n)
    # the reference does not pool maps of less than 4x4 and has no alpha there; eenn's pooling passes such maps
    # through, so the value is unused (its linear layer, filled above, has the size that proves it)
    for n in tensors:
        m = re.fullmatch(r"(ic\d+)\.pool\.alpha", n)
        if m and n not in filled and m.group(1) + ".fc.weight" in filled:
            tensors[n][...] = 0.5
            filled.add(n)
    missing = [n for n in tensors if n not in filled]
    if missing:
        raise SystemExit("torch_to_eenn: the state_dict has nothing for %s" % ", ".join(missing[:8]))
    model.params_changed()
    for key, v in (("data.mean", mean), ("data.std", std)):
        if v is not None:
            vals = list(v) + [0.0 if key == "data.mean" else 1.0] * (3 - len(v))
            model._ctx.check(model._ctx.lib.ee_net_set_meta(model._ctx.p, model._net, key.encode(),
                                                              ",".join("%g" % x for x in vals[:3]).encode()))
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("state")
    ap.add_argument("--arch", required=True)
    ap.add_argument("--input", default="3x32x32")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--mean")
    ap.add_argument("--std")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    import torch
    state = torch.load(a.state, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    shape = tuple(int(x) for x in a.input.split("x"))
    def parse(s):
        return [float(x) for x in s.split(",")]
    m = convert(state, a.arch, shape, a.classes, parse(a.mean) if a.mean else None, parse(a.std) if a.std else None)
    m.save(a.out)
    print("%s: %s, %d exits, %d parameters" % (a.out, a.arch, m.heads, m.params))


if __name__ == "__main__":
    main()
