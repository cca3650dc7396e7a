#!/usr/bin/env python3
"""The baseline a text model has to beat: logistic regression on a hashed bag of words, in PyTorch, on the same
text directory (docs/format.md, "Text datasets") and the same split as `eenn train`.

    /usr/bin/python3 scripts/text-baseline.py DIR [--bytes N] [--buckets B] [--epochs E] [--seed S]
                                             [--predictions FILE] [--json]

Words are runs of letters, digits and $!@.-_ (lowercased), hashed (CRC-32) into B buckets (default 2^18), counted
and scaled by log(1 + count), each example's vector L2-normalised. The model is one linear layer on that
(an EmbeddingBag of sums), trained with Adam (lr 0.01, weight decay 1e-6, batch 64) on the training file minus
its last tenth (eenn's validation split), the epoch count chosen on that tenth. --bytes N reads only each
example's first N bytes, as the byte-level models do (default: the whole text). --predictions FILE writes the
test predictions, one JSON line per test example ({"name": CLASS}, as `eenn infer --json` writes them), for
scripts/paired-test.py."""
import argparse
import json
import re
import sys
import time
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

WORD = re.compile(rb"[a-z0-9$!@._-]+")


def unescape(t):
    out, i = bytearray(), 0
    while i < len(t):
        c = t[i]
        if c == 0x5C and i + 1 < len(t):
            out += {0x74: b"\t", 0x6E: b"\n", 0x5C: b"\\"}.get(t[i + 1], b"")
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def load(path, nbytes):
    labels, texts = [], []
    with open(path, "rb") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip(b"\n")
            if not line:
                continue
            tab = line.find(b"\t")
            if tab <= 0:
                sys.exit(f"{path}:{ln}: no label and tab")
            labels.append(line[:tab].decode())
            t = unescape(line[tab + 1:])
            texts.append(t[:nbytes] if nbytes else t)
    return labels, texts


def featurise(texts, buckets):
    idx, off, w = [], [], []
    for t in texts:
        off.append(len(idx))
        counts = {}
        for m in WORD.findall(t.lower()):
            h = zlib.crc32(m) % buckets
            counts[h] = counts.get(h, 0) + 1
        vals = {h: torch.log1p(torch.tensor(float(c))).item() for h, c in counts.items()}
        norm = sum(v * v for v in vals.values()) ** 0.5 or 1.0
        for h, v in vals.items():
            idx.append(h)
            w.append(v / norm)
    return torch.tensor(idx, dtype=torch.long), torch.tensor(off, dtype=torch.long), torch.tensor(w)


def bags(feat, rows):
    idx, off, w = feat
    ends = torch.cat([off[1:], torch.tensor([len(idx)])])
    sel_i, sel_w, new_off = [], [], []
    n = 0
    for r in rows.tolist():
        a, b = off[r].item(), ends[r].item()
        new_off.append(n)
        sel_i.append(idx[a:b])
        sel_w.append(w[a:b])
        n += b - a
    return torch.cat(sel_i), torch.tensor(new_off, dtype=torch.long), torch.cat(sel_w)


def accuracy(model, feat, y, rows):
    with torch.no_grad():
        i, o, w = bags(feat, rows)
        return (model(i, o, per_sample_weights=w).argmax(1) == y[rows]).float().mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--bytes", type=int, default=0)
    ap.add_argument("--buckets", type=int, default=1 << 18)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--predictions")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    t0 = time.time()
    trl, trt = load(f"{a.dir}/train.tsv", a.bytes)
    tel, tet = load(f"{a.dir}/test.tsv", a.bytes)
    classes = sorted(set(trl), key=lambda s: s.encode())
    cid = {c: k for k, c in enumerate(classes)}
    ytr = torch.tensor([cid[c] for c in trl])
    yte = torch.tensor([cid[c] for c in tel])
    ftr, fte = featurise(trt, a.buckets), featurise(tet, a.buckets)
    n = len(trl)
    nval = n // 10
    fit, val = torch.arange(n - nval), torch.arange(n - nval, n)
    model = nn.EmbeddingBag(a.buckets, len(classes), mode="sum")
    nn.init.zeros_(model.weight)
    bias = nn.Parameter(torch.zeros(len(classes)))
    opt = torch.optim.Adam(list(model.parameters()) + [bias], lr=0.01, weight_decay=1e-6)
    fwd = lambda i, o, per_sample_weights: model(i, o, per_sample_weights=per_sample_weights) + bias
    best = (-1.0, 0, None)
    for ep in range(1, a.epochs + 1):
        perm = fit[torch.randperm(len(fit))]
        for s in range(0, len(perm), 64):
            rows = perm[s:s + 64]
            i, o, w = bags(ftr, rows)
            loss = F.cross_entropy(fwd(i, o, w), ytr[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        va = accuracy(fwd, ftr, ytr, val)
        if va > best[0]:
            best = (va, ep, (model.weight.detach().clone(), bias.detach().clone()))
    model.weight.data.copy_(best[2][0])
    bias.data.copy_(best[2][1])
    te = accuracy(fwd, fte, yte, torch.arange(len(tel)))
    if a.predictions:
        with torch.no_grad():
            i, o, w = bags(fte, torch.arange(len(tel)))
            pred = fwd(i, o, w).argmax(1).tolist()
        with open(a.predictions, "w") as f:
            for k in pred:
                f.write(json.dumps({"name": classes[k]}) + "\n")
    res = {"model": "logistic regression, hashed bag of words", "buckets": a.buckets, "bytes": a.bytes or None,
           "epochs": best[1], "val_acc": round(100 * best[0], 4), "test_acc": round(100 * te, 4),
           "train_n": len(fit), "val_n": nval, "test_n": len(tel), "seconds": round(time.time() - t0, 1)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{a.dir}: logistic regression on {a.buckets} hashed word buckets"
              f"{' (first %d bytes)' % a.bytes if a.bytes else ''}: validation {100 * best[0]:.2f}% "
              f"(epoch {best[1]}), test {100 * te:.2f}% on {len(tel)} examples")


if __name__ == "__main__":
    main()
