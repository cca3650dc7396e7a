"""Builds a PyTorch module from an eenn model file or architecture text, with eenn's weights: any architecture,
built-in or custom, SDNs included (every head is returned). Used to time peers (PyTorch, and ONNX Runtime through
torch.onnx.export) on exactly the network and weights eenn runs.

    from eenn_torch import load_torch
    model, heads = load_torch("model.eenn")      # model(x NCHW) -> list of head outputs
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from eenn_file import read_eenn


class MixPool(nn.Module):
    """The SDN IC reduction: alpha * max + (1 - alpha) * avg down to out x out (adaptive windows)."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        if x.shape[2] <= self.out and x.shape[3] <= self.out:
            return x
        a, o, h, w = self.alpha, self.out, int(x.shape[2]), int(x.shape[3])  # fixed by the architecture
        if h % o == 0 and w % o == 0:
            return a * F.adaptive_max_pool2d(x, o) + (1 - a) * F.adaptive_avg_pool2d(x, o)
        # PyTorch's adaptive windows [floor(i H/o), ceil((i+1) H/o)), spelled out (ONNX has no such pooling)
        rows = []
        for i in range(o):
            r0, r1 = i * h // o, ((i + 1) * h + o - 1) // o
            cols = []
            for j in range(o):
                c0, c1 = j * w // o, ((j + 1) * w + o - 1) // o
                win = x[:, :, r0:r1, c0:c1]
                cols.append(a * win.amax((2, 3)) + (1 - a) * win.mean((2, 3)))
            rows.append(torch.stack(cols, -1))
        return torch.stack(rows, -2)


def _parse(text):
    lines = []
    for raw in text.splitlines():
        raw = raw.split("#")[0].strip()
        if not raw:
            continue
        kind, *kv = raw.split()
        args = dict(p.split("=", 1) for p in kv if "=" in p)
        lines.append((kind, args))
    return lines


class Graph(nn.Module):
    """The nodes of an eenn architecture in order; node outputs are kept by name."""

    def __init__(self, text):
        super().__init__()
        self.nodes, self.heads, shapes = [], [], {}
        self.mods = nn.ModuleDict()
        for kind, a in _parse(text):
            if kind == "arch":
                continue
            if kind == "input":
                shapes["input"] = (int(a["c"]), int(a["h"]), int(a["w"]))
                continue
            name, ins = a["name"], a.get("in", "").split(",")
            c, h, w = shapes[ins[0]]
            key = name.replace(".", "__")
            mod = None
            if kind == "conv":
                k, s, p, g = int(a["k"]), int(a.get("stride", 1)), int(a.get("pad", 0)), int(a.get("groups", 1))
                kh, ph = int(a.get("kh", k)), int(a.get("padh", p))  # a rectangular kernel: kh x k (text: 1 x k)
                mod = nn.Conv2d(c, int(a["out"]), (kh, k), s, (ph, p), groups=g, bias=a.get("bias", "0") == "1")
                shape = (int(a["out"]), (h + 2 * ph - kh) // s + 1, (w + 2 * p - k) // s + 1)
            elif kind == "embed":  # token ids (1 channel, or 2: high and low byte) to vectors
                mod = nn.Embedding(int(a.get("vocab", 256)), int(a["out"]))
                shape = (int(a["out"]), h, w)
            elif kind == "bag":  # a bag of words: nn.EmbeddingBag, each sample's log-count weights of unit norm
                mod = nn.EmbeddingBag(int(a.get("vocab", 256)), int(a["out"]), mode="sum")
                shape = (int(a["out"]), 1, 1)
            elif kind == "gmp":
                shape = (c, 1, 1)
            elif kind == "bn":
                mod = nn.BatchNorm2d(c, eps=float(a.get("eps", 1e-5)), momentum=float(a.get("momentum", 0.1)))
                shape = (c, h, w)
            elif kind in ("maxpool", "avgpool"):
                k, s, p = int(a["k"]), int(a.get("stride", a["k"])), int(a.get("pad", 0))
                mod = (nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(k, s, p)
                shape = (c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            elif kind == "linear":
                mod = nn.Linear(c * h * w, int(a["out"]), bias=a.get("bias", "1") == "1")
                shape = (int(a["out"]), 1, 1)
            elif kind == "dropout":
                mod = nn.Dropout(float(a.get("p", 0.5)))
                shape = (c, h, w)
            elif kind == "mixpool":
                o = int(a.get("out", 4))
                mod = MixPool(o)
                shape = (c, h, w) if (h <= o and w <= o) else (c, o, o)
            elif kind == "gap":
                shape = (c, 1, 1)
            elif kind == "flatten":
                shape = (c * h * w, 1, 1)
            elif kind in ("relu", "add"):
                shape = (c, h, w)
            else:
                raise ValueError(f"unknown node kind {kind}")
            if mod is not None:
                self.mods[key] = mod
            self.nodes.append((kind, name, key, ins))
            shapes[name] = shape
            if a.get("head") == "1":
                self.heads.append(name)

    def forward(self, x):
        y = {"input": x}
        outs = []
        for kind, name, key, ins in self.nodes:
            self.run_node(kind, name, key, ins, y)
            if name in self.heads:
                outs.append(y[name])
        return outs

    def run_node(self, kind, name, key, ins, y):
        """Computes one node from the outputs in y (by name) into y[name]."""
        v = y[ins[0]]
        if kind == "relu":
            r = F.relu(v)
        elif kind == "add":
            r = v + y[ins[1]]
        elif kind == "gap":
            r = v.mean((2, 3), keepdim=True)
        elif kind == "gmp":
            r = v.amax((2, 3), keepdim=True)
        elif kind == "embed":
            ids = v.round().long()
            if ids.shape[1] == 2:
                ids = ids[:, 0] * 256 + ids[:, 1]
            else:
                ids = ids[:, 0]
            r = self.mods[key](ids).permute(0, 3, 1, 2)
        elif kind == "bag":
            ids = v.round().long()
            ids = (ids[:, 0] * 256 + ids[:, 1] if ids.shape[1] == 2 else ids[:, 0]).flatten(1)
            # counts of every id in a sample (0, the padding, dropped): weight log(1 + count), L2-normalised
            cnt = torch.zeros(ids.shape[0], self.mods[key].num_embeddings).scatter_add_(1, ids, torch.ones(ids.shape))
            cnt[:, 0] = 0
            w = torch.log1p(cnt)
            w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
            r = (w @ self.mods[key].weight)[:, :, None, None]
        elif kind == "flatten":
            r = v.flatten(1)
        elif kind == "linear":
            r = self.mods[key](v.flatten(1))
        else:
            r = self.mods[key](v)
        y[name] = r


def set_tensors(g, tensors):
    """Copies eenn tensors (name -> array, eenn names) into a Graph's parameters and statistics."""
    sd = g.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        node, _, what = k[len("mods."):].rpartition(".")
        sd[k].copy_(torch.from_numpy(tensors[node.replace("__", ".") + "." + what]).reshape(sd[k].shape))
    return g


def load_torch(path):
    """The network of an eenn model file as a Graph module with its weights, and its head names."""
    arch, _, tensors = read_eenn(path)
    g = set_tensors(Graph(arch), tensors)
    return g, g.heads


class FinalHead(nn.Module):
    """Only the last head (a plain CNN's output), for export."""

    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, x):
        return self.g(x)[-1]
