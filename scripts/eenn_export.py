"""Exports an eenn model with its exits to ONNX, in segments, so that ONNX Runtime really skips the compute of the
inputs that exit: one graph per segment between exits (segment i takes the activation where exit i-1 reads, and
gives exit i's logits and the activation where exit i reads), and the whole network as one graph (no exits) for
comparison. The exit policy (score, thresholds, temperatures) and the input normalisation go into every graph's
metadata (`eenn.*` keys) and into a manifest, DIR/model.json. examples/onnx_exits.js runs it with
onnxruntime-node: batch 1 input by input, or batches compacted after every exit, as eenn does.

    /usr/bin/python3 scripts/eenn_export.py MODEL.eenn -o DIR [--q X]

Policies whose score is a max probability, an entropy or a margin (shared or per-exit thresholds, temperatures)
are exported; learned gates are not (the script says so). Needs PyTorch (python3-torch) for the export.
"""
import argparse
import json
import os
import sys
import warnings

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eenn_file import read_eenn  # noqa: E402
from eenn_torch import Graph, set_tensors  # noqa: E402

SCORES = ("maxprob", "entropy", "margin")


class Segment(nn.Module):
    """Nodes [lo, hi) of a Graph, from one named activation to a head and the activation the next segment takes."""

    def __init__(self, g, lo, hi, start, head, carry):
        super().__init__()
        self.g, self.nodes, self.start, self.head, self.carry = g, g.nodes[lo:hi], start, head, carry

    def forward(self, x):
        y = {self.start: x}
        for kind, name, key, ins in self.nodes:
            self.g.run_node(kind, name, key, ins, y)
        return (y[self.head], y[self.carry]) if self.carry else y[self.head]


def parse_policy(meta, heads, q):
    """The stored policy (docs/format.md, `exit.policy`) as score, thresholds and temperatures."""
    if q is not None:
        return {"score": "maxprob", "thresholds": [q] * (heads - 1), "temperatures": [1.0] * heads}
    text = meta.get("exit.policy")
    if not text:
        if "exit.q" in meta:
            q = float(meta["exit.q"])
            return {"score": "maxprob", "thresholds": [q] * (heads - 1), "temperatures": [1.0] * heads}
        raise SystemExit("eenn: export: the model has no exit policy: calibrate it first (eenn calibrate), or give --q")
    f = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
    if f.get("kind") not in SCORES:
        raise SystemExit("eenn: export: the policy's score is '%s'; the export takes %s" % (f.get("kind"),
                                                                                         ", ".join(SCORES)))
    th = [float(v) for v in f["thresholds"].split(",")][:heads - 1]
    temps = [float(v) for v in f.get("temperatures", ",".join(["1"] * heads)).split(",")][:heads]
    return {"score": f["kind"], "thresholds": th, "temperatures": temps, "fallback": int(f.get("fallback", "0"))}


def add_metadata(path, entries):
    """Appends ModelProto.metadata_props (field 14, key 1, value 2) to a serialized ONNX model: protobuf allows
    fields in any order, so an appended field is part of the message."""
    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num, data):
        return varint(num << 3 | 2) + varint(len(data)) + data

    extra = b"".join(field(14, field(1, k.encode()) + field(2, v.encode())) for k, v in entries.items())
    with open(path, "ab") as f:
        f.write(extra)


def export(model_path, out_dir, q=None):
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shapes fixed by the architecture
    arch, meta, tensors = read_eenn(model_path)
    g = set_tensors(Graph(arch), tensors).eval()
    names = [n[1] for n in g.nodes]
    heads = g.heads
    line = next(l for l in arch.split("\n") if l.startswith("input "))
    dims = dict(kv.split("=", 1) for kv in line.split()[1:])
    c, h, w = int(dims["c"]), int(dims["h"]), int(dims["w"])
    policy = parse_policy(meta, len(heads), q)
    # each exit reads one node (its attach point); a segment ends with the exit's last node
    starts, segs = ["input"], []
    lo = 0
    for i, hd in enumerate(heads):
        hi = names.index(hd) + 1
        carry = None
        if i < len(heads) - 1:
            first = names.index(hd)
            while first > lo and g.nodes[first][0] in ("mixpool", "flatten", "linear"):
                first -= 1
            carry = names[first]  # the attach node: what the rest of the network reads
        seg_nodes = g.nodes[lo:hi]
        known = {starts[-1]} | {n[1] for n in seg_nodes}
        for kind, name, key, ins in seg_nodes:
            for src in ins:
                if src not in known:
                    raise SystemExit("eenn: export: node %s reads %s across exit %d: this network cannot be cut "
                                     "there" % (name, src, i + 1))
        if carry:  # later nodes may read only the attach node and themselves
            later = {n[1] for n in g.nodes[hi:]}
            for kind, name, key, ins in g.nodes[hi:]:
                for src in ins:
                    if src not in later and src != carry:
                        raise SystemExit("eenn: export: node %s reads %s, before exit %d's attach point %s" % (
                            name, src, i + 1, carry))
        segs.append(Segment(g, lo, hi, starts[-1], hd, carry))
        starts.append(carry)
        lo = hi
    os.makedirs(out_dir, exist_ok=True)
    x = torch.zeros(1, c, h, w)
    files, common = [], {"eenn.model": os.path.basename(model_path), "eenn.policy": json.dumps(policy),
                         "eenn.mean": meta.get("data.mean", "0,0,0"), "eenn.std": meta.get("data.std", "1,1,1")}
    with torch.no_grad():
        for i, seg in enumerate(segs):
            path = os.path.join(out_dir, "segment%d.onnx" % (i + 1))
            outs = ["logits", "next"] if seg.carry else ["logits"]
            torch.onnx.export(seg, (x,), path, input_names=["x"], output_names=outs, opset_version=13,
                              dynamic_axes={k: {0: "n"} for k in ["x"] + outs})
            add_metadata(path, dict(common, **{"eenn.segment": str(i + 1), "eenn.segments": str(len(segs))}))
            files.append(os.path.basename(path))
            x = seg(x)[1] if seg.carry else None

        class Dense(nn.Module):  # the whole network, its final head only
            def __init__(self, g):
                super().__init__()
                self.g = g

            def forward(self, x):
                y = {"input": x}
                for kind, name, key, ins in self.g.nodes:
                    if name.startswith("ic"):
                        continue
                    self.g.run_node(kind, name, key, ins, y)
                return y[heads[-1]]
        dense = os.path.join(out_dir, "dense.onnx")
        torch.onnx.export(Dense(g), (torch.zeros(1, c, h, w),), dense, input_names=["x"], output_names=["logits"],
                          opset_version=13, dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
        add_metadata(dense, dict(common, **{"eenn.segment": "dense"}))
    manifest = {"model": os.path.basename(model_path), "input": [c, h, w], "layout": "NCHW", "segments": files,
                "dense": "dense.onnx", "heads": heads, "policy": policy,
                "mean": [float(v) for v in common["eenn.mean"].split(",")],
                "std": [float(v) for v in common["eenn.std"].split(",")]}
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--q", type=float, help="one max-probability threshold instead of the stored policy")
    a = ap.parse_args()
    try:
        m = export(a.model, a.out, a.q)
    except (OSError, ValueError) as e:
        raise SystemExit("eenn: export: %s" % e)
    print("%s: %d segments and the dense network in %s (policy: %s)" % (a.model, len(m["segments"]), a.out,
                                                                        m["policy"]["score"]))


if __name__ == "__main__":
    main()
